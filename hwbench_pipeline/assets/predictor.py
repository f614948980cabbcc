"""performance_predictor: XGBoost latency and memory models, evaluated on data they have not seen."""

import dagster as dg

from hwbench_pipeline.assets.hardware import hardware_targets
from hwbench_pipeline.assets.tables import inference_results
from hwbench_pipeline.predict import data
from hwbench_pipeline.predict.features import MissingHardwareError
from hwbench_pipeline.predict.predictor import NotEnoughDataError, train
from hwbench_pipeline.resources.warehouse import WarehouseResource


def _pct(value) -> str:
    return "n/a" if value is None else f"{value * 100:.1f} %"


def evaluation_markdown(schema: dict) -> str:
    """The held-out evaluation as a table: predictor beside the roofline-only baseline, per split."""
    lines = ["| split | held out | rows | model | MAPE | median error | within ±10 % | within ±20 % | "
             "90 % interval coverage |", "|---|---|---:|---|---:|---:|---:|---:|---:|"]
    for method, result in schema.get("evaluations", {}).get("splits", {}).items():
        held = ", ".join(result["held_out"]) if len(result["held_out"]) <= 4 else f"{result['n_groups']} groups"
        for who in ("predictor", "roofline_baseline"):
            m = result[who]
            lines.append(f"| {method} | {held} | {m['n']} | {who.replace('_', ' ')} | {_pct(m['mape'])} | "
                         f"{_pct(m['median_ape'])} | {_pct(m['within_10pct'])} | {_pct(m['within_20pct'])} | "
                         f"{_pct(m['coverage'])} |")
    by_mode = (schema.get("evaluation") or {}).get("by_mode") or {}
    if len(by_mode) > 1:
        lines += ["", "| mode, architectures held out | rows | MAPE | within ±10 % | 90 % interval coverage |",
                  "|---|---:|---:|---:|---:|"]
        lines += [f"| {mode} | {m['n']} | {_pct(m['mape'])} | {_pct(m['within_10pct'])} | {_pct(m['coverage'])} |"
                  for mode, m in by_mode.items()]
    recs = schema.get("evaluations", {}).get("recommendations", {})
    if recs:
        lines += ["", "| recommendations on held-out architectures | objective | decisions "
                  "| picked the measured optimum | mean regret |", "|---|---|---:|---:|---:|"]
        for who, objectives in recs.items():
            for objective, r in objectives.items():
                lines.append(f"| {who.replace('_', ' ')} | {objective} | {r['decisions']} | "
                             f"{_pct(r['picked_optimum'])} | {_pct(r['mean_regret'])} |")
    return "\n".join(lines)


@dg.asset(deps=[inference_results, hardware_targets], group_name="predict", pool="hwbench_warehouse")
def performance_predictor(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Predicts median latency (and throughput from it) and peak memory from the model's shape and counted
    FLOPs, the workload and the target's measured peaks, with 90 % intervals; falls back to the roofline where
    data are too few. Its held-out error (whole architectures, a size preset, a batch or sequence range left out)
    is in the metadata beside the roofline-only baseline: read it before trusting a prediction."""
    inputs = data.load(warehouse.warehouse())
    try:
        schema = train(inputs.results, inputs.models, inputs.targets, warehouse.predictor_dir)
    except (NotEnoughDataError, MissingHardwareError) as exc:
        raise dg.Failure(str(exc)) from exc
    evaluation = schema["evaluation"]
    metadata = {
        "model_path": dg.MetadataValue.path(str(warehouse.predictor_dir / schema["model_file"])),
        "schema_path": dg.MetadataValue.path(str(warehouse.predictor_dir / "latency_model.schema.json")),
        "training_rows": schema["n_rows"],
        "training_architectures": schema["n_architectures"],
        "training_fingerprint": schema["training_fingerprint"],
        "usable": dg.MetadataValue.bool(schema["usable"]),
        "evaluation_method": evaluation["method"],
        "held_out_architectures": evaluation["n_groups"],
        "evaluation": dg.MetadataValue.md(evaluation_markdown(schema)),
    }
    for name in ("mape", "median_ape", "within_10pct", "within_20pct", "coverage", "baseline_mape"):
        if evaluation.get(name) is not None:
            metadata[f"held_out_{name}"] = dg.MetadataValue.float(round(evaluation[name], 4))
    for objective, r in schema.get("evaluations", {}).get("recommendations", {}).get("predictor", {}).items():
        metadata[f"recommendation_{objective}_picked_optimum"] = dg.MetadataValue.float(round(r["picked_optimum"], 4))
        metadata[f"recommendation_{objective}_mean_regret"] = dg.MetadataValue.float(round(r["mean_regret"], 4))
    for mode, figures in (evaluation.get("by_mode") or {}).items():
        if figures.get("mape") is not None:
            metadata[f"held_out_mape_{mode}"] = dg.MetadataValue.float(round(figures["mape"], 4))
    for source, figures in (evaluation.get("estimators") or {}).items():
        if figures.get("mape") is not None:
            metadata[f"held_out_mape_when_{source}"] = dg.MetadataValue.float(round(figures["mape"], 4))
    if schema.get("unseen_architectures_from_roofline"):
        message = (f"on architectures it was not trained on, the roofline baseline (held-out MAPE "
                   f"{_pct(evaluation['baseline_mape'])}) beats the boosters ({_pct(evaluation['mape'])}): "
                   "questions about those architectures are answered by the roofline")
        metadata["unseen_architectures_answered_by"] = dg.MetadataValue.text(f"roofline: {message}")
        context.log.warning(message)
    else:
        metadata["unseen_architectures_answered_by"] = dg.MetadataValue.text("predictor")
    if not schema["usable"]:
        context.log.warning(f"only {schema['n_rows']} rows of {schema['n_architectures']} architectures: every "
                            "prediction will come from the roofline fallback until more results land")
    context.log.info(f"predictor: {schema['n_rows']} rows, held-out MAPE {evaluation['mape']}")
    return dg.MaterializeResult(metadata=metadata)
