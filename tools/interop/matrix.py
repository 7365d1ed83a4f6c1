"""Regenerate the interop matrix: write a store per codec option, read each back with zarr-python, tensorstore,
zarrs and zarrita.js (Node), compare values with the source tiles, and rewrite the README table and
transcode/codecs/interop_matrix.py.

    npm ci --prefix tools/interop && python3 tools/interop/matrix.py [--check] [--keep DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from transcode.testing.interop import (
    MATRIX_MODULE,
    README,
    matrix_module_source,
    readme_table,
    render_table,
    replace_readme_table,
    run_matrix,
)


def main(argv: list[str] | None = None) -> int:
    """Run the readers; rewrite (or with --check, compare) the README table and the matrix module."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="only compare with what is committed; exit 1 if it differs")
    ap.add_argument("--keep", metavar="DIR", help="write the archive and stores here and keep them")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="interop-") as tmp:
        base = Path(args.keep) if args.keep else Path(tmp)
        result = run_matrix(base, log=lambda msg: print(msg, file=sys.stderr))
    table = render_table(result.matrix)
    print(table)
    for opt, row in result.messages.items():
        for reader, msg in row.items():
            if msg:
                print(f"  {opt:22s} {reader:20s} {msg}", file=sys.stderr)
    text = README.read_text()
    module = matrix_module_source(result)
    if args.check:
        same = readme_table(text) == table and MATRIX_MODULE.read_text().split("MATRIX = ")[1] == \
            module.split("MATRIX = ")[1]
        print("README and transcode/codecs/interop_matrix.py are current" if same else "the committed matrix differs",
              file=sys.stderr)
        return 0 if same else 1
    README.write_text(replace_readme_table(text, table))
    MATRIX_MODULE.write_text(module)
    print(f"rewrote {README} and {MATRIX_MODULE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
