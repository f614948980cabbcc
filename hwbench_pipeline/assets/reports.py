"""regression_report (each configuration's newest run against its history; writes the regressions table) and
comparison_report (targets side by side, charts, HTML/Markdown/PDF)."""

import json
import os

import dagster as dg
from pydantic import Field

from hwbench_pipeline.assets.checks import check_spec, stored_file_check
from hwbench_pipeline.assets.comparisons import interleaved_comparisons
from hwbench_pipeline.assets.distributed import distributed_runs
from hwbench_pipeline.assets.generation import generation_runs
from hwbench_pipeline.assets.predictions import predictions
from hwbench_pipeline.assets.predictor import performance_predictor
from hwbench_pipeline.assets.recommendations import hardware_recommendations
from hwbench_pipeline.assets.tables import inference_results
from hwbench_pipeline.assets.training import training_runs
from hwbench_pipeline.bench.launchers.build import BuildUnusableError
from hwbench_pipeline.paths import host_lock_dir
from hwbench_pipeline.report.comparison import render_comparison_report, report_predictions
from hwbench_pipeline.report.regression_checks import BASELINE_PYTHON_ENV, CheckSettings, check_findings
from hwbench_pipeline.report.regressions import detect_regressions, finding_rows
from hwbench_pipeline.report.render import render_regression_report
from hwbench_pipeline.resources.warehouse import WarehouseResource
from hwbench_pipeline.warehouse.validation import comparisons_suite, regressions_suite

#: the regressions table is not partitioned by target: one file per report run covers every target
REGRESSIONS_PARTITION = "all"


#: the regression report's interleaved checks against a baseline build, apart from the profile's comparisons
CHECKS_PARTITION = "regression_checks"


class RegressionReportConfig(dg.Config):
    """Where a baseline build is given (here or in $HWBENCH_BASELINE_PYTHON), each configuration the history
    flags is measured again interleaved against that build before the report is written."""

    baseline_python: str = Field(default="", description="the baseline build's interpreter (another checkout's "
                                                          "virtual environment); empty: no checks")
    pairs: int = Field(default=CheckSettings.pairs, gt=0, description="interleaved pairs per check (a verdict "
                                                                      "needs 6 undisturbed ones)")
    seconds_per_process: float = Field(default=CheckSettings.seconds_per_process, gt=0)
    max_checks: int = Field(default=CheckSettings.max_checks, ge=0,
                            description="the flagged configurations with the largest changes checked")


@dg.asset(deps=[inference_results, training_runs, hardware_recommendations, performance_predictor],
          group_name="reports", pool="hwbench_warehouse",
          check_specs=[check_spec("regressions", "regression_report",
                                  "One finding per scenario, configuration and metric, with an allowed verdict and "
                                  "a p-value in [0, 1]."),
                       check_spec("comparisons", "regression_report",
                                  "The interleaved checks against a baseline build (when one is given): an allowed "
                                  "verdict, no more pairs than asked for, a p-value in [0, 1].")])
def regression_report(context: dg.AssetExecutionContext, config: RegressionReportConfig,
                      warehouse: WarehouseResource):
    """Every inference and training configuration's newest run against its history (change points over the
    run medians, Mann–Whitney U on the raw samples, a minimum magnitude from the history's spread), stored in
    the regressions table; the report shows the inference findings, the failures, the recommendations and
    the predictor's held-out error."""
    store = warehouse.warehouse()
    history = store.read("inference_results")
    inference = detect_regressions(history)
    training = detect_regressions(store.read("training_results"), scenario="training")
    findings = inference + training
    run_id = context.run.run_id
    stored = (store.write("regressions", finding_rows(findings), run_id=run_id, partition=REGRESSIONS_PARTITION)
              if findings else None)
    check = stored_file_check(stored, "regressions", regressions_suite(), required=bool(findings))
    rows: list[dict] = []
    unusable = None
    baseline_python = config.baseline_python or os.environ.get(BASELINE_PYTHON_ENV, "")
    if baseline_python:
        try:
            rows = check_findings(findings, baseline_python, run_id=run_id, lock_dir=host_lock_dir(),
                                  settings=CheckSettings(pairs=config.pairs,
                                                         seconds_per_process=config.seconds_per_process,
                                                         max_checks=config.max_checks),
                                  log=context.log.info)
        except BuildUnusableError as exc:  # the report is still written; the check says why nothing was checked
            unusable = f"the baseline build cannot be used: {exc}"
            context.log.warning(unusable)
    checked = store.write("comparisons", rows, run_id=run_id, partition=CHECKS_PARTITION) if rows else None
    interleaved_check = (stored_file_check(checked, "comparisons", comparisons_suite(), required=False)
                         if unusable is None else dg.AssetCheckResult(
                             check_name="comparisons_suite", passed=False, severity=dg.AssetCheckSeverity.WARN,
                             metadata={"summary": unusable}))
    schema_path = warehouse.predictor_dir / "latency_model.schema.json"
    predictor = json.loads(schema_path.read_text()) if schema_path.exists() else None
    # the interleaved checks of this run and earlier ones, beside the changes the history flags
    comparisons = store.read("comparisons") if store.files("comparisons") else None
    report = render_regression_report(
        history,
        store.read("failures", latest=True),
        store.read_newest_run("recommendations"),
        predictor,
        warehouse.reports_dir,
        findings=inference,
        comparisons=comparisons,
    )
    flagged = [f for f in findings if f.verdict in ("slower", "faster")]
    for f in flagged:
        context.log.warning(f"{f.scenario} {f.label}: {f.verdict} by {f.change:+.1%} (p={f.p_value}); "
                            f"first suspicious run {f.first_suspicious_run_id}")
    context.log.info(f"report: {report.html}")
    verdicts: dict[str, int] = {}
    for f in findings:
        verdicts[f"{f.scenario}_{f.verdict}"] = verdicts.get(f"{f.scenario}_{f.verdict}", 0) + 1
    yield dg.MaterializeResult(metadata={
        "html": dg.MetadataValue.path(str(report.html)),
        "markdown": dg.MetadataValue.path(str(report.markdown)),
        "configurations": report.n_configs,
        "failures": report.n_failures,
        "findings": len(findings),
        **{f"verdict_{k}": v for k, v in sorted(verdicts.items())},
        "flagged": dg.MetadataValue.md("\n".join(
            f"- {f.scenario} {f.label}: **{f.verdict}** {f.change:+.1%}" for f in flagged) or "none"),
        "preview": dg.MetadataValue.md(report.markdown.read_text()[:20000]),
        "interleaved_checks": dg.MetadataValue.md("\n".join(f"- {r['family']}/{r['preset']} {r['target_b']}: "
                                                            f"{r['sentence']}" for r in rows) or "none")
        if baseline_python and unusable is None else unusable or "no baseline build given",
    }, check_results=[check, interleaved_check])


@dg.asset(deps=[inference_results, training_runs, distributed_runs, generation_runs, interleaved_comparisons,
                predictions, regression_report],
          group_name="reports", pool="hwbench_warehouse")
def comparison_report(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Targets side by side: latency and throughput against batch, latency distributions, the compatibility
    heat map, history with change points, the roofline, predicted against measured, and the training,
    distributed and generation figures; one self-contained HTML file (works offline), Markdown with PNG charts,
    and a PDF, rendered from templates a user can override."""
    store = warehouse.warehouse()
    report = render_comparison_report(store, warehouse.reports_dir,
                                      predictions=report_predictions(store, warehouse.predictor_dir))
    context.log.info(f"comparison report: {report.html}")
    return dg.MaterializeResult(metadata={
        "html": dg.MetadataValue.path(str(report.html)),
        "markdown": dg.MetadataValue.path(str(report.markdown)),
        "pdf": dg.MetadataValue.path(str(report.pdf)),
        "configurations": report.n_configs,
        "failures": report.n_failures,
        "runs": report.n_runs,
        "charts": report.n_charts,
        "empty_sections": ", ".join(report.empty_sections) or "none",
    })
