"""Protocol errors.

ProtocolError (ValueError)
    raised by the decoders and validators; carries an ErrorCode, a human detail,
    and the message type when the frame got far enough to name one.
"""

from __future__ import annotations

import enum

__all__ = ["ErrorCode", "ProtocolError"]


class ErrorCode(enum.StrEnum):
    """Machine-readable reason sent in `{"type": "error", "code": ...}`."""

    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_TYPE = "missing_type"
    UNKNOWN_TYPE = "unknown_type"
    MISSING_FIELD = "missing_field"
    INVALID_FIELD = "invalid_field"
    FRAME_TOO_LARGE = "frame_too_large"
    BINARY_FRAME = "binary_frame"
    INVALID_WORKER_ID = "invalid_worker_id"
    CONNECTION_REPLACED = "connection_replaced"
    PEER_NOT_FOUND = "peer_not_found"
    PEER_HAS_NO_ENDPOINT = "peer_has_no_endpoint"
    NO_ENDPOINT = "no_endpoint"  # the requester has not reported its own endpoint yet
    SELF_INTRODUCTION = "self_introduction"
    UNKNOWN_SESSION = "unknown_session"
    RATE_LIMITED = "rate_limited"
    UNAUTHENTICATED = "unauthenticated"
    WORKER_ID_TAKEN = "worker_id_taken"
    TOO_MANY_CONNECTIONS = "too_many_connections"
    NOT_ALLOWED = "not_allowed"  # the introduction policy does not let the sender reach the peer
    TAG_NOT_ALLOWED = "tag_not_allowed"  # a declared tag the operator does not allow
    TOO_MANY_SESSIONS = "too_many_sessions"  # either side is in too many punch sessions
    INTRODUCTION_RATE_LIMITED = "introduction_rate_limited"  # the target's, per minute
    RELAY_RATE_LIMITED = "relay_rate_limited"  # the session's or its initiator's relay budget
    KEY_PROOF_INVALID = "key_proof_invalid"  # no, or a wrong, answer to auth_challenge
    WORKER_KEY_MISMATCH = "worker_key_mismatch"  # the worker_id is bound to another key
    KEYLESS_NOT_ALLOWED = "keyless_not_allowed"  # ALLOW_KEYLESS_WORKERS is off


class ProtocolError(ValueError):
    def __init__(self, code: ErrorCode, detail: str, message_type: str | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.message_type = message_type

    def __repr__(self) -> str:
        return f"ProtocolError({self.code.value!r}, {self.detail!r}, {self.message_type!r})"
