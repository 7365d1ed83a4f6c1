"""proj: attributes: build a CRS code; validate under v0.1 rules and report older geo-proj rules."""

from __future__ import annotations

import re
from typing import Any

from .declarations import require_declared
from .issues import INFO, WARNING, Issue, pointer
from .registry import PROJ, declared
from .schemas import apply_schema

CRS_KEYS = ("proj:code", "proj:wkt2", "proj:projjson")
_OLD_CODE = re.compile(r"^[A-Z]+:[0-9]+$")  # geo-proj (before v0.1): authority in capitals, numeric code


def build_proj_attributes(code: str) -> dict:
    """proj: keys for a CRS given as AUTHORITY:CODE (e.g. "EPSG:32630")."""
    if not isinstance(code, str) or not _OLD_CODE.match(code):
        raise ValueError(f"proj:code must look like 'EPSG:32630', got {code!r}")
    return {"proj:code": code}


def validate_proj(attrs: Any) -> list[Issue]:
    """Findings for a node's proj: attributes: our (v0.1) schema, the entry, older-rule compatibility.

    Breaking a pre-v0.1 geo-proj rule is a warning when the node declares proj: by a geo-proj URL
    (its own schema would reject it), otherwise an info note for older readers.
    """
    issues = apply_schema("proj", attrs)
    if not isinstance(attrs, dict):
        return issues
    issues += require_declared(attrs, PROJ)
    severity = WARNING if _declares_old_geo_proj(attrs) else INFO
    present = [k for k in CRS_KEYS if k in attrs]
    if len(present) > 1:
        issues.append(Issue(severity, present[0], f"{', '.join(present)}: older geo-proj schemas allow exactly "
                            "one CRS key; readers following them reject this node", pointer(present[0])))
    code = attrs.get("proj:code")
    if isinstance(code, str) and not _OLD_CODE.match(code):
        issues.append(Issue(severity, "proj:code", f"proj:code: {code!r} does not match {_OLD_CODE.pattern!r} "
                            "required by older geo-proj schemas", pointer("proj:code")))
    return issues


def _declares_old_geo_proj(attrs: dict) -> bool:
    """Whether the node's proj: entry points at a geo-proj (pre-v0.1) schema or spec."""
    entries = attrs.get("zarr_conventions")
    for index in declared(attrs, PROJ):
        entry = entries[index]
        urls = [entry.get(f) for f in ("schema_url", "spec_url")]
        if any(isinstance(u, str) and "/geo-proj/" in u for u in urls):
            return True
    return False
