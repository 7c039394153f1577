"""The one error the NAT lab raises for a failed command or a bad request."""

from __future__ import annotations

__all__ = ["LabError"]


class LabError(RuntimeError):
    """A lab command failed; the message names the command and what it printed."""
