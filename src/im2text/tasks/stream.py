"""One caption or answer, streamed as the model decodes it (what chat streaming sends).

A transformers streamer inside `generate` hands over each new token; generation runs in a
background thread and the reader gets words as soon as they are complete, so a piece once sent
never changes. The pieces join up to exactly the text `caption()` / `ask()` give.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import torch
from transformers.generation.streamers import BaseStreamer

from im2text.config import GenerationSettings, LoadSettings
from im2text.families.base import Conversational, Family, Generator
from im2text.images import ImageLimits, ImageSource, load_image
from im2text.tasks._common import clean_text
from im2text.tasks.caption import _join, _sanitize_prompt


def stream_text(
    family: Family,
    source: ImageSource | list[ImageSource],
    *,
    prompt: str | None,
    question: str | None,
    generation: GenerationSettings,
    load: LoadSettings,
    result: dict[str, Any] | None = None,
    messages: list[dict[str, Any]] | None = None,
) -> Iterator[str]:
    """Text pieces of one caption (or of the answer to `question`, or of the assistant's next
    turn in `messages`, whose image parts take the sources in order); see
    `Model.generate_stream`, which documents the arguments."""
    settings = generation
    if not isinstance(family, Generator):
        raise ValueError(f"{family.key} models do not generate text")
    limits = ImageLimits(max_pixels=load.max_pixels)
    prefix: str | None = None  # the prompt a caption continues (it starts the text)
    if messages is not None:
        if not isinstance(family, Conversational):
            raise ValueError(f"{family.key} models take a prompt, not a conversation")
        if prompt is not None or question is not None:
            raise ValueError("give a conversation, or a prompt or question, not both")
        sources = source if isinstance(source, list) else [source]
        pils = [load_image(s, limits=limits, target_size=family.image_size) for s in sources]
        inputs = family.prepare_chat(pils, messages)
        return _pieces(family, inputs, settings, None, result)
    if isinstance(source, list):
        raise ValueError("one image per caption or question")
    if question is not None:
        if prompt is not None:
            raise ValueError("give a prompt (to caption) or a question (to answer), not both")
        text_prompt: str | None = family.question_prompt(clean_text(question, "question"))
    else:
        text_prompt = _sanitize_prompt(prompt) or family.default_prompt
        prefix = text_prompt if text_prompt and family.prompt_is_prefix else None
    pil = load_image(source, limits=limits, target_size=family.image_size)
    inputs = family.prepare([pil], [text_prompt])
    return _pieces(family, inputs, settings, prefix, result)


def _pieces(
    family: Any,  # a Family that is a Generator
    inputs: dict[str, Any],
    settings: GenerationSettings,
    prefix: str | None,
    result: dict[str, Any] | None,
) -> Iterator[str]:
    """The generated text of one prepared row, word by word (after `prefix`, when given)."""
    ids, mask = inputs.get("input_ids"), inputs.get("attention_mask")
    if isinstance(ids, torch.Tensor):
        used = mask[0] if isinstance(mask, torch.Tensor) else torch.ones_like(ids[0])
        prompt_tokens = int(used.sum())
    else:  # no text input, or ragged prompts kept as lists of ids (GIT)
        rows: Any = inputs.get("prompt_ids") or [[]]
        prompt_tokens = len(rows[0])

    def whole(text: str) -> str:  # the text caption() / ask() give for generated `text`
        return _join(prefix, text) if prefix else text

    class Stop(Exception):
        """Raised inside generate() by the streamer once the reader has gone."""

    def pieces() -> Iterator[str]:
        sent = ""
        if prefix:
            sent = prefix
            yield prefix  # known before the first token
        if settings.num_beams > 1 or settings.num_return_sequences > 1:
            cands = family.generate(inputs, settings)[0]
        else:
            tokens: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
            stop = threading.Event()

            class Tokens(BaseStreamer):
                prompt_seen = False

                def put(self, value: torch.Tensor) -> None:
                    if stop.is_set():
                        raise Stop
                    if self.prompt_seen:
                        tokens.put(("ids", value.reshape(-1).tolist()))
                    self.prompt_seen = True  # generate() hands over the prompt's ids first

                def end(self) -> None:
                    pass

            def work() -> None:
                try:
                    tokens.put(("done", family.generate(inputs, settings, streamer=Tokens())))
                except BaseException as e:  # raised again in the reader's thread
                    tokens.put(("error", e))

            thread = threading.Thread(target=work, name=f"im2text-generate-{family.key}")
            thread.start()
            new: list[int] = []
            try:
                while True:
                    kind, value = tokens.get()
                    if kind == "error":
                        raise value
                    if kind == "done":
                        cands = value[0]
                        break
                    new.extend(value)
                    text = family.tokenizer.decode(new, skip_special_tokens=True).lstrip()
                    cut = max(text.rfind(" "), text.rfind("\n"))
                    stable = text[:cut].rstrip() if cut > 0 else ""  # the last word may grow
                    shown = whole(stable) if stable else sent
                    if len(shown) > len(sent) and shown.startswith(sent):
                        yield shown[len(sent) :]
                        sent = shown
            finally:
                stop.set()  # a generate() still running stops at its next token
                thread.join()
        final = [replace(c, text=whole(c.text)) for c in cands]
        if result is not None:
            result.update(candidates=tuple(final), prompt_tokens=prompt_tokens)
        if len(final[0].text) > len(sent) and final[0].text.startswith(sent):
            yield final[0].text[len(sent) :]

    return pieces()
