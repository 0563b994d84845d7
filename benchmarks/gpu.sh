#!/usr/bin/env bash
# GPU captioning throughput (issue 9): BLIP-base and BLIP-2 OPT-2.7B, random weights at full
# size, batch 32/128/256, end to end from JPEG files, im2text vs transformers' batched generate.
# Run on a machine with a CUDA GPU from the repository root; prints a markdown table.
#   bash benchmarks/gpu.sh [extra gpu_throughput.py flags]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
if [ -x .venv/bin/python ]; then PY=.venv/bin/python; fi
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU visible to torch')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
cd benchmarks
exec "$PY" gpu_throughput.py --device cuda --batches 32,128,256 --images 512 --tokens 20 "$@"
