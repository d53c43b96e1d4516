"""Watchdog: the sans-IO policy, real threads blocking on real file descriptors, and the
asyncio task pinging a real NOTIFY_SOCKET."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import signal
import subprocess
import sys
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgevoice.service.notify import SystemdNotifier
from edgevoice.service.watchdog import (
    Heartbeat,
    HeartbeatSample,
    WatchdogPolicy,
    run_watchdog,
)


class FakeClock:
    """A clock the test moves; ``calls`` lets a test wait for the watchdog's next turn."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.calls = 0
        self.condition = threading.Condition()

    def __call__(self) -> float:
        with self.condition:
            self.calls += 1
            self.condition.notify_all()
            return self.now

    def wait_calls(self, count: int, timeout: float = 5.0) -> None:
        with self.condition:
            assert self.condition.wait_for(lambda: self.calls >= count, timeout), "watchdog stuck"


def sample(name, last, *, idle=False, alive=None):
    return HeartbeatSample(name=name, last_progress=last, idle=idle, thread_alive=alive)


# -- policy --------------------------------------------------------------------------------


def test_policy_pings_while_all_progress():
    policy = WatchdogPolicy(stall_after_s=5)
    verdict = policy.evaluate([sample("capture", 99.0), sample("playback", 96.0)], now=100.0)
    assert verdict.ping
    assert verdict.stalled == verdict.newly_stalled == verdict.recovered == ()


def test_policy_names_the_stalled_component_once_and_its_recovery():
    policy = WatchdogPolicy(stall_after_s=5)
    first = policy.evaluate([sample("capture", 90.0), sample("playback", 99.0)], now=100.0)
    assert not first.ping
    assert [s.name for s in first.newly_stalled] == ["capture"]
    assert first.newly_stalled[0].reason == "no progress for 10.0 s"
    second = policy.evaluate([sample("capture", 90.0), sample("playback", 100.0)], now=101.0)
    assert not second.ping
    assert second.newly_stalled == ()  # already reported
    assert [s.name for s in second.stalled] == ["capture"]
    third = policy.evaluate([sample("capture", 101.5), sample("playback", 101.0)], now=102.0)
    assert third.ping
    assert third.recovered == ("capture",)


def test_policy_dead_thread_is_a_stall_even_when_idle():
    policy = WatchdogPolicy(stall_after_s=5)
    verdict = policy.evaluate([sample("playback", 100.0, idle=True, alive=False)], now=100.0)
    assert not verdict.ping
    assert verdict.stalled[0].reason == "its thread has exited"


def test_policy_reports_a_silent_component_again_when_its_thread_dies():
    policy = WatchdogPolicy(stall_after_s=5)
    silent = policy.evaluate([sample("capture", 90.0, alive=True)], now=100.0)
    assert [s.kind for s in silent.newly_stalled] == ["silent"]
    assert policy.evaluate([sample("capture", 90.0, alive=True)], now=101.0).newly_stalled == ()
    dead = policy.evaluate([sample("capture", 90.0, alive=False)], now=102.0)
    assert [s.kind for s in dead.newly_stalled] == ["exited"]


def test_policy_idle_component_is_not_stalled():
    policy = WatchdogPolicy(stall_after_s=5)
    verdict = policy.evaluate([sample("playback", 0.0, idle=True, alive=True)], now=100.0)
    assert verdict.ping


def test_policy_rejects_nonsense_threshold():
    with pytest.raises(ValueError):
        WatchdogPolicy(stall_after_s=0)


@given(
    st.lists(
        st.tuples(st.floats(0, 200), st.booleans(), st.sampled_from([None, True, False])),
        min_size=0,
        max_size=4,
    ),
    st.floats(100, 300),
)
def test_policy_pings_exactly_when_nothing_is_stalled(states, now):
    policy = WatchdogPolicy(stall_after_s=5)
    samples = [
        sample(f"c{i}", last, idle=idle, alive=alive)
        for i, (last, idle, alive) in enumerate(states)
    ]
    verdict = policy.evaluate(samples, now)
    expected_stalled = {
        s.name
        for s in samples
        if s.thread_alive is False or (not s.idle and now - s.last_progress > 5)
    }
    assert {s.name for s in verdict.stalled} == expected_stalled
    assert verdict.ping == (not expected_stalled)


# -- heartbeat -----------------------------------------------------------------------------


def test_heartbeat_idle_requires_permission_and_beats_on_exit():
    clock = FakeClock()
    strict = Heartbeat(clock=clock)
    with pytest.raises(ValueError), strict.idle():
        pass
    relaxed = Heartbeat(idle_allowed=True, clock=clock)
    with relaxed.idle():
        assert relaxed.sample("p").idle
        clock.now += 60
    after = relaxed.sample("p")
    assert not after.idle
    assert after.last_progress == clock.now


def test_heartbeat_reports_thread_death():
    heartbeat = Heartbeat()
    thread = threading.Thread(target=heartbeat.attach_thread)
    thread.start()
    thread.join()
    assert heartbeat.sample("capture").thread_alive is False
    heartbeat.attach_thread()
    assert heartbeat.sample("capture").thread_alive is True


# -- the task against a real NOTIFY_SOCKET -------------------------------------------------


@pytest.mark.asyncio
async def test_run_watchdog_withholds_pings_while_a_component_is_stalled(
    notify_socket, monkeypatch, caplog
):
    monkeypatch.setenv("WATCHDOG_USEC", "30000")  # 30 ms: ping every 10 ms
    notifier = SystemdNotifier()
    notifier.status("online")
    assert notify_socket.receive().raw == "STATUS=online"
    clock = FakeClock()
    capture, playback = Heartbeat(clock=clock), Heartbeat(clock=clock)
    caplog.set_level(logging.INFO, logger="edgevoice.service.watchdog")
    task = asyncio.create_task(
        run_watchdog(notifier, {"capture": capture, "playback": playback}, clock)
    )
    try:
        loop = asyncio.get_running_loop()
        assert (await loop.run_in_executor(None, notify_socket.receive)).raw == "WATCHDOG=1"

        # The capture thread stops beating (its read() blocked); playback keeps going.
        clock.now += 10
        playback.beat()
        stall = await loop.run_in_executor(
            None,
            lambda: notify_socket.wait_for("STATUS", "stalled: capture (no progress for 10.0 s)"),
        )
        assert stall.pid == os.getpid()
        calls = clock.calls
        await loop.run_in_executor(None, clock.wait_calls, calls + 3)  # three more looks
        assert [m.raw for m in notify_socket.drain()] == []  # ...and no ping among them

        capture.beat()
        restored = await loop.run_in_executor(None, lambda: notify_socket.wait_for("STATUS"))
        assert restored.raw == "STATUS=online"  # the daemon's own status comes back
        assert (await loop.run_in_executor(None, notify_socket.receive)).raw == "WATCHDOG=1"
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    messages = [r.getMessage() for r in caplog.records]
    stalled_logs = [m for m in messages if "is stalled" in m]
    assert stalled_logs == [
        "watchdog: capture (no progress for 10.0 s) is stalled; "
        "withholding the systemd watchdog ping"
    ]
    assert [m for m in messages if "progress again" in m] == [
        "watchdog: capture is making progress again"
    ]


@pytest.mark.asyncio
async def test_real_threads_blocked_read_stalls_idle_playback_does_not(notify_socket, monkeypatch):
    """A capture thread blocked in a real read() on a starved pipe is caught; a playback
    thread waiting with a timeout on an empty queue keeps the daemon alive."""
    monkeypatch.setenv("WATCHDOG_USEC", "60000")  # ping every 20 ms
    notifier = SystemdNotifier()
    capture, playback = Heartbeat(), Heartbeat(idle_allowed=True)
    read_fd, write_fd = os.pipe()
    stop = threading.Event()
    replies: queue.Queue[bytes] = queue.Queue()

    def capture_loop() -> None:
        capture.attach_thread()
        while os.read(read_fd, 640):  # blocks when the "device" stops delivering
            capture.beat()

    def playback_loop() -> None:
        playback.attach_thread()
        while not stop.is_set():
            with contextlib.suppress(queue.Empty):
                replies.get(timeout=0.02)
            playback.beat()  # beats when idle too

    threads = [threading.Thread(target=capture_loop), threading.Thread(target=playback_loop)]
    for thread in threads:
        thread.start()
    policy = WatchdogPolicy(stall_after_s=0.3)
    task = asyncio.create_task(
        run_watchdog(notifier, {"capture": capture, "playback": playback}, policy=policy)
    )
    loop = asyncio.get_running_loop()
    try:
        os.write(write_fd, b"\0" * 640)
        assert (await loop.run_in_executor(None, notify_socket.receive)).raw == "WATCHDOG=1"
        # No more audio: capture blocks in read() and must be named as stalled.
        stall = await loop.run_in_executor(
            None,
            lambda: notify_socket.wait_until(lambda m: m.get("STATUS", "").startswith("stalled")),
        )
        assert stall["STATUS"].startswith("stalled: capture (no progress for")
        assert "playback" not in stall["STATUS"]
        # Audio flows again: pings resume.
        os.write(write_fd, b"\0" * 640)
        await loop.run_in_executor(None, lambda: notify_socket.wait_for("WATCHDOG", "1"))
        # The capture thread dies (device gone, loop exits): stalled even if beats were fresh.
        os.close(write_fd)
        threads[0].join(timeout=5)
        dead = await loop.run_in_executor(
            None,
            lambda: notify_socket.wait_until(lambda m: "thread has exited" in m.get("STATUS", "")),
        )
        assert dead["STATUS"] == "stalled: capture (its thread has exited)"
    finally:
        task.cancel()
        stop.set()
        for thread in threads:
            thread.join(timeout=5)
        os.close(read_fd)


@pytest.mark.asyncio
async def test_run_watchdog_without_systemd_still_logs_stalls(monkeypatch, caplog):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    clock = FakeClock()
    capture = Heartbeat(clock=clock)
    clock.now += 60
    logged = asyncio.Event()

    class Flag(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "is stalled" in record.getMessage():
                logged.set()

    handler = Flag()
    logging.getLogger("edgevoice.service.watchdog").addHandler(handler)
    task = asyncio.create_task(run_watchdog(SystemdNotifier(), {"capture": capture}, clock))
    try:
        await asyncio.wait_for(logged.wait(), timeout=5)
    finally:
        task.cancel()
        logging.getLogger("edgevoice.service.watchdog").removeHandler(handler)


# -- crash dumps ---------------------------------------------------------------------------

CRASH_PROGRAM = """
import os, signal, sys, threading
from edgevoice.service.watchdog import enable_crash_dumps
enable_crash_dumps()
blocked = threading.Event()
def capture_read_that_never_returns():
    blocked.wait()
thread = threading.Thread(target=capture_read_that_never_returns, name="capture", daemon=True)
thread.start()
os.kill(os.getpid(), signal.SIG{sig})
print("survived", flush=True)
"""


@pytest.mark.parametrize(("sig", "dies"), [("ABRT", True), ("USR1", False)])
def test_crash_dump_shows_every_thread(sig, dies):
    result = subprocess.run(
        [sys.executable, "-c", CRASH_PROGRAM.format(sig=sig)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Both the stuck thread and the main thread appear in the dump.
    assert "capture_read_that_never_returns" in result.stderr
    assert "<module>" in result.stderr
    if dies:  # systemd's watchdog SIGABRT still kills the process, as systemd expects
        assert result.returncode == -signal.SIGABRT
        assert "Fatal Python error: Aborted" in result.stderr
    else:
        assert result.returncode == 0
        assert result.stdout == "survived\n"
