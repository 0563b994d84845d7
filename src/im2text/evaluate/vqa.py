"""The official VQA accuracy (VQA v2 challenge), ported from the VQA team's `vqaEval.py`.

Faithful to GT-Vision-Lab/VQA PythonEvaluationTools/vqaEvaluation/vqaEval.py, quirks included, so
numbers match the evaluation server:

- the predicted answer: newlines/tabs -> spaces, stripped, then `process_punctuation` and
  `process_digit_article` (lowercase, number words -> digits, articles dropped, contractions
  restored: "dont" -> "don't");
- the ground-truth answers get `process_punctuation` only, and only when the annotators did not all
  give the same string (the official script does exactly this);
- accuracy of a question = mean over its annotators of min(1, #matches among the *other*
  annotators / 3): with 10 answers, a prediction matching 1, 2, 3 or 4 of them scores 0.3, 0.6,
  0.9, 1.0.

Scores are fractions in [0, 1] (the official script prints 100x, rounded to 2 decimals).
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
# lookbehind, so a period is removed unless a digit follows it.
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)")
# vqaEval.py passes re.UNICODE where `sub` expects `count`: at most 32 periods are removed.
_PERIOD_STRIP_COUNT = int(re.UNICODE)


def process_punctuation(text: str) -> str:
    """vqaEval's `processPunctuation`: delete or space out punctuation, strip periods."""
    out = text
    for p in PUNCT:
        if (p + " " in text or " " + p in text) or _COMMA_STRIP.search(text) is not None:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD_STRIP.sub("", out, count=_PERIOD_STRIP_COUNT)


def process_digit_article(text: str) -> str:
    """vqaEval's `processDigitArticle`: lowercase, number words -> digits, drop articles, fix
    contractions."""
    words = [MANUAL_MAP.get(w, w) for w in text.lower().split()]
    words = [CONTRACTIONS.get(w, w) for w in words if w not in ARTICLES]
    return " ".join(words)


def normalize_answer(answer: str) -> str:
    """How the official script normalizes a *predicted* answer before matching."""
    answer = answer.replace("\n", " ").replace("\t", " ").strip()
    return process_digit_article(process_punctuation(answer))


def vqa_accuracy(
    predictions: Mapping[K, str],
    annotations: Mapping[K, Sequence[str]],
    *,
    answer_types: Mapping[K, str | None] | None = None,
    question_types: Mapping[K, str | None] | None = None,
) -> dict[str, Any]:
    """Official VQA accuracy of predicted answers.

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


def _question_accuracy(prediction: str, gt_answers: list[str]) -> float:
    pred = normalize_answer(prediction)
    if len(set(gt_answers)) > 1:
        gt_answers = [process_punctuation(a) for a in gt_answers]
    # Leave each annotator out in turn (the official script tells answers apart by answer_id, so
    # equal strings from different annotators are still different answers).
    accs = []
    for i in range(len(gt_answers)):
        matches = sum(1 for j, a in enumerate(gt_answers) if j != i and a == pred)
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
