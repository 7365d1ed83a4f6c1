"""Millions of tile-years without a Python object each: footprints for columns of tiles equal the per-tile rule,
the inventory and plan work from table rows, convert starts building shards before later passes are planned, and
the sparse scale generator writes archives the inventory calls clean."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import transcode.engine.convert as convert_module
from transcode.engine.convert import ConvertOptions, convert
from transcode.engine.plan import Plan, make_plan
from transcode.format.grid import TileId, footprint, zone_grid
from transcode.format.tilecolumns import footprints, offsets, zone_grid_of
from transcode.legacy.archive import open_archive
from transcode.legacy.inventory import build_inventory, read_inventory, write_inventory
from transcode.legacy.npyheader import parse_npy_header
from transcode.legacy.tiletable import RowBuffer, canonical_sort, tile_dtype
from transcode.testing.synthetic import make_legacy_archive

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def test_footprints_of_columns_equal_the_per_tile_rule():
    rng = np.random.default_rng(4)
    lon = rng.integers(-1800, 1800, 3000) * 10 + 5
    lat = rng.integers(-840, 840, 3000) * 10 + 5
    lon[:4], lat[:4] = [-17995, 17995, -5, 5], [-8395, 8395, -5, 5]  # the edges of the globe and of zone 30/31
    fp = footprints(lon, lat)
    for i in range(len(lon)):
        f = footprint(TileId(int(lon[i]), int(lat[i])))
        assert (f.zone, f.epsg, f.origin_x, f.origin_y, f.height, f.width) == (
            fp.zone[i], fp.epsg[i], fp.origin_x[i], fp.origin_y[i], fp.height[i], fp.width[i])
    for zone in (1, 30, 31, 60):
        sel = np.flatnonzero(fp.zone == zone)
        tiles = [TileId(int(lon[i]), int(lat[i])) for i in sel]
        grid = zone_grid(zone, tiles, (4096, 4096))
        assert zone_grid_of(zone, fp.take(sel), (4096, 4096)) == grid
        rows, cols = offsets(grid, fp.take(sel))
        assert [grid.offset(footprint(t)) for t in tiles] == list(zip(rows.tolist(), cols.tolist()))


def test_row_buffer_grows_in_place_and_rows_sort_field_by_field():
    buf = RowBuffer(tile_dtype(True), capacity=2)
    rng = np.random.default_rng(0)
    expected = []
    for n in (1, 3, 7, 100):
        part = np.zeros(n, tile_dtype(True))
        part["year"] = rng.integers(2017, 2026, n)
        part["lon_i"], part["lat_i"] = rng.integers(-100, 100, n) * 10 + 5, rng.integers(-80, 80, n) * 10 + 5
        part["embeddings_sha256"] = rng.integers(0, 256, (n, 32))
        buf.extend(part)
        expected.append(part)
    table = buf.finish()
    want = np.concatenate(expected)
    assert len(table) == 111 and (table == want).all()
    canonical_sort(table)
    order = np.lexsort((want["lon_i"], want["lat_i"], want["year"]))
    assert (table == want[order]).all()


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    rep = make_legacy_archive(tmp_path_factory.mktemp("columnar") / "a", years=(2023, 2024), preset="small",
                              seed=9, faults=[("truncated", "grid_0.05_83.85", 2023)])
    return rep.root


def test_plan_from_a_saved_inventory_equals_the_plan_from_the_listing(small, tmp_path):
    inv = build_inventory(open_archive(small), verify_hashes=True)
    write_inventory(inv, tmp_path / "inv.parquet")
    back = read_inventory(tmp_path / "inv.parquet")
    a, b = make_plan(inv, shard=(256, 256), chunk=(32, 32)), make_plan(back, shard=(256, 256), chunk=(32, 32))
    settings = {"x": 1}
    assert [t.fingerprint(settings) for t in a.tasks] == [t.fingerprint(settings) for t in b.tasks]
    assert [(t.zone, t.year, t.shard_row, t.shard_col) for t in a.tasks] == sorted(
        (t.zone, t.year, t.shard_row, t.shard_col) for t in a.tasks)
    assert a.summary() == b.summary() and a.skipped == b.skipped
    assert a.summary()["shards"] == len(a.tasks) and a.summary()["tile_years"] == 13  # 14, one truncated
    for task in a.tasks:  # overlap order: canonical within each shard
        order = [(p.year, p.lat_i, p.lon_i) for p in task.placements]
        assert order == sorted(order)


@pytest.fixture(scope="module")
def saved(small, tmp_path_factory):
    """A saved inventory of the small archive (hashes, a problem) and its row groups' sizes."""
    import pyarrow.parquet as pq

    path = tmp_path_factory.mktemp("saved") / "inv.parquet"
    write_inventory(build_inventory(open_archive(small), verify_hashes=True), path)
    pf = pq.ParquetFile(path)
    return path, pf.read(), [pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups)]


def _edited(saved, tmp_path, column: str, row: int, value):
    """The saved inventory with one value changed, written in the same row groups."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    _, table, groups = saved
    values = table.column(column).to_pylist()
    values[row] = value
    i = table.column_names.index(column)
    table = table.set_column(i, table.schema.field(i), pa.array(values, table.schema.field(i).type))
    out = tmp_path / "edited.parquet"
    with pq.ParquetWriter(out, table.schema) as w:
        start = 0
        for n in groups:
            w.write_table(table.slice(start, n))
            start += n
    return out


# (column, the row: a usable tile, a landmask after the first or a problem, the new value and the message, given
# the row as it was)
DAMAGES = [
    ("year", "tile", lambda r: (12345, "year 12345 is not a year")),
    ("lon_i", "tile", lambda r: (6, f"lon_i=6, lat_i={r['lat_i']} is not a 0.1° tile centre")),
    ("zone", "tile", lambda r: (r["zone"] % 60 + 1,
                                (f"zone {r['zone'] % 60 + 1}, but lon_i={r['lon_i']} lies in zone {r['zone']}"))),
    ("height", "tile", lambda r: (0, f"a usable tile of impossible shape 0x{r['width']}")),
    ("scales_offset", "tile", lambda r: (None, "scales_offset null of a usable tile is not a .npy header's length")),
    ("embeddings_size", "tile",
     lambda r: (1000, "embeddings_size 1000 of a usable tile is less than its header and shape need")),
    ("embeddings_sha256", "tile", lambda r: ("z" * 64, "embeddings_sha256 b'zzzz")),
    ("usable", "tile", lambda r: (None, "no usable flag")),
    ("landmask_size", "landmask", lambda r: (-3, "landmask_size -3 is missing or negative")),
    ("lat_i", "landmask", lambda r: (9005, f"lon_i={r['lon_i']}, lat_i=9005 is not a 0.1° tile centre")),
    ("record", "landmask", lambda r: ("tile", "a 'tile' record in a row group of 'landmask' records")),
    ("problem_severity", "problem", lambda r: ("fatal", "a problem needs its path, kind, message and a severity")),
]


@pytest.mark.parametrize("column, where, damage", DAMAGES, ids=[f"{w}-{c}" for c, w, _ in DAMAGES])
def test_a_damaged_saved_inventory_names_the_file_and_row(saved, tmp_path, column, where, damage):
    from transcode.errors import ArchiveError

    _, table, _ = saved
    rows = table.to_pylist()
    if where == "tile":
        row = next(i for i, r in enumerate(rows) if r["record"] == "tile" and r["usable"])
    else:  # not the first of its row group, so the group's kind is still `where`
        row = [r["record"] for r in rows].index(where) + (where == "landmask")
    assert rows[row]["record"] == where
    value, message = damage(rows[row])
    path = _edited(saved, tmp_path, column, row, value)
    with pytest.raises(ArchiveError) as e:
        read_inventory(path)
    assert str(e.value).startswith(f"{path}: row {row}: {message}"), str(e.value)


def test_a_saved_inventory_with_strings_that_are_not_utf8_or_bad_metadata_is_refused(saved, tmp_path):
    import pyarrow.parquet as pq

    from transcode.errors import ArchiveError

    _, table, groups = saved
    kinds = table.column("record").to_pylist()
    edited = _edited(saved, tmp_path, "problem_message", kinds.index("problem"), "message \u00e9")
    data = edited.read_bytes().replace("message \u00e9".encode(), b"message \xff\xfe")
    edited.write_bytes(data)
    with pytest.raises(ArchiveError, match=rf"{re.escape(str(edited))}: row group {len(groups) - 1} \(from row \d+\): "
                                           "unreadable values"):
        read_inventory(edited)
    meta = json.loads(table.schema.metadata[b"tessera-inventory"])
    for key, bad, said in (("dataset", {"version": "one", "variant": "vultr"}, "dataset: version 'one'"),
                           ("layout", "tree", "lacks or mistypes layout"),
                           ("registries", [1], "lacks or mistypes registries")):
        out = tmp_path / f"{key}.parquet"
        pq.write_table(table.replace_schema_metadata({b"tessera-inventory": json.dumps({**meta, key: bad})}), out)
        with pytest.raises(ArchiveError, match=said) as e:
            read_inventory(out)
        assert str(out) in str(e.value)


def test_convert_builds_the_first_shard_before_the_last_pass_is_planned(small, tmp_path, monkeypatch):
    events = []
    plan_pass, run_task = Plan.pass_tasks, convert_module.run_task

    def planned(self, zone, year):
        events.append("plan")
        return plan_pass(self, zone, year)

    def built(task, job):
        events.append("build")
        return run_task(task, job)

    monkeypatch.setattr(Plan, "pass_tasks", planned)
    monkeypatch.setattr(convert_module, "run_task", built)
    report = convert(small, str(tmp_path / "store"), ConvertOptions(shard=(256, 256), chunk=(32, 32)))
    assert report.shards_written == report.shards_planned > 0
    passes = events.count("plan")
    assert passes >= 4  # two zones x two years
    assert events.index("build") < len(events) - 1 - events[::-1].index("plan")


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=600, check=False)


@pytest.mark.parametrize("paths, landmask_registry", [("foreign", "parquet"), ("s3", "keyless")])
def test_scale_generator_writes_sparse_true_footprints_that_inventory_calls_clean(tmp_path, paths,
                                                                                   landmask_registry):
    root = tmp_path / "scale"
    r = _run(str(TOOLS / "make_scale_archive.py"), str(root), "--tile-years", "1200", "--years", "2023-2025",
             "--registry-paths", paths, "--landmask-registry", landmask_registry, "--workers", "2", "--json")
    assert r.returncode == 0, r.stderr
    made = json.loads(r.stdout)
    assert made["tile_years"] == 1200 and made["cells"] == 400
    npys = sorted(root.rglob("*.npy"))
    assert len(npys) == 2400
    for path in npys[::97]:
        st = path.stat()
        assert st.st_blocks * 512 < st.st_size // 100  # a hole, not data
        with open(path, "rb") as f:
            header = parse_npy_header(f.read(4096))
        assert header.expected_size == st.st_size
        name = path.parent.name
        fp = footprint(TileId(round(float(name.split("_")[1]) * 100), round(float(name.split("_")[2]) * 100)))
        assert header.shape[:2] == (fp.height, fp.width)
    r = _run("-m", "transcode", "inventory", str(root), "--json", "--out", str(tmp_path / "inv.parquet"),
             "--no-progress")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr
    s = json.loads(r.stdout)["summary"]
    assert s["tiles"] == 1200 and s["usable_tiles"] == 1200 and s["landmasks"]["coverage"] == 1.0
    assert s["dataset"]["version"] == "1.1"
    assert {"manifest.parquet", "landmasks.parquet", "global_0.1_degree_tiff_all/SHA256SUM"} <= set(s["registries"])
    r = _run("-m", "transcode", "plan", str(root), "--inventory", str(tmp_path / "inv.parquet"), "--json",
             "--no-progress")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert plan["tile_years"] == 1200 and plan["time"] == [2023, 2024, 2025] and "units" not in plan
    assert os.path.getsize(tmp_path / "inv.parquet") > 0
