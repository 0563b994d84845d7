"""Metrics: the Python PTB tokenizer equals pycocoevalcap's Java one, caption scores equal
coco-caption's, the VQA formula, retrieval recall and the report files."""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from im2text.evaluate import (
    CaptionEvaluation,
    ModelResult,
    ReportItem,
    caption_metrics,
    evaluate_captions,
    normalize_answer,
    ptb,
    retrieval_recall,
    vqa_accuracy,
    write_report,
)

DATA = Path(__file__).parent / "data"
HAVE_COCO = importlib.util.find_spec("pycocoevalcap") is not None
HAVE_JAVA = HAVE_COCO and shutil.which("java") is not None
needs_coco = pytest.mark.skipif(not HAVE_COCO, reason="needs pycocoevalcap (im2text[eval])")
needs_java = pytest.mark.skipif(not HAVE_JAVA, reason="needs Java for pycocoevalcap's own tools")

# A varied set: contractions, quotes, punctuation, numbers, hyphens, brackets, URLs, entities,
# unicode (accents, CJK, emoji, Greek final sigma), odd spacing, uppercase, empty.
SENTENCES = [
    "A man riding a wave on top of a surfboard.",
    "The dog's ball is red; it's the dog's favorite.",
    "I don't think they'll come, but we'd like it if you're there.",
    "She can't, won't and shouldn't've done that! I'm sure.",
    'He said "hello" and left.',
    "'Quoted' words and ``latex quotes''",
    "“Curly quotes” and ‘single curly’ ones",
    "A black-and-white photo of a well-known x-ray machine.",
    "The price is $1,000.50 or 3.14 per cent, maybe 1/2.",
    "A 5 7/8 inch pipe, ½ cup of flour and £5 or €3 or 5¢.",
    "Wait... what?! No way -- really?",
    "A group (of three) people [standing] {outside}.",
    "Mr. Smith met Dr. Jones at 5 p.m. in the U.S. Then they left.",
    "It was Jan. 5th, 2010 at St. Mary's.",
    "a.k.a. the e.g. case, i.e. this one etc.",
    "  multiple   spaces   between    words  ",
    "TWO DOGS PLAYING WITH A FRISBEE IN THE PARK",
    "Visit http://example.com/page?id=3 or www.google.com now",
    "Email me at someone@example.com or @user #hashtag",
    "AT&T and S&P 500 &amp; more",
    "A café with crème brûlée and naïve décor",
    "Ein Hund läuft über die Straße",
    "中文 字幕 and 日本語 text",
    "Emoji 😀 and 👍🏽 in a caption",
    "gonna wanna gotta lemme gimme cannot",
    "'Tis the season, y'all, at 9 o'clock",
    "rock'n'roll and ma'am",
    "the 1990s and the '80s",
    "a 12:30 train, 3-4 people, a 5-year-old child",
    "a tab\there and a non\u00a0breaking space",
    "soft\u00adhyphen in a word",
    "dashes — and – and - and --- end",
    "asterisks * and ** and slashes / and \\ backslash",
    "<b>bold</b> tag and &quot;entity&quot;",
    'a "quote" at the "end"',
    "Hello, world! How are you?",
    "semi;colon: and more:",
    "number 2nd 3rd 100th",
    "The U.K.'s queen.",
    "",
    "Isn't it?",
    "...leading dots",
    "trailing comma,",
    "ΣΑΣ and Greek ΟΔΥΣΣΕΥΣ",
    "A line\u2028separator and a carriage\rreturn shift later captions, as in Java",
    "The last caption of the batch.",
]

# Java's output for some of them (pycocoevalcap 1.2, CoreNLP 3.4.1), checked without Java.
GOLDEN = [
    (
        "I don't think they'll come, but we'd like it if you're there.",
        "i do n't think they 'll come but we 'd like it if you 're there",
    ),
    (
        'He said "hello" and left.',
        "he said hello and left",
    ),
    (
        "The price is $1,000.50 or 3.14 per cent, maybe 1/2.",
        "the price is $ 1,000.50 or 3.14 per cent maybe 1/2",
    ),
    (
        "A group (of three) people [standing] {outside}.",
        "a group -lrb- of three -rrb- people -lsb- standing -rsb- -lcb- outside -rcb-",
    ),
    (
        "Mr. Smith met Dr. Jones at 5 p.m. in the U.S. Then they left.",
        "mr. smith met dr. jones at 5 p.m. in the u.s. then they left",
    ),
    (
        "gonna wanna gotta lemme gimme cannot",
        "gon na wan na got ta lem me gim me can not",
    ),
    (
        "Emoji 😀 and 👍🏽 in a caption",
        "emoji and in a caption",
    ),
    (
        "A 5 7/8 inch pipe, ½ cup of flour and £5.",
        "a 5\u00a07/8 inch pipe 1/2 cup of flour and # 5",
    ),
    (
        "ΣΑΣ and Greek ΟΔΥΣΣΕΥΣ",
        "σας and greek οδυσσευς",
    ),
]


def load_captions() -> tuple[dict[str, str], dict[str, list[str]]]:
    data = json.loads((DATA / "captions.json").read_text(encoding="utf-8"))
    return data["predictions"], data["references"]


# --- (a) tokenizer ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def java_tokens() -> dict[int, list[str]]:
    if not HAVE_JAVA:
        pytest.skip("needs Java to run pycocoevalcap's PTBTokenizer")
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    # Two captions per key, to also check the grouping and ordering.
    pairs = {i: [{"caption": s}, {"caption": s.upper()}] for i, s in enumerate(SENTENCES)}
    return PTBTokenizer().tokenize(pairs)


@needs_java
def test_python_tokenizer_equals_java(java_tokens: dict[int, list[str]]) -> None:
    ours = ptb.tokenize({i: [s, s.upper()] for i, s in enumerate(SENTENCES)})
    assert len(SENTENCES) >= 40
    assert ours == java_tokens


@needs_java
def test_python_tokenizer_accepts_pycocoevalcap_input(java_tokens: dict[int, list[str]]) -> None:
    ours = ptb.tokenize(
        {i: [{"caption": s}, {"caption": s.upper()}] for i, s in enumerate(SENTENCES)}
    )
    assert ours == java_tokens


@needs_coco
@pytest.mark.parametrize(("text", "expected"), GOLDEN)
def test_tokenizer_golden(text: str, expected: str) -> None:
    assert ptb.tokenize_text(text) == expected


def test_tokenizer_without_tables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("IM2TEXT_CORENLP_JAR", str(tmp_path / "missing.jar"))
    with pytest.raises(ptb.TokenizerUnavailableError, match="cannot read"):
        ptb.tokenize_text("a cat")
    with pytest.raises(ptb.TokenizerUnavailableError, match=r"other than CoreNLP 3\.4\.1"):
        import zipfile

        with zipfile.ZipFile(tmp_path / "other.jar", "w") as zf:
            zf.writestr("edu/stanford/nlp/process/PTBLexer.class", b"not this build")
        ptb.tokenize_text("a cat", jar=tmp_path / "other.jar")


def test_evaluate_public_api() -> None:
    import im2text.evaluate as evaluate

    assert set(evaluate.__all__) == {
        "DEFAULT_METRICS", "CaptionEvaluation", "ModelResult", "ReportItem",
        "TokenizerUnavailableError", "WordScores", "caption_metrics", "evaluate_captions",
        "normalize_answer", "word_scores",
        "retrieval_recall", "tokenize", "vqa_accuracy", "write_report",
    }  # fmt: skip


@needs_coco
def test_raw_ptb_tokens() -> None:
    assert ptb.ptb_tokens("A man's (big) dog.") == [
        "A",
        "man",
        "'s",
        "-LRB-",
        "big",
        "-RRB-",
        "dog",
        ".",
    ]


# --- (b, c) caption metrics ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def official() -> dict[str, object]:
    """Scores from pycocoevalcap's own pipeline (Java tokenizer + its scorers)."""
    if not HAVE_JAVA:
        pytest.skip("needs Java to run pycocoevalcap's PTBTokenizer")
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    preds, refs = load_captions()
    tok = PTBTokenizer()
    gts = tok.tokenize({k: [{"caption": c} for c in v] for k, v in refs.items()})
    res = tok.tokenize({k: [{"caption": preds[k]}] for k in refs})
    bleu, bleu_items = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, rouge_items = Rouge().compute_score(gts, res)
    cider, cider_items = Cider().compute_score(gts, res)
    return {
        "gts": gts,
        "res": res,
        "bleu": bleu,
        "bleu_items": bleu_items,
        "rouge": rouge,
        "rouge_items": rouge_items,
        "cider": cider,
        "cider_items": cider_items,
    }


@needs_java
def test_bleu_rouge_cider_equal_coco_caption(official: dict) -> None:
    preds, refs = load_captions()
    assert len(refs) >= 10 and all(3 <= len(v) <= 5 for v in refs.values())
    ev = evaluate_captions(preds, refs, metrics=["bleu", "rouge", "cider"])
    for n in range(4):
        assert ev.scores[f"Bleu_{n + 1}"] == pytest.approx(official["bleu"][n], abs=1e-9)
        assert list(ev.per_item[f"Bleu_{n + 1}"].values()) == pytest.approx(
            official["bleu_items"][n], abs=1e-9
        )
    assert ev.scores["ROUGE_L"] == pytest.approx(official["rouge"], abs=1e-9)
    assert ev.scores["CIDEr"] == pytest.approx(official["cider"], abs=1e-9)
    assert list(ev.per_item["CIDEr"].values()) == pytest.approx(official["cider_items"], abs=1e-9)
    assert list(ev.per_item["CIDEr"]) == list(refs)  # per-item ids in input order


@needs_java
def test_java_tokenizer_path_gives_same_scores() -> None:
    preds, refs = load_captions()
    a = caption_metrics(preds, refs, metrics=["bleu", "cider"], tokenizer="python")
    b = caption_metrics(preds, refs, metrics=["bleu", "cider"], tokenizer="ptb-java")
    assert a == b


@needs_coco
def test_caption_scores_golden_without_java() -> None:
    # Numbers from pycocoevalcap 1.2 with its Java tokenizer on tests/data/captions.json.
    preds, refs = load_captions()
    s = caption_metrics(preds, refs, metrics=["bleu", "rouge", "cider"])
    expected = {
        "Bleu_1": 0.9007510892247796,
        "Bleu_2": 0.7931525469530591,
        "Bleu_3": 0.6785753666639888,
        "Bleu_4": 0.5575805744584762,
        "ROUGE_L": 0.7005574206799081,
        "CIDEr": 2.1307105964819812,
    }
    assert s == pytest.approx(expected, abs=1e-12)


@needs_java
def test_meteor_equals_pycocoevalcap(official: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    import pycocoevalcap.meteor.meteor as meteor_module

    preds, refs = load_captions()
    # One METEOR process (each start loads a large paraphrase table): score pycocoevalcap's own
    # Java-tokenized input with it, then let evaluate_captions use the same scorer.
    scorer = meteor_module.Meteor()
    expected, expected_items = scorer.compute_score(official["gts"], official["res"])
    monkeypatch.setattr(meteor_module, "Meteor", lambda: scorer)
    ev = evaluate_captions(preds, refs, metrics=["meteor"])
    assert ev.scores["METEOR"] == pytest.approx(expected, abs=1e-9)
    assert list(ev.per_item["METEOR"].values()) == pytest.approx(expected_items, abs=1e-9)
    assert scorer.meteor_p.poll() is not None  # the Java process was stopped afterwards


@needs_coco
def test_meteor_and_spice_unavailable_without_java(monkeypatch: pytest.MonkeyPatch) -> None:
    import im2text.evaluate.captions as captions

    monkeypatch.setattr(captions.shutil, "which", lambda name: None)
    preds, refs = load_captions()
    with pytest.warns(RuntimeWarning, match="METEOR needs Java"):
        ev = evaluate_captions(preds, refs, metrics=["meteor", "spice", "cider"])
    assert ev.scores["METEOR"] is None and ev.scores["SPICE"] is None
    assert "Java" in ev.unavailable["METEOR"] and "Java" in ev.unavailable["SPICE"]
    assert ev.scores["CIDEr"] == pytest.approx(2.1307105964819812)


@needs_java
def test_spice_reports_missing_models() -> None:
    preds, refs = load_captions()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ev = evaluate_captions(preds, refs, metrics=["spice"])
    if ev.scores["SPICE"] is None:  # the usual offline case
        assert "CoreNLP 3.6.0" in ev.unavailable["SPICE"]


@needs_coco
def test_caption_input_errors() -> None:
    with pytest.raises(ValueError, match="without a prediction"):
        caption_metrics({"a": "x"}, {"a": ["x"], "b": ["y"]}, metrics=["cider"])
    with pytest.raises(ValueError, match="non-empty list"):
        caption_metrics({"a": "x"}, {"a": []}, metrics=["cider"])
    with pytest.raises(ValueError, match="unknown caption metric"):
        caption_metrics({"a": "x"}, {"a": ["x"]}, metrics=["bertscore"])


def test_worst_first() -> None:
    ev = CaptionEvaluation(scores={}, per_item={"CIDEr": {"a": 0.5, "b": 0.1, "c": 0.9}})
    assert [i for i, _ in ev.worst()] == ["b", "a", "c"]


# --- (d) VQA ------------------------------------------------------------------------------------
# The expected values below were computed by running the official, unmodified
# GT-Vision-Lab/VQA vqaTools/vqa.py + vqaEvaluation/vqaEval.py at commit a013f00 ("Fixed
# processing answers bug", 2021-03-11) under Python 2.7.18 on exactly these cases (one question
# per case, answer_ids 1..n), recording the unrounded per-question accuracy that evaluate() passes
# to setEvalQA. Our port must give the very same floats.
_OTHERS = ["dog", "bird", "cow", "horse", "sheep", "goat", "pig", "hen", "fox", "owl"]
VQA_OFFICIAL_CASES: list[tuple[str, list[str], float]] = [
    # All human answers identical (after whitespace cleaning): nothing is normalised, the match
    # is exact and case-sensitive.
    ("Yes", ["Yes"] * 10, 1.0),
    ("yes", ["Yes"] * 10, 0.0),  # no lowercasing when the annotators agree
    ("two", ["two"] * 10, 1.0),
    ("two", ["2"] * 10, 0.0),  # no number words -> digits either
    ("a dog", ["dog"] * 10, 0.0),  # nor article dropping
    ("yes.", ["yes"] * 10, 0.0),  # nor period stripping
    (" Yes\n", ["Yes"] * 10, 1.0),  # whitespace is always cleaned, the prediction's too
    ("yes", ["yes\n"] * 5 + ["\tyes "] * 5, 1.0),  # identical once cleaned -> no processing...
    ("Yes", ["yes\n"] * 5 + ["yes"] * 5, 0.0),  # ...so "Yes" stays capitalised
    # Human answers differ: both sides get punctuation + digit/article processing.
    ("two", ["2"] * 9 + ["3"], 1.0),
    ("2", ["two"] * 3 + ["three"] * 7, 0.9),
    ("a dog", ["dog"] * 4 + ["cat"] * 6, 1.0),
    ("dog", ["the dog"] * 2 + ["a cat"] * 8, 0.6),
    ("a dog", ["the dog"] * 2 + ["cat"] * 8, 0.6),
    ("Yes.", ["yes"] * 9 + ["no"], 1.0),
    ("yes", ["yes."] * 3 + ["no"] * 7, 0.9),
    ("Yes.", ["yes."] * 3 + ["no"] * 7, 0.9),
    ("yes", ["yes!"] * 3 + ["no"] * 7, 0.9),  # "yes!" -> "yes " -> split/join -> "yes"
    ("Yes", ["yes"] * 9 + ["no"], 1.0),
    ("red, white", ["red white"] * 9 + ["red"], 1.0),  # "," next to a space is deleted
    ("dont", ["don't"] * 3 + ["do not"] * 7, 0.9),
    ("3.5", ["3.5"] * 2 + ["3"] * 8, 0.6),  # a period before a digit stays
    ("1,000", ["1000"] * 4 + ["100"] * 6, 1.0),
    ("black\nand white", ["black and white"] * 3 + ["black"] * 7, 0.9),
    ("black\nand white", ["black\tand white"] * 2 + ["black and  white\n"] + ["black"] * 7, 0.9),
    ("\tYes \n", ["Yes"] * 10, 1.0),
    ("blue", ["blue\n", "Blue"] + ["green"] * 8, 0.6),
    ("two dogs", ["2  dogs"] * 3 + ["3 dogs"] * 7, 0.9),
    ("x-ray", ["x ray"] * 3 + ["xray"] * 7, 0.9),  # "-" not next to a space becomes a space
    ("cat", ["cat", "dog", "dog"], 0.2222222222222222),  # (0 + 1/3 + 1/3) / 3
    # Python 2 string semantics (the official script is Python 2).
    ("ΑΣ", ["ασ"] * 3 + ["β"] * 7, 0.9),  # no final sigma: Python 3's "ΑΣ".lower() is "ας"
    ("İ", ["i"] * 3 + ["j"] * 7, 0.9),  # Python 2 lowercases U+0130 to a plain "i"
    ("3.\u0665", ["3\u0665"] * 3 + ["x"] * 7, 0.9),  # \d is [0-9]: the period before "٥" goes
    ("yes\u180e", ["yes"] * 10, 1.0),  # U+180E is whitespace to Python 2's strip()
]
# The prediction matches k of 10 different answers.
VQA_OFFICIAL_CASES += [
    ("cat", ["cat"] * k + _OTHERS[: 10 - k], acc)
    for k, acc in enumerate([0.0, 0.3, 0.6, 0.9] + [1.0] * 7)
]


@pytest.mark.parametrize(
    ("prediction", "answers", "official"),
    VQA_OFFICIAL_CASES,
    ids=[f"{i}-{p!r}" for i, (p, _, _) in enumerate(VQA_OFFICIAL_CASES)],
)
def test_vqa_matches_official_script(prediction: str, answers: list[str], official: float) -> None:
    assert vqa_accuracy({1: prediction}, {1: answers})["per_question"][1] == official


def test_vqa_matches_official_script_overall() -> None:
    preds = {i: p for i, (p, _, _) in enumerate(VQA_OFFICIAL_CASES)}
    gts = {i: a for i, (_, a, _) in enumerate(VQA_OFFICIAL_CASES)}
    # The official script's accuracy['overall'] on all cases at once (100x, rounded to 2 places).
    assert round(100 * vqa_accuracy(preds, gts)["overall"], 2) == 76.05


def test_vqa_identical_human_answers_are_matched_exactly() -> None:
    # Ten identical human answers: the official code only cleans whitespace, so "Yes" vs "Yes"
    # is a match (the 2016 revision normalised the prediction alone and scored it 0)...
    assert vqa_accuracy({1: "Yes"}, {1: ["Yes"] * 10})["overall"] == 1.0
    # ...and "yes" vs ten "Yes" is not: nothing is lowercased when `len(set(gtAnswers)) == 1`.
    assert vqa_accuracy({1: "yes"}, {1: ["Yes"] * 10})["overall"] == 0.0
    assert vqa_accuracy({1: "two"}, {1: ["two"] * 10})["overall"] == 1.0
    assert vqa_accuracy({1: "two"}, {1: ["2"] * 10})["overall"] == 0.0


def test_vqa_differing_human_answers_normalise_both_sides() -> None:
    # Human side: "two" -> "2", "the dog" -> "dog", "yes." -> "yes"; prediction side likewise.
    assert vqa_accuracy({1: "2"}, {1: ["two"] * 3 + ["three"] * 7})["overall"] == pytest.approx(0.9)
    assert vqa_accuracy({1: "two"}, {1: ["2"] * 9 + ["3"]})["overall"] == 1.0
    assert vqa_accuracy({1: "a dog"}, {1: ["the dog"] * 2 + ["cat"] * 8})["overall"] == (
        pytest.approx(0.6)
    )
    assert vqa_accuracy({1: "Yes."}, {1: ["yes."] * 3 + ["no"] * 7})["overall"] == (
        pytest.approx(0.9)
    )


def test_vqa_whitespace_is_always_cleaned() -> None:
    assert vqa_accuracy({1: "\tYes \n"}, {1: ["Yes"] * 10})["overall"] == 1.0
    # Newline/tab inside an answer become spaces; with disagreeing annotators, split/join then
    # collapses the runs of spaces.
    answers = ["black\tand white"] * 2 + ["black and  white\n"] + ["black"] * 7
    assert vqa_accuracy({1: "black\nand white"}, {1: answers})["overall"] == pytest.approx(0.9)


def test_vqa_normalize_answer() -> None:
    assert normalize_answer(" The Two Dogs.\n") == "2 dogs"
    assert normalize_answer("3.5") == "3.5"  # a period before a digit stays
    assert normalize_answer("1,000") == "1000"  # comma-in-number rule: punctuation deleted
    assert normalize_answer("yes!") == "yes"
    assert normalize_answer("dont") == "don't"


@pytest.mark.parametrize(("k", "expected"), [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0)])
def test_vqa_ten_annotator_average(k: int, expected: float) -> None:
    # The prediction matches k of 10 answers. Leaving out annotator i, accuracy is
    # min(1, matches among the other 9 / 3); averaged over the 10 choices of i:
    #   [k * min(1, (k-1)/3) + (10-k) * min(1, k/3)] / 10
    # k=1: (1*0   + 9*1/3) / 10 = 3/10 = 0.3
    # k=2: (2*1/3 + 8*2/3) / 10 = 6/10 = 0.6
    # k=3: (3*2/3 + 7*1)   / 10 = 9/10 = 0.9
    # k=4: (4*1   + 6*1)   / 10 = 1.0
    answers = ["cat"] * k + _OTHERS[: 10 - k]
    formula = (k * min(1, (k - 1) / 3) + (10 - k) * min(1, k / 3)) / 10 if k else 0.0
    result = vqa_accuracy({"q": "cat"}, {"q": answers})
    assert result["overall"] == pytest.approx(expected)
    assert result["overall"] == pytest.approx(formula)


def test_vqa_types_and_errors() -> None:
    preds = {1: "yes", 2: "3", 3: "blue"}
    gts = {1: ["yes"] * 10, 2: ["2"] * 10, 3: ["blue"] * 2 + ["red"] * 8}
    out = vqa_accuracy(
        preds,
        gts,
        answer_types={1: "yes/no", 2: "number", 3: "other"},
        question_types={1: "is the", 2: "how many", 3: "what color"},
    )
    assert out["per_question"] == pytest.approx({1: 1.0, 2: 0.0, 3: 0.6})
    assert out["overall"] == pytest.approx(1.6 / 3)
    assert out["per_answer_type"] == pytest.approx({"yes/no": 1.0, "number": 0.0, "other": 0.6})
    assert out["per_question_type"]["how many"] == 0.0
    with pytest.raises(ValueError, match="without a prediction"):
        vqa_accuracy({}, {1: ["yes"]})


# --- (e) retrieval ------------------------------------------------------------------------------


def test_retrieval_recall_small_matrix() -> None:
    # 3 images, 5 texts: texts 0,1 -> image 0; 2,3 -> image 1; 4 -> image 2.
    sim = np.array(
        [
            [0.9, 0.1, 0.8, 0.0, 0.0],  # image 0: best text is its own (0) -> rank 1
            [0.7, 0.2, 0.1, 0.3, 0.0],  # image 1: own texts 2,3; best own 0.3 after 0.7 -> rank 2
            [0.5, 0.6, 0.4, 0.3, 0.2],  # image 2: own text 4 is last of 5 -> rank 5
        ]
    )
    owner = [0, 0, 1, 1, 2]
    r = retrieval_recall(sim, owner, ks=(1, 2, 5))
    assert r["i2t_R@1"] == pytest.approx(1 / 3)
    assert r["i2t_R@2"] == pytest.approx(2 / 3)
    assert r["i2t_R@5"] == pytest.approx(1.0)
    # Text ranks (each column): t0 -> 1; t1 -> 3 (0.2 and 0.6 beat 0.1); t2 -> 3; t3 -> 2 (its
    # 0.3 ties image 2's 0.3: ties count against); t4 -> 1.
    assert r["t2i_R@1"] == pytest.approx(2 / 5)
    assert r["t2i_R@2"] == pytest.approx(3 / 5)
    assert r["t2i_R@5"] == pytest.approx(1.0)
    assert r["i2t_median_rank"] == 2 and r["t2i_median_rank"] == 2
    assert r["mean_recall"] == pytest.approx((1 / 3 + 2 / 3 + 1 + 2 / 5 + 3 / 5 + 1) / 6)


def test_retrieval_ties_count_against_the_model() -> None:
    r = retrieval_recall(np.zeros((4, 4)), [0, 1, 2, 3], ks=(1,))
    assert r["i2t_R@1"] == 0.0 and r["t2i_R@1"] == 0.0


def test_retrieval_errors() -> None:
    with pytest.raises(ValueError, match="no text"):
        retrieval_recall(np.eye(3)[:, :2], [0, 1])
    with pytest.raises(ValueError, match="entries"):
        retrieval_recall(np.eye(3), [0, 1])


# --- (f) report ---------------------------------------------------------------------------------


def test_report_json_and_html_worst_first(tmp_path: Path) -> None:
    img_path = tmp_path / "cat.png"
    Image.new("RGB", (64, 48), (200, 30, 30)).save(img_path)
    items = [
        ReportItem("a", img_path, ("a red square",)),
        ReportItem("b", Image.new("RGB", (10, 10), "blue"), ("a blue square",)),
        ReportItem("c", tmp_path / "missing.png", ("nothing <here>",)),
    ]
    models = {
        "model-1": ModelResult(
            {"a": "red square", "b": "a cat", "c": "<script>x</script>"},
            scores={"CIDEr": 1.0, "SPICE": None},
            per_item={"CIDEr": {"a": 2.0, "b": 0.1, "c": 0.5}},
            unavailable={"SPICE": "needs models"},
        ),
        "model-2": ModelResult(
            {"a": "a square", "b": "blue", "c": "empty"},
            scores={"CIDEr": 0.8},
            per_item={"CIDEr": {"a": 1.0, "b": 0.3, "c": 0.9}},
        ),
    }
    json_path, html_path = write_report(tmp_path / "out", items, models, {"tokenizer": "python"})

    report = json.loads(json_path.read_text(encoding="utf-8"))
    assert [it["id"] for it in report["items"]] == ["b", "c", "a"]  # mean CIDEr 0.2, 0.7, 1.5
    assert report["sort_by"] == "CIDEr"
    assert report["models"]["model-1"]["scores"]["SPICE"] is None
    assert report["items"][0]["predictions"] == {"model-1": "a cat", "model-2": "blue"}
    assert report["settings"] == {"tokenizer": "python"}

    page = html_path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert (
        page.index("a blue square")
        < page.index("nothing &lt;here&gt;")
        < page.index("a red square")
    )
    assert "<script>" not in page and "&lt;script&gt;" in page  # text is escaped
    assert page.count("data:image/jpeg;base64,") == 2  # the missing file gets a note instead
    assert "http" not in page  # self-contained: nothing fetched
    assert "needs models" in page


def test_report_from_vqa_result(tmp_path: Path) -> None:
    result = vqa_accuracy({1: "yes", 2: "no"}, {1: ["yes"] * 10, 2: ["yes"] * 10})
    model = ModelResult.from_evaluation({1: "yes", 2: "no"}, result)
    items = [
        {"question_id": 1, "question": "Is it?", "answers": ["yes"] * 10},
        {"question_id": 2, "question": "Is it not?", "answers": ["yes"] * 10},
    ]
    json_path, _ = write_report(tmp_path, items, {"m": model}, {})
    report = json.loads(json_path.read_text(encoding="utf-8"))
    assert [it["id"] for it in report["items"]] == [2, 1]
    assert math.isclose(report["models"]["m"]["scores"]["accuracy"], 0.5)
