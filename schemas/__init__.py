"""The project's JSON Schemas, shipped inside the package."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources


@lru_cache(maxsize=None)
def load(name: str) -> dict:
    """The schema document `name` (e.g. 'inventory.schema.json')."""
    return json.loads(resources.files(__name__).joinpath(name).read_text(encoding="utf-8"))
