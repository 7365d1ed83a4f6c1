"""Every verb under S3 faults, source and store sides: the fault proxy (transcode/testing/faultproxy.py) in front of the moto
server (the multipart store writes on the RADOS Gateway too) injects each kind of fault once (transient) or on
every matching request (persistent). A transient fault costs retries, counted in the report, and never the run or
a wrong byte; a persistent one ends with exit 2, a message naming the object, and nothing half-written visible
(no manifest over an unfinished store, no open multipart upload; a rerun completes the store byte-identical).

Each test records its outcome as one JSON file in the directory named by the environment variable
TESSERA_FAULT_RECORDS (when set): `tools/reliability_table.py` renders docs/reliability.md from them."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import botocore.retries.standard
import pytest
from faultproxy import BAD_ETAG, CUT, ERROR500, KINDS, LONG, RESET_AFTER, SHORT, STALL, Fault, FaultyProxy
from outcomes import record

import transcode.storage.retries
import transcode.storage.s3
from transcode.cli import main
from transcode.format.sidecar import MANIFEST_KEY
from transcode.testing.synthetic import make_legacy_archive

TIMEOUT = 2.0  # the clients' read timeout in these tests; a STALL holds a request longer
ATTEMPTS = 3  # attempts per request in these tests (the default is 8)
TILE = "grid_0.05_83.95"
WINDOW = 65536  # ranged reads at least this long are tile windows (headers are read in 4 KiB)


@dataclass(frozen=True)
class Cell:
    """A verb, the side the faults hit, and the requests they hit (method, regex on "/bucket/key", part)."""

    verb: str
    side: str
    method: str
    key: str
    part: int | None = None
    min_length: int | None = None  # only ranged reads of at least this many bytes
    what: str = ""  # the requests, for the table

    @property
    def id(self) -> str:
        return f"{self.verb}-{self.side}"

    @property
    def writes(self) -> bool:
        return self.method == "PUT"

    def rule(self, kind: str, persistent: bool) -> Fault:
        return Fault(kind, method=self.method, key=self.key, part=self.part, min_length=self.min_length,
                     nth=None if persistent else (1,))

    def felt(self, kind: str) -> bool:
        """Whether this fault can show on these requests at all (else the run must succeed untouched)."""
        if kind == BAD_ETAG:  # a ranged GET cannot be checked against the whole object's ETag
            return self.writes
        if kind in (RESET_AFTER, CUT, SHORT, LONG):  # a PUT's answer has no body to lose
            return not self.writes
        return True


CELLS = [
    Cell("inventory", "source", "GET", r"/arch/.*\.npy$", what="tile header reads"),
    Cell("convert", "source", "GET", rf"/arch/.*/2024/.*{TILE}\.npy$", min_length=WINDOW, what="tile window reads"),
    Cell("convert", "store", "PUT", r"/embeddings/c/", part=2, what="part 2 of a shard's multipart upload"),
    Cell("extend", "source", "GET", rf"/arch/.*/2025/.*{TILE}\.npy$", min_length=WINDOW,
         what="tile window reads of the new year"),
    Cell("extend", "store", "PUT", r"/scales/c/", what="single-PUT shards"),
    Cell("validate", "store", "GET", r"/embeddings/c/", what="shard index and chunk reads (--level content)"),
    Cell("validate", "source", "GET", r"/arch/.*\.npy$", what="tile reads (--level fidelity)"),
    Cell("verify-mirrors", "mirror", "GET", r"/embeddings/c/", what="shard reads (--level content)"),
]


# ------------------------------------------------------------------ the archive, the stores, the reference bytes

@dataclass
class World:
    server: object
    bucket: str
    source: str  # s3:// URL of the archive
    template: str  # prefix of a store converted fault-free (2024)
    extended: str  # prefix of that store extended fault-free (2024-2025)
    local: Path  # a local copy of the template store (the other mirror)
    digests: dict[str, dict[str, str]]  # prefix -> {key: md5}


def _digests(server, bucket: str, prefix: str) -> dict[str, tuple[int, str]]:
    """(size, ETag) of every object under a prefix: the MD5 of a single PUT, of the part MD5s of a multipart
    upload (the same parts give the same ETag)."""
    client = server.client()
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        for o in page.get("Contents", []):
            out[o["Key"][len(prefix) + 1:]] = (o["Size"], o["ETag"])
    return out


def _copy(server, bucket: str, src: str, dst: str) -> None:
    client = server.client()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=src + "/"):
        for o in page.get("Contents", []):
            body = client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
            client.put_object(Bucket=bucket, Key=dst + o["Key"][len(src):], Body=body)


def _open_uploads(server, bucket: str, prefix: str) -> list[str]:
    ups = server.client().list_multipart_uploads(Bucket=bucket, Prefix=prefix + "/").get("Uploads", [])
    return [u["Key"] for u in ups]


def _convert_args(source: str, store: str, endpoint: str, store_endpoint: str | None = None) -> list[str]:
    return ["convert", source, store, "--years", "2024", "--part-size", "5", "--json", "--no-progress",
            *_both_sides(endpoint, store_endpoint)]


def _both_sides(source_endpoint: str, store_endpoint: str | None = None) -> list[str]:
    return ["--source-endpoint-url", source_endpoint, "--source-path-style",
            "--store-endpoint-url", store_endpoint or source_endpoint, "--store-path-style"]


def _run(capsys, argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(autouse=True)
def _short_clocks(monkeypatch):
    """Few attempts, a short read timeout and tiny backoffs: faults cost milliseconds, not minutes."""
    monkeypatch.setattr(transcode.storage.s3, "DEFAULT_ATTEMPTS", ATTEMPTS)
    monkeypatch.setattr(transcode.storage.s3, "DEFAULT_TIMEOUT", TIMEOUT)
    monkeypatch.setattr(transcode.storage.retries, "BACKOFF_BASE", 0.01)
    monkeypatch.setattr(botocore.retries.standard.ExponentialBackoff, "delay_amount", lambda self, ctx: 0.01)


@pytest.fixture(scope="module")
def world(moto_server, tmp_path_factory) -> World:
    base = tmp_path_factory.mktemp("faults")
    made = make_legacy_archive(base / "archive", years=(2024, 2025), tiles=[TILE], seed=21)
    bucket = moto_server.new_bucket("faults")
    moto_server.upload_tree(made.root, bucket, "arch")
    source = f"s3://{bucket}/arch"
    mp = pytest.MonkeyPatch()
    moto_server.apply_env(mp)
    try:
        assert main(_convert_args(source, f"s3://{bucket}/template", moto_server.endpoint_url)) == 0
        _copy(moto_server, bucket, "template", "extended")
        assert main(["extend", f"s3://{bucket}/extended", "--years", "2025", "--json", "--no-progress",
                     *_both_sides(moto_server.endpoint_url)]) == 0
    finally:
        mp.undo()
    local = base / "mirror"
    client = moto_server.client()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="template/"):
        for o in page.get("Contents", []):
            path = local / o["Key"][len("template/"):]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read())
    digests = {p: _digests(moto_server, bucket, p) for p in ("template", "extended")}
    assert MANIFEST_KEY in digests["template"] and len(digests["extended"]) > len(digests["template"])
    assert any(re.search(r"embeddings/c/", k) for k in digests["template"])
    return World(moto_server, bucket, source, "template", "extended", local, digests)


# ------------------------------------------------------------------ one verb under one fault

def _argv(cell: Cell, w: World, endpoint: str, store: str) -> list[str]:
    """The verb's command line, with the faulty endpoint on the side under test and the server on the other."""
    url = f"s3://{w.bucket}/{store}"
    direct = w.server.endpoint_url
    source, target = (endpoint, direct) if cell.side == "source" else (direct, endpoint)
    if cell.verb == "inventory":
        return ["inventory", w.source, "--endpoint-url", endpoint, "--path-style", "--out", "-", "--json",
                "--no-progress"]
    if cell.verb == "convert":
        return _convert_args(w.source, url, source, target)
    if cell.verb == "extend":
        return ["extend", url, "--years", "2025", "--json", "--no-progress", *_both_sides(source, target)]
    if cell.verb == "validate":
        level = ["--level", "fidelity", "--source", w.source] if cell.side == "source" else ["--level", "content"]
        return ["validate", url, *level, "--json", "--no-progress", *_both_sides(source, target)]
    return ["verify-mirrors", f"local={w.local}", f"s3={url}", "-O", f"s3:endpoint-url={endpoint}",
            "-O", "s3:path-style", "--level", "content", "--retries", str(ATTEMPTS), "--timeout", str(TIMEOUT),
            "--json", "--no-progress"]


def _report_retries(cell: Cell, doc: dict) -> int:
    if cell.verb == "verify-mirrors":
        return sum(m["retries"] for m in doc["passes"][-1]["summary"]["mirrors"])
    return doc["retries"]


def _store_for(cell: Cell, w: World, name: str) -> tuple[str, str | None]:
    """(store prefix the verb works on, prefix of the fault-free result it must equal, for verbs that write)."""
    if cell.verb == "convert":
        return name, w.template
    if cell.verb == "extend":
        _copy(w.server, w.bucket, w.template, name)
        return name, w.extended
    return w.template, None


def _record(cell: Cell, kind: str, persistent: bool, **outcome) -> None:
    record("s3", f"{cell.id} {kind} {'persistent' if persistent else 'transient'}", verb=cell.verb,
           side=cell.side, requests=cell.what, fault=kind, persistent=persistent, server="moto", **outcome)


def _cases(full: bool | None = None) -> list:
    """(cell, kind, persistent) to run: all of them with TESSERA_FAULTS=full (the run behind docs/reliability.md);
    by default a quarter, chosen so that every fault runs transient and persistent, and every cell both ways too,
    to keep the suite short."""
    full = os.environ.get("TESSERA_FAULTS") == "full" if full is None else full
    out = []
    for i, cell in enumerate(CELLS):
        for j, kind in enumerate(KINDS):
            for persistent in (False, True):
                if full or (i + j + 2 * persistent) % 4 == 0:
                    out.append(pytest.param(cell, kind, persistent,
                                            id=f"{cell.id}-{kind}-{'persistent' if persistent else 'transient'}"))
    return out


@pytest.mark.parametrize(("cell", "kind", "persistent"), _cases())
def test_verb_under_fault(cell, kind, persistent, world, capsys, monkeypatch):
    w = world
    w.server.apply_env(monkeypatch)
    name = re.sub(r"\W+", "-", f"{cell.id}-{kind}-{persistent}").strip("-").lower()
    store, reference = _store_for(cell, w, name)
    before = _digests(w.server, w.bucket, store) if reference is not None else None
    rule = cell.rule(kind, persistent)
    with FaultyProxy(w.server.endpoint_url, faults=[rule], stall=TIMEOUT * 2.5) as px:
        code, out, err = _run(capsys, _argv(cell, w, px.url, store))
    hits = len(rule.hits)
    assert rule.matched > 0, f"no request matched {cell.key}: the cell tests nothing"
    writes = [(m, p) for m, p, _ in px.seen if m in ("PUT", "POST", "DELETE")]
    if not cell.writes and cell.verb != "convert" and cell.verb != "extend":
        assert writes == [], f"{cell.verb} wrote {writes[:3]}"
    left = "nothing written"
    felt = cell.felt(kind)

    if not persistent or not felt:
        # retried (or not felt at all): the run succeeds with the right bytes
        assert code == 0, (code, err[-3000:])
        doc = json.loads(out)
        retries = _report_retries(cell, doc)
        if felt:
            assert hits == 1 and retries >= 1, (hits, retries, doc.get("transient"))
        else:
            assert retries == 0, (retries, doc.get("transient"))
        if reference is not None:
            assert _digests(w.server, w.bucket, store) == w.digests[reference]
            left = "store complete, byte-identical to a fault-free run"
        _record(cell, kind, persistent, exit=code, retries=retries, left=left, felt=felt,
                transient=doc.get("transient") or {})
        return

    # persistent and felt: exit 2, the object named, nothing half-written visible
    assert code == 2, (code, out[-2000:], err[-3000:])
    hit_keys = {p.split("/", 2)[2] for _, p in rule.hits}
    assert any(k in err for k in hit_keys), (hit_keys, err[-2000:])
    assert hits >= ATTEMPTS, (hits, "a persistent fault must be retried before giving up")
    if reference is not None:
        keys = _digests(w.server, w.bucket, store)
        assert _open_uploads(w.server, w.bucket, store) == []
        if keys == before:
            left = "store untouched (stopped before writing); a rerun completes it byte-identical"
        else:
            assert MANIFEST_KEY not in keys, "a manifest describes a store whose run failed"
            left = "no manifest (unfinished store), no open upload; a rerun completes it byte-identical"
        again, _, again_err = _run(capsys, _argv(cell, w, w.server.endpoint_url, store))
        assert again == 0, again_err[-3000:]
        assert _digests(w.server, w.bucket, store) == w.digests[reference]
    message = next(line for line in err.splitlines() if "error:" in line)
    _record(cell, kind, persistent, exit=code, retries=hits // max(1, len(hit_keys)) - 1, left=left, felt=True,
            message=re.sub(r"s3://[^/]+/", "s3://BUCKET/", message.split("error: ", 1)[1])[:300])


def test_multipart_writes_survive_faults_on_the_rados_gateway(rgw_server, world, capsys, monkeypatch):
    """The multipart path on the real gateway: a reset part, a stalled completion and a wrong part ETag are
    retried; a part that keeps failing leaves no open upload and no manifest, and a rerun finishes the store."""
    rgw_server.apply_env(monkeypatch)
    bucket = rgw_server.new_bucket("faults-rgw")
    made = make_legacy_archive(world.local.parent / "rgw-archive", years=(2024,), tiles=[TILE], seed=21)
    rgw_server.upload_tree(made.root, bucket, "arch")
    source = f"s3://{bucket}/arch"
    faults = [Fault(BAD_ETAG, method="PUT", key=r"/embeddings/c/", part=1, nth=(1,)),
              Fault(STALL, method="POST", key=r"/embeddings/c/", query="uploadId", nth=(1,)),
              Fault(LONG, method="GET", key=rf"{TILE}\.npy$", nth=(2,))]
    with FaultyProxy(rgw_server.endpoint_url, faults=faults, stall=TIMEOUT * 2.5) as px:
        code, out, err = _run(capsys, _convert_args(source, f"s3://{bucket}/a", px.url))
    assert code == 0, err[-3000:]
    assert [len(f.hits) for f in faults] == [1, 1, 1]
    assert json.loads(out)["retries"] >= 3
    assert _open_uploads(rgw_server, bucket, "a") == []
    reference = _digests(rgw_server, bucket, "a")
    shards = [k for k in reference if "/embeddings/c/" in k]
    assert shards and MANIFEST_KEY in reference

    broken = Fault(ERROR500, method="PUT", key=r"/embeddings/c/", part=2)
    with FaultyProxy(rgw_server.endpoint_url, faults=[broken]) as px:
        code, _, err = _run(capsys, _convert_args(source, f"s3://{bucket}/b", px.url))
    assert code == 2 and "/embeddings/c/" in err and "500 InternalError" in err, err[-2000:]
    assert len(broken.hits) == ATTEMPTS, broken.hits
    assert _open_uploads(rgw_server, bucket, "b") == []
    assert MANIFEST_KEY not in _digests(rgw_server, bucket, "b")
    assert main(_convert_args(source, f"s3://{bucket}/b", rgw_server.endpoint_url)) == 0
    capsys.readouterr()
    assert _digests(rgw_server, bucket, "b") == reference

    # the abort fails too: the upload stays open, the message says so, and the next run discards it
    unabortable = Fault(ERROR500, method="DELETE", key=r"/embeddings/c/", query="uploadId")
    with FaultyProxy(rgw_server.endpoint_url, faults=[broken, unabortable]) as px:
        code, _, err = _run(capsys, _convert_args(source, f"s3://{bucket}/c", px.url))
    assert code == 2 and "could not be aborted" in err and "discards it" in err, err[-2000:]
    assert len(unabortable.hits) == ATTEMPTS
    assert len(_open_uploads(rgw_server, bucket, "c")) == 1
    assert main(_convert_args(source, f"s3://{bucket}/c", rgw_server.endpoint_url)) == 0
    capsys.readouterr()
    assert _open_uploads(rgw_server, bucket, "c") == [] and _digests(rgw_server, bucket, "c") == reference
