"""Backend failures -> the typed storage errors (not found, access denied, transient, other), decided by errno,
S3 error code, HTTP status and exception class: never by message text."""

from __future__ import annotations

import errno
import http.client
import ssl
from collections.abc import Iterable

from transcode.errors import AccessDeniedError, ObjectNotFoundError, StorageError, TransientStorageError

# --------------------------------------------------------------------------------------------- local files

OS_NOT_FOUND = frozenset({errno.ENOENT, errno.ENOTDIR})
OS_DENIED = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})
# Causes that may pass. EIO is here on purpose: on the network and FUSE file systems stores live on (NFS, CephFS,
# s3fs, gcsfuse) it reports a failed round trip to the server, not a verdict on the file; on a failing local disk
# it repeats, and the caller stops all the same (a transient error concludes nothing and is never "absent").
# ESTALE is an NFS handle invalidated under us; the network errnos come from the same file systems.
OS_TRANSIENT = frozenset({errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR, errno.ETIMEDOUT, errno.ESTALE, errno.EIO,
                          errno.ECONNRESET, errno.ECONNABORTED, errno.ENETRESET, errno.ENETDOWN, errno.ENETUNREACH,
                          errno.EHOSTDOWN, errno.EHOSTUNREACH})


def os_error(where: str, exc: OSError, action: str) -> StorageError:
    """The typed error for an OSError met while doing `action` ("read", "write", "list", ...) at `where`."""
    code = exc.errno
    name = errno.errorcode.get(code, type(exc).__name__) if code is not None else type(exc).__name__
    text = f"cannot {action}: {exc.strerror or type(exc).__name__} ({name})"
    if code in OS_NOT_FOUND:
        return ObjectNotFoundError(where, text, name)
    if code in OS_DENIED:
        return AccessDeniedError(where, text, name)
    if code in OS_TRANSIENT:
        return TransientStorageError(where, f"{text}; it may pass: try again", name)
    return StorageError(where, text, name)


# --------------------------------------------------------------------------------------------- S3

S3_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NoSuchBucket", "NoSuchUpload", "NotFound", "404"})
_NOT_FOUND_TEXT = {"NoSuchBucket": "the bucket does not exist",
                   "NoSuchUpload": "the multipart upload does not exist (completed or aborted)"}
S3_DENIED_CODES = frozenset({"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
                             "InvalidToken", "TokenRefreshRequired", "AllAccessDisabled", "AccountProblem",
                             "InvalidSecurity", "UnauthorizedAccess", "AuthFailure"})
# what botocore's standard retry mode also treats as throttling or transient (it retried them before we see them)
S3_TRANSIENT_CODES = frozenset({"SlowDown", "Throttling", "ThrottlingException", "ThrottledException",
                                "RequestThrottled", "RequestThrottledException", "TooManyRequestsException",
                                "RequestLimitExceeded", "BandwidthLimitExceeded", "RequestTimeout",
                                "RequestTimeoutException", "PriorRequestNotComplete", "InternalError",
                                "ServiceUnavailable", "503", "500", "502", "504"})


def transient_response(status: int | None, code: str) -> bool:
    """True for an S3 error response that may pass: throttling (SlowDown, 429), 5xx, request timeouts."""
    return code in S3_TRANSIENT_CODES or status == 429 or (status is not None and status >= 500)


def _transient_classes() -> tuple[type[BaseException], ...]:
    """Exception classes of a failed or cut exchange: connection errors, timeouts, bodies that ended early."""
    import botocore.exceptions as be
    import urllib3.exceptions as ue

    return (be.ConnectionError, be.HTTPClientError, be.IncompleteReadError, ue.ProtocolError, ue.TimeoutError,
            ue.IncompleteRead, ue.NewConnectionError, http.client.IncompleteRead, http.client.BadStatusLine,
            ConnectionError, TimeoutError)


def _denied_classes() -> tuple[type[BaseException], ...]:
    """Exception classes of missing or unusable credentials."""
    import botocore.exceptions as be

    return (be.NoCredentialsError, be.PartialCredentialsError, be.CredentialRetrievalError, be.SSOError,
            be.TokenRetrievalError)


def _tls_classes() -> tuple[type[BaseException], ...]:
    """Exception classes of a TLS handshake or certificate failure: a configuration problem, not transient."""
    import botocore.exceptions as be
    import urllib3.exceptions as ue

    return (be.SSLError, ue.SSLError, ssl.SSLError)


def _hidden(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def s3_error(where: str, exc: BaseException, attempts: int | None = None, secrets: Iterable[str] = ()) -> StorageError:
    """The typed error for an exception from boto3/botocore (or the body stream of a response) at `where`.

    `attempts` is how many requests botocore made (retries included) before giving up, for the message;
    `secrets` (the credentials in use) are masked in whatever text the server or the exception supplied."""
    resp = getattr(exc, "response", None)
    if isinstance(resp, dict) and ("Error" in resp or "ResponseMetadata" in resp):
        err = resp.get("Error") or {}
        code = str(err.get("Code") or "")
        status = (resp.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        cause = f"{status} {code}" if status and code and code != str(status) else str(code or status)
        detail = _hidden(str(err.get("Message") or ""), secrets)
        if code in S3_NOT_FOUND_CODES or status == 404:
            return ObjectNotFoundError(where, _NOT_FOUND_TEXT.get(code, "no such object"), cause)
        if code in S3_DENIED_CODES or status == 403:
            return AccessDeniedError(where, f"access denied ({code or status}): check the credentials (profile, "
                                            "environment, instance role), the endpoint and the bucket's policy", cause)
        if transient_response(status, code):
            tries = f" after {attempts} attempts" if attempts else ""
            return TransientStorageError(where, f"the server kept failing ({cause}){tries}; nothing was concluded "
                                                "about the object: try again", cause)
        return StorageError(where, f"S3 error {cause}" + (f": {detail}" if detail else ""), cause)
    name = type(exc).__name__
    if isinstance(exc, _tls_classes()):
        return StorageError(where, f"TLS failure ({name}): check the endpoint URL and the CA bundle", name)
    if isinstance(exc, _denied_classes()):
        return AccessDeniedError(where, f"no usable credentials ({name}): they come from the environment, the "
                                        "AWS profile or the instance role", name)
    if isinstance(exc, _transient_classes()):
        return TransientStorageError(where, f"the connection failed ({name}); nothing was concluded about the "
                                            "object: try again", name)
    return StorageError(where, f"{name}: {_hidden(str(exc), secrets)}", name)
