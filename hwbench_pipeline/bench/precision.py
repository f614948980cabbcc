"""Precisions hwbench measures, and how a user names them (docs/precision.md).

A precision is a number format (``precision``: fp32, bf16, fp16, int8) and, for int8, the quantization recipe
that produced the model (``quantization``: dynamic or static). Both are part of a configuration's key. Users
and profiles name the pair in one word, a *spec*: ``fp32``, ``bf16``, ``fp16``, ``int8-dynamic``,
``int8-static``; plain ``int8`` means ``int8-dynamic``, the recipe every runtime offers without calibration.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import polars as pl

#: number formats, widest first
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16", "int8")
#: the formats training runs in (autocast); int8 is an inference recipe
FLOAT_PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")
#: int8 recipes: weights quantized ahead of time, activations quantized per call from their own range
#: (dynamic) or with ranges calibrated beforehand on generated inputs (static)
QUANTIZATIONS: tuple[str, ...] = ("dynamic", "static")
NO_QUANTIZATION = "none"
#: a generation KV cache in the model's own number format (a plain cache); the quantized ones are named by
#: their bits (docs/generation.md, "KV-cache precision")
MODEL_CACHE_PRECISION = "model"
CACHE_PRECISIONS: tuple[str, ...] = (MODEL_CACHE_PRECISION, "int8", "int4", "int3", "int2")
#: every spec, in the order reports list them
SPECS: tuple[str, ...] = ("fp32", "bf16", "fp16", "int8-dynamic", "int8-static")
ALIASES: dict[str, str] = {"int8": "int8-dynamic"}
#: bytes per weight of each number format
BYTES_PER_WEIGHT: dict[str, int] = {"fp32": 4, "bf16": 2, "fp16": 2, "int8": 1}
#: generated input batches a static recipe is calibrated on (other seeds than the timed inputs). With 4, ONNX
#: Runtime's int8-static error on tiny models reached 0.36 of the output scale (clap), with 16 0.008-0.026:
#: calibration coverage, not the recipe, made most of the error
CALIBRATION_BATCHES = 16


class PrecisionError(ValueError):
    """A precision nobody knows; its message is one line naming the known ones."""


def spec_name(precision: str, quantization: str | None = NO_QUANTIZATION) -> str:
    """The spec of a (precision, quantization) pair: ``int8-static``, ``fp32``; a recipe nobody recorded (an
    import that does not say) leaves the plain format."""
    return f"{precision}-{quantization}" if quantization in QUANTIZATIONS else precision


def offered_specs(unsupported_reason: Callable[[str, str], str | None], device_kind: str) -> tuple[str, ...]:
    """The specs a backend runs on a device kind: those its ``unsupported_reason`` has no reason against."""
    return tuple(spec for spec in SPECS if unsupported_reason(spec, device_kind) is None)


def unknown_spec_reason(text: str) -> str | None:
    """The one-line reason ``text`` names no precision, or None when it names one."""
    try:
        parse_spec(text)
    except PrecisionError as exc:
        return str(exc)
    return None


def spec_expr() -> pl.Expr:
    """A polars expression of each row's spec, from its ``precision`` and ``quantization`` columns."""
    import polars as pl

    recipe = pl.col("quantization").is_in(list(QUANTIZATIONS)).fill_null(False)
    return pl.when(recipe).then(pl.concat_str("precision", pl.lit("-"), "quantization")).otherwise(pl.col("precision"))


def format_expr(column: str = "precision") -> pl.Expr:
    """A polars expression of the number format of a column of specs (``int8`` for ``int8-static``)."""
    import polars as pl

    return pl.col(column).str.split("-").list.first()


def number_format(spec: str) -> str:
    """The number format of a spec: ``int8`` for ``int8-static``."""
    return spec.partition("-")[0]


def parse_spec(text: str) -> tuple[str, str]:
    """(precision, quantization) of a spec (``int8`` is ``int8-dynamic``); PrecisionError when unknown."""
    name = ALIASES.get(str(text).strip().lower(), str(text).strip().lower())
    if name not in SPECS:
        raise PrecisionError(f"unknown precision {text!r}; known: {', '.join(SPECS)} (int8 = int8-dynamic)")
    precision, _, quantization = name.partition("-")
    return precision, quantization or NO_QUANTIZATION


def canonical_spec(text: str) -> str:
    """The spec ``text`` names, aliases resolved."""
    return spec_name(*parse_spec(text))
