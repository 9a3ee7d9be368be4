"""Where the annotator loop's CPU goes, in process: the WSGI application called directly.

A diagnostic beside ``bench/annotation_load.py`` (which measures through gunicorn and HTTP and is
the figure of record): the same ``next`` + submit loop, one annotator, through
``config.wsgi.application`` with DEBUG off, so a change can be weighed in seconds rather than
minutes. Prints per loop: web CPU-ms (this process), PostgreSQL CPU-ms (the connection's backend),
statements per call (as Django's query capture sees them) and, with ``--profile``, the top
functions by own time.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/onereward_hotpath \\
        .venv/bin/python -m research.hot_path_profile --loops 300 [--profile]

It creates (and then reuses) a campaign of ``--items`` open items in that database.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import sys
import time
import uuid

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DJANGO_READ_DOT_ENV_FILE", "false")
os.environ.setdefault("DJANGO_DEBUG", "false")
for _name, _value in {"DJANGO_SECRET_KEY": "hot-path-" + "k" * 40, "ANNOTATOR_ID_SALT": "hot-path-" + "s" * 40,
                      "DJANGO_SECURE_SSL_REDIRECT": "false", "DJANGO_SECURE_COOKIES": "false",
                      "THROTTLE_USER": "100000/min"}.items():
    os.environ.setdefault(_name, _value)


def _setup(n_items: int) -> tuple[int, str]:
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    from django.contrib.auth.models import Group, User
    from rest_framework.authtoken.models import Token

    from annotation.models import Campaign
    sys.path.insert(0, os.getcwd())
    from tests.factories import make_campaign

    user = User.objects.filter(username="hotpath").first()
    if user is None:
        user = User.objects.create_user("hotpath", password="pw-hot-path-1234")  # noqa: S106 (a local profiling account)
        user.groups.add(Group.objects.get(name="annotator"))
    campaign = Campaign.objects.filter(name="hot-path").first()
    if campaign is None:
        campaign = make_campaign(n_samples=n_items, overlap=1, name="hot-path")
    token, _ = Token.objects.get_or_create(user=user)
    return campaign.pk, token.key


def _call(app, path: str, body: dict, token: str) -> tuple[int, dict]:
    raw = json.dumps(body).encode()
    environ = {
        "REQUEST_METHOD": "POST", "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "localhost",
        "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(raw), "wsgi.errors": sys.stderr, "wsgi.version": (1, 0),
        "wsgi.multithread": False, "wsgi.multiprocess": True, "wsgi.run_once": False,
        "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(raw)), "HTTP_HOST": "localhost",
        "HTTP_AUTHORIZATION": f"Token {token}", "REMOTE_ADDR": "127.0.0.1",
    }
    status = []
    chunks = app(environ, lambda s, h, exc=None: status.append(int(s.split()[0])))
    out = b"".join(chunks)
    if hasattr(chunks, "close"):
        chunks.close()
    return status[0], (json.loads(out) if out else {})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loops", type=int, default=300)
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--profile", action="store_true", help="print the top functions by own time")
    args = parser.parse_args()
    campaign, token = _setup(args.items)

    import psutil
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from config.wsgi import application

    def loop(counts: list[int] | None = None) -> None:
        with CaptureQueriesContext(connection) as ctx:
            status, item = _call(application, f"/api/campaigns/{campaign}/next/", {}, token)
        assert status == 200, (status, item)
        n_next = len(ctx.captured_queries)
        answers = {c["slug"]: item["candidates"][0]["id"] for c in item["criteria"]}
        with CaptureQueriesContext(connection) as ctx:
            status, out = _call(application, f"/api/leases/{item['lease']}/submit/",
                                {"answers": answers, "idempotency_key": uuid.uuid4().hex, "active_ms": 1}, token)
        assert status == 201, (status, out)
        if counts is not None:
            counts[:] = [n_next, len(ctx.captured_queries)]

    counts: list[int] = []
    for _ in range(20):  # warm up: imports, caches, the persistent connection
        loop(counts)
    backend = psutil.Process(connection.connection.info.backend_pid)
    me = psutil.Process()
    pg0, web0, t0 = sum(backend.cpu_times()[:2]), sum(me.cpu_times()[:2]), time.perf_counter()
    profiler = cProfile.Profile() if args.profile else None
    if profiler:
        profiler.enable()
    for _ in range(args.loops):
        loop()
    if profiler:
        profiler.disable()
    wall = time.perf_counter() - t0
    pg, web = sum(backend.cpu_times()[:2]) - pg0, sum(me.cpu_times()[:2]) - web0
    n = args.loops
    print("| loops | web CPU-ms/loop | pg CPU-ms/loop | statements next/submit | loops/s |")
    print(f"| {n} | {1e3 * web / n:.2f} | {1e3 * pg / n:.2f} | {counts[0]} / {counts[1]} | {n / wall:.0f} |")
    if profiler:
        stats = pstats.Stats(profiler)
        print(f"Python calls per loop: {stats.total_calls / n:.0f}")
        stats.sort_stats("tottime").print_stats(35)
    print(f"result: {1e3 * (web + pg) / n:.1f} CPU-ms per loop in process (web {1e3 * web / n:.1f} + "
          f"pg {1e3 * pg / n:.1f}), statements {counts[0]} / {counts[1]}")


if __name__ == "__main__":
    main()
