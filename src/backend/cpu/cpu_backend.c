/* The cpu backend: Conv, MaxPool, elementwise, Resize, Concat, Split, MatMul, Softmax and
 * Transpose steps run as oneDNN primitives built once at compile time; activations
 * between layout-aware steps stay in the blocked layout oneDNN's convolution picks, with
 * reorders only where they meet plain NCHW; every other step runs its ref kernel.
 *
 * Precisions. fp32: as above. bf16: the blocked copies are bf16 (weights too, bias and
 * accumulation fp32); plain copies, the head and graph outputs stay fp32, and the
 * reorders at the boundaries convert. int8: every Conv whose input has a calibrated range
 * reads a u8 copy of it (asymmetric: scale (hi-lo)/255 and a zero point, which doubles
 * the resolution of SiLU outputs over s8) with s8 per-output-channel weights; the blocked
 * layout becomes channels-last, the one oneDNN's int8 kernels use, and a Conv whose
 * output only int8 Convs read writes that u8 copy itself (requantization fused into its
 * post-ops), so chains of convolutions stay 8-bit. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* RTLD_DEFAULT */
#endif
#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/silu.h"
#include "graph/calib.h"
#include "graph/ops_impl.h"
#include "graph/ops_nn.h"

#include <oneapi/dnnl/dnnl.h>

#include <dlfcn.h>
#include <math.h>
#include <stdatomic.h>
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

/* What a run-time reorder does (itscam_backend_counters): not a reorder (an operator's
 * primitive, Transpose included), a layout change, a plain copy (same layout and type:
 * the kind a better plan avoids), or a data type conversion. */
enum { EX_OP = 0, EX_REORDER, EX_COPY, EX_CONVERT };

struct cpu_prog;
struct exec;
/* A step of our own between primitives (prim NULL): it reads its buffers through the
 * program (value indices, not pointers) so that cpu_rebind need not know about it. */
typedef void (*own_fn)(struct cpu_prog *g, const struct exec *e);

/* One primitive execution; it owns the memory objects of its arguments. */
typedef struct exec {
    int kind;                         /* EX_* */
    own_fn fn;                        /* our own kernel instead of a primitive */
    int v[3];                         /* its values */
    float c[3];                       /* and constants */
    size_t n;                         /* and element count */
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
    void *weights;                    /* weights reordered to oneDNN's layout */
    int weights_owned;                /* 0 when they live in the model's shared cache */
    float *bias;                      /* int8: bias in accumulator units (owned) */
} cpu_step;

/* A buffer of the program's working memory (a blocked or u8 copy, a Concat's output, the
 * scratchpad): allocated by the program, until a session lends it a workspace to hold all
 * of them at fixed offsets (cpu_rebind). */
typedef struct work_buf {
    uint8_t *ptr;
    size_t bytes;
    size_t offset;                    /* in the workspace */
    int padded;                       /* a blocked layout with channel padding, kept zero */
} work_buf;

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
    work_buf *bufs;                   /* every buffer of the working memory */
    int n_bufs;
    int n_moves[EX_CONVERT + 1];      /* run-time execs per run, by kind */
    size_t work_bytes;                /* what they need in a workspace, aligned */
    uint8_t *ws;                      /* the lent workspace holding them; NULL: own buffers */
    /* precision */
    it_precision prec;
    const it_calib *calib;
    it_weight_cache *wcache;          /* the model's shared weights (NULL: own copies) */
    int levels;                       /* int8: u8 copies hold [0, levels] */
    dnnl_data_type_t act_dt;          /* of the blocked copies: f32, or bf16 */
    int silu_own;                     /* SiLU by our kernel after the Conv, not oneDNN's
                                       * swish post-op (see silu_mode) */
    void *silu_tmp;                   /* int8: a Conv's f32 output before SiLU + quantize */
    size_t silu_tmp_bytes;
    size_t act_size;                  /* its bytes per element */
    int unsupported;                  /* 1 + the step whose reduced-precision primitive
                                       * oneDNN cannot create here */
    /* int8, per step */
    uint8_t *qconv;                   /* the Conv runs int8 */
    uint8_t *no_int8;                 /* its int8 build failed: run it in fp32 */
    /* int8, per step: a Concat, Split, MaxPool or Resize that moves u8 copies, so that
     * activations between int8 Convs stay 8-bit (no quantizing reorders, 4x fewer bytes
     * moved); the values it joins share one scale (qgroup) */
    uint8_t *qstep;
    uint8_t *no_q;                    /* its u8 build failed: run it as the others */
    int *qgroup;                      /* per value: union-find parent */
    float *qrange;                    /* per value: its group's range, gathered at its root */
    /* per value: channels-last Concats copy a Split part from its window of the Split's
     * input (vsrc, from channel voff), neighbouring parts in one go; a part no other step
     * reads (virt) is never copied out at all */
    int *vsrc, *voff;
    uint8_t *virt;
    uint8_t *pinned;                  /* its copies need buffers of ours: read after its
                                       * last reader in the plan's lifetimes */
    /* int8, per value: a u8 channels-last copy */
    uint8_t *has_q;                   /* an int8 Conv reads it */
    uint8_t *prod_q;                  /* its producer (an int8 Conv) writes only that copy */
    uint8_t *q_owned;                 /* the copy is a buffer of ours, not the arena slot */
    void **q;
    float *qs;                        /* real value = qs * (u8 - qz) */
    int32_t *qz;                      /* zero points, read by the primitives at run time */
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

/* One oneDNN thread per physical core. */
int it_cpu_default_threads(void) { return it_physical_cores(); }

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
    return dnnl_memory_desc_init_by_tag(md, 4, d, g->act_dt, g->tag);
}
/* The u8 channels-last copy of v that int8 convolutions read. */
static dnnl_status_t q_md(const cpu_prog *g, int v, dnnl_memory_desc_t *md) {
    const it_tensor *t = &g->p->t[v];
    dnnl_dims_t d = {t->dims[0], t->dims[1], t->dims[2], t->dims[3]};
    return dnnl_memory_desc_init_by_tag(md, 4, d, dnnl_u8, dnnl_acdb);
}
/* A one-element s32 zero point that the primitive reads from qz[v] at run time. */
static dnnl_status_t zp_md(dnnl_memory_desc_t *md) {
    dnnl_dims_t one = {1};
    return dnnl_memory_desc_init_by_tag(md, 1, one, dnnl_s32, dnnl_x);
}
static void *act_data(const cpu_prog *g, int v, int l) {
    return l == PLAIN ? g->p->t[v].data : g->blk[v];
}

/* The descriptor and data of value v as step i moves it: its u8 copy for a u8 step. */
static dnnl_status_t step_md(const cpu_prog *g, int i, int v, int l, dnnl_memory_desc_t *md) {
    return g->qstep[i] ? q_md(g, v, md) : act_md(g, v, l, md);
}
static void *step_data(const cpu_prog *g, int i, int v, int l) {
    return g->qstep[i] ? g->q[v] : act_data(g, v, l);
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
    if (!e->prim && !e->fn) {
        memset(e, 0, sizeof *e);
        return;
    }
    if (e->prim) dnnl_primitive_destroy(e->prim);
    for (int k = 0; k < e->n_args; k++) dnnl_memory_destroy(e->args[k].memory);
    memset(e, 0, sizeof *e);
}

/* Forget everything built for the step, keeping its exec slots and layout plan. */
static void step_reset(cpu_step *cs) {
    for (int k = 0; k < cs->n_ex; k++) exec_clear(&cs->ex[k]);
    if (cs->weights_owned) it_aligned_free(cs->weights);
    it_aligned_free(cs->bias);
    cs->weights = NULL;
    cs->weights_owned = 0;
    cs->bias = NULL;
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

/* The order of a descriptor's dimensions by decreasing stride, then its inner blocks: two
 * descriptors with the same key store the same element at the same relative place, up to
 * a view's offset and outer strides. */
static int same_layout(const dnnl_memory_desc_t *a, const dnnl_memory_desc_t *b) {
    if (a->ndims != b->ndims || a->format_kind != dnnl_blocked || b->format_kind != dnnl_blocked) return 0;
    const dnnl_blocking_desc_t *x = &a->format_desc.blocking, *y = &b->format_desc.blocking;
    if (x->inner_nblks != y->inner_nblks) return 0;
    for (int k = 0; k < x->inner_nblks; k++)
        if (x->inner_blks[k] != y->inner_blks[k] || x->inner_idxs[k] != y->inner_idxs[k]) return 0;
    for (int i = 0; i < a->ndims; i++)
        for (int j = 0; j < a->ndims; j++) {
            if (a->dims[i] == 1 || a->dims[j] == 1) continue;   /* a unit dim's stride is arbitrary */
            if ((x->strides[i] > x->strides[j]) != (y->strides[i] > y->strides[j])) return 0;
        }
    return 1;
}

static int reorder_kind(const dnnl_memory_desc_t *smd, const dnnl_memory_desc_t *dmd) {
    if (smd->data_type != dmd->data_type) return EX_CONVERT;
    return same_layout(smd, dmd) ? EX_COPY : EX_REORDER;
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
    if (e) e->kind = reorder_kind(smd, dmd);
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return s;
}

/* Run a reorder once (compile time: weights into oneDNN's preferred layout); attr may
 * carry the scales that quantize them. */
static dnnl_status_t reorder_once(cpu_prog *g, const dnnl_memory_desc_t *smd, const void *src,
                                  const dnnl_memory_desc_t *dmd, void *dst, const_dnnl_primitive_attr_t attr) {
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t prim = NULL;
    dnnl_memory_t ms = NULL, md = NULL;
    dnnl_status_t s = dnnl_reorder_primitive_desc_create(&pd, smd, g->engine, dmd, g->engine, attr);
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

typedef struct weight_job {
    cpu_prog *g;
    const dnnl_memory_desc_t *smd, *dmd;
    const void *src;
    const_dnnl_primitive_attr_t attr;
} weight_job;

static itscam_status fill_weights(void *dst, size_t bytes, void *ctx) {
    weight_job *j = ctx;
    (void)bytes;
    dnnl_status_t s = reorder_once(j->g, j->smd, j->src, j->dmd, dst, j->attr);
    return s == dnnl_success ? ITSCAM_OK : it_err(ITSCAM_ERR_BACKEND, "oneDNN weight reorder failed: status %d", (int)s);
}

/* Weights of step i in the layout (and precision) of dmd: from the model's cache, so
 * that every session of the model shares one copy, or owned when there is no cache.
 * The key holds everything the bytes depend on: the node, the precision and the
 * destination descriptor (layout, data type, padding). */
static dnnl_status_t prepare_weights(cpu_prog *g, int i, cpu_step *cs, const dnnl_memory_desc_t *smd, const void *src,
                                     const dnnl_memory_desc_t *dmd, const_dnnl_primitive_attr_t attr) {
    size_t bytes = dnnl_memory_desc_get_size(dmd);
    if (!g->wcache) {
        cs->weights = it_aligned_alloc(bytes);
        if (!cs->weights) return dnnl_out_of_memory;
        cs->weights_owned = 1;
        return reorder_once(g, smd, src, dmd, cs->weights, attr);
    }
    uint64_t h = 1469598103934665603ull; /* FNV-1a over the descriptor's bytes */
    const unsigned char *b = (const unsigned char *)dmd;
    for (size_t k = 0; k < sizeof *dmd; k++) h = (h ^ b[k]) * 1099511628211ull;
    char key[512];
    snprintf(key, sizeof key, "cpu/%d/%d/%d:%s/%zu/%016llx", (int)g->prec, g->levels, i, g->p->steps[i].node->name,
             bytes, (unsigned long long)h);
    weight_job j = { g, smd, dmd, src, attr };
    const void *w = NULL;
    if (it_weight_cache_get(g->wcache, key, bytes, fill_weights, &j, &w) != ITSCAM_OK) return dnnl_out_of_memory;
    cs->weights = (void *)w; /* read only: oneDNN takes a non-const handle */
    cs->weights_owned = 0;
    return dnnl_success;
}

/* ---- builders ------------------------------------------------------------------------ */

/* Spatial geometry shared by Conv and MaxPool: strides, dilations and the left pads are
 * the reference's window (explicit pads or auto_pad); the right pad is whatever makes
 * oneDNN's output size equal the planned one, which is how ONNX Runtime maps ceil_mode
 * (and the floor of strided convs) onto it. */
static int spatial(const it_node *n, const it_tensor *x, const it_tensor *y, const int64_t *k,
                   dnnl_dims_t strides, dnnl_dims_t dil, dnnl_dims_t pl, dnnl_dims_t pr) {
    it_window w;
    /* ceil_mode only moves the output size, which is read from the plan */
    if (it_window_init(n, &w, 2, x->dims + 2, k, 0) != ITSCAM_OK) {
        it_err_clear();   /* the reference kernel reports it when the step runs there */
        return 0;
    }
    for (int j = 0; j < 2; j++) {
        int64_t s = w.s[j], range = (w.k[j] - 1) * w.d[j] + 1;
        strides[j] = s;
        dil[j] = w.d[j] - 1;   /* oneDNN counts the gaps, ONNX the step */
        pl[j] = w.p0[j];
        pr[j] = (y->dims[2 + j] - 1) * s + range - x->dims[2 + j] - w.p0[j];
        /* pr < 0 when the last rows are never reached (floor of a strided window);
         * oneDNN accepts that as long as the sizes agree */
        if (pr[j] < -(s - 1)) return 0;
    }
    return 1;
}

/* What a Conv step needs checked before oneDNN sees it, in any precision. */
typedef struct conv_geom {
    int bi;                           /* bias value, -1 when none */
    int64_t G, C, M, k[2];
    dnnl_dims_t strides, dil, pl, pr;
} conv_geom;

static int conv_geometry(const it_plan *p, int i, conv_geom *cg) {
    const it_plan_step *s = &p->steps[i];
    const it_node *n = s->node;
    if (s->n_in < 2 || s->in[0] < 0 || s->in[1] < 0 || s->n_out < 1 || s->out[0] < 0) return 0;
    cg->bi = s->n_in > 2 ? s->in[2] : -1;
    const it_tensor *x = &p->t[s->in[0]], *w = &p->t[s->in[1]], *y = &p->t[s->out[0]];
    const it_tensor *b = cg->bi >= 0 ? &p->t[cg->bi] : NULL;
    if (!is_f32_act(x) || !is_f32_act(y) || w->dtype != IT_F32 || (b && b->dtype != IT_F32)) return 0;
    if (x->ndim != 4 || w->ndim != 4 || y->ndim != 4) return 0;
    /* weights must be known now to be reordered once */
    if (!is_const(p, s->in[1]) || (b && !is_const(p, cg->bi))) return 0;
    cg->G = it_attr_int(n, "group", 1);
    cg->C = x->dims[1], cg->M = w->dims[0];
    if (cg->G < 1 || cg->C % cg->G || cg->M % cg->G || w->dims[1] != cg->C / cg->G || y->dims[1] != cg->M ||
        y->dims[0] != x->dims[0] || (b && it_tensor_numel(b) != cg->M))
        return 0;
    const int64_t *ks = NULL;
    if (it_attr_ints(n, "kernel_shape", &ks) == 2 && (ks[0] != w->dims[2] || ks[1] != w->dims[3])) return 0;
    cg->k[0] = w->dims[2], cg->k[1] = w->dims[3];
    return spatial(n, x, y, cg->k, cg->strides, cg->dil, cg->pl, cg->pr);
}

/* Weights as oneDNN wants them (dt, format any) and as the model stores them (f32). */
static dnnl_status_t conv_weights_mds(const conv_geom *cg, dnnl_data_type_t dt, dnnl_memory_desc_t *any,
                                      dnnl_memory_desc_t *user) {
    dnnl_status_t s;
    if (cg->G == 1) {
        dnnl_dims_t wd = {cg->M, cg->C, cg->k[0], cg->k[1]};
        s = dnnl_memory_desc_init_by_tag(any, 4, wd, dt, dnnl_format_tag_any);
        if (s == dnnl_success) s = dnnl_memory_desc_init_by_tag(user, 4, wd, dnnl_f32, dnnl_oihw);
    } else {
        dnnl_dims_t wd = {cg->G, cg->M / cg->G, cg->C / cg->G, cg->k[0], cg->k[1]};
        s = dnnl_memory_desc_init_by_tag(any, 5, wd, dt, dnnl_format_tag_any);
        if (s == dnnl_success) s = dnnl_memory_desc_init_by_tag(user, 5, wd, dnnl_f32, dnnl_goihw);
    }
    return s;
}

static dnnl_status_t build_conv_int8(cpu_prog *g, int i, cpu_step *cs, const conv_geom *cg, const char **what);

/* ---- SiLU ---------------------------------------------------------------------------
 * oneDNN 2.6's swish post-op evaluates exp and a division inside the convolution's inner
 * loop; on AMX it costs more than the convolution (issue 13's profile), and on AVX-512 it
 * adds ~20% (convprobe). Our kernel (silu.c) runs on the output right after the Conv,
 * while the last tiles are still in cache. Which one is faster depends on the machine:
 * silu_mode says, ITSCAM_CPU_SILU=own|onednn overrides it. */
static void run_silu(cpu_prog *g, const exec *e) {
    void *x = e->v[1] == BLOCKED ? g->blk[e->v[0]] : g->p->t[e->v[0]].data;
    if (g->act_dt == dnnl_bf16 && e->v[1] == BLOCKED) it_silu_bf16_mt(x, e->n, g->threads);
    else it_silu_f32_mt(x, e->n, g->threads);
}

/* int8: the Conv wrote fp32 into silu_tmp; SiLU and quantize into the u8 copy in one pass. */
static void run_silu_quant(cpu_prog *g, const exec *e) {
    it_silu_quant_u8_mt(g->silu_tmp, g->q[e->v[0]], e->n, e->c[0], e->c[1], g->levels, g->threads);
}

static dnnl_status_t add_silu(cpu_prog *g, cpu_step *cs, int v, int l, const dnnl_memory_desc_t *md) {
    exec *e = new_exec(cs);
    if (!e) return dnnl_out_of_memory;
    e->fn = run_silu;
    e->v[0] = v, e->v[1] = l;
    /* a padded blocked layout: the padding is zero and SiLU(0) = 0 */
    e->n = dnnl_memory_desc_get_size(md) / (l == BLOCKED ? g->act_size : sizeof(float));
    return dnnl_success;
}

static int silu_mode(it_precision prec) {
    const char *env = getenv("ITSCAM_CPU_SILU");
    if (env && !strcmp(env, "own")) return 1;
    if (env && !strcmp(env, "onednn")) return 0;
    (void)prec;
    return 1;
}

/* fp32, or bf16 when it reads a bf16 blocked copy: bf16 weights, fp32 bias, the SiLU
 * post-op, bf16 blocked output. */
static dnnl_status_t build_conv(cpu_prog *g, int i, cpu_step *cs, const char **what) {
    const it_plan *p = g->p;
    const it_plan_step *s = &p->steps[i];
    conv_geom cg;
    if (!conv_geometry(p, i, &cg)) return dnnl_unimplemented;
    if (g->qconv[i]) return build_conv_int8(g, i, cs, &cg, what);
    const it_tensor *w = &p->t[s->in[1]], *b = cg.bi >= 0 ? &p->t[cg.bi] : NULL;

    dnnl_status_t st = dnnl_success;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_memory_desc_t src_md, dst_md, w_any, w_user, b_md;
    int lx = in_layout(g, i, 0);
    dnnl_data_type_t wdt = lx == BLOCKED ? g->act_dt : dnnl_f32;
    exec *e = new_exec(cs);
    TRY("exec slot", e ? dnnl_success : dnnl_out_of_memory);
    TRY("memory descriptor", act_md(g, s->in[0], lx, &src_md));
    TRY("memory descriptor", act_md(g, s->out[0], cs->layout, &dst_md));
    TRY("memory descriptor", conv_weights_mds(&cg, wdt, &w_any, &w_user));
    if (b) {
        dnnl_dims_t bd = {cg.M};
        TRY("memory descriptor", dnnl_memory_desc_init_by_tag(&b_md, 1, bd, dnnl_f32, dnnl_x));
    }
    dnnl_convolution_desc_t cd;
    TRY("convolution descriptor",
        dnnl_dilated_convolution_forward_desc_init(&cd, dnnl_forward_inference, dnnl_convolution_direct,
                                                   &src_md, &w_any, b ? &b_md : NULL, &dst_md,
                                                   cg.strides, cg.dil, cg.pl, cg.pr));
    int own = s->activation == IT_ACT_SILU && g->silu_own;
    TRY("attributes", make_attr(&attr, s->activation == IT_ACT_SILU && !own));
    dnnl_status_t ps = dnnl_primitive_desc_create(&pd, &cd, attr, g->engine, NULL);
    /* a reduced precision that oneDNN cannot run here is the caller's error, not a
     * reason to fall back to fp32 behind its back */
    if (ps != dnnl_success && wdt != dnnl_f32) g->unsupported = i + 1;
    TRY("convolution primitive descriptor", ps);
    const dnnl_memory_desc_t *w_md = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    TRY("weights", prepare_weights(g, i, cs, &w_user, w->data, w_md, NULL));
    TRY("memory", add_mem(g, e, DNNL_ARG_SRC, &src_md, act_data(g, s->in[0], lx)));
    TRY("memory", add_mem(g, e, DNNL_ARG_WEIGHTS, w_md, cs->weights));
    if (b) TRY("memory", add_mem(g, e, DNNL_ARG_BIAS, &b_md, b->data));
    TRY("memory", add_mem(g, e, DNNL_ARG_DST, &dst_md, act_data(g, s->out[0], cs->layout)));
    TRY("convolution primitive", make_prim(e, pd));
    if (own) TRY("SiLU", add_silu(g, cs, s->out[0], cs->layout, &dst_md));
out:
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return st;
}

/* int8: u8 source (the input's calibrated copy, zero point read at run time), s8 weights
 * quantized per output channel once, output scales src_scale * w_scale[oc], the bias in
 * accumulator units (oneDNN 2.x computes oscale * (acc + bias)), the SiLU post-op, and a
 * fp32 channels-last output, or the u8 copy its int8 readers want, requantized by a linear
 * post-op. Returns dnnl_unimplemented when oneDNN only has its reference int8 kernel
 * here (slower than fp32): the step then runs fp32. */
static dnnl_status_t build_conv_int8(cpu_prog *g, int i, cpu_step *cs, const conv_geom *cg, const char **what) {
    const it_plan *p = g->p;
    const it_plan_step *s = &p->steps[i];
    int x = s->in[0], y = s->out[0];
    const it_tensor *w = &p->t[s->in[1]], *b = cg->bi >= 0 ? &p->t[cg->bi] : NULL;
    int64_t M = cg->M, per = it_tensor_numel(w) / M;
    dnnl_status_t st = dnnl_success;
    dnnl_primitive_attr_t attr = NULL, wattr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_post_ops_t ops = NULL;
    dnnl_memory_desc_t src_md, dst_md, w_any, w_user, b_md, z_md;
    float *ws = it_malloc(2 * (size_t)M * sizeof *ws), *os = ws ? ws + M : NULL;
    exec *e = new_exec(cs);
    cs->bias = it_aligned_alloc((size_t)M * sizeof *cs->bias);
    TRY("scales", ws && cs->bias ? dnnl_success : dnnl_out_of_memory);
    TRY("exec slot", e ? dnnl_success : dnnl_out_of_memory);
    const float *wv = w->data, *bv = b ? b->data : NULL;
    /* Zero-point-free source: with no padding every tap reads a real pixel, so
     * sum w (x - z) = sum w x - z sum w, and the second term is a constant per channel that
     * folds into the bias. oneDNN's kernels for a source zero point are slower (on AMX it
     * falls from brgconv to jit); a padded window would see oneDNN's zeros, not z, at the
     * border, so those keep the zero point. With VNNI only: without it oneDNN halves the
     * weights internally (vpmaddubsw saturation), and the sum below would not be theirs. */
    int fold = g->qz[x] && g->levels == 255 && cg->k[0] == 1 && cg->k[1] == 1 && !cg->pl[0] && !cg->pl[1] &&
               !cg->pr[0] && !cg->pr[1];
    for (int64_t oc = 0; oc < M; oc++) {
        float mx = 0.0f;
        for (int64_t j = 0; j < per; j++) mx = IT_MAX(mx, fabsf(wv[oc * per + j]));
        float sw = mx > 0.0f ? mx / 127.0f : 1.0f;
        ws[oc] = 1.0f / sw;            /* the weights reorder multiplies by it */
        os[oc] = g->qs[x] * sw;
        cs->bias[oc] = bv ? bv[oc] / os[oc] : 0.0f;
        if (fold) {
            /* the s8 weights as the reorder makes them: nearest even, saturated */
            double sum = 0;
            for (int64_t j = 0; j < per; j++) {
                float q = nearbyintf(wv[oc * per + j] * ws[oc]);
                sum += IT_MIN(IT_MAX(q, -128.0f), 127.0f);
            }
            cs->bias[oc] -= (float)((double)g->qz[x] * sum);
        }
    }
    TRY("memory descriptor", q_md(g, x, &src_md));
    /* own SiLU: the Conv writes fp32 (to silu_tmp when its readers want u8), our kernel
     * applies SiLU (and quantizes) after it */
    int own = s->activation == IT_ACT_SILU && g->silu_own, tmp = own && g->prod_q[y];
    TRY("memory descriptor", g->prod_q[y] && !tmp ? q_md(g, y, &dst_md) : act_md(g, y, cs->layout, &dst_md));
    TRY("memory descriptor", conv_weights_mds(cg, dnnl_s8, &w_any, &w_user));
    dnnl_dims_t bd = {M};
    TRY("memory descriptor", dnnl_memory_desc_init_by_tag(&b_md, 1, bd, dnnl_f32, dnnl_x));
    TRY("memory descriptor", zp_md(&z_md));
    dnnl_convolution_desc_t cd;
    TRY("convolution descriptor",
        dnnl_dilated_convolution_forward_desc_init(&cd, dnnl_forward_inference, dnnl_convolution_direct,
                                                   &src_md, &w_any, &b_md, &dst_md,
                                                   cg->strides, cg->dil, cg->pl, cg->pr));
    TRY("attributes", make_attr(&attr, 0));
    TRY("output scales", dnnl_primitive_attr_set_output_scales(attr, M, 1 << 1, os));
    TRY("post-ops", dnnl_post_ops_create(&ops));
    if (s->activation == IT_ACT_SILU && !own)
        TRY("post-ops", dnnl_post_ops_append_eltwise(ops, 1.0f, dnnl_eltwise_swish, 1.0f, 0.0f));
    if (g->prod_q[y] && !tmp) {
        TRY("post-ops", dnnl_post_ops_append_eltwise(ops, 1.0f, dnnl_eltwise_linear, 1.0f / g->qs[y], (float)g->qz[y]));
        /* beyond the calibrated range: saturate at what the readers may take */
        if (g->levels < 255)
            TRY("post-ops", dnnl_post_ops_append_eltwise(ops, 1.0f, dnnl_eltwise_clip, 0.0f, (float)g->levels));
    }
    TRY("post-ops", dnnl_primitive_attr_set_post_ops(attr, ops));
    if (g->qz[x] && !fold) {
        const int32_t rt = DNNL_RUNTIME_S32_VAL;
        TRY("zero points", dnnl_primitive_attr_set_zero_points(attr, DNNL_ARG_SRC, 1, 0, &rt));
    }
    if (dnnl_primitive_desc_create(&pd, &cd, attr, g->engine, NULL) != dnnl_success) {
        st = dnnl_unimplemented;
        goto out;
    }
    const char *impl = "";
    if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) != dnnl_success || !strncmp(impl, "ref", 3)) {
        st = dnnl_unimplemented;
        goto out;
    }
    const dnnl_memory_desc_t *w_md = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    /* f32 -> s8 with per-channel scales; the reorder also applies oneDNN's scale
     * adjustment and compensation on ISAs without VNNI */
    TRY("attributes", dnnl_primitive_attr_create(&wattr));
    TRY("weights scales", dnnl_primitive_attr_set_output_scales(wattr, M, cg->G == 1 ? 1 : 3, ws));
    TRY("weights", prepare_weights(g, i, cs, &w_user, w->data, w_md, wattr));
    TRY("memory", add_mem(g, e, DNNL_ARG_SRC, &src_md, g->q[x]));
    TRY("memory", add_mem(g, e, DNNL_ARG_WEIGHTS, w_md, cs->weights));
    TRY("memory", add_mem(g, e, DNNL_ARG_BIAS, &b_md, cs->bias));
    TRY("memory", add_mem(g, e, DNNL_ARG_DST, &dst_md,
                          tmp ? g->silu_tmp : g->prod_q[y] ? g->q[y] : act_data(g, y, cs->layout)));
    if (g->qz[x] && !fold) TRY("memory", add_mem(g, e, DNNL_ARG_ATTR_ZERO_POINTS | DNNL_ARG_SRC, &z_md, &g->qz[x]));
    TRY("convolution primitive", make_prim(e, pd));
    if (tmp) {
        exec *f = new_exec(cs);
        TRY("SiLU", f ? dnnl_success : dnnl_out_of_memory);
        f->fn = run_silu_quant;
        f->v[0] = y;
        f->c[0] = 1.0f / g->qs[y];
        f->c[1] = (float)g->qz[y];
        f->n = (size_t)it_tensor_numel(&p->t[y]);
    } else if (own) {
        TRY("SiLU", add_silu(g, cs, y, cs->layout, &dst_md));
    }
out:
    if (ops) dnnl_post_ops_destroy(ops);
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (wattr) dnnl_primitive_attr_destroy(wattr);
    if (attr) dnnl_primitive_attr_destroy(attr);
    it_free(ws);
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
    TRY("memory descriptor", step_md(g, i, s->in[0], lx, &src_md));
    TRY("memory descriptor", step_md(g, i, s->out[0], cs->layout, &dst_md));
    dnnl_pooling_v2_desc_t d;
    TRY("pooling descriptor", dnnl_pooling_v2_forward_desc_init(&d, dnnl_forward_inference, dnnl_pooling_max,
                                                                &src_md, &dst_md, strides, kernel, dil, pl, pr));
    st = finish_unary(g, i, cs, &d, &src_md, step_data(g, i, s->in[0], lx), &dst_md,
                      step_data(g, i, s->out[0], cs->layout), "pooling primitive descriptor", what);
out:
    return st;
}

/* ---- u8 Add ----------------------------------------------------------------------------
 * The residual Add of an int8 chain, on the u8 copies: oneDNN 2.6's binary primitive has
 * no zero points, and dequantizing both operands and quantizing the sum costs three
 * fp32 passes where this is one u8 pass:
 *   y = sat(round((a - za) sa / sy + (b - zb) sb / sy + zy)) = sat(round(a ca + b cb + c0)). */
typedef int (*omp_num_fn)(void);

typedef struct qadd_job {
    const uint8_t *a, *b;
    uint8_t *y;
    size_t n;
    float ca, cb, c0, top;
    omp_num_fn tid_fn, nth_fn;        /* looked up by the caller, once per run */
} qadd_job;

static void qadd_range(const qadd_job *j, size_t lo, size_t hi) {
    const uint8_t *a = j->a, *b = j->b;
    uint8_t *y = j->y;
    float ca = j->ca, cb = j->cb, c0 = j->c0 + 0.5f, top = j->top + 0.5f;
    /* a plain loop the compiler vectorises: floor(x + 0.5) of a value clamped to
     * [0.5, top + 0.5] rounds half up, which is within half a step of nearbyint */
    for (size_t k = lo; k < hi; k++) {
        float r = (float)a[k] * ca + (float)b[k] * cb + c0;
        r = r < 0.5f ? 0.5f : r > top ? top : r;
        y[k] = (uint8_t)r;
    }
}

static void qadd_worker(void *ctx) {
    const qadd_job *j = ctx;
    size_t t = j->tid_fn ? (size_t)j->tid_fn() : 0, nt = j->nth_fn ? (size_t)j->nth_fn() : 1;
    if (nt < 1 || t >= nt) t = 0, nt = 1;
    size_t per = (j->n / nt + 63) & ~(size_t)63;   /* whole cache lines per thread */
    size_t lo = IT_MIN(t * per, j->n), hi = IT_MIN(lo + per, j->n);
    qadd_range(j, lo, hi);
}

static void run_qadd(cpu_prog *g, const exec *e) {
    qadd_job j = { g->q[e->v[0]], g->q[e->v[1]], g->q[e->v[2]], (size_t)it_tensor_numel(&g->p->t[e->v[2]]),
                   e->c[0], e->c[1], e->c[2], (float)g->levels, NULL, NULL };
    gomp_parallel_fn par = j.n >= 65536 && g->threads > 1 ? (gomp_parallel_fn)dlsym(RTLD_DEFAULT, "GOMP_parallel") : NULL;
    if (par) {
        j.tid_fn = (omp_num_fn)dlsym(RTLD_DEFAULT, "omp_get_thread_num");
        j.nth_fn = (omp_num_fn)dlsym(RTLD_DEFAULT, "omp_get_num_threads");
    }
    if (par) par(qadd_worker, &j, (unsigned)g->threads, 0);
    else qadd_range(&j, 0, j.n);
}

static dnnl_status_t build_qadd(cpu_prog *g, int i, cpu_step *cs) {
    const it_plan_step *s = &g->p->steps[i];
    int a = s->in[0], b = s->in[1], y = s->out[0];
    exec *e = new_exec(cs);
    if (!e) return dnnl_out_of_memory;
    float inv = 1.0f / g->qs[y];
    e->fn = run_qadd;
    e->v[0] = a, e->v[1] = b, e->v[2] = y;
    e->c[0] = g->qs[a] * inv;
    e->c[1] = g->qs[b] * inv;
    e->c[2] = (float)g->qz[y] - (float)g->qz[a] * e->c[0] - (float)g->qz[b] * e->c[1];
    return dnnl_success;
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
    if (g->qstep[i]) return s->def->id == IT_OP_ADD ? build_qadd(g, i, cs) : dnnl_unimplemented;
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
    TRY("memory descriptor", step_md(g, i, s->in[0], lx, &src_md));
    TRY("memory descriptor", step_md(g, i, s->out[0], cs->layout, &dst_md));
    dnnl_resampling_desc_t d;
    TRY("resampling descriptor", dnnl_resampling_forward_desc_init(&d, dnnl_forward_inference, dnnl_resampling_nearest,
                                                                   NULL, &src_md, &dst_md));
    st = finish_unary(g, i, cs, &d, &src_md, step_data(g, i, s->in[0], lx), &dst_md,
                      step_data(g, i, s->out[0], cs->layout), "resampling primitive descriptor", what);
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
    if (cs->layout == BLOCKED && g->block == 1 && ax == 1) {
        /* channels-last: oneDNN's concat falls back to a slow generic copy there, while
         * a reorder into each input's window of the output (a strided view) is a jit one */
        dnnl_memory_desc_t dmd, smd, sub;
        TRY("memory descriptor", step_md(g, i, s->out[0], BLOCKED, &dmd));
        int64_t off = 0;
        for (int k = 0; k < s->n_in; k++) {
            int v = s->in[k], lx = in_layout(g, i, k);
            const it_tensor *t = &p->t[v];
            dnnl_dims_t dims = {t->dims[0], t->dims[1], t->dims[2], t->dims[3]}, offs = {0, off, 0, 0};
            const void *src;
            int x = g->vsrc[v];
            /* the Split's input in the representation this Concat moves (else its own copy,
             * which a part with other readers has) */
            if (x >= 0 && !g->virt[v] && !(g->qstep[i] ? g->q[x] != NULL : g->has_blk[x] && g->blk[x] != NULL)) x = -1;
            if (x >= 0) {
                /* a Split part: its window of the Split's input, with the parts after it
                 * that continue it there (the C2f/C3k2 pattern concatenates both halves) */
                while (k + 1 < s->n_in && g->vsrc[s->in[k + 1]] == x &&
                       g->voff[s->in[k + 1]] == g->voff[s->in[k]] + p->t[s->in[k]].dims[1]) {
                    k++;
                    dims[1] += p->t[s->in[k]].dims[1];
                }
                dnnl_memory_desc_t xmd;
                dnnl_dims_t xoffs = {0, g->voff[v], 0, 0};
                TRY("memory descriptor", step_md(g, i, x, BLOCKED, &xmd));
                TRY("submemory descriptor", dnnl_memory_desc_init_submemory(&smd, &xmd, dims, xoffs));
                src = step_data(g, i, x, BLOCKED);
            } else {
                TRY("memory descriptor", step_md(g, i, v, lx, &smd));
                src = step_data(g, i, v, lx);
            }
            TRY("submemory descriptor", dnnl_memory_desc_init_submemory(&sub, &dmd, dims, offs));
            TRY("reorder", add_reorder(g, cs, &smd, src, &sub, step_data(g, i, s->out[0], BLOCKED)));
            off += dims[1];
        }
        return dnnl_success;
    }
    if (g->qstep[i]) return dnnl_unimplemented;
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
    TRY("memory descriptor", step_md(g, i, s->in[0], lx, &src_md));
    for (int k = 0; k < s->n_out; k++) {
        dnnl_dims_t dims, offs;
        if (!split_window(p, i, ax, k, dims, offs)) return dnnl_unimplemented;
        if (g->virt[s->out[k]]) continue;   /* its Concats copy it from here */
        TRY("submemory descriptor", dnnl_memory_desc_init_submemory(&sub_md, &src_md, dims, offs));
        TRY("memory descriptor", step_md(g, i, s->out[k], cs->layout, &dst_md));
        TRY("reorder", add_reorder(g, cs, &sub_md, step_data(g, i, s->in[0], lx), &dst_md,
                                   step_data(g, i, s->out[k], cs->layout)));
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

/* u8 quantization of a calibrated range onto [0, levels]: zero must be exact (padding,
 * ReLU-like tails), so the range is widened to hold it and the zero point rounded. */
static void quant_params(float lo, float hi, int levels, float *scale, int32_t *zp) {
    lo = IT_MIN(lo, 0.0f), hi = IT_MAX(hi, 0.0f);
    float sc = (hi - lo) / (float)levels;
    if (!(sc > 1e-12f)) sc = 1e-12f;   /* a constant-zero input (or NaN ranges) */
    float z = nearbyintf(-lo / sc);
    *scale = sc;
    *zp = (int32_t)IT_MIN(IT_MAX(z, 0.0f), (float)levels);
}

/* The largest u8 an int8 Conv may read. Without VNNI oneDNN multiplies with vpmaddubsw,
 * whose int16 sum of two u8*s8 products saturates past 32767: 255*127*2 would (the image
 * layer hits it all the time), 127*127*2 cannot. VNNI accumulates in int32. */
static int quant_levels(void) {
    unsigned isa = (unsigned)dnnl_get_effective_cpu_isa();
    int vnni = (isa & dnnl_cpu_isa_avx512_core_vnni) == dnnl_cpu_isa_avx512_core_vnni ||
               (isa & dnnl_cpu_isa_avx2_vnni) == dnnl_cpu_isa_avx2_vnni;
    return vnni ? 255 : 127;
}

/* Step i is a Conv that runs int8: calibration covers its input and oneDNN has not
 * refused it before. */
static int int8_candidate(const cpu_prog *g, int i) {
    const it_plan *p = g->p;
    const it_plan_step *s = &p->steps[i];
    float lo, hi;
    conv_geom cg;
    return g->prec == IT_PREC_INT8 && g->calib && s->def && s->def->id == IT_OP_CONV && !g->no_int8[i] &&
           s->n_in >= 2 && s->in[0] >= 0 && p->t[s->in[0]].ndim == 4 &&
           it_calib_range(g->calib, p->g->values[s->in[0]].name, &lo, &hi) == 0 && conv_geometry(p, i, &cg);
}

/* ---- int8 between convolutions --------------------------------------------------------
 * A Concat, Split, MaxPool or Resize between int8 Convs moves bytes and compares values
 * without arithmetic, so it can move the u8 copies themselves when its inputs and outputs
 * share one scale and zero point: each such step joins its values into one group whose
 * range is the union of theirs (what TensorRT and OpenVINO do for Concat). The cost is a
 * slightly coarser step for the members whose own range was narrower. */

static int qfind(cpu_prog *g, int v) {
    while (g->qgroup[v] != v) v = g->qgroup[v] = g->qgroup[g->qgroup[v]];
    return v;
}

/* Quantization of every u8 copy: the union of the calibrated ranges of its group, in one
 * pass over the values (qrange[2 * root] and [2 * root + 1] gather each group's). */
static void quantize_groups(cpu_prog *g) {
    const it_plan *p = g->p;
    int nv = p->g->n_values;
    for (int v = 0; v < nv; v++) g->qrange[2 * v] = INFINITY, g->qrange[2 * v + 1] = -INFINITY;
    for (int u = 0; u < nv; u++) {
        float a, b;
        if (it_calib_range(g->calib, p->g->values[u].name, &a, &b) != 0) continue;
        int root = qfind(g, u);
        g->qrange[2 * root] = IT_MIN(g->qrange[2 * root], a);
        g->qrange[2 * root + 1] = IT_MAX(g->qrange[2 * root + 1], b);
    }
    for (int v = 0; v < nv; v++) {
        if (!g->has_q[v] && !g->prod_q[v]) continue;
        int root = qfind(g, v);
        float lo = g->qrange[2 * root], hi = g->qrange[2 * root + 1];
        if (!(lo <= hi)) lo = hi = 0.0f;   /* no member calibrated */
        quant_params(lo, hi, g->levels, &g->qs[v], &g->qz[v]);
    }
}

static int qstep_candidate(const cpu_prog *g, int i) {
    const it_plan *p = g->p;
    const it_plan_step *s = &p->steps[i];
    const cpu_step *cs = &g->steps[i];
    if (g->prec != IT_PREC_INT8 || !g->calib || g->no_q[i] || cs->layout != BLOCKED || !cs->act_mask) return 0;
    int id = s->def->id;
    if (id != IT_OP_CONCAT && id != IT_OP_SPLIT && id != IT_OP_MAXPOOL && id != IT_OP_RESIZE && id != IT_OP_ADD) return 0;
    if (id == IT_OP_ADD && (s->n_in != 2 || cs->act_mask != 3u)) return 0;
    float lo, hi;
    for (int k = 0; k < s->n_in; k++)
        if ((cs->act_mask >> k & 1u) && it_calib_range(g->calib, p->g->values[s->in[k]].name, &lo, &hi) != 0) return 0;
    for (int k = 0; k < s->n_out; k++)
        if (s->out[k] < 0 || it_calib_range(g->calib, p->g->values[s->out[k]].name, &lo, &hi) != 0) return 0;
    return 1;
}

/* 1 when step j reads v as u8. */
static int reads_u8(const cpu_prog *g, int j, int v) {
    const it_plan_step *s = &g->p->steps[j];
    if (g->qconv[j]) return s->in[0] == v;
    if (!g->qstep[j]) return 0;
    for (int k = 0; k < s->n_in; k++)
        if (s->in[k] == v && (g->steps[j].act_mask >> k & 1u)) return 1;
    return 0;
}

/* A candidate moves u8 when a reader of its output reads u8 (decided last to first, so
 * readers are known), and the values of the chosen steps are grouped. */
static void plan_qsteps(cpu_prog *g) {
    const it_plan *p = g->p;
    for (int v = 0; v < p->g->n_values; v++) g->qgroup[v] = v;
    for (int i = p->n_steps - 1; i >= 0; i--) {
        const it_plan_step *s = &p->steps[i];
        g->qstep[i] = 0;
        if (!qstep_candidate(g, i)) continue;
        int want = 0;
        for (int k = 0; k < s->n_out && !want; k++)
            for (int j = i + 1; j < p->n_steps && !want; j++) want = reads_u8(g, j, s->out[k]);
        for (int o = 0; o < p->g->n_outputs; o++)
            for (int k = 0; k < s->n_out; k++) want &= p->g->outputs[o] != s->out[k];
        g->qstep[i] = (uint8_t)want;
    }
    for (int i = 0; i < p->n_steps; i++) {
        const it_plan_step *s = &p->steps[i];
        /* an Add requantizes: its operands keep their own scales */
        if (!g->qstep[i] || s->def->id == IT_OP_ADD) continue;
        int root = qfind(g, s->out[0]);
        for (int k = 0; k < s->n_in; k++)
            if (g->steps[i].act_mask >> k & 1u) g->qgroup[qfind(g, s->in[k])] = root;
        for (int k = 1; k < s->n_out; k++) g->qgroup[qfind(g, s->out[k])] = root;
    }
}

/* Step j is a channels-last Concat that reads input k as Split step i writes it (both u8
 * or both not). */
static int concat_reads_part(const cpu_prog *g, int i, int j, int k) {
    const it_plan_step *s = &g->p->steps[j];
    const cpu_step *cs = &g->steps[j];
    return s->def && s->def->id == IT_OP_CONCAT && cs->layout == BLOCKED && (cs->act_mask >> k & 1u) &&
           g->qstep[j] == g->qstep[i] && step_axis(g->p, j, 4) == 1;
}

/* How Split step i's output v is read: *concats by such Concats, *others by anything
 * else (a graph output counts). */
static void part_readers(const cpu_prog *g, int i, int v, int *concats, int *others) {
    const it_plan *p = g->p;
    *concats = *others = 0;
    for (int o = 0; o < p->g->n_outputs; o++) *others += p->g->outputs[o] == v;
    for (int j = i + 1; j < p->n_steps; j++)
        for (int k = 0; k < p->steps[j].n_in; k++)
            if (p->steps[j].in[k] == v) {
                if (concat_reads_part(g, i, j, k)) (*concats)++;
                else (*others)++;
            }
}

static void plan_virtual_parts(cpu_prog *g) {
    const it_plan *p = g->p;
    int nv = p->g->n_values;
    memset(g->pinned, 0, 2 * (size_t)nv);
    for (int v = 0; v < nv; v++) g->vsrc[v] = -1, g->voff[v] = 0;
    if (g->block != 1) return;   /* blocked layouts have in-place Concats instead (place_concats) */
    for (int i = 0; i < p->n_steps; i++) {
        const it_plan_step *s = &p->steps[i];
        const cpu_step *cs = &g->steps[i];
        if (!s->def || s->def->id != IT_OP_SPLIT || cs->layout != BLOCKED || !cs->act_mask || g->force_plain[i]) continue;
        int x = s->in[0];
        /* the Split must read the copy the Concats will read from */
        if (g->qstep[i] ? !g->has_q[x] && !g->prod_q[x] : !g->has_blk[x]) continue;
        int64_t off = 0;
        for (int k = 0; k < s->n_out; k++) {
            int o = s->out[k], concats, others;
            if (o < 0) continue;
            part_readers(g, i, o, &concats, &others);
            if (concats) {
                g->vsrc[o] = x, g->voff[o] = (int)off;
                g->pinned[x] = 1;
                if (!others) {
                    g->virt[o] = 1;
                    g->has_blk[o] = g->has_q[o] = 0;
                }
            }
            off += p->t[o].dims[1];
        }
    }
}

static void plan_layouts(cpu_prog *g) {
    const it_plan *p = g->p;
    int nv = p->g->n_values;
    memset(g->prod, PLAIN, (size_t)nv);
    memset(g->has_plain, 0, (size_t)nv);
    memset(g->has_blk, 0, (size_t)nv);
    memset(g->has_q, 0, (size_t)nv);
    memset(g->prod_q, 0, (size_t)nv);
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
        /* int8 Convs work channels-last, which is then the blocked layout */
        g->qconv[i] = cs->layout == BLOCKED && int8_candidate(g, i);
        for (int k = 0; k < s->n_out; k++)
            if (s->out[k] >= 0) g->prod[s->out[k]] = (uint8_t)cs->layout;
    }
    plan_qsteps(g);
    /* which copies the consumers need */
    for (int o = 0; o < p->g->n_outputs; o++) g->has_plain[p->g->outputs[o]] = 1;
    for (int i = 0; i < p->n_steps; i++) {
        const it_plan_step *s = &p->steps[i];
        const cpu_step *cs = &g->steps[i];
        for (int k = 0; k < s->n_in; k++) {
            int v = s->in[k];
            if (v < 0) continue;
            if ((k == 0 && g->qconv[i]) || (g->qstep[i] && (cs->act_mask >> k & 1u))) {
                g->has_q[v] = 1;
                continue;
            }
            int want = cs->layout == BLOCKED && (cs->act_mask >> k & 1u) ? BLOCKED : PLAIN;
            /* the first Conv reads the few channels of the image as they are (in fp32:
             * bf16 convolutions need a bf16 source) */
            if (want == BLOCKED && s->def->id == IT_OP_CONV && g->prod[v] == PLAIN && p->t[v].dims[1] < g->block &&
                g->act_dt == dnnl_f32)
                want = PLAIN;
            if (want == BLOCKED) g->has_blk[v] = 1;
            else g->has_plain[v] = 1;
        }
    }
    /* an int8 Conv's output that only int8 Convs read is written as their u8 copy */
    for (int i = 0; i < p->n_steps; i++) {
        int y = p->steps[i].n_out > 0 ? p->steps[i].out[0] : -1;
        if (g->qconv[i] && y >= 0 && g->has_q[y] && !g->has_plain[y] && !g->has_blk[y]) g->prod_q[y] = 1;
        /* a u8 step writes only u8; readers in fp32 get a dequantized copy */
        for (int k = 0; g->qstep[i] && k < p->steps[i].n_out; k++)
            if (p->steps[i].out[k] >= 0) g->prod_q[p->steps[i].out[k]] = 1;
    }
    quantize_groups(g);
    for (int v = 0; v < nv; v++) {
        if (g->prod_q[v]) continue;
        if (g->prod[v] == BLOCKED) g->has_blk[v] = 1;
        else if (p->offset[v] >= 0 || p->t[v].data) g->has_plain[v] = 1;
    }
    plan_virtual_parts(g);
}

/* A buffer of the working memory (allocated at compile time, never per run). Left
 * untouched: a session moves it into its workspace right after compile, and pages never
 * written cost no memory; the padded ones are zeroed when the program is complete
 * (cpu_resume). */
static void *work_alloc(cpu_prog *g, size_t bytes, int padded) {
    void *ptr = it_aligned_alloc(bytes);
    if (!ptr) return NULL;
    g->bufs[g->n_bufs++] = (work_buf){ ptr, bytes, g->work_bytes, padded };
    g->work_bytes += IT_ALIGN_UP(bytes);
    return ptr;
}

/* Zero the channel padding that oneDNN expects to stay zero. */
static void cpu_resume(void *vp) {
    cpu_prog *g = vp;
    for (int k = 0; g && k < g->n_bufs; k++)
        if (g->bufs[k].padded) memset(g->bufs[k].ptr, 0, g->bufs[k].bytes);
}

static void free_work(cpu_prog *g) {
    if (!g->ws)
        for (int k = 0; k < g->n_bufs; k++) it_aligned_free(g->bufs[k].ptr);
    g->n_bufs = 0;
    g->work_bytes = 0;
    g->scratch = NULL;
    g->silu_tmp = NULL;
}

static void free_blocked(cpu_prog *g) {
    if (!g->blk || !g->q || !g->q_owned) return;   /* compile failed before they were set up */
    free_work(g);
    for (int v = 0; v < g->p->g->n_values; v++) {
        g->blk[v] = g->q[v] = NULL;
        g->blk_owned[v] = g->aliased[v] = g->q_owned[v] = 0;
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
    /* channels-last parts are not contiguous */
    if (g->steps[i].layout != BLOCKED || s->def->id != IT_OP_CONCAT || y->dims[0] != 1 || g->block < 2) return -1;
    int64_t ch = 0;
    for (int j = 0; j < k; j++) {
        int64_t c = p->t[s->in[j]].dims[1];
        if (c % g->block) return -1;   /* the next part would start inside a block */
        ch += c;
    }
    return ch * y->dims[2] * y->dims[3] * (int64_t)g->act_size;
}

/* 1 when the blocked copy of v (need bytes) has channel padding, which must stay zero. */
static int padded(const cpu_prog *g, int v, size_t need) {
    return need != (size_t)it_tensor_numel(&g->p->t[v]) * g->act_size;
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
        g->blk[y] = work_alloc(g, need, padded(g, y, need));
        if (!g->blk[y]) return it_err(ITSCAM_ERR_NOMEM, "cpu backend: %zu bytes for '%s'", need, p->g->values[y].name);
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
        if (!g->has_plain[v] && need <= p->t[v].nbytes && !g->pinned[v]) {
            g->blk[v] = p->t[v].data;
            continue;
        }
        g->blk[v] = work_alloc(g, need, padded(g, v, need));
        if (!g->blk[v]) return it_err(ITSCAM_ERR_NOMEM, "cpu backend: %zu bytes for a blocked copy of '%s'", need,
                                      p->g->values[v].name);
        g->blk_owned[v] = 1;
    }
    /* u8 copies: the arena slot when they are the only copy, else a buffer of ours */
    for (int v = 0; v < p->g->n_values; v++) {
        if (!g->has_q[v] || g->q[v]) continue;
        dnnl_memory_desc_t md;
        dnnl_status_t s = q_md(g, v, &md);
        if (s != dnnl_success)
            return it_err(ITSCAM_ERR_BACKEND, "cpu backend: value '%s': oneDNN memory descriptor failed: status %d",
                          p->g->values[v].name, (int)s);
        size_t need = dnnl_memory_desc_get_size(&md);
        if (!g->has_plain[v] && !g->has_blk[v] && p->offset[v] >= 0 && need <= p->t[v].nbytes && !g->pinned[v]) {
            g->q[v] = p->t[v].data;
            continue;
        }
        g->q[v] = work_alloc(g, need, 0);
        if (!g->q[v]) return it_err(ITSCAM_ERR_NOMEM, "cpu backend: %zu bytes for a u8 copy of '%s'", need,
                                    p->g->values[v].name);
        g->q_owned[v] = 1;
    }
    /* int8 Convs whose SiLU and quantization run after them write fp32 here first; one
     * buffer serves all, as steps run one at a time */
    size_t tmp = 0;
    for (int i = 0; i < p->n_steps && g->silu_own; i++)
        if (g->qconv[i] && p->steps[i].activation == IT_ACT_SILU && g->prod_q[p->steps[i].out[0]])
            tmp = IT_MAX(tmp, (size_t)it_tensor_numel(&p->t[p->steps[i].out[0]]) * sizeof(float));
    if (tmp && !(g->silu_tmp = work_alloc(g, tmp, 0)))
        return it_err(ITSCAM_ERR_NOMEM, "cpu backend: %zu bytes for int8 SiLU", tmp);
    return ITSCAM_OK;
}

/* The quantizing reorder that makes v's u8 copy from the copy its producer writes:
 * u8 = x / qs + qz, rounded and saturated. */
static dnnl_status_t add_quantize(cpu_prog *g, cpu_step *cs, int v) {
    int from = g->prod[v];
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_memory_desc_t smd, dmd, zmd;
    float inv = 1.0f / g->qs[v];
    const int32_t rt = DNNL_RUNTIME_S32_VAL;
    exec *e = new_exec(cs);
    dnnl_status_t s = e ? make_attr(&attr, 0) : dnnl_out_of_memory;
    if (s == dnnl_success) s = dnnl_primitive_attr_set_output_scales(attr, 1, 0, &inv);
    if (s == dnnl_success && g->qz[v]) s = dnnl_primitive_attr_set_zero_points(attr, DNNL_ARG_DST, 1, 0, &rt);
    if (s == dnnl_success) s = act_md(g, v, from, &smd);
    if (s == dnnl_success) s = q_md(g, v, &dmd);
    if (s == dnnl_success) s = zp_md(&zmd);
    if (s == dnnl_success) s = dnnl_reorder_primitive_desc_create(&pd, &smd, g->engine, &dmd, g->engine, attr);
    if (s == dnnl_success) s = add_mem(g, e, DNNL_ARG_FROM, &smd, act_data(g, v, from));
    if (s == dnnl_success) s = add_mem(g, e, DNNL_ARG_TO, &dmd, g->q[v]);
    if (s == dnnl_success && g->qz[v]) s = add_mem(g, e, DNNL_ARG_ATTR_ZERO_POINTS | DNNL_ARG_DST, &zmd, &g->qz[v]);
    if (s == dnnl_success) s = make_prim(e, pd);
    if (e) e->kind = EX_CONVERT;
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return s;
}

/* The reorder that makes v's fp32 copy in layout l from its u8 copy. */
static dnnl_status_t add_dequantize(cpu_prog *g, cpu_step *cs, int v, int l) {
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_memory_desc_t smd, dmd, zmd;
    const int32_t rt = DNNL_RUNTIME_S32_VAL;
    exec *e = new_exec(cs);
    dnnl_status_t s = e ? make_attr(&attr, 0) : dnnl_out_of_memory;
    if (s == dnnl_success) s = dnnl_primitive_attr_set_output_scales(attr, 1, 0, &g->qs[v]);
    if (s == dnnl_success && g->qz[v]) s = dnnl_primitive_attr_set_zero_points(attr, DNNL_ARG_SRC, 1, 0, &rt);
    if (s == dnnl_success) s = q_md(g, v, &smd);
    if (s == dnnl_success) s = act_md(g, v, l, &dmd);
    if (s == dnnl_success) s = zp_md(&zmd);
    if (s == dnnl_success) s = dnnl_reorder_primitive_desc_create(&pd, &smd, g->engine, &dmd, g->engine, attr);
    if (s == dnnl_success) s = add_mem(g, e, DNNL_ARG_FROM, &smd, g->q[v]);
    if (s == dnnl_success) s = add_mem(g, e, DNNL_ARG_TO, &dmd, act_data(g, v, l));
    if (s == dnnl_success && g->qz[v]) s = add_mem(g, e, DNNL_ARG_ATTR_ZERO_POINTS | DNNL_ARG_SRC, &zmd, &g->qz[v]);
    if (s == dnnl_success) s = make_prim(e, pd);
    if (e) e->kind = EX_CONVERT;
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return s;
}

/* The reorders that make v's other copies, appended to its producer's execs. */
static dnnl_status_t add_conversion(cpu_prog *g, cpu_step *cs, int v) {
    int from = g->prod[v], to = from == BLOCKED ? PLAIN : BLOCKED;
    dnnl_status_t s = dnnl_success;
    if (g->prod_q[v]) {
        /* written as u8 only: fp32 readers get x = qs * (u8 - qz) */
        if (g->has_blk[v]) s = add_dequantize(g, cs, v, BLOCKED);
        if (s == dnnl_success && g->has_plain[v]) s = add_dequantize(g, cs, v, PLAIN);
        return s;
    }
    if (from == BLOCKED ? g->has_plain[v] : g->has_blk[v]) {
        dnnl_memory_desc_t smd, dmd;
        s = act_md(g, v, from, &smd);
        if (s == dnnl_success) s = act_md(g, v, to, &dmd);
        if (s == dnnl_success) s = add_reorder(g, cs, &smd, act_data(g, v, from), &dmd, act_data(g, v, to));
    }
    if (s == dnnl_success && g->has_q[v]) s = add_quantize(g, cs, v);
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
    it_free(g->qgroup);
    it_free(g->pinned);
    it_free(g->blk);
    it_free(g->q);
    it_free(g->qs);
    it_free(g->qrange);
    it_free(g->qz);
    it_free(g->bufs);
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

/* Process-wide run counters (itscam_backend_get_counters). */
static _Atomic uint64_t n_runs, n_moved[EX_CONVERT + 1];

static void cpu_counters(itscam_backend_counters *out) {
    out->runs = atomic_load_explicit(&n_runs, memory_order_relaxed);
    out->reorders = atomic_load_explicit(&n_moved[EX_REORDER], memory_order_relaxed);
    out->copies = atomic_load_explicit(&n_moved[EX_COPY], memory_order_relaxed);
    out->conversions = atomic_load_explicit(&n_moved[EX_CONVERT], memory_order_relaxed);
}

/* Give every primitive the shared scratchpad, now that its size is known. */
static itscam_status attach_scratch(cpu_prog *g, int n_execs) {
    memset(g->n_moves, 0, sizeof g->n_moves);
    for (int k = 0; k < n_execs; k++)
        if (g->execs[k].prim || g->execs[k].fn) g->n_moves[g->execs[k].kind]++;
    for (int k = 0; k < n_execs; k++) g->scratch_bytes = IT_MAX(g->scratch_bytes, g->execs[k].scratch_bytes);
    if (!g->scratch_bytes) return ITSCAM_OK;
    g->scratch = work_alloc(g, g->scratch_bytes, 0);
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

static const char *isa_name(dnnl_cpu_isa_t isa);

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
            if (g->unsupported) {
                *st = it_err(ITSCAM_ERR_UNSUPPORTED, "node '%s' (%s): oneDNN has no %s %s on this machine (isa %s)",
                             it_node_label(s->node), s->node->op_type, g->prec == IT_PREC_BF16 ? "bf16" : "int8",
                             s->node->op_type, isa_name(dnnl_get_effective_cpu_isa()));
                return 0;
            }
            if (ds == dnnl_success) {
                cs->native = 1;
            } else if (ds == dnnl_unimplemented) {
                step_reset(cs);
                if (g->qstep[i]) {
                    it_log(ITSCAM_LOG_DEBUG, "cpu: node '%s' (%s) moves fp32 (no u8 primitive)", it_node_label(s->node),
                           s->node->op_type);
                    g->no_q[i] = 1;
                    return 1;
                }
                if (g->qconv[i]) {
                    /* no fast int8 kernel for this one: fp32, and plan again */
                    it_log(ITSCAM_LOG_DEBUG, "cpu: node '%s' runs fp32 (no int8 kernel)", it_node_label(s->node));
                    g->no_int8[i] = 1;
                    return 1;
                }
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
    g->prec = opts ? opts->precision : IT_PREC_FP32;
    g->calib = opts ? opts->calib : NULL;
    g->wcache = opts ? opts->weights : NULL;
    g->act_dt = g->prec == IT_PREC_BF16 ? dnnl_bf16 : dnnl_f32;
    g->act_size = g->prec == IT_PREC_BF16 ? 2 : 4;
    size_t nv = p->g->n_values > 0 ? (size_t)p->g->n_values : 1, ns = p->n_steps > 0 ? (size_t)p->n_steps : 1;
    /* exec slots: a step's primitives (one per output for Split, one per copied input for
     * a sliced Concat) and two conversions per output (the other layout, the u8 copy);
     * the head converts graph inputs */
    int n_execs = 2 * p->g->n_inputs;
    for (int i = 0; i < p->n_steps; i++) n_execs += 3 * p->steps[i].n_out + p->steps[i].n_in + 1;
    g->steps = it_calloc(ns, sizeof *g->steps);
    g->execs = it_calloc(n_execs > 0 ? (size_t)n_execs : 1, sizeof *g->execs);
    g->prod = it_calloc(8 * nv + 5 * ns, 1);
    g->qgroup = it_calloc(3 * nv, sizeof *g->qgroup);
    g->pinned = it_calloc(2 * nv, 1);
    g->blk = it_calloc(nv, sizeof *g->blk);
    g->q = it_calloc(nv, sizeof *g->q);
    g->qs = it_calloc(nv, sizeof *g->qs);
    g->qrange = it_calloc(2 * nv, sizeof *g->qrange);
    g->qz = it_calloc(nv, sizeof *g->qz);
    g->bufs = it_calloc(2 * nv + 1, sizeof *g->bufs);   /* a blocked and a u8 copy per value, the scratchpad */
    itscam_status st = ITSCAM_OK;
    if (!g->steps || !g->execs || !g->prod || !g->qgroup || !g->pinned || !g->blk || !g->q || !g->qs || !g->qrange || !g->qz || !g->bufs) {
        st = it_err(ITSCAM_ERR_NOMEM, "cpu backend: %d steps", p->n_steps);
        goto fail;
    }
    g->has_plain = g->prod + nv;
    g->has_blk = g->prod + 2 * nv;
    g->blk_owned = g->prod + 3 * nv;
    g->aliased = g->prod + 4 * nv;
    g->has_q = g->prod + 5 * nv;
    g->prod_q = g->prod + 6 * nv;
    g->q_owned = g->prod + 7 * nv;
    g->force_plain = g->prod + 8 * nv;
    g->qconv = g->force_plain + ns;
    g->no_int8 = g->qconv + ns;
    g->vsrc = g->qgroup + nv;
    g->voff = g->qgroup + 2 * nv;
    g->virt = g->pinned + nv;
    g->qstep = g->no_int8 + ns;
    g->no_q = g->qstep + ns;
    exec *slot = g->execs;
    g->head.ex = slot, g->head.cap_ex = 2 * p->g->n_inputs, slot += 2 * p->g->n_inputs;
    for (int i = 0; i < p->n_steps; i++) {
        g->steps[i].ex = slot;
        g->steps[i].cap_ex = 3 * p->steps[i].n_out + p->steps[i].n_in + 1;
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
    g->levels = quant_levels();
    g->silu_own = silu_mode(g->prec);
    if (g->prec == IT_PREC_INT8)
        for (int i = 0; i < p->n_steps; i++)
            if (int8_candidate(g, i)) {
                /* oneDNN's int8 convolutions read and write channels-last: so does
                 * everything between them */
                g->tag = dnnl_acdb, g->block = 1;
                break;
            }
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
    cpu_resume(g);   /* oneDNN keeps the channel padding zero */
    *out = g;
    return ITSCAM_OK;
fail:
    cpu_destroy(g);
    return st;
}

/* ---- sharing memory with the other programs of a session ------------------------------ */

static size_t cpu_workspace_bytes(const void *vp) {
    const cpu_prog *g = vp;
    return g ? g->work_bytes : 0;
}

/* Where ptr goes under r: the same distance into the new arena, or into its buffer's place
 * in the new workspace; unchanged when it points into neither (constants, zero points). */
static void *relocate(const cpu_prog *g, const it_relocation *r, void *ptr) {
    const uint8_t *q = ptr;
    if (!q) return ptr;
    if (r->old_arena && q >= r->old_arena && q < r->old_arena + r->arena_bytes)
        return r->new_arena + (q - r->old_arena);
    for (int k = 0; k < g->n_bufs; k++)
        if (q >= g->bufs[k].ptr && q < g->bufs[k].ptr + g->bufs[k].bytes)
            return r->new_workspace + g->bufs[k].offset + (q - g->bufs[k].ptr);
    return ptr;
}

static void rebind_execs(cpu_prog *g, const it_relocation *r, exec *ex, int n) {
    for (int k = 0; k < n; k++)
        for (int a = 0; a < ex[k].n_args; a++) {
            void *h = NULL;
            if (dnnl_memory_get_data_handle(ex[k].args[a].memory, &h) != dnnl_success) continue;
            void *nh = relocate(g, r, h);
            /* cannot fail for a CPU memory object given a host pointer */
            if (nh != h) (void)dnnl_memory_set_data_handle(ex[k].args[a].memory, nh);
        }
}

/* The session moved the plan's arena and lends a workspace: point every memory object,
 * copy and the scratchpad there, and give back the buffers of our own. */
static void cpu_rebind(void *vp, const it_relocation *r) {
    cpu_prog *g = vp;
    if (!g) return;
    const it_plan *p = g->p;
    rebind_execs(g, r, g->head.ex, g->head.n_ex);
    for (int i = 0; i < p->n_steps; i++) rebind_execs(g, r, g->steps[i].ex, g->steps[i].n_ex);
    for (int v = 0; v < p->g->n_values; v++) {
        g->blk[v] = relocate(g, r, g->blk[v]);
        g->q[v] = relocate(g, r, g->q[v]);
    }
    g->scratch = relocate(g, r, g->scratch);
    g->silu_tmp = relocate(g, r, g->silu_tmp);
    for (int k = 0; k < g->n_bufs; k++) {
        if (!g->ws) it_aligned_free(g->bufs[k].ptr);
        g->bufs[k].ptr = r->new_workspace + g->bufs[k].offset;
    }
    if (g->n_bufs) g->ws = r->new_workspace;
    cpu_resume(g);   /* the workspace holds what another program left there */
}

static dnnl_status_t run_execs(cpu_prog *g, const exec *ex, int n) {
    for (int k = 0; k < n; k++) {
        dnnl_status_t s;
        if (ex[k].fn) {
            /* our kernel reads what the primitives before it wrote */
            if ((s = dnnl_stream_wait(g->stream)) != dnnl_success) return s;
            ex[k].fn(g, &ex[k]);
            continue;
        }
        s = dnnl_primitive_execute(ex[k].prim, g->stream, ex[k].n_args, ex[k].args);
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
    atomic_fetch_add_explicit(&n_runs, 1, memory_order_relaxed);
    for (int k = EX_REORDER; k <= EX_CONVERT; k++)
        if (g->n_moves[k]) atomic_fetch_add_explicit(&n_moved[k], (uint64_t)g->n_moves[k], memory_order_relaxed);
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

it_precision it_cpu_step_precision(const void *prog, int i) {
    const cpu_prog *g = prog;
    if (!it_cpu_step_native(prog, i)) return IT_PREC_FP32;
    if (g->qconv[i] || g->qstep[i]) return IT_PREC_INT8;
    return g->steps[i].layout == BLOCKED && g->act_dt == dnnl_bf16 ? IT_PREC_BF16 : IT_PREC_FP32;
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

/* oneDNN's ISA levels are nested bit sets. bf16 counts only with native bf16 (AVX512-BF16
 * or AMX): on plain AVX-512 oneDNN emulates it, slower than fp32. int8 has jit kernels
 * from AVX2 up (VNNI and AMX make them faster still). */
static int cpu_supports(it_precision prec) {
    unsigned isa = (unsigned)dnnl_get_effective_cpu_isa();
    switch (prec) {
    case IT_PREC_FP32: return 1;
    case IT_PREC_BF16: return (isa & dnnl_cpu_isa_avx512_core_bf16) == dnnl_cpu_isa_avx512_core_bf16;
    case IT_PREC_INT8: return (isa & dnnl_cpu_isa_avx2) == dnnl_cpu_isa_avx2;
    default: return 0;
    }
}

const it_backend it_backend_cpu = {
    .version = 1,
    .name = "cpu",
    .description = "oneDNN (Intel/UXL deep neural network library) on the CPU, fp32, bf16 and int8",
    .kind = IT_BACKEND_HOST,
    .available = NULL,
    .compile = cpu_compile,
    .run = cpu_run,
    .destroy = cpu_destroy,
    .supports = cpu_supports,
    .describe = it_cpu_describe,
    .workspace_bytes = cpu_workspace_bytes,
    .rebind = cpu_rebind,
    .resume = cpu_resume,
    .counters = cpu_counters,
};
