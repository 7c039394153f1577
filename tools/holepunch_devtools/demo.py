"""`make demo`: the whole system on loopback, no cloud, no internet, no root.

Starts a dev STUN server on two loopback addresses, the rendezvous and N workers as
the containers run them (their console commands, as processes), shows their events
as they happen, waits until every worker has registered the public mapping of its
UDP socket, checks that each registered endpoint answers a UDP ping, prints the
registry as a table, and ends with an application exchange over the data plane: a tiny
HTTP server on the last worker's loopback (EXPOSE_PORTS), an HTTP request to it through
the first worker's SOCKS proxy (SOCKS_LISTEN, host `<worker_id>.holepunch`), the answer
printed. Then it stops everything (unless --keep-running).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
import urllib.request
from typing import Any

from holepunch_logging import RendezvousEvent, WorkerEvent
from holepunch_protocol.datagrams import encode_ping, pong_token

from holepunch_devtools.processes import LogLine, ServiceProcess, start_service
from holepunch_devtools.socks_client import SocksError, socks5_connect
from holepunch_devtools.stun_server import start_stun_server
from holepunch_devtools.tiny_http import http_answerer

__all__ = ["main"]

# Events worth showing live; the rest stay in the processes' JSON logs.
SHOWN_EVENTS: frozenset[RendezvousEvent | WorkerEvent] = frozenset(
    {
        RendezvousEvent.SERVER_STARTED,
        RendezvousEvent.WORKER_CONNECTED,
        RendezvousEvent.UDP_ENDPOINT_UPDATED,
        WorkerEvent.UDP_SOCKET_BOUND,
        WorkerEvent.STUN_RESULT,
        WorkerEvent.MAPPING_CLASSIFIED,
        WorkerEvent.ENDPOINT_ACK,
        RendezvousEvent.WORKER_DISCONNECTED,
        WorkerEvent.WORKER_SHUTDOWN,
    }
)


def _free_port(kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _printer(name: str, verbose: bool) -> Any:
    def show(line: LogLine) -> None:
        event = line.get("event")
        if verbose or event in SHOWN_EVENTS or line.get("severity") in ("ERROR", "CRITICAL"):
            print(f"  {name:<14} {event or '-':<22} {line.get('message', line)}", flush=True)

    return show


def _get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=5) as response:
        body: dict[str, Any] = json.load(response)
        return body


async def _wait_for_registrations(
    list_url: str, worker_ids: list[str], timeout: float
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        listing = await asyncio.to_thread(_get_json, list_url)
        workers = listing["workers"]
        if all(
            workers.get(w, {}).get("stun_reported_udp_port") and workers[w].get("nat_mapping")
            for w in worker_ids
        ):
            return listing
        if time.monotonic() > deadline:
            raise TimeoutError(f"workers not all registered after {timeout} s: {sorted(workers)}")
        await asyncio.sleep(0.2)


async def _udp_ping(ip: str, port: int, timeout: float = 2.0) -> float | None:
    """Round trip of one ping datagram to a registered endpoint, in ms (None: no pong)."""
    loop = asyncio.get_running_loop()
    answered: asyncio.Future[float] = loop.create_future()
    started = time.perf_counter()
    token = os.urandom(8)

    class Pinger(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
            if pong_token(data) == token and not answered.done():
                answered.set_result((time.perf_counter() - started) * 1000)

    transport, _ = await loop.create_datagram_endpoint(Pinger, remote_addr=(ip, port))
    try:
        transport.sendto(encode_ping(token))
        return await asyncio.wait_for(answered, timeout)
    except TimeoutError:
        return None
    finally:
        transport.close()


async def _start_tiny_http_server(worker_id: str) -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(http_answerer(worker_id), "127.0.0.1", 0)
    port: int = server.sockets[0].getsockname()[1]
    return server, port


async def _http_get_through_socks(
    socks_port: int, worker_id: str, port: int, path: str, timeout: float
) -> str:
    """GET http://<worker_id>.holepunch:<port><path> through the SOCKS proxy; the reply."""
    reader, writer = await asyncio.open_connection("127.0.0.1", socks_port)
    try:
        host = f"{worker_id}.holepunch"
        await asyncio.wait_for(socks5_connect(reader, writer, host, port), timeout)
        writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\n\r\n".encode())
        reply = await asyncio.wait_for(reader.read(), timeout)
        return reply.decode(errors="replace")
    finally:
        writer.close()


async def _application_exchange(
    socks_port: int, server_worker: str, http_port: int, timeout: float
) -> bool:
    url = f"http://{server_worker}.holepunch:{http_port}/demo"
    print(f"\nAn application exchange over the data plane: GET {url}")
    print(f"  through the first worker's SOCKS proxy 127.0.0.1:{socks_port} ...")
    started = time.monotonic()
    try:
        reply = await _http_get_through_socks(
            socks_port, server_worker, http_port, "/demo", timeout
        )
    except (OSError, SocksError, TimeoutError, asyncio.IncompleteReadError) as error:
        print(f"  failed: {type(error).__name__}: {error}")
        return False
    elapsed_ms = (time.monotonic() - started) * 1000
    print(f"  answered in {elapsed_ms:.0f} ms (introduction, punch, QUIC handshake, stream):")
    for line in reply.splitlines():
        print(f"  | {line}".rstrip())
    return reply.startswith("HTTP/1.0 200") and "hello from behind" in reply


def _table(listing: dict[str, Any], pings: dict[str, float | None]) -> str:
    header = ("worker", "websocket from", "public UDP endpoint (STUN)", "mapping", "UDP ping")
    rows = [header]
    for worker_id, w in sorted(listing["workers"].items()):
        ping = pings.get(worker_id)
        rows.append(
            (
                worker_id,
                f"{w['websocket_observed_ip']}:{w['websocket_observed_port']}",
                f"{w['stun_reported_udp_ip']}:{w['stun_reported_udp_port']}",
                w.get("nat_mapping") or "-",
                "no answer" if ping is None else f"pong in {ping:.2f} ms",
            )
        )
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


async def run_demo(workers: int, keep_running: bool, timeout: float, verbose: bool) -> int:
    started = time.monotonic()
    stun = await start_stun_server([("127.0.0.1", 0), ("127.0.0.2", 0)])
    stun_servers = ",".join(f"{host}:{port}" for host, port in stun.addresses)
    print(f"dev STUN server on {stun_servers}")
    http_port = _free_port()
    base_url = f"http://127.0.0.1:{http_port}"
    processes: list[tuple[str, ServiceProcess]] = []
    worker_ids = [f"demo-worker-{n}" for n in range(1, workers + 1)]
    # The application: an HTTP server behind the last worker, reached from the first one.
    app_server, app_port = await _start_tiny_http_server(worker_ids[-1])
    socks_port = _free_port()
    try:
        rendezvous = await start_service(
            "holepunch_rendezvous",
            # Loopback only: development mode (logged as a warning), registry listing on.
            {
                "PORT": str(http_port),
                "HOST": "127.0.0.1",
                "AUTH_MODE": "none",
                "DEBUG_ENDPOINTS": "1",
            },
            on_line=_printer("rendezvous", verbose),
        )
        processes.append(("rendezvous", rendezvous))
        await rendezvous.wait_for_event(RendezvousEvent.SERVER_STARTED, timeout=20)

        for worker_id in worker_ids:
            env = {
                "WORKER_ID": worker_id,
                "RENDEZVOUS_SERVICE_URL": base_url,
                "STUN_SERVERS": stun_servers,
                "UDP_BIND_HOST": "127.0.0.1",
                "PORT": str(_free_port()),
                "STUN_REFRESH_SEC": "20",
            }
            if worker_id == worker_ids[-1]:
                env["EXPOSE_PORTS"] = str(app_port)
            if worker_id == worker_ids[0]:
                env["SOCKS_LISTEN"] = f"127.0.0.1:{socks_port}"
            process = await start_service(
                "holepunch_worker", env, on_line=_printer(worker_id, verbose)
            )
            processes.append((worker_id, process))

        listing = await _wait_for_registrations(
            f"{base_url}/debug/list_workers", worker_ids, timeout
        )
        pings = {
            worker_id: await _udp_ping(w["stun_reported_udp_ip"], w["stun_reported_udp_port"])
            for worker_id, w in listing["workers"].items()
        }
        elapsed = time.monotonic() - started
        print(f"\nAll {workers} workers registered in {elapsed:.1f} s. The registry:\n")
        print(_table(listing, pings))
        ok = all(ping is not None for ping in pings.values())
        if workers >= 2:
            exchanged = await _application_exchange(socks_port, worker_ids[-1], app_port, timeout)
            ok = ok and exchanged
        if keep_running:
            print(f"\nSee it live: open {base_url}/ui in a browser (the fleet page),")
            print(f"or curl {base_url}/debug/list_workers")
            if workers >= 2:
                print(
                    f"and through the data plane: curl --socks5-hostname 127.0.0.1:{socks_port}"
                    f" http://{worker_ids[-1]}.holepunch:{app_port}/"
                )
            print("Running until Ctrl-C ...")
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
        return 0 if ok else 1
    finally:
        print("\nStopping (SIGTERM) ...")
        for name, process in reversed(processes):
            try:
                code = await process.stop(timeout=10)
                print(f"  {name:<14} exited with status {code}")
            except TimeoutError:
                print(f"  {name:<14} did not stop within 10 s: killed")
        stun.close()
        app_server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="holepunch-demo", description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="number of workers (default 2)")
    parser.add_argument("--keep-running", action="store_true", help="keep running until Ctrl-C")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait (default 30)")
    parser.add_argument("--verbose", action="store_true", help="show every log event")
    args = parser.parse_args(argv)
    if not 1 <= args.workers <= 50:
        parser.error("--workers must be in 1..50")
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(run_demo(args.workers, args.keep_running, args.timeout, args.verbose))
    return 130


if __name__ == "__main__":
    sys.exit(main())
