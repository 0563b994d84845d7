"""The official VQA accuracy (VQA v2 challenge), ported from the VQA team's `vqaEval.py`.

Follows GT-Vision-Lab/VQA `PythonEvaluationTools/vqaEvaluation/vqaEval.py` at its current
revision, commit a013f0043c1e2cdc995922dfe257f7149aa9af06 (2021-03-11, "Fixed processing answers
bug"), quirks included. (Ports of the 2016 revision, 458a8b2, always normalised the prediction but
only punctuation-processed the human answers, so e.g. the prediction "Yes" against ten human "Yes"
scored 0 there; it scores 1 here, as in the official code.)

For each question, as the official `evaluate()` does:

1. the prediction and every human answer: newlines and tabs -> spaces, then `str.strip()`;
2. only if the human answers (after step 1) are not all the same string, BOTH the human answers
   and the prediction get `process_punctuation` and then `process_digit_article` (lowercase,
   number words -> digits, articles dropped, contractions restored: "dont" -> "don't"). When all
   human answers are identical nothing else is normalised: the match is exact and case-sensitive
   ("yes" against ten "Yes" scores 0, "two" against ten "two" scores 1, against ten "2" 0);
3. accuracy = mean over the annotators of min(1, #answers of the *other* annotators equal to the
   prediction / 3): with 10 answers, a prediction matching 1, 2, 3 or 4 of them scores 0.3, 0.6,
   0.9, 1.0.

`vqaEval.py` is a Python 2 program; where Python 3 would behave differently this port keeps the
Python 2 behaviour: `\\d` in its patterns means [0-9] only (`re.ASCII`), U+180E counts as
whitespace for `strip`/`split` (as in Python 2.7's Unicode 5.2), and lowercasing goes character
by character (Python 2's `unicode.lower()`: no final-sigma rule, U+0130 -> "i"). The one
difference left: letters that got a lowercase mapping after Unicode 5.2 (Cherokee, Georgian
Mtavruli, Osage, ...; about 400 characters) are lowercased here but not by Python 2.

Unlike the official script this port does not rewrite its inputs in place. Scores are fractions
in [0, 1] (the official script reports 100x, rounded to 2 decimals).
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, TypeVar

K = TypeVar("K", bound=Hashable)  # question ids: any hashable type, the same in every mapping

__all__ = ["normalize_answer", "process_digit_article", "process_punctuation", "vqa_accuracy"]

# Verbatim from vqaEval.py (including its odd entries, e.g. "somebody'd" -> "somebodyd").
CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've",
    "couldnt": "couldn't", "couldn'tve": "couldn't've", "couldnt've": "couldn't've",
    "didnt": "didn't", "doesnt": "doesn't", "dont": "don't", "hadnt": "hadn't",
    "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't", "havent": "haven't",
    "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm",
    "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've",
    "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've",
    "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at",
    "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've",
    "she's": "she's", "shouldve": "should've", "shouldnt": "shouldn't",
    "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's",
    "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've",
    "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've",
    "weve": "we've", "werent": "weren't", "whatll": "what'll", "whatre": "what're",
    "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
    "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've",
    "whyll": "why'll", "whyre": "why're", "whys": "why's", "wont": "won't",
    "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll",
    "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll",
    "youre": "you're", "youve": "you've",
}  # fmt: skip
MANUAL_MAP = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip
ARTICLES = frozenset(["a", "an", "the"])
PUNCT = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@",
         "`", ",", "?", "!"]  # fmt: skip
# The official pattern, bug and all: "(?!<=\d)" is a lookahead for the text "<=" + digit, not a
# lookbehind, so a period is removed unless a digit follows it. re.ASCII: Python 2's \d.
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)", re.ASCII)
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)", re.ASCII)
# vqaEval.py passes re.UNICODE where `sub` expects `count`: at most 32 periods are removed.
_PERIOD_STRIP_COUNT = int(re.UNICODE)


def process_punctuation(text: str) -> str:
    """vqaEval's `processPunctuation`: delete or space out punctuation, strip periods.

    Each mark p is deleted everywhere if the *original* text contains `p + " "` or `" " + p`, or
    has a digit-comma-digit anywhere; otherwise every p becomes a space. Then periods not followed
    by a digit are deleted (at most 32 of them)."""
    out = text
    for p in PUNCT:
        if (p + " " in text or " " + p in text) or _COMMA_STRIP.search(text) is not None:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD_STRIP.sub("", out, count=_PERIOD_STRIP_COUNT)


# Python 2.7's unicode.strip()/split() also treat U+180E (MONGOLIAN VOWEL SEPARATOR) as
# whitespace; Python 3 does not (Unicode 6.3 moved it). The rest of the two sets is the same.
_PY2_EDGE_SPACE = re.compile(r"\A[\s\u180e]+|[\s\u180e]+\Z")


def _py2_strip(text: str) -> str:
    return _PY2_EDGE_SPACE.sub("", text)


def _py2_split(text: str) -> list[str]:
    return text.replace("\u180e", " ").split()


def _py2_lower(text: str) -> str:
    # Python 2's unicode.lower(): one character at a time (no final-sigma context rule) and the
    # simple mapping of U+0130 (Python 3's full mapping gives "i" + U+0307).
    return "".join("i" if ch == "\u0130" else ch.lower() for ch in text)


def process_digit_article(text: str) -> str:
    """vqaEval's `processDigitArticle`: lowercase, split on whitespace, number words -> digits,
    drop articles, restore contractions, join with single spaces."""
    words = [MANUAL_MAP.get(w, w) for w in _py2_split(_py2_lower(text))]
    words = [CONTRACTIONS.get(w, w) for w in words if w not in ARTICLES]
    return " ".join(words)


def _clean_whitespace(answer: str) -> str:
    # Applied to every answer, human or predicted, whether or not the annotators agree.
    return _py2_strip(answer.replace("\n", " ").replace("\t", " "))


def normalize_answer(answer: str) -> str:
    """The full normalisation of an answer: whitespace, `process_punctuation`,
    `process_digit_article`.

    The official script applies it to the prediction and to the human answers alike, but only
    for questions whose human answers differ; when they are all the same string it only cleans
    whitespace (see `vqa_accuracy`)."""
    return process_digit_article(process_punctuation(_clean_whitespace(answer)))


def vqa_accuracy(
    predictions: Mapping[K, str],
    annotations: Mapping[K, Sequence[str]],
    *,
    answer_types: Mapping[K, str | None] | None = None,
    question_types: Mapping[K, str | None] | None = None,
) -> dict[str, Any]:
    """Official VQA accuracy of predicted answers (see the module docstring for the rules).

    Args:
        predictions: question id -> predicted answer.
        annotations: question id -> the annotators' answers (10 in VQA v2). Same ids.
        answer_types: optional question id -> answer type ("yes/no", "number", "other").
        question_types: optional question id -> question type ("what color is the", ...).

    Returns:
        {"overall": mean accuracy, "per_question": {id: accuracy}}, plus "per_answer_type" and
        "per_question_type" ({type: mean accuracy}) when those types are given; all in [0, 1].

    Raises:
        ValueError: ids differ, or a question has no ground-truth answers.
    """
    ids = list(annotations)
    if not ids:
        raise ValueError("no annotations to score against")
    missing = [q for q in ids if q not in predictions]
    extra = [q for q in predictions if q not in annotations]
    if missing or extra:
        raise ValueError(
            f"predictions and annotations differ: {len(missing)} question(s) without a prediction "
            f"(e.g. {missing[:5]}), {len(extra)} prediction(s) for unknown questions "
            f"(e.g. {extra[:5]})"
        )
    per_question: dict[K, float] = {}
    for q in ids:
        gt = annotations[q]
        if isinstance(gt, str) or not gt:
            raise ValueError(f"annotations[{q!r}] must be a non-empty list of answers")
        per_question[q] = _question_accuracy(predictions[q], list(gt))

    result: dict[str, Any] = {
        "overall": sum(per_question.values()) / len(per_question),
        "per_question": per_question,
    }
    if answer_types is not None:
        result["per_answer_type"] = _group_means(per_question, answer_types)
    if question_types is not None:
        result["per_question_type"] = _group_means(per_question, question_types)
    return result


def answer_scores(answers: Sequence[str]) -> dict[str, float]:
    """The VQA recipe's soft target of each distinct annotator answer: 0.3 per annotator who
    gave it, capped at 1 (for 10 annotators this equals the accuracy the metric gives that
    answer). Answers are normalised as the metric does (only when the annotators disagree)."""
    gts = [_clean_whitespace(a) for a in answers if a.strip()]
    if len(set(gts)) > 1:
        gts = [process_digit_article(process_punctuation(a)) for a in gts]
    return {a: min(1.0, 0.3 * gts.count(a)) for a in dict.fromkeys(gts)}


def _question_accuracy(prediction: str, gt_answers: list[str]) -> float:
    gts = [_clean_whitespace(a) for a in gt_answers]
    pred = _clean_whitespace(prediction)
    if len(set(gts)) > 1:  # the annotators disagree: normalise both sides
        gts = [process_digit_article(process_punctuation(a)) for a in gts]
        pred = process_digit_article(process_punctuation(pred))
    # Leave each annotator out in turn. The official script tells answers apart by their dicts,
    # which differ by answer_id, so equal strings from different annotators are still different
    # answers.
    accs = []
    for i in range(len(gts)):
        matches = sum(1 for j, a in enumerate(gts) if j != i and a == pred)
        accs.append(min(1.0, matches / 3))
    return sum(accs) / len(accs)


def _group_means(
    per_question: Mapping[K, float], types: Mapping[K, str | None]
) -> dict[str, float]:
    groups: dict[str, list[float]] = {}
    for q, acc in per_question.items():
        kind = types.get(q)
        if kind is not None:
            groups.setdefault(kind, []).append(acc)
    return {t: sum(v) / len(v) for t, v in groups.items()}
