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


# --- conversations ------------------------------------------------------------------------------

CONVERSATION = [
    {"role": "system", "content": [{"type": "text", "text": "You answer in one word."}]},
    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what is it?"}]},
    {"role": "assistant", "content": [{"type": "text", "text": "a ring"}]},
    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "and this one?"}]},
]


@pytest.mark.parametrize("kind", ["llava", "idefics3", "gemma3"])
def test_a_conversation_goes_through_the_chat_template_unchanged(kind: str, tiny) -> None:
    """System prompt, several turns, two images: the answer is what plain transformers gives
    for the processor's chat template of the same conversation."""
    path = str(tiny(kind))
    model = im2text.load(path)
    imgs = random_images(2, seed=13)
    kw = dict(max_new_tokens=6, num_beams=1)
    ours = model.chat(CONVERSATION, imgs, **kw)
    proc = transformers.AutoProcessor.from_pretrained(path)
    plain_model = transformers.AutoModelForImageTextToText.from_pretrained(path).eval()
    text = proc.apply_chat_template(CONVERSATION, add_generation_prompt=True)
    assert "You answer in one word." in text and "a ring" in text  # every turn is there
    given = [imgs] if kind in ("idefics3", "gemma3") else imgs
    inputs = proc(images=given, text=[text], return_tensors="pt")
    with torch.no_grad():
        out = plain_model.generate(**inputs, **kw)
    plain = proc.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert ours.text == plain.strip()
    assert ours.num_tokens >= 1 and ours.mean_logprob <= 0.0
    # The streamed pieces join up to the same answer.
    assert "".join(model.generate_stream(imgs, messages=CONVERSATION, **kw)).strip() == ours.text


def test_conversation_errors_are_clear(tiny) -> None:
    model = im2text.load(str(tiny("llava")))  # 128 positions; 16 tokens an image
    one = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "hi"}]}]
    with pytest.raises(ValueError, match="1 image part"):
        model.chat(one, random_images(2))
    many = [{"role": "user", "content": [{"type": "image"}] * 9 + [{"type": "text", "text": "?"}]}]
    with pytest.raises(ValueError, match=r"9 image\(s\)\) is \d+ tokens; this model holds 128"):
        model.chat(many, random_images(9))
    paligemma = im2text.load(str(tiny("paligemma")))  # task prefixes, no chat template
    with pytest.raises(ValueError, match="not a conversation"):
        paligemma.chat(one, random_images(1))


def test_the_server_forwards_the_conversation(tiny) -> None:
    """`/v1/chat/completions` over a loopback socket with the official client: a chat VLM gets
    the system prompt, every turn and both images, and answers once; bad inputs are clear
    422 / 400 answers, and the server keeps serving."""
    import base64
    import io

    openai = pytest.importorskip("openai")
    pytest.importorskip("uvicorn")
    import httpx
    from conftest import ThreadServer

    from im2text.serve import ServeConfig, create_app

    model = im2text.load(str(tiny("llava")))
    imgs = random_images(2, seed=14)

    def url(im) -> str:
        buf = io.BytesIO()
        im.save(buf, "PNG")
        return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()

    def image(im) -> dict:
        return {"type": "image_url", "image_url": {"url": url(im)}}

    sent = [
        {"role": "system", "content": "You answer in one word."},
        {"role": "user", "content": [image(imgs[0]), {"type": "text", "text": "what is it?"}]},
        {"role": "assistant", "content": "a ring"},
        {"role": "user", "content": [image(imgs[1]), {"type": "text", "text": "and this one?"}]},
    ]
    kw = dict(max_new_tokens=6, num_beams=1)
    expected = model.chat(CONVERSATION, imgs, **kw).text
    config = ServeConfig(max_images=10, max_queue=64)
    with ThreadServer(create_app({"vlm": model}, config)) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0,
                               timeout=60)  # fmt: skip
        done = client.chat.completions.create(model="vlm", messages=sent, max_tokens=6)
        assert done.choices[0].message.content == expected
        stream = client.chat.completions.create(model="vlm", messages=sent, max_tokens=6,
                                                stream=True)  # fmt: skip
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == expected
        post = f"{server.url}/v1/chat/completions"
        text = {"type": "text", "text": "x" * 100_000}
        long = [{"role": "user", "content": [image(imgs[0]), text]}]
        r = httpx.post(post, json={"model": "vlm", "messages": long}, timeout=60)
        assert r.status_code == 422 and "too long" in r.text
        crowded = [{"role": "user", "content": [image(im) for im in random_images(9)]}]
        r = httpx.post(post, json={"model": "vlm", "messages": crowded, "max_tokens": 4},
                       timeout=60)  # fmt: skip
        assert r.status_code == 422 and "this model holds 128" in r.text, r.text
        over = [{"role": "user", "content": [image(im) for im in random_images(11)]}]
        r = httpx.post(post, json={"model": "vlm", "messages": over}, timeout=60)
        assert r.status_code == 413 and "limit 10" in r.text  # the server's own cap
        body = b'{"model": "vlm", "messages": [{"role": "user", "content": "\xff\xfe"}]}'
        r = httpx.post(post, content=body, headers={"content-type": "application/json"},
                       timeout=60)  # fmt: skip
        assert r.status_code in (400, 422) and "error" in r.json()
        again = client.chat.completions.create(model="vlm", messages=sent, max_tokens=6)
        assert again.choices[0].message.content == expected  # still serving


@pytest.mark.parametrize("kind", ["llava", "qwen2.5-vl", "florence2"])
def test_bad_prompts_fail_their_own_item(kind: str, tiny) -> None:
    model = im2text.load(str(tiny(kind)))
    im = random_images(1, seed=15)[0]
    kw = dict(max_new_tokens=4, num_beams=1)
    if model.can("ask"):
        bad = ["", "x" * 100_000, "caf\udcff", 42, "what is it?"]
        answers = model.ask([im] * len(bad), bad, **kw)
        assert "empty question" in answers[0].error
        assert "too long" in answers[1].error and "100000" in answers[1].error
        assert "not valid UTF-8" in answers[2].error
        assert "must be a string" in answers[3].error
        assert answers[4].ok and answers[4].text == model.ask(im, "what is it?", **kw).text
    with pytest.raises(ValueError, match="too long"):
        model.caption(im, prompt="x" * 100_000, **kw)
    with pytest.raises(ValueError, match="not valid UTF-8"):
        model.caption(im, prompt="caf\udcff", **kw)
    assert model.caption(im, prompt="", **kw).text == model.caption(im, **kw).text  # default


# --- memory ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["llava", "qwen2.5-vl", "florence2", "blip2-opt"])
def test_size_from_the_config_equals_the_loaded_weights(kind: str, tiny) -> None:
    from im2text.engine.memory import weight_bytes

    path = str(tiny(kind))
    model = im2text.load(path)
    fam = model.family
    loaded = sum(t.numel() * t.element_size() for t in [*fam.model.parameters(),
                                                          *fam.model.buffers()])  # fmt: skip
    config = transformers.AutoConfig.from_pretrained(path)
    assert weight_bytes(fam.model_class, config, torch.float32) == loaded
    half = weight_bytes(fam.model_class, config, torch.bfloat16)
    assert loaded / 2 <= half < loaded


def test_a_model_too_large_is_refused_before_loading(tiny) -> None:
    path = str(tiny("llava"))
    with pytest.raises(im2text.ModelTooLargeError, match=r"needs about [\d.]+ KiB in float32.*"
                       r"budget of 97\.7 KiB.*bfloat16.*device_map"):  # fmt: skip
        im2text.load(path, max_memory="100KB")
    assert im2text.load(path, max_memory="1GB").caption(random_images(1)[0]).ok
    with pytest.raises(ValueError, match="memory size"):
        im2text.load(path, max_memory="lots")


def test_device_map_auto_places_and_runs(tiny) -> None:
    """accelerate's placement (on this GPU-less machine: everything on the CPU, which
    transformers does not record in `hf_device_map`) gives the same answers."""
    path = str(tiny("llava"))
    imgs = random_images(2, seed=16)
    kw = dict(max_new_tokens=6, num_beams=1)
    placed = im2text.load(path, device_map="auto")
    assert placed.family.device == next(placed.family.model.parameters()).device
    plain = im2text.load(path)
    assert [c.text for c in placed.caption(imgs, **kw)] == [
        c.text for c in plain.caption(imgs, **kw)
    ]
    with pytest.raises(ValueError, match="device_map"):
        im2text.load(path, device_map="balanced")


def test_cli_refuses_a_model_over_the_memory_budget(tiny, tmp_path, capsys) -> None:
    from im2text.cli import main

    image = tmp_path / "a.png"
    random_images(1)[0].save(image)
    out = tmp_path / "out.jsonl"
    code = main(["caption", str(image), "-m", str(tiny("llava")), "--max-memory", "100KB",
                 "-o", str(out)])  # fmt: skip
    assert code != 0 and (not out.exists() or not out.read_text())  # no records
    assert "needs about" in capsys.readouterr().err
