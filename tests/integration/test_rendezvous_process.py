"""`holepunch-rendezvous` as a process: structured logs, bad config, SIGTERM."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from holepunch_devtools.processes import start_service
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.support.ports import free_tcp_port


async def test_logs_one_json_event_per_line_and_shuts_down_with_1001() -> None:
    port = free_tcp_port()
    service = await start_service(
        "holepunch_rendezvous", {"PORT": str(port), "HOST": "127.0.0.1", "AUTH_MODE": "none"}
    )
    try:
        await service.wait_for_event("server_started", port=port)
        url = f"ws://127.0.0.1:{port}/ws/register/"
        async with connect(url + "logged") as ws, connect(url + "other") as other:
            await ws.send(json.dumps({"type": "register_public_ip", "ip": "198.51.100.1"}))
            await ws.send(
                json.dumps({"type": "update_udp_endpoint", "udp_ip": "203.0.113.1", "udp_port": 9})
            )
            assert json.loads(await ws.recv())["status"] == "success"
            await ws.send(json.dumps({"type": "update_udp_endpoint", "udp_ip": "x", "udp_port": 9}))
            assert json.loads(await ws.recv())["status"] == "error"
            await ws.send("garbage")
            assert json.loads(await ws.recv())["code"] == "invalid_json"
            async with connect(url + "logged"):
                await service.wait_for_event("worker_replaced", worker_id="logged")
            await service.wait_for_event(
                "worker_disconnected", worker_id="logged", removed_from_registry=True
            )

            started = time.monotonic()
            service.process.terminate()
            with pytest.raises(ConnectionClosed) as closed:
                await other.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        code = await service.stop(timeout=10)
        assert code == 0
        assert time.monotonic() - started < 10
    finally:
        if service.process.returncode is None:
            service.process.kill()
            await service.process.wait()

    for line in service.lines:
        assert "unparsed" not in line, f"not a JSON line: {line}"
        assert line.get("severity") in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"} or (
            "logging.googleapis.com/diagnostic" in line
        )
    diagnostics = [line for line in service.lines if "logging.googleapis.com/diagnostic" in line]
    assert len(diagnostics) == 1 and service.lines[0] is diagnostics[0]
    connected = service.events("worker_connected")[0]
    assert connected["worker_id"] == "logged" and connected["observed_ip"] == "127.0.0.1"
    assert service.events("public_ip_registered")[0]["public_ip"] == "198.51.100.1"
    updated = service.events("udp_endpoint_updated")[0]
    assert (updated["udp_ip"], updated["udp_port"], updated["severity"]) == (
        "203.0.113.1",
        9,
        "INFO",
    )
    rejected = service.events("udp_endpoint_rejected")[0]
    assert rejected["severity"] == "WARNING" and "udp_ip" in rejected["reason"]
    assert service.events("message_rejected")[0]["code"] == "invalid_json"
    assert service.events("worker_replaced")[0]["reason"]
    assert {line["worker_id"] for line in service.events("worker_disconnected")} == {
        "logged",
        "other",
    }
    assert any(line.get("code") == 1001 for line in service.events("worker_disconnected"))
    assert service.events("server_stopping")


async def test_invalid_configuration_names_the_variable() -> None:
    service = await start_service("holepunch_rendezvous", {"PORT": "eighty"})
    code = await asyncio.wait_for(service.process.wait(), 10)
    await service.stop()
    assert code == 2
    error = service.events("config_invalid")[0]
    assert error["severity"] == "ERROR" and "PORT" in error["message"]
    assert error["variable"] == "PORT"  # the same shape as the worker's config_invalid
