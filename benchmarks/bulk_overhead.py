"""What im2text itself costs a bulk job, with the model's time taken out (a null captioner).

1. Decoding 12-MP JPEG photos: full decode vs JPEG draft (decode at reduced size for a 384 px
   model input), milliseconds per photo.
2. Preprocessing (resize + normalise to 384 px) per image.
3. The whole bulk loop — prefetch threads, batching, records written through the resumable
   writer — over N ordinary photos (640 x 480 JPEGs): images/s and ms per image.
4. Memory over a 20,000-image run: RSS every 2,000 images (it must stay flat).

    python benchmarks/bulk_overhead.py --big 8 --photos 400 --long 20000
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from _images import distinct_images
from PIL import Image

from im2text.images import ImageSource, load_image
from im2text.jobs.records import RecordWriter
from im2text.tasks import TASKS
from im2text.testing.null import NullCaptioner, null_model


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def big_photos(folder: Path, n: int) -> list[Path]:
    """12-MP JPEGs (4000 x 3000), upscaled from the sample photos, quality 90."""
    paths = []
    for i, img in enumerate(distinct_images(n)):
        path = folder / f"big{i}.jpg"
        img.resize((4000, 3000), Image.Resampling.BICUBIC).save(path, quality=90)
        paths.append(path)
    return paths


def timed_ms(fn, items) -> float:  # type: ignore[no-untyped-def]
    runs = []
    for _ in range(3):
        t0 = time.perf_counter()
        for it in items:
            fn(it)
        runs.append((time.perf_counter() - t0) / len(items) * 1000)
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--big", type=int, default=8, help="12-MP photos for the decode test")
    ap.add_argument("--photos", type=int, default=400, help="640x480 photos for the bulk loop")
    ap.add_argument("--long", type=int, default=20000, help="images in the memory run")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="im2t-overhead-"))
    rows: list[tuple[str, str]] = []

    bigs = big_photos(root, args.big)
    full = timed_ms(lambda p: load_image(p), bigs)
    draft = timed_ms(lambda p: load_image(p, target_size=384), bigs)
    rows.append(("decode a 12-MP JPEG, full size", f"{full:.1f} ms"))
    rows.append(("decode a 12-MP JPEG, draft for 384 px", f"{draft:.1f} ms ({full / draft:.1f}x)"))
    small = [load_image(p, target_size=384) for p in bigs]
    family = NullCaptioner(384)
    prep = timed_ms(lambda im: family.prepare([im], [None]), small)
    rows.append(("preprocess (resize + normalise to 384 px)", f"{prep:.1f} ms"))

    photos = root / "photos"
    photos.mkdir()
    for i, img in enumerate(distinct_images(args.photos)):
        img.resize((640, 480)).save(photos / f"{i:05d}.jpg", quality=90)
    files = sorted(photos.iterdir())
    model = null_model(384, batch_size=8, num_workers=2)
    spec = TASKS["caption"]

    def bulk(n: int, out: Path, sample_every: int = 0) -> tuple[float, list[float]]:
        sources = (ImageSource(f"img{i:06d}.jpg", files[i % len(files)]) for i in range(n))
        mem = []
        t0 = time.perf_counter()
        with RecordWriter(out, fields=spec.fields) as writer:
            for i, cap in enumerate(model.stream("caption", sources, total=n), 1):
                writer.write(cap.to_record(model.name))
                if sample_every and i % sample_every == 0:
                    mem.append(rss_mb())
        return time.perf_counter() - t0, mem

    bulk(50, root / "warm.jsonl")
    secs = [bulk(len(files), root / f"run{k}.jsonl")[0] for k in range(3)]
    t = statistics.median(secs)
    rate = f"{len(files) / t:.0f} images/s, {t / len(files) * 1000:.1f} ms/image"
    rows.append((f"bulk loop, {len(files)} 640x480 JPEGs (decode + preprocess + records)", rate))
    before = rss_mb()
    t, mem = bulk(args.long, root / "long.jsonl", sample_every=2000)
    rows.append((f"{args.long:,} images: RSS every 2,000 (MB)",
                 " ".join(f"{m:.0f}" for m in mem) + f" (start {before:.0f})"))  # fmt: skip
    rows.append((f"{args.long:,} images: throughput", f"{args.long / t:.0f} images/s"))

    cpu = platform.processor() or platform.machine()
    print(f"\nim2text's own cost per image (null captioner, 384 px input, batch 8, 2 loader "
          f"threads); {cpu}, {os.cpu_count()} CPUs; medians of 3\n")  # fmt: skip
    print("| what | measured |")
    print("|---|---|")
    for what, value in rows:
        print(f"| {what} | {value} |")


if __name__ == "__main__":
    main()
