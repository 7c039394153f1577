"""Fixtures of the end-to-end tests: NAT labs in network namespaces (holepunch_devtools.natlab).

Every lab gets a per-run unique prefix (`hp-<pid>-<hex>`), is built by the test that
needs it and is always torn down by the fixture's finalizer, also when the test fails;
labs left by a killed run are removed at session start. Without root, iproute2,
iptables, coturn or conntrack the tests skip with the reason, and fail instead under
HOLEPUNCH_STRICT_TESTS=1 (CI).

`impairment` runs each lab test twice: on a clean network, and with 25 ms delay and
10 % loss each way on every NAT's wan link (a 50 ms round trip).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from holepunch_devtools.natlab import (
    Impairment,
    Lab,
    LabError,
    LabSpec,
    NatSpec,
    new_prefix,
    remove_stale_labs,
    start_service_in_namespace,
)
from holepunch_devtools.processes import ServiceProcess

from tests.support.strict import require_executable, require_root, skip_or_fail

T = TypeVar("T")

# Fast enough for tests, within what the worker's config allows.
WORKER_TEST_ENV = {
    "STUN_REFRESH_SEC": "2",
    "RECONNECT_INITIAL_DELAY_SEC": "0.2",
    "RECONNECT_MAX_DELAY_SEC": "1",
    "ENDPOINT_ACK_TIMEOUT_SEC": "3",
    "LOG_LEVEL": "DEBUG",  # mapping_classified for unchanged rounds is DEBUG
}

IMPAIRMENTS = {"clean": Impairment(), "rtt50ms-loss10pct": Impairment(delay_ms=25, loss_pct=10)}

MakeLab = Callable[..., Lab]
StartWorker = Callable[..., Awaitable[ServiceProcess]]


@pytest.fixture(scope="session")
def natlab_prerequisites() -> None:
    require_root("network namespaces, veth links and iptables for the NAT lab")
    require_executable("ip", "install the Debian package iproute2")
    require_executable("iptables", "install the Debian package iptables")
    require_executable("turnserver", "install the Debian package coturn")
    require_executable("conntrack", "install the Debian package conntrack")
    probe = f"{new_prefix()}-probe"
    created = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    if created.returncode != 0:
        skip_or_fail(f"cannot create network namespaces here: {created.stderr.strip()}")
    remove_stale_labs()


@pytest.fixture(params=list(IMPAIRMENTS.values()), ids=list(IMPAIRMENTS))
def impairment(request: pytest.FixtureRequest) -> Impairment:
    value: Impairment = request.param
    return value


@pytest.fixture
def make_lab(
    natlab_prerequisites: None, impairment: Impairment, tmp_path: Path
) -> Iterator[MakeLab]:
    """`make_lab(NatSpec(...), ...)` builds and starts a lab (coturn, rendezvous) whose
    NAT wan links all get this run's impairment; every lab is removed afterwards."""
    labs: list[Lab] = []

    def make(*nats: NatSpec) -> Lab:
        spec = LabSpec(nats=tuple(dataclasses.replace(n, impairment=impairment) for n in nats))
        lab = Lab.create(spec, new_prefix(), state_root=tmp_path / "natlab")
        labs.append(lab)
        lab.up()
        return lab

    try:
        yield make
    finally:
        for lab in labs:
            lab.down()


@pytest.fixture
async def start_worker(make_lab: MakeLab) -> AsyncIterator[StartWorker]:
    """`await start_worker(lab, i, worker_id, **env)`: holepunch-worker on host<i>.
    Workers are stopped before their lab is torn down (this fixture depends on make_lab)."""
    started: list[ServiceProcess] = []

    async def start(lab: Lab, index: int, worker_id: str, **env: str) -> ServiceProcess:
        service = await start_service_in_namespace(
            lab.ns(f"host{index}"),
            "holepunch_worker",
            lab.worker_env(WORKER_ID=worker_id, **{**WORKER_TEST_ENV, **env}),
        )
        started.append(service)
        return service

    try:
        yield start
    finally:
        for service in started:
            with contextlib.suppress(TimeoutError, ProcessLookupError):
                await service.stop(timeout=5)


async def eventually(
    check: Callable[[], T | None], what: str, timeout: float = 30.0, interval: float = 0.2
) -> T:
    """Poll the blocking `check` (in a thread) until it returns a truthy value."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = await asyncio.to_thread(check)
        except (OSError, LabError, ValueError) as error:
            result, last_error = None, error
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s (last error: {last_error})")
        await asyncio.sleep(interval)  # poll interval, not a synchronisation
