"""The incumbent's arrays beside embeddings and scales, written by convert (docs/format.md, "Stretch statistics" and
"Nested depths"): N, S, M equal a float64 reference over the same pixels; the sample is the K valid pixels of
smallest key, so each shard takes part in proportion to its valid pixels; every statistic is byte-identical whatever
the executor, and after a resume or an incremental run; --no-stretch-stats leaves them "not collected"; nested
depths hold the first D bands of embeddings, xarray opens each zone group, and depths the dataset may not have are
refused before anything is written."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import zarr
from convert_helpers import cli, cli_json, tree_digests

import transcode

from transcode.engine.convert import ConvertOptions, convert
from transcode.engine.stretchstats import Partial, ShardStats, ZoneYearStats, pixel_keys, year_salt
from transcode.errors import UsageError
from transcode.format.arrays import MAX_STRETCH_SAMPLE_SIZE, STRETCH_ARRAYS, depth_arrays
from transcode.format.keys import group_zone
from transcode.format.sidecar import SETTINGS_KEY, STRETCH_PREFIX, stretch_record_key
from transcode.storage import LocalStorage
from transcode.testing.synthetic import make_legacy_archive, year_root

SHARD, CHUNK = (256, 256), (32, 32)
K = 3000  # sample slots: fewer than the valid pixels of every zone-year of the archive, so the draw chooses
V2 = "2.0"  # the dataset version nested depths need


def _opts(**kw) -> ConvertOptions:
    return ConvertOptions(shard=SHARD, chunk=CHUNK, stretch_sample_size=K, **kw)


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """Both hemispheres, overlapping neighbours, water and invalid scales; two years."""
    root = tmp_path_factory.mktemp("stretch") / "archive"
    make_legacy_archive(root, years=(2023, 2024), preset="tiny", seed=51)
    return root


@pytest.fixture(scope="module")
def archive_v2(tmp_path_factory):
    """The same tiles from a v2 dataset (nested depths need one): no landmasks, invalid scales still in it."""
    root = tmp_path_factory.mktemp("stretch-v2") / "archive"
    make_legacy_archive(root, years=(2023, 2024), preset="tiny", seed=51, dataset_version=V2)
    return root


@pytest.fixture(scope="module")
def store(archive_v2, tmp_path_factory):
    """Statistics and nested depths 4 and 16, converted inline from the v2 archive."""
    path = tmp_path_factory.mktemp("stretch-store") / "store"
    report = convert(str(archive_v2), str(path), _opts(depths=[16, 4]))
    assert report.ok and report.shards_written == report.shards_planned > 8, report
    assert report.depths == [4, 16] and report.stretch["collected"] and report.stretch["sample_size"] == K
    return path, report


def _zone_years(path):
    """(group, zone group, time index, year) of every zone-year of a store."""
    root = zarr.open_group(str(path), mode="r")
    for name in sorted(root.group_keys()):
        grp = root[name]
        for t, year in enumerate(grp["time"][:].tolist()):
            yield name, grp, t, year


def _shards(grp, t):
    """(shard row, shard col, embeddings (128, h, w), scales (h, w)) of every shard the coverage mask names."""
    mask = grp["stretch_stats_shards"][t]
    for r, c in zip(*np.nonzero(mask)):
        ys, xs = slice(r * SHARD[0], (r + 1) * SHARD[0]), slice(c * SHARD[1], (c + 1) * SHARD[1])
        yield int(r), int(c), grp["embeddings"][t, :, ys, xs], grp["scales"][t, ys, xs]


def _reference(grp, t, zone, year):
    """float64 N, S, M and the K smallest-key valid pixels, from the pixels the store holds."""
    xs, keys, embs, scs, per_shard = [], [], [], [], {}
    for r, c, emb, sc in _shards(grp, t):
        valid = (sc > 0) & (sc < 1)
        rows, cols = np.nonzero(valid)
        q = emb.transpose(1, 2, 0)[valid]
        xs.append(q.astype(np.float64) * sc[valid].astype(np.float64)[:, None])
        keys.append(pixel_keys(year_salt(zone, year), rows + r * SHARD[0], cols + c * SHARD[1]))
        embs.append(q)
        scs.append(sc[valid])
        per_shard[(r, c)] = len(rows)
    x, key = np.concatenate(xs), np.concatenate(keys)
    emb, sc = np.concatenate(embs), np.concatenate(scs)
    order = np.argsort(key)[:K]
    return len(x), x.sum(axis=0), x.T @ x, emb[order], sc[order], key, per_shard


def test_statistics_equal_a_float64_reference_over_the_same_pixels(store):
    path, report = store
    seen = 0
    for name, grp, t, year in _zone_years(path):
        n = int(grp["stretch_stats_count"][t])
        if not grp["stretch_stats_shards"][t].any():
            assert n == 0
            continue
        seen += 1
        ref_n, ref_s, ref_m, ref_emb, ref_sc, _, _ = _reference(grp, t, group_zone(name), year)
        assert n == ref_n > K, (name, year)
        s, m = grp["stretch_stats_sum"][t], grp["stretch_stats_prod"][t]
        assert np.max(np.abs(s - ref_s)) <= 1e-9 * np.max(np.abs(ref_s)), (name, year)
        assert np.max(np.abs(m - ref_m)) <= 1e-9 * np.max(np.abs(ref_m)), (name, year)
        # element by element against the diagonal (a covariance's own scale)
        d = np.sqrt(np.outer(np.diag(ref_m), np.diag(ref_m)))
        assert np.max(np.abs(m - ref_m) / d) <= 1e-9
        np.testing.assert_array_equal(m, m.T)
        # the sample: exactly the K valid pixels of smallest key, as stored (raw int8 vectors and their scales)
        assert int(grp["stretch_sample_count"][t]) == K
        np.testing.assert_array_equal(grp["stretch_sample"][t], ref_emb)
        np.testing.assert_array_equal(grp["stretch_sample_scales"][t], ref_sc)
    assert seen == len(report.stretch["zone_years"]) >= 4


def test_the_sample_takes_each_shard_in_proportion_to_its_valid_pixels(store):
    path, _ = store
    tested = 0
    for name, grp, t, year in _zone_years(path):
        if not grp["stretch_stats_shards"][t].any():
            continue
        n, *_, keys, per_shard = _reference(grp, t, group_zone(name), year)
        if len(per_shard) < 2:
            continue
        threshold = np.sort(keys)[K - 1]
        at = 0
        for shard, count in sorted(per_shard.items()):
            taken = int(np.count_nonzero(keys[at:at + count] <= threshold))
            at += count
            expected = K * count / n
            sigma = np.sqrt(K * (count / n) * (1 - count / n))
            assert abs(taken - expected) <= 5 * sigma + 1, (name, year, shard, taken, expected)
        tested += 1
    assert tested >= 2


def test_unfilled_sample_slots_and_a_zone_year_smaller_than_k(tmp_path, archive):
    big = 10 ** 6  # more slots than any zone-year of the archive has valid pixels (~4 x 10^5)
    report = convert(str(archive), str(tmp_path / "s"), ConvertOptions(shard=SHARD, chunk=CHUNK,
                                                                       stretch_sample_size=big, years=[2024]))
    assert report.ok
    for name, grp, t, year in _zone_years(tmp_path / "s"):
        if year != 2024:
            continue
        n, filled = int(grp["stretch_stats_count"][t]), int(grp["stretch_sample_count"][t])
        assert 0 < n == filled < big
        # a v1 archive: its water (NaN scales from the landmasks) stays out of the sums, like invalid scales
        ref_n, ref_s, *_ = _reference(grp, t, group_zone(name), year)
        # (scales read shard by shard: the zone's whole array spans both hemispheres, ~17 GiB)
        assert n == ref_n and any(np.isnan(sc).any() for *_, sc in _shards(grp, t))
        assert np.max(np.abs(grp["stretch_stats_sum"][t] - ref_s)) <= 1e-9 * np.max(np.abs(ref_s))
        scales = grp["stretch_sample_scales"][t]
        assert np.all((scales[:filled] > 0) & (scales[:filled] < 1))
        assert np.all(np.isposinf(scales[filled:]))  # unfilled: +inf and zeros, as the incumbent pads
        assert not grp["stretch_sample"][t][filled:].any()


def test_nested_depths_are_the_first_bands_of_embeddings_and_xarray_opens_every_zone_group(store):
    import xarray as xr

    path, _ = store
    root = zarr.open_group(str(path), mode="r")
    assert root.attrs["geoemb:depths"] == [{"dimensions": 4, "array": "embeddings_d4"},
                                           {"dimensions": 16, "array": "embeddings_d16"},
                                           {"dimensions": 128, "array": "embeddings"}]
    for name in root.group_keys():
        for d in (4, 16):
            arr = root[name][f"embeddings_d{d}"]
            assert arr.metadata.dimension_names == ("time", f"band_d{d}", "y", "x")
            assert arr.chunks == (1, d, 128 if d == 4 else 64, 128 if d == 4 else 64)
            assert root[name][f"band_d{d}"][:].tolist() == list(range(d))
    # everywhere: every shard of a depth array holds exactly the first D bands of the embeddings shard
    listing = LocalStorage(path)
    shards = [o.key for o in listing.list("") if "/embeddings/c/" in o.key]
    assert shards
    for key in shards:
        group, _, _, t, _, r, c = key.split("/")
        grp = root[group]
        ys, xs = slice(int(r) * SHARD[0], (int(r) + 1) * SHARD[0]), slice(int(c) * SHARD[1], (int(c) + 1) * SHARD[1])
        emb = grp["embeddings"][int(t), :, ys, xs]
        for d in (4, 16):
            assert listing.exists(f"{group}/embeddings_d{d}/c/{t}/0/{r}/{c}"), key
            np.testing.assert_array_equal(grp[f"embeddings_d{d}"][int(t), :, ys, xs], emb[:d])
    for name in sorted(root.group_keys()):
        ds = xr.open_zarr(str(path), group=name, consolidated=True)
        assert ds["embeddings"].dims == ("time", "band", "y", "x")
        assert ds["embeddings_d4"].dims == ("time", "band_d4", "y", "x")
        assert ds.sizes["band_d16"] == 16 and ds.sizes["band"] == 128 and ds.sizes["sample"] == K
        assert ds["stretch_stats_prod"].dims == ("time", "band", "band2")
        assert set(ds["stretch_stats_count"].values.tolist()) - {0} != set()


def test_statistics_are_byte_identical_across_executors(archive_v2, store, tmp_path):
    from distributed import Client, LocalCluster

    want = tree_digests(store[0])
    assert any(k.endswith(".stats") for k in want) and any("/stretch_stats_prod/c/" in k for k in want)
    assert any("/embeddings_d4/c/" in k for k in want) and any(k.startswith(STRETCH_PREFIX) for k in want)

    def same(path, what):
        got = tree_digests(path)
        assert sorted(got) == sorted(want), what
        diff = sorted(k for k in want if got[k] != want[k])
        assert diff == [], f"{what}: {diff[:10]}"

    report = convert(str(archive_v2), str(tmp_path / "p"), _opts(depths=[4, 16], workers=2))
    assert report.executor == "processes" and report.ok
    same(tmp_path / "p", "2 processes")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        report = convert(str(archive_v2), str(tmp_path / "d"), _opts(depths=[4, 16], scheduler=client))
        assert report.executor == "dask" and report.ok
    same(tmp_path / "d", "dask")


def test_a_zone_year_whose_rebuild_was_cut_short_is_rebuilt_from_the_partials(store, tmp_path):
    """Killed after the shards, before the statistics: no shard is read again, the statistics come out the same."""
    path = tmp_path / "s"
    shutil.copytree(store[0], path)
    want = tree_digests(path)
    storage = LocalStorage(path)
    name, grp, t, year = next((n, g, t, y) for n, g, t, y in _zone_years(path) if g["stretch_stats_shards"][t].any())
    storage.delete(stretch_record_key(name, year))
    for decl in STRETCH_ARRAYS:
        storage.delete(decl.shard_key(name, t, 0, 0))
    report = convert(str(store[1].source), str(path), _opts())
    assert report.ok and report.shards_written == 0 and not report.nothing_to_do
    assert report.stretch["zone_years"] == [f"{name}/{year}"]
    got = tree_digests(path)
    assert got == want


def test_a_missing_partial_leaves_the_zone_year_invalid_and_says_so(store, tmp_path):
    path = tmp_path / "s"
    shutil.copytree(store[0], path)
    storage = LocalStorage(path)
    name, grp, t, year = next((n, g, t, y) for n, g, t, y in _zone_years(path) if g["stretch_stats_shards"][t].any())
    victim = next(o.key for o in storage.list(f".tessera/journal/{name}/{year}/") if o.key.endswith(".stats"))
    storage.delete(victim)
    storage.delete(stretch_record_key(name, year))
    report = convert(str(store[1].source), str(path), _opts())
    assert not report.ok and report.shards_written == 0
    assert [f["shard"] for f in report.failed] == [f"{name}/{year}"]
    assert victim in report.failed[0]["error"] and "count -1" in report.failed[0]["error"]
    assert int(zarr.open_group(str(path), mode="r")[name]["stretch_stats_count"][t]) == -1


def test_no_stretch_stats_leaves_them_not_collected(archive, tmp_path):
    path = tmp_path / "s"
    doc = cli_json("convert", str(archive), str(path), "--shard-size", "256", "--chunk-size", "32",
                   "--no-stretch-stats", "--years", "2024", "--no-progress")
    assert doc["stretch"] == {"collected": False, "sample_size": 20000, "zone_years": []}
    files = tree_digests(path)
    assert not [k for k in files if k.endswith(".stats") or k.startswith(STRETCH_PREFIX)]
    assert not [k for k in files if "/stretch_" in k and "/c/" in k]  # no chunk: every array at its fill
    for name, grp, t, year in _zone_years(path):
        assert int(grp["stretch_stats_count"][t]) == 0 and not grp["stretch_stats_shards"][t].any()
        assert np.isposinf(grp["stretch_sample_scales"][t]).all()
    assert json.loads((path / SETTINGS_KEY).read_bytes())["stretch"] == {"collected": False, "sample_size": 20000}
    # a later run keeps the store's setting; asking for the other one is refused before anything changes
    again = cli_json("convert", str(archive), str(path), "--years", "2024", "--no-progress")
    assert again["nothing_to_do"] is True
    before = tree_digests(path)
    r = cli("convert", str(archive), str(path), "--years", "2024", "--stretch-sample-size", "20000",
            "--no-progress")
    assert r.returncode == 0, r.stderr  # the sample size alone says nothing while nothing is collected
    with pytest.raises(UsageError, match="without stretch statistics"):
        convert(str(archive), str(path), ConvertOptions(stretch_stats=True, years=[2024]))
    assert tree_digests(path) == before


def test_sample_size_beyond_the_limit_is_refused(archive, tmp_path):
    """K is bounded (each year's sample is one chunk that readers load whole): one over the limit writes nothing."""
    path = tmp_path / "s"
    r = cli("convert", str(archive), str(path), "--stretch-sample-size", str(MAX_STRETCH_SAMPLE_SIZE + 1),
            "--no-progress")
    assert r.returncode == 2 and "--stretch-sample-size" in r.stderr and "at most 1,000,000" in r.stderr, r.stderr
    assert not path.exists()
    with pytest.raises(UsageError, match="at most 1,000,000"):  # the public API checks it too
        transcode.convert(str(archive), str(path), stretch_sample_size=MAX_STRETCH_SAMPLE_SIZE + 1)
    assert not path.exists()


def test_refused_depths_write_nothing(archive, archive_v2, tmp_path):
    """Checked against the source's dataset (its own, or --dataset-version); an unknown version: test_format."""
    path = tmp_path / "s"
    for source, depths, version, said in [(archive, [4, 16], "1.1", "arbitrary slice"),
                                          (archive, [4], None, "dataset 1.0 is not"),
                                          (archive_v2, [4], "1.0", "arbitrary slice"),
                                          (archive_v2, [0], None, "1..127"), (archive_v2, [128], None, "1..127"),
                                          (archive_v2, [4, 4], None, "once each")]:
        with pytest.raises(UsageError, match=said):
            convert(str(source), str(path), _opts(depths=depths, dataset_version=version))
        assert not path.exists()
    r = cli("convert", str(archive), str(path), "--depths", "4,16", "--no-progress")
    assert r.returncode == 2 and "version" in r.stderr and not path.exists(), r.stderr
    r = cli("convert", str(archive), str(path), "--depths", "four", "--no-progress")
    assert r.returncode == 2 and "--depths" in r.stderr and not path.exists(), r.stderr


def test_a_store_keeps_its_depths_and_sample_size(store, tmp_path):
    path = tmp_path / "s"
    shutil.copytree(store[0], path)
    before = tree_digests(path)
    source = str(store[1].source)
    for kw, said in [({"depths": [4]}, "nested depths"), ({"depths": []}, "nested depths"),
                     ({"stretch_sample_size": K + 1}, "slots"), ({"stretch_stats": False}, "collects")]:
        with pytest.raises(UsageError, match=said):
            convert(source, str(path), ConvertOptions(shard=SHARD, chunk=CHUNK, **kw))
    assert tree_digests(path) == before
    report = convert(source, str(path), ConvertOptions())  # nothing given: the store's own
    assert report.nothing_to_do and report.depths == [4, 16] and report.stretch["sample_size"] == K


def test_added_tiles_rebuild_their_zone_year_as_a_direct_conversion(archive, tmp_path):
    """An incremental run folds the rewritten shards' new partials and drops the replaced ones: nothing counts
    twice, and the statistics equal those of converting the full archive at once."""
    source = tmp_path / "archive"
    shutil.copytree(archive, source)
    added = sorted(p.name for p in (year_root(source) / "2024").iterdir())[0]
    shutil.move(str(year_root(source) / "2024" / added), str(tmp_path / added))
    store_path = tmp_path / "store"
    first = convert(str(source), str(store_path), _opts(years=[2024]))
    assert first.ok
    shutil.move(str(tmp_path / added), str(year_root(source) / "2024" / added))
    second = convert(str(source), str(store_path), _opts(years=[2024]))
    assert second.ok and 0 < second.shards_written < second.shards_planned
    assert second.stretch["zone_years"] and all(z.endswith("/2024") for z in second.stretch["zone_years"])
    direct = tmp_path / "direct"
    convert(str(source), str(direct), _opts(years=[2024]))
    got, want = tree_digests(store_path), tree_digests(direct)
    assert sorted(got) == sorted(want)
    assert sorted(k for k in want if got[k] != want[k]) == []


def test_extend_grows_the_statistics_and_depths(archive_v2, tmp_path):
    path = tmp_path / "s"
    convert(str(archive_v2), str(path), _opts(years=[2023], depths=[4]))
    from transcode.engine.convert import extend

    report = extend(str(path), [2024], ConvertOptions())
    assert report.ok and report.depths == [4] and [z[-4:] for z in report.stretch["zone_years"]] == ["2024"] * 2
    root = zarr.open_group(str(path), mode="r")
    for name in root.group_keys():
        grp = root[name]
        assert grp["embeddings_d4"].shape[0] == grp["stretch_stats_count"].shape[0] == 2
        assert grp["stretch_sample"].shape == (2, K, 128)
        assert (grp["stretch_stats_count"][:] > 0).all()
    direct = tmp_path / "direct"
    convert(str(archive_v2), str(direct), _opts(depths=[4]))
    got, want = tree_digests(path), tree_digests(direct)
    stats = sorted(k for k in want if "/stretch_" in k or "/embeddings_d4/" in k)
    assert stats and [k for k in stats if got.get(k) != want[k]] == []


# ------------------------------------------------------------------------------------------ units

def test_partials_round_trip_and_must_be_folded_in_order():
    rng = np.random.default_rng(5)
    stats = ShardStats(31, 2024, 50)
    emb = rng.integers(-128, 128, (64, 96, 128), dtype=np.int8)
    scales = rng.uniform(0.02, 0.2, (64, 96)).astype(np.float32)
    scales[:, :10] = np.nan
    scales[3, 40:50] = np.inf
    scales[7, 60] = 1.5  # a sentinel-huge source scale is not valid
    for i in range(0, 64, 32):
        stats.add(emb[i:i + 32], scales[i:i + 32], 100 + i, 200)
    p = stats.partial()
    valid = (scales > 0) & (scales < 1)
    assert p.n == valid.sum() and len(p.keys) == 50 and np.all(np.diff(p.keys.astype(np.float64)) > 0)
    q = Partial.from_bytes(p.to_bytes())
    for a in ("s", "m", "keys", "emb", "scales"):
        np.testing.assert_array_equal(getattr(q, a), getattr(p, a))
    with pytest.raises(ValueError):
        Partial.from_bytes(p.to_bytes()[:-1])
    folded = ZoneYearStats(50, (2, 2))
    folded.add(0, 1, p)
    with pytest.raises(ValueError, match="in order"):
        folded.add(0, 0, p)
    assert depth_arrays(4)[0].name == "embeddings_d4"
