"""COCO-family JSON files: COCO captions, Karpathy splits, VQA v2 questions + annotations.

These are single JSON documents, so errors name the element (e.g. "annotations[17]") rather than a
line; JSON syntax errors still give the line.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from im2text.data._common import (
    UniqueIds,
    answers_from,
    captions_from,
    check_image,
    load_json,
    require_examples,
)
from im2text.data.records import CaptionExample, DatasetError, VqaExample

__all__ = ["read_coco_captions", "read_karpathy", "read_vqa"]


def read_coco_captions(
    annotations: str | Path,
    image_root: str | Path | None = None,
    *,
    check_images: bool = True,
    data: Any = None,
) -> list[CaptionExample]:
    """Read a COCO captions file (`images` + `annotations` with `image_id` and `caption`).

    Args:
        annotations: e.g. `annotations/captions_val2014.json`.
        image_root: folder of the images (`val2014/`); default: the JSON file's folder.
        check_images: fail on the first image file that does not exist.
        data: the already-parsed JSON, to skip reading it again.

    Returns:
        One example per image that has captions, in the file's image order; ids are the COCO image
        ids as strings.
    """
    path = Path(annotations)
    root = Path(image_root) if image_root is not None else path.parent
    doc = load_json(path) if data is None else data
    images = _list(doc, "images", path)
    anns = _list(doc, "annotations", path)

    files: dict[str, str] = {}
    ids = UniqueIds(path, "image id")
    for i, img in enumerate(images):
        where = f"images[{i}]"
        if not isinstance(img, Mapping) or "id" not in img or "file_name" not in img:
            raise DatasetError(path, "expected an object with 'id' and 'file_name'", where=where)
        key = str(img["id"])
        ids.add(key, where, where=where)
        files[key] = str(img["file_name"])

    captions: dict[str, list[str]] = {}
    ann_ids = UniqueIds(path, "annotation id")
    for i, ann in enumerate(anns):
        where = f"annotations[{i}]"
        if not isinstance(ann, Mapping) or "image_id" not in ann or "caption" not in ann:
            raise DatasetError(
                path, "expected an object with 'image_id' and 'caption'", where=where
            )
        if "id" in ann:
            ann_ids.add(str(ann["id"]), where, where=where)
        key = str(ann["image_id"])
        if key not in files:
            raise DatasetError(
                path, f"image_id {ann['image_id']!r} is not in 'images'", where=where
            )
        captions.setdefault(key, []).extend(captions_from(ann["caption"], path, None, where))

    examples = []
    for i, (key, file_name) in enumerate(files.items()):
        if key not in captions:
            continue  # an image without captions (e.g. a test split) cannot be evaluated
        image = root / file_name
        if check_images:
            check_image(image, path, None, f"images[{i}]")
        examples.append(CaptionExample(image, captions[key], key))
    require_examples(examples, path, f"none of its {len(files)} image(s) has a caption")
    return examples


def read_karpathy(
    path: str | Path,
    image_root: str | Path | None = None,
    *,
    split: str | Iterable[str] | None = "test",
    check_images: bool = True,
    data: Any = None,
) -> list[CaptionExample]:
    """Read a Karpathy-split file (`dataset_coco.json`, `dataset_flickr30k.json`, ...).

    Args:
        path: the JSON file (`images[*]` with `filename`, optional `filepath`, `split`,
            `sentences[*].raw`).
        image_root: folder that `filepath/filename` is relative to; default: the file's folder.
        split: "train", "val", "test", "restval", several of them, or None for all. The usual
            "Karpathy train" is ("train", "restval").
        check_images: fail on the first image file that does not exist.
        data: the already-parsed JSON, to skip reading it again.

    Returns:
        One example per image of the split; ids are `cocoid` (else `imgid`, else the file name).
    """
    path = Path(path)
    root = Path(image_root) if image_root is not None else path.parent
    wanted = None if split is None else ({split} if isinstance(split, str) else set(split))
    doc = load_json(path) if data is None else data
    images = _list(doc, "images", path)
    ids = UniqueIds(path)
    examples = []
    seen_splits: set[str] = set()
    for i, img in enumerate(images):
        where = f"images[{i}]"
        if not isinstance(img, Mapping) or "filename" not in img or "sentences" not in img:
            raise DatasetError(
                path, "expected an object with 'filename' and 'sentences'", where=where
            )
        img_split = str(img.get("split", ""))
        seen_splits.add(img_split)
        if wanted is not None and img_split not in wanted:
            continue
        sentences = img["sentences"]
        if not isinstance(sentences, list):
            raise DatasetError(path, "'sentences' must be a list", where=where)
        raws = []
        for j, s in enumerate(sentences):
            if not isinstance(s, Mapping) or "raw" not in s:
                raise DatasetError(
                    path, "expected a sentence with 'raw'", where=f"{where}.sentences[{j}]"
                )
            raws.append(s["raw"])
        captions = captions_from(raws, path, None, where)
        key = str(img.get("cocoid", img.get("imgid", img["filename"])))
        ids.add(key, where, where=where)
        image = root / str(img.get("filepath", "")) / str(img["filename"])
        if check_images:
            check_image(image, path, None, where)
        examples.append(CaptionExample(image, captions, key))
    splits = ", ".join(sorted(s for s in seen_splits if s)) or "none"
    require_examples(examples, path, f"no image in split {split!r} (splits present: {splits})")
    return examples


def read_vqa(
    questions: str | Path,
    annotations: str | Path | None = None,
    image_root: str | Path | None = None,
    *,
    image_pattern: str | None = None,
    check_images: bool = True,
    data: Any = None,
) -> list[VqaExample]:
    """Read VQA v2 questions and (optionally) their annotations.

    Args:
        questions: e.g. `v2_OpenEnded_mscoco_val2014_questions.json`.
        annotations: e.g. `v2_mscoco_val2014_annotations.json`; None for unannotated test sets
            (answers are then empty).
        image_root: folder of the images; default: the questions file's folder.
        image_pattern: file name from the image id, e.g. "COCO_val2014_{image_id:012d}.jpg".
            Default: built from the file's `data_subtype` ("val2014" -> that pattern).
        check_images: fail on the first image file that does not exist.
        data: the already-parsed questions JSON, to skip reading it again.
    """
    qpath = Path(questions)
    root = Path(image_root) if image_root is not None else qpath.parent
    qdoc = load_json(qpath) if data is None else data
    qs = _list(qdoc, "questions", qpath)
    if image_pattern is None:
        subtype = qdoc.get("data_subtype", "val2014") if isinstance(qdoc, Mapping) else "val2014"
        image_pattern = f"COCO_{subtype}_{{image_id:012d}}.jpg"

    by_qid: dict[str, tuple[Mapping[str, Any], str]] = {}
    if annotations is not None:
        apath = Path(annotations)
        seen = UniqueIds(apath, "question_id")
        for i, ann in enumerate(_list(load_json(apath), "annotations", apath)):
            where = f"annotations[{i}]"
            if not isinstance(ann, Mapping) or "question_id" not in ann or "answers" not in ann:
                raise DatasetError(
                    apath, "expected an object with 'question_id' and 'answers'", where=where
                )
            key = str(ann["question_id"])
            seen.add(key, where, where=where)
            by_qid[key] = (ann, where)

    ids = UniqueIds(qpath, "question_id")
    examples = []
    for i, q in enumerate(qs):
        where = f"questions[{i}]"
        if not isinstance(q, Mapping) or not {"question_id", "image_id", "question"} <= q.keys():
            raise DatasetError(
                qpath,
                "expected an object with 'question_id', 'image_id' and 'question'",
                where=where,
            )
        key = str(q["question_id"])
        ids.add(key, where, where=where)
        text = q["question"]
        if not isinstance(text, str) or not text.strip():
            raise DatasetError(qpath, "empty question", where=where)
        answers: list[str] = []
        answer_type = question_type = None
        if annotations is not None:
            if key not in by_qid:
                raise DatasetError(annotations, f"no annotation for question_id {key}")
            ann, awhere = by_qid[key]
            answers = answers_from(ann["answers"], Path(annotations), None, awhere)
            answer_type = ann.get("answer_type")
            question_type = ann.get("question_type")
        try:
            name = image_pattern.format(image_id=q["image_id"])
        except (ValueError, KeyError, IndexError) as e:
            raise DatasetError(
                qpath,
                f"image_pattern {image_pattern!r} does not fit image_id {q['image_id']!r}: {e}",
                where=where,
            ) from None
        image = root / name
        if check_images:
            check_image(image, qpath, None, where)
        examples.append(VqaExample(image, text.strip(), answers, key, answer_type, question_type))
    require_examples(examples, qpath)
    return examples


def _list(doc: Any, key: str, path: Path) -> list:
    if not isinstance(doc, Mapping):
        raise DatasetError(path, f"expected a JSON object with {key!r}, got {type(doc).__name__}")
    value = doc.get(key)
    if not isinstance(value, list):
        raise DatasetError(path, f"expected {key!r} to be a list")
    return value
