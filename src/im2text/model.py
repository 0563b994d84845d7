"""`im2text.load()` and the `Model` it returns: the object users call tasks on."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from im2text import _loading
from im2text.config import GenerationSettings, LoadSettings, Preset
from im2text.engine.device import resolve_device, resolve_dtype
from im2text.families import FAMILIES, Family, family_for_config
from im2text.families.base import ENSEMBLE_TEMPLATES
from im2text.images import ImageError, ImageSource, expand_inputs
from im2text.results import Answer, Caption, Classification, Match, Reading
from im2text.tasks.ask import ask_stream
from im2text.tasks.caption import caption_stream
from im2text.tasks.match import classify_stream, embed_stream, match_stream
from im2text.tasks.read import read_stream

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

    def _require(self, task: str) -> None:
        if task not in self.family.tasks:
            able = sorted(p.name for p in _presets_for(task))
            raise ValueError(
                f"model '{self.name}' ({self.family.key}) cannot {task}; "
                f"models that can: {', '.join(able)}"
            )

    def _reranker(self, rerank: str | Model | None) -> Any:
        if rerank is None:
            return None
        if not isinstance(rerank, Model):
            name = RERANKERS.get(rerank, rerank)
            if name not in self._rerankers:
                s = self.settings
                self._rerankers[name] = load(name, device=s.device, dtype=s.dtype)
            rerank = self._rerankers[name]
        if "match" not in rerank.family.tasks:
            raise ValueError(f"re-ranker '{rerank.name}' cannot match images and texts")
        return rerank.family

    def _load_settings(self, batch_size: int | None) -> LoadSettings:
        return replace(self.settings, batch_size=batch_size or self.settings.batch_size)

    def _collect(self, single: bool, stream: Iterator[Any]) -> Any:
        results = list(stream)
        if single and len(results) == 1:
            if results[0].error:
                raise ImageError(results[0].error)
            return results[0]
        return results

    # --- captioning -----------------------------------------------------------------------------

    def caption(
        self,
        images: Any,
        *,
        prompt: str | None = None,
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
        sources = expand_inputs(images)
        stream = self.caption_iter(
            sources,
            prompt=prompt,
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
        rerank: str | Model | None = None,
        batch_size: int | None = None,
        progress: bool = False,
        total: int | None = None,
        **generation: Any,
    ) -> Iterator[Caption]:
        """Stream captions for already-expanded sources (what bulk jobs use)."""
        self._require("caption")
        stream = caption_stream(
            self.family,
            sources,
            prompt=prompt if prompt is not None else self.prompt,
            generation=self.generation.merged(**generation),
            load=self._load_settings(batch_size),
            reranker=self._reranker(rerank),
        )
        return _progress(stream, total, sources, "captioning") if progress else stream

    # --- questions ------------------------------------------------------------------------------

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
        if many_q and len(sources) == 1:
            pairs = [(sources[0], q) for q in question]
        elif many_q:
            if len(question) != len(sources):
                raise ValueError(f"{len(question)} questions for {len(sources)} images")
            pairs = list(zip(sources, question, strict=True))
        else:
            # not a list/tuple: one question for every image
            pairs = [(s, cast(str, question)) for s in sources]
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
        self._require("ask")
        stream = ask_stream(
            self.family,
            pairs,
            candidates=candidates,
            generation=self.generation.merged(**generation),
            load=self._load_settings(batch_size),
        )
        return _progress(stream, total, pairs, "answering") if progress else stream

    # --- reading text ---------------------------------------------------------------------------

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
        sources = expand_inputs(images)
        stream = self.read_iter(
            sources, page=page, batch_size=batch_size, progress=progress, **generation
        )
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
        self._require("read")
        stream = read_stream(
            self.family,
            sources,
            page=page,
            generation=self.generation.merged(**generation),
            load=self._load_settings(batch_size),
        )
        return _progress(stream, total, sources, "reading") if progress else stream

    # --- matching, classification, embeddings ---------------------------------------------------

    def match(
        self, images: Any, texts: str | list[str], *, batch_size: int | None = None
    ) -> Match | list[Match]:
        """Score texts against images: cosine similarity, softmax over the texts, and (BLIP
        ITM) the matching head's probability."""
        sources = expand_inputs(images)
        stream = self.match_iter(sources, texts, batch_size=batch_size)
        return self._collect(_is_single(images), stream)

    def match_iter(
        self,
        sources: Iterable[ImageSource],
        texts: str | list[str],
        *,
        batch_size: int | None = None,
    ) -> Iterator[Match]:
        """Stream matches for already-expanded sources (texts are encoded once)."""
        self._require("match")
        return match_stream(self.family, sources, texts, load=self._load_settings(batch_size))

    def classify(
        self,
        images: Any,
        labels: list[str] | None = None,
        *,
        templates: str | tuple[str, ...] = ("a photo of a {}.",),
        top_k: int = 5,
        batch_size: int | None = None,
    ) -> Classification | list[Classification]:
        """Top-k labels per image.

        Args:
            labels: zero-shot label names (CLIP, BLIP ITC); for supervised classifiers (ViT),
                None means all the checkpoint's classes, or a subset of them.
            templates: prompt templates with `{}` for the label, or "ensemble" for the
                CLIP paper's 7-template ensemble.
        """
        sources = expand_inputs(images)
        stream = self.classify_iter(
            sources, labels, templates=templates, top_k=top_k, batch_size=batch_size
        )
        return self._collect(_is_single(images), stream)

    def classify_iter(
        self,
        sources: Iterable[ImageSource],
        labels: list[str] | None = None,
        *,
        templates: str | tuple[str, ...] = ("a photo of a {}.",),
        top_k: int = 5,
        batch_size: int | None = None,
    ) -> Iterator[Classification]:
        """Stream classifications for already-expanded sources."""
        self._require("classify")
        if templates == "ensemble":
            templates = ENSEMBLE_TEMPLATES
        elif isinstance(templates, str):
            templates = (templates,)
        return classify_stream(
            self.family,
            sources,
            labels,
            templates=tuple(templates),
            top_k=top_k,
            load=self._load_settings(batch_size),
        )

    def embed(self, images: Any = None, *, texts: str | list[str] | None = None) -> np.ndarray:
        """L2-normalised embeddings, float32 (N, D), of images or of texts.

        Raises ImageError naming every image that could not be read.
        """
        self._require("embed")
        if (images is None) == (texts is None):
            raise ValueError("give images or texts (one of them)")
        if texts is not None:
            from im2text.tasks._common import clean_texts

            return self.family.embed_texts(clean_texts(texts, "text")).numpy()  # type: ignore[attr-defined]
        rows = list(self.embed_iter(expand_inputs(images)))
        errors = [str(v) for _, v in rows if isinstance(v, BaseException)]
        if errors:
            raise ImageError("; ".join(errors))
        return np.stack([v for _, v in rows if not isinstance(v, BaseException)]).astype(np.float32)

    def embed_iter(
        self, sources: Iterable[ImageSource], *, batch_size: int | None = None
    ) -> Iterator[tuple[str, np.ndarray | BaseException]]:
        """(key, vector or error) per image, in order (what the index builder uses)."""
        self._require("embed")
        return embed_stream(self.family, sources, load=self._load_settings(batch_size))

    def save(self, directory: str | Path) -> Path:
        """Save weights, processor and preset metadata so `im2text.load(directory)` restores it."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        self.family.save_pretrained(str(out))
        _write_metadata(out, self.preset, source=self.name)
        return out


def load(
    model: str = "blip-base",
    *,
    device: str = "auto",
    dtype: str = "auto",
    revision: str | None = None,
    batch_size: int = 8,
    num_workers: int = 2,
    max_pixels: int = LoadSettings.max_pixels,
) -> Model:
    """Load a model by preset name (`im2text.list_models()`), Hub id, or local directory.

    Offline, a model that is neither local nor cached fails at once with a one-line hint.
    """
    settings = LoadSettings(
        device=device,
        dtype=dtype,
        revision=revision,
        batch_size=batch_size,
        num_workers=num_workers,
        max_pixels=max_pixels,
    )
    source, preset, name, local = _loading.resolve(model, revision)
    dev = resolve_device(device)
    if preset is not None and not FAMILIES[preset.family].needs_weights:
        # Engines such as rapidocr carry their own weights: nothing to fetch.
        family = FAMILIES[preset.family].from_pretrained(name, device=dev, dtype=torch.float32)
        return Model(family, name=name, preset=preset, settings=settings)
    revision = revision or (preset.revision if preset else None)
    hub = _loading.hub_options(source, name, revision=revision, local=local)
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(source, **hub)
    family_cls = family_for_config(config.model_type, getattr(config, "architectures", None))
    family = family_cls.from_pretrained(source, device=dev, dtype=resolve_dtype(dtype, dev), **hub)
    return Model(family, name=name, preset=preset, settings=settings)


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


def _is_single(images: Any) -> bool:
    if isinstance(images, (list, tuple)):
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

    if total is None and hasattr(inputs, "__len__"):
        total = len(inputs)  # type: ignore[arg-type]
    with tqdm(total=total, unit="img", desc=desc, dynamic_ncols=True) as bar:
        for item in stream:
            bar.update(1)
            yield item
