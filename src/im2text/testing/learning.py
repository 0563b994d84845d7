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
    work: str | Path, *, seed: int = 0, extra: list[str] | None = None
) -> dict[str, float]:
    """Train a tiny BLIP captioner on 12k shape images; exact match + CIDEr on 200 new ones."""
    import im2text
    from im2text.evaluate.captions import evaluate_captions

    work = Path(work)
    train = shape_folder(work / "train", 12000, seed=1)
    val = shape_folder(work / "val", 100, seed=2)
    ckpt = build_checkpoint("blip", work / "init", **MODEL)
    out = work / "run"
    _train(ckpt, train, val, out, seed, [*CAPTION_TRAIN, *(extra or [])])
    model = im2text.load(str(out / "best"))
    held_out = shape_dataset(200, seed=3)  # new images, never seen in training
    caps = model.caption([im for im, _ in held_out], num_beams=1, max_new_tokens=8)
    exact = sum(c.text == ref for c, (_, ref) in zip(caps, held_out)) / len(held_out)
    scores = evaluate_captions(
        {i: c.text for i, c in enumerate(caps)}, {i: [ref] for i, (_, ref) in enumerate(held_out)}
    ).scores
    return {"exact": exact, "cider": float(scores["CIDEr"] or 0.0)}


def easy_vqa(
    work: str | Path, *, seed: int = 0, extra: list[str] | None = None
) -> dict[str, float]:
    """Train a tiny BLIP VQA model on easy-vqa; accuracy on 1,000 held-out test questions.

    `extra`: more `im2text train` flags (later ones win), to try other recipes.
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
    model = im2text.load(str(out / "best"))
    rows = [json.loads(line) for line in held_out.read_text().splitlines()]
    answers = model.ask(
        [r["file_name"] for r in rows], [r["question"] for r in rows], max_new_tokens=6
    )
    right = [a.text == r["answers"][0] for a, r in zip(answers, rows)]
    open_q = [r["answers"][0] not in ("yes", "no") for r in rows]
    return {
        "accuracy": sum(right) / len(rows),
        "open_accuracy": sum(r for r, o in zip(right, open_q) if o) / max(1, sum(open_q)),
        "confidence_in_range": float(all(0.0 <= a.confidence <= 1.0 for a in answers)),
    }


def _train(ckpt: Path, train: Path, val: Path, out: Path, seed: int, flags: list[str]) -> None:
    """`im2text train` through the CLI, as a user runs it."""
    from im2text.cli import main

    args = ["train", "-m", str(ckpt), "--train", str(train), "--val", str(val), "-o", str(out)]
    code = main([*args, "--seed", str(seed), *flags])
    if code != 0:
        raise RuntimeError(f"im2text train exited with {code}")
