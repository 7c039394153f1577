"""The log event catalogue (holepunch_logging.events) is the services' exact list.

Read from the sources of the installed packages, wherever they live: no service logs a
literal name instead of a member, and each member of the enum is logged by its service.
"""

from __future__ import annotations

import ast
import enum
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import holepunch_devtools.stun_server
import holepunch_rendezvous
import holepunch_worker
import pytest
from holepunch_devtools.processes import catalogued_event
from holepunch_logging import DevEvent, RendezvousEvent, WorkerEvent

SNAKE_CASE = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")
CATALOGUES: dict[type[enum.StrEnum], ModuleType] = {
    RendezvousEvent: holepunch_rendezvous,
    WorkerEvent: holepunch_worker,
    DevEvent: holepunch_devtools.stun_server,
}
# Calls that take an event name, and the position of that argument.
EVENT_ARGUMENT = {"log_event": 1, "_log": 0, "_debug": 0, "LogEvent": 0, "Event": 0}


def sources(module: ModuleType) -> list[Path]:
    assert module.__file__ is not None
    path = Path(module.__file__)
    return sorted(path.parent.rglob("*.py")) if path.name == "__init__.py" else [path]


def literal_event_names(path: Path) -> set[str]:
    """The event names written as string literals in `path`'s logging calls."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        callee = node.func
        name = callee.attr if isinstance(callee, ast.Attribute) else getattr(callee, "id", "")
        position = EVENT_ARGUMENT.get(name)
        if position is None or len(node.args) <= position:
            continue
        argument = node.args[position]
        if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
            names.add(argument.value)
    return names


@pytest.mark.parametrize("catalogue", list(CATALOGUES), ids=lambda c: c.__name__)
def test_members_are_snake_case_names_of_their_own(catalogue: type[enum.StrEnum]) -> None:
    for name, member in catalogue.__members__.items():
        assert SNAKE_CASE.fullmatch(member.value), member.value
        # A repeated value would make a silent alias of an earlier member.
        assert member.value == name.lower(), f"{catalogue.__name__}.{name} = {member.value!r}"


@pytest.mark.parametrize("catalogue", list(CATALOGUES), ids=lambda c: c.__name__)
def test_services_log_enum_members_not_literal_names(catalogue: type[enum.StrEnum]) -> None:
    # mypy holds log_event to the enums; this also covers Event, LogEvent and the helpers.
    for path in sources(CATALOGUES[catalogue]):
        assert not literal_event_names(path), f"{path} logs a literal event name"


@pytest.mark.parametrize("catalogue", list(CATALOGUES), ids=lambda c: c.__name__)
def test_every_catalogued_event_is_logged_by_its_service(catalogue: type[enum.StrEnum]) -> None:
    text = "".join(path.read_text(encoding="utf-8") for path in sources(CATALOGUES[catalogue]))
    unused = [
        member.value for member in catalogue if f"{catalogue.__name__}.{member.name}" not in text
    ]
    assert not unused, f"{catalogue.__name__} lists events nothing logs: {unused}"


def test_the_test_helpers_refuse_an_event_no_service_logs() -> None:
    # A misspelt name in a test's wait would otherwise surface only as a timeout.
    assert catalogued_event("relay_upgraded") == "relay_upgraded"
    with pytest.raises(ValueError, match="'relay_upgradd' is not a log event"):
        catalogued_event("relay_upgradd")


def test_aioquic_connection_chatter_is_not_logged_but_its_warnings_are() -> None:
    # In a process of its own: configure_logging owns the root logger.
    program = (
        "import logging; from holepunch_logging import configure_logging; "
        "configure_logging('holepunch-worker', 'DEBUG'); "
        "logging.getLogger('quic').info('[abcd] Negotiated protocol version 0x00000001'); "
        "logging.getLogger('quic').warning('[abcd] something went wrong')"
    )
    output = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    ).stdout
    lines = [json.loads(line) for line in output.splitlines()]
    from_quic = [
        line for line in lines if line["logging.googleapis.com/labels"]["python_logger"] == "quic"
    ]
    assert [line["message"] for line in from_quic] == ["[abcd] something went wrong"]
