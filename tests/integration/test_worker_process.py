"""`holepunch-worker` as a real process against a real rendezvous process and the dev
STUN server: registration, re-registration after a rendezvous restart, HTTP status, a
UDP ping, SIGTERM; and the exit code for a bad configuration."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from holepunch_devtools.processes import ServiceProcess, start_service
from holepunch_devtools.stun_server import start_stun_server
from holepunch_protocol import encode_ping, pong_token
from holepunch_worker.identity import WorkerKey

from tests.support.ports import free_tcp_port
from tests.support.worker_keys import connect_with_key

WORKER_ID = "worker-under-test"


async def start_rendezvous(port: int) -> ServiceProcess:
    service = await start_service(
        "holepunch_rendezvous",
        {"PORT": str(port), "HOST": "127.0.0.1", "AUTH_MODE": "none", "DEBUG_ENDPOINTS": "1"},
    )
    await service.wait_for_event("server_started", port=port)
    return service


async def kill(service: ServiceProcess) -> None:
    if service.process.returncode is None:
        service.process.kill()
        await service.process.wait()


async def registered_worker(rendezvous_port: int) -> dict[str, Any] | None:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{rendezvous_port}/debug/list_workers")
    workers: dict[str, Any] = response.json()["workers"]
    return workers.get(WORKER_ID)


def udp_ping(address: tuple[str, int], token: bytes) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.bind(("127.0.0.1", 0))
        peer.settimeout(5)
        peer.sendto(encode_ping(token), address)
        data, source = peer.recvfrom(2048)
        assert source == address
        return pong_token(data)


async def test_registers_reregisters_after_rendezvous_restart_and_stops_on_sigterm() -> None:
    rendezvous_port, http_port = free_tcp_port(), free_tcp_port()
    stun_server = await start_stun_server([("127.0.0.1", 0), ("127.0.0.2", 0)])
    rendezvous = await start_rendezvous(rendezvous_port)
    worker = await start_service(
        "holepunch_worker",
        {
            "RENDEZVOUS_SERVICE_URL": f"http://127.0.0.1:{rendezvous_port}",
            "WORKER_ID": WORKER_ID,
            "PORT": str(http_port),
            "UDP_BIND_HOST": "127.0.0.1",
            "STUN_SERVERS": ",".join(f"{host}:{port}" for host, port in stun_server.addresses),
            "STUN_REFRESH_SEC": "1",
            "STUN_RETRANSMISSIONS": "1",
            "RECONNECT_INITIAL_DELAY_SEC": "0.1",
            "RECONNECT_MAX_DELAY_SEC": "0.5",
            "ENDPOINT_ACK_TIMEOUT_SEC": "2",
        },
    )
    try:
        bound = await worker.wait_for_event("udp_socket_bound")
        local = ("127.0.0.1", bound["udp_port"])
        assert bound["udp_ip"] == "127.0.0.1" and bound["worker_id"] == WORKER_ID

        classified = await worker.wait_for_event("mapping_classified")
        assert classified["mapping"] == "endpoint_independent"
        assert (classified["udp_ip"], classified["udp_port"]) == local
        await worker.wait_for_event("endpoint_ack", status="success")

        record = await registered_worker(rendezvous_port)
        assert record is not None, "worker missing from the rendezvous registry"
        assert (record["stun_reported_udp_ip"], record["stun_reported_udp_port"]) == local
        assert record["nat_mapping"] == "endpoint_independent"
        assert record["local_udp_port"] == local[1]
        assert record["websocket_connected"] is True

        async with httpx.AsyncClient() as client:
            root = await client.get(f"http://127.0.0.1:{http_port}/")
            status = (await client.get(f"http://127.0.0.1:{http_port}/status")).json()
        assert (root.status_code, root.text) == (200, "OK")
        assert status["worker_id"] == WORKER_ID
        assert status["udp_local"] == {"ip": local[0], "port": local[1]}
        assert status["udp_mapped"] == {"ip": local[0], "port": local[1]}
        assert status["mapping"] == "endpoint_independent"
        assert status["rendezvous_state"] == "connected"
        assert status["last_ack_status"] == "success" and status["last_ack_time"]

        # The endpoint the rendezvous holds is the worker's real UDP socket.
        assert await asyncio.to_thread(udp_ping, local, b"via-registry") == b"via-registry"

        # The rendezvous dies; the worker notices, backs off, and re-registers on its own
        # once a new rendezvous listens on the same port.
        await kill(rendezvous)
        await worker.wait_for_event("rendezvous_disconnected")
        await worker.wait_for_event("reconnect_scheduled")
        rendezvous = await start_rendezvous(rendezvous_port)
        await worker.wait_for(
            lambda line: (
                line.get("event") == "endpoint_ack"
                and line.get("status") == "success"
                and len(worker.events("rendezvous_connected")) >= 2
            ),
            timeout=10,
            what="endpoint_ack on the second connection",
        )
        record = await registered_worker(rendezvous_port)
        assert record is not None, "worker did not re-register after the restart"
        assert (record["stun_reported_udp_ip"], record["stun_reported_udp_port"]) == local
        delays = [line["delay_s"] for line in worker.events("reconnect_scheduled")]
        assert all(0 < delay <= 0.5 for delay in delays)  # RECONNECT_MAX_DELAY_SEC caps them

        # STUN keeps refreshing (STUN_REFRESH_SEC=1) without re-reporting an unchanged endpoint.
        requests_so_far = len(worker.events("stun_result"))
        await worker.wait_for(
            lambda _: len(worker.events("stun_result")) >= requests_so_far + 2,
            timeout=5,
            what="a STUN refresh round",
        )
        assert len(worker.events("endpoint_reported")) == 2  # once per connection

        started = time.monotonic()
        assert await worker.stop(timeout=10) == 0
        assert time.monotonic() - started < 10
        shutdown = worker.events("worker_shutdown")
        assert shutdown and shutdown[0]["worker_id"] == WORKER_ID
        assert worker.events("rendezvous_disconnected")[-1]["code"] == 1001
        await rendezvous.wait_for_event("worker_disconnected", worker_id=WORKER_ID)
    finally:
        await kill(worker)
        await kill(rendezvous)
        stun_server.close()
    for line in worker.lines:
        assert "unparsed" not in line, f"not a JSON line: {line}"
        assert line.get("severity") != "ERROR", line


async def test_invalid_configuration_exits_2_naming_the_variable() -> None:
    worker = await start_service(
        "holepunch_worker",
        {"RENDEZVOUS_SERVICE_URL": "http://127.0.0.1:1", "STUN_REFRESH_SEC": "often"},
    )
    assert await asyncio.wait_for(worker.process.wait(), 10) == 2
    await worker.stop()
    errors = [line for line in worker.lines if line.get("severity") == "ERROR"]
    assert len(errors) == 1
    assert errors[0]["event"] == "config_invalid"
    assert errors[0]["variable"] == "STUN_REFRESH_SEC"
    assert "STUN_REFRESH_SEC" in errors[0]["message"]


async def test_a_worker_whose_id_is_taken_over_backs_off_to_the_longest_delay(
    tmp_path: Path,
) -> None:
    # Only a client holding the same key can take the id over (another one is refused):
    # a second process started with the same WORKER_KEY_FILE.
    seed = os.urandom(32)
    (tmp_path / "worker.key").write_bytes(seed)
    key = WorkerKey(Ed25519PrivateKey.from_private_bytes(seed))
    rendezvous_port = free_tcp_port()
    stun_server = await start_stun_server([("127.0.0.1", 0), ("127.0.0.2", 0)])
    rendezvous = await start_rendezvous(rendezvous_port)
    worker = await start_service(
        "holepunch_worker",
        {
            "RENDEZVOUS_SERVICE_URL": f"http://127.0.0.1:{rendezvous_port}",
            "WORKER_ID": WORKER_ID,
            "PORT": str(free_tcp_port()),
            "UDP_BIND_HOST": "127.0.0.1",
            "STUN_SERVERS": ",".join(f"{host}:{port}" for host, port in stun_server.addresses),
            "RECONNECT_INITIAL_DELAY_SEC": "0.1",
            "RECONNECT_MAX_DELAY_SEC": "30",
            "WORKER_KEY_FILE": str(tmp_path / "worker.key"),
        },
    )
    try:
        await worker.wait_for_event("endpoint_ack", status="success")
        url = f"ws://127.0.0.1:{rendezvous_port}/ws/register/{WORKER_ID}"
        other, _ = await connect_with_key(url, WORKER_ID, key)
        async with other:  # another client claims the same worker_id
            taken = await worker.wait_for_event("worker_id_taken")
            scheduled = await worker.wait_for_event("reconnect_scheduled")
        assert taken["reason"] == "replaced by a newer connection for this worker_id"
        assert worker.events("rendezvous_disconnected")[-1]["code"] == 4409
        # Not the initial 0.1 s: the two would otherwise evict each other every second.
        assert 15 <= scheduled["delay_s"] <= 30
        await rendezvous.wait_for_event("worker_replaced")  # its own pipe, read apart
        assert len(rendezvous.events("worker_replaced")) == 1
    finally:
        await kill(worker)
        await kill(rendezvous)
        stun_server.close()
