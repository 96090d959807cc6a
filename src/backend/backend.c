/* The backend registry: the backends compiled into this build, in order of preference. */
#include "graph/plan.h"

#include <stdio.h>
#include <string.h>
#ifdef ITSCAM_HAVE_CPU
#include "backend/cpu/cpu_backend.h"
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
    snprintf(buf, n, "%s", be->description ? be->description : be->name);
    return buf;
}
