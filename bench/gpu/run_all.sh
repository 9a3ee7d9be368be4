#!/usr/bin/env bash
# Every engine GPU benchmark as one prepared job (docs/benchmarks.md, "GPU scripts"):
#   reward LoRA (one process), reward full fine-tune (FSDP2 over every visible GPU through torchrun),
#   RL LoRA at 512² and 1024² (one process), RL full fine-tune (FSDP2 over every visible GPU; reported as
#   "needs N ranks" when the engine's memory plan does not fit). Each case gets its own time limit so one
#   hang cannot eat the others'.
#   bash bench/gpu/run_all.sh             # on a GPU machine; tables in $OUT (default /tmp/gpu-bench)
#   bash bench/gpu/run_all.sh --dry-run   # the same cases at tiny sizes on the CPU
# A machine without our pins: wheels of transformers / diffusers / peft (and the small packages they
# check at import) in .whl/ are installed into /tmp/site first (docs/operations.md, "GPU benchmarks").
set -uo pipefail
OUT=${OUT:-/tmp/gpu-bench}
WORK=${BENCH_WORK:-/tmp/gpu-bench-work}
mkdir -p "$OUT" "$WORK"
PY=${PYTHON:-python3}
DRY=""
if [ "${1:-}" = "--dry-run" ]; then DRY="--dry-run"; fi
if [ -z "$DRY" ] && compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "wheel install failed"; exit 3; }
  export PYTHONPATH=/tmp/site
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  "$PY" -c "import torch, transformers, diffusers, peft; print('torch', torch.__version__, '| transformers', transformers.__version__, '| diffusers', diffusers.__version__, '| peft', peft.__version__)"
} 2>&1 | tee "$OUT/versions.txt"
NGPU=$("$PY" -c "import torch; print(torch.cuda.device_count())" 2>/dev/null || echo 0)
status=0
run() {  # name, limit seconds, command...
  local name=$1 limit=$2; shift 2
  timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.txt"
  local rc=${PIPESTATUS[0]}
  echo "$name exit $rc" | tee -a "$OUT/$name.txt"
  [ "$rc" = 0 ] || status=1
}
# The model folders are written once per work folder and reused by the later cases.
run reward_lora "${REWARD_LIMIT:-900}" "$PY" bench/gpu/reward_engine.py --case lora --work "$WORK/reward" $DRY
if [ -z "$DRY" ] && [ "$NGPU" -gt 1 ]; then
  run reward_full "${REWARD_LIMIT:-900}" "$PY" -m torch.distributed.run --standalone --nproc_per_node="$NGPU" \
    bench/gpu/reward_engine.py --case full --work "$WORK/reward"
else
  run reward_full "${REWARD_LIMIT:-900}" "$PY" bench/gpu/reward_engine.py --case full --work "$WORK/reward" $DRY
fi
rm -rf "$WORK/reward"  # 16+ GB of weights: leave the disk to the RL folders
run rl "${RL_LIMIT:-1800}" "$PY" bench/gpu/rl_engine.py --case lora-512 --work "$WORK/rl" $DRY
run rl_1024 "${RL_LIMIT:-1800}" "$PY" bench/gpu/rl_engine.py --case lora-1024 --work "$WORK/rl" $DRY
if [ -z "$DRY" ] && [ "$NGPU" -gt 1 ]; then
  run rl_full "${RL_LIMIT:-1800}" "$PY" -m torch.distributed.run --standalone --nproc_per_node="$NGPU" \
    bench/gpu/rl_engine.py --case full --work "$WORK/rl"
else
  run rl_full "${RL_LIMIT:-1800}" "$PY" bench/gpu/rl_engine.py --case full --work "$WORK/rl" $DRY
fi
rm -rf "$WORK/rl"
grep -h '^result:' "$OUT"/reward_lora.txt "$OUT"/reward_full.txt "$OUT"/rl.txt "$OUT"/rl_1024.txt "$OUT"/rl_full.txt | tee "$OUT/results.txt"
exit $status
