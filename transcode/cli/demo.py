"""`tessera-transcode demo [DIR]`."""

from __future__ import annotations

import argparse

from transcode.cli import common
from transcode.cli.convert import print_convert
from transcode.cli.inventory import print_inventory


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The verb's flags."""
    p = common.add_verb(
        sub, "demo", "generate a small synthetic archive and run the toolkit on it",
        "Generate a small synthetic legacy archive (3 tiles: north and south of the equator, "
        "across the UTM 30/31 boundary) in DIR/archive, inventory it into DIR/inventory.parquet, convert it "
        "into the Zarr v3 store DIR/store.zarr, and print where everything went.",
        "done", "problems found",
    )
    p.add_argument("dir", nargs="?", default="tessera-demo", metavar="DIR",
                   help="output directory (default ./tessera-demo)")
    p.add_argument("--preset", default="tiny", choices=["tiny", "small"], help="archive size (default tiny)")
    common.add_output_options(p)
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    """Run the verb and print its report."""
    import transcode

    return common.finish(args, transcode.demo(args.dir, preset=args.preset, progress=common.progress(args)),
                         print_demo)


def print_demo(report) -> None:
    """Where everything went, and the inventory and conversion reports."""
    print(f"archive    {report.archive}  ({'generated' if report.generated else 'reused'})")
    print_inventory(report.inventory)
    print_convert(report.convert)
    print(f"\nopen it:   python3 -c \"import zarr; print(zarr.open_group('{report.store}', mode='r')"
          "['utm31/embeddings'].info)\"")
