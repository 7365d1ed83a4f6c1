"""The store manifest as one more sorted stream for the merge: fetched to a local temporary file, then read
row group by row group, so memory stays flat however many objects the store holds."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

from transcode.errors import StoreError
from transcode.storage import Storage, StorageError

# transcode.format.manifest.MANIFEST_KEY, not imported from there: that module pulls in the whole encoder (numpy, pyproj)
MANIFEST_KEY = ".tessera/manifest.parquet"
COLUMNS = ["key", "size", "md5", "crc32c", "etag", "part_size"]


@dataclass(frozen=True)
class ManifestRow:
    """What `convert` recorded for one object."""

    key: str
    size: int
    md5: str
    crc32c: str
    etag: str | None
    part_size: int


class ManifestFile:
    """A manifest copied to a local temporary file (or read in place when already local)."""

    def __init__(self, storage: Storage | None, where: str, local: str | None = None) -> None:
        self.where = where
        self._tmp: str | None = None
        if local is None:
            assert storage is not None
            path = storage.local_path(MANIFEST_KEY)
            if path is not None:
                local = str(path)
            else:
                fd, self._tmp = tempfile.mkstemp(prefix="tessera-manifest-", suffix=".parquet")
                try:
                    with os.fdopen(fd, "wb") as out, storage.open(MANIFEST_KEY) as src:
                        shutil.copyfileobj(src, out, 8 * 1024 * 1024)
                except StorageError as e:
                    self.close()
                    raise e.within(where) from e
                except OSError as e:  # the local temporary copy
                    self.close()
                    raise StoreError(where, f"cannot fetch the store manifest: {e}") from e
                local = self._tmp
        self.path = local
        try:
            import pyarrow.parquet as pq

            self._pf = pq.ParquetFile(self.path)
            missing = [c for c in COLUMNS if c not in self._pf.schema_arrow.names]
        except Exception as e:  # pyarrow raises several types for a bad file
            self.close()
            raise StoreError(where, f"not a readable store manifest: {e}") from e
        if missing:
            self.close()
            raise StoreError(where, f"store manifest lacks columns {missing}")
        self.rows = self._pf.metadata.num_rows

    def first_part_size(self) -> int | None:
        """The part size recorded in the first row (convert uses one part size per store)."""
        for row in self.iter_rows():
            return row.part_size
        return None

    def iter_rows(self, after: str | None = None) -> Iterator[ManifestRow]:
        """Rows in key order (as written), starting after `after`."""
        for batch in self._pf.iter_batches(batch_size=4096, columns=COLUMNS):
            cols = batch.to_pydict()
            for i, key in enumerate(cols["key"]):
                if after is not None and key <= after:
                    continue
                yield ManifestRow(key, int(cols["size"][i]), cols["md5"][i], cols["crc32c"][i], cols["etag"][i],
                                  int(cols["part_size"][i] or 0))

    def close(self) -> None:
        """Remove the temporary copy."""
        if self._tmp:
            try:
                os.unlink(self._tmp)
            except OSError:
                pass
            self._tmp = None
