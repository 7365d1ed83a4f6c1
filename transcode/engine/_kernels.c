/* Pixel-interleaved band of embeddings (rows, cols, bands) -> inner chunks (rows/ch, cols/cw, bands, ch, cw).
 *
 * The legacy tiles store 128 int8 bands per pixel; a Zarr inner chunk stores each band as a plane. numpy's
 * strided copy moves one byte per step (about 1.4 GB/s here); this kernel moves 16x16 byte tiles through
 * SSE2 registers, and falls back to a plain loop where the shape or the CPU does not allow that. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>

/* Transpose a 16x16 byte tile: src rows are `sstride` apart, dst rows `dstride` apart. */
static inline void tile16(const unsigned char *src, Py_ssize_t sstride, unsigned char *dst, Py_ssize_t dstride)
{
    __m128i r[16], t[16];
    for (int k = 0; k < 16; k++)
        r[k] = _mm_loadu_si128((const __m128i *)(src + k * sstride));
    for (int k = 0; k < 8; k++) {
        t[2 * k] = _mm_unpacklo_epi8(r[2 * k], r[2 * k + 1]);
        t[2 * k + 1] = _mm_unpackhi_epi8(r[2 * k], r[2 * k + 1]);
    }
    for (int k = 0; k < 4; k++) {
        r[4 * k] = _mm_unpacklo_epi16(t[4 * k], t[4 * k + 2]);
        r[4 * k + 1] = _mm_unpackhi_epi16(t[4 * k], t[4 * k + 2]);
        r[4 * k + 2] = _mm_unpacklo_epi16(t[4 * k + 1], t[4 * k + 3]);
        r[4 * k + 3] = _mm_unpackhi_epi16(t[4 * k + 1], t[4 * k + 3]);
    }
    for (int k = 0; k < 2; k++) {
        for (int m = 0; m < 4; m++) {
            t[8 * k + 2 * m] = _mm_unpacklo_epi32(r[8 * k + m], r[8 * k + m + 4]);
            t[8 * k + 2 * m + 1] = _mm_unpackhi_epi32(r[8 * k + m], r[8 * k + m + 4]);
        }
    }
    for (int m = 0; m < 8; m++) {
        r[2 * m] = _mm_unpacklo_epi64(t[m], t[m + 8]);
        r[2 * m + 1] = _mm_unpackhi_epi64(t[m], t[m + 8]);
    }
    for (int k = 0; k < 16; k++)
        _mm_storeu_si128((__m128i *)(dst + k * dstride), r[k]);
}
#endif

static void band_to_chunks(const unsigned char *src, unsigned char *dst, Py_ssize_t rows, Py_ssize_t cols,
                           Py_ssize_t bands, Py_ssize_t ch, Py_ssize_t cw)
{
    const Py_ssize_t plane = ch * cw, chunk = bands * plane, nrows = rows / ch, ncols = cols / cw;
    /* chunk by chunk, so that the 128 KiB being written stays in cache while all its rows arrive */
    for (Py_ssize_t i = 0; i < nrows; i++) {
        for (Py_ssize_t j = 0; j < ncols; j++) {
            unsigned char *out = dst + (i * ncols + j) * chunk;
            for (Py_ssize_t yy = 0; yy < ch; yy++) {
                const unsigned char *s = src + ((i * ch + yy) * cols + j * cw) * bands;
                unsigned char *d = out + yy * cw;
#if defined(__SSE2__)
                if (cw % 16 == 0 && bands % 16 == 0) {
                    for (Py_ssize_t x0 = 0; x0 < cw; x0 += 16)
                        for (Py_ssize_t b0 = 0; b0 < bands; b0 += 16)
                            tile16(s + x0 * bands + b0, bands, d + b0 * plane + x0, plane);
                    continue;
                }
#endif
                for (Py_ssize_t x = 0; x < cw; x++)
                    for (Py_ssize_t b = 0; b < bands; b++)
                        d[b * plane + x] = s[x * bands + b];
            }
        }
    }
}

static PyObject *py_band_to_chunks(PyObject *self, PyObject *args)
{
    Py_buffer src, dst;
    Py_ssize_t rows, cols, bands, ch, cw;
    if (!PyArg_ParseTuple(args, "y*w*nnnnn", &src, &dst, &rows, &cols, &bands, &ch, &cw))
        return NULL;
    PyObject *result = NULL;
    if (rows < 0 || cols < 0 || bands <= 0 || ch <= 0 || cw <= 0 || rows % ch || cols % cw)
        PyErr_SetString(PyExc_ValueError, "rows and cols must be multiples of the chunk shape");
    else if (src.len != rows * cols * bands || dst.len != src.len)
        PyErr_SetString(PyExc_ValueError, "buffer sizes do not match rows * cols * bands");
    else {
        Py_BEGIN_ALLOW_THREADS
        band_to_chunks((const unsigned char *)src.buf, (unsigned char *)dst.buf, rows, cols, bands, ch, cw);
        Py_END_ALLOW_THREADS
        result = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&src);
    PyBuffer_Release(&dst);
    return result;
}

static PyMethodDef methods[] = {
    {"band_to_chunks", py_band_to_chunks, METH_VARARGS,
     "band_to_chunks(src, dst, rows, cols, bands, ch, cw): (rows, cols, bands) bytes -> "
     "(rows/ch, cols/cw, bands, ch, cw) bytes, into dst."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernels", "Byte transposes for the shard builder.",
                                    -1, methods};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&module); }
