"""The interop matrix: every codec option converted and read back by zarr-python, tensorstore, zarrs and
zarrita.js (Node). The README table and transcode/codecs/interop_matrix.py must be exactly what the readers produce
(regenerate with `python3 tools/interop/matrix.py`), and zarr-python reads every option back bit-exactly."""

import warnings

import numpy as np
import pytest
import zarr

from transcode.codecs.interop_matrix import MATRIX
from transcode.testing import interop

# reading numcodecs.lz4 stores: zarr-python says such codecs are not in the v3 spec, which the matrix shows anyway
pytestmark = pytest.mark.filterwarnings("ignore:Numcodecs codecs are not in the Zarr version 3 specification")


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    """All readers on a store per codec option (fails, never skips, when a reader is missing)."""
    try:
        return interop.run_matrix(tmp_path_factory.mktemp("interop"))
    except RuntimeError as e:
        pytest.fail(f"{e}; install the test dependencies with `bash tools/install_test_deps.sh`", pytrace=False)


def test_readme_table_is_what_the_readers_produce(result):
    assert interop.readme_table(interop.README.read_text()) == interop.render_table(result.matrix), \
        "README interop matrix is stale or wrong: run `python3 tools/interop/matrix.py`"


def test_matrix_module_is_what_the_readers_produce(result):
    assert MATRIX == result.matrix, "transcode/codecs/interop_matrix.py is stale: run `python3 tools/interop/matrix.py`"


def test_no_reader_ever_returns_wrong_values(result):
    wrong = [(o, r) for o, row in result.matrix.items() for r, v in row.items() if v == "MISMATCH"]
    assert not wrong, {k: result.messages[k[0]][k[1]] for k in wrong}


def test_core_codecs_are_read_by_every_reader(result):
    for opt in ("none", "blosc:zstd:3", "zstd:3", "gzip:5", "blosc:zstd:3+crc32c"):
        assert set(result.matrix[opt].values()) == {"yes"}, (opt, result.messages[opt])


def test_every_option_round_trips_bit_exactly_through_zarr_python(result):
    """Whole tiles, both arrays, every option (our Brotli/Snappy through the installed entry points)."""
    plan = result.plan
    assert set(result.matrix) == set(interop.MATRIX_OPTIONS)
    expected = {}
    for task in plan.tasks:
        for p in task.placements:
            win = (task.zone, task.t, p.row, p.row + p.height, p.col, p.col + p.width)
            expected[win] = interop.expected_window(result.archive, plan, *win)
    for opt, store in result.stores.items():
        g = zarr.open_group(str(store), mode="r")
        for (zone, t, y0, y1, x0, x1), (emb, sc) in expected.items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                got_e = g[f"utm{zone:02d}/embeddings"][t, :, y0:y1, x0:x1]
                got_s = g[f"utm{zone:02d}/scales"][t, y0:y1, x0:x1]
            assert np.array_equal(got_e, emb), opt
            assert np.array_equal(got_s.view("u4"), sc.view("u4")), opt
