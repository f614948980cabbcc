"""Imported once by the local fork server (:mod:`hwbench_pipeline.bench.launchers.process`) before it forks
measuring processes: everything here is imported, never run. Nothing may touch a device or start a thread
that holds locks across a fork (numpy's OpenBLAS pool starts at import and is fork-safe: it stops at fork)."""

import torch  # noqa: F401
import transformers  # noqa: F401
import transformers.modeling_utils  # noqa: F401  - what every model class needs: seconds of imports

from hwbench_pipeline.bench import models  # noqa: F401
from hwbench_pipeline.bench.backends.torch import backend as torch_backend  # noqa: F401
from hwbench_pipeline.bench.catalog import probe  # noqa: F401
from hwbench_pipeline.bench.scenarios import inference, training  # noqa: F401
from hwbench_pipeline.bench.trackers import memory, system_load  # noqa: F401
