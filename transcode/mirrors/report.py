"""Tallies per mirror, the summary document, and printing: a readable report or JSON lines."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import TextIO

from transcode.mirrors.evidence import KINDS, Verdict

STATUSES = ("equal",) + KINDS


@dataclass
class MirrorTally:
    """What one mirror holds and how its objects fared."""

    objects: int = 0
    bytes: int = 0
    equal: int = 0
    missing: int = 0
    extra: int = 0
    size: int = 0
    content: int = 0
    unproven: int = 0
    bytes_read: int = 0
    requests: int = 0
    retries: int = 0
    transient: dict[str, int] = field(default_factory=dict)


@dataclass
class Tally:
    """Running totals of a verification (checkpointed)."""

    mirrors: list[MirrorTally]
    keys: int = 0
    sampled: int = 0
    escalated: int = 0

    @classmethod
    def new(cls, n: int) -> Tally:
        return cls([MirrorTally() for _ in range(n)])

    def count(self, v: Verdict, sizes: list[int | None]) -> None:
        """Add one key's verdict."""
        self.keys += 1
        for t, status, size in zip(self.mirrors, v.statuses, sizes):
            if size is not None:
                t.objects += 1
                t.bytes += size
            if status is not None:
                setattr(t, status, getattr(t, status) + 1)

    @property
    def differences(self) -> int:
        return sum(t.missing + t.extra + t.size + t.content + t.unproven for t in self.mirrors)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> Tally:
        """The tally a checkpoint saved; ValueError when a count is not a non-negative integer."""
        t = cls([MirrorTally(**m) for m in d["mirrors"]], d["keys"], d["sampled"], d["escalated"])
        counts = [t.keys, t.sampled, t.escalated]
        for m in t.mirrors:
            counts += [v for k, v in asdict(m).items() if k != "transient"] + list(m.transient.values())
            if not all(isinstance(k, str) for k in m.transient):
                raise ValueError("transient error counts must be keyed by cause")
        if not all(type(c) is int and c >= 0 for c in counts):
            raise ValueError("a count is not a non-negative integer")
        return t


def human_bytes(n: int) -> str:
    """1234567 -> '1.2 MB'."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{n} B"


def _shown(key: str) -> str:
    return json.dumps(key, ensure_ascii=False) if any(ch.isspace() for ch in key) or not key.isprintable() else key


class Reporter:
    """Writes differences as they are committed, then a summary (text, or one JSON object per line), to `out`."""

    def __init__(self, out: TextIO, json_lines: bool = False, quiet: bool = False) -> None:
        self.json = json_lines
        self.out = out
        self.quiet = quiet

    def record(self, doc: dict) -> None:
        """Any record of the stream, by its type: difference, summary, or an event (plan, repair)."""
        kind = doc.get("type")
        if kind == "difference":
            self.difference(doc)
        elif kind == "summary":
            self.summary(doc)
        else:
            self.event(doc)

    def _line(self, text: str) -> None:
        self.out.write(text + "\n")

    def difference(self, d: dict) -> None:
        """One difference (a Difference.to_json() record)."""
        if self.json:
            self._line(json.dumps(d, ensure_ascii=False))
        elif not self.quiet:
            self._line(f"{d['kind']:<9} {d['mirror']:<12} {_shown(d['key'])}  [{d['level']}] {d['detail']}")
        self.out.flush() if self.json else None

    def event(self, doc: dict) -> None:
        """A repair step or a notice."""
        if self.json:
            self._line(json.dumps(doc, ensure_ascii=False))
        elif doc.get("type") == "repair":
            tail = f"  ({doc['error']})" if doc.get("error") else ""
            self._line(f"repair    {doc['op']:<7} {doc.get('target', ''):<12} {_shown(doc['key'])}: {doc['status']}{tail}")
        else:
            self._line(f"note      {doc.get('message', '')}")

    def summary(self, doc: dict) -> None:
        """The summary document (schemas/mirror-summary.schema.json)."""
        if self.json:
            self._line(json.dumps(doc, ensure_ascii=False))
            self.out.flush()
            return
        cols = ("objects", "bytes", "equal", "missing", "extra", "size", "content", "unproven", "requests", "retries")
        rows = [["mirror", *cols]]
        for m in doc["mirrors"]:
            rows.append([m["name"]] + [human_bytes(m[c]) if c == "bytes" else str(m[c]) for c in cols])
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        if doc.get("phase") == "reverify":
            self._line("\nafter repair:")
        elif doc["differences"] and not self.quiet:
            self._line("")
        for r in rows:
            self._line("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
        for m in doc["mirrors"]:
            self._line(f"  {m['name']}: {m['url']}" + (f"  [{', '.join(m['warnings'])}]" if m["warnings"] else "")
                       + (f"  transient errors: {m['transient']}" if m["transient"] else ""))
        extra = []
        if doc["sampled"]:
            extra.append(f"{doc['sampled']} sampled")
        if doc["escalated"]:
            extra.append(f"{doc['escalated']} escalated to content")
        if doc["resumed_from"] is not None:
            extra.append(f"resumed after {_shown(doc['resumed_from'])}")
        verdict = "IN SYNC" if doc["in_sync"] else f"OUT OF SYNC ({doc['differences']} differences)"
        self._line(f"level {doc['level']}: {doc['keys']} keys on {len(doc['mirrors'])} mirrors in {doc['seconds']:.1f} s"
                   + (f" ({', '.join(extra)})" if extra else "") + f": {verdict}")
        for notice in doc["notices"]:
            self._line(f"note: {notice}")
        if doc["unproven_hint"]:
            self._line(f"hint: {doc['unproven_hint']}")
        self.out.flush()
