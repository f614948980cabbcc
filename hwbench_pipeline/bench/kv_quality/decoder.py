"""The copy-task decoder: a small llama trained on the copy task, kept on disk with a sidecar that says how it was
made, and reused while the sidecar matches the settings asked for."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM

from hwbench_pipeline.bench.kv_quality.task import EVAL_SEED, QUALITY_PROMPTS, TASK, CopyTask, held_out_prompts

#: version of the weights file and sidecar below; a kept decoder of another version is retrained
FORMAT_VERSION = 1
WEIGHTS_NAME = "kv_copy_decoder.safetensors"
SIDECAR_NAME = "kv_copy_decoder.json"
LOCK_NAME = "kv_copy_decoder.lock"
HEADER_KEY = "hwbench_kv_quality"  # the safetensors header entry holding the sidecar's text
MODEL_NAME = "llama-copy"  # what rows call the learned decoder (kv_quality_model)
#: the decoder's folder under a data directory's trained/ folder (bench/trained.py's TRAINED_DIR), by convention
DECODER_SUBDIR = "kv_quality"


@dataclass(frozen=True)
class Training:
    """The decoder's shape and how it is trained. The shape is llama/tiny's (hidden 64, 2 layers, 4 heads, 2 kv
    heads, MLP 128) with the task's vocabulary. Measured: it reaches 100 % held-out token accuracy on the default
    copy task by step 100 (held-out loss 0.21); 300 steps leave a margin and a confident model (loss ~0.005), in
    ~10-15 s. Smaller shapes learn the task too (1 layer, or hidden 32: loss ~0.02 after 300 steps); this one is
    kept because its cache has llama/tiny's geometry (2 kv heads x head_dim 16, quantization groups of 32) and
    two layers of cache to quantize, as the catalog model the generation scenario runs."""

    hidden_size: int = 64
    intermediate_size: int = 128
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    steps: int = 300
    batch_size: int = 64
    learning_rate: float = 3e-3  # the peak of a one-cycle schedule (10 % warm-up)
    seed: int = 0  # draws the initial weights and the training batches
    # torch threads while training. One: on a shared 2-core host, 100 steps took 3.8-5.5 s on one thread against
    # 7.8-47 s on two (a model this small gains nothing from a second thread and loses to spin-waits when another
    # process holds a core), to the same loss
    threads: int = 1
    min_accuracy: float = 0.95  # held-out token accuracy a trained decoder must reach to be kept


TRAINING = Training()


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """torch's intra-op threads set to ``count`` for the block, as they were afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def decoder_config(task: CopyTask, training: Training) -> LlamaConfig:
    """The llama config the decoder is built from (SDPA attention, as the generation scenario runs it)."""
    config = LlamaConfig(
        vocab_size=task.vocab_size, hidden_size=training.hidden_size, intermediate_size=training.intermediate_size,
        num_hidden_layers=training.layers, num_attention_heads=training.heads,
        num_key_value_heads=training.kv_heads, max_position_embeddings=2 * task.prompt_len,
        bos_token_id=task.bos, eos_token_id=task.sep, pad_token_id=None,
        tie_word_embeddings=False,  # separate tensors: safetensors stores each once, nothing to re-tie
    )
    config._attn_implementation = "sdpa"
    return config


def _token_accuracy(model: LlamaForCausalLM, task: CopyTask, sequences: torch.Tensor) -> tuple[float, float]:
    """(token accuracy, mean loss) of the answers of ``sequences`` predicted in one teacher-forced forward."""
    with torch.inference_mode():
        logits = model(input_ids=sequences[:, :-1]).logits[:, task.prompt_len - 1:]
    target = sequences[:, task.prompt_len:]
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))
    return (logits.argmax(-1) == target).float().mean().item(), loss.item()


def train_decoder(task: CopyTask = TASK, training: Training = TRAINING) -> tuple[LlamaForCausalLM, dict[str, Any]]:
    """Train a fresh decoder on ``task``; (the model in eval mode, what the run measured). The caller's torch
    threads and random state are left as they were."""
    with torch_threads(training.threads):
        with torch.random.fork_rng(devices=[]):  # the caller's global RNG is not ours to move
            torch.manual_seed(training.seed)
            model = LlamaForCausalLM(decoder_config(task, training))
        model.train()
        batches = torch.Generator().manual_seed(training.seed)
        optimizer = torch.optim.AdamW(model.parameters(), lr=training.learning_rate, weight_decay=0.0)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=training.learning_rate,
                                                       total_steps=training.steps, pct_start=0.1)
        start = time.perf_counter()
        for _ in range(training.steps):
            sequences = task.sequences(training.batch_size, batches)
            labels = sequences.clone()
            labels[:, :task.prompt_len] = -100  # the prompt is random: only the answer can be learned
            loss = model(input_ids=sequences, labels=labels).loss
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
        seconds = time.perf_counter() - start
        model.eval().requires_grad_(False)
        # held out: the evaluation seed's prompts, never a training batch
        held_out = torch.cat([torch.cat([p.ids[0], p.expected])[None] for p in held_out_prompts(task)])
        accuracy, held_out_loss = _token_accuracy(model, task, held_out)
    return model, {"final_accuracy": accuracy, "final_loss": held_out_loss, "train_seconds": round(seconds, 2)}


def _settings(task: CopyTask, training: Training) -> dict[str, Any]:
    """What a kept decoder must have been trained with to be reused (the rest of the sidecar is its record)."""
    return {"format_version": FORMAT_VERSION, "task_name": "copy", "task": dataclasses.asdict(task),
            "training": dataclasses.asdict(training)}


def read_sidecar(directory: str | Path) -> dict[str, Any] | None:
    """The kept decoder's sidecar in ``directory`` (None when there is none or it cannot be read)."""
    try:
        return json.loads((Path(directory) / SIDECAR_NAME).read_text())
    except (OSError, ValueError):
        return None


def _header(weights: Path) -> dict[str, Any] | None:
    from safetensors import safe_open

    try:
        with safe_open(str(weights), framework="pt") as handle:
            return json.loads((handle.metadata() or {})[HEADER_KEY])
    except (OSError, ValueError, KeyError, RuntimeError):
        return None


@contextlib.contextmanager
def _staged(destination: Path) -> Iterator[Path]:
    """A temporary path beside ``destination``, moved into place by one os.replace once written (a reader never
    sees half a file)."""
    staged = destination.with_name(f".staging-{destination.name}-{uuid.uuid4().hex}")
    try:
        yield staged
        os.replace(staged, destination)
    finally:
        staged.unlink(missing_ok=True)


def _keep(directory: Path, model: LlamaForCausalLM, sidecar: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    text = json.dumps(sidecar, indent=2, sort_keys=True) + "\n"
    state = {name: tensor.contiguous() for name, tensor in model.state_dict().items()}
    # the header holds the sidecar too: a load checks both agree, so weights and sidecar are from one write
    with _staged(directory / WEIGHTS_NAME) as staged:
        save_file(state, str(staged), metadata={HEADER_KEY: text})
    with _staged(directory / SIDECAR_NAME) as staged:
        staged.write_text(text)


def learned_decoder(directory: str | Path, *, task: CopyTask = TASK, training: Training = TRAINING,
                    log: Any = None) -> LlamaForCausalLM:
    """The copy-task decoder kept in ``directory``, trained and kept there first when none is, or when the kept
    one was trained on other settings (its sidecar says which; a mismatch is retrained and replaced). Processes
    sharing ``directory`` train once: the others wait on a lock and load. Returns the model on the CPU, fp32,
    eval mode. Raises RuntimeError when training does not reach ``training.min_accuracy`` (nothing is kept)."""
    from safetensors.torch import load_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    wanted = _settings(task, training)
    with open(directory / LOCK_NAME, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        sidecar = read_sidecar(directory)
        weights = directory / WEIGHTS_NAME
        if sidecar is not None and {k: sidecar.get(k) for k in wanted} == wanted and _header(weights) == sidecar:
            model = LlamaForCausalLM(decoder_config(task, training))
            model.load_state_dict(load_file(str(weights)), strict=True)
            return model.eval().requires_grad_(False)
        if log is not None:
            log(f"training the copy-task decoder for the KV-cache quality figures into {directory}")
        model, measured = train_decoder(task, training)
        if measured["final_accuracy"] < training.min_accuracy:
            raise RuntimeError(f"the copy-task decoder reached {measured['final_accuracy']:.3f} held-out token "
                               f"accuracy after {training.steps} steps, below {training.min_accuracy}: not kept")
        sidecar = {
            **wanted, **measured,
            "data": (f"copy task drawn by CopyTask.sequences: training batches from torch.Generator seed "
                     f"{training.seed}, held-out prompts from seed {EVAL_SEED}"),
            "held_out_prompts": QUALITY_PROMPTS,
            "config": decoder_config(task, training).to_dict(),
            "parameters": sum(p.numel() for p in model.parameters()),
            "torch_version": torch.__version__,
            "transformers_version": transformers.__version__,
            "created_at": datetime.now(UTC).isoformat(),
        }
        _keep(directory, model, json.loads(json.dumps(sidecar)))  # through JSON: the header compares equal
        return model


