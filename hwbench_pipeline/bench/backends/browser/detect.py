"""What each installed browser offers here: the measuring page opened headless answers a probe (cross-origin
isolation, the WebGPU adapter and whether it is a software device, whether a WebNN context can be made).

A probe starts a browser (a second or two), so its answer is kept in a file of this user's (beside the
measurement lock), keyed by the browser's version, the measuring page, the flags and the environment that
chooses a GPU: sensors call detection on every tick, and each measuring process reads its flags from it. A probe
that failed is not kept: the next detection tries again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwbench_pipeline.bench.backends.browser.config import (
    HARDWARE_WEBGPU_FLAGS,
    ORT_WEB_INSTALL_HINT,
    SWIFTSHADER_FLAGS,
    WEBNN_FLAGS,
    ort_web_dist,
)
from hwbench_pipeline.bench.backends.browser.launch import INSTALL_HINTS, browser_version, find_browser
from hwbench_pipeline.bench.backends.browser.server import PAGE_DIR
from hwbench_pipeline.bench.failures import BenchmarkFailure

PROBE_TIMEOUT_S = 90.0
PROBE_CACHE_FILE = "browser-probes.json"
#: what else decides the adapter a browser gets: the display and the Vulkan drivers it may load
ENVIRONMENT_KEYS = ("DISPLAY", "WAYLAND_DISPLAY", "VK_ICD_FILENAMES", "VK_DRIVER_FILES", "CUDA_VISIBLE_DEVICES")
#: software WebGPU adapters: devices that run on the CPU, recorded as such and never as a GPU
SOFTWARE_ADAPTERS = ("swiftshader", "llvmpipe", "lavapipe", "warp", "software")


@dataclass(frozen=True)
class Probe:
    """What the page saw in one browser started with ``flags``; ``error`` says why the target cannot run:
    the browser is not installed, lacks the provider, or ``failed`` to run the probe page at all (a fault of
    this moment, not a lasting absence)."""

    flags: tuple[str, ...]
    answer: dict[str, Any]
    error: str = ""
    installed: bool = True
    failed: bool = False


def _run_probe(browser: str, executable: Path, flags: tuple[str, ...]) -> dict[str, Any]:
    from hwbench_pipeline.bench.backends.browser.session import PageSession

    session = PageSession(browser, executable, flags, {}, job={})
    try:
        return session.value("probe", PROBE_TIMEOUT_S)
    finally:
        session.close()


def _cache_key(executable: Path, flags: tuple[str, ...]) -> str:
    page = hashlib.sha256((PAGE_DIR / "measure.mjs").read_bytes()).hexdigest()[:16]
    environment = "|".join(f"{k}={os.environ.get(k, '')}" for k in ENVIRONMENT_KEYS)
    return f"{executable.resolve()}|{browser_version(executable)}|{page}|{' '.join(flags)}|{environment}"


def probe(browser: str, flags: tuple[str, ...]) -> Probe:
    """The page's probe in ``browser`` started with ``flags`` (the cached answer where there is one)."""
    executable = find_browser(browser)
    if executable is None:
        return Probe(flags, {}, f"{browser} is not installed ({INSTALL_HINTS[browser]})", installed=False)
    key = _cache_key(executable, flags)
    cached = _read_cache()
    if key in cached:
        return Probe(flags, cached[key])
    try:
        answer = _run_probe(browser, executable, flags)
    except (BenchmarkFailure, OSError) as exc:
        return Probe(flags, {}, f"{browser} did not run the probe page: {exc}", failed=True)
    cached[key] = answer
    _write_cache(cached)
    return Probe(flags, answer)


def _cache_path() -> Path:
    from hwbench_pipeline.paths import host_lock_dir

    return host_lock_dir() / PROBE_CACHE_FILE


def _read_cache() -> dict[str, Any]:
    try:
        return json.loads(_cache_path().read_text())
    except (OSError, ValueError):
        return {}


def _write_cache(cached: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):
        path = _cache_path()
        staged = path.with_name(f".{path.name}.{os.getpid()}")
        staged.write_text(json.dumps(cached, indent=1))
        os.replace(staged, path)


def is_software_adapter(adapter: dict[str, Any]) -> bool:
    text = " ".join(str(adapter.get(k, "")) for k in ("vendor", "architecture", "device", "description")).lower()
    return bool(adapter.get("fallback")) or any(name in text for name in SOFTWARE_ADAPTERS)


def adapter_label(adapter: dict[str, Any]) -> str:
    """"google swiftshader (software, on the CPU)", "nvidia ampere" …"""
    names = " ".join(str(adapter.get(k, "")) for k in ("vendor", "architecture", "device") if adapter.get(k))
    return f"{names or 'unnamed adapter'}{' (software, on the CPU)' if is_software_adapter(adapter) else ''}"


def webgpu_probe() -> Probe:
    """Chromium's WebGPU: a hardware adapter where one answers, else SwiftShader's software one; a failure
    carries both attempts' reasons. Not kept in the process: a long-lived one (the sensors' daemon) must see a
    failed probe tried again, and the answers that worked are in the file already."""
    hardware = probe("chromium", HARDWARE_WEBGPU_FLAGS)
    if hardware.answer.get("webgpu", {}).get("available") or not hardware.installed:
        return hardware
    software = probe("chromium", SWIFTSHADER_FLAGS)
    if software.answer.get("webgpu", {}).get("available"):
        return software
    reasons = [p.error or p.answer.get("webgpu", {}).get("reason", "") for p in (hardware, software)]
    why = f"chromium offers no WebGPU adapter: hardware: {reasons[0]}; SwiftShader: {reasons[1]}"
    return Probe(software.flags, software.answer, why, failed=hardware.failed or software.failed)


def target_probe(browser: str, execution_provider: str) -> Probe:
    """The probe that decides whether ``browser-<browser>-<execution_provider>`` runs here, and with which flags."""
    if execution_provider == "webgpu":
        return webgpu_probe()
    return probe(browser, WEBNN_FLAGS if execution_provider == "webnn" else ())


def target_unavailable(browser: str, execution_provider: str) -> str | None:
    """Why ``browser-<browser>-<execution_provider>`` cannot be measured here, or None when it can."""
    if ort_web_dist() is None:
        return f"onnxruntime-web is not installed in this checkout: {ORT_WEB_INSTALL_HINT}"
    seen = target_probe(browser, execution_provider)
    if seen.error:
        return seen.error
    if execution_provider == "webnn":
        webnn = seen.answer.get("webnn", {})
        return None if webnn.get("available") else f"chromium offers no WebNN: {webnn.get('reason', '')}"
    return None
