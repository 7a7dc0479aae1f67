/* fastText skip-gram with negative sampling, one (centre, context) pair at a time (gensim's update order).
 *
 * Compiled into rnnlab's one shared library (setup.py) and called through ctypes from
 * rnnlab/embeddings/fasttext.py (FastText(update="pair")); the NumPy loop there (_sg_pairs_numpy) is the
 * fallback and the reference this loop is tested against (tests/test_fasttext_pairs.py).
 *
 * For every kept position i of the chunk (centre-major) and every partner j with 0 < |j - i| <= reduced[i]
 * in the same sentence (sid[j] == sid[i]), in increasing j, pair number p:
 *
 *     x       = (sum of the W rows of S(ids[i])) / d          d = max(n - 1, 1) ("gensim"), or n ("facebook")
 *     targets = ids[j] (label 1), then neg[p, 0..K-1] (label 0; a noise word equal to ids[j] is skipped)
 *     g_t     = alpha * (label_t - sigmoid(Y[t] . x))         every score from Y before this pair's update
 *     work    = sum_t g_t Y[t]
 *     Y[t]   += g_t x         for every target t (repeated targets add up)
 *     W[r]   += work          for every row r of S(ids[i]) (repeated rows add up: fastText's full update)
 *
 * so every pair sees the updates of all the pairs before it (gensim's fasttext_inner.pyx and Facebook's
 * Model::update; the sigmoid is the exact 1 / (1 + exp(-f)) in float32, not gensim's table). Float32 like
 * gensim; built with -ffp-contract=off. Dot products use 8 partial sums (so they vectorise): they differ
 * from NumPy's BLAS dot only by float32 rounding.
 *
 * Returns the number of pairs done (== the rows of neg the caller drew), or -(p + 1) when the score of pair
 * p was not finite (training diverged; the pairs before p are applied, p and later are not).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

static float dot_f32(const float *a, const float *b, int64_t D) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t d = 0;
    for (; d + 8 <= D; d += 8)
        for (int k = 0; k < 8; k++) acc[k] += a[d + k] * b[d + k];
    float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; d < D; d++) s += a[d] * b[d];
    return s;
}

int64_t rnnlab_ft_sg_pairs_f32(float *W, float *Y, const int64_t *sub_flat, const int64_t *sub_off,
                               const int64_t *sub_len, const int64_t *ids, const int64_t *sid,
                               const int64_t *reduced, int64_t N, const int64_t *neg, int64_t P, int64_t K,
                               int64_t D, float alpha, int64_t facebook_div, float *scratch, double *loss) {
    float *x = scratch, *work = scratch + D;
    int64_t p = 0;
    double lsum = 0.0;
    for (int64_t i = 0; i < N; i++) {
        const int64_t *rows = sub_flat + sub_off[ids[i]];
        const int64_t n = sub_len[ids[i]];
        const float div = (float)(facebook_div ? n : (n - 1 > 1 ? n - 1 : 1));
        const int64_t lo = i - reduced[i] > 0 ? i - reduced[i] : 0;
        const int64_t hi = i + reduced[i] < N - 1 ? i + reduced[i] : N - 1;
        for (int64_t j = lo; j <= hi; j++) {
            if (j == i || sid[j] != sid[i]) continue;
            if (p >= P) return -(p + 1);                  /* the caller drew too few noise rows */
            /* x: the centre's rows summed in order, then divided (as NumPy's W[rows].sum(0) / d) */
            memcpy(x, W + rows[0] * D, (size_t)D * sizeof(float));
            for (int64_t r = 1; r < n; r++) {
                const float *w = W + rows[r] * D;
                for (int64_t d = 0; d < D; d++) x[d] += w[d];
            }
            for (int64_t d = 0; d < D; d++) x[d] = x[d] / div;
            memset(work, 0, (size_t)D * sizeof(float));
            const int64_t tgt = ids[j];
            const int64_t *ng = neg + p * K;
            float g[1 + 64];
            int64_t tk[1 + 64], nt = 0;
            for (int64_t k = -1; k < K; k++) {
                const int64_t t = k < 0 ? tgt : ng[k];
                if (k >= 0 && t == tgt) continue;
                const float f = dot_f32(Y + t * D, x, D);
                if (!isfinite(f)) return -(p + 1);
                const float label = k < 0 ? 1.0f : 0.0f;
                const float s = 1.0f / (1.0f + expf(-f));
                if (loss) lsum -= k < 0 ? log((double)s) : log1p(-(double)s);
                g[nt] = (label - s) * alpha;
                tk[nt++] = t;
            }
            for (int64_t q = 0; q < nt; q++) {              /* work from Y before this pair's update */
                const float *y = Y + tk[q] * D;
                for (int64_t d = 0; d < D; d++) work[d] += g[q] * y[d];
            }
            for (int64_t q = 0; q < nt; q++) {
                float *y = Y + tk[q] * D;
                for (int64_t d = 0; d < D; d++) y[d] += g[q] * x[d];
            }
            for (int64_t r = 0; r < n; r++) {
                float *w = W + rows[r] * D;
                for (int64_t d = 0; d < D; d++) w[d] += work[d];
            }
            p++;
        }
    }
    if (loss) *loss = lsum;
    return p;
}

/* CBOW, one centre at a time (gensim's fasttext_fast_sentence_cbow_neg order). For every position i with at
 * least one partner j (0 < |j - i| <= reduced[i], same sentence), in order:
 *
 *     h       = (all W rows of S(ids[j]) of every partner j, increasing j, summed) / (number of those rows)
 *     targets = ids[i] (label 1), then neg[i, 0..K-1] (label 0; a noise word equal to ids[i] is skipped)
 *     g_t     = alpha * (label_t - sigmoid(Y[t] . h)),   work = sum_t g_t Y[t]   (Y before this update)
 *     Y[t]   += g_t h;   every row of every partner's S(ids[j]) += work   (the full update, cbow_mean)
 *
 * neg has one row per position (N, K); a position without partners uses none of its row. Returns the
 * number of centres updated, or -(i + 1) when a score of centre i was not finite. */
int64_t rnnlab_ft_cbow_f32(float *W, float *Y, const int64_t *sub_flat, const int64_t *sub_off,
                           const int64_t *sub_len, const int64_t *ids, const int64_t *sid, const int64_t *reduced,
                           int64_t N, const int64_t *neg, int64_t K, int64_t D, float alpha, float *scratch,
                           double *loss) {
    float *h = scratch, *work = scratch + D;
    int64_t done = 0;
    double lsum = 0.0;
    for (int64_t i = 0; i < N; i++) {
        const int64_t lo = i - reduced[i] > 0 ? i - reduced[i] : 0;
        const int64_t hi = i + reduced[i] < N - 1 ? i + reduced[i] : N - 1;
        int64_t count = 0;
        for (int64_t j = lo; j <= hi; j++) {
            if (j == i || sid[j] != sid[i]) continue;
            const int64_t *rows = sub_flat + sub_off[ids[j]];
            for (int64_t r = 0; r < sub_len[ids[j]]; r++) {
                const float *w = W + rows[r] * D;
                if (count == 0) memcpy(h, w, (size_t)D * sizeof(float));
                else for (int64_t d = 0; d < D; d++) h[d] += w[d];
                count++;
            }
        }
        if (count == 0) continue;
        const float c = (float)count;
        for (int64_t d = 0; d < D; d++) h[d] = h[d] / c;
        memset(work, 0, (size_t)D * sizeof(float));
        const int64_t tgt = ids[i];
        const int64_t *ng = neg + i * K;
        float g[1 + 64];
        int64_t tk[1 + 64], nt = 0;
        for (int64_t k = -1; k < K; k++) {
            const int64_t t = k < 0 ? tgt : ng[k];
            if (k >= 0 && t == tgt) continue;
            const float f = dot_f32(Y + t * D, h, D);
            if (!isfinite(f)) return -(i + 1);
            const float s = 1.0f / (1.0f + expf(-f));
            if (loss) lsum -= k < 0 ? log((double)s) : log1p(-(double)s);
            g[nt] = ((k < 0 ? 1.0f : 0.0f) - s) * alpha;
            tk[nt++] = t;
        }
        for (int64_t q = 0; q < nt; q++) {
            const float *y = Y + tk[q] * D;
            for (int64_t d = 0; d < D; d++) work[d] += g[q] * y[d];
        }
        for (int64_t q = 0; q < nt; q++) {
            float *y = Y + tk[q] * D;
            for (int64_t d = 0; d < D; d++) y[d] += g[q] * h[d];
        }
        for (int64_t j = lo; j <= hi; j++) {
            if (j == i || sid[j] != sid[i]) continue;
            const int64_t *rows = sub_flat + sub_off[ids[j]];
            for (int64_t r = 0; r < sub_len[ids[j]]; r++) {
                float *w = W + rows[r] * D;
                for (int64_t d = 0; d < D; d++) w[d] += work[d];
            }
        }
        done++;
    }
    if (loss) *loss = lsum;
    return done;
}
