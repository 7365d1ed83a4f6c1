#!/usr/bin/env python3
"""Write a synthetic TESSERA legacy archive (per-tile .npy + landmasks + registries), optionally with faults.

Examples:
  python3 tools/make_legacy_archive.py /tmp/legacy                       # preset "small", year 2024
  python3 tools/make_legacy_archive.py /tmp/legacy --preset tiny --years 2023 2024 --json
  python3 tools/make_legacy_archive.py /tmp/obj --layout object --landmasks ones \\
      --fault truncated --fault corrupt-bytes:grid_0.05_83.95:2024
  python3 tools/make_legacy_archive.py /tmp/v2 --dataset-version 2.0 --registry-paths s3   # v2: no landmasks
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

try:
    from transcode.testing import synthetic
except ImportError:  # running from a source tree that was never installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from transcode.testing import synthetic


def _fault(text: str):
    parts = text.split(":")
    if len(parts) > 3 or not parts[0]:
        raise argparse.ArgumentTypeError(f"expected NAME[:TILE[:YEAR]], got {text!r}")
    if parts[0] not in synthetic.FAULTS:
        raise argparse.ArgumentTypeError(f"unknown fault {parts[0]!r}; valid: {', '.join(synthetic.FAULTS)}")
    if len(parts) == 3:
        try:
            parts[2] = int(parts[2])
        except ValueError:
            raise argparse.ArgumentTypeError(f"year must be an integer in {text!r}") from None
    return parts[0] if len(parts) == 1 else tuple(parts)


def _epilog() -> str:
    faults = "\n".join(f"  {k:20s} {v}" for k, v in synthetic.FAULTS.items())
    presets = "\n".join(f"  {k:8s} {len(v)} tiles: {' '.join(v)}" for k, v in synthetic.PRESETS.items())
    return f"faults:\n{faults}\n\npresets:\n{presets}\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("root", help="output directory (must be missing or empty)")
    ap.add_argument(
        "--years", type=int, nargs="+", default=[2024], metavar="YEAR", help="years to write (default 2024)"
    )
    ap.add_argument("--preset", default="small", choices=sorted(synthetic.PRESETS), help="tile set (default small)")
    ap.add_argument("--tiles", nargs="+", metavar="grid_X_Y", help="explicit tile names (override --preset)")
    ap.add_argument("--layout", default="local", choices=synthetic.LAYOUTS, help="local (default) or object")
    ap.add_argument("--dataset", help="object layout: npy/<dataset>/ (default: named after the dataset version, v1)")
    ap.add_argument("--dataset-version", help="1.0 (default), 1.1, 2.0, ...: tessera_metadata.json, manifest.parquet")
    ap.add_argument("--dataset-variant", default="vultr", help="default vultr")
    ap.add_argument("--no-metadata", action="store_true", help="write no tessera_metadata.json (local layout)")
    ap.add_argument("--landmask-version", default="v1", help="object layout: landmasks/<version>/ (default v1)")
    ap.add_argument("--landmasks", choices=synthetic.LANDMASK_MODES,
                    help="default coastline before v2, none from v2 on")
    ap.add_argument("--no-registries", action="store_true", help="write no registries, SHA256 files or manifests")
    ap.add_argument("--registry-paths", default="relative", choices=synthetic.REGISTRY_PATHS,
                    help="paths in manifest.parquet and landmasks.parquet: relative (default), foreign (another "
                    "machine's mount) or s3 (s3://bucket/key URLs), as the incumbent's scanner writes them")
    ap.add_argument("--landmask-registry", default="parquet", choices=synthetic.LANDMASK_REGISTRIES,
                    help="landmasks.parquet with keys (default) or keyless (lat, lon, hash, file_size)")
    ap.add_argument(
        "--fault", action="append", type=_fault, default=[], metavar="NAME[:TILE[:YEAR]]",
        help="inject a fault after the registries are written (repeatable; see the list below)",
    )
    ap.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    ap.add_argument("--progress", action="store_true", help="show a progress bar")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    try:
        report = synthetic.make_legacy_archive(
            args.root,
            years=args.years,
            tiles=args.tiles,
            preset=args.preset,
            layout=args.layout,
            dataset=args.dataset,
            dataset_version=args.dataset_version,
            dataset_variant=args.dataset_variant,
            metadata=not args.no_metadata,
            landmask_version=args.landmask_version,
            landmasks=args.landmasks,
            registries=not args.no_registries,
            registry_paths=args.registry_paths,
            landmask_registry=args.landmask_registry,
            faults=args.fault,
            seed=args.seed,
            progress=args.progress,
        )
    except (ValueError, FileExistsError) as e:
        print(f"make_legacy_archive: {e}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - t0
    if args.json:
        out = asdict(report)
        out["seconds"] = round(elapsed, 3)
        print(json.dumps(out, indent=2))
    else:
        print(
            f"{report.root}: {report.layout} layout, {len(report.tiles)} tiles x {len(report.years)} years "
            f"({', '.join(map(str, report.years))}), {report.files} files, "
            f"{report.bytes / 1e6:.1f} MB in {elapsed:.1f} s"
        )
        for f in report.faults:
            print(f"  fault {f.fault}: {f.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
