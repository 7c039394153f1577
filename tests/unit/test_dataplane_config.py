"""EXPOSE_PORTS: the TCP ports of the worker's loopback that peers may open streams to."""

from __future__ import annotations

import pytest
from holepunch_worker.config import ConfigError, load_config, parse_port_set

BASE = {"RENDEZVOUS_SERVICE_URL": "https://rendezvous.example.run.app", "WORKER_ID": "w-1"}


def test_no_port_is_exposed_by_default() -> None:
    assert load_config(BASE).expose_ports == frozenset()
    assert load_config({**BASE, "EXPOSE_PORTS": " "}).expose_ports == frozenset()


def test_ports_are_read() -> None:
    config = load_config({**BASE, "EXPOSE_PORTS": "8000, 22,65535,1"})
    assert config.expose_ports == frozenset({8000, 22, 65535, 1})


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "port must be in 1..65535, got 0"),
        ("65536", "port must be in 1..65535"),
        ("http", "port must be an integer"),
        ("8000,8000", "lists port 8000 twice"),
        ("80;443", "port must be an integer"),
    ],
)
def test_bad_ports_are_refused_naming_the_variable(value: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config({**BASE, "EXPOSE_PORTS": value})
    assert raised.value.variable == "EXPOSE_PORTS"
    assert message in str(raised.value)


def test_the_parser_names_another_variable_when_asked() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_port_set("x", "EXPOSE_UDP_PORTS")
    assert raised.value.variable == "EXPOSE_UDP_PORTS"
