"""The executor never changes a byte: inline, a local process pool and a Dask distributed cluster (API with a
Client, CLI with a scheduler address) write identical stores."""

import pytest
from convert_helpers import cli_json, shard_keys, tree_digests

from transcode.engine.convert import ConvertOptions, convert
from transcode.testing.synthetic import make_legacy_archive

SHARD, CHUNK = (256, 256), (32, 32)


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """Overlapping neighbours on both sides of the 30/31 zone boundary, north and south."""
    root = tmp_path_factory.mktemp("scaleout") / "archive"
    make_legacy_archive(root, years=(2024,), preset="small", seed=31)
    return root


@pytest.fixture(scope="module")
def inline_store(archive, tmp_path_factory):
    store = tmp_path_factory.mktemp("inline") / "store"
    report = convert(str(archive), str(store), ConvertOptions(workers=1, shard=SHARD, chunk=CHUNK))
    assert report.executor == "inline" and report.ok
    assert report.shards_written == report.shards_planned > 20
    digests = tree_digests(store)
    assert len(shard_keys(digests)) == 2 * report.shards_planned
    return digests


def _assert_same(got: dict, want: dict, what: str) -> None:
    assert sorted(got) == sorted(want), f"{what}: other objects than inline"
    diff = sorted(k for k in want if got[k] != want[k])
    assert diff == [], f"{what}: {len(diff)} objects differ from the inline run: {diff[:10]}"


def test_process_pool_writes_the_same_bytes_as_inline(archive, inline_store, tmp_path):
    store = tmp_path / "store"
    report = convert(str(archive), str(store), ConvertOptions(workers=2, shard=SHARD, chunk=CHUNK))
    assert report.executor == "processes" and report.ok
    assert report.shards_written == report.shards_planned
    _assert_same(tree_digests(store), inline_store, "workers=2")


def test_dask_cluster_writes_the_same_bytes_as_inline(archive, inline_store, tmp_path):
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        store = tmp_path / "api"
        report = convert(str(archive), str(store), ConvertOptions(scheduler=client, shard=SHARD, chunk=CHUNK))
        assert report.executor == "dask" and report.ok
        assert report.shards_written == report.shards_planned
        _assert_same(tree_digests(store), inline_store, "dask (Client)")
        # the work really ran on both cluster workers, not in this process
        ran = client.run(lambda: __import__("transcode.engine.executors").engine.executors._STORAGES.__len__())
        assert len(ran) == 2 and all(n > 0 for n in ran.values()), ran
        assert client.status == "running"  # a Client passed in is the caller's: not closed

        cli_store = tmp_path / "cli"
        doc = cli_json("convert", str(archive), str(cli_store), "--scheduler", cluster.scheduler_address,
                       "--shard-size", "256", "--chunk-size", "32", "--no-progress")
        assert doc["executor"] == "dask" and doc["shards_written"] == doc["shards_planned"]
        _assert_same(tree_digests(cli_store), inline_store, "dask (--scheduler)")
