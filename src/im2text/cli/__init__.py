"""The `im2text` command line (also `python -m im2text`); one module per command group.

Exit codes (stable, documented in the README):
    0  every item succeeded
    1  unexpected internal error
    2  bad usage (unknown option, invalid value)
    3  the model could not be loaded (not local/cached and the Hub is unreachable, bad directory,
       a checkpoint im2text refuses)
    4  the run finished but some items failed (their records carry `error`)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from im2text.cli import index, models, serve, tasks, train
from im2text.cli._common import (
    EXIT_ERROR,
    EXIT_MODEL,
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_USAGE,
    err,
)

__all__ = [
    "EXIT_ERROR",
    "EXIT_MODEL",
    "EXIT_OK",
    "EXIT_PARTIAL",
    "EXIT_USAGE",
    "build_parser",
    "main",
]


def build_parser() -> argparse.ArgumentParser:
    from im2text import __version__

    parser = argparse.ArgumentParser(
        prog="im2text",
        description="Turn images into text: captions, answers, read text, match scores.",
        epilog="exit codes: 0 ok, 1 internal error, 2 bad usage, 3 model unavailable, "
        "4 some items failed",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (tasks, index, train, serve, models):
        group.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    import im2text
    from im2text.engine.graphs import BackendError

    try:
        return int(args.func(args))
    except im2text.ModelNotAvailableError as e:
        err(f"im2text: {e}")
        return EXIT_MODEL
    except (im2text.CheckpointError, im2text.ModelTooLargeError) as e:
        err(f"im2text: cannot load model {getattr(args, 'model', '')!r}: {e}")
        return EXIT_MODEL
    except BackendError as e:  # an engine not installed, a backend the model can't run on
        err(f"im2text: {e}")
        return EXIT_USAGE
    except (FileNotFoundError, OSError) as e:
        if getattr(args, "_loading", False):
            err(f"im2text: cannot load model {args.model!r}: {e}")
            return EXIT_MODEL
        err(f"im2text: {e}")
        return EXIT_ERROR
    except (ValueError, TypeError) as e:
        err(f"im2text: {e}")
        return EXIT_USAGE
    except ImportError as e:
        err(f"im2text: {e}")
        return EXIT_ERROR
    except KeyboardInterrupt:
        err("im2text: interrupted; rerun the same command to resume")
        return 130


if __name__ == "__main__":
    sys.exit(main())
