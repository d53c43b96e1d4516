"""`edgevoice check-config` says which model family it assumed and what it will not send."""

from __future__ import annotations

from tests.test_cli_errors import ROOT, edgevoice


def test_an_unknown_model_names_the_family_assumed_and_the_options_left_out(tmp_path):
    config = tmp_path / "edgevoice.toml"
    config.write_text('[live]\nmodel = "gemini-3.9-live-preview"\nthinking_budget = 0\n')
    result = edgevoice("check-config", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert (
        "# live.model gemini-3.9-live-preview is not a model EdgeVoice knows: "
        "assuming the gemini-3.8-live family" in result.stdout
    )
    assert "# not sent to this model: live.thinking_budget" in result.stdout


def test_the_shipped_configuration_uses_gemini_3_8_live():
    result = edgevoice("check-config", "--config", str(ROOT / "config" / "edgevoice.toml"))
    assert result.returncode == 0, result.stderr
    assert 'model = "gemini-3.8-live"' in result.stdout
    assert "# live.model gemini-3.8-live: the gemini-3.8-live family" in result.stdout
    assert "not sent to this model" not in result.stdout
