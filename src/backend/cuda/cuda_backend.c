/* The CUDA backend: Conv runs on cuDNN, MatMul on cuBLAS, the elementwise, pooling,
 * resizing, softmax and data-movement steps on our own kernels (cuda_kernels.cu); any other
 * step runs its ref kernel on the host between a download of its inputs and an upload of
 * its outputs, so that every model runs, only slower.
 *
 * Layout and precision. Activations are plain NCHW (the plan's row-major layout) on the
 * device. NCHW everywhere keeps every device kernel a one-to-one image of its ref kernel,
 * which matters while the backend cannot be run in CI; cuDNN 9 runs NCHW fp16
 * convolutions on tensor cores through its own internal transforms, at some cost against
 * NHWC. Carrying NHWC between the convolutions (as the cpu backend carries its blocked
 * layout) is the next step for fp16 speed.
 * In fp32 every float value is fp32 on the device and cuDNN and cuBLAS are kept off TF32.
 * In fp16 (IT_PREC_FP16) the 4-D float values, the feature maps and the convolution
 * weights where nearly all the work is, are IEEE half (fp32 arithmetic inside every kernel,
 * fp32 accumulation in cuDNN and cuBLAS); float values of other ranks stay fp32. For YOLO
 * that is the head after its Reshapes: box decoding in pixels up to the input size, where
 * half's steps of 0.25 to 0.5 pixel would show in the output, and the bias vectors, added
 * in fp32 by the Conv epilogue. Kernels that meet both types convert on load and store.
 * Graph inputs and outputs are fp32 on the host; the casts happen on the device.
 *
 * Memory. One device allocation per program holds the activation arena (the plan's
 * offsets, so lifetimes are the planner's), the largest cuDNN workspace, cuBLAS' workspace
 * and a staging buffer for fp32<->fp16 transfers; constants that belong to the plan (folded
 * values, Resize index tables) get one more. Weights (the graph's initializers) are uploaded
 * once per device and precision into a process-wide table with reference counts, so that
 * every session on a model shares them; it is keyed by the initializer's host address,
 * which is stable while the model lives (and a model outlives its sessions). Pinned host
 * buffers stage the input and outputs. Nothing is allocated per run.
 *
 * Running. A run copies the input into pinned memory, enqueues the upload, every step and
 * the downloads on the program's stream, and synchronizes once. From the second run of a
 * program whose steps are all on the device, the sequence is captured into a CUDA graph
 * and replayed (a program is per input shape, so the graph never changes). */
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_kernels.h"
#include "graph/ops_nn.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>

#include <dlfcn.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEV_ALIGN 256                         /* cudaMalloc's own alignment */
#define DEV_ALIGN_UP(x) (((x) + (size_t)(DEV_ALIGN - 1)) & ~(size_t)(DEV_ALIGN - 1))
#define CONV_WS_LIMIT ((size_t)512 << 20)     /* skip cuDNN algorithms that want more */
#define BLAS_WS_BYTES ((size_t)32 << 20)      /* cuBLAS' recommendation for Hopper */
#define MAX_2D_PITCH ((size_t)1 << 30)        /* well below cudaDevAttrMaxPitch */

/* ---- errors ------------------------------------------------------------------------- */

static _Thread_local int last_oom;
static atomic_size_t device_bytes;            /* cudaMalloc'ed by this backend, all devices */

int it_cuda_last_error_is_oom(void) { return last_oom; }

static itscam_status cuda_fail(const char *what, cudaError_t e) {
    last_oom = e == cudaErrorMemoryAllocation;
    return it_err(ITSCAM_ERR_BACKEND, "cuda: %s: %s", what, cudaGetErrorString(e));
}
static itscam_status cudnn_fail(const char *what, cudnnStatus_t s) {
    last_oom = s == CUDNN_STATUS_ALLOC_FAILED;
    return it_err(ITSCAM_ERR_BACKEND, "cuda: %s: %s", what, cudnnGetErrorString(s));
}
static itscam_status cublas_fail(const char *what, cublasStatus_t s) {
    last_oom = s == CUBLAS_STATUS_ALLOC_FAILED;
    return it_err(ITSCAM_ERR_BACKEND, "cuda: %s: %s", what, cublasGetStatusString(s));
}
/* A failure of step i, naming its node. */
static itscam_status step_fail(const it_plan *p, int i, const char *what, cudaError_t e) {
    char buf[256];
    snprintf(buf, sizeof buf, "node '%s' (%s): %s", it_node_label(p->steps[i].node), p->steps[i].node->op_type, what);
    return cuda_fail(buf, e);
}

static cudaError_t dev_malloc(void **ptr, size_t bytes) {
    *ptr = NULL;
    if (!bytes) return cudaSuccess;
    cudaError_t e = cudaMalloc(ptr, bytes);
    if (e == cudaSuccess) atomic_fetch_add(&device_bytes, bytes);
    else *ptr = NULL;
    return e;
}
static void dev_free(void *ptr, size_t bytes) {
    if (!ptr) return;
    (void)cudaFree(ptr);   /* nothing to do about a failure while tearing down */
    atomic_fetch_sub(&device_bytes, bytes);
}

/* ---- devices ------------------------------------------------------------------------ */

static pthread_once_t probe_once = PTHREAD_ONCE_INIT;
static int device_count;
static char probe_why[192];   /* what the probe found when device_count is 0 */

static void probe(void) {
    int n = 0;
    /* The runtime loads the driver library itself and reports its absence as one more
     * error code; trying it first lets the message say "no driver" plainly. The handle
     * stays open: the runtime is about to load the same library anyway. */
    if (!dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL)) {
        snprintf(probe_why, sizeof probe_why, "no CUDA driver (libcuda.so.1 not loadable)");
        return;
    }
    /* no device, a driver older than the runtime: all mean "not here" */
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess)
        snprintf(probe_why, sizeof probe_why, "cudaGetDeviceCount: %s (%s)", cudaGetErrorName(e), cudaGetErrorString(e));
    else if (n <= 0)
        snprintf(probe_why, sizeof probe_why, "cudaGetDeviceCount: 0 devices");
    (void)cudaGetLastError();
    device_count = e == cudaSuccess && n > 0 ? n : 0;
}

static int cuda_available(void) {
    pthread_once(&probe_once, probe);
    return device_count > 0;
}

static int cuda_available_why(char *why, size_t n) {
    int ok = cuda_available();
    if (why && n) snprintf(why, n, "%s", ok ? "" : probe_why);
    return ok;
}

/* The device this process uses: ITSCAM_CUDA_DEVICE, else 0. */
static itscam_status pick_device(int *dev) {
    *dev = 0;
    if (!cuda_available())
        return it_err(ITSCAM_ERR_NOT_FOUND, "cuda: no usable CUDA device on this machine: %s", probe_why);
    const char *e = getenv("ITSCAM_CUDA_DEVICE");
    if (e && *e) {
        char *end;
        long v = strtol(e, &end, 10);
        if (*end || end == e || v < 0 || v >= device_count)
            return it_err(ITSCAM_ERR_INVALID_ARG, "cuda: ITSCAM_CUDA_DEVICE='%s' is not a device index (0..%d)", e,
                          device_count - 1);
        *dev = (int)v;
    }
    return ITSCAM_OK;
}

/* ---- fp16 on the host (weights are converted once, at upload, by it_float_to_half) ---- */

/* Copy bytes of host src to device dst on stream (fp32 to fp16 on the way when half), and
 * wait: the caller may hand dst to other streams right after. */
static itscam_status upload_now(cudaStream_t stream, void *dst, const void *src, size_t bytes, int half) {
    if (!bytes) return ITSCAM_OK;
    uint16_t *tmp = NULL;
    if (half) {
        size_t n = bytes / sizeof(float);
        tmp = it_malloc(n * sizeof *tmp);
        if (!tmp) return it_err(ITSCAM_ERR_NOMEM, "cuda: %zu bytes to convert weights", n * sizeof *tmp);
        const float *f = src;
        for (size_t k = 0; k < n; k++) tmp[k] = it_float_to_half(f[k]);
        src = tmp;
        bytes = n * sizeof *tmp;
    }
    cudaError_t e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(stream);
    it_free(tmp);
    return e == cudaSuccess ? ITSCAM_OK : cuda_fail("uploading constants", e);
}

/* ---- weights shared by the programs of a model -------------------------------------------- */

typedef struct dev_weight {
    struct dev_weight *next;
    const void *host;         /* the initializer's data, owned by the model */
    size_t bytes;             /* its host bytes */
    int device, half;         /* where, and whether stored as fp16 */
    void *dptr;
    size_t dbytes;
    int refs;
} dev_weight;

static pthread_mutex_t weights_lock = PTHREAD_MUTEX_INITIALIZER;
static dev_weight *weights;

static itscam_status weight_acquire(cudaStream_t stream, int device, const void *host, size_t bytes, int half,
                                    dev_weight **out) {
    itscam_status st = ITSCAM_OK;
    pthread_mutex_lock(&weights_lock);
    dev_weight *w = weights;
    while (w && !(w->host == host && w->bytes == bytes && w->device == device && w->half == half)) w = w->next;
    if (!w) {
        w = it_calloc(1, sizeof *w);
        if (!w) {
            st = it_err(ITSCAM_ERR_NOMEM, "cuda: weight table entry");
            goto out;
        }
        w->host = host, w->bytes = bytes, w->device = device, w->half = half;
        w->dbytes = half ? bytes / sizeof(float) * 2 : bytes;
        cudaError_t e = dev_malloc(&w->dptr, w->dbytes);
        if (e != cudaSuccess) st = cuda_fail("allocating weights", e);
        if (st == ITSCAM_OK) st = upload_now(stream, w->dptr, host, bytes, half);
        if (st != ITSCAM_OK) {
            dev_free(w->dptr, w->dbytes);
            it_free(w);
            goto out;
        }
        w->next = weights;
        weights = w;
    }
    w->refs++;
    *out = w;
out:
    pthread_mutex_unlock(&weights_lock);
    return st;
}

/* The caller has made w->device current. */
static void weight_release(dev_weight *w) {
    pthread_mutex_lock(&weights_lock);
    if (--w->refs == 0) {
        dev_weight **pp = &weights;
        while (*pp && *pp != w) pp = &(*pp)->next;
        if (*pp) *pp = w->next;
        dev_free(w->dptr, w->dbytes);
        it_free(w);
    }
    pthread_mutex_unlock(&weights_lock);
}

/* ---- the program ------------------------------------------------------------------------ */

enum {
    K_HOST = 0,   /* the ref kernel on the host */
    K_CONV, K_BINARY, K_SIGMOID, K_MAXPOOL, K_RESIZE, K_COPY, K_CONCAT, K_SPLIT, K_STRIDED, K_SOFTMAX,
    K_MATMUL, K_CAST
};

typedef struct cu_conv {
    cudnnTensorDescriptor_t x, y;
    cudnnFilterDescriptor_t w;
    cudnnConvolutionDescriptor_t conv;
    cudnnConvolutionFwdAlgo_t algo;
    size_t ws_bytes;
    void *dw;                 /* weights in the activation type */
    void *db;                 /* fp32 bias, NULL when none */
    int64_t channels, inner;  /* M and OH*OW, for the epilogue */
} cu_conv;

typedef struct cu_matmul {
    int m, n, k;
    int batch;
    int uniform;              /* A and B advance by sa / sb matrices per output matrix */
    long long sa, sb;
    int64_t *ab;              /* otherwise: the A and B matrix of each output matrix (owned) */
} cu_matmul;

typedef struct cu_step {
    int kind;
    int conv_desc;            /* u.conv's descriptors may exist (also once declined) */
    int type;                 /* IT_CU_F32 / IT_CU_F16 of the float kernels (their output) */
    int ta, tb;               /* Add/Sub/Mul/Div: the types of the two inputs */
    int axis;                 /* Concat, Split */
    int64_t src_off;          /* Slice: first element read */
    void *table;              /* Resize: index tables (device) */
    union {
        cu_conv conv;
        it_cu_binary bin;
        it_cu_pool pool;
        it_cu_strided strided;
        it_cu_gather gather;
        struct { int64_t outer, len, inner; } softmax;
        cu_matmul mm;
        struct { int from, to; } cast;
    } u;
} cu_step;

/* A constant the program owns on the device, uploaded at the end of compile. */
typedef struct pending {
    const void *src;
    size_t bytes;             /* host bytes */
    int half;
    void *tmp;                /* host buffer to free after the upload (Resize tables) */
    void **slot;              /* receives the device address */
} pending;

typedef struct cu_prog {
    const it_plan *p;
    int device;
    it_precision prec;
    cudaStream_t stream;
    cudnnHandle_t cudnn;
    cublasHandle_t cublas;
    /* the one device allocation: arena | conv workspace | cuBLAS workspace | staging */
    uint8_t *dmem;
    size_t dmem_bytes;
    uint8_t *arena;
    void *conv_ws, *blas_ws, *stage;
    size_t conv_ws_bytes, blas_ws_bytes, stage_bytes;
    /* constants owned by the program */
    uint8_t *cmem;
    size_t cmem_bytes;
    pending *pend;
    int n_pend, cap_pend;
    uint8_t *creq;            /* per value: its device copy is requested */
    dev_weight **refs;        /* shared weights held */
    int n_refs, cap_refs;
    /* per value */
    int *vtype;               /* element type on the device (IT_F16 for fp32 values in fp16 mode) */
    void **dptr;              /* device address: arena slot or uploaded constant */
    /* pinned staging of graph inputs and outputs */
    uint8_t *pin_in, *pin_out;
    size_t pin_in_bytes, pin_out_bytes;
    size_t *io_off;           /* per graph input, then per graph output: offset in its pinned buffer */
    cu_step *steps;
    int n_host;               /* steps that run on the host */
    int runs;
    cudaGraph_t graph;
    cudaGraphExec_t gexec;
    int graph_off;            /* capture failed once: run eagerly */
} cu_prog;

static int is_float_dev(int vt) { return vt == IT_F32 || vt == IT_F16; }
static int cu_type(int vt) { return vt == IT_F16 ? IT_CU_F16 : IT_CU_F32; }
static size_t dev_esize(const cu_prog *g, int v) { return it_dtype_size(g->vtype[v]); }
static size_t dev_bytes(const cu_prog *g, int v) {
    int64_t n = it_tensor_numel(&g->p->t[v]);
    return n > 0 ? (size_t)n * dev_esize(g, v) : 0;
}

static int is_act(const it_plan *p, int v) { return v >= 0 && p->offset[v] >= 0; }
static int is_const(const it_plan *p, int v) { return v >= 0 && p->offset[v] < 0 && p->t[v].data; }
/* A value a device step can read: in the arena, or a constant it can upload. */
static int readable(const it_plan *p, int v) { return is_act(p, v) || is_const(p, v); }

static int64_t prod(const int64_t *d, int from, int to) {
    int64_t n = 1;
    for (int i = from; i < to; i++) n *= d[i];
    return n;
}

/* Ask for a device copy of constant v (fp16 when half and the value is fp32) into *slot:
 * at once from the shared table for the graph's initializers, at the end of compile for
 * the plan's folded values. */
static itscam_status request_const(cu_prog *g, int v, int half, void **slot) {
    const it_plan *p = g->p;
    const it_tensor *t = &p->t[v];
    half = half && t->dtype == IT_F32;
    const it_value *gv = &p->g->values[v];
    if (gv->kind == IT_VAL_CONST && t->data == gv->t.data) {
        if (g->n_refs == g->cap_refs) {
            int nc = g->cap_refs ? 2 * g->cap_refs : 64;
            dev_weight **nr = it_realloc(g->refs, (size_t)nc * sizeof *nr);
            if (!nr) return it_err(ITSCAM_ERR_NOMEM, "cuda: weight references");
            g->refs = nr, g->cap_refs = nc;
        }
        dev_weight *w = NULL;
        itscam_status st = weight_acquire(g->stream, g->device, t->data, t->nbytes, half, &w);
        if (st != ITSCAM_OK) return st;
        g->refs[g->n_refs++] = w;
        *slot = w->dptr;
        return ITSCAM_OK;
    }
    if (g->n_pend == g->cap_pend) {
        int nc = g->cap_pend ? 2 * g->cap_pend : 32;
        pending *np = it_realloc(g->pend, (size_t)nc * sizeof *np);
        if (!np) return it_err(ITSCAM_ERR_NOMEM, "cuda: constant list");
        g->pend = np, g->cap_pend = nc;
    }
    g->pend[g->n_pend++] = (pending){ t->data, t->nbytes, half, NULL, slot };
    return ITSCAM_OK;
}

/* The device copy of constant input v in the activation type (once per value). */
static itscam_status need_input(cu_prog *g, int v) {
    if (!is_const(g->p, v) || g->creq[v]) return ITSCAM_OK;
    g->creq[v] = 1;
    return request_const(g, v, g->vtype[v] == IT_F16, &g->dptr[v]);
}

/* ---- step preparation: 1 on the device, 0 on the host, -1 on error (*st set) --------- */

/* Every named input readable on the device, every output in the arena, float types where
 * the kernel computes, no empty tensors (the ref handles those). */
static int io_ok(const cu_prog *g, int i, int n_data, int need_float) {
    const it_plan *p = g->p;
    const it_plan_step *s = &p->steps[i];
    if (s->n_in < n_data || s->n_out < 1) return 0;
    for (int k = 0; k < n_data; k++) {
        int v = s->in[k];
        if (!readable(p, v) || it_tensor_numel(&p->t[v]) <= 0) return 0;
        if (need_float && !is_float_dev(g->vtype[v])) return 0;
    }
    for (int k = 0; k < s->n_out; k++) {
        int v = s->out[k];
        if (!is_act(p, v) || it_tensor_numel(&p->t[v]) <= 0) return 0;
        if (need_float && !is_float_dev(g->vtype[v])) return 0;
    }
    return 1;
}

/* Kernels with one element type for input 0 and output 0. */
static int same_type(const cu_prog *g, int i) {
    const it_plan_step *s = &g->p->steps[i];
    return g->vtype[s->in[0]] == g->vtype[s->out[0]];
}

static itscam_status request_inputs(cu_prog *g, int i, int n_data) {
    for (int k = 0; k < n_data; k++) {
        itscam_status st = need_input(g, g->p->steps[i].in[k]);
        if (st != ITSCAM_OK) return st;
    }
    return ITSCAM_OK;
}

static int fits_int(int64_t v) { return v >= 0 && v <= INT_MAX; }

/* cuDNN statuses that mean "not this way" rather than "broken". */
static int cudnn_declines(cudnnStatus_t s) {
    return s == CUDNN_STATUS_NOT_SUPPORTED || s == CUDNN_STATUS_BAD_PARAM;
}

#define CUDNN_TRY(what, call)                                   \
    do {                                                        \
        cudnnStatus_t s_ = (call);                              \
        if (s_ != CUDNN_STATUS_SUCCESS) {                       \
            if (cudnn_declines(s_)) return 0;                   \
            *st = cudnn_fail(what, s_);                         \
            return -1;                                          \
        }                                                       \
    } while (0)

/* Conv as cudnnConvolutionForward plus our epilogue kernel (bias, then SiLU). cuDNN's
 * cudnnConvolutionBiasActivationForward has no SiLU in the legacy API and takes the
 * identity activation with one algorithm only, so the fused form would cost algorithm
 * choice for one pass over the output that the epilogue makes anyway. The descriptors are
 * destroyed with the program (destroy_steps), also after a decline here. */
static int prep_conv(cu_prog *g, int i, cu_step *cs, itscam_status *st) {
    const it_plan *p = g->p;
    const it_plan_step *s = &p->steps[i];
    if (!io_ok(g, i, 1, 1) || !same_type(g, i) || s->n_in < 2 || !is_const(p, s->in[1])) return 0;
    int bi = s->n_in > 2 ? s->in[2] : -1;
    if (bi >= 0 && !is_const(p, bi)) return 0;
    const it_tensor *x = &p->t[s->in[0]], *w = &p->t[s->in[1]], *y = &p->t[s->out[0]];
    if (w->dtype != IT_F32 || (bi >= 0 && p->t[bi].dtype != IT_F32)) return 0;
    it_conv_geom cg;
    if (it_conv_geom_init(s->node, x, w, &cg) != ITSCAM_OK) {
        it_err_clear();
        return 0;
    }
    const it_window *win = &cg.win;
    int64_t ydims[4] = { cg.n, cg.m, win->out[0], win->out[1] };
    if (it_tensor_numel(y) != cg.n * cg.m * win->out[0] * win->out[1]) return 0;
    if (!fits_int(cg.n) || !fits_int(cg.c) || !fits_int(cg.m) || !fits_int(cg.group) || !fits_int(it_tensor_numel(x)) ||
        !fits_int(it_tensor_numel(y)))
        return 0;
    for (int k = 0; k < 2; k++)
        if (!fits_int(win->in[k]) || !fits_int(win->k[k]) || !fits_int(win->s[k]) || !fits_int(win->d[k]) ||
            !fits_int(win->p0[k]))
            return 0;
    cudnnDataType_t dt = g->vtype[s->in[0]] == IT_F16 ? CUDNN_DATA_HALF : CUDNN_DATA_FLOAT;
    cu_conv *c = &cs->u.conv;
    cs->conv_desc = 1;
    CUDNN_TRY("cudnnCreateTensorDescriptor", cudnnCreateTensorDescriptor(&c->x));
    CUDNN_TRY("cudnnCreateTensorDescriptor", cudnnCreateTensorDescriptor(&c->y));
    CUDNN_TRY("cudnnCreateFilterDescriptor", cudnnCreateFilterDescriptor(&c->w));
    CUDNN_TRY("cudnnCreateConvolutionDescriptor", cudnnCreateConvolutionDescriptor(&c->conv));
    CUDNN_TRY("cudnnSetTensor4dDescriptor",
              cudnnSetTensor4dDescriptor(c->x, CUDNN_TENSOR_NCHW, dt, (int)cg.n, (int)cg.c, (int)win->in[0],
                                         (int)win->in[1]));
    CUDNN_TRY("cudnnSetFilter4dDescriptor",
              cudnnSetFilter4dDescriptor(c->w, dt, CUDNN_TENSOR_NCHW, (int)cg.m, (int)(cg.c / cg.group),
                                         (int)win->k[0], (int)win->k[1]));
    /* cuDNN pads symmetrically: with the left pads on both sides, the output must come
     * out at the planned size, and then every window lies where both agree (zeros) */
    CUDNN_TRY("cudnnSetConvolution2dDescriptor",
              cudnnSetConvolution2dDescriptor(c->conv, (int)win->p0[0], (int)win->p0[1], (int)win->s[0],
                                              (int)win->s[1], (int)win->d[0], (int)win->d[1],
                                              CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    CUDNN_TRY("cudnnSetConvolutionGroupCount", cudnnSetConvolutionGroupCount(c->conv, (int)cg.group));
    /* fp32 is held to 1e-4 of ONNX Runtime: no TF32 tensor cores, which cuDNN's default
     * math mode allows on Ampere and later */
    cudnnMathType_t math = dt == CUDNN_DATA_HALF ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH;
    CUDNN_TRY("cudnnSetConvolutionMathType", cudnnSetConvolutionMathType(c->conv, math));
    int on, oc, oh, ow;
    CUDNN_TRY("cudnnGetConvolution2dForwardOutputDim",
              cudnnGetConvolution2dForwardOutputDim(c->conv, c->x, c->w, &on, &oc, &oh, &ow));
    if (on != ydims[0] || oc != ydims[1] || oh != ydims[2] || ow != ydims[3]) return 0;
    CUDNN_TRY("cudnnSetTensor4dDescriptor",
              cudnnSetTensor4dDescriptor(c->y, CUDNN_TENSOR_NCHW, dt, on, oc, oh, ow));

    /* heuristics only (no benchmarking at compile): the first deterministic algorithm
     * that runs in this math mode within the workspace limit (deterministic: a replayed
     * run gives the same bits) */
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    int got = 0, chosen = -1;
    CUDNN_TRY("cudnnGetConvolutionForwardAlgorithm_v7",
              cudnnGetConvolutionForwardAlgorithm_v7(g->cudnn, c->x, c->w, c->conv, c->y,
                                                     CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &got, perf));
    for (int k = 0; k < got && chosen < 0; k++) {
        if (perf[k].status != CUDNN_STATUS_SUCCESS || perf[k].memory > CONV_WS_LIMIT ||
            perf[k].determinism != CUDNN_DETERMINISTIC)
            continue;
        if (dt == CUDNN_DATA_FLOAT && perf[k].mathType != CUDNN_FMA_MATH && perf[k].mathType != CUDNN_DEFAULT_MATH)
            continue;
        chosen = k;
    }
    if (chosen < 0) return 0;
    c->algo = perf[chosen].algo;
    CUDNN_TRY("cudnnSetConvolutionMathType",
              cudnnSetConvolutionMathType(c->conv, dt == CUDNN_DATA_FLOAT ? CUDNN_FMA_MATH : perf[chosen].mathType));
    CUDNN_TRY("cudnnGetConvolutionForwardWorkspaceSize",
              cudnnGetConvolutionForwardWorkspaceSize(g->cudnn, c->x, c->w, c->conv, c->y, c->algo, &c->ws_bytes));
    if (c->ws_bytes > CONV_WS_LIMIT) return 0;
    c->channels = cg.m;
    c->inner = win->out[0] * win->out[1];
    cs->type = cu_type(g->vtype[s->in[0]]);
    /* the weights in the activation type, the bias in fp32 (the epilogue adds in fp32) */
    if ((*st = request_inputs(g, i, 1)) != ITSCAM_OK ||
        (*st = request_const(g, s->in[1], dt == CUDNN_DATA_HALF, &c->dw)) != ITSCAM_OK ||
        (bi >= 0 && (*st = request_const(g, bi, 0, &c->db)) != ITSCAM_OK))
        return -1;
    return 1;
}

static int prep_binary(cu_prog *g, int i, cu_step *cs, itscam_status *st) {
    const it_plan *p = g->p;
    const it_plan_step *s = &p->steps[i];
    if (s->n_in != 2 || !io_ok(g, i, 2, 1)) return 0;
    const it_tensor *x = &p->t[s->in[0]], *y = &p->t[s->in[1]], *o = &p->t[s->out[0]];
    if (x->dtype != IT_F32 || y->dtype != IT_F32 || o->dtype != IT_F32 || o->ndim > IT_MAX_DIMS) return 0;
    it_cu_binary *b = &cs->u.bin;
    memset(b, 0, sizeof *b);
    switch (s->def->id) {
    case IT_OP_ADD: b->op = IT_CU_ADD; break;
    case IT_OP_SUB: b->op = IT_CU_SUB; break;
    case IT_OP_MUL: b->op = IT_CU_MUL; break;
    default: b->op = IT_CU_DIV; break;
    }
    /* broadcast strides, merged where both inputs stay contiguous (the ref's walk,
     * innermost first) */
    int nd = o->ndim, m = 0;
    int64_t dims[IT_MAX_DIMS], sx[IT_MAX_DIMS], sy[IT_MAX_DIMS], ax = 1, ay = 1;
    for (int d = nd - 1; d >= 0; d--) {
        int ix = d - (nd - x->ndim), iy = d - (nd - y->ndim);
        int64_t dx = ix >= 0 ? x->dims[ix] : 1, dy = iy >= 0 ? y->dims[iy] : 1, dd = o->dims[d];
        if (dd == 1) continue;
        if ((dx != dd && dx != 1) || (dy != dd && dy != 1)) return 0;
        int64_t tx = dx == 1 ? 0 : ax, ty = dy == 1 ? 0 : ay;
        ax *= dx;
        ay *= dy;
        if (m > 0 && tx == sx[m - 1] * dims[m - 1] && ty == sy[m - 1] * dims[m - 1]) {
            dims[m - 1] *= dd;
            continue;
        }
        dims[m] = dd, sx[m] = tx, sy[m] = ty;
        m++;
    }
    if (m == 0) {
        b->ndim = 1;
        b->dims[0] = 1;
    } else {
        b->ndim = m;
        for (int k = 0; k < m; k++) {
            b->dims[k] = dims[m - 1 - k];
            b->sa[k] = sx[m - 1 - k];
            b->sb[k] = sy[m - 1 - k];
        }
    }
    b->max_a = it_tensor_numel(x);
    b->max_b = it_tensor_numel(y);
    cs->type = cu_type(g->vtype[s->out[0]]);
    cs->ta = cu_type(g->vtype[s->in[0]]);
    cs->tb = cu_type(g->vtype[s->in[1]]);
    if ((*st = request_inputs(g, i, 2)) != ITSCAM_OK) return -1;
    return 1;
}

static int prep_sigmoid(cu_prog *g, int i, cu_step *cs, itscam_status *st) {
    const it_plan_step *s = &g->p->steps[i];
    if (!io_ok(g, i, 1, 1) || !same_type(g, i) || g->p->t[s->in[0]].dtype != IT_F32) return 0;
    cs->type = cu_type(g->vtype[s->out[0]]);
    if ((*st = request_inputs(g, i, 1)) != ITSCAM_OK) return -1;
    return 1;
}

static int prep_maxpool(cu_prog *g, int i, cu_step *cs, itscam_status *st) {
    const it_plan *p = g->p;
    const it_plan_step *s = &p->steps[i];
    if (s->n_out != 1 || !io_ok(g, i, 1, 1) || !same_type(g, i)) return 0;
    const it_tensor *x = &p->t[s->in[0]], *y = &p->t[s->out[0]];
    if (x->dtype != IT_F32 || (x->ndim != 3 && x->ndim != 4) || y->ndim != x->ndim) return 0;
    if (it_attr_int(s->node, "storage_order", 0) != 0) return 0;
    int nsp = x->ndim - 2;
    const int64_t *ks;
    if (it_attr_ints(s->node, "kernel_shape", &ks) != nsp) return 0;
    it_window w;
    if (it_window_init(s->node, &w, nsp, x->dims + 2, ks, (int)it_attr_int(s->node, "ceil_mode", 0)) != ITSCAM_OK) {
        it_err_clear();
        return 0;
    }
    int64_t planes = x->dims[0] * x->dims[1];
    if (it_tensor_numel(y) != planes * w.out[0] * w.out[1]) return 0;
    cs->u.pool = (it_cu_pool){ planes, w.in[0], w.in[1], w.out[0], w.out[1], w.k[0], w.k[1], w.s[0], w.s[1],
                               w.d[0], w.d[1], w.p0[0], w.p0[1] };
    cs->type = cu_type(g->vtype[s->out[0]]);
    if ((*st = request_inputs(g, i, 1)) != ITSCAM_OK) return -1;
    return 1;
}

/* ---- Resize (nearest): the ref kernel's coordinate arithmetic, tabulated per axis ----- */

static int prep_resize(cu_prog *g, int i, cu_step *cs, itscam_status *st) {
    const it_plan *p = g->p;
    const it_plan_step *s = &p->steps[i];
    if (s->n_in < 2 || !io_ok(g, i, 1, 1) || !same_type(g, i)) return 0;
    const it_tensor *x = &p->t[s->in[0]], *y = &p->t[s->out[0]];
    int r = x->ndim;
    if (x->dtype != IT_F32 || r < 1 || r > IT_CU_MAX_DIMS || y->ndim != r) return 0;
    const it_tensor *in[4] = { NULL };
    for (int k = 1; k < 4 && k < s->n_in; k++) in[k] = s->in[k] >= 0 ? &p->t[s->in[k]] : NULL;
    it_resize_geom rg;
    /* A Resize we cannot do runs on the host, whose kernel reports what is wrong. */
    if (it_resize_geom_init(s->node, p->opset, x, in[1], p->opset < 11 ? in[1] : in[2], in[3], &rg) != ITSCAM_OK) {
        it_err_clear();
        return 0;
    }
    if (rg.linear || rg.ct == IT_RESIZE_TF_CROP_AND_RESIZE) return 0;   /* host */
    for (int d = 0; d < r; d++)
        if (!(rg.scale[d] > 0) || rg.out[d] != y->dims[d]) return 0;
    it_cu_gather *gp = &cs->u.gather;
    memset(gp, 0, sizeof *gp);
    gp->ndim = r;
    size_t total = 0;
    for (int d = 0; d < r; d++) total += (size_t)y->dims[d];
    int64_t *tab = it_malloc((total ? total : 1) * sizeof *tab);
    if (!tab) {
        *st = it_err(ITSCAM_ERR_NOMEM, "cuda: Resize tables");
        return -1;
    }
    int64_t off = 0, stride = 1;
    for (int d = r - 1; d >= 0; d--) {
        gp->stride[d] = stride;
        stride *= x->dims[d];
    }
    for (int d = 0; d < r; d++) {
        gp->dims[d] = y->dims[d];
        gp->off[d] = off;
        for (int64_t o = 0; o < y->dims[d]; o++)
            tab[off + o] = it_resize_nearest(&rg, d, it_resize_src_coord(&rg, d, (double)o));
        off += y->dims[d];
    }
    if (g->n_pend == g->cap_pend) {
        int nc = g->cap_pend ? 2 * g->cap_pend : 32;
        pending *np = it_realloc(g->pend, (size_t)nc * sizeof *np);
        if (!np) {
            it_free(tab);
            *st = it_err(ITSCAM_ERR_NOMEM, "cuda: constant list");
            return -1;
        }
        g->pend = np, g->cap_pend = nc;
    }
    g->pend[g->n_pend++] = (pending){ tab, total * sizeof *tab, 0, tab, &cs->table };
    cs->type = cu_type(g->vtype[s->out[0]]);
    if ((*st = request_inputs(g, i, 1)) != ITSCAM_OK) return -1;
    return 1;
}

/* ---- data movement ---------------------------------------------------------------------- */

/* Reshape, Squeeze, Unsqueeze, Identity and Cast: the same elements, copied as they are
 * when both sides have one device type (a Cast to the type it already has on the device
 * included), converted between fp32 and fp16 when not (a 4-D fp16 map reshaped to the
 * fp32 head), else on the host (integer casts). */
static int prep_copy(cu_prog *g, int i, cu_step *cs, itscam_status *st) {
    const it_plan *p = g->p;
    const it_plan_step *s = &p->steps[i];
    if (s->n_out != 1 || !io_ok(g, i, 1, 0)) return 0;
    int a = g->vtype[s->in[0]], b = g->vtype[s->out[0]];
    if (it_tensor_numel(&p->t[s->in[0]]) != it_tensor_numel(&p->t[s->out[0]])) return 0;
    if (a != b && !(is_float_dev(a) && is_float_dev(b))) return 0;
    cs->kind = a == b ? K_COPY : K_CAST;
    cs->u.cast.from = cu_type(a);
    cs->u.cast.to = cu_type(b);
    if ((*st = request_inputs(g, i, 1)) != ITSCAM_OK) return -1;
    return 1;
}

static int norm_axis(int64_t axis, int rank, int *out) {
    if (axis < -rank || axis >= rank) return 0;
    *out = (int)(axis < 0 ? axis + rank : axis);
    return 1;
}

/* cudaMemcpy2DAsync of every part: rows of a part and of the whole must be small enough
 * for a pitch. */
static int parts_ok(const cu_prog *g, const int *vals, int n, int whole, int axis) {
    const it_tensor *w = &g->p->t[whole];
    size_t wrow = (size_t)prod(w->dims, axis, w->ndim) * dev_esize(g, whole);
    if (wrow > MAX_2D_PITCH) return 0;
    for (int k = 0; k < n; k++) {
        const it_tensor *t = &g->p->t[vals[k]];
        if (t->ndim != w->ndim || g->vtype[vals[k]] != g->vtype[whole]) return 0;
        for (int d = 0; d < w->ndim; d++)
            if (d != axis && t->dims[d] != w->dims[d]) return 0;
    }
    return 1;
}

static int prep_concat(cu_prog *g, int i, cu_step *cs, itscam_status *st) {
    const it_plan *p = g->p;
    const it_plan_step *s = &p->steps[i];
    if (s->n_out != 1 || !io_ok(g, i, s->n_in, 0)) return 0;
    const it_tensor *o = &p->t[s->out[0]];
    if (!norm_axis(it_attr_int(s->node, "axis", 0), o->ndim, &cs->axis)) return 0;
    if (!parts_ok(g, s->in, s->n_in, s->out[0], cs->axis)) return 0;
    if ((*st = request_inputs(g, i, s->n_in)) != ITSCAM_OK) return -1;
    return 1;
}

static int prep_split(cu_prog *g, int i, cu_step *cs, itscam_status *st) {
    const it_plan *p = g->p;
    const it_plan_step *s = &p->steps[i];
    if (!io_ok(g, i, 1, 0)) return 0;
    const it_tensor *x = &p->t[s->in[0]];
    if (!norm_axis(it_attr_int(s->node, "axis", 0), x->ndim, &cs->axis)) return 0;
    if (!parts_ok(g, s->out, s->n_out, s->in[0], cs->axis)) return 0;
    int64_t sum = 0;
    for (int k = 0; k < s->n_out; k++) sum += p->t[s->out[k]].dims[cs->axis];
    if (sum != x->dims[cs->axis]) return 0;
    if ((*st = request_inputs(g, i, 1)) != ITSCAM_OK) return -1;
    return 1;
}

/* Slice: the ref's geometry; 0 (run on the host) when anything is off. */
static int slice_geometry(const it_plan *p, const it_plan_step *s, it_slice_geom *sg) {
    const it_tensor *in[5] = { NULL };
    for (int k = 1; k < 5 && k < s->n_in; k++) in[k] = s->in[k] >= 0 ? &p->t[s->in[k]] : NULL;
    const it_tensor *x = &p->t[s->in[0]], *y = &p->t[s->out[0]];
    if (it_slice_geom_init(s->node, p->opset, x, in[1], in[2], in[3], in[4], sg) != ITSCAM_OK) {
        it_err_clear();
        return 0;
    }
    for (int k = 0; k < x->ndim; k++)
        if (sg->len[k] != y->dims[k]) return 0;
    return 1;
}

static int prep_strided(cu_prog *g, int i, cu_step *cs, itscam_status *st) {
    const it_plan *p = g->p;
    const it_plan_step *s = &p->steps[i];
    if (s->n_out != 1 || !io_ok(g, i, 1, 0)) return 0;
    const it_tensor *x = &p->t[s->in[0]], *y = &p->t[s->out[0]];
    int r = x->ndim;
    if (r < 1 || r > IT_CU_MAX_DIMS || y->ndim != r || g->vtype[s->in[0]] != g->vtype[s->out[0]]) return 0;
    size_t es = dev_esize(g, s->in[0]);
    if (es != 1 && es != 2 && es != 4 && es != 8) return 0;
    int64_t in_stride[IT_MAX_DIMS], acc = 1;
    for (int k = r - 1; k >= 0; k--) in_stride[k] = acc, acc *= x->dims[k];
    it_cu_strided *sp = &cs->u.strided;
    memset(sp, 0, sizeof *sp);
    sp->ndim = r;
    sp->src_span = acc;
    cs->src_off = 0;
    if (s->def->id == IT_OP_TRANSPOSE) {
        const int64_t *v;
        int n = it_attr_ints(s->node, "perm", &v), seen[IT_MAX_DIMS] = { 0 };
        if (n && n != r) return 0;
        for (int k = 0; k < r; k++) {
            int64_t pk = n ? v[k] : r - 1 - k;
            if (pk < 0 || pk >= r || seen[pk]++) return 0;
            sp->dims[k] = x->dims[pk];
            sp->stride[k] = in_stride[pk];
            if (sp->dims[k] != y->dims[k]) return 0;
        }
    } else {
        it_slice_geom sg;
        if (!slice_geometry(p, s, &sg)) return 0;
        for (int k = 0; k < r; k++) {
            sp->dims[k] = y->dims[k];
            sp->stride[k] = sg.step[k] * in_stride[k];
            cs->src_off += sg.start[k] * in_stride[k];
        }
    }
    if ((*st = request_inputs(g, i, 1)) != ITSCAM_OK) return -1;
    return 1;
}

static int prep_softmax(cu_prog *g, int i, cu_step *cs, itscam_status *st) {
    const it_plan *p = g->p;
    const it_plan_step *s = &p->steps[i];
    if (!io_ok(g, i, 1, 1) || !same_type(g, i)) return 0;
    const it_tensor *x = &p->t[s->in[0]];
    if (x->dtype != IT_F32) return 0;
    int old = p->opset < 13, axis = 0;
    if (x->ndim == 0) {
        cs->u.softmax.outer = cs->u.softmax.len = cs->u.softmax.inner = 1;
    } else {
        if (!norm_axis(it_attr_int(s->node, "axis", old ? 1 : -1), x->ndim, &axis)) return 0;
        cs->u.softmax.outer = prod(x->dims, 0, axis);
        cs->u.softmax.len = old ? prod(x->dims, axis, x->ndim) : x->dims[axis];
        cs->u.softmax.inner = old ? 1 : prod(x->dims, axis + 1, x->ndim);
    }
    cs->type = cu_type(g->vtype[s->out[0]]);
    if ((*st = request_inputs(g, i, 1)) != ITSCAM_OK) return -1;
    return 1;
}

static int prep_matmul(cu_prog *g, int i, cu_step *cs, itscam_status *st) {
    const it_plan *p = g->p;
    const it_plan_step *s = &p->steps[i];
    /* cuBLAS takes one type for A, B and C here */
    if (!io_ok(g, i, 2, 1) || !same_type(g, i) || g->vtype[s->in[1]] != g->vtype[s->out[0]]) return 0;
    const it_tensor *a = &p->t[s->in[0]], *b = &p->t[s->in[1]];
    if (a->dtype != IT_F32 || b->dtype != IT_F32) return 0;
    it_matmul_geom mg;
    if (it_matmul_geom_init(s->node, a, b, &mg) != ITSCAM_OK) {
        it_err_clear();
        return 0;
    }
    /* cuBLAS wants leading dimensions >= 1 */
    if (!fits_int(mg.m) || !fits_int(mg.n) || !fits_int(mg.k) || !fits_int(mg.batch) || mg.batch < 1 || mg.k < 1 ||
        mg.m * mg.n * mg.batch != it_tensor_numel(&p->t[s->out[0]]))
        return 0;
    cu_matmul *mm = &cs->u.mm;
    mm->m = (int)mg.m, mm->n = (int)mg.n, mm->k = (int)mg.k, mm->batch = (int)mg.batch;
    int64_t a0, b0, a1 = 0, b1 = 0;
    it_matmul_batch(&mg, 0, &a0, &b0);
    if (mg.batch > 1) it_matmul_batch(&mg, 1, &a1, &b1);
    mm->sa = (long long)(a1 - a0), mm->sb = (long long)(b1 - b0);
    mm->uniform = a0 == 0 && b0 == 0;
    for (int64_t q = 0; q < mg.batch && mm->uniform; q++) {
        int64_t ai, bi;
        it_matmul_batch(&mg, q, &ai, &bi);
        mm->uniform = ai == q * mm->sa && bi == q * mm->sb;
    }
    if (!mm->uniform) {
        mm->ab = it_malloc(2 * (size_t)mg.batch * sizeof *mm->ab);
        if (!mm->ab) {
            *st = it_err(ITSCAM_ERR_NOMEM, "cuda: MatMul batch table");
            return -1;
        }
        for (int64_t q = 0; q < mg.batch; q++) it_matmul_batch(&mg, q, &mm->ab[2 * q], &mm->ab[2 * q + 1]);
    }
    cs->type = cu_type(g->vtype[s->out[0]]);
    if ((*st = request_inputs(g, i, 2)) != ITSCAM_OK) return -1;
    return 1;
}

typedef int (*prep_fn)(cu_prog *g, int i, cu_step *cs, itscam_status *st);

static const struct {
    int kind;
    prep_fn prep;
} preps[IT_OP_COUNT] = {
    [IT_OP_CONV] = { K_CONV, prep_conv },
    [IT_OP_ADD] = { K_BINARY, prep_binary },
    [IT_OP_SUB] = { K_BINARY, prep_binary },
    [IT_OP_MUL] = { K_BINARY, prep_binary },
    [IT_OP_DIV] = { K_BINARY, prep_binary },
    [IT_OP_SIGMOID] = { K_SIGMOID, prep_sigmoid },
    [IT_OP_MAXPOOL] = { K_MAXPOOL, prep_maxpool },
    [IT_OP_RESIZE] = { K_RESIZE, prep_resize },
    [IT_OP_RESHAPE] = { K_COPY, prep_copy },
    [IT_OP_SQUEEZE] = { K_COPY, prep_copy },
    [IT_OP_UNSQUEEZE] = { K_COPY, prep_copy },
    [IT_OP_IDENTITY] = { K_COPY, prep_copy },
    [IT_OP_CAST] = { K_COPY, prep_copy },
    [IT_OP_CONCAT] = { K_CONCAT, prep_concat },
    [IT_OP_SPLIT] = { K_SPLIT, prep_split },
    [IT_OP_SLICE] = { K_STRIDED, prep_strided },
    [IT_OP_TRANSPOSE] = { K_STRIDED, prep_strided },
    [IT_OP_SOFTMAX] = { K_SOFTMAX, prep_softmax },
    [IT_OP_MATMUL] = { K_MATMUL, prep_matmul },
};

/* ---- running ------------------------------------------------------------------------------- */

/* Device value v to its host tensor (fp32 again when stored as fp16). Pageable memory: the
 * copy is complete when cudaMemcpyAsync returns, so the staging buffer may be reused. */
static cudaError_t download(cu_prog *g, int v) {
    const it_tensor *t = &g->p->t[v];
    if (!is_act(g->p, v) || !t->nbytes) return cudaSuccess;
    if (g->vtype[v] == t->dtype) return cudaMemcpyAsync(t->data, g->dptr[v], t->nbytes, cudaMemcpyDeviceToHost, g->stream);
    cudaError_t e = it_cu_cast(IT_CU_F16, IT_CU_F32, g->dptr[v], g->stage, it_tensor_numel(t), g->stream);
    if (e == cudaSuccess) e = cudaMemcpyAsync(t->data, g->stage, t->nbytes, cudaMemcpyDeviceToHost, g->stream);
    return e;
}

/* Host tensor of v to the device. From pageable memory cudaMemcpyAsync returns once the
 * source is staged, and the cast after it is ordered on the stream. */
static cudaError_t upload(cu_prog *g, int v) {
    const it_tensor *t = &g->p->t[v];
    if (!is_act(g->p, v) || !t->nbytes) return cudaSuccess;
    if (g->vtype[v] == t->dtype) return cudaMemcpyAsync(g->dptr[v], t->data, t->nbytes, cudaMemcpyHostToDevice, g->stream);
    cudaError_t e = cudaMemcpyAsync(g->stage, t->data, t->nbytes, cudaMemcpyHostToDevice, g->stream);
    if (e == cudaSuccess) e = it_cu_cast(IT_CU_F32, IT_CU_F16, g->stage, g->dptr[v], it_tensor_numel(t), g->stream);
    return e;
}

static itscam_status run_host_step(cu_prog *g, int i) {
    const it_plan *p = g->p;
    const it_plan_step *s = &p->steps[i];
    cudaError_t e = cudaSuccess;
    for (int k = 0; k < s->n_in && e == cudaSuccess; k++)
        if (s->in[k] >= 0) e = download(g, s->in[k]);
    if (e == cudaSuccess) e = cudaStreamSynchronize(g->stream);
    if (e != cudaSuccess) return step_fail(p, i, "downloading inputs for the host", e);
    itscam_status st = it_run_step_ref(p, i);
    if (st != ITSCAM_OK) return st;
    for (int k = 0; k < s->n_out && e == cudaSuccess; k++) e = upload(g, s->out[k]);
    return e == cudaSuccess ? ITSCAM_OK : step_fail(p, i, "uploading outputs from the host", e);
}

static itscam_status run_conv(cu_prog *g, int i, const cu_step *cs) {
    const it_plan_step *s = &g->p->steps[i];
    const cu_conv *c = &cs->u.conv;
    const float one = 1.0f, zero = 0.0f;
    cudnnStatus_t ds = cudnnConvolutionForward(g->cudnn, &one, c->x, g->dptr[s->in[0]], c->w, c->dw, c->conv, c->algo,
                                               c->ws_bytes ? g->conv_ws : NULL, c->ws_bytes, &zero, c->y,
                                               g->dptr[s->out[0]]);
    if (ds != CUDNN_STATUS_SUCCESS) {
        char buf[256];
        snprintf(buf, sizeof buf, "node '%s' (Conv): cudnnConvolutionForward", it_node_label(s->node));
        return cudnn_fail(buf, ds);
    }
    cudaError_t e = it_cu_bias_act(cs->type, g->dptr[s->out[0]], c->db, c->channels, c->inner,
                                   it_tensor_numel(&g->p->t[s->out[0]]), s->activation == IT_ACT_SILU, g->stream);
    return e == cudaSuccess ? ITSCAM_OK : step_fail(g->p, i, "bias and activation", e);
}

/* Row-major C[m,n] = A[m,k] B[k,n] is column-major C^T = B^T A^T: cuBLAS gets B first. */
static itscam_status run_matmul(cu_prog *g, int i, const cu_step *cs) {
    const it_plan_step *s = &g->p->steps[i];
    const cu_matmul *mm = &cs->u.mm;
    const float one = 1.0f, zero = 0.0f;
    cudaDataType_t dt = cs->type == IT_CU_F16 ? CUDA_R_16F : CUDA_R_32F;
    size_t es = cs->type == IT_CU_F16 ? 2 : 4;
    const uint8_t *a = g->dptr[s->in[0]], *b = g->dptr[s->in[1]];
    uint8_t *c = g->dptr[s->out[0]];
    long long amat = (long long)mm->m * mm->k, bmat = (long long)mm->k * mm->n, cmat = (long long)mm->m * mm->n;
    cublasStatus_t bs = CUBLAS_STATUS_SUCCESS;
    if (mm->uniform) {
        bs = cublasGemmStridedBatchedEx(g->cublas, CUBLAS_OP_N, CUBLAS_OP_N, mm->n, mm->m, mm->k, &one, b, dt, mm->n,
                                        mm->sb * bmat, a, dt, mm->k, mm->sa * amat, &zero, c, dt, mm->n, cmat,
                                        mm->batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    } else {
        for (int q = 0; q < mm->batch && bs == CUBLAS_STATUS_SUCCESS; q++)
            bs = cublasGemmEx(g->cublas, CUBLAS_OP_N, CUBLAS_OP_N, mm->n, mm->m, mm->k, &one,
                              b + (size_t)mm->ab[2 * q + 1] * (size_t)bmat * es, dt, mm->n,
                              a + (size_t)mm->ab[2 * q] * (size_t)amat * es, dt, mm->k, &zero,
                              c + (size_t)q * (size_t)cmat * es, dt, mm->n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    }
    if (bs != CUBLAS_STATUS_SUCCESS) {
        char buf[256];
        snprintf(buf, sizeof buf, "node '%s' (MatMul): cuBLAS GEMM", it_node_label(s->node));
        return cublas_fail(buf, bs);
    }
    return ITSCAM_OK;
}

/* Concat (gather = 0) or Split (gather = 1) as one 2-D copy per part. */
static cudaError_t run_parts(cu_prog *g, int i, const cu_step *cs, int split) {
    const it_plan *p = g->p;
    const it_plan_step *s = &p->steps[i];
    int whole = split ? s->in[0] : s->out[0];
    const int *vals = split ? s->out : s->in;
    int n = split ? s->n_out : s->n_in;
    const it_tensor *w = &p->t[whole];
    size_t es = dev_esize(g, whole);
    size_t outer = (size_t)prod(w->dims, 0, cs->axis), wrow = (size_t)prod(w->dims, cs->axis, w->ndim) * es, pos = 0;
    cudaError_t e = cudaSuccess;
    for (int k = 0; k < n && e == cudaSuccess; k++) {
        const it_tensor *t = &p->t[vals[k]];
        size_t row = (size_t)prod(t->dims, cs->axis, t->ndim) * es;
        if (row && outer) {
            uint8_t *wp = (uint8_t *)g->dptr[whole] + pos, *tp = g->dptr[vals[k]];
            e = split ? cudaMemcpy2DAsync(tp, row, wp, wrow, row, outer, cudaMemcpyDeviceToDevice, g->stream)
                      : cudaMemcpy2DAsync(wp, wrow, tp, row, row, outer, cudaMemcpyDeviceToDevice, g->stream);
        }
        pos += row;
    }
    return e;
}

static itscam_status run_step(cu_prog *g, int i) {
    const it_plan *p = g->p;
    const it_plan_step *s = &p->steps[i];
    const cu_step *cs = &g->steps[i];
    if (cs->kind == K_HOST) return run_host_step(g, i);
    /* device steps have an input and an output (io_ok) */
    int x = s->in[0], y = s->out[0];
    int64_t n = it_tensor_numel(&p->t[y]);
    cudaError_t e = cudaSuccess;
    switch (cs->kind) {
    case K_CONV: return run_conv(g, i, cs);
    case K_MATMUL: return run_matmul(g, i, cs);
    case K_BINARY:
        e = it_cu_binary_launch(&cs->u.bin, cs->ta, cs->tb, cs->type, g->dptr[s->in[0]], g->dptr[s->in[1]],
                                g->dptr[y], n, g->stream);
        break;
    case K_SIGMOID: e = it_cu_sigmoid(cs->type, g->dptr[x], g->dptr[y], n, g->stream); break;
    case K_MAXPOOL: e = it_cu_maxpool(&cs->u.pool, cs->type, g->dptr[x], g->dptr[y], g->stream); break;
    case K_RESIZE:
        e = it_cu_gather_axes(&cs->u.gather, dev_esize(g, x), cs->table, g->dptr[x], g->dptr[y], n, g->stream);
        break;
    case K_COPY: e = cudaMemcpyAsync(g->dptr[y], g->dptr[x], dev_bytes(g, y), cudaMemcpyDeviceToDevice, g->stream); break;
    case K_CAST: e = it_cu_cast(cs->u.cast.from, cs->u.cast.to, g->dptr[x], g->dptr[y], n, g->stream); break;
    case K_CONCAT: e = run_parts(g, i, cs, 0); break;
    case K_SPLIT: e = run_parts(g, i, cs, 1); break;
    case K_STRIDED: {
        size_t es = dev_esize(g, x);
        e = it_cu_strided_copy(&cs->u.strided, es, (const uint8_t *)g->dptr[x] + cs->src_off * (int64_t)es,
                               g->dptr[y], n, g->stream);
        break;
    }
    case K_SOFTMAX:
        e = it_cu_softmax(cs->type, g->dptr[x], g->dptr[y], cs->u.softmax.outer, cs->u.softmax.len,
                          cs->u.softmax.inner, g->stream);
        break;
    default: return it_err(ITSCAM_ERR_INTERNAL, "cuda: step %d has kind %d", i, cs->kind);
    }
    return e == cudaSuccess ? ITSCAM_OK : step_fail(p, i, "kernel launch", e);
}

/* Everything one run puts on the stream: the inputs up, the steps, the outputs down. */
static itscam_status enqueue(cu_prog *g) {
    const it_plan *p = g->p;
    const it_graph *gr = p->g;
    cudaError_t e = cudaSuccess;
    for (int k = 0; k < gr->n_inputs && e == cudaSuccess; k++) {
        int v = gr->inputs[k];
        const it_tensor *t = &p->t[v];
        if (!is_act(p, v) || !t->nbytes) continue;
        const uint8_t *src = g->pin_in + g->io_off[k];
        if (g->vtype[v] == t->dtype) {
            e = cudaMemcpyAsync(g->dptr[v], src, t->nbytes, cudaMemcpyHostToDevice, g->stream);
        } else {
            e = cudaMemcpyAsync(g->stage, src, t->nbytes, cudaMemcpyHostToDevice, g->stream);
            if (e == cudaSuccess) e = it_cu_cast(IT_CU_F32, IT_CU_F16, g->stage, g->dptr[v], it_tensor_numel(t), g->stream);
        }
    }
    if (e != cudaSuccess) return cuda_fail("uploading the input", e);
    for (int i = 0; i < p->n_steps; i++) {
        itscam_status st = run_step(g, i);
        if (st != ITSCAM_OK) return st;
    }
    for (int k = 0; k < gr->n_outputs && e == cudaSuccess; k++) {
        int v = gr->outputs[k];
        const it_tensor *t = &p->t[v];
        if (!is_act(p, v) || !t->nbytes) continue;
        uint8_t *dst = g->pin_out + g->io_off[gr->n_inputs + k];
        if (g->vtype[v] == t->dtype) {
            e = cudaMemcpyAsync(dst, g->dptr[v], t->nbytes, cudaMemcpyDeviceToHost, g->stream);
        } else {
            e = it_cu_cast(IT_CU_F16, IT_CU_F32, g->dptr[v], g->stage, it_tensor_numel(t), g->stream);
            if (e == cudaSuccess) e = cudaMemcpyAsync(dst, g->stage, t->nbytes, cudaMemcpyDeviceToHost, g->stream);
        }
    }
    return e == cudaSuccess ? ITSCAM_OK : cuda_fail("downloading the outputs", e);
}

/* Capture the run into a graph; on any failure run eagerly from now on. */
static void capture(cu_prog *g) {
    cudaGraph_t graph = NULL;
    cudaError_t e = cudaStreamBeginCapture(g->stream, cudaStreamCaptureModeThreadLocal);
    if (e == cudaSuccess) {
        itscam_status st = enqueue(g);
        cudaError_t ee = cudaStreamEndCapture(g->stream, &graph);
        if (st != ITSCAM_OK || ee != cudaSuccess || !graph) e = ee != cudaSuccess ? ee : cudaErrorStreamCaptureInvalidated;
        if (e == cudaSuccess) e = cudaGraphInstantiate(&g->gexec, graph, 0);
    }
    if (e != cudaSuccess) {
        it_log(ITSCAM_LOG_DEBUG, "cuda: no CUDA graph for this program (%s): running step by step", cudaGetErrorString(e));
        if (graph) (void)cudaGraphDestroy(graph);
        g->gexec = NULL;
        g->graph_off = 1;
        (void)cudaGetLastError();   /* capture failures are not sticky */
        it_err_clear();
        return;
    }
    g->graph = graph;
}

static itscam_status cuda_run(void *vp) {
    cu_prog *g = vp;
    if (!g) return it_err(ITSCAM_ERR_INVALID_ARG, "cuda: NULL program");
    const it_plan *p = g->p;
    const it_graph *gr = p->g;
    int prev = -1;
    if (cudaGetDevice(&prev) != cudaSuccess) prev = -1;
    cudaError_t e = cudaSetDevice(g->device);
    if (e != cudaSuccess) return cuda_fail("cudaSetDevice", e);
    for (int k = 0; k < gr->n_inputs; k++) {
        const it_tensor *t = &p->t[gr->inputs[k]];
        if (is_act(p, gr->inputs[k]) && t->nbytes) memcpy(g->pin_in + g->io_off[k], t->data, t->nbytes);
    }
    if (!g->gexec && !g->graph_off && g->n_host == 0 && g->runs > 0) capture(g);
    itscam_status st = ITSCAM_OK;
    if (g->gexec) {
        e = cudaGraphLaunch(g->gexec, g->stream);
        if (e != cudaSuccess) st = cuda_fail("cudaGraphLaunch", e);
    } else {
        st = enqueue(g);
    }
    e = cudaStreamSynchronize(g->stream);   /* also after a failure: leave nothing in flight */
    if (st == ITSCAM_OK && e != cudaSuccess) st = cuda_fail("running the program", e);
    if (st == ITSCAM_OK) {
        for (int k = 0; k < gr->n_outputs; k++) {
            int v = gr->outputs[k];
            const it_tensor *t = &p->t[v];
            if (is_act(p, v) && t->nbytes) memcpy(t->data, g->pin_out + g->io_off[gr->n_inputs + k], t->nbytes);
        }
        g->runs++;
    }
    if (prev >= 0 && prev != g->device) (void)cudaSetDevice(prev);
    return st;
}

/* ---- compile and destroy ------------------------------------------------------------------- */

static void destroy_steps(cu_prog *g) {
    if (!g->steps) return;
    for (int i = 0; i < g->p->n_steps; i++) {
        cu_step *cs = &g->steps[i];
        if (cs->conv_desc) {
            cu_conv *c = &cs->u.conv;
            if (c->x) (void)cudnnDestroyTensorDescriptor(c->x);
            if (c->y) (void)cudnnDestroyTensorDescriptor(c->y);
            if (c->w) (void)cudnnDestroyFilterDescriptor(c->w);
            if (c->conv) (void)cudnnDestroyConvolutionDescriptor(c->conv);
        } else if (cs->kind == K_MATMUL) {
            it_free(cs->u.mm.ab);
        }
    }
}

static void cuda_destroy(void *vp) {
    cu_prog *g = vp;
    if (!g) return;
    int prev = -1;
    if (cudaGetDevice(&prev) != cudaSuccess) prev = -1;
    int have_device = g->stream || g->dmem || g->cmem || g->n_refs || g->cudnn || g->cublas;
    if (have_device) (void)cudaSetDevice(g->device);
    if (g->stream) (void)cudaStreamSynchronize(g->stream);
    if (g->gexec) (void)cudaGraphExecDestroy(g->gexec);
    if (g->graph) (void)cudaGraphDestroy(g->graph);
    destroy_steps(g);
    if (g->cudnn) (void)cudnnDestroy(g->cudnn);
    if (g->cublas) (void)cublasDestroy(g->cublas);
    if (g->stream) (void)cudaStreamDestroy(g->stream);
    dev_free(g->dmem, g->dmem_bytes);
    dev_free(g->cmem, g->cmem_bytes);
    if (g->pin_in) (void)cudaFreeHost(g->pin_in);
    if (g->pin_out) (void)cudaFreeHost(g->pin_out);
    for (int k = 0; k < g->n_refs; k++) weight_release(g->refs[k]);
    for (int k = 0; k < g->n_pend; k++) it_free(g->pend[k].tmp);
    it_free(g->pend);
    it_free(g->refs);
    it_free(g->creq);
    it_free(g->vtype);
    it_free(g->dptr);
    it_free(g->io_off);
    it_free(g->steps);
    if (have_device && prev >= 0 && prev != g->device) (void)cudaSetDevice(prev);
    it_free(g);
}

/* The program's own constants: one allocation, uploaded now. */
static itscam_status place_constants(cu_prog *g) {
    size_t total = 0;
    for (int k = 0; k < g->n_pend; k++)
        total += DEV_ALIGN_UP(g->pend[k].half ? g->pend[k].bytes / sizeof(float) * 2 : g->pend[k].bytes);
    if (!total) return ITSCAM_OK;
    cudaError_t e = dev_malloc((void **)&g->cmem, total);
    if (e != cudaSuccess) return cuda_fail("allocating constants", e);
    g->cmem_bytes = total;
    size_t off = 0;
    for (int k = 0; k < g->n_pend; k++) {
        pending *pd = &g->pend[k];
        *pd->slot = g->cmem + off;
        itscam_status st = upload_now(g->stream, g->cmem + off, pd->src, pd->bytes, pd->half);
        if (st != ITSCAM_OK) return st;
        off += DEV_ALIGN_UP(pd->half ? pd->bytes / sizeof(float) * 2 : pd->bytes);
        it_free(pd->tmp);
        pd->tmp = NULL;
    }
    return ITSCAM_OK;
}

/* Bytes of fp32 staging the fp16 edges need: graph inputs and outputs, and the values
 * host steps read and write. */
static size_t stage_need(const cu_prog *g) {
    const it_plan *p = g->p;
    size_t need = 0;
#define STAGE(v)                                                                            \
    do {                                                                                    \
        int v_ = (v);                                                                       \
        if (is_act(p, v_) && g->vtype[v_] != p->t[v_].dtype) need = IT_MAX(need, p->t[v_].nbytes); \
    } while (0)
    for (int k = 0; k < p->g->n_inputs; k++) STAGE(p->g->inputs[k]);
    for (int k = 0; k < p->g->n_outputs; k++) STAGE(p->g->outputs[k]);
    for (int i = 0; i < p->n_steps; i++) {
        if (g->steps[i].kind != K_HOST) continue;
        for (int k = 0; k < p->steps[i].n_in; k++)
            if (p->steps[i].in[k] >= 0) STAGE(p->steps[i].in[k]);
        for (int k = 0; k < p->steps[i].n_out; k++) STAGE(p->steps[i].out[k]);
    }
#undef STAGE
    return need;
}

static itscam_status cuda_compile(const it_plan *p, const it_backend_opts *opts, void **out) {
    if (!p || !out) return it_err(ITSCAM_ERR_INVALID_ARG, "cuda: NULL plan or program");
    *out = NULL;
    it_precision prec = opts ? opts->precision : IT_PREC_FP32;
    if (prec != IT_PREC_FP32 && prec != IT_PREC_FP16)
        return it_err(ITSCAM_ERR_UNSUPPORTED, "cuda: precision %d is not supported (fp32, fp16)", (int)prec);
    int device;
    itscam_status st = pick_device(&device);
    if (st != ITSCAM_OK) return st;
    if (opts && opts->device >= 0) { /* a session pinned to a device (the server's device_ids) */
        if (opts->device >= device_count)
            return it_err(ITSCAM_ERR_INVALID_ARG, "cuda: device %d does not exist (0..%d)", opts->device,
                          device_count - 1);
        device = opts->device;
    }
    int prev = -1;
    if (cudaGetDevice(&prev) != cudaSuccess) prev = -1;
    cudaError_t e = cudaSetDevice(device);
    if (e != cudaSuccess) return cuda_fail("cudaSetDevice", e);

    cu_prog *g = it_calloc(1, sizeof *g);
    if (!g) {
        st = it_err(ITSCAM_ERR_NOMEM, "cuda: program");
        goto done;
    }
    g->p = p;
    g->device = device;
    g->prec = prec;
    size_t nv = p->g->n_values > 0 ? (size_t)p->g->n_values : 1;
    size_t nio = (size_t)(p->g->n_inputs + p->g->n_outputs) + 1;
    g->vtype = it_calloc(nv, sizeof *g->vtype);
    g->dptr = it_calloc(nv, sizeof *g->dptr);
    g->creq = it_calloc(nv, 1);
    g->io_off = it_calloc(nio, sizeof *g->io_off);
    g->steps = it_calloc(p->n_steps > 0 ? (size_t)p->n_steps : 1, sizeof *g->steps);
    if (!g->vtype || !g->dptr || !g->creq || !g->io_off || !g->steps) {
        st = it_err(ITSCAM_ERR_NOMEM, "cuda: program tables");
        goto fail;
    }
    for (int v = 0; v < p->g->n_values; v++)
        g->vtype[v] = prec == IT_PREC_FP16 && p->t[v].dtype == IT_F32 && p->t[v].ndim == 4 ? IT_F16 : p->t[v].dtype;

    /* a GPU older than the architectures compiled in has no kernel image: say so now */
    if ((e = it_cu_check_image()) != cudaSuccess) {
        st = cuda_fail("this GPU has no kernel image in this build (rebuild with its CMAKE_CUDA_ARCHITECTURES)", e);
        goto fail;
    }
    if ((e = cudaStreamCreateWithFlags(&g->stream, cudaStreamNonBlocking)) != cudaSuccess) {
        st = cuda_fail("cudaStreamCreateWithFlags", e);
        goto fail;
    }
    cudnnStatus_t ds = cudnnCreate(&g->cudnn);
    if (ds == CUDNN_STATUS_SUCCESS) ds = cudnnSetStream(g->cudnn, g->stream);
    if (ds != CUDNN_STATUS_SUCCESS) {
        st = cudnn_fail("cudnnCreate", ds);
        goto fail;
    }
    cublasStatus_t bs = cublasCreate(&g->cublas);
    if (bs == CUBLAS_STATUS_SUCCESS) bs = cublasSetStream(g->cublas, g->stream);
    if (bs != CUBLAS_STATUS_SUCCESS) {
        st = cublas_fail("cublasCreate", bs);
        goto fail;
    }

    /* which steps run where; conv descriptors and algorithms; constants requested */
    int any_matmul = 0;
    for (int i = 0; i < p->n_steps; i++) {
        const it_plan_step *s = &p->steps[i];
        cu_step *cs = &g->steps[i];
        int id = s->def ? (int)s->def->id : 0;
        int r = 0;
        if (id > IT_OP_UNKNOWN && id < IT_OP_COUNT && preps[id].prep) {
            cs->kind = preps[id].kind;
            r = preps[id].prep(g, i, cs, &st);
            if (r < 0) goto fail;   /* cs->kind still names what to clean up */
        }
        if (r == 0) {
            /* the ref kernel on the host (a declined Conv keeps conv_desc for destroy) */
            cs->kind = K_HOST;
            g->n_host++;
            it_log(ITSCAM_LOG_DEBUG, "cuda: node '%s' (%s) runs on the host", it_node_label(s->node), s->node->op_type);
            continue;
        }
        if (cs->kind == K_CONV) g->conv_ws_bytes = IT_MAX(g->conv_ws_bytes, cs->u.conv.ws_bytes);
        if (cs->kind == K_MATMUL) any_matmul = 1;
    }

    /* the one device allocation */
    g->blas_ws_bytes = any_matmul ? BLAS_WS_BYTES : 0;
    g->stage_bytes = stage_need(g);
    size_t arena = DEV_ALIGN_UP(p->scratch_offset), ws = DEV_ALIGN_UP(g->conv_ws_bytes),
           blas = DEV_ALIGN_UP(g->blas_ws_bytes), stage = DEV_ALIGN_UP(g->stage_bytes);
    g->dmem_bytes = arena + ws + blas + stage;
    if ((e = dev_malloc((void **)&g->dmem, g->dmem_bytes)) != cudaSuccess) {
        char buf[96];
        snprintf(buf, sizeof buf, "allocating %zu bytes of activations and workspace", g->dmem_bytes);
        st = cuda_fail(buf, e);
        goto fail;
    }
    g->arena = g->dmem;
    g->conv_ws = g->conv_ws_bytes ? g->dmem + arena : NULL;
    g->blas_ws = g->blas_ws_bytes ? g->dmem + arena + ws : NULL;
    g->stage = g->stage_bytes ? g->dmem + arena + ws + blas : NULL;
    for (int v = 0; v < p->g->n_values; v++)
        if (is_act(p, v)) g->dptr[v] = g->arena + p->offset[v];
    if (g->blas_ws && (bs = cublasSetWorkspace(g->cublas, g->blas_ws, g->blas_ws_bytes)) != CUBLAS_STATUS_SUCCESS) {
        st = cublas_fail("cublasSetWorkspace", bs);
        goto fail;
    }
    if ((st = place_constants(g)) != ITSCAM_OK) goto fail;

    /* pinned staging of the graph's inputs and outputs */
    const it_graph *gr = p->g;
    for (int k = 0; k < gr->n_inputs; k++) {
        g->io_off[k] = g->pin_in_bytes;
        if (is_act(p, gr->inputs[k])) g->pin_in_bytes += IT_ALIGN_UP(p->t[gr->inputs[k]].nbytes);
    }
    for (int k = 0; k < gr->n_outputs; k++) {
        g->io_off[gr->n_inputs + k] = g->pin_out_bytes;
        if (is_act(p, gr->outputs[k])) g->pin_out_bytes += IT_ALIGN_UP(p->t[gr->outputs[k]].nbytes);
    }
    if (g->pin_in_bytes && (e = cudaHostAlloc((void **)&g->pin_in, g->pin_in_bytes, cudaHostAllocDefault)) != cudaSuccess) {
        g->pin_in = NULL;
        st = cuda_fail("allocating pinned input memory", e);
        goto fail;
    }
    if (g->pin_out_bytes &&
        (e = cudaHostAlloc((void **)&g->pin_out, g->pin_out_bytes, cudaHostAllocDefault)) != cudaSuccess) {
        g->pin_out = NULL;
        st = cuda_fail("allocating pinned output memory", e);
        goto fail;
    }
    if ((e = cudaStreamSynchronize(g->stream)) != cudaSuccess) {
        st = cuda_fail("cudaStreamSynchronize", e);
        goto fail;
    }
    it_log(ITSCAM_LOG_DEBUG, "cuda: %d of %d steps on device %d (%s), %zu bytes of device memory", p->n_steps - g->n_host,
           p->n_steps, device, prec == IT_PREC_FP16 ? "fp16" : "fp32", g->dmem_bytes + g->cmem_bytes);
    *out = g;
    goto done;
fail:
    cuda_destroy(g);
done:
    if (prev >= 0 && prev != device) (void)cudaSetDevice(prev);
    return st;
}

int it_cuda_step_native(const void *prog, int i) {
    const cu_prog *g = prog;
    return g && i >= 0 && i < g->p->n_steps && g->steps[i].kind != K_HOST;
}

/* ---- reporting ------------------------------------------------------------------------------ */

itscam_status it_cuda_describe(char *buf, size_t n) {
    if (!buf || !n) return it_err(ITSCAM_ERR_INVALID_ARG, "it_cuda_describe: empty buffer");
    int dev;
    itscam_status st = pick_device(&dev);
    if (st != ITSCAM_OK) {
        snprintf(buf, n, "no usable CUDA device");
        return st;
    }
    struct cudaDeviceProp prop;
    cudaError_t e = cudaGetDeviceProperties(&prop, dev);
    if (e != cudaSuccess) {
        snprintf(buf, n, "CUDA device %d: %s", dev, cudaGetErrorString(e));
        return cuda_fail("cudaGetDeviceProperties", e);
    }
    int drv = 0, rt = 0, prev = -1;
    (void)cudaDriverGetVersion(&drv);
    (void)cudaRuntimeGetVersion(&rt);
    size_t fr = 0, tot = prop.totalGlobalMem;
    if (cudaGetDevice(&prev) != cudaSuccess) prev = -1;
    if (cudaSetDevice(dev) == cudaSuccess && cudaMemGetInfo(&fr, &tot) != cudaSuccess) fr = 0;
    if (prev >= 0 && prev != dev) (void)cudaSetDevice(prev);
    (void)cudaGetLastError();
    size_t cv = cudnnGetVersion();
    snprintf(buf, n, "%s, sm_%d%d, %.1f GiB (%.1f free), driver %d.%d, runtime %d.%d, cuDNN %zu.%zu.%zu", prop.name,
             prop.major, prop.minor, (double)tot / (1 << 30), (double)fr / (1 << 30), drv / 1000, drv % 1000 / 10,
             rt / 1000, rt % 1000 / 10, cv / 10000, cv % 10000 / 100, cv % 100);
    return ITSCAM_OK;
}

static itscam_status cuda_mem_info(int device, size_t *used_by_itscam, size_t *free_bytes, size_t *total_bytes);

itscam_status it_cuda_mem_info(size_t *used_by_itscam, size_t *free_bytes, size_t *total_bytes) {
    return cuda_mem_info(-1, used_by_itscam, free_bytes, total_bytes);
}

/* The table's mem_info: device -1 is the backend's own (ITSCAM_CUDA_DEVICE, else 0). */
static itscam_status cuda_mem_info(int device, size_t *used_by_itscam, size_t *free_bytes, size_t *total_bytes) {
    if (used_by_itscam) *used_by_itscam = atomic_load(&device_bytes);
    if (free_bytes) *free_bytes = 0;
    if (total_bytes) *total_bytes = 0;
    int dev;
    itscam_status st = pick_device(&dev);
    if (st != ITSCAM_OK) return st;
    if (device >= 0) {
        if (device >= device_count)
            return it_err(ITSCAM_ERR_INVALID_ARG, "cuda: device %d is not a device index (0..%d)", device, device_count - 1);
        dev = device;
    }
    int prev = -1;
    if (cudaGetDevice(&prev) != cudaSuccess) prev = -1;
    size_t fr = 0, tot = 0;
    cudaError_t e = cudaSetDevice(dev);
    if (e == cudaSuccess) e = cudaMemGetInfo(&fr, &tot);
    if (prev >= 0 && prev != dev) (void)cudaSetDevice(prev);
    if (e != cudaSuccess) return cuda_fail("cudaMemGetInfo", e);
    if (free_bytes) *free_bytes = fr;
    if (total_bytes) *total_bytes = tot;
    return ITSCAM_OK;
}

static int cuda_supports(it_precision prec) { return prec == IT_PREC_FP32 || prec == IT_PREC_FP16; }

const it_backend it_backend_cuda = {
    .version = 1,
    .name = "cuda",
    .description = "CUDA (cuDNN 9, cuBLAS; fp32, fp16)",
    .kind = IT_BACKEND_DEVICE,
    .available = cuda_available_why,
    .compile = cuda_compile,
    .run = cuda_run,
    .destroy = cuda_destroy,
    .supports = cuda_supports,
    .last_error_is_oom = it_cuda_last_error_is_oom,
    .mem_info = cuda_mem_info,
    .describe = it_cuda_describe,
};
