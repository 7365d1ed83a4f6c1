"""The .npy header parser against numpy's own writer, and its refusals."""

import io
import struct

import numpy as np
import pytest

from transcode.legacy.npyheader import (
    NpyHeaderError,
    check_embeddings_header,
    check_scales_header,
    header_span,
    parse_npy_header,
)


def npy_bytes(arr, version=None):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, version=version, allow_pickle=False)
    return buf.getvalue()


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
def test_parses_every_format_version_like_numpy(version):
    arr = np.arange(5 * 7 * 128, dtype=np.int8).reshape(5, 7, 128)
    data = npy_bytes(arr, version)
    h = parse_npy_header(data[:4096])
    assert h.version == version
    assert h.shape == (5, 7, 128)
    assert h.dtype == np.int8 and not h.fortran_order
    assert h.expected_size == len(data)
    assert np.array_equal(np.frombuffer(data[h.data_offset:], np.int8).reshape(h.shape), arr)
    assert check_embeddings_header(h) == []


def test_real_tile_headers_are_128_bytes():
    h = parse_npy_header(npy_bytes(np.zeros((1111, 1111), np.float32)))
    assert h.data_offset == 128 and check_scales_header(h) == []


def test_version_3_utf8_header():
    arr = np.zeros(3, dtype=[("é", "<f4")])
    h = parse_npy_header(npy_bytes(arr, (3, 0)))
    assert h.dtype.names == ("é",)


def test_refuses_fortran_order_wrong_dtypes_and_impossible_shapes():
    f = parse_npy_header(npy_bytes(np.asfortranarray(np.zeros((4, 5, 128), np.int8))))
    assert [k for k, _ in check_embeddings_header(f)] == ["fortran-order"]
    assert [k for k, _ in check_embeddings_header(parse_npy_header(npy_bytes(np.zeros((4, 5, 128), np.int16))))] == ["wrong-dtype"]
    assert [k for k, _ in check_scales_header(parse_npy_header(npy_bytes(np.zeros((4, 5), np.float64))))] == ["wrong-dtype"]
    assert [k for k, _ in check_scales_header(parse_npy_header(npy_bytes(np.zeros((4, 5), ">f4"))))] == ["wrong-dtype"]
    msgs = check_embeddings_header(parse_npy_header(npy_bytes(np.zeros((4, 5, 64), np.int8))))
    assert msgs and "64 bands" in msgs[0][1]
    assert check_embeddings_header(parse_npy_header(npy_bytes(np.zeros((0, 5, 128), np.int8))))[0][0] == "bad-shape"
    assert check_scales_header(parse_npy_header(npy_bytes(np.zeros((4, 5, 2), np.float32))))[0][0] == "bad-shape"


def test_bad_magic_and_truncated_header_are_clear_errors():
    with pytest.raises(NpyHeaderError, match="magic"):
        parse_npy_header(b"GIF89a" + b"\0" * 200)
    data = npy_bytes(np.zeros((2, 2), np.float32))
    with pytest.raises(NpyHeaderError, match="ends inside the header"):
        parse_npy_header(data[:60])
    with pytest.raises(NpyHeaderError, match="version"):
        parse_npy_header(data[:6] + b"\x09\x00" + data[8:])


def test_garbage_dict_and_wrong_keys_are_refused():
    text = b"{'descr': '|i1', 'fortran_order': False, 'shape': (2, 2), 'extra': 1}"
    text += b" " * (118 - len(text)) + b"\n"
    data = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text
    with pytest.raises(NpyHeaderError, match="exactly the keys"):
        parse_npy_header(data)
    bad = b"\x93NUMPY\x01\x00" + struct.pack("<H", 10) + b"__import__"
    with pytest.raises(NpyHeaderError, match="dict literal"):
        parse_npy_header(bad)
    neg = b"{'descr': '|i1', 'fortran_order': False, 'shape': (-2, 2), }"
    with pytest.raises(NpyHeaderError, match="non-negative"):
        parse_npy_header(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(neg)) + neg)
    assert header_span(npy_bytes(np.zeros(1, np.int8), (2, 0))[:12]) == 128
