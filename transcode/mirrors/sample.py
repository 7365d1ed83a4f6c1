"""The `--sample N` draw of the content level: the N keys of smallest seeded hash, kept while the listing streams
by (memory O(N)), deterministic so that a resumed run draws the same sample."""

from __future__ import annotations

import hashlib
import heapq

from transcode.format.manifest import ObjectRecord
from transcode.mirrors.evidence import KeyCase, Verdict
from transcode.storage import ObjectInfo


class Reservoir:
    """Candidates for hashing, each with the verdict its cheaper levels reached (emitted if it is pushed out)."""

    def __init__(self, size: int, seed: int, saved: dict | None = None) -> None:
        self.size = size
        self.seed = str(seed).encode()
        self.entries: dict[str, dict] = dict(saved or {})
        self._heap = [(-e["priority"], k) for k, e in self.entries.items()]
        heapq.heapify(self._heap)

    def priority(self, key: str) -> int:
        """A seeded 64-bit hash of the key: the sample is the `size` smallest."""
        h = hashlib.blake2b(key.encode("utf-8", "surrogateescape"), digest_size=8, key=self.seed)
        return int.from_bytes(h.digest(), "big")

    def offer(self, case: KeyCase, verdict: Verdict) -> dict | None:
        """Keep the key if it ranks among the `size` smallest; returns the entry pushed out (or this one)."""
        entry = {"priority": self.priority(case.key), "verdict": verdict.to_json(),
                 "copies": [[c.key, c.size, c.etag] if c is not None else None for c in case.copies],
                 "record": list(case.record.__dict__.values()) if case.record is not None else None}
        if self.size <= 0:
            return entry
        if len(self._heap) >= self.size and -self._heap[0][0] <= entry["priority"]:
            return entry
        self.entries[case.key] = entry
        heapq.heappush(self._heap, (-entry["priority"], case.key))
        if len(self._heap) > self.size:
            _, key = heapq.heappop(self._heap)
            return self.entries.pop(key)
        return None

    def take(self, key: str) -> None:
        """Forget a key once its verdict is out."""
        self.entries.pop(key, None)

    @staticmethod
    def case(key: str, entry: dict) -> KeyCase:
        """The key's case rebuilt from an entry (no proofs yet)."""
        copies = [ObjectInfo(c[0], c[1], c[2]) if c is not None else None for c in entry["copies"]]
        record = ObjectRecord(*entry["record"]) if entry["record"] is not None else None
        return KeyCase(key, copies, record)
