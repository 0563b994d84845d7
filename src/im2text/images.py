"""Safe image input: turn paths, bytes, PIL images and arrays into RGB images.

Everything here is built so that one bad input never crashes a batch: each input becomes an
:class:`ImageSource`, and loading it either returns an RGB ``PIL.Image.Image`` or raises (or, with
:func:`try_load`, returns) an :class:`ImageError` whose message starts with the input's key.

The loader guards against decompression bombs (size checked from the header before any pixel is
decoded), forces a full decode so truncated files are detected, applies EXIF orientation,
normalises every mode (alpha onto white, 16-bit scaled to 8-bit) and keeps no global state, so it
is safe to call from a thread pool.
"""

from __future__ import annotations

import glob
import io
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageError",
    "ImageLimits",
    "ImageSource",
    "expand_inputs",
    "load_image",
    "try_load",
]

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
)

_GLOB_CHARS = ("*", "?", "[")
# EPS is decoded by running Ghostscript on the file: never do that for untrusted input.
_DENIED_FORMATS = frozenset({"EPS"})
_WHITE = (255, 255, 255)
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})


class ImageError(ValueError):
    """A single input could not be turned into an image.

    The message names the input and the reason, e.g.
    ``"photos/cat.jpg: truncated or corrupt image (image file is truncated)"``.

    Attributes:
        key: The input's key (see :class:`ImageSource`), or ``""`` if unknown.
        reason: The reason alone, without the key.
    """

    def __init__(self, message: str, *, key: str = "", reason: str = "") -> None:
        super().__init__(message)
        self.key = key
        self.reason = reason or message


def _error(key: str, reason: str) -> ImageError:
    return ImageError(f"{key}: {reason}", key=key, reason=reason)


@dataclass(frozen=True)
class ImageLimits:
    """Limits that protect a batch from hostile or absurd inputs.

    Attributes:
        max_pixels: Images with ``width * height`` above this are refused, checked from the header
            before any pixel is decoded (decompression-bomb guard). Pillow's own guard
            (``Image.MAX_IMAGE_PIXELS``) still applies on top of this.
        max_bytes: Files or byte strings larger than this are refused without being read.
    """

    max_pixels: int = 50_000_000
    max_bytes: int = 100 * 1024 * 1024


@dataclass(frozen=True)
class ImageSource:
    """One input item, not yet loaded.

    Attributes:
        key: What the user gave, as a string, used to name the item in results and errors:
            a file path, ``"<bytes #3>"``, ``"<PIL #0>"`` or ``"<array #1>"`` (the number is the
            item's position in the inputs).
        data: The original object: a ``pathlib.Path`` for files (also for missing files and
            unmatched glob patterns), ``bytes``/``bytearray``/``memoryview``, a
            ``PIL.Image.Image`` or a ``numpy.ndarray``.
    """

    key: str
    data: object


_DEFAULT_LIMITS = ImageLimits()

# --------------------------------------------------------------------------- expand_inputs


def expand_inputs(
    inputs: object,
    *,
    extensions: Iterable[str] = IMAGE_EXTENSIONS,
    recursive: bool = True,
) -> list[ImageSource]:
    """Expand user inputs into a flat list of image sources.

    Accepts one item or a list/tuple of items. An item is:

    * a file path (``str`` or ``os.PathLike``): kept whatever its suffix;
    * a directory: walked (recursively unless ``recursive=False``), keeping files whose
      lower-cased suffix is in ``extensions``, skipping hidden files and directories (names
      starting with ``"."``), in sorted order; an empty directory yields nothing;
    * a glob pattern (a string with ``*``, ``?`` or ``[`` that is not an existing path):
      expanded with ``glob.glob(recursive=True)``, sorted, keeping image files only;
    * ``bytes``, ``bytearray`` or ``memoryview`` with encoded image data;
    * a ``PIL.Image.Image`` or a ``numpy.ndarray``.

    Bad paths do not raise here, so a batch goes on: a missing path becomes a source whose
    loading fails with "file not found", and a glob matching no image file becomes one source
    (keyed by the pattern) whose loading fails with "no files match".

    Args:
        inputs: One item or a list/tuple of items.
        extensions: Suffixes kept when expanding directories and globs (case-insensitive, the
            leading dot is optional).
        recursive: Whether directories are walked recursively.

    Returns:
        The sources, in input order (each directory/glob expanded in place).

    Raises:
        TypeError: If an item has an unsupported type.
    """
    # A list, tuple or generator/iterator of items (a generator of PIL images, say) is many.
    many = isinstance(inputs, (list, tuple, Iterator)) and not isinstance(inputs, Image.Image)
    items = list(inputs) if many else [inputs]  # type: ignore[call-overload]
    if isinstance(extensions, str):  # ".png" alone must not be read as {".", "p", "n", "g"}
        extensions = [extensions]
    exts = frozenset(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)
    sources: list[ImageSource] = []
    for index, item in enumerate(items):
        if isinstance(item, (bytes, bytearray, memoryview)):
            sources.append(ImageSource(f"<bytes #{index}>", item))
        elif isinstance(item, Image.Image):
            sources.append(ImageSource(f"<PIL #{index}>", item))
        elif isinstance(item, np.ndarray):
            sources.append(ImageSource(f"<array #{index}>", item))
        elif isinstance(item, (str, os.PathLike)):
            sources.extend(_expand_path(os.fsdecode(item), exts, recursive))
        else:
            raise TypeError(
                f"unsupported input #{index} of type {type(item).__name__}: expected a path, "
                "directory, glob pattern, bytes, PIL.Image.Image or numpy.ndarray"
            )
    return sources


def _expand_path(text: str, exts: frozenset[str], recursive: bool) -> list[ImageSource]:
    if os.path.isdir(text):
        return [ImageSource(p, Path(p)) for p in _walk_dir(text, exts, recursive)]
    # An existing file whose name contains glob characters is a file, not a pattern.
    if any(c in text for c in _GLOB_CHARS) and not os.path.lexists(text):
        matches = [
            m
            for m in sorted(glob.glob(text, recursive=True))
            if os.path.splitext(m)[1].lower() in exts and not os.path.isdir(m)
        ]
        if matches:
            return [ImageSource(m, Path(m)) for m in matches]
    # Existing file, missing path or unmatched pattern: loading reports the problem.
    return [ImageSource(text, Path(text))]


def _walk_dir(root: str, exts: frozenset[str], recursive: bool) -> list[str]:
    found: list[tuple[tuple[str, ...], str]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        # Prune in place so os.walk neither enters hidden directories nor recurses if not asked.
        dirnames[:] = [d for d in dirnames if not d.startswith(".")] if recursive else []
        rel = Path(os.path.relpath(dirpath, root)).parts
        rel = () if rel == (".",) else rel
        for name in filenames:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in exts:
                found.append(((*rel, name), os.path.join(dirpath, name)))
    # Sort by path components so "a/b.jpg" orders the same on every platform and file system.
    return [path for _, path in sorted(found)]


# --------------------------------------------------------------------------- loading


def load_image(
    source: ImageSource | str | os.PathLike[str] | bytes | Image.Image | np.ndarray,
    *,
    limits: ImageLimits = _DEFAULT_LIMITS,
    target_size: int | None = None,
) -> Image.Image:
    """Load one input as an RGB image.

    Files and bytes are fully decoded (so truncation is detected), the first frame of animations
    is used, EXIF orientation is applied, alpha is composited onto white and 16-bit data is
    scaled to 8 bits. The caller's PIL images and arrays are never modified.

    Args:
        source: An :class:`ImageSource` or a raw item as accepted by :func:`expand_inputs`
            (directories and glob patterns excepted).
        limits: Size limits (decompression-bomb guard).
        target_size: The size the model will resize to, if known. JPEGs are then decoded at a
            reduced scale (never below ``target_size`` on either side), and images whose both
            sides exceed ``4 * target_size`` are downscaled, keeping the shorter side at least
            ``2 * target_size`` so the model's own processor still does the final resize.

    Returns:
        A new RGB image.

    Raises:
        ImageError: If the input cannot be turned into an image; the message starts with the
            source key.
        TypeError: If ``source`` has an unsupported type.
    """
    if not isinstance(source, ImageSource):
        source = _as_source(source)
    if target_size is not None and target_size < 1:
        raise ValueError(f"target_size must be a positive integer, got {target_size}")
    key, data = source.key, source.data
    if isinstance(data, (str, os.PathLike)):
        img = _decode(key, _read_file(key, os.fsdecode(data), limits), limits, target_size)
    elif isinstance(data, (bytes, bytearray, memoryview)):
        img = _decode(key, _check_bytes(key, data, limits), limits, target_size)
    elif isinstance(data, Image.Image):
        img = _from_pil(key, data, limits)
    elif isinstance(data, np.ndarray):
        img = _from_array(key, data, limits)
    else:
        raise TypeError(f"{key}: unsupported image data of type {type(data).__name__}")
    return _shrink(img, target_size)


def try_load(
    source: ImageSource | str | os.PathLike[str] | bytes | Image.Image | np.ndarray,
    *,
    limits: ImageLimits = _DEFAULT_LIMITS,
    target_size: int | None = None,
) -> Image.Image | ImageError:
    """Like :func:`load_image`, but return the :class:`ImageError` instead of raising it.

    Args:
        source: See :func:`load_image`.
        limits: See :func:`load_image`.
        target_size: See :func:`load_image`.

    Returns:
        The RGB image, or the error explaining why this input could not be loaded.
    """
    try:
        return load_image(source, limits=limits, target_size=target_size)
    except ImageError as exc:
        return exc


def _as_source(item: object) -> ImageSource:
    if isinstance(item, (bytes, bytearray, memoryview)):
        return ImageSource("<bytes>", item)
    if isinstance(item, Image.Image):
        return ImageSource("<PIL>", item)
    if isinstance(item, np.ndarray):
        return ImageSource("<array>", item)
    if isinstance(item, (str, os.PathLike)):
        text = os.fsdecode(item)
        return ImageSource(text, Path(text))
    raise TypeError(
        f"unsupported image input of type {type(item).__name__}: expected an ImageSource, path, "
        "bytes, PIL.Image.Image or numpy.ndarray"
    )


def _read_file(key: str, path: str, limits: ImageLimits) -> bytes:
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        if any(c in path for c in _GLOB_CHARS):
            raise _error(key, "no files match this pattern") from None
        raise _error(key, "file not found") from None
    except OSError as exc:
        raise _error(key, f"cannot access file ({exc.strerror or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise _error(key, "is a directory, not an image file")
    if not stat.S_ISREG(st.st_mode):
        # Reading a FIFO or device could block forever.
        raise _error(key, "not a regular file")
    if st.st_size == 0:
        raise _error(key, "empty file (0 bytes)")
    if st.st_size > limits.max_bytes:
        raise _error(key, f"file too large ({st.st_size} bytes > limit of {limits.max_bytes})")
    try:
        with open(path, "rb") as f:
            # Read one byte past the limit in case the file grew since stat().
            data = f.read(limits.max_bytes + 1)
    except OSError as exc:
        raise _error(key, f"cannot read file ({exc.strerror or exc})") from None
    if not data:
        raise _error(key, "empty file (0 bytes)")
    if len(data) > limits.max_bytes:
        raise _error(key, f"file too large (> limit of {limits.max_bytes} bytes)")
    return data


def _check_bytes(key: str, data: bytes | bytearray | memoryview, limits: ImageLimits) -> bytes:
    size = data.nbytes if isinstance(data, memoryview) else len(data)
    if size == 0:
        raise _error(key, "empty input (0 bytes)")
    if size > limits.max_bytes:
        raise _error(key, f"data too large ({size} bytes > limit of {limits.max_bytes})")
    return bytes(data)


def _check_pixels(key: str, width: int, height: int, limits: ImageLimits) -> None:
    if width <= 0 or height <= 0:
        raise _error(key, f"invalid image size {width}x{height}")
    if width * height > limits.max_pixels:
        raise _error(
            key,
            f"image too large ({width}x{height} = {width * height} pixels > limit of "
            f"{limits.max_pixels}; possible decompression bomb)",
        )


def _bomb_error(key: str, exc: Exception) -> ImageError:
    return _error(key, f"image too large (possible decompression bomb: {exc})")


def _decode(key: str, data: bytes, limits: ImageLimits, target_size: int | None) -> Image.Image:
    Image.init()  # idempotent; makes Image.ID list every plugin before we filter it
    formats = [f for f in Image.ID if f not in _DENIED_FORMATS]
    try:
        img = Image.open(io.BytesIO(data), formats=formats)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # The warning only arrives here if the caller's warning filters turn it into an error;
        # we never touch the (process-global, thread-unsafe) filters ourselves.
        raise _bomb_error(key, exc) from None
    except UnidentifiedImageError:
        raise _error(key, "not an image (cannot identify image file)") from None
    except Exception as exc:
        raise _error(key, f"truncated or corrupt image ({_describe(exc)})") from None
    # Image.open only parsed the header: refuse bombs before decoding any pixel.
    _check_pixels(key, img.width, img.height, limits)
    try:
        if target_size is not None and img.format in ("JPEG", "MPO"):
            # Let libjpeg decode at 1/2, 1/4 or 1/8 scale; it never goes below the request.
            img.draft("RGB", (target_size, target_size))
        # Force the full decode here: Pillow is lazy and truncation only shows up now.
        img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _bomb_error(key, exc) from None
    except Exception as exc:
        raise _error(key, f"truncated or corrupt image ({_describe(exc)})") from None
    # exif_transpose returns a plain in-memory copy, which also drops the reference to the
    # encoded bytes that the lazily decoding image file keeps.
    return _to_rgb(key, _exif_transpose(img))


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return text if text else type(exc).__name__


def _exif_transpose(img: Image.Image) -> Image.Image:
    """Return a new image with EXIF orientation applied (a plain copy if there is none)."""
    try:
        return ImageOps.exif_transpose(img)
    except Exception:
        return img.copy()


def _from_pil(key: str, img: Image.Image, limits: ImageLimits) -> Image.Image:
    _check_pixels(key, img.width, img.height, limits)
    try:
        # A lazily opened image decodes here; the current frame is used as is (no seek).
        img.load()
        # _exif_transpose always returns a new image, so the caller's image is never modified.
        return _to_rgb(key, _exif_transpose(img))
    except ImageError:
        raise
    except Exception as exc:
        raise _error(key, f"truncated or corrupt image ({_describe(exc)})") from None


# --------------------------------------------------------------------------- mode handling


def _to_rgb(key: str, img: Image.Image) -> Image.Image:
    """Convert to RGB; may return ``img`` itself, so pass an image the caller does not own."""
    mode = img.mode
    if mode.startswith("I;16") or mode == "I":
        return _gray_to_rgb(_scale_16bit(np.asarray(img)))
    if mode == "F":
        return _gray_to_rgb(_scale_float(np.asarray(img, dtype=np.float64)))
    # "transparency" covers palette images and L/RGB images with a transparent colour (tRNS).
    has_alpha = mode in _ALPHA_MODES or "transparency" in img.info
    if mode == "RGB" and not has_alpha:
        return img
    try:
        if has_alpha:
            return _composite_on_white(img.convert("RGBA"))
        return img.convert("RGB")
    except Exception as exc:
        raise _error(key, f"unsupported image mode {mode!r} ({_describe(exc)})") from None


def _composite_on_white(rgba: Image.Image) -> Image.Image:
    # Transparent areas are usually meant as "paper", and black would confuse the model.
    background = Image.new("RGB", rgba.size, _WHITE)
    background.paste(rgba, mask=rgba.getchannel("A"))
    return background


def _gray_to_rgb(gray: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(gray, dtype=np.uint8)).convert("RGB")


def _scale_16bit(values: np.ndarray) -> np.ndarray:
    values = values.astype(np.int64)
    if values.size and (values.min() < 0 or values.max() > 65535):
        # 32-bit integer data that is not 16-bit in disguise: stretch its own range.
        return _stretch(values.astype(np.float64))
    # Round-to-nearest scaling so 65535 -> 255 and 32768 -> 128 (a plain cast would clip).
    return ((values * 255 + 32767) // 65535).astype(np.uint8)


def _scale_float(values: np.ndarray) -> np.ndarray:
    values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    if values.size == 0:
        return values.astype(np.uint8)
    lo, hi = float(values.min()), float(values.max())
    if lo >= 0.0 and hi <= 1.0:
        return np.rint(values * 255.0).astype(np.uint8)
    if lo >= 0.0 and hi <= 255.0:
        return np.rint(values).astype(np.uint8)
    return _stretch(values)


def _stretch(values: np.ndarray) -> np.ndarray:
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return np.zeros(values.shape, dtype=np.uint8)
    return np.rint((values - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def _from_array(key: str, array: np.ndarray, limits: ImageLimits) -> Image.Image:
    shape = array.shape
    if array.ndim == 3 and shape[2] in (1, 3, 4):
        channels = shape[2]
    elif array.ndim == 2:
        channels = 1
    else:
        raise _error(
            key,
            f"unsupported array shape {shape}: expected HxW, HxWx1, HxWx3 (RGB) or HxWx4 (RGBA)",
        )
    if array.size == 0:
        raise _error(key, f"empty array (shape {shape})")
    _check_pixels(key, shape[1], shape[0], limits)
    pixels = _array_to_uint8(key, array)
    if channels == 1:
        return _gray_to_rgb(pixels.reshape(shape[0], shape[1]))
    # np.ascontiguousarray may return the caller's array itself; fromarray + convert copy it.
    img = Image.fromarray(np.ascontiguousarray(pixels))
    return _composite_on_white(img) if channels == 4 else img.convert("RGB")


def _array_to_uint8(key: str, array: np.ndarray) -> np.ndarray:
    dtype = array.dtype
    if dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if dtype == np.uint8:
        return array
    if dtype == np.uint16:
        return _scale_16bit(array)
    if np.issubdtype(dtype, np.floating):
        if not np.all(np.isfinite(array)):
            raise _error(key, f"array contains NaN or infinite values (dtype {dtype})")
        lo, hi = float(array.min()), float(array.max())
        # Small tolerance for values that left [0, 1] through rounding only.
        if lo < -1e-6 or hi > 1.0 + 1e-6:
            raise _error(
                key,
                f"float array values must be in [0, 1], got [{lo:g}, {hi:g}] (dtype {dtype})",
            )
        return np.rint(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8)
    if np.issubdtype(dtype, np.integer):
        lo, hi = int(array.min()), int(array.max())
        # Plain integer arrays (e.g. int64 from np.array of lists) are fine when 8-bit valued.
        if lo < 0 or hi > 255:
            raise _error(
                key,
                f"integer array values must be in [0, 255] for dtype {dtype}, got [{lo}, {hi}] "
                "(use uint16 for 16-bit data)",
            )
        return array.astype(np.uint8)
    raise _error(
        key, f"unsupported array dtype {dtype}: expected uint8, uint16, bool, integer or float"
    )


def _shrink(img: Image.Image, target_size: int | None) -> Image.Image:
    if target_size is None:
        return img
    short = min(img.size)
    if short <= 4 * target_size:
        return img
    # Integer box reduction is fast and keeps the shorter side >= 2 * target_size, so the
    # model's processor still does the final (quality) resize.
    return img.reduce(short // (2 * target_size))
