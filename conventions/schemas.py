"""Load and apply our JSON Schemas (shipped in the `schemas` package); errors become Issues."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from .. import schemas as _shipped  # the sibling package transcode.schemas (data only)
from .issues import ERROR, Issue, pointer

_MAX_REPR = 120
_COMBINATORS = ("anyOf", "oneOf")


@lru_cache(maxsize=None)
def validator(name: str) -> Draft202012Validator:
    """A Draft 2020-12 validator for our schema `name` (e.g. "geoemb"), checked once and cached."""
    schema = _shipped.load(f"{name}.schema.json")
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def apply_schema(name: str, attrs: Any) -> list[Issue]:
    """Every violation of our schema `name` by an attributes object, as error Issues naming the key."""
    found = [issue for error in validator(name).iter_errors(attrs) for issue in _issues(error)]
    return sorted(set(found), key=lambda i: (i.pointer, i.message))


def _short(value: Any) -> str:
    """A repr of `value` no longer than a line."""
    text = repr(value)
    return text if len(text) <= _MAX_REPR else text[: _MAX_REPR - 3] + "..."


def _issue(path: list, message: str) -> Issue:
    """An error at `path` (keys/indices inside the attributes object)."""
    key = str(path[0]) if path else ""
    shown = "/".join(map(str, path)) or "attributes"
    return Issue(ERROR, key, f"{shown}: {message}", pointer(*path))


def _issues(error: ValidationError) -> list[Issue]:
    """One or more Issues for one jsonschema error, pointing at the key at fault."""
    path = list(error.absolute_path)
    kind, instance, schema = error.validator, error.instance, error.schema
    if kind == "required" and isinstance(instance, dict):
        in_then = len(error.schema_path) >= 2 and list(error.schema_path)[-2] == "then"
        why = f" ({schema['description']})" if in_then and isinstance(schema.get("description"), str) else ""
        return [_issue(path + [k], f"required key '{k}' is missing{why}")
                for k in error.validator_value if k not in instance]
    if kind == "additionalProperties" and isinstance(instance, dict):
        known = schema.get("properties", {})
        return [_issue(path + [k], f"unexpected key '{k}' (allowed: {', '.join(sorted(known))})")
                for k in instance if k not in known]
    if kind in _COMBINATORS and _only_required(error.validator_value) and isinstance(instance, dict):
        keys = [branch["required"][0] for branch in error.validator_value]
        return [_issue(path + [keys[0]], f"at least one of {', '.join(map(repr, keys))} is required")]
    if kind == "type":
        return [_issue(path, f"{_short(instance)} is not of type {error.validator_value!r}")]
    if kind in ("enum", "const"):
        allowed = error.validator_value if kind == "enum" else [error.validator_value]
        return [_issue(path, f"{_short(instance)} is not one of {allowed!r}")]
    if kind == "pattern" and isinstance(instance, str):
        return [_issue(path, f"{_short(instance)} does not match {error.validator_value!r}")]
    return [_issue(path, _shorten_message(error.message))]


def _only_required(branches: Any) -> bool:
    """Whether every branch of an anyOf/oneOf is just {"required": [one key]}."""
    return isinstance(branches, list) and all(
        isinstance(b, dict) and set(b) == {"required"} and len(b["required"]) == 1 for b in branches)


def _shorten_message(message: str) -> str:
    """jsonschema's message, cut to a readable length."""
    return message if len(message) <= 2 * _MAX_REPR else message[: 2 * _MAX_REPR - 3] + "..."
