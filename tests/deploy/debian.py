"""Debian root filesystems, booted with systemd-nspawn or entered under qemu-user.

The deploy tests install EdgeVoice the way a user does (``scripts/install.sh`` from a
checkout) on a minimal Debian with a real systemd as PID 1, because that is what the
unit and the installer meet on a Raspberry Pi. What is built here:

- :func:`rootfs`: a ``debootstrap --variant=minbase`` root filesystem, cached under
  ``/var/cache/edgevoice-ci`` by release, architecture, mirror and package list (a
  cold build takes about a minute on amd64, several under qemu-user). The host's Debian
  mirror, apt settings, extra CA certificates and pip configuration are copied in, so
  apt and pip inside reach the same package registries as the host, and nothing else.
- :class:`Machine`: a copy-on-write instance of a cached root filesystem (overlayfs),
  booted with ``systemd-nspawn -b``. Commands run inside with ``nsenter``. The container
  shares the host's network namespace: it reaches exactly what the host reaches (the
  package registries and loopback), and the Live API emulator it runs listens on a
  loopback port chosen here.
- :class:`Chroot`: an arm64 root filesystem entered with ``chroot`` under qemu-user, for
  the install checks that need no running systemd.

Everything is logged to the files under the instance's directory for post-mortems.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

CACHE_ROOT = Path(os.environ.get("EDGEVOICE_CI_CACHE", "/var/cache/edgevoice-ci"))
# Instances live here, not in pytest's temporary directories: pytest deletes old ones of
# other runs, and nothing may delete a directory something is still mounted in.
WORK_ROOT = Path(os.environ.get("EDGEVOICE_CI_WORK", "/var/tmp/edgevoice-ci"))
REPO = Path(__file__).resolve().parents[2]

# What the recipe in the README assumes of a minimal system, plus what the harness uses.
BASE_PACKAGES = ("systemd", "systemd-sysv", "dbus", "ca-certificates", "python3", "procps",
                 "iproute2", "git", "util-linux")
# The sound stand-in: a PulseAudio null sink behind ALSA's default device. ALSA's own
# `null` PCM has no timing; a null sink is paced by PulseAudio's clock like a card.
SOUND_STANDIN_PACKAGES = ("pulseaudio", "libasound2-plugins", "alsa-utils")
# The arm64 root filesystem is only entered with chroot: no sound stand-in, no dbus.
ARM64_PACKAGES = ("systemd", "ca-certificates", "python3", "procps")
# Bump when the way a root filesystem is prepared changes (it is part of the cache key).
RECIPE_VERSION = "1"

INSIDE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "TERM": "dumb",
    "SYSTEMD_PAGER": "",
    "SYSTEMD_COLORS": "0",
}


class MachineError(RuntimeError):
    """The harness could not build, boot or drive a machine (the message says which step)."""


# -- host facts ------------------------------------------------------------------------------


def host_mirror() -> str:
    """The Debian mirror the host's apt uses (deb822 ``URIs:`` or one-line ``deb`` sources)."""
    override = os.environ.get("EDGEVOICE_CI_MIRROR")
    if override:
        return override
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        if path.suffix not in ("", ".list", ".sources") or not path.is_file():
            continue
        text = path.read_text(errors="replace")
        for match in re.finditer(r"^\s*(?:URIs:\s*|deb\s+(?:\[[^\]]*\]\s+)?)(\S+)", text, re.MULTILINE):
            uri = match.group(1).rstrip("/")
            if uri.endswith("/debian"):
                return uri
    return "http://deb.debian.org/debian"


def missing_host_tools(arm64: bool = False) -> list[str]:
    tools = ["debootstrap", "systemd-nspawn", "nsenter", "mount"]
    if arm64:
        tools += ["update-binfmts"]
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if arm64 and not (shutil.which("qemu-aarch64-static") or shutil.which("qemu-aarch64")):
        missing.append("qemu-aarch64-static")
    return missing


# -- logging and running ---------------------------------------------------------------------


@dataclass
class Log:
    """Appends every command and its output to one file; the tests point at it on failure."""

    path: Path

    def run(self, argv: Sequence[str], *, timeout: float, check: bool = True, input: str | None = None,
            env: dict[str, str] | None = None, shown: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``argv``; ``shown`` is how the log and errors name it (default: argv)."""
        started = time.monotonic()
        command = shown or shlex.join(argv)
        try:
            result = subprocess.run(list(argv), input=input, capture_output=True, text=True,
                                    timeout=timeout, env=env, errors="replace")
        except subprocess.TimeoutExpired as exc:
            output = f"{exc.stdout or ''}{exc.stderr or ''}"
            self.write(f"$ {command}\n(timed out after {timeout} s)\n{output}")
            raise MachineError(f"{command} timed out after {timeout} s (log: {self.path})") from None
        elapsed = time.monotonic() - started
        self.write(f"$ {command}  # exit {result.returncode} in {elapsed:.1f} s\n"
                   f"{result.stdout}{result.stderr}")
        if check and result.returncode != 0:
            tail = (result.stdout + result.stderr)[-3000:]
            raise MachineError(f"{command} failed with exit {result.returncode} "
                               f"(log: {self.path}):\n{tail}")
        return result

    def write(self, text: str) -> None:
        with self.path.open("a") as log:
            log.write(text if text.endswith("\n") else text + "\n")


# -- root filesystems ------------------------------------------------------------------------


@dataclass(frozen=True)
class RootfsSpec:
    release: str  # "trixie" (Debian 13) or "bookworm" (Debian 12)
    arch: str = "amd64"
    packages: tuple[str, ...] = BASE_PACKAGES + SOUND_STANDIN_PACKAGES

    def key(self, mirror: str) -> str:
        text = "\n".join([RECIPE_VERSION, self.release, self.arch, mirror, *sorted(self.packages)])
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def host_arch() -> str:
    return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                          check=True).stdout.strip()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def rootfs(spec: RootfsSpec, log: Log) -> tuple[Path, bool]:
    """The cached root filesystem for ``spec``, built if missing. Returns (path, was_cached).

    Built into a temporary directory beside the cache entry and renamed into place when
    complete, so an interrupted build never leaves a half root filesystem in the cache.
    """
    mirror = host_mirror()
    name = f"{spec.release}-{spec.arch}-{spec.key(mirror)}"
    target = CACHE_ROOT / "rootfs" / name
    with _locked(CACHE_ROOT / "rootfs" / f"{name}.lock"):
        if (target / ".edgevoice-ci-complete").exists():
            return target, True
        for stale in (CACHE_ROOT / "rootfs").glob(f"{spec.release}-{spec.arch}-*"):
            if stale.is_dir() and stale != target:
                shutil.rmtree(stale, ignore_errors=True)  # an older recipe or package list
        building = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=CACHE_ROOT / "rootfs"))
        try:
            _debootstrap(spec, mirror, building, log)
            _prepare_for_ci(building)
            (building / ".edgevoice-ci-complete").write_text(f"{spec}\nmirror={mirror}\n")
            building.rename(target)
        except BaseException:
            _unmount_below(building, log)  # a second stage cut short leaves /proc, /sys mounted
            shutil.rmtree(building, ignore_errors=True)
            raise
        return target, False


def _unmount_below(directory: Path, log: Log) -> None:
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    below = [m for m in mounts if m == str(directory) or m.startswith(f"{directory}/")]
    for mount in sorted(below, key=len, reverse=True):
        log.run(["umount", "--lazy", mount], timeout=60, check=False)


def _debootstrap(spec: RootfsSpec, mirror: str, directory: Path, log: Log) -> None:
    include = ",".join(spec.packages)
    if spec.arch == host_arch():
        log.run(["debootstrap", "--variant=minbase", f"--include={include}", spec.release,
                 str(directory), mirror], timeout=1800)
        return
    enable_qemu_binfmt(log)
    if shutil.which("mmdebstrap"):
        # apt on the host resolves and downloads; only the package scripts run emulated.
        # Several times faster than debootstrap's second stage, a shell script that runs
        # thousands of emulated processes.
        log.run(["mmdebstrap", "--mode=root", "--variant=minbase", f"--arch={spec.arch}",
                 f"--include={include}", spec.release, str(directory), mirror], timeout=3600)
        return
    base = ["debootstrap", "--variant=minbase", f"--include={include}", f"--arch={spec.arch}"]
    # A foreign architecture: unpack here, then run the package scripts under qemu-user.
    log.run([*base, "--foreign", spec.release, str(directory), mirror], timeout=1800)
    # Debian registers qemu with the fix-binary flag: the host's binary serves the chroot.
    # Older registrations look for it inside, so it goes there as well.
    static = shutil.which("qemu-aarch64-static")
    if static:
        shutil.copy2(static, directory / "usr/bin/qemu-aarch64-static")
    log.run(["chroot", str(directory), "/debootstrap/debootstrap", "--second-stage"], timeout=3600)


def enable_qemu_binfmt(log: Log) -> None:
    binfmt = Path("/proc/sys/fs/binfmt_misc")
    if not (binfmt / "register").exists():
        log.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(binfmt)], timeout=30)
    if not (binfmt / "qemu-aarch64").exists():
        log.run(["update-binfmts", "--enable", "qemu-aarch64"], timeout=30)


def adopt_host_registry_settings(directory: Path, log: Log) -> None:
    """Let apt and pip inside reach the registries the way the host does, and nothing more:
    the host's apt settings, its extra CA certificates and its pip configuration. Done on
    every instance, not in the cache, so a change on the host needs no rebuild."""
    apt_conf = directory / "etc/apt/apt.conf.d"
    for conf in sorted(Path("/etc/apt/apt.conf.d").glob("99*")):
        shutil.copy2(conf, apt_conf / conf.name)
    extra_cas = sorted(Path("/usr/local/share/ca-certificates").glob("**/*.crt"))
    for ca in extra_cas:
        destination = directory / "usr/local/share/ca-certificates" / ca.relative_to(
            "/usr/local/share/ca-certificates")
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ca, destination)
    if extra_cas:
        log.run(["chroot", str(directory), "update-ca-certificates"], timeout=600)
    # pip's site-wide configuration, with the files it names (constraints) beside it.
    for pip_conf in (Path("/etc/pip.conf"), *sorted(Path("/etc/xdg/pip").glob("*"))):
        if pip_conf.is_file():
            destination = directory / pip_conf.relative_to("/")
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(pip_conf, destination)


def _prepare_for_ci(directory: Path) -> None:
    # Packages installed later (the installer's, the test suite's) must not start their
    # own services in the shared network namespace (mosquitto on the host's port 1883).
    policy = directory / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\n# edgevoice CI: package scripts start no services\nexit 101\n")
    policy.chmod(0o755)
    # The network is the host's: no resolver or network setup of our own in the container.
    for unit in ("systemd-networkd.service", "systemd-resolved.service", "systemd-timesyncd.service",
                 "apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer", "fstrim.timer"):
        (directory / "etc/systemd/system" / unit).unlink(missing_ok=True)
        (directory / "etc/systemd/system" / unit).symlink_to("/dev/null")


def copy_checkout(destination: Path) -> None:
    """The files of this checkout (tracked and new, not ignored): what `git clone` would
    give a user, plus uncommitted work, so CI tests the tree it runs in."""
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], capture_output=True, check=True).stdout
    destination.mkdir(parents=True, exist_ok=True)
    for name in filter(None, listed.decode().split("\0")):
        source = REPO / name
        if not source.is_file() or source.is_symlink():
            continue
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


# -- booted machines -------------------------------------------------------------------------


@dataclass
class Machine:
    """A copy-on-write instance of a cached root filesystem, booted with systemd as PID 1."""

    name: str
    lower: Path
    workdir: Path
    log: Log = field(init=False)
    root: Path = field(init=False)
    _nspawn: subprocess.Popen[bytes] | None = field(default=None, init=False)
    _console: object | None = field(default=None, init=False)
    pid1: int | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log = Log(self.workdir / "commands.log")
        self.root = self.workdir / "root"

    # -- lifecycle ---------------------------------------------------------------------------

    def mount(self) -> None:
        upper, work = self.workdir / "upper", self.workdir / "work"
        for directory in (upper, work, self.root):
            directory.mkdir(exist_ok=True)
        self.log.run(["mount", "-t", "overlay", f"edgevoice-ci-{self.name}", "-o",
                      f"lowerdir={self.lower},upperdir={upper},workdir={work}", str(self.root)],
                     timeout=60)
        adopt_host_registry_settings(self.root, self.log)

    def boot(self, timeout: float = 120.0) -> None:
        """Boot with systemd-nspawn as the facts checked on these machines require:
        --keep-unit --register=no (no machined on the host), the unified cgroup hierarchy
        (device policies are enforced only there) and --system-call-filter=bpf (systemd
        inside loads BPF programs for them)."""
        console = (self.workdir / "console.log").open("ab")
        self._console = console
        env = dict(os.environ, SYSTEMD_NSPAWN_UNIFIED_HIERARCHY="1")
        argv = ["systemd-nspawn", "--quiet", "--keep-unit", "--register=no", "--system-call-filter=bpf",
                f"--machine=edgevoice-ci-{self.name}", "--resolv-conf=copy-host", "--timezone=off",
                "-D", str(self.root), "-b"]
        self.log.write(f"$ {shlex.join(argv)} &")
        self._nspawn = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=console, stderr=console,
                                        env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while self.pid1 is None:
            if self._nspawn.poll() is not None:
                raise MachineError(f"systemd-nspawn exited with {self._nspawn.returncode} "
                                   f"(console: {self.workdir / 'console.log'})")
            if time.monotonic() > deadline:
                raise MachineError("the container's systemd did not appear")
            self.pid1 = _find_container_init(self._nspawn.pid)
            if self.pid1 is None:
                time.sleep(0.05)  # polling /proc for a process that has no other signal
        # Blocks until the boot transaction is done; "degraded" still means booted. Until
        # systemd's private socket exists, systemctl cannot ask: it exits at once, printing
        # nothing or "offline" (seen in CI under load), so both mean "ask again".
        not_yet = ("", "offline")
        state = ""
        while state in not_yet and time.monotonic() < deadline:
            state = self.sh("systemctl is-system-running --wait", check=False,
                            timeout=timeout).stdout.strip()
            if state in not_yet:
                time.sleep(0.05)  # no event tells the host that the socket now exists
        if state not in ("running", "degraded"):
            raise MachineError(f"the container booted to state {state!r} (console: "
                               f"{self.workdir / 'console.log'})")
        if state == "degraded":
            self.log.write(self.sh("systemctl --failed --no-legend", check=False).stdout)

    def poweroff(self, timeout: float = 60.0) -> None:
        if self._nspawn is not None and self._nspawn.poll() is None:
            self.sh("systemctl poweroff --no-block", check=False)
            try:
                self._nspawn.wait(timeout)
            except subprocess.TimeoutExpired:
                self.log.write("the container did not power off in time: killing systemd-nspawn")
                os.killpg(self._nspawn.pid, signal.SIGKILL)
                self._nspawn.wait(30)
        if self._console is not None:
            self._console.close()  # type: ignore[attr-defined]
        if self.root.is_mount():
            self.log.run(["umount", "--lazy", str(self.root)], timeout=60, check=False)

    def discard(self) -> None:
        """Remove the instance's files once nothing is mounted there; keep its logs."""
        _unmount_below(self.workdir, self.log)
        for directory in (self.root, self.workdir / "upper", self.workdir / "work"):
            shutil.rmtree(directory, ignore_errors=True)

    # -- inside ------------------------------------------------------------------------------

    def sh(self, script: str, *, check: bool = True, timeout: float = 120.0,
           input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a shell script inside as root, with a clean environment (not the host's)."""
        assert self.pid1 is not None, "not booted"
        env_args = [f"{name}={value}" for name, value in INSIDE_ENV.items()]
        argv = ["nsenter", "-t", str(self.pid1), "-a", "--", "/usr/bin/env", "-i", *env_args,
                "/bin/bash", "-c", script]
        return self.log.run(argv, timeout=timeout, check=check, input=input,
                            shown=f"[{self.name}] {script}")

    def path(self, inside: str) -> Path:
        """A path inside, seen from the host (through the overlay mount)."""
        return self.root / inside.lstrip("/")

    def show(self, unit: str, *properties: str) -> dict[str, str]:
        out = self.sh(f"systemctl show {shlex.quote(unit)} "
                      + " ".join(f"-p {p}" for p in properties)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def wait_for(self, what: str, predicate_script: str, timeout: float) -> str:
        """Wait until ``predicate_script`` succeeds inside (checked twice a second); its
        output. A bounded wait on a condition, not a sleep standing in for one."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.sh(predicate_script, check=False)
            if result.returncode == 0:
                return result.stdout
            if time.monotonic() > deadline:
                raise MachineError(f"timed out after {timeout} s waiting for {what} "
                                   f"(last output: {(result.stdout + result.stderr)[-800:]!r})")
            time.sleep(0.5)


def new_workdir(name: str) -> Path:
    """A fresh directory for one instance (its logs stay there after :meth:`Machine.discard`)."""
    WORK_ROOT.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=WORK_ROOT))


def _find_container_init(nspawn_pid: int) -> int | None:
    """The container's PID 1 as the host sees it: a `systemd` descended from nspawn."""
    children = {nspawn_pid}
    for _ in range(3):  # nspawn -> (outer child) -> init
        found = set()
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                stat_fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
                comm = (proc / "comm").read_text().strip()
            except OSError:
                continue
            if int(stat_fields[1]) in children:
                if comm == "systemd":
                    return int(proc.name)
                found.add(int(proc.name))
        if not found:
            return None
        children = found
    return None


# -- arm64 under qemu-user -------------------------------------------------------------------


@dataclass
class Chroot:
    """A root filesystem entered with chroot (under qemu-user for a foreign architecture):
    /proc, /sys and /dev bound in, the host's resolver copied."""

    root: Path
    log: Log
    _mounts: list[Path] = field(default_factory=list)

    def __enter__(self) -> Chroot:
        for source, kind in (("/proc", "proc"), ("/sys", "sysfs"), ("/dev", "tmpfs")):
            target = self.root / source.lstrip("/")
            target.mkdir(parents=True, exist_ok=True)
            self.log.run(["mount", "-t", kind, kind, str(target)], timeout=30)
            self._mounts.append(target)
        # A /dev of its own with the few nodes apt, dpkg and pip use, never the host's
        # /dev bound in: a directory left mounted by a crash and later deleted with
        # `rm -r` would take the host's device nodes with it.
        for name, major, minor in (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8),
                                   ("urandom", 1, 9), ("tty", 5, 0)):
            node = self.root / "dev" / name
            os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
            node.chmod(0o666)
        resolv = self.root / "etc/resolv.conf"
        resolv.unlink(missing_ok=True)
        shutil.copy2("/etc/resolv.conf", resolv)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for target in reversed(self._mounts):
            self.log.run(["umount", "--lazy", str(target)], timeout=30, check=False)
        self._mounts.clear()

    def sh(self, script: str, *, check: bool = True, timeout: float = 1200.0,
           input: str | None = None) -> subprocess.CompletedProcess[str]:
        env = dict(INSIDE_ENV)
        return self.log.run(["chroot", str(self.root), "/bin/bash", "-c", script], timeout=timeout,
                            check=check, input=input, env=env, shown=f"[chroot] {script}")
