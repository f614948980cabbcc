"""The benchmark engine: models, runtimes, scenarios and launchers; nothing here imports Dagster."""

import logging

# transformers imports torchao wherever it is installed: its import then warns about the CUDA extension libraries
# a CPU build cannot load, and torch about the enums it registers, in every process's output. Errors still show.
for _noisy in ("torchao", "torch.utils._pytree"):
    logging.getLogger(_noisy).setLevel(logging.ERROR)
