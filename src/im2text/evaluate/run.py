"""`im2text eval`: run one or more models on a dataset and score them with the task's metrics."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from im2text.data import CaptionExample, VqaExample


def evaluate_models(
    models: list[str],
    data: str,
    *,
    task: str = "caption",
    output: str | Path = "eval",
    limit: int | None = None,
    batch_size: int = 8,
    generation: dict[str, Any] | None = None,
    clip_model: str | None = None,
    device: str = "auto",
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate `models` on `data`; writes `report.json` + `report.html` into `output`.

    Generation settings default to each preset's locked paper settings (beams, min/max
    length); `generation` overrides them for every model. With `clip_model`, captions also get
    CLIPScore and RefCLIPScore.
    """
    import im2text
    from im2text.data import load_dataset
    from im2text.evaluate.captions import evaluate_captions
    from im2text.evaluate.report import ModelResult, write_report
    from im2text.evaluate.vqa import vqa_accuracy
    from im2text.images import ImageSource

    data_task = "caption" if task == "retrieval" else task  # retrieval: image-caption pairs
    records: Sequence[CaptionExample | VqaExample] = load_dataset(data, task=data_task)[
        : limit or None
    ]
    ids = [str(r.id) for r in records]
    results: dict[str, ModelResult] = {}
    settings: dict[str, Any] = {"data": data, "task": task, "items": len(records), "models": {}}
    for name in models:
        model = im2text.load(name, device=device, batch_size=batch_size)
        gen = model.generation.merged(**(generation or {}))
        settings["models"][model.name] = {"source": name, "generation": gen.__dict__}
        sources = [ImageSource(i, r.image) for i, r in zip(ids, records, strict=True)]
        preds: dict[str | None, str]
        if task == "retrieval":
            captioned = cast("Sequence[CaptionExample]", records)
            results[model.name] = _retrieval_result(model, captioned, ids)
        elif task == "vqa":
            # load_dataset(task="vqa") returns only VqaExamples.
            vqa_records = cast("Sequence[VqaExample]", records)
            pairs = list(zip(sources, [r.question for r in vqa_records], strict=True))
            answer_outs = model.ask_iter(pairs, progress=progress, **(generation or {}))
            preds = {a.source: a.text for a in answer_outs}
            answers: dict[str | None, list[str]] = {
                i: list(r.answers) for i, r in zip(ids, vqa_records, strict=True)
            }
            results[model.name] = ModelResult.from_evaluation(preds, vqa_accuracy(preds, answers))
        else:
            # load_dataset accepts only "caption" or "vqa", so these are CaptionExamples.
            caption_records = cast("Sequence[CaptionExample]", records)
            caption_outs = model.caption_iter(sources, progress=progress, **(generation or {}))
            preds = {c.source: c.text for c in caption_outs}
            refs: dict[str | None, list[str]] = {
                i: list(r.captions) for i, r in zip(ids, caption_records, strict=True)
            }
            evaluation = evaluate_captions(preds, refs)
            result = ModelResult.from_evaluation(preds, evaluation)
            if clip_model:
                result = _with_clipscore(result, clip_model, records, ids, preds, refs)
            results[model.name] = result
    json_path, html_path = write_report(output, records, results, settings)
    return {
        "report_json": str(json_path),
        "report_html": str(html_path),
        "scores": {k: dict(v.scores) for k, v in results.items()},
    }


def _retrieval_result(model: Any, records: Sequence[CaptionExample], ids: list[str]) -> Any:
    """Recall@1/5/10 both ways over every caption of every image (the COCO / Flickr30k
    protocol); per image: its best-ranked caption, whether that is one of its own (`i2t_R@1`)
    and the rank of its first own caption (`i2t_rank`)."""
    import numpy as np

    from im2text.evaluate.report import ModelResult
    from im2text.evaluate.retrieval import retrieval_recall

    texts = [c for r in records for c in r.captions]
    owner = [i for i, r in enumerate(records) for _ in r.captions]
    images = model.embed([r.image for r in records])
    sim = images @ model.embed(texts=texts).T
    scores = retrieval_recall(sim, owner)
    order = np.argsort(-sim, axis=1, kind="stable")
    owners = np.asarray(owner)
    preds, top1, rank = {}, {}, {}
    for i, item in enumerate(ids):
        preds[item] = texts[int(order[i, 0])]
        own = np.flatnonzero(owners[order[i]] == i)
        rank[item] = float(own[0] + 1)
        top1[item] = float(own[0] == 0)
    return ModelResult(preds, scores=scores, per_item={"i2t_R@1": top1, "i2t_rank": rank})


def _with_clipscore(result, clip_model, records, ids, preds, refs):  # type: ignore[no-untyped-def]
    """CLIPScore = 2.5 * max(cos(image, caption), 0); RefCLIPScore = harmonic mean of it and the
    best max(cos(caption, reference), 0) (Hessel et al., 2021)."""
    from dataclasses import replace

    import numpy as np

    import im2text

    clip = im2text.load(clip_model)
    img = clip.embed([r.image for r in records])
    # The paper's prefix for candidate captions.
    cap = clip.embed(texts=[f"A photo depicts {preds[i]}".strip() for i in ids])
    clip_s = 2.5 * np.clip((img * cap).sum(1), 0, None)
    ref_s = []
    for k, i in enumerate(ids):
        r = clip.embed(texts=refs[i])
        best = float(np.clip(r @ cap[k], 0, None).max())
        c = float(clip_s[k])
        ref_s.append(0.0 if c + best == 0 else 2 * c * best / (c + best))
    scores = {**result.scores, "CLIPScore": float(clip_s.mean()),
              "RefCLIPScore": float(np.mean(ref_s))}  # fmt: skip
    per_item = {**result.per_item, "CLIPScore": dict(zip(ids, clip_s.tolist(), strict=True)),
                "RefCLIPScore": dict(zip(ids, ref_s, strict=True))}  # fmt: skip
    return replace(result, scores=scores, per_item=per_item)
