"""Production settings pass Django's deploy checks; architecture contracts hold."""
from __future__ import annotations

import json
import os
import secrets
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(args: list[str], **env) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "DJANGO_READ_DOT_ENV_FILE": "false", **env}
    full_env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)  # set for the browser tests' event loop only
    return subprocess.run(args, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=180)


# What config/test_settings.py exports for the suite; the production checks start without it.
_TEST_ONLY_ENV = ("DJANGO_SECRET_KEY", "ANNOTATOR_ID_SALT", "DJANGO_SECURE_SSL_REDIRECT", "DJANGO_SECURE_COOKIES",
                  "DJANGO_DEBUG", "DJANGO_SECURE_HSTS_SECONDS", "DJANGO_TRUST_X_FORWARDED_PROTO")


def _run_settings(args: list[str], **env) -> subprocess.CompletedProcess:
    """Run with the real config.settings and only the environment given (plus PATH etc.)."""
    full_env = {k: v for k, v in os.environ.items() if k not in _TEST_ONLY_ENV and k != "DATABASE_URL"}
    full_env.update({"DJANGO_SETTINGS_MODULE": "config.settings", "DJANGO_READ_DOT_ENV_FILE": "false", **env})
    full_env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    return subprocess.run(args, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=180)


_PROD = {"DATABASE_URL": "postgres://app@127.0.0.1:5432/onereward", "DJANGO_ALLOWED_HOSTS": "label.example.com"}
_SHOW = [sys.executable, "-c", "import django, json; django.setup(); from django.conf import settings as s; "
         "print(json.dumps([s.DEBUG, s.SECRET_KEY, s.ANNOTATOR_ID_SALT, s.SECURE_SSL_REDIRECT, "
         "s.SESSION_COOKIE_SECURE, s.SECURE_HSTS_SECONDS, s.PASSWORD_HASHERS]))"]


def test_check_deploy_is_clean_in_production_settings():
    # DJANGO_DEBUG unset: production must not need to remember to turn debugging off.
    result = _run_settings([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                           DJANGO_SECRET_KEY=secrets.token_urlsafe(50), ANNOTATOR_ID_SALT=secrets.token_urlsafe(32),
                           **_PROD)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "security." not in result.stdout + result.stderr
    shown = _run_settings(_SHOW, DJANGO_SECRET_KEY="k" * 60, ANNOTATOR_ID_SALT="s" * 40, **_PROD)
    debug, _, _, redirect, secure_cookie, hsts, hashers = json.loads(shown.stdout.splitlines()[-1])
    assert (debug, redirect, secure_cookie, hsts > 0) == (False, True, True, True)
    assert not any("MD5" in h for h in hashers)


@pytest.mark.parametrize(("missing", "env"), [
    ("DJANGO_SECRET_KEY", {"ANNOTATOR_ID_SALT": "s" * 40}),
    ("DJANGO_SECRET_KEY", {"ANNOTATOR_ID_SALT": "s" * 40, "DJANGO_SECRET_KEY": "change-me"}),
    ("ANNOTATOR_ID_SALT", {"DJANGO_SECRET_KEY": "k" * 60}),
    ("ANNOTATOR_ID_SALT", {"DJANGO_SECRET_KEY": "k" * 60, "ANNOTATOR_ID_SALT": "change-me-in-production"}),
])
def test_production_refuses_to_start_without_its_own_secrets(missing, env):
    result = _run_settings([sys.executable, "manage.py", "check", "--deploy"], **_PROD, **env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and missing in result.stderr, result.stderr[-2000:]


def test_embedded_mode_starts_with_no_environment_and_keeps_its_generated_secrets(tmp_path):
    var = tmp_path / "var"
    first = _run_settings(_SHOW, VAR_DIR=str(var))
    assert first.returncode == 0, first.stderr[-2000:]
    debug, key, salt, redirect, secure_cookie, hsts, _ = json.loads(first.stdout.splitlines()[-1])
    # Plain HTTP on 127.0.0.1 must keep working: no redirect to https, cookies that come back.
    assert (debug, redirect, secure_cookie, hsts) == (False, False, False, 0)
    assert len(key) >= 50 and len(salt) >= 50 and key != salt
    for name in ("secret_key", "annotator_id_salt"):
        assert stat.S_IMODE((var / name).stat().st_mode) == 0o600
    second = json.loads(_run_settings(_SHOW, VAR_DIR=str(var)).stdout.splitlines()[-1])
    assert second[1:3] == [key, salt]  # the web process and the worker agree, run after run
    other = json.loads(_run_settings(_SHOW, VAR_DIR=str(tmp_path / "other")).stdout.splitlines()[-1])
    assert other[1] != key and other[2] != salt  # per deployment, never a shared default


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
