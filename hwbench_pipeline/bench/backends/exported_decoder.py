"""What the exported-graph runtimes' greedy decode loops share (ONNX Runtime past-io, OpenVINO stateful).

Both run the one decode-step graph of :mod:`decoder_graph`; they differ only in how a step is executed and where
the cache lives. :class:`ExportedDecoder` keeps the loop's bookkeeping (attention mask, next positions, last
logits, argmax) and leaves the step and the cache reset to a subclass; :func:`check_request` and
:func:`decode_step_graph` are the refusals and the graph every ``prepare_generator`` starts with.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np
import torch

from hwbench_pipeline.bench.backends.base import Backend
from hwbench_pipeline.bench.backends.decoder_graph import (
    CacheLayout,
    check_prompt,
    check_text_prompt,
    decoder_graph,
    prompt_positions,
)
from hwbench_pipeline.bench.backends.exportable import traceable_experts
from hwbench_pipeline.bench.failures import UnsupportedConfigurationError
from hwbench_pipeline.bench.precision import PrecisionError, canonical_spec


def check_request(runtime: str, backend: Backend, device: str, cache: str, precision: str, max_new_tokens: int, *,
                  caches: tuple[str, ...], precisions: tuple[str, ...], cpu_only: str,
                  precision_note: str = "") -> str:
    """The canonical precision spec of a CPU decode request the runtime runs. Raises
    UnsupportedConfigurationError for another device (``cpu_only`` says why), cache or precision, ValueError for
    ``max_new_tokens`` < 1. ``precision_note`` ends the list of precisions run (why the others are not)."""
    if torch.device(device).type != "cpu":
        raise UnsupportedConfigurationError(f"{cpu_only}, not on {device}")
    if cache not in caches:
        raise UnsupportedConfigurationError(f"{runtime} offers the {', '.join(caches)} cache, not {cache}")
    try:
        spec = canonical_spec(precision)
    except PrecisionError as exc:
        raise UnsupportedConfigurationError(str(exc)) from exc
    if spec not in precisions:
        raise UnsupportedConfigurationError(f"precision {spec} is not run by the {runtime} decode path (it runs "
                                            f"{', '.join(precisions)}{precision_note})")
    if (reason := backend.unsupported_reason(spec, "cpu")) is not None:
        raise UnsupportedConfigurationError(f"precision {spec} is not supported by {runtime} here: {reason}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    return spec


def decode_step_graph(model: torch.nn.Module, inputs: dict[str, Any]) -> tuple[torch.nn.Module, CacheLayout]:
    """(graph, its cache layout) of ``model`` for prompts like ``inputs``; raises ValueError for a malformed prompt,
    UnsupportedConfigurationError for a model that is not a decoder-only causal LM with a plain dynamic cache or a
    prompt with more than text."""
    check_prompt(inputs)
    traceable_experts(model)
    graph = decoder_graph(model)
    check_text_prompt(inputs)
    return graph, graph.layout


class ExportedDecoder(ABC):
    """Greedy decoding over one decode-step graph: the :class:`~hwbench_pipeline.bench.backends.base.Generator`
    methods but the cache's. A subclass runs a step (:meth:`_run_step`), starts a fresh cache
    (:meth:`_reset_cache`) and reports ``cache_implementation``, ``cache_precision`` and ``cache_bytes``."""

    def __init__(self, layout: CacheLayout, *, precision: str, from_cache: bool, cache_write_s: float) -> None:
        self.precision = precision
        self.from_cache = from_cache
        self.cache_write_s = cache_write_s
        self.layout = layout
        self._mask = np.ones((0, 0), dtype=np.int64)
        self._next_positions = np.zeros(0, dtype=np.int64)
        self._logits: Any = None

    @abstractmethod
    def _reset_cache(self, batch: int) -> None:
        """Begin an empty cache for ``batch`` sequences."""

    @abstractmethod
    def _run_step(self, input_ids: np.ndarray, attention_mask: np.ndarray, position_ids: np.ndarray) -> Any:
        """Run the graph once on the cache, which it grows; return the (batch, vocab) logits as an array."""

    def _step(self, input_ids: np.ndarray, positions: np.ndarray) -> torch.Tensor:
        self._logits = self._run_step(input_ids, self._mask, positions)
        self._next_positions = positions[:, -1] + 1
        return torch.from_numpy(self._logits.argmax(-1).astype(np.int64))

    def start(self, inputs: dict[str, Any]) -> torch.Tensor:
        ids, mask = check_prompt(inputs)
        self._logits = None  # a start that fails part-way leaves no sequence for next() to continue
        self._reset_cache(ids.shape[0])
        self._mask = mask.numpy()
        return self._step(ids.numpy(), prompt_positions(mask).numpy())

    def next(self, tokens: Any) -> torch.Tensor:
        if self._logits is None:
            raise RuntimeError("next() before start()")
        ids = torch.as_tensor(tokens).to("cpu", torch.int64).reshape(-1, 1).numpy()
        if ids.shape[0] != self._mask.shape[0]:
            raise ValueError(f"{ids.shape[0]} tokens for a batch of {self._mask.shape[0]}")
        self._mask = np.concatenate([self._mask, np.ones((ids.shape[0], 1), dtype=np.int64)], axis=1)
        return self._step(ids, self._next_positions[:, None].copy())

    def last_logits(self) -> torch.Tensor:
        if self._logits is None:
            raise RuntimeError("last_logits() before start()")
        return torch.from_numpy(np.array(self._logits, dtype=np.float32))

    def peak_memory_mb(self) -> float | None:
        return None  # CPU: the process RSS is the measure

    def release(self) -> None:
        """Drop the last logits (a subclass drops its runtime's objects too)."""
        self._logits = None
