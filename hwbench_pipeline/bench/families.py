"""The model families of the catalog and their presets, by name: what is accepted, checked without importing
torch or transformers (a command can refuse a bad name in milliseconds). Each curated family is one unit of
:mod:`hwbench_pipeline.bench.catalog.curated`; how a family is built is :mod:`hwbench_pipeline.bench.models`."""

from __future__ import annotations

from hwbench_pipeline.bench.catalog.curated import CURATED
from hwbench_pipeline.bench.catalog.curated.base import FamilySpec

__all__ = [
    "CATEGORIES", "FAMILIES", "PRESETS", "FamilySpec", "UnknownModelError", "check_model", "default_seq_len",
    "family_spec",
]

PRESETS: tuple[str, ...] = ("tiny", "small", "base", "full")
CATEGORIES: tuple[str, ...] = ("embedding", "text generation", "vision", "audio", "multimodal", "video")


class UnknownModelError(ValueError):
    """Unknown family or preset; the message lists the accepted values."""


FAMILIES: dict[str, FamilySpec] = {name: unit.spec for name, unit in CURATED.items()}


def family_spec(family: str) -> FamilySpec:
    try:
        return FAMILIES[family]
    except KeyError:
        accepted = ", ".join(FAMILIES)
        raise UnknownModelError(f"unknown model family {family!r}; accepted families: {accepted}") from None


def check_model(family: str, preset: str) -> FamilySpec:
    """The family's spec; raises :class:`UnknownModelError` for an unknown family or preset."""
    spec = family_spec(family)
    if preset not in PRESETS:
        accepted = ", ".join(PRESETS)
        raise UnknownModelError(f"unknown preset {preset!r} for {family!r}; accepted presets: {accepted}")
    return spec


def default_seq_len(family: str) -> int:
    """A sensible default seq_len for the family (1 where seq_len is ignored)."""
    return family_spec(family).default_seq_len
