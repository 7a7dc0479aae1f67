/* The vector rows of _cells.c, written once for any vector width: _cells.c includes this file twice, once with
 * the AVX2 macros (8 lanes) and once with the AVX-512 ones (16 lanes). Both instances do the same operations in
 * the same order, so they give the same bits (tests/test_native_cells.py and test_native_train.py check it).
 *
 * The includer defines:
 *   VFN(name)     name ## width suffix (lstm_row_ -> lstm_row_avx2)
 *   VTARGET       the function attribute enabling the instruction set
 *   VT, VN        the vector type and its number of float lanes
 *   VLOAD, VSTORE, VSET1, VADD, VSUB, VMUL, VDIV, VMIN, VFMADD(a, b, c) = a b + c, VFNMADD(a, b, c) = c - a b,
 *   VROUND (to nearest), VABS, VSIGNBIT (x with all but the sign bit cleared), VOR,
 *   VPOW2I(n)     2^n for integral n (through the exponent bits),
 *   VSEL_NAN(x, t)           x where x is NaN, else t,
 *   VSEL_LT(a, b, yes, no)   yes where a < b, else no;
 * and the recurrent product VFN(matvec_)(out, init, Wp, h, U, W) on pack_panels(Wh). This file #undefs the
 * macros at its end, ready for the next width.
 * Every row needs U to be a multiple of VN (the gate boundaries on vector boundaries).
 */

/* tanh with the approximation of _cells.c's header (the scalar rnnlab_tanh_approx, branch-free) */
VTARGET static inline VT VFN(vtanh_)(VT x) {
    VT ax = VABS(x), sgn = VSIGNBIT(x);
    /* small branch: x + x z P(z) */
    VT z = VMUL(x, x);
    VT p = VFMADD(VSET1(TH_P0), z, VSET1(TH_P1));
    p = VFMADD(p, z, VSET1(TH_P2));
    p = VFMADD(p, z, VSET1(TH_P3));
    p = VFMADD(p, z, VSET1(TH_P4));
    VT small = VFMADD(VMUL(x, z), p, x);
    /* large branch: 1 - 2 / (exp(2|x|) + 1); min(C, ax) returns ax when ax is NaN */
    VT cl = VMIN(VSET1(TH_CLAMP), ax);
    VT y = VADD(cl, cl);
    VT n = VROUND(VMUL(y, VSET1(EX_LOG2E)));
    VT r = VFNMADD(n, VSET1(EX_C1), y);
    r = VFNMADD(n, VSET1(EX_C2), r);
    VT q = VFMADD(VSET1(EX_Q0), r, VSET1(EX_Q1));
    q = VFMADD(q, r, VSET1(EX_Q2));
    q = VFMADD(q, r, VSET1(EX_Q3));
    q = VFMADD(q, r, VSET1(EX_Q4));
    q = VFMADD(q, r, VSET1(EX_Q5));
    VT e = VFMADD(VMUL(q, r), r, VADD(r, VSET1(1.0f)));
    e = VMUL(e, VPOW2I(n));
    VT t = VSUB(VSET1(1.0f), VDIV(VSET1(2.0f), VADD(e, VSET1(1.0f))));
    t = VOR(t, sgn);
    t = VSEL_NAN(x, t);  /* NaN: the large branch gives garbage, keep x */
    return VSEL_LT(ax, VSET1(TH_SMALL), small, t);
}

/* y[0:n] = tanh(x[0:n]), any n */
VTARGET static void VFN(tanh_)(const float *x, float *y, int64_t n) {
    int64_t j = 0;
    for (; j + VN <= n; j += VN) VSTORE(y + j, VFN(vtanh_)(VLOAD(x + j)));
    if (j < n) {
        float buf[VN] = {0};
        memcpy(buf, x + j, (size_t)(n - j) * sizeof(float));
        VSTORE(buf, VFN(vtanh_)(VLOAD(buf)));
        memcpy(y + j, buf, (size_t)(n - j) * sizeof(float));
    }
}

/* ------------------------------------------------------------------ inference rows (the loops of _cells.c) */

/* the LSTM state update from the gate activations a = [i, f, g, o]: c_new = f c_old + i g, tc = tanh(c_new),
 * h_new = o tc (both the inference and the training rows) */
VTARGET static inline void VFN(lstm_state_)(const float *a, const float *c_old, float *c_new, float *tc,
                                            float *h_new, int64_t U) {
    const float *i = a, *f = a + U, *g = a + 2 * U, *o = a + 3 * U;
    for (int64_t j = 0; j < U; j += VN) {
        VT c = VADD(VMUL(VLOAD(f + j), VLOAD(c_old + j)), VMUL(VLOAD(i + j), VLOAD(g + j)));
        VSTORE(c_new + j, c);
        VT t = VFN(vtanh_)(c);
        VSTORE(tc + j, t);
        VSTORE(h_new + j, VMUL(VLOAD(o + j), t));
    }
}


/* one LSTM step for one batch row (as lstm_row_generic); Wp = pack_panels(Wh) */
VTARGET static void VFN(lstm_row_)(float *a, const float *bias, const float *Wp, const float *h_old,
                                   const float *c_old, float *c_new, float *tc, float *h_new, int64_t U,
                                   int prescaled) {
    int64_t W = 4 * U;
    if (bias)  /* a + b first, as NumPy's A += b */
        for (int64_t j = 0; j < W; j += VN) VSTORE(a + j, VADD(VLOAD(a + j), VLOAD(bias + j)));
    VFN(matvec_)(a, a, Wp, h_old, U, W);
    const VT half = VSET1(0.5f);
    for (int64_t j = 0; j < W; j += VN) {
        VT v = VLOAD(a + j);
        int sig = j < 2 * U || j >= 3 * U;
        if (sig && !prescaled) v = VMUL(v, half);  /* exact: x/2 for sigmoid(x) = 1/2 + tanh(x/2)/2 */
        v = VFN(vtanh_)(v);
        if (sig) v = VADD(VMUL(v, half), half);
        VSTORE(a + j, v);
    }
    VFN(lstm_state_)(a, c_old, c_new, tc, h_new, U);
}

/* one SimpleRNN (tanh) step for one batch row (as rnn_row_generic); Wp = pack_panels(Wh) */
VTARGET static void VFN(rnn_row_)(float *a, const float *bias, const float *Wp, const float *h_old, float *h_new,
                                  int64_t U) {
    if (bias)  /* a + b first, as NumPy's A += b */
        for (int64_t j = 0; j < U; j += VN) VSTORE(a + j, VADD(VLOAD(a + j), VLOAD(bias + j)));
    VFN(matvec_)(a, a, Wp, h_old, U, U);
    VFN(tanh_)(a, h_new, U);
}

/* ------------------------------------------------------------------ training-step rows (elementwise part) */

/* as lstm_fwd_row_generic */
VTARGET static void VFN(lstm_fwd_row_)(float *a, const float *r, const float *c_old, float *c_new, float *tc,
                                       float *h_new, const float *bias, int64_t U) {
    int64_t W = 4 * U;
    const VT half = VSET1(0.5f);
    for (int64_t j = 0; j < W; j += VN) {
        VT av = VLOAD(a + j);
        if (bias) av = VADD(av, VLOAD(bias + j));
        VT v = VFN(vtanh_)(VADD(av, VLOAD(r + j)));
        if (j < 2 * U || j >= 3 * U) v = VADD(VMUL(v, half), half);
        VSTORE(a + j, v);
    }
    VFN(lstm_state_)(a, c_old, c_new, tc, h_new, U);
}

/* as gru_fwd_row_generic */
VTARGET static void VFN(gru_fwd_row_)(float *a, float *q, const float *bx, const float *bh, const float *h_old,
                                      float *h_new, int64_t U) {
    const VT half = VSET1(0.5f);
    for (int64_t j = 0; j < 2 * U; j += VN) {  /* z, r */
        VT qv = VLOAD(q + j), av = VLOAD(a + j);
        if (bx) av = VADD(av, VLOAD(bx + j));
        if (bh) {
            qv = VADD(qv, VLOAD(bh + j));
            VSTORE(q + j, qv);
        }
        VT v = VFN(vtanh_)(VADD(av, qv));
        VSTORE(a + j, VADD(VMUL(v, half), half));
    }
    for (int64_t j = 0; j < U; j += VN) {  /* hh = tanh(p_h + r q_h), h_t = (h_{t-1} - hh) z + hh */
        float *hp = a + 2 * U + j, *qp = q + 2 * U + j;
        VT qv = VLOAD(qp), av = VLOAD(hp);
        if (bx) av = VADD(av, VLOAD(bx + 2 * U + j));
        if (bh) {
            qv = VADD(qv, VLOAD(bh + 2 * U + j));
            VSTORE(qp, qv);
        }
        VT hh = VFN(vtanh_)(VADD(av, VMUL(VLOAD(a + U + j), qv)));
        VSTORE(hp, hh);
        VT d = VSUB(VLOAD(h_old + j), hh);
        VSTORE(h_new + j, VADD(VMUL(d, VLOAD(a + j)), hh));
    }
}

/* one GRU (reset_after=True) step for one batch row (as gru_row_generic); Wp = pack_panels(Wh). The gate math
 * is the training row's; unless prescaled, the z, r sums are first halved here (exact) after their biases */
VTARGET static void VFN(gru_row_)(float *a, const float *bx, const float *bh, const float *Wp, const float *h_old,
                                  float *h_new, float *q, int64_t U, int prescaled) {
    VFN(matvec_)(q, NULL, Wp, h_old, U, 3 * U);
    if (prescaled) {
        VFN(gru_fwd_row_)(a, q, bx, bh, h_old, h_new, U);
        return;
    }
    const VT half = VSET1(0.5f);
    for (int64_t j = 0; j < 3 * U; j += VN) {
        VT av = VLOAD(a + j), qv = VLOAD(q + j);
        if (bx) av = VADD(av, VLOAD(bx + j));
        if (bh) qv = VADD(qv, VLOAD(bh + j));
        if (j < 2 * U) {
            av = VMUL(av, half);
            qv = VMUL(qv, half);
        }
        VSTORE(a + j, av);
        VSTORE(q + j, qv);
    }
    VFN(gru_fwd_row_)(a, q, NULL, NULL, h_old, h_new, U);
}

/* the backward rows: the portable bodies, compiled for this instruction set (the vectoriser does the rest;
 * -ffp-contract=off keeps them free of FMA, so bit-identical to NumPy) */
VTARGET static void VFN(lstm_bwd_row_)(const float *dh, const float *dc, const float *a, const float *c_old,
                                       const float *tc, float *da, float *dc_prev, int64_t U)
LSTM_BWD_ROW_BODY

VTARGET static void VFN(gru_bwd_row_)(const float *dh, const float *a, const float *h_old, float *q, float *da,
                                      float *dh_prev, int64_t U)
GRU_BWD_ROW_BODY

#undef VFN
#undef VTARGET
#undef VT
#undef VN
#undef VLOAD
#undef VSTORE
#undef VSET1
#undef VADD
#undef VSUB
#undef VMUL
#undef VDIV
#undef VMIN
#undef VOR
#undef VFMADD
#undef VFNMADD
#undef VROUND
#undef VABS
#undef VSIGNBIT
#undef VPOW2I
#undef VSEL_NAN
#undef VSEL_LT
