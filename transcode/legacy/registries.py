"""Every registry form of a legacy archive, streamed in batches and matched to the listed files by tile
(year, lon_i, lat_i), never by path: the incumbent's scanner writes paths of another machine's mount or
s3:// URLs, or no path at all (FORMATS.md §1.3). Sizes always, SHA-256 with --verify-hashes."""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from transcode.errors import StorageError, TransientStorageError
from transcode.format.grid import parse_tile_name, tile_name
from transcode.legacy.archive import LegacyArchive
from transcode.legacy.dataset import Claim, normalize_variant, normalize_version
from transcode.legacy.problems import Problem
from transcode.legacy.tiletable import cell_key, digest_bytes, tile_year_key
from transcode.storage import ObjectInfo
from transcode.storage.rangefile import open_seekable

BATCH = 16384  # registry rows matched at once
EMBEDDINGS, SCALES = 0, 1
_SUFFIX = {EMBEDDINGS: ".npy", SCALES: "_scales.npy"}
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_TILE_PATH = re.compile(r"(?:^|/)(\d{4})/(grid_[^/]+)/(grid_[^/]+?)(_scales)?\.npy$")
_MASK_PATH = re.compile(r"(?:^|/)(grid_[^/]+)\.tiff$")


@dataclass
class _Batch:
    """What one registry says about a batch of files, as equal-length columns; size -1 and an all-zero digest
    mean the registry does not say."""

    year: np.ndarray
    lon_i: np.ndarray
    lat_i: np.ndarray
    role: np.ndarray
    size: np.ndarray
    sha: np.ndarray  # (n, 32) uint8

    def __len__(self) -> int:
        return len(self.year)


class _Lines:
    """Rows parsed from text lines, gathered in lists and handed over as a `_Batch` every BATCH rows."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, int, int, int, bytes]] = []

    def add(self, year: int, lon_i: int, lat_i: int, role: int, sha: bytes) -> None:
        self.rows.append((year, lon_i, lat_i, role, sha))

    def batch(self) -> _Batch:
        rows, self.rows = self.rows, []
        n = len(rows)
        year, lon_i, lat_i, role = (np.array([r[i] for r in rows], np.int64) for i in range(4))
        sha = np.frombuffer(b"".join(r[4] for r in rows), np.uint8).reshape(n, 32)
        return _Batch(year, lon_i, lat_i, role, np.full(n, -1, np.int64), sha)


@dataclass
class RegistryCheck:
    """The outcome of matching every registry with the listing."""

    problems: list[Problem] = field(default_factory=list)
    unusable: set[int] = field(default_factory=set)  # rows of the tile table an error was found in
    claims: list[Claim] = field(default_factory=list)  # dataset claims of manifest.parquet
    sources: list[str] = field(default_factory=list)


class _Matcher:
    """Matches registry batches against the listed tile table (canonical order) and landmask table (cell order)."""

    def __init__(self, archive: LegacyArchive, tiles: np.ndarray, masks: np.ndarray, verify: bool,
                 needs_landmask: bool, out: RegistryCheck) -> None:
        self.a, self.tiles, self.masks, self.verify, self.needs_landmask, self.out = \
            archive, tiles, masks, verify, needs_landmask, out
        self.tkeys = tile_year_key(tiles["year"], tiles["lon_i"], tiles["lat_i"])
        self.mkeys = cell_key(masks["lon_i"], masks["lat_i"])
        self.years = np.unique(tiles["year"]).astype(np.int64)

    def tiles_batch(self, source: str, b: _Batch) -> None:
        if not len(b):
            return
        year, role, lon_i, lat_i, size = b.year, b.role, b.lon_i, b.lat_i, b.size
        keep = np.isin(year, self.years)  # registry rows of years not listed (or not wanted) are not expected
        pos, found = _lookup(self.tkeys, tile_year_key(year, lon_i, lat_i))
        row = np.where(found, pos, 0)
        actual = np.where(role == EMBEDDINGS, self.tiles["embeddings_size"][row], self.tiles["scales_size"][row])
        actual = np.where(found, actual, -1)
        missing = keep & (actual < 0)
        wrong_size = keep & ~missing & (size >= 0) & (actual != size)
        for i in np.flatnonzero(missing | wrong_size):
            name, y = _name(lon_i[i], lat_i[i]), int(year[i])
            key = self.a.tile_key(y, name, _SUFFIX[int(role[i])])
            if missing[i]:
                self._problem(key, "listed-but-missing", f"listed in {source} but not present", y, name)
            else:
                self._problem(key, "size-mismatch", f"{actual[i]} bytes, {source} says {size[i]}", y, name, int(row[i]))
        if self.verify:
            want = b.sha
            got = np.where((role == EMBEDDINGS)[:, None], self.tiles["embeddings_sha256"][row],
                           self.tiles["scales_sha256"][row])
            differ = keep & ~missing & want.any(axis=1) & got.any(axis=1) & (want != got).any(axis=1)
            for i in np.flatnonzero(differ):
                name, y = _name(lon_i[i], lat_i[i]), int(year[i])
                self._problem(self.a.tile_key(y, name, _SUFFIX[int(role[i])]), "hash-mismatch",
                              hash_message(got[i].tobytes(), want[i].tobytes(), source), y, name, int(row[i]))

    def masks_batch(self, source: str, b: _Batch) -> None:
        if not len(b):
            return
        lon_i, lat_i, size = b.lon_i, b.lat_i, b.size
        pos, found = _lookup(self.mkeys, cell_key(lon_i, lat_i))
        row = np.where(found, pos, 0)
        actual = np.where(found, self.masks["size"][row], -1)
        missing = (actual < 0) if self.needs_landmask else np.zeros(len(actual), bool)
        wrong_size = found & (size >= 0) & (actual != size)
        for i in np.flatnonzero(missing | wrong_size):
            name = _name(lon_i[i], lat_i[i])
            if missing[i]:
                self._problem(self.a.landmask_key(name), "listed-but-missing", f"listed in {source} but not present",
                              None, name)
            else:
                self._problem(self.a.landmask_key(name), "size-mismatch", f"{actual[i]} bytes, {source} says {size[i]}",
                              None, name)
        if self.verify:
            want = b.sha
            got = self.masks["sha256"][row]
            for i in np.flatnonzero(found & want.any(axis=1) & got.any(axis=1) & (want != got).any(axis=1)):
                name = _name(lon_i[i], lat_i[i])
                self._problem(self.a.landmask_key(name), "hash-mismatch", hash_message(got[i].tobytes(), want[i].tobytes(), source),
                              None, name)

    def _problem(self, key: str, kind: str, message: str, year: int | None, tile: str, row: int | None = None) -> None:
        self.out.problems.append(Problem(key, kind, message, year=year, tile=tile))
        if row is not None:
            self.out.unusable.add(row)


def _lookup(sorted_keys: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pos = np.searchsorted(sorted_keys, keys)
    found = pos < len(sorted_keys)
    found[found] = sorted_keys[pos[found]] == keys[found]
    return pos, found


def _name(lon_i: int, lat_i: int) -> str:
    return tile_name(lon_i / 100.0, lat_i / 100.0)


def hash_message(got: bytes, want: bytes, source: str) -> str:
    """The message of a hash mismatch."""
    return f"SHA-256 {got.hex()[:16]}… but {source} says {want.hex()[:16]}…"


def check_registries(archive: LegacyArchive, tiles: np.ndarray, masks: np.ndarray, *, verify: bool,
                     needs_landmask: bool) -> RegistryCheck:
    """Match every registry of the archive with the listed tiles and landmasks (both sorted: tiles in canonical
    order, landmasks by cell); the registries are read in batches, never whole."""
    out = RegistryCheck()
    match = _Matcher(archive, tiles, masks, verify, needs_landmask, out)
    readers: list[tuple[ObjectInfo, Callable]] = [(obj, _text_registry) for obj in archive.text_registries]
    if archive.top_hash_file is not None:
        readers.append((archive.top_hash_file, _top_sums))
    if archive.landmask_sums is not None:
        readers.append((archive.landmask_sums, _landmask_sums))
    readers += [(obj, _PARQUET_READERS[name]) for name, obj in archive.parquet_manifests.items()]
    for obj, reader in readers:
        out.sources.append(obj.key)
        try:
            reader(archive, obj.key, match, out)
        except TransientStorageError:
            raise  # says nothing about the registry: never recorded as a problem of the archive
        except StorageError as e:
            out.problems.append(Problem(obj.key, "registry-unreadable", e.reason))
        except Exception as e:  # a corrupt parquet file raises pyarrow's own errors
            out.problems.append(Problem(obj.key, "registry-unreadable", f"{type(e).__name__}: {e}"))
    return out


# ------------------------------------------------------------------ text forms

def _lines(archive: LegacyArchive, source: str, out: RegistryCheck) -> Iterator[tuple[int, str]]:
    with archive.storage.open(source) as raw:
        buffered = raw if isinstance(raw, io.BufferedIOBase) else io.BufferedReader(raw)
        text = io.TextIOWrapper(buffered, encoding="utf-8", newline=None)
        try:
            for n, line in enumerate(text, 1):
                line = line.strip()
                if line and not line.startswith("#"):
                    yield n, line
        except UnicodeDecodeError:
            out.problems.append(Problem(source, "bad-registry", "not UTF-8 text"))


def _path_entry(path: str) -> tuple[str, tuple] | None:
    """('tile', (year, lon_i, lat_i, role)) or ('mask', (lon_i, lat_i)) for a path any registry may write."""
    path = path.replace("\\", "/")
    m = _TILE_PATH.search(path)
    if m and m.group(2) == m.group(3):
        try:
            t = parse_tile_name(m.group(2))
        except ValueError:
            return None
        return "tile", (int(m.group(1)), t.lon_i, t.lat_i, SCALES if m.group(4) else EMBEDDINGS)
    m = _MASK_PATH.search(path)
    if m:
        try:
            t = parse_tile_name(m.group(1))
        except ValueError:
            return None
        return "mask", (t.lon_i, t.lat_i)
    return None


def _entries(archive: LegacyArchive, source: str, match: _Matcher, out: RegistryCheck,
             parse: Callable[[str], tuple[str, str] | None], form: str) -> None:
    """Lines of (path, sha256) in batches: each path matched by the tile it names."""
    tiles, masks = _Lines(), _Lines()
    for n, line in _lines(archive, source, out):
        parsed = parse(line)
        entry = _path_entry(parsed[0]) if parsed else None
        if entry is None:
            out.problems.append(Problem(source, "bad-registry", f"line {n}: expected {form}, got {line[:80]!r}"))
            continue
        sha = digest_bytes(parsed[1]) if match.verify else bytes(32)
        if entry[0] == "tile":
            tiles.add(*entry[1], sha=sha)
        else:
            masks.add(0, *entry[1], EMBEDDINGS, sha=sha)
        if len(tiles.rows) >= BATCH:
            match.tiles_batch(source, tiles.batch())
        if len(masks.rows) >= BATCH:
            match.masks_batch(source, masks.batch())
    match.tiles_batch(source, tiles.batch())
    match.masks_batch(source, masks.batch())


def _path_then_sha(line: str) -> tuple[str, str] | None:
    parts = line.split()
    return (parts[0], parts[1].lower()) if len(parts) == 2 and _HEX64.match(parts[1]) else None


def parse_sha256sum_line(line: str) -> tuple[str, str] | None:
    """(name, sha256) of a line in sha256sum format, None when it is not one."""
    m = re.match(r"^([0-9a-fA-F]{64}) [ *](.+)$", line)
    return (m.group(2), m.group(1).lower()) if m else None


def _text_registry(archive: LegacyArchive, source: str, match: _Matcher, out: RegistryCheck) -> None:
    """`<year>/grid_X_Y/grid_X_Y.npy <sha256>` lines (landmask lines: `grid_X_Y.tiff <sha256>`)."""
    _entries(archive, source, match, out, _path_then_sha, "'<path> <sha256>'")


def _top_sums(archive: LegacyArchive, source: str, match: _Matcher, out: RegistryCheck) -> None:
    """SHA256SUMS beside the years, in sha256sum format."""
    _entries(archive, source, match, out, parse_sha256sum_line, "sha256sum format")


_landmask_sums = _top_sums  # SHA256SUM beside the landmasks: the same format, .tiff names


# ------------------------------------------------------------------ Parquet forms

def _columns(archive: LegacyArchive, source: str, out: RegistryCheck, needed: list[str], optional: list[str]):
    """The Parquet file's batches of the needed (and present optional) columns; None when one is missing."""
    import pyarrow.parquet as pq

    f = open_seekable(archive.storage, source)
    pf = pq.ParquetFile(f)
    have = set(pf.schema_arrow.names)
    lon_lat = ["lon_i", "lat_i"] if {"lon_i", "lat_i"} <= have else ["lon", "lat"]
    missing = sorted(set(needed + lon_lat) - have)
    if missing:
        out.problems.append(Problem(source, "bad-registry", f"missing columns: {', '.join(missing)}"))
        f.close()
        return None
    cols = needed + lon_lat + [c for c in optional if c in have]

    def batches():
        with f:
            for batch in pf.iter_batches(batch_size=BATCH, columns=cols):
                d = {c: batch.column(c).to_numpy(zero_copy_only=False) for c in cols if c not in optional}
                d.update({c: batch.column(c).to_pylist() for c in optional if c in cols})
                if "lon_i" not in d:
                    d["lon_i"] = np.rint(d.pop("lon").astype(np.float64) * 100).astype(np.int64)
                    d["lat_i"] = np.rint(d.pop("lat").astype(np.float64) * 100).astype(np.int64)
                yield d
    return batches()


def _ints(values: np.ndarray) -> np.ndarray:
    """An integer column as int64, -1 for nulls."""
    if values.dtype.kind in "iu":
        return values.astype(np.int64)
    out = np.full(len(values), -1, np.int64)
    good = np.array([v is not None and not (isinstance(v, float) and math.isnan(v)) for v in values.tolist()], bool)
    out[good] = values[good].astype(np.int64)
    return out


def _digests(values: list | None, n: int) -> np.ndarray:
    if values is None:
        return np.zeros((n, 32), np.uint8)
    raw = [digest_bytes(v.lower()) if isinstance(v, str) and _HEX64.match(v) else bytes(32) for v in values]
    return np.frombuffer(b"".join(raw), np.uint8).reshape(n, 32)


def _file_rows(match: _Matcher, d: dict, sizes: tuple[str, str], hashes: tuple[str, str] | None) -> _Batch:
    """Two rows (embeddings, scales) per registry row."""
    n = len(d["lon_i"])
    year, lon_i, lat_i = _ints(d["year"]), d["lon_i"].astype(np.int64), d["lat_i"].astype(np.int64)
    shas = [_digests(d.get(h) if match.verify and h else None, n) for h in (hashes or (None, None))]
    return _Batch(np.concatenate([year, year]), np.concatenate([lon_i, lon_i]), np.concatenate([lat_i, lat_i]),
                  np.repeat(np.array([EMBEDDINGS, SCALES]), n),
                  np.concatenate([_ints(d[sizes[0]]), _ints(d[sizes[1]])]), np.concatenate(shas))


def _registry_parquet(archive: LegacyArchive, source: str, match: _Matcher, out: RegistryCheck) -> None:
    """registry.parquet: year, lon/lat (lon_i/lat_i), file_size, scales_size, hash, scales_hash."""
    hashes = ["hash", "scales_hash"] if match.verify else []
    for d in _columns(archive, source, out, ["year", "file_size", "scales_size"], hashes) or ():
        match.tiles_batch(source, _file_rows(match, d, ("file_size", "scales_size"), ("hash", "scales_hash")))


def _manifest_parquet(archive: LegacyArchive, source: str, match: _Matcher, out: RegistryCheck) -> None:
    """manifest.parquet: year, lon/lat (lon_i/lat_i), grid_size, scales_size; version and variant are dataset
    claims. Its directory/grid_path/scales_path are another machine's paths and are not used."""
    seen: set[tuple[str, str]] = set()
    for d in _columns(archive, source, out, ["year", "grid_size", "scales_size"], ["version", "variant"]) or ():
        match.tiles_batch(source, _file_rows(match, d, ("grid_size", "scales_size"), None))
        if "version" in d:
            variants = d.get("variant") or [None] * len(d["version"])
            wanted = np.isin(_ints(d["year"]), match.years)
            seen |= {(v, w) for v, w, keep in zip(d["version"], variants, wanted) if keep and v is not None}
    for version, variant in sorted(seen, key=str):
        try:
            out.claims.append(Claim(source, normalize_version(version), normalize_variant(variant)))
        except ValueError:
            out.problems.append(Problem(source, "bad-registry", f"version {version!r} is not a dataset version"))


def _landmasks_parquet(archive: LegacyArchive, source: str, match: _Matcher, out: RegistryCheck) -> None:
    """landmasks.parquet: lon/lat (lon_i/lat_i) and file_size; `key` (an s3:// URL) is not used; the keyless
    local form (lat, lon, hash, file_size) also gives hashes."""
    for d in _columns(archive, source, out, ["file_size"], ["hash"] if match.verify else []) or ():
        n = len(d["lon_i"])
        match.masks_batch(source, _Batch(np.zeros(n, np.int64), d["lon_i"].astype(np.int64),
                                         d["lat_i"].astype(np.int64), np.zeros(n, np.int64), _ints(d["file_size"]),
                                         _digests(d.get("hash"), n)))


_PARQUET_READERS = {
    "registry.parquet": _registry_parquet,
    "manifest.parquet": _manifest_parquet,
    "landmasks.parquet": _landmasks_parquet,
}
