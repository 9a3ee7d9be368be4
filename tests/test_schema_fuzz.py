"""Bounded schema fuzz: schemathesis draws a few valid and a few schema-breaking requests for every
operation in the OpenAPI schema, sent as each role through the test client; none may answer 5xx.

Requests run in the test's transaction, so anything that would start compute (Celery tasks are
queued on commit) never leaves it. Multipart uploads (imports) have their own table tests
(tests/test_security.py, which also holds the hand-written table of known bad inputs).

Opt-in (``SCHEMA_FUZZ=1 make test PYTEST_ARGS=tests/test_schema_fuzz.py``): the requests take
seconds, but building the cases from the schema takes minutes (140 s with one valid and one
invalid case per operation on the shared 2-core machine), over the suite's budget for it.
"""
from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from rest_framework.test import APIClient

from tests.factories import make_campaign, make_user

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(os.environ.get("SCHEMA_FUZZ") != "1", reason="opt-in: SCHEMA_FUZZ=1 (minutes of CPU)"),
]

EXAMPLES_PER_MODE = 1


def _schema():
    import schemathesis
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.renderers import OpenApiJsonRenderer

    raw = SchemaGenerator().get_schema(request=None, public=True)
    return schemathesis.openapi.from_dict(json.loads(OpenApiJsonRenderer().render(raw)))


def _send(client: APIClient, case, campaign_pk: int):
    from schemathesis.core import NotSet

    path_params = {k: (campaign_pk if isinstance(v, int) and not isinstance(v, bool) else v)
                   for k, v in (case.path_parameters or {}).items()}
    path = case.operation.path.format(**path_params) if path_params else case.operation.path
    query = case.query or {}
    method = case.method.lower()
    if method == "get":
        return client.get(path, query)
    url = path + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")
    if isinstance(case.body, NotSet):
        return client.generic(method.upper(), url)
    return client.generic(method.upper(), url, json.dumps(case.body), content_type="application/json")


@pytest.mark.slow
def test_no_operation_answers_5xx_to_fuzzed_input_as_any_role():
    from schemathesis import GenerationMode

    campaign = make_campaign(n_samples=2, overlap=1, criteria=["structure"])
    clients = {}
    for role in ("annotator", "curator", "scientist"):
        clients[role] = APIClient()
        clients[role].force_authenticate(make_user(f"fuzz-{role}", role))
    failures: list[str] = []
    sent = 0
    for result in _schema().get_all_operations():
        operation = result.ok()
        if "multipart/form-data" in (operation.get_request_payload_content_types() or []):
            continue
        # Nothing to break in an operation without parameters or body: a negative case cannot be
        # built, and hypothesis would spend seconds finding that out.
        has_input = bool(list(operation.iter_parameters()) or operation.get_request_payload_content_types())
        modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE) if has_input else (GenerationMode.POSITIVE,)
        for mode in modes:
            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=EXAMPLES_PER_MODE, deadline=None, database=None, derandomize=True,
                      phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
            def run(case):
                nonlocal sent
                for role, client in clients.items():
                    response = _send(client, case, campaign.pk)
                    sent += 1
                    if response.status_code >= 500:
                        failures.append(f"{role} {case.method} {case.operation.path} query={case.query} "
                                        f"body={str(case.body)[:200]} -> {response.status_code}")

            try:
                run()
            except Exception as exc:  # schemathesis cannot build a case for this operation/mode
                if "Unsatisfiable" not in type(exc).__name__:
                    raise
    assert not failures, "\n".join(failures[:30])
    assert sent > 150, sent  # the schema was really walked (3 roles × every operation)
