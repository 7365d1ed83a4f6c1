"""`verify-mirrors` against a real Ceph RGW, a moto server (AWS behaviour) and a POSIX mirror, each holding the
same store written by `convert`: every injected fault is reported with the right kind at the right level, nothing
is written to a mirror, repairs bring all mirrors into agreement, wrong input exits 2."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema
import pytest
from faultproxy import FaultyProxy

from transcode import schemas
from transcode.engine.convert import ConvertOptions, convert
from transcode.storage import LocalStorage, S3Options, S3Storage, Storage
from transcode.testing.synthetic import make_legacy_archive

MiB = 1024 * 1024
PART = 5 * MiB
UNICODE_KEY = ".tessera/notes/größe ✓ and spaces/ünïcode ☃.txt"
RGW_PREFIX = "stores/tiny v1"  # a prefix with a space; moto holds its copy at the bucket root (empty prefix)


# ------------------------------------------------------------------ the store and its mirrors

@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory) -> Path:
    """A store converted locally from the tiny synthetic archive: small shards, 5 MiB parts recorded."""
    base = tmp_path_factory.mktemp("mirror-store")
    made = make_legacy_archive(base / "archive", years=(2024,), preset="tiny", seed=5)
    store = base / "store"
    report = convert(str(made.root), str(store), ConvertOptions(shard=(512, 512), part_size=PART))
    assert report.ok and report.shards_written >= 8
    big = [p for p in store.rglob("*") if p.is_file() and p.stat().st_size > PART]
    assert len(big) >= 4, "need several multipart-sized shards"
    return store


@pytest.fixture(scope="module")
def aws_env(tmp_path_factory, rgw_server, moto_server) -> dict:
    """Environment for the CLI: credentials only through profiles (rgw, moto, bad), none in the environment."""
    d = tmp_path_factory.mktemp("aws")
    (d / "credentials").write_text(
        f"[rgw]\naws_access_key_id = {rgw_server.access_key}\naws_secret_access_key = {rgw_server.secret_key}\n"
        f"[moto]\naws_access_key_id = {moto_server.access_key}\naws_secret_access_key = {moto_server.secret_key}\n"
        f"[bad]\naws_access_key_id = {rgw_server.access_key}\naws_secret_access_key = wrong-secret-000000000000\n")
    (d / "config").write_text("[profile rgw]\nregion = us-east-1\n[profile moto]\nregion = us-east-1\n"
                              "[profile bad]\nregion = us-east-1\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_SHARED_CREDENTIALS_FILE=str(d / "credentials"), AWS_CONFIG_FILE=str(d / "config"),
               AWS_EC2_METADATA_DISABLED="true")
    return env


def upload(storage: Storage, root: Path, part_size: int = PART) -> None:
    """Copy a local store to a storage with the project's writer (fixed part size), 8 objects at a time."""
    src = LocalStorage(root)

    def one(key: str) -> None:
        with storage.open_writer(key, part_size) as w:
            w.write(src.read(key))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, [o.key for o in src.list()]))


def s3(server, bucket: str, prefix: str = "") -> S3Storage:
    return S3Storage(bucket, prefix, S3Options(endpoint_url=server.endpoint_url, path_style=True),
                     client=server.client())


@dataclass
class MirrorSet:
    """Three mirrors of one store: ceph (RGW, under a prefix), aws (moto, bucket root), posix (a directory)."""

    ceph: S3Storage
    aws: S3Storage
    posix: LocalStorage
    args: list[str]
    env: dict
    rgw: object
    extra: dict = field(default_factory=dict)

    def storages(self) -> dict[str, Storage]:
        return {"ceph": self.ceph, "aws": self.aws, "posix": self.posix}

    def snapshot(self) -> dict:
        """(size, ETag) of every object on every mirror, plus file bytes for the POSIX one."""
        snap = {n: {o.key: (o.size, o.etag) for o in s.list()} for n, s in self.storages().items()}
        snap["posix-bytes"] = {o.key: self.posix.read(o.key) for o in self.posix.list()}
        return snap


def make_mirrors(store: Path, rgw_server, moto_server, aws_env: dict, tmp_path: Path) -> MirrorSet:
    ceph = s3(rgw_server, rgw_server.new_bucket("ceph"), RGW_PREFIX)
    aws = s3(moto_server, moto_server.new_bucket("aws"))
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda s: upload(s, store), (ceph, aws)))
    posix = tmp_path / "posix mirror"
    shutil.copytree(store, posix)
    for storage in (ceph, aws, LocalStorage(posix)):
        storage.put(UNICODE_KEY, b"a key with spaces and unicode\n")
    args = [f"ceph={ceph.url}", f"aws={aws.url}", f"posix={posix}",
            "-O", f"ceph:endpoint-url={rgw_server.endpoint_url}", "-O", "ceph:path-style",
            "-O", "ceph:aws-profile=rgw",
            "-O", f"aws:endpoint-url={moto_server.endpoint_url}", "-O", "aws:path-style=true",
            "-O", "aws:aws-profile=moto"]
    return MirrorSet(ceph, aws, LocalStorage(posix), args, aws_env, rgw_server)


def cli(env: dict, *args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "transcode", "verify-mirrors", *args, "--no-progress"], env=env,
                          cwd=cwd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                          check=False)


def verify(ms: MirrorSet, *args: str, expect: int | None = None, cwd: Path | None = None) -> tuple[list, dict]:
    """Run verify-mirrors --json-lines; returns (differences, last summary), all lines checked against the schemas."""
    r = cli(ms.env, *ms.args, *args, "--json-lines", cwd=cwd)
    assert r.returncode in (0, 1), f"exit {r.returncode}\n{r.stderr}"
    if expect is not None:
        assert r.returncode == expect, f"exit {r.returncode}, expected {expect}\n{r.stdout[-3000:]}\n{r.stderr}"
    return parse(r.stdout)


def parse(stdout: str) -> tuple[list, dict]:
    diffs, summary = [], None
    for line in stdout.splitlines():
        doc = json.loads(line)
        if doc["type"] == "difference":
            jsonschema.validate(doc, schemas.load("mirror-difference.schema.json"))
            diffs.append(doc)
        elif doc["type"] == "summary":
            jsonschema.validate(doc, schemas.load("mirror-summary.schema.json"))
            summary = doc
        else:
            jsonschema.validate(doc, schemas.load("mirror-repair-event.schema.json"))
    assert summary is not None, stdout[-2000:]
    assert (summary["differences"] == 0) == summary["in_sync"]
    return diffs, summary


def found(diffs: list, kinds: tuple[str, ...] = ("missing", "extra", "size", "content", "unproven")) -> set:
    return {(d["key"], d["mirror"], d["kind"]) for d in diffs if d["kind"] in kinds}


# ------------------------------------------------------------------ faults

def flip_byte(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]


@dataclass
class Faults:
    missing: str       # deleted from aws
    extra: str         # added to posix only
    truncated: str     # cut short on ceph
    corrupt_aws: str   # multipart shard, one byte flipped on aws, re-uploaded with the same 5 MiB parts
    corrupt_ceph: str  # same on ceph
    repartitioned: str  # same bytes re-uploaded to aws with 6 MiB parts
    stale_zarr: str    # posix zarr.json replaced by an older document of the same size


def inject(ms: MirrorSet) -> Faults:
    objs = {o.key: o for o in ms.posix.list()}
    multipart = sorted(k for k, o in objs.items() if o.size > PART and "/embeddings/c/" in k)
    scales = sorted(k for k in objs if "/scales/c/" in k)
    f = Faults(missing=scales[0], extra="utm31/embeddings/c/0/0/99/99", truncated=scales[1],
               corrupt_aws=multipart[0], corrupt_ceph=multipart[1], repartitioned=multipart[2],
               stale_zarr="utm30/zarr.json")
    ms.aws.delete(f.missing)
    ms.aws.delete(UNICODE_KEY)
    ms.posix.put(f.extra, b"left behind by an old conversion")
    data = ms.ceph.read(f.truncated)
    ms.ceph.put(f.truncated, data[:-1000])
    for storage, key in ((ms.aws, f.corrupt_aws), (ms.ceph, f.corrupt_ceph)):
        data = storage.read(key)
        with storage.open_writer(key, PART) as w:
            w.write(flip_byte(data, len(data) // 2))
    data = ms.aws.read(f.repartitioned)
    with ms.aws.open_writer(f.repartitioned, 6 * MiB) as w:
        w.write(data)
    doc = ms.posix.read(f.stale_zarr).decode()
    marker = '"spatial:registration": "pixel"'
    assert marker in doc
    ms.posix.put(f.stale_zarr, doc.replace(marker, '"spatial:registration": "point"').encode())
    return f


def expected(f: Faults, level: str) -> set:
    """The differences each level must report for the injected faults (unproven ones aside)."""
    out = {(f.missing, "aws", "missing"), (f.extra, "posix", "extra"), (f.truncated, "ceph", "size"),
           (UNICODE_KEY, "aws", "missing")}
    if level in ("zarr", "content"):
        out.add((f.stale_zarr, "posix", "content"))
    if level == "content":
        out |= {(f.corrupt_aws, "aws", "content"), (f.corrupt_ceph, "ceph", "content")}
    return out


@pytest.fixture(scope="module")
def faulty(tiny_store, rgw_server, moto_server, aws_env, tmp_path_factory):
    """One mirror set with every fault injected (shared by the read-only tests of this module)."""
    ms = make_mirrors(tiny_store, rgw_server, moto_server, aws_env, tmp_path_factory.mktemp("faulty"))
    faults = inject(ms)
    return ms, faults, ms.snapshot()


# ------------------------------------------------------------------ tests

def test_each_fault_is_found_at_the_cheapest_level_that_can_prove_it(faulty, tmp_path):
    ms, f, before = faulty
    results = {}
    for level in ("list", "etag", "manifest", "zarr", "content"):
        diffs, summary = verify(ms, "--level", level, expect=1, cwd=tmp_path)
        results[level] = diffs
        proven = found(diffs, ("missing", "extra", "size", "content"))
        assert proven == expected(f, level), (level, sorted(proven ^ expected(f, level)))
        assert summary["level"] == level and summary["keys"] >= 80
        by = {m["name"]: m for m in summary["mirrors"]}
        assert by["ceph"]["url"].endswith(RGW_PREFIX) and by["aws"]["objects"] == by["ceph"]["objects"] - 2
    # list: presence and size only, never a claim about content
    assert all(d["level"] == "list" for d in results["list"])
    # etag: the POSIX mirror has no ETags, so every one of its objects is unproven, never equal
    unproven = found(results["etag"], ("unproven",))
    posix_keys = {o.key for o in ms.posix.list()} - {f.extra}
    assert {k for k, m, _ in unproven if m == "posix"} == posix_keys
    # the corrupted and the re-partitioned multipart shards are unproven on aws (moto reports its part size,
    # RGW does not): not equal, and the re-partitioned one is not called corrupt at any level
    assert {(f.corrupt_aws, "aws", "unproven"), (f.repartitioned, "aws", "unproven")} <= unproven
    for level, diffs in results.items():
        assert not any(d["key"] == f.repartitioned and d["kind"] != "unproven" for d in diffs), level
    # manifest: single-part copies are proven against the manifest MD5; multipart ones cannot be (it has no ETag)
    man = found(results["manifest"], ("unproven",))
    assert (f.corrupt_ceph, "ceph", "unproven") in man and (f.corrupt_aws, "aws", "unproven") in man
    multipart = {o.key for o in ms.ceph.list() if o.etag and "-" in o.etag}
    assert {k for k, m, _ in man if m == "ceph"} == multipart - {f.truncated}
    # zarr: the stale zarr.json is named with the JSON path that differs
    stale = next(d for d in results["zarr"] if d["key"] == f.stale_zarr)
    assert stale["level"] == "zarr" and "spatial:registration" in stale["detail"], stale
    # content: everything is proven: no unproven left, and the flipped bytes are found on the right mirror
    assert found(results["content"], ("unproven",)) == set()
    corrupt = next(d for d in results["content"] if d["key"] == f.corrupt_ceph)
    assert corrupt["level"] == "content" and "manifest" in corrupt["detail"]
    # a key with spaces and unicode is reported byte for byte (and ceph's prefix has a space too)
    assert all((UNICODE_KEY, "aws", "missing") in found(diffs) for diffs in results.values())
    # nothing was written to any mirror
    assert ms.snapshot() == before


def test_sampled_content_hashes_only_what_cheaper_levels_left_unproven(faulty, tmp_path):
    ms, f, before = faulty
    full, s_full = verify(ms, "--level", "content", expect=1, cwd=tmp_path)
    part, s_part = verify(ms, "--level", "content", "--sample", "0", expect=1, cwd=tmp_path)
    assert found(part) == found(full) == expected(f, "content")
    assert s_part["escalated"] > 0 and s_part["sampled"] == 0
    read = lambda s: sum(m["bytes_read"] for m in s["mirrors"])
    # one copy per class of proven-equal copies, only for what the zarr level left unproven
    assert read(s_part) < read(s_full), (read(s_part), read(s_full))
    zarr, _ = verify(ms, "--level", "zarr", expect=1, cwd=tmp_path)
    assert s_part["escalated"] == len({d["key"] for d in zarr if d["kind"] == "unproven"})
    three, s3_ = verify(ms, "--level", "content", "--sample", "3", "--seed", "1", expect=1, cwd=tmp_path)
    assert found(three) == expected(f, "content") and s3_["sampled"] == 3
    assert ms.snapshot() == before


def test_declared_part_size_proves_multipart_corruption_at_the_etag_level(faulty, tmp_path):
    ms, f, _ = faulty
    # every multipart object on ceph was uploaded in 5 MiB parts (RGW cannot say so itself); moto tells
    diffs, _ = verify(ms, "--level", "etag", "-O", "ceph:part-size=5", expect=1, cwd=tmp_path)
    got = {(d["key"], d["mirror"]): d for d in diffs}
    assert got[(f.corrupt_aws, "aws")]["kind"] == "content"
    assert "same 2 parts of 5 MiB" in got[(f.corrupt_aws, "aws")]["detail"] or "parts of 5 MiB" in \
        got[(f.corrupt_aws, "aws")]["detail"]
    # moto reports 6 MiB parts for the re-partitioned copy: still not comparable, still not corrupt
    assert got[(f.repartitioned, "aws")]["kind"] == "unproven"
    assert "part sizes" in got[(f.repartitioned, "aws")]["detail"]


def test_text_report_names_each_difference_and_summarises_per_mirror(faulty, tmp_path):
    ms, f, _ = faulty
    r = cli(ms.env, *ms.args, "--level", "zarr", cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    lines = r.stdout.splitlines()
    assert any(line.startswith("missing") and " aws " in line and f.missing in line for line in lines)
    assert any(line.startswith("content") and f.stale_zarr in line and "spatial:registration" in line
               for line in lines)
    assert any(line.startswith("mirror") and "unproven" in line for line in lines)
    assert lines[-1].startswith("hint:") and "OUT OF SYNC" in lines[-2]


def test_json_document_holds_what_the_json_lines_stream(faulty, tmp_path):
    """--json: one document when the run ends, with the stream's differences and summary (schema-checked)."""
    from referencing import Registry, Resource

    ms, _, _ = faulty
    diffs, summary = verify(ms, "--level", "zarr", expect=1, cwd=tmp_path)
    r = cli(ms.env, *ms.args, "--level", "zarr", "--json", cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    assert "--json now prints one JSON document" in r.stderr and "--json-lines" in r.stderr
    doc = json.loads(r.stdout)
    names = ("mirror-report", "mirror-summary", "mirror-difference", "mirror-repair-event")
    docs = {n: schemas.load(f"{n}.schema.json") for n in names}
    registry = Registry().with_resources((d["$id"], Resource.from_contents(d)) for d in docs.values())
    jsonschema.Draft202012Validator(docs["mirror-report"], registry=registry).validate(doc)
    [only] = doc["passes"]
    assert only["differences"] == diffs and only["differences_omitted"] == 0 and not doc["in_sync"]

    def steady(s: dict) -> dict:  # timings and request counts vary between two runs
        return {**s, "seconds": 0, "mirrors": [{k: v for k, v in m.items() if k not in ("requests", "retries",
                                                                                        "transient")}
                                               for m in s["mirrors"]]}

    assert steady(only["summary"]) == steady(summary)


def test_two_s3_mirrors_in_sync_at_the_etag_level_and_empty_prefix(tiny_store, rgw_server, moto_server, aws_env,
                                                                  tmp_path):
    ms = make_mirrors(tiny_store, rgw_server, moto_server, aws_env, tmp_path)
    s3_args = [a for a in ms.args if "posix" not in a]
    # same bytes, same part size: every ETag proves equality, and the manifest agrees with every single-part one
    r = cli(ms.env, *s3_args, "--level", "etag", "--json-lines", cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr
    diffs, summary = parse(r.stdout)
    assert diffs == [] and summary["in_sync"] and all(m["equal"] == m["objects"] for m in summary["mirrors"])
    # a mirror whose prefix holds nothing: everything missing there, a warning, exit 1
    empty = [f"new={ms.ceph.url}-not-there", "-O", f"new:endpoint-url={rgw_server.endpoint_url}",
             "-O", "new:path-style", "-O", "new:aws-profile=rgw"]
    r = cli(ms.env, *s3_args, *empty, "--json-lines", cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    diffs, summary = parse(r.stdout)
    new = next(m for m in summary["mirrors"] if m["name"] == "new")
    assert new["objects"] == 0 and new["missing"] == summary["keys"] and "empty" in new["warnings"][0]
    assert {d["kind"] for d in diffs} == {"missing"} and {d["mirror"] for d in diffs} == {"new"}
    # only empty mirrors: nothing to verify, unusable input
    r = cli(ms.env, f"a={tmp_path / 'nothing-a'}", f"b={tmp_path / 'nothing-b'}", cwd=tmp_path)
    assert r.returncode == 2 and "no objects on any mirror" in r.stderr


def test_unusable_input_is_one_clear_line_and_exit_2(faulty, rgw_server, tmp_path):
    ms, _, before = faulty
    env = ms.env
    cases = [
        # wrong credentials on the Ceph mirror
        ([f"ceph={ms.ceph.url}", f"posix={ms.posix.root}", "-O", f"ceph:endpoint-url={rgw_server.endpoint_url}",
          "-O", "ceph:path-style", "-O", "ceph:aws-profile=bad"], ["mirror 'ceph'", "access denied"]),
        # a bucket that does not exist
        (["ceph=s3://no-such-bucket-4711/x", f"posix={ms.posix.root}", "-O",
          f"ceph:endpoint-url={rgw_server.endpoint_url}", "-O", "ceph:path-style", "-O", "ceph:aws-profile=rgw"],
         ["mirror 'ceph'", "no-such-bucket-4711", "does not exist"]),
        # bad mirror specifications
        ([f"posix={ms.posix.root}", "-O", "posix:colour=blue"], ["unknown mirror option 'colour'"]),
        ([f"posix={ms.posix.root}", f"other={ms.posix.root}", "-O", "posix:endpoint-url=http://x"],
         ["local path", "do not apply"]),
        ([f"a={ms.posix.root}", f"a={ms.posix.root}"], ["unique"]),
        ([f"a={ms.posix.root}", "b=ftp://example.org/x"], ["unsupported URL"]),
        ([f"a={ms.posix.root}"], ["at least two mirrors"]),
        ([f"a={ms.posix.root}", f"b={ms.posix.root}", "-O", "c:region=x"], ["no mirror named 'c'"]),
        ([f"a={ms.posix.root}", f"b={ms.posix.root}", "--repair"], ["--source-of-truth"]),
    ]
    for args, words in cases:
        r = cli(env, *args, cwd=tmp_path)
        assert r.returncode == 2, (args, r.returncode, r.stdout[-500:], r.stderr)
        err = r.stderr.strip().splitlines()
        assert len(err) <= 2 and all(w in r.stderr for w in words), (words, r.stderr)
        assert "Traceback" not in r.stderr
        assert not (tmp_path / ".tessera-verify-mirrors").exists(), "a run that verified nothing leaves no state"
    assert ms.snapshot() == before


def test_mirrors_file_names_each_mirror(faulty, rgw_server, moto_server, tmp_path):
    ms, f, _ = faulty
    (tmp_path / "mirrors.toml").write_text(f"""
[mirrors.ceph]
url = "{ms.ceph.url}"
endpoint-url = "{rgw_server.endpoint_url}"
path-style = true
aws-profile = "rgw"

[mirrors.aws]
url = "{ms.aws.url}"
endpoint_url = "{moto_server.endpoint_url}"
path_style = true
aws_profile = "moto"

[mirrors.posix]
url = "{ms.posix.root}"
""")
    doc = __import__("tomllib").loads((tmp_path / "mirrors.toml").read_text())
    jsonschema.validate(doc, schemas.load("mirror-file.schema.json"))
    # the names given pick mirrors from the file
    r = cli(ms.env, "--mirrors-file", str(tmp_path / "mirrors.toml"), "ceph", "aws", "--json-lines", cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    diffs, summary = parse(r.stdout)
    assert [m["name"] for m in summary["mirrors"]] == ["ceph", "aws"]
    # two mirrors and no manifest at the list level: a tie goes to the mirror named first
    assert found(diffs) == {(f.missing, "aws", "missing"), (f.truncated, "aws", "size"),
                            (UNICODE_KEY, "aws", "missing")}
    # ... unless the other one is the source of truth
    r = cli(ms.env, "--mirrors-file", str(tmp_path / "mirrors.toml"), "ceph", "aws", "--source-of-truth", "aws",
            "--json-lines", cwd=tmp_path)
    diffs, summary = parse(r.stdout)
    assert found(diffs) == {(f.missing, "ceph", "extra"), (f.truncated, "ceph", "size"),
                            (UNICODE_KEY, "ceph", "extra")}


def test_repair_plan_then_repair_brings_all_mirrors_in_line(tiny_store, rgw_server, moto_server, aws_env, tmp_path):
    ms = make_mirrors(tiny_store, rgw_server, moto_server, aws_env, tmp_path)
    objs = {o.key: o for o in ms.posix.list()}
    multipart = sorted(k for k, o in objs.items() if o.size > PART and "/embeddings/c/" in k)
    scales = sorted(k for k in objs if "/scales/c/" in k)
    # faults on the S3 mirrors; the POSIX mirror (the convert output) is the source of truth
    ms.aws.delete(scales[0])
    ms.aws.put("utm30/stray object ✓", b"not part of the store")
    ms.ceph.put(scales[1], ms.ceph.read(scales[1])[:-10])
    data = ms.ceph.read(multipart[0])
    with ms.ceph.open_writer(multipart[0], PART) as w:
        w.write(flip_byte(data, 1234567))
    doc = ms.ceph.read("utm31/zarr.json").decode()
    ms.ceph.put("utm31/zarr.json", doc.replace('"pixel"', '"point"', 1).encode())
    data = ms.aws.read(multipart[1])
    with ms.aws.open_writer(multipart[1], 7 * MiB) as w:  # same bytes, other part size: equal, but new ETag
        w.write(data)
    # a new, empty mirror on the same gateway, reached over HTTPS with its self-signed certificate
    new_bucket = rgw_server.new_bucket("new")
    new = [f"new=s3://{new_bucket}/mirror", "-O", f"new:endpoint-url={rgw_server.https_endpoint_url}",
           "-O", f"new:ca-bundle={rgw_server.ca_bundle}", "-O", "new:path-style", "-O", "new:aws-profile=rgw"]
    ms.args += new
    before = ms.snapshot()

    # the plan alone writes nothing to any mirror
    plan = tmp_path / "plan.jsonl"
    diffs, _ = verify(ms, "--level", "content", "--sample", "0", "--source-of-truth", "posix",
                      "--repair-plan", str(plan), expect=1, cwd=tmp_path)
    assert ms.snapshot() == before
    assert {(d["key"], d["mirror"]) for d in diffs if d["mirror"] != "new"} == {
        (scales[0], "aws"), ("utm30/stray object ✓", "aws"), (scales[1], "ceph"), (multipart[0], "ceph"),
        ("utm31/zarr.json", "ceph")}
    ops = [json.loads(line) for line in plan.read_text().splitlines()]
    for op in ops:
        jsonschema.validate(op, schemas.load("mirror-repair-plan.schema.json"))
    planned = {(o["op"], o["key"], o["target"]) for o in ops}
    assert ("copy", scales[0], "aws") in planned and ("delete", "utm30/stray object ✓", "aws") in planned
    assert ("copy", scales[1], "ceph") in planned and ("copy", multipart[0], "ceph") in planned
    assert ("copy", "utm31/zarr.json", "ceph") in planned
    assert not any(k == multipart[1] and t != "new" for _, k, t in planned), "equal content must not be recopied"
    assert {k for op, k, t in planned if t == "new"} == set(objs) and all(op == "copy" for op, _, t in planned
                                                                          if t == "new")
    assert not any(o["target"] == "posix" for o in ops) and not any(o["op"] == "skip" for o in ops)

    # repair: copies and deletions, then a second verification that finds everything in sync
    r = cli(ms.env, *ms.args, "--level", "content", "--sample", "0", "--source-of-truth", "posix", "--repair",
            "--json-lines", cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    steps = [d for d in lines if d["type"] == "repair"]
    assert steps and all(s["status"] == "done" for s in steps), [s for s in steps if s["status"] != "done"]
    final = [d for d in lines if d["type"] == "summary"][-1]
    assert final["phase"] == "reverify" and final["in_sync"] and final["differences"] == 0
    assert final["repair"]["failed"] == 0 and final["repair"]["copied"] == len(planned) - 1
    assert ms.posix.list() and before["posix-bytes"] == ms.snapshot()["posix-bytes"], "the source was written"

    # the copies used the store's fixed part size: the S3 mirrors now agree by ETag alone
    s3_only = [a for a in ms.args if "posix" not in a]
    r = cli(ms.env, *s3_only, "--level", "etag", "--json-lines", cwd=tmp_path)
    diffs, _ = parse(r.stdout)
    unproven = {(d["key"], d["mirror"]) for d in diffs}
    assert unproven == {(multipart[1], "aws")}, unproven  # only the 7 MiB re-upload, which the repair rightly kept
    assert r.returncode == 1
    new_etags = {o.key: o.etag for o in S3Storage(new_bucket, "mirror", S3Options(
        endpoint_url=rgw_server.endpoint_url, path_style=True), client=rgw_server.client()).list()}
    assert {k: e for k, e in new_etags.items()} == {o.key: o.etag for o in ms.ceph.list()}


# ------------------------------------------------------------------ throttling, resets, interruption

def test_throttling_resets_and_cut_bodies_are_retried_and_counted(faulty, moto_server, tmp_path):
    ms, _, _ = faulty
    reference, _ = verify(ms, "--level", "content", expect=1, cwd=tmp_path)
    proxy = FaultyProxy(moto_server.endpoint_url, slowdown_every=7, reset_every=11, cut_every=5)
    try:
        args = [a.replace(moto_server.endpoint_url, proxy.url) for a in ms.args]
        r = cli(ms.env, *args, "--level", "content", "--json-lines", cwd=tmp_path)
    finally:
        proxy.close()
    assert r.returncode == 1, r.stderr[-3000:]
    diffs, summary = parse(r.stdout)
    assert found(diffs) == found(reference)
    assert all(proxy.injected.values()), proxy.injected
    aws = next(m for m in summary["mirrors"] if m["name"] == "aws")
    assert aws["retries"] >= sum(proxy.injected.values()) - 2, (aws, proxy.injected)
    reasons = " ".join(aws["transient"])
    assert "503 SlowDown" in reasons, aws["transient"]
    assert any(w in reasons for w in ("ConnectionClosedError", "ProtocolError", "ResponseStreamingError",
                                      "IncompleteRead")), aws["transient"]
    assert next(m for m in summary["mirrors"] if m["name"] == "ceph")["retries"] == 0


def test_an_interrupted_run_resumes_where_it_stopped(faulty, moto_server, tmp_path):
    import signal
    import time

    ms, _, before = faulty
    reference, ref_summary = verify(ms, "--level", "zarr", expect=1, cwd=tmp_path)
    proxy = FaultyProxy(moto_server.endpoint_url, delay=0.15)
    state = tmp_path / "verify state.json"
    args = [a.replace(moto_server.endpoint_url, proxy.url) for a in ms.args]
    cmd = [sys.executable, "-m", "transcode", "verify-mirrors", *args, "--level", "zarr", "--json-lines", "--no-progress",
           "--concurrency", "1", "--state", str(state)]
    try:
        proc = subprocess.Popen(cmd, env=ms.env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if state.exists() and json.loads(state.read_text()).get("watermark"):
                break
            time.sleep(0.1)
        assert proc.poll() is None, "the run ended before it could be interrupted"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 130, err
        assert "interrupted" in err and "resume" in err
        saved = json.loads(state.read_text())
        assert saved["watermark"] and 0 < saved["tally"]["keys"] < ref_summary["keys"]
        proxy.delay = 0.0
        r = subprocess.run(cmd, env=ms.env, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    finally:
        proxy.close()
    assert r.returncode == 1, r.stderr
    diffs, summary = parse(r.stdout)
    assert summary["resumed_from"] == saved["watermark"]
    assert summary["keys"] == ref_summary["keys"]
    assert sorted(found(diffs)) == sorted(found(reference))
    assert [m["objects"] for m in summary["mirrors"]] == [m["objects"] for m in ref_summary["mirrors"]]
    assert not state.exists(), "a finished verification leaves no state behind"
    assert ms.snapshot() == before


def test_parallel_partitioned_listing_equals_the_plain_listing(faulty):
    from transcode.storage.partitioned import PartitionedListing

    ms, _, _ = faulty
    for storage in (ms.ceph, ms.aws):
        plain = [(o.key, o.size, o.etag) for o in storage.list()]
        keys = [k for k, _, _ in plain]
        for parts in (1, 3, 8, 40):
            pl = PartitionedListing(storage, threads=4, parts=parts)
            assert [(o.key, o.size, o.etag) for o in pl] == plain, parts
        assert pl.ranges > 8 and pl.split_requests > 1
        for after in (keys[0], keys[len(keys) // 3], keys[-2], "utm30/", "utm30/embeddings/c/0/0/5", "zzz"):
            got = [o.key for o in PartitionedListing(storage, after=after, threads=3, parts=12)]
            assert got == [k for k in keys if k > after], after
