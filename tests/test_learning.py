"""Learning runs: tiny from-scratch models must really learn, judged on held-out data.

These are the end-to-end proofs of the decode paths: `im2text train` (the CLI, on a folder +
metadata.jsonl or a VQA JSONL), then `im2text.load(best)` and `caption` / `ask` on images and
questions the model never saw. Thresholds sit below what the runs reach on this 2-core CPU
(see docs/PERFORMANCE.md for measured values) so noise does not fail them, but far above chance.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import im2text
from im2text.cli import main
from im2text.evaluate.captions import evaluate_captions
from im2text.testing import build_checkpoint, shape_dataset

pytestmark = pytest.mark.slow

# The recipe: BLIP hidden 96, 2 layers, 4 heads, 64 px images in 16 px patches, AdamW at 3e-3
# with 5% warm-up and cosine decay, batch 32, 1500 steps (~85 s on a quiet 2-core CPU). Steps,
# not minutes, so a busy machine trains slower but learns exactly the same.
MODEL = dict(hidden=96, layers=2, heads=4, image_size=64, patch_size=16)
TRAIN = ["--max-steps", "1500", "--batch-size", "32", "--lr", "3e-3", "--warmup", "0.05",
         "--eval-every", "100000"]  # fmt: skip


def _folder(root: Path, n: int, seed: int) -> Path:
    root.mkdir(parents=True)
    with open(root / "metadata.jsonl", "w") as f:
        for i, (img, cap) in enumerate(shape_dataset(n, seed=seed)):
            img.save(root / f"{i:05d}.png")
            f.write(json.dumps({"file_name": f"{i:05d}.png", "text": cap}) + "\n")
    return root


def test_blip_learns_shape_captions(tmp_path: Path) -> None:
    train = _folder(tmp_path / "train", 12000, seed=1)
    val = _folder(tmp_path / "val", 100, seed=2)
    ckpt = build_checkpoint("blip", tmp_path / "init", **MODEL)
    out = tmp_path / "run"
    assert main(["train", "-m", str(ckpt), "--train", str(train), "--val", str(val),
                 "-o", str(out), *TRAIN]) == 0  # fmt: skip

    model = im2text.load(str(out / "best"))
    held_out = shape_dataset(200, seed=3)  # new images, never seen in training
    caps = model.caption([im for im, _ in held_out], num_beams=1, max_new_tokens=8)
    exact = sum(c.text == ref for c, (_, ref) in zip(caps, held_out)) / len(held_out)
    scores = evaluate_captions(
        {i: c.text for i, c in enumerate(caps)}, {i: [ref] for i, (_, ref) in enumerate(held_out)}
    ).scores
    print(f"held-out exact match {exact:.3f}, CIDEr {scores['CIDEr']:.3f}")
    # Measured: exact 0.81, CIDEr 8.66 (1500 steps; errors are small-shape confusions).
    assert exact >= 0.70  # chance is 1/96 combinations
    assert scores["CIDEr"] >= 3.0


def _easy_vqa_jsonl(path: Path, split: str, start: int, stop: int) -> Path:
    import easy_vqa

    questions, answers, image_ids = getattr(easy_vqa, f"get_{split}_questions")()
    paths = getattr(easy_vqa, f"get_{split}_image_paths")()
    with open(path, "w") as f:
        for i in range(start, min(stop, len(questions))):
            row = {"file_name": paths[image_ids[i]], "question": questions[i],
                   "answers": [answers[i]], "question_id": f"{split}-{i}"}  # fmt: skip
            f.write(json.dumps(row) + "\n")
    return path


def test_blip_vqa_learns_easy_vqa(tmp_path: Path) -> None:
    pytest.importorskip("easy_vqa")
    train = _easy_vqa_jsonl(tmp_path / "train.jsonl", "train", 0, 10**9)
    val = _easy_vqa_jsonl(tmp_path / "val.jsonl", "test", 0, 300)
    held_out = _easy_vqa_jsonl(tmp_path / "test.jsonl", "test", 3000, 4000)
    # VQA needs finer patches (8 px: where each shape is) and a gentler LR (1e-3; 3e-3 diverges).
    ckpt = build_checkpoint("blip-vqa", tmp_path / "init", **{**MODEL, "patch_size": 8})
    out = tmp_path / "run"
    steps = ["--max-steps", "2000", "--batch-size", "32", "--lr", "1e-3", "--warmup", "0.05",
             "--eval-every", "100000"]  # fmt: skip
    assert main(["train", "--task", "vqa", "-m", str(ckpt), "--train", str(train),
                 "--val", str(val), "-o", str(out), *steps]) == 0  # fmt: skip

    model = im2text.load(str(out / "best"))
    rows = [json.loads(line) for line in held_out.read_text().splitlines()]
    answers = model.ask([r["file_name"] for r in rows], [r["question"] for r in rows],
                        max_new_tokens=4)  # fmt: skip
    acc = sum(a.text == r["answers"][0] for a, r in zip(answers, rows)) / len(rows)
    yes_no = [r["answers"][0] in ("yes", "no") for r in rows]
    open_acc = sum(
        a.text == r["answers"][0] for a, r, yn in zip(answers, rows, yes_no) if not yn
    ) / max(1, yes_no.count(False))
    print(f"held-out accuracy {acc:.3f} (open questions {open_acc:.3f})")
    # Measured: 0.79 overall, 0.62 on open questions (2000 steps). At 1500 steps two runs gave
    # 0.49 and 0.39 on open questions, so the bars leave room for that spread.
    assert acc >= 0.70  # always answering "no" scores ~0.3
    assert open_acc >= 0.40  # chance on open questions ~0.2 (1 of 3 shapes, 1 of 8 colours)
    assert all(0.0 <= a.confidence <= 1.0 for a in answers)
