"""Where a BLIP-base caption's time goes on this machine: preprocessing, the vision encoder, the
text decoder (generate minus the encoder), against the machine's matmul rate measured in the
same run — the profile the exact-path speed work starts from. `--compile` adds the vision tower
under `torch.compile` (first call, i.e. compile time, reported apart).

    python benchmarks/caption_profile.py --images 8 --tokens 20
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch
from _images import distinct_images
from caption_throughput import build_blip_base


def best_of(fn, n: int = 3) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def matmul_gflops() -> float:
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    return 2 * 2048**3 / best_of(lambda: a @ b, 5) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=20)
    ap.add_argument("--compile", action="store_true")
    args = ap.parse_args()
    from transformers import AutoProcessor, BlipForConditionalGeneration

    ckpt = build_blip_base(Path(tempfile.mkdtemp(prefix="im2t-prof-")))
    model = BlipForConditionalGeneration.from_pretrained(ckpt).eval()
    processor = AutoProcessor.from_pretrained(ckpt)
    images = distinct_images(args.images)
    gen = dict(max_new_tokens=args.tokens, min_new_tokens=args.tokens)
    peak = matmul_gflops()
    inputs = processor(images=images, return_tensors="pt")
    pre = best_of(lambda: processor(images=images, return_tensors="pt"))
    with torch.inference_mode():
        model.vision_model(inputs.pixel_values)  # warm-up
        vision = best_of(lambda: model.vision_model(inputs.pixel_values))
        total = best_of(lambda: model.generate(**inputs, **gen), 2)
    # ViT-B/16 at 384 px: 577 tokens x 12 layers; 2 FLOPs a multiply-add.
    cfg = model.config.vision_config
    tokens = (cfg.image_size // cfg.patch_size) ** 2 + 1
    d, ff = cfg.hidden_size, cfg.intermediate_size
    per_layer = 2 * tokens * (4 * d * d + 2 * d * ff) + 2 * 2 * tokens * tokens * d
    vision_gflop = cfg.num_hidden_layers * per_layer / 1e9
    n = args.images
    print(f"\nBLIP-base (random weights), {n} images, {args.tokens} tokens each, batch {n}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; 2048^3 fp32 matmul "
          f"{peak:.0f} GFLOP/s\n")  # fmt: skip
    print("| part | s / image | share | note |")
    print("|---|---:|---:|---|")
    rows = [
        ("preprocess (BlipProcessor)", pre / n, ""),
        ("vision encoder", vision / n,
         f"{vision_gflop:.0f} GFLOP/image: {vision_gflop * n / vision:.0f} GFLOP/s, "
         f"{vision_gflop * n / vision / peak:.0%} of the matmul rate"),
        ("text decoder (generate - encoder)", (total - vision) / n, f"{args.tokens} tokens"),
    ]  # fmt: skip
    whole = pre / n + total / n
    for name, secs, note in rows:
        print(f"| {name} | {secs:.3f} | {secs / whole:.0%} | {note} |")
    print(f"| **whole caption** | {whole:.3f} | 100% | {1 / whole:.2f} images/s |")
    if args.compile:
        compiled = torch.compile(model.vision_model)
        with torch.inference_mode():
            t0 = time.perf_counter()
            ref = model.vision_model(inputs.pixel_values).last_hidden_state
            first = compiled(inputs.pixel_values).last_hidden_state
            first_s = time.perf_counter() - t0
            fast = best_of(lambda: compiled(inputs.pixel_values))
        diff = (ref - first).abs().max().item()
        print(f"| vision encoder, torch.compile | {fast / n:.3f} | | {vision / fast:.2f}x; first "
              f"call (compile) {first_s:.0f} s; max abs diff {diff:.1e} |")  # fmt: skip


if __name__ == "__main__":
    main()
