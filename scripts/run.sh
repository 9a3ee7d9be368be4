#!/usr/bin/env bash
# `make run`: migrate, seed demo users and campaigns, then run the web server and a real Celery
# worker side by side. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${1:-8000}"
DEMO="${2:-}"
PY=.venv/bin/python
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"

mkdir -p var
$PY manage.py migrate --no-input
$PY manage.py seed_demo

pids=()
stop() {
  trap - INT TERM EXIT
  echo; echo "Stopping web server and worker…"
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop INT TERM EXIT

# One worker for both queues in the embedded setup; production runs a separate GPU worker (docs/operations.md).
.venv/bin/celery -A config worker -Q default,gpu --concurrency 1 --loglevel INFO --without-gossip --without-mingle \
  >var/worker.log 2>&1 &
pids+=($!)
$PY manage.py runserver "127.0.0.1:${PORT}" --noreload &
pids+=($!)
echo "Web: http://127.0.0.1:${PORT}/   API docs: http://127.0.0.1:${PORT}/api/docs/   Worker log: var/worker.log"
if [ "$DEMO" = "--demo" ]; then
  $PY manage.py demo --report var/demo-report.json --base-url "http://127.0.0.1:${PORT}" || echo "demo failed; see the output above"
fi
wait -n "${pids[@]}"
