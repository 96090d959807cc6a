/* The cpu backend: Conv, MaxPool, elementwise, MatMul, Softmax and Transpose steps run as
 * oneDNN primitives built once at compile time; every other step runs its ref kernel. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* RTLD_DEFAULT, sched_getaffinity */
#endif
#include "backend/cpu/cpu_backend.h"
#include "graph/ops_impl.h"

#include <oneapi/dnnl/dnnl.h>

#include <dlfcn.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <xmmintrin.h>

/* MXCSR flush-to-zero (bit 15) and denormals-are-zero (bit 6): denormal inputs make
 * x86 float arithmetic ~100x slower, and SiLU tails produce them. */
#define CSR_FTZ_DAZ 0x8040u

#define MAX_ARGS 8

typedef struct cpu_step {
    dnnl_primitive_t prim;            /* NULL: the step runs its ref kernel */
    int n_args;
    dnnl_exec_arg_t args[MAX_ARGS];
    int n_mem;
    dnnl_memory_t mem[MAX_ARGS];      /* owned, one per argument */
    void *weights;                    /* weights reordered to oneDNN's layout (owned) */
    size_t scratch_bytes;             /* the primitive's scratchpad */
} cpu_step;

typedef struct cpu_prog {
    const it_plan *p;
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    int threads;
    cpu_step *steps;
    void *scratch;                    /* shared by all primitives: steps run one at a time */
    size_t scratch_bytes;
} cpu_prog;

/* A builder turns step i into a primitive. It returns dnnl_unimplemented when the step
 * is outside what it handles (the step then runs its ref kernel), another failure
 * status with *what naming the call that failed. */
typedef dnnl_status_t (*build_fn)(cpu_prog *g, int i, cpu_step *cs, const char **what);

#define TRY(name, call)                        \
    do {                                       \
        dnnl_status_t s_ = (call);             \
        if (s_ != dnnl_success) {              \
            *what = (name);                    \
            st = s_;                           \
            goto out;                          \
        }                                      \
    } while (0)

/* ---- OpenMP threading -------------------------------------------------------------
 * Debian's libdnnl uses GNU OpenMP. The library is not built with -fopenmp, so the two
 * entry points we need are looked up at run time in the already loaded libgomp. */
typedef void (*omp_set_fn)(int);
typedef int (*omp_get_fn)(void);
typedef void (*gomp_parallel_fn)(void (*)(void *), void *, unsigned, unsigned);

static omp_set_fn omp_set_threads(void) {
    return (omp_set_fn)dlsym(RTLD_DEFAULT, "omp_set_num_threads");
}
static omp_get_fn omp_get_threads(void) {
    return (omp_get_fn)dlsym(RTLD_DEFAULT, "omp_get_max_threads");
}

static void set_ftz(void *unused) {
    (void)unused;
    _mm_setcsr(_mm_getcsr() | CSR_FTZ_DAZ);
}

/* OpenMP workers keep their MXCSR between parallel regions, so setting FTZ/DAZ once in
 * each of them covers every later oneDNN call made with the same team size. */
static void ftz_workers(int threads) {
    gomp_parallel_fn par = (gomp_parallel_fn)dlsym(RTLD_DEFAULT, "GOMP_parallel");
    if (!par) return;
    unsigned csr = _mm_getcsr();
    par(set_ftz, NULL, (unsigned)threads, 0);
    _mm_setcsr(csr);
}

int it_cpu_default_threads(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        return n > 0 ? (int)n : 1;
    }
    /* One thread per physical core: a cpu counts when it is the first of its SMT
     * siblings that we may run on. */
    int cores = 0;
    for (int c = 0; c < CPU_SETSIZE; c++) {
        if (!CPU_ISSET(c, &set)) continue;
        char path[96];
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%d/topology/thread_siblings_list", c);
        int first = c;
        FILE *f = fopen(path, "r");
        if (f) {
            if (fscanf(f, "%d", &first) != 1) first = c;
            fclose(f);
        }
        if (first == c || first < 0 || first >= CPU_SETSIZE || !CPU_ISSET(first, &set)) cores++;
    }
    return cores > 0 ? cores : 1;
}

/* ---- memory descriptors ------------------------------------------------------------ */

/* Plain row-major f32 (nchw for 4-D); rank 0 becomes [1] since oneDNN needs rank >= 1. */
static dnnl_status_t md_plain(dnnl_memory_desc_t *md, int ndim, const int64_t *dims) {
    dnnl_dims_t d, st;
    if (ndim == 0) {
        d[0] = 1, st[0] = 1;
        return dnnl_memory_desc_init_by_strides(md, 1, d, dnnl_f32, st);
    }
    int64_t acc = 1;
    for (int k = ndim - 1; k >= 0; k--) {
        d[k] = dims[k];
        st[k] = acc;
        acc *= dims[k];
    }
    return dnnl_memory_desc_init_by_strides(md, ndim, d, dnnl_f32, st);
}

/* Dims of t right-aligned to rank nd (numpy broadcasting), leading 1s. */
static void dims_to_rank(const it_tensor *t, int nd, int64_t *out) {
    for (int k = 0; k < nd; k++) {
        int j = k - (nd - t->ndim);
        out[k] = j >= 0 ? t->dims[j] : 1;
    }
}

static int is_f32_act(const it_tensor *t) {
    return t->dtype == IT_F32 && t->ndim >= 0 && t->data && it_tensor_numel(t) > 0;
}

static int is_const(const it_plan *p, int v) {
    return v >= 0 && p->offset[v] < 0 && p->t[v].data;
}

static dnnl_status_t add_mem(cpu_prog *g, cpu_step *cs, int arg, const dnnl_memory_desc_t *md,
                             const void *data) {
    if (cs->n_mem >= MAX_ARGS) return dnnl_out_of_memory;
    dnnl_memory_t m;
    /* oneDNN takes a non-const handle; inputs are only read */
    dnnl_status_t s = dnnl_memory_create(&m, md, g->engine, (void *)data);
    if (s != dnnl_success) return s;
    cs->mem[cs->n_mem++] = m;
    cs->args[cs->n_args].arg = arg;
    cs->args[cs->n_args].memory = m;
    cs->n_args++;
    return dnnl_success;
}

static void step_clear(cpu_step *cs) {
    if (cs->prim) dnnl_primitive_destroy(cs->prim);
    for (int k = 0; k < cs->n_mem; k++) dnnl_memory_destroy(cs->mem[k]);
    it_aligned_free(cs->weights);
    memset(cs, 0, sizeof *cs);
}

/* Attributes every primitive shares: a user scratchpad (oneDNN must not allocate one per
 * execution) and, when asked, a swish post-op (x*sigmoid(x), the planner's SiLU). */
static dnnl_status_t make_attr(dnnl_primitive_attr_t *attr, int silu) {
    dnnl_status_t s = dnnl_primitive_attr_create(attr);
    if (s != dnnl_success) return s;
    s = dnnl_primitive_attr_set_scratchpad_mode(*attr, dnnl_scratchpad_mode_user);
    if (s == dnnl_success && silu) {
        dnnl_post_ops_t ops;
        s = dnnl_post_ops_create(&ops);
        if (s == dnnl_success) {
            s = dnnl_post_ops_append_eltwise(ops, 1.0f, dnnl_eltwise_swish, 1.0f, 0.0f);
            if (s == dnnl_success) s = dnnl_primitive_attr_set_post_ops(*attr, ops);
            dnnl_post_ops_destroy(ops);
        }
    }
    if (s != dnnl_success) {
        dnnl_primitive_attr_destroy(*attr);
        *attr = NULL;
    }
    return s;
}

/* Create the primitive of pd and note its scratchpad size. */
static dnnl_status_t make_prim(cpu_step *cs, const_dnnl_primitive_desc_t pd) {
    const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    cs->scratch_bytes = smd ? dnnl_memory_desc_get_size(smd) : 0;
    return dnnl_primitive_create(&cs->prim, pd);
}

/* Run a reorder once (compile time: weights into oneDNN's preferred layout). */
static dnnl_status_t reorder_once(cpu_prog *g, const dnnl_memory_desc_t *smd, const void *src,
                                  const dnnl_memory_desc_t *dmd, void *dst) {
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t prim = NULL;
    dnnl_memory_t ms = NULL, md = NULL;
    dnnl_status_t s = dnnl_reorder_primitive_desc_create(&pd, smd, g->engine, dmd, g->engine, NULL);
    if (s == dnnl_success) s = dnnl_primitive_create(&prim, pd);
    if (s == dnnl_success) s = dnnl_memory_create(&ms, smd, g->engine, (void *)src);
    if (s == dnnl_success) s = dnnl_memory_create(&md, dmd, g->engine, dst);
    if (s == dnnl_success) {
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, ms}, {DNNL_ARG_TO, md}};
        s = dnnl_primitive_execute(prim, g->stream, 2, args);
    }
    if (s == dnnl_success) s = dnnl_stream_wait(g->stream);
    if (md) dnnl_memory_destroy(md);
    if (ms) dnnl_memory_destroy(ms);
    if (prim) dnnl_primitive_destroy(prim);
    if (pd) dnnl_primitive_desc_destroy(pd);
    return s;
}

/* ---- builders ------------------------------------------------------------------------ */

/* Spatial geometry shared by Conv and MaxPool: explicit pads or auto_pad for the left
 * side; the right pad is whatever makes oneDNN's output size equal the planned one,
 * which is how ONNX Runtime maps ceil_mode (and the floor of strided convs) onto it. */
static int spatial(const it_node *n, const it_tensor *x, const it_tensor *y, const int64_t *k,
                   dnnl_dims_t strides, dnnl_dims_t dil, dnnl_dims_t pl, dnnl_dims_t pr) {
    const int64_t *sv = NULL, *dv = NULL, *pv = NULL;
    int ns = it_attr_ints(n, "strides", &sv);
    int nd = it_attr_ints(n, "dilations", &dv);
    int np = it_attr_ints(n, "pads", &pv);
    const char *ap = it_attr_str(n, "auto_pad", "NOTSET");
    if ((ns && ns != 2) || (nd && nd != 2) || (np && np != 4)) return 0;
    for (int j = 0; j < 2; j++) {
        int64_t s = ns ? sv[j] : 1, d = nd ? dv[j] : 1;
        if (s < 1 || d < 1) return 0;
        int64_t in = x->dims[2 + j], out = y->dims[2 + j], range = (k[j] - 1) * d + 1;
        int64_t left;
        if (!strcmp(ap, "SAME_UPPER") || !strcmp(ap, "SAME_LOWER")) {
            int64_t total = IT_MAX(0, (out - 1) * s + range - in);
            left = !strcmp(ap, "SAME_UPPER") ? total / 2 : total - total / 2;
        } else if (!strcmp(ap, "VALID")) {
            left = 0;
        } else {
            left = np ? pv[j] : 0;
        }
        strides[j] = s;
        dil[j] = d - 1;   /* oneDNN counts the gaps, ONNX the step */
        pl[j] = left;
        pr[j] = (out - 1) * s + range - in - left;
        /* pr < 0 when the last rows are never reached (floor of a strided window);
         * oneDNN accepts that as long as the sizes agree */
        if (left < 0 || pr[j] < -(s - 1)) return 0;
    }
    return 1;
}

static dnnl_status_t build_conv(cpu_prog *g, int i, cpu_step *cs, const char **what) {
    const it_plan *p = g->p;
    const it_plan_step *s = &p->steps[i];
    const it_node *n = s->node;
    if (s->n_in < 2 || s->in[0] < 0 || s->in[1] < 0 || s->n_out < 1 || s->out[0] < 0)
        return dnnl_unimplemented;
    int bi = s->n_in > 2 ? s->in[2] : -1;
    const it_tensor *x = &p->t[s->in[0]], *w = &p->t[s->in[1]], *y = &p->t[s->out[0]];
    const it_tensor *b = bi >= 0 ? &p->t[bi] : NULL;
    if (!is_f32_act(x) || !is_f32_act(y) || w->dtype != IT_F32 || (b && b->dtype != IT_F32))
        return dnnl_unimplemented;
    if (x->ndim != 4 || w->ndim != 4 || y->ndim != 4) return dnnl_unimplemented;
    /* weights must be known now to be reordered once */
    if (!is_const(p, s->in[1]) || (b && !is_const(p, bi))) return dnnl_unimplemented;
    int64_t G = it_attr_int(n, "group", 1);
    int64_t C = x->dims[1], M = w->dims[0];
    if (G < 1 || C % G || M % G || w->dims[1] != C / G || y->dims[1] != M ||
        y->dims[0] != x->dims[0] || (b && it_tensor_numel(b) != M))
        return dnnl_unimplemented;
    const int64_t *ks = NULL;
    if (it_attr_ints(n, "kernel_shape", &ks) == 2 && (ks[0] != w->dims[2] || ks[1] != w->dims[3]))
        return dnnl_unimplemented;
    int64_t k[2] = {w->dims[2], w->dims[3]};
    dnnl_dims_t strides, dil, pl, pr;
    if (!spatial(n, x, y, k, strides, dil, pl, pr)) return dnnl_unimplemented;

    dnnl_status_t st = dnnl_success;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_memory_desc_t src_md, dst_md, w_any, w_user, b_md;
    TRY("memory descriptor", md_plain(&src_md, 4, x->dims));
    TRY("memory descriptor", md_plain(&dst_md, 4, y->dims));
    if (G == 1) {
        dnnl_dims_t wd = {M, C, k[0], k[1]};
        TRY("memory descriptor", dnnl_memory_desc_init_by_tag(&w_any, 4, wd, dnnl_f32, dnnl_format_tag_any));
        TRY("memory descriptor", dnnl_memory_desc_init_by_tag(&w_user, 4, wd, dnnl_f32, dnnl_oihw));
    } else {
        dnnl_dims_t wd = {G, M / G, C / G, k[0], k[1]};
        TRY("memory descriptor", dnnl_memory_desc_init_by_tag(&w_any, 5, wd, dnnl_f32, dnnl_format_tag_any));
        TRY("memory descriptor", dnnl_memory_desc_init_by_tag(&w_user, 5, wd, dnnl_f32, dnnl_goihw));
    }
    if (b) {
        dnnl_dims_t bd = {M};
        TRY("memory descriptor", dnnl_memory_desc_init_by_tag(&b_md, 1, bd, dnnl_f32, dnnl_x));
    }
    dnnl_convolution_desc_t cd;
    TRY("convolution descriptor",
        dnnl_dilated_convolution_forward_desc_init(&cd, dnnl_forward_inference, dnnl_convolution_direct,
                                                   &src_md, &w_any, b ? &b_md : NULL, &dst_md,
                                                   strides, dil, pl, pr));
    TRY("attributes", make_attr(&attr, s->activation == IT_ACT_SILU));
    TRY("convolution primitive descriptor", dnnl_primitive_desc_create(&pd, &cd, attr, g->engine, NULL));
    const dnnl_memory_desc_t *w_md = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    cs->weights = it_aligned_alloc(dnnl_memory_desc_get_size(w_md));
    TRY("weights allocation", cs->weights ? dnnl_success : dnnl_out_of_memory);
    TRY("weights reorder", reorder_once(g, &w_user, w->data, w_md, cs->weights));
    TRY("memory", add_mem(g, cs, DNNL_ARG_SRC, &src_md, x->data));
    TRY("memory", add_mem(g, cs, DNNL_ARG_WEIGHTS, w_md, cs->weights));
    if (b) TRY("memory", add_mem(g, cs, DNNL_ARG_BIAS, &b_md, b->data));
    TRY("memory", add_mem(g, cs, DNNL_ARG_DST, &dst_md, y->data));
    TRY("convolution primitive", make_prim(cs, pd));
out:
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return st;
}

static dnnl_status_t build_maxpool(cpu_prog *g, int i, cpu_step *cs, const char **what) {
    const it_plan *p = g->p;
    const it_plan_step *s = &p->steps[i];
    const it_node *n = s->node;
    /* the optional Indices output has no oneDNN counterpart */
    if (s->n_in < 1 || s->in[0] < 0 || s->n_out < 1 || s->out[0] < 0 || (s->n_out > 1 && s->out[1] >= 0))
        return dnnl_unimplemented;
    const it_tensor *x = &p->t[s->in[0]], *y = &p->t[s->out[0]];
    if (!is_f32_act(x) || !is_f32_act(y) || x->ndim != 4 || y->ndim != 4) return dnnl_unimplemented;
    const int64_t *ks = NULL;
    if (it_attr_ints(n, "kernel_shape", &ks) != 2) return dnnl_unimplemented;
    int64_t k[2] = {ks[0], ks[1]};
    dnnl_dims_t strides, dil, pl, pr, kernel = {k[0], k[1]};
    if (!spatial(n, x, y, k, strides, dil, pl, pr)) return dnnl_unimplemented;

    dnnl_status_t st = dnnl_success;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_memory_desc_t src_md, dst_md;
    TRY("memory descriptor", md_plain(&src_md, 4, x->dims));
    TRY("memory descriptor", md_plain(&dst_md, 4, y->dims));
    dnnl_pooling_v2_desc_t d;
    TRY("pooling descriptor", dnnl_pooling_v2_forward_desc_init(&d, dnnl_forward_inference, dnnl_pooling_max,
                                                                &src_md, &dst_md, strides, kernel, dil, pl, pr));
    TRY("attributes", make_attr(&attr, 0));
    TRY("pooling primitive descriptor", dnnl_primitive_desc_create(&pd, &d, attr, g->engine, NULL));
    TRY("memory", add_mem(g, cs, DNNL_ARG_SRC, &src_md, x->data));
    TRY("memory", add_mem(g, cs, DNNL_ARG_DST, &dst_md, y->data));
    TRY("pooling primitive", make_prim(cs, pd));
out:
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return st;
}

/* Add/Sub/Mul/Div. oneDNN broadcasts src1 only, so src0 must already have the output
 * shape; for the commutative ops the operands may be swapped to get there. */
static dnnl_status_t build_binary(cpu_prog *g, int i, cpu_step *cs, const char **what) {
    const it_plan *p = g->p;
    const it_plan_step *s = &p->steps[i];
    if (s->n_in != 2 || s->in[0] < 0 || s->in[1] < 0 || s->n_out < 1 || s->out[0] < 0)
        return dnnl_unimplemented;
    const it_tensor *a = &p->t[s->in[0]], *b = &p->t[s->in[1]], *y = &p->t[s->out[0]];
    if (!is_f32_act(a) || !is_f32_act(b) || !is_f32_act(y)) return dnnl_unimplemented;
    dnnl_alg_kind_t alg;
    int commutes = 0;
    switch (s->def->id) {
    case IT_OP_ADD: alg = dnnl_binary_add, commutes = 1; break;
    case IT_OP_MUL: alg = dnnl_binary_mul, commutes = 1; break;
    case IT_OP_SUB: alg = dnnl_binary_sub; break;
    case IT_OP_DIV: alg = dnnl_binary_div; break;
    default: return dnnl_unimplemented;
    }
    int nd = y->ndim > 0 ? y->ndim : 1;
    int64_t da[IT_MAX_DIMS], db[IT_MAX_DIMS], dy[IT_MAX_DIMS];
    if (y->ndim == 0) {
        da[0] = db[0] = dy[0] = 1;
    } else {
        dims_to_rank(a, nd, da);
        dims_to_rank(b, nd, db);
        dims_to_rank(y, nd, dy);
    }
    if (memcmp(da, dy, nd * sizeof *dy) != 0) {
        if (!commutes || memcmp(db, dy, nd * sizeof *dy) != 0) return dnnl_unimplemented;
        const it_tensor *t = a;
        a = b, b = t;
        int64_t tmp[IT_MAX_DIMS];
        memcpy(tmp, da, sizeof tmp), memcpy(da, db, sizeof tmp), memcpy(db, tmp, sizeof tmp);
    }
    for (int k = 0; k < nd; k++)
        if (db[k] != dy[k] && db[k] != 1) return dnnl_unimplemented;

    dnnl_status_t st = dnnl_success;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_memory_desc_t a_md, b_md, y_md;
    TRY("memory descriptor", md_plain(&a_md, nd, da));
    TRY("memory descriptor", md_plain(&b_md, nd, db));
    TRY("memory descriptor", md_plain(&y_md, nd, dy));
    dnnl_binary_desc_t d;
    TRY("binary descriptor", dnnl_binary_desc_init(&d, alg, &a_md, &b_md, &y_md));
    TRY("attributes", make_attr(&attr, 0));
    TRY("binary primitive descriptor", dnnl_primitive_desc_create(&pd, &d, attr, g->engine, NULL));
    TRY("memory", add_mem(g, cs, DNNL_ARG_SRC_0, &a_md, a->data));
    TRY("memory", add_mem(g, cs, DNNL_ARG_SRC_1, &b_md, b->data));
    TRY("memory", add_mem(g, cs, DNNL_ARG_DST, &y_md, y->data));
    TRY("binary primitive", make_prim(cs, pd));
out:
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return st;
}

static dnnl_status_t build_sigmoid(cpu_prog *g, int i, cpu_step *cs, const char **what) {
    const it_plan *p = g->p;
    const it_plan_step *s = &p->steps[i];
    if (s->n_in < 1 || s->in[0] < 0 || s->n_out < 1 || s->out[0] < 0) return dnnl_unimplemented;
    const it_tensor *x = &p->t[s->in[0]], *y = &p->t[s->out[0]];
    if (!is_f32_act(x) || !is_f32_act(y) || it_tensor_numel(x) != it_tensor_numel(y))
        return dnnl_unimplemented;
    /* elementwise: any shape is the same as a flat vector */
    int64_t len = it_tensor_numel(x);

    dnnl_status_t st = dnnl_success;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_memory_desc_t md;
    TRY("memory descriptor", md_plain(&md, 1, &len));
    dnnl_eltwise_desc_t d;
    TRY("eltwise descriptor", dnnl_eltwise_forward_desc_init(&d, dnnl_forward_inference, dnnl_eltwise_logistic,
                                                             &md, 0.0f, 0.0f));
    TRY("attributes", make_attr(&attr, 0));
    TRY("eltwise primitive descriptor", dnnl_primitive_desc_create(&pd, &d, attr, g->engine, NULL));
    TRY("memory", add_mem(g, cs, DNNL_ARG_SRC, &md, x->data));
    TRY("memory", add_mem(g, cs, DNNL_ARG_DST, &md, y->data));
    TRY("eltwise primitive", make_prim(cs, pd));
out:
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return st;
}

static dnnl_status_t build_softmax(cpu_prog *g, int i, cpu_step *cs, const char **what) {
    const it_plan *p = g->p;
    const it_plan_step *s = &p->steps[i];
    if (s->n_in < 1 || s->in[0] < 0 || s->n_out < 1 || s->out[0] < 0) return dnnl_unimplemented;
    const it_tensor *x = &p->t[s->in[0]], *y = &p->t[s->out[0]];
    if (!is_f32_act(x) || !is_f32_act(y) || x->ndim < 1 || it_tensor_numel(x) != it_tensor_numel(y))
        return dnnl_unimplemented;
    int nd = x->ndim;
    int64_t axis = it_attr_int(s->node, "axis", p->opset < 13 ? 1 : -1);
    if (axis < 0) axis += nd;
    if (axis < 0 || axis >= nd) return dnnl_unimplemented;
    int64_t dims[IT_MAX_DIMS];
    int md_nd, md_axis;
    if (p->opset < 13) {
        /* before opset 13 the input is coerced to 2-D at axis */
        dims[0] = dims[1] = 1;
        for (int k = 0; k < nd; k++) dims[k < axis ? 0 : 1] *= x->dims[k];
        md_nd = 2, md_axis = 1;
    } else {
        memcpy(dims, x->dims, nd * sizeof *dims);
        md_nd = nd, md_axis = (int)axis;
    }

    dnnl_status_t st = dnnl_success;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_memory_desc_t md;
    TRY("memory descriptor", md_plain(&md, md_nd, dims));
    dnnl_softmax_desc_t d;
    TRY("softmax descriptor", dnnl_softmax_forward_desc_init(&d, dnnl_forward_inference, &md, md_axis));
    TRY("attributes", make_attr(&attr, 0));
    TRY("softmax primitive descriptor", dnnl_primitive_desc_create(&pd, &d, attr, g->engine, NULL));
    TRY("memory", add_mem(g, cs, DNNL_ARG_SRC, &md, x->data));
    TRY("memory", add_mem(g, cs, DNNL_ARG_DST, &md, y->data));
    TRY("softmax primitive", make_prim(cs, pd));
out:
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return st;
}

/* MatMul with numpy batch broadcasting; oneDNN broadcasts batch dims of either side
 * once both have the output's rank. */
static dnnl_status_t build_matmul(cpu_prog *g, int i, cpu_step *cs, const char **what) {
    const it_plan *p = g->p;
    const it_plan_step *s = &p->steps[i];
    if (s->n_in != 2 || s->in[0] < 0 || s->in[1] < 0 || s->n_out < 1 || s->out[0] < 0)
        return dnnl_unimplemented;
    const it_tensor *a = &p->t[s->in[0]], *b = &p->t[s->in[1]], *y = &p->t[s->out[0]];
    if (!is_f32_act(a) || !is_f32_act(b) || !is_f32_act(y)) return dnnl_unimplemented;
    if (a->ndim < 2 || b->ndim < 2 || y->ndim != IT_MAX(a->ndim, b->ndim)) return dnnl_unimplemented;
    int nd = y->ndim;
    int64_t da[IT_MAX_DIMS], db[IT_MAX_DIMS];
    dims_to_rank(a, nd, da);
    dims_to_rank(b, nd, db);
    for (int k = 0; k < nd - 2; k++)
        if ((da[k] != y->dims[k] && da[k] != 1) || (db[k] != y->dims[k] && db[k] != 1))
            return dnnl_unimplemented;

    dnnl_status_t st = dnnl_success;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_memory_desc_t a_md, b_md, y_md;
    TRY("memory descriptor", md_plain(&a_md, nd, da));
    TRY("memory descriptor", md_plain(&b_md, nd, db));
    TRY("memory descriptor", md_plain(&y_md, nd, y->dims));
    dnnl_matmul_desc_t d;
    TRY("matmul descriptor", dnnl_matmul_desc_init(&d, &a_md, &b_md, NULL, &y_md));
    TRY("attributes", make_attr(&attr, 0));
    TRY("matmul primitive descriptor", dnnl_primitive_desc_create(&pd, &d, attr, g->engine, NULL));
    TRY("memory", add_mem(g, cs, DNNL_ARG_SRC, &a_md, a->data));
    TRY("memory", add_mem(g, cs, DNNL_ARG_WEIGHTS, &b_md, b->data));
    TRY("memory", add_mem(g, cs, DNNL_ARG_DST, &y_md, y->data));
    TRY("matmul primitive", make_prim(cs, pd));
out:
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return st;
}

/* Transpose as a reorder: the source seen through permuted strides, copied to plain. */
static dnnl_status_t build_transpose(cpu_prog *g, int i, cpu_step *cs, const char **what) {
    const it_plan *p = g->p;
    const it_plan_step *s = &p->steps[i];
    if (s->n_in < 1 || s->in[0] < 0 || s->n_out < 1 || s->out[0] < 0) return dnnl_unimplemented;
    const it_tensor *x = &p->t[s->in[0]], *y = &p->t[s->out[0]];
    if (!is_f32_act(x) || !is_f32_act(y) || x->ndim < 1 || y->ndim != x->ndim) return dnnl_unimplemented;
    int nd = x->ndim;
    int64_t perm[IT_MAX_DIMS];
    const int64_t *pv = NULL;
    int np = it_attr_ints(s->node, "perm", &pv);
    if (np && np != nd) return dnnl_unimplemented;
    for (int k = 0; k < nd; k++) {
        perm[k] = np ? pv[k] : nd - 1 - k;
        if (perm[k] < 0) perm[k] += nd;
        if (perm[k] < 0 || perm[k] >= nd || y->dims[k] != x->dims[perm[k]]) return dnnl_unimplemented;
    }
    dnnl_dims_t xs, vd, vs;
    int64_t acc = 1;
    for (int k = nd - 1; k >= 0; k--) xs[k] = acc, acc *= x->dims[k];
    for (int k = 0; k < nd; k++) vd[k] = y->dims[k], vs[k] = xs[perm[k]];

    dnnl_status_t st = dnnl_success;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_memory_desc_t src_md, dst_md;
    TRY("memory descriptor", dnnl_memory_desc_init_by_strides(&src_md, nd, vd, dnnl_f32, vs));
    TRY("memory descriptor", md_plain(&dst_md, nd, y->dims));
    TRY("attributes", make_attr(&attr, 0));
    TRY("reorder primitive descriptor",
        dnnl_reorder_primitive_desc_create(&pd, &src_md, g->engine, &dst_md, g->engine, attr));
    TRY("memory", add_mem(g, cs, DNNL_ARG_FROM, &src_md, x->data));
    TRY("memory", add_mem(g, cs, DNNL_ARG_TO, &dst_md, y->data));
    TRY("reorder primitive", make_prim(cs, pd));
out:
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return st;
}

/* Per-op builders; a NULL entry means the step always runs its ref kernel. */
static const build_fn builders[IT_OP_COUNT] = {
    [IT_OP_CONV] = build_conv,
    [IT_OP_MAXPOOL] = build_maxpool,
    [IT_OP_ADD] = build_binary,
    [IT_OP_SUB] = build_binary,
    [IT_OP_MUL] = build_binary,
    [IT_OP_DIV] = build_binary,
    [IT_OP_SIGMOID] = build_sigmoid,
    [IT_OP_SOFTMAX] = build_softmax,
    [IT_OP_MATMUL] = build_matmul,
    [IT_OP_TRANSPOSE] = build_transpose,
};

/* ---- the backend table --------------------------------------------------------------- */

static void cpu_destroy(void *vp) {
    cpu_prog *g = vp;
    if (!g) return;
    if (g->steps)
        for (int i = 0; i < g->p->n_steps; i++) step_clear(&g->steps[i]);
    it_free(g->steps);
    it_aligned_free(g->scratch);
    if (g->stream) dnnl_stream_destroy(g->stream);
    if (g->engine) dnnl_engine_destroy(g->engine);
    it_free(g);
}

static itscam_status backend_err(const it_node *n, const char *what, dnnl_status_t s) {
    /* out of memory is out of memory, whoever noticed it */
    return it_err(s == dnnl_out_of_memory ? ITSCAM_ERR_NOMEM : ITSCAM_ERR_BACKEND,
                  "node '%s' (%s): oneDNN %s failed: status %d",
                  n ? it_node_label(n) : "?", n ? n->op_type : "?", what, (int)s);
}

/* Give every primitive the shared scratchpad, now that its size is known. */
static itscam_status attach_scratch(cpu_prog *g) {
    for (int i = 0; i < g->p->n_steps; i++)
        g->scratch_bytes = IT_MAX(g->scratch_bytes, g->steps[i].scratch_bytes);
    if (!g->scratch_bytes) return ITSCAM_OK;
    g->scratch = it_aligned_alloc(g->scratch_bytes);
    if (!g->scratch) return it_err(ITSCAM_ERR_NOMEM, "cpu backend: %zu bytes of scratchpad", g->scratch_bytes);
    for (int i = 0; i < g->p->n_steps; i++) {
        cpu_step *cs = &g->steps[i];
        if (!cs->prim || !cs->scratch_bytes) continue;
        const_dnnl_primitive_desc_t pd;
        dnnl_status_t s = dnnl_primitive_get_primitive_desc(cs->prim, &pd);
        const dnnl_memory_desc_t *md = s == dnnl_success ? dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0) : NULL;
        if (s == dnnl_success && !md) s = dnnl_invalid_arguments;
        if (s == dnnl_success) s = add_mem(g, cs, DNNL_ARG_SCRATCHPAD, md, g->scratch);
        if (s != dnnl_success) return backend_err(g->p->steps[i].node, "scratchpad memory", s);
    }
    return ITSCAM_OK;
}

static itscam_status cpu_compile(const it_plan *p, const it_backend_opts *opts, void **out) {
    if (!p || !out) return it_err(ITSCAM_ERR_INVALID_ARG, "cpu backend: NULL plan or program");
    *out = NULL;
    cpu_prog *g = it_calloc(1, sizeof *g);
    if (!g) return it_err(ITSCAM_ERR_NOMEM, "cpu backend: program");
    g->p = p;
    g->threads = opts && opts->threads > 0 ? opts->threads : it_cpu_default_threads();
    g->steps = it_calloc(p->n_steps > 0 ? (size_t)p->n_steps : 1, sizeof *g->steps);
    itscam_status st = ITSCAM_OK;
    if (!g->steps) {
        st = it_err(ITSCAM_ERR_NOMEM, "cpu backend: %d steps", p->n_steps);
        goto fail;
    }
    dnnl_status_t ds = dnnl_engine_create(&g->engine, dnnl_cpu, 0);
    if (ds == dnnl_success) ds = dnnl_stream_create(&g->stream, g->engine, dnnl_stream_default_flags);
    if (ds != dnnl_success) {
        st = it_err(ITSCAM_ERR_BACKEND, "cpu backend: oneDNN engine creation failed: status %d", (int)ds);
        goto fail;
    }
    omp_set_fn set = omp_set_threads();
    omp_get_fn get = omp_get_threads();
    int old_threads = get ? get() : 0;
    if (set) set(g->threads);   /* the weight reorders below run in parallel too */
    ftz_workers(g->threads);
    for (int i = 0; i < p->n_steps && st == ITSCAM_OK; i++) {
        const it_plan_step *s = &p->steps[i];
        build_fn build = s->def && s->def->id > IT_OP_UNKNOWN && s->def->id < IT_OP_COUNT ? builders[s->def->id] : NULL;
        if (!build) continue;
        const char *what = "primitive";
        ds = build(g, i, &g->steps[i], &what);
        if (ds == dnnl_unimplemented) {
            step_clear(&g->steps[i]);   /* outside what oneDNN does here: ref kernel */
            it_log(ITSCAM_LOG_DEBUG, "cpu: node '%s' (%s) runs the ref kernel", it_node_label(s->node), s->node->op_type);
        } else if (ds != dnnl_success) {
            st = backend_err(s->node, what, ds);
        }
    }
    if (set && old_threads > 0) set(old_threads);
    if (st == ITSCAM_OK) st = attach_scratch(g);
    if (st != ITSCAM_OK) goto fail;
    *out = g;
    return ITSCAM_OK;
fail:
    cpu_destroy(g);
    return st;
}

static itscam_status cpu_run(void *vp) {
    cpu_prog *g = vp;
    if (!g) return it_err(ITSCAM_ERR_INVALID_ARG, "cpu backend: NULL program");
    const it_plan *p = g->p;
    /* Both settings belong to the calling thread: set them for this run only. */
    unsigned csr = _mm_getcsr();
    _mm_setcsr(csr | CSR_FTZ_DAZ);
    omp_set_fn set = omp_set_threads();
    omp_get_fn get = omp_get_threads();
    int old_threads = get ? get() : 0;
    if (set && old_threads != g->threads) set(g->threads);
    itscam_status st = ITSCAM_OK;
    int pending = 0;   /* primitives queued since the last wait */
    for (int i = 0; i < p->n_steps && st == ITSCAM_OK; i++) {
        cpu_step *cs = &g->steps[i];
        dnnl_status_t ds = dnnl_success;
        if (cs->prim) {
            ds = dnnl_primitive_execute(cs->prim, g->stream, cs->n_args, cs->args);
            if (ds != dnnl_success) st = backend_err(p->steps[i].node, "execution", ds);
            pending = 1;
        } else {
            /* the ref kernel reads what the stream produced */
            if (pending && (ds = dnnl_stream_wait(g->stream)) != dnnl_success)
                st = backend_err(p->steps[i].node, "stream wait", ds);
            pending = 0;
            if (st == ITSCAM_OK) st = it_run_step_ref(p, i);
        }
    }
    if (pending) {
        dnnl_status_t ds = dnnl_stream_wait(g->stream);
        if (ds != dnnl_success && st == ITSCAM_OK)
            st = it_err(ITSCAM_ERR_BACKEND, "cpu backend: oneDNN stream wait failed: status %d", (int)ds);
    }
    if (set && old_threads > 0 && old_threads != g->threads) set(old_threads);
    _mm_setcsr(csr);
    return st;
}

int it_cpu_step_native(const void *prog, int i) {
    const cpu_prog *g = prog;
    return g && i >= 0 && i < g->p->n_steps && g->steps[i].prim != NULL;
}

static const char *isa_name(dnnl_cpu_isa_t isa) {
    switch (isa) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx512_mic: return "avx512_mic";
    case dnnl_cpu_isa_avx512_mic_4ops: return "avx512_mic_4ops";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    default: return "any";
    }
}

itscam_status it_cpu_describe(char *buf, size_t n) {
    if (!buf || !n) return it_err(ITSCAM_ERR_INVALID_ARG, "it_cpu_describe: empty buffer");
    const dnnl_version_t *v = dnnl_version();
    snprintf(buf, n, "oneDNN %d.%d.%d, isa %s, %d threads (OpenMP)", v->major, v->minor, v->patch,
             isa_name(dnnl_get_effective_cpu_isa()), it_cpu_default_threads());
    return ITSCAM_OK;
}

const it_backend it_backend_cpu = {
    .version = 1,
    .name = "cpu",
    .description = "oneDNN (Intel/UXL deep neural network library) on the CPU, fp32",
    .available = NULL,
    .compile = cpu_compile,
    .run = cpu_run,
    .destroy = cpu_destroy,
};
