"""Schema fuzz: requests drawn from the OpenAPI schema for every operation, sent as the signed-in
roles (annotator, curator, scientist) through the test client; none may answer 5xx. (Anonymous
requests are refused before input is read: tests/test_permission_matrix.py.)

Two bounded runs are part of ``make test`` (issue #21, item 9), ~35 s together on the shared
2-core machine:

- schema-valid input: schemathesis draws ``EXAMPLES`` positive cases per operation, one per role
  (derandomised, so every run sends the same requests);
- wrongly typed input, derived from the schema without hypothesis: every query parameter and every
  JSON body property in turn set to values of the wrong type or out of range, and bodies that are
  not objects. (schemathesis' own negative mode spends ~10 s per operation looking for cases on this
  schema — 190 s for one example each — so it stays in the long run.)

The long run (``SCHEMA_FUZZ=1 make test PYTEST_ARGS=tests/test_schema_fuzz.py``, minutes of CPU)
adds schemathesis' negative mode and ``LONG_EXAMPLES`` cases per operation, each sent as every
role including anonymous.

Requests run in the test's transaction, so anything that would start compute (Celery tasks are
queued on commit) never leaves it. Multipart uploads (imports) have their own fuzz tests
(tests/annotation/test_upload_fuzz.py); tests/test_security.py holds the hand-written table of
known bad inputs.
"""
from __future__ import annotations

import json
import os

import pytest
from django.core.cache import cache
from hypothesis import HealthCheck, Phase, given, settings
from rest_framework.test import APIClient

from core import login_throttle
from tests.factories import make_campaign, make_user

pytestmark = pytest.mark.django_db

LONG = os.environ.get("SCHEMA_FUZZ") == "1"
EXAMPLES = 3  # positive cases per operation in make test: one per signed-in role
LONG_EXAMPLES = 10
ROLES = ("anonymous", "annotator", "curator", "scientist")
# Wrong-typed or out-of-range stand-ins for any field: each one has made some view 500 before.
WRONG_VALUES = ([], {"a": 1}, "abc", -1, 2**70)
WRONG_BODIES = ([], [1, 2], "text", 7, None)


def _raw_schema() -> dict:
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.renderers import OpenApiJsonRenderer

    raw = SchemaGenerator().get_schema(request=None, public=True)
    return json.loads(OpenApiJsonRenderer().render(raw))


def _schema(raw: dict):
    import schemathesis

    return schemathesis.openapi.from_dict(raw)


@pytest.fixture
def fuzz_world():
    """A started campaign (its id fills every integer path parameter) and one client per role."""
    campaign = make_campaign(n_samples=2, overlap=1, criteria=["structure"])
    # A 500 comes back as a response (not raised) so that one run lists every failing request.
    clients = {"anonymous": APIClient(raise_request_exception=False)}
    for role in ROLES[1:]:
        clients[role] = APIClient(raise_request_exception=False)
        clients[role].force_authenticate(make_user(f"fuzz-{role}", role))
    yield campaign, clients
    # The fuzz's failed token requests count against 127.0.0.1 (core.login_throttle): leave no lockout
    # behind for the tests that sign in after this one.
    for key, _ in login_throttle._keys(None, "127.0.0.1"):
        cache.delete(key)


def _path(template: str, params: dict, campaign_pk: int) -> str:
    filled = {k: (campaign_pk if isinstance(v, int) and not isinstance(v, bool) else v) for k, v in params.items()}
    return template.format(**filled) if filled else template


def _send(client: APIClient, method: str, path: str, query: dict | None, body=None, *, has_body: bool):
    method = method.upper()
    if method == "GET":
        return client.get(path, query or {})
    url = path + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")
    if not has_body:
        return client.generic(method, url)
    return client.generic(method, url, json.dumps(body), content_type="application/json")


def _upload_only(content_types) -> bool:
    """An operation that takes a file (the import): JSON is not among its content types. (Every
    other write lists JSON, form and multipart: DRF's default parsers; bodies are sent as JSON.)"""
    return bool(content_types) and "application/json" not in content_types


def _run_schemathesis(raw: dict, campaign, clients, *, modes, examples: int,
                      every_role: bool) -> tuple[list[str], int]:
    """Run schemathesis over every operation; each case goes to every client (``every_role``) or,
    to keep the bounded run short, to one role in turn (with as many examples as roles, each
    operation still meets each role)."""
    from schemathesis.core import NotSet

    failures: list[str] = []
    sent = 0
    turns: dict[tuple[str, str], int] = {}
    for result in _schema(raw).get_all_operations():
        operation = result.ok()
        if _upload_only(operation.get_request_payload_content_types()):
            continue
        # Nothing to break in an operation without parameters or body: a negative case cannot be
        # built, and hypothesis would spend seconds finding that out.
        has_input = bool(list(operation.iter_parameters()) or operation.get_request_payload_content_types())
        for mode in modes if has_input else modes[:1]:
            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                      phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
            def run(case):
                nonlocal sent
                path = _path(case.operation.path, case.path_parameters or {}, campaign.pk)
                # This operation's cases go to the roles in turn.
                turn = turns[(case.method, case.operation.path)] = turns.get((case.method, case.operation.path), -1) + 1
                chosen = clients.items() if every_role else [list(clients.items())[turn % len(clients)]]
                for role, client in chosen:
                    response = _send(client, case.method, path, case.query,
                                     None if isinstance(case.body, NotSet) else case.body,
                                     has_body=not isinstance(case.body, NotSet))
                    sent += 1
                    if response.status_code >= 500:
                        failures.append(f"{role} {case.method} {path} query={case.query} "
                                        f"body={str(case.body)[:200]} -> {response.status_code}")

            try:
                run()
            except Exception as exc:  # schemathesis cannot build a case for this operation/mode
                if "Unsatisfiable" not in type(exc).__name__:
                    raise
    return failures, sent


def test_no_operation_answers_5xx_to_schema_valid_input_as_any_role(fuzz_world):
    from schemathesis import GenerationMode

    campaign, clients = fuzz_world
    # Anonymous requests are refused before any input is read (tests/test_permission_matrix.py).
    signed_in = {role: client for role, client in clients.items() if role != "anonymous"}
    failures, sent = _run_schemathesis(_raw_schema(), campaign, signed_in, modes=(GenerationMode.POSITIVE,),
                                       examples=EXAMPLES, every_role=False)
    assert not failures, "\n".join(failures[:30])
    assert sent > 2 * 90, sent  # the schema was really walked (every operation, mostly 3 cases)


def _resolve(raw: dict, schema: dict) -> dict:
    while "$ref" in schema:
        schema = raw["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _example(raw: dict, prop: dict):
    """A plausible value of the right type (the other fields stay valid while one is broken)."""
    prop = _resolve(raw, prop)
    kind = prop.get("type")
    if "enum" in prop and prop["enum"]:
        return prop["enum"][0]
    return {"integer": 1, "number": 0.5, "boolean": True, "array": [], "object": {}}.get(kind, "x")


def _wrong_cases(raw: dict, campaign_pk: int):
    """(method, path, query, body, has_body) for every operation: each query parameter, then each
    body property, set to each wrong value; then bodies that are not objects."""
    for template, item in raw["paths"].items():
        for method, op in item.items():
            if method not in ("get", "post", "patch", "put", "delete"):
                continue
            content = (op.get("requestBody") or {}).get("content", {})
            if _upload_only(list(content)):
                continue
            path_params = {p["name"]: (1 if p.get("schema", {}).get("type") == "integer" else "x")
                           for p in op.get("parameters", []) if p["in"] == "path"}
            if "uid" in path_params:
                path_params["uid"] = "00000000-0000-0000-0000-000000000000"
            path = _path(template, path_params, campaign_pk)
            query_names = [p["name"] for p in op.get("parameters", []) if p["in"] == "query"]
            for name in query_names:
                for value in WRONG_VALUES:
                    yield method, path, {name: json.dumps(value) if not isinstance(value, str) else value}, None, False
            body_schema = _resolve(raw, content.get("application/json", {}).get("schema", {}))
            props = body_schema.get("properties", {})
            if "application/json" not in content:
                continue
            valid = {k: _example(raw, v) for k, v in props.items()}
            for name in props:
                for value in WRONG_VALUES:
                    yield method, path, None, {**valid, name: value}, True
            for body in WRONG_BODIES:
                yield method, path, None, body, True


def test_no_operation_answers_5xx_to_wrongly_typed_input_as_any_role(fuzz_world):
    campaign, clients = fuzz_world
    failures: list[str] = []
    sent = 0
    roles = ("annotator", "curator", "scientist")
    for i, (method, path, query, body, has_body) in enumerate(_wrong_cases(_raw_schema(), campaign.pk)):
        # Anonymous requests are refused before any input is read (the matrix checks that); the
        # three roles take turns, so each operation meets each role and the run stays short.
        for role in (roles[i % 3],):
            response = _send(clients[role], method, path, query, body, has_body=has_body)
            sent += 1
            if response.status_code >= 500:
                failures.append(f"{role} {method.upper()} {path} query={query} body={str(body)[:200]} "
                                f"-> {response.status_code}")
    assert not failures, f"{len(failures)} server errors:\n" + "\n".join(failures[:30])
    assert sent > 500, sent


@pytest.mark.slow
@pytest.mark.skipif(not LONG, reason="long run: SCHEMA_FUZZ=1 (minutes of CPU)")
def test_long_fuzz_no_operation_answers_5xx_to_valid_or_invalid_input(fuzz_world):
    from schemathesis import GenerationMode

    campaign, clients = fuzz_world
    failures, sent = _run_schemathesis(_raw_schema(), campaign, clients,
                                       modes=(GenerationMode.POSITIVE, GenerationMode.NEGATIVE),
                                       examples=LONG_EXAMPLES, every_role=True)
    assert not failures, "\n".join(failures[:30])
    assert sent > 4 * 150, sent
