#!/usr/bin/env bash
# The prepared device check (issue: GPU end to end). One command, <= 5 minutes on one H100, from a
# plain checkout plus the carried folder .carry/ (scripts/make-gpu-carry.sh makes it here):
#
#   device run --carry .carry 'bash scripts/gpu-check.sh'
#
# Installs the project offline (pip --no-deps --no-build-isolation -e .), the carried PyNvVideoCodec
# wheel if present, probes CUDA and NVDEC, runs `pytest -m gpu`, then the benchmarks, and writes
# gpu-check.log and gpu-check.json to $OUT (./gpu-check when unset). Without CUDA it still runs,
# on the CPU at --quick sizes, so the script itself is exercised anywhere.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-./gpu-check}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu-check.log") 2>&1
export PYTHONUNBUFFERED=1 PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1
PY=${PYTHON:-python3}

echo "== install (offline)"
$PY -m pip install -q --no-deps --no-build-isolation -e . || echo "install failed: is this the project root?"
for whl in .carry/wheels/pynvvideocodec-*.whl; do
  [ -f "$whl" ] && $PY -m pip install -q --no-deps "$whl" && echo "installed $(basename "$whl")"
done

exec $PY scripts/gpu_check.py --out "$OUT" --budget-s "${GPU_CHECK_BUDGET_S:-285}"
