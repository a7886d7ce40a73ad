"""Validate bodies against a component of the API's own OpenAPI document (3.0), as JSON
Schema: ``nullable`` becomes a ``null`` type, everything else is JSON Schema already."""

from __future__ import annotations

import functools
from typing import Any

import jsonschema
from drf_spectacular.generators import SchemaGenerator


def _json_schema(node: Any) -> Any:
    if isinstance(node, list):
        return [_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: _json_schema(value) for key, value in node.items() if key != "nullable"}
    if not node.get("nullable"):
        return converted
    if "enum" in converted:
        converted["enum"] = [*converted["enum"], None]
    if "type" in converted:
        converted["type"] = [converted["type"], "null"]
        return converted
    return {"anyOf": [converted, {"type": "null"}]}


@functools.cache
def _components() -> dict[str, Any]:
    document = SchemaGenerator().get_schema(request=None, public=True)
    return _json_schema(document["components"])


def errors(component: str, body: Any) -> list[str]:
    """What in ``body`` the component ``component`` does not allow (empty: valid)."""
    schema = {"$ref": f"#/components/schemas/{component}", "components": _components()}
    validator = jsonschema.Draft202012Validator(schema)
    return sorted(f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(body))
