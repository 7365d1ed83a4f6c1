"""`convert` writes exactly what the placement rules say: every pixel of every tile, checked exhaustively
against an independent implementation of docs/format.md ("Placing tiles", "Layout"), and read identically by
tensorstore."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
import zarr

from transcode.cli import main
from transcode.format.grid import footprint, parse_tile_name
from transcode.testing.synthetic import make_legacy_archive

YEARS = (2023, 2024)
SHARD = 1024


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """The 'small' preset (overlaps, both hemispheres, across the zone 30/31 boundary), two years."""
    base = tmp_path_factory.mktemp("conv")
    rep = make_legacy_archive(base / "archive", years=YEARS, preset="small", seed=11)
    store = base / "store"
    rc = main(["convert", rep.root, str(store), "--shard-size", str(SHARD), "--no-progress", "--workers", "2"])
    assert rc == 0
    return rep, store


def _tiles(rep):
    root = Path(rep.root) / "global_0.1_degree_representation"
    out = []
    for year in rep.years:
        for name in rep.tiles:
            d = root / str(year) / name
            out.append((year, name, d / f"{name}.npy", d / f"{name}_scales.npy"))
    return out


def _landmask(rep, name):
    p = Path(rep.root) / "global_0.1_degree_tiff_all" / f"{name}.tiff"
    with rasterio.open(p) as ds:
        return ds.read(1)


def _expected_grid(tile_names, zone):
    """Zone grid origin by the union rule, written out independently of transcode.format.grid.zone_grid."""
    fps = [footprint(parse_tile_name(n)) for n in tile_names]
    fps = [f for f in fps if f.zone == zone]
    north = lambda f: f.origin_y - (10_000_000 if f.epsg >= 32700 else 0)  # noqa: E731
    ox = math.floor(min(f.origin_x for f in fps) / 10) * 10
    oy = math.ceil(max(north(f) for f in fps) / 10) * 10
    right = math.ceil(max(f.origin_x + 10 * f.width for f in fps) / 10) * 10
    bottom = math.floor(min(north(f) - 10 * f.height for f in fps) / 10) * 10
    h, w = (oy - bottom) // 10, (right - ox) // 10
    return ox, oy, -(-h // SHARD) * SHARD, -(-w // SHARD) * SHARD


def _offset(name, ox, oy):
    f = footprint(parse_tile_name(name))
    north = f.origin_y - (10_000_000 if f.epsg >= 32700 else 0)
    return math.floor((oy - north) / 10), math.floor((f.origin_x - ox) / 10), f


def _expected_region(rep, zone, year, ox, oy, r0, r1, c0, c1):
    """Paint every tile of (zone, year) overlapping the region in (lat_i, lon_i) order: later wins."""
    emb = np.zeros((128, r1 - r0, c1 - c0), np.int8)
    sc = np.full((r1 - r0, c1 - c0), np.inf, np.float32)
    names = sorted(rep.tiles, key=lambda n: (parse_tile_name(n).lat_i, parse_tile_name(n).lon_i))
    for name in names:
        row, col, f = _offset(name, ox, oy)
        if f.zone != zone:
            continue
        d = Path(rep.root) / "global_0.1_degree_representation" / str(year) / name
        e = np.load(d / f"{name}.npy")
        s = np.load(d / f"{name}_scales.npy").copy()
        h, w = s.shape
        a, b = max(row, r0), min(row + h, r1)
        c, dd = max(col, c0), min(col + w, c1)
        if a >= b or c >= dd:
            continue
        with np.errstate(invalid="ignore"):
            s[~((s > 0) & (s < 1))] = np.nan
        s[_landmask(rep, name) == 0] = np.nan
        emb[:, a - r0:b - r0, c - c0:dd - c0] = e[a - row:b - row, c - col:dd - col].transpose(2, 0, 1)
        sc[a - r0:b - r0, c - c0:dd - c0] = s[a - row:b - row, c - col:dd - col]
    return emb, sc


def test_zone_grids_follow_the_union_rule(small):
    rep, store = small
    g = zarr.open_group(str(store), mode="r")
    assert sorted(g.group_keys()) == ["utm30", "utm31"]
    for zone in (30, 31):
        attrs = dict(g[f"utm{zone:02d}"].attrs)
        ox, oy, h, w = _expected_grid(rep.tiles, zone)
        assert attrs["spatial:transform"] == [10.0, 0.0, ox, 0.0, -10.0, oy]
        assert attrs["spatial:shape"] == [h, w]
        assert attrs["proj:code"] == f"EPSG:326{zone}"
        assert g[f"utm{zone:02d}/embeddings"].shape == (2, 128, h, w)
        assert list(g[f"utm{zone:02d}/time"][:]) == list(YEARS)
        x = g[f"utm{zone:02d}/x"][:]
        y = g[f"utm{zone:02d}/y"][:]
        assert x[0] == ox + 5 and x[-1] == ox + 10 * w - 5
        assert y[0] == oy - 5 and y[-1] == oy - 10 * h + 5


def test_every_tile_pixel_has_the_value_the_placement_rules_say(small):
    rep, store = small
    g = zarr.open_group(str(store), mode="r")
    checked = water_px = 0
    tile_px = sum(footprint(parse_tile_name(n)).height * footprint(parse_tile_name(n)).width for n in rep.tiles)
    for zone in (30, 31):
        zg = g[f"utm{zone:02d}"]
        ox, oy = zg.attrs["spatial:transform"][2], zg.attrs["spatial:transform"][5]
        H, W = zg.attrs["spatial:shape"]
        for ti, year in enumerate(YEARS):
            for name in rep.tiles:
                row, col, f = _offset(name, ox, oy)
                if f.zone != zone:
                    continue
                # the tile's box plus a margin, so fill values around tiles are checked too
                r0, r1 = max(0, row - 40), min(H, row + f.height + 40)
                c0, c1 = max(0, col - 40), min(W, col + f.width + 40)
                emb, sc = _expected_region(rep, zone, year, ox, oy, r0, r1, c0, c1)
                got_e = zg["embeddings"][ti, :, r0:r1, c0:c1]
                got_s = zg["scales"][ti, r0:r1, c0:c1]
                assert np.array_equal(got_e, emb), (zone, year, name)
                assert np.array_equal(got_s, sc, equal_nan=True), (zone, year, name)
                checked += got_s.size
                water_px += int(np.isnan(sc).sum())
    assert checked >= len(YEARS) * tile_px and water_px > 10_000


def test_overlaps_resolve_later_tile_wins(small):
    """North-south neighbours overlap; the pixel there comes from the later tile in (lat_i, lon_i) order."""
    rep, store = small
    g = zarr.open_group(str(store), mode="r")
    zg = g["utm30"]
    ox, oy = zg.attrs["spatial:transform"][2], zg.attrs["spatial:transform"][5]
    lower, upper = "grid_-0.05_83.85", "grid_-0.05_83.95"  # upper has the larger lat_i: it wins
    r_lo, c_lo, f_lo = _offset(lower, ox, oy)
    r_up, c_up, f_up = _offset(upper, ox, oy)
    overlap_rows = range(max(r_lo, r_up), min(r_lo + f_lo.height, r_up + f_up.height))
    assert len(overlap_rows) >= 1, "the synthetic neighbours must overlap"
    d = Path(rep.root) / "global_0.1_degree_representation" / "2024"
    up = np.load(d / upper / f"{upper}.npy")
    lo = np.load(d / lower / f"{lower}.npy")
    r = overlap_rows[0]
    cols = range(max(c_lo, c_up), min(c_lo + f_lo.width, c_up + f_up.width))
    got = zg["embeddings"][1, :, r, cols.start:cols.stop].T
    want_up = up[r - r_up, cols.start - c_up:cols.stop - c_up]
    want_lo = lo[r - r_lo, cols.start - c_lo:cols.stop - c_lo]
    assert np.array_equal(got, want_up) and not np.array_equal(got, want_lo)


def test_only_shards_with_tiles_exist_and_the_manifest_lists_every_object(small):
    rep, store = small
    import pyarrow.parquet as pq

    files = {p.relative_to(store).as_posix() for p in store.rglob("*") if p.is_file()}
    zarr_objects = {f for f in files if not f.startswith(".tessera/")}
    manifest = pq.read_table(store / ".tessera" / "manifest.parquet").to_pylist()
    assert {r["key"] for r in manifest} == zarr_objects
    import hashlib

    for r in manifest:
        data = (store / r["key"]).read_bytes()
        assert len(data) == r["size"] and hashlib.md5(data).hexdigest() == r["md5"]
    shards = {f for f in zarr_objects if "/embeddings/c/" in f}
    expected = set()
    g = zarr.open_group(str(store), mode="r")
    for zone in (30, 31):
        zg = g[f"utm{zone:02d}"]
        ox, oy = zg.attrs["spatial:transform"][2], zg.attrs["spatial:transform"][5]
        for ti in range(len(YEARS)):
            for name in rep.tiles:
                row, col, f = _offset(name, ox, oy)
                if f.zone != zone:
                    continue
                for sr in range(row // SHARD, (row + f.height - 1) // SHARD + 1):
                    for sc in range(col // SHARD, (col + f.width - 1) // SHARD + 1):
                        expected.add(f"utm{zone}/embeddings/c/{ti}/0/{sr}/{sc}")
    assert shards == expected


def test_root_metadata_is_consolidated_and_carries_the_conventions(small):
    _, store = small
    root = json.loads((store / "zarr.json").read_text())
    attrs = root["attributes"]
    assert attrs["geoemb:type"] == "pixel" and attrs["geoemb:dimensions"] == 128
    assert attrs["geoemb:quantization"]["scale"] == {"type": "array", "array_name": "scales", "nodata": "+inf"}
    uuids = {c["uuid"] for c in attrs["zarr_conventions"]}
    assert "61c12cc5-0e28-4056-999a-480cf3fb7e4c" in uuids
    nodes = root["consolidated_metadata"]["metadata"]
    for key, node in nodes.items():
        on_disk = json.loads((store / key / "zarr.json").read_text())
        node = {k: v for k, v in node.items() if k != "consolidated_metadata"}  # zarr-python nests an empty one
        assert on_disk == node, key
    assert not any(k.startswith("geoemb:") for k in nodes["utm30"]["attributes"])


def test_tensorstore_reads_what_zarr_python_reads(small):
    import tensorstore as ts
    rep, store = small
    g = zarr.open_group(str(store), mode="r")
    for path in ("utm30/embeddings", "utm31/embeddings", "utm30/scales", "utm31/scales", "utm30/y", "utm31/x"):
        arr = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(store / path)}}).result()
        z = g[path]
        assert tuple(arr.shape) == z.shape and arr.dtype.numpy_dtype == z.dtype
        if z.ndim == 1:
            assert np.array_equal(arr.read().result(), z[:])
            continue
        zone = path.split("/")[0]
        zg = g[zone]
        ox, oy = zg.attrs["spatial:transform"][2], zg.attrs["spatial:transform"][5]
        for name in rep.tiles:
            row, col, f = _offset(name, ox, oy)
            if f"utm{f.zone}" != zone:
                continue
            H, W = z.shape[-2:]
            sl = (slice(max(0, row - 8), min(H, row + f.height + 8)), slice(max(0, col - 8), min(W, col + f.width + 8)))
            idx = (1, slice(None)) + sl if z.ndim == 4 else (1,) + sl
            a = arr[idx].read().result()
            b = z[idx]
            assert np.array_equal(a, b, equal_nan=True), (path, name)


def test_default_layout_on_tiny_with_demo(tmp_path, capsys):
    rc = main(["demo", str(tmp_path / "d"), "--json", "--no-progress"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0
    store = Path(doc["store"])
    z = zarr.open_group(str(store), mode="r")
    meta = json.loads((store / "utm31" / "embeddings" / "zarr.json").read_text())
    shard = meta["codecs"][0]["configuration"]
    assert meta["chunk_grid"]["configuration"]["chunk_shape"] == [1, 128, 4096, 4096]
    assert shard["chunk_shape"] == [1, 128, 32, 32]
    assert shard["codecs"][1] == {"name": "blosc", "configuration": {"typesize": 1, "cname": "zstd", "clevel": 3,
                                                                     "shuffle": "bitshuffle", "blocksize": 0}}
    assert [c["name"] for c in shard["index_codecs"]] == ["bytes", "crc32c"]
    assert z["utm31/scales"].fill_value == np.inf
