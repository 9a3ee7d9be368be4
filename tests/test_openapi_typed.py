"""The OpenAPI schema at /api/schema/ is a typed contract: every operation's success response
names its fields, and what the endpoints return matches them.

A response documented as a free-form object (``responses=dict``), as an object or array whose
items are free-form, or not documented at all, tells a client nothing; the first test lists every
such operation so a new endpoint cannot ship one. File downloads (a binary body) are typed by their
media type and pass. The views return their selectors' dicts as they are, so the last test holds
real answers (a built dashboard world: runs, a model, a checkpoint, a judged campaign and its
snapshot) against the schema with a JSON Schema validator: a field the serializers do not declare
is not an error (additional keys), but a declared field missing, of another type or null where the
schema says it cannot be is.
"""
from __future__ import annotations

import copy
import json

import pytest
from jsonschema import Draft202012Validator

pytestmark = pytest.mark.django_db


def _schema() -> dict:
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.renderers import OpenApiJsonRenderer

    raw = SchemaGenerator().get_schema(request=None, public=True)
    return json.loads(OpenApiJsonRenderer().render(raw))


def _resolve(schema: dict, node: dict) -> dict:
    while "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        node = schema["components"]["schemas"][name]
    return node


def untyped_reason(schema: dict, node: dict | None) -> str | None:
    """Why ``node`` (a response body schema) is not a typed contract, or None when it is."""
    if not node:
        return "no response body schema"
    node = _resolve(schema, node)
    if node.get("format") == "binary":
        return None
    for key in ("oneOf", "anyOf", "allOf"):
        if key in node:
            reasons = [untyped_reason(schema, part) for part in node[key]]
            return next((r for r in reasons if r), None)
    kind = node.get("type")
    if kind == "array":
        reason = untyped_reason(schema, node.get("items"))
        return f"array of {reason}" if reason else None
    if kind == "object" or kind is None:
        if node.get("properties"):
            return None
        extra = node.get("additionalProperties")
        if isinstance(extra, dict) and extra:
            reason = untyped_reason(schema, extra)
            return f"map of {reason}" if reason else None
        return "free-form object"
    return None  # a scalar (string, integer, …) is typed


def untyped_operations(schema: dict) -> list[str]:
    """``METHOD path (status): reason`` for each success response that is not typed."""
    out = []
    for path, item in sorted(schema["paths"].items()):
        for method, operation in item.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            success = {code: r for code, r in operation.get("responses", {}).items() if code.startswith("2")}
            if not success:
                out.append(f"{method.upper()} {path}: no success response documented")
            for code, response in success.items():
                if code == "204":
                    continue
                content = response.get("content") or {}
                if not content:
                    out.append(f"{method.upper()} {path} ({code}): no response body schema")
                    continue
                for media, body in content.items():
                    reason = untyped_reason(schema, body.get("schema"))
                    if reason:
                        out.append(f"{method.upper()} {path} ({code}, {media}): {reason}")
    return out


def test_every_success_response_is_typed():
    offenders = untyped_operations(_schema())
    assert not offenders, "untyped responses in /api/schema/:\n" + "\n".join(offenders)


def test_the_check_catches_free_form_responses():
    """The checker itself: a free-form body, a list of them and a missing body are reported."""
    schema = {"components": {"schemas": {"Free": {"type": "object", "additionalProperties": {}},
                                         "Typed": {"type": "object", "properties": {"id": {"type": "integer"}}}}},
              "paths": {"/a/": {"get": {"responses": {"200": {"content": {"application/json": {
                  "schema": {"$ref": "#/components/schemas/Free"}}}}}}},
                        "/b/": {"get": {"responses": {"200": {"content": {"application/json": {
                            "schema": {"type": "array", "items": {"$ref": "#/components/schemas/Free"}}}}}}}},
                        "/c/": {"post": {"responses": {"201": {"description": ""}}}},
                        "/d/": {"get": {"responses": {"200": {"content": {"application/json": {
                            "schema": {"$ref": "#/components/schemas/Typed"}}}}}}}}}
    assert untyped_operations(schema) == [
        "GET /a/ (200, application/json): free-form object",
        "GET /b/ (200, application/json): array of free-form object",
        "POST /c/ (201): no response body schema",
    ]


def _as_json_schema(node):
    """An OpenAPI 3.0 schema node as JSON Schema: ``nullable`` becomes a null alternative and
    component references point into ``$defs``."""
    if isinstance(node, list):
        return [_as_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _as_json_schema(v) for k, v in node.items() if k not in ("nullable", "readOnly", "writeOnly")}
    if "$ref" in out:
        out["$ref"] = out["$ref"].replace("#/components/schemas/", "#/$defs/")
    if node.get("nullable"):
        return {"anyOf": [out, {"type": "null"}]}
    return out


def _response_validator(schema: dict, path: str, method: str, code: str) -> Draft202012Validator:
    body = schema["paths"][path][method]["responses"][code]["content"]["application/json"]["schema"]
    doc = {**_as_json_schema(copy.deepcopy(body)),
           "$defs": {k: _as_json_schema(v) for k, v in schema["components"]["schemas"].items()}}
    return Draft202012Validator(doc)


def test_answers_match_their_documented_schema(tmp_path):
    from django.test import Client

    from annotation.models import Item
    from tests.factories import make_user
    from tests.frontend.dashboard_world import build_world

    world = build_world(tmp_path)
    make_user("typed-sci", "scientist")
    client = Client()
    client.login(username="typed-sci", password="pw-test-1234")
    schema = _schema()
    job, policy, model, ckpt = world.baseline.pk, world.policy.pk, world.model.pk, world.checkpoint.pk
    campaign, snapshot = world.campaign.pk, world.snapshot.pk
    item = Item.objects.filter(campaign=world.campaign).first().pk
    gets = [
        ("/api/me/", {}, ""),
        ("/api/dashboard/jobs/", {}, ""),
        ("/api/dashboard/jobs/{id}/", {"id": job}, ""),
        ("/api/dashboard/jobs/{id}/", {"id": policy}, ""),
        ("/api/dashboard/jobs/{id}/", {"id": world.snapshot.job_id}, ""),
        ("/api/dashboard/runs/overlay/", {}, f"?job={job}&job={policy}"),
        *[("/api/dashboard/lineage/{kind}/{id}/", {"kind": k, "id": pk}, "") for k, pk in (
            ("campaign", campaign), ("snapshot", snapshot), ("reward-model", model), ("checkpoint", ckpt))],
        ("/api/dashboard/compare/reward-models/", {}, f"?a={model}&b={model}"),
        ("/api/dashboard/compare/checkpoints/", {}, f"?a={ckpt}&b={ckpt}"),
        ("/api/dashboard/campaigns/", {}, ""),
        ("/api/dashboard/campaigns/{id}/", {"id": campaign}, ""),
        ("/api/dashboard/leaderboard/", {}, ""),
        ("/api/candidate-sources/", {}, "?task=fill&source=sys0&source=sys1"),
        ("/api/campaigns/{id}/progress/", {"id": campaign}, ""),
        ("/api/campaigns/{id}/quality/", {"id": campaign}, ""),
        ("/api/campaigns/{id}/items/", {"id": campaign}, ""),
        ("/api/items/{id}/", {"id": item}, ""),
        ("/api/snapshots/", {}, ""),
        ("/api/snapshots/{id}/", {"id": snapshot}, ""),
        ("/api/snapshots/preview/", {}, f"?campaign={campaign}"),
        ("/api/reward/presets/", {}, ""),
        ("/api/reward/runs/", {}, ""),
        ("/api/reward/runs/{id}/", {"id": world.baseline.reward_run.pk}, ""),
        ("/api/reward/models/", {}, ""),
        ("/api/reward/models/{id}/", {"id": model}, ""),
        ("/api/policy/runs/", {}, ""),
        ("/api/policy/runs/{id}/", {"id": world.checkpoint.run.pk}, ""),
        ("/api/policy/checkpoints/{id}/", {"id": ckpt}, ""),
        ("/api/policy/checkpoints/{id}/promotion/", {"id": ckpt}, ""),
        ("/api/policy/production/", {}, ""),
        ("/api/exports/jobs/", {}, ""),
    ]
    mismatches = []
    for template, params, query in gets:
        response = client.get(template.format(**params) + query)
        assert response.status_code == 200, (template, response.status_code, response.content[:300])
        errors = sorted(_response_validator(schema, template, "get", "200").iter_errors(response.json()),
                        key=lambda e: list(e.absolute_path))
        mismatches += [f"GET {template}: {'/'.join(map(str, e.absolute_path)) or '(body)'}: {e.message[:200]}"
                       for e in errors[:3]]
    writes = [("post", "/api/reward/runs/preview/", {}, {"snapshot": snapshot, "max_steps": 3}, "200"),
              ("put", "/api/dashboard/jobs/{id}/tags/", {"id": job}, {"tags": ["typed"]}, "200")]
    for method, template, params, body, code in writes:
        response = getattr(client, method)(template.format(**params), body, content_type="application/json")
        assert str(response.status_code) == code, (template, response.status_code, response.content[:300])
        errors = list(_response_validator(schema, template, method, code).iter_errors(response.json()))
        mismatches += [f"{method.upper()} {template}: {e.message[:200]}" for e in errors[:3]]
    # The annotator's side: a leased item (blind payload) and the caller's own standing.
    make_user("typed-ann", "annotator")
    annotator = Client()
    annotator.login(username="typed-ann", password="pw-test-1234")
    for method, template, body in (("post", "/api/campaigns/{id}/next/", {}), ("get", "/api/campaigns/{id}/progress/", None)):
        url = template.format(id=campaign)
        response = annotator.post(url, body, content_type="application/json") if method == "post" else annotator.get(url)
        assert response.status_code == 200, (template, response.status_code, response.content[:300])
        errors = list(_response_validator(schema, template, method, "200").iter_errors(response.json()))
        mismatches += [f"{method.upper()} {template} (annotator): {e.message[:200]}" for e in errors[:3]]
    assert not mismatches, "answers that do not match /api/schema/:\n" + "\n".join(mismatches)
