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
    p.add_argument("--top-k", "-k", type=int, default=5)
    p.add_argument("--faiss", action="store_true", help="use faiss (exact inner product)")
    add_model_args(p, None)
    p.set_defaults(func=_cmd_search, batch_size=8, loader_threads=1)


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
    todo = [s for s in sources if s.key not in index]
    err(f"im2text: index has {len(index)} images; adding {len(todo)} new")
    failed = 0
    for emb in model.embed_iter(todo, progress=not args.no_progress, total=len(todo)):
        if not emb.ok:
            failed += 1
            err(f"im2text: {emb.error}")
            continue
        index.add(emb.source, emb.vector)
    err(f"im2text: index now holds {len(index)} images")
    return EXIT_PARTIAL if failed else EXIT_OK


def _index_sharded(args: argparse.Namespace, sources: list[Any]) -> int:
    """Embed through the engine into OUT/shards, then append the new vectors in input order
    (JSON records keep 6 decimals: cosine scores agree with the in-process index to ~1e-6)."""
    import numpy as np

    from im2text.jobs.index import EmbeddingIndex
    from im2text.jobs.shards import Manifest, Storage, read_shard

    folder = Path(args.out)
    index = EmbeddingIndex(folder) if (folder / "meta.json").is_file() else None
    todo = [s for s in sources if index is None or s.key not in index]
    args.output = str(folder / "shards")
    if todo:
        run_sharded(args, "embed", todo, {})
    storage = Storage(args.output)
    manifest = Manifest.load(storage)
    failed = 0
    for shard in range(len(manifest.shards) if manifest else 0):
        for rec in read_shard(storage, shard) or []:
            if rec.get("error"):
                failed += 1
                continue
            if index is None:
                index = EmbeddingIndex.open_or_create(folder, model=args.model, dim=rec["dim"])
            if rec["path"] not in index:
                index.add(rec["path"], np.asarray(rec["embedding"], dtype=np.float32))
    err(f"im2text: index now holds {len(index) if index else 0} images")
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
