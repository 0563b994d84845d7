"""The FastAPI app: task endpoints, health, metrics, the compare page, and its middleware."""

from __future__ import annotations

import asyncio
import copy
import hmac
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import HTMLResponse, JSONResponse, Response

import im2text
from im2text.model import Model
from im2text.serve import _schemas as S
from im2text.serve._errors import ApiError, error_body, error_response
from im2text.serve._guard import HostGuard
from im2text.serve._inputs import load_images, parse_body
from im2text.serve._metrics import MetricsMiddleware
from im2text.serve._openai import add_openai_routes
from im2text.serve._params import check_texts, image_size, run_images, task_params
from im2text.serve._state import ServerState
from im2text.serve.config import ServeConfig
from im2text.tasks import TASKS

log = logging.getLogger("im2text.serve")

# One endpoint per row of the task table: POST /v1/{task}.
_TASKS: dict[str, tuple[type[S.BaseModel], type[S.BaseModel], str]] = {
    name: (S.REQUESTS[name], S.RESPONSES[name], spec.help.capitalize() + ".")
    for name, spec in TASKS.items()
}

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": S.ErrorResponse, "description": text}
    for code, text in {
        400: "Malformed body, or the model cannot do this task",
        401: "Missing or wrong API key",
        403: "Remote URL refused (disabled, or not a public http(s) address)",
        404: "Unknown model",
        413: "Body, image, pixel count or image count over the limit",
        415: "Content type is neither JSON nor multipart/form-data",
        422: "Invalid field, text too long, unreadable image or bad base64",
        429: "The model's queue is full (see Retry-After)",
        503: "Loading, shutting down, or timed out (see Retry-After)",
    }.items()
}


def create_app(models: dict[str, Model] | list[str], config: ServeConfig | None = None) -> FastAPI:
    """Build the HTTP app.

    Args:
        models: loaded models by id, or model names (presets, Hub ids, directories) to load in
            the background when the app starts (`/ready` answers 503 until they are); a name's
            id is `Model.name` (the preset name, or the directory's name).
        config: limits, batching and security settings (defaults: `ServeConfig()`).

    Returns:
        The FastAPI app; serve it with any ASGI server (`run()` uses uvicorn).
    """
    config = config or ServeConfig()
    state = ServerState(config)
    to_load: list[str] = []
    if isinstance(models, dict):
        for model_id, model in models.items():
            state.add_model(model_id, model)
    else:
        to_load = list(models)
        state.loading = bool(to_load)
    if not to_load and not state.models:
        raise ValueError("no models to serve")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loader = asyncio.create_task(_load_models(state, to_load)) if to_load else None
        try:
            yield
        finally:
            if loader is not None and not loader.done():
                loader.cancel()
            await state.close()

    app = FastAPI(
        title="im2text",
        version=im2text.__version__,
        summary="Images to text: captions, answers, read text, matches, labels, embeddings.",
        lifespan=lifespan,
    )
    app.state.im2text = state
    _install_errors(app, state)
    _add_task_routes(app, state)
    _add_service_routes(app, state)
    add_openai_routes(app, state)
    _add_page(app)
    # Outermost last: metrics see every answer; auth runs before any body is read; the body
    # limit wraps auth, so a refusal (401 or 413) sent before the body has arrived is followed
    # by a bounded drain and reaches a client that writes its whole body before reading.
    app.add_middleware(_Auth, keys=config.api_keys)
    app.add_middleware(_BodyLimit, max_bytes=config.max_body_bytes, timeout_s=config.body_timeout_s)
    app.add_middleware(_SecurityHeaders)
    app.add_middleware(HostGuard, config=config)  # before anything reads the request
    app.add_middleware(MetricsMiddleware, metrics=state.metrics)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


async def _load_models(state: ServerState, names: list[str]) -> None:
    cfg = state.config

    def load_all() -> list[Model]:
        return [
            im2text.load(n, device=cfg.device, dtype=cfg.dtype, **cfg.load_backend()) for n in names
        ]

    try:
        loaded = await asyncio.get_running_loop().run_in_executor(None, load_all)
        for model in loaded:
            state.add_model(model.name, model)
        log.info("ready: %s", ", ".join(state.models))
    except Exception as e:  # /ready reports it; /health stays up so the cause can be read
        log.exception("loading models failed")
        state.load_error = f"{e.__class__.__name__}: {e}"
    finally:
        state.loading = False


# --- task endpoints -------------------------------------------------------------------------------


def _add_task_routes(app: FastAPI, state: ServerState) -> None:
    for task, (schema, response, summary) in _TASKS.items():
        # The body is parsed by hand (JSON *or* multipart), so its schema is declared here.
        app.post(
            f"/v1/{task}",
            response_model=response,
            responses=_ERRORS,
            summary=summary,
            tags=["tasks"],
            openapi_extra=S.body_doc(schema, multipart=True),
            name=task,
        )(_task_endpoint(state, task, schema))


def _task_endpoint(state: ServerState, task: str, schema: type[S.BaseModel]) -> Any:
    async def endpoint(request: Request) -> Any:
        return await _handle_task(state, request, task, schema)

    endpoint.__name__ = f"{task}_endpoint"
    return endpoint


async def _handle_task(
    state: ServerState, request: Request, task: str, schema: type[S.BaseModel]
) -> dict[str, Any]:
    start = time.perf_counter()
    cfg = state.config
    req, raws = await parse_body(request, schema, cfg)
    model_id, model = state.pick(getattr(req, "model", None), task)
    embed_texts = getattr(req, "texts", None) if task == "embed" else None
    if embed_texts is not None:
        if raws:
            raise ApiError(422, "invalid_request_error", "give images or texts, not both")
        texts = check_texts(embed_texts, "text", cfg)
        state.check_room(model_id, 1)
        (vectors,) = await state.submit(model_id, "embed_texts", (), {}, [texts])
        records = [v.to_record(model_id) for v in vectors]
        return {"model": model_id, "latency_ms": _ms(start), "results": records}
    params, key = task_params(task, req, model, cfg)
    state.check_room(model_id, max(1, len(raws)))
    loaded = await load_images(raws, cfg, image_size(model), state.decode_limiter)
    results = await run_images(state, model_id, task, key, params, raws, loaded, req)
    records = [r.to_record(model_id) for r in results]
    return {"model": model_id, "latency_ms": _ms(start), "results": records}


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 2)


# --- health, readiness, metrics, info -------------------------------------------------------------


def _add_service_routes(app: FastAPI, state: ServerState) -> None:
    @app.get("/health", tags=["service"], summary="The process is up.")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/ready",
        tags=["service"],
        summary="Models are loaded and the server takes requests (503 otherwise).",
        responses={503: {"model": S.ErrorResponse}},
    )
    async def ready() -> Any:
        if state.ready:
            return {"status": "ready", "models": list(state.models)}
        if state.load_error:
            why = f"loading models failed: {state.load_error}"
        elif state.shutting_down:
            why = "shutting down"
        else:
            why = "models are loading"
        return JSONResponse(error_body("not_ready", why), status_code=503)

    @app.get("/metrics", tags=["service"], summary="Prometheus metrics.")
    async def metrics() -> Response:
        return Response(state.metrics.render(), media_type=state.metrics.content_type)

    @app.get(
        "/v1/info",
        tags=["service"],
        response_model=S.InfoResponse,
        summary="Loaded models, their tasks, and this server's limits (the compare page's menu).",
    )
    async def info() -> dict[str, Any]:
        cfg = state.config
        return {
            "models": [
                {
                    "id": model_id,
                    "family": m.family.key,
                    "tasks": list(m.tasks),
                    "can": list(m.family.tasks),
                    "ready": True,
                }
                for model_id, m in state.models.items()
            ],
            "limits": {
                "max_body_bytes": cfg.max_body_bytes,
                "max_image_bytes": cfg.max_image_bytes,
                "max_pixels": cfg.max_pixels,
                "max_images": cfg.max_images,
                "max_text_chars": cfg.max_text_chars,
                "max_texts": cfg.max_texts,
                "max_new_tokens": cfg.max_new_tokens,
                "max_batch_size": cfg.max_batch_size,
            },
            "remote_urls": cfg.allow_remote_urls,
        }


# --- the compare page -----------------------------------------------------------------------------

_STATIC = resources.files("im2text.serve") / "static"
# The page loads nothing from elsewhere: no CDN, no inline script, images only from the user.
_PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


def _add_page(app: FastAPI) -> None:
    page = (_STATIC / "index.html").read_text(encoding="utf-8")

    @app.get("/", include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": _PAGE_CSP})

    app.mount("/static", StaticFiles(directory=str(_STATIC)), name="static")


# --- errors and middleware ------------------------------------------------------------------------


def _install_errors(app: FastAPI, state: ServerState) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        state.metrics.errors.labels(exc.type).inc()
        return error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        state.metrics.errors.labels(kind).inc()
        return JSONResponse(
            error_body(kind, str(exc.detail)), status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        state.metrics.errors.labels("invalid_request_error").inc()
        msg = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
        return JSONResponse(error_body("invalid_request_error", msg), status_code=422)

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        state.metrics.errors.labels("internal_error").inc()
        return JSONResponse(
            error_body("internal_error", f"internal error ({exc.__class__.__name__})"),
            status_code=500,
        )


async def _send_error(send: Any, err: ApiError) -> None:
    resp = error_response(err)
    await send(
        {"type": "http.response.start", "status": resp.status_code, "headers": resp.raw_headers}
    )
    await send({"type": "http.response.body", "body": resp.body})


# An answer sent before the request body has all arrived (a 413, or any early refusal) is sent
# whole at once, then the rest of the body is read and thrown away before the connection is
# let go: closing a socket that still has unread data resets it, and a client that writes its
# whole body before reading (a plain blocking client) would then see no answer at all. At most
# this long, and this much (or 4 x the body limit if more), is read; past either the connection
# is closed as before.
DRAIN_SECONDS = 10.0
DRAIN_MIN_BYTES = 64 * 1024 * 1024


class _BodyLimit:
    """413 for bodies over the limit: at once from Content-Length, else while streaming.

    Every answer given before the request body is read to its end is drained after (see
    `DRAIN_SECONDS`): its bytes reach the client at once, the response ends once the body has
    been read (or the drain bound is hit). A 413 also closes the connection.
    """

    def __init__(self, app: Any, max_bytes: int, timeout_s: float = 30.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.drain_bytes = max(4 * max_bytes, DRAIN_MIN_BYTES)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_big = ApiError(
            413, "request_too_large", f"request body over the limit of {self.max_bytes} bytes"
        )
        declared: int | None = None  # Content-Length (-1 if not a number)
        chunked = expects_continue = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = int(value) if value.isdigit() else -1
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"expect":
                expects_continue = value.lower() == b"100-continue"
        seen = 0
        # The request body has arrived to its end (or there is none).
        body_done = declared == 0 or (declared is None and not chunked)
        over = False  # the answer is a 413 from this limit
        framed = False  # the answer says where it ends (Content-Length): it can be drained

        async def limited() -> Any:
            nonlocal seen, body_done, over
            try:
                async with asyncio.timeout(None if body_done else self.timeout_s):
                    message = await receive()
            except TimeoutError:
                over = body_done = True  # answer, then close: no drain
                raise ApiError(
                    408, "body_timeout", f"no request body data for {self.timeout_s:g} s"
                ) from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if seen > self.max_bytes:
                    over = True
                    raise too_big  # the app's ApiError handler answers 413
            else:  # http.disconnect
                body_done = True
            return message

        async def draining_send(message: Any) -> None:
            nonlocal framed
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                framed = any(k.lower() == b"content-length" for k, _ in headers)
                if over:
                    headers.append((b"connection", b"close"))
                    message = {**message, "headers": headers}
            elif (
                message["type"] == "http.response.body"
                and not message.get("more_body", False)
                and framed
                and not body_done
                and not (expects_continue and seen == 0)  # told to wait, it sends nothing
                and (declared is None or declared - seen <= self.drain_bytes)
            ):
                await send({**message, "more_body": True})  # the whole answer, at once
                await self._drain(receive)
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        if declared is not None and (declared < 0 or declared > self.max_bytes):
            over = True
            await _send_error(draining_send, too_big)
            return
        await self.app(scope, limited, draining_send)

    async def _drain(self, receive: Any) -> None:
        """Read and discard what is left of the request body, within the drain bounds."""
        left = self.drain_bytes
        try:
            async with asyncio.timeout(DRAIN_SECONDS):
                while left > 0:
                    message = await receive()
                    if message["type"] != "http.request":
                        return  # the client went away
                    left -= len(message.get("body", b""))
                    if not message.get("more_body", False):
                        return
        except TimeoutError:
            pass


class _Auth:
    """Bearer API keys on /v1/* and /metrics, compared in constant time."""

    def __init__(self, app: Any, keys: tuple[str, ...]) -> None:
        self.app = app
        self.keys = [k.encode() for k in keys]

    def _protected(self, path: str) -> bool:
        return path.startswith("/v1/") or path == "/metrics"

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not self.keys or not self._protected(scope["path"]):
            await self.app(scope, receive, send)
            return
        token = b""
        for name, value in scope["headers"]:
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                token = value[7:].strip()
        # Compare against every key, without stopping early, so timing says nothing.
        ok = False
        for key in self.keys:
            ok |= hmac.compare_digest(token, key)
        if not ok:
            await _send_error(
                send,
                ApiError(
                    401,
                    "invalid_api_key",
                    "missing or wrong API key (send Authorization: Bearer <key>)",
                    headers={"WWW-Authenticate": "Bearer"},
                ),
            )
            return
        await self.app(scope, receive, send)


class _SecurityHeaders:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_wrapper(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-content-type-options", b"nosniff"))
                headers.append((b"referrer-policy", b"no-referrer"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_wrapper)


# --- OpenAPI: bodies parsed by hand still get documented schemas ----------------------------------


_DOCUMENTED_BODIES: list[type[S.BaseModel]] = [
    *(s for s, _, _ in _TASKS.values()),
    S.ChatCompletionRequest,
]


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    doc = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        description="Send images as base64 JSON or multipart uploads. Errors are "
        '`{"error": {"message", "type", "code"}}`. The compare page is at `/`.',
        routes=app.routes,
    )
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for model in _DOCUMENTED_BODIES:
        js = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(js.pop("$defs", {}))
        schemas[model.__name__] = js
        if model is not S.ChatCompletionRequest:
            form = copy.deepcopy(js)
            form["title"] = f"{model.__name__} (multipart)"
            binary = {"type": "string", "format": "binary"}
            form["properties"]["image"] = {**binary, "description": "An image file."}
            form["properties"]["images"] = {"type": "array", "items": binary}
            schemas[f"{model.__name__}Form"] = form
    if app.state.im2text.config.api_keys:
        doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        doc["security"] = [{"bearer": []}]
    app.openapi_schema = doc
    return doc
