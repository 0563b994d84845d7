"""Hugging Face `datasets` saved with `save_to_disk` (an optional dependency)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from im2text.data._common import UniqueIds, answers_from, captions_from, require_examples
from im2text.data.records import CaptionExample, DatasetError, VqaExample

__all__ = ["read_hf_dataset"]

_INSTALL_HINT = "pip install 'im2text[data]'"
_IMAGE_COLUMNS = ("image", "img", "image_path", "file_name")
_CAPTION_COLUMNS = ("captions", "caption", "text")


def read_hf_dataset(
    path: str | Path, *, task: str = "caption", split: str | None = None
) -> list[CaptionExample] | list[VqaExample]:
    """Read a dataset saved with `Dataset.save_to_disk` / `DatasetDict.save_to_disk`.

    Images come from an `image` column (decoded PIL images, kept in memory) or a path column
    (`image_path` / `file_name`, relative to the dataset folder). Captions come from `captions`
    (list), `caption` or `text`; VQA rows need `question` and `answers`.

    Args:
        path: the folder written by `save_to_disk`.
        task: "caption" or "vqa".
        split: which split of a `DatasetDict` (default: its only split, or "train").

    Raises:
        ImportError: `datasets` is not installed.
        DatasetError: wrong columns or values; rows are numbered from 0 ("path[row 17]: ...").
    """
    try:
        import datasets  # type: ignore[import-untyped]
    except ImportError:
        raise ImportError(
            f"reading a saved Hugging Face dataset needs `datasets`: {_INSTALL_HINT}"
        ) from None
    root = Path(path)
    try:
        ds = datasets.load_from_disk(str(root))
    except FileNotFoundError as e:
        raise DatasetError(root, f"not a dataset saved with save_to_disk: {e}") from None
    if isinstance(ds, datasets.DatasetDict):
        names = list(ds)
        if split is None:
            split = names[0] if len(names) == 1 else "train"
        if split not in ds:
            raise DatasetError(root, f"no split {split!r} (splits: {', '.join(names)})")
        ds = ds[split]
    columns = list(ds.column_names)
    image_col = next((c for c in _IMAGE_COLUMNS if c in columns), None)
    if image_col is None:
        raise DatasetError(
            root,
            f"no image column (one of {', '.join(_IMAGE_COLUMNS)}); columns: {', '.join(columns)}",
        )
    if task == "caption":
        text_col = next((c for c in _CAPTION_COLUMNS if c in columns), None)
        if text_col is None:
            raise DatasetError(
                root,
                f"no caption column (one of {', '.join(_CAPTION_COLUMNS)}); "
                f"columns: {', '.join(columns)}",
            )
    elif task == "vqa":
        missing = [c for c in ("question", "answers") if c not in columns]
        if missing:
            raise DatasetError(
                root, f"no {' or '.join(missing)} column; columns: {', '.join(columns)}"
            )
    else:
        raise ValueError(f"unknown task {task!r}; choose 'caption' or 'vqa'")

    ids = UniqueIds(root)
    examples: list[Any] = []
    for n, row in enumerate(ds):
        where = f"[row {n}]"
        image = _image(row[image_col], root, where)
        if task == "caption":
            captions = captions_from(row[text_col], root, None, where)
            key = str(row.get("id", row.get("image_id", n)))
            examples.append(CaptionExample(image, captions, key))
        else:
            question = row["question"]
            if not isinstance(question, str) or not question.strip():
                raise DatasetError(root, "empty question", where=where)
            key = str(row.get("question_id", n))
            examples.append(
                VqaExample(
                    image,
                    question.strip(),
                    answers_from(row["answers"], root, None, where),
                    key,
                    row.get("answer_type"),
                    row.get("question_type"),
                )
            )
        ids.add(key, f"row {n}", where=where)
    require_examples(examples, root)
    return examples


def _image(value: Any, root: Path, where: str) -> Any:
    if isinstance(value, str):
        path = root / value
        if not path.is_file():
            raise DatasetError(root, f"image not found: {path}", where=where)
        return path
    if isinstance(value, Mapping) and value.get("path"):  # an undecoded Image feature
        return _image(value["path"], root, where)
    if value is None or not hasattr(value, "size"):
        raise DatasetError(root, f"no image (got {type(value).__name__})", where=where)
    return value  # a PIL image
