/* Circuit breakers for GPU backends and the fault injection that drives them in tests.
 * See breaker.h for the states; the numbers are the defaults (15 failures, 3 out
 * of memory, 30 s open, 10 probes). */
#include "runtime/breaker.h"
#include "backend/backend.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_BREAKERS 4

struct it_breaker {
    char backend[16];
    pthread_mutex_t mu;
    itscam_breaker_config cfg;
    itscam_breaker_state state;
    int forced_cpu;
    int consecutive_failures, consecutive_oom;
    int probes_issued, probes_ok;
    double since_ms;
    uint64_t failures, oom_failures, successes, fallback_runs;
    uint64_t transitions[3][3];
};

static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;
static it_breaker breakers[MAX_BREAKERS];
static int n_breakers;

itscam_breaker_config itscam_breaker_default_config(void) {
    itscam_breaker_config c = { .failure_threshold = 15, .oom_threshold = 3, .open_ms = 30000, .half_open_probes = 10 };
    return c;
}

const char *itscam_breaker_state_name(itscam_breaker_state s) {
    return s == ITSCAM_BREAKER_CLOSED ? "closed" : s == ITSCAM_BREAKER_OPEN ? "open" : s == ITSCAM_BREAKER_HALF_OPEN ? "half_open" : "?";
}

it_breaker *it_breaker_for(const char *backend) {
    if (!backend) return NULL;
    pthread_mutex_lock(&registry_mu);
    it_breaker *b = NULL;
    for (int i = 0; i < n_breakers; i++)
        if (!strcmp(breakers[i].backend, backend)) b = &breakers[i];
    if (!b && n_breakers < MAX_BREAKERS && strlen(backend) < sizeof breakers[0].backend) {
        b = &breakers[n_breakers++];
        snprintf(b->backend, sizeof b->backend, "%s", backend);
        pthread_mutex_init(&b->mu, NULL);
        b->cfg = itscam_breaker_default_config();
        b->state = ITSCAM_BREAKER_CLOSED;
        b->since_ms = it_now_ms();
    }
    pthread_mutex_unlock(&registry_mu);
    return b;
}

/* With b->mu held. */
static void move(it_breaker *b, itscam_breaker_state to, const char *why) {
    if (b->state == to) return;
    b->transitions[b->state][to]++;
    it_log(ITSCAM_LOG_WARN, "%s circuit breaker: %s -> %s (%s)", b->backend, itscam_breaker_state_name(b->state),
           itscam_breaker_state_name(to), why);
    b->state = to;
    b->since_ms = it_now_ms();
    b->probes_issued = b->probes_ok = 0;
    if (to == ITSCAM_BREAKER_CLOSED) b->consecutive_failures = b->consecutive_oom = 0;
}

int it_breaker_allow(it_breaker *b) {
    if (!b) return 1;
    pthread_mutex_lock(&b->mu);
    int ok = 0;
    if (b->forced_cpu) {
        ok = 0;
    } else if (b->state == ITSCAM_BREAKER_CLOSED) {
        ok = 1;
    } else {
        if (b->state == ITSCAM_BREAKER_OPEN && it_now_ms() - b->since_ms >= b->cfg.open_ms)
            move(b, ITSCAM_BREAKER_HALF_OPEN, "open period over: probing");
        if (b->state == ITSCAM_BREAKER_HALF_OPEN && b->probes_issued < b->cfg.half_open_probes) {
            b->probes_issued++;
            ok = 1;
        }
    }
    pthread_mutex_unlock(&b->mu);
    return ok;
}

void it_breaker_success(it_breaker *b) {
    if (!b) return;
    pthread_mutex_lock(&b->mu);
    b->successes++;
    b->consecutive_failures = b->consecutive_oom = 0;
    if (b->state == ITSCAM_BREAKER_HALF_OPEN && ++b->probes_ok >= b->cfg.half_open_probes)
        move(b, ITSCAM_BREAKER_CLOSED, "every probe succeeded");
    pthread_mutex_unlock(&b->mu);
}

void it_breaker_failure(it_breaker *b, int is_oom) {
    if (!b) return;
    pthread_mutex_lock(&b->mu);
    b->failures++;
    b->consecutive_failures++;
    if (is_oom) {
        b->oom_failures++;
        b->consecutive_oom++;
    }
    if (b->state == ITSCAM_BREAKER_HALF_OPEN) {
        move(b, ITSCAM_BREAKER_OPEN, "a probe failed");
    } else if (b->state == ITSCAM_BREAKER_CLOSED) {
        if (b->consecutive_failures >= b->cfg.failure_threshold)
            move(b, ITSCAM_BREAKER_OPEN, "too many consecutive failures");
        else if (is_oom && b->consecutive_oom >= b->cfg.oom_threshold)
            move(b, ITSCAM_BREAKER_OPEN, "too many out-of-memory errors");
    }
    pthread_mutex_unlock(&b->mu);
}

void it_breaker_fallback(it_breaker *b) {
    if (!b) return;
    pthread_mutex_lock(&b->mu);
    b->fallback_runs++;
    pthread_mutex_unlock(&b->mu);
}

itscam_status itscam_breaker_configure(const char *backend, const itscam_breaker_config *c) {
    if (!c || c->failure_threshold < 1 || c->oom_threshold < 1 || c->open_ms < 0 || c->half_open_probes < 1)
        return it_err(ITSCAM_ERR_INVALID_ARG, "breaker thresholds must be >= 1 and open_ms >= 0");
    it_breaker *b = it_breaker_for(backend);
    if (!b) return it_err(ITSCAM_ERR_INVALID_ARG, "no breaker for backend '%s'", backend ? backend : "(null)");
    pthread_mutex_lock(&b->mu);
    b->cfg = *c;
    pthread_mutex_unlock(&b->mu);
    return ITSCAM_OK;
}

itscam_status itscam_breaker_get(const char *backend, itscam_breaker_info *out) {
    if (!out) return it_err(ITSCAM_ERR_INVALID_ARG, "itscam_breaker_get: NULL argument");
    memset(out, 0, sizeof *out);
    it_breaker *b = it_breaker_for(backend);
    if (!b) return it_err(ITSCAM_ERR_INVALID_ARG, "no breaker for backend '%s'", backend ? backend : "(null)");
    pthread_mutex_lock(&b->mu);
    /* An open breaker whose time is up reports half-open, as the next run would see. */
    if (b->state == ITSCAM_BREAKER_OPEN && !b->forced_cpu && it_now_ms() - b->since_ms >= b->cfg.open_ms)
        move(b, ITSCAM_BREAKER_HALF_OPEN, "open period over: probing");
    out->state = b->state;
    out->forced_cpu = b->forced_cpu;
    out->consecutive_failures = b->consecutive_failures;
    out->consecutive_oom = b->consecutive_oom;
    out->failures = b->failures;
    out->oom_failures = b->oom_failures;
    out->successes = b->successes;
    out->fallback_runs = b->fallback_runs;
    memcpy(out->transitions, b->transitions, sizeof out->transitions);
    out->ms_in_state = it_now_ms() - b->since_ms;
    out->config = b->cfg;
    pthread_mutex_unlock(&b->mu);
    return ITSCAM_OK;
}

itscam_status itscam_breaker_force(const char *backend, int force_cpu) {
    it_breaker *b = it_breaker_for(backend);
    if (!b) return it_err(ITSCAM_ERR_INVALID_ARG, "no breaker for backend '%s'", backend ? backend : "(null)");
    pthread_mutex_lock(&b->mu);
    if (force_cpu && !b->forced_cpu) {
        b->forced_cpu = 1;
        move(b, ITSCAM_BREAKER_OPEN, "switched to the CPU by hand");
        it_log(ITSCAM_LOG_WARN, "%s: every run goes to the CPU until switched back", b->backend);
    } else if (!force_cpu && b->forced_cpu) {
        b->forced_cpu = 0;
        move(b, ITSCAM_BREAKER_CLOSED, "switched back to the GPU by hand");
    }
    pthread_mutex_unlock(&b->mu);
    return ITSCAM_OK;
}

/* ---------------------------------------------------------------------------------
 * Fault injection
 * --------------------------------------------------------------------------------- */

static pthread_mutex_t fault_mu = PTHREAD_MUTEX_INITIALIZER;
static it_fault fault;
static int fault_loaded;
static atomic_llong fault_runs;

static itscam_status parse_fault(const char *spec, it_fault *f) {
    memset(f, 0, sizeof *f);
    f->fail_after = -1;
    f->fail_count = -1;
    if (!spec || !*spec) return ITSCAM_OK;
    /* the prefix names the device backend the faults stand in for */
    const char *colon = strchr(spec, ':');
    size_t nlen = colon ? (size_t)(colon - spec) : 0;
    const it_backend *be = NULL;
    if (nlen && nlen < sizeof f->backend) {
        memcpy(f->backend, spec, nlen);
        f->backend[nlen] = 0;
        be = it_backend_lookup(f->backend);
    }
    if (!be || be->kind != IT_BACKEND_DEVICE)
        return it_err(ITSCAM_ERR_INVALID_ARG,
                      "ITSCAM_FAULT '%s': expected DEVICE:emulate,fail_after=N,fail_count=M,oom (DEVICE: a GPU backend)", spec);
    char buf[256];
    snprintf(buf, sizeof buf, "%s", colon + 1);
    f->active = 1;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *end;
        if (!strcmp(tok, "emulate")) {
            f->emulate = 1;
        } else if (!strcmp(tok, "oom")) {
            f->oom = 1;
        } else if (!strncmp(tok, "fail_after=", 11)) {
            f->fail_after = strtoll(tok + 11, &end, 10);
            if (end == tok + 11 || *end || f->fail_after < 0)
                return it_err(ITSCAM_ERR_INVALID_ARG, "ITSCAM_FAULT: fail_after needs a count >= 0, got '%s'", tok + 11);
        } else if (!strncmp(tok, "fail_count=", 11)) {
            f->fail_count = strtoll(tok + 11, &end, 10);
            if (end == tok + 11 || *end || f->fail_count < 0)
                return it_err(ITSCAM_ERR_INVALID_ARG, "ITSCAM_FAULT: fail_count needs a count >= 0, got '%s'", tok + 11);
        } else {
            return it_err(ITSCAM_ERR_INVALID_ARG, "ITSCAM_FAULT: unknown setting '%s'", tok);
        }
    }
    return ITSCAM_OK;
}

itscam_status it_fault_configure(const char *spec) {
    it_fault f;
    itscam_status st = parse_fault(spec, &f);
    if (st != ITSCAM_OK) return st;
    pthread_mutex_lock(&fault_mu);
    fault = f;
    fault_loaded = 1;
    atomic_store(&fault_runs, 0);
    pthread_mutex_unlock(&fault_mu);
    return ITSCAM_OK;
}

const it_fault *it_fault_get(void) {
    pthread_mutex_lock(&fault_mu);
    if (!fault_loaded) {
        fault_loaded = 1;
        if (parse_fault(getenv("ITSCAM_FAULT"), &fault) != ITSCAM_OK) {
            it_log(ITSCAM_LOG_ERROR, "%s; fault injection is off", itscam_last_error());
            memset(&fault, 0, sizeof fault);
        }
    }
    pthread_mutex_unlock(&fault_mu);
    return &fault;
}

int it_fault_should_fail(int *is_oom) {
    const it_fault *f = it_fault_get();
    *is_oom = 0;
    if (!f->active || f->fail_after < 0) return 0;
    long long k = atomic_fetch_add(&fault_runs, 1);
    if (k < f->fail_after) return 0;
    if (f->fail_count >= 0 && k >= f->fail_after + f->fail_count) return 0;
    *is_oom = f->oom;
    if (f->oom)
        it_err(ITSCAM_ERR_BACKEND, "%s: cudaErrorMemoryAllocation: out of memory (injected by ITSCAM_FAULT, run %lld)",
               f->backend, k + 1);
    else
        it_err(ITSCAM_ERR_BACKEND, "%s: cudaErrorLaunchFailure: unspecified launch failure (injected by ITSCAM_FAULT, run %lld)",
               f->backend, k + 1);
    return 1;
}
