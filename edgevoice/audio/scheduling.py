"""Real-time scheduling for the audio threads, when the service grants it.

The capture and playback threads sleep in ALSA for most of a period and must run the
moment the card is ready, even while the board compiles, backs up or runs Home Assistant.
Each asks for ``SCHED_FIFO`` for itself, capped by the process's ``RLIMIT_RTPRIO``
(systemd's ``LimitRTPRIO=``, which lets an unprivileged service do it), and only when
``RLIMIT_RTTIME`` is finite (``LimitRTTIME=``): a real-time thread that spun instead of
blocking (a capture device that returns at once) is then stopped by the kernel instead of
holding a core. Without a finite ``RLIMIT_RTTIME`` the threads stay as they are, and a
refusal (no budget, no privilege) leaves them as they are too.
"""

from __future__ import annotations

import logging
import os
import resource

log = logging.getLogger(__name__)

# Above ordinary real-time helpers (1), below the kernel's threaded IRQs (50).
AUDIO_PRIORITY = 10


def realtime_priority(wanted: int = AUDIO_PRIORITY) -> int:
    """The SCHED_FIFO priority this process may give a thread: 0 when it may not."""
    if not hasattr(os, "SCHED_FIFO"):
        return 0
    rtprio, _ = resource.getrlimit(resource.RLIMIT_RTPRIO)
    rttime, _ = resource.getrlimit(resource.RLIMIT_RTTIME)
    if rttime == resource.RLIM_INFINITY:
        return 0
    if rtprio in (0, resource.RLIM_INFINITY):
        return wanted  # no budget given: only a privileged process will get it
    return max(0, min(wanted, rtprio))


def make_this_thread_realtime(name: str, wanted: int = AUDIO_PRIORITY) -> int:
    """Put the calling thread under SCHED_FIFO if the limits allow; the priority it got
    (0: unchanged). Never raises: an audio thread runs either way."""
    priority = realtime_priority(wanted)
    if priority <= 0:
        log.debug("%s thread: normal scheduling (no LimitRTPRIO/LimitRTTIME)", name)
        return 0
    try:
        # pid 0 is the calling thread on Linux, not the whole process.
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except OSError as exc:
        log.info("%s thread: cannot use SCHED_FIFO %d (%s); normal scheduling", name, priority, exc)
        return 0
    log.info("%s thread: SCHED_FIFO priority %d", name, priority)
    return priority
