#!/usr/bin/env bash
# Sourced by `make test`: make sure PostgreSQL, Redis and Chromium are there, or say clearly why not.
# Uses DATABASE_URL / REDIS_URL when set; otherwise local servers on 127.0.0.1, started or
# installed where this machine allows it.

_say() { echo "[services] $*"; }
_fail() { echo "[services] ERROR: $*" >&2; return 1; }
_apt() { command -v apt-get >/dev/null && [ "$(id -u)" = 0 ] && { apt-get update -qq >/dev/null 2>&1; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1; }; }

_pg_ready() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null || (echo > /dev/tcp/127.0.0.1/5432) 2>/dev/null; }
_redis_ready() { (exec 3<>/dev/tcp/127.0.0.1/6379 && printf 'PING\r\n' >&3 && head -c 5 <&3 | grep -q PONG) 2>/dev/null; }

if [ -z "${DATABASE_URL:-}" ]; then
  if ! _pg_ready; then
    _say "PostgreSQL is not answering on 127.0.0.1:5432; trying to start it"
    if ! ls /etc/postgresql >/dev/null 2>&1; then _apt postgresql || true; fi
    if ls /etc/postgresql >/dev/null 2>&1; then
      pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start 2>/dev/null || true
    fi
    for _ in $(seq 1 20); do _pg_ready && break; sleep 0.5; done
    _pg_ready || _fail "no PostgreSQL on 127.0.0.1:5432. Start one (trust auth for user postgres) or set DATABASE_URL." || return 1
  fi
  _say "PostgreSQL ok (127.0.0.1:5432)"
fi

if [ -z "${REDIS_URL:-}" ]; then
  if ! _redis_ready; then
    _say "Redis is not answering on 127.0.0.1:6379; trying to start it"
    command -v redis-server >/dev/null || _apt redis-server || true
    if command -v redis-server >/dev/null; then
      mkdir -p /tmp/onereward-redis
      redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no --dir /tmp/onereward-redis \
        --logfile /tmp/onereward-redis/redis.log >/dev/null 2>&1 || true
    fi
    for _ in $(seq 1 20); do _redis_ready && break; sleep 0.5; done
    _redis_ready || _fail "no Redis on 127.0.0.1:6379. Start one or set REDIS_URL." || return 1
  fi
  _say "Redis ok (127.0.0.1:6379)"
fi

if [ ! -x /usr/bin/chromium ]; then
  _say "installing Chromium (Debian package) for the browser tests"
  _apt chromium || _fail "Chromium is missing and could not be installed (apt-get install chromium)." || return 1
fi
_say "Chromium ok ($(/usr/bin/chromium --version 2>/dev/null | head -1))"
