"""Chat VLMs (`*ForConditionalGeneration` + a processor with a chat template): the shared way of
prompting, batching and fine-tuning them; each family file adds only its quirks.
`InstructedVlm` is what every instruction-following VLM shares; `ChatVlm` adds the chat
template (and with it whole conversations: system prompts, several turns and images).

Every prompt is a user turn of the processor's chat template with the image first (the
processor expands the image placeholder into the model's image tokens); the LLMs are
decoder-only, so a batch is padded on the left and the answer is the generated tail; a caption
is the answer to an instruction (`default_prompt`), never a continuation of the prompt. To train,
the image encoder stays frozen and LoRA goes on the LLM. (PaliGemma shares all of it but the
template: its prompts are task prefixes.)
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from im2text.families.base import GenerativeFamily
from im2text.results import Line

if TYPE_CHECKING:
    from PIL import Image


class InstructedVlm(GenerativeFamily):
    """What every instruction-following VLM shares: left padding, reading by asking, the frozen
    image encoder and LoRA on the LLM. Subclasses say how a prompt becomes the model's text."""

    tasks = ("caption", "ask", "read")
    prompt_is_prefix = False  # prompts are instructions in the user turn
    default_prompt = "Describe the image in one sentence."
    caption_styles: ClassVar[dict[str, str]] = {
        "short": default_prompt,
        "detailed": "Describe the image in detail: the objects, their colours and positions, "
        "and the setting.",
        "tags": "List the main objects and attributes in the image as comma-separated tags.",
    }
    read_prompt = "Read all the text in the image. Write each line of text on its own line."
    line_positions = False  # the answer's lines, in its order; no boxes of their own
    vision_module: str = "vision_tower"  # the image encoder's name (frozen to train)
    nested_images: ClassVar[bool] = False  # the processor takes one list of images per text
    # The modules between image encoder and LLM (under `model.`), trained in full with LoRA.
    connectors: ClassVar[tuple[str, ...]] = ("multi_modal_projector",)
    lora_by_default_above = 2_000_000_000  # LoRA for chat VLMs above 2B parameters
    # Encoded once per distinct image in a batch (many questions about one image); each row of
    # its pixel_values is one image or tile, encoded on its own.
    vision_tower: ClassVar[str | None] = "model.vision_tower"

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.tokenizer.padding_side = "left"  # each row continues from its own last token

    def read(
        self,
        images: list[Image.Image],
        page: bool | None = None,
        settings: Any = None,
        options: Any = None,
    ) -> list[list[Line]]:
        """Reads by asking (`read_prompt`): one line per line of the answer, each with its own
        tokens' probability. These models give no positions: each line's box is the image."""
        return read_by_asking(self, images, self.read_prompt, settings)

    def prepare_for_training(self) -> None:
        """The connector and the LLM learn; the image encoder stays frozen (LLaVA's recipe)."""
        vision = {id(p) for p in self.vision_parameters()}
        for p in self.model.parameters():
            p.requires_grad_(id(p) not in vision)

    def vision_parameters(self) -> list[torch.nn.Parameter]:
        """Every parameter under a module named `vision_module` (the image encoder)."""
        frozen = f".{self.vision_module}."
        return [p for n, p in self.model.named_parameters() if frozen in f".{n}"]

    def lora_trained_in_full(self) -> list[str]:
        """The connector from image features to the LLM (LLaVA's LoRA recipe trains it fully):
        new to each task's images, and small next to the LLM."""
        names = {n for n, _ in self.model.named_modules()}
        return [n for n in self.connectors if f"model.{n}" in names]

    def lora_targets(self) -> list[str]:
        """The LLM's attention projections by full name (image encoders share the names)."""
        vision = f".{self.vision_module}."
        return [
            name
            for name, _ in self.model.named_modules()
            if name.endswith(("q_proj", "v_proj")) and vision not in f".{name}"
        ]


class ChatVlm(InstructedVlm):
    """VLMs prompted through their processor's chat template (`Conversational` too)."""

    def chat(self, prompt: str, answer: str | None = None) -> str:
        """The chat-template text of one user turn (image, then `prompt`), followed by the
        generation prompt, or by the assistant's `answer` when given (training)."""
        turn = [{"type": "image"}, {"type": "text", "text": prompt}]
        messages: list[dict[str, Any]] = [{"role": "user", "content": turn}]
        if answer is None:
            return str(self.processor.apply_chat_template(messages, add_generation_prompt=True))
        messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
        return str(self.processor.apply_chat_template(messages))

    def encode(self, images: list[list[Image.Image]], texts: list[str]) -> dict[str, torch.Tensor]:
        """The processor on texts and each text's images, in the form it takes them (nested,
        one list per text, or flat)."""
        given: Any = images if self.nested_images else [im for ims in images for im in ims]
        return dict(self.processor(images=given, text=texts, padding=True, return_tensors="pt"))

    def prepare(
        self, images: list[Image.Image], prompts: list[str | None]
    ) -> dict[str, torch.Tensor]:
        texts = [self.chat(p or self.default_prompt or "") for p in prompts]
        return self.encode([[im] for im in images], texts)

    def prepare_chat(
        self, images: list[Image.Image], messages: list[dict[str, Any]]
    ) -> dict[str, torch.Tensor]:
        """One conversation (system, user and assistant turns; `{"type": "image"}` parts take
        `images` in order) through the chat template, ready for the assistant's next turn.

        Raises ValueError when the image parts and the images differ in number, or when the
        conversation is longer than the language model's context (too many images or text).
        """
        parts = sum(
            1
            for m in messages
            if not isinstance(m["content"], str)
            for c in m["content"]
            if c.get("type") == "image"
        )
        if parts != len(images):
            raise ValueError(
                f"the conversation has {parts} image part(s) for {len(images)} image(s)"
            )
        text = str(self.processor.apply_chat_template(messages, add_generation_prompt=True))
        inputs = self.encode([images], [text])
        length, limit = int(inputs["input_ids"].shape[1]), self.max_text_tokens
        if limit is not None and length >= limit:
            raise ValueError(
                f"the conversation ({len(images)} image(s)) is {length} tokens; this model "
                f"holds {limit}: send fewer or smaller images, or less text"
            )
        return inputs

    def training_inputs(
        self, images: list[Image.Image], prompts: list[str | None], targets: list[str]
    ) -> dict[str, torch.Tensor]:
        """The conversation as at inference plus the assistant's turn; the loss is on the
        answer's tokens and what the template closes the turn with (EOS), never on the image,
        the instruction or the template around them."""
        instructions = [p or self.default_prompt or "" for p in prompts]
        asked = [self.chat(p) for p in instructions]
        full = [self.chat(p, t) for p, t in zip(instructions, targets, strict=True)]
        enc = self.encode([[im] for im in images], full)
        ids, mask = enc["input_ids"], enc["attention_mask"]
        labels = torch.full_like(ids, -100)
        for i, (a, f) in enumerate(zip(asked, full, strict=True)):
            if not f.startswith(a):
                raise ValueError("the chat template does not extend the prompt with the answer")
            tail = self.tokenizer(f[len(a) :], add_special_tokens=False).input_ids
            if not tail or ids[i, -len(tail) :].tolist() != tail:
                raise ValueError("the answer does not tokenize apart from its prompt")
            labels[i, -len(tail) :] = ids[i, -len(tail) :]
        return {**enc, "labels": labels.masked_fill(mask == 0, -100)}


def image_only_processor(processor_cls: type, source: str, **hub: Any) -> Any:
    """`processor_cls` (a processor that also handles video: Qwen2.5-VL / Qwen3-VL,
    LLaVA-OneVision) from the Hub folder, for images.

    `AutoProcessor` builds these with their video processor, which needs torchvision; where
    that imports, it is used unchanged. Elsewhere the same processor class is built from its
    image processor, tokenizer, chat template and saved keywords with no video processor, so
    every image prompt is expanded by the model's own processor code either way.
    """
    from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer
    from transformers.utils import cached_file

    try:
        return AutoProcessor.from_pretrained(source, **hub)
    except (AttributeError, ImportError, TypeError, ValueError):
        pass  # no video processor here (transformers' VIDEO_PROCESSOR_MAPPING needs torchvision)

    def read(name: str) -> str | None:
        path = cached_file(source, name, _raise_exceptions_for_missing_entries=False, **hub)
        return open(path, encoding="utf-8").read() if path else None

    tokenizer = AutoTokenizer.from_pretrained(source, **hub)
    template = read("chat_template.jinja")
    if template is None and (saved := read("chat_template.json")) is not None:
        template = json.loads(saved).get("chat_template")
    saved_kwargs = json.loads(read("processor_config.json") or "{}")
    allowed = set(inspect.signature(processor_cls).parameters)
    kwargs = {k: v for k, v in saved_kwargs.items() if k in allowed and k != "chat_template"}

    class ImageOnly(processor_cls):  # type: ignore[misc, valid-type]
        def check_argument_for_proper_class(self, name: str, argument: Any) -> Any:
            if name == "video_processor" and argument is None:
                return None  # images only: the video processor is never called
            return super().check_argument_for_proper_class(name, argument)

        def save_pretrained(self, directory: str, **_: Any) -> None:
            """The Hub files it was built from (the video processor's are not ours to write)."""
            out = Path(directory)
            out.mkdir(parents=True, exist_ok=True)
            self.image_processor.save_pretrained(out)
            self.tokenizer.save_pretrained(out)
            if self.chat_template:
                (out / "chat_template.jinja").write_text(self.chat_template, encoding="utf-8")
            if kwargs:
                (out / "processor_config.json").write_text(json.dumps(kwargs, indent=2))

    ImageOnly.__name__ = ImageOnly.__qualname__ = processor_cls.__name__
    return ImageOnly(
        image_processor=AutoImageProcessor.from_pretrained(source, **hub),
        tokenizer=tokenizer,
        video_processor=None,
        chat_template=template or tokenizer.chat_template,
        **kwargs,
    )


def read_by_asking(
    family: GenerativeFamily, images: list[Image.Image], prompt: str, settings: Any
) -> list[list[Line]]:
    """OCR through a generative model's answer to `prompt`: the answer split at newlines, each
    line scored by the mean log-probability of its own tokens (confidence = its exp)."""
    import math

    from im2text.config import LONG_OUTPUT

    settings = (settings or LONG_OUTPUT).merged(num_return_sequences=1)
    tokens, logp, valid = family.generate_tokens(family.prepare(images, [prompt] * len(images)),
                                                 settings)  # fmt: skip
    out = []
    for im, ids, lps, ok in zip(images, tokens.tolist(), logp.tolist(), valid.tolist(),
                                strict=True):  # fmt: skip
        whole = (0.0, 0.0, float(im.width), float(im.height))
        lines: list[Line] = []
        run: list[int] = []
        run_lp: list[float] = []
        for tok, lp, keep in [*zip(ids, lps, ok, strict=True), (None, 0.0, True)]:
            if tok is not None and not keep:
                continue
            end = tok is None  # the answer's end closes the last line
            piece = "\n" if end else family.tokenizer.decode([tok], skip_special_tokens=True)
            if not end:
                run.append(tok)
                run_lp.append(lp)
            if "\n" in piece:
                text = " ".join(family.tokenizer.decode(run, skip_special_tokens=True).split())
                if text:
                    lines.append(Line(text, whole, math.exp(sum(run_lp) / len(run_lp))))
                run, run_lp = [], []
        out.append(lines)
    return out
