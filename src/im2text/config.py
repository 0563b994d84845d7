"""Configuration dataclasses. Defaults live here and nowhere else."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class GenerationSettings:
    """How text is decoded. Presets override some fields; call-site keywords override presets."""

    max_new_tokens: int = 30  # hard cap on generated tokens (prompt not counted)
    min_new_tokens: int = 0  # forbid EOS before this many tokens
    num_beams: int = 1  # 1 = greedy (or sampling); >1 = beam search
    do_sample: bool = False  # sample instead of greedy/beam
    temperature: float = 1.0  # sampling temperature (only with do_sample)
    top_k: int = 50  # sampling: keep the k most likely tokens
    top_p: float = 1.0  # sampling: nucleus mass
    num_return_sequences: int = 1  # captions per image (<= num_beams for beam search)
    repetition_penalty: float = 1.0  # >1 discourages repeats (BLIP-large uses 1.0; some use 1.5)
    length_penalty: float = 1.0  # beam search: exponent on length when ranking beams
    seed: int | None = None  # sampling seed, for reproducible samples

    def merged(self, **overrides: Any) -> GenerationSettings:
        """Return a copy with the non-None overrides applied, validated."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = set(overrides) - known
        if unknown:
            raise TypeError(f"unknown generation setting(s): {', '.join(sorted(unknown))}")
        out = dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})
        out.validate()
        return out

    def validate(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be >= 1")
        if self.num_beams < 1 or self.num_return_sequences < 1:
            raise ValueError("num_beams and num_return_sequences must be >= 1")
        if not self.do_sample and self.num_return_sequences > self.num_beams:
            raise ValueError(
                f"num_return_sequences={self.num_return_sequences} needs num_beams >= it "
                "(or do_sample=True)"
            )
        import math

        for name in ("temperature", "top_p", "repetition_penalty", "length_penalty"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"{name} must be finite, got {value}")
        if self.do_sample and self.temperature <= 0:
            raise ValueError("temperature must be > 0 when sampling")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        if self.top_k < 0 or self.min_new_tokens < 0:
            raise ValueError("top_k and min_new_tokens must be >= 0")

    def to_generate_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for transformers' `generate`."""
        kw: dict[str, Any] = dict(
            max_new_tokens=self.max_new_tokens,
            # A preset's minimum never exceeds a call's smaller maximum.
            min_new_tokens=min(self.min_new_tokens, self.max_new_tokens) or None,
            num_beams=self.num_beams,
            do_sample=self.do_sample,
            num_return_sequences=self.num_return_sequences,
            repetition_penalty=self.repetition_penalty,
        )
        if self.num_beams > 1:
            kw["length_penalty"] = self.length_penalty
            kw["early_stopping"] = True
        if self.do_sample:
            kw.update(temperature=self.temperature, top_k=self.top_k, top_p=self.top_p)
        return {k: v for k, v in kw.items() if v is not None}


# Reading and detecting with no settings given: greedy, room for a page of text / many boxes.
LONG_OUTPUT = GenerationSettings(max_new_tokens=256)


@dataclass(frozen=True)
class ReadOptions:
    """How text is read (OCR). Each technique is measured on the scene-text benchmark
    (benchmarks/scene_text.py, docs/PERFORMANCE.md) and on by default because it helps there."""

    pad_small: bool = True  # border around small images / tight crops before text detection
    whole_image: bool = True  # detection finds nothing: recognise the whole image as one line
    split_words: bool = True  # "NOPARKING" -> "NO PARKING" (the raw line is kept as `raw`)
    fold_accents: bool = True  # "galleríes" -> "galleries", only when that is a known word

    def merged(self, **overrides: bool | None) -> ReadOptions:
        """A copy with the non-None overrides applied."""
        for name, value in overrides.items():
            if value is not None and not isinstance(value, bool):
                raise ValueError(f"{name} must be true or false, got {value!r}")
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})


@dataclass(frozen=True)
class LoadSettings:
    """Where and how a model is loaded."""

    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    dtype: str = "auto"  # auto | float32 | float16 | bfloat16 (auto: fp32 on CPU, bf16/fp16 on GPU)
    revision: str | None = None  # Hub revision (branch, tag or commit); presets pin theirs
    batch_size: int = (
        8  # images per forward pass (load() picks GPU_BATCH_SIZE on a GPU if not given)
    )
    num_workers: int = 2  # threads decoding + preprocessing the next batches while the model runs
    max_pixels: int = 50_000_000  # decompression-bomb guard for input images
    backend: str | None = None  # torch | onnxruntime | openvino (None: torch, or an exported
    #                              folder's own backend)
    quantize: str | None = None  # None | "int8": int8 weights (opt-in, approximate)


GPU_BATCH_SIZE = 64  # load()'s batch size on a GPU when none is given


@dataclass(frozen=True)
class Preset:
    """A named, pinned model: the registry's record (see registry.py)."""

    name: str  # short name users type, e.g. "blip-base"
    family: str  # family key in families/ (e.g. "blip")
    hub_id: str  # Hugging Face Hub repository id ("" for engines that ship their own weights)
    tasks: tuple[str, ...]  # tasks this checkpoint is trained for
    revision: str | None = None  # pinned commit where known
    description: str = ""  # one line for `im2text models`
    prompt: str | None = None  # default caption prompt (None = unconditional)
    generation: dict[str, Any] = field(default_factory=dict)  # GenerationSettings overrides
    license: str = ""  # weights' license as stated on the model card
