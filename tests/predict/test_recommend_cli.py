"""``hwbench recommend`` on a warehouse holding the fixture: answers, and bad input answered clearly."""

import json

import pytest
from fixture_data import seed_warehouse

from hwbench_pipeline.bench.models import build_config
from hwbench_pipeline.cli import main


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, measurements, hardware, predictor):
    path = tmp_path_factory.mktemp("warehouse")
    seed_warehouse(path, measurements, hardware)
    predictor.save(path / "predictor")
    return path


@pytest.fixture(scope="module")
def empty_dir(tmp_path_factory, measurements, hardware):
    """Peaks measured, nothing else: no results, no predictor."""
    path = tmp_path_factory.mktemp("peaks_only")
    seed_warehouse(path, measurements.clear(), hardware).refresh_catalog()
    return path


def _run(capsys, *args):
    code = main(["recommend", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_recommends_with_labelled_figures(capsys, data_dir):
    code, out, _ = _run(capsys, "--model", "bert/small", "--data-dir", str(data_dir), "--objective", "throughput",
                        "--format", "json")
    answer = json.loads(out)
    assert code == 0 and answer["pick"]["source"] in ("measured", "predicted", "roofline")
    assert {r["source"] for r in answer["ranked"]} >= {"measured"}
    assert all(r["confidence"] in ("high", "medium", "low") for r in answer["ranked"])
    assert answer["memory"] and answer["model"] == "bert/small"


def test_nobody_meets_the_constraints(capsys, data_dir):
    code, out, _ = _run(capsys, "--model", "bert/small", "--data-dir", str(data_dir), "--max-latency-ms", "0.001")
    assert code == 1
    assert "no target meets these constraints" in out and "nearest miss:" in out and "0.001 ms" in out


def test_model_with_no_data_gets_a_low_confidence_roofline_estimate(capsys, empty_dir):
    code, out, _ = _run(capsys, "--model", "llama/base", "--data-dir", str(empty_dir), "--format", "json")
    answer = json.loads(out)
    assert code == 0
    assert {r["source"] for r in answer["ranked"]} == {"roofline"}
    assert {r["confidence"] for r in answer["ranked"]} == {"low"}
    assert any("roofline estimate" in note for note in answer["notes"])


def test_a_model_config_file_works_like_a_catalog_model(capsys, data_dir, tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps(build_config("bert", "small").to_dict()))
    code, out, _ = _run(capsys, "--config", str(config), "--data-dir", str(data_dir), "--format", "json")
    answer = json.loads(out)
    assert code == 0 and answer["model"] == str(config)
    assert {r["source"] for r in answer["ranked"]} <= {"predicted", "roofline"}  # never "measured": not the catalog's


@pytest.mark.parametrize("model", ["roberta/tiny", "mamba2/tiny"])
def test_any_architecture_of_transformers_gets_an_answer(capsys, data_dir, model):
    code, out, _ = _run(capsys, "--model", model, "--data-dir", str(data_dir), "--format", "json")
    answer = json.loads(out)
    assert code == 0 and answer["model"] == model and answer["ranked"]
    assert {r["source"] for r in answer["ranked"]} <= {"predicted", "roofline"}
    assert all(r["latency_ms"] > 0 for r in answer["ranked"])


@pytest.mark.parametrize("content, expected", [
    ('{"do_lower_case": true, "model_max_length": 512}', 'a transformers config needs a "model_type" string'),
    ("[1, 2, 3]", 'a transformers config needs a "model_type" string'),
    ("{not json", "not a readable JSON config"),
    ('{"model_type": "gpt9", "hidden_size": 64}', "model_type 'gpt9' is not an architecture transformers"),
    ('{"model_type": "bert", "hidden_size": 30, "num_attention_heads": 4}', "a bert config that does not build"),
    (None, "no such file"),
])
def test_a_file_that_is_not_a_model_config_is_one_clear_line(capsys, data_dir, tmp_path, content, expected):
    path = tmp_path / "config.json"
    if content is not None:
        path.write_text(content)
    code, out, err = _run(capsys, "--config", str(path), "--data-dir", str(data_dir))
    assert code == 2 and not out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], err


@pytest.mark.parametrize("args, expected", [
    (["--model", "gpt9"], "model_type 'gpt9' is not an architecture transformers"),
    (["--model", "bert/huge"], "unknown preset 'huge'"),
    (["--model", "bert", "--objective", "cost"], "needs a price per hour for at least one target"),
    (["--model", "bert", "--targets", "cuda3-torch"], "no measured peaks for target(s) cuda3-torch"),
    (["--model", "bert", "--batch", "0"], "--batch must be a comma-separated list of positive values"),
    (["--model", "bert", "--prices", "/nonexistent/prices.yaml"], "price file /nonexistent/prices.yaml does not exist"),
])
def test_bad_arguments_are_one_clear_line(capsys, data_dir, args, expected):
    code, _, err = _run(capsys, *args, "--data-dir", str(data_dir))
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and expected in lines[0], err


def test_no_peaks_at_all_is_a_clear_error(capsys, tmp_path):
    code, _, err = _run(capsys, "--model", "bert", "--data-dir", str(tmp_path / "nothing"))
    assert code == 2 and "no hardware targets with measured peaks" in err
