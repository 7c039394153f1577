"""Rendezvous configuration from the environment: defaults, values, and errors that name
the variable."""

from __future__ import annotations

import pytest
from holepunch_rendezvous.auth import AuthMode
from holepunch_rendezvous.config import ConfigError, RendezvousConfig


def test_auth_mode_has_no_silent_default() -> None:
    with pytest.raises(ConfigError, match="AUTH_MODE: is required: one of iam, token, none"):
        RendezvousConfig.from_env({})


def test_defaults() -> None:
    config = RendezvousConfig.from_env({"AUTH_MODE": "none"})
    assert config == RendezvousConfig()
    assert (config.host, config.port, config.trust_proxy_headers) == ("0.0.0.0", 8080, False)
    assert config.trusted_proxies == ("169.254.0.0/16",)


def test_values() -> None:
    config = RendezvousConfig.from_env(
        {
            "HOST": "127.0.0.1",
            "PORT": "9000",
            "LOG_LEVEL": "debug",
            "TRUST_PROXY_HEADERS": "yes",
            "TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.1",
            "SHUTDOWN_GRACE_SEC": "5.5",
            "WS_IMPLEMENTATION": "websockets",
            "WS_PING_INTERVAL_SEC": "10",
            "WS_PING_TIMEOUT_SEC": "5",
            "AUTH_MODE": "token",
            "RENDEZVOUS_TOKEN": "t" * 32,
            "ADMIN_TOKEN": "a" * 32,
            "DEBUG_ENDPOINTS": "1",
            "MAX_MESSAGES_PER_SEC": "10",
            "MAX_CONNECTIONS_PER_ADDRESS": "3",
            "RELAY_DATAGRAMS_PER_SEC": "20",
            "RELAY_BYTES_PER_SEC": "20000",
        }
    )
    assert config == RendezvousConfig(
        host="127.0.0.1",
        port=9000,
        log_level="DEBUG",
        trust_proxy_headers=True,
        trusted_proxies=("10.0.0.0/8", "192.0.2.1"),
        shutdown_grace_sec=5.5,
        ws_implementation="websockets",
        ws_ping_interval_sec=10.0,
        ws_ping_timeout_sec=5.0,
        auth_mode=AuthMode.TOKEN,
        rendezvous_token="t" * 32,
        admin_token="a" * 32,
        debug_endpoints=True,
        max_messages_per_sec=10.0,
        max_connections_per_address=3,
        relay_datagrams_per_sec=20.0,
        relay_bytes_per_sec=20000.0,
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORT", "eighty"),
        ("PORT", "0"),
        ("PORT", "65536"),
        ("HOST", "not-a-host"),
        ("LOG_LEVEL", "LOUD"),
        ("TRUST_PROXY_HEADERS", "maybe"),
        ("TRUSTED_PROXIES", "10.0.0.0/33"),
        ("SHUTDOWN_GRACE_SEC", "0"),
        ("SHUTDOWN_GRACE_SEC", "10"),
        ("WS_IMPLEMENTATION", "wsproto"),
        ("WS_PING_INTERVAL_SEC", "soon"),
        ("AUTH_MODE", "oauth"),
        ("RENDEZVOUS_TOKEN", "short"),
        ("ADMIN_TOKEN", "short"),
        ("MAX_MESSAGES_PER_SEC", "0"),
        ("MAX_CONNECTIONS_PER_ADDRESS", "none"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        RendezvousConfig.from_env({"AUTH_MODE": "none", name: value})


def test_token_mode_needs_the_token() -> None:
    with pytest.raises(ConfigError, match="RENDEZVOUS_TOKEN: is required with AUTH_MODE=token"):
        RendezvousConfig.from_env({"AUTH_MODE": "token"})


def test_iam_verification_and_slow_client_settings() -> None:
    default = RendezvousConfig.from_env({"AUTH_MODE": "iam"})
    assert default.iam_certs_url == "https://www.googleapis.com/oauth2/v1/certs"
    assert default.iam_audiences == () and default.cloud_run_service is None
    assert (default.handshake_timeout_sec, default.first_message_timeout_sec) == (10.0, 10.0)
    config = RendezvousConfig.from_env(
        {
            "AUTH_MODE": "iam",
            "IAM_CERTS_URL": "http://127.0.0.1:9/certs",
            "IAM_AUDIENCE": "https://r-1.run.app, https://rendezvous.example.com",
            "K_SERVICE": "rendezvous",
            "HANDSHAKE_TIMEOUT_SEC": "2.5",
            "FIRST_MESSAGE_TIMEOUT_SEC": "30",
        }
    )
    assert config.iam_certs_url == "http://127.0.0.1:9/certs"
    assert config.iam_audiences == ("https://r-1.run.app", "https://rendezvous.example.com")
    assert config.cloud_run_service == "rendezvous"
    assert (config.handshake_timeout_sec, config.first_message_timeout_sec) == (2.5, 30.0)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("IAM_CERTS_URL", "file:///etc/certs.json"),
        ("IAM_AUDIENCE", "rendezvous.example.com"),
        ("HANDSHAKE_TIMEOUT_SEC", "0"),
        ("HANDSHAKE_TIMEOUT_SEC", "301"),
        ("FIRST_MESSAGE_TIMEOUT_SEC", "soon"),
    ],
)
def test_bad_iam_or_deadline_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        RendezvousConfig.from_env({"AUTH_MODE": "iam", name: value})
