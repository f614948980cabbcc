"""CLIP and X-CLIP: contrastive text + image (X-CLIP: video) models, scored by text-to-image similarity."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from hwbench_pipeline.bench.catalog.curated.base import CuratedFamily, FamilySpec, clip_vision_tower, text_tower
from hwbench_pipeline.bench.catalog.curated.presets import tower
from hwbench_pipeline.bench.catalog.curated.tensors import check_seq_len, full_attention_mask, token_ids

if TYPE_CHECKING:
    import torch


# fmt: off
def _xclip_vision(
    hidden: int, layers: int, heads: int, inter: int, image: int, patch: int, mit: int, mit_heads: int = 8
) -> dict[str, Any]:
    """X-CLIP video tower: CLIP ViT over 8 frames + a 1-layer multi-frame integration transformer (mit)."""
    return tower(
        hidden, layers, heads, inter, image_size=image, patch_size=patch, num_frames=8, mit_hidden_size=mit,
        mit_intermediate_size=4 * mit, mit_num_attention_heads=mit_heads,
    )


_CLIP_PRESETS = {  # text towers keep CLIP's 77-token context; eos = last vocabulary id, as in the published vocab
    "tiny": dict(
        text_config=tower(32, 2, 2, 64, vocab_size=1024, bos_token_id=1022, eos_token_id=1023),
        vision_config=tower(32, 2, 2, 64, image_size=32, patch_size=8), projection_dim=32,
    ),
    # reduced CLIP ViT-B/32: 4-layer 256-wide towers, full 49408-token text vocabulary
    "small": dict(
        text_config=tower(256, 4, 4, 1024),
        vision_config=tower(256, 4, 4, 1024, image_size=224, patch_size=32), projection_dim=256,
    ),
    # shape of openai/clip-vit-base-patch32
    "base": dict(
        text_config=tower(512, 12, 8, 2048, vocab_size=49408),
        vision_config=tower(768, 12, 12, 3072, image_size=224, patch_size=32), projection_dim=512,
    ),
    # shape of openai/clip-vit-large-patch14
    "full": dict(
        text_config=tower(768, 12, 12, 3072, vocab_size=49408),
        vision_config=tower(1024, 24, 16, 4096, image_size=224, patch_size=14), projection_dim=768,
    ),
}
_XCLIP_PRESETS = {  # vision: (hidden, layers, heads, intermediate, image, patch, mit width), 8 frames
    "tiny": dict(
        text_config=tower(32, 2, 2, 64, vocab_size=1024),
        vision_config=_xclip_vision(32, 2, 2, 64, 32, 8, 32, 2),
        projection_dim=32, prompt_layers=1, prompt_num_attention_heads=2,
    ),
    # reduced X-CLIP: 4-layer 256-wide towers, 8 frames at 224 px / patch 32
    "small": dict(
        text_config=tower(256, 4, 4, 1024),
        vision_config=_xclip_vision(256, 4, 4, 1024, 224, 32, 256, 4),
        projection_dim=256, prompt_num_attention_heads=4,
    ),
    # shape of microsoft/xclip-base-patch32
    "base": dict(
        text_config=tower(512, 12, 8, 2048),
        vision_config=_xclip_vision(768, 12, 12, 3072, 224, 32, 512),
        projection_dim=512,
    ),
    # shape of microsoft/xclip-large-patch14
    "full": dict(
        text_config=tower(768, 12, 12, 3072),
        vision_config=_xclip_vision(1024, 24, 16, 4096, 224, 14, 768),
        projection_dim=768,
    ),
}
# fmt: on


def _text_limit(config: Any) -> int:
    return config.text_config.max_position_embeddings


def _inputs(
    config: Any, batch: int, seq_len: int, gen: torch.Generator, *, family: str, video: bool
) -> dict[str, torch.Tensor]:
    import torch

    text, vision = config.text_config, config.vision_config
    check_seq_len(family, seq_len, _text_limit(config), "text tokens")
    # text features are pooled at the end-of-text token: the last id, also the highest (X-CLIP: argmax)
    ids = token_ids(gen, batch, seq_len, text.vocab_size - 2, last=text.vocab_size - 1)
    frames = (vision.num_frames,) if video else ()
    pixels = torch.randn(batch, *frames, vision.num_channels, vision.image_size, vision.image_size, generator=gen)
    return {"input_ids": ids, "attention_mask": full_attention_mask(batch, seq_len), "pixel_values": pixels}


def _plant_task(
    config: Any,
    inputs: dict[str, torch.Tensor],
    labels: torch.Tensor,
    gen: torch.Generator,
    seq_len: int,
    seed: int,
    *,
    family: str,
    video: bool,
) -> None:
    """Gratings (X-CLIP: drifting gratings), scored against one prompt per class."""
    from hwbench_pipeline.bench import tasks

    shape = inputs["pixel_values"].shape
    frames = shape[1] if video else None
    inputs["pixel_values"] = tasks.grating_images(gen, labels, shape[-3], shape[-2], shape[-1], frames)
    inputs.update(tasks.class_prompts(family, config, seq_len, seed))


def _contrastive(spec: FamilySpec, presets: dict[str, dict[str, Any]], *, video: bool) -> CuratedFamily:
    return CuratedFamily(
        spec=spec,
        presets=presets,
        make_inputs=partial(_inputs, family=spec.name, video=video),
        task="video_text" if video else "image_text",
        objective="prompt_similarity",
        plant_task=partial(_plant_task, family=spec.name, video=video),
        text_limit=_text_limit,
        main_tower=text_tower,
        vision_tower=clip_vision_tower,
    )


CLIP = _contrastive(
    FamilySpec("clip", "multimodal", "text+image", "text tokens (image size fixed by config)", False, "CLIPModel", 77),
    _CLIP_PRESETS,
    video=False,
)
XCLIP = _contrastive(
    FamilySpec(
        "xclip", "video", "video+text", "text tokens (frame count and size fixed by config)", False, "XCLIPModel", 77
    ),
    _XCLIP_PRESETS,
    video=True,
)
