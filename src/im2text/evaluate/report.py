"""Evaluation reports: a JSON file with every number and setting, and one self-contained HTML page.

The page needs nothing but a browser (inline CSS, thumbnails embedded as small base64 JPEGs, no
scripts or CDN). It shows the corpus scores of each model, then every item — image, references,
each model's prediction and per-item scores side by side — worst first, so failures are what you
see first.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import tempfile
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ModelResult", "ReportItem", "write_report"]


@dataclass(frozen=True)
class ReportItem:
    """One evaluated input."""

    id: Hashable  # key of this item in predictions / per-item scores
    image: Any = None  # path, PIL image or None (shown as a thumbnail)
    references: tuple[str, ...] = ()  # reference captions or ground-truth answers
    question: str | None = None  # the question, for VQA


@dataclass(frozen=True)
class ModelResult:
    """What one model produced and scored. `evaluate_captions(...)` results fit `scores`,
    `per_item` and `unavailable` directly."""

    predictions: Mapping[Any, str]  # item id -> predicted text
    scores: Mapping[str, float | None] = field(default_factory=dict)  # corpus-level metric values
    # metric -> item id -> that item's score
    per_item: Mapping[str, Mapping[Any, float]] = field(default_factory=dict)
    unavailable: Mapping[str, str] = field(default_factory=dict)  # metric -> why not computed

    @classmethod
    def from_evaluation(cls, predictions: Mapping[Any, str], evaluation: Any) -> ModelResult:
        """Build from predictions and a `CaptionEvaluation` (or anything with `scores`,
        `per_item`, `unavailable`), or a `vqa_accuracy` dict."""
        if isinstance(evaluation, Mapping) and "per_question" in evaluation:
            return cls(
                predictions,
                scores={"accuracy": evaluation["overall"]},
                per_item={"accuracy": evaluation["per_question"]},
            )
        return cls(
            predictions,
            scores=dict(evaluation.scores),
            per_item={k: dict(v) for k, v in evaluation.per_item.items()},
            unavailable=dict(getattr(evaluation, "unavailable", {})),
        )


def write_report(
    out_dir: str | Path,
    items: Iterable[Any],
    models_results: Mapping[str, ModelResult],
    settings: Mapping[str, Any],
    *,
    sort_by: str | None = None,
    title: str = "im2text evaluation report",
    thumbnail_px: int = 128,
) -> tuple[Path, Path]:
    """Write `report.json` and `report.html` into `out_dir` (created if needed).

    Args:
        out_dir: output folder.
        items: the evaluated inputs: `ReportItem`s, or records with `id`/`question_id`, `image`,
            `captions`/`answers`/`references` and optionally `question` (e.g. im2text's
            `CaptionExample` / `VqaExample`), or dicts with those keys.
        models_results: model name -> its `ModelResult`; several models appear side by side.
        settings: how the run was made (model ids, generation settings, tokenizer, dataset...);
            stored in the JSON (values JSON cannot hold are written as strings) and listed on
            the page.
        sort_by: per-item metric that orders items worst first (mean over the models that have
            it). Default: "CIDEr" if present, else "accuracy", else the first per-item metric.
        title: page title.
        thumbnail_px: longest side of the embedded thumbnails.

    Returns:
        (path of report.json, path of report.html).
    """
    if not models_results:
        raise ValueError("no model results to report")
    rows = [_as_item(x) for x in items]
    ids = {r.id for r in rows}
    if len(ids) != len(rows):
        raise ValueError("report items have duplicate ids")
    metrics = _metric_order(models_results)
    key = sort_by or next((m for m in ("CIDEr", "accuracy") if m in metrics), None)
    key = key or (metrics[0] if metrics else None)
    if sort_by is not None and sort_by not in metrics:
        raise ValueError(f"sort_by={sort_by!r} is not a per-item metric ({', '.join(metrics)})")
    order = sorted(range(len(rows)), key=lambda i: _sort_value(rows[i].id, key, models_results))
    rows = [rows[i] for i in order]

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = {
        "title": title,
        "settings": _jsonable(settings),
        "sort_by": key,
        "models": {
            name: {"scores": _jsonable(r.scores), "unavailable": dict(r.unavailable)}
            for name, r in models_results.items()
        },
        "items": [_item_record(r, models_results, metrics) for r in rows],
    }
    json_path = out / "report.json"
    html_path = out / "report.html"
    _write_atomic(json_path, json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False))
    page = _render(title, settings, models_results, rows, metrics, key, thumbnail_px)
    _write_atomic(html_path, page)
    return json_path, html_path


# --- items and numbers -------------------------------------------------------------------------


def _as_item(x: Any) -> ReportItem:
    if isinstance(x, ReportItem):
        return x

    def get(*names: str) -> Any:
        for n in names:
            if isinstance(x, Mapping) and n in x:
                return x[n]
            if not isinstance(x, Mapping) and hasattr(x, n):
                return getattr(x, n)
        return None

    item_id = get("id", "question_id")
    if item_id is None:
        raise ValueError(f"report item without an id: {x!r}")
    refs = get("references", "captions", "answers") or ()
    if isinstance(refs, str):
        refs = (refs,)
    return ReportItem(item_id, get("image"), tuple(str(r) for r in refs), get("question"))


def _metric_order(models_results: Mapping[str, ModelResult]) -> list[str]:
    seen: list[str] = []
    for r in models_results.values():
        for m in r.per_item:
            if m not in seen:
                seen.append(m)
    return seen


def _sort_value(
    item_id: Hashable, key: str | None, models_results: Mapping[str, ModelResult]
) -> float:
    if key is None:
        return 0.0
    values = [
        float(r.per_item[key][item_id])
        for r in models_results.values()
        if key in r.per_item and item_id in r.per_item[key]
    ]
    values = [v for v in values if not math.isnan(v)]
    return sum(values) / len(values) if values else math.inf  # unscored items last


def _item_record(
    row: ReportItem, models_results: Mapping[str, ModelResult], metrics: Sequence[str]
) -> dict[str, Any]:
    image = row.image if isinstance(row.image, str | os.PathLike) else None
    return {
        "id": _jsonable(row.id),
        "image": None if image is None else str(image),
        "question": row.question,
        "references": list(row.references),
        "predictions": {n: r.predictions.get(row.id) for n, r in models_results.items()},
        "scores": {
            n: {m: _jsonable(r.per_item[m].get(row.id)) for m in metrics if m in r.per_item}
            for n, r in models_results.items()
        },
    }


def _jsonable(x: Any) -> Any:
    if isinstance(x, float):
        return None if math.isnan(x) or math.isinf(x) else x
    if isinstance(x, bool | int | str) or x is None:
        return x
    if isinstance(x, Mapping):
        return {str(k) if not isinstance(k, str | int) else k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if hasattr(x, "item"):  # numpy scalars
        return _jsonable(x.item())
    return str(x)


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- HTML --------------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222}
h1{font-size:20px}h2{font-size:16px;margin-top:28px}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:6px 8px;vertical-align:top}
th{background:#f4f4f4;text-align:left}.num{text-align:right;font-variant-numeric:tabular-nums}
.items td{max-width:360px}.refs{margin:0;padding-left:18px;color:#555}
.score{color:#555;font-size:12px}.missing{color:#999;font-style:italic}
.q{font-weight:600}img{display:block;border-radius:3px}dl{margin:0}dt{font-weight:600}
"""


def _e(x: Any) -> str:
    return html.escape(str(x))


def _fmt(x: Any) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{x:.4f}" if isinstance(x, float) else _e(x)


def _thumbnail(image: Any, px: int) -> str:
    """An <img> with the image embedded as a small JPEG, or a note when it cannot be read."""
    if image is None:
        return '<span class="missing">no image</span>'
    try:
        from PIL import Image

        if isinstance(image, Image.Image):
            img = image.copy()
        else:
            with Image.open(image) as f:
                f.draft("RGB", (px * 2, px * 2))  # fast JPEG downscale while decoding
                img = f.copy()
        img = img.convert("RGB")
        img.thumbnail((px, px))
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=75)
    except Exception as e:  # any unreadable image: the report still renders
        return f'<span class="missing">image unreadable: {_e(type(e).__name__)}</span>'
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img src="data:image/jpeg;base64,{data}" width="{img.width}" height="{img.height}">'


def _render(
    title: str,
    settings: Mapping[str, Any],
    models_results: Mapping[str, ModelResult],
    rows: Sequence[ReportItem],
    metrics: Sequence[str],
    sort_key: str | None,
    px: int,
) -> str:
    corpus_metrics: list[str] = []
    for r in models_results.values():
        corpus_metrics += [m for m in r.scores if m not in corpus_metrics]
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        "<h2>Scores</h2><table><tr><th>model</th>",
    ]
    out += [f"<th>{_e(m)}</th>" for m in corpus_metrics]
    out.append("</tr>")
    for name, r in models_results.items():
        out.append(f"<tr><td>{_e(name)}</td>")
        for m in corpus_metrics:
            why = r.unavailable.get(m)
            tip = f' title="{_e(why)}"' if why else ""
            out.append(f'<td class="num"{tip}>{_fmt(r.scores.get(m))}</td>')
        out.append("</tr>")
    out.append("</table>")
    notes = [(n, m, why) for n, r in models_results.items() for m, why in r.unavailable.items()]
    if notes:
        out.append("<p>Not computed:</p><ul>")
        out += [f"<li>{_e(n)} — {_e(m)}: {_e(why)}</li>" for n, m, why in notes]
        out.append("</ul>")

    out.append("<h2>Settings</h2><table>")
    out += [f"<tr><th>{_e(k)}</th><td>{_e(_setting(v))}</td></tr>" for k, v in settings.items()]
    out.append("</table>")

    order = f"worst first by {_e(sort_key)}" if sort_key else "in input order"
    out.append(f"<h2>Items ({len(rows)}, {order})</h2>")
    out.append('<table class="items"><tr><th>image</th><th>item</th>')
    out += [f"<th>{_e(name)}</th>" for name in models_results]
    out.append("</tr>")
    for row in rows:
        out.append(f"<tr><td>{_thumbnail(row.image, px)}</td><td><div>{_e(row.id)}</div>")
        if row.question:
            out.append(f'<div class="q">{_e(row.question)}</div>')
        if row.references:
            out.append('<ul class="refs">')
            out += [f"<li>{_e(ref)}</li>" for ref in row.references]
            out.append("</ul>")
        out.append("</td>")
        for r in models_results.values():
            pred = r.predictions.get(row.id)
            text = _e(pred) if pred is not None else '<span class="missing">no prediction</span>'
            scores = " · ".join(
                f"{_e(m)} {_fmt(r.per_item[m].get(row.id))}" for m in metrics if m in r.per_item
            )
            out.append(f'<td><div>{text}</div><div class="score">{scores}</div></td>')
        out.append("</tr>")
    out.append("</table></body></html>")
    return "\n".join(out)


def _setting(v: Any) -> str:
    if isinstance(v, str):
        return v
    try:
        return json.dumps(_jsonable(v), ensure_ascii=False)
    except (TypeError, ValueError):
        return str(v)
