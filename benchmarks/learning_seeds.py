"""Spread of the learning recipes over seeds (what the learning tests' thresholds rest on).

    python benchmarks/learning_seeds.py --recipe vqa --seeds 0,1,2,3,4 [--repeat-first]

Runs each recipe (src/im2text/testing/learning.py) once per seed in a fresh temp folder and prints
one JSON line per run, then min / median / max. `--repeat-first` runs the first seed twice: the
two must agree exactly (the runs are deterministic). Run it on a quiet machine: it is CPU-bound
for minutes per run (steps, not time, so a busy machine changes only how long it takes).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> int:
    from im2text.testing import learning

    recipes = {
        "caption": learning.shapes_captioning,
        "vqa": learning.easy_vqa,
        "vlm": learning.shapes_chat_vlm,
    }
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recipe", choices=sorted(recipes), required=True)
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--repeat-first", action="store_true")
    ap.add_argument("train_flags", nargs="*", help="extra `im2text train` flags (after --)")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.repeat_first:
        seeds = [seeds[0], *seeds]
    runs = []
    for seed in seeds:
        t0 = time.monotonic()
        with tempfile.TemporaryDirectory() as tmp:
            result = recipes[args.recipe](tmp, seed=seed, extra=args.train_flags)
        row = {
            "recipe": args.recipe,
            "seed": seed,
            "flags": " ".join(args.train_flags),
            **result,
            "seconds": round(time.monotonic() - t0, 1),
        }
        print(json.dumps(row), flush=True)
        runs.append(row)
    for key in runs[0]:
        if key in ("recipe", "seed", "seconds", "flags"):
            continue
        vals = [r[key] for r in runs]
        print(
            f"{key}: min {min(vals):.3f}  median {statistics.median(vals):.3f}  "
            f"max {max(vals):.3f}  (n={len(vals)})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
