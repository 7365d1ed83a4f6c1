"""The `tessera-transcode` command line: parse arguments, call the API, print, exit with a code scripts can trust."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from transcode import __version__
from transcode.errors import TranscodeError, UsageError
from transcode.storage import S3Options

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own usage errors: exit 2 with one clear line
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def parse_years(text: str) -> list[int]:
    """'2017-2020,2024' -> [2017, 2018, 2019, 2020, 2024]."""
    years: set[int] = set()
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                a, b = part.split("-", 1)
                if int(a) > int(b):
                    raise ValueError(part)
                years.update(range(int(a), int(b) + 1))
            elif part:
                years.add(int(part))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a year list like 2017-2020,2024: {text!r}") from None
    if not years:
        raise argparse.ArgumentTypeError("empty year list")
    return sorted(years)


def add_s3_options(p: argparse.ArgumentParser, prefix: str = "", what: str = "source") -> None:
    """Options that say how to reach an s3:// location (credentials come from the usual AWS sources)."""
    g = p.add_argument_group(f"S3 options for the {what}")
    g.add_argument(f"--{prefix}endpoint-url", metavar="URL", help="S3 endpoint (Ceph RGW, MinIO, ...); default AWS")
    g.add_argument(f"--{prefix}region", metavar="NAME", help="S3 region")
    g.add_argument(f"--{prefix}profile", metavar="NAME", help="AWS profile for credentials")
    g.add_argument(f"--{prefix}anonymous", action="store_true", help="unsigned requests (public buckets)")
    g.add_argument(f"--{prefix}path-style", action="store_true", help="path-style addressing (most non-AWS servers)")


def s3_options(args: argparse.Namespace, prefix: str = "") -> S3Options:
    """The S3Options the user gave with `add_s3_options`."""
    p = prefix.replace("-", "_")
    return S3Options(
        endpoint_url=getattr(args, f"{p}endpoint_url"),
        region=getattr(args, f"{p}region"),
        profile=getattr(args, f"{p}profile"),
        anonymous=getattr(args, f"{p}anonymous"),
        path_style=getattr(args, f"{p}path_style"),
    )


def build_parser() -> argparse.ArgumentParser:
    """The whole command line."""
    parser = _Parser(
        prog="tessera-transcode",
        description="Inventory, transcode, validate and verify TESSERA embedding archives and Zarr v3 stores.",
        epilog="Exit codes: 0 clean, 1 problems found, 2 usage or unusable input, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    inv = sub.add_parser(
        "inventory",
        help="list a legacy archive and report every problem in it",
        description="List a legacy archive (local path or s3://bucket/prefix) without reading tile bodies: "
        "tiles per year and UTM zone, bytes, landmask coverage, and every problem with its file and reason. "
        "Writes the inventory as Parquet. Nothing in the source is written.",
    )
    inv.add_argument("source", metavar="SOURCE", help="archive root: a directory or s3://bucket/prefix")
    inv.add_argument("--years", type=parse_years, metavar="LIST", help="only these years, e.g. 2017-2020,2024")
    inv.add_argument("--dataset", help="dataset directory under npy/ (object-store layout)")
    inv.add_argument("--landmask-version", help="version directory under landmasks/ (object-store layout)")
    inv.add_argument("--verify-hashes", action="store_true", help="hash every file and compare with the registries")
    inv.add_argument("--workers", type=_positive_int, default=8, metavar="N", help="parallel reads (default 8)")
    inv.add_argument("--out", "-o", default="inventory.parquet", metavar="PATH",
                     help="where to write the Parquet inventory (default ./inventory.parquet); '-' for none")
    _add_output_options(inv)
    add_s3_options(inv)
    inv.set_defaults(func=cmd_inventory)

    demo = sub.add_parser(
        "demo",
        help="generate a small synthetic archive and run the toolkit on it",
        description="Generate a small synthetic legacy archive (3 tiles: north and south of the equator, "
        "across the UTM 30/31 boundary) in DIR/archive, inventory it, and print where everything went.",
    )
    demo.add_argument("dir", nargs="?", default="tessera-demo", metavar="DIR", help="output directory (default ./tessera-demo)")
    demo.add_argument("--preset", default="tiny", choices=["tiny", "small"], help="archive size (default tiny)")
    _add_output_options(demo)
    demo.set_defaults(func=cmd_demo)
    return parser


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {n}")
    return n


def _add_output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout instead of a report")
    p.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")


def _progress(args: argparse.Namespace) -> bool:
    return not args.no_progress and sys.stderr.isatty()


def _inside(path: Path, root: str) -> bool:
    if root.startswith("s3://"):
        return False
    try:
        path.resolve().relative_to(Path(root).resolve())
    except ValueError:
        return False
    return True


def cmd_inventory(args: argparse.Namespace) -> int:
    """`inventory SOURCE`."""
    from transcode.legacy.archive import open_archive
    from transcode.legacy.inventory import build_inventory, write_inventory

    out = None if args.out == "-" else Path(args.out)
    if out is not None and _inside(out, args.source):
        raise UsageError(str(out), "the inventory would be written inside the source archive; choose --out elsewhere")
    archive = open_archive(args.source, s3_options(args), dataset=args.dataset,
                           landmask_version=args.landmask_version, years=args.years)
    inv = build_inventory(archive, verify_hashes=args.verify_hashes, workers=args.workers, progress=_progress(args))
    if out is not None:
        write_inventory(inv, out)
    if args.json:
        doc = inv.to_json()
        doc["inventory_path"] = str(out) if out else None
        print(json.dumps(doc, indent=2))
    else:
        _print_inventory(inv, out)
    return EXIT_OK if inv.clean else EXIT_PROBLEMS


def cmd_demo(args: argparse.Namespace) -> int:
    """`demo [DIR]`."""
    from transcode.legacy.archive import open_archive
    from transcode.legacy.inventory import build_inventory, write_inventory
    from transcode.synthetic import make_legacy_archive

    base = Path(args.dir)
    archive_dir = base / "archive"
    if archive_dir.exists() and any(archive_dir.iterdir()):
        made = None  # reuse what an earlier run generated
    else:
        made = make_legacy_archive(archive_dir, years=(2024,), preset=args.preset, progress=_progress(args))
    inv = build_inventory(open_archive(str(archive_dir)), verify_hashes=True, progress=_progress(args))
    inv_path = base / "inventory.parquet"
    write_inventory(inv, inv_path)
    doc = {"archive": str(archive_dir), "generated": made is not None, "inventory": str(inv_path),
           "summary": inv.summary()}
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(f"archive    {archive_dir}  ({'generated' if made else 'reused'})")
        _print_inventory(inv, inv_path)
    return EXIT_OK if inv.clean else EXIT_PROBLEMS


def _mb(n: int) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{n} B"


def _print_inventory(inv, out: Path | None) -> None:
    s = inv.summary()
    print(f"source     {s['source']}  ({s['layout']} layout)")
    for year, v in s["per_year"].items():
        print(f"year {year}  {v['tiles']} tiles ({v['usable']} usable), {_mb(v['bytes'])}")
    for zone, years in s["per_zone"].items():
        print(f"{zone:10s} " + ", ".join(f"{y}: {n}" for y, n in years.items()))
    lm = s["landmasks"]
    cov = "n/a" if lm["coverage"] is None else f"{lm['coverage']:.0%}"
    print(f"landmasks  {lm['files']} files, {_mb(lm['bytes'])}; cover {cov} of {s['tile_cells']} tile cells")
    print(f"registries {', '.join(s['registries']) or 'none'}" + ("  (hashes verified)" if s["verified_hashes"] else ""))
    print(f"total      {s['tiles']} tiles, {_mb(s['bytes'])}")
    if inv.problems:
        print(f"problems   {len(inv.problems)}")
        for p in sorted(inv.problems):
            print(f"  {p.severity:7s} {p.kind:20s} {p.path}: {p.message}")
    else:
        print("problems   none")
    if out is not None:
        print(f"inventory  written to {out}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except TranscodeError as e:
        print(f"tessera-transcode {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"tessera-transcode {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_PROBLEMS


if __name__ == "__main__":
    sys.exit(main())
