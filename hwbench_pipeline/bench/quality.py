"""Task accuracy of a trained model at a precision: what a number format costs a model that has learned.

Output agreement with fp32 (the inference scenario's check) says how far a precision moves the numbers; it does
not say whether the answers change. Here a task model trained at fp32 (bench/trained.py) answers the held-out
set of its task once in torch fp32 and once through the target's backend at the precision spec asked for; the
difference of the two accuracies is the precision's cost on that task.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from hwbench_pipeline.bench.precision import CALIBRATION_BATCHES, parse_spec, spec_name
from hwbench_pipeline.bench.scenarios.training.config import EVAL_SAMPLES

#: held-out samples scored, as ONE batch: the same number the training's held-out accuracy is measured on (so
#: the two have the same resolution, 1/32), and one batch because a runner is bound to one input batch (the
#: ONNX and OpenVINO graphs have static shapes) and one backend call is all it needs
QUALITY_SAMPLES = EVAL_SAMPLES


def task_scores(task_model: Any, inputs: dict[str, Any]) -> Any:
    """The ``forward`` a backend runs: a TaskModel's (batch, NUM_CLASSES) class scores."""
    return task_model(inputs)


def task_quality(family: str, preset: str, weights: Path, target: str, spec: str) -> dict:
    """Accuracy of the trained task model at ``weights`` on its held-out set, in torch fp32 and on ``target``
    at precision ``spec``. Raises on any failure (the caller decides what it means for its row).

    Returns ``task``, ``task_samples``, ``task_accuracy`` (on the target at ``spec``), ``task_accuracy_fp32``,
    ``accuracy_drop`` (fp32 minus the target's, a fraction of the samples; negative where the target scored
    higher), ``trained_run_id`` (the training run that wrote the weights) and ``task_precision_ran`` (what the
    backend observed the task model run in)."""
    import torch

    from hwbench_pipeline.bench import models, tasks
    from hwbench_pipeline.bench.backends import load_backend
    from hwbench_pipeline.bench.backends.export_cache import without_cache
    from hwbench_pipeline.bench.hardware import parse_target
    from hwbench_pipeline.bench.trained import load_trained

    task_model, meta = load_trained(weights)
    if (meta.family, meta.preset) != (family, preset):
        raise ValueError(f"{weights} holds a trained {meta.family}/{meta.preset} model, not {family}/{preset}")
    parsed = parse_target(target)
    precision, quantization = parse_spec(spec)
    spec = spec_name(precision, quantization)  # aliases resolved: int8 is int8-dynamic
    config = models.build_config(family, preset)
    # the held-out split at the training's sequence length and seed: samples the training never saw
    batch = tasks.make_task_batch(family, config, QUALITY_SAMPLES, meta.seq_len, seed=meta.seed, split="eval")
    with torch.inference_mode():
        reference = tasks.accuracy(task_scores(task_model, batch.inputs).float(), batch.labels)

    # a static int8 recipe calibrates on training-split batches the training did not step on (it used steps
    # 0..steps-1 and the timed batch at `steps`), never on the scored ones; other recipes take none
    calibration = [tasks.make_task_batch(family, config, QUALITY_SAMPLES, meta.seq_len, seed=meta.seed,
                                         step=meta.steps + 1 + i).inputs
                   for i in range(CALIBRATION_BATCHES)] if quantization == "static" else []
    backend = load_backend(parsed.backend)
    # a copy: int8 recipes quantize the module they are given in place, and this one is the fp32 reference.
    # No export cache: it holds the configuration's own model, not this one.
    with without_cache():
        runner = backend.prepare(copy.deepcopy(task_model), batch.inputs, task_scores, parsed.torch_device, spec,
                                 calibration=calibration)
        try:
            scores = runner.output()
            ran = runner.precision  # observed by the backend, as for the configuration's own model
        finally:
            runner.release()
    if tuple(scores.shape) != (QUALITY_SAMPLES, tasks.NUM_CLASSES):
        raise ValueError(f"{target} at {spec} returned scores of shape {tuple(scores.shape)}, expected "
                         f"{(QUALITY_SAMPLES, tasks.NUM_CLASSES)}")
    measured = tasks.accuracy(scores, batch.labels)
    return {
        "task": meta.task,
        "task_samples": QUALITY_SAMPLES,
        "task_accuracy": measured,
        "task_accuracy_fp32": reference,
        "accuracy_drop": reference - measured,
        "trained_run_id": meta.run_id,
        "task_precision_ran": ran,
    }
