/* Private core services: error details, logging, counted allocation, arenas, clocks. */
#ifndef ITSCAM_CORE_H
#define ITSCAM_CORE_H

#include "itscam/itscam.h"
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <time.h>

/* Record a detail message for the calling thread and return `s`, so that callers write
 *   return it_err(ITSCAM_ERR_MODEL, "%s: node %s: ...", path, name);            */
itscam_status it_err(itscam_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prefix the current detail message with more context (e.g. the file name). */
itscam_status it_err_prefix(itscam_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void it_err_clear(void);

void it_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int it_log_enabled(int level);

/* All library heap use goes through these, so that tests can count allocations and make
 * the Nth one fail (sqlite's fault injection, redis' zmalloc). */
void *it_malloc(size_t n);
void *it_calloc(size_t n, size_t size);
void *it_realloc(void *p, size_t n);
void it_free(void *p);
char *it_strdup(const char *s);
char *it_strndup(const char *s, size_t n);
/* Counting and fault injection, for tests only. */
uint64_t it_alloc_count(void);          /* number of successful allocations so far */
void it_alloc_fail_after(int64_t n);    /* fail every allocation after n more; -1 disables */

/* Aligned allocation (64 bytes) for tensor data. */
void *it_aligned_alloc(size_t n);
void it_aligned_free(void *p);

/* A bump allocator sized once and reset per use (ggml_gallocr, ngx_pool). */
typedef struct it_arena {
    uint8_t *base;
    size_t size, used;
} it_arena;
itscam_status it_arena_init(it_arena *a, size_t size);
void *it_arena_alloc(it_arena *a, size_t n);  /* 64-byte aligned; NULL when full */
void it_arena_reset(it_arena *a);
void it_arena_free(it_arena *a);

double it_now_ms(void);  /* monotonic clock in milliseconds */
/* Condition variables that time out on the monotonic clock (a wall-clock step must not
 * stretch or cut a wait), and the absolute deadline `ms` from now on that clock, clamped
 * to [0, 1 h], for pthread_cond_timedwait on them. */
int it_cond_init_monotonic(pthread_cond_t *cv);
void it_deadline_in(struct timespec *ts, double ms);

/* Percentile p (0..100) of n ascending values, interpolated linearly between the closest
 * ranks (numpy's default); NAN when n is 0. */
double it_percentile(const double *sorted, size_t n, double p);
/* Physical cores this process may run on (SMT siblings count once), from its affinity
 * mask; the online cpus when the mask cannot be read; at least 1. Thread-safe. */
int it_physical_cores(void);
/* Resident memory of this process in bytes: now (VmRSS), and the peak (VmHWM: the most
 * since start or since the last it_peak_rss_reset; getrusage's ru_maxrss where /proc is
 * unreadable). 0 when unknown. Thread-safe. */
long long it_rss_bytes(void);
long long it_peak_rss_bytes(void);
/* Restart the peak at the current resident size (Linux 4.0+: /proc/self/clear_refs), so
 * that the peak of one phase can be told from those before it. 0, or -1 when the kernel
 * refuses (the peak then still counts from the start). */
int it_peak_rss_reset(void);

/* Read a whole file into a fresh buffer (it_free). Fails with ITSCAM_ERR_IO naming path. */
itscam_status it_read_file(const char *path, uint8_t **out, size_t *len, size_t max_len);

#define IT_ALIGN 64
#define IT_ALIGN_UP(x) (((x) + (IT_ALIGN - 1)) & ~(size_t)(IT_ALIGN - 1))
#define IT_MIN(a, b) ((a) < (b) ? (a) : (b))
#define IT_MAX(a, b) ((a) > (b) ? (a) : (b))

#endif
