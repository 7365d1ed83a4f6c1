"""Brotli and Snappy through zarr-python's `zarr.codecs` entry points: a store written with them opens in a fresh
interpreter that never imports transcode, and our classes coexist with imagecodecs-zarr's, which claim the same two
names (imagecodecs-zarr is in the test extra for Python >= 3.12, the only Pythons it installs on: there those tests
fail when it is missing, on 3.11 they skip; .ci/run's second leg runs them)."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, entry_points, version

import numpy as np
import pytest
import zarr

from transcode.codecs.extracodecs import BrotliCodec, SnappyCodec
from transcode.engine.plan import make_plan
from transcode.testing import interop

OPTIONS = ["embeddings=brotli:5:22", "scales=snappy"]
OURS = {"imagecodecs_brotli": "transcode.codecs.extracodecs.BrotliCodec",
        "imagecodecs_snappy": "transcode.codecs.extracodecs.SnappyCodec"}
THEIRS = {"imagecodecs_brotli": "imagecodecs.zarr.Brotli", "imagecodecs_snappy": "imagecodecs.zarr.Snappy"}

# Run in a fresh interpreter: reorder the zarr.codecs entry points as asked, optionally pin zarr's codec config,
# then open the store with plain zarr-python and hash the windows. Any "not configured ... any implementation"
# warning from zarr's registry is an error.
FRESH = r'''
import hashlib, importlib.metadata as md, json, sys, warnings
args = json.loads(sys.stdin.read())
assert "transcode" not in sys.modules
real = md.entry_points
def entry_points(**params):
    found = real(**params)
    if not isinstance(found, md.EntryPoints):  # Python 3.11 without arguments
        found = md.EntryPoints(ep for group in found.values() for ep in group)
    first = args["first"]
    if first is None:
        return found
    return md.EntryPoints(sorted(found, key=lambda ep: not ep.value.startswith(first)))
md.entry_points = entry_points
warnings.filterwarnings("error", message=".*not configured in config.*")
import numpy as np, zarr
from zarr.registry import fully_qualified_name, get_codec_class
if args["pin"]:
    zarr.config.set({f"codecs.{k}": v for k, v in args["pin"].items()})
group = zarr.open_group(args["store"], mode="r")
hashes = []
for job in args["reads"]:
    arr = group[job["array"]]
    t, y0, y1, x0, x1 = job["sel"]
    values = arr[t, :, y0:y1, x0:x1] if arr.ndim == 4 else arr[t, y0:y1, x0:x1]
    hashes.append(hashlib.sha256(np.ascontiguousarray(values).tobytes()).hexdigest())
print(json.dumps({
    "hashes": hashes,
    "used": {n: fully_qualified_name(get_codec_class(n)) for n in ("imagecodecs_brotli", "imagecodecs_snappy")},
    "entry_points": [ep.value for ep in md.entry_points(group="zarr.codecs", name="imagecodecs_brotli")],
    "modules": sorted(m for m in sys.modules if m.startswith(("transcode", "imagecodecs"))),
}))
'''


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store converted with Brotli embeddings and Snappy scales, and the windows with their expected hashes."""
    from transcode.codecs.spec import parse_codec_options
    from transcode.engine.convert import ConvertOptions, convert

    base = tmp_path_factory.mktemp("registration")
    archive, inv = interop.make_archive(base)
    path = base / "store.zarr"
    report = convert(archive, str(path), ConvertOptions(shard=interop.SHARD, codecs=parse_codec_options(OPTIONS)),
                     inventory=inv)
    assert report.ok
    reads = interop.expected_reads(archive, make_plan(inv, shard=interop.SHARD))
    return str(path), reads


def _fresh(store, reads, tmp_path, first: str | None = None, pin: dict | None = None) -> dict:
    args = {"store": store, "reads": [r.job() for r in reads], "first": first, "pin": pin}
    done = subprocess.run([sys.executable, "-c", FRESH], input=json.dumps(args), capture_output=True, text=True,
                          cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_store_opens_in_a_fresh_interpreter_with_plain_zarr(store, tmp_path):
    """No `import transcode`: zarr-python finds our codecs through the installed entry points and loads them."""
    path, reads = store
    out = _fresh(path, reads, tmp_path)
    assert out["hashes"] == [r.sha256 for r in reads]
    assert "transcode.codecs.extracodecs" in out["modules"]  # loaded by zarr-python, through the entry point
    assert "transcode.codecs.extracodecs:BrotliCodec" in out["entry_points"]


def test_without_our_entry_points_plain_zarr_cannot_read_it(store):
    """The entry points are what makes it work: hide them and zarr-python names the missing codec."""
    path, reads = store
    jobs = [r.job() for r in reads]
    hidden = interop.read_zarr_plain(path, jobs)
    assert {"embeddings", "scales"} == {r.array.split("/")[1] for r in reads}
    for read, got in zip(reads, hidden):
        name = "imagecodecs_brotli" if read.array.endswith("embeddings") else "imagecodecs_snappy"
        assert name in got.get("error", ""), got
    assert [g.get("sha256") for g in interop.read_zarr_tessera(path, jobs)] == [r.sha256 for r in reads]


def test_entry_points_name_our_classes():
    ours = {ep.name: ep.value for ep in entry_points(group="zarr.codecs") if ep.value.startswith("transcode.")}
    assert ours == {"imagecodecs_brotli": "transcode.codecs.extracodecs:BrotliCodec",
                    "imagecodecs_snappy": "transcode.codecs.extracodecs:SnappyCodec"}
    for name, value in ours.items():
        module, cls = value.split(":")
        assert getattr(sys.modules[module], cls).to_dict(getattr(sys.modules[module], cls)())["name"] == name


# ---------------------------------------------------------------------------------------- beside imagecodecs-zarr

@pytest.fixture
def imagecodecs_zarr():
    """imagecodecs.zarr; on Python 3.11, where it cannot install, a skip."""
    if sys.version_info < (3, 12):
        pytest.skip("imagecodecs-zarr needs Python >= 3.12: .ci/run's second leg runs this")
    try:
        version("imagecodecs-zarr")
    except PackageNotFoundError:
        pytest.fail("imagecodecs-zarr is not installed: `pip install -e '.[test]'` installs it on Python >= 3.12")
    import imagecodecs.zarr

    return imagecodecs.zarr


@pytest.mark.parametrize("first", ["transcode.", "imagecodecs."])
def test_both_entry_point_orders_choose_ours_silently(imagecodecs_zarr, store, tmp_path, first):
    """Two implementations per name, in either discovery order: ours is chosen, with no 'any implementation' warning."""
    path, reads = store
    out = _fresh(path, reads, tmp_path, first=first)
    assert len(out["entry_points"]) == 2 and out["entry_points"][0].startswith(first)
    assert out["used"] == OURS
    assert out["hashes"] == [r.sha256 for r in reads]


@pytest.mark.parametrize("first", ["transcode.", "imagecodecs."])
def test_a_user_who_configures_imagecodecs_reads_our_store_with_it(imagecodecs_zarr, store, tmp_path, first):
    """Our setting never overrides the user's: pinned to imagecodecs-zarr's classes, those decode our bytes."""
    path, reads = store
    out = _fresh(path, reads, tmp_path, first=first, pin=THEIRS)
    assert out["used"] == THEIRS
    assert "imagecodecs.zarr" in out["modules"]
    assert out["hashes"] == [r.sha256 for r in reads]


def test_same_metadata_both_ways(imagecodecs_zarr):
    """Each class writes the metadata the other writes; ours reads theirs back unchanged, theirs reads ours as its own
    (imagecodecs-zarr's Snappy drops a `level` on reading, its own included)."""
    ic = imagecodecs_zarr
    pairs = [(ic.Brotli(level=5, lgwin=22), BrotliCodec(level=5, lgwin=22)), (ic.Brotli(), BrotliCodec()),
             (ic.Brotli(mode="TEXT", lgwin=18), BrotliCodec(mode="TEXT", lgwin=18)),
             (ic.Brotli(mode=2), BrotliCodec(mode=2)), (ic.Snappy(), SnappyCodec()), (ic.Snappy(level=1), SnappyCodec(level=1))]
    for theirs, ours in pairs:
        assert theirs.to_dict() == ours.to_dict()
        assert type(ours).from_dict(theirs.to_dict()) == ours
        assert type(theirs).from_dict(ours.to_dict()).to_dict() == type(theirs).from_dict(theirs.to_dict()).to_dict()


@pytest.mark.parametrize("name", ["imagecodecs_brotli", "imagecodecs_snappy"])
@pytest.mark.parametrize("writer,reader", [(THEIRS, OURS), (OURS, THEIRS)])
def test_each_reads_what_the_other_wrote(imagecodecs_zarr, tmp_path, name, writer, reader):
    """Chunks written by one implementation decode bit-exactly with the other, under zarr-python's own pipeline."""
    rng = np.random.default_rng(11)
    data = np.clip(np.cumsum(rng.normal(size=(3, 40, 50)), axis=-1) * 4, -127, 127).astype("int8")
    config = {"level": 6, "lgwin": 20} if name == "imagecodecs_brotli" else {}
    doc = {"name": name, "configuration": config} if config else {"name": name}
    with zarr.config.set({f"codecs.{name}": writer[name]}):
        arr = zarr.create_array(str(tmp_path / "a.zarr"), shape=data.shape, chunks=(1, 16, 16), dtype="int8",
                                compressors=[doc])
        arr[...] = data
    stored = json.loads((tmp_path / "a.zarr" / "zarr.json").read_text())["codecs"][1]
    assert stored == doc
    with zarr.config.set({f"codecs.{name}": reader[name]}):
        again = zarr.open_array(str(tmp_path / "a.zarr"), mode="r")
        assert type(again.metadata.codecs[1]).__module__.startswith(reader[name].split(".")[0])
        assert np.array_equal(again[...], data)
