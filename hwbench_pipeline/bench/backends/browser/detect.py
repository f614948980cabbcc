"""What each installed browser offers here: the measuring page opened headless answers a probe (cross-origin
isolation, the WebGPU adapter and whether it is a software device, whether a WebNN context can be made).

A probe starts a browser (a second or two), so its answer is kept in a file per user, keyed by the browser
executable, its modification time and the flags: sensors call detection on every tick.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwbench_pipeline.bench.backends.browser.config import (
    ORT_WEB_INSTALL_HINT,
    SWIFTSHADER_FLAGS,
    WEBGPU_FLAGS,
    WEBNN_FLAGS,
    ort_web_dist,
)
from hwbench_pipeline.bench.backends.browser.launch import INSTALL_HINTS, find_browser
from hwbench_pipeline.bench.failures import BenchmarkFailure

PROBE_TIMEOUT_S = 90.0
PROBE_CACHE = Path(tempfile.gettempdir()) / f"hwbench-browser-probes-{os.getuid()}.json"
#: software WebGPU adapters: devices that run on the CPU, recorded as such and never as a GPU
SOFTWARE_ADAPTERS = ("swiftshader", "llvmpipe", "lavapipe", "warp", "software")


@dataclass(frozen=True)
class Probe:
    """What the page saw in one browser started with ``flags``; ``error`` when it could not run at all."""

    flags: tuple[str, ...]
    answer: dict[str, Any]
    error: str = ""


def _run_probe(browser: str, executable: Path, flags: tuple[str, ...]) -> dict[str, Any]:
    from hwbench_pipeline.bench.backends.browser.session import PageSession

    session = PageSession(browser, executable, flags, {}, job={})
    try:
        return session.value("probe", PROBE_TIMEOUT_S)
    finally:
        session.close()


def probe(browser: str, flags: tuple[str, ...]) -> Probe:
    """The page's probe in ``browser`` started with ``flags`` (from the per-user cache when it holds one for
    this executable, unchanged since)."""
    executable = find_browser(browser)
    if executable is None:
        return Probe(flags, {}, f"{browser} is not installed ({INSTALL_HINTS[browser]})")
    key = f"{executable}|{executable.stat().st_mtime_ns}|{' '.join(flags)}"
    cached = _read_cache()
    if key in cached:
        return Probe(flags, cached[key].get("answer", {}), cached[key].get("error", ""))
    try:
        answer, error = _run_probe(browser, executable, flags), ""
    except (BenchmarkFailure, OSError) as exc:
        answer, error = {}, f"{browser} did not run the probe page: {exc}"
    cached[key] = {"answer": answer, "error": error}
    _write_cache(cached)
    return Probe(flags, answer, error)


def _read_cache() -> dict[str, Any]:
    try:
        return json.loads(PROBE_CACHE.read_text())
    except (OSError, ValueError):
        return {}


def _write_cache(cached: dict[str, Any]) -> None:
    staged = PROBE_CACHE.with_name(f"{PROBE_CACHE.name}.{os.getpid()}")
    with contextlib.suppress(OSError):
        staged.write_text(json.dumps(cached, indent=1))
        os.replace(staged, PROBE_CACHE)


def is_software_adapter(adapter: dict[str, Any]) -> bool:
    text = " ".join(str(adapter.get(k, "")) for k in ("vendor", "architecture", "device", "description")).lower()
    return bool(adapter.get("fallback")) or any(name in text for name in SOFTWARE_ADAPTERS)


def adapter_label(adapter: dict[str, Any]) -> str:
    """"google swiftshader (software, on the CPU)", "nvidia ampere" …"""
    names = " ".join(str(adapter.get(k, "")) for k in ("vendor", "architecture", "device") if adapter.get(k))
    return f"{names or 'unnamed adapter'}{' (software, on the CPU)' if is_software_adapter(adapter) else ''}"


@functools.cache
def webgpu_probe() -> Probe:
    """Chromium's WebGPU: a hardware adapter where one answers, else SwiftShader's software one."""
    first = probe("chromium", WEBGPU_FLAGS)
    if first.answer.get("webgpu", {}).get("available"):
        return first
    return probe("chromium", SWIFTSHADER_FLAGS)


def target_unavailable(browser: str, execution_provider: str) -> str | None:
    """Why ``browser-<browser>-<execution_provider>`` cannot be measured here, or None when it can."""
    if ort_web_dist() is None:
        return f"onnxruntime-web is not installed in this checkout: {ORT_WEB_INSTALL_HINT}"
    if execution_provider == "webgpu":
        seen = webgpu_probe()
        if seen.error:
            return seen.error
        webgpu = seen.answer.get("webgpu", {})
        return None if webgpu.get("available") else f"chromium offers no WebGPU adapter: {webgpu.get('reason', '')}"
    seen = probe(browser, WEBNN_FLAGS if execution_provider == "webnn" else ())
    if seen.error:
        return seen.error
    if execution_provider == "webnn":
        webnn = seen.answer.get("webnn", {})
        return None if webnn.get("available") else f"chromium offers no WebNN: {webnn.get('reason', '')}"
    return None


def launch_flags(browser: str, execution_provider: str) -> tuple[str, ...]:
    """The flags a measuring browser starts with for that provider (the ones its probe succeeded with)."""
    if execution_provider == "webgpu":
        return webgpu_probe().flags
    return WEBNN_FLAGS if execution_provider == "webnn" else ()
