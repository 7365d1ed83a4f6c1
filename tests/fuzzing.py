"""Mutation strategies for the parser fuzz tests (tests/fuzz_targets.py): byte-level edits of a valid file and
structural edits of a valid JSON document, drawn by hypothesis so that failures shrink to a small example."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator

from hypothesis import strategies as st

# byte strings that tend to matter to parsers: numbers at and past their limits, brackets, quotes, keywords
TOKENS = [b"0", b"-1", b"9" * 30, b"1e999", b"nan", b"(", b")", b"[", b"]", b"{", b"}", b"'", b'"', b",", b":",
          b"True", b"None", b"null", b"'<f8'", b"'|i1'", b"'<f4'", b"'>i4'", b"\x00", b"\xff\xff\xff\xff",
          b"\xff\xff\xff\xff\xff\xff\xff\x7f", b"\x00\x00\x00\x80", b"((((((((((((((((((((", b"[[[[[[[[[[[[[[[[",
          b"\n", b"\r\n", b"  ", b"\xc3\x28", b"'descr'", b"'shape'", b"'fortran_order'"]

JSON_SCALARS = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True)
                | st.text(max_size=24) | st.sampled_from(["", "EPSG:32630", "utm30", "int8", "float32", "/", ".."]))
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=5)
                           | st.dictionaries(st.text(max_size=12), inner, max_size=5), max_leaves=12)


@st.composite
def mutated_bytes(draw, base: bytes, lo: int = 0, hi: int | None = None, max_edits: int = 6) -> bytes:
    """`base` with 1..max_edits edits (set, flip, insert, delete, token, truncate, repeat) at positions in
    [lo, hi) (where the interesting structure is), counted from the end when lo is negative."""
    data = bytearray(base)
    for _ in range(draw(st.integers(1, max_edits))):
        n = len(data)
        a = max(0, min(n, lo if lo >= 0 else n + lo))
        b = max(a, min(n, n if hi is None else (hi if hi >= 0 else n + hi)))
        pos = draw(st.integers(a, b))
        op = draw(st.sampled_from(["set", "flip", "insert", "delete", "token", "truncate", "repeat"]))
        if op == "set" and pos < n:
            data[pos] = draw(st.integers(0, 255))
        elif op == "flip" and pos < n:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[pos:pos + draw(st.integers(1, 16))]
        elif op == "token":
            token = draw(st.sampled_from(TOKENS))
            data[pos:pos + draw(st.integers(0, len(token)))] = token
        elif op == "truncate":
            del data[pos:]
        elif op == "repeat":
            data[pos:pos] = data[pos:pos + draw(st.integers(1, 32))] * draw(st.integers(1, 4))
    return bytes(data)


def _paths(doc, prefix=()) -> Iterator[tuple]:
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, prefix + (i,))


@st.composite
def mutated_json(draw, doc, keep: frozenset = frozenset(), max_edits: int = 3):
    """`doc` with 1..max_edits of its values replaced (by other JSON, or by a value of another type) or deleted;
    top-level keys in `keep` are left alone (e.g. a checkpoint's fingerprint, so the edit reaches the reader)."""
    doc = copy.deepcopy(doc)
    for _ in range(draw(st.integers(1, max_edits))):
        paths = [p for p in _paths(doc) if not (p and p[0] in keep)]
        path = draw(st.sampled_from(paths))
        action = draw(st.sampled_from(["replace", "replace", "delete", "wrap"]))
        if not path:
            if action != "delete":
                doc = draw(JSON_VALUES) if action == "replace" else [doc]
            continue
        parent = doc
        for k in path[:-1]:
            parent = parent[k]
        last = path[-1]
        if action == "delete":
            del parent[last]
        elif action == "wrap":
            parent[last] = {"v": parent[last]} if draw(st.booleans()) else [parent[last]]
        else:
            parent[last] = draw(JSON_VALUES)
    return doc


@st.composite
def mutated_json_bytes(draw, doc, keep: frozenset = frozenset()) -> bytes:
    """A JSON document edited structurally (mostly) or byte by byte (sometimes), serialized."""
    text = json.dumps(draw(mutated_json(doc, keep)))
    if draw(st.integers(0, 3)) == 0:
        return draw(mutated_bytes(text.encode()))
    return text.encode()
