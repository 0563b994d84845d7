"""Reading order for detected text lines: rows top to bottom, left to right within a row."""

from __future__ import annotations

from im2text.results import Line


def reading_order(lines: list[Line]) -> list[list[Line]]:
    """Group lines into visual rows and order them; returns rows of lines.

    Two boxes share a row when they overlap vertically by at least half the smaller height,
    which keeps words of one line together even when the detector splits them.
    """
    rows: list[list[Line]] = []
    spans: list[tuple[float, float]] = []
    for line in sorted(lines, key=lambda ln: (ln.box[1] + ln.box[3]) / 2):
        y0, y1 = line.box[1], line.box[3]
        for i, (r0, r1) in enumerate(spans):
            overlap = min(y1, r1) - max(y0, r0)
            if overlap >= 0.5 * min(y1 - y0, r1 - r0):
                rows[i].append(line)
                spans[i] = (min(r0, y0), max(r1, y1))
                break
        else:
            rows.append([line])
            spans.append((y0, y1))
    return [sorted(row, key=lambda ln: ln.box[0]) for row in rows]


def join_rows(rows: list[list[Line]]) -> str:
    """Page text: a row per line, its pieces separated by spaces."""
    return "\n".join(" ".join(ln.text for ln in row if ln.text) for row in rows).strip()
