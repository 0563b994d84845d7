"""The bulk task commands — `im2text caption|ask|read|match|classify|embed` — one per row of
the task table, with the few options a command adds of its own (sidecars, question files,
plain-text output)."""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from im2text.cli._common import (
    EXIT_OK,
    EXIT_PARTIAL,
    add_engine_args,
    add_generation_args,
    add_loading_args,
    add_model_args,
    bulk,
    err,
    generation,
    job_identity,
    run_sharded,
)
from im2text.tasks import TASKS, TaskSpec


def add_parsers(sub: Any) -> None:
    for spec in TASKS.values():
        p = sub.add_parser(spec.name, help=spec.help + " (resumable bulk runs)")
        p.add_argument(
            "inputs",
            nargs="*" if spec.pairs else "+",
            help="image files, folders (recursive) or globs",
        )
        add_loading_args(p)
        p.add_argument(
            "--output",
            "-o",
            help="FILE.jsonl or FILE.csv (with --engine: a folder); rerunning resumes it",
        )
        p.add_argument(
            "--retry-errors",
            action="store_true",
            help="with --output: run again the items whose record has an error",
        )
        p.add_argument(
            "--other-job",
            action="store_true",
            help="with --output: append although another job (model, settings) wrote it",
        )
        add_model_args(p, spec.default_model)
        for param in spec.params:
            if param.flags:
                p.add_argument(
                    *param.flags,
                    dest=param.name,
                    help=param.help,
                    required=param.required,
                    **param.cli,
                )
        _EXTRA_ARGS.get(spec.name, lambda p: None)(p)
        if spec.generates:
            add_generation_args(p)
        add_engine_args(p)
        p.set_defaults(func=run_task, spec=spec)
    p = sub.add_parser("merge", help="join a sharded output's shards into one file, in order")
    p.add_argument("output", help="the --output folder of an --engine run")
    p.add_argument("--to", required=True, help="FILE.jsonl or FILE.csv")
    p.set_defaults(func=_merge)


def _merge(args: argparse.Namespace) -> int:
    from im2text.jobs.shards import merge

    count = merge(args.output, args.to)
    err(f"im2text: {count} records -> {args.to}")
    return EXIT_OK


def run_task(args: argparse.Namespace) -> int:
    spec: TaskSpec = args.spec
    params = {p.name: getattr(args, p.name) for p in spec.params if p.flags}
    params.update(_CONVERT.get(spec.name, lambda a: {})(args))
    items = _inputs(spec, args)
    if getattr(args, "sidecar", False):
        _check_sidecars(items)
    if args.engine:
        if getattr(args, "sidecar", False):
            raise ValueError("--sidecar writes beside the images; use it without --engine")
        kwargs = {**params, **(generation(args) if spec.generates else {})}
        summary = run_sharded(args, spec.name, items, kwargs)
        return EXIT_PARTIAL if summary.failed else EXIT_OK

    def run(model: Any, todo: list[Any]) -> Iterable[Any]:
        kwargs = {**params, **(generation(args) if spec.generates else {})}
        return model.stream(
            spec.name, todo, progress=not args.no_progress, total=len(todo), **kwargs
        )

    hooks = _HOOKS.get(spec.name, {})
    return bulk(
        args,
        items,
        key=lambda it: _key(spec, it),
        run=run,
        fields=spec.fields,
        key_fields=spec.key_fields,
        skip=hooks.get("skip", lambda a: None)(args),
        emit=hooks.get("emit", lambda a: None)(args),
        job=job_identity(
            args, spec.name, {**params, **(generation(args) if spec.generates else {})}
        ),
    )


def _check_sidecars(sources: list[Any]) -> None:
    """photo.jpg and photo.png would both write photo.txt: refuse before anything runs."""
    from im2text.jobs.records import input_identity, sidecar_path

    owners: dict[str, set[str]] = {}
    for s in sources:
        owners.setdefault(input_identity(str(sidecar_path(s.key))), set()).add(
            input_identity(s.key)
        )
    clashes = [sorted(v) for v in owners.values() if len(v) > 1]
    if clashes:
        names = "; ".join(" and ".join(c) for c in clashes[:5])
        raise ValueError(
            f"--sidecar: {len(clashes)} caption file(s) would be written by two images ({names}); "
            "rename one of each pair, or use --output"
        )


def _key(spec: TaskSpec, item: Any) -> tuple[str, ...]:
    if spec.pairs:
        source, question = item
        return (source.key, " ".join(str(question).split()))
    return (item.key,)


def _inputs(spec: TaskSpec, args: argparse.Namespace) -> list[Any]:
    from im2text.images import ImageSource, expand_inputs
    from im2text.jobs.shards import expand_list_files

    args.inputs = expand_list_files(args.inputs)
    if not spec.pairs:
        return expand_inputs(args.inputs)
    if args.questions and args.inputs:
        raise ValueError("give images either as arguments or in --questions FILE, not both")
    raw: list[tuple[Any, str]]
    if args.questions:
        raw = _read_pairs(args.questions)
    elif args.question:
        raw = [(s, q) for s in expand_inputs(args.inputs) for q in args.question]
    else:
        raise ValueError("give --question (repeatable) or --questions FILE.csv")
    return [(s if isinstance(s, ImageSource) else ImageSource(s, Path(s)), q) for s, q in raw]


def _read_pairs(path: str) -> list[tuple[Any, str]]:
    """image,question rows from a CSV (header `image,question`) or JSONL file."""
    text = Path(path).read_text(encoding="utf-8")
    jsonl = path.endswith(".jsonl")
    if jsonl:
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    else:
        rows = list(csv.DictReader(text.splitlines()))
    pairs: list[tuple[Any, str]] = []
    for i, row in enumerate(rows, start=1 if jsonl else 2):
        if not isinstance(row, dict) or "image" not in row or "question" not in row:
            raise ValueError(f"{path}:{i}: need 'image' and 'question' fields")
        image = Path(row["image"])
        if not image.is_absolute():
            image = Path(path).parent / image
        pairs.append((str(image), row["question"]))
    return pairs


# --- what single commands add --------------------------------------------------------------------


def _caption_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--sidecar",
        action="store_true",
        help="write photo.txt beside each photo.jpg (skips existing ones)",
    )
    p.add_argument("--overwrite", action="store_true", help="with --sidecar: replace .txt files")


def _ask_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--question", "-q", action="append", help="ask every image (repeatable)")
    p.add_argument("--questions", help="CSV (image,question) or JSONL file of pairs")


def _read_args(p: argparse.ArgumentParser) -> None:
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


_EXTRA_ARGS: dict[str, Callable[[argparse.ArgumentParser], None]] = {
    "caption": _caption_args,
    "detect": _caption_args,  # --sidecar: the regions' labels as tags beside each image
    "ask": _ask_args,
    "read": _read_args,
}


def _split_labels(spec: str) -> list[str]:
    """`cat,dog` or `@labels.txt` (one label per line)."""
    if spec.startswith("@"):
        lines = Path(spec[1:]).read_text(encoding="utf-8").splitlines()
        return [line.strip() for line in lines if line.strip()]
    return [p.strip() for p in spec.split(",") if p.strip()]


# Command-line spellings -> task parameters.
_CONVERT: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "read": lambda a: {"page": {"auto": None, "page": True, "line": False}[a.layout]},
    "classify": lambda a: {"labels": _split_labels(a.labels) if a.labels else None},
}


def _caption_hooks(
    text: Callable[[Any], str] = lambda cap: cap.text,
) -> dict[str, Callable[[argparse.Namespace], Any]]:
    """--sidecar: `text(result)` into photo.txt beside each photo (a caption, or tags)."""
    from im2text.jobs.records import sidecar_path, write_sidecar

    def skip(args: argparse.Namespace) -> Any:
        if args.sidecar and not args.overwrite:
            return lambda s: sidecar_path(s.key).exists()
        return None

    def emit(args: argparse.Namespace) -> Any:
        if not args.sidecar:
            return None

        def write(cap: Any, writer: Any) -> None:
            if cap.ok:
                write_sidecar(cap.source, text(cap), overwrite=args.overwrite)
            elif not writer:
                err(f"im2text: {cap.error}")

        return write

    return {"skip": skip, "emit": emit}


def _read_hooks() -> dict[str, Callable[[argparse.Namespace], Any]]:
    def emit(args: argparse.Namespace) -> Any:
        if args.format != "text" or args.output:
            return None

        def show(reading: Any, writer: Any) -> None:
            print(f"==> {reading.source} <==")
            print(reading.text if reading.ok else f"error: {reading.error}", flush=True)

        return show

    return {"emit": emit}


_HOOKS = {
    "caption": _caption_hooks(),
    "detect": _caption_hooks(lambda det: ", ".join(det.labels)),  # tags for a caption dataset
    "read": _read_hooks(),
}
