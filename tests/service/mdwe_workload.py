"""What the daemon does, run under MemoryDenyWriteExecute's seccomp rules (test_unit.py).

Every library that touches native code on the daemon's path: numpy/OpenBLAS, soxr,
ctypes callbacks (libffi closures), pyalsaaudio through libasound's file plugin, gpiozero
mock pins, google-genai, TLS websockets, systemd-python, and edgevoice's own modules.
"""

import asyncio
import ctypes
import mmap
import os
import ssl
import sys
import tempfile
from pathlib import Path

# The filter must be active, or this proves nothing.
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    sys.exit("a writable+executable mapping was allowed: the filter is not active")
except PermissionError:
    pass

import alsaaudio
import numpy as np
import soxr
import trustme
import websockets
from google import genai
from gpiozero import Button, Device
from gpiozero.pins.mock import MockFactory

import edgevoice.config
import edgevoice.service.logging
import edgevoice.service.watchdog  # noqa: F401
from systemd import daemon, journal  # noqa: F401

matrix = np.random.default_rng(0).standard_normal((256, 256))
assert (matrix @ matrix.T).trace() > 0
assert soxr.resample(np.zeros(4800, dtype=np.float32), 48000, 16000).shape == (1600,)
callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)(lambda x: x + 1)
assert callback(41) == 42
genai.Client(api_key="not-a-key")
Device.pin_factory = MockFactory()
button = Button(17)
Device.pin_factory.pin(17).drive_low()
assert button.is_pressed

directory = Path(tempfile.mkdtemp())
(directory / "in.raw").write_bytes(b"\x01\x00" * 16000)
(directory / "asoundrc").write_text(
    f'pcm.mic {{ type file slave.pcm "null" file "/dev/null" '
    f'infile "{directory / "in.raw"}" format "raw" }}\n'
)
os.environ["ALSA_CONFIG_PATH"] = f"/usr/share/alsa/alsa.conf:{directory / 'asoundrc'}"
pcm = alsaaudio.PCM(
    alsaaudio.PCM_CAPTURE,
    device="mic",
    rate=16000,
    channels=1,
    format=alsaaudio.PCM_FORMAT_S16_LE,
    periodsize=320,
)
assert pcm.read()[0] == 320

authority = trustme.CA()
certificate = authority.issue_cert("localhost")


async def tls_echo() -> str:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate.configure_cert(server_context)
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)

    async def echo(connection):
        async for message in connection:
            await connection.send(message)

    async with websockets.serve(echo, "127.0.0.1", 0, ssl=server_context) as server:
        port = server.sockets[0].getsockname()[1]
        async with websockets.connect(f"wss://localhost:{port}", ssl=client_context) as ws:
            await ws.send("hello")
            return await ws.recv()


assert asyncio.run(tls_echo()) == "hello"
print("workload ok")
