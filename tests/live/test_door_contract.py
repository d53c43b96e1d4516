"""Only the SDK door imports google-genai: the import contract catches a breach, in the
tools (no ignored imports left) and inside the Live room itself."""

from __future__ import annotations

from tests.architecture.test_import_layers import breach


def test_the_tools_importing_the_sdk_break_the_contract(tmp_path):
    result = breach(tmp_path, "edgevoice.tools.functions", "from google.genai import types  # noqa")
    assert result.returncode != 0
    assert "edgevoice.tools.functions -> google" in result.stdout


def test_the_link_importing_the_sdk_past_the_door_breaks_the_contract(tmp_path):
    result = breach(tmp_path, "edgevoice.live.link", "from google.genai import errors  # noqa")
    assert result.returncode != 0
    assert "edgevoice.live.link -> google" in result.stdout
