"""The import layers hold, and the check that holds them really catches a breach."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def run_lint_imports(package_root: Path = REPO) -> subprocess.CompletedProcess[str]:
    """lint-imports with the repository's contracts, on the packages found from ``package_root``."""
    env = dict(os.environ, PYTHONPATH=str(package_root))
    return subprocess.run(
        [str(LINT_IMPORTS), str(REPO / "pyproject.toml"), "--no-cache"],
        cwd=package_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_import_contracts_are_kept():
    result = run_lint_imports()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def breach(tmp_path: Path, module: str, line: str) -> subprocess.CompletedProcess[str]:
    """A copy of the device package with one import added to ``module``, checked."""
    shutil.copytree(REPO / "edgevoice", tmp_path / "edgevoice", ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / Path(*module.split(".")).with_suffix(".py")
    target.write_text(target.read_text() + f"\n{line}\n")
    return run_lint_imports(tmp_path)


def test_a_device_module_importing_the_emulator_breaks_the_contract(tmp_path):
    result = breach(tmp_path, "edgevoice.audio.playback", "import edgevoice_testbed.emulator  # noqa")
    assert result.returncode != 0
    assert "edgevoice.audio.playback -> edgevoice_testbed.emulator" in result.stdout


def test_the_core_reaching_for_the_event_loop_breaks_the_contract(tmp_path):
    result = breach(tmp_path, "edgevoice.core.backoff", "import asyncio  # noqa")
    assert result.returncode != 0
    assert "edgevoice.core.backoff -> asyncio" in result.stdout
