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
    size = (index_dir / "vectors.f32").stat().st_size
    items = (index_dir / "items.jsonl").read_bytes()
    index = EmbeddingIndex(index_dir)  # a reader ignores the torn tail and writes nothing
    assert len(index) == 4 and (index_dir / "vectors.f32").stat().st_size == size
    assert (index_dir / "items.jsonl").read_bytes() == items
    assert [h.path for h in index.search(index.vectors()[0], 1)] == [index.paths[0]]
    writer = EmbeddingIndex.open_or_create(index_dir, model=model, dim=32)  # the writer repairs
    assert len(writer) == 4 and (index_dir / "vectors.f32").stat().st_size == 4 * 32 * 4
    with pytest.raises(ValueError, match="being written by another process"):
        EmbeddingIndex.open_or_create(index_dir, model=model, dim=32)
    writer.close()
    with pytest.raises(ValueError, match="holds embeddings of"):  # same dim, another model
        EmbeddingIndex.open_or_create(index_dir, model="other-model", dim=32)
    with pytest.raises(ValueError, match="NaN"):
        w = EmbeddingIndex.open_or_create(index_dir, model=model, dim=32)
        try:
            w.add("nan.png", np.full(32, np.nan))
        finally:
            w.close()
    with pytest.raises(ValueError, match="k must be >= 1"):
        index.search(index.vectors()[0], 0)
    garbage = EmbeddingIndex.open_or_create(index_dir, model=model, dim=32)
    with open(index_dir / "vectors.f32", "r+b") as f:  # garbage bytes over the first vector
        f.write(np.full(32, np.nan, dtype="<f4").tobytes())
    with pytest.raises(ValueError, match="NaN or infinite vectors"):
        garbage.search(np.ones(32, dtype=np.float32) / np.sqrt(32), 4)
    garbage.close()
    with pytest.raises(SystemExit) as exit_:
        main(["search", str(index_dir), "a cat", "-k", "0"])
    assert exit_.value.code == 2
    (index_dir / "meta.json").write_text("{not json")
    assert main(["search", str(index_dir), "a cat"]) == 2
    assert "meta.json is damaged" in capsys.readouterr().err


def test_search_while_a_writer_adds_never_damages_the_index(tmp_path: Path) -> None:
    import threading

    folder = tmp_path / "idx"
    writer = EmbeddingIndex.create(folder, model="m", dim=8)
    rng = np.random.default_rng(1)
    vecs = rng.normal(size=(300, 8)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    seen: list[int] = []
    problems: list[BaseException] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                index = EmbeddingIndex(folder)  # read-only, beside the writer
                if len(index):
                    hit = index.search(index.vectors()[len(index) - 1], 1)[0]
                    assert hit.path == index.paths[-1] and hit.score > 0.999
                seen.append(len(index))
            except BaseException as e:
                problems.append(e)

    reader = threading.Thread(target=read)
    reader.start()
    for i, v in enumerate(vecs):
        writer.add(f"img{i}", v)
    stop.set()
    reader.join()
    writer.close()
    assert not problems and len(set(seen)) > 3  # it read many states, all of them valid
    final = EmbeddingIndex(folder)
    assert len(final) == 300 and (folder / "vectors.f32").stat().st_size == 300 * 8 * 4


def test_faiss_search_equals_exact_search(tiny, tmp_path: Path) -> None:
    pytest.importorskip("faiss")
    index = EmbeddingIndex.create(tmp_path / "idx", model="x", dim=16)  # open for writing
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
