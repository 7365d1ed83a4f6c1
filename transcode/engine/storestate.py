"""What an existing store already holds, as a later run needs it: its zone grids and its recorded settings."""

from __future__ import annotations

import json

from transcode.errors import StoreError
from transcode.format.attributes import grid_of
from transcode.format.grid import ZoneGrid
from transcode.format.keys import group_zone
from transcode.format.sidecar import SETTINGS_KEY
from transcode.storage import ObjectNotFoundError, Storage


def read_zone_grids(store: Storage) -> dict[int, ZoneGrid]:
    """Zone grids of an existing store, from the zone groups' spatial: attributes (empty when no store). Only a
    root zarr.json that does not exist means no store: any other failure to read it is raised."""
    try:
        root = json.loads(store.read("zarr.json"))
    except ObjectNotFoundError:
        return {}
    except ValueError as e:
        raise StoreError(store.describe("zarr.json"), f"not valid JSON: {e}") from e
    consolidated = root.get("consolidated_metadata") if isinstance(root, dict) else None
    nodes = (consolidated.get("metadata") if isinstance(consolidated, dict) else None) or {}
    if not isinstance(nodes, dict):
        raise StoreError(store.describe("zarr.json"), "consolidated_metadata.metadata is not an object")
    grids = {}
    for path, node in nodes.items():
        zone = group_zone(path)
        if zone is None or not isinstance(node, dict) or node.get("node_type") != "group":
            continue
        try:
            grids[zone] = grid_of(zone, node.get("attributes", {}))
        except (ValueError, TypeError, KeyError, AttributeError) as err:  # a document edited or damaged by hand
            raise StoreError(store.describe(f"{path}/zarr.json"), f"zone group lacks a usable spatial: grid ({err})")
    return grids


def read_settings(store: Storage) -> dict | None:
    """The conversion settings recorded in an existing store's sidecar, or None when it does not exist. Any other
    failure to read it (denied, transient, a directory in its place) is raised: a store whose settings cannot be
    read must never be taken for a new one and overwritten with other settings."""
    try:
        raw = store.read(SETTINGS_KEY)
    except ObjectNotFoundError:
        return None
    try:
        return json.loads(raw)
    except ValueError as e:
        raise StoreError(store.describe(SETTINGS_KEY), f"not valid JSON: {e}") from e
