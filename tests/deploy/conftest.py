"""The deploy tests: the installer and the unit under a real systemd, on Debian 13 and 12,
the install on arm64 under qemu-user, and the test suite on the other Python.

They need root, ``debootstrap``, ``systemd-nspawn`` and ``qemu-user-static`` (all
installed by scripts/bootstrap.sh). Where those are missing the tests are skipped, unless
``EDGEVOICE_REQUIRE_DEPLOY=1`` (CI sets it), which makes that a failure. Set
``EDGEVOICE_DEPLOY_TESTS=skip`` to leave them out (the suite run inside a container does).

They run last (they take minutes), each Debian release once per session, and print a
table of how long every step took.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.deploy.debian import missing_host_tools, new_workdir

DEPLOY_DIR = Path(__file__).resolve().parent
# Release -> step -> seconds, in the order the steps ran.
TIMINGS: dict[str, dict[str, float]] = {}
_timings_lock = threading.Lock()


def record(group: str, step: str, seconds: float) -> None:
    with _timings_lock:
        TIMINGS.setdefault(group, {})[step] = seconds


@contextmanager
def timed(group: str, step: str) -> Iterator[None]:
    """Time a step for the summary table (recorded even when the step fails)."""
    started = time.monotonic()
    try:
        yield
    finally:
        record(group, step, time.monotonic() - started)


def why_deploy_tests_cannot_run(arm64: bool = False) -> str | None:
    if os.environ.get("EDGEVOICE_DEPLOY_TESTS") == "skip":
        return "EDGEVOICE_DEPLOY_TESTS=skip"
    if os.geteuid() != 0:
        return "the deploy tests need root (debootstrap, systemd-nspawn, mount)"
    missing = missing_host_tools(arm64)
    if missing:
        return f"missing {', '.join(missing)} (scripts/bootstrap.sh installs them)"
    return None


def require_deploy_prerequisites(arm64: bool = False) -> None:
    reason = why_deploy_tests_cannot_run(arm64)
    if reason is None:
        return
    if os.environ.get("EDGEVOICE_REQUIRE_DEPLOY") == "1" and "EDGEVOICE_DEPLOY_TESTS" not in reason:
        pytest.fail(f"EDGEVOICE_REQUIRE_DEPLOY=1 but the deploy tests cannot run: {reason}")
    pytest.skip(reason)


# The deploy modules in the order they run, after everything else: the arm64 install runs
# in the background from the start of the session (niced), the suite on the other Python
# overlaps its last minutes, and the arm64 test joins it last.
_MODULE_ORDER = ["test_service_under_systemd.py", "test_suite_on_other_python.py", "test_arm64_install.py"]
_ARM64_JOB: list = []  # the background job, once started


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = Path(str(item.fspath))
        if path.parent != DEPLOY_DIR:
            return -1
        return _MODULE_ORDER.index(path.name) if path.name in _MODULE_ORDER else len(_MODULE_ORDER)

    # A stable sort: everything else keeps its order and goes first.
    items[:] = sorted(items, key=rank)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TIMINGS:
        return
    write = terminalreporter.write_line
    terminalreporter.section("deploy timings (seconds)")
    for group, steps in TIMINGS.items():
        write(f"{group}:")
        for step, seconds in steps.items():
            write(f"  {step:<56} {seconds:8.1f}")


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the arm64 install as soon as the session knows its tests, if its test is
    selected and can run: its twenty-odd minutes of emulation (at the lowest CPU priority,
    so the timing-sensitive host tests keep their cores) then overlap everything else."""
    from tests.deploy.arm64 import BackgroundArm64

    selected = any(Path(str(item.fspath)).name == "test_arm64_install.py" for item in session.items)
    if session.config.option.collectonly or _ARM64_JOB:
        return
    if selected and why_deploy_tests_cannot_run(arm64=True) is None:
        _ARM64_JOB.append(BackgroundArm64(new_workdir("deploy-arm64")))


def pytest_sessionfinish(session: pytest.Session) -> None:
    for job in _ARM64_JOB:
        job.join(timeout=3600)  # never leave its mounts and processes behind


@pytest.fixture(scope="session")
def arm64_in_background():
    """The arm64 install started at collection, or None where it cannot run."""
    return _ARM64_JOB[0] if _ARM64_JOB else None
