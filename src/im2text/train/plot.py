"""A dependency-free PNG of the loss and validation curves (Pillow only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

_COLORS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14)]


def plot_curves(rows: list[dict[str, Any]], path: Path, size: tuple[int, int] = (900, 420)) -> None:
    """Left: training loss by step. Right: each validation metric by step."""
    train = [(r["step"], r["loss"]) for r in rows if r.get("kind") == "train"]
    evals = [r for r in rows if r.get("kind") == "eval"]
    names = sorted({k for r in evals for k, v in r.items()
                    if k not in ("step", "kind") and isinstance(v, (int, float))})  # fmt: skip
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    w, h = size
    _panel(draw, (50, 30, w // 2 - 20, h - 40), {"loss": train}, "training loss")
    series = {n: [(r["step"], r[n]) for r in evals if isinstance(r.get(n), (int, float))]
              for n in names}  # fmt: skip
    _panel(draw, (w // 2 + 40, 30, w - 20, h - 40), series, "validation")
    img.save(path)


def _panel(draw: ImageDraw.ImageDraw, box, series: dict[str, list], title: str) -> None:  # type: ignore[no-untyped-def]
    x0, y0, x1, y1 = box
    draw.rectangle(box, outline=(180, 180, 180))
    draw.text((x0, y0 - 18), title, fill="black")
    points = [p for s in series.values() for p in s]
    if not points:
        draw.text((x0 + 10, y0 + 10), "no data yet", fill="gray")
        return
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    xmin, xmax = min(xs), max(xs) or 1
    ymin, ymax = min(ys), max(ys)
    if ymax == ymin:
        ymax = ymin + 1
    draw.text((x0 - 45, y0), f"{ymax:.3g}", fill="black")
    draw.text((x0 - 45, y1 - 10), f"{ymin:.3g}", fill="black")
    draw.text((x1 - 40, y1 + 5), f"step {xmax}", fill="black")

    def at(x: float, y: float) -> tuple[float, float]:
        fx = (x - xmin) / max(1e-9, xmax - xmin)
        return x0 + fx * (x1 - x0), y1 - (y - ymin) / (ymax - ymin) * (y1 - y0)

    for i, (name, pts) in enumerate(series.items()):
        color = _COLORS[i % len(_COLORS)]
        if len(pts) > 1:
            draw.line([at(x, y) for x, y in pts], fill=color, width=2)
        for x, y in pts[-1:]:
            cx, cy = at(x, y)
            draw.ellipse((cx - 3, cy - 3, cx + 3, cy + 3), fill=color)
        draw.text((x0 + 8, y0 + 6 + 14 * i), name, fill=color)
