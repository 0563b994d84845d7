"""Chat VLMs and document-OCR VLMs beyond captioning: reading by asking (lines with their own
probabilities), caption styles in each family's words, GOT-OCR 2.0 equal to its model card."""

from __future__ import annotations

import pytest
import torch
import transformers
from conftest import random_images

import im2text


def _lines(text: str) -> list[str]:
    return [" ".join(t.split()) for t in text.splitlines() if t.strip()]


def test_got_ocr2_reads_as_its_model_card(tiny) -> None:
    path = str(tiny("got-ocr2"))
    model = im2text.load(path, batch_size=4)
    assert model.family.key == "got-ocr2" and model.tasks == ("read",)
    assert not model.can("caption")
    imgs = random_images(3, seed=6, size=(90, 60))
    kw = dict(max_new_tokens=24, num_beams=1)
    readings = model.read(imgs, **kw)
    plain_model = transformers.GotOcr2ForConditionalGeneration.from_pretrained(path).eval()
    proc = transformers.AutoProcessor.from_pretrained(path)
    for im, reading in zip(imgs, readings, strict=True):
        inputs = proc(images=[im], return_tensors="pt", num_image_tokens=4)
        with torch.no_grad():
            out = plain_model.generate(**inputs, **kw)
        text = proc.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        assert [ln.text for ln in reading.lines] == _lines(text)
        assert reading.text == "\n".join(_lines(text))
        for line in reading.lines:  # no positions: each line's box is the whole image
            assert line.box == (0.0, 0.0, float(im.width), float(im.height))
            assert 0.0 < line.confidence <= 1.0
    single = [model.read(im, **kw) for im in imgs]
    assert [r.text for r in single] == [r.text for r in readings]


@pytest.mark.parametrize("kind", ["llava", "qwen2.5-vl", "paligemma"])
def test_chat_vlms_read_by_asking(kind: str, tiny) -> None:
    """`read` is the answer to the family's OCR instruction, a line per line, in order."""
    model = im2text.load(str(tiny(kind)), batch_size=4)
    fam = model.family
    imgs = random_images(2, seed=8)
    kw = dict(max_new_tokens=16, num_beams=1)
    readings = model.read(imgs, **kw)
    answers = model.caption(imgs, prompt=fam.read_prompt, **kw)
    for reading, answer in zip(readings, answers, strict=True):
        assert reading.ok
        assert [ln.text for ln in reading.lines] == _lines(answer.text)
        assert all(0.0 < ln.confidence <= 1.0 for ln in reading.lines)


@pytest.mark.parametrize("kind", ["llava", "qwen2.5-vl", "paligemma", "florence2"])
def test_caption_styles_are_the_familys_prompts(kind: str, tiny) -> None:
    model = im2text.load(str(tiny(kind)), batch_size=4)
    styles = model.family.caption_styles
    assert {"short", "detailed"} <= set(styles)
    imgs = random_images(2, seed=9)
    kw = dict(max_new_tokens=8, num_beams=1)
    for style, prompt in styles.items():
        by_style = model.caption(imgs, style=style, **kw)
        by_prompt = model.caption(imgs, prompt=prompt, **kw)
        assert [c.text for c in by_style] == [c.text for c in by_prompt], style


@pytest.mark.parametrize("kind", ["llava", "paligemma", "llava-onevision"])
def test_many_questions_encode_the_image_once(kind: str, tiny) -> None:
    """Questions about one image in one batch: its image encoder runs once, and every answer
    equals the one asked alone."""
    model = im2text.load(str(tiny(kind)), batch_size=4)
    tower = model.family.model.get_submodule(model.family.vision_tower)
    im = random_images(1, seed=12)[0]
    questions = ["what is it?", "what colour is it?", "where is it?"]
    kw = dict(max_new_tokens=6, num_beams=1)
    before = tower.im2text_images_encoded
    alone = [model.ask(im, q, **kw) for q in questions]
    one = (tower.im2text_images_encoded - before) // 3  # rows one image needs (anyres: tiles)
    before = tower.im2text_images_encoded
    answers = model.ask(im, questions, **kw)
    assert tower.im2text_images_encoded - before == one  # not 3x
    assert one == 1 or kind == "llava-onevision"
    assert [a.text for a in answers] == [a.text for a in alone]
    for a, b in zip(answers, alone, strict=True):
        assert a.confidence == pytest.approx(b.confidence, rel=1e-4)
