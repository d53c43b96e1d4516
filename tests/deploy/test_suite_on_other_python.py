"""The whole test suite on the Python the host does not have: 3.13 in a Debian 13
container on a Debian 12 host (3.11), 3.11 in a Debian 12 container on a Debian 13 host.
Together with the host's own run, CI covers both Pythons Raspberry Pi OS ships.

Inside, the README's test command runs unchanged (scripts/test.sh: apt-get, venv, ruff,
pytest) in a booted container, without these deploy tests (no containers in containers).
"""

from __future__ import annotations

import re
import sys
import time

from tests.deploy.conftest import record, require_deploy_prerequisites
from tests.deploy.debian import Log, Machine, RootfsSpec, copy_checkout, new_workdir, rootfs

# The Python of each release (Raspberry Pi OS: trixie 3.13, bookworm 3.11).
PYTHON_OF = {"trixie": (3, 13), "bookworm": (3, 11)}


def test_the_suite_passes_on_the_other_python() -> None:
    require_deploy_prerequisites()
    host = sys.version_info[:2]
    release = next(name for name, version in PYTHON_OF.items() if version != host)
    python = ".".join(map(str, PYTHON_OF[release]))
    group = f"test suite on Python {python} ({release} container)"
    workdir = new_workdir(f"suite-{release}")
    started = time.monotonic()
    lower, cached = rootfs(RootfsSpec(release), Log(workdir / "rootfs.log"))
    record(group, "root filesystem (cached)" if cached else "root filesystem (debootstrap, not cached)",
           time.monotonic() - started)
    machine = Machine(f"suite-{release}", lower, workdir)
    machine.mount()
    try:
        started = time.monotonic()
        machine.boot()
        record(group, "boot", time.monotonic() - started)
        copy_checkout(machine.path("/root/suite"))
        started = time.monotonic()
        # The whole output goes to the machine's log; the tail (failures, the count) here.
        # Home Assistant 2024.3.3 does not install on 3.13: the host's run covers it there.
        ha = "EDGEVOICE_HA_TESTS=skip " if PYTHON_OF[release] >= (3, 13) else ""
        result = machine.sh(f"cd /root/suite && {ha}EDGEVOICE_DEPLOY_TESTS=skip scripts/test.sh -q -rfE "
                            "-p no:cacheprovider > /root/suite.log 2>&1; status=$?; "
                            "tail -n 150 /root/suite.log; exit $status",
                            check=False, timeout=3000)
        record(group, "scripts/test.sh (bootstrap, ruff, pytest)", time.monotonic() - started)
        ran_on = machine.sh("/root/suite/.venv/bin/python --version", check=False).stdout
    finally:
        machine.poweroff()
        machine.discard()
    counts = [line for line in result.stdout.splitlines() if re.search(r"\d+ (passed|failed)", line)]
    summary = counts[-1].strip("= ") if counts else "no count line"
    record(group, f"result: {summary[:60]}", 0.0)
    assert ran_on.startswith(f"Python {python}."), ran_on
    assert result.returncode == 0, f"the suite failed on Python {python}:\n{result.stdout}"
