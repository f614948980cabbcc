"""Inputs for one forward pass of any architecture, derived from its config and its forward signature.

An input recipe is a function ``(model, config, batch, seq, generator) -> dict of tensors``. ``recipes_for``
lists the recipes worth trying for a model, most specific first; the caller runs them in order and records
which one ran (docs/catalog.md). Token ids avoid every special token id of the config, so that a random
prompt never holds an image or audio placeholder the model would try to fill.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch


class NotApplicable(ValueError):
    """The recipe does not fit this kind of model at all (it is skipped, not counted as a failure)."""


Recipe = Callable[[Any, Any, int, int, torch.Generator], dict[str, torch.Tensor]]
AUDIO_SAMPLES = 16000  # one second of 16 kHz audio
DEFAULT_IMAGE_SIZE = 224


def forward_parameters(model: Any) -> set[str]:
    return set(inspect.signature(model.forward).parameters)


def _towers(config: Any) -> list[Any]:
    from hwbench_pipeline.bench.catalog.scaling import sub_configs

    return sub_configs(config)


def _attribute(config: Any, *names: str, default: Any = None) -> Any:
    """The first of ``names`` set on the config or any of its towers, outermost first."""
    for part in _towers(config):
        for name in names:
            value = getattr(part, name, None)
            if value is not None:
                return value
    return default


def _vocab_size(config: Any) -> int:
    from hwbench_pipeline.bench.catalog.scaling import config_text_tower

    text = config_text_tower(config)
    return int(getattr(text, "vocab_size", None) or _attribute(config, "vocab_size", default=1000))


def _special_ids(config: Any) -> set[int]:
    ids: set[int] = set()
    for part in _towers(config):
        for name, value in vars(part).items():
            if name.endswith(("_token_id", "_token_index", "_token_ids")):
                for v in value if isinstance(value, (list, tuple)) else [value]:
                    if isinstance(v, int) and not isinstance(v, bool):
                        ids.add(v)
    return ids


def token_ids(config: Any, batch: int, length: int, gen: torch.Generator) -> torch.Tensor:
    vocab = _vocab_size(config)
    special = _special_ids(config)
    ids = torch.randint(0, vocab, (batch, length), generator=gen)
    plain = next((i for i in range(3, vocab) if i not in special), 0)
    for token in special:
        ids[ids == token] = plain
    return ids


def _image_side(config: Any) -> tuple[int, int]:
    size = _attribute(config, "image_size", "input_size", "img_size", default=DEFAULT_IMAGE_SIZE)
    if isinstance(size, dict):
        size = (size.get("height", DEFAULT_IMAGE_SIZE), size.get("width", DEFAULT_IMAGE_SIZE))
    if isinstance(size, (list, tuple)):
        return int(size[-2]), int(size[-1])
    return int(size), int(size)


def _channels(config: Any) -> int:
    return int(_attribute(config, "num_channels", "in_channels", "in_chans", default=3))


def _text(model: Any, config: Any, batch: int, seq: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    params = forward_parameters(model)
    inputs = {"input_ids": token_ids(config, batch, seq, gen)}
    if "attention_mask" in params:
        inputs["attention_mask"] = torch.ones(batch, seq, dtype=torch.long)
    if "token_type_ids" in params and getattr(config, "type_vocab_size", 0):
        inputs["token_type_ids"] = torch.zeros(batch, seq, dtype=torch.long)
    if "decoder_input_ids" in params and getattr(config, "is_encoder_decoder", False):
        inputs["decoder_input_ids"] = token_ids(config, batch, seq, gen)
    return inputs


def _image(model: Any, config: Any, batch: int, seq: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    height, width = _image_side(config)
    return {"pixel_values": torch.randn(batch, _channels(config), height, width, generator=gen)}


def _image_and_text(model: Any, config: Any, batch: int, seq: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    return {**_text(model, config, batch, seq, gen), **_image(model, config, batch, seq, gen)}


def _feature_tokens(features: Any, batch: int) -> int:
    """Image placeholder tokens one image needs: the rows of its features."""
    pooled = getattr(features, "pooler_output", None)
    if pooled is not None:
        features = pooled
    elif not isinstance(features, (torch.Tensor, list, tuple)) and hasattr(features, "last_hidden_state"):
        features = features.last_hidden_state
    if isinstance(features, (list, tuple)):
        first = features[0]
        return int(first.shape[-2] if first.dim() == 3 else first.shape[0])
    if features.dim() == 3:
        return int(features.shape[1])
    return int(features.shape[0]) // batch


def _image_placeholders(model: Any, config: Any, batch: int, seq: int, gen: torch.Generator) -> dict:
    """A prompt holding one image's placeholder tokens, as many as the vision tower makes features."""
    image_token = _attribute(config, "image_token_id", "image_token_index")
    if image_token is None or not hasattr(model, "get_image_features"):
        raise NotApplicable("no image token id or image feature method: not a placeholder-style vision-language model")
    pixels = _image(model, config, batch, seq, gen)["pixel_values"]
    extra = {}
    wanted = inspect.signature(model.get_image_features).parameters
    if "pixel_attention_mask" in wanted:  # images come in groups per prompt: (batch, images, C, H, W)
        pixels = pixels.unsqueeze(1)
    if "image_sizes" in wanted and wanted["image_sizes"].default is inspect.Parameter.empty:
        extra["image_sizes"] = torch.tensor([list(pixels.shape[-2:])] * batch)
    with torch.inference_mode():
        count = _feature_tokens(model.get_image_features(pixel_values=pixels, **extra), batch)
    return {**_prompt_with_placeholders(config, batch, seq, count, int(image_token), gen), "pixel_values": pixels,
            **extra}


def _prompt_with_placeholders(config: Any, batch: int, seq: int, count: int, token: int,
                              gen: torch.Generator) -> dict[str, torch.Tensor]:
    words = token_ids(config, batch, seq, gen)
    ids = torch.cat([words[:, :1], torch.full((batch, count), token), words[:, 1:]], dim=1)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def _image_patch_grid(model: Any, config: Any, batch: int, seq: int, gen: torch.Generator) -> dict:
    """Vision-language models fed flattened patches and a (frames, rows, columns) grid per image."""
    image_token = _attribute(config, "image_token_id", "image_token_index")
    vision = getattr(config, "vision_config", None)
    if image_token is None or vision is None or "image_grid_thw" not in forward_parameters(model):
        raise NotApplicable("no image grid input: not a patch-grid vision-language model")
    patch = int(getattr(vision, "patch_size", 14))
    temporal = int(getattr(vision, "temporal_patch_size", 1) or 1)
    merge = int(getattr(vision, "spatial_merge_size", 1) or 1)
    side = 4 * merge  # patches per side: a 4 x 4 grid of merged tokens
    pixels = torch.randn(batch * side * side, _channels(config) * temporal * patch * patch, generator=gen)
    grid = torch.tensor([[1, side, side]] * batch)
    count = side * side // (merge * merge)
    prompt = _prompt_with_placeholders(config, batch, seq, count, int(image_token), gen)
    if "mm_token_type_ids" in forward_parameters(model):  # 1 marks an image token, 0 text
        prompt["mm_token_type_ids"] = (prompt["input_ids"] == int(image_token)).long()
    return {**prompt, "pixel_values": pixels, "image_grid_thw": grid}


def _patch_grid(model: Any, config: Any, batch: int, seq: int, gen: torch.Generator) -> dict:
    """A patch-grid vision tower on its own: every image's flattened patches, one after another, and the
    (frames, rows, columns) grid of each."""
    params = forward_parameters(model)
    grid_name = next((n for n in ("grid_thw", "image_grid_thw") if n in params), None)
    patches_name = next((n for n in ("hidden_states", "pixel_values") if n in params), None)
    if grid_name is None or patches_name is None:
        raise NotApplicable("no grid input: not a patch-grid vision tower")
    patch = int(getattr(config, "patch_size", 14))
    temporal = int(getattr(config, "temporal_patch_size", 1) or 1)
    merge = int(getattr(config, "spatial_merge_size", 1) or 1)
    side = 4 * merge
    channels = int(_attribute(config, "in_channels", "num_channels", "in_chans", default=3))
    return {patches_name: torch.randn(batch * side * side, channels * temporal * patch * patch, generator=gen),
            grid_name: torch.tensor([[1, side, side]] * batch)}


def _time_series(model: Any, config: Any, batch: int, seq: int, gen: torch.Generator) -> dict:
    params = forward_parameters(model)
    lags = max(getattr(config, "lags_sequence", None) or [0])
    length = int(getattr(config, "context_length", 64)) + int(lags)
    channels = getattr(config, "num_input_channels", None)
    shape = (batch, length, int(channels)) if channels else (batch, length) if getattr(config, "input_size", 1) == 1 \
        else (batch, length, int(config.input_size))
    inputs = {"past_values": torch.randn(*shape, generator=gen)}
    if "past_observed_mask" in params:
        inputs["past_observed_mask"] = torch.ones(*shape)
    features = int(getattr(config, "num_time_features", 0) or 0)
    required = {n for n, p in inspect.signature(model.forward).parameters.items()
                if p.default is inspect.Parameter.empty}
    if "past_time_features" in params and (features or "past_time_features" in required):
        inputs["past_time_features"] = torch.randn(batch, length, features, generator=gen)
    horizon = int(getattr(config, "prediction_length", 0) or 0)
    if "future_time_features" in params and (features or "future_time_features" in required) and horizon:
        inputs["future_time_features"] = torch.randn(batch, horizon, features, generator=gen)
    if "static_categorical_features" in params and getattr(config, "num_static_categorical_features", 0):
        inputs["static_categorical_features"] = torch.zeros(batch, config.num_static_categorical_features,
                                                            dtype=torch.long)
    if "static_real_features" in params and getattr(config, "num_static_real_features", 0):
        inputs["static_real_features"] = torch.randn(batch, config.num_static_real_features, generator=gen)
    return inputs


def _video(model: Any, config: Any, batch: int, seq: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    height, width = _image_side(config)
    frames = int(_attribute(config, "num_frames", "frames_per_clip", default=8))
    name = "pixel_values_videos" if "pixel_values_videos" in forward_parameters(model) else "pixel_values"
    return {name: torch.randn(batch, frames, _channels(config), height, width, generator=gen)}


def _waveform(model: Any, config: Any, batch: int, seq: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """One second of real speech (the shipped clip), the same on every channel of a multichannel model."""
    from hwbench_pipeline.bench.speech import speech_waveform

    channels = int(_attribute(config, "audio_channels", default=1))
    wave = speech_waveform(batch, AUDIO_SAMPLES)
    if "padding_mask" in forward_parameters(model) or channels > 1:
        wave = wave.unsqueeze(1).expand(batch, channels, AUDIO_SAMPLES).contiguous()
    return {"input_values": wave}


def _mel_frames(config: Any) -> int:
    source = _attribute(config, "max_source_positions")
    return 2 * int(source) if source else 3000


def _mel_channels_first(model: Any, config: Any, batch: int, seq: int, gen: torch.Generator) -> dict:
    from hwbench_pipeline.bench.speech import speech_log_mel

    mels = int(_attribute(config, "num_mel_bins", "feature_size", "n_mels", default=80))
    # real speech's log-mel features (Whisper's scaling), not noise: what a speech encoder sees in use
    inputs = {"input_features": speech_log_mel(batch, mels, _mel_frames(config))}
    if "decoder_input_ids" in forward_parameters(model):
        inputs["decoder_input_ids"] = token_ids(config, batch, seq, gen)
    return inputs


def _mel_frames_first(model: Any, config: Any, batch: int, seq: int, gen: torch.Generator) -> dict:
    mels = int(_attribute(config, "input_feat_per_channel", "num_mel_bins", "feature_size", "n_mels", default=80))
    channels = int(_attribute(config, "input_channels", default=1))
    frames = min(_mel_frames(config), 200)
    inputs = {"input_features": torch.randn(batch, frames, mels * channels, generator=gen)}
    params = forward_parameters(model)
    if "attention_mask" in params:
        inputs["attention_mask"] = torch.ones(batch, frames, dtype=torch.long)
    if "decoder_input_ids" in params:
        inputs["decoder_input_ids"] = token_ids(config, batch, seq, gen)
    return inputs


def _required(model: Any) -> list[str]:
    return [n for n, p in inspect.signature(model.forward).parameters.items()
            if p.default is inspect.Parameter.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


#: inputs a model may require beside its main one (a detector's text query, a Q-Former's prompt, an audio
#: model's waveform), made as the recipe of that kind makes them
_COMPANIONS: dict[str, Callable[[Any, Any, int, int, torch.Generator], torch.Tensor]] = {
    "input_ids": lambda m, c, b, s, g: token_ids(c, b, s, g),
    "qformer_input_ids": lambda m, c, b, s, g: token_ids(c, b, s, g),
    "task_inputs": lambda m, c, b, s, g: token_ids(c, b, s, g),
    "pixel_values": lambda m, c, b, s, g: _image(m, c, b, s, g)["pixel_values"],
    "input_values": lambda m, c, b, s, g: _waveform(m, c, b, s, g)["input_values"],
    "input_features": lambda m, c, b, s, g: _mel_channels_first(m, c, b, s, g)["input_features"],
}


def with_required_companions(model: Any, config: Any, inputs: dict[str, torch.Tensor], batch: int, seq: int,
                             gen: torch.Generator) -> dict[str, torch.Tensor]:
    """``inputs`` plus every required forward argument a recipe left out that is of a known kind (and the
    attention mask of text it adds)."""
    added = {name: _COMPANIONS[name](model, config, batch, seq, gen) for name in _required(model)
             if name not in inputs and name in _COMPANIONS}
    for name, value in list(added.items()):
        mask = name.replace("input_ids", "attention_mask")
        if name.endswith("input_ids") and mask in forward_parameters(model) and mask not in inputs:
            added[mask] = torch.ones_like(value)
    return {**inputs, **added}


RECIPES: dict[str, Recipe] = {
    "text": _text,
    "image": _image,
    "image placeholders+text": _image_placeholders,
    "image patch grid+text": _image_patch_grid,
    "patch grid": _patch_grid,
    "image+text": _image_and_text,
    "time series": _time_series,
    "video": _video,
    "waveform": _waveform,
    "mel (channels first)": _mel_channels_first,
    "mel (frames first)": _mel_frames_first,
}


def recipes_for(model: Any) -> list[str]:
    """Recipe names worth trying for ``model``, most specific first, from its main input and signature."""
    params = forward_parameters(model)
    main = getattr(model, "main_input_name", "input_ids")
    order: list[str] = []
    if main == "input_ids" and "image_grid_thw" in params:
        order += ["image patch grid+text", "text"]
    elif "input_ids" not in params and {"grid_thw", "image_grid_thw"} & params:
        order += ["patch grid"]
    elif main == "input_ids" and "pixel_values" in params:
        order += ["image placeholders+text", "image+text", "text"]
    elif main == "past_values" or "past_values" in params:
        order += ["time series"]
    elif main in ("pixel_values_videos",) or "pixel_values_videos" in params:
        order += ["video"]
    elif main == "pixel_values":
        order += ["image", "video"]
    elif main == "input_values":
        order += ["waveform"]
    elif main == "input_features":
        order += ["mel (channels first)", "mel (frames first)"]
    if "input_ids" in params and "text" not in order:
        order.append("text")
    return order or ["text"]
