"""The streaming writer every storage backend hands out: bytes in, one whole object out on `commit()`."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod

import crc32c


class ObjectWriter(ABC):
    """Streams one object; nothing is visible under its key until `commit()` returns. `size`, `md5`, `crc`
    (CRC32C) and `etag` describe the object once committed."""

    def __init__(self) -> None:
        self.size = 0
        self.md5 = hashlib.md5()
        self.crc = 0
        self.parts: list[bytes] = []  # binary MD5 of each uploaded part (multipart ETag)

    def write(self, data: bytes | memoryview) -> None:
        """Append bytes."""
        self.size += len(data)
        self._write(data)

    def _digest(self, data: bytes | memoryview) -> None:
        """Add bytes to the object's MD5 and CRC32C; backends call it on every byte, in order."""
        self.md5.update(data)
        self.crc = crc32c.crc32c(data, self.crc)

    @abstractmethod
    def _write(self, data: bytes | memoryview) -> None: ...

    @abstractmethod
    def commit(self) -> None:
        """Make the object visible, whole."""

    @abstractmethod
    def abort(self) -> None:
        """Discard everything written; the key is left as it was."""

    @property
    def etag(self) -> str | None:
        """The object's ETag as written: S3 single PUT = MD5, multipart = MD5 of part MD5s + '-N'."""
        if self.parts:  # a multipart upload, even of one part
            return hashlib.md5(b"".join(self.parts)).hexdigest() + f"-{len(self.parts)}"
        return self.md5.hexdigest()

    def __enter__(self) -> "ObjectWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()
