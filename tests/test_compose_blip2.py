"""`im2text compose --blip2`: a BLIP-2 checkpoint from a BLIP-family image encoder, a new
Q-Former (optionally from BERT) and any LLM, that im2text and plain transformers both load."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import im2text
from im2text.cli import main
from im2text.testing.checkpoints import _blip2_lm, build_checkpoint
from im2text.testing.data import shape_dataset
from im2text.train import Example, TrainConfig, fit


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
