"""The pre-training objectives beyond LM: image-text contrastive (ITC) and image-text matching
(ITM) with hard negatives, as BLIP trains them (Li et al. 2022, sec. 3.2; LAVIS' blip_retrieval).

A family that can train them (`MultiObjective`) names its parts in `objective_parts()`;
`trainee` wraps the model in a module whose `forward(**inputs).loss` is the sum of the chosen
objectives, which is all the training loop calls. Families without parts train their own loss
(LM; CLIP's contrastive loss comes from `CLIPModel` itself).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

OBJECTIVES = ("lm", "itc", "itm", "itg")


@dataclass
class ObjectiveParts:
    """What ITC / ITM / ITG need from a model, and the LM loss when it also captions.

    image: pixel_values -> (B, P, D) image states, computed once per step for every objective.
    image_features: image states -> L2-normalised ITC features, (B, E) for one vector per image
        (BLIP's projected [CLS]) or (B, Q, E) for one per query (BLIP-2: the best query scores).
    text_features: (ids, mask) -> (B, E) L2-normalised ITC features of the text alone.
    match_logits: (ids, mask, image states) -> (N, 2) ITM logits [no match, match].
    lm: (image states, inputs) -> LM loss, for captioning models.
    itg: (image states, ids, mask) -> image-grounded text generation loss (BLIP-2 stage 1).
    heads: trainable modules that belong to no checkpoint (new projections, ITM head); they are
        kept in the trainer state so that --resume continues them.
    pixel_values, tokenize: images -> pixel values, texts -> (ids, mask) for `text_features`,
        where validation scores retrieval with these features (a model without `embed`).
    """

    image: Callable[[torch.Tensor], torch.Tensor]
    image_features: Callable[[torch.Tensor], torch.Tensor]
    text_features: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    match_logits: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
    temperature: float  # ITC softmax temperature
    lm: Callable[[torch.Tensor, dict[str, torch.Tensor]], torch.Tensor] | None = None
    itg: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    heads: dict[str, nn.Module] = field(default_factory=dict)
    pixel_values: Callable[[list[Any]], torch.Tensor] | None = None
    tokenize: Callable[[list[str]], tuple[torch.Tensor, ...]] | None = None


def similarity(image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
    """(I, T) cosine similarity; with one feature per query (I, Q, E) the best query counts
    (BLIP-2's ITC)."""
    if image_features.dim() == 3:
        return torch.einsum("iqe,te->itq", image_features, text_features).amax(-1)
    return image_features @ text_features.T


def default_objectives(family: Any, task: str, stage: int | None = None) -> tuple[str, ...]:
    """What a run trains when --objectives is not given: the stage's objectives (BLIP-2);
    LM for captions and VQA; every retrieval objective the family has for retrieval."""
    if family.stages:
        return family.stages.get(stage or max(family.stages), ())
    if task == "retrieval":
        return tuple(o for o in family.objectives if o != "lm")
    return ("lm",)


def check_objectives(
    family: Any, task: str, objectives: Sequence[str], stage: int | None = None
) -> tuple[str, ...]:
    """The objectives, validated against the family, the task and the stage (clear errors
    otherwise)."""
    if family.stages and (stage or max(family.stages)) not in family.stages:
        raise ValueError(f"{family.key} models train in stages {sorted(family.stages)}")
    have = family.objectives
    chosen = tuple(dict.fromkeys(o.strip().lower() for o in objectives if o.strip()))
    unknown = [o for o in chosen if o not in OBJECTIVES]
    if unknown:
        raise ValueError(f"unknown objective(s) {unknown}; choose from {', '.join(OBJECTIVES)}")
    if not chosen:
        raise ValueError("no objective given")
    missing = [o for o in chosen if o not in have]
    if missing:
        raise ValueError(
            f"{family.key} models cannot train {', '.join(missing)} (they train {', '.join(have)})"
        )
    if family.stages:  # a staged recipe (BLIP-2): each stage trains its own objectives
        stage = stage or max(family.stages)
        if "lm" not in family.stages[stage] and task != "caption":
            raise ValueError(f"--stage {stage} trains on image-text pairs: use --task caption")
        off = [o for o in chosen if o not in family.stages[stage]]
        if off:
            raise ValueError(
                f"stage {stage} trains {', '.join(family.stages[stage])}, not {', '.join(off)}"
            )
        return chosen
    if stage is not None:
        raise ValueError(f"--stage is BLIP-2's two-stage recipe; {family.key} models have one")
    if task == "retrieval" and "lm" in chosen:
        raise ValueError("--task retrieval trains itc/itm; add lm with --task caption")
    if task != "retrieval" and "lm" not in chosen:
        raise ValueError(f"--task {task} needs the lm objective (itc/itm alone: --task retrieval)")
    if task == "vqa" and chosen != ("lm",):
        raise ValueError("--task vqa trains the lm objective only")
    return chosen


class _Objectives(nn.Module):
    """`net` plus the heads the objectives need; forward = the summed loss, each part logged."""

    def __init__(self, net: nn.Module, parts: ObjectiveParts, objectives: tuple[str, ...]):
        super().__init__()
        self.net = net
        self.heads = nn.ModuleDict(parts.heads)
        self.parts = parts
        self.objectives = objectives

    def forward(self, **inputs: torch.Tensor) -> Any:
        p = self.parts
        image = p.image(inputs["pixel_values"])  # (B, P, D), once for every objective
        losses: dict[str, torch.Tensor] = {}
        if "itc" in self.objectives or "itm" in self.objectives:
            ids, mask = inputs["text_input_ids"], inputs["text_attention_mask"]
            itc, sim_i2t = itc_loss(p, image, ids, mask)  # ITM mines its negatives from ITC
            if "itc" in self.objectives:
                losses["itc"] = itc
            if "itm" in self.objectives:
                losses["itm"] = itm_loss(p, image, ids, mask, sim_i2t)
        if "itg" in self.objectives:
            if p.itg is None:
                raise ValueError("this model has no image-grounded text generation head")
            losses["itg"] = p.itg(image, inputs["text_input_ids"], inputs["text_attention_mask"])
        if "lm" in self.objectives:
            if p.lm is None:
                raise ValueError("this model has no language-modelling head")
            losses["lm"] = p.lm(image, inputs)
        loss = torch.stack(list(losses.values())).sum()
        return SimpleNamespace(loss=loss, losses={k: v.detach() for k, v in losses.items()})


@torch.no_grad()
def parts_similarity(
    parts: ObjectiveParts, images: list[Any], texts: list[str], device: Any, batch_size: int = 64
) -> torch.Tensor:
    """(I, T) ITC similarity of images and texts through the features being trained."""
    if parts.pixel_values is None or parts.tokenize is None:
        raise ValueError("these objective parts cannot encode images and texts on their own")
    feats, txts = [], []
    for i in range(0, len(images), batch_size):
        pv = parts.pixel_values(images[i : i + batch_size]).to(device)
        feats.append(parts.image_features(parts.image(pv)))
    for i in range(0, len(texts), batch_size):
        ids, mask = (t.to(device) for t in parts.tokenize(texts[i : i + batch_size]))
        txts.append(parts.text_features(ids, mask))
    return similarity(torch.cat(feats), torch.cat(txts)).float().cpu()


def trainee(family: Any, net: nn.Module, objectives: tuple[str, ...]) -> nn.Module:
    """The module the loop trains: `net` itself for LM (and CLIP), else `net` + objective heads."""
    from im2text.families import MultiObjective

    if objectives == ("lm",) or not isinstance(family, MultiObjective):
        return net
    return _Objectives(net, family.objective_parts(), objectives)


def same_text_matrix(ids: torch.Tensor) -> torch.Tensor:
    """(B, B) True where two rows hold the same caption: neither positive nor negative for the
    other's image (shape captions, COCO's near-duplicates)."""
    return (ids[:, None, :] == ids[None, :, :]).all(-1)


def itc_loss(
    p: ObjectiveParts,
    image: torch.Tensor,
    ids: torch.Tensor,
    mask: torch.Tensor,
    same: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric InfoNCE over the batch; rows with the same caption share the positive mass.
    Returns the loss and the (B, B) image->text similarity (for mining ITM negatives)."""
    sim_i2t = similarity(p.image_features(image), p.text_features(ids, mask)) / p.temperature
    same = same_text_matrix(ids) if same is None else same
    targets = same.float() / same.float().sum(1, keepdim=True)  # symmetric, rows sum to 1
    loss_i2t = -(sim_i2t.log_softmax(1) * targets).sum(1).mean()
    loss_t2i = -(sim_i2t.T.log_softmax(1) * targets).sum(1).mean()
    return (loss_i2t + loss_t2i) / 2, sim_i2t.detach()


def itm_loss(
    p: ObjectiveParts,
    image: torch.Tensor,
    ids: torch.Tensor,
    mask: torch.Tensor,
    sim_i2t: torch.Tensor,
    same: torch.Tensor | None = None,
) -> torch.Tensor:
    """Binary match / no-match on B positives and 2B hard negatives: for each image a text, for
    each text an image, drawn in proportion to their ITC similarity (the confusable ones), never
    a pair with the same caption."""
    b = ids.shape[0]
    same = same_text_matrix(ids) if same is None else same
    if bool(same.all()):  # every caption equal: no negative exists in this batch
        return image.sum() * 0.0
    neg_text, neg_image = hard_negatives(sim_i2t, same)
    images = torch.cat([image, image, image[neg_image]])  # (3B, P, D)
    texts = torch.cat([ids, ids[neg_text], ids])
    masks = torch.cat([mask, mask[neg_text], mask])
    logits = p.match_logits(texts, masks, images).float()  # (3B, 2): [no match, match]
    labels = torch.cat([torch.ones(b), torch.zeros(2 * b)]).long().to(logits.device)
    return F.cross_entropy(logits, labels)


def hard_negatives(sim_i2t: torch.Tensor, same: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each image a text and for each text an image, drawn with probability softmax(ITC
    similarity) over the batch, never one with the same caption. Returns (B,) indices each."""
    # `same` is an equivalence, so unless every caption is equal each row has another caption;
    # the tiny floor keeps a row samplable when its softmax underflows.
    floor = 1e-12 * (~same).float()
    weights_i2t = sim_i2t.float().softmax(1).masked_fill(same, 0.0) + floor  # (B, B)
    weights_t2i = sim_i2t.T.float().softmax(1).masked_fill(same, 0.0) + floor
    return torch.multinomial(weights_i2t, 1)[:, 0], torch.multinomial(weights_t2i, 1)[:, 0]
