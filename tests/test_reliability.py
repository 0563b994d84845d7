"""Reliability round 2: outputs belong to one job, foreign files stay untouched, one input is one
record, every legal file name round-trips, and damaged checkpoints or bad arguments fail clearly."""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import threading
from pathlib import Path

import pytest
from conftest import random_images

import im2text
from im2text.cli import EXIT_MODEL, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, main
from im2text.jobs.records import JOB_SUFFIX, OutputError, RecordWriter

GEN = ["--max-new-tokens", "5", "--min-new-tokens", "5", "--no-progress"]


def _folder(tmp_path: Path, n: int = 3, name: str = "imgs") -> Path:
    folder = tmp_path / name
    folder.mkdir()
    for i, im in enumerate(random_images(n, seed=4, size=(32, 32))):
        im.save(folder / f"img{i}.png")
    return folder


def test_an_output_belongs_to_one_job(tiny, tmp_path: Path, capsys) -> None:
    folder = _folder(tmp_path)
    out = tmp_path / "caps.jsonl"
    base = ["caption", str(folder), "-m", str(tiny("blip")), "-o", str(out)]
    assert main([*base, *GEN]) == EXIT_OK
    job = json.loads((tmp_path / f"caps.jsonl{JOB_SUFFIX}").read_text())["job"]
    assert job["task"] == "caption" and job["params"]["max_new_tokens"] == 5
    before = out.read_bytes()
    capsys.readouterr()
    # Another model, another prompt, another task: refused, naming the difference.
    assert main([*base, *GEN, "--prompt", "a photo of"]) == EXIT_USAGE
    assert "prompt: None -> 'a photo of'" in capsys.readouterr().err
    other = ["caption", str(folder), "-m", str(tiny("git")), "-o", str(out)]
    assert main([*other, *GEN]) == EXIT_USAGE
    assert "model:" in capsys.readouterr().err
    code = main(["classify", str(folder), "-m", str(tiny("vit")), "-o", str(out), "--no-progress"])
    assert code == EXIT_USAGE and "task: 'caption' -> 'classify'" in capsys.readouterr().err
    assert out.read_bytes() == before
    # --other-job appends knowingly: only the new image runs.
    random_images(1, seed=7, size=(32, 32))[0].save(folder / "new.png")
    assert main([*base, "--max-new-tokens", "7", "--no-progress", "--other-job"]) == EXIT_OK
    assert out.read_bytes().startswith(before) and len(out.read_text().splitlines()) == 4


def test_one_input_one_record(tiny, tmp_path: Path, monkeypatch, capsys) -> None:
    folder = _folder(tmp_path)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "caps.jsonl"
    model = str(tiny("blip"))
    # The same file given twice, and the folder as a relative path: three records.
    args = ["caption", "imgs", "imgs/img0.png", "-m", model, "-o", str(out), *GEN]
    assert main(args) == EXIT_OK
    assert len(out.read_text().splitlines()) == 3
    for spelling in ("./imgs/", str(folder)):  # the same folder, spelled otherwise
        capsys.readouterr()
        assert main(["caption", spelling, "-m", model, "-o", str(out), *GEN]) == EXIT_OK
        assert "3 of 3 items already done" in capsys.readouterr().err
    assert len(out.read_text().splitlines()) == 3


def test_retry_errors_keeps_the_records_of_inputs_not_given(tiny, tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    (folder / "bad1.png").write_bytes(b"nope")
    (folder / "bad2.png").write_bytes(b"nope")
    out = tmp_path / "caps.jsonl"
    model = str(tiny("blip"))
    assert main(["caption", str(folder), "-m", model, "-o", str(out), *GEN]) == EXIT_PARTIAL
    # Retry one failed input only: the other failed record stays, once.
    retry = ["caption", str(folder / "bad1.png"), "-m", model, "-o", str(out), "--retry-errors"]
    assert main([*retry, *GEN]) == EXIT_PARTIAL
    paths = [json.loads(line)["path"] for line in out.read_text().splitlines()]
    assert sorted(Path(p).name for p in paths) == ["bad1.png", "bad2.png", "img0.png",
                                                    "img1.png", "img2.png"]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("notes.jsonl", b"my own notes, not records\n"),
        ("data.jsonl", bytes(range(256)) * 4),
        ("records.csv", b'{"path": "a.png", "caption": "x"}\n'),  # JSONL named .csv
        ("other.csv", b"id,score\n1,2\n"),  # another CSV
    ],
)
def test_foreign_output_is_refused_untouched(tiny, tmp_path: Path, name, content, capsys) -> None:
    folder = _folder(tmp_path, 1)
    target = tmp_path / name
    target.write_bytes(content)
    code = main(["caption", str(folder), "-m", str(tiny("blip")), "-o", str(target), *GEN])
    assert code == EXIT_USAGE and "left untouched" in capsys.readouterr().err
    assert target.read_bytes() == content


def test_rewrite_keeps_mode_and_special_files_and_lock(tiny, tmp_path: Path) -> None:
    folder = _folder(tmp_path, 2)
    model = str(tiny("blip"))
    out = tmp_path / "caps.jsonl"
    assert main(["caption", str(folder), "-m", model, "-o", str(out), *GEN]) == EXIT_OK
    out.chmod(0o640)
    with open(out, "a") as f:
        f.write('{"path": "torn')  # forces a rewrite on reopen
    assert main(["caption", str(folder), "-m", model, "-o", str(out), *GEN]) == EXIT_OK
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    # A second writer on the same output is refused at once.
    holder = RecordWriter(out, job=None)
    try:
        with pytest.raises(OutputError, match="another im2text process"):
            RecordWriter(out)
        assert main(["caption", str(folder), "-m", model, "-o", str(out), *GEN]) == EXIT_USAGE
    finally:
        holder.close()
    # /dev/null and a FIFO are streams: written, never read back, no sidecar next to them.
    assert main(["caption", str(folder), "-m", model, "-o", "/dev/null", *GEN]) == EXIT_OK
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    assert main(["caption", str(folder), "-m", model, "-o", str(fifo), *GEN]) == EXIT_OK
    reader.join(30)
    assert len(got[0].decode().splitlines()) == 2
    assert not (tmp_path / f"pipe.jsonl{JOB_SUFFIX}").exists()


def test_sidecar_name_clash_is_refused(tiny, tmp_path: Path, capsys) -> None:
    folder = _folder(tmp_path, 1)
    random_images(1, seed=2)[0].save(folder / "img0.jpg")  # img0.png and img0.jpg
    code = main(["caption", str(folder), "-m", str(tiny("blip")), "--sidecar", *GEN])
    assert code == EXIT_USAGE and "would be written by two images" in capsys.readouterr().err
    assert not list(folder.glob("*.txt"))


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_every_legal_file_name_round_trips(tiny, tmp_path: Path, fmt: str, capsys) -> None:
    folder = tmp_path / "odd"
    folder.mkdir()
    names = [b"\xff\xfelatin1.png", b"cr\rname.png", "sep\u2028x.png".encode(),
             "nel\x85y.png".encode(), b"plain.png"]  # fmt: skip
    for i, raw in enumerate(names):
        with open(os.path.join(os.fsencode(folder), raw), "wb") as f:
            random_images(1, seed=i, size=(32, 32))[0].save(f, format="PNG")
    out = tmp_path / f"caps.{fmt}"
    model = str(tiny("blip"))
    assert main(["caption", str(folder), "-m", model, "-o", str(out), *GEN]) == EXIT_OK
    data = out.read_bytes()
    if fmt == "jsonl":
        data.decode("utf-8")  # valid UTF-8 JSON lines, whatever the names
        lines = data.decode().splitlines()  # even str.splitlines() sees one record a line
        paths = [json.loads(line)["path"] for line in lines]
    else:
        text = data.decode("utf-8", errors="surrogateescape")
        paths = [row["path"] for row in csv.DictReader(io.StringIO(text, newline=""))]
    assert sorted(os.fsencode(p) for p in paths) == sorted(
        os.path.join(os.fsencode(folder), raw) for raw in names
    )
    capsys.readouterr()
    assert main(["caption", str(folder), "-m", model, "-o", str(out), *GEN]) == EXIT_OK
    assert "5 of 5 items already done" in capsys.readouterr().err


def _copy_checkpoint(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_damaged_checkpoints_fail_clearly(tiny, tmp_path: Path, capsys) -> None:
    import numpy as np
    from safetensors.numpy import load_file, save_file

    base = tiny("blip")
    folder = _folder(tmp_path, 1)
    cases: dict[str, Path] = {}
    truncated = _copy_checkpoint(base, tmp_path / "truncated")
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    cases["truncated weights"] = truncated
    empty = tmp_path / "not-a-checkpoint"
    empty.mkdir()
    (empty / "readme.md").write_text("hello")
    cases["not a checkpoint"] = empty
    unknown = _copy_checkpoint(base, tmp_path / "unknown")
    cfg = json.loads((unknown / "config.json").read_text())
    cfg["model_type"] = "no-such-model"
    (unknown / "config.json").write_text(json.dumps(cfg))
    cases["unknown model_type"] = unknown
    notok = _copy_checkpoint(base, tmp_path / "no-tokenizer")
    for f in notok.iterdir():
        if "tokenizer" in f.name or f.name in ("vocab.txt", "special_tokens_map.json"):
            f.unlink()
    cases["no tokenizer"] = notok
    nan = _copy_checkpoint(base, tmp_path / "nan")
    tensors = load_file(nan / "model.safetensors")
    key = next(k for k in tensors if k.endswith("weight"))
    tensors[key] = np.full_like(tensors[key], np.nan)
    save_file(tensors, nan / "model.safetensors", metadata={"format": "pt"})
    cases["NaN weights"] = nan
    for what, path in cases.items():
        with pytest.raises(im2text.CheckpointError):
            im2text.load(str(path))
        capsys.readouterr()
        code = main(["caption", str(folder), "-m", str(path), *GEN])
        err = capsys.readouterr().err
        assert code == EXIT_MODEL, (what, err)
        assert "Traceback" not in err and "cannot load model" in err, (what, err)


def test_invalid_arguments_are_value_errors_and_generators_stream(tiny) -> None:
    model = im2text.load(str(tiny("blip")))
    for bad in ({"temperature": float("nan"), "do_sample": True}, {"top_p": 0.0},
                {"repetition_penalty": float("inf")}, {"temperature": "hot"}):  # fmt: skip
        with pytest.raises(ValueError):
            model.caption(random_images(1)[0], **bad)
    clip = im2text.load(str(tiny("clip")))
    with pytest.raises(ValueError, match="exactly once"):
        clip.classify(random_images(1)[0], labels=["a", "b"], templates=["no slot"])
    with pytest.raises(ValueError):
        clip.embed([])
    # A generator of PIL images: captions for each, equal to a list's.
    images = random_images(3, seed=5)
    from_list = [c.text for c in model.caption(images, max_new_tokens=4)]
    from_generator = model.caption((im for im in images), max_new_tokens=4)
    assert [c.text for c in from_generator] == from_list
    streamed = list(model.caption_iter((im for im in images), max_new_tokens=4))
    assert [c.text for c in streamed] == from_list
    assert [c.source for c in streamed] == ["<PIL #0>", "<PIL #1>", "<PIL #2>"]


def _caption_data(
    root: Path, n: int, bad: tuple[int, ...] = (), long: tuple[int, ...] = ()
) -> Path:
    from im2text.testing import shape_dataset

    root.mkdir(parents=True)
    with open(root / "metadata.jsonl", "w") as f:
        for i, (img, cap) in enumerate(shape_dataset(n, seed=2, image_size=32)):
            if i in bad:
                (root / f"{i:03d}.png").write_bytes(b"\x89PNG broken")
            else:
                img.save(root / f"{i:03d}.png")
            text = " ".join([cap] * 40) if i in long else cap
            f.write(json.dumps({"file_name": f"{i:03d}.png", "text": text}) + "\n")
    return root


def test_bad_training_data_fails_its_own_example(tiny, tmp_path: Path, capsys) -> None:
    data = _caption_data(tmp_path / "data", 16, bad=(3, 11), long=(0, 1, 2, 4, 5, 6))
    run = tmp_path / "run"
    args = ["train", "-m", str(tiny("blip")), "--train", str(data), "--max-steps", "6",
            "--eval-every", "3", "--batch-size", "4", "--val-fraction", "0.25"]  # fmt: skip
    with pytest.warns(UserWarning, match="truncated"):  # 40x too long for 64 positions
        assert main([*args, "-o", str(run)]) == EXIT_OK
    summary = json.loads(capsys.readouterr().out)
    assert summary["truncated_texts"] >= 1 and summary["skipped_images"] >= 1
    assert all(Path(summary[k]).is_dir() for k in ("best_dir", "last_dir") if summary[k])
    events = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    skipped = [e for e in events if "skipped unreadable image" in json.dumps(e)]
    assert skipped and all(("003.png" in json.dumps(e)) or ("011.png" in json.dumps(e))
                           for e in skipped)  # fmt: skip
    # The folder holds a run: refused without --resume/--overwrite; --resume passes the bad image.
    assert main([*args, "-o", str(run)]) == EXIT_USAGE
    assert "already holds a run" in capsys.readouterr().err
    assert main([*args[:2], str(tiny("git")), *args[3:], "-o", str(run), "--resume"]) == EXIT_USAGE
    assert "is a run of" in capsys.readouterr().err
    assert main([*args, "--max-steps", "9", "-o", str(run), "--resume"]) == EXIT_OK
    assert main([*args, "-o", str(run), "--overwrite"]) == EXIT_OK
    # --val equal to --train warns.
    with pytest.warns(UserWarning, match="validation scores will be optimistic"):
        main([*args, "--val", str(data), "-o", str(tmp_path / "v")])


def test_empty_vqa_answers_are_refused(tiny, tmp_path: Path, capsys) -> None:
    root = tmp_path / "vqa"
    root.mkdir()
    for name, im in zip("ab", random_images(2), strict=True):
        im.save(root / f"{name}.png")
    with open(root / "qa.jsonl", "w") as f:
        f.write(json.dumps({"file_name": "a.png", "question": "what?", "answer": "red"}) + "\n")
        f.write(json.dumps({"file_name": "b.png", "question": "how many?", "answer": " "}) + "\n")
    code = main(["train", "-m", str(tiny("blip-vqa")), "--task", "vqa", "--train",
                 str(root / "qa.jsonl"), "-o", str(tmp_path / "run"), "--max-steps", "1",
                 "--val-fraction", "0.5"])  # fmt: skip
    assert code == EXIT_USAGE and "no non-empty answer" in capsys.readouterr().err
