"""Hardware targets: what a target key means, and which targets this host has.

A target key is ``<device>-<backend>``: ``cpu-torch``, ``cuda0-torch``, ``rocm0-torch``, ``mps-torch`` …
The device part says where the model runs, the backend part which runtime runs it. In a browser the runtime is
onnxruntime-web in one browser with one execution provider: ``browser-chromium-wasm``,
``browser-chromium-webgpu`` … (backends/browser; the WebGPU adapter it got is recorded on each row). Backends
plug in through :mod:`hwbench_pipeline.bench.backends`; a key is only offered when its backend is implemented
and its device is present here. Detection is cheap (no micro-benchmarks; a browser's probe is cached) so sensors
can call it on every tick.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hwbench_pipeline.bench.backends import BACKENDS, BROWSER_BACKENDS, backend_available

TARGET_KEY = re.compile(r"^(?P<device>cpu|mps|browser|(?P<kind>cuda|rocm)(?P<index>\d+))-(?P<backend>[a-z0-9_-]+)$")
BROWSER_DEVICE = "browser"


class UnknownTargetError(ValueError):
    pass


@dataclass(frozen=True)
class HardwareTarget:
    key: str
    device_kind: str  # cpu, cuda, rocm, mps, browser
    device_index: int | None
    backend: str

    @property
    def torch_device(self) -> str:
        """The torch device string; ROCm builds of torch address AMD GPUs as 'cuda'."""
        if self.device_kind in ("cuda", "rocm"):
            return f"cuda:{self.device_index}"
        # a browser target's model is built and exported on the CPU, then run by the browser
        return "cpu" if self.device_kind == BROWSER_DEVICE else self.device_kind


def parse_target(key: str) -> HardwareTarget:
    """Parse a target key, or raise UnknownTargetError saying what is accepted."""
    match = TARGET_KEY.match(key)
    if not match or match["backend"] not in BACKENDS \
            or (match["device"] == BROWSER_DEVICE) != (match["backend"] in BROWSER_BACKENDS):
        native = sorted(set(BACKENDS) - BROWSER_BACKENDS)
        raise UnknownTargetError(
            f"unknown hardware target {key!r}: expected <device>-<backend> with device cpu, mps, cudaN or rocmN "
            f"and backend one of {', '.join(native)} (e.g. cpu-torch, cuda0-torch), or "
            f"{', '.join(f'browser-{name}' for name in sorted(BROWSER_BACKENDS))}"
        )
    kind = match["kind"] or match["device"]
    index = int(match["index"]) if match["index"] is not None else None
    return HardwareTarget(key=key, device_kind=kind, device_index=index, backend=match["backend"])


def accelerator_devices() -> list[tuple[str, int | None, str]]:
    """(kind, index, name) of each accelerator torch can see here."""
    import torch

    found: list[tuple[str, int | None, str]] = []
    if torch.cuda.is_available():
        kind = "rocm" if getattr(torch.version, "hip", None) else "cuda"
        for i in range(torch.cuda.device_count()):
            found.append((kind, i, torch.cuda.get_device_name(i)))
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append(("mps", None, "Apple MPS"))
    return found


def detect_targets() -> list[HardwareTarget]:
    """Every target key usable on this host, CPU first."""
    devices: list[tuple[str, int | None]] = [("cpu", None)]
    devices += [(kind, index) for kind, index, _ in accelerator_devices()]
    targets = []
    for kind, index in devices:
        device = kind if index is None else f"{kind}{index}"
        for backend in BACKENDS:
            if backend in BROWSER_BACKENDS:
                continue
            target = parse_target(f"{device}-{backend}")
            if backend_available(backend, target.device_kind)[0]:
                targets.append(target)
    for backend in sorted(BROWSER_BACKENDS):
        if backend_available(backend, BROWSER_DEVICE)[0]:
            targets.append(parse_target(f"{BROWSER_DEVICE}-{backend}"))
    return targets


def skipped_targets() -> list[tuple[str, str]]:
    """Target families that are not usable here, with the reason (shown to users, never hidden)."""
    import torch

    reasons = []
    if not torch.cuda.is_available():
        reasons.append(("cuda*-*", f"no CUDA device visible to torch {torch.__version__}"))
    mps = getattr(torch.backends, "mps", None)
    if mps is None or not mps.is_available():
        reasons.append(("mps-*", "no Apple MPS device"))
    if not getattr(torch.version, "hip", None):
        reasons.append(("rocm*-*", "torch is not a ROCm build"))
    for backend in BACKENDS:
        device = BROWSER_DEVICE if backend in BROWSER_BACKENDS else "cpu"
        ok, why = backend_available(backend, device)
        if not ok:
            reasons.append((f"{device}-{backend}", why))
    return reasons
