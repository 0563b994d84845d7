"""VisualBERT from a raw image: the detector's regions into transformers' VisualBERT, equal to a
direct computation on the same features; batched == single; candidates; cached regions; bad
inputs fail alone."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import transformers
from conftest import random_images

import im2text
from im2text.families.visualbert import RegionCache

QUESTIONS = ["what shape is it?", "what color is the shape?", "is it red?"]


def _load_with_own_cache(path: Path, tmp_path_factory) -> im2text.Model:
    """Load with a region cache of the model's own (the family reads IM2TEXT_CACHE at load);
    the session's cache setting is restored after."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IM2TEXT_CACHE", str(tmp_path_factory.mktemp("cache")))
        return im2text.load(str(path))


@pytest.fixture(scope="module")
def vqa(tiny, tmp_path_factory) -> im2text.Model:
    return _load_with_own_cache(tiny("visualbert-vqa"), tmp_path_factory)


def _direct(path: str, image, question: str) -> torch.Tensor:
    """The demo's recipe with plain transformers: the detector's 36 features, [CLS] q [SEP],
    visual segment 1, VisualBertForQuestionAnswering -> softmax over the labels."""
    detector = im2text.load(str(Path(path) / "detector"))
    feats = detector.family.regions([image])[0]["features"][None]
    tok = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.VisualBertForQuestionAnswering.from_pretrained(path).eval()
    enc = tok([question], return_tensors="pt")
    with torch.no_grad():
        logits = model(**enc, visual_embeds=feats,
                       visual_attention_mask=torch.ones(1, feats.shape[1], dtype=torch.long),
                       visual_token_type_ids=torch.ones(1, feats.shape[1], dtype=torch.long),
                       ).logits  # fmt: skip
    return logits.softmax(-1)[0]


def test_answers_equal_the_direct_computation(vqa: im2text.Model, tiny) -> None:
    assert vqa.family.key == "visualbert" and vqa.tasks == ("ask",)
    imgs = random_images(3, seed=7, size=(100, 80))
    answers = vqa.ask(imgs, QUESTIONS)
    labels = vqa.family.model.config.id2label
    for im, q, a in zip(imgs, QUESTIONS, answers, strict=True):
        probs = _direct(str(tiny("visualbert-vqa")), im, q)
        assert a.ok and a.text == labels[int(probs.argmax())]
        assert a.confidence == pytest.approx(float(probs.max()), abs=1e-5)
    single = [vqa.ask(im, q) for im, q in zip(imgs, QUESTIONS, strict=True)]
    assert [(a.text, round(a.confidence, 6)) for a in answers] == [
        (a.text, round(a.confidence, 6)) for a in single
    ]


def test_candidates_share_the_probability(vqa: im2text.Model, tiny) -> None:
    im = random_images(1, seed=8)[0]
    a = vqa.ask(im, "is it red?", candidates=["yes", "no", "circle"])
    probs = _direct(str(tiny("visualbert-vqa")), im, "is it red?")
    ids = [vqa.family.answer_ids[c] for c in ("yes", "no", "circle")]
    share = probs[ids] / probs[ids].sum()
    assert dict(a.ranking) == pytest.approx(dict(zip(["yes", "no", "circle"], share.tolist())))
    assert sum(p for _, p in a.ranking) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="not among this model's 16 answers: purple elephant"):
        vqa.ask(im, "is it red?", candidates=["yes", "purple elephant"])


def test_bad_inputs_fail_alone(vqa: im2text.Model, tmp_path: Path) -> None:
    broken = tmp_path / "x.png"
    broken.write_bytes(b"not a png")
    im = random_images(1, seed=9)[0]
    out = vqa.ask([im, str(broken), im, im], ["is it red?", "is it red?", "", "is it red?"])
    assert out[0].ok and out[3].ok and out[0].text == out[3].text
    assert not out[1].ok and not out[2].ok and "empty question" in out[2].error


def test_region_cache_is_keyed_by_content(vqa: im2text.Model, tmp_path: Path) -> None:
    cache = RegionCache(tmp_path, vqa.family.detector)
    a, b = random_images(2, seed=10)
    assert cache.get(a) is None and cache.misses == 1
    regions = vqa.family.detector.regions([a])[0]
    cache.put(a, {"features": regions["features"]})
    assert torch.equal(cache.get(a)["features"], regions["features"]) and cache.hits == 1
    assert cache.get(b) is None
    assert cache.get(a.copy()) is not None  # same pixels, another object: a hit


def test_nlvr2_reads_both_halves_of_a_pair(tiny) -> None:
    """A statement about two images (side by side): "true"/"false" with the probability the
    direct computation gives on the left then the right image's regions."""
    from im2text.families.visualbert import side_by_side

    path = str(tiny("visualbert-nlvr2"))
    model = im2text.load(path)
    assert model.family.key == "visualbert-nlvr2"
    left, right = random_images(2, seed=11, size=(90, 70))
    pair = side_by_side(left, right)
    assert pair.size == (180, 70)
    answer = model.ask(pair, "the left image has more dogs than the right one")
    detector = im2text.load(str(Path(path) / "detector")).family
    feats = torch.cat([detector.regions([left])[0]["features"],
                       detector.regions([right])[0]["features"]])[None]  # fmt: skip
    tok = transformers.AutoTokenizer.from_pretrained(path)
    plain = transformers.VisualBertForVisualReasoning.from_pretrained(path).eval()
    enc = tok(["the left image has more dogs than the right one"], return_tensors="pt")
    with torch.no_grad():
        probs = plain(**enc, visual_embeds=feats,
                      visual_attention_mask=torch.ones(1, 72, dtype=torch.long),
                      visual_token_type_ids=torch.ones(1, 72, dtype=torch.long),
                      ).logits.softmax(-1)[0]  # fmt: skip
    assert answer.text == ["false", "true"][int(probs.argmax())]
    assert answer.confidence == pytest.approx(float(probs.max()), abs=1e-5)


def test_fine_tuning_extracts_each_images_regions_once(tiny, tmp_path: Path, monkeypatch) -> None:
    """`im2text train --task vqa` with the detector frozen: every image's regions come from the
    detector once, then from the on-disk cache (later epochs, and a second run)."""
    from im2text.testing.data import shape_dataset
    from im2text.train import Example, TrainConfig, fit

    monkeypatch.setenv("IM2TEXT_CACHE", str(tmp_path / "cache"))
    model = im2text.load(str(tiny("visualbert-vqa")))
    images = [im for im, _ in shape_dataset(6, seed=2)]
    data = [Example(im, a, prompt="what color is it?") for im in images for a in ("red", "blue")]
    calls: list[int] = []
    real = model.family.detector.regions

    def counted(ims, count=None):  # type: ignore[no-untyped-def]
        calls.append(len(ims))
        return real(ims, count)

    monkeypatch.setattr(model.family.detector, "regions", counted)
    detector_before = {n: p.clone() for n, p in model.family.detector.model.named_parameters()}
    cfg = TrainConfig(model="tiny", output=str(tmp_path / "run"), task="vqa", max_steps=6,
                      batch_size=4, lr=1e-3, eval_every=100)  # fmt: skip
    fit(model, data, data[:2], cfg)
    assert sum(calls) == len(images)  # 6 steps x 4 examples over 3 epochs: 6 detector calls
    assert len(list((tmp_path / "cache").rglob("*.pt"))) == len(images)
    for n, p in model.family.detector.model.named_parameters():
        assert torch.equal(p, detector_before[n])  # the detector stays as it was
    again = im2text.load(str(tmp_path / "run" / "last"))
    assert (tmp_path / "run" / "last" / "detector" / "config.yaml").is_file()
    assert again.ask(images[0], "what color is it?").ok


def test_unnamed_answers_come_from_an_answer_file(tiny, tmp_path: Path) -> None:
    """A config without answer names (the Hub's visualbert-vqa): refused with where to get
    them, then read from trainval_label2ans.json beside the weights."""
    import json
    import shutil

    path = tmp_path / "unnamed"
    shutil.copytree(tiny("visualbert-vqa"), path)
    config = json.loads((path / "config.json").read_text())
    names = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
    config["id2label"] = {str(i): f"LABEL_{i}" for i in range(len(names))}
    config["label2id"] = {f"LABEL_{i}": i for i in range(len(names))}
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(im2text.CheckpointError, match=r"trainval_label2ans\.json"):
        im2text.load(str(path))
    (path / "trainval_label2ans.json").write_text(json.dumps(names))
    model = im2text.load(str(path))
    assert model.family.answers == names
    assert model.ask(random_images(1)[0], "is it red?").text in names


def test_vqa_training_targets_are_the_annotators_soft_scores(vqa: im2text.Model, tmp_path) -> None:
    """The trainer hands VisualBERT every annotator's answer: each one in the label set
    weighted 0.3 per vote (at most 1), normalised; answers outside the label set drop out; a
    question none of whose answers is a label is refused."""
    from im2text.testing.data import shape_dataset
    from im2text.train import Example, TrainConfig
    from im2text.train.loop import _Prefetcher

    ims = [im for im, _ in shape_dataset(2, seed=3)]
    split = ("red",) * 2 + ("blue",) + ("not a label",) * 7  # red 0.6, blue 0.3 -> 2/3, 1/3
    agreed = ("blue",) * 10  # 1.0 -> 1
    data = [Example(ims[0], "not a label", "what color?", split),
            Example(ims[1], "blue", "what color?", agreed)]  # fmt: skip
    cfg = TrainConfig(model="tiny", output=str(tmp_path), task="vqa", batch_size=2)
    inputs, _ = _Prefetcher(data, vqa.family, cfg, 0, 0).next()
    ids = vqa.family.answer_ids
    want_split = torch.zeros(len(ids))
    want_split[ids["red"]], want_split[ids["blue"]] = 2 / 3, 1 / 3
    want_agreed = torch.zeros(len(ids))
    want_agreed[ids["blue"]] = 1.0
    rows = sorted(inputs["labels"].tolist(), key=lambda r: r[ids["red"]])
    assert torch.allclose(torch.tensor(rows), torch.stack([want_agreed, want_split]))
    # One target (the caption-style path) is its one-hot distribution.
    one = vqa.family.training_inputs(ims[:1], ["what color?"], ["green"])["labels"][0]
    assert one[ids["green"]] == 1 and one.sum() == 1
    with pytest.raises(ValueError, match="not in the model's label set"):
        vqa.family.scored_training_inputs(ims[:1], ["q"], [("purple", "mauve")])
    # The loss is transformers' KL divergence of the softmax from that distribution.
    out = vqa.family.model(**inputs)
    kl = torch.nn.functional.kl_div(out.logits.log_softmax(-1), inputs["labels"],
                                    reduction="batchmean")  # fmt: skip
    assert out.loss.item() == pytest.approx(kl.item(), rel=1e-5)


@pytest.fixture(scope="module")
def pre(tiny, tmp_path_factory) -> im2text.Model:
    return _load_with_own_cache(tiny("visualbert-pre"), tmp_path_factory)


def _direct_pre(path: str, image, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """transformers' VisualBertForPreTraining on the detector's regions: (P(match) per text
    from the sentence-image head, label 0; pooled [CLS] per text)."""
    detector = im2text.load(str(Path(path) / "detector"))
    feats = detector.family.regions([image])[0]["features"][None].expand(len(texts), -1, -1)
    tok = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.VisualBertForPreTraining.from_pretrained(path).eval()
    enc = tok(texts, padding=True, return_tensors="pt")
    visual = {"visual_embeds": feats,
              "visual_attention_mask": torch.ones(feats.shape[:2], dtype=torch.long),
              "visual_token_type_ids": torch.ones(feats.shape[:2], dtype=torch.long)}  # fmt: skip
    with torch.no_grad():
        out = model(**enc, **visual)
        pooled = model.visual_bert(**enc, **visual).pooler_output
    return out.seq_relationship_logits.softmax(-1)[:, 0], pooled


def test_pretrained_visualbert_matches_texts_like_its_sentence_image_head(pre, tiny) -> None:
    """`match` on a pre-trained checkpoint: itm = the head's P(text belongs with the image),
    equal to transformers on the same regions; batched == one image at a time; a bad image
    fails alone."""
    assert pre.family.key == "visualbert-pre" and pre.tasks == ("match",)
    images = random_images(3, seed=5)
    texts = ["a red circle", "two dogs on a beach", "a blue square"]
    got = pre.match(images, texts, batch_size=3)
    for im, m in zip(images, got, strict=True):
        want, _ = _direct_pre(str(tiny("visualbert-pre")), im, texts)
        assert m.itm == pytest.approx(want.tolist(), abs=1e-5)
        odds = torch.tensor(m.itm).logit()
        assert m.similarity == pytest.approx(odds.tolist(), abs=1e-4)
        assert m.probability == pytest.approx(odds.softmax(-1).tolist(), abs=1e-4)
        one = pre.match(im, texts)
        assert one.itm == pytest.approx(m.itm, abs=1e-6)
    mixed = pre.match([images[0], b"not an image"], texts)
    assert mixed[0].ok and mixed[0].itm == pytest.approx(got[0].itm, abs=1e-6)
    assert not mixed[1].ok and mixed[1].error


def test_pretrained_visualbert_gives_joint_image_text_embeddings(pre, tiny, vqa) -> None:
    """`embed(images, texts=...)`: image i read with text i, the pooled [CLS] normalised, equal
    to transformers; one text serves every image; mismatched counts, models that embed apart
    and unreadable images are refused clearly."""
    images = random_images(3, seed=6)
    texts = ["a red circle", "two dogs", "a blue square"]
    got = pre.embed(images, texts=texts)
    assert got.shape == (3, 32) and got.dtype.name == "float32"
    for i, im in enumerate(images):
        _, pooled = _direct_pre(str(tiny("visualbert-pre")), im, [texts[i]])
        want = torch.nn.functional.normalize(pooled, dim=-1)[0]
        assert got[i] == pytest.approx(want.numpy(), abs=1e-5)
    same = pre.embed(images[:2], texts="a red circle")
    assert same[0] == pytest.approx(pre.embed(images[0], texts=["a red circle"])[0], abs=1e-5)
    assert abs(same[0] - same[1]).max() > 1e-3  # different images differ
    with pytest.raises(ValueError, match="no images given"):
        pre.embed([], texts="a dog")
    with pytest.raises(ValueError, match="one per image: 3 images, 2 texts"):
        pre.embed(images, texts=texts[:2])
    with pytest.raises(ValueError, match="embeds images and texts apart"):
        vqa.embed(images, texts=texts)
    with pytest.raises(im2text.ImageError, match="bytes #1"):
        pre.embed([images[0], b"not an image"], texts="a dog")


def test_vqa_v2_checkpoints_without_answer_names_get_the_shipped_vocabulary(tiny, tmp_path):
    """A 3,129-label VQA head whose config names no answers (as uclanlp/visualbert-vqa) answers
    with VQA v2's vocabulary shipped in the package: Pythia's answers_vqa.txt, in its order
    (the MD5 recorded for that file), which VisualBERT's classifiers were trained on."""
    import hashlib
    import json
    import shutil

    from im2text.families.visualbert import VQA_V2_ANSWERS

    shipped = json.loads(VQA_V2_ANSWERS.read_text())
    assert len(shipped) == 3129 and len(set(shipped)) == 3129
    as_text = ("\n".join(shipped) + "\n").encode()
    assert hashlib.md5(as_text).hexdigest() == "971cad957919ff2cf1f5f1c70bef4d90"
    assert shipped[0] == "<unk>" and {"yes", "no", "2", "red", "frisbee"} <= set(shipped)
    src = tiny("visualbert-vqa")
    out = tmp_path / "vqa-3129"
    config = transformers.VisualBertConfig.from_pretrained(src)
    config.id2label = {i: f"LABEL_{i}" for i in range(3129)}
    config.label2id = {v: k for k, v in config.id2label.items()}
    transformers.VisualBertForQuestionAnswering(config).eval().save_pretrained(out)
    transformers.AutoTokenizer.from_pretrained(src).save_pretrained(out)
    shutil.copytree(src / "detector", out / "detector")
    model = im2text.load(str(out))
    assert model.family.answers == shipped
    assert model.ask(random_images(1)[0], "is it red?").text in shipped


def test_checkpoints_without_a_tokenizer_read_berts(tiny, tmp_path, monkeypatch) -> None:
    """uclanlp's Hub folders hold only config + weights: the family loads BERT's uncased
    tokenizer for them (here a local copy stands in for the Hub's), and says so when it
    cannot be had."""
    import shutil

    from im2text.families.visualbert import VisualBert

    bare = tmp_path / "bare"
    shutil.copytree(tiny("visualbert-vqa"), bare)
    for f in bare.iterdir():
        if f.name.startswith(("tokenizer", "vocab", "special_tokens")):
            f.unlink()
    with pytest.raises(im2text.CheckpointError, match="bert-base-uncased"):
        im2text.load(str(bare))  # offline, and BERT's tokenizer is not cached here
    bert = tmp_path / "bert"
    transformers.AutoTokenizer.from_pretrained(tiny("visualbert-vqa")).save_pretrained(bert)
    monkeypatch.setattr(VisualBert, "fallback_tokenizer", str(bert))
    model = im2text.load(str(bare))
    image = random_images(1, seed=9)[0]
    want = im2text.load(str(tiny("visualbert-vqa"))).ask(image, "is it red?")
    got = model.ask(image, "is it red?")
    assert got.text == want.text and got.confidence == pytest.approx(want.confidence, abs=1e-6)
