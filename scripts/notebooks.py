"""Execute the getting-started notebooks in place, so their committed outputs come from a real run.

    .venv/bin/python scripts/notebooks.py [NOTEBOOK ...]   # default: examples/notebooks/*.ipynb

Without Hub access set HF_HUB_OFFLINE=1 (the notebooks then use tiny / from-scratch models).
tests/test_notebooks.py executes the same notebooks in CI.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

FOLDER = Path(__file__).resolve().parents[1] / "examples" / "notebooks"


def execute(path: Path, timeout: int = 600) -> nbformat.NotebookNode:
    """Run every cell (kernel on loopback, cwd = the notebook's folder); raise on a failing cell."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()
    return nb


def main(argv: list[str]) -> None:
    for path in [Path(p) for p in argv] or sorted(FOLDER.glob("*.ipynb")):
        start = time.perf_counter()
        nbformat.write(execute(path), path)
        print(f"{path.name}: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
