/* Optional compiled kernels for rnnlab (built by setup.py when a C compiler is available).
 *
 * Only what NumPy cannot do without per-element overhead: scatter-adding many rows into a table with
 * repeated row indices (word2vec's updates; np.add.at walks the flat indices one element at a time).
 * Every kernel processes rows in index order and rounds exactly as the NumPy fallback in
 * rnnlab/_native/__init__.py does (products rounded to the array's precision before the add; built with
 * -ffp-contract=off so no fused multiply-add changes a bit), so both paths give identical arrays.
 *
 * The functions are plain C, called through ctypes; the Python module part exists only so that
 * setuptools builds and installs the shared library next to the package.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#define SCATTER_ADD(NAME, T)                                                                   \
    /* W[idx[i], :] += rows[i, :] for i = 0 .. n-1 (W is (V, D), rows (n, D), C order) */       \
    void NAME(T *W, const int64_t *idx, const T *rows, int64_t n, int64_t D) {                 \
        for (int64_t i = 0; i < n; i++) {                                                      \
            T *w = W + idx[i] * D;                                                             \
            const T *r = rows + i * D;                                                         \
            for (int64_t j = 0; j < D; j++) w[j] += r[j];                                      \
        }                                                                                      \
    }

#define SCATTER_ADD_OUTER(NAME, T)                                                             \
    /* W[idx[n, k], :] += coef[n, k] * H[n, :] for n = 0 .. N-1, k = 0 .. K-1 (row-major order) */ \
    void NAME(T *W, const int64_t *idx, const T *coef, const T *H, int64_t N, int64_t K,       \
              int64_t D) {                                                                     \
        for (int64_t n = 0; n < N; n++) {                                                      \
            const T *h = H + n * D;                                                            \
            for (int64_t k = 0; k < K; k++) {                                                  \
                T c = coef[n * K + k];                                                         \
                T *w = W + idx[n * K + k] * D;                                                 \
                for (int64_t j = 0; j < D; j++) {                                              \
                    T p = c * h[j];                                                            \
                    w[j] += p;                                                                 \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
    }

SCATTER_ADD(rnnlab_scatter_add_f32, float)
SCATTER_ADD(rnnlab_scatter_add_f64, double)
SCATTER_ADD_OUTER(rnnlab_scatter_add_outer_f32, float)
SCATTER_ADD_OUTER(rnnlab_scatter_add_outer_f64, double)

static struct PyModuleDef kernels_module = {
    PyModuleDef_HEAD_INIT, "_kernels",
    "rnnlab's optional C kernels (plain C functions, loaded with ctypes by rnnlab._native).", -1, NULL,
};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&kernels_module); }
