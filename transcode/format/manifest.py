"""The store manifest: one row per object (key, size, MD5, CRC32C, ETag, part size) as Parquet, at
`<store>/.tessera/manifest.parquet`, so mirrors can be verified independently of each other."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable

import crc32c

from transcode.engine.shardbuild import ObjectRecord
from transcode.errors import StoreError
from transcode.storage import ObjectNotFoundError, Storage

MANIFEST_KEY = ".tessera/manifest.parquet"


def record_for_bytes(key: str, data: bytes, part_size: int, remote: bool) -> ObjectRecord:
    """The manifest row of an object written with one PUT (metadata documents are small)."""
    md5 = hashlib.md5(data).hexdigest()
    return ObjectRecord(key, len(data), md5, f"{crc32c.crc32c(data):08x}", md5 if remote else None, part_size)


def manifest_bytes(records: Iterable[ObjectRecord]) -> bytes:
    """Parquet bytes of the manifest, rows sorted by key (UTF-8 binary order)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = sorted(records, key=lambda r: r.key.encode())
    table = pa.table({
        "key": pa.array([r.key for r in rows], pa.string()),
        "size": pa.array([r.size for r in rows], pa.int64()),
        "md5": pa.array([r.md5 for r in rows], pa.string()),
        "crc32c": pa.array([r.crc32c for r in rows], pa.string()),
        "etag": pa.array([r.etag for r in rows], pa.string()),
        "part_size": pa.array([r.part_size for r in rows], pa.int64()),
    })
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def read_manifest(store: Storage) -> list[ObjectRecord]:
    """The manifest rows of a store; StoreError when it has none, the storage error when it cannot be read."""
    import pyarrow.parquet as pq

    try:
        data = store.read(MANIFEST_KEY)
    except ObjectNotFoundError as e:
        raise StoreError(store.describe(MANIFEST_KEY), "no store manifest (was the conversion finished?)") from e
    table = pq.read_table(io.BytesIO(data))
    return [ObjectRecord(**row) for row in table.to_pylist()]
