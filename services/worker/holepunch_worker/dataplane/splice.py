"""Relay two asyncio stream pairs into each other, both ways, until both ways end.

Each way waits for `drain()` after every chunk, so a slow reader on one side slows the
writer on the other (no unbounded buffering). An end of file on one side becomes a
half-close (`write_eof`, a TCP FIN or a QUIC stream FIN) on the other, and the other way
carries on. A failure either way (a reset, a broken pipe), or the relay being cancelled
(shutdown), resets both ends, so each side sees the connection fail rather than end
cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

__all__ = ["CHUNK_BYTES", "StreamPair", "reset", "splice"]

CHUNK_BYTES = 64 * 1024

StreamPair = tuple[asyncio.StreamReader, asyncio.StreamWriter]


# SO_LINGER on with a zero timeout: close() sends a TCP RST instead of a FIN.
_LINGER_ZERO = struct.pack("ii", 1, 0)


def reset(writer: asyncio.StreamWriter) -> None:
    """End the connection with a reset, so the other end sees a failure, not an end of
    file (for a QUIC stream, the adapter's abort resets the stream)."""
    sock = writer.get_extra_info("socket")
    if sock is not None and sock.type == socket.SOCK_STREAM:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
    writer.transport.abort()


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(CHUNK_BYTES):
        writer.write(data)
        await writer.drain()
    if writer.can_write_eof():
        writer.write_eof()


async def splice(left: StreamPair, right: StreamPair, early_data: bytes = b"") -> None:
    """Relay until both ways are done, then close both writers. `early_data` (bytes the
    left side sent before the relay began) goes to the right side first."""
    left_reader, left_writer = left
    right_reader, right_writer = right
    failed = False
    tasks: list[asyncio.Task[None]] = []
    try:
        if early_data:
            right_writer.write(early_data)
            await right_writer.drain()
        tasks = [
            asyncio.create_task(_copy(left_reader, right_writer)),
            asyncio.create_task(_copy(right_reader, left_writer)),
        ]
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        failed = any(task.exception() is not None for task in done)
    except (OSError, asyncio.IncompleteReadError):
        failed = True
    except asyncio.CancelledError:
        # Shutdown: reset both ends, since a clean close would wait for a side that
        # may never read what is still buffered for it.
        failed = True
        raise
    finally:
        # Nothing awaited before both writers are closed: a cancellation (shutdown) in
        # an await here would otherwise leave them open.
        for task in tasks:
            task.cancel()
        for writer in (left_writer, right_writer):
            if failed:
                reset(writer)
            else:
                writer.close()
        await asyncio.gather(*tasks, return_exceptions=True)
        for writer in (left_writer, right_writer):
            with contextlib.suppress(OSError):
                await writer.wait_closed()
