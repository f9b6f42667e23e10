#!/usr/bin/env bash
# The GPU path of dml in a few minutes on one GPU: 16-mixed training, GPU evaluation equal
# to the CPU's to 1e-5, DDP over NCCL, torch.compile; one line per check (see gpu_check.py).
# Without CUDA the GPU checks print SKIP and the CPU parts still run.
#
#   scripts/gpu_check.sh                  # PYTHON=.venv/bin/python by default, if present
#   scripts/gpu_check.sh --scale 0.2 --out /tmp/gpu_check
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
default_python=python3
if [[ -x "$here/../.venv/bin/python" ]]; then default_python="$here/../.venv/bin/python"; fi
exec "${PYTHON:-$default_python}" "$here/gpu_check.py" "$@"
