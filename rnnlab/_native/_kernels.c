/* Optional compiled kernels for rnnlab (built by setup.py when a C compiler is available).
 *
 * Only what NumPy cannot do without per-element overhead: scatter-adding many rows into a table with
 * repeated row indices (word2vec's updates; np.add.at walks the flat indices one element at a time),
 * and the Adam step fused into one pass over its arrays (the NumPy fallback needs 7-12).
 * Every kernel processes rows in index order and rounds exactly as the NumPy fallback in
 * rnnlab/_native/__init__.py does (products rounded to the array's precision before the add; built with
 * -ffp-contract=off so no fused multiply-add changes a bit), so both paths give identical arrays.
 *
 * The functions are plain C, called through ctypes; the Python module part exists only so that
 * setuptools builds and installs the shared library next to the package.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

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

/* Fused Adam step (Keras rule, as rnnlab.optimizers.Adam._update): one pass over w, m, v (and vh)
 * instead of NumPy's 7-12. Each line rounds exactly as one NumPy operation of the fallback does, in the
 * array's precision (the scalars arrive as doubles and are rounded to T once, as NumPy 2 does with a
 * Python float and a float32 array):
 *     m = m*b1 (+ g*c1);  v = v*b2 (+ (g*g)*c2);  [vh = max(vh, v); v = vh];
 *     s = sqrt(v); s = s + eps; s = m / s; s = s*alpha;  w = w - s
 * (c1 = (1-b1) scale, c2 = (1-b2) scale^2). GCC does not vectorise sqrt under the default -fmath-errno
 * (and setup.py's flags are shared), so on x86-64 the bulk runs in SSE2 intrinsics: the same IEEE
 * operations, each correctly rounded, lane by lane; a scalar loop does the rest (and everything
 * elsewhere). sqrt is correctly rounded on both. */
#if defined(__SSE2__)
#include <emmintrin.h>
/* one SIMD block of ADAM_SPAN for lanes of type T: VT the vector type, W the lane count, X the intrinsic
 * suffix (ps/pd) */
#define ADAM_SIMD(T, VT, W, X, HAS_G, HAS_VH)                                                  \
    {                                                                                          \
        const VT B1 = _mm_set1_##X(b1), B2 = _mm_set1_##X(b2), C1 = _mm_set1_##X(c1);          \
        const VT C2 = _mm_set1_##X(c2), EPS = _mm_set1_##X(eps), ALPHA = _mm_set1_##X(alpha);  \
        for (; j + W <= N; j += W) {                                                           \
            VT mm = _mm_mul_##X(_mm_loadu_##X(m + j), B1);                                     \
            VT vv = _mm_mul_##X(_mm_loadu_##X(v + j), B2);                                     \
            if (HAS_G) {                                                                       \
                VT gj = _mm_loadu_##X(g + j);                                                  \
                mm = _mm_add_##X(mm, _mm_mul_##X(gj, C1));                                     \
                vv = _mm_add_##X(vv, _mm_mul_##X(_mm_mul_##X(gj, gj), C2));                    \
            }                                                                                  \
            _mm_storeu_##X(m + j, mm);                                                         \
            _mm_storeu_##X(v + j, vv);                                                         \
            if (HAS_VH) {                                                                      \
                VT h = _mm_loadu_##X(vh + j);                                                  \
                VT keep = _mm_or_##X(_mm_cmpge_##X(h, vv), _mm_cmpunord_##X(h, h));            \
                h = _mm_or_##X(_mm_and_##X(keep, h), _mm_andnot_##X(keep, vv));                \
                _mm_storeu_##X(vh + j, h);                                                     \
                vv = h;                                                                        \
            }                                                                                  \
            VT st = _mm_sqrt_##X(vv);                                                          \
            st = _mm_add_##X(st, EPS);                                                         \
            st = _mm_div_##X(mm, st);                                                          \
            st = _mm_mul_##X(st, ALPHA);                                                       \
            _mm_storeu_##X(w + j, _mm_sub_##X(_mm_loadu_##X(w + j), st));                      \
        }                                                                                      \
    }
#define ADAM_SIMD_float(HAS_G, HAS_VH) ADAM_SIMD(float, __m128, 4, ps, HAS_G, HAS_VH)
#define ADAM_SIMD_double(HAS_G, HAS_VH) ADAM_SIMD(double, __m128d, 2, pd, HAS_G, HAS_VH)
#else
#define ADAM_SIMD_float(HAS_G, HAS_VH)
#define ADAM_SIMD_double(HAS_G, HAS_VH)
#endif

#define ADAM_SPAN(NAME, T, SQRT, HAS_G, HAS_VH)                                                \
    static void NAME(T *restrict w, T *restrict m, T *restrict v, T *restrict vh,              \
                     const T *restrict g, int64_t N, T b1, T b2, T c1, T c2, T eps, T alpha) { \
        int64_t j = 0;                                                                         \
        ADAM_SIMD_##T(HAS_G, HAS_VH)                                                           \
        for (; j < N; j++) {                                                                   \
            T mm = m[j] * b1;                                                                  \
            T vv = v[j] * b2;                                                                  \
            if (HAS_G) {                                                                       \
                T gj = g[j];                                                                   \
                T t = gj * c1;                                                                 \
                mm = mm + t;                                                                   \
                t = gj * gj;                                                                   \
                t = t * c2;                                                                    \
                vv = vv + t;                                                                   \
            }                                                                                  \
            m[j] = mm;                                                                         \
            v[j] = vv;                                                                         \
            if (HAS_VH) { /* np.maximum(vh, v): NaN from either side propagates */             \
                T h = vh[j];                                                                   \
                h = (h >= vv || h != h) ? h : vv;                                              \
                vh[j] = h;                                                                     \
                vv = h;                                                                        \
            }                                                                                  \
            T s = SQRT(vv);                                                                    \
            s = s + eps;                                                                       \
            s = mm / s;                                                                        \
            s = s * alpha;                                                                     \
            w[j] = w[j] - s;                                                                   \
        }                                                                                      \
    }

#define ADAM(NAME, T, SQRT)                                                                    \
    ADAM_SPAN(NAME##_g, T, SQRT, 1, 0)                                                         \
    ADAM_SPAN(NAME##_g_vh, T, SQRT, 1, 1)                                                      \
    ADAM_SPAN(NAME##_0, T, SQRT, 0, 0)                                                         \
    ADAM_SPAN(NAME##_0_vh, T, SQRT, 0, 1)                                                      \
    /* w, m, v, vh (vh NULL without amsgrad): (R, D), C order. idx NULL: g is the dense (R, D)   \
     * gradient. Else g holds n rows (n, D) for rows idx[0..n-1] (in [0, R)) and every other row   \
     * only decays (the dense rule); a repeated index takes its last row, as NumPy's m[idx] = r   \
     * does. Returns 0, or -1 when the row map cannot be allocated (nothing written). */        \
    int NAME(T *w, T *m, T *v, T *vh, const T *g, const int64_t *idx, int64_t n, int64_t R,   \
             int64_t D, double b1d, double b2d, double c1d, double c2d, double epsd,           \
             double alphad) {                                                                  \
        T b1 = (T)b1d, b2 = (T)b2d, c1 = (T)c1d, c2 = (T)c2d, eps = (T)epsd, alpha = (T)alphad; \
        if (idx == NULL) {                                                                     \
            (vh ? NAME##_g_vh : NAME##_g)(w, m, v, vh, g, R * D, b1, b2, c1, c2, eps, alpha);  \
            return 0;                                                                          \
        }                                                                                      \
        int64_t *pos = (int64_t *)malloc((size_t)(R > 0 ? R : 1) * sizeof(int64_t));          \
        if (pos == NULL) return -1;                                                            \
        for (int64_t r = 0; r < R; r++) pos[r] = -1;                                           \
        for (int64_t k = 0; k < n; k++) pos[idx[k]] = k;                                       \
        int64_t r = 0;                                                                         \
        while (r < R) {                                                                        \
            int64_t k = pos[r];                                                                \
            if (k >= 0) {                                                                      \
                int64_t o = r * D;                                                             \
                (vh ? NAME##_g_vh : NAME##_g)(w + o, m + o, v + o, vh ? vh + o : NULL, g + k * D, \
                                              D, b1, b2, c1, c2, eps, alpha);                  \
                r++;                                                                           \
            } else { /* a run of rows without gradient: decay only, in one call */             \
                int64_t e = r + 1;                                                             \
                while (e < R && pos[e] < 0) e++;                                               \
                int64_t o = r * D;                                                             \
                (vh ? NAME##_0_vh : NAME##_0)(w + o, m + o, v + o, vh ? vh + o : NULL, NULL,  \
                                              (e - r) * D, b1, b2, c1, c2, eps, alpha);        \
                r = e;                                                                         \
            }                                                                                  \
        }                                                                                      \
        free(pos);                                                                             \
        return 0;                                                                              \
    }

/* Adam(lazy=True) on a row-sparse gradient (torch.optim.SparseAdam's rule): only the rows idx[0..n-1] of w, m, v
 * (and vh) change; each row in the operation order of optimizers.Adam._update's lazy NumPy branch, so the same
 * bits: m_i = m_i b1 + g c1; v_i = v_i b2 + (g g) c2; [vh_i = max(vh_i, v_i), NaN propagating, used below];
 * w_i -= (m_i alpha) / (sqrt(v_i) + eps). A repeated index takes its last gradient row, computed from the old
 * row, as NumPy's gather-then-assign does. Returns 0, or -1 when the row map cannot be allocated. */
#define ADAM_LAZY_ROW(NAME, T, SQRT, HAS_VH)                                                   \
    static void NAME(T *restrict w, T *restrict m, T *restrict v, T *restrict vh,              \
                     const T *restrict g, int64_t D, T b1, T b2, T c1, T c2, T eps, T alpha) { \
        for (int64_t j = 0; j < D; j++) {                                                      \
            T mm = m[j] * b1;                                                                  \
            T t = g[j] * c1;                                                                   \
            mm = mm + t;                                                                       \
            T vv = v[j] * b2;                                                                  \
            t = g[j] * g[j];                                                                   \
            t = t * c2;                                                                        \
            vv = vv + t;                                                                       \
            m[j] = mm;                                                                         \
            v[j] = vv;                                                                         \
            if (HAS_VH) {                                                                      \
                T h = vh[j];                                                                   \
                h = (h >= vv || h != h) ? h : vv;                                              \
                vh[j] = h;                                                                     \
                vv = h;                                                                        \
            }                                                                                  \
            T num = mm * alpha;                                                                \
            T s = SQRT(vv);                                                                    \
            s = s + eps;                                                                       \
            s = num / s;                                                                       \
            w[j] = w[j] - s;                                                                   \
        }                                                                                      \
    }

#define ADAM_LAZY(NAME, T, SQRT)                                                               \
    ADAM_LAZY_ROW(NAME##_row, T, SQRT, 0)                                                      \
    ADAM_LAZY_ROW(NAME##_row_vh, T, SQRT, 1)                                                   \
    int NAME(T *w, T *m, T *v, T *vh, const T *g, const int64_t *idx, int64_t n, int64_t R,   \
             int64_t D, double b1d, double b2d, double c1d, double c2d, double epsd,           \
             double alphad) {                                                                  \
        T b1 = (T)b1d, b2 = (T)b2d, c1 = (T)c1d, c2 = (T)c2d, eps = (T)epsd, alpha = (T)alphad; \
        int64_t *last = (int64_t *)malloc((size_t)(R > 0 ? R : 1) * sizeof(int64_t));         \
        if (last == NULL) return -1;                                                           \
        for (int64_t k = 0; k < n; k++) last[idx[k]] = k;                                      \
        for (int64_t k = 0; k < n; k++) {                                                      \
            int64_t r = idx[k];                                                                \
            if (last[r] != k) continue;                                                        \
            int64_t o = r * D;                                                                 \
            (vh ? NAME##_row_vh : NAME##_row)(w + o, m + o, v + o, vh ? vh + o : NULL, g + k * D, \
                                              D, b1, b2, c1, c2, eps, alpha);                  \
        }                                                                                      \
        free(last);                                                                            \
        return 0;                                                                              \
    }

/* The Embedding's row-sparse weight gradient (rnnlab/layers/embedding.py, backward): ids (n) in [0, V), g (n, D).
 * Writes the distinct ids in ascending order to uid (at most n) and, to rows (at most n x D), for each of them the
 * sum of its rows of g in their original order, ((g_a + g_b) + g_c) ..., as the NumPy code computes it (a stable
 * argsort, the first row of each id then the repeats added one by one, or np.add.reduceat over the sorted rows;
 * both sum sequentially in that order): the same bits. head, nxt: int64 scratch of V and n elements. Returns the
 * number of distinct ids. */
#define EMBEDDING_GRAD(NAME, T)                                                                \
    int64_t NAME(const int64_t *ids, const T *g, int64_t n, int64_t D, int64_t V, int64_t *uid, T *rows, \
                 int64_t *head, int64_t *nxt) {                                                \
        for (int64_t v = 0; v < V; v++) head[v] = -1;                                          \
        /* per id, its rows as a list in original order: built backwards, so head is the first */ \
        for (int64_t i = n - 1; i >= 0; i--) {                                                 \
            nxt[i] = head[ids[i]];                                                             \
            head[ids[i]] = i;                                                                  \
        }                                                                                      \
        int64_t u = 0;                                                                         \
        if (2 * n < V) { /* few ids: sort the distinct ones instead of scanning all V */        \
            for (int64_t i = 0; i < n; i++)                                                    \
                if (head[ids[i]] == i) uid[u++] = ids[i];                                      \
            int64_t gap = 1;                                                                   \
            while (gap < u / 3) gap = 3 * gap + 1;                                             \
            for (; gap > 0; gap /= 3)                                                          \
                for (int64_t a = gap; a < u; a++) {                                            \
                    int64_t x = uid[a], b = a;                                                 \
                    while (b >= gap && uid[b - gap] > x) { uid[b] = uid[b - gap]; b -= gap; }  \
                    uid[b] = x;                                                                \
                }                                                                              \
        } else {                                                                               \
            for (int64_t v = 0; v < V; v++)                                                    \
                if (head[v] >= 0) uid[u++] = v;                                                \
        }                                                                                      \
        for (int64_t k = 0; k < u; k++) {                                                      \
            int64_t i = head[uid[k]];                                                          \
            T *r = rows + k * D;                                                               \
            const T *src = g + i * D;                                                          \
            for (int64_t j = 0; j < D; j++) r[j] = src[j];                                     \
            for (i = nxt[i]; i >= 0; i = nxt[i]) {                                             \
                src = g + i * D;                                                               \
                for (int64_t j = 0; j < D; j++) r[j] += src[j];                                \
            }                                                                                  \
        }                                                                                      \
        return u;                                                                              \
    }

EMBEDDING_GRAD(rnnlab_embedding_grad_f32, float)
EMBEDDING_GRAD(rnnlab_embedding_grad_f64, double)
/* 1 when every one of the n rows of X (D elements each, row stride rs elements, unit column stride) is one-hot:
 * one element equal to 1 and all others 0 (either sign), its column then in ids[i]; else 0 (ids partly written).
 * A NaN is neither 0 nor 1, so it fails the test. (rnnlab.layers.fused_loop: one-hot inputs as a row lookup.) */
#define ONEHOT_ROWS(NAME, T)                                                                   \
    int64_t NAME(const T *X, int64_t rs, int64_t n, int64_t D, int64_t *ids) {                 \
        for (int64_t i = 0; i < n; i++) {                                                      \
            const T *x = X + i * rs;                                                           \
            int64_t at = -1;                                                                   \
            for (int64_t j = 0; j < D; j++) {                                                  \
                T v = x[j];                                                                    \
                if (v == (T)0) continue;                                                       \
                if (v != (T)1 || at >= 0) return 0;                                            \
                at = j;                                                                        \
            }                                                                                  \
            if (at < 0) return 0;                                                              \
            ids[i] = at;                                                                       \
        }                                                                                      \
        return 1;                                                                              \
    }
ONEHOT_ROWS(rnnlab_onehot_rows_f32, float)
ONEHOT_ROWS(rnnlab_onehot_rows_f64, double)

SCATTER_ADD(rnnlab_scatter_add_f32, float)
SCATTER_ADD(rnnlab_scatter_add_f64, double)
SCATTER_ADD_OUTER(rnnlab_scatter_add_outer_f32, float)
SCATTER_ADD_OUTER(rnnlab_scatter_add_outer_f64, double)
ADAM(rnnlab_adam_f32, float, sqrtf)
ADAM(rnnlab_adam_f64, double, sqrt)
ADAM_LAZY(rnnlab_adam_lazy_f32, float, sqrtf)
ADAM_LAZY(rnnlab_adam_lazy_f64, double, sqrt)

static struct PyModuleDef kernels_module = {
    PyModuleDef_HEAD_INIT, "_kernels",
    "rnnlab's optional C kernels (plain C functions, loaded with ctypes by rnnlab._native).", -1, NULL,
};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&kernels_module); }
