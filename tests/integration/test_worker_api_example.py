"""examples/hello_stream.py, run as a person would (README "Python API"): a real rendezvous
process, a dev STUN server, `hello_stream.py serve` as worker-b and `hello_stream.py ask
worker-b` as worker-a, each its own process; the asker prints worker-b's answer."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from holepunch_devtools.processes import start_service
from holepunch_devtools.stun_server import StunServerHandle

from tests.support.ports import free_tcp_port
from tests.support.punch_workers import stun_servers

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hello_stream.py"
SERVER, ASKER = "example-b", "example-a"
DEADLINE_SEC = 30.0


@asynccontextmanager
async def rendezvous_process() -> AsyncIterator[str]:
    port = free_tcp_port()
    service = await start_service(
        "holepunch_rendezvous", {"PORT": str(port), "HOST": "127.0.0.1", "AUTH_MODE": "none"}
    )
    try:
        await service.wait_for_event("server_started", port=port)
        yield f"http://127.0.0.1:{port}"
    finally:
        assert await service.stop() == 0


def example_env(url: str, stun: StunServerHandle, worker_id: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "RENDEZVOUS_SERVICE_URL": url,
        "STUN_SERVERS": ",".join(f"{h}:{p}" for h, p in stun.addresses),
        "UDP_BIND_HOST": "127.0.0.1",
        "PORT": "0",
        "WORKER_ID": worker_id,
        "LOG_LEVEL": "WARNING",
    }


async def test_the_example_exchanges_a_line_between_two_processes() -> None:
    assert EXAMPLE.is_file()
    async with rendezvous_process() as url, stun_servers() as stun:
        server = await asyncio.create_subprocess_exec(
            sys.executable,
            str(EXAMPLE),
            "serve",
            env=example_env(url, stun, SERVER),
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            assert server.stdout is not None
            first = await asyncio.wait_for(server.stdout.readline(), DEADLINE_SEC)
            assert first.decode() == f"serving port 7000 as {SERVER}\n"
            asker = await asyncio.create_subprocess_exec(
                sys.executable,
                str(EXAMPLE),
                "ask",
                SERVER,
                "hello from a",
                env=example_env(url, stun, ASKER),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(asker.communicate(), DEADLINE_SEC)
            assert asker.returncode == 0, err.decode()
            assert out.decode() == f"{SERVER} heard: hello from a\n"
            answered = await asyncio.wait_for(server.stdout.readline(), DEADLINE_SEC)
            assert answered.decode() == f"answered {ASKER}: hello from a\n"

            # An unknown peer: the rendezvous's reason, and exit status 1.
            lost = await asyncio.create_subprocess_exec(
                sys.executable,
                str(EXAMPLE),
                "ask",
                "nobody",
                # Another id: ASKER's stays bound to the first asker's (generated) key for
                # KEY_BINDING_TTL_SEC after it exits, so a new key under it is refused.
                env=example_env(url, stun, ASKER + "-again"),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(lost.communicate(), DEADLINE_SEC)
            assert lost.returncode == 1 and out == b""
            # The worker's own WARNING (rendezvous_error) may come first on stderr.
            assert err.decode().splitlines()[-1].startswith("cannot reach nobody: peer_not_found")
        finally:
            if server.returncode is None:
                server.terminate()
            assert await asyncio.wait_for(server.wait(), DEADLINE_SEC) == 0
