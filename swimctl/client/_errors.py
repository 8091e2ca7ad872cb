"""What the client raises."""

from __future__ import annotations


class SwimError(Exception):
    """Base of everything this module raises."""


class AuthError(SwimError):
    """The hub refused the API key (close 4001): retrying cannot help, so the client stops."""


class TLSError(SwimError):
    """The hub's certificate could not be verified: a configuration problem, never retried."""


class HandshakeRejected(SwimError):
    """The HTTP upgrade was refused with a status that retrying will not change (e.g. 404)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Disconnected(SwimError):
    """The connection ended and `reconnect=False` was asked for."""

    def __init__(self, message: str, close_code: int | None = None) -> None:
        super().__init__(message)
        self.close_code = close_code


class RequestError(SwimError):
    """The hub answered a request (subscribe, publish, ...) with an error reply."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class _ConnectionLost(Exception):
    """Internal: a request's connection went away before its reply arrived."""


class _Silent(Exception):
    """Internal: no message within the silence timeout; the connection is presumed dead."""
