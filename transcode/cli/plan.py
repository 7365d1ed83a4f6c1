"""`tessera-transcode plan SOURCE`."""

from __future__ import annotations

import argparse

from transcode.cli import common


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The verb's flags."""
    p = common.add_verb(
        sub, "plan", "show zones, shards, tiles, input bytes and work units of a conversion",
        "Place every usable tile of a legacy archive in its UTM zone grid (docs/format.md, 'Placing tiles') "
        "and group the tile windows by shard. Nothing is written.",
        "every tile placed", "tiles skipped or clipped",
    )
    common.add_source_argument(p)
    common.add_selection_options(p)
    common.add_layout_options(p)
    common.add_inventory_option(p)
    common.add_dataset_option(p)
    p.add_argument("--units", action="store_true",
                   help="list every work unit (shard and its tiles), also in the --json document (default: off: "
                   "on the full archive they are hundreds of thousands)")
    common.add_output_options(p)
    common.add_s3_options(p)
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    """Run the verb and print its report."""
    import transcode

    report = transcode.plan(args.source, years=args.years, zones=args.zones, shard_size=args.shard_size,
                            chunk_size=args.chunk_size, inventory=args.inventory, progress=common.progress(args),
                            dataset_version=args.dataset_version, units=args.units, **common.s3_keywords(args))
    return common.finish(args, report, lambda r: print_plan(r, args.units))


def print_plan(report, units: bool) -> None:
    """The readable plan (every work unit with `units`)."""
    doc, plan = report.plan.summary(), report.plan
    print(f"time       {plan.time[0]}..{plan.time[-1]}" if plan.time else "time       (empty)")
    print(f"shards     {doc['shards']} of {plan.shard[0]}x{plan.shard[1]} px, "
          f"chunks {plan.chunk[0]}x{plan.chunk[1]} px")
    for zone, z in doc["zones"].items():
        print(f"{zone}      EPSG:{z['epsg']} origin ({z['origin_x']:.0f}, {z['origin_y']:.0f}) "
              f"{z['height']}x{z['width']} px, "
              f"{z['shards']} shards, {z['tile_years']} tile-years")
    print(f"tiles      {doc['tile_years']} tile-years, {common.mb(doc['input_bytes'])} to read")
    print(f"dataset    {common.dataset_line(plan.inventory.dataset)}")
    for p in plan.skipped + plan.clipped:
        print(common.problem_line(p))
    if units:
        for task in plan.iter_tasks():
            print(f"  {task.name}: {', '.join(p.tile for p in task.placements)}")
