/* The cpu (oneDNN) backend against the ref kernels, operator by operator on small ONNX
 * models built in memory, then yolo11n end to end against ONNX Runtime's output, plus
 * the promise that a compiled program runs without touching the heap. */
#include "check.h"

#include "backend/backend.h"
#include "onnx/onnx.h"
#ifdef ITSCAM_HAVE_CPU
#include "backend/cpu/cpu_backend.h"
#endif

#include <errno.h>
#include <malloc.h>
#include <math.h>
#include <stdint.h>

/* ---- counting every heap allocation of the process ------------------------------------
 * it_alloc_count() sees only the library's own allocations; oneDNN and libgomp call
 * malloc (and C++ new) directly. Defining malloc & co. here interposes them for the whole
 * process, forwarding to glibc's internal entry points. AddressSanitizer brings its own
 * allocator, so the count is only available without it. */
#if defined(__SANITIZE_ADDRESS__)
#define HEAP_COUNTING 0
static uint64_t heap_count(void) { return 0; }
#else
#define HEAP_COUNTING 1
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);
static uint64_t heap_allocs;
static void count_one(void) { __atomic_add_fetch(&heap_allocs, 1, __ATOMIC_RELAXED); }
static uint64_t heap_count(void) { return __atomic_load_n(&heap_allocs, __ATOMIC_RELAXED); }
void *malloc(size_t n) { count_one(); return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { count_one(); return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { count_one(); return __libc_realloc(p, n); }
void free(void *p) { __libc_free(p); }
void *memalign(size_t al, size_t n) { count_one(); return __libc_memalign(al, n); }
void *aligned_alloc(size_t al, size_t n) { count_one(); return __libc_memalign(al, n); }
int posix_memalign(void **out, size_t al, size_t n) {
    count_one();
    void *q = __libc_memalign(al, n);
    if (!q) return ENOMEM;
    *out = q;
    return 0;
}
#endif

/* ---- building ONNX models in memory ------------------------------------------------------
 * A few lines of protobuf encoding (varints and length-delimited fields) are enough to
 * write the ModelProto subset these tests need, without the generated onnx.pb-c.h. */
typedef struct pbuf {
    uint8_t *d;
    size_t n, cap;
} pbuf;

static void pb_raw(pbuf *b, const void *p, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->d = realloc(b->d, b->cap);
        if (!b->d) abort();
    }
    memcpy(b->d + b->n, p, n);
    b->n += n;
}
static void pb_varint(pbuf *b, uint64_t v) {
    uint8_t t[10];
    int n = 0;
    do {
        t[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    pb_raw(b, t, (size_t)n);
}
static void pb_int(pbuf *b, int field, int64_t v) {
    pb_varint(b, (uint64_t)field << 3);
    pb_varint(b, (uint64_t)v);
}
static void pb_bytes(pbuf *b, int field, const void *p, size_t n) {
    pb_varint(b, (uint64_t)field << 3 | 2);
    pb_varint(b, n);
    pb_raw(b, p, n);
}
static void pb_str(pbuf *b, int field, const char *s) { pb_bytes(b, field, s, strlen(s)); }
/* Append sub as a nested message and release it. */
static void pb_msg(pbuf *b, int field, pbuf *sub) {
    pb_bytes(b, field, sub->d ? sub->d : (uint8_t *)"", sub->n);
    free(sub->d);
    memset(sub, 0, sizeof *sub);
}

typedef struct mb {
    pbuf graph;               /* GraphProto fields except the nodes */
    pbuf nodes[32];           /* NodeProto bodies, in order */
    int n_nodes;
    int64_t opset;
    int n_ins;                /* graph inputs, in order: shapes for the plan */
    int in_ndim[8];
    int64_t in_dims[8][IT_MAX_DIMS];
} mb;

static void mb_init(mb *m, int64_t opset) {
    memset(m, 0, sizeof *m);
    m->opset = opset;
}

static void mb_free(mb *m) {
    free(m->graph.d);
    for (int i = 0; i < m->n_nodes; i++) free(m->nodes[i].d);
    memset(m, 0, sizeof *m);
}

/* ValueInfoProto{name=1, type=2: TypeProto{tensor_type=1: {elem_type=1, shape=2}}} */
static void mb_value_info(mb *m, int field, const char *name, int ndim, const int64_t *dims) {
    pbuf vi = {0}, tp = {0}, tt = {0}, sh = {0};
    pb_str(&vi, 1, name);
    pb_int(&tt, 1, IT_F32);
    if (ndim >= 0) {
        for (int k = 0; k < ndim; k++) {
            pbuf d = {0};
            pb_int(&d, 1, dims[k]);
            pb_msg(&sh, 1, &d);
        }
        pb_msg(&tt, 2, &sh);
    }
    pb_msg(&tp, 1, &tt);
    pb_msg(&vi, 2, &tp);
    pb_msg(&m->graph, field, &vi);
}

static void mb_input(mb *m, const char *name, int ndim, const int64_t *dims) {
    m->in_ndim[m->n_ins] = ndim;
    if (ndim > 0) memcpy(m->in_dims[m->n_ins], dims, (size_t)ndim * sizeof *dims);
    m->n_ins++;
    mb_value_info(m, 11, name, ndim, dims);
}

static void mb_output(mb *m, const char *name) { mb_value_info(m, 12, name, -1, NULL); }

/* TensorProto{dims=1, data_type=2, name=8, raw_data=9} as an initializer (field 5). */
static void mb_tensor(mb *m, const char *name, int dtype, int ndim, const int64_t *dims,
                      const void *data, size_t nbytes) {
    pbuf t = {0};
    for (int k = 0; k < ndim; k++) pb_int(&t, 1, dims[k]);
    pb_int(&t, 2, dtype);
    pb_str(&t, 8, name);
    pb_bytes(&t, 9, data, nbytes);
    pb_msg(&m->graph, 5, &t);
}

static uint32_t rng_state = 12345;
static float frand(void) {   /* uniform in [-1, 1) */
    rng_state = rng_state * 1664525u + 1013904223u;
    return (float)((rng_state >> 8) & 0xffffff) / 8388608.0f - 1.0f;
}

/* A float initializer of random values scaled by `scale`. */
static void mb_weights(mb *m, const char *name, int ndim, const int64_t *dims, float scale) {
    int64_t n = 1;
    for (int k = 0; k < ndim; k++) n *= dims[k];
    float *v = malloc((size_t)n * sizeof *v);
    if (!v) abort();
    for (int64_t i = 0; i < n; i++) v[i] = frand() * scale;
    mb_tensor(m, name, IT_F32, ndim, dims, v, (size_t)n * sizeof *v);
    free(v);
}

static void mb_floats(mb *m, const char *name, int n, const float *v) {
    int64_t d = n;
    mb_tensor(m, name, IT_F32, 1, &d, v, (size_t)n * sizeof *v);
}

static void mb_ints(mb *m, const char *name, int n, const int64_t *v) {
    int64_t d = n;
    mb_tensor(m, name, IT_I64, 1, &d, v, (size_t)n * sizeof *v);
}

/* NodeProto{input=1, output=2, name=3, op_type=4, attribute=5}; ins and outs are comma
 * lists, an empty name marks an omitted optional input. Returns the node's handle. */
static pbuf *mb_node(mb *m, const char *op, const char *ins, const char *outs) {
    pbuf *n = &m->nodes[m->n_nodes++];
    const char *lists[2] = {ins, outs};
    for (int f = 0; f < 2; f++) {
        const char *s = lists[f];
        while (*s) {
            const char *e = strchr(s, ',');
            size_t len = e ? (size_t)(e - s) : strlen(s);
            pb_bytes(n, f + 1, s, len);
            s = e ? e + 1 : s + len;
            if (e && !*s) pb_bytes(n, f + 1, "", 0);   /* trailing empty name */
        }
    }
    char name[48];
    snprintf(name, sizeof name, "%s_%d", op, m->n_nodes);
    pb_str(n, 3, name);
    pb_str(n, 4, op);
    return n;
}

/* AttributeProto{name=1, f=2, i=3, s=4, ints=8, type=20} */
static void attr_i(mb *m, pbuf *n, const char *name, int64_t v) {
    (void)m;
    pbuf a = {0};
    pb_str(&a, 1, name);
    pb_int(&a, 3, v);
    pb_int(&a, 20, IT_ATTR_INT);
    pb_msg(n, 5, &a);
}

static void attr_s(mb *m, pbuf *n, const char *name, const char *v) {
    (void)m;
    pbuf a = {0};
    pb_str(&a, 1, name);
    pb_str(&a, 4, v);
    pb_int(&a, 20, IT_ATTR_STRING);
    pb_msg(n, 5, &a);
}

static void attr_ints(mb *m, pbuf *n, const char *name, int cnt, const int64_t *v) {
    (void)m;
    pbuf a = {0};
    pb_str(&a, 1, name);
    for (int k = 0; k < cnt; k++) pb_int(&a, 8, v[k]);
    pb_int(&a, 20, IT_ATTR_INTS);
    pb_msg(n, 5, &a);
}

#define INTS(...) (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (const int64_t[]){__VA_ARGS__}

/* ModelProto{ir_version=1, opset_import=8: {domain=1, version=2}, graph=7}; the caller
 * frees the returned buffer. */
static uint8_t *mb_pack(mb *m, size_t *len) {
    pbuf model = {0}, os = {0}, g = {0};
    pb_int(&model, 1, 8);
    pb_str(&os, 1, "");
    pb_int(&os, 2, m->opset);
    pb_msg(&model, 8, &os);
    for (int i = 0; i < m->n_nodes; i++) pb_bytes(&g, 1, m->nodes[i].d, m->nodes[i].n);
    pb_str(&g, 2, "test");
    pb_raw(&g, m->graph.d, m->graph.n);
    pb_msg(&model, 7, &g);
    *len = model.n;
    return model.d;
}

/* ---- comparing the backends -------------------------------------------------------------- */

typedef struct diff {
    double rel_l2, max_abs;
} diff;

static diff compare(const float *ref, const float *got, int64_t n) {
    double num = 0, den = 0, mx = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)got[i] - ref[i];
        if (isnan(got[i]) != isnan(ref[i])) d = INFINITY;
        num += d * d;
        den += (double)ref[i] * ref[i];
        if (fabs(d) > mx || isnan(d)) mx = fabs(d);
    }
    diff r = {den > 0 ? sqrt(num / den) : sqrt(num), mx};
    return r;
}

static void write_inputs(it_plan *p, const it_graph *g, float *const *data) {
    for (int i = 0; i < g->n_inputs; i++) {
        it_tensor *t = &p->t[g->inputs[i]];
        memcpy(t->data, data[i], t->nbytes);
    }
}

#ifdef ITSCAM_HAVE_CPU
/* Whether oneDNN picks a blocked activation layout here: set once any case (the single
 * Convs run first) compiled a blocked step. */
static int saw_blocked;

/* Number of steps of op `op` that the cpu program runs natively. */
static int native_steps(const it_plan *p, const void *prog, int op) {
    int n = 0;
    for (int i = 0; i < p->n_steps; i++)
        if (p->steps[i].def && (int)p->steps[i].def->id == op && it_cpu_step_native(prog, i)) n++;
    return n;
}
#endif

/* Layout chains set this: at least this many steps of the next case must work in the
 * blocked layout (when oneDNN's convolution picks one on this machine). */
static int min_blocked;

/* Build, plan and run the model of m on random inputs with ref and cpu; every graph
 * output must agree. `native_op` (an IT_OP_*, 0 for none) must run on oneDNN. */
static void run_case(const char *name, mb *m, int native_op) {
    size_t len;
    uint8_t *buf = mb_pack(m, &len);
    it_graph *g = NULL;
    it_plan *p = NULL;
    void *rprog = NULL, *cprog = NULL;
    float *in[8] = {0}, *ref_out[8] = {0};
    const it_backend *ref = it_backend_find("ref"), *cpu = it_backend_find("cpu");
    int st = it_onnx_load(buf, len, name, &g);
    free(buf);
    CHECKF(st == 0, "%s: load: %s", name, itscam_last_error());
    if (st) goto done;
    it_tensor shapes[8];
    memset(shapes, 0, sizeof shapes);
    for (int i = 0; i < m->n_ins; i++) {
        shapes[i].dtype = IT_F32;
        shapes[i].ndim = m->in_ndim[i];
        memcpy(shapes[i].dims, m->in_dims[i], sizeof shapes[i].dims);
        int64_t n = it_tensor_numel(&shapes[i]);
        in[i] = malloc((size_t)n * sizeof(float));
        for (int64_t k = 0; k < n; k++) in[i][k] = frand() * 2.0f;
    }
    st = it_plan_create(g, shapes, m->n_ins, &p);
    CHECKF(st == 0, "%s: plan: %s", name, itscam_last_error());
    if (st) goto done;
    it_backend_opts opts = {0};
    write_inputs(p, g, in);
    CHECK_OK(ref->compile(p, &opts, &rprog));
    if (!rprog) goto done;
    st = ref->run(rprog);
    CHECKF(st == 0, "%s: ref run: %s", name, itscam_last_error());
    if (st) goto done;
    for (int o = 0; o < g->n_outputs; o++) {
        const it_tensor *t = &p->t[g->outputs[o]];
        ref_out[o] = malloc(t->nbytes ? t->nbytes : 1);
        memcpy(ref_out[o], t->data, t->nbytes);
        memset(t->data, 0xff, t->nbytes);   /* NaN: catches an output the cpu run skips */
    }
    st = cpu->compile(p, &opts, &cprog);
    CHECKF(st == 0, "%s: cpu compile: %s", name, itscam_last_error());
    if (st) goto done;
#ifdef ITSCAM_HAVE_CPU
    if (native_op) CHECKF(native_steps(p, cprog, native_op) > 0, "%s: not run by oneDNN", name);
    int blocked = 0;
    for (int i = 0; i < p->n_steps; i++) blocked += it_cpu_step_blocked(cprog, i);
    saw_blocked |= blocked > 0;
    if (min_blocked && saw_blocked)
        CHECKF(blocked >= min_blocked, "%s: %d steps blocked, %d expected", name, blocked, min_blocked);
#endif
    write_inputs(p, g, in);
    st = cpu->run(cprog);
    CHECKF(st == 0, "%s: cpu run: %s", name, itscam_last_error());
    if (st) goto done;
    for (int o = 0; o < g->n_outputs; o++) {
        const it_tensor *t = &p->t[g->outputs[o]];
        if (t->dtype != IT_F32) continue;
        diff d = compare(ref_out[o], t->data, it_tensor_numel(t));
        printf("  %-28s out%d numel %-8lld rel_l2 %.2e max_abs %.2e\n", name, o,
               (long long)it_tensor_numel(t), d.rel_l2, d.max_abs);
        CHECKF(d.rel_l2 < 1e-5, "%s: output %d rel L2 %.3e (max abs %.3e)", name, o, d.rel_l2, d.max_abs);
    }
done:
    if (cprog) cpu->destroy(cprog);
    if (rprog) ref->destroy(rprog);
    it_plan_free(p);
    it_graph_free(g);
    for (int i = 0; i < 8; i++) free(in[i]), free(ref_out[i]);
    mb_free(m);
}

/* ---- the operator cases ---------------------------------------------------------------- */

typedef struct conv_case {
    const char *name;
    int64_t n, c, h, w, m, k, stride, pad, group, dil;
    int bias, silu;
    const char *auto_pad;
} conv_case;

static void test_conv(void) {
    static const conv_case cases[] = {
        {"conv 1x1", 1, 16, 20, 20, 32, 1, 1, 0, 1, 1, 1, 0, NULL},
        {"conv 1x1 no bias", 2, 8, 9, 7, 12, 1, 1, 0, 1, 1, 0, 0, NULL},
        {"conv 3x3 s1 p1", 1, 16, 24, 24, 16, 3, 1, 1, 1, 1, 1, 0, NULL},
        {"conv 3x3 s2 p1", 1, 16, 24, 24, 32, 3, 2, 1, 1, 1, 1, 0, NULL},
        {"conv 3x3 s2 p1 odd", 1, 3, 33, 31, 16, 3, 2, 1, 1, 1, 1, 0, NULL},
        {"conv 1x1 s2", 1, 8, 10, 10, 8, 1, 2, 0, 1, 1, 1, 0, NULL},
        {"conv depthwise 3x3", 1, 32, 17, 17, 32, 3, 1, 1, 32, 1, 1, 0, NULL},
        {"conv depthwise 5x5 s2", 1, 24, 20, 20, 24, 5, 2, 2, 24, 1, 0, 0, NULL},
        {"conv grouped 3x3", 1, 16, 12, 12, 32, 3, 1, 1, 4, 1, 1, 0, NULL},
        {"conv 3x3 dilated 2", 1, 8, 16, 16, 8, 3, 1, 2, 1, 2, 1, 0, NULL},
        {"conv 3x3 SAME_UPPER s2", 1, 8, 15, 16, 8, 3, 2, 0, 1, 1, 1, 0, "SAME_UPPER"},
        {"conv 3x3 SAME_LOWER", 1, 8, 15, 16, 8, 4, 1, 0, 1, 1, 1, 0, "SAME_LOWER"},
        {"conv 3x3 VALID", 1, 8, 15, 16, 8, 3, 1, 0, 1, 1, 1, 0, "VALID"},
        {"conv+silu 3x3 s1", 1, 16, 20, 20, 32, 3, 1, 1, 1, 1, 1, 1, NULL},
        {"conv+silu 3x3 s2", 2, 16, 20, 20, 16, 3, 2, 1, 1, 1, 1, 1, NULL},
        {"conv+silu depthwise", 1, 32, 20, 20, 32, 3, 1, 1, 32, 1, 1, 1, NULL},
        {"conv+silu 1x1 no bias", 1, 64, 10, 10, 64, 1, 1, 0, 1, 1, 0, 1, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const conv_case *c = &cases[i];
        mb m;
        mb_init(&m, 12);
        mb_input(&m, "x", 4, (int64_t[]){c->n, c->c, c->h, c->w});
        float scale = 1.0f / sqrtf((float)(c->c / c->group * c->k * c->k));
        mb_weights(&m, "W", 4, (int64_t[]){c->m, c->c / c->group, c->k, c->k}, scale);
        if (c->bias) mb_weights(&m, "B", 1, (int64_t[]){c->m}, 0.5f);
        pbuf *n = mb_node(&m, "Conv", c->bias ? "x,W,B" : "x,W", "y");
        attr_ints(&m, n, "kernel_shape", INTS(c->k, c->k));
        attr_ints(&m, n, "strides", INTS(c->stride, c->stride));
        if (c->dil > 1) attr_ints(&m, n, "dilations", INTS(c->dil, c->dil));
        if (c->group > 1) attr_i(&m, n, "group", c->group);
        if (c->auto_pad) attr_s(&m, n, "auto_pad", c->auto_pad);
        else attr_ints(&m, n, "pads", INTS(c->pad, c->pad, c->pad, c->pad));
        if (c->silu) {
            mb_node(&m, "Sigmoid", "y", "s");
            mb_node(&m, "Mul", "y,s", "z");
            mb_output(&m, "z");
        } else {
            mb_output(&m, "y");
        }
        run_case(c->name, &m, IT_OP_CONV);
    }
}

static void test_maxpool(void) {
    struct {
        const char *name;
        int64_t h, w, k, s, p, ceil;
    } cases[] = {
        {"maxpool 5x5 s1 p2 (SPPF)", 20, 20, 5, 1, 2, 0},
        {"maxpool 2x2 s2", 16, 16, 2, 2, 0, 0},
        {"maxpool 2x2 s2 odd", 15, 17, 2, 2, 0, 0},
        {"maxpool 3x3 s2 ceil", 15, 16, 3, 2, 0, 1},
        {"maxpool 3x3 s2 p1 ceil", 14, 14, 3, 2, 1, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        mb m;
        mb_init(&m, 12);
        mb_input(&m, "x", 4, (int64_t[]){1, 8, cases[i].h, cases[i].w});
        pbuf *n = mb_node(&m, "MaxPool", "x", "y");
        attr_ints(&m, n, "kernel_shape", INTS(cases[i].k, cases[i].k));
        attr_ints(&m, n, "strides", INTS(cases[i].s, cases[i].s));
        attr_ints(&m, n, "pads", INTS(cases[i].p, cases[i].p, cases[i].p, cases[i].p));
        if (cases[i].ceil) attr_i(&m, n, "ceil_mode", 1);
        mb_output(&m, "y");
        run_case(cases[i].name, &m, IT_OP_MAXPOOL);
    }
}

/* Binary ops on two graph inputs of shapes a and b. */
static void binary_case(const char *name, const char *op, int na, const int64_t *a, int nb, const int64_t *b, int native) {
    mb m;
    mb_init(&m, 13);
    mb_input(&m, "a", na, a);
    mb_input(&m, "b", nb, b);
    mb_node(&m, op, "a,b", "y");
    mb_output(&m, "y");
    run_case(name, &m, native);
}

static void test_elementwise(void) {
    binary_case("add same", "Add", 4, (int64_t[]){1, 16, 20, 20}, 4, (int64_t[]){1, 16, 20, 20}, IT_OP_ADD);
    binary_case("mul same", "Mul", 3, (int64_t[]){2, 7, 33}, 3, (int64_t[]){2, 7, 33}, IT_OP_MUL);
    binary_case("add bcast channel", "Add", 4, (int64_t[]){1, 16, 8, 8}, 4, (int64_t[]){1, 16, 1, 1}, IT_OP_ADD);
    binary_case("mul bcast scalar", "Mul", 3, (int64_t[]){1, 4, 8400}, 0, NULL, IT_OP_MUL);
    binary_case("mul bcast swapped", "Mul", 3, (int64_t[]){1, 1, 8400}, 3, (int64_t[]){1, 4, 8400}, IT_OP_MUL);
    binary_case("sub bcast", "Sub", 3, (int64_t[]){1, 2, 8400}, 2, (int64_t[]){2, 8400}, IT_OP_SUB);
    binary_case("div bcast", "Div", 2, (int64_t[]){4, 5}, 1, (int64_t[]){5}, IT_OP_DIV);
    binary_case("add both bcast (ref)", "Add", 2, (int64_t[]){4, 1}, 2, (int64_t[]){1, 5}, 0);
    binary_case("sub swapped bcast (ref)", "Sub", 2, (int64_t[]){1, 5}, 2, (int64_t[]){4, 5}, 0);

    mb m;
    mb_init(&m, 13);
    mb_input(&m, "x", 4, (int64_t[]){1, 16, 20, 21});
    mb_node(&m, "Sigmoid", "x", "y");
    mb_output(&m, "y");
    run_case("sigmoid", &m, IT_OP_SIGMOID);

    /* Sigmoid and Mul feeding something other than a Conv: no fusion */
    mb_init(&m, 13);
    mb_input(&m, "x", 4, (int64_t[]){1, 8, 10, 10});
    mb_node(&m, "Sigmoid", "x", "s");
    mb_node(&m, "Mul", "x,s", "y");
    mb_output(&m, "y");
    run_case("silu unfused", &m, IT_OP_MUL);
}

static void test_shape_ops(void) {
    mb m;
    mb_init(&m, 13);
    mb_input(&m, "a", 4, (int64_t[]){1, 8, 10, 10});
    mb_input(&m, "b", 4, (int64_t[]){1, 16, 10, 10});
    pbuf *n = mb_node(&m, "Concat", "a,b,a", "y");
    attr_i(&m, n, "axis", 1);
    mb_output(&m, "y");
    run_case("concat channels", &m, 0);

    mb_init(&m, 13);
    mb_input(&m, "x", 4, (int64_t[]){1, 32, 6, 6});
    mb_ints(&m, "sizes", 2, (int64_t[]){16, 16});
    n = mb_node(&m, "Split", "x,sizes", "y0,y1");
    attr_i(&m, n, "axis", 1);
    mb_output(&m, "y0");
    mb_output(&m, "y1");
    run_case("split channels", &m, 0);

    mb_init(&m, 13);
    mb_input(&m, "x", 4, (int64_t[]){1, 16, 10, 12});
    mb_floats(&m, "scales", 4, (float[]){1, 1, 2, 2});
    n = mb_node(&m, "Resize", "x,,scales", "y");
    attr_s(&m, n, "mode", "nearest");
    mb_output(&m, "y");
    run_case("resize nearest 2x", &m, 0);

    mb_init(&m, 13);
    mb_input(&m, "x", 4, (int64_t[]){1, 2, 30, 40});
    n = mb_node(&m, "Transpose", "x", "y");
    attr_ints(&m, n, "perm", INTS(0, 1, 3, 2));
    mb_output(&m, "y");
    run_case("transpose 0132", &m, IT_OP_TRANSPOSE);

    mb_init(&m, 13);
    mb_input(&m, "x", 3, (int64_t[]){3, 5, 7});
    n = mb_node(&m, "Transpose", "x", "y");
    mb_output(&m, "y");
    run_case("transpose reverse", &m, IT_OP_TRANSPOSE);

    mb_init(&m, 13);
    mb_input(&m, "x", 4, (int64_t[]){1, 64, 20, 20});
    mb_ints(&m, "shape", 3, (int64_t[]){1, 64, -1});
    mb_node(&m, "Reshape", "x,shape", "r");
    mb_node(&m, "Sigmoid", "r", "y");   /* the reshaped view feeds a real kernel */
    mb_output(&m, "y");
    run_case("reshape+sigmoid", &m, 0);
}

static void test_matmul_softmax(void) {
    mb m;
    mb_init(&m, 13);
    mb_input(&m, "a", 3, (int64_t[]){2, 17, 32});
    mb_input(&m, "b", 3, (int64_t[]){2, 32, 9});
    mb_node(&m, "MatMul", "a,b", "y");
    mb_output(&m, "y");
    run_case("matmul batched", &m, IT_OP_MATMUL);

    mb_init(&m, 13);
    mb_input(&m, "a", 4, (int64_t[]){1, 2, 100, 32});
    mb_input(&m, "b", 2, (int64_t[]){32, 100});
    mb_node(&m, "MatMul", "a,b", "y");
    mb_output(&m, "y");
    run_case("matmul broadcast", &m, IT_OP_MATMUL);

    mb_init(&m, 13);
    mb_input(&m, "a", 3, (int64_t[]){2, 17, 32});
    mb_weights(&m, "b", 2, (int64_t[]){32, 8}, 0.2f);
    mb_node(&m, "MatMul", "a,b", "y");
    mb_output(&m, "y");
    run_case("matmul const weights", &m, IT_OP_MATMUL);

    /* opset 12 (yolo11n): coerced to 2-D at axis */
    mb_init(&m, 12);
    mb_input(&m, "x", 4, (int64_t[]){1, 2, 100, 100});
    pbuf *n = mb_node(&m, "Softmax", "x", "y");
    attr_i(&m, n, "axis", -1);
    mb_output(&m, "y");
    run_case("softmax axis -1 opset12", &m, IT_OP_SOFTMAX);

    mb_init(&m, 12);
    mb_input(&m, "x", 3, (int64_t[]){3, 4, 5});
    mb_node(&m, "Softmax", "x", "y");
    mb_output(&m, "y");
    run_case("softmax default opset12", &m, IT_OP_SOFTMAX);

    mb_init(&m, 13);
    mb_input(&m, "x", 3, (int64_t[]){3, 16, 5});
    n = mb_node(&m, "Softmax", "x", "y");
    attr_i(&m, n, "axis", 1);
    mb_output(&m, "y");
    run_case("softmax axis 1 opset13", &m, IT_OP_SOFTMAX);
}

/* ---- layout propagation: chains whose inner tensors stay in oneDNN's blocked layout ----
 * Channel counts that are and are not multiples of the 8 (AVX2) or 16 (AVX-512) channel
 * block, so padded blocked copies and the reorders at plain boundaries are exercised. */

/* Conv (+SiLU) node from x to y: c input channels, m output channels, k x k, stride s. */
static void chain_conv(mb *m, const char *x, const char *y, int64_t c, int64_t oc, int64_t k, int64_t s, int silu) {
    char w[32], b[32], t[40], sg[40];
    snprintf(w, sizeof w, "W_%s", y);
    snprintf(b, sizeof b, "B_%s", y);
    mb_weights(m, w, 4, (int64_t[]){oc, c, k, k}, 1.0f / sqrtf((float)(c * k * k)));
    mb_weights(m, b, 1, (int64_t[]){oc}, 0.3f);
    char ins[80];
    snprintf(ins, sizeof ins, "%s,%s,%s", x, w, b);
    snprintf(t, sizeof t, "%s_c", y);
    pbuf *n = mb_node(m, "Conv", ins, silu ? t : y);
    attr_ints(m, n, "kernel_shape", INTS(k, k));
    attr_ints(m, n, "strides", INTS(s, s));
    attr_ints(m, n, "pads", INTS(k / 2, k / 2, k / 2, k / 2));
    if (silu) {
        snprintf(sg, sizeof sg, "%s_s", y);
        snprintf(ins, sizeof ins, "%s", t);
        mb_node(m, "Sigmoid", ins, sg);
        snprintf(ins, sizeof ins, "%s,%s", t, sg);
        mb_node(m, "Mul", ins, y);
    }
}

static void test_layout_chains(void) {
    static const int64_t chans[] = {3, 12, 16, 24, 80};
    char name[64];
    for (size_t ci = 0; ci < sizeof chans / sizeof *chans; ci++) {
        int64_t c = chans[ci], h = 13, w = 11;
        mb m;

        /* Conv -> Conv -> Conv: blocked in between, the output back to plain */
        snprintf(name, sizeof name, "chain conv-conv c%lld", (long long)c);
        mb_init(&m, 12);
        mb_input(&m, "x", 4, (int64_t[]){1, c, h, w});
        chain_conv(&m, "x", "a", c, c, 3, 1, 1);
        chain_conv(&m, "a", "b", c, 2 * c, 1, 1, 1);
        chain_conv(&m, "b", "y", 2 * c, c, 3, 2, 0);
        mb_output(&m, "y");
        min_blocked = c < 4 ? 1 : 3;   /* Convs to fewer than 4 channels stay plain */
        run_case(name, &m, IT_OP_CONV);

        /* SPPF: Conv -> MaxPool x3 -> Concat -> Conv */
        snprintf(name, sizeof name, "chain sppf c%lld", (long long)c);
        mb_init(&m, 12);
        mb_input(&m, "x", 4, (int64_t[]){1, c, h, w});
        chain_conv(&m, "x", "a", c, c, 1, 1, 1);
        const char *pools[3][2] = {{"a", "p1"}, {"p1", "p2"}, {"p2", "p3"}};
        for (int k = 0; k < 3; k++) {
            pbuf *n = mb_node(&m, "MaxPool", pools[k][0], pools[k][1]);
            attr_ints(&m, n, "kernel_shape", INTS(5, 5));
            attr_ints(&m, n, "strides", INTS(1, 1));
            attr_ints(&m, n, "pads", INTS(2, 2, 2, 2));
        }
        pbuf *n = mb_node(&m, "Concat", "a,p1,p2,p3", "cat");
        attr_i(&m, n, "axis", 1);
        chain_conv(&m, "cat", "y", 4 * c, c, 1, 1, 1);
        mb_output(&m, "y");
        min_blocked = c < 4 ? 0 : 6;   /* Convs, MaxPools and the Concat */
        run_case(name, &m, IT_OP_MAXPOOL);

        /* C2f-like: Conv -> Split -> Conv (+ residual Add) -> Concat -> Conv */
        snprintf(name, sizeof name, "chain split-add c%lld", (long long)(2 * c));
        mb_init(&m, 12);
        mb_input(&m, "x", 4, (int64_t[]){1, c, h, w});
        chain_conv(&m, "x", "a", c, 2 * c, 1, 1, 1);
        n = mb_node(&m, "Split", "a", "s0,s1");
        attr_i(&m, n, "axis", 1);
        attr_ints(&m, n, "split", INTS(c, c));
        chain_conv(&m, "s1", "m1", c, c, 3, 1, 1);
        chain_conv(&m, "m1", "m2", c, c, 3, 1, 1);
        mb_node(&m, "Add", "s1,m2", "r");
        n = mb_node(&m, "Concat", "s0,s1,r", "cat");
        attr_i(&m, n, "axis", 1);
        chain_conv(&m, "cat", "y", 3 * c, c, 1, 1, 1);
        mb_output(&m, "y");
        mb_output(&m, "s0");   /* a blocked value that is also a graph output */
        min_blocked = c < 4 ? 1 : c % 8 ? 4 : 7;   /* Split, Add, Concat blocked when the halves align */
        run_case(name, &m, IT_OP_SPLIT);

        /* FPN: Conv -> Resize 2x -> Concat with a larger map -> Conv */
        snprintf(name, sizeof name, "chain resize-concat c%lld", (long long)c);
        mb_init(&m, 13);
        mb_input(&m, "x", 4, (int64_t[]){1, c, h, w});
        mb_input(&m, "z", 4, (int64_t[]){1, c, 2 * h, 2 * w});
        chain_conv(&m, "x", "a", c, c, 3, 1, 1);
        chain_conv(&m, "z", "b", c, c, 1, 1, 1);
        mb_floats(&m, "scales", 4, (float[]){1, 1, 2, 2});
        n = mb_node(&m, "Resize", "a,,scales", "u");
        attr_s(&m, n, "mode", "nearest");
        attr_s(&m, n, "coordinate_transformation_mode", "asymmetric");
        attr_s(&m, n, "nearest_mode", "floor");
        n = mb_node(&m, "Concat", "u,b", "cat");
        attr_i(&m, n, "axis", 1);
        chain_conv(&m, "cat", "y", 2 * c, c, 3, 1, 1);
        mb_output(&m, "y");
        min_blocked = c < 4 ? 0 : 5;
        run_case(name, &m, IT_OP_RESIZE);
    }

    /* A blocked Conv output that a layout-unaware step (Reshape) and a blocked Conv both
     * read, and a plain graph input added to a blocked tensor. */
    mb m;
    mb_init(&m, 13);
    mb_input(&m, "x", 4, (int64_t[]){1, 24, 10, 10});
    mb_input(&m, "e", 4, (int64_t[]){1, 24, 10, 10});
    chain_conv(&m, "x", "a", 24, 24, 3, 1, 1);
    mb_ints(&m, "shape", 3, (int64_t[]){1, 24, -1});
    mb_node(&m, "Reshape", "a,shape", "r");
    mb_node(&m, "Softmax", "r", "sm");
    chain_conv(&m, "a", "b", 24, 24, 1, 1, 0);
    mb_node(&m, "Add", "b,e", "y");
    mb_node(&m, "Sigmoid", "y", "ys");
    mb_output(&m, "sm");
    mb_output(&m, "ys");
    min_blocked = 3;   /* the Convs and the Add */
    run_case("chain boundaries", &m, IT_OP_CONV);

    /* Resize by 3 with half_pixel coordinates, and a split at an unaligned offset */
    mb_init(&m, 13);
    mb_input(&m, "x", 4, (int64_t[]){1, 20, 7, 5});
    chain_conv(&m, "x", "a", 20, 20, 3, 1, 1);
    mb_floats(&m, "scales", 4, (float[]){1, 1, 3, 3});
    pbuf *n = mb_node(&m, "Resize", "a,,scales", "u");
    attr_s(&m, n, "mode", "nearest");
    mb_ints(&m, "sizes", 2, (int64_t[]){4, 16});
    n = mb_node(&m, "Split", "u,sizes", "u0,u1");
    attr_i(&m, n, "axis", 1);
    chain_conv(&m, "u1", "y", 16, 8, 3, 2, 1);
    mb_output(&m, "u0");
    mb_output(&m, "y");
    min_blocked = 3;   /* the Convs and the Resize; the Split runs plain */
    run_case("chain resize3 unaligned split", &m, IT_OP_RESIZE);
    min_blocked = 0;
}

/* Every allocation of cpu compile may fail: the failure is reported and nothing leaks
 * (AddressSanitizer's leak check sees the rest). */
static void test_compile_failures(void) {
    mb m;
    mb_init(&m, 12);
    mb_input(&m, "x", 4, (int64_t[]){1, 8, 12, 12});
    mb_weights(&m, "W", 4, (int64_t[]){16, 8, 3, 3}, 0.2f);
    mb_weights(&m, "B", 1, (int64_t[]){16}, 0.2f);
    mb_node(&m, "Conv", "x,W,B", "y");
    mb_node(&m, "Sigmoid", "y", "s");
    mb_node(&m, "Mul", "y,s", "z");
    pbuf *n = mb_node(&m, "MaxPool", "z", "o");
    attr_ints(&m, n, "kernel_shape", INTS(2, 2));
    attr_ints(&m, n, "strides", INTS(2, 2));
    mb_output(&m, "o");
    size_t len;
    uint8_t *buf = mb_pack(&m, &len);
    mb_free(&m);
    it_graph *g = NULL;
    it_plan *p = NULL;
    CHECK_OK(it_onnx_load(buf, len, "faults", &g));
    free(buf);
    it_tensor shape = {.dtype = IT_F32, .ndim = 4, .dims = {1, 8, 12, 12}};
    if (g) CHECK_OK(it_plan_create(g, &shape, 1, &p));
    if (!p) goto done;
    const it_backend *cpu = it_backend_find("cpu");
    it_backend_opts opts = {0};
    int ok = 0;
    for (int k = 0; k < 20 && !ok; k++) {
        void *prog = NULL;
        it_alloc_fail_after(k);
        int st = cpu->compile(p, &opts, &prog);
        it_alloc_fail_after(-1);
        CHECKF(st == 0 || st == ITSCAM_ERR_NOMEM, "compile failing after %d allocations: %d %s", k, st, itscam_last_error());
        CHECK((st == 0) == (prog != NULL));
        if (st == 0) {
            ok = 1;
            CHECK_OK(cpu->run(prog));
            cpu->destroy(prog);
        }
    }
    CHECK(ok);
done:
    it_plan_free(p);
    it_graph_free(g);
}

/* ---- yolo11n end to end ------------------------------------------------------------------ */

static float *read_f32(const char *path, int64_t n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    float *v = malloc((size_t)n * sizeof *v);
    if (v && fread(v, sizeof *v, (size_t)n, f) != (size_t)n) free(v), v = NULL;
    fclose(f);
    return v;
}

static void test_yolo(void) {
    char mp[1024], ip[1024], op[1024];
    if (!shared_path(mp, sizeof mp, "models/yolo11n.onnx") ||
        !shared_path(ip, sizeof ip, "reference/raw/bus-640.input.f32") ||
        !shared_path(op, sizeof op, "reference/raw/bus-640.yolo11n.output.f32")) {
        printf("  yolo11n: skipped, %s/models/yolo11n.onnx or reference/raw/bus-640.* absent\n", shared_dir());
        return;
    }
    const int64_t n_in = 3 * 640 * 640, n_out = 84 * 8400;
    float *in = read_f32(ip, n_in), *want = read_f32(op, n_out);
    uint8_t *buf = NULL;
    size_t len = 0;
    it_graph *g = NULL;
    it_plan *p = NULL;
    void *prog = NULL;
    const it_backend *cpu = it_backend_find("cpu"), *ref = it_backend_find("ref");
    CHECK(in && want);
    if (!in || !want) goto done;
    CHECK_OK(it_read_file(mp, &buf, &len, (size_t)1 << 30));
    if (!buf) goto done;
    CHECK_OK(it_onnx_load(buf, len, mp, &g));
    if (!g) goto done;
    it_tensor shape = {.dtype = IT_F32, .ndim = 4, .dims = {1, 3, 640, 640}};
    CHECK_OK(it_plan_create(g, &shape, 1, &p));
    if (!p) goto done;
    it_tensor *x = &p->t[g->inputs[0]], *y = &p->t[g->outputs[0]];
    CHECK(it_tensor_numel(y) == n_out);
    it_backend_opts opts = {0};
    double t0 = it_now_ms();
    CHECK_OK(cpu->compile(p, &opts, &prog));
    double t_compile = it_now_ms() - t0;
    if (!prog) goto done;
#ifdef ITSCAM_HAVE_CPU
    int native = 0;
    for (int i = 0; i < p->n_steps; i++) native += it_cpu_step_native(prog, i);
    char desc[256];
    it_cpu_describe(desc, sizeof desc);
    printf("  yolo11n: %s; %d of %d steps on oneDNN, compile %.0f ms\n", desc, native, p->n_steps, t_compile);
#endif
    memcpy(x->data, in, (size_t)n_in * sizeof(float));
    CHECK_OK(cpu->run(prog));
    diff d = compare(want, y->data, n_out);
    printf("  yolo11n cpu vs onnxruntime: rel_l2 %.2e max_abs %.2e\n", d.rel_l2, d.max_abs);
    CHECKF(d.rel_l2 < 1e-4, "yolo11n cpu: rel L2 %.3e vs ONNX Runtime", d.rel_l2);

    /* Steady state: after the warm-up run above, no allocation at all. */
    uint64_t a0 = it_alloc_count(), h0 = heap_count();
    size_t used0 = mallinfo2().uordblks;
    double best = 1e30;
    for (int r = 0; r < 10; r++) {
        memcpy(x->data, in, (size_t)n_in * sizeof(float));
        double t = it_now_ms();
        CHECK_OK(cpu->run(prog));
        t = it_now_ms() - t;
        if (t < best) best = t;
    }
    uint64_t a1 = it_alloc_count(), h1 = heap_count();
    size_t used1 = mallinfo2().uordblks;
    CHECKF(a1 == a0, "cpu run allocated %llu times through it_malloc", (unsigned long long)(a1 - a0));
    if (HEAP_COUNTING)
        printf("  yolo11n cpu: 10 runs, it_malloc allocations %llu, process heap allocations %llu (%.1f per run)\n",
               (unsigned long long)(a1 - a0), (unsigned long long)(h1 - h0), (double)(h1 - h0) / 10);
    /* oneDNN's own per-execution allocations are freed before it returns: the heap in use
     * must not grow from run to run */
    if (HEAP_COUNTING)
        printf("  yolo11n cpu: heap in use before/after 10 runs %zu/%zu bytes\n", used0, used1);
    printf("  yolo11n cpu: best of 10 runs %.1f ms\n", best);
    d = compare(want, y->data, n_out);
    CHECKF(d.rel_l2 < 1e-4, "yolo11n cpu (repeated): rel L2 %.3e", d.rel_l2);

    if (getenv("ITSCAM_TIME_REF")) {   /* the ref kernels are slow: only on request */
        void *rprog = NULL;
        CHECK_OK(ref->compile(p, &opts, &rprog));
        memcpy(x->data, in, (size_t)n_in * sizeof(float));
        double t = it_now_ms();
        CHECK_OK(ref->run(rprog));
        printf("  yolo11n ref: one run %.1f ms\n", it_now_ms() - t);
        ref->destroy(rprog);
    }
done:
    if (prog) cpu->destroy(prog);
    it_plan_free(p);
    it_graph_free(g);
    it_free(buf);
    free(in);
    free(want);
}

int main(void) {
    if (!it_backend_find("cpu")) SKIP("the cpu backend is not built (oneDNN absent)");
    test_conv();
    test_maxpool();
    test_elementwise();
    test_shape_ops();
    test_matmul_softmax();
    test_layout_chains();
    test_compile_failures();
    test_yolo();
    return check_done("test_kernels");
}
