"""The `im2text` command line (also `python -m im2text`).

Exit codes (stable, documented in the README):
    0  every item succeeded
    1  unexpected internal error
    2  bad usage (unknown option, invalid value)
    3  the model could not be loaded (not local/cached and the Hub is unreachable, bad directory)
    4  the run finished but some items failed (their records carry `error`)
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from im2text.jobs.records import CSV_FIELDS

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_MODEL, EXIT_PARTIAL = 0, 1, 2, 3, 4


def _add_model_args(p: argparse.ArgumentParser, default: str | None = "blip-base") -> None:
    p.add_argument(
        "--model", "-m", default=default, help=f"preset, Hub id or local dir ({default})"
    )
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    p.add_argument("--dtype", default="auto", help="auto | float32 | float16 | bfloat16")
    p.add_argument("--revision", help="Hub revision (branch, tag or commit)")


def _add_generation_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("generation (defaults come from the model's preset)")
    g.add_argument("--num-beams", type=int)
    g.add_argument("--max-new-tokens", type=int)
    g.add_argument("--min-new-tokens", type=int)
    g.add_argument("--sample", dest="do_sample", action="store_const", const=True)
    g.add_argument("--temperature", type=float)
    g.add_argument("--top-p", type=float)
    g.add_argument("--top-k", type=int)
    g.add_argument(
        "--num-captions",
        dest="num_return_sequences",
        type=int,
        help="captions per image (needs --num-beams >= N or --sample)",
    )
    g.add_argument("--repetition-penalty", type=float)
    g.add_argument("--seed", type=int, help="seed for --sample")


def _add_bulk_args(p: argparse.ArgumentParser, inputs_required: bool = True) -> None:
    p.add_argument(
        "inputs",
        nargs="+" if inputs_required else "*",
        help="image files, folders (recursive) or globs",
    )
    p.add_argument("--batch-size", "-b", type=int, default=8)
    p.add_argument("--workers", type=int, default=2, help="image loading threads")
    p.add_argument("--output", "-o", help="FILE.jsonl or FILE.csv; rerunning resumes it")
    p.add_argument(
        "--retry-errors",
        action="store_true",
        help="with --output: run again the items whose record has an error",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="im2text",
        description="Turn images into text: captions, answers, read text, match scores.",
        epilog="exit codes: 0 ok, 1 internal error, 2 bad usage, 3 model unavailable, "
        "4 some items failed",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("caption", help="caption images (resumable bulk runs)")
    _add_bulk_args(p)
    _add_model_args(p)
    p.add_argument("--prompt", help='text the caption continues, e.g. "a photograph of"')
    p.add_argument(
        "--sidecar",
        action="store_true",
        help="write photo.txt beside each photo.jpg (skips existing ones)",
    )
    p.add_argument("--overwrite", action="store_true", help="with --sidecar: replace .txt files")
    p.add_argument("--rerank", help='order candidates by "itm", "clip" or a matching model')
    _add_generation_args(p)
    p.set_defaults(func=_cmd_caption)

    p = sub.add_parser("ask", help="answer questions about images (VQA)")
    _add_bulk_args(p, inputs_required=False)
    _add_model_args(p, default="blip-vqa-base")
    p.add_argument("--question", "-q", action="append", help="ask every image (repeatable)")
    p.add_argument("--questions", help="CSV (image,question) or JSONL file of pairs")
    p.add_argument("--candidates", nargs="+", help="rank these answers instead of generating")
    _add_generation_args(p)
    p.set_defaults(func=_cmd_ask)

    p = sub.add_parser("read", help="read the text in images (OCR)")
    _add_bulk_args(p)
    _add_model_args(p, default="rapidocr")
    p.add_argument(
        "--layout",
        choices=("auto", "page", "line"),
        default="auto",
        help="TrOCR: find lines first (page) or read the image as one line",
    )
    p.add_argument(
        "--format",
        choices=("jsonl", "text"),
        default="jsonl",
        help="stdout format when no --output is given",
    )
    _add_generation_args(p)
    p.set_defaults(func=_cmd_read)

    p = sub.add_parser("match", help="score texts against images (ITM / CLIP)")
    _add_bulk_args(p)
    _add_model_args(p, default="clip-vit-base-patch32")
    p.add_argument("--text", "-t", action="append", required=True, help="a text (repeatable)")
    p.set_defaults(func=_cmd_match)

    p = sub.add_parser("classify", help="top-k labels: zero-shot (CLIP) or supervised (ViT)")
    _add_bulk_args(p)
    _add_model_args(p, default="clip-vit-base-patch32")
    p.add_argument("--labels", help="cat,dog,car or @labels.txt (zero-shot; ViT: optional)")
    p.add_argument(
        "--templates", default="a photo of a {}.", help='a prompt template with {} or "ensemble"'
    )
    p.add_argument("--top-k", type=int, default=5)
    p.set_defaults(func=_cmd_classify)

    p = sub.add_parser("index", help="embed images into a searchable index (incremental)")
    p.add_argument("inputs", nargs="+", help="image files, folders or globs")
    p.add_argument("--out", required=True, help="index folder (created or extended)")
    p.add_argument("--batch-size", "-b", type=int, default=8)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--no-progress", action="store_true")
    _add_model_args(p, default="clip-vit-base-patch32")
    p.set_defaults(func=_cmd_index)

    p = sub.add_parser("search", help="search an index with a text or an image")
    p.add_argument("index", help="index folder made by `im2text index`")
    p.add_argument("query", help="text, or the path of an image")
    p.add_argument("--top-k", "-k", type=int, default=5)
    p.add_argument("--faiss", action="store_true", help="use faiss (exact inner product)")
    _add_model_args(p, default=None)
    p.set_defaults(func=_cmd_search)

    p = sub.add_parser("train", help="fine-tune a model on your images (caption or VQA)")
    p.add_argument("--config", help="YAML file of TrainConfig fields (flags override it)")
    p.add_argument("--model", "-m", help="preset, Hub id or dir to start from")
    p.add_argument("--train", help="training data: folder, metadata.jsonl/CSV, COCO/VQA JSON")
    p.add_argument("--val", help="validation data (default: split off --train)")
    p.add_argument("--output", "-o", help="run folder (best/, last/, metrics, curves.png)")
    p.add_argument("--task", choices=("caption", "vqa"))
    p.add_argument("--epochs", type=float)
    p.add_argument("--max-steps", type=int)
    p.add_argument("--max-minutes", type=float)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--grad-accum", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--warmup", type=float)
    p.add_argument("--lora", action="store_const", const=True)
    p.add_argument("--lora-rank", type=int)
    p.add_argument("--lora-merge", action="store_const", const=True)
    p.add_argument("--freeze-vision", action="store_const", const=True)
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"))
    p.add_argument("--eval-every", type=int)
    p.add_argument("--metric", choices=("cider", "bleu4", "exact", "vqa_accuracy"))
    p.add_argument("--patience", type=int)
    p.add_argument("--prompt")
    p.add_argument("--seed", type=int)
    p.add_argument("--device")
    p.add_argument("--resume", action="store_const", const=True)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("eval", help="score models on a dataset; JSON + HTML report")
    p.add_argument("--model", "-m", action="append", required=True, help="repeat to compare")
    p.add_argument("--data", required=True, help="dataset (same formats as train)")
    p.add_argument("--task", choices=("caption", "vqa"), default="caption")
    p.add_argument("--output", "-o", default="eval", help="report folder")
    p.add_argument("--limit", type=int, help="first N items only")
    p.add_argument("--batch-size", "-b", type=int, default=8)
    p.add_argument("--clip-model", help="also compute CLIPScore / RefCLIPScore with this model")
    p.add_argument("--device", default="auto")
    p.add_argument("--no-progress", action="store_true")
    _add_generation_args(p)
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("compose", help="vision encoder + causal LM -> a trainable captioner")
    p.add_argument("--encoder", required=True, help="e.g. google/vit-base-patch16-224-in21k")
    p.add_argument("--decoder", required=True, help="e.g. gpt2")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_cmd_compose)

    p = sub.add_parser("capfilt", help="caption + filter images into a training dataset")
    p.add_argument("inputs", nargs="+", help="image files, folders or globs")
    p.add_argument("--captioner", required=True, help="captioning model")
    p.add_argument("--filter", required=True, help="matching model (BLIP ITM or CLIP)")
    p.add_argument("--out", required=True, help="dataset folder (metadata.jsonl)")
    p.add_argument("--num-captions", type=int, default=5)
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--beam", action="store_true", help="beam search instead of sampling")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_capfilt)

    p = sub.add_parser("serve", help="serve models over HTTP (API, OpenAI chat, compare page)")
    p.add_argument("models", nargs="+", help="presets, Hub ids or dirs to serve")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto")
    p.add_argument(
        "--api-key",
        action="append",
        default=[],
        help="accepted Bearer key (repeatable; or env IM2TEXT_API_KEYS=a,b)",
    )
    p.add_argument("--max-batch-size", type=int, default=8, help="1 turns batching off")
    p.add_argument("--max-wait-ms", type=float, default=10.0)
    p.add_argument("--max-queue", type=int, default=64)
    p.add_argument("--request-timeout", type=float, default=120.0)
    p.add_argument("--max-body-mb", type=float, default=20.0)
    p.add_argument("--max-image-mb", type=float, default=10.0)
    p.add_argument("--max-pixels", type=int, default=40_000_000)
    p.add_argument("--max-images", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument(
        "--allow-remote-urls",
        action="store_true",
        help="fetch http(s) image URLs (private/loopback/metadata addresses refused)",
    )
    p.add_argument("--url-allow-network", action="append", default=[], metavar="CIDR")
    p.add_argument("--max-connections", type=int, default=256)
    p.add_argument("--shutdown-timeout", type=float, default=30.0)
    p.add_argument("--log-level", default="info")
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("models", help="list model presets")
    p.add_argument("--task", help="only presets for this task (caption, ask, ...)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("download", help="save a model to a folder for offline machines")
    p.add_argument("model", help="preset, Hub id or local dir")
    p.add_argument("--to", required=True, help="destination folder")
    p.add_argument("--revision")
    p.set_defaults(func=_cmd_download)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    import im2text

    try:
        return int(args.func(args))
    except im2text.ModelNotAvailableError as e:
        _err(f"im2text: {e}")
        return EXIT_MODEL
    except (FileNotFoundError, OSError) as e:
        if getattr(args, "_loading", False):
            _err(f"im2text: cannot load model {args.model!r}: {e}")
            return EXIT_MODEL
        _err(f"im2text: {e}")
        return EXIT_ERROR
    except (ValueError, TypeError) as e:
        _err(f"im2text: {e}")
        return EXIT_USAGE
    except ImportError as e:
        _err(f"im2text: {e}")
        return EXIT_ERROR
    except KeyboardInterrupt:
        _err("im2text: interrupted; rerun the same command to resume")
        return 130


def _load_model(args: argparse.Namespace) -> Any:
    import im2text

    args._loading = True
    model = im2text.load(
        args.model,
        device=args.device,
        dtype=args.dtype,
        revision=args.revision,
        batch_size=args.batch_size,
        num_workers=args.workers,
    )
    args._loading = False
    args.model_name = model.name
    return model


def _generation(args: argparse.Namespace) -> dict[str, Any]:
    names = (
        "num_beams",
        "max_new_tokens",
        "min_new_tokens",
        "do_sample",
        "temperature",
        "top_p",
        "top_k",
        "num_return_sequences",
        "repetition_penalty",
        "seed",
    )
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def _bulk(
    args: argparse.Namespace,
    items: list[Any],
    key: Any,
    run: Any,
    *,
    key_fields: tuple[str, ...] = ("path",),
    fields: tuple[str, ...] = CSV_FIELDS,
    skip: Any = None,
    after: Any = None,
) -> int:
    """Shared bulk loop: resume from --output, run, write records, count failures.

    Args:
        items: the inputs (sources or (source, question) pairs).
        key: item -> its record key tuple (to skip what --output already holds).
        run: (model, todo) -> iterator of results with `.ok` and `.to_record(model_name)`.
        skip: item -> True to skip it for another reason (e.g. sidecar exists).
        after: (result) -> None, called per result (e.g. write the sidecar).
    """
    from im2text.jobs.records import RecordWriter

    writer = (
        RecordWriter(
            args.output, fields=fields, key_fields=key_fields, retry_errors=args.retry_errors
        )
        if args.output
        else None
    )
    todo = [
        it for it in items if not (writer and key(it) in writer.done) and not (skip and skip(it))
    ]
    if len(todo) < len(items):
        _err(f"im2text: {len(items) - len(todo)} of {len(items)} items already done; "
             f"{len(todo)} to go")  # fmt: skip
    if not todo:
        if writer:
            writer.close()
        return EXIT_OK
    model = _load_model(args)
    failed = 0
    try:
        for result in run(model, todo):
            record = result.to_record(model.name)
            if writer:
                writer.write(record)
            elif after is None:
                print(json.dumps(record, ensure_ascii=False), flush=True)
            if after is not None:
                after(result, writer)
            failed += not result.ok
    finally:
        if writer:
            writer.close()
    if failed:
        _err(f"im2text: {failed} of {len(todo)} items failed (see the 'error' field)")
        return EXIT_PARTIAL
    return EXIT_OK


def _cmd_caption(args: argparse.Namespace) -> int:
    from im2text.images import expand_inputs
    from im2text.jobs.records import sidecar_path, write_sidecar

    def after(cap: Any, writer: Any) -> None:
        if cap.ok and args.sidecar:
            write_sidecar(cap.source, cap.text, overwrite=args.overwrite)
        elif not cap.ok and args.sidecar and not writer:
            _err(f"im2text: {cap.error}")
        if not args.sidecar and not writer:
            print(json.dumps(cap.to_record(args.model_name), ensure_ascii=False), flush=True)

    return _bulk(
        args,
        expand_inputs(args.inputs),
        key=lambda s: (s.key,),
        run=lambda model, todo: model.caption_iter(
            todo,
            prompt=args.prompt,
            rerank=args.rerank,
            progress=not args.no_progress,
            total=len(todo),
            **_generation(args),
        ),
        skip=(lambda s: sidecar_path(s.key).exists())
        if args.sidecar and not args.overwrite
        else None,
        after=after,
    )


def _cmd_ask(args: argparse.Namespace) -> int:
    from im2text.images import ImageSource, expand_inputs

    raw: Sequence[tuple[str | ImageSource, str]]
    if args.questions:
        raw = _read_pairs(args.questions)
    elif args.question:
        raw = [(s, q) for s in expand_inputs(args.inputs) for q in args.question]
    else:
        raise ValueError("give --question (repeatable) or --questions FILE.csv")
    if args.questions and args.inputs:
        raise ValueError("give images either as arguments or in --questions FILE, not both")
    pairs = [(s if isinstance(s, ImageSource) else ImageSource(s, Path(s)), q) for s, q in raw]
    return _bulk(
        args,
        pairs,
        key=lambda p: (p[0].key, " ".join(str(p[1]).split())),
        key_fields=("path", "question"),
        fields=("path", "question", "answer", "confidence", "ranking", "model", "error"),
        run=lambda model, todo: model.ask_iter(
            todo,
            candidates=args.candidates,
            progress=not args.no_progress,
            total=len(todo),
            **_generation(args),
        ),
    )


def _read_pairs(path: str) -> list[tuple[str, str]]:
    """image,question rows from a CSV (header `image,question`) or JSONL file."""
    import csv

    text = Path(path).read_text(encoding="utf-8")
    if path.endswith(".jsonl"):
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    else:
        rows = list(csv.DictReader(text.splitlines()))
    pairs = []
    for i, row in enumerate(rows, start=2 if not path.endswith(".jsonl") else 1):
        if not isinstance(row, dict) or "image" not in row or "question" not in row:
            raise ValueError(f"{path}:{i}: need 'image' and 'question' fields")
        image = Path(row["image"])
        if not image.is_absolute():
            image = Path(path).parent / image
        pairs.append((str(image), row["question"]))
    return pairs


def _cmd_read(args: argparse.Namespace) -> int:
    from im2text.images import expand_inputs

    def after(reading: Any, writer: Any) -> None:
        if writer:
            return
        if args.format == "text":
            print(f"==> {reading.source} <==")
            print(reading.text if reading.ok else f"error: {reading.error}", flush=True)
        else:
            print(json.dumps(reading.to_record(args.model_name), ensure_ascii=False), flush=True)

    page = {"auto": None, "page": True, "line": False}[args.layout]
    return _bulk(
        args,
        expand_inputs(args.inputs),
        key=lambda s: (s.key,),
        fields=("path", "text", "lines", "model", "error"),
        run=lambda model, todo: model.read_iter(
            todo, page=page, progress=not args.no_progress, total=len(todo), **_generation(args)
        ),
        after=after,
    )


def _cmd_match(args: argparse.Namespace) -> int:
    from im2text.images import expand_inputs

    return _bulk(
        args,
        expand_inputs(args.inputs),
        key=lambda s: (s.key,),
        fields=("path", "texts", "similarity", "probability", "itm", "model", "error"),
        run=lambda model, todo: _progress(args, model.match_iter(todo, args.text), len(todo)),
    )


def _cmd_classify(args: argparse.Namespace) -> int:
    from im2text.images import expand_inputs

    labels = _split_labels(args.labels) if args.labels else None
    return _bulk(
        args,
        expand_inputs(args.inputs),
        key=lambda s: (s.key,),
        fields=("path", "label", "score", "labels", "model", "error"),
        run=lambda model, todo: _progress(
            args,
            model.classify_iter(todo, labels, templates=args.templates, top_k=args.top_k),
            len(todo),
        ),
    )


def _progress(args: argparse.Namespace, stream: Any, total: int) -> Any:
    if args.no_progress:
        return stream
    from tqdm.auto import tqdm

    return tqdm(stream, total=total, unit="img", desc=args.command, dynamic_ncols=True)


def _split_labels(spec: str) -> list[str]:
    """`cat,dog` or `@labels.txt` (one label per line)."""
    if spec.startswith("@"):
        lines = Path(spec[1:]).read_text(encoding="utf-8").splitlines()
        return [line.strip() for line in lines if line.strip()]
    return [p.strip() for p in spec.split(",") if p.strip()]


def _cmd_index(args: argparse.Namespace) -> int:
    from im2text.images import expand_inputs
    from im2text.jobs.index import EmbeddingIndex

    sources = expand_inputs(args.inputs)
    model = _load_model(args)
    dim = int(model.embed(texts=["probe"]).shape[1])
    index = EmbeddingIndex.open_or_create(args.out, model=args.model, dim=dim)
    todo = [s for s in sources if s.key not in index]
    _err(f"im2text: index has {len(index)} images; adding {len(todo)} new")
    failed = 0
    stream = model.embed_iter(todo)
    if not args.no_progress:
        from tqdm.auto import tqdm

        stream = tqdm(stream, total=len(todo), unit="img", desc="indexing")
    for key, vec in stream:
        if isinstance(vec, BaseException):
            failed += 1
            _err(f"im2text: {vec}")
            continue
        index.add(key, vec)
    _err(f"im2text: index now holds {len(index)} images")
    return EXIT_PARTIAL if failed else EXIT_OK


def _cmd_search(args: argparse.Namespace) -> int:
    from im2text.jobs.index import EmbeddingIndex

    index = EmbeddingIndex(args.index)
    args.model = args.model or index.meta["model"]
    args.batch_size, args.workers = 8, 1
    model = _load_model(args)
    if Path(args.query).is_file():  # an image query: find similar images
        query = model.embed(args.query)[0]
    else:
        query = model.embed(texts=[args.query])[0]
    for hit in index.search(query, args.top_k, use_faiss=args.faiss):
        print(json.dumps({"path": hit.path, "score": round(hit.score, 6)}), flush=True)
    return EXIT_OK


def _cmd_train(args: argparse.Namespace) -> int:
    from dataclasses import fields

    from im2text.train import TrainConfig, train

    names = {f.name for f in fields(TrainConfig)}
    overrides = {k: v for k, v in vars(args).items() if k in names and v is not None}
    if args.config:
        config = TrainConfig.from_yaml(args.config, **overrides)
    else:
        missing = [f"--{k}" for k in ("model", "train", "output") if k not in overrides]
        if missing:
            raise ValueError(f"missing {', '.join(missing)} (or give --config)")
        config = TrainConfig(**overrides)
    summary = train(config)
    print(json.dumps(summary, indent=2))
    return EXIT_OK


def _cmd_eval(args: argparse.Namespace) -> int:
    from im2text.evaluate.run import evaluate_models

    summary = evaluate_models(
        args.model,
        args.data,
        task=args.task,
        output=args.output,
        limit=args.limit,
        batch_size=args.batch_size,
        generation=_generation(args),
        clip_model=args.clip_model,
        device=args.device,
        progress=not args.no_progress,
    )
    print(json.dumps(summary, indent=2))
    return EXIT_OK


def _cmd_compose(args: argparse.Namespace) -> int:
    from im2text.train.compose import compose

    print(compose(args.encoder, args.decoder, args.out))
    return EXIT_OK


def _cmd_capfilt(args: argparse.Namespace) -> int:
    import im2text
    from im2text.jobs.capfilt import capfilt

    counts = capfilt(
        args.inputs,
        im2text.load(args.captioner),
        im2text.load(args.filter),
        args.out,
        num_captions=args.num_captions,
        threshold=args.threshold,
        sample=not args.beam,
        progress=not args.no_progress,
    )
    print(json.dumps(counts))
    return EXIT_PARTIAL if counts["failed"] else EXIT_OK


def _cmd_serve(args: argparse.Namespace) -> int:
    import os

    from im2text.serve import ServeConfig, run

    env_keys = [k for k in os.environ.get("IM2TEXT_API_KEYS", "").split(",") if k.strip()]
    mb = 1024 * 1024
    config = ServeConfig(
        host=args.host,
        port=args.port,
        device=args.device,
        dtype=args.dtype,
        api_keys=tuple(args.api_key) + tuple(k.strip() for k in env_keys),
        max_batch_size=args.max_batch_size,
        max_wait_ms=args.max_wait_ms,
        max_queue=args.max_queue,
        request_timeout_s=args.request_timeout,
        max_body_bytes=int(args.max_body_mb * mb),
        max_image_bytes=int(args.max_image_mb * mb),
        max_pixels=args.max_pixels,
        max_images=args.max_images,
        max_new_tokens=args.max_new_tokens,
        allow_remote_urls=args.allow_remote_urls,
        url_allow_networks=tuple(args.url_allow_network),
        max_connections=args.max_connections,
        shutdown_timeout_s=args.shutdown_timeout,
        log_level=args.log_level,
    )
    args._loading = True
    run(args.models, config)
    return EXIT_OK


def _cmd_models(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    import im2text

    presets = im2text.list_models(task=args.task)
    if args.json:
        print(json.dumps([asdict(p) for p in presets], indent=2))
        return EXIT_OK
    width = max(len(p.name) for p in presets) if presets else 4
    for p in presets:
        print(f"{p.name:<{width}}  {','.join(p.tasks):<12}  {p.hub_id:<42}  {p.description}")
    return EXIT_OK


def _cmd_download(args: argparse.Namespace) -> int:
    import im2text

    args._loading = True
    out = im2text.download(args.model, args.to, revision=args.revision)
    print(out)
    return EXIT_OK


def _err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _version() -> str:
    from im2text import __version__

    return __version__


if __name__ == "__main__":
    sys.exit(main())
