"""The S3 test servers (Ceph RGW and moto) behave like S3 where the project relies on it."""

import hashlib
import random
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

MiB = 1024 * 1024


def test_put_get(s3_server):
    c = s3_server.client()
    bucket = s3_server.new_bucket()
    body = b"hello tessera\n" * 100
    c.put_object(Bucket=bucket, Key="dir/obj.bin", Body=body)
    got = c.get_object(Bucket=bucket, Key="dir/obj.bin")
    assert got["Body"].read() == body
    assert got["ContentLength"] == len(body)
    assert got["ETag"].strip('"') == hashlib.md5(body).hexdigest()


def test_ranged_get(s3_server):
    c = s3_server.client()
    bucket = s3_server.new_bucket()
    body = bytes(range(256)) * 40   # 10240 bytes
    c.put_object(Bucket=bucket, Key="r", Body=body)
    for rng, want in [("bytes=1000-1999", body[1000:2000]),
                      ("bytes=0-0", body[:1]),
                      ("bytes=10000-", body[10000:]),
                      ("bytes=-7", body[-7:])]:
        got = c.get_object(Bucket=bucket, Key="r", Range=rng)
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206, rng
        assert got["Body"].read() == want, rng
        assert got["ContentLength"] == len(want), rng


# names whose UTF-8 byte order differs from locale, case-insensitive or
# "natural" orders: separators - . / _ space, case, unpadded numbers, é as one
# code point and decomposed, 2-, 3- and 4-byte UTF-8 sequences
_FRAGMENTS = ["a-b", "a/b", "a.b", "a_b", "a b", "a~b", "a!b", "a=b", "ab",
              "A", "Z", "a", "z", "0", "9", "_x", "-x", "~x",
              "é", "e\u0301", "ü", "ß", "日本", "😀", "\uff21"]


def _ordering_keys():
    keys = set(_FRAGMENTS)
    for i in range(44):
        for f in _FRAGMENTS:
            keys.add(f"{f}{'/' if i % 2 else '-'}{i}")
    return sorted(keys)


def test_list_objects_v2_utf8_binary_order_across_pages(s3_server):
    c = s3_server.client()
    bucket = s3_server.new_bucket()
    keys = _ordering_keys()
    assert len(keys) > 1100
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: c.put_object(Bucket=bucket, Key=k, Body=k.encode()), keys))

    listed, pages, token = [], 0, None
    while True:
        kw = {"ContinuationToken": token} if token else {}
        resp = c.list_objects_v2(Bucket=bucket, **kw)
        pages += 1
        page = [o["Key"] for o in resp.get("Contents", [])]
        assert resp["KeyCount"] == len(page)
        if resp["IsTruncated"]:
            assert len(page) == 1000
            token = resp["NextContinuationToken"]
        listed += page
        if not resp["IsTruncated"]:
            break
    assert pages == 2
    assert listed == sorted(keys, key=lambda k: k.encode("utf-8"))


def test_multipart_etag_is_md5_of_part_md5s(s3_server):
    c = s3_server.client()
    bucket = s3_server.new_bucket()
    rnd = random.Random(42)
    parts = [rnd.randbytes(5 * MiB), rnd.randbytes(5 * MiB), rnd.randbytes(MiB + 3)]
    up = c.create_multipart_upload(Bucket=bucket, Key="mp.bin")
    done = []
    for n, data in enumerate(parts, 1):
        r = c.upload_part(Bucket=bucket, Key="mp.bin", UploadId=up["UploadId"],
                          PartNumber=n, Body=data)
        assert r["ETag"].strip('"') == hashlib.md5(data).hexdigest()
        done.append({"PartNumber": n, "ETag": r["ETag"]})
    c.complete_multipart_upload(Bucket=bucket, Key="mp.bin", UploadId=up["UploadId"],
                                MultipartUpload={"Parts": done})

    want = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest() + "-3"
    head = c.head_object(Bucket=bucket, Key="mp.bin")
    assert head["ETag"].strip('"') == want
    assert head["ContentLength"] == sum(map(len, parts))
    assert c.get_object(Bucket=bucket, Key="mp.bin")["Body"].read() == b"".join(parts)


def test_upload_tree(s3_server, tmp_path):
    files = {"top.txt": b"top", "empty": b"", "sub/a.bin": bytes(range(256)),
             "sub/deeper/b.txt": b"b" * 1000, "sub/é.txt": "é".encode()}
    for rel, data in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(data)
    c = s3_server.client()
    bucket = s3_server.new_bucket("tree")

    assert s3_server.upload_tree(tmp_path, bucket, "run/1") == len(files)
    assert s3_server.upload_tree(tmp_path, bucket) == len(files)

    listed = [o["Key"] for o in c.list_objects_v2(Bucket=bucket)["Contents"]]
    want = [f"run/1/{k}" for k in files] + list(files)
    assert listed == sorted(want, key=lambda k: k.encode())
    for rel, data in files.items():
        assert c.get_object(Bucket=bucket, Key=f"run/1/{rel}")["Body"].read() == data
    assert s3_server.url(bucket, "run/1") == f"s3://{bucket}/run/1"


def test_env_lets_a_subprocess_in(s3_server, monkeypatch):
    bucket = s3_server.new_bucket()
    s3_server.client().put_object(Bucket=bucket, Key="k", Body=b"v")
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "wrong")
    env = s3_server.env()
    assert "AWS_PROFILE" not in env and "AWS_CA_BUNDLE" not in env
    code = ("import boto3, sys; c = boto3.client('s3', endpoint_url=sys.argv[1]); "
            "print(c.get_object(Bucket=sys.argv[2], Key='k')['Body'].read().decode())")
    out = subprocess.run([sys.executable, "-c", code, s3_server.endpoint_url, bucket],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "v"
