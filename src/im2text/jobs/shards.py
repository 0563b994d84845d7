"""The shard protocol every distributed bulk run shares (`--engine local` and `--engine ray`).

An output folder holds:
    manifest.json       the job (task, model, parameters) and its fingerprint, the inputs in
                        order and the shards as [start, stop) ranges over them
    shard-000123.jsonl  the records of shard 123, in input order; written once, via a temp file +
                        fsync + rename, so its presence is the shard's done marker
    shard-000123.parquet  the same records, when asked (written before the .jsonl)
    _SUCCESS            counts, written when every shard is done

Inputs are listed once. A rerun reuses the manifest: shards never change, inputs the listing
no longer has stay, and new inputs become new shards at the end. A run of a different job (task,
model or parameters) into the same folder is refused. img2dataset's per-shard stats file and
its incremental mode are the model; the records are the in-process bulk CLI's, byte for byte.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from im2text.jobs.records import atomic_write, input_identity, record_line, take_lock

FORMAT = 1
MANIFEST = "manifest.json"
SUCCESS = "_SUCCESS"
DEFAULT_SHARD_SIZE = 1000
LIST_SUFFIXES = (".txt", ".csv", ".parquet")  # files that list image paths, one per row


class ManifestError(ValueError):
    """The output folder belongs to another job, or its manifest is unreadable."""


def shard_name(shard: int, ext: str = "jsonl") -> str:
    return f"shard-{shard:06d}.{ext}"


@dataclass(frozen=True)
class JobSpec:
    """What a job computes; its fingerprint names the output folder's job."""

    task: str  # a row of the task table
    model: str  # preset, Hub id or (absolute) model directory
    revision: str | None = None  # Hub revision
    params: dict[str, Any] = field(default_factory=dict)  # task parameters + generation settings

    def identity(self) -> dict[str, Any]:
        params = {k: v for k, v in sorted(self.params.items()) if v is not None}
        return {"task": self.task, "model": self.model, "revision": self.revision, "params": params}

    def fingerprint(self) -> str:
        text = json.dumps(self.identity(), sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


# --- storage ---------------------------------------------------------------------------------


class Storage:
    """An output folder: a local path, or any URI pyarrow's file systems open (`s3://...`).

    Local writes go to a temp file in the same folder, are fsynced and renamed, so a reader (or a
    rerun) never sees half a file. Object stores publish an object whole when its upload closes,
    which gives the same guarantee without a rename.
    """

    def __init__(self, root: str | os.PathLike[str]):
        text = os.fspath(root)
        self.root = text
        self._fs: Any = None
        if "://" in text and not text.startswith("file://"):
            import pyarrow.fs as pafs

            self._fs, self._base = pafs.FileSystem.from_uri(text)
            self._fs.create_dir(self._base, recursive=True)
        else:
            self.local = Path(text.removeprefix("file://"))
            self.local.mkdir(parents=True, exist_ok=True)

    def _remote(self, name: str) -> str:
        return f"{self._base.rstrip('/')}/{name}"

    def read_bytes(self, name: str) -> bytes | None:
        if self._fs is None:
            path = self.local / name
            return path.read_bytes() if path.is_file() else None
        import pyarrow.fs as pafs

        if self._fs.get_file_info(self._remote(name)).type != pafs.FileType.File:
            return None
        with self._fs.open_input_stream(self._remote(name)) as f:
            return bytes(f.read())

    def write(
        self, name: str, data: bytes, *, before_publish: Callable[[], None] | None = None
    ) -> None:
        """Write `name` whole; `before_publish` runs when the data is written but not visible."""
        if self._fs is not None:
            with self._fs.open_output_stream(self._remote(name)) as f:
                f.write(data)
                if before_publish:
                    before_publish()
            return
        atomic_write(self.local / name, data, before_publish=before_publish)

    def names(self) -> list[str]:
        if self._fs is None:
            return sorted(p.name for p in self.local.iterdir())
        import pyarrow.fs as pafs

        infos = self._fs.get_file_info(pafs.FileSelector(self._base))
        return sorted(i.base_name for i in infos)

    def delete(self, name: str) -> None:
        if self._fs is None:
            (self.local / name).unlink(missing_ok=True)
        else:
            import pyarrow.fs as pafs

            if self._fs.get_file_info(self._remote(name)).type != pafs.FileType.NotFound:
                self._fs.delete_file(self._remote(name))  # a missing file is already gone

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the folder's lock (local folders; object stores have none to take)."""
        if self._fs is not None:
            yield
            return
        busy = ManifestError(f"{self.root} is being run by another im2text process")
        with take_lock(self.local / ".im2text.lock", busy):
            yield

    def remove_temp_files(self) -> int:
        """Temp files of writers that were killed before their rename."""
        stale = [n for n in self.names() if n.startswith(".shard-") and n.endswith(".tmp")]
        for name in stale:
            self.delete(name)
        return len(stale)


# --- inputs and the manifest -----------------------------------------------------------------


def expand_list_files(inputs: Sequence[str]) -> list[str]:
    """Replace each list file (.txt: a path per line; .csv / .parquet: a `path` or `image`
    column) by the paths it lists; relative paths are relative to the list file's folder."""
    out: list[str] = []
    for text in inputs:
        suffix = Path(text).suffix.lower()
        if suffix not in LIST_SUFFIXES or not Path(text).is_file():
            out.append(text)
            continue
        out.extend(
            p if os.path.isabs(p) else os.path.normpath(os.path.join(Path(text).parent, p))
            for p in _read_list(Path(text), suffix)
        )
    return out


def _read_list(path: Path, suffix: str) -> list[str]:
    if suffix == ".txt":
        lines = path.read_text(encoding="utf-8").splitlines()
        return [s.strip() for s in lines if s.strip() and not s.lstrip().startswith("#")]
    if suffix == ".csv":
        rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
        names = list(rows[0]) if rows else []
    else:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        names, rows = table.column_names, table.to_pylist()
    column = next((c for c in ("path", "image", "file") if c in names), None)
    if column is None:
        raise ValueError(f"{path}: need a 'path' or 'image' column (has: {', '.join(names)})")
    return [str(r[column]) for r in rows if r[column] not in (None, "")]


def job_items(inputs: Iterable[Any]) -> list[dict[str, Any]]:
    """Manifest items for `ImageSource`s or (source, question) pairs: deduplicated and sorted
    by path components, then question. `file` is where a worker reads the image (absolute, so
    workers started elsewhere find it); `path` is what the records name (what the user gave)."""
    items: dict[tuple[str, str], dict[str, Any]] = {}
    for it in inputs:
        source, question = it if isinstance(it, tuple) else (it, None)
        if not isinstance(source.data, Path):
            raise ValueError(f"{source.key}: sharded jobs take image files, not in-memory images")
        item: dict[str, Any] = {"path": source.key}
        absolute = os.path.abspath(source.data)
        if absolute != source.key:
            item["file"] = absolute
        if question is not None:
            item["question"] = " ".join(str(question).split())
        items.setdefault((input_identity(source.key), item.get("question", "")), item)
    return sorted(items.values(), key=lambda i: (Path(i["path"]).parts, i.get("question", "")))


def item_input(item: dict[str, Any]) -> Any:
    """A manifest item back as the task's input."""
    from im2text.images import ImageSource

    source = ImageSource(item["path"], Path(item.get("file", item["path"])))
    return (source, item["question"]) if "question" in item else source


def item_key(item: dict[str, Any]) -> tuple[str, str]:
    return (item["path"], item.get("question", ""))


@dataclass
class Manifest:
    job: dict[str, Any]  # JobSpec.identity()
    fingerprint: str
    shard_size: int
    items: list[dict[str, Any]]
    shards: list[tuple[int, int]]  # [start, stop) over items
    im2text: str = ""  # the version that created it

    def shard_items(self, shard: int) -> list[dict[str, Any]]:
        start, stop = self.shards[shard]
        return self.items[start:stop]

    def to_json(self) -> str:
        data = asdict(self)
        data["format"] = FORMAT
        data["shards"] = [list(s) for s in self.shards]
        return json.dumps(data, ensure_ascii=False, indent=0) + "\n"

    @classmethod
    def load(cls, storage: Storage) -> Manifest | None:
        raw = storage.read_bytes(MANIFEST)
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            if data.pop("format", None) != FORMAT:
                raise ValueError("unsupported manifest format")
            data["shards"] = [tuple(s) for s in data["shards"]]
            return cls(**data)
        except (ValueError, TypeError, KeyError) as e:
            raise ManifestError(f"{storage.root}/{MANIFEST} is not an im2text manifest: {e}") from e

    @classmethod
    def open(
        cls,
        storage: Storage,
        job: JobSpec,
        items: list[dict[str, Any]],
        shard_size: int | None = None,
    ) -> tuple[Manifest, int]:
        """The folder's manifest (created, or extended by new inputs), and how many inputs were
        new. Raises ManifestError when the folder holds a different job's outputs."""
        from im2text import __version__

        manifest = cls.load(storage)
        if manifest is None:
            if not items:
                raise ValueError("no inputs to run")
            if any(n.startswith("shard-") for n in storage.names()):
                raise ManifestError(f"{storage.root} holds shard files but no manifest.json")
            size = shard_size or DEFAULT_SHARD_SIZE
            manifest = cls(job.identity(), job.fingerprint(), size, [], [], __version__)
        elif manifest.fingerprint != job.fingerprint():
            raise ManifestError(
                f"{storage.root} holds the outputs of another job "
                f"({_describe(manifest.job)}); this one is {_describe(job.identity())}. "
                "Use a new --output folder, or rerun with the same task, model and parameters."
            )
        elif shard_size is not None and shard_size != manifest.shard_size:
            raise ManifestError(
                f"{storage.root} was sharded {manifest.shard_size} inputs a shard; "
                f"rerun without --shard-size or with --shard-size {manifest.shard_size}"
            )
        known = {item_key(i) for i in manifest.items}
        new = [i for i in items if item_key(i) not in known]
        if new or not known:  # new inputs, or a manifest not yet written
            start = len(manifest.items)
            manifest.items.extend(new)
            for lo in range(start, len(manifest.items), manifest.shard_size):
                manifest.shards.append((lo, min(lo + manifest.shard_size, len(manifest.items))))
            storage.write(MANIFEST, manifest.to_json().encode())
        return manifest, len(new)


def _describe(job: dict[str, Any]) -> str:
    params = ", ".join(f"{k}={v!r}" for k, v in job.get("params", {}).items())
    return f"{job.get('task')} with {job.get('model')}" + (f" ({params})" if params else "")


# --- one shard -------------------------------------------------------------------------------


@dataclass
class ShardCounts:
    shard: int
    records: int
    failed: int
    ran: int  # inputs run this time (a retry reruns only the failed ones)


def read_shard(storage: Storage, shard: int) -> list[dict[str, Any]] | None:
    raw = storage.read_bytes(shard_name(shard))
    if raw is None:
        return None
    text = raw.decode("utf-8", errors="surrogateescape")
    return [json.loads(line) for line in text.split("\n") if line]


def run_shard(
    model: Any,
    job: JobSpec,
    storage: Storage,
    shard: int,
    items: list[dict[str, Any]],
    *,
    parquet: bool = False,
    retry_errors: bool = False,
    before_publish: Callable[[], None] | None = None,
) -> ShardCounts:
    """Run one shard with the task code and publish its records (the done marker last).

    With `retry_errors`, a shard already done runs only its failed inputs again and is
    rewritten whole with their new records.
    """
    records: list[dict[str, Any] | None] = [None] * len(items)
    todo = list(range(len(items)))
    if retry_errors and (old := read_shard(storage, shard)) is not None:
        if len(old) != len(items):
            raise ManifestError(f"{shard_name(shard)} does not match the manifest")
        records = list(old)
        todo = [k for k, r in enumerate(old) if r.get("error")]
        if not todo:
            return ShardCounts(shard, len(items), 0, 0)
    inputs = [item_input(items[k]) for k in todo]
    results = model.stream(job.task, inputs, **job.params)
    for k, result in zip(todo, results, strict=True):
        records[k] = result.to_record(model.name)
    done = [r for r in records if r is not None]
    if parquet:
        import pyarrow as pa
        import pyarrow.parquet as pq

        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(done), buf)
        storage.write(shard_name(shard, "parquet"), buf.getvalue())
    text = "".join(record_line(r) for r in done)
    storage.write(shard_name(shard), text.encode("utf-8"), before_publish=before_publish)
    return ShardCounts(shard, len(done), sum(bool(r.get("error")) for r in done), len(todo))


def shard_status(storage: Storage, manifest: Manifest, *, retry_errors: bool) -> list[int]:
    """The shards left to run: those without a record file, and with `retry_errors` those whose
    records hold errors."""
    present = set(storage.names())
    todo = []
    for shard in range(len(manifest.shards)):
        missing = shard_name(shard) not in present
        if missing or (retry_errors and _has_errors(read_shard(storage, shard) or [])):
            todo.append(shard)
    return todo


def _has_errors(records: list[dict[str, Any]]) -> bool:
    return any(r.get("error") for r in records)


def count_records(storage: Storage, manifest: Manifest) -> dict[str, int]:
    records = failed = 0
    for shard in range(len(manifest.shards)):
        for rec in read_shard(storage, shard) or []:
            records += 1
            failed += bool(rec.get("error"))
    return {"shards": len(manifest.shards), "records": records, "failed": failed}


def merge(
    output: str | os.PathLike[str], to: str | os.PathLike[str], *, fields: Sequence[str] = ()
) -> int:
    """Concatenate a finished job's shards into one JSONL or CSV file, in input order.

    Returns the number of records. Raises ValueError while shards are missing.
    """
    storage = Storage(output)
    manifest = Manifest.load(storage)
    if manifest is None:
        raise ValueError(f"{output} is not a sharded im2text output (no {MANIFEST})")
    missing = shard_status(storage, manifest, retry_errors=False)
    if missing:
        raise ValueError(
            f"{len(missing)} of {len(manifest.shards)} shards are not done "
            f"(first: {shard_name(missing[0])}); rerun the job to finish them"
        )
    target = Path(to)
    is_csv = target.suffix.lower() == ".csv"
    if is_csv and not fields:
        from im2text.tasks import get_task

        fields = get_task(manifest.job["task"]).fields
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # as RecordWriter writes CSV
    if is_csv:
        writer.writerow(fields)
    count = 0
    for shard in range(len(manifest.shards)):
        for rec in read_shard(storage, shard) or []:
            count += 1
            if is_csv:
                writer.writerow([_csv_value(rec.get(f)) for f in fields])
            else:
                out.write(record_line(rec))
    target.parent.mkdir(parents=True, exist_ok=True)
    Storage(target.parent).write(target.name, out.getvalue().encode("utf-8"))
    return count


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False) if isinstance(value, (list, dict)) else value
