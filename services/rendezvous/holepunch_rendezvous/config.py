"""Rendezvous configuration, read once from the environment and validated."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from holepunch_env import (
    ConfigError,
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_log_level,
    env_text,
)
from holepunch_protocol.peer_datagrams import MAX_PEER_DATAGRAM_BYTES

from holepunch_rendezvous.auth import AuthMode
from holepunch_rendezvous.budgets import DEFAULT_CAPS, CapLimits
from holepunch_rendezvous.id_tokens import GOOGLE_CERTS_URL
from holepunch_rendezvous.identity import DEFAULT_KEY_BINDING_TTL_SEC
from holepunch_rendezvous.policy import PolicyError, policy_for
from holepunch_rendezvous.punch_sessions import DEFAULT_RELAY_LIMITS

__all__ = ["DEFAULT_TRUSTED_PROXIES", "ConfigError", "RendezvousConfig"]

# Cloud Run's front end connects from link-local addresses (169.254.x.x).
DEFAULT_TRUSTED_PROXIES = "169.254.0.0/16"
# The implementations whose library is installed (websockets); wsproto is not a dependency.
WS_IMPLEMENTATIONS = ("websockets-sansio", "websockets")


def _ip_literal(env: Mapping[str, str], name: str, default: str) -> str:
    raw = env_text(env, name) or default
    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        raise ConfigError(name, f"must be an IP address to listen on, got {raw!r}") from None


def _auth_mode(env: Mapping[str, str]) -> AuthMode:
    choices = ", ".join(mode.value for mode in AuthMode)
    raw = (env_text(env, "AUTH_MODE") or "").lower()
    if not raw:
        raise ConfigError(
            "AUTH_MODE",
            f"is required: one of {choices} (iam on Cloud Run, token elsewhere, "
            "none for development only)",
        )
    try:
        return AuthMode(raw)
    except ValueError:
        raise ConfigError("AUTH_MODE", f"must be one of {choices}, got {raw!r}") from None


MIN_SECRET_LENGTH = 16


def _secret(env: Mapping[str, str], name: str, *, required: bool) -> str | None:
    raw = env_text(env, name)
    if raw is None:
        if required:
            raise ConfigError(name, "is required with AUTH_MODE=token")
        return None
    if len(raw) < MIN_SECRET_LENGTH:
        raise ConfigError(name, f"must be at least {MIN_SECRET_LENGTH} characters")
    return raw


def _audiences(env: Mapping[str, str]) -> tuple[str, ...]:
    raw = env_text(env, "IAM_AUDIENCE")
    if raw is None:
        return ()
    audiences = tuple(entry.strip() for entry in raw.split(",") if entry.strip())
    for audience in audiences:
        if not audience.startswith(("https://", "http://")):
            raise ConfigError(
                "IAM_AUDIENCE",
                f"has {audience!r}: an audience is the URL workers reach the rendezvous at "
                "(https://...), as in their ID_TOKEN_AUDIENCE",
            )
    return audiences


def _certs_url(env: Mapping[str, str], default: str) -> str:
    raw = env_text(env, "IAM_CERTS_URL") or default
    if not raw.startswith(("https://", "http://")):
        raise ConfigError("IAM_CERTS_URL", f"must be an http(s) URL, got {raw!r}")
    return raw


REGISTRY_SCHEMES = ("redis://", "rediss://", "unix://")


def _registry_url(env: Mapping[str, str]) -> str | None:
    raw = env_text(env, "REGISTRY_URL")
    if raw is None or raw == "memory://":
        return None
    if not raw.startswith(REGISTRY_SCHEMES):
        raise ConfigError(
            "REGISTRY_URL",
            "must be empty or memory:// (in-process registry) or "
            f"redis://HOST:PORT/DB (shared through Redis), got {raw.split('@')[-1]!r}",
        )
    return raw


def _networks(env: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    raw = env_text(env, name)
    if raw is None:
        return default
    entries = tuple(entry.strip() for entry in raw.split(",") if entry.strip())
    for entry in entries:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ConfigError(name, f"has {entry!r}, not an IP address or CIDR range") from None
    return entries


@dataclass(frozen=True, slots=True)
class RendezvousConfig:
    host: str = "0.0.0.0"
    port: int = 8080
    log_level: str = "INFO"
    # Take the client address from X-Forwarded-For, but only when the direct peer is
    # one of `trusted_proxies`. Off by default: anyone can write that header.
    trust_proxy_headers: bool = False
    trusted_proxies: tuple[str, ...] = (DEFAULT_TRUSTED_PROXIES,)
    # Cloud Run gives 10 s between SIGTERM and SIGKILL.
    shutdown_grace_sec: float = 8.0
    ws_implementation: str = "websockets-sansio"
    ws_ping_interval_sec: float = 20.0
    ws_ping_timeout_sec: float = 20.0
    # From the environment AUTH_MODE is required (no silent default); code that builds a
    # config itself (tests) says what it wants.
    auth_mode: AuthMode = AuthMode.NONE
    rendezvous_token: str | None = None
    admin_token: str | None = None
    debug_endpoints: bool = False
    max_messages_per_sec: float = 50.0
    max_connections_per_address: int = 1000
    # Per punch session; the defaults are RelayLimits's own.
    relay_datagrams_per_sec: float = DEFAULT_RELAY_LIMITS.datagrams_per_sec
    relay_bytes_per_sec: float = DEFAULT_RELAY_LIMITS.bytes_per_sec
    # None: the in-process registry (one instance). redis://...: shared by every instance.
    registry_url: str | None = None
    # How long a worker's shared entry outlives the last heartbeat of its instance (the
    # store's heartbeat comes every third of this).
    registry_ttl_sec: float = 15.0
    # Who may be introduced to whom, and which tags workers may declare (see policy.py);
    # None: allow all under AUTH_MODE=none, no introduction otherwise.
    introduction_policy: str | None = None
    allowed_worker_tags: str | None = None
    # AUTH_MODE=iam: where Google's token-signing certificates are published, and the
    # audiences a token may name (empty: this service's URL as the client reached it).
    iam_certs_url: str = GOOGLE_CERTS_URL
    iam_audiences: tuple[str, ...] = ()
    # Cloud Run's K_SERVICE: None when not running there.
    cloud_run_service: str | None = None
    # A client's request line and headers, then its first WebSocket frame (slowloris).
    handshake_timeout_sec: float = 10.0
    first_message_timeout_sec: float = 10.0
    # Caps and budgets (budgets.py), passed whole; the defaults are CapLimits's own.
    caps: CapLimits = DEFAULT_CAPS
    # Workers of the original design (no key). None: allowed only under AUTH_MODE=none,
    # where there is no credential to add a key to; anything else must say so.
    allow_keyless_workers: bool | None = None
    # How long a worker_id stays bound to its key after that key's last connection ended.
    key_binding_ttl_sec: float = DEFAULT_KEY_BINDING_TTL_SEC

    @property
    def keyless_allowed(self) -> bool:
        if self.allow_keyless_workers is None:
            return self.auth_mode is AuthMode.NONE
        return self.allow_keyless_workers

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RendezvousConfig:
        """The configuration from environment variables; an unset (or blank) variable
        takes the field's default above, the only place defaults are written."""
        default = cls()
        return cls(
            host=_ip_literal(env, "HOST", default.host),
            port=env_int(env, "PORT", default.port, minimum=1, maximum=65535),
            log_level=env_log_level(env, default=default.log_level),
            trust_proxy_headers=env_bool(env, "TRUST_PROXY_HEADERS", default.trust_proxy_headers),
            trusted_proxies=_networks(env, "TRUSTED_PROXIES", default.trusted_proxies),
            shutdown_grace_sec=env_float(
                env, "SHUTDOWN_GRACE_SEC", default.shutdown_grace_sec, minimum=1.0, maximum=9.5
            ),
            ws_implementation=env_choice(
                env, "WS_IMPLEMENTATION", default.ws_implementation, WS_IMPLEMENTATIONS
            ),
            ws_ping_interval_sec=env_float(
                env,
                "WS_PING_INTERVAL_SEC",
                default.ws_ping_interval_sec,
                minimum=1.0,
                maximum=3600.0,
            ),
            ws_ping_timeout_sec=env_float(
                env, "WS_PING_TIMEOUT_SEC", default.ws_ping_timeout_sec, minimum=1.0, maximum=3600.0
            ),
            auth_mode=(auth_mode := _auth_mode(env)),
            rendezvous_token=_secret(env, "RENDEZVOUS_TOKEN", required=auth_mode is AuthMode.TOKEN),
            admin_token=_secret(env, "ADMIN_TOKEN", required=False),
            debug_endpoints=env_bool(env, "DEBUG_ENDPOINTS", default.debug_endpoints),
            max_messages_per_sec=env_float(
                env,
                "MAX_MESSAGES_PER_SEC",
                default.max_messages_per_sec,
                minimum=1.0,
                maximum=100_000.0,
            ),
            max_connections_per_address=env_int(
                env,
                "MAX_CONNECTIONS_PER_ADDRESS",
                default.max_connections_per_address,
                minimum=1,
                maximum=1_000_000,
            ),
            relay_datagrams_per_sec=env_float(
                env,
                "RELAY_DATAGRAMS_PER_SEC",
                default.relay_datagrams_per_sec,
                minimum=1.0,
                maximum=1e6,
            ),
            relay_bytes_per_sec=env_float(
                env,
                "RELAY_BYTES_PER_SEC",
                default.relay_bytes_per_sec,
                minimum=float(MAX_PEER_DATAGRAM_BYTES),  # else the largest never passes
                maximum=1e9,
            ),
            registry_url=_registry_url(env),
            registry_ttl_sec=env_float(
                env, "REGISTRY_TTL_SEC", default.registry_ttl_sec, minimum=3.0, maximum=3600.0
            ),
            introduction_policy=_introduction_policy(env, auth_mode),
            allowed_worker_tags=_allowed_worker_tags(env, auth_mode),
            iam_certs_url=_certs_url(env, default.iam_certs_url),
            iam_audiences=_audiences(env),
            cloud_run_service=env_text(env, "K_SERVICE"),
            handshake_timeout_sec=env_float(
                env,
                "HANDSHAKE_TIMEOUT_SEC",
                default.handshake_timeout_sec,
                minimum=0.1,
                maximum=300.0,
            ),
            first_message_timeout_sec=env_float(
                env,
                "FIRST_MESSAGE_TIMEOUT_SEC",
                default.first_message_timeout_sec,
                minimum=0.1,
                maximum=3600.0,
            ),
            caps=_caps(env, default.caps),
            allow_keyless_workers=None
            if env_text(env, "ALLOW_KEYLESS_WORKERS") is None
            else env_bool(env, "ALLOW_KEYLESS_WORKERS", False),
            key_binding_ttl_sec=env_float(
                env,
                "KEY_BINDING_TTL_SEC",
                default.key_binding_ttl_sec,
                minimum=1.0,
                maximum=31_536_000.0,
            ),
        )


def _introduction_policy(env: Mapping[str, str], auth_mode: AuthMode) -> str | None:
    raw = env_text(env, "INTRODUCTION_POLICY")
    if raw is not None:
        try:
            policy_for(auth_mode, raw)
        except PolicyError as error:
            raise ConfigError("INTRODUCTION_POLICY", str(error)) from None
    return raw


def _allowed_worker_tags(env: Mapping[str, str], auth_mode: AuthMode) -> str | None:
    raw = env_text(env, "ALLOWED_WORKER_TAGS")
    if raw is not None:
        try:
            policy_for(auth_mode, None, raw)
        except PolicyError as error:
            raise ConfigError("ALLOWED_WORKER_TAGS", str(error)) from None
    return raw


def _caps(env: Mapping[str, str], default: CapLimits) -> CapLimits:
    """The caps and initiator relay budget variables over CapLimits' defaults."""
    return CapLimits(
        max_sessions_per_worker=env_int(
            env,
            "MAX_SESSIONS_PER_WORKER",
            default.max_sessions_per_worker,
            minimum=1,
            maximum=100_000,
        ),
        introductions_per_target_per_min=env_float(
            env,
            "INTRODUCTIONS_PER_TARGET_PER_MIN",
            default.introductions_per_target_per_min,
            minimum=1.0,
            maximum=1e6,
        ),
        initiator_relay_datagrams_per_sec=env_float(
            env,
            "INITIATOR_RELAY_DATAGRAMS_PER_SEC",
            default.initiator_relay_datagrams_per_sec,
            minimum=1.0,
            maximum=1e6,
        ),
        initiator_relay_bytes_per_sec=env_float(
            env,
            "INITIATOR_RELAY_BYTES_PER_SEC",
            default.initiator_relay_bytes_per_sec,
            minimum=float(MAX_PEER_DATAGRAM_BYTES),  # else the largest never passes
            maximum=1e9,
        ),
    )
