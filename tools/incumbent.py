"""Run the incumbent, geotessera 0.11, on a local legacy archive and on any store (transcode.testing.incumbent):

    python tools/incumbent.py build ARCHIVE STORE --years 2024 [--depths 4,16] [--no-landmask]
    python tools/incumbent.py scan STORE ARCHIVE      # its zarr-scan: shards written / missing / empty
    python tools/incumbent.py verify STORE ARCHIVE    # its zarr-verify: samples against the source tiles
    python tools/incumbent.py stretch STORE --year 2024   # its zarr-stretch --mode pca (rewrites the root zarr.json)

geotessera is looked for in this interpreter, in $TESSERA_INCUMBENT_PYTHON and in the checkout's .venv-newest
(`bash tools/install_test_deps.sh --newest`). Its registries and caches go to --workdir (a new temporary
directory by default); the archive is never written. Exit 0 when the incumbent succeeded, 1 when it failed, 2 when
it is not installed."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter

from transcode.testing.incumbent import IncumbentError, find_incumbent


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", help="where its registries, mirror view and caches go (default: a temporary dir)")
    sub = p.add_subparsers(dest="verb", required=True)
    b = sub.add_parser("build", help="zarr-init + zarr-fill: the incumbent's store of a local archive")
    b.add_argument("archive")
    b.add_argument("store")
    b.add_argument("--years", required=True, help="e.g. 2024 or 2023-2024")
    b.add_argument("--depths", default="", help="nested depths, e.g. 4,16 (v2 datasets)")
    b.add_argument("--no-landmask", action="store_true", help="tiles need no landmask (v2 datasets)")
    b.add_argument("--workers", type=int, default=1)
    for verb in ("scan", "verify"):
        s = sub.add_parser(verb, help=f"its zarr-{verb} of a store against the archive")
        s.add_argument("store")
        s.add_argument("archive")
    s = sub.add_parser("stretch", help="its zarr-stretch --mode pca from the stored statistics")
    s.add_argument("store")
    s.add_argument("--year", type=int, required=True)
    args = p.parse_args(argv)

    incumbent, why = find_incumbent(checkout_venv=True)
    if incumbent is None:
        print(f"error: {why}", file=sys.stderr)
        return 2
    work = args.workdir or tempfile.mkdtemp(prefix="incumbent-")
    try:
        if args.verb == "build":
            lo, _, hi = args.years.partition("-")
            depths = [int(d) for d in args.depths.split(",") if d]
            print(incumbent.build_store(args.archive, args.store, range(int(lo), int(hi or lo) + 1), workdir=work,
                                        depths=depths, landmask=not args.no_landmask, workers=args.workers))
        elif args.verb == "scan":
            rows = incumbent.scan(args.store, args.archive, workdir=work)
            print(json.dumps(dict(Counter(r["status"] for r in rows))))
        elif args.verb == "verify":
            rows = incumbent.verify(args.store, args.archive, workdir=work)
            print(json.dumps({"samples": len(rows)}))
        else:
            print(json.dumps(incumbent.stretch(args.store, args.year, workdir=work), indent=1))
    except IncumbentError as e:
        print(e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
