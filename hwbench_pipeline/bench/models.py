"""Model catalog: 13 transformer families x 4 size presets, built offline from configs.

Every model is built from a ``transformers`` config with random weights (nothing is downloaded, no
``from_pretrained``, no tokenizer), so the catalog works on air-gapped hosts. Presets:

* ``tiny``  - unit-test size (< ~2 M params, builds in well under a second);
* ``small`` - realistic architecture at reduced size (~5-40 M params);
* ``base``  - the family's canonical reference size that fits a 2-core / 24 GB CPU host in fp32;
* ``full``  - the published size for big hosts (count its parameters with ``device="meta"``).

``_PRESETS`` holds the config keyword arguments of every family and preset; ``base``/``full`` sizes are
copied from the published ``config.json`` of the model id cited next to them (only sizes matter, weights
are random). Keys starting with ``bench_`` are not transformers fields: they are stored on the config as
extra attributes and read by :func:`make_inputs` (the DETR / LLaVA-NeXT input image size).

Attention is configured as ``attn_implementation="eager"``, so FLOP counting with
``torch.utils.flop_counter.FlopCounterMode`` sees the attention matmuls (the CPU SDPA kernel is not counted).
"""

from __future__ import annotations

import copy
import functools
import inspect
from typing import Any

import torch
import transformers

from hwbench_pipeline.bench.families import (  # noqa: F401 - the catalog's names, re-exported
    CATEGORIES,
    FAMILIES,
    PRESETS,
    FamilySpec,
    UnknownModelError,
    check_model,
    default_seq_len,
    family_spec,
)


# fmt: off
def _bert(vocab: int, hidden: int, layers: int, heads: int, inter: int) -> dict[str, Any]:
    return dict(
        vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=inter, max_position_embeddings=512, type_vocab_size=2,
    )


def _t5(vocab: int, d_model: int, layers: int, heads: int, d_ff: int, d_kv: int) -> dict[str, Any]:
    return dict(
        vocab_size=vocab, d_model=d_model, num_layers=layers, num_heads=heads, d_ff=d_ff, d_kv=d_kv,
        feed_forward_proj="relu",
    )


def _llm(vocab: int, hidden: int, layers: int, heads: int, inter: int, kv: int, **kw: Any) -> dict[str, Any]:
    """Llama / Qwen2 decoder (kv = key/value heads for grouped-query attention)."""
    return dict(
        vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=inter, num_key_value_heads=kv, **kw,
    )


def _tower(hidden: int, layers: int, heads: int, inter: int, **kw: Any) -> dict[str, Any]:
    """A CLIP-style text or vision tower (also X-CLIP, and the LLaVA vision tower)."""
    return dict(
        hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads, intermediate_size=inter, **kw
    )


def _vit(hidden: int, layers: int, heads: int, inter: int, image: int, patch: int, labels: int) -> dict:
    return _tower(hidden, layers, heads, inter, image_size=image, patch_size=patch, num_labels=labels)


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


def _htsat(patch_dim: int, depths: list[int], heads: list[int], spec: int = 256, mels: int = 64) -> dict:
    """CLAP audio tower (a Swin transformer over a spec x spec mel image); hidden = last stage width."""
    return dict(
        patch_embeds_hidden_size=patch_dim, depths=depths, num_attention_heads=heads, spec_size=spec,
        num_mel_bins=mels, hidden_size=patch_dim * 2 ** (len(depths) - 1), enable_fusion=False,
        window_size=8 if spec >= 256 else 4,
    )


def _clap(text: dict, audio: dict, projection: int) -> dict[str, Any]:
    text, audio = {"projection_dim": projection, **text}, {"projection_dim": projection, **audio}
    return dict(text_config=text, audio_config=audio, projection_dim=projection)


def _whisper(vocab: int, d_model: int, layers: int, heads: int, ffn: int, mels: int, source: int, **kw):
    """Whisper encoder input must be exactly 2 * max_source_positions mel frames (1500 -> 3000 = 30 s)."""
    return dict(
        vocab_size=vocab, d_model=d_model, encoder_layers=layers, decoder_layers=layers,
        encoder_attention_heads=heads, decoder_attention_heads=heads,
        encoder_ffn_dim=ffn, decoder_ffn_dim=ffn, num_mel_bins=mels, max_source_positions=source,
        max_target_positions=448, **kw,
    )


def _wav2vec2(hidden: int, layers: int, heads: int, inter: int, **kw: Any) -> dict[str, Any]:
    return _tower(hidden, layers, heads, inter, **kw)


def _xclip_vision(
    hidden: int, layers: int, heads: int, inter: int, image: int, patch: int, mit: int, mit_heads: int = 8
) -> dict[str, Any]:
    """X-CLIP video tower: CLIP ViT over 8 frames + a 1-layer multi-frame integration transformer (mit)."""
    return _tower(
        hidden, layers, heads, inter, image_size=image, patch_size=patch, num_frames=8, mit_hidden_size=mit,
        mit_intermediate_size=4 * mit, mit_num_attention_heads=mit_heads,
    )


def _anyres_grid(tile: int) -> list[list[int]]:
    """LLaVA-NeXT's published AnyRes pinpoints (multiples of 336 px) rescaled to another tile size."""
    return [[h * tile, w * tile] for h, w in ((1, 2), (2, 1), (2, 2), (3, 1), (1, 3))]


# CLIP ViT-L/14 at 336 px: the vision tower of llava-hf/llava-1.5-7b-hf and llava-hf/llava-v1.6-vicuna-7b-hf.
_CLIP_L14_336 = _tower(1024, 24, 16, 4096, image_size=336, patch_size=14, projection_dim=768)
# vicuna-7b-v1.5 (Llama-2-7B shape) with the llava-hf vocabulary of 32064 (image token 32000).
_VICUNA_7B = _llm(32064, 4096, 32, 32, 11008, 32, max_position_embeddings=4096, rms_norm_eps=1e-5)
# The 'base' llava presets keep the published vision tower and projector but reduce the LM (a 7B LM needs
# ~28 GB in fp32) to the TinyLlama-1.1B shape (TinyLlama/TinyLlama-1.1B-Chat-v1.0), the LM TinyLLaVA-1.5B
# pairs with CLIP ViT-L/14-336; vocabulary kept at llava-hf's 32064.
_TINYLLAMA_1B = _llm(32064, 2048, 22, 32, 5632, 4, max_position_embeddings=2048, rms_norm_eps=1e-5)
# Tiny / small LMs shared by llava and llava_next; small = stories15M shape (see llama) with the llava vocab.
_LLM_TINY = _llm(1024, 64, 2, 4, 128, 2)
_LLM_SMALL = _llm(32064, 288, 6, 6, 768, 6)


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


_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "bert": {
        "tiny": _bert(1024, 64, 2, 4, 128),
        "small": _bert(30522, 512, 4, 8, 2048),  # shape of google/bert_uncased_L-4_H-512_A-8 (BERT-Small)
        "base": _bert(30522, 768, 12, 12, 3072),  # shape of google-bert/bert-base-uncased
        "full": _bert(30522, 1024, 24, 16, 4096),  # shape of google-bert/bert-large-uncased
    },
    "t5": {  # (vocab, d_model, layers each side, heads, d_ff, d_kv)
        "tiny": _t5(1024, 64, 2, 4, 128, 16),
        "small": _t5(32128, 256, 4, 4, 1024, 64),  # sizes of google/t5-efficient-tiny
        "base": _t5(32128, 768, 12, 12, 3072, 64),  # shape of google-t5/t5-base
        "full": _t5(32128, 1024, 24, 16, 4096, 64),  # shape of google-t5/t5-large
    },
    "llama": {  # (vocab, hidden, layers, heads, intermediate, kv heads)
        "tiny": _llm(1024, 64, 2, 4, 128, 2),
        # shape of karpathy/tinyllamas stories15M (llama2.c: dim 288, 6 layers, 6 heads, tied embeddings)
        "small": _llm(32000, 288, 6, 6, 768, 6, max_position_embeddings=256, tie_word_embeddings=True),
        # shape of meta-llama/Llama-3.2-1B
        "base": _llm(
            128256, 2048, 16, 32, 8192, 8, head_dim=64, max_position_embeddings=131072, rms_norm_eps=1e-5,
            tie_word_embeddings=True, bos_token_id=128000, eos_token_id=128001,
            rope_parameters={
                "rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0, "low_freq_factor": 1.0,
                "high_freq_factor": 4.0, "original_max_position_embeddings": 8192,
            },
        ),
        # shape of meta-llama/Meta-Llama-3-8B
        "full": _llm(
            128256, 4096, 32, 32, 14336, 8, max_position_embeddings=8192, rms_norm_eps=1e-5,
            bos_token_id=128000, eos_token_id=128001,
            rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
        ),
    },
    "qwen2": {  # (vocab, hidden, layers, heads, intermediate, kv heads); Qwen2 has q/k/v biases
        "tiny": _llm(1024, 64, 2, 4, 128, 2, tie_word_embeddings=True),
        # reduced Qwen2-0.5B (GQA, tied embeddings, head_dim 64) with the vocabulary cut to 32k
        "small": _llm(32000, 256, 6, 4, 1408, 2, tie_word_embeddings=True),
        # shape of Qwen/Qwen2-0.5B
        "base": _llm(
            151936, 896, 24, 14, 4864, 2, max_position_embeddings=131072, tie_word_embeddings=True,
            rope_parameters={"rope_type": "default", "rope_theta": 1e6},
        ),
        # shape of Qwen/Qwen2-7B
        "full": _llm(
            152064, 3584, 28, 28, 18944, 4, max_position_embeddings=131072, tie_word_embeddings=False,
            rope_parameters={"rope_type": "default", "rope_theta": 1e6},
        ),
    },
    "clip": {  # text towers keep CLIP's 77-token context; eos = last vocabulary id, as in the published vocab
        "tiny": dict(
            text_config=_tower(32, 2, 2, 64, vocab_size=1024, bos_token_id=1022, eos_token_id=1023),
            vision_config=_tower(32, 2, 2, 64, image_size=32, patch_size=8), projection_dim=32,
        ),
        # reduced CLIP ViT-B/32: 4-layer 256-wide towers, full 49408-token text vocabulary
        "small": dict(
            text_config=_tower(256, 4, 4, 1024),
            vision_config=_tower(256, 4, 4, 1024, image_size=224, patch_size=32), projection_dim=256,
        ),
        # shape of openai/clip-vit-base-patch32
        "base": dict(
            text_config=_tower(512, 12, 8, 2048, vocab_size=49408),
            vision_config=_tower(768, 12, 12, 3072, image_size=224, patch_size=32), projection_dim=512,
        ),
        # shape of openai/clip-vit-large-patch14
        "full": dict(
            text_config=_tower(768, 12, 12, 3072, vocab_size=49408),
            vision_config=_tower(1024, 24, 16, 4096, image_size=224, patch_size=14), projection_dim=768,
        ),
    },
    "vit": {  # (hidden, layers, heads, intermediate, image, patch, labels)
        "tiny": _vit(32, 2, 2, 64, 32, 8, 10),
        "small": _vit(192, 12, 3, 768, 224, 16, 1000),  # shape of facebook/deit-tiny-patch16-224 (ViT-Ti/16)
        "base": _vit(768, 12, 12, 3072, 224, 16, 1000),  # shape of google/vit-base-patch16-224
        "full": _vit(1024, 24, 16, 4096, 224, 16, 1000),  # shape of google/vit-large-patch16-224
    },
    # (d_model, layers each side, heads, ffn, queries, backbone, input (height, width)); the published DETRs
    # use timm ResNets, here transformers' ResNet of the same shape (parameter counts differ slightly).
    "detr": {
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
    },
    "clap": {  # RoBERTa-style text tower + HTSAT audio tower
        "tiny": _clap(
            dict(vocab_size=1024, **_tower(32, 2, 2, 64)), _htsat(16, [1, 1], [2, 4], spec=64, mels=16), 32
        ),
        # reduced CLAP: 4-layer 256-wide text tower, 4-stage HTSAT with 32-wide patch embeddings
        "small": _clap(_tower(256, 4, 4, 1024), _htsat(32, [1, 1, 2, 1], [2, 4, 8, 16]), 256),
        # shape of laion/clap-htsat-unfused (RoBERTa-base text tower, HTSAT-tiny audio tower)
        "base": _clap(_tower(768, 12, 12, 3072), _htsat(96, [2, 2, 6, 2], [4, 8, 16, 32]), 512),
        # shape of laion/larger_clap_general (RoBERTa-base text tower, HTSAT-base audio tower)
        "full": _clap(_tower(768, 12, 12, 3072), _htsat(128, [2, 2, 12, 2], [4, 8, 16, 32]), 512),
    },
    # (vocab, d_model, layers each side, heads, ffn, mel bins, max_source_positions); tiny/small shorten the
    # audio window through max_source_positions, base/full keep the published 30 s (3000 mel frames).
    "whisper": {
        "tiny": _whisper(
            1024, 32, 2, 2, 64, 16, 32, pad_token_id=1, bos_token_id=1, eos_token_id=2,
            decoder_start_token_id=3, begin_suppress_tokens=None,
        ),
        "small": _whisper(51865, 384, 4, 6, 1536, 80, 250),  # shape of openai/whisper-tiny, 5 s window
        "base": _whisper(51865, 512, 6, 8, 2048, 80, 1500),  # shape of openai/whisper-base
        # shape of openai/whisper-large-v3
        "full": _whisper(
            51866, 1280, 32, 20, 5120, 128, 1500, bos_token_id=50257, eos_token_id=50257, pad_token_id=50256,
            decoder_start_token_id=50258,
        ),
    },
    "wav2vec2": {  # 7-layer conv feature encoder (stride 320: 49 frames per second) + transformer
        "tiny": _wav2vec2(
            32, 2, 2, 64, conv_dim=[16] * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4
        ),
        # reduced wav2vec2-base: 256-wide conv feature encoder, 6-layer 384-wide transformer
        "small": _wav2vec2(384, 6, 6, 1536, conv_dim=[256] * 7),
        # shape of facebook/wav2vec2-base
        "base": _wav2vec2(768, 12, 12, 3072, feat_extract_norm="group", do_stable_layer_norm=False),
        # shape of facebook/wav2vec2-large-lv60
        "full": _wav2vec2(
            1024, 24, 16, 4096, feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True
        ),
    },
    "llava": {
        "tiny": _llava(_tower(32, 2, 2, 64, image_size=32, patch_size=8), _LLM_TINY, image_token=1000),
        # reduced LLaVA-1.5: 4-layer CLIP/14 tower at 112 px (64 image tokens) + stories15M-shaped Llama
        "small": _llava(_tower(256, 4, 4, 1024, image_size=112, patch_size=14), _LLM_SMALL),
        # llava-hf/llava-1.5-7b-hf vision tower + projector with the LM reduced to TinyLlama-1.1B (see above)
        "base": _llava(_CLIP_L14_336, _TINYLLAMA_1B, image_seq_length=576),
        "full": _llava(_CLIP_L14_336, _VICUNA_7B, image_seq_length=576),  # shape of llava-hf/llava-1.5-7b-hf
    },
    "llava_next": {
        "tiny": _llava_next(_tower(32, 2, 2, 64, image_size=32, patch_size=8), _LLM_TINY, image_token=1000),
        # reduced LLaVA-NeXT: 4-layer CLIP tower on 64 px tiles / patch 16 (88 image tokens), stories15M LM
        "small": _llava_next(_tower(256, 4, 4, 1024, image_size=64, patch_size=16), _LLM_SMALL),
        # llava-hf/llava-v1.6-vicuna-7b-hf vision tower + projector with the LM reduced to TinyLlama-1.1B
        "base": _llava_next(_CLIP_L14_336, _TINYLLAMA_1B),
        # shape of llava-hf/llava-v1.6-vicuna-7b-hf
        "full": _llava_next(_CLIP_L14_336, _VICUNA_7B),
    },
    "xclip": {  # vision: (hidden, layers, heads, intermediate, image, patch, mit width), 8 frames
        "tiny": dict(
            text_config=_tower(32, 2, 2, 64, vocab_size=1024),
            vision_config=_xclip_vision(32, 2, 2, 64, 32, 8, 32, 2),
            projection_dim=32, prompt_layers=1, prompt_num_attention_heads=2,
        ),
        # reduced X-CLIP: 4-layer 256-wide towers, 8 frames at 224 px / patch 32
        "small": dict(
            text_config=_tower(256, 4, 4, 1024),
            vision_config=_xclip_vision(256, 4, 4, 1024, 224, 32, 256, 4),
            projection_dim=256, prompt_num_attention_heads=4,
        ),
        # shape of microsoft/xclip-base-patch32
        "base": dict(
            text_config=_tower(512, 12, 8, 2048),
            vision_config=_xclip_vision(768, 12, 12, 3072, 224, 32, 512),
            projection_dim=512,
        ),
        # shape of microsoft/xclip-large-patch14
        "full": dict(
            text_config=_tower(768, 12, 12, 3072),
            vision_config=_xclip_vision(1024, 24, 16, 4096, 224, 14, 768),
            projection_dim=768,
        ),
    },
}
# fmt: on


# ----------------------------------------------------------------------------------------------------------
# Building
# ----------------------------------------------------------------------------------------------------------


def is_curated(family: str) -> bool:
    """Whether ``family`` is a curated family (hand-written presets and inputs) rather than any other
    architecture of transformers, a config file or a checkpoint (:mod:`hwbench_pipeline.bench.catalog`)."""
    return family in FAMILIES


def import_model_code(family: str) -> None:
    """Import the model's module now (transformers imports it lazily, seconds the first time in a process), so
    that a measured load time is building the model, not importing Python."""
    if is_curated(family):
        _model_class(family_spec(family))
        return
    from hwbench_pipeline.bench.catalog.registry import architecture
    from hwbench_pipeline.bench.catalog.sources import resolve_model

    getattr(transformers, architecture(resolve_model(family).model_type).model_class)


def _model_class(spec: FamilySpec) -> type[transformers.PreTrainedModel]:
    return getattr(transformers, spec.hf_class)


def build_config(family: str, preset: str) -> transformers.PretrainedConfig:
    """Config of ``family`` at ``preset`` with eager attention; nothing is downloaded."""
    if not is_curated(family):
        from hwbench_pipeline.bench.catalog import generic

        return generic.build_config(family, preset)
    spec = check_model(family, preset)
    kwargs = copy.deepcopy(_PRESETS[family][preset])
    extras = {key: kwargs.pop(key) for key in list(kwargs) if key.startswith("bench_")}
    config = _model_class(spec).config_class(**kwargs)
    config._attn_implementation = "eager"  # the setter recurses into the sub-configs
    for key, value in extras.items():
        setattr(config, key, value)
    return config


def build_model(
    family: str, preset: str, *, seed: int = 0, device: str | torch.device = "cpu"
) -> torch.nn.Module:
    """Random-init fp32 model in eval mode with frozen parameters; ``device="meta"`` allocates nothing.

    Real weights are drawn on the CPU after ``torch.manual_seed(seed)`` and then moved, so a seed gives the
    same weights on every device. A checkpoint folder's model has its own weights.
    """
    if not is_curated(family):
        from hwbench_pipeline.bench.catalog import generic
        from hwbench_pipeline.bench.catalog.sources import resolve_model

        source = resolve_model(family)
        checkpoint = source.path if source.kind == "checkpoint" else None
        config = generic.build_config(source, preset)
        if torch.device(device).type == "meta":
            from transformers import AutoModel

            with torch.device("meta"):
                return AutoModel.from_config(config, attn_implementation="eager").eval()
        return generic.build_model(config, seed=seed, checkpoint=checkpoint).to(device)
    spec = check_model(family, preset)
    config = build_config(family, preset)
    cls = _model_class(spec)
    if torch.device(device).type == "meta":
        with torch.device("meta"):
            model = cls(config)
    else:
        torch.manual_seed(seed)
        with torch.device("cpu"):
            model = cls(config)
    # Inference only. Frozen parameters also keep FlopCounterMode's module tracker off autograd hooks, which
    # fail under inference_mode for modules fed a parameter (wav2vec2's weight-norm parametrization).
    model.requires_grad_(False)
    return model.to(device=device, dtype=torch.float32).eval()


# ----------------------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------------------


def _ids(
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
    ids = torch.randint(low, high, (batch, length), generator=gen)
    if first is not None:
        ids[:, 0] = first
    if last is not None:
        ids[:, -1] = last
    return ids


def _ones(batch: int, length: int) -> torch.Tensor:
    return torch.ones(batch, length, dtype=torch.long)


def _check_len(family: str, seq_len: int, limit: int | None, what: str) -> None:
    if seq_len < 1 or (limit is not None and seq_len > limit):
        bound = f"1..{limit}" if limit is not None else ">= 1"
        raise ValueError(f"{family}: seq_len={seq_len} is out of range; {what} must be {bound}")


def _wav2vec2_frames(config: Any, samples: int) -> int:
    frames = samples
    for kernel, stride in zip(config.conv_kernel, config.conv_stride, strict=True):
        frames = (frames - kernel) // stride + 1
    return frames


def llava_next_image_size(config: Any) -> tuple[int, int]:
    """(height, width) of the image make_inputs feeds LLaVA-NeXT (``config.bench_image_size``; set it to
    change the AnyRes tiling): by default a square on the 2x2 AnyRes grid."""
    side = 2 * config.vision_config.image_size
    height, width = getattr(config, "bench_image_size", (side, side))
    return height, width


def _anyres_tiles(config: Any) -> tuple[int, int]:
    from transformers.models.llava_next.modeling_llava_next import get_anyres_image_grid_shape

    size = llava_next_image_size(config)
    return get_anyres_image_grid_shape(size, config.image_grid_pinpoints, config.vision_config.image_size)


def image_tokens(family: str, config: Any) -> int:
    """Image placeholder tokens make_inputs puts in each llava / llava_next prompt (0 for other families)."""
    family_spec(family)
    if family not in ("llava", "llava_next"):
        return 0
    vision = config.vision_config
    side = vision.image_size // vision.patch_size
    if family == "llava":
        return side * side  # the "default" feature strategy drops the CLS token
    from transformers.models.llava_next.modeling_llava_next import unpad_image

    rows, cols = _anyres_tiles(config)
    grid = unpad_image(torch.empty(0, rows * side, cols * side), llava_next_image_size(config))
    return side * side + grid.shape[1] * (grid.shape[2] + 1)  # base tile + tile grid with one newline per row


def make_inputs(
    family: str,
    config: Any,
    batch_size: int,
    seq_len: int,
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
    model: torch.nn.Module | None = None,
) -> dict[str, torch.Tensor]:
    """Deterministic inputs for one forward pass; ``seq_len`` means ``FAMILIES[family].sequence_meaning``.

    Other architectures get the first generic input recipe their ``model`` runs (docs/catalog.md)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not is_curated(family):
        from hwbench_pipeline.bench.catalog import generic
        from hwbench_pipeline.bench.catalog.sources import resolve_model

        resolve_model(family)  # an unknown name is refused as such
        if model is None:
            raise ValueError(f"{family}: inputs of an uncurated architecture are chosen with its model")
        inputs = generic.choose_inputs(model, config, batch_size, seq_len, seed=seed)
        return {key: value.to(device) for key, value in inputs.items()}
    family_spec(family)
    gen = torch.Generator().manual_seed(seed)
    b, s = batch_size, seq_len
    if family == "bert":
        _check_len(family, s, config.max_position_embeddings, "text tokens")
        inputs = {
            "input_ids": _ids(gen, b, s, config.vocab_size),
            "attention_mask": _ones(b, s),
            "token_type_ids": torch.zeros(b, s, dtype=torch.long),
        }
    elif family == "t5":
        _check_len(family, s, None, "text tokens")
        inputs = {
            "input_ids": _ids(gen, b, s, config.vocab_size, last=config.eos_token_id),
            "attention_mask": _ones(b, s),
            # T5 starts decoding from the pad token (decoder_start_token_id lives in the generation config)
            "decoder_input_ids": _ids(gen, b, s, config.vocab_size, first=config.pad_token_id),
        }
    elif family in ("llama", "qwen2"):
        _check_len(family, s, None, "text tokens")
        inputs = {"input_ids": _ids(gen, b, s, config.vocab_size), "attention_mask": _ones(b, s)}
    elif family in ("clip", "xclip"):
        text, vision = config.text_config, config.vision_config
        _check_len(family, s, text.max_position_embeddings, "text tokens")
        # text features are pooled at the end-of-text token: the last id, also the highest (X-CLIP: argmax)
        ids = _ids(gen, b, s, text.vocab_size - 2, last=text.vocab_size - 1)
        frames = (vision.num_frames,) if family == "xclip" else ()
        pixels = torch.randn(
            b, *frames, vision.num_channels, vision.image_size, vision.image_size, generator=gen
        )
        inputs = {"input_ids": ids, "attention_mask": _ones(b, s), "pixel_values": pixels}
    elif family == "vit":
        inputs = {
            "pixel_values": torch.randn(
                b, config.num_channels, config.image_size, config.image_size, generator=gen
            )
        }
    elif family == "detr":
        height, width = getattr(config, "bench_image_size", (800, 1066))
        inputs = {"pixel_values": torch.randn(b, config.num_channels, height, width, generator=gen)}
    elif family == "clap":
        text, audio = config.text_config, config.audio_config
        _check_len(family, s, text.max_position_embeddings - 2, "text tokens")  # RoBERTa positions start at 2
        # the audio tower resizes any log-mel input to spec_size * freq_ratio frames; feed exactly that many
        frames = audio.spec_size * (audio.spec_size // audio.num_mel_bins)
        inputs = {
            "input_ids": _ids(
                gen, b, s, text.vocab_size, low=3, first=text.bos_token_id, last=text.eos_token_id
            ),
            "attention_mask": _ones(b, s),
            "input_features": torch.randn(b, 1, frames, audio.num_mel_bins, generator=gen),
        }
    elif family == "whisper":
        _check_len(family, s, config.max_target_positions, "decoder tokens")
        inputs = {
            "input_features": torch.randn(
                b, config.num_mel_bins, 2 * config.max_source_positions, generator=gen
            ),
            "decoder_input_ids": _ids(gen, b, s, config.vocab_size, first=config.decoder_start_token_id),
        }
    elif family == "wav2vec2":
        if s < 1 or _wav2vec2_frames(config, s) < 1:
            raise ValueError(f"wav2vec2: seq_len={s} audio samples is shorter than the conv receptive field")
        inputs = {"input_values": torch.randn(b, s, generator=gen)}
    elif family in ("llava", "llava_next"):
        _check_len(family, s, None, "text tokens")
        text, vision = config.text_config, config.vision_config
        image_token = config.image_token_index
        tile = (vision.num_channels, vision.image_size, vision.image_size)
        if family == "llava":
            inputs = {"pixel_values": torch.randn(b, *tile, generator=gen)}
        else:  # AnyRes: the base tile + the grid tiles, and the original image size
            rows, cols = _anyres_tiles(config)
            inputs = {
                "pixel_values": torch.randn(b, rows * cols + 1, *tile, generator=gen),
                "image_sizes": torch.tensor([list(llava_next_image_size(config))] * b),
            }
        # prompt: <bos>, the image placeholders, then seq_len - 1 text tokens (ids below the image token)
        words = _ids(gen, b, s, min(text.vocab_size, image_token), low=3, first=text.bos_token_id)
        placeholders = torch.full((b, image_tokens(family, config)), image_token)
        ids = torch.cat([words[:, :1], placeholders, words[:, 1:]], dim=1)
        inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), **inputs}
    else:  # pragma: no cover - FAMILIES and this dispatch are kept in sync
        raise UnknownModelError(f"no input recipe for {family!r}")
    return {key: value.to(device) for key, value in inputs.items()}


# ----------------------------------------------------------------------------------------------------------
# Running and describing
# ----------------------------------------------------------------------------------------------------------

NON_TEXT_CATEGORIES = frozenset({"vision", "audio", "video", "time series", "other"})
_GENERATOR_CLASSES = frozenset(spec.hf_class for spec in FAMILIES.values() if spec.generates_tokens)
# the main output tensor: first field present wins (contrastive logits, task logits, then hidden states)
_OUTPUT_FIELDS = ("logits_per_image", "logits_per_video", "logits_per_audio", "logits", "last_hidden_state")


@functools.cache
def accepts_use_cache(model_class: type) -> bool:
    """Whether the class's forward takes ``use_cache`` (asked once per class: reading a signature costs ~25 us,
    too much inside a timed call)."""
    return "use_cache" in inspect.signature(model_class.forward).parameters


def forward(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """One inference call (grad mode is the caller's job); returns the main output tensor.

    Decoders run with ``use_cache=False``. Contrastive models (clip, clap, xclip) return the
    ``(batch, batch)`` similarity logits, the others their logits or last hidden state.
    """
    inner = getattr(model, "_orig_mod", model)  # see through torch.compile
    generates = type(inner).__name__ in _GENERATOR_CLASSES or accepts_use_cache(type(inner))
    out = model(**inputs, **({"use_cache": False} if generates else {}))
    if isinstance(out, torch.Tensor):
        return out
    for name in _OUTPUT_FIELDS:
        value = getattr(out, name, None)
        if isinstance(value, torch.Tensor):
            return value
    return out[0]


def tokens_per_call(family: str, config: Any, batch_size: int, seq_len: int) -> int | None:
    """Text tokens per call (batch x seq_len) for text-bearing families; None for vision and raw audio.

    Counts the text tokens the caller asked for: t5's encoder input, whisper's decoder tokens; llava's image
    placeholder tokens are not included (see :func:`image_tokens`).
    """
    if not is_curated(family):
        from hwbench_pipeline.bench.catalog.registry import architecture
        from hwbench_pipeline.bench.catalog.sources import resolve_model

        category = architecture(resolve_model(family).model_type).category
        return None if category in NON_TEXT_CATEGORIES else batch_size * seq_len
    spec = family_spec(family)
    if "text" not in spec.modality and not spec.generates_tokens:
        return None
    return batch_size * seq_len


def model_default_seq_len(model: str) -> int:
    """The sequence length a model runs when none is asked for: a curated family's own, else 128 text tokens
    (1 for an architecture that takes no text)."""
    if is_curated(model):
        return default_seq_len(model)
    from hwbench_pipeline.bench.catalog.registry import architecture
    from hwbench_pipeline.bench.catalog.sources import resolve_model

    return 1 if architecture(resolve_model(model).model_type).category in NON_TEXT_CATEGORIES else 128


@functools.cache
def _param_count(family: str, preset: str) -> int:
    model = build_model(family, preset, device="meta")
    return sum(p.numel() for p in model.parameters())


def _first(config: Any, *names: str) -> Any:
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return value
    return None


def describe(family: str, preset: str) -> dict[str, Any]:
    """Catalog row; params are exact, counted on the meta device (no memory, nothing downloaded).

    layers / hidden_size / heads / intermediate_size describe the main tower: the text tower of multimodal
    models (clip, clap, xclip, llava*), the encoder of whisper, t5 and detr. vision_* describe the vision
    tower where there is one (detr: its ResNet backbone's residual blocks and output channels).
    """
    if not is_curated(family):
        from hwbench_pipeline.bench.catalog.describe import describe_architecture

        return describe_architecture(family, preset)
    from hwbench_pipeline.bench.catalog.describe import config_shape

    spec = check_model(family, preset)
    config = build_config(family, preset)
    shape = config_shape(config)
    main = config.text_config if family in ("clip", "clap", "xclip", "llava", "llava_next") else config
    vision_layers = vision_hidden_size = None
    if family in ("clip", "xclip", "llava", "llava_next"):
        vision_layers, vision_hidden_size = (
            config.vision_config.num_hidden_layers,
            config.vision_config.hidden_size,
        )
    elif family == "detr":
        vision_layers, vision_hidden_size = (
            sum(config.backbone_config.depths),
            config.backbone_config.hidden_sizes[-1],
        )
    return {
        "family": family,
        "preset": preset,
        "category": spec.category,
        "modality": spec.modality,
        "sequence_meaning": spec.sequence_meaning,
        "hf_class": spec.hf_class,
        "params": _param_count(family, preset),
        "layers": _first(main, "num_hidden_layers", "num_layers", "encoder_layers"),
        "hidden_size": _first(main, "hidden_size", "d_model"),
        "heads": _first(main, "num_attention_heads", "num_heads", "encoder_attention_heads"),
        "intermediate_size": _first(main, "intermediate_size", "d_ff", "encoder_ffn_dim"),
        "vocab_size": None if family in ("vit", "detr", "wav2vec2") else main.vocab_size,
        "vision_layers": vision_layers,
        "vision_hidden_size": vision_hidden_size,
        **{key: shape[key] for key in ("kv_heads", "experts", "attention_kind")},
        "model_type": config.model_type,
    }
