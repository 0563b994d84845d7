"""OpenAI-compatible `/v1/chat/completions` and `/v1/models`, so the `openai` client works as is.

The last user message's text is the question (models whose tasks include "ask") or the caption
prompt (captioners); its image parts (or, in a follow-up turn, the latest earlier image) are the
images. The models do not decode token by token through this API, so a streamed answer is computed
first and then sent as `chat.completion.chunk` events: errors still come back as plain JSON.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, Request
from starlette.responses import StreamingResponse

from im2text.model import Model
from im2text.serve import _schemas as S
from im2text.serve._errors import ApiError
from im2text.serve._inputs import image_from_string, load_images, parse_body
from im2text.serve._params import image_size, run_images, task_params
from im2text.serve._state import CHAT_TASKS, ServerState

_CHAT_ERRORS: dict[int | str, dict[str, Any]] = {
    c: {"model": S.ErrorResponse} for c in (400, 401, 403, 404, 413, 415, 422, 429, 503)
}


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
            200: {"content": {"text/event-stream": {}}, "description": "JSON, or SSE chunks"},
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
    model = state.models[req.model]
    users = [m for m in req.messages if m.role == "user"]
    if not users:
        raise ApiError(422, "invalid_request_error", "no user message", param="messages")
    texts, urls = _parts(users[-1])
    for earlier in reversed(users[:-1]):  # a follow-up question about an earlier image
        if urls:
            break
        urls = _parts(earlier)[1]
    if not urls:
        raise ApiError(
            422,
            "invalid_request_error",
            'send the image as a content part {"type": "image_url", "image_url": {"url": '
            '"data:image/png;base64,..."}}',
            param="messages",
        )
    text = " ".join(" ".join(texts).split())
    task = (
        "ask"
        if "ask" in model.tasks and (text or "caption" not in model.family.tasks)
        else ("caption")
    )
    fields: dict[str, Any] = {"max_new_tokens": req.max_completion_tokens or req.max_tokens}
    if req.temperature:  # 0 or unset: greedy, which is what these models do best
        fields.update(do_sample=True, temperature=req.temperature, top_p=req.top_p, seed=req.seed)
    if fields["max_new_tokens"]:
        fields["max_new_tokens"] = min(fields["max_new_tokens"], cfg.max_new_tokens)
    task_req: S.AskRequest | S.CaptionRequest
    if task == "ask":
        if not text:
            raise ApiError(422, "invalid_request_error", "ask a question about the image")
        task_req = S.AskRequest(question=text, **fields)
    else:
        task_req = S.CaptionRequest(prompt=text or None, **fields)
    params, key = task_params(task, task_req, model, cfg)
    raws = [image_from_string(u, f"image[{i}]", cfg) for i, u in enumerate(urls)]
    state.check_room(req.model, len(raws))
    loaded = await load_images(raws, cfg, image_size(model), state.decode_limiter)
    for item in loaded:  # a chat answer has no per-image error field: any bad image fails it
        if isinstance(item, ApiError):
            raise item
    results = await run_images(state, req.model, task, key, params, raws, loaded, task_req)
    failed = [r for r in results if not r.ok]
    if failed:
        raise ApiError(500, "model_error", failed[0].error or "the model failed")
    content = "\n".join(r.text for r in results)
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    if req.stream:
        return StreamingResponse(
            _sse(completion_id, created, req.model, content),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": req.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
    }


def _sse(completion_id: str, created: int, model: str, content: str) -> Iterator[str]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        body = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        }
        return f"data: {json.dumps(body)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    words = content.split(" ")
    for i, word in enumerate(words):  # word by word, as clients render streams progressively
        yield chunk({"content": word if i == 0 else " " + word})
    yield chunk({}, "stop")
    yield "data: [DONE]\n\n"


def is_chat_model(model: Model) -> bool:
    return any(t in model.tasks for t in CHAT_TASKS)
