"""`--engine ray` against a real local Ray cluster.

Ray's servers bind every interface of the host, so the cluster, and every driver that talks
to it, run in a network namespace of their own that holds only a loopback interface
(`unshare -n`, entered with `nsenter`): nothing the tests start is reachable from outside and
no traffic leaves 127.0.0.1. Cost: one `ray start --head` (about 3 s, ~1 GB) for the module and
one in-process `ray.init` (about 8 s); each CLI run on the cluster is ~10 s (driver connect,
actor start, model load).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import random_images

from im2text.cli import EXIT_OK, EXIT_PARTIAL, main
from im2text.jobs.engines import FAULT_ENV

PORT = 6379  # free: the namespace is new
GEN = ["--max-new-tokens", "6", "--min-new-tokens", "6", "-b", "1"]


def _can_unshare() -> bool:
    if not (shutil.which("unshare") and shutil.which("nsenter") and shutil.which("ip")):
        return False
    return subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0


pytestmark = pytest.mark.skipif(
    not _can_unshare(), reason="needs unshare -n (root, Linux) for a loopback-only Ray cluster"
)


class Namespace:
    """A network namespace with only `lo`, kept alive by a sleeping holder process."""

    def __init__(self) -> None:
        self.holder = subprocess.Popen(
            ["unshare", "-n", "sh", "-c", "ip link set lo up && exec sleep 3600"]
        )
        time.sleep(0.3)
        self.env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_AUTH_MODE": "disabled"}
        self.env.pop(FAULT_ENV, None)

    def argv(self, cmd: list[str]) -> list[str]:
        return ["nsenter", "-t", str(self.holder.pid), "-n", "--", *cmd]

    def run(self, cmd: list[str], timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.argv(cmd), env={**self.env, **env}, capture_output=True, text=True,
            timeout=timeout,
        )  # fmt: skip

    def close(self) -> None:
        self.holder.kill()
        self.holder.wait()


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[Namespace, str]]:
    ns = Namespace()
    temp = tempfile.mkdtemp(prefix="im2t-ray-", dir="/tmp")  # short: Ray's socket paths
    ray = str(Path(sys.executable).parent / "ray")
    start = ns.run([ray, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={PORT}",
                    "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats",
                    f"--temp-dir={temp}"], timeout=120)  # fmt: skip
    assert start.returncode == 0, start.stderr
    listening = ns.run(["ss", "-ltn"]).stdout
    try:
        # Every listening socket of the cluster is on loopback.
        addrs = [line.split()[3] for line in listening.splitlines()[1:] if line.strip()]
        assert addrs and all("127.0.0.1" in a or a.startswith("[::1]") for a in addrs), addrs
        yield ns, f"127.0.0.1:{PORT}"
    finally:
        ns.run([ray, "stop", "--force"], timeout=120)
        ns.close()
        shutil.rmtree(temp, ignore_errors=True)


def _cli(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "im2text", *args]


def _shard_lines(out: Path) -> list[str]:
    return [x for p in sorted(out.glob("shard-*.jsonl")) for x in p.read_text().splitlines()]


def _no_temp_files(out: Path) -> None:
    assert [p.name for p in out.iterdir() if p.name.endswith(".tmp")] == []


def _many(tmp_path: Path, n: int) -> Path:
    folder = tmp_path / "many"
    folder.mkdir()
    for i, im in enumerate(random_images(n, seed=3, size=(32, 32))):
        im.save(folder / f"img{i:03d}.png")
    return folder


def test_ray_records_equal_local_and_plain(cluster, mixed_folder, tiny, tmp_path: Path) -> None:
    ns, address = cluster
    root, bad = mixed_folder
    model = str(tiny("blip"))
    plain = tmp_path / "plain.jsonl"
    assert main(["caption", str(root), "-m", model, "-o", str(plain), "--no-progress", *GEN]) == 4
    local = tmp_path / "local"
    args = ["caption", str(root), "-m", model, "--shard-size", "2", "--no-progress", *GEN]
    assert main([*args, "-o", str(local), "--engine", "local"]) == EXIT_PARTIAL
    ray_out = tmp_path / "ray"
    proc = ns.run(_cli([*args, "-o", str(ray_out), "--engine", "ray", "--ray-address", address,
                        "--parquet"]))  # fmt: skip
    assert proc.returncode == EXIT_PARTIAL, proc.stderr
    assert _shard_lines(ray_out) == _shard_lines(local)  # byte-identical records
    merged = tmp_path / "merged.jsonl"
    assert main(["merge", str(ray_out), "--to", str(merged)]) == EXIT_OK
    assert merged.read_bytes() == plain.read_bytes()  # input order, the plain CLI's records
    errors = {Path(json.loads(x)["path"]).name for x in _shard_lines(ray_out)}
    assert bad <= errors
    assert sorted(ray_out.glob("*.parquet")) and json.loads((ray_out / "_SUCCESS").read_text())[
        "failed"
    ] == len(bad)


def test_actor_that_dies_mid_shard_and_a_killed_driver(cluster, tiny, tmp_path: Path) -> None:
    ns, address = cluster
    folder = _many(tmp_path, 24)
    out = tmp_path / "out"
    args = ["caption", str(folder), "-m", str(tiny("blip")), "-o", str(out), "--engine", "ray",
            "--ray-address", address, "--shard-size", "3", "--no-progress",
            "--max-new-tokens", "16", "--min-new-tokens", "16"]  # fmt: skip
    # 1. Each actor exits (os._exit) in the middle of its 3rd shard, its records in a temp file.
    proc = ns.run(_cli(args), **{FAULT_ENV: "2"})
    assert proc.returncode == EXIT_OK, proc.stderr
    assert "a Ray worker died running shard" in proc.stderr
    lines = _shard_lines(out)
    paths = [json.loads(x)["path"] for x in lines]
    assert sorted(paths) == sorted(str(p) for p in folder.iterdir()) and len(set(paths)) == 24
    _no_temp_files(out)
    # 2. The driver SIGKILLed mid-run, then a rerun: only the missing shards run.
    out2 = tmp_path / "out2"
    args2 = [a if a != str(out) else str(out2) for a in args]
    driver = subprocess.Popen(ns.argv(_cli(args2)), env=ns.env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and len(list(out2.glob("shard-*.jsonl"))) < 2:
        time.sleep(0.02)
    driver.send_signal(signal.SIGKILL)  # nsenter execs the driver: this is the driver itself
    driver.wait()
    time.sleep(2.0)  # Ray reaps the dead driver's actors
    done = {p.name: p.stat().st_mtime_ns for p in out2.glob("shard-*.jsonl")}
    assert 2 <= len(done) < 8, "the kill must land mid-run"
    rerun = ns.run(_cli(args2))
    assert rerun.returncode == EXIT_OK, rerun.stderr
    assert "shard(s) run, 8 in all" in rerun.stderr
    ran = int(rerun.stderr.split(" shard(s) run")[0].rsplit(" ", 1)[-1])
    assert ran <= 8 - len(done)
    for name, stamp in done.items():
        assert (out2 / name).stat().st_mtime_ns == stamp
    assert sorted(_shard_lines(out2)) == sorted(lines)  # every input once, same records
    _no_temp_files(out2)


def test_changed_fingerprint_is_refused_and_index_on_ray(cluster, tiny, tmp_path: Path) -> None:
    ns, address = cluster
    folder = _many(tmp_path, 6)
    index = tmp_path / "index"
    args = ["index", str(folder), "-m", str(tiny("clip")), "--out", str(index), "--engine", "ray",
            "--ray-address", address, "--shard-size", "4", "--no-progress"]  # fmt: skip
    proc = ns.run(_cli(args))
    assert proc.returncode == EXIT_OK, proc.stderr
    from im2text.jobs.index import EmbeddingIndex

    assert len(EmbeddingIndex(index)) == 6
    # The same images found by the in-process embedder: each finds itself first.
    import im2text

    model = im2text.load(str(tiny("clip")))
    for path in sorted(folder.iterdir())[:2]:
        hits = EmbeddingIndex(index).search(model.embed(str(path))[0], 1)
        assert hits[0].path == str(path) and hits[0].score > 0.999
    bad = ns.run(_cli(["caption", str(folder), "-m", str(tiny("blip")), "-o", str(index / "shards"),
                       "--engine", "ray", "--ray-address", address]))  # fmt: skip
    assert bad.returncode == 2 and "holds the outputs of another job" in bad.stderr


SCRIPT = """
import json, sys, ray
ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
from im2text.images import expand_inputs
from im2text.jobs.engines import EngineConfig, run_job
s = run_job("classify", expand_inputs(sys.argv[1]), sys.argv[2], model=sys.argv[3],
            params={"top_k": 2}, config=EngineConfig(engine="ray", shard_size=2, progress=False))
ray.shutdown()
print(json.dumps({"shards": s.shards, "records": s.records, "failed": s.failed}))
"""


def test_in_process_ray_init_python_api(tiny, tmp_path: Path) -> None:
    folder = _many(tmp_path, 5)
    ns = Namespace()  # a namespace of its own: ray.init starts a cluster in the driver
    try:
        out = tmp_path / "ray"
        proc = ns.run([sys.executable, "-c", SCRIPT, str(folder), str(out), str(tiny("vit"))])
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout.splitlines()[-1]) == {"shards": 3, "records": 5, "failed": 0}
    finally:
        ns.close()
    local = tmp_path / "local"
    code = main(["classify", str(folder), "-m", str(tiny("vit")), "--top-k", "2", "-o",
                 str(local), "--engine", "local", "--shard-size", "2",
                 "--no-progress"])  # fmt: skip
    assert code == EXIT_OK
    assert _shard_lines(out) == _shard_lines(local)
