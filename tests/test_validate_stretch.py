"""The validator on the stretch statistics and nested depths of stores written by `convert` (docs/format.md,
"Stretch statistics", "Nested depths"): a clean v2 store with depths 4 and 16 passes every level, and each rule
reports its own fault with the key of the object that holds it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from validate_helpers import SHARD, by_code, clone, edit_json, errors, no_internal, rewrite

from transcode.engine.convert import ConvertOptions, convert
from transcode.testing.synthetic import make_legacy_archive
from transcode.validate import ValidateOptions, validate

TILES = ["grid_-0.05_83.95", "grid_0.05_83.95", "grid_-0.05_-79.95", "grid_-0.15_83.95"]
YEARS = (2023, 2024)
DEPTHS = (4, 16)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """A v2 archive and its store with nested depths 4 and 16 (and stretch statistics)."""
    base = tmp_path_factory.mktemp("validate-stretch")
    archive = base / "archive"
    make_legacy_archive(archive, years=YEARS, tiles=TILES, seed=7, dataset="v2", landmasks="none")
    store = base / "store"
    options = ConvertOptions(shard=(SHARD, SHARD), depths=list(DEPTHS))
    report = convert(str(archive), str(store), options)
    assert report.ok and report.shards_written > 0
    return archive, store


@pytest.fixture()
def copy(converted, tmp_path):
    return clone(converted[1], tmp_path / "store")


def _run(store: Path, archive: Path | None = None, level: str = "content"):
    report = validate(str(store), ValidateOptions(level=level, source=str(archive) if archive else None))
    no_internal(report)
    return report


def _own(store: Path, array: str) -> zarr.Array:
    """An array of the clone that zarr may write: its files unlinked from the original store first."""
    for p in (store / array).rglob("*"):
        if p.is_file():
            rewrite(p, p.read_bytes())
    (store / ".tessera" / "manifest.parquet").unlink(missing_ok=True)  # another tool's writes: no checksums
    return zarr.open_array(str(store / array), mode="r+")


def _codes(report, level: str, severity: str) -> dict[str, list]:
    return by_code(report, level, severity)


def test_clean_store_passes_every_level_and_every_rule_ran(converted):
    archive, store = converted
    report = _run(store, archive, level="fidelity")
    assert errors(report) == [] and by_code(report, severity="warning") == {}
    assert report.counters["stretch_chunks"] > 0  # the statistics were read and checked
    assert report.counters["depth_pixels_compared"] == report.fidelity["compared"] * len(DEPTHS)


def test_count_disagreeing_with_the_pixels(copy):
    count = _own(copy, "utm31/stretch_stats_count")
    count[0] = int(count[0]) + 1
    report = _run(copy)
    found = _codes(report, "content", "error")["stretch-statistics"]
    assert [f.key for f in found] == ["utm31/stretch_stats_count/c/0"]
    assert found[0].details["count"] == found[0].details["valid_pixels"] + 1
    # a sampled content run reads only some shards: the count is not compared
    assert "stretch-statistics" not in by_code(validate(str(copy), ValidateOptions(level="content", sample=5)))


def test_coverage_mask_against_the_shards_present(copy):
    mask = _own(copy, "utm30/stretch_stats_shards")
    m = np.asarray(mask[1])
    marked = [tuple(v) for v in np.argwhere(m)]
    assert marked
    m[marked[0]] = 0  # a shard present, not folded in
    empty = [tuple(v) for v in np.argwhere(m == 0) if tuple(v) not in marked]
    m[empty[0]] = 1  # folded in, not present
    mask[1] = m
    report = _run(copy, level="structure")
    error = _codes(report, "structure", "error")["stretch-coverage"]
    warning = _codes(report, "structure", "warning")["stretch-coverage"]
    assert [f.key for f in error] == [f.key for f in warning] == ["utm30/stretch_stats_shards/c/1/0/0"]
    assert error[0].details["shards"] == [list(empty[0])] and warning[0].details["shards"] == [list(marked[0])]


def test_statistics_not_collected_or_being_rebuilt_are_not_faults(copy):
    count, mask = _own(copy, "utm30/stretch_stats_count"), _own(copy, "utm30/stretch_stats_shards")
    sample_count = _own(copy, "utm30/stretch_sample_count")
    count[0] = -1  # being rebuilt
    count[1], sample_count[1] = 0, 0  # not collected: nothing counted, nothing marked
    mask[1] = np.zeros(mask.shape[1:], dtype="uint8")
    _own(copy, "utm30/stretch_stats_sum")[1] = np.zeros(128)
    _own(copy, "utm30/stretch_stats_prod")[1] = np.zeros((128, 128))
    _own(copy, "utm30/stretch_sample")[1] = np.zeros(_own(copy, "utm30/stretch_sample").shape[1:], "int8")
    scales = _own(copy, "utm30/stretch_sample_scales")
    scales[1] = np.full(scales.shape[1:], np.inf, "float32")
    report = _run(copy)
    assert errors(report) == [] and by_code(report, severity="warning") == {}
    info = {f.message.split(" for ")[0]: f.details["zone_years"] for f in
            _codes(report, "structure", "info")["stretch-coverage"]}
    assert info == {"stretch statistics being rebuilt": ["utm30 2023"],
                    "stretch statistics not collected": ["utm30 2024"]}


@pytest.mark.parametrize("fault, array", [
    ("count", "stretch_stats_count"), ("sample-count", "stretch_sample_count"),
    ("unfilled-slot", "stretch_sample"), ("filled-scale", "stretch_sample_scales"),
    ("asymmetric", "stretch_stats_prod"), ("negative-diagonal", "stretch_stats_prod"),
    ("not-finite", "stretch_stats_sum"),
])
def test_each_statistics_fault(copy, fault, array):
    group = "utm31"
    arr = _own(copy, f"{group}/{array}")
    k = int(zarr.open_array(str(copy / group / "stretch_sample_count"))[0])
    slots = zarr.open_array(str(copy / group / "stretch_sample")).shape[1]
    assert 0 < k <= slots
    if fault == "count":
        arr[0] = -2
    elif fault == "sample-count":
        arr[0] = slots + 1
    elif fault == "unfilled-slot":  # one slot fewer counted: the last filled slot is no longer zeros with +inf
        _own(copy, f"{group}/stretch_sample_count")[0] = k - 1
    elif fault == "filled-scale":
        v = np.asarray(arr[0])
        v[0] = np.inf
        arr[0] = v
    elif fault == "asymmetric":
        v = np.asarray(arr[0])
        v[2, 7] += abs(v).max()
        arr[0] = v
    elif fault == "negative-diagonal":
        v = np.asarray(arr[0])
        v[5, 5] = -abs(v).max()
        arr[0] = v
    else:
        v = np.asarray(arr[0])
        v[9] = np.nan
        arr[0] = v
    report = _run(copy)
    found = _codes(report, "content", "error")["stretch-statistics"]
    assert {f.key.split("/")[1] for f in found} == {array}, [f.message for f in found]
    assert all(f.key.startswith(f"{group}/") for f in found)


@pytest.mark.parametrize("edit, code", [
    (lambda a: a["geoemb:depths"].pop(), "depths"),  # no full depth last
    (lambda a: a["geoemb:depths"].reverse(), "depths"),  # not ascending
    (lambda a: a["geoemb:depths"].__delitem__(0), "depths"),  # embeddings_d4 present but not listed
    (lambda a: a.__setitem__("geoemb:model", "https://geotessera.org/model/1.1"), "depths"),  # v1.1 dimensions
    (lambda a: a.__setitem__("geoemb:landmask", "no"), "layout"),
])
def test_root_attribute_faults(converted, tmp_path, edit, code):
    store = clone(converted[1], tmp_path / "store")
    edit_json(store / "zarr.json", lambda d: edit(d["attributes"]))
    report = _run(store, level="metadata")
    assert code in by_code(report, "metadata", "error"), [f.message for f in errors(report)]


def test_missing_depth_shard(copy):
    key = min(p.relative_to(copy).as_posix() for p in copy.glob("utm30/embeddings_d16/c/*/0/*/*"))
    (copy / key).unlink()
    report = _run(copy, level="structure")
    pairing = _codes(report, "structure", "error")["shard-pairing"]
    assert pairing and all(key in f.message or f.details.get("missing") == key for f in pairing)


def test_depth_array_differing_from_embeddings(copy, converted):
    archive, _ = converted
    arr = _own(copy, "utm30/embeddings_d4")
    t, _, sr, sc = (int(v) for v in min(copy.glob("utm30/embeddings_d4/c/0/0/*/*")).relative_to(
        copy / "utm30/embeddings_d4/c").parts)
    block = zarr.open_array(str(copy / "utm30/scales"))[t, sr * SHARD:(sr + 1) * SHARD, sc * SHARD:(sc + 1) * SHARD]
    r, c = (int(v) for v in np.argwhere(np.asarray(block) < 1)[0])
    r, c = sr * SHARD + r, sc * SHARD + c
    v = np.asarray(arr[t, :, r, c])
    v[2] = v[2] + 1 if v[2] < 127 else v[2] - 1
    arr[t, :, r, c] = v
    report = _run(copy, archive, level="fidelity")
    found = _codes(report, "fidelity", "error")["depth-mismatch"]
    assert [f.key for f in found] == [f"utm30/embeddings_d4/c/0/0/{r // SHARD}/{c // SHARD}"]
    assert found[0].details == {"depth": 4, "count": 1, "first": [r, c]}
    assert "pixel-mismatch" not in by_code(report, "fidelity")  # embeddings themselves are right


def test_verify_mirrors_zarr_level_covers_depth_and_stretch_arrays(converted, tmp_path):
    """The nested depths are sharded with inner chunks of their own: the zarr level reads their index with their
    own layout; the stretch arrays are plain objects, compared whole."""
    import shutil

    import crc32c

    from transcode import verify_mirrors

    _, store = converted
    ignore = shutil.ignore_patterns(".tessera")  # no store manifest: the copies are compared with each other
    a, b = shutil.copytree(store, tmp_path / "a", ignore=ignore), shutil.copytree(store, tmp_path / "b", ignore=ignore)
    depth = min(p.relative_to(b).as_posix() for p in b.glob("utm30/embeddings_d4/c/*/0/*/*"))
    data = (b / depth).read_bytes()
    n = (SHARD // 128) ** 2  # depth 4: 128 x 128 inner chunks, 16 index entries (embeddings: 256)
    index = np.frombuffer(data[-(16 * n + 4):-4], dtype="<u8").reshape(n, 2).copy()
    present = np.flatnonzero(index[:, 0] != 2**64 - 1)
    index[[present[0], present[1]]] = index[[present[1], present[0]]]  # same size, same bytes, another index
    tail = index.astype("<u8").tobytes()
    (b / depth).write_bytes(data[:-(16 * n + 4)] + tail + crc32c.crc32c(tail).to_bytes(4, "little"))
    stretch = "utm31/stretch_stats_prod/c/1/0/0"
    raw = bytearray((b / stretch).read_bytes())
    raw[len(raw) // 2] ^= 0x01
    (b / stretch).write_bytes(bytes(raw))
    report = verify_mirrors([f"a={a}", f"b={b}"], level="zarr", state=tmp_path / "state.json")
    diffs = {d["key"]: d for d in report.passes[-1].differences if d["kind"] != "unproven"}  # bodies: not read
    assert set(diffs) == {depth, stretch}
    assert diffs[depth]["level"] == "zarr" and f"inner chunk {present[0]}:" in diffs[depth]["detail"]
    assert diffs[stretch]["level"] == "zarr" and diffs[stretch]["kind"] == "content"
    assert diffs[stretch]["detail"].startswith("bytes differ")


def test_store_converted_without_statistics(tmp_path):
    """`--no-stretch-stats` leaves the arrays as created: nothing counted, nothing marked. Not a fault: one info
    finding says which (zone, year)s geotessera's zarr-stretch would refuse."""
    archive, store = tmp_path / "archive", tmp_path / "store"
    make_legacy_archive(archive, years=(2024,), tiles=TILES[:2], seed=2)
    assert convert(str(archive), str(store), ConvertOptions(shard=(SHARD, SHARD), stretch_stats=False)).ok
    report = _run(store, archive, level="fidelity")
    assert errors(report) == [] and by_code(report, severity="warning") == {}
    [info] = _codes(report, "structure", "info")["stretch-coverage"]
    assert "not collected" in info.message and info.details["zone_years"] == ["utm30 2024", "utm31 2024"]
