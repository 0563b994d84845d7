"""Captioning throughput: im2text vs the baselines a user would reach for, same model, same run.

A full-size BLIP-base architecture with random weights (the FLOPs of the real one; the Hub is not
needed) captions the sample photos with exactly `--tokens` new tokens each (min = max), greedy.

    python benchmarks/caption_throughput.py --images 16 --repeats 3

Prints a markdown table of median images/s and the ratio to each baseline.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch
from _images import distinct_images
from PIL import Image

import im2text

REPO = Path(__file__).resolve().parents[1]


def build_blip_base(root: Path) -> Path:
    """BLIP-base sizes (ViT-B/16 at 384 px, 12-layer BERT-base decoder), random weights."""
    from im2text.testing import build_checkpoint

    return build_checkpoint(
        "blip", root, hidden=768, layers=12, heads=12, image_size=384, patch_size=16,
        vocab_size=30524, max_positions=512,
    )  # fmt: skip


def image_files(folder: Path, n: int) -> list[str]:
    folder.mkdir(parents=True)
    paths = []
    for i, img in enumerate(distinct_images(n)):
        paths.append(str(folder / f"{i:03d}.jpg"))
        img.save(paths[-1], quality=90)
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args()

    gen = dict(max_new_tokens=args.tokens, min_new_tokens=args.tokens, num_beams=1)

    with tempfile.TemporaryDirectory() as tmp:
        paths = image_files(Path(tmp) / "images", args.images)
        ckpt = build_blip_base(Path(tmp))
        from transformers import AutoProcessor, BlipForConditionalGeneration, pipeline

        model = BlipForConditionalGeneration.from_pretrained(ckpt).eval()
        processor = AutoProcessor.from_pretrained(ckpt)
        pipe = pipeline("image-text-to-text", model=str(ckpt))
        ours = im2text.load(str(ckpt), batch_size=args.batch_size)

        def batch1_generate() -> None:
            for p in paths:  # the usual script: open, preprocess, generate, one image at a time
                inputs = processor(images=Image.open(p).convert("RGB"), return_tensors="pt")
                with torch.no_grad():
                    model.generate(**inputs, **gen)

        def pipeline_default() -> None:
            for p in paths:
                pipe(images=p, text="", **gen)

        def pipeline_batched() -> None:
            pipe(images=paths, text=[""] * len(paths), batch_size=args.batch_size, **gen)

        def im2text_batched() -> None:
            caps = ours.caption(paths, **gen)
            assert all(c.ok for c in caps)

        methods = {
            "transformers batch-1 generate": batch1_generate,
            "transformers pipeline (batch 1)": pipeline_default,
            f"transformers pipeline (batch {args.batch_size})": pipeline_batched,
            f"im2text (batch {args.batch_size})": im2text_batched,
        }
        times: dict[str, list[float]] = {k: [] for k in methods}
        im2text_batched()  # warm-up (lazy inits, allocator)
        for r in range(args.repeats):
            for name, fn in methods.items():  # interleaved, so drift hits all alike
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
                print(f"  repeat {r + 1}: {name}: {times[name][-1]:.1f} s", flush=True)

    rate = {k: args.images / statistics.median(v) for k, v in times.items()}
    best = rate[f"im2text (batch {args.batch_size})"]
    print(
        f"\nBLIP-base architecture (random weights), {args.images} images "
        f"(distinct crops of the sample photos, ≤480 px), {args.tokens} new tokens each, greedy; "
        f"median of {args.repeats}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs\n"
    )
    print("| method | images/s | im2text speed-up |")
    print("| --- | ---: | ---: |")
    for k, v in rate.items():
        print(f"| {k} | {v:.3f} | {best / v:.2f}x |")


if __name__ == "__main__":
    main()
