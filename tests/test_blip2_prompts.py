"""BLIP-2 / InstructBLIP start tokens: an unconditional caption is what the documented
transformers usage, `model.generate(**processor(images=image))`, gives — whatever the tokenizer
adds to an empty text — and prompted captions / VQA equal plain transformers on the same text.

Tokenizers that add a BOS (OPT-style BPE), that add none (`add_bos_token=False`), and that add
only an EOS (T5 Unigram, `</s>`); T5 configs with `bos_token_id` unset, set to `</s>` (as
Salesforce's Flan-T5 conversions are) or to a token of its own."""

from __future__ import annotations

import pytest
import torch
import transformers
from conftest import random_images

import im2text
from im2text.families.base import score_sequences

GREEDY = dict(num_beams=1, max_new_tokens=8, min_new_tokens=2)
BEAMS = dict(num_beams=3, num_return_sequences=2, max_new_tokens=6, min_new_tokens=2)
# What transformers gets for each: im2text's beam search also asks for early stopping.
PLAIN_KWARGS = {
    "greedy": dict(GREEDY, do_sample=False),
    "beams": dict(BEAMS, do_sample=False, early_stopping=True, length_penalty=1.0),
}
SETTINGS = {"greedy": GREEDY, "beams": BEAMS}

# BLIP-2 kinds whose config names a start token (generate works without any text).
BLIP2_WITH_BOS = ("blip2-opt", "blip2-opt-nobos", "blip2-t5-eosbos", "blip2-t5-bos")
BLIP2_ALL = (*BLIP2_WITH_BOS, "blip2-t5")
INSTRUCTBLIP = ("instructblip", "instructblip-opt", "instructblip-opt-nobos", "instructblip-t5-bos")


def _cls(kind: str) -> str:
    if kind.startswith("instructblip"):
        return "InstructBlipForConditionalGeneration"
    return "Blip2ForConditionalGeneration"


_LOADED: dict[tuple[str, str], object] = {}


def _ours(tiny, kind: str) -> im2text.Model:
    key = ("ours", kind)
    if key not in _LOADED:
        _LOADED[key] = im2text.load(str(tiny(kind)), batch_size=8)
    return _LOADED[key]  # type: ignore[return-value]


def _plain_model(tiny, kind: str):
    key = ("plain", kind)
    if key not in _LOADED:
        path = str(tiny(kind))
        model = getattr(transformers, _cls(kind)).from_pretrained(path).eval()
        _LOADED[key] = (model, transformers.AutoProcessor.from_pretrained(path))
    return _LOADED[key]


def _plain(tiny, kind: str, images, mode: str, text: list[str] | None = None):
    """Plain transformers, as the model card has it: `generate(**processor(images=..., text=...))`
    (no text: the unconditional caption). Per image, (text, mean log-prob) of each returned
    sequence, best first — decoded and scored as im2text does (the generated tail, raw logits)."""
    model, proc = _plain_model(tiny, kind)
    # Batched generation with a decoder-only LM pads on the left (transformers' advice).
    decoder_only = not model.config.text_config.is_encoder_decoder
    proc.tokenizer.padding_side = "left" if decoder_only else "right"
    kw = {} if text is None else {"text": text, "padding": True}
    inputs = proc(images=images, return_tensors="pt", **kw)
    with torch.no_grad():
        out = model.generate(
            **inputs, **PLAIN_KWARGS[mode], return_dict_in_generate=True, output_logits=True
        )
    eos = model.generation_config.eos_token_id
    eos = {eos} if isinstance(eos, int) else set(eos)
    tokens, mean, _total, _count = score_sequences(
        out.sequences, out.logits, getattr(out, "beam_indices", None), eos
    )
    texts = [t.strip() for t in proc.tokenizer.batch_decode(tokens, skip_special_tokens=True)]
    n = PLAIN_KWARGS[mode].get("num_return_sequences", 1)
    rows = list(zip(texts, mean.tolist(), strict=True))
    return [sorted(rows[i : i + n], key=lambda r: -r[1]) for i in range(0, len(rows), n)]


def _assert_same(results, plain, abs_tol: float = 1e-5) -> None:
    """im2text results (Captions or Answers) == plain transformers rows, text and score."""
    assert len(results) == len(plain)
    for r, p in zip(results, plain, strict=True):
        assert r.ok, r.error
        cands = getattr(r, "candidates", None) or [r]
        assert [c.text for c in cands] == [t for t, _ in p]
        assert [c.mean_logprob for c in cands] == pytest.approx([s for _, s in p], abs=abs_tol)


# --- unconditional captions: the documented `generate(**processor(images=...))` -------------


@pytest.mark.parametrize("kind", BLIP2_WITH_BOS)
def test_unconditional_inputs_are_generates_start_tokens(tiny, kind: str) -> None:
    """No prompt: the LLM sees the image tokens then the config's BOS, exactly the ids
    Blip2ForConditionalGeneration.generate builds when it is given no `input_ids` — not what
    the tokenizer makes of "" (nothing for a no-BOS tokenizer, `</s>` for T5)."""
    fam = _ours(tiny, kind).family
    cfg = fam.model.config
    start = [cfg.image_token_id] * cfg.num_query_tokens + [cfg.text_config.bos_token_id]
    inputs = fam.prepare(random_images(3, seed=1), [None] * 3)
    assert inputs["input_ids"].tolist() == [start] * 3
    assert inputs["attention_mask"].tolist() == [[1] * len(start)] * 3


@pytest.mark.parametrize("mode", ["greedy", "beams"])
@pytest.mark.parametrize("kind", BLIP2_WITH_BOS)
def test_unconditional_caption_equals_plain_generate(tiny, kind: str, mode: str) -> None:
    imgs = random_images(3, seed=11)
    ours = _ours(tiny, kind).caption(imgs, batch_size=3, **SETTINGS[mode])
    _assert_same(ours, _plain(tiny, kind, imgs, mode))


@pytest.mark.parametrize("mode", ["greedy", "beams"])
@pytest.mark.parametrize("kind", BLIP2_WITH_BOS)
def test_unconditional_single_image_equals_plain_generate(tiny, kind: str, mode: str) -> None:
    im = random_images(1, seed=12)[0]
    ours = _ours(tiny, kind).caption(im, **SETTINGS[mode])
    _assert_same([ours], _plain(tiny, kind, [im], mode))


def test_t5_without_bos_id_keeps_the_empty_text_start(tiny) -> None:
    """A T5 config with no `bos_token_id` (transformers' own T5 default): generate cannot build
    start tokens (it fails without text), so im2text keeps what the processor makes of "" —
    the image tokens then `</s>` — and equals plain transformers given that text."""
    imgs = random_images(2, seed=13)
    fam = _ours(tiny, "blip2-t5").family
    assert getattr(fam.model.config.text_config, "bos_token_id", None) is None
    ours = _ours(tiny, "blip2-t5").caption(imgs, batch_size=2, **GREEDY)
    _assert_same(ours, _plain(tiny, "blip2-t5", imgs, "greedy", text=[""] * 2))


@pytest.mark.parametrize("kind", BLIP2_ALL)
def test_unconditional_batched_equals_one_at_a_time(tiny, kind: str) -> None:
    model = _ours(tiny, kind)
    imgs = random_images(4, seed=3)
    for kw in (GREEDY, BEAMS):
        batched = model.caption(imgs, batch_size=4, **kw)
        single = [model.caption(im, batch_size=1, **kw) for im in imgs]
        for b, s in zip(batched, single, strict=True):
            assert [c.text for c in b.candidates] == [c.text for c in s.candidates]
            assert [c.mean_logprob for c in b.candidates] == pytest.approx(
                [c.mean_logprob for c in s.candidates], abs=1e-4
            )


@pytest.mark.parametrize("kind", BLIP2_ALL)
def test_mixed_prompted_and_unconditional_rows_in_one_batch(tiny, kind: str) -> None:
    """A batch may mix rows with and without a prompt: each row decodes as it would alone."""
    model = _ours(tiny, kind)
    fam = model.family
    imgs = random_images(3, seed=4)
    prompts = [None, "a photo of", None]
    settings = model.generation.merged(**GREEDY)
    batched = fam.generate(fam.prepare(imgs, prompts), settings)
    for im, p, b in zip(imgs, prompts, batched, strict=True):
        s = fam.generate(fam.prepare([im], [p]), settings)[0]
        assert b[0].text == s[0].text
        assert b[0].mean_logprob == pytest.approx(s[0].mean_logprob, abs=1e-4)


# --- prompted captions and VQA: unchanged, equal to plain transformers on the same text ------


@pytest.mark.parametrize("kind", BLIP2_ALL)
def test_prompted_caption_equals_plain_generate(tiny, kind: str) -> None:
    imgs = random_images(3, seed=5)
    ours = _ours(tiny, kind).caption(imgs, prompt="a photo of", batch_size=3, **GREEDY)
    _assert_same(ours, _plain(tiny, kind, imgs, "greedy", text=["a photo of"] * 3))


@pytest.mark.parametrize("kind", BLIP2_ALL)
def test_vqa_equals_plain_generate_batched_and_single(tiny, kind: str) -> None:
    """Questions of different lengths in one batch (padding), as plain transformers pads them;
    and each one alone gives the same answer."""
    model = _ours(tiny, kind)
    imgs = random_images(3, seed=6)
    questions = ["what is it?", "how many red cats sit on the mat?", "why?"]
    ours = model.ask(imgs, questions, batch_size=3, **GREEDY)
    texts = [f"Question: {q} Answer:" for q in questions]
    _assert_same(ours, _plain(tiny, kind, imgs, "greedy", text=texts), abs_tol=1e-4)
    for im, q, b in zip(imgs, questions, ours, strict=True):
        s = model.ask(im, q, batch_size=1, **GREEDY)
        assert s.text == b.text
        assert s.mean_logprob == pytest.approx(b.mean_logprob, abs=1e-4)


# --- InstructBLIP: always an instruction (the default one for a caption) ---------------------


@pytest.mark.parametrize("mode", ["greedy", "beams"])
@pytest.mark.parametrize("kind", INSTRUCTBLIP)
def test_instructblip_caption_equals_plain_generate_with_default_instruction(
    tiny, kind: str, mode: str
) -> None:
    """InstructBLIP's documented usage always passes the instruction as `text` (its Q-Former
    reads it; generate without one fails), so a caption is the default instruction's answer."""
    model = _ours(tiny, kind)
    default = model.family.default_prompt
    assert default
    imgs = random_images(3, seed=7)
    ours = model.caption(imgs, batch_size=3, **SETTINGS[mode])
    _assert_same(ours, _plain(tiny, kind, imgs, mode, text=[default] * 3))


@pytest.mark.parametrize("kind", INSTRUCTBLIP)
def test_instructblip_batched_equals_one_at_a_time(tiny, kind: str) -> None:
    model = _ours(tiny, kind)
    imgs = random_images(3, seed=8)
    batched = model.caption(imgs, batch_size=3, **GREEDY)
    single = [model.caption(im, batch_size=1, **GREEDY) for im in imgs]
    assert [c.text for c in batched] == [c.text for c in single]
    for b, s in zip(batched, single, strict=True):
        assert b.mean_logprob == pytest.approx(s.mean_logprob, abs=1e-4)


@pytest.mark.parametrize("kind", INSTRUCTBLIP)
def test_instructblip_vqa_equals_plain_generate(tiny, kind: str) -> None:
    model = _ours(tiny, kind)
    imgs = random_images(3, seed=9)
    questions = ["what is it?", "how many red cats sit on the mat?", "why?"]
    ours = model.ask(imgs, questions, batch_size=3, **GREEDY)
    _assert_same(ours, _plain(tiny, kind, imgs, "greedy", text=questions), abs_tol=1e-4)


# --- training starts each row as inference does -----------------------------------------------


@pytest.mark.parametrize("kind", [*BLIP2_ALL, *INSTRUCTBLIP])
@pytest.mark.parametrize("prompt", [None, "a photo of"])
def test_training_rows_start_as_generate_inputs(tiny, kind: str, prompt: str | None) -> None:
    """What the model learns to continue is what it is given at inference: the LLM rows
    (decoder-only: prompt + target; T5: the encoder input) begin with `prepare`'s ids, and
    InstructBLIP's Q-Former reads the same instruction. The loss is finite."""
    fam = _ours(tiny, kind).family
    im = random_images(1, seed=10)
    given = fam.prepare(im, [prompt])
    train = fam.training_inputs(im, [prompt], ["a red cat"])
    n = given["input_ids"].shape[1]
    assert train["input_ids"][0, :n].tolist() == given["input_ids"][0].tolist()
    for key in ("qformer_input_ids", "qformer_attention_mask"):
        assert (key in train) == (key in given)
        if key in given:
            assert train[key].tolist() == given[key].tolist()
    with torch.no_grad():
        loss = fam.model(**train).loss
    assert torch.isfinite(loss)
