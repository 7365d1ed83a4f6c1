"""S3 storage: a prefix in a bucket of AWS S3, Ceph RGW or any S3-compatible endpoint, through boto3."""

from __future__ import annotations

import base64
import copy
import hashlib
import io
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import BinaryIO

from transcode.errors import StorageError
from transcode.storage.base import DEFAULT_PART_SIZE, ObjectInfo, S3Options, Storage, join_key
from transcode.storage.causes import s3_error, transient_response
from transcode.storage.objectwriter import ObjectWriter
from transcode.storage.writebehind import WriteBehind

DEFAULT_ATTEMPTS = 8  # botocore attempts per request, retries included, unless S3Options.max_attempts says


class S3Storage(Storage):
    """A prefix in an S3 bucket (AWS, Ceph RGW or any S3-compatible endpoint), through boto3.

    Failures are the typed storage errors (`causes.s3_error`), raised once botocore's own retries ran out.
    `options.acl` is sent with every object written (PutObject, CreateMultipartUpload); `options.requester_pays`
    sends RequestPayer=requester with every request. Credentials come only from botocore's chain (environment,
    profile, instance role) and never appear in an error message."""

    def __init__(self, bucket: str, prefix: str = "", options: S3Options | None = None, client=None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.options = options or S3Options()
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.requests: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()  # API calls made (a call retried twice counts once here, 3x in requests)
        self.transient: Counter[str] = Counter()  # failed attempts that botocore may retry, by reason
        self._lock = threading.Lock()
        self._pay = {"RequestPayer": "requester"} if self.options.requester_pays else {}
        self._acl = {"ACL": self.options.acl} if self.options.acl else {}
        self._credentials = None  # botocore's credentials object, only to keep its values out of messages
        self._client = client if client is not None else self._make_client()
        if client is None:
            events = self._client.meta.events
            events.register("before-send.s3", self._count)
            events.register("before-call.s3", self._count_call)
            events.register("needs-retry.s3", self._note_transient)

    def _make_client(self):
        import boto3
        import botocore
        import botocore.exceptions
        from botocore.config import Config

        o = self.options
        cfg = Config(
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"mode": "standard", "total_max_attempts": o.max_attempts or DEFAULT_ATTEMPTS},
            max_pool_connections=o.max_connections or 32,
            connect_timeout=o.timeout or 60,
            read_timeout=o.timeout or 60,
            s3={"addressing_style": "path" if o.path_style else "auto"},
            signature_version=botocore.UNSIGNED if o.anonymous else None,
        )
        try:
            session = boto3.session.Session(profile_name=o.profile) if o.profile else boto3.session.Session()
            client = session.client("s3", endpoint_url=o.endpoint_url, region_name=o.region, config=cfg,
                                    verify=o.ca_bundle if o.ca_bundle else None)
            self._credentials = None if o.anonymous else session.get_credentials()
        except botocore.exceptions.ProfileNotFound as e:
            raise StorageError(self.url, f"no AWS profile named {o.profile!r} in the AWS config files",
                               type(e).__name__) from e
        except Exception as e:  # a broken config file or credential source: classified like any other failure
            raise self._error("", e) from e
        return client

    def _count(self, event_name: str = "", **kwargs) -> None:
        # one call per HTTP request actually sent, retries included
        op = event_name.rsplit(".", 1)[-1] or "request"
        with self._lock:
            self.requests[op] += 1
            self.requests["total"] += 1

    def _count_call(self, event_name: str = "", **kwargs) -> None:
        op = event_name.rsplit(".", 1)[-1] or "call"
        with self._lock:
            self.calls[op] += 1
            self.calls["total"] += 1

    def _note_transient(self, response=None, caught_exception=None, **kwargs) -> None:
        # called after every attempt; counts only the failures botocore's retry policy may retry
        reason = None
        if caught_exception is not None:
            reason = type(caught_exception).__name__
        elif response is not None:
            status = getattr(response[0], "status_code", 0)
            code = str((response[1] or {}).get("Error", {}).get("Code", ""))
            if transient_response(status, code):
                reason = f"{status} {code}".strip()
        if reason:
            with self._lock:
                self.transient[reason] += 1

    @property
    def retries(self) -> int:
        """HTTP requests sent beyond the API calls made: retried attempts."""
        return max(0, self.requests["total"] - self.calls["total"])

    def _key(self, key: str) -> str:
        return join_key(self.prefix, key)

    def _error(self, key: str, exc: BaseException) -> StorageError:
        """The typed error for a failed call about `key`, with no credential in its text."""
        hide: list[str] = []
        if self._credentials is not None:
            try:
                frozen = self._credentials.get_frozen_credentials()
                hide = [v for v in (frozen.access_key, frozen.secret_key, frozen.token) if v]
            except Exception:  # noqa: BLE001 - credentials that cannot even be read cannot leak either
                hide = []
        attempts = self.options.max_attempts or DEFAULT_ATTEMPTS
        return s3_error(f"s3://{self.bucket}/{self._key(key)}", exc, attempts, hide)

    def list(self, prefix: str = "", *, start_after: str | None = None) -> Iterator[ObjectInfo]:
        full = self._key(prefix)
        if full and not full.endswith("/"):
            full += "/"
        strip = len(self.prefix) + 1 if self.prefix else 0
        extra = {"StartAfter": self._key(start_after)} if start_after else {}
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full, **extra,
                                                                           **self._pay)
            for page in pages:
                for obj in page.get("Contents", []):
                    key = obj["Key"][strip:]
                    if not key or key.endswith("/"):
                        continue  # directory marker objects
                    yield ObjectInfo(key, int(obj["Size"]), obj.get("ETag", "").strip('"') or None,
                                     obj["LastModified"].timestamp() if obj.get("LastModified") else None)
        except Exception as e:
            raise self._error(prefix, e) from e

    def list_after(self, start_after: str) -> Iterator[ObjectInfo]:
        return self.list("", start_after=start_after) if start_after else self.list()

    def list_parallel(self, prefix: str = "", threads: int = 8) -> Iterator[ObjectInfo]:
        from transcode.storage.partitioned import PartitionedListing

        if threads <= 1:
            yield from self.list(prefix)
            return
        head = prefix.strip("/")
        for obj in PartitionedListing(self.child(head) if head else self, threads=threads):
            yield ObjectInfo(join_key(head, obj.key), obj.size, obj.etag, obj.mtime) if head else obj

    def list_level(self, prefix: str = "", limit: int | None = None) -> tuple[list[ObjectInfo], list[str], bool]:
        """One level below `prefix` ('' or ending in '/'): its objects and its sub-prefixes (ending in '/'), both
        relative to the root, from a delimiter listing (for splitting a listing into parallel parts); the flag is
        False when more than `limit` entries made it stop early."""
        full = self._key(prefix) + "/" if prefix.strip("/") else (self.prefix + "/" if self.prefix else "")
        strip = len(self.prefix) + 1 if self.prefix else 0
        objs: list[ObjectInfo] = []
        subs: list[str] = []
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full,
                                                                           Delimiter="/", **self._pay)
            for page in pages:
                for obj in page.get("Contents", []):
                    key = obj["Key"][strip:]
                    if key and not key.endswith("/"):
                        objs.append(ObjectInfo(key, int(obj["Size"]), obj.get("ETag", "").strip('"') or None,
                                               obj["LastModified"].timestamp() if obj.get("LastModified") else None))
                subs += [p["Prefix"][strip:] for p in page.get("CommonPrefixes", [])]
                if limit is not None and len(objs) + len(subs) > limit and page.get("IsTruncated"):
                    return objs, subs, False
        except Exception as e:
            raise self._error(prefix, e) from e
        return objs, subs, True

    def part_info(self, key: str, part_number: int = 1) -> tuple[int, int | None]:
        """(length of part `part_number`, number of parts) from one HEAD; parts is None when the server
        ignores partNumber (Ceph RGW 16 answers with the whole object) or the object is a single PUT."""
        try:
            r = self._client.head_object(Bucket=self.bucket, Key=self._key(key), PartNumber=part_number,
                                          **self._pay)
        except Exception as e:
            raise self._error(key, e) from e
        parts = r.get("PartsCount")
        return int(r["ContentLength"]), (int(parts) if parts is not None else None)

    def list_dirs(self, prefix: str = "") -> list[str]:
        full = self._key(prefix)
        full = full + "/" if full else ""
        names: list[str] = []
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full,
                                                                           Delimiter="/", **self._pay)
            for page in pages:
                names += [p["Prefix"][len(full):].rstrip("/") for p in page.get("CommonPrefixes", [])]
        except Exception as e:
            raise self._error(prefix, e) from e
        return sorted(names, key=lambda n: n.encode())

    def stat(self, key: str) -> ObjectInfo:
        try:
            r = self._client.head_object(Bucket=self.bucket, Key=self._key(key), **self._pay)
        except Exception as e:
            raise self._error(key, e) from e
        return ObjectInfo(key, int(r["ContentLength"]), r.get("ETag", "").strip('"') or None,
                          r["LastModified"].timestamp() if r.get("LastModified") else None)

    def read_range(self, key: str, start: int, length: int) -> bytes:
        if length <= 0:
            return b""
        try:
            r = self._client.get_object(Bucket=self.bucket, Key=self._key(key),
                                        Range=f"bytes={start}-{start + length - 1}", **self._pay)
            return r["Body"].read()
        except Exception as e:
            resp = getattr(e, "response", None)
            if resp and resp.get("Error", {}).get("Code") == "InvalidRange":
                return b""
            raise self._error(key, e) from e

    def open(self, key: str) -> BinaryIO:
        try:
            r = self._client.get_object(Bucket=self.bucket, Key=self._key(key), **self._pay)
        except Exception as e:
            raise self._error(key, e) from e
        return _StreamingBody(r["Body"], lambda e: self._error(key, e))

    def put(self, key: str, data: bytes) -> None:
        try:
            self._client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **self._acl, **self._pay)
        except Exception as e:
            raise self._error(key, e) from e

    def open_writer(self, key: str, part_size: int = DEFAULT_PART_SIZE) -> ObjectWriter:
        if part_size < 5 * 1024 * 1024:
            raise StorageError(self.describe(key), f"S3 multipart parts must be at least 5 MiB, not {part_size}")
        return _S3Writer(self, key, part_size)

    def delete(self, key: str) -> None:
        try:
            self._client.delete_object(Bucket=self.bucket, Key=self._key(key), **self._pay)
        except Exception as e:
            raise self._error(key, e) from e

    def discard_abandoned_writes(self) -> int:
        n = 0
        prefix = self._key("") + "/" if self.prefix else ""
        try:
            pages = self._client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=prefix,
                                                                                 **self._pay)
            for page in pages:
                for up in page.get("Uploads", []):
                    self._client.abort_multipart_upload(Bucket=self.bucket, Key=up["Key"], UploadId=up["UploadId"],
                                                        **self._pay)
                    n += 1
        except Exception as e:
            raise self._error("", e) from e
        return n

    def child(self, prefix: str) -> "S3Storage":
        # the same client, counters and lock: a shallow copy with another root
        out = copy.copy(self)
        out.prefix = self._key(prefix)
        out.url = f"s3://{self.bucket}/{out.prefix}" if out.prefix else f"s3://{self.bucket}"
        return out


class _S3Writer(ObjectWriter):
    """One PUT when the object fits in one part; otherwise a multipart upload of fixed-size parts, each
    uploaded from a background thread while the next is filled (one in flight), visible only once completed
    (an aborted upload leaves nothing)."""

    def __init__(self, storage: S3Storage, key: str, part_size: int) -> None:
        super().__init__()
        self.s = storage
        self.key = key
        self.full = storage._key(key)
        self.part_size = part_size
        self._buf = bytearray()
        self._upload_id: str | None = None
        self._done: list[dict] = []
        self._behind: WriteBehind | None = None

    def _write(self, data: bytes | memoryview) -> None:
        self._buf += data
        try:
            while len(self._buf) >= self.part_size:
                part = bytes(self._buf[: self.part_size])
                del self._buf[: self.part_size]
                if self._behind is None:
                    self._behind = WriteBehind(f"upload {self.key}")
                self._behind.drain()  # one part in flight: memory stays at two parts
                self._behind.submit(self._upload, part)
        except BaseException:
            self.abort()
            raise

    def _upload(self, part: bytes) -> None:
        c = self.s._client
        self._digest(part)
        try:
            if self._upload_id is None:
                self._upload_id = c.create_multipart_upload(Bucket=self.s.bucket, Key=self.full, **self.s._acl,
                                                            **self.s._pay)["UploadId"]
            digest = hashlib.md5(part).digest()
            n = len(self._done) + 1
            r = c.upload_part(Bucket=self.s.bucket, Key=self.full, UploadId=self._upload_id, PartNumber=n, Body=part,
                              ContentMD5=base64.b64encode(digest).decode(), **self.s._pay)
        except Exception as e:
            raise self.s._error(self.key, e) from e
        self.parts.append(digest)
        self._done.append({"PartNumber": n, "ETag": r["ETag"]})

    def commit(self) -> None:
        c = self.s._client
        if self._behind is None:
            body = bytes(self._buf)
            self._digest(body)
            try:
                c.put_object(Bucket=self.s.bucket, Key=self.full, Body=body,
                             ContentMD5=base64.b64encode(self.md5.digest()).decode(), **self.s._acl, **self.s._pay)
            except Exception as e:
                raise self.s._error(self.key, e) from e
            self._buf = bytearray()
            return
        try:
            self._behind.drain()
            if self._buf:
                self._upload(bytes(self._buf))
                self._buf = bytearray()
            c.complete_multipart_upload(Bucket=self.s.bucket, Key=self.full, UploadId=self._upload_id,
                                        MultipartUpload={"Parts": self._done}, **self.s._pay)
        except StorageError:
            self.abort()
            raise
        except Exception as e:
            self.abort()
            raise self.s._error(self.key, e) from e
        finally:
            self._behind.close()

    def abort(self) -> None:
        if self._behind is not None:
            self._behind.close()
        if self._upload_id is not None:
            try:
                self.s._client.abort_multipart_upload(Bucket=self.s.bucket, Key=self.full, UploadId=self._upload_id,
                                                      **self.s._pay)
            except Exception:
                pass  # the upload may already be gone; nothing became visible either way
            self._upload_id = None
        self._buf = bytearray()


class _StreamingBody(io.RawIOBase):
    """Adapt botocore's StreamingBody to a closeable binary file object whose failures (a cut or stalled body:
    transient, botocore does not retry bodies) are the typed storage errors."""

    def __init__(self, body, error: Callable[[BaseException], StorageError]) -> None:
        self._body = body
        self._error = error

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        try:
            return self._body.read() if size is None or size < 0 else self._body.read(size)
        except Exception as e:
            raise self._error(e) from e

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._body.close()
        super().close()
