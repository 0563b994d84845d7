"""Captioning throughput: im2text (exact, each backend fp32 and int8) vs the baselines a user
would reach for, same model, same images, same run.

A full-size BLIP-base architecture with random weights (the FLOPs of the real one; the Hub is not
needed) captions JPEG files with exactly `--tokens` new tokens each (min = max), greedy. Every
row decodes the JPEGs itself. The FLOP-bound limit is this model's FLOPs per image over the
2048^3 fp32 matmul rate measured in the same run.

    python benchmarks/caption_throughput.py --images 16 --repeats 3

Prints a markdown table: median images/s, ratio to transformers' batched pipeline, share of the
FLOP limit, and agreement of each backend's captions with the exact path's.
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


def blip_gflop_per_image(config, tokens: int) -> float:  # type: ignore[no-untyped-def]
    """Multiply-adds x 2 of one caption: the ViT, then `tokens` decoder steps (self-attention,
    cross-attention over the image tokens, FFN, LM head) and the cross keys/values once."""
    v, t = config.vision_config, config.text_config
    n = (v.image_size // v.patch_size) ** 2 + 1
    d, ff = v.hidden_size, v.intermediate_size
    vision = v.num_hidden_layers * (2 * n * (4 * d * d + 2 * d * ff) + 4 * n * n * d)
    dt, fft = t.hidden_size, t.intermediate_size
    cross_kv = t.num_hidden_layers * 2 * n * 2 * d * dt
    step = (
        t.num_hidden_layers * 2 * (6 * dt * dt + 2 * dt * fft + 2 * n * dt) + 2 * dt * t.vocab_size
    )
    return (vision + cross_kv + tokens * step) / 1e9


def logit_cosines(
    models: dict[str, im2text.Model], paths: list[str], captions: list[str]
) -> dict[str, float]:
    """Mean cosine similarity of each model's next-token logits to the exact path's, teacher
    forcing the exact path's captions (every position of every caption)."""
    first = next(iter(models.values())).family
    images = [Image.open(p).convert("RGB") for p in paths]
    enc = first.processor(images=images, text=captions, padding=True, return_tensors="pt")
    ids = enc.input_ids.clone()
    ids[:, 0] = first.model.config.text_config.bos_token_id
    logits = {}
    with torch.inference_mode():
        for name, m in models.items():
            out = m.family.model(pixel_values=enc.pixel_values, input_ids=ids,
                                 attention_mask=enc.attention_mask)  # fmt: skip
            logits[name] = out.logits.float()
    ref = logits[next(iter(models))]
    keep = enc.attention_mask.bool()
    return {k: torch.nn.functional.cosine_similarity(v[keep], ref[keep], dim=-1).mean().item()
            for k, v in logits.items()}  # fmt: skip


def matmul_gflops() -> float:
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * 2048**3 / statistics.median(times) / 1e9


def image_files(folder: Path, n: int) -> list[str]:
    folder.mkdir(parents=True)
    paths = []
    for i, img in enumerate(distinct_images(n)):
        paths.append(str(folder / f"{i:03d}.jpg"))
        img.save(paths[-1], quality=90)
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--backends", default="onnxruntime,openvino,torch",
                    help="backends to run in fp32 and int8 (comma-separated)")  # fmt: skip
    args = ap.parse_args()

    gen = dict(max_new_tokens=args.tokens, min_new_tokens=args.tokens, num_beams=1)
    bs = args.batch_size
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("IM2TEXT_CACHE", str(Path(tmp) / "cache"))
        paths = image_files(Path(tmp) / "images", args.images)
        ckpt = build_blip_base(Path(tmp))
        from transformers import AutoProcessor, BlipForConditionalGeneration, pipeline

        model = BlipForConditionalGeneration.from_pretrained(ckpt).eval()
        processor = AutoProcessor.from_pretrained(ckpt)
        pipe = pipeline("image-text-to-text", model=str(ckpt))
        ours: dict[str, im2text.Model] = {
            "im2text exact (torch fp32)": im2text.load(str(ckpt), batch_size=bs)
        }
        setup: dict[str, float] = {}
        for backend in [b for b in args.backends.split(",") if b]:
            for int8 in (False, True):
                if backend == "torch" and not int8:
                    continue  # that is the exact row
                label = f"im2text {backend} {'int8' if int8 else 'fp32'}"
                t0 = time.perf_counter()  # export (+ quantize) from scratch: the cache is new
                ours[label] = im2text.load(str(ckpt), batch_size=bs, backend=backend,
                                           quantize="int8" if int8 else None)  # fmt: skip
                setup[label] = time.perf_counter() - t0

        def batch1_generate() -> list[str]:
            out = []
            for p in paths:  # the usual script: open, preprocess, generate, one image at a time
                inputs = processor(images=Image.open(p).convert("RGB"), return_tensors="pt")
                with torch.no_grad():
                    ids = model.generate(**inputs, **gen)
                out.append(processor.decode(ids[0], skip_special_tokens=True))
            return out

        def pipeline_batched() -> list[str]:
            res = pipe(images=paths, text=[""] * len(paths), batch_size=bs, **gen)
            return [r[0]["generated_text"] if isinstance(r, list) else r["generated_text"]
                    for r in res]  # fmt: skip

        def run_ours(m: im2text.Model):  # type: ignore[no-untyped-def]
            def run() -> list[str]:
                caps = m.caption(paths, **gen)
                assert all(c.ok for c in caps), [c.error for c in caps if not c.ok]
                return [c.text for c in caps]

            return run

        methods = {
            "transformers batch-1 generate": batch1_generate,
            f"transformers pipeline (batch {bs})": pipeline_batched,
            **{k: run_ours(m) for k, m in ours.items()},
        }
        times: dict[str, list[float]] = {k: [] for k in methods}
        texts: dict[str, list[str]] = {}
        peaks = []
        for m in ours.values():
            m.caption(paths[:bs], **gen)  # warm-up (lazy inits, allocator)
        for r in range(args.repeats):
            peaks.append(matmul_gflops())
            for name, fn in methods.items():  # interleaved, so drift hits all alike
                t0 = time.perf_counter()
                texts[name] = fn()
                times[name].append(time.perf_counter() - t0)
                print(f"  repeat {r + 1}: {name}: {times[name][-1]:.1f} s", flush=True)
        peaks.append(matmul_gflops())
        cosines = logit_cosines(ours, paths[:bs], texts["im2text exact (torch fp32)"][:bs])

    rate = {k: args.images / statistics.median(v) for k, v in times.items()}
    peak = statistics.median(peaks)
    gflop = blip_gflop_per_image(model.config, args.tokens)
    limit = peak / gflop
    base = rate[f"transformers pipeline (batch {bs})"]
    exact = texts["im2text exact (torch fp32)"]
    print(
        f"\nBLIP-base architecture (random weights), {args.images} JPEGs (distinct crops of the "
        f"sample photos, ≤480 px), {args.tokens} new tokens each, greedy, batch {bs}; median of "
        f"{args.repeats}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs. 2048³ fp32 matmul "
        f"{peak:.0f} GFLOP/s (median over the run); {gflop:.0f} GFLOP per image -> FLOP-bound "
        f"limit {limit:.2f} images/s\n"
    )
    print("| method | images/s | vs pipeline batch 8 | share of FLOP limit | "
          "same caption as exact | logit cosine to exact | setup s |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for k, v in rate.items():
        same = sum(a.strip() == b.strip() for a, b in zip(texts[k], exact)) / len(exact)
        cos = f"{cosines[k]:.4f}" if k in cosines else "-"
        print(f"| {k} | {v:.3f} | {v / base:.2f}x | {v / limit:.0%} | {same:.0%} | {cos} | "
              f"{setup.get(k, 0):.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
