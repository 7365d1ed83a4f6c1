"""Local storage: a directory tree on a POSIX file system, written through temporary files and renames."""

from __future__ import annotations

import contextlib
import errno
import io
import os
import stat as stat_mod
import uuid
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

from transcode.errors import StorageError
from transcode.storage.base import DEFAULT_PART_SIZE, PARTIAL_SUFFIX, ObjectInfo, Storage
from transcode.storage.causes import OS_NOT_FOUND, os_error
from transcode.storage.filewriter import STAGE_BYTES, FileWriter
from transcode.storage.objectwriter import ObjectWriter
from transcode.storage.sortednames import sorted_names


def _partial_path(path: Path) -> Path:
    """A unique temporary name beside `path` (`.<name>.<random>.partial`), discarded by the next run if left."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}{PARTIAL_SUFFIX}")


class _LocalFile(io.FileIO):
    """A file opened for reading whose read errors are the typed storage errors."""

    def read(self, size: int = -1) -> bytes:
        try:
            return super().read(size)
        except OSError as e:
            raise os_error(str(self.name), e, "read") from e

    def readall(self) -> bytes:
        try:
            return super().readall()
        except OSError as e:
            raise os_error(str(self.name), e, "read") from e

    def readinto(self, b) -> int:
        try:
            return super().readinto(b)
        except OSError as e:
            raise os_error(str(self.name), e, "read") from e


BATCH = 64  # entries a listing thread takes at once


def _file_info(path: str, key: str) -> ObjectInfo | None:
    try:
        st = os.stat(path)
    except OSError:
        return None  # vanished or dangling link
    return ObjectInfo(key, st.st_size, None, st.st_mtime) if stat_mod.S_ISREG(st.st_mode) else None


def _batches(directory: Path, rel: str, depth: int) -> Iterator[list[tuple[str, str, bool]]]:
    """(path, key, is_dir) of the entries below `directory` in key order, in batches: sub-directories `depth`
    levels down are expanded, deeper ones are batch entries (listed whole by whoever takes the batch)."""
    batch: list[tuple[str, str, bool]] = []
    for name, is_dir in sorted_names(directory):
        key = f"{rel}/{name}" if rel else name
        path = os.path.join(directory, name)
        if is_dir and depth > 0:
            if batch:
                yield batch
                batch = []
            yield from _batches(Path(path), key, depth - 1)
            continue
        batch.append((path, key, is_dir))
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


class LocalStorage(Storage):
    """A directory tree on a POSIX file system; OS errors become the typed storage errors (see `causes.os_error`:
    ENOENT/ENOTDIR not found, EACCES/EPERM/EROFS access denied, EIO/ESTALE/EAGAIN/timeouts transient)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.url = str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / key if key else self.root

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        base = self._path(prefix.rstrip("/")) if prefix else self.root
        if not base.exists():
            return
        if not base.is_dir():
            raise StorageError(str(base), "is not a directory")
        start = prefix.strip("/")
        yield from self._walk(base, start)

    def list_after(self, start_after: str) -> Iterator[ObjectInfo]:
        if not self.root.exists():
            return
        yield from self._walk(self.root, "", start_after.encode("utf-8", "surrogateescape"))

    def _walk(self, directory: Path, rel: str, after: bytes | None = None) -> Iterator[ObjectInfo]:
        for name, is_dir in sorted_names(directory):
            key = f"{rel}/{name}" if rel else name
            path = os.path.join(directory, name)
            if after is not None:
                bkey = key.encode("utf-8", "surrogateescape")
                if is_dir and not after.startswith(bkey + b"/"):
                    if bkey + b"/" < after:
                        continue  # every key below sorts before `after`
                    yield from self._walk(Path(path), key)  # every key below sorts after it
                    continue
                if not is_dir and bkey <= after:
                    continue
            if is_dir:
                yield from self._walk(Path(path), key, after)
                continue
            obj = _file_info(path, key)
            if obj is not None:
                yield obj

    def list_parallel(self, prefix: str = "", threads: int = 8) -> Iterator[ObjectInfo]:
        """`list(prefix)` with the directories (and files) below each sub-directory of `prefix` listed and
        stat'ed by `threads` threads in batches, handed over in key order (a window of batches in flight)."""
        base = self._path(prefix.strip("/")) if prefix.strip("/") else self.root
        if threads <= 1 or not base.is_dir():
            yield from self.list(prefix)
            return
        with ThreadPoolExecutor(max_workers=threads) as pool:
            window: deque = deque()
            for batch in _batches(base, prefix.strip("/"), depth=1):
                window.append(pool.submit(self._list_batch, batch))
                if len(window) > 4 * threads:
                    yield from window.popleft().result()
            while window:
                yield from window.popleft().result()

    def _list_batch(self, batch: list[tuple[str, str, bool]]) -> list[ObjectInfo]:
        out: list[ObjectInfo] = []
        for path, key, is_dir in batch:
            if is_dir:
                out += self._walk(Path(path), key)
            elif (obj := _file_info(path, key)) is not None:
                out.append(obj)
        return out

    def list_dirs(self, prefix: str = "") -> list[str]:
        base = self._path(prefix.strip("/"))
        try:
            return sorted((e.name for e in os.scandir(base) if e.is_dir()), key=lambda n: n.encode())
        except OSError as e:
            if e.errno in OS_NOT_FOUND:
                return []  # as on S3: a prefix with nothing below it has no sub-directories
            raise os_error(str(base), e, "list") from e

    def stat(self, key: str) -> ObjectInfo:
        path = self._path(key)
        try:
            st = path.stat()
        except OSError as e:
            raise os_error(str(path), e, "stat") from e
        if stat_mod.S_ISDIR(st.st_mode):
            raise StorageError(str(path), "is a directory where an object was expected", errno.errorcode[errno.EISDIR])
        if not stat_mod.S_ISREG(st.st_mode):
            raise StorageError(str(path), "is not a regular file")
        return ObjectInfo(key, st.st_size, None, st.st_mtime)

    def read_range(self, key: str, start: int, length: int) -> bytes:
        path = os.path.join(self.url, key) if key else self.url  # no pathlib: this runs once per tile header
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as e:
            raise os_error(path, e, "read") from e
        try:
            parts = []
            while length > 0:  # pread returns less only at the end of the file (or on a signal)
                data = os.pread(fd, length, start)
                if not data:
                    break
                parts.append(data)
                start, length = start + len(data), length - len(data)
            return b"".join(parts)
        except OSError as e:
            raise os_error(path, e, "read") from e
        finally:
            os.close(fd)

    def open(self, key: str) -> BinaryIO:
        path = self._path(key)
        try:
            return _LocalFile(path, "rb")
        except OSError as e:
            raise os_error(str(path), e, "open") from e

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        tmp = _partial_path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as e:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise os_error(str(path), e, "write") from e

    def writer_memory(self, part_size: int = DEFAULT_PART_SIZE, in_flight: int | None = None) -> int:
        return 2 * STAGE_BYTES  # the buffer being filled and the one being written

    def open_writer(self, key: str, part_size: int = DEFAULT_PART_SIZE, in_flight: int | None = None) -> ObjectWriter:
        path = self._path(key)
        return FileWriter(path, _partial_path(path))

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            pass
        except OSError as e:
            raise os_error(str(self._path(key)), e, "delete") from e

    def discard_abandoned_writes(self) -> int:
        n = 0
        for obj in self.list():
            name = obj.key.rsplit("/", 1)[-1]
            if name.startswith(".") and name.endswith(PARTIAL_SUFFIX):
                self.delete(obj.key)
                n += 1
        return n

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    def child(self, prefix: str) -> "LocalStorage":
        return LocalStorage(self._path(prefix.strip("/")))

    def describe(self, key: str = "") -> str:
        return str(self._path(key))
