"""Typed results returned by every task: small frozen dataclasses, never raw model outputs.

Every result carries `source` (the input it came from) and `error` (None, or a clear message);
`to_record()` gives the JSON record the CLI writes (field names are a public contract).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from im2text.families.base import Candidate


def _r(x: float | None, nd: int = 6) -> float | None:
    return None if x is None or math.isnan(x) else round(float(x), nd)


class _Outcome:
    """`ok` for every per-input result: it succeeded when no `error` was recorded."""

    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Caption(_Outcome):
    """A caption for one image.

    `score` is the mean token log-probability of `text` under the model (<= 0; higher is more
    confident; `exp(score)` is the geometric-mean token probability). On failure `error` says why
    and `text` is empty.
    """

    text: str
    score: float
    candidates: tuple[Candidate, ...] = ()  # every caption asked for, best first
    source: str | None = None  # the input it came from (path, or "<bytes #i>" etc.)
    error: str | None = None

    @classmethod
    def failed(cls, source: str | None, error: BaseException | str) -> Caption:
        return cls(text="", score=math.nan, source=source, error=error_message(error))

    def to_record(self, model: str) -> dict[str, Any]:
        return {
            "path": self.source,
            "caption": self.text if self.ok else None,
            "score": _r(self.score),
            "captions": [_candidate(c) for c in self.candidates]
            if len(self.candidates) > 1
            else None,
            "model": model,
            "error": self.error,
        }


@dataclass(frozen=True)
class Answer(_Outcome):
    """An answer to a question about an image.

    `confidence` is the probability of the whole answer sequence under the model (in [0, 1]);
    with candidate ranking, it is the answer's share of probability among the candidates.
    """

    text: str
    confidence: float
    question: str = ""
    score: float = math.nan  # mean token log-probability, comparable across answer lengths
    ranking: tuple[tuple[str, float], ...] = ()  # (candidate, probability), best first
    source: str | None = None
    error: str | None = None

    @classmethod
    def failed(cls, source: str | None, question: str, error: BaseException | str) -> Answer:
        return cls("", math.nan, question, source=source, error=error_message(error))

    def to_record(self, model: str) -> dict[str, Any]:
        return {
            "path": self.source,
            "question": self.question,
            "answer": self.text if self.ok else None,
            "confidence": _r(self.confidence),
            "ranking": [[a, _r(p)] for a, p in self.ranking] or None,
            "model": model,
            "error": self.error,
        }


@dataclass(frozen=True)
class Line:
    """One line of read text: its words, box `(x0, y0, x1, y1)` in pixels, confidence in [0,1]."""

    text: str
    box: tuple[float, float, float, float]
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "box": [round(v, 1) for v in self.box], "score": _r(self.score)}


@dataclass(frozen=True)
class Reading(_Outcome):
    """Text read from one image: the page in reading order, and its lines."""

    text: str
    lines: tuple[Line, ...] = ()
    source: str | None = None
    error: str | None = None

    @classmethod
    def failed(cls, source: str | None, error: BaseException | str) -> Reading:
        return cls("", (), source=source, error=error_message(error))

    def to_record(self, model: str) -> dict[str, Any]:
        return {
            "path": self.source,
            "text": self.text if self.ok else None,
            "lines": [line.to_dict() for line in self.lines],
            "model": model,
            "error": self.error,
        }


@dataclass(frozen=True)
class Match(_Outcome):
    """How well each text matches one image.

    `similarity`: cosine similarity of the embeddings (ITC / CLIP), in [-1, 1].
    `probability`: softmax over the given texts at the model's temperature (sums to 1).
    `itm`: the image-text-matching head's probability that each text matches (BLIP ITM only).
    """

    texts: tuple[str, ...]
    similarity: tuple[float, ...]
    probability: tuple[float, ...]
    itm: tuple[float, ...] | None = None
    source: str | None = None
    error: str | None = None

    @property
    def best(self) -> str | None:
        scores = self.itm if self.itm is not None else self.similarity
        return self.texts[max(range(len(scores)), key=scores.__getitem__)] if scores else None

    @classmethod
    def failed(cls, source: str | None, error: BaseException | str) -> Match:
        return cls((), (), (), source=source, error=error_message(error))

    def to_record(self, model: str) -> dict[str, Any]:
        return {
            "path": self.source,
            "texts": list(self.texts),
            "similarity": [_r(x) for x in self.similarity],
            "probability": [_r(x) for x in self.probability],
            "itm": [_r(x) for x in self.itm] if self.itm is not None else None,
            "model": model,
            "error": self.error,
        }


@dataclass(frozen=True)
class Classification(_Outcome):
    """Top-k labels for one image, best first, with probabilities."""

    labels: tuple[tuple[str, float], ...]
    source: str | None = None
    error: str | None = None

    @property
    def label(self) -> str | None:
        return self.labels[0][0] if self.labels else None

    @property
    def score(self) -> float:
        return self.labels[0][1] if self.labels else math.nan

    @classmethod
    def failed(cls, source: str | None, error: BaseException | str) -> Classification:
        return cls((), source=source, error=error_message(error))

    def to_record(self, model: str) -> dict[str, Any]:
        return {
            "path": self.source,
            "label": self.label,
            "score": _r(self.score),
            "labels": [[name, _r(p)] for name, p in self.labels],
            "model": model,
            "error": self.error,
        }


def _candidate(c: Candidate) -> dict[str, Any]:
    out: dict[str, Any] = {"text": c.text, "score": _r(c.score)}
    if not math.isnan(c.rerank):
        out["rerank"] = _r(c.rerank)
    return out


def error_message(error: BaseException | str) -> str:
    if isinstance(error, str):
        return error
    text = str(error) or error.__class__.__name__
    # ImageError / ValueError messages are written for users; others get their type for context.
    return text if isinstance(error, ValueError) else f"{error.__class__.__name__}: {text}"


__all__ = ["Answer", "Caption", "Classification", "Line", "Match", "Reading"]
