"""Helpers shared by the readers: turning loose rows into validated records."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from im2text.data.records import CaptionExample, DatasetError, VqaExample

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
CAPTION_FIELDS = ("captions", "caption", "text")  # looked up in this order


def load_json(path: Path) -> Any:
    """Parse a JSON file; syntax errors name the file and line."""
    try:
        with path.open(encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise DatasetError(path, "file not found") from None
    except UnicodeDecodeError as e:
        raise DatasetError(path, f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise DatasetError(
            path, f"invalid JSON: {e.msg} (column {e.colno})", line=e.lineno
        ) from None


def captions_from(value: Any, source: Path, line: int | None, where: str = "") -> list[str]:
    """A caption field (string or list of strings) as a list of non-empty captions."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
        raise DatasetError(
            source, "captions must be a string or a list of strings", line=line, where=where
        )
    if not value:
        raise DatasetError(source, "no caption", line=line, where=where)
    if any(not c.strip() for c in value):
        raise DatasetError(source, "empty caption", line=line, where=where)
    return [c.strip() for c in value]


def answers_from(value: Any, source: Path, line: int | None, where: str = "") -> list[str]:
    """Answers given as a string, a list of strings, or VQA-style [{"answer": ...}, ...]."""
    if isinstance(value, str):
        value = [value]
    if isinstance(value, Mapping) and isinstance(value.get("answer"), list):
        value = value["answer"]  # HF datasets may store a list of dicts as a dict of lists
    if not isinstance(value, list):
        raise DatasetError(source, "answers must be a list", line=line, where=where)
    out = []
    for a in value:
        if isinstance(a, Mapping):
            a = a.get("answer")
        if not isinstance(a, str):
            raise DatasetError(
                source, f"answer must be a string, got {a!r}", line=line, where=where
            )
        out.append(a)
    return out


def check_image(path: Path, source: Path, line: int | None, where: str = "") -> Path:
    if not path.is_file():
        raise DatasetError(source, f"image not found: {path}", line=line, where=where)
    return path


def caption_row(
    row: Mapping[str, Any],
    root: Path,
    source: Path,
    line: int | None,
    *,
    check_images: bool,
    where: str = "",
) -> CaptionExample:
    """A metadata row {"file_name", caption field[, "id"]} as a `CaptionExample`."""
    file_name = _file_name(row, source, line, where)
    field = next((f for f in CAPTION_FIELDS if row.get(f) not in (None, "")), None)
    if field is None:
        if any(f in row for f in CAPTION_FIELDS):
            raise DatasetError(source, "empty caption", line=line, where=where)
        raise DatasetError(
            source, f"no caption field (one of {', '.join(CAPTION_FIELDS)})", line=line, where=where
        )
    value = row[field]
    if field == "captions" and isinstance(value, str) and value.lstrip().startswith("["):
        try:  # CSV cells can hold a JSON list
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise DatasetError(
                source, f"captions is not a JSON list: {e.msg}", line=line, where=where
            ) from None
    image = root / file_name
    if check_images:
        check_image(image, source, line, where)
    return CaptionExample(
        image, captions_from(value, source, line, where), str(row.get("id") or file_name)
    )


def vqa_row(
    row: Mapping[str, Any],
    root: Path,
    source: Path,
    line: int | None,
    *,
    check_images: bool,
    default_id: str,
    where: str = "",
) -> VqaExample:
    """A metadata row {"file_name", "question", "answers"|"answer"[, ids, types]}."""
    file_name = _file_name(row, source, line, where)
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        raise DatasetError(source, "empty or missing question", line=line, where=where)
    raw = row.get("answers", row.get("answer", []))
    if isinstance(raw, str) and raw.lstrip().startswith("["):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as e:
            raise DatasetError(
                source, f"answers is not a JSON list: {e.msg}", line=line, where=where
            ) from None
    answers = answers_from(raw, source, line, where) if raw not in (None, "") else []
    image = root / file_name
    if check_images:
        check_image(image, source, line, where)
    qid = row.get("question_id")
    return VqaExample(
        image=image,
        question=question.strip(),
        answers=answers,
        question_id=str(qid) if qid not in (None, "") else default_id,
        answer_type=row.get("answer_type") or None,
        question_type=row.get("question_type") or None,
    )


def _file_name(row: Mapping[str, Any], source: Path, line: int | None, where: str) -> str:
    file_name = row.get("file_name")
    if not isinstance(file_name, str) or not file_name.strip():
        raise DatasetError(source, "missing 'file_name'", line=line, where=where)
    return file_name.strip()


class UniqueIds:
    """Remembers where each id was first seen, to report duplicates with both places."""

    def __init__(self, source: Path, what: str = "id") -> None:
        self.source = source
        self.what = what
        self.seen: dict[str, str] = {}

    def add(self, key: str, place: str, *, line: int | None = None, where: str = "") -> None:
        if key in self.seen:
            raise DatasetError(
                self.source,
                f"duplicate {self.what} {key!r} (first at {self.seen[key]})",
                line=line,
                where=where,
            )
        self.seen[key] = place


def require_examples(examples: list, source: Path | str, detail: str = "") -> None:
    if not examples:
        raise DatasetError.empty(source, detail)
