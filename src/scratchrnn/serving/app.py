"""The HTTP application: OpenAI's completions API over the batcher, and the explorer page with the JSON
endpoints it calls. ``create_app`` builds it for one run; ``scratchrnn serve`` runs it on uvicorn."""
from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr
from starlette.exceptions import HTTPException

from .. import __version__, explorer
from ..analysis import prediction_gradients, training_curves
from ..errors import UserError
from ..explorer.bundle import analyze_text, gradients_json, model_summary
from ..generation import Decoding, TokenPicker
from .batcher import Batcher, Busy, Job, Limits, Stream
from .openai_api import (ApiError, Choice, Completion, CompletionRequest, ErrorResponse, ModelCard, ModelList,
                         completion_id, error_body, now, usage, validation_error)
from .served import ServedRun

ERRORS = {400: {"model": ErrorResponse}, 404: {"model": ErrorResponse}, 429: {"model": ErrorResponse}}


class AnalyzeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: StrictStr


class GradientsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: StrictStr
    position: StrictInt = Field(ge=0)


class BodyLimit:
    """Refuses (413) a request body over ``limit`` bytes before the app reads any of it: the body is
    gathered here, counted, then handed on."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        too_large = declared is not None and declared.isdigit() and int(declared) > self.limit
        body, more = b"", not too_large
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            too_large = len(body) > self.limit
            if too_large:
                break
        if too_large:
            response = JSONResponse(error_body(f"the request body is larger than {self.limit} bytes",
                                               code="request_too_large"), status_code=413)
            return await response(scope, receive, send)
        handed = False

        async def replay():
            nonlocal handed
            if not handed:
                handed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()
        await self.app(scope, replay, send)


def _error_response(err: ApiError) -> JSONResponse:
    return JSONResponse(error_body(err.message, err.kind, err.param, err.code), status_code=err.status)


def _picker(body: CompletionRequest, choice: int) -> TokenPicker:
    """Choice ``choice`` of a prompt: greedy at temperature 0; with a seed, choice 0 draws from the seed
    itself (as ``scratchrnn generate --seed``) and choice k from (seed, k)."""
    if body.temperature == 0:
        return TokenPicker(Decoding("greedy"))
    picker = TokenPicker(Decoding("sample", body.temperature, None, None if body.top_p == 1 else body.top_p,
                                  body.seed))
    if body.seed is not None and choice > 0:
        picker.rng = np.random.default_rng([body.seed, choice])
    return picker


def _check_limits(body: CompletionRequest, limits: Limits, model_id: str) -> None:
    if body.model != model_id:
        raise ApiError(404, f"the model {body.model!r} does not exist; this server serves {model_id!r}",
                       param="model", code="model_not_found")
    option = body.unsupported()
    if option is not None:
        raise ApiError(400, f"{option!r} is not supported by this server", param=option, code="unsupported_parameter")
    prompts = body.prompts
    checks = [
        (not prompts, "prompt", "the prompt list is empty"),
        (len(prompts) > limits.max_prompts, "prompt", f"at most {limits.max_prompts} prompts per request"),
        (any(len(p) > limits.max_prompt_chars for p in prompts), "prompt",
         f"a prompt may hold at most {limits.max_prompt_chars} characters"),
        (body.max_tokens > limits.max_tokens, "max_tokens", f"max_tokens may be at most {limits.max_tokens}"),
        (body.n > limits.max_n, "n", f"n may be at most {limits.max_n}"),
        (len(prompts) * body.n > limits.max_streams, "n",
         f"prompts x n may be at most {limits.max_streams}, the streams this server decodes at once"),
        (len(body.stops) > limits.max_stop, "stop", f"at most {limits.max_stop} stop strings"),
        (any(not s or len(s) > limits.max_stop_chars for s in body.stops), "stop",
         f"a stop string holds 1 to {limits.max_stop_chars} characters"),
    ]
    for failed, param, message in checks:
        if failed:
            raise ApiError(400, message, param=param, code="invalid_value")


def _encode(run: ServedRun, text: str, param: str) -> list[int]:
    try:
        return run.encode(text)
    except UserError as err:
        message = str(err).replace("the prefix", f"the {param}")
        raise ApiError(400, message, param=param, code="invalid_value") from None


async def _until_disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _chunk(meta: dict, index: int, text: str, finish: str | None) -> str:
    choice = {"text": text, "index": index, "logprobs": None, "finish_reason": finish}
    return f"data: {json.dumps({**meta, 'choices': [choice]}, ensure_ascii=False)}\n\n"


def create_app(run: ServedRun, limits: Limits = Limits()) -> FastAPI:
    """The application for one run; its batcher starts and stops with the app (the lifespan)."""

    @asynccontextmanager
    async def lifespan(app):
        app.state.batcher = Batcher(run.backend, run.tokens, limits)
        try:
            yield
        finally:
            app.state.batcher.close()

    app = FastAPI(title=f"scratchrnn: {run.model_id}", version=__version__, lifespan=lifespan,
                  description="OpenAI-compatible completions from a character-level RNN trained with scratchrnn "
                              "(a token is a character), and the explorer page at /.")
    app.add_middleware(BodyLimit, limit=limits.max_body_bytes)

    @app.exception_handler(ApiError)
    async def api_error(request, err: ApiError):
        return _error_response(err)

    @app.exception_handler(RequestValidationError)
    async def invalid(request, err: RequestValidationError):
        return _error_response(validation_error(list(err.errors())))

    @app.exception_handler(HTTPException)
    async def http_error(request, err: HTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(err.status_code)
        return JSONResponse(error_body(str(err.detail), code=code), status_code=err.status_code)

    @app.exception_handler(Exception)
    async def unexpected(request, err: Exception):
        return JSONResponse(error_body(f"internal error: {type(err).__name__}", "server_error"), status_code=500)

    # -- OpenAI's API ------------------------------------------------------------------------------------
    card = ModelCard(id=run.model_id, created=run.created)

    @app.get("/v1/models", response_model=ModelList)
    async def list_models():
        return ModelList(data=[card])

    @app.get("/v1/models/{model}", response_model=ModelCard, responses=ERRORS)
    async def get_model(model: str):
        if model != run.model_id:
            raise ApiError(404, f"the model {model!r} does not exist", param="model", code="model_not_found")
        return card

    @app.post("/v1/completions", response_model=Completion, responses=ERRORS)
    async def completions(body: CompletionRequest, request: Request):
        """Continue each prompt ``n`` times. ``stream`` sends server-sent events, one per piece of text,
        ending with ``data: [DONE]``."""
        _check_limits(body, limits, run.model_id)
        encoded = [_encode(run, prompt, "prompt") for prompt in body.prompts]
        streams = [Stream(ids, body.max_tokens, _picker(body, k), body.stops) for ids in encoded for k in range(body.n)]
        loop, event = asyncio.get_running_loop(), asyncio.Event()

        def wake():
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:        # the loop has closed: nobody is waiting any more
                pass
        job = Job(streams, wake, streaming=body.stream)
        batcher: Batcher = request.app.state.batcher
        try:
            batcher.submit(job)
        except Busy as err:
            raise ApiError(429, f"the server is busy: {err}; try again shortly", code="rate_limit_exceeded",
                           kind="rate_limit_error") from None
        meta = {"id": completion_id(), "object": "text_completion", "created": now(), "model": run.model_id}
        prompt_chars = sum(map(len, encoded))
        if body.stream:
            include_usage = body.stream_options is not None and body.stream_options.include_usage
            return StreamingResponse(_events(batcher, job, event, meta, prompt_chars, include_usage),
                                     media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        watcher = asyncio.ensure_future(_until_disconnected(request))
        try:
            while True:
                job.taken()
                if job.finished:
                    break
                waiting = asyncio.ensure_future(event.wait())
                await asyncio.wait({waiting, watcher}, return_when=asyncio.FIRST_COMPLETED)
                waiting.cancel()
                event.clear()
                if watcher.done():
                    batcher.cancel(job)
                    return Response(status_code=499)        # nobody is listening
        finally:
            watcher.cancel()
        if job.error is not None:
            raise ApiError(503, job.error, kind="server_error")
        choices = [Choice(text=s.text(), index=i, finish_reason=s.finish_reason) for i, s in enumerate(job.streams)]
        return Completion(**meta, choices=choices,
                          usage=usage(prompt_chars, sum(len(c.text) for c in choices)))

    # -- the explorer --------------------------------------------------------------------------------------
    summary = model_summary(run.checkpoint.model, run.tokens, model_id=run.model_id, cleaning=run.checkpoint.cleaning,
                            info=run.checkpoint.info)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page():
        return HTMLResponse(explorer.page())

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str):
        if name not in explorer.ASSETS:
            raise HTTPException(404, "Not Found")
        return Response(explorer.asset(name), media_type=explorer.ASSETS[name])

    prompts = run.checkpoint.info.get("prefixes")
    # the prompt training printed its samples from: the text's own first words, or the chapter's
    default_prompt = prompts[0] if isinstance(prompts, list) and prompts and isinstance(prompts[0], str) else None

    @app.get("/api/model")
    async def model_info():
        """The model, the prompt the page starts from, and the limits it keeps to."""
        return {**summary, "max_analyze_chars": limits.max_analyze_chars, "max_tokens": limits.max_tokens,
                "prompt": default_prompt}

    def _analysed_text(text: str) -> tuple[str, list[int]]:
        cleaned = run.clean(text)[:limits.max_analyze_chars]
        return cleaned, _encode(run, cleaned, "text")

    @app.post("/api/analyze")
    def analyze(body: AnalyzeRequest):
        """Every view of a text (cleaned, and cut to the server's limit): predictions and surprise, the
        units, the features they track, gate saturation. Gradients: ``/api/gradients``."""
        text, ids = _analysed_text(body.text)
        truncated = len(run.clean(body.text)) > len(text)
        return {**analyze_text(run.reference, ids, text, all_gradients=False), "truncated": truncated}

    @app.post("/api/gradients")
    def gradients(body: GradientsRequest):
        """Saliency of every earlier character, and the gradient norm of every state, for the prediction
        after ``position``."""
        text, ids = _analysed_text(body.text)
        if body.position >= len(ids):
            raise ApiError(400, f"position must be below {len(ids)}, the length of the text", param="position",
                           code="invalid_value")
        return gradients_json(prediction_gradients(run.reference, ids, [body.position]))

    @app.get("/api/metrics")
    def metrics():
        """The run's training curves, as they stand now (the page polls this while a run trains)."""
        return training_curves(run.run_dir)

    return app


async def _events(batcher: Batcher, job: Job, event: asyncio.Event, meta: dict, prompt_chars: int,
                  include_usage: bool):
    """The server-sent events of a streaming request: each choice's new text as it comes, a last event
    per choice with its finish reason, then ``[DONE]``. A client that goes away cancels this generator,
    and its streams leave the batch."""
    sent = [0] * len(job.streams)
    reported = [False] * len(job.streams)
    try:
        while True:
            job.taken()
            for i, stream in enumerate(job.streams):
                text = stream.text(sent[i])
                if text:
                    sent[i] += len(text)
                    yield _chunk(meta, i, text, None)
                if stream.finished and not reported[i] and sent[i] == stream.released:
                    reported[i] = True
                    yield _chunk(meta, i, "", stream.finish_reason)
            if job.error is not None:
                yield f"data: {json.dumps(error_body(job.error, 'server_error'))}\n\n"
                break
            if all(reported):
                if include_usage:
                    counts = usage(prompt_chars, sum(sent)).model_dump()
                    yield f"data: {json.dumps({**meta, 'choices': [], 'usage': counts})}\n\n"
                break
            await event.wait()
            event.clear()
        yield "data: [DONE]\n\n"
    finally:
        if not job.finished:
            batcher.cancel(job)
