"""argparse types for numeric options: a bad value is refused by argparse with the option's name and why."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def _number(parse: Callable[[str], float], accept: Callable[[float], bool], expected: str) -> Callable[[str], float]:
    def convert(text: str):
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    convert.__name__ = expected  # argparse names the type in some messages
    return convert


positive_int = _number(int, lambda v: v >= 1, "a positive integer")
positive_float = _number(float, lambda v: v > 0, "a positive number")
non_negative_float = _number(float, lambda v: v >= 0, "a number >= 0")
open_fraction = _number(float, lambda v: 0 < v < 1, "a number between 0 and 1")
