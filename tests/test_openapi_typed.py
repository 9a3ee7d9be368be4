"""The OpenAPI schema at /api/schema/ is a typed contract: every operation's success response
names its fields.

A response documented as a free-form object (``responses=dict``), as an object or array whose
items are free-form, or not documented at all, tells a client nothing; this test lists every such
operation so a new endpoint cannot ship one. File downloads (a binary body) are typed by their
media type and pass.
"""
from __future__ import annotations

import json

import pytest

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
