"""``hwbench recommend``: which target, batch and precision for one model, under constraints.

    hwbench recommend --model bert/small --max-latency-ms 20
    hwbench recommend --config path/to/config.json --objective throughput --memory-gb 8
    hwbench recommend --model llama --mode training --budget-per-hour 2 --objective cost --prices my_prices.yaml
    hwbench recommend --model llama/tiny --mode generation --max-ttft-ms 50 --min-tokens-per-s 100 --json

Figures are measured where that exact configuration was measured, else predicted (the saved predictor, or
the roofline fallback), and every figure says which. --mode generation ranks the
configurations the generation scenario measured, and predicts the others of a text decoder where a saved predictor
learned generation (predict/generation_advice.py, generation_predicted.py). Reads the warehouse;
writes nothing there.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hwbench_pipeline.bench.precision import spec_name
from hwbench_pipeline.cli import UsageError, make_console
from hwbench_pipeline.commands.argtypes import (
    accuracy_drop,
    non_negative_float,
    positive_float,
    positive_int,
    precision_specs,
)
from hwbench_pipeline.paths import default_data_dir

DEFAULT_BATCHES = (1, 2, 4, 8, 16, 32, 64)
#: options of one mode only: given with another mode they are refused, not ignored
GENERATION_ONLY = ("max_ttft_ms", "min_tokens_per_s", "prompt", "new_tokens")
NOT_FOR_GENERATION = {"config": "--model", "seq": "--prompt", "min_throughput": "--min-tokens-per-s",
                      "budget_per_hour": None, "max_accuracy_drop": None, "prices": None}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("recommend", help="rank target x batch x precision for one model under constraints")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="a curated family or any transformers model type, optionally /PRESET "
                                       "(default: small), or a config.json (at its own size)")
    which.add_argument("--config", help="a transformers config.json of any architecture (at its own size)")
    p.add_argument("--mode", choices=["inference", "training", "generation"], default="inference",
                   help="generation: ranks measured generation configurations, and predicted ones where a saved "
                        "predictor learned generation")
    p.add_argument("--objective", choices=["latency", "throughput", "cost"], default="latency")
    p.add_argument("--seq", type=positive_int, help="sequence length (default: the family's)")
    p.add_argument("--batch", help="comma-separated batch sizes to consider (default "
                                   f"{','.join(map(str, DEFAULT_BATCHES))})")
    p.add_argument("--precision", type=precision_specs,
                   help="comma-separated precisions to consider: fp32, bf16, fp16, int8-dynamic (int8), int8-static "
                        "(default: what each target runs)")
    p.add_argument("--targets", help="comma-separated targets to consider (default: every target with peaks)")
    p.add_argument("--max-latency-ms", type=positive_float)
    p.add_argument("--min-throughput", type=positive_float, help="samples per second")
    p.add_argument("--memory-gb", type=positive_float, help="memory limit (default: each target host's memory)")
    p.add_argument("--budget-per-hour", type=non_negative_float, help="in the price file's currency")
    p.add_argument("--max-accuracy-drop", type=accuracy_drop,
                   help="most task accuracy a precision may lose against fp32, as '1%%' or a fraction (0.01); "
                        "precisions whose drop was not measured for this model are left out. Accuracy is scored on "
                        "32 held-out samples: one sample is 3.1 points, so a bound under that means no drop")
    p.add_argument("--prices", help="price file (default: $HWBENCH_PRICES or the packaged placeholder file)")
    p.add_argument("--data-dir", default=None, help="data directory (default: $HWBENCH_DATA_DIR or data/)")
    p.add_argument("--max-ttft-ms", type=positive_float, help="generation: most time to the first token (p50)")
    p.add_argument("--min-tokens-per-s", type=positive_float,
                   help="generation: fewest tokens/s over whole sequences, prefill included")
    p.add_argument("--prompt", type=positive_int, help="generation: prompt tokens (default: the newest measured)")
    p.add_argument("--new-tokens", type=positive_int,
                   help="generation: new tokens per sequence (default: the newest measured)")
    p.add_argument("--top", type=positive_int, default=10, help="show this many ranked candidates")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.add_argument("--json", dest="format", action="store_const", const="json", help="same as --format json")
    p.set_defaults(func=cmd_recommend)


def _model_spec(args: argparse.Namespace):
    from hwbench_pipeline.bench import models
    from hwbench_pipeline.bench.catalog.sources import ModelSourceError
    from hwbench_pipeline.predict.shapes import NotAModelConfigError, load_hf_config, model_spec_of

    try:
        spec = load_hf_config(Path(args.config)) if args.config else model_spec_of(args.model, "small")
        models.build_config(spec.family, spec.preset)
    except (NotAModelConfigError, ModelSourceError, models.UnknownModelError) as exc:
        raise UsageError(str(exc)) from None
    except ValueError as exc:  # an unknown preset of a model type
        raise UsageError(f"{args.model}: {exc}") from None
    return spec


def _csv(text: str | None, what: str, cast=str) -> tuple | None:
    if not text:
        return None
    try:
        values = tuple(cast(v.strip()) for v in text.split(",") if v.strip())
    except ValueError:
        raise UsageError(f"{what} must be a comma-separated list, got {text!r}") from None
    if not values or (cast is int and any(v < 1 for v in values)):
        raise UsageError(f"{what} must be a comma-separated list of positive values, got {text!r}")
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise UsageError(f"{what} lists {', '.join(map(str, repeated))} more than once, got {text!r}")
    return values


def _predictor(data_dir: Path, inputs, say):
    """The saved predictor; else one fitted now on what the warehouse holds; else None (roofline only)."""
    from hwbench_pipeline.predict.features import training_frame
    from hwbench_pipeline.predict.predictor import MIN_ROWS, SCHEMA_FILE, Predictor

    saved = data_dir / "predictor"
    if (saved / SCHEMA_FILE).exists():
        return Predictor.load(saved)
    if inputs.results.height >= MIN_ROWS and inputs.targets.height:
        say("no saved predictor (materialize performance_predictor); fitting one on the warehouse's rows now")
        return Predictor.fit(training_frame(inputs.results, inputs.models, inputs.targets))
    say("no measurements to learn from: every figure is a roofline estimate (low confidence)")
    return None


def _fmt(value, digits: int = 4) -> str:
    if value is None or value != value:
        return "n/a"
    if value == float("inf"):
        return "∞"
    return f"{value:.{digits}g}"


def cmd_recommend(args: argparse.Namespace) -> int:
    import polars as pl

    from hwbench_pipeline.bench import models
    from hwbench_pipeline.bench.profiles import effective_seq_len
    from hwbench_pipeline.predict import data
    from hwbench_pipeline.predict.prices import PriceFileError, load_prices, prices_path
    from hwbench_pipeline.predict.recommender import OBJECTIVES, Constraints, NoCandidatesError, advise, describe_miss
    from hwbench_pipeline.predict.shapes import FlopCounter
    from hwbench_pipeline.warehouse.store import Warehouse

    if args.mode == "generation":
        return _recommend_generation(args)
    for option in GENERATION_ONLY:
        if getattr(args, option) is not None:
            raise UsageError(f"--{option.replace('_', '-')} belongs to --mode generation")
    spec = _model_spec(args)
    batches = _csv(args.batch, "--batch", int) or DEFAULT_BATCHES
    precisions = tuple(spec_name(*pair) for pair in args.precision) if args.precision else None
    try:
        prices = load_prices(prices_path(args.prices))
    except PriceFileError as exc:
        raise UsageError(str(exc)) from None
    data_dir = Path(args.data_dir or default_data_dir())
    inputs = data.load(Warehouse(data_dir))
    targets = inputs.targets
    if args.targets:
        wanted = set(_csv(args.targets, "--targets"))
        unknown = wanted - set(targets["target"].to_list())
        if unknown:
            raise UsageError(f"no measured peaks for target(s) {', '.join(sorted(unknown))} in {data_dir}; known: "
                             f"{', '.join(targets['target'].to_list()) or 'none'}")
        targets = targets.filter(pl.col("target").is_in(sorted(wanted)))
    if not targets.height:
        raise UsageError(f"no hardware targets with measured peaks in {data_dir}: run 'hwbench run' (or "
                         "materialize hardware_targets) first")
    if args.objective == "cost" and not any(prices.per_hour(t) is not None for t in targets["target"].to_list()):
        raise UsageError(f"--objective cost needs a price per hour for at least one target; none is set in "
                         f"{prices.path} (edit it or pass --prices FILE)")
    seq = effective_seq_len(spec.family, spec.preset, args.seq or models.model_default_seq_len(spec.family))
    constraints = Constraints(args.max_latency_ms, args.min_throughput, args.memory_gb, args.budget_per_hour,
                              args.max_accuracy_drop)
    notes: list[str] = []
    predictor = _predictor(data_dir, inputs, notes.append)
    counter = FlopCounter.from_results(inputs.results, data_dir / "predictor" / "flops_cache.json")
    try:
        advice = advise(spec, seq_len=seq, mode=args.mode, objectives=(args.objective,), constraints=constraints,
                        targets=targets, results=inputs.results, failures=inputs.failures, predictor=predictor,
                        counter=counter, prices=prices, batches=batches, precisions=precisions,
                        models=inputs.models, distributed=inputs.distributed)
    except NoCandidatesError as exc:
        raise UsageError(str(exc)) from None
    ranking = advice.rankings[args.objective]
    column, _, unit = OBJECTIVES[args.objective]
    if args.format == "json":
        out = {
            "model": spec.label, "mode": args.mode, "seq_len": seq, "objective": args.objective,
            "constraints": {} if advice.constraints.describe() == "none" else json.loads(advice.constraints.describe()),
            "pick": ranking.pick, "ranked": ranking.feasible.head(args.top).to_dicts(),
            "nearest_miss": ranking.nearest_miss, "memory": advice.memory.to_dicts(),
            "distributed": advice.distributed, "excluded": advice.excluded, "notes": notes,
            "message": None if ranking.pick else "no target meets these constraints",
        }
        json.dump(out, sys.stdout, indent=2, default=lambda v: None if v != v or v == float("inf") else str(v))
        sys.stdout.write("\n")
        return 0 if ranking.pick else 1
    console = make_console()
    for note in notes:
        console.print(f"[yellow]note[/]: {note}")
    console.print(f"[bold]{spec.label}[/] {args.mode}, sequence {seq}, objective {args.objective}, "
                  f"constraints {advice.constraints.describe()}")
    pick = ranking.pick
    if pick is None:
        console.print("[red]no target meets these constraints[/]")
        if ranking.nearest_miss:
            console.print(f"nearest miss: {describe_miss(ranking.nearest_miss, constraints)}")
    else:
        label = pick["source"] + ("" if pick["source"] == "measured" else
                                  f", {pick['confidence']} confidence, {_held_out(pick)}")
        console.print(f"[green]recommended[/]: {pick['target']} batch {pick['batch_size']} {pick['precision']}: "
                      f"{_fmt(pick[column])} {unit} ({label}); latency {_fmt(pick['latency_ms'])} ms "
                      f"[{_fmt(pick.get('latency_low_ms'))}, {_fmt(pick.get('latency_high_ms'))}], "
                      f"{_fmt(pick['throughput_samples_s'])} samples/s, memory {_fmt(pick.get('memory_mb'))} MiB")
        _print_ranked(console, ranking.feasible.head(args.top))
    if advice.memory.height:
        _print_memory(console, advice.memory)
    if advice.distributed:
        console.print(f"distributed: {advice.distributed}")
    for line in advice.excluded:
        console.print(f"[dim]excluded: {line}[/]")
    if pick is not None and pick["source"] != "measured":
        console.print("[yellow]the pick was not measured[/]: its figures are predictions; measure it with "
                      f"'hwbench bench --model {spec.family} --preset {spec.preset} --target {pick['target']} "
                      f"--batch {pick['batch_size']} --precision {pick['precision']}' before relying on them")
    return 0 if pick else 1


def _print_ranked(console, frame) -> None:
    from rich.table import Table

    table = Table(title="ranked candidates (best first)")
    for col in ("target", "batch", "precision", "latency ms", "90 % interval", "samples/s", "memory MiB",
                "cost / 1M", "accuracy drop", "source", "confidence", "held-out error"):
        table.add_column(col, justify="right")
    for r in frame.iter_rows(named=True):
        drop = r.get("accuracy_drop")
        table.add_row(r["target"], str(r["batch_size"]), r["precision"], _fmt(r["latency_ms"]),
                      f"{_fmt(r.get('latency_low_ms'), 3)}–{_fmt(r.get('latency_high_ms'), 3)}",
                      _fmt(r["throughput_samples_s"]), _fmt(r.get("memory_mb")), _fmt(r.get("cost_per_million")),
                      "unknown" if drop is None else "reference" if r["precision"] == "fp32" and drop == 0
                      else f"{100 * drop:+.1f} pts",
                      r["source"], r["confidence"],
                      "" if r["source"] == "measured" else _pct(r.get("held_out_mape")))
    console.print(table)


def _pct(value) -> str:
    return "not evaluated" if value is None or value != value else f"{value:.0%}"


def _held_out(row: dict) -> str:
    """The answering estimator's own error on architectures held out (docs/predictor.md)."""
    return f"held-out MAPE of the {row['source']} estimator {_pct(row.get('held_out_mape'))}"


def _print_memory(console, memory) -> None:
    from rich.table import Table

    table = Table(title="memory: does it fit, up to which batch")
    for col in ("target", "precision", "limit MiB", "at batch 1 MiB", "fits at batch 1", "largest batch that fits"):
        table.add_column(col, justify="right")
    for r in memory.iter_rows(named=True):
        table.add_row(r["target"], r["precision"], _fmt(r["memory_limit_mb"]), _fmt(r["memory_at_batch_1_mb"]),
                      "yes" if r["fits_at_batch_1"] else "no",
                      str(r["max_batch_that_fits"]) if r["max_batch_that_fits"] is not None else "none")
    console.print(table)


def _recommend_generation(args: argparse.Namespace) -> int:
    """--mode generation: rank what the generation scenario measured for one model, and what a predictor that
    learned generation predicts for the configurations nobody measured."""
    from hwbench_pipeline.predict import generation_advice as advice
    from hwbench_pipeline.warehouse.store import Warehouse

    for option, instead in NOT_FOR_GENERATION.items():
        if getattr(args, option) is not None:
            raise UsageError(f"--{option.replace('_', '-')} does not apply to --mode generation"
                             + (f"; use {instead}" if instead else ""))
    if args.objective not in advice.OBJECTIVES:
        raise UsageError(f"--objective {args.objective} does not apply to --mode generation; use "
                         f"{' or '.join(advice.OBJECTIVES)}")
    data_dir = Path(args.data_dir or default_data_dir())
    results, failures = advice.load_generation(Warehouse(data_dir))
    targets, batches = _csv(args.targets, "--targets"), _csv(args.batch, "--batch", int)
    precisions = tuple(spec_name(*pair) for pair in args.precision) if args.precision else None
    try:
        model = advice.resolve_model(results, args.model)
        spec = _model_spec(args) if model is None else None  # an unknown model is refused here, in its own words
        predict, note = _generation_predictions(data_dir, model or (spec.family, spec.preset), targets, batches,
                                                precisions, results)
        if model is None and predict is None:
            raise UsageError(f"no generation row of {spec.label} in {data_dir} (materialize generation_runs), and "
                             f"none can be predicted: {note}; measured: "
                             f"{', '.join(advice.measured_models(results)) or 'none'}")
        answer = advice.advise_generation(
            results, failures, *(model or (spec.family, spec.preset)), prompt=args.prompt,
            new_tokens=args.new_tokens, objective=args.objective,
            constraints=advice.GenerationConstraints(args.max_ttft_ms, args.min_tokens_per_s, args.max_latency_ms,
                                                     args.memory_gb),
            targets=targets, batches=batches, precisions=precisions, predict=predict, prediction_note=note)
    except advice.GenerationRequestError as exc:
        raise UsageError(str(exc)) from None
    if args.format == "json":
        json.dump(answer.to_json(args.top), sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
        return 0 if answer.pick else 1
    from rich.table import Table

    console = make_console()
    for note in answer.notes:
        console.print(f"[yellow]note[/]: {note}")
    console.print(f"[bold]{answer.headline()}[/]")
    pick = answer.pick
    if pick is None:
        console.print(f"[red]{answer.no_match()[0]}[/]")
        for line in answer.no_match()[1:]:
            console.print(line)
    else:
        measured = pick["source"] == "measured"
        origin = f"measured, run {pick['run_id']}" if measured else \
            f"{pick['source']}, {pick['confidence']} confidence, held-out MAPE of the prefill and decode answers " \
            f"{_pct(pick['held_out_mape'])}"
        interval = "" if measured else f" [{_fmt(pick['latency_low_ms'])}, {_fmt(pick['latency_high_ms'])}]"
        console.print(f"[green]recommended[/]: {advice.configuration(pick)}: TTFT p50 {_fmt(pick['ttft_p50_ms'])} ms, "
                      f"{_fmt(pick['tokens_per_s'])} tokens/s, sequence p50 {_fmt(pick['latency_ms'])} ms{interval} "
                      f"({origin})")
    kinds = "measured" if set(answer.candidates["source"]) <= {"measured"} else "measured and predicted"
    table = Table(title=f"{kinds} candidates (best first)" if pick else f"{kinds} candidates (none meets all)")
    for column in [*advice.TABLE_COLUMNS, *([] if pick else ["misses"])]:
        table.add_column(column, justify="right")
    for row in advice.table_rows(answer.feasible.head(args.top) if pick else answer.candidates.head(args.top),
                                 misses=pick is None):
        table.add_row(*row)
    console.print(table)
    for line in answer.excluded:
        console.print(f"[dim]excluded: {line}[/]")
    if pick is not None and pick["source"] != "measured":
        console.print("[yellow]the pick was not measured[/]: its figures are predictions; measure it with "
                      f"'hwbench bench --scenario generation --model {answer.family} --preset {answer.preset} --target "
                      f"{pick['target']} --batch {pick['batch_size']} --precision {pick['precision']} --prompt "
                      f"{answer.prompt} --new-tokens {answer.new_tokens}' before relying on them")
    return 0 if pick else 1


def _generation_predictions(data_dir: Path, model: tuple[str, str], targets: tuple | None, batches: tuple | None,
                            precisions: tuple | None, results) -> tuple:
    """(a (prompt, new tokens) -> predicted candidates function, a note on the estimator's held-out error), or
    (None, why generation figures of ``model`` cannot be predicted here)."""
    import polars as pl

    from hwbench_pipeline.predict import data
    from hwbench_pipeline.predict import generation_predicted as predicted
    from hwbench_pipeline.predict.predictor import SCHEMA_FILE, Predictor
    from hwbench_pipeline.predict.shapes import FlopCounter
    from hwbench_pipeline.warehouse.store import Warehouse

    family, preset = model
    saved = data_dir / "predictor"
    predictor = Predictor.load(saved) if (saved / SCHEMA_FILE).exists() else None
    why = predicted.predictable_reason(family, predictor)
    if why is not None:
        return None, why
    inputs = data.load(Warehouse(data_dir))
    if targets is not None:
        unknown = set(targets) - set(inputs.targets["target"]) - set(results["target"])
        if unknown:
            raise UsageError(f"--targets: no measured peaks or generation rows for {', '.join(sorted(unknown))} in "
                             f"{data_dir}; known: {', '.join(sorted(set(inputs.targets['target']))) or 'none'}")
    hardware = inputs.targets if targets is None else inputs.targets.filter(pl.col("target").is_in(list(targets)))
    mine = results.filter((pl.col("family") == family) & (pl.col("preset") == preset))
    batches = batches or tuple(sorted(set(mine["batch_size"]))) or predicted.DEFAULT_BATCHES
    # each target at the thread count the model was measured with there (its most frequent), else its peaks'
    threads = {target: int(rows["threads"].mode().item(0))
               for (target,), rows in mine.partition_by("target", as_dict=True).items()}
    counter = FlopCounter.from_results(inputs.results, saved / "flops_cache.json")
    errors = predicted.held_out_by_mode(predictor)
    note = ("held-out MAPE on architectures the predictor did not see: "
            + ", ".join(f"{mode} {_pct(value)}" for mode, value in errors.items()))

    def predict(prompt: int, new_tokens: int):
        return predicted.predicted_candidates(predictor, hardware, counter, inputs.models, family, preset, prompt,
                                              new_tokens, batches=batches, precisions=precisions or ("fp32",),
                                              threads=threads)

    return predict, note
