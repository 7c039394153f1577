"""Every log event name the services write, as `jsonPayload.event`: the one list.

The code logs members of these enums (a `StrEnum` member is the string itself in the
JSON line); the saved queries and log-based metrics in infra/terraform/log_queries.json
may select only on names listed here (tests/infra/test_log_catalogue.py checks it).
A name's meaning is the same in every service that logs it (`peer_introduced`: this
service introduced, or was introduced to, a peer for a punch session).

Each value is its member's name in lower case, so `WorkerEvent.STUN_RESULT` is
`"stun_result"` and a search for the logged name finds its definition here.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

__all__ = ["EVENTS_BY_SERVICE", "DevEvent", "RendezvousEvent", "WorkerEvent"]


class RendezvousEvent(enum.StrEnum):
    """What the rendezvous service (services/rendezvous) logs."""

    # Process lifecycle.
    CONFIG_INVALID = "config_invalid"
    SERVER_STARTED = "server_started"
    SERVER_STOPPING = "server_stopping"
    AUTH_DISABLED = "auth_disabled"
    # Worker connections.
    WORKER_CONNECTED = "worker_connected"
    WORKER_REPLACED = "worker_replaced"
    WORKER_DISCONNECTED = "worker_disconnected"
    CONNECTION_REJECTED = "connection_rejected"
    CONNECTION_RATE_LIMITED = "connection_rate_limited"
    # Messages from workers.
    PUBLIC_IP_REGISTERED = "public_ip_registered"
    UDP_ENDPOINT_UPDATED = "udp_endpoint_updated"
    UDP_ENDPOINT_REJECTED = "udp_endpoint_rejected"
    MESSAGE_REJECTED = "message_rejected"
    # Punch sessions.
    PEER_INTRODUCED = "peer_introduced"
    INTRODUCTION_REJECTED = "introduction_rejected"
    PUNCH_RESULT = "punch_result"
    # The shared (Redis) worker registry.
    REGISTRY_UNAVAILABLE = "registry_unavailable"
    REGISTRY_RECOVERED = "registry_recovered"
    REGISTRY_MESSAGE_INVALID = "registry_message_invalid"
    # AUTH_MODE=iam's own token check, and clients too slow to finish connecting.
    ID_TOKEN_CERTS_FAILED = "id_token_certs_failed"
    IAM_OUTSIDE_CLOUD_RUN = "iam_outside_cloud_run"
    SLOW_CLIENT_CLOSED = "slow_client_closed"
    # Budgets (issue 11): a session's relay refused, once per session.
    RELAY_RATE_LIMITED = "relay_rate_limited"
    # Worker keys.
    KEY_BINDING_RELEASED = "key_binding_released"


class WorkerEvent(enum.StrEnum):
    """What the worker service (services/worker) logs."""

    # Process lifecycle.
    CONFIG_INVALID = "config_invalid"
    WORKER_STARTING = "worker_starting"
    UDP_SOCKET_BOUND = "udp_socket_bound"
    HTTP_LISTENING = "http_listening"
    HTTP_ERROR = "http_error"
    SHUTDOWN_REQUESTED = "shutdown_requested"
    WORKER_SHUTDOWN = "worker_shutdown"
    WORKER_FAILED = "worker_failed"
    # The UDP socket, STUN and the public mapping.
    UDP_SOCKET_ERROR = "udp_socket_error"
    UDP_DATAGRAM_DROPPED = "udp_datagram_dropped"
    UDP_PING_ANSWERED = "udp_ping_answered"
    UDP_PONG_RECEIVED = "udp_pong_received"
    STUN_REQUEST = "stun_request"
    STUN_RESULT = "stun_result"
    STUN_FAILED = "stun_failed"
    MAPPING_CLASSIFIED = "mapping_classified"
    PUBLIC_IP_FOUND = "public_ip_found"
    PUBLIC_IP_LOOKUP_FAILED = "public_ip_lookup_failed"
    # The rendezvous WebSocket.
    RENDEZVOUS_CONNECTED = "rendezvous_connected"
    RENDEZVOUS_CONNECT_FAILED = "rendezvous_connect_failed"
    RENDEZVOUS_DISCONNECTED = "rendezvous_disconnected"
    RENDEZVOUS_REFUSED = "rendezvous_refused"
    RENDEZVOUS_UNRESPONSIVE = "rendezvous_unresponsive"
    RENDEZVOUS_ERROR = "rendezvous_error"
    RENDEZVOUS_FRAME_INVALID = "rendezvous_frame_invalid"
    RENDEZVOUS_MESSAGE = "rendezvous_message"
    RECONNECT_SCHEDULED = "reconnect_scheduled"
    WORKER_ID_TAKEN = "worker_id_taken"
    ENDPOINT_REPORTED = "endpoint_reported"
    ENDPOINT_ACK = "endpoint_ack"
    # Punch sessions.
    CONNECT_REQUESTED = "connect_requested"
    PEER_INTRODUCED = "peer_introduced"
    PUNCH_STARTED = "punch_started"
    PUNCH_CONNECTED = "punch_connected"
    PUNCH_FAILED = "punch_failed"
    PUNCH_PATH_CHANGED = "punch_path_changed"
    PUNCH_SESSION_ENDED = "punch_session_ended"
    RELAY_STARTED = "relay_started"
    RELAY_UPGRADED = "relay_upgraded"
    DIRECT_PATH_LOST = "direct_path_lost"  # a direct path stopped answering: back to the relay
    PEER_DATA_RECEIVED = "peer_data_received"
    PEER_DATAGRAM_DROPPED = "peer_datagram_dropped"
    PEER_DATAGRAM_FAILED = "peer_datagram_failed"
    # The probe budget (issue 11): an introduction not started; a session's probes held back.
    PUNCH_REFUSED = "punch_refused"
    PUNCH_PROBES_LIMITED = "punch_probes_limited"
    # The data plane (issue 12): the QUIC link per peer and the streams peers open.
    PEER_LINK_AUTHENTICATED = "peer_link_authenticated"
    PEER_LINK_AUTHENTICATION_FAILED = "peer_link_authentication_failed"
    PEER_LINK_CLOSED = "peer_link_closed"
    STREAM_REFUSED = "stream_refused"
    STREAM_HEADER_INVALID = "stream_header_invalid"
    STREAM_HANDLER_FAILED = "stream_handler_failed"
    # No STUN server answered and the worker has no public endpoint yet (rate-limited).
    NO_ENDPOINT = "no_endpoint"
    # The data plane's SOCKS5 proxy and forwards (dataplane/proxies.py): a listener up; a
    # local client's connection that did not become a stream; UDP forward datagrams dropped.
    PROXY_LISTENING = "proxy_listening"
    PROXY_REFUSED = "proxy_refused"
    UDP_FORWARD_DROPPED = "udp_forward_dropped"


class DevEvent(enum.StrEnum):
    """What the development STUN server (holepunch_devtools.stun_server) logs."""

    STUN_SERVER_LISTENING = "stun_server_listening"
    STUN_SERVER_STOPPED = "stun_server_stopped"
    STUN_SERVER_FAILED = "stun_server_failed"
    STUN_BINDING_ANSWERED = "stun_binding_answered"
    STUN_DATAGRAM_IGNORED = "stun_datagram_ignored"


# The deployed services by the name the log catalogue (log_queries.json) gives them.
EVENTS_BY_SERVICE: Mapping[str, type[enum.StrEnum]] = {
    "rendezvous": RendezvousEvent,
    "worker": WorkerEvent,
}
