"""One decode step of a transformers causal LM as a graph of flat tensors, for the exported-graph runtimes.

ONNX Runtime and OpenVINO cannot take a transformers ``Cache`` object, so :func:`decoder_graph` wraps the model in
a module whose inputs and outputs are plain tensors::

    input_ids (batch, seq) int64, attention_mask (batch, past + seq) int64, position_ids (batch, seq) int64,
    past.{i}.key / past.{i}.value (batch, kv_heads, past, head_dim)
    -> logits (batch, vocab) of the last position, present.{i}.key / present.{i}.value (batch, kv_heads,
       past + seq, head_dim)

Inside, the past tensors become a ``DynamicCache`` and the model runs with ``use_cache=True`` and a 4D additive mask
built here from the 2D one (:func:`attention_bias`); the cache it grew is returned as the presents. The same graph
serves the prefill (past length 0: zero-length past tensors) and every decode step (seq 1), so one export covers
both. Only decoder-only models whose cache is one full-attention ``DynamicLayer`` per layer are accepted
(:func:`cache_layout`): a sliding-window layer crops its past, which past-in/present-out tensors do not express.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch

from hwbench_pipeline.bench.failures import UnsupportedConfigurationError

#: the graph's first inputs, before the past key/values
TOKEN_INPUTS = ("input_ids", "attention_mask", "position_ids")
#: the graph's first output, before the presents
LOGITS = "logits"
#: shapes of the example the graph is exported/traced with: every dynamic dimension distinct and >= 2, so that
#: the tracers neither specialize a size of 0/1 nor take two dimensions for one
_EXAMPLE_BATCH, _EXAMPLE_SEQ, _EXAMPLE_PAST = 2, 3, 5


@dataclass(frozen=True)
class CacheLayout:
    """The KV cache of a decoder-only model: one key and one value tensor per layer, (batch, kv_heads, length,
    head_dim) each."""

    layers: int
    kv_heads: int
    head_dim: int
    dtype: torch.dtype
    vocab_size: int

    def past_names(self) -> list[str]:
        return [f"past.{i}.{kind}" for i in range(self.layers) for kind in ("key", "value")]

    def present_names(self) -> list[str]:
        return [f"present.{i}.{kind}" for i in range(self.layers) for kind in ("key", "value")]

    def input_names(self) -> list[str]:
        return [*TOKEN_INPUTS, *self.past_names()]

    def output_names(self) -> list[str]:
        return [LOGITS, *self.present_names()]

    def bytes_per_token(self, batch: int) -> int:
        """Bytes the cache grows by per token: a key and a value vector per layer and kv head, per sequence."""
        return 2 * self.layers * self.kv_heads * self.head_dim * self.dtype.itemsize * batch

    def past_shape(self, batch: int, length: int) -> tuple[int, int, int, int]:
        return batch, self.kv_heads, length, self.head_dim


def argument_name(name: str) -> str:
    """The Python argument a graph input is passed as (graph names have dots, arguments cannot)."""
    return name.replace(".", "_")


def _cache_keyword(model: torch.nn.Module) -> str | None:
    """The forward argument that takes the cache: ``cache`` in transformers 5.2x, ``past_key_values`` before."""
    params = inspect.signature(model.forward).parameters
    return next((name for name in ("cache", "past_key_values") if name in params), None)


def cache_layout(model: torch.nn.Module) -> CacheLayout:
    """The cache layout of a decoder-only causal LM; raises UnsupportedConfigurationError for any other model."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    name = type(model).__name__
    config = getattr(model, "config", None)
    if config is None or not hasattr(model, "can_generate"):
        raise UnsupportedConfigurationError(f"{name} is not a transformers model: the exported decode path takes "
                                            f"decoder-only causal LMs")
    if getattr(config, "is_encoder_decoder", False):
        raise UnsupportedConfigurationError(f"{name} is an encoder-decoder model: the exported decode path takes "
                                            f"decoder-only causal LMs")
    if not model.can_generate():
        raise UnsupportedConfigurationError(f"{name} cannot generate (no language-model head): the exported decode "
                                            f"path takes decoder-only causal LMs")
    if _cache_keyword(model) is None or "position_ids" not in inspect.signature(model.forward).parameters:
        raise UnsupportedConfigurationError(f"{name}.forward takes no cache or no position_ids argument")
    text = config.get_text_config(decoder=True)
    heads = getattr(text, "num_attention_heads", None)
    if heads is None or getattr(text, "hidden_size", None) is None:
        raise UnsupportedConfigurationError(f"{name}: its config names no attention heads or hidden size")
    layers = DynamicCache(config=config).layers
    if not layers or any(type(layer) is not DynamicLayer for layer in layers):
        kinds = sorted({type(layer).__name__ for layer in layers}) or ["none"]
        raise UnsupportedConfigurationError(f"{name}'s cache has {', '.join(kinds)} layers: the exported decode path "
                                            f"keeps whole full-attention past tensors (DynamicLayer) only")
    kv_heads = getattr(text, "num_key_value_heads", None) or heads
    # head_dim where the config sets it (it may differ from hidden_size / heads), else the usual split
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    dtype = next(model.parameters()).dtype
    return CacheLayout(len(layers), int(kv_heads), int(head_dim), dtype, int(text.vocab_size))


def attention_bias(attention_mask: torch.Tensor, query_length: int, dtype: torch.dtype) -> torch.Tensor:
    """The (batch, 1, query, past + query) additive mask of one step: 0 where a query may attend (causal and not
    padding), the dtype's lowest value elsewhere, as transformers' eager mask.

    Given to the model ready-made (a 4D mask is used as it is) so that the graph does not depend on the attention
    implementation's own mask: with SDPA transformers passes a boolean mask, and OpenVINO's SDPA turns the fully
    masked rows of a left-padded prompt's padding positions into NaN, which then reach the real tokens through the
    cache (measured: tiny llama/qwen2, batch 2, one prompt padded). A finite lowest value gives those unused rows
    finite values; the real tokens' rows are exactly the same mask."""
    total = attention_mask.shape[-1]
    keys = torch.arange(total, device=attention_mask.device)
    queries = torch.arange(query_length, device=attention_mask.device) + (total - query_length)
    allowed = (keys[None, :] <= queries[:, None])[None, None] & attention_mask[:, None, None, :].bool()
    lowest = torch.full((), torch.finfo(dtype).min, dtype=dtype, device=attention_mask.device)
    return torch.where(allowed, torch.zeros((), dtype=dtype, device=attention_mask.device), lowest)


class _DecoderStep(torch.nn.Module):
    def __init__(self, model: torch.nn.Module, layout: CacheLayout) -> None:
        super().__init__()
        self.model = model
        self.layout = layout
        self._cache_keyword = _cache_keyword(model)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                *past: torch.Tensor) -> tuple[torch.Tensor, ...]:
        from transformers import DynamicCache

        cache = DynamicCache(config=self.model.config)
        # the past tensors are set as the layers' contents directly: DynamicCache.update would concatenate them to
        # a 1-D empty tensor, which torch allows and OpenVINO's converter rejects
        for index, layer in enumerate(cache.layers):
            layer.keys, layer.values = past[2 * index], past[2 * index + 1]
            layer.device, layer.is_initialized = past[2 * index].device, True
        bias = attention_bias(attention_mask, input_ids.shape[1], self.layout.dtype)
        out = self.model(input_ids=input_ids, attention_mask=bias, position_ids=position_ids,
                         use_cache=True, logits_to_keep=1, **{self._cache_keyword: cache})
        grown = out.cache if hasattr(out, "cache") else out.past_key_values
        presents = [tensor for layer in grown.layers for tensor in (layer.keys, layer.values)]
        return out.logits[:, -1, :], *presents


def decoder_graph(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` (a decoder-only causal LM, eval) as one decode step over flat tensors (module docstring).

    The module's ``forward`` advertises one named argument per graph input (:func:`argument_name`), so the ONNX
    exporter's dynamic shapes and OpenVINO's ``example_input`` dict bind by name. Raises
    UnsupportedConfigurationError for a model it cannot wrap, including one whose presents come back in another
    layout than :func:`cache_layout` says (checked by one eager run on the example inputs)."""
    layout = cache_layout(model)

    class DecoderStep(_DecoderStep):  # a class per graph: the signature below is a class attribute
        pass

    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    params += [inspect.Parameter(argument_name(name), inspect.Parameter.POSITIONAL_OR_KEYWORD)
               for name in layout.input_names()]
    DecoderStep.forward.__signature__ = inspect.Signature(params)
    graph = DecoderStep(model, layout).eval()
    example = example_inputs(layout)
    with torch.no_grad():
        outputs = graph(*example.values())
    batch, total = _EXAMPLE_BATCH, _EXAMPLE_PAST + _EXAMPLE_SEQ
    expected = [(batch, layout.vocab_size)] + [layout.past_shape(batch, total)] * (2 * layout.layers)
    got = [tuple(tensor.shape) for tensor in outputs]
    if got != expected:
        raise UnsupportedConfigurationError(f"{type(model).__name__}: one decode step returned shapes {got[:3]}..., "
                                            f"not the logits and cache layout {expected[:3]}... the graph assumes")
    return graph


def example_inputs(layout: CacheLayout, seed: int = 0) -> dict[str, torch.Tensor]:
    """Inputs of one step to export/trace with, keyed by argument name: a batch of 2 sequences of 3 new tokens
    after 5 past ones."""
    gen = torch.Generator().manual_seed(seed)
    batch, seq, past = _EXAMPLE_BATCH, _EXAMPLE_SEQ, _EXAMPLE_PAST
    inputs = {
        "input_ids": torch.randint(0, layout.vocab_size, (batch, seq), generator=gen),
        "attention_mask": torch.ones(batch, past + seq, dtype=torch.int64),
        "position_ids": torch.arange(past, past + seq).expand(batch, seq).contiguous(),
    }
    for name in layout.past_names():
        inputs[argument_name(name)] = torch.randn(layout.past_shape(batch, past), generator=gen, dtype=layout.dtype)
    return inputs


def dynamic_shapes(layout: CacheLayout) -> dict[str, dict[int, Any]]:
    """``torch.export`` dynamic shapes of the graph's inputs, keyed by argument name. The mask's length (past +
    seq) is a dimension of its own: export dims cannot be declared as the sum of two others."""
    from torch.export import Dim

    batch, seq, past, total = Dim("batch"), Dim("seq"), Dim("past"), Dim("total")
    shapes: dict[str, dict[int, Any]] = {
        "input_ids": {0: batch, 1: seq},
        "attention_mask": {0: batch, 1: total},
        "position_ids": {0: batch, 1: seq},
    }
    for name in layout.past_names():
        shapes[argument_name(name)] = {0: batch, 2: past}
    return shapes


def prompt_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids of a (left-padded) prompt, as transformers' generate makes them: count of real tokens so far,
    padding at position 1."""
    mask = attention_mask.to(torch.int64)
    return (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)


def check_text_prompt(inputs: dict[str, Any]) -> None:
    """Refuse a prompt with more than text (llava's pixel_values): the exported graph would silently drop it."""
    others = sorted(set(inputs) - {"input_ids", "attention_mask"})
    if others:
        raise UnsupportedConfigurationError(f"the exported decoder takes input_ids and attention_mask only; this "
                                            f"model's prompt also has {', '.join(others)}")


def check_prompt(inputs: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) of a prompt as int64 CPU tensors; raises ValueError for anything else."""
    if "input_ids" not in inputs:
        raise ValueError(f"a prompt needs input_ids; got {', '.join(inputs) or 'nothing'}")
    ids = torch.as_tensor(inputs["input_ids"]).to("cpu", torch.int64)
    mask = inputs.get("attention_mask")
    mask = torch.ones_like(ids) if mask is None else torch.as_tensor(mask).to("cpu", torch.int64)
    if ids.ndim != 2 or mask.shape != ids.shape or ids.shape[1] < 1:
        raise ValueError(f"a prompt is (batch, seq>=1) input_ids with a mask alike; got {tuple(ids.shape)} and "
                         f"{tuple(mask.shape)}")
    return ids.contiguous(), mask.contiguous()
