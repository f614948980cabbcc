"""How the report writes figures and keys into its pages."""

from __future__ import annotations

import math
import re


def number(value: float | None, spec: str = ".3g") -> str:
    """A figure as table text; ``n/a`` where it was not measured (an ITL with one new token, a CPU's device peak)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return format(value, spec)


def slug(text: str) -> str:
    """``text`` as a key of a figure or section: lower-case letters and digits joined by hyphens."""
    return "-".join(re.findall(r"[a-z0-9]+", text.lower()))
