"""Profile files: every number and list is checked, and a bad one is one line naming the file, section, key and
value."""

import copy
import math

import pytest
import yaml
from profile_invariants import profile_violations

from hwbench_pipeline.bench.profiles import MAX_TIMEOUT_S, ProfileError, builtin_profiles, load_profile

VALID = {
    "families": ["bert"], "presets": ["tiny"], "batch_sizes": [1, 8], "seq_lens": [16], "precisions": ["fp32"],
    "threads": 1, "timeout_s": 60, "stopping": {"ci_target": 0.05, "processes": 2, "max_processes": 3},
    "training": {"families": ["bert"], "presets": ["tiny"], "batch_sizes": [2, 4], "seq_lens": [16],
                 "precisions": ["fp32"], "convergence_steps": 10, "convergence_batch": 4, "learning_rate": 3e-4,
                 "target_fraction": 0.5, "batch_scaling": {"max_batch": 16, "memory_budget_mb": 900,
                                                           "memory_budget_fraction": 0.5},
                 "stopping": {"min_samples": 5}, "timeout_s": 120},
    "distributed": {"families": ["bert"], "presets": ["tiny"], "strategies": ["ddp"], "workers": [1, 2],
                    "batch_size": 4, "seq_len": 16, "steps": 5, "warmup_steps": 1, "threads_per_worker": 1,
                    "microbatches": 2, "max_failures": 0, "timeout_s": 300},
    "generation": {"families": ["llama", "t5"], "presets": ["tiny"], "batch_sizes": [1, 2], "prompt_lens": [16, 64],
                   "new_tokens": 8, "precisions": ["fp32", "int8"], "caches": ["dynamic", "static"],
                   "cache_precisions": ["model", "int4"], "residual_length": 16, "stream_clients": [1, 4],
                   "stopping": {"min_samples": 4},
                   "timeout_s": 120},
}


def test_a_generation_section_takes_any_generative_architecture(tmp_path):
    document = _with("generation.families", ["llama", "gpt2", "bart"])
    assert load_profile(_write(tmp_path, document)).generation.families == ("llama", "gpt2", "bart")


def _write(tmp_path, document) -> str:
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(document))
    return str(path)


def _with(dotted_key: str, value) -> dict:
    """VALID with one key (``training.batch_scaling.max_batch``) set to ``value``."""
    document = copy.deepcopy(VALID)
    *parents, last = dotted_key.split(".")
    section = document
    for name in parents:
        section = section[name]
    section[last] = value
    return document


@pytest.mark.parametrize("name", builtin_profiles())
def test_every_built_in_profile_loads_and_holds_the_invariants(name):
    assert profile_violations(load_profile(name)) == []


def test_a_profile_with_every_section_loads_with_its_numbers(tmp_path):
    profile = load_profile(_write(tmp_path, VALID))
    assert profile_violations(profile) == []
    assert profile.timeout_s == 60.0 and profile.stopping.processes == 2
    assert profile.training.stopping.min_samples == 5 and profile.training.stopping.processes == 2
    assert profile.training.max_batch == 16 and profile.distributed.workers == (1, 2)
    generation = profile.generation
    assert generation.precisions == ("fp32", "int8-dynamic") and generation.stopping.min_samples == 4
    assert generation.stopping.max_processes == 1  # whole sequences in one process, not the top-level rule's
    configs = profile.generation_configs("cpu-torch", ("dynamic", "static", "compiled"))
    assert len(configs) == 2 * 2 * 2 * 2 * 2 * 2 and {c.residual_length for c in configs} == {16}
    assert {c.stream_clients for c in configs} == {(1, 4)}
    # a backend offering none of the section's caches runs its own default
    assert {c.cache for c in profile.generation_configs("cpu-openvino", ("stateful",))} == {"stateful"}


HUGE = 10**400  # an integer no float holds


@pytest.mark.parametrize("key, value, expected", [
    # top level
    ("timeout_s", math.nan, "'timeout_s' must be a number > 0 and <= 2147483, got nan"),
    ("timeout_s", math.inf, "'timeout_s' must be a number > 0 and <= 2147483, got inf"),
    ("timeout_s", -1, "'timeout_s' must be a number > 0"),
    ("timeout_s", 0, "'timeout_s' must be a number > 0"),
    ("timeout_s", True, "'timeout_s' must be a number > 0 and <= 2147483, got True"),
    ("timeout_s", "600", "'timeout_s' must be a number > 0 and <= 2147483, got '600'"),
    ("timeout_s", HUGE, "'timeout_s' must be a number > 0"),
    ("timeout_s", MAX_TIMEOUT_S + 1, "'timeout_s' must be a number > 0 and <= 2147483, got 2147484"),
    ("threads", True, "'threads' must be 'all' or a positive integer, got True"),
    ("threads", 0, "'threads' must be 'all' or a positive integer, got 0"),
    ("threads", 2.5, "'threads' must be 'all' or a positive integer, got 2.5"),
    ("batch_sizes", [1, 1], "'batch_sizes' lists 1 more than once, got [1, 1]"),
    ("batch_sizes", [True], "'batch_sizes' must be a non-empty list of positive integers, got [True]"),
    ("batch_sizes", [1.5], "'batch_sizes' must be a non-empty list of positive integers, got [1.5]"),
    ("batch_sizes", ["8"], "'batch_sizes' must be a non-empty list of positive integers, got ['8']"),
    ("seq_lens", [16, 32, 16], "'seq_lens' lists 16 more than once"),
    ("seq_lens", [-16], "'seq_lens' must be a non-empty list of positive integers, got [-16]"),
    ("precisions", ["fp32", "fp32"], "'precisions' lists fp32 more than once"),
    ("precisions", [["fp32"]], "unknown precisions ['fp32']; accepted: fp32, bf16, fp16"),
    ("presets", ["tiny", "tiny"], "'presets' lists tiny more than once"),
    ("families", ["bert", "bert"], "'families' lists bert more than once"),
    ("families", ["bert", "roberta", "roberta"], "'families' lists roberta more than once"),
    ("families", ["bert", "a\nb"], "unknown families 'a\\nb'; accepted: bert"),
    ("families", [["bert"]], "'families' must be 'all' or a non-empty list of names, got [['bert']]"),
    ("families", ["~no-such-user-here/x"], "unknown families ~no-such-user-here/x"),
    # stopping: StoppingRule's own checks, named
    ("stopping.ci_target", math.nan, "bad 'stopping' section (ci_target must be a finite number, got nan)"),
    ("stopping.max_seconds", math.inf, "bad 'stopping' section (max_seconds must be a finite number, got inf)"),
    ("stopping.processes", True, "bad 'stopping' section (processes must be an integer, got True)"),
    ("stopping.min_samples", "10", "bad 'stopping' section (min_samples must be an integer, got '10')"),
    ("stopping.max_samples", 5, "bad 'stopping' section (max_samples must be at least min_samples (10), got 5)"),
    ("stopping.warmup_window", 0, "bad 'stopping' section (warmup_window must be at least 1, got 0)"),
    ("stopping.warmup_tolerance", -0.1, "bad 'stopping' section (warmup_tolerance must be between 0 and 1"),
    ("stopping.warmup_max_seconds", -1, "bad 'stopping' section (warmup_max_seconds must be zero or more"),
    ("stopping.speed", 1, "'stopping' must be a mapping with keys among ci_target, max_processes"),
    ("stopping", 5, "'stopping' must be a mapping with keys among"),
    # training
    ("training.batch_sizes", [4, 4], "training: 'batch_sizes' lists 4 more than once"),
    ("training.precisions", ["fp32", "bf16", "fp32"], "training: 'precisions' lists fp32 more than once"),
    ("training.families", ["bert", "bert"], "training: 'families' lists bert more than once"),
    ("training.convergence_steps", True, "training: 'convergence_steps' must be an integer >= 0, got True"),
    ("training.convergence_steps", -1, "training: 'convergence_steps' must be an integer >= 0, got -1"),
    ("training.convergence_batch", True, "training: 'convergence_batch' must be an integer > 0, got True"),
    ("training.convergence_batch", 4.0, "training: 'convergence_batch' must be an integer > 0, got 4.0"),
    ("training.learning_rate", math.nan, "training: 'learning_rate' must be a number > 0 and <= 1, got nan"),
    ("training.learning_rate", 0, "training: 'learning_rate' must be a number > 0 and <= 1, got 0"),
    ("training.target_fraction", 1.0, "training: 'target_fraction' must be a number > 0 and <= 0.999, got 1.0"),
    ("training.target_fraction", math.nan, "training: 'target_fraction' must be a number > 0"),
    ("training.batch_scaling.max_batch", True, "training: 'batch_scaling.max_batch' must be an integer > 0"),
    ("training.batch_scaling.memory_budget_mb", math.inf,
     "training: 'batch_scaling.memory_budget_mb' must be a number > 0, got inf"),
    ("training.batch_scaling.memory_budget_mb", HUGE, "training: 'batch_scaling.memory_budget_mb' must be a number"),
    ("training.batch_scaling.memory_budget_fraction", 1.5,
     "training: 'batch_scaling.memory_budget_fraction' must be a number > 0 and <= 1, got 1.5"),
    ("training.batch_scaling", 0, "training: 'batch_scaling' must be a mapping"),
    ("training.stopping.ci_target", math.nan, "training: bad 'stopping' section (ci_target must be a finite number"),
    ("training.timeout_s", math.inf, "training: 'timeout_s' must be a number > 0 and <= 2147483, got inf"),
    # distributed
    ("distributed.workers", [1, 2, 1], "distributed: 'workers' lists 1 more than once"),
    ("distributed.strategies", ["ddp", "ddp"], "distributed: 'strategies' lists ddp more than once"),
    ("distributed.batch_size", True, "distributed: 'batch_size' must be an integer > 0, got True"),
    ("distributed.steps", math.nan, "distributed: 'steps' must be an integer > 2, got nan"),
    ("distributed.warmup_steps", -1, "distributed: 'warmup_steps' must be an integer >= 0, got -1"),
    ("distributed.max_failures", False, "distributed: 'max_failures' must be an integer >= 0, got False"),
    ("distributed.threads_per_worker", 0, "distributed: 'threads_per_worker' must be an integer > 0, got 0"),
    ("distributed.microbatches", 2.0, "distributed: 'microbatches' must be an integer > 0, got 2.0"),
    ("distributed.timeout_s", -1, "distributed: 'timeout_s' must be a number > 0"),
    # generation
    ("generation.families", ["bert"], "generation: bert does not generate tokens; generative models: t5, llama, qwen2"),
    ("generation.families", ["no_such_model"], "generation: unknown families no_such_model; accepted: bert,"),
    ("generation.prompt_lens", [16, 16], "generation: 'prompt_lens' lists 16 more than once"),
    ("generation.new_tokens", 0, "generation: 'new_tokens' must be an integer > 0, got 0"),
    ("generation.new_tokens", True, "generation: 'new_tokens' must be an integer > 0, got True"),
    ("generation.caches", ["paged"], "generation: unknown caches paged; accepted: default, dynamic, static"),
    ("generation.cache_precisions", ["int5"], "generation: unknown cache_precisions int5; accepted: model, int8"),
    ("generation.residual_length", -1, "generation: 'residual_length' must be an integer >= 0, got -1"),
    ("generation.stream_clients", [0], "generation: 'stream_clients' must be a non-empty list of positive integers"),
    ("generation.precisions", ["fp64"], "generation: unknown precisions fp64"),
    ("generation.stopping.min_samples", 1, "generation: bad 'stopping' section (min_samples must be at least 3"),
    ("generation.stopping.processes", 2, "generation: 'stopping' cannot set processes in a generation section"),
    ("memory_limit_mb", 8, "'memory_limit_mb' must be a number > 16, got 8"),
    ("memory_limit_mb", math.nan, "'memory_limit_mb' must be a number > 16, got nan"),
])
def test_a_bad_number_or_list_is_one_line_naming_file_section_key_and_value(tmp_path, key, value, expected):
    path = _write(tmp_path, _with(key, value))
    with pytest.raises(ProfileError) as refused:
        load_profile(path)
    message = str(refused.value)
    assert message.startswith(f"{path}: ") and expected in message and "\n" not in message, message


def test_the_architectures_section_refuses_bad_numbers_and_repeated_models(tmp_path):
    document = {**VALID, "architectures": {"models": ["bert", "gpt2"], "batch_size": 1, "seq_len": 16}}
    assert load_profile(_write(tmp_path, document)).architectures.models == ("bert", "gpt2")
    for changed, expected in [({"batch_size": True}, "architectures: 'batch_size' must be an integer > 0, got True"),
                              ({"seq_len": 0}, "architectures: 'seq_len' must be an integer > 0, got 0"),
                              ({"timeout_s": math.nan}, "architectures: 'timeout_s' must be a number > 0"),
                              ({"models": ["gpt2", "gpt2"]}, "architectures: 'models' lists gpt2 more than once"),
                              ({"preset": ["tiny"]}, "architectures: 'preset' must be one of tiny, small, base")]:
        document["architectures"] = {"models": ["bert", "gpt2"], "batch_size": 1, "seq_len": 16, **changed}
        with pytest.raises(ProfileError, match="architectures") as refused:
            load_profile(_write(tmp_path, document))
        assert expected in str(refused.value), refused.value


def test_unknown_keys_of_any_type_are_named_in_one_line(tmp_path):
    path = _write(tmp_path, {**VALID, 7: 1, "two\nlines": 2})
    with pytest.raises(ProfileError, match=r"unknown keys 7, 'two\\nlines'; accepted keys: architectures") as refused:
        load_profile(path)
    assert "\n" not in str(refused.value)


def test_a_file_that_is_not_text_is_refused_in_one_line(tmp_path):
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"\xff\xfe\x00families: [bert]\n")
    with pytest.raises(ProfileError, match="binary.yaml: cannot be read"):
        load_profile(str(path))


def test_a_memory_limit_per_measuring_process_is_read_and_absent_means_none(tmp_path):
    assert load_profile(_write(tmp_path, {**VALID, "memory_limit_mb": 2048})).memory_limit_mb == 2048.0
    assert load_profile(_write(tmp_path, VALID)).memory_limit_mb is None


def test_a_browsers_section_gives_the_browser_targets_their_own_grid_and_leaves_the_others_theirs(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({
        "families": ["bert", "vit", "llama"], "presets": ["small"], "batch_sizes": [1, 8], "seq_lens": [128],
        "precisions": ["fp32", "int8-dynamic"], "stopping": {"processes": 3, "max_processes": 3},
        "browsers": {"families": ["bert"], "presets": ["tiny"], "stopping": {"processes": 1, "max_processes": 1}},
    }))
    profile = load_profile(str(path))
    browser = profile.inference_configs("browser-chromium-wasm")
    # the section's keys replace the profile's; batch sizes and precisions it leaves out are the profile's
    assert {(c.family, c.preset, c.batch_size, c.spec) for c in browser} == {
        ("bert", "tiny", 1, "fp32"), ("bert", "tiny", 8, "fp32"), ("bert", "tiny", 1, "int8-dynamic"),
        ("bert", "tiny", 8, "int8-dynamic")}
    assert {c.rule.processes for c in browser} == {1}
    native = profile.inference_configs("cpu-onnxruntime")
    assert {c.family for c in native} == {"bert", "vit", "llama"} and {c.rule.processes for c in native} == {3}
    path.write_text(yaml.safe_dump({**yaml.safe_load(path.read_text()), "browsers": {"browser": "chromium"}}))
    with pytest.raises(ProfileError, match="browsers: expected a mapping with keys among"):
        load_profile(str(path))
