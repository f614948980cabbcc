"""One measuring page in one headless browser: start it, send it commands, turn what goes wrong into classified
failures (a page that does not answer in time, a browser that died, an error the page reported)."""

from __future__ import annotations

import json
import queue
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from hwbench_pipeline.bench.backends.browser.launch import BrowserProcess
from hwbench_pipeline.bench.backends.browser.server import PageServer, Reply
from hwbench_pipeline.bench.failures import BenchmarkFailure

#: how often a wait for the page checks that the browser still runs
CHECK_EVERY_S = 0.5
#: what the page's errors say when WASM memory ran out or an operator has no kernel in the execution provider
OUT_OF_MEMORY_MARKERS = ("out of memory", "array buffer allocation failed", "aborted(oom)", "cannot enlarge memory",
                         "bad_alloc", "memory access out of bounds", "failed to allocate")
UNSUPPORTED_OPERATOR_MARKERS = ("could not find an implementation", "not implemented", "unsupported op",
                                "no kernel", "is not supported", "unsupported data type",
                                "is not a registered function/op")


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
        self.server = PageServer(routes)
        self._next_id = 0
        url = f"{self.server.origin}/page/measure.html?job={quote(json.dumps(job))}"
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
            code = self.process.exited()
            if code is not None:
                self._fail("worker_crashed", f"{self.browser} exited with code {code} while the page ran {op!r}")
            left = deadline - time.monotonic()
            if left <= 0:
                self._fail("timeout", f"the page in {self.browser} did not answer {op!r} within {timeout_s:.0f} s")
            try:
                got_id, reply = self.server.reply(timeout=min(CHECK_EVERY_S, left))
            except queue.Empty:
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
