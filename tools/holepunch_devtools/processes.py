"""Service processes started as the containers start them, with their JSON log lines.

Used by `make demo` and by the tests: each line a service writes is kept, parsed.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from holepunch_logging import DevEvent, RendezvousEvent, WorkerEvent

__all__ = ["ServiceProcess", "catalogued_event", "start_service"]

LogLine = dict[str, Any]


_CATALOGUED = frozenset(
    member.value for catalogue in (RendezvousEvent, WorkerEvent, DevEvent) for member in catalogue
)


def catalogued_event(name: str) -> str:
    """`name`, if the services can log it: a misspelt event fails at once, not as a timeout."""
    if name not in _CATALOGUED:
        raise ValueError(f"{name!r} is not a log event in holepunch_logging.events")
    return name


@dataclass
class ServiceProcess:
    process: asyncio.subprocess.Process
    lines: list[LogLine] = field(default_factory=list)
    raw_lines: list[str] = field(default_factory=list)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _reader: asyncio.Task[None] | None = None
    on_line: Callable[[LogLine], None] | None = None
    output_ended: bool = False

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for raw in self.process.stdout:
            text = raw.decode(errors="replace").rstrip("\n")
            self.raw_lines.append(text)
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = {"unparsed": text}
            line = parsed if isinstance(parsed, dict) else {"unparsed": text}
            if self.on_line is not None:
                self.on_line(line)
            async with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        async with self._changed:
            self.output_ended = True
            self._changed.notify_all()

    def events(self, name: str) -> list[LogLine]:
        catalogued_event(name)
        return [line for line in self.lines if line.get("event") == name]

    async def wait_for(
        self, predicate: Callable[[LogLine], bool], timeout: float = 10.0, what: str = ""
    ) -> LogLine:
        """The first log line (already seen or still to come) for which `predicate` holds."""

        def first() -> LogLine | None:
            return next((line for line in self.lines if predicate(line)), None)

        async def until_found() -> LogLine:
            async with self._changed:
                while (found := first()) is None:
                    if self.output_ended:
                        raise AssertionError(f"process ended before {what or 'the log line'}")
                    await self._changed.wait()
                return found

        try:
            return await asyncio.wait_for(until_found(), timeout)
        except TimeoutError:
            tail = "\n".join(self.raw_lines[-15:])
            raise AssertionError(
                f"no log line for {what} within {timeout} s; last:\n{tail}"
            ) from None

    async def wait_for_event(self, name: str, timeout: float = 10.0, **fields: Any) -> LogLine:
        catalogued_event(name)
        return await self.wait_for(
            lambda line: (
                line.get("event") == name
                and all(line.get(key) == value for key, value in fields.items())
            ),
            timeout,
            what=f"event {name} {fields or ''}",
        )

    async def stop(self, timeout: float = 10.0) -> int:
        if self.process.returncode is None:
            self.process.terminate()
        try:
            code = await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
            raise
        if self._reader is not None:
            await self._reader
        return code


async def start_service(
    module: str,
    env: Mapping[str, str],
    on_line: Callable[[LogLine], None] | None = None,
    command_prefix: Sequence[str] = (),
    python: str = sys.executable,
) -> ServiceProcess:
    """`python -m module`, after `command_prefix` (e.g. `ip netns exec NS`) if given."""
    process = await asyncio.create_subprocess_exec(
        *command_prefix,
        python,
        "-m",
        module,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    service = ServiceProcess(process, on_line=on_line)
    service._reader = asyncio.create_task(service._read())
    return service
