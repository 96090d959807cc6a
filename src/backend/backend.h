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

/* Where a backend runs. A device backend (a GPU) may be absent or fail at run time, so
 * a session guards it with a breaker and falls back to the first available host backend. */
typedef enum it_backend_kind {
    IT_BACKEND_HOST = 0,
    IT_BACKEND_DEVICE = 1,
} it_backend_kind;

/* The memory a program's pointers point into moved (it_backend.rebind): every pointer in
 * [old_arena, old_arena + arena_bytes) now points the same distance into new_arena (the
 * plan itself is already rebound), and likewise for the workspace. old_workspace NULL:
 * the program's working memory is still its own, and moves into new_workspace now. */
typedef struct it_relocation {
    const uint8_t *old_arena;
    uint8_t *new_arena;
    size_t arena_bytes;
    const uint8_t *old_workspace;
    uint8_t *new_workspace;
    size_t workspace_bytes;
} it_relocation;

typedef struct it_backend {
    int version;              /* 1: grows with new optional slots at the end */
    const char *name;
    const char *description;
    it_backend_kind kind;
    /* optional (NULL: always available): 0 when the backend cannot run on this machine,
     * with why (n bytes, NUL-terminated) saying what was probed; why may be NULL */
    int (*available)(char *why, size_t n);
    /* Turn a bound plan (its tensors' data point into its arena) into a program. The
     * program may keep pointers into the plan, which outlives it. */
    itscam_status (*compile)(const it_plan *plan, const it_backend_opts *opts, void **prog);
    /* Run once. Must not allocate from the heap in steady state. */
    itscam_status (*run)(void *prog);
    void (*destroy)(void *prog);
    /* optional: 1 when this machine runs precision p natively (NULL: fp32 only) */
    int (*supports)(it_precision p);
    /* optional: 1 when the last failure of compile or run on the calling thread was out
     * of memory (a breaker opens sooner on those) */
    int (*last_error_is_oom)(void);
    /* optional: device memory: bytes itscam holds, free and total on device (-1: the
     * backend's default device). ITSCAM_ERR_NOT_FOUND without a usable device. */
    itscam_status (*mem_info)(int device, size_t *used, size_t *free_bytes, size_t *total);
    /* optional: what the backend runs on here ("oneDNN 2.6.3, isa avx2, ..."), written
     * into buf; NULL: `description` stands */
    itscam_status (*describe)(char *buf, size_t n);

    /* Optional, together: programs that share memory. A session runs one program at a
     * time, so its plans share one activation arena (sized to the largest) and its
     * programs one workspace. With these slots the session lends both; without them
     * each plan owns its arena and each program its buffers. */
    /* Bytes of working memory (layout copies, scratchpads) the program can move into a
     * workspace lent by the caller; 0: none. */
    size_t (*workspace_bytes)(const void *prog);
    /* Move the program's pointers as r says. Moves no data. */
    void (*rebind)(void *prog, const it_relocation *r);
    /* Another program used the shared memory since this one last ran: restore what the
     * program keeps there between runs (zeroed channel padding). No allocation. */
    void (*resume)(void *prog);

    /* optional: the process-wide run counters (itscam_backend_get_counters) */
    void (*counters)(itscam_backend_counters *out);
} it_backend;

const it_backend *it_backend_find(const char *name);   /* NULL if not compiled in */
/* it_backend_find, and also the device backends this build left out (nvcc absent), whose
 * tables say they are unavailable and why; NULL for names no build knows. */
const it_backend *it_backend_lookup(const char *name);
const it_backend *const *it_backend_list(void);        /* NULL-terminated */
/* 1 when be can run here (no available slot, or it says so); why as for `available`. */
int it_backend_usable(const it_backend *be, char *why, size_t n);
/* The first backend of the registry that runs on the host and is usable; NULL if none. */
const it_backend *it_backend_first_host(void);

#endif
