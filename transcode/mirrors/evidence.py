"""What is known about one key across mirrors: equal/different proofs between copies (and the manifest row),
and the verdict for each mirror: equal, missing, extra, size, content or unproven."""

from __future__ import annotations

from dataclasses import dataclass, field

from transcode.format.sidecar import in_sidecar
from transcode.storage import ObjectInfo

LEVELS = ("list", "etag", "manifest", "zarr", "content")
KINDS = ("missing", "extra", "size", "content", "unproven")


@dataclass(frozen=True)
class Policy:
    """How verdicts are reached: mirror names, chosen level, source of truth, whether the manifest is used."""

    names: tuple[str, ...]
    level: int
    source: int | None = None
    manifest: bool = False

    def uses_manifest(self, key: str) -> bool:
        """The manifest covers every Zarr object; the sidecar (journal, manifest, settings) is not in it."""
        return self.manifest and not in_sidecar(key)


@dataclass
class Difference:
    """One finding: what is wrong with `key` on `mirror`."""

    key: str
    mirror: str
    kind: str
    level: str
    detail: str
    size: int | None = None
    expected_size: int | None = None

    def to_json(self) -> dict:
        """The JSON-lines record (schemas/mirror-difference.schema.json)."""
        return {"type": "difference", "key": self.key, "mirror": self.mirror, "kind": self.kind, "level": self.level,
                "detail": self.detail, "size": self.size, "expected_size": self.expected_size}


@dataclass
class Verdict:
    """Per mirror status (None: absent and rightly so) and the differences of one key."""

    key: str
    statuses: list[str | None]
    differences: list[Difference]
    expected_size: int | None

    def to_json(self) -> dict:
        """Serialisable form (checkpointed sample candidates)."""
        return {"key": self.key, "statuses": self.statuses, "expected_size": self.expected_size,
                "differences": [d.__dict__ for d in self.differences]}

    @classmethod
    def from_json(cls, d: dict) -> Verdict:
        return cls(d["key"], d["statuses"], [Difference(**x) for x in d["differences"]], d["expected_size"])


@dataclass
class KeyCase:
    """One key: its copies (one slot per mirror), its manifest row, and the proofs gathered so far.

    Nodes 0..n-1 are the mirrors' copies, node n is the manifest row."""

    key: str
    copies: list[ObjectInfo | None]
    record: object | None = None  # an ObjectRecord when the manifest is used for this key
    parent: list[int] = field(default_factory=list)
    diffs: list[tuple[int, int, str, str]] = field(default_factory=list)
    notes: dict[int, list[str]] = field(default_factory=dict)
    probed: dict[int, int | None] = field(default_factory=dict)  # mirror -> probed part size
    hashed: bool = False  # every copy was streamed and hashed
    escalated: bool = False  # hashed because cheaper levels could not prove it

    def __post_init__(self) -> None:
        if not self.parent:
            self.parent = list(range(len(self.copies) + 1))

    @property
    def n(self) -> int:
        return len(self.copies)

    @property
    def present(self) -> list[int]:
        """Mirrors holding the key."""
        return [i for i, c in enumerate(self.copies) if c is not None]

    def reset(self) -> None:
        """Forget every proof (content hashing replaces cheaper evidence)."""
        self.parent = list(range(self.n + 1))
        self.diffs.clear()
        self.notes.clear()

    def find(self, a: int) -> int:
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def equal(self, a: int, b: int) -> None:
        """Record a proof that nodes a and b hold the same bytes."""
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def differ(self, a: int, b: int, level: str, detail: str) -> None:
        """Record a proof that nodes a and b hold different bytes."""
        self.diffs.append((a, b, level, detail))

    def note(self, node: int, text: str) -> None:
        """Why a comparison involving `node` proved nothing."""
        lst = self.notes.setdefault(node, [])
        if text not in lst:
            lst.append(text)

    def proven_different(self, a: int, b: int, prefer: int | None = None) -> tuple[str, str] | None:
        """(level, detail) of a proof that the classes of a and b differ (one involving node `prefer` if any)."""
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return None
        found = None
        for x, y, level, detail in self.diffs:
            if {self.find(x), self.find(y)} == {ra, rb}:
                if prefer is None or prefer in (x, y):
                    return level, detail
                found = found or (level, detail)
        return found


def _majority_presence(case: KeyCase) -> bool:
    p = len(case.present)
    return p * 2 > case.n or (p * 2 == case.n and case.copies[0] is not None)


def _majority_size(case: KeyCase) -> int | None:
    counts: dict[int, int] = {}
    for i in case.present:
        counts[case.copies[i].size] = counts.get(case.copies[i].size, 0) + 1
    if not counts:
        return None
    best = max(counts.values())
    return next(case.copies[i].size for i in case.present if counts[case.copies[i].size] == best)


def reference(case: KeyCase, pol: Policy) -> tuple[bool, int | None, int | None, str]:
    """(expected present, expected size, reference node or None, what decided) for a key."""
    if pol.uses_manifest(case.key):
        r = case.record
        return r is not None, (r.size if r is not None else None), (case.n if r is not None else None), "manifest"
    if pol.source is not None:
        c = case.copies[pol.source]
        return c is not None, (c.size if c is not None else None), (pol.source if c is not None else None), "source"
    return _majority_presence(case), _majority_size(case), None, "majority"


def reference_root(case: KeyCase, pol: Policy, ref_node: int | None, ref_size: int | None) -> int | None:
    """The class every copy must belong to: the reference node's, else the biggest class of right-sized copies."""
    if ref_node is not None:
        return case.find(ref_node)
    groups: dict[int, list[int]] = {}
    for i in case.present:
        if case.copies[i].size == ref_size:
            groups.setdefault(case.find(i), []).append(i)
    if not groups:
        return None
    return max(groups.items(), key=lambda kv: (len(kv[1]), -min(kv[1])))[0]


def unresolved(case: KeyCase, pol: Policy) -> list[int]:
    """Mirrors whose copy has the right size but is neither proven equal nor proven different."""
    expected, size, node, _ = reference(case, pol)
    if not expected or pol.level == 0:
        return []
    root = reference_root(case, pol, node, size)
    return [i for i in case.present if case.copies[i].size == size and case.find(i) != root
            and case.proven_different(i, root) is None]


def decide(case: KeyCase, pol: Policy) -> Verdict:
    """Every mirror's status for this key, with a Difference for each one that is not equal."""
    expected, size, node, by = reference(case, pol)
    names, level_name = pol.names, LEVELS[pol.level]
    maj_expected, maj_size = _majority_presence(case), _majority_size(case)
    where_level = "list" if by != "manifest" or (maj_expected == expected and maj_size == size) else "manifest"
    holders = [names[i] for i in case.present]
    statuses: list[str | None] = [None] * case.n
    out: list[Difference] = []
    root = reference_root(case, pol, node, size) if expected else None
    for i, c in enumerate(case.copies):
        name = names[i]
        if not expected:
            if c is not None:
                why = "not in the store manifest" if by == "manifest" else \
                    f"not on {names[pol.source]}" if by == "source" else f"only on {', '.join(holders)}"
                statuses[i] = "extra"
                out.append(Difference(case.key, name, "extra", where_level, why, c.size, None))
            continue
        if c is None:
            why = "listed in the store manifest" if by == "manifest" and not holders else \
                f"present on {', '.join(holders)}" if holders else "expected"
            statuses[i] = "missing"
            out.append(Difference(case.key, name, "missing", where_level, why, None, size))
            continue
        if c.size != size:
            statuses[i] = "size"
            out.append(Difference(case.key, name, "size", where_level, f"{c.size} bytes, expected {size}", c.size,
                                  size))
            continue
        if pol.level == 0 or case.find(i) == root:
            statuses[i] = "equal"
            continue
        proof = case.proven_different(i, root, node) if root is not None else None
        if proof is not None:
            statuses[i] = "content"
            out.append(Difference(case.key, name, "content", proof[0], proof[1], c.size, size))
            continue
        statuses[i] = "unproven"
        why = "; ".join(case.notes.get(i, [])) or f"no proof of equality at the {level_name} level"
        out.append(Difference(case.key, name, "unproven", level_name, why, c.size, size))
    return Verdict(case.key, statuses, out, size if expected else None)
