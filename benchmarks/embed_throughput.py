"""Image embeddings per second: CLIP ViT-B/32 (random weights at the real size) through im2text
(exact, each backend fp32 / int8) against plain transformers batched `get_image_features`, same
JPEG files, same run.

    python benchmarks/embed_throughput.py --images 128 --repeats 3
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

import numpy as np
import torch
from caption_throughput import image_files
from PIL import Image

import im2text


def build_clip_b32(root: Path) -> Path:
    """CLIP ViT-B/32 sizes (224 px, 12 x 768 vision, 12 x 512 text, 512-d embeddings), random
    weights, with the tiny checkpoint's tokenizer and processor."""
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor

    from im2text.testing import build_checkpoint

    out = root / "clip-vit-b32"
    processor = CLIPProcessor.from_pretrained(build_checkpoint("clip", root))
    config = CLIPConfig(
        vision_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                           num_attention_heads=12, image_size=224, patch_size=32),
        text_config=dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12,
                         num_attention_heads=8, vocab_size=len(processor.tokenizer),
                         max_position_embeddings=77),
        projection_dim=512,
    )  # fmt: skip
    CLIPModel(config).eval().save_pretrained(out)
    processor.image_processor.size = {"shortest_edge": 224}
    processor.image_processor.crop_size = {"height": 224, "width": 224}
    processor.save_pretrained(out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()
    bs = args.batch_size
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("IM2TEXT_CACHE", str(Path(tmp) / "cache"))
        paths = image_files(Path(tmp) / "images", args.images)
        ckpt = build_clip_b32(Path(tmp))
        from transformers import CLIPModel, CLIPProcessor

        hf = CLIPModel.from_pretrained(ckpt).eval()
        processor = CLIPProcessor.from_pretrained(ckpt)

        def plain() -> np.ndarray:
            out = []
            for i in range(0, len(paths), bs):
                images = [Image.open(p).convert("RGB") for p in paths[i : i + bs]]
                pv = processor(images=images, return_tensors="pt").pixel_values
                with torch.inference_mode():
                    f = hf.get_image_features(pixel_values=pv)
                f = getattr(f, "pooler_output", f)
                out.append(torch.nn.functional.normalize(f, dim=-1).numpy())
            return np.concatenate(out)

        methods = {f"transformers get_image_features (batch {bs})": plain}
        variants = [("exact (torch fp32)", {}), ("onnxruntime fp32", {"backend": "onnxruntime"}),
                    ("onnxruntime int8", {"backend": "onnxruntime", "quantize": "int8"}),
                    ("openvino fp32", {"backend": "openvino"}),
                    ("openvino int8", {"backend": "openvino", "quantize": "int8"}),
                    ("torch int8", {"quantize": "int8"})]  # fmt: skip
        for label, kw in variants:
            m = im2text.load(str(ckpt), batch_size=bs, **kw)
            methods[f"im2text {label}"] = lambda m=m: m.embed(paths)
            m.embed(paths[:bs])  # warm-up
        times: dict[str, list[float]] = {k: [] for k in methods}
        vecs: dict[str, np.ndarray] = {}
        for r in range(args.repeats):
            for name, fn in methods.items():
                t0 = time.perf_counter()
                vecs[name] = fn()
                times[name].append(time.perf_counter() - t0)
                print(f"  repeat {r + 1}: {name}: {times[name][-1]:.2f} s", flush=True)
    rate = {k: args.images / statistics.median(v) for k, v in times.items()}
    base_name = next(iter(methods))
    base = rate[base_name]
    print(f"\nCLIP ViT-B/32 (random weights), {args.images} JPEGs, batch {bs}, median of "
          f"{args.repeats}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads\n")  # fmt: skip
    print("| method | images/s | vs transformers | cosine to transformers (mean / min) |")
    print("| --- | ---: | ---: | ---: |")
    for k, v in rate.items():
        cos = (vecs[k] * vecs[base_name]).sum(-1)
        print(f"| {k} | {v:.1f} | {v / base:.2f}x | {cos.mean():.5f} / {cos.min():.5f} |")


if __name__ == "__main__":
    main()
