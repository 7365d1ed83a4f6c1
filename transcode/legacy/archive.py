"""Discover the tiles, landmasks and registries of a legacy archive by listing only."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from transcode.errors import ArchiveError, ObjectNotFoundError
from transcode.format.grid import TileId, parse_tile_name
from transcode.legacy.problems import WARNING, Problem
from transcode.storage import ObjectInfo, S3Options, Storage, join_key, open_storage

LOCAL_YEAR_ROOT = "global_0.1_degree_representation"
LOCAL_LANDMASK_ROOT = "global_0.1_degree_tiff_all"
OBJECT_YEAR_PARENT = "npy"
OBJECT_LANDMASK_PARENT = "landmasks"
REGISTRY_DIR = "registry"
PARQUET_MANIFESTS = ("registry.parquet", "manifest.parquet", "landmasks.parquet")
DIR_HASH_FILE = "SHA256"
TOP_HASH_FILE = "SHA256SUMS"
_YEAR_RE = re.compile(r"^\d{4}$")


@dataclass(frozen=True)
class TileFiles:
    """The two files of one tile in one year, as listed (either may be missing)."""

    year: int
    tile: TileId
    directory: str
    embeddings: ObjectInfo | None
    scales: ObjectInfo | None

    @property
    def name(self) -> str:
        return self.tile.name

    @property
    def embeddings_key(self) -> str:
        return f"{self.directory}/{self.tile.name}.npy"

    @property
    def scales_key(self) -> str:
        return f"{self.directory}/{self.tile.name}_scales.npy"

    @property
    def sort_key(self) -> tuple[int, int, int]:
        """Canonical order: (year, lat_i, lon_i) ascending."""
        return (self.year, self.tile.lat_i, self.tile.lon_i)


@dataclass
class LegacyArchive:
    """What a listing of an archive found; keys are relative to `storage`'s root."""

    storage: Storage
    layout: str
    year_root: str
    landmask_root: str | None
    tiles: list[TileFiles]
    landmasks: dict[TileId, ObjectInfo]
    dir_hash_files: list[ObjectInfo] = field(default_factory=list)
    top_hash_file: ObjectInfo | None = None
    text_registries: list[ObjectInfo] = field(default_factory=list)
    parquet_manifests: dict[str, ObjectInfo] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    @property
    def years(self) -> list[int]:
        return sorted({t.year for t in self.tiles})

    def tile_key(self, rel: str) -> str:
        """Archive key of a path given relative to the year root (as registries write them)."""
        return join_key(self.year_root, rel)

    def landmask_key(self, rel: str) -> str:
        """Archive key of a path given relative to the landmask root."""
        return join_key(self.landmask_root or "", rel)


def open_archive(
    url: str,
    options: S3Options | None = None,
    *,
    dataset: str | None = None,
    landmask_version: str | None = None,
    years: Iterable[int] | None = None,
) -> LegacyArchive:
    """Open a legacy archive (local tree or object-store tree, on disk or S3) and list it."""
    storage = open_storage(url, options)
    top = storage.list_dirs("")
    if LOCAL_YEAR_ROOT in top:
        layout, year_root = "local", LOCAL_YEAR_ROOT
        landmask_root = LOCAL_LANDMASK_ROOT if LOCAL_LANDMASK_ROOT in top else None
    elif OBJECT_YEAR_PARENT in top:
        layout = "object"
        datasets = storage.list_dirs(OBJECT_YEAR_PARENT)
        year_root = join_key(OBJECT_YEAR_PARENT, _choose(storage, "dataset", datasets, dataset, OBJECT_YEAR_PARENT))
        landmask_root = None
        if OBJECT_LANDMASK_PARENT in top:
            versions = storage.list_dirs(OBJECT_LANDMASK_PARENT)
            if versions or landmask_version:
                landmask_root = join_key(
                    OBJECT_LANDMASK_PARENT,
                    _choose(storage, "landmask version", versions, landmask_version, OBJECT_LANDMASK_PARENT, latest=True),
                )
    else:
        if not top and not any(True for _ in storage.list("")):
            raise ArchiveError(storage.describe(), "no such archive, or it is empty")
        raise ArchiveError(
            storage.describe(),
            f"not a legacy TESSERA archive: expected a {LOCAL_YEAR_ROOT}/ or {OBJECT_YEAR_PARENT}/<dataset>/ directory",
        )
    archive = LegacyArchive(storage, layout, year_root, landmask_root, [], {})
    wanted = set(years) if years is not None else None
    _list_tiles(archive, wanted)
    if landmask_root:
        _list_landmasks(archive)
    _list_registries(archive)
    return archive


def _choose(storage: Storage, what: str, found: list[str], wanted: str | None, parent: str, latest: bool = False) -> str:
    if wanted is not None:
        if wanted not in found:
            raise ArchiveError(storage.describe(join_key(parent, wanted)), f"no such {what}; found: {', '.join(found) or 'none'}")
        return wanted
    if len(found) == 1 or (latest and found):
        return found[-1]
    if not found:
        raise ArchiveError(storage.describe(parent), f"no {what} directory inside")
    raise ArchiveError(storage.describe(parent), f"several {what}s ({', '.join(found)}): choose one with --{what.split()[-1]}")


def _list_tiles(archive: LegacyArchive, wanted_years: set[int] | None) -> None:
    storage, root = archive.storage, archive.year_root
    groups: dict[tuple[int, str], dict[str, ObjectInfo]] = {}
    strip = len(root) + 1
    for obj in storage.list(root):
        rel = obj.key[strip:]
        parts = rel.split("/")
        if parts == [TOP_HASH_FILE]:
            archive.top_hash_file = obj
            continue
        if len(parts) != 3 or not _YEAR_RE.match(parts[0]):
            archive.problems.append(Problem(obj.key, "unexpected-file", "not part of the <year>/grid_X_Y/ layout", WARNING))
            continue
        year = int(parts[0])
        if wanted_years is not None and year not in wanted_years:
            continue
        dirname, fname = parts[1], parts[2]
        if fname == DIR_HASH_FILE:
            archive.dir_hash_files.append(obj)
            continue
        if fname == f"{dirname}.npy":
            role = "embeddings"
        elif fname == f"{dirname}_scales.npy":
            role = "scales"
        else:
            archive.problems.append(
                Problem(obj.key, "unexpected-file", f"file name does not match its tile directory {dirname}", WARNING, year)
            )
            continue
        groups.setdefault((year, dirname), {})[role] = obj
    tiles: list[TileFiles] = []
    for (year, dirname), files in groups.items():
        directory = join_key(root, str(year), dirname)
        try:
            tile = parse_tile_name(dirname)
        except ValueError as e:
            archive.problems.append(Problem(directory, "bad-tile-name", str(e), year=year, tile=dirname))
            continue
        tiles.append(TileFiles(year, tile, directory, files.get("embeddings"), files.get("scales")))
    tiles.sort(key=lambda t: t.sort_key)
    archive.tiles = tiles


def _list_landmasks(archive: LegacyArchive) -> None:
    root = archive.landmask_root
    assert root is not None
    strip = len(root) + 1
    for obj in archive.storage.list(root):
        rel = obj.key[strip:]
        if "/" in rel or not rel.endswith(".tiff"):
            archive.problems.append(Problem(obj.key, "unexpected-file", "not a grid_X_Y.tiff landmask", WARNING))
            continue
        try:
            tile = parse_tile_name(rel[: -len(".tiff")])
        except ValueError as e:
            archive.problems.append(Problem(obj.key, "bad-tile-name", str(e)))
            continue
        archive.landmasks[tile] = obj


def _list_registries(archive: LegacyArchive) -> None:
    storage = archive.storage
    for obj in storage.list(REGISTRY_DIR):
        if obj.key.endswith(".txt"):
            archive.text_registries.append(obj)
    for name in PARQUET_MANIFESTS:
        try:
            archive.parquet_manifests[name] = storage.stat(name)
        except ObjectNotFoundError:
            continue
