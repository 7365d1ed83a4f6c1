"""verify-mirrors building blocks without servers: mirror specs, the streaming merge, ETag and manifest evidence,
verdicts, shard indexes, checkpoints and resumption, retries, and local mirrors end to end."""

from __future__ import annotations

import io
import json
import random
import shutil
import struct
import tracemalloc
from pathlib import Path

import crc32c
import pytest

from transcode.errors import ObjectNotFoundError, StorageError, TransientStorageError, UsageError
from transcode.format.manifest import ObjectRecord
from transcode.format.shardindex import IndexLayout
from transcode.mirrors import etags
from transcode.mirrors.engine import VerifyOptions
from transcode.mirrors.etags import parse as parse_etag
from transcode.mirrors.evidence import KeyCase, Policy, decide
from transcode.mirrors.merge import Prefetch, merge, ordered
from transcode.mirrors.report import Reporter
from transcode.mirrors.retry import Retrier, transient_reason
from transcode.mirrors.run import verify_mirrors
from transcode.mirrors.spec import load_mirrors_file, parse_mirrors
from transcode.mirrors.zarrcheck import check_index, json_difference, shard_spec
from transcode.storage import LocalStorage, ObjectInfo

MiB = 1024 * 1024


# ------------------------------------------------------------------ mirror specifications

def test_inline_mirror_specs_names_and_options():
    ms = parse_mirrors(["ceph=s3://b/store", "s3://other/x", "/data/posix"],
                       ["ceph:endpoint-url=https://rgw.example.org", "ceph:path-style", "ceph:aws-profile=ceph",
                        "m2:anonymous=yes", "m2:region=us-west-2", "ceph:part-size=16"])
    assert [m.name for m in ms] == ["ceph", "m2", "m3"]
    ceph, aws, posix = ms
    assert ceph.options.endpoint_url == "https://rgw.example.org" and ceph.options.path_style
    assert ceph.options.profile == "ceph" and ceph.part_size == 16 * MiB and ceph.is_s3
    assert aws.options.anonymous and aws.options.region == "us-west-2" and not aws.options.path_style
    assert posix.url == "/data/posix" and not posix.is_s3


@pytest.mark.parametrize("args,options,words", [
    (["a=/x", "a=/y"], [], "unique"),
    (["a=/x", "b=http://h/x"], [], "unsupported URL"),
    (["a=/x", "b=s3:///x"], [], "needs a bucket"),
    (["a=/x", "b=/y"], ["a:region=eu"], "do not apply"),
    (["a=s3://b/x", "b=/y"], ["a:colour=red"], "unknown mirror option"),
    (["a=s3://b/x", "b=/y"], ["a:path-style=maybe"], "yes/no"),
    (["a=s3://b/x", "b=/y"], ["a:part-size=1"], "at least 5 MiB"),
    (["a=s3://b/x", "b=/y"], ["c:region=x"], "no mirror named 'c'"),
    (["a=s3://b/x", "b=/y"], ["a-region"], "NAME:KEY=VALUE"),
])
def test_bad_mirror_specs_are_usage_errors(args, options, words):
    with pytest.raises(UsageError, match=words):
        parse_mirrors(args, options)


def test_mirrors_file_toml_and_json(tmp_path):
    (tmp_path / "m.toml").write_text('[mirrors.ceph]\nurl = "s3://b/p"\nendpoint-url = "http://h:1"\n'
                                     'path-style = true\npart-size = 5\n[mirrors.local]\nurl = "/srv/store"\n')
    (tmp_path / "m.json").write_text(json.dumps({"mirrors": {"aws": {"url": "s3://open/x", "anonymous": True}}}))
    ms = load_mirrors_file(str(tmp_path / "m.toml"))
    assert [(m.name, m.url) for m in ms] == [("ceph", "s3://b/p"), ("local", "/srv/store")]
    assert ms[0].options.path_style and ms[0].part_size == 5 * MiB
    assert load_mirrors_file(str(tmp_path / "m.json"))[0].options.anonymous
    # names pick from the file, other arguments add mirrors, options still apply
    picked = parse_mirrors(["local", "x=/tmp/x"], [], str(tmp_path / "m.toml"))
    assert [m.name for m in picked] == ["local", "x"]
    with pytest.raises(UsageError, match="no mirror named 'ceph'"):
        parse_mirrors(["local", "x=/tmp/x"], ["ceph:region=eu"], str(tmp_path / "m.toml"))
    every = parse_mirrors([], ["ceph:region=eu"], str(tmp_path / "m.toml"))
    assert every[0].options.region == "eu" and every[0].options.endpoint_url == "http://h:1"
    (tmp_path / "bad.toml").write_text("[mirrors.x]\nendpoint = 'http://h'\n")
    with pytest.raises(UsageError, match="needs a 'url'"):
        load_mirrors_file(str(tmp_path / "bad.toml"))
    (tmp_path / "broken.toml").write_text("[mirrors\n")
    with pytest.raises(UsageError, match="not a valid TOML"):
        load_mirrors_file(str(tmp_path / "broken.toml"))


# ------------------------------------------------------------------ listings and the merge

def test_merge_groups_keys_across_streams_in_order():
    a = [ObjectInfo(k, 1) for k in ["a", "a b", "a/b", "z", "é"]]
    b = [ObjectInfo(k, 2) for k in ["a", "a-b", "a/b", "zz"]]
    rows = list(merge([a, b, []], key=lambda o: o.key))
    assert [k for k, _ in rows] == ["a", "a b", "a-b", "a/b", "z", "zz", "é"]
    assert [x is not None for x in rows[0][1]] == [True, True, False]
    with pytest.raises(StorageError, match="not in UTF-8 binary key order"):
        list(ordered("m", [ObjectInfo("b", 1), ObjectInfo("a", 1)], key=lambda o: o.key))


def _stream(n: int, skip: int):
    for i in range(n):
        if i % skip:
            yield ObjectInfo(f"utm30/embeddings/c/0/0/{i // 1000:04d}/{i % 1000:04d}", i, "0" * 32)


def test_merge_memory_does_not_grow_with_the_object_count():
    def peak(n: int) -> int:
        tracemalloc.start()
        streams = [Prefetch(f"s{j}", lambda last, j=j: _stream(n, 7 + j), key=lambda o: o.key) for j in range(2)]
        count = sum(1 for _ in merge(streams, key=lambda o: o.key))
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert count == sum(1 for i in range(n) if i % 7 or i % 8)
        return top

    small, big = peak(10_000), peak(100_000)
    tracemalloc.start()
    held = list(_stream(100_000, 7))
    _, whole = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del held
    # bounded by a few 1000-object pages per stream, not by the listing: ten times the objects, about the same peak
    assert big < 2.5 * small and big < whole / 3, (small, big, whole)


def test_prefetch_restarts_after_a_transient_failure():
    calls = []

    def start(last):
        calls.append(last)
        for i in range(2500):
            k = f"k{i:05d}"
            if last is not None and k <= last:
                continue
            if len(calls) == 1 and i == 1500:
                raise TransientStorageError("m", "peer reset", "ECONNRESET")
            yield ObjectInfo(k, i)

    p = Prefetch("m", start, key=lambda o: o.key, is_transient=lambda e: transient_reason(e) is not None)
    keys = [o.key for o in p]
    assert keys == [f"k{i:05d}" for i in range(2500)] and calls == [None, "k01499"]


def test_local_list_after_matches_a_filtered_listing(tmp_path):
    names = ["a", "a b", "a-b", "a.b", "a/b", "a/b/c", "ab", "é/ü x", "z", "Zz", "a b/c", "\u00a0", "x/y/z/w"]
    for n in names:
        p = tmp_path / n
        if p.exists() and p.is_dir():
            continue
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"x")
        except (IsADirectoryError, NotADirectoryError, FileExistsError):
            pass
    s = LocalStorage(tmp_path)
    full = [o.key for o in s.list()]
    assert full == sorted(full, key=lambda k: k.encode())
    for after in [""] + full + ["a/", "a/a", "b", "é", "zzz", "a0"]:
        want = [k for k in full if k.encode() > after.encode()]
        assert [o.key for o in s.list_after(after)] == want, after


# ------------------------------------------------------------------ evidence and verdicts

def info(key, size, etag=None):
    return ObjectInfo(key, size, etag)


MD5A, MD5B = "a" * 32, "b" * 32


def verdicts(case, pol):
    v = decide(case, pol)
    return v.statuses, {(d.mirror, d.kind) for d in v.differences}


def test_etag_evidence():
    pol = Policy(("p", "q", "r"), 1)
    # equal single-part ETags prove equality; a local copy is unproven; ties go to the earlier mirror
    c = KeyCase("k", [info("k", 10, MD5A), info("k", 10, MD5A), info("k", 10)])
    etags.compare(c, pol, lambda i: None)
    assert verdicts(c, pol)[0] == ["equal", "equal", "unproven"]
    # different single-part MD5s prove a difference (the majority class is the reference)
    c = KeyCase("k", [info("k", 10, MD5A), info("k", 10, MD5B), info("k", 10, MD5A)])
    etags.compare(c, pol, lambda i: None)
    assert verdicts(c, pol)[0] == ["equal", "content", "equal"]
    # multipart ETags with other part counts: unproven, never different
    c = KeyCase("k", [info("k", 10 * MiB, MD5A + "-2"), info("k", 10 * MiB, MD5B + "-3"), None])
    want = etags.compare(c, pol, lambda i: None)
    assert want == set() and verdicts(c, pol)[0] == ["equal", "unproven", "missing"]
    # same count, unknown part size: ask for probes; known and equal: different; known and unequal: unproven
    c = KeyCase("k", [info("k", 11 * MiB, MD5A + "-3"), info("k", 11 * MiB, MD5B + "-3")])
    pol2 = Policy(("p", "q"), 1)
    assert etags.compare(c, pol2, lambda i: None) == {0, 1}
    c.reset()
    etags.compare(c, pol2, lambda i: 5 * MiB)
    assert verdicts(c, pol2)[0] == ["equal", "content"]
    c.reset()
    etags.compare(c, pol2, lambda i: (5, 6)[i] * MiB)
    assert verdicts(c, pol2)[0] == ["equal", "unproven"]
    assert parse_etag(f'"{MD5A}-12"') == (MD5A, 12) and parse_etag("xyz") is None and parse_etag(None) is None


def test_manifest_is_the_reference_when_used():
    pol = Policy(("p", "q"), 2, manifest=True)
    row = ObjectRecord("k", 10, MD5A, "00000000", None, 5 * MiB)
    # both mirrors agree with each other but one single-part ETag contradicts the manifest's MD5
    c = KeyCase("k", [info("k", 10, MD5B), info("k", 10, MD5A)], row)
    etags.compare(c, pol, lambda i: None)
    statuses, diffs = verdicts(c, pol)
    assert statuses == ["content", "equal"] and diffs == {("p", "content")}
    # a key not in the manifest is extra everywhere; `.tessera/` is outside the manifest's scope
    c = KeyCase("zzz", [info("zzz", 1, MD5A), info("zzz", 1, MD5A)], None)
    assert verdicts(c, pol)[0] == ["extra", "extra"]
    c = KeyCase(".tessera/x", [info(".tessera/x", 1, MD5A), info(".tessera/x", 1, MD5A)], None)
    etags.compare(c, pol, lambda i: None)
    assert verdicts(c, pol)[0] == ["equal", "equal"]
    # in the manifest, on no mirror: missing everywhere, found by the manifest level
    c = KeyCase("k", [None, None], row)
    v = decide(c, pol)
    assert v.statuses == ["missing", "missing"] and {d.level for d in v.differences} == {"manifest"}
    # the manifest's multipart ETag proves equality directly
    row2 = ObjectRecord("k", 11 * MiB, MD5A, "00000000", MD5B + "-3", 5 * MiB)
    c = KeyCase("k", [info("k", 11 * MiB, MD5B + "-3"), info("k", 11 * MiB, "c" * 32 + "-3")], row2)
    assert etags.compare(c, pol, lambda i: None) == {0, 1}
    c.reset()
    etags.compare(c, pol, lambda i: 5 * MiB)
    assert verdicts(c, pol)[0] == ["equal", "content"]


def test_source_of_truth_decides_presence_and_size():
    pol = Policy(("p", "q", "r"), 0, source=2)
    c = KeyCase("k", [info("k", 5), info("k", 5), info("k", 4)])
    assert verdicts(c, pol)[0] == ["size", "size", "equal"]
    c = KeyCase("k", [info("k", 5), info("k", 5), None])
    assert verdicts(c, pol)[0] == ["extra", "extra", None]
    maj = Policy(("p", "q", "r"), 0)
    assert verdicts(c, maj)[0] == ["equal", "equal", "missing"]
    c = KeyCase("k", [None, info("k", 5), None])
    assert verdicts(c, maj)[0] == [None, "extra", None]


# ------------------------------------------------------------------ zarr

def test_shard_index_checks_and_json_difference():
    meta = {"node_type": "array", "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [1, 64, 64]}},
            "codecs": [{"name": "sharding_indexed", "configuration": {
                "chunk_shape": [1, 32, 32], "index_codecs": [{"name": "bytes"}, {"name": "crc32c"}],
                "index_location": "end"}}]}
    spec = shard_spec(meta)
    assert spec == IndexLayout(4, "little", True, "end") and spec.nbytes == 4 * 16 + 4
    entries = [(0, 10), (10, 5), (2**64 - 1, 2**64 - 1), (15, 1)]
    raw = b"".join(struct.pack("<QQ", o, n) for o, n in entries)
    index = raw + struct.pack("<I", crc32c.crc32c(raw))
    assert check_index(index, spec, 16 + len(index)) is None
    assert "CRC32C" in check_index(index[:-1] + bytes([index[-1] ^ 1]), spec, 16 + len(index))
    assert "outside" in check_index(index, spec, 10 + len(index))
    a = json.dumps({"attributes": {"x": 1, "y": [1, 2]}}).encode()
    b = json.dumps({"attributes": {"x": 1, "y": [1, 3]}}).encode()
    assert json_difference(a, b) == "JSON differs at attributes.y[1]: 2 vs 3"
    assert "same JSON" in json_difference(a, json.dumps(json.loads(a), indent=2).encode())


# ------------------------------------------------------------------ retries

def test_retrier_retries_transient_failures_only():
    r = Retrier(attempts=4, base=0.001)
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise TransientStorageError("x", "reset by peer", "ConnectionResetError")
        return "ok"

    assert r.call("m", flaky) == "ok" and len(calls) == 3 and r.by_mirror("m") == {"ConnectionResetError": 2}
    for final in (ObjectNotFoundError("x", "no such object"), StorageError("x", "reset", "ECONNRESET")):
        calls.clear()

        def fails(e=final):
            calls.append(1)
            raise e

        with pytest.raises(type(final)):
            r.call("m", fails)
        assert len(calls) == 1  # decided by the type: neither absence nor an untyped failure is retried
    assert sum(r.by_mirror("m").values()) == 2


# ------------------------------------------------------------------ local mirrors end to end (API)

def _store(tmp_path: Path, n: int = 60) -> Path:
    root = tmp_path / "a"
    rnd = random.Random(4)
    for i in range(n):
        p = root / f"utm3{i % 2}" / "scales" / "c" / "0" / f"{i // 10}" / f"{i % 10}"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(rnd.randbytes(100 + i))
    (root / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group"}')
    return root


def _run(mirrors, out: io.StringIO | None = None, **kw) -> dict:
    ms = parse_mirrors([f"{n}={p}" for n, p in mirrors])
    return verify_mirrors(ms, VerifyOptions(**kw), Reporter(json_lines=True, out=out or io.StringIO()))


def _diffs(out: io.StringIO) -> set:
    docs = [json.loads(line) for line in out.getvalue().splitlines()]
    return {(d["key"], d["mirror"], d["kind"]) for d in docs if d["type"] == "difference"}


def test_local_mirrors_content_and_interrupted_sampled_run_resumes(tmp_path):
    a = _store(tmp_path)
    b, c = tmp_path / "b", tmp_path / "c"
    shutil.copytree(a, b)
    shutil.copytree(a, c)
    victim = b / "utm31/scales/c/0/3/3"
    data = bytearray(victim.read_bytes())
    data[5] ^= 1
    victim.write_bytes(bytes(data))
    (c / "utm30/scales/c/0/0/0").unlink()
    mirrors = [("a", a), ("b", b), ("c", c)]
    full_out = io.StringIO()
    full = _run(mirrors, full_out, level="content", state=str(tmp_path / "s1.json"))
    want = {("utm31/scales/c/0/3/3", "b", "content"), ("utm30/scales/c/0/0/0", "c", "missing")}
    assert _diffs(full_out) == want and not full["in_sync"]

    # list level cannot see the flipped byte; content with a sample of 5 finds it only if sampled
    ref_out = io.StringIO()
    ref = _run(mirrors, ref_out, level="content", sample=5, seed=3, state=str(tmp_path / "s2.json"))
    assert ref["sampled"] == 5

    seen = []

    def stop_at_30(key: str) -> None:
        seen.append(key)
        if len(seen) == 30:
            raise KeyboardInterrupt

    state = tmp_path / "s3.json"
    with pytest.raises(KeyboardInterrupt):
        _run(mirrors, level="content", sample=5, seed=3, state=str(state), on_commit=stop_at_30)
    saved = json.loads(state.read_text())
    assert saved["watermark"] == seen[28] or saved["watermark"] == seen[29]
    assert len(saved["sample"]) <= 5
    # a state whose tally lost one mirror's counts is refused, the file named (found by the parser fuzz)
    short = {**saved, "tally": {**saved["tally"], "mirrors": saved["tally"]["mirrors"][:2]}}
    state.write_text(json.dumps(short))
    with pytest.raises(UsageError, match="not a usable state file.*tally counts 2 mirror") as e:
        _run(mirrors, level="content", sample=5, seed=3, state=str(state))
    assert e.value.where == str(state)
    state.write_text(json.dumps(saved))
    out = io.StringIO()
    again = _run(mirrors, out, level="content", sample=5, seed=3, state=str(state))
    assert again["resumed_from"] == saved["watermark"]
    assert again["keys"] == ref["keys"] and again["sampled"] == 5
    assert _diffs(out) == _diffs(ref_out)
    assert not state.exists()

    # another verification cannot pick up this state file
    state.write_text(json.dumps({**saved, "fingerprint": "0" * 64}))
    with pytest.raises(UsageError, match="another verification"):
        _run(mirrors, level="list", state=str(state))
    assert _run(mirrors, level="list", state=str(state), restart=True)["keys"] == ref["keys"]


def test_exclude_patterns_and_a_manifest_file(tmp_path):
    from transcode.format.manifest import ObjectRecord, manifest_bytes
    a = _store(tmp_path, 20)
    b = tmp_path / "b"
    shutil.copytree(a, b)
    (b / "utm30/scales/c/0/0/0").unlink()
    (b / "notes.txt").write_text("extra")
    mirrors = [("a", a), ("b", b)]
    out = io.StringIO()
    _run(mirrors, out, level="list", exclude=("notes.*", "utm30/scales/c/0/0/*"), state=str(tmp_path / "s.json"))
    assert _diffs(out) == set()
    # a manifest given as a file: every object is checked against it, independently of the other mirror
    records = [ObjectRecord.from_bytes(o.key, LocalStorage(a).read(o.key), 5 * MiB, False) for o in LocalStorage(a).list()]
    (tmp_path / "m.parquet").write_bytes(manifest_bytes(records))
    out = io.StringIO()
    summary = _run(mirrors, out, level="content", manifest=str(tmp_path / "m.parquet"),
                   state=str(tmp_path / "s.json"))
    assert summary["manifest"] == str(tmp_path / "m.parquet")
    assert _diffs(out) == {("utm30/scales/c/0/0/0", "b", "missing"), ("notes.txt", "b", "extra")}
    with pytest.raises(UsageError, match="neither a mirror name nor a manifest file"):
        _run(mirrors, level="manifest", manifest=str(tmp_path / "nope.parquet"), state=str(tmp_path / "s.json"))
