"""S3 at full speed, same bytes: the object writer keeps several multipart parts in flight (never more than
PARTS_IN_FLIGHT), large ranged reads are split into parallel GETs, and `convert` to an RGW store killed (SIGKILL)
while parts are in flight resumes to byte-identical objects with no multipart upload left open."""

import hashlib
import random
import sys
import threading
import time

import crc32c
import pytest
from convert_helpers import cli_json, kill_at_random_moments, s3_journal_count, s3_objects, tree_digests
from faultproxy import FaultyProxy

from transcode.engine.journal import JOURNAL_PREFIX
from transcode.format.manifest import MANIFEST_KEY
from transcode.format.sidecar import STRETCH_PREFIX
from transcode.storage import S3Options, S3Storage
from transcode.storage import s3 as s3mod
from transcode.testing.synthetic import make_legacy_archive

MiB = 1024 * 1024


def _storage(endpoint: str, server, bucket: str, attempts: int | None = None) -> S3Storage:
    return S3Storage(bucket, "pre", S3Options(endpoint_url=endpoint, region=server.region, path_style=True,
                                              max_attempts=attempts))


def test_parts_go_out_together_and_never_more_than_the_bound(rgw_server, monkeypatch):
    rgw_server.apply_env(monkeypatch)
    bucket = rgw_server.new_bucket("ov")
    gate = threading.Event()
    arrived: list[str] = []
    lock = threading.Lock()

    def hold_parts(method: str, path: str):
        # every part upload waits at the gate: what reaches it meanwhile is what the writer has in flight
        if method == "PUT" and path.endswith("/pre/big"):
            with lock:
                arrived.append(path)
            gate.wait(120)
        return None

    data = random.Random(3).randbytes(6 * 5 * MiB + 123)  # 7 parts of 5 MiB, the last short
    with FaultyProxy(rgw_server.endpoint_url, fail=hold_parts) as proxy:
        w = _storage(proxy.url, rgw_server, bucket).open_writer("big", 5 * MiB)
        wrote = threading.Event()

        def write() -> None:
            for i in range(0, len(data), 3 * MiB):
                w.write(memoryview(data)[i:i + 3 * MiB])
            wrote.set()

        t = threading.Thread(target=write)
        t.start()
        while len(arrived) < s3mod.PARTS_IN_FLIGHT:
            assert t.is_alive() or wrote.is_set(), "the writer stopped"
            time.sleep(0.01)
        time.sleep(1.0)  # room for a part beyond the bound to show up, were there one
        held = len(arrived)
        blocked = not wrote.is_set()
        gate.set()
        t.join(120)
        w.commit()
    assert held == s3mod.PARTS_IN_FLIGHT >= 2
    assert blocked, "the writer went on filling parts beyond the bound while none could be uploaded"
    c = rgw_server.client()
    assert c.get_object(Bucket=bucket, Key="pre/big")["Body"].read() == data
    assert c.head_object(Bucket=bucket, Key="pre/big")["ETag"].strip('"') == w.etag and w.etag.endswith("-7")
    assert (w.size, w.md5.hexdigest(), w.crc) == (len(data), hashlib.md5(data).hexdigest(), crc32c.crc32c(data))


def test_a_failed_part_among_several_in_flight_aborts_the_upload(rgw_server, monkeypatch):
    rgw_server.apply_env(monkeypatch)
    bucket = rgw_server.new_bucket("ov")
    puts = []

    def refuse_third(method: str, path: str):
        if method == "PUT" and path.endswith("/pre/big"):
            puts.append(path)
            if len(puts) == 3:
                return (403, "AccessDenied")  # not retried: the part fails for good
        return None

    c = rgw_server.client()
    proxy = FaultyProxy(rgw_server.endpoint_url, fail=refuse_third)
    try:
        w = _storage(proxy.url, rgw_server, bucket, attempts=2).open_writer("big", 5 * MiB)
        with pytest.raises(Exception, match="pre/big"):
            for _ in range(8):
                w.write(random.Random(4).randbytes(5 * MiB))
            w.commit()
    finally:
        proxy.close()
    assert "Contents" not in c.list_objects_v2(Bucket=bucket)
    assert not c.list_multipart_uploads(Bucket=bucket).get("Uploads")


@pytest.mark.parametrize("start,length", [(0, 7 * MiB + 5), (12345, 3 * MiB), (6 * MiB, 4 * MiB), (0, 20 * MiB),
                                          (9 * MiB, MiB)])
def test_split_ranges_read_the_same_bytes(rgw_server, monkeypatch, start, length):
    rgw_server.apply_env(monkeypatch)
    monkeypatch.setattr(s3mod, "RANGE_PIECE", MiB)
    bucket = rgw_server.new_bucket("rng")
    data = random.Random(5).randbytes(7 * MiB + 5)
    rgw_server.client().put_object(Bucket=bucket, Key="pre/obj", Body=data)
    s = _storage(rgw_server.endpoint_url, rgw_server, bucket)
    got = s.read_range("obj", start, length)
    assert bytes(got) == data[start:start + length]
    wanted = min(s3mod.RANGE_SPLIT, length // MiB)
    assert s.calls["GetObject"] == (wanted if wanted >= 2 else 1)


def _same_as_local(client, bucket: str, prefix: str, local_ref) -> list[str]:
    """Keys whose bytes differ from the local run (journal, statistics and manifest compared without ETags)."""
    import io
    import json

    import pyarrow.parquet as pq

    def rows(data: bytes) -> list[dict]:
        return [{k: v for k, v in r.items() if k != "etag"} for r in pq.read_table(io.BytesIO(data)).to_pylist()]

    def objs(data: bytes) -> list[dict]:
        return [{k: v for k, v in o.items() if k != "etag"} for o in json.loads(data)["objects"]]

    listing = s3_objects(client, bucket, prefix)
    assert sorted(listing) == sorted(tree_digests(local_ref))
    diff = []
    for k in listing:
        data = client.get_object(Bucket=bucket, Key=f"{prefix}/{k}")["Body"].read()
        here = (local_ref / k).read_bytes()
        if k == MANIFEST_KEY:
            same = rows(data) == rows(here)
        elif k.startswith((JOURNAL_PREFIX + "/", STRETCH_PREFIX + "/")) and k.endswith(".json"):
            same = objs(data) == objs(here)
        else:
            same = data == here
        if not same:
            diff.append(k)
    return diff


def test_kill_with_parts_in_flight_then_resume_is_byte_identical(rgw_server, tmp_path_factory):
    # 5 MiB parts behind a proxy adding 0.1 s per request: a shard's parts overlap; each kill waits for an open
    # upload that already holds two parts, the writer then having more on their way
    layout = ["--shard-size", "1024", "--chunk-size", "32", "--part-size", "5"]
    source = tmp_path_factory.mktemp("ov-src") / "archive"
    make_legacy_archive(source, years=(2023, 2024), preset="tiny", seed=23)
    local_ref = tmp_path_factory.mktemp("ov-ref") / "store"
    total = cli_json("convert", str(source), str(local_ref), *layout, "--no-progress")["shards_planned"]
    bucket, prefix = rgw_server.new_bucket("ovkill"), "stores/o"
    client = rgw_server.client()

    def open_uploads() -> list[dict]:
        return client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])

    def parts_landed() -> bool:
        for up in open_uploads():
            try:
                if len(client.list_parts(Bucket=bucket, Key=up["Key"], UploadId=up["UploadId"]).get("Parts", [])) >= 2:
                    return True
            except client.exceptions.NoSuchUpload:
                pass
        return False

    with FaultyProxy(rgw_server.endpoint_url, delay=0.1) as proxy:
        s3 = ["--store-endpoint-url", proxy.url, "--store-region", rgw_server.region, "--store-path-style"]
        cmd = [sys.executable, "-m", "transcode", "convert", str(source), rgw_server.url(bucket, prefix), *layout,
               *s3, "--no-progress"]
        log = kill_at_random_moments(cmd, env=rgw_server.env(), total=total, seed=7, wanted=3, max_attempts=9,
                                     done=lambda: s3_journal_count(client, bucket, prefix), kill_when=parts_landed,
                                     leftovers=lambda: len(open_uploads()), poll=0.02)
        mid = log.mid_run()
        assert len(mid) >= 2 and any(k.leftovers for k in mid), log
        done_before = s3_journal_count(client, bucket, prefix)
        final = cli_json("convert", str(source), rgw_server.url(bucket, prefix), *layout, *s3, "--no-progress",
                         env=rgw_server.env())
    assert final["shards_already_done"] == done_before and final["failed"] == []
    assert final["shards_written"] == total - done_before
    assert open_uploads() == [], "unfinished multipart uploads left behind"
    assert _same_as_local(client, bucket, prefix, local_ref) == []


def test_latency_proxy_tool_forwards_on_loopback_with_its_delay(rgw_server, monkeypatch):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("latency_proxy",
                                                  Path(__file__).resolve().parents[1] / "tools" / "latency_proxy.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    rgw_server.apply_env(monkeypatch)
    bucket = rgw_server.new_bucket("lat")
    rgw_server.client().put_object(Bucket=bucket, Key="pre/x", Body=b"abc" * 1000)
    with pytest.raises(ValueError):
        tool.latency_proxy(rgw_server.endpoint_url, -1)
    with tool.latency_proxy(rgw_server.endpoint_url, 20) as proxy:
        assert proxy.url.startswith("http://127.0.0.1:") and proxy.delay == 0.02
        s = _storage(proxy.url, rgw_server, bucket)
        t0 = time.perf_counter()
        assert s.read_range("x", 10, 20) == (b"abc" * 1000)[10:30]
        waited = time.perf_counter() - t0
        # a relay, not an HTTP proxy: whole bodies pass both ways, every request at least `delay` late
        assert proxy.connections >= 1 and proxy.bytes_up > 0 and proxy.bytes_down >= 20
        assert waited >= 0.02
        big = random.Random(5).randbytes(3 * MiB + 7)
        s.put("big", big)
        assert rgw_server.client().get_object(Bucket=bucket, Key="pre/big")["Body"].read() == big
        assert proxy.bytes_up >= len(big)
    with pytest.raises(ValueError):
        tool.latency_proxy("https://127.0.0.1:1", 20)
