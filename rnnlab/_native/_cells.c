/* Batch-size-agnostic LSTM inference time loop (float32), for rnnlab.layers.lstm's native path.
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
 * sigmoid(x) = 1/2 + 1/2 tanh(x/2): the caller folds the 1/2 into the weights (lstm.py's fast path),
 * so A holds x/2 for the sigmoid gates, exactly as the NumPy fast path does.
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

/* one LSTM step for one batch row, portable: a (4U) holds x W_x + b (sigmoid gates pre-scaled by 1/2) */
static void lstm_row_generic(float *a, const float *bias, const float *Wh, const float *h_old,
                             const float *c_old, float *c_new, float *tc, float *h_new, int64_t U,
                             int prescaled) {
    int64_t W = 4 * U;
    if (bias)
        for (int64_t j = 0; j < W; j++) a[j] += bias[j];
    for (int64_t k = 0; k < U; k++) {
        float hk = h_old[k];
        const float *w = Wh + k * W;
        for (int64_t j = 0; j < W; j++) a[j] += hk * w[j];
    }
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

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define RNNLAB_HAVE_AVX2_PATH 1
#include <immintrin.h>

__attribute__((target("avx2,fma"))) static inline __m256 tanh8(__m256 x) {
    const __m256 signmask = _mm256_set1_ps(-0.0f);
    __m256 ax = _mm256_andnot_ps(signmask, x);
    __m256 sgn = _mm256_and_ps(signmask, x);
    /* small branch */
    __m256 z = _mm256_mul_ps(x, x);
    __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(TH_P0), z, _mm256_set1_ps(TH_P1));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(TH_P2));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(TH_P3));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(TH_P4));
    __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(x, z), p, x);
    /* large branch; min(C, ax) returns ax when ax is NaN */
    __m256 cl = _mm256_min_ps(_mm256_set1_ps(TH_CLAMP), ax);
    __m256 y = _mm256_add_ps(cl, cl);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(y, _mm256_set1_ps(EX_LOG2E)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(EX_C1), y);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(EX_C2), r);
    __m256 q = _mm256_fmadd_ps(_mm256_set1_ps(EX_Q0), r, _mm256_set1_ps(EX_Q1));
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(EX_Q2));
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(EX_Q3));
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(EX_Q4));
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(EX_Q5));
    __m256 e = _mm256_fmadd_ps(_mm256_mul_ps(q, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i ni = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    e = _mm256_mul_ps(e, _mm256_castsi256_ps(ni));
    __m256 t = _mm256_sub_ps(_mm256_set1_ps(1.0f),
                             _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(e, _mm256_set1_ps(1.0f))));
    t = _mm256_or_ps(t, sgn);
    /* NaN: the large branch gives garbage, keep x */
    __m256 isnan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
    t = _mm256_blendv_ps(t, x, isnan);
    __m256 use_small = _mm256_cmp_ps(ax, _mm256_set1_ps(TH_SMALL), _CMP_LT_OQ);
    return _mm256_blendv_ps(t, small, use_small);
}

__attribute__((target("avx2,fma"))) static void tanh_avx2(const float *x, float *y, int64_t n) {
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) _mm256_storeu_ps(y + j, tanh8(_mm256_loadu_ps(x + j)));
    if (j < n) {
        float buf[8] = {0};
        memcpy(buf, x + j, (size_t)(n - j) * sizeof(float));
        _mm256_storeu_ps(buf, tanh8(_mm256_loadu_ps(buf)));
        memcpy(y + j, buf, (size_t)(n - j) * sizeof(float));
    }
}

/* AVX2 step for one batch row; needs U % 64 == 0 and Wp = Wh packed in panels of 64 columns,
 * Wp[c][k][0:64] = Wh[k, 64c : 64c + 64] (contiguous 32 KiB streams, friendlier to the prefetcher) */
__attribute__((target("avx2,fma"))) static void lstm_row_avx2(float *a, const float *bias, const float *Wp,
                                                            const float *h_old, const float *c_old,
                                                            float *c_new, float *tc, float *h_new, int64_t U,
                                                            int prescaled) {
    int64_t W = 4 * U;
    const float *w = Wp;
    if (bias)  /* a + b first, as NumPy's A += b */
        for (int64_t j = 0; j < W; j += 8)
            _mm256_storeu_ps(a + j, _mm256_add_ps(_mm256_loadu_ps(a + j), _mm256_loadu_ps(bias + j)));
    for (int64_t j0 = 0; j0 < W; j0 += 64) {
        __m256 s0 = _mm256_loadu_ps(a + j0), s1 = _mm256_loadu_ps(a + j0 + 8);
        __m256 s2 = _mm256_loadu_ps(a + j0 + 16), s3 = _mm256_loadu_ps(a + j0 + 24);
        __m256 s4 = _mm256_loadu_ps(a + j0 + 32), s5 = _mm256_loadu_ps(a + j0 + 40);
        __m256 s6 = _mm256_loadu_ps(a + j0 + 48), s7 = _mm256_loadu_ps(a + j0 + 56);
        for (int64_t k = 0; k < U; k++, w += 64) {
            __m256 hk = _mm256_broadcast_ss(h_old + k);
            s0 = _mm256_fmadd_ps(hk, _mm256_loadu_ps(w), s0);
            s1 = _mm256_fmadd_ps(hk, _mm256_loadu_ps(w + 8), s1);
            s2 = _mm256_fmadd_ps(hk, _mm256_loadu_ps(w + 16), s2);
            s3 = _mm256_fmadd_ps(hk, _mm256_loadu_ps(w + 24), s3);
            s4 = _mm256_fmadd_ps(hk, _mm256_loadu_ps(w + 32), s4);
            s5 = _mm256_fmadd_ps(hk, _mm256_loadu_ps(w + 40), s5);
            s6 = _mm256_fmadd_ps(hk, _mm256_loadu_ps(w + 48), s6);
            s7 = _mm256_fmadd_ps(hk, _mm256_loadu_ps(w + 56), s7);
        }
        _mm256_storeu_ps(a + j0, s0); _mm256_storeu_ps(a + j0 + 8, s1);
        _mm256_storeu_ps(a + j0 + 16, s2); _mm256_storeu_ps(a + j0 + 24, s3);
        _mm256_storeu_ps(a + j0 + 32, s4); _mm256_storeu_ps(a + j0 + 40, s5);
        _mm256_storeu_ps(a + j0 + 48, s6); _mm256_storeu_ps(a + j0 + 56, s7);
    }
    const __m256 half = _mm256_set1_ps(0.5f);
    for (int64_t j = 0; j < W; j += 8) {
        __m256 v = _mm256_loadu_ps(a + j);
        int sig = j < 2 * U || j >= 3 * U;
        if (sig && !prescaled) v = _mm256_mul_ps(v, half);  /* exact: x/2 for sigmoid(x) = 1/2 + tanh(x/2)/2 */
        v = tanh8(v);
        if (sig) v = _mm256_add_ps(_mm256_mul_ps(v, half), half);
        _mm256_storeu_ps(a + j, v);
    }
    const float *i = a, *f = a + U, *g = a + 2 * U, *o = a + 3 * U;
    for (int64_t j = 0; j < U; j += 8) {
        __m256 c = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(f + j), _mm256_loadu_ps(c_old + j)),
                                 _mm256_mul_ps(_mm256_loadu_ps(i + j), _mm256_loadu_ps(g + j)));
        _mm256_storeu_ps(c_new + j, c);
        __m256 t = tanh8(c);
        _mm256_storeu_ps(tc + j, t);
        _mm256_storeu_ps(h_new + j, _mm256_mul_ps(_mm256_loadu_ps(o + j), t));
    }
}

static int have_avx2_fma(void) {
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    return cached;
}
#endif

/* y = tanh(x) with the approximation above (for the tests); isa 0 auto, 1 portable */
void rnnlab_tanh_approx_f32_isa(const float *x, float *y, int64_t n, int64_t isa) {
#ifdef RNNLAB_HAVE_AVX2_PATH
    if (isa == 0 && have_avx2_fma()) { tanh_avx2(x, y, n); return; }
#endif
    for (int64_t j = 0; j < n; j++) y[j] = rnnlab_tanh_approx(x[j]);
}

/* 1 when the AVX2/FMA code would run for U units (isa 0) */
int rnnlab_cells_isa(int64_t U) {
#ifdef RNNLAB_HAVE_AVX2_PATH
    return have_avx2_fma() && U % 16 == 0 ? 2 : 1;
#else
    (void)U;
    return 1;
#endif
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
 * isa: 0 auto, 1 portable C. Returns the path taken (1 portable, 2 AVX2). */
int rnnlab_lstm_infer_f32(float *A, const float *bias, const float *Wh, float *Wp, float *H, float *C,
                          float *TC, const uint8_t *mask, int64_t T, int64_t B, int64_t U, int64_t prescaled,
                          int64_t isa) {
    int use = isa == 1 ? 1 : rnnlab_cells_isa(U);
    int64_t W = 4 * U;
#ifdef RNNLAB_HAVE_AVX2_PATH
    if (use == 2) {  /* 4U % 64 == 0: pack W_h in panels of 64 columns */
        float *d = Wp;
        for (int64_t c = 0; c < W; c += 64)
            for (int64_t k = 0; k < U; k++, d += 64) memcpy(d, Wh + k * W + c, 64 * sizeof(float));
    }
#endif
    for (int64_t t = 0; t < T; t++) {
        for (int64_t b = 0; b < B; b++) {
            float *a = A + (t * B + b) * W;
            const float *ho = H + (t * B + b) * U, *co = C + (t * B + b) * U;
            float *hn = H + ((t + 1) * B + b) * U, *cn = C + ((t + 1) * B + b) * U;
            float *tc = TC + (t * B + b) * U;
#ifdef RNNLAB_HAVE_AVX2_PATH
            if (use == 2) lstm_row_avx2(a, bias, Wp, ho, co, cn, tc, hn, U, (int)prescaled);
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
