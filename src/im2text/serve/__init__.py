"""HTTP server: task endpoints, an OpenAI-compatible chat API, dynamic batching, a compare page.

    from im2text.serve import ServeConfig, create_app, run
    run(["blip-base", "blip-vqa-base"], ServeConfig(port=8000))   # what `im2text serve` does
    app = create_app({"blip": im2text.load("blip-base")})       # any ASGI server, or tests

Needs the `serve` extra (`pip install 'im2text[serve]'`): FastAPI, uvicorn, prometheus_client,
python-multipart. `ServeConfig` imports without them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from im2text.serve.config import ServeConfig

if TYPE_CHECKING:
    from fastapi import FastAPI

    from im2text.model import Model

__all__ = ["ServeConfig", "create_app", "run"]

_HINT = "the server needs extra packages: pip install 'im2text[serve]'"


def _require() -> None:
    try:
        import fastapi  # noqa: F401
        import prometheus_client  # noqa: F401
        import python_multipart  # noqa: F401  (form uploads)
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise ImportError(f"{_HINT} (missing: {e.name})") from e


def create_app(models: dict[str, Model] | list[str], config: ServeConfig | None = None) -> FastAPI:
    """Build the FastAPI app for loaded models (by id) or model names to load at startup.

    See `im2text.serve._app.create_app` for details.
    """
    _require()
    from im2text.serve._app import create_app as _create

    return _create(models, config)


def run(model_names: list[str], config: ServeConfig | None = None) -> None:
    """Load the models, then serve them with uvicorn until SIGINT/SIGTERM (graceful)."""
    _require()
    from im2text.serve._server import run as _run

    _run(model_names, config or ServeConfig())
