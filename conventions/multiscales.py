"""multiscales attributes (preview pyramids): built and checked with zarr-cm; spatial: keys inside levels too."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import zarrcm
from .declarations import require_declared
from .issues import ERROR, Issue, not_an_object, pointer
from .registry import MULTISCALES
from .spatial import spatial_key_issues

KEY = "multiscales"


def build_multiscales_attributes(layout: Sequence[dict], resampling_method: str | None = None) -> dict:
    """The `multiscales` key and its `zarr_conventions` entry for a pyramid whose levels are `layout`."""
    data = zarrcm.create(KEY, layout=[dict(level) for level in layout], resampling_method=resampling_method)
    return zarrcm.insert(KEY, {}, data)


def validate_multiscales(attrs: Any, *, node_type: str | None = None) -> list[Issue]:
    """Findings for a node's multiscales attribute: zarr-cm's v0.1 rules, the entry, spatial: keys of each level.

    zarr-cm stops at the first broken rule of the object; the levels' spatial: keys are checked one by one.
    """
    if not isinstance(attrs, dict):
        return [not_an_object(attrs)]
    issues = require_declared(attrs, MULTISCALES)
    if node_type == "array":
        issues.append(Issue(ERROR, KEY, f"{KEY}: the multiscales convention applies to groups, not arrays",
                            pointer(KEY)))
    value = attrs.get(KEY)
    if not isinstance(value, dict):
        what = "required key 'multiscales' is missing" if KEY not in attrs else f"{value!r} is not an object"
        return issues + [Issue(ERROR, KEY, f"{KEY}: {what}", pointer(KEY))]
    issues += [Issue(ERROR, KEY, f"{KEY}: {message}", pointer(KEY)) for _, message in zarrcm.problems(KEY, value)]
    levels = value.get("layout")
    for index, level in enumerate(levels if isinstance(levels, list) else []):
        if isinstance(level, dict):
            issues += spatial_key_issues(level, (KEY, "layout", index))
    return issues
