"""Fuzzing profile files: any document with the profile's keys either loads into a Profile that holds the
invariants (positive integers, distinct list entries, finite bounded numbers) or is refused with a one-line
ProfileError; never another exception. Run with -s to see how many documents were tried.

Each example is a valid profile (any subset of the optional keys and sections), which must load, and then that
profile with one change at a time at random places, and with all of them together: a value, a list entry or
a whole section replaced by a near miss (NaN, infinities, 0, -1, a boolean, a number as text, an integer no
float holds) or by anything YAML can hold, a list entry repeated, or a key no profile has. One change at a
time is what finds a missing check: a document wrong in several places is refused for the first of them.
"""

import copy
import math
from collections import Counter

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from profile_invariants import profile_violations

from hwbench_pipeline.bench import profile_comparisons
from hwbench_pipeline.bench.profiles import (
    ARCHITECTURES_KEYS,
    BATCH_SCALING_KEYS,
    BROWSERS_KEYS,
    DISTRIBUTED_OPTIONAL_KEYS,
    DISTRIBUTED_REQUIRED_KEYS,
    GENERATION_OPTIONAL_KEYS,
    GENERATION_REQUIRED_KEYS,
    OPTIONAL_KEYS,
    PLANNER_KEYS,
    REQUIRED_KEYS,
    STOPPING_KEYS,
    TRAINING_OPTIONAL_KEYS,
    TRAINING_REQUIRED_KEYS,
    ProfileError,
    load_profile,
)

EXAMPLES = 200

near_misses = st.sampled_from([math.nan, math.inf, -math.inf, 0, -1, True, False, None, "8", 2.5, 10**400, 2147484,
                               "~nobody/x", "a\nb", [], {}])
keys = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12))
#: anything YAML can hold: scalars, nested lists and mappings
anything = st.recursive(keys | near_misses, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    keys, inner, max_size=3), max_leaves=8)


def _names(*choices: str) -> st.SearchStrategy:
    return st.just("all") | st.lists(st.sampled_from(choices), min_size=1, max_size=4, unique=True)


def _counts(*choices: int) -> st.SearchStrategy:
    entries = st.sampled_from(choices) if choices else st.integers(1, 64)
    return st.lists(entries, min_size=1, max_size=4, unique=True)


seconds = st.floats(0.01, 4000) | st.integers(1, 4000)
fractions = st.floats(0.001, 0.999)
CURATED = ("bert", "vit", "llama", "whisper")

# key -> its valid values, per section
STOPPING = {
    "ci_target": fractions, "min_samples": st.integers(3, 20), "max_samples": st.integers(20, 10**6),
    "max_seconds": seconds, "warmup_min_calls": st.integers(0, 5), "warmup_window": st.integers(1, 8),
    "warmup_window_seconds": seconds, "warmup_tolerance": fractions, "warmup_max_seconds": seconds,
    "processes": st.integers(1, 3), "max_processes": st.integers(3, 6),
}
BATCH_SCALING = {"max_batch": st.integers(64, 512), "memory_budget_mb": seconds, "memory_budget_fraction": fractions}
TRAINING_REQUIRED = {
    "families": _names(*CURATED), "presets": _names("tiny", "small"), "batch_sizes": _counts(),
    "seq_lens": _counts(), "precisions": _names("fp32", "bf16", "fp16"),
}
TRAINING_OPTIONAL = {
    "convergence_steps": st.integers(0, 100), "convergence_batch": st.none(), "learning_rate": fractions,
    "target_fraction": fractions, "stopping": st.fixed_dictionaries({}, optional=STOPPING), "timeout_s": seconds,
    "batch_scaling": st.fixed_dictionaries({}, optional=BATCH_SCALING),
}
DISTRIBUTED_REQUIRED = {
    "families": st.lists(st.sampled_from(CURATED), min_size=1, max_size=2, unique=True), "presets": _names("tiny"),
    "strategies": _names("ddp", "fsdp", "pipeline"), "workers": _counts(1, 2, 4),
    "batch_size": st.sampled_from([4, 8, 16]), "seq_len": st.integers(1, 64),
}
DISTRIBUTED_OPTIONAL = {
    "steps": st.integers(3, 30), "warmup_steps": st.integers(0, 5), "threads_per_worker": st.just("auto"),
    "microbatches": st.sampled_from([1, 2, 4]), "max_failures": st.integers(0, 2), "timeout_s": seconds,
}
GENERATION_REQUIRED = {
    "families": _names("llama", "t5", "whisper"), "presets": _names("tiny", "small"), "batch_sizes": _counts(),
    "prompt_lens": _counts(), "new_tokens": st.integers(1, 256),
}
GENERATION_OPTIONAL = {
    "precisions": _names("fp32", "bf16", "int8"), "caches": _names("default", "dynamic", "static", "stateful"),
    "cache_precisions": _names("model", "int8", "int4", "int2"), "residual_length": st.integers(0, 256),
    "stream_clients": _counts(1, 2, 4), "timeout_s": seconds,
    # one process per configuration: a generation section's stopping rule sets no process counts
    "stopping": st.fixed_dictionaries({}, optional={k: v for k, v in STOPPING.items() if "processes" not in k}),
}
ARCHITECTURES_OPTIONAL = {
    "preset": st.sampled_from(["tiny", "small", "base"]), "batch_size": st.integers(1, 8),
    "seq_len": st.integers(1, 64), "timeout_s": seconds,
}
COMPARISON_REQUIRED = {
    "model": st.sampled_from(CURATED), "preset": st.sampled_from(["tiny", "small"]), "batch_size": st.integers(1, 64),
    "seq_len": st.integers(1, 128),
}
COMPARISON_OPTIONAL = {"pairs": st.integers(1, 12), "seconds_per_process": st.floats(0.01, 60),
                       "threshold": fractions}
#: the two ways sides differ: two targets (at one precision), or two precisions (on one target)
TWO_TARGETS = {"targets": st.permutations(["cpu-torch", "cpu-onnxruntime"])}
TWO_PRECISIONS = {"precisions": st.lists(st.sampled_from(["fp32", "bf16", "fp16", "int8-static"]), min_size=2,
                                         max_size=2, unique=True)}
comparisons = st.lists(st.one_of(
    st.fixed_dictionaries({**COMPARISON_REQUIRED, **TWO_TARGETS},
                          optional={**COMPARISON_OPTIONAL, "precision": st.sampled_from(["fp32", "bf16"])}),
    st.fixed_dictionaries({**COMPARISON_REQUIRED, **TWO_PRECISIONS},
                          optional={**COMPARISON_OPTIONAL, "target": st.sampled_from(["cpu-torch", "cpu-openvino"])}),
), min_size=1, max_size=2, unique_by=lambda item: repr(sorted(item.items())))
BROWSERS = {
    "families": _names(*CURATED), "presets": _names("tiny", "small"), "batch_sizes": _counts(), "seq_lens": _counts(),
    "stopping": st.fixed_dictionaries({}, optional=STOPPING),
}
PLANNER = {
    "families": st.just("ci-sample") | _names(*CURATED), "presets": _names("tiny", "small"), "batch_sizes": _counts(),
    "seq_lens": _counts(), "precisions": _names("fp32", "bf16"),
    "stopping": st.fixed_dictionaries({}, optional=STOPPING), "budget": st.sampled_from(["10", "30m", "90s", "2h"]),
    "strategy": st.sampled_from(["uncertainty", "committee", "decision", "random", "grid"]),
}
REQUIRED = {
    "families": st.just("all") | st.lists(st.sampled_from([*CURATED, "roberta"]), min_size=1, max_size=4,
                                          unique=True),
    "presets": _names("tiny", "small", "base", "full"), "batch_sizes": _counts(), "seq_lens": _counts(),
    "precisions": _names("fp32", "bf16", "fp16"),
}
OPTIONAL = {
    "description": st.text(max_size=20), "threads": st.just("all") | st.integers(1, 8),
    "stopping": st.fixed_dictionaries({}, optional=STOPPING), "timeout_s": seconds,
    "memory_limit_mb": st.sampled_from([64, 512.5, 4096]),
    "training": st.fixed_dictionaries(TRAINING_REQUIRED, optional=TRAINING_OPTIONAL),
    "distributed": st.fixed_dictionaries(DISTRIBUTED_REQUIRED, optional=DISTRIBUTED_OPTIONAL),
    "generation": st.fixed_dictionaries(GENERATION_REQUIRED, optional=GENERATION_OPTIONAL),
    "architectures": st.fixed_dictionaries({"models": st.sampled_from(["all", "sample"]) | st.lists(
        st.sampled_from(["bert", "gpt2", "t5", "vit"]), min_size=1, max_size=3, unique=True)},
        optional=ARCHITECTURES_OPTIONAL),
    "comparisons": comparisons,
    "browsers": st.fixed_dictionaries({}, optional=BROWSERS),
    "planner": st.fixed_dictionaries({}, optional=PLANNER),
}
valid_documents = st.fixed_dictionaries(REQUIRED, optional=OPTIONAL)

REPEAT_AN_ENTRY, ADD_A_KEY = object(), object()
#: a change: which place (modulo the number of places), and what happens there
change = st.tuples(st.integers(0, 10**6), st.one_of(near_misses, near_misses, near_misses, near_misses, anything,
                                                    st.just(REPEAT_AN_ENTRY), st.just(ADD_A_KEY)))


def _places(node, path=()):
    """Every place in a document: (path of keys and indices, the value there)."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        yield (*path, key), value
        yield from _places(value, (*path, key))


def _changed(document: dict, changes_to_make: list) -> dict:
    """``document`` with each change made at the place its number picks."""
    for number, change in changes_to_make:
        places = list(_places(document))
        path, value = places[number % len(places)]
        parent = document
        for key in path[:-1]:
            parent = parent[key]
        if change is REPEAT_AN_ENTRY:
            if isinstance(value, list) and value:
                value.append(value[number % len(value)])
        elif change is ADD_A_KEY:
            (value if isinstance(value, dict) else document)["speed"] = 11
        else:
            parent[path[-1]] = change
    return document


def test_the_fuzzer_draws_every_key_a_profile_has():
    assert REQUIRED.keys() | OPTIONAL.keys() == REQUIRED_KEYS | OPTIONAL_KEYS
    assert TRAINING_REQUIRED.keys() | TRAINING_OPTIONAL.keys() == TRAINING_REQUIRED_KEYS | TRAINING_OPTIONAL_KEYS
    assert DISTRIBUTED_REQUIRED.keys() | DISTRIBUTED_OPTIONAL.keys() == (
        DISTRIBUTED_REQUIRED_KEYS | DISTRIBUTED_OPTIONAL_KEYS)
    assert GENERATION_REQUIRED.keys() | GENERATION_OPTIONAL.keys() == (
        GENERATION_REQUIRED_KEYS | GENERATION_OPTIONAL_KEYS)
    assert STOPPING.keys() == STOPPING_KEYS and BATCH_SCALING.keys() == BATCH_SCALING_KEYS
    assert ARCHITECTURES_OPTIONAL.keys() | {"models"} == ARCHITECTURES_KEYS
    assert BROWSERS.keys() == BROWSERS_KEYS and PLANNER.keys() == PLANNER_KEYS
    assert (COMPARISON_REQUIRED.keys() | COMPARISON_OPTIONAL.keys() | TWO_TARGETS.keys() | TWO_PRECISIONS.keys()
            | {"target", "precision"}) == profile_comparisons.REQUIRED_KEYS | profile_comparisons.OPTIONAL_KEYS


def test_any_profile_document_loads_valid_or_is_refused_in_one_line(tmp_path):
    path = tmp_path / "fuzzed.yaml"
    outcomes: Counter[str] = Counter()

    def load(document: dict) -> str:
        path.write_text(yaml.safe_dump(document))
        try:
            profile = load_profile(str(path))
        except ProfileError as exc:
            message = str(exc)
            assert "\n" not in message and message.startswith(f"{path}: "), message
            outcome = "refused"
        else:
            assert profile_violations(profile) == [], document
            outcome = "loaded"
        outcomes[outcome] += 1
        return outcome

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(valid_documents, st.lists(change, min_size=1, max_size=4))
    def loads_valid_or_refuses(document, changes_to_make):
        assert load(document) == "loaded", document  # a valid profile is never refused
        for one in changes_to_make:  # one change at a time: each is what decides the outcome
            load(_changed(copy.deepcopy(document), [one]))
        if len(changes_to_make) > 1:
            load(_changed(copy.deepcopy(document), changes_to_make))

    loads_valid_or_refuses()
    print(f"\nfuzzed {sum(outcomes.values())} profile documents ({EXAMPLES} valid ones, each also changed): "
          f"{outcomes['loaded']} loaded, {outcomes['refused']} refused")
    assert outcomes["refused"]
