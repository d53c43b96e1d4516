"""The reference client: the Live API quickstart's audio loop, on pyalsaaudio.

Written from Google's "Get started with the Live API" audio example
(``Get_started_LiveAPI_NativeAudio.py`` in the Gemini cookbook), keeping its pattern:

- the microphone is read in 1024-frame chunks, each with ``asyncio.to_thread(read)``, and
  put on a bounded send queue (``maxsize=5``) from which one task sends every chunk with
  ``session.send_realtime_input(audio={"data": ..., "mime_type": "audio/pcm"})``; the
  microphone streams all the time, as the quickstart's does;
- one task receives with ``async for response in session.receive()`` in a loop and puts
  ``response.data`` on an unbounded playback queue;
- one task plays each chunk whole with a blocking write in ``asyncio.to_thread``.

What the quickstart lacks and the benchmark's script needs, added as little as possible:
activityStart/activityEnd sent through the same send queue at press/release (with
automatic VAD disabled in the config, so only audio inside a press is sent: the service
refuses audio outside one); the playback queue emptied on ``interrupted``
(instead of at every turn's end, which with a server that sends ``turnComplete`` ahead
of playback would cut every answer short); a one-line answer to tool calls; a new session
(no resumption) whenever the connection ends. Devices stay open across sessions (the
simulated microphone is a file: reopening it would start the recording again), and
``pyaudio``'s ``read``/``write`` become pyalsaaudio's (the simulated devices); a lock keeps
a read that outlives its cancelled task from overlapping the next session's read.

The timestamps taken for the benchmark are the only other additions.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import gpiozero
from google.genai import errors, types
from websockets.exceptions import WebSocketException

from edgevoice_testbed.bench.probe import Probe
from edgevoice_testbed.bench.simhw import BenchDevices

log = logging.getLogger(__name__)

MODEL = "gemini-2.5-flash-native-audio-preview-09-2025"
CONFIG: dict[str, Any] = {
    "system_instruction": "You are a helpful and friendly AI assistant.",
    "response_modalities": ["AUDIO"],
    # The push-to-talk button replaces the server's voice activity detection.
    "realtime_input_config": {"automatic_activity_detection": {"disabled": True}},
    "tools": [
        {
            "function_declarations": [
                {
                    "name": "set_light",
                    "description": "Switch a light on or off.",
                    "parameters": {
                        "type": "object",
                        "properties": {"entity": {"type": "string"}, "on": {"type": "boolean"}},
                    },
                }
            ]
        }
    ],
}
CHUNK_SIZE = 1024
RECEIVE_SAMPLE_RATE = 24000


class ReferenceClient:
    def __init__(
        self,
        client: Any,
        devices: BenchDevices,
        *,
        probe: Probe,
        on_ready: Callable[[], None],
    ) -> None:
        self.client = client
        self.devices = devices
        self.probe = probe
        self._on_ready = on_ready
        self.audio_in_queue: asyncio.Queue[tuple[bytes, float]] | None = None
        self.out_queue: asyncio.Queue[tuple[str, Any, float]] | None = None
        self.session: Any = None
        self.connected: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.connects = 0
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        self._main: asyncio.Task[None] | None = None
        self._capture: Any = None
        self._playback: Any = None
        self._read_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._button: gpiozero.Button | None = None
        # Timestamps for the benchmark (the playback thread and the loop share them).
        self._writing = False
        self._last_write_end = 0.0
        self._barge_pressed_t: float | None = None
        self._interrupted = False
        self._lost_t: float | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self.interrupts = 0
        self.tool_calls = 0
        self.chunks_played = 0
        self.chunks_dropped = 0

    # -- the quickstart's tasks ---------------------------------------------------------------

    def _read(self) -> tuple[bytes, float]:
        with self._read_lock:
            _length, data = self._capture.read()
            return data, time.monotonic()

    async def listen_audio(self) -> None:
        assert self.out_queue is not None
        while True:
            data, t = await asyncio.to_thread(self._read)
            if data:
                await self.out_queue.put(("audio", {"data": data, "mime_type": "audio/pcm"}, t))

    async def send_realtime(self) -> None:
        assert self.out_queue is not None
        # With automatic detection disabled the service refuses audio outside
        # activityStart..activityEnd (close 1007): the microphone still streams all the
        # time into the queue, but only what falls inside a press is sent.
        in_activity = False
        while True:
            kind, msg, t = await self.out_queue.get()
            if kind == "audio":
                if not in_activity:
                    continue
                await self.session.send_realtime_input(audio=msg)
                self.probe.add("capture_to_wire_ms", (time.monotonic() - t) * 1000)
            elif kind == "start":
                await self.session.send_realtime_input(activity_start=types.ActivityStart())
                in_activity = True
            else:
                in_activity = False
                await self.session.send_realtime_input(activity_end=types.ActivityEnd())
                self.probe.add("release_to_activity_end_ms", (time.monotonic() - t) * 1000)

    async def receive_audio(self) -> None:
        "Background task to reads from the websocket and write pcm chunks to the output queue"
        assert self.audio_in_queue is not None
        try:
            while True:
                turn = self.session.receive()
                async for response in turn:
                    received_t = time.monotonic()
                    if data := response.data:
                        self.audio_in_queue.put_nowait((data, received_t))
                        continue
                    if response.server_content and response.server_content.interrupted:
                        # Interrupted: stop playback, so empty out the audio queue.
                        self._interrupt(received_t)
                    if response.tool_call:
                        await self._answer_tools(response.tool_call)
                    if response.go_away:
                        self.probe.goaway()
        except (errors.APIError, WebSocketException):
            self._lost_t = time.monotonic()
            raise

    async def play_audio(self) -> None:
        assert self.audio_in_queue is not None
        while True:
            bytestream, received_t = await self.audio_in_queue.get()
            await asyncio.to_thread(self._write, bytestream, received_t)

    async def run(self) -> None:
        self._main = asyncio.current_task()
        self._capture = await asyncio.to_thread(self.devices.open_capture)
        self._playback = await asyncio.to_thread(self.devices.open_playback)
        self._button = gpiozero.Button(
            self.devices.button_pin, pull_up=True, pin_factory=self.devices.pin_factory
        )
        self._button.when_pressed = lambda: self._edge(True)
        self._button.when_released = lambda: self._edge(False)
        try:
            while not self._stopping:
                # No backoff, as in the quickstart: a new session at once.
                await self._session_once()
        except asyncio.CancelledError:
            if not self._stopping:
                raise
        finally:
            self._button.close()
            await asyncio.to_thread(self._close_devices)

    async def _session_once(self) -> None:
        try:
            async with (
                self.client.aio.live.connect(model=MODEL, config=CONFIG) as session,
                asyncio.TaskGroup() as tg,
            ):
                self.session = session
                self.connects += 1
                self.probe.link_up(time.monotonic(), resumed=False)
                if not self.connected.done():
                    self._on_ready()  # "Connected to Gemini. Start speaking!"
                    self.connected.set_result(None)

                self.audio_in_queue = asyncio.Queue()
                self.out_queue = asyncio.Queue(maxsize=5)

                tg.create_task(self.send_realtime())
                tg.create_task(self.listen_audio())
                tg.create_task(self.receive_audio())
                tg.create_task(self.play_audio())
        except* (errors.APIError, WebSocketException, OSError) as group:
            # The connection ended (a drop, or the close a GoAway announced): a new session.
            lost_t = self._lost_t or time.monotonic()
            self._lost_t = None
            if self.probe.goaway_pending:
                self.probe.link_closed(lost_t)
            else:
                self.probe.link_down(lost_t)
            log.info("connection closed: %s; opening a new session", group.exceptions[0])
        finally:
            self.session = None
            self.out_queue = None

    async def stop(self) -> None:
        self._stopping = True
        if self._main is not None:
            self._main.cancel()

    # -- additions for the script --------------------------------------------------------------

    def _edge(self, pressed: bool) -> None:  # gpiozero's thread (the capture thread here)
        t = time.monotonic()
        self._loop.call_soon_threadsafe(self._on_edge, pressed, t)

    def _on_edge(self, pressed: bool, t: float) -> None:
        queue = self.out_queue
        if queue is None:
            return  # between sessions: the press is lost, as the quickstart would lose it
        playing = self._writing or (self.audio_in_queue is not None and not self.audio_in_queue.empty())
        if pressed and playing:
            self._barge_pressed_t = t
        task = self._loop.create_task(queue.put(("start" if pressed else "end", None, t)))
        self._pending.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._pending.discard)

    def _interrupt(self, t: float) -> None:
        assert self.audio_in_queue is not None
        self.interrupts += 1
        while not self.audio_in_queue.empty():
            self.audio_in_queue.get_nowait()
            self.chunks_dropped += 1
        if not self._writing:
            self._barge_done(t + self._held_s())
        else:
            self._interrupted = True  # the write in progress plays out, then it stops

    async def _answer_tools(self, tool_call: types.LiveServerToolCall) -> None:
        responses = []
        for call in tool_call.function_calls or ():
            self.tool_calls += 1
            responses.append(types.FunctionResponse(id=call.id, name=call.name, response={"result": "ok"}))
        if responses:
            await self.session.send_tool_response(function_responses=responses)

    def _write(self, bytestream: bytes, received_t: float) -> None:
        with self._write_lock:
            self._writing = True
            start = time.monotonic()
            # From when the speaker could take it: the previous blocking write had returned.
            self.probe.add("reply_to_speaker_ms", (start - max(received_t, self._last_write_end)) * 1000)
            frames = self.devices.playback_period
            step = frames * 2
            # A blocking ALSA write of the whole chunk: period by period until all is queued.
            for offset in range(0, len(bytestream), step):
                self._playback.write(bytestream[offset : offset + step])
            self._last_write_end = time.monotonic()
            self._writing = False
            self.chunks_played += 1
            if self._interrupted or self._barge_pressed_t is not None:
                queue = self.audio_in_queue
                if self._interrupted or queue is None or queue.empty():
                    self._interrupted = False
                    silent_t = self._last_write_end + self._held_s()
                    self._loop.call_soon_threadsafe(self._barge_done, silent_t)

    def _held_s(self) -> float:
        """How long the sound card will still play what it holds."""
        held = self.devices.playback_buffer_frames - self._playback.avail()
        return max(0, held) / RECEIVE_SAMPLE_RATE

    def _barge_done(self, silent_t: float) -> None:
        """Playback stopped (the card is silent from ``silent_t``): the barge-in figure."""
        pressed_t, self._barge_pressed_t = self._barge_pressed_t, None
        if pressed_t is not None:
            self.probe.add("barge_in_ms", (silent_t - pressed_t) * 1000)

    def _close_devices(self) -> None:
        try:
            self.devices.shutdown()
        except Exception:
            log.debug("closing the devices failed", exc_info=True)

    def counters(self) -> dict[str, int]:
        return {
            "interrupts": self.interrupts,
            "tool_calls": self.tool_calls,
            "chunks_played": self.chunks_played,
            "chunks_dropped": self.chunks_dropped,
        }
