#!/usr/bin/env bash
# The main job: set up, then caption the sample photos in examples/images into out/captions.jsonl.
#   scripts/caption-samples.sh                 # preset blip-base (needs the Hub, or a cached copy)
#   scripts/caption-samples.sh --model DIR     # any checkpoint folder: fully offline
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null || exit 1
. .venv/bin/activate
mkdir -p out
im2text caption examples/images --output out/captions.jsonl "$@"
code=$?
[ -f out/captions.jsonl ] && cat out/captions.jsonl
exit $code
