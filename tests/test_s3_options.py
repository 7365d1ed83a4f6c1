"""The S3 options a real deployment needs, against the real servers: a canned ACL on every object the toolkit
writes (single PUTs, multipart uploads, convert, the mirror repair's copies), RequestPayer=requester on every
request of a requester-pays storage (seen on the wire), and the CA bundle wherever a client is made."""

from __future__ import annotations

import io

import numpy as np
import pytest
from faultproxy import FaultyProxy

from transcode.engine.convert import ConvertOptions, convert
from transcode.mirrors.engine import VerifyOptions
from transcode.mirrors.repair import copy_object
from transcode.mirrors.report import Reporter
from transcode.mirrors.run import verify_mirrors
from transcode.mirrors.spec import parse_mirrors
from transcode.storage import LocalStorage, S3Options, S3Storage, StorageError
from transcode.testing.synthetic import make_legacy_archive

MiB = 1024 * 1024
ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
PAYER = "x-amz-request-payer"


def _opts(server, endpoint: str | None = None, **kw) -> S3Options:
    return S3Options(endpoint_url=endpoint or server.endpoint_url, region=server.region, path_style=True, **kw)


def _public(client, bucket: str, key: str) -> bool:
    """True when the object's ACL grants READ to everyone (what the public-read canned ACL adds)."""
    grants = client.get_object_acl(Bucket=bucket, Key=key)["Grants"]
    return any(g["Grantee"].get("URI") == ALL_USERS and g["Permission"] == "READ" for g in grants)


@pytest.fixture(scope="module")
def tiny_archive(tmp_path_factory):
    return make_legacy_archive(tmp_path_factory.mktemp("opts") / "archive", years=(2024,), preset="tiny", seed=17)


def _big(n: int) -> bytes:
    return np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8).tobytes()


def test_acl_is_sent_with_every_object_written(s3_server, monkeypatch, tmp_path):
    s3_server.apply_env(monkeypatch)
    bucket = s3_server.new_bucket("acl")
    client = s3_server.client()
    s = S3Storage(bucket, "p", _opts(s3_server, acl="public-read"))
    s.put("put", b"one PUT")
    with s.open_writer("small", 5 * MiB) as w:  # fits in one part: one PUT on commit
        w.write(b"small object")
    with s.open_writer("multipart", 5 * MiB) as w:
        w.write(_big(11 * MiB))
    assert w.etag.endswith("-3")
    (tmp_path / "src").write_bytes(_big(6 * MiB))
    copy_object(LocalStorage(tmp_path), s, "src", 6 * MiB, 5 * MiB)  # the mirror repair's copy
    for key in ("put", "small", "multipart", "src"):
        assert _public(client, bucket, f"p/{key}"), key
    plain = S3Storage(bucket, "p", _opts(s3_server))
    plain.put("plain", b"no acl asked")
    assert not _public(client, bucket, "p/plain")
    owner = S3Storage(bucket, "p", _opts(s3_server, acl="bucket-owner-full-control"))
    owner.put("owned", b"into another account's bucket")
    grants = client.get_object_acl(Bucket=bucket, Key="p/owned")["Grants"]
    assert any(g["Permission"] == "FULL_CONTROL" for g in grants) and not _public(client, bucket, "p/owned")


def test_convert_writes_every_store_object_with_the_acl(moto_server, monkeypatch, tiny_archive):
    moto_server.apply_env(monkeypatch)
    bucket = moto_server.new_bucket("acl-convert")
    opts = ConvertOptions(shard=(512, 512), part_size=5 * MiB, store_options=_opts(moto_server, acl="public-read"))
    report = convert(str(tiny_archive.root), moto_server.url(bucket, "store"), opts)
    assert report.ok and report.shards_written > 0
    client = moto_server.client()
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]]
    assert "store/zarr.json" in keys and "store/.tessera/manifest.parquet" in keys
    assert [k for k in keys if not _public(client, bucket, k)] == []


def test_mirror_repair_copies_carry_the_target_mirrors_acl(moto_server, monkeypatch, tmp_path):
    moto_server.apply_env(monkeypatch)
    bucket = moto_server.new_bucket("acl-mirror")
    (tmp_path / "m" / "a").mkdir(parents=True)
    (tmp_path / "m" / "a" / "x.bin").write_bytes(b"x" * 1000)
    (tmp_path / "m" / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group"}')
    mirrors = parse_mirrors([f"disk={tmp_path / 'm'}", f"aws=s3://{bucket}/m"],
                            [f"aws:endpoint-url={moto_server.endpoint_url}", "aws:path-style",
                             f"aws:region={moto_server.region}", "aws:acl=public-read"])
    assert mirrors[1].options.acl == "public-read" and mirrors[1].describe()["acl"] == "public-read"
    summary = verify_mirrors(mirrors, VerifyOptions(source_of_truth="disk", state=str(tmp_path / "state.json")),
                             Reporter(json_lines=True, out=io.StringIO()), repair=True)
    assert summary["in_sync"] and summary["repair"]["copied"] == 2, summary
    client = moto_server.client()
    assert _public(client, bucket, "m/a/x.bin") and _public(client, bucket, "m/zarr.json")


def _payer_hook(storage: S3Storage, sent: list) -> None:
    """Record (operation, RequestPayer header) of every HTTP request the storage's real client sends."""
    def before_send(request, event_name: str = "", **kwargs):
        value = request.headers.get(PAYER)
        sent.append((event_name.rsplit(".", 1)[-1], value.decode() if isinstance(value, bytes) else value))
    storage._client.meta.events.register("before-send.s3", before_send)


def test_requester_pays_header_on_every_request(s3_server, monkeypatch):
    s3_server.apply_env(monkeypatch)
    bucket = s3_server.new_bucket("payer")
    s = S3Storage(bucket, "p", _opts(s3_server, requester_pays=True))
    sent: list = []
    _payer_hook(s, sent)
    s.put("a/one", b"1")
    with s.open_writer("a/big", 5 * MiB) as w:
        w.write(_big(6 * MiB))
    s3_server.client().create_multipart_upload(Bucket=bucket, Key="p/abandoned")
    assert s.discard_abandoned_writes() == 1
    assert [o.key for o in s.list()] == ["a/big", "a/one"] and s.list_dirs() == ["a"]
    assert [o.key for o in s.list_after("a/big")] == ["a/one"]
    _, subs, complete = s.list_level("")
    assert subs == ["a/"] and complete
    assert s.stat("a/one").size == 1 and s.part_info("a/big")[0] > 0
    assert s.read_range("a/big", 10, 5) == _big(6 * MiB)[10:15] and s.read("a/one") == b"1"
    assert s.child("a").read("one") == b"1"
    s.delete("a/one")
    ops = {op for op, _ in sent}
    assert {"PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload", "ListMultipartUploads",
            "AbortMultipartUpload", "ListObjectsV2", "HeadObject", "GetObject", "DeleteObject"} <= ops, ops
    assert [(op, v) for op, v in sent if v != "requester"] == []
    plain = S3Storage(bucket, "p", _opts(s3_server))
    quiet: list = []
    _payer_hook(plain, quiet)
    plain.stat("a/big")
    assert quiet == [("HeadObject", None)]


def test_convert_sends_requester_pays_on_the_wire_for_source_and_store(moto_server, monkeypatch, tiny_archive):
    moto_server.apply_env(monkeypatch)
    bucket = moto_server.new_bucket("payer-convert")
    moto_server.upload_tree(tiny_archive.root, bucket, "arch")
    with FaultyProxy(moto_server.endpoint_url) as px:
        opts = ConvertOptions(shard=(512, 512), part_size=5 * MiB,
                              source_options=_opts(moto_server, px.url, requester_pays=True),
                              store_options=_opts(moto_server, px.url, requester_pays=True))
        report = convert(f"s3://{bucket}/arch", moto_server.url(bucket, "store"), opts)
    assert report.ok and report.shards_written > 0
    methods = {m for m, _, _ in px.seen}
    assert {"GET", "PUT", "POST"} <= methods and len(px.seen) > 20, methods  # reads, writes, multipart calls
    assert [(m, p) for m, p, h in px.seen if h.get(PAYER) != "requester"] == []


def test_ca_bundle_reaches_every_client_the_mirror_verifier_makes(rgw_server, monkeypatch):
    rgw_server.apply_env(monkeypatch)
    bucket = rgw_server.new_bucket("tls-mirror")
    rgw_server.client().put_object(Bucket=bucket, Key="m/zarr.json", Body=b"{}")
    base = [f"tls=s3://{bucket}/m"]
    common = [f"tls:endpoint-url={rgw_server.https_endpoint_url}", "tls:path-style", f"tls:region={rgw_server.region}"]
    good = parse_mirrors(base, [*common, f"tls:ca-bundle={rgw_server.ca_bundle}"])[0]
    storage = good.open(max_attempts=1, timeout=10, max_connections=4)
    assert [o.key for o in storage.list()] == ["zarr.json"]  # over HTTPS: only with the bundle's certificate
    bad = parse_mirrors(base, common)[0].open(max_attempts=1)
    with pytest.raises(StorageError) as e:
        list(bad.list())
    assert e.value.cause == "SSLError"
