"""S3 storage: a prefix in a bucket of AWS S3, Ceph RGW or any S3-compatible endpoint, through boto3."""

from __future__ import annotations

import base64
import copy
import hashlib
import io
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO, TypeVar

from transcode.errors import ObjectNotFoundError, StorageError, TransientStorageError
from transcode.storage.base import DEFAULT_PART_SIZE, ObjectInfo, S3Options, Storage, join_key
from transcode.storage.causes import s3_error, transient_response
from transcode.storage.objectwriter import ObjectWriter
from transcode.storage.retries import TALLY, backoff
from transcode.storage.writebehind import WriteBehind

DEFAULT_ATTEMPTS = 8  # attempts per request, retries included, unless S3Options.max_attempts says
RANGE_PIECE = 8 << 20  # a ranged read is split into pieces of at least this many bytes ...
RANGE_SPLIT = 4  # ... at most this many, fetched in parallel
RANGE_THREADS = 8  # piece fetches in flight per storage (its callers' own first pieces aside)
PARTS_IN_FLIGHT = 2  # multipart parts hashed or uploading per object writer (one more is being filled)
DEFAULT_TIMEOUT = 60.0  # connect and read timeout in seconds, unless S3Options.timeout says
_MD5_ETAG = re.compile(r"[0-9a-f]{32}")
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/")
T = TypeVar("T")


class _BodyFault(Exception):
    """A response botocore accepted but whose body failed (cut, stalled) or does not match what the headers said
    (length, ETag): botocore does not retry these, the storage layer does."""

    def __init__(self, error: StorageError) -> None:
        super().__init__(str(error))
        self.error = error


def _encrypted(response: dict) -> bool:
    """True when the object's ETag is not the MD5 of its bytes because of how it is encrypted (SSE-KMS, SSE-C)."""
    return str(response.get("ServerSideEncryption") or "").startswith("aws:kms") \
        or bool(response.get("SSECustomerAlgorithm"))


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
        self.transient: Counter[str] = Counter()  # failed attempts that may be retried, by reason
        self.own_retries: Counter[str] = Counter()  # the storage layer's own retries (bodies botocore does not
        # retry), a Counter like the others so that `child()` storages share it
        self._lock = threading.Lock()
        self._shared: dict[str, ThreadPoolExecutor | None] = {"ranges": None}  # shared with `child()` storages
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
            retries={"mode": "standard", "total_max_attempts": self.attempts},
            max_pool_connections=o.max_connections or 32,
            connect_timeout=o.timeout or DEFAULT_TIMEOUT,
            read_timeout=o.timeout or DEFAULT_TIMEOUT,
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
        TALLY.sent()

    def _count_call(self, event_name: str = "", **kwargs) -> None:
        op = event_name.rsplit(".", 1)[-1] or "call"
        with self._lock:
            self.calls[op] += 1
            self.calls["total"] += 1
        TALLY.called()

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
            self._note_reason(reason)

    def _note_reason(self, reason: str) -> None:
        with self._lock:
            self.transient[reason] += 1
        TALLY.failed(reason)

    @property
    def attempts(self) -> int:
        """Attempts per request, retries included."""
        return self.options.max_attempts or DEFAULT_ATTEMPTS

    @property
    def retries(self) -> int:
        """Retried attempts: HTTP requests sent beyond the API calls made, and the storage layer's own retries."""
        return max(0, self.requests["total"] - self.calls["total"]) + self.own_retries["total"]

    def _retrying(self, key: str, attempt: Callable[[], T]) -> T:
        """attempt(), made again (with backoff, up to `attempts` in all) when its response's body failed or did not
        match its headers (`_BodyFault`) in a way that may pass; every other failure is raised at once."""
        for n in range(1, self.attempts + 1):
            try:
                return attempt()
            except _BodyFault as fault:
                err = fault.error
                if not isinstance(err, TransientStorageError):
                    raise err from fault.__cause__
                self._note_reason(err.cause or type(err).__name__)
                if n == self.attempts:
                    raise TransientStorageError(err.where, f"{err.reason} ({n} attempts)", err.cause) \
                        from fault.__cause__
                with self._lock:
                    self.own_retries["total"] += 1
                TALLY.retried()
                backoff(n)
        raise AssertionError("unreachable")

    def _body(self, key: str, response: dict) -> bytes:
        """The whole body of a GET response; a failure while reading it is a `_BodyFault`."""
        try:
            return response["Body"].read()
        except Exception as e:
            raise _BodyFault(self._error(key, e)) from e

    def _check_etag(self, key: str, response: dict, md5_hex: str, what: str) -> None:
        """A `_BodyFault` when the response's ETag is an MD5 (not a multipart or encrypted object's ETag) other than
        `md5_hex`, the MD5 of the bytes sent or received: they were damaged on the way."""
        etag = str(response.get("ETag") or "").strip('"').lower()
        if _MD5_ETAG.fullmatch(etag) and not _encrypted(response) and etag != md5_hex:
            raise _BodyFault(TransientStorageError(f"s3://{self.bucket}/{self._key(key)}",
                                                   f"the ETag {etag} the server gave does not match the MD5 {md5_hex} "
                                                   f"of the {what}", "ETagMismatch"))

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
        return s3_error(f"s3://{self.bucket}/{self._key(key)}", exc, self.attempts, hide)

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

    def read_range(self, key: str, start: int, length: int) -> bytes | bytearray:
        """Bytes start..start+length-1 (fewer at the end of the object): one ranged GET, or a large range split into
        pieces of at least RANGE_PIECE bytes fetched in parallel (at most RANGE_THREADS per storage at once), the
        same bytes either way."""
        if length <= 0:
            return b""
        n = min(RANGE_SPLIT, length // RANGE_PIECE)
        if n < 2:
            return self._read_range(key, start, length)
        bounds = [length * i // n for i in range(n + 1)]
        out = bytearray(length)  # each piece is copied into place as it arrives: no join of the whole
        view = memoryview(out)

        def fill(a: int, b: int) -> int:
            piece = self._read_range(key, start + a, b - a)
            view[a:a + len(piece)] = piece
            return len(piece)

        pool = self._range_pool()
        rest = [pool.submit(fill, a, b) for a, b in zip(bounds[1:-1], bounds[2:])]
        try:
            got = [fill(bounds[0], bounds[1])] + [f.result() for f in rest]
        finally:
            for f in rest:
                f.cancel()
        view.release()
        for n_got, a, b in zip(got, bounds, bounds[1:]):
            if n_got < b - a:  # the object ends here, as a single GET would have found
                del out[a + n_got:]
                break
        return out

    def _range_pool(self) -> ThreadPoolExecutor:
        """The threads that fetch the pieces of split ranges, shared by this storage and its children."""
        with self._lock:
            if self._shared.get("ranges") is None:
                self._shared["ranges"] = ThreadPoolExecutor(RANGE_THREADS, thread_name_prefix="range-piece")
            return self._shared["ranges"]

    def _read_range(self, key: str, start: int, length: int) -> bytes:
        """Bytes start..start+length-1 (fewer at the end of the object) from one ranged GET, retried on a bad body."""

        def attempt() -> bytes:
            try:
                r = self._client.get_object(Bucket=self.bucket, Key=self._key(key),
                                            Range=f"bytes={start}-{start + length - 1}", **self._pay)
            except Exception as e:
                resp = getattr(e, "response", None)
                if resp and resp.get("Error", {}).get("Code") == "InvalidRange":
                    return b""
                raise self._error(key, e) from e
            data = self._body(key, r)
            span = _CONTENT_RANGE.match(str(r.get("ContentRange") or ""))
            if span and len(data) != int(span[2]) - int(span[1]) + 1:
                raise _BodyFault(TransientStorageError(
                    self.describe(key), f"the server sent {len(data)} bytes for the {int(span[2]) - int(span[1]) + 1} "
                                        f"of range {span[1]}-{span[2]}", "ShortBody"))
            return data

        return self._retrying(key, attempt)

    def read(self, key: str) -> bytes:
        """The whole object, checked against its ETag when that is the MD5 of the bytes (a single PUT)."""

        def attempt() -> bytes:
            try:
                r = self._client.get_object(Bucket=self.bucket, Key=self._key(key), **self._pay)
            except Exception as e:
                raise self._error(key, e) from e
            data = self._body(key, r)
            self._check_etag(key, r, hashlib.md5(data).hexdigest(), "bytes received")
            return data

        return self._retrying(key, attempt)

    def open(self, key: str) -> BinaryIO:
        try:
            r = self._client.get_object(Bucket=self.bucket, Key=self._key(key), **self._pay)
        except Exception as e:
            raise self._error(key, e) from e
        return _StreamingBody(r["Body"], lambda e: self._error(key, e))

    def put(self, key: str, data: bytes) -> None:
        self._put(key, data, hashlib.md5(data))

    def _put(self, key: str, data: bytes | bytearray, md5) -> None:
        """One PUT of a whole object with its MD5, made again if the server acknowledges another MD5."""

        def attempt() -> None:
            try:
                r = self._client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data,
                                            ContentMD5=base64.b64encode(md5.digest()).decode(), **self._acl,
                                            **self._pay)
            except Exception as e:
                raise self._error(key, e) from e
            self._check_etag(key, r, md5.hexdigest(), "bytes sent")

        self._retrying(key, attempt)

    def writer_memory(self, part_size: int = DEFAULT_PART_SIZE, in_flight: int | None = None) -> int:
        return ((in_flight or PARTS_IN_FLIGHT) + 1) * part_size  # the parts on their way and the one being filled

    def open_writer(self, key: str, part_size: int = DEFAULT_PART_SIZE, in_flight: int | None = None) -> ObjectWriter:
        if part_size < 5 * 1024 * 1024:
            raise StorageError(self.describe(key), f"S3 multipart parts must be at least 5 MiB, not {part_size}")
        if in_flight is not None and in_flight < 1:
            raise ValueError(f"at least one part must be able to upload, not {in_flight}")
        return _S3Writer(self, key, part_size, in_flight or PARTS_IN_FLIGHT)

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
    """One PUT when the object fits in one part; otherwise a multipart upload of fixed-size parts, visible only once
    completed (an aborted upload leaves nothing). Each byte written is copied once, into the part being filled;
    a full part is hashed in order on a background thread and uploaded from up to `in_flight` threads, while
    the caller fills the next: memory stays within `in_flight` + 1 parts."""

    def __init__(self, storage: S3Storage, key: str, part_size: int, in_flight: int = PARTS_IN_FLIGHT) -> None:
        super().__init__()
        self.in_flight = in_flight
        self.s = storage
        self.key = key
        self.full = storage._key(key)
        self.part_size = part_size
        self._buf = bytearray()
        self._upload_id: str | None = None
        self._done: dict[int, tuple[bytes, dict]] = {}  # part number -> (binary MD5, completion entry)
        self._numbered = 0  # parts handed to the background threads
        self._behind: WriteBehind | None = None  # hashes the parts in order, creates the upload, hands them on
        self._senders: ThreadPoolExecutor | None = None
        self._failed: BaseException | None = None  # the first part that could not be uploaded
        self._room = threading.BoundedSemaphore(in_flight)
        self._left_open: str | None = None  # why the last abort failed, leaving the upload open

    def _write(self, data: bytes | memoryview) -> None:
        view = memoryview(data).cast("B")
        try:
            while len(view):
                take = min(len(view), self.part_size - len(self._buf))
                self._buf += view[:take]
                view = view[take:]
                if len(self._buf) == self.part_size:
                    self._hand_over(self._buf)
                    self._buf = bytearray()
        except StorageError as e:
            raise self._aborted(e) from e
        except BaseException:
            self.abort()
            raise

    def _hand_over(self, part: bytearray) -> None:
        """Queue a full part for hashing and upload, once fewer than `in_flight` are on their way."""
        if self._behind is None:
            self._behind = WriteBehind(f"upload {self.key}")
            self._senders = ThreadPoolExecutor(self.in_flight, thread_name_prefix=f"upload {self.key}")
        self._check_sent()
        self._room.acquire()
        self._numbered += 1
        try:
            self._behind.submit(self._hash_and_send, part, self._numbered)
        except BaseException:
            self._room.release()
            raise

    def _check_sent(self) -> None:
        """Raise the first error of the hashing thread or of a part's upload."""
        self._behind.check()
        if self._failed is not None:
            raise self._failed

    def _hash_and_send(self, part: bytearray, n: int) -> None:
        """On the hashing thread, in part order: the object's digests, the upload created on the first part; the
        part then goes out from a sender thread."""
        try:
            self._digest(part)
            if self._upload_id is None:
                try:
                    self._upload_id = self.s._client.create_multipart_upload(
                        Bucket=self.s.bucket, Key=self.full, **self.s._acl, **self.s._pay)["UploadId"]
                except Exception as e:
                    raise self.s._error(self.key, e) from e
            self._senders.submit(self._send, part, n)
        except BaseException:
            self._room.release()
            raise

    def _send(self, part: bytearray | bytes, n: int) -> None:
        """Upload part `n` (on a sender thread), then make room for the next."""
        try:
            if self._failed is None:  # after a failure the upload is aborted: later parts are not sent
                self._upload(part, n)
        except BaseException as e:  # handed to the caller at its next write or commit
            if self._failed is None:
                self._failed = e
        finally:
            self._room.release()

    def _upload(self, part: bytearray | bytes, n: int) -> None:
        c = self.s._client
        digest = hashlib.md5(part).digest()
        upload_id = self._upload_id

        def attempt() -> dict:
            try:
                r = c.upload_part(Bucket=self.s.bucket, Key=self.full, UploadId=upload_id, PartNumber=n,
                                  Body=part, ContentMD5=base64.b64encode(digest).decode(), **self.s._pay)
            except Exception as e:
                raise self.s._error(self.key, e) from e
            self.s._check_etag(self.key, r, digest.hex(), f"part {n} sent")
            return r

        r = self.s._retrying(self.key, attempt)
        self._done[n] = (digest, {"PartNumber": n, "ETag": r["ETag"]})

    def _wait_sent(self) -> None:
        """Wait until every part handed over is uploaded; raise the first error."""
        self._behind.drain()
        for _ in range(self.in_flight):  # all the room back: no part in flight
            self._room.acquire()
        for _ in range(self.in_flight):
            self._room.release()
        self._check_sent()

    def commit(self) -> None:
        if self._behind is None:
            body = self._buf
            self._digest(body)
            self.s._put(self.key, body, self.md5)
            self._buf = bytearray()
            return
        try:
            if self._buf:  # the last, shorter part goes out alongside those still in flight
                self._hand_over(self._buf)
                self._buf = bytearray()
            self._wait_sent()
            self._complete()
        except StorageError as e:
            raise self._aborted(e) from e
        except Exception as e:
            raise self._aborted(self.s._error(self.key, e)) from e
        finally:
            self._stop()

    def _complete(self) -> None:
        numbers = range(1, self._numbered + 1)
        self.parts = [self._done[n][0] for n in numbers]
        try:
            self.s._client.complete_multipart_upload(Bucket=self.s.bucket, Key=self.full, UploadId=self._upload_id,
                                                     MultipartUpload={"Parts": [self._done[n][1] for n in numbers]},
                                                     **self.s._pay)
        except Exception as e:
            err = self.s._error(self.key, e)
            # a retried completion whose first attempt went through (its answer was lost) finds no upload left:
            # the object is there, whole, if it carries the ETag of exactly these parts
            if not isinstance(err, ObjectNotFoundError) or self._visible_etag() != self.etag:
                raise err from e
        self._upload_id = None

    def _visible_etag(self) -> str | None:
        try:
            return self.s.stat(self.key).etag
        except StorageError:
            return None

    def _aborted(self, err: StorageError) -> StorageError:
        """`err` after aborting the upload; it says so when the upload stays open (the abort failed too)."""
        upload = self._upload_id
        self.abort()
        if self._left_open is None:
            return err
        return type(err)(err.where, f"{err.reason}; its multipart upload {upload} could not be aborted "
                                    f"({self._left_open}): it holds no visible object, and the next convert or "
                                    "extend of this store discards it", err.cause)

    def _stop(self) -> None:
        """Let the background threads finish what they started (parts in flight are not cut off) and end them."""
        if self._behind is not None:
            self._behind.close()
        if self._senders is not None:
            self._senders.shutdown(wait=True, cancel_futures=True)

    def abort(self) -> None:
        self._stop()
        self._left_open = None
        if self._upload_id is not None:
            try:
                self.s._client.abort_multipart_upload(Bucket=self.s.bucket, Key=self.full, UploadId=self._upload_id,
                                                      **self.s._pay)
            except Exception as e:  # noqa: BLE001 - classified below; the caller's error is what gets raised
                err = self.s._error(self.key, e)
                if not isinstance(err, ObjectNotFoundError):  # NoSuchUpload: already gone
                    self._left_open = err.cause or type(e).__name__
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
