"""Training configuration: one dataclass, loadable from YAML, shared by the CLI and `train()`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class TrainConfig:
    """Everything a fine-tuning run needs. CLI flags map 1:1 onto these fields."""

    model: str  # preset, Hub id or checkpoint dir to start from
    output: str  # run folder: best/, last/, metrics.jsonl, metrics.csv, curves.png
    train: str | None = None  # training data (folder + metadata.jsonl, CSV, COCO/VQAv2 JSON, ...)
    val: str | None = None  # validation data; None = split `val_fraction` off `train`
    task: str = "caption"  # caption | vqa | retrieval (dual encoders: CLIP, BLIP ITM; caption data)
    # Losses summed each step, from lm, itc, itm. Default: lm (caption, vqa); every contrastive /
    # matching objective the model has (retrieval). BLIP captioners take itc,itm,lm.
    objectives: list[str] | None = None
    # BLIP-2's recipe: 1 = the Q-Former against the frozen image encoder (itc, itm, itg; best
    # by retrieval mean_recall), 2 = the Q-Former + projection as soft prompts of the frozen LLM
    # (lm). None = 2 for BLIP-2; other families have no stages.
    stage: int | None = None
    epochs: float | None = None  # passes over the data (fractions allowed)
    max_steps: int | None = None  # optimizer steps (wins over epochs when both are given)
    max_minutes: float | None = None  # wall-clock budget; the LR schedule follows elapsed time
    batch_size: int = 16  # examples per forward pass
    grad_accum: int = 1  # forward passes per optimizer step
    lr: float = 5e-5  # peak learning rate (AdamW)
    weight_decay: float = 0.05  # AdamW weight decay
    warmup: float = 0.05  # share of the run spent warming the LR up linearly
    max_grad_norm: float = 1.0  # gradient clipping
    # Keep the image encoder fixed (faster, less memory). None: the family's default (chat VLMs
    # keep theirs frozen, as LLaVA's recipe does; the others train it); False trains it anyway.
    freeze_vision: bool | None = None
    # Train LoRA adapters (peft) instead of the language model's weights. None: the family's
    # default (chat VLMs above 2B parameters: on; the rest: off).
    lora: bool | None = None
    lora_rank: int = 8  # LoRA rank r
    lora_merge: bool = False  # merge adapters into the weights when saving
    precision: str = "auto"  # auto | fp32 | bf16 | fp16 (fp16 uses loss scaling)
    eval_every: int = 200  # optimizer steps between validations (and checkpoints)
    eval_limit: int = 500  # validation examples used per evaluation
    # What picks the best checkpoint: cider | bleu4 | exact | vqa_accuracy | mean_recall.
    # Default: cider for captions; VQA accuracy when questions have >= 3 reference answers
    # (VQAv2), else exact; mean_recall (R@1/5/10 both ways) for retrieval.
    metric: str | None = None
    patience: int | None = None  # stop after this many evaluations without improvement
    val_fraction: float = 0.1  # share of `train` held out when `val` is not given
    seed: int = 0  # data order, dropout, split
    resume: bool = False  # continue from output/last if it exists
    overwrite: bool = False  # replace a run folder that holds another run
    prompt: str | None = None  # caption prompt the model learns to continue (BLIP-style)
    max_new_tokens: int = 30  # generation length during validation
    num_workers: int = 2  # image loading threads
    device: str = "auto"  # auto | cpu | cuda | mps

    def __post_init__(self) -> None:
        if self.task not in ("caption", "vqa", "retrieval"):
            raise ValueError(f"task must be caption, vqa or retrieval, not {self.task!r}")
        if isinstance(self.objectives, str):  # "itc,itm,lm" from YAML or the CLI
            self.objectives = [o for o in self.objectives.split(",") if o.strip()]
        if self.epochs is None and self.max_steps is None and self.max_minutes is None:
            self.epochs = 1.0
        if self.batch_size < 1 or self.grad_accum < 1:
            raise ValueError("batch_size and grad_accum must be >= 1")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ValueError("precision must be auto, fp32, bf16 or fp16")

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> TrainConfig:
        import yaml

        data = yaml.safe_load(Path(path).read_text()) or {}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"{path}: unknown field(s) {sorted(unknown)}")
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**data)
