"""The storage interface: objects addressed by relative keys under a root, listed in UTF-8 binary order."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from transcode.errors import ObjectNotFoundError
from transcode.storage.objectwriter import ObjectWriter

READ_BLOCK = 8 * 1024 * 1024
DEFAULT_PART_SIZE = 64 * 1024 * 1024
PARTIAL_SUFFIX = ".partial"


@dataclass(frozen=True)
class ObjectInfo:
    """One object (file) as a listing sees it; key is relative to the storage root, '/'-separated."""

    key: str
    size: int
    etag: str | None = None
    mtime: float | None = None


@dataclass(frozen=True)
class S3Options:
    """How to reach an S3-compatible endpoint; credentials come from the usual AWS sources."""

    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    anonymous: bool = False
    path_style: bool = False
    ca_bundle: str | None = None
    max_attempts: int | None = None  # botocore attempts per request, retries included (default 8)
    timeout: float | None = None  # connect and read timeout in seconds (default botocore's 60)
    max_connections: int | None = None  # HTTP connection pool size (default 32)
    acl: str | None = None  # canned ACL for objects written (e.g. bucket-owner-full-control)
    requester_pays: bool = False  # reads and listings of a requester-pays bucket (the caller pays)


class Storage(ABC):
    """A root (local directory or bucket prefix) holding objects addressed by relative keys."""

    url: str

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object under `prefix`, recursively, in UTF-8 binary key order (streamed)."""

    def list_after(self, start_after: str) -> Iterator[ObjectInfo]:
        """Every object whose key sorts after `start_after` (UTF-8 binary order), streamed: resumes a listing."""
        after = start_after.encode("utf-8", "surrogateescape")
        for obj in self.list():
            if obj.key.encode("utf-8", "surrogateescape") > after:
                yield obj

    def list_parallel(self, prefix: str = "", threads: int = 8) -> Iterator[ObjectInfo]:
        """`list(prefix)`, fetched by up to `threads` listers at once where the storage gains from it (S3),
        still streamed in key order with bounded memory."""
        return self.list(prefix)

    @abstractmethod
    def list_dirs(self, prefix: str = "") -> list[str]:
        """Names of the immediate sub-directories (common prefixes) under `prefix`, sorted."""

    @abstractmethod
    def stat(self, key: str) -> ObjectInfo:
        """Size (and ETag or mtime) of one object; ObjectNotFoundError if it does not exist."""

    @abstractmethod
    def read_range(self, key: str, start: int, length: int) -> bytes:
        """`length` bytes from offset `start` (fewer only if the object ends first), in one request."""

    @abstractmethod
    def open(self, key: str) -> BinaryIO:
        """A sequential binary stream of the whole object, for hashing and copying."""

    @abstractmethod
    def put(self, key: str, data: bytes) -> None:
        """Write a whole object atomically: readers see the old object or the new one, never a part."""

    @abstractmethod
    def open_writer(self, key: str, part_size: int = DEFAULT_PART_SIZE, in_flight: int | None = None) -> "ObjectWriter":
        """A streaming writer whose object appears only on `commit()` (temporary file + rename, or one
        PUT / a completed multipart upload of `part_size` parts on S3, `in_flight` of them uploading at once while
        the next is filled; None: the storage's default)."""

    def writer_memory(self, part_size: int = DEFAULT_PART_SIZE, in_flight: int | None = None) -> int:
        """The most bytes one writer of `open_writer` holds in memory at once (staging buffers, parts in flight):
        what a caller with a memory budget sets aside for it."""
        return part_size

    def delete(self, key: str) -> None:
        """Remove one object (used only on stores the toolkit writes, never on sources)."""
        raise NotImplementedError

    def discard_abandoned_writes(self) -> int:
        """Remove what killed writers left behind (temporary files, unfinished multipart uploads); their count."""
        return 0

    def read(self, key: str) -> bytes:
        """The whole object."""
        with self.open(key) as f:
            return f.read()

    def exists(self, key: str) -> bool:
        """True if the object exists, False if it does not; any other failure (denied, transient) is raised:
        it says nothing about whether the object is there."""
        try:
            self.stat(key)
        except ObjectNotFoundError:
            return False
        return True

    def local_path(self, key: str) -> Path | None:
        """The object's path on a local file system, or None when it is remote."""
        return None

    @property
    def remote(self) -> bool:
        """Whether objects are reached by requests (each a round trip), not on a local file system."""
        return self.local_path("") is None

    def child(self, prefix: str) -> "Storage":
        """The same storage rooted at `prefix` below this root."""
        raise NotImplementedError

    def describe(self, key: str = "") -> str:
        """A human-readable location for messages: the URL of a key."""
        return join_key(self.url.rstrip("/"), key) if key else self.url


def join_key(*parts: str) -> str:
    """Join key parts with single slashes, ignoring empty parts."""
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))
