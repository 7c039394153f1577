"""The operator's browser login: HTTP Basic with ADMIN_TOKEN as the password. Pure.

A browser cannot put a bearer token on a page load or on an EventSource, but it asks for
Basic credentials itself (the 401's `WWW-Authenticate: Basic`) and sends them with every
request to the origin afterwards. It sends them even on a request another site makes it
send, so a request that changes something (POST, DELETE) must also carry `X-Holepunch-UI`:
a header no other site can make the browser add without a CORS preflight, which this
service never grants. Bearer tokens are never sent by the browser on its own, so they
need no such header.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping

__all__ = ["BROWSER_REALM", "UI_HEADER", "browser_login"]

UI_HEADER = "x-holepunch-ui"
BROWSER_REALM = 'Basic realm="holepunch fleet", charset="UTF-8"'
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def basic_password(headers: Mapping[str, str]) -> str | None:
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    _user, colon, password = decoded.partition(":")
    return password if colon else None


def browser_login(headers: Mapping[str, str], admin_token: str | None, method: str) -> bool:
    """Basic credentials naming ADMIN_TOKEN (any user name), on a safe request or on one
    carrying `X-Holepunch-UI`."""
    password = basic_password(headers)
    if admin_token is None or password is None:
        return False
    if not hmac.compare_digest(password.encode(), admin_token.encode()):
        return False
    return method.upper() in SAFE_METHODS or UI_HEADER in headers
