"""The public Python API and the command line over it: the CLI's `--json` document is the API report's `.to_json()`
for every verb, flags mean one thing across verbs, old spellings still work and warn, `import transcode` stays
light, library code prints nothing, and the README's examples run."""

from __future__ import annotations

import argparse
import ast
import inspect
import json
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import jsonschema
import pytest
from referencing import Registry, Resource

import transcode
from transcode import errors, schemas
from transcode.cli import build_parser, main
from transcode.testing.synthetic import make_legacy_archive

PACKAGE = Path(transcode.__file__).parent
README = PACKAGE.parent / "README.md"
SHARD = "1024"  # small shards keep the stores quick to write
HEAVY = ("numpy", "zarr", "boto3", "botocore", "pyarrow", "numcodecs", "pyproj", "dask", "tqdm")


# ------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    """A clean tiny archive for 2023 and 2024 (3 tiles across the UTM 30/31 boundary)."""
    root = tmp_path_factory.mktemp("api") / "archive"
    make_legacy_archive(root, years=(2023, 2024), preset="tiny", seed=11)
    return root


@pytest.fixture(scope="module")
def store(archive, tmp_path_factory) -> Path:
    """The archive's 2024 converted by the API, for the verbs that read a store."""
    path = tmp_path_factory.mktemp("api-store") / "store.zarr"
    report = transcode.convert(archive, path, years=[2024], shard_size=int(SHARD))
    assert report.ok and report.shards_written > 0
    return path


def cli_json(capsys, *args: str, expect: int = 0) -> dict:
    """`tessera-transcode ARGS --json` in this process: its exit code checked, its one document parsed."""
    capsys.readouterr()
    code = main([*args, "--json"])
    out = capsys.readouterr().out
    assert code == expect, out[-3000:]
    return json.loads(out)


def without(doc, *paths: str):
    """`doc` with the values at these dotted paths (timings) replaced by a marker; '*' walks every list item."""
    doc = json.loads(json.dumps(doc))

    def walk(node, parts):
        if not parts or node is None:
            return
        head, rest = parts[0], parts[1:]
        if head == "*":
            for item in node:
                walk(item, rest)
        elif not rest:
            if head in node:
                node[head] = "<timing>"
        else:
            walk(node.get(head), rest)

    for p in paths:
        walk(doc, p.split("."))
    return doc


# ------------------------------------------------------------------ the CLI's --json is the API's to_json()

def test_inventory_cli_equals_api(archive, tmp_path, capsys):
    out = tmp_path / "inventory.parquet"
    api = transcode.inventory(archive, verify_hashes=True, out=out)
    assert api.ok and out.exists() and api.to_json()["inventory_path"] == str(out)
    doc = cli_json(capsys, "inventory", str(archive), "--verify-hashes", "--out", str(out), "--no-progress")
    assert doc == api.to_json()  # no timings in an inventory


def test_plan_cli_equals_api(archive, capsys):
    api = transcode.plan(archive, years=[2024], zones=[30, 31], shard_size=int(SHARD))
    assert api.ok and api.to_json()["shards"] > 0
    doc = cli_json(capsys, "plan", str(archive), "--years", "2024", "--zones", "30,31", "--shard-size", SHARD,
                   "--no-progress")
    assert doc == api.to_json()


CONVERT_TIMINGS = ("seconds", "throughput_mb_s", "stage_seconds")


def test_convert_and_extend_cli_equal_api(archive, tmp_path, capsys):
    """Same store path, removed between the runs: the bytes are deterministic, only the timings differ."""
    path = tmp_path / "store.zarr"
    api = transcode.convert(archive, path, years=[2023], shard_size=int(SHARD))
    api_ext = transcode.extend(path, [2024], source=archive)
    assert api.ok and api_ext.ok and api_ext.time == [2023, 2024] and api_ext.shards_written > 0
    shutil.rmtree(path)
    doc = cli_json(capsys, "convert", str(archive), str(path), "--years", "2023", "--shard-size", SHARD,
                   "--no-progress")
    assert without(doc, *CONVERT_TIMINGS) == without(api.to_json(), *CONVERT_TIMINGS)
    ext = cli_json(capsys, "extend", str(path), "--years", "2024", "--source", str(archive), "--no-progress")
    assert without(ext, *CONVERT_TIMINGS) == without(api_ext.to_json(), *CONVERT_TIMINGS)


def test_validate_cli_equals_api(store, archive, capsys):
    api = transcode.validate(store, level="fidelity", source=archive, sample=5, rules="interop")
    assert api.ok and api.to_json()["levels_run"][-1] == "fidelity"
    doc = cli_json(capsys, "validate", str(store), "--level", "fidelity", "--source", str(archive), "--sample", "5",
                   "--rules", "interop", "--no-progress")
    assert without(doc, "summary.seconds") == without(api.to_json(), "summary.seconds")


def test_codecs_cli_equals_api(capsys):
    api = transcode.codecs()
    assert api.ok and api.default in {c["codec"] for c in api.codecs} | {api.default}
    assert cli_json(capsys, "codecs") == api.to_json()


BENCH_TIMINGS = ("sample.build_seconds", "results.*.compress_mb_s", "results.*.decompress_mb_s",
                 "results.*.projected_seconds", "results.*.projected_input_mb_s", "recommendation")


def test_bench_codecs_cli_equals_api(archive, capsys):
    """Ratios and sizes are equal; speeds, times and the recommendation (which weighs speeds) are timings."""
    api = transcode.bench_codecs(archive, sample=1, codecs=["blosc:zstd:3", "zstd:1"], budget=1, years=[2024])
    assert api.ok and [r.option for r in api.results] == ["blosc:zstd:3", "zstd:1"]
    doc = cli_json(capsys, "bench-codecs", str(archive), "--sample", "1", "--codec", "blosc:zstd:3", "--codec",
                   "zstd:1", "--budget", "1", "--years", "2024", "--no-progress")
    assert without(doc, *BENCH_TIMINGS) == without(api.to_json(), *BENCH_TIMINGS)


def test_demo_cli_equals_api(tmp_path, capsys):
    api = transcode.demo(tmp_path / "demo")
    assert api.ok and api.generated and Path(api.store, "zarr.json").exists()
    shutil.rmtree(tmp_path / "demo")
    doc = cli_json(capsys, "demo", str(tmp_path / "demo"), "--no-progress")
    timings = tuple(f"convert.{t}" for t in CONVERT_TIMINGS)
    assert without(doc, *timings) == without(api.to_json(), *timings)


def _report_schema_ok(doc: dict) -> None:
    """Valid against schemas/mirror-report.schema.json, whose parts are the summary/difference/event schemas."""
    names = ("mirror-report", "mirror-summary", "mirror-difference", "mirror-repair-event")
    docs = {n: schemas.load(f"{n}.schema.json") for n in names}
    registry = Registry().with_resources((d["$id"], Resource.from_contents(d)) for d in docs.values())
    jsonschema.Draft202012Validator(docs["mirror-report"], registry=registry).validate(doc)


def test_verify_mirrors_cli_equals_api(store, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default checkpoint directory is ./.tessera-verify-mirrors
    copy = tmp_path / "copy.zarr"
    shutil.copytree(store, copy)
    shards = sorted(p for p in copy.rglob("*") if p.is_file() and "/c/" in p.as_posix())
    for p in shards[:3]:
        p.unlink()
    (copy / "extra-object").write_bytes(b"x")
    api = transcode.verify_mirrors({"main": str(store), "copy": str(copy)}, level="list")
    assert not api.ok and api.summary["differences"] == 4
    assert {(d["mirror"], d["kind"]) for d in api.passes[0].differences} == {("copy", "missing"), ("copy", "extra")}
    _report_schema_ok(api.to_json())
    doc = cli_json(capsys, "verify-mirrors", f"main={store}", f"copy={copy}", "--level", "list",
                   "--no-progress", expect=1)
    assert without(doc, "passes.*.summary.seconds") == without(api.to_json(), "passes.*.summary.seconds")


def test_mirror_report_caps_differences_and_streams_every_one(store, tmp_path, monkeypatch):
    """The report lists up to max_differences per pass (all counted); on_record still gets every one."""
    monkeypatch.chdir(tmp_path)
    copy = tmp_path / "copy.zarr"
    shutil.copytree(store, copy)
    for p in sorted(p for p in copy.rglob("*") if p.is_file() and "/c/" in p.as_posix())[:5]:
        p.unlink()
    streamed: list[dict] = []
    report = transcode.verify_mirrors([f"a={store}", f"b={copy}"], max_differences=2, on_record=streamed.append)
    first = report.passes[0]
    assert len(first.differences) == 2 and first.differences_omitted == 3 and report.summary["differences"] == 5
    assert [d for d in streamed if d["type"] == "difference"][:2] == first.differences
    assert sum(d["type"] == "difference" for d in streamed) == 5 and streamed[-1] == report.summary
    _report_schema_ok(report.to_json())


def test_verify_mirrors_repair_report(store, tmp_path, monkeypatch):
    """A repair: the plan, its steps, and the re-verification as a second pass of the one document."""
    monkeypatch.chdir(tmp_path)
    copy = tmp_path / "copy.zarr"
    shutil.copytree(store, copy)
    victim = min(p for p in copy.rglob("*") if p.is_file() and "/c/" in p.as_posix())
    victim.unlink()
    report = transcode.verify_mirrors({"main": str(store), "copy": str(copy)}, source_of_truth="main", repair=True)
    doc = report.to_json()
    _report_schema_ok(doc)
    assert report.ok and [p["summary"]["phase"] for p in doc["passes"]] == ["verify", "reverify"]
    assert doc["repair"]["plan"]["copy"] == 1 and doc["repair"]["events"][0]["status"] == "done"
    assert victim.exists()


# ------------------------------------------------------------------ one meaning per flag

def _verbs() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _flags(p: argparse.ArgumentParser, deprecated: bool = False) -> dict[str, argparse.Action]:
    """Flag -> action, the deprecated spellings only (or all but them)."""
    out = {}
    for group in p._action_groups:
        if group.title.startswith("deprecated") != deprecated:
            continue
        for a in group._group_actions:
            for s in a.option_strings:
                out[s] = a
    return out


def test_every_verb_has_help_json_and_each_flag_states_its_default(capsys):
    verbs = _verbs()
    assert set(verbs) == {"inventory", "plan", "convert", "extend", "validate", "codecs", "bench-codecs", "demo",
                          "verify-mirrors"}
    json_help = set()
    for name, p in verbs.items():
        with pytest.raises(SystemExit) as e:
            main([name, "--help"])
        assert e.value.code == 0 and "--json" in capsys.readouterr().out
        flags = _flags(p)
        json_help.add(flags["--json"].help)
        for flag, action in {**flags, **_flags(p, deprecated=True)}.items():
            if flag in ("-h", "--help") or action.required:
                continue
            assert action.help and "default" in action.help, f"{name} {flag}: no default in {action.help!r}"
    assert len(json_help) == 1 and "one JSON document" in json_help.pop()


S3_NAMES = ("endpoint-url", "region", "aws-profile", "anonymous", "path-style", "ca-bundle", "requester-pays")


def test_s3_flags_have_the_same_names_on_every_side():
    verbs = _verbs()
    for name in ("inventory", "plan", "bench-codecs"):
        flags = _flags(verbs[name])
        assert {f"--{n}" for n in S3_NAMES} <= set(flags) and "--acl" not in flags, name
    for name in ("convert", "extend", "validate"):
        flags = _flags(verbs[name])
        for side in ("source", "store"):
            assert {f"--{side}-{n}" for n in S3_NAMES} <= set(flags), (name, side)
        assert ("--store-acl" in flags) == (name != "validate") and "--source-acl" not in flags
    from transcode.mirrors.spec import OPTION_KEYS

    assert set(OPTION_KEYS) == {*S3_NAMES, "acl", "part-size"}
    # the help of a setting is the same text wherever it appears
    texts = {}
    for p in verbs.values():
        for flag, a in _flags(p).items():
            for n in S3_NAMES:
                if flag in (f"--{n}", f"--source-{n}", f"--store-{n}"):
                    texts.setdefault(n, set()).add(a.help)
    assert all(len(t) == 1 for t in texts.values()), texts


def test_workers_means_processes_and_concurrency_means_threads_everywhere():
    for name, p in _verbs().items():
        flags = _flags(p)
        assert "--profile" not in flags and "--source-profile" not in flags, name
        if "--workers" in flags:
            a = flags["--workers"]
            assert name in ("convert", "extend", "validate") and a.default == 1
            assert "worker processes" in a.help and "(default 1)" in a.help
        if "--concurrency" in flags:
            assert name in ("inventory", "verify-mirrors") and "in threads" in flags["--concurrency"].help
    for fn in (transcode.convert, transcode.extend, transcode.validate):
        assert inspect.signature(fn).parameters["workers"].default == 1
    assert inspect.signature(transcode.inventory).parameters["concurrency"].default is None  # 8, or 32 on S3


# ------------------------------------------------------------------ deprecated spellings

@pytest.mark.parametrize("argv,dest,value,new", [
    (["inventory", "SRC", "--profile", "p"], "aws_profile", "p", "--aws-profile"),
    (["inventory", "SRC", "--workers", "3"], "concurrency", 3, "--concurrency"),
    (["plan", "SRC", "--profile", "p"], "aws_profile", "p", "--aws-profile"),
    (["bench-codecs", "SRC", "--profile", "p"], "aws_profile", "p", "--aws-profile"),
    (["convert", "SRC", "DST", "--source-profile", "p"], "source_aws_profile", "p", "--source-aws-profile"),
    (["convert", "SRC", "DST", "--store-profile", "p"], "store_aws_profile", "p", "--store-aws-profile"),
    (["extend", "DST", "--years", "2024", "--store-profile", "p"], "store_aws_profile", "p", "--store-aws-profile"),
    (["validate", "DST", "--profile", "interop"], "rules", "interop", "--rules"),
    (["validate", "DST", "--store-profile", "p"], "store_aws_profile", "p", "--store-aws-profile"),
])
def test_deprecated_flags_set_the_new_one_and_warn(argv, dest, value, new):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        args = build_parser().parse_args(argv)
    assert getattr(args, dest) == value
    [w] = [w for w in caught if issubclass(w.category, errors.DeprecatedSpellingWarning)]
    assert f"use {new}" in str(w.message) and "deprecated" in str(w.message)


def test_deprecated_flags_print_one_warning_line_and_still_run(archive, store, tmp_path, capsys):
    capsys.readouterr()
    assert main(["inventory", str(archive), "--workers", "2", "--profile", "default", "--out", "-", "--json",
                 "--no-progress"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert any(line.startswith("tessera-transcode inventory: warning: --workers is deprecated: use --concurrency")
               for line in err), err
    assert any("--profile is deprecated: use --aws-profile" in line for line in err), err
    assert main(["validate", str(store), "--profile", "geoemb", "--level", "metadata", "--json", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["profile"] == "geoemb" and "use --rules" in captured.err


def test_verify_mirrors_json_warns_that_it_is_one_document_now(store, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    copy = tmp_path / "copy.zarr"
    shutil.copytree(store, copy)
    capsys.readouterr()
    assert main(["verify-mirrors", f"a={store}", f"b={copy}", "--json", "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["in_sync"] is True  # one document, not lines
    assert "--json now prints one JSON document" in err and "--json-lines" in err
    assert main(["verify-mirrors", f"a={store}", f"b={copy}", "--json-lines", "--no-progress"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[-1]["type"] == "summary" and lines[-1]["in_sync"]
    assert main(["verify-mirrors", f"a={store}", f"b={copy}", "--json", "--json-lines"]) == 2


def test_deprecated_mirror_option_names_work_and_warn(tmp_path):
    from transcode.mirrors.spec import load_mirrors_file, parse_mirrors

    with pytest.warns(errors.DeprecatedSpellingWarning, match="'profile'.*use 'aws-profile'"):
        [m] = parse_mirrors(["a=s3://b/x"], ["a:profile=rgw"])
    assert m.options.profile == "rgw"
    with pytest.warns(errors.DeprecatedSpellingWarning, match="'endpoint'.*use 'endpoint-url'"):
        [m] = parse_mirrors(["a=s3://b/x"], {"a": {"endpoint": "http://h:1"}})
    assert m.options.endpoint_url == "http://h:1"
    (tmp_path / "m.toml").write_text('[mirrors.a]\nurl = "s3://b/x"\nprofile = "p"\nrequester-pays = true\n'
                                     'acl = "bucket-owner-full-control"\n')
    with pytest.warns(errors.DeprecatedSpellingWarning, match="aws-profile"):
        [m] = load_mirrors_file(str(tmp_path / "m.toml"))
    assert m.options.profile == "p" and m.options.requester_pays and m.options.acl == "bucket-owner-full-control"


def test_deprecated_api_keywords_work_and_warn(archive, store):
    from transcode.api.keywords import s3_options

    with pytest.warns(DeprecationWarning, match=r"inventory\(workers=\.\.\.\) is deprecated: use concurrency="):
        report = transcode.inventory(archive, workers=2)
    assert report.ok
    with pytest.warns(DeprecationWarning, match=r"validate\(profile=\.\.\.\) is deprecated: use rules="):
        checked = transcode.validate(store, profile="geoemb", level="metadata")
    assert checked.profile == "geoemb"
    for side, old in (("", "profile"), ("source", "source_profile"), ("store", "store_profile")):
        given = {old: "p"}
        with pytest.warns(errors.DeprecatedSpellingWarning, match=f"use {side + '_' if side else ''}aws_profile="):
            assert s3_options(given, "convert", side, writes=side == "store").profile == "p"
        assert given == {}
    with pytest.raises(TypeError, match="both"), pytest.warns(errors.DeprecatedSpellingWarning):
        s3_options({"profile": "a", "aws_profile": "b"}, "inventory")


# ------------------------------------------------------------------ keywords, errors, lightness

def test_s3_keywords_follow_the_flag_names():
    from transcode.api.keywords import s3_options

    given = {"store_endpoint_url": "http://h:1", "store_path_style": True, "store_acl": "bucket-owner-full-control",
             "store_requester_pays": True, "store_ca_bundle": "ca.pem", "store_region": "eu", "store_aws_profile": "p",
             "source_anonymous": True}
    store_opts = s3_options(given, "convert", "store", writes=True)
    assert (store_opts.endpoint_url, store_opts.path_style, store_opts.acl, store_opts.requester_pays,
            store_opts.ca_bundle, store_opts.region, store_opts.profile) == \
        ("http://h:1", True, "bucket-owner-full-control", True, "ca.pem", "eu", "p")
    assert s3_options(given, "convert", "source").anonymous and given == {}
    with pytest.raises(errors.UsageError, match="True or False"):
        s3_options({"anonymous": "yes"}, "inventory")


def test_cli_s3_flags_become_the_api_keywords_and_s3_options():
    from transcode.api.keywords import s3_options
    from transcode.cli import common
    from transcode.mirrors.spec import parse_mirrors

    args = build_parser().parse_args(["convert", "SRC", "s3://b/x", "--store-acl", "bucket-owner-full-control",
                                      "--store-requester-pays", "--store-aws-profile", "p", "--source-anonymous",
                                      "--source-ca-bundle", "ca.pem", "--source-endpoint-url", "http://h:1"])
    store_opts = s3_options(common.s3_keywords(args, "store", writes=True), "convert", "store", writes=True)
    source_opts = s3_options(common.s3_keywords(args, "source"), "convert", "source")
    assert (store_opts.acl, store_opts.requester_pays, store_opts.profile) == ("bucket-owner-full-control", True, "p")
    assert (source_opts.anonymous, source_opts.ca_bundle, source_opts.endpoint_url) == (True, "ca.pem", "http://h:1")
    assert source_opts.acl is None and not source_opts.requester_pays
    args = build_parser().parse_args(["verify-mirrors", "a=s3://b/x", "b=/y", "-O", "a:acl=bucket-owner-full-control",
                                      "-O", "a:requester-pays", "-O", "a:aws-profile=p"])
    [a, _] = parse_mirrors(args.mirrors, args.mirror_option)
    assert (a.options.acl, a.options.requester_pays, a.options.profile) == ("bucket-owner-full-control", True, "p")


def test_api_errors_are_typed(archive, store, tmp_path):
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        transcode.plan(archive, colour="blue")
    with pytest.raises(TypeError, match="unexpected keyword argument 'store_acl'"):
        transcode.validate(store, store_acl="private")  # validate never writes
    with pytest.raises(transcode.UsageError, match="--rules"):
        transcode.validate(store, rules="strict")
    with pytest.raises(transcode.UsageError, match="--shard-size"):
        transcode.convert(archive, tmp_path / "s.zarr", shard_size=100, chunk_size=32)
    with pytest.raises(transcode.UsageError, match="inside the source"):
        transcode.convert(archive, archive / "inner.zarr")
    with pytest.raises(transcode.UsageError, match="--workers"):
        transcode.validate(store, workers=0)
    with pytest.raises(transcode.ArchiveError):
        transcode.inventory(tmp_path / "no-archive-here")
    with pytest.raises(transcode.UsageError, match="source-of-truth"):
        transcode.verify_mirrors([str(store), str(store)], repair=True)
    assert not (tmp_path / "s.zarr").exists()
    with pytest.warns(errors.CodecPortabilityWarning, match="snappy"), \
            pytest.raises(transcode.UsageError, match="inside the source"):
        transcode.convert(archive, archive / "inner.zarr", codecs="snappy")


def test_every_error_type_is_exported_at_the_top():
    types = {n: v for n, v in vars(errors).items() if isinstance(v, type) and issubclass(v, Exception)
             and v.__module__ == errors.__name__}
    assert {"TranscodeError", "UsageError", "StorageError", "DeprecatedSpellingWarning"} <= set(types)
    for name, value in types.items():
        assert getattr(transcode, name) is value and name in transcode.__all__
    for name in transcode.__all__:
        assert getattr(transcode, name) is not None


def _fresh(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout


def test_import_transcode_is_light():
    out = _fresh("import sys, json, transcode; transcode.__all__; transcode.UsageError; "
                 f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))")
    assert json.loads(out) == []


def test_api_names_survive_imports_of_the_subpackages_named_alike():
    """transcode.validate and transcode.codecs stay the API functions after their namesake subpackages load."""
    out = _fresh("import transcode.validate.report, transcode.codecs.spec; import transcode; "
                 "from transcode import validate, codecs; from transcode.validate.report import Finding; "
                 "from transcode.codecs import spec; "
                 "print(callable(transcode.validate), callable(transcode.codecs), validate is transcode.validate, "
                 "codecs().ok, Finding.__module__, spec.__name__)")
    assert out.split() == ["True", "True", "True", "True", "transcode.validate.report", "transcode.codecs.spec"]


def test_python_dash_m_and_version():
    r = subprocess.run([sys.executable, "-m", "transcode", "--version"], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == f"tessera-transcode {transcode.__version__}"


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
            yield node.lineno, "print("
        if isinstance(node, ast.Attribute) and node.attr in ("stdout", "stderr") and \
                isinstance(node.value, ast.Name) and node.value.id == "sys":
            yield node.lineno, f"sys.{node.attr}"


# a subprocess's own protocol on its stdout, not output to a user
ALLOWED = {("testing/zarrread.py", "main")}  # a script run in a subprocess: its stdout is its answer


def test_no_printing_in_library_code():
    """Only transcode/cli prints; library code returns reports and raises (progress bars go through tqdm)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith("cli/"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        for line, what in _calls(tree):
            owner = min((f for f in functions if f.lineno <= line <= f.end_lineno),
                        key=lambda f: f.end_lineno - f.lineno, default=None)
            if (rel, owner.name if owner else "") not in ALLOWED:
                found.append(f"{rel}:{line} {what}")
    assert found == []


# ------------------------------------------------------------------ the README's examples

def _readme_block(name: str) -> str:
    text = README.read_text(encoding="utf-8")
    m = re.search(rf"<!-- {name}:start -->\s*```python\n(.*?)```\s*<!-- {name}:end -->", text, re.DOTALL)
    assert m, f"README has no {name} block"
    return m.group(1)


def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    make_legacy_archive(tmp_path / "archive", years=(2024,), preset="tiny", seed=2)
    exec(compile(_readme_block("python-api-example"), "README.md", "exec"), {})  # noqa: S102 - the README's own code
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "3 tiles, 0 problems" and "in sync" in out and out[-1].startswith("refused: ")
    assert (tmp_path / "inventory.parquet").exists() and (tmp_path / "copy.zarr" / "zarr.json").exists()


def test_readme_s3_example_runs(tmp_path, monkeypatch, moto_server):
    monkeypatch.chdir(tmp_path)
    make_legacy_archive(tmp_path / "archive", years=(2024,), preset="tiny", seed=2)
    moto_server.apply_env(monkeypatch)
    bucket = moto_server.new_bucket("stores")
    code = _readme_block("python-api-s3-example")
    code = code.replace("https://rgw.example.org", moto_server.endpoint_url).replace("s3://stores/", f"s3://{bucket}/")
    scope = {"transcode": transcode}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - the README's own code
    assert scope["report"].ok and scope["report"].shards_written > 0 and scope["check"].ok
    keys = [o["Key"] for o in moto_server.client().list_objects_v2(Bucket=bucket)["Contents"]]
    assert "tessera.zarr/zarr.json" in keys
