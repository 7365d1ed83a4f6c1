"""Discover the tiles, landmasks, registries and dataset of a legacy archive by listing only; tiles and
landmasks are streamed from the listing (in key order, parallel over key ranges on S3), never collected whole."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property

from transcode.errors import ArchiveError
from transcode.format.grid import TileId, parse_tile_name
from transcode.legacy.dataset import METADATA_FILE, Claim, metadata_claim, parse_dataset_name
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
LANDMASK_HASH_FILE = "SHA256SUM"
LISTING_THREADS = 8
_YEAR_RE = re.compile(r"^\d{4}$")


@dataclass(frozen=True)
class TileFiles:
    """The files of one tile in one year, as listed (either .npy may be missing; `sums` is its SHA256 file)."""

    year: int
    tile: TileId
    directory: str
    embeddings: ObjectInfo | None
    scales: ObjectInfo | None
    sums: ObjectInfo | None = None

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
    """An opened archive: its roots, registries and dataset claims; keys are relative to `storage`'s root.
    The tiles and landmasks are listed when iterated (`iter_tiles`, `iter_landmasks`)."""

    storage: Storage
    layout: str
    year_root: str
    landmask_root: str | None
    years: set[int] | None = None
    claims: list[Claim] = field(default_factory=list)
    dataset_override: str | None = None
    text_registries: list[ObjectInfo] = field(default_factory=list)
    parquet_manifests: dict[str, ObjectInfo] = field(default_factory=dict)
    top_hash_file: ObjectInfo | None = None  # known once the tiles were listed
    landmask_sums: ObjectInfo | None = None  # known once the landmasks were listed
    dir_sums_seen: bool = False  # a tile directory with its own SHA256 file was listed
    listing_threads: int = LISTING_THREADS

    def tile_key(self, year: int, name: str, suffix: str = ".npy") -> str:
        """Archive key of a tile's file (suffix '.npy' or '_scales.npy')."""
        return f"{self.year_root}/{year}/{name}/{name}{suffix}"

    def landmask_key(self, name: str) -> str:
        """Archive key of a tile's landmask (under the layout's usual root when the archive has none)."""
        return f"{landmask_root_of(self.layout, self.landmask_root)}/{name}.tiff"

    def iter_tiles(self, problems: list[Problem]) -> Iterator[TileFiles]:
        """Every tile directory of the wanted years in listing order; what does not fit the layout goes to
        `problems`."""
        root = self.year_root
        strip = len(root) + 1
        current: tuple[int, str] | None = None
        files: dict[str, ObjectInfo] = {}
        for obj in self.storage.list_parallel(root, self.listing_threads):
            parts = obj.key[strip:].split("/")
            if parts == [TOP_HASH_FILE]:
                self.top_hash_file = obj
                continue
            if len(parts) != 3 or not _YEAR_RE.match(parts[0]):
                problems.append(Problem(obj.key, "unexpected-file", "not part of the <year>/grid_X_Y/ layout", WARNING))
                continue
            year = int(parts[0])
            if self.years is not None and year not in self.years:
                continue
            group = (year, parts[1])
            if group != current:
                if current is not None:
                    yield from self._tile_files(current, files, problems)
                current, files = group, {}
            dirname, fname = parts[1], parts[2]
            role = {f"{dirname}.npy": "embeddings", f"{dirname}_scales.npy": "scales", DIR_HASH_FILE: "sums"}.get(fname)
            if role is None:
                problems.append(Problem(obj.key, "unexpected-file",
                                        f"file name does not match its tile directory {dirname}", WARNING, year))
                continue
            files[role] = obj
            self.dir_sums_seen |= role == "sums"
        if current is not None:
            yield from self._tile_files(current, files, problems)

    def _tile_files(self, group: tuple[int, str], files: dict[str, ObjectInfo],
                    problems: list[Problem]) -> Iterator[TileFiles]:
        year, dirname = group
        directory = join_key(self.year_root, str(year), dirname)
        try:
            tile = _tile_of(dirname)
        except ValueError as e:
            problems.append(Problem(directory, "bad-tile-name", str(e), year=year, tile=dirname))
            return
        if "embeddings" in files or "scales" in files:
            yield TileFiles(year, tile, directory, files.get("embeddings"), files.get("scales"), files.get("sums"))

    def iter_landmasks(self, problems: list[Problem]) -> Iterator[tuple[TileId, ObjectInfo]]:
        """Every landmask in listing order; `SHA256SUM` beside them is their hash registry."""
        root = self.landmask_root
        if root is None:
            return
        strip = len(root) + 1
        for obj in self.storage.list_parallel(root, self.listing_threads):
            rel = obj.key[strip:]
            if rel == LANDMASK_HASH_FILE:
                self.landmask_sums = obj
                continue
            if "/" in rel or not rel.endswith(".tiff"):
                problems.append(Problem(obj.key, "unexpected-file", "not a grid_X_Y.tiff landmask", WARNING))
                continue
            try:
                tile = _tile_of(rel[: -len(".tiff")])
            except ValueError as e:
                problems.append(Problem(obj.key, "bad-tile-name", str(e)))
                continue
            yield tile, obj

    @cached_property
    def tiles(self) -> list[TileFiles]:
        """Every tile-year, listed whole and in canonical order (for small archives and tests)."""
        return sorted(self.iter_tiles([]), key=lambda t: t.sort_key)

    @cached_property
    def landmasks(self) -> dict[TileId, ObjectInfo]:
        """Every landmask, listed whole (for small archives and tests)."""
        return dict(self.iter_landmasks([]))


def landmask_root_of(layout: str, landmask_root: str | None) -> str:
    """Where landmasks are (or would be) in an archive of this layout."""
    return landmask_root or (LOCAL_LANDMASK_ROOT if layout == "local" else OBJECT_LANDMASK_PARENT)


def _tile_of(name: str) -> TileId:
    tile = parse_tile_name(name)
    if tile.name != name:
        raise ValueError(f"tile name {name!r} is not written as {tile.name!r}")
    return tile


def open_archive(
    url: str,
    options: S3Options | None = None,
    *,
    dataset: str | None = None,
    landmask_version: str | None = None,
    years: Iterable[int] | None = None,
    dataset_version: str | None = None,
) -> LegacyArchive:
    """Open a legacy archive (local tree or object-store tree, on disk or S3): find its roots, registries and
    dataset claims. `dataset_version` overrides what the tree says about its dataset."""
    storage = open_storage(url, options)
    top = storage.list_dirs("")
    claims: list[Claim] = []
    if LOCAL_YEAR_ROOT in top:
        layout, year_root = "local", LOCAL_YEAR_ROOT
        landmask_root = LOCAL_LANDMASK_ROOT if LOCAL_LANDMASK_ROOT in top else None
        if storage.exists(METADATA_FILE):
            claims.append(metadata_claim(storage.describe(METADATA_FILE), storage.read(METADATA_FILE)))
    elif OBJECT_YEAR_PARENT in top:
        layout = "object"
        datasets = storage.list_dirs(OBJECT_YEAR_PARENT)
        chosen = _choose(storage, "dataset", datasets, dataset, OBJECT_YEAR_PARENT)
        year_root = join_key(OBJECT_YEAR_PARENT, chosen)
        try:
            claims.append(Claim(year_root, *parse_dataset_name(chosen)))
        except ValueError:
            pass  # a directory name that names no version: the dataset stays unknown unless given
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
    archive = LegacyArchive(storage, layout, year_root, landmask_root, set(years) if years is not None else None,
                            claims, dataset_version)
    archive.text_registries = [obj for obj in storage.list(REGISTRY_DIR) if obj.key.endswith(".txt")]
    archive.parquet_manifests = {name: storage.stat(name) for name in PARQUET_MANIFESTS if storage.exists(name)}
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
