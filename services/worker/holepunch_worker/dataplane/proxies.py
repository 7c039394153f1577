"""Start what the worker's settings ask for on top of the data plane: the SOCKS5 proxy
(SOCKS_LISTEN), the TCP and UDP forwards (TCP_FORWARDS, UDP_FORWARDS) and the UDP ports
peers may reach (EXPOSE_UDP_PORTS). All off by default; `start_proxies` returns one
object to close at shutdown.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from holepunch_worker.config import WorkerConfig
from holepunch_worker.dataplane.forwards import TcpForward
from holepunch_worker.dataplane.interface import DatagramChannel, DataPlane
from holepunch_worker.dataplane.socks_server import SocksServer
from holepunch_worker.dataplane.udp_forward import UdpForwarding

__all__ = ["Proxies", "start_proxies"]


@dataclass
class Proxies:
    """What `start_proxies` started; `close()` stops it all (listeners and relays)."""

    socks: SocksServer | None = None
    tcp_forwards: list[TcpForward] = field(default_factory=list)
    udp: UdpForwarding | None = None

    async def close(self) -> None:
        if self.socks is not None:
            await self.socks.close()
        for forward in self.tcp_forwards:
            await forward.close()
        if self.udp is not None:
            await self.udp.close()


async def start_proxies(
    data_plane: DataPlane, config: WorkerConfig, logger: logging.Logger
) -> Proxies:
    """Listen as configured. A listener that cannot bind raises OSError, after closing
    whatever had started: the worker fails at start, saying which address."""
    proxies = Proxies()
    try:
        if config.socks_listen is not None:
            proxies.socks = SocksServer(data_plane, config.worker_id, logger)
            await proxies.socks.start(*config.socks_listen)
        for spec in config.tcp_forwards:
            forward = TcpForward(data_plane, spec, config.worker_id, logger)
            proxies.tcp_forwards.append(forward)
            await forward.start()
        if config.udp_forwards or config.expose_udp_ports:
            proxies.udp = UdpForwarding(
                data_plane, config.worker_id, logger, exposed_ports=config.expose_udp_ports
            )
            data_plane.on_datagram(DatagramChannel.UDP_FORWARD, proxies.udp.datagram_received)
            for spec in config.udp_forwards:
                await proxies.udp.add_forward(spec)
    except BaseException:
        await proxies.close()
        raise
    return proxies
