/* Reference Conv, MaxPool, Resize and MatMul: shape inference and portable C kernels. */
#include "graph/ops_nn.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

itscam_status it_node_fail(const it_node *n, itscam_status s, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return it_err(s, "node '%s' (%s): %s", it_node_label(n), n->op_type, msg);
}

#define FAIL(a, s, ...) it_node_fail((a)->node, s, __VA_ARGS__)

static int known_dims(const it_tensor *t) {
    return t->ndim >= 0 && it_tensor_numel(t) >= 0;
}

/* ---------------------------------------------------------------------------------
 * Window geometry
 * --------------------------------------------------------------------------------- */

itscam_status it_window_init(const it_node *node, it_window *w, int nsp, const int64_t *in,
                             const int64_t *k, int ceil_mode) {
    const int64_t *v;
    int off = 2 - nsp;
    for (int i = 0; i < 2; i++) {
        w->in[i] = w->k[i] = w->s[i] = w->d[i] = 1;
        w->p0[i] = w->p1[i] = w->out[i] = 0;
    }
    w->nsp = nsp;
    for (int i = 0; i < nsp; i++) {
        w->in[off + i] = in[i];
        w->k[off + i] = k[i];
        if (k[i] < 1) return it_node_fail(node, ITSCAM_ERR_SHAPE, "kernel size %lld", (long long)k[i]);
    }
    int n = it_attr_ints(node, "strides", &v);
    if (n && n != nsp) return it_node_fail(node, ITSCAM_ERR_SHAPE, "%d strides for %d spatial axes", n, nsp);
    for (int i = 0; i < n; i++) {
        if (v[i] < 1) return it_node_fail(node, ITSCAM_ERR_SHAPE, "stride %lld", (long long)v[i]);
        w->s[off + i] = v[i];
    }
    n = it_attr_ints(node, "dilations", &v);
    if (n && n != nsp) return it_node_fail(node, ITSCAM_ERR_SHAPE, "%d dilations for %d spatial axes", n, nsp);
    for (int i = 0; i < n; i++) {
        if (v[i] < 1) return it_node_fail(node, ITSCAM_ERR_SHAPE, "dilation %lld", (long long)v[i]);
        w->d[off + i] = v[i];
    }
    n = it_attr_ints(node, "pads", &v);
    if (n && n != 2 * nsp) return it_node_fail(node, ITSCAM_ERR_SHAPE, "%d pads for %d spatial axes", n, nsp);
    for (int i = 0; i < n / 2; i++) {
        if (v[i] < 0 || v[nsp + i] < 0) return it_node_fail(node, ITSCAM_ERR_UNSUPPORTED, "negative pads");
        w->p0[off + i] = v[i];
        w->p1[off + i] = v[nsp + i];
    }
    const char *ap = it_attr_str(node, "auto_pad", "NOTSET");
    int same_upper = !strcmp(ap, "SAME_UPPER"), same_lower = !strcmp(ap, "SAME_LOWER");
    int valid = !strcmp(ap, "VALID");
    if (!same_upper && !same_lower && !valid && strcmp(ap, "NOTSET") && *ap)
        return it_node_fail(node, ITSCAM_ERR_UNSUPPORTED, "auto_pad '%s'", ap);
    for (int i = 0; i < 2; i++) {
        int64_t ek = (w->k[i] - 1) * w->d[i] + 1;   /* the dilated window's extent */
        if (same_upper || same_lower) {
            /* Output covers ceil(in/stride) positions; the padding that needs is split
             * evenly, the odd pixel going after (UPPER) or before (LOWER). */
            w->out[i] = (w->in[i] + w->s[i] - 1) / w->s[i];
            int64_t total = IT_MAX(0, (w->out[i] - 1) * w->s[i] + ek - w->in[i]);
            w->p0[i] = same_upper ? total / 2 : total - total / 2;
            w->p1[i] = total - w->p0[i];
            continue;
        }
        if (valid) w->p0[i] = w->p1[i] = 0;
        int64_t span = w->in[i] + w->p0[i] + w->p1[i] - ek;
        if (span < 0)
            return it_node_fail(node, ITSCAM_ERR_SHAPE, "window %lld larger than padded input %lld",
                                (long long)ek, (long long)(w->in[i] + w->p0[i] + w->p1[i]));
        if (ceil_mode) {
            w->out[i] = (span + w->s[i] - 1) / w->s[i] + 1;
            /* The last window must start inside the input or its left padding (PyTorch,
             * ONNX Runtime and the ONNX reference all drop it otherwise). */
            if ((w->out[i] - 1) * w->s[i] >= w->in[i] + w->p0[i]) w->out[i]--;
        } else {
            w->out[i] = span / w->s[i] + 1;
        }
    }
    return ITSCAM_OK;
}

itscam_status it_conv_geom_init(const it_node *node, const it_tensor *x, const it_tensor *w,
                                it_conv_geom *g) {
    if (!known_dims(x) || !known_dims(w))
        return it_node_fail(node, ITSCAM_ERR_SHAPE, "input shapes must be known");
    if (x->ndim == 5 || w->ndim == 5)
        return it_node_fail(node, ITSCAM_ERR_UNSUPPORTED, "3-D convolution");
    if (x->ndim < 3 || x->ndim > 4 || w->ndim != x->ndim)
        return it_node_fail(node, ITSCAM_ERR_SHAPE, "X rank %d and W rank %d (want 3 or 4)", x->ndim, w->ndim);
    int nsp = x->ndim - 2;
    g->n = x->dims[0];
    g->c = x->dims[1];
    g->m = w->dims[0];
    g->group = it_attr_int(node, "group", 1);
    if (g->group < 1 || g->m % g->group || w->dims[1] * g->group != g->c)
        return it_node_fail(node, ITSCAM_ERR_SHAPE, "X has %lld channels, W is [%lld,%lld,...], group %lld",
                            (long long)g->c, (long long)g->m, (long long)w->dims[1], (long long)g->group);
    const int64_t *ks;
    int nk = it_attr_ints(node, "kernel_shape", &ks);
    if (nk) {
        if (nk != nsp) return it_node_fail(node, ITSCAM_ERR_SHAPE, "kernel_shape has %d entries", nk);
        for (int i = 0; i < nk; i++)
            if (ks[i] != w->dims[2 + i])
                return it_node_fail(node, ITSCAM_ERR_SHAPE, "kernel_shape disagrees with W");
    }
    return it_window_init(node, &g->win, nsp, x->dims + 2, w->dims + 2, 0);
}

int it_conv_is_pointwise(const it_conv_geom *g) {
    const it_window *w = &g->win;
    for (int i = 0; i < 2; i++)
        if (w->k[i] != 1 || w->s[i] != 1 || w->p0[i] || w->p1[i]) return 0;
    return 1;
}

/* ---------------------------------------------------------------------------------
 * Conv
 * --------------------------------------------------------------------------------- */

itscam_status it_shape_conv(const it_kernel_args *a) {
    if (a->n_in < 2 || !a->in[0] || !a->in[1]) return FAIL(a, ITSCAM_ERR_SHAPE, "needs X and W");
    const it_tensor *x = a->in[0], *w = a->in[1], *b = a->n_in > 2 ? a->in[2] : NULL;
    if (x->dtype != IT_F32 || w->dtype != IT_F32 || (b && b->dtype != IT_F32))
        return FAIL(a, ITSCAM_ERR_UNSUPPORTED, "type %s (only float32)", it_dtype_name(x->dtype));
    it_conv_geom g;
    itscam_status s = it_conv_geom_init(a->node, x, w, &g);
    if (s) return s;
    if (b && (b->ndim != 1 || b->dims[0] != g.m))
        return FAIL(a, ITSCAM_ERR_SHAPE, "bias must be [%lld]", (long long)g.m);
    int64_t dims[4] = {g.n, g.m, g.win.out[0], g.win.out[1]};
    if (g.win.nsp == 1) dims[2] = g.win.out[1];
    it_set_shape(a->out[0], IT_F32, 2 + g.win.nsp, dims);
    return ITSCAM_OK;
}

size_t it_scratch_conv(const it_kernel_args *a) {
    it_conv_geom g;
    if (a->n_in < 2 || !a->in[0] || !a->in[1] || it_conv_geom_init(a->node, a->in[0], a->in[1], &g))
        return 0;
    if (it_conv_is_pointwise(&g)) return 0;
    const it_window *w = &g.win;
    /* One group's im2col matrix at a time: [C/group * kh * kw, oh * ow]. */
    return (size_t)(g.c / g.group * w->k[0] * w->k[1] * w->out[0] * w->out[1]) * sizeof(float);
}

/* Rows of col are (channel, ki, kj); columns are output pixels; padding reads as 0. */
static void im2col_f32(const float *x, int64_t channels, const it_window *w, float *col) {
    const int64_t h = w->in[0], wd = w->in[1], oh = w->out[0], ow = w->out[1];
    for (int64_t c = 0; c < channels; c++) {
        const float *xc = x + c * h * wd;
        for (int64_t ki = 0; ki < w->k[0]; ki++)
            for (int64_t kj = 0; kj < w->k[1]; kj++) {
                float *row = col + ((c * w->k[0] + ki) * w->k[1] + kj) * oh * ow;
                for (int64_t oy = 0; oy < oh; oy++) {
                    float *r = row + oy * ow;
                    int64_t iy = oy * w->s[0] - w->p0[0] + ki * w->d[0];
                    if (iy < 0 || iy >= h) {
                        memset(r, 0, (size_t)ow * sizeof(float));
                        continue;
                    }
                    const float *xr = xc + iy * wd;
                    for (int64_t ox = 0; ox < ow; ox++) {
                        int64_t ix = ox * w->s[1] - w->p0[1] + kj * w->d[1];
                        r[ox] = ix >= 0 && ix < wd ? xr[ix] : 0.0f;
                    }
                }
            }
    }
}

/* C[m,n] = bias[m] + A[m,k] B[k,n], all row-major. The i-k-j order keeps the innermost
 * loop on contiguous columns of B and C so that it vectorises; the columns are taken in
 * blocks so that the K x nb panel of B stays in cache while every row of A passes over
 * it, and k is unrolled by four to save loads and stores of C. */
static void gemm_f32(int64_t m, int64_t n, int64_t k, const float *restrict a,
                     const float *restrict b, float *restrict c, const float *bias) {
    int64_t nb = k > 0 ? 32768 / k : n;
    nb = IT_MAX(64, nb & ~(int64_t)15);
    for (int64_t j0 = 0; j0 < n; j0 += nb) {
        int64_t j1 = IT_MIN(n, j0 + nb);
        for (int64_t i = 0; i < m; i++) {
            float *restrict ci = c + i * n;
            const float *ai = a + i * k;
            float bv = bias ? bias[i] : 0.0f;
            for (int64_t j = j0; j < j1; j++) ci[j] = bv;
            int64_t p = 0;
            for (; p + 4 <= k; p += 4) {
                const float a0 = ai[p], a1 = ai[p + 1], a2 = ai[p + 2], a3 = ai[p + 3];
                const float *b0 = b + p * n, *b1 = b0 + n, *b2 = b1 + n, *b3 = b2 + n;
                for (int64_t j = j0; j < j1; j++)
                    ci[j] += a0 * b0[j] + a1 * b1[j] + a2 * b2[j] + a3 * b3[j];
            }
            for (; p < k; p++) {
                const float ap = ai[p];
                const float *bp = b + p * n;
                for (int64_t j = j0; j < j1; j++) ci[j] += ap * bp[j];
            }
        }
    }
}

itscam_status it_ref_conv(const it_kernel_args *a) {
    it_conv_geom g;
    itscam_status s = it_conv_geom_init(a->node, a->in[0], a->in[1], &g);
    if (s) return s;
    const it_window *w = &g.win;
    const float *x = a->in[0]->data, *wt = a->in[1]->data;
    const float *bias = a->n_in > 2 && a->in[2] ? a->in[2]->data : NULL;
    float *y = a->out[0]->data;
    int pointwise = it_conv_is_pointwise(&g);
    if (!pointwise && !a->scratch) return FAIL(a, ITSCAM_ERR_INTERNAL, "no scratch for im2col");
    const int64_t cg = g.c / g.group, mg = g.m / g.group;
    const int64_t kk = cg * w->k[0] * w->k[1], hw = w->in[0] * w->in[1], npix = w->out[0] * w->out[1];
    for (int64_t n = 0; n < g.n; n++)
        for (int64_t gi = 0; gi < g.group; gi++) {
            const float *xg = x + (n * g.c + gi * cg) * hw;
            const float *col = xg;
            if (!pointwise) {
                im2col_f32(xg, cg, w, a->scratch);
                col = a->scratch;
            }
            gemm_f32(mg, npix, kk, wt + gi * mg * kk, col, y + (n * g.m + gi * mg) * npix,
                     bias ? bias + gi * mg : NULL);
        }
    if (a->activation == IT_ACT_SILU) {
        int64_t total = g.n * g.m * npix;
        for (int64_t i = 0; i < total; i++) y[i] = y[i] / (1.0f + expf(-y[i]));
    }
    return ITSCAM_OK;
}

/* ---------------------------------------------------------------------------------
 * MaxPool
 * --------------------------------------------------------------------------------- */

static itscam_status pool_geom(const it_kernel_args *a, it_window *w) {
    const it_tensor *x = a->in[0];
    if (!known_dims(x)) return FAIL(a, ITSCAM_ERR_SHAPE, "input shape must be known");
    if (x->ndim == 5) return FAIL(a, ITSCAM_ERR_UNSUPPORTED, "3-D pooling");
    if (x->ndim < 3 || x->ndim > 4) return FAIL(a, ITSCAM_ERR_SHAPE, "X rank %d (want 3 or 4)", x->ndim);
    int nsp = x->ndim - 2;
    const int64_t *ks;
    int nk = it_attr_ints(a->node, "kernel_shape", &ks);
    if (nk != nsp) return FAIL(a, ITSCAM_ERR_SHAPE, "kernel_shape has %d entries for %d spatial axes", nk, nsp);
    return it_window_init(a->node, w, nsp, x->dims + 2, ks, (int)it_attr_int(a->node, "ceil_mode", 0));
}

itscam_status it_shape_maxpool(const it_kernel_args *a) {
    if (a->n_in < 1 || !a->in[0]) return FAIL(a, ITSCAM_ERR_SHAPE, "needs X");
    const it_tensor *x = a->in[0];
    if (x->dtype != IT_F32 && x->dtype != IT_U8 && x->dtype != IT_I8)
        return FAIL(a, ITSCAM_ERR_UNSUPPORTED, "type %s", it_dtype_name(x->dtype));
    if (a->node->n_out > 1 && a->node->out[1] >= 0)
        return FAIL(a, ITSCAM_ERR_UNSUPPORTED, "the Indices output");
    if (it_attr_int(a->node, "storage_order", 0) != 0)
        return FAIL(a, ITSCAM_ERR_UNSUPPORTED, "storage_order 1");
    it_window w;
    itscam_status s = pool_geom(a, &w);
    if (s) return s;
    int64_t dims[4] = {x->dims[0], x->dims[1], w.out[0], w.out[1]};
    if (w.nsp == 1) dims[2] = w.out[1];
    it_set_shape(a->out[0], x->dtype, x->ndim, dims);
    return ITSCAM_OK;
}

/* One body for every element type; padded positions never win. */
#define MAXPOOL_PLANES(T, lowest)                                                             \
    do {                                                                                      \
        const T *xp = a->in[0]->data;                                                         \
        T *yp = a->out[0]->data;                                                              \
        for (int64_t pl = 0; pl < planes; pl++) {                                             \
            const T *xc = xp + pl * w.in[0] * w.in[1];                                        \
            T *yc = yp + pl * w.out[0] * w.out[1];                                            \
            for (int64_t oy = 0; oy < w.out[0]; oy++)                                         \
                for (int64_t ox = 0; ox < w.out[1]; ox++) {                                   \
                    T best = lowest;                                                          \
                    for (int64_t ki = 0; ki < w.k[0]; ki++) {                                 \
                        int64_t iy = oy * w.s[0] - w.p0[0] + ki * w.d[0];                     \
                        if (iy < 0 || iy >= w.in[0]) continue;                                \
                        for (int64_t kj = 0; kj < w.k[1]; kj++) {                             \
                            int64_t ix = ox * w.s[1] - w.p0[1] + kj * w.d[1];                 \
                            if (ix < 0 || ix >= w.in[1]) continue;                            \
                            T v = xc[iy * w.in[1] + ix];                                      \
                            if (v > best || v != v) best = v;                                 \
                        }                                                                     \
                    }                                                                         \
                    yc[oy * w.out[1] + ox] = best;                                            \
                }                                                                             \
        }                                                                                     \
    } while (0)

itscam_status it_ref_maxpool(const it_kernel_args *a) {
    it_window w;
    itscam_status s = pool_geom(a, &w);
    if (s) return s;
    int64_t planes = a->in[0]->dims[0] * a->in[0]->dims[1];
    switch (a->in[0]->dtype) {
    case IT_F32: MAXPOOL_PLANES(float, -INFINITY); break;
    case IT_U8: MAXPOOL_PLANES(uint8_t, 0); break;
    case IT_I8: MAXPOOL_PLANES(int8_t, INT8_MIN); break;
    default: return FAIL(a, ITSCAM_ERR_UNSUPPORTED, "type %s", it_dtype_name(a->in[0]->dtype));
    }
    return ITSCAM_OK;
}

/* ---------------------------------------------------------------------------------
 * Resize
 * --------------------------------------------------------------------------------- */

static int pick(const char *s, const char *const *names, int n) {
    for (int i = 0; i < n; i++)
        if (!strcmp(s, names[i])) return i;
    return -1;
}

/* Everything the shape function and every Resize kernel need; fails on what we cannot do. */
itscam_status it_resize_geom_init(const it_node *node, int opset, const it_tensor *x, const it_tensor *roi,
                                  const it_tensor *scales, const it_tensor *sizes, it_resize_geom *p) {
    static const char *const modes[] = {"nearest", "linear", "cubic"};
    static const char *const cts[] = {"half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel",
                                      "tf_half_pixel_for_nearest", "tf_crop_and_resize",
                                      "half_pixel_symmetric"};
    static const char *const nms[] = {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"};
    if (!x) return it_node_fail(node, ITSCAM_ERR_SHAPE, "needs X and scales or sizes");
    if (x->dtype != IT_F32) return it_node_fail(node, ITSCAM_ERR_UNSUPPORTED, "type %s (only float32)", it_dtype_name(x->dtype));
    if (!known_dims(x)) return it_node_fail(node, ITSCAM_ERR_SHAPE, "input shape must be known");
    const char *mode = it_attr_str(node, "mode", "nearest");
    int m = pick(mode, modes, 3);
    if (m < 0 || m == 2) return it_node_fail(node, ITSCAM_ERR_UNSUPPORTED, "mode '%s'", mode);
    p->linear = m == 1;
    if (it_attr_int(node, "antialias", 0)) return it_node_fail(node, ITSCAM_ERR_UNSUPPORTED, "antialias");
    if (it_attr_int(node, "exclude_outside", 0)) return it_node_fail(node, ITSCAM_ERR_UNSUPPORTED, "exclude_outside");
    const char *kar = it_attr_str(node, "keep_aspect_ratio_policy", "stretch");
    if (strcmp(kar, "stretch")) return it_node_fail(node, ITSCAM_ERR_UNSUPPORTED, "keep_aspect_ratio_policy '%s'", kar);
    p->extrapolation = it_attr_float(node, "extrapolation_value", 0.0f);

    if (opset < 11) {
        /* Resize-10 behaves like Upsample: asymmetric coordinates, and ONNX Runtime's
         * "simple" rounding (floor when upsampling, ceil when downsampling). */
        p->ct = IT_RESIZE_ASYMMETRIC;
        p->nm = IT_RESIZE_SIMPLE;
        roi = sizes = NULL;
    } else {
        const char *ct = it_attr_str(node, "coordinate_transformation_mode", "half_pixel");
        const char *nm = it_attr_str(node, "nearest_mode", "round_prefer_floor");
        p->ct = pick(ct, cts, 7);
        if (!strcmp(ct, "tf_half_pixel_for_nn")) p->ct = IT_RESIZE_TF_HALF_PIXEL;   /* its opset-11 draft name */
        p->nm = pick(nm, nms, 4);
        if (p->ct < 0) return it_node_fail(node, ITSCAM_ERR_UNSUPPORTED, "coordinate_transformation_mode '%s'", ct);
        if (p->nm < 0) return it_node_fail(node, ITSCAM_ERR_UNSUPPORTED, "nearest_mode '%s'", nm);
    }
    /* An empty tensor stands for an absent input (opset 11 needs a placeholder). */
    if (scales && it_tensor_numel(scales) == 0) scales = NULL;
    if (sizes && it_tensor_numel(sizes) == 0) sizes = NULL;
    if (!scales == !sizes) return it_node_fail(node, ITSCAM_ERR_SHAPE, "exactly one of scales and sizes must be given");
    const it_tensor *given = scales ? scales : sizes;
    if (!given->data) return it_node_fail(node, ITSCAM_ERR_UNSUPPORTED, "%s must be known at plan time", scales ? "scales" : "sizes");
    if (scales && scales->dtype != IT_F32) return it_node_fail(node, ITSCAM_ERR_SHAPE, "scales must be float32");
    if (sizes && sizes->dtype != IT_I64) return it_node_fail(node, ITSCAM_ERR_SHAPE, "sizes must be int64");

    int rank = p->rank = x->ndim;
    int axes[IT_MAX_DIMS], naxes = rank;
    const int64_t *av;
    int nav = it_attr_ints(node, "axes", &av);
    for (int i = 0; i < rank; i++) axes[i] = i;
    if (nav) {
        naxes = nav;
        if (nav > rank) return it_node_fail(node, ITSCAM_ERR_SHAPE, "%d axes for rank %d", nav, rank);
        for (int i = 0; i < nav; i++) {
            int64_t ax = av[i] < 0 ? av[i] + rank : av[i];
            if (ax < 0 || ax >= rank) return it_node_fail(node, ITSCAM_ERR_SHAPE, "axis %lld", (long long)av[i]);
            for (int j = 0; j < i; j++)
                if (axes[j] == ax) return it_node_fail(node, ITSCAM_ERR_SHAPE, "repeated axis %lld", (long long)av[i]);
            axes[i] = (int)ax;
        }
    }
    if (it_tensor_numel(given) != naxes)
        return it_node_fail(node, ITSCAM_ERR_SHAPE, "%s has %lld values for %d axes", scales ? "scales" : "sizes",
                            (long long)it_tensor_numel(given), naxes);
    for (int i = 0; i < rank; i++) {
        p->in[i] = p->out[i] = x->dims[i];
        p->scale[i] = 1.0;
        p->roi0[i] = 0.0;
        p->roi1[i] = 1.0;
    }
    for (int i = 0; i < naxes; i++) {
        int ax = axes[i];
        if (scales) {
            double s = ((const float *)scales->data)[i];
            if (!(s > 0)) return it_node_fail(node, ITSCAM_ERR_SHAPE, "scale %g", s);
            p->scale[ax] = s;
            p->out[ax] = (int64_t)floor((double)p->in[ax] * s);
        } else {
            int64_t sz = ((const int64_t *)sizes->data)[i];
            if (sz < 0) return it_node_fail(node, ITSCAM_ERR_SHAPE, "size %lld", (long long)sz);
            p->out[ax] = sz;
            p->scale[ax] = p->in[ax] ? (double)sz / (double)p->in[ax] : 1.0;
        }
    }
    if (p->ct == IT_RESIZE_TF_CROP_AND_RESIZE) {
        if (!roi || !roi->data || it_tensor_numel(roi) != 2 * naxes)
            return it_node_fail(node, ITSCAM_ERR_UNSUPPORTED, "tf_crop_and_resize needs a constant roi of %d values", 2 * naxes);
        for (int i = 0; i < naxes; i++) {
            p->roi0[axes[i]] = it_tensor_get_f(roi, i);
            p->roi1[axes[i]] = it_tensor_get_f(roi, naxes + i);
        }
    }
    return ITSCAM_OK;
}

/* The node's inputs: X, then scales (Resize-10) or roi, scales, sizes (Resize-11 on). */
static itscam_status resize_setup(const it_kernel_args *a, it_resize_geom *p) {
    if (a->n_in < 2 || !a->in[0]) return FAIL(a, ITSCAM_ERR_SHAPE, "needs X and scales or sizes");
    if (a->opset < 11) return it_resize_geom_init(a->node, a->opset, a->in[0], NULL, a->in[1], NULL, p);
    return it_resize_geom_init(a->node, a->opset, a->in[0], a->in[1], a->n_in > 2 ? a->in[2] : NULL,
                               a->n_in > 3 ? a->in[3] : NULL, p);
}

itscam_status it_shape_resize(const it_kernel_args *a) {
    it_resize_geom p;
    itscam_status s = resize_setup(a, &p);
    if (s) return s;
    it_set_shape(a->out[0], IT_F32, p.rank, p.out);
    return ITSCAM_OK;
}

double it_resize_src_coord(const it_resize_geom *p, int d, double x) {
    double s = p->scale[d];
    int64_t in = p->in[d], out = p->out[d];
    switch (p->ct) {
    case IT_RESIZE_ASYMMETRIC: return x / s;
    case IT_RESIZE_ALIGN_CORNERS: {
        /* The ONNX reference divides by the unfloored resized length in*scale (equal to
         * the output length when sizes were given). */
        double len = (double)in * s;
        return out == 1 || len <= 1 ? 0.0 : x * (double)(in - 1) / (len - 1);
    }
    case IT_RESIZE_PYTORCH_HALF_PIXEL: return out > 1 ? (x + 0.5) / s - 0.5 : 0.0;
    case IT_RESIZE_TF_HALF_PIXEL: return (x + 0.5) / s;
    case IT_RESIZE_TF_CROP_AND_RESIZE:
        return out > 1 ? p->roi0[d] * (in - 1) + x * (p->roi1[d] - p->roi0[d]) * (in - 1) / (double)(out - 1)
                       : 0.5 * (p->roi0[d] + p->roi1[d]) * (in - 1);
    case IT_RESIZE_HALF_PIXEL_SYMMETRIC: {
        double adj = (double)out / (s * (double)in), center = (double)in / 2;
        return center * (1 - adj) + (x + 0.5) / s - 0.5;
    }
    default: return (x + 0.5) / s - 0.5;
    }
}

int64_t it_resize_nearest(const it_resize_geom *p, int d, double x) {
    double f = floor(x);
    int64_t i;
    switch (p->nm) {
    case IT_RESIZE_PREFER_CEIL: i = (int64_t)(x == f + 0.5 ? ceil(x) : round(x)); break;
    case IT_RESIZE_FLOOR: i = (int64_t)f; break;
    case IT_RESIZE_CEIL: i = (int64_t)ceil(x); break;
    case IT_RESIZE_SIMPLE: i = (int64_t)(p->scale[d] < 1 ? ceil(x) : f); break;
    default: i = (int64_t)(x == f + 0.5 ? f : round(x)); break;
    }
    return IT_MAX(0, IT_MIN(i, p->in[d] - 1));
}

/* Up to two source taps on one axis; returns 0 when the point lies outside the input
 * under tf_crop_and_resize (extrapolation). */
typedef struct tap {
    int64_t i0, i1;
    double w0, w1;
} tap;

static int axis_taps(const it_resize_geom *p, int d, int64_t o, tap *t) {
    double x = it_resize_src_coord(p, d, (double)o);
    if (p->ct == IT_RESIZE_TF_CROP_AND_RESIZE && (x < 0 || x > (double)(p->in[d] - 1))) return 0;
    if (!p->linear) {
        t->i0 = t->i1 = it_resize_nearest(p, d, x);
        t->w0 = 1;
        t->w1 = 0;
        return 1;
    }
    x = IT_MAX(0.0, IT_MIN(x, (double)(p->in[d] - 1)));
    t->i0 = (int64_t)x;
    t->i1 = IT_MIN(t->i0 + 1, p->in[d] - 1);
    t->w1 = x - (double)t->i0;
    t->w0 = 1 - t->w1;
    return 1;
}

itscam_status it_ref_resize(const it_kernel_args *a) {
    it_resize_geom p;
    itscam_status s = resize_setup(a, &p);
    if (s) return s;
    const float *x = a->in[0]->data;
    float *y = a->out[0]->data;
    int r = p.rank;
    if (it_tensor_numel(a->out[0]) == 0) return ITSCAM_OK;
    if (r == 0) {
        y[0] = x[0];
        return ITSCAM_OK;
    }
    int64_t stride[IT_MAX_DIMS];
    stride[r - 1] = 1;
    for (int d = r - 2; d >= 0; d--) stride[d] = stride[d + 1] * p.in[d + 1];
    int64_t idx[IT_MAX_DIMS] = {0};
    int64_t rows = 1;
    for (int d = 0; d < r - 1; d++) rows *= p.out[d];
    const int64_t ow = p.out[r - 1];
    /* Every output row (all axes but the last fixed) reads a weighted set of input rows:
     * at most two per axis, those with zero weight skipped (2^7 at rank 8). */
    enum { MAX_CORNERS = 1 << (IT_MAX_DIMS - 1) };
    int64_t corner_off[MAX_CORNERS];
    double corner_w[MAX_CORNERS];
    for (int64_t row = 0; row < rows; row++, y += ow) {
        int nc = 1, outside = 0;
        corner_off[0] = 0;
        corner_w[0] = 1;
        for (int d = 0; d < r - 1 && !outside; d++) {
            tap t;
            if (!axis_taps(&p, d, idx[d], &t)) {
                outside = 1;
                break;
            }
            int n2 = nc;
            for (int c = 0; c < nc; c++) {
                if (t.w1 != 0 && t.i1 != t.i0) {
                    corner_off[n2] = corner_off[c] + t.i1 * stride[d];
                    corner_w[n2++] = corner_w[c] * t.w1;
                    corner_w[c] *= t.w0;
                }
                corner_off[c] += t.i0 * stride[d];
            }
            nc = n2;
        }
        for (int64_t ox = 0; ox < ow; ox++) {
            tap t;
            if (outside || !axis_taps(&p, r - 1, ox, &t)) {
                y[ox] = p.extrapolation;
                continue;
            }
            double acc = 0;
            for (int c = 0; c < nc; c++) {
                const float *xr = x + corner_off[c];
                acc += corner_w[c] * (t.w0 * xr[t.i0] + (t.w1 != 0 ? t.w1 * xr[t.i1] : 0.0));
            }
            y[ox] = (float)acc;
        }
        for (int d = r - 2; d >= 0; d--) {
            if (++idx[d] < p.out[d]) break;
            idx[d] = 0;
        }
    }
    return ITSCAM_OK;
}

/* ---------------------------------------------------------------------------------
 * MatMul
 * --------------------------------------------------------------------------------- */

itscam_status it_matmul_geom_init(const it_node *node, const it_tensor *a, const it_tensor *b,
                                  it_matmul_geom *g) {
    if (!known_dims(a) || !known_dims(b))
        return it_node_fail(node, ITSCAM_ERR_SHAPE, "input shapes must be known");
    int ra = a->ndim, rb = b->ndim;
    if (ra < 1 || rb < 1) return it_node_fail(node, ITSCAM_ERR_SHAPE, "scalar operand");
    g->m = ra == 1 ? 1 : a->dims[ra - 2];
    g->k = a->dims[ra - 1];
    int64_t kb = rb == 1 ? b->dims[0] : b->dims[rb - 2];
    g->n = rb == 1 ? 1 : b->dims[rb - 1];
    if (kb != g->k)
        return it_node_fail(node, ITSCAM_ERR_SHAPE, "inner dimensions %lld and %lld differ",
                            (long long)g->k, (long long)kb);
    int ba = IT_MAX(ra - 2, 0), bb = IT_MAX(rb - 2, 0);
    g->nb = IT_MAX(ba, bb);
    g->batch = 1;
    int64_t sa = 1, sb = 1;
    for (int i = g->nb - 1; i >= 0; i--) {
        int ia = i - (g->nb - ba), ib = i - (g->nb - bb);
        int64_t da = ia >= 0 ? a->dims[ia] : 1, db = ib >= 0 ? b->dims[ib] : 1;
        if (da != db && da != 1 && db != 1)
            return it_node_fail(node, ITSCAM_ERR_SHAPE, "cannot broadcast batch dimensions %lld and %lld",
                                (long long)da, (long long)db);
        g->bdims[i] = da == 1 ? db : da;
        g->astride[i] = da == 1 ? 0 : sa;
        g->bstride[i] = db == 1 ? 0 : sb;
        sa *= da;
        sb *= db;
        g->batch *= g->bdims[i];
    }
    g->ndim = 0;
    for (int i = 0; i < g->nb; i++) g->dims[g->ndim++] = g->bdims[i];
    if (ra > 1) g->dims[g->ndim++] = g->m;
    if (rb > 1) g->dims[g->ndim++] = g->n;
    return ITSCAM_OK;
}

void it_matmul_batch(const it_matmul_geom *g, int64_t i, int64_t *ai, int64_t *bi) {
    *ai = *bi = 0;
    for (int d = g->nb - 1; d >= 0; d--) {
        int64_t q = i % g->bdims[d];
        i /= g->bdims[d];
        *ai += q * g->astride[d];
        *bi += q * g->bstride[d];
    }
}

itscam_status it_shape_matmul(const it_kernel_args *a) {
    if (a->n_in < 2 || !a->in[0] || !a->in[1]) return FAIL(a, ITSCAM_ERR_SHAPE, "needs A and B");
    if (a->in[0]->dtype != IT_F32 || a->in[1]->dtype != IT_F32)
        return FAIL(a, ITSCAM_ERR_UNSUPPORTED, "type %s (only float32)", it_dtype_name(a->in[0]->dtype));
    it_matmul_geom g;
    itscam_status s = it_matmul_geom_init(a->node, a->in[0], a->in[1], &g);
    if (s) return s;
    it_set_shape(a->out[0], IT_F32, g.ndim, g.dims);
    return ITSCAM_OK;
}

itscam_status it_ref_matmul(const it_kernel_args *a) {
    it_matmul_geom g;
    itscam_status s = it_matmul_geom_init(a->node, a->in[0], a->in[1], &g);
    if (s) return s;
    const float *pa = a->in[0]->data, *pb = a->in[1]->data;
    float *y = a->out[0]->data;
    for (int64_t i = 0; i < g.batch; i++) {
        int64_t ai, bi;
        it_matmul_batch(&g, i, &ai, &bi);
        gemm_f32(g.m, g.n, g.k, pa + ai * g.m * g.k, pb + bi * g.k * g.n, y + i * g.m * g.n, NULL);
    }
    return ITSCAM_OK;
}
