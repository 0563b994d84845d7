"""Image-text retrieval recall (R@K) in both directions, as reported for COCO / Flickr30k.

Image -> text: for each image, rank all texts; a hit at K when any of its own texts (COCO has 5
per image) is among the top K. Text -> image: for each text, rank all images; a hit when its image
is among the top K.

Ties are counted against the model (a ground-truth item tied with wrong ones ranks after them), so
a constant similarity matrix scores near chance instead of perfect.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["retrieval_recall"]

_BLOCK = 512  # image rows compared at a time


def retrieval_recall(
    similarity: Any,
    text_to_image: Sequence[int],
    *,
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, float]:
    """Recall@K for image->text and text->image retrieval.

    Args:
        similarity: (n_images, n_texts) scores, higher = more similar (numpy array, torch tensor or
            nested lists).
        text_to_image: for each text (column), the row index of the image it describes.
        ks: the K values to report.

    Returns:
        {"i2t_R@1": ..., "i2t_R@5": ..., "t2i_R@1": ..., ..., "i2t_median_rank": ...,
        "t2i_median_rank": ..., "rsum": sum of all recalls, "mean_recall": their mean}; recalls
        are fractions in [0, 1], ranks are 1-based.

    Raises:
        ValueError: shapes disagree, an index is out of range, or an image has no text.
    """
    sim = np.asarray(_to_numpy(similarity))
    if not np.issubdtype(sim.dtype, np.floating):
        sim = sim.astype(np.float64)
    if sim.ndim != 2:
        raise ValueError(f"similarity must be 2-D (n_images, n_texts), got shape {sim.shape}")
    n_images, n_texts = sim.shape
    owner = np.asarray(text_to_image, dtype=np.int64)
    if owner.shape != (n_texts,):
        raise ValueError(f"text_to_image has {owner.size} entries for {n_texts} texts")
    if n_texts and (owner.min() < 0 or owner.max() >= n_images):
        raise ValueError(f"text_to_image holds indices outside 0..{n_images - 1}")
    counts = np.bincount(owner, minlength=n_images)
    if (counts == 0).any():
        raise ValueError(f"image(s) {np.flatnonzero(counts == 0)[:5].tolist()} have no text")
    if any(k < 1 for k in ks):
        raise ValueError("every K must be >= 1")

    # Rank of a ground truth = 1 + wrong candidates scoring at least as high (pessimistic ties).
    # Done in blocks of rows so COCO-size matrices (5k x 25k) need little extra memory.
    i2t_rank = np.empty(n_images, dtype=np.int64)
    t2i_rank = np.ones(n_texts, dtype=np.int64)
    own_score = sim[owner, np.arange(n_texts)]  # (n_texts,) score of each text with its image
    for lo in range(0, n_images, _BLOCK):
        rows = sim[lo : lo + _BLOCK]  # (b, n_texts)
        is_own = owner[None, :] == np.arange(lo, lo + len(rows))[:, None]  # (b, n_texts)
        best_own = np.where(is_own, rows, -np.inf).max(axis=1, keepdims=True)  # (b, 1)
        i2t_rank[lo : lo + len(rows)] = 1 + ((rows >= best_own) & ~is_own).sum(axis=1)
        t2i_rank += ((rows >= own_score[None, :]) & ~is_own).sum(axis=0)

    out: dict[str, float] = {}
    for k in ks:
        out[f"i2t_R@{k}"] = float((i2t_rank <= k).mean())
    for k in ks:
        out[f"t2i_R@{k}"] = float((t2i_rank <= k).mean())
    out["rsum"] = float(sum(out.values()))
    out["mean_recall"] = out["rsum"] / (2 * len(ks))
    out["i2t_median_rank"] = float(np.median(i2t_rank))
    out["t2i_median_rank"] = float(np.median(t2i_rank))
    return out


def _to_numpy(x: Any) -> Any:
    # torch tensors (possibly on GPU, possibly requiring grad) without importing torch here.
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        return x.detach().cpu().float().numpy()
    return x
