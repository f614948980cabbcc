"""model_catalog: every family × preset, with parameters counted on the built model."""

import dagster as dg

from hwbench_pipeline.bench import models
from hwbench_pipeline.resources.settings import HwbenchSettings
from hwbench_pipeline.resources.warehouse import WarehouseResource


def _markdown_table(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join("" if r.get(c) is None else f"{r[c]:,}" if isinstance(r[c], int) else str(r[c])
                                for c in columns) + " |" for r in rows]
    return "\n".join(lines)


@dg.asset(group_name="catalog", pool="hwbench_warehouse")
def model_catalog(context: dg.AssetExecutionContext, settings: HwbenchSettings,
                  warehouse: WarehouseResource) -> dg.MaterializeResult:
    """The 13 model families at each size preset. Parameter counts come from building each model on torch's
    meta device (exact counts, no memory), so even the published 'full' sizes are counted, not quoted."""
    profile = settings.load_profile()
    rows = []
    for family in models.FAMILIES:
        for preset in models.PRESETS:
            row = models.describe(family, preset)
            row["in_profile"] = family in profile.families and preset in profile.presets
            rows.append({"run_id": context.run.run_id, **row})
    # the profile's other architectures, config files and checkpoints, at the profile's presets
    for family in (f for f in profile.families if not models.is_curated(f)):
        for preset in profile.presets:
            rows.append({"run_id": context.run.run_id, **models.describe(family, preset), "in_profile": True})
    path = warehouse.warehouse().write("models", rows, run_id=context.run.run_id)
    context.log.info(f"catalog: {len(rows)} family × preset rows written to {path}")
    return dg.MaterializeResult(metadata={
        "families": len(models.FAMILIES),
        "rows": len(rows),
        "in_profile": sum(r["in_profile"] for r in rows),
        "path": dg.MetadataValue.path(str(path)),
        "catalog": dg.MetadataValue.md(_markdown_table(
            rows, ["family", "preset", "category", "modality", "params", "layers", "hidden_size", "heads"])),
    })
