"""Florence-2 (microsoft/Florence-2-*): a DaViT image encoder whose tokens prefix a BART
encoder-decoder, driven by task tokens instead of instructions.

Quirks kept here: prompts are task tokens (`<CAPTION>`, `<MORE_DETAILED_CAPTION>`, `<OCR>`,
`<OCR_WITH_REGION>`, `<OD>`) that the processor turns into its fixed questions; boxes come back
in the text as `<loc_k>` tokens (k in 0..999, the centre of one of 1,000 bins per side), four
per box, eight per text quad. Regions and lines are parsed from the generated ids, so each one
is scored by its own tokens' probability; their boxes use the processor's own de-quantisation.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from im2text.config import LONG_OUTPUT
from im2text.families.base import GenerativeFamily
from im2text.results import Line, Region

if TYPE_CHECKING:
    from PIL import Image

_LOC = re.compile(r"<loc_(\d+)>")


class Florence2(GenerativeFamily):
    key = "florence2"
    model_types = ("florence2",)
    architectures = ("Florence2ForConditionalGeneration",)
    model_class = "Florence2ForConditionalGeneration"
    tasks = ("caption", "read", "detect")
    default_prompt = "<CAPTION>"
    prompt_is_prefix = False  # the task token asks; the answer is all that is generated
    vision_tower = "model.vision_tower"  # each distinct image encoded once per batch
    caption_styles: ClassVar[dict[str, str]] = {
        "short": "<CAPTION>", "detailed": "<MORE_DETAILED_CAPTION>", "tags": "<OD>"}  # fmt: skip

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        vocab = self.tokenizer.get_vocab()
        # id -> bin for the 1,000 location tokens
        self._bins = {i: int(m.group(1)) for t, i in vocab.items() if (m := _LOC.fullmatch(t))}

    def prepare(
        self, images: list[Image.Image], prompts: list[str | None]
    ) -> dict[str, torch.Tensor]:
        texts = [p or self.default_prompt or "" for p in prompts]
        return dict(self.processor(images=images, text=texts, padding=True, return_tensors="pt"))

    def decode(self, tokens: torch.Tensor) -> list[str]:
        """Plain text; an answer made of boxes (`<OD>` asked as the "tags" style) becomes its
        distinct labels, comma-separated."""
        texts = []
        for row in tokens.tolist():
            spans, loose = self._spans(row, [0.0] * len(row), [True] * len(row), 4)
            if spans and not loose:
                texts.append(", ".join(dict.fromkeys(label for label, _, _ in spans)))
            else:
                texts.append(self.tokenizer.decode(row, skip_special_tokens=True))
        return texts

    def _spans(
        self, ids: list[int], logp: list[float], valid: list[bool], corners: int
    ) -> tuple[list[tuple[str, list[int], float]], bool]:
        """(text, bins, mean log-prob) for each run of text tokens followed by `corners`
        location tokens (4: a box, 8: a quad). A text followed by several boxes gives a span
        per box, each scored by the text's tokens and its own box's. Also whether any text was
        left without a box (then the answer is not a list of regions)."""
        special = set(self.tokenizer.all_special_ids) - set(self._bins)
        spans: list[tuple[str, list[int], float]] = []
        text: list[tuple[int, float]] = []  # the current text's (id, log-prob)
        locs: list[tuple[int, float]] = []  # the current box's (bin, log-prob)
        boxed = False  # the current text already has a box: new text starts a new label
        for tok, lp, ok in zip(ids, logp, valid, strict=True):
            if not ok:
                break
            if tok in self._bins:
                locs.append((self._bins[tok], lp))
                if len(locs) == corners:
                    label = self.tokenizer.decode([t for t, _ in text], skip_special_tokens=True)
                    if label.strip():
                        scores = [x for _, x in text] + [x for _, x in locs]
                        spans.append((label.strip(), [b for b, _ in locs],
                                      sum(scores) / len(scores)))  # fmt: skip
                    locs, boxed = [], True
                continue
            locs = []  # an unfinished box is dropped
            if tok in special:
                continue
            if boxed:
                text, boxed = [], False
            text.append((tok, lp))
        loose = (
            bool(text)
            and not boxed
            and bool(self.tokenizer.decode([t for t, _ in text], skip_special_tokens=True).strip())
        )
        return spans, loose

    def _dequantize(self, bins: list[int], size: tuple[int, int]) -> list[float]:
        """Bin centres in pixels, as the processor de-quantises them ((k + 0.5) * side / 1000)."""
        w, h = size
        return [(b + 0.5) * (w if i % 2 == 0 else h) / 1000 for i, b in enumerate(bins)]

    def _located(
        self, images: list[Image.Image], task: str, corners: int, settings: Any
    ) -> list[tuple[list[tuple[str, list[float], float]], str, float]]:
        """Run `task` on each image: its (text, pixel coordinates, probability) spans, and the
        whole answer's text and mean log-prob (for answers with no boxes)."""
        settings = settings.merged(num_return_sequences=1)
        tokens, logp, valid = self.generate_tokens(self.prepare(images, [task] * len(images)),
                                                   settings)  # fmt: skip
        out = []
        for im, ids, lp, ok in zip(images, tokens.tolist(), logp.tolist(), valid.tolist(),
                                   strict=True):  # fmt: skip
            spans = [(t, self._dequantize(b, im.size), math.exp(s))
                     for t, b, s in self._spans(ids, lp, ok, corners)[0]]  # fmt: skip
            n = max(1, sum(ok))
            text = self.tokenizer.decode([i for i, k in zip(ids, ok, strict=True) if k],
                                         skip_special_tokens=True).strip()  # fmt: skip
            out.append((spans, text, sum(lp) / n))
        return out

    def detect(self, images: list[Image.Image], settings: Any = None) -> list[list[Region]]:
        """`<OD>`: each box with its label, scored by the probability of its tokens."""
        found = self._located(images, "<OD>", 4, settings or LONG_OUTPUT)
        return [[Region(t, (c[0], c[1], c[2], c[3]), p) for t, c, p in spans]
                for spans, _, _ in found]  # fmt: skip

    def read(
        self,
        images: list[Image.Image],
        page: bool | None = None,
        settings: Any = None,
        options: Any = None,
    ) -> list[list[Line]]:
        """`<OCR_WITH_REGION>`: lines with their quads (as boxes) and probabilities; an answer
        without regions is one line over the whole image."""
        lines = []
        for (spans, text, mean), im in zip(
            self._located(images, "<OCR_WITH_REGION>", 8, settings or LONG_OUTPUT), images,
            strict=True,
        ):  # fmt: skip
            if spans:
                lines.append([Line(t, (min(q[0::2]), min(q[1::2]), max(q[0::2]), max(q[1::2])), p)
                              for t, q, p in spans])  # fmt: skip
            else:
                whole = (0.0, 0.0, float(im.width), float(im.height))
                lines.append([Line(text, whole, math.exp(mean))] if text else [])
        return lines

    def training_inputs(
        self, images: list[Image.Image], prompts: list[str | None], targets: list[str]
    ) -> dict[str, torch.Tensor]:
        """The task prompt into the encoder; the target as `<s> text </s>` labels, which the
        model shifts right behind its decoder start token."""
        enc = self.prepare(images, prompts)
        tok = self.tokenizer
        rows = [[tok.bos_token_id, *tok(t, add_special_tokens=False).input_ids, tok.eos_token_id]
                for t in targets]  # fmt: skip
        width = max(map(len, rows))
        labels = torch.tensor([r + [-100] * (width - len(r)) for r in rows])
        return {**enc, "labels": labels}

    def prepare_for_training(self) -> None:
        """The projector and BART learn; the image encoder stays frozen."""
        for name, p in self.model.named_parameters():
            p.requires_grad_(".vision_tower." not in f".{name}")
