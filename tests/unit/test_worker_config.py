"""Worker configuration: every variable, its default, and errors that name it."""

from __future__ import annotations

import pytest
from holepunch_worker.config import (
    ConfigError,
    StunServerAddress,
    load_config,
    parse_stun_servers,
    rendezvous_websocket_url,
)

BASE = {"RENDEZVOUS_SERVICE_URL": "https://rendezvous.example.run.app", "WORKER_ID": "w-1"}


def config_for(**overrides: str):  # type: ignore[no-untyped-def]
    return load_config({**BASE, **overrides})


def test_defaults() -> None:
    config = load_config({"RENDEZVOUS_SERVICE_URL": "https://r.example"}, lambda: "generated-id")
    assert config.worker_id == "generated-id"
    assert config.rendezvous_url == "wss://r.example/ws/register/generated-id"
    assert config.http_port == 8080
    assert (config.udp_bind_host, config.udp_port) == ("0.0.0.0", 0)
    assert config.stun_servers == (
        StunServerAddress("stun.l.google.com", 19302),
        StunServerAddress("stun1.l.google.com", 19302),
    )
    assert config.stun_refresh_sec == 20.0
    assert config.stun_retransmissions == 4
    assert (config.ping_interval_sec, config.ping_timeout_sec) == (25.0, 25.0)
    assert config.endpoint_ack_timeout_sec == 10.0
    assert (config.reconnect_initial_delay_sec, config.reconnect_max_delay_sec) == (1.0, 60.0)
    assert config.public_ip_echo_url is None
    assert config.log_level == "INFO"


def test_random_worker_id_is_a_uuid_by_default() -> None:
    first = load_config({"RENDEZVOUS_SERVICE_URL": "http://r"}).worker_id
    second = load_config({"RENDEZVOUS_SERVICE_URL": "http://r"}).worker_id
    assert len(first) == 36 and first != second


def test_every_variable_is_read() -> None:
    config = config_for(
        PORT="9000",
        UDP_BIND_HOST="127.0.0.1",
        UDP_PORT="40000",
        STUN_SERVERS="127.0.0.1:3478, 127.0.0.2:3479",
        STUN_REFRESH_SEC="2.5",
        STUN_RETRANSMISSIONS="1",
        PING_INTERVAL_SEC="5",
        PING_TIMEOUT_SEC="6",
        ENDPOINT_ACK_TIMEOUT_SEC="0.5",
        RECONNECT_INITIAL_DELAY_SEC="0.1",
        RECONNECT_MAX_DELAY_SEC="0.4",
        PUBLIC_IP_ECHO_URL="https://api.ipify.org",
        LOG_LEVEL="debug",
    )
    assert config.worker_id == "w-1"
    assert config.http_port == 9000
    assert (config.udp_bind_host, config.udp_port) == ("127.0.0.1", 40000)
    assert config.stun_servers == (
        StunServerAddress("127.0.0.1", 3478),
        StunServerAddress("127.0.0.2", 3479),
    )
    assert config.stun_refresh_sec == 2.5
    assert config.stun_retransmissions == 1
    assert (config.ping_interval_sec, config.ping_timeout_sec) == (5.0, 6.0)
    assert config.endpoint_ack_timeout_sec == 0.5
    assert (config.reconnect_initial_delay_sec, config.reconnect_max_delay_sec) == (0.1, 0.4)
    assert config.public_ip_echo_url == "https://api.ipify.org"
    assert config.log_level == "DEBUG"


def test_legacy_stun_host_and_port() -> None:
    config = config_for(STUN_HOST="stun.example.org", STUN_PORT="3478")
    assert config.stun_servers == (StunServerAddress("stun.example.org", 3478),)
    assert config_for(STUN_HOST="stun.example.org").stun_servers == (
        StunServerAddress("stun.example.org", 19302),
    )


def test_stun_servers_wins_over_legacy_variables() -> None:
    config = config_for(STUN_SERVERS="a.example:1", STUN_HOST="b.example", STUN_PORT="2")
    assert config.stun_servers == (StunServerAddress("a.example", 1),)


def test_stun_server_list_parsing() -> None:
    assert parse_stun_servers("[2001:db8::1]:3478,a:1,a:1,") == (
        StunServerAddress("2001:db8::1", 3478),
        StunServerAddress("a", 1),
    )
    assert str(StunServerAddress("2001:db8::1", 3478)) == "[2001:db8::1]:3478"


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ("http://127.0.0.1:8080", "ws://127.0.0.1:8080/ws/register/w-1"),
        ("https://r.example/", "wss://r.example/ws/register/w-1"),
        ("ws://r.example/prefix", "ws://r.example/prefix/ws/register/w-1"),
        ("WSS://r.example", "wss://r.example/ws/register/w-1"),
    ],
)
def test_rendezvous_url_mapping(base: str, expected: str) -> None:
    assert rendezvous_websocket_url(base, "w-1") == expected


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("RENDEZVOUS_SERVICE_URL", ""),
        ("RENDEZVOUS_SERVICE_URL", "ftp://r.example"),
        ("RENDEZVOUS_SERVICE_URL", "http://"),
        ("RENDEZVOUS_SERVICE_URL", "http://r.example/?x=1"),
        ("RENDEZVOUS_SERVICE_URL", "http://r.example:99999"),
        ("WORKER_ID", "has space"),
        ("WORKER_ID", "-leading-dash"),
        ("PORT", "eighty"),
        ("PORT", "70000"),
        ("UDP_PORT", "-1"),
        ("UDP_BIND_HOST", "localhost"),
        ("UDP_BIND_HOST", "::1"),
        ("STUN_SERVERS", "no-port"),
        ("STUN_SERVERS", "host:0"),
        ("STUN_SERVERS", "host:abc"),
        ("STUN_SERVERS", " , "),
        ("STUN_SERVERS", "[::1:3478"),
        ("STUN_REFRESH_SEC", "0"),
        ("STUN_REFRESH_SEC", "nan"),
        ("STUN_REFRESH_SEC", "soon"),
        ("STUN_RETRANSMISSIONS", "7"),
        ("PING_INTERVAL_SEC", "-5"),
        ("PING_TIMEOUT_SEC", "inf"),
        ("ENDPOINT_ACK_TIMEOUT_SEC", "0"),
        ("RECONNECT_INITIAL_DELAY_SEC", "0"),
        ("RECONNECT_MAX_DELAY_SEC", "0.5"),  # below the 1 s initial delay
        ("PUBLIC_IP_ECHO_URL", "api.ipify.org"),
        ("LOG_LEVEL", "LOUD"),
    ],
)
def test_errors_name_the_variable(variable: str, value: str) -> None:
    environ = {**BASE, variable: value}
    if value == "" and variable == "RENDEZVOUS_SERVICE_URL":
        environ.pop(variable)
    with pytest.raises(ConfigError) as raised:
        load_config(environ)
    assert raised.value.variable == variable
    assert str(raised.value).startswith(f"{variable}: ")


def test_legacy_errors_name_the_legacy_variable() -> None:
    with pytest.raises(ConfigError) as raised:
        config_for(STUN_HOST="stun.example.org", STUN_PORT="x")
    assert raised.value.variable == "STUN_PORT"
    with pytest.raises(ConfigError) as raised:
        config_for(STUN_PORT="3478")
    assert raised.value.variable == "STUN_PORT"
