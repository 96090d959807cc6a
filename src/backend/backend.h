/* Backends: a table of function pointers per backend (ggml-backend, sqlite3_io_methods),
 * the registry that lists them, and the per-model cache of prepared weights they share.
 * Everything that differs between backends (host or device, why one is unavailable, how
 * an out-of-memory failure looks, device memory) is a slot of the table, so the layers
 * above never name a backend nor test a build flag. */
#ifndef ITSCAM_BACKEND_H
#define ITSCAM_BACKEND_H

#include "graph/plan.h"

/* Adding a backend means one table and one line in the registry (backend.c); the graph
 * and runtime code never change. */
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

#endif
