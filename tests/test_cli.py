"""The `im2text` CLI: records, exit codes, resume after kill -9, torn lines, sidecars."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import EXAMPLES, random_images

from im2text.cli import EXIT_MODEL, EXIT_OK, EXIT_PARTIAL, main

FIELDS = {"path", "caption", "mean_logprob", "captions", "model", "error"}


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_mixed_folder_records_and_exit_code(mixed_folder, tiny, tmp_path: Path, capsys) -> None:
    root, bad = mixed_folder
    out = tmp_path / "caps.jsonl"
    args = ["caption", str(root), "--model", str(tiny("blip")), "-o", str(out), "--no-progress"]
    code = main([*args, "--max-new-tokens", "5"])
    assert code == EXIT_PARTIAL
    recs = _records(out)
    names = [Path(r["path"]).name for r in recs]
    assert sorted(names) == sorted(
        ["astronaut.jpg", "cat.jpg", "coffee.jpg", "rocket.jpg", "noise.png", *bad]
    )
    for r in recs:
        assert set(r) == FIELDS and r["model"] == "blip"
        if Path(r["path"]).name in bad:
            assert r["caption"] is None and r["error"].startswith(r["path"])
        else:
            assert isinstance(r["caption"], str) and isinstance(r["mean_logprob"], float)
            assert r["error"] is None and r["captions"] is None
    errors = {Path(r["path"]).name: r["error"] for r in recs if r["error"]}
    assert "truncated" in errors["truncated.jpg"]
    assert "empty" in errors["empty.png"]
    assert "not an image" in errors["notes.jpg"]
    assert "pixels" in errors["bomb.png"]
    assert "4 of 9 items failed" in capsys.readouterr().err

    # Rerun: nothing left to do, file unchanged.
    before = out.read_text()
    assert main([*args, "--max-new-tokens", "5"]) == EXIT_OK
    assert out.read_text() == before

    # Fix one bad file and retry errors: still one record per image, that one now ok.
    shutil.copy(EXAMPLES / "cat.jpg", root / "notes.jpg")
    assert main([*args, "--max-new-tokens", "5", "--retry-errors"]) == EXIT_PARTIAL
    recs = _records(out)
    assert len(recs) == len({r["path"] for r in recs}) == 9
    fixed = next(r for r in recs if r["path"].endswith("notes.jpg"))
    assert fixed["error"] is None and fixed["caption"]


def test_all_good_csv_and_several_captions(tiny, tmp_path: Path) -> None:
    import csv

    out = tmp_path / "caps.csv"
    code = main(
        ["caption", str(EXAMPLES), "-m", str(tiny("git")), "-o", str(out), "--no-progress",
         "--num-beams", "3", "--num-captions", "2", "--max-new-tokens", "4"]
    )  # fmt: skip
    assert code == EXIT_OK
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 4 and set(rows[0]) == FIELDS
    for row in rows:
        assert len(json.loads(row["captions"])) == 2
        assert float(row["mean_logprob"]) <= 0


def test_stdout_jsonl_when_no_output(tiny, capsys) -> None:
    assert main(["caption", str(EXAMPLES / "cat.jpg"), "-m", str(tiny("blip")),
                 "--no-progress", "--max-new-tokens", "3"]) == EXIT_OK  # fmt: skip
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["path"].endswith("cat.jpg")


def test_torn_last_line_is_repaired(tiny, tmp_path: Path) -> None:
    out = tmp_path / "caps.jsonl"
    args = ["caption", str(EXAMPLES), "-m", str(tiny("blip")), "-o", str(out), "--no-progress",
            "--max-new-tokens", "3"]  # fmt: skip
    assert main(args) == EXIT_OK
    lines = out.read_text().splitlines(keepends=True)
    # As if killed mid-write: two whole records, then half of the third.
    out.write_text("".join(lines[:2]) + lines[2][: len(lines[2]) // 2])
    assert main(args) == EXIT_OK
    recs = _records(out)
    assert sorted(r["path"] for r in recs) == sorted(json.loads(x)["path"] for x in lines)


def test_sidecar_mode(tiny, tmp_path: Path) -> None:
    root = tmp_path / "ds"
    shutil.copytree(EXAMPLES, root)
    (root / "cat.txt").write_text("my own caption\n")
    args = ["caption", str(root), "-m", str(tiny("blip")), "--sidecar", "--no-progress",
            "--max-new-tokens", "3"]  # fmt: skip
    assert main(args) == EXIT_OK
    for name in ("astronaut", "coffee", "rocket"):
        assert (root / f"{name}.txt").read_text().strip()
    assert (root / "cat.txt").read_text() == "my own caption\n"  # never overwritten by default
    assert main([*args, "--overwrite"]) == EXIT_OK
    assert (root / "cat.txt").read_text() != "my own caption\n"


def test_models_and_version(capsys) -> None:
    assert main(["models"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "blip-base" in out and "Salesforce/blip-image-captioning-base" in out
    assert main(["models", "--json"]) == EXIT_OK
    assert any(p["name"] == "git-large" for p in json.loads(capsys.readouterr().out))
    proc = subprocess.run([sys.executable, "-m", "im2text", "--version"], capture_output=True)
    assert proc.returncode == 0 and b"im2text" in proc.stdout
    script = Path(sys.executable).with_name("im2text")  # the console script pip installed
    proc = subprocess.run([str(script), "models"], capture_output=True)
    assert proc.returncode == 0 and b"blip-base" in proc.stdout


def test_offline_preset_exit_code(tmp_path: Path, capsys) -> None:
    code = main(["caption", str(EXAMPLES), "-m", "blip-base", "-o", str(tmp_path / "o.jsonl")])
    assert code == EXIT_MODEL
    err = capsys.readouterr().err
    assert "im2text download blip-base --to DIR" in err and "Traceback" not in err


def test_bad_usage_exit_code(tiny) -> None:
    with pytest.raises(SystemExit) as e:
        main(["caption"])  # no inputs
    assert e.value.code == 2
    code = main(["caption", str(EXAMPLES), "-m", str(tiny("blip")), "--num-beams", "0"])
    assert code == 2


def test_kill_minus_9_then_resume(tiny, tmp_path: Path) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    for i, im in enumerate(random_images(60, seed=1, size=(32, 32))):
        im.save(folder / f"img{i:03d}.png")
    out = tmp_path / "caps.jsonl"
    cmd = [sys.executable, "-m", "im2text", "caption", str(folder), "-m", str(tiny("blip")),
           "-o", str(out), "-b", "2", "--no-progress", "--max-new-tokens", "24",
           "--min-new-tokens", "24"]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if out.exists() and out.read_text().count("\n") >= 4:
            break
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = out.read_text().count("\n")
    assert 4 <= done_before < 60, "the kill must land mid-run"
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{done_before} of 60 items already done" in rerun.stderr
    lines = out.read_text().splitlines()
    recs = [json.loads(line) for line in lines]  # every line is valid JSON
    paths = [r["path"] for r in recs]
    assert len(paths) == len(set(paths)) == 60
