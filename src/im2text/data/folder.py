"""Image folders: Hugging Face imagefolder metadata (JSONL or CSV) and sidecar `.txt` captions.

Layouts read:

- `metadata.jsonl`: one JSON object per line, `{"file_name": "a.jpg", "text": "a cat"}` (the
  Hugging Face imagefolder convention); `caption` or `captions` (a list) work instead of `text`.
  For VQA: `{"file_name", "question", "answers": [...], "question_id"?, "answer_type"?}`.
- `metadata.csv` or any CSV with the same columns (a `captions` cell may hold a JSON list).
- sidecar captions, when there is no metadata file: `photo.jpg` + `photo.txt` (the layout of
  diffusion training sets); each non-empty line of the .txt is one caption.

File names are relative to the metadata file's folder (or `image_root`).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from im2text.data._common import (
    IMAGE_SUFFIXES,
    UniqueIds,
    caption_row,
    check_image,
    require_examples,
    vqa_row,
)
from im2text.data.records import CaptionExample, DatasetError, VqaExample

__all__ = ["read_csv", "read_image_folder", "read_jsonl", "read_sidecar_captions"]

Example = CaptionExample | VqaExample
Examples = list[CaptionExample] | list[VqaExample]


def read_image_folder(
    folder: str | Path, *, task: str = "caption", check_images: bool = True
) -> Examples:
    """Read a folder holding `metadata.jsonl`, `metadata.csv`, or images with `.txt` captions.

    Raises:
        DatasetError: the folder is missing, has no usable layout, or a file in it is wrong.
    """
    root = Path(folder)
    if not root.is_dir():
        raise DatasetError(root, "folder not found")
    if (root / "metadata.jsonl").is_file():
        return read_jsonl(root / "metadata.jsonl", task=task, check_images=check_images)
    if (root / "metadata.csv").is_file():
        return read_csv(root / "metadata.csv", task=task, check_images=check_images)
    if task != "caption":
        raise DatasetError(root, f"a {task} folder needs a metadata.jsonl or metadata.csv")
    return read_sidecar_captions(root, check_images=check_images)


def read_jsonl(
    path: str | Path,
    *,
    task: str = "caption",
    image_root: str | Path | None = None,
    check_images: bool = True,
) -> Examples:
    """Read a JSON-lines metadata file (one example per non-blank line)."""
    path = Path(path)
    root = Path(image_root) if image_root is not None else path.parent
    ids = UniqueIds(path)
    examples: list[Any] = []
    try:
        with path.open(encoding="utf-8") as f:
            for n, text in enumerate(f, start=1):
                if not text.strip():
                    continue
                try:
                    row = json.loads(text)
                except json.JSONDecodeError as e:
                    raise DatasetError(
                        path, f"invalid JSON: {e.msg} (column {e.colno})", line=n
                    ) from None
                if not isinstance(row, dict):
                    raise DatasetError(
                        path, f"expected a JSON object, got {type(row).__name__}", line=n
                    )
                ex = _row(row, root, path, n, task, check_images)
                ids.add(ex.id, f"line {n}", line=n)
                examples.append(ex)
    except FileNotFoundError:
        raise DatasetError(path, "file not found") from None
    except UnicodeDecodeError as e:
        raise DatasetError(path, f"not UTF-8 text ({e.reason})") from None
    require_examples(examples, path)
    return examples


def read_csv(
    path: str | Path,
    *,
    task: str = "caption",
    image_root: str | Path | None = None,
    check_images: bool = True,
) -> Examples:
    """Read a CSV with a header row (`file_name` plus caption or VQA columns)."""
    path = Path(path)
    root = Path(image_root) if image_root is not None else path.parent
    ids = UniqueIds(path)
    examples: list[Any] = []
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or "file_name" not in reader.fieldnames:
                raise DatasetError(path, "header row must name a 'file_name' column", line=1)
            width = len(reader.fieldnames)
            start = reader.line_num + 1
            for row in reader:
                n = start  # first physical line of this record
                start = reader.line_num + 1
                if None in row or None in row.values():
                    got = width + len(row.get(None) or []) - sum(v is None for v in row.values())
                    raise DatasetError(
                        path, f"bad row: expected {width} columns, got {got}", line=n
                    )
                if not any((v or "").strip() for v in row.values()):
                    continue  # blank line
                ex = _row(row, root, path, n, task, check_images)
                ids.add(ex.id, f"line {n}", line=n)
                examples.append(ex)
    except FileNotFoundError:
        raise DatasetError(path, "file not found") from None
    except UnicodeDecodeError as e:
        raise DatasetError(path, f"not UTF-8 text ({e.reason})") from None
    except csv.Error as e:
        raise DatasetError(path, f"bad CSV: {e}") from None
    require_examples(examples, path)
    return examples


def read_sidecar_captions(folder: str | Path, *, check_images: bool = True) -> list[CaptionExample]:
    """Images with same-name `.txt` caption files beside them (searched recursively)."""
    root = Path(folder)
    images = sorted(
        p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    )
    with_text = [p for p in images if p.with_suffix(".txt").is_file()]
    if not with_text:
        detail = (
            f"{len(images)} image(s) but no metadata.jsonl, metadata.csv or .txt captions"
            if images
            else "no images, metadata.jsonl, metadata.csv or .txt captions"
        )
        raise DatasetError.empty(root, detail)
    examples = []
    for image in images:
        txt = image.with_suffix(".txt")
        if not txt.is_file():
            raise DatasetError(txt, f"missing caption file for {image.name}")
        try:
            lines = txt.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as e:
            raise DatasetError(txt, f"not UTF-8 text ({e.reason})") from None
        captions = [t.strip() for t in lines if t.strip()]
        if not captions:
            raise DatasetError(txt, "empty caption", line=1)
        if check_images:
            check_image(image, txt, None)
        examples.append(CaptionExample(image, captions, image.relative_to(root).as_posix()))
    return examples


def _row(row: dict, root: Path, source: Path, line: int, task: str, check_images: bool) -> Example:
    if task == "caption":
        return caption_row(row, root, source, line, check_images=check_images)
    if task == "vqa":
        return vqa_row(row, root, source, line, check_images=check_images, default_id=str(line))
    raise ValueError(f"unknown task {task!r}; choose 'caption' or 'vqa'")
