#!/usr/bin/env bash
# `make run`: migrate, seed demo users and campaigns, then run the web server and a real Celery
# worker side by side. Ctrl-C stops both.
#   scripts/run.sh PORT            production server (gunicorn, DEBUG off, static files by whitenoise)
#   scripts/run.sh PORT --demo     the same, then the demo loop against it
#   scripts/run.sh PORT --dev      Django's runserver with autoreload and DEBUG on (`make dev`)
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${1:-8000}"
MODE="${2:-}"
PY=.venv/bin/python
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
# Local use is plain HTTP on 127.0.0.1: no HTTPS redirect or secure-only cookies unless asked for.
export DJANGO_SECURE_SSL_REDIRECT="${DJANGO_SECURE_SSL_REDIRECT:-false}" DJANGO_SECURE_COOKIES="${DJANGO_SECURE_COOKIES:-false}"
# `make run` seeds the demo users and campaigns (and `make demo` runs the demo): the demo app is on
# here even against PostgreSQL, where production settings leave it out.
export DEMO_APP="${DEMO_APP:-true}"
if [ "$MODE" = "--dev" ]; then
  export DJANGO_DEBUG="${DJANGO_DEBUG:-true}"
else
  export DJANGO_DEBUG="${DJANGO_DEBUG:-false}"
fi

mkdir -p var
$PY manage.py migrate --no-input
$PY manage.py seed_demo
[ "$MODE" = "--dev" ] || $PY manage.py collectstatic --no-input -v 0

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
if [ "$MODE" = "--dev" ]; then
  $PY manage.py runserver "127.0.0.1:${PORT}" &
else
  # Workers and threads from config/gunicorn.py (WEB_CONCURRENCY etc. override; docs/operations.md).
  GUNICORN_BIND="127.0.0.1:${PORT}" .venv/bin/gunicorn -c config/gunicorn.py config.wsgi &
fi
pids+=($!)
echo "Web: http://127.0.0.1:${PORT}/   API docs: http://127.0.0.1:${PORT}/api/docs/   Worker log: var/worker.log"
if [ "$MODE" = "--demo" ]; then
  $PY manage.py demo --report var/demo-report.json --base-url "http://127.0.0.1:${PORT}" || echo "demo failed; see the output above"
fi
wait -n "${pids[@]}"
