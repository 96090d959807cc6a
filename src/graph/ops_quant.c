/* Reference quantisation operators: DynamicQuantizeLinear, ConvInteger, MatMulInteger,
 * QuantizeLinear, DequantizeLinear. Rounding is half to even (rintf under the default
 * rounding mode) so that results match ONNX Runtime bit for bit. */
#include "graph/ops_nn.h"

#include <math.h>
#include <string.h>

#define FAIL(a, s, ...) it_node_fail((a)->node, s, __VA_ARGS__)

static int is_q8(int dt) { return dt == IT_U8 || dt == IT_I8; }

/* Element i of an integer tensor of any width we quantise to, as int32. */
static int32_t qget(const it_tensor *t, int64_t i) {
    switch (t->dtype) {
    case IT_U8: return ((const uint8_t *)t->data)[i];
    case IT_I8: return ((const int8_t *)t->data)[i];
    case IT_U16: return ((const uint16_t *)t->data)[i];
    case IT_I16: return ((const int16_t *)t->data)[i];
    case IT_I32: return ((const int32_t *)t->data)[i];
    default: return 0;
    }
}

static void qrange(int dt, float *lo, float *hi) {
    switch (dt) {
    case IT_I8: *lo = -128; *hi = 127; break;
    case IT_U16: *lo = 0; *hi = 65535; break;
    case IT_I16: *lo = -32768; *hi = 32767; break;
    default: *lo = 0; *hi = 255; break;
    }
}

static void qput(void *data, int dt, int64_t i, float v) {
    switch (dt) {
    case IT_U8: ((uint8_t *)data)[i] = (uint8_t)v; break;
    case IT_I8: ((int8_t *)data)[i] = (int8_t)v; break;
    case IT_U16: ((uint16_t *)data)[i] = (uint16_t)v; break;
    case IT_I16: ((int16_t *)data)[i] = (int16_t)v; break;
    default: break;
    }
}

/* ---------------------------------------------------------------------------------
 * DynamicQuantizeLinear
 * --------------------------------------------------------------------------------- */

itscam_status it_shape_dynamicquantizelinear(const it_kernel_args *a) {
    if (a->n_in < 1 || !a->in[0] || a->n_out < 3) return FAIL(a, ITSCAM_ERR_SHAPE, "needs x and three outputs");
    if (a->in[0]->dtype != IT_F32) return FAIL(a, ITSCAM_ERR_UNSUPPORTED, "type %s", it_dtype_name(a->in[0]->dtype));
    it_set_shape(a->out[0], IT_U8, a->in[0]->ndim, a->in[0]->dims);
    it_set_shape(a->out[1], IT_F32, 0, NULL);
    it_set_shape(a->out[2], IT_U8, 0, NULL);
    return ITSCAM_OK;
}

itscam_status it_ref_dynamicquantizelinear(const it_kernel_args *a) {
    const float *x = a->in[0]->data;
    int64_t n = it_tensor_numel(a->in[0]);
    /* The range always includes 0 so that 0 is exactly representable. */
    float lo = 0, hi = 0;
    for (int64_t i = 0; i < n; i++) {
        lo = x[i] < lo ? x[i] : lo;
        hi = x[i] > hi ? x[i] : hi;
    }
    /* As in ONNX Runtime: float arithmetic, the zero point clamped before rounding. */
    float scale = hi == lo ? 1.0f : (hi - lo) / 255.0f;
    float zpf = 0.0f - lo / scale;
    zpf = rintf(fmaxf(0.0f, fminf(255.0f, zpf)));
    uint8_t *y = a->out[0]->data;
    for (int64_t i = 0; i < n; i++) {
        float v = rintf(x[i] / scale) + zpf;
        y[i] = (uint8_t)fmaxf(0.0f, fminf(255.0f, v));
    }
    *(float *)a->out[1]->data = scale;
    *(uint8_t *)a->out[2]->data = (uint8_t)zpf;
    return ITSCAM_OK;
}

/* ---------------------------------------------------------------------------------
 * QuantizeLinear / DequantizeLinear
 * --------------------------------------------------------------------------------- */

/* Per-tensor or per-axis parameters: channel c of element (outer, c, inner). */
typedef struct qaxis {
    int64_t outer, channels, inner;
    int per_axis;
} qaxis;

static itscam_status qaxis_init(const it_kernel_args *a, const it_tensor *x, const it_tensor *scale,
                                const it_tensor *zp, qaxis *q) {
    if (scale->dtype != IT_F32) return FAIL(a, ITSCAM_ERR_UNSUPPORTED, "scale type %s", it_dtype_name(scale->dtype));
    if (it_attr_int(a->node, "block_size", 0)) return FAIL(a, ITSCAM_ERR_UNSUPPORTED, "blocked quantisation");
    int64_t ns = it_tensor_numel(scale);
    if (it_tensor_numel(x) < 0 || ns < 0) return FAIL(a, ITSCAM_ERR_SHAPE, "shapes must be known");
    q->outer = it_tensor_numel(x);
    q->channels = q->inner = 1;
    q->per_axis = 0;
    if (zp && it_tensor_numel(zp) != ns) return FAIL(a, ITSCAM_ERR_SHAPE, "zero point and scale differ in size");
    if (ns == 1 && scale->ndim <= 1) return ITSCAM_OK;
    int64_t axis = it_attr_int(a->node, "axis", 1);
    if (axis < 0) axis += x->ndim;
    if (axis < 0 || axis >= x->ndim) return FAIL(a, ITSCAM_ERR_SHAPE, "axis %lld for rank %d", (long long)axis, x->ndim);
    if (scale->ndim != 1 || scale->dims[0] != x->dims[axis])
        return FAIL(a, ITSCAM_ERR_SHAPE, "scale must be a scalar or [%lld]", (long long)x->dims[axis]);
    q->per_axis = 1;
    q->channels = x->dims[axis];
    q->outer = 1;
    for (int i = 0; i < axis; i++) q->outer *= x->dims[i];
    for (int i = (int)axis + 1; i < x->ndim; i++) q->inner *= x->dims[i];
    return ITSCAM_OK;
}

static int quant_out_type(const it_kernel_args *a, const it_tensor *zp) {
    if (zp) return zp->dtype;
    int64_t odt = it_attr_int(a->node, "output_dtype", 0);
    return odt ? (int)odt : IT_U8;
}

itscam_status it_shape_quantizelinear(const it_kernel_args *a) {
    if (a->n_in < 2 || !a->in[0] || !a->in[1]) return FAIL(a, ITSCAM_ERR_SHAPE, "needs x and y_scale");
    const it_tensor *x = a->in[0], *zp = a->n_in > 2 ? a->in[2] : NULL;
    if (x->dtype != IT_F32) return FAIL(a, ITSCAM_ERR_UNSUPPORTED, "input type %s", it_dtype_name(x->dtype));
    int dt = quant_out_type(a, zp);
    if (!is_q8(dt) && dt != IT_U16 && dt != IT_I16)
        return FAIL(a, ITSCAM_ERR_UNSUPPORTED, "output type %s", it_dtype_name(dt));
    qaxis q;
    itscam_status s = qaxis_init(a, x, a->in[1], zp, &q);
    if (s) return s;
    it_set_shape(a->out[0], dt, x->ndim, x->dims);
    return ITSCAM_OK;
}

itscam_status it_ref_quantizelinear(const it_kernel_args *a) {
    const it_tensor *x = a->in[0], *scale = a->in[1], *zp = a->n_in > 2 ? a->in[2] : NULL;
    qaxis q;
    itscam_status s = qaxis_init(a, x, scale, zp, &q);
    if (s) return s;
    int dt = a->out[0]->dtype;
    float lo, hi;
    qrange(dt, &lo, &hi);
    const float *xp = x->data, *sp = scale->data;
    int64_t i = 0;
    for (int64_t o = 0; o < q.outer; o++)
        for (int64_t c = 0; c < q.channels; c++) {
            float sc = sp[c];
            float z = zp ? (float)qget(zp, c) : 0.0f;
            for (int64_t k = 0; k < q.inner; k++, i++) {
                float v = rintf(xp[i] / sc) + z;
                qput(a->out[0]->data, dt, i, fmaxf(lo, fminf(hi, v)));
            }
        }
    return ITSCAM_OK;
}

itscam_status it_shape_dequantizelinear(const it_kernel_args *a) {
    if (a->n_in < 2 || !a->in[0] || !a->in[1]) return FAIL(a, ITSCAM_ERR_SHAPE, "needs x and x_scale");
    const it_tensor *x = a->in[0], *zp = a->n_in > 2 ? a->in[2] : NULL;
    if (!is_q8(x->dtype) && x->dtype != IT_U16 && x->dtype != IT_I16 && x->dtype != IT_I32)
        return FAIL(a, ITSCAM_ERR_UNSUPPORTED, "input type %s", it_dtype_name(x->dtype));
    if (zp && zp->dtype != x->dtype) return FAIL(a, ITSCAM_ERR_SHAPE, "zero point type differs from x");
    qaxis q;
    itscam_status s = qaxis_init(a, x, a->in[1], zp, &q);
    if (s) return s;
    it_set_shape(a->out[0], IT_F32, x->ndim, x->dims);
    return ITSCAM_OK;
}

itscam_status it_ref_dequantizelinear(const it_kernel_args *a) {
    const it_tensor *x = a->in[0], *scale = a->in[1], *zp = a->n_in > 2 ? a->in[2] : NULL;
    qaxis q;
    itscam_status s = qaxis_init(a, x, scale, zp, &q);
    if (s) return s;
    const float *sp = scale->data;
    float *y = a->out[0]->data;
    int64_t i = 0;
    for (int64_t o = 0; o < q.outer; o++)
        for (int64_t c = 0; c < q.channels; c++) {
            float sc = sp[c];
            int32_t z = zp ? qget(zp, c) : 0;
            for (int64_t k = 0; k < q.inner; k++, i++) y[i] = (float)(qget(x, i) - z) * sc;
        }
    return ITSCAM_OK;
}

/* ---------------------------------------------------------------------------------
 * ConvInteger
 * --------------------------------------------------------------------------------- */

/* Validates ConvInteger's inputs and computes its geometry. */
static itscam_status convint_setup(const it_kernel_args *a, it_conv_geom *g) {
    if (a->n_in < 2 || !a->in[0] || !a->in[1]) return FAIL(a, ITSCAM_ERR_SHAPE, "needs x and w");
    const it_tensor *x = a->in[0], *w = a->in[1];
    const it_tensor *xz = a->n_in > 2 ? a->in[2] : NULL, *wz = a->n_in > 3 ? a->in[3] : NULL;
    if (!is_q8(x->dtype) || !is_q8(w->dtype))
        return FAIL(a, ITSCAM_ERR_UNSUPPORTED, "types %s and %s", it_dtype_name(x->dtype), it_dtype_name(w->dtype));
    itscam_status s = it_conv_geom_init(a->node, x, w, g);
    if (s) return s;
    if (xz && (xz->dtype != x->dtype || it_tensor_numel(xz) != 1))
        return FAIL(a, ITSCAM_ERR_UNSUPPORTED, "x_zero_point must be a scalar of x's type");
    if (wz && (wz->dtype != w->dtype || (it_tensor_numel(wz) != 1 && it_tensor_numel(wz) != g->m)))
        return FAIL(a, ITSCAM_ERR_UNSUPPORTED, "w_zero_point must be a scalar or one per output channel");
    return ITSCAM_OK;
}

itscam_status it_shape_convinteger(const it_kernel_args *a) {
    it_conv_geom g;
    itscam_status s = convint_setup(a, &g);
    if (s) return s;
    int64_t dims[4] = {g.n, g.m, g.win.out[0], g.win.out[1]};
    if (g.win.nsp == 1) dims[2] = g.win.out[1];
    it_set_shape(a->out[0], IT_I32, 2 + g.win.nsp, dims);
    return ITSCAM_OK;
}

size_t it_scratch_convinteger(const it_kernel_args *a) {
    it_conv_geom g;
    if (convint_setup(a, &g)) return 0;
    const it_window *w = &g.win;
    /* Always an im2col copy: it is where the x zero point is subtracted. */
    return (size_t)(g.c / g.group * w->k[0] * w->k[1] * w->out[0] * w->out[1]) * sizeof(int32_t);
}

/* im2col of x - zp into int32; padding is the zero point, i.e. 0 after subtraction. */
#define IM2COL_Q(T)                                                                           \
    do {                                                                                      \
        const T *xs = (const T *)x;                                                           \
        for (int64_t c = 0; c < channels; c++) {                                              \
            const T *xc = xs + c * h * wd;                                                    \
            for (int64_t ki = 0; ki < w->k[0]; ki++)                                          \
                for (int64_t kj = 0; kj < w->k[1]; kj++) {                                    \
                    int32_t *row = col + ((c * w->k[0] + ki) * w->k[1] + kj) * oh * ow;       \
                    for (int64_t oy = 0; oy < oh; oy++) {                                     \
                        int32_t *r = row + oy * ow;                                           \
                        int64_t iy = oy * w->s[0] - w->p0[0] + ki * w->d[0];                  \
                        if (iy < 0 || iy >= h) {                                              \
                            memset(r, 0, (size_t)ow * sizeof(int32_t));                       \
                            continue;                                                         \
                        }                                                                     \
                        const T *xr = xc + iy * wd;                                           \
                        for (int64_t ox = 0; ox < ow; ox++) {                                 \
                            int64_t ix = ox * w->s[1] - w->p0[1] + kj * w->d[1];              \
                            r[ox] = ix >= 0 && ix < wd ? (int32_t)xr[ix] - zp : 0;            \
                        }                                                                     \
                    }                                                                         \
                }                                                                             \
        }                                                                                     \
    } while (0)

static void im2col_q(const void *x, int is_signed, int32_t zp, int64_t channels, const it_window *w,
                     int32_t *col) {
    const int64_t h = w->in[0], wd = w->in[1], oh = w->out[0], ow = w->out[1];
    if (is_signed) IM2COL_Q(int8_t);
    else IM2COL_Q(uint8_t);
}

itscam_status it_ref_convinteger(const it_kernel_args *a) {
    it_conv_geom g;
    itscam_status s = convint_setup(a, &g);
    if (s) return s;
    if (!a->scratch) return FAIL(a, ITSCAM_ERR_INTERNAL, "no scratch for im2col");
    const it_tensor *x = a->in[0], *w = a->in[1];
    const it_tensor *xz = a->n_in > 2 ? a->in[2] : NULL, *wz = a->n_in > 3 ? a->in[3] : NULL;
    const it_window *win = &g.win;
    const int64_t cg = g.c / g.group, mg = g.m / g.group;
    const int64_t kk = cg * win->k[0] * win->k[1], hw = win->in[0] * win->in[1];
    const int64_t npix = win->out[0] * win->out[1];
    const int32_t xzp = xz ? qget(xz, 0) : 0;
    const int xs = x->dtype == IT_I8;
    int32_t *col = a->scratch, *y = a->out[0]->data;
    /* Integer GEMM in the float GEMM's order (ops_nn.c): i-k-j over column blocks, the
     * weight zero point subtracted as each weight is read. */
    int64_t nb = kk > 0 ? 32768 / kk : npix;
    nb = IT_MAX(64, nb & ~(int64_t)15);
    for (int64_t n = 0; n < g.n; n++)
        for (int64_t gi = 0; gi < g.group; gi++) {
            im2col_q((const uint8_t *)x->data + (n * g.c + gi * cg) * hw, xs, xzp, cg, win, col);
            for (int64_t j0 = 0; j0 < npix; j0 += nb) {
                int64_t j1 = IT_MIN(npix, j0 + nb);
                for (int64_t i = 0; i < mg; i++) {
                    int64_t oc = gi * mg + i;
                    int32_t wzp = wz ? qget(wz, it_tensor_numel(wz) == 1 ? 0 : oc) : 0;
                    int32_t *restrict yrow = y + (n * g.m + oc) * npix;
                    for (int64_t j = j0; j < j1; j++) yrow[j] = 0;
                    for (int64_t p = 0; p < kk; p++) {
                        const int32_t wv = qget(w, oc * kk + p) - wzp;
                        const int32_t *restrict cp = col + p * npix;
                        for (int64_t j = j0; j < j1; j++) yrow[j] += wv * cp[j];
                    }
                }
            }
        }
    return ITSCAM_OK;
}

/* ---------------------------------------------------------------------------------
 * MatMulInteger
 * --------------------------------------------------------------------------------- */

static itscam_status mmint_setup(const it_kernel_args *a, it_matmul_geom *g) {
    if (a->n_in < 2 || !a->in[0] || !a->in[1]) return FAIL(a, ITSCAM_ERR_SHAPE, "needs A and B");
    const it_tensor *ta = a->in[0], *tb = a->in[1];
    const it_tensor *az = a->n_in > 2 ? a->in[2] : NULL, *bz = a->n_in > 3 ? a->in[3] : NULL;
    if (!is_q8(ta->dtype) || !is_q8(tb->dtype))
        return FAIL(a, ITSCAM_ERR_UNSUPPORTED, "types %s and %s", it_dtype_name(ta->dtype), it_dtype_name(tb->dtype));
    itscam_status s = it_matmul_geom_init(a->node, ta, tb, g);
    if (s) return s;
    /* Scalar, or one per row of A / per column of B (1-D). */
    if (az && (az->dtype != ta->dtype || (it_tensor_numel(az) != 1 && !(az->ndim == 1 && az->dims[0] == g->m))))
        return FAIL(a, ITSCAM_ERR_UNSUPPORTED, "a_zero_point must be a scalar or [M]");
    if (bz && (bz->dtype != tb->dtype || (it_tensor_numel(bz) != 1 && !(bz->ndim == 1 && bz->dims[0] == g->n))))
        return FAIL(a, ITSCAM_ERR_UNSUPPORTED, "b_zero_point must be a scalar or [N]");
    return ITSCAM_OK;
}

itscam_status it_shape_matmulinteger(const it_kernel_args *a) {
    it_matmul_geom g;
    itscam_status s = mmint_setup(a, &g);
    if (s) return s;
    it_set_shape(a->out[0], IT_I32, g.ndim, g.dims);
    return ITSCAM_OK;
}

itscam_status it_ref_matmulinteger(const it_kernel_args *a) {
    it_matmul_geom g;
    itscam_status s = mmint_setup(a, &g);
    if (s) return s;
    const it_tensor *ta = a->in[0], *tb = a->in[1];
    const it_tensor *az = a->n_in > 2 ? a->in[2] : NULL, *bz = a->n_in > 3 ? a->in[3] : NULL;
    int a_row = az && it_tensor_numel(az) > 1, b_col = bz && it_tensor_numel(bz) > 1;
    int32_t *y = a->out[0]->data;
    for (int64_t bi = 0; bi < g.batch; bi++) {
        int64_t ia, ib;
        it_matmul_batch(&g, bi, &ia, &ib);
        int64_t a0 = ia * g.m * g.k, b0 = ib * g.k * g.n;
        int32_t *yb = y + bi * g.m * g.n;
        for (int64_t i = 0; i < g.m; i++) {
            int32_t azp = az ? qget(az, a_row ? i : 0) : 0;
            int32_t *yr = yb + i * g.n;
            for (int64_t j = 0; j < g.n; j++) yr[j] = 0;
            for (int64_t p = 0; p < g.k; p++) {
                int32_t av = qget(ta, a0 + i * g.k + p) - azp;
                for (int64_t j = 0; j < g.n; j++) {
                    int32_t bzp = bz ? qget(bz, b_col ? j : 0) : 0;
                    yr[j] += av * (qget(tb, b0 + p * g.n + j) - bzp);
                }
            }
        }
    }
    return ITSCAM_OK;
}
