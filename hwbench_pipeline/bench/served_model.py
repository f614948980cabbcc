"""The one generative model that ``hwbench serve-generate`` loads at start and serves to every request."""

from dataclasses import dataclass
from typing import Any

from hwbench_pipeline.bench.scenarios.generation.decode import generate
from hwbench_pipeline.bench.scenarios.generation.inputs import context_limit, generation_inputs


@dataclass
class ServedModel:
    """One generative model loaded once; each request gets its own Generator over these weights from
    ``backend.prepare_generator`` (a backend of bench/backends, any that implements GeneratingBackend)."""

    family: str
    preset: str
    target: str
    device: str
    backend: Any
    model: Any
    precision: str = "fp32"
    cache: str = "dynamic"

    @property
    def label(self) -> str:
        return f"{self.family}/{self.preset} on {self.target}"

    @property
    def config(self) -> Any:
        return self.model.config

    @property
    def vocab_size(self) -> int | None:
        for source in (self.config, getattr(self.config, "text_config", None)):
            value = getattr(source, "vocab_size", None) if source is not None else None
            if isinstance(value, int) and value > 0:
                return value
        return None

    @property
    def context(self) -> int | None:
        return context_limit(self.config)

    def inputs(self, prompt: list[int] | None, prompt_len: int, seed: int, batch: int) -> dict[str, Any]:
        """The model's inputs for a request: the family's own (``prompt_len`` random ids from ``seed``, as the
        generation scenario makes them), or theirs with ``input_ids`` replaced by ``prompt`` for every sequence."""
        if prompt is None:
            return generation_inputs(self.family, self.config, batch, prompt_len, seed=seed, model=self.model)
        import torch

        inputs = generation_inputs(self.family, self.config, 1, len(prompt), seed=seed, model=self.model)
        inputs["input_ids"] = torch.tensor([prompt], dtype=torch.int64)
        # one prompt for every sequence: a broadcast view, so only the model's own activations grow with the batch
        return {key: value.expand(batch, *value.shape[1:])
                if isinstance(value, torch.Tensor) and value.dim() >= 1 and value.shape[0] == 1 else value
                for key, value in inputs.items()}

    def prepare(self, inputs: dict[str, Any], new_tokens: int) -> Any:
        """A fresh Generator (its own cache) over the shared weights, for prompts shaped like ``inputs``."""
        return self.backend.prepare_generator(self.model, inputs, self.device, self.precision,
                                              max_new_tokens=new_tokens, cache=self.cache)


def load_served_model(family: str, preset: str, target: str, *, seed: int = 0) -> ServedModel:
    """Build ``family``/``preset`` (random weights from ``seed``) for ``target`` with the attention users run, and
    generate two tokens once so that the first client does not pay for lazy initialisation. Raises ValueError
    for a model or target that cannot be served, BenchmarkFailure for one the backend refuses."""
    from hwbench_pipeline.bench import models
    from hwbench_pipeline.bench.backends import backend_available, load_backend
    from hwbench_pipeline.bench.hardware import parse_target

    if models.is_curated(family):
        models.check_model(family, preset)
    if not models.generates_tokens(family):
        raise ValueError(f"{family} does not generate tokens; generative models: {models.generative_names()}")
    parsed = parse_target(target)
    # torch only for now: the exported backends' prepare_generator exports a graph (seconds to minutes), which a
    # per-request Generator would pay on every request
    if parsed.backend != "torch":
        raise ValueError(f"serve-generate runs torch targets for now (cpu-torch, cuda0-torch, ...), got {target}: "
                         f"{parsed.backend} prepares a generator by exporting a graph, too slow per request")
    ok, why = backend_available(parsed.backend, parsed.device_kind)
    if not ok:
        raise ValueError(f"{target} is not available here: {why}")
    models.import_model_code(family)
    model = models.build_generative_model(family, preset, seed=seed)
    models.use_default_attention(model)
    served = ServedModel(family, preset, target, parsed.torch_device, load_backend(parsed.backend), model)
    inputs = served.inputs(None, 4, seed, 1)
    generator = served.prepare(inputs, 2)
    try:
        generate(generator, inputs, 2)
    finally:
        generator.release()
    return served
