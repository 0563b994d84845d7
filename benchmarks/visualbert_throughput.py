"""Regions per second (the full-size Visual Genome Faster R-CNN: ResNet-101 C4, 600 px short side,
36 regions) and VQA answers per second (VisualBERT-base over them), random weights at the real
sizes, with the region cache cold (detector + BERT) and warm (BERT only), same images, same run.

    python benchmarks/visualbert_throughput.py --images 4 --repeats 3
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
from caption_throughput import image_files

import im2text


def build(root: Path) -> Path:
    """VisualBERT-base (12 x 768, 2,048-d regions, 3,129 answers) with the full-size detector in
    its `detector/` folder; random weights; the tiny checkpoint's tokenizer."""
    import yaml
    from transformers import AutoTokenizer, VisualBertConfig, VisualBertForQuestionAnswering

    from im2text.families.frcnn import GeneralizedRCNN, read_config
    from im2text.testing import build_checkpoint
    from im2text.testing.checkpoints import frcnn_vg_config

    out = root / "visualbert-base"
    tok = AutoTokenizer.from_pretrained(build_checkpoint("visualbert-vqa", root))
    labels = {i: f"answer{i}" for i in range(3129)}
    config = VisualBertConfig(vocab_size=len(tok), visual_embedding_dim=2048, id2label=labels,
                              label2id={v: k for k, v in labels.items()})  # fmt: skip
    VisualBertForQuestionAnswering(config).eval().save_pretrained(out)
    tok.save_pretrained(out)
    det = out / "detector"
    det.mkdir()
    (det / "config.yaml").write_text(yaml.safe_dump(frcnn_vg_config()))
    torch.save(GeneralizedRCNN(read_config(det / "config.yaml")).state_dict(),
               det / "pytorch_model.bin")  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["IM2TEXT_CACHE"] = str(root / "cache")
        model = im2text.load(str(build(root)), batch_size=args.images)
        files = image_files(root / "images", args.images)
        question = "what color is the car?"
        family = model.family
        rows = {}

        def timed(label: str, run) -> None:  # type: ignore[no-untyped-def]
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                run()
                times.append(time.perf_counter() - t0)
            med = statistics.median(times)
            rows[label] = args.images / med
            print(f"{label:<48} {args.images / med:8.2f} /s   (median of {args.repeats})")

        from PIL import Image

        pil = [Image.open(f).convert("RGB") for f in files]
        timed("detector: images/s (36 regions each)", lambda: family.detector.regions(pil))
        family.cache_writes = False
        timed("VQA answers/s, region cache cold", lambda: model.ask(files, question))
        family.cache_writes = True
        model.ask(files, question)  # fills the cache
        timed("VQA answers/s, region cache warm", lambda: model.ask(files, question))
        det = rows["detector: images/s (36 regions each)"]
        warm = rows["VQA answers/s, region cache warm"] / rows["VQA answers/s, region cache cold"]
        print(f"regions/s (detector): {36 * det:.1f}; warm / cold: {warm:.1f}x; "
              f"torch threads {torch.get_num_threads()}")  # fmt: skip


if __name__ == "__main__":
    main()
