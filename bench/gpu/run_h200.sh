#!/usr/bin/env bash
# Both GPU benchmarks in one call on a lent H200 (see docs/operations.md → "GPU benchmarks").
# The machine has torch but not our pins: wheels of transformers / diffusers / peft (and the two
# small packages they check at import) travel in .whl/ and are installed into /tmp/site first.
# Each script gets its own time limit so one hang cannot eat the other's device time.
set -uo pipefail
OUT=${OUT:-/tmp/gpu-bench}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "wheel install failed"; exit 3; }
  export PYTHONPATH=/tmp/site
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no nvidia-smi"
  "$PY" -c "import torch, transformers, diffusers, peft; print('torch', torch.__version__, '| transformers', transformers.__version__, '| diffusers', diffusers.__version__, '| peft', peft.__version__)"
} 2>&1 | tee "$OUT/versions.txt"
timeout "${REWARD_LIMIT:-200}" "$PY" bench/gpu/reward_7b.py "$@" 2>&1 | tee "$OUT/reward_7b.txt"
echo "reward_7b exit ${PIPESTATUS[0]}" | tee -a "$OUT/reward_7b.txt"
timeout "${POLICY_LIMIT:-220}" "$PY" bench/gpu/policy_flux.py "$@" 2>&1 | tee "$OUT/policy_flux.txt"
echo "policy_flux exit ${PIPESTATUS[0]}" | tee -a "$OUT/policy_flux.txt"
