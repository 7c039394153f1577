"""Delay without netem: a small nfnetlink_queue client that holds every packet the router's
NFQUEUE rule hands it (`rules.nfqueue_rules`) for a fixed time, then accepts it.

Kernels without sch_netem (some VM kernels) get their delay from this, run in each NAT
router's namespace as `python -m holepunch_devtools.natlab delay-queue`.
"""

from __future__ import annotations

import errno
import heapq
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import IO

__all__ = [
    "NFQNL_MSG_PACKET",
    "netlink_attribute",
    "nfqueue_message",
    "packet_ids",
    "run_delay_queue",
]

_NETLINK_NETFILTER = 12
_NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
_NFQNL_MSG_VERDICT = 1
_NFQNL_MSG_CONFIG = 2
_NFQA_PACKET_HDR = 1
_NFQA_VERDICT_HDR = 2
_NFQA_CFG_CMD = 1
_NFQA_CFG_PARAMS = 2
_NFQNL_CFG_CMD_BIND = 1
_NFQNL_COPY_META = 1
_NF_ACCEPT = 1
_NLM_F_REQUEST = 0x1
_NLM_F_ACK = 0x4
_NLMSG_ERROR = 0x2


def netlink_attribute(kind: int, payload: bytes) -> bytes:
    """One netlink attribute (length, type, payload padded to 4 bytes)."""
    header = struct.pack("=HH", 4 + len(payload), kind)
    return header + payload + b"\0" * (-len(payload) % 4)


def nfqueue_message(message: int, queue: int, attributes: bytes, flags: int, seq: int) -> bytes:
    """An nfnetlink_queue message of type `message` for `queue`."""
    body = struct.pack("=BB", socket.AF_UNSPEC, 0) + struct.pack("!H", queue) + attributes
    kind = (_NFNL_SUBSYS_QUEUE << 8) | message
    return struct.pack("=IHHII", 16 + len(body), kind, flags, seq, 0) + body


def packet_ids(data: bytes) -> Iterator[int]:
    """Packet ids of the NFQNL_MSG_PACKET messages in one netlink read."""
    offset = 0
    while offset + 16 <= len(data):
        length, kind, _flags, _seq, _pid = struct.unpack("=IHHII", data[offset : offset + 16])
        if length < 16:
            return
        if kind == (_NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
            position = offset + 16 + 4  # after nlmsghdr and nfgenmsg
            end = offset + length
            while position + 4 <= end:
                size, attribute = struct.unpack("=HH", data[position : position + 4])
                if size < 4:
                    break
                if attribute & 0x7FFF == _NFQA_PACKET_HDR:
                    yield struct.unpack("!I", data[position + 4 : position + 8])[0]
                    break
                position += (size + 3) // 4 * 4
        elif kind == _NLMSG_ERROR:
            code = struct.unpack("=i", data[offset + 16 : offset + 20])[0]
            if code != 0:
                raise OSError(-code, f"nfnetlink_queue: {os.strerror(-code)}")
        offset += (length + 3) // 4 * 4


def run_delay_queue(
    queue: int, delay_sec: float, ready: IO[str], stop: threading.Event | None = None
) -> None:
    """Hold every packet NFQUEUE'd to `queue` in this namespace for `delay_sec`, then accept
    it, in arrival order (what netem's delay does). Writes `ready` once bound."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_NETFILTER)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((0, 0))
    seq = 0

    def configure(attributes: bytes) -> None:
        nonlocal seq
        seq += 1
        sock.send(
            nfqueue_message(_NFQNL_MSG_CONFIG, queue, attributes, _NLM_F_REQUEST | _NLM_F_ACK, seq)
        )
        list(packet_ids(sock.recv(65536)))  # the ack; raises on an error

    configure(
        netlink_attribute(
            _NFQA_CFG_CMD, struct.pack("!BBH", _NFQNL_CFG_CMD_BIND, 0, socket.AF_INET)
        )
    )
    configure(netlink_attribute(_NFQA_CFG_PARAMS, struct.pack("!IB", 0, _NFQNL_COPY_META)))
    ready.write(f"ready queue={queue} delay_ms={delay_sec * 1000:g}\n")
    ready.flush()

    due: list[tuple[float, int]] = []
    while stop is None or not stop.is_set():
        timeout = 0.5 if not due else max(0.0, due[0][0] - time.monotonic())
        readable, _, _ = select.select([sock], [], [], timeout)
        if readable:
            try:
                data = sock.recv(1 << 17)
            except OSError as error:
                if error.errno == errno.ENOBUFS:  # the kernel dropped some: they are lost
                    continue
                raise
            arrived = time.monotonic()
            for packet_id in packet_ids(data):
                heapq.heappush(due, (arrived + delay_sec, packet_id))
        now = time.monotonic()
        while due and due[0][0] <= now:
            _, packet_id = heapq.heappop(due)
            seq += 1
            verdict = netlink_attribute(
                _NFQA_VERDICT_HDR, struct.pack("!II", _NF_ACCEPT, packet_id)
            )
            sock.send(nfqueue_message(_NFQNL_MSG_VERDICT, queue, verdict, _NLM_F_REQUEST, seq))
    sock.close()
