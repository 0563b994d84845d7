"""The learning recipes: tiny from-scratch models trained through `im2text train` (the CLI) and
judged on held-out data through `im2text.load` + `caption` / `ask`.

The learning tests run them at one seed with thresholds below the worst seed measured;
`benchmarks/learning_seeds.py` runs them over several seeds and prints the spread
(docs/PERFORMANCE.md). Everything is built here, so a run is the same in every process: same
checkpoint bytes, same tokenizer, same data order (`--seed`), steps not minutes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from im2text.testing.checkpoints import build_checkpoint
from im2text.testing.data import easy_vqa_jsonl, shape_dataset, shape_folder

# BLIP hidden 96, 2 layers, 4 heads, 64 px images in 16 px patches.
MODEL: dict[str, Any] = dict(hidden=96, layers=2, heads=4, image_size=64, patch_size=16)
# AdamW at 3e-3, 5% warm-up, cosine decay, batch 32, 1500 steps (~85 s on a quiet 2-core CPU).
CAPTION_TRAIN = [
    "--max-steps",
    "1500",
    "--batch-size",
    "32",
    "--lr",
    "3e-3",
    "--warmup",
    "0.05",
    "--eval-every",
    "100000",
]
# VQA needs finer patches (8 px: where each shape is) and a gentler LR (3e-3 diverges).
VQA_MODEL: dict[str, Any] = {**MODEL, "patch_size": 8}
VQA_TRAIN = [  # 3000 steps: at 2000 the open questions were still half learnt (0.39 at seed 0)
    "--max-steps",
    "3000",
    "--batch-size",
    "32",
    "--lr",
    "1e-3",
    "--warmup",
    "0.05",
    "--eval-every",
    "100000",
]


def shapes_captioning(
    work: str | Path, *, seed: int = 0, extra: list[str] | None = None, int8: bool = False
) -> dict[str, float]:
    """Train a tiny BLIP captioner on 12k shape images; exact match + CIDEr on 200 new ones.

    `int8`: also the trained model on the int8 fast path (onnxruntime graphs + torch int8
    linears), compared with float32 on 1,000 new images (the 200, then 800 more: on 200 a
    4-image swing is already 0.02): `exact_int8`, float32's `exact_1000` on the same images, and
    `agreement_int8` (same caption as float32)."""
    import im2text
    from im2text.evaluate.captions import evaluate_captions

    work = Path(work)
    train = shape_folder(work / "train", 12000, seed=1)
    val = shape_folder(work / "val", 100, seed=2)
    ckpt = build_checkpoint("blip", work / "init", **MODEL)
    out = work / "run"
    _train(ckpt, train, val, out, seed, [*CAPTION_TRAIN, *(extra or [])])
    reported = 200  # exact match and CIDEr are on the first 200
    held_out = shape_dataset(reported, seed=3)  # new images, never seen in training
    if int8:
        held_out += shape_dataset(800, seed=4)
    refs = [ref for _, ref in held_out]

    def exact(texts: list[str]) -> float:
        return sum(t == r for t, r in zip(texts, refs)) / len(texts)

    result: dict[str, float] = {}
    for label, load in _precisions(int8):
        caps = im2text.load(str(out / "best"), **load).caption(
            [im for im, _ in held_out], num_beams=1, max_new_tokens=8
        )
        texts = [c.text for c in caps]
        if not label:
            fp32 = texts
            result["exact"] = exact(texts[:reported])
            scores = evaluate_captions(
                dict(enumerate(texts[:reported])),
                {i: [ref] for i, ref in enumerate(refs[:reported])},
            ).scores
            result["cider"] = float(scores["CIDEr"] or 0.0)
            if int8:
                result["exact_1000"] = exact(texts)
        else:  # how often int8 says exactly what float32 says
            result[f"exact{label}"] = exact(texts)
            result[f"agreement{label}"] = sum(a == b for a, b in zip(texts, fp32)) / len(texts)
    return result


def _precisions(int8: bool) -> list[tuple[str, dict[str, Any]]]:
    """(result-key suffix, im2text.load keywords): float32 torch, then the int8 backends."""
    runs: list[tuple[str, dict[str, Any]]] = [("", {})]
    if int8:
        runs.append(("_int8", {"backend": "onnxruntime", "quantize": "int8"}))
    return runs


def easy_vqa(
    work: str | Path, *, seed: int = 0, extra: list[str] | None = None, int8: bool = False
) -> dict[str, float]:
    """Train a tiny BLIP VQA model on easy-vqa; accuracy on 1,000 held-out test questions.

    `extra`: more `im2text train` flags (later ones win), to try other recipes. `int8`: also
    `accuracy_int8` and `agreement_int8` on the int8 fast path.
    """
    import im2text

    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    train = easy_vqa_jsonl(work / "train.jsonl", "train", 0, 10**9)
    val = easy_vqa_jsonl(work / "val.jsonl", "test", 0, 300)
    held_out = easy_vqa_jsonl(work / "test.jsonl", "test", 3000, 4000)
    ckpt = build_checkpoint("blip-vqa", work / "init", **VQA_MODEL)
    out = work / "run"
    _train(ckpt, train, val, out, seed, ["--task", "vqa", *VQA_TRAIN, *(extra or [])])
    rows = [json.loads(line) for line in held_out.read_text().splitlines()]
    result: dict[str, float] = {}
    for label, load in _precisions(int8):
        answers = im2text.load(str(out / "best"), **load).ask(
            [r["file_name"] for r in rows], [r["question"] for r in rows], max_new_tokens=6
        )
        right = [a.text == r["answers"][0] for a, r in zip(answers, rows)]
        result[f"accuracy{label}"] = sum(right) / len(rows)
        if not label:
            fp32 = [a.text for a in answers]
            open_q = [r["answers"][0] not in ("yes", "no") for r in rows]
            result["open_accuracy"] = sum(r for r, o in zip(right, open_q) if o) / max(
                1, sum(open_q)
            )
            result["confidence_in_range"] = float(all(0.0 <= a.confidence <= 1.0 for a in answers))
        else:
            result[f"agreement{label}"] = sum(a.text == b for a, b in zip(answers, fp32)) / len(
                rows
            )
    return result


def _train(ckpt: Path, train: Path, val: Path, out: Path, seed: int, flags: list[str]) -> None:
    """`im2text train` through the CLI, as a user runs it."""
    from im2text.cli import main

    args = ["train", "-m", str(ckpt), "--train", str(train), "--val", str(val), "-o", str(out)]
    code = main([*args, "--seed", str(seed), *flags])
    if code != 0:
        raise RuntimeError(f"im2text train exited with {code}")


def pretrain_caption_lm(out: str | Path, *, steps: int = 1500, seed: int = 0) -> Path:
    """A tiny OPT "pretrained" on the shape captions, for composing BLIP-2 around (what a real
    LLM brings to BLIP-2: it writes fluent captions, and it uses what comes before its BOS).

    Half of the sequences carry the caption before BOS too, so the LM learns to copy from its
    context: with captions alone it learns the caption distribution but ignores anything placed
    before BOS, and the Q-Former's soft prompts then cannot steer it (measured: a frozen
    captions-only LM left every stage-2 caption with one colour). A plain torch loop: this is the
    LLM's own pre-training, not an im2text run. 1500 steps: ~25 s; it then copies 20/20 held
    context captions exactly."""
    import torch
    from transformers import OPTConfig, OPTForCausalLM

    from im2text.testing.checkpoints import _blip2_lm
    from im2text.testing.data import CORPUS

    tok, cfg = _blip2_lm("opt")
    torch.manual_seed(seed)
    lm = OPTForCausalLM(OPTConfig(**{k: v for k, v in cfg.items() if k != "model_type"}))
    opt = torch.optim.AdamW(lm.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(seed)
    encoded = [tok(" " + c, add_special_tokens=False).input_ids for c in CORPUS]
    limit = cfg["max_position_embeddings"] - 4
    lm.train()
    for _ in range(steps):
        rows = []
        for i in torch.randint(len(encoded), (32,), generator=gen).tolist():
            body = [tok.bos_token_id, *encoded[i], tok.eos_token_id]
            copy = torch.rand((), generator=gen) < 0.5 and len(body) + len(encoded[i]) < limit
            context = encoded[i] if copy else []
            rows.append((context + body, len(context)))
        width = max(len(r) for r, _ in rows)
        ids = torch.full((len(rows), width), tok.pad_token_id)
        mask, labels = torch.zeros_like(ids), torch.full_like(ids, -100)
        for j, (row, start) in enumerate(rows):
            ids[j, : len(row)] = torch.tensor(row)
            mask[j, : len(row)] = 1
            labels[j, start + 1 : len(row)] = torch.tensor(row[start + 1 :])  # after BOS only
        lm(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad()
    out = Path(out)
    lm.eval().save_pretrained(out)
    tok.save_pretrained(out)
    return out


# A LLaVA-style VLM (CLIP tower, projector, Llama) at BLIP's learning size, from scratch.
VLM_MODEL: dict[str, Any] = dict(hidden=96, layers=2, heads=4, image_size=64, patch_size=16,
                                 init_range=0.02)  # fmt: skip
VLM_TRAIN = ["--batch-size", "32", "--lr", "3e-3", "--warmup", "0.05", "--eval-every", "100000"]


def _reworded(folder: Path) -> Path:
    """The same images, captions in another form ("red circle, small"): what LoRA adapts to."""
    rows = [json.loads(x) for x in (folder / "metadata.jsonl").read_text().splitlines()]
    with open(folder / "metadata.jsonl", "w") as f:
        for r in rows:
            _, size, color, shape = r["text"].split(" ")
            f.write(json.dumps({**r, "text": f"{color} {shape}, {size}"}) + "\n")
    return folder


def shapes_chat_vlm(
    work: str | Path,
    *,
    seed: int = 0,
    extra: list[str] | None = None,
    steps: int = 1000,
    lora_steps: int = 400,
) -> dict[str, float]:
    """A tiny LLaVA trained from scratch through `im2text train` (chat template, loss on the
    answer only, image encoder trained too: it starts random), held-out exact match on 200 new
    images; then LoRA (`--lora`: adapters on the LLM, the projector in full) teaches the
    trained model a new caption form, judged the same way. `extra`: more flags for the first
    run. About 2 minutes on a quiet 2-core CPU."""
    import im2text

    work = Path(work)
    train = shape_folder(work / "train", 8000, seed=1)
    val = shape_folder(work / "val", 100, seed=2)
    ckpt = build_checkpoint("llava", work / "init", **VLM_MODEL)
    out = work / "run"
    _train(ckpt, train, val, out, seed,
           ["--max-steps", str(steps), "--no-freeze-vision", "--no-lora", *VLM_TRAIN,
            *(extra or [])])  # fmt: skip
    held_out = shape_dataset(200, seed=3)
    images = [im for im, _ in held_out]
    kw = dict(num_beams=1, max_new_tokens=8)
    model = im2text.load(str(out / "best"))
    texts = [c.text for c in model.caption(images, **kw)]
    result = {"exact": sum(t == ref for t, (_, ref) in zip(texts, held_out)) / len(held_out)}
    # LoRA: the same images, reworded captions.
    _reworded(train)
    _reworded(val)
    adapted = work / "lora"
    _train(out / "best", train, val, adapted, seed,
           ["--max-steps", str(lora_steps), "--lora", "--lora-merge", *VLM_TRAIN])  # fmt: skip
    model = im2text.load(str(adapted / "best"))
    texts = [c.text for c in model.caption(images, **kw)]
    refs = [f"{c} {s}, {z}" for _, ref in held_out for _, z, c, s in [ref.split(" ")]]
    result["exact_lora"] = sum(t == r for t, r in zip(texts, refs)) / len(refs)
    result["old_form_after_lora"] = sum(t == ref for t, (_, ref) in zip(texts, held_out)) / len(
        held_out
    )
    return result


# VisualBERT over the tiny detector's regions (256-d, 36 per image), from scratch.
VISUALBERT_MODEL: dict[str, Any] = dict(hidden=64, layers=2, heads=4, init_range=0.02)
VISUALBERT_TRAIN = ["--batch-size", "32", "--lr", "1e-3", "--warmup", "0.05",
                    "--eval-every", "100000"]  # fmt: skip


def _open_questions(path: Path) -> Path:
    """Keep the questions whose answer is not yes/no (what shape, what colour)."""
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    kept = [r for r in rows if r["answers"][0] not in ("yes", "no")]
    path.write_text("".join(json.dumps(r) + "\n" for r in kept))
    return path


def easy_vqa_visualbert(
    work: str | Path,
    *,
    seed: int = 0,
    extra: list[str] | None = None,
    questions: int = 12000,
    steps: int = 3000,
) -> dict[str, float]:
    """VisualBERT (BERT from scratch) fine-tuned through `im2text train --task vqa` on easy-vqa's
    open questions (shape, colour) among its first `questions` training questions, reading the
    frozen tiny detector's regions (extracted once per image into the region cache, then reused
    every epoch); accuracy on the open questions among 1,500 held-out test questions, beside the
    majority answer's share and what the question alone can say.

    Open questions only: with the yes/no three quarters of easy-vqa mixed in, 3000 steps learnt
    the question prior alone (every colour question answered "black"); those need the image.
    1500 steps reached 0.35 (question prior 0.33), 3000 reach 0.57."""
    import os

    import im2text

    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    os.environ["IM2TEXT_CACHE"] = str(work / "cache")
    train = _open_questions(easy_vqa_jsonl(work / "train.jsonl", "train", 0, questions))
    val = _open_questions(easy_vqa_jsonl(work / "val.jsonl", "test", 0, 600))
    held_out = _open_questions(easy_vqa_jsonl(work / "test.jsonl", "test", 3000, 4500))
    ckpt = build_checkpoint("visualbert-vqa", work / "init", **VISUALBERT_MODEL)
    out = work / "run"
    flags = ["--task", "vqa", "--max-steps", str(steps), *VISUALBERT_TRAIN, *(extra or [])]
    _train(ckpt, train, val, out, seed, flags)
    rows = [json.loads(line) for line in held_out.read_text().splitlines()]
    model = im2text.load(str(out / "best"))
    answers = model.ask([r["file_name"] for r in rows], [r["question"] for r in rows])
    truth = [r["answers"][0] for r in rows]
    right = [a.text == t for a, t in zip(answers, truth)]
    # The best a model reading only the question can do: per question, its commonest answer.
    by_q: dict[str, list[str]] = {}
    for r in rows:
        by_q.setdefault(r["question"], []).append(r["answers"][0])
    prior = sum(max(v.count(a) for a in set(v)) for v in by_q.values()) / len(rows)
    files = list((work / "cache").rglob("*.pt"))
    return {
        "accuracy": sum(right) / len(rows),
        "majority": max(truth.count(a) for a in set(truth)) / len(rows),
        "question_prior": prior,
        "cached_images": float(len(files)),
        "confidence_in_range": float(all(0.0 <= a.confidence <= 1.0 for a in answers)),
    }
