"""Storage: one small interface over local paths and s3:// URLs (sorted listing, stat, ranged and atomic I/O)."""

from __future__ import annotations

import os

from transcode.errors import AccessDeniedError, ObjectNotFoundError, StorageError, TransientStorageError
from transcode.storage.base import (
    DEFAULT_PART_SIZE,
    PARTIAL_SUFFIX,
    READ_BLOCK,
    ObjectInfo,
    S3Options,
    Storage,
    join_key,
)
from transcode.storage.local import LocalStorage
from transcode.storage.objectwriter import ObjectWriter
from transcode.storage.s3 import S3Storage

__all__ = ["DEFAULT_PART_SIZE", "PARTIAL_SUFFIX", "READ_BLOCK", "AccessDeniedError", "LocalStorage", "ObjectInfo",
           "ObjectNotFoundError", "ObjectWriter", "S3Options", "S3Storage", "Storage", "StorageError",
           "TransientStorageError", "join_key", "open_storage"]


def open_storage(url: str | os.PathLike[str], options: S3Options | None = None) -> Storage:
    """Open a local path or an `s3://bucket/prefix` URL as a Storage."""
    text = os.fspath(url)
    if text.startswith("s3://"):
        rest = text[5:]
        bucket, _, prefix = rest.partition("/")
        if not bucket:
            raise StorageError(text, "an S3 URL needs a bucket: s3://bucket/prefix")
        return S3Storage(bucket, prefix, options)
    if "://" in text:
        raise StorageError(text, "unsupported URL scheme (use a local path or s3://bucket/prefix)")
    return LocalStorage(text)
