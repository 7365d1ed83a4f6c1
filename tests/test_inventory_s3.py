"""The legacy reader on S3 (a real Ceph RGW and a moto server): same findings as locally, one GET per window."""

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from archive_checks import EXPECTED_KIND

import transcode.storage.s3 as s3mod
from transcode.legacy.archive import open_archive
from transcode.legacy.inventory import build_inventory
from transcode.legacy.scan import LOCAL_CONCURRENCY, REMOTE_CONCURRENCY, read_plan
from transcode.legacy.tiles import NpyTileFile, Window, read_landmask
from transcode.storage import LocalStorage, S3Options, S3Storage


@pytest.fixture(scope="module")
def uploaded(s3_server, faulty_archive):
    """The faulty archive uploaded under a prefix of a fresh bucket on each server."""
    bucket = s3_server.new_bucket("inv")
    n = s3_server.upload_tree(faulty_archive.root, bucket, "archive/root")
    assert n > 40
    return s3_server, bucket, "archive/root"


def _options(server) -> S3Options:
    return S3Options(endpoint_url=server.endpoint_url, region=server.region, path_style=True)


@pytest.fixture()
def aws_env(monkeypatch, uploaded):
    server = uploaded[0]
    server.apply_env(monkeypatch)
    return server


def _cli(server, *args):
    return subprocess.run([sys.executable, "-m", "transcode", *args], env=server.env(), capture_output=True,
                          text=True, timeout=600)


def test_inventory_on_s3_finds_every_fault_like_local(uploaded, faulty_archive):
    server, bucket, prefix = uploaded
    r = _cli(server, "inventory", server.url(bucket, prefix), "--endpoint-url", server.endpoint_url,
             "--region", server.region, "--path-style", "--verify-hashes", "--json", "--out", "-", "--no-progress")
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)
    found = {(p["path"], p["kind"]) for p in doc["problems"]}
    for f in faulty_archive.faults:
        assert (f.path, EXPECTED_KIND[f.fault]) in found, (f, sorted(found))
    local = build_inventory(open_archive(faulty_archive.root), verify_hashes=True)
    assert found == {(p.path, p.kind) for p in local.problems}
    assert doc["summary"]["tiles"] == len(local.tiles)


def test_old_profile_spelling_still_reaches_s3_and_warns(uploaded, tmp_path):
    """`--profile` (now `--aws-profile`) still picks the credentials; only the old spelling warns."""
    server, bucket, prefix = uploaded
    (tmp_path / "credentials").write_text(f"[legacy]\naws_access_key_id = {server.access_key}\n"
                                          f"aws_secret_access_key = {server.secret_key}\n")
    (tmp_path / "config").write_text("")
    env = {k: v for k, v in server.env().items() if not k.startswith("AWS_")}
    env.update(AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "credentials"), AWS_CONFIG_FILE=str(tmp_path / "config"),
               AWS_EC2_METADATA_DISABLED="true")

    def run(*flags: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "transcode", "inventory", server.url(bucket, prefix),
                               "--endpoint-url", server.endpoint_url, "--region", server.region, "--path-style",
                               "--json", "--out", "-", "--no-progress", *flags], env=env, capture_output=True,
                              text=True, timeout=600, check=False)

    new, old = run("--aws-profile", "legacy"), run("--profile", "legacy")
    assert new.returncode == old.returncode == 1, old.stderr  # the faulty archive's problems
    assert json.loads(old.stdout) == json.loads(new.stdout)
    assert "--profile is deprecated: use --aws-profile" in old.stderr and "deprecated" not in new.stderr
    wrong = run("--profile", "no-such-profile")
    assert wrong.returncode == 2 and "no-such-profile" in wrong.stderr


def test_window_read_costs_one_ranged_get_and_matches_local(uploaded, faulty_archive, aws_env):
    """A window costs one ranged GET of its byte span, or the pieces a large span is split into (S3Storage's
    RANGE_PIECE/RANGE_SPLIT), and gives the local file's bytes."""
    server, bucket, prefix = uploaded
    s3 = S3Storage(bucket, prefix, _options(server))
    archive = open_archive(s3.url, _options(server))
    bad = {(f.tile, f.year) for f in faulty_archive.faults}
    tile = next(t for t in archive.tiles if (t.name, t.year) not in bad)
    local = LocalStorage(faulty_archive.root)
    for key, kind in ((tile.embeddings_key, "embeddings"), (tile.scales_key, "scales")):
        remote_file = NpyTileFile(s3, key, kind=kind)
        local_file = NpyTileFile(local, key, kind=kind)
        h, w = local_file.shape[:2]
        for window in (Window(0, h, 0, w), Window(17, 300, 40, 90), Window(h - 1, h, w - 1, w), Window(5, 6, 0, w)):
            s3.requests.clear()
            got = remote_file.read(window)
            _, length = remote_file._span(window)
            pieces = min(s3mod.RANGE_SPLIT, length // s3mod.RANGE_PIECE)
            gets = pieces if pieces >= 2 else 1
            assert s3.requests["GetObject"] == gets and s3.requests["total"] == gets, (length, dict(s3.requests))
            assert got.tobytes() == local_file.read(window).tobytes()
    # a small window never fetches the whole object
    big = NpyTileFile(s3, tile.embeddings_key)
    s3.requests.clear()
    part = big.read(Window(10, 20, 0, 8))
    assert part.shape == (10, 8, 128)
    assert s3.requests["total"] == 1
    assert tile.embeddings.size > 20 * big.shape[1] * 128 * 4


def test_landmask_window_from_s3_matches_local(uploaded, faulty_archive, aws_env):
    server, bucket, prefix = uploaded
    s3 = S3Storage(bucket, prefix, _options(server))
    archive = open_archive(s3.url, _options(server))
    corrupt = {f.path for f in faulty_archive.faults if f.fault == "corrupt-landmask"}
    key = next(o.key for o in archive.landmasks.values() if o.key not in corrupt)
    w = Window(100, 400, 3, 50)
    remote = read_landmask(s3, key, w)
    assert np.array_equal(remote, read_landmask(LocalStorage(faulty_archive.root), key, w))
    assert remote.shape == (300, 47) and remote.dtype == np.uint8


def test_inventory_keeps_many_header_reads_in_flight_on_s3(uploaded, faulty_archive, aws_env, monkeypatch):
    """On S3 each header and landmask read waits a round trip: the scan keeps REMOTE_CONCURRENCY of them in flight
    by default (not one batch of files per thread, which left a small archive's reads one after another), finding
    what the local scan finds."""
    server, bucket, prefix = uploaded
    lock, now, peak = threading.Lock(), [0], [0]
    plain = S3Storage._read_range

    def slow(self, key, start, length):
        with lock:
            now[0] += 1
            peak[0] = max(peak[0], now[0])
        try:
            time.sleep(0.02)  # a round trip's latency, so that reads issued together overlap
            return plain(self, key, start, length)
        finally:
            with lock:
                now[0] -= 1

    monkeypatch.setattr(S3Storage, "_read_range", slow)
    archive = open_archive(S3Storage(bucket, prefix, _options(server)).url, _options(server))
    assert 8 <= len(archive.tiles) <= 64  # within one local batch: read one by one before
    inv = build_inventory(archive)
    assert peak[0] >= 8, peak
    local = build_inventory(open_archive(faulty_archive.root))
    assert {(p.path, p.kind) for p in inv.problems} == {(p.path, p.kind) for p in local.problems}
    assert len(inv.tiles) == len(local.tiles)
    peak[0] = 0
    build_inventory(archive, workers=3)
    assert 2 <= peak[0] <= 3, peak


def test_read_plan_batches_local_files_and_reads_remote_ones_one_by_one(uploaded, faulty_archive, aws_env):
    server, bucket, prefix = uploaded
    local, remote = LocalStorage(faulty_archive.root), S3Storage(bucket, prefix, _options(server))
    assert read_plan(local, None, False, 64) == (LOCAL_CONCURRENCY, 64)
    assert read_plan(remote, None, False, 64) == (REMOTE_CONCURRENCY, 1)
    assert read_plan(remote, None, True, 1) == (LOCAL_CONCURRENCY, 1)  # hashing streams whole files: bandwidth
    assert read_plan(remote, 5, False, 64) == (5, 1) and read_plan(local, 5, True, 8) == (5, 8)


def test_landmasks_are_read_without_a_cloud_session(uploaded, faulty_archive, aws_env, monkeypatch):
    """GDAL reads a landmask from a local file or from bytes already fetched: rasterio must not build an AWS session
    (and resolve credentials) for it, as it does by default whenever boto3 is installed and credentials are set."""
    import boto3.session

    server, bucket, prefix = uploaded
    made = []
    plain = boto3.session.Session.__init__

    def counting(self, *a, **kw):
        made.append(1)
        plain(self, *a, **kw)

    monkeypatch.setattr(boto3.session.Session, "__init__", counting)
    s3 = S3Storage(bucket, prefix, _options(server))  # its own client is made here, before counting starts
    archive = open_archive(s3.url, _options(server))
    corrupt = {f.path for f in faulty_archive.faults if f.fault == "corrupt-landmask"}
    keys = [o.key for o in archive.landmasks.values() if o.key not in corrupt][:3]
    local = LocalStorage(faulty_archive.root)
    made.clear()
    for key in keys:
        assert np.array_equal(read_landmask(s3, key), read_landmask(local, key))
    assert made == []


def test_seekable_objects_small_read_whole_large_by_ranges(uploaded, faulty_archive, aws_env):
    """A registry no larger than the buffer costs one GET (pyarrow's seeks would each be a round trip); a larger
    object is read by ranges; both give the local bytes wherever a reader seeks."""
    from transcode.storage.rangefile import BUFFER, open_seekable

    server, bucket, prefix = uploaded
    s3 = S3Storage(bucket, prefix, _options(server))
    local = LocalStorage(faulty_archive.root)
    archive = open_archive(s3.url, _options(server))
    small = "registry.parquet"
    large = next(t.embeddings_key for t in archive.tiles if t.embeddings is not None and t.embeddings.size > BUFFER)
    assert s3.stat(small).size <= BUFFER
    for key, gets in ((small, 1), (large, None)):
        want = (Path(faulty_archive.root) / key).read_bytes()
        s3.requests.clear()
        with open_seekable(s3, key) as f:
            f.seek(-8, 2)
            tail = f.read(8)
            f.seek(3)
            head = f.read(100)
        assert (tail, head) == (want[-8:], want[3:103])
        if gets is not None:
            assert s3.requests["GetObject"] == gets, dict(s3.requests)
        else:
            assert s3.requests["GetObject"] >= 2 and s3.requests.get("HeadObject", 0) == 1, dict(s3.requests)
    assert local.local_path(small) is not None


def test_inventory_never_writes_to_the_source_bucket(uploaded):
    server, bucket, prefix = uploaded
    client = server.client()

    def listing():
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return [(o["Key"], o["Size"], o["ETag"]) for p in pages for o in p.get("Contents", [])]

    before = listing()
    r = _cli(server, "inventory", server.url(bucket, prefix), "--endpoint-url", server.endpoint_url,
             "--path-style", "--verify-hashes", "--out", "-", "--no-progress")
    assert r.returncode == 1
    assert listing() == before


def test_missing_bucket_and_prefix_are_clear_usage_errors(uploaded):
    server, bucket, _ = uploaded
    r = _cli(server, "inventory", server.url("no-such-bucket-xyz", "a"), "--endpoint-url", server.endpoint_url,
             "--path-style", "--out", "-")
    assert r.returncode == 2
    assert "no-such-bucket-xyz" in r.stderr and "does not exist" in r.stderr
    r = _cli(server, "inventory", server.url(bucket, "empty/prefix"), "--endpoint-url", server.endpoint_url,
             "--path-style", "--out", "-")
    assert r.returncode == 2 and "no such archive, or it is empty" in r.stderr


def test_wrong_credentials_exit_2_on_rgw(rgw_server, faulty_archive):
    env = rgw_server.env()
    env["AWS_SECRET_ACCESS_KEY"] = "wrong-secret-key-0000000000000000000000"
    bucket = rgw_server.new_bucket("cred")
    r = subprocess.run([sys.executable, "-m", "transcode", "inventory", rgw_server.url(bucket, "x"),
                        "--endpoint-url", rgw_server.endpoint_url, "--path-style", "--out", "-"],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2
    assert "access denied" in r.stderr and bucket in r.stderr
