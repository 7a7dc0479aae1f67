/* Batch-size-agnostic LSTM, GRU (reset_after=True) and SimpleRNN (tanh) inference time loops, and the
 * elementwise part of the LSTM and GRU training steps (float32), for the native paths of rnnlab.layers.lstm,
 * rnnlab.layers.gru and rnnlab.layers.simple_rnn. Shared pieces: the tanh approximation below, the recurrent
 * matrix-vector product (packed 64-column panels), the dispatch (rnnlab_cells_isa, rnnlab_step_isa).
 * Each kernel exists as portable C and as vector rows, written once in _cells_vec.h and compiled twice, for
 * AVX2 (8 lanes) and AVX-512 (16 lanes), chosen at run time.
 *
 * Built by setup.py into the same shared library as _kernels.c (same flags). Unlike the other kernels this one is *not*
 * bit-identical to the NumPy path: the recurrent product sums in another order (and with FMA on
 * AVX2) and tanh is the approximation below; the tests allow the float32 fast-path tolerance (2e-6).
 *
 * tanh approximation (Cephes tanhf scheme, branch-free so that it vectorises):
 *   |x| <  0.625: x + x z P(z), z = x^2, P the degree-4 Cephes minimax polynomial;
 *   |x| >= 0.625: 1 - 2 / (exp(2|x|) + 1) with the Cephes expf range reduction and polynomial,
 *                 |x| clamped to 9.5 (tanh rounds to 1 in float32 well before), sign restored.
 * Max relative error vs the correctly rounded tanh: measured < 1e-6 on a dense grid over float32
 * (tests/test_native_cells.py checks it); NaN propagates.
 * sigmoid(x) = 1/2 + 1/2 tanh(x/2): the sums of the sigmoid gates are halved here (exact, a power of two),
 * or already halved by the caller (prescaled: the weights of the NumPy fast paths).
 */
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <math.h>

#define TH_SMALL 0.625f
#define TH_CLAMP 9.5f
#define TH_P0 -5.70498872745e-3f
#define TH_P1 2.06390887954e-2f
#define TH_P2 -5.37397155531e-2f
#define TH_P3 1.33314422036e-1f
#define TH_P4 -3.33332819422e-1f
#define EX_LOG2E 1.44269504088896341f
#define EX_C1 0.693359375f
#define EX_C2 -2.12194440e-4f
#define EX_Q0 1.9875691500e-4f
#define EX_Q1 1.3981999507e-3f
#define EX_Q2 8.3334519073e-3f
#define EX_Q3 4.1665795894e-2f
#define EX_Q4 1.6666665459e-1f
#define EX_Q5 5.0000001201e-1f

/* portable scalar version (the same formulas) */
static inline float rnnlab_tanh_approx(float x) {
    float ax = fabsf(x);
    if (ax < TH_SMALL) {
        float z = x * x;
        float p = (((TH_P0 * z + TH_P1) * z + TH_P2) * z + TH_P3) * z + TH_P4;
        return x + x * z * p;
    }
    if (!(ax < TH_CLAMP)) {
        if (ax != ax) return x;  /* NaN */
        ax = TH_CLAMP;
    }
    float y = ax + ax;
    float n = nearbyintf(y * EX_LOG2E);
    float r = y - n * EX_C1;
    r = r - n * EX_C2;
    float q = ((((EX_Q0 * r + EX_Q1) * r + EX_Q2) * r + EX_Q3) * r + EX_Q4) * r + EX_Q5;
    float e = q * r * r + r + 1.0f;
    union { float f; int32_t i; } s;
    s.i = ((int32_t)n + 127) << 23;
    e *= s.f;
    float t = 1.0f - 2.0f / (e + 1.0f);
    return x < 0 ? -t : t;
}

/* out (W) = init (W, or zeros when NULL; may be out itself) + h (U) Wh (U, W), portable */
static void matvec_generic(float *out, const float *init, const float *Wh, const float *h, int64_t U,
                           int64_t W) {
    if (init != out)
        for (int64_t j = 0; j < W; j++) out[j] = init ? init[j] : 0.0f;
    for (int64_t k = 0; k < U; k++) {
        float hk = h[k];
        const float *w = Wh + k * W;
        for (int64_t j = 0; j < W; j++) out[j] += hk * w[j];
    }
}

/* one LSTM step for one batch row, portable: a (4U) holds x W_x + b (sigmoid gates pre-scaled by 1/2) */
static void lstm_row_generic(float *a, const float *bias, const float *Wh, const float *h_old,
                             const float *c_old, float *c_new, float *tc, float *h_new, int64_t U,
                             int prescaled) {
    int64_t W = 4 * U;
    if (bias)
        for (int64_t j = 0; j < W; j++) a[j] += bias[j];
    matvec_generic(a, a, Wh, h_old, U, W);
    if (!prescaled) {  /* exact: x/2 for sigmoid(x) = 1/2 + tanh(x/2)/2 */
        for (int64_t j = 0; j < 2 * U; j++) a[j] *= 0.5f;
        for (int64_t j = 3 * U; j < W; j++) a[j] *= 0.5f;
    }
    for (int64_t j = 0; j < W; j++) a[j] = rnnlab_tanh_approx(a[j]);
    for (int64_t j = 0; j < 2 * U; j++) a[j] = a[j] * 0.5f + 0.5f;
    for (int64_t j = 3 * U; j < W; j++) a[j] = a[j] * 0.5f + 0.5f;
    const float *i = a, *f = a + U, *g = a + 2 * U, *o = a + 3 * U;
    for (int64_t j = 0; j < U; j++) {
        float p = f[j] * c_old[j];
        float q = i[j] * g[j];
        c_new[j] = p + q;
        tc[j] = rnnlab_tanh_approx(c_new[j]);
        h_new[j] = o[j] * tc[j];
    }
}

/* one GRU (reset_after=True) step for one batch row, portable: a (3U) holds p = x W_x (+ b_x when bx is
 * given, added here), gates z, r, h; q (3U) receives h_old W_h + b_h with its z, r columns halved (as the
 * NumPy fast path stores it); a is overwritten with z, r and the candidate hh */
static void gru_row_generic(float *a, const float *bx, const float *bh, const float *Wh, const float *h_old,
                            float *h_new, float *q, int64_t U, int prescaled) {
    int64_t W = 3 * U;
    if (bx)
        for (int64_t j = 0; j < W; j++) a[j] += bx[j];
    matvec_generic(q, NULL, Wh, h_old, U, W);
    if (bh)
        for (int64_t j = 0; j < W; j++) q[j] += bh[j];
    for (int64_t j = 0; j < 2 * U; j++) {
        if (!prescaled) {  /* exact: x/2 for sigmoid(x) = 1/2 + tanh(x/2)/2 */
            a[j] *= 0.5f;
            q[j] *= 0.5f;
        }
        a[j] = rnnlab_tanh_approx(a[j] + q[j]) * 0.5f + 0.5f;
    }
    const float *z = a, *r = a + U, *qh = q + 2 * U;
    float *hh = a + 2 * U;
    for (int64_t j = 0; j < U; j++) {
        float u = r[j] * qh[j];
        hh[j] = rnnlab_tanh_approx(hh[j] + u);
        float d = h_old[j] - hh[j];
        h_new[j] = d * z[j] + hh[j];
    }
}

/* one SimpleRNN (tanh) step for one batch row, portable: a (U) holds x W_x (+ b when bias is NULL); it is left
 * holding the pre-activation a_t (as the NumPy loop keeps it), h_new = tanh(a_t) */
static void rnn_row_generic(float *a, const float *bias, const float *Wh, const float *h_old, float *h_new,
                            int64_t U) {
    if (bias)
        for (int64_t j = 0; j < U; j++) a[j] += bias[j];
    matvec_generic(a, a, Wh, h_old, U, U);
    for (int64_t j = 0; j < U; j++) h_new[j] = rnnlab_tanh_approx(a[j]);
}

/* ---------------------------------------------------------------- LSTM training steps (elementwise part)
 * The gate math of lstm.py's NumPy fast path (sigmoid/tanh, float32), one call per time step, for B rows
 * of U units; the recurrent GEMMs stay in NumPy/BLAS. Row b of every (B, .) array is contiguous.
 *
 * Forward: a (B, 4U) holds x W_x (+ b) with the sigmoid gates' columns prescaled by 1/2 (the fast path's
 * weights), r (B, 4U) the step's h_{t-1} W_h (prescaled alike), bias (4U, prescaled alike) or NULL: added to
 * a here (a + b first, as NumPy's A += b, so the same sums; it saves a pass over all of A); a <- activations
 * [i, f, g, o] where i, f, o = 1/2 + 1/2 tanh(a + r), g = tanh(a + r); c_new = f c_old + i g;
 * tc = tanh(c_new); h_new = o tc.
 * Only the tanh (the approximation above) differs from the NumPy step; the rest rounds the same way.
 *
 * Backward: from dh, dc (B, U) and the stored a (activations), c_old, tc:
 *   do = dh tc;  dct = (dh o)(1 - tc tc) + dc;  di = dct g;  df = dct c_old;  dg = dct i;  dc_prev = dct f;
 *   da = [di, df, dg, do] * ((1 - y)(y + k)), k = 1 on the g columns, 0 elsewhere;
 * the same operations in the same order as the NumPy fast backward (no FMA): bit-identical to it.
 * da (B, 4U) and dc_prev (B, U) may not alias the inputs, except that da may be a itself.
 * isa: 0 auto, 1 portable, 2 at most AVX2. Return the path taken (1 portable, 2 AVX2, 3 AVX-512; see lstm_step_isa). */
static void lstm_fwd_row_generic(float *a, const float *r, const float *c_old, float *c_new, float *tc,
                                 float *h_new, const float *bias, int64_t U) {
    int64_t W = 4 * U;
    for (int64_t j = 0; j < W; j++) {
        float av = bias ? a[j] + bias[j] : a[j];
        float v = rnnlab_tanh_approx(av + r[j]);
        if (j < 2 * U || j >= 3 * U) v = v * 0.5f + 0.5f;
        a[j] = v;
    }
    const float *i = a, *f = a + U, *g = a + 2 * U, *o = a + 3 * U;
    for (int64_t j = 0; j < U; j++) {
        float p = f[j] * c_old[j];
        float q = i[j] * g[j];
        float c = p + q;
        c_new[j] = c;
        float t = rnnlab_tanh_approx(c);
        tc[j] = t;
        h_new[j] = o[j] * t;
    }
}

/* the backward row, written once and compiled twice (portable, and with AVX2 enabled for the vectoriser) */
#define LSTM_BWD_ROW_BODY                                                                                    \
    {                                                                                                        \
        const float *i = a, *f = a + U, *g = a + 2 * U, *o = a + 3 * U;                                      \
        float *di = da, *df = da + U, *dg = da + 2 * U, *dout = da + 3 * U;                                  \
        /* ivdep: every element j reads its inputs before writing its outputs, nothing crosses elements, so  \
         * vectors are safe even with da == a (the fused backward loop): without it GCC's alias checks sent  \
         * that in-place call to the scalar loop (80 steps at B32 U128: 2.1-2.4 vs 1.5-1.9 ms) */            \
        _Pragma("GCC ivdep")                                                                                 \
        for (int64_t j = 0; j < U; j++) {                                                                    \
            float iv = i[j], fv = f[j], gv = g[j], ov = o[j], t = tc[j], h = dh[j];                          \
            float dov = h * t;                                                                               \
            float u = 1.0f - t * t;                                                                          \
            float dct = (h * ov) * u + dc[j];                                                                \
            float div = dct * gv, dfv = dct * c_old[j], dgv = dct * iv;                                      \
            dc_prev[j] = dct * fv;                                                                           \
            di[j] = div * ((1.0f - iv) * (iv + 0.0f));                                                       \
            df[j] = dfv * ((1.0f - fv) * (fv + 0.0f));                                                       \
            dg[j] = dgv * ((1.0f - gv) * (gv + 1.0f));                                                       \
            dout[j] = dov * ((1.0f - ov) * (ov + 0.0f));                                                     \
        }                                                                                                    \
    }

static void lstm_bwd_row_generic(const float *dh, const float *dc, const float *a, const float *c_old,
                                 const float *tc, float *da, float *dc_prev, int64_t U)
LSTM_BWD_ROW_BODY

/* ---------------------------------------------------------------- GRU training steps (elementwise part)
 * The gate math of gru.py's NumPy fast path (reset_after=True, sigmoid/tanh, float32), one call per time
 * step, for B rows of U units; the recurrent GEMMs stay in NumPy/BLAS. Row b of every (B, .) array is
 * contiguous.
 *
 * Forward: a (B, 3U) holds x W_x (+ b_x) with the z, r columns prescaled by 1/2 (the fast path's weights), q
 * (B, 3U) the step's h_{t-1} W_h (prescaled alike); bx, bh (3U, the same for every row; the prescaled b_x,
 * b_h) or NULL: a <- a + bx first (as NumPy's A += b_x; saves a pass over all of A), q <- q + bh (stored:
 * the backward reads q_h); a <- [z, r, hh] where z, r = 1/2 + 1/2 tanh(a + q),
 * hh = tanh(a_h + r q_h); h_new = (h_old - hh) z + hh. Only the tanh (the approximation above) differs
 * from the NumPy step; the rest rounds the same way.
 *
 * Backward: from dh (B, U) and the stored a (z, r, hh), h_old, q:
 *   dz = (h_old - hh) dh (1 - z) z;  dh_direct = dh z;  dAh = (dh - dh_direct)(1 - hh hh);
 *   dr = (dAh q_h) (1 - r) r;  da = [dz, dr, dAh];  q <- dq = [dz, dr, dAh r]  (q_h read before written);
 *   dh_prev <- dh_direct (the caller adds dq W_h^T);
 * the same operations in the same order as the NumPy fast backward (no FMA): bit-identical to it.
 * da, q, dh_prev may not alias each other or dh, a, h_old (except da may be a itself).
 * isa: 0 auto, 1 portable, 2 at most AVX2 (lstm_step_isa). Return the path taken (1 portable, 2 AVX2, 3 AVX-512). */
static void gru_fwd_row_generic(float *a, float *q, const float *bx, const float *bh, const float *h_old,
                                float *h_new, int64_t U) {
    int64_t W = 3 * U;
    if (bx)
        for (int64_t j = 0; j < W; j++) a[j] += bx[j];
    if (bh)
        for (int64_t j = 0; j < W; j++) q[j] += bh[j];
    for (int64_t j = 0; j < 2 * U; j++) a[j] = rnnlab_tanh_approx(a[j] + q[j]) * 0.5f + 0.5f;
    const float *z = a, *r = a + U, *qh = q + 2 * U;
    float *hh = a + 2 * U;
    for (int64_t j = 0; j < U; j++) {
        float u = r[j] * qh[j];
        float v = rnnlab_tanh_approx(hh[j] + u);
        hh[j] = v;
        float d = h_old[j] - v;
        h_new[j] = d * z[j] + v;
    }
}

#define GRU_BWD_ROW_BODY                                                                                     \
    {                                                                                                        \
        const float *z = a, *r = a + U, *hh = a + 2 * U;                                                     \
        float *dz = da, *dr = da + U, *dAh = da + 2 * U, *qh = q + 2 * U;                                    \
        _Pragma("GCC ivdep") /* as in LSTM_BWD_ROW_BODY: element j reads before it writes, nothing crosses */ \
        for (int64_t j = 0; j < U; j++) {                                                                    \
            float h = dh[j], zv = z[j], rv = r[j], hv = hh[j];                                               \
            float dzv = (h_old[j] - hv) * h;                                                                 \
            float dd = h * zv;                                                                               \
            float dah = (h - dd) * (1.0f - hv * hv);                                                         \
            float drv = dah * qh[j];                                                                         \
            dzv = dzv * ((1.0f - zv) * zv);                                                                  \
            drv = drv * ((1.0f - rv) * rv);                                                                  \
            dh_prev[j] = dd;                                                                                 \
            dz[j] = dzv;                                                                                     \
            dr[j] = drv;                                                                                     \
            dAh[j] = dah;                                                                                    \
            q[j] = dzv;                                                                                      \
            q[U + j] = drv;                                                                                  \
            qh[j] = dah * rv;                                                                                \
        }                                                                                                    \
    }

static void gru_bwd_row_generic(const float *dh, const float *a, const float *h_old, float *q, float *da,
                                float *dh_prev, int64_t U)
GRU_BWD_ROW_BODY

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define RNNLAB_HAVE_AVX2_PATH 1
#include <immintrin.h>

static int have_avx2_fma(void) {
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    return cached;
}

static int have_avx512(void) {
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    return cached;
}

/* The recurrent kernel Wh (U, W), W % 16 == 0, packed in panels of 64 columns (the last one W % 64 wide when
 * that is not 0): panel c (width w) holds Wp[k][0:w] = Wh[k, c : c + w], contiguous streams, friendlier to
 * the prefetcher (32 KiB per full panel at U = 128).
 * Rows already holding the same bytes (the workspace's Wp from the last call, when the weights did not change)
 * are only compared, not rewritten: reading instead of writing 256 KiB spares the cache line fills and write
 * backs of the copy, 2-6% of a batch-1 LSTM(128) loop at T = 80 (more when the caches were cold). */
static void pack_panels(const float *Wh, float *Wp, int64_t U, int64_t W) {
    float *d = Wp;
    for (int64_t c = 0; c < W; c += 64) {
        int64_t w = W - c < 64 ? W - c : 64;
        size_t n = (size_t)w * sizeof(float);
        for (int64_t k = 0; k < U; k++, d += w)
            if (memcmp(d, Wh + k * W + c, n) != 0) memcpy(d, Wh + k * W + c, n);
    }
}

/* out[0:8n] = init[0:8n] (zeros when NULL) + h Wp_panel, n accumulators (a constant once inlined) */
__attribute__((target("avx2,fma"), always_inline)) static inline void panel_fma(
        float *out, const float *init, const float *w, const float *h, int64_t U, const int n) {
    __m256 s[8];
    for (int i = 0; i < n; i++) s[i] = init ? _mm256_loadu_ps(init + 8 * i) : _mm256_setzero_ps();
    for (int64_t k = 0; k < U; k++, w += 8 * n) {
        __m256 hk = _mm256_broadcast_ss(h + k);
        for (int i = 0; i < n; i++) s[i] = _mm256_fmadd_ps(hk, _mm256_loadu_ps(w + 8 * i), s[i]);
    }
    for (int i = 0; i < n; i++) _mm256_storeu_ps(out + 8 * i, s[i]);
}

/* out (W) = init (or zeros; may be out) + h (U) Wh, Wp = pack_panels(Wh); W % 16 == 0 */
__attribute__((target("avx2,fma"))) static void matvec_avx2(float *out, const float *init, const float *Wp,
                                                          const float *h, int64_t U, int64_t W) {
    int64_t j0 = 0;
    const float *w = Wp;
    for (; j0 + 64 <= W; j0 += 64, w += 64 * U) panel_fma(out + j0, init ? init + j0 : NULL, w, h, U, 8);
    switch (W - j0) {
        case 48: panel_fma(out + j0, init ? init + j0 : NULL, w, h, U, 6); break;
        case 32: panel_fma(out + j0, init ? init + j0 : NULL, w, h, U, 4); break;
        case 16: panel_fma(out + j0, init ? init + j0 : NULL, w, h, U, 2); break;
        default: break;
    }
}

/* ---------------------------------------------------------------- the AVX2 rows (_cells_vec.h, 8 lanes) */
#define VFN(name) name##avx2
#define VTARGET __attribute__((target("avx2,fma")))
#define VT __m256
#define VN 8
#define VLOAD _mm256_loadu_ps
#define VSTORE _mm256_storeu_ps
#define VSET1 _mm256_set1_ps
#define VADD _mm256_add_ps
#define VSUB _mm256_sub_ps
#define VMUL _mm256_mul_ps
#define VDIV _mm256_div_ps
#define VMIN _mm256_min_ps
#define VOR _mm256_or_ps
#define VFMADD _mm256_fmadd_ps
#define VFNMADD _mm256_fnmadd_ps
#define VROUND(x) _mm256_round_ps((x), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define VABS(x) _mm256_andnot_ps(_mm256_set1_ps(-0.0f), (x))
#define VSIGNBIT(x) _mm256_and_ps(_mm256_set1_ps(-0.0f), (x))
#define VPOW2I(n) _mm256_castsi256_ps(_mm256_slli_epi32( \
    _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23))
#define VSEL_NAN(x, t) _mm256_blendv_ps((t), (x), _mm256_cmp_ps((x), (x), _CMP_UNORD_Q))
#define VSEL_LT(a, b, yes, no) _mm256_blendv_ps((no), (yes), _mm256_cmp_ps((a), (b), _CMP_LT_OQ))
#include "_cells_vec.h"

/* ---------------------------------------------------------------- the AVX-512 rows (_cells_vec.h, 16 lanes)
 * The recurrent product works on the same packed panels, two 64-column panels side by side (8 accumulators);
 * per output column init + sum over k in order, one FMA each, as panel_fma: the same bits as the AVX2 path.
 * (Reading Wh unpacked, row by row, was slower: 931 vs 775 us median for a batch-1 Embedding + LSTM(128) +
 * Dense predict at T = 80; with the panels 718 us.) AVX-512F has no float and/andnot/or: integer casts. */
/* out[0:16n] = init[0:16n] (zeros when NULL) + h Wp_panels: n/4 consecutive 64-column panels of
 * pack_panels (panel stride 64 U) read side by side; n a constant once inlined */
__attribute__((target("avx512f"), always_inline)) static inline void panels_fma16(
        float *out, const float *init, const float *w, const float *h, int64_t U, const int n) {
    __m512 s[8];
    for (int i = 0; i < n; i++) s[i] = init ? _mm512_loadu_ps(init + 16 * i) : _mm512_setzero_ps();
    for (int64_t k = 0; k < U; k++, w += 64) {
        __m512 hk = _mm512_set1_ps(h[k]);
        for (int i = 0; i < n; i++)
            s[i] = _mm512_fmadd_ps(hk, _mm512_loadu_ps(w + (i / 4) * 64 * U + 16 * (i % 4)), s[i]);
    }
    for (int i = 0; i < n; i++) _mm512_storeu_ps(out + 16 * i, s[i]);
}

/* out (W) = init (or zeros; may be out) + h (U) Wh, Wp = pack_panels(Wh); W % 16 == 0 */
__attribute__((target("avx512f"))) static void matvec_avx512(float *out, const float *init, const float *Wp,
                                                            const float *h, int64_t U, int64_t W) {
    int64_t j0 = 0;
    const float *w = Wp;
    for (; j0 + 128 <= W; j0 += 128, w += 128 * U) panels_fma16(out + j0, init ? init + j0 : NULL, w, h, U, 8);
    const float *in = init ? init + j0 : NULL;
    /* what is left: one full panel (4) and/or the last, narrower one, whose rows are (W - j0) % 64 apart */
    if (W - j0 >= 64) {
        panels_fma16(out + j0, in, w, h, U, 4);
        j0 += 64;
        w += 64 * U;
        in = init ? init + j0 : NULL;
    }
    int64_t n = (W - j0) / 16;
    if (n) {
        __m512 s[3];
        for (int i = 0; i < n; i++) s[i] = in ? _mm512_loadu_ps(in + 16 * i) : _mm512_setzero_ps();
        for (int64_t k = 0; k < U; k++, w += 16 * n) {
            __m512 hk = _mm512_set1_ps(h[k]);
            for (int i = 0; i < n; i++) s[i] = _mm512_fmadd_ps(hk, _mm512_loadu_ps(w + 16 * i), s[i]);
        }
        for (int i = 0; i < n; i++) _mm512_storeu_ps(out + j0 + 16 * i, s[i]);
    }
}

#define VFN(name) name##avx512
#define VTARGET __attribute__((target("avx512f")))
#define VT __m512
#define VN 16
#define VLOAD _mm512_loadu_ps
#define VSTORE _mm512_storeu_ps
#define VSET1 _mm512_set1_ps
#define VADD _mm512_add_ps
#define VSUB _mm512_sub_ps
#define VMUL _mm512_mul_ps
#define VDIV _mm512_div_ps
#define VMIN _mm512_min_ps
#define VOR(a, b) _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(a), _mm512_castps_si512(b)))
#define VFMADD _mm512_fmadd_ps
#define VFNMADD _mm512_fnmadd_ps
#define VROUND(x) _mm512_roundscale_ps((x), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define VABS(x) _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(0x7fffffff)))
#define VSIGNBIT(x) _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(x), \
    _mm512_set1_epi32((int)0x80000000u)))
#define VPOW2I(n) _mm512_castsi512_ps(_mm512_slli_epi32( \
    _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23))
#define VSEL_NAN(x, t) _mm512_mask_blend_ps(_mm512_cmp_ps_mask((x), (x), _CMP_UNORD_Q), (t), (x))
#define VSEL_LT(a, b, yes, no) _mm512_mask_blend_ps(_mm512_cmp_ps_mask((a), (b), _CMP_LT_OQ), (no), (yes))
#include "_cells_vec.h"
#endif

/* y = tanh(x) with the approximation above (for the tests); isa 0 auto (the widest vectors), 1 portable,
 * 2 at most AVX2 */
void rnnlab_tanh_approx_f32_isa(const float *x, float *y, int64_t n, int64_t isa) {
#ifdef RNNLAB_HAVE_AVX2_PATH
    if (isa == 0 && have_avx512()) { tanh_avx512(x, y, n); return; }
    if (isa != 1 && have_avx2_fma()) { tanh_avx2(x, y, n); return; }
#endif
    for (int64_t j = 0; j < n; j++) y[j] = rnnlab_tanh_approx(x[j]);
}

/* the path the inference loops take for U units: isa 0 auto, 1 portable, 2 at most AVX2; returns
 * 1 portable, 2 AVX2, 3 AVX-512 (both need U % 16 == 0) */
static int cells_path(int64_t U, int64_t isa) {
#ifdef RNNLAB_HAVE_AVX2_PATH
    if (isa == 0 && have_avx512() && U % 16 == 0) return 3;
    if (isa != 1 && have_avx2_fma() && U % 16 == 0) return 2;
#else
    (void)U; (void)isa;
#endif
    return 1;
}

/* the path the inference loops take for U units (isa 0): 1 portable, 2 AVX2, 3 AVX-512 */
int rnnlab_cells_isa(int64_t U) {
    return cells_path(U, 0);
}

/* The LSTM inference time loop (the NumPy fast path of lstm.py, steps 3 of RNN.forward):
 *   A (T, B, 4U): x_t W_x (+ b when bias is NULL); overwritten with the gate activations i, f, g, o
 *                 (as the NumPy loop leaves them);
 *   bias (4U) or NULL: added to A[t] at step t (saves NumPy's broadcast add);
 *   Wh (U, 4U):   the recurrent kernel; Wp (U * 4U floats): scratch for its packed copy (AVX2 path);
 *   prescaled:    1 when the sigmoid gates' columns of A and Wh are already scaled by 1/2 (the NumPy fast
 *                 path's weights), 0 to scale the sums here (exact, power of two: the same values);
 *   H, C (T+1, B, U): states, H[0], C[0] set by the caller; TC (T, B, U) tanh(c_t);
 *   mask (T, B) uint8 or NULL: where 0, the states are carried, S[t+1, b] = S[t, b].
 * isa: 0 auto, 1 portable C, 2 at most AVX2. Returns the path taken (1 portable, 2 AVX2, 3 AVX-512: cells_path). */
int rnnlab_lstm_infer_f32(float *A, const float *bias, const float *Wh, float *Wp, float *H, float *C,
                          float *TC, const uint8_t *mask, int64_t T, int64_t B, int64_t U, int64_t prescaled,
                          int64_t isa) {
    int use = cells_path(U, isa);
    int64_t W = 4 * U;
#ifdef RNNLAB_HAVE_AVX2_PATH
    if (use >= 2) pack_panels(Wh, Wp, U, W);
#endif
    for (int64_t t = 0; t < T; t++) {
        for (int64_t b = 0; b < B; b++) {
            float *a = A + (t * B + b) * W;
            const float *ho = H + (t * B + b) * U, *co = C + (t * B + b) * U;
            float *hn = H + ((t + 1) * B + b) * U, *cn = C + ((t + 1) * B + b) * U;
            float *tc = TC + (t * B + b) * U;
#ifdef RNNLAB_HAVE_AVX2_PATH
            if (use == 3) lstm_row_avx512(a, bias, Wp, ho, co, cn, tc, hn, U, (int)prescaled);
            else if (use == 2) lstm_row_avx2(a, bias, Wp, ho, co, cn, tc, hn, U, (int)prescaled);
            else
#endif
                lstm_row_generic(a, bias, Wh, ho, co, cn, tc, hn, U, (int)prescaled);
            if (mask && !mask[t * B + b]) {
                memcpy(hn, ho, (size_t)U * sizeof(float));
                memcpy(cn, co, (size_t)U * sizeof(float));
            }
        }
    }
    return use;
}


/* The GRU (reset_after=True) inference time loop (the NumPy fast path of gru.py):
 *   A (T, B, 3U): x_t W_x (+ b_x when bx is NULL); overwritten with z, r and the candidate hh (as the NumPy
 *                 loop leaves them); bx, bh (3U) or NULL: the input bias (added to A[t] at step t) and the
 *                 recurrent bias;
 *   Wh (U, 3U):   the recurrent kernel; Wp (U * 3U floats): scratch for its packed copy (AVX2 path);
 *   prescaled:    1 when the z, r columns of A, bx, bh and Wh are already halved (the NumPy fast path's
 *                 weights), 0 to halve the sums here (exact);
 *   H (T+1, B, U): states, H[0] set by the caller; Q (T, B, 3U) receives h_{t-1} W_h + b_h with the z, r
 *                 columns halved, as the NumPy fast path stores it (the backward reads q_h);
 *   mask (T, B) uint8 or NULL: where 0, the state is carried, H[t+1, b] = H[t, b].
 * isa: 0 auto, 1 portable C, 2 at most AVX2. Returns the path taken (1 portable, 2 AVX2, 3 AVX-512: cells_path). */
int rnnlab_gru_infer_f32(float *A, const float *bx, const float *bh, const float *Wh, float *Wp, float *H,
                         float *Q, const uint8_t *mask, int64_t T, int64_t B, int64_t U, int64_t prescaled,
                         int64_t isa) {
    int use = cells_path(U, isa);
    int64_t W = 3 * U;
#ifdef RNNLAB_HAVE_AVX2_PATH
    if (use >= 2) pack_panels(Wh, Wp, U, W);
#endif
    for (int64_t t = 0; t < T; t++) {
        for (int64_t b = 0; b < B; b++) {
            float *a = A + (t * B + b) * W, *q = Q + (t * B + b) * W;
            const float *ho = H + (t * B + b) * U;
            float *hn = H + ((t + 1) * B + b) * U;
#ifdef RNNLAB_HAVE_AVX2_PATH
            if (use == 3) gru_row_avx512(a, bx, bh, Wp, ho, hn, q, U, (int)prescaled);
            else if (use == 2) gru_row_avx2(a, bx, bh, Wp, ho, hn, q, U, (int)prescaled);
            else
#endif
                gru_row_generic(a, bx, bh, Wh, ho, hn, q, U, (int)prescaled);
            if (mask && !mask[t * B + b]) memcpy(hn, ho, (size_t)U * sizeof(float));
        }
    }
    return use;
}


/* The SimpleRNN (activation tanh) inference time loop (the NumPy loop of simple_rnn.py):
 *   A (T, B, U):  x_t W_x (+ b when bias is NULL); left holding the pre-activations a_t = x_t W_x + b + h_{t-1} W_h
 *                 (as the NumPy loop leaves them); bias (U) or NULL: added to A[t] at step t;
 *   Wh (U, U):    the recurrent kernel; Wp (U * U floats): scratch for its packed copy (AVX2 path);
 *   H (T+1, B, U): states, H[0] set by the caller, H[t+1] = tanh(a_t);
 *   mask (T, B) uint8 or NULL: where 0, the state is carried, H[t+1, b] = H[t, b].
 * isa: 0 auto, 1 portable C, 2 at most AVX2. Returns the path taken (1 portable, 2 AVX2, 3 AVX-512: cells_path). */
int rnnlab_rnn_infer_f32(float *A, const float *bias, const float *Wh, float *Wp, float *H, const uint8_t *mask,
                         int64_t T, int64_t B, int64_t U, int64_t isa) {
    int use = cells_path(U, isa);
#ifdef RNNLAB_HAVE_AVX2_PATH
    if (use >= 2) pack_panels(Wh, Wp, U, U);
#endif
    for (int64_t t = 0; t < T; t++) {
        for (int64_t b = 0; b < B; b++) {
            float *a = A + (t * B + b) * U;
            const float *ho = H + (t * B + b) * U;
            float *hn = H + ((t + 1) * B + b) * U;
#ifdef RNNLAB_HAVE_AVX2_PATH
            if (use == 3) rnn_row_avx512(a, bias, Wp, ho, hn, U);
            else if (use == 2) rnn_row_avx2(a, bias, Wp, ho, hn, U);
            else
#endif
                rnn_row_generic(a, bias, Wh, ho, hn, U);
            if (mask && !mask[t * B + b]) memcpy(hn, ho, (size_t)U * sizeof(float));
        }
    }
    return use;
}


/* the path of the training-step kernels for U units: isa 0 auto, 1 portable, 2 at most AVX2 (for the tests);
 * returns 1 portable, 2 AVX2 (U % 8 == 0), 3 AVX-512 (U % 16 == 0) */
static int lstm_step_isa(int64_t U, int64_t isa) {
#ifdef RNNLAB_HAVE_AVX2_PATH
    if (isa == 0 && have_avx512() && U % 16 == 0) return 3;
    if (isa != 1 && have_avx2_fma() && U % 8 == 0) return 2;
#else
    (void)U; (void)isa;
#endif
    return 1;
}

typedef void (*lstm_fwd_row_t)(float *, const float *, const float *, float *, float *, float *, const float *,
                               int64_t);
typedef void (*lstm_bwd_row_t)(const float *, const float *, const float *, const float *, const float *, float *,
                               float *, int64_t);
/* the row kernels by path (index: 1 portable, 2 AVX2, 3 AVX-512) */
#ifdef RNNLAB_HAVE_AVX2_PATH
static const lstm_fwd_row_t LSTM_FWD_ROWS[4] = {0, lstm_fwd_row_generic, lstm_fwd_row_avx2, lstm_fwd_row_avx512};
static const lstm_bwd_row_t LSTM_BWD_ROWS[4] = {0, lstm_bwd_row_generic, lstm_bwd_row_avx2, lstm_bwd_row_avx512};
#else
static const lstm_fwd_row_t LSTM_FWD_ROWS[4] = {0, lstm_fwd_row_generic, 0, 0};
static const lstm_bwd_row_t LSTM_BWD_ROWS[4] = {0, lstm_bwd_row_generic, 0, 0};
#endif

int rnnlab_lstm_gates_fwd_f32(float *a, const float *r, const float *c_old, float *c_new, float *tc,
                              float *h_new, const float *bias, int64_t B, int64_t U, int64_t isa) {
    int use = lstm_step_isa(U, isa);
    lstm_fwd_row_t row = LSTM_FWD_ROWS[use];
    int64_t W = 4 * U;
    for (int64_t b = 0; b < B; b++)
        row(a + b * W, r + b * W, c_old + b * U, c_new + b * U, tc + b * U, h_new + b * U, bias, U);
    return use;
}

int rnnlab_lstm_gates_bwd_f32(const float *dh, const float *dc, const float *a, const float *c_old,
                              const float *tc, float *da, float *dc_prev, int64_t B, int64_t U, int64_t isa) {
    int use = lstm_step_isa(U, isa);
    lstm_bwd_row_t row = LSTM_BWD_ROWS[use];
    int64_t W = 4 * U;
    for (int64_t b = 0; b < B; b++)
        row(dh + b * U, dc + b * U, a + b * W, c_old + b * U, tc + b * U, da + b * W, dc_prev + b * U, U);
    return use;
}

/* the path the training-step kernels take for U units (isa 0), for the tests */
int rnnlab_step_isa(int64_t U) {
    return lstm_step_isa(U, 0);
}


typedef void (*gru_fwd_row_t)(float *, float *, const float *, const float *, const float *, float *, int64_t);
typedef void (*gru_bwd_row_t)(const float *, const float *, const float *, float *, float *, float *, int64_t);
#ifdef RNNLAB_HAVE_AVX2_PATH
static const gru_fwd_row_t GRU_FWD_ROWS[4] = {0, gru_fwd_row_generic, gru_fwd_row_avx2, gru_fwd_row_avx512};
static const gru_bwd_row_t GRU_BWD_ROWS[4] = {0, gru_bwd_row_generic, gru_bwd_row_avx2, gru_bwd_row_avx512};
#else
static const gru_fwd_row_t GRU_FWD_ROWS[4] = {0, gru_fwd_row_generic, 0, 0};
static const gru_bwd_row_t GRU_BWD_ROWS[4] = {0, gru_bwd_row_generic, 0, 0};
#endif

int rnnlab_gru_gates_fwd_f32(float *a, float *q, const float *bx, const float *bh, const float *h_old,
                             float *h_new, int64_t B, int64_t U, int64_t isa) {
    int use = lstm_step_isa(U, isa);
    gru_fwd_row_t row = GRU_FWD_ROWS[use];
    int64_t W = 3 * U;
    for (int64_t b = 0; b < B; b++)
        row(a + b * W, q + b * W, bx, bh, h_old + b * U, h_new + b * U, U);
    return use;
}

int rnnlab_gru_gates_bwd_f32(const float *dh, const float *a, const float *h_old, float *q, float *da,
                             float *dh_prev, int64_t B, int64_t U, int64_t isa) {
    int use = lstm_step_isa(U, isa);
    gru_bwd_row_t row = GRU_BWD_ROWS[use];
    int64_t W = 3 * U;
    for (int64_t b = 0; b < B; b++)
        row(dh + b * U, a + b * W, h_old + b * U, q + b * W, da + b * W, dh_prev + b * U, U);
    return use;
}


/* ------------------------------------------------------- whole forward loops of the packed path (any batch) */

int rnnlab_gemm_packed_f32(const float *A, int64_t rsa, int64_t csa, const float *Bp, int64_t ldc, int64_t M,
                           int64_t K, int64_t N, int64_t beta, float *C);

/* rows b < B of step t whose mask is 0 carry the previous state: S[t+1][b] = S[t][b] (as the Python loop's
 * np.copyto(S[t + 1], S[t], where=~m[t])); steps are bt rows apart in S and in the mask */
static void carry_masked_rows(float *S, const uint8_t *mask, int64_t t, int64_t B, int64_t bt, int64_t U) {
    for (int64_t b = 0; b < B; b++)
        if (!mask[t * bt + b])
            memcpy(S + ((t + 1) * bt + b) * U, S + (t * bt + b) * U, (size_t)U * sizeof(float));
}

/* The T steps of the LSTM forward of the packed path (lstm.py with ws.pk set: training, or inference above
 * the batch of rnnlab_lstm_infer_f32) in one call, doing per step exactly what its per-step Python loop does
 * with two calls: tmp = HR[t] @ W_h (Wp: rnnlab_pack_f32 of the pre-scaled W_h, _gemm.c), then the gate kernel
 * of rnnlab_lstm_gates_fwd_f32 on A[t] (+ bias), C[t] -> C[t+1], TC[t], H[t+1]; with a mask (T, bt) the rows
 * whose mask is 0 then keep H[t] and C[t]. Same kernels in the same order: the same bits as the per-step loop.
 *   B rows of each step, steps bt rows apart (bt = B for the whole batch; a caller may run a block of rows:
 *   rows never interact, so each block's loop is independent of the others');
 *   HR: h_{t-1} as it enters the product, step t at HR + t * hr_t, rows ldhr apart (H[:T] itself here);
 *   A (T, bt, 4U), H and C (T+1, bt, U), TC (T, bt, U): C-contiguous; tmp (B, 4U) scratch.
 * Returns the gate path (as rnnlab_lstm_gates_fwd_f32), or 0 (nothing done) when the packed GEMM cannot run. */
/* Table rows (P, ids non-NULL; inference on an Embedding's output, rnnlab/layers/fused_native.py): A[t]'s rows are
 * first copied from P (V, 4U): row b of step t is P[ids[t * bt + b]] (ids time-major, (T, bt)), the rows of step
 * t + 1 prefetched meanwhile; the same values as gathering all of A before the loop, without streaming A through
 * memory twice. */
static void gather_step_rows(float *A, const float *P, const int64_t *ids, int64_t t, int64_t T, int64_t B,
                             int64_t bt, int64_t W) {
    for (int64_t b = 0; b < B; b++)
        memcpy(A + (t * bt + b) * W, P + ids[t * bt + b] * W, (size_t)W * sizeof(float));
    if (t + 1 < T)
        for (int64_t b = 0; b < B; b++) {
            const char *row = (const char *)(P + ids[(t + 1) * bt + b] * W);
            for (int64_t k = 0; k < W * (int64_t)sizeof(float); k += 64) __builtin_prefetch(row + k, 0, 1);
        }
}

int rnnlab_lstm_fwd_loop_f32(const float *Wp, const float *HR, int64_t hr_t, int64_t ldhr, float *A, float *tmp,
                             float *H, float *C, float *TC, const float *bias, const uint8_t *mask, int64_t T,
                             int64_t B, int64_t bt, int64_t U, int64_t isa, const float *P, const int64_t *ids) {
    int64_t W = 4 * U, use = 0;
    for (int64_t t = 0; t < T; t++) {
        if (!rnnlab_gemm_packed_f32(HR + t * hr_t, ldhr, 1, Wp, W, B, U, W, 0, tmp))
            return 0;  /* (only at t == 0: the GEMM's path does not change) */
        if (P && ids)
            gather_step_rows(A, P, ids, t, T, B, bt, W);
        use = rnnlab_lstm_gates_fwd_f32(A + t * bt * W, tmp, C + t * bt * U, C + (t + 1) * bt * U,
                                        TC + t * bt * U, H + (t + 1) * bt * U, bias, B, U, isa);
        if (mask) {
            carry_masked_rows(H, mask, t, B, bt, U);
            carry_masked_rows(C, mask, t, B, bt, U);
        }
    }
    return (int)use;
}

/* The same for the GRU (reset_after=True, gru.py's fast path): Q[t] = HR[t] @ W_h (pre-scaled, packed), then
 * the gate kernel of rnnlab_gru_gates_fwd_f32 on A[t], Q[t] (+ bx, bh), H[t] -> H[t+1]; masked rows keep H[t].
 *   A and Q (T, bt, 3U), H (T+1, bt, U): C-contiguous; B and bt as above. */
int rnnlab_gru_fwd_loop_f32(const float *Wp, const float *HR, int64_t hr_t, int64_t ldhr, float *A, float *Q,
                            const float *bx, const float *bh, float *H, const uint8_t *mask, int64_t T, int64_t B,
                            int64_t bt, int64_t U, int64_t isa) {
    int64_t W = 3 * U, use = 0;
    for (int64_t t = 0; t < T; t++) {
        float *q = Q + t * bt * W;
        if (!rnnlab_gemm_packed_f32(HR + t * hr_t, ldhr, 1, Wp, W, B, U, W, 0, q))
            return 0;
        use = rnnlab_gru_gates_fwd_f32(A + t * bt * W, q, bx, bh, H + t * bt * U, H + (t + 1) * bt * U, B, U,
                                       isa);
        if (mask)
            carry_masked_rows(H, mask, t, B, bt, U);
    }
    return (int)use;
}

/* Rows of a masked step (the Python loop's `masked and ws.partial[t]` branch, fused_loop.py): for each state, the
 * gradient the step sees is dnew = carry * m, and the carried one keeps carry * (1 - m) (m = mask[b] as 1.0f or 0.0f,
 * the same multiplications as NumPy's by ws.mf[t] / ws.notmf[t]); the caller then runs the step on dnew and adds
 * its dL/dS[t] to the carry. B rows of U, contiguous. */
static void split_masked_rows(float *carry, float *dnew, const uint8_t *m, int64_t B, int64_t U) {
    for (int64_t b = 0; b < B; b++) {
        float mv = m[b] ? 1.0f : 0.0f, nv = m[b] ? 0.0f : 1.0f;
        float *cr = carry + b * U, *dn = dnew + b * U;
        for (int64_t j = 0; j < U; j++) {
            dn[j] = cr[j] * mv;
            cr[j] = cr[j] * nv;
        }
    }
}

/* dh += G[t] (G: step t row b at G + t * g_t + b * g_b), each row's G times fac[t * bt + b] first when fac (masked
 * layers: the output factor ws.fac, NumPy's tmp = G[t] * fac[t]; carry += tmp); B rows of U. */
static void add_output_grad(float *dh, const float *G, int64_t g_t, int64_t g_b, const float *fac, int64_t t,
                            int64_t B, int64_t bt, int64_t U) {
    for (int64_t b = 0; b < B; b++) {
        const float *g = G + t * g_t + b * g_b;
        float *d = dh + b * U;
        if (fac) {
            float f = fac[t * bt + b];
            for (int64_t j = 0; j < U; j++) d[j] += g[j] * f;
        } else {
            for (int64_t j = 0; j < U; j++) d[j] += g[j];
        }
    }
}

/* The T steps of the LSTM backward of the packed path (fused_loop's BPTT loop, lstm.py's _step_backward_fast with
 * its C gate kernel) in one call, for steps without recurrent dropout, doing per step t = T-1..0 what the Python
 * loop does: dh += G[t] (when G: the output gradient of return_sequences), the gate kernel of
 * rnnlab_lstm_gates_bwd_f32 (dh, dc, the activations A[t], C[t], TC[t] -> dA[t], written over A[t] as the loop
 * stores it, and dc_prev), then dh_prev = dA[t] W_h^T (WpT: rnnlab_pack_f32 of W_h^T, _gemm.c). Same kernels in
 * the same order: the same bits as the per-step loop.
 *   B rows of each step, steps bt rows apart (bt = B for the whole batch; a caller may run a block of rows: rows
 *   never interact); A (T, bt, 4U), C (T+1, bt, U), TC (T, bt, U): C-contiguous; G: step t row b at
 *   G + t * g_t + b * g_b (NULL for none);
 *   dh, dc (B, U, rows U apart): in: dL/dh_T, dL/dc_T; out: dL/dh_0, dL/dc_0; dh2, dc2 (B, U): scratch.
 * Masked (rnnlab_lstm_bwd_loop_masked_f32; mask non-NULL): mask (T, bt) uint8, partial (T,) uint8 (step t has a
 * masked row anywhere in the *whole* batch: the Python loop's ws.partial, which decides its branch), fac (T, bt)
 * float the output factor (ws.fac), nh, nc (B, U) scratch (the Python loop's ws.dnew). G[t] is scaled by fac[t]
 * before it is added; a partial step splits the carried gradients (split_masked_rows), runs the gate kernel and the
 * product on the masked ones and adds dc_prev, dh_prev to the carry, exactly the Python loop's operations; a
 * step without masked rows is the unmasked step.
 * Returns the gate path (as rnnlab_lstm_gates_bwd_f32), or 0 (nothing done) when the packed GEMM cannot run. */
static int lstm_bwd_loop(const float *WpT, float *A, const float *C, const float *TC, const float *G, int64_t g_t,
                         int64_t g_b, float *dh, float *dc, float *dh2, float *dc2, int64_t T, int64_t B, int64_t bt,
                         int64_t U, int64_t isa, const uint8_t *mask, const uint8_t *partial, const float *fac,
                         float *nh, float *nc) {
    int64_t W = 4 * U;
    int use = 0;
    float *h = dh, *c = dc, *hp = dh2, *cp = dc2;
    for (int64_t t = T - 1; t >= 0; t--) {
        if (G)
            add_output_grad(h, G, g_t, g_b, mask ? fac : NULL, t, B, bt, U);
        float *a = A + t * bt * W;
        if (mask && partial[t]) {
            split_masked_rows(h, nh, mask + t * bt, B, U);
            split_masked_rows(c, nc, mask + t * bt, B, U);
            use = rnnlab_lstm_gates_bwd_f32(nh, nc, a, C + t * bt * U, TC + t * bt * U, a, cp, B, U, isa);
            if (!rnnlab_gemm_packed_f32(a, W, 1, WpT, U, B, W, U, 0, hp))
                return 0;  /* (only at the first step: the GEMM's path does not change) */
            for (int64_t k = 0; k < B * U; k++) h[k] += hp[k];
            for (int64_t k = 0; k < B * U; k++) c[k] += cp[k];
            continue;
        }
        use = rnnlab_lstm_gates_bwd_f32(h, c, a, C + t * bt * U, TC + t * bt * U, a, cp, B, U, isa);
        if (!rnnlab_gemm_packed_f32(a, W, 1, WpT, U, B, W, U, 0, hp))
            return 0;  /* (only at the first step: the GEMM's path does not change) */
        float *s = h; h = hp; hp = s;
        s = c; c = cp; cp = s;
    }
    if (h != dh) {
        memcpy(dh, h, (size_t)(B * U) * sizeof(float));
        memcpy(dc, c, (size_t)(B * U) * sizeof(float));
    }
    return use;
}

int rnnlab_lstm_bwd_loop_f32(const float *WpT, float *A, const float *C, const float *TC, const float *G,
                             int64_t g_t, int64_t g_b, float *dh, float *dc, float *dh2, float *dc2, int64_t T,
                             int64_t B, int64_t bt, int64_t U, int64_t isa) {
    return lstm_bwd_loop(WpT, A, C, TC, G, g_t, g_b, dh, dc, dh2, dc2, T, B, bt, U, isa, NULL, NULL, NULL, NULL,
                         NULL);
}

int rnnlab_lstm_bwd_loop_masked_f32(const float *WpT, float *A, const float *C, const float *TC, const float *G,
                                    int64_t g_t, int64_t g_b, float *dh, float *dc, float *dh2, float *dc2,
                                    int64_t T, int64_t B, int64_t bt, int64_t U, int64_t isa, const uint8_t *mask,
                                    const uint8_t *partial, const float *fac, float *nh, float *nc) {
    if (!mask || !partial || !fac || !nh || !nc)
        return 0;
    return lstm_bwd_loop(WpT, A, C, TC, G, g_t, g_b, dh, dc, dh2, dc2, T, B, bt, U, isa, mask, partial, fac, nh, nc);
}

/* The same for the GRU (reset_after=True, gru.py's _step_backward_fast with its C gate kernel): per step t = T-1..0,
 * dh += G[t] (when G), the gate kernel of rnnlab_gru_gates_bwd_f32 (dh, the gates A[t], H[t], Q[t] -> dA[t] written
 * over A[t], dQ[t] over Q[t], dh_prev = its direct part), then dh_prev += dQ[t] W_h^T (WpT packed, through the (B, U)
 * scratch tmp). Same kernels and additions in the same order as the per-step loop: the same bits.
 *   A and Q (T, bt, 3U), H (T+1, bt, U); dh (B, U) in: dL/dh_T, out: dL/dh_0; dh2, tmp (B, U) scratch.
 * Masked (rnnlab_gru_bwd_loop_masked_f32): mask, partial, fac as for the LSTM, nh (B, U) scratch (ws.dnew[0]); a
 * partial step runs the gate kernel and the product on nh = dh * m, keeps dh * (1 - m) and adds dh_prev to it. */
static int gru_bwd_loop(const float *WpT, float *A, const float *H, float *Q, const float *G, int64_t g_t,
                        int64_t g_b, float *dh, float *dh2, float *tmp, int64_t T, int64_t B, int64_t bt, int64_t U,
                        int64_t isa, const uint8_t *mask, const uint8_t *partial, const float *fac, float *nh) {
    int64_t W = 3 * U;
    int use = 0;
    float *h = dh, *hp = dh2;
    for (int64_t t = T - 1; t >= 0; t--) {
        if (G)
            add_output_grad(h, G, g_t, g_b, mask ? fac : NULL, t, B, bt, U);
        float *a = A + t * bt * W, *q = Q + t * bt * W;
        int part = mask && partial[t];
        if (part)
            split_masked_rows(h, nh, mask + t * bt, B, U);
        use = rnnlab_gru_gates_bwd_f32(part ? nh : h, a, H + t * bt * U, q, a, hp, B, U, isa);
        if (!rnnlab_gemm_packed_f32(q, W, 1, WpT, U, B, W, U, 0, tmp))
            return 0;  /* (only at the first step) */
        for (int64_t k = 0; k < B * U; k++) hp[k] += tmp[k];
        if (part) {
            for (int64_t k = 0; k < B * U; k++) h[k] += hp[k];
            continue;
        }
        float *s = h; h = hp; hp = s;
    }
    if (h != dh)
        memcpy(dh, h, (size_t)(B * U) * sizeof(float));
    return use;
}

int rnnlab_gru_bwd_loop_f32(const float *WpT, float *A, const float *H, float *Q, const float *G, int64_t g_t,
                            int64_t g_b, float *dh, float *dh2, float *tmp, int64_t T, int64_t B, int64_t bt,
                            int64_t U, int64_t isa) {
    return gru_bwd_loop(WpT, A, H, Q, G, g_t, g_b, dh, dh2, tmp, T, B, bt, U, isa, NULL, NULL, NULL, NULL);
}

int rnnlab_gru_bwd_loop_masked_f32(const float *WpT, float *A, const float *H, float *Q, const float *G, int64_t g_t,
                                   int64_t g_b, float *dh, float *dh2, float *tmp, int64_t T, int64_t B, int64_t bt,
                                   int64_t U, int64_t isa, const uint8_t *mask, const uint8_t *partial,
                                   const float *fac, float *nh) {
    if (!mask || !partial || !fac || !nh)
        return 0;
    return gru_bwd_loop(WpT, A, H, Q, G, g_t, g_b, dh, dh2, tmp, T, B, bt, U, isa, mask, partial, fac, nh);
}
