"""Word recall and precision of read text against the words that are really there.

A reference word counts as found when it equals a whole output token, case-insensitively, with
punctuation at the token's ends ignored ("EXIT." matches "exit"; "NOPARKING" matches neither
"no" nor "parking"). Each output token matches at most one reference word (multisets).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

K = TypeVar("K", bound=Hashable)
_PUNCT = ".,;:!?\"'()[]{}<>«»“”‘’-–—/\\|*"


def words_of(text: str) -> list[str]:
    """The tokens of `text` as they are compared: casefolded, end punctuation stripped."""
    out = (w.strip(_PUNCT).casefold() for w in text.split())
    return [w for w in out if w]


@dataclass(frozen=True)
class WordScores:
    recall: float  # reference words found / reference words
    precision: float  # output tokens that matched / output tokens (1.0 when nothing was output)
    found: int
    words: int
    tokens: int


def word_scores(predictions: Mapping[K, str], references: Mapping[K, Sequence[str]]) -> WordScores:
    """Pooled word recall / precision of `predictions[k]` (read text) against `references[k]`
    (the words in image k). Keys must match."""
    if set(predictions) != set(references):
        missing = set(references) ^ set(predictions)
        raise ValueError(f"predictions and references differ in {len(missing)} key(s)")
    found = words = tokens = 0
    for key, ref in references.items():
        out = Counter(words_of(predictions[key]))
        want = Counter(w for r in ref for w in words_of(r))
        found += sum((out & want).values())
        words += sum(want.values())
        tokens += sum(out.values())
    return WordScores(
        recall=found / words if words else 1.0,
        precision=found / tokens if tokens else 1.0,
        found=found,
        words=words,
        tokens=tokens,
    )
