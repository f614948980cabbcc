"""Generation rows in the predictor: real tiny decodes on this host become ``prefill`` and ``decode`` rows, their FLOPs
agree with what transformers' generate() executes, and the predictor answers decode questions with a labelled
source. The inference rows beside them are the committed fixture of real measurements."""

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from fixture_data import seed_warehouse
from torch.utils.flop_counter import FlopCounterMode

from hwbench_pipeline.bench import models
from hwbench_pipeline.bench.host_lock import host_measurement_lock
from hwbench_pipeline.bench.scenarios.generation import GENERATION_RULE, GenerationConfig, run_generation_configuration
from hwbench_pipeline.bench.scenarios.generation.inputs import generation_inputs
from hwbench_pipeline.bench.scenarios.generation.measure import reference_generation
from hwbench_pipeline.paths import host_lock_dir
from hwbench_pipeline.predict import data
from hwbench_pipeline.predict.features import query_frame, training_frame, with_shapes
from hwbench_pipeline.predict.generation_modes import with_generation_flops
from hwbench_pipeline.predict.predictor import Predictor
from hwbench_pipeline.predict.shapes import FlopCounter
from hwbench_pipeline.warehouse.storing import store_measurements

RULE = dataclasses.replace(GENERATION_RULE, min_samples=3, max_seconds=0.4, warmup_max_seconds=0.2)
NEW_TOKENS = 6


@pytest.fixture(scope="module")
def warehouse_with_generation(tmp_path_factory, measurements, hardware):
    """The fixture's inference rows and peaks, plus llama/tiny and gpt2/tiny (an uncurated architecture) decoded
    here: two prompts with the default cache, one with a static cache (not learned), t5 (an encoder-decoder, not
    learned)."""
    from hwbench_pipeline.warehouse.validation import generation_suite

    configs = [GenerationConfig(family, "tiny", "cpu-torch", batch_size=1, seq_len=prompt, new_tokens=NEW_TOKENS,
                                threads=1, rule=RULE) for family in ("llama", "gpt2") for prompt in (8, 24)]
    configs += [GenerationConfig("llama", "tiny", "cpu-torch", batch_size=1, seq_len=8, new_tokens=NEW_TOKENS,
                                 threads=1, cache="static", rule=RULE),
                GenerationConfig("t5", "tiny", "cpu-torch", batch_size=1, seq_len=8, new_tokens=NEW_TOKENS,
                                 threads=1, rule=RULE)]
    with host_measurement_lock(host_lock_dir(), log=lambda _: None):
        rows = [run_generation_configuration(cfg, "gen-1") for cfg in configs]
    assert all(r["status"] == "ok" for r in rows), [r.get("message") for r in rows]
    data_dir = tmp_path_factory.mktemp("predictor_generation")
    warehouse = seed_warehouse(data_dir, measurements, hardware)
    stored = store_measurements(warehouse, rows, results_table="generation_results", suite=generation_suite(),
                                scenario="generation", run_id="gen-1", partition="cpu-torch",
                                dagster_run_id="none", profile="test", started=datetime.now(UTC), expected=True,
                                with_samples=False)
    assert len(stored.valid) == len(rows), stored.invalid
    return warehouse, rows


def _counted_generate_flops(family: str, prompt: int, new_tokens: int) -> float:
    model = models.build_generative_model(family, "tiny")
    inputs = generation_inputs(family, models.build_config(family, "tiny"), 1, prompt, seed=0, model=model)
    with FlopCounterMode(display=False) as counter:
        reference_generation(model, inputs, new_tokens)
    return float(counter.get_total_flops())


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_prefill_and_decode_flops_agree_with_what_generate_executes(family):
    prompt, new = 12, 5
    prefill = _counted_generate_flops(family, prompt, 1)
    decode = (_counted_generate_flops(family, prompt, new) - prefill) / (new - 1)
    frame = pl.DataFrame({"family": [family] * 2, "preset": ["tiny"] * 2, "mode": ["prefill", "decode"],
                          "seq_len": [prompt] * 2, "batch_size": [1, 1],
                          "context_len": [float(prompt), float(prompt + (new - 1) / 2)]})
    worked_out = with_generation_flops(with_shapes(frame), FlopCounter())["flops_per_call"].to_list()
    assert worked_out[0] == pytest.approx(prefill, rel=0.01)
    assert worked_out[1] == pytest.approx(decode, rel=0.01)


def test_generation_rows_become_prefill_and_decode_rows_with_their_own_medians(warehouse_with_generation,
                                                                              measurements):
    warehouse, rows = warehouse_with_generation
    results = data.load(warehouse).results
    steps = results.filter(pl.col("mode").is_in(["prefill", "decode"]))
    # every stored generation row with the default cache becomes one of each; the static cache's does not
    assert sorted(steps["cache_implementation"].unique().to_list()) == ["dynamic"]
    dynamic = [r for r in rows if r["cache_implementation"] == "dynamic"]
    assert steps.height == 2 * len(dynamic)
    for row in dynamic:
        mine = steps.filter((pl.col("family") == row["family"]) & (pl.col("seq_len") == row["seq_len"]))
        prefill = mine.filter(pl.col("mode") == "prefill").row(0, named=True)
        decode = mine.filter(pl.col("mode") == "decode").row(0, named=True)
        assert prefill["p50_ms"] == row["ttft_p50_ms"] and prefill["context_len"] == row["seq_len"]
        assert decode["p50_ms"] == row["itl_p50_ms"]
        assert decode["context_len"] == row["seq_len"] + (NEW_TOKENS - 1) / 2
    # the inference rows are the fixture's, untouched
    assert results.filter(pl.col("mode") == "inference").height == \
        measurements.filter(pl.col("status") == "ok").height


def test_only_text_decoders_are_learned_from_generation_rows(warehouse_with_generation, hardware):
    warehouse, _ = warehouse_with_generation
    inputs = data.load(warehouse)
    frame = training_frame(inputs.results, inputs.models, hardware)
    steps = frame.filter(pl.col("mode").is_in(["prefill", "decode"]))
    assert sorted(steps["family"].unique().to_list()) == ["gpt2", "llama"]  # t5 is an encoder-decoder
    assert steps["flops_per_call"].min() > 0
    # a decode step does far less work than the prefill of the same prompt
    llama = steps.filter((pl.col("family") == "llama") & (pl.col("seq_len") == 24))
    by_mode = dict(zip(llama["mode"], llama["flops_per_call"], strict=True))
    assert by_mode["decode"] < by_mode["prefill"] / 5


def test_the_predictor_answers_decode_questions_with_a_labelled_source(warehouse_with_generation, hardware):
    warehouse, _ = warehouse_with_generation
    inputs = data.load(warehouse)
    predictor = Predictor.fit(training_frame(inputs.results, inputs.models, hardware), calibrate_intervals=False)
    assert {"mode=prefill", "mode=decode"} <= set(predictor.names)
    assert "log_context" in predictor.names
    question = {"family": "qwen2", "preset": "tiny", "target": "cpu-torch", "batch_size": 1, "seq_len": 16,
                "precision": "fp32", "threads": 1, "mode": "decode", "new_tokens": 8}
    frame = query_frame(pl.DataFrame([question]), hardware, FlopCounter(), inputs.models)
    assert frame["context_len"].item() == 16 + 7 / 2
    answer = predictor.predict(frame).row(0, named=True)
    # a mode, backend and FLOPs it was trained on: the boosters answer, not the roofline fallback
    assert answer["source"] == "predicted" and answer["confidence"] in ("high", "medium", "low")
    assert answer["latency_ms"] > 0 and answer["latency_low_ms"] <= answer["latency_ms"]


def test_a_decode_question_without_new_tokens_is_refused(hardware):
    question = {"family": "llama", "preset": "tiny", "target": "cpu-torch", "batch_size": 1, "seq_len": 16,
                "precision": "fp32", "threads": 1, "mode": "decode"}
    with pytest.raises(ValueError, match="new_tokens"):
        query_frame(pl.DataFrame([question]), hardware, FlopCounter())


def test_the_held_out_evaluation_reports_each_mode_on_its_own(warehouse_with_generation, hardware, tmp_path):
    from hwbench_pipeline.predict.predictor import train

    warehouse, _ = warehouse_with_generation
    inputs = data.load(warehouse)
    schema = train(inputs.results, inputs.models, hardware, tmp_path)
    by_mode = schema["evaluation"]["by_mode"]
    frame = training_frame(inputs.results, inputs.models, hardware)
    assert set(by_mode) == set(frame["mode"].unique().to_list()) >= {"inference", "prefill", "decode"}
    for mode, figures in by_mode.items():
        assert figures["n"] == frame.filter(pl.col("mode") == mode).height and figures["mape"] >= 0


def test_a_predictor_saved_before_the_context_feature_still_answers(frame, hardware, tmp_path, monkeypatch):
    from hwbench_pipeline.predict import features

    older = [name for name in features.NUMERIC_FEATURES if name != "log_context"]
    with monkeypatch.context() as patch:
        patch.setattr(features, "NUMERIC_FEATURES", older)
        Predictor.fit(frame.head(60), calibrate_intervals=False).save(tmp_path)
    saved = Predictor.load(tmp_path)
    assert "log_context" not in saved.names
    answer = saved.predict(frame.head(5))
    assert (answer["latency_ms"] > 0).all()


@pytest.fixture(scope="module")
def with_saved_predictor(warehouse_with_generation, hardware):
    """The warehouse above with its predictor (prefill and decode learned) saved where the CLI looks for it."""
    from hwbench_pipeline.predict.predictor import train

    warehouse, rows = warehouse_with_generation
    inputs = data.load(warehouse)
    train(inputs.results, inputs.models, inputs.targets, warehouse.data_dir / "predictor")
    return str(warehouse.data_dir), rows


def _recommend(capsys, data_dir: str, *args: str) -> tuple[int, dict]:
    import json

    from hwbench_pipeline.cli import main

    code = main(["recommend", "--mode", "generation", "--data-dir", data_dir, "--json", *args])
    return code, json.loads(capsys.readouterr().out)


def test_recommend_generation_predicts_a_model_nobody_decoded_and_labels_every_figure(capsys, with_saved_predictor):
    data_dir, _ = with_saved_predictor
    code, answer = _recommend(capsys, data_dir, "--model", "qwen2/tiny", "--prompt", "16", "--new-tokens", "6")
    assert code == 0 and answer["pick"] is not None
    candidates = answer["candidates"]
    # every target with a decode loop and peaks x the default batches, each with its runtime's default cache
    assert {(c["target"], c["cache"]) for c in candidates} == {
        ("cpu-torch", "dynamic"), ("cpu-onnxruntime", "past-io"), ("cpu-openvino", "stateful")}
    assert {c["batch_size"] for c in candidates} == {1, 2, 4, 8}
    for c in candidates:
        assert c["source"] in ("predicted", "roofline") and c["tokens_matching_reference"] is None
        assert c["latency_ms"] == pytest.approx(c["ttft_p50_ms"] + 5 * c["itl_p50_ms"])
        assert c["latency_low_ms"] <= c["latency_ms"] <= c["latency_high_ms"]
        assert c["tokens_per_s"] == pytest.approx(c["batch_size"] * 6 / c["latency_ms"] * 1e3)
    # each quotes the held-out error of the generation answers, and claims no more confidence than it supports
    from hwbench_pipeline.predict.generation_predicted import CONFIDENCE_ORDER, held_out_by_mode, supported_confidence

    errors = held_out_by_mode(Predictor.load(Path(data_dir) / "predictor"))
    ceiling = CONFIDENCE_ORDER.index(supported_confidence(errors))
    for c in candidates:
        assert c["held_out_mape"] == pytest.approx(max(errors.values()))
        assert CONFIDENCE_ORDER.index(c["confidence"]) <= ceiling
    assert any("were not measured: their figures are predictions" in n for n in answer["notes"])
    assert any("held-out MAPE" in n and "prefill" in n and "decode" in n for n in answer["notes"])


def test_a_measured_configuration_stays_measured_beside_predicted_ones(capsys, with_saved_predictor):
    data_dir, rows = with_saved_predictor
    (row,) = [r for r in rows
              if r["family"] == "llama" and r["seq_len"] == 8 and r["cache_implementation"] == "dynamic"]
    code, answer = _recommend(capsys, data_dir, "--model", "llama/tiny", "--prompt", "8", "--new-tokens", "6")
    assert code == 0
    measured = [c for c in answer["candidates"] if c["source"] == "measured"]
    assert {(c["target"], c["batch_size"], c["cache"]) for c in measured} == {
        ("cpu-torch", 1, "dynamic"), ("cpu-torch", 1, "static")}
    (dynamic,) = [c for c in measured if c["cache"] == "dynamic"]
    assert dynamic["ttft_p50_ms"] == row["ttft_p50_ms"]
    # the measured configuration is not predicted as well
    assert not [c for c in answer["candidates"] if c["source"] != "measured" and c["target"] == "cpu-torch"
                and c["batch_size"] == 1 and c["cache"] == "dynamic"]


def test_an_encoder_decoder_is_not_predicted_and_the_answer_says_why(capsys, with_saved_predictor):
    data_dir, _ = with_saved_predictor
    code, answer = _recommend(capsys, data_dir, "--model", "t5/tiny", "--prompt", "8", "--new-tokens", "6")
    assert code == 0 and {c["source"] for c in answer["candidates"]} == {"measured"}
    assert any("learns the generation of text decoders only" in n for n in answer["notes"])


def test_only_targets_that_can_decode_the_model_get_questions(hardware):
    from hwbench_pipeline.predict.generation_predicted import decode_loops

    every = {"cpu-torch": "dynamic", "cpu-onnxruntime": "past-io", "cpu-openvino": "stateful"}
    assert {t: cache for t, (cache, _) in decode_loops("llama", "tiny", hardware, 16, 6).items()} == every
    # a recurrent model: the exported runtimes keep one full-attention cache per layer, so torch alone
    assert set(decode_loops("mamba", "tiny", hardware, 16, 6)) == {"cpu-torch"}
    assert decode_loops("llama", "tiny", hardware, 10**6, 6) == {}  # beyond the model's context
    # each target offers only the precisions its decode loop runs
    _, onnx_precisions = decode_loops("llama", "tiny", hardware, 16, 6)["cpu-onnxruntime"]
    assert "int8-static" not in onnx_precisions and "fp32" in onnx_precisions


def test_a_configuration_known_to_fail_is_not_predicted():
    from hwbench_pipeline.predict.generation_advice import without_failed

    when = datetime(2026, 1, 2, tzinfo=UTC)
    predicted = pl.DataFrame({"target": ["cpu-onnxruntime", "cpu-onnxruntime", "cpu-openvino", "cpu-torch"],
                              "batch_size": [1, 2, 1, 1], "precision": ["fp32"] * 4,
                              "cache": ["past-io", "past-io", "stateful", "dynamic"]})
    key = {"family": "llama", "preset": "tiny", "config_hash": "h", "seq_len": 8, "quantization": None,
           "cache_precision": "model", "attention": "sdpa", "threads": 2, "measurement_method": "m", "new_tokens": 6}
    # the input: a failure at this prompt on ONNX Runtime batch 1, and a model-level one on OpenVINO
    failed = pl.DataFrame([{**key, "target": "cpu-onnxruntime", "batch_size": 1, "precision": "fp32",
                            "cache_implementation": "past-io", "failure_class": "runtime_error", "_measured_at": when}])
    model_failures = pl.DataFrame([{**key, "target": "cpu-openvino", "batch_size": 4, "precision": "fp32",
                                    "cache_implementation": "stateful", "failure_class": "export_error",
                                    "_measured_at": when}])
    no_success = failed.head(0)
    kept = without_failed(predicted, failed, no_success, model_failures)
    assert kept.select("target", "batch_size").rows() == [("cpu-onnxruntime", 2), ("cpu-torch", 1)]
    # a success measured after the failure makes the configuration a candidate again
    later = failed.with_columns(_measured_at=pl.lit(datetime(2026, 1, 3, tzinfo=UTC)))
    again = without_failed(predicted, failed, later, model_failures.head(0))
    assert ("cpu-onnxruntime", 1) in again.select("target", "batch_size").rows()


def test_an_unknown_target_is_one_clear_line(capsys, with_saved_predictor):
    from hwbench_pipeline.cli import main

    data_dir, _ = with_saved_predictor
    code = main(["recommend", "--mode", "generation", "--data-dir", data_dir, "--model", "qwen2/tiny", "--prompt",
                 "16", "--new-tokens", "6", "--targets", "cpu-nope"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--targets: no measured peaks or generation rows for cpu-nope" in err[0]


def test_the_default_caches_learned_are_each_backends_own_default():
    from hwbench_pipeline.bench.backends import load_backend
    from hwbench_pipeline.predict.generation_modes import DEFAULT_CACHE_BY_BACKEND

    for backend, cache in DEFAULT_CACHE_BY_BACKEND.items():
        assert load_backend(backend).generation_caches("cpu")[0] == cache


def test_questions_of_several_modes_come_back_in_the_order_asked(hardware):
    asked = pl.DataFrame([
        {"family": "llama", "preset": "tiny", "target": "cpu-torch", "batch_size": 1, "seq_len": seq,
         "precision": "fp32", "threads": 1, "mode": mode, "new_tokens": 6}
        for seq, mode in ((16, "decode"), (16, "inference"), (32, "prefill"), (32, "inference"))])
    frame = query_frame(asked, hardware, FlopCounter())
    assert frame.select("seq_len", "mode").rows() == asked.select("seq_len", "mode").rows()
