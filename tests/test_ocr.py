"""OCR with real weights, no mocks: PP-OCR (rapidocr) reads rendered text and a real photo;
tesseract when installed; full-page TrOCR = real detector + a tiny TrOCR checkpoint."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

import im2text
from im2text.cli import EXIT_OK, main

DATA = Path(__file__).parent / "data"
FONTS = Path("/usr/share/fonts/truetype/dejavu")


def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    path = FONTS / name
    if not path.exists():
        pytest.skip(f"font {path} not installed (apt-get install fonts-dejavu-core)")
    return ImageFont.truetype(str(path), size)


def render(lines: list[str], font: ImageFont.FreeTypeFont, pad: int = 24) -> Image.Image:
    """Black text lines on white, one below the other."""
    boxes = [font.getbbox(t) for t in lines]
    height = max(b[3] - b[1] for b in boxes)
    width = max(b[2] - b[0] for b in boxes) + 2 * pad
    img = Image.new("RGB", (width, pad * 2 + len(lines) * int(height * 1.8)), "white")
    draw = ImageDraw.Draw(img)
    for i, text in enumerate(lines):
        draw.text((pad, pad + i * int(height * 1.8)), text, font=font, fill="black")
    return img


@pytest.fixture(scope="module")
def rapid() -> im2text.Model:
    return im2text.load("rapidocr")


CASES = [
    ("DejaVuSans.ttf", 32, ["INVOICE 2024-117", "Total due: 348.50 EUR"]),
    ("DejaVuSerif.ttf", 28, ["The quick brown fox", "jumps over the lazy dog"]),
    ("DejaVuSansMono.ttf", 24, ["ERROR 404: not found", "retry in 30 seconds"]),
    ("DejaVuSans-Bold.ttf", 40, ["EXIT", "Platform 9"]),
]


@pytest.mark.parametrize(("font", "size", "lines"), CASES)
def test_rapidocr_reads_rendered_text_exactly(rapid, font: str, size: int, lines) -> None:
    img = render(lines, _font(font, size))
    reading = rapid.read(img)
    assert reading.text == "\n".join(lines)
    assert [ln.text for ln in reading.lines] == lines
    ys = [ln.box[1] for ln in reading.lines]
    assert ys == sorted(ys)  # reading order: top to bottom
    assert all(0.5 < ln.confidence <= 1.0 for ln in reading.lines)


def test_rapidocr_reads_a_real_scene_photo(rapid) -> None:
    reading = rapid.read(DATA / "scenetext01.jpg")
    words = reading.text.upper().split()
    for word in ("NOTICE", "DOUBLE", "PARKING", "PROHIBITED", "AT", "ALL", "TIMES"):
        assert word in words
    assert words.index("NOTICE") < words.index("PARKING") < words.index("TIMES")


def test_blank_and_bad_images(rapid) -> None:
    readings = rapid.read([Image.new("RGB", (200, 80), "white"), b"not an image"])
    assert readings[0].ok and readings[0].text == "" and readings[0].lines == ()
    assert not readings[1].ok and "not an image" in readings[1].error


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract not installed")
def test_tesseract_reads_rendered_text() -> None:
    lines = ["Hello from im2text", "Second line 42"]
    reading = im2text.load("tesseract").read(render(lines, _font("DejaVuSans.ttf", 36)))
    assert reading.text == "\n".join(lines)
    assert all(0 < ln.confidence <= 1 for ln in reading.lines)


def test_tesseract_missing_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ValueError, match="apt-get install tesseract-ocr"):
        im2text.load("tesseract")


def test_full_page_trocr_uses_detected_lines_in_order(tiny) -> None:
    trocr = im2text.load(str(tiny("trocr")))
    lines = ["first line here", "the second line", "and a third one"]
    img = render(lines, _font("DejaVuSans.ttf", 30))
    page = trocr.read(img, max_new_tokens=4)
    assert len(page.lines) == 3
    font = _font("DejaVuSans.ttf", 30)
    step = int(max(font.getbbox(t)[3] - font.getbbox(t)[1] for t in lines) * 1.8)
    centers = [(ln.box[1] + ln.box[3]) / 2 for ln in page.lines]
    drawn = [24 + i * step + step / 3 for i in range(3)]  # where render() put each line
    assert centers == sorted(centers)
    assert all(abs(c - d) < step / 2 for c, d in zip(centers, drawn, strict=True))
    assert all(0 <= ln.confidence <= 1 for ln in page.lines)
    # Each line's text is what TrOCR reads from that crop on its own.
    for ln in page.lines:
        crop = img.crop(trocr.family._grow(ln.box, img))
        alone = trocr.read(crop, page=False, max_new_tokens=4)
        assert alone.lines[0].text == ln.text
    single = trocr.read(img, page=False, max_new_tokens=4)
    assert len(single.lines) == 1 and single.lines[0].box == (0, 0, img.width, img.height)


def test_read_cli_text_and_jsonl(tmp_path: Path, capsys) -> None:
    img = tmp_path / "note.png"
    render(["Meeting at 10:30", "Room B"], _font("DejaVuSans.ttf", 32)).save(img)
    assert main(["read", str(img), "--format", "text", "--no-progress"]) == EXIT_OK
    assert "Meeting at 10:30\nRoom B" in capsys.readouterr().out
    out = tmp_path / "read.jsonl"
    assert main(["read", str(img), str(DATA / "scenetext01.jpg"), "-o", str(out),
                 "--no-progress"]) == EXIT_OK  # fmt: skip
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert set(recs[0]) == {"path", "text", "lines", "model", "error"}
    assert recs[0]["text"] == "Meeting at 10:30\nRoom B"
    assert {"text", "box", "confidence"} == set(recs[0]["lines"][0])
    assert recs[1]["model"] == "rapidocr"
