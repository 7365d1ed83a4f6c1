"""The `tessera-transcode` command line, a thin layer over the Python API: each verb's module builds the API call
from the flags, calls it, prints the report (readable, or `--json`) and maps it to an exit code scripts can
trust: 0 clean, 1 problems found, 2 usage error or unusable input, 130 interrupted."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence

from transcode import __version__
from transcode.cli import bench_codecs, codecs, convert, demo, inventory, plan, validate, verify_mirrors
from transcode.cli.common import EXIT_INTERRUPTED, EXIT_PROBLEMS, Parser
from transcode.errors import TranscodeError, TranscodeWarning

PROG = "tessera-transcode"


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: one sub-command per verb module."""
    parser = Parser(
        prog=PROG,
        description="Inventory, transcode, validate and verify TESSERA embedding archives and Zarr v3 stores.",
        epilog="Exit codes: 0 clean, 1 problems found, 2 usage or unusable input, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    inventory.add_parser(sub)
    plan.add_parser(sub)
    convert.add_parsers(sub)
    validate.add_parser(sub)
    codecs.add_parser(sub)
    bench_codecs.add_parser(sub)
    demo.add_parser(sub)
    verify_mirrors.add_parser(sub)
    return parser


def _verb(argv: Sequence[str], parser: argparse.ArgumentParser) -> str:
    """The sub-command named in argv (for messages printed before parsing ends)."""
    choices = next(a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return next((a for a in argv if a in choices), "")


def _show_warnings(verb: str):
    """A `warnings.showwarning` that prints the toolkit's warnings as one line on stderr."""
    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if issubclass(category, TranscodeWarning):
            print(f"{PROG} {verb}: warning: {message}", file=sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)

    return show


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    # Arrow's default allocator keeps freed per-thread memory; the system one gives it back, which keeps the
    # peak RSS of inventory and plan flat on millions of tiles (read when pyarrow is first imported)
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    verb = _verb(argv, parser)
    with warnings.catch_warnings():
        warnings.simplefilter("always", TranscodeWarning)
        warnings.showwarning = _show_warnings(verb)
        args = parser.parse_args(argv)
        try:
            return args.func(args)
        except TranscodeError as e:
            print(f"{PROG} {args.command}: error: {e}", file=sys.stderr)
            return e.exit_code
        except KeyboardInterrupt as e:
            notes = "; ".join(getattr(e, "__notes__", []))
            print(f"{PROG} {args.command}: interrupted" + (f": {notes}" if notes else ""), file=sys.stderr)
            return EXIT_INTERRUPTED
        except BrokenPipeError:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return EXIT_PROBLEMS


def run() -> None:
    """Console-script entry: run, flush, and leave without interpreter finalisation, where native thread pools
    (pyarrow's, PROJ's) can abort the process ("terminate called without an active exception") after the work
    is done and the exit code is decided."""
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


if __name__ == "__main__":
    run()
