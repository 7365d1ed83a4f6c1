"""The store manifest as one more sorted stream for the merge: fetched to a local temporary file, then read
row group by row group (transcode.format.manifest), so memory stays flat however many objects the store holds."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

from transcode.errors import StoreError
from transcode.format.manifest import ManifestReader, ObjectRecord
from transcode.format.sidecar import MANIFEST_KEY
from transcode.storage import Storage, StorageError

__all__ = ["MANIFEST_KEY", "ManifestFile"]


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
            self._reader = ManifestReader(self.path)
        except (ValueError, OSError) as e:
            self.close()
            raise StoreError(where, f"not a readable store manifest: {e}") from e
        self.rows = self._reader.rows

    def first_part_size(self) -> int | None:
        """The part size recorded in the first row (convert uses one part size per store)."""
        for row in self.iter_rows():
            return row.part_size
        return None

    def iter_rows(self, after: str | None = None) -> Iterator[ObjectRecord]:
        """Rows in key order (as written), starting after `after`; StoreError where the file is damaged."""
        try:
            yield from self._reader.records(after)
        except (ValueError, OSError) as e:
            raise StoreError(self.where, f"not a readable store manifest: {e}") from e

    def close(self) -> None:
        """Remove the temporary copy."""
        if self._tmp:
            try:
                os.unlink(self._tmp)
            except OSError:
                pass
            self._tmp = None
