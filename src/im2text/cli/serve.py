"""`im2text serve`: the HTTP server. Every flag's default is `ServeConfig`'s."""

from __future__ import annotations

import argparse
import os
from typing import Any

from im2text.cli._common import (
    EXIT_OK,
    add_backend_args,
    backend_options,
    default,
    field_help,
    with_default,
)
from im2text.serve.config import ServeConfig

MB = 1024 * 1024
# ServeConfig fields given in other units or ways on the command line.
_SPECIAL = {
    "api_keys",
    "max_body_bytes",
    "max_image_bytes",
    "url_allow_networks",
    "allow_remote_urls",
    "allowed_hosts",
    "allowed_origins",
    "backend",
    "int8",
}


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("serve", help="serve models over HTTP (API, OpenAI chat, compare page)")
    p.add_argument("models", nargs="+", help="presets, Hub ids or dirs to serve")
    for name, value in _plain_fields():
        flag = "--" + name.replace("_", "-").removesuffix("-s")
        p.add_argument(
            flag, dest=name, type=type(value), default=value, help=with_default(ServeConfig, name)
        )
    add_backend_args(p)
    p.add_argument(
        "--api-key",
        action="append",
        default=[],
        help="accepted Bearer key (repeatable; or env IM2TEXT_API_KEYS=a,b)",
    )
    p.add_argument(
        "--max-body-mb",
        type=float,
        default=default(ServeConfig, "max_body_bytes") / MB,
        help=field_help(ServeConfig)["max_body_bytes"] + " (MB)",
    )
    p.add_argument(
        "--max-image-mb",
        type=float,
        default=default(ServeConfig, "max_image_bytes") / MB,
        help=field_help(ServeConfig)["max_image_bytes"] + " (MB)",
    )
    p.add_argument(
        "--allow-remote-urls",
        action="store_true",
        help="fetch http(s) image URLs (private/loopback/metadata addresses refused)",
    )
    p.add_argument(
        "--url-allow-network",
        action="append",
        default=[],
        metavar="CIDR",
        help=field_help(ServeConfig)["url_allow_networks"],
    )
    p.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a Host name the server answers to besides localhost and the bound address "
        "(repeatable; '*' for any) — others are refused against DNS rebinding",
    )
    p.add_argument(
        "--allowed-origin",
        action="append",
        default=[],
        metavar="URL",
        help="a web origin whose pages may POST here (repeatable); other cross-origin posts "
        "are refused",
    )
    p.set_defaults(func=_cmd_serve)


def _plain_fields() -> list[tuple[str, Any]]:
    import dataclasses

    return [
        (f.name, f.default)
        for f in dataclasses.fields(ServeConfig)
        if f.name not in _SPECIAL
        and isinstance(f.default, (int, float, str))
        and not isinstance(f.default, bool)
    ]


def _cmd_serve(args: argparse.Namespace) -> int:
    from im2text.serve import run

    env_keys = [k for k in os.environ.get("IM2TEXT_API_KEYS", "").split(",") if k.strip()]
    config = ServeConfig(
        **{name: getattr(args, name) for name, _ in _plain_fields()},
        api_keys=tuple(args.api_key) + tuple(k.strip() for k in env_keys),
        max_body_bytes=int(args.max_body_mb * MB),
        max_image_bytes=int(args.max_image_mb * MB),
        allow_remote_urls=args.allow_remote_urls,
        url_allow_networks=tuple(args.url_allow_network),
        allowed_hosts=tuple(args.allowed_host),
        allowed_origins=tuple(args.allowed_origin),
        backend=backend_options(args)["backend"],
        int8=args.int8,
    )
    args._loading = True
    run(args.models, config)
    return EXIT_OK
