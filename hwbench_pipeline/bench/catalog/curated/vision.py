"""ViT and DETR: image models (a classifier and an object detector), trained on grating orientation."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hwbench_pipeline.bench.catalog.curated.base import SIZE_FROM_CONFIG, CuratedFamily, FamilySpec
from hwbench_pipeline.bench.catalog.curated.presets import tower

if TYPE_CHECKING:
    import torch


# fmt: off
def _vit(hidden: int, layers: int, heads: int, inter: int, image: int, patch: int, labels: int) -> dict:
    return tower(hidden, layers, heads, inter, image_size=image, patch_size=patch, num_labels=labels)


def _resnet(stem: int, widths: list[int], depths: list[int], block: str) -> dict[str, Any]:
    """transformers' own ResNet as DETR backbone: random init, no timm, no pretrained download."""
    return dict(
        model_type="resnet", embedding_size=stem, hidden_sizes=widths, depths=depths, layer_type=block,
        out_features=["stage4"],
    )


def _detr(
    d_model: int, layers: int, heads: int, ffn: int, queries: int, backbone: dict, image: tuple[int, int]
) -> dict[str, Any]:
    return dict(
        d_model=d_model, encoder_layers=layers, decoder_layers=layers, encoder_attention_heads=heads,
        decoder_attention_heads=heads, encoder_ffn_dim=ffn, decoder_ffn_dim=ffn, num_queries=queries,
        num_labels=91, backbone_config=backbone, bench_image_size=image,
    )


_VIT_PRESETS = {  # (hidden, layers, heads, intermediate, image, patch, labels)
    "tiny": _vit(32, 2, 2, 64, 32, 8, 10),
    "small": _vit(192, 12, 3, 768, 224, 16, 1000),  # shape of facebook/deit-tiny-patch16-224 (ViT-Ti/16)
    "base": _vit(768, 12, 12, 3072, 224, 16, 1000),  # shape of google/vit-base-patch16-224
    "full": _vit(1024, 24, 16, 4096, 224, 16, 1000),  # shape of google/vit-large-patch16-224
}
# (d_model, layers each side, heads, ffn, queries, backbone, input (height, width)); the published DETRs
# use timm ResNets, here transformers' ResNet of the same shape (parameter counts differ slightly).
_DETR_PRESETS = {
    "tiny": _detr(32, 1, 2, 64, 10, _resnet(8, [8, 16, 32, 64], [1, 1, 1, 1], "basic"), (64, 64)),
    # reduced DETR: ResNet-18 backbone (shape of microsoft/resnet-18), 3+3 layers, 256 px input
    "small": _detr(
        256, 3, 8, 1024, 100, _resnet(64, [64, 128, 256, 512], [2, 2, 2, 2], "basic"), (256, 256)
    ),
    # shape of facebook/detr-resnet-50; a 4:3 COCO image at the 800 px evaluation scale
    "base": _detr(
        256, 6, 8, 2048, 100, _resnet(64, [256, 512, 1024, 2048], [3, 4, 6, 3], "bottleneck"), (800, 1066)
    ),
    # shape of facebook/detr-resnet-101
    "full": _detr(
        256, 6, 8, 2048, 100, _resnet(64, [256, 512, 1024, 2048], [3, 4, 23, 3], "bottleneck"),
        (800, 1066),
    ),
}
# fmt: on


def _vit_inputs(config: Any, batch: int, seq_len: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    import torch

    side = config.image_size
    return {"pixel_values": torch.randn(batch, config.num_channels, side, side, generator=gen)}


def _detr_inputs(config: Any, batch: int, seq_len: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    import torch

    height, width = getattr(config, "bench_image_size", (800, 1066))
    return {"pixel_values": torch.randn(batch, config.num_channels, height, width, generator=gen)}


def _detr_backbone(config: Any) -> tuple[int, int]:
    """(residual blocks, output channels) of DETR's ResNet backbone."""
    backbone = config.backbone_config
    return sum(backbone.depths), backbone.hidden_sizes[-1]


def _plant_task(
    config: Any, inputs: dict[str, torch.Tensor], labels: torch.Tensor, gen: torch.Generator, seq_len: int, seed: int
) -> None:
    """Gratings of make_inputs' image size."""
    from hwbench_pipeline.bench import tasks

    _, channels, height, width = inputs["pixel_values"].shape
    inputs["pixel_values"] = tasks.grating_images(gen, labels, channels, height, width)


VIT = CuratedFamily(
    spec=FamilySpec("vit", "vision", "image", SIZE_FROM_CONFIG, False, "ViTForImageClassification", 1),
    presets=_VIT_PRESETS,
    make_inputs=_vit_inputs,
    task="image_orientation",
    objective="own_classifier",
    plant_task=_plant_task,
    has_vocabulary=False,
)
DETR = CuratedFamily(
    spec=FamilySpec("detr", "vision", "image", SIZE_FROM_CONFIG, False, "DetrForObjectDetection", 1),
    presets=_DETR_PRESETS,
    make_inputs=_detr_inputs,
    task="image_orientation",
    objective="own_classifier",
    plant_task=_plant_task,
    vision_tower=_detr_backbone,
    has_vocabulary=False,
)
