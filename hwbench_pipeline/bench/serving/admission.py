"""Which HTTP requests reach a server at all (the REST API, the streaming server), decided before any route runs:

    HostCheck  the Host header must name this server: a page on another site that re-points its own name at
               127.0.0.1 (DNS rebinding) sends its own name as Host, and is answered 400
    BodyCap    a request body over the cap is answered 413: at once when Content-Length says so, and as soon
               as the bytes received pass the cap when it does not (chunked) or lies

Both answer ``{"detail": "<one line>"}`` like every other error of the API.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: accepted as Host on every server, with any port
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
# name or IPv4, or an IPv6 literal in brackets; then an optional port
_HOST = re.compile(r"(?P<name>\[[0-9a-f:.]+\]|[a-z0-9_.~-]+)(?::[0-9]{1,5})?", re.IGNORECASE)


def canonical_host(value: str) -> str | None:
    """The host in a Host header value (or a name given to ``--allowed-host``) as the server compares it:
    lower case, without the port, an IPv6 address in brackets in its shortest form. None if it is not a host."""
    value = value.strip()
    try:  # a bare IPv6 address, as given to --host ::1
        return f"[{ipaddress.IPv6Address(value).compressed}]"
    except ValueError:
        pass
    match = _HOST.fullmatch(value)
    if match is None:
        return None
    name = match["name"].lower()
    if name.startswith("["):
        try:
            return f"[{ipaddress.IPv6Address(name[1:-1]).compressed}]"
        except ValueError:
            return None
    return name


def accepted_hosts(allowed: Iterable[str] = ()) -> tuple[str, ...]:
    """The loopback names and ``allowed``, each as :func:`canonical_host` writes it; ValueError for one that
    is not a host name or address."""
    names: list[str] = []
    for name in (*LOOPBACK_HOSTS, *allowed):
        host = canonical_host(name) if isinstance(name, str) else None
        if host is None:
            raise ValueError(f"not a host name or address: {name!r}")
        if host not in names:
            names.append(host)
    return tuple(names)


class HostCheck:
    """Answers 400 to a request whose Host header names none of ``allowed`` (plus the loopback names)."""

    def __init__(self, app: ASGIApp, allowed: Iterable[str] = ()) -> None:
        self.app = app
        self.allowed = accepted_hosts(allowed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = Headers(scope=scope).get("host")
        if header is None or canonical_host(header) not in self.allowed:
            shown = "no Host header" if header is None else f"Host {header[:100]!r}"
            detail = (f"{shown} is not served here (a guard against DNS rebinding); accepted: "
                      f"{', '.join(self.allowed)}, with any port; hwbench serve --allowed-host NAME adds one")
            await JSONResponse({"detail": detail}, status_code=400)(scope, receive, send)
            return
        await self.app(scope, receive, send)


class BodyTooLarge(HTTPException):
    """A request body past the cap. An HTTPException, so that FastAPI passes it on from its body reading (which
    turns other errors into 400) to its handler, which answers 413 with the detail."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"request body over the {max_bytes}-byte limit")


class BodyCap:
    """Answers 413 to a request whose body is larger than ``max_bytes``, before the body is parsed."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"the request body limit must be >= 0 bytes, got {max_bytes}")
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge:
            # Reached here only when no handler inside answered it (FastAPI's does).
            if started:
                raise
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = BodyTooLarge(self.max_bytes)
        await JSONResponse({"detail": error.detail}, status_code=error.status_code)(scope, receive, send)
