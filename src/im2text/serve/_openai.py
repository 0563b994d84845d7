"""OpenAI-compatible `/v1/chat/completions` and `/v1/models`, so the `openai` client works as is.

Chat VLMs (families that are `Conversational`) get the conversation unchanged: system, user and
assistant turns, with every image part in place, through their chat template, answered once.
For the other models the last user message's text is the question (models whose tasks include
"ask") or the caption prompt (captioners); its image parts (or, in a follow-up turn, the latest
earlier image) are the images, answered one after the other (their answers joined by newlines).

Each image's answer comes from `Model.generate_stream`, run on the model's own worker thread (the
one its batcher uses, so a chat answer and a batch never share the model at once), within the
model's queue limit and `request_timeout_s`. With `"stream": true` the answer is sent as
`chat.completion.chunk` events while it is generated, word by word (models whose settings use
beam search know their answer only at the end and send it in one piece); the streamed text
equals the non-streamed answer. Errors found before the first piece (bad image, full queue,
timeout) still come back as plain JSON; a failure after it is a last `{"error": ...}` event.

`usage` counts real tokens: `prompt_tokens` are the model's text input as its processor builds
it (summed over images), `completion_tokens` the tokens generated (summed over images and
choices). Streams carry it in a last chunk with no choices when `stream_options.include_usage`.
`n` > 1 samples independent answers (`temperature` > 0 needed; reproducible with `seed`);
several choices cannot be streamed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
import weakref
from collections import Counter
from collections.abc import AsyncIterator
from concurrent.futures import Executor
from types import SimpleNamespace
from typing import Any

from fastapi import FastAPI, Request
from starlette.responses import StreamingResponse

from im2text.families import Conversational
from im2text.images import ImageError, ImageSource
from im2text.model import Model
from im2text.serve import _schemas as S
from im2text.serve._errors import ApiError, error_body
from im2text.serve._inputs import image_from_string, load_images, parse_body
from im2text.serve._params import check_text, generation_params, image_size
from im2text.serve._state import CHAT_TASKS, ServerState

log = logging.getLogger("im2text.serve")

_CHAT_ERRORS: dict[int | str, dict[str, Any]] = {
    c: {"model": S.ErrorResponse} for c in (400, 401, 403, 404, 413, 415, 422, 429, 500, 503)
}

# Chat images waiting for or running on each model's worker thread, per app: they count
# against the model's queue limit together with the batcher's queued images.
_WAITING: weakref.WeakKeyDictionary[ServerState, Counter[str]] = weakref.WeakKeyDictionary()


def chat_models(state: ServerState) -> list[str]:
    """Ids of the models that caption or answer questions (what `/v1/models` lists)."""
    return [i for i, m in state.models.items() if is_chat_model(m)]


def add_openai_routes(app: FastAPI, state: ServerState) -> None:
    @app.get("/v1/models", response_model=S.ModelList, tags=["openai"], summary="Chat models.")
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [_card(i) for i in chat_models(state)]}

    @app.get(
        "/v1/models/{model_id:path}",
        response_model=S.ModelCard,
        responses={404: {"model": S.ErrorResponse}},
        tags=["openai"],
        summary="One chat model.",
    )
    async def get_model(model_id: str) -> dict[str, Any]:
        if model_id not in chat_models(state):
            raise ApiError(404, "model_not_found", f"no chat model {model_id!r} here")
        return _card(model_id)

    @app.post(
        "/v1/chat/completions",
        response_model=S.ChatCompletion,
        responses={
            **_CHAT_ERRORS,
            200: {
                "content": {"text/event-stream": {}},
                "description": "JSON, or (stream) SSE `chat.completion.chunk` events (see "
                "ChatCompletionChunk) ending with `data: [DONE]`",
            },
        },
        tags=["openai"],
        summary="Caption or answer about images, OpenAI chat-completions style.",
        openapi_extra=S.body_doc(S.ChatCompletionRequest, multipart=False),
    )
    async def chat_completions(request: Request) -> Any:
        return await _chat(state, request)


def _card(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": "im2text"}


def _parts(message: S.ChatMessage) -> tuple[list[str], list[str]]:
    """(texts, image URLs) of one message."""
    if message.content is None:
        return [], []
    if isinstance(message.content, str):
        return [message.content], []
    texts, urls = [], []
    for part in message.content:
        if part.type == "text" and part.text:
            texts.append(part.text)
        elif part.type == "image_url" and part.image_url is not None:
            iu = part.image_url
            urls.append(iu if isinstance(iu, str) else iu.url)
    return texts, urls


async def _chat(state: ServerState, request: Request) -> Any:
    cfg = state.config
    req, _ = await parse_body(request, S.ChatCompletionRequest, cfg)
    if req.model not in state.models:
        state.pick(req.model, "caption")  # 503 while loading, else 404 naming the models
    if req.model not in chat_models(state):
        raise ApiError(
            404,
            "model_not_found",
            f"model {req.model!r} neither captions nor answers questions; chat models here: "
            f"{', '.join(chat_models(state)) or 'none'}",
            param="model",
        )
    model_id, model = req.model, state.models[req.model]
    if isinstance(model.family, Conversational):
        return await _converse(state, req, model_id, model)
    users = [m for m in req.messages if m.role == "user"]
    if not users:
        raise ApiError(422, "invalid_request_error", "no user message", param="messages")
    texts, urls = _parts(users[-1])
    for earlier in reversed(users[:-1]):  # a follow-up question about an earlier image
        if urls:
            break
        urls = _parts(earlier)[1]
    _require_images(urls)
    text = " ".join(" ".join(texts).split())
    ask = "ask" in model.tasks and (bool(text) or "caption" not in model.family.tasks)
    what: dict[str, str | None]
    if ask:
        if not text:
            raise ApiError(422, "invalid_request_error", "ask a question about the image")
        what = {"question": check_text(text, "question", cfg)}
    else:
        what = {"prompt": check_text(text, "prompt", cfg) if text else None}
    n = req.n or 1
    gen = _generation(req, n, model, cfg)
    sources = await _load_chat_images(state, model_id, model, urls)
    chat = _Chat(state, model_id, "ask" if ask else "caption", what, gen, sources)
    return await _respond(chat, req, model_id, n)


async def _converse(
    state: ServerState, req: S.ChatCompletionRequest, model_id: str, model: Model
) -> Any:
    """A chat VLM: the whole conversation, its images in place, one answer."""
    cfg = state.config
    messages: list[dict[str, Any]] = []
    urls: list[str] = []
    for m in req.messages:
        if m.role not in ("system", "user", "assistant"):
            raise ApiError(422, "invalid_request_error", f"unknown role {m.role!r}",
                           param="messages")  # fmt: skip
        parts: list[dict[str, Any]] = []
        if isinstance(m.content, str):
            parts.append({"type": "text", "text": check_text(m.content, "message", cfg)})
        for part in m.content if isinstance(m.content, list) else []:
            if part.type == "text" and part.text and part.text.strip():
                parts.append({"type": "text", "text": check_text(part.text, "message", cfg)})
            elif part.type == "image_url" and part.image_url is not None:
                iu = part.image_url
                urls.append(iu if isinstance(iu, str) else iu.url)
                parts.append({"type": "image"})
        if parts:
            messages.append({"role": m.role, "content": parts})
    if not any(m["role"] == "user" for m in messages):
        raise ApiError(422, "invalid_request_error", "no user message", param="messages")
    _require_images(urls)
    n = req.n or 1
    gen = _generation(req, n, model, cfg)
    sources = await _load_chat_images(state, model_id, model, urls)
    chat = _Chat(state, model_id, "ask", {"messages": messages}, gen, [sources])
    return await _respond(chat, req, model_id, n)


def _require_images(urls: list[str]) -> None:
    if not urls:
        raise ApiError(
            422,
            "invalid_request_error",
            'send the image as a content part {"type": "image_url", "image_url": {"url": '
            '"data:image/png;base64,..."}}',
            param="messages",
        )


async def _load_chat_images(
    state: ServerState, model_id: str, model: Model, urls: list[str]
) -> list[ImageSource]:
    """Decode a chat's images (429 before decoding anything when the model's queue is full);
    a chat answer has no per-image error field, so any bad image fails the request."""
    cfg = state.config
    raws = [image_from_string(u, f"image[{i}]", cfg) for i, u in enumerate(urls)]
    waiting = _WAITING.setdefault(state, Counter())
    state.check_room(model_id, waiting[model_id] + len(raws))
    sources: list[ImageSource] = []
    for item in await load_images(raws, cfg, image_size(model), state.decode_limiter):
        if isinstance(item, ApiError):
            raise item
        sources.append(item)
    return sources


async def _respond(chat: _Chat, req: S.ChatCompletionRequest, model_id: str, n: int) -> Any:
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    if req.stream:
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        first = await chat.start()  # errors before the first piece are still plain JSON
        return StreamingResponse(
            chat.sse(first, completion_id, created, include_usage),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    per_image = await chat.complete()
    choices = [
        {
            "index": i,
            "message": {"role": "assistant", "content": "\n".join(c[i].text for c in per_image)},
            "finish_reason": "stop",
            "logprobs": None,
        }
        for i in range(n)
    ]
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model_id,
        "choices": choices,
        "usage": chat.usage(),
    }


def _generation(req: S.ChatCompletionRequest, n: int, model: Model, cfg: Any) -> dict[str, Any]:
    """The request's generation settings, checked against the server's caps (422 if over)."""
    if n > 1 and req.stream:
        raise ApiError(
            400,
            "invalid_request_error",
            f"n={n} cannot be streamed: ask for several choices with stream false, or n=1",
            param="n",
        )
    if n > 1 and not req.temperature:
        raise ApiError(
            422,
            "invalid_request_error",
            f"n={n} needs sampling (temperature > 0): greedy decoding gives one answer",
            param="n",
        )
    if n > cfg.max_beams:
        raise ApiError(
            422,
            "invalid_request_error",
            f"n={n} is over this server's limit of {cfg.max_beams} choices",
            param="n",
        )
    fields: dict[str, Any] = {"max_new_tokens": req.max_completion_tokens or req.max_tokens}
    if fields["max_new_tokens"]:
        fields["max_new_tokens"] = min(fields["max_new_tokens"], cfg.max_new_tokens)
    if req.temperature:  # 0 or unset: the model's own settings (greedy or its preset's beams)
        # Sampling draws one token at a time, as OpenAI's models do (so it streams too).
        fields.update(
            do_sample=True,
            temperature=req.temperature,
            top_p=req.top_p,
            seed=req.seed,
            num_beams=1,
            num_return_sequences=n if n > 1 else None,
        )
    return generation_params(SimpleNamespace(**fields), model, cfg)


class _Chat:
    """One chat request's images, each generated in turn on the model's worker thread."""

    def __init__(
        self,
        state: ServerState,
        model_id: str,
        task: str,
        what: dict[str, Any],
        gen: dict[str, Any],
        sources: list[Any],  # ImageSources, or one list of them (a conversation)
    ) -> None:
        self.state = state
        self.model_id = model_id
        self.task = task
        self.what = what  # {"question": ...}, {"prompt": ...} or {"messages": [...]}
        self.gen = gen
        self.sources = sources
        self.results: list[dict[str, Any]] = []  # generate_stream's `result`, per image done
        self.timeout = state.config.request_timeout_s

    def usage(self) -> dict[str, int]:
        prompt = sum(r["prompt_tokens"] for r in self.results)
        completion = sum(c.num_tokens for r in self.results for c in r["candidates"])
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    def _submit(self, source: Any) -> _Job:
        state = self.state
        if state.shutting_down:
            raise ApiError(503, "shutting_down", "the server is shutting down")
        job = _Job(asyncio.get_running_loop())
        waiting = _WAITING.setdefault(state, Counter())
        waiting[self.model_id] += 1
        args = (state.models[self.model_id], source, {**self.what, **self.gen})
        try:
            future = asyncio.get_running_loop().run_in_executor(
                _worker(state, self.model_id), job.run, *args
            )
        except RuntimeError:  # the worker was shut down
            waiting[self.model_id] -= 1
            raise ApiError(503, "shutting_down", "the server is shutting down") from None

        def finished(_: Any) -> None:
            waiting[self.model_id] -= 1

        future.add_done_callback(finished)
        return job

    async def _next(self, job: _Job) -> tuple[str, Any]:
        """The job's next event; 503 if none comes within the request timeout."""
        try:
            async with asyncio.timeout(self.timeout):
                kind, value = await job.events.get()
        except TimeoutError:
            job.cancel()
            raise ApiError(
                503,
                "timeout",
                f"no answer within {self.timeout:g} s; retry later",
                headers={"Retry-After": str(self.state.config.retry_after_s)},
            ) from None
        if kind == "error":
            raise self._error(value)
        if kind == "done":
            self.results.append(value)
            seconds = value.pop("seconds")
            self.state.metrics.observe_batch(self.model_id, self.task, 1, seconds)
        return kind, value

    def _error(self, exc: BaseException) -> ApiError:
        if isinstance(exc, ApiError):
            return exc
        if isinstance(exc, ImageError):
            return ApiError(422, "invalid_image", str(exc))
        if isinstance(exc, (ValueError, TypeError)):  # settings the model refuses
            return ApiError(422, "invalid_request_error", str(exc))
        log.error("chat generation on %s failed", self.model_id, exc_info=exc)
        return ApiError(500, "model_error", f"the model failed ({exc.__class__.__name__})")

    async def complete(self) -> list[tuple[Any, ...]]:
        """Every image's candidates (the request's n choices), in order."""
        out = []
        for source in self.sources:
            job = self._submit(source)
            try:
                while (event := await self._next(job))[0] != "done":
                    pass
            finally:
                job.cancel()  # a no-op once done; stops the work if this request failed
            out.append(event[1]["candidates"])
        return out

    async def start(self) -> tuple[_Job, tuple[str, Any]]:
        """Start the first image and wait for its first piece (or its end, or its error)."""
        job = self._submit(self.sources[0])
        try:
            return job, await self._next(job)
        except BaseException:
            job.cancel()
            raise

    async def sse(
        self, first: tuple[_Job, tuple[str, Any]], completion_id: str, created: int, usage: bool
    ) -> AsyncIterator[str]:
        def chunk(delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> str:
            body = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": self.model_id,
                "choices": []
                if delta is None
                else [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
                **extra,
            }
            return f"data: {json.dumps(body)}\n\n"

        job, event = first
        try:
            yield chunk({"role": "assistant", "content": ""})
            for i in range(len(self.sources)):
                if i:
                    job = self._submit(self.sources[i])
                    event = await self._next(job)
                    yield chunk({"content": "\n"})  # between two images' answers
                while event[0] != "done":
                    yield chunk({"content": event[1]})
                    event = await self._next(job)
            yield chunk({}, "stop")
            if usage:
                yield chunk(None, usage=self.usage())
            yield "data: [DONE]\n\n"
        except ApiError as e:  # the answer has begun: the error is the stream's last event
            self.state.metrics.errors.labels(e.type).inc()
            yield f"data: {json.dumps(error_body(e.type, e.message, e.param))}\n\n"
        finally:  # also when the client goes away: the generation stops at its next word
            job.cancel()


class _Job:
    """One image's generation on the model's worker thread; its events come back on the loop.

    Events: ("piece", text) as the answer grows, then ("done", result) with
    `generate_stream`'s result (and the seconds it took), or ("error", exception).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._cancelled = threading.Event()

    def cancel(self) -> None:
        self._cancelled.set()

    def _emit(self, kind: str, value: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, value))
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass

    def run(self, model: Model, source: Any, kwargs: dict[str, Any]) -> None:
        """In the worker thread: generate, handing each piece to the loop as it comes."""
        if self._cancelled.is_set():  # given up while it waited (timeout, client gone)
            return
        start = time.perf_counter()
        result: dict[str, Any] = {}
        try:
            pieces = model.generate_stream(source, result=result, **kwargs)
            try:
                for piece in pieces:
                    if self._cancelled.is_set():
                        return
                    self._emit("piece", piece)
            finally:
                close = getattr(pieces, "close", None)
                if close is not None:
                    close()  # stops a generate() that has not finished
            self._emit("done", {**result, "seconds": time.perf_counter() - start})
        except BaseException as e:  # reported to the request, raised there
            self._emit("error", e)


def _worker(state: ServerState, model_id: str) -> Executor:
    # The batcher's single worker thread for this model: a chat generation queues behind the
    # batch running on it (and batches behind it), so the model never runs two calls at once.
    return state.batchers[model_id].worker


def is_chat_model(model: Model) -> bool:
    return any(t in model.tasks for t in CHAT_TASKS)
