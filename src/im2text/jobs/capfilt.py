"""CapFilt (BLIP's data bootstrapping): caption images several ways, keep the captions a matching
model agrees with, and write a dataset `im2text train` reads (folder + metadata.jsonl)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from im2text.jobs.records import RecordWriter


def capfilt(
    images: Any,
    captioner: Any,
    matcher: Any,
    out_dir: str | Path,
    *,
    num_captions: int = 5,
    threshold: float = 0.5,
    sample: bool = True,
    progress: bool = True,
) -> dict[str, int]:
    """Write `out_dir/metadata.jsonl`: per image, the generated captions that pass the filter.

    Args:
        images: paths, folders or globs (files: the dataset refers to them by path).
        captioner: a captioning `Model`.
        matcher: a matching `Model` (BLIP ITM: its probability; CLIP: cosine similarity).
        num_captions: candidates per image (nucleus sampling, as BLIP does, unless
            `sample=False`, which uses beam search).
        threshold: minimum ITM probability (or cosine) for a caption to be kept.

    Images none of whose captions pass go to `rejected.jsonl` (with their best score), so the
    dataset never holds an image without a caption. Rerunning resumes: images already in either
    file are skipped.
    """
    from im2text.images import expand_inputs

    if "match" not in matcher.family.tasks:
        raise ValueError(f"filter model '{matcher.name}' cannot match images and texts")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    writer = RecordWriter(out / "metadata.jsonl", key_fields=("file_name",))
    rejected = RecordWriter(out / "rejected.jsonl", key_fields=("file_name",))
    done = writer.done | rejected.done
    sources = [s for s in expand_inputs(images) if (str(Path(s.key).resolve()),) not in done]
    gen: dict[str, Any] = {"num_return_sequences": num_captions}
    if sample:
        gen.update(do_sample=True, top_p=0.9, seed=0)
    else:
        gen.update(num_beams=max(num_captions, 3))
    counts = {"images": 0, "kept_images": 0, "captions": 0, "kept_captions": 0, "failed": 0}
    try:
        for record in _filtered(captioner, matcher, sources, gen, threshold, progress):
            counts["images"] += 1
            if record is None:
                counts["failed"] += 1
                continue
            counts["captions"] += record.pop("_candidates")
            if record["captions"]:
                counts["kept_images"] += 1
                counts["kept_captions"] += len(record["captions"])
                writer.write(record)
            else:
                rejected.write(record)
    finally:
        writer.close()
        rejected.close()
    return counts


def _filtered(captioner, matcher, sources, gen, threshold, progress) -> Iterator[dict | None]:  # type: ignore[no-untyped-def]
    for cap in captioner.caption_iter(sources, progress=progress, total=len(sources), **gen):
        if not cap.ok:
            yield None
            continue
        texts = list(dict.fromkeys(c.text for c in cap.candidates if c.text))  # unique, in order
        if not texts:
            yield {"file_name": str(Path(cap.source).resolve()), "captions": [], "scores": [],
                   "_candidates": 0}  # fmt: skip
            continue
        m = matcher.match(cap.source, texts)
        scores = m.itm if m.itm is not None else m.similarity
        kept = [(t, s) for t, s in zip(texts, scores, strict=True) if s >= threshold]
        yield {
            "file_name": str(Path(cap.source).resolve()),
            "captions": [t for t, _ in kept],
            "scores": [round(float(s), 6) for _, s in kept] or [round(float(max(scores)), 6)],
            "_candidates": len(texts),
        }
