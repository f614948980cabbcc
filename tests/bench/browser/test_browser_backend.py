"""The browser targets for real: onnxruntime-web in headless Chromium (and Firefox where installed) measures a
tiny model, agrees with torch, and every way a page can go wrong ends as a classified failure with the browser
gone."""

import os
import signal
import time
from pathlib import Path

import onnx
import pytest
import torch
from onnx import TensorProto, helper

from hwbench_pipeline.bench.backends import load_backend
from hwbench_pipeline.bench.backends.browser.backend import open_model_page
from hwbench_pipeline.bench.backends.browser.config import BROWSER_TARGETS
from hwbench_pipeline.bench.backends.browser.session import classify_page_error
from hwbench_pipeline.bench.failures import BenchmarkFailure
from hwbench_pipeline.bench.hardware import UnknownTargetError, parse_target, skipped_targets
from hwbench_pipeline.bench.scenarios.inference import InferenceConfig, run_configuration
from hwbench_pipeline.bench.trackers.stats import StoppingRule

RULE = StoppingRule(ci_target=0.05, min_samples=5, max_seconds=0.5, warmup_max_seconds=0.2)
#: an ONNX IR version onnxruntime-web reads (the onnx package writes a newer one by default)
IR_VERSION = 8


def absent(target: str) -> str | None:
    return dict(skipped_targets()).get(target)


def needs(target: str):
    why = absent(target)
    return pytest.mark.skipif(why is not None, reason=f"{target} is absent here: {why}")


def test_a_browser_target_key_names_the_browser_and_the_execution_provider():
    target = parse_target("browser-chromium-webgpu")
    assert (target.device_kind, target.backend, target.torch_device) == ("browser", "chromium-webgpu", "cpu")
    for wrong in ("cpu-chromium-wasm", "browser-torch", "browser-safari-wasm"):
        with pytest.raises(UnknownTargetError, match="browser-chromium-wasm"):
            parse_target(wrong)


def test_an_absent_browser_target_is_listed_with_its_reason():
    reasons = dict(skipped_targets())
    for name in BROWSER_TARGETS:
        if f"browser-{name}" in reasons:
            assert len(reasons[f"browser-{name}"]) > 20  # a sentence, not a flag
        else:
            assert load_backend(name).available("browser") == (True, "")
    assert load_backend("chromium-wasm").available("cpu")[0] is False


def test_a_browser_page_error_is_classified_by_what_it_says():
    assert classify_page_error("Error: failed to call OrtRun(). ERROR_CODE: 6, ERROR_MESSAGE: std::bad_alloc") \
        == "out_of_memory"
    assert classify_page_error("Fatal error: com.x:Foo(-1) is not a registered function/op") == "unsupported_operator"
    assert classify_page_error("TypeError: x is undefined") == "runtime_error"


def measured_row(target: str, family: str = "bert", threads: int = 1) -> dict:
    cfg = InferenceConfig(family=family, preset="tiny", target=target, batch_size=1, seq_len=16, precision="fp32",
                          threads=threads, rule=RULE)
    return run_configuration(cfg, "test-run")


@needs("browser-chromium-wasm")
def test_chromium_wasm_measures_a_model_in_the_page_and_matches_torch():
    row = measured_row("browser-chromium-wasm", threads=2)
    assert row["status"] == "ok", row.get("message")
    assert row["max_rel_diff"] <= load_backend("chromium-wasm").tolerance("fp32")
    assert row["n_samples"] >= 3 and row["p50_ms"] > 0 and row["device_kind"] == "browser"
    assert row["browser"] == "chromium" and row["browser_version"].startswith("Chromium")
    assert row["execution_provider"] == "wasm" and row["adapter"] is None and row["provider_fallback"] is False
    # isolated, so onnxruntime-web runs the configuration's threads (a page that is not runs one)
    assert row["cross_origin_isolated"] is True and row["wasm_threads"] == 2
    # the page downloaded onnxruntime-web's WASM runtime (megabytes) and the model before its first result
    assert row["download_bytes"] > 5e6 and row["cold_start_ms"] > 0 and row["browser_peak_rss_mb"] > 50


@needs("browser-chromium-wasm")
def test_an_audio_model_computes_its_log_mel_features_in_the_page():
    row = measured_row("browser-chromium-wasm", "whisper")
    assert row["status"] == "ok", row.get("message")
    assert row["features_ms"] > 0 and row["features_max_abs_diff"] < 1e-3 and row.get("features_note") is None


@needs("browser-firefox-wasm")
def test_firefox_wasm_measures_the_same_model():
    row = measured_row("browser-firefox-wasm")
    assert row["status"] == "ok", row.get("message")
    assert row["browser_version"].startswith("Mozilla Firefox") and row["cross_origin_isolated"] is True


@needs("browser-chromium-webgpu")
def test_a_software_webgpu_adapter_is_recorded_as_such():
    row = measured_row("browser-chromium-webgpu")
    assert row["status"] == "ok", row.get("message")
    assert row["execution_provider"] == "webgpu" and row["adapter"]
    # bert's exported graph has shape operations onnxruntime-web keeps on the CPU: its warning reaches the row
    assert row["provider_fallback"] is True
    if "swiftshader" in row["adapter"]:
        assert row["adapter_is_software"] is True and "software" in row["adapter"]
    else:  # a hardware adapter is not called software
        assert row["adapter_is_software"] is False and "software" not in row["adapter"]


def test_a_precision_the_browser_does_not_run_is_refused_with_the_reason():
    reason = load_backend("chromium-wasm").unsupported_reason("int8-dynamic", "browser")
    assert reason and "fp32" in reason


# ---- faults: each ends the browser and becomes a classified failure ------------------------------------------

def tiny_graph(directory: Path, nodes: list, opsets: list) -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y]), opset_imports=opsets, ir_version=IR_VERSION)
    (directory / "model").mkdir()
    onnx.save(model, directory / "model" / "model.onnx")
    return directory / "model" / "model.onnx"


def open_graph(tmp_path: Path, path: Path, target: str = "chromium-wasm"):
    (tmp_path / "inputs").mkdir()
    return open_model_page(BROWSER_TARGETS[target], path, {"x": torch.ones(4)}, tmp_path / "inputs")


def alive(pids: list[int]) -> list[int]:
    living = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            living.append(pid)
    return living


def gone_soon(pids: list[int]) -> bool:
    deadline = time.monotonic() + 10
    while alive(pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not alive(pids)


@needs("browser-chromium-wasm")
def test_an_operator_the_runtime_lacks_is_an_unsupported_operator_failure(tmp_path):
    node = helper.make_node("Foo", ["x"], ["y"], domain="com.hwbench.test")
    path = tiny_graph(tmp_path, [node], [helper.make_opsetid("", 17), helper.make_opsetid("com.hwbench.test", 1)])
    with pytest.raises(BenchmarkFailure, match="not a registered function/op") as caught:
        open_graph(tmp_path, path)
    assert caught.value.failure_class == "unsupported_operator"


@needs("browser-chromium-wasm")
def test_a_tensor_beyond_the_pages_memory_is_an_out_of_memory_failure(tmp_path):
    # just under 4 GiB of float32: WASM addresses 4 GiB in all, so it cannot be allocated beside the runtime
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [(1 << 15) - 64, 1 << 15])
    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    nodes = [helper.make_node("Constant", [], ["s"], value=shape),
             helper.make_node("ConstantOfShape", ["s"], ["big"], value=one),
             helper.make_node("ReduceSum", ["big"], ["r"], keepdims=0),
             helper.make_node("Add", ["x", "r"], ["y"])]
    path = tiny_graph(tmp_path, nodes, [helper.make_opsetid("", 17)])
    with pytest.raises(BenchmarkFailure) as caught:
        open_graph(tmp_path, path)
    assert caught.value.failure_class == "out_of_memory", str(caught.value)


@needs("browser-chromium-wasm")
def test_a_page_that_does_not_answer_in_time_is_a_timeout_and_its_browser_is_ended(tmp_path):
    path = tiny_graph(tmp_path, [helper.make_node("Relu", ["x"], ["y"])], [helper.make_opsetid("", 17)])
    session, loaded, _ = open_graph(tmp_path, path)
    pids = session.process.pids()
    assert loaded["coldStartMs"] > 0 and len(pids) > 1
    with pytest.raises(BenchmarkFailure, match="did not answer 'run' within 1 s") as caught:
        session.value("run", 1.0, n=10**9)  # a page busy for hours: as good as hung
    assert caught.value.failure_class == "timeout"
    assert gone_soon(pids), f"browser processes still running: {alive(pids)}"


@needs("browser-chromium-wasm")
def test_a_browser_that_dies_is_a_crash_and_nothing_of_it_is_left(tmp_path):
    path = tiny_graph(tmp_path, [helper.make_node("Relu", ["x"], ["y"])], [helper.make_opsetid("", 17)])
    session, _, _ = open_graph(tmp_path, path)
    pids = session.process.pids()
    os.kill(session.process.process.pid, signal.SIGKILL)
    session.process.process.wait(timeout=30)  # before the command: a page still alive could answer it
    with pytest.raises(BenchmarkFailure, match="exited with code -9") as caught:
        session.value("run", 30.0, n=1)
    assert caught.value.failure_class == "worker_crashed"
    assert gone_soon(pids), f"browser processes still running: {alive(pids)}"


def _hold_a_page(path: Path, inputs_dir: Path, sender) -> None:
    session, _, _ = open_model_page(BROWSER_TARGETS["chromium-wasm"], path, {"x": torch.ones(4)}, inputs_dir)
    sender.send(session.process.pids())
    time.sleep(600)  # killed by the test long before


@needs("browser-chromium-wasm")
def test_a_measuring_process_killed_takes_its_browser_with_it(tmp_path):
    import multiprocessing

    path = tiny_graph(tmp_path, [helper.make_node("Relu", ["x"], ["y"])], [helper.make_opsetid("", 17)])
    (tmp_path / "inputs").mkdir()
    receiver, sender = multiprocessing.Pipe(duplex=False)
    worker = multiprocessing.get_context("spawn").Process(target=_hold_a_page, args=(path, tmp_path / "inputs", sender))
    worker.start()
    assert receiver.poll(120), "the page did not open"
    pids = receiver.recv()
    assert len(alive(pids)) > 1
    os.kill(worker.pid, signal.SIGKILL)  # what a timeout does to a measuring process
    worker.join()
    assert gone_soon(pids), f"browser processes outlived their measuring process: {alive(pids)}"
