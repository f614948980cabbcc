"""The local web server of one measurement: serves the measuring page, onnxruntime-web, the model and its inputs
on 127.0.0.1 with the headers that make the page cross-origin isolated, and carries the commands between Python
and the page (/rpc). It counts the bytes each kind of file cost the page."""

from __future__ import annotations

import json
import mimetypes
import queue
import shutil
import sys
import threading
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

PAGE_DIR = Path(__file__).with_name("page")
#: how long the page's request for the next command waits before it is answered "nothing yet" (it asks again)
POLL_S = 20.0
#: cross-origin isolation: without it SharedArrayBuffer is undefined and onnxruntime-web runs one WASM thread
ISOLATION_HEADERS = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp",
                     "Cross-Origin-Resource-Policy": "same-origin"}
mimetypes.add_type("text/javascript", ".mjs")
mimetypes.add_type("application/wasm", ".wasm")


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)
        # else: a browser ended mid-request (at close, or by a crash that the session reports itself)


@dataclass
class Reply:
    """The page's answer to one command: JSON, or bytes with their metadata (an output tensor)."""

    body: Any
    data: bytes | None = None
    meta: dict | None = None


class PageServer:
    """Serves ``routes`` (URL prefix -> directory) and the page's command channel, which answers requests that
    carry ``token`` only, until :meth:`close`."""

    def __init__(self, routes: dict[str, Path], token: str) -> None:
        self.routes = {"/page/": PAGE_DIR, **routes}
        self.token = token
        self.bytes_served: Counter[str] = Counter()  # by route prefix
        self.events: list[dict] = []  # errors the page reported outside a command
        self._commands: queue.Queue[dict] = queue.Queue()
        self._replies: queue.Queue[tuple[str, Reply]] = queue.Queue()
        self._lock = threading.Lock()
        self._httpd = _QuietServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="page-server", daemon=True)
        self._thread.start()

    @property
    def origin(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def send(self, command: dict) -> None:
        self._commands.put(command)

    def reply(self, timeout: float) -> tuple[str, Reply]:
        """(command id, reply), or raises queue.Empty after ``timeout`` seconds."""
        return self._replies.get(timeout=timeout)

    def served(self, prefix: str) -> int:
        with self._lock:
            return self.bytes_served[prefix]

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _count(self, prefix: str, size: int) -> None:
        with self._lock:
            self.bytes_served[prefix] += size

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
                pass  # the page's requests are not the user's business

            def _headers(self, status: int, content_type: str, length: int, extra: dict | None = None) -> None:
                self.send_response(status)
                for name, value in {**ISOLATION_HEADERS, **(extra or {})}.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(length))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()

            def _authorized(self, url: Any) -> bool:
                if parse_qs(url.query).get("token", [""])[0] == server.token:
                    return True
                self._headers(403, "text/plain", 0)
                return False

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                url = urlparse(self.path)
                path = unquote(url.path)
                if path == "/rpc/next":
                    if self._authorized(url):
                        self._next_command()
                    return
                for prefix, directory in server.routes.items():
                    if path.startswith(prefix):
                        self._file(prefix, directory, path[len(prefix):])
                        return
                self._headers(404, "text/plain", 0)

            def _next_command(self) -> None:
                try:
                    command = server._commands.get(timeout=POLL_S)
                except queue.Empty:
                    self._headers(204, "text/plain", 0)
                    return
                body = json.dumps(command).encode()
                self._headers(200, "application/json", len(body))
                self.wfile.write(body)

            def _file(self, prefix: str, directory: Path, name: str) -> None:
                target = (directory / name).resolve()
                if not target.is_file() or directory.resolve() not in target.parents:
                    self._headers(404, "text/plain", 0)
                    return
                size = target.stat().st_size
                content_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
                self._headers(200, content_type, size)
                with target.open("rb") as fh:  # streamed: a model's weights may be gigabytes
                    shutil.copyfileobj(fh, self.wfile, 1 << 20)
                server._count(prefix, size)

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                url = urlparse(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(length)
                if url.path != "/rpc/reply":
                    self._headers(404, "text/plain", 0)
                    return
                if not self._authorized(url):
                    return
                self._headers(204, "text/plain", 0)
                command_id = parse_qs(url.query).get("id", [""])[0]
                try:
                    if self.headers.get("Content-Type", "").startswith("application/json"):
                        reply = Reply(json.loads(data))
                    else:
                        reply = Reply({"ok": True}, data, json.loads(self.headers.get("x-meta") or "{}"))
                except ValueError as exc:  # the command fails saying so, instead of waiting out its timeout
                    reply = Reply({"ok": False, "error": {"name": "ProtocolError",
                                                          "message": f"the page's reply was not readable: {exc}"}})
                if command_id == "event":  # an error outside any command: kept for the failure's message
                    server.events.append(reply.body)
                else:
                    server._replies.put((command_id, reply))

        return Handler
