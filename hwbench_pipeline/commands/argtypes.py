"""argparse types for numeric options: a bad value is refused by argparse with the option's name and why.

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
positive_float = _number(float, lambda v: v > 0, "a positive number")
non_negative_float = _number(float, lambda v: v >= 0, "a number >= 0")
open_fraction = _number(float, lambda v: 0 < v < 1, "a number between 0 and 1")
timeout_seconds = _number(float, lambda v: 0 < v <= MAX_TIMEOUT_S, f"a number of seconds > 0 and <= {MAX_TIMEOUT_S}")
age_in_days = _number(float, lambda v: 0 <= v <= MAX_DAYS, f"a number of days >= 0 and <= {MAX_DAYS}")
