"""Every family: load a tiny checkpoint dir and caption through im2text, and agree with plain
transformers `generate()` on the same inputs (im2text adds no drift)."""

from __future__ import annotations

import math

import pytest
import torch
import transformers
from conftest import random_images

import im2text
from im2text.testing import TINY_FAMILIES

FAMILY_OF = {
    "blip": "blip",
    "blip2-opt": "blip2",
    "blip2-t5": "blip2",
    "instructblip": "instructblip",
    "git": "git",
    "vision-encoder-decoder": "vision-encoder-decoder",
    "llava": "llava",
    "idefics3": "idefics3",
    "paligemma": "paligemma",
    "llava-onevision": "llava",
    "gemma3": "image-text-to-text",
    "llava-next": "image-text-to-text",  # no family names llava_next: the generic one runs it
    "florence2": "florence2",
    "qwen2.5-vl": "qwen-vl",
    "qwen3-vl": "qwen-vl",
}
GREEDY = dict(num_beams=1, max_new_tokens=8, min_new_tokens=2)


@pytest.fixture(scope="module", params=TINY_FAMILIES)
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def model(kind: str, tiny) -> im2text.Model:
    return im2text.load(str(tiny(kind)), batch_size=4)


def test_loads_with_right_family(kind: str, model: im2text.Model) -> None:
    assert model.family.key == FAMILY_OF[kind]
    assert not model.family.model.training  # .eval() was called
    assert "caption" in model.tasks


def test_caption_batch_scores_are_log_probs(model: im2text.Model) -> None:
    caps = model.caption(random_images(5), **GREEDY)
    assert len(caps) == 5
    for c in caps:
        # Random weights may emit pieces that decode to nothing; a string it must be.
        assert c.ok and isinstance(c.text, str) and c.source
        assert math.isfinite(c.mean_logprob) and c.mean_logprob <= 0.0


def test_prompted_caption(model: im2text.Model) -> None:
    caps = model.caption(random_images(2), prompt="a photo of", **GREEDY)
    for c in caps:
        assert c.ok
        if model.family.prompt_is_prefix:
            assert c.text.startswith("a photo of")


def test_beam_search_several_captions(model: im2text.Model) -> None:
    caps = model.caption(random_images(3), num_beams=3, num_return_sequences=3, max_new_tokens=6)
    for c in caps:
        assert len(c.candidates) == 3
        scores = [x.mean_logprob for x in c.candidates]
        assert scores == sorted(scores, reverse=True)
        assert c.text == c.candidates[0].text and c.mean_logprob == scores[0]


def test_sampling_is_seeded(model: im2text.Model) -> None:
    imgs = random_images(2)
    kw = dict(do_sample=True, num_return_sequences=2, max_new_tokens=6, seed=7, temperature=1.5)
    a, b = model.caption(imgs, **kw), model.caption(imgs, **kw)
    assert [c.candidates for c in a] == [c.candidates for c in b]
    assert all(len(c.candidates) == 2 for c in a)


def test_batched_equals_one_at_a_time(model: im2text.Model) -> None:
    imgs = random_images(5, seed=3)
    batched = model.caption(imgs, batch_size=5, **GREEDY)
    single = [model.caption(im, batch_size=1, **GREEDY) for im in imgs]
    assert [c.text for c in batched] == [c.text for c in single]
    for b, s in zip(batched, single, strict=True):
        assert b.mean_logprob == pytest.approx(s.mean_logprob, abs=1e-4)


def _plain_transformers(kind: str, path: str, images, prompt: str | None):
    """What a user following the model card writes, with plain transformers."""
    cls = {
        "blip": "BlipForConditionalGeneration",
        "blip2-opt": "Blip2ForConditionalGeneration",
        "blip2-t5": "Blip2ForConditionalGeneration",
        "instructblip": "InstructBlipForConditionalGeneration",
        "git": "GitForCausalLM",
        "vision-encoder-decoder": "VisionEncoderDecoderModel",
        "llava": "LlavaForConditionalGeneration",
        "idefics3": "Idefics3ForConditionalGeneration",
        "paligemma": "PaliGemmaForConditionalGeneration",
        "llava-onevision": "LlavaOnevisionForConditionalGeneration",
        "gemma3": "Gemma3ForConditionalGeneration",
        "llava-next": "LlavaNextForConditionalGeneration",
        "florence2": "Florence2ForConditionalGeneration",
        "qwen2.5-vl": "Qwen2_5_VLForConditionalGeneration",
        "qwen3-vl": "Qwen3VLForConditionalGeneration",
    }[kind]
    model = getattr(transformers, cls).from_pretrained(path).eval()
    if kind == "vision-encoder-decoder":
        improc = transformers.AutoImageProcessor.from_pretrained(path)
        tok = transformers.AutoTokenizer.from_pretrained(path)
        inputs = {"pixel_values": improc(images=images, return_tensors="pt").pixel_values}
        start = [model.config.decoder_start_token_id]
        ids = start + (tok(prompt, add_special_tokens=False).input_ids if prompt else [])
        inputs["decoder_input_ids"] = torch.tensor([ids] * len(images))
        skip = len(ids)
    elif kind.startswith("qwen"):
        inputs, tok = _qwen_by_hand(path, images, prompt)
        skip = inputs["input_ids"].shape[1]
    elif kind == "llava-onevision":
        inputs, tok = _onevision_by_hand(model, path, images, prompt)
        skip = inputs["input_ids"].shape[1]
    else:
        proc = transformers.AutoProcessor.from_pretrained(path)
        tok = proc.tokenizer
        if kind == "git":
            ids = [tok.cls_token_id] + (
                tok(prompt, add_special_tokens=False).input_ids if prompt else []
            )
            inputs = {
                "pixel_values": proc(images=images, return_tensors="pt").pixel_values,
                "input_ids": torch.tensor([ids] * len(images)),
            }
            skip = len(ids)
        elif kind in ("llava", "idefics3", "gemma3", "llava-next"):  # the model cards
            turn = [
                {"type": "image"},
                {"type": "text", "text": prompt or "Describe the image in one sentence."},
            ]
            chat = proc.apply_chat_template([{"role": "user", "content": turn}],
                                            add_generation_prompt=True)  # fmt: skip
            proc.tokenizer.padding_side = "left"
            nested = kind in ("idefics3", "gemma3")
            given = [[im] for im in images] if nested else images  # one list per text
            inputs = proc(images=given, text=[chat] * len(images), padding=True,
                          return_tensors="pt")  # fmt: skip
            skip = inputs["input_ids"].shape[1]
        elif kind == "florence2":  # the model card: a task token (or free text) per image
            text = [prompt or "<CAPTION>"] * len(images)
            inputs = proc(images=images, text=text, padding=True, return_tensors="pt")
            skip = 1  # the decoder start token
        elif kind == "paligemma":  # the model card: "<image>" + the task prefix
            proc.tokenizer.padding_side = "left"
            text = [f"<image>{prompt or 'caption en'}"] * len(images)
            inputs = proc(images=images, text=text, padding=True, return_tensors="pt")
            skip = inputs["input_ids"].shape[1]
        elif kind == "blip":
            text = [prompt] * len(images) if prompt else None
            inputs = proc(images=images, text=text, return_tensors="pt")
            skip = inputs["input_ids"].shape[1] - 1 if prompt else 1  # BLIP drops [SEP]
        else:
            text = [prompt or ("A short image description:" if kind == "instructblip" else "")]
            inputs = proc(images=images, text=text * len(images), return_tensors="pt")
            decoder_only = not model.config.text_config.is_encoder_decoder
            skip = inputs["input_ids"].shape[1] if decoder_only else 1
    with torch.no_grad():
        out = model.generate(**inputs, **GREEDY)
    return [t.strip() for t in tok.batch_decode(out[:, skip:], skip_special_tokens=True)]


def _left_padded(rows: list[list[int]], pad: int) -> dict[str, torch.Tensor]:
    width = max(map(len, rows))
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    return {"input_ids": ids, "attention_mask": mask}


def _chat(tok, prompt: str | None) -> str:
    text = prompt or "Describe the image in one sentence."
    turn = [{"type": "image"}, {"type": "text", "text": text}]
    return tok.apply_chat_template([{"role": "user", "content": turn}], tokenize=False,
                                   add_generation_prompt=True)  # fmt: skip


def _onevision_by_hand(model, path: str, images, prompt: str | None):
    """LLaVA-OneVision inputs written out (its processor class needs torchvision to load here):
    each image's `<image>` repeated as many times as the model itself makes features for it
    (anyres tiles + newline tokens), left padding."""
    improc = transformers.AutoImageProcessor.from_pretrained(path)
    tok = transformers.AutoTokenizer.from_pretrained(path)
    pix = improc(images=images, return_tensors="pt")
    with torch.no_grad():
        feats = model.model.get_image_features(
            pixel_values=pix["pixel_values"], image_sizes=pix["image_sizes"],
            vision_feature_layer=-1, vision_feature_select_strategy="full", return_dict=True,
        ).pooler_output  # fmt: skip
    chat = _chat(tok, prompt)
    rows = [tok(chat.replace("<image>", "<image>" * len(f)), add_special_tokens=False).input_ids
            for f in feats]  # fmt: skip
    return {**_left_padded(rows, tok.pad_token_id), **pix}, tok


def _qwen_by_hand(path: str, images, prompt: str | None):
    """Qwen-VL inputs as the model card's processor makes them, written out (its processor
    class needs torchvision to load here): the chat template, each `<|image_pad|>` repeated
    once per merged patch of that image's grid, left padding."""
    improc = transformers.AutoImageProcessor.from_pretrained(path)
    tok = transformers.AutoTokenizer.from_pretrained(path)
    chat = _chat(tok, prompt)
    pix = improc(images=images, return_tensors="pt")
    merge = improc.merge_size**2
    rows = []
    for thw in pix["image_grid_thw"]:
        text = chat.replace("<|image_pad|>", "<|image_pad|>" * (int(thw.prod()) // merge))
        rows.append(tok(text, add_special_tokens=False).input_ids)
    inputs = _left_padded(rows, tok.pad_token_id)
    # Which tokens are image tokens: without it transformers cannot place the 3-D positions.
    types = (inputs["input_ids"] == tok.convert_tokens_to_ids("<|image_pad|>")).int()
    return {**inputs, "mm_token_type_ids": types, **pix}, tok


@pytest.mark.parametrize("prompt", [None, "a photo of"])
def test_equals_plain_transformers_generate(
    kind: str, tiny, model: im2text.Model, prompt: str | None
) -> None:
    imgs = random_images(3, seed=11)
    ours = model.caption(imgs, prompt=prompt, **GREEDY)
    plain = _plain_transformers(kind, str(tiny(kind)), imgs, prompt)
    if prompt and model.family.prompt_is_prefix:
        plain = [f"{prompt} {p}".strip() for p in plain]
    assert [c.text for c in ours] == plain


def test_score_equals_transformers_transition_scores(model: im2text.Model) -> None:
    """Our mean log-prob equals one computed with transformers' own compute_transition_scores."""
    fam = model.family
    imgs = random_images(2, seed=5)
    inputs = fam.prepare(imgs, [None] * len(imgs))
    # No min-length: then the processed scores transformers returns equal the raw logits we use.
    settings = model.generation.merged(num_beams=1, max_new_tokens=8, min_new_tokens=0)
    ours = fam.generate(dict(inputs), settings)
    with torch.no_grad():
        out = fam.model.generate(
            **inputs,
            **settings.to_generate_kwargs(),
            **fam.generation_kwargs(),
            return_dict_in_generate=True,
            output_scores=True,
        )
    ts = fam.model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
    gen = out.sequences[:, -ts.shape[1] :]
    eos = torch.tensor(sorted(fam.eos_token_ids()))
    for i in range(len(imgs)):
        n = ts.shape[1]
        hits = torch.isin(gen[i], eos).nonzero()
        if len(hits):
            n = int(hits[0]) + 1  # score up to and including the first EOS
        expected = ts[i, :n].mean().item()
        assert ours[i][0].mean_logprob == pytest.approx(expected, abs=1e-4)
        assert math.exp(ours[i][0].mean_logprob) <= 1.0


@pytest.mark.parametrize("kind", ["qwen2.5-vl", "qwen3-vl", "llava-onevision"])
def test_dynamic_resolution_mixed_sizes(kind: str, tiny) -> None:
    """Images of different sizes in one batch get different token counts (their own grids);
    the batch equals one-at-a-time and plain transformers on the same images."""
    model = im2text.load(str(tiny(kind)), batch_size=4)
    sizes = [(40, 40), (120, 50), (30, 140), (200, 200)]
    imgs = [random_images(1, seed=i, size=s)[0] for i, s in enumerate(sizes)]
    inputs = model.family.prepare(imgs, [None] * 4)
    pads = (inputs["input_ids"] == model.family.model.config.image_token_id).sum(-1)
    assert len(set(pads.tolist())) >= 3  # each image its own number of tokens
    batched = model.caption(imgs, batch_size=4, **GREEDY)
    single = [model.caption(im, batch_size=1, **GREEDY) for im in imgs]
    assert [c.text for c in batched] == [c.text for c in single]
    for b, s in zip(batched, single, strict=True):
        assert b.mean_logprob == pytest.approx(s.mean_logprob, abs=1e-4)
    assert [c.text for c in batched] == _plain_transformers(kind, str(tiny(kind)), imgs, None)


_BEAMS = dict(num_beams=3, num_return_sequences=2, max_new_tokens=7)
_SAMPLED = dict(do_sample=True, num_return_sequences=2, seed=3, max_new_tokens=6)
_QUESTIONS = ["what is it?", "is the big red one here?", "how many?"]


@pytest.mark.parametrize(
    "kind,call",
    [
        ("blip", lambda m, ims: m.caption(ims, **_BEAMS)),
        ("blip", lambda m, ims: m.caption(ims, prompt="a photo of", **GREEDY)),
        ("blip", lambda m, ims: m.caption(ims, **_SAMPLED)),
        ("blip-vqa", lambda m, ims: m.ask(ims, _QUESTIONS, num_beams=2, max_new_tokens=5)),
    ],
)
def test_blip_decoding_through_the_image_states_equals_per_layer_keys(
    kind: str, call, tiny, monkeypatch
) -> None:
    """CPU decoding steps attend to the image through its states (`_absorbed_cross`: no layer
    caches image keys/values): beams, prompts, sampling and VQA's padded question give the
    texts and scores of the per-layer keys/values path (itself equal to plain transformers)."""
    import im2text.families.blip as blip

    model = im2text.load(str(tiny(kind)))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # BERT initialises biases to 0: give the key/value biases weight
        for name, p in model.family.model.named_parameters():
            if name.endswith(("key.bias", "value.bias")):
                p.copy_(torch.randn(p.shape, generator=gen))
    images = random_images(3, seed=4)
    calls: list[int] = []
    real = blip._absorbed_cross
    monkeypatch.setattr(blip, "_absorbed_cross",
                        lambda *a: calls.append(1) or real(*a))  # fmt: skip
    absorbed = call(model, images)
    assert calls  # the path ran
    monkeypatch.setattr(blip, "ABSORB_MAX_QUERY", -1)  # every query too long: keys/values
    calls.clear()
    usual = call(model, images)
    assert not calls
    for a, u in zip(absorbed, usual, strict=True):
        assert a.text == u.text
        assert a.mean_logprob == pytest.approx(u.mean_logprob, abs=1e-4)
        if kind == "blip":
            assert [c.text for c in a.candidates] == [c.text for c in u.candidates]
            assert [c.logprob for c in a.candidates] == pytest.approx(
                [c.logprob for c in u.candidates], abs=1e-4
            )
        else:
            assert a.confidence == pytest.approx(u.confidence, abs=1e-4)
