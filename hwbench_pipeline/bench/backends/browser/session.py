"""One measuring page in one headless browser: start it, send it commands, turn what goes wrong into classified
failures (a page that does not answer in time, a browser that died, an error the page reported)."""

from __future__ import annotations

import json
import queue
import secrets
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from hwbench_pipeline.bench.backends.browser.launch import BrowserProcess
from hwbench_pipeline.bench.backends.browser.server import PageServer, Reply
from hwbench_pipeline.bench.backends.onnxruntime.config import (
    UNSUPPORTED_OPERATOR_MARKERS as ORT_UNSUPPORTED_OPERATOR_MARKERS,
)
from hwbench_pipeline.bench.failures import BenchmarkFailure

#: how often a wait for the page checks that the browser still runs
CHECK_EVERY_S = 0.5
#: what the page's errors say when WASM memory ran out ("std::bad_alloc": an allocation past the 4 GiB WASM
#: addresses) or an operator has no kernel (onnxruntime's own wording, as on the ONNX Runtime target)
OUT_OF_MEMORY_MARKERS = ("out of memory", "array buffer allocation failed", "aborted(oom)", "cannot enlarge memory",
                         "bad_alloc", "failed to allocate", "maximum memory size exceeded",
                         "could not allocate memory")
UNSUPPORTED_OPERATOR_MARKERS = (*ORT_UNSUPPORTED_OPERATOR_MARKERS, "is not a registered function/op")


def classify_page_error(message: str) -> str:
    text = message.lower()
    if any(marker in text for marker in OUT_OF_MEMORY_MARKERS):
        return "out_of_memory"
    if any(marker in text for marker in UNSUPPORTED_OPERATOR_MARKERS):
        return "unsupported_operator"
    return "runtime_error"


class PageSession:
    """The measuring page (page/measure.mjs) open in ``browser`` with ``job``; files under ``routes``."""

    def __init__(self, browser: str, executable: Path, flags: tuple[str, ...], routes: dict[str, Path],
                 job: dict[str, Any]) -> None:
        self.browser = browser
        self.executable = executable
        self._closed = False
        # the channel answers only the page given this token: another local process cannot read or answer it
        token = secrets.token_hex(16)
        self.server = PageServer(routes, token)
        self._next_id = 0
        url = f"{self.server.origin}/page/measure.html?job={quote(json.dumps({**job, 'token': token}))}"
        try:
            self.process = BrowserProcess.start(browser, executable, flags, url)
        except BaseException:
            self.server.close()
            raise

    def call(self, op: str, timeout_s: float, **args: Any) -> Reply:
        """Send one command and wait for its reply. Raises a classified :class:`BenchmarkFailure` (and ends the
        browser) when the page reports an error, does not answer within ``timeout_s`` or the browser exits."""
        self._next_id += 1
        command_id = str(self._next_id)
        self.server.send({"id": command_id, "op": op, **args})
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                got_id, reply = self.server.reply(timeout=max(min(CHECK_EVERY_S, deadline - time.monotonic()), 0))
            except queue.Empty:
                # a reply that came before the browser ended is taken above; now its end is the answer
                code = self.process.exited()
                if code is not None:
                    self._fail("worker_crashed", f"{self.browser} exited with code {code} while the page ran {op!r}")
                if time.monotonic() >= deadline:
                    self._fail("timeout", f"the page in {self.browser} did not answer {op!r} within "
                                          f"{timeout_s:.0f} s")
                continue
            if got_id != command_id:
                continue  # the late answer to a command given up on
            if not reply.body.get("ok", False):
                error = reply.body.get("error") or {}
                message = f"{error.get('name', 'Error')}: {error.get('message', '')}".strip()
                self._fail(classify_page_error(message), f"{self.browser} page, {op!r}: {message}")
            return reply

    def value(self, op: str, timeout_s: float, **args: Any) -> Any:
        return self.call(op, timeout_s, **args).body.get("value")

    def _fail(self, failure_class: str, message: str) -> None:
        details = [message]
        if self.server.events:
            first = self.server.events[0].get("error") or {}
            details.append(f"page error: {first.get('name', '')}: {first.get('message', '')}")
        tail = self.process.log_tail()
        if tail:
            details.append(f"browser log: {tail}")
        self.close()
        raise BenchmarkFailure(failure_class, "; ".join(details)[:2000])

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.process.close()
            self.server.close()
