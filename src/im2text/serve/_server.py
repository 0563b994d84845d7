"""`run()`: load models, then serve them with uvicorn; SIGTERM finishes in-flight requests."""

from __future__ import annotations

import logging
import math

import uvicorn

import im2text
from im2text.serve._app import create_app
from im2text.serve._guard import uvicorn_options
from im2text.serve.config import ServeConfig

log = logging.getLogger("im2text.serve")


def run(model_names: list[str], config: ServeConfig) -> None:
    """Load every model (failing fast, before listening), then serve until told to stop.

    Raises:
        ModelNotAvailableError, FileNotFoundError, ValueError: a model cannot be loaded (the CLI
            maps these to its exit codes); nothing is served then.
    """
    if not model_names:
        raise ValueError("name at least one model to serve")
    models = {}
    for name in model_names:
        model = im2text.load(
            name, device=config.device, dtype=config.dtype, **config.load_backend()
        )
        if model.name in models:
            raise ValueError(f"two models share the id {model.name!r}; give them distinct names")
        models[model.name] = model
        log.info("loaded %s (%s)", model.name, model.family.key)
    app = create_app(models, config)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            log_level=config.log_level,
            timeout_graceful_shutdown=math.ceil(config.shutdown_timeout_s),
            **uvicorn_options(config),  # slow-header guard, connection limit, no proxy headers
        )
    )
    # uvicorn handles SIGINT/SIGTERM: stop accepting, let in-flight requests finish (up to
    # shutdown_timeout_s), then the app's shutdown drains the batch queues.
    server.run()
