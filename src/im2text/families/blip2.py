"""BLIP-2: frozen ViT-g + Q-Former + frozen LLM (OPT decoder-only, or Flan-T5 encoder-decoder).

Quirks kept here: the processor must know `num_query_tokens`, else it inserts no image tokens and
the LLM never sees the image (silently); the image-token placeholders come first, before BOS.
Decoder-only LMs return prompt + answer; encoder-decoder LMs return only the answer — either way
the generated part is the tail, which the shared scorer takes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from im2text.engine.graphs import GraphPart
from im2text.families.base import GenerativeFamily

if TYPE_CHECKING:
    from PIL import Image

# Beside the checkpoint (written by `im2text compose --blip2` and by stage-1 training): the
# Q-Former's own text tokenizer, and the stage-1 modules a Blip2ForConditionalGeneration has no
# place for, under the names transformers' Blip2ForImageTextRetrieval gives them (+ the ITG head).
QFORMER_TOKENIZER = "qformer_tokenizer"
QFORMER_HEADS = "qformer_heads.safetensors"
ITC_TEMPERATURE = 0.07  # BLIP-2's initial ITC temperature


class QFormerHeads(nn.Module):
    """What stage 1 trains beside the Q-Former: its text embeddings, the ITC projections, the
    ITM head and the ITG head (BERT's LM head: transform, then the word embeddings tied as the
    output matrix, so the file holds no second copy of them)."""

    def __init__(self, qformer_config: Any, embed_dim: int = 256):
        from transformers.models.blip_2.modeling_blip_2 import Blip2TextEmbeddings

        super().__init__()
        h = qformer_config.hidden_size
        self.embeddings = Blip2TextEmbeddings(qformer_config)
        self.vision_projection = nn.Linear(h, embed_dim)
        self.text_projection = nn.Linear(h, embed_dim)
        self.itm_head = nn.Linear(h, 2)
        self.itg_transform = nn.Sequential(
            nn.Linear(h, h), nn.GELU(), nn.LayerNorm(h, eps=qformer_config.layer_norm_eps)
        )
        self.itg_bias = nn.Parameter(torch.zeros(qformer_config.vocab_size))
        for m in self.modules():  # BERT's initialisation
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, 0.0, qformer_config.initializer_range)
            if isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def save(self, directory: str | Path) -> None:
        """Write the heads beside a checkpoint in `directory` (`QFORMER_HEADS`)."""
        from safetensors.torch import save_file

        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, str(Path(directory) / QFORMER_HEADS))

    def itg_logits(self, states: torch.Tensor) -> torch.Tensor:
        """(B, T, H) text states -> (B, T, V) next-token logits."""
        return F.linear(self.itg_transform(states), self.embeddings.word_embeddings.weight,
                        self.itg_bias)  # fmt: skip


def qformer_mask(kind: str, num_queries: int, text_mask: torch.Tensor) -> torch.Tensor:
    """Self-attention mask over [queries; text] for the joint Q-Former passes, as BLIP-2 sec.
    3.2 has them: "itm" bi-directional (all see all); "itg" multimodal causal (queries see only
    queries, each text token every query and the text before it). Padding is never attended.
    Returns (B, 1, Q+T, Q+T), 0 where attended and the dtype's minimum elsewhere."""
    b, t = text_mask.shape
    q = num_queries
    keys = torch.cat([text_mask.new_ones(b, q), text_mask], 1).bool()  # (B, Q+T)
    seen = torch.ones(q + t, q + t, dtype=torch.bool, device=text_mask.device)
    if kind == "itg":
        seen[:q, q:] = False
        seen[q:, q:] = torch.tril(seen[q:, q:])
    elif kind != "itm":
        raise ValueError(f"unknown Q-Former mask {kind!r} (itm | itg)")
    allowed = seen[None] & keys[:, None, :]  # (B, Q+T, Q+T)
    return torch.zeros(allowed.shape, dtype=torch.float32, device=text_mask.device).masked_fill(
        ~allowed, torch.finfo(torch.float32).min
    )[:, None]


def _qformer_example(model: Any) -> dict[str, torch.Tensor]:
    """Q-Former inputs for a batch of 2 images: its queries and random image states."""
    v = model.config.vision_config
    n = (v.image_size // v.patch_size) ** 2 + 1  # patches + [CLS]
    gen = torch.Generator().manual_seed(0)
    return {
        "query_embeds": model.query_tokens.detach().float().expand(2, -1, -1).clone(),
        "encoder_hidden_states": torch.randn(2, n, v.hidden_size, generator=gen),
        "encoder_attention_mask": torch.ones(2, n, dtype=torch.long),
    }


class Blip2(GenerativeFamily):
    key = "blip2"
    model_types = ("blip-2",)
    architectures = ("Blip2ForConditionalGeneration",)
    model_class = "Blip2ForConditionalGeneration"
    tasks = ("caption", "ask")
    prompt_is_prefix = False  # prompts are instructions to the LLM ("Question: ... Answer:")
    # BLIP-2's two stages: 1 = the Q-Former against the frozen image encoder (ITC, ITM, ITG),
    # 2 = the Q-Former's queries as soft prompts of the frozen LLM (LM; the default).
    objectives: ClassVar[tuple[str, ...]] = ("lm", "itc", "itm", "itg")
    stages: ClassVar[dict[int, tuple[str, ...]]] = {1: ("itc", "itm", "itg"), 2: ("lm",)}

    @classmethod
    def from_pretrained(cls, source: str, **kwargs: Any) -> Any:
        family: Any = super().from_pretrained(source, **kwargs)
        family.source = source
        family.hub = {k: v for k, v in kwargs.items() if k not in ("device", "dtype")}
        return family

    @classmethod
    def load_processor(cls, source: str, **hub: Any) -> Any:
        processor = super().load_processor(source, **hub)
        if getattr(processor, "num_query_tokens", None) is None:
            # Older Hub processors lack it; without it the image would be ignored.
            from transformers import AutoConfig

            processor.num_query_tokens = AutoConfig.from_pretrained(source, **hub).num_query_tokens
        return processor

    vision_tower = "vision_model"
    # The ViT, then the Q-Former (its queries cross-attend to the image); the LLM stays in
    # torch (int8 linears with --int8).
    graph_parts: ClassVar[tuple[GraphPart, ...]] = (
        GraphPart("vision_model"),
        GraphPart(
            "qformer",
            inputs=("query_embeds", "encoder_hidden_states", "encoder_attention_mask"),
            example=lambda family: _qformer_example(family.model),
        ),
    )

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        # Decoder-only LMs continue each row's last token: pad on the left. Encoder-decoder LMs
        # (T5) pad on the right, so the image tokens stay next to the text (relative positions).
        decoder_only = not self.model.config.text_config.is_encoder_decoder
        self.tokenizer.padding_side = "left" if decoder_only else "right"
        self.source = ""  # where it was loaded from: the stage-1 files sit beside the weights
        self.hub: dict[str, Any] = {}  # revision / local_files_only, for those files too
        self._qformer_tokenizer: Any = None
        self.qformer_heads: QFormerHeads | None = None  # built by stage 1 (or loaded for it)

    def question_prompt(self, question: str) -> str:
        return f"Question: {question} Answer:"

    def prepare_for_training(self) -> None:
        """BLIP-2's recipe: the image encoder and the LLM stay frozen; the Q-Former and its
        query tokens learn, and in stage 2 the projection into the LLM too (with --lora, only
        the LLM's adapters). Stage 1 never runs the LLM side, so it stays as it is."""
        stage1 = self._stage1
        for name, p in self.model.named_parameters():
            frozen = name.startswith(("vision_model.", "language_model."))
            p.requires_grad_(not frozen and not (stage1 and name.startswith("language_")))

    # --- stage 1: the Q-Former's text branch ----------------------------------------------------

    @property
    def _stage1(self) -> bool:
        """The current training run is stage 1 (its objectives are the Q-Former's own)."""
        return bool(self.training_objectives) and "lm" not in self.training_objectives

    @property
    def qformer_tokenizer(self) -> Any:
        """The Q-Former's text tokenizer (BERT's, as compose writes it), from `qformer_tokenizer/`
        beside the weights; refused clearly where a checkpoint has none (Hub BLIP-2 models)."""
        if self._qformer_tokenizer is None:
            from transformers import AutoTokenizer

            try:
                self._qformer_tokenizer = AutoTokenizer.from_pretrained(
                    self.source, subfolder=QFORMER_TOKENIZER, **self.hub
                )
            except (OSError, ValueError) as e:
                raise ValueError(
                    f"stage 1 needs the Q-Former's text tokenizer in {QFORMER_TOKENIZER}/ beside "
                    f"the weights, which {self.source or 'this model'} lacks; build the model "
                    "with `im2text compose --blip2` (it writes one)"
                ) from e
        return self._qformer_tokenizer

    def _heads(self) -> QFormerHeads:
        """Stage-1 heads: the saved ones beside the weights, else new (BERT initialisation)."""
        if self.qformer_heads is None:
            heads = QFormerHeads(self.model.config.qformer_config,
                                 self.model.config.image_text_hidden_size)  # fmt: skip
            path = self._beside(QFORMER_HEADS)
            if path:
                from safetensors.torch import load_file

                heads.load_state_dict(load_file(path))
            self.qformer_heads = heads.to(self.device)
        return self.qformer_heads

    def qformer_text(self, texts: list[str]) -> tuple[torch.Tensor, ...]:
        """(ids, mask) of `[CLS] text [SEP]` for the Q-Former, cut to its positions (ITG swaps
        [CLS] for [DEC])."""
        tok = self.qformer_tokenizer
        room = self.model.config.qformer_config.max_position_embeddings - 2
        rows = [[tok.cls_token_id, *tok(t, add_special_tokens=False).input_ids[:room],
                 tok.sep_token_id] for t in texts]  # fmt: skip
        ids = torch.full((len(rows), max(map(len, rows))), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, row in enumerate(rows):
            ids[i, : len(row)], mask[i, : len(row)] = torch.tensor(row), 1
        return ids, mask

    def objective_parts(self) -> Any:
        """Stage 1 (BLIP-2 sec. 3.2) on this model's Q-Former and query tokens against its
        frozen image encoder: ITC between the query outputs (each query's projection; the best
        one scores) and the text's [CLS], the two encoded apart as in transformers'
        Blip2ForImageTextRetrieval; ITM from queries that also see the text (bi-directional
        mask), the query outputs' logits averaged; ITG, the text generated from the queries
        through the multimodal causal mask."""
        from im2text.train.objectives import ObjectiveParts

        net, heads = self.model, self._heads()
        q = net.config.num_query_tokens

        def image(pv: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():  # frozen: no graph through the ViT
                return net.vision_model(pixel_values=pv)[0]

        def qformer(image: torch.Tensor, embeds: torch.Tensor, mask: Any = None) -> Any:
            ones = torch.ones(image.shape[:-1], dtype=torch.long, device=image.device)
            out = net.qformer(query_embeds=embeds, query_length=q, attention_mask=mask,
                              encoder_hidden_states=image, encoder_attention_mask=ones)  # fmt: skip
            return out[0]

        def queries(n: int) -> torch.Tensor:
            return net.query_tokens.expand(n, -1, -1)

        def image_features(image: torch.Tensor) -> torch.Tensor:  # (B, Q, E)
            return F.normalize(heads.vision_projection(qformer(image, queries(len(image)))), dim=-1)

        def text_features(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # (B, E)
            states = net.qformer(query_embeds=heads.embeddings(input_ids=ids), query_length=0,
                                 attention_mask=mask)[0]  # fmt: skip
            return F.normalize(heads.text_projection(states[:, 0]), dim=-1)

        def match_logits(ids: torch.Tensor, mask: torch.Tensor, image: torch.Tensor) -> Any:
            embeds = heads.embeddings(input_ids=ids, query_embeds=queries(len(ids)))
            states = qformer(image, embeds, qformer_mask("itm", q, mask))
            return heads.itm_head(states[:, :q]).mean(1)  # (N, 2)

        dec = self.qformer_tokenizer.bos_token_id

        def itg(image: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            ids = ids.clone()
            ids[:, 0] = dec  # generation starts from [DEC], not [CLS] (BLIP-2)
            embeds = heads.embeddings(input_ids=ids, query_embeds=queries(len(ids)))
            states = qformer(image, embeds, qformer_mask("itg", q, mask))[:, q:]  # (B, T, H)
            logits = heads.itg_logits(states[:, :-1])  # each token predicts the next
            labels = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
            return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(),
                                   ignore_index=-100, label_smoothing=0.1)  # fmt: skip

        return ObjectiveParts(
            image=image,
            image_features=image_features,
            text_features=text_features,
            match_logits=match_logits,
            temperature=ITC_TEMPERATURE,
            itg=itg,
            heads={"qformer": heads},
            pixel_values=lambda images: self.processor(images=images, return_tensors="pt")[
                "pixel_values"
            ],
            tokenize=self.qformer_text,
        )

    def save_pretrained(self, directory: str) -> None:
        """The checkpoint, plus the Q-Former's tokenizer and stage-1 heads where it has them
        (so stage 2, or more of stage 1, continues from the same folder)."""
        super().save_pretrained(directory)
        if self.qformer_heads is not None or self._beside(QFORMER_HEADS):
            self._heads().save(directory)
        if self._qformer_tokenizer is not None or self._beside(
            f"{QFORMER_TOKENIZER}/tokenizer_config.json"
        ):
            self.qformer_tokenizer.save_pretrained(str(Path(directory) / QFORMER_TOKENIZER))

    def _beside(self, name: str) -> str | None:
        """The local path of file `name` beside the weights (downloaded if on the Hub), or None
        where the checkpoint has none."""
        if not self.source:
            return None
        from transformers.utils import cached_file

        return cached_file(self.source, name, **self.hub,
                           _raise_exceptions_for_missing_entries=False,
                           _raise_exceptions_for_connection_errors=False)  # fmt: skip

    def lora_targets(self) -> list[str]:
        """The LLM's attention projections (OPT: q_proj/v_proj; T5: q/v): LoRA adapts only the
        frozen LLM, never the Q-Former or the vision tower."""
        if self.model.config.text_config.is_encoder_decoder:
            return ["q", "v"]
        return ["q_proj", "v_proj"]  # the BLIP-2 paper's VQA template

    def lora_trained_in_full(self) -> list[str]:
        """Nothing: with --lora, the adapters alone learn (the Q-Former stays as it was)."""
        return []

    def prepare(
        self, images: list[Image.Image], prompts: list[str | None]
    ) -> dict[str, torch.Tensor]:
        """Prompted rows: the processor, as the model card has it. Rows without a prompt start
        as transformers' own `generate(**processor(images=...))` does: image tokens, then the
        config's BOS — never what the tokenizer makes of "" (nothing at all for a tokenizer
        that adds no BOS; `</s>` for T5)."""
        if all(prompts) or self._start_ids() is None:
            text = [p or "" for p in prompts]
            return dict(self.processor(images=images, text=text, padding=True, return_tensors="pt"))
        # As the processor lays a batch out: the text rows padded (on the tokenizer's side),
        # then the image tokens put first, before any padding.
        rows = [self._text_ids(p) for p in prompts]
        width, left = max(len(r) for r in rows), self.tokenizer.padding_side == "left"
        image = self._image_ids()
        ids = torch.full((len(rows), len(image) + width), self.tokenizer.pad_token_id)
        mask = torch.zeros_like(ids)
        ids[:, : len(image)], mask[:, : len(image)] = torch.tensor(image), 1
        for i, row in enumerate(rows):
            at = len(image) + (width - len(row) if left else 0)
            ids[i, at : at + len(row)] = torch.tensor(row)
            mask[i, at : at + len(row)] = 1
        pixel_values = self.processor(images=images, return_tensors="pt")["pixel_values"]
        return {"pixel_values": pixel_values, "input_ids": ids, "attention_mask": mask}

    def _start_ids(self) -> list[int] | None:
        """The LLM's start when there is no text: [bos_token_id] of the text config, which
        `generate` puts after the image tokens when it is given no `input_ids`. None when the
        config names no BOS (transformers' T5 default): generate cannot run without text then,
        and the processor's encoding of "" is kept."""
        bos = getattr(self.model.config.text_config, "bos_token_id", None)
        return None if bos is None else [int(bos)]

    def _text_ids(self, prompt: str | None) -> list[int]:
        """One row's LLM text ids (after the image tokens): the tokenized prompt, or the start
        tokens of an unconditional caption."""
        if not prompt:
            start = self._start_ids()
            if start is not None:
                return start
        return list(self.tokenizer(prompt or "").input_ids)

    def _image_ids(self) -> list[int]:
        """The query-token placeholders, as `generate` writes them."""
        config = self.model.config
        return [int(config.image_token_id)] * int(config.num_query_tokens)

    def training_inputs(
        self, images: list[Image.Image], prompts: list[str | None], targets: list[str]
    ) -> dict[str, torch.Tensor]:
        """Encoder-decoder LMs: prompt in, target as labels. Decoder-only LMs: prompt + target
        + EOS in one sequence, loss only on the target (never on image tokens or the prompt).
        Stage 1: the image and the target through the Q-Former's own tokenizer."""
        tok = self.tokenizer
        if self._stage1:
            ids, mask = self.qformer_text(targets)
            pixel_values = self.processor(images=images, return_tensors="pt")["pixel_values"]
            return {"pixel_values": pixel_values, "text_input_ids": ids,
                    "text_attention_mask": mask}  # fmt: skip
        if self.model.config.text_config.is_encoder_decoder:
            inputs = self.prepare(images, prompts)
            lab = tok(targets, padding=True, return_tensors="pt")
            inputs["labels"] = lab.input_ids.masked_fill(lab.attention_mask == 0, -100)
            return inputs
        eos = min(self.eos_token_ids())
        prompt_rows = [self._text_ids(p) for p in prompts]  # as `prepare` starts them
        target_rows = [[*tok(" " + t, add_special_tokens=False).input_ids, eos] for t in targets]
        rows = [p + t for p, t in zip(prompt_rows, target_rows, strict=True)]
        width = max(len(r) for r in rows)
        image = [self.model.config.image_token_id] * self.processor.num_query_tokens
        ids = torch.full((len(rows), len(image) + width), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        labels = torch.full_like(ids, -100)
        for i, (row, t) in enumerate(zip(rows, target_rows, strict=True)):
            start = ids.shape[1] - len(row) - len(image)  # left padding
            ids[i, start:] = torch.tensor(image + row)
            mask[i, start:] = 1
            labels[i, ids.shape[1] - len(t) :] = torch.tensor(t)
        pixel_values = self.processor(images=images, return_tensors="pt")["pixel_values"]
        return {"pixel_values": pixel_values, "input_ids": ids, "attention_mask": mask,
                "labels": labels}  # fmt: skip
