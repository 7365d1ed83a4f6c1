"""The store's metadata objects compared with the store and put where they differ, zone by zone as the conversion
reaches each zone: the first shard starts after its own zone's metadata, not after every zone's, and the root
zarr.json (which consolidates every zone's) comes last."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

from transcode.format.manifest import ObjectRecord
from transcode.storage import ObjectNotFoundError, Storage


REQUESTS = 8  # a zone's objects compared, then put, this many at a time (on S3 each is a request's round trip)


class MetadataSync:
    """Puts each metadata object that differs from (or is missing in) the store, REQUESTS at a time, calling
    `before_change` before the first put; a failure other than absence is raised. `zones` is
    `format.metadata.iter_zone_metadata`'s stream: (zone, objects) for each zone of `zone_order` (ascending), then
    (None, [root]); a zone is built only when it is synced."""

    def __init__(self, store: Storage, zones: Iterator[tuple[int | None, list[tuple[str, bytes]]]],
                 zone_order: list[int], before_change: Callable[[], None], part_size: int) -> None:
        self.store, self.before_change, self.part_size = store, before_change, part_size
        self.remote = store.remote
        self.written = 0
        self.records: list[ObjectRecord] = []  # the manifest record of every object synced so far
        self._zones = zones
        self._left = list(zone_order)  # the zones not synced yet, ascending

    def through(self, zone: int) -> None:
        """Sync every zone up to and including `zone` (not the root)."""
        while self._left and self._left[0] <= zone:
            expected = self._left.pop(0)
            got, objects = next(self._zones)
            assert got == expected, (got, expected)
            self._sync(objects)

    def finish(self) -> None:
        """Sync the zones left and then the root zarr.json."""
        self._left = []
        for _, objects in self._zones:
            self._sync(objects)

    def _sync(self, objects: list[tuple[str, bytes]]) -> None:
        self.records.extend(ObjectRecord.from_bytes(key, data, self.part_size, self.remote) for key, data in objects)
        with ThreadPoolExecutor(REQUESTS, thread_name_prefix="metadata") as pool:
            held = list(pool.map(lambda kd: _holds(self.store, *kd), objects))
            changed = [kd for kd, same in zip(objects, held) if not same]
            if changed:
                self.before_change()
                list(pool.map(lambda kd: self.store.put(*kd), changed))
        self.written += len(changed)


def _holds(store: Storage, key: str, data: bytes) -> bool:
    """Whether the store holds exactly these bytes at `key` (absence: no; any other failure is raised)."""
    try:
        return store.read(key) == data
    except ObjectNotFoundError:
        return False
