"""BLIP-2: frozen ViT-g + Q-Former + frozen LLM (OPT decoder-only, or Flan-T5 encoder-decoder).

Quirks kept here: the processor must know `num_query_tokens`, else it inserts no image tokens and
the LLM never sees the image (silently); the image-token placeholders come first, before BOS.
Decoder-only LMs return prompt + answer; encoder-decoder LMs return only the answer — either way
the generated part is the tail, which the shared scorer takes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch

from im2text.engine.graphs import GraphPart
from im2text.families.base import GenerativeFamily

if TYPE_CHECKING:
    from PIL import Image


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

    def question_prompt(self, question: str) -> str:
        return f"Question: {question} Answer:"

    def prepare_for_training(self) -> None:
        """BLIP-2's recipe: the image encoder and the LLM stay frozen; the Q-Former, its query
        tokens and the projection into the LLM learn (with --lora, only the LLM's adapters)."""
        for name, p in self.model.named_parameters():
            frozen = name.startswith(("vision_model.", "language_model."))
            p.requires_grad_(not frozen)

    def lora_targets(self) -> list[str]:
        """The LLM's attention projections (OPT: q_proj/v_proj; T5: q/v): LoRA adapts only the
        frozen LLM, never the Q-Former or the vision tower."""
        if self.model.config.text_config.is_encoder_decoder:
            return ["q", "v"]
        return ["q_proj", "v_proj"]  # the BLIP-2 paper's VQA template

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
        + EOS in one sequence, loss only on the target (never on image tokens or the prompt)."""
        tok = self.tokenizer
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
