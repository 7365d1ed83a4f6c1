"""The incumbent, geotessera 0.11, as an oracle for tests and tools: find an interpreter that has it, register a
local legacy archive the way its `geotessera-registry zarr-init`/`zarr-fill` expect, build its store, and run its
`zarr-scan`, `zarr-verify` and `zarr-stretch` on any store.

geotessera needs Python >= 3.12 and brings a large dependency tree, so it is never imported here: every call runs
its command line in a subprocess of the interpreter that has it (`TESSERA_INCUMBENT_PYTHON`, this one, or, for the
command-line tool only, a checkout's `.venv-newest`, which `tools/install_test_deps.sh --newest` makes with the
`incumbent` extra). The tests look only at the first two: they run on the second test leg, which has it, and skip
on the first (Python 3.11), which cannot install it.

The archive must be in the local layout (`global_0.1_degree_representation/<year>/grid_X_Y/`, landmasks in
`global_0.1_degree_tiff_all/`): the incumbent reads local mirrors only in that shape. Its registries are written
into a directory of their own, so the archive is never modified."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from transcode.format.grid import TileId, parse_tile_name

__all__ = [
    "INCUMBENT_PYTHON_ENV",
    "INCUMBENT_VERSION",
    "Incumbent",
    "IncumbentError",
    "archive_dataset",
    "find_incumbent",
    "register_archive",
    "zero_water_embeddings",
]

INCUMBENT_VERSION = "0.11.0"
INCUMBENT_PYTHON_ENV = "TESSERA_INCUMBENT_PYTHON"  # an interpreter with geotessera installed
NEWEST_VENV = ".venv-newest"  # where tools/install_test_deps.sh --newest installs the incumbent extra
YEAR_ROOT = "global_0.1_degree_representation"
LANDMASK_ROOT = "global_0.1_degree_tiff_all"
METADATA_FILE = "tessera_metadata.json"
STRETCH_ATTR = "geoemb:stretch"
_VERSION_PROBE = "import importlib.metadata as m; print(m.version('geotessera'))"


class IncumbentError(RuntimeError):
    """An incumbent command failed; carries its command line and output."""

    def __init__(self, args: Sequence[str], code: int, output: str) -> None:
        super().__init__(f"geotessera-registry {' '.join(args)} exited {code}:\n{output[-4000:]}")
        self.args_ = list(args)
        self.code = code
        self.output = output


def _candidates(checkout_venv: bool) -> list[str]:
    out = []
    if os.environ.get(INCUMBENT_PYTHON_ENV):
        out.append(os.environ[INCUMBENT_PYTHON_ENV])
    out.append(sys.executable)
    if checkout_venv:
        checkout = Path(__file__).resolve().parents[2]  # an editable install: the repository
        out.append(str(checkout / NEWEST_VENV / "bin" / "python"))
    return list(dict.fromkeys(out))


def _version_of(python: str) -> str | None:
    if not Path(python).exists():
        return None
    try:
        done = subprocess.run([python, "-c", _VERSION_PROBE], check=False, capture_output=True, text=True,
                              timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def find_incumbent(*, checkout_venv: bool = False) -> tuple[Incumbent | None, str]:
    """The incumbent, or None and the reason it is not here (for a test's skip message). Looked for in
    $TESSERA_INCUMBENT_PYTHON and this interpreter; `checkout_venv` also tries the checkout's `.venv-newest`."""
    seen = []
    for python in _candidates(checkout_venv):
        version = _version_of(python)
        if version == INCUMBENT_VERSION:
            return Incumbent(python), f"geotessera {version} in {python}"
        seen.append(f"{python}: {'geotessera ' + version if version else 'no geotessera'}")
    here = f"Python {sys.version_info.major}.{sys.version_info.minor}"
    return None, (f"geotessera {INCUMBENT_VERSION} (needs Python >= 3.12) is not installed for {here}: it is the "
                  f"'incumbent' extra of the second test leg (tools/install_test_deps.sh --newest, .venv-newest), "
                  f"or set {INCUMBENT_PYTHON_ENV}; looked at " + "; ".join(seen))


def archive_dataset(archive: str | os.PathLike, default: tuple[str, str] = ("1.0", "vultr")) -> tuple[str, str]:
    """(version, variant) a local archive records in its tessera_metadata.json, else `default`."""
    path = Path(archive) / METADATA_FILE
    if not path.exists():
        return default
    doc = json.loads(path.read_text(encoding="utf-8"))
    return str(doc.get("dataset_version", default[0])), str(doc.get("dataset_variant", default[1]))


def _tiles(archive: Path) -> list[tuple[int, TileId, int, int]]:
    """(year, tile, embeddings size, scales size) of every complete tile-year of the local layout."""
    out = []
    for year_dir in sorted((archive / YEAR_ROOT).iterdir()):
        if not (year_dir.is_dir() and re.fullmatch(r"\d{4}", year_dir.name)):
            continue
        for tile_dir in sorted(year_dir.iterdir()):
            emb, sc = tile_dir / f"{tile_dir.name}.npy", tile_dir / f"{tile_dir.name}_scales.npy"
            if emb.exists() and sc.exists():
                out.append((int(year_dir.name), parse_tile_name(tile_dir.name), emb.stat().st_size,
                            sc.stat().st_size))
    return sorted(out, key=lambda r: (r[0], r[1].lat_i, r[1].lon_i))  # the canonical overlap order


def register_archive(archive: str | os.PathLike, registry_dir: str | os.PathLike, dataset: tuple[str, str]) -> Path:
    """Write the incumbent's `manifest.parquet` and `landmasks.parquet` for a local archive into `registry_dir`
    (rows in the canonical order, so the incumbent's later-tile-wins matches ours). An archive without landmasks
    gets an empty landmask registry, which keeps the incumbent from fetching the published one."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    archive, out = Path(archive), Path(registry_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = _tiles(archive)
    version, variant = dataset
    f64, i32, i64 = pa.float64(), pa.int32(), pa.int64()
    pq.write_table(pa.table({
        "version": pa.array([version] * len(rows), pa.string()),
        "variant": pa.array([variant] * len(rows), pa.string()),
        "year": pa.array([r[0] for r in rows], i32),
        "lon": pa.array([r[1].lon for r in rows], f64),
        "lat": pa.array([r[1].lat for r in rows], f64),
        "grid_size": pa.array([r[2] for r in rows], i64),
        "scales_size": pa.array([r[3] for r in rows], i64),
        "lon_i": pa.array([r[1].lon_i for r in rows], i32),
        "lat_i": pa.array([r[1].lat_i for r in rows], i32),
    }), out / "manifest.parquet")
    masks = sorted((parse_tile_name(p.stem), p.stat().st_size) for p in (archive / LANDMASK_ROOT).glob("grid_*.tiff")) \
        if (archive / LANDMASK_ROOT).is_dir() else []
    masks.sort(key=lambda m: (m[0].lat_i, m[0].lon_i))
    pq.write_table(pa.table({
        "lon": pa.array([m[0].lon for m in masks], f64),
        "lat": pa.array([m[0].lat for m in masks], f64),
        "file_size": pa.array([m[1] for m in masks], i64),
        "lon_i": pa.array([m[0].lon_i for m in masks], i32),
        "lat_i": pa.array([m[0].lat_i for m in masks], i32),
    }), out / "landmasks.parquet")
    return out


def mirror_view(archive: str | os.PathLike, view: str | os.PathLike) -> Path:
    """The archive as the incumbent wants a local mirror: its tile tree, its landmask directory (an empty one when
    the archive has none: the incumbent insists on the directory even where it reads no landmask) and its
    tessera_metadata.json, linked into `view` so that nothing is created in the archive."""
    archive, view = Path(archive).resolve(), Path(view)
    view.mkdir(parents=True, exist_ok=True)
    for name in (YEAR_ROOT, LANDMASK_ROOT, METADATA_FILE):
        link, target = view / name, archive / name
        if link.is_symlink() or link.exists():
            continue
        if target.exists():
            link.symlink_to(target, target_is_directory=target.is_dir())
        elif name == LANDMASK_ROOT:
            link.mkdir()
    return view


@dataclass(frozen=True)
class Incumbent:
    """geotessera 0.11's command line in the interpreter `python`."""

    python: str
    timeout: float = 1800.0

    def run(self, *args: str, workdir: str | os.PathLike | None = None) -> str:
        """Run `geotessera-registry ARGS`; its output, or IncumbentError when it fails. Its caches go to `workdir`
        (a temporary directory of the caller's), never to the user's."""
        env = dict(os.environ, NO_COLOR="1", TERM="dumb", COLUMNS="200", MPLBACKEND="Agg",
                   PYTHONWARNINGS="ignore")
        if workdir is not None:
            Path(workdir).mkdir(parents=True, exist_ok=True)
            env["XDG_CACHE_HOME"] = str(Path(workdir) / "cache")
        code = "import sys; sys.argv[0] = 'geotessera-registry'; from geotessera.registry_cli import main; " \
               "sys.exit(main())"
        done = subprocess.run([self.python, "-c", code, *args], check=False, capture_output=True, text=True, env=env,
                              cwd=workdir, timeout=self.timeout)
        output = done.stdout + done.stderr
        if done.returncode != 0:
            raise IncumbentError(args, done.returncode, output)
        return output

    def _source(self, archive: str | os.PathLike, workdir: Path, dataset: tuple[str, str] | None,
                url: bool = False) -> list[str]:
        """The archive as the incumbent's local mirror, then the options naming its registries and dataset. `url`:
        as a file:// location with its tile and landmask roots named (zarr-verify reads tiles from locations
        only)."""
        dataset = dataset or archive_dataset(archive)
        registry = register_archive(archive, workdir / "registry", dataset)
        view = mirror_view(archive, workdir / "mirror")
        options = ["--registry-dir", str(registry), "--dataset-version", dataset[0], "--dataset-variant", dataset[1]]
        if not url:
            return [str(view), *options]
        root = view.resolve().as_uri()
        return [root, *options, "--source-npy-root", f"{root}/{YEAR_ROOT}", "--source-landmask-root",
                f"{root}/{LANDMASK_ROOT}"]

    def build_store(self, archive: str | os.PathLike, store: str | os.PathLike, years: Iterable[int], *,
                    workdir: str | os.PathLike, depths: Sequence[int] = (), landmask: bool = True,
                    sample_size: int | None = None, workers: int = 1,
                    dataset: tuple[str, str] | None = None) -> str:
        """`zarr-init` then `zarr-fill` of every year: the incumbent's store of a local archive; their output."""
        work = Path(workdir)
        source = self._source(archive, work, dataset)
        years = sorted(years)
        init = ["zarr-init", *source, "--years", f"{years[0]}-{years[-1]}", "--output", str(store)]
        if depths:
            init += ["--matryoshka-depths", ",".join(str(d) for d in depths)]
        if not landmask:
            init.append("--no-landmask")
        if sample_size is not None:
            init += ["--stretch-sample-size", str(sample_size)]
        out = self.run(*init, workdir=work)
        out += self.run("zarr-fill", source[0], str(store), *source[1:], "--workers", str(workers), "--spill-dir",
                        str(work / "spill"), workdir=work)
        return out

    def scan(self, store: str | os.PathLike, archive: str | os.PathLike, *, workdir: str | os.PathLike,
             dataset: tuple[str, str] | None = None) -> list[dict]:
        """`zarr-scan` of a store against the archive's manifest: one row per (zone, year, shard) with its status
        (`written`, `missing`, `empty`)."""
        import pyarrow.parquet as pq

        work = Path(workdir)
        table = work / "scan.parquet"
        source = self._source(archive, work, dataset)
        self.run("zarr-scan", source[0], str(store), *source[1:], "--output", str(table), workdir=work)
        return pq.read_table(table).to_pylist()

    def verify(self, store: str | os.PathLike, archive: str | os.PathLike, *, workdir: str | os.PathLike,
               samples: int = 200, dataset: tuple[str, str] | None = None) -> list[dict]:
        """`zarr-verify`: the store's samples against the source tiles; the per-sample rows. IncumbentError when
        it finds a mismatch (it exits 1)."""
        import pyarrow.parquet as pq

        work = Path(workdir)
        table = work / "verify.parquet"
        source = self._source(archive, work, dataset, url=True)
        self.run("zarr-verify", source[0], str(store), *source[1:], "--samples", str(samples), "--workers", "2",
                 "--output", str(table), workdir=work)
        return pq.read_table(table).to_pylist()

    def stretch(self, store: str | os.PathLike, year: int, *, workdir: str | os.PathLike, mode: str = "pca") -> dict:
        """`zarr-stretch --mode MODE --year YEAR` (from the stored statistics); the entry it persists in the root's
        `geoemb:stretch` (it rewrites the root zarr.json: run it on a copy of a store that must stay as it is)."""
        self.run("zarr-stretch", str(store), "--year", str(year), "--mode", mode, workdir=workdir)
        root = json.loads((Path(store) / "zarr.json").read_text(encoding="utf-8"))
        return root["attributes"][STRETCH_ATTR][str(year)]


def zero_water_embeddings(archive: str | os.PathLike, landmasks: str = "coastline") -> int:
    """Set the embeddings of water pixels (landmask 0) to zero in every tile of a synthetic local archive, as the
    published tiles have them: the incumbent then leaves out their all-zero inner chunks. Returns the tiles
    changed. For test archives only: it rewrites tile files in place."""
    import numpy as np

    from transcode.testing.synthetic import tile_landmask

    changed = 0
    for year, tile, _, _ in _tiles(Path(archive)):
        emb = np.load(Path(archive) / YEAR_ROOT / str(year) / tile.name / f"{tile.name}.npy", mmap_mode="r+")
        water = tile_landmask(tile, mode=landmasks) == 0
        if water.shape == emb.shape[:2] and water.any():
            emb[water] = 0
            emb.flush()
            changed += 1
    return changed
