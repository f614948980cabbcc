"""A configuration's export cache: real exports, conversions and sessions on the CPU; only the exporter itself is
replaced (by one that fails) where a test must prove that a process does not export again."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch

from hwbench_pipeline.bench.backends import load_backend  # noqa: I001 - before openvino (masks its telemetry)

OPENVINO = load_backend("openvino")
ONNXRUNTIME = load_backend("onnxruntime")
openvino = pytest.importorskip("openvino")

from hwbench_pipeline.bench import models  # noqa: E402
from hwbench_pipeline.bench.backends.export_cache import (  # noqa: E402
    EXPORT_CACHE_ENV,
    STAGING_PREFIX,
    configuration_cache,
    publish,
)
from hwbench_pipeline.bench.backends.onnxruntime.config import TMP_PREFIX  # noqa: E402
from hwbench_pipeline.bench.failures import BenchmarkFailure  # noqa: E402

FAMILY, PRESET, BATCH, SEQ = "bert", "tiny", 1, 8
#: per backend: the exporter a cached load must not call (module, attribute) and the file the cache must hold
EXPORTERS = {"onnxruntime": (torch.onnx, "export"), "openvino": (openvino, "convert_model")}
ARTIFACTS = {"onnxruntime": "onnxruntime/dynamo/model.onnx", "openvino": "openvino/model.xml"}
BACKENDS = {"onnxruntime": ONNXRUNTIME, "openvino": OPENVINO}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def own_tmp(tmp_path, monkeypatch) -> Path:
    """Private ONNX exports go to a directory of this test's own, so what is left behind can be checked."""
    directory = tmp_path / "tmp"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    directory = tmp_path / "cache"
    directory.mkdir()
    monkeypatch.setenv(EXPORT_CACHE_ENV, str(directory))
    return directory


def _prepare(backend: str):
    """What one measuring process does: build the model from the seed, then prepare it."""
    config = models.build_config(FAMILY, PRESET)
    model = models.build_model(FAMILY, PRESET, seed=0)
    inputs = models.make_inputs(FAMILY, config, BATCH, SEQ)
    return BACKENDS[backend].prepare(model, inputs, models.forward, "cpu", "fp32")


def _output_and_release(runner) -> tuple[bool, torch.Tensor]:
    try:
        return runner.from_cache, runner.output()
    finally:
        runner.release()


def _block_exporter(monkeypatch, backend: str) -> None:
    module, name = EXPORTERS[backend]

    def exporter(*args, **kwargs):
        raise AssertionError(f"{module.__name__}.{name} was called: the cached model was not used")

    monkeypatch.setattr(module, name, exporter)


def _files(directory: Path) -> list[Path]:
    return sorted(path for path in directory.rglob("*") if path.is_file())


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_the_first_process_exports_into_the_cache_and_the_next_one_loads_it_without_exporting(
        backend, cache, own_tmp, monkeypatch):
    first_from_cache, first = _output_and_release(_prepare(backend))
    assert first_from_cache is False
    assert (cache / ARTIFACTS[backend]).is_file(), _files(cache)
    published = _files(cache)
    assert not list(cache.glob(f"{STAGING_PREFIX}*")), "a staged artifact was left behind"

    _block_exporter(monkeypatch, backend)
    second_from_cache, second = _output_and_release(_prepare(backend))
    assert second_from_cache is True
    assert torch.equal(second, first)
    assert _files(cache) == published, "releasing a cached model must leave the cache as it was"
    assert not list(own_tmp.glob(f"{TMP_PREFIX}*"))


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_without_the_variable_nothing_is_cached(backend, tmp_path, own_tmp, monkeypatch):
    unused = tmp_path / "cache"
    unused.mkdir()
    monkeypatch.delenv(EXPORT_CACHE_ENV, raising=False)
    from_cache, _ = _output_and_release(_prepare(backend))
    assert from_cache is False
    assert not _files(unused)
    assert not list(own_tmp.glob(f"{TMP_PREFIX}*")), "the private export was not removed on release"


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_a_half_written_artifact_is_ignored(backend, cache):
    entry = Path(ARTIFACTS[backend]).parts[0]
    partial = cache / f"{STAGING_PREFIX}{entry}-killed" / Path(*Path(ARTIFACTS[backend]).parts[1:])
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"\x08\x07cut short")  # what a process killed mid-export leaves
    from_cache, _ = _output_and_release(_prepare(backend))
    assert from_cache is False
    assert (cache / ARTIFACTS[backend]).is_file()


def test_the_onnx_export_keeps_its_external_data_and_exporter_in_the_cache(cache):
    from_cache, _ = _output_and_release(_prepare("onnxruntime"))
    runner = _prepare("onnxruntime")
    try:
        assert not from_cache and runner.from_cache
        assert runner.exporter == "dynamo"
        assert (cache / ARTIFACTS["onnxruntime"]).with_suffix(".onnx.data").is_file()
    finally:
        runner.release()


def test_the_cached_openvino_model_keeps_fp32_weights_and_static_shapes(cache):
    _output_and_release(_prepare("openvino"))
    cached = openvino.Core().read_model(cache / ARTIFACTS["openvino"])
    constants = [op for op in cached.get_ordered_ops() if op.get_type_name() == "Constant"]
    assert constants and openvino.Type.f16 not in {op.get_element_type() for op in constants}
    assert openvino.Type.f32 in {op.get_element_type() for op in constants}
    # saved after the reshape: the graph the first process compiled
    assert all(port.get_partial_shape().is_static for port in cached.inputs)


def test_an_empty_variable_means_no_cache(monkeypatch, tmp_path):
    monkeypatch.setenv(EXPORT_CACHE_ENV, "")
    assert configuration_cache() is None
    monkeypatch.setenv(EXPORT_CACHE_ENV, str(tmp_path))
    assert configuration_cache() == tmp_path


def test_publish_replaces_in_one_step_and_leaves_nothing_when_writing_fails(tmp_path):
    destination = tmp_path / "entry"
    with pytest.raises(BenchmarkFailure), publish(destination) as staged:
        staged.mkdir()
        (staged / "model").write_text("half")
        assert staged.parent == tmp_path and staged.name.startswith(STAGING_PREFIX)
        raise BenchmarkFailure("export_error", "the exporter failed")
    assert not list(tmp_path.iterdir())

    with publish(destination) as staged:
        staged.write_text("whole")
    assert destination.read_text() == "whole" and list(tmp_path.iterdir()) == [destination]


def test_an_artifact_published_first_by_another_process_is_kept(tmp_path):
    destination = tmp_path / "entry"
    with publish(destination) as staged:
        staged.mkdir()
        (staged / "model").write_text("first")
        with publish(destination) as other:  # a concurrent process finishing first
            other.mkdir()
            (other / "model").write_text("other")
    assert (destination / "model").read_text() == "other"
    assert list(tmp_path.iterdir()) == [destination]

