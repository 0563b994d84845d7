"""Typed results returned by every task: small frozen dataclasses, never raw model outputs."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from im2text.families.base import Candidate


@dataclass(frozen=True)
class Caption:
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

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def failed(cls, source: str | None, error: BaseException | str) -> Caption:
        return cls(text="", score=math.nan, source=source, error=_message(error))

    def to_record(self, model: str) -> dict[str, Any]:
        """The JSON record written by the CLI (field names are part of the public contract)."""
        return {
            "path": self.source,
            "caption": self.text if self.ok else None,
            "score": None if math.isnan(self.score) else round(self.score, 6),
            "captions": [{"text": c.text, "score": round(c.score, 6)} for c in self.candidates]
            if len(self.candidates) > 1
            else None,
            "model": model,
            "error": self.error,
        }


def _message(error: BaseException | str) -> str:
    if isinstance(error, str):
        return error
    text = str(error) or error.__class__.__name__
    # ImageError messages already name the input; others get their type for context.
    return text if isinstance(error, ValueError) else f"{error.__class__.__name__}: {text}"


__all__ = ["Candidate", "Caption"]
