"""GOT-OCR 2.0 (stepfun-ai/GOT-OCR-2.0-hf): a document-OCR VLM — a SAM-style ViT at 1,024 px
whose 256 tokens prefix a Qwen2 LM — that only reads.

Quirks kept here: the processor writes the whole conversation itself (a fixed system turn and
"OCR" or "OCR with format" for Markdown / LaTeX output), so there is no prompt to give; the
number of image tokens is the config's `image_seq_length` (the processor's default is the
released model's 256); generation ends at `<|im_end|>`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from im2text.families.base import GenerativeFamily
from im2text.families.chat_vlm import read_by_asking

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from im2text.results import Line

FORMATTED = "format"  # the prompt that asks for formatted output (Markdown / LaTeX)


class GotOcr2(GenerativeFamily):
    key = "got-ocr2"
    model_types = ("got_ocr2",)
    architectures = ("GotOcr2ForConditionalGeneration",)
    model_class = "GotOcr2ForConditionalGeneration"
    tasks: ClassVar[tuple[str, ...]] = ("read",)
    prompt_is_prefix = False
    vision_module = "vision_tower"
    vision_tower = "model.vision_tower"  # each distinct image encoded once per batch
    line_positions = False  # the answer's lines, in its order; no boxes of their own

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.tokenizer.padding_side = "left"

    def prepare(
        self, images: list[Image.Image], prompts: list[str | None]
    ) -> dict[str, torch.Tensor]:
        formatted = {p == FORMATTED for p in prompts}
        if len(formatted) > 1:
            raise ValueError("a batch reads either all plain or all formatted")
        enc = self.processor(images=images, format=formatted.pop(), return_tensors="pt",
                             num_image_tokens=self.model.config.image_seq_length)  # fmt: skip
        return dict(enc)

    def read(
        self,
        images: list[Image.Image],
        page: bool | None = None,
        settings: Any = None,
        options: Any = None,
    ) -> list[list[Line]]:
        """The page's text, a line per line; GOT gives no positions (each box is the image)."""
        return read_by_asking(self, images, "plain", settings)

    def training_inputs(
        self, images: list[Image.Image], prompts: list[str | None], targets: list[str]
    ) -> dict[str, torch.Tensor]:
        """The processor's OCR turn, then the text and `<|im_end|>`; loss on those only."""
        import torch

        enc = self.prepare(images, prompts)
        end = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        rows = [[*self.tokenizer(t, add_special_tokens=False).input_ids, end] for t in targets]
        width = max(map(len, rows))
        pad = self.tokenizer.pad_token_id
        tail = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
        tail_mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
        ids = torch.cat([enc["input_ids"], tail], 1)
        mask = torch.cat([enc["attention_mask"], tail_mask], 1)
        labels = torch.cat([torch.full_like(enc["input_ids"], -100),
                            tail.masked_fill(tail_mask == 0, -100)], 1)  # fmt: skip
        return {**enc, "input_ids": ids, "attention_mask": mask, "labels": labels}

    def prepare_for_training(self) -> None:
        """The projector and the LM learn; the image encoder stays frozen."""
        for name, p in self.model.named_parameters():
            p.requires_grad_(".vision_tower." not in f".{name}")
