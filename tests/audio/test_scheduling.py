"""Real-time scheduling of the audio threads: only with a bounded real-time runtime."""

from __future__ import annotations

import os
import resource
import threading

from edgevoice.audio import scheduling

INFINITE = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)


def run_in_child(rttime: tuple[int, int] | None) -> tuple[int, int]:
    """In a forked child (limits and policies never leak into the test process): lower
    RLIMIT_RTTIME to ``rttime`` if given, make a new thread real-time, and report (the
    priority granted, the thread's policy)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            if rttime is not None:
                resource.setrlimit(resource.RLIMIT_RTTIME, rttime)
            result: list[int] = []

            def body() -> None:
                granted = scheduling.make_this_thread_realtime("test")
                result.extend([granted, os.sched_getscheduler(0)])

            thread = threading.Thread(target=body)
            thread.start()
            thread.join()
            os.write(write, f"{result[0]} {result[1]}".encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    granted, policy = data.split()
    return int(granted), int(policy)


def test_an_unbounded_real_time_runtime_leaves_the_thread_as_it_is():
    # A spinning real-time thread with no RLIMIT_RTTIME would hold a core for ever.
    if resource.getrlimit(resource.RLIMIT_RTTIME) != INFINITE:
        return  # this shell already bounds it; the next test covers that case
    granted, policy = run_in_child(None)
    assert granted == 0 and policy == os.SCHED_OTHER


def test_a_bounded_runtime_gets_sched_fifo_or_a_logged_refusal_never_an_error():
    granted, policy = run_in_child((200_000, 1_000_000))
    if granted:
        assert policy == os.SCHED_FIFO and 0 < granted <= scheduling.AUDIO_PRIORITY
        rtprio, _ = resource.getrlimit(resource.RLIMIT_RTPRIO)
        assert rtprio in (0, resource.RLIM_INFINITY) or granted <= rtprio
    else:
        assert policy == os.SCHED_OTHER  # unprivileged without LimitRTPRIO: refused


def test_the_priority_is_capped_by_rlimit_rtprio(monkeypatch):
    limits = {resource.RLIMIT_RTPRIO: (3, 3), resource.RLIMIT_RTTIME: (200_000, 1_000_000)}
    monkeypatch.setattr(scheduling.resource, "getrlimit", limits.__getitem__)
    assert scheduling.realtime_priority(10) == 3
    limits[resource.RLIMIT_RTTIME] = INFINITE
    assert scheduling.realtime_priority(10) == 0
