"""``streaming_fields``: the generation scenario's streamed figures, measured for real (uvicorn serving a tiny
llama in a thread, the clients in a child process) and set against in-process generation of the same
configuration."""

import threading

import pytest
import torch

from hwbench_pipeline.bench.scenarios.generation.decode import generate, sequence_figures
from hwbench_pipeline.bench.served_model import load_served_model
from hwbench_pipeline.bench.streaming import StreamError, streaming_fields

PROMPT, NEW = 16, 8
LIST_FIELDS = ("stream_ttft_p50_ms", "stream_ttft_p99_ms", "stream_itl_p50_ms", "stream_itl_p99_ms",
               "stream_server_ttft_p50_ms", "stream_server_itl_p50_ms", "stream_tokens_per_s")


@pytest.fixture(scope="module")
def served():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two shared cores: one thread per generation
    yield load_served_model("llama", "tiny", "cpu-torch")
    torch.set_num_threads(threads)


def in_process(served, batch: int = 1, seed: int = 0) -> dict:
    """The scenario's side: the same configuration through a Generator and generate(), its figures and tokens."""
    inputs = served.inputs(None, PROMPT, seed, batch)
    generator = served.prepare(inputs, NEW)
    try:
        sequences = [generate(generator, inputs, NEW) for _ in range(4)]
    finally:
        generator.release()
    return {**sequence_figures(sequences[1:], batch, PROMPT, NEW), "tokens": sequences[0].token_matrix()}


def no_server_thread_left() -> bool:
    return not any(t.name.startswith("serve-generate-") for t in threading.enumerate())


def test_every_client_count_gets_measured_fields_and_streamed_tokens_equal_in_process_ones(served):
    local = in_process(served)
    fields = streaming_fields(served, PROMPT, NEW, in_process=local, clients=(1, 2), sequences=2)

    assert fields["stream_clients"] == [1, 2] and fields["stream_sequences"] == 2
    for name in LIST_FIELDS:
        assert len(fields[name]) == 2 and all(value > 0 for value in fields[name]), name
    for p50, p99 in (("stream_ttft_p50_ms", "stream_ttft_p99_ms"), ("stream_itl_p50_ms", "stream_itl_p99_ms")):
        assert all(a <= b for a, b in zip(fields[p50], fields[p99], strict=True))
    assert fields["stream_tokens_match"] is True
    # the overhead is one client's streamed p50 minus the in-process p50, both measured
    assert fields["stream_overhead_ttft_ms"] == pytest.approx(fields["stream_ttft_p50_ms"][0] - local["ttft_p50_ms"])
    assert fields["stream_overhead_itl_ms"] == pytest.approx(fields["stream_itl_p50_ms"][0] - local["itl_p50_ms"])
    assert fields["stream_foreign_cpu_fraction"] is None or 0 <= fields["stream_foreign_cpu_fraction"] <= 1
    assert fields["stream_seconds"] > 0
    assert no_server_thread_left()


def test_a_batch_streams_each_sequence_of_the_in_process_token_matrix(served):
    local = in_process(served, batch=2, seed=3)
    fields = streaming_fields(served, PROMPT, NEW, in_process=local, seed=3, batch=2, clients=(1,), sequences=1)
    assert fields["stream_tokens_match"] is True and fields["stream_tokens_per_s"][0] > 0


def test_tokens_other_than_in_process_ones_are_a_mismatch_and_no_one_client_count_means_no_overhead(served):
    local = in_process(served)
    wrong = local["tokens"].clone()
    wrong[0, -1] += 1
    threads = torch.get_num_threads()
    fields = streaming_fields(served, PROMPT, NEW, in_process={**local, "tokens": wrong}, clients=(2,), sequences=1,
                              threads=2)
    assert fields["stream_tokens_match"] is False
    assert fields["stream_overhead_ttft_ms"] is None and fields["stream_overhead_itl_ms"] is None
    assert torch.get_num_threads() == threads  # the server's thread count was set for the measurement only


def test_a_request_the_server_refuses_raises_its_error_class_and_the_server_stops(served):
    local = in_process(served)
    with pytest.raises(StreamError) as refused:
        streaming_fields(served, served.context + 1, NEW, in_process=local, clients=(1,), sequences=1)
    assert refused.value.error_class == "unsupported_configuration"
    assert no_server_thread_left()


def test_settings_that_cannot_be_measured_are_refused_before_a_server_starts(served):
    local = in_process(served)
    with pytest.raises(ValueError, match="lacks tokens"):
        streaming_fields(served, PROMPT, NEW, in_process={k: v for k, v in local.items() if k != "tokens"})
    with pytest.raises(ValueError, match="clients"):
        streaming_fields(served, PROMPT, NEW, in_process=local, clients=(0,))


def test_a_sweep_past_its_time_limit_is_an_error_and_the_server_stops(served):
    local = in_process(served)
    with pytest.raises(RuntimeError, match="did not finish within 0.01 s"):
        streaming_fields(served, PROMPT, NEW, in_process=local, clients=(1,), sequences=1, timeout_s=0.01)
    assert no_server_thread_left()
