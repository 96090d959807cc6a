/* The circuit breaker in front of a GPU backend, and the fault injection that tests it.
 *
 * A session on "cuda" runs on the GPU while the breaker is closed. Every backend error
 * counts against it; enough consecutive failures (or fewer out-of-memory errors) open it,
 * and while it is open the session runs the same plan on the cpu backend instead, so
 * no request is lost, only slowed. After open_ms it lets a few probe runs through
 * (half-open); when they all succeed it closes, and one failure opens it again. There
 * is one breaker per backend in the process: a failing GPU fails for every session. */
#ifndef ITSCAM_BREAKER_H
#define ITSCAM_BREAKER_H

#include "core/core.h"

typedef struct it_breaker it_breaker;

/* The process-wide breaker of a backend ("cuda"); created on first use. */
it_breaker *it_breaker_for(const char *backend);
/* 1: run on the primary backend now (closed, or a half-open probe); 0: use the fallback. */
int it_breaker_allow(it_breaker *b);
void it_breaker_success(it_breaker *b);
void it_breaker_failure(it_breaker *b, int is_oom);
/* Counted runs that went to the fallback. */
void it_breaker_fallback(it_breaker *b);

/* ---- fault injection: ITSCAM_FAULT="cuda:emulate,fail_after=N,fail_count=M,oom" ----
 * The prefix names a device backend (backend/backend.h), the one the faults stand in for.
 * emulate      that backend counts as available without a GPU; its programs are
 *              cpu programs (so every breaker transition can be driven on a CI machine)
 * fail_after=N the first N runs succeed, later ones fail with an injected CUDA error
 * fail_count=M only M runs fail, then runs succeed again (default: every later run)
 * oom          injected failures are out-of-memory errors
 * Read from the environment on first use; it_fault_configure replaces it (tests). */
typedef struct it_fault {
    char backend[16];         /* the device backend named by the prefix */
    int active, emulate, oom;
    long long fail_after, fail_count;
} it_fault;
itscam_status it_fault_configure(const char *spec);   /* NULL or "": none */
const it_fault *it_fault_get(void);
/* For a primary run about to start: 1 when this run must fail (sets it_err and, for oom,
 * reports it as such through *is_oom). */
int it_fault_should_fail(int *is_oom);

#endif
