"""The cost of the asyncio stream layer: `python -m holepunch_devtools.stream_bench`.

One stream carries `--megabytes` from client to server over two aioquic connections joined
in memory (holepunch_devtools.quic_pipe: no sockets, no loss), twice per round:

- "streams": through dataplane/streams.py, an asyncio `StreamWriter` writing 64 KiB
  chunks with `drain()` and an asyncio `StreamReader` reading them;
- "aioquic": aioquic alone, `send_stream_data` in a loop topped up after each batch of
  acknowledgements to the same unacknowledged-bytes limit, the receiver counting
  `StreamDataReceived` events.

Both run in the same process, alternating, so the machine's load weighs on both alike.
Prints each round and the median throughput of each, and their ratio (streams / aioquic).
Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from dataclasses import dataclass

from aioquic.quic import events
from holepunch_worker.dataplane.streams import DEFAULT_SEND_BUFFER_LIMIT, send_progress

from holepunch_devtools.quic_pipe import QuicPipe

__all__ = ["BenchResult", "main", "run_bench"]

CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class BenchResult:
    megabytes: int
    streams_mbit_s: list[float]
    aioquic_mbit_s: list[float]

    @property
    def ratio(self) -> float:
        return statistics.median(self.streams_mbit_s) / statistics.median(self.aioquic_mbit_s)


def _mbit_s(size: int, seconds: float) -> float:
    return size * 8 / seconds / 1e6


async def through_streams(size: int) -> float:
    """Seconds to move `size` bytes through a StreamWriter and a StreamReader."""
    chunk = bytes(CHUNK)
    async with QuicPipe() as pipe:
        writer = pipe.client.streams().open_stream().writer

        async def send() -> None:
            left = size
            while left > 0:
                writer.write(chunk[: min(left, CHUNK)])
                left -= CHUNK
                await writer.drain()
            writer.write_eof()

        async def receive() -> int:
            accepted = await pipe.server.accepted.get()
            received = 0
            while data := await accepted.reader.read(CHUNK):
                received += len(data)
            accepted.writer.close()
            return received

        started = time.perf_counter()
        _, received = await pipe.run(send(), receive(), timeout=600)
        elapsed = time.perf_counter() - started
        writer.close()
        if received != size:
            raise RuntimeError(f"streams: received {received} bytes of {size}")
        return elapsed


async def through_aioquic(size: int) -> float:
    """Seconds to move `size` bytes with aioquic's own calls, under the same send limit."""
    chunk = bytes(CHUNK)
    done = asyncio.Event()
    received = 0
    async with QuicPipe(use_mux=False) as pipe:
        quic = pipe.client.connection()
        stream_id = quic.get_next_available_stream_id()
        left = size

        def top_up() -> None:
            nonlocal left
            if left <= 0:
                return
            while left > 0 and send_progress(quic, stream_id).unacknowledged < (
                DEFAULT_SEND_BUFFER_LIMIT
            ):
                quic.send_stream_data(
                    stream_id, chunk[: min(left, CHUNK)], end_stream=left <= CHUNK
                )
                left -= CHUNK

        def count(event: events.QuicEvent) -> None:
            nonlocal received
            if isinstance(event, events.StreamDataReceived):
                received += len(event.data)
                if event.end_stream:
                    done.set()

        pipe.server.on_event = count
        pipe.client.on_batch = top_up  # the pipe transmits right after
        started = time.perf_counter()
        top_up()
        pipe.flush(pipe.client)
        async with asyncio.timeout(600):
            await done.wait()
        elapsed = time.perf_counter() - started
    if received != size:
        raise RuntimeError(f"aioquic: received {received} bytes of {size}")
    return elapsed


async def run_bench(megabytes: int, rounds: int) -> BenchResult:
    size = megabytes * 1_000_000
    streams, plain = [], []
    for _ in range(rounds):
        plain.append(_mbit_s(size, await through_aioquic(size)))
        streams.append(_mbit_s(size, await through_streams(size)))
    return BenchResult(megabytes, streams, plain)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--megabytes", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    result = asyncio.run(run_bench(args.megabytes, args.rounds))
    for index, (ours, theirs) in enumerate(
        zip(result.streams_mbit_s, result.aioquic_mbit_s, strict=True), start=1
    ):
        print(f"round {index}: streams {ours:7.1f} Mbit/s   aioquic {theirs:7.1f} Mbit/s")
    print(
        f"{result.megabytes} MB, median of {len(result.streams_mbit_s)}: "
        f"streams {statistics.median(result.streams_mbit_s):.1f} Mbit/s, "
        f"aioquic {statistics.median(result.aioquic_mbit_s):.1f} Mbit/s, "
        f"ratio {result.ratio:.2f}"
    )


if __name__ == "__main__":
    main()
