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
from im2text.tasks import get_task


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
    """(call keywords, group key) from the task table: requests batch together only when both
    are equal. Every parameter is checked here, before any work is queued (422 if invalid)."""
    spec = get_task(task)
    params: dict[str, Any] = {}
    for p in spec.params:
        if not p.server:
            continue
        value = getattr(req, p.name)
        if value is not None and p.kind == "text":
            value = check_text(value, p.name, cfg) if value.strip() else None
        elif value is not None and p.kind == "texts":
            value = check_texts(value, p.name.removesuffix("s"), cfg)
        params[p.name] = value
    if spec.pairs:
        req.question = check_text(req.question, "question", cfg)
    if spec.generates:
        params.update(generation_params(req, model, cfg))
    try:
        spec.validate(model.family, params)
    except (TypeError, ValueError) as e:
        raise ApiError(422, "invalid_request_error", str(e)) from None
    return params, _frozen(params)


def _frozen(value: Any) -> Hashable:
    if isinstance(value, dict):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    return value


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
    inputs: list[Any] = [(s, question) for s in good] if get_task(task).pairs else good
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
