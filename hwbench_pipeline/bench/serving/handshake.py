"""Which WebSocket handshakes to ``/generate`` are accepted (Host, Origin, bearer token), and how a refused one
is answered."""

import hmac
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

from fastapi import WebSocket
from fastapi.responses import JSONResponse

from hwbench_pipeline.bench.serving.admission import canonical_host
from hwbench_pipeline.bench.serving.protocol import CLOSE_POLICY


def bearer_matches(header: str | None, token: str | None) -> bool:
    """Whether an Authorization header carries ``token`` (always true when the server has none)."""
    if token is None:
        return True
    scheme, _, given = (header or "").partition(" ")
    # compare_digest takes the same time wherever the first wrong byte is
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def origin_host(origin: str) -> str | None:
    """The host of an Origin header (``http://127.0.0.1:8766`` -> ``127.0.0.1``); None for ``null`` or garbage."""
    try:
        netloc = urlsplit(origin.strip()).netloc
    except ValueError:
        return None
    return canonical_host(netloc) if netloc else None


def handshake_refusal(headers: Mapping[str, str], hosts: Sequence[str], token: str | None) -> tuple[int, str] | None:
    """The HTTP status and reason to refuse a handshake with these headers; None to accept it."""
    host = headers.get("host")
    if host is None or canonical_host(host) not in hosts:
        return 403, f"Host {str(host)[:100]!r} is not served here; accepted: {', '.join(hosts)}"
    # Browsers let any page open a WebSocket to 127.0.0.1 and say where the page came from only here.
    origin = headers.get("origin")
    if origin is not None and origin_host(origin) not in hosts:
        return 403, f"Origin {origin[:100]!r} is not served here; accepted: {', '.join(hosts)}"
    if not bearer_matches(headers.get("authorization"), token):
        return 401, "missing or wrong bearer token"
    return None


async def refuse_handshake(websocket: WebSocket, status: int, detail: str) -> None:
    """Answer a refused handshake with ``status`` and ``{"detail": ...}`` before the socket opens."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        await websocket.send_denial_response(JSONResponse({"detail": detail}, status, headers=headers))
    else:  # a server without the denial extension: a close before accept is answered 403
        await websocket.close(CLOSE_POLICY, detail[:120])
