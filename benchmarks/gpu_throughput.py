"""GPU captioning throughput, end to end from JPEG files: BLIP-base and BLIP-2 OPT-2.7B (random
weights at the real sizes), im2text at batch 32 / 128 / 256 against transformers' batched
`generate` on the same images, bf16 (fp16 where bf16 is missing), SDPA where transformers has it.

    bash benchmarks/gpu.sh            # on a machine with a CUDA GPU; prints a markdown table
    python benchmarks/gpu_throughput.py --tiny --device cpu   # the same code path, tiny models

Each im2text row decodes the JPEGs in its loader threads (pinned memory, prefetching the next
batches while the GPU runs); the baseline decodes and preprocesses in the loop, as a user's
script does.
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
from PIL import Image

import im2text


def build_models(root: Path, tiny: bool) -> dict[str, Path]:
    from im2text.testing import build_checkpoint

    if tiny:
        return {"blip (tiny)": build_checkpoint("blip", root),
                "blip2-opt (tiny)": build_checkpoint("blip2-opt", root)}  # fmt: skip
    blip = build_checkpoint(
        "blip", root, hidden=768, layers=12, heads=12, image_size=384, patch_size=16,
        vocab_size=30524, max_positions=512,
    )  # fmt: skip
    return {"BLIP-base": blip, "BLIP-2 OPT-2.7B": build_blip2_opt27(root / "blip2-opt-2.7b")}


def build_blip2_opt27(out: Path) -> Path:
    """BLIP-2 OPT-2.7B sizes (EVA ViT-g/14 at 224 px, BERT-base Q-Former with 32 queries, OPT
    2.7B), random weights in bf16, with the tiny checkpoint's tokenizer and processor. The LM
    head keeps OPT's 50,272 rows: FLOPs as the real model; ids past the tiny vocabulary decode
    to nothing, which changes no timing."""
    if (out / "config.json").is_file():
        return out
    from transformers import Blip2Config, Blip2ForConditionalGeneration, Blip2Processor

    from im2text.testing import build_checkpoint

    tiny = build_checkpoint("blip2-opt", out.parent)
    processor = Blip2Processor.from_pretrained(tiny)
    tok = processor.tokenizer
    config = Blip2Config(
        vision_config=dict(hidden_size=1408, intermediate_size=6144, num_hidden_layers=39,
                           num_attention_heads=16, image_size=224, patch_size=14,
                           qkv_bias=True),
        qformer_config=dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                            intermediate_size=3072, encoder_hidden_size=1408,
                            cross_attention_frequency=2, vocab_size=30522),
        text_config=dict(model_type="opt", vocab_size=50272, hidden_size=2560,
                         word_embed_proj_dim=2560, ffn_dim=10240, num_hidden_layers=32,
                         num_attention_heads=32, max_position_embeddings=2048,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id),
        num_query_tokens=32,
        image_token_index=tok.convert_tokens_to_ids("<image>"),
    )  # fmt: skip
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = Blip2ForConditionalGeneration(config).to(torch.bfloat16).eval()
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def image_files(folder: Path, n: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    base = distinct_images(min(n, 64))
    for i in range(n):  # n distinct files (re-encoded crops), decoded from disk every run
        img = base[i % len(base)]
        if i >= len(base):
            img = img.crop((i % 7, i % 5, img.width - i % 3, img.height - i % 11))
        paths.append(str(folder / f"{i:05d}.jpg"))
        img.save(paths[-1], quality=90)
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", default="32,128,256")
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--tokens", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="tiny models (checks the script itself)")
    ap.add_argument("--no-baseline", action="store_true")
    args = ap.parse_args()
    dev = torch.device(args.device)
    dtype = "auto"  # bf16 on GPUs that have it, else fp16; fp32 on CPU
    gen = dict(max_new_tokens=args.tokens, min_new_tokens=args.tokens, num_beams=1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = image_files(Path(tmp) / "images", args.images)
        for name, ckpt in build_models(Path(tmp), args.tiny).items():
            for bs in [int(b) for b in args.batches.split(",")]:
                model = im2text.load(str(ckpt), device=args.device, dtype=dtype, batch_size=bs,
                                     num_workers=min(8, os.cpu_count() or 2))  # fmt: skip
                model.caption(paths[:bs], **gen)  # warm-up: kernels, allocator
                times = []
                for _ in range(args.repeats):
                    if dev.type == "cuda":
                        torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    caps = model.caption(paths, **gen)
                    if dev.type == "cuda":
                        torch.cuda.synchronize()
                    times.append(time.perf_counter() - t0)
                    assert all(c.ok for c in caps)
                ours = args.images / statistics.median(times)
                base = None
                if not args.no_baseline:
                    try:
                        base = baseline(model, paths, bs, gen, dev)
                    except Exception as e:  # the table still comes out; the row says why
                        print(f"  baseline failed for {name}: {type(e).__name__}: {e}")
                mem = torch.cuda.max_memory_allocated() / 2**30 if dev.type == "cuda" else 0.0
                rows.append((name, bs, ours, base, mem))
                print(f"  {name} batch {bs}: im2text {ours:.1f} img/s, transformers "
                      f"{base or 0:.1f} img/s", flush=True)  # fmt: skip
                del model
                if dev.type == "cuda":
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats()
    gpu = torch.cuda.get_device_name() if dev.type == "cuda" else "CPU"
    print(f"\n{gpu}, torch {torch.__version__}, {args.images} JPEGs, {args.tokens} new tokens "
          f"each, greedy, dtype auto; median of {args.repeats}\n")  # fmt: skip
    print(
        "| model | batch | im2text images/s | transformers generate images/s | ratio | peak GiB |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, bs, ours, base, mem in rows:
        ratio = f"{ours / base:.2f}x" if base else "-"
        print(f"| {name} | {bs} | {ours:.1f} | {base or 0:.1f} | {ratio} | {mem:.1f} |")


def baseline(
    model: im2text.Model, paths: list[str], bs: int, gen: dict, dev: torch.device
) -> float:
    """What a user writes: the same weights through transformers, batched generate."""
    hf, processor = model.family.model, model.family.processor
    t0 = time.perf_counter()
    for i in range(0, len(paths), bs):
        images = [Image.open(p).convert("RGB") for p in paths[i : i + bs]]
        inputs = processor(images=images, return_tensors="pt").to(dev)
        inputs["pixel_values"] = inputs["pixel_values"].to(model.family.dtype)
        with torch.inference_mode():
            hf.generate(**inputs, **gen)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return len(paths) / (time.perf_counter() - t0)


if __name__ == "__main__":
    main()
