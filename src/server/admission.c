/* Decode admission control (see admission.h). One mutex and one condition variable: a
 * reservation is a subtraction, so contention is negligible next to a decode. */
#include "server/admission.h"

#include "core/core.h"

#include <errno.h>
#include <time.h>
#include <unistd.h>

#define GIB ((size_t)1 << 30)

size_t srv_admission_default_budget(void) {
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || page <= 0) return GIB;
    size_t quarter = (size_t)pages / 4 * (size_t)page;
    return quarter < GIB ? quarter : GIB;
}

void srv_admission_init(srv_admission *a, long long budget_bytes) {
    a->budget = budget_bytes > 0 ? (size_t)budget_bytes : srv_admission_default_budget();
    a->used = 0;
    pthread_mutex_init(&a->mu, NULL);
    it_cond_init_monotonic(&a->freed);
}

void srv_admission_destroy(srv_admission *a) {
    pthread_cond_destroy(&a->freed);
    pthread_mutex_destroy(&a->mu);
}

srv_admit_result srv_admission_reserve(srv_admission *a, size_t bytes, int wait_ms) {
    if (bytes > a->budget) return SRV_ADMIT_NEVER;
    struct timespec until;
    it_deadline_in(&until, wait_ms);
    pthread_mutex_lock(&a->mu);
    int rc = 0;
    while (a->budget - a->used < bytes && rc != ETIMEDOUT) rc = pthread_cond_timedwait(&a->freed, &a->mu, &until);
    srv_admit_result res = SRV_ADMIT_BUSY;
    if (a->budget - a->used >= bytes) {
        a->used += bytes;
        res = SRV_ADMIT_OK;
    }
    pthread_mutex_unlock(&a->mu);
    return res;
}

void srv_admission_release(srv_admission *a, size_t *bytes) {
    if (!*bytes) return;
    pthread_mutex_lock(&a->mu);
    a->used -= *bytes;
    pthread_mutex_unlock(&a->mu);
    /* Every waiter: a large release may admit several small requests. */
    pthread_cond_broadcast(&a->freed);
    *bytes = 0;
}

size_t srv_admission_in_use(srv_admission *a) {
    pthread_mutex_lock(&a->mu);
    size_t u = a->used;
    pthread_mutex_unlock(&a->mu);
    return u;
}
