"""The inventory verb: what a legacy archive holds and everything wrong with it, without reading tile bodies,
in one streamed pass over the listing and one over each registry."""

from __future__ import annotations

import numpy as np

from transcode.format.tilecolumns import footprints
from transcode.legacy.archive import LegacyArchive
from transcode.legacy.dataset import Dataset, resolve
from transcode.legacy.inventorydata import INVENTORY_FORMAT, Inventory, LandmaskRecord, TileRecord
from transcode.legacy.inventoryfile import read_inventory, write_inventory
from transcode.legacy.problems import INFO, WARNING, Problem
from transcode.legacy.registries import check_registries
from transcode.legacy.scan import scan_landmasks, scan_tiles
from transcode.legacy.tiletable import (
    canonical_sort,
    cell_key,
    cell_lon_lat,
    names,
    sort_rows,
    tile_cells,
    year_slices,
)

__all__ = ["INVENTORY_FORMAT", "Inventory", "LandmaskRecord", "TileRecord", "build_inventory", "read_inventory",
           "write_inventory"]


def build_inventory(
    archive: LegacyArchive, *, verify_hashes: bool = False, workers: int | None = None, progress: bool = False
) -> Inventory:
    """List the archive once, streaming: inspect every tile's headers and sizes and every landmask's magic
    bytes (hashing them with `verify_hashes`), then match every registry by tile, and name the dataset. `workers`:
    reads in flight (None: 8, or 32 on a remote archive without hashing: scan.read_plan)."""
    problems: list[Problem] = []
    claimed = resolve(archive.claims, archive.dataset_override)
    masks = scan_landmasks(archive, problems, verify=verify_hashes, workers=workers, progress=progress)
    sort_rows(masks, cell_key(masks["lon_i"], masks["lat_i"]))
    tiles = scan_tiles(archive, problems, verify=verify_hashes, workers=workers, progress=progress)
    canonical_sort(tiles)
    problems += _place(archive, tiles, masks)
    check = check_registries(archive, tiles, masks, verify=verify_hashes, needs_landmask=claimed.needs_landmask)
    problems += check.problems
    if check.unusable:
        tiles["usable"][np.fromiter(check.unusable, np.int64)] = False
    dataset = resolve(archive.claims + check.claims, archive.dataset_override)
    problems += _dataset_problems(dataset)
    registries = sorted(check.sources + (["per-directory SHA256"] if archive.dir_sums_seen else []))
    return Inventory(archive.storage.describe(), archive.layout, archive.year_root, archive.landmask_root, tiles,
                     masks, sorted(set(problems)), verify_hashes, registries, dataset)


def _place(archive: LegacyArchive, tiles: np.ndarray, masks: np.ndarray) -> list[Problem]:
    """Fill each row's zone, footprint and landmask columns (one projection per CRS for the cells, then year by
    year); a shape that differs from the cell's footprint is a warning (the tile is still placed at its offset,
    FORMATS.md §1.4)."""
    cells = tile_cells(tiles)
    fp = footprints(*cell_lon_lat(cells))
    with_mask = np.isin(cells, cell_key(masks["lon_i"], masks["lat_i"]))
    out = []
    for _, a, b in year_slices(tiles):
        t = tiles[a:b]
        at = np.searchsorted(cells, cell_key(t["lon_i"], t["lat_i"]))
        t["zone"], t["landmask"] = fp.zone[at], with_mask[at]
        off = np.flatnonzero((t["height"] >= 0) & ((t["height"] != fp.height[at]) | (t["width"] != fp.width[at])))
        for i, name in zip(off.tolist(), names(t["lon_i"][off], t["lat_i"][off])):
            r, j = t[i], at[i]
            year = int(r["year"])
            key = archive.tile_key(year, name, ".npy" if r["embeddings_offset"] >= 0 else "_scales.npy")
            out.append(Problem(key, "footprint-mismatch",
                               f"shape {r['height']}x{r['width']} differs from the {fp.height[j]}x{fp.width[j]} "
                               "footprint of the 0.1° cell (placed at its offset with its real shape)", WARNING,
                               year, name))
    return out


def _dataset_problems(dataset: Dataset) -> list[Problem]:
    if dataset.conflicts:
        said = "; ".join(f"{c.where} says {c.version} ({c.variant})" for c in dataset.conflicts)
        return [Problem(dataset.conflicts[0].where, "mixed-datasets", f"the archive mixes datasets: {said}")]
    if dataset.overridden:
        differ = [c for c in dataset.claims if (c.version, c.variant) != (dataset.version, dataset.variant)]
        if differ:
            said = "; ".join(f"{c.where} says {c.version} ({c.variant})" for c in differ)
            return [Problem(differ[0].where, "dataset-overridden",
                            f"--dataset-version {dataset.label} overrides what the archive says: {said}", INFO)]
    return []
