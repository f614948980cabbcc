"""The browser targets: which browser, which onnxruntime-web execution provider, the flags each needs, and where
the project's own copy of onnxruntime-web lives."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from hwbench_pipeline.paths import REPO_ROOT

#: the checkout's npm project (web/package.json); `make install` runs `npm ci` there
WEB_DIR = REPO_ROOT / "web"
#: overrides where onnxruntime-web's dist folder is looked for
ORT_WEB_ENV = "HWBENCH_ORT_WEB"
ORT_WEB_INSTALL_HINT = "run `make install` (it runs `npm ci --prefix web`; needs node and npm)"

#: WebGPU on a real GPU: Chromium on Linux reaches it through Vulkan, and blocks many drivers unless told not to
HARDWARE_WEBGPU_FLAGS = ("--enable-unsafe-webgpu", "--enable-features=Vulkan", "--use-angle=vulkan",
                         "--ignore-gpu-blocklist")
#: a software Vulkan device on the CPU: what WebGPU gets on a host without a usable GPU (recorded as such)
SWIFTSHADER_FLAGS = ("--enable-unsafe-webgpu", "--use-webgpu-adapter=swiftshader", "--enable-unsafe-swiftshader")
WEBNN_FLAGS = ("--enable-features=WebMachineLearningNeuralNetwork",)

#: seconds a browser may take to open the page and load onnxruntime-web, the model and its inputs
LOAD_TIMEOUT_S = 600.0
#: seconds one timed call may take before the page counts as hung (the configuration's timeout bounds it too)
CALL_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class BrowserTarget:
    """One ``browser-<browser>-<provider>`` target."""

    browser: str  # chromium, firefox
    execution_provider: str  # onnxruntime-web's name: wasm, webgpu, webnn
    ort_module: str  # the onnxruntime-web bundle the page imports (the smallest with that provider)

    @property
    def backend(self) -> str:
        return f"{self.browser}-{self.execution_provider}"


BROWSER_TARGETS: dict[str, BrowserTarget] = {
    t.backend: t for t in (
        BrowserTarget("chromium", "wasm", "ort.wasm.min.mjs"),
        BrowserTarget("chromium", "webgpu", "ort.webgpu.min.mjs"),
        BrowserTarget("chromium", "webnn", "ort.all.min.mjs"),
        BrowserTarget("firefox", "wasm", "ort.wasm.min.mjs"),
    )
}


def ort_web_dist() -> Path | None:
    """onnxruntime-web's dist folder (the checkout's installed copy), or None when it is not installed."""
    override = os.environ.get(ORT_WEB_ENV)
    dist = Path(override) if override else WEB_DIR / "node_modules" / "onnxruntime-web" / "dist"
    return dist if (dist / "ort.wasm.min.mjs").is_file() else None
