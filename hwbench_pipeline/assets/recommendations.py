"""hardware_recommendations: per model, the best target x batch x precision for each objective."""

import dagster as dg

from hwbench_pipeline.assets.checks import check_spec, stored_table_check
from hwbench_pipeline.assets.predictor import performance_predictor
from hwbench_pipeline.assets.tables import inference_results
from hwbench_pipeline.bench.profiles import effective_seq_len
from hwbench_pipeline.predict import data
from hwbench_pipeline.predict.predictor import Predictor
from hwbench_pipeline.predict.prices import PriceFileError, load_prices, prices_path
from hwbench_pipeline.predict.recommender import Constraints, NoCandidatesError, advise, recommendation_row
from hwbench_pipeline.predict.shapes import FlopCounter, ModelSpec
from hwbench_pipeline.resources.settings import HwbenchSettings
from hwbench_pipeline.resources.warehouse import WarehouseResource
from hwbench_pipeline.warehouse.validation import recommendations_suite


@dg.asset(deps=[inference_results, performance_predictor], group_name="predict", pool="hwbench_warehouse",
          check_specs=[check_spec("recommendations", "hardware_recommendations",
                                  "Each model and objective has one recommendation with a positive figure and a "
                                  "named source.")])
def hardware_recommendations(context: dg.AssetExecutionContext, settings: HwbenchSettings,
                             warehouse: WarehouseResource) -> dg.MaterializeResult:
    """For every model of the profile: the target, batch and precision with the lowest latency, the highest
    throughput and (when prices are set) the lowest cost per million samples, among the profile's batches and
    precisions on every known target. Measured figures where they exist, predictions otherwise (labelled);
    configurations known to fail are never picked. Memory: the largest batch that fits the host."""
    store = warehouse.warehouse()
    inputs = data.load(store)
    if not inputs.results.height:
        raise dg.Failure("no measured results to recommend from; materialize inference_runs first")
    try:
        prices = load_prices(prices_path())
    except PriceFileError as exc:
        raise dg.Failure(str(exc)) from exc
    profile = settings.load_profile()
    predictor = Predictor.load(warehouse.predictor_dir)
    counter = FlopCounter.from_results(inputs.results, warehouse.predictor_dir / "flops_cache.json")
    priced = any(prices.per_hour(t) is not None for t in inputs.targets["target"].to_list())
    objectives = ("latency", "throughput", "cost") if priced else ("latency", "throughput")
    threads = {t: profile.threads for t in inputs.targets["target"].to_list()}
    run_id = context.run.run_id
    rows, unanswered = [], []
    for family in profile.families:
        for preset in profile.presets:
            spec = ModelSpec(family, preset)
            try:
                advice = advise(spec, seq_len=effective_seq_len(family, preset, profile.seq_lens[0]),
                                mode="inference", objectives=objectives, constraints=Constraints(),
                                targets=inputs.targets, results=inputs.results, failures=inputs.failures,
                                predictor=predictor, counter=counter, prices=prices,
                                batches=profile.batch_sizes, precisions=profile.precisions, threads=threads,
                                models=inputs.models, distributed=inputs.distributed)
            except NoCandidatesError as exc:
                unanswered.append(f"{spec.label}: {exc}")
                continue
            for objective in objectives:
                row = recommendation_row(advice, objective, run_id)
                if row is None:
                    unanswered.append(f"{spec.label} {objective}: no candidate fits in memory")
                else:
                    rows.append(row)
    if not rows:
        raise dg.Failure("no model has a recommendation: " + "; ".join(unanswered[:5]))
    path = store.write("recommendations", rows, run_id=run_id)
    table = ["| model | objective | target | batch | precision | value | source | confidence |",
             "|---|---|---|---:|---|---:|---|---|"]
    table += [f"| {r['family']}/{r['preset']} | {r['objective']} | {r['target']} | {r['batch_size']} | "
              f"{r['precision']} | {r['value']:.4g} {r['unit']} | {r['source']} | {r['confidence']} |" for r in rows]
    check = stored_table_check(store, "recommendations", recommendations_suite(), run_id, "all", required=True)
    evaluation = predictor.schema.get("evaluations", {}).get("recommendations", {}).get("predictor", {})
    metadata = {
        "models": len({(r["family"], r["preset"]) for r in rows}),
        "from_predictions": sum(r["source"] != "measured" for r in rows),
        "path": dg.MetadataValue.path(str(path)),
        "recommendations": dg.MetadataValue.md("\n".join(table)),
        "prices": f"{prices.path}" + ("" if priced else " (no price set: no cost objective)"),
        "unanswered": dg.MetadataValue.md("\n".join(f"- {u}" for u in unanswered) or "none"),
    }
    for objective, r in evaluation.items():
        metadata[f"held_out_{objective}_picked_optimum"] = dg.MetadataValue.float(round(r["picked_optimum"], 4))
        metadata[f"held_out_{objective}_mean_regret"] = dg.MetadataValue.float(round(r["mean_regret"], 4))
    context.log.info(f"recommendations: {len(rows)} rows, {len(unanswered)} unanswered")
    return dg.MaterializeResult(check_results=[check], metadata=metadata)

