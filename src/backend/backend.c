/* The backend registry: the backends compiled into this build, in order of preference. */
#include "backend/backend.h"

#include <stdio.h>
#include <string.h>
#ifdef ITSCAM_HAVE_CPU
#include "backend/cpu/cpu_backend.h"
#endif
#ifdef ITSCAM_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#endif

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

/* Same order as the registry, as plain names for the public API. */
static const char *const names[] = {
#ifdef ITSCAM_HAVE_CPU
    "cpu",
#endif
#ifdef ITSCAM_HAVE_CUDA
    "cuda",
#endif
    "ref",
    NULL,
};

const char *const *itscam_backends(void) { return names; }

const char *itscam_backend_describe(const char *backend, char *buf, size_t n) {
    const it_backend *be = backend && *backend ? it_backend_find(backend) : registry[0];
    if (!be || !buf || !n) return NULL;
#ifdef ITSCAM_HAVE_CPU
    /* Only the cpu backend knows its ISA at run time (oneDNN's dispatcher decides). */
    if (be == &it_backend_cpu && it_cpu_describe(buf, n) == ITSCAM_OK) return buf;
#endif
#ifdef ITSCAM_HAVE_CUDA
    if (be == &it_backend_cuda && it_cuda_describe(buf, n) == ITSCAM_OK) return buf;
#endif
    snprintf(buf, n, "%s", be->description ? be->description : be->name);
    return buf;
}

itscam_status itscam_backend_memory(const char *backend, size_t *used, size_t *free_bytes, size_t *total) {
    if (!backend || !used || !free_bytes || !total) return it_err(ITSCAM_ERR_INVALID_ARG, "itscam_backend_memory: NULL argument");
    *used = *free_bytes = *total = 0;
#ifdef ITSCAM_HAVE_CUDA
    if (!strcmp(backend, "cuda")) return it_cuda_mem_info(used, free_bytes, total);
#endif
    return it_err(ITSCAM_ERR_NOT_FOUND, "backend '%s' has no device memory to report", backend);
}
