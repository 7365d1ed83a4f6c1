"""Read windows of a store with zarr-python and hash them: the interop matrix's zarr-python readers.

Also a script, run by path in a fresh interpreter that never imports transcode, so the codecs zarr-python finds are
only those its `zarr.codecs` entry points bring:

    python zarrread.py [--plugins DIST,...] < {"store": ..., "reads": [{"array": ..., "sel": [t, y0, y1, x0, x1]}]}

`--plugins` keeps the codec entry points of those distributions only (besides zarr's and numcodecs' own), so
"zarr-python alone" and "zarr-python with tessera-transcode installed" are what they say even where other codec
packages (imagecodecs-zarr) are installed too. Prints one {"sha256"} or {"error"} per read as JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import warnings

ZARR_OWN = ("zarr", "numcodecs")  # what `pip install zarr` brings


def sha256_of(values) -> str:
    """SHA-256 of an array's C-order bytes."""
    import numpy as np

    return hashlib.sha256(np.ascontiguousarray(values).tobytes()).hexdigest()


def describe(e: BaseException) -> str:
    """One line naming an exception and its cause."""
    text = f"{type(e).__name__}: {e}"
    if e.__cause__ is not None:
        text += f" <- {type(e.__cause__).__name__}: {e.__cause__}"
    return " ".join(text.split())[:300]


def zarr_read(store: str, jobs: list[dict]) -> list[dict]:
    """Read each window with zarr-python as configured now: {"sha256"} or {"error"} per read."""
    import zarr

    out = []
    for job in jobs:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # numcodecs.* codecs warn that they are not in the v3 spec
                arr = zarr.open_array(f"{store}/{job['array']}", mode="r")
                t, y0, y1, x0, x1 = job["sel"]  # t:t+1, not t: zarrs-python cannot drop an axis
                values = arr[t:t + 1, :, y0:y1, x0:x1] if arr.ndim == 4 else arr[t:t + 1, y0:y1, x0:x1]
            out.append({"sha256": sha256_of(values[0])})
        except Exception as e:  # noqa: BLE001 - any failure means "this reader cannot decode it"
            out.append({"error": describe(e)})
    return out


def keep_codec_plugins(dists: set[str]) -> None:
    """Hide every `zarr.codecs` entry point except zarr's, numcodecs' and those of `dists` (before zarr imports)."""
    import importlib.metadata as md

    real = md.entry_points
    keep = {_normal(d) for d in (*ZARR_OWN, *dists)}

    def entry_points(**params):
        found = real(**params)
        if not isinstance(found, md.EntryPoints):  # Python 3.11 without arguments: {group: entry points}
            found = md.EntryPoints(ep for group in found.values() for ep in group)
        return md.EntryPoints(ep for ep in found if not ep.group.startswith("zarr.codecs")
                              or (ep.dist is not None and _normal(ep.dist.name) in keep))

    md.entry_points = entry_points


def _normal(name: str) -> str:
    return name.lower().replace("_", "-")


def main(argv: list[str] | None = None) -> int:
    """Script entry: read the jobs on stdin with only the named codec plug-ins visible."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--plugins", default="", help="distributions whose zarr.codecs entry points stay visible")
    args = ap.parse_args(argv)
    plugins = {p for p in args.plugins.split(",") if p}
    assert "zarr" not in sys.modules and "transcode" not in sys.modules
    keep_codec_plugins(plugins)
    job = json.load(sys.stdin)
    results = zarr_read(job["store"], job["reads"])
    if "tessera-transcode" not in plugins:
        assert "transcode" not in sys.modules, "zarr-python loaded tessera-transcode's codecs although hidden"
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
