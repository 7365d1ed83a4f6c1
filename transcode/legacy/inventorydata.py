"""The inventory as data: tile-years as table rows in canonical order (`tiletable`, never a Python object
each), landmasks, problems and the dataset of one archive; its summary, and records for small archives."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace

import numpy as np

from transcode.format.keys import zone_group
from transcode.format.tilecolumns import footprints
from transcode.legacy.archive import landmask_root_of
from transcode.legacy.dataset import Dataset
from transcode.legacy.problems import ERROR, WARNING, Problem
from transcode.legacy.tiletable import cell_key, epsg_of, hex_digest, names, none_if_negative, tile_cells, year_slices

INVENTORY_FORMAT = 1


@dataclass
class TileRecord:
    """One tile-year as the inventory found it; `usable` is False when an error makes it unreadable."""

    year: int
    tile: str
    lon_i: int
    lat_i: int
    zone: int
    epsg: int
    embeddings_key: str
    embeddings_size: int | None
    scales_key: str
    scales_size: int | None
    height: int | None
    width: int | None
    footprint_height: int
    footprint_width: int
    embeddings_offset: int | None
    scales_offset: int | None
    landmask_key: str | None
    usable: bool = True
    embeddings_sha256: str | None = None
    scales_sha256: str | None = None


@dataclass
class LandmaskRecord:
    """One landmask file."""

    tile: str
    lon_i: int
    lat_i: int
    key: str
    size: int
    sha256: str | None = None


@dataclass
class Inventory:
    """The result of `inventory`: tile-years (table rows in canonical order), landmasks (rows in cell order),
    problems and the dataset of one archive."""

    source: str
    layout: str
    year_root: str
    landmask_root: str | None
    table: np.ndarray
    masks: np.ndarray
    problems: list[Problem] = field(default_factory=list)
    verified_hashes: bool = False
    registries: list[str] = field(default_factory=list)
    dataset: Dataset = field(default_factory=lambda: Dataset(None, None, "unknown"))

    @property
    def clean(self) -> bool:
        return not any(p.severity in (ERROR, WARNING) for p in self.problems)

    def key(self, year: int, name: str, suffix: str = ".npy") -> str:
        """Archive key of a tile-year's file (suffix '.npy' or '_scales.npy')."""
        return f"{self.year_root}/{year}/{name}/{name}{suffix}"

    def landmask_key(self, name: str) -> str:
        return f"{landmask_root_of(self.layout, self.landmask_root)}/{name}.tiff"

    def select(self, keep: np.ndarray) -> Inventory:
        """The same inventory with only the tile rows where `keep` is True."""
        return replace(self, table=self.table[keep])

    @property
    def tiles(self) -> list[TileRecord]:
        """Every tile-year as a record (one Python object each: for small archives and tests)."""
        t = self.table
        hashed = "embeddings_sha256" in t.dtype.names
        fp = footprints(t["lon_i"], t["lat_i"])
        out = []
        for i, name in enumerate(names(t["lon_i"], t["lat_i"])):
            r = t[i]
            year = int(r["year"])
            out.append(TileRecord(
                year=year, tile=name, lon_i=int(r["lon_i"]), lat_i=int(r["lat_i"]), zone=int(r["zone"]),
                epsg=int(epsg_of(r["zone"], r["lat_i"])), embeddings_key=self.key(year, name), embeddings_size=none_if_negative(r["embeddings_size"]),
                scales_key=self.key(year, name, "_scales.npy"), scales_size=none_if_negative(r["scales_size"]),
                height=none_if_negative(r["height"]), width=none_if_negative(r["width"]),
                footprint_height=int(fp.height[i]), footprint_width=int(fp.width[i]),
                embeddings_offset=none_if_negative(r["embeddings_offset"]),
                scales_offset=none_if_negative(r["scales_offset"]),
                landmask_key=self.landmask_key(name) if r["landmask"] else None, usable=bool(r["usable"]),
                embeddings_sha256=hex_digest(r["embeddings_sha256"]) if hashed else None,
                scales_sha256=hex_digest(r["scales_sha256"]) if hashed else None))
        return out

    @property
    def landmasks(self) -> list[LandmaskRecord]:
        """Every landmask as a record."""
        m = self.masks
        hashed = "sha256" in m.dtype.names
        return [LandmaskRecord(name, int(r["lon_i"]), int(r["lat_i"]), self.landmask_key(name), int(r["size"]),
                               hex_digest(r["sha256"]) if hashed else None)
                for name, r in zip(names(m["lon_i"], m["lat_i"]), m)]

    def summary(self) -> dict:
        """Counts per year and zone, bytes, landmask coverage, dataset and problem counts, JSON-ready."""
        t = self.table
        per_year: dict[str, dict] = {}
        per_zone: dict[str, dict[str, int]] = {}
        for year, a, b in year_slices(t):
            rows = t[a:b]
            nbytes = int(np.maximum(rows["embeddings_size"], 0).sum() + np.maximum(rows["scales_size"], 0).sum())
            per_year[str(year)] = {"tiles": b - a, "usable": int(rows["usable"].sum()), "bytes": nbytes}
            counts = np.bincount(rows["zone"].astype(np.int64), minlength=61)
            for z in np.flatnonzero(counts).tolist():
                per_zone.setdefault(zone_group(z), {})[str(year)] = int(counts[z])
        cells = tile_cells(t)
        masks = cell_key(self.masks["lon_i"], self.masks["lat_i"])
        covered = int(np.isin(cells, masks).sum())
        return {
            "source": self.source,
            "layout": self.layout,
            "dataset": self.dataset.to_dict(),
            "years": [int(y) for y in per_year],
            "tiles": len(t),
            "usable_tiles": int(t["usable"].sum()),
            "tile_cells": len(cells),
            "bytes": sum(v["bytes"] for v in per_year.values()),
            "per_year": per_year,
            "per_zone": dict(sorted(per_zone.items())),
            "landmasks": {
                "files": len(self.masks),
                "bytes": int(self.masks["size"].sum()),
                "tile_cells_covered": covered,
                "tile_cells_without": len(cells) - covered,
                "coverage": (covered / len(cells)) if len(cells) else None,
                "without_tiles": int((~np.isin(masks, cells)).sum()),
            },
            "registries": self.registries,
            "verified_hashes": self.verified_hashes,
            "problems": dict(sorted(Counter(p.kind for p in self.problems).items())),
            "clean": self.clean,
        }

    def to_json(self) -> dict:
        """Summary plus every problem."""
        return {"summary": self.summary(), "problems": [p.to_dict() for p in sorted(self.problems)]}
