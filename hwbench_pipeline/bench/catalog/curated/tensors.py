"""Tensor helpers shared by the curated families' input recipes; torch is imported when they run."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def token_ids(
    gen: torch.Generator,
    batch: int,
    length: int,
    high: int,
    *,
    low: int = 0,
    first: int | None = None,
    last: int | None = None,
) -> torch.Tensor:
    """Random token ids in [low, high), optionally with a fixed first / last token."""
    import torch

    ids = torch.randint(low, high, (batch, length), generator=gen)
    if first is not None:
        ids[:, 0] = first
    if last is not None:
        ids[:, -1] = last
    return ids


def full_attention_mask(batch: int, length: int) -> torch.Tensor:
    """An attention mask that attends every position."""
    import torch

    return torch.ones(batch, length, dtype=torch.long)


def check_seq_len(family: str, seq_len: int, limit: int | None, what: str) -> None:
    """Refuse a seq_len below 1 or above the family's limit (None: no upper limit)."""
    if seq_len < 1 or (limit is not None and seq_len > limit):
        bound = f"1..{limit}" if limit is not None else ">= 1"
        raise ValueError(f"{family}: seq_len={seq_len} is out of range; {what} must be {bound}")
