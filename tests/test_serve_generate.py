"""``hwbench serve-generate`` on a tiny llama, served for real by uvicorn on a free loopback port: streamed tokens
equal in-process generation and transformers' generate(), arrive one by one, need the token when the server has
one, stop when cancelled, and a bad request or a batch that does not fit fails alone."""

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch
import uvicorn
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from hwbench_pipeline.bench.scenarios.generation import generate, reference_generation
from hwbench_pipeline.bench.served_model import load_served_model
from hwbench_pipeline.bench.serving import app as generate_app
from hwbench_pipeline.bench.serving.app import MAX_MESSAGE_BYTES, create_generate_app
from hwbench_pipeline.bench.streaming import StreamError, concurrency_sweep, stream, stream_request
from hwbench_pipeline.cli import main
from hwbench_pipeline.commands import serve_generate

TOKEN = "test-token-123"


@pytest.fixture(scope="module")
def served():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two busy cores: one thread per generation keeps steps steady
    yield load_served_model("llama", "tiny", "cpu-torch")
    torch.set_num_threads(threads)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(served, token=None, **limits):
    """The app under uvicorn in a thread on a free port; yields (ws base URL, http base URL)."""
    port = _free_port()
    limits.setdefault("max_new_tokens", 2000)  # the long generations below (tiny llama: 2048 positions)
    app = create_generate_app(served, token, **limits)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           ws_max_size=MAX_MESSAGE_BYTES))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"ws://127.0.0.1:{port}/generate", f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(20)


def stats(http: str, token: str | None = None) -> dict:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(f"{http}/stats", headers=headers), timeout=10) as answer:
        return json.loads(answer.read())


def in_process(served, request: dict, reference: bool = True) -> tuple[list, torch.Tensor | None]:
    """The same request through the model's Generator and generate() directly, and transformers' generate()."""
    prompt_len = len(request["prompt"]) if "prompt" in request else request["prompt_len"]
    inputs = served.inputs(request.get("prompt"), prompt_len, request.get("seed", 0), request.get("batch", 1))
    generator = served.prepare(inputs, request["new_tokens"])
    try:
        tokens = generate(generator, inputs, request["new_tokens"]).token_matrix()
    finally:
        generator.release()
    if not reference:
        return tokens.tolist(), None
    return tokens.tolist(), reference_generation(served.model, inputs, request["new_tokens"])[0]


def wait_until_idle(http: str, token: str | None = None) -> dict:
    deadline = time.monotonic() + 30
    while (now := stats(http, token))["running"]:
        assert time.monotonic() < deadline, now
        time.sleep(0.05)
    return now


def test_streamed_tokens_equal_in_process_generate_and_transformers_generate(served):
    with serving(served) as (url, _):
        for request in ({"prompt": [5, 17, 300, 42, 9, 1000, 3], "new_tokens": 12},
                        {"prompt_len": 24, "seed": 7, "new_tokens": 10},
                        {"prompt_len": 16, "seed": 3, "new_tokens": 8, "batch": 3}):
            streamed = stream(url, request)
            tokens, reference = in_process(served, request)
            batch = request.get("batch", 1)
            assert streamed.final["tokens"] == (tokens[0] if batch == 1 else tokens)
            assert tokens == reference.tolist()
            # the token messages carry the same tokens, step by step (one per sequence for a batch)
            by_step = [list(step) for step in zip(*tokens, strict=True)]
            assert streamed.tokens == ([t[0] for t in by_step] if batch == 1 else by_step)


def test_token_messages_arrive_one_by_one_with_increasing_client_and_server_times(served):
    new = 300
    with serving(served) as (url, _):
        seq = stream(url, {"prompt_len": 8, "new_tokens": new})
    assert [m["index"] for m in seq.messages] == list(range(new))
    assert all(b > a for a, b in zip(seq.arrival_ns, seq.arrival_ns[1:], strict=False))
    server_ms = [m["server_ms"] for m in seq.messages]
    assert all(b > a for a, b in zip(server_ms, server_ms[1:], strict=False))
    # streamed, not buffered: the first token reached the client before the server had generated the last one
    # (the server's clock starts after the request was sent, so this bound is conservative)
    assert seq.ttft_ms < server_ms[-1]
    done = seq.final
    assert done["done"] and done["steps"] == new and len(done["itl_ms"]) == new - 1
    assert done["ttft_ms"] == pytest.approx(server_ms[0])
    assert done["itl_ms"] == pytest.approx([b - a for a, b in zip(server_ms, server_ms[1:], strict=False)])
    assert seq.ttft_ms >= done["ttft_ms"] and len(seq.inter_token_ms) == new - 1


def test_a_missing_or_wrong_token_is_refused_before_the_socket_opens(served):
    request = {"prompt_len": 4, "new_tokens": 2}
    with serving(served, TOKEN) as (url, http):
        for token in (None, "wrong-token"):
            with pytest.raises(InvalidStatus) as refused:
                stream(url, request, token=token)
            assert refused.value.response.status_code == 401
            assert json.loads(refused.value.response.body) == {"detail": "missing or wrong bearer token"}
        with pytest.raises(urllib.error.HTTPError) as http_refused:
            stats(http)
        assert http_refused.value.code == 401
        assert stream(url, request, token=TOKEN).final["done"]
        assert stats(http, TOKEN)["completed"] == 1 and stats(http, TOKEN)["refused"] == 2


def _handshake_status(http: str, host: str) -> int:
    """The status line of a WebSocket handshake sent by hand with this Host header (clients write their own)."""
    port = int(http.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET /generate HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        return int(s.recv(1024).split(b" ")[1])


def test_a_foreign_host_or_origin_is_refused(served):
    async def handshake(url, headers):
        async with connect(url, additional_headers=headers):
            pass

    with serving(served) as (url, http):
        # a page elsewhere opening a socket to 127.0.0.1 (its Origin), or a name re-pointed at it (the Host)
        with pytest.raises(InvalidStatus) as refused:
            asyncio.run(handshake(url, {"Origin": "https://evil.example"}))
        assert refused.value.response.status_code == 403
        assert _handshake_status(http, "evil.example") == 403
        assert _handshake_status(http, "localhost:80") == 101
        asyncio.run(handshake(url, {"Origin": "http://localhost:3000"}))


@pytest.mark.parametrize("how", ["cancel message", "socket closed"])
def test_cancelling_stops_generation_within_a_step(served, how):
    new = 1500

    async def close_after_first_token(url):
        async with connect(url) as ws:
            await ws.send(json.dumps({"prompt_len": 8, "new_tokens": new}))
            json.loads(await ws.recv())

    with serving(served) as (url, http):
        if how == "cancel message":
            seq = stream(url, {"prompt_len": 8, "new_tokens": new}, cancel_after=1)
            assert seq.final["cancelled"] and seq.close_code == 1000
            assert seq.final["tokens_sent"] == len(seq.messages) and seq.final["steps"] < new
            # the step running when the cancel came finished; no other started
            assert 0 <= seq.final["steps"] - seq.final["steps_when_cancelled"] <= 1
        else:
            asyncio.run(close_after_first_token(url))
        idle = wait_until_idle(http)
        time.sleep(0.3)
        after = stats(http)
        assert after["steps"] == idle["steps"] < new  # no step ran after the generation stopped
        assert after["max_steps_after_stop"] <= 1
        assert after["cancelled" if how == "cancel message" else "disconnected"] == 1
        assert stream(url, {"prompt_len": 8, "new_tokens": 3}).final["done"]


BAD_REQUESTS = [
    ("not json {", "bad_request", "not valid JSON"),
    ("[1, 2]", "bad_request", "must be a JSON object"),
    ({"prompt_len": 8}, "bad_request", "new_tokens: Field required"),
    ({"prompt_len": 8, "new_tokens": 4, "temperature": 0.5}, "bad_request", "temperature: Extra inputs"),
    ({"prompt_len": 8, "new_tokens": "4"}, "bad_request", "new_tokens: Input should be a valid integer"),
    ({"prompt": [1, "a"], "new_tokens": 4}, "bad_request", "prompt.1: Input should be a valid integer"),
    ({"prompt": [1, 2], "prompt_len": 2, "new_tokens": 4}, "bad_request", "exactly one of prompt"),
    ({"prompt": [1, 99999], "new_tokens": 4}, "bad_request", "token ids must be in [0, 1024): got 99999"),
    ({"prompt_len": 8, "new_tokens": 65}, "bad_request", "new_tokens must be between 1 and 64"),
    ({"prompt_len": 8, "new_tokens": 4, "batch": 9}, "bad_request", "batch must be between 1 and 8"),
    ({"prompt_len": 2040, "new_tokens": 64}, "unsupported_configuration",
     "prompt 2040 + 64 new tokens = 2104 positions, beyond the model's context of 2048"),
]


def test_a_bad_message_gets_an_error_and_the_server_serves_the_next_client(served):
    async def send_raw(url, payload):
        async with connect(url) as ws:
            await ws.send(payload if isinstance(payload, str) else json.dumps(payload))
            message = json.loads(await ws.recv())
            await ws.wait_closed()
            return message, ws.close_code

    with serving(served, max_new_tokens=64, max_batch=8) as (url, http):
        for payload, error_class, text in BAD_REQUESTS:
            message, code = asyncio.run(send_raw(url, payload))
            assert message["class"] == error_class and text in message["error"], (payload, message)
            assert set(message) == {"error", "class"} and code == 1008
            good = stream(url, {"prompt": [3, 4, 5], "new_tokens": 4})
            assert good.final["tokens"] == in_process(served, {"prompt": [3, 4, 5], "new_tokens": 4}, False)[0][0]
        assert stats(http)["refused"] == len(BAD_REQUESTS)


def _memory_bytes() -> int:
    total = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        name, value = line.split(":")
        if name in ("MemTotal", "SwapTotal"):
            total += int(value.split()[0]) * 1024
    return total


@pytest.mark.skipif(not Path("/proc/sys/vm/overcommit_memory").exists()
                    or Path("/proc/sys/vm/overcommit_memory").read_text().strip() == "1",
                    reason="needs Linux refusing an allocation larger than memory (overcommit_memory 0 or 2)")
def test_a_batch_that_does_not_fit_in_memory_is_answered_out_of_memory_and_the_server_goes_on(served):
    # one prompt token for a batch whose embeddings alone need twice this machine's memory and swap: the kernel
    # refuses that allocation outright, so nothing is touched (the prompt is a broadcast view, a few bytes)
    batch = 2 * _memory_bytes() // (4 * served.config.hidden_size) + 1
    with serving(served, max_batch=batch) as (url, http):
        with pytest.raises(StreamError) as failed:
            stream(url, {"prompt": [1], "new_tokens": 2, "batch": batch})
        assert failed.value.error_class == "out_of_memory" and failed.value.close_code == 1011
        assert "can't allocate memory" in str(failed.value)
        assert stream(url, {"prompt": [1], "new_tokens": 2, "batch": 2}).final["done"]
        assert stats(http)["failed"] == 1


def test_two_generators_over_one_model_in_two_threads_give_the_tokens_each_gives_alone(served):
    requests = [{"prompt_len": 16, "seed": seed, "new_tokens": 200} for seed in (1, 2)]
    alone = [in_process(served, r, reference=False)[0] for r in requests]
    together: list = [None, None]
    start = threading.Barrier(2)

    def run(i):
        start.wait()
        together[i] = in_process(served, requests[i], reference=False)[0]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert together == alone and alone[0] != alone[1]


def test_two_concurrent_clients_each_get_their_own_correct_tokens(served):
    requests = [{"prompt_len": 16, "seed": seed, "new_tokens": 300} for seed in (11, 12)]

    async def both(url):
        return await asyncio.gather(*(stream_request(url, r) for r in requests))

    with serving(served, max_clients=2) as (url, http):
        streamed = asyncio.run(both(url))
        assert stats(http)["peak_running"] == 2  # they did generate at the same time
    for seq, request in zip(streamed, requests, strict=True):
        assert seq.final["tokens"] == in_process(served, request, reference=False)[0][0]
    assert streamed[0].final["tokens"] != streamed[1].final["tokens"]


def test_a_client_beyond_the_running_and_waiting_limits_is_refused_busy(served):
    async def one_long_one_refused(url):
        # long enough to hold the slot on any machine (cancelled near its end, ~3 s on 2 cores)
        long = asyncio.create_task(stream_request(url, {"prompt_len": 8, "new_tokens": 1500}, cancel_after=1400))
        await asyncio.sleep(0.1)
        while not long.done():  # wait until the first one holds the slot (its first token came)
            try:
                await stream_request(url, {"prompt_len": 8, "new_tokens": 2})
            except StreamError as exc:
                return exc, await long
            await asyncio.sleep(0.05)
        raise AssertionError("the second client was never refused")

    with serving(served, max_clients=1, max_waiting=0) as (url, _):
        refused, first = asyncio.run(one_long_one_refused(url))
    assert refused.error_class == "busy" and refused.close_code == 1013
    assert "1 generating and 0 waiting" in str(refused)
    assert first.final["cancelled"]


def test_a_waiting_client_gets_its_slot_when_one_frees(served):
    async def two(url):
        return await asyncio.gather(*(stream_request(url, {"prompt_len": 8, "seed": s, "new_tokens": 100})
                                      for s in (1, 2)))

    with serving(served, max_clients=1, max_waiting=1) as (url, http):
        first, second = asyncio.run(two(url))
        assert stats(http)["peak_running"] == 1 and stats(http)["completed"] == 2
    # the one that waited did so while the other generated (it may have arrived after the other's prefill began)
    waited, other = sorted((first, second), key=lambda s: s.final["queue_ms"], reverse=True)
    assert waited.final["queue_ms"] > 0.5 * (other.final["ttft_ms"] + sum(other.final["itl_ms"]))


def test_the_benchmark_client_reports_percentiles_per_client_count(served):
    with serving(served, max_clients=2) as (url, _):
        sweep = concurrency_sweep(url, {"prompt_len": 8, "new_tokens": 6}, [1, 2], sequences=2, warmup=1)
    assert set(sweep) == {1, 2}
    for count, figures in sweep.items():
        assert figures["sequences"] == 2 * count and len(figures["tokens_by_client"]) == count
        assert 0 < figures["ttft_p50_ms"] <= figures["ttft_p99_ms"]
        assert 0 < figures["itl_p50_ms"] <= figures["itl_p99_ms"] and figures["tokens_per_s"] > 0
        assert figures["ttft_p50_ms"] >= figures["server_ttft_p50_ms"] * 0.5
    tokens, _ = in_process(served, {"prompt_len": 8, "seed": 1, "new_tokens": 6}, reference=False)
    assert sweep[2]["tokens_by_client"][1] == tokens[0]


def test_the_cli_refuses_a_non_loopback_host_without_a_token(capsys, monkeypatch):
    monkeypatch.delenv("HWBENCH_API_TOKEN", raising=False)
    assert main(["serve-generate", "--model", "llama", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "refusing to serve on 0.0.0.0 without a token" in err[0]


def test_the_cli_refuses_a_model_that_does_not_generate_and_a_non_torch_target(capsys):
    assert main(["serve-generate", "--model", "bert", "--preset", "tiny"]) == 2
    assert "bert does not generate tokens" in capsys.readouterr().err
    assert main(["serve-generate", "--model", "llama", "--preset", "tiny", "--target", "cpu-onnxruntime"]) == 2
    assert "serve-generate runs torch targets for now" in capsys.readouterr().err


def test_the_cli_defaults_are_the_apps():
    assert (serve_generate.MAX_CLIENTS, serve_generate.MAX_WAITING, serve_generate.QUEUE_SECONDS,
            serve_generate.MAX_NEW_TOKENS, serve_generate.MAX_BATCH) == (
        generate_app.MAX_CLIENTS, generate_app.MAX_WAITING, generate_app.QUEUE_SECONDS,
        generate_app.MAX_NEW_TOKENS, generate_app.MAX_BATCH)


@pytest.mark.slow
def test_the_cli_serves_a_real_model_with_a_token_and_stops_on_ctrl_c(served):
    port = _free_port()
    env = {**os.environ, "HWBENCH_API_TOKEN": TOKEN}
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from hwbench_pipeline.cli import main; sys.exit(main(sys.argv[1:]))",
         "serve-generate", "--model", "llama", "--preset", "tiny", "--port", str(port), "--max-clients", "2",
         "--threads", "1"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    http = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                stats(http, TOKEN)
                break
            except (urllib.error.URLError, OSError):
                assert time.monotonic() < deadline, "the server did not answer within 60 s"
                time.sleep(0.2)
        request = {"prompt": [7, 8, 9], "new_tokens": 5}
        streamed = stream(f"ws://127.0.0.1:{port}/generate", request, token=TOKEN)
        # the server built its own model from the same seed: the same weights, the same tokens
        assert streamed.final["tokens"] == in_process(served, request, reference=False)[0][0]
    finally:
        proc.send_signal(signal.SIGINT)  # uvicorn shuts down cleanly on Ctrl-C
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    output = proc.stdout.read()
    assert proc.returncode == 0, output
    assert f"streaming llama/tiny on cpu-torch on ws://127.0.0.1:{port}/generate (bearer token required); 2 " \
           "generation(s) at once" in output
