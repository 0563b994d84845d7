"""CLI for the other tasks (ask, match, classify) and the embedding index (index, search)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import EXAMPLES, random_images

import im2text
from im2text.cli import EXIT_OK, EXIT_PARTIAL, main
from im2text.jobs.index import EmbeddingIndex


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_ask_pairs_file_resumes_by_path_and_question(tiny, tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(
        "image,question\n"
        f"{EXAMPLES / 'cat.jpg'},what animal is this?\n"
        f"{EXAMPLES / 'cat.jpg'},what color is it?\n"
        f"{EXAMPLES / 'coffee.jpg'},\n"
        f"{EXAMPLES / 'rocket.jpg'},is it flying?\n"
    )
    out = tmp_path / "answers.jsonl"
    args = ["ask", "--questions", str(pairs), "-m", str(tiny("blip-vqa")), "-o", str(out),
            "--no-progress", "--max-new-tokens", "3"]  # fmt: skip
    assert main(args) == EXIT_PARTIAL  # the empty question fails alone
    recs = _records(out)
    assert len(recs) == 4
    assert set(recs[0]) == {"path", "question", "answer", "confidence", "ranking", "model", "error"}
    assert [r["error"] is None for r in recs] == [True, True, False, True]
    assert "empty question" in recs[2]["error"]
    assert all(0 <= r["confidence"] <= 1 for r in recs if r["error"] is None)
    before = out.read_text()
    assert main(args) == EXIT_OK  # resume: nothing left but nothing duplicated
    assert out.read_text() == before


def test_ask_question_flag_and_candidates(tiny, capsys) -> None:
    code = main(["ask", str(EXAMPLES / "cat.jpg"), "-q", "is it a cat?", "-m",
                 str(tiny("blip-vqa")), "--candidates", "yes", "no", "--no-progress"])  # fmt: skip
    assert code == EXIT_OK
    rec = json.loads(capsys.readouterr().out)
    assert rec["answer"] in {"yes", "no"}
    assert sum(p for _, p in rec["ranking"]) == pytest.approx(1.0, abs=1e-4)


def test_match_and_classify_cli(tiny, tmp_path: Path) -> None:
    out = tmp_path / "m.jsonl"
    assert main(["match", str(EXAMPLES), "-m", str(tiny("clip")), "-t", "a cat", "-t", "a rocket",
                 "-o", str(out), "--no-progress"]) == EXIT_OK  # fmt: skip
    recs = _records(out)
    assert len(recs) == 4 and all(len(r["similarity"]) == 2 for r in recs)
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\nrocket\ncoffee\n")
    out2 = tmp_path / "c.csv"
    assert main(["classify", str(EXAMPLES), "-m", str(tiny("clip")), "--labels", f"@{labels}",
                 "--templates", "ensemble", "--top-k", "2", "-o", str(out2),
                 "--no-progress"]) == EXIT_OK  # fmt: skip
    assert out2.read_text().splitlines()[0] == "path,label,probability,labels,model,error"
    assert len(out2.read_text().splitlines()) == 5
    assert main(["classify", str(EXAMPLES), "-m", str(tiny("clip")), "--labels", ","]) == 2


def test_index_is_incremental_and_search_finds_the_right_image(tiny, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for p in list(EXAMPLES.glob("*.jpg"))[:2]:
        shutil.copy(p, photos / p.name)
    index_dir = tmp_path / "idx"
    model = str(tiny("clip"))
    assert main(["index", str(photos), "--out", str(index_dir), "-m", model, "--no-progress"]) == 0
    first = EmbeddingIndex(index_dir)
    assert len(first) == 2
    old_vectors = np.array(first.vectors())

    for p in list(EXAMPLES.glob("*.jpg"))[2:]:
        shutil.copy(p, photos / p.name)
    random_images(1)[0].save(photos / "noise.png")
    (photos / "broken.jpg").write_bytes(b"\xff\xd8garbage")
    code = main(["index", str(photos), "--out", str(index_dir), "-m", model, "--no-progress"])
    assert code == EXIT_PARTIAL  # the broken file is reported, the rest indexed
    index = EmbeddingIndex(index_dir)
    assert len(index) == 5
    assert np.array_equal(np.array(index.vectors())[:2], old_vectors)  # old rows untouched

    # An image query finds itself first; a text query returns the brute-force ranking.
    clip = im2text.load(model)
    target = str(photos / "coffee.jpg")
    hits = index.search(clip.embed(target)[0], k=3)
    assert hits[0].path == target and hits[0].score == pytest.approx(1.0, abs=1e-5)
    q = clip.embed(texts=["a cup of coffee"])[0]
    sims = np.array(index.vectors()) @ q
    assert [h.path for h in index.search(q, k=5)] == [index.paths[i] for i in np.argsort(-sims)]


def test_search_cli_and_torn_index_recovery(tiny, tmp_path: Path, capsys) -> None:
    index_dir = tmp_path / "idx"
    model = str(tiny("clip"))
    assert main(["index", str(EXAMPLES), "--out", str(index_dir), "-m", model,
                 "--no-progress"]) == EXIT_OK  # fmt: skip
    capsys.readouterr()
    assert main(["search", str(index_dir), str(EXAMPLES / "cat.jpg"), "-k", "2"]) == EXIT_OK
    hits = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(hits) == 2 and hits[0]["path"] == str(EXAMPLES / "cat.jpg")
    # A kill between writing a vector and its item line: the next open trims the extra vector.
    with open(index_dir / "vectors.f32", "ab") as f:
        f.write(np.ones(32, dtype="<f4").tobytes()[:50])
    with open(index_dir / "items.jsonl", "a") as f:
        f.write('{"path": "half')
    index = EmbeddingIndex(index_dir)
    assert len(index) == 4 and (index_dir / "vectors.f32").stat().st_size == 4 * 32 * 4


def test_faiss_search_equals_exact_search(tiny, tmp_path: Path) -> None:
    pytest.importorskip("faiss")
    index = EmbeddingIndex.create(tmp_path / "idx", model="x", dim=16)
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(50, 16)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    for i, v in enumerate(vecs):
        index.add(f"img{i}", v)
    q = vecs[7] + 0.1 * vecs[3]
    exact = index.search(q, k=5)
    fast = index.search(q, k=5, use_faiss=True)
    assert [h.path for h in fast] == [h.path for h in exact] and exact[0].path == "img7"
    assert [h.score for h in fast] == pytest.approx([h.score for h in exact], abs=1e-5)
