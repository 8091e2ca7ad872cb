"""Opening one WebSocket to a hub: TCP, TLS and the upgrade, each step's failure told apart,
and one readable line for whatever went wrong."""

from __future__ import annotations

import contextlib
import math
import os
import ssl
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    HandshakeError,
    WebSocketConnection,
    wrap_client_stream,
)

from swimctl.client._errors import AuthError, HandshakeRejected, TLSError, _Silent

CLOSE_WAIT = 2.0  # seconds for the hub to answer our close frame
CANCELLED_CLOSE_WAIT = 0.05  # the same while cancelled: the frame goes out, nobody waits


def _unwrap(group: BaseExceptionGroup) -> BaseException:
    """The one interesting exception inside a (nested) group, else the group itself."""
    leaves = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for sub in exc.exceptions:
                walk(sub)
        else:
            leaves.append(exc)

    walk(group)
    for kind in (AuthError, TLSError, HandshakeRejected, _Silent):
        for leaf in leaves:
            if isinstance(leaf, kind):
                return leaf
    non_cancel = [e for e in leaves if not isinstance(e, trio.Cancelled)]
    if len(non_cancel) == 1:
        return non_cancel[0]
    return group


# What OpenSSL says when the other end does not speak TLS at all (a plain ws:// hub answers
# our ClientHello with HTTP): a mismatch of configuration that no retry can heal.
_NOT_TLS = ("WRONG_VERSION_NUMBER", "HTTP_REQUEST", "PACKET_LENGTH_TOO_LONG",
            "RECORD_LAYER_FAILURE", "UNKNOWN_PROTOCOL")


def _tls_failure(cause: BaseException | None, host: str, port: int, url: str
                 ) -> TLSError | None:
    """A TLS handshake failure that retrying cannot fix, as one line; None for the ones that
    may heal (the peer went away mid-handshake)."""
    if isinstance(cause, ssl.SSLCertVerificationError):
        return TLSError(f"certificate verification failed for {host}: {cause.verify_message}")
    if not isinstance(cause, ssl.SSLError) or isinstance(
            cause, ssl.SSLEOFError | ssl.SSLZeroReturnError | ssl.SSLSyscallError):
        return None
    reason = cause.reason or type(cause).__name__
    if reason in _NOT_TLS:
        plain = "ws://" + url.split("://", 1)[-1]
        return TLSError(f"TLS handshake with {host}:{port} failed ({reason}): is the hub plain "
                        f"ws://? try {plain}")
    return TLSError(f"TLS handshake with {host}:{port} failed: {reason}")


def _rejected(exc: ConnectionRejected) -> BaseException:
    """A refusal retrying cannot change becomes fatal; others (502, 503) are retried."""
    if exc.status_code in (401, 403, 404):
        return HandshakeRejected(
            exc.status_code,
            f"the hub refused the WebSocket upgrade with HTTP {exc.status_code}"
            + (" (wrong URL path?)" if exc.status_code == 404 else ""),
        )
    return exc


def _describe(exc: BaseException) -> tuple[int | None, str]:
    if isinstance(exc, ConnectionClosed):
        code = int(exc.reason.code) if exc.reason is not None else None
        return code, f"connection closed ({code})"
    if isinstance(exc, ConnectionRejected):
        return None, f"the hub refused the upgrade with HTTP {exc.status_code}"
    if isinstance(exc, HandshakeError):
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, BaseExceptionGroup):
            cause = _unwrap(cause)
        if isinstance(cause, OSError):
            return _describe(cause)
        if type(exc).__name__ == "ConnectionTimeout":
            return None, "cannot connect: timed out"
        return None, f"handshake failed: {cause or type(exc).__name__}"
    if isinstance(exc, OSError):
        return None, f"cannot connect: {_os_error_text(exc)}"
    if isinstance(exc, trio.BrokenResourceError | trio.ClosedResourceError):
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, OSError):
            return None, f"connection lost: {_os_error_text(cause)}"
        return None, "connection lost"
    return None, str(exc) or type(exc).__name__


def _os_error_text(exc: OSError) -> str:
    """The reason a person can act on. trio's `open_tcp_stream` reports "all attempts to
    connect to HOST:PORT failed" and keeps each attempt's error inside; when they agree (the
    usual case: every address refused), that one reason is the message."""
    if exc.strerror:
        return exc.strerror
    inner = exc.__cause__
    if isinstance(inner, BaseExceptionGroup):
        reasons = {os.strerror(e.errno) if e.errno else str(e)
                   for e in _leaves(inner) if isinstance(e, OSError)}
        if len(reasons) == 1:
            return reasons.pop()
    return str(exc) or type(exc).__name__


def _leaves(group: BaseExceptionGroup) -> list[BaseException]:
    out: list[BaseException] = []
    for sub in group.exceptions:
        out.extend(_leaves(sub) if isinstance(sub, BaseExceptionGroup) else [sub])
    return out


@contextlib.asynccontextmanager
async def _unwrapped_group() -> AsyncIterator[None]:
    """Let a caller's own exception leave our internal nursery as itself, not inside an
    ExceptionGroup, so `except HubError:` around `async with open_websocket(...)` works."""
    try:
        yield
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


@contextlib.asynccontextmanager
async def open_websocket(
    url: str, api_key: str, ssl_context: ssl.SSLContext | None, connect_timeout: float
) -> AsyncIterator[WebSocketConnection]:
    """TCP, TLS and the upgrade, each step's failure told apart (trio-websocket's own
    `open_websocket_url` turns a certificate failure into a silent handshake timeout)."""
    parts = urlsplit(url)
    secure = parts.scheme == "wss"
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise HandshakeRejected(0, f"not a ws:// or wss:// URL: {url}")
    host = parts.hostname
    port = parts.port or (443 if secure else 80)
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if port in (80, 443) else f"{shown}:{port}"
    headers = [(b"X-SWIM-API-Key", api_key.encode("latin-1"))]
    stream: trio.SocketStream | trio.SSLStream[trio.SocketStream]
    with trio.move_on_after(connect_timeout) as timeout:
        tcp = await trio.open_tcp_stream(host, port)
        stream = tcp
        if secure:
            ctx = ssl_context or ssl.create_default_context()
            stream = trio.SSLStream(tcp, ctx, server_hostname=host, https_compatible=True)
            try:
                await stream.do_handshake()
            except trio.BrokenResourceError as exc:
                await trio.aclose_forcefully(tcp)
                fatal = _tls_failure(exc.__cause__, host, port, url)
                if fatal is not None:
                    raise fatal from None
                raise
    if timeout.cancelled_caught:
        raise OSError(f"timed out after {connect_timeout:g}s")
    try:
        async with _unwrapped_group(), trio.open_nursery() as nursery:
            with trio.move_on_after(connect_timeout) as timeout:
                ws = await wrap_client_stream(
                    nursery, stream, host_header, resource, extra_headers=headers,
                    message_queue_size=64,
                )
            if timeout.cancelled_caught:
                hint = " (is the hub wss://?)" if not secure else ""
                raise OSError(f"timed out waiting for the WebSocket upgrade{hint}")
            try:
                yield ws
            finally:
                # A close frame, then the hub's answer (at once, normally). When the caller is
                # being cancelled (Ctrl-C), the reader task that would take that answer is
                # cancelled too: waiting for it only holds up the exit, so send and go.
                cancelled = trio.current_effective_deadline() == -math.inf
                with trio.move_on_after(CANCELLED_CLOSE_WAIT if cancelled else CLOSE_WAIT
                                        ) as cleanup:
                    cleanup.shield = True
                    await ws.aclose()
                nursery.cancel_scope.cancel()
    finally:
        await trio.aclose_forcefully(stream)


def make_ssl_context(ca_file: str | None = None) -> ssl.SSLContext:
    """Verifying context (system CAs), plus `ca_file` for a private CA."""
    ctx = ssl.create_default_context()
    if ca_file:
        ctx.load_verify_locations(ca_file)
    return ctx
