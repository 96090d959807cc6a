/* The ref backend: every step runs its plain C reference kernel. It is the oracle the
 * other backends are checked against, so it stays simple rather than fast. */
#include "backend/backend.h"

static itscam_status ref_compile(const it_plan *plan, const it_backend_opts *opts, void **prog) {
    (void)opts;
    *prog = (void *)plan;
    return ITSCAM_OK;
}

static itscam_status ref_run(void *prog) {
    const it_plan *p = prog;
    for (int i = 0; i < p->n_steps; i++) {
        itscam_status st = it_run_step_ref(p, i);
        if (st != ITSCAM_OK) return st;
    }
    return ITSCAM_OK;
}

static void ref_destroy(void *prog) { (void)prog; }

/* The program is the plan, whose arena the session rebinds: nothing else to move. */
static size_t ref_workspace_bytes(const void *prog) {
    (void)prog;
    return 0;
}
static void ref_rebind(void *prog, const it_relocation *r) {
    (void)prog;
    (void)r;
}

const it_backend it_backend_ref = {
    .version = 1,
    .name = "ref",
    .description = "portable C reference kernels",
    .compile = ref_compile,
    .run = ref_run,
    .destroy = ref_destroy,
    .kind = IT_BACKEND_HOST,
    .workspace_bytes = ref_workspace_bytes,
    .rebind = ref_rebind,
};
