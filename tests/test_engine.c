/* The engine against ONNX Runtime: raw output tensors of the shared models on every
 * backend, no heap allocation per inference in steady state, and one model shared by
 * sessions on several threads. */
#include "check_data.h"
#include "runtime/model.h"

#include <math.h>
#include <pthread.h>

typedef struct raw_case {
    const char *model, *input, *output;
    int size, anchors;
    double tol;
} raw_case;

static const raw_case cases[] = {
    { "models/yolo11n.onnx", "reference/raw/bus-640.input.f32", "reference/raw/bus-640.yolo11n.output.f32", 640, 8400, 1e-4 },
    { "models/yolo11n.onnx", "reference/raw/zidane-640.input.f32", "reference/raw/zidane-640.yolo11n.output.f32", 640, 8400, 1e-4 },
    { "models/yolo11n-320.onnx", "reference/raw/bus-320.input.f32", "reference/raw/bus-320.yolo11n-320.output.f32", 320, 2100, 1e-4 },
    { "models/yolo11n-int8-320.onnx", "reference/raw/bus-320.input.f32", "reference/raw/bus-320.yolo11n-int8-320.output.f32", 320, 2100, 2e-2 },
};

static void check_raw(const char *backend) {
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        const raw_case *rc = &cases[c];
        char mp[1024];
        if (!shared_path(mp, sizeof mp, rc->model)) SKIP("%s/%s is absent", shared_dir(), rc->model);
        size_t nin = (size_t)3 * rc->size * rc->size, nout = (size_t)84 * rc->anchors;
        float *in = read_f32(rc->input, nin), *ref = read_f32(rc->output, nout);
        if (!in || !ref) SKIP("reference tensors for %s are absent", rc->model);
        itscam_model *m = NULL;
        itscam_session *s = NULL;
        CHECK_OK(itscam_model_load(mp, &m));
        itscam_session_params sp = itscam_session_default_params();
        sp.backend = backend;
        if (m) CHECK_OK(itscam_session_create(m, &sp, &s));
        if (s) {
            int64_t dims[4] = { 1, 3, rc->size, rc->size }, od[8];
            int ond = 0;
            const float *out = NULL;
            CHECK_OK(itscam_session_run(s, in, dims, &out, od, &ond));
            if (out) {
                CHECK(ond == 3 && od[1] == 84 && od[2] == rc->anchors);
                double e = rel_l2(out, ref, nout);
                printf("%-5s %-28s %-36s rel L2 %.3g (tol %.0e)\n", backend, rc->model, rc->input, e, rc->tol);
                CHECKF(e <= rc->tol, "%s on %s: %g", backend, rc->model, e);
            }
            /* steady state: repeated runs allocate nothing from the heap */
            if (out) {
                uint64_t before = it_alloc_count();
                for (int i = 0; i < 3; i++) CHECK_OK(itscam_session_run(s, in, dims, &out, od, &ond));
                CHECKF(it_alloc_count() == before, "%s: %llu allocations in 3 runs", backend,
                       (unsigned long long)(it_alloc_count() - before));
            }
        }
        itscam_session_free(s);
        itscam_model_free(m);
        it_free(in);
        it_free(ref);
    }
}

typedef struct thread_arg {
    const itscam_model *m;
    const float *in;
    const float *ref;
    double err;
    int status;
} thread_arg;

static void *thread_main(void *p) {
    thread_arg *a = p;
    itscam_session *s = NULL;
    a->err = 1;
    a->status = itscam_session_create(a->m, NULL, &s);
    if (a->status) return NULL;
    int64_t dims[4] = { 1, 3, 320, 320 }, od[8];
    int ond;
    const float *out;
    for (int i = 0; i < 2 && !a->status; i++) a->status = itscam_session_run(s, a->in, dims, &out, od, &ond);
    if (!a->status) a->err = rel_l2(out, a->ref, (size_t)84 * 2100);
    itscam_session_free(s);
    return NULL;
}

/* One immutable model, one session per thread, run concurrently. */
static void check_threads(void) {
    char mp[1024];
    if (!shared_path(mp, sizeof mp, "models/yolo11n-320.onnx")) return;
    float *in = read_f32("reference/raw/bus-320.input.f32", (size_t)3 * 320 * 320);
    float *ref = read_f32("reference/raw/bus-320.yolo11n-320.output.f32", (size_t)84 * 2100);
    itscam_model *m = NULL;
    CHECK_OK(itscam_model_load(mp, &m));
    if (m && in && ref) {
        /* the first session prepares the weights; the others share them */
        thread_arg one = { m, in, ref, 0, 0 };
        thread_main(&one);
        size_t shared_bytes = it_weight_cache_bytes(m->weights);
        pthread_t th[3];
        thread_arg args[3];
        for (int i = 0; i < 3; i++) {
            args[i] = (thread_arg){ m, in, ref, 0, 0 };
            pthread_create(&th[i], NULL, thread_main, &args[i]);
        }
        for (int i = 0; i < 3; i++) {
            pthread_join(th[i], NULL);
            CHECKF(args[i].status == 0 && args[i].err <= 1e-4, "thread %d: status %d err %g", i, args[i].status, args[i].err);
        }
        printf("weights shared by 4 sessions: %zu bytes (%zu after the first)\n", it_weight_cache_bytes(m->weights), shared_bytes);
        CHECK(it_weight_cache_bytes(m->weights) == shared_bytes);
    }
    itscam_model_free(m);
    it_free(in);
    it_free(ref);
}

/* A dynamic-batch model run at batch 2 gives each item its batch-1 answer. */
/* One session runs one plan at a time, so its plans share one arena (and the cpu
 * programs one workspace): a bigger batch grows it and rebinds the cached programs, a
 * smaller one reuses it, and every run still gives the reference output. */
static void check_one(itscam_session *s, const float *a, const float *b, const float *ra, const float *rb, size_t nin,
                      size_t nout, int n) {
    float *in = it_malloc(nin * (size_t)n * sizeof(float));
    if (!in) return;
    for (int i = 0; i < n; i++) memcpy(in + nin * (size_t)i, i % 2 ? b : a, nin * sizeof(float));
    int64_t dims[4] = { n, 3, 640, 640 }, od[8];
    int ond;
    const float *out = NULL;
    CHECK_OK(itscam_session_run(s, in, dims, &out, od, &ond));
    for (int i = 0; out && i < n; i++) {
        double e = rel_l2(out + nout * (size_t)i, i % 2 ? rb : ra, nout);
        CHECKF(e <= 1e-4, "batch %d, image %d: rel L2 %.3g", n, i, e);
    }
    it_free(in);
}

static void check_shared_arena(itscam_session *s, const float *a, const float *b, const float *ra, const float *rb,
                               size_t nin, size_t nout) {
    static const int order[] = { 1, 3, 2, 1, 3 };
    for (size_t k = 0; k < sizeof order / sizeof *order; k++) check_one(s, a, b, ra, rb, nin, nout, order[k]);
    size_t largest = 0;
    int n = 0;
    for (int i = 0; i < IT_SESSION_PLANS; i++) {
        const it_plan *p = s->plans[i].plan;
        if (!p) continue;
        n++;
        largest = IT_MAX(largest, p->arena_bytes);
        CHECK(p->arena == s->arena && !p->arena_owned);
    }
    CHECKF(n == 3 && s->arena_bytes == largest, "%d plans, arena %zu bytes, largest plan %zu", n, s->arena_bytes, largest);
    printf("shared arena: %d plans in %.1f MiB, workspace %.1f MiB\n", n, s->arena_bytes / 1048576.0,
           s->workspace_bytes / 1048576.0);
}

static void check_batch(void) {
    char mp[1024];
    if (!shared_path(mp, sizeof mp, "models/yolo11n.onnx")) return;
    size_t nin = (size_t)3 * 640 * 640, nout = (size_t)84 * 8400;
    float *a = read_f32("reference/raw/bus-640.input.f32", nin), *b = read_f32("reference/raw/zidane-640.input.f32", nin);
    float *ra = read_f32("reference/raw/bus-640.yolo11n.output.f32", nout), *rb = read_f32("reference/raw/zidane-640.yolo11n.output.f32", nout);
    float *both = it_malloc(nin * 2 * sizeof(float));
    itscam_model *m = NULL;
    itscam_session *s = NULL;
    CHECK_OK(itscam_model_load(mp, &m));
    if (m) CHECK_OK(itscam_session_create(m, NULL, &s));
    if (s && a && b && ra && rb && both) {
        memcpy(both, a, nin * 4);
        memcpy(both + nin, b, nin * 4);
        int64_t dims[4] = { 2, 3, 640, 640 }, od[8];
        int ond;
        const float *out = NULL;
        CHECK_OK(itscam_session_run(s, both, dims, &out, od, &ond));
        if (out) {
            CHECK(od[0] == 2);
            double ea = rel_l2(out, ra, nout), eb = rel_l2(out + nout, rb, nout);
            printf("batch 2: rel L2 %.3g and %.3g\n", ea, eb);
            CHECK(ea <= 1e-4 && eb <= 1e-4);
        }
        check_shared_arena(s, a, b, ra, rb, nin, nout);
    }
    itscam_session_free(s);
    itscam_model_free(m);
    it_free(a); it_free(b); it_free(ra); it_free(rb); it_free(both);
}

int main(void) {
    for (const char *const *b = itscam_backends(); *b; b++) check_raw(*b);
    check_threads();
    check_batch();
    /* bad arguments are errors, not crashes */
    itscam_session *s = NULL;
    CHECK(itscam_session_create(NULL, NULL, &s) == ITSCAM_ERR_INVALID_ARG);
    itscam_model *m = NULL;
    CHECK(itscam_model_load("/nonexistent/model.onnx", &m) == ITSCAM_ERR_IO);
    CHECK(strstr(itscam_last_error(), "/nonexistent/model.onnx") != NULL);
    return check_done("test_engine");
}
