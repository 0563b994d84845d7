#!/usr/bin/env bash
# Create .venv (if missing) and install im2text with the given extras, e.g. `scripts/setup.sh dev`.
# torch is installed first as the CPU build pinned here (2.13.0), so that pip never resolves a
# multi-GB CUDA build on CPU-only machines; any torch >= 2.4 works if you install your own first.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip >/dev/null
python -c "import torch" 2>/dev/null || pip install -q "torch==2.13.0" || pip install -q torch
if [ -n "$extras" ]; then
  pip install -q -e ".[${extras}]"
else
  pip install -q -e .
fi
