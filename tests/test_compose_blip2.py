"""`im2text compose --blip2`: a BLIP-2 checkpoint from a BLIP-family image encoder, a new
Q-Former (optionally from BERT) and any LLM, that im2text and plain transformers both load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import im2text
from im2text.cli import main
from im2text.testing.checkpoints import _blip2_lm, build_checkpoint
from im2text.testing.data import shape_dataset
from im2text.train import Example, TrainConfig, fit
from im2text.train.objectives import similarity


def _lm(kind: str, out: Path) -> Path:
    """A tiny standalone LLM folder (weights + tokenizer), as a user would point at one."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM

    tok, cfg = _blip2_lm(kind)
    config = AutoConfig.for_model(**cfg)
    loader = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
    torch.manual_seed(0)
    loader.from_config(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _bert(out: Path) -> Path:
    """A tiny BERT folder with its tokenizer, as bert-base-uncased comes."""
    from transformers import BertConfig, BertModel

    from im2text.testing.checkpoints import _bert_tokenizer

    tok = _bert_tokenizer()
    torch.manual_seed(1)
    config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, vocab_size=len(tok))  # fmt: skip
    BertModel(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


@pytest.mark.parametrize("lm", ["opt", "t5"])
def test_compose_blip2_from_parts_loads_everywhere(lm: str, tmp_path: Path) -> None:
    from transformers import Blip2ForConditionalGeneration

    vision = build_checkpoint("blip", tmp_path / "init")
    llm, bert = _lm(lm, tmp_path / lm), _bert(tmp_path / "bert")
    out = tmp_path / "composed"
    args = ["compose", "--blip2", "--vision", str(vision), "--llm", str(llm), "--qformer"]
    assert main([*args, str(bert), "--num-query-tokens", "6", "--out", str(out)]) == 0

    model, info = Blip2ForConditionalGeneration.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert model.config.num_query_tokens == 6
    w, v, b = _weights(out), _weights(vision), _weights(bert)
    # The image encoder and the LLM move unchanged.
    for k, t in v.items():
        if k.startswith("vision_model."):
            assert torch.equal(w[k], t), k
    llm_w = _weights(llm)
    for k, t in llm_w.items():
        key = f"language_model.{k}"
        if key in w and w[key].shape == t.shape:  # the <image> row may be new
            assert torch.equal(w[key], t), k
    # The Q-Former: BERT's self-attention and feed-forward (both branches), new cross-attention.
    q = "qformer.encoder.layer.0."
    assert torch.equal(w[q + "attention.attention.query.weight"],
                       b["encoder.layer.0.attention.self.query.weight"])  # fmt: skip
    for branch in ("intermediate", "intermediate_query"):
        assert torch.equal(
            w[q + f"{branch}.dense.weight"], b["encoder.layer.0.intermediate.dense.weight"]
        )
    assert torch.equal(w["qformer.layernorm.weight"], b["embeddings.LayerNorm.weight"])
    assert q + "crossattention.attention.key.weight" in w
    # Queries start at N(0, 0.02), all different (transformers' own init is zeros).
    assert 0.01 < float(w["query_tokens"].std()) < 0.03
    # im2text runs it like any BLIP-2; the processor knows its query tokens.
    loaded = im2text.load(str(out))
    assert loaded.family.key == "blip2" and loaded.family.processor.num_query_tokens == 6
    images = [im for im, _ in shape_dataset(3, seed=0)]
    assert all(c.ok for c in loaded.caption(images, max_new_tokens=4))


def test_stage_2_trains_the_qformer_and_leaves_vision_and_llm_bitwise(tmp_path: Path) -> None:
    vision = build_checkpoint("blip", tmp_path / "init")
    out = tmp_path / "composed"
    args = ["compose", "--blip2", "--vision", str(vision), "--llm", str(_lm("opt", tmp_path / "o"))]
    args += ["--num-query-tokens", "4", "--qformer-layers", "2", "--qformer-hidden", "32"]
    assert main([*args, "--qformer-heads", "2", "--out", str(out)]) == 0
    data = [Example(im, c) for im, c in shape_dataset(32, seed=0)]
    cfg = TrainConfig(model=str(out), output=str(tmp_path / "run"), max_steps=6, batch_size=8,
                      lr=1e-3, eval_every=6)  # fmt: skip
    fit(im2text.load(str(out)), data, data[:4], cfg)
    before, after = _weights(out), _weights(tmp_path / "run" / "last")
    for k in before:
        if k.startswith(("vision_model.", "language_model.")):
            assert torch.equal(before[k], after[k]), k
    changed = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"qformer", "query_tokens", "language_projection"}


def test_compose_blip2_refuses_a_vision_tower_of_another_layout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clip = build_checkpoint("clip", tmp_path / "init")
    llm = _lm("opt", tmp_path / "opt")
    args = ["compose", "--blip2", "--vision", str(clip)]
    assert main([*args, "--llm", str(llm), "--out", str(tmp_path / "x")]) != 0
    assert "BLIP, BLIP-2 or InstructBLIP" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "y")]) != 0
    assert "needs --vision and --llm" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


# --- stage 1: the Q-Former against the frozen image encoder (ITC, ITM, ITG) ----------------------


@pytest.fixture
def composed(tmp_path: Path) -> Path:
    vision = build_checkpoint("blip", tmp_path / "init")
    llm, bert = _lm("opt", tmp_path / "opt"), _bert(tmp_path / "bert")
    out = tmp_path / "composed"
    args = ["compose", "--blip2", "--vision", str(vision), "--llm", str(llm), "--qformer"]
    assert main([*args, str(bert), "--num-query-tokens", "4", "--out", str(out)]) == 0
    return out


def _stage1_parts(folder: Path):  # type: ignore[no-untyped-def]
    model = im2text.load(str(folder))
    family = model.family
    family.training_objectives = ("itc", "itm", "itg")
    return family, family.objective_parts()


def test_stage_1_masks_itg_is_causal_over_text_and_sees_every_query(composed: Path) -> None:
    from im2text.families.blip2 import qformer_mask

    family, parts = _stage1_parts(composed)
    net, heads = family.model, family.qformer_heads
    q = net.config.num_query_tokens
    images = [im for im, _ in shape_dataset(2, seed=0)]
    image = parts.image(parts.pixel_values(images))
    ids, mask = family.qformer_text(["a big red circle", "a small blue square"])

    def states(image: torch.Tensor, ids: torch.Tensor, kind: str) -> torch.Tensor:
        embeds = heads.embeddings(input_ids=ids, query_embeds=net.query_tokens.expand(2, -1, -1))
        ones = torch.ones(image.shape[:-1], dtype=torch.long)
        return net.qformer(query_embeds=embeds, query_length=q, encoder_hidden_states=image,
                           attention_mask=qformer_mask(kind, q, mask),
                           encoder_attention_mask=ones)[0]  # fmt: skip

    with torch.no_grad():
        base = states(image, ids, "itg")
        j = 3  # perturb text token j: the queries and text tokens before it must not move
        other = ids.clone()
        other[:, j] = (other[:, j] + 5) % len(family.qformer_tokenizer)
        moved = states(image, other, "itg")
        assert torch.allclose(base[:, : q + j], moved[:, : q + j], atol=1e-7)
        assert not torch.allclose(base[:, q + j :], moved[:, q + j :], atol=1e-3)
        # ...and every text token sees the queries, so a new image moves every text token (a
        # little: the new cross-attention starts at BERT's N(0, 0.02) initialisation).
        seen = states(image.flip(0), ids, "itg")
        assert (seen[:, q:] - base[:, q:]).abs().amax(-1).min() > 1e-6
        # ITM is bi-directional: the queries read the text.
        itm, itm_moved = states(image, ids, "itm"), states(image, other, "itm")
        assert not torch.allclose(itm[:, :q], itm_moved[:, :q], atol=1e-3)
    # Padding is never attended; unknown kinds are refused.
    padded = qformer_mask("itm", q, torch.tensor([[1, 1, 0]]))
    assert padded.shape == (1, 1, q + 3, q + 3) and bool((padded[0, 0, :, -1] < -1e30).all())
    with pytest.raises(ValueError, match="unknown Q-Former mask"):
        qformer_mask("itc", q, mask)


def test_stage_1_itc_and_itm_equal_transformers_blip2_image_text_retrieval(
    composed: Path,
) -> None:
    """ITC encodes queries and text apart (neither sees the other) and ITM reads them jointly,
    exactly as transformers' Blip2ForImageTextRetrieval does with the same weights: the
    stage-1 heads file uses its names."""
    from transformers import Blip2Config, Blip2ForImageTextRetrieval

    family, parts = _stage1_parts(composed)
    config = Blip2Config.from_pretrained(composed)
    config.image_token_index = None  # our ids carry no image placeholders
    ref = Blip2ForImageTextRetrieval(config).eval()
    state = {**_weights(composed), **load_file(str(composed / "qformer_heads.safetensors"))}
    result = ref.load_state_dict(state, strict=False)
    assert not result.missing_keys
    images = [im for im, _ in shape_dataset(3, seed=0)]
    texts = ["a big red circle", "a small blue square", "a big green triangle"]
    pv = parts.pixel_values(images)
    ids, mask = family.qformer_text(texts)
    with torch.no_grad():
        image = parts.image(pv)
        ours = similarity(parts.image_features(image), parts.text_features(ids, mask))
        theirs = ref(pixel_values=pv, input_ids=ids, attention_mask=mask).logits_per_image
        assert torch.allclose(ours, theirs, atol=1e-5)
        ours_itm = parts.match_logits(ids, mask, image)
        theirs_itm = ref(pixel_values=pv, input_ids=ids, attention_mask=mask,
                         use_image_text_matching_head=True).logits_per_image  # fmt: skip
        assert torch.allclose(ours_itm, theirs_itm, atol=1e-5)


def test_stage_1_trains_the_qformer_and_its_heads_only(composed: Path, tmp_path: Path) -> None:
    from transformers import Blip2ForConditionalGeneration

    data = [Example(im, c) for im, c in shape_dataset(32, seed=0)]
    run = tmp_path / "run"
    cfg = TrainConfig(model=str(composed), output=str(run), max_steps=6, batch_size=8, lr=1e-3,
                      eval_every=6, stage=1)  # fmt: skip
    summary = fit(im2text.load(str(composed)), data, data[:8], cfg)
    before, after = _weights(composed), _weights(run / "last")
    changed = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"qformer", "query_tokens"}  # vision, LLM and projection bitwise equal
    heads_before = load_file(str(composed / "qformer_heads.safetensors"))
    heads_after = load_file(str(run / "last" / "qformer_heads.safetensors"))
    moved = {k.split(".")[0] for k in heads_before
             if not torch.equal(heads_before[k], heads_after[k])}  # fmt: skip
    assert moved >= {"embeddings", "vision_projection", "text_projection", "itm_head"}
    assert (run / "last" / "qformer_tokenizer" / "tokenizer_config.json").exists()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all({"loss_itc", "loss_itm", "loss_itg"} <= r.keys() for r in rows
               if r["kind"] == "train")  # fmt: skip
    assert summary["best"] is not None and "mean_recall" in rows[-1]  # best by retrieval
    saved = json.loads((run / "last" / "train_config.json").read_text())
    assert saved["stage"] == 1
    # The result loads in plain transformers (nothing missing or unexpected) and in im2text.
    _, info = Blip2ForConditionalGeneration.from_pretrained(run / "last", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert im2text.load(str(run / "last")).caption(data[0].image, max_new_tokens=3).ok
    # Stage 2 from it: the heads and the Q-Former tokenizer travel on with the checkpoint.
    cfg2 = TrainConfig(model=str(run / "last"), output=str(tmp_path / "run2"), max_steps=2,
                       batch_size=8, eval_every=2, stage=2)  # fmt: skip
    fit(im2text.load(str(run / "last")), data, data[:4], cfg2)
    assert torch.equal(
        load_file(str(tmp_path / "run2" / "last" / "qformer_heads.safetensors"))["itm_head.weight"],
        heads_after["itm_head.weight"],
    )


def test_stages_are_checked(composed: Path, tmp_path: Path) -> None:
    data = [Example(im, c) for im, c in shape_dataset(8, seed=0)]

    def run(model: Path, **kw: object) -> None:
        cfg = TrainConfig(model=str(model), output=str(tmp_path / "x"), max_steps=1,
                          overwrite=True, **kw)  # type: ignore[arg-type]  # fmt: skip
        fit(im2text.load(str(model)), data, data[:2], cfg)

    with pytest.raises(ValueError, match="stages \\[1, 2\\]"):
        run(composed, stage=3)
    with pytest.raises(ValueError, match="stage 1 trains itc, itm, itg, not lm"):
        run(composed, stage=1, objectives=["itc", "lm"])
    with pytest.raises(ValueError, match="stage 2 trains lm, not itc"):
        run(composed, objectives=["itc"])
    with pytest.raises(ValueError, match="use --task caption"):
        run(composed, stage=1, task="vqa")
    with pytest.raises(ValueError, match="--lora adapts the language model"):
        run(composed, stage=1, lora=True)
    with pytest.raises(ValueError, match="two-stage recipe; blip models have one"):
        run(build_checkpoint("blip", tmp_path / "b"), stage=1)
    # A BLIP-2 checkpoint without the Q-Former's tokenizer (as on the Hub) says what to do.
    with pytest.raises(ValueError, match="im2text compose --blip2"):
        run(build_checkpoint("blip2-opt", tmp_path / "hub"), stage=1)


def test_compose_blip2_is_reproducible_from_its_seed(tmp_path: Path) -> None:
    vision = build_checkpoint("blip", tmp_path / "init")
    llm = _lm("opt", tmp_path / "opt")
    args = ["compose", "--blip2", "--vision", str(vision), "--llm", str(llm)]
    args += ["--num-query-tokens", "4", "--qformer-layers", "2", "--qformer-hidden", "32"]
    args += ["--qformer-heads", "2"]
    folders = []
    for name, seed in (("a", "0"), ("b", "0"), ("c", "1")):
        assert main([*args, "--seed", seed, "--out", str(tmp_path / name)]) == 0
        folders.append(tmp_path / name)
    for file in ("model.safetensors", "qformer_heads.safetensors"):
        a, b, c = (load_file(str(f / file)) for f in folders)
        assert all(torch.equal(a[k], b[k]) for k in a), file
        assert any(not torch.equal(a[k], c[k]) for k in a), file
