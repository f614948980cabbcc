"""Greedy decoding in torch: the model called step by step with a transformers cache (dynamic, static, or
static with the forward compiled by torch.compile), as a user's own decode loop runs it."""

from __future__ import annotations

import contextlib
import inspect
from typing import Any

import torch

from hwbench_pipeline.bench.backends.torch.config import AUTOCAST_DTYPES
from hwbench_pipeline.bench.failures import UnsupportedConfigurationError
from hwbench_pipeline.bench.precision import MODEL_CACHE_PRECISION, parse_spec

#: the cache implementations torch offers, its default first; "compiled" is the static cache with the model's
#: forward compiled by torch.compile (fixed shapes per decode step are what makes compiling worth it)
GENERATION_CACHES = ("dynamic", "static", "compiled")
#: int8-static is not offered: its activation scales are calibrated on one input shape, prefill and decode run two
GENERATION_PRECISION_SPECS = ("fp32", "bf16", "fp16", "int8-dynamic")


class TorchGenerator:
    def __init__(self, model: torch.nn.Module, inputs: dict[str, Any], device: str, precision: str, *,
                 max_new_tokens: int, cache: str, cache_precision: str = MODEL_CACHE_PRECISION,
                 residual_length: int = 0) -> None:
        if cache not in GENERATION_CACHES:
            raise UnsupportedConfigurationError(f"torch has no {cache!r} cache; it offers "
                                                f"{', '.join(GENERATION_CACHES)}")
        fmt, quantization = parse_spec(precision)
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.encoder_decoder = bool(getattr(model.config, "is_encoder_decoder", False))
        if self.encoder_decoder and (cache != "dynamic" or cache_precision != MODEL_CACHE_PRECISION):
            raise UnsupportedConfigurationError(
                f"{type(model).__name__} is an encoder-decoder: torch generation runs it with a dynamic cache in "
                f"the model's precision only (transformers' static and quantized caches serve decoder-only models)")
        if fmt == "int8":
            from hwbench_pipeline.bench.backends.torch.backend import quantize_int8

            if quantization != "dynamic":
                raise UnsupportedConfigurationError(
                    f"int8-{quantization} is not offered for generation: its activation scales are calibrated on "
                    f"one input shape, and prefill and decode steps run two")
            quantize_int8(self.model, quantization, None, self.device, ())
        self.precision = fmt
        self.cache_implementation = cache
        self.cache_precision = cache_precision  # the request until a cache exists; then what it holds
        self.from_cache = False  # torch runs the model itself: nothing exported, nothing cached
        self.cache_write_s = 0.0
        self._requested_cache_precision = cache_precision
        self._residual_length = residual_length
        self._autocast_dtype = AUTOCAST_DTYPES.get(fmt)
        self._prompt = {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
        prompt_ids = self._prompt["decoder_input_ids" if self.encoder_decoder else "input_ids"]
        self._prompt_len = prompt_ids.shape[1]
        self._max_len = self._prompt_len + max_new_tokens
        self._forward = self.model.forward
        # only the last position's logits pick a token: generate() asks for just those, and so do we
        self._last_logits_only = {"logits_to_keep": 1} \
            if "logits_to_keep" in inspect.signature(self.model.forward).parameters else {}
        # compiled: the decode step only, whose shapes never change (transformers' static cache is not meant to be
        # initialised inside a compiled prefill); one static cache, reset per sequence, so no step recompiles
        self._decode_forward = torch.compile(self.model.forward, dynamic=False) if cache == "compiled" \
            else self._forward
        from hwbench_pipeline.bench.backends.torch.kv_cache import prepare

        self.cache_setup_s = prepare(cache_precision)  # a quantized cache's one-time build, before any timing
        self._cache: Any = None
        self._cache_checked = False
        self._encoder: dict[str, Any] = {}
        self._position = 0
        self._logits: torch.Tensor | None = None
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def _context(self) -> contextlib.AbstractContextManager:
        from hwbench_pipeline.bench.backends.torch.backend import autocast_context

        return autocast_context(self.device, self._autocast_dtype)

    def _new_cache(self) -> Any:
        if self.encoder_decoder:
            from transformers import DynamicCache, EncoderDecoderCache

            return EncoderDecoderCache(DynamicCache(), DynamicCache())
        from hwbench_pipeline.bench.backends.torch.kv_cache import make_cache

        kind = "static" if self.cache_implementation == "compiled" else self.cache_implementation
        return make_cache(self.model, self._requested_cache_precision, kind, max_cache_len=self._max_len,
                          residual_length=self._residual_length)

    def _greedy(self, out: Any) -> torch.Tensor:
        self._logits = out.logits[:, -1]
        token = self._logits.argmax(-1)
        return token.cpu()  # on the host: the loop (or a stream) needs it, and a device sync comes with it

    def start(self, inputs: dict[str, Any] | None = None) -> torch.Tensor:
        """Prefill the prompt this generator was made for (``inputs``, when given, must be shaped like it)."""
        prompt = self._prompt if inputs is None else {
            k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
        self._position = self._prompt_len
        with torch.inference_mode(), self._context():
            if self.cache_implementation == "compiled" and self._cache is not None:
                self._cache.reset()  # the same cache tensors: the compiled step's guards hold
            else:
                self._cache = self._new_cache()
            if self.encoder_decoder:
                encoder_inputs = {k: v for k, v in prompt.items() if not k.startswith("decoder_")}
                encoder = self.model.get_encoder()(**encoder_inputs)
                self._encoder = {"encoder_outputs": encoder}
                if "attention_mask" in prompt:
                    self._encoder["attention_mask"] = prompt["attention_mask"]
                out = self._forward(**self._encoder, decoder_input_ids=prompt["decoder_input_ids"],
                                    cache=self._cache, use_cache=True, **self._last_logits_only)
            else:
                positions = torch.arange(self._prompt_len, device=self.device)
                out = self._forward(**prompt, cache=self._cache, use_cache=True, cache_position=positions,
                                    **self._last_logits_only)
            if not self._cache_checked:  # once: the first prefill shows whether the model uses the cache at all
                from hwbench_pipeline.bench.backends.torch.kv_cache import holds_states

                if not holds_states(self._cache):
                    raise UnsupportedConfigurationError(
                        f"{type(self.model).__name__} stored nothing in transformers' cache during the prefill (it "
                        f"keeps no cache, or one of its own): a decode loop over a cache cannot run it")
                self._cache_checked = True
            return self._greedy(out)

    def next(self, tokens: torch.Tensor) -> torch.Tensor:
        if self._position >= self._max_len:
            raise ValueError(f"this generator was made for {self._max_len - self._prompt_len} new tokens")
        step = tokens.to(self.device)[:, None]
        position = torch.tensor([self._position], device=self.device)
        with torch.inference_mode(), self._context():
            if self.encoder_decoder:
                out = self._decode_forward(**self._encoder, decoder_input_ids=step, cache=self._cache,
                                    use_cache=True, cache_position=position)
            else:
                # no mask: prompts carry no padding, and a mask that grows each step would give a compiled
                # forward a new shape, so a recompilation, at every token
                out = self._decode_forward(input_ids=step, cache=self._cache, use_cache=True,
                                           cache_position=position)
        self._position += 1
        return self._greedy(out)

    def last_logits(self) -> torch.Tensor:
        if self._logits is None:
            raise RuntimeError("no step has run yet")
        return self._logits.float().cpu()

    def cache_bytes(self) -> int | None:
        if self._cache is None:
            return None
        from hwbench_pipeline.bench.backends.torch.kv_cache import cache_bytes, cache_precision_ran

        self.cache_precision = cache_precision_ran(self._cache)
        return cache_bytes(self._cache)

    def peak_memory_mb(self) -> float | None:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        return None

    def release(self) -> None:
        self._cache = self._encoder = self._logits = None
        del self.model, self._prompt, self._forward, self._decode_forward
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
