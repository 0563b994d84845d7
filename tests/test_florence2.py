"""Florence-2: task tokens, boxes parsed from `<loc_k>` tokens exactly as transformers' own
post-processor reads them, regions and lines scored by their own tokens, caption styles."""

from __future__ import annotations

import pytest
import torch
import transformers
from conftest import random_images

import im2text


@pytest.fixture(scope="module")
def florence(tiny) -> im2text.Model:
    return im2text.load(str(tiny("florence2")), batch_size=4)


def _ids(tok, parts: list[str]) -> list[int]:
    return [i for p in parts for i in tok(p, add_special_tokens=False).input_ids]


def test_boxes_parse_as_transformers_post_processor(florence: im2text.Model) -> None:
    fam = florence.family
    tok, proc = fam.tokenizer, fam.processor
    od = ["<s>", "red car", "<loc_10>", "<loc_20>", "<loc_500>", "<loc_600>", "<loc_700>",
          "<loc_100>", "<loc_900>", "<loc_300>", "person", "<loc_1>", "<loc_2>", "<loc_3>",
          "<loc_4>", "</s>"]  # fmt: skip
    ids = _ids(tok, od)
    lp = [-0.1 * (i + 1) for i in range(len(ids))]
    spans, loose = fam._spans(ids, lp, [True] * len(ids), 4)
    size = (640, 480)
    theirs = proc.post_process_generation(tok.decode(ids), task="<OD>", image_size=size)["<OD>"]
    assert not loose
    assert [s[0] for s in spans] == theirs["labels"] == ["red car", "red car", "person"]
    ours = [[int(v) for v in fam._dequantize(s[1], size)] for s in spans]
    assert ours == theirs["bboxes"]
    # Each region is scored by its label's tokens and its own four locations.
    n_label = len(tok("red car", add_special_tokens=False).input_ids)
    first = lp[1 : 1 + n_label] + lp[1 + n_label : 5 + n_label]
    second = lp[1 : 1 + n_label] + lp[5 + n_label : 9 + n_label]
    assert spans[0][2] == pytest.approx(sum(first) / len(first))
    assert spans[1][2] == pytest.approx(sum(second) / len(second))
    # Quads (OCR with regions): eight locations per line.
    ocr = ["<s>", "hello", *(f"<loc_{k}>" for k in (10, 20, 500, 20, 500, 600, 10, 600)),
           "world", *(f"<loc_{k}>" for k in (1, 2, 3, 2, 3, 4, 1, 4)), "</s>"]  # fmt: skip
    ids = _ids(tok, ocr)
    spans, _ = fam._spans(ids, [0.0] * len(ids), [True] * len(ids), 8)
    task = "<OCR_WITH_REGION>"
    theirs = proc.post_process_generation(tok.decode(ids), task=task, image_size=size)[task]
    assert [s[0] for s in spans] == theirs["labels"] == ["hello", "world"]
    ours = [[int(v) for v in fam._dequantize(s[1], size)] for s in spans]
    assert ours == theirs["quad_boxes"]


def _plain(tiny, images, task: str) -> list[dict]:
    """The model card: the task token, generate, decode with special tokens, post-process."""
    path = str(tiny("florence2"))
    model = transformers.Florence2ForConditionalGeneration.from_pretrained(path).eval()
    proc = transformers.AutoProcessor.from_pretrained(path)
    out = []
    for im in images:
        inputs = proc(images=[im], text=[task], return_tensors="pt")
        with torch.no_grad():
            ids = model.generate(**inputs, num_beams=1, max_new_tokens=40)
        text = proc.batch_decode(ids, skip_special_tokens=False)[0]
        out.append(proc.post_process_generation(text, task=task, image_size=im.size)[task])
    return out


def test_detect_and_read_equal_the_model_card(florence: im2text.Model, tiny) -> None:
    """Regions equal the model card's post-processed `<OD>` answer. Random weights also emit
    runs of location tokens with no text before them; transformers' regex then reads the
    previous token's tail as a label ("loc_77>") — boxes without a label, which im2text (it
    parses the ids, not the text) does not report."""
    imgs = random_images(4, seed=2, size=(96, 64))
    found = florence.detect(imgs, max_new_tokens=40)
    for det, plain in zip(found, _plain(tiny, imgs, "<OD>"), strict=True):
        assert det.ok
        ours = sorted((r.label, [int(v) for v in r.box]) for r in det.regions)
        labelled = [(lab, box) for lab, box in zip(plain["labels"], plain["bboxes"], strict=True)
                    if "loc_" not in lab]  # fmt: skip
        assert ours == sorted(labelled)
        assert all(0.0 < r.score <= 1.0 for r in det.regions)
        assert [r.score for r in det.regions] == sorted((r.score for r in det.regions),
                                                        reverse=True)  # fmt: skip
    assert any(d.regions for d in found)  # random weights emit many <loc_k>: boxes were found
    # Reading (quads): lines of text with their boxes inside the image, never markup.
    for reading, im in zip(florence.read(imgs, max_new_tokens=40), imgs, strict=True):
        assert reading.ok and reading.lines
        for line in reading.lines:
            assert line.text and "<loc_" not in line.text
            assert 0.0 < line.confidence <= 1.0
            x0, y0, x1, y1 = line.box
            assert 0 <= x0 <= x1 <= im.width and 0 <= y0 <= y1 <= im.height


def test_caption_styles_map_to_task_tokens(florence: im2text.Model) -> None:
    imgs = random_images(3, seed=4)
    kw = dict(max_new_tokens=12, num_beams=1)
    detailed = florence.caption(imgs, style="detailed", **kw)
    assert [c.text for c in detailed] == [
        c.text for c in florence.caption(imgs, prompt="<MORE_DETAILED_CAPTION>", **kw)
    ]
    assert [c.text for c in florence.caption(imgs, style="short", **kw)] == [
        c.text for c in florence.caption(imgs, **kw)
    ]
    # A prompt wins over a style.
    assert [c.text for c in florence.caption(imgs, style="detailed", prompt="<CAPTION>", **kw)] == [
        c.text for c in florence.caption(imgs, **kw)
    ]
    tags = florence.caption(imgs, style="tags", max_new_tokens=40, num_beams=1)
    for cap, det in zip(tags, florence.detect(imgs, max_new_tokens=40), strict=True):
        if det.regions:  # a list of labels, not "<loc_...>" markup
            assert "<loc_" not in cap.text
            assert set(cap.text.split(", ")) >= {r.label for r in det.regions} - {""}


def test_unknown_style_is_refused_up_front(tiny) -> None:
    blip = im2text.load(str(tiny("blip")))
    with pytest.raises(ValueError, match="no 'tags' caption style"):
        blip.caption(random_images(1), style="tags")
