"""COCO caption metrics: BLEU-1..4, METEOR, ROUGE-L, CIDEr-D and SPICE, as coco-caption scores them.

The scoring code is pycocoevalcap's own (its `Bleu`, `Rouge`, `Cider` classes are pure Python), fed
by the same tokens: by default our pure-Python port of its Java tokenizer (`ptb.py`), so BLEU,
ROUGE-L and CIDEr-D need no Java and equal the official numbers exactly. METEOR and SPICE are Java
programs; they run when they can and are otherwise reported as unavailable, with the reason.

Key names are coco-caption's ("Bleu_4", "ROUGE_L", "CIDEr" — which is CIDEr-D, the variant
coco-caption implements), so results compare directly with published tables.
"""

from __future__ import annotations

import importlib.util
import shutil
import warnings
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from im2text.evaluate import ptb

__all__ = [
    "DEFAULT_METRICS",
    "CaptionEvaluation",
    "caption_metrics",
    "evaluate_captions",
]

# Metric families (what `metrics=` takes) -> the score keys each one produces.
_KEYS: dict[str, tuple[str, ...]] = {
    "bleu": ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4"),
    "meteor": ("METEOR",),
    "rouge": ("ROUGE_L",),
    "cider": ("CIDEr",),
    "spice": ("SPICE",),
}
DEFAULT_METRICS: tuple[str, ...] = ("bleu", "meteor", "rouge", "cider", "spice")
_INSTALL_HINT = "pip install 'im2text[eval]'"
_NO_JAVA = "needs Java on PATH (e.g. apt-get install default-jre-headless)"

Tokenizer = Literal["python", "ptb-java"]
K = TypeVar("K", bound=Hashable)  # item ids: any hashable type, the same in both mappings


@dataclass(frozen=True)
class CaptionEvaluation:
    """Scores of one set of predicted captions against references."""

    scores: dict[
        str, float | None
    ]  # corpus-level score per key ("Bleu_4", "CIDEr", ...); None = not computed
    per_item: dict[str, dict[Hashable, float]]  # key -> item id -> that item's score
    unavailable: dict[str, str] = field(default_factory=dict)  # key -> why it was not computed
    tokenizer: str = "python"  # which PTB tokenizer produced the tokens

    def worst(self, key: str = "CIDEr", n: int | None = None) -> list[tuple[Hashable, float]]:
        """Items sorted by one per-item score, worst first (ties keep input order)."""
        if key not in self.per_item:
            raise KeyError(f"no per-item {key!r} scores (have: {', '.join(self.per_item)})")
        ranked = sorted(self.per_item[key].items(), key=lambda kv: kv[1])
        return ranked if n is None else ranked[:n]


def evaluate_captions(
    predictions: Mapping[K, str],
    references: Mapping[K, Sequence[str]],
    *,
    metrics: Iterable[str] = DEFAULT_METRICS,
    tokenizer: Tokenizer = "python",
) -> CaptionEvaluation:
    """Score predicted captions against reference captions the coco-caption way.

    Args:
        predictions: item id -> the predicted caption (exactly one per item).
        references: item id -> its reference captions (at least one). Same ids as `predictions`.
        metrics: any of "bleu", "meteor", "rouge", "cider", "spice".
        tokenizer: "python" (default; no Java) or "ptb-java" (pycocoevalcap's own Java tokenizer).
            Both give identical tokens.

    Returns:
        Corpus scores, per-item scores and, for metrics that could not run (METEOR or SPICE
        without Java, SPICE without its downloaded models), the reason. A warning names them too.

    Raises:
        ValueError: ids differ, a reference list is empty, or an unknown metric/tokenizer.
        ImportError: pycocoevalcap is not installed.
        RuntimeError: tokenizer="ptb-java" but Java is missing.
    """
    families = _check_metrics(metrics)
    ids = _check_inputs(predictions, references)
    _require_pycocoevalcap()
    gts, res = _tokenize(
        {i: list(references[i]) for i in ids}, {i: [predictions[i]] for i in ids}, tokenizer
    )

    scores: dict[str, float | None] = {}
    per_item: dict[str, dict[Hashable, float]] = {}
    unavailable: dict[str, str] = {}
    skipped: list[str] = []
    for family in families:
        try:
            corpus, items = _SCORERS[family](gts, res)
        except _Unavailable as e:
            skipped.append(f"{family}: {e}")
            for key in _KEYS[family]:
                scores[key] = None
                unavailable[key] = str(e)
            continue
        for key, value in corpus.items():
            scores[key] = value
            per_item[key] = dict(zip(ids, items[key]))
    if skipped:
        warnings.warn("not computed: " + "; ".join(skipped), RuntimeWarning, stacklevel=2)
    return CaptionEvaluation(scores, per_item, unavailable, tokenizer)


def caption_metrics(
    predictions: Mapping[K, str],
    references: Mapping[K, Sequence[str]],
    *,
    metrics: Iterable[str] = DEFAULT_METRICS,
    tokenizer: Tokenizer = "python",
) -> dict[str, float | None]:
    """Corpus-level caption scores, e.g. `{"Bleu_4": 0.36, "CIDEr": 1.21, "SPICE": None, ...}`.

    A shortcut for `evaluate_captions(...).scores`; see there for the arguments. None marks a
    metric that could not run (a warning says why).
    """
    return evaluate_captions(predictions, references, metrics=metrics, tokenizer=tokenizer).scores


# --- internals ---------------------------------------------------------------------------------


class _Unavailable(Exception):
    """A metric cannot run here; the message says why."""


def _check_metrics(metrics: Iterable[str]) -> list[str]:
    if isinstance(metrics, str):
        metrics = [metrics]
    families = []
    for m in metrics:
        key = m.lower().replace("-", "_")
        key = {"rouge_l": "rouge", "cider_d": "cider"}.get(key, key)
        if key not in _KEYS:
            raise ValueError(f"unknown caption metric {m!r}; choose from {', '.join(_KEYS)}")
        if key not in families:
            families.append(key)
    if not families:
        raise ValueError("no caption metric asked for")
    return families


def _check_inputs(predictions: Mapping[K, str], references: Mapping[K, Sequence[str]]) -> list[K]:
    ids = list(references)
    if not ids:
        raise ValueError("no references to score against")
    missing = [i for i in ids if i not in predictions]
    extra = [i for i in predictions if i not in references]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} id(s) without a prediction (e.g. {missing[:5]})")
        if extra:
            parts.append(f"{len(extra)} prediction id(s) without references (e.g. {extra[:5]})")
        raise ValueError("predictions and references differ: " + "; ".join(parts))
    for i in ids:
        refs = references[i]
        if isinstance(refs, str) or not refs:
            raise ValueError(f"references[{i!r}] must be a non-empty list of captions")
        if not isinstance(predictions[i], str):
            raise ValueError(f"predictions[{i!r}] must be one caption string")
    return ids


def _require_pycocoevalcap() -> None:
    if importlib.util.find_spec("pycocoevalcap") is None:
        raise ImportError(f"caption metrics need pycocoevalcap: {_INSTALL_HINT}")


def _tokenize(
    gts: dict[Hashable, list[str]], res: dict[Hashable, list[str]], tokenizer: str
) -> tuple[dict[Hashable, list[str]], dict[Hashable, list[str]]]:
    if tokenizer == "python":
        return ptb.tokenize(gts), ptb.tokenize(res)
    if tokenizer == "ptb-java":
        if shutil.which("java") is None:
            raise RuntimeError(f"tokenizer='ptb-java' {_NO_JAVA}; or use tokenizer='python'")
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer  # type: ignore[import-untyped]

        def as_coco(d: dict[Hashable, list[str]]) -> dict[Hashable, list[dict[str, str]]]:
            return {k: [{"caption": c} for c in v] for k, v in d.items()}

        java = PTBTokenizer()
        return java.tokenize(as_coco(gts)), java.tokenize(as_coco(res))
    raise ValueError(f"unknown tokenizer {tokenizer!r}; choose 'python' or 'ptb-java'")


Scored = tuple[dict[str, float], dict[str, list[float]]]


def _bleu(gts: dict, res: dict) -> Scored:
    from pycocoevalcap.bleu.bleu import Bleu  # type: ignore[import-untyped]

    corpus, items = Bleu(4).compute_score(gts, res, verbose=0)
    keys = _KEYS["bleu"]
    return (
        {k: float(v) for k, v in zip(keys, corpus)},
        {k: [float(x) for x in v] for k, v in zip(keys, items)},
    )


def _rouge(gts: dict, res: dict) -> Scored:
    from pycocoevalcap.rouge.rouge import Rouge  # type: ignore[import-untyped]

    corpus, items = Rouge().compute_score(gts, res)
    return {"ROUGE_L": float(corpus)}, {"ROUGE_L": [float(x) for x in items]}


def _cider(gts: dict, res: dict) -> Scored:
    from pycocoevalcap.cider.cider import Cider  # type: ignore[import-untyped]

    corpus, items = Cider().compute_score(gts, res)
    return {"CIDEr": float(corpus)}, {"CIDEr": [float(x) for x in items]}


def _meteor(gts: dict, res: dict) -> Scored:
    if shutil.which("java") is None:
        raise _Unavailable(f"METEOR {_NO_JAVA}")
    from pycocoevalcap.meteor.meteor import Meteor  # type: ignore[import-untyped]

    try:
        scorer = Meteor()
    except OSError as e:
        raise _Unavailable(f"METEOR could not start Java: {e}") from e
    try:
        corpus, items = scorer.compute_score(gts, res)
    except (OSError, ValueError) as e:  # the Java process died (e.g. out of memory)
        raise _Unavailable(f"METEOR failed: {e}") from e
    finally:
        _stop(scorer)
    return {"METEOR": float(corpus)}, {"METEOR": [float(x) for x in items]}


def _stop(scorer: Any) -> None:
    # Meteor keeps a Java process (and its pipes) open until garbage collection; end it now.
    proc = getattr(scorer, "meteor_p", None)
    if proc is None:
        return
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def _spice(gts: dict, res: dict) -> Scored:
    if shutil.which("java") is None:
        raise _Unavailable(f"SPICE {_NO_JAVA}")
    spec = importlib.util.find_spec("pycocoevalcap")
    roots = list(spec.submodule_search_locations or []) if spec else []
    lib = Path(roots[0]) / "spice" / "lib" if roots else None
    jars = ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar")
    if lib is None or not all((lib / jar).is_file() for jar in jars):
        raise _Unavailable(
            "SPICE needs Stanford CoreNLP 3.6.0 and its models (some 400 MB), which pycocoevalcap "
            "downloads on first use and which are not installed here; with internet access run "
            "`python -c 'from pycocoevalcap.spice.spice import Spice; Spice()'` once"
        )
    from pycocoevalcap.spice.spice import Spice  # type: ignore[import-untyped]

    try:
        corpus, items = Spice().compute_score(gts, res)
    except Exception as e:  # a Java tool failing in its own ways: report, don't crash the others
        raise _Unavailable(f"SPICE failed: {e}") from e
    # Spice scores items in sorted-id order; map back to our order.
    by_id = dict(zip(sorted(gts), items))
    return {"SPICE": float(corpus)}, {"SPICE": [float(by_id[i]["All"]["f"]) for i in gts]}


_SCORERS = {"bleu": _bleu, "meteor": _meteor, "rouge": _rouge, "cider": _cider, "spice": _spice}
