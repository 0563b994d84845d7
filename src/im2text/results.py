"""Typed results returned by every task: small frozen dataclasses, never raw model outputs.

Every result carries `source` (the input it came from) and `error` (None, or a clear message);
`to_record()` gives the JSON record the CLI writes (field names are a public contract).

One meaning per field name, everywhere:
- `mean_logprob`: mean log-probability per generated token (<= 0, higher is surer; comparable
  across lengths; `exp()` of it is the geometric-mean token probability).
- `logprob`: total log-probability of a generated sequence (`exp()` is its probability).
- `confidence`: a probability in [0, 1] that this output is right (an answer's sequence
  probability, a read line's recogniser confidence).
- `probability`: a share of a softmax over the given texts or labels (sums to 1 over them).
- `similarity`: cosine similarity of embeddings, in [-1, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar


def _r(x: float | None, nd: int = 6) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), nd)


@dataclass(frozen=True)
class Candidate:
    """One decoded text, scored under the model."""

    text: str
    mean_logprob: float  # mean token log-probability (length-normalised; ranks captions)
    logprob: float = float("nan")  # total log-probability: exp() is the sequence probability
    rerank: float = float("nan")  # the re-ranker's score (ITM probability or CLIP cosine)
    num_tokens: int = 0  # generated tokens, EOS included


class _Outcome:
    """What every per-input result shares: `ok`, and a failed instance for a bad input."""

    error: str | None
    # Keyword defaults that make an empty instance of the subclass (see `failed`).
    _EMPTY: ClassVar[dict[str, Any]] = {}

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def failed(cls, source: str | None, error: BaseException | str, **fields: Any) -> Any:
        """The result for an input that could not be processed (`error` says why)."""
        make: Any = cls  # a dataclass subclass: its fields are _EMPTY's, fields' and these
        return make(**{**cls._EMPTY, **fields}, source=source, error=error_message(error))


@dataclass(frozen=True)
class Caption(_Outcome):
    """A caption for one image.

    `mean_logprob` scores `text` under the model (see the module docstring). On failure `error`
    says why and `text` is empty.
    """

    text: str
    mean_logprob: float
    candidates: tuple[Candidate, ...] = ()  # every caption asked for, best first
    source: str | None = None  # the input it came from (path, or "<bytes #i>" etc.)
    error: str | None = None
    _EMPTY: ClassVar[dict[str, Any]] = {"text": "", "mean_logprob": math.nan}

    def to_record(self, model: str) -> dict[str, Any]:
        return {
            "path": self.source,
            "caption": self.text if self.ok else None,
            "mean_logprob": _r(self.mean_logprob),
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
    mean_logprob: float = math.nan  # per-token log-probability, comparable across lengths
    ranking: tuple[tuple[str, float], ...] = ()  # (candidate, probability), best first
    source: str | None = None
    error: str | None = None
    _EMPTY: ClassVar[dict[str, Any]] = {"text": "", "confidence": math.nan}

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
    """One line of read text: its words, box `(x0, y0, x1, y1)` in pixels, and the recogniser's
    `confidence` in [0, 1]. `raw` is the recogniser's own text when word fixes changed it."""

    text: str
    box: tuple[float, float, float, float]
    confidence: float
    raw: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {
            "text": self.text,
            "box": [round(v, 1) for v in self.box],
            "confidence": _r(self.confidence),
        }
        if self.raw is not None:
            out["raw"] = self.raw
        return out


@dataclass(frozen=True)
class Reading(_Outcome):
    """Text read from one image: the page in reading order, and its lines."""

    text: str
    lines: tuple[Line, ...] = ()
    source: str | None = None
    error: str | None = None
    _EMPTY: ClassVar[dict[str, Any]] = {"text": ""}

    def to_record(self, model: str) -> dict[str, Any]:
        return {
            "path": self.source,
            "text": self.text if self.ok else None,
            "lines": [line.to_dict() for line in self.lines],
            "model": model,
            "error": self.error,
        }


@dataclass(frozen=True)
class Region:
    """One found region: its `label` ("car", or attribute + object: "red car"), box
    `(x0, y0, x1, y1)` in pixels of the input image, and `score` in [0, 1] (the model's
    probability of this region's tokens, or the detector's class score)."""

    label: str
    box: tuple[float, float, float, float]
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "box": [round(v, 1) for v in self.box],
                "score": _r(self.score)}  # fmt: skip


@dataclass(frozen=True)
class Detection(_Outcome):
    """The regions found in one image, best first."""

    regions: tuple[Region, ...] = ()
    source: str | None = None
    error: str | None = None

    @property
    def labels(self) -> list[str]:
        """The distinct labels, in order of first appearance (tags for the image)."""
        return list(dict.fromkeys(r.label for r in self.regions))

    def to_record(self, model: str) -> dict[str, Any]:
        return {
            "path": self.source,
            "labels": self.labels if self.ok else None,
            "regions": [r.to_dict() for r in self.regions],
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
    _EMPTY: ClassVar[dict[str, Any]] = {"texts": (), "similarity": (), "probability": ()}

    @property
    def best(self) -> str | None:
        scores = self.itm if self.itm is not None else self.similarity
        return self.texts[max(range(len(scores)), key=scores.__getitem__)] if scores else None

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
    """Top-k labels for one image, best first: `(label, probability)` pairs, the probability a
    share of the softmax over the labels considered."""

    labels: tuple[tuple[str, float], ...]
    source: str | None = None
    error: str | None = None
    _EMPTY: ClassVar[dict[str, Any]] = {"labels": ()}

    @property
    def label(self) -> str | None:
        """The top label."""
        return self.labels[0][0] if self.labels else None

    @property
    def probability(self) -> float:
        """The top label's probability."""
        return self.labels[0][1] if self.labels else math.nan

    def to_record(self, model: str) -> dict[str, Any]:
        return {
            "path": self.source,
            "label": self.label,
            "probability": _r(self.probability),
            "labels": [[name, _r(p)] for name, p in self.labels],
            "model": model,
            "error": self.error,
        }


@dataclass(frozen=True)
class Embedding(_Outcome):
    """One image's (or text's) L2-normalised embedding."""

    vector: Any  # (D,) float32 numpy array (empty on failure)
    source: str | None = None
    error: str | None = None
    _EMPTY: ClassVar[dict[str, Any]] = {"vector": ()}

    def to_record(self, model: str) -> dict[str, Any]:
        return {
            "path": self.source,
            "embedding": [_r(float(x)) for x in self.vector] if self.ok else None,
            "dim": len(self.vector) if self.ok else None,
            "model": model,
            "error": self.error,
        }


def _candidate(c: Candidate) -> dict[str, Any]:
    out: dict[str, Any] = {"text": c.text, "mean_logprob": _r(c.mean_logprob)}
    if not math.isnan(c.rerank):
        out["rerank"] = _r(c.rerank)
    return out


def error_message(error: BaseException | str) -> str:
    if isinstance(error, str):
        return error
    text = str(error) or error.__class__.__name__
    # ImageError / ValueError messages are written for users; others get their type for context.
    return text if isinstance(error, ValueError) else f"{error.__class__.__name__}: {text}"


__all__ = [
    "Answer",
    "Candidate",
    "Caption",
    "Classification",
    "Detection",
    "Embedding",
    "Line",
    "Match",
    "Reading",
    "Region",
]
