"""Turn a model name (preset, Hub id or directory) into a loaded family; fail fast offline."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from im2text.config import Preset
from im2text.registry import get_preset

METADATA_FILE = "im2text.json"  # written by `im2text download`: which preset a directory holds


class ModelNotAvailableError(RuntimeError):
    """The weights are neither local nor downloadable right now."""


def resolve(model: str, revision: str | None = None) -> tuple[str, Preset | None, str, bool]:
    """(source, preset, display name, is-local-dir) for a preset name, Hub id or directory."""
    path = Path(model).expanduser()
    if path.is_dir():
        preset = None
        meta = path / METADATA_FILE
        if meta.is_file():
            preset = get_preset(json.loads(meta.read_text()).get("preset", ""))
        return str(path), preset, path.resolve().name, True
    preset = get_preset(model)
    if preset is not None:
        return preset.hub_id, preset, preset.name, False
    if model.startswith((".", "/", "~")) or os.sep in model.strip("/").replace("/", "", 1):
        raise FileNotFoundError(f"model directory not found: {model}")
    if not model or model.count("/") > 1 or " " in model:
        raise ValueError(
            f"{model!r} is neither a preset (see `im2text models`), a Hub id nor a directory"
        )
    return model, None, model, False


def hub_options(source: str, name: str, *, revision: str | None, local: bool) -> dict[str, Any]:
    """`from_pretrained` keywords: local dirs as is; Hub ids from the cache or, if online, the Hub.

    Raises ModelNotAvailableError at once (no retries) when the Hub is needed but unreachable.
    """
    if local:
        return {}
    opts: dict[str, Any] = {"revision": revision} if revision else {}
    from transformers import AutoConfig

    try:  # already in the local cache? then never touch the network
        AutoConfig.from_pretrained(source, local_files_only=True, **opts)
        return {**opts, "local_files_only": True}
    except OSError:
        pass
    why = _hub_unreachable_reason()
    if why:
        raise ModelNotAvailableError(
            f"model '{name}' ({source}) is not in the local Hugging Face cache and {why}. "
            f"On a machine with internet run `im2text download {name} --to DIR`, copy DIR here "
            "and pass it as the model (e.g. `--model DIR`), or point HF_HOME at a cache holding it."
        )
    return opts


def _hub_unreachable_reason() -> str | None:
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}:
        return "offline mode is on (HF_HUB_OFFLINE)"
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    url = urlparse(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname or "huggingface.co", port), timeout=3).close()
    except OSError as e:
        return f"the Hub ({url.hostname}) is unreachable ({e.strerror or e})"
    return None
