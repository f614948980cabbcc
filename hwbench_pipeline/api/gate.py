"""How many queries the API runs at once: each holds one of a fixed number of slots while DuckDB works and
its answer is built; a request that finds every slot taken waits a bounded time, then is answered 503."""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator

from fastapi import HTTPException


class QueryGate:
    """At most ``max_running`` queries at once; a request that finds them all running waits up to
    ``max_wait_seconds`` for one to finish, then gets 503 with ``Retry-After``."""

    def __init__(self, max_running: int, max_wait_seconds: float) -> None:
        if max_running < 1:
            raise ValueError(f"the number of queries at once must be a positive integer, got {max_running}")
        if max_wait_seconds < 0:
            raise ValueError(f"the wait for a query slot must be >= 0 seconds, got {max_wait_seconds}")
        self.max_running = max_running
        self.max_wait_seconds = max_wait_seconds
        # A threading semaphore, not an asyncio one: the query endpoints run in worker threads, and a test
        # client may run each request on its own event loop.
        self._slots = threading.BoundedSemaphore(max_running)

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """Hold a slot for the duration of the block; 503 if none frees up in time."""
        if not self._slots.acquire(timeout=self.max_wait_seconds):
            raise HTTPException(
                503, f"busy: all {self.max_running} query slots stayed taken for {self.max_wait_seconds:g} s; "
                     "retry later",
                headers={"Retry-After": str(max(1, math.ceil(self.max_wait_seconds)))})
        try:
            yield
        finally:
            self._slots.release()
