"""The curated families of the catalog, one unit each (:class:`~.base.CuratedFamily`): a family's spec, presets,
inputs, description and training task live in its own module, not in branches spread over the pipeline.

Importing this package imports neither torch nor transformers (:mod:`hwbench_pipeline.bench.families` builds the
catalog's names from it).
"""

from __future__ import annotations

from hwbench_pipeline.bench.catalog.curated import bert, clap, clip, decoder, llava, t5, vision, wav2vec2, whisper
from hwbench_pipeline.bench.catalog.curated.base import CuratedFamily

#: family name -> its unit, in the catalog's order
CURATED: dict[str, CuratedFamily] = {
    unit.name: unit
    for unit in (
        bert.BERT, t5.T5, decoder.LLAMA, decoder.QWEN2, clip.CLIP, vision.VIT, vision.DETR, clap.CLAP,
        whisper.WHISPER, wav2vec2.WAV2VEC2, llava.LLAVA, llava.LLAVA_NEXT, clip.XCLIP,
    )
}


def curated(family: str) -> CuratedFamily:
    """The unit of a curated family; KeyError for any other name (callers refuse unknown names first, with the
    accepted ones: :func:`hwbench_pipeline.bench.families.family_spec`)."""
    return CURATED[family]
