"""The fine-tuning loop: `fit()` on in-memory examples, `train()` from a config and datasets.

One loop for every family: the family turns (images, prompts, targets) into the inputs of a
forward pass whose `.loss` is the task's loss (`Family.training_inputs`). Checkpoints are normal
model folders (`im2text.load` and transformers load them), written atomically; `last/` also holds
the optimizer, schedule, RNG and data position so `resume=True` continues exactly.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import torch

from im2text.families.base import ScoredAnswerTrainable
from im2text.train.config import TrainConfig
from im2text.train.objectives import check_objectives, default_objectives, trainee


@dataclass(frozen=True)
class Example:
    """One training pair: an image, an optional prompt (the question for VQA), the target text,
    and every acceptable reference (for metrics)."""

    image: Any  # PIL image or path
    target: str
    prompt: str | None = None
    references: tuple[str, ...] = ()
    id: str = ""


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/inf repeatedly: the run stops instead of silently ruining weights."""


def _set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(),
            "torch": torch.get_rng_state()}  # fmt: skip


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def _lr_factor(progress: float, warmup: float) -> float:
    """Linear warm-up, then cosine decay to 0, over progress in [0, 1]."""
    if warmup > 0 and progress < warmup:
        return progress / warmup
    rest = (progress - warmup) / max(1e-8, 1 - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, rest)))


def _accelerator(precision: str, device: torch.device) -> Any:
    """accelerate handles autocast, fp16 loss scaling and, under `accelerate launch`, DDP."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    if precision == "auto":
        cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        precision = "bf16" if cuda_bf16 else "fp32"
    mixed = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[precision]
    AcceleratorState._reset_state(True)  # one process may run several trainings (tests, notebooks)
    return Accelerator(mixed_precision=mixed, cpu=device.type == "cpu")


class _TrainState(TypedDict):
    """Where a run stands; saved with each checkpoint so `resume` continues from it."""

    step: int
    epoch: int
    position: int
    best: float | None
    bad_evals: int
    elapsed: float


def fit(
    model: Any,
    train_set: Sequence[Example],
    val_set: Sequence[Example],
    config: TrainConfig,
    *,
    on_step: Callable[[int, float], None] | None = None,
) -> dict[str, Any]:
    """Fine-tune `model` (an `im2text.Model`) on `train_set`; evaluate on `val_set`.

    Returns a summary: steps, best metric, paths. Writes `config.output` as it goes.
    """
    if not train_set:
        raise ValueError("the training set is empty: nothing to train on")
    family = model.family
    _require_trainable(family)
    objectives = _objectives(family, config)  # refused runs claim no folder
    if config.lora is None:  # the family's default, recorded as chosen
        config = replace(config, lora=_lora_by_default(family, objectives))
    if config.metric is None:
        config = _with_default_metric(config, val_set, objectives)
    out = Path(config.output)
    _claim_run_folder(out, config)
    net = family.model
    device = family.device
    _set_seed(config.seed)

    family.training_objectives = objectives
    family.prepare_for_training()  # the family's own rule (BLIP-2: the LLM stays frozen)
    if config.freeze_vision is not None:  # asked for either way: over the family's default
        for p in family.vision_parameters():
            p.requires_grad_(not config.freeze_vision)
    if config.lora:
        net = _add_lora(family, config)
    # The module trained: the model, plus heads when ITC / ITM join (its forward sums the losses).
    net = trainee(family, net, objectives)
    params = [p for p in net.parameters() if p.requires_grad]
    if not params:
        raise ValueError("nothing to train: every parameter is frozen")
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr,
    )  # fmt: skip
    steps_per_epoch = max(1, math.ceil(len(train_set) / (config.batch_size * config.grad_accum)))
    total_steps = config.max_steps or (
        math.ceil((config.epochs or 1.0) * steps_per_epoch) if config.epochs else None
    )
    budget = config.max_minutes * 60 if config.max_minutes else None

    state: _TrainState = {
        "step": 0, "epoch": 0, "position": 0, "best": None, "bad_evals": 0, "elapsed": 0.0
    }  # fmt: skip
    last = out / "last"
    if config.resume and (last / "trainer_state.pt").exists():
        saved = torch.load(last / "trainer_state.pt", weights_only=False)
        net.load_state_dict(saved["model"], strict=False)
        opt.load_state_dict(saved["optimizer"])
        state = saved["state"]
        _set_rng_state(saved["rng"])

    accelerator = _accelerator(config.precision, device)
    train_net, opt = accelerator.prepare(net, opt)  # the same module on one CPU/GPU; DDP on many
    log = _Log(out)
    t_start = time.monotonic() - state["elapsed"]
    non_finite = 0
    batches = _Prefetcher(train_set, family, config, state["epoch"], state["position"])
    net.train()

    def progress() -> float:
        fracs = []
        if total_steps:
            fracs.append(state["step"] / total_steps)
        if budget:
            fracs.append((time.monotonic() - t_start) / budget)
        return max(fracs) if fracs else 0.0

    while progress() < 1.0:
        opt.zero_grad(set_to_none=True)
        loss_sum = 0.0
        parts: dict[str, float] = {}  # each objective's loss, when there are several
        for _ in range(config.grad_accum):
            inputs, (state["epoch"], state["position"]) = batches.next()
            inputs = {k: family._to_device(v) for k, v in inputs.items()}
            with accelerator.autocast():
                output = train_net(**inputs)
                loss = output.loss / config.grad_accum
            accelerator.backward(loss)  # scales the loss for fp16
            loss_sum += float(loss.detach())
            for k, v in getattr(output, "losses", {}).items():
                parts[k] = parts.get(k, 0.0) + float(v) / config.grad_accum
        if not math.isfinite(loss_sum):
            non_finite += 1
            opt.zero_grad(set_to_none=True)
            log.event(state["step"], "non-finite loss: step skipped")
            if non_finite >= 3:
                raise NonFiniteLossError(
                    f"loss was NaN/inf {non_finite} steps in a row at step {state['step']}; "
                    "lower the learning rate or use precision=bf16/fp32"
                )
            continue
        non_finite = 0
        for g in opt.param_groups:
            g["lr"] = config.lr * _lr_factor(progress(), config.warmup)
        accelerator.clip_grad_norm_(params, config.max_grad_norm)  # unscales first under fp16
        opt.step()  # skipped by the fp16 scaler when gradients overflowed
        state["step"] += 1
        log.train(state["step"], loss_sum, opt.param_groups[0]["lr"], parts)
        if on_step:
            on_step(state["step"], loss_sum)
        done = progress() >= 1.0
        if state["step"] % config.eval_every == 0 or done:
            state["elapsed"] = time.monotonic() - t_start
            stop = False
            if accelerator.is_main_process:  # one writer of checkpoints and logs
                stop = _evaluate_and_save(model, net, opt, val_set, config, state, log)
            accelerator.wait_for_everyone()
            net.train()
            if stop:
                break
    batches.pool.shutdown(wait=False, cancel_futures=True)
    net.eval()
    log.plot()
    for image, why in batches.skipped.items():
        log.event(state["step"], f"skipped unreadable image {image} ({why})")
    # Only folders that exist are named: no validation set means no best/.
    dirs = {f"{name}_dir": str(out / name) if (out / name).is_dir() else None
            for name in ("best", "last")}  # fmt: skip
    return {"steps": state["step"], "best": state["best"], "output": str(out), **dirs,
            "skipped_images": len(batches.skipped)}  # fmt: skip


class _Prefetcher:
    """Prepares the next batch (decode + processor) in a thread while the model trains on this
    one. The cursor it returns is the data position *after* the batch handed out, which is what
    a checkpoint must record, so a resumed run sees exactly the batches it has not seen."""

    def __init__(self, data: Sequence[Example], family: Any, config: TrainConfig, epoch: int,
                 position: int):  # fmt: skip
        from concurrent.futures import ThreadPoolExecutor

        self.data, self.family, self.size = data, family, config.batch_size
        self.seed = config.seed
        # VQA: train on the prompt the family answers with (e.g. BLIP-2's "Question: q Answer:").
        self.vqa = config.task == "vqa"
        self.cursor = (epoch, position)
        self.skipped: dict[str, str] = {}  # image -> why it was left out
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="im2text-train")
        self.pending = self._submit()

    def _submit(self) -> Any:
        epoch, position = self.cursor
        order = _epoch_order(len(self.data), self.seed, epoch)
        if position >= len(order):
            epoch, position = epoch + 1, 0
            order = _epoch_order(len(self.data), self.seed, epoch)
        idx = order[position : position + self.size]
        self.cursor = (epoch, position + len(idx))
        batch = [self.data[i] for i in idx]
        return self.pool.submit(self._prepare, batch), self.cursor

    def _prepare(self, batch: list[Example]) -> dict[str, Any] | None:
        """The batch's model inputs; an image that cannot be read drops its own example
        (counted in `skipped`), never the batch. None when no image of the batch could be read."""
        from im2text.images import ImageError

        images, good = [], []
        for ex in batch:
            try:
                images.append(_image(ex.image))
                good.append(ex)
            except (ImageError, OSError) as e:
                self.skipped.setdefault(str(ex.image), f"example {ex.id or '?'}: {e}")
        if not good:
            return None
        prompts = [
            self.family.question_prompt(ex.prompt) if self.vqa and ex.prompt else ex.prompt
            for ex in good
        ]
        if self.vqa and isinstance(self.family, ScoredAnswerTrainable):
            answers = [ex.references or (ex.target,) for ex in good]
            return self.family.scored_training_inputs(images, prompts, answers)
        return self.family.training_inputs(images, prompts, [ex.target for ex in good])

    def next(self) -> tuple[dict[str, Any], tuple[int, int]]:
        for _ in range(len(self.data) // max(1, self.size) + 2):  # a whole epoch, at most
            future, cursor = self.pending
            self.pending = self._submit()
            inputs = future.result()
            if inputs is not None:
                return inputs, cursor
        raise ValueError(f"no training image could be read ({len(self.skipped)} failed)")


def _claim_run_folder(out: Path, config: TrainConfig) -> None:
    """A run folder holds one run: another run's folder is refused unless --resume (same model
    and task) or --overwrite."""
    import json
    import shutil

    run_file = out / "run.json"
    mine = {"model": config.model, "task": config.task, "stage": config.stage}
    used = out.is_dir() and any(out.iterdir())
    if used and not config.resume and not config.overwrite:
        raise ValueError(
            f"{out} already holds a run; use --resume to continue it, --overwrite to replace "
            "it, or another --output"
        )
    if used and config.resume and run_file.is_file():
        theirs = json.loads(run_file.read_text())
        if {k: theirs.get(k) for k in mine} != mine:
            raise ValueError(
                f"--resume: {out} is a run of {theirs.get('model')!r} ({theirs.get('task')}), "
                f"not {config.model!r} ({config.task})"
            )
    if used and config.overwrite and not config.resume:
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    from im2text.jobs.records import atomic_write

    atomic_write(run_file, json.dumps(mine) + "\n")


def _objectives(family: Any, config: TrainConfig) -> tuple[str, ...]:
    """The run's objectives (--objectives, else the task's default), checked against the
    family: retrieval needs a dual encoder, captions and VQA a generative model."""
    from im2text.families import Embedder

    dual = isinstance(family, Embedder)
    if config.task == "retrieval" and not dual:
        raise ValueError(
            f"--task retrieval trains dual encoders (CLIP, BLIP ITM), not {family.key} models; "
            "a captioner learns ITC/ITM beside LM with --task caption --objectives itc,itm,lm"
        )
    if config.task != "retrieval" and dual:
        raise ValueError(f"{family.key} models train with --task retrieval only")
    chosen = config.objectives or default_objectives(family, config.task, config.stage)
    objectives = check_objectives(family, config.task, chosen, config.stage)
    if config.lora and "lm" not in objectives:
        raise ValueError("--lora adapts the language model, which this run does not train")
    return objectives


def _with_default_metric(
    config: TrainConfig, val_set: Sequence[Example], objectives: tuple[str, ...]
) -> TrainConfig:

    if config.task == "retrieval" or "lm" not in objectives:  # nothing generated: retrieval
        return replace(config, metric="mean_recall")
    if config.task == "caption":
        return replace(config, metric="cider")
    # The official VQA accuracy compares against 10 annotators (min(1, matches / 3)); with
    # one reference answer per question it can never exceed 1/3, so exact match is the metric.
    many = val_set and sum(len(ex.references) >= 3 for ex in val_set) >= len(val_set) / 2
    return replace(config, metric="vqa_accuracy" if many else "exact")


def _epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1000 + epoch)).tolist()


def _image(ref: Any) -> Any:
    from PIL import Image

    from im2text.images import load_image

    return ref if isinstance(ref, Image.Image) else load_image(ref)


def _evaluate_and_save(model, net, opt, val_set, config, state, log) -> bool:  # type: ignore[no-untyped-def]
    """Validate, keep the best checkpoint, write `last/`; True = stop early."""
    examples = list(val_set)[: config.eval_limit]
    if config.task != "retrieval" and "lm" not in model.family.training_objectives:
        # Caption data, no generation learnt (BLIP-2 stage 1): judged by the ITC features.
        net.eval()
        metrics = retrieval_metrics(model, examples, parts=net.parts)
    else:
        metrics = evaluate_examples(model, examples, config)
    log.eval(state["step"], metrics)
    value = metrics.get(config.metric)
    improved = value is not None and (state["best"] is None or value > state["best"])
    if improved:
        state["best"] = value
        state["bad_evals"] = 0
        _save_model(model, Path(config.output) / "best", config)
    else:
        state["bad_evals"] += 1
    payload = {"model": net.state_dict(), "optimizer": opt.state_dict(),
               "state": dict(state), "rng": _rng_state()}  # fmt: skip
    _save_model(model, Path(config.output) / "last", config, trainer_state=payload)
    return config.patience is not None and state["bad_evals"] >= config.patience


def evaluate_examples(model: Any, examples: list[Example], config: TrainConfig) -> dict[str, Any]:
    """The task's metrics on examples: exact match + CIDEr/BLEU-4 (captions) or VQA accuracy."""
    if not examples:
        return {}
    model.family.model.eval()
    if config.task == "retrieval":
        return retrieval_metrics(model, examples)
    from im2text.images import ImageSource

    sources = [ImageSource(ex.id or str(i), _image(ex.image)) for i, ex in enumerate(examples)]
    gen = {"max_new_tokens": config.max_new_tokens, "num_beams": 1}
    if config.task == "vqa":
        outs = model.ask_iter(list(zip(sources, [ex.prompt for ex in examples], strict=True)),
                              **gen)  # fmt: skip
        preds = [a.text for a in outs]
    elif model.can("caption"):
        preds = [c.text for c in model.caption_iter(sources, prompt=config.prompt, **gen)]
    else:  # a reader fine-tuned on (image, text) pairs (GOT-OCR): judged on what it reads
        preds = [r.text for r in model.read_iter(sources, **gen)]
    refs = [list(ex.references) or [ex.target] for ex in examples]
    metrics: dict[str, Any] = {
        "exact": sum(p.strip().lower() in {r.strip().lower() for r in rs}
                     for p, rs in zip(preds, refs, strict=True)) / len(preds)
    }  # fmt: skip
    ids = [str(i) for i in range(len(preds))]
    if config.task == "vqa":
        from im2text.evaluate.vqa import vqa_accuracy

        # The official formula needs the 10 annotators' answers (VQAv2); skip it otherwise.
        if sum(len(r) >= 3 for r in refs) >= len(refs) / 2:
            acc = vqa_accuracy(
                dict(zip(ids, preds, strict=True)), dict(zip(ids, refs, strict=True))
            )
            metrics["vqa_accuracy"] = acc["overall"]
    else:
        from im2text.evaluate.captions import caption_metrics

        scores = caption_metrics(
            dict(zip(ids, preds, strict=True)),
            dict(zip(ids, refs, strict=True)),
            metrics=("Bleu", "CIDEr"),
        )
        metrics["cider"] = scores.get("CIDEr")
        metrics["bleu4"] = scores.get("Bleu_4")
    return metrics


def retrieval_metrics(model: Any, examples: Sequence[Example], parts: Any = None) -> dict[str, Any]:
    """Recall@1/5/10 image->text and text->image, and their mean (`mean_recall`), from the
    model's `embed`, or from the ITC features of objective `parts` being trained (BLIP-2
    stage 1, one feature per query).

    A caption that describes several images has no single right image, so each distinct text
    is kept once (with the first image it describes)."""
    from im2text.evaluate.retrieval import retrieval_recall

    seen: dict[str, Example] = {}
    for ex in examples:
        seen.setdefault(ex.target.strip().lower(), ex)
    kept = list(seen.values())
    images, texts = [_image(ex.image) for ex in kept], [ex.target for ex in kept]
    if parts is not None:
        from im2text.train.objectives import parts_similarity

        sim = parts_similarity(parts, images, texts, model.family.device)
    else:
        sim = model.embed(images) @ model.embed(texts=texts).T
    recall = retrieval_recall(sim, list(range(len(kept))))
    return {**recall, "pairs": len(kept)}


def _save_model(model: Any, target: Path, config: TrainConfig, trainer_state: Any = None) -> None:
    """Write a checkpoint folder atomically: build it beside the target, fsync, swap it in."""
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    net = model.family.model
    if config.lora and config.lora_merge and _is_peft(net):
        merged = net.merge_and_unload()
        model.family.model = merged
        model.save(tmp)
        model.family.model = net
    else:
        model.save(tmp)
    if trainer_state is not None:
        torch.save(trainer_state, tmp / "trainer_state.pt")
    (tmp / "train_config.json").write_text(json.dumps(asdict(config), indent=2) + "\n")
    for f in tmp.rglob("*"):
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


def _require_trainable(family: Any) -> None:
    from im2text.families import Trainable

    if not isinstance(family, Trainable):
        raise ValueError(f"training {family.key} models is not supported")


def _is_peft(net: Any) -> bool:
    from peft import PeftModel

    return isinstance(net, PeftModel)


def _lora_by_default(family: Any, objectives: Sequence[str]) -> bool:
    """LoRA when the family asks for it above a size and the run trains the LM."""
    above = family.lora_by_default_above
    if above is None or "lm" not in objectives:
        return False
    return sum(p.numel() for p in family.model.parameters()) > above


def _add_lora(family: Any, config: TrainConfig) -> Any:
    """Wrap the language model with LoRA adapters; everything else is frozen but the modules
    the family trains in full beside them (a VLM's connector)."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as e:
        raise ImportError("LoRA needs peft: pip install 'im2text[train]'") from e
    net = family.model
    for p in net.parameters():
        p.requires_grad_(False)
    from im2text.families import LoraAdaptable

    adaptable = isinstance(family, LoraAdaptable)
    targets = family.lora_targets() if adaptable else ["q_proj", "v_proj"]
    full = family.lora_trained_in_full() if adaptable else []
    lora = LoraConfig(r=config.lora_rank, lora_alpha=2 * config.lora_rank, lora_dropout=0.05,
                      target_modules=targets, modules_to_save=full or None)  # fmt: skip
    peft_model = get_peft_model(net, lora)
    family.model = peft_model
    return peft_model


class _Log:
    """metrics.jsonl + metrics.csv (and TensorBoard when installed), and a curves PNG."""

    def __init__(self, out: Path):
        self.out = out
        self.rows: list[dict[str, Any]] = []
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb: SummaryWriter | None = SummaryWriter(str(out / "tensorboard"))
        except Exception:
            self.tb = None

    def _write(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        with open(self.out / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        csv_path = self.out / "metrics.csv"
        new = not csv_path.exists()
        with open(csv_path, "a", encoding="utf-8") as f:
            if new:
                f.write("step,kind,name,value\n")
            for k, v in row.items():
                if k not in ("step", "kind") and isinstance(v, (int, float)):
                    f.write(f"{row['step']},{row['kind']},{k},{v}\n")

    def train(
        self, step: int, loss: float, lr: float, parts: dict[str, float] | None = None
    ) -> None:
        named = {f"loss_{k}": v for k, v in (parts or {}).items()}
        self._write({"step": step, "kind": "train", "loss": loss, "lr": lr, **named})
        if self.tb:
            self.tb.add_scalar("train/loss", loss, step)
            for k, v in named.items():
                self.tb.add_scalar(f"train/{k}", v, step)

    def eval(self, step: int, metrics: dict[str, Any]) -> None:
        self._write({"step": step, "kind": "eval", **metrics})
        if self.tb:
            for k, v in metrics.items():
                if isinstance(v, (int, float)):
                    self.tb.add_scalar(f"val/{k}", v, step)

    def event(self, step: int, message: str) -> None:
        self._write({"step": step, "kind": "event", "message": message})

    def plot(self) -> None:
        from im2text.train.plot import plot_curves

        plot_curves(self.rows, self.out / "curves.png")


def examples_from_dataset(
    records: Sequence[Any], task: str, *, for_training: bool
) -> list[Example]:
    """Dataset records -> Examples. Training: one example per reference caption (more signal);
    VQA targets are the most common annotator answer. Validation: one example per record."""
    out: list[Example] = []
    for r in records:
        if task == "vqa":
            answers = [a for a in r.answers if str(a).strip()]
            if not answers:
                raise ValueError(
                    f"question {r.question_id or '?'} ({r.question!r}) has no non-empty answer: "
                    "VQA training needs an answer for every question"
                )
            target = max(set(answers), key=answers.count)
            out.append(Example(r.image, target, r.question, tuple(answers), r.question_id))
        elif for_training:
            out.extend(Example(r.image, c, None, tuple(r.captions), r.id) for c in r.captions)
        else:
            out.append(Example(r.image, r.captions[0], None, tuple(r.captions), r.id))
    return out


def train(config: TrainConfig) -> dict[str, Any]:
    """Fine-tune `config.model` on `config.train` (what `im2text train` runs)."""
    import im2text
    from im2text.data import load_dataset, split

    if not config.train:
        raise ValueError("no training data given (train=...)")
    data_task = "caption" if config.task == "retrieval" else config.task  # image-text pairs
    train_records = load_dataset(config.train, task=data_task)
    if config.val:
        val_records = load_dataset(config.val, task=data_task)
    else:
        train_records, val_records = split(
            train_records, val_fraction=config.val_fraction, seed=config.seed
        )
    if config.val and Path(config.val).resolve() == Path(config.train).resolve():
        warnings.warn(
            f"--val is the training data ({config.val}): validation scores will be optimistic",
            stacklevel=2,
        )
    train_set = examples_from_dataset(train_records, config.task, for_training=True)
    val_set = examples_from_dataset(val_records, config.task, for_training=False)
    if not train_set:
        raise ValueError(f"the training split of {config.train} is empty: nothing to train on")
    model = im2text.load(config.model, device=config.device, num_workers=config.num_workers)
    train_set, cut = truncate_targets(model.family, train_set)
    summary = fit(model, train_set, val_set, config)
    summary["truncated_texts"] = cut
    return summary


def truncate_targets(family: Any, examples: list[Example]) -> tuple[list[Example], int]:
    """Cut target texts longer than the model's text positions (prompt and specials included),
    so an over-long caption trains on its start instead of crashing its batch. Returns the
    examples and how many were cut."""
    from dataclasses import replace

    limit = family.max_text_tokens
    tok = getattr(family, "tokenizer", None)
    if limit is None or tok is None:
        return examples, 0
    out, cut = [], 0
    for ex in examples:
        room = limit - 4 - (len(tok(ex.prompt).input_ids) if ex.prompt else 0)
        ids = tok(ex.target, add_special_tokens=False).input_ids
        if len(ids) > room > 0:
            ex = replace(ex, target=tok.decode(ids[:room], skip_special_tokens=True))
            cut += 1
        out.append(ex)
    if cut:
        warnings.warn(f"{cut} training text(s) longer than the model's {limit} positions were "
                      "truncated", stacklevel=2)  # fmt: skip
    return out, cut
