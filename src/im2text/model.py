"""`im2text.load()` and the `Model` it returns: the object users call tasks on."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from im2text import _loading
from im2text.config import GenerationSettings, LoadSettings, Preset
from im2text.engine.device import resolve_device, resolve_dtype
from im2text.families import Family, family_for_model_type
from im2text.images import ImageSource, expand_inputs
from im2text.results import Caption
from im2text.tasks.caption import caption_stream


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

    def __repr__(self) -> str:
        return (
            f"Model(name={self.name!r}, family={self.family.key!r}, "
            f"device={str(self.family.device)!r}, dtype={str(self.family.dtype)!r})"
        )

    @property
    def tasks(self) -> tuple[str, ...]:
        return self.family.tasks

    # --- captioning -----------------------------------------------------------------------------

    def caption(
        self,
        images: Any,
        *,
        prompt: str | None = None,
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
            progress: show a progress bar.
            **generation: any `GenerationSettings` field, e.g. `num_beams=3`,
                `max_new_tokens=30`, `do_sample=True`, `num_return_sequences=3`.

        Returns:
            One `Caption` for a single image (raising `ImageError` if it cannot be read), else a
            list with one `Caption` per image in input order; failed items carry `.error`.
        """
        single = _is_single(images)
        sources = expand_inputs(images)
        results = list(
            self.caption_iter(
                sources, prompt=prompt, batch_size=batch_size, progress=progress, **generation
            )
        )
        if single and len(results) == 1:
            if results[0].error:
                from im2text.images import ImageError

                raise ImageError(results[0].error)
            return results[0]
        return results

    def caption_iter(
        self,
        sources: Iterable[ImageSource],
        *,
        prompt: str | None = None,
        batch_size: int | None = None,
        progress: bool = False,
        total: int | None = None,
        **generation: Any,
    ) -> Iterator[Caption]:
        """Stream captions for already-expanded sources (what bulk jobs use)."""
        settings = self.generation.merged(**generation)
        load = replace(self.settings, batch_size=batch_size or self.settings.batch_size)
        stream = caption_stream(
            self.family,
            sources,
            prompt=prompt if prompt is not None else self.prompt,
            generation=settings,
            load=load,
        )
        if progress:
            stream = _progress(stream, total if total is not None else _len(sources))
        return stream

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
    revision = revision or (preset.revision if preset else None)
    hub = _loading.hub_options(source, name, revision=revision, local=local)
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(source, **hub)
    family_cls = family_for_model_type(config.model_type)
    dev = resolve_device(device)
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


def _len(sources: Iterable[Any]) -> int | None:
    return len(sources) if hasattr(sources, "__len__") else None  # type: ignore[arg-type]


def _progress(stream: Iterator[Caption], total: int | None) -> Iterator[Caption]:
    from tqdm.auto import tqdm

    with tqdm(total=total, unit="img", desc="captioning", dynamic_ncols=True) as bar:
        for item in stream:
            bar.update(1)
            yield item
