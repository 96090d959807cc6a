/* The backend registry: the backends compiled into this build, in order of preference. */
#include "backend/backend.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

extern const it_backend it_backend_ref;
#ifdef ITSCAM_HAVE_CPU
extern const it_backend it_backend_cpu;
#endif
#ifdef ITSCAM_HAVE_CUDA
extern const it_backend it_backend_cuda;
#endif

static const it_backend *const registry[] = {
#ifdef ITSCAM_HAVE_CPU
    &it_backend_cpu,
#endif
#ifdef ITSCAM_HAVE_CUDA
    &it_backend_cuda,
#endif
    &it_backend_ref,
    NULL,
};

const it_backend *const *it_backend_list(void) { return registry; }

const it_backend *it_backend_find(const char *name) {
    for (int i = 0; registry[i]; i++)
        if (!strcmp(registry[i]->name, name)) return registry[i];
    return NULL;
}

#ifndef ITSCAM_HAVE_CUDA
/* The cuda backend of a build without nvcc: a device backend that never runs, so that a
 * session asking for it takes the CPU fallback (or fails saying why) exactly as on a
 * machine without a GPU, and configuration written for GPU hosts still loads. */
static int absent_available(char *why, size_t n) {
    if (why && n) snprintf(why, n, "not compiled in (nvcc was not found at build time)");
    return 0;
}
static itscam_status absent_compile(const it_plan *plan, const it_backend_opts *opts, void **prog) {
    (void)plan;
    (void)opts;
    *prog = NULL;
    return it_err(ITSCAM_ERR_NOT_FOUND, "backend 'cuda' is not compiled in (nvcc was not found at build time)");
}
static itscam_status absent_run(void *prog) {
    (void)prog;
    return it_err(ITSCAM_ERR_NOT_FOUND, "backend 'cuda' is not compiled in");
}
static void absent_destroy(void *prog) { (void)prog; }
static const it_backend cuda_absent = {
    .version = 1,
    .name = "cuda",
    .description = "CUDA (not compiled in)",
    .kind = IT_BACKEND_DEVICE,
    .available = absent_available,
    .compile = absent_compile,
    .run = absent_run,
    .destroy = absent_destroy,
};
#endif

/* Device backends this build knows of but did not compile. */
static const it_backend *const absent[] = {
#ifndef ITSCAM_HAVE_CUDA
    &cuda_absent,
#endif
    NULL,
};

const it_backend *it_backend_lookup(const char *name) {
    const it_backend *be = name ? it_backend_find(name) : NULL;
    for (int i = 0; !be && name && absent[i]; i++)
        if (!strcmp(absent[i]->name, name)) be = absent[i];
    return be;
}

int it_backend_usable(const it_backend *be, char *why, size_t n) {
    if (why && n) why[0] = 0;
    return be && (!be->available || be->available(why, n));
}

const it_backend *it_backend_first_host(void) {
    for (int i = 0; registry[i]; i++)
        if (registry[i]->kind == IT_BACKEND_HOST && it_backend_usable(registry[i], NULL, 0)) return registry[i];
    return NULL;
}

/* The registry's names, in its order, for the public API. */
static const char *names[sizeof registry / sizeof *registry];
static pthread_once_t names_once = PTHREAD_ONCE_INIT;

static void fill_names(void) {
    for (int i = 0; registry[i]; i++) names[i] = registry[i]->name;
}

const char *const *itscam_backends(void) {
    pthread_once(&names_once, fill_names);
    return names;
}

int itscam_backend_is_device(const char *name) {
    const it_backend *be = it_backend_lookup(name);
    return be && be->kind == IT_BACKEND_DEVICE;
}

const char *itscam_backend_describe(const char *backend, char *buf, size_t n) {
    const it_backend *be = backend && *backend ? it_backend_find(backend) : registry[0];
    if (!be || !buf || !n) return NULL;
    /* what only the backend knows at run time (oneDNN's ISA, the GPU's model) */
    if (be->describe && be->describe(buf, n) == ITSCAM_OK) return buf;
    snprintf(buf, n, "%s", be->description ? be->description : be->name);
    return buf;
}

itscam_status itscam_backend_get_counters(const char *backend, itscam_backend_counters *out) {
    if (!out) return it_err(ITSCAM_ERR_INVALID_ARG, "itscam_backend_get_counters: NULL argument");
    memset(out, 0, sizeof *out);
    const it_backend *be = backend && *backend ? it_backend_find(backend) : registry[0];
    if (!be) return it_err(ITSCAM_ERR_NOT_FOUND, "backend '%s' is not compiled in", backend ? backend : "");
    if (!be->counters) return it_err(ITSCAM_ERR_UNSUPPORTED, "backend '%s' keeps no run counters", be->name);
    be->counters(out);
    return ITSCAM_OK;
}

itscam_status itscam_backend_memory(const char *backend, size_t *used, size_t *free_bytes, size_t *total) {
    if (!backend || !used || !free_bytes || !total) return it_err(ITSCAM_ERR_INVALID_ARG, "itscam_backend_memory: NULL argument");
    *used = *free_bytes = *total = 0;
    const it_backend *be = it_backend_find(backend);
    if (be && be->mem_info) return be->mem_info(-1, used, free_bytes, total);
    return it_err(ITSCAM_ERR_NOT_FOUND, "backend '%s' has no device memory to report", backend);
}
