"""Input checks shared by the tasks: clear errors for bad texts, limits on sizes."""

from __future__ import annotations

from collections.abc import Sequence

MAX_TEXT_CHARS = 1000  # a prompt / question / label longer than this is refused
MAX_TEXTS = 5000  # labels or texts per call (ImageNet's 1000 classes fit with room)


def clean_text(text: object, what: str) -> str:
    """Whitespace-normalised `text`, or ValueError/TypeError saying what is wrong."""
    if not isinstance(text, str):
        raise TypeError(f"{what} must be a string, not {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:  # lone surrogates: bytes that were not UTF-8, smuggled in
        raise ValueError(f"{what} is not valid UTF-8 text (at character {e.start})") from None
    text = " ".join(text.split())
    if not text:
        raise ValueError(f"empty {what}")
    if len(text) > MAX_TEXT_CHARS:
        raise ValueError(
            f"{what} is too long ({len(text)} characters; the limit is {MAX_TEXT_CHARS})"
        )
    return text


def clean_texts(texts: object, what: str) -> list[str]:
    """A non-empty list of clean texts (a single string counts as one)."""
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, Sequence) or isinstance(texts, bytes):
        raise TypeError(f"{what}s must be a list of strings, not {type(texts).__name__}")
    if not texts:
        raise ValueError(f"no {what}s given")
    if len(texts) > MAX_TEXTS:
        raise ValueError(f"too many {what}s ({len(texts)}; the limit is {MAX_TEXTS})")
    return [clean_text(t, what) for t in texts]
