"""The data plane when the path underneath changes or never comes: two workers with real UDP
sockets and a fake rendezvous that introduces them through a `UdpGate` a test opens.

- A stream started over the relay carries on, byte-exact, when the punch session upgrades
  to a direct path mid-transfer: QUIC never sees the path.
- With no direct path and no relay, connect() fails with `no_path`, not a timeout.
"""

from __future__ import annotations

import asyncio
import hashlib
import os

import pytest
from holepunch_worker.dataplane.interface import ConnectRefused, IncomingStream

from tests.support.fake_rendezvous import fake_rendezvous
from tests.support.punch_workers import UdpGate, running_workers

A, B = "worker-a", "worker-b"
CHUNK = os.urandom(64 * 1024)


async def test_a_stream_carries_on_across_the_upgrade_from_relay_to_direct() -> None:
    gate = await UdpGate.start()  # closed: every UDP datagram between them is lost
    try:
        async with (
            fake_rendezvous(address_rule=lambda to, peer: gate.address) as fake,
            running_workers(fake.url, (A, {}), (B, {})) as (a, b),
        ):
            await fake.wait_registered(A, B)
            gate.ends = (a.udp_address, b.udp_address)
            digest: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()

            async def sink(stream: IncomingStream) -> None:
                hashed, size = hashlib.sha256(), 0
                while data := await stream.reader.read(65536):
                    hashed.update(data)
                    size += len(data)
                digest.set_result((size, hashed.hexdigest()))
                stream.writer.close()

            b.worker.data_plane.serve_port(9000, sink)
            sent = hashlib.sha256()
            async with asyncio.timeout(30):
                connection = await a.worker.data_plane.connect(B)
                assert connection.status()["path"] == "relay"
                _, writer = await connection.open_stream(9000)
                for _ in range(8):  # 512 KiB over the relay
                    writer.write(CHUNK)
                    sent.update(CHUNK)
                    await writer.drain()
                gate.open = True  # the next upgrade burst gets through
                for worker in (a, b):
                    await worker.log.wait_for_event("relay_upgraded", timeout=10)
                for _ in range(8):  # and as much again, direct
                    writer.write(CHUNK)
                    sent.update(CHUNK)
                    await writer.drain()
                writer.write_eof()
                assert await digest == (16 * len(CHUNK), sent.hexdigest())
            assert connection.status()["path"] == "direct" and not connection.closed
            assert gate.forwarded > 0 and fake.sessions
            [session] = fake.sessions.values()
            assert session.relayed > 0
    finally:
        gate.close()


async def test_no_direct_path_and_no_relay_is_refused_with_no_path() -> None:
    gate = await UdpGate.start()  # closed, and the relay refuses everything
    try:
        async with (
            fake_rendezvous(
                address_rule=lambda to, peer: gate.address, relay_enabled=False
            ) as fake,
            running_workers(fake.url, (A, {}), (B, {})) as (a, _),
        ):
            await fake.wait_registered(A, B)
            with pytest.raises(ConnectRefused) as refused:
                async with asyncio.timeout(20):
                    await a.worker.data_plane.connect(B, timeout=15)
            assert refused.value.reason == "no_path"
    finally:
        gate.close()
