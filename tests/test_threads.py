"""Threads within a shard (issue 14): a store's bytes do not depend on the encoding threads per worker, the number of
workers or the executor (inline, processes, Dask); a remote source read ahead, several ranged GETs at a time, gives
the same bytes as the local one; a run killed with threads resumes byte-identical; the band pipeline hands results
back in order, overlaps reading with encoding and holds no more bands than it has slots; the split shard writer and
stretch statistics give the bytes of the one-call forms."""

from __future__ import annotations

import io
import sys
import threading
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
from convert_helpers import cli, cli_json, kill_at_random_moments, local_journal_count, partial_files, tree_digests

from transcode.engine.convert import ConvertOptions, convert
from transcode.engine.encodepool import STAGES, BandPipeline, available_cores, resolve_threads
from transcode.engine.stretchstats import ShardStats
from transcode.format.sidecar import MANIFEST_KEY
from transcode.testing.synthetic import make_legacy_archive

SHARD, CHUNK = (256, 256), (32, 32)
K = 2000
V2 = "2.0"  # nested depths need a v2 dataset: with them every array's encoder runs on the threads
CLI_LAYOUT = ["--shard-size", "256", "--chunk-size", "32", "--depths", "4,16", "--stretch-sample-size", str(K)]


def _opts(**kw) -> ConvertOptions:
    return ConvertOptions(shard=SHARD, chunk=CHUNK, stretch_sample_size=K, depths=[4, 16], **kw)


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("threads") / "archive"
    make_legacy_archive(root, years=(2024,), preset="small", seed=15, dataset_version=V2)
    return root


@pytest.fixture(scope="module")
def reference(archive, tmp_path_factory):
    """One thread, inline: the bytes every other run must reproduce."""
    path = tmp_path_factory.mktemp("threads-ref") / "store"
    report = convert(str(archive), str(path), _opts(threads_per_worker=1))
    assert report.ok and report.shards_written == report.shards_planned > 10, report
    assert report.threads_per_worker == 1 and report.executor == "inline"
    return path, tree_digests(path)


def _same_bytes(path, want: dict[str, str], what: str) -> None:
    got = tree_digests(path)
    assert sorted(got) == sorted(want), what
    for part in ("/embeddings/c/", "/embeddings_d4/c/", "/scales/c/", "/stretch_stats_prod/c/", "/stretch_sample/c/"):
        assert any(part in k for k in want), part
    assert MANIFEST_KEY in want
    diff = sorted(k for k in want if got[k] != want[k])
    assert diff == [], f"{what}: {len(diff)} objects differ from one thread inline: {diff[:10]}"


@pytest.mark.parametrize("threads", [2, 4])
def test_inline_with_threads_is_byte_identical(archive, reference, tmp_path, threads):
    report = convert(str(archive), str(tmp_path / "s"), _opts(threads_per_worker=threads))
    assert report.ok and report.executor == "inline" and report.threads_per_worker == threads
    _same_bytes(tmp_path / "s", reference[1], f"inline, {threads} threads")


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_worker_processes_with_threads_are_byte_identical(archive, reference, tmp_path, threads):
    report = convert(str(archive), str(tmp_path / "s"), _opts(workers=2, threads_per_worker=threads))
    assert report.ok and report.executor == "processes" and report.threads_per_worker == threads
    _same_bytes(tmp_path / "s", reference[1], f"2 processes, {threads} threads")


@pytest.mark.parametrize("workers", [1, 2])
def test_dask_with_threads_is_byte_identical(archive, reference, tmp_path, workers):
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        for threads in (1, 2, 4):
            path = tmp_path / f"s{threads}"
            report = convert(str(archive), str(path), _opts(scheduler=client, threads_per_worker=threads))
            assert report.ok and report.executor == "dask" and report.threads_per_worker == threads
            _same_bytes(path, reference[1], f"Dask, {workers} workers, {threads} threads")


def test_default_threads_are_the_cores_a_worker_may_use(archive, reference, tmp_path):
    assert resolve_threads(None) == available_cores() >= 1
    assert resolve_threads(3) == 3
    report = convert(str(archive), str(tmp_path / "s"), _opts())
    assert report.threads_per_worker == available_cores()
    _same_bytes(tmp_path / "s", reference[1], "default threads")


def test_remote_source_read_ahead_is_byte_identical(archive, reference, rgw_server, tmp_path):
    """Windows fetched with several ranged GETs in flight on the Ceph RADOS Gateway, read ahead of the encoder."""
    bucket = rgw_server.new_bucket("threads-src")
    rgw_server.upload_tree(archive, bucket, "arch")
    s3 = ["--source-endpoint-url", rgw_server.endpoint_url, "--source-region", rgw_server.region,
          "--source-path-style"]
    for threads in ("1", "2"):
        path = tmp_path / f"s{threads}"
        report = cli_json("convert", rgw_server.url(bucket, "arch"), str(path), *CLI_LAYOUT, *s3,
                          "--threads-per-worker", threads, "--no-progress", env=rgw_server.env())
        assert report["failed"] == [] and report["threads_per_worker"] == int(threads), report
        # the sidecar records the source and the source's objects (their keys and times), so it differs; every
        # object of the Zarr hierarchy, stretch statistics included, is the local run's
        got = {k: v for k, v in tree_digests(path).items() if not k.startswith(".tessera/")}
        want = {k: v for k, v in reference[1].items() if not k.startswith(".tessera/")}
        assert sorted(got) == sorted(want) and any("/stretch_sample/c/" in k for k in want)
        assert [k for k in want if got[k] != want[k]] == [], f"{threads} threads from RGW"
        rows = pq.read_table(io.BytesIO((path / MANIFEST_KEY).read_bytes())).to_pylist()
        ref_rows = pq.read_table(io.BytesIO((reference[0] / MANIFEST_KEY).read_bytes())).to_pylist()
        zarr_rows = [{k: v for k, v in r.items() if k != "etag"} for r in rows if not r["key"].startswith(".")]
        assert zarr_rows == [{k: v for k, v in r.items() if k != "etag"} for r in ref_rows
                             if not r["key"].startswith(".")]


def test_kill_and_resume_with_threads_is_byte_identical(archive, reference, tmp_path):
    total = sum(1 for k in reference[1] if k.startswith(".tessera/journal/") and k.endswith(".json"))
    store = tmp_path / "store"
    cmd = [sys.executable, "-m", "transcode", "convert", str(archive), str(store), *CLI_LAYOUT, "--workers", "2",
           "--threads-per-worker", "3", "--no-progress"]
    # after the first kill, each kill waits until a shard is being written (its temporary file exists), so that
    # some kills land mid-write however fast the machine encodes; the workers die with the parent (these shards
    # take milliseconds: left to notice their parent's end, they would finish them first)
    log = kill_at_random_moments(cmd, total=total, seed=1415, done=lambda: local_journal_count(store),
                                 kill_when=lambda: bool(partial_files(store)), extra_delay=(0.0, 0.005),
                                 leftovers=lambda: len(partial_files(store)), kill_children=True)
    mid = log.mid_run()
    assert len(mid) >= 3, f"only {len(mid)} kills hit a running conversion: {log}"
    assert any(0 < k.done_at_kill for k in mid), log
    assert any(k.leftovers for k in mid), log  # some kills came while shards were being written
    assert [k.survivors for k in log.kills] == [0] * len(log.kills), log
    done_before = local_journal_count(store)
    final = cli_json("convert", str(archive), str(store), *CLI_LAYOUT, "--workers", "2", "--threads-per-worker", "3",
                     "--no-progress")
    assert final["shards_already_done"] == done_before > 0 and final["failed"] == [], final
    assert partial_files(store) == []
    _same_bytes(store, reference[1], "killed and resumed with 2 workers of 3 threads")


def test_cli_has_the_flag_and_reports_the_threads(archive, tmp_path):
    r = cli("convert", "--help")
    assert r.returncode == 0 and "--threads-per-worker" in r.stdout
    assert "--threads-per-worker" in cli("extend", "--help").stdout
    bad = cli("convert", str(archive), str(tmp_path / "x"), "--threads-per-worker", "0")
    assert bad.returncode == 2 and "--threads-per-worker" in bad.stderr
    assert not (tmp_path / "x").exists()
    report = cli_json("convert", str(archive), str(tmp_path / "s"), *CLI_LAYOUT, "--threads-per-worker", "2",
                      "--no-progress")
    assert report["threads_per_worker"] == 2
    text = cli("convert", str(archive), str(tmp_path / "s"), *CLI_LAYOUT, "--no-progress")
    assert text.returncode == 0, text.stderr


# ---------------------------------------------------------------- the pieces


def test_pipeline_hands_back_in_order_with_bounded_slots():
    rng = np.random.default_rng(3)
    delays = rng.integers(0, 3, size=40) / 1000
    made, held, owner, most = [], set(), {}, [0]
    lock = threading.Lock()

    def make_slot():
        made.append(object())
        return made[-1]

    def read(i, slot):
        with lock:
            assert id(slot) not in held, "a slot handed to two items at once"
            held.add(id(slot))
            owner[i] = id(slot)
            most[0] = max(most[0], len(held))
        threading.Event().wait(delays[i])
        return i * 10

    def work(i, slot, got):
        threading.Event().wait(delays[-1 - i])
        return got + 1

    out = []
    with BandPipeline(threads=4, slots=3, make_slot=make_slot) as pipe:
        for i, res in pipe.run(range(40), read, work):
            out.append((i, res))
            with lock:  # the caller is done with item i: its slot may be reused from the next result on
                held.discard(owner[i])
    assert out == [(i, i * 10 + 1) for i in range(40)]
    assert len(made) <= 3 and most[0] <= 3


def test_pipeline_reads_ahead_while_an_item_is_encoded():
    """Item 0's work waits until item 1 has been read: it can only finish if reading goes on beside it."""
    read_1 = threading.Event()

    def read(i, slot):
        if i == 1:
            read_1.set()
        return i

    def work(i, slot, got):
        if i == 0:
            assert read_1.wait(30), "item 1 was not read while item 0 was being encoded"
        return got

    with BandPipeline(threads=1, slots=2, make_slot=object) as pipe:
        assert [r for _, r in pipe.run(range(4), read, work)] == [0, 1, 2, 3]


def test_pipeline_fetches_remote_windows_at_once_and_stops_on_errors():
    barrier = threading.Barrier(4, timeout=30)  # broken (an error) unless all four calls run at the same time
    with BandPipeline(threads=2, slots=2, make_slot=object, fetchers=4) as pipe:
        assert pipe.fetch_all([lambda k=k: (barrier.wait(), k)[1] for k in range(4)]) == [0, 1, 2, 3]

    def work(i, slot, got):
        if i == 5:
            raise ValueError("band 5 is bad")
        return i

    seen = []
    with pytest.raises(ValueError, match="band 5 is bad"), BandPipeline(threads=2, slots=3, make_slot=object) as pipe:
        for i, _ in pipe.run(range(100), lambda i, s: i, work):
            seen.append(i)
    assert seen == [0, 1, 2, 3, 4]
    assert not [t for t in threading.enumerate() if t.name.startswith(("band-read", "band-encode", "band-fetch"))]


def test_read_ahead_fetches_later_items_within_its_byte_budget():
    """While item 0's fetches hang, the next items' are already running, as many as 35 bytes allow (3 of 10 bytes)."""
    started: list[tuple[int, int]] = []
    lock = threading.Lock()
    gate = threading.Event()

    def call(i: int, j: int) -> tuple[int, int]:
        with lock:
            started.append((i, j))
        if i == 0:
            assert gate.wait(30)
        return i, j

    with BandPipeline(threads=1, slots=2, make_slot=object, fetchers=8) as pipe:
        ahead = pipe.read_ahead(list(range(10)), lambda i: [lambda i=i, j=j: call(i, j) for j in range(2)],
                                nbytes=lambda i: 10, budget=35)
        first: list = []
        t = threading.Thread(target=lambda: first.append(ahead.take(0)))
        t.start()
        deadline = time.monotonic() + 30
        while len(started) < 6 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # room for a fetch beyond the budget to start, were there one
        assert sorted(started) == [(i, j) for i in range(3) for j in range(2)] and not first
        gate.set()
        t.join(30)
        assert first == [[(0, 0), (0, 1)]]
        with pytest.raises(RuntimeError, match="in their order"):
            ahead.take(5)
        assert [ahead.take(i) for i in range(1, 10)] == [[(i, 0), (i, 1)] for i in range(1, 10)]
        assert ahead.most_held <= 35 and ahead.held == 0


def test_read_ahead_hands_a_fetch_error_to_its_item():
    def calls(i: int) -> list:
        def fail() -> None:
            raise OSError(f"window {i} unreadable")
        return [fail] if i == 2 else [lambda: i]

    with BandPipeline(threads=1, slots=2, make_slot=object, fetchers=2) as pipe:
        ahead = pipe.read_ahead([0, 1, 2, 3], calls, nbytes=lambda i: 1, budget=100)
        assert ahead.take(0) == [0] and ahead.take(1) == [1]
        with pytest.raises(OSError, match="window 2 unreadable"):
            ahead.take(2)
        ahead.close()
    with BandPipeline(threads=1, slots=2, make_slot=object) as pipe, pytest.raises(RuntimeError, match="fetch"):
        pipe.read_ahead([0], calls, nbytes=lambda i: 1)


def test_stage_clock_says_which_stage_waited_for_which():
    """Slow reads show as encoders waiting for them; slow encoding as the caller waiting; a slow remote fetch as the
    reader waiting for its source; a slow caller (the store) as writing."""

    def run(read_s: float, work_s: float, write_s: float) -> dict[str, float]:
        with BandPipeline(threads=2, slots=3, make_slot=object) as pipe:
            for _ in pipe.run(range(8), lambda i, s: time.sleep(read_s), lambda i, s, g: time.sleep(work_s)):
                with pipe.clock.timing("write"):
                    time.sleep(write_s)
            return dict(pipe.clock.seconds)

    assert set(run(0, 0, 0)) == set(STAGES)
    slow_read = run(0.05, 0, 0)
    assert slow_read["read"] >= 0.35 and slow_read["encode_waiting_for_read"] >= 0.3 > slow_read["encode"]
    slow_work = run(0, 0.05, 0)
    assert slow_work["encode"] >= 0.35 and slow_work["write_waiting_for_encode"] >= 0.15
    assert slow_work["encode_waiting_for_read"] < 0.1
    slow_write = run(0, 0, 0.05)
    assert slow_write["write"] >= 0.35 and slow_write["write_waiting_for_encode"] < 0.1

    with BandPipeline(threads=1, slots=2, make_slot=object, fetchers=2) as pipe:
        ahead = pipe.read_ahead([0, 1], lambda i: [lambda: time.sleep(0.2)], nbytes=lambda i: 1, budget=1)
        ahead.take(0)
        ahead.take(1)
        assert 0.35 <= pipe.clock.seconds["read_waiting_for_source"] < 5


def test_convert_reports_the_seconds_of_each_stage(archive, tmp_path):
    report = convert(str(archive), str(tmp_path / "s"), _opts(threads_per_worker=2))
    stages = report.stage_seconds
    assert set(stages) == set(STAGES) and stages["encode"] > 0 and stages["write"] > 0
    assert stages["read_waiting_for_source"] == 0  # a local source is read in place, nothing fetched ahead
    assert report.to_json()["stage_seconds"] == stages


def test_split_statistics_equal_the_one_call_form():
    rng = np.random.default_rng(8)
    emb = rng.integers(-128, 128, size=(96, 64, 128), dtype=np.int8)
    sc = rng.uniform(0.01, 0.2, size=(96, 64)).astype(np.float32)
    sc[rng.random(sc.shape) < 0.2] = np.nan
    sc[:5] = np.inf
    one, split = ShardStats(31, 2024, 500), ShardStats(31, 2024, 500)
    for i in range(0, 96, 32):
        one.add(emb[i:i + 32], sc[i:i + 32], 1000 + i, 64)
    shares = [split.measure(emb[i:i + 32], sc[i:i + 32], 1000 + i, 64) for i in range(0, 96, 32)]
    emb[...] = 0  # the shares hold copies: the buffers may be reused at once
    for share in shares:
        split.fold(share)
    assert one.partial().to_bytes() == split.partial().to_bytes()


def test_split_shard_writer_equals_the_one_call_form():
    from transcode.codecs.spec import parse_codec_options
    from transcode.engine.shardwriter import ShardWriter
    from transcode.format.arrays import EMBEDDINGS
    from transcode.storage import LocalStorage

    rng = np.random.default_rng(4)
    chunks = rng.integers(-4, 4, size=(12, 128, 32, 32), dtype=np.int8)
    which = np.array([0, 2, 3, 7, 11])
    ks = np.array([1, 5, 6, 9, 40])
    codec = parse_codec_options(None)[EMBEDDINGS.codec]
    nbytes = chunks[0].nbytes

    def written(split: bool, batch: bool) -> bytes:
        storage = LocalStorage(tmp)
        sink = storage.open_writer(f"o{split}{batch}")
        w = ShardWriter(sink, 64, codec.encoder(EMBEDDINGS.dtype),
                        codec.batch_encoder(EMBEDDINGS.dtype, nbytes) if batch else None)
        if split:
            out = np.empty(w.worst(len(which)), np.uint8)
            sizes, data = w.encode(chunks, which, memoryview(out))
            w.append(ks, sizes, data)
        else:
            w.add_run(ks, chunks, which)
        w.finish()
        sink.commit()
        return storage.read(f"o{split}{batch}")

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        one = written(False, True)
        assert written(True, True) == one == written(True, False) == written(False, False)


def test_band_height_and_budget_do_not_change_the_bytes(archive, tmp_path, monkeypatch):
    """Without nested depths (whose 128-row chunks fix the band height here): bands of one, two or four inner-chunk
    rows, and a budget so small that bands shrink to one chunk row and two are in flight, give the same bytes."""
    import dataclasses

    from transcode.engine import shardbuild

    plain = {"shard": SHARD, "chunk": CHUNK, "stretch_sample_size": K}
    report = convert(str(archive), str(tmp_path / "ref"), ConvertOptions(threads_per_worker=1, **plain))
    assert report.ok
    want = tree_digests(tmp_path / "ref")
    settings = ConvertOptions.settings
    for band_rows, budget, threads in [(32, None, 3), (128, None, 3), (64, 1 << 20, 2)]:
        monkeypatch.setattr(ConvertOptions, "settings", lambda self, existing=None, rows=band_rows:
                            dataclasses.replace(settings(self, existing), band_rows=rows))
        monkeypatch.setattr(shardbuild, "BAND_BUDGET", budget or shardbuild.BAND_BUDGET)
        path = tmp_path / f"s{band_rows}"
        report = convert(str(archive), str(path), ConvertOptions(threads_per_worker=3, **plain))
        assert report.ok and report.threads_per_worker == threads
        got = tree_digests(path)
        assert sorted(got) == sorted(want) and any("/embeddings/c/" in k for k in want)
        assert [k for k in want if got[k] != want[k]] == [], f"bands of {band_rows} rows, budget {budget}"


def test_buffer_plan_leaves_room_for_read_ahead_and_s3_parts(tmp_path):
    """A worker's buffers stay within WORKER_BUFFERS: a remote source's read-ahead and an S3 writer's parts are
    taken from the bands' share (one part in flight where two would leave the bands too little); local to local
    keeps the whole BAND_BUDGET and the store's default."""
    from transcode.engine import shardbuild
    from transcode.engine.encodepool import REMOTE_AHEAD_BYTES
    from transcode.storage import LocalStorage, S3Options, S3Storage
    from transcode.storage import s3 as s3mod

    local = LocalStorage(str(tmp_path))
    remote = S3Storage("bucket", "pre", S3Options(endpoint_url="http://127.0.0.1:9", region="us-east-1"))
    part = 64 << 20
    assert remote.writer_memory(part) == (s3mod.PARTS_IN_FLIGHT + 1) * part
    assert remote.writer_memory(part, 1) == 2 * part and local.writer_memory(part) < part
    assert remote.open_writer("k", part, 1).in_flight == 1 and remote.open_writer("k", part).in_flight == 2
    assert shardbuild.buffer_plan(local, local, part) == (None, shardbuild.BAND_BUDGET)
    in_flight, from_s3 = shardbuild.buffer_plan(remote, local, part)
    assert in_flight is None and from_s3 == min(shardbuild.BAND_BUDGET, shardbuild.WORKER_BUFFERS
                                                - 2 * REMOTE_AHEAD_BYTES - local.writer_memory(part))
    in_flight, to_s3 = shardbuild.buffer_plan(remote, remote, 8 << 20)  # small parts: two in flight fit
    assert in_flight is None and to_s3 >= shardbuild.BAND_FLOOR
    assert to_s3 + 2 * REMOTE_AHEAD_BYTES + remote.writer_memory(8 << 20) <= shardbuild.WORKER_BUFFERS
    in_flight, to_s3 = shardbuild.buffer_plan(remote, remote, part)  # 64 MiB parts: one at a time
    assert in_flight == 1
    assert to_s3 + 2 * REMOTE_AHEAD_BYTES + remote.writer_memory(part, 1) <= shardbuild.WORKER_BUFFERS
