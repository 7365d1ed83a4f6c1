/* Compress a run of equal-sized inner chunks with Blosc into one output buffer, in a single call.
 *
 * Going through numcodecs costs a Python call, a fresh bytes object and a copy into the writer for every
 * 128 KiB chunk; here the loop runs in C without the GIL and each chunk lands directly after the previous one.
 * The compressor is numcodecs' own bundled c-blosc (`blosc_compress_ctx`, found by the caller with ctypes), so
 * the bytes are exactly those of `numcodecs.Blosc.encode` with the same settings. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#define BLOSC_MAX_OVERHEAD 16

typedef int (*blosc_compress_ctx_fn)(int clevel, int doshuffle, size_t typesize, size_t nbytes, const void *src,
                                      void *dest, size_t destsize, const char *compressor, size_t blocksize,
                                      int numinternalthreads);

static PyObject *py_encode(PyObject *self, PyObject *args)
{
    unsigned long long fn_addr;
    const char *cname;
    int clevel, shuffle;
    Py_ssize_t typesize, chunk_nbytes, start;
    Py_buffer src, pos, out, sizes;
    if (!PyArg_ParseTuple(args, "Ksiiny*ny*nw*w*", &fn_addr, &cname, &clevel, &shuffle, &typesize, &src,
                          &chunk_nbytes, &pos, &start, &out, &sizes))
        return NULL;
    PyObject *result = NULL;
    const Py_ssize_t n = pos.len / (Py_ssize_t)sizeof(int64_t);
    const Py_ssize_t n_src = chunk_nbytes > 0 ? src.len / chunk_nbytes : 0;
    const Py_ssize_t need = chunk_nbytes + BLOSC_MAX_OVERHEAD;
    const int64_t *p = (const int64_t *)pos.buf;
    int64_t *sz = (int64_t *)sizes.buf;
    if (fn_addr == 0 || chunk_nbytes <= 0 || typesize <= 0 || start < 0 || start > n
        || sizes.len < pos.len || pos.len % (Py_ssize_t)sizeof(int64_t)) {
        PyErr_SetString(PyExc_ValueError, "bad arguments to the blosc batch encoder");
        goto done;
    }
    for (Py_ssize_t t = start; t < n; t++) {
        if (p[t] < 0 || p[t] >= n_src) {
            PyErr_Format(PyExc_IndexError, "chunk position %lld outside the %zd chunks given", (long long)p[t], n_src);
            goto done;
        }
    }
    blosc_compress_ctx_fn compress = (blosc_compress_ctx_fn)(uintptr_t)fn_addr;
    Py_ssize_t fill = 0, t = start;
    int err = 0, failed = 0;
    Py_BEGIN_ALLOW_THREADS
    for (; t < n && out.len - fill >= need; t++) {
        int c = compress(clevel, shuffle, (size_t)typesize, (size_t)chunk_nbytes,
                         (const char *)src.buf + p[t] * chunk_nbytes, (char *)out.buf + fill, (size_t)need, cname, 0, 1);
        if (c <= 0) {
            err = c;
            failed = 1;
            break;
        }
        sz[t] = c;
        fill += c;
    }
    Py_END_ALLOW_THREADS
    if (failed) {
        PyErr_Format(PyExc_RuntimeError, "blosc_compress_ctx failed (%d) on chunk position %lld", err, (long long)p[t]);
        goto done;
    }
    result = Py_BuildValue("nn", t, fill);
done:
    PyBuffer_Release(&src);
    PyBuffer_Release(&pos);
    PyBuffer_Release(&out);
    PyBuffer_Release(&sizes);
    return result;
}

static PyMethodDef methods[] = {
    {"encode", py_encode, METH_VARARGS,
     "encode(fn, cname, clevel, shuffle, typesize, src, chunk_nbytes, pos, start, out, sizes) -> (next, fill): "
     "compress chunks src[pos[start]], src[pos[start+1]], ... one after another into out while a whole chunk's "
     "worst case still fits; sizes[t] receives each compressed size."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_bloscbatch", "Batch Blosc compression of inner chunks.",
                                    -1, methods};

PyMODINIT_FUNC PyInit__bloscbatch(void) { return PyModule_Create(&module); }
