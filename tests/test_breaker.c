/* The cuda backend's circuit breaker and CPU fallback, driven by fault injection so that
 * it runs on machines without a GPU: every transition (closed -> open on failures and on
 * out-of-memory errors, open -> half-open after the open period, half-open -> open on a
 * failed probe and -> closed after the probes), no run lost while it trips (outputs equal
 * the cpu backend's), the manual switch, no_fallback, and the no-GPU path. */
#include "check.h"
#include "runtime/breaker.h"
#include "itscam/itscam.h"

#include <math.h>
#include <pthread.h>

static itscam_model *model;
static float *input;
static int64_t dims[4] = { 1, 3, 320, 320 };
static float *expect;   /* the cpu backend's output */
static size_t n_out;

static int same_as_cpu(itscam_session *s) {
    const float *out;
    int64_t od[8];
    int nd;
    if (itscam_session_run(s, input, dims, &out, od, &nd) != ITSCAM_OK) return 0;
    return memcmp(out, expect, n_out * sizeof(float)) == 0;
}

static itscam_breaker_info info(void) {
    itscam_breaker_info bi;
    itscam_breaker_get("cuda", &bi);
    return bi;
}

static void set_cfg(int open_ms) {
    itscam_breaker_config c = itscam_breaker_default_config();
    c.open_ms = open_ms;
    CHECK_OK(itscam_breaker_configure("cuda", &c));
}

static itscam_session *cuda_session(int no_fallback) {
    itscam_session_params p = itscam_session_default_params();
    p.backend = "cuda";
    p.threads = 2;
    p.no_fallback = no_fallback;
    itscam_session *s = NULL;
    CHECK_OK(itscam_session_create(model, &p, &s));
    return s;
}

static void test_transitions(void) {
    /* 3 good runs, then 16 failures: 15 open the breaker, the 16th fails the first probe. */
    CHECK_OK(it_fault_configure("cuda:emulate,fail_after=3,fail_count=16"));
    itscam_breaker_force("cuda", 0);
    set_cfg(6000); /* long enough for the open-state runs, even under sanitizers on a loaded machine */
    itscam_breaker_info b0 = info();
    itscam_session *s = cuda_session(0);
    if (!s) return;
    for (int i = 0; i < 3; i++) CHECK(same_as_cpu(s));
    CHECK(!strcmp(itscam_session_backend(s), "cuda"));
    CHECK(info().state == ITSCAM_BREAKER_CLOSED);
    int ok = 1;
    for (int i = 0; i < 15; i++) {
        ok &= same_as_cpu(s); /* each failing run is served by the CPU */
        if (i < 14) CHECKF(info().state == ITSCAM_BREAKER_CLOSED, "open after %d failures", i + 1);
    }
    CHECK(ok);
    CHECK(!strcmp(itscam_session_backend(s), "cpu"));
    itscam_breaker_info b = info();
    CHECKF(b.state == ITSCAM_BREAKER_OPEN, "state %d after 15 failures", b.state);
    CHECK(b.failures - b0.failures == 15);
    /* Open: runs go to the CPU without trying the GPU (the fault counter stays put). */
    for (int i = 0; i < 2; i++) CHECK(same_as_cpu(s));
    b = info();
    CHECK(b.state == ITSCAM_BREAKER_OPEN && b.failures - b0.failures == 15);
    CHECK(b.fallback_runs - b0.fallback_runs == 17);
    /* After the open period: half-open; the first probe fails (fault 16): open again. */
    usleep(6100 * 1000);
    CHECK(info().state == ITSCAM_BREAKER_HALF_OPEN);
    CHECK(same_as_cpu(s));
    CHECK(info().state == ITSCAM_BREAKER_OPEN);
    /* Next period: 10 probes succeed (faults are over): closed. */
    usleep(6100 * 1000);
    for (int i = 0; i < 10; i++) {
        CHECK(same_as_cpu(s));
        if (i < 9) CHECK(info().state == ITSCAM_BREAKER_HALF_OPEN);
    }
    b = info();
    CHECKF(b.state == ITSCAM_BREAKER_CLOSED, "state %d after 10 good probes", b.state);
    CHECK(b.transitions[ITSCAM_BREAKER_CLOSED][ITSCAM_BREAKER_OPEN] - b0.transitions[0][1] == 1);
    CHECK(b.transitions[ITSCAM_BREAKER_OPEN][ITSCAM_BREAKER_HALF_OPEN] - b0.transitions[1][2] == 2);
    CHECK(b.transitions[ITSCAM_BREAKER_HALF_OPEN][ITSCAM_BREAKER_OPEN] - b0.transitions[2][1] == 1);
    CHECK(b.transitions[ITSCAM_BREAKER_HALF_OPEN][ITSCAM_BREAKER_CLOSED] - b0.transitions[2][0] == 1);
    CHECK(!strcmp(itscam_session_backend(s), "cuda"));
    itscam_session_free(s);
}

static void test_oom(void) {
    /* Out-of-memory errors open it after 3, not 15. */
    CHECK_OK(it_fault_configure("cuda:emulate,fail_after=0,fail_count=3,oom"));
    set_cfg(60000);
    itscam_breaker_info b0 = info();
    itscam_session *s = cuda_session(0);
    if (!s) return;
    for (int i = 0; i < 3; i++) CHECK(same_as_cpu(s));
    itscam_breaker_info b = info();
    CHECK(b.state == ITSCAM_BREAKER_OPEN && b.oom_failures - b0.oom_failures == 3);
    /* The manual switch: back to the GPU (closes it), to the CPU and back again. */
    CHECK_OK(itscam_breaker_force("cuda", 1));
    CHECK_OK(itscam_breaker_force("cuda", 0));
    CHECK(info().state == ITSCAM_BREAKER_CLOSED);
    CHECK_OK(itscam_breaker_force("cuda", 1));
    b = info();
    CHECK(b.forced_cpu && b.state == ITSCAM_BREAKER_OPEN);
    CHECK(same_as_cpu(s) && !strcmp(itscam_session_backend(s), "cpu"));
    CHECK_OK(itscam_breaker_force("cuda", 0));
    CHECK(same_as_cpu(s) && !strcmp(itscam_session_backend(s), "cuda"));
    CHECK(info().state == ITSCAM_BREAKER_CLOSED && !info().forced_cpu);
    itscam_session_free(s);
}

static void test_no_fallback(void) {
    /* With no_fallback, a failing GPU run is the caller's error, with CUDA's words. */
    CHECK_OK(it_fault_configure("cuda:emulate,fail_after=1,fail_count=1"));
    set_cfg(60000);
    itscam_session *s = cuda_session(1);
    if (!s) return;
    const float *out;
    int64_t od[8];
    int nd;
    CHECK_OK(itscam_session_run(s, input, dims, &out, od, &nd));
    itscam_status st = itscam_session_run(s, input, dims, &out, od, &nd);
    CHECKF(st == ITSCAM_ERR_BACKEND && strstr(itscam_last_error(), "cudaErrorLaunchFailure"), "%d %s", st,
           itscam_last_error());
    CHECK_OK(itscam_session_run(s, input, dims, &out, od, &nd));
    itscam_session_free(s);
    itscam_breaker_force("cuda", 1);
    itscam_breaker_force("cuda", 0);
}

typedef struct {
    int ok;
} worker_arg;

static void *worker(void *arg) {
    worker_arg *w = arg;
    itscam_session_params p = itscam_session_default_params();
    p.backend = "cuda";
    p.threads = 1;
    itscam_session *s = NULL;
    if (itscam_session_create(model, &p, &s) != ITSCAM_OK) return NULL;
    w->ok = 1;
    for (int i = 0; i < 8; i++) w->ok &= same_as_cpu(s);
    itscam_session_free(s);
    return NULL;
}

static void test_threads(void) {
    /* Sessions on 4 threads while the GPU fails under them: every run answers. */
    CHECK_OK(it_fault_configure("cuda:emulate,fail_after=5,fail_count=12"));
    set_cfg(50);
    pthread_t t[4];
    worker_arg a[4] = { { 0 } };
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, worker, &a[i]);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < 4; i++) CHECKF(a[i].ok, "thread %d lost a run", i);
}

static void test_no_gpu(void) {
    /* Without a usable GPU and without emulation: cuda serves from the CPU, or fails
     * clearly with no_fallback. (Skipped where a GPU is present.) */
    CHECK_OK(it_fault_configure(NULL));
    int have_cuda = 0;
    for (const char *const *b = itscam_backends(); *b; b++) have_cuda |= !strcmp(*b, "cuda");
    itscam_session_params p = itscam_session_default_params();
    p.backend = "cuda";
    p.no_fallback = 1;
    itscam_session *s = NULL;
    itscam_status st = itscam_session_create(model, &p, &s);
    if (st == ITSCAM_OK) {
        fprintf(stderr, "note: a GPU is usable here; the no-GPU checks do not apply\n");
        itscam_session_free(s);
        return;
    }
    CHECKF(st == ITSCAM_ERR_NOT_FOUND && strstr(itscam_last_error(), "cuda") &&
               strstr(itscam_last_error(), have_cuda ? "no usable GPU" : "not compiled in"),
           "%d %s", st, itscam_last_error());
    p.no_fallback = 0;
    CHECK_OK(itscam_session_create(model, &p, &s));
    if (!s) return;
    CHECK(same_as_cpu(s));
    CHECK(!strcmp(itscam_session_backend(s), "cpu"));
    itscam_session_free(s);
    /* A bad fault specification is refused with a message. */
    CHECK(it_fault_configure("cuda:explode") == ITSCAM_ERR_INVALID_ARG && strstr(itscam_last_error(), "explode"));
    CHECK(it_fault_configure("gpu:emulate") == ITSCAM_ERR_INVALID_ARG);
    itscam_breaker_config bad = itscam_breaker_default_config();
    bad.failure_threshold = 0;
    CHECK(itscam_breaker_configure("cuda", &bad) == ITSCAM_ERR_INVALID_ARG);
}

int main(void) {
    char mp[1024], ip[1024];
    if (!shared_path(mp, sizeof mp, "models/yolo11n-320.onnx")) SKIP("%s/models/yolo11n-320.onnx is absent", shared_dir());
    if (!shared_path(ip, sizeof ip, "reference/raw/bus-320.input.f32")) SKIP("bus-320.input.f32 is absent");
    CHECK_OK(itscam_model_load(mp, &model));
    FILE *f = fopen(ip, "rb");
    input = malloc(3 * 320 * 320 * sizeof(float));
    CHECK(f && fread(input, sizeof(float), 3 * 320 * 320, f) == 3 * 320 * 320);
    if (f) fclose(f);
    /* The reference: the cpu backend, fp32. */
    itscam_session_params p = itscam_session_default_params();
    p.backend = "cpu";
    p.threads = 2;
    itscam_session *cpu = NULL;
    CHECK_OK(itscam_session_create(model, &p, &cpu));
    const float *out;
    int64_t od[8];
    int nd;
    CHECK_OK(itscam_session_run(cpu, input, dims, &out, od, &nd));
    n_out = (size_t)od[1] * (size_t)od[2];
    expect = malloc(n_out * sizeof(float));
    memcpy(expect, out, n_out * sizeof(float));
    itscam_session_free(cpu);

    test_transitions();
    test_oom();
    test_no_fallback();
    test_threads();
    test_no_gpu();

    free(expect);
    free(input);
    itscam_model_free(model);
    printf("test_breaker: %d checks, %d failed\n", check_count, check_failures);
    return check_failures ? 1 : 0;
}
