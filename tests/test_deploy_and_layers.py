"""Production settings pass Django's deploy checks; architecture contracts hold."""
from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(args: list[str], **env) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "DJANGO_READ_DOT_ENV_FILE": "false", **env}
    full_env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)  # set for the browser tests' event loop only
    return subprocess.run(args, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=180)


def test_check_deploy_is_clean_in_production_settings():
    result = _run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                  DJANGO_DEBUG="false", DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
                  DJANGO_ALLOWED_HOSTS="label.example.com")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "security." not in result.stdout + result.stderr


def test_import_contracts_hold_engines_never_import_django():
    result = _run([str(Path(sys.executable).parent / "lint-imports")])
    assert result.returncode == 0, result.stdout[-3000:]
    assert "0 broken" in result.stdout


def test_the_web_process_never_imports_torch():
    code = (
        "import django, os, sys; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings'); django.setup();"
        "from django.urls import resolve; import config.urls;"
        "[__import__(m) for m in ('annotation.api.views', 'rewardtrain.api', 'policytrain.api', 'frontend.views')];"
        "print('torch' in sys.modules)"
    )
    result = _run([sys.executable, "-c", code])
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "False"
