"""The S3 settings a user gives, by the one name each has everywhere: the flag `--NAME` (with `--source-` /
`--store-` on verbs with two sides), the API keyword NAME with '_' for '-' (`source_`/`store_` likewise), the
verify-mirrors option `-O MIRROR:NAME=VALUE` and a key of a `--mirrors-file` table."""

from __future__ import annotations

from dataclasses import dataclass, fields

from transcode.storage.base import S3Options


@dataclass(frozen=True)
class Setting:
    """One user-facing S3 setting and the S3Options field it sets."""

    name: str  # the flag and option spelling, e.g. "endpoint-url"
    field: str  # the S3Options field
    is_flag: bool  # a yes/no switch (a flag without a value)
    metavar: str
    help: str

    @property
    def keyword(self) -> str:
        """The Python API keyword: the name with '_' for '-'."""
        return self.name.replace("-", "_")


READ_SETTINGS = (
    Setting("endpoint-url", "endpoint_url", False, "URL", "S3 endpoint (Ceph RGW, MinIO, ...) (default: AWS)"),
    Setting("region", "region", False, "NAME", "S3 region (default: the profile's or the environment's)"),
    Setting("aws-profile", "profile", False, "NAME",
            "AWS profile of the credentials and config files (default: the usual AWS sources)"),
    Setting("anonymous", "anonymous", True, "", "unsigned requests, for public buckets (default: off)"),
    Setting("path-style", "path_style", True, "", "path-style addressing, for most non-AWS servers (default: off)"),
    Setting("ca-bundle", "ca_bundle", False, "PEM",
            "CA certificates for an HTTPS endpoint, e.g. a self-signed gateway (default: the system's)"),
    Setting("requester-pays", "requester_pays", True, "",
            "read from a requester-pays bucket, the caller paying for the requests (default: off)"),
)
WRITE_SETTINGS = (
    Setting("acl", "acl", False, "CANNED",
            "canned ACL of every object written, e.g. bucket-owner-full-control for a bucket of another account "
            "(default: none, the bucket's policy)"),
)
# old spelling -> the setting that replaced it (same meaning)
DEPRECATED_NAMES = {"profile": "aws-profile"}

assert {s.field for s in READ_SETTINGS + WRITE_SETTINGS} <= {f.name for f in fields(S3Options)}


def settings(writes: bool = False) -> tuple[Setting, ...]:
    """The settings of a side that reads (and, with `writes`, also writes)."""
    return READ_SETTINGS + WRITE_SETTINGS if writes else READ_SETTINGS


def by_name(writes: bool = False) -> dict[str, Setting]:
    """Setting by its flag/option name."""
    return {s.name: s for s in settings(writes)}
