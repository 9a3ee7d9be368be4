"""The compose stack and its images, checked without a container engine.

docker/compose.yml is validated against the Compose Specification's JSON schema (vendored as
docker/compose-spec.json), and against the rules the deployment relies on: every service healthy
before its dependants start, no secret written into the file, every image pinned, no disk shared
between application containers. The images are built only where a container engine answers.
"""
from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

DOCKER = Path(__file__).resolve().parent.parent / "docker"
APP_SERVICES = ("web", "worker-cpu", "worker-gpu")
#: Environment names that hold a credential: their value must come from the environment.
SECRET_NAME = re.compile(r"PASSWORD|SECRET|SALT|TOKEN|ACCESS_KEY|_KEY$", re.IGNORECASE)
REQUIRED_VAR = re.compile(r"^\$\{[A-Z0-9_]+:\?[^}]*\}$")
#: A URL with credentials in it (scheme://user:password@host).
URL_CREDENTIALS = re.compile(r"://[^/@\s]*:([^/@\s]+)@")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yml").read_text())


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    schema = json.loads((DOCKER / "compose-spec.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def _errors(validator, document) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


def _interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?message}`` (``$$`` is a literal $)."""
    def sub(m: re.Match) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        if env.get(name):
            return env[name]
        if op == ":?":
            raise KeyError(f"{name} is required: {arg}")
        return arg or ""
    return re.sub(r"(?<!\$)\$\{([A-Za-z0-9_]+)(:[-?])?([^}]*)\}", sub, text)


def test_compose_file_follows_the_compose_specification(compose, validator):
    assert _errors(validator, compose) == []


def test_the_schema_check_rejects_a_broken_file(compose, validator):
    """The validation is live: a misspelt key and a wrong type are each reported."""
    broken = copy.deepcopy(compose)
    broken["services"]["web"]["healtcheck"] = broken["services"]["web"].pop("healthcheck")
    broken["services"]["db"]["ports"] = "5432"
    errors = _errors(validator, broken)
    assert any("healtcheck" in e for e in errors), errors
    assert any(e.startswith("services/db/ports") for e in errors), errors


def test_every_required_secret_comes_from_the_environment(compose, validator):
    text = (DOCKER / "compose.yml").read_text()
    env = {"DJANGO_SECRET_KEY": "k", "ANNOTATOR_ID_SALT": "s", "POSTGRES_PASSWORD": "p",
           "OBJECT_STORE_ACCESS_KEY": "a", "OBJECT_STORE_SECRET_KEY": "b"}
    for missing in env:
        with pytest.raises(KeyError, match=missing):
            _interpolate(text, {k: v for k, v in env.items() if k != missing})
    resolved = yaml.safe_load(_interpolate(text, env))
    assert _errors(validator, resolved) == []
    assert resolved["services"]["web"]["environment"]["DATABASE_URL"] == "postgres://onereward:p@db:5432/onereward"


def test_no_secret_is_written_into_the_file(compose):
    found = []
    for name, service in compose["services"].items():
        for key, value in (service.get("environment") or {}).items():
            value = str(value)
            if SECRET_NAME.search(key) and not REQUIRED_VAR.match(value):
                found.append(f"{name}.{key}={value}")
            for password in URL_CREDENTIALS.findall(value):
                if not REQUIRED_VAR.match(password):
                    found.append(f"{name}.{key}: password {password!r} in a URL")
    assert found == []


def test_every_service_is_checked_healthy_before_its_dependants_start(compose):
    services = compose["services"]
    for name, service in services.items():
        one_shot = service.get("restart") == "no"
        assert "healthcheck" in service or one_shot, f"{name} has no healthcheck"
        for dep, condition in (service.get("depends_on") or {}).items():
            wanted = "service_completed_successfully" if services[dep].get("restart") == "no" else "service_healthy"
            assert condition == {"condition": wanted}, f"{name} -> {dep}: {condition}"
    for name in APP_SERVICES:
        assert {"db", "redis", "objectstore-bucket"} <= set(services[name]["depends_on"]), name


def test_images_are_pinned(compose):
    for name, service in compose["services"].items():
        image = service["image"]
        if "build" in service:
            assert image.endswith(":local"), f"{name} builds its own image: {image}"
            continue
        tag = image.rsplit(":", 1)[-1] if ":" in image.split("/")[-1] else ""
        assert "@sha256:" in image or (tag and tag != "latest" and re.search(r"\d", tag)), f"{name}: {image}"
    for dockerfile in ("Dockerfile.web", "Dockerfile.gpu"):
        text = (DOCKER / dockerfile).read_text()
        base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.MULTILINE).group(1)
        assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base), base


def test_application_containers_share_no_disk(compose):
    """Media and artifacts travel through the object store: each container's /data is its own."""
    owners: dict[str, str] = {}
    for name in APP_SERVICES:
        service = compose["services"][name]
        assert service["environment"]["ARTIFACTS_STORE_URL"].startswith("s3://")
        assert service["environment"]["AWS_STORAGE_BUCKET_NAME"]
        for mount in service.get("volumes", []):
            volume = mount.split(":")[0]
            assert volume not in owners, f"{name} and {owners.get(volume)} share {volume}"
            owners[volume] = name


@pytest.mark.parametrize(("dockerfile", "has_torch"), [("Dockerfile.web", False), ("Dockerfile.gpu", True)])
def test_dockerfiles_are_multi_stage_and_run_unprivileged(dockerfile, has_torch):
    text = (DOCKER / dockerfile).read_text()
    stages = re.findall(r"^FROM \S+ AS (\w+)$", text, re.MULTILINE)
    assert stages == ["build", "runtime"]
    runtime = text.split(" AS runtime", 1)[1]
    assert re.search(r"^USER app$", runtime, re.MULTILINE) and "useradd --system --uid 10001" in runtime
    assert re.search(r"^HEALTHCHECK ", runtime, re.MULTILINE)
    assert ("torch" in text.split(" AS runtime")[0].split("\nRUN ", 1)[1]) is has_torch
    assert (DOCKER / f"{dockerfile}.dockerignore").is_file()


def _engine_answers() -> str | None:
    """None where a container engine answers, else why the builds are skipped."""
    if shutil.which("docker") is None:
        return "no docker client on this machine"
    probe = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        return f"no container engine answers `docker info`: {(probe.stderr or probe.stdout).strip()[:200]}"
    return None


@pytest.mark.slow
@pytest.mark.parametrize("dockerfile", ["Dockerfile.web", "Dockerfile.gpu"])
def test_images_build(dockerfile):
    reason = _engine_answers()
    if reason:
        pytest.skip(reason)
    args = ["--build-arg", "TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu"] if dockerfile.endswith("gpu") else []
    build = subprocess.run(["docker", "build", "-f", str(DOCKER / dockerfile), *args, "-t", f"onereward-test-{dockerfile.lower()}",
                            str(DOCKER.parent)], capture_output=True, text=True, timeout=3600)
    assert build.returncode == 0, build.stderr[-4000:]
    user = subprocess.run(["docker", "run", "--rm", "--entrypoint", "id", f"onereward-test-{dockerfile.lower()}", "-u"],
                          capture_output=True, text=True, timeout=120)
    assert user.stdout.strip() == "10001"
