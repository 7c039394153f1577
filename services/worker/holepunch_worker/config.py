"""Worker configuration from environment variables: pure parsing, no I/O.

`load_config(environ)` returns a `WorkerConfig` or raises `ConfigError` naming the
variable at fault, so a misconfigured deployment fails at start with one clear line.
"""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from holepunch_env import LOG_LEVELS, ConfigError, env_float, env_int, env_log_level, env_text
from holepunch_protocol import (
    TAGS_QUERY_PARAMETER,
    AuthMode,
    ProtocolError,
    format_tags,
    parse_tags,
    validate_worker_id,
)

from holepunch_worker.identity import WorkerKey
from holepunch_worker.probe_budget import DEFAULT_PROBE_LIMITS, ProbeLimits
from holepunch_worker.punch import IDLE_TIMEOUT_KEEPALIVES, PunchTimings

__all__ = [
    "DEFAULT_STUN_SERVERS",
    "LOG_LEVELS",
    "ConfigError",
    "ForwardSpec",
    "StunServerAddress",
    "WorkerConfig",
    "join_host_port",
    "load_config",
    "parse_forwards",
    "parse_loopback_address",
    "parse_port_set",
    "parse_stun_servers",
    "rendezvous_websocket_url",
]

DEFAULT_STUN_SERVERS = "stun.l.google.com:19302,stun1.l.google.com:19302"
DEFAULT_STUN_PORT = 19302


def join_host_port(host: str, port: int) -> str:
    """`host:port`, or `[host]:port` for an IPv6 literal."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True, slots=True)
class StunServerAddress:
    """A STUN server as configured: a host name or IP literal, and a UDP port."""

    host: str
    port: int

    def __str__(self) -> str:
        return join_host_port(self.host, self.port)


@dataclass(frozen=True, slots=True)
class ForwardSpec:
    """One TCP_FORWARDS or UDP_FORWARDS entry: a listener on this machine's loopback
    whose traffic goes to `peer_port` on the loopback of worker `peer_id`."""

    listen_host: str
    listen_port: int
    peer_id: str
    peer_port: int

    @property
    def listen(self) -> str:
        return join_host_port(self.listen_host, self.listen_port)

    def __str__(self) -> str:
        return f"{self.listen}={self.peer_id}:{self.peer_port}"


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    worker_id: str
    rendezvous_url: str  # ws(s)://host/ws/register/{worker_id}
    http_port: int
    udp_bind_host: str
    udp_port: int
    stun_servers: tuple[StunServerAddress, ...]
    stun_refresh_sec: float
    # aioice's Transaction starts at RTO 0.5 s and doubles: 4 retransmissions give up
    # after 15.5 s, inside one STUN_REFRESH_SEC period.
    stun_retransmissions: int
    ping_interval_sec: float
    ping_timeout_sec: float
    endpoint_ack_timeout_sec: float
    reconnect_initial_delay_sec: float
    reconnect_max_delay_sec: float
    public_ip_echo_url: str | None
    log_level: str
    punch: PunchTimings
    peer_echo_timeout_sec: float
    connect_to: tuple[str, ...]
    auth_mode: AuthMode
    rendezvous_token: str | None
    # AUTH_MODE=iam: the ID token's audience, the rendezvous URL as http(s).
    id_token_audience: str | None
    # WORKER_TAGS: declared at registration, for the rendezvous's introduction policy.
    tags: tuple[str, ...] = ()
    # What the worker probes before a peer answers (probe_budget.py).
    probe_limits: ProbeLimits = DEFAULT_PROBE_LIMITS
    # The worker's identity: from WORKER_KEY_FILE, or generated for this process.
    key: WorkerKey = field(default_factory=WorkerKey.generate)
    # EXPOSE_PORTS: TCP ports on this worker's loopback that authenticated peers may open
    # data-plane streams to (none by default).
    expose_ports: frozenset[int] = frozenset()
    # The data plane's proxy and forwards (dataplane/proxies.py): all off unless set.
    socks_listen: tuple[str, int] | None = None
    tcp_forwards: tuple[ForwardSpec, ...] = ()
    udp_forwards: tuple[ForwardSpec, ...] = ()
    expose_udp_ports: frozenset[int] = frozenset()


def _seconds(environ: Mapping[str, str], name: str, default: float, *, maximum: float) -> float:
    """A duration above zero."""
    return env_float(
        environ, name, default, minimum=0.0, maximum=maximum, above_minimum=True, unit="seconds"
    )


def _port(text: str, variable: str) -> int:
    try:
        port = int(text, 10)
    except ValueError:
        raise ConfigError(variable, f"port must be an integer, got {text!r}") from None
    if not 1 <= port <= 65535:
        raise ConfigError(variable, f"port must be in 1..65535, got {port}")
    return port


def _host(text: str, variable: str) -> str:
    host = text.strip()
    if not host or any(char.isspace() or char in "/[]@" for char in host):
        raise ConfigError(variable, f"invalid host {text!r}")
    return host


def parse_stun_servers(value: str, variable: str = "STUN_SERVERS") -> tuple[StunServerAddress, ...]:
    """Parse `host:port[,host:port...]`; an IPv6 literal is written `[addr]:port`."""
    servers: list[StunServerAddress] = []
    for item in value.split(","):
        entry = item.strip()
        if not entry:
            continue
        host, port_text = _split_host_port(entry, variable)
        server = StunServerAddress(_host(host, variable), _port(port_text, variable))
        if server not in servers:
            servers.append(server)
    if not servers:
        raise ConfigError(variable, "must name at least one host:port")
    return tuple(servers)


def _stun_servers(environ: Mapping[str, str]) -> tuple[StunServerAddress, ...]:
    listed = env_text(environ, "STUN_SERVERS")
    if listed is not None:
        return parse_stun_servers(listed)
    legacy_host = env_text(environ, "STUN_HOST")
    if legacy_host is not None:
        legacy_port = env_text(environ, "STUN_PORT")
        port = DEFAULT_STUN_PORT if legacy_port is None else _port(legacy_port, "STUN_PORT")
        return (StunServerAddress(_host(legacy_host, "STUN_HOST"), port),)
    if env_text(environ, "STUN_PORT") is not None:
        raise ConfigError("STUN_PORT", "is set without STUN_HOST (or use STUN_SERVERS)")
    return parse_stun_servers(DEFAULT_STUN_SERVERS)


def rendezvous_websocket_url(
    base_url: str,
    worker_id: str,
    variable: str = "RENDEZVOUS_SERVICE_URL",
    tags: tuple[str, ...] = (),
) -> str:
    """Map an http(s) or ws(s) base URL to the worker's registration WebSocket URL
    (with `?tags=` when the worker declares tags; none: the original design's URL)."""
    parts = urlsplit(base_url.strip())
    schemes = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}
    scheme = schemes.get(parts.scheme.lower())
    if scheme is None:
        raise ConfigError(variable, f"scheme must be http, https, ws or wss, got {base_url!r}")
    if not parts.hostname:
        raise ConfigError(variable, f"has no host: {base_url!r}")
    if parts.query or parts.fragment:
        raise ConfigError(variable, "must not have a query or fragment")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ConfigError(variable, f"has an invalid port: {base_url!r}") from None
    path = parts.path.rstrip("/") + f"/ws/register/{worker_id}"
    # Tags are a-z 0-9 _ . - only: nothing in them needs escaping in a query.
    query = f"{TAGS_QUERY_PARAMETER}={format_tags(tags)}" if tags else ""
    return urlunsplit((scheme, parts.netloc, path, query, ""))


def _tags(environ: Mapping[str, str]) -> tuple[str, ...]:
    try:
        return parse_tags(env_text(environ, "WORKER_TAGS"))
    except ValueError as error:
        raise ConfigError("WORKER_TAGS", str(error)) from None


def _echo_url(environ: Mapping[str, str]) -> str | None:
    url = env_text(environ, "PUBLIC_IP_ECHO_URL")
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError("PUBLIC_IP_ECHO_URL", f"must be an http(s) URL, got {url!r}")
    return url


def _connect_to(environ: Mapping[str, str], worker_id: str) -> tuple[str, ...]:
    peers: list[str] = []
    for item in (env_text(environ, "CONNECT_TO") or "").split(","):
        peer = item.strip()
        if not peer:
            continue
        try:
            validate_worker_id(peer)
        except ProtocolError as error:
            raise ConfigError("CONNECT_TO", f"{peer[:80]!r}: {error.detail}") from None
        if peer == worker_id:
            raise ConfigError("CONNECT_TO", "names this worker itself")
        if peer not in peers:
            peers.append(peer)
    return tuple(peers)


def load_config(
    environ: Mapping[str, str], new_worker_id: Callable[[], str] = lambda: str(uuid.uuid4())
) -> WorkerConfig:
    """Validate the whole environment; raise ConfigError for the first bad variable."""
    worker_id = env_text(environ, "WORKER_ID") or new_worker_id()
    try:
        validate_worker_id(worker_id)
    except ProtocolError as error:
        raise ConfigError("WORKER_ID", error.detail) from None

    base_url = env_text(environ, "RENDEZVOUS_SERVICE_URL")
    if base_url is None:
        raise ConfigError("RENDEZVOUS_SERVICE_URL", "is required (the rendezvous service URL)")
    tags = _tags(environ)
    rendezvous_url = rendezvous_websocket_url(base_url, worker_id, tags=tags)

    udp_bind_host = env_text(environ, "UDP_BIND_HOST") or "0.0.0.0"
    try:
        bind_address = ipaddress.ip_address(udp_bind_host)
    except ValueError:
        raise ConfigError(
            "UDP_BIND_HOST", f"must be an IPv4 literal, got {udp_bind_host!r}"
        ) from None
    if bind_address.version != 4:
        raise ConfigError("UDP_BIND_HOST", "must be an IPv4 address (Cloud NAT is IPv4 only)")

    log_level = env_log_level(environ)

    initial_delay = _seconds(environ, "RECONNECT_INITIAL_DELAY_SEC", 1.0, maximum=3600)
    max_delay = _seconds(environ, "RECONNECT_MAX_DELAY_SEC", 60.0, maximum=3600)
    if max_delay < initial_delay:
        raise ConfigError(
            "RECONNECT_MAX_DELAY_SEC",
            f"must be at least RECONNECT_INITIAL_DELAY_SEC ({initial_delay:g})",
        )

    return WorkerConfig(
        worker_id=worker_id,
        rendezvous_url=rendezvous_url,
        http_port=env_int(environ, "PORT", 8080, minimum=0, maximum=65535),
        udp_bind_host=udp_bind_host,
        udp_port=env_int(environ, "UDP_PORT", 0, minimum=0, maximum=65535),
        stun_servers=_stun_servers(environ),
        stun_refresh_sec=_seconds(environ, "STUN_REFRESH_SEC", 20.0, maximum=3600),
        stun_retransmissions=env_int(environ, "STUN_RETRANSMISSIONS", 4, minimum=0, maximum=6),
        ping_interval_sec=_seconds(environ, "PING_INTERVAL_SEC", 25.0, maximum=3600),
        ping_timeout_sec=_seconds(environ, "PING_TIMEOUT_SEC", 25.0, maximum=3600),
        endpoint_ack_timeout_sec=_seconds(environ, "ENDPOINT_ACK_TIMEOUT_SEC", 10.0, maximum=600),
        reconnect_initial_delay_sec=initial_delay,
        reconnect_max_delay_sec=max_delay,
        public_ip_echo_url=_echo_url(environ),
        log_level=log_level,
        punch=_punch_timings(environ),
        peer_echo_timeout_sec=_seconds(environ, "PEER_ECHO_TIMEOUT_SEC", 5.0, maximum=60),
        connect_to=_connect_to(environ, worker_id),
        **_auth(environ, base_url),
        tags=tags,
        key=_worker_key(environ),
        probe_limits=_probe_limits(environ),
        expose_ports=parse_port_set(env_text(environ, "EXPOSE_PORTS") or "", "EXPOSE_PORTS"),
        **_proxy_settings(environ, worker_id),
    )


def _probe_limits(environ: Mapping[str, str]) -> ProbeLimits:
    """The PUNCH_* budget variables over ProbeLimits' defaults."""
    default = DEFAULT_PROBE_LIMITS
    return ProbeLimits(
        probes_per_address_per_min=env_int(
            environ,
            "PUNCH_PROBES_PER_ADDRESS_PER_MIN",
            default.probes_per_address_per_min,
            minimum=1,
            maximum=100_000,
        ),
        max_new_addresses_per_min=env_int(
            environ,
            "PUNCH_MAX_NEW_ADDRESSES_PER_MIN",
            default.max_new_addresses_per_min,
            minimum=1,
            maximum=100_000,
        ),
    )


def _worker_key(environ: Mapping[str, str]) -> WorkerKey:
    path = env_text(environ, "WORKER_KEY_FILE")
    return WorkerKey.generate() if path is None else WorkerKey.from_file(path)


def _punch_timings(environ: Mapping[str, str]) -> PunchTimings:
    """The PUNCH_* variables over PunchTimings' defaults."""
    default = PunchTimings()
    keepalive = _seconds(environ, "PUNCH_KEEPALIVE_SEC", default.keepalive, maximum=25)
    idle_timeout = _seconds(
        environ, "PUNCH_IDLE_TIMEOUT_SEC", IDLE_TIMEOUT_KEEPALIVES * keepalive, maximum=3600
    )
    if idle_timeout <= keepalive:
        raise ConfigError(
            "PUNCH_IDLE_TIMEOUT_SEC", f"must be more than PUNCH_KEEPALIVE_SEC ({keepalive:g})"
        )
    return PunchTimings(
        interval=_seconds(environ, "PUNCH_INTERVAL_SEC", default.interval, maximum=5),
        deadline=_seconds(environ, "PUNCH_DEADLINE_SEC", default.deadline, maximum=120),
        keepalive=keepalive,
        upgrade_interval=_seconds(
            environ, "PUNCH_UPGRADE_INTERVAL_SEC", default.upgrade_interval, maximum=3600
        ),
        idle_timeout=idle_timeout,
    )


MIN_TOKEN_LENGTH = 16


def _auth(environ: Mapping[str, str], base_url: str) -> dict[str, Any]:
    raw = (env_text(environ, "AUTH_MODE") or "none").lower()
    try:
        mode = AuthMode(raw)
    except ValueError:
        choices = ", ".join(m.value for m in AuthMode)
        raise ConfigError("AUTH_MODE", f"must be one of {choices}, got {raw!r}") from None
    token = env_text(environ, "RENDEZVOUS_TOKEN")
    if mode is AuthMode.TOKEN and token is None:
        raise ConfigError("RENDEZVOUS_TOKEN", "is required with AUTH_MODE=token")
    if token is not None and len(token) < MIN_TOKEN_LENGTH:
        raise ConfigError("RENDEZVOUS_TOKEN", f"must be at least {MIN_TOKEN_LENGTH} characters")
    audience = None
    if mode is AuthMode.IAM:
        parts = urlsplit(base_url)
        scheme = {"ws": "http", "wss": "https"}.get(parts.scheme.lower(), parts.scheme.lower())
        audience = env_text(environ, "ID_TOKEN_AUDIENCE") or urlunsplit(
            (scheme, parts.netloc, "", "", "")
        )
    return {
        "auth_mode": mode,
        "rendezvous_token": token if mode is AuthMode.TOKEN else None,
        "id_token_audience": audience,
    }


def _split_host_port(text: str, variable: str) -> tuple[str, str]:
    """`host:port` or `[ipv6]:port` into its host and port texts."""
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise ConfigError(variable, f"expected [ipv6]:port, got {text!r}")
        return host, rest[1:]
    host, colon, port = text.rpartition(":")
    if not colon:
        raise ConfigError(variable, f"expected host:port, got {text!r}")
    return host, port


def parse_loopback_address(text: str, variable: str) -> tuple[str, int]:
    """A listener's `127.x.y.z:port` or `[::1]:port`: only this machine may reach it."""
    host_text, port_text = _split_host_port(text.strip(), variable)
    try:
        host = ipaddress.ip_address(host_text)
    except ValueError:
        host = None
    if host is None or not host.is_loopback:
        raise ConfigError(
            variable,
            f"must listen on a loopback address such as 127.0.0.1:1080 or [::1]:1080 "
            f"(only this machine's programs may use it), got {text.strip()[:80]!r}",
        )
    return str(host), _port(port_text, variable)


def parse_forwards(text: str, variable: str, worker_id: str) -> tuple[ForwardSpec, ...]:
    """`127.0.0.1:9000=worker-b:8000,...`: each a loopback listener and a peer's port."""
    forwards: list[ForwardSpec] = []
    for item in text.split(","):
        entry = item.strip()
        if not entry:
            continue
        listen_text, equals, target = entry.partition("=")
        if not equals:
            raise ConfigError(
                variable, f"expected listen=peer:port (127.0.0.1:9000=worker-b:8000), got {entry!r}"
            )
        listen_host, listen_port = parse_loopback_address(listen_text, variable)
        peer_id, colon, peer_port = target.strip().rpartition(":")
        if not colon:
            raise ConfigError(variable, f"expected peer:port after '=', got {target.strip()!r}")
        try:
            validate_worker_id(peer_id)
        except ProtocolError as error:
            raise ConfigError(variable, f"{peer_id[:80]!r}: {error.detail}") from None
        if peer_id == worker_id:
            raise ConfigError(variable, f"{entry!r} names this worker itself")
        forward = ForwardSpec(listen_host, listen_port, peer_id, _port(peer_port, variable))
        if any(other.listen == forward.listen for other in forwards):
            raise ConfigError(variable, f"listens on {forward.listen} twice")
        forwards.append(forward)
    return tuple(forwards)


def parse_port_set(text: str, variable: str) -> frozenset[int]:
    """`53,5353`: comma-separated ports in 1..65535, each once; empty for none."""
    ports: set[int] = set()
    for item in text.split(","):
        if not item.strip():
            continue
        port = _port(item.strip(), variable)
        if port in ports:
            raise ConfigError(variable, f"lists port {port} twice")
        ports.add(port)
    return frozenset(ports)


def _proxy_settings(environ: Mapping[str, str], worker_id: str) -> dict[str, Any]:
    """SOCKS_LISTEN, TCP_FORWARDS, UDP_FORWARDS and EXPOSE_UDP_PORTS; no two TCP
    listeners on one address."""
    socks_text = env_text(environ, "SOCKS_LISTEN")
    socks = None if socks_text is None else parse_loopback_address(socks_text, "SOCKS_LISTEN")
    tcp = parse_forwards(env_text(environ, "TCP_FORWARDS") or "", "TCP_FORWARDS", worker_id)
    if socks is not None:
        socks_address = join_host_port(*socks)
        if any(forward.listen == socks_address for forward in tcp):
            raise ConfigError("TCP_FORWARDS", f"listens on {socks_address}, SOCKS_LISTEN's address")
    return {
        "socks_listen": socks,
        "tcp_forwards": tcp,
        "udp_forwards": parse_forwards(
            env_text(environ, "UDP_FORWARDS") or "", "UDP_FORWARDS", worker_id
        ),
        "expose_udp_ports": parse_port_set(
            env_text(environ, "EXPOSE_UDP_PORTS") or "", "EXPOSE_UDP_PORTS"
        ),
    }
