/* A plan: the graph specialised to concrete input shapes. Shapes are inferred, constant
 * subgraphs folded, Conv+Sigmoid+Mul fused into Conv with a SiLU epilogue, and every
 * activation placed in one arena by lifetime. A backend compiles a plan into a program.
 * One plan belongs to one session; nothing in it is shared between threads. */
#ifndef ITSCAM_PLAN_H
#define ITSCAM_PLAN_H

#include "graph/ops.h"

enum { IT_ACT_NONE = 0, IT_ACT_SILU = 1 };

typedef struct it_plan_step {
    const it_node *node;
    const it_op_def *def;
    int n_in, n_out;
    int *in, *out;            /* value indices (-1 for omitted inputs) */
    int activation;           /* IT_ACT_*: fused epilogue (Conv only) */
    size_t scratch_bytes;     /* for the ref kernel */
} it_plan_step;

typedef struct it_plan {
    const it_graph *g;
    int64_t opset;
    it_tensor *t;             /* one per graph value: shape, dtype, data once bound */
    uint8_t *folded;          /* 1 where t[i].data was computed at plan time (owned) */
    int64_t *offset;          /* arena offset per value, -1 for constants and unused */
    int n_steps;
    it_plan_step *steps;
    size_t arena_bytes;       /* activations + the largest scratch */
    size_t scratch_offset;
    uint8_t *arena;           /* owned by the plan, 64-byte aligned */
    int64_t batch;            /* the batch size this plan was made for */
} it_plan;

/* Build a plan for concrete input shapes: inputs[i] gives dtype, ndim and dims of graph
 * input i (g->inputs[i]); n must equal g->n_inputs. When inputs[i].data is set, its
 * values are taken as known at plan time and folded (shape or scale inputs of the
 * conformance tests); leave it NULL for inputs that flow at run time. After success, write input values
 * into p->t[g->inputs[i]].data (arena memory) and run a backend program. */
itscam_status it_plan_create(const it_graph *g, const it_tensor *inputs, int n, it_plan **out);
void it_plan_free(it_plan *p);
/* Fill kernel args for step i (arrays must hold step->n_in / n_out entries). */
void it_plan_step_args(const it_plan *p, int i, const it_tensor **in, it_tensor **out, it_kernel_args *a);
/* Number of steps consuming value v (graph outputs count as one more). */
int it_plan_consumers(const it_plan *p, int v);

/* ---------------------------------------------------------------------------------
 * Backends: a table of function pointers per backend (ggml-backend, sqlite3_io_methods).
 * Adding one means one table and one line in the registry (backend.c); the graph code
 * never changes.
 * --------------------------------------------------------------------------------- */
/* Numeric precision of a compiled program. Inputs and outputs are always fp32. */
typedef enum it_precision {
    IT_PREC_FP32 = 0,
    IT_PREC_BF16 = 1,         /* bf16 weights and activations, fp32 accumulation */
    IT_PREC_INT8 = 2,         /* int8 convolutions with calibrated activation scales */
    IT_PREC_FP16 = 3,         /* fp16 weights and activations (GPU tensor cores) */
} it_precision;
#define IT_PREC_COUNT 4

struct it_calib;              /* activation ranges for int8 (graph/calib.h) */

/* Prepared weights shared by every session of one model, so that N sessions on N
 * threads hold one copy of each reordered/quantized weight, not N. Owned by the model;
 * thread-safe. A backend names an entry with a key of its choosing that captures
 * everything the bytes depend on (backend, layout, precision, node). */
typedef struct it_weight_cache it_weight_cache;
typedef itscam_status (*it_weight_fill_fn)(void *dst, size_t bytes, void *ctx);
/* The entry for key, created by fill (called once, under the cache's lock) when absent.
 * *out stays valid, and must not be written, until the model is freed. */
itscam_status it_weight_cache_get(it_weight_cache *c, const char *key, size_t bytes, it_weight_fill_fn fill,
                                  void *ctx, const void **out);
it_weight_cache *it_weight_cache_new(void);
void it_weight_cache_free(it_weight_cache *c);
size_t it_weight_cache_bytes(const it_weight_cache *c);

typedef struct it_backend_opts {
    int threads;              /* 0: backend default */
    it_precision precision;   /* backends without the mode fail with UNSUPPORTED */
    const struct it_calib *calib; /* int8 ranges by value name; NULL: none (QDQ models
                                     carry their own scales) */
    it_weight_cache *weights;     /* the model's shared weight cache (may be NULL) */
    int device;                   /* GPU backends: device index; -1: ITSCAM_CUDA_DEVICE or 0 */
} it_backend_opts;

typedef struct it_backend {
    int version;              /* 1: grows with new optional slots at the end */
    const char *name;
    const char *description;
    /* optional: 0 when the backend cannot run on this machine (no GPU, ...) */
    int (*available)(void);
    /* Turn a bound plan (its tensors' data point into its arena) into a program. The
     * program may keep pointers into the plan, which outlives it. */
    itscam_status (*compile)(const it_plan *plan, const it_backend_opts *opts, void **prog);
    /* Run once. Must not allocate from the heap in steady state. */
    itscam_status (*run)(void *prog);
    void (*destroy)(void *prog);
    /* optional: 1 when this machine runs precision p natively (NULL: fp32 only) */
    int (*supports)(it_precision p);
} it_backend;

const it_backend *it_backend_find(const char *name);   /* NULL if not compiled in */
const it_backend *const *it_backend_list(void);        /* NULL-terminated */

/* The ref program: runs every step's reference kernel. Backends reuse it for steps they
 * do not accelerate. */
itscam_status it_run_step_ref(const it_plan *p, int i);

#endif
