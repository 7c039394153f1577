"""How a worker proves who it is to the rendezvous (both sides read AUTH_MODE)."""

from __future__ import annotations

import enum

__all__ = ["AuthMode"]


class AuthMode(enum.StrEnum):
    IAM = "iam"  # a Google-signed ID token, verified by Cloud Run's front end
    TOKEN = "token"  # a shared secret: Authorization: Bearer <RENDEZVOUS_TOKEN>
    NONE = "none"  # development only
