"""The unit of a curated family: everything the catalog knows about one hand-written family, in one value.

Nothing here imports torch or transformers (the CLI refuses a bad name in milliseconds): a unit's callables
import what they need when they run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

TEXT_TOKENS = "text tokens"
SIZE_FROM_CONFIG = "ignored (image size fixed by config)"


@dataclass(frozen=True)
class FamilySpec:
    """One model family of the catalog."""

    name: str
    category: str  # one of CATEGORIES
    modality: str  # "text", "image", "audio", "image+text", "audio+text", "video+text"
    sequence_meaning: str  # what make_inputs' seq_len means for this family
    generates_tokens: bool  # decoder / seq2seq text generator: tokens/s is meaningful
    hf_class: str  # transformers model class built by build_model
    default_seq_len: int  # sensible default seq_len (1 where seq_len is ignored)


#: (config, batch size, seq_len, generator) -> the inputs of one forward pass, on the CPU
InputRecipe = Callable[[Any, int, int, "torch.Generator"], "dict[str, torch.Tensor]"]
#: (config, inputs, labels, generator, seq_len, seed): plants the family's training task into make_inputs'
#: inputs, in place (see :mod:`hwbench_pipeline.bench.tasks`)
TaskPlanter = Callable[[Any, "dict[str, torch.Tensor]", "torch.Tensor", "torch.Generator", int, int], None]


def whole_model(config: Any) -> Any:
    """The config itself: the main tower of a family that has one tower (or an encoder and its decoder)."""
    return config


def text_tower(config: Any) -> Any:
    """The text tower of a multimodal family: what its layers, width and vocabulary describe."""
    return config.text_config


def no_vision_tower(config: Any) -> None:
    """No vision tower."""
    return None


def clip_vision_tower(config: Any) -> tuple[int, int]:
    """(layers, hidden size) of a CLIP-style vision tower (clip, xclip, llava, llava_next)."""
    vision = config.vision_config
    return vision.num_hidden_layers, vision.hidden_size


def no_text_limit(config: Any) -> None:
    """No text-position limit: the family takes any text length, or takes no text."""
    return None


def no_image_tokens(config: Any) -> int:
    """No image placeholder tokens in the prompt."""
    return 0


@dataclass(frozen=True)
class CuratedFamily:
    """One curated family: what it is, its preset sizes, its forward inputs, how it is described and trained.

    Its callables take the family's config (built from ``presets``); ``make_inputs`` and ``plant_task`` give
    exactly the tensors of :func:`hwbench_pipeline.bench.models.make_inputs` and
    :func:`hwbench_pipeline.bench.tasks.make_task_batch`.
    """

    spec: FamilySpec
    #: preset -> config keyword arguments; ``bench_*`` keys are not transformers fields: they are stored on the
    #: config as extra attributes, read by ``make_inputs`` (an input image size)
    presets: dict[str, dict[str, Any]]
    make_inputs: InputRecipe
    task: str  # its training task, a key of tasks.TASK_MODALITY
    objective: str  # how its output becomes class scores, one of tasks.OBJECTIVE_KINDS
    plant_task: TaskPlanter
    #: text positions the config has (what effective_seq_len caps a request at); None: unlimited, or no text
    text_limit: Callable[[Any], int | None] = no_text_limit
    #: the config that layers / hidden size / heads / vocabulary describe
    main_tower: Callable[[Any], Any] = whole_model
    #: (layers, hidden size) of the vision tower (detr: its backbone's residual blocks and output channels)
    vision_tower: Callable[[Any], tuple[int, int] | None] = no_vision_tower
    has_vocabulary: bool = True
    #: image placeholder tokens make_inputs puts in each prompt on top of seq_len
    image_tokens: Callable[[Any], int] = no_image_tokens

    @property
    def name(self) -> str:
        return self.spec.name
