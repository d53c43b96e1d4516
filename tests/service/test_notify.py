"""SystemdNotifier against a real AF_UNIX datagram socket, through libsystemd's sd_notify."""

from __future__ import annotations

import logging
import os
import time

import pytest

from edgevoice.service.notify import SystemdNotifier


def test_disabled_without_notify_socket_sends_nothing(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = SystemdNotifier({"WATCHDOG_USEC": "20000000"})
    assert notifier.enabled is False
    assert notifier.watchdog_interval_s is None
    # No socket to send to: each call must simply return.
    notifier.ready("ready")
    notifier.status("x")
    notifier.watchdog()
    notifier.stopping()


def test_ready_status_stopping_datagrams(notify_socket):
    notifier = SystemdNotifier()
    assert notifier.enabled
    notifier.ready("listening for the button")
    ready = notify_socket.receive()
    assert ready.fields == {"READY": "1", "STATUS": "listening for the button"}
    # systemd attributes the message to the sender's pid (NotifyAccess=main checks it).
    assert ready.pid == os.getpid()

    notifier.status("connecting")
    notifier.status("connecting")  # a repeat is not sent
    notifier.status("online")
    notifier.stopping()
    notifier.errno(5)
    messages = [notify_socket.receive() for _ in range(4)]
    assert [m.raw for m in messages] == [
        "STATUS=connecting",
        "STATUS=online",
        "STOPPING=1",
        "ERRNO=5",
    ]
    assert notify_socket.drain() == []


def test_status_is_kept_on_one_line(notify_socket):
    notifier = SystemdNotifier()
    notifier.status("bad\nREADY=1 injection")
    message = notify_socket.receive()
    assert message.fields == {"STATUS": "bad READY=1 injection"}


def test_reloading_sends_monotonic_usec(notify_socket):
    notifier = SystemdNotifier()
    before = time_usec()
    notifier.reloading()
    message = notify_socket.receive()
    assert message["RELOADING"] == "1"
    assert before <= int(message["MONOTONIC_USEC"]) <= time_usec()


def time_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def test_watchdog_interval_is_a_third_and_pings(notify_socket, monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "20000000")
    notifier = SystemdNotifier()
    assert notifier.watchdog_interval_s == pytest.approx(20 / 3)
    notifier.watchdog()
    assert notify_socket.receive().raw == "WATCHDOG=1"


@pytest.mark.parametrize(
    ("watchdog_pid", "expected"),
    [(None, 10 / 3), ("own", 10 / 3), ("1", None), ("garbage", None)],
)
def test_watchdog_pid_is_honoured(notify_socket, watchdog_pid, expected):
    environ = {"NOTIFY_SOCKET": notify_socket.path, "WATCHDOG_USEC": "10000000"}
    if watchdog_pid is not None:
        environ["WATCHDOG_PID"] = str(os.getpid()) if watchdog_pid == "own" else watchdog_pid
    notifier = SystemdNotifier(environ)
    if expected is None:
        assert notifier.watchdog_interval_s is None
        notifier.watchdog()  # not ours to ping: nothing is sent
        notifier.status("marker")
        assert notify_socket.receive().raw == "STATUS=marker"
    else:
        assert notifier.watchdog_interval_s == pytest.approx(expected)


@pytest.mark.parametrize("value", ["0", "-5", "soon", ""])
def test_bad_watchdog_usec_disables_the_watchdog(notify_socket, value):
    notifier = SystemdNotifier({"NOTIFY_SOCKET": notify_socket.path, "WATCHDOG_USEC": value})
    assert notifier.watchdog_interval_s is None


def test_environ_with_a_different_socket_is_refused(notify_socket):
    with pytest.raises(ValueError, match="NOTIFY_SOCKET"):
        SystemdNotifier({"NOTIFY_SOCKET": "/somewhere/else"})


def test_send_failure_never_raises_and_logs_once(monkeypatch, tmp_path, caplog):
    # A socket path nobody listens on: sd_notify fails with ENOENT.
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    notifier = SystemdNotifier()
    with caplog.at_level(logging.DEBUG, logger="edgevoice.service.notify"):
        notifier.ready("x")
        notifier.status("y")
        notifier.stopping()
    failures = [r for r in caplog.records if "sd_notify failed" in r.getMessage()]
    assert len(failures) == 1
    assert failures[0].levelno == logging.DEBUG


def test_repr_is_short_and_safe(notify_socket):
    assert repr(SystemdNotifier()) == "SystemdNotifier(enabled=True, watchdog_interval_s=None)"
