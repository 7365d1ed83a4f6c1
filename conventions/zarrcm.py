"""zarr-cm, the field's library for Zarr convention metadata (what geotessera uses), behind one small interface.

proj:, spatial: and multiscales data are created, composed and checked by zarr-cm at the revisions we write (their
v0.1 releases). Two things it does not do that our validator needs, so the callers keep them:
- identity: zarr-cm recognises a convention by uuid or by the schema URLs its revisions know, but not every URL real
  stores carry (zarr-experimental/geo-proj, main-branch URLs, FORMATS.md §3), and refuses to pick a revision for
  those; we identify by our registry and always name the revision to check against;
- findings: zarr-cm raises on the first broken rule; `problems` checks each key alone, then the keys together, so a
  node with several faults gets one finding per key.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any

from zarr_cm import multiscales, proj, spatial

_MODULES: dict[str, ModuleType] = {"proj": proj, "spatial": spatial, "multiscales": multiscales}
WRITTEN = {"proj": "r3", "spatial": "r3", "multiscales": "r2"}  # zarr-cm's labels of the v0.1 releases
GEO_PROJ = "r2"  # proj: before v0.1 (zarr-conventions/geo-proj): exactly one CRS key, ^[A-Z]+:[0-9]+$


def _module(key: str) -> ModuleType:
    return _MODULES[key]


def declaration(key: str) -> dict:
    """The `zarr_conventions` entry zarr-cm writes for convention `key` at the revision we write (a fresh dict)."""
    return dict(getattr(_module(key), WRITTEN[key]).CMO)


def known_urls(key: str) -> tuple[frozenset[str], frozenset[str]]:
    """(schema URLs, spec URLs) zarr-cm recognises for convention `key`, over all its revisions."""
    mod = _module(key)
    revisions = {getattr(mod, label) for label in set(mod.REVISION_BY_SCHEMA_URL.values())}
    return frozenset(mod.REVISION_BY_SCHEMA_URL), frozenset(r.SPEC_URL for r in revisions)


def revision_of(key: str, schema_url: Any) -> str | None:
    """zarr-cm's revision label for a declared schema URL of convention `key`, None when it does not know the URL."""
    return _module(key).REVISION_BY_SCHEMA_URL.get(schema_url) if isinstance(schema_url, str) else None


def create(key: str, order: Sequence[str] = (), **fields: Any) -> dict:
    """Convention data built and checked by zarr-cm (revision we write); keys listed in `order` come first."""
    data = copy.deepcopy(dict(_module(key).create(revision=WRITTEN[key], **fields)))
    return {**{k: data[k] for k in order if k in data}, **data}


def insert(key: str, attrs: Mapping[str, Any], data: Mapping[str, Any]) -> dict:
    """`attrs` with convention `key`'s data added and its entry declared (zarr-cm's composition rules), first.

    A deep copy: zarr-cm puts its own module-level entry object into the list it returns.
    """
    composed = copy.deepcopy(_module(key).insert(attrs, data, revision=WRITTEN[key]))
    return {"zarr_conventions": composed.pop("zarr_conventions"), **composed}


def problems(key: str, data: Mapping[str, Any], keys: Sequence[str] = (), revision: str | None = None
             ) -> list[tuple[str | None, str]]:
    """Every rule of the revision (default: the one we write) that `data` breaks, as (key, zarr-cm's message).

    Each of `keys` present in `data` is checked alone first (its own rules), then all of `data` together (the rules
    over several keys, e.g. proj:'s "at least one CRS key"), reported with key None unless already said.
    """
    validate = _module(key).validate
    revision = revision or WRITTEN[key]
    found: list[tuple[str | None, str]] = []
    for k in keys:
        if k in data:
            found += [(k, m) for m in _broken(validate, {k: data[k]}, revision)]
    said = {m for _, m in found}
    found += [(None, m) for m in _broken(validate, data, revision) if m not in said]
    return found


def _broken(validate: Any, data: Mapping[str, Any], revision: str) -> list[str]:
    try:
        validate(data, revision=revision)
    except (ValueError, TypeError, KeyError) as e:
        return [str(e).strip("'\"") if isinstance(e, KeyError) else str(e)]
    return []
