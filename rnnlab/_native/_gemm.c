/* A small float32 GEMM with a packed right-hand side, for the products a recurrent layer repeats with
 * the same matrix: the per-step h_{t-1} W_h (forward) and dA_t W_h^T (backward) of every time step, and
 * the weight gradients X^T dA, H^T dA that share one dA. Used by rnnlab/layers/recurrent.py through
 * rnnlab._native.PackedMatrix when the CPU has AVX-512 (checked at run time); elsewhere NumPy's BLAS runs.
 *
 * Why: a BLAS call packs its operands on every call. For the per-step products (batch 8-128 rows) that
 * packing, repeated T times per sequence for the same W_h, is a large part of the call: OpenBLAS ran
 * (32, 128) @ (128, 512) at 55-80 GFLOP/s on the benchmark machine, this kernel with W_h packed once per
 * forward call at ~100 (benchmarks/gemm_shapes.py measures both).
 *
 *   C (M x N) = A (M x K) @ B (K x N)          (beta = 0)
 *   C        += A @ B                          (beta = 1)
 *
 * A is read through two strides (element (i, k) at A[i * rsa + k * csa]), so X^T (rsa = 1, csa = ld) needs
 * no copy. B is packed once by rnnlab_pack_f32 into panels of NR = 64 columns: panel p holds rows 0..K-1
 * of columns 64p..64p+63, each row 64 consecutive floats (columns past N are zeros). C has row stride ldc.
 *
 * The micro-kernel keeps a 6 x 64 block of C in 24 AVX-512 registers; each step k broadcasts A(i, k) for
 * the 6 rows and does 24 FMAs with the 4 registers of packed B row k. K is split into chunks of KC = 256
 * so that a panel's chunk (64 KB) stays near the core while all row blocks of C run over it. A packed B larger
 * than 1 MB (the large config's 4 MB W_h: not in L2 from one call to the next) is prefetched one chunk ahead,
 * a share of its lines before each row block, so that a chunk's first row block does not wait on L3 / memory.
 * Summation order: for each C element, k ascending within a chunk, one FMA each; chunks add to C in order.
 * This differs from the BLAS's order, so results agree with NumPy to float32 rounding (~1e-7 relative
 * per product), not bit for bit; tests/test_native_gemm.py checks the error against a float64 bound.
 */
#include <stdint.h>
#include <string.h>

#define NR 64
#define MR 6
#define KC 256

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define RNNLAB_HAVE_X86 1
#endif

/* Elements of the packed copy of a K x N matrix. */
int64_t rnnlab_packed_size(int64_t K, int64_t N) {
    return K * ((N + NR - 1) / NR) * NR;
}

/* The transposed case of rnnlab_pack_f32 (rsb == 1: B is the transpose of a row-major matrix, as W^T), in
 * blocks of 16 k: each source row's 16 consecutive floats (one cache line) go to column c of 16 packed rows.
 * The plain loop below reads B's column k from 64 rows 4 * csb bytes apart at every k, which maps them onto a
 * few L1 sets (a 512 x 128 W_h^T: 139 us here, this one ~15-20 us). Same values. */
static void pack_transposed(const float *B, int64_t csb, float *Bp, int64_t K, int64_t N) {
    for (int64_t j = 0; j < N; j += NR) {
        int64_t w = N - j < NR ? N - j : NR;
        float *P = Bp + (j / NR) * K * NR;
        for (int64_t k0 = 0; k0 < K; k0 += 16) {
            int64_t kn = K - k0 < 16 ? K - k0 : 16;
            for (int64_t c = 0; c < NR; c++) {
                const float *src = B + (j + c) * csb + k0;
                float *dst = P + k0 * NR + c;
                if (c < w)
                    for (int64_t kk = 0; kk < kn; kk++) dst[kk * NR] = src[kk];
                else
                    for (int64_t kk = 0; kk < kn; kk++) dst[kk * NR] = 0.0f;
            }
        }
    }
}

/* Pack B (K x N, element (k, j) at B[k * rsb + j * csb]) into Bp (rnnlab_packed_size(K, N) floats).
 * With unit column stride, rows of Bp that already hold the same bytes (a buffer packed from the same,
 * unchanged weights by an earlier call) are compared, not rewritten: no line fills or write-backs for
 * them (see pack_panels in _cells.c); a changed row costs one memcmp more, usually stopped at its first
 * element. */
void rnnlab_pack_f32(const float *B, int64_t rsb, int64_t csb, float *Bp, int64_t K, int64_t N) {
    if (rsb == 1 && csb != 1) {
        pack_transposed(B, csb, Bp, K, N);
        return;
    }
    for (int64_t j = 0; j < N; j += NR) {
        int64_t w = N - j < NR ? N - j : NR;
        for (int64_t k = 0; k < K; k++) {
            const float *src = B + k * rsb + j * csb;
            if (csb == 1) {
                if (memcmp(Bp, src, (size_t)w * sizeof(float)) != 0) memcpy(Bp, src, (size_t)w * sizeof(float));
            } else
                for (int64_t c = 0; c < w; c++) Bp[c] = src[c * csb];
            for (int64_t c = w; c < NR; c++) Bp[c] = 0.0f;
            Bp += NR;
        }
    }
}

/* Packed B of more than this many floats (default 1 MB: half this machine's L2) is prefetched chunk by chunk
 * (gemm_avx512); rnnlab_gemm_prefetch_min sets it (tests/test_native_gemm.py compares on and off). */
static int64_t prefetch_min_floats = 1 << 18;

int64_t rnnlab_gemm_prefetch_min(int64_t floats) {
    int64_t old = prefetch_min_floats;
    if (floats >= 0) prefetch_min_floats = floats;
    return old;
}

#ifdef RNNLAB_HAVE_X86
/* One block of mr rows (a constant in each instance) x 64 columns, k = 0..kc-1 of a chunk; mk masks the
 * columns of the last panel (all ones elsewhere). acc: add the block to C (else overwrite). */
#define RNNLAB_DEF_KERNEL(R)                                                                              \
    __attribute__((target("avx512f,fma"))) static void kernel_##R(                                      \
        const float *A, int64_t rsa, int64_t csa, const float *Bp, float *C, int64_t ldc, int64_t kc,    \
        int acc, const __mmask16 *mk) {                                                                   \
        __m512 c[R][4];                                                                                   \
        const float *a[R];                                                                                \
        for (int i = 0; i < R; i++) {                                                                     \
            a[i] = A + i * rsa;                                                                           \
            for (int q = 0; q < 4; q++) c[i][q] = _mm512_setzero_ps();                                    \
        }                                                                                                 \
        for (int64_t k = 0; k < kc; k++) {                                                                \
            __m512 b0 = _mm512_loadu_ps(Bp), b1 = _mm512_loadu_ps(Bp + 16);                               \
            __m512 b2 = _mm512_loadu_ps(Bp + 32), b3 = _mm512_loadu_ps(Bp + 48);                          \
            Bp += NR;                                                                                     \
            for (int i = 0; i < R; i++) {                                                                 \
                __m512 av = _mm512_set1_ps(*a[i]);                                                        \
                a[i] += csa;                                                                              \
                c[i][0] = _mm512_fmadd_ps(av, b0, c[i][0]);                                               \
                c[i][1] = _mm512_fmadd_ps(av, b1, c[i][1]);                                               \
                c[i][2] = _mm512_fmadd_ps(av, b2, c[i][2]);                                               \
                c[i][3] = _mm512_fmadd_ps(av, b3, c[i][3]);                                               \
            }                                                                                             \
        }                                                                                                 \
        for (int i = 0; i < R; i++)                                                                       \
            for (int q = 0; q < 4; q++) {                                                                 \
                float *p = C + i * ldc + 16 * q;                                                          \
                if (acc) c[i][q] = _mm512_add_ps(c[i][q], _mm512_maskz_loadu_ps(mk[q], p));               \
                _mm512_mask_storeu_ps(p, mk[q], c[i][q]);                                                 \
            }                                                                                             \
    }
RNNLAB_DEF_KERNEL(1)
RNNLAB_DEF_KERNEL(2)
RNNLAB_DEF_KERNEL(3)
RNNLAB_DEF_KERNEL(4)
RNNLAB_DEF_KERNEL(5)
RNNLAB_DEF_KERNEL(6)

typedef void (*rnnlab_kernel_t)(const float *, int64_t, int64_t, const float *, float *, int64_t, int64_t, int,
                                const __mmask16 *);
static const rnnlab_kernel_t KERNELS[MR + 1] = {0, kernel_1, kernel_2, kernel_3, kernel_4, kernel_5, kernel_6};

/* Rows of A (and C) per block of the outermost loop: a block's KC-chunk of A (MC x KC floats, 384 KB) stays in
 * L2 while every panel of B runs over it, instead of all M rows streaming from L3 once per panel (the 10240-row
 * projections of the large config, the 2560-5120-row ones of imdb and char). rnnlab_gemm_mc sets it (tests). Each
 * C element's sum is the same whatever the blocking: k ascending within a KC chunk, chunks added in order. */
static int64_t gemm_mc = 384;

int64_t rnnlab_gemm_mc(int64_t rows) {
    int64_t old = gemm_mc;
    if (rows > 0) gemm_mc = rows;
    return old;
}

__attribute__((target("avx512f,fma"))) static void gemm_block(const float *A, int64_t rsa, int64_t csa,
                                                              const float *Bp, float *C, int64_t ldc,
                                                              int64_t M, int64_t K, int64_t N, int beta);

__attribute__((target("avx512f,fma"))) static void gemm_avx512(const float *A, int64_t rsa, int64_t csa,
                                                               const float *Bp, float *C, int64_t ldc,
                                                               int64_t M, int64_t K, int64_t N, int beta) {
    int64_t mc = gemm_mc;
    for (int64_t m0 = 0; m0 < M; m0 += mc)
        gemm_block(A + m0 * rsa, rsa, csa, Bp, C + m0 * ldc, ldc, M - m0 < mc ? M - m0 : mc, K, N, beta);
}

__attribute__((target("avx512f,fma"))) static void gemm_block(const float *A, int64_t rsa, int64_t csa,
                                                              const float *Bp, float *C, int64_t ldc,
                                                              int64_t M, int64_t K, int64_t N, int beta) {
    for (int64_t k0 = 0; k0 < K; k0 += KC) {
        int64_t kc = K - k0 < KC ? K - k0 : KC;
        int acc = beta || k0 > 0;
        for (int64_t j = 0; j < N; j += NR) {
            int64_t w = N - j < NR ? N - j : NR;
            __mmask16 mk[4];
            for (int q = 0; q < 4; q++) {
                int64_t n = w - 16 * q;
                n = n < 0 ? 0 : (n > 16 ? 16 : n);
                mk[q] = (__mmask16)((1u << n) - 1u);
            }
            const float *bp = Bp + j * K + k0 * NR;
            const float *a0 = A + k0 * csa;
            /* B larger than the prefetch threshold: the chunk after this one (the next panel's, or the next K
             * chunk's first panel) is prefetched into L2 a share per row block, so that its first row block does
             * not wait on L3 / memory (B is then read from there at every call). Arithmetic unchanged. */
            const float *nx = NULL;
            int64_t lines = 0, done = 0, per = 0;
            if (K * N > prefetch_min_floats) {
                int64_t nkc = kc;
                if (j + NR < N) nx = Bp + (j + NR) * K + k0 * NR;
                else if (k0 + KC < K) {
                    nx = Bp + (k0 + KC) * NR;
                    nkc = K - k0 - KC < KC ? K - k0 - KC : KC;
                }
                int64_t nblk = M > MR ? (M + MR - 1) / MR : 1;
                lines = nx ? nkc * (NR / 16) : 0;   /* 64-byte lines: 16 floats */
                per = (lines + nblk - 1) / nblk;
            }
            int64_t i = 0;
            for (; i + MR <= M; i += MR) {
                for (int64_t l = 0; l < per && done < lines; l++, done++)
                    _mm_prefetch((const char *)(nx + done * 16), _MM_HINT_T1);
                kernel_6(a0 + i * rsa, rsa, csa, bp, C + i * ldc + j, ldc, kc, acc, mk);
            }
            for (; done < lines; done++) _mm_prefetch((const char *)(nx + done * 16), _MM_HINT_T1);
            if (i < M) KERNELS[M - i](a0 + i * rsa, rsa, csa, bp, C + i * ldc + j, ldc, kc, acc, mk);
        }
    }
    if (K == 0 && !beta)
        for (int64_t i = 0; i < M; i++) memset(C + i * ldc, 0, (size_t)N * sizeof(float));
}
#endif

/* 1 when rnnlab_gemm_packed_f32 runs on this CPU (AVX-512F), else 0 (the caller uses its BLAS). */
int rnnlab_gemm_isa(void) {
#ifdef RNNLAB_HAVE_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") ? 1 : 0;
#else
    return 0;
#endif
}

/* C = A @ B (beta 0) or C += A @ B (beta 1), Bp = rnnlab_pack_f32(B). The output comes last so that a caller
 * can bind every other argument once. Returns 1, or 0 (nothing done) without AVX-512. */
int rnnlab_gemm_packed_f32(const float *A, int64_t rsa, int64_t csa, const float *Bp, int64_t ldc, int64_t M,
                           int64_t K, int64_t N, int64_t beta, float *C) {
#ifdef RNNLAB_HAVE_X86
    static int isa = -1;
    if (isa < 0) isa = rnnlab_gemm_isa();
    if (isa) {
        gemm_avx512(A, rsa, csa, Bp, C, ldc, M, K, N, beta != 0);
        return 1;
    }
#endif
    (void)A; (void)rsa; (void)csa; (void)Bp; (void)ldc; (void)M; (void)K; (void)N; (void)beta; (void)C;
    return 0;
}
