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
from typing import Any

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_MODEL, EXIT_PARTIAL = 0, 1, 2, 3, 4


def _add_model_args(p: argparse.ArgumentParser, default: str = "blip-base") -> None:
    p.add_argument("--model", "-m", default=default, help="preset, Hub id or local dir")
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


def _add_bulk_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", help="image files, folders (recursive) or globs")
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
    _add_generation_args(p)
    p.set_defaults(func=_cmd_caption)

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


def _cmd_caption(args: argparse.Namespace) -> int:
    from im2text.images import expand_inputs
    from im2text.jobs.records import RecordWriter, sidecar_path, write_sidecar

    generation = _generation(args)
    sources = expand_inputs(args.inputs)
    writer = RecordWriter(args.output, retry_errors=args.retry_errors) if args.output else None
    todo = [
        s
        for s in sources
        if not (writer and s.key in writer.done)
        and not (args.sidecar and not args.overwrite and sidecar_path(s.key).exists())
    ]
    skipped = len(sources) - len(todo)
    if skipped:
        _err(f"im2text: {skipped} of {len(sources)} images already done; {len(todo)} to go")
    if not todo:
        if writer:
            writer.close()
        return EXIT_OK
    model = _load_model(args)
    failed = 0
    try:
        stream = model.caption_iter(
            todo,
            prompt=args.prompt,
            progress=not args.no_progress,
            total=len(todo),
            **generation,
        )
        for cap in stream:
            record = cap.to_record(model.name)
            if writer:
                writer.write(record)
            elif not args.sidecar:
                print(json.dumps(record, ensure_ascii=False), flush=True)
            if cap.ok and args.sidecar:
                write_sidecar(cap.source, cap.text, overwrite=args.overwrite)
            if not cap.ok:
                failed += 1
                if args.sidecar and not writer:
                    _err(f"im2text: {cap.error}")
    finally:
        if writer:
            writer.close()
    if failed:
        _err(f"im2text: {failed} of {len(todo)} images failed (see the 'error' field)")
        return EXIT_PARTIAL
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
