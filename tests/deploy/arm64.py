"""The install on arm64 (the Raspberry Pi's architecture), under qemu-user.

A Debian 13 arm64 root filesystem (cached like the others), entered with chroot: the
installer runs as a user would run it, and everything that needs no running systemd is
checked: the Debian packages, the extensions compiled on the spot (pyalsaaudio,
systemd-python), the lgpio wheel for aarch64, `edgevoice --version`, `check-config` and
`devices`. The unit itself cannot run under qemu-user (systemd's credentials and
namespaces need the kernel's real support for the emulated process: status
243/CREDENTIALS, 226/NAMESPACE); systemctl in a chroot ignores start requests.

The work is slow (minutes of emulated dpkg and compilers), so it runs in a background
thread from the start of the session, at the lowest CPU priority, and its own test
waits for it.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.deploy.debian import (
    ARM64_PACKAGES,
    Chroot,
    Log,
    Machine,
    RootfsSpec,
    copy_checkout,
    enable_qemu_binfmt,
    rootfs,
)

RELEASE = "trixie"
GROUP = f"arm64 ({RELEASE}, qemu-user)"
KEY = "AIzaSyCI-arm64-test-key_0123456789abcd"
VENV = "/opt/edgevoice/venv"
# What each check prints, checked by the test.
IMPORTS = (
    "import platform, alsaaudio, systemd._journal, numpy, soxr, pydantic_core, gpiozero; "
    "print(platform.machine(), alsaaudio.__file__, systemd._journal.__file__)"
)

# lgpio (GPIO on the Pi 5): a PyPI wheel for aarch64 up to Python 3.12, python3-lgpio on
# Raspberry Pi OS; plain Debian 13 (Python 3.13) has neither.
LGPIO = "import _lgpio; print(_lgpio.__file__)"


@dataclass
class Arm64Result:
    log: Path
    timings: dict[str, float] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    error: BaseException | None = None


def install_on_arm64(workdir: Path) -> Arm64Result:
    workdir.mkdir(parents=True, exist_ok=True)
    log = Log(workdir / "arm64.log")
    result = Arm64Result(log.path)

    def step(name: str, started: float) -> None:
        result.timings[name] = time.monotonic() - started

    try:
        started = time.monotonic()
        lower, cached = rootfs(RootfsSpec(RELEASE, arch="arm64", packages=ARM64_PACKAGES), log)
        step("root filesystem (cached)" if cached else
             "root filesystem (mmdebstrap under qemu-user, not cached)", started)
        enable_qemu_binfmt(log)  # the cache outlives a reboot; the registration does not
        machine = Machine("arm64", lower, workdir)  # only for its copy-on-write mount
        machine.mount()
        try:
            copy_checkout(machine.path("/root/edgevoice"))
            with Chroot(machine.root, log) as chroot:
                started = time.monotonic()
                install = chroot.sh("cd /root/edgevoice && scripts/install.sh", input=KEY + "\n",
                                    timeout=2400)
                step("install.sh (apt, venv, compiled extensions, lgpio)", started)
                result.outputs["install"] = install.stdout + install.stderr
                started = time.monotonic()
                result.outputs["version"] = chroot.sh(f"{VENV}/bin/edgevoice --version").stdout
                result.outputs["imports"] = chroot.sh(f"{VENV}/bin/python -c {_quote(IMPORTS)}").stdout
                lgpio = chroot.sh(f"{VENV}/bin/python -c {_quote(LGPIO)}", check=False)
                result.outputs["lgpio"] = lgpio.stdout.strip() if lgpio.returncode == 0 else ""
                result.outputs["check-config"] = chroot.sh(
                    f"CREDENTIALS_DIRECTORY=/etc/edgevoice/credentials {VENV}/bin/edgevoice check-config"
                ).stdout
                devices = chroot.sh(f"{VENV}/bin/edgevoice devices", check=False)
                result.outputs["devices"] = f"exit {devices.returncode}\n{devices.stdout}{devices.stderr}"
                enabled = chroot.sh("systemctl is-enabled edgevoice.service", check=False)
                result.outputs["enabled"] = enabled.stdout.strip()
                step("edgevoice --version, imports, check-config, devices", started)
        finally:
            machine.poweroff()  # not booted: only unmounts
            machine.discard()
    except BaseException as exc:  # reported by the test, with the log
        result.error = exc
    return result


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


class BackgroundArm64:
    """install_on_arm64 in a thread; :meth:`join` waits for it and returns its result."""

    def __init__(self, workdir: Path) -> None:
        self._result: Arm64Result | None = None
        self._thread = threading.Thread(target=self._run, args=(workdir,), name="arm64-install", daemon=True)
        self._thread.start()

    def _run(self, workdir: Path) -> None:
        # Linux keeps a nice value per thread and children inherit it: every emulated
        # process this thread starts yields the CPU to the tests running meanwhile.
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        self._result = install_on_arm64(workdir)

    def join(self, timeout: float) -> Arm64Result:
        self._thread.join(timeout)
        if self._thread.is_alive() or self._result is None:
            raise TimeoutError(f"the arm64 install did not finish in {timeout} s")
        return self._result
