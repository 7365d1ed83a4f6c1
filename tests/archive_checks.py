"""Shared expectations for inventory tests: which problem kind each injected fault must produce."""

import hashlib
import os
from pathlib import Path

# fault injected by transcode.testing.synthetic -> problem kind the inventory must report at the fault's path
EXPECTED_KIND = {
    "truncated": "truncated",
    "missing-scales": "missing-scales",
    "missing-embeddings": "missing-embeddings",
    "shape-mismatch": "shape-mismatch",
    "footprint-mismatch": "footprint-mismatch",
    "fortran-order": "fortran-order",
    "wrong-dtype": "wrong-dtype",
    "bad-magic": "bad-header",
    "bad-bands": "bad-shape",
    "corrupt-bytes": "hash-mismatch",
    "corrupt-landmask": "bad-landmask",
}


def snapshot(root: Path) -> dict[str, tuple[int, int, str]]:
    """(size, mtime_ns, sha256) of every file under root, to prove nothing was touched."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            p = Path(dirpath) / name
            st = p.stat()
            out[p.relative_to(root).as_posix()] = (st.st_size, st.st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
    return out
