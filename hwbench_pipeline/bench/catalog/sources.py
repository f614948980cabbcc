"""What ``--model`` names: a curated family, a transformers model type, a config file, or a checkpoint folder.

Nothing is fetched: a config or a checkpoint is read from disk. Checkpoints are loaded from safetensors only
(pickled ``.bin`` weights can run code when loaded) and never with remote code (a config with ``auto_map``
names Python that is not part of transformers).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from hwbench_pipeline.bench.families import FAMILIES

KINDS = ("family", "model_type", "config", "checkpoint")


class ModelSourceError(ValueError):
    """A ``--model`` that cannot be used; the message says why in one line."""


@dataclass(frozen=True)
class ModelSource:
    kind: str  # one of KINDS
    name: str  # as the user gave it
    model_type: str  # the transformers model type (a curated family's own name for families)
    path: Path | None = None  # the config file or the checkpoint folder

    @property
    def curated(self) -> bool:
        return self.kind == "family"


def _read_config(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelSourceError(f"{path}: not a readable JSON config ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("model_type"), str):
        raise ModelSourceError(f"{path}: a transformers config needs a \"model_type\" string")
    if data.get("auto_map"):
        raise ModelSourceError(f"{path}: the config names remote code (auto_map); hwbench builds only "
                               "architectures that ship with transformers")
    return data


def _checkpoint(folder: Path) -> str:
    config = folder / "config.json"
    if not config.is_file():
        raise ModelSourceError(f"{folder}: a checkpoint folder needs a config.json")
    model_type = _read_config(config)["model_type"]
    if not any(folder.glob("*.safetensors")):
        pickled = sorted(p.name for p in folder.glob("*.bin"))
        why = (f"only pickled weights ({', '.join(pickled)}), which hwbench does not load: convert them to "
               "safetensors" if pickled else "no weights (*.safetensors)")
        raise ModelSourceError(f"{folder}: {why}")
    return model_type


def resolve_model(text: str) -> ModelSource:
    """The source ``text`` names; raises :class:`ModelSourceError` or the registry's unknown-architecture error."""
    if text in FAMILIES:
        return ModelSource("family", text, text)
    path = Path(text).expanduser()
    if path.is_dir():
        source = ModelSource("checkpoint", text, _checkpoint(path), path)
    elif path.is_file():
        source = ModelSource("config", text, _read_config(path)["model_type"], path)
    elif "/" in text or text.endswith(".json"):
        raise ModelSourceError(f"{text}: no such config file or checkpoint folder")
    else:
        source = ModelSource("model_type", text, text)
    from hwbench_pipeline.bench.catalog.registry import architecture

    architecture(source.model_type)
    return source
