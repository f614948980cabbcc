"""KV-cache precision for the torch generation path: which cache a decoding run uses, and what it really holds.

A precision names how the keys and values of past tokens are stored while decoding greedily, token by token:

* ``model``: the model's own dtype, a plain transformers ``DynamicCache`` or ``StaticCache``;
* ``int8``, ``int4``, ``int3``, ``int2``: transformers' ``QuantizedCache`` (the KIVI scheme), served on the CPU
  by the backend that ``KV_CACHE_BACKENDS`` records for each width.

How transformers 5.24's ``QuantizedCache`` behaves (read from ``transformers/cache_utils.py`` and measured):

* The first update (the prompt) is quantized at once, whatever ``residual_length`` is; that call's attention
  still sees the unquantized states, so the first generated token never depends on the cache precision.
* Each decoded token is kept unquantized in a residual buffer; when the buffer would reach ``residual_length``
  tokens, the whole cache is dequantized, concatenated with it and quantized again (so the residual holds at
  most ``residual_length - 1`` tokens, and ``residual_length`` 0 or 1 requantizes at every step).
* Every decode step dequantizes the whole cache to attend over it: the saving is memory, not time.
* There is no static (preallocated) quantized cache: ``static`` with a quantized precision is refused.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from typing import Any

import torch
import transformers
from transformers.cache_utils import (
    Cache,
    CacheLayerMixin,
    DynamicCache,
    EncoderDecoderCache,
    Fp8QuantizedLayer,
    HQQQuantizedLayer,
    LinearAttentionCacheLayerMixin,
    QuantizedCache,
    QuantizedLayer,
    QuantoQuantizedLayer,
    StaticCache,
    get_layer_types_and_kwargs,
)
from transformers.utils import is_hqq_available, is_optimum_quanto_available

from hwbench_pipeline.bench.failures import BenchmarkFailure, UnsupportedConfigurationError


@dataclass(frozen=True)
class QuantizedKV:
    """How a quantized KV-cache precision is served: a transformers ``QuantizedCache`` backend and bit width."""

    backend: str  # "hqq" or "quanto", transformers' name for it
    nbits: int
    package: str  # the PyPI distribution that provides the backend
    pin: str  # the version pyproject.toml pins


HQQ = ("hqq", "hqq==0.2.8.post1")
QUANTO = ("optimum-quanto", "optimum-quanto==0.2.7")

#: Requested KV-cache precision -> how it is served (None: a plain cache in the model's own dtype).
# int4 and int2 go to optimum-quanto: it is transformers' default QuantizedCache backend, and on this CPU it
# quantizes ~40x faster than HQQ (min/max scales vs HQQ's iterative optimizer: 0.5 ms vs 22 ms for a
# [1, 6, 256, 48] tensor, 2 threads), which the cache pays for every layer's keys and values each time the
# residual is flushed; its error is within ~7 % of HQQ's (relative error 0.096 vs 0.090 at 4 bits, 0.49 vs 0.47
# at 2). Cost: its CPU unpack is a C++ extension that it builds with the system compiler on first use (~45 s,
# into its own site-packages folder; no pure-Python fallback), see prepare(). int8 and int3 go to HQQ, the only
# backend with those widths (pure Python, nothing to build). Measured decode steps (llama/small, prompt 256,
# 2 threads) show the difference: with residual_length 0 (a requantization every step) quanto int4/int2 cost
# ~1.6x the plain cache's step, HQQ int8/int3 ~9x. cache_precision_ran names the backend that ran.
KV_CACHE_BACKENDS: dict[str, QuantizedKV | None] = {
    "model": None,
    "int8": QuantizedKV("hqq", 8, *HQQ),
    "int4": QuantizedKV("quanto", 4, *QUANTO),
    "int3": QuantizedKV("hqq", 3, *HQQ),
    "int2": QuantizedKV("quanto", 2, *QUANTO),
}

CACHE_KINDS: tuple[str, ...] = ("dynamic", "static")

#: Largest quantization group size (transformers' own default). transformers quantizes the whole
# [batch, kv_heads, tokens, head_dim] tensor in groups, and both backends need the group size to divide its
# element count: with 64, llama/small (6 kv heads x 48 = 288 per token) fails on every odd token count. So
# make_cache takes the largest divisor of kv_heads * head_dim up to this (48 there, 32 for llama/tiny), which
# divides every length.
MAX_GROUP_SIZE = 64

# transformers' defaults (axis 0 for keys and values), recorded so that a run says what it used.
AXIS_KEY = 0
AXIS_VALUE = 0


def backend_available(spec: QuantizedKV) -> bool:
    """Whether the package of ``spec``'s backend is installed (at a version transformers accepts)."""
    if spec.backend == "hqq":
        return is_hqq_available()
    return is_optimum_quanto_available()


def compiler() -> str | None:
    """The C++ compiler torch's extension builder would use (CXX, else c++), None when there is none."""
    return shutil.which(os.environ.get("CXX", "c++"))


def missing_dependency(cache_precision: str) -> str | None:
    """What a known ``cache_precision`` lacks on this host to run (a package, a compiler), None if nothing."""
    spec = KV_CACHE_BACKENDS[cache_precision]
    if spec is None:
        return None
    if not backend_available(spec):
        return (
            f"KV-cache {cache_precision} runs on the {spec.backend} backend, whose package {spec.package} is not "
            f"installed: pip install {spec.pin} (it is in the project's dependencies: pip install -e .)"
        )
    if spec.backend == "quanto" and compiler() is None:
        return (
            f"KV-cache {cache_precision} runs on optimum-quanto, whose CPU kernels are a C++ extension it builds on "
            "first use, and no C++ compiler was found (CXX or c++): install one (apt-get install g++)"
        )
    return None


def _is_decoder_only(model: torch.nn.Module) -> bool:
    config = model.config
    can_generate = isinstance(model, transformers.PreTrainedModel) and model.can_generate()
    return can_generate and not getattr(config, "is_encoder_decoder", False)


def cache_precision_reason(cache_precision: str, model: torch.nn.Module, *, cache: str | None = None) -> str | None:
    """Why ``cache_precision`` cannot run on ``model`` (None: it can). ``cache`` ("dynamic"/"static"), when given,
    is checked too."""
    if cache_precision not in KV_CACHE_BACKENDS:
        return f"unknown KV-cache precision {cache_precision!r}; known: {', '.join(KV_CACHE_BACKENDS)}"
    if cache is not None and cache not in CACHE_KINDS:
        return f"unknown cache kind {cache!r}; known: {', '.join(CACHE_KINDS)}"
    spec = KV_CACHE_BACKENDS[cache_precision]
    if spec is None:
        if not _is_decoder_only(model):
            return (
                f"{type(model).__name__} is not a decoder-only generative model: the torch generation path builds "
                "decoder-only caches (an encoder-decoder model needs an EncoderDecoderCache)"
            )
        return None
    missing = missing_dependency(cache_precision)
    if missing is not None:
        return missing
    if not _is_decoder_only(model):
        return (
            f"KV-cache {cache_precision}: transformers' QuantizedCache serves decoder-only models, and "
            f"{type(model).__name__} is not one"
        )
    layer_types = set(get_layer_types_and_kwargs(model.config.get_text_config(decoder=True))[0])
    if layer_types - {"full_attention"}:
        return (
            f"KV-cache {cache_precision}: transformers' QuantizedCache serves only full-attention layers, and "
            f"{type(model).__name__} has {sorted(layer_types - {'full_attention'})}"
        )
    if cache == "static":
        return (
            f"KV-cache {cache_precision} with a static cache: transformers 5.24 has no preallocated quantized cache "
            "(QuantizedCache grows like a dynamic one); use cache='dynamic'"
        )
    return None


def group_size(model: torch.nn.Module) -> int:
    """The quantization group size make_cache uses for ``model``: the largest divisor of kv_heads * head_dim
    that is at most MAX_GROUP_SIZE, so that any token count quantizes."""
    config = model.config.get_text_config(decoder=True)
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    per_token = heads * head_dim
    return max(d for d in range(1, MAX_GROUP_SIZE + 1) if per_token % d == 0)


def make_cache(
    model: torch.nn.Module,
    cache_precision: str,
    cache: str,
    *,
    max_cache_len: int,
    residual_length: int,
) -> Cache:
    """A fresh cache for greedy decoding with ``model`` at ``cache_precision``.

    ``cache``: "dynamic" (grows per token; ``max_cache_len`` is then unused) or "static" (``max_cache_len`` tokens
    preallocated; the model's own dtype only). ``residual_length``: how many recent decoded tokens a quantized
    cache keeps unquantized before it requantizes (transformers' KIVI residual; the prompt is quantized at once
    regardless); ignored by a plain cache. Read them back with :func:`cache_settings`.

    Raises ValueError on an unknown name or a bad length, BenchmarkFailure("missing_dependency") when the
    backend's package (or quanto's compiler) is absent, UnsupportedConfigurationError for a combination that
    cannot run.
    """
    if cache_precision not in KV_CACHE_BACKENDS or cache not in CACHE_KINDS:
        raise ValueError(cache_precision_reason(cache_precision, model, cache=cache))
    if max_cache_len < 1:
        raise ValueError(f"max_cache_len must be at least 1, got {max_cache_len}")
    if residual_length < 0:
        raise ValueError(f"residual_length must be 0 or more, got {residual_length}")
    missing = missing_dependency(cache_precision)
    if missing is not None:
        raise BenchmarkFailure("missing_dependency", missing)
    reason = cache_precision_reason(cache_precision, model, cache=cache)
    if reason is not None:
        raise UnsupportedConfigurationError(reason)
    spec = KV_CACHE_BACKENDS[cache_precision]
    config = model.config.get_text_config(decoder=True)
    if spec is None:
        if cache == "static":
            return StaticCache(config=config, max_cache_len=max_cache_len)
        return DynamicCache(config=config)
    return QuantizedCache(
        backend=spec.backend,
        config=config,
        nbits=spec.nbits,
        axis_key=AXIS_KEY,
        axis_value=AXIS_VALUE,
        q_group_size=group_size(model),
        residual_length=residual_length,
    )


def prepare(cache_precision: str) -> float:
    """Do a quantized precision's one-time work now (imports; quanto builds or loads its C++ extension, ~45 s the
    first time in an environment) by quantizing and dequantizing a tiny tensor, so that no measurement pays for
    it; returns the seconds it took (0 for the plain cache)."""
    spec = KV_CACHE_BACKENDS[cache_precision]
    if spec is None:
        return 0.0
    start = time.perf_counter()
    layer_class = HQQQuantizedLayer if spec.backend == "hqq" else QuantoQuantizedLayer
    layer = layer_class(nbits=spec.nbits, q_group_size=16, residual_length=0)
    states = torch.ones(1, 1, 2, 16)
    layer.update(states, states)  # quantizes
    layer.update(states[:, :, :1], states[:, :, :1])  # dequantizes (quanto's unpack is the C++ kernel)
    return time.perf_counter() - start


def _layers(cache: Cache) -> list[CacheLayerMixin]:
    if isinstance(cache, EncoderDecoderCache):
        return [*_layers(cache.self_attention_cache), *_layers(cache.cross_attention_cache)]
    return list(cache.layers)


def _plain_tensors(obj: Any, seen: set[int]) -> list[torch.Tensor]:
    """Every plain tensor under ``obj``: tensor subclasses (quanto's) are opened through __tensor_flatten__, and
    tuples, lists, dicts (HQQ keeps (packed, meta-dict)) and cache layers are walked."""
    if id(obj) in seen:
        return []
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        if type(obj) is not torch.Tensor and hasattr(obj, "__tensor_flatten__"):
            names, _ = obj.__tensor_flatten__()
            return [t for name in names for t in _plain_tensors(getattr(obj, name), seen)]
        return [obj]
    if isinstance(obj, tuple | list):
        return [t for item in obj for t in _plain_tensors(item, seen)]
    if isinstance(obj, dict):
        return [t for item in obj.values() for t in _plain_tensors(item, seen)]
    if isinstance(obj, CacheLayerMixin | LinearAttentionCacheLayerMixin):
        return [t for item in vars(obj).values() for t in _plain_tensors(item, seen)]
    return []


def cache_bytes(cache: Cache) -> int:
    """Bytes of memory the cache's tensors hold, measured: every tensor each layer keeps (a plain cache's keys
    and values; a quantized one's packed integers, scales, zero points and unquantized residual), counted by the
    size of its storage, each storage once (a view keeps its whole buffer alive; a static cache counts its
    preallocated length)."""
    seen: set[int] = set()
    storages: dict[int, int] = {}
    for layer in _layers(cache):
        for tensor in _plain_tensors(layer, seen):
            if tensor.device.type == "meta":
                continue
            storage = tensor.untyped_storage()
            storages[storage.data_ptr()] = max(storages.get(storage.data_ptr(), 0), storage.nbytes())
    return sum(nbytes for ptr, nbytes in storages.items() if ptr != 0)


#: transformers' quantized layer classes -> the backend name they run
LAYER_BACKENDS: dict[type, str] = {HQQQuantizedLayer: "hqq", QuantoQuantizedLayer: "quanto", Fp8QuantizedLayer: "fp8"}

DTYPE_NAMES: dict[torch.dtype, str] = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


def layer_holds_states(layer: CacheLayerMixin | LinearAttentionCacheLayerMixin) -> bool:
    """Whether a model run has stored anything in ``layer`` (keys and values, or a recurrent layer's states)."""
    if isinstance(layer, LinearAttentionCacheLayerMixin):
        return layer.dtype is not None
    # a hybrid model's placeholder for a layer without attention is "initialized" but holds no keys
    return bool(layer.is_initialized) and getattr(layer, "keys", None) is not None


def holds_states(cache: Cache) -> bool:
    """Whether a model run has stored anything in ``cache``: a model that keeps its own state elsewhere, or none,
    leaves transformers' cache empty."""
    return any(layer_holds_states(layer) for layer in _layers(cache))


def _layer_precision(layer: CacheLayerMixin | LinearAttentionCacheLayerMixin) -> str:
    if isinstance(layer, LinearAttentionCacheLayerMixin):  # a recurrent layer's conv and recurrent states
        return DTYPE_NAMES.get(layer.dtype, str(layer.dtype).removeprefix("torch."))
    if isinstance(layer, Fp8QuantizedLayer):
        return "fp8-e4m3"
    if isinstance(layer, QuantizedLayer):
        return f"{LAYER_BACKENDS.get(type(layer), type(layer).__name__)}-int{layer.nbits}"
    dtype = layer.keys.dtype
    return DTYPE_NAMES.get(dtype, str(dtype).removeprefix("torch."))


def cache_precision_ran(cache: Cache) -> str:
    """What the cache ran, observed from its layers once used: "fp32", "bf16", "hqq-int4", "quanto-int2"; layers
    that differ are joined with "+"."""
    held = [layer for layer in _layers(cache) if layer_holds_states(layer)]
    if not held:
        raise ValueError("the cache holds nothing yet: run the model with it before asking what precision ran")
    return "+".join(dict.fromkeys(_layer_precision(layer) for layer in held))


def cache_settings(cache: Cache) -> dict[str, Any]:
    """The settings a cache runs with, read back from its layers (to record with a measurement)."""
    layer = _layers(cache)[0]
    if isinstance(layer, QuantizedLayer):
        return {
            "cache": "dynamic",
            "backend": LAYER_BACKENDS.get(type(layer), type(layer).__name__),
            "residual_length": layer.residual_length,
            "q_group_size": layer.q_group_size,
            "axis_key": layer.axis_key,
            "axis_value": layer.axis_value,
            "nbits": layer.nbits,
        }
    if isinstance(cache, StaticCache):
        return {"cache": "static", "max_cache_len": layer.max_cache_len}
    return {"cache": "dynamic"}

