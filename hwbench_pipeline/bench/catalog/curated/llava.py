"""LLaVA and LLaVA-NeXT: vision-language models (a CLIP vision tower whose image features take the place of
placeholder tokens in a Llama prompt; LLaVA-NeXT tiles the image AnyRes-style)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from hwbench_pipeline.bench.catalog.curated.base import CuratedFamily, FamilySpec, clip_vision_tower, text_tower
from hwbench_pipeline.bench.catalog.curated.presets import decoder_lm, tower
from hwbench_pipeline.bench.catalog.curated.tensors import check_seq_len, token_ids

if TYPE_CHECKING:
    import torch


# fmt: off
def _anyres_grid(tile: int) -> list[list[int]]:
    """LLaVA-NeXT's published AnyRes pinpoints (multiples of 336 px) rescaled to another tile size."""
    return [[h * tile, w * tile] for h, w in ((1, 2), (2, 1), (2, 2), (3, 1), (1, 3))]


# CLIP ViT-L/14 at 336 px: the vision tower of llava-hf/llava-1.5-7b-hf and llava-hf/llava-v1.6-vicuna-7b-hf.
_CLIP_L14_336 = tower(1024, 24, 16, 4096, image_size=336, patch_size=14, projection_dim=768)
# vicuna-7b-v1.5 (Llama-2-7B shape) with the llava-hf vocabulary of 32064 (image token 32000).
_VICUNA_7B = decoder_lm(32064, 4096, 32, 32, 11008, 32, max_position_embeddings=4096, rms_norm_eps=1e-5)
# The 'base' llava presets keep the published vision tower and projector but reduce the LM (a 7B LM needs
# ~28 GB in fp32) to the TinyLlama-1.1B shape (TinyLlama/TinyLlama-1.1B-Chat-v1.0), the LM TinyLLaVA-1.5B
# pairs with CLIP ViT-L/14-336; vocabulary kept at llava-hf's 32064.
_TINYLLAMA_1B = decoder_lm(32064, 2048, 22, 32, 5632, 4, max_position_embeddings=2048, rms_norm_eps=1e-5)
# Tiny / small LMs shared by llava and llava_next; small = stories15M shape (see llama) with the llava vocab.
_LLM_TINY = decoder_lm(1024, 64, 2, 4, 128, 2)
_LLM_SMALL = decoder_lm(32064, 288, 6, 6, 768, 6)


def _llava(vision: dict, text: dict, image_token: int = 32000, **kw: Any) -> dict[str, Any]:
    return dict(
        vision_config={"model_type": "clip_vision_model", **vision},
        text_config={"model_type": "llama", **text}, image_token_index=image_token, **kw,
    )


def _llava_next(vision: dict, text: dict, image_token: int = 32000) -> dict[str, Any]:
    """LLaVA-NeXT with the published AnyRes grid scaled to the tile size; the benchmark image is a square on
    the 2x2 grid (4 tiles + the base tile), what a typical photo gets."""
    tile = vision["image_size"]
    grid, image = _anyres_grid(tile), (2 * tile, 2 * tile)
    return _llava(vision, text, image_token, image_grid_pinpoints=grid, bench_image_size=image)


_LLAVA_PRESETS = {
    "tiny": _llava(tower(32, 2, 2, 64, image_size=32, patch_size=8), _LLM_TINY, image_token=1000),
    # reduced LLaVA-1.5: 4-layer CLIP/14 tower at 112 px (64 image tokens) + stories15M-shaped Llama
    "small": _llava(tower(256, 4, 4, 1024, image_size=112, patch_size=14), _LLM_SMALL),
    # llava-hf/llava-1.5-7b-hf vision tower + projector with the LM reduced to TinyLlama-1.1B (see above)
    "base": _llava(_CLIP_L14_336, _TINYLLAMA_1B, image_seq_length=576),
    "full": _llava(_CLIP_L14_336, _VICUNA_7B, image_seq_length=576),  # shape of llava-hf/llava-1.5-7b-hf
}
_LLAVA_NEXT_PRESETS = {
    "tiny": _llava_next(tower(32, 2, 2, 64, image_size=32, patch_size=8), _LLM_TINY, image_token=1000),
    # reduced LLaVA-NeXT: 4-layer CLIP tower on 64 px tiles / patch 16 (88 image tokens), stories15M LM
    "small": _llava_next(tower(256, 4, 4, 1024, image_size=64, patch_size=16), _LLM_SMALL),
    # llava-hf/llava-v1.6-vicuna-7b-hf vision tower + projector with the LM reduced to TinyLlama-1.1B
    "base": _llava_next(_CLIP_L14_336, _TINYLLAMA_1B),
    # shape of llava-hf/llava-v1.6-vicuna-7b-hf
    "full": _llava_next(_CLIP_L14_336, _VICUNA_7B),
}
# fmt: on


def llava_next_image_size(config: Any) -> tuple[int, int]:
    """(height, width) of the image make_inputs feeds LLaVA-NeXT (``config.bench_image_size``; set it to
    change the AnyRes tiling): by default a square on the 2x2 AnyRes grid."""
    side = 2 * config.vision_config.image_size
    height, width = getattr(config, "bench_image_size", (side, side))
    return height, width


def anyres_grid_shape(config: Any) -> tuple[int, int]:
    """(rows, columns) of the AnyRes tiles LLaVA-NeXT cuts its image into (the base tile comes on top)."""
    from transformers.models.llava_next.modeling_llava_next import get_anyres_image_grid_shape

    size = llava_next_image_size(config)
    return get_anyres_image_grid_shape(size, config.image_grid_pinpoints, config.vision_config.image_size)


def _patches_per_side(config: Any) -> int:
    vision = config.vision_config
    return vision.image_size // vision.patch_size


def _llava_image_tokens(config: Any) -> int:
    side = _patches_per_side(config)
    return side * side  # the "default" feature strategy drops the CLS token


def _llava_next_image_tokens(config: Any) -> int:
    import torch
    from transformers.models.llava_next.modeling_llava_next import unpad_image

    side = _patches_per_side(config)
    rows, cols = anyres_grid_shape(config)
    grid = unpad_image(torch.empty(0, rows * side, cols * side), llava_next_image_size(config))
    return side * side + grid.shape[1] * (grid.shape[2] + 1)  # base tile + tile grid with one newline per row


def _tile(config: Any) -> tuple[int, int, int]:
    vision = config.vision_config
    return vision.num_channels, vision.image_size, vision.image_size


def _llava_pixels(config: Any, batch: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    import torch

    return {"pixel_values": torch.randn(batch, *_tile(config), generator=gen)}


def _llava_next_pixels(config: Any, batch: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """The base tile + the grid tiles, and the original image size."""
    import torch

    rows, cols = anyres_grid_shape(config)
    return {
        "pixel_values": torch.randn(batch, rows * cols + 1, *_tile(config), generator=gen),
        "image_sizes": torch.tensor([list(llava_next_image_size(config))] * batch),
    }


PixelRecipe = Callable[[Any, int, "torch.Generator"], "dict[str, torch.Tensor]"]


def _inputs(
    config: Any,
    batch: int,
    seq_len: int,
    gen: torch.Generator,
    *,
    family: str,
    pixels: PixelRecipe,
    image_tokens: Callable[[Any], int],
) -> dict[str, torch.Tensor]:
    import torch

    check_seq_len(family, seq_len, None, "text tokens")
    text, image_token = config.text_config, config.image_token_index
    images = pixels(config, batch, gen)
    # prompt: <bos>, the image placeholders, then seq_len - 1 text tokens (ids below the image token)
    words = token_ids(gen, batch, seq_len, min(text.vocab_size, image_token), low=3, first=text.bos_token_id)
    placeholders = torch.full((batch, image_tokens(config)), image_token)
    ids = torch.cat([words[:, :1], placeholders, words[:, 1:]], dim=1)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), **images}


def _llava_task_pixels(
    config: Any, inputs: dict[str, torch.Tensor], labels: torch.Tensor, gen: torch.Generator
) -> torch.Tensor:
    from hwbench_pipeline.bench import tasks

    channels, height, width = _tile(config)
    return tasks.grating_images(gen, labels, channels, height, width)


def _llava_next_task_pixels(
    config: Any, inputs: dict[str, torch.Tensor], labels: torch.Tensor, gen: torch.Generator
) -> torch.Tensor:
    """A full-size grating cut into make_inputs' AnyRes tiles."""
    from hwbench_pipeline.bench import tasks

    channels = config.vision_config.num_channels
    images = tasks.grating_images(gen, labels, channels, *llava_next_image_size(config))
    return _anyres_tiles(images, config, inputs["pixel_values"].shape[1])


def _anyres_tiles(images: torch.Tensor, config: Any, tiles: int) -> torch.Tensor:
    """AnyRes tiles of full-size images: the whole image downscaled to one tile, then the grid's crops."""
    import torch
    from torch import nn

    tile = config.vision_config.image_size
    height, width = images.shape[-2:]
    rows, cols = height // tile, width // tile
    if rows * tile != height or cols * tile != width or rows * cols + 1 != tiles:
        raise ValueError(f"llava_next: image {height}x{width} is not a {tile}-pixel tile grid of {tiles - 1} tiles")
    base = nn.functional.interpolate(images, size=(tile, tile), mode="area")
    crops = [images[..., r * tile:(r + 1) * tile, c * tile:(c + 1) * tile] for r in range(rows) for c in range(cols)]
    return torch.stack([base, *crops], dim=1)


def _plant_task(
    config: Any,
    inputs: dict[str, torch.Tensor],
    labels: torch.Tensor,
    gen: torch.Generator,
    seq_len: int,
    seed: int,
    *,
    family: str,
    task_pixels: Callable[..., torch.Tensor],
) -> None:
    """A grating image, then a prompt of filler and the query token whose next token is the answer."""
    from hwbench_pipeline.bench import tasks

    inputs["pixel_values"] = task_pixels(config, inputs, labels, gen)
    words = seq_len - 1  # make_inputs: <bos>, the image placeholders, then seq_len - 1 text tokens
    if words < 1:
        raise ValueError(f"{family}: the task needs seq_len >= 2 (<bos>, then the query token)")
    ids = inputs["input_ids"]
    ids[:, -words:] = tasks.SYMBOL_OFFSET + tasks.FILLER
    ids[:, -1] = tasks.SYMBOL_OFFSET + tasks.QUERY


def _vision_language(
    spec: FamilySpec,
    presets: dict[str, dict[str, Any]],
    pixels: PixelRecipe,
    image_tokens: Callable[[Any], int],
    task_pixels: Callable[..., torch.Tensor],
) -> CuratedFamily:
    return CuratedFamily(
        spec=spec,
        presets=presets,
        make_inputs=partial(_inputs, family=spec.name, pixels=pixels, image_tokens=image_tokens),
        task="image_text",
        objective="answer_token",
        plant_task=partial(_plant_task, family=spec.name, task_pixels=task_pixels),
        main_tower=text_tower,
        vision_tower=clip_vision_tower,
        image_tokens=image_tokens,
    )


LLAVA = _vision_language(
    FamilySpec(
        "llava", "multimodal", "image+text", "text tokens (one image's placeholder tokens come on top)",
        True, "LlavaForConditionalGeneration", 64,
    ),
    _LLAVA_PRESETS, _llava_pixels, _llava_image_tokens, _llava_task_pixels,
)
LLAVA_NEXT = _vision_language(
    FamilySpec(
        "llava_next", "multimodal", "image+text",
        "text tokens (placeholder tokens of one 2x2-tile AnyRes image come on top)",
        True, "LlavaNextForConditionalGeneration", 64,
    ),
    _LLAVA_NEXT_PRESETS, _llava_next_pixels, _llava_next_image_tokens, _llava_next_task_pixels,
)
