"""Tests for im2text.images: safe image input that never crashes a batch."""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from im2text.images import (
    IMAGE_EXTENSIONS,
    ImageError,
    ImageLimits,
    ImageSource,
    expand_inputs,
    load_image,
    try_load,
)

# --------------------------------------------------------------------------- helpers


def _encode(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _noise(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _png_claiming_size(width: int, height: int) -> bytes:
    """Return a valid 1x1 PNG whose IHDR is patched to claim width x height (CRC fixed)."""
    data = bytearray(_encode(Image.new("RGB", (1, 1)), "PNG"))
    # Signature (8) + chunk length (4) + b"IHDR" (4), then width and height.
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def _load_error(source: object, **kwargs: object) -> str:
    with pytest.raises(ImageError) as info:
        load_image(source, **kwargs)  # type: ignore[arg-type]
    return str(info.value)


# --------------------------------------------------------------------------- bad files


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.jpg"
    msg = _load_error(path)
    assert msg == f"{path}: file not found"


def test_missing_file_via_string_key(tmp_path: Path) -> None:
    key = str(tmp_path / "photos" / "cat.jpg")
    err = try_load(ImageSource(key, Path(key)))
    assert isinstance(err, ImageError)
    assert str(err).startswith(f"{key}: ")
    assert err.key == key and err.reason == "file not found"


def test_directory_given_as_file(tmp_path: Path) -> None:
    msg = _load_error(str(tmp_path))
    assert msg.startswith(f"{tmp_path}: ")
    assert "is a directory" in msg


def test_empty_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "empty.png", b"")
    assert "empty file" in _load_error(path)


def test_text_file_is_not_an_image(tmp_path: Path) -> None:
    path = _write(tmp_path / "notes.jpg", b"hello, this is text\n" * 10)
    msg = _load_error(path)
    assert msg == f"{path}: not an image (cannot identify image file)"


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_file(tmp_path: Path, fmt: str) -> None:
    data = _encode(_noise(64, 64), fmt)
    path = _write(tmp_path / f"cut.{fmt.lower()}", data[: len(data) // 2])
    msg = _load_error(path)
    assert msg.startswith(f"{path}: truncated or corrupt image (")
    # We must detect truncation without switching Pillow's global lenient mode on.
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_garbage_bytes() -> None:
    garbage = np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    msg = _load_error(ImageSource("<bytes #3>", garbage))
    assert msg.startswith("<bytes #3>: ")
    assert "not an image" in msg


def test_corrupt_header_after_valid_signature() -> None:
    data = bytearray(_encode(Image.new("RGB", (8, 8)), "PNG"))
    data[16:24] = b"\xff" * 8  # absurd size and broken CRC
    err = try_load(bytes(data))
    assert isinstance(err, ImageError)


def test_file_larger_than_max_bytes(tmp_path: Path) -> None:
    path = _write(tmp_path / "big.png", _encode(_noise(32, 32), "PNG"))
    msg = _load_error(path, limits=ImageLimits(max_bytes=100))
    assert msg.startswith(f"{path}: file too large (")
    assert "limit of 100" in msg


def test_bytes_larger_than_max_bytes() -> None:
    msg = _load_error(b"x" * 101, limits=ImageLimits(max_bytes=100))
    assert "too large" in msg


def test_empty_bytes() -> None:
    assert "empty" in _load_error(ImageSource("<bytes #0>", b""))
    assert "empty" in _load_error(memoryview(b""))


def test_bytes_and_bytearray_and_memoryview_decode() -> None:
    data = _encode(Image.new("RGB", (5, 4), (10, 20, 30)), "PNG")
    for item in (data, bytearray(data), memoryview(data)):
        img = load_image(item)
        assert img.mode == "RGB" and img.size == (5, 4)
        assert img.getpixel((0, 0)) == (10, 20, 30)


def test_unsupported_type_is_type_error() -> None:
    with pytest.raises(TypeError, match="int"):
        load_image(42)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- decompression bombs


def test_bomb_header_refused_by_our_limit() -> None:
    # 60 MP: above our 50 MP default but below Pillow's own warning threshold.
    data = _png_claiming_size(10_000, 6_000)
    msg = _load_error(ImageSource("bomb.png", data))
    assert msg.startswith("bomb.png: image too large (10000x6000")
    assert "decompression bomb" in msg


def test_huge_bomb_header_refused_via_pillow_guard() -> None:
    filters_before = list(warnings.filters)
    max_before = Image.MAX_IMAGE_PIXELS
    msg = _load_error(ImageSource("bomb.png", _png_claiming_size(100_000, 100_000)))
    assert msg.startswith("bomb.png: image too large")
    assert "decompression bomb" in msg
    # No global state touched (thread safety).
    assert list(warnings.filters) == filters_before
    assert max_before == Image.MAX_IMAGE_PIXELS


def test_bomb_warning_as_error_is_converted() -> None:
    # If the application escalates Pillow's warning, it must still come out as ImageError.
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        data = _png_claiming_size(10_000, 10_000)  # 100 MP: Pillow warns
        msg = _load_error(data, limits=ImageLimits(max_pixels=10**12))
    assert "too large" in msg


def test_real_image_over_small_pixel_limit(tmp_path: Path) -> None:
    path = _write(tmp_path / "pic.png", _encode(Image.new("RGB", (100, 100)), "PNG"))
    msg = _load_error(path, limits=ImageLimits(max_pixels=1_000))
    assert msg.startswith(f"{path}: image too large (100x100 = 10000 pixels")


def test_pixel_limit_applies_to_arrays_and_pil() -> None:
    limits = ImageLimits(max_pixels=99)
    assert "too large" in _load_error(np.zeros((10, 10), np.uint8), limits=limits)
    assert "too large" in _load_error(Image.new("RGB", (10, 10)), limits=limits)


# --------------------------------------------------------------------------- orientation, modes


def test_exif_orientation_applied(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees
    path = _write(
        tmp_path / "rot.jpg", _encode(Image.new("RGB", (40, 20), "red"), "JPEG", exif=exif)
    )
    img = load_image(path)
    assert img.size == (20, 40)
    assert img.mode == "RGB"


@pytest.mark.parametrize(
    ("img", "expected"),
    [
        (Image.new("L", (4, 4), 200), (200, 200, 200)),
        (Image.new("LA", (4, 4), (100, 255)), (100, 100, 100)),
        (Image.new("1", (4, 4), 1), (255, 255, 255)),
        (Image.new("RGBA", (4, 4), (10, 20, 30, 255)), (10, 20, 30)),
        (Image.new("CMYK", (4, 4), (0, 0, 0, 0)), (255, 255, 255)),
    ],
    ids=["L", "LA", "1", "RGBA", "CMYK"],
)
def test_modes_become_rgb(img: Image.Image, expected: tuple[int, int, int]) -> None:
    out = load_image(img)
    assert out.mode == "RGB" and out.size == (4, 4)
    assert out.getpixel((1, 1)) == expected


def test_transparent_rgba_pixel_becomes_white(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    rgba.putpixel((1, 1), (255, 0, 0, 255))
    path = _write(tmp_path / "alpha.png", _encode(rgba, "PNG"))
    img = load_image(path)
    assert img.getpixel((0, 0)) == (255, 255, 255)
    assert img.getpixel((1, 1)) == (255, 0, 0)


def test_half_transparent_black_is_grey() -> None:
    img = load_image(Image.new("RGBA", (2, 2), (0, 0, 0, 128)))
    assert all(126 <= c <= 128 for c in img.getpixel((0, 0)))


def test_palette_with_transparency(tmp_path: Path) -> None:
    pal = Image.new("P", (4, 4), 0)
    pal.putpalette([0, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 6))
    pal.putpixel((2, 2), 1)
    path = _write(tmp_path / "pal.png", _encode(pal, "PNG", transparency=0))
    img = load_image(path)
    assert img.getpixel((0, 0)) == (255, 255, 255)  # transparent index -> white
    assert img.getpixel((2, 2)) == (0, 255, 0)


def test_palette_without_transparency() -> None:
    pal = Image.new("RGB", (4, 4), (0, 0, 255)).convert("P")
    assert load_image(pal).getpixel((0, 0)) == (0, 0, 255)


def test_cmyk_jpeg(tmp_path: Path) -> None:
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # red in CMYK
    path = _write(tmp_path / "cmyk.jpg", _encode(cmyk, "JPEG", quality=95))
    assert Image.open(path).mode == "CMYK"
    r, g, b = load_image(path).getpixel((8, 8))
    assert r > 200 and g < 60 and b < 60


def test_16bit_png_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.array([[0, 32768, 65535, 257]], dtype=np.uint16)
    img16 = Image.fromarray(values)
    path = _write(tmp_path / "deep.png", _encode(img16, "PNG"))
    assert Image.open(path).mode.startswith("I")
    img = load_image(path)
    assert img.mode == "RGB"
    assert [img.getpixel((x, 0))[0] for x in range(4)] == [0, 128, 255, 1]


def test_mode_i_image_scaled_as_16bit() -> None:
    img = Image.new("I", (2, 1))
    img.putpixel((0, 0), 65535)
    img.putpixel((1, 0), 32768)
    out = load_image(img)
    assert out.getpixel((0, 0)) == (255, 255, 255)
    assert out.getpixel((1, 0)) == (128, 128, 128)


@pytest.mark.parametrize("values", [[0.0, 0.5, 1.0], [0.0, 128.0, 255.0], [-5.0, 0.0, 1e6]])
def test_float_mode_does_not_crash(values: list[float]) -> None:
    img = Image.fromarray(np.array([values], dtype=np.float32))
    assert img.mode == "F"
    out = load_image(img)
    assert out.mode == "RGB" and out.size == (3, 1)
    assert out.getpixel((0, 0))[0] == 0
    assert out.getpixel((2, 0))[0] == 255


def test_float_tiff_file(tmp_path: Path) -> None:
    img = Image.fromarray(np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4))
    path = _write(tmp_path / "float.tif", _encode(img, "TIFF"))
    out = load_image(path)
    assert out.mode == "RGB" and out.size == (4, 3)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animation_uses_first_frame(tmp_path: Path, fmt: str) -> None:
    red = Image.new("RGB", (8, 8), (255, 0, 0))
    blue = Image.new("RGB", (8, 8), (0, 0, 255))
    data = _encode(red, fmt, save_all=True, append_images=[blue], duration=100, loop=0)
    path = _write(tmp_path / f"anim.{fmt.lower()}", data)
    assert getattr(Image.open(path), "n_frames", 1) == 2
    r, g, b = load_image(path).getpixel((4, 4))
    assert r > 240 and g < 20 and b < 20


def test_pil_input_is_not_mutated() -> None:
    src = Image.new("RGBA", (3, 3), (0, 0, 0, 0))
    out = load_image(src)
    assert out is not src
    assert src.mode == "RGBA" and src.getpixel((0, 0)) == (0, 0, 0, 0)

    rgb = Image.new("RGB", (3, 3), (1, 2, 3))
    out = load_image(rgb)
    assert out is not rgb
    out.putpixel((0, 0), (9, 9, 9))
    assert rgb.getpixel((0, 0)) == (1, 2, 3)


def test_closed_pil_image_is_image_error(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.png", _encode(Image.new("RGB", (4, 4)), "PNG"))
    img = Image.open(path)
    img.close()
    assert isinstance(try_load(img), ImageError)


# --------------------------------------------------------------------------- numpy arrays


@pytest.mark.parametrize(
    ("array", "expected"),
    [
        (np.full((3, 4), 7, np.uint8), (7, 7, 7)),
        (np.full((3, 4, 1), 7, np.uint8), (7, 7, 7)),
        (np.tile(np.array([1, 2, 3], np.uint8), (3, 4, 1)), (1, 2, 3)),
        (np.tile(np.array([1, 2, 3, 255], np.uint8), (3, 4, 1)), (1, 2, 3)),
        (np.zeros((3, 4, 4), np.uint8), (255, 255, 255)),  # transparent -> white
        (np.full((3, 4), 65535, np.uint16), (255, 255, 255)),
        (np.full((3, 4, 3), 32768, np.uint16), (128, 128, 128)),
        (np.full((3, 4), 0.5, np.float32), (128, 128, 128)),
        (np.ones((3, 4, 3), np.float64), (255, 255, 255)),
        (np.ones((3, 4), bool), (255, 255, 255)),
        (np.full((3, 4), 9, np.int64), (9, 9, 9)),
    ],
    ids=["HxW", "HxWx1", "HxWx3", "HxWx4", "alpha0", "u16", "u16rgb", "f32", "f64", "bool", "i64"],
)
def test_arrays(array: np.ndarray, expected: tuple[int, int, int]) -> None:
    before = array.copy()
    img = load_image(array)
    assert img.mode == "RGB" and img.size == (4, 3)
    assert img.getpixel((2, 1)) == expected
    np.testing.assert_array_equal(array, before)


def test_non_contiguous_array() -> None:
    array = np.zeros((4, 6, 3), np.uint8)
    array[..., 0] = 255
    img = load_image(array[:, ::2])
    assert img.size == (3, 4) and img.getpixel((1, 1)) == (255, 0, 0)


@pytest.mark.parametrize(
    ("array", "needle"),
    [
        (np.zeros(10, np.uint8), "shape"),
        (np.zeros((3, 4, 5), np.uint8), "shape"),
        (np.zeros((3, 4, 2), np.uint8), "shape"),
        (np.zeros((0, 0), np.uint8), "empty"),
        (np.array([[0.5, np.nan]], np.float32), "NaN"),
        (np.array([[0.5, np.inf]], np.float64), "NaN or infinite"),
        (np.array([[0.0, 2.0]], np.float32), "[0, 1]"),
        (np.array([[-1, 3]], np.int32), "[0, 255]"),
        (np.zeros((2, 2), np.complex64), "dtype"),
        (np.array([["a", "b"]]), "dtype"),
    ],
    ids=["1d", "5ch", "2ch", "empty", "nan", "inf", "float>1", "negint", "complex", "str"],
)
def test_bad_arrays(array: np.ndarray, needle: str) -> None:
    msg = _load_error(ImageSource("<array #1>", array))
    assert msg.startswith("<array #1>: ")
    assert needle in msg


# --------------------------------------------------------------------------- target_size


def test_large_jpeg_draft(tmp_path: Path) -> None:
    path = _write(tmp_path / "big.jpg", _encode(Image.new("RGB", (2000, 1500), "green"), "JPEG"))
    small = load_image(path, target_size=224)
    assert small.size != (2000, 1500)
    assert small.width < 2000 and small.height < 1500
    assert min(small.size) >= 224
    assert small.mode == "RGB"
    assert load_image(path).size == (2000, 1500)


def test_large_png_downscaled_keeping_twice_target(tmp_path: Path) -> None:
    path = _write(tmp_path / "big.png", _encode(Image.new("RGB", (2000, 1500), "green"), "PNG"))
    img = load_image(path, target_size=224)
    assert img.width < 2000 and min(img.size) >= 2 * 224
    assert load_image(path, target_size=500).size == (2000, 1500)  # 1500 <= 4 * 500
    assert load_image(path).size == (2000, 1500)


def test_downscale_applies_to_arrays() -> None:
    img = load_image(np.zeros((1000, 1200, 3), np.uint8), target_size=100)
    assert min(img.size) >= 200 and img.width < 1200


# --------------------------------------------------------------------------- batch behaviour


def test_try_load_returns_image_or_error(tmp_path: Path) -> None:
    good = _write(tmp_path / "ok.png", _encode(Image.new("RGB", (2, 2)), "PNG"))
    bad = _write(tmp_path / "bad.png", b"not a png")
    sources = expand_inputs([good, bad, tmp_path / "missing.png"])
    results = [try_load(s) for s in sources]
    assert isinstance(results[0], Image.Image)
    assert isinstance(results[1], ImageError) and "not an image" in str(results[1])
    assert isinstance(results[2], ImageError) and "file not found" in str(results[2])


def test_thread_pool(tmp_path: Path) -> None:
    good = _write(tmp_path / "ok.jpg", _encode(_noise(32, 32), "JPEG"))
    data = good.read_bytes()
    cut = _write(tmp_path / "cut.jpg", data[: len(data) // 2])
    bomb = _write(tmp_path / "bomb.png", _png_claiming_size(100_000, 100_000))
    sources = expand_inputs([good, cut, bomb, tmp_path / "missing.jpg"] * 8)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(try_load, sources))
    kinds = [isinstance(r, Image.Image) for r in results]
    assert kinds == [True, False, False, False] * 8


# --------------------------------------------------------------------------- expand_inputs


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    png = _encode(Image.new("RGB", (2, 2)), "PNG")
    for rel in [
        "b.png",
        "a.JPG",
        "sub/c.jpeg",
        "sub/deeper/d.webp",
        "a_dir/e.PNG",
        ".hidden.png",
        ".git/f.png",
        "notes.txt",
        "sub/readme.md",
    ]:
        _write(tmp_path / rel, png)
    return tmp_path


def test_extensions_constant() -> None:
    expected = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
    assert expected == IMAGE_EXTENSIONS
    assert all(e == e.lower() and e.startswith(".") for e in IMAGE_EXTENSIONS)


def test_expand_directory_recursive_sorted(tree: Path) -> None:
    keys = [s.key for s in expand_inputs(tree)]
    rels = [str(Path(k).relative_to(tree).as_posix()) for k in keys]
    assert rels == ["a.JPG", "a_dir/e.PNG", "b.png", "sub/c.jpeg", "sub/deeper/d.webp"]
    sources = expand_inputs(str(tree))
    assert all(isinstance(s.data, Path) and str(s.data) == s.key for s in sources)
    assert [s.key for s in sources] == keys  # stable


def test_expand_directory_non_recursive(tree: Path) -> None:
    rels = [Path(s.key).name for s in expand_inputs(tree, recursive=False)]
    assert rels == ["a.JPG", "b.png"]


def test_expand_directory_custom_extensions(tree: Path) -> None:
    rels = [Path(s.key).name for s in expand_inputs(tree, extensions=["txt", ".MD"])]
    assert rels == ["notes.txt", "readme.md"]
    assert [Path(s.key).name for s in expand_inputs(tree, extensions=".txt")] == ["notes.txt"]


def test_expand_glob(tree: Path) -> None:
    keys = [s.key for s in expand_inputs(str(tree / "**" / "*.*"))]
    names = [Path(k).relative_to(tree).as_posix() for k in keys]
    # Text files and hidden files are skipped; results sorted.
    assert names == sorted(names)
    assert set(names) == {"a.JPG", "a_dir/e.PNG", "b.png", "sub/c.jpeg", "sub/deeper/d.webp"}
    assert [Path(s.key).name for s in expand_inputs(str(tree / "?.png"))] == ["b.png"]


def test_glob_without_matches(tree: Path) -> None:
    pattern = str(tree / "*.gif")
    sources = expand_inputs(pattern)
    assert [s.key for s in sources] == [pattern]
    msg = str(try_load(sources[0]))
    assert msg == f"{pattern}: no files match this pattern"


def test_existing_file_with_glob_chars_is_a_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "shot[1].png", _encode(Image.new("RGB", (2, 2)), "PNG"))
    sources = expand_inputs(str(path))
    assert [s.key for s in sources] == [str(path)]
    assert load_image(sources[0]).size == (2, 2)


def test_explicit_file_kept_whatever_suffix(tree: Path) -> None:
    sources = expand_inputs([tree / "notes.txt"])
    assert [s.key for s in sources] == [str(tree / "notes.txt")]


def test_expand_missing_path_is_not_an_exception(tmp_path: Path) -> None:
    missing = tmp_path / "missing.jpg"
    sources = expand_inputs(missing)
    assert sources == [ImageSource(str(missing), missing)]
    assert "file not found" in str(try_load(sources[0]))


def test_expand_in_memory_items_and_order(tree: Path) -> None:
    array = np.zeros((2, 2), np.uint8)
    pil = Image.new("RGB", (2, 2))
    data = _encode(pil, "PNG")
    sources = expand_inputs([data, pil, array, tree / "b.png", bytearray(data), memoryview(data)])
    assert [s.key for s in sources] == [
        "<bytes #0>",
        "<PIL #1>",
        "<array #2>",
        str(tree / "b.png"),
        "<bytes #4>",
        "<bytes #5>",
    ]
    assert sources[0].data is data and sources[1].data is pil and sources[2].data is array
    assert all(isinstance(try_load(s), Image.Image) for s in sources)


def test_expand_single_items_and_tuple(tree: Path) -> None:
    assert [s.key for s in expand_inputs(b"abc")] == ["<bytes #0>"]
    assert [s.key for s in expand_inputs(np.zeros((2, 2)))] == ["<array #0>"]
    assert len(expand_inputs((tree / "a.JPG", tree / "b.png"))) == 2
    assert expand_inputs([]) == []


def test_expand_hidden_root_is_walked(tmp_path: Path) -> None:
    _write(tmp_path / ".cache" / "x.png", b"")
    assert [Path(s.key).name for s in expand_inputs(tmp_path / ".cache")] == ["x.png"]


@pytest.mark.parametrize("item", [42, 3.5, None, {"a": 1}])
def test_expand_unsupported_type(item: object) -> None:
    with pytest.raises(TypeError, match="unsupported input #1"):
        expand_inputs(["ok.png", item])
