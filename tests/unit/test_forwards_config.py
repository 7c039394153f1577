"""SOCKS_LISTEN, TCP_FORWARDS, UDP_FORWARDS and EXPOSE_UDP_PORTS: parsed, validated, and
refused in words that name the variable."""

from __future__ import annotations

import pytest
from holepunch_worker.config import ConfigError, ForwardSpec, WorkerConfig, load_config

BASE = {"RENDEZVOUS_SERVICE_URL": "https://rendezvous.example.run.app", "WORKER_ID": "worker-a"}


def config_for(**overrides: str) -> WorkerConfig:
    return load_config({**BASE, **overrides})


def test_all_off_by_default() -> None:
    config = config_for()
    assert config.socks_listen is None
    assert config.tcp_forwards == () and config.udp_forwards == ()
    assert config.expose_udp_ports == frozenset()


def test_every_variable_is_read() -> None:
    config = config_for(
        SOCKS_LISTEN="127.0.0.1:1080",
        TCP_FORWARDS="127.0.0.1:9000=worker-b:8000, [::1]:9001=worker-c.eu:22,",
        UDP_FORWARDS="127.0.0.2:5353=worker-b:53",
        EXPOSE_UDP_PORTS="53, 5353",
    )
    assert config.socks_listen == ("127.0.0.1", 1080)
    assert config.tcp_forwards == (
        ForwardSpec("127.0.0.1", 9000, "worker-b", 8000),
        ForwardSpec("::1", 9001, "worker-c.eu", 22),
    )
    assert config.udp_forwards == (ForwardSpec("127.0.0.2", 5353, "worker-b", 53),)
    assert config.expose_udp_ports == frozenset({53, 5353})
    assert str(config.tcp_forwards[1]) == "[::1]:9001=worker-c.eu:22"


def test_socks_listen_accepts_ipv6_loopback() -> None:
    assert config_for(SOCKS_LISTEN="[::1]:1080").socks_listen == ("::1", 1080)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("SOCKS_LISTEN", "0.0.0.0:1080", "loopback"),
        ("SOCKS_LISTEN", "10.0.0.5:1080", "loopback"),
        ("SOCKS_LISTEN", "localhost:1080", "loopback"),
        ("SOCKS_LISTEN", "[::]:1080", "loopback"),
        ("SOCKS_LISTEN", "1080", "host:port"),
        ("SOCKS_LISTEN", "127.0.0.1:", "port must be an integer"),
        ("SOCKS_LISTEN", "127.0.0.1:0", "1..65535"),
        ("SOCKS_LISTEN", "127.0.0.1:70000", "1..65535"),
        ("SOCKS_LISTEN", "[::1:1080", r"\[ipv6\]:port"),
        ("TCP_FORWARDS", "127.0.0.1:9000", "listen=peer:port"),
        ("TCP_FORWARDS", "0.0.0.0:9000=worker-b:8000", "loopback"),
        ("TCP_FORWARDS", "127.0.0.1:9000=worker-b", "peer:port"),
        ("TCP_FORWARDS", "127.0.0.1:9000=worker b:8000", "worker_id must match"),
        ("TCP_FORWARDS", "127.0.0.1:9000=:8000", "worker_id must match"),
        ("TCP_FORWARDS", "127.0.0.1:9000=worker-b:0", "1..65535"),
        ("TCP_FORWARDS", "127.0.0.1:9000=worker-a:8000", "names this worker itself"),
        ("TCP_FORWARDS", "127.0.0.1:9000=worker-b:80,127.0.0.1:9000=worker-c:80", "twice"),
        ("UDP_FORWARDS", "127.0.0.1:53=worker-b:x", "port must be an integer"),
        ("UDP_FORWARDS", "192.168.1.2:53=worker-b:53", "loopback"),
        ("EXPOSE_UDP_PORTS", "53,abc", "port must be an integer"),
        ("EXPOSE_UDP_PORTS", "0", "1..65535"),
        ("EXPOSE_UDP_PORTS", "53,53", "lists port 53 twice"),
    ],
)
def test_bad_values_name_their_variable(variable: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        config_for(**{variable: value})
    assert raised.value.variable == variable


def test_a_tcp_forward_may_not_take_the_socks_address() -> None:
    with pytest.raises(ConfigError, match="SOCKS_LISTEN's address") as raised:
        config_for(SOCKS_LISTEN="127.0.0.1:1080", TCP_FORWARDS="127.0.0.1:1080=worker-b:80")
    assert raised.value.variable == "TCP_FORWARDS"


def test_tcp_and_udp_forwards_may_share_a_port_number() -> None:
    config = config_for(
        TCP_FORWARDS="127.0.0.1:5000=worker-b:5000", UDP_FORWARDS="127.0.0.1:5000=worker-b:5000"
    )
    assert config.tcp_forwards[0].listen == config.udp_forwards[0].listen == "127.0.0.1:5000"
