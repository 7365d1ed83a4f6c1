"""Where things are in a store: the zone group names and the object keys of chunks and shards (the Zarr v3
default chunk key encoding, `/` separated)."""

from __future__ import annotations

import re
from collections.abc import Iterable

ZONE_GROUP_RE = re.compile(r"^utm(0[1-9]|[1-5][0-9]|60)$")


def zone_group(zone: int) -> str:
    """The group of UTM zone `zone` (1..60) at the store root: `utm01` .. `utm60`."""
    return f"utm{zone:02d}"


def group_zone(name: str) -> int | None:
    """The UTM zone a group name stands for, or None when the name is not a zone group's."""
    m = ZONE_GROUP_RE.match(name)
    return int(m.group(1)) if m else None


def chunk_key(array_path: str, coords: Iterable[int]) -> str:
    """Key of the chunk (or shard) at chunk grid coordinates `coords` of the array at `array_path`."""
    return "/".join([array_path, "c", *(str(int(c)) for c in coords)])
