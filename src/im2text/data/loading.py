"""One entry point that recognises the dataset format, and a seeded train/val split."""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, overload

from im2text.data._common import load_json
from im2text.data.coco import read_coco_captions, read_karpathy, read_vqa
from im2text.data.folder import read_csv, read_image_folder, read_jsonl
from im2text.data.hf import read_hf_dataset
from im2text.data.records import CaptionExample, DatasetError, VqaExample

__all__ = ["FORMATS", "load_dataset", "split"]

# Format names a spec may give explicitly, and the reader each one uses.
FORMATS = ("imagefolder", "jsonl", "csv", "coco", "karpathy", "vqa", "hf")

E = TypeVar("E", CaptionExample, VqaExample)


@overload
def load_dataset(
    path_or_spec: str | Path | Mapping[str, Any], task: Literal["caption"] = ..., **kw: Any
) -> list[CaptionExample]: ...
@overload
def load_dataset(
    path_or_spec: str | Path | Mapping[str, Any], task: Literal["vqa"], **kw: Any
) -> list[VqaExample]: ...
@overload
def load_dataset(
    path_or_spec: str | Path | Mapping[str, Any], task: str = ..., **kw: Any
) -> list[CaptionExample] | list[VqaExample]: ...
def load_dataset(
    path_or_spec: str | Path | Mapping[str, Any], task: str = "caption", **kw: Any
) -> list[CaptionExample] | list[VqaExample]:
    """Read a dataset, detecting its format from what it is given.

    Args:
        path_or_spec: a path, or a mapping `{"format": one of FORMATS, "path": ..., **options}`.
            Paths are recognised as:
            - a folder saved by `datasets` (`save_to_disk`) -> "hf";
            - a folder with `metadata.jsonl` / `metadata.csv`, or images + `.txt` -> "imagefolder";
            - `*.jsonl` -> "jsonl"; `*.csv` -> "csv";
            - `*.json` with `images` + `annotations` -> "coco"; with `images[*].sentences` ->
              "karpathy"; with `questions` -> "vqa" (pass `annotations=` for the answers).
        task: "caption" or "vqa".
        **kw: options of the chosen reader (`image_root`, `split`, `annotations`,
            `image_pattern`, `check_images`, ...).

    Returns:
        `CaptionExample`s or `VqaExample`s (never an empty list).

    Raises:
        DatasetError: unknown layout, or anything wrong in the files (named with file and line).
        ValueError: an unknown task or format.
    """
    if task not in ("caption", "vqa"):
        raise ValueError(f"unknown task {task!r}; choose 'caption' or 'vqa'")
    if isinstance(path_or_spec, Mapping):
        spec = dict(path_or_spec)
        fmt = spec.pop("format", None)
        path = spec.pop("path", None)
        if path is None:
            path = spec.pop("questions", None)
        if path is None:
            raise ValueError("a dataset spec needs a 'path'")
        kw = {**spec, **kw}
    else:
        fmt, path = None, path_or_spec
    path = Path(path)
    data = None
    if fmt is None:
        fmt, data = _detect(path, task)
    if fmt not in FORMATS:
        raise ValueError(f"unknown dataset format {fmt!r}; choose from {', '.join(FORMATS)}")
    if task == "vqa" and fmt in ("coco", "karpathy"):
        raise DatasetError(path, f"a {fmt} captions file cannot be read as a VQA dataset")
    if task == "caption" and fmt == "vqa":
        raise DatasetError(path, "a VQA questions file; use task='vqa'")

    if fmt == "hf":
        return read_hf_dataset(path, task=task, **kw)
    if fmt == "imagefolder":
        return read_image_folder(path, task=task, **kw)
    if fmt == "jsonl":
        return read_jsonl(path, task=task, **kw)
    if fmt == "csv":
        return read_csv(path, task=task, **kw)
    if fmt == "coco":
        return read_coco_captions(path, data=data, **kw)
    if fmt == "karpathy":
        return read_karpathy(path, data=data, **kw)
    return read_vqa(path, data=data, **kw)


def _detect(path: Path, task: str) -> tuple[str, Any]:
    if path.is_dir():
        if any(
            (path / f).is_file() for f in ("dataset_info.json", "dataset_dict.json", "state.json")
        ):
            return "hf", None
        return "imagefolder", None
    if not path.exists():
        raise DatasetError(path, "not found")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return "jsonl", None
    if suffix == ".csv":
        return "csv", None
    if suffix == ".json":
        doc = load_json(path)
        if isinstance(doc, Mapping):
            images = doc.get("images")
            if isinstance(doc.get("questions"), list):
                return "vqa", doc
            if isinstance(images, list) and isinstance(doc.get("annotations"), list):
                return "coco", doc
            if (
                isinstance(images, list)
                and images
                and isinstance(images[0], Mapping)
                and ("sentences" in images[0])
            ):
                return "karpathy", doc
            if isinstance(doc.get("annotations"), list) and task == "vqa":
                raise DatasetError(
                    path,
                    "a VQA annotations file: pass the questions file, with annotations=<this file>",
                )
        raise DatasetError(
            path, "unknown JSON layout (expected COCO captions, a Karpathy split or VQA questions)"
        )
    raise DatasetError(
        path, "cannot tell the dataset format (expected a folder, .jsonl, .csv or .json)"
    )


@overload
def split(
    examples: Sequence[CaptionExample], val_fraction: float = ..., seed: int = ...
) -> tuple[list[CaptionExample], list[CaptionExample]]: ...
@overload
def split(
    examples: Sequence[VqaExample], val_fraction: float = ..., seed: int = ...
) -> tuple[list[VqaExample], list[VqaExample]]: ...
def split(
    examples: Sequence[E], val_fraction: float = 0.1, seed: int = 0
) -> tuple[list[E], list[E]]:
    """Seeded train/validation split that never puts one image in both parts.

    Examples are grouped by image (the file path, or for in-memory images their content), the
    groups are shuffled with `seed`, and `ceil(val_fraction * groups)` of them go to validation.
    Input order is kept inside each part.

    Returns:
        (train, val)

    Raises:
        ValueError: `val_fraction` not in (0, 1), or fewer than two images.
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    keys = [_image_key(ex.image) for ex in examples]
    groups = sorted(set(keys))
    if len(groups) < 2:
        raise ValueError(f"cannot split {len(groups)} image(s) into train and val")
    random.Random(seed).shuffle(groups)
    n_val = min(len(groups) - 1, max(1, math.ceil(val_fraction * len(groups))))
    val_keys = set(groups[:n_val])
    train = [ex for ex, k in zip(examples, keys) if k not in val_keys]
    val = [ex for ex, k in zip(examples, keys) if k in val_keys]
    return train, val


def _image_key(image: Any) -> str:
    if isinstance(image, Path | str):
        return "path:" + str(Path(image).resolve())
    # An in-memory image: its content identifies it (stable across runs, unlike id()).
    digest = hashlib.sha1(image.tobytes(), usedforsecurity=False).hexdigest()
    return f"pil:{image.mode}:{image.size}:{digest}"
