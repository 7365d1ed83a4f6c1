"""Read every integrity registry form of a legacy archive into (key, sha256, size) expectations."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass

from transcode.errors import StorageError, TransientStorageError
from transcode.legacy.archive import LegacyArchive
from transcode.legacy.problems import Problem
from transcode.storage import join_key

_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


@dataclass(frozen=True)
class Expectation:
    """What one registry says about one file: its SHA-256 and/or its size."""

    key: str
    source: str
    sha256: str | None = None
    size: int | None = None


def load_expectations(archive: LegacyArchive) -> tuple[list[Expectation], list[Problem]]:
    """Every expectation from every registry form present, and problems with the registries themselves."""
    out: list[Expectation] = []
    problems: list[Problem] = []
    readers = [(obj, _text_registry) for obj in archive.text_registries]
    readers += [(obj, _dir_sums) for obj in archive.dir_hash_files]
    if archive.top_hash_file is not None:
        readers.append((archive.top_hash_file, _top_sums))
    for name, obj in archive.parquet_manifests.items():
        readers.append((obj, _PARQUET_READERS[name]))
    for obj, reader in readers:
        try:
            data = archive.storage.read(obj.key)
            out += reader(archive, obj.key, data, problems)
        except TransientStorageError:
            raise
        except StorageError as e:
            problems.append(Problem(obj.key, "registry-unreadable", e.reason))
        except Exception as e:  # a corrupt parquet file raises pyarrow's own errors
            problems.append(Problem(obj.key, "registry-unreadable", f"{type(e).__name__}: {e}"))
    years = {t.year for t in archive.tiles} if archive.tiles else None
    return [e for e in out if _year_wanted(archive, e.key, years)], problems


def _year_wanted(archive: LegacyArchive, key: str, years: set[int] | None) -> bool:
    if years is None or not key.startswith(archive.year_root + "/"):
        return True
    head = key[len(archive.year_root) + 1:].split("/", 1)[0]
    return not head.isdigit() or int(head) in years


def _lines(data: bytes, source: str, problems: list[Problem]) -> Iterator[tuple[int, str]]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        problems.append(Problem(source, "bad-registry", "not UTF-8 text"))
        return
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip() and not line.lstrip().startswith("#"):
            yield n, line.strip()


def _text_registry(archive: LegacyArchive, source: str, data: bytes, problems: list[Problem]) -> list[Expectation]:
    """`<year>/grid_X_Y/grid_X_Y.npy <sha256>` lines (landmask lines: `grid_X_Y.tiff <sha256>`)."""
    out = []
    for n, line in _lines(data, source, problems):
        parts = line.split()
        if len(parts) != 2 or not _HEX64.match(parts[1]):
            problems.append(Problem(source, "bad-registry", f"line {n}: expected '<path> <sha256>', got {line[:80]!r}"))
            continue
        rel, digest = parts
        key = archive.landmask_key(rel) if rel.endswith(".tiff") else archive.tile_key(rel)
        out.append(Expectation(key, source, sha256=digest.lower()))
    return out


def _sha256sum_lines(data: bytes, source: str, problems: list[Problem]) -> Iterator[tuple[str, str]]:
    for n, line in _lines(data, source, problems):
        m = re.match(r"^([0-9a-fA-F]{64}) [ *](.+)$", line)
        if not m:
            problems.append(Problem(source, "bad-registry", f"line {n}: not in sha256sum format: {line[:80]!r}"))
            continue
        yield m.group(2), m.group(1).lower()


def _dir_sums(archive: LegacyArchive, source: str, data: bytes, problems: list[Problem]) -> list[Expectation]:
    directory = source.rsplit("/", 1)[0]
    return [Expectation(join_key(directory, name), source, sha256=d) for name, d in _sha256sum_lines(data, source, problems)]


def _top_sums(archive: LegacyArchive, source: str, data: bytes, problems: list[Problem]) -> list[Expectation]:
    return [Expectation(archive.tile_key(rel), source, sha256=d) for rel, d in _sha256sum_lines(data, source, problems)]


def _parquet(data: bytes, source: str, needed: set[str], problems: list[Problem]) -> list[dict] | None:
    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(data))
    missing = needed - set(table.column_names)
    if missing:
        problems.append(Problem(source, "bad-registry", f"missing columns: {', '.join(sorted(missing))}"))
        return None
    return table.select(sorted(needed)).to_pylist()


def _tile_rel(year: int, lon: float, lat: float, suffix: str) -> str:
    name = f"grid_{lon:.2f}_{lat:.2f}"
    return f"{int(year)}/{name}/{name}{suffix}"


def _registry_parquet(archive: LegacyArchive, source: str, data: bytes, problems: list[Problem]) -> list[Expectation]:
    """registry.parquet: lat, lon, year, hash, scales_hash, file_size, scales_size (sizes and hashes)."""
    rows = _parquet(data, source, {"lat", "lon", "year", "hash", "scales_hash", "file_size", "scales_size"}, problems)
    out = []
    for r in rows or []:
        for suffix, h, size in ((".npy", r["hash"], r["file_size"]), ("_scales.npy", r["scales_hash"], r["scales_size"])):
            key = archive.tile_key(_tile_rel(r["year"], r["lon"], r["lat"], suffix))
            out.append(Expectation(key, source, sha256=(h or "").lower() or None, size=None if size is None else int(size)))
    return out


def _manifest_parquet(archive: LegacyArchive, source: str, data: bytes, problems: list[Problem]) -> list[Expectation]:
    """manifest.parquet: grid_path, scales_path, grid_size, scales_size (sizes only)."""
    rows = _parquet(data, source, {"grid_path", "scales_path", "grid_size", "scales_size"}, problems)
    out = []
    for r in rows or []:
        for path, size in ((r["grid_path"], r["grid_size"]), (r["scales_path"], r["scales_size"])):
            if path:
                out.append(Expectation(archive.tile_key(path), source, size=None if size is None else int(size)))
    return out


def _landmasks_parquet(archive: LegacyArchive, source: str, data: bytes, problems: list[Problem]) -> list[Expectation]:
    """landmasks.parquet: key, file_size."""
    rows = _parquet(data, source, {"key", "file_size"}, problems)
    return [Expectation(archive.landmask_key(r["key"]), source, size=int(r["file_size"])) for r in rows or [] if r["key"]]


_PARQUET_READERS = {
    "registry.parquet": _registry_parquet,
    "manifest.parquet": _manifest_parquet,
    "landmasks.parquet": _landmasks_parquet,
}
