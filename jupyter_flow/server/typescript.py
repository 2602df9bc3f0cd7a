"""TypeScript declarations from the JSON schemas of ``components/schemas``: the sidebar's
``js/src/generated/api-types.ts`` (``schema.py`` writes it).

Only what pydantic's schemas use: ``$ref``, ``enum``, ``const``, ``anyOf``/``oneOf``, type
lists, objects (properties or ``additionalProperties``), arrays and the scalar types.

>>> typescript_type({"anyOf": [{"type": "string"}, {"type": "null"}]})
'string | null'
>>> typescript_type({"type": "object", "additionalProperties": {"type": "integer"}})
'Record<string, number>'
"""

from __future__ import annotations

import json
import re

_SCALARS = {"string": "string", "integer": "number", "number": "number", "boolean": "boolean", "null": "null"}
_IDENTIFIER = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")


def _union(parts: list[str]) -> str:
    unique = list(dict.fromkeys(parts))
    if "unknown" in unique:
        return "unknown"
    return " | ".join(unique) if unique else "never"


def _key(name: str) -> str:
    return name if _IDENTIFIER.fullmatch(name) else json.dumps(name)


def _doc(text: str | None, indent: str) -> list[str]:
    if not text:
        return []
    text = text.replace("*/", "*\\/")
    lines = text.strip().splitlines()
    if len(lines) == 1:
        return [f"{indent}/** {lines[0]} */"]
    return [f"{indent}/**", *(f"{indent} * {line}".rstrip() for line in lines), f"{indent} */"]


def _object(schema: dict, indent: str) -> str:
    properties = schema.get("properties") or {}
    if not properties:
        extra = schema.get("additionalProperties", True)
        if extra is False:
            return "Record<string, never>"
        return f"Record<string, {typescript_type(extra, indent) if isinstance(extra, dict) else 'unknown'}>"
    required = set(schema.get("required") or [])
    inner = indent + "  "
    lines = ["{"]
    for name, prop in properties.items():
        lines += _doc(prop.get("description"), inner)
        optional = "" if name in required else "?"
        lines.append(f"{inner}{_key(name)}{optional}: {typescript_type(prop, inner)};")
    lines.append(f"{indent}}}")
    return "\n".join(lines)


def typescript_type(schema: dict | bool, indent: str = "") -> str:
    """The TypeScript type of one JSON schema (``$ref`` names the referenced declaration)."""
    if schema is True or schema == {}:
        return "unknown"
    if schema is False:
        return "never"
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    if "const" in schema:
        return json.dumps(schema["const"])
    if "enum" in schema:
        return _union([json.dumps(value) for value in schema["enum"]])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return _union([typescript_type(part, indent) for part in schema[key]])
    kind = schema.get("type")
    if isinstance(kind, list):
        return _union([typescript_type({**schema, "type": k}, indent) for k in kind])
    if kind == "object":
        return _object(schema, indent)
    if kind == "array":
        item = typescript_type(schema.get("items", True), indent)
        return f"({item})[]" if " | " in item else f"{item}[]"
    return _SCALARS.get(kind, "unknown")


def typescript_module(schemas: dict[str, dict], *, regenerate: str) -> str:
    """One ``export`` per schema: an interface for an object with properties, a type alias
    otherwise; schema descriptions become doc comments."""
    lines = [
        "/**",
        " * Types of the jupyter_flow REST API, generated from jupyter_flow/server/models.py.",
        f" * Do not edit: change the models and run `{regenerate}`.",
        " */",
        "",
        "/* eslint-disable */",
    ]
    for name, schema in schemas.items():
        lines.append("")
        lines += _doc(schema.get("description"), "")
        if schema.get("type") == "object" and schema.get("properties"):
            lines.append(f"export interface {name} {_object(schema, '')}")
        else:
            lines.append(f"export type {name} = {typescript_type(schema)};")
    return "\n".join(lines) + "\n"
