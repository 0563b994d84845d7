"""`im2text index` (embed images into a searchable, incremental index) and `im2text search`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from im2text.cli._common import (
    EXIT_OK,
    EXIT_PARTIAL,
    add_engine_args,
    add_loading_args,
    add_model_args,
    err,
    load_model,
    run_sharded,
)


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("index", help="embed images into a searchable index (incremental)")
    p.add_argument("inputs", nargs="+", help="image files, folders or globs")
    p.add_argument("--out", "--output", required=True, help="index folder (created or extended)")
    add_loading_args(p)
    add_model_args(p, "clip-vit-base-patch32")
    add_engine_args(p)
    p.set_defaults(func=_cmd_index)

    p = sub.add_parser("search", help="search an index with a text or an image")
    p.add_argument("index", help="index folder made by `im2text index`")
    p.add_argument("query", help="text, or the path of an image")
    p.add_argument("--top-k", "-k", type=_positive, default=5)
    p.add_argument("--faiss", action="store_true", help="use faiss (exact inner product)")
    add_model_args(p, None)
    p.set_defaults(func=_cmd_search, batch_size=8, loader_threads=1)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _cmd_index(args: argparse.Namespace) -> int:
    from im2text.images import expand_inputs
    from im2text.jobs.index import EmbeddingIndex
    from im2text.jobs.shards import expand_list_files

    sources = expand_inputs(expand_list_files(args.inputs))
    if args.engine:
        return _index_sharded(args, sources)
    model = load_model(args)
    dim = int(model.embed(texts=["probe"]).shape[1])
    index = EmbeddingIndex.open_or_create(args.out, model=args.model, dim=dim)
    try:
        todo = [s for s in sources if s.key not in index]
        err(f"im2text: index has {len(index)} images; adding {len(todo)} new")
        results = model.embed_iter(todo, progress=not args.no_progress, total=len(todo))
        failed = sum(not _add(index, e.source, e.vector, e.error) for e in results)
        err(f"im2text: index now holds {len(index)} images")
    finally:
        index.close()
    return EXIT_PARTIAL if failed else EXIT_OK


def _add(index: Any, path: str, vector: Any, error: str | None) -> bool:
    """Add one embedding; False (reported) for a failed item or a vector the index refuses."""
    if error is None:
        try:
            index.add(path, vector)
            return True
        except ValueError as e:
            error = str(e)
    err(f"im2text: {error}")
    return False


def _index_sharded(args: argparse.Namespace, sources: list[Any]) -> int:
    """Embed through the engine into OUT/shards, then append the new vectors in input order
    (JSON records keep 6 decimals: cosine scores agree with the in-process index to ~1e-6)."""
    import numpy as np

    from im2text.jobs.index import EmbeddingIndex
    from im2text.jobs.shards import Manifest, Storage, read_shard

    folder = Path(args.out)
    existing = EmbeddingIndex(folder) if (folder / "meta.json").is_file() else None
    todo = [s for s in sources if existing is None or s.key not in existing]
    args.output = str(folder / "shards")
    if todo:
        run_sharded(args, "embed", todo, {})
    storage = Storage(args.output)
    manifest = Manifest.load(storage)
    records = [
        rec
        for shard in range(len(manifest.shards) if manifest else 0)
        for rec in read_shard(storage, shard) or []
    ]
    dims = [r["dim"] for r in records if not r.get("error")]
    if existing is None and not dims:
        err("im2text: no image could be embedded; no index written")
        return EXIT_PARTIAL
    dim = existing.dim if existing else dims[0]
    index = EmbeddingIndex.open_or_create(folder, model=args.model, dim=dim)
    failed = 0
    try:
        for rec in records:
            if rec.get("error") or rec["path"] not in index:
                vector = np.asarray(rec["embedding"] or [], dtype=np.float32)
                failed += not _add(index, rec["path"], vector, rec.get("error"))
        err(f"im2text: index now holds {len(index)} images")
    finally:
        index.close()
    return EXIT_PARTIAL if failed else EXIT_OK


def _cmd_search(args: argparse.Namespace) -> int:
    from im2text.jobs.index import EmbeddingIndex

    index = EmbeddingIndex(args.index)
    args.model = args.model or index.meta["model"]
    model = load_model(args)
    if Path(args.query).is_file():  # an image query: find similar images
        query = model.embed(args.query)[0]
    else:
        query = model.embed(texts=[args.query])[0]
    for hit in index.search(query, args.top_k, use_faiss=args.faiss):
        print(json.dumps({"path": hit.path, "score": round(hit.score, 6)}), flush=True)
    return EXIT_OK
