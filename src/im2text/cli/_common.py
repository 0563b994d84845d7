"""What every command group shares: exit codes, model and generation options, the bulk loop.

Flag defaults and help come from the config dataclasses (`LoadSettings`, `GenerationSettings`,
`TrainConfig`, `ServeConfig`): each default is stated once, where the field is.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import sys
import textwrap
from collections.abc import Callable, Iterable
from typing import Any

from im2text.config import GenerationSettings, LoadSettings

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_MODEL, EXIT_PARTIAL = 0, 1, 2, 3, 4


@functools.cache
def field_help(cls: type) -> dict[str, str]:
    """Each dataclass field's trailing `# comment` (the house style), as help text."""
    lines = textwrap.dedent(inspect.getsource(cls)).splitlines()
    tree = ast.parse("\n".join(lines))
    out: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            line = lines[node.lineno - 1]
            if "#" in line:
                out[node.target.id] = line.split("#", 1)[1].strip()
    return out


def default(cls: type, name: str) -> Any:
    """A dataclass field's default."""
    return next(f.default for f in dataclasses.fields(cls) if f.name == name)


def with_default(cls: type, name: str, text: str | None = None) -> str:
    """Help text for a flag: the field's comment (or `text`) and its default."""
    return f"{text or field_help(cls).get(name, '')} (default: {default(cls, name)})"


def add_model_args(p: argparse.ArgumentParser, default_model: str | None) -> None:
    p.add_argument(
        "--model",
        "-m",
        default=default_model,
        help=f"preset, Hub id or local dir (default: {default_model})",
    )
    p.add_argument(
        "--device",
        default=default(LoadSettings, "device"),
        help=with_default(LoadSettings, "device"),
    )
    p.add_argument(
        "--dtype", default=default(LoadSettings, "dtype"), help=with_default(LoadSettings, "dtype")
    )
    p.add_argument("--revision", help=field_help(LoadSettings)["revision"])
    p.add_argument(
        "--device-map",
        choices=("auto",),
        help="spread a model too large for one device over the GPUs, then the CPU (accelerate)",
    )
    p.add_argument(
        "--max-memory",
        help="refuse a model that needs more than this (e.g. 8GB); default: the device's free "
        "memory",
    )
    add_backend_args(p)


def add_backend_args(p: argparse.ArgumentParser) -> None:
    from im2text.engine.graphs import BACKENDS

    p.add_argument(
        "--backend",
        choices=BACKENDS,
        help="run the model's encoders as exported graphs on onnxruntime or openvino (CPU; "
        "exported once, then cached); default: torch, or an exported folder's own",
    )
    p.add_argument(
        "--int8",
        action="store_true",
        help="int8 weights: faster on CPU, close to but not equal to float32 (see "
        "docs/PERFORMANCE.md)",
    )


def backend_options(args: argparse.Namespace) -> dict[str, Any]:
    """im2text.load keywords for --backend / --int8."""
    return {
        "backend": getattr(args, "backend", None),
        "quantize": "int8" if getattr(args, "int8", False) else None,
    }


# CLI flag -> GenerationSettings field, where the flag reads better than the field's name.
_GENERATION_FLAGS = {"do_sample": "--sample", "num_return_sequences": "--num-captions"}


def add_generation_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("generation (defaults come from the model's preset)")
    for f in dataclasses.fields(GenerationSettings):
        flag = _GENERATION_FLAGS.get(f.name, "--" + f.name.replace("_", "-"))
        text = field_help(GenerationSettings).get(f.name, "")
        if f.type in (bool, "bool"):
            g.add_argument(flag, dest=f.name, action="store_const", const=True, help=text)
        else:
            kind = {"int": int, "float": float}.get(str(f.type).split(" ")[0], int)
            g.add_argument(flag, dest=f.name, type=kind, help=text)


def generation(args: argparse.Namespace) -> dict[str, Any]:
    """The GenerationSettings fields given on the command line."""
    names = (f.name for f in dataclasses.fields(GenerationSettings))
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def add_loading_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--batch-size",
        "-b",
        type=int,
        help=f"images per forward pass (default: {default(LoadSettings, 'batch_size')} on a "
        "CPU, 64 on a GPU)",
    )
    p.add_argument(
        "--loader-threads",
        dest="loader_threads",
        type=int,
        default=default(LoadSettings, "num_workers"),
        help=with_default(LoadSettings, "num_workers"),
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _workers(text: str) -> tuple[int, int]:
    lo, _, hi = text.partition(",")
    try:
        pair = (int(lo), int(hi or lo))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or MIN,MAX, got {text!r}") from None
    if not 1 <= pair[0] <= pair[1]:
        raise argparse.ArgumentTypeError(f"need 1 <= MIN <= MAX, got {text!r}")
    return pair


def add_engine_args(p: argparse.ArgumentParser) -> None:
    from im2text.jobs.engines import ENGINES, EngineConfig

    g = p.add_argument_group(
        "sharded runs (--engine: --output is a folder of shards; see `im2text merge`)"
    )
    helps = field_help(EngineConfig)
    g.add_argument("--engine", choices=ENGINES, help=helps["engine"])
    g.add_argument("--shard-size", type=int, help=helps["shard_size"])
    g.add_argument("--workers", type=_workers, metavar="MIN,MAX", help=helps["workers"])
    g.add_argument("--cpus-per-worker", type=float, help=helps["cpus_per_worker"])
    g.add_argument("--gpus-per-worker", type=float, default=0.0, help=helps["gpus_per_worker"])
    g.add_argument("--ray-address", help=helps["ray_address"])
    g.add_argument("--parquet", action="store_true", help=helps["parquet"])


def run_sharded(
    args: argparse.Namespace, task: str, items: list[Any], params: dict[str, Any]
) -> Any:
    """Run a bulk command's job through `--engine` into the shard folder `--output`."""
    from im2text.jobs.engines import EngineConfig, run_job

    if not args.output:
        raise ValueError("--engine needs --output FOLDER (the shards go there)")
    config = EngineConfig(
        engine=args.engine,
        shard_size=args.shard_size,
        workers=args.workers,
        cpus_per_worker=args.cpus_per_worker,
        gpus_per_worker=args.gpus_per_worker,
        ray_address=args.ray_address,
        parquet=args.parquet,
        retry_errors=getattr(args, "retry_errors", False),
        progress=not args.no_progress,
    )
    load = {
        "device": args.device,
        "dtype": args.dtype,
        "revision": args.revision,
        "batch_size": args.batch_size,
        "num_workers": args.loader_threads,
        **backend_options(args),
    }
    from im2text._loading import resolve

    args._loading = True  # a bad model name is exit code 3 before any worker starts
    resolve(args.model, args.revision)
    args._loading = False
    summary = run_job(
        task, items, args.output, model=args.model, load=load, params=params, config=config
    )
    err(
        f"im2text: {summary.shards_run} shard(s) run, {summary.shards} in all; "
        f"{summary.records} records ({summary.failed} with errors) in {summary.output}"
    )
    return summary


def load_model(args: argparse.Namespace) -> Any:
    import im2text

    args._loading = True
    model = im2text.load(
        args.model,
        device=args.device,
        dtype=args.dtype,
        revision=args.revision,
        batch_size=args.batch_size,
        num_workers=args.loader_threads,
        device_map=getattr(args, "device_map", None),
        max_memory=getattr(args, "max_memory", None),
        **backend_options(args),
    )
    args._loading = False
    args.model_name = model.name
    return model


def job_identity(args: argparse.Namespace, task: str, params: dict[str, Any]) -> dict[str, Any]:
    """What names a bulk output's job: task, model, revision, parameters (int8 outputs differ
    from float32 ones, so the backend is one of them when it is not torch float32)."""
    from pathlib import Path

    from im2text.jobs.shards import JobSpec

    model = args.model
    if model and Path(model).expanduser().is_dir():
        model = str(Path(model).expanduser().resolve())
    backend = {k: v for k, v in backend_options(args).items() if v not in (None, "torch")}
    return JobSpec(task, model, args.revision, {**params, **backend}).identity()


def bulk(
    args: argparse.Namespace,
    items: list[Any],
    key: Callable[[Any], tuple[str, ...]],
    run: Callable[[Any, list[Any]], Iterable[Any]],
    *,
    fields: tuple[str, ...],
    key_fields: tuple[str, ...] = ("path",),
    skip: Callable[[Any], bool] | None = None,
    emit: Callable[[Any, Any], None] | None = None,
    job: dict[str, Any] | None = None,
) -> int:
    """The bulk loop every task command shares: resume from --output, run, write, count.

    Args:
        items: the inputs (sources or (source, question) pairs).
        key: item -> its record key tuple (to skip what --output already holds).
        run: (model, todo) -> iterator of results with `.ok` and `.to_record(model_name)`.
        skip: item -> True to skip it for another reason (e.g. its sidecar exists).
        emit: (result, writer) -> None, instead of printing records to stdout (no --output).
        job: the job's identity; --output refuses a file another job wrote.
    """
    from im2text.jobs.records import RecordWriter, input_identity, record_line

    # One input, one record: the same file given twice (or as imgs/ and ./imgs/) runs once.
    unique: dict[tuple[str, ...], Any] = {}
    for it in items:
        k = key(it)
        unique.setdefault((input_identity(k[0]), *k[1:]), it)
    items = list(unique.values())
    writer = (
        RecordWriter(
            args.output,
            fields=fields,
            key_fields=key_fields,
            retry_errors=args.retry_errors,
            retry_only=[key(it) for it in items],
            job=job,
            other_job_ok=getattr(args, "other_job", False),
        )
        if args.output
        else None
    )
    todo = [it for it in items if not (writer and writer.has(key(it))) and not (skip and skip(it))]
    if len(todo) < len(items):
        err(
            f"im2text: {len(items) - len(todo)} of {len(items)} items already done; "
            f"{len(todo)} to go"
        )
    if not todo:
        if writer:
            writer.close()
        return EXIT_OK
    try:
        model = load_model(args)
    except BaseException:
        if writer:
            writer.close()
        raise
    failed = 0
    try:
        for result in run(model, todo):
            if writer:
                writer.write(result.to_record(model.name))
            if emit is not None:
                emit(result, writer)
            elif not writer:
                print(record_line(result.to_record(model.name)), end="", flush=True)
            failed += not result.ok
    finally:
        if writer:
            writer.close()
    if failed:
        err(f"im2text: {failed} of {len(todo)} items failed (see the 'error' field)")
        return EXIT_PARTIAL
    return EXIT_OK


def err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
