"""Training machinery on tiny checkpoints: resume equals an uninterrupted run, LoRA touches only
adapters and helps, bad data never starts a run, compose, CapFilt and eval produce real outputs."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import im2text
from im2text.cli import main
from im2text.testing import shape_dataset
from im2text.train import Example, NonFiniteLossError, TrainConfig, fit


def _shape_folder(root: Path, n: int, seed: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "metadata.jsonl", "w") as f:
        for i, (img, cap) in enumerate(shape_dataset(n, seed=seed, image_size=32)):
            img.save(root / f"{i:04d}.png")
            f.write(json.dumps({"file_name": f"{i:04d}.png", "text": cap}) + "\n")
    return root


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def test_resume_after_kill_equals_uninterrupted_run(tiny, tmp_path: Path) -> None:
    data = _shape_folder(tmp_path / "data", 48, seed=0)
    base = ["train", "-m", str(tiny("blip")), "--train", str(data), "--max-steps", "30",
            "--eval-every", "3", "--batch-size", "4", "--lr", "1e-3", "--seed", "3"]  # fmt: skip
    assert main([*base, "-o", str(tmp_path / "straight")]) == 0

    run = tmp_path / "killed"
    cmd = [sys.executable, "-m", "im2text", *base, "-o", str(run)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (run / "last" / "trainer_state.pt").exists():
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    state = torch.load(run / "last" / "trainer_state.pt", weights_only=False)["state"]
    assert 3 <= state["step"] < 30, "the kill must land after a checkpoint, before the end"
    assert main([*base, "-o", str(run), "--resume"]) == 0
    a, b = _weights(tmp_path / "straight" / "last"), _weights(run / "last")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_run_folder_has_checkpoints_logs_and_curves(tiny, tmp_path: Path) -> None:
    data = _shape_folder(tmp_path / "data", 24, seed=1)
    out = tmp_path / "run"
    assert main(["train", "-m", str(tiny("git")), "--train", str(data), "-o", str(out),
                 "--max-steps", "4", "--eval-every", "2", "--batch-size", "4"]) == 0  # fmt: skip
    for name in ("best", "last"):
        assert (out / name / "model.safetensors").exists()
        assert (out / name / "train_config.json").exists()
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["kind"] == "train"] == [1, 2, 3, 4]
    evals = [r for r in rows if r["kind"] == "eval"]
    assert len(evals) == 2 and all("cider" in r and "exact" in r for r in evals)
    assert (out / "metrics.csv").read_text().startswith("step,kind,name,value")
    from PIL import Image

    assert Image.open(out / "curves.png").size == (900, 420)
    # A normal checkpoint: im2text and plain transformers both load it.
    assert im2text.load(str(out / "best")).caption(data / "0000.png", max_new_tokens=3).ok
    import transformers

    transformers.GitForCausalLM.from_pretrained(out / "best")


def test_lora_on_blip2_changes_only_adapters_and_lowers_val_loss(tiny, tmp_path: Path) -> None:
    pytest.importorskip("peft")
    model = im2text.load(str(tiny("blip2-opt")))
    pairs = shape_dataset(40, seed=5, image_size=32)
    train = [Example(im, cap) for im, cap in pairs[:32]]
    val = [Example(im, cap) for im, cap in pairs[32:]]
    fam = model.family
    before = {k: v.clone() for k, v in fam.model.state_dict().items()}

    def val_loss() -> float:
        fam.model.eval()
        inputs = fam.training_inputs([e.image for e in val], [None] * 8, [e.target for e in val])
        with torch.no_grad():
            return float(fam.model(**inputs).loss)

    loss0 = val_loss()
    cfg = TrainConfig(model="x", output=str(tmp_path / "lora"), max_steps=25, batch_size=8,
                      lr=3e-3, lora=True, eval_every=1000, warmup=0.0)  # fmt: skip
    fit(model, train, val, cfg)
    loss1 = val_loss()
    assert loss1 < loss0 - 0.05, (loss0, loss1)
    after = fam.model.state_dict()
    lora_keys = [k for k in after if "lora_" in k]
    assert lora_keys
    base = {
        a.replace("base_model.model.", "").replace(".base_layer", ""): a
        for a in after
        if "lora_" not in a
    }
    assert set(base) == set(before)
    for k, v in before.items():
        assert torch.equal(after[base[k]], v), f"{k} changed"
    assert (tmp_path / "lora" / "last" / "adapter_config.json").exists()


def test_training_never_starts_on_empty_data(tiny, tmp_path: Path) -> None:
    model = im2text.load(str(tiny("blip")))
    with pytest.raises(ValueError, match="empty"):
        fit(model, [], [], TrainConfig(model="x", output=str(tmp_path / "o"), max_steps=2))
    data = _shape_folder(tmp_path / "one", 1, seed=0)
    code = main(["train", "-m", str(tiny("blip")), "--train", str(data), "-o",
                 str(tmp_path / "o2"), "--max-steps", "2"])  # fmt: skip
    assert code == 2  # a one-image dataset has nothing left to train on after the val split
    assert not (tmp_path / "o2" / "last").exists()


def test_non_finite_loss_stops_with_a_clear_message(tiny, tmp_path: Path) -> None:
    model = im2text.load(str(tiny("blip")))
    with torch.no_grad():  # poison the weights: every loss becomes NaN
        next(model.family.model.parameters()).fill_(float("nan"))
    data = [Example(im, c) for im, c in shape_dataset(8, seed=0, image_size=32)]
    cfg = TrainConfig(model="x", output=str(tmp_path / "nan"), max_steps=10, batch_size=4)
    with pytest.raises(NonFiniteLossError, match="NaN/inf 3 steps in a row"):
        fit(model, data, data, cfg)
    assert not (tmp_path / "nan" / "last").exists()  # no poisoned checkpoint written


def test_compose_vit_and_gpt2_then_train_and_caption(tmp_path: Path) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel, ViTConfig, ViTImageProcessor, ViTModel

    from im2text.testing.checkpoints import _bpe_tokenizer

    enc_dir, dec_dir = tmp_path / "vit", tmp_path / "gpt2"
    vit = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1,
                    num_attention_heads=2, intermediate_size=64)  # fmt: skip
    ViTModel(vit).save_pretrained(enc_dir)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(enc_dir)
    tok = _bpe_tokenizer("GPT2Tokenizer")
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=1, n_head=2, n_positions=64,
                               bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
                    ).save_pretrained(dec_dir)  # fmt: skip
    tok.save_pretrained(dec_dir)
    out = tmp_path / "composed"
    assert main(["compose", "--encoder", str(enc_dir), "--decoder", str(dec_dir),
                 "--out", str(out)]) == 0  # fmt: skip
    model = im2text.load(str(out))
    assert model.family.key == "vision-encoder-decoder"
    data = [Example(im, c) for im, c in shape_dataset(16, seed=0, image_size=32)]
    cfg = TrainConfig(model=str(out), output=str(tmp_path / "run"), max_steps=5, batch_size=8,
                      lr=1e-3, eval_every=5)  # fmt: skip
    fit(model, data, data[:4], cfg)
    assert im2text.load(str(tmp_path / "run" / "best")).caption(data[0].image).ok


def test_capfilt_writes_a_dataset_train_reads(tiny, tmp_path: Path) -> None:
    from im2text.data import load_dataset

    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i, (im, _) in enumerate(shape_dataset(4, seed=0)):
        im.save(imgs / f"{i}.png")
    out = tmp_path / "capfilt"
    args = ["capfilt", str(imgs), "--captioner", str(tiny("blip")), "--filter",
            str(tiny("clip")), "--out", str(out), "--threshold", "-1", "--no-progress"]  # fmt: skip
    assert main(args) == 0
    records = [json.loads(x) for x in (out / "metadata.jsonl").read_text().splitlines()]
    assert len(records) == 4
    clip = im2text.load(str(tiny("clip")))
    for r in records:
        assert 1 <= len(r["captions"]) <= 5 and len(r["scores"]) == len(r["captions"])
        sims = clip.match(r["file_name"], r["captions"]).similarity
        assert r["scores"] == pytest.approx(list(sims), abs=1e-5)
    assert len(load_dataset(str(out))) == 4  # `im2text train` reads it
    # A threshold nothing passes: images go to rejected.jsonl, never into the dataset.
    out2 = tmp_path / "strict"
    assert main([*args[:-5], "--out", str(out2), "--threshold", "2", "--no-progress"]) == 0
    assert not (out2 / "metadata.jsonl").read_text().strip()
    assert len((out2 / "rejected.jsonl").read_text().splitlines()) == 4


def test_eval_two_models_side_by_side(tiny, tmp_path: Path) -> None:
    data = _shape_folder(tmp_path / "data", 6, seed=2)
    out = tmp_path / "report"
    code = main(["eval", "-m", str(tiny("blip")), "-m", str(tiny("git")), "--data", str(data),
                 "-o", str(out), "--clip-model", str(tiny("clip")), "--max-new-tokens", "4",
                 "--no-progress"])  # fmt: skip
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert set(report["models"]) == {"blip", "git"}
    for m in report["models"].values():
        for k in ("Bleu_4", "ROUGE_L", "CIDEr", "CLIPScore", "RefCLIPScore"):
            assert isinstance(m["scores"][k], float) and math.isfinite(m["scores"][k])
    assert len(report["items"]) == 6
    html = (out / "report.html").read_text()
    assert "blip" in html and "git" in html and "data:image/jpeg;base64" in html


def test_blip2_fine_tuning_keeps_the_llm_and_vision_frozen(tiny, tmp_path: Path) -> None:
    model = im2text.load(str(tiny("blip2-t5")))
    before = {k: v.clone() for k, v in model.family.model.state_dict().items()}
    data = [Example(im, c) for im, c in shape_dataset(8, seed=0, image_size=32)]
    cfg = TrainConfig(model="x", output=str(tmp_path / "b2"), max_steps=3, batch_size=4,
                      lr=1e-2, eval_every=1000, warmup=0.0)  # fmt: skip
    fit(model, data, data[:2], cfg)
    after = model.family.model.state_dict()
    changed = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert changed and changed <= {"qformer", "query_tokens", "language_projection"}
    assert "qformer" in changed


def test_bf16_autocast_and_grad_accumulation_train(tiny, tmp_path: Path) -> None:
    model = im2text.load(str(tiny("blip")))
    data = [Example(im, c) for im, c in shape_dataset(16, seed=0, image_size=32)]
    losses: list[float] = []
    cfg = TrainConfig(model="x", output=str(tmp_path / "bf16"), max_steps=4, batch_size=4,
                      grad_accum=2, precision="bf16", lr=1e-3, eval_every=1000)  # fmt: skip
    summary = fit(model, data, data[:2], cfg, on_step=lambda step, loss: losses.append(loss))
    assert summary["steps"] == 4 and len(losses) == 4
    assert all(math.isfinite(x) for x in losses)


@pytest.mark.parametrize(
    "kind",
    ["llava", "idefics3", "paligemma", "llava-onevision", "gemma3", "qwen2.5-vl", "qwen3-vl"],
)
def test_vlms_train_on_the_answer_only(kind: str, tiny, tmp_path: Path) -> None:
    """Chat VLMs and PaliGemma: the loss covers the answer (and the EOS that closes it), never
    the image tokens, the instruction or the template; the image encoder stays frozen; LoRA
    goes on the LLM only; and a few steps on 16 pairs drive the loss down."""
    from im2text.testing.data import shape_dataset
    from im2text.train import Example, TrainConfig, fit

    model = im2text.load(str(tiny(kind)))
    family = model.family
    family.training_objectives = ("lm",)
    images = [im for im, _ in shape_dataset(2, seed=0)]
    answers = ["a red ring", "red"]
    inputs = family.training_inputs(images, [None, "what colour is it?"], answers)
    tok = family.tokenizer
    eos = family.eos_token_ids()
    for row, labels, answer in zip(inputs["input_ids"], inputs["labels"], answers, strict=True):
        kept = row[labels != -100].tolist()
        assert tok.decode(kept, skip_special_tokens=True).strip() == answer
        assert eos & set(kept)  # the model learns to stop
    assert family.lora_targets()  # the LLM's, none of the image encoder's
    assert not any(f".{family.vision_module}." in f".{t}" for t in family.lora_targets())
    data = [Example(im, c) for im, c in shape_dataset(16, seed=1)]
    losses: list[float] = []
    cfg = TrainConfig(model="tiny", output=str(tmp_path / "run"), max_steps=40, batch_size=8,
                      lr=3e-3, eval_every=40, warmup=0.0)  # fmt: skip
    fit(model, data, data[:4], cfg, on_step=lambda step, loss: losses.append(loss))
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
    frozen = {n for n, p in family.model.named_parameters() if not p.requires_grad}
    assert frozen and all(f".{family.vision_module}." in f".{n}" for n in frozen)
    assert im2text.load(str(tmp_path / "run" / "last")).caption(images[0], max_new_tokens=3).ok


def test_vlm_lora_by_default_above_a_size_trains_the_connector_too(tiny, tmp_path: Path) -> None:
    """LoRA is the default for chat VLMs above their size threshold (recorded in the run's
    config); the adapters and the connector learn, the LLM's and tower's weights do not."""
    from im2text.testing.data import shape_dataset
    from im2text.train import Example, TrainConfig, fit

    data = [Example(im, c) for im, c in shape_dataset(8, seed=1)]
    small = im2text.load(str(tiny("llava")))
    cfg = TrainConfig(model="tiny", output=str(tmp_path / "full"), max_steps=2, batch_size=4,
                      lr=1e-3, eval_every=100)  # fmt: skip
    fit(small, data, data[:2], cfg)
    assert (
        json.loads((tmp_path / "full" / "last" / "train_config.json").read_text())["lora"] is False
    )

    model = im2text.load(str(tiny("llava")))
    model.family.lora_by_default_above = 1_000  # as if it were a 7B model: the tiny one is larger
    before = {n: p.detach().clone() for n, p in model.family.model.named_parameters()}
    cfg = TrainConfig(model="tiny", output=str(tmp_path / "lora"), max_steps=3, batch_size=4,
                      lr=1e-2, eval_every=100)  # fmt: skip
    fit(model, data, data[:2], cfg)
    assert (
        json.loads((tmp_path / "lora" / "last" / "train_config.json").read_text())["lora"] is True
    )
    net = model.family.model
    trained = {n for n, p in net.named_parameters() if p.requires_grad}
    assert any("lora_" in n for n in trained)
    assert any("multi_modal_projector" in n for n in trained)  # the connector, in full
    assert not any("vision_tower" in n and "lora_" not in n for n in trained)
    after = dict(net.named_parameters())
    lm_head = next(n for n in after if n.endswith("lm_head.weight"))
    assert torch.equal(after[lm_head], before["lm_head.weight"])  # the LLM itself unchanged


@pytest.mark.parametrize("kind", ["florence2", "got-ocr2"])
def test_task_token_and_ocr_vlms_fine_tune(kind: str, tiny, tmp_path: Path) -> None:
    """Florence-2 (target after its task prompt, as `<s> text </s>` labels) and GOT-OCR 2.0
    (the text after its OCR turn): loss only on the target, the image encoder frozen, a few
    steps drive the loss down, and the run loads back."""
    from im2text.testing.data import shape_dataset
    from im2text.train import Example, TrainConfig, fit

    model = im2text.load(str(tiny(kind)))
    family = model.family
    images = [im for im, _ in shape_dataset(2, seed=0)]
    inputs = family.training_inputs(images, [None, None], ["a red ring", "red"])
    for labels, answer in zip(inputs["labels"], ["a red ring", "red"], strict=True):
        kept = labels[labels != -100].tolist()
        assert family.tokenizer.decode(kept, skip_special_tokens=True).strip() == answer
    data = [Example(im, c) for im, c in shape_dataset(16, seed=1)]
    losses: list[float] = []
    cfg = TrainConfig(model="tiny", output=str(tmp_path / "run"), max_steps=40, batch_size=8,
                      lr=3e-3, eval_every=40, warmup=0.0)  # fmt: skip
    fit(model, data, data[:4], cfg, on_step=lambda step, loss: losses.append(loss))
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
    frozen = {n for n, p in family.model.named_parameters() if not p.requires_grad}
    assert frozen and all("vision_tower" in n for n in frozen)
    again = im2text.load(str(tmp_path / "run" / "last"))
    assert again.family.key == family.key
