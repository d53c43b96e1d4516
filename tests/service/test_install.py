"""scripts/install.sh in a scratch root: files, modes, upgrade in place, uninstall.

The venv and the pip install are real (``python3 -m venv``, ``pip install <checkout>``);
only dependency resolution is skipped (``--pip-args --no-deps``) so the test stays fast
and needs no download beyond pip's build backend. apt-get and systemctl are skipped by
``--root``.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "install.sh"
KEY = "AIzaSyTEST-install-key_0123456789abcd"
NEW_KEY = "AIzaSyTEST-replaced-key_9876543210zy"


def python3() -> str:
    return shutil.which("python3") or sys.executable


def run(root: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), "--root", str(root), "--python", python3(), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_install_upgrade_uninstall(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    unit = root / "etc/systemd/system/edgevoice.service"
    config = root / "etc/edgevoice/edgevoice.toml"
    key = root / "etc/edgevoice/credentials/gemini-api-key"
    venv_python = root / "opt/edgevoice/venv/bin/python"

    # -- first install without a key: everything but the credential, and a warning
    first = run(root, "--no-key", "--pip-args", "--no-deps")
    assert first.returncode == 0, first.stderr
    assert "no API key installed" in first.stderr
    assert not key.exists()
    assert unit.read_text() == (ROOT / "systemd/edgevoice.service").read_text()
    assert mode(unit) == 0o644
    assert config.read_text() == (ROOT / "config/edgevoice.toml").read_text()
    assert mode(config) == 0o644
    installed = subprocess.run(
        [str(venv_python), "-c", "import importlib.metadata as m; print(m.version('edgevoice'))"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert installed.stdout.strip() == "0.1.0"
    assert (root / "opt/edgevoice/venv/bin/edgevoice").exists()

    # -- the owner edits the config, an old unit is in place; re-run with the key piped
    # in, with the stray whitespace a paste brings
    config.write_text(config.read_text() + "\n# edited by the owner\n")
    unit.write_text("[Service]\nExecStart=/old\n")
    marker = root / "opt/edgevoice/venv/kept-marker"
    marker.write_text("venv reused")
    state = root / "var/lib/edgevoice/handle.json"
    state.parent.mkdir(parents=True)
    state.write_text("{}")
    second = run(root, "--pip-args", "--no-deps", stdin=f"  {KEY}  \n")
    assert second.returncode == 0, second.stderr
    assert KEY not in second.stdout + second.stderr
    assert "keeping the existing configuration" in second.stdout
    assert "upgrading the virtual environment" in second.stdout
    assert config.read_text().endswith("# edited by the owner\n")
    assert unit.read_text() == (ROOT / "systemd/edgevoice.service").read_text()
    assert marker.exists()
    assert key.read_text() == KEY + "\n"
    assert mode(key) == 0o600
    assert mode(key.parent) == 0o700
    if os.geteuid() == 0:
        assert key.stat().st_uid == 0 and key.stat().st_gid == 0
    assert not list(key.parent.glob(".*"))  # no temporary left behind

    # -- a plain re-run keeps the key
    third = run(root, "--pip-args", "--no-deps")
    assert third.returncode == 0, third.stderr
    assert "keeping the installed API key" in third.stdout
    assert key.read_text() == KEY + "\n"

    # -- a bad key is replaced by piping the new one in (docs: troubleshooting)
    fourth = run(root, "--pip-args", "--no-deps", stdin=NEW_KEY + "\n")
    assert fourth.returncode == 0, fourth.stderr
    assert key.read_text() == NEW_KEY + "\n"
    assert mode(key) == 0o600
    assert NEW_KEY not in fourth.stdout + fourth.stderr

    # -- uninstall keeps configuration, key and state
    gone = run(root, "--uninstall")
    assert gone.returncode == 0, gone.stderr
    assert not unit.exists()
    assert not (root / "opt/edgevoice").exists()
    assert config.read_text().endswith("# edited by the owner\n")
    assert key.read_text() == NEW_KEY + "\n"
    assert state.read_text() == "{}"


@pytest.mark.parametrize(
    ("stdin", "message"),
    [
        ("", "no API key given"),
        ("   \n", "no API key given"),
        ("AIza with spaces\n", "contains spaces or control characters"),
        ("AIza\x07bell\n", "contains spaces or control characters"),
    ],
)
def test_bad_key_changes_nothing(tmp_path, stdin, message):
    result = run(tmp_path, "--pip-args", "--no-deps", stdin=stdin)
    assert result.returncode == 1
    assert message in result.stderr
    assert list(tmp_path.iterdir()) == []  # refused before touching anything


def test_unknown_option_is_refused(tmp_path):
    result = run(tmp_path, "--frobnicate")
    assert result.returncode == 1
    assert "unknown option: --frobnicate" in result.stderr
    assert "Usage: install.sh" in result.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_shellcheck_is_clean():
    result = subprocess.run(
        ["shellcheck", "--severity=style", str(SCRIPT)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout
