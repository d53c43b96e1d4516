"""scripts/install.sh on an arm64 Debian 13 root filesystem under qemu-user (see
tests/deploy/arm64.py for what is and is not checked there)."""

from __future__ import annotations

import pytest

from tests.deploy.arm64 import GROUP, Arm64Result, BackgroundArm64
from tests.deploy.conftest import record, require_deploy_prerequisites


@pytest.fixture(scope="module")
def arm64(arm64_in_background: BackgroundArm64 | None) -> Arm64Result:
    require_deploy_prerequisites(arm64=True)
    assert arm64_in_background is not None
    result = arm64_in_background.join(timeout=3600)
    for step, seconds in result.timings.items():
        record(GROUP, step, seconds)
    if result.error is not None:
        pytest.fail(f"the arm64 install failed: {result.error} (log: {result.log})")
    return result


def test_the_installer_completes_on_arm64(arm64: Arm64Result) -> None:
    install = arm64.outputs["install"]
    assert "edgevoice install: done" in install
    assert arm64.outputs["enabled"] == "enabled"


def test_compiled_extensions_load_on_aarch64(arm64: Arm64Result) -> None:
    machine, *paths = arm64.outputs["imports"].split()
    assert machine == "aarch64"
    assert all("aarch64" in path for path in paths), paths  # the .so files are arm64 builds


def test_lgpio_is_installed_or_its_absence_is_said_plainly(arm64: Arm64Result) -> None:
    # Plain Debian 13 has no lgpio package and PyPI no aarch64 wheel for Python 3.13: the
    # installer must then say what a Raspberry Pi needs, not fail or stay silent.
    install, lgpio = arm64.outputs["install"], arm64.outputs["lgpio"]
    if lgpio:
        assert "aarch64" in lgpio
    else:
        assert "lgpio could not be installed" in install and "python3-lgpio" in install, install
    record(GROUP, "lgpio: " + ("installed" if lgpio else "not available here (the installer says so)"), 0.0)


def test_commands_that_need_no_unit(arm64: Arm64Result) -> None:
    assert arm64.outputs["version"].startswith("edgevoice ")
    check = arm64.outputs["check-config"]
    assert "gemini_api_key" in check and "AIzaSyCI" not in check  # found, and redacted
    # No sound card under qemu-user: `devices` must say so plainly, not crash.
    assert "Traceback" not in arm64.outputs["devices"]
