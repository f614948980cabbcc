"""torch is timed with the attention users get by default (SDPA where the model supports it), while FLOPs are
counted with eager attention, whose matmuls torch's FLOP counter sees; each row says which attention ran."""

import torch
from torch.overrides import TorchFunctionMode

from hwbench_pipeline.bench import models
from hwbench_pipeline.bench.scenarios.inference import InferenceConfig, count_flops, run_configuration
from hwbench_pipeline.bench.trackers.stats import StoppingRule

RULE = StoppingRule(max_seconds=0.3, warmup_max_seconds=0.2, processes=1, max_processes=1)


class SdpaCalls(TorchFunctionMode):
    """Counts calls of torch's fused attention while active."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is torch.nn.functional.scaled_dot_product_attention:
            self.calls += 1
        return func(*args, **(kwargs or {}))


def _sdpa_calls(model: torch.nn.Module, inputs: dict) -> int:
    with torch.inference_mode(), SdpaCalls() as seen:
        models.forward(model, inputs)
    return seen.calls


def test_the_timed_model_calls_sdpa_where_the_counted_one_runs_eager_matmuls():
    config = models.build_config("bert", "tiny")
    model = models.build_model("bert", "tiny")
    inputs = models.make_inputs("bert", config, 2, 16, model=model)
    assert _sdpa_calls(model, inputs) == 0  # as built: eager, every attention matmul visible to the counter
    assert models.use_default_attention(model) == "sdpa"
    assert _sdpa_calls(model, inputs) == config.num_hidden_layers


def test_a_model_with_a_part_that_lacks_sdpa_keeps_eager_attention():
    # DETR's ResNet backbone has no SDPA path, so transformers' default for the whole model is eager
    model = models.build_model("detr", "tiny")
    assert models.use_default_attention(model) == "eager"
    config = models.build_config("detr", "tiny")
    assert _sdpa_calls(model, models.make_inputs("detr", config, 1, 1, model=model)) == 0


def test_a_torch_row_times_sdpa_and_counts_the_eager_flops():
    cfg = InferenceConfig("bert", "tiny", "cpu-torch", batch_size=2, seq_len=16, threads=1, rule=RULE)
    row = run_configuration(cfg, "attention-test")
    assert row["status"] == "ok", row.get("message")
    assert (row["attention"], row["attention_ran"]) == ("default", "sdpa")
    eager = models.build_model("bert", "tiny")
    inputs = models.make_inputs("bert", models.build_config("bert", "tiny"), 2, 16, model=eager)
    assert row["flops_per_call"] == count_flops(eager, inputs, models.forward)  # the same count, exactly
    assert row["max_rel_diff"] < 1e-4  # SDPA agrees with the eager reference it is checked against


def test_exported_graphs_keep_the_attention_they_were_traced_with():
    assert InferenceConfig("bert", "tiny", "cpu-onnxruntime", 1, 16).attention == "eager"
    assert InferenceConfig("bert", "tiny", "cpu-openvino", 1, 16).attention == "eager"
    assert InferenceConfig("bert", "tiny", "cpu-torch", 1, 16).key_fields()["attention"] == "default"
