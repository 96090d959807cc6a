/* The cpu backend: Conv, MaxPool, elementwise, Resize, Concat, Split, MatMul, Softmax and
 * Transpose steps run as oneDNN primitives built once at compile time; activations
 * between layout-aware steps stay in the blocked layout oneDNN's convolution picks, with
 * reorders only where they meet plain NCHW; every other step runs its ref kernel. */
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

#define MAX_ARGS 16
#define MAX_CONCAT (MAX_ARGS - 2)   /* sources, plus dst and scratchpad */

/* Where a 4-D float activation lives: plain NCHW in the plan's arena, or oneDNN's
 * blocked layout (g->tag). */
enum { PLAIN = 0, BLOCKED = 1 };

/* One primitive execution; it owns the memory objects of its arguments. */
typedef struct exec {
    dnnl_primitive_t prim;
    int n_args;
    dnnl_exec_arg_t args[MAX_ARGS];
    size_t scratch_bytes;             /* the primitive's scratchpad */
} exec;

typedef struct cpu_step {
    int layout;                       /* PLAIN or BLOCKED: how its activations are read and written */
    unsigned act_mask;                /* inputs that are layout-carrying activations when BLOCKED */
    int native;                       /* 1: the step's work runs on oneDNN, else its ref kernel */
    int sliced;                       /* Concat whose inputs are written into its output */
    int n_main;                       /* ex[0..n_main): the step; ex[n_main..n_ex): layout
                                       * conversions of its outputs for their consumers */
    int n_ex, cap_ex;
    exec *ex;                         /* a slice of cpu_prog.execs */
    void *weights;                    /* weights reordered to oneDNN's layout (owned) */
} cpu_step;

typedef struct cpu_prog {
    const it_plan *p;
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    int threads;
    dnnl_format_tag_t tag;            /* the blocked activation layout; undef: all plain */
    int64_t block;                    /* its channel block (1 for channels-last) */
    cpu_step *steps;
    cpu_step head;                    /* conversions of graph inputs, run before step 0 */
    exec *execs;                      /* every step's exec slots, one allocation */
    /* per value */
    uint8_t *prod;                    /* layout its producer writes */
    uint8_t *has_plain, *has_blk;     /* which copies exist (the plain one is p->t[v].data) */
    uint8_t *blk_owned;               /* the blocked copy is a buffer of ours, not the arena slot */
    uint8_t *aliased;                 /* the blocked copy is a slice of a Concat's output */
    void **blk;                       /* the blocked copy */
    uint8_t *force_plain;             /* per step: its blocked build failed, run it plain */
    void *scratch;                    /* shared by all primitives: steps run one at a time */
    size_t scratch_bytes;
} cpu_prog;

/* A builder turns step i into primitives. It returns dnnl_unimplemented when the step
 * is outside what it handles (the step then runs its ref kernel, or plain when it was
 * planned blocked), another failure status with *what naming the call that failed. */
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

/* A 4-D float tensor computed at run time in the arena: the only kind that may be blocked. */
static int is_act4(const it_plan *p, int v) {
    return v >= 0 && p->offset[v] >= 0 && p->t[v].ndim == 4 && p->t[v].dtype == IT_F32 &&
           it_tensor_numel(&p->t[v]) > 0;
}

/* Descriptor and data of value v in layout l. */
static dnnl_status_t act_md(const cpu_prog *g, int v, int l, dnnl_memory_desc_t *md) {
    const it_tensor *t = &g->p->t[v];
    if (l == PLAIN) return md_plain(md, t->ndim, t->dims);
    dnnl_dims_t d = {t->dims[0], t->dims[1], t->dims[2], t->dims[3]};   /* oneDNN's dims are wider */
    return dnnl_memory_desc_init_by_tag(md, 4, d, dnnl_f32, g->tag);
}
static void *act_data(const cpu_prog *g, int v, int l) {
    return l == PLAIN ? g->p->t[v].data : g->blk[v];
}

/* The layout step i reads input k (value v) in: its own when that copy exists, else plain
 * (a Conv reading the plain image directly). */
static int in_layout(const cpu_prog *g, int i, int k) {
    const cpu_step *cs = &g->steps[i];
    int v = g->p->steps[i].in[k];
    return cs->layout == BLOCKED && (cs->act_mask >> k & 1u) && g->has_blk[v] ? BLOCKED : PLAIN;
}

/* ---- primitives ----------------------------------------------------------------------- */

static exec *new_exec(cpu_step *cs) {
    if (cs->n_ex >= cs->cap_ex) return NULL;
    return &cs->ex[cs->n_ex++];
}

static dnnl_status_t add_mem(cpu_prog *g, exec *e, int arg, const dnnl_memory_desc_t *md, const void *data) {
    if (e->n_args >= MAX_ARGS) return dnnl_out_of_memory;
    dnnl_memory_t m;
    /* oneDNN takes a non-const handle; inputs are only read */
    dnnl_status_t s = dnnl_memory_create(&m, md, g->engine, (void *)data);
    if (s != dnnl_success) return s;
    e->args[e->n_args].arg = arg;
    e->args[e->n_args].memory = m;
    e->n_args++;
    return dnnl_success;
}

static void exec_clear(exec *e) {
    if (e->prim) dnnl_primitive_destroy(e->prim);
    for (int k = 0; k < e->n_args; k++) dnnl_memory_destroy(e->args[k].memory);
    memset(e, 0, sizeof *e);
}

/* Forget everything built for the step, keeping its exec slots and layout plan. */
static void step_reset(cpu_step *cs) {
    for (int k = 0; k < cs->n_ex; k++) exec_clear(&cs->ex[k]);
    it_aligned_free(cs->weights);
    cs->weights = NULL;
    cs->n_ex = cs->n_main = 0;
    cs->native = 0;
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
static dnnl_status_t make_prim(exec *e, const_dnnl_primitive_desc_t pd) {
    const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    e->scratch_bytes = smd ? dnnl_memory_desc_get_size(smd) : 0;
    return dnnl_primitive_create(&e->prim, pd);
}

/* Append a reorder from (smd, src) to (dmd, dst) to the step's execs. */
static dnnl_status_t add_reorder(cpu_prog *g, cpu_step *cs, const dnnl_memory_desc_t *smd, const void *src,
                                 const dnnl_memory_desc_t *dmd, void *dst) {
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    exec *e = new_exec(cs);
    dnnl_status_t s = e ? make_attr(&attr, 0) : dnnl_out_of_memory;
    if (s == dnnl_success) s = dnnl_reorder_primitive_desc_create(&pd, smd, g->engine, dmd, g->engine, attr);
    if (s == dnnl_success) s = add_mem(g, e, DNNL_ARG_FROM, smd, src);
    if (s == dnnl_success) s = add_mem(g, e, DNNL_ARG_TO, dmd, dst);
    if (s == dnnl_success) s = make_prim(e, pd);
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return s;
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
    int lx = in_layout(g, i, 0);
    exec *e = new_exec(cs);
    TRY("exec slot", e ? dnnl_success : dnnl_out_of_memory);
    TRY("memory descriptor", act_md(g, s->in[0], lx, &src_md));
    TRY("memory descriptor", act_md(g, s->out[0], cs->layout, &dst_md));
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
    TRY("memory", add_mem(g, e, DNNL_ARG_SRC, &src_md, act_data(g, s->in[0], lx)));
    TRY("memory", add_mem(g, e, DNNL_ARG_WEIGHTS, w_md, cs->weights));
    if (b) TRY("memory", add_mem(g, e, DNNL_ARG_BIAS, &b_md, b->data));
    TRY("memory", add_mem(g, e, DNNL_ARG_DST, &dst_md, act_data(g, s->out[0], cs->layout)));
    TRY("convolution primitive", make_prim(e, pd));
out:
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return st;
}

/* A single-source, single-destination primitive of op descriptor d on input 0 and
 * output 0 in their planned layouts; mds are given by the caller. */
static dnnl_status_t finish_unary(cpu_prog *g, int i, cpu_step *cs, const void *d, const dnnl_memory_desc_t *src_md,
                                  const void *src, const dnnl_memory_desc_t *dst_md, void *dst,
                                  const char *kind, const char **what) {
    dnnl_status_t st = dnnl_success;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    (void)i;
    exec *e = new_exec(cs);
    TRY("exec slot", e ? dnnl_success : dnnl_out_of_memory);
    TRY("attributes", make_attr(&attr, 0));
    TRY(kind, dnnl_primitive_desc_create(&pd, d, attr, g->engine, NULL));
    TRY("memory", add_mem(g, e, DNNL_ARG_SRC, src_md, src));
    TRY("memory", add_mem(g, e, DNNL_ARG_DST, dst_md, dst));
    TRY("primitive", make_prim(e, pd));
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
    dnnl_memory_desc_t src_md, dst_md;
    int lx = in_layout(g, i, 0);
    TRY("memory descriptor", act_md(g, s->in[0], lx, &src_md));
    TRY("memory descriptor", act_md(g, s->out[0], cs->layout, &dst_md));
    dnnl_pooling_v2_desc_t d;
    TRY("pooling descriptor", dnnl_pooling_v2_forward_desc_init(&d, dnnl_forward_inference, dnnl_pooling_max,
                                                                &src_md, &dst_md, strides, kernel, dil, pl, pr));
    st = finish_unary(g, i, cs, &d, &src_md, act_data(g, s->in[0], lx), &dst_md,
                      act_data(g, s->out[0], cs->layout), "pooling primitive descriptor", what);
out:
    return st;
}

/* Add/Sub/Mul/Div. oneDNN broadcasts src1 only, so src0 must already have the output
 * shape; for the commutative ops the operands may be swapped to get there. Blocked
 * steps have two inputs of the output's shape. */
static dnnl_status_t build_binary(cpu_prog *g, int i, cpu_step *cs, const char **what) {
    const it_plan *p = g->p;
    const it_plan_step *s = &p->steps[i];
    if (s->n_in != 2 || s->in[0] < 0 || s->in[1] < 0 || s->n_out < 1 || s->out[0] < 0)
        return dnnl_unimplemented;
    int va = s->in[0], vb = s->in[1];
    const it_tensor *a = &p->t[va], *b = &p->t[vb], *y = &p->t[s->out[0]];
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
    dnnl_status_t st = dnnl_success;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_memory_desc_t a_md, b_md, y_md;
    int la = PLAIN, lb = PLAIN;
    if (cs->layout == BLOCKED) {
        la = in_layout(g, i, 0), lb = in_layout(g, i, 1);
        TRY("memory descriptor", act_md(g, va, la, &a_md));
        TRY("memory descriptor", act_md(g, vb, lb, &b_md));
        TRY("memory descriptor", act_md(g, s->out[0], BLOCKED, &y_md));
    } else {
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
            int t = va;
            va = vb, vb = t;
            int64_t tmp[IT_MAX_DIMS];
            memcpy(tmp, da, sizeof tmp), memcpy(da, db, sizeof tmp), memcpy(db, tmp, sizeof tmp);
        }
        for (int k = 0; k < nd; k++)
            if (db[k] != dy[k] && db[k] != 1) return dnnl_unimplemented;
        TRY("memory descriptor", md_plain(&a_md, nd, da));
        TRY("memory descriptor", md_plain(&b_md, nd, db));
        TRY("memory descriptor", md_plain(&y_md, nd, dy));
    }
    exec *e = new_exec(cs);
    TRY("exec slot", e ? dnnl_success : dnnl_out_of_memory);
    dnnl_binary_desc_t d;
    TRY("binary descriptor", dnnl_binary_desc_init(&d, alg, &a_md, &b_md, &y_md));
    TRY("attributes", make_attr(&attr, 0));
    TRY("binary primitive descriptor", dnnl_primitive_desc_create(&pd, &d, attr, g->engine, NULL));
    TRY("memory", add_mem(g, e, DNNL_ARG_SRC_0, &a_md, act_data(g, va, la)));
    TRY("memory", add_mem(g, e, DNNL_ARG_SRC_1, &b_md, act_data(g, vb, lb)));
    TRY("memory", add_mem(g, e, DNNL_ARG_DST, &y_md, act_data(g, s->out[0], cs->layout)));
    TRY("binary primitive", make_prim(e, pd));
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
    dnnl_status_t st = dnnl_success;
    dnnl_memory_desc_t md;
    int lx = in_layout(g, i, 0);
    if (cs->layout == BLOCKED) {
        TRY("memory descriptor", act_md(g, s->in[0], lx, &md));
    } else {
        /* elementwise: any shape is the same as a flat vector */
        int64_t len = it_tensor_numel(x);
        TRY("memory descriptor", md_plain(&md, 1, &len));
    }
    dnnl_eltwise_desc_t d;
    TRY("eltwise descriptor", dnnl_eltwise_forward_desc_init(&d, dnnl_forward_inference, dnnl_eltwise_logistic,
                                                             &md, 0.0f, 0.0f));
    st = finish_unary(g, i, cs, &d, &md, act_data(g, s->in[0], lx), &md, act_data(g, s->out[0], cs->layout),
                      "eltwise primitive descriptor", what);
out:
    return st;
}

/* Integer upscale factor of Resize step i along H and W when it is a nearest resize that
 * oneDNN's nearest resampling reproduces, else 0. oneDNN takes the source index
 * round((o + 0.5) / f - 0.5), which for an integer f is floor(o / f): ONNX's asymmetric +
 * floor, and half_pixel with either rounding (no ties arise). */
static int resize_nearest_ok(const it_plan *p, int i) {
    const it_plan_step *s = &p->steps[i];
    const it_node *n = s->node;
    if (s->n_in < 2 || s->in[0] < 0 || s->n_out < 1 || s->out[0] < 0) return 0;
    const it_tensor *x = &p->t[s->in[0]], *y = &p->t[s->out[0]];
    if (x->ndim != 4 || y->ndim != 4 || x->dtype != IT_F32) return 0;
    if (strcmp(it_attr_str(n, "mode", "nearest"), "nearest") || it_attr_find(n, "axes")) return 0;
    if (x->dims[0] != y->dims[0] || x->dims[1] != y->dims[1]) return 0;
    int64_t f = x->dims[2] ? y->dims[2] / x->dims[2] : 0;
    if (f < 1 || y->dims[2] != x->dims[2] * f || y->dims[3] != x->dims[3] * f) return 0;
    const it_tensor *scales = NULL;
    if (p->opset < 11) {
        scales = &p->t[s->in[1]];   /* Upsample-like: asymmetric, floor when upscaling */
    } else {
        const char *ct = it_attr_str(n, "coordinate_transformation_mode", "half_pixel");
        const char *nm = it_attr_str(n, "nearest_mode", "round_prefer_floor");
        int asym_floor = !strcmp(ct, "asymmetric") && !strcmp(nm, "floor");
        int half_round = (!strcmp(ct, "half_pixel") || !strcmp(ct, "pytorch_half_pixel")) &&
                         (!strcmp(nm, "round_prefer_floor") || !strcmp(nm, "round_prefer_ceil"));
        if (!asym_floor && !half_round) return 0;
        if (s->n_in > 2 && s->in[2] >= 0 && it_tensor_numel(&p->t[s->in[2]]) > 0) scales = &p->t[s->in[2]];
    }
    /* given scales enter the coordinates as they are: they must be the factor exactly */
    if (scales) {
        if (!scales->data || scales->dtype != IT_F32 || it_tensor_numel(scales) != 4) return 0;
        const float *sv = scales->data;
        if (sv[0] != 1.0f || sv[1] != 1.0f || sv[2] != (float)f || sv[3] != (float)f) return 0;
    }
    return (int)f;
}

static dnnl_status_t build_resize(cpu_prog *g, int i, cpu_step *cs, const char **what) {
    const it_plan *p = g->p;
    const it_plan_step *s = &p->steps[i];
    if (!resize_nearest_ok(p, i)) return dnnl_unimplemented;
    if (!is_f32_act(&p->t[s->in[0]]) || !is_f32_act(&p->t[s->out[0]])) return dnnl_unimplemented;
    dnnl_status_t st = dnnl_success;
    dnnl_memory_desc_t src_md, dst_md;
    int lx = in_layout(g, i, 0);
    TRY("memory descriptor", act_md(g, s->in[0], lx, &src_md));
    TRY("memory descriptor", act_md(g, s->out[0], cs->layout, &dst_md));
    dnnl_resampling_desc_t d;
    TRY("resampling descriptor", dnnl_resampling_forward_desc_init(&d, dnnl_forward_inference, dnnl_resampling_nearest,
                                                                   NULL, &src_md, &dst_md));
    st = finish_unary(g, i, cs, &d, &src_md, act_data(g, s->in[0], lx), &dst_md,
                      act_data(g, s->out[0], cs->layout), "resampling primitive descriptor", what);
out:
    return st;
}

/* Axis of a Concat or Split step normalised to [0, ndim), -1 when out of range. */
static int step_axis(const it_plan *p, int i, int ndim) {
    int64_t ax = it_attr_int(p->steps[i].node, "axis", p->steps[i].def->id == IT_OP_SPLIT ? 0 : INT64_MIN);
    if (ax < 0) ax += ndim;
    return ax >= 0 && ax < ndim ? (int)ax : -1;
}

static int64_t slice_offset(const cpu_prog *g, int i, int k);

static dnnl_status_t build_concat(cpu_prog *g, int i, cpu_step *cs, const char **what) {
    const it_plan *p = g->p;
    const it_plan_step *s = &p->steps[i];
    if (s->n_in < 1 || s->n_in > MAX_CONCAT || s->n_out != 1 || s->out[0] < 0) return dnnl_unimplemented;
    const it_tensor *y = &p->t[s->out[0]];
    if (!is_f32_act(y) || y->ndim < 1) return dnnl_unimplemented;
    int ax = step_axis(p, i, y->ndim);
    if (ax < 0) return dnnl_unimplemented;
    for (int k = 0; k < s->n_in; k++)
        if (s->in[k] < 0 || !is_f32_act(&p->t[s->in[k]]) || p->t[s->in[k]].ndim != y->ndim) return dnnl_unimplemented;

    dnnl_status_t st = dnnl_success;
    if (cs->sliced) {
        /* inputs written in place need nothing; the others are copied into their slice */
        for (int k = 0; k < s->n_in; k++) {
            int v = s->in[k], lx = in_layout(g, i, k);
            uint8_t *dst = (uint8_t *)g->blk[s->out[0]] + slice_offset(g, i, k);
            if (lx == BLOCKED && g->blk[v] == dst) continue;
            dnnl_memory_desc_t smd, dmd;
            TRY("memory descriptor", act_md(g, v, lx, &smd));
            TRY("memory descriptor", act_md(g, v, BLOCKED, &dmd));
            TRY("reorder", add_reorder(g, cs, &smd, act_data(g, v, lx), &dmd, dst));
        }
        return dnnl_success;
    }
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_memory_desc_t src_md[MAX_CONCAT], dst_md;
    int lin[MAX_CONCAT];
    exec *e = new_exec(cs);
    TRY("exec slot", e ? dnnl_success : dnnl_out_of_memory);
    for (int k = 0; k < s->n_in; k++) {
        lin[k] = in_layout(g, i, k);
        TRY("memory descriptor", act_md(g, s->in[k], lin[k], &src_md[k]));
    }
    TRY("memory descriptor", act_md(g, s->out[0], cs->layout, &dst_md));
    TRY("attributes", make_attr(&attr, 0));
    TRY("concat primitive descriptor",
        dnnl_concat_primitive_desc_create(&pd, &dst_md, s->n_in, ax, src_md, attr, g->engine));
    for (int k = 0; k < s->n_in; k++)
        TRY("memory", add_mem(g, e, DNNL_ARG_MULTIPLE_SRC + k, &src_md[k], act_data(g, s->in[k], lin[k])));
    TRY("memory", add_mem(g, e, DNNL_ARG_DST, &dst_md, act_data(g, s->out[0], cs->layout)));
    TRY("concat primitive", make_prim(e, pd));
out:
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return st;
}

/* Output k of a Split as a window of the input: its dims and offsets (the part sizes are
 * the planned output shapes). */
static int split_window(const it_plan *p, int i, int ax, int k, dnnl_dims_t dims, dnnl_dims_t offs) {
    const it_plan_step *s = &p->steps[i];
    const it_tensor *x = &p->t[s->in[0]];
    int64_t off = 0;
    for (int j = 0; j < k; j++) off += p->t[s->out[j]].dims[ax];
    const it_tensor *y = &p->t[s->out[k]];
    for (int d = 0; d < x->ndim; d++) {
        dims[d] = y->dims[d];
        offs[d] = d == ax ? off : 0;
        if (d != ax && y->dims[d] != x->dims[d]) return 0;
    }
    return off + y->dims[ax] <= x->dims[ax];
}

/* Split: each output a reorder from a window (submemory) of the input. */
static dnnl_status_t build_split(cpu_prog *g, int i, cpu_step *cs, const char **what) {
    const it_plan *p = g->p;
    const it_plan_step *s = &p->steps[i];
    if (s->n_in < 1 || s->in[0] < 0 || s->n_out < 1) return dnnl_unimplemented;
    const it_tensor *x = &p->t[s->in[0]];
    if (!is_f32_act(x) || x->ndim < 1) return dnnl_unimplemented;
    int ax = step_axis(p, i, x->ndim);
    if (ax < 0) return dnnl_unimplemented;
    for (int k = 0; k < s->n_out; k++)
        if (s->out[k] < 0 || !is_f32_act(&p->t[s->out[k]]) || p->t[s->out[k]].ndim != x->ndim) return dnnl_unimplemented;

    dnnl_status_t st = dnnl_success;
    dnnl_memory_desc_t src_md, sub_md, dst_md;
    int lx = in_layout(g, i, 0);
    TRY("memory descriptor", act_md(g, s->in[0], lx, &src_md));
    for (int k = 0; k < s->n_out; k++) {
        dnnl_dims_t dims, offs;
        if (!split_window(p, i, ax, k, dims, offs)) return dnnl_unimplemented;
        TRY("submemory descriptor", dnnl_memory_desc_init_submemory(&sub_md, &src_md, dims, offs));
        TRY("memory descriptor", act_md(g, s->out[k], cs->layout, &dst_md));
        TRY("reorder", add_reorder(g, cs, &sub_md, act_data(g, s->in[0], lx), &dst_md,
                                   act_data(g, s->out[k], cs->layout)));
    }
out:
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
    exec *e = new_exec(cs);
    TRY("exec slot", e ? dnnl_success : dnnl_out_of_memory);
    TRY("attributes", make_attr(&attr, 0));
    TRY("softmax primitive descriptor", dnnl_primitive_desc_create(&pd, &d, attr, g->engine, NULL));
    TRY("memory", add_mem(g, e, DNNL_ARG_SRC, &md, x->data));
    TRY("memory", add_mem(g, e, DNNL_ARG_DST, &md, y->data));
    TRY("softmax primitive", make_prim(e, pd));
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
    exec *e = new_exec(cs);
    TRY("exec slot", e ? dnnl_success : dnnl_out_of_memory);
    TRY("attributes", make_attr(&attr, 0));
    TRY("matmul primitive descriptor", dnnl_primitive_desc_create(&pd, &d, attr, g->engine, NULL));
    TRY("memory", add_mem(g, e, DNNL_ARG_SRC, &a_md, a->data));
    TRY("memory", add_mem(g, e, DNNL_ARG_WEIGHTS, &b_md, b->data));
    TRY("memory", add_mem(g, e, DNNL_ARG_DST, &y_md, y->data));
    TRY("matmul primitive", make_prim(e, pd));
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
    exec *e = new_exec(cs);
    TRY("exec slot", e ? dnnl_success : dnnl_out_of_memory);
    TRY("attributes", make_attr(&attr, 0));
    TRY("reorder primitive descriptor",
        dnnl_reorder_primitive_desc_create(&pd, &src_md, g->engine, &dst_md, g->engine, attr));
    TRY("memory", add_mem(g, e, DNNL_ARG_FROM, &src_md, x->data));
    TRY("memory", add_mem(g, e, DNNL_ARG_TO, &dst_md, y->data));
    TRY("reorder primitive", make_prim(e, pd));
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
    [IT_OP_RESIZE] = build_resize,
    [IT_OP_CONCAT] = build_concat,
    [IT_OP_SPLIT] = build_split,
    [IT_OP_SOFTMAX] = build_softmax,
    [IT_OP_MATMUL] = build_matmul,
    [IT_OP_TRANSPOSE] = build_transpose,
};

/* ---- layout planning -------------------------------------------------------------------
 * Every 4-D float activation has a producer layout: blocked when its producer is a
 * layout-aware step working blocked, else plain. A step works blocked when it is a Conv
 * (the layout pays for itself there) or when one of its activation inputs arrives blocked
 * (elementwise steps follow their inputs, so plain chains such as the int8 model's stay
 * plain). Where a producer's layout and a consumer's differ, one reorder after the producer
 * makes the other copy; graph outputs and layout-unaware steps read the plain copy, which
 * always lives in the plan's arena slot. */

/* Bit k set when input k of step i is an activation that may be read blocked; 0 when the
 * step cannot work blocked. */
static unsigned blockable(const cpu_prog *g, int i) {
    const it_plan *p = g->p;
    const it_plan_step *s = &p->steps[i];
    if (!s->def || s->n_in < 1 || s->n_out < 1) return 0;
    int id = s->def->id;
    int n_out = id == IT_OP_MAXPOOL ? 1 : s->n_out;   /* MaxPool's Indices is checked below */
    if (id == IT_OP_MAXPOOL && s->n_out > 1 && s->out[1] >= 0) return 0;
    for (int k = 0; k < n_out; k++)
        if (!is_act4(p, s->out[k])) return 0;
    const it_tensor *y = &p->t[s->out[0]];
    switch (id) {
    case IT_OP_CONV:
        /* a handful of output channels (the DFL head's 1) is cheaper plain than padded */
        return s->n_in >= 2 && is_act4(p, s->in[0]) && y->dims[1] >= 4 ? 1u : 0u;
    case IT_OP_MAXPOOL:
    case IT_OP_SIGMOID:
        return is_act4(p, s->in[0]) ? 1u : 0u;
    case IT_OP_RESIZE:
        return is_act4(p, s->in[0]) && resize_nearest_ok(p, i) ? 1u : 0u;
    case IT_OP_ADD: case IT_OP_SUB: case IT_OP_MUL: case IT_OP_DIV:
        /* same-shape operands only: broadcasting over a blocked channel axis is not */
        if (s->n_in != 2) return 0;
        for (int k = 0; k < 2; k++)
            if (!is_act4(p, s->in[k]) || memcmp(p->t[s->in[k]].dims, y->dims, 4 * sizeof *y->dims)) return 0;
        return 3u;
    case IT_OP_CONCAT:
        if (s->n_in > MAX_CONCAT || step_axis(p, i, 4) != 1) return 0;
        for (int k = 0; k < s->n_in; k++)
            if (!is_act4(p, s->in[k])) return 0;
        return (1u << s->n_in) - 1;
    case IT_OP_SPLIT: {
        if (!is_act4(p, s->in[0]) || step_axis(p, i, 4) != 1) return 0;
        /* each part must be a window oneDNN can describe in the blocked layout: its
         * channel offset a multiple of the block */
        dnnl_memory_desc_t md, sub;
        if (act_md(g, s->in[0], BLOCKED, &md) != dnnl_success) return 0;
        for (int k = 0; k < s->n_out; k++) {
            dnnl_dims_t dims, offs;
            if (!split_window(p, i, 1, k, dims, offs) || offs[1] % g->block ||
                dnnl_memory_desc_init_submemory(&sub, &md, dims, offs) != dnnl_success)
                return 0;
        }
        return 1u;
    }
    default:
        return 0;
    }
}

static void plan_layouts(cpu_prog *g) {
    const it_plan *p = g->p;
    int nv = p->g->n_values;
    memset(g->prod, PLAIN, (size_t)nv);
    memset(g->has_plain, 0, (size_t)nv);
    memset(g->has_blk, 0, (size_t)nv);
    for (int i = 0; i < p->n_steps; i++) {
        const it_plan_step *s = &p->steps[i];
        cpu_step *cs = &g->steps[i];
        cs->layout = PLAIN;
        cs->act_mask = g->tag != dnnl_format_tag_undef && !g->force_plain[i] ? blockable(g, i) : 0;
        if (cs->act_mask) {
            int blocked = s->def->id == IT_OP_CONV;
            for (int k = 0; k < s->n_in; k++)
                if ((cs->act_mask >> k & 1u) && g->prod[s->in[k]] == BLOCKED) blocked = 1;
            cs->layout = blocked ? BLOCKED : PLAIN;
        }
        for (int k = 0; k < s->n_out; k++)
            if (s->out[k] >= 0) g->prod[s->out[k]] = (uint8_t)cs->layout;
    }
    /* which copies the consumers need */
    for (int o = 0; o < p->g->n_outputs; o++) g->has_plain[p->g->outputs[o]] = 1;
    for (int i = 0; i < p->n_steps; i++) {
        const it_plan_step *s = &p->steps[i];
        const cpu_step *cs = &g->steps[i];
        for (int k = 0; k < s->n_in; k++) {
            int v = s->in[k];
            if (v < 0) continue;
            int want = cs->layout == BLOCKED && (cs->act_mask >> k & 1u) ? BLOCKED : PLAIN;
            /* the first Conv reads the few channels of the image as they are */
            if (want == BLOCKED && s->def->id == IT_OP_CONV && g->prod[v] == PLAIN && p->t[v].dims[1] < g->block)
                want = PLAIN;
            if (want == BLOCKED) g->has_blk[v] = 1;
            else g->has_plain[v] = 1;
        }
    }
    for (int v = 0; v < nv; v++) {
        if (g->prod[v] == BLOCKED) g->has_blk[v] = 1;
        else if (p->offset[v] >= 0 || p->t[v].data) g->has_plain[v] = 1;
    }
}

static void free_blocked(cpu_prog *g) {
    if (!g->blk) return;
    for (int v = 0; v < g->p->g->n_values; v++) {
        if (g->blk_owned[v]) it_aligned_free(g->blk[v]);
        g->blk[v] = NULL;
        g->blk_owned[v] = g->aliased[v] = 0;
    }
    for (int i = 0; i < g->p->n_steps; i++) g->steps[i].sliced = 0;
}

/* Byte offset of Concat input k in the output's blocked copy when every input starts on a
 * block boundary and the batch is 1: then each input's part of the output is a dense
 * tensor of its own shape, which its producer can write in place. -1 otherwise. */
static int64_t slice_offset(const cpu_prog *g, int i, int k) {
    const it_plan *p = g->p;
    const it_plan_step *s = &p->steps[i];
    const it_tensor *y = &p->t[s->out[0]];
    if (g->steps[i].layout != BLOCKED || s->def->id != IT_OP_CONCAT || y->dims[0] != 1) return -1;
    int64_t ch = 0;
    for (int j = 0; j < k; j++) {
        int64_t c = p->t[s->in[j]].dims[1];
        if (c % g->block) return -1;   /* the next part would start inside a block */
        ch += c;
    }
    return ch * y->dims[2] * y->dims[3] * (int64_t)sizeof(float);
}

/* Sliced Concats: the output gets a buffer of ours (it must outlive its inputs'
 * producers, which the arena does not promise), and inputs produced blocked and read by
 * no other Concat are written straight into their slice, so the Concat copies nothing. */
static itscam_status place_concats(cpu_prog *g) {
    const it_plan *p = g->p;
    for (int i = p->n_steps - 1; i >= 0; i--) {
        const it_plan_step *s = &p->steps[i];
        if (!s->def || s->def->id != IT_OP_CONCAT || slice_offset(g, i, s->n_in - 1) < 0) continue;
        int y = s->out[0];
        dnnl_memory_desc_t md;
        if (act_md(g, y, BLOCKED, &md) != dnnl_success) continue;
        size_t need = dnnl_memory_desc_get_size(&md);
        g->blk[y] = it_aligned_alloc(need);
        if (!g->blk[y]) return it_err(ITSCAM_ERR_NOMEM, "cpu backend: %zu bytes for '%s'", need, p->g->values[y].name);
        memset(g->blk[y], 0, need);
        g->blk_owned[y] = 1;
        g->steps[i].sliced = 1;
        for (int k = 0; k < s->n_in; k++) {
            int v = s->in[k], dup = 0;
            for (int j = 0; j < s->n_in; j++) dup |= j != k && s->in[j] == v;
            const it_plan_step *ps = NULL;
            for (int j = 0; j < i && !ps; j++)
                for (int o = 0; o < p->steps[j].n_out; o++)
                    if (p->steps[j].out[o] == v) ps = &p->steps[j];
            /* a Concat output has its own buffer; a value read by two Concats goes in one */
            if (dup || g->prod[v] != BLOCKED || g->aliased[v] || !ps || ps->def->id == IT_OP_CONCAT) continue;
            g->blk[v] = (uint8_t *)g->blk[y] + slice_offset(g, i, k);
            g->aliased[v] = 1;
        }
    }
    return ITSCAM_OK;
}

/* Storage of the blocked copies: the arena slot when the value has no plain copy and the
 * padded layout fits in it, else a zeroed buffer of ours (allocated now, never per run). */
static itscam_status place_blocked(cpu_prog *g) {
    const it_plan *p = g->p;
    itscam_status st = place_concats(g);
    if (st != ITSCAM_OK) return st;
    for (int v = 0; v < p->g->n_values; v++) {
        if (!g->has_blk[v] || g->blk[v]) continue;
        dnnl_memory_desc_t md;
        dnnl_status_t s = act_md(g, v, BLOCKED, &md);
        if (s != dnnl_success)
            return it_err(ITSCAM_ERR_BACKEND, "cpu backend: value '%s': oneDNN memory descriptor failed: status %d",
                          p->g->values[v].name, (int)s);
        size_t need = dnnl_memory_desc_get_size(&md);
        if (!g->has_plain[v] && need <= p->t[v].nbytes) {
            g->blk[v] = p->t[v].data;
            continue;
        }
        g->blk[v] = it_aligned_alloc(need);
        if (!g->blk[v]) return it_err(ITSCAM_ERR_NOMEM, "cpu backend: %zu bytes for a blocked copy of '%s'", need,
                                      p->g->values[v].name);
        memset(g->blk[v], 0, need);   /* oneDNN keeps the channel padding zero */
        g->blk_owned[v] = 1;
    }
    return ITSCAM_OK;
}

/* The reorder that makes v's second copy, appended to its producer's execs. */
static dnnl_status_t add_conversion(cpu_prog *g, cpu_step *cs, int v) {
    int from = g->prod[v], to = from == BLOCKED ? PLAIN : BLOCKED;
    if (from == BLOCKED ? !g->has_plain[v] : !g->has_blk[v]) return dnnl_success;
    dnnl_memory_desc_t smd, dmd;
    dnnl_status_t s = act_md(g, v, from, &smd);
    if (s == dnnl_success) s = act_md(g, v, to, &dmd);
    if (s == dnnl_success) s = add_reorder(g, cs, &smd, act_data(g, v, from), &dmd, act_data(g, v, to));
    return s;
}

/* ---- the backend table --------------------------------------------------------------- */

static void reset_all(cpu_prog *g) {
    if (g->steps)
        for (int i = 0; i < g->p->n_steps; i++) step_reset(&g->steps[i]);
    step_reset(&g->head);
    free_blocked(g);
}

static void cpu_destroy(void *vp) {
    cpu_prog *g = vp;
    if (!g) return;
    reset_all(g);
    it_free(g->steps);
    it_free(g->execs);
    it_free(g->prod);
    it_free(g->blk);
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
static itscam_status attach_scratch(cpu_prog *g, int n_execs) {
    for (int k = 0; k < n_execs; k++) g->scratch_bytes = IT_MAX(g->scratch_bytes, g->execs[k].scratch_bytes);
    if (!g->scratch_bytes) return ITSCAM_OK;
    g->scratch = it_aligned_alloc(g->scratch_bytes);
    if (!g->scratch) return it_err(ITSCAM_ERR_NOMEM, "cpu backend: %zu bytes of scratchpad", g->scratch_bytes);
    for (int k = 0; k < n_execs; k++) {
        exec *e = &g->execs[k];
        if (!e->prim || !e->scratch_bytes) continue;
        const_dnnl_primitive_desc_t pd;
        dnnl_status_t s = dnnl_primitive_get_primitive_desc(e->prim, &pd);
        const dnnl_memory_desc_t *md = s == dnnl_success ? dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0) : NULL;
        if (s == dnnl_success && !md) s = dnnl_invalid_arguments;
        if (s == dnnl_success) s = add_mem(g, e, DNNL_ARG_SCRATCHPAD, md, g->scratch);
        if (s != dnnl_success) return it_err(ITSCAM_ERR_BACKEND, "cpu backend: oneDNN scratchpad memory failed: status %d", (int)s);
    }
    return ITSCAM_OK;
}

/* The activation layout oneDNN picks for a typical convolution on this machine (nChw8c
 * on AVX2, nChw16c on AVX-512), if it is one we can describe by tag; undef: all plain. */
static dnnl_format_tag_t probe_layout(cpu_prog *g, int64_t *block) {
    static const struct {
        dnnl_format_tag_t tag;
        int64_t block;
    } known[] = {{dnnl_aBcd16b, 16}, {dnnl_aBcd8b, 8}, {dnnl_aBcd4b, 4}, {dnnl_acdb, 1}};
    dnnl_dims_t xd = {1, 64, 40, 40}, wd = {64, 64, 3, 3}, st = {1, 1}, pad = {1, 1};
    dnnl_memory_desc_t x, w, y, cand;
    dnnl_convolution_desc_t cd;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_format_tag_t tag = dnnl_format_tag_undef;
    if (dnnl_memory_desc_init_by_tag(&x, 4, xd, dnnl_f32, dnnl_format_tag_any) != dnnl_success ||
        dnnl_memory_desc_init_by_tag(&w, 4, wd, dnnl_f32, dnnl_format_tag_any) != dnnl_success ||
        dnnl_memory_desc_init_by_tag(&y, 4, xd, dnnl_f32, dnnl_format_tag_any) != dnnl_success ||
        dnnl_convolution_forward_desc_init(&cd, dnnl_forward_inference, dnnl_convolution_direct, &x, &w, NULL, &y,
                                           st, pad, pad) != dnnl_success ||
        dnnl_primitive_desc_create(&pd, &cd, NULL, g->engine, NULL) != dnnl_success)
        return tag;
    const dnnl_memory_desc_t *got = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
    for (size_t k = 0; got && k < sizeof known / sizeof *known && tag == dnnl_format_tag_undef; k++)
        if (dnnl_memory_desc_init_by_tag(&cand, 4, xd, dnnl_f32, known[k].tag) == dnnl_success &&
            dnnl_memory_desc_equal(&cand, got)) {
            tag = known[k].tag;
            *block = known[k].block;
        }
    dnnl_primitive_desc_destroy(pd);
    return tag;
}

/* Build every step for the current layout plan. Returns 1 (and marks the step) when a
 * step planned blocked cannot be built that way: the plan must be redone. */
static int build_steps(cpu_prog *g, itscam_status *st) {
    const it_plan *p = g->p;
    *st = ITSCAM_OK;
    for (int i = 0; i < p->n_steps; i++) {
        const it_plan_step *s = &p->steps[i];
        cpu_step *cs = &g->steps[i];
        build_fn build = s->def && s->def->id > IT_OP_UNKNOWN && s->def->id < IT_OP_COUNT ? builders[s->def->id] : NULL;
        if (build) {
            const char *what = "primitive";
            dnnl_status_t ds = build(g, i, cs, &what);
            if (ds == dnnl_success) {
                cs->native = 1;
            } else if (ds == dnnl_unimplemented) {
                step_reset(cs);
                if (cs->layout == BLOCKED) {
                    g->force_plain[i] = 1;
                    return 1;
                }
                /* outside what oneDNN does here: ref kernel */
                it_log(ITSCAM_LOG_DEBUG, "cpu: node '%s' (%s) runs the ref kernel", it_node_label(s->node), s->node->op_type);
            } else {
                *st = backend_err(s->node, what, ds);
                return 0;
            }
        }
        cs->n_main = cs->n_ex;
        for (int k = 0; k < s->n_out; k++) {
            if (s->out[k] < 0) continue;
            dnnl_status_t ds = add_conversion(g, cs, s->out[k]);
            if (ds != dnnl_success) {
                *st = backend_err(s->node, "layout reorder", ds);
                return 0;
            }
        }
    }
    for (int k = 0; k < p->g->n_inputs; k++) {
        dnnl_status_t ds = add_conversion(g, &g->head, p->g->inputs[k]);
        if (ds != dnnl_success) {
            *st = it_err(ds == dnnl_out_of_memory ? ITSCAM_ERR_NOMEM : ITSCAM_ERR_BACKEND,
                         "cpu backend: input '%s': oneDNN layout reorder failed: status %d",
                         p->g->values[p->g->inputs[k]].name, (int)ds);
            return 0;
        }
    }
    return 0;
}

static itscam_status cpu_compile(const it_plan *p, const it_backend_opts *opts, void **out) {
    if (!p || !out) return it_err(ITSCAM_ERR_INVALID_ARG, "cpu backend: NULL plan or program");
    *out = NULL;
    cpu_prog *g = it_calloc(1, sizeof *g);
    if (!g) return it_err(ITSCAM_ERR_NOMEM, "cpu backend: program");
    g->p = p;
    g->threads = opts && opts->threads > 0 ? opts->threads : it_cpu_default_threads();
    size_t nv = p->g->n_values > 0 ? (size_t)p->g->n_values : 1, ns = p->n_steps > 0 ? (size_t)p->n_steps : 1;
    /* exec slots: a step's primitives (one per output for Split) and one conversion per
     * output; the head converts graph inputs */
    int n_execs = p->g->n_inputs;
    for (int i = 0; i < p->n_steps; i++) n_execs += 2 * p->steps[i].n_out + 1;
    g->steps = it_calloc(ns, sizeof *g->steps);
    g->execs = it_calloc(n_execs > 0 ? (size_t)n_execs : 1, sizeof *g->execs);
    g->prod = it_calloc(5 * nv + ns, 1);
    g->blk = it_calloc(nv, sizeof *g->blk);
    itscam_status st = ITSCAM_OK;
    if (!g->steps || !g->execs || !g->prod || !g->blk) {
        st = it_err(ITSCAM_ERR_NOMEM, "cpu backend: %d steps", p->n_steps);
        goto fail;
    }
    g->has_plain = g->prod + nv;
    g->has_blk = g->prod + 2 * nv;
    g->blk_owned = g->prod + 3 * nv;
    g->aliased = g->prod + 4 * nv;
    g->force_plain = g->prod + 5 * nv;
    exec *slot = g->execs;
    g->head.ex = slot, g->head.cap_ex = p->g->n_inputs, slot += p->g->n_inputs;
    for (int i = 0; i < p->n_steps; i++) {
        g->steps[i].ex = slot;
        g->steps[i].cap_ex = 2 * p->steps[i].n_out + 1;
        slot += g->steps[i].cap_ex;
    }
    dnnl_status_t ds = dnnl_engine_create(&g->engine, dnnl_cpu, 0);
    if (ds == dnnl_success) ds = dnnl_stream_create(&g->stream, g->engine, dnnl_stream_default_flags);
    if (ds != dnnl_success) {
        st = it_err(ITSCAM_ERR_BACKEND, "cpu backend: oneDNN engine creation failed: status %d", (int)ds);
        goto fail;
    }
    g->block = 1;
    g->tag = probe_layout(g, &g->block);
    omp_set_fn set = omp_set_threads();
    omp_get_fn get = omp_get_threads();
    int old_threads = get ? get() : 0;
    if (set) set(g->threads);   /* the weight reorders below run in parallel too */
    ftz_workers(g->threads);
    /* each retry runs one more step plain, so this ends */
    for (;;) {
        plan_layouts(g);
        st = place_blocked(g);
        if (st == ITSCAM_OK && build_steps(g, &st)) {
            reset_all(g);
            continue;
        }
        break;
    }
    if (set && old_threads > 0) set(old_threads);
    if (st == ITSCAM_OK) st = attach_scratch(g, n_execs);
    if (st != ITSCAM_OK) goto fail;
    *out = g;
    return ITSCAM_OK;
fail:
    cpu_destroy(g);
    return st;
}

static dnnl_status_t run_execs(cpu_prog *g, const exec *ex, int n) {
    for (int k = 0; k < n; k++) {
        dnnl_status_t s = dnnl_primitive_execute(ex[k].prim, g->stream, ex[k].n_args, ex[k].args);
        if (s != dnnl_success) return s;
    }
    return dnnl_success;
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
    dnnl_status_t ds = run_execs(g, g->head.ex, g->head.n_ex);
    if (ds != dnnl_success) st = it_err(ITSCAM_ERR_BACKEND, "cpu backend: input layout reorder failed: status %d", (int)ds);
    int pending = g->head.n_ex > 0;   /* primitives queued since the last wait */
    for (int i = 0; i < p->n_steps && st == ITSCAM_OK; i++) {
        cpu_step *cs = &g->steps[i];
        if (cs->native) {
            ds = run_execs(g, cs->ex, cs->n_main);
            if (ds != dnnl_success) st = backend_err(p->steps[i].node, "execution", ds);
            pending = 1;
        } else {
            /* the ref kernel reads what the stream produced */
            if (pending && (ds = dnnl_stream_wait(g->stream)) != dnnl_success)
                st = backend_err(p->steps[i].node, "stream wait", ds);
            pending = 0;
            if (st == ITSCAM_OK) st = it_run_step_ref(p, i);
        }
        if (st == ITSCAM_OK && cs->n_ex > cs->n_main) {
            ds = run_execs(g, cs->ex + cs->n_main, cs->n_ex - cs->n_main);
            if (ds != dnnl_success) st = backend_err(p->steps[i].node, "layout reorder", ds);
            pending = 1;
        }
    }
    if (pending) {
        ds = dnnl_stream_wait(g->stream);
        if (ds != dnnl_success && st == ITSCAM_OK)
            st = it_err(ITSCAM_ERR_BACKEND, "cpu backend: oneDNN stream wait failed: status %d", (int)ds);
    }
    if (set && old_threads > 0 && old_threads != g->threads) set(old_threads);
    _mm_setcsr(csr);
    return st;
}

int it_cpu_step_native(const void *prog, int i) {
    const cpu_prog *g = prog;
    return g && i >= 0 && i < g->p->n_steps && g->steps[i].native;
}

int it_cpu_step_blocked(const void *prog, int i) {
    const cpu_prog *g = prog;
    return it_cpu_step_native(prog, i) && g->steps[i].layout == BLOCKED;
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
