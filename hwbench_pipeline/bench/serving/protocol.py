"""The request a ``/generate`` client sends first, checked against the server's limits and the model, and the
close codes that end a connection."""

# No "from __future__ import annotations": pydantic reads GenerateRequest's annotations at run time.
import json

from pydantic import BaseModel, ConfigDict, ValidationError

from hwbench_pipeline.bench.failures import BenchmarkFailure
from hwbench_pipeline.bench.scenarios.generation.inputs import check_context
from hwbench_pipeline.bench.served_model import ServedModel

#: prompt tokens at most for a model whose positions are relative (t5): it has no context limit to check against
MAX_PROMPT_WITHOUT_CONTEXT = 8192

# close codes (RFC 6455): a finished, cancelled or refused-as-busy request closes normally or with "try again";
# a bad request with "policy violation"; a failure of the server with "internal error"
CLOSE_NORMAL, CLOSE_POLICY, CLOSE_INTERNAL, CLOSE_TRY_AGAIN = 1000, 1008, 1011, 1013


class GenerateRequest(BaseModel):
    """The one message a client sends first. Strict: JSON numbers only where numbers go, no other fields."""

    model_config = ConfigDict(extra="forbid", strict=True)

    prompt: list[int] | None = None
    prompt_len: int | None = None
    seed: int = 0
    new_tokens: int
    batch: int = 1


class RequestError(Exception):
    """A request refused before generation starts: its message goes to the client with ``error_class``."""

    def __init__(self, error_class: str, message: str) -> None:
        super().__init__(message)
        self.error_class = error_class


def parse_request(text: str | bytes, served: ServedModel, *, max_new_tokens: int, max_batch: int) -> GenerateRequest:
    """The request in ``text``, checked against the limits and the model; RequestError saying what is wrong."""
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise RequestError("bad_request", f"the request is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RequestError("bad_request", f"the request must be a JSON object, got {type(data).__name__}")
    try:
        request = GenerateRequest.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'request'}: {e['msg']}"
                             for e in exc.errors()[:3])
        raise RequestError("bad_request", f"invalid request: {problems}"[:500]) from None
    if (request.prompt is None) == (request.prompt_len is None):
        raise RequestError("bad_request", "give exactly one of prompt (a list of token ids) and prompt_len")
    prompt_len = len(request.prompt) if request.prompt is not None else request.prompt_len
    if prompt_len < 1:
        raise RequestError("bad_request", f"the prompt needs at least one token, got {prompt_len}")
    if served.context is None and prompt_len > MAX_PROMPT_WITHOUT_CONTEXT:
        raise RequestError("bad_request", f"{served.label} has no context limit; this server takes prompts of up "
                                          f"to {MAX_PROMPT_WITHOUT_CONTEXT} tokens, got {prompt_len}")
    if request.prompt is not None:
        vocab = served.vocab_size
        bad = [t for t in request.prompt if t < 0 or (vocab is not None and t >= vocab)]
        if bad:
            raise RequestError("bad_request", f"token ids must be in [0, {vocab}): got {bad[0]}")
        from hwbench_pipeline.bench import models

        modality = models.family_spec(served.family).modality
        if modality != "text":  # the prompt also holds an image, audio...: the family's own inputs make it
            raise RequestError("bad_request", f"{served.family} takes {modality} input, not token ids alone: send "
                                              "prompt_len instead of a prompt")
    if not 1 <= request.new_tokens <= max_new_tokens:
        raise RequestError("bad_request", f"new_tokens must be between 1 and {max_new_tokens} (this server's "
                                          f"--max-new-tokens), got {request.new_tokens}")
    if not 1 <= request.batch <= max_batch:
        raise RequestError("bad_request", f"batch must be between 1 and {max_batch} (this server's --max-batch), "
                                          f"got {request.batch}")
    if not 0 <= request.seed < 2**63:
        raise RequestError("bad_request", f"seed must be between 0 and 2**63 - 1, got {request.seed}")
    try:
        check_context(served.config, prompt_len, request.new_tokens, served.label)
    except BenchmarkFailure as exc:
        raise RequestError(exc.failure_class, str(exc)) from None
    return request
