"""Turning a validated request into model work: checked settings, group keys, ordered results."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from im2text.images import ImageSource
from im2text.model import Model
from im2text.serve import _schemas as S
from im2text.serve._errors import ApiError
from im2text.serve._inputs import RawImage
from im2text.serve._state import ServerState
from im2text.serve._tasks import failed
from im2text.serve.config import ServeConfig


def check_text(value: str, what: str, cfg: ServeConfig) -> str:
    text = " ".join(value.split())
    if not text:
        raise ApiError(422, "invalid_request_error", f"empty {what}", param=what)
    if len(text) > cfg.max_text_chars:
        raise ApiError(
            422,
            "text_too_long",
            f"{what} is too long ({len(text)} characters; the limit is {cfg.max_text_chars})",
            param=what,
        )
    return text


def check_texts(values: list[str], what: str, cfg: ServeConfig) -> list[str]:
    if not values:
        raise ApiError(422, "invalid_request_error", f"no {what}s given", param=what)
    if len(values) > cfg.max_texts:
        raise ApiError(
            413, "too_many_texts", f"{len(values)} {what}s (limit {cfg.max_texts})", param=what
        )
    return [check_text(v, what, cfg) for v in values]


def generation_params(req: Any, model: Model, cfg: ServeConfig) -> dict[str, Any]:
    """The generation settings a request sets, checked against the server's caps."""
    gen = {k: getattr(req, k) for k in S.GENERATION_FIELDS if getattr(req, k, None) is not None}
    if gen.get("max_new_tokens", 0) > cfg.max_new_tokens:
        raise ApiError(
            422,
            "invalid_request_error",
            f"max_new_tokens {gen['max_new_tokens']} is over this server's limit of "
            f"{cfg.max_new_tokens}",
            param="max_new_tokens",
        )
    for name in ("num_beams", "num_return_sequences"):
        if gen.get(name, 0) > cfg.max_beams:
            raise ApiError(
                422,
                "invalid_request_error",
                f"{name} {gen[name]} is over this server's limit of {cfg.max_beams}",
                param=name,
            )
    try:  # the same validation the Python API applies, before any work is queued
        model.generation.merged(**gen)
    except (TypeError, ValueError) as e:
        raise ApiError(422, "invalid_request_error", str(e)) from None
    return gen


def task_params(
    task: str, req: Any, model: Model, cfg: ServeConfig
) -> tuple[dict[str, Any], Hashable]:
    """(call keywords, group key): requests batch together only when both are equal."""
    if task == "caption":
        gen = generation_params(req, model, cfg)
        prompt = (
            check_text(req.prompt, "prompt", cfg) if req.prompt and req.prompt.strip() else None
        )
        return {"prompt": prompt, **gen}, (prompt, tuple(sorted(gen.items())))
    if task == "ask":
        gen = generation_params(req, model, cfg)
        req.question = check_text(req.question, "question", cfg)
        cands = (
            check_texts(req.candidates, "candidate", cfg) if req.candidates is not None else None
        )
        key = (tuple(cands) if cands else None, tuple(sorted(gen.items())))
        return {"candidates": cands, **gen}, key
    if task == "read":
        return {"page": req.page}, req.page
    if task == "match":
        texts = check_texts(req.texts, "text", cfg)
        return {"texts": texts}, tuple(texts)
    if task == "classify":
        labels = check_texts(req.labels, "label", cfg) if req.labels is not None else None
        params: dict[str, Any] = {"labels": labels, "top_k": req.top_k}
        if req.templates == ["ensemble"]:
            params["templates"] = "ensemble"
        elif req.templates is not None:
            templates = tuple(check_texts(req.templates, "template", cfg))
            if not all("{}" in t for t in templates):
                raise ApiError(422, "invalid_request_error", 'templates need "{}" for the label')
            params["templates"] = templates
        return params, (tuple(labels or ()), str(params.get("templates")), req.top_k)
    return {}, ()  # embed


async def run_images(
    state: ServerState,
    model_id: str,
    task: str,
    key: Hashable,
    params: dict[str, Any],
    raws: list[RawImage],
    loaded: list[ImageSource | ApiError],
    req: Any,
) -> list[Any]:
    """Results in request order; a single unreadable image is the request's error."""
    if len(loaded) == 1 and isinstance(loaded[0], ApiError):
        state.metrics.errors.labels(loaded[0].type).inc()
        raise loaded[0]
    question = getattr(req, "question", None)
    good = [s for s in loaded if isinstance(s, ImageSource)]
    inputs: list[Any] = [(s, question) for s in good] if task == "ask" else good
    computed = iter(await state.submit(model_id, task, key, params, inputs) if inputs else [])
    out = []
    for raw, item in zip(raws, loaded, strict=True):
        if isinstance(item, ApiError):
            state.metrics.errors.labels(item.type).inc()
            out.append(failed(task, raw.key, item.message, question))
        else:
            result = next(computed)
            if not result.ok:
                state.metrics.errors.labels("item_failed").inc()
            out.append(result)
    return out


def image_size(model: Model) -> int | None:
    try:
        return model.family.image_size
    except Exception:  # engines without a processor: decode at full size
        return None
