"""ETag evidence: single-part ETags are MD5s; multipart ETags (MD5 of part MD5s + '-N') prove equality when equal,
and difference only when both copies are known to use the same part boundaries."""

from __future__ import annotations

import re
from collections.abc import Callable

from transcode.mirrors.evidence import KeyCase, Policy

_HEX = re.compile(r"^[0-9a-f]{32}$")
MiB = 1024 * 1024


def parse(etag: str | None) -> tuple[str, int] | None:
    """(md5 hex, parts) with parts 0 for a single PUT; None when absent or not an S3-style ETag."""
    if not etag:
        return None
    e = etag.strip('"').lower()
    digest, _, n = e.partition("-")
    if not _HEX.match(digest):
        return None
    if not n:
        return digest, 0
    return (digest, int(n)) if n.isdigit() and int(n) > 0 else None


def parts_for(size: int, part_size: int) -> int:
    """How many parts an upload of `size` bytes in `part_size` parts has."""
    return max(1, -(-size // part_size)) if part_size > 0 else 0


def _mib(n: int) -> str:
    return f"{n / MiB:g} MiB"


def compare(case: KeyCase, pol: Policy, part_size: Callable[[int], int | None]) -> set[int]:
    """Add ETag proofs between mirrors (level etag) and against the manifest row (level manifest).

    `part_size(i)` is the known part size of mirror i's copy (probed or declared) or None. Returns the mirrors
    whose part size, if probed, could settle a comparison that is open now."""
    want: set[int] = set()
    names = pol.names
    present = case.present
    tags = {i: parse(case.copies[i].etag) for i in present}
    for i in present:
        if tags[i] is None:
            case.note(i, "no ETag to compare (local mirror)" if case.copies[i].etag is None
                      else f"ETag {case.copies[i].etag} is not an MD5-based ETag")
    for x, i in enumerate(present):
        for j in present[x + 1:]:
            ci, cj, ti, tj = case.copies[i], case.copies[j], tags[i], tags[j]
            if ci.size != cj.size or ti is None or tj is None:
                continue
            if ti == tj:
                case.equal(i, j)
                continue
            if ti[1] == 0 and tj[1] == 0:
                case.differ(i, j, "etag", f"MD5 {ti[0]} on {names[i]} != {tj[0]} on {names[j]}")
                continue
            if ti[1] != tj[1] or 0 in (ti[1], tj[1]):
                for a, b in ((i, j), (j, i)):
                    case.note(a, f"ETag {ci.etag if a == i else cj.etag} vs {cj.etag if a == i else ci.etag} on "
                                 f"{names[b]}: uploaded in different parts, not comparable")
                continue
            pi, pj = part_size(i), part_size(j)
            if pi is not None and pi == pj:
                case.differ(i, j, "etag", f"multipart ETag {ci.etag} on {names[i]} != {cj.etag} on {names[j]} "
                                          f"with the same {ti[1]} parts of {_mib(pi)}")
            elif pi is not None and pj is not None:
                for a, b in ((i, j), (j, i)):
                    case.note(a, f"same part count as {names[b]} but other part sizes ({_mib(pi)} vs {_mib(pj)})")
            else:
                want.update(k for k, p in ((i, pi), (j, pj)) if p is None)
                for a, b in ((i, j), (j, i)):
                    case.note(a, f"multipart ETags differ from {names[b]}'s ({ti[1]} parts) but the part sizes "
                                 "are unknown")
    if pol.level >= 2 and pol.uses_manifest(case.key) and case.record is not None:
        want |= _against_manifest(case, pol, tags, part_size)
    return want


def _against_manifest(case: KeyCase, pol: Policy, tags: dict, part_size: Callable[[int], int | None]) -> set[int]:
    r = case.record
    m = case.n
    want: set[int] = set()
    rtag = parse(r.etag)
    for i, t in tags.items():
        c = case.copies[i]
        if c.size != r.size or t is None:
            continue
        if t[1] == 0:
            if t[0] == r.md5:
                case.equal(i, m)
            else:
                case.differ(i, m, "manifest", f"MD5 {t[0]} != {r.md5} in the store manifest")
            continue
        if rtag is not None and rtag == t:
            case.equal(i, m)
            continue
        if rtag is not None and rtag[1] == t[1] and r.part_size:
            p = part_size(i)
            if p == r.part_size and parts_for(r.size, p) == t[1]:
                case.differ(i, m, "manifest", f"multipart ETag {c.etag} != {r.etag} in the store manifest, both "
                                              f"with {t[1]} parts of {_mib(p)}")
                continue
            if p is None:
                want.add(i)
        case.note(i, f"multipart ETag {c.etag} cannot be checked against the manifest "
                     f"({'its ETag ' + r.etag if r.etag else 'MD5 only'})")
    return want
