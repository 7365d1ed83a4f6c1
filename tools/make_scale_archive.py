#!/usr/bin/env python3
"""Write a large legacy archive of sparse files: every tile has its true footprint shape and valid .npy
headers, but its body is a hole, so a million tile-years cost inodes and metadata, not data.

Cells are laid out in square blocks (up to 2° x 2°) spread over every UTM zone and thirteen latitude bands in
both hemispheres, each present in every year; each cell has a small all-ones GeoTIFF landmask on its own UTM grid. The
registries take the forms the incumbent's scanner writes (--registry-paths, --landmask-registry).

Examples:
  python3 tools/make_scale_archive.py SCALE-1M --tile-years 1000000
  python3 tools/make_scale_archive.py SCALE-10K --tile-years 10000 --registry-paths s3 --landmask-registry keyless
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

try:
    from transcode.format.tilecolumns import footprints
except ImportError:  # running from a source tree that was never installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from transcode.format.tilecolumns import footprints

from transcode.format.grid import tile_name
from transcode.testing.synthetic import (
    LANDMASK_REGISTRIES,
    LAYOUTS,
    REGISTRY_PATHS,
    RegistryPaths,
    landmask_root,
    write_dataset_metadata,
    year_root,
)

LAT_BANDS = (4, -16, 24, -36, 44, -56, 64, -6, 14, -26, 34, -46, 54)  # block south edges (degrees), hemispheres
# alternating so that any size covers both
SLOTS = 3  # blocks side by side in a 6-degree zone


def cells_for(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(lon_i, lat_i) of n cells in square blocks spread over every UTM zone and every latitude band (both
    hemispheres) at any size, so archives of different sizes differ only in how dense they are; deterministic."""
    spread = 60 * len(LAT_BANDS)
    side = min(20, max(1, math.ceil(math.sqrt(n / spread))))  # at most 2 degrees: a block stays in its slot
    if math.ceil(n / side**2) > spread * SLOTS:
        raise ValueError(f"{n} cells is more than this layout holds")
    lon, lat = [], []
    i = np.arange(side * side)
    for slot in range(SLOTS):
        for band in LAT_BANDS:
            for zone in range(1, 61):
                if len(lon) >= n:
                    return np.array(lon[:n]), np.array(lat[:n])
                west = -180 + 6 * (zone - 1) + 2 * slot  # degrees
                lon += (west * 100 + 5 + 10 * (i % side)).tolist()
                lat += (band * 100 + 5 + 10 * (i // side)).tolist()
    return np.array(lon[:n]), np.array(lat[:n])


def npy_header(descr: str, shape: tuple[int, ...]) -> bytes:
    """A format 1.0 .npy header (numpy's own writer) for an array of this dtype and shape."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _write_sparse(path: Path, header: bytes, size: int) -> None:
    with open(path, "wb") as f:
        f.write(header)
        f.truncate(size)


def _landmask(path: Path, epsg: int, origin_x: float, origin_y: float, h: int, w: int) -> tuple[int, str]:
    import rasterio
    from rasterio.transform import Affine

    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=1, dtype="uint8", crs=f"EPSG:{epsg}",
                       transform=Affine(10.0, 0.0, origin_x, 0.0, -10.0, origin_y), compress="deflate") as dst:
        dst.write(np.ones((h, w), np.uint8), 1)
    data = path.read_bytes()
    return len(data), hashlib.sha256(data).hexdigest()


def _write_cells(job: dict) -> list[tuple[int, str]]:
    """Write the tile-years and landmasks of a slice of cells; (size, sha256) of each landmask."""
    yroot, lroot = Path(job["yroot"]), Path(job["lroot"])
    headers: dict[tuple[int, int], tuple[bytes, bytes]] = {}
    out = []
    for lon_i, lat_i, epsg, ox, oy, h, w in zip(*job["cells"]):
        name = tile_name(lon_i / 100.0, lat_i / 100.0)
        if (h, w) not in headers:
            headers[(h, w)] = (npy_header("|i1", (h, w, 128)), npy_header("<f4", (h, w)))
        emb, sc = headers[(h, w)]
        for year in job["years"]:
            d = yroot / str(year) / name
            d.mkdir(parents=True, exist_ok=True)
            _write_sparse(d / f"{name}.npy", emb, len(emb) + h * w * 128)
            _write_sparse(d / f"{name}_scales.npy", sc, len(sc) + h * w * 4)
        out.append(_landmask(lroot / f"{name}.tiff", epsg, ox, oy, h, w) if job["landmasks"] else (0, ""))
    return out


def make_scale_archive(root: Path, tile_years: int, years: list[int], *, layout: str = "local",
                       dataset_version: str = "1.1", registry_paths: str = "foreign",
                       landmask_registry: str = "parquet", registries: bool = True, landmasks: bool = True,
                       workers: int = 2) -> dict:
    """Write the archive; returns what was written."""
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root}: not empty")
    n_cells = max(1, tile_years // len(years))
    lon_i, lat_i = cells_for(n_cells)
    fp = footprints(lon_i, lat_i)
    dataset = f"v{dataset_version.removesuffix('.0')}"
    yroot, lroot = year_root(root, layout, dataset), landmask_root(root, layout, "v1")
    yroot.mkdir(parents=True)
    if landmasks:
        lroot.mkdir(parents=True)
    columns = [lon_i, lat_i, fp.epsg, fp.origin_x, fp.origin_y, fp.height, fp.width]
    step = max(1, -(-n_cells // (workers * 16)))
    jobs = [{"yroot": str(yroot), "lroot": str(lroot), "years": years, "landmasks": landmasks,
             "cells": [c[a:a + step].tolist() for c in columns]} for a in range(0, n_cells, step)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        masks = [m for part in pool.map(_write_cells, jobs) for m in part]
    if layout == "local":
        write_dataset_metadata(root, dataset_version)
    if registries:
        _registries(root, yroot, lroot, years, lon_i, lat_i, fp, masks if landmasks else None, dataset_version,
                    registry_paths, landmask_registry)
    return {"root": str(root), "layout": layout, "tile_years": n_cells * len(years), "cells": n_cells,
            "years": years, "landmasks": n_cells if landmasks else 0, "registry_paths": registry_paths,
            "landmask_registry": landmask_registry, "dataset_version": dataset_version}


def _registries(root: Path, yroot: Path, lroot: Path, years: list[int], lon_i: np.ndarray, lat_i: np.ndarray, fp,
                masks: list[tuple[int, str]] | None, version: str, form: str, landmask_registry: str) -> None:
    """manifest.parquet (paths in `form`), and landmasks.parquet plus SHA256SUM beside the landmasks."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = len(lon_i)
    cell_names = [tile_name(a / 100.0, b / 100.0) for a, b in zip(lon_i.tolist(), lat_i.tolist())]
    emb_size = 128 + fp.height.astype(np.int64) * fp.width * 128
    sc_size = 128 + fp.height.astype(np.int64) * fp.width * 4
    paths = RegistryPaths(form, root, yroot, lroot)
    year_col = np.repeat(np.array(years, np.int32), n)
    names_col = cell_names * len(years)
    pq.write_table(pa.table({
        "version": pa.array([version] * (n * len(years))),
        "variant": pa.array(["vultr"] * (n * len(years))),
        "year": year_col,
        "lon": np.tile(lon_i / 100.0, len(years)),
        "lat": np.tile(lat_i / 100.0, len(years)),
        "directory": [paths.tile(f"{y}/{c}") for y, c in zip(year_col.tolist(), names_col)],
        "grid_path": [paths.tile(f"{y}/{c}/{c}.npy") for y, c in zip(year_col.tolist(), names_col)],
        "scales_path": [paths.tile(f"{y}/{c}/{c}_scales.npy") for y, c in zip(year_col.tolist(), names_col)],
        "grid_mtime": np.zeros(n * len(years)),
        "scales_mtime": np.zeros(n * len(years)),
        "grid_size": np.tile(emb_size, len(years)),
        "scales_size": np.tile(sc_size, len(years)),
        "lon_i": np.tile(lon_i.astype(np.int32), len(years)),
        "lat_i": np.tile(lat_i.astype(np.int32), len(years)),
    }), root / "manifest.parquet")
    if masks is None:
        return
    sizes = np.array([m[0] for m in masks], np.int64)
    hashes = [m[1] for m in masks]
    (lroot / "SHA256SUM").write_text("".join(f"{h}  {c}.tiff\n" for h, c in zip(hashes, cell_names)))
    if landmask_registry == "keyless":
        table = {"lat": lat_i / 100.0, "lon": lon_i / 100.0, "hash": hashes, "file_size": sizes}
    else:
        table = {"lon": lon_i / 100.0, "lat": lat_i / 100.0, "file_size": sizes, "mtime": np.zeros(n),
                 "key": [paths.landmask(f"{c}.tiff") for c in cell_names], "lon_i": lon_i.astype(np.int32),
                 "lat_i": lat_i.astype(np.int32)}
    pq.write_table(pa.table(table), root / "landmasks.parquet")


def _years(text: str) -> list[int]:
    a, _, b = text.partition("-")
    return list(range(int(a), int(b or a) + 1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 2)[2],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", help="output directory (must be missing or empty)")
    ap.add_argument("--tile-years", type=int, required=True, metavar="N", help="tile-years to write (rounded down "
                    "to whole cells x years)")
    ap.add_argument("--years", type=_years, default=_years("2017-2025"), metavar="A-B", help="default 2017-2025")
    ap.add_argument("--layout", choices=LAYOUTS, default="local", help="default local")
    ap.add_argument("--dataset-version", default="1.1", help="default 1.1")
    ap.add_argument("--registry-paths", choices=REGISTRY_PATHS, default="foreign",
                    help="how manifest.parquet and landmasks.parquet name files (default foreign: another "
                    "machine's mount)")
    ap.add_argument("--landmask-registry", choices=LANDMASK_REGISTRIES, default="parquet", help="default parquet")
    ap.add_argument("--no-registries", action="store_true", help="write no registries")
    ap.add_argument("--no-landmasks", action="store_true", help="write no landmasks")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: every core)")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        report = make_scale_archive(Path(args.root), args.tile_years, args.years, layout=args.layout,
                                    dataset_version=args.dataset_version, registry_paths=args.registry_paths,
                                    landmask_registry=args.landmask_registry, registries=not args.no_registries,
                                    landmasks=not args.no_landmasks, workers=args.workers)
    except (ValueError, FileExistsError) as e:
        print(f"make_scale_archive: {e}", file=sys.stderr)
        return 2
    report["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(report, indent=2) if args.json else
          f"{report['root']}: {report['tile_years']} tile-years ({report['cells']} cells x {len(report['years'])} "
          f"years), {report['landmasks']} landmasks, in {report['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
