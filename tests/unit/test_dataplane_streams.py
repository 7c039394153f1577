"""asyncio streams over aioquic (dataplane/streams.py): two real QuicConnections joined in
memory by holepunch_devtools.quic_pipe, no sockets. Byte-exact transfers (SHA-256), both
kinds of backpressure, closing, resets, a lost connection, and loss on the pipe."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import random

import pytest
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.stream import QuicStreamSender
from holepunch_devtools.quic_pipe import QuicPipe
from holepunch_devtools.stream_bench import run_bench
from holepunch_worker.dataplane.streams import (
    MuxStream,
    PeerStreamIds,
    StreamMux,
    receive_credit,
    send_progress,
)

CHUNK = 64 * 1024


def payload(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


async def write_all(writer: asyncio.StreamWriter, data: bytes, *, eof: bool = True) -> None:
    for start in range(0, len(data), CHUNK):
        writer.write(data[start : start + CHUNK])
        await writer.drain()
    if eof:
        writer.write_eof()


async def sha256_of_reader(reader: asyncio.StreamReader) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    while chunk := await reader.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


async def accept(pipe: QuicPipe) -> MuxStream:
    """The next stream the client opened, as the server's StreamMux handed it over."""
    async with asyncio.timeout(30):
        return await pipe.server.accepted.get()


# --- pure rules ---------------------------------------------------------------------------


def test_credit_is_a_window_beyond_what_arrived_raised_per_half_window() -> None:
    assert receive_credit(received=0, granted=1000, window=1000, reading_paused=False) == 1000
    # more than half a window left: no frame yet
    assert receive_credit(received=400, granted=1000, window=1000, reading_paused=False) == 1000
    assert receive_credit(received=500, granted=1000, window=1000, reading_paused=False) == 1500
    assert receive_credit(received=900, granted=1000, window=1000, reading_paused=False) == 1900


def test_credit_stops_while_the_reader_is_paused_and_never_shrinks() -> None:
    assert receive_credit(received=1000, granted=1000, window=1000, reading_paused=True) == 1000
    # a smaller window later never takes credit back
    assert receive_credit(received=900, granted=5000, window=100, reading_paused=False) == 5000


def test_peer_stream_ids_are_new_once_even_out_of_order() -> None:
    ids = PeerStreamIds()
    assert ids.first_sight(1)
    assert not ids.first_sight(1)
    assert ids.first_sight(13)  # 5 and 9 skipped: still to come
    assert ids.first_sight(9)
    assert not ids.first_sight(13)
    assert ids.first_sight(5)
    assert not ids.first_sight(5)
    assert not ids.first_sight(9)
    assert ids.first_sight(17)


# --- the seam with aioquic's private state ------------------------------------------------


def test_aioquic_still_has_what_the_seam_reads() -> None:
    """If this fails, aioquic changed: fix send_progress and install_receive_credit."""
    parameters = list(inspect.signature(QuicConnection._write_stream_limits).parameters)
    assert parameters == ["self", "builder", "space", "stream"]
    assert callable(QuicConnection._on_max_stream_data_delivery)
    sender = QuicStreamSender(stream_id=0, writable=True)
    sender.write(b"abc")
    assert bytes(sender._buffer) == b"abc"
    assert sender.is_finished is False


async def test_send_progress_counts_bytes_until_the_peer_acknowledges_them() -> None:
    async with QuicPipe() as pipe:
        stream_id, _, writer = pipe.client.streams().open_stream()
        quic = pipe.client.connection()
        writer.write(b"x" * 5000)
        assert send_progress(quic, stream_id).unacknowledged == 5000
        assert writer.transport.get_write_buffer_size() == 5000
        accepted = await accept(pipe)
        assert await accepted.reader.readexactly(5000) == b"x" * 5000
        await pipe.until(lambda: send_progress(quic, stream_id).unacknowledged == 0)
        assert not send_progress(quic, stream_id).finished
        writer.close()
        await writer.wait_closed()
        assert send_progress(quic, stream_id).finished
        accepted.writer.close()


# --- transfers ----------------------------------------------------------------------------


async def test_ten_megabytes_each_way_byte_exact() -> None:
    size = 10_000_000
    upload, download = payload(size, 1), payload(size, 2)
    async with QuicPipe() as pipe:
        _, reader, writer = pipe.client.streams().open_stream()

        async def server() -> tuple[int, str]:
            accepted = await accept(pipe)
            sending = asyncio.create_task(write_all(accepted.writer, download))
            received = await sha256_of_reader(accepted.reader)
            await sending
            accepted.writer.close()
            return received

        at_server, at_client, _ = await pipe.run(
            server(), sha256_of_reader(reader), write_all(writer, upload), timeout=120
        )
        writer.close()
        assert at_server == (size, hashlib.sha256(upload).hexdigest())
        assert at_client == (size, hashlib.sha256(download).hexdigest())
        assert pipe.client.streams().bytes_sent == size
        assert pipe.client.streams().bytes_received == size
        assert pipe.server.streams().bytes_sent == size
        await pipe.until(lambda: pipe.client.streams().streams_open == 0)
        await pipe.until(lambda: pipe.server.streams().streams_open == 0)


async def test_loss_on_the_pipe_still_byte_exact() -> None:
    size = 2_000_000
    upload, download = payload(size, 3), payload(size, 4)
    async with QuicPipe(drop_every=7) as pipe:
        _, reader, writer = pipe.client.streams().open_stream()

        async def echo_back() -> tuple[int, str]:
            accepted = await accept(pipe)
            sending = asyncio.create_task(write_all(accepted.writer, download))
            received = await sha256_of_reader(accepted.reader)
            await sending
            accepted.writer.close()
            return received

        at_server, at_client, _ = await pipe.run(
            echo_back(), sha256_of_reader(reader), write_all(writer, upload), timeout=120
        )
        writer.close()
        assert pipe.datagrams_dropped > 100
        assert at_server == (size, hashlib.sha256(upload).hexdigest())
        assert at_client == (size, hashlib.sha256(download).hexdigest())


async def test_many_concurrent_streams_each_echoed() -> None:
    count, size = 40, 100_000
    async with QuicPipe() as pipe:

        async def echo_server() -> None:
            async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                await write_all(writer, await reader.read())
                writer.close()
                await writer.wait_closed()

            tasks = []
            for _ in range(count):
                accepted = await accept(pipe)
                tasks.append(asyncio.create_task(echo(accepted.reader, accepted.writer)))
            await asyncio.gather(*tasks)

        async def client(index: int) -> bool:
            _, reader, writer = pipe.client.streams().open_stream()
            data = payload(size, 100 + index)
            await write_all(writer, data)
            echoed = await reader.read()
            writer.close()
            await writer.wait_closed()
            return echoed == data

        results = await pipe.run(echo_server(), *(client(i) for i in range(count)), timeout=120)
        assert results[1:] == [True] * count
        assert pipe.client.streams().streams_opened == count
        assert pipe.server.streams().streams_opened == count
        await pipe.until(lambda: pipe.server.streams().streams_open == 0)
        assert pipe.client.streams().streams_open == 0


async def test_a_unidirectional_stream_from_the_peer_is_refused() -> None:
    async with QuicPipe() as pipe:
        stopped = asyncio.Event()
        pipe.client.on_event = lambda event: (
            stopped.set() if isinstance(event, events.StopSendingReceived) else None
        )
        quic = pipe.client.connection()
        uni = quic.get_next_available_stream_id(is_unidirectional=True)
        quic.send_stream_data(uni, b"not for a StreamMux")
        pipe.flush(pipe.client)
        await pipe.run(stopped.wait(), timeout=10)
        assert pipe.server.accepted.empty()
        assert pipe.server.streams().streams_open == 0
        # a bidirectional stream after it is accepted as usual
        _, _, writer = pipe.client.streams().open_stream()
        writer.write(b"hello")
        accepted = await accept(pipe)
        assert await accepted.reader.readexactly(5) == b"hello"
        writer.close()
        accepted.writer.close()


# --- backpressure -------------------------------------------------------------------------


async def test_drain_blocks_while_the_peer_does_not_read_and_resumes_when_it_does() -> None:
    window, limit, reader_limit = 128 * 1024, 256 * 1024, 32 * 1024
    size = 4_000_000
    data = payload(size, 5)
    async with QuicPipe(
        max_stream_data=window,
        receive_window=window,
        send_buffer_limit=limit,
        reader_limit=reader_limit,
    ) as pipe:
        stream_id, _, writer = pipe.client.streams().open_stream()
        writer.write(data)
        draining = asyncio.create_task(writer.drain())
        accepted = await accept(pipe)  # accepted, never read (yet)
        server_quic, client_quic = pipe.server.connection(), pipe.client.connection()

        def blocked_by_flow_control() -> bool:
            stream = server_quic._streams[stream_id]
            received = stream.receiver.highest_offset
            return (
                received == stream.max_stream_data_local
                and send_progress(client_quic, stream_id).unacknowledged == size - received
            )

        await pipe.until(lambda: blocked_by_flow_control() or draining.done())
        await asyncio.sleep(0)  # one more turn of the loop: drain() would have returned
        assert not draining.done()
        received = server_quic._streams[stream_id].receiver.highest_offset
        # what the peer may send while nothing reads: the reader's pause threshold, plus a
        # window granted before it paused, plus half a window of batching
        assert received <= 2 * reader_limit + CHUNK + 2 * window
        assert pipe.server.streams().bytes_received == received

        read = asyncio.create_task(accepted.reader.readexactly(size))
        await pipe.run(draining)
        assert send_progress(client_quic, stream_id).unacknowledged <= limit
        writer.write_eof()
        assert await pipe.run(read) == [data]
        writer.close()
        accepted.writer.close()


async def test_writes_in_one_loop_turn_are_flushed_by_one_transmit() -> None:
    flushes = 0

    def transmit() -> None:
        nonlocal flushes
        flushes += 1

    mux = StreamMux(QuicConnection(configuration=QuicConfiguration(is_client=True)), transmit)
    _, _, writer = mux.open_stream()
    for _ in range(100):
        writer.write(b"hello")
    assert flushes == 0
    await asyncio.sleep(0)
    assert flushes == 1
    assert mux.bytes_sent == 500
    writer.write(b"again")
    await asyncio.sleep(0)
    assert flushes == 2
    mux.connection_lost(None)


# --- closing ------------------------------------------------------------------------------


async def test_half_close_then_the_peer_answers() -> None:
    async with QuicPipe() as pipe:
        _, reader, writer = pipe.client.streams().open_stream()
        writer.write(b"question")
        writer.write_eof()
        with pytest.raises(RuntimeError, match="write_eof"):
            writer.write(b"more")
        accepted = await accept(pipe)
        assert await accepted.reader.read() == b"question"  # EOF after the question
        accepted.writer.write(b"answer")
        accepted.writer.close()
        assert await reader.read() == b"answer"
        await accepted.writer.wait_closed()
        writer.close()
        await writer.wait_closed()
        await pipe.until(lambda: pipe.server.streams().streams_open == 0)
        assert pipe.client.streams().streams_open == 0


async def test_close_stops_reading_and_the_peer_sees_its_writes_refused() -> None:
    async with QuicPipe() as pipe:
        _, reader, writer = pipe.client.streams().open_stream()
        writer.write(b"hi")
        accepted = await accept(pipe)
        assert await accepted.reader.readexactly(2) == b"hi"
        writer.close()
        assert await reader.read() == b""  # the closing side reads EOF
        assert await accepted.reader.read() == b""  # the FIN
        await pipe.until(lambda: accepted.writer.transport.is_closing())
        with pytest.raises(ConnectionResetError):
            await accepted.writer.drain()
        accepted.writer.close()


async def test_the_peer_aborting_resets_reader_and_closes_writer() -> None:
    async with QuicPipe() as pipe:
        _, reader, writer = pipe.client.streams().open_stream()
        writer.write(b"hi")
        accepted = await accept(pipe)
        await accepted.reader.readexactly(2)
        accepted.writer.transport.abort()
        with pytest.raises(ConnectionResetError, match="reset by the peer"):
            await pipe.run(reader.read())
        assert writer.is_closing()
        with pytest.raises(ConnectionResetError):
            await writer.drain()
        writer.write(b"dropped")  # like a socket transport after a reset: ignored
        with pytest.raises(ConnectionResetError):
            await writer.wait_closed()
        assert pipe.client.streams().streams_open == 0
        assert pipe.server.streams().streams_open == 0


async def test_aborting_side_reader_ends_and_peer_gets_a_reset() -> None:
    async with QuicPipe() as pipe:
        _, reader, writer = pipe.client.streams().open_stream()
        writer.write(b"hi")
        accepted = await accept(pipe)
        writer.transport.abort()
        assert await reader.read() == b""
        with pytest.raises(ConnectionResetError):
            await pipe.run(accepted.reader.read())
        accepted.writer.close()


async def test_connection_lost_wakes_blocked_readers_and_writers() -> None:
    async with QuicPipe(send_buffer_limit=64 * 1024, max_stream_data=64 * 1024) as pipe:
        mux = pipe.client.streams()
        _, reader, writer = mux.open_stream()
        writer.write(payload(1_000_000, 6))
        draining = asyncio.create_task(writer.drain())
        reading = asyncio.create_task(reader.read())
        accepted = await accept(pipe)
        await asyncio.sleep(0)
        assert not draining.done() and not reading.done()
        mux.connection_lost(OSError("peer gone"))
        with pytest.raises(ConnectionResetError, match="peer gone"):
            await pipe.run(draining)
        with pytest.raises(ConnectionResetError, match="peer gone"):
            await pipe.run(reading)
        with pytest.raises(ConnectionResetError):
            mux.open_stream()
        assert mux.streams_open == 0 and mux.closed
        with pytest.raises(ConnectionResetError):
            await writer.wait_closed()
        accepted.writer.close()


async def test_connection_lost_after_a_half_close_still_ends_everything() -> None:
    async with QuicPipe() as pipe:
        mux = pipe.client.streams()
        stream_id, reader, writer = mux.open_stream()
        writer.write(b"request")
        writer.write_eof()
        accepted = await accept(pipe)
        assert await accepted.reader.read() == b"request"
        await pipe.until(lambda: send_progress(pipe.client.connection(), stream_id).finished)
        mux.connection_lost(None)
        with pytest.raises(ConnectionResetError, match="connection lost: closed"):
            await pipe.run(reader.read(), timeout=5)
        with pytest.raises(ConnectionResetError):
            await pipe.run(writer.wait_closed(), timeout=5)
        accepted.writer.close()


# --- the writer as an asyncio transport ---------------------------------------------------


async def test_writer_behaves_like_an_asyncio_transport() -> None:
    async with QuicPipe() as pipe:
        stream_id, _, writer = pipe.client.streams().open_stream()
        assert writer.get_extra_info("peername") == ("server", stream_id)
        assert writer.get_extra_info("stream_id") == stream_id
        assert writer.can_write_eof()
        with pytest.raises(TypeError, match="bytes-like"):
            writer.write("text")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="low <= high"):
            writer.transport.set_write_buffer_limits(high=10, low=20)
        writer.transport.set_write_buffer_limits(high=100)
        assert writer.transport.get_write_buffer_limits() == (100, 100)
        writer.write(b"")  # nothing: no stream frame, no error
        writer.close()
        assert writer.is_closing()
        writer.write(b"after close")  # dropped, like asyncio's socket transports
        await writer.wait_closed()
        assert pipe.client.streams().bytes_sent == 0


def test_a_mux_needs_a_running_loop_and_sane_limits() -> None:
    quic = QuicConnection(configuration=QuicConfiguration(is_client=True))
    with pytest.raises(RuntimeError):
        StreamMux(quic, lambda: None)

    async def build(**options: int) -> None:
        StreamMux(quic, lambda: None, **options)

    with pytest.raises(ValueError, match="send_buffer_limit"):
        asyncio.run(build(send_buffer_limit=-1))
    with pytest.raises(ValueError, match="receive_window"):
        asyncio.run(build(receive_window=0))


async def test_stream_bench_moves_the_bytes_both_ways() -> None:
    result = await run_bench(megabytes=1, rounds=1)  # raises when a byte count is wrong
    assert result.streams_mbit_s[0] > 0
    assert result.aioquic_mbit_s[0] > 0
