"""`im2text models` (the presets), `im2text download` (for air-gapped machines) and
`im2text export` (graphs for onnxruntime / openvino)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from im2text.cli._common import EXIT_OK


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("models", help="list model presets")
    p.add_argument("--task", help="only presets for this task (caption, ask, ...)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("download", help="save a model to a folder for offline machines")
    p.add_argument("model", help="preset, Hub id or local dir")
    p.add_argument("--to", required=True, help="destination folder")
    p.add_argument("--revision")
    p.set_defaults(func=_cmd_download)

    from im2text.engine.graphs import BACKENDS

    p = sub.add_parser(
        "export", help="write a model as ONNX / OpenVINO graphs (int8 opt-in) for offline use"
    )
    p.add_argument("model", help="preset, Hub id or local dir")
    p.add_argument("--backend", required=True, choices=[b for b in BACKENDS if b != "torch"])
    p.add_argument("--int8", action="store_true", help="int8 weights (faster, approximate)")
    p.add_argument("--to", required=True, help="destination folder (new or empty)")
    p.add_argument("--revision")
    p.set_defaults(func=_cmd_export)


def _cmd_models(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    import im2text

    presets = im2text.list_models(task=args.task)
    if args.json:
        print(json.dumps([asdict(p) for p in presets], indent=2))
        return EXIT_OK
    width = max(len(p.name) for p in presets) if presets else 4
    for p in presets:
        print(f"{p.name:<{width}}  {','.join(p.tasks):<12}  {p.hub_id:<42}  {p.description}")
    return EXIT_OK


def _cmd_download(args: argparse.Namespace) -> int:
    import im2text

    args._loading = True
    out = im2text.download(args.model, args.to, revision=args.revision)
    print(out)
    return EXIT_OK


def _cmd_export(args: argparse.Namespace) -> int:
    import im2text

    args._loading = True
    model = im2text.load(args.model, device="cpu", revision=args.revision)
    args._loading = False
    out = model.export(args.to, backend=args.backend, quantize="int8" if args.int8 else None)
    print(out)
    return EXIT_OK
