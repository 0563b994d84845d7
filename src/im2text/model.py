"""`im2text.load()` and the `Model` it returns: the object users call tasks on.

Every task method is a thin front over `Model.stream(task, ...)`, which reads the task table
(`im2text.tasks.TASKS`): capability check, preset defaults, generation settings, progress.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence, Sized
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

import numpy as np
import torch

from im2text import _loading
from im2text.config import GPU_BATCH_SIZE, GenerationSettings, LoadSettings, Preset
from im2text.engine.device import limit_threads, resolve_device, resolve_dtype
from im2text.engine.memory import ModelTooLargeError, parse_size
from im2text.families import FAMILIES, CheckpointError, Family, Matcher, family_for_config
from im2text.images import ImageError, ImageSource, expand_inputs
from im2text.results import (
    Answer,
    Candidate,
    Caption,
    Classification,
    Detection,
    Embedding,
    Match,
    Reading,
)
from im2text.tasks import TASKS, TaskSpec, get_task

if TYPE_CHECKING:
    from PIL import Image

    # One image (a path may also name a folder or glob, which gives a list).
    OneImage = Image.Image | bytes | np.ndarray
    Images = Sequence[Any]

RERANKERS = {"itm": "blip-itm-base-coco", "clip": "clip-vit-base-patch32"}


class Model:
    """A loaded model of any family. Create with `im2text.load(...)`."""

    def __init__(
        self,
        family: Family,
        *,
        name: str,
        preset: Preset | None = None,
        settings: LoadSettings | None = None,
    ):
        self.family = family
        self.name = name
        self.preset = preset
        self.settings = settings or LoadSettings()
        self.generation = GenerationSettings().merged(**(preset.generation if preset else {}))
        self.prompt = preset.prompt if preset else None
        self._rerankers: dict[str, Model] = {}

    def __repr__(self) -> str:
        return (
            f"Model(name={self.name!r}, family={self.family.key!r}, "
            f"device={str(self.family.device)!r}, dtype={str(self.family.dtype)!r})"
        )

    @property
    def tasks(self) -> tuple[str, ...]:
        """What this model is for (the preset's tasks, else everything its family can do)."""
        return self.preset.tasks if self.preset else self.family.tasks

    def can(self, task: str) -> bool:
        """Whether this model's family runs `task` (see `im2text.tasks.TASKS`)."""
        spec = get_task(task)
        return task in self.family.tasks and isinstance(self.family, spec.capability)

    # --- the one entry point every task goes through --------------------------------------------

    def stream(
        self,
        task: str,
        inputs: Iterable[Any],
        *,
        batch_size: int | None = None,
        progress: bool = False,
        total: int | None = None,
        **params: Any,
    ) -> Iterator[Any]:
        """Run `task` over already-expanded inputs, streaming one result per input, in order.

        Args:
            task: a row of the task table ("caption", "ask", "read", "match", "classify",
                "embed").
            inputs: `ImageSource`s, or (source, question) pairs for "ask".
            batch_size: inputs per forward pass (default: the load setting).
            progress: show a progress bar labelled with the task.
            total: the number of inputs, for the progress bar (taken from `inputs` if sized).
            **params: the task's parameters (`TASKS[task].params`) and, for generating tasks,
                `GenerationSettings` fields.

        Raises:
            ValueError: the model cannot do `task`, or a parameter is invalid.
        """
        spec = get_task(task)
        self._require(spec)
        kwargs = self._task_kwargs(spec, params)
        if isinstance(inputs, Sized) and total is None:
            total = len(inputs)
        inputs = _as_sources(inputs, spec.pairs)
        load = replace(self.settings, batch_size=batch_size or self.settings.batch_size)
        stream = spec.stream(self.family, inputs, load=load, **kwargs)
        return _progress(stream, total, inputs, spec.progress) if progress else stream

    def _require(self, spec: TaskSpec) -> None:
        if not self.can(spec.name):
            able = sorted(p.name for p in _presets_for(spec.name))
            raise ValueError(
                f"model '{self.name}' ({self.family.key}) cannot {spec.name}; "
                f"models that can: {', '.join(able)}"
            )

    def _task_kwargs(self, spec: TaskSpec, params: dict[str, Any]) -> dict[str, Any]:
        """The stream function's keywords: task parameters (preset defaults filled in) and,
        for generating tasks, the merged `GenerationSettings`."""
        names = {p.name for p in spec.params}
        kwargs = {k: v for k, v in params.items() if k in names}
        rest = {k: v for k, v in params.items() if k not in names}
        if spec.generates:
            kwargs["generation"] = self.generation.merged(**rest)  # unknown keys: TypeError
        elif rest:
            raise TypeError(
                f"{spec.name} takes no parameter(s) {', '.join(sorted(rest))}; "
                f"it takes: {', '.join(sorted(names)) or 'none'}"
            )
        if "prompt" in names and kwargs.get("prompt") is None and kwargs.get("style") is None:
            kwargs["prompt"] = self.prompt  # the preset's caption prompt
        if kwargs.get("rerank") is not None:
            kwargs["rerank"] = self._reranker(kwargs["rerank"])
        return kwargs

    def _reranker(self, rerank: str | Model) -> Matcher:
        if not isinstance(rerank, Model):
            name = RERANKERS.get(rerank, rerank)
            if name not in self._rerankers:
                s = self.settings
                self._rerankers[name] = load(name, device=s.device, dtype=s.dtype)
            rerank = self._rerankers[name]
        if not rerank.can("match") or not isinstance(rerank.family, Matcher):
            raise ValueError(f"re-ranker '{rerank.name}' cannot match images and texts")
        return rerank.family

    def _collect(self, single: bool, stream: Iterator[Any]) -> Any:
        results = list(stream)
        if single and len(results) == 1:
            if results[0].error:
                raise ImageError(results[0].error)
            return results[0]
        return results

    # --- captioning -----------------------------------------------------------------------------

    @overload
    def caption(self, images: OneImage, **kwargs: Any) -> Caption: ...
    @overload
    def caption(self, images: Images, **kwargs: Any) -> list[Caption]: ...
    @overload
    def caption(self, images: str | Path, **kwargs: Any) -> Caption | list[Caption]: ...

    def caption(
        self,
        images: Any,
        *,
        prompt: str | None = None,
        style: str | None = None,
        rerank: str | Model | None = None,
        batch_size: int | None = None,
        progress: bool = False,
        **generation: Any,
    ) -> Caption | list[Caption]:
        """Caption one image or many.

        Args:
            images: a path, directory, glob, bytes, PIL image or array — or a list of them.
            prompt: text the caption should continue (e.g. "a photograph of"); for
                instruction-following families, the instruction.
            style: "short", "detailed" or "tags", asked the way the model was taught (a
                task token or an instruction); `prompt` wins when both are given.
            batch_size: images per forward pass (default: the load setting).
            rerank: order several candidate captions by how well they match the image:
                "itm" (BLIP ITM, blip-itm-base-coco), "clip" (clip-vit-base-patch32), or any
                loaded matching `Model`, preset, Hub id or directory.
            progress: show a progress bar.
            **generation: any `GenerationSettings` field, e.g. `num_beams=3`,
                `max_new_tokens=30`, `do_sample=True`, `num_return_sequences=3`.

        Returns:
            One `Caption` for a single image (raising `ImageError` if it cannot be read), else a
            list with one `Caption` per image in input order; failed items carry `.error`.
        """
        stream = self.caption_iter(
            expand_inputs(images),
            prompt=prompt,
            style=style,
            rerank=rerank,
            batch_size=batch_size,
            progress=progress,
            **generation,
        )
        return self._collect(_is_single(images), stream)

    def caption_iter(
        self,
        sources: Iterable[ImageSource],
        *,
        prompt: str | None = None,
        style: str | None = None,
        rerank: str | Model | None = None,
        batch_size: int | None = None,
        progress: bool = False,
        total: int | None = None,
        **generation: Any,
    ) -> Iterator[Caption]:
        """Stream captions for already-expanded sources (what bulk jobs use)."""
        return self.stream(
            "caption", sources, prompt=prompt, style=style, rerank=rerank, batch_size=batch_size,
            progress=progress, total=total, **generation,
        )  # fmt: skip

    # --- questions ------------------------------------------------------------------------------

    @overload
    def ask(self, images: OneImage, question: str, **kwargs: Any) -> Answer: ...
    @overload
    def ask(self, images: Any, question: list[str], **kwargs: Any) -> list[Answer]: ...
    @overload
    def ask(self, images: Images, question: str, **kwargs: Any) -> list[Answer]: ...
    @overload
    def ask(self, images: str | Path, question: str, **kwargs: Any) -> Answer | list[Answer]: ...

    def ask(
        self,
        images: Any,
        question: str | list[str],
        *,
        candidates: list[str] | None = None,
        batch_size: int | None = None,
        progress: bool = False,
        **generation: Any,
    ) -> Answer | list[Answer]:
        """Answer questions about images.

        Args:
            images: one image (or path, bytes, ...) or a list of them.
            question: one question for every image, or a list: with one image, several
                questions about it (the image is encoded once); with a list of images, one
                question per image.
            candidates: rank this closed list of answers instead of generating (BLIP VQA's
                "rank" mode); `Answer.ranking` then gives each candidate's probability.
            **generation: `GenerationSettings` fields (e.g. `num_beams=3`).

        Returns:
            One `Answer` for one image and one question, else a list in order. `confidence` is
            the answer's probability under the model.
        """
        many_q = isinstance(question, (list, tuple))
        sources = expand_inputs(images)
        pairs: list[tuple[ImageSource, str]]
        if isinstance(question, (list, tuple)) and len(sources) == 1:
            pairs = [(sources[0], q) for q in question]
        elif isinstance(question, (list, tuple)):
            if len(question) != len(sources):
                raise ValueError(f"{len(question)} questions for {len(sources)} images")
            pairs = list(zip(sources, question, strict=True))
        else:  # one question for every image
            pairs = [(s, question) for s in sources]
        stream = self.ask_iter(
            pairs, candidates=candidates, batch_size=batch_size, progress=progress, **generation
        )
        return self._collect(_is_single(images) and not many_q, stream)

    def ask_iter(
        self,
        pairs: Iterable[tuple[ImageSource, str]],
        *,
        candidates: list[str] | None = None,
        batch_size: int | None = None,
        progress: bool = False,
        total: int | None = None,
        **generation: Any,
    ) -> Iterator[Answer]:
        """Stream answers for (source, question) pairs (what bulk jobs use)."""
        return self.stream(
            "ask", pairs, candidates=candidates, batch_size=batch_size, progress=progress,
            total=total, **generation,
        )  # fmt: skip

    # --- reading text ---------------------------------------------------------------------------

    @overload
    def read(self, images: OneImage, **kwargs: Any) -> Reading: ...
    @overload
    def read(self, images: Images, **kwargs: Any) -> list[Reading]: ...
    @overload
    def read(self, images: str | Path, **kwargs: Any) -> Reading | list[Reading]: ...

    def read(
        self,
        images: Any,
        *,
        page: bool | None = None,
        batch_size: int | None = None,
        progress: bool = False,
        **generation: Any,
    ) -> Reading | list[Reading]:
        """Read the text in images (OCR): page text in reading order, and lines with boxes.

        Args:
            page: for line recognisers (TrOCR): True (default) finds the text lines with the
                PP-OCR detector and reads each; False reads the whole image as one line.
        """
        stream = self.read_iter(
            expand_inputs(images), page=page, batch_size=batch_size, progress=progress,
            **generation,
        )  # fmt: skip
        return self._collect(_is_single(images), stream)

    def read_iter(
        self,
        sources: Iterable[ImageSource],
        *,
        page: bool | None = None,
        batch_size: int | None = None,
        progress: bool = False,
        total: int | None = None,
        **generation: Any,
    ) -> Iterator[Reading]:
        """Stream readings for already-expanded sources."""
        return self.stream(
            "read", sources, page=page, batch_size=batch_size, progress=progress, total=total,
            **generation,
        )  # fmt: skip

    # --- finding regions --------------------------------------------------------------------------

    @overload
    def detect(self, images: OneImage, **kwargs: Any) -> Detection: ...
    @overload
    def detect(self, images: Images, **kwargs: Any) -> list[Detection]: ...
    @overload
    def detect(self, images: str | Path, **kwargs: Any) -> Detection | list[Detection]: ...

    def detect(
        self,
        images: Any,
        *,
        min_score: float = 0.0,
        batch_size: int | None = None,
        progress: bool = False,
        **generation: Any,
    ) -> Detection | list[Detection]:
        """Find labelled regions: boxes in the image's pixels with labels and scores.

        Args:
            min_score: drop regions scoring below this (in [0, 1]).
        """
        stream = self.detect_iter(
            expand_inputs(images), min_score=min_score, batch_size=batch_size,
            progress=progress, **generation,
        )  # fmt: skip
        return self._collect(_is_single(images), stream)

    def detect_iter(
        self,
        sources: Iterable[ImageSource],
        *,
        min_score: float = 0.0,
        batch_size: int | None = None,
        progress: bool = False,
        total: int | None = None,
        **generation: Any,
    ) -> Iterator[Detection]:
        """Stream detections for already-expanded sources."""
        return self.stream(
            "detect", sources, min_score=min_score, batch_size=batch_size, progress=progress,
            total=total, **generation,
        )  # fmt: skip

    # --- matching, classification, embeddings ---------------------------------------------------

    @overload
    def match(
        self,
        images: OneImage,
        texts: str | list[str],
        *,
        batch_size: int | None = ...,
        progress: bool = ...,
    ) -> Match: ...
    @overload
    def match(
        self,
        images: Images,
        texts: str | list[str],
        *,
        batch_size: int | None = ...,
        progress: bool = ...,
    ) -> list[Match]: ...
    @overload
    def match(
        self,
        images: str | Path,
        texts: str | list[str],
        *,
        batch_size: int | None = ...,
        progress: bool = ...,
    ) -> Match | list[Match]: ...

    def match(
        self,
        images: Any,
        texts: str | list[str],
        *,
        batch_size: int | None = None,
        progress: bool = False,
    ) -> Match | list[Match]:
        """Score texts against images: cosine similarity, softmax over the texts, and (BLIP
        ITM) the matching head's probability."""
        stream = self.match_iter(
            expand_inputs(images), texts, batch_size=batch_size, progress=progress
        )
        return self._collect(_is_single(images), stream)

    def match_iter(
        self,
        sources: Iterable[ImageSource],
        texts: str | list[str],
        *,
        batch_size: int | None = None,
        progress: bool = False,
        total: int | None = None,
    ) -> Iterator[Match]:
        """Stream matches for already-expanded sources (texts are encoded once)."""
        return self.stream(
            "match", sources, texts=texts, batch_size=batch_size, progress=progress, total=total
        )

    @overload
    def classify(
        self,
        images: OneImage,
        labels: list[str] | None = ...,
        *,
        templates: str | Sequence[str] | None = ...,
        top_k: int = ...,
        batch_size: int | None = ...,
        progress: bool = ...,
    ) -> Classification: ...
    @overload
    def classify(
        self,
        images: Images,
        labels: list[str] | None = ...,
        *,
        templates: str | Sequence[str] | None = ...,
        top_k: int = ...,
        batch_size: int | None = ...,
        progress: bool = ...,
    ) -> list[Classification]: ...
    @overload
    def classify(
        self,
        images: str | Path,
        labels: list[str] | None = ...,
        *,
        templates: str | Sequence[str] | None = ...,
        top_k: int = ...,
        batch_size: int | None = ...,
        progress: bool = ...,
    ) -> Classification | list[Classification]: ...

    def classify(
        self,
        images: Any,
        labels: list[str] | None = None,
        *,
        templates: str | Sequence[str] | None = None,
        top_k: int = 5,
        batch_size: int | None = None,
        progress: bool = False,
    ) -> Classification | list[Classification]:
        """Top-k labels per image.

        Args:
            labels: zero-shot label names (CLIP, BLIP ITC); for supervised classifiers (ViT),
                None means all the checkpoint's classes, or a subset of them.
            templates: prompt templates with `{}` for the label (default "a photo of a {}."),
                or "ensemble" for the CLIP paper's 7-template ensemble.
        """
        stream = self.classify_iter(
            expand_inputs(images), labels, templates=templates, top_k=top_k,
            batch_size=batch_size, progress=progress,
        )  # fmt: skip
        return self._collect(_is_single(images), stream)

    def classify_iter(
        self,
        sources: Iterable[ImageSource],
        labels: list[str] | None = None,
        *,
        templates: str | Sequence[str] | None = None,
        top_k: int = 5,
        batch_size: int | None = None,
        progress: bool = False,
        total: int | None = None,
    ) -> Iterator[Classification]:
        """Stream classifications for already-expanded sources."""
        return self.stream(
            "classify", sources, labels=labels, templates=templates, top_k=top_k,
            batch_size=batch_size, progress=progress, total=total,
        )  # fmt: skip

    def embed(self, images: Any = None, *, texts: str | list[str] | None = None) -> np.ndarray:
        """L2-normalised embeddings, float32 (N, D), of images or of texts; or, from a model
        that reads both at once (VisualBERT), of image-text pairs: image i with text i (one
        text: the same for every image).

        Raises ImageError naming every image that could not be read.
        """
        if images is None and texts is None:
            raise ValueError("give images, texts, or (for joint embeddings) both")
        if images is not None and texts is not None:
            return self._embed_pairs(images, texts)
        self._require(TASKS["embed"])
        if texts is not None:
            from im2text.families import Embedder
            from im2text.tasks._common import clean_texts

            assert isinstance(self.family, Embedder)  # checked by _require
            return self.family.embed_texts(clean_texts(texts, "text")).numpy()
        rows = list(self.embed_iter(expand_inputs(images)))
        if not rows:
            raise ValueError("no images given")
        errors = [r.error or "" for r in rows if not r.ok]
        if errors:
            raise ImageError("; ".join(errors))
        return np.stack([r.vector for r in rows]).astype(np.float32)

    def _embed_pairs(self, images: Any, texts: str | list[str]) -> np.ndarray:
        from im2text.families import PairEmbedder
        from im2text.images import ImageLimits, load_image
        from im2text.tasks._common import clean_texts

        if not isinstance(self.family, PairEmbedder):
            raise ValueError(
                f"{self.name} embeds images and texts apart: give one of them (joint "
                "image-text embeddings come from models that read both, e.g. VisualBERT)"
            )
        sources = expand_inputs(images)
        clean = clean_texts([texts] if isinstance(texts, str) else texts, "text")
        if len(clean) == 1:
            clean = clean * len(sources)
        if len(clean) != len(sources):
            raise ValueError(f"give one text, or one per image: {len(sources)} images, "
                             f"{len(clean)} texts")  # fmt: skip
        if not sources:
            raise ValueError("no images given")
        # Decoded as every task decodes them (the model's size guides JPEG draft decoding), a
        # batch at a time; every unreadable image is named at the end.
        limits = ImageLimits(max_pixels=self.settings.max_pixels)
        step, parts, errors = self.settings.batch_size, [], []
        for i in range(0, len(sources), step):
            batch_images, batch_texts = [], []
            for src, text in zip(sources[i : i + step], clean[i : i + step], strict=True):
                try:
                    batch_images.append(load_image(src, limits=limits,
                                                   target_size=self.family.image_size))  # fmt: skip
                    batch_texts.append(text)
                except ImageError as e:
                    errors.append(str(e))
            if batch_images and not errors:  # after an error only the rest's errors matter
                parts.append(self.family.embed_pairs(batch_images, batch_texts))
        if errors:
            raise ImageError("; ".join(errors))
        return torch.cat(parts).numpy().astype(np.float32)

    def embed_iter(
        self,
        sources: Iterable[ImageSource],
        *,
        batch_size: int | None = None,
        progress: bool = False,
        total: int | None = None,
    ) -> Iterator[Embedding]:
        """One `Embedding` per image, in order (what the index builder uses)."""
        return self.stream("embed", sources, batch_size=batch_size, progress=progress, total=total)

    def save(self, directory: str | Path) -> Path:
        """Save weights, processor and preset metadata so `im2text.load(directory)` restores it."""
        from im2text.engine.graphs import BackendError, BackendSpec

        if self.family.backend != BackendSpec():  # graphs / int8 linears hold no HF weights
            raise BackendError(
                f"a model on {self.family.backend.label} cannot be saved as a checkpoint: "
                "save it loaded on torch float32, or use export()"
            )
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        self.family.save_pretrained(str(out))
        _write_metadata(out, self.preset, source=self.name)
        return out

    def export(self, directory: str | Path, *, backend: str, quantize: str | None = None) -> Path:
        """Write a folder that `im2text.load(directory)` runs offline on `backend`
        (onnxruntime | openvino): the checkpoint plus its encoders as graphs, int8 if asked."""
        from im2text.engine.graphs import BackendError, BackendSpec, export_model

        if self.family.backend != BackendSpec():
            raise BackendError("export a model loaded on torch float32 (no --backend / --int8)")
        if quantize not in (None, "int8"):
            raise ValueError(f"unknown quantize {quantize!r} (use int8, or None for float)")
        out = export_model(self.family, BackendSpec(backend, quantize == "int8"), str(directory))
        _write_metadata(out, self.preset, source=self.name)
        return out

    # --- one answer, streamed as it is generated -----------------------------------------------

    def generate_stream(
        self,
        image: Any,
        *,
        prompt: str | None = None,
        question: str | None = None,
        messages: list[dict[str, Any]] | None = None,
        result: dict[str, Any] | None = None,
        **generation: Any,
    ) -> Iterator[str]:
        """Caption one image, or answer `question` about it, or continue a conversation about
        images (`messages`), yielding the text as it is decoded.

        The pieces join up to exactly the text `caption()` (or `ask()`) gives for the same image
        and settings: the caption prompt first, for families whose captions continue it, then
        the words as the model decodes them. A word is sent once the next one has begun, so a
        sent piece never changes. Beam search and several sequences (`num_beams` or
        `num_return_sequences` above 1) only know their text at the end: it comes as one piece.
        Stopping early (`close()`, or leaving a `for` loop) stops the generation too.

            for piece in model.generate_stream("photo.jpg", max_new_tokens=40):
                print(piece, end="", flush=True)

        Args:
            image: one image: a path, bytes, PIL image, array or `ImageSource`.
            prompt: what the caption continues, or the instruction (as in `caption()`; default:
                the preset's prompt).
            question: answer this question instead of captioning (as in `ask()`).
            messages: a conversation for chat VLMs, passed through their chat template
                unchanged: `{"role": "system" | "user" | "assistant", "content": str or a list
                of {"type": "text", "text": ...} / {"type": "image"} parts}`; the image parts
                take `image` (then one image or a list) in order. The answer is the
                assistant's next turn.
            result: a dict to fill in when the text is complete: `candidates`, every decoded
                sequence as a `Candidate` in the order generated (its `text` as `caption()` or
                `ask()` give it, `num_tokens` the tokens generated, end of text included), and
                `prompt_tokens`, the tokens of the model's text input as its processor builds
                it (the prompt or question with the family's special tokens; pixels are not
                tokens and do not count).
            **generation: `GenerationSettings` fields, e.g. `max_new_tokens=40`.

        Raises:
            ValueError: the model cannot caption (or answer questions), both a prompt and a
                question, not exactly one image, or invalid settings (all before any work).
            ImageError: the image cannot be read.
        """
        from im2text.tasks.stream import stream_text

        task = "caption" if question is None and messages is None else "ask"
        self._require(get_task(task))
        if isinstance(image, ImageSource):
            sources = [image]
        elif messages is not None and isinstance(image, list):
            sources = [s for im in image for s in _as_list(
                im if isinstance(im, ImageSource) else expand_inputs(im))]  # fmt: skip
        else:
            sources = _as_list(expand_inputs(image))
        if messages is None and len(sources) != 1:
            raise ValueError(f"generate_stream takes one image, not {len(sources)}")
        default = prompt is None and question is None and messages is None
        return stream_text(
            self.family,
            sources if messages is not None else sources[0],
            prompt=self.prompt if default else prompt,
            question=question,
            generation=self.generation.merged(**generation),
            load=self.settings,
            result=result,
            messages=messages,
        )

    def chat(
        self, messages: list[dict[str, Any]], images: Any = (), **generation: Any
    ) -> Candidate:
        """The assistant's next turn in a conversation about `images` (chat VLMs): see
        `generate_stream(messages=...)`. Returns the scored answer."""
        result: dict[str, Any] = {}
        for _ in self.generate_stream(list(images) if isinstance(images, (list, tuple)) else
                                      images, messages=messages, result=result,
                                      **generation):  # fmt: skip
            pass
        return result["candidates"][0]


def _as_list(sources: Any) -> list[ImageSource]:
    return [sources] if isinstance(sources, ImageSource) else list(sources)


def load(
    model: str = "blip-base",
    *,
    device: str = "auto",
    dtype: str = "auto",
    revision: str | None = None,
    batch_size: int | None = None,
    num_workers: int = LoadSettings.num_workers,
    max_pixels: int = LoadSettings.max_pixels,
    backend: str | None = LoadSettings.backend,
    quantize: str | None = LoadSettings.quantize,
    device_map: str | None = None,
    max_memory: int | str | None = None,
) -> Model:
    """Load a model by preset name (`im2text.list_models()`), Hub id, or local directory.

    Before any weight is read, the model's size is worked out from its config and compared
    with the device's free memory (and `max_memory`, e.g. "8GB", when given): a model that
    cannot fit is refused with `ModelTooLargeError`. `device_map="auto"` (accelerate) spreads
    a model too large for one device over the GPUs, then the CPU (no size check then).

    `backend="onnxruntime" | "openvino"` runs the model's encoders as exported graphs (exported
    once, then cached); `quantize="int8"` adds int8 weights, on any backend: faster, and close to
    but not equal to the float32 outputs. A folder written by `im2text export` runs on its own
    backend. Offline, a model that is neither local nor cached fails at once with a hint.
    """
    dev = resolve_device(device)
    if dev.type == "cpu":
        limit_threads()
    if batch_size is None:  # a GPU wants bigger batches than a CPU to be kept busy
        batch_size = GPU_BATCH_SIZE if dev.type == "cuda" else LoadSettings.batch_size
    settings = LoadSettings(
        device=device,
        dtype=dtype,
        revision=revision,
        batch_size=batch_size,
        num_workers=num_workers,
        max_pixels=max_pixels,
        backend=backend,
        quantize=quantize,
    )
    if quantize not in (None, "int8"):
        raise ValueError(f"unknown quantize {quantize!r} (use int8, or None for float)")
    if device_map not in (None, "auto"):
        raise ValueError(f"device_map must be 'auto' or None, not {device_map!r}")
    if max_memory is not None:
        parse_size(max_memory)  # a typo fails here, not as a damaged checkpoint
    source, preset, name, local = _loading.resolve(model, revision)
    if preset is not None and not FAMILIES[preset.family].needs_weights:
        # Engines such as rapidocr carry their own weights: nothing to fetch.
        family = FAMILIES[preset.family].from_pretrained(name, device=dev, dtype=torch.float32)
        return Model(family, name=name, preset=preset, settings=settings)
    revision = revision or (preset.revision if preset else None)
    hub = _loading.hub_options(source, name, revision=revision, local=local)
    try:
        family = _load_family(source, preset, dtype, dev, hub, device_map, max_memory)
    except (_loading.ModelNotAvailableError, CheckpointError, ModelTooLargeError):
        raise
    except Exception as e:
        if not local:
            raise
        # A damaged folder: corrupt or truncated weights, no config, unknown model_type,
        # missing tokenizer files. Named as a checkpoint problem, never a traceback.
        raise CheckpointError(f"{source} is not a loadable checkpoint: {_first_line(e)}") from e
    _set_backend(family, source if local else None, backend, quantize)
    return Model(family, name=name, preset=preset, settings=settings)


def _set_backend(
    family: Family, folder: str | None, backend: str | None, quantize: str | None
) -> None:
    """Put the loaded family on its backend: asked for, or the exported folder's own."""
    from im2text.engine.graphs import BackendError, BackendSpec, apply_backend, folder_backend

    exported = folder_backend(folder) if folder else None
    if exported is not None:
        if backend not in (None, exported.backend) or (quantize == "int8") != exported.int8:
            asked = BackendSpec(backend or exported.backend, quantize == "int8")
            raise BackendError(
                f"{folder} was exported for {exported.label}, not {asked.label}: load it without "
                "--backend/--int8, or export again"
            )
        apply_backend(family, exported, folder)
        return
    spec = BackendSpec(backend or "torch", quantize == "int8")
    if spec != BackendSpec():
        apply_backend(family, spec)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


def _load_family(
    source: str,
    preset: Preset | None,
    dtype: str,
    dev: torch.device,
    hub: dict[str, Any],
    device_map: str | None = None,
    max_memory: int | str | None = None,
) -> Family:
    from transformers import AutoConfig

    from im2text.engine.memory import check_fits
    from im2text.families import family_for_folder

    own = family_for_folder(source, preset.family if preset is not None else None)
    if own is not None:  # e.g. a region detector's config.yaml + pytorch_model.bin
        return own.from_pretrained(source, device=dev, dtype=torch.float32, **hub)
    config = AutoConfig.from_pretrained(source, **hub)
    family_cls = family_for_config(config.model_type, getattr(config, "architectures", None))
    if preset is not None and family_cls.key != preset.family:
        raise CheckpointError(
            f"preset '{preset.name}' is a {preset.family} model, but {source} holds a "
            f"{family_cls.key} checkpoint ({', '.join(config.architectures or [])})"
        )
    torch_dtype = resolve_dtype(dtype, dev)
    if device_map is None:
        check_fits(source, family_cls.model_class, config, torch_dtype, dev, max_memory)
    if device_map is not None:
        hub = {**hub, "device_map": device_map}
    family = family_cls.from_pretrained(source, device=dev, dtype=torch_dtype, **hub)
    bad = [n for n, p in family.model.named_parameters() if not torch.isfinite(p).all()]
    if bad:
        raise CheckpointError(
            f"{source} has NaN or infinite weights in {len(bad)} tensor(s) ({', '.join(bad[:3])}): "
            "every score would be NaN"
        )
    return family


def download(model: str, to: str | Path, *, revision: str | None = None) -> Path:
    """Save a model (weights + processor files) into `to`, for machines without Hub access."""
    source, preset, name, local = _loading.resolve(model, revision)
    revision = revision or (preset.revision if preset else None)
    out = Path(to)
    if local:
        load(source).save(out)
    else:
        hub = _loading.hub_options(source, name, revision=revision, local=False)
        from huggingface_hub import HfApi, snapshot_download

        patterns = ["*.json", "*.safetensors", "*.txt", "*.model", "*/*.json", "*/*.txt"]
        if not hub.get("local_files_only"):
            files = HfApi().list_repo_files(source, revision=revision)
            if not any(f.endswith(".safetensors") for f in files):
                patterns.append("*.bin")  # older repos ship only PyTorch pickles
        snapshot_download(source, local_dir=out, allow_patterns=patterns, **hub)
    _write_metadata(out, preset, source=source, revision=revision)
    return out


def _write_metadata(out: Path, preset: Preset | None, **info: Any) -> None:
    meta = {"preset": preset.name if preset else None, **info}
    (out / _loading.METADATA_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def _as_sources(inputs: Iterable[Any], pairs: bool) -> Iterator[Any]:
    """Inputs as `ImageSource`s, lazily: a generator of PIL images streams through (each keyed
    by its position, as `expand_inputs` would); paths, folders and globs expand in place."""
    for n, item in enumerate(inputs):
        image, question = item if pairs else (item, None)
        if isinstance(image, ImageSource):
            sources = [image]
        elif isinstance(image, (str, os.PathLike)):
            sources = expand_inputs(image)
        else:
            one = expand_inputs([image])[0]
            sources = [ImageSource(one.key.replace("#0", f"#{n}"), one.data)]
        for source in sources:
            yield (source, question) if pairs else source


def _is_single(images: Any) -> bool:
    if isinstance(images, (list, tuple, Iterator)):
        return False
    if isinstance(images, (str, Path)):
        text = str(images)
        return not Path(text).is_dir() and not any(c in text for c in "*?[")
    return True


def _presets_for(task: str) -> list[Preset]:
    from im2text.registry import list_models

    return list_models(task=task)


def _progress(
    stream: Iterator[Any], total: int | None, inputs: Iterable[Any], desc: str
) -> Iterator[Any]:
    from tqdm.auto import tqdm

    if total is None and isinstance(inputs, Sized):
        total = len(inputs)
    with tqdm(total=total, unit="img", desc=desc, dynamic_ncols=True) as bar:
        for item in stream:
            bar.update(1)
            yield item
