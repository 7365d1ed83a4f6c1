"""Typed storage errors: each cause (real OS errors, real S3 servers, a fault-injecting proxy in front of them)
becomes ObjectNotFoundError, AccessDeniedError, TransientStorageError or a plain StorageError; callers decide by
the type, so a store whose settings could not be read is never taken for a new one; credentials never show."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from convert_helpers import cli, tree_state
from faultproxy import BAD_ETAG, CUT, RESET, SHORT, Fault, FaultyProxy
from s3servers import free_port

import transcode.storage.retries
from transcode.engine.convert import ConvertOptions, convert, extend
from transcode.engine.storestate import read_settings, read_zone_grids
from transcode.errors import AccessDeniedError, ObjectNotFoundError, StorageError, TransientStorageError
from transcode.format.sidecar import SETTINGS_KEY
from transcode.legacy.archive import open_archive
from transcode.legacy.inventory import build_inventory
from transcode.storage import LocalStorage, S3Options, S3Storage
from transcode.storage.causes import os_error
from transcode.storage.retries import retry_count
from transcode.testing.synthetic import make_legacy_archive
from transcode.validate import ValidateOptions, validate

MiB = 1024 * 1024


def exactly(exc: BaseException, cls: type) -> bool:
    return type(exc) is cls


# ------------------------------------------------------------------ local: real OS errors


def _raised(fn) -> BaseException:
    try:
        fn()
    except BaseException as e:  # noqa: BLE001 - the error itself is what the test inspects
        return e
    raise AssertionError("no error raised")


def test_local_causes_from_real_os_errors(tmp_path):
    s = LocalStorage(tmp_path)
    s.put("file", b"data")
    (tmp_path / "dir").mkdir()
    os.symlink("loop", tmp_path / "loop")

    missing = _raised(lambda: s.read("nope"))
    assert exactly(missing, ObjectNotFoundError) and missing.cause == "ENOENT" and "nope" in str(missing)
    assert exactly(_raised(lambda: s.stat("nope")), ObjectNotFoundError)
    below_a_file = _raised(lambda: s.read("file/child"))
    assert exactly(below_a_file, ObjectNotFoundError) and below_a_file.cause == "ENOTDIR"
    assert exactly(_raised(lambda: s.read_range("nope", 0, 4)), ObjectNotFoundError)

    a_directory = _raised(lambda: s.read("dir"))
    assert exactly(a_directory, StorageError) and a_directory.cause == "EISDIR" and "dir" in a_directory.where
    assert exactly(_raised(lambda: s.stat("dir")), StorageError)
    looping = _raised(lambda: s.read("loop"))
    assert exactly(looping, StorageError) and looping.cause == "ELOOP"
    too_long = _raised(lambda: s.read("x" * 300))
    assert exactly(too_long, StorageError) and too_long.cause == "ENAMETOOLONG"
    # a writer whose target is a directory fails at the rename, and leaves nothing
    w = s.open_writer("dir")
    w.write(b"abc")
    over_a_dir = _raised(w.commit)
    assert isinstance(over_a_dir, StorageError) and not isinstance(over_a_dir, TransientStorageError)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "file", "loop"]


def test_exists_is_false_only_for_absence(tmp_path):
    s = LocalStorage(tmp_path)
    s.put("a/b", b"x")
    (tmp_path / "d").mkdir()
    assert s.exists("a/b") and not s.exists("nope") and not s.exists("a/b/c")
    with pytest.raises(StorageError) as e:
        s.exists("d")  # a directory where an object should be: neither there nor absent
    assert e.value.cause == "EISDIR"


def test_os_error_table_on_real_errors(tmp_path):
    """Errors the suite (running as root) can make for real, each through the classifier."""
    (tmp_path / "dir").mkdir()
    with pytest.raises(OSError) as perm:
        os.link(tmp_path / "dir", tmp_path / "hard")  # EPERM, even for root
    with pytest.raises(OSError) as full, open("/dev/full", "wb") as f:  # the Linux device that is always full
        f.write(b"x")
        f.flush()
    r, w = os.pipe()
    os.set_blocking(r, False)
    with pytest.raises(OSError) as again:
        os.read(r, 1)  # EAGAIN: nothing to read yet
    os.close(r)
    os.close(w)
    got = {e.value.errno: os_error("k", e.value, "read") for e in (perm, full, again)}
    assert exactly(got[errno.EPERM], AccessDeniedError)
    assert exactly(got[errno.ENOSPC], StorageError) and "No space left" in str(got[errno.ENOSPC])
    assert exactly(got[errno.EAGAIN], TransientStorageError)


@pytest.mark.parametrize("code, cls", [
    (errno.EACCES, AccessDeniedError), (errno.EROFS, AccessDeniedError), (errno.EIO, TransientStorageError),
    (errno.ESTALE, TransientStorageError), (errno.ETIMEDOUT, TransientStorageError),
    (errno.EINTR, TransientStorageError), (errno.EDQUOT, StorageError), (errno.EMFILE, StorageError),
])
def test_os_error_table_for_causes_root_cannot_meet(code, cls):
    e = os_error("store/k", OSError(code, os.strerror(code)), "write")
    assert exactly(e, cls) and e.where == "store/k" and e.cause == errno.errorcode[code]
    assert e.reason.startswith("cannot write: " + os.strerror(code))


def test_typed_errors_survive_a_worker_process_pickle():
    for e in (ObjectNotFoundError("s3://b/k", "no such object", "404 NoSuchKey"),
              TransientStorageError("s3://b/k", "kept failing", "503 SlowDown"), StorageError("x", "y")):
        back = pickle.loads(pickle.dumps(e))
        assert type(back) is type(e) and str(back) == str(e) and back.cause == e.cause and back.where == e.where


def test_within_keeps_the_class_and_cause():
    e = TransientStorageError("s3://b/k", "kept failing", "503 SlowDown").within("mirror 'aws'")
    assert exactly(e, TransientStorageError) and e.cause == "503 SlowDown"
    assert str(e) == "mirror 'aws': s3://b/k: kept failing"


# ------------------------------------------------------------------ S3: real servers


def _s3(server, bucket: str, prefix: str = "p", endpoint: str | None = None, **kw) -> S3Storage:
    return S3Storage(bucket, prefix, S3Options(endpoint_url=endpoint or server.endpoint_url, region=server.region,
                                               path_style=True, **kw))


def test_s3_absence_is_not_found(s3_server, monkeypatch):
    s3_server.apply_env(monkeypatch)
    bucket = s3_server.new_bucket("absent")
    s = _s3(s3_server, bucket)
    head = _raised(lambda: s.stat("nope"))
    assert exactly(head, ObjectNotFoundError) and head.cause.startswith("404"), head
    get = _raised(lambda: s.read("nope"))
    assert exactly(get, ObjectNotFoundError) and get.cause == "404 NoSuchKey" and f"{bucket}/p/nope" in str(get)
    assert not s.exists("nope")
    no_bucket = _s3(s3_server, bucket + "-gone")
    for fn in (lambda: no_bucket.read("k"), lambda: list(no_bucket.list())):
        e = _raised(fn)
        assert exactly(e, ObjectNotFoundError) and e.cause == "404 NoSuchBucket", e
    client = s3_server.client()
    try:
        client.abort_multipart_upload(Bucket=bucket, Key="p/k", UploadId="no-such-upload")
    except Exception as exc:  # noqa: BLE001 - the server's own error, classified below
        e = s._error("k", exc)
    assert exactly(e, ObjectNotFoundError) and e.cause == "404 NoSuchUpload"


def _credentials_env(monkeypatch, tmp_path: Path, **values: str) -> None:
    for k in list(os.environ):
        if k.startswith("AWS_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for k, v in values.items():
        monkeypatch.setenv(k, v)


def test_s3_credentials_refused_or_missing_are_access_denied(rgw_server, monkeypatch, tmp_path):
    bucket = rgw_server.new_bucket("denied")
    _credentials_env(monkeypatch, tmp_path, AWS_ACCESS_KEY_ID=rgw_server.access_key,
                     AWS_SECRET_ACCESS_KEY="wrong-secret-1234567890")
    wrong_secret = _raised(lambda: _s3(rgw_server, bucket, max_attempts=1).read("k"))
    assert exactly(wrong_secret, AccessDeniedError) and "SignatureDoesNotMatch" in wrong_secret.cause
    _credentials_env(monkeypatch, tmp_path, AWS_ACCESS_KEY_ID="AKIANOSUCHKEY0000000",
                     AWS_SECRET_ACCESS_KEY="wrong-secret-1234567890")
    unknown_key = _raised(lambda: list(_s3(rgw_server, bucket, max_attempts=1).list()))
    assert exactly(unknown_key, AccessDeniedError) and "InvalidAccessKeyId" in unknown_key.cause
    _credentials_env(monkeypatch, tmp_path)
    none = _raised(lambda: _s3(rgw_server, bucket).stat("k"))
    assert exactly(none, AccessDeniedError) and none.cause == "NoCredentialsError"
    missing_profile = _raised(lambda: _s3(rgw_server, bucket, profile="nobody"))
    assert exactly(missing_profile, StorageError) and "nobody" in str(missing_profile)


def test_s3_failures_that_may_pass_are_transient_after_botocore_retries(moto_server, monkeypatch):
    moto_server.apply_env(monkeypatch)
    bucket = moto_server.new_bucket("transient")
    _s3(moto_server, bucket).put("k", b"x" * 5000)
    answers = {"503": (503, "SlowDown"), "500": (500, "InternalError"), "429": (429, "TooManyRequestsException"),
               "400": (400, "RequestTimeout"), "reset": RESET}
    causes = {}
    for name, answer in answers.items():
        with FaultyProxy(moto_server.endpoint_url, fail=lambda m, p, a=answer: a if p.endswith("/p/k") else None) as px:
            e = _raised(lambda: _s3(moto_server, bucket, endpoint=px.url, max_attempts=3).read("k"))
            assert exactly(e, TransientStorageError), (name, e)
            assert px.failed[("GET", f"/{bucket}/p/k")] == 3, (name, px.failed)  # botocore's retries ran out
        causes[name] = e.cause
    assert causes["503"] == "503 SlowDown" and causes["500"] == "500 InternalError"
    assert causes["429"] == "429 TooManyRequestsException" and causes["400"] == "400 RequestTimeout"
    assert causes["reset"] in ("ConnectionClosedError", "EndpointConnectionError"), causes

    # a body cut short: botocore does not retry bodies; the stream's reader sees a transient error
    with FaultyProxy(moto_server.endpoint_url, cut_every=1) as px, \
            _s3(moto_server, bucket, endpoint=px.url).open("k") as f:
        cut = _raised(lambda: f.read())
    assert exactly(cut, TransientStorageError) and cut.cause in ("ResponseStreamingError", "IncompleteReadError",
                                                                  "ProtocolError", "IncompleteRead"), cut
    # a server that answers too late, and one that is not there
    with FaultyProxy(moto_server.endpoint_url, delay=2.0) as px:
        slow = _raised(lambda: _s3(moto_server, bucket, endpoint=px.url, timeout=0.3, max_attempts=1).stat("k"))
    assert exactly(slow, TransientStorageError) and slow.cause == "ReadTimeoutError", slow
    refused = _raised(lambda: _s3(moto_server, bucket, endpoint=f"http://127.0.0.1:{free_port()}",
                                  max_attempts=1).read("k"))
    assert exactly(refused, TransientStorageError) and refused.cause == "EndpointConnectionError", refused
    # not found, denied and other answers keep their own class through the same path
    others = {(404, "NoSuchBucket"): ObjectNotFoundError, (403, "AllAccessDisabled"): AccessDeniedError,
              (400, "InvalidArgument"): StorageError}
    for answer, cls in others.items():
        with FaultyProxy(moto_server.endpoint_url, fail=lambda m, p, a=answer: a) as px:
            e = _raised(lambda: _s3(moto_server, bucket, endpoint=px.url, max_attempts=3).read("k"))
            assert exactly(e, cls), (answer, e)
            assert sum(px.failed.values()) == 1, (answer, px.failed)  # decided at once: no retry


def test_s3_storage_retries_what_botocore_does_not(s3_server, monkeypatch):
    """Bodies cut, short or not matching their ETag are made again by the storage layer, counted per storage and
    in the process tally; a PUT whose acknowledged ETag never matches ends as a transient ETagMismatch."""
    monkeypatch.setattr(transcode.storage.retries, "BACKOFF_BASE", 0.01)
    s3_server.apply_env(monkeypatch)
    bucket = s3_server.new_bucket("own-retries")
    data = bytes(range(256)) * 64
    _s3(s3_server, bucket).put("k", data)
    path = f"/{bucket}/p/k"
    for kind, call, want in ((SHORT, lambda s: s.read_range("k", 100, 5000), data[100:5100]),
                             (CUT, lambda s: s.read_range("k", 0, len(data)), data),
                             (BAD_ETAG, lambda s: s.read("k"), data)):
        fault = Fault(kind, method="GET", key=path, nth=(1,))
        with FaultyProxy(s3_server.endpoint_url, faults=[fault]) as px:
            storage = _s3(s3_server, bucket, endpoint=px.url, max_attempts=3)
            before = retry_count()
            assert call(storage) == want, kind
        assert len(fault.hits) == 1 and storage.retries == 1, (kind, storage.retries)
        assert (retry_count() - before).retries == 1 and sum(storage.transient.values()) == 1, kind
    assert _s3(s3_server, bucket).read("k") == data  # no request above changed the object

    fault = Fault(BAD_ETAG, method="PUT", key=f"/{bucket}/p/new")
    with FaultyProxy(s3_server.endpoint_url, faults=[fault]) as px:
        e = _raised(lambda: _s3(s3_server, bucket, endpoint=px.url, max_attempts=3).put("new", data))
    assert exactly(e, TransientStorageError) and e.cause == "ETagMismatch" and "p/new" in e.where, e
    assert len(fault.hits) == 3


def test_tls_failure_is_not_transient(rgw_server, monkeypatch):
    rgw_server.apply_env(monkeypatch)
    bucket = rgw_server.new_bucket("tls-err")
    e = _raised(lambda: _s3(rgw_server, bucket, endpoint=rgw_server.https_endpoint_url, max_attempts=1).read("k"))
    assert exactly(e, StorageError) and e.cause == "SSLError" and "CA bundle" in str(e)


# ------------------------------------------------------------------ regression: a store whose settings cannot be read


def _store_md5s(server, bucket: str, prefix: str) -> dict[str, str]:
    client = server.client()
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        for o in page.get("Contents", []):
            out[o["Key"]] = hashlib.md5(client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()).hexdigest()
    return out


@pytest.fixture(scope="module")
def small_archive(tmp_path_factory):
    return make_legacy_archive(tmp_path_factory.mktemp("errs") / "archive", years=(2024,), preset="tiny", seed=13)


def _s3_store(server, monkeypatch, archive, name: str) -> tuple[str, str, dict[str, str]]:
    server.apply_env(monkeypatch)
    bucket, prefix = server.new_bucket(name), "stores/a"
    opts = ConvertOptions(shard=(512, 512), store_options=S3Options(endpoint_url=server.endpoint_url,
                                                                     region=server.region, path_style=True))
    report = convert(str(archive.root), server.url(bucket, prefix), opts)
    assert report.ok and report.shards_written > 0
    before = _store_md5s(server, bucket, prefix)
    assert f"{prefix}/{SETTINGS_KEY}" in before and f"{prefix}/zarr.json" in before
    return bucket, prefix, before


def test_convert_refuses_when_the_settings_read_keeps_failing_on_s3(moto_server, monkeypatch, small_archive):
    bucket, prefix, before = _s3_store(moto_server, monkeypatch, small_archive, "refuse")
    settings_path = f"/{bucket}/{prefix}/{SETTINGS_KEY}"
    with FaultyProxy(moto_server.endpoint_url,
                     fail=lambda m, p: (503, "SlowDown") if m == "GET" and p == settings_path else None) as px:
        # other codecs than the store's: a run that took the store for a new one would rewrite every shard
        r = cli("convert", str(small_archive.root), moto_server.url(bucket, prefix), "--codec", "embeddings=zstd:5",
                "--store-endpoint-url", px.url, "--store-path-style", "--json", "--no-progress",
                env=moto_server.env(), timeout=300)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr[-2000:])
    assert px.failed[("GET", settings_path)] == 8, px.failed  # botocore's 8 attempts, then the refusal
    assert f"{bucket}/{prefix}/{SETTINGS_KEY}" in r.stderr and "503 SlowDown" in r.stderr, r.stderr
    assert [m for m, p, _ in px.seen if m not in ("GET", "HEAD")] == [], "the refused run wrote something"
    assert _store_md5s(moto_server, bucket, prefix) == before
    assert moto_server.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_convert_extend_and_validate_refuse_on_rgw_when_reads_fail_transiently(rgw_server, monkeypatch,
                                                                                small_archive):
    bucket, prefix, before = _s3_store(rgw_server, monkeypatch, small_archive, "refuse-api")
    failing = {f"/{bucket}/{prefix}/{SETTINGS_KEY}", f"/{bucket}/{prefix}/zarr.json"}
    with FaultyProxy(rgw_server.endpoint_url, fail=lambda m, p: (503, "SlowDown") if p in failing else None) as px:
        through = S3Options(endpoint_url=px.url, region=rgw_server.region, path_style=True, max_attempts=2)
        url = rgw_server.url(bucket, prefix)
        store = S3Storage(bucket, prefix, through)
        for fn in (lambda: read_settings(store), lambda: read_zone_grids(store),
                   lambda: convert(str(small_archive.root), url, ConvertOptions(store_options=through)),
                   lambda: extend(url, [2025], ConvertOptions(store_options=through)),
                   lambda: validate(url, ValidateOptions(level="metadata", store_options=through))):
            e = _raised(fn)
            assert exactly(e, TransientStorageError) and e.cause == "503 SlowDown", e
        # absence still reads as absence
        empty = S3Storage(bucket, "nothing-here", through)
        assert read_settings(empty) is None and read_zone_grids(empty) == {}
    assert not [m for m, _, _ in px.seen if m not in ("GET", "HEAD")]
    assert _store_md5s(rgw_server, bucket, prefix) == before


def test_validate_stops_instead_of_reporting_a_shard_it_could_not_read(moto_server, monkeypatch, small_archive):
    bucket, prefix, _ = _s3_store(moto_server, monkeypatch, small_archive, "val-transient")
    with FaultyProxy(moto_server.endpoint_url,
                     fail=lambda m, p: (503, "SlowDown") if "/embeddings/c/" in p and m == "GET" else None) as px:
        opts = ValidateOptions(level="structure", store_options=S3Options(endpoint_url=px.url, path_style=True,
                                                                          region=moto_server.region, max_attempts=2))
        e = _raised(lambda: validate(moto_server.url(bucket, prefix), opts))
    assert exactly(e, TransientStorageError) and "/embeddings/c/" in e.where, e


def test_convert_refuses_when_a_directory_stands_where_the_settings_are(small_archive, tmp_path):
    store = tmp_path / "store"
    assert cli("convert", str(small_archive.root), str(store), "--shard-size", "512", "--no-progress").returncode == 0
    (store / SETTINGS_KEY).unlink()
    (store / SETTINGS_KEY).mkdir()
    before = tree_state(store)
    r = cli("convert", str(small_archive.root), str(store), "--codec", "embeddings=zstd:5", "--json", "--no-progress")
    assert r.returncode == 2, (r.stdout, r.stderr[-2000:])
    assert str(store / SETTINGS_KEY) in r.stderr and "EISDIR" in r.stderr, r.stderr
    assert tree_state(store) == before
    r = cli("extend", str(store), "--years", "2025", "--json", "--no-progress")
    assert r.returncode == 2 and "EISDIR" in r.stderr, r.stderr
    assert tree_state(store) == before


def test_inventory_stops_instead_of_calling_a_tile_unreadable(moto_server, monkeypatch, small_archive):
    moto_server.apply_env(monkeypatch)
    bucket = moto_server.new_bucket("inv-transient")
    moto_server.upload_tree(small_archive.root, bucket, "arch")
    victim = next(p for p in sorted(Path(small_archive.root).rglob("*.npy")))
    path = f"/{bucket}/arch/{victim.relative_to(small_archive.root).as_posix()}"
    with FaultyProxy(moto_server.endpoint_url, fail=lambda m, p: (503, "SlowDown") if p == path else None) as px:
        opts = S3Options(endpoint_url=px.url, region=moto_server.region, path_style=True, max_attempts=2)
        archive = open_archive(f"s3://{bucket}/arch", opts)
        e = _raised(lambda: build_inventory(archive, workers=2))
    assert exactly(e, TransientStorageError) and e.where.endswith(victim.name), e


# ------------------------------------------------------------------ credentials never show


def test_a_wrong_secret_shows_neither_secret_nor_key(rgw_server, small_archive, tmp_path, monkeypatch):
    secret = "wrong-secret-QQ1234567890abcdefXYZ"
    key = rgw_server.access_key
    bucket = rgw_server.new_bucket("leak")
    rgw_server.upload_tree(small_archive.root, bucket, "arch")
    env = rgw_server.env()
    env["AWS_SECRET_ACCESS_KEY"] = secret
    ep = rgw_server.endpoint_url
    store = rgw_server.url(bucket, "store")
    runs = {
        "inventory": ["inventory", f"s3://{bucket}/arch", "--endpoint-url", ep, "--path-style",
                      "--out", str(tmp_path / "inv.parquet")],
        "convert": ["convert", str(small_archive.root), store, "--store-endpoint-url", ep, "--store-path-style",
                    "--no-progress"],
        "validate": ["validate", store, "--store-endpoint-url", ep, "--store-path-style"],
        "verify-mirrors": ["verify-mirrors", f"a={store}", f"b={tmp_path}", "-O", f"a:endpoint-url={ep}",
                           "-O", "a:path-style", "--no-progress", "--state", str(tmp_path / "state.json")],
    }
    for verb, args in runs.items():
        r = subprocess.run([sys.executable, "-m", "transcode", *args, "--json"], env=env, capture_output=True,
                           text=True, timeout=300, stdin=subprocess.DEVNULL, cwd=tmp_path, check=False)
        assert r.returncode == 2, (verb, r.returncode, r.stderr[-2000:])
        assert "access denied" in r.stderr and "SignatureDoesNotMatch" in r.stderr, (verb, r.stderr[-2000:])
        for shown in (r.stdout, r.stderr):
            assert secret not in shown and key not in shown, verb
        for f in tmp_path.rglob("*.json*"):
            assert secret not in f.read_text(errors="replace") and key not in f.read_text(errors="replace")
    # the API's exception: its text, fields and pickle
    _credentials_env(monkeypatch, tmp_path, AWS_ACCESS_KEY_ID=key, AWS_SECRET_ACCESS_KEY=secret)
    e = _raised(lambda: convert(str(small_archive.root), store, ConvertOptions(
        store_options=S3Options(endpoint_url=ep, region=rgw_server.region, path_style=True, max_attempts=1))))
    assert exactly(e, AccessDeniedError)
    for text in (str(e), repr(e), json.dumps(e.__dict__), pickle.dumps(e).decode("latin-1")):
        assert secret not in text and key not in text


def test_credentials_in_a_server_message_are_masked(rgw_server, monkeypatch, tmp_path):
    """Should a server (or a proxy) echo the credentials in an error message, the message shows *** instead."""
    secret = "echoed-secret-0000000000000000000000"
    _credentials_env(monkeypatch, tmp_path, AWS_ACCESS_KEY_ID="AKIAECHOED0000000000", AWS_SECRET_ACCESS_KEY=secret)
    from botocore.exceptions import ClientError

    s = _s3(rgw_server, "any-bucket")
    echoed = ClientError({"Error": {"Code": "InvalidArgument", "Message": f"bad key AKIAECHOED0000000000 / {secret}"},
                          "ResponseMetadata": {"HTTPStatusCode": 400}}, "GetObject")
    e = s._error("k", echoed)
    assert exactly(e, StorageError) and "bad key *** / ***" in str(e)
    assert "AKIAECHOED" not in str(e) and secret not in str(e)
