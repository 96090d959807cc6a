/* Private definitions of the public model and session handles. */
#ifndef ITSCAM_MODEL_H
#define ITSCAM_MODEL_H

#include "backend/backend.h"

struct itscam_model {
    it_graph *g;
    itscam_model_info info;
    char **names;          /* class names (info.class_names points here) */
    int n_names;
    it_weight_cache *weights; /* prepared weights shared by the model's sessions */
};

#define IT_SESSION_PLANS 4  /* plans kept per session, one per input shape (LRU) */

typedef struct it_session_plan {
    it_plan *plan;
    void *prog;
    it_plan *fplan;        /* the same shapes on the fallback backend, made on first need */
    void *fprog;
    int64_t dims[4];
    uint64_t last_used;
} it_session_plan;

struct itscam_session {
    const itscam_model *m;
    const it_backend *be;  /* runs the primary programs */
    it_backend_opts opts;
    /* Device sessions: the breaker guarding `be` and the host backend that takes over
     * when it is open or a run fails (NULL with no_fallback). `emulated`: ITSCAM_FAULT's
     * stand-in, a host program that counts as the device backend. */
    struct it_breaker *br;
    const it_backend *fb;
    it_backend_opts fb_opts;
    int emulated;
    int cur_fb;            /* the last run used the fallback program */
    const char *name;      /* the backend as reported ("cuda", "cpu", ...) */
    it_session_plan plans[IT_SESSION_PLANS];
    it_session_plan *cur;  /* the plan of the last prepare */
    struct it_calib *calib; /* owned; NULL when none */
    uint64_t tick;
    /* One session runs one plan at a time: when `be` can share memory (its rebind slot),
     * the primary plans share one activation arena and their programs one workspace,
     * each sized to the largest seen and grown (everything rebound) when a bigger one
     * comes. Fallback plans own theirs: they run rarely and beside a primary plan. */
    uint8_t *arena, *workspace;
    size_t arena_bytes, workspace_bytes;
    void *last_prog;       /* the program that last ran in the shared memory */
};

/* Make the session ready for an NCHW input of shape dims (plans are cached per shape).
 * Afterwards it_session_input() is the arena buffer to fill and it_session_exec runs. */
itscam_status it_session_prepare(itscam_session *s, const int64_t dims[4]);
float *it_session_input(itscam_session *s);
itscam_status it_session_exec(itscam_session *s);
const it_tensor *it_session_output(itscam_session *s, int i);

#endif
