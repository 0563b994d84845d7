"""VQA, matching, classification and embeddings on tiny checkpoints: equal to plain
transformers, batched equals one-by-one, confidences are real probabilities."""

from __future__ import annotations

import math

import pytest
import torch
import transformers
from conftest import random_images

import im2text

GREEDY = dict(num_beams=1, max_new_tokens=6, min_new_tokens=1)


@pytest.fixture(scope="module")
def vqa(tiny) -> im2text.Model:
    return im2text.load(str(tiny("blip-vqa")), batch_size=3)


@pytest.fixture(scope="module")
def git(tiny) -> im2text.Model:
    return im2text.load(str(tiny("git")), batch_size=3)


QUESTIONS = ["what color is it?", "how many shapes are there?", "is it big?"]


def test_blip_vqa_equals_plain_transformers(vqa: im2text.Model, tiny) -> None:
    imgs = random_images(3, seed=2)
    ours = vqa.ask(imgs, QUESTIONS, **GREEDY)
    path = str(tiny("blip-vqa"))
    model = transformers.BlipForQuestionAnswering.from_pretrained(path).eval()
    proc = transformers.AutoProcessor.from_pretrained(path)
    plain = []
    for im, q in zip(imgs, QUESTIONS, strict=True):  # one by one, as the model card does
        out = model.generate(**proc(images=im, text=q, return_tensors="pt"), **GREEDY)
        plain.append(proc.decode(out[0], skip_special_tokens=True).strip())
    assert [a.text for a in ours] == plain
    assert [a.question for a in ours] == QUESTIONS


def test_vqa_confidence_is_the_sequence_probability(vqa: im2text.Model, tiny) -> None:
    """Answer confidence == exp(sum of token log-probs) that transformers' own
    `compute_transition_scores` gives for the same greedy answer."""
    path = str(tiny("blip-vqa"))
    model = transformers.BlipForQuestionAnswering.from_pretrained(path).eval()
    proc = transformers.AutoProcessor.from_pretrained(path)
    plain = dict(num_beams=1, max_new_tokens=6)  # no min length: processed == raw scores
    for im in random_images(2, seed=4):
        ans = vqa.ask(im, "what is it?", **plain)
        assert 0.0 <= ans.confidence <= 1.0
        inputs = proc(images=im, text="what is it?", return_tensors="pt")
        with torch.no_grad():
            out = model.generate(
                **inputs, return_dict_in_generate=True, output_scores=True, **plain
            )
        steps = model.text_decoder.compute_transition_scores(
            out.sequences, out.scores, normalize_logits=True
        )[0]
        gen = out.sequences[0, -steps.shape[0] :]
        sep = model.config.text_config.sep_token_id
        n = int((gen == sep).nonzero()[0]) + 1 if (gen == sep).any() else steps.shape[0]
        assert ans.confidence == pytest.approx(math.exp(steps[:n].sum().item()), rel=1e-3)


def test_vqa_ranking_is_a_distribution(vqa: im2text.Model) -> None:
    cands = ["yes", "no", "red", "two"]
    ans = vqa.ask(random_images(1)[0], "is it red?", candidates=cands)
    probs = [p for _, p in ans.ranking]
    assert sorted(a for a, _ in ans.ranking) == sorted(cands)
    assert sum(probs) == pytest.approx(1.0, abs=1e-5)
    assert probs == sorted(probs, reverse=True) and ans.text == ans.ranking[0][0]
    assert ans.confidence == probs[0]


@pytest.mark.parametrize("which", ["vqa", "git"])
def test_ask_batched_equals_one_by_one(which: str, vqa, git) -> None:
    model = {"vqa": vqa, "git": git}[which]
    imgs = random_images(3, seed=8)
    batched = model.ask(imgs, QUESTIONS, batch_size=3, **GREEDY)
    single = [model.ask(im, q, batch_size=1, **GREEDY) for im, q in zip(imgs, QUESTIONS)]
    assert [a.text for a in batched] == [a.text for a in single]
    for b, s in zip(batched, single, strict=True):
        assert b.confidence == pytest.approx(s.confidence, rel=1e-3)


def test_git_vqa_equals_plain_transformers(git: im2text.Model, tiny) -> None:
    path = str(tiny("git"))
    model = transformers.GitForCausalLM.from_pretrained(path).eval()
    proc = transformers.AutoProcessor.from_pretrained(path)
    im, q = random_images(1, seed=9)[0], "what is on the table?"
    ids = [proc.tokenizer.cls_token_id, *proc(text=q, add_special_tokens=False).input_ids]
    pv = proc(images=im, return_tensors="pt").pixel_values
    out = model.generate(pixel_values=pv, input_ids=torch.tensor([ids]), **GREEDY)
    plain = proc.batch_decode(out[:, len(ids) :], skip_special_tokens=True)[0].strip()
    assert git.ask(im, q, **GREEDY).text == plain


def test_many_questions_encode_the_image_once(vqa: im2text.Model) -> None:
    tower = vqa.family.model.vision_model
    before = tower.im2text_images_encoded
    answers = vqa.ask(random_images(1)[0], QUESTIONS, batch_size=3, **GREEDY)
    assert len(answers) == 3
    assert tower.im2text_images_encoded - before == 1


def test_bad_questions_fail_alone(vqa: im2text.Model) -> None:
    im = random_images(1)[0]
    answers = vqa.ask([im, im, im, im], ["", "x" * 100_000, 42, "what color?"], **GREEDY)
    assert "empty question" in answers[0].error
    assert "too long" in answers[1].error and "100000" in answers[1].error
    assert "must be a string" in answers[2].error
    assert answers[3].ok and answers[3].text is not None


def test_ranking_needs_an_answer_decoder(git: im2text.Model) -> None:
    with pytest.raises(ValueError, match="candidate ranking"):
        git.ask(random_images(1)[0], "what?", candidates=["a", "b"])


def test_task_not_supported_says_which_models_can(tiny) -> None:
    vit = im2text.load(str(tiny("vit")))
    with pytest.raises(ValueError, match=r"cannot caption.*blip-base"):
        vit.caption(random_images(1)[0])


# --- matching, classification, embeddings -------------------------------------------------------


@pytest.fixture(scope="module")
def clip(tiny) -> im2text.Model:
    return im2text.load(str(tiny("clip")), batch_size=2)


@pytest.fixture(scope="module")
def itm(tiny) -> im2text.Model:
    return im2text.load(str(tiny("blip-itm")), batch_size=2)


TEXTS = ["a red circle", "a photo of a cat", "two dogs playing"]


def test_clip_match_equals_plain_transformers(clip: im2text.Model, tiny) -> None:
    imgs = random_images(3, seed=1)
    ours = clip.match(imgs, TEXTS)
    path = str(tiny("clip"))
    model = transformers.CLIPModel.from_pretrained(path).eval()
    proc = transformers.AutoProcessor.from_pretrained(path)
    with torch.no_grad():
        out = model(**proc(images=imgs, text=TEXTS, padding=True, return_tensors="pt"))
    cos = out.logits_per_image / model.logit_scale.exp()
    probs = out.logits_per_image.softmax(-1)
    for i, m in enumerate(ours):
        assert m.similarity == pytest.approx(cos[i].tolist(), abs=1e-5)
        assert m.probability == pytest.approx(probs[i].tolist(), abs=1e-5)
        assert m.itm is None and m.best == TEXTS[int(cos[i].argmax())]


def test_blip_itm_and_itc_equal_plain_transformers(itm: im2text.Model, tiny) -> None:
    imgs = random_images(2, seed=3)
    ours = itm.match(imgs, TEXTS)
    path = str(tiny("blip-itm"))
    model = transformers.BlipForImageTextRetrieval.from_pretrained(path).eval()
    proc = transformers.AutoProcessor.from_pretrained(path)
    for i, im in enumerate(imgs):
        inputs = proc(images=[im] * 3, text=TEXTS, padding=True, return_tensors="pt")
        with torch.no_grad():
            itm_p = model(**inputs).itm_score.softmax(-1)[:, 1]
            cos = model(**inputs, use_itm_head=False).itm_score.diagonal()
        assert ours[i].itm == pytest.approx(itm_p.tolist(), abs=1e-5)
        assert ours[i].similarity == pytest.approx(cos.tolist(), abs=1e-5)
        assert all(0 <= p <= 1 for p in ours[i].itm)


@pytest.mark.parametrize("which", ["clip", "itm"])
def test_match_batched_equals_one_by_one(which: str, clip, itm) -> None:
    model = {"clip": clip, "itm": itm}[which]
    imgs = random_images(3, seed=6)
    batched = model.match(imgs, TEXTS, batch_size=3)
    for im, b in zip(imgs, batched, strict=True):
        s = model.match(im, TEXTS, batch_size=1)
        assert b.similarity == pytest.approx(s.similarity, abs=1e-5)


def test_zero_shot_classify_with_template_ensemble(clip: im2text.Model) -> None:
    from im2text.families.base import ENSEMBLE_TEMPLATES

    im = random_images(1, seed=12)[0]
    labels = ["cat", "dog", "car", "tree"]
    res = clip.classify(im, labels, templates="ensemble", top_k=4)
    assert sum(p for _, p in res.labels) == pytest.approx(1.0, abs=1e-5)
    # Direct computation: mean of normalised template embeddings, renormalised.
    fam = clip.family
    emb = torch.stack(
        [
            torch.nn.functional.normalize(
                fam.embed_texts([t.format(lab) for t in ENSEMBLE_TEMPLATES]).mean(0), dim=-1
            )
            for lab in labels
        ]
    )
    img = torch.from_numpy(clip.embed(im))
    expected = (img @ emb.T * fam.logit_scale).softmax(-1)[0]
    assert dict(res.labels) == pytest.approx(dict(zip(labels, expected.tolist())), abs=1e-5)


def test_vit_classify_equals_plain_transformers(tiny) -> None:
    path = str(tiny("vit"))
    ours = im2text.load(path).classify(random_images(2, seed=5), top_k=3)
    model = transformers.ViTForImageClassification.from_pretrained(path).eval()
    proc = transformers.AutoImageProcessor.from_pretrained(path)
    with torch.no_grad():
        probs = model(**proc(images=random_images(2, seed=5), return_tensors="pt")).logits
    probs = probs.softmax(-1)
    for i, c in enumerate(ours):
        top = probs[i].topk(3)
        names = [model.config.id2label[int(j)] for j in top.indices]
        assert [n for n, _ in c.labels] == names
        assert [p for _, p in c.labels] == pytest.approx(top.values.tolist(), abs=1e-5)
    subset = im2text.load(path).classify(random_images(1)[0], ["espresso", "tabby cat"])
    assert {n for n, _ in subset.labels} == {"espresso", "tabby cat"}


def test_label_errors(clip: im2text.Model, tiny) -> None:
    im = random_images(1)[0]
    with pytest.raises(ValueError, match="no labels"):
        clip.classify(im, [])
    with pytest.raises(ValueError, match="too many labels"):
        clip.classify(im, [f"label {i}" for i in range(6000)])
    with pytest.raises(TypeError, match="label must be a string"):
        clip.classify(im, ["cat", 3])
    with pytest.raises(ValueError, match="empty label"):
        clip.classify(im, ["cat", "  "])
    with pytest.raises(ValueError, match="needs labels"):
        clip.classify(im)
    with pytest.raises(ValueError, match="exactly once"):
        clip.classify(im, ["cat"], templates="a photo")
    with pytest.raises(ValueError, match="exactly once"):
        clip.classify(im, ["cat"], templates="a {} and a {}")
    with pytest.raises(ValueError, match="not among"):
        im2text.load(str(tiny("vit"))).classify(im, ["submarine"])


def test_bad_image_in_match_batch_fails_alone(clip: im2text.Model) -> None:
    res = clip.match([random_images(1)[0], b"nope", random_images(1, seed=3)[0]], TEXTS)
    assert [r.ok for r in res] == [True, False, True]


def test_embeddings_are_normalised_and_match_similarity(clip: im2text.Model) -> None:
    imgs = random_images(2, seed=7)
    img = clip.embed(imgs)
    txt = clip.embed(texts=TEXTS)
    assert img.shape == (2, 32) and txt.shape == (3, 32) and img.dtype.name == "float32"
    assert (abs((img**2).sum(1) - 1) < 1e-5).all()
    sims = img @ txt.T
    assert sims[0].tolist() == pytest.approx(clip.match(imgs[0], TEXTS).similarity, abs=1e-5)
    with pytest.raises(im2text.ImageError):
        clip.embed([imgs[0], b""])


def test_caption_rerank_orders_by_the_matcher(tiny, itm: im2text.Model) -> None:
    cap = im2text.load(str(tiny("blip"))).caption(
        random_images(1)[0], rerank=itm, num_beams=4, num_return_sequences=4, max_new_tokens=5
    )
    reranks = [c.rerank for c in cap.candidates]
    assert len(reranks) == 4 and reranks == sorted(reranks, reverse=True)
    probs = itm.match(random_images(1)[0], [c.text for c in cap.candidates]).itm
    assert reranks == pytest.approx(list(probs), abs=1e-5)
    assert cap.text == cap.candidates[0].text


@pytest.mark.parametrize("kind", ["blip2-opt", "blip2-t5", "instructblip"])
def test_llm_vqa_batched_equals_one_by_one_and_plain(kind: str, tiny) -> None:
    """Questions of different lengths share a (left-)padded batch without changing answers."""
    model = im2text.load(str(tiny(kind)), batch_size=3)
    imgs = random_images(3, seed=21)
    qs = ["what?", "what colour is the large shape here?", "how many?"]
    batched = model.ask(imgs, qs, **GREEDY)
    single = [model.ask(im, q, batch_size=1, **GREEDY) for im, q in zip(imgs, qs)]
    assert [a.text for a in batched] == [a.text for a in single]
    for b, s in zip(batched, single, strict=True):
        assert b.confidence == pytest.approx(s.confidence, rel=1e-3)
    # Plain transformers with the family's documented prompt, one image at a time.
    path = str(tiny(kind))
    cls = "InstructBlip" if kind == "instructblip" else "Blip2"
    plain_model = getattr(transformers, f"{cls}ForConditionalGeneration").from_pretrained(path)
    proc = transformers.AutoProcessor.from_pretrained(path)
    prompt = qs[1] if kind == "instructblip" else f"Question: {qs[1]} Answer:"
    inputs = proc(images=imgs[1], text=prompt, return_tensors="pt")
    with torch.no_grad():
        out = plain_model.eval().generate(**inputs, **GREEDY)
    skip = 1 if plain_model.config.text_config.is_encoder_decoder else inputs["input_ids"].shape[1]
    plain = proc.tokenizer.decode(out[0, skip:], skip_special_tokens=True).strip()
    assert batched[1].text == plain


def test_trocr_line_equals_plain_transformers(tiny) -> None:
    path = str(tiny("trocr"))
    img = random_images(1, seed=30, size=(96, 24))[0]
    ours = im2text.load(path).read(img, page=False, **GREEDY)
    model = transformers.VisionEncoderDecoderModel.from_pretrained(path).eval()
    proc = transformers.TrOCRProcessor.from_pretrained(path)
    with torch.no_grad():
        out = model.generate(proc(images=img, return_tensors="pt").pixel_values, **GREEDY)
    assert ours.text == proc.batch_decode(out, skip_special_tokens=True)[0].strip()
    assert 0 <= ours.lines[0].confidence <= 1
