"""interleaved_comparisons: the profile's comparisons (two targets, two precisions) measured A B A B by fresh
processes on this host and tested pair by pair; stored in the comparisons table."""

from datetime import UTC, datetime

import dagster as dg

from hwbench_pipeline.assets.checks import check_spec, stored_file_check
from hwbench_pipeline.bench import hardware
from hwbench_pipeline.bench.compare import comparison_row, run_interleaved
from hwbench_pipeline.paths import host_lock_dir
from hwbench_pipeline.resources.ray import RayResource
from hwbench_pipeline.resources.settings import HwbenchSettings
from hwbench_pipeline.resources.warehouse import WarehouseResource
from hwbench_pipeline.warehouse.validation import comparisons_suite

#: the profile's comparisons; the regression report's checks against a baseline build have their own partition
COMPARISONS_PARTITION = "profile"


@dg.asset(group_name="comparisons", pool="hwbench_warehouse",
          check_specs=[check_spec("comparisons", "interleaved_comparisons",
                                  "One row per comparison of the profile measured on this host, with an allowed "
                                  "verdict, no more pairs compared than asked for, a p-value in [0, 1] and a "
                                  "positive ratio.")])
def interleaved_comparisons(context: dg.AssetExecutionContext, settings: HwbenchSettings,
                            warehouse: WarehouseResource, ray: RayResource):
    """Each comparison of the profile's ``comparisons:`` section measured interleaved: one fresh process of A,
    then one of B, then B, A, … in the same window of this host, so a slow stretch of the host moves both sides;
    the verdict (slower, faster, same, inconclusive) comes from the pairs' ratios (an order-statistic interval
    and a Wilcoxon signed-rank test), pairs the host disturbed left out. A comparison whose target is not on
    this host is skipped and logged: its sides could not be interleaved."""
    profile = settings.load_profile()
    here = {t.key for t in hardware.detect_targets()}
    store = warehouse.warehouse()
    rows = []
    for i, spec in enumerate(profile.comparisons, start=1):
        absent = sorted(set(spec.targets) - here)
        what = f"{spec.model}/{spec.preset} bs={spec.batch_size} seq={spec.seq_len}: {spec.labels[0]} against " \
               f"{spec.labels[1]}"
        if absent:
            context.log.warning(f"[{i}/{len(profile.comparisons)}] {what}: skipped, {', '.join(absent)} is not on "
                                "this host (interleaving needs both sides here)")
            continue

        def on_pair(n: int, ra: dict, rb: dict, what: str = what, spec=spec) -> None:
            context.log.info(f"{what}: pair {n}/{spec.pairs}: {ra['p50_ms']:.3f} ms, {rb['p50_ms']:.3f} ms")

        started = datetime.now(UTC)
        result = run_interleaved(spec.configs(profile.threads), spec.labels, spec.pairs, context.run.run_id,
                                 lock_dir=host_lock_dir(), threshold=spec.threshold,
                                 timeout_s=ray.timeout_s or profile.timeout_s, on_pair=on_pair,
                                 log=context.log.info, memory_limit_mb=profile.memory_limit_mb)
        row = comparison_row(result, run_id=context.run.run_id, started_at=started, purpose="comparison",
                             pairs_asked=spec.pairs)
        (context.log.warning if row["verdict"] == "failed" else context.log.info)(
            f"[{i}/{len(profile.comparisons)}] {what}: {row['sentence']}")
        rows.append(row)
    stored = (store.write("comparisons", rows, run_id=context.run.run_id, partition=COMPARISONS_PARTITION)
              if rows else None)
    check = stored_file_check(stored, "comparisons", comparisons_suite(), required=bool(rows))
    yield dg.MaterializeResult(metadata={
        "comparisons": len(rows),
        "skipped": len(profile.comparisons) - len(rows),
        "verdicts": dg.MetadataValue.md("\n".join(f"- {r['label_a']} vs {r['label_b']} ({r['family']}/"
                                                  f"{r['preset']}): {r['sentence']}" for r in rows) or "none"),
    }, check_results=[check])
