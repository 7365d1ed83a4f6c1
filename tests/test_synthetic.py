"""The synthetic legacy archive generator (transcode.testing.synthetic) and its CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from transcode.format.grid import footprint, parse_tile_name
from transcode.testing import synthetic as S

REPO = Path(__file__).resolve().parents[1]
TINY = S.PRESETS["tiny"]
YEAR_ROOT = "global_0.1_degree_representation"
LM_ROOT = "global_0.1_degree_tiff_all"


def _hw(name: str) -> tuple[int, int]:
    fp = footprint(parse_tile_name(name))
    return fp.height, fp.width


def _all_files(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): S.sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, S.ArchiveReport]:
    root = tmp_path_factory.mktemp("tiny") / "archive"
    return root, S.make_legacy_archive(root, preset="tiny", years=(2024,))


# ------------------------------------------------------------------ API surface


def test_presets_and_faults_declared():
    assert set(S.PRESETS) >= {"tiny", "small", "medium"}
    assert len(S.PRESETS["tiny"]) == 3 and len(S.PRESETS["small"]) <= 8
    assert set(S.FAULTS) == {
        "truncated", "missing-scales", "missing-embeddings", "shape-mismatch", "footprint-mismatch",
        "fortran-order", "wrong-dtype", "bad-magic", "bad-bands", "corrupt-bytes", "corrupt-landmask",
    }
    small = [parse_tile_name(n) for n in S.PRESETS["small"]]
    assert any(t.lat_i > 0 for t in small) and any(t.lat_i < 0 for t in small)
    keys = {(t.lon_i, t.lat_i) for t in small}
    assert any((5, lat) in keys for lon, lat in keys if lon == -5)  # E-W pair across zones 30/31
    assert any(footprint(t).zone == 30 for t in small) and any(footprint(t).zone == 31 for t in small)
    assert any((lon, lat - 10) in keys for lon, lat in keys)  # N-S pair
    for n in S.PRESETS["small"]:
        h, w = _hw(n)
        assert 20e6 <= h * w * 128 <= 40e6


def test_unknown_fault_lists_valid_ones(tmp_path):
    with pytest.raises(ValueError, match="corrupt-bytes"):
        S.make_legacy_archive(tmp_path / "a", preset="tiny", faults=["nope"])
    with pytest.raises(ValueError, match="both target"):
        S.make_legacy_archive(
            tmp_path / "b", preset="tiny", faults=[("truncated", TINY[0], 2024), ("bad-magic", TINY[0], 2024)]
        )
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


# ------------------------------------------------------------------ content


def test_report_and_layout(tiny):
    root, rep = tiny
    assert rep.layout == "local" and rep.years == [2024] and rep.faults == []
    assert sorted(rep.tiles) == sorted(TINY)
    files = _all_files(root)
    assert rep.files == len(files)
    assert rep.bytes == sum((root / f).stat().st_size for f in files)
    for name in TINY:
        assert (root / YEAR_ROOT / "2024" / name / f"{name}.npy").is_file()
        assert (root / YEAR_ROOT / "2024" / name / f"{name}_scales.npy").is_file()
        assert (root / LM_ROOT / f"{name}.tiff").is_file()


def test_shapes_dtypes_order_and_headers(tiny):
    root, _ = tiny
    for name in TINY:
        h, w = _hw(name)
        d = root / YEAR_ROOT / "2024" / name
        emb = np.load(d / f"{name}.npy")
        sc = np.load(d / f"{name}_scales.npy")
        assert emb.shape == (h, w, 128) and emb.dtype == np.int8 and emb.flags.c_contiguous
        assert sc.shape == (h, w) and sc.dtype == np.float32 and sc.flags.c_contiguous
        for f in (d / f"{name}.npy", d / f"{name}_scales.npy"):
            raw = f.read_bytes()[:128]
            assert raw[:8] == b"\x93NUMPY\x01\x00" and raw[127:128] == b"\n"  # format 1.0, 128-byte header
        assert f.stat().st_size == 128 + h * w * 4
        # round trip against the public generators
        assert np.array_equal(emb, S.tile_embeddings(name, 2024))
        assert np.array_equal(sc, S.tile_scales(name, 2024), equal_nan=True)


def test_embeddings_realistic():
    a = S.tile_embeddings(TINY[0], 2024)
    b = S.tile_embeddings(TINY[0], 2025)
    c = S.tile_embeddings(TINY[1], 2024)
    assert a.min() <= -110 and a.max() >= 110 and a.std() > 25
    assert not np.array_equal(a, b) and not np.array_equal(a[:, : c.shape[1]], c)
    band = a[:, :, 7].astype(np.float64)
    assert np.corrcoef(band[:-1].ravel(), band[1:].ravel())[0, 1] > 0.9  # spatially correlated
    assert np.corrcoef(band[:, :-1].ravel(), band[:, 1:].ravel())[0, 1] > 0.9


def test_scales_median_and_invalid(tiny):
    root, _ = tiny
    for name in TINY:
        sc = np.load(root / YEAR_ROOT / "2024" / name / f"{name}_scales.npy")
        valid = np.isfinite(sc) & (sc > 0) & (sc < 1.0)
        assert abs(float(np.median(sc[valid])) / 0.064 - 1) < 0.2
        with np.errstate(invalid="ignore"):
            assert np.isnan(sc).sum() >= 1
            assert (sc < 0).sum() >= 1
            assert (sc == 0).sum() >= 1
            assert (np.isfinite(sc) & (sc >= 1e29)).sum() >= 1
        assert 5 <= (~valid).sum() <= 50  # a handful, not a flood


def test_landmasks(tiny):
    import rasterio

    root, _ = tiny
    mixed = 0
    for name in TINY:
        fp = footprint(parse_tile_name(name))
        with rasterio.open(root / LM_ROOT / f"{name}.tiff") as src:
            assert src.count == 1 and src.dtypes[0] == "uint8"
            assert (src.height, src.width) == (fp.height, fp.width)
            assert src.crs.to_epsg() == fp.epsg
            assert tuple(src.transform)[:6] == pytest.approx(fp.transform)
            assert src.profile.get("compress", "").lower() == "deflate"
            m = src.read(1)
        assert set(np.unique(m)) <= {0, 1}
        mixed += set(np.unique(m)) == {0, 1}
    assert mixed >= 1


def test_landmasks_consistent_across_zone_boundary():
    """The coastline is geography: overlapping tiles in zones 30 and 31 agree on land/water."""
    from pyproj import Transformer

    a, b = parse_tile_name("grid_-0.05_83.95"), parse_tile_name("grid_0.05_83.95")
    ma, mb = S.tile_landmask(a), S.tile_landmask(b)
    fa, fb = footprint(a), footprint(b)
    rng = np.random.default_rng(1)
    rows, cols = rng.integers(0, fa.height, 2000), rng.integers(0, fa.width, 2000)
    xa, ya = fa.origin_x + (cols + 0.5) * 10, fa.origin_y - (rows + 0.5) * 10
    xb, yb = Transformer.from_crs(fa.epsg, fb.epsg, always_xy=True).transform(xa, ya)
    cb, rb = np.floor((xb - fb.origin_x) / 10).astype(int), np.floor((fb.origin_y - yb) / 10).astype(int)
    inside = (cb >= 0) & (cb < fb.width) & (rb >= 0) & (rb < fb.height)
    assert inside.sum() > 20  # the footprints overlap
    agree = ma[rows[inside], cols[inside]] == mb[rb[inside], cb[inside]]
    assert agree.mean() > 0.97  # only pixels right on the coast can differ


# ------------------------------------------------------------------ registries


def test_registries_match_files(tiny):
    root, _ = tiny
    yr, lr = root / YEAR_ROOT, root / LM_ROOT
    npys = sorted(p.relative_to(yr).as_posix() for p in yr.rglob("*.npy"))
    lines = (root / "registry" / "embeddings_2024.txt").read_text().splitlines()
    reg = dict(line.split(" ") for line in lines)
    assert sorted(reg) == npys
    for rel, h in reg.items():
        assert S.sha256_file(yr / rel) == h
    lm = dict(line.split(" ") for line in (root / "registry" / "landmasks.txt").read_text().splitlines())
    assert sorted(lm) == sorted(f"{n}.tiff" for n in TINY)
    for rel, h in lm.items():
        assert S.sha256_file(lr / rel) == h
    sums = [line.split("  ") for line in (yr / "SHA256SUMS").read_text().splitlines()]
    assert sorted(p for _, p in sums) == npys
    for h, rel in sums:
        assert S.sha256_file(yr / rel) == h
    for name in TINY:
        d = yr / "2024" / name
        entries = [line.split("  ") for line in (d / "SHA256").read_text().splitlines()]
        assert sorted(p for _, p in entries) == sorted([f"{name}.npy", f"{name}_scales.npy"])
        for h, rel in entries:
            assert S.sha256_file(d / rel) == h

    r = pq.read_table(root / "registry.parquet")
    assert r.column_names == [
        "lat", "lon", "year", "hash", "scales_hash", "mtime", "file_size", "scales_size", "lon_i", "lat_i",
    ]
    assert [str(t) for t in r.schema.types] == [
        "double", "double", "int32", "string", "string", "double", "int64", "int64", "int32", "int32",
    ]
    rows = r.to_pylist()
    order = [(x["year"], x["lat_i"], x["lon_i"]) for x in rows]
    assert order == sorted(order)
    for x in rows:
        name = f"grid_{x['lon']:.2f}_{x['lat']:.2f}"
        assert (x["lon_i"], x["lat_i"]) == (round(x["lon"] * 100), round(x["lat"] * 100))
        emb, sc = yr / "2024" / name / f"{name}.npy", yr / "2024" / name / f"{name}_scales.npy"
        assert x["hash"] == S.sha256_file(emb) and x["scales_hash"] == S.sha256_file(sc)
        assert x["file_size"] == emb.stat().st_size and x["scales_size"] == sc.stat().st_size
        assert x["mtime"] == emb.stat().st_mtime

    m = pq.read_table(root / "manifest.parquet")
    assert m.column_names == [
        "version", "variant", "year", "lon", "lat", "directory", "grid_path", "scales_path",
        "grid_mtime", "scales_mtime", "grid_size", "scales_size", "lon_i", "lat_i",
    ]
    for x in m.to_pylist():
        assert x["version"] == "1.0" and x["variant"] == "vultr"
        assert (yr / x["directory"]).is_dir()
        assert (yr / x["grid_path"]).stat().st_size == x["grid_size"]
        assert (yr / x["scales_path"]).stat().st_size == x["scales_size"]
        assert x["directory"] == f"{x['year']}/grid_{x['lon']:.2f}_{x['lat']:.2f}"

    lmt = pq.read_table(root / "landmasks.parquet")
    assert lmt.column_names == ["lon", "lat", "file_size", "mtime", "key", "lon_i", "lat_i"]
    for x in lmt.to_pylist():
        assert (lr / x["key"]).stat().st_size == x["file_size"]
        assert x["mtime"] == (lr / x["key"]).stat().st_mtime


# ------------------------------------------------------------------ determinism


def test_deterministic(tiny, tmp_path):
    root, rep = tiny
    rep2 = S.make_legacy_archive(tmp_path / "again", preset="tiny", years=(2024,))
    assert _all_files(root) == _all_files(tmp_path / "again")
    assert (rep.files, rep.bytes, rep.tiles) == (rep2.files, rep2.bytes, rep2.tiles)
    for rel in _all_files(root):
        assert (root / rel).stat().st_mtime == (tmp_path / "again" / rel).stat().st_mtime
    other = S.tile_embeddings(TINY[0], 2024, seed=1)
    assert not np.array_equal(other, S.tile_embeddings(TINY[0], 2024))


# ------------------------------------------------------------------ other layouts and modes


def test_object_layout(tmp_path):
    root = tmp_path / "obj"
    rep = S.make_legacy_archive(
        root, tiles=TINY[:2], layout="object", dataset="v2", landmask_version="lm3", landmasks="ones"
    )
    assert rep.layout == "object" and rep.tiles == TINY[:2]
    assert S.year_root(root, "object", "v2") == root / "npy" / "v2"
    for name in TINY[:2]:
        assert (root / "npy" / "v2" / "2024" / name / f"{name}.npy").is_file()
        assert (root / "npy" / "v2" / "2024" / name / f"{name}_scales.npy").is_file()
        assert (root / "npy" / "v2" / "2024" / name / "SHA256").is_file()
        tif = root / "landmasks" / "lm3" / f"{name}.tiff"
        import rasterio

        with rasterio.open(tif) as src:
            assert (src.read(1) == 1).all()
    assert (root / "npy" / "v2" / "SHA256SUMS").is_file()
    assert not (root / YEAR_ROOT).exists() and not (root / LM_ROOT).exists()
    m = pq.read_table(root / "manifest.parquet").to_pylist()
    assert {(x["version"], x["variant"]) for x in m} == {("2.0", "vultr")}
    assert all((root / "npy" / "v2" / x["grid_path"]).is_file() for x in m)
    lms = pq.read_table(root / "landmasks.parquet").to_pylist()
    assert all((root / "landmasks" / "lm3" / x["key"]).is_file() for x in lms)


def test_no_landmasks_no_registries(tmp_path):
    root = tmp_path / "bare"
    rep = S.make_legacy_archive(root, tiles=TINY[:1], landmasks="none", registries=False)
    assert not list(root.rglob("*.tiff"))
    assert not (root / LM_ROOT).exists()
    names = sorted(p.name for p in root.rglob("*") if p.is_file())
    assert names == sorted([f"{TINY[0]}.npy", f"{TINY[0]}_scales.npy", "tessera_metadata.json"]) and rep.files == 3
    with pytest.raises(ValueError, match="landmasks"):
        S.make_legacy_archive(tmp_path / "x", tiles=TINY[:1], landmasks="none", faults=["corrupt-landmask"])


def test_existing_nonempty_root_refused(tmp_path):
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError):
        S.make_legacy_archive(tmp_path, tiles=TINY[:1], registries=False)


# ------------------------------------------------------------------ faults

YEARS4 = (2022, 2023, 2024, 2025)


@pytest.fixture(scope="module")
def faulty(tmp_path_factory):
    root = tmp_path_factory.mktemp("faulty") / "archive"
    rep = S.make_legacy_archive(root, preset="tiny", years=YEARS4, faults=list(S.FAULTS))
    return root, rep


def _registry(root: Path) -> dict[str, dict]:
    out = {}
    for x in pq.read_table(root / "registry.parquet").to_pylist():
        name = f"grid_{x['lon']:.2f}_{x['lat']:.2f}"
        out[f"{YEAR_ROOT}/{x['year']}/{name}/{name}.npy"] = {"hash": x["hash"], "size": x["file_size"]}
        out[f"{YEAR_ROOT}/{x['year']}/{name}/{name}_scales.npy"] = {"hash": x["scales_hash"], "size": x["scales_size"]}
    for x in pq.read_table(root / "landmasks.parquet").to_pylist():
        out[f"{LM_ROOT}/{x['key']}"] = {"size": x["file_size"]}
    return out


def test_faults_spread_over_tiles(faulty):
    _, rep = faulty
    assert [f.fault for f in rep.faults] == list(S.FAULTS)
    slots = [(f.tile, f.year, f.path) for f in rep.faults]
    assert len(set(slots)) == len(slots)
    assert {f.tile for f in rep.faults} == set(TINY)  # every tile used before any is reused
    first3 = [f.tile for f in rep.faults[:3]]
    assert len(set(first3)) == 3
    lm = [f for f in rep.faults if f.fault == "corrupt-landmask"]
    assert lm[0].year == 0 and lm[0].path == f"{LM_ROOT}/{lm[0].tile}.tiff"


def test_each_fault_has_its_defect(faulty):
    import rasterio
    from rasterio.errors import RasterioIOError

    root, rep = faulty
    reg = _registry(root)
    by = {f.fault: f for f in rep.faults}
    assert all(f.path in reg for f in rep.faults)

    def paths(f):
        d = root / YEAR_ROOT / str(f.year) / f.tile
        return d / f"{f.tile}.npy", d / f"{f.tile}_scales.npy", _hw(f.tile)

    f = by["truncated"]
    emb, sc, (h, w) = paths(f)
    assert f.path.endswith(f"{f.tile}.npy") and emb.stat().st_size < reg[f.path]["size"]
    with pytest.raises(ValueError):
        np.load(emb)

    f = by["missing-scales"]
    emb, sc, _ = paths(f)
    assert not sc.exists() and emb.exists() and f.path.endswith("_scales.npy")

    f = by["missing-embeddings"]
    emb, sc, _ = paths(f)
    assert not emb.exists() and sc.exists() and f.path.endswith(f"{f.tile}.npy")

    f = by["shape-mismatch"]
    emb, sc, (h, w) = paths(f)
    assert f.path.endswith("_scales.npy")
    assert np.load(sc).shape == (h - 1, w) and np.load(emb, mmap_mode="r").shape == (h, w, 128)

    f = by["footprint-mismatch"]
    emb, sc, (h, w) = paths(f)
    assert np.load(emb, mmap_mode="r").shape == (h + 3, w, 128) and np.load(sc).shape == (h + 3, w)
    assert S.sha256_file(emb) != reg[f.path]["hash"]

    f = by["fortran-order"]
    emb, sc, (h, w) = paths(f)
    a = np.load(emb)
    assert a.shape == (h, w, 128) and a.flags.f_contiguous and not a.flags.c_contiguous
    assert b"'fortran_order': True" in emb.read_bytes()[:128]
    assert emb.stat().st_size == reg[f.path]["size"] and S.sha256_file(emb) != reg[f.path]["hash"]
    assert np.array_equal(a, S.tile_embeddings(f.tile, f.year))

    f = by["wrong-dtype"]
    emb, sc, (h, w) = paths(f)
    s = np.load(sc)
    assert f.path.endswith("_scales.npy") and s.dtype == np.float64 and s.shape == (h, w)

    f = by["bad-magic"]
    emb, sc, _ = paths(f)
    assert emb.stat().st_size == reg[f.path]["size"] and emb.read_bytes()[:6] != b"\x93NUMPY"
    with pytest.raises(ValueError):
        np.load(emb)

    f = by["bad-bands"]
    emb, sc, (h, w) = paths(f)
    assert np.load(emb, mmap_mode="r").shape == (h, w, 64)

    f = by["corrupt-bytes"]
    emb, sc, (h, w) = paths(f)
    assert emb.stat().st_size == reg[f.path]["size"] and S.sha256_file(emb) != reg[f.path]["hash"]
    a = np.load(emb)
    assert a.shape == (h, w, 128) and a.dtype == np.int8 and a.flags.c_contiguous
    assert (a != S.tile_embeddings(f.tile, f.year)).sum() == 1

    f = by["corrupt-landmask"]
    tif = root / f.path
    assert tif.stat().st_size == reg[f.path]["size"]
    lm_hash = dict(l.split(" ") for l in (root / "registry" / "landmasks.txt").read_text().splitlines())
    assert S.sha256_file(tif) != lm_hash[tif.name]
    with pytest.raises(RasterioIOError):
        rasterio.open(tif).close()

    # Everything not faulted still matches the registries.
    bad = {f.path for f in rep.faults}
    fm = by["footprint-mismatch"]
    bad.add(f"{YEAR_ROOT}/{fm.year}/{fm.tile}/{fm.tile}_scales.npy")  # both files of that tile change
    for rel, x in reg.items():
        if rel not in bad and "hash" in x:
            assert S.sha256_file(root / rel) == x["hash"], rel


def test_explicit_fault_targets(tmp_path):
    rep = S.make_legacy_archive(
        tmp_path / "a", tiles=TINY[:2], registries=False, landmasks="none",
        faults=[("corrupt-bytes", TINY[1]), ("truncated", TINY[1], 2024), "missing-scales"],
        years=(2023, 2024),
    )
    got = [(f.fault, f.tile, f.year) for f in rep.faults]
    assert got[0] == ("corrupt-bytes", TINY[1], 2023)
    assert got[1] == ("truncated", TINY[1], 2024)
    assert got[2][1] == TINY[0]  # the auto-placed fault goes to the tile with no fault yet


# ------------------------------------------------------------------ CLI


def test_cli_json_and_help(tmp_path):
    tool = REPO / "tools" / "make_legacy_archive.py"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    h = subprocess.run([sys.executable, str(tool), "--help"], capture_output=True, text=True, env=env)
    assert h.returncode == 0 and "corrupt-landmask" in h.stdout and "tiny" in h.stdout
    r = subprocess.run(
        [sys.executable, str(tool), str(tmp_path / "a"), "--tiles", TINY[0], "--landmasks", "none",
         "--fault", f"bad-bands:{TINY[0]}:2024", "--json"],
        capture_output=True, text=True, env=env,
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["tiles"] == [TINY[0]] and out["faults"][0]["fault"] == "bad-bands"
    assert (tmp_path / "a" / out["faults"][0]["path"]).is_file()
    bad = subprocess.run(
        [sys.executable, str(tool), str(tmp_path / "b"), "--fault", "nope"], capture_output=True, text=True, env=env
    )
    assert bad.returncode != 0 and "truncated" in bad.stderr
