"""Word-level fixes for OCR output: split glued words, fold accents that are not there.

Scene-text recognisers often drop the space between tightly set words ("NOPARKING") and sprinkle
accents onto plain letters ("galleríes"). Both are fixed by asking one question of a word list:
is this a word people write? `wordfreq`'s English frequencies (Zipf scale: 0 = never seen,
3 = about once per million words, 7 = "the") answer it offline. A fix is made only when the
evidence is strong: the token as read is rare or unknown, and every replacement word is common.
Tokens with digits or other scripts pass through untouched.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

HINT = "word fixes need wordfreq: pip install 'im2text[ocr]'"
_LETTERS = re.compile(r"^[^\W\d_]+$")  # letters only (any script)
_TOKEN = re.compile(r"(\S+)")
_EDGE = re.compile(r"^([^\w]*)(.*?)([^\w]*)$")  # leading/trailing punctuation kept as it is

RARE = 3.0  # a token at or above this Zipf frequency is a word: never split or folded
COMMON = 3.0  # every part of a split (and a folded word) must be at least this common
SHORT_COMMON = 5.5  # ... and parts of two letters this common ("no", "to", "of", "in")


@lru_cache(maxsize=65536)
def zipf(word: str) -> float:
    """English Zipf frequency of `word` (case-insensitive); 0.0 when unknown."""
    try:
        from wordfreq import zipf_frequency
    except ImportError as e:
        raise ImportError(HINT) from e
    return float(zipf_frequency(word.lower(), "en"))


def available() -> bool:
    try:
        import wordfreq  # noqa: F401
    except ImportError:
        return False
    return True


def _part_ok(part: str) -> bool:
    if len(part) < 2:
        return False
    return zipf(part) >= (SHORT_COMMON if len(part) == 2 else COMMON)


def _camel_parts(token: str) -> list[str]:
    """Split at lower->upper transitions: "CarWash" -> ["Car", "Wash"] (ASCII letters only)."""
    return re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])", token)


def split_glued(token: str) -> list[str]:
    """`token` as words: ["NO", "PARKING"] for "NOPARKING"; [token] when no split is clearly
    better. Letters only; the case of each letter is kept."""
    if len(token) < 4 or not _LETTERS.match(token) or not token.isascii():
        return [token]
    whole = zipf(token)
    camel = _camel_parts(token)
    if len(camel) > 1 and "".join(camel) == token:
        # A case change inside a word is strong evidence ("IceCream"), but brands are written
        # that way too ("PlayStation", "YouTube"): those are common as a whole and stay.
        if whole < RARE + 0.5 and all(_part_ok(p) for p in camel):
            return camel
        return [token]
    if whole >= RARE:
        return [token]
    best: tuple[float, list[str]] | None = None
    n = len(token)
    for i in range(2, n - 1):
        for parts in _splits(token, i):
            if all(_part_ok(p) for p in parts):
                # Fewer parts first, then the rarest part as common as possible.
                score = min(zipf(p) for p in parts) - 1.5 * (len(parts) - 2)
                if best is None or score > best[0]:
                    best = (score, parts)
    if best is None or best[0] < whole + 1.0:
        return [token]
    return best[1]


def _splits(token: str, i: int) -> list[list[str]]:
    """Two-part split at i, and three-part splits with the first cut at i."""
    head, tail = token[:i], token[i:]
    out = [[head, tail]]
    out += [[head, tail[:j], tail[j:]] for j in range(2, len(tail) - 1)]
    return out


def fold(token: str) -> str:
    """Drop accents from a letters-only `token` when it is not a known word but its plain
    form is a common English one ("galleríes" -> "galleries"; "Café", "été" stay)."""
    if token.isascii() or not _LETTERS.match(token):
        return token
    plain = "".join(c for c in unicodedata.normalize("NFKD", token) if not unicodedata.combining(c))
    if plain == token or not plain.isascii():
        return token
    if zipf(token) < 1.0 and zipf(plain) >= COMMON:
        return plain
    return token


def fix_text(text: str, *, split: bool = True, fold_accents: bool = True) -> str:
    """Apply the fixes to every whitespace token of `text`; spacing between tokens is kept."""
    if not (split or fold_accents):
        return text

    def one(m: re.Match[str]) -> str:
        lead, core, trail = _EDGE.match(m.group(1)).groups()  # type: ignore[union-attr]
        if not core:
            return m.group(1)
        if fold_accents:
            core = fold(core)
        if split:
            core = " ".join(split_glued(core))
        return lead + core + trail

    return _TOKEN.sub(one, text)
