"""Price per hour of each target, from a user-editable YAML file (see hwbench_pipeline/prices.yaml)."""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

DEFAULT_PRICES = Path(__file__).resolve().parent.parent / "prices.yaml"


class PriceFileError(ValueError):
    pass


@dataclass(frozen=True)
class Prices:
    path: Path
    currency: str
    entries: list[tuple[str, float | None, str]] = field(default_factory=list)  # (pattern, per hour, source)

    def per_hour(self, target: str) -> float | None:
        """The first matching entry's price; None when no entry matches or its price is unset."""
        for pattern, price, _ in self.entries:
            if fnmatch.fnmatchcase(target, pattern):
                return price
        return None

    def source(self, target: str) -> str | None:
        for pattern, _, source in self.entries:
            if fnmatch.fnmatchcase(target, pattern):
                return source
        return None


def prices_path(explicit: str | None = None) -> Path:
    """--prices, else HWBENCH_PRICES, else the packaged placeholder file."""
    return Path(explicit or os.environ.get("HWBENCH_PRICES") or DEFAULT_PRICES)


def load_prices(path: Path) -> Prices:
    """Parse a price file; PriceFileError says what is wrong in one line."""
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise PriceFileError(f"price file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise PriceFileError(f"price file {path}: not valid YAML ({exc.__class__.__name__})") from None
    if not isinstance(data, dict) or not isinstance(data.get("prices"), dict):
        raise PriceFileError(f"price file {path}: expected a mapping with a 'prices' mapping of target -> "
                             "{per_hour, source}")
    entries = []
    for pattern, entry in data["prices"].items():
        if not isinstance(entry, dict) or "per_hour" not in entry:
            raise PriceFileError(f"price file {path}: entry {pattern!r} needs 'per_hour' (a number or null) and "
                                 "'source'")
        price = entry["per_hour"]
        if price is not None and (isinstance(price, bool) or not isinstance(price, int | float) or price < 0):
            raise PriceFileError(f"price file {path}: {pattern}.per_hour must be a non-negative number or null, "
                                 f"got {price!r}")
        if price is not None and not entry.get("source"):
            raise PriceFileError(f"price file {path}: {pattern} has a price but no 'source' saying where it "
                                 "comes from")
        entries.append((str(pattern), None if price is None else float(price), str(entry.get("source") or "")))
    return Prices(path=path, currency=str(data.get("currency", "USD")), entries=entries)
