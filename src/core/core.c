/* Core services: per-thread error details, the log callback, counted allocation, arenas. */
#include "core/core.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ERR_MAX 1024
static _Thread_local char err_buf[ERR_MAX];

static const char *const status_names[] = {
    [ITSCAM_OK] = "ok",
    [ITSCAM_ERR_INVALID_ARG] = "invalid argument",
    [ITSCAM_ERR_NOMEM] = "out of memory",
    [ITSCAM_ERR_IO] = "input/output error",
    [ITSCAM_ERR_MODEL] = "malformed model",
    [ITSCAM_ERR_UNSUPPORTED] = "unsupported model feature",
    [ITSCAM_ERR_SHAPE] = "shape mismatch",
    [ITSCAM_ERR_IMAGE] = "bad image",
    [ITSCAM_ERR_BACKEND] = "backend failure",
    [ITSCAM_ERR_NOT_FOUND] = "not found",
    [ITSCAM_ERR_INTERNAL] = "internal error",
};

const char *itscam_strerror(itscam_status s) {
    if ((unsigned)s < sizeof status_names / sizeof *status_names && status_names[s]) return status_names[s];
    return "unknown status";
}

const char *itscam_last_error(void) { return err_buf; }

itscam_status it_err(itscam_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_buf, sizeof err_buf, fmt, ap);
    va_end(ap);
    return s;
}

itscam_status it_err_prefix(itscam_status s, const char *fmt, ...) {
    char prefix[512], old[ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err_buf, sizeof old);
    snprintf(err_buf, sizeof err_buf, "%s: %s", prefix, old[0] ? old : itscam_strerror(s));
    return s;
}

void it_err_clear(void) { err_buf[0] = 0; }

const char *itscam_version(void) {
#define STR2(x) #x
#define STR(x) STR2(x)
    return STR(ITSCAM_VERSION_MAJOR) "." STR(ITSCAM_VERSION_MINOR) "." STR(ITSCAM_VERSION_PATCH);
}

static itscam_log_fn log_fn;
static void *log_user;
static int log_level = -1;

void itscam_log_set(itscam_log_fn fn, void *user, int max_level) {
    log_fn = fn;
    log_user = user;
    log_level = fn ? max_level : -1;
}

int it_log_enabled(int level) { return log_fn && level <= log_level; }

void it_log(int level, const char *fmt, ...) {
    if (!it_log_enabled(level)) return; /* checked before formatting */
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    log_fn(level, msg, log_user);
}

static atomic_uint_fast64_t alloc_count;
static atomic_int_fast64_t fail_after = -1;

static int should_fail(void) {
    int_fast64_t f = atomic_load(&fail_after);
    if (f < 0) return 0;
    if (f == 0) return 1;
    atomic_fetch_sub(&fail_after, 1);
    return 0;
}

uint64_t it_alloc_count(void) { return atomic_load(&alloc_count); }
void it_alloc_fail_after(int64_t n) { atomic_store(&fail_after, n); }

void *it_malloc(size_t n) {
    if (should_fail()) return NULL;
    void *p = malloc(n ? n : 1);
    if (p) atomic_fetch_add(&alloc_count, 1);
    return p;
}
void *it_calloc(size_t n, size_t size) {
    if (should_fail()) return NULL;
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p) atomic_fetch_add(&alloc_count, 1);
    return p;
}
void *it_realloc(void *p, size_t n) {
    if (should_fail()) return NULL;
    void *q = realloc(p, n ? n : 1);
    if (q) atomic_fetch_add(&alloc_count, 1);
    return q;
}
void it_free(void *p) { free(p); }
char *it_strdup(const char *s) { return s ? it_strndup(s, strlen(s)) : NULL; }
char *it_strndup(const char *s, size_t n) {
    char *d = it_malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

void *it_aligned_alloc(size_t n) {
    if (should_fail()) return NULL;
    void *p = NULL;
    if (posix_memalign(&p, IT_ALIGN, IT_ALIGN_UP(n ? n : 1)) != 0) return NULL;
    atomic_fetch_add(&alloc_count, 1);
    return p;
}
void it_aligned_free(void *p) { free(p); }

itscam_status it_arena_init(it_arena *a, size_t size) {
    a->used = 0;
    a->size = IT_ALIGN_UP(size);
    a->base = it_aligned_alloc(a->size);
    if (!a->base) return it_err(ITSCAM_ERR_NOMEM, "cannot allocate a %zu-byte arena", size);
    return ITSCAM_OK;
}
void *it_arena_alloc(it_arena *a, size_t n) {
    size_t need = IT_ALIGN_UP(n);
    if (need > a->size - a->used) return NULL;
    void *p = a->base + a->used;
    a->used += need;
    return p;
}
void it_arena_reset(it_arena *a) { a->used = 0; }
void it_arena_free(it_arena *a) {
    if (!a) return;
    it_aligned_free(a->base);
    a->base = NULL;
    a->size = a->used = 0;
}

double it_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

itscam_status it_read_file(const char *path, uint8_t **out, size_t *len, size_t max_len) {
    *out = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return it_err(ITSCAM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = it_malloc(cap);
    if (!buf) { fclose(f); return it_err(ITSCAM_ERR_NOMEM, "%s: out of memory", path); }
    for (;;) {
        if (n == cap) {
            if (cap >= max_len) {
                it_free(buf);
                fclose(f);
                return it_err(ITSCAM_ERR_IO, "%s: larger than the limit of %zu bytes", path, max_len);
            }
            size_t ncap = IT_MIN(cap * 2, max_len);
            uint8_t *nb = it_realloc(buf, ncap);
            if (!nb) { it_free(buf); fclose(f); return it_err(ITSCAM_ERR_NOMEM, "%s: out of memory", path); }
            buf = nb;
            cap = ncap;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) { it_free(buf); return it_err(ITSCAM_ERR_IO, "%s: read error", path); }
    *out = buf;
    *len = n;
    return ITSCAM_OK;
}
