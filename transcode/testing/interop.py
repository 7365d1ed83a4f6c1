"""The interop matrix: convert a small synthetic archive once per codec option, read windows of every store back
with each reader (zarr-python, tensorstore, zarrs, zarrita.js under Node), and compare the values bit for bit
with the source tiles. `tools/interop/matrix.py` and the tests both run `run_matrix`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from transcode.codecs.spec import parse_codec_options
from transcode.engine.plan import Placement, Plan, make_plan
from transcode.format.arrays import BANDS, EMBEDDINGS, SCALES
from transcode.format.keys import zone_group
from transcode.legacy.inventory import Inventory
from transcode.testing import zarrread
from transcode.testing.zarrread import describe, sha256_of, zarr_read

REPO = Path(__file__).resolve().parents[2]  # a source checkout: the matrix tool runs from one
TOOLS_DIR = REPO / "tools" / "interop"
README = REPO / "README.md"
MATRIX_MODULE = REPO / "transcode" / "codecs" / "interop_matrix.py"
MARK_START, MARK_END = "<!-- interop-matrix:start -->", "<!-- interop-matrix:end -->"

# One store per option; between them they exercise every codec name, blosc compressor, shuffle and checksum.
MATRIX_OPTIONS = (
    "none", "blosc:zstd:3", "blosc:zstd:3:none", "blosc:lz4:5", "blosc:lz4hc:5", "blosc:zlib:5", "blosc:blosclz:5",
    "zstd:3", "zstd:3:checksum", "gzip:5", "lz4:1", "brotli:5:22", "snappy", "blosc:zstd:3+crc32c",
)
DIST = "tessera-transcode"  # the distribution whose zarr.codecs entry points the "+tessera" reader keeps
READERS = ("zarr-python", "zarr-python+tessera", "tensorstore", "zarrs", "zarrita.js")
READER_TITLES = {
    "zarr-python": "zarr-python",
    "zarr-python+tessera": "zarr-python + tessera-transcode installed",
    "tensorstore": "tensorstore (C++)",
    "zarrs": "zarrs (Rust)",
    "zarrita.js": "zarrita.js (browser JS)",
}
SHARD = (512, 512)
YEAR = 2024
MARGIN, WINDOW = 16, 96  # windows straddle each tile's corners: fill pixels, partial and missing chunks included


@dataclass(frozen=True)
class Read:
    """One window of one array of a store, and the SHA-256 of its expected C-order bytes."""

    array: str
    sel: tuple[int, int, int, int, int]  # t, y0, y1, x0, x1
    sha256: str

    def job(self) -> dict:
        return {"array": self.array, "sel": list(self.sel)}


@dataclass
class MatrixResult:
    """Per codec option and reader: "yes" (every window bit-exact), "no" (could not decode) or "MISMATCH"."""

    matrix: dict[str, dict[str, str]]
    messages: dict[str, dict[str, str]]
    versions: dict[str, str]
    stores: dict[str, Path] = field(default_factory=dict)
    archive: str = ""
    plan: Plan | None = None


def make_archive(base: Path) -> tuple[str, Inventory]:
    """The tiny synthetic archive (both hemispheres, across the zone 30/31 boundary) and its inventory."""
    from transcode.legacy.archive import open_archive
    from transcode.legacy.inventory import build_inventory
    from transcode.testing.synthetic import make_legacy_archive

    rep = make_legacy_archive(base / "archive", years=(YEAR,), preset="tiny", seed=4)
    return rep.root, build_inventory(open_archive(rep.root))


def write_store(archive: str, inv: Inventory, store: Path, option: str) -> None:
    """Convert the archive with `option` for both arrays, exactly as `tessera-transcode convert` would."""
    from transcode.engine.convert import ConvertOptions, convert

    options = ConvertOptions(shard=SHARD, codecs=parse_codec_options([option]))
    report = convert(archive, str(store), options, inventory=inv)
    if not report.ok:
        raise RuntimeError(f"converting with {option} failed: {report.failed or report.skipped_tiles}")


def _windows(plan: Plan) -> list[tuple[int, int, int, int, int, int]]:
    """(zone, t, y0, y1, x0, x1): a window over the top-left and the bottom-right corner of every tile."""
    out = []
    for task in plan.tasks:
        g = plan.grids[task.zone]
        for p in task.placements:
            corners = ((p.row - MARGIN, p.col - MARGIN),
                       (p.row + p.height + MARGIN - WINDOW, p.col + p.width + MARGIN - WINDOW))
            for r, c in corners:
                y0, x0 = max(0, r), max(0, c)
                win = (task.zone, task.t, y0, min(g.height, y0 + WINDOW), x0, min(g.width, x0 + WINDOW))
                if win not in out:
                    out.append(win)
    return out


def expected_window(archive: str, plan: Plan, zone: int, t: int, y0: int, y1: int, x0: int, x1: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings (128, h, w) and scales (h, w) of a window, painted from the source tiles (later tiles win)."""
    from transcode.format.sentinels import sanitize_scales
    from transcode.legacy.tiles import read_landmask
    from transcode.storage import open_storage

    source = open_storage(archive)
    emb = np.full((BANDS, y1 - y0, x1 - x0), EMBEDDINGS.fill, EMBEDDINGS.dtype)
    sc = np.full((y1 - y0, x1 - x0), SCALES.fill, SCALES.dtype)
    placed: list[Placement] = []
    for task in plan.tasks:
        if task.zone == zone and task.t == t:
            placed += [p for p in task.placements if p not in placed]
    for p in sorted(placed, key=lambda p: (p.year, p.lat_i, p.lon_i)):
        rr, cc = p.rows_in(y0, y1), p.cols_in(x0, x1)
        if rr is None or cc is None:
            continue
        src = (slice(rr[0] - p.row, rr[1] - p.row), slice(cc[0] - p.col, cc[1] - p.col))
        dst = (slice(rr[0] - y0, rr[1] - y0), slice(cc[0] - x0, cc[1] - x0))
        e = np.load(Path(archive) / p.embeddings_key, mmap_mode="r")
        s = np.array(np.load(Path(archive) / p.scales_key)[src])
        mask = read_landmask(source, p.landmask_key)[src] if p.landmask_key else None
        emb[(slice(None), *dst)] = np.asarray(e[src]).transpose(2, 0, 1)
        sc[dst] = sanitize_scales(s, mask)
    return emb, sc


def expected_reads(archive: str, plan: Plan) -> list[Read]:
    """Every window of both arrays, with the hash of what a correct reader returns."""
    reads = []
    for zone, t, y0, y1, x0, x1 in _windows(plan):
        emb, sc = expected_window(archive, plan, zone, t, y0, y1, x0, x1)
        for name, values in ((EMBEDDINGS.name, emb), (SCALES.name, sc)):
            reads.append(Read(f"{zone_group(zone)}/{name}", (t, y0, y1, x0, x1), sha256_of(values)))
    return reads


def _run_zarrread(store: str, jobs: list[dict], plugins: str) -> list[dict]:
    """`zarrread.py` in a fresh interpreter that never imports transcode, with only `plugins`' codecs visible."""
    done = subprocess.run([sys.executable, zarrread.__file__, "--plugins", plugins],
                          input=json.dumps({"store": store, "reads": jobs}), capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"zarr-python reader ({plugins or 'no plug-ins'}) failed: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout)


def read_zarr_plain(store: str, jobs: list[dict]) -> list[dict]:
    """zarr-python alone: no codec plug-ins (neither this toolkit's nor imagecodecs-zarr's)."""
    return _run_zarrread(store, jobs, "")


def read_zarr_tessera(store: str, jobs: list[dict]) -> list[dict]:
    """zarr-python with tessera-transcode installed: Brotli and Snappy found through its entry points, no import."""
    return _run_zarrread(store, jobs, DIST)


def read_zarrs(store: str, jobs: list[dict]) -> list[dict]:
    """The zarrs Rust crate, through zarrs-python's codec pipeline in strict mode (no Python fallback)."""
    import zarr

    try:
        import zarrs  # noqa: F401
    except ImportError as e:
        raise RuntimeError("the zarrs reader needs `pip install zarrs` (the test extra)") from e
    with zarr.config.set({"codec_pipeline.path": "zarrs.ZarrsCodecPipeline", "codec_pipeline.strict": True}):
        return zarr_read(store, jobs)


def read_tensorstore(store: str, jobs: list[dict]) -> list[dict]:
    """tensorstore's zarr3 driver."""
    import tensorstore as ts

    out = []
    for job in jobs:
        try:
            arr = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": f"{store}/{job['array']}"}},
                          open=True, read=True).result()
            t, y0, y1, x0, x1 = job["sel"]
            sel = arr[t, :, y0:y1, x0:x1] if arr.rank == 4 else arr[t, y0:y1, x0:x1]
            out.append({"sha256": sha256_of(sel.read().result())})
        except Exception as e:  # noqa: BLE001
            found = re.search(r'"[^"]*" is not registered', str(e))
            out.append({"error": f"{type(e).__name__}: {found.group(0)}" if found else describe(e)})
    return out


def read_zarrita(stores: dict[str, str], jobs: list[dict]) -> dict[str, list[dict]]:
    """zarrita.js under Node (tools/interop/read.mjs), all stores in one process."""
    if not (TOOLS_DIR / "node_modules" / "zarrita").is_dir():
        raise RuntimeError(f"zarrita.js is not installed: run `npm ci --prefix {TOOLS_DIR}` "
                           "(tools/install_test_deps.sh does)")
    order = list(stores)
    payload = {"jobs": [{"store": stores[k], "reads": jobs} for k in order]}
    try:
        done = subprocess.run(["node", str(TOOLS_DIR / "read.mjs")], input=json.dumps(payload), capture_output=True,
                              text=True, check=False, cwd=TOOLS_DIR)
    except FileNotFoundError as e:
        raise RuntimeError("the zarrita.js reader needs Node.js (`node`) on PATH") from e
    if done.returncode:
        raise RuntimeError(f"zarrita.js reader failed: {done.stderr.strip()[-2000:]}")
    return dict(zip(order, json.loads(done.stdout)))


def versions() -> dict[str, str]:
    """The reader versions this machine has (recorded beside the matrix, not in the README table)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for reader, dist in (("zarr-python", "zarr"), ("tensorstore", "tensorstore"), ("zarrs", "zarrs"),
                         ("numcodecs", "numcodecs"), ("brotli", "brotli"), ("python-snappy", "python-snappy")):
        try:
            out[reader] = version(dist)
        except PackageNotFoundError:
            out[reader] = "not installed"
    pkg = TOOLS_DIR / "node_modules" / "zarrita" / "package.json"
    out["zarrita.js"] = json.loads(pkg.read_text())["version"] if pkg.exists() else "not installed"
    return out


def _verdict(results: list[dict], reads: Sequence[Read]) -> tuple[str, str]:
    errors = [r["error"] for r in results if "error" in r]
    wrong = [rd for r, rd in zip(results, reads) if "sha256" in r and r["sha256"] != rd.sha256]
    if wrong:
        return "MISMATCH", f"{len(wrong)} of {len(reads)} windows differ, first {wrong[0].array} {wrong[0].sel}"
    if errors:
        return "no", errors[0]
    return "yes", ""


def run_matrix(base: Path, options: Sequence[str] = MATRIX_OPTIONS,
               log: Callable[[str], None] = lambda _: None) -> MatrixResult:
    """Write a store per codec option under `base`, read them with every reader, and tabulate."""
    base.mkdir(parents=True, exist_ok=True)
    archive, inv = make_archive(base)
    plan = make_plan(inv, shard=SHARD)
    reads = expected_reads(archive, plan)
    jobs = [r.job() for r in reads]
    stores: dict[str, Path] = {}
    for opt in options:
        log(f"writing {opt}")
        stores[opt] = base / f"store-{opt.replace(':', '-').replace('+', '-')}"
        write_store(archive, inv, stores[opt], opt)
    raw: dict[str, dict[str, list[dict]]] = {opt: {} for opt in options}
    for opt in options:
        log(f"reading {opt} with the Python readers")
        s = str(stores[opt])
        raw[opt]["zarr-python"] = read_zarr_plain(s, jobs)
        raw[opt]["zarr-python+tessera"] = read_zarr_tessera(s, jobs)
        raw[opt]["tensorstore"] = read_tensorstore(s, jobs)
        raw[opt]["zarrs"] = read_zarrs(s, jobs)
    log("reading every store with zarrita.js")
    for opt, results in read_zarrita({o: str(p) for o, p in stores.items()}, jobs).items():
        raw[opt]["zarrita.js"] = results
    matrix: dict[str, dict[str, str]] = {}
    messages: dict[str, dict[str, str]] = {}
    for opt in options:
        matrix[opt], messages[opt] = {}, {}
        for reader in READERS:
            matrix[opt][reader], messages[opt][reader] = _verdict(raw[opt][reader], reads)
    return MatrixResult(matrix, messages, versions(), stores, archive, plan)


def render_table(matrix: dict[str, dict[str, str]]) -> str:
    """The README table: one row per codec option, one column per reader."""
    from transcode.codecs.spec import parse_codec_spec

    cell = {"yes": "✅", "no": "—", "MISMATCH": "❌ wrong values"}
    lines = ["| codec option | inner chunk codecs (Zarr v3 names) | "
             + " | ".join(READER_TITLES[r] for r in READERS) + " |",
             "|---|---|" + "---|" * len(READERS)]
    for opt, row in matrix.items():
        names = " + ".join(f"`{c['name']}`" for c in parse_codec_spec(opt).zarr_config(np.int8)) or "(none)"
        lines.append(f"| `{opt}` | {names} | " + " | ".join(cell[row[r]] for r in READERS) + " |")
    return "\n".join(lines) + "\n"


def readme_table(text: str) -> str:
    """The table between the interop-matrix markers of a README."""
    start, end = text.index(MARK_START) + len(MARK_START), text.index(MARK_END)
    return text[start:end].strip("\n") + "\n"


def replace_readme_table(text: str, table: str) -> str:
    """`text` with the part between the markers replaced by `table`."""
    start, end = text.index(MARK_START) + len(MARK_START), text.index(MARK_END)
    return text[:start] + "\n" + table + text[end:]


def matrix_module_source(result: MatrixResult) -> str:
    """The generated `transcode/codecs/interop_matrix.py`: what `codecs` and the convert warning report."""
    return ('"""Generated by `python3 tools/interop/matrix.py` (do not edit): for each codec option, whether a reader\n'
            'decoded a store written with it bit-exactly ("yes"), could not decode it ("no") or returned wrong values\n'
            '("MISMATCH"). VERSIONS are the readers that produced it."""\n\n'
            f"READERS = {list(READERS)!r}\n\n"
            f"VERSIONS = {json.dumps(result.versions, indent=4, sort_keys=True)}\n\n"
            f"MATRIX = {json.dumps(result.matrix, indent=4)}\n")
