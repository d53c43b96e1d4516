"""The network watch: netlink datagrams parsed, and real kernel notices on a veth pair."""

from __future__ import annotations

import asyncio
import shutil
import struct
import subprocess
import uuid

import pytest

from edgevoice.live.netwatch import RTM_NEWADDR, RTM_NEWLINK, NetworkWatch, message_types


def header(kind: int, payload: int = 16) -> bytes:
    return struct.pack("=IHHII", 16 + payload, kind, 0, 0, 0) + bytes(payload)


def test_message_types_walks_aligned_messages_and_ignores_garbage() -> None:
    datagram = header(RTM_NEWLINK, 17) + b"\0" * 3 + header(RTM_NEWADDR)
    assert message_types(datagram) == [RTM_NEWLINK, RTM_NEWADDR]
    assert message_types(b"\x01\x02") == []
    assert message_types(struct.pack("=IHHII", 4, RTM_NEWLINK, 0, 0, 0)) == []


def can_make_links() -> bool:
    if shutil.which("ip") is None:
        return False
    name = "evp" + uuid.uuid4().hex[:6]
    made = subprocess.run(
        ["ip", "link", "add", name, "type", "veth", "peer", "name", name + "b"], capture_output=True
    )
    if made.returncode != 0:
        return False
    subprocess.run(["ip", "link", "del", name], capture_output=True)
    return True


@pytest.mark.skipif(not can_make_links(), reason="needs CAP_NET_ADMIN to create a veth pair")
async def test_a_new_link_wakes_the_watch() -> None:
    changed = asyncio.Event()
    watch = NetworkWatch(changed.set)
    assert watch.start()
    name = "evw" + uuid.uuid4().hex[:6]
    try:
        process = await asyncio.create_subprocess_exec(
            "ip", "link", "add", name, "type", "veth", "peer", "name", name + "b"
        )
        assert await process.wait() == 0
        await asyncio.wait_for(changed.wait(), 5)
    finally:
        watch.close()
        process = await asyncio.create_subprocess_exec("ip", "link", "del", name)
        await process.wait()
