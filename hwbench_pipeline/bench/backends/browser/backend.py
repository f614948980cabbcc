"""onnxruntime-web in a headless browser: the model exported to ONNX as for the ONNX Runtime target, served
with its inputs and the measuring page from 127.0.0.1, run by the target's execution provider (WASM, WebGPU,
WebNN) and timed inside the page (docs/browser.md)."""

from __future__ import annotations

import shutil
import statistics
import tempfile
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import torch

from hwbench_pipeline.bench.backends.browser.config import (
    BROWSER_TARGETS,
    CALL_TIMEOUT_S,
    LOAD_TIMEOUT_S,
    BrowserTarget,
    ort_web_dist,
)
from hwbench_pipeline.bench.backends.browser.detect import (
    adapter_label,
    is_software_adapter,
    target_probe,
    target_unavailable,
    webgpu_probe,
)
from hwbench_pipeline.bench.backends.browser.launch import browser_version, find_browser
from hwbench_pipeline.bench.backends.browser.session import PageSession
from hwbench_pipeline.bench.backends.onnxruntime.config import TOLERANCE
from hwbench_pipeline.bench.failures import BenchmarkFailure, UnsupportedConfigurationError

DEVICE_KIND = "browser"
#: what a page must download before its first result is counted from these routes (its inputs are the user's)
DOWNLOADED_ROUTES = ("/page/", "/ort/", "/model/")
#: timed feature computations of an audio model (log-mel in the page), after two untimed ones
FEATURE_CALLS = 10
_DTYPES = {torch.float32: "float32", torch.int64: "int64", torch.int32: "int32", torch.bool: "bool",
           torch.uint8: "uint8", torch.int8: "int8", torch.float64: "float64"}


def _write_inputs(inputs: dict[str, torch.Tensor], directory: Path) -> list[dict[str, Any]]:
    specs = []
    for name, value in inputs.items():
        if value.dtype not in _DTYPES:
            raise UnsupportedConfigurationError(f"the browser page cannot feed a {value.dtype} input ({name})")
        (directory / f"{name}.bin").write_bytes(value.detach().cpu().contiguous().numpy().tobytes())
        specs.append({"name": name, "dtype": _DTYPES[value.dtype], "shape": list(value.shape),
                      "url": f"/inputs/{quote(name)}.bin"})
    return specs


def _audio_job(inputs: dict[str, torch.Tensor], directory: Path) -> dict[str, Any] | None:
    """Where an input is log-mel features of the catalog's speech clip, the page computes them from the
    waveform too, timed apart from the model (which runs on Python's features, the ones torch's reference
    saw); None when no input is."""
    from hwbench_pipeline.bench.speech import log_mel_recipe
    from hwbench_pipeline.bench.tasks import HOP, N_FFT, mel_filters

    for name, value in inputs.items():
        recipe = log_mel_recipe(value) if isinstance(value, torch.Tensor) else None
        if recipe is None:
            continue
        (directory / "waveform.bin").write_bytes(recipe.waveform.float().contiguous().numpy().tobytes())
        (directory / "filters.bin").write_bytes(mel_filters(recipe.n_mels).float().contiguous().numpy().tobytes())
        return {"input": name, "batch": int(recipe.waveform.shape[0]), "samples": int(recipe.waveform.shape[1]),
                "nMels": recipe.n_mels, "frames": recipe.frames, "layout": recipe.layout, "nFft": N_FFT, "hop": HOP,
                "waveformUrl": "/inputs/waveform.bin", "filtersUrl": "/inputs/filters.bin"}
    return None


def _tensor(reply_data: bytes, meta: dict[str, Any]) -> torch.Tensor:
    """The page's output tensor, as float32 for the comparison with torch (an audio codec's codes are int64)."""
    dtype = next((t for t, name in _DTYPES.items() if name == meta.get("dtype")), None)
    if dtype is None:
        raise BenchmarkFailure("runtime_error", f"the page returned a {meta.get('dtype')} output, which the "
                                                f"comparison with torch does not read ({', '.join(_DTYPES.values())})")
    return torch.frombuffer(bytearray(reply_data), dtype=dtype).reshape(meta["shape"]).float()


class BrowserRunner:
    """The model loaded by onnxruntime-web in the measuring page; each call runs there and is timed there."""

    def __init__(self, target: BrowserTarget, session: PageSession, loaded: dict[str, Any], directory: Path,
                 export_directory: Path | None, *, from_cache: bool, exporter: str, audio: dict | None,
                 features: torch.Tensor | None) -> None:
        self.precision = "fp32"
        self.from_cache = from_cache
        self.cache_write_s = 0.0  # the export is written in place and published by a rename
        self.exporter = exporter
        self.target = target
        self.session = session
        self.loaded = loaded
        self.audio = audio
        self._features = features
        self._download_bytes = sum(session.server.served(route) for route in DOWNLOADED_ROUTES)
        self._last_ms: float | None = None
        self._finalizers = [weakref.finalize(self, shutil.rmtree, d, ignore_errors=True)
                            for d in (directory, export_directory) if d is not None]

    def __call__(self) -> None:
        self.timed_call()

    def timed_call(self) -> float:
        """One call in the page; its duration there in ms (performance.now(), the round trip excluded)."""
        [ms] = self.session.value("run", CALL_TIMEOUT_S, n=1)
        return float(ms)

    def output(self) -> torch.Tensor:
        reply = self.session.call("output", CALL_TIMEOUT_S)
        return _tensor(reply.data, reply.meta or {})

    def own_pids(self) -> list[int]:
        """The browser's processes: their CPU time is this measurement's, not other work."""
        return self.session.process.pids()

    def peak_memory_mb(self) -> float | None:
        return None  # the browser's processes are not this one: the worker's RSS is not theirs

    def row_fields(self) -> dict[str, Any]:
        """What a browser row carries beside the timings: the browser, the provider that ran, threads and
        isolation, the WebGPU adapter as the page saw it, cold start and bytes downloaded, audio features."""
        loaded, adapter = self.loaded, self.loaded.get("webgpu") or {}
        fields: dict[str, Any] = {
            "browser": self.target.browser,
            "browser_version": browser_version(self.session.executable),
            "execution_provider": self.target.execution_provider,
            "ort_web_version": loaded.get("ortVersion") or None,
            "wasm_threads": int(loaded["threads"]) if loaded.get("threads") is not None else None,
            "cross_origin_isolated": bool(loaded.get("crossOriginIsolated")),
            "adapter": adapter_label(adapter) if adapter.get("available") else None,
            "adapter_is_software": is_software_adapter(adapter) if adapter.get("available") else None,
            # onnxruntime-web's warning that some nodes run on another provider (WASM kernels under WebGPU, or
            # shape ops it keeps on the CPU on purpose): the time is then a mix, said so on the row
            "provider_fallback": bool(loaded.get("providerWarnings")),
            "cold_start_ms": float(loaded["coldStartMs"]),
            "download_bytes": int(self._download_bytes),
            # the model's first call ran in the page while it loaded; the scenario's "first" call is its second
            "first_call_ms": float(loaded["firstRunMs"]),
        }
        fields["browser_peak_rss_mb"] = self.session.process.peak_rss_mb()
        if self.audio is not None:
            try:
                fields.update(self._feature_fields())
            except BenchmarkFailure as exc:  # the model's timings stand: the row says why it has no features
                fields["features_note"] = f"features not measured: {exc.failure_class}: {exc}"[:500]
        return fields

    def _feature_fields(self) -> dict[str, Any]:
        self.session.value("features", CALL_TIMEOUT_S, n=2)
        samples = self.session.value("features", CALL_TIMEOUT_S, n=FEATURE_CALLS)
        reply = self.session.call("features_output", CALL_TIMEOUT_S)
        page = _tensor(reply.data, reply.meta or {}).reshape(self._features.shape)
        return {"features_ms": statistics.median(samples),
                "features_max_abs_diff": float((page - self._features.float()).abs().max())}

    def release(self) -> None:
        self.session.close()
        for finalizer in self._finalizers:
            finalizer()


class BrowserBackend:
    """The backend of one browser target (its name is the target key's tail: ``chromium-wasm`` …)."""

    def __init__(self, target: BrowserTarget) -> None:
        self.target = target
        self.name = target.backend

    def available(self, device_kind: str) -> tuple[bool, str]:
        if device_kind != DEVICE_KIND:
            return False, f"{self.name} runs in a browser (target browser-{self.name}), not on {device_kind}"
        reason = target_unavailable(self.target.browser, self.target.execution_provider)
        return reason is None, reason or ""

    def detail(self) -> str:
        """The browser and, for WebGPU, the adapter it gives (a software one said to be so)."""
        executable = find_browser(self.target.browser)
        text = browser_version(executable) if executable else self.target.browser
        if self.target.execution_provider == "webgpu":
            adapter = webgpu_probe().answer.get("webgpu", {})
            text += f"; WebGPU adapter {adapter_label(adapter)}" if adapter.get("available") else ""
        return text

    def precisions(self, device_kind: str) -> tuple[str, ...]:
        return ("fp32",)

    def unsupported_reason(self, precision: str, device_kind: str) -> str | None:
        if precision == "fp32":
            return None
        return "the browser targets measure the fp32 export only (the same graph as the ONNX Runtime target's)"

    def tolerance(self, precision: str) -> float:
        return TOLERANCE["fp32"]

    def prepare(self, model: Any, inputs: dict[str, Any], forward: Any, device: str, precision: str, *,
                calibration: Sequence[dict[str, Any]] = ()) -> BrowserRunner:
        from hwbench_pipeline.bench.backends.onnxruntime.backend import export_fp32

        reason = self.unsupported_reason(precision, DEVICE_KIND)
        if reason is not None:
            raise UnsupportedConfigurationError(f"precision {precision} on browser-{self.name}: {reason}")
        unavailable = target_unavailable(self.target.browser, self.target.execution_provider)
        if unavailable is not None:
            # a browser that did not answer its probe now is a fault of this run, not a lasting absence
            failed = target_probe(self.target.browser, self.target.execution_provider).failed
            raise BenchmarkFailure("runtime_error" if failed else "unsupported_configuration",
                                   f"browser-{self.name} is not available here: {unavailable}")
        not_tensors = [name for name, value in inputs.items() if not isinstance(value, torch.Tensor)]
        if not_tensors:
            raise UnsupportedConfigurationError(f"the browser page takes tensor inputs only, not "
                                                f"{', '.join(not_tensors)}")
        path, exporter, from_cache, export_directory = export_fp32(model, inputs, forward)
        directory = Path(tempfile.mkdtemp(prefix="hwbench-browser-"))
        session = None
        try:
            session, loaded, audio = open_model_page(self.target, path, inputs, directory)
            features = inputs[audio["input"]] if audio is not None else None
            return BrowserRunner(self.target, session, loaded, directory, export_directory, from_cache=from_cache,
                                 exporter=exporter, audio=audio, features=features)
        except BaseException:
            if session is not None:
                session.close()
            for d in (directory, export_directory):
                if d is not None:
                    shutil.rmtree(d, ignore_errors=True)
            raise


def open_model_page(target: BrowserTarget, path: Path, inputs: dict[str, torch.Tensor],
                    directory: Path) -> tuple[PageSession, dict[str, Any], dict | None]:
    """The measuring page open in ``target``'s browser with the ONNX model at ``path`` loaded (its external data
    served beside it) and ``inputs`` written to ``directory``: (session, what the page reported loading it, the
    audio features job or None). Raises a classified failure, the browser ended, when it cannot load."""
    audio = _audio_job(inputs, directory)
    job = {
        "ortModule": f"/ort/{target.ort_module}", "ortBase": "/ort/", "threads": torch.get_num_threads(),
        "executionProvider": target.execution_provider, "modelBase": "/model/", "modelFile": path.name,
        # a model exported with external data is served with it
        "externalData": sorted(p.name for p in path.parent.iterdir() if p.is_file() and p != path),
        "inputs": _write_inputs(inputs, directory), "audio": audio,
    }
    routes = {"/ort/": ort_web_dist(), "/model/": path.parent, "/inputs/": directory}
    flags = target_probe(target.browser, target.execution_provider).flags
    session = PageSession(target.browser, find_browser(target.browser), flags, routes, job)
    try:
        return session, session.value("load", LOAD_TIMEOUT_S), audio
    except BaseException:
        session.close()
        raise


BACKENDS: dict[str, BrowserBackend] = {name: BrowserBackend(target) for name, target in BROWSER_TARGETS.items()}
