"""`convert` killed at random moments (SIGKILL) and re-run ends byte-identical to an uninterrupted run, locally
(also a v2 conversion with nested depths 4,16 and stretch statistics) and on a real Ceph RGW (multipart uploads); a
shard is never visible half-written; a finished store is left alone."""

import io
import json
import re
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest
from outcomes import soak
from convert_helpers import (
    check_complete_shard,
    cli,
    cli_json,
    kill_at_random_moments,
    local_journal_count,
    partial_files,
    s3_journal_count,
    s3_objects,
    shard_keys,
    tree_digests,
    tree_state,
)

from transcode.engine.journal import JOURNAL_PREFIX
from transcode.format.manifest import MANIFEST_KEY
from transcode.format.sidecar import STATS_SUFFIX, STRETCH_PREFIX
from transcode.testing.synthetic import make_legacy_archive

# small shards: many per tile, so a run lasts long enough to be killed in the middle
LOCAL_LAYOUT = ["--shard-size", "256", "--chunk-size", "32"]
LOCAL_CHUNKS_PER_SHARD = (256 // 32) ** 2
# bigger shards on S3 so that embeddings shards exceed the 5 MiB part size (multipart uploads)
S3_LAYOUT = ["--shard-size", "1024", "--chunk-size", "32", "--part-size", "5"]
# kills in a row before the final run: CI's default, and the soak's with --fuzz-full (TESSERA_FUZZ_FULL=1)
CI_KILLS, FULL_KILLS = 4, 20


def _enough_kills(log, wanted: int, full: bool) -> None:
    """The soak killed a running conversion `wanted` times (CI tolerates one run that finished first)."""
    mid = log.mid_run()
    assert len(mid) >= (wanted if full else wanted - 1), f"only {len(mid)} kills hit a running conversion: {log}"


def _manifest_rows(data: bytes) -> list[dict]:
    return pq.read_table(io.BytesIO(data)).to_pylist()


def _without_etags(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "etag"} for r in rows]


def _convert_cmd(source, store, *extra):
    return [sys.executable, "-m", "transcode", "convert", str(source), str(store), *extra, "--no-progress"]


@pytest.fixture(scope="module")
def small_archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume") / "archive"
    make_legacy_archive(root, years=(2024,), preset="small", seed=21)
    return root


@pytest.fixture(scope="module")
def reference_store(small_archive, tmp_path_factory):
    """An uninterrupted CLI run: the bytes every resumed run must reproduce."""
    store = tmp_path_factory.mktemp("ref") / "store"
    report = cli_json("convert", str(small_archive), str(store), *LOCAL_LAYOUT, "--no-progress")
    assert report["shards_written"] == report["shards_planned"] > 20, report
    assert report["nothing_to_do"] is False and report["shards_already_done"] == 0
    return store, report


def test_kill_and_resume_locally_is_byte_identical(small_archive, reference_store, tmp_path, fuzz_full):
    ref, ref_report = reference_store
    total = ref_report["shards_planned"]
    store = tmp_path / "store"
    wanted = FULL_KILLS if fuzz_full else CI_KILLS
    t0 = time.monotonic()
    log = kill_at_random_moments(_convert_cmd(small_archive, store, *LOCAL_LAYOUT), total=total, seed=1234,
                                 done=lambda: local_journal_count(store), wanted=wanted, max_attempts=wanted * 3,
                                 leftovers=lambda: len(partial_files(store)))
    _enough_kills(log, wanted, fuzz_full)
    mid = log.mid_run()
    assert any(0 < k.done_at_kill for k in mid), log
    # the kills hit shard writing, not just start-up: some left a temporary file behind for the next run to clean
    assert any(k.leftovers for k in mid), log

    done_before_final = local_journal_count(store)
    final = cli_json("convert", str(small_archive), str(store), *LOCAL_LAYOUT, "--no-progress")
    assert final["shards_planned"] == total
    assert final["shards_already_done"] == done_before_final > 0, final  # resumed, not redone
    assert final["shards_written"] == total - done_before_final
    assert final["failed"] == [] and final["nothing_to_do"] is False

    assert partial_files(store) == []
    got, want = tree_digests(store), tree_digests(ref)
    assert sorted(got) == sorted(want)  # same objects, journal entries included
    assert len(shard_keys(got)) == 2 * total
    diff = sorted(k for k in want if got[k] != want[k])
    assert diff == [], f"{len(diff)} objects differ from the uninterrupted run: {diff[:10]}"

    # a finished store: nothing to do, and nothing touched
    before = tree_state(store)
    r = cli("convert", str(small_archive), str(store), *LOCAL_LAYOUT, "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "nothing to do" in r.stdout, r.stdout
    again = cli_json("convert", str(small_archive), str(store), *LOCAL_LAYOUT, "--no-progress")
    assert again["nothing_to_do"] is True and again["shards_written"] == 0 and again["metadata_written"] == 0
    assert again["shards_already_done"] == total
    assert tree_state(store) == before
    soak("local file system", log, wanted, time.monotonic() - t0)


# A v2 conversion with nested depths and stretch statistics: the small archive read as dataset 2.0
# (--dataset-version), since depths need a version >= 2. The uninterrupted run is inline, the killed ones use 2
# worker processes.
V2_OPTIONS = [*LOCAL_LAYOUT, "--depths", "4,16", "--stretch-sample-size", "5000", "--dataset-version", "2.0"]


def _v2_cmd(source, store, workers: int) -> list[str]:
    return _convert_cmd(source, store, *V2_OPTIONS, "--workers", str(workers))


def _v2_json(source, store, workers: int) -> dict:
    return cli_json("convert", str(source), str(store), *V2_OPTIONS, "--workers", str(workers), "--no-progress")


def _zone_years_being_rebuilt(store) -> int:
    """Zone-years whose statistics a run had invalidated (count -1) and not yet rebuilt: their record names no
    shards."""
    base = store / STRETCH_PREFIX
    if not base.exists():
        return 0
    return sum(json.loads(p.read_bytes())["shards"] is None for p in base.rglob("*.json"))


def test_kill_and_resume_with_depths_and_statistics_is_byte_identical(small_archive, tmp_path):
    ref = tmp_path / "ref"
    ref_report = _v2_json(small_archive, ref, workers=1)  # uninterrupted, inline
    total = ref_report["shards_planned"]
    assert ref_report["shards_written"] == total > 20 and ref_report["depths"] == [4, 16], ref_report
    zone_years = ref_report["stretch"]["zone_years"]
    assert ref_report["stretch"]["collected"] and len(zone_years) >= 2, ref_report["stretch"]

    store = tmp_path / "store"
    t0 = time.monotonic()
    log = kill_at_random_moments(_v2_cmd(small_archive, store, 2), total=total, seed=4016,
                                 done=lambda: local_journal_count(store),
                                 leftovers=lambda: _zone_years_being_rebuilt(store))
    mid = log.mid_run()
    assert len(mid) >= 3, f"only {len(mid)} kills hit a running conversion: {log}"
    assert any(0 < k.done_at_kill for k in mid), log
    # kills came while zone-years were invalidated and not yet rebuilt: the resume must rebuild them
    assert any(k.leftovers for k in mid), log
    # the killed runs' pool workers noticed and ended: none left behind
    assert [k.survivors for k in log.kills] == [0] * len(log.kills), log

    done_before_final = local_journal_count(store)
    final = _v2_json(small_archive, store, workers=2)
    assert final["shards_already_done"] == done_before_final > 0, final  # resumed, not redone
    assert final["shards_written"] == total - done_before_final and final["failed"] == []
    assert _zone_years_being_rebuilt(store) == 0 and partial_files(store) == []

    got, want = tree_digests(store), tree_digests(ref)
    assert sorted(got) == sorted(want)  # same objects: shards, depth shards, statistics, partials, journal, manifest
    for what in ("/embeddings_d4/c/", "/embeddings_d16/c/", "/stretch_sample/c/", "/stretch_stats_prod/c/"):
        assert any(what in k for k in want), what
    assert sum(k.endswith(STATS_SUFFIX) for k in want) == total
    assert MANIFEST_KEY in want
    diff = sorted(k for k in want if got[k] != want[k])
    assert diff == [], f"{len(diff)} objects differ from the uninterrupted run: {diff[:10]}"
    soak("local file system, v2 with depths 4,16, 2 worker processes", log, 4, time.monotonic() - t0)


def test_kill_and_resume_on_ceph_rgw_is_byte_identical(rgw_server, tmp_path_factory, fuzz_full):
    server = rgw_server
    source = tmp_path_factory.mktemp("rgw-src") / "archive"
    # the full soak's 20 kills each land while a multipart upload is open: it needs more shards big enough for
    # multipart uploads (about 4 of every 6 here) than kills
    make_legacy_archive(source, years=range(2019, 2025) if fuzz_full else (2023, 2024), preset="tiny", seed=22)
    local_ref = tmp_path_factory.mktemp("rgw-ref") / "store"
    ref_report = cli_json("convert", str(source), str(local_ref), *S3_LAYOUT, "--no-progress")
    total = ref_report["shards_planned"]
    assert total >= 8, ref_report

    bucket, prefix = server.new_bucket("resume"), "stores/b"
    url = server.url(bucket, prefix)
    s3 = ["--store-endpoint-url", server.endpoint_url, "--store-region", server.region, "--store-path-style"]
    client = server.client()

    def open_uploads():
        return client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])

    wanted = FULL_KILLS if fuzz_full else CI_KILLS
    t0 = time.monotonic()
    log = kill_at_random_moments(_convert_cmd(source, url, *S3_LAYOUT, *s3), env=server.env(), total=total,
                                 seed=99, wanted=wanted, max_attempts=wanted * 3,
                                 done=lambda: s3_journal_count(client, bucket, prefix),
                                 kill_when=lambda: bool(open_uploads()), leftovers=lambda: len(open_uploads()),
                                 poll=0.02)
    _enough_kills(log, wanted, fuzz_full)
    mid = log.mid_run()
    # some kills interrupted a multipart upload: the next run must abort it
    assert any(k.leftovers for k in mid), log

    done_before_final = s3_journal_count(client, bucket, prefix)
    final = cli_json("convert", str(source), url, *S3_LAYOUT, *s3, "--no-progress", env=server.env())
    assert final["shards_already_done"] == done_before_final > 0, final
    assert final["shards_written"] == total - done_before_final and final["failed"] == []
    assert open_uploads() == [], "unfinished multipart uploads left behind"

    # every object matches the local run byte for byte, except where a storage-specific ETag is recorded
    # (journal entries and the manifest): there, everything but the ETag matches
    listing = s3_objects(client, bucket, prefix)
    assert sorted(listing) == sorted(tree_digests(local_ref))
    remote = {k: client.get_object(Bucket=bucket, Key=f"{prefix}/{k}")["Body"].read() for k in listing}
    diff = []
    for k, data in remote.items():
        here = (local_ref / k).read_bytes()
        if k == MANIFEST_KEY:
            same = _without_etags(_manifest_rows(data)) == _without_etags(_manifest_rows(here))
        elif k.startswith((JOURNAL_PREFIX + "/", STRETCH_PREFIX + "/")) and k.endswith(".json"):
            # journal entries and stretch-statistics records hold the objects' records, ETags included
            same = _without_etags(json.loads(data)["objects"]) == _without_etags(json.loads(here)["objects"])
        else:
            same = data == here
        if not same:
            diff.append(k)
    assert diff == [], f"{len(diff)} objects differ from the local uninterrupted run: {sorted(diff)[:10]}"

    # multipart uploads really happened, and the store's manifest and journal record the ETags RGW reports
    multipart = [k for k, o in listing.items() if re.search(r"-\d+$", o["ETag"].strip('"'))]
    assert multipart, {k: o["ETag"] for k, o in listing.items() if k in shard_keys(listing)}
    etags = {row["key"]: row["etag"] for row in _manifest_rows(remote[MANIFEST_KEY])}
    assert shard_keys(listing) <= set(etags) and MANIFEST_KEY not in etags
    assert {k: listing[k]["ETag"].strip('"') for k in etags} == etags
    journal = {o["key"]: o["etag"] for k, data in remote.items() if k.startswith(JOURNAL_PREFIX + "/")
               and k.endswith(".json") for o in json.loads(data)["objects"]}
    assert journal == {k: etags[k] for k in shard_keys(listing)}

    # nothing to do on the finished store: no object rewritten
    state = {k: (o["ETag"], o["LastModified"]) for k, o in listing.items()}
    again = cli_json("convert", str(source), url, *S3_LAYOUT, *s3, "--no-progress", env=server.env())
    assert again["nothing_to_do"] is True and again["shards_written"] == 0
    assert {k: (o["ETag"], o["LastModified"]) for k, o in s3_objects(client, bucket, prefix).items()} == state
    soak("Ceph RADOS Gateway, multipart uploads open at each kill", log, wanted, time.monotonic() - t0)


def test_a_shard_is_never_visible_half_written(small_archive, reference_store, tmp_path):
    _, ref_report = reference_store
    store = tmp_path / "store"
    proc = subprocess.Popen(_convert_cmd(small_archive, store, *LOCAL_LAYOUT, "--json"), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    checked = polls = 0
    seen_counts = set()
    saw_partial = False
    deadline = time.monotonic() + 300
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            polls += 1
            visible = sorted(p for p in store.rglob("*") if p.is_file()) if store.exists() else []
            keys = {p.relative_to(store).as_posix(): p for p in visible}
            saw_partial |= any(k.endswith(".partial") for k in keys)
            shards = shard_keys(keys)
            seen_counts.add(len(shards))
            for k in shards:
                try:
                    data = keys[k].read_bytes()
                except FileNotFoundError:  # replaced between listing and reading: the new one is checked later
                    continue
                check_complete_shard(data, LOCAL_CHUNKS_PER_SHARD, k)
                checked += 1
    finally:
        if proc.poll() is None:
            proc.kill()
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()[-3000:]
    report = json.loads(out)
    assert report["shards_written"] == ref_report["shards_planned"]
    # the poller watched the store fill up while shards were being written
    assert len(seen_counts) >= 3 and checked >= 20, (polls, checked, sorted(seen_counts))
    assert saw_partial, "never caught a write in progress"
    final = shard_keys(p.relative_to(store).as_posix() for p in store.rglob("*") if p.is_file())
    assert len(final) == 2 * report["shards_planned"]
    for k in final:
        check_complete_shard((store / k).read_bytes(), LOCAL_CHUNKS_PER_SHARD, k)
