"""The validator on a store in a real Ceph RGW bucket: metadata and structure cost one GET per zarr.json and
coordinate chunk and ONE ranged GET of each shard's index tail (proved with the per-request counter), never a
whole shard; the CLI validates the same bucket through worker processes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from validate_helpers import COORD_KEY, SHARD_KEY, STRETCH_KEY, index_nbytes, make_store, no_internal, shard_keys

from transcode.storage import S3Options, S3Storage
from transcode.validate import ValidateOptions, validate

TILES = ["grid_-0.05_83.95", "grid_0.05_83.95"]  # one tile in each of utm30 and utm31


@pytest.fixture(scope="module")
def uploaded(rgw_server, tmp_path_factory):
    base = tmp_path_factory.mktemp("vs3")
    archive, store = make_store(base, years=(2024,), tiles=TILES)
    bucket = rgw_server.new_bucket("val")
    n = rgw_server.upload_tree(store, bucket, "stores/tiny.zarr")
    assert n > 20
    return rgw_server, bucket, "stores/tiny.zarr", store, archive


@pytest.fixture()
def aws_env(monkeypatch, uploaded):
    server = uploaded[0]
    server.apply_env(monkeypatch)
    return server


def test_metadata_and_structure_read_only_metadata_and_index_tails_on_rgw(uploaded, aws_env):
    server, bucket, prefix, store, _ = uploaded
    s3 = S3Storage(bucket, prefix, S3Options(endpoint_url=server.endpoint_url, region=server.region, path_style=True))
    gets: list[tuple[str, str | None]] = []
    s3._client.meta.events.register("provide-client-params.s3.GetObject",
                                    lambda params, **kw: gets.append((params["Key"], params.get("Range"))))
    report = validate(s3, ValidateOptions(level="structure"))
    no_internal(report)
    assert report.findings == [], [f.line() for f in report.findings]
    shards = {k: (store / k).stat().st_size for k in shard_keys(store)}
    n_json = len(list(store.rglob("zarr.json")))
    rel = [(k[len(prefix) + 1:], r) for k, r in gets]
    whole = [k for k, r in rel if r is None]
    ranged = [(k, r) for k, r in rel if r is not None]
    assert all(k.endswith("zarr.json") or COORD_KEY.match(k) or STRETCH_KEY.match(k) for k in whole), whole
    assert sum(k.endswith("zarr.json") for k in whole) == n_json
    assert sorted(k for k, _ in ranged) == sorted(shards)  # one ranged GET per shard, none twice
    for k, r in ranged:
        assert SHARD_KEY.match(k)
        size = shards[k]
        assert r == f"bytes={size - index_nbytes()}-{size - 1}", (k, r)
    req = s3.requests
    assert req["GetObject"] == len(gets) == len(whole) + len(shards)
    assert req["HeadObject"] == 0
    assert req["ListObjectsV2"] <= 4  # root and zone groups (delimiter listings) + one listing of the store
    assert req["total"] == req["GetObject"] + req["ListObjectsV2"]


def test_cli_validates_the_bucket_with_worker_processes(uploaded):
    server, bucket, prefix, _, archive = uploaded
    r = subprocess.run([sys.executable, "-m", "transcode", "validate", server.url(bucket, prefix), "--level",
                        "fidelity", "--source", str(archive), "--sample", "5", "--workers", "2",
                        "--store-endpoint-url", server.endpoint_url, "--store-region", server.region,
                        "--store-path-style", "--json", "--no-progress"],
                       env=server.env(), capture_output=True, text=True, timeout=600, check=False)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["summary"]["errors"] == 0 and doc["fidelity"]["chunks"] == 5 and doc["fidelity"]["exact"] > 0
    assert doc["store"] == server.url(bucket, prefix).rstrip("/")
