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
# Both passes always run; exit code 5 (the arguments selected none of a pass's tests) is fine.
ok() { [ "$1" -eq 0 ] || [ "$1" -eq 5 ]; }
# Everything but the long learning runs, with torch on every core (timing checks, servers, Ray).
first=0
python -m pytest -q --durations=15 -m "not slow" "$@" || first=$?
# The long learning runs (compute only, no tight timing checks): two at a time, one thread each.
# Tiny models gain little from a second thread (1.3x), so two workers finish ~1.5x sooner, and
# one thread each never oversubscribes the cores.
second=0
OMP_NUM_THREADS=1 python -m pytest -q --durations=15 -m slow -n 2 --dist loadgroup "$@" || second=$?
ok "$first" && ok "$second"
