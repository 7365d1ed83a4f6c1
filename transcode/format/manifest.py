"""The store manifest at `.tessera/manifest.parquet`: one row per Zarr object (key, size, MD5, CRC32C, ETag, part
size), sorted by key, so mirrors can be verified independently of each other. pyarrow is imported only when a
manifest is written or read, so importing this module stays cheap."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING

import crc32c

from transcode.errors import StoreError
from transcode.format.sidecar import MANIFEST_KEY
from transcode.storage import ObjectNotFoundError, Storage

if TYPE_CHECKING:
    from transcode.storage import ObjectWriter

MANIFEST_BATCH = 65536  # records taken into Arrow columns at once
# column name -> Arrow type name, in file order
COLUMNS = {"key": "string", "size": "int64", "md5": "string", "crc32c": "string", "etag": "string",
           "part_size": "int64"}

__all__ = ["COLUMNS", "MANIFEST_KEY", "ManifestReader", "ObjectRecord", "manifest_bytes", "read_manifest"]


@dataclass(frozen=True)
class ObjectRecord:
    """One object of the store, as the manifest records it."""

    key: str
    size: int
    md5: str  # hex
    crc32c: str  # 8 hex digits
    etag: str | None  # None for files: POSIX has no ETag
    part_size: int  # bytes per part of a multipart upload (what the ETag depends on)

    @classmethod
    def from_dict(cls, doc: object) -> ObjectRecord:
        """A record from its JSON form (a journal entry's object); ValueError naming the field when it is not one."""
        if not isinstance(doc, dict) or set(doc) != set(COLUMNS):
            raise ValueError(f"an object record needs exactly the fields {', '.join(COLUMNS)}")
        for name in ("size", "part_size"):
            if type(doc[name]) is not int or doc[name] < 0:
                raise ValueError(f"object record field {name!r} must be a non-negative integer, got {doc[name]!r}")
        for name in ("key", "md5", "crc32c", "etag"):
            if not isinstance(doc[name], str) and not (name == "etag" and doc[name] is None):
                raise ValueError(f"object record field {name!r} must be a string, got {doc[name]!r}")
        return cls(**doc)

    @classmethod
    def from_writer(cls, key: str, w: ObjectWriter, part_size: int) -> ObjectRecord:
        """The record of an object a streaming writer committed."""
        return cls(key, w.size, w.md5.hexdigest(), f"{w.crc:08x}", w.etag, part_size)

    @classmethod
    def from_bytes(cls, key: str, data: bytes, part_size: int, remote: bool) -> ObjectRecord:
        """The record of an object written with one PUT (metadata documents are small): ETag = MD5 on S3."""
        md5 = hashlib.md5(data).hexdigest()
        return cls(key, len(data), md5, f"{crc32c.crc32c(data):08x}", md5 if remote else None, part_size)


def manifest_bytes(records: Iterable[ObjectRecord]) -> bytes:
    """Parquet bytes of the manifest, rows sorted by key (UTF-8 binary order). The records are taken in batches
    into Arrow columns and sorted there, so a store of millions of objects never has a Python object per row
    (pass a generator)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    schema = pa.schema([(name, getattr(pa, kind)()) for name, kind in COLUMNS.items()])
    parts, it = [], iter(records)
    while batch := list(islice(it, MANIFEST_BATCH)):
        parts.append(pa.table({name: pa.array([getattr(r, name) for r in batch], schema.field(name).type)
                               for name in COLUMNS}, schema=schema))
    table = pa.concat_tables(parts) if parts else schema.empty_table()
    del parts
    table = table.take(pc.sort_indices(table, sort_keys=[("key", "ascending")])).combine_chunks()  # UTF-8 byte order
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def read_manifest(store: Storage) -> list[ObjectRecord]:
    """The manifest rows of a store, read whole; StoreError when it has none, the storage error when it cannot be
    read."""
    try:
        data = store.read(MANIFEST_KEY)
    except ObjectNotFoundError as e:
        raise StoreError(store.describe(MANIFEST_KEY), "no store manifest (was the conversion finished?)") from e
    return list(ManifestReader(io.BytesIO(data)).records())


class ManifestReader:
    """A manifest file (a path or a binary file object) read row group by row group: memory stays flat however
    many objects the store holds. ValueError when it is not a manifest."""

    def __init__(self, source) -> None:
        import pyarrow.parquet as pq

        try:
            self._pf = pq.ParquetFile(source)
        except Exception as e:  # pyarrow raises several types for a bad file
            raise ValueError(f"not a Parquet file: {e}") from e
        missing = [c for c in COLUMNS if c not in self._pf.schema_arrow.names]
        if missing:
            raise ValueError(f"lacks columns {missing}")
        self.rows = self._pf.metadata.num_rows

    def records(self, after: str | None = None) -> Iterator[ObjectRecord]:
        """Rows in file (key) order, starting after key `after`; ValueError at a row group or row that is not one
        (a file damaged past its footer, a missing key or size)."""
        batches = self._pf.iter_batches(batch_size=4096, columns=list(COLUMNS))
        while True:
            try:
                batch = next(batches, None)
                cols = None if batch is None else batch.to_pydict()
            except Exception as e:  # pyarrow raises several types for a damaged row group; strings not UTF-8
                raise ValueError(f"unreadable row group: {e}") from e
            if cols is None:
                return
            for i, key in enumerate(cols["key"]):
                if key is None or cols["size"][i] is None or cols["md5"][i] is None or cols["crc32c"][i] is None:
                    raise ValueError(f"row {key!r} lacks its key, size, md5 or crc32c")
                if after is not None and key <= after:
                    continue
                yield ObjectRecord(key, int(cols["size"][i]), cols["md5"][i], cols["crc32c"][i], cols["etag"][i],
                                   int(cols["part_size"][i] or 0))
