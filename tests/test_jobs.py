"""The shard protocol and `--engine local`: manifest, exactly-once under worker and driver kills,
retries, merge order, list files. (The Ray engine: tests/test_ray_engine.py.)"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import random_images

from im2text.cli import EXIT_MODEL, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, main
from im2text.images import expand_inputs
from im2text.jobs.engines import FAULT_ENV, EngineConfig, run_job
from im2text.jobs.shards import JobSpec, Manifest, Storage, expand_list_files, job_items

GEN = ["--max-new-tokens", "6", "--min-new-tokens", "6"]


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def _shard_files(out: Path) -> list[Path]:
    return sorted(out.glob("shard-*.jsonl"))


def _no_temp_files(out: Path) -> None:
    assert [p.name for p in out.iterdir() if p.name.endswith(".tmp")] == []


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(x) for x in out.stdout.split()]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


def _many(tmp_path: Path, n: int, seed: int = 1) -> Path:
    folder = tmp_path / f"many{seed}"
    folder.mkdir()
    for i, im in enumerate(random_images(n, seed=seed, size=(32, 32))):
        im.save(folder / f"img{i:03d}.png")
    return folder


def test_local_engine_records_equal_the_plain_cli(mixed_folder, tiny, tmp_path: Path) -> None:
    root, bad = mixed_folder
    model = str(tiny("blip"))
    # One image a forward pass on both sides: batch composition moves float sums in the 6th
    # decimal, and this test is about the protocol adding or losing nothing.
    gen = [*GEN, "-b", "1"]
    plain = tmp_path / "plain.jsonl"
    assert main(["caption", str(root), "-m", model, "-o", str(plain), "--no-progress", *gen]) == 4
    out = tmp_path / "shards"
    cmd = ["caption", str(root), "-m", model, "-o", str(out), "--engine", "local",
           "--shard-size", "3", "--no-progress", "--parquet", *gen]  # fmt: skip
    assert main(cmd) == EXIT_PARTIAL  # the bad images are records with an error
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["shard_size"] == 3 and len(manifest["shards"]) == len(_shard_files(out))
    merged = tmp_path / "merged.jsonl"
    assert main(["merge", str(out), "--to", str(merged)]) == EXIT_OK
    assert merged.read_bytes() == plain.read_bytes()  # same records, same order, same bytes
    failed = {Path(r["path"]).name for r in map(json.loads, _lines(merged)) if r["error"]}
    assert failed == bad
    success = json.loads((out / "_SUCCESS").read_text())
    assert success["records"] == len(_lines(plain)) and success["failed"] == len(bad)
    # The parquet shards hold the same records.
    import pyarrow.parquet as pq

    rows = [r for p in sorted(out.glob("shard-*.parquet")) for r in pq.read_table(p).to_pylist()]
    assert [r["path"] for r in rows] == [json.loads(x)["path"] for x in _lines(plain)]
    assert [r["caption"] for r in rows] == [json.loads(x)["caption"] for x in _lines(plain)]
    # CSV merge == the plain CLI's CSV.
    plain_csv, merged_csv = tmp_path / "plain.csv", tmp_path / "merged.csv"
    main(["caption", str(root), "-m", model, "-o", str(plain_csv), "--no-progress", *gen])
    main(["merge", str(out), "--to", str(merged_csv)])
    assert merged_csv.read_text() == plain_csv.read_text()
    _no_temp_files(out)


def test_rerun_adds_new_inputs_as_new_shards(tiny, tmp_path: Path, capsys) -> None:
    folder = _many(tmp_path, 7)
    out = tmp_path / "out"
    base = ["caption", "-m", str(tiny("blip")), "-o", str(out), "--engine", "local",
            "--no-progress", *GEN]  # fmt: skip
    assert main([*base[:1], str(folder), *base[1:], "--shard-size", "3"]) == EXIT_OK
    before = json.loads((out / "manifest.json").read_text())
    assert before["shards"] == [[0, 3], [3, 6], [6, 7]]
    stamps = {p.name: p.stat().st_mtime_ns for p in _shard_files(out)}
    # The listing changes: an image is gone and two are new (one sorts first).
    (folder / "img003.png").unlink()
    random_images(1, seed=9)[0].save(folder / "aaa.png")
    random_images(1, seed=8)[0].save(folder / "zzz.png")
    capsys.readouterr()
    # img003's shard is done: its record stays (the manifest keeps inputs it no longer lists).
    assert main([*base[:1], str(folder), *base[1:]]) == EXIT_OK
    after = json.loads((out / "manifest.json").read_text())
    assert after["items"][:7] == before["items"]  # shards never reshuffle
    assert after["shards"] == [[0, 3], [3, 6], [6, 7], [7, 9]]
    assert [i["path"] for i in after["items"][7:]] == [
        str(folder / "aaa.png"),
        str(folder / "zzz.png"),
    ]
    for name, stamp in stamps.items():  # done shards are not rewritten
        assert (out / name).stat().st_mtime_ns == stamp
    assert "1 shard(s) run, 4 in all" in capsys.readouterr().err
    # Nothing new: nothing runs.
    assert main([*base[:1], str(folder), *base[1:]]) == EXIT_OK
    assert "0 shard(s) run" in capsys.readouterr().err


def test_another_job_in_the_same_folder_is_refused(tiny, tmp_path: Path, capsys) -> None:
    folder = _many(tmp_path, 3)
    out = tmp_path / "out"
    base = ["caption", str(folder), "-m", str(tiny("blip")), "-o", str(out), "--engine",
            "local", "--no-progress"]  # fmt: skip
    assert main([*base, *GEN]) == EXIT_OK
    capsys.readouterr()
    assert main([*base, "--max-new-tokens", "9"]) == EXIT_USAGE
    assert "holds the outputs of another job" in capsys.readouterr().err
    assert main([*base, *GEN, "--shard-size", "2"]) == EXIT_USAGE
    assert "sharded 1000 inputs a shard" in capsys.readouterr().err
    assert main(["ask", str(folder), "-q", "what?", "-m", str(tiny("blip-vqa")), "-o", str(out),
                 "--engine", "local", "--no-progress"]) == EXIT_USAGE  # fmt: skip
    with Storage(out).lock():  # another driver is running this folder
        assert main([*base, *GEN]) == EXIT_USAGE
    assert "being run by another im2text process" in capsys.readouterr().err


def test_worker_killed_mid_shard_runs_the_shard_again(tiny, tmp_path: Path, monkeypatch) -> None:
    folder = _many(tmp_path, 10)
    out = tmp_path / "out"
    monkeypatch.setenv(FAULT_ENV, "2")  # each worker process dies in its 3rd shard
    code = main(["caption", str(folder), "-m", str(tiny("blip")), "-o", str(out), "--engine",
                 "local", "--shard-size", "2", "--no-progress", *GEN])  # fmt: skip
    assert code == EXIT_OK
    records = [json.loads(x) for p in _shard_files(out) for x in _lines(p)]
    paths = [r["path"] for r in records]
    assert sorted(paths) == sorted(str(p) for p in folder.iterdir()) and len(set(paths)) == 10
    _no_temp_files(out)


def test_driver_killed_then_rerun_finishes_only_what_is_missing(tiny, tmp_path: Path) -> None:
    folder = _many(tmp_path, 40)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "im2text", "caption", str(folder), "-m", str(tiny("blip")),
           "-o", str(out), "--engine", "local", "--shard-size", "4", "--no-progress",
           "--max-new-tokens", "24", "--min-new-tokens", "24"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (out.exists() and len(_shard_files(out)) >= 2):
        time.sleep(0.01)
    workers = _children(proc.pid)
    assert workers, "the driver runs its shards in worker processes"
    os.kill(proc.pid, signal.SIGKILL)  # the driver
    proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(p) for p in workers):
        time.sleep(0.1)
    assert not any(_alive(p) for p in workers), "a worker outlived its killed driver"
    done = {p.name: p.stat().st_mtime_ns for p in _shard_files(out)}
    assert 2 <= len(done) < 10, "the kill must land mid-run"
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    ran = int(rerun.stderr.split(" shard(s) run")[0].rsplit(" ", 1)[-1])
    assert ran <= 10 - len(done)
    for name, stamp in done.items():
        assert (out / name).stat().st_mtime_ns == stamp
    lines = [x for p in _shard_files(out) for x in _lines(p)]
    paths = [json.loads(x)["path"] for x in lines]  # every line is whole JSON
    assert len(paths) == len(set(paths)) == 40
    _no_temp_files(out)


def test_retry_errors_reruns_only_failed_items(tiny, tmp_path: Path) -> None:
    folder = _many(tmp_path, 5)
    (folder / "img002.png").write_bytes(b"broken")
    out = tmp_path / "out"
    base = ["caption", str(folder), "-m", str(tiny("blip")), "-o", str(out), "--engine",
            "local", "--shard-size", "2", "--no-progress", *GEN]  # fmt: skip
    assert main(base) == EXIT_PARTIAL
    first = {json.loads(x)["path"]: x for p in _shard_files(out) for x in _lines(p)}
    random_images(1, seed=5, size=(32, 32))[0].save(folder / "img002.png")  # repaired
    assert main(base) == EXIT_PARTIAL  # without --retry-errors nothing runs again
    assert main([*base, "--retry-errors"]) == EXIT_OK
    second = {json.loads(x)["path"]: x for p in _shard_files(out) for x in _lines(p)}
    fixed = str(folder / "img002.png")
    assert json.loads(second[fixed])["error"] is None
    assert {k: v for k, v in second.items() if k != fixed} == {
        k: v for k, v in first.items() if k != fixed
    }


def test_list_files_and_ask_pairs(tiny, tmp_path: Path) -> None:
    folder = _many(tmp_path, 4)
    images = sorted(folder.iterdir())
    (tmp_path / "list.txt").write_text("# images\n" + "\n".join(f"many1/{p.name}" for p in images))
    with open(tmp_path / "list.csv", "w", newline="") as f:
        csv.writer(f).writerows([["path", "label"], *[[str(p), "x"] for p in images]])
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"image": [str(p) for p in images]}), tmp_path / "list.parquet")
    want = [str(p) for p in images]
    for name in ("list.txt", "list.csv", "list.parquet"):
        assert expand_list_files([str(tmp_path / name)]) == want
    # VQA: (image, question) pairs, two questions an image, through the local engine.
    out = tmp_path / "vqa"
    code = main(["ask", str(tmp_path / "list.txt"), "-q", "what colour?", "-q", "how many?",
                 "-m", str(tiny("blip-vqa")), "-o", str(out), "--engine", "local",
                 "--shard-size", "3", "--no-progress"])  # fmt: skip
    assert code == EXIT_OK
    merged = tmp_path / "vqa.csv"
    main(["merge", str(out), "--to", str(merged)])
    rows = list(csv.DictReader(merged.open()))
    assert [(r["path"], r["question"]) for r in rows] == [
        (p, q) for p in want for q in ("how many?", "what colour?")
    ]


def test_python_api_and_merge_refuses_unfinished_jobs(tiny, tmp_path: Path) -> None:
    folder = _many(tmp_path, 6)
    out = tmp_path / "out"
    summary = run_job(
        "embed",
        expand_inputs(str(folder)),
        out,
        model=str(tiny("clip")),
        config=EngineConfig(engine="local", shard_size=4, progress=False),
    )
    assert (summary.shards, summary.records, summary.failed, summary.ok) == (2, 6, 0, True)
    (out / "shard-000001.jsonl").unlink()
    from im2text.jobs.shards import merge

    with pytest.raises(ValueError, match="1 of 2 shards are not done"):
        merge(out, tmp_path / "all.jsonl")
    again = run_job("embed", expand_inputs(str(folder)), out, model=str(tiny("clip")),
                    config=EngineConfig(shard_size=4, progress=False))  # fmt: skip
    assert again.shards_run == 1 and merge(out, tmp_path / "all.jsonl") == 6


def test_manifest_items_are_sorted_deduplicated_and_absolute(tmp_path: Path, monkeypatch) -> None:
    folder = _many(tmp_path, 3)
    sources = expand_inputs([str(folder / "img002.png"), str(folder), str(folder / "img000.png")])
    items = job_items(sources)
    assert [i["path"] for i in items] == [str(folder / f"img00{k}.png") for k in range(3)]
    manifest, new = Manifest.open(Storage(tmp_path / "o"), JobSpec("caption", "m"), items, 2)
    assert new == 3 and manifest.shards == [(0, 2), (2, 3)]
    monkeypatch.chdir(tmp_path)
    rel = job_items(expand_inputs(["many1/img000.png"]))
    assert rel == [{"path": "many1/img000.png", "file": str(folder / "img000.png")}]


def test_model_that_cannot_load_is_exit_3_and_missing_ray_has_a_hint(
    tmp_path: Path, tiny, monkeypatch, capsys
) -> None:
    folder = _many(tmp_path, 2)
    code = main(["caption", str(folder), "-m", str(tmp_path / "nowhere"), "-o",
                 str(tmp_path / "o"), "--engine", "local", "--no-progress"])  # fmt: skip
    assert code == EXIT_MODEL and "not found" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    code = main(["caption", str(folder), "-m", str(tiny("blip")), "-o", str(tmp_path / "r"),
                 "--engine", "ray", "--no-progress"])  # fmt: skip
    assert code == 1
    assert "pip install 'im2text[ray]'" in capsys.readouterr().err
