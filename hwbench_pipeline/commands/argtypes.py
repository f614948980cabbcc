"""argparse types for numeric and precision options: a bad value is refused by argparse with the option's name and why.

``float()`` reads "nan", "inf" and "1e999" as numbers, and NaN passes no comparison, so every float type here
refuses what is not finite before checking its range.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from hwbench_pipeline.bench.profiles import MAX_TIMEOUT_S

#: the most days --older-than-days may reach back: further would pass the first year of the calendar
MAX_DAYS = 100_000


def _number(parse: Callable[[str], float], accept: Callable[[float], bool], expected: str) -> Callable[[str], float]:
    def convert(text: str):
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if (isinstance(value, float) and not math.isfinite(value)) or not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    convert.__name__ = expected  # argparse names the type in some messages
    return convert


positive_int = _number(int, lambda v: v >= 1, "a positive integer")
non_negative_int = _number(int, lambda v: v >= 0, "an integer >= 0")
port_number = _number(int, lambda v: 1 <= v <= 65535, "a port number from 1 to 65535")
positive_float = _number(float, lambda v: v > 0, "a positive number")
non_negative_float = _number(float, lambda v: v >= 0, "a number >= 0")
open_fraction = _number(float, lambda v: 0 < v < 1, "a number between 0 and 1")
timeout_seconds = _number(float, lambda v: 0 < v <= MAX_TIMEOUT_S, f"a number of seconds > 0 and <= {MAX_TIMEOUT_S}")
age_in_days = _number(float, lambda v: 0 <= v <= MAX_DAYS, f"a number of days >= 0 and <= {MAX_DAYS}")


def precision_specs(text: str) -> list[tuple[str, str]]:
    """Comma-separated precision specs (bench/precision.py) as (precision, quantization) pairs, each once."""
    from hwbench_pipeline.bench.precision import PrecisionError, parse_spec

    try:
        pairs = [parse_spec(part) for part in text.split(",") if part.strip()]
    except PrecisionError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not pairs:
        raise argparse.ArgumentTypeError(f"expected one or more precisions, got {text!r}")
    return list(dict.fromkeys(pairs))


def accuracy_drop(text: str) -> float:
    """An accuracy bound as a fraction: ``1%`` or ``0.01`` (one point), between 0 and 1."""
    value = text.strip()
    percent = value.endswith("%")
    try:
        number = float(value.rstrip("%").strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a percentage like 1% or a fraction like 0.01, got {text!r}") \
            from None
    fraction = number / 100 if percent else number
    if not math.isfinite(fraction) or not 0 <= fraction <= 1:
        raise argparse.ArgumentTypeError(f"expected between 0% and 100% (0 and 1), got {text!r}")
    return fraction
