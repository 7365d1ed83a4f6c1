"""The inventory's pass over the files: the listing is streamed in batches to a thread pool that reads each
`.npy` header (one ranged read), checks sizes and shapes, reads each landmask's magic bytes, and hashes with
--verify-hashes; results come back as table rows. Memory: the rows, and a few batches in flight."""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from typing import TypeVar

import numpy as np
from tqdm import tqdm

from transcode.errors import ArchiveError, StorageError, TransientStorageError
from transcode.format.grid import TileId
from transcode.legacy.archive import LegacyArchive, TileFiles
from transcode.legacy.npyheader import NpyHeader, check_embeddings_header, check_scales_header
from transcode.legacy.problems import ERROR, Problem
from transcode.legacy.registries import hash_message, parse_sha256sum_line
from transcode.legacy.tiles import read_npy_header
from transcode.legacy.tiletable import MAX_SIDE, TILE_DTYPE, RowBuffer, landmask_dtype, tile_dtype
from transcode.storage import ObjectInfo, Storage

TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
HASH_BLOCK = 8 * 1024 * 1024
LOCAL_CONCURRENCY = 8  # reads (and hashes) in flight by default on a local archive, and with hashes on any
REMOTE_CONCURRENCY = 32  # header reads in flight by default on a remote (S3) archive: each waits a round trip
T = TypeVar("T")
R = TypeVar("R")


def sha256_of(storage: Storage, key: str) -> bytes:
    """SHA-256 digest of one object, streamed in blocks."""
    h = hashlib.sha256()
    with storage.open(key) as f:
        while block := f.read(HASH_BLOCK):
            h.update(block)
    return h.digest()


def read_plan(storage: Storage, workers: int | None, verify: bool, local_batch: int) -> tuple[int, int]:
    """(threads, items per batch) of an inventory pass: `workers` threads (by default LOCAL_CONCURRENCY, or on a
    remote archive without hashing REMOTE_CONCURRENCY); a local archive's files in batches of `local_batch`
    (its reads take microseconds), a remote one's one by one, so that every thread has a request in flight
    also when the archive has few tiles."""
    if workers is None:
        workers = REMOTE_CONCURRENCY if storage.remote and not verify else LOCAL_CONCURRENCY
    return workers, 1 if storage.remote else local_batch


def pipeline(items: Iterable[T], fn: Callable[[list[T]], R], *, workers: int, batch: int) -> Iterator[tuple[int, R]]:
    """(batch length, fn(batch)) for batches of `items` run on a thread pool, at most two batches per worker in
    flight, in the order of the items."""
    it = iter(items)
    window: deque = deque()
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        while True:
            while len(window) < 2 * max(1, workers):
                chunk = list(islice(it, batch))
                if not chunk:
                    break
                window.append((len(chunk), pool.submit(fn, chunk)))
            if not window:
                return
            n, fut = window.popleft()
            yield n, fut.result()


def scan_tiles(archive: LegacyArchive, problems: list[Problem], *, verify: bool, workers: int | None,
               progress: bool) -> np.ndarray:
    """Every tile-year of the archive as a table row (zone, footprint and landmask columns not yet filled)."""
    dtype = tile_dtype(verify)
    table = RowBuffer(dtype)
    workers, batch = read_plan(archive.storage, workers, verify, 1 if verify else 64)
    with tqdm(desc="tiles", unit="tile", disable=not progress) as bar:
        for n, (rows, digests, probs) in pipeline(archive.iter_tiles(problems),
                                                  lambda b: _inspect_tiles(archive, b, verify),
                                                  workers=workers, batch=batch):
            base = np.array(rows, dtype=TILE_DTYPE)
            if verify:
                part = np.zeros(len(base), dtype)
                for f in TILE_DTYPE.names:
                    part[f] = base[f]
                part["embeddings_sha256"] = np.frombuffer(b"".join(d[0] for d in digests), np.uint8).reshape(-1, 32)
                part["scales_sha256"] = np.frombuffer(b"".join(d[1] for d in digests), np.uint8).reshape(-1, 32)
                base = part
            table.extend(base)
            problems += probs
            bar.update(n)
    return table.finish()


def scan_landmasks(archive: LegacyArchive, problems: list[Problem], *, verify: bool, workers: int | None,
                   progress: bool) -> np.ndarray:
    """Every landmask as a table row (cell, size[, digest]); its first bytes must be a TIFF's."""
    dtype = landmask_dtype(verify)
    table = RowBuffer(dtype)
    workers, batch = read_plan(archive.storage, workers, verify, 8 if verify else 256)
    with tqdm(desc="landmasks", unit="file", disable=not progress) as bar:
        for n, (rows, probs) in pipeline(archive.iter_landmasks(problems),
                                         lambda b: _inspect_landmasks(archive.storage, b, verify),
                                         workers=workers, batch=batch):
            table.extend(np.array(rows, dtype=dtype))
            problems += probs
            bar.update(n)
    return table.finish()


def _inspect_landmasks(storage: Storage, batch: list[tuple[TileId, ObjectInfo]], verify: bool) -> tuple[list, list]:
    rows, problems = [], []
    for tile, obj in batch:
        row: tuple = (tile.lon_i, tile.lat_i, obj.size)
        try:
            head = storage.read_range(obj.key, 0, 4)
            if head not in TIFF_MAGICS:
                problems.append(Problem(obj.key, "bad-landmask", f"not a TIFF file (starts with {head!r})",
                                        tile=tile.name))
            if verify:
                row += (np.frombuffer(sha256_of(storage, obj.key), np.uint8),)
        except TransientStorageError:
            raise  # says nothing about the file: never recorded as a problem of the archive
        except StorageError as e:
            problems.append(Problem(obj.key, "unreadable", e.reason, tile=tile.name))
            if verify:
                row += (np.zeros(32, np.uint8),)
        rows.append(row)
    return rows, problems


def _inspect_tiles(archive: LegacyArchive, batch: list[TileFiles], verify: bool) -> tuple[list, list, list]:
    rows, digests, problems = [], [], []
    for t in batch:
        row, digest, probs = _inspect_tile(archive.storage, t, verify)
        rows.append(row)
        digests.append(digest)
        problems += probs
    return rows, digests, problems


def _inspect_tile(storage: Storage, t: TileFiles, verify: bool) -> tuple[tuple, tuple[bytes, bytes], list[Problem]]:
    problems: list[Problem] = []

    def problem(key: str, kind: str, msg: str) -> None:
        problems.append(Problem(key, kind, msg, ERROR, t.year, t.name))

    headers: dict[str, NpyHeader | None] = {"embeddings": None, "scales": None}
    for role, obj, key, check in (("embeddings", t.embeddings, t.embeddings_key, check_embeddings_header),
                                  ("scales", t.scales, t.scales_key, check_scales_header)):
        if obj is None:
            problem(key, f"missing-{role}", f"the {role} file of this tile is missing")
            continue
        try:
            h = read_npy_header(storage, key)
        except ArchiveError as e:
            problem(key, "bad-header", e.reason)
            continue
        except TransientStorageError:
            raise
        except StorageError as e:
            problem(key, "unreadable", e.reason)
            continue
        for kind, msg in check(h):
            problem(key, kind, msg)
        if obj.size < h.expected_size:
            problem(key, "truncated", f"{obj.size} bytes, header and shape {h.shape} need {h.expected_size}")
        elif obj.size > h.expected_size:
            problem(key, "oversized", f"{obj.size} bytes, {obj.size - h.expected_size} more than header and shape need")
        headers[role] = h
    emb, sc = headers["embeddings"], headers["scales"]
    if emb is not None and sc is not None and emb.shape[:2] != sc.shape[:2]:
        problem(t.scales_key, "shape-mismatch", f"scales {sc.shape[:2]} but embeddings {emb.shape[:2]}")
    hw = (emb or sc).shape[:2] if (emb or sc) is not None else ()
    digest = (bytes(32), bytes(32))
    if verify:
        digest = (_digest(storage, t.embeddings, problem), _digest(storage, t.scales, problem))
        if t.sums is not None:
            _check_dir_sums(storage, t, digest, problems)
    row = (t.year, t.tile.lon_i, t.tile.lat_i, 0,
           min(hw[0], MAX_SIDE) if len(hw) == 2 else -1, min(hw[1], MAX_SIDE) if len(hw) == 2 else -1,
           t.embeddings.size if t.embeddings else -1, t.scales.size if t.scales else -1,
           emb.data_offset if emb else -1, sc.data_offset if sc else -1,
           not any(p.severity == ERROR and p.path in (t.embeddings_key, t.scales_key) for p in problems), False)
    return row, digest, problems


def _digest(storage: Storage, obj: ObjectInfo | None, problem: Callable[[str, str, str], None]) -> bytes:
    if obj is None:
        return bytes(32)
    try:
        return sha256_of(storage, obj.key)
    except TransientStorageError:
        raise
    except StorageError as e:
        problem(obj.key, "unreadable", e.reason)
        return bytes(32)


def _check_dir_sums(storage: Storage, t: TileFiles, digest: tuple[bytes, bytes], problems: list[Problem]) -> None:
    """The tile directory's own SHA256 file (sha256sum format) against the digests just computed."""
    assert t.sums is not None
    source = t.sums.key
    files = {f"{t.name}.npy": (t.embeddings, digest[0]), f"{t.name}_scales.npy": (t.scales, digest[1])}
    try:
        text = storage.read(source).decode("utf-8")
    except TransientStorageError:
        raise
    except StorageError as e:
        problems.append(Problem(source, "registry-unreadable", e.reason, year=t.year, tile=t.name))
        return
    except UnicodeDecodeError:
        problems.append(Problem(source, "bad-registry", "not UTF-8 text", year=t.year, tile=t.name))
        return
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        entry = parse_sha256sum_line(line.strip())
        if entry is None:
            problems.append(Problem(source, "bad-registry", f"line {n}: not in sha256sum format: {line[:80]!r}",
                                    year=t.year, tile=t.name))
            continue
        name, want = entry
        key = f"{t.directory}/{name}"
        obj, got = files.get(name, (None, bytes(32)))
        if obj is None:
            problems.append(Problem(key, "listed-but-missing", f"listed in {source} but not present", year=t.year,
                                    tile=t.name))
        elif any(got) and got != bytes.fromhex(want):
            problems.append(Problem(key, "hash-mismatch", hash_message(got, bytes.fromhex(want), source),
                                    year=t.year, tile=t.name))
