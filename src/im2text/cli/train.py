"""`im2text train`, `eval`, `compose` and `capfilt`: fine-tuning and evaluation."""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

from im2text.cli._common import EXIT_OK, EXIT_PARTIAL, add_generation_args, field_help
from im2text.train.config import TrainConfig

# TrainConfig fields that are not flags of their own (given another way, or internal).
_NOT_FLAGS = {"num_workers"}
# Short forms, as users know them from other tools.
_SHORT = {"model": ["-m"], "output": ["-o"]}


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("train", help="fine-tune a model on your images (caption or VQA)")
    p.add_argument("--config", help="YAML file of TrainConfig fields (flags override it)")
    # One flag per TrainConfig field; defaults stay None so YAML values are not overridden,
    # and the help states the dataclass default.
    for f in dataclasses.fields(TrainConfig):
        if f.name in _NOT_FLAGS:
            continue
        flag = "--" + f.name.replace("_", "-")
        text = field_help(TrainConfig).get(f.name, "")
        if f.default is not dataclasses.MISSING and f.default is not None:
            text += f" (default: {f.default})"
        kind = str(f.type).split(" ")[0]
        if f.name in ("lora", "freeze_vision"):  # three states: on, off, the family's default
            p.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, help=text)
        elif kind == "bool":
            p.add_argument(
                flag,
                *_SHORT.get(f.name, []),
                dest=f.name,
                action="store_const",
                const=True,
                help=text,
            )
        else:
            conv = {"int": int, "float": float}.get(kind, str)
            p.add_argument(flag, *_SHORT.get(f.name, []), dest=f.name, type=conv, help=text)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("eval", help="score models on a dataset; JSON + HTML report")
    p.add_argument("--model", "-m", action="append", required=True, help="repeat to compare")
    p.add_argument("--data", required=True, help="dataset (same formats as train)")
    p.add_argument("--task", choices=("caption", "vqa", "retrieval"), default="caption")
    p.add_argument("--output", "-o", default="eval", help="report folder")
    p.add_argument("--limit", type=int, help="first N items only")
    p.add_argument("--batch-size", "-b", type=int, default=8)
    p.add_argument("--clip-model", help="also compute CLIPScore / RefCLIPScore with this model")
    p.add_argument("--device", default="auto")
    p.add_argument("--no-progress", action="store_true")
    add_generation_args(p)
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("compose", help="vision encoder + LM -> a trainable captioner / BLIP-2")
    p.add_argument("--encoder", help="e.g. google/vit-base-patch16-224-in21k")
    p.add_argument("--decoder", help="e.g. gpt2")
    p.add_argument("--blip2", action="store_true", help="build BLIP-2: --vision + Q-Former + --llm")
    p.add_argument("--vision", help="BLIP-2: a BLIP / BLIP-2 / InstructBLIP checkpoint's ViT")
    p.add_argument("--llm", help="BLIP-2: any causal or encoder-decoder LM (frozen in training)")
    p.add_argument("--num-query-tokens", type=int, default=32)
    p.add_argument("--qformer", help="BLIP-2: BERT-style encoder to initialise the Q-Former")
    p.add_argument("--qformer-layers", type=int, default=12, help="without --qformer")
    p.add_argument("--qformer-hidden", type=int, default=768, help="without --qformer")
    p.add_argument("--qformer-heads", type=int, default=12, help="without --qformer")
    p.add_argument("--seed", type=int, default=0, help="BLIP-2: the new weights' random seed")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_cmd_compose)

    p = sub.add_parser("capfilt", help="caption + filter images into a training dataset")
    p.add_argument("inputs", nargs="+", help="image files, folders or globs")
    p.add_argument("--captioner", required=True, help="captioning model")
    p.add_argument("--filter", required=True, help="matching model (BLIP ITM or CLIP)")
    p.add_argument("--out", required=True, help="dataset folder (metadata.jsonl)")
    p.add_argument("--num-captions", type=int, default=5)
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--beam", action="store_true", help="beam search instead of sampling")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_capfilt)


def _cmd_train(args: argparse.Namespace) -> int:
    from im2text.train import train

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    overrides = {k: v for k, v in vars(args).items() if k in names and v is not None}
    if args.config:
        config = TrainConfig.from_yaml(args.config, **overrides)
    else:
        missing = [f"--{k}" for k in ("model", "train", "output") if k not in overrides]
        if missing:
            raise ValueError(f"missing {', '.join(missing)} (or give --config)")
        config = TrainConfig(**overrides)
    summary = train(config)
    print(json.dumps(summary, indent=2))
    return EXIT_OK


def _cmd_eval(args: argparse.Namespace) -> int:
    from im2text.cli._common import generation
    from im2text.evaluate.run import evaluate_models

    summary = evaluate_models(
        args.model,
        args.data,
        task=args.task,
        output=args.output,
        limit=args.limit,
        batch_size=args.batch_size,
        generation=generation(args),
        clip_model=args.clip_model,
        device=args.device,
        progress=not args.no_progress,
    )
    print(json.dumps(summary, indent=2))
    return EXIT_OK


def _cmd_compose(args: argparse.Namespace) -> int:
    from im2text.train.compose import compose, compose_blip2

    if args.blip2:
        if not args.vision or not args.llm:
            raise ValueError("compose --blip2 needs --vision and --llm")
        names = ("num_query_tokens", "qformer", "qformer_hidden", "qformer_layers", "qformer_heads",
                 "seed")  # fmt: skip
        options = {name: getattr(args, name) for name in names}  # the flags, one to one
        print(compose_blip2(args.vision, args.llm, args.out, **options))
        return EXIT_OK
    if not args.encoder or not args.decoder:
        raise ValueError("compose needs --encoder and --decoder (or --blip2 --vision --llm)")
    print(compose(args.encoder, args.decoder, args.out))
    return EXIT_OK


def _cmd_capfilt(args: argparse.Namespace) -> int:
    import im2text
    from im2text.jobs.capfilt import capfilt

    counts = capfilt(
        args.inputs,
        im2text.load(args.captioner),
        im2text.load(args.filter),
        args.out,
        num_captions=args.num_captions,
        threshold=args.threshold,
        sample=not args.beam,
        progress=not args.no_progress,
    )
    print(json.dumps(counts))
    return EXIT_PARTIAL if counts["failed"] else EXIT_OK
