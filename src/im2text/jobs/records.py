"""Append-only record files (JSONL or CSV) that a killed job can resume without loss or duplicates.

Each record is written as one complete line and flushed to the OS at once, so a SIGKILL loses at
most the batch in flight. On reopen, a torn last line (a kill mid-write) is cut off and every
input already present is skipped. fsync runs every few seconds and on close, for power loss.

An output belongs to one job: `OUT.im2text.json` beside it names the task, model and parameters
that wrote it, and a rerun of another job on the same file is refused (naming the difference).
A file that is not a record file of the expected format is refused untouched, and a lock keeps
a second process off the same output. Special files (`/dev/stdout`, a pipe) are plain streams:
no resume, no sidecar, nothing read back.
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import stat
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

CSV_FIELDS = ("path", "caption", "score", "captions", "model", "error")
JOB_SUFFIX = ".im2text.json"  # the sidecar that names an output's job
# Line separators that str.splitlines() (and many JSONL readers) split on but JSON leaves raw.
_SEPARATORS = {"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"}


class OutputError(ValueError):
    """An output that is not this job's: another job's records, a foreign file, or in use."""


def take_lock(path: Path, busy: Exception) -> Any:
    """An exclusive lock on `path` (created), held until the returned file is closed — also
    when the process dies. Raises `busy` at once if another process holds it."""
    f = open(path, "a")  # noqa: SIM115
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise busy from None
    return f


def input_identity(key: str) -> str:
    """What makes two inputs one: the resolved real path of a file (`imgs/a.jpg`, `./imgs/a.jpg`
    and its absolute path are one input); other keys (`<bytes #3>`) as they are."""
    return key if key.startswith("<") else os.path.realpath(key)


def job_difference(old: dict[str, Any], new: dict[str, Any]) -> str:
    """`model: 'a' -> 'b'; max_new_tokens: 6 -> 9` for two job identities."""
    flat_old = {**{k: v for k, v in old.items() if k != "params"}, **old.get("params", {})}
    flat_new = {**{k: v for k, v in new.items() if k != "params"}, **new.get("params", {})}
    keys = sorted(set(flat_old) | set(flat_new))
    return "; ".join(
        f"{k}: {flat_old.get(k)!r} -> {flat_new.get(k)!r}"
        for k in keys
        if flat_old.get(k) != flat_new.get(k)
    )


class RecordWriter:
    """Resumable writer of one record per input.

    Args:
        path: `*.jsonl` (or `*.json`) for JSON lines, `*.csv` for CSV; a special file
            (`/dev/stdout`, a FIFO) is written as a stream without resume.
        fields: CSV column order (JSONL keeps each record's own keys).
        key_fields: the fields that identify an input (e.g. path + question for VQA); the first
            is a path, compared by `input_identity`.
        retry_errors: drop records whose `error` is set, so those inputs run again.
        retry_only: with `retry_errors`, drop only the failed records of these keys (the inputs
            given this time); None drops every failed record.
        job: the job's identity (task, model, parameters); an output written by another job is
            refused unless `other_job_ok`.
        fsync_every: seconds between fsyncs.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fields: tuple[str, ...] = CSV_FIELDS,
        key_fields: tuple[str, ...] = ("path",),
        retry_errors: bool = False,
        retry_only: Iterable[tuple[str, ...]] | None = None,
        job: dict[str, Any] | None = None,
        other_job_ok: bool = False,
        fsync_every: float = 2.0,
    ):
        self.path = Path(path)
        self.fields = fields
        self.key_fields = key_fields
        self.is_csv = self.path.suffix.lower() == ".csv"
        self.fsync_every = fsync_every
        self.stream = self.path.exists() and not self.path.is_file()
        self.done: set[tuple[str, ...]] = set()
        self._lock: Any = None
        if self.stream:  # /dev/stdout, /dev/null, a pipe: write, never read back
            self._file = open(self.path, "w", encoding="utf-8", errors="surrogateescape")  # noqa: SIM115
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._take_lock()
            records = self._recover(retry_errors, retry_only)
            self._check_job(job, other_job_ok, bool(records))
            self.done = {self.key(r) for r in records}
            self._file = open(  # noqa: SIM115
                self.path, "a", encoding="utf-8", errors="surrogateescape", newline=""
            )
        if self.is_csv and (self.stream or self._file.tell() == 0):
            self._file.write(_csv_line(self.fields))
            self._file.flush()
        self._last_sync = time.monotonic()

    def _take_lock(self) -> None:
        self._lock = take_lock(
            self.path.parent / f".{self.path.name}.lock",
            OutputError(f"{self.path} is being written by another im2text process"),
        )

    def _check_job(self, job: dict[str, Any] | None, other_ok: bool, has_records: bool) -> None:
        if job is None:
            return
        sidecar = self.path.with_name(self.path.name + JOB_SUFFIX)
        if sidecar.is_file() and has_records:
            try:
                old = json.loads(sidecar.read_text(encoding="utf-8"))["job"]
            except (ValueError, KeyError, TypeError):
                raise OutputError(f"{sidecar} is not an im2text job file") from None
            if old != job and not other_ok:
                raise OutputError(
                    f"{self.path} holds the records of another job ({job_difference(old, job)}); "
                    "use another --output, or --other-job to append to it knowingly"
                )
            if old == job:
                return
        from im2text import __version__

        atomic_write(sidecar, json.dumps({"job": job, "im2text": __version__}, indent=1) + "\n")

    def _recover(
        self, retry_errors: bool, retry_only: Iterable[tuple[str, ...]] | None
    ) -> list[dict[str, Any]]:
        """Read what an earlier run wrote, cutting a torn tail; rewrite without failed records.
        A file that is not a record file of this format is refused, untouched."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return []
        data = self.path.read_bytes()
        keep = data[: data.rfind(b"\n") + 1]  # a line without its newline was cut by a kill
        text = keep.decode("utf-8", errors="surrogateescape")
        records = _parse(text, self.is_csv)
        header = next(csv.reader(io.StringIO(text)), None) if self.is_csv and text else None
        if records is None or (self.is_csv and header != list(self.fields)):
            raise OutputError(
                f"{self.path} exists and is not an im2text {'CSV' if self.is_csv else 'JSONL'} "
                "record file of this task; left untouched (choose another --output)"
            )
        first = self.key_fields[0]
        if any(first not in r for r in records):
            raise OutputError(f"{self.path} has records without '{first}'; left untouched")
        valid = records
        if retry_errors:
            again = {self._identity(k) for k in retry_only} if retry_only is not None else None
            valid = [
                r
                for r in records
                if not r.get("error") or (again is not None and self.key(r) not in again)
            ]
        if len(keep) != len(data) or len(valid) != len(records):
            self._rewrite(valid)
        return valid

    def _rewrite(self, records: list[dict[str, Any]]) -> None:
        text = (_csv_line(self.fields) if self.is_csv else "") + "".join(
            self._format(r) for r in records
        )
        atomic_write(self.path, text.encode("utf-8", errors="surrogateescape"))

    def _format(self, record: dict[str, Any]) -> str:
        if self.is_csv:
            row = [record.get(f) for f in self.fields]
            return _csv_line(
                json.dumps(v, ensure_ascii=False) if isinstance(v, (list, dict)) else v for v in row
            )
        return record_line(record)

    def _identity(self, key: tuple[str, ...]) -> tuple[str, ...]:
        return (input_identity(key[0]), *key[1:])

    def key(self, record: dict[str, Any]) -> tuple[str, ...]:
        """The identity of the input a record is about."""
        return self._identity(tuple(str(record.get(f)) for f in self.key_fields))

    def has(self, key: tuple[str, ...]) -> bool:
        """Whether the output already holds a record for the input with this key."""
        return self._identity(key) in self.done

    def write(self, record: dict[str, Any]) -> None:
        """Append one record (one line, flushed). Its key is marked done."""
        self._file.write(self._format(record))
        self._file.flush()
        self.done.add(self.key(record))
        if not self.stream and time.monotonic() - self._last_sync > self.fsync_every:
            os.fsync(self._file.fileno())
            self._last_sync = time.monotonic()

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            if not self.stream:
                os.fsync(self._file.fileno())
            self._file.close()
        if self._lock is not None and not self._lock.closed:
            self._lock.close()  # releases the flock

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def record_line(record: dict[str, Any]) -> str:
    """One JSONL line. Non-UTF-8 file names (surrogate escapes) are written as JSON escapes and
    line separators inside strings are escaped, so every reader splits lines where we do."""
    try:
        text = json.dumps(record, ensure_ascii=False, allow_nan=False)
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(record, ensure_ascii=True, allow_nan=False)
    for raw, escaped in _SEPARATORS.items():
        text = text.replace(raw, escaped)
    return text + "\n"


def _parse(text: str, is_csv: bool) -> list[dict[str, Any]] | None:
    """The records in `text` (whole lines only), or None if a line is not a record."""
    out: list[dict[str, Any]] = []
    if is_csv:
        try:
            rows = list(csv.reader(io.StringIO(text)))
        except csv.Error:
            return None
        if not rows:
            return []
        header = rows[0]
        for row in rows[1:]:
            if len(row) != len(header):
                return None
            out.append(dict(zip(header, row, strict=True)))
        return out
    for line in text.split("\n"):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            return None
        if not isinstance(rec, dict):
            return None
        out.append(rec)
    return out


def _csv_line(values: Any) -> str:
    buf = io.StringIO()
    # CRLF (RFC 4180): a field holding a bare \r is then quoted too, and reads back whole.
    csv.writer(buf, lineterminator="\r\n").writerow(["" if v is None else v for v in values])
    return buf.getvalue()


_UMASK = os.umask(0)
os.umask(_UMASK)  # read once: mkstemp's files are 0600, published files get the usual mode


def atomic_write(
    path: Path, data: str | bytes, *, before_publish: Callable[[], None] | None = None
) -> None:
    """Write via a temp file in the same folder + fsync + rename (+ fsync of the folder, so the
    rename survives a power cut): readers never see half a file. `before_publish` runs when the
    data is on disk but not yet visible under `path`."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)  # a rewrite keeps the file's mode
    except FileNotFoundError:
        mode = 0o666 & ~_UMASK
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
            os.fchmod(f.fileno(), mode)
        if before_publish is not None:
            before_publish()
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_sidecar(
    image_path: str | os.PathLike[str], text: str, *, overwrite: bool = False
) -> bool:
    """Write `photo.txt` beside `photo.jpg` (the LoRA/diffusion dataset layout), atomically.

    Returns False (and writes nothing) when the sidecar exists and `overwrite` is off.
    """
    target = Path(image_path).with_suffix(".txt")
    if target.exists() and not overwrite:
        return False
    atomic_write(target, text.strip() + "\n")
    return True


def sidecar_path(image_path: str | os.PathLike[str]) -> Path:
    return Path(image_path).with_suffix(".txt")
