"""`tessera-transcode codecs`."""

from __future__ import annotations

import argparse

from transcode.cli import common


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The verb's flags."""
    p = common.add_verb(
        sub, "codecs", "list every codec, its Zarr v3 name and which readers decode it",
        "Every codec `--codec` accepts, the Zarr v3 name it is written under, and which readers "
        "(zarr-python, tensorstore, zarrs, zarrita.js) decode it, as verified by the interop matrix "
        "(tools/interop/matrix.py; README).",
        "listed", None,
    )
    common.add_output_options(p, progress=False)
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    """Run the verb and print its report."""
    import transcode

    return common.finish(args, transcode.codecs(), print_codecs)


def print_codecs(report) -> None:
    """The readable codec table."""
    doc = report.to_json()
    names = {r: v["name"] for r, v in doc["readers"].items()}
    print(f"{'CODEC':8s} {'SPEC FORM':34s} {'ZARR V3 NAME (CONFIGURATION)':44s} DECODED BY (verified)")
    for c in doc["codecs"]:
        ok = c["readers"]
        yes = [names[r] for r, v in ok.items() if v and not (r == "zarr-python+tessera" and ok["zarr-python"])]
        no = [names[r] for r, v in ok.items() if not v]
        conf = f" ({c['configuration']})" if c["configuration"] else ""
        print(f"{c['codec']:8s} {c['form']:34s} {c['zarr_name'] + conf:44s} {', '.join(yes)}"
              + (f"; NOT {', '.join(no)}" if no else ""))
    print(f"\ndefault: {doc['default']} for both arrays. Readers: "
          + "; ".join(f"{v['name']} {v['version']} ({v['kind']})".replace("  ", " ")
                      for r, v in doc["readers"].items() if r != "zarr-python+tessera")
          + ". Matrix per option: README, `--json`, tools/interop/matrix.py.")
