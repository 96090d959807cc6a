/* Reference kernels of ops_nn.c and ops_quant.c against naive loops and the ONNX spec's
 * worked examples, called directly through the operator table. */
#include "check.h"
#include "graph/ops_impl.h"
#include "graph/ops_nn.h"

#include <math.h>
#include <stdint.h>

/* ---- building nodes and running one operator ---- */

typedef struct test_node {
    it_node node;
    it_attr attrs[12];
    int outs[3];
} test_node;

static void tn_init(test_node *t, const char *op, int n_out) {
    memset(t, 0, sizeof *t);
    t->node.name = "t";
    t->node.op_type = (char *)op;
    t->node.domain = "";
    t->node.attrs = t->attrs;
    t->node.n_out = n_out;
    t->node.out = t->outs;
    for (int i = 0; i < 3; i++) t->outs[i] = i;
}

static void tn_int(test_node *t, const char *name, int64_t v) {
    it_attr *at = &t->attrs[t->node.n_attr++];
    at->name = (char *)name;
    at->type = IT_ATTR_INT;
    at->i = v;
}

static void tn_ints(test_node *t, const char *name, int n, const int64_t *v) {
    it_attr *at = &t->attrs[t->node.n_attr++];
    at->name = (char *)name;
    at->type = IT_ATTR_INTS;
    at->n = n;
    at->ints = (int64_t *)v;
}

static void tn_str(test_node *t, const char *name, const char *s) {
    it_attr *at = &t->attrs[t->node.n_attr++];
    at->name = (char *)name;
    at->type = IT_ATTR_STRING;
    at->s = (char *)s;
}

static it_tensor mk(int dtype, int ndim, const int64_t *dims, void *data) {
    it_tensor t;
    memset(&t, 0, sizeof t);
    it_set_shape(&t, dtype, ndim, dims);
    t.data = data;
    return t;
}

/* Shape, allocate outputs and scratch, run the ref kernel. Outputs are malloc'd. */
static int run_op(it_op_id id, test_node *tn, const it_tensor **in, int n_in, it_tensor *out, int n_out,
                  int activation, int64_t opset) {
    const it_op_def *def = it_op_get(id);
    it_tensor *outp[3];
    for (int i = 0; i < n_out; i++) {
        memset(&out[i], 0, sizeof out[i]);
        outp[i] = &out[i];
    }
    it_kernel_args a = {.node = &tn->node, .opset = opset, .n_in = n_in, .n_out = n_out, .in = in,
                        .out = outp, .activation = activation};
    int s = def->shape(&a);
    if (s) return s;
    for (int i = 0; i < n_out; i++) out[i].data = calloc(1, out[i].nbytes + 1);
    size_t sb = def->scratch ? def->scratch(&a) : 0;
    void *scr = sb ? malloc(sb) : NULL;
    a.scratch = scr;
    s = def->ref(&a);
    free(scr);
    return s;
}

static void free_outs(it_tensor *out, int n) {
    for (int i = 0; i < n; i++) free(out[i].data);
}

static uint32_t rng = 12345;
static float frand(void) {
    rng = rng * 1664525u + 1013904223u;
    return (float)((rng >> 8) & 0xffff) / 32768.0f - 1.0f;
}

static int close_arr(const float *a, const float *b, int64_t n, float tol) {
    for (int64_t i = 0; i < n; i++)
        if (!(fabsf(a[i] - b[i]) <= tol * (1 + fabsf(b[i])))) {
            fprintf(stderr, "  mismatch at %lld: %g vs %g\n", (long long)i, a[i], b[i]);
            return 0;
        }
    return 1;
}

/* ---- Conv ---- */

typedef struct conv_case {
    int64_t n, c, h, w, m, kh, kw, sh, sw, ph0, pw0, ph1, pw1, dh, dw, group;
    int bias, silu;
    const char *auto_pad;   /* NULL: explicit pads */
    int one_d;
} conv_case;

static void naive_conv(const conv_case *k, const float *x, const float *w, const float *b, float *y,
                       int64_t oh, int64_t ow) {
    int64_t cg = k->c / k->group, mg = k->m / k->group;
    for (int64_t n = 0; n < k->n; n++)
        for (int64_t m = 0; m < k->m; m++)
            for (int64_t oy = 0; oy < oh; oy++)
                for (int64_t ox = 0; ox < ow; ox++) {
                    double acc = b ? b[m] : 0;
                    int64_t g = m / mg;
                    for (int64_t c = 0; c < cg; c++)
                        for (int64_t i = 0; i < k->kh; i++)
                            for (int64_t j = 0; j < k->kw; j++) {
                                int64_t iy = oy * k->sh - k->ph0 + i * k->dh, ix = ox * k->sw - k->pw0 + j * k->dw;
                                if (iy < 0 || iy >= k->h || ix < 0 || ix >= k->w) continue;
                                acc += (double)x[((n * k->c + g * cg + c) * k->h + iy) * k->w + ix] *
                                       w[((m * cg + c) * k->kh + i) * k->kw + j];
                            }
                    float v = (float)acc;
                    if (k->silu) v = v / (1 + expf(-v));
                    y[((n * k->m + m) * oh + oy) * ow + ox] = v;
                }
}

static void test_conv_case(const conv_case *k) {
    int64_t oh = (k->h + k->ph0 + k->ph1 - ((k->kh - 1) * k->dh + 1)) / k->sh + 1;
    int64_t ow = (k->w + k->pw0 + k->pw1 - ((k->kw - 1) * k->dw + 1)) / k->sw + 1;
    int64_t nx = k->n * k->c * k->h * k->w, nw = k->m * (k->c / k->group) * k->kh * k->kw;
    float *x = malloc(nx * 4), *w = malloc(nw * 4), *b = malloc(k->m * 4), *ref = malloc(k->n * k->m * oh * ow * 4);
    for (int64_t i = 0; i < nx; i++) x[i] = frand();
    for (int64_t i = 0; i < nw; i++) w[i] = frand();
    for (int64_t i = 0; i < k->m; i++) b[i] = frand();
    naive_conv(k, x, w, k->bias ? b : NULL, ref, oh, ow);

    test_node tn;
    tn_init(&tn, "Conv", 1);
    int64_t strides[2] = {k->sh, k->sw}, dil[2] = {k->dh, k->dw}, pads[4] = {k->ph0, k->pw0, k->ph1, k->pw1};
    int64_t strides1[1] = {k->sw}, dil1[1] = {k->dw}, pads1[2] = {k->pw0, k->pw1};
    int nsp = k->one_d ? 1 : 2;
    tn_ints(&tn, "strides", nsp, k->one_d ? strides1 : strides);
    tn_ints(&tn, "dilations", nsp, k->one_d ? dil1 : dil);
    if (k->auto_pad) tn_str(&tn, "auto_pad", k->auto_pad);
    else tn_ints(&tn, "pads", 2 * nsp, k->one_d ? pads1 : pads);
    tn_int(&tn, "group", k->group);

    int64_t xd[4] = {k->n, k->c, k->h, k->w}, wd[4] = {k->m, k->c / k->group, k->kh, k->kw}, bd[1] = {k->m};
    int64_t xd1[3] = {k->n, k->c, k->w}, wd1[3] = {k->m, k->c / k->group, k->kw};
    it_tensor tx = k->one_d ? mk(IT_F32, 3, xd1, x) : mk(IT_F32, 4, xd, x);
    it_tensor tw = k->one_d ? mk(IT_F32, 3, wd1, w) : mk(IT_F32, 4, wd, w);
    it_tensor tb = mk(IT_F32, 1, bd, b);
    const it_tensor *in[3] = {&tx, &tw, &tb};
    it_tensor out;
    CHECK_OK(run_op(IT_OP_CONV, &tn, in, k->bias ? 3 : 2, &out, 1, k->silu ? IT_ACT_SILU : IT_ACT_NONE, 17));
    CHECK(out.ndim == 2 + nsp && out.dims[1] == k->m && out.dims[2 + nsp - 1] == ow);
    if (!k->one_d) CHECK(out.dims[2] == oh);
    CHECKF(out.data && close_arr(out.data, ref, k->n * k->m * oh * ow, 1e-4f), "conv %lldx%lldx%lldx%lld k%lld s%lld g%lld",
           (long long)k->n, (long long)k->c, (long long)k->h, (long long)k->w, (long long)k->kh, (long long)k->sh,
           (long long)k->group);
    free_outs(&out, 1);
    free(x);
    free(w);
    free(b);
    free(ref);
}

static void test_conv(void) {
    static const conv_case cases[] = {
        /* n c h w m kh kw sh sw ph0 pw0 ph1 pw1 dh dw group bias silu */
        {1, 3, 8, 8, 4, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 0, NULL, 0},      /* pointwise */
        {2, 3, 9, 7, 5, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, NULL, 0},      /* 3x3 s2 p1 SiLU */
        {1, 6, 10, 10, 6, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 6, 1, 1, NULL, 0},   /* depthwise */
        {1, 4, 11, 9, 6, 3, 3, 1, 1, 2, 2, 2, 2, 2, 2, 2, 0, 0, NULL, 0},    /* dilation 2, group 2 */
        {1, 16, 12, 12, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, NULL, 0},  /* K=144, unrolled */
        {1, 5, 6, 6, 3, 3, 2, 1, 2, 0, 1, 2, 0, 1, 1, 1, 1, 0, NULL, 0},     /* asymmetric pads */
        {1, 3, 7, 7, 2, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 0, "SAME_UPPER", 0},
        {1, 3, 5, 5, 2, 2, 2, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0, 0, "SAME_LOWER", 0},
        {1, 3, 5, 5, 2, 2, 2, 1, 1, 0, 0, 1, 1, 1, 1, 1, 0, 0, "SAME_UPPER", 0},
        {1, 3, 6, 6, 2, 3, 3, 1, 1, 0, 0, 0, 0, 1, 1, 1, 0, 0, "VALID", 0},
        {2, 2, 1, 10, 3, 1, 3, 1, 2, 0, 1, 0, 1, 1, 1, 1, 1, 0, NULL, 1},    /* 1-D */
        {1, 64, 20, 20, 32, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 1, NULL, 0}, /* wider pointwise */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) test_conv_case(&cases[i]);

    /* 3-D is not supported; mismatched channels is a shape error. */
    test_node tn;
    tn_init(&tn, "Conv", 1);
    int64_t xd[5] = {1, 2, 3, 3, 3}, wd[5] = {1, 2, 1, 1, 1};
    it_tensor tx = mk(IT_F32, 5, xd, NULL), tw = mk(IT_F32, 5, wd, NULL), out;
    const it_tensor *in[2] = {&tx, &tw};
    CHECK(run_op(IT_OP_CONV, &tn, in, 2, &out, 1, 0, 17) == ITSCAM_ERR_UNSUPPORTED);
    int64_t xd2[4] = {1, 3, 4, 4}, wd2[4] = {2, 2, 1, 1};
    tx = mk(IT_F32, 4, xd2, NULL);
    tw = mk(IT_F32, 4, wd2, NULL);
    CHECK(run_op(IT_OP_CONV, &tn, in, 2, &out, 1, 0, 17) == ITSCAM_ERR_SHAPE);
}

/* ---- MaxPool ---- */

static void test_maxpool(void) {
    /* 3x3 stride 2 pad 1 against a naive loop. */
    int64_t xd[4] = {2, 3, 7, 8};
    float x[2 * 3 * 7 * 8];
    for (int i = 0; i < 2 * 3 * 7 * 8; i++) x[i] = frand();
    test_node tn;
    tn_init(&tn, "MaxPool", 1);
    int64_t ks[2] = {3, 3}, st[2] = {2, 2}, pads[4] = {1, 1, 1, 1};
    tn_ints(&tn, "kernel_shape", 2, ks);
    tn_ints(&tn, "strides", 2, st);
    tn_ints(&tn, "pads", 4, pads);
    it_tensor tx = mk(IT_F32, 4, xd, x), out;
    const it_tensor *in[1] = {&tx};
    CHECK_OK(run_op(IT_OP_MAXPOOL, &tn, in, 1, &out, 1, 0, 12));
    CHECK(out.dims[2] == 4 && out.dims[3] == 4);
    int bad = 0;
    for (int p = 0; p < 6; p++)
        for (int oy = 0; oy < 4; oy++)
            for (int ox = 0; ox < 4; ox++) {
                float best = -INFINITY;
                for (int i = 0; i < 3; i++)
                    for (int j = 0; j < 3; j++) {
                        int iy = oy * 2 - 1 + i, ix = ox * 2 - 1 + j;
                        if (iy >= 0 && iy < 7 && ix >= 0 && ix < 8 && x[(p * 7 + iy) * 8 + ix] > best)
                            best = x[(p * 7 + iy) * 8 + ix];
                    }
                bad += ((float *)out.data)[(p * 4 + oy) * 4 + ox] != best;
            }
    CHECK(bad == 0);
    free_outs(&out, 1);

    /* YOLO's SPPF: 5x5 stride 1 pad 2 keeps the size. */
    tn_init(&tn, "MaxPool", 1);
    int64_t k5[2] = {5, 5}, s1[2] = {1, 1}, p2[4] = {2, 2, 2, 2};
    tn_ints(&tn, "kernel_shape", 2, k5);
    tn_ints(&tn, "strides", 2, s1);
    tn_ints(&tn, "pads", 4, p2);
    CHECK_OK(run_op(IT_OP_MAXPOOL, &tn, in, 1, &out, 1, 0, 12));
    CHECK(out.dims[2] == 7 && out.dims[3] == 8);
    free_outs(&out, 1);

    /* ceil_mode, the ONNX example: 4x4, 3x3 stride 2 -> 2x2 [11,12,15,16]. */
    float x4[16];
    for (int i = 0; i < 16; i++) x4[i] = (float)(i + 1);
    int64_t d4[4] = {1, 1, 4, 4};
    tn_init(&tn, "MaxPool", 1);
    int64_t k3[2] = {3, 3};
    tn_ints(&tn, "kernel_shape", 2, k3);
    tn_ints(&tn, "strides", 2, st);
    tn_int(&tn, "ceil_mode", 1);
    tx = mk(IT_F32, 4, d4, x4);
    CHECK_OK(run_op(IT_OP_MAXPOOL, &tn, in, 1, &out, 1, 0, 12));
    const float want[4] = {11, 12, 15, 16};
    CHECK(out.dims[2] == 2 && out.dims[3] == 2 && close_arr(out.data, want, 4, 0));
    free_outs(&out, 1);

    /* uint8, 2x2 stride 2, dilation-free. */
    uint8_t xu[16];
    for (int i = 0; i < 16; i++) xu[i] = (uint8_t)(200 - i * 7);
    tn_init(&tn, "MaxPool", 1);
    int64_t k2[2] = {2, 2};
    tn_ints(&tn, "kernel_shape", 2, k2);
    tn_ints(&tn, "strides", 2, st);
    tx = mk(IT_U8, 4, d4, xu);
    CHECK_OK(run_op(IT_OP_MAXPOOL, &tn, in, 1, &out, 1, 0, 12));
    const uint8_t *yu = out.data;
    CHECK(out.dtype == IT_U8 && yu[0] == 200 && yu[1] == 186 && yu[2] == 144 && yu[3] == 130);
    free_outs(&out, 1);

    /* The Indices output is not supported. */
    tn_init(&tn, "MaxPool", 2);
    tn_ints(&tn, "kernel_shape", 2, k2);
    it_tensor out2[2];
    CHECK(run_op(IT_OP_MAXPOOL, &tn, in, 1, out2, 2, 0, 12) == ITSCAM_ERR_UNSUPPORTED);
}

/* ---- Resize ---- */

static void test_resize(void) {
    float x[4] = {1, 2, 3, 4};
    float sc[4] = {1, 1, 2, 2};
    int64_t xd[4] = {1, 1, 2, 2}, sd[1] = {4};
    it_tensor tx = mk(IT_F32, 4, xd, x), ts = mk(IT_F32, 1, sd, sc), out;
    const it_tensor *in[4] = {&tx, NULL, &ts, NULL};

    /* Ultralytics' upsample: nearest, asymmetric, floor. */
    test_node tn;
    tn_init(&tn, "Resize", 1);
    tn_str(&tn, "mode", "nearest");
    tn_str(&tn, "coordinate_transformation_mode", "asymmetric");
    tn_str(&tn, "nearest_mode", "floor");
    CHECK_OK(run_op(IT_OP_RESIZE, &tn, in, 3, &out, 1, 0, 11));
    const float near[16] = {1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4};
    CHECK(out.ndim == 4 && out.dims[2] == 4 && out.dims[3] == 4 && close_arr(out.data, near, 16, 0));
    free_outs(&out, 1);

    /* Defaults (half_pixel, round_prefer_floor) give the same for 2x; opset 10 too. */
    tn_init(&tn, "Resize", 1);
    CHECK_OK(run_op(IT_OP_RESIZE, &tn, in, 3, &out, 1, 0, 13));
    CHECK(close_arr(out.data, near, 16, 0));
    free_outs(&out, 1);
    const it_tensor *in10[2] = {&tx, &ts};
    CHECK_OK(run_op(IT_OP_RESIZE, &tn, in10, 2, &out, 1, 0, 10));
    CHECK(close_arr(out.data, near, 16, 0));
    free_outs(&out, 1);

    /* Linear, half_pixel: the ONNX example test_resize_upsample_scales_linear. */
    tn_init(&tn, "Resize", 1);
    tn_str(&tn, "mode", "linear");
    CHECK_OK(run_op(IT_OP_RESIZE, &tn, in, 3, &out, 1, 0, 13));
    const float lin[16] = {1, 1.25f, 1.75f, 2, 1.5f, 1.75f, 2.25f, 2.5f, 2.5f, 2.75f, 3.25f, 3.5f, 3, 3.25f, 3.75f, 4};
    CHECK(close_arr(out.data, lin, 16, 1e-6f));
    free_outs(&out, 1);

    /* Linear, align_corners. */
    tn_str(&tn, "coordinate_transformation_mode", "align_corners");
    CHECK_OK(run_op(IT_OP_RESIZE, &tn, in, 3, &out, 1, 0, 13));
    const float t = 1.0f / 3, lac[16] = {1, 1 + t, 1 + 2 * t, 2, 1 + 2 * t, 2, 2 + t, 2 + 2 * t,
                                       2 + t, 2 + 2 * t, 3, 3 + t, 3, 3 + t, 3 + 2 * t, 4};
    CHECK(close_arr(out.data, lac, 16, 1e-6f));
    free_outs(&out, 1);

    /* Sizes, nearest downsample: test_resize_downsample_sizes_nearest gives [1,2,4]. */
    float x8[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    int64_t x8d[4] = {1, 1, 2, 4}, sizes[4] = {1, 1, 1, 3};
    it_tensor tx8 = mk(IT_F32, 4, x8d, x8), tsz = mk(IT_I64, 1, sd, sizes);
    const it_tensor *ins[4] = {&tx8, NULL, NULL, &tsz};
    tn_init(&tn, "Resize", 1);
    CHECK_OK(run_op(IT_OP_RESIZE, &tn, ins, 4, &out, 1, 0, 13));
    const float dn[3] = {1, 2, 4};
    CHECK(out.dims[2] == 1 && out.dims[3] == 3 && close_arr(out.data, dn, 3, 0));
    free_outs(&out, 1);

    /* Downsampling by scales 0.6 (test_resize_downsample_scales_{linear,nearest}). */
    float sc6[4] = {1, 1, 0.6f, 0.6f};
    it_tensor ts6 = mk(IT_F32, 1, sd, sc6);
    const it_tensor *in6[3] = {&tx8, NULL, &ts6};
    tn_init(&tn, "Resize", 1);
    tn_str(&tn, "mode", "linear");
    CHECK_OK(run_op(IT_OP_RESIZE, &tn, in6, 3, &out, 1, 0, 13));
    const float dl[2] = {2.6666665f, 4.3333331f};
    CHECK(out.dims[2] == 1 && out.dims[3] == 2 && close_arr(out.data, dl, 2, 1e-6f));
    free_outs(&out, 1);
    tn_init(&tn, "Resize", 1);
    CHECK_OK(run_op(IT_OP_RESIZE, &tn, in6, 3, &out, 1, 0, 13));
    const float dnn[2] = {1, 3};
    CHECK(out.dims[2] == 1 && out.dims[3] == 2 && close_arr(out.data, dnn, 2, 0));
    free_outs(&out, 1);

    /* tf_crop_and_resize (test_resize_tf_crop_and_resize): linear inside a roi. */
    float x16[16], roi[8] = {0, 0, 0.4f, 0.6f, 1, 1, 0.6f, 0.8f};
    for (int i = 0; i < 16; i++) x16[i] = (float)(i + 1);
    int64_t x16d[4] = {1, 1, 4, 4}, rd[1] = {8}, sz3[4] = {1, 1, 3, 3};
    it_tensor tx16 = mk(IT_F32, 4, x16d, x16), troi = mk(IT_F32, 1, rd, roi), tsz3 = mk(IT_I64, 1, sd, sz3);
    const it_tensor *inc[4] = {&tx16, &troi, NULL, &tsz3};
    tn_init(&tn, "Resize", 1);
    tn_str(&tn, "mode", "linear");
    tn_str(&tn, "coordinate_transformation_mode", "tf_crop_and_resize");
    CHECK_OK(run_op(IT_OP_RESIZE, &tn, inc, 4, &out, 1, 0, 13));
    const float crop[9] = {7.6f, 7.9f, 8.2f, 8.8f, 9.1f, 9.4f, 10.0f, 10.3f, 10.6f};
    CHECK(close_arr(out.data, crop, 9, 1e-5f));
    free_outs(&out, 1);

    /* Unsupported: cubic, and scales unknown at plan time. */
    tn_init(&tn, "Resize", 1);
    tn_str(&tn, "mode", "cubic");
    CHECK(run_op(IT_OP_RESIZE, &tn, in, 3, &out, 1, 0, 13) == ITSCAM_ERR_UNSUPPORTED);
    tn_init(&tn, "Resize", 1);
    it_tensor tsu = mk(IT_F32, 1, sd, NULL);
    const it_tensor *inu[3] = {&tx, NULL, &tsu};
    CHECK(run_op(IT_OP_RESIZE, &tn, inu, 3, &out, 1, 0, 13) == ITSCAM_ERR_UNSUPPORTED);
}

/* ---- MatMul ---- */

static void check_matmul(int ra, const int64_t *ad, int rb, const int64_t *bd, int ro, const int64_t *od) {
    it_tensor ta = mk(IT_F32, ra, ad, NULL), tb = mk(IT_F32, rb, bd, NULL), out;
    int64_t na = it_tensor_numel(&ta), nb = it_tensor_numel(&tb);
    float *a = malloc(na * 4), *b = malloc(nb * 4);
    for (int64_t i = 0; i < na; i++) a[i] = frand();
    for (int64_t i = 0; i < nb; i++) b[i] = frand();
    ta.data = a;
    tb.data = b;
    test_node tn;
    tn_init(&tn, "MatMul", 1);
    const it_tensor *in[2] = {&ta, &tb};
    CHECK_OK(run_op(IT_OP_MATMUL, &tn, in, 2, &out, 1, 0, 13));
    CHECK(out.ndim == ro);
    for (int i = 0; i < ro && i < out.ndim; i++) CHECK(out.dims[i] == od[i]);
    /* Naive: expand A and B to rank-3 [batch, M, K] views with broadcasting by hand. */
    int64_t m = ra == 1 ? 1 : ad[ra - 2], k = ad[ra - 1], n = rb == 1 ? 1 : bd[rb - 1];
    int64_t batch = it_tensor_numel(&out) / (m * n);
    int64_t abatch = na / (m * k), bbatch = nb / (k * n);
    int bad = 0;
    for (int64_t q = 0; q < batch; q++) {
        /* Only the shapes used below: batch dims broadcast as whole blocks or by a
         * leading A dim over a trailing B dim (2,1 x 3 -> 2,3). */
        int64_t qa = abatch == 1 ? 0 : abatch == batch ? q : q / (batch / abatch);
        int64_t qb = bbatch == 1 ? 0 : bbatch == batch ? q : q % bbatch;
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                double acc = 0;
                for (int64_t p = 0; p < k; p++) acc += (double)a[(qa * m + i) * k + p] * b[(qb * k + p) * n + j];
                float got = ((float *)out.data)[(q * m + i) * n + j];
                bad += fabs(got - acc) > 1e-4 * (1 + fabs(acc));
            }
    }
    CHECK(bad == 0);
    free_outs(&out, 1);
    free(a);
    free(b);
}

static void test_matmul(void) {
    int64_t a1[3] = {2, 3, 4}, b1[2] = {4, 5}, o1[3] = {2, 3, 5};
    check_matmul(3, a1, 2, b1, 3, o1);
    int64_t a2[1] = {4}, o2[1] = {5};
    check_matmul(1, a2, 2, b1, 1, o2);
    int64_t b3[1] = {4}, o3[2] = {2, 3};
    check_matmul(3, a1, 1, b3, 2, o3);
    int64_t a4[4] = {2, 1, 3, 4}, b4[3] = {3, 4, 2}, o4[4] = {2, 3, 3, 2};
    check_matmul(4, a4, 3, b4, 4, o4);
    int64_t a5[2] = {37, 70}, b5[2] = {70, 300}, o5[2] = {37, 300};
    check_matmul(2, a5, 2, b5, 2, o5);
    test_node tn;
    tn_init(&tn, "MatMul", 1);
    it_tensor ta = mk(IT_F32, 2, a5, NULL), tb = mk(IT_F32, 2, b1, NULL), out;
    const it_tensor *in[2] = {&ta, &tb};
    CHECK(run_op(IT_OP_MATMUL, &tn, in, 2, &out, 1, 0, 13) == ITSCAM_ERR_SHAPE);
}

/* ---- quantisation ---- */

static void test_quant(void) {
    test_node tn;
    it_tensor out[3];

    /* DynamicQuantizeLinear, the ONNX spec example. */
    float x[6] = {0, 2, -3, -2.5f, 1.34f, 0.5f};
    int64_t d6[1] = {6};
    it_tensor tx = mk(IT_F32, 1, d6, x);
    const it_tensor *in1[1] = {&tx};
    tn_init(&tn, "DynamicQuantizeLinear", 3);
    CHECK_OK(run_op(IT_OP_DYNAMICQUANTIZELINEAR, &tn, in1, 1, out, 3, 0, 11));
    const uint8_t wy[6] = {153, 255, 0, 26, 221, 179};
    CHECK(out[0].dtype == IT_U8 && !memcmp(out[0].data, wy, 6));
    CHECK(out[1].ndim == 0 && fabsf(*(float *)out[1].data - 0.0196078f) < 1e-7f);
    CHECK(out[2].dtype == IT_U8 && *(uint8_t *)out[2].data == 153);
    free_outs(out, 3);
    /* All-positive input: min clamps to 0, zero point 0; all-zero input: scale 1. */
    float xp[3] = {1, 2.5f, 4};
    it_tensor txp = mk(IT_F32, 1, (int64_t[]){3}, xp);
    in1[0] = &txp;
    CHECK_OK(run_op(IT_OP_DYNAMICQUANTIZELINEAR, &tn, in1, 1, out, 3, 0, 11));
    const uint8_t wyp[3] = {64, 159, 255};
    CHECK(!memcmp(out[0].data, wyp, 3) && *(uint8_t *)out[2].data == 0);
    free_outs(out, 3);

    /* QuantizeLinear: the spec example and half-to-even rounding. */
    float xq[9] = {0, 2, 3, 1000, -254, -1000, 1, 5, -3};
    int64_t d9[1] = {9};
    float s2 = 2;
    uint8_t z128 = 128;
    it_tensor tq = mk(IT_F32, 1, d9, xq), ts = mk(IT_F32, 0, NULL, &s2), tz = mk(IT_U8, 0, NULL, &z128);
    const it_tensor *in3[3] = {&tq, &ts, &tz};
    tn_init(&tn, "QuantizeLinear", 1);
    CHECK_OK(run_op(IT_OP_QUANTIZELINEAR, &tn, in3, 3, out, 1, 0, 13));
    const uint8_t wq[9] = {128, 129, 130, 255, 1, 0, 128, 130, 126};
    CHECK(out[0].dtype == IT_U8 && !memcmp(out[0].data, wq, 9));
    free_outs(out, 1);
    /* int8 zero point. */
    int8_t zi = -1;
    it_tensor tzi = mk(IT_I8, 0, NULL, &zi);
    in3[2] = &tzi;
    CHECK_OK(run_op(IT_OP_QUANTIZELINEAR, &tn, in3, 3, out, 1, 0, 13));
    const int8_t wqi[9] = {-1, 0, 1, 127, -128, -128, -1, 1, -3};
    CHECK(out[0].dtype == IT_I8 && !memcmp(out[0].data, wqi, 9));
    free_outs(out, 1);
    /* No zero point: uint8 with zero point 0. */
    CHECK_OK(run_op(IT_OP_QUANTIZELINEAR, &tn, in3, 2, out, 1, 0, 13));
    CHECK(out[0].dtype == IT_U8 && ((uint8_t *)out[0].data)[3] == 255 && ((uint8_t *)out[0].data)[4] == 0);
    free_outs(out, 1);

    /* Per-axis: test_quantizelinear_axis. */
    float xa[18] = {-162, 10, -100, 232, -20, -50, -76, 0, 0, 252, 32, -44, 245, -485, -960, -270, -375, -470};
    float sa[3] = {1, 2, 4};
    uint8_t za[3] = {84, 24, 196};
    int64_t da[4] = {1, 3, 3, 2}, d3[1] = {3};
    it_tensor txa = mk(IT_F32, 4, da, xa), tsa = mk(IT_F32, 1, d3, sa), tza = mk(IT_U8, 1, d3, za);
    const it_tensor *ina[3] = {&txa, &tsa, &tza};
    CHECK_OK(run_op(IT_OP_QUANTIZELINEAR, &tn, ina, 3, out, 1, 0, 13));
    const uint8_t wa[18] = {0, 94, 0, 255, 64, 34, 0, 24, 24, 150, 40, 2, 255, 75, 0, 128, 102, 78};
    CHECK(!memcmp(out[0].data, wa, 18));
    free_outs(out, 1);

    /* DequantizeLinear: per tensor, then per axis on the values just produced. */
    uint8_t xd[4] = {0, 3, 128, 255};
    int64_t d4[1] = {4};
    it_tensor txd = mk(IT_U8, 1, d4, xd);
    const it_tensor *ind[3] = {&txd, &ts, &tz};
    tn_init(&tn, "DequantizeLinear", 1);
    tz = mk(IT_U8, 0, NULL, &z128);
    CHECK_OK(run_op(IT_OP_DEQUANTIZELINEAR, &tn, ind, 3, out, 1, 0, 13));
    const float wd[4] = {-256, -250, 0, 254};
    CHECK(out[0].dtype == IT_F32 && close_arr(out[0].data, wd, 4, 0));
    free_outs(out, 1);
    it_tensor twa = mk(IT_U8, 4, da, (void *)wa);
    const it_tensor *inda[3] = {&twa, &tsa, &tza};
    CHECK_OK(run_op(IT_OP_DEQUANTIZELINEAR, &tn, inda, 3, out, 1, 0, 13));
    CHECK(((float *)out[0].data)[1] == 10 && ((float *)out[0].data)[9] == 252 &&
          ((float *)out[0].data)[13] == -484);
    free_outs(out, 1);
    int32_t xi32[3] = {-5, 0, 7};
    it_tensor txi = mk(IT_I32, 1, d3, xi32);
    const it_tensor *ini[2] = {&txi, &ts};
    CHECK_OK(run_op(IT_OP_DEQUANTIZELINEAR, &tn, ini, 2, out, 1, 0, 13));
    CHECK(((float *)out[0].data)[0] == -10 && ((float *)out[0].data)[2] == 14);
    free_outs(out, 1);

    /* MatMulInteger, the spec example. */
    uint8_t ma[12] = {11, 7, 3, 10, 6, 2, 9, 5, 1, 8, 4, 0}, mb[6] = {1, 4, 2, 5, 3, 6}, azp = 12, bzp = 0;
    int64_t dma[2] = {4, 3}, dmb[2] = {3, 2};
    it_tensor tma = mk(IT_U8, 2, dma, ma), tmb = mk(IT_U8, 2, dmb, mb);
    it_tensor taz = mk(IT_U8, 0, NULL, &azp), tbz = mk(IT_U8, 0, NULL, &bzp);
    const it_tensor *inm[4] = {&tma, &tmb, &taz, &tbz};
    tn_init(&tn, "MatMulInteger", 1);
    CHECK_OK(run_op(IT_OP_MATMULINTEGER, &tn, inm, 4, out, 1, 0, 13));
    const int32_t wm[8] = {-38, -83, -44, -98, -50, -113, -56, -128};
    CHECK(out[0].dtype == IT_I32 && out[0].dims[0] == 4 && out[0].dims[1] == 2 && !memcmp(out[0].data, wm, 32));
    free_outs(out, 1);
    /* Per-column b zero point [1, 4] subtracts B's first row from every row of B. */
    uint8_t bzc[2] = {1, 4};
    it_tensor tbzc = mk(IT_U8, 1, (int64_t[]){2}, bzc);
    inm[3] = &tbzc;
    CHECK_OK(run_op(IT_OP_MATMULINTEGER, &tn, inm, 4, out, 1, 0, 13));
    /* row 0 of A - 12 = [-1,-5,-9]; B - zp = [[0,0],[1,1],[2,2]] -> -5 - 18 = -23. */
    CHECK(((int32_t *)out[0].data)[0] == -23 && ((int32_t *)out[0].data)[1] == -23);
    free_outs(out, 1);

    /* ConvInteger: test_convinteger_with_padding. */
    uint8_t cx[9] = {2, 3, 4, 5, 6, 7, 8, 9, 10}, cw[4] = {1, 1, 1, 1}, cxz = 1;
    int64_t dcx[4] = {1, 1, 3, 3}, dcw[4] = {1, 1, 2, 2}, pads[4] = {1, 1, 1, 1};
    it_tensor tcx = mk(IT_U8, 4, dcx, cx), tcw = mk(IT_U8, 4, dcw, cw), tcxz = mk(IT_U8, 0, NULL, &cxz);
    const it_tensor *inc[3] = {&tcx, &tcw, &tcxz};
    tn_init(&tn, "ConvInteger", 1);
    tn_ints(&tn, "pads", 4, pads);
    CHECK_OK(run_op(IT_OP_CONVINTEGER, &tn, inc, 3, out, 1, 0, 13));
    const int32_t wc[16] = {1, 3, 5, 3, 5, 12, 16, 9, 11, 24, 28, 15, 7, 15, 17, 9};
    CHECK(out[0].dtype == IT_I32 && out[0].dims[2] == 4 && !memcmp(out[0].data, wc, 64));
    free_outs(out, 1);

    /* ConvInteger against the float Conv on the zero-point-corrected values (exact for
     * these magnitudes): int8 x, uint8 w with a per-channel zero point, stride 2, groups. */
    {
        enum { N = 1, C = 4, H = 9, W = 8, M = 6, G = 2, K = 3 };
        static int8_t qx[N * C * H * W];
        static uint8_t qw[M * (C / G) * K * K];
        static float fx[N * C * H * W], fw[M * (C / G) * K * K];
        int8_t qxz = -3;
        uint8_t qwz[M] = {100, 120, 128, 90, 130, 110};
        for (int i = 0; i < N * C * H * W; i++) {
            qx[i] = (int8_t)(int)(frand() * 127);
            fx[i] = (float)(qx[i] - qxz);
        }
        for (int i = 0; i < M * (C / G) * K * K; i++) {
            qw[i] = (uint8_t)(int)((frand() + 1) * 127);
            fw[i] = (float)(qw[i] - qwz[i / ((C / G) * K * K)]);
        }
        int64_t dx[4] = {N, C, H, W}, dw[4] = {M, C / G, K, K}, dz[1] = {M}, st[2] = {2, 2}, pd[4] = {1, 1, 1, 1};
        it_tensor a0 = mk(IT_I8, 4, dx, qx), a1 = mk(IT_U8, 4, dw, qw), a2 = mk(IT_I8, 0, NULL, &qxz),
                  a3 = mk(IT_U8, 1, dz, qwz);
        it_tensor f0 = mk(IT_F32, 4, dx, fx), f1 = mk(IT_F32, 4, dw, fw);
        const it_tensor *qi[4] = {&a0, &a1, &a2, &a3}, *fi[2] = {&f0, &f1};
        tn_init(&tn, "ConvInteger", 1);
        tn_ints(&tn, "strides", 2, st);
        tn_ints(&tn, "pads", 4, pd);
        tn_int(&tn, "group", G);
        it_tensor fo;
        CHECK_OK(run_op(IT_OP_CONVINTEGER, &tn, qi, 4, out, 1, 0, 13));
        CHECK_OK(run_op(IT_OP_CONV, &tn, fi, 2, &fo, 1, 0, 13));
        int64_t n = it_tensor_numel(&fo), bad = 0;
        for (int64_t i = 0; i < n; i++) bad += (float)((int32_t *)out[0].data)[i] != ((float *)fo.data)[i];
        CHECK(it_tensor_numel(&out[0]) == n && bad == 0);
        free_outs(out, 1);
        free_outs(&fo, 1);
    }
}

/* ---- Resize and Slice geometry, shared by the ref kernels and the cuda backend ---- */

static int near_eq(double a, double b) { return fabs(a - b) < 1e-12; }

/* A rank-1 Resize of 4 values to 8 (scale 2) under coordinate mode ct. */
static void resize_geom_1d(test_node *tn, const char *ct, const char *nm, it_resize_geom *g) {
    static float x[4], sc[1] = {2};
    static int64_t xd[1] = {4}, sd[1] = {1};
    it_tensor tx = mk(IT_F32, 1, xd, x), ts = mk(IT_F32, 1, sd, sc);
    tn_init(tn, "Resize", 1);
    tn_str(tn, "coordinate_transformation_mode", ct);
    if (nm) tn_str(tn, "nearest_mode", nm);
    CHECK_OK(it_resize_geom_init(&tn->node, 13, &tx, NULL, &ts, NULL, g));
    CHECK(g->rank == 1 && g->in[0] == 4 && g->out[0] == 8 && near_eq(g->scale[0], 2));
}

static void test_resize_geom(void) {
    test_node tn;
    it_resize_geom g;
    resize_geom_1d(&tn, "half_pixel", NULL, &g);
    CHECK(near_eq(it_resize_src_coord(&g, 0, 0), -0.25) && near_eq(it_resize_src_coord(&g, 0, 7), 3.25));
    CHECK(it_resize_nearest(&g, 0, -0.25) == 0 && it_resize_nearest(&g, 0, 3.25) == 3);   /* clamped, rounded */
    resize_geom_1d(&tn, "asymmetric", NULL, &g);
    CHECK(near_eq(it_resize_src_coord(&g, 0, 3), 1.5));
    CHECK(it_resize_nearest(&g, 0, 1.5) == 1);   /* round_prefer_floor on a tie */
    resize_geom_1d(&tn, "asymmetric", "round_prefer_ceil", &g);
    CHECK(it_resize_nearest(&g, 0, 1.5) == 2 && it_resize_nearest(&g, 0, 1.4) == 1);
    resize_geom_1d(&tn, "asymmetric", "ceil", &g);
    CHECK(it_resize_nearest(&g, 0, 1.1) == 2 && it_resize_nearest(&g, 0, 3.5) == 3);
    resize_geom_1d(&tn, "asymmetric", "floor", &g);
    CHECK(it_resize_nearest(&g, 0, 1.9) == 1 && it_resize_nearest(&g, 0, -0.5) == 0);
    resize_geom_1d(&tn, "align_corners", NULL, &g);
    CHECK(near_eq(it_resize_src_coord(&g, 0, 0), 0) && near_eq(it_resize_src_coord(&g, 0, 7), 3) &&
          near_eq(it_resize_src_coord(&g, 0, 1), 3.0 / 7));
    resize_geom_1d(&tn, "pytorch_half_pixel", NULL, &g);
    CHECK(near_eq(it_resize_src_coord(&g, 0, 0), -0.25) && near_eq(it_resize_src_coord(&g, 0, 5), 2.25));
    resize_geom_1d(&tn, "tf_half_pixel_for_nearest", NULL, &g);
    CHECK(near_eq(it_resize_src_coord(&g, 0, 0), 0.25));

    /* sizes to a single output: pytorch_half_pixel and align_corners read the first input */
    float x[6] = {0};
    int64_t xd[2] = {2, 3}, szd[1] = {1}, axes[1] = {-1}, sz[1] = {1};
    it_tensor tx = mk(IT_F32, 2, xd, x), tsz = mk(IT_I64, 1, szd, sz);
    const char *single[] = {"pytorch_half_pixel", "align_corners"};
    for (int k = 0; k < 2; k++) {
        tn_init(&tn, "Resize", 1);
        tn_str(&tn, "coordinate_transformation_mode", single[k]);
        tn_ints(&tn, "axes", 1, axes);
        CHECK_OK(it_resize_geom_init(&tn.node, 18, &tx, NULL, NULL, &tsz, &g));
        CHECK(g.out[0] == 2 && g.out[1] == 1 && near_eq(g.scale[0], 1) && near_eq(g.scale[1], 1.0 / 3));
        CHECK(near_eq(it_resize_src_coord(&g, 1, 0), 0));
    }

    /* Resize-10: asymmetric, floor when upsampling, ceil when downsampling */
    float sc[2] = {1, 0.5f};
    int64_t scd[1] = {2};
    it_tensor ts = mk(IT_F32, 1, scd, sc);
    tn_init(&tn, "Resize", 1);
    CHECK_OK(it_resize_geom_init(&tn.node, 10, &tx, NULL, &ts, NULL, &g));
    CHECK(g.ct == IT_RESIZE_ASYMMETRIC && g.nm == IT_RESIZE_SIMPLE && g.out[1] == 1);
    CHECK(it_resize_nearest(&g, 1, 0.5) == 1 && it_resize_nearest(&g, 0, 0.5) == 0);

    /* what cannot be done fails with a status */
    CHECK(it_resize_geom_init(&tn.node, 13, &tx, NULL, &ts, &tsz, &g) == ITSCAM_ERR_SHAPE);   /* both */
    tn_str(&tn, "mode", "cubic");
    CHECK(it_resize_geom_init(&tn.node, 13, &tx, NULL, &ts, NULL, &g) == ITSCAM_ERR_UNSUPPORTED);
}

/* Slice of a 10-vector (opset 13 inputs); steps may be 0 for none. */
static itscam_status slice_1d(int64_t b, int64_t e, int64_t step, it_slice_geom *g) {
    static int64_t xd[1] = {10}, one[1] = {1}, sv[1], ev[1], pv[1];
    static uint8_t x[10];
    sv[0] = b, ev[0] = e, pv[0] = step;
    it_tensor tx = mk(IT_U8, 1, xd, x), ts = mk(IT_I64, 1, one, sv), te = mk(IT_I64, 1, one, ev),
              tp = mk(IT_I64, 1, one, pv);
    test_node tn;
    tn_init(&tn, "Slice", 1);
    return it_slice_geom_init(&tn.node, 13, &tx, &ts, &te, NULL, step ? &tp : NULL, g);
}

static void test_slice_geom(void) {
    it_slice_geom g;
    CHECK_OK(slice_1d(0, INT64_MAX, 0, &g));   /* "to the end" */
    CHECK(g.ndim == 1 && g.start[0] == 0 && g.step[0] == 1 && g.len[0] == 10);
    CHECK_OK(slice_1d(0, INT64_MAX, 3, &g));   /* 0 3 6 9 */
    CHECK(g.start[0] == 0 && g.step[0] == 3 && g.len[0] == 4);
    CHECK_OK(slice_1d(-1, INT64_MIN, -1, &g));   /* reversed: 9 .. 0 */
    CHECK(g.start[0] == 9 && g.step[0] == -1 && g.len[0] == 10);
    CHECK_OK(slice_1d(8, 2, -2, &g));   /* 8 6 4 */
    CHECK(g.start[0] == 8 && g.step[0] == -2 && g.len[0] == 3);
    CHECK_OK(slice_1d(INT64_MAX, -11, -3, &g));   /* start clamped to 9, end to -1: 9 6 3 0 */
    CHECK(g.start[0] == 9 && g.len[0] == 4);
    CHECK_OK(slice_1d(-100, 5, 0, &g));   /* start clamped to 0 */
    CHECK(g.start[0] == 0 && g.len[0] == 5);
    CHECK_OK(slice_1d(20, INT64_MAX, 0, &g));   /* empty */
    CHECK(g.len[0] == 0);
    CHECK_OK(slice_1d(5, 2, 1, &g));   /* empty: end before start */
    CHECK(g.len[0] == 0);
    /* a huge step takes one element and is reported as 1 (never multiplied by a stride) */
    CHECK_OK(slice_1d(0, INT64_MAX, INT64_MAX, &g));
    CHECK(g.len[0] == 1 && g.step[0] == 1 && g.start[0] == 0);
    CHECK_OK(slice_1d(INT64_MAX, INT64_MIN, INT64_MIN, &g));
    CHECK(g.len[0] == 1 && g.step[0] == 1 && g.start[0] == 9);
    /* step 0 is malformed: build it by hand, slice_1d reads 0 as "no steps" */
    int64_t xd[2] = {4, 6}, two[1] = {2}, st[2] = {1, -2}, en[2] = {3, INT64_MAX}, ax[2] = {-1, 0}, sp[2] = {1, 0};
    uint8_t x[24];
    it_tensor tx = mk(IT_U8, 2, xd, x), ts = mk(IT_I64, 1, two, st), te = mk(IT_I64, 1, two, en),
              ta = mk(IT_I64, 1, two, ax), tp = mk(IT_I64, 1, two, sp);
    test_node tn;
    tn_init(&tn, "Slice", 1);
    CHECK(it_slice_geom_init(&tn.node, 13, &tx, &ts, &te, &ta, &tp, &g) == ITSCAM_ERR_MODEL);
    sp[1] = 1;   /* axes -1 then 0: axis 1 from 1 to 3, axis 0 from 2 to the end */
    CHECK_OK(it_slice_geom_init(&tn.node, 13, &tx, &ts, &te, &ta, &tp, &g));
    CHECK(g.start[1] == 1 && g.len[1] == 2 && g.start[0] == 2 && g.len[0] == 2);
    ax[0] = 0;   /* repeated axis */
    CHECK(it_slice_geom_init(&tn.node, 13, &tx, &ts, &te, &ta, &tp, &g) == ITSCAM_ERR_MODEL);
    /* Slice-1: attributes, the tensors ignored */
    int64_t as[1] = {-3}, ae[1] = {INT64_MAX}, aa[1] = {1};
    tn_init(&tn, "Slice", 1);
    tn_ints(&tn, "starts", 1, as);
    tn_ints(&tn, "ends", 1, ae);
    tn_ints(&tn, "axes", 1, aa);
    CHECK_OK(it_slice_geom_init(&tn.node, 1, &tx, NULL, NULL, NULL, NULL, &g));
    CHECK(g.start[1] == 3 && g.len[1] == 3 && g.len[0] == 4 && g.step[1] == 1);
}

int main(void) {
    test_conv();
    test_maxpool();
    test_resize();
    test_resize_geom();
    test_slice_geom();
    test_matmul();
    test_quant();
    return check_done("test_ops_nn");
}
