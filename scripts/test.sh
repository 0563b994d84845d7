#!/usr/bin/env bash
# Set up everything the test suite needs (from a fresh clone) and run it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-deps.sh
bash scripts/setup.sh dev
. .venv/bin/activate
export HF_HUB_OFFLINE=1
ruff check src tests benchmarks
ruff format --check src tests benchmarks
mypy src/im2text --ignore-missing-imports
python -m pytest -q --durations=25 "$@"
