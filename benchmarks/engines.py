"""The same bulk job on the plain CLI, `--engine local` and `--engine ray`, same run.

A mid-size BLIP captioner (ViT 6 x 384 at 224 px, 6-layer decoder; random weights) captions
distinct JPEG photos with exactly `--tokens` new tokens each. Every row is one whole command,
timed from start to exit (imports, model load, Ray start or connect, writing): what a user
waits for. Ray runs in a network namespace of its own with only loopback (`unshare -n`), as in
the tests: started in the driver (`ray.init`), and on a cluster started beforehand with
`ray start --head` (`--ray-address`).

    python benchmarks/engines.py --images 150,450 --repeats 3

Each command runs on a small and a large folder (the large one holds the small one's photos and
more). The difference of the two times is what the extra images cost, so it splits each row into
a steady throughput (extra images / extra seconds: what a long job runs at) and a fixed cost
(start-up and shut-down: imports, model load, Ray start or connect). Prints a markdown table of
medians: end-to-end images/s on the large folder, steady images/s and its ratio to the plain
CLI's, the per-image overhead of the shard protocol at steady state, and the fixed seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from _images import distinct_images

BIN = Path(sys.executable).parent


class Namespace:
    """A loopback-only network namespace kept alive by a sleeping holder process."""

    def __init__(self) -> None:
        self.holder = subprocess.Popen(
            ["unshare", "-n", "sh", "-c", "ip link set lo up && exec sleep 36000"]
        )
        time.sleep(0.3)

    def argv(self, cmd: list[str]) -> list[str]:
        return ["nsenter", "-t", str(self.holder.pid), "-n", "--", *cmd]

    def close(self) -> None:
        self.holder.kill()
        self.holder.wait()


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return seconds


def captions(path: Path) -> list[tuple[str, str]]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [(r["path"], r["caption"]) for r in rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", default="150,450", help="SMALL,LARGE folder sizes")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=12)
    ap.add_argument("--shard-size", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args()

    from im2text.testing import build_checkpoint

    root = Path(tempfile.mkdtemp(prefix="im2t-engines-", dir="/tmp"))
    model = build_checkpoint("blip", root / "ck", hidden=384, layers=6, heads=6,
                             image_size=224, patch_size=16)  # fmt: skip
    small, large = (int(x) for x in args.images.split(","))
    sizes = {"small": small, "large": large}
    for name, n in sizes.items():
        (root / name).mkdir()
        for i, img in enumerate(distinct_images(n)):
            img.save(root / name / f"{i:04d}.jpg", quality=90)
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    gen = ["--max-new-tokens", str(args.tokens), "--min-new-tokens", str(args.tokens),
           "-b", str(args.batch_size), "--no-progress"]  # fmt: skip
    im2text = [str(BIN / "im2text"), "caption", "-m", str(model), *gen]
    sharded = ["--shard-size", str(args.shard_size)]

    ns = Namespace()
    temp = tempfile.mkdtemp(prefix="im2t-rb-", dir="/tmp")
    head = [str(BIN / "ray"), "start", "--head", "--node-ip-address=127.0.0.1", "--port=6379",
            "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"]  # fmt: skip
    start = subprocess.run(ns.argv(head), env=env, capture_output=True, text=True)
    if start.returncode != 0:
        raise SystemExit(start.stderr)

    def out(name: str, size: str, k: int) -> Path:
        return root / f"{name}-{size}-{k}"

    def plain(size: str, k: int) -> list[str]:
        return [*im2text, str(root / size), "-o", f"{out('plain', size, k)}.jsonl"]

    def local(size: str, k: int) -> list[str]:
        return [*im2text, str(root / size), "-o", str(out("local", size, k)), "--engine",
                "local", *sharded]  # fmt: skip

    def ray_init(size: str, k: int) -> list[str]:
        return ns.argv([*im2text, str(root / size), "-o", str(out("rayinit", size, k)),
                        "--engine", "ray", *sharded])  # fmt: skip

    def ray_cluster(size: str, k: int) -> list[str]:
        dest = str(out("raycluster", size, k))
        return ns.argv([*im2text, str(root / size), "-o", dest, "--engine", "ray", *sharded,
                        "--ray-address", "127.0.0.1:6379"])  # fmt: skip

    rows = {
        "plain CLI (one process)": plain,
        "--engine local (1 worker process)": local,
        "--engine ray (ray.init in the driver)": ray_init,
        "--engine ray (running cluster)": ray_cluster,
    }
    times: dict[tuple[str, str], list[float]] = {(r, z): [] for r in rows for z in sizes}
    try:
        for k in range(args.repeats):
            names = list(rows)
            names = names[k % len(names) :] + names[: k % len(names)]  # rotate the order
            for name in names:
                for size in sizes:
                    times[name, size].append(timed(rows[name](size, k), env))
                    t = times[name, size][-1]
                    print(f"  {name} {size}: {t:.1f} s", file=sys.stderr, flush=True)
    finally:
        subprocess.run(ns.argv([str(BIN / "ray"), "stop", "--force"]), capture_output=True)
        ns.close()
        shutil.rmtree(temp, ignore_errors=True)

    # The records agree: every engine captions every image the same.
    want = captions(Path(f"{out('plain', 'large', 0)}.jsonl"))
    for name in ("local", "rayinit", "raycluster"):
        merged = root / f"{name}.jsonl"
        subprocess.run([str(BIN / "im2text"), "merge", str(out(name, "large", 0)), "--to",
                        str(merged)], check=True, capture_output=True)  # fmt: skip
        assert captions(merged) == want, f"{name} records differ from the plain CLI's"

    def split(name: str) -> tuple[float, float, float]:
        t_small = statistics.median(times[name, "small"])
        t_large = statistics.median(times[name, "large"])
        steady = (large - small) / (t_large - t_small)
        return t_large, steady, t_small - small / steady

    base = split("plain CLI (one process)")[1]
    cpu = platform.processor() or platform.machine()
    print(f"\n{small} and {large} JPEGs, mid-size BLIP (random weights), {args.tokens} tokens "
          f"each, batch {args.batch_size}, shards of {args.shard_size}; {cpu}, "
          f"{os.cpu_count()} CPUs; medians of {args.repeats}\n")  # fmt: skip
    print(f"| run | {large} images: s | end-to-end img/s | steady img/s | steady vs plain | "
          "overhead / image | fixed s |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in rows:
        t_large, steady, fixed = split(name)
        over = (1 / steady - 1 / base) * 1000
        print(f"| {name} | {t_large:.1f} | {large / t_large:.2f} | {steady:.2f} | "
              f"{steady / base:.2f}x | {over:+.1f} ms | {fixed:.1f} |")  # fmt: skip
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
