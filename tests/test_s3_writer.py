"""The S3 object writer against RGW and moto: one PUT or a multipart upload whose parts go out from a background
thread; the ETag, MD5 and CRC32C it reports are the server's; a failed upload leaves no object and no upload."""

import hashlib
import random

import crc32c
import pytest

from transcode.errors import StorageError
from transcode.storage import S3Options, S3Storage

MiB = 1024 * 1024


def _storage(server, bucket: str, attempts: int | None = None) -> S3Storage:
    return S3Storage(bucket, "pre", S3Options(endpoint_url=server.endpoint_url, region=server.region,
                                              path_style=True, max_attempts=attempts))


@pytest.mark.parametrize("total,parts", [(3 * MiB, 0), (5 * MiB, 1), (16 * MiB + 7, 4)])  # 0: one PUT
def test_streamed_object_matches_what_the_server_stores(s3_server, monkeypatch, total, parts):
    s3_server.apply_env(monkeypatch)
    bucket = s3_server.new_bucket("w")
    rnd = random.Random(total)
    data = rnd.randbytes(total)
    with _storage(s3_server, bucket).open_writer("a/obj", 5 * MiB) as w:
        pos = 0
        while pos < total:
            n = rnd.choice([1, 1000, 300_000, 2 * MiB])
            w.write(data[pos:pos + n])
            pos += n
    c = s3_server.client()
    head = c.head_object(Bucket=bucket, Key="pre/a/obj")
    assert c.get_object(Bucket=bucket, Key="pre/a/obj")["Body"].read() == data
    assert head["ETag"].strip('"') == w.etag
    assert w.etag.endswith(f"-{parts}") if parts else w.etag == hashlib.md5(data).hexdigest()
    assert (w.size, w.md5.hexdigest(), w.crc) == (total, hashlib.md5(data).hexdigest(), crc32c.crc32c(data))


def test_failed_upload_leaves_no_object_and_no_pending_upload(s3_server, monkeypatch):
    s3_server.apply_env(monkeypatch)
    bucket = s3_server.new_bucket("w")
    c = s3_server.client()
    rnd = random.Random(0)
    # moto answers a part of an aborted upload with a retryable 500 (AWS: 404): do not wait for 8 attempts
    w = _storage(s3_server, bucket, attempts=2).open_writer("a/obj", 5 * MiB)
    w.write(rnd.randbytes(6 * MiB))  # part 1 goes out in the background
    for _ in range(200):
        uploads = c.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        if uploads:
            break
    assert len(uploads) == 1
    # someone else aborts the upload under us: the next part is refused by the server
    c.abort_multipart_upload(Bucket=bucket, Key="pre/a/obj", UploadId=uploads[0]["UploadId"])
    with pytest.raises(StorageError, match="pre/a/obj"):
        w.write(rnd.randbytes(5 * MiB))
        w.commit()
    assert "Contents" not in c.list_objects_v2(Bucket=bucket)
    assert not c.list_multipart_uploads(Bucket=bucket).get("Uploads")
