"""Append-only record files (JSONL or CSV) that a killed job can resume without loss or duplicates.

Each record is written as one complete line and flushed to the OS at once, so a SIGKILL loses at
most the batch in flight. On reopen, a torn last line (a kill mid-write) is cut off and every
`path` already present is skipped. fsync runs every few seconds and on close, for power loss.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

CSV_FIELDS = ("path", "caption", "score", "captions", "model", "error")


class RecordWriter:
    """Resumable writer of one record per input.

    Args:
        path: `*.jsonl` (or `*.json`) for JSON lines, `*.csv` for CSV.
        fields: CSV column order (JSONL keeps each record's own keys).
        key_fields: the fields that identify an input (e.g. path + question for VQA).
        retry_errors: drop records whose `error` is set, so those inputs run again.
        fsync_every: seconds between fsyncs.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fields: tuple[str, ...] = CSV_FIELDS,
        key_fields: tuple[str, ...] = ("path",),
        retry_errors: bool = False,
        fsync_every: float = 2.0,
    ):
        self.path = Path(path)
        self.fields = fields
        self.key_fields = key_fields
        self.is_csv = self.path.suffix.lower() == ".csv"
        self.fsync_every = fsync_every
        self.path.parent.mkdir(parents=True, exist_ok=True)
        records = self._recover(retry_errors)
        self.done: set[tuple[str, ...]] = {self.key(r) for r in records}
        self._file = open(self.path, "a", encoding="utf-8", newline="")  # noqa: SIM115
        if self.is_csv and self._file.tell() == 0:
            self._file.write(_csv_line(self.fields))
            self._file.flush()
        self._last_sync = time.monotonic()

    def _recover(self, retry_errors: bool) -> list[dict[str, Any]]:
        """Read what an earlier run wrote, cutting a torn tail; rewrite without failed records."""
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        keep = data[: data.rfind(b"\n") + 1]  # a line without its newline was cut by a kill
        records = _parse(keep.decode("utf-8", errors="replace"), self.is_csv)
        valid = [r for r in records if r is not None]
        if retry_errors:
            valid = [r for r in valid if not r.get("error")]
        if len(keep) != len(data) or len(valid) != len(records):
            self._rewrite(valid)
        return valid

    def _rewrite(self, records: list[dict[str, Any]]) -> None:
        text = (_csv_line(self.fields) if self.is_csv else "") + "".join(
            self._format(r) for r in records
        )
        atomic_write(self.path, text)

    def _format(self, record: dict[str, Any]) -> str:
        if self.is_csv:
            row = [record.get(f) for f in self.fields]
            return _csv_line(
                json.dumps(v, ensure_ascii=False) if isinstance(v, (list, dict)) else v for v in row
            )
        return json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n"

    def key(self, record: dict[str, Any]) -> tuple[str, ...]:
        """The identity of the input a record is about."""
        return tuple(str(record.get(f)) for f in self.key_fields)

    def write(self, record: dict[str, Any]) -> None:
        """Append one record (one line, flushed). Its key is marked done."""
        self._file.write(self._format(record))
        self._file.flush()
        self.done.add(self.key(record))
        if time.monotonic() - self._last_sync > self.fsync_every:
            os.fsync(self._file.fileno())
            self._last_sync = time.monotonic()

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _parse(text: str, is_csv: bool) -> list[dict[str, Any] | None]:
    """Records in `text`; None for a line that is not a whole record."""
    out: list[dict[str, Any] | None] = []
    if is_csv:
        rows = list(csv.reader(io.StringIO(text)))
        if not rows:
            return []
        header = rows[0]
        for row in rows[1:]:
            out.append(dict(zip(header, row, strict=True)) if len(row) == len(header) else None)
        return out
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            rec = None
        out.append(rec if isinstance(rec, dict) and "path" in rec else None)
    return out


def _csv_line(values: Any) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(["" if v is None else v for v in values])
    return buf.getvalue()


_UMASK = os.umask(0)
os.umask(_UMASK)  # read once: mkstemp's files are 0600, published files get the usual mode


def atomic_write(
    path: Path, data: str | bytes, *, before_publish: Callable[[], None] | None = None
) -> None:
    """Write via a temp file in the same folder + fsync + rename (+ fsync of the folder, so the
    rename survives a power cut): readers never see half a file. `before_publish` runs when the
    data is on disk but not yet visible under `path`."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
            os.fchmod(f.fileno(), 0o666 & ~_UMASK)
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
