"""The bench parent: emulators, worker processes, faults, /proc sampling, the figures.

Each client runs in its own worker process (:mod:`edgevoice_testbed.bench.worker`) so that its
CPU time and RSS are its own; the emulators run here, one per client (same scenario, a
fresh instance each so every client meets every fault), on their own threads
(:class:`~edgevoice_testbed.emulator.EmulatorThread`, audio frames not recorded).

Order of a run: time the import of the daemon's dependencies in fresh interpreters; start
the emulators; start the workers one after another (each start-up timed alone, from spawn
to the READY=1 datagram on a NOTIFY_SOCKET bound here); say "go" to all of them at once;
inject each fault at its moment of the microphone timeline; sample every worker's
/proc/PID/stat and /proc/PID/status at a fixed interval; collect what the probes recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

import edgevoice
from edgevoice.errors import UserError
from edgevoice_testbed.bench import stats
from edgevoice_testbed.bench.script import (
    CHUNK_PATTERNS,
    REPLY_DELAY_MS,
    REPLY_TEXTS,
    SPOKEN_TEXTS,
    Script,
    full_script,
    pattern_script,
    quick_script,
)
from edgevoice_testbed.bench.worker import (
    CAPTURE_RATE,
    REFERENCE_CHUNK_FRAMES,
    REFERENCE_PLAYBACK_PERIODS,
    TESTBED_ONLY_MODULES,
    WorkerSpec,
)
from edgevoice_testbed.sim.fussy import asoundrc_for

# The daemon's runtime dependencies: what a fresh interpreter imports for the start-up floor.
DEPENDENCIES = (
    "google.genai",
    "alsaaudio",
    "numpy",
    "gpiozero",
    "pydantic",
    "pydantic_settings",
    "systemd.daemon",
    "soxr",
    "websockets",
    "httpx2",
)
LIBRARIES = (
    "google-genai",
    "websockets",
    "pyalsaaudio",
    "numpy",
    "gpiozero",
    "pydantic",
    "pydantic-settings",
    "soxr",
    "httpx2",
    "systemd-python",
)
READY_TIMEOUT_S = 60.0
EXIT_TIMEOUT_S = 30.0
# Connected silence at the end of the main conversation, for the idle CPU figure.
IDLE_S_FULL = 60.0
IDLE_S_QUICK = 10.0
# A CPU-bound process that competes with the clients for the cores in the loaded run.
COMPETITOR_CODE = "while True: pass"
# What systemd/edgevoice.service gives the daemon: Nice=-10, LimitRTTIME=200ms:1s,
# LimitRTPRIO=10 (the audio threads then take SCHED_FIFO) and its Environment=. The bench
# gives EdgeVoice's workers the same where it may; the reference runs as a quickstart
# would, unchanged.
UNIT_NICE = -10
UNIT_RTTIME_US = (200_000, 1_000_000)
UNIT_RTPRIO = 10
UNIT_ENVIRONMENT: dict[str, str] = {}  # none today


def unit_scheduling() -> dict[str, Any]:
    """Apply the unit's scheduling limits to this (forked, about to exec) process."""
    applied: dict[str, Any] = {}
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, UNIT_NICE)
        applied["nice"] = UNIT_NICE
    with contextlib.suppress(OSError, ValueError):
        resource.setrlimit(resource.RLIMIT_RTTIME, UNIT_RTTIME_US)
        applied["rttime_us"] = list(UNIT_RTTIME_US)
    with contextlib.suppress(OSError, ValueError):
        resource.setrlimit(resource.RLIMIT_RTPRIO, (UNIT_RTPRIO, UNIT_RTPRIO))
        applied["rtprio"] = UNIT_RTPRIO
    return applied


@dataclass
class BenchOptions:
    quick: bool = False
    isolated: bool = False  # run the clients one after another instead of side by side
    probe_overhead: bool = True  # also run EdgeVoice with its probe off, to compare CPU
    sample_interval_s: float = 0.25
    import_runs: int = 3
    period_ms: int = 20
    prebuffer_ms: int = 100
    fade_ms: float = 5.0
    # Replaces the quick/full script (tests use a shorter one).
    script: Script | None = None
    keep_dir: Path | None = None
    # Connected silence after the conversation (None: 60 s, 10 s with quick).
    idle_s: float | None = None
    # The chunk-pattern servers, and the conversation again beside CPU-bound competitors.
    patterns: bool = True
    competitors: int = 2

    @property
    def idle_seconds(self) -> float:
        if self.idle_s is not None:
            return self.idle_s
        return IDLE_S_QUICK if self.quick else IDLE_S_FULL


@dataclass
class WorkerRun:
    spec: WorkerSpec
    directory: Path
    emulator: Any
    idle_s: float = 0.0  # the connected silence at the end of the script
    spawn_t: float = 0.0
    ready_t: float | None = None
    started_t: float | None = None
    ended_t: float | None = None
    process: asyncio.subprocess.Process | None = None
    samples: list[stats.ResourceSample] = field(default_factory=list)
    faults: list[dict[str, Any]] = field(default_factory=list)
    result: dict[str, Any] | None = None
    notify: socket.socket | None = None
    notifications: int = 0
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Event = field(default_factory=asyncio.Event)


def render_texts() -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """The user's utterances at 16 kHz, and the length of every reply (seconds), rendered
    with the voice the emulator will use (espeak-ng, or tones without it)."""
    import soxr

    from edgevoice_testbed.emulator.voice import OUTPUT_RATE, make_voice

    voice = make_voice("espeak")
    speech = {}
    for text in SPOKEN_TEXTS:
        samples = np.frombuffer(voice.render(text), dtype="<i2")
        speech[text] = np.asarray(soxr.resample(samples, OUTPUT_RATE, CAPTURE_RATE), dtype="<i2")
    replies = {text: len(voice.render(text)) / 2 / OUTPUT_RATE for text in REPLY_TEXTS}
    return speech, replies


def microphone_audio(script: Script, speech: dict[str, np.ndarray]) -> np.ndarray:
    """What the microphone hears: each utterance at its place, silence elsewhere."""
    total = round((script.duration_s + 1.0) * CAPTURE_RATE)
    audio = np.zeros(total, dtype="<i2")
    for exchange in script.exchanges:
        pcm = speech[exchange.text]
        start = round(exchange.speech_s * CAPTURE_RATE)
        audio[start : start + len(pcm)] = pcm[: max(0, total - start)]
    return audio


def read_proc(pid: int) -> stats.ResourceSample | None:
    """CPU seconds (all threads) and RSS of a live process, from /proc."""
    t = time.monotonic()
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    # Fields after the command name (which may hold spaces) start at field 3.
    fields = stat[stat.rindex(")") + 2 :].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu_s = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    values = {}
    for line in status.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024.0
    return stats.ResourceSample(t, cpu_s, values.get("VmRSS", 0.0), values.get("VmHWM", 0.0))


def time_imports(python: str, env: dict[str, str], runs: int) -> list[float]:
    """Seconds from spawn to exit of a fresh interpreter importing the daemon's dependencies."""
    hidden = ", ".join(f"{name!r}: None" for name in TESTBED_ONLY_MODULES)
    code = f"import sys; sys.modules.update({{{hidden}}}); import " + ", ".join(DEPENDENCIES)
    times = []
    for _ in range(runs):
        start = time.monotonic()
        subprocess.run([python, "-c", code], env=env, check=True)
        times.append(time.monotonic() - start)
    return times


def machine_info() -> dict[str, Any]:
    model = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    espeak = None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        espeak = subprocess.run(
            ["espeak-ng", "--version"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "edgevoice": edgevoice.__version__,
        "libraries": versions,
        "espeak_ng": espeak,
    }


class Bench:
    def __init__(self, options: BenchOptions, log: Callable[[str], None]) -> None:
        self.options = options
        self.log = log
        self.python = sys.executable
        package_root = str(Path(edgevoice.__file__).resolve().parents[1])
        self.env = dict(os.environ)
        self.env["PYTHONPATH"] = os.pathsep.join(
            p for p in (package_root, os.environ.get("PYTHONPATH")) if p
        )
        self.env.pop("NOTIFY_SOCKET", None)

    async def run(self) -> dict[str, Any]:
        began = time.monotonic()
        options = self.options
        with contextlib.ExitStack() as stack:
            if options.keep_dir is not None:
                options.keep_dir.mkdir(parents=True, exist_ok=True)
                scratch = options.keep_dir
            else:
                scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="edgevoice-bench-")))
            speech, replies = await asyncio.to_thread(render_texts)
            speech_s = {text: len(pcm) / CAPTURE_RATE for text, pcm in speech.items()}
            build = quick_script if options.quick else full_script
            script = options.script or build(speech_s, replies, options.idle_seconds)
            self.log(
                f"script: {len(script.exchanges)} exchanges, {script.barge_ins} barge-ins, "
                f"{len(script.faults)} faults, {script.duration_s:.1f} s of conversation "
                f"(the last {script.idle_s:g} s idle)"
            )
            import_times = await asyncio.to_thread(time_imports, self.python, self.env, options.import_runs)
            import_s = stats.percentile(import_times, 50)
            self.log(f"importing the daemon's dependencies: {import_s:.2f} s (median of {len(import_times)})")

            names = ["edgevoice", "reference"] + (["edgevoice-probe-off"] if options.probe_overhead else [])
            runs = await self._phase("main", script, names, scratch, speech)
            document = self._document(script, runs, import_times)
            if options.patterns:
                patterns = pattern_script(speech_s, replies)
                self.log(f"chunk patterns: {', '.join(patterns.patterns)}")
                pattern_runs = await self._phase("patterns", patterns, list(stats.CLIENTS), scratch, speech)
                document["chunk_patterns"] = self._patterns_document(patterns, pattern_runs)
            if options.competitors:
                busy = options.script or build(speech_s, replies, 0.0)
                self.log(f"the conversation again beside {options.competitors} CPU-bound processes")
                with self._competitors(options.competitors):
                    loaded_runs = await self._phase("loaded", busy, list(stats.CLIENTS), scratch, speech)
                document["loaded"] = self._loaded_document(loaded_runs, options.competitors)
            document["elapsed_s"] = round(time.monotonic() - began, 2)
            return document

    async def _phase(
        self, phase: str, script: Script, names: list[str], scratch: Path, speech: dict[str, np.ndarray]
    ) -> list[WorkerRun]:
        """Run ``script`` with one worker per name (each with its own emulator)."""
        directory = scratch / phase
        directory.mkdir(parents=True, exist_ok=True)
        mic = directory / "mic.raw"
        microphone_audio(script, speech).tofile(mic)
        runs = [self._prepare(name, script, directory, mic) for name in names]
        try:
            for run in runs:
                await asyncio.to_thread(run.emulator.start)
                run.emulator.write_ca(run.spec.ca_file)
            if self.options.isolated:
                for run in runs:
                    await self._conversation([run], script)
            else:
                await self._conversation(runs, script)
        finally:
            for run in runs:
                if run.process is not None and run.process.returncode is None:
                    run.process.kill()
                    await run.process.wait()
                for task in run.tasks:
                    task.cancel()
                await asyncio.gather(*run.tasks, return_exceptions=True)
                if run.notify is not None:
                    run.notify.close()
                await asyncio.to_thread(run.emulator.stop)
        return runs

    @contextlib.contextmanager
    def _competitors(self, count: int) -> Iterator[None]:
        """``count`` CPU-bound processes for as long as the block runs."""
        processes = [
            subprocess.Popen([self.python, "-c", COMPETITOR_CODE], stdin=subprocess.DEVNULL)
            for _ in range(count)
        ]
        try:
            yield
        finally:
            for process in processes:
                process.kill()
            for process in processes:
                process.wait()

    def _prepare(self, name: str, script: Script, scratch: Path, mic: Path) -> WorkerRun:
        from edgevoice_testbed.emulator import EmulatorThread, Scenario

        directory = scratch / name
        directory.mkdir(parents=True, exist_ok=True)
        # A kept directory from an earlier run must not hand over its session handle.
        shutil.rmtree(directory / "state", ignore_errors=True)
        speaker = directory / "speaker.raw"
        speaker.touch()
        (directory / "asoundrc").write_text(asoundrc_for(mic, speaker))
        emulator = EmulatorThread(Scenario.from_data(script.scenario, "benchmark"), record_audio_frames=False)
        spec = WorkerSpec(
            role="reference" if name == "reference" else "edgevoice",
            name=name,
            probe=name != "edgevoice-probe-off",
            presses=script.presses,
            duration_s=script.duration_s,
            base_url="",
            ca_file=str(directory / "ca.pem"),
            state_dir=str(directory / "state"),
            result_file=str(directory / "result.json"),
            period_ms=self.options.period_ms,
            prebuffer_ms=self.options.prebuffer_ms,
            fade_ms=self.options.fade_ms,
            thinking_ms=REPLY_DELAY_MS,
        )
        return WorkerRun(spec, directory, emulator, idle_s=script.idle_s)

    async def _conversation(self, runs: list[WorkerRun], script: Script) -> None:
        for run in runs:
            run.spec.base_url = run.emulator.base_url
            await self._start(run)
        sampler = asyncio.create_task(self._sample(runs))
        try:
            go_t = time.monotonic()
            for run in runs:
                assert run.process is not None and run.process.stdin is not None
                run.process.stdin.write(b"go\n")
                await run.process.stdin.drain()
            self.log(f"conversation started ({', '.join(r.spec.name for r in runs)})")
            faults = [asyncio.create_task(self._inject(run, script)) for run in runs]
            for run in runs:
                await self._wait(run, run.ended, script.duration_s + 60, "reach the end of the script")
            for task in faults:
                await task
            for run in runs:
                await self._finish(run)
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
        self.log(f"conversation done in {time.monotonic() - go_t:.1f} s")

    async def _start(self, run: WorkerRun) -> None:
        spec_file = run.directory / "spec.json"
        run.spec.dump(spec_file)
        notify_path = run.directory / "notify.sock"
        with contextlib.suppress(FileNotFoundError):
            notify_path.unlink()
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(notify_path))
        notify.setblocking(False)
        run.notify = notify
        env = dict(self.env)
        env["NOTIFY_SOCKET"] = str(notify_path)
        env["ALSA_CONFIG_PATH"] = f"/usr/share/alsa/alsa.conf:{run.directory / 'asoundrc'}"
        env["GPIOZERO_PIN_FACTORY"] = "mock"
        if run.spec.role == "edgevoice":
            env.update(UNIT_ENVIRONMENT)
        with (run.directory / "worker.log").open("wb") as stderr:
            run.spawn_t = time.monotonic()
            run.process = await asyncio.create_subprocess_exec(
                self.python, "-m", "edgevoice_testbed.bench.worker", str(spec_file),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=stderr, env=env,
                preexec_fn=unit_scheduling if run.spec.role == "edgevoice" else None,
            )
        run.tasks.append(asyncio.create_task(self._read_lines(run)))
        ready = asyncio.Event()
        run.tasks.append(asyncio.create_task(self._read_notify(run, ready)))
        await self._wait(run, ready, READY_TIMEOUT_S, "report READY=1")
        assert run.ready_t is not None
        self.log(f"{run.spec.name}: READY after {run.ready_t - run.spawn_t:.2f} s")

    async def _read_notify(self, run: WorkerRun, ready: asyncio.Event) -> None:
        """Every sd_notify datagram of the worker (read as systemd would, so none blocks)."""
        assert run.notify is not None
        loop = asyncio.get_running_loop()
        while True:
            datagram = await loop.sock_recv(run.notify, 4096)
            run.notifications += 1
            if run.ready_t is None and b"READY=1" in datagram.split(b"\n"):
                run.ready_t = time.monotonic()
                ready.set()

    async def _read_lines(self, run: WorkerRun) -> None:
        assert run.process is not None and run.process.stdout is not None
        async for line in run.process.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            sample = read_proc(run.process.pid)
            if sample is not None:
                run.samples.append(sample)
            if message.get("event") == "start":
                run.started_t = float(message["t"])
                run.started.set()
            elif message.get("event") == "end":
                run.ended_t = float(message["t"])
                run.ended.set()

    async def _sample(self, runs: list[WorkerRun]) -> None:
        interval = self.options.sample_interval_s
        while True:
            for run in runs:
                if run.process is not None and run.process.returncode is None:
                    sample = read_proc(run.process.pid)
                    if sample is not None:
                        run.samples.append(sample)
            # The sampling period of the /proc series (not a synchronisation).
            await asyncio.sleep(interval)

    async def _inject(self, run: WorkerRun, script: Script) -> None:
        await self._wait(run, run.started, 30, "start its microphone")
        assert run.started_t is not None
        for fault in script.faults:
            delay = run.started_t + fault.at_s - time.monotonic()
            if delay > 0:
                # Faults happen at their moment of the microphone timeline.
                await asyncio.sleep(delay)
            if run.ended.is_set():
                return
            await asyncio.to_thread(run.emulator.inject_fault, fault.spec)
            injected_s = round(time.monotonic() - run.started_t, 4)
            run.faults.append({"fault": fault.spec, "at_s": fault.at_s, "injected_s": injected_s})

    async def _wait(self, run: WorkerRun, event: asyncio.Event, limit_s: float, what: str) -> None:
        assert run.process is not None
        waiter = asyncio.ensure_future(event.wait())
        exited = asyncio.ensure_future(run.process.wait())
        done, _ = await asyncio.wait({waiter, exited}, timeout=limit_s, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        exited.cancel()
        if waiter not in done:
            self._fail(run, what)

    async def _finish(self, run: WorkerRun) -> None:
        assert run.process is not None
        try:
            status = await asyncio.wait_for(run.process.wait(), EXIT_TIMEOUT_S)
        except TimeoutError:
            self._fail(run, "exit after the conversation")
        if status != 0:
            self._fail(run, "exit cleanly")
        run.result = json.loads(await asyncio.to_thread(Path(run.spec.result_file).read_text))

    def _fail(self, run: WorkerRun, what: str) -> None:
        log_file = run.directory / "worker.log"
        tail = ""
        with contextlib.suppress(OSError):
            tail = "\n".join(log_file.read_text(errors="replace").splitlines()[-25:])
        raise UserError(f"bench worker {run.spec.name} did not {what}; the end of its log:\n{tail}")

    # -- the figures -------------------------------------------------------------------------

    def _figures(self, run: WorkerRun) -> dict[str, stats.Figure | None]:
        assert run.result is not None and run.started_t is not None and run.ended_t is not None
        series = run.result["series"]
        figures: dict[str, stats.Figure | None] = {
            name: stats.summarize(series.get(name, [])) for name in stats.LATENCY_FIGURES
        }
        start, end = run.started_t, run.ended_t
        idle_s = run.idle_s
        # The conversation's CPU without the idle tail; the tail's on its own.
        figures["cpu_percent"] = stats.single(stats.cpu_percent(run.samples, start, end - idle_s))
        figures["idle_cpu_percent"] = stats.single(
            stats.cpu_percent(run.samples, end - idle_s, end) if idle_s > 0 else None
        )
        figures["rss_steady_mb"] = stats.single(stats.rss_steady_mb(run.samples, start, end))
        figures["rss_growth_mb"] = stats.single(stats.rss_growth_mb(run.samples, start, end))
        assert run.ready_t is not None
        figures["startup_s"] = stats.single(run.ready_t - run.spawn_t)
        return figures

    def _scheduling_probe(self) -> dict[str, Any]:
        """What the unit's scheduling amounted to for EdgeVoice's workers here (a child
        tries it and makes a thread real-time the way the audio threads do)."""
        code = (
            "import json, os\n"
            "from edgevoice_testbed.bench.runner import unit_scheduling\n"
            "from edgevoice.audio.scheduling import make_this_thread_realtime\n"
            "applied = unit_scheduling()\n"
            "applied['audio_threads_sched_fifo'] = make_this_thread_realtime('probe')\n"
            "print(json.dumps(applied))\n"
        )
        try:
            out = subprocess.run([self.python, "-c", code], env=self.env, capture_output=True,
                                 text=True, timeout=60, check=True).stdout
            applied = json.loads(out.strip().splitlines()[-1])
            return {"as_unit": {**applied, "environment": UNIT_ENVIRONMENT}}
        except (subprocess.SubprocessError, ValueError, IndexError, OSError) as exc:
            return {"as_unit": None, "error": str(exc)}

    def _patterns_document(self, script: Script, runs: list[WorkerRun]) -> dict[str, Any]:
        """Per chunk pattern and client: gaps in the answer after its first sound, and the
        first sound itself."""
        clients: dict[str, Any] = {}
        for run in runs:
            assert run.result is not None and run.started_t is not None
            series = run.result["series"]
            gaps = [t - run.started_t for t in series.get("playback_underrun_t", [])]
            first_sounds = list(series.get("first_sound_ms", []))
            per_pattern = {}
            for index, (name, exchange) in enumerate(zip(script.patterns, script.exchanges, strict=True)):
                until = (
                    script.exchanges[index + 1].press_s if index + 1 < len(script.exchanges) else math.inf
                )
                late = [g - exchange.release_s for g in gaps if exchange.release_s <= g < until]
                per_pattern[name] = {
                    "underruns_after_first_sound": len(late),
                    # When each gap came, from the release: a rare one is placed in the answer.
                    "underruns_s_after_release": [round(g, 3) for g in late],
                    "first_sound_ms": round(first_sounds[index], 3) if index < len(first_sounds) else None,
                }
            clients[run.spec.name] = per_pattern
        goals = {"small": 0, "bursts": 0, "slow": 1}
        evaluation = {
            name: {
                "rule": f"<= {goals.get(name, 0)} underrun(s) after the first sound",
                "pass": clients["edgevoice"][name]["underruns_after_first_sound"] <= goals.get(name, 0),
            }
            for name in script.patterns
        }
        return {
            "patterns": {name: CHUNK_PATTERNS[name] for name in script.patterns},
            "clients": clients,
            "evaluation": evaluation,
            "script": script.describe(),
        }

    def _loaded_document(self, runs: list[WorkerRun], competitors: int) -> dict[str, Any]:
        """The figures again with CPU-bound competitors, plus overruns and underruns."""
        summary: dict[str, Any] = {}
        counters: dict[str, Any] = {}
        samples: dict[str, Any] = {}
        for run in runs:
            assert run.result is not None
            figures = self._figures(run)
            summary[run.spec.name] = {
                name: figures[name] for name in (*stats.LATENCY_FIGURES, "cpu_percent")
            }
            result_counters = run.result["counters"]
            counters[run.spec.name] = {
                "capture_overruns": int(result_counters.get("overruns", 0))
                + int(result_counters.get("late_capture_reads", 0)),
                "playback_underruns": len(run.result["series"].get("playback_underrun_t", [])),
            }
            samples[run.spec.name] = {
                name: run.result["series"].get(name, []) for name in stats.LATENCY_FIGURES
            }
        edgevoice_figures = summary["edgevoice"]
        evaluation = {}
        for name, floor in stats.LOADED_FLOORS.items():
            figure = edgevoice_figures.get(name)
            passed = stats.verdict(figure, floor)
            evaluation[name] = {"rule": floor.rule, "limit": floor.limit, "pass": passed}
        for name in ("capture_overruns", "playback_underruns"):
            evaluation[name] = {"rule": "0", "limit": 0, "pass": counters["edgevoice"][name] == 0}
        return {
            "competitors": competitors,
            "competitor": f"{self.python} -c '{COMPETITOR_CODE}'",
            "summary": summary,
            "counters": counters,
            "evaluation": evaluation,
            "samples": samples,
        }

    def _document(self, script: Script, runs: list[WorkerRun], import_times: list[float]) -> dict[str, Any]:
        options = self.options
        by_name = {run.spec.name: run for run in runs}
        figures = {run.spec.name: self._figures(run) for run in runs}
        import_s = stats.percentile(import_times, 50)
        goal = stats.floors(options.period_ms, options.fade_ms, import_s)
        summary: dict[str, Any] = {client: figures[client] for client in stats.CLIENTS}
        summary["period_ms"] = options.period_ms
        summary["prebuffer_ms"] = options.prebuffer_ms
        evaluation = {}
        for figure in stats.FIGURES:
            floor = goal.get(figure)
            edgevoice_figure = figures["edgevoice"][figure]
            evaluation[figure] = {
                "rule": floor.rule if floor else None,
                "limit": floor.limit if floor else None,
                "pass": stats.verdict(edgevoice_figure, floor),
                "ratio_reference_to_edgevoice": stats.ratio(figures["reference"][figure], edgevoice_figure),
            }
        edgevoice_run = by_name["edgevoice"]
        assert edgevoice_run.started_t is not None and edgevoice_run.ended_t is not None
        growth_s = stats.growth_window_s(edgevoice_run.started_t, edgevoice_run.ended_t)
        if growth_s < stats.GROWTH_MIN_WINDOW_S:
            growth = evaluation["rss_growth_mb"]
            growth["pass"] = None
            growth["rule"] = f"{growth['rule']}; not judged: {growth_s:.0f} s after warm-up"
        resources = {}
        for run in runs:
            assert run.started_t is not None and run.ended_t is not None
            base = run.spawn_t
            peak = max((s.hwm_mb for s in run.samples), default=None)
            resources[run.spec.name] = {
                "window_s": [round(run.started_t - base, 4), round(run.ended_t - base, 4)],
                "peak_rss_mb": round(peak, 3) if peak is not None else None,
                "rss_change_after_warm_up_mb": _round(
                    stats.rss_change_mb(run.samples, run.started_t, run.ended_t)
                ),
                "samples": [
                    [round(s.t - base, 4), round(s.cpu_s, 3), round(s.rss_mb, 3)] for s in run.samples
                ],
            }
        startup = {
            run.spec.name: {
                "spawn_to_ready_s": round((run.ready_t or 0) - run.spawn_t, 4),
                "spawn_to_first_connection_s": _first_connection(run),
            }
            for run in runs
        }
        overhead = None
        if "edgevoice-probe-off" in figures:
            on = figures["edgevoice"]["cpu_percent"]
            off = figures["edgevoice-probe-off"]["cpu_percent"]
            if on is not None and off is not None and off["p50"] > 0:
                overhead = {
                    "cpu_percent_probe_on": on["p50"],
                    "cpu_percent_probe_off": off["p50"],
                    "change_percent": round((on["p50"] - off["p50"]) / off["p50"] * 100, 2),
                    "figures_probe_off": figures["edgevoice-probe-off"],
                }
        return {
            "version": 1,
            "mode": "quick" if options.quick else "full",
            "idle_s": script.idle_s,
            "clients_ran": "one after another" if options.isolated else "side by side",
            "period_ms": options.period_ms,
            "prebuffer_ms": options.prebuffer_ms,
            "summary": summary,
            "evaluation": evaluation,
            "probe_overhead": overhead,
            "samples": {name: run.result["series"] for name, run in by_name.items() if run.result},
            "resources": resources,
            "startup": {
                "import_s": [round(t, 4) for t in import_times],
                "import_modules": list(DEPENDENCIES),
                "clients": startup,
            },
            "counters": {run.spec.name: {**(run.result or {}).get("counters", {}), **_emulator_counts(run)}
                         for run in runs},
            "faults": {run.spec.name: run.faults for run in runs},
            "machine": machine_info(),
            "configuration": {
                "period_ms": options.period_ms,
                "prebuffer_ms": options.prebuffer_ms,
                "fade_ms": options.fade_ms,
                "sample_interval_s": options.sample_interval_s,
                "reference": {
                    "chunk_frames": REFERENCE_CHUNK_FRAMES,
                    "playback_buffer_frames": REFERENCE_CHUNK_FRAMES * REFERENCE_PLAYBACK_PERIODS,
                    "send_queue_size": 5,
                },
                "edgevoice": {
                    "playback_buffer_frames": 24000 * options.period_ms // 1000 * 2,
                    "scheduling": self._scheduling_probe(),
                },
                "script": script.describe(),
                "scenario": script.scenario,
            },
        }


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def _first_connection(run: WorkerRun) -> float | None:
    connections = run.emulator.connections
    return round(connections[0].opened_t - run.spawn_t, 4) if connections else None


def _emulator_counts(run: WorkerRun) -> dict[str, int]:
    emulator = run.emulator
    replies = list(emulator.replies)
    return {
        "server_connections": len(emulator.connections),
        "server_utterances": len(emulator.utterances),
        "server_replies": sum(1 for r in replies if r.kind == "reply"),
        "server_replies_interrupted": sum(1 for r in replies if r.interrupted),
        "server_follow_ups": sum(1 for r in replies if r.kind == "follow_up"),
        "server_tool_calls": len(emulator.tool_calls),
        "server_tool_responses": len(emulator.tool_responses),
        "server_faults": len(emulator.fired_faults),
    }


async def run_bench(options: BenchOptions, log: Callable[[str], None] = print) -> dict[str, Any]:
    return await Bench(options, log).run()
