"""BLIP (Salesforce): ViT image encoder + BERT-style text encoder/decoder. Three heads:
captioning, VQA and image-text matching (ITM + ITC), each a family class here.

Quirks kept here: the decoder starts from [DEC] (bos) and stops at [SEP]; captioning `generate`
swaps the tokenizer's leading [CLS] for [DEC] and drops the prompt's last token, which it expects
to be the [SEP] the processor appends — so prompts go through the processor with special tokens,
and one batch shares one prompt (right padding would put [SEP] elsewhere). VQA encodes the
question with the image, then decodes the answer from [DEC]. ITM scores a pair with a 2-way head;
ITC compares projected [CLS] embeddings. transformers' BLIP text decoder ignores the
cross-attention padding mask and has no SDPA path; `fast_attention` fixes both on every BLIP.
"""

from __future__ import annotations

import math
import types
from typing import TYPE_CHECKING, Any

import torch

from im2text.engine.graphs import GraphPart
from im2text.families.base import DualEncoder, Family, GenerativeFamily, MatchScores

if TYPE_CHECKING:
    from PIL import Image


def _sdpa(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, scale: float
) -> torch.Tensor:
    """(B, H, Tq, Dh) attention; `mask` is additive (or boolean) or None.

    Long queries (the ViT, teacher forcing) go through torch's fused kernel; a decoding step's
    few queries through two small matmuls, which the fused CPU kernel is 5x slower at.
    """
    if mask is not None and mask.dtype != torch.bool:
        mask = mask.to(q.dtype)
    if q.shape[-2] > 4:
        return torch.nn.functional.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, scale=scale
        )
    scores = (q @ k.transpose(-1, -2)) * scale  # (B, H, Tq, Tk)
    if mask is not None:
        scores = (
            scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
            if mask.dtype == torch.bool
            else scores + mask
        )
    return scores.softmax(-1) @ v


def fast_attention(model: torch.nn.Module) -> None:
    """Run every BLIP attention of `model` through SDPA at inference, honouring padding masks.

    transformers 5 has no SDPA path for BLIP (`attn_implementation="sdpa"` is refused), so its
    ViT spends a quarter of its time in unfused matmul + scale + softmax + matmul; SDPA computes
    the same function (max abs difference ~3e-6 on BLIP-base) 1.27x faster on the encoder. In
    training mode (dropout on the probabilities) the original forwards run unchanged.

    The text side also fixes a transformers 5 bug: `BlipTextAttention` hands the cross-attention
    mask to its self-attention as `attention_mask`, which the self-attention then replaces with
    its (absent) `encoder_attention_mask`: the mask is dropped and the answer decoder attends to
    the question's padding, so batched VQA answers (and VQA training) depended on how long the
    other questions in the batch were. The mask is routed where it belongs, in both modes.
    """
    from transformers.models.blip.modeling_blip import BlipAttention
    from transformers.models.blip.modeling_blip_text import BlipTextSelfAttention

    for module in model.modules():
        if getattr(module, "_im2text", False):
            continue
        forward: Any
        if isinstance(module, BlipTextSelfAttention):
            forward = _text_forward
        elif isinstance(module, BlipAttention):
            forward = _vision_forward
        else:
            continue
        # Bound to the module (not a closure over it), so copy.deepcopy gives a working copy.
        module.forward = types.MethodType(forward, module)  # type: ignore[method-assign]
        module._im2text = True  # type: ignore[assignment]


def _distinct_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(first index of each run, run of each row) when consecutive rows of `x` repeat, else None.

    generate repeats each image's states `num_beams * num_return_sequences` times in a row;
    comparing neighbours finds that in one pass over the states (cheap next to the projection).
    """
    if x.shape[0] < 2:
        return None
    same = (x[1:] == x[:-1]).flatten(1).all(1)  # (B-1,) row i+1 repeats row i
    if not bool(same.any()):
        return None
    starts = torch.cat([same.new_ones(1), ~same])  # (B,) a run begins here
    return starts.nonzero()[:, 0], starts.long().cumsum(0) - 1


def _vision_forward(self: Any, hidden_states: torch.Tensor, **kwargs: Any) -> Any:
    if self.training:
        return type(self).forward(self, hidden_states, **kwargs)
    b, t, d = hidden_states.shape  # (B, T, D)
    qkv = self.qkv(hidden_states).view(b, t, 3, self.num_heads, self.head_dim)
    q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, H, T, Dh)
    ctx = _sdpa(q, k, v, None, self.scale)
    return self.projection(ctx.transpose(1, 2).reshape(b, t, d)), None


def _text_forward(
    self: Any,
    hidden_states: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    encoder_hidden_states: torch.Tensor | None = None,
    encoder_attention_mask: torch.Tensor | None = None,
    cache: Any = None,
    **kwargs: Any,
) -> Any:
    from transformers.cache_utils import EncoderDecoderCache

    cross = encoder_hidden_states is not None
    if cross and encoder_attention_mask is None:
        encoder_attention_mask = attention_mask
    cache = kwargs.pop("past_key_values", cache)
    if self.training:
        return type(self).forward(
            self,
            hidden_states,
            attention_mask=attention_mask,
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask,
            cache=cache,
            **kwargs,
        )
    # The same cache protocol as the original: cross keys/values once per image.
    dh = self.attention_head_size
    q = self.query(hidden_states).view(*hidden_states.shape[:-1], -1, dh).transpose(1, 2)
    mask = encoder_attention_mask if cross else attention_mask
    layers: Any = None
    updated = False
    if cache is not None:
        layers = cache
        if isinstance(cache, EncoderDecoderCache):
            updated = bool(cache.is_updated.get(self.layer_idx))
            layers = cache.cross_attention_cache if cross else cache.self_attention_cache
    if cross and isinstance(cache, EncoderDecoderCache):
        assert encoder_hidden_states is not None
        shared = _shared_source(cache, self, encoder_hidden_states, q.shape[-2])
        if shared is not None:
            ctx = _absorbed_cross(self, q, shared, mask, dh)
            return ctx.transpose(1, 2).reshape(*hidden_states.shape[:-1], -1), None
    if cross and updated:
        k = layers.layers[self.layer_idx].keys
        v = layers.layers[self.layer_idx].values
    else:
        source = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        rows = _distinct_rows(source) if cross else None
        if rows is not None:  # beams / return sequences repeat each image: project it once
            source = source[rows[0]]
        shape = (*source.shape[:-1], -1, dh)
        k = self.key(source).view(shape).transpose(1, 2)
        v = self.value(source).view(shape).transpose(1, 2)
        if rows is not None:
            k, v = k[rows[1]], v[rows[1]]
        if layers is not None:
            k, v = layers.update(k, v, self.layer_idx, kwargs=kwargs)
            if cross and isinstance(cache, EncoderDecoderCache):
                cache.is_updated[self.layer_idx] = True
    ctx = _sdpa(q, k, v, mask, dh**-0.5)  # (B, H, T, Dh)
    return ctx.transpose(1, 2).reshape(*hidden_states.shape[:-1], -1), None


# Decoding steps on the CPU attend to the image through its states, not per-layer keys/values
# (see _absorbed_cross); a first query longer than this projects keys/values as usual.
ABSORB_MAX_QUERY = 32


def _shared_source(cache: Any, attn: Any, source: torch.Tensor, query_len: int) -> Any:
    """The encoder states every layer's cross-attention reads in a cached generation, once
    per image: (distinct rows (U, T, D), rows per image k), decided at the first call and kept
    on the cache; None where the usual keys/values path runs (GPU, int8 projections, long
    first queries, rows that are not k consecutive copies of each image)."""
    key = (source.data_ptr(), tuple(source.shape))  # a cache reused for other inputs: decide anew
    kept = getattr(cache, "im2text_shared", None)
    if kept is not None and kept[0] == key:
        return kept[1]
    shared = None
    plain = type(attn.key) is type(attn.value) is torch.nn.Linear
    if source.device.type == "cpu" and plain and query_len <= ABSORB_MAX_QUERY:
        rows = _distinct_rows(source)
        if rows is None:
            shared = (source, 1)
        elif source.shape[0] % len(rows[0]) == 0:
            k = source.shape[0] // len(rows[0])
            if torch.equal(rows[1], torch.arange(len(rows[0])).repeat_interleave(k)):
                shared = (source[rows[0]], k)
    cache.im2text_shared = (key, shared)
    return shared


def _absorbed_cross(
    attn: Any, q: torch.Tensor, shared: tuple[torch.Tensor, int], mask: Any, dh: int
) -> torch.Tensor:
    """Cross-attention of a few decoding queries, (B, H, Lq, Dh), straight from the image
    states S: scores = (q W_k) S^T (q . b_k is the same for every key, so softmax drops it) and
    context = (p S) W_v + b_v (p sums to 1). Equal to attending over S W_k + b_k and S W_v + b_v
    (to float rounding), but each step reads S (D floats a token, shared by all layers) instead
    of each layer's cached keys and values (2 x D a token a layer): a CPU decoding step is
    bound by the bytes it reads, and the first step skips projecting the image 24 times."""
    states, k = shared  # (U, T, D), each image's row repeated k times in q's batch
    b, h, lq, _ = q.shape
    u, t, d = states.shape
    w_k = attn.key.weight.view(h, dh, d)
    w_v = attn.value.weight.view(h, dh, d)
    qk = torch.einsum("bhld,hde->bhle", q, w_k).reshape(u, k * h * lq, d)
    scores = (qk @ states.transpose(1, 2)).view(b, h, lq, t) * dh**-0.5
    if mask is not None:
        scores = (
            scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
            if mask.dtype == torch.bool
            else scores + mask.to(scores.dtype)
        )
    mixed = (scores.softmax(-1).view(u, k * h * lq, t) @ states).view(b, h, lq, d)
    return torch.einsum("bhle,hde->bhld", mixed, w_v) + attn.value.bias.view(h, 1, dh)


def _text_inputs(family: Any, texts: list[str]) -> dict[str, torch.Tensor]:
    """[CLS] text [SEP], as `match` / `embed` encode it (keys the objectives read)."""
    limit = family.model.config.text_config.max_position_embeddings
    enc = family.tokenizer(
        texts, padding=True, truncation=True, max_length=limit, return_tensors="pt"
    )
    return {"text_input_ids": enc.input_ids, "text_attention_mask": enc.attention_mask}


def _encode_text(
    bert: Any, ids: torch.Tensor, mask: torch.Tensor, image: torch.Tensor | None
) -> torch.Tensor:
    """(B, T, H) bidirectional text states; attending to `image` (B, P, D) when given."""
    if image is None:
        return bert(input_ids=ids, attention_mask=mask)[0]
    ones = torch.ones(image.shape[:-1], dtype=torch.long, device=image.device)
    return bert(
        input_ids=ids,
        attention_mask=mask,
        encoder_hidden_states=image,
        encoder_attention_mask=ones,
    )[0]


def _blip_parts(
    vision: Any,
    bert: Any,
    vision_proj: Any,
    text_proj: Any,
    itm_head: Any,
    temperature: float,
    **extra: Any,
) -> Any:
    """ITC on the projected [CLS] of each side; ITM on the image-grounded text's [CLS]."""
    import torch.nn.functional as F

    from im2text.train.objectives import ObjectiveParts

    def text_features(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return F.normalize(text_proj(_encode_text(bert, ids, mask, None)[:, 0]), dim=-1)

    return ObjectiveParts(
        image=lambda pv: vision(pixel_values=pv)[0],
        image_features=lambda image: F.normalize(vision_proj(image[:, 0]), dim=-1),
        text_features=text_features,
        match_logits=lambda ids, mask, image: itm_head(_encode_text(bert, ids, mask, image)[:, 0]),
        temperature=temperature,
        **extra,
    )


class _BlipLoad(Family):
    """Shared loading for the BLIP heads: SDPA attention and the cross-attention mask fix."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        fast_attention(self.model)


class Blip(_BlipLoad, GenerativeFamily):
    key = "blip"
    model_types = ("blip",)
    architectures = ("BlipForConditionalGeneration",)
    model_class = "BlipForConditionalGeneration"
    vision_tower = "vision_model"
    graph_parts = (GraphPart("vision_model"),)
    objectives = ("lm", "itc", "itm")  # BLIP's pre-training mix (`--objectives itc,itm,lm`)

    def prepare(
        self, images: list[Image.Image], prompts: list[str | None]
    ) -> dict[str, torch.Tensor]:
        if len(set(prompts)) > 1:
            raise ValueError("BLIP captioning needs one prompt for the whole batch")
        if not prompts or not prompts[0]:
            return dict(self.processor(images=images, return_tensors="pt"))
        return dict(self.processor(images=images, text=list(prompts), return_tensors="pt"))

    def eos_token_ids(self) -> set[int]:
        return {int(self.model.config.text_config.sep_token_id)}

    def training_inputs(
        self, images: list[Image.Image], prompts: list[str | None], targets: list[str]
    ) -> dict[str, torch.Tensor]:
        """Teacher-forcing inputs: [DEC] prompt target [SEP]; loss on the target only."""
        texts = [f"{p} {t}" if p else t for p, t in zip(prompts, targets, strict=True)]
        enc = self.processor(images=images, text=texts, padding=True, return_tensors="pt")
        ids = enc["input_ids"].clone()
        ids[:, 0] = self.model.config.text_config.bos_token_id
        labels = ids.masked_fill(enc["attention_mask"] == 0, -100)
        for i, p in enumerate(prompts):
            if p:  # the prompt is given, not predicted (BLIP's own fine-tuning recipe)
                n = len(self.tokenizer(p, add_special_tokens=False).input_ids)
                labels[i, : n + 1] = -100
        out = {
            "pixel_values": enc["pixel_values"],
            "input_ids": ids,
            "attention_mask": enc["attention_mask"],
            "labels": labels,
        }
        if {"itc", "itm"} & set(self.training_objectives):
            out.update(_text_inputs(self, targets))  # ITC / ITM see the caption alone
        return out

    def objective_parts(self) -> Any:
        """ITC / ITM on a captioning checkpoint: its decoder's transformer doubles as the text
        encoder (bidirectional; cross-attention only for ITM). BLIP pre-training shares every
        weight but self-attention between the two; here self-attention is shared too, since a
        captioning checkpoint has no encoder. The projections and the ITM head are new, trained
        beside the LM loss and not part of the saved captioner."""
        from torch import nn

        net, cfg = self.model, self.model.config
        dim = cfg.image_text_hidden_size
        bert = net.text_decoder.bert
        heads: dict[str, nn.Module] = {
            "vision_proj": nn.Linear(cfg.vision_config.hidden_size, dim),
            "text_proj": nn.Linear(cfg.text_config.hidden_size, dim),
            "itm_head": nn.Linear(cfg.text_config.hidden_size, 2),
        }
        heads = {k: v.to(self.device) for k, v in heads.items()}

        def lm(image: torch.Tensor, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
            return net.text_decoder(
                input_ids=inputs["input_ids"],
                attention_mask=inputs["attention_mask"],
                encoder_hidden_states=image,
                labels=inputs["labels"],
                reduction="mean",
            ).loss

        return _blip_parts(net.vision_model, bert, heads["vision_proj"], heads["text_proj"],
                           heads["itm_head"], math.exp(-cfg.logit_scale_init_value), lm=lm,
                           heads=heads)  # fmt: skip


class BlipVqa(_BlipLoad, GenerativeFamily):
    key = "blip-vqa"
    model_types = ("blip",)
    architectures = ("BlipForQuestionAnswering",)
    model_class = "BlipForQuestionAnswering"
    vision_tower = "vision_model"
    graph_parts = (GraphPart("vision_model"),)
    tasks = ("ask",)

    def prepare(
        self, images: list[Image.Image], prompts: list[str | None]
    ) -> dict[str, torch.Tensor]:
        text = [p or "" for p in prompts]
        return dict(self.processor(images=images, text=text, padding=True, return_tensors="pt"))

    def eos_token_ids(self) -> set[int]:
        return {int(self.model.config.text_config.sep_token_id)}

    def _encode_question(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        m = self.model
        image_embeds = inputs.get("image_embeds")  # (B, P, D), when already computed
        if image_embeds is None:
            image_embeds = m.vision_model(pixel_values=inputs["pixel_values"])[0]
        image_mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=self.device)
        return m.text_encoder(
            input_ids=inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            encoder_hidden_states=image_embeds,
            encoder_attention_mask=image_mask,
        )[0]  # (B, Tq, D)

    # transformers' BlipForQuestionAnswering.generate gives the answer decoder an all-ones mask
    # over the question (padding included); this passes the real one (honoured thanks to
    # fast_attention), so batched answers equal one-at-a-time answers.
    def _generate(self, inputs: dict[str, torch.Tensor], **kwargs: Any) -> Any:
        question = self._encode_question(inputs)
        start = torch.full(
            (question.shape[0], 1), self.model.config.text_config.bos_token_id, device=self.device
        )
        return self.model.text_decoder.generate(
            input_ids=start,
            eos_token_id=self.model.config.text_config.sep_token_id,
            pad_token_id=self.model.config.text_config.pad_token_id,
            encoder_hidden_states=question,
            encoder_attention_mask=inputs["attention_mask"],
            **kwargs,
        )

    def training_inputs(
        self, images: list[Image.Image], prompts: list[str | None], targets: list[str]
    ) -> dict[str, torch.Tensor]:
        """Question into the encoder; [DEC] answer [SEP] into the answer decoder."""
        q = self.prepare(images, prompts)
        a = self.tokenizer(targets, padding=True, return_tensors="pt")
        ids = a.input_ids.clone()
        ids[:, 0] = self.model.config.text_config.bos_token_id
        return {
            **q,
            "decoder_input_ids": ids,
            "decoder_attention_mask": a.attention_mask,
            "labels": ids.masked_fill(a.attention_mask == 0, -100),
        }

    @torch.inference_mode()
    def rank(self, inputs: dict[str, torch.Tensor], answers: list[str]) -> torch.Tensor:
        """Log-probability (B, K) of each candidate answer for each (image, question) row."""
        inputs = {k: self._to_device(v) for k, v in inputs.items()}
        m = self.model
        question = self._encode_question(inputs)
        enc = self.tokenizer(answers, padding=True, return_tensors="pt").to(self.device)
        ids = enc.input_ids.clone()
        ids[:, 0] = m.config.text_config.bos_token_id  # the answer decoder starts from [DEC]
        k = len(answers)
        out = torch.empty(question.shape[0], k, device=self.device)
        for b in range(question.shape[0]):
            n = int(inputs["attention_mask"][b].sum())  # this row's question, without padding
            logits = m.text_decoder(
                input_ids=ids,
                attention_mask=enc.attention_mask,
                encoder_hidden_states=question[b : b + 1, :n].expand(k, -1, -1),
                encoder_attention_mask=inputs["attention_mask"][b : b + 1, :n].expand(k, -1),
            ).logits  # (K, Ta, V)
            logp = logits[:, :-1].float().log_softmax(-1)
            target = ids[:, 1:]
            tok = logp.gather(-1, target[..., None])[..., 0] * enc.attention_mask[:, 1:]
            out[b] = tok.sum(-1)
        return out.cpu()


class BlipItm(_BlipLoad, DualEncoder):
    key = "blip-itm"
    model_types = ("blip",)
    architectures = ("BlipForImageTextRetrieval",)
    model_class = "BlipForImageTextRetrieval"
    vision_tower = "vision_model"
    graph_parts = (GraphPart("vision_model"),)
    objectives = ("itc", "itm")  # `--task retrieval`: ITC + ITM with hard negatives

    def training_inputs(
        self, images: list[Image.Image], prompts: list[str | None], targets: list[str]
    ) -> dict[str, torch.Tensor]:
        return {**self.prepare_images(images), **_text_inputs(self, targets)}

    def prepare_for_training(self) -> None:
        for p in self.model.parameters():
            p.requires_grad_(True)

    def objective_parts(self) -> Any:
        """The checkpoint's own encoders, projections and ITM head; the ITC temperature is the
        config's (transformers checkpoints do not store BLIP's learned one), which is also the
        one `match` scores with."""
        net = self.model
        return _blip_parts(net.vision_model, net.text_encoder, net.vision_proj, net.text_proj,
                           net.itm_head, 1 / self.logit_scale)  # fmt: skip

    def prepare_images(self, images: list[Image.Image]) -> dict[str, torch.Tensor]:
        return dict(self.processor(images=images, return_tensors="pt"))

    @property
    def logit_scale(self) -> float:
        # ITC temperature 0.07 at init in BLIP, i.e. exp(2.6592): the config's logit scale.
        return math.exp(self.model.config.logit_scale_init_value)

    @torch.inference_mode()
    def embed_images(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        pv = self._to_device(inputs["pixel_values"])
        cls = self.model.vision_model(pixel_values=pv)[0][:, 0]
        return torch.nn.functional.normalize(self.model.vision_proj(cls).float(), dim=-1).cpu()

    @torch.inference_mode()
    def _embed_text_batch(self, texts: list[str]) -> torch.Tensor:
        enc = {k: self._to_device(v) for k, v in _text_inputs(self, texts).items()}
        hidden = _encode_text(
            self.model.text_encoder, enc["text_input_ids"], enc["text_attention_mask"], None
        )
        cls = hidden[:, 0]
        return torch.nn.functional.normalize(self.model.text_proj(cls).float(), dim=-1).cpu()

    @torch.inference_mode()
    def pair_probability(self, inputs: dict[str, torch.Tensor], texts: list[str]) -> torch.Tensor:
        """ITM head: probability (B, T) that each text matches each image."""
        pv = self._to_device(inputs["pixel_values"])
        image_embeds = self.model.vision_model(pixel_values=pv)[0]  # (B, P, D), once per image
        out = torch.empty(pv.shape[0], len(texts))
        step = self.text_batch_size  # texts per forward pass: many texts stay in bounded memory
        for start in range(0, len(texts), step):
            enc = _text_inputs(self, texts[start : start + step])
            ids, mask = (self._to_device(enc[k]) for k in ("text_input_ids", "text_attention_mask"))
            n = ids.shape[0]
            for b in range(pv.shape[0]):
                image = image_embeds[b : b + 1].expand(n, -1, -1)
                hidden = _encode_text(self.model.text_encoder, ids, mask, image)
                logits = self.model.itm_head(hidden[:, 0]).float()  # (n, 2): [no match, match]
                out[b, start : start + n] = logits.softmax(-1)[:, 1].cpu()
        return out

    def match(
        self, inputs: dict[str, torch.Tensor], texts: list[str], text_emb: torch.Tensor
    ) -> list[MatchScores]:
        out = super().match(inputs, texts, text_emb)
        for row, itm in zip(out, self.pair_probability(inputs, texts), strict=True):
            row["itm"] = itm.tolist()
        return out
