"""regression_report: this run against the previous one, per configuration (Markdown and HTML)."""

import json

import dagster as dg

from hwbench_pipeline.assets.predictor import performance_predictor
from hwbench_pipeline.assets.recommendations import hardware_recommendations
from hwbench_pipeline.assets.tables import inference_results
from hwbench_pipeline.report.render import render_regression_report
from hwbench_pipeline.resources.settings import HwbenchSettings


@dg.asset(deps=[inference_results, hardware_recommendations, performance_predictor], group_name="reports",
          pool="hwbench_warehouse")
def regression_report(context: dg.AssetExecutionContext, settings: HwbenchSettings) -> dg.MaterializeResult:
    """Every configuration's newest run against its previous run (median change and Mann–Whitney U on the raw
    samples), the failures, the recommendations and the predictor's held-out error."""
    warehouse = settings.warehouse()
    schema_path = settings.predictor_dir / "latency_model.schema.json"
    predictor = json.loads(schema_path.read_text()) if schema_path.exists() else None
    report = render_regression_report(
        warehouse.read("inference_results"),
        warehouse.read("failures", latest=True),
        warehouse.read_newest_run("recommendations"),
        predictor,
        settings.reports_dir,
    )
    context.log.info(f"report: {report.html}")
    return dg.MaterializeResult(metadata={
        "html": dg.MetadataValue.path(str(report.html)),
        "markdown": dg.MetadataValue.path(str(report.markdown)),
        "configurations": report.n_configs,
        "failures": report.n_failures,
        **{f"verdict_{k}": v for k, v in sorted(report.verdicts.items())},
        "preview": dg.MetadataValue.md(report.markdown.read_text()[:20000]),
    })
