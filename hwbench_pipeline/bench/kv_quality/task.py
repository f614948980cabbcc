"""The copy task: a prompt ``BOS x1..xL SEP`` whose answer is ``x1..xL`` again, drawn by code from a seed."""

from __future__ import annotations

from dataclasses import dataclass

import torch

#: seed of the held-out prompts: apart from any training seed, so evaluation never replays a training batch
EVAL_SEED = 1_000_003
#: held-out prompts kv_quality_fields scores: 64 x 16 copied tokens resolve an accuracy step of 0.1 %
QUALITY_PROMPTS = 64


@dataclass(frozen=True)
class CopyTask:
    """The copy task: ``BOS x1..xL SEP`` -> ``x1..xL``, with ``x`` uniform over ``symbols`` content tokens."""

    symbols: int = 64  # content tokens 0..symbols-1
    length: int = 16  # tokens to copy: L

    @property
    def bos(self) -> int:
        return self.symbols

    @property
    def sep(self) -> int:
        return self.symbols + 1

    @property
    def vocab_size(self) -> int:
        return self.symbols + 2

    @property
    def prompt_len(self) -> int:
        return self.length + 2

    def sequences(self, count: int, generator: torch.Generator) -> torch.Tensor:
        """``count`` whole sequences (prompt then answer), (count, 2L + 2) int64."""
        content = torch.randint(0, self.symbols, (count, self.length), generator=generator)
        bos = torch.full((count, 1), self.bos)
        sep = torch.full((count, 1), self.sep)
        return torch.cat([bos, content, sep, content], dim=1)


@dataclass(frozen=True)
class CopyPrompt:
    ids: torch.Tensor  # (1, L + 2): BOS x1..xL SEP
    expected: torch.Tensor  # (L,): the continuation a correct model generates


def held_out_prompts(task: CopyTask, count: int = QUALITY_PROMPTS, seed: int = EVAL_SEED) -> list[CopyPrompt]:
    """``count`` prompts of ``task`` drawn from ``seed``: the same prompts for the same arguments, everywhere."""
    rows = task.sequences(count, torch.Generator().manual_seed(seed))
    return [CopyPrompt(row[None, :task.prompt_len], row[task.prompt_len:]) for row in rows]


TASK = CopyTask()
