"""proj: attributes: built and checked with zarr-cm under the v0.1 rules; the older geo-proj rules are reported too."""

from __future__ import annotations

from typing import Any

from . import zarrcm
from .declarations import require_declared
from .issues import ERROR, INFO, WARNING, Issue, not_an_object, pointer
from .registry import PROJ, declared

CRS_KEYS = ("proj:code", "proj:wkt2", "proj:projjson")


def build_proj_attributes(code: str) -> dict:
    """proj: keys for a CRS given as AUTHORITY:CODE (e.g. "EPSG:32630"), valid under v0.1 and the older rules."""
    if not isinstance(code, str) or zarrcm.problems("proj", {"proj:code": code}, revision=zarrcm.GEO_PROJ):
        raise ValueError(f"proj:code must look like 'EPSG:32630', got {code!r}")
    return zarrcm.create("proj", code=code)


def validate_proj(attrs: Any) -> list[Issue]:
    """Findings for a node's proj: attributes: v0.1 rules (errors), its entry, older-rule compatibility.

    Breaking a pre-v0.1 geo-proj rule is a warning when the node declares proj: by a geo-proj URL
    (its own schema would reject it), otherwise an info note for older readers.
    """
    if not isinstance(attrs, dict):
        return [not_an_object(attrs)]
    data = {k: attrs[k] for k in CRS_KEYS if k in attrs}
    issues = [_issue(ERROR, key, message) for key, message in zarrcm.problems("proj", data, CRS_KEYS)]
    issues += require_declared(attrs, PROJ)
    severity = WARNING if _declares_old_geo_proj(attrs) else INFO
    issues += [_issue(severity, key, f"{message} (older geo-proj rules: readers following them reject this node)")
               for key, message in zarrcm.problems("proj", data, CRS_KEYS, revision=zarrcm.GEO_PROJ)]
    return issues


def _issue(severity: str, key: str | None, message: str) -> Issue:
    """A finding on `key`; a rule over several CRS keys is reported on the first one (where one would add it)."""
    key = key or CRS_KEYS[0]
    return Issue(severity, key, f"{key}: {message}", pointer(key))


def _declares_old_geo_proj(attrs: dict) -> bool:
    """Whether the node's proj: entry points at a pre-v0.1 schema or spec.

    zarr-cm knows the zarr-conventions/geo-proj URLs as its older revision; the zarr-experimental/geo-proj ones (the
    original home, which real stores carry) it does not, so the "/geo-proj/" test stays ours.
    """
    entries = attrs.get("zarr_conventions")
    for index in declared(attrs, PROJ):
        entry = entries[index]
        urls = [entry.get(f) for f in ("schema_url", "spec_url")]
        if zarrcm.revision_of("proj", entry.get("schema_url")) == zarrcm.GEO_PROJ:
            return True
        if any(isinstance(u, str) and "/geo-proj/" in u for u in urls):
            return True
    return False
