"""Request bodies in, checked images out: JSON or multipart, base64 / data URLs / uploads / URLs.

Everything a client sends is bounded before work is spent on it: the body (middleware), each
image's encoded size (before base64 decoding), its pixel count (from the header, before any
pixel is decoded) and the number of images per request.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile
from starlette.requests import Request

from im2text.images import ImageError, ImageLimits, ImageSource, load_image
from im2text.serve import _fetch
from im2text.serve._errors import ApiError
from im2text.serve._schemas import LIST_FIELDS
from im2text.serve.config import ServeConfig

M = TypeVar("M", bound=BaseModel)

_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*):")
_DATA_URL = re.compile(r"^data:([\w/+.-]*)((?:;[\w=.+-]+)*),", re.ASCII)


@dataclass
class RawImage:
    """One image as the client gave it, not yet decoded."""

    key: str  # the name results carry: upload filename, or "image[i]"
    data: bytes | None = None  # encoded bytes (uploads, base64)
    url: str | None = None  # a remote URL to fetch


def validation_message(err: ValidationError) -> str:
    parts = []
    for e in err.errors()[:5]:
        where = ".".join(str(x) for x in e["loc"]) or "body"
        parts.append(f"{where}: {e['msg']}")
    return "; ".join(parts)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (use a number)")  # Python's json accepts NaN


async def parse_body(
    request: Request, schema: type[M], config: ServeConfig
) -> tuple[M, list[RawImage]]:
    """The validated request and its images, from JSON or multipart/form-data."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json":
        body = await request.body()
        try:
            data = json.loads(body, parse_constant=_no_constant)
        except (ValueError, UnicodeDecodeError) as e:
            raise ApiError(400, "invalid_json", f"request body is not valid JSON ({e})") from None
        except RecursionError:  # "[[[[...": nested deeper than any real request
            raise ApiError(400, "invalid_json", "request body nests too deeply") from None
        if not isinstance(data, dict):
            raise ApiError(400, "invalid_json", "request body must be a JSON object")
        uploads: list[RawImage] = []
    elif ctype == "multipart/form-data":
        data, uploads = await _read_form(request, config)
    else:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"send application/json or multipart/form-data, not {ctype or 'no content type'}",
        )
    try:
        req = schema.model_validate(data)
    except ValidationError as e:
        raise ApiError(422, "invalid_request_error", validation_message(e)) from None
    raws = list(uploads)
    image: str | None = getattr(req, "image", None)
    strings = ([image] if image else []) + list(getattr(req, "images", None) or [])
    for s in strings:
        raws.append(image_from_string(s, f"image[{len(raws)}]", config))
    return req, raws


async def _read_form(
    request: Request, config: ServeConfig
) -> tuple[dict[str, Any], list[RawImage]]:
    try:
        form = await request.form(
            max_files=config.max_images, max_fields=200, max_part_size=1024 * 1024
        )
    except ApiError:
        raise
    except Exception as e:  # starlette raises HTTPException / MultiPartException with a reason
        msg = str(getattr(e, "detail", "") or e)
        if "files" in msg.lower():
            raise ApiError(
                413, "too_many_images", f"{msg} (at most {config.max_images} images per request)"
            ) from None
        raise ApiError(400, "invalid_multipart", f"cannot parse multipart body: {msg}") from None
    data: dict[str, Any] = {}
    uploads: list[RawImage] = []
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            if name not in ("image", "images"):
                raise ApiError(422, "invalid_request_error", f"unexpected file field {name!r}")
            content = await value.read(config.max_image_bytes + 1)
            key = _safe_name(value.filename) or f"image[{len(uploads)}]"
            if len(content) > config.max_image_bytes:
                raise ApiError(
                    413,
                    "image_too_large",
                    f"{key}: more than {config.max_image_bytes} bytes (limit per image)",
                )
            uploads.append(RawImage(key, data=content))
        elif name in LIST_FIELDS:
            data.setdefault(name, []).append(value)
        elif name in data:
            raise ApiError(422, "invalid_request_error", f"field {name!r} given twice")
        else:
            data[name] = value
    return data, uploads


def _safe_name(name: str | None) -> str:
    # Keep only the base name, printable, short: it is echoed back in results.
    name = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    return "".join(c for c in name if c.isprintable())[:200]


def image_from_string(text: str, key: str, config: ServeConfig) -> RawImage:
    """A base64 string, data URL or remote URL -> RawImage (decoded bytes, or the URL)."""
    text = text.strip()
    m = _SCHEME.match(text)
    if m and m.group(1).lower() == "data":
        d = _DATA_URL.match(text)
        if not d or ";base64" not in d.group(2).lower():
            raise ApiError(422, "invalid_image", f"{key}: data URLs must be ;base64-encoded")
        return RawImage(key, data=decode_base64(text[d.end() :], key, config))
    if m:
        scheme = m.group(1).lower()
        if scheme not in ("http", "https"):
            raise ApiError(
                403, "url_forbidden", f"{key}: only http(s) URLs are fetched, not {scheme}:"
            )
        if not config.allow_remote_urls:
            raise ApiError(
                403,
                "remote_urls_disabled",
                f"{key}: remote image URLs are disabled on this server; send the image data "
                "(base64, data URL or upload)",
            )
        if len(text) > 4096:
            raise ApiError(422, "invalid_request_error", f"{key}: URL too long")
        return RawImage(key, url=text)
    return RawImage(key, data=decode_base64(text, key, config))


def decode_base64(text: str, key: str, config: ServeConfig) -> bytes:
    # Check the size the data *would* have before decoding any of it.
    if len(text) * 3 // 4 > config.max_image_bytes + 3:
        raise ApiError(
            413, "image_too_large", f"{key}: more than {config.max_image_bytes} bytes (limit)"
        )
    compact = "".join(text.split())  # tolerate line-wrapped base64
    try:
        raw = base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
        try:  # URL-safe alphabet is common in the wild
            raw = base64.b64decode(
                compact + "=" * (-len(compact) % 4), altchars=b"-_", validate=True
            )
        except (binascii.Error, ValueError):
            raise ApiError(422, "invalid_image", f"{key}: invalid base64 image data") from None
    if not raw:
        raise ApiError(422, "invalid_image", f"{key}: empty image data")
    return raw


def url_policy(config: ServeConfig) -> _fetch.UrlPolicy:
    import ipaddress

    return _fetch.UrlPolicy(
        max_bytes=config.max_image_bytes,
        timeout_s=config.url_timeout_s,
        max_redirects=config.url_max_redirects,
        allow_networks=tuple(
            ipaddress.ip_network(n, strict=False) for n in config.url_allow_networks
        ),
    )


def image_error(err: ImageError) -> ApiError:
    too_big = "too large" in err.reason
    return ApiError(
        413 if too_big else 422, "image_too_large" if too_big else "invalid_image", str(err)
    )


async def load_images(
    raws: list[RawImage],
    config: ServeConfig,
    target_size: int | None,
    limiter: anyio.CapacityLimiter,
) -> list[ImageSource | ApiError]:
    """Fetch (if URLs) and decode each image in worker threads; errors are returned per image.

    Decoding here, before queueing, means a bad image never reaches a batch and a big one is
    already shrunk towards the model's input size while it waits.
    """
    if not raws:
        raise ApiError(422, "invalid_request_error", "no image given (field `image` or `images`)")
    if len(raws) > config.max_images:
        raise ApiError(
            413,
            "too_many_images",
            f"{len(raws)} images in one request (limit {config.max_images})",
        )
    limits = ImageLimits(max_pixels=config.max_pixels, max_bytes=config.max_image_bytes)
    policy = url_policy(config)

    async def one(raw: RawImage) -> ImageSource | ApiError:
        try:
            data = raw.data
            if raw.url is not None:
                # Fetches wait on the network, not the CPU: they do not hold a decode thread.
                data = await anyio.to_thread.run_sync(_fetch.fetch, raw.url, policy)
            source = ImageSource(raw.key, data)
            image = await anyio.to_thread.run_sync(
                lambda: load_image(source, limits=limits, target_size=target_size),
                limiter=limiter,
            )
            return ImageSource(raw.key, image)
        except ApiError as e:
            return ApiError(e.status, e.type, f"{raw.key}: {e.message}", headers=e.headers)
        except ImageError as e:
            return image_error(e)

    return [await one(raw) for raw in raws]
