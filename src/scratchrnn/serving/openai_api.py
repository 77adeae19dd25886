"""The request and response shapes of OpenAI's completions API, as far as a character model serves them.

FastAPI validates a request against ``CompletionRequest``; whatever it refuses, and every refusal of the
app's own (``ApiError``), is answered with OpenAI's error body ``{"error": {"message", "type", "param",
"code"}}`` (``error_body``), so a client written for OpenAI reports it as it would OpenAI's. Here a token
is a character: ``max_tokens`` counts characters and ``usage`` counts characters.

Options OpenAI has and a character model cannot honour (log-probabilities, echo, suffix, best_of,
penalties, logit_bias) are accepted at their neutral values and refused otherwise, naming the option;
an option OpenAI does not have is refused like OpenAI refuses it.
"""
from __future__ import annotations

import time
import uuid
from typing import Annotated, Union

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

MAX_SEED = (1 << 63) - 1


class ApiError(Exception):
    """A request the server refuses: the HTTP status and OpenAI's error fields."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind


def error_body(message: str, kind: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: StrictBool = False


FiniteFloat = Annotated[float, Field(allow_inf_nan=False, strict=True)]


class CompletionRequest(BaseModel):
    """``POST /v1/completions``. The bounds that depend on the server's limits (``batcher.Limits``) are
    checked by the app after these."""

    model_config = ConfigDict(extra="forbid")

    model: StrictStr
    prompt: Union[StrictStr, list[StrictStr]]
    max_tokens: StrictInt = Field(16, ge=0, description="characters to generate for each choice")
    temperature: FiniteFloat = Field(1.0, ge=0, description="0: the likeliest character every time "
                                                            "(greedy, as `scratchrnn generate`)")
    top_p: FiniteFloat = Field(1.0, gt=0, le=1)
    n: StrictInt = Field(1, ge=1, description="continuations of each prompt")
    seed: StrictInt | None = Field(None, ge=0, le=MAX_SEED,
                                   description="the same seed, prompt and options give the same text")
    stop: Union[StrictStr, list[StrictStr], None] = None
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    # OpenAI's options a character model does not implement: only their neutral values are accepted
    echo: StrictBool = False
    logprobs: StrictInt | None = None
    best_of: StrictInt | None = None
    suffix: StrictStr | None = None
    presence_penalty: FiniteFloat = 0.0
    frequency_penalty: FiniteFloat = 0.0
    logit_bias: dict[str, float] | None = None
    user: StrictStr | None = None

    def unsupported(self) -> str | None:
        """The first option given a value this server cannot honour, or None."""
        neutral = {"echo": False, "logprobs": None, "suffix": None, "presence_penalty": 0.0,
                   "frequency_penalty": 0.0}
        for name, value in neutral.items():
            if getattr(self, name) != value:
                return name
        if self.best_of not in (None, 1):
            return "best_of"
        if self.logit_bias:
            return "logit_bias"
        return None

    @property
    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)

    @property
    def stops(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


class Choice(BaseModel):
    text: str
    index: int
    logprobs: None = None
    finish_reason: str | None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class Completion(BaseModel):
    id: str
    object: str = "text_completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage | None = None


class ModelCard(BaseModel):
    id: str
    object: str = "model"
    created: int
    owned_by: str = "scratchrnn"


class ModelList(BaseModel):
    object: str = "list"
    data: list[ModelCard]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    error: ErrorDetail


def completion_id() -> str:
    return f"cmpl-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


def usage(prompt_chars: int, completion_chars: int) -> Usage:
    return Usage(prompt_tokens=prompt_chars, completion_tokens=completion_chars,
                 total_tokens=prompt_chars + completion_chars)


def validation_error(errors: list[dict]) -> ApiError:
    """OpenAI's answer to what pydantic refused: the first problem, naming its parameter."""
    if not errors:
        return ApiError(400, "the request is invalid")
    first = errors[0]
    kind = first.get("type", "")
    location = [str(part) for part in first.get("loc", ()) if part != "body"]
    if kind == "json_invalid":
        return ApiError(400, "the body of the request is not valid JSON", code="invalid_json")
    if kind == "missing" and location:
        return ApiError(400, f"you must provide {location[0]!r}", param=location[0],
                        code="missing_required_parameter")
    if kind == "extra_forbidden" and location:
        return ApiError(400, f"unrecognized request argument supplied: {location[0]}", param=location[0],
                        code="unknown_parameter")
    if not location:
        return ApiError(400, "the body of the request must be a JSON object", code="invalid_type")
    param = location[0]
    # a Union's alternatives add their own names to the location (prompt.str, prompt.list[str]...)
    detail = first.get("msg", "invalid value")
    return ApiError(400, f"invalid value for {param!r}: {detail}", param=param, code="invalid_value")
