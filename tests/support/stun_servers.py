"""STUN servers and UDP middleboxes for the worker's STUN tests, all in-process.

- `dev_stun_server`: holepunch's dev STUN server on 127.0.0.1 and 127.0.0.2 (port 0);
- `LossyForwarder`: a UDP relay in front of a server that drops the first N requests,
  to make the client retransmit;
- `SilentUdpSocket`: a bound socket that never answers, for timeouts.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest_asyncio
from holepunch_devtools.stun_server import StunServerHandle, start_stun_server

__all__ = ["LossyForwarder", "SilentUdpSocket", "dev_stun_server"]

Address = tuple[str, int]


@pytest_asyncio.fixture
async def dev_stun_server() -> AsyncIterator[StunServerHandle]:
    handle = await start_stun_server([("127.0.0.1", 0), ("127.0.0.2", 0)])
    try:
        yield handle
    finally:
        handle.close()


class _Relay(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Any) -> None:
        self.on_datagram = on_datagram
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.on_datagram(data, (addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        pass


class LossyForwarder:
    """Relays datagrams between clients and `target`, dropping the first `drop_first`
    client datagrams. `received` counts every client datagram, dropped or not."""

    def __init__(self, target: Address, drop_first: int) -> None:
        self.target = target
        self.drop_first = drop_first
        self.received = 0
        self.forwarded = asyncio.Event()
        self._front: _Relay | None = None
        self._backs: dict[Address, _Relay] = {}

    async def start(self) -> Address:
        loop = asyncio.get_running_loop()
        _, self._front = await loop.create_datagram_endpoint(
            lambda: _Relay(self._from_client), local_addr=("127.0.0.1", 0)
        )
        assert self._front.transport is not None
        name = self._front.transport.get_extra_info("sockname")
        return (name[0], name[1])

    def _from_client(self, data: bytes, client: Address) -> None:
        self.received += 1
        if self.received <= self.drop_first:
            return
        back = self._backs.get(client)
        if back is None:
            asyncio.get_running_loop().create_task(self._open_back(client, data))
        elif back.transport is not None:
            back.transport.sendto(data, self.target)
            self.forwarded.set()

    async def _open_back(self, client: Address, first: bytes) -> None:
        loop = asyncio.get_running_loop()

        def to_client(data: bytes, _: Address) -> None:
            if self._front is not None and self._front.transport is not None:
                self._front.transport.sendto(data, client)

        _, back = await loop.create_datagram_endpoint(
            lambda: _Relay(to_client), local_addr=("127.0.0.1", 0)
        )
        self._backs[client] = back
        assert back.transport is not None
        back.transport.sendto(first, self.target)
        self.forwarded.set()

    def close(self) -> None:
        for relay in (self._front, *self._backs.values()):
            if relay is not None and relay.transport is not None:
                relay.transport.close()


class SilentUdpSocket:
    """Keeps every datagram it receives, never answers."""

    def __init__(self) -> None:
        self.datagrams: list[bytes] = []
        self.arrived = asyncio.Event()
        self._relay: _Relay | None = None

    async def start(self) -> Address:
        loop = asyncio.get_running_loop()

        def count(data: bytes, _: Address) -> None:
            self.datagrams.append(data)
            self.arrived.set()

        _, self._relay = await loop.create_datagram_endpoint(
            lambda: _Relay(count), local_addr=("127.0.0.1", 0)
        )
        assert self._relay.transport is not None
        name = self._relay.transport.get_extra_info("sockname")
        return (name[0], name[1])

    def send(self, data: bytes, address: Address) -> None:
        """Send from this socket, as the server the worker is waiting for would."""
        assert self._relay is not None and self._relay.transport is not None
        self._relay.transport.sendto(data, address)

    def close(self) -> None:
        if self._relay is not None and self._relay.transport is not None:
            self._relay.transport.close()
