"""An on-disk embedding index for search: append-only, incremental, exact by default.

Layout of an index folder (also in the README):
    meta.json      {"format": 1, "model": ..., "dim": D, "dtype": "float32"}
    vectors.f32    N x D little-endian float32, row i belongs to line i of items.jsonl
    items.jsonl    one {"path": ..., "row": i} per line

Vectors are appended before their item line, and a reopen trims vectors past the last whole
item line, so a kill at any moment leaves a consistent index. Adding a folder again embeds only
the images not already in it. Search is an exact dot product over the memory-mapped vectors
(they are L2-normalised, so it is cosine similarity); `use_faiss=True` uses faiss's exact
inner-product index instead when installed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from im2text.jobs.records import atomic_write, record_line, take_lock

FORMAT = 1


@dataclass(frozen=True)
class Hit:
    path: str
    score: float  # cosine similarity to the query


class EmbeddingIndex:
    """An index folder. Opened plainly it is read-only: a search never writes, even beside a
    writer that is adding to it. `open_or_create` opens it for writing, under a lock."""

    def __init__(self, folder: str | os.PathLike[str], *, writable: bool = False):
        self.folder = Path(folder)
        meta_path = self.folder / "meta.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"not an im2text index (no meta.json): {self.folder}")
        try:
            self.meta = json.loads(meta_path.read_text(encoding="utf-8"))
            self.dim = int(self.meta["dim"])
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            raise ValueError(f"{meta_path} is damaged (not an im2text index's meta.json)") from None
        if self.meta.get("format") != FORMAT:
            raise ValueError(f"{meta_path}: unsupported index format {self.meta.get('format')!r}")
        self._lock: Any = None
        if writable:
            self._lock = take_lock(
                self.folder / ".lock",
                ValueError(f"index {self.folder} is being written by another process"),
            )
        self.paths = self._recover(repair=writable)

    @classmethod
    def create(cls, folder: str | os.PathLike[str], *, model: str, dim: int) -> EmbeddingIndex:
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        meta = {"format": FORMAT, "model": model, "dim": dim, "dtype": "float32"}
        (out / "vectors.f32").touch()
        (out / "items.jsonl").touch()
        atomic_write(out / "meta.json", json.dumps(meta, indent=2) + "\n")  # written last
        return cls(out, writable=True)

    @classmethod
    def open_or_create(cls, folder: str | os.PathLike[str], *, model: str, dim: int):
        """Open for adding (locked; `close()` releases it). Another model's index is refused,
        even of the same dimension: its vectors live in another space."""
        if (Path(folder) / "meta.json").is_file():
            index = cls(folder, writable=True)
            if index.meta.get("model") != model:
                index.close()
                raise ValueError(
                    f"index {folder} holds embeddings of {index.meta.get('model')!r}, not "
                    f"{model!r}; use another folder"
                )
            if index.dim != dim:
                index.close()
                raise ValueError(f"index has dim {index.dim}, model gives {dim}")
            return index
        return cls.create(folder, model=model, dim=dim)

    def close(self) -> None:
        if self._lock is not None and not self._lock.closed:
            self._lock.close()

    def _recover(self, *, repair: bool) -> list[str]:
        """The items that have their vector. A writer repairs what a kill left (a torn item
        line, vectors of items never recorded); a reader only ignores it."""
        items = self.folder / "items.jsonl"
        data = items.read_bytes()
        whole = data[: data.rfind(b"\n") + 1]
        if repair and len(whole) != len(data):
            items.write_bytes(whole)  # a torn last line from a kill
        paths = []
        for n, line in enumerate(whole.decode("utf-8", errors="surrogateescape").split("\n"), 1):
            if line:
                try:
                    paths.append(json.loads(line)["path"])
                except (ValueError, KeyError, TypeError):
                    raise ValueError(f"{items}:{n} is damaged (not an index item)") from None
        vectors = self.folder / "vectors.f32"
        size = len(paths) * self.dim * 4
        have = vectors.stat().st_size
        if have < size:
            raise ValueError(f"index {self.folder} is damaged: fewer vectors than items")
        if repair and have != size:
            with open(vectors, "r+b") as f:  # vectors of items never recorded: drop them
                f.truncate(size)
        return paths

    def __len__(self) -> int:
        return len(self.paths)

    def __contains__(self, path: object) -> bool:
        if not hasattr(self, "_set"):
            self._set = set(self.paths)
        return path in self._set

    def add(self, path: str, vector: np.ndarray) -> None:
        if self._lock is None:
            raise ValueError("index opened read-only; use EmbeddingIndex.open_or_create to add")
        vec = np.asarray(vector, dtype="<f4").reshape(-1)
        if vec.shape[0] != self.dim:
            raise ValueError(f"vector has dim {vec.shape[0]}, index has {self.dim}")
        if not np.isfinite(vec).all():
            raise ValueError(f"{path}: the embedding holds NaN or infinite values; not indexed")
        with open(self.folder / "vectors.f32", "ab") as f:
            f.write(vec.tobytes())
            f.flush()
        with open(self.folder / "items.jsonl", "a", encoding="utf-8") as f:
            f.write(record_line({"path": path, "row": len(self.paths)}))
            f.flush()
        self.paths.append(path)
        if hasattr(self, "_set"):
            self._set.add(path)

    def vectors(self) -> np.ndarray:
        """(N, D) float32, memory-mapped (no copy of a large index into RAM)."""
        if not self.paths:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.memmap(
            self.folder / "vectors.f32", dtype="<f4", mode="r", shape=(len(self.paths), self.dim)
        )

    def search(self, query: np.ndarray, k: int = 10, *, use_faiss: bool = False) -> list[Hit]:
        """Top-k items by cosine similarity to the (normalised) query vector."""
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        if q.shape[0] != self.dim:
            raise ValueError(f"query has dim {q.shape[0]}, index has {self.dim}")
        if not np.isfinite(q).all():
            raise ValueError("the query embedding holds NaN or infinite values")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        k = min(k, len(self.paths))
        if not self.paths:
            return []
        if use_faiss:
            scores, rows = _faiss_search(np.asarray(self.vectors()), q, k)
        else:
            sims = self.vectors() @ q  # (N,)
            rows = np.argpartition(-sims, k - 1)[:k]
            rows = rows[np.argsort(-sims[rows], kind="stable")]
            scores = sims[rows]
        if not np.isfinite(scores).all():  # a damaged vectors.f32: never print NaN as a score
            raise ValueError(f"{self.folder / 'vectors.f32'} holds NaN or infinite vectors")
        return [Hit(self.paths[int(r)], float(s)) for r, s in zip(rows, scores, strict=True)]

    def items(self) -> Iterator[str]:
        return iter(self.paths)


def _faiss_search(vectors: np.ndarray, q: np.ndarray, k: int) -> tuple[Any, Any]:
    try:
        import faiss
    except ImportError as e:
        raise ImportError("faiss is not installed: pip install 'im2text[faiss]'") from e
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    scores, rows = index.search(q[None, :], k)
    return scores[0], rows[0]
