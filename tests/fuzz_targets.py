"""Parser fuzz targets, run one per process by tests/test_fuzz.py (under an address-space limit and a timeout):
`python fuzz_targets.py TARGET EXAMPLES WORKDIR [SEED]` (SEED: a directory made by `make_seed`).

Each target writes a valid file of one kind, feeds hypothesis-mutated copies of it through the public reader or
verb that consumes it, and accepts two outcomes only: the reader's normal result, or a TranscodeError (the typed
errors of transcode.errors) whose message names the file. Any other exception fails the target with its
traceback (hypothesis shrinks it first); a hang or an unbounded allocation fails it through the caller's limits.
Validate reports count as failures when a level stopped on an unexpected exception (`internal` findings)."""

from __future__ import annotations

import io
import json
import shutil
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from fuzzing import mutated_bytes, mutated_json_bytes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import transcode
from transcode.errors import TranscodeError

TARGETS: dict[str, Callable[[Path, int], None]] = {}


def target(fn):
    TARGETS[fn.__name__] = fn
    return fn


def run(examples: int):
    """Hypothesis settings of one target: `examples` cases, seeded (derandomized), no example database."""
    return settings(max_examples=examples, deadline=None, database=None, derandomize=True, print_blob=True,
                    suppress_health_check=list(HealthCheck))


def typed(call: Callable, *names: str):
    """Call; a TranscodeError is an accepted outcome when its message names one of `names` (the file)."""
    try:
        return call()
    except TranscodeError as e:
        if not any(n in str(e) for n in names):
            raise AssertionError(f"the error does not name the file ({names}): {e}") from e
        return e


def no_internal_findings(report) -> None:
    """A validate report whose levels ran to their end or stopped on a typed error, never an unexpected one."""
    if isinstance(report, TranscodeError):
        return
    internal = [f for f in report.findings if f.code == "internal"]
    assert not internal, internal[0].message


class Restore:
    """Write mutated bytes over a file for one example and put the original back afterwards."""

    def __init__(self, path: Path) -> None:
        self.path, self.original = path, path.read_bytes()

    def __call__(self, data: bytes) -> Restore:
        self.path.write_bytes(data)
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.path.write_bytes(self.original)


SEED: Path | None = None  # a directory holding a ready archive/ and store/ (the tests make it once per session)


def make_seed(work: Path) -> None:
    """A one-tile synthetic archive and its converted store (small shards, so there are several) in work."""
    from transcode.testing.synthetic import make_legacy_archive

    make_legacy_archive(work / "archive", years=(2024,), tiles=["grid_0.05_83.95"], seed=5)
    transcode.convert(str(work / "archive"), str(work / "store"), shard_size=256, chunk_size=32)


def tiny_store(work: Path) -> tuple[Path, Path]:
    """This target's own copy of the seed archive and store (made here when there is no seed)."""
    archive, store = work / "archive", work / "store"
    if not store.exists():
        if SEED is None:
            make_seed(work)
        else:
            shutil.copytree(SEED / "archive", archive, symlinks=True)
            shutil.copytree(SEED / "store", store, symlinks=True)
    return archive, store


# ---------------------------------------------------------------- legacy input: .npy headers, landmasks

@target
def npy_headers(work: Path, examples: int) -> None:
    from transcode.legacy.tiles import NpyTileFile, Window, read_npy_header
    from transcode.storage.local import LocalStorage

    storage = LocalStorage(work)
    bases = {}
    for kind, arr in (("embeddings", np.arange(6 * 5 * 128, dtype=np.int8).reshape(6, 5, 128)),
                      ("scales", np.full((6, 5), 0.05, dtype=np.float32))):
        buf = io.BytesIO()
        np.save(buf, arr)
        bases[kind] = buf.getvalue()
    header_texts = st.builds(
        "{{'descr': {}, 'fortran_order': {}, 'shape': {}, }}".format,
        st.sampled_from(["'|i1'", "'<f4'", "'>f4'", "'<i8'", "'O'", "[('a', '<i4')]", "'V7'", "1", "'<U9'"]),
        st.sampled_from(["False", "True", "0", "None"]),
        st.sampled_from(["(6, 5, 128)", "(6, 5)", "()", "(-1, 5, 128)", "(10**6, 10**6, 128)", "(2**62, 2**62, 128)",
                         "(6, 5, 128, 2)", "[6, 5, 128]", "(6.0, 5, 128)", "(0, 0, 128)", "(4096, 4096, 128)"]))

    def synthesized(text: str, version: int) -> bytes:
        body = text.encode("latin-1")
        pad = b" " * (-(len(body) + 11 + (2 if version > 1 else 0)) % 64) + b"\n"
        size = len(body) + len(pad)
        pre = (bytes([version, 0]) + size.to_bytes(2 if version == 1 else 4, "little"))
        return b"\x93NUMPY" + pre + body + pad + b"\x00" * 64

    files = st.one_of(
        st.sampled_from(sorted(bases)).flatmap(lambda k: st.tuples(st.just(k), mutated_bytes(bases[k], 0, 140))),
        st.tuples(st.sampled_from(sorted(bases)), st.builds(synthesized, header_texts, st.sampled_from([1, 2, 3]))),
    )

    @run(examples)
    @given(files)
    def check(case):
        kind, data = case
        key = f"grid_0.05_50.05{'_scales' if kind == 'scales' else ''}.npy"
        (work / key).write_bytes(data)
        header = typed(lambda: read_npy_header(storage, key), key)
        if isinstance(header, TranscodeError):
            return
        tile = typed(lambda: NpyTileFile(storage, key, header, kind), key)
        if isinstance(tile, TranscodeError):
            return
        h, w = tile.shape[:2]
        for window in (Window(0, min(h, 2), 0, min(w, 3)), Window(h - 1, h, 0, w)):
            typed(lambda window=window: tile.read(window), key)

    check()


@target
def landmask_headers(work: Path, examples: int) -> None:
    import rasterio
    import rasterio.windows
    from rasterio.transform import from_origin

    from transcode.legacy.tiles import Window, read_landmask
    from transcode.storage.local import LocalStorage

    class Remote(LocalStorage):
        """The same files read whole into memory, as landmasks on S3 are."""

        def local_path(self, key):
            return None

    path = work / "grid_0.05_50.05.tiff"
    path.unlink(missing_ok=True)  # rasterio would open a damaged one left by an earlier run to delete it
    mask = (np.arange(40 * 30).reshape(40, 30) % 3 > 0).astype(np.uint8)
    with rasterio.open(path, "w", driver="GTiff", width=30, height=40, count=1, dtype="uint8", crs="EPSG:32631",
                       transform=from_origin(500000, 5500000, 10, 10), compress="deflate", tiled=False) as ds:
        ds.write(mask, 1)
    base = path.read_bytes()
    # a landmask declaring 100000 x 100000 pixels, nearly all of them sparse (absent blocks): read whole, it would
    # take 10 GB
    huge = work / "huge.tiff"
    huge.unlink(missing_ok=True)
    with rasterio.open(huge, "w", driver="GTiff", width=100000, height=100000, count=1, dtype="uint8",
                       crs="EPSG:32631", transform=from_origin(500000, 5500000, 10, 10), compress="deflate",
                       tiled=True, blockxsize=2048, blockysize=2048, sparse_ok=True) as ds:
        ds.write(mask[:2, :2], 1, window=rasterio.windows.Window(0, 0, 2, 2))
    huge_base = huge.read_bytes()
    stores = (LocalStorage(work), Remote(work))

    @run(examples)
    @given(st.one_of(mutated_bytes(base, 0, 400), mutated_bytes(base), st.just(huge_base),
                     mutated_bytes(huge_base, 0, 400)), st.sampled_from(stores),
           st.sampled_from([None, Window(0, 2, 0, 3), Window(38, 40, 25, 30)]))
    def check(data, storage, window):
        path.write_bytes(data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # GDAL's NotGeoreferencedWarning and friends
            typed(lambda: read_landmask(storage, path.name, window), path.name)

    check()


# ---------------------------------------------------------------- the store: zarr.json, shard indexes, manifest

@target
def zarr_json(work: Path, examples: int) -> None:
    from transcode.engine.storestate import read_zone_grids
    from transcode.storage.local import LocalStorage

    _, store = tiny_store(work)
    zone = _zone(store)
    docs = ["zarr.json"] + [f"{zone}/{node}zarr.json" for node in ("", "embeddings/", "scales/", "x/", "time/")]
    originals = {k: json.loads((store / k).read_text()) for k in docs}

    @run(examples)
    @given(st.sampled_from(docs).flatmap(lambda k: st.tuples(st.just(k), mutated_json_bytes(originals[k]))))
    def check(case):
        key, data = case
        with Restore(store / key)(data):
            typed(lambda: read_zone_grids(LocalStorage(store)), key)
            no_internal_findings(typed(lambda: transcode.validate(str(store), level="structure"), key))

    check()


def _zone(store: Path) -> str:
    """The first zone group of the store."""
    return min(p.name for p in store.glob("utm*"))


def _shard_keys(store: Path) -> list[str]:
    from convert_helpers import SHARD_KEY

    return sorted(k for k in (p.relative_to(store).as_posix() for p in store.rglob("*") if p.is_file())
                  if SHARD_KEY.match(k))


@target
def shard_indexes(work: Path, examples: int) -> None:
    import crc32c

    _, store = tiny_store(work)
    keys = _shard_keys(store)
    index_nbytes = 64 * 16 + 4  # both arrays: (256/32)^2 entries of 16 bytes, then the CRC32C

    def forged(key: str, raw: list[int], n: int) -> bytes:
        """The shard with an index of chosen (offset, nbytes) entries and a valid CRC32C."""
        data = (store / key).read_bytes()
        body = data[: len(data) - index_nbytes]
        entries = (raw * (2 * n))[: 2 * n] if raw else [2**64 - 1] * (2 * n)
        idx = np.array(entries, dtype="<u8").tobytes()
        return body + idx + crc32c.crc32c(idx).to_bytes(4, "little")

    ints = st.one_of(st.integers(0, 2**64 - 1), st.integers(0, 4096), st.just(2**64 - 1), st.just(2**63))
    cases = st.sampled_from(keys).flatmap(lambda k: st.tuples(st.just(k), st.one_of(
        mutated_bytes((store / k).read_bytes(), -index_nbytes),
        st.lists(ints, min_size=0, max_size=8).map(lambda raw: forged(k, raw, 64)))))

    copy = work / "copy"  # the mirror verifier compares the damaged index with this intact one
    if not copy.exists():
        shutil.copytree(store, copy)

    def verify():
        return transcode.verify_mirrors([f"a={store}", f"b={copy}"], level="zarr", restart=True, concurrency=2,
                                        state=str(work / "state.json"))

    @run(examples)
    @given(cases, st.sampled_from(["structure", "content", "mirrors"]))
    def check(case, level):
        key, data = case
        with Restore(store / key)(data):
            if level == "mirrors":
                typed(verify, key)
            else:
                no_internal_findings(typed(lambda: transcode.validate(str(store), level=level, sample=4, seed=1),
                                           key))

    check()


@target
def store_manifest(work: Path, examples: int) -> None:
    from transcode.format.manifest import MANIFEST_KEY

    _, store = tiny_store(work)
    base = (store / MANIFEST_KEY).read_bytes()

    @run(examples)
    @given(st.one_of(mutated_bytes(base), mutated_bytes(base, -64)))
    def check(data):
        with Restore(store / MANIFEST_KEY)(data):
            no_internal_findings(typed(lambda: transcode.validate(str(store), level="content", sample=2),
                                       MANIFEST_KEY))

    check()


@target
def journal_entries(work: Path, examples: int) -> None:
    from transcode.engine.journal import iter_records, list_entries
    from transcode.storage.local import LocalStorage

    _, store = tiny_store(work)
    storage = LocalStorage(store)
    keys = sorted(k for entries in list_entries(storage).values() for k in entries)
    originals = {k: json.loads((store / k).read_text()) for k in keys}

    @run(examples)
    @given(st.sampled_from(keys).flatmap(lambda k: st.tuples(st.just(k), mutated_json_bytes(originals[k]))))
    def check(case):
        key, data = case
        with Restore(store / key)(data):
            typed(lambda: list(iter_records(storage, [key])), key)

    check()


# ---------------------------------------------------------------- mirrors: mirrors files, checkpoints, manifests

MIRRORS_TOML = b"""[mirrors.primary]
url = "s3://tessera/stores/v1"
endpoint_url = "https://rgw.example.org"
region = "us-east-1"
path_style = true
part_size = 8

[mirrors.backup]
url = "mirror/copy"
"""


@target
def mirrors_files(work: Path, examples: int) -> None:
    import tomllib

    from transcode.mirrors.spec import load_mirrors_file

    toml_doc = tomllib.loads(MIRRORS_TOML.decode())
    cases = st.one_of(st.tuples(st.just("mirrors.toml"), mutated_bytes(MIRRORS_TOML)),
                      st.tuples(st.just("mirrors.json"), mutated_json_bytes(toml_doc)))

    @run(examples)
    @given(cases)
    def check(case):
        name, data = case
        (work / name).write_bytes(data)
        typed(lambda: load_mirrors_file(str(work / name)), name)

    check()


@target
def mirror_checkpoints(work: Path, examples: int) -> None:
    _, store = tiny_store(work)
    copy = work / "copy"
    if not copy.exists():
        shutil.copytree(store, copy)
        (copy / _zone(store) / "x/c/0").write_bytes(b"changed")  # one difference, so there is a record to stop on
    state = work / "state.json"

    def stop(record):
        raise KeyboardInterrupt

    def verify():
        return transcode.verify_mirrors([f"a={store}", f"b={copy}"], level="manifest", state=str(state),
                                        concurrency=2, on_record=stop if not state.exists() else None)

    state.unlink(missing_ok=True)
    try:
        verify()
    except KeyboardInterrupt:
        pass
    assert state.exists(), "an interrupted verification left no state file to fuzz"
    base = json.loads(state.read_text())
    diffs = state.with_name(state.name + ".diffs.jsonl")
    base_diffs = diffs.read_bytes()

    @run(examples)
    @given(st.one_of(mutated_json_bytes(base, keep=frozenset({"fingerprint", "version"})),
                     mutated_bytes(json.dumps(base).encode())),
           st.one_of(st.just(base_diffs), mutated_bytes(base_diffs)))
    def check(data, diff_data):
        diffs.write_bytes(diff_data)
        with Restore(state)(data):
            typed(verify, state.name)

    check()


@target
def mirror_manifest_files(work: Path, examples: int) -> None:
    from transcode.format.manifest import MANIFEST_KEY

    _, store = tiny_store(work)
    copy = work / "copy-m"
    if not copy.exists():
        shutil.copytree(store, copy)
    given_manifest = work / "given.parquet"
    base = (store / MANIFEST_KEY).read_bytes()

    @run(examples)
    @given(st.one_of(mutated_bytes(base), mutated_bytes(base, -64)))
    def check(data):
        given_manifest.write_bytes(data)
        typed(lambda: transcode.verify_mirrors([f"a={store}", f"b={copy}"], level="manifest",
                                               manifest=str(given_manifest), restart=True, concurrency=2,
                                               state=str(work / "m-state.json")), given_manifest.name)

    check()


# ---------------------------------------------------------------- registries and the inventory Parquet

REGISTRY_FILES = ["registry/embeddings_2024.txt", "registry/landmasks.txt", "registry.parquet", "manifest.parquet",
                  "landmasks.parquet"]


@target
def registries(work: Path, examples: int) -> None:
    from transcode.testing.synthetic import make_legacy_archive

    archive, _ = tiny_store(work)
    # the incumbent's other forms: registries naming files by s3:// URL, the keyless local landmask registry
    other = work / "archive-s3-paths"
    if not other.exists():
        make_legacy_archive(other, years=(2024,), tiles=["grid_0.05_83.95"], seed=5, registry_paths="s3",
                            landmask_registry="keyless")
    forms = []
    for root in (archive, other):
        found = [k for k in REGISTRY_FILES if (root / k).exists()]
        found += sorted(p.relative_to(root).as_posix() for p in root.rglob("SHA256*"))
        assert len(found) >= 6, found
        forms += [(root, k) for k in found]
    bases = {form: (form[0] / form[1]).read_bytes() for form in forms}

    @run(examples)
    @given(st.sampled_from(forms).flatmap(lambda f: st.tuples(st.just(f), mutated_bytes(bases[f]), st.booleans())))
    def check(case):
        (root, key), data, verify = case
        with Restore(root / key)(data):  # hashes are parsed with verify_hashes only
            report = typed(lambda: transcode.inventory(str(root), concurrency=2, verify_hashes=verify), key)
            if not isinstance(report, TranscodeError):
                json.dumps(report.to_json())

    check()


@target
def inventory_parquet(work: Path, examples: int) -> None:
    import dataclasses

    import pyarrow as pa
    import pyarrow.parquet as pq

    from transcode.legacy.inventory import read_inventory, write_inventory
    from transcode.legacy.problems import INFO, WARNING, Problem

    archive, _ = tiny_store(work)
    path = work / "inventory.parquet"
    transcode.inventory(str(archive), out=str(path), verify_hashes=True)  # tile, landmask and hash columns
    inv = read_inventory(path)
    problems = [Problem("registry.parquet", "example", "a warning row", WARNING),
                Problem(inv.key(2024, "grid_0.05_83.95"), "example", "an info row", INFO, 2024, "grid_0.05_83.95")]
    write_inventory(dataclasses.replace(inv, problems=inv.problems + problems), path)  # and problem rows
    base = path.read_bytes()
    source = pq.ParquetFile(io.BytesIO(base))
    groups = [source.metadata.row_group(g).num_rows for g in range(source.num_row_groups)]
    assert len(groups) == 3, groups  # tiles, landmasks, problems: one kind of record per row group
    table = source.read()
    numbers = [-(2**31), -1, 0, 1, 9, 10, 60, 61, 4096, 4097, 9999, 2**31 - 1]
    interesting = st.one_of(st.none(), st.sampled_from(numbers), st.text(max_size=70),
                            st.sampled_from(["grid_0.15_83.95", "grid_0.05_-83.95", "f" * 64, "tile", "landmask",
                                             "problem", "info"]))

    def parquet_bytes(t: pa.Table) -> bytes:
        """The table as Parquet in the inventory's row groups."""
        buf = io.BytesIO()
        with pq.ParquetWriter(buf, t.schema) as w:
            start = 0
            for n in groups:
                w.write_table(t.slice(start, n))
                start += n
        return buf.getvalue()

    @st.composite
    def edited_table(draw) -> bytes:
        """The inventory with a column dropped, nulled, retyped or given other values, or one value changed
        (metadata and row groups kept, so the edit reaches the row checks)."""
        t = table
        name = draw(st.sampled_from(t.column_names))
        i = t.column_names.index(name)
        field = t.schema.field(i)
        op = draw(st.sampled_from(["drop", "null", "string", "values", "one", "one", "one"]))
        if op == "drop":
            t = t.remove_column(i)
        elif op == "null":
            t = t.set_column(i, name, pa.nulls(len(t), field.type))
        elif op == "string":
            t = t.set_column(i, name, pa.array([draw(st.text(max_size=8)) for _ in range(len(t))]))
        elif op == "values":
            values = draw(st.lists(st.integers(-(2**31), 2**31 - 1), min_size=len(t), max_size=len(t)))
            t = t.set_column(i, name, pa.array(values, pa.int64()))
        else:
            values = t.column(i).to_pylist()
            row = draw(st.integers(0, len(t) - 1))
            values[row] = draw(interesting)
            try:
                column = pa.array(values, field.type)
            except (pa.ArrowException, TypeError, ValueError, OverflowError):  # the value is not of the column's type
                return draw(edited_table())
            t = t.set_column(i, field, column)
        return parquet_bytes(t)

    meta = json.loads(table.schema.metadata[b"tessera-inventory"])

    @st.composite
    def edited_metadata(draw) -> bytes:
        return parquet_bytes(table.replace_schema_metadata({b"tessera-inventory": draw(mutated_json_bytes(meta))}))

    @run(examples)
    @given(st.one_of(mutated_bytes(base), mutated_bytes(base, -600), edited_table(), edited_metadata()))
    def check(data):
        path.write_bytes(data)
        typed(lambda: transcode.plan(str(archive), inventory=str(path), shard_size=256, chunk_size=32), path.name)

    check()


def main(argv: list[str]) -> int:
    global SEED
    name, examples, work = argv[0], int(argv[1]), Path(argv[2])
    SEED = Path(argv[3]) if len(argv) > 3 else None
    work.mkdir(parents=True, exist_ok=True)
    TARGETS[name](work, examples)
    print(f"{name}: {examples} examples passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
