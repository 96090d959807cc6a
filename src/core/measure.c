/* Measurement helpers shared by the library and the tools: percentiles of timing samples,
 * the number of physical cores to run on and the process's resident memory. */
#include "core/core.h"

#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

double it_percentile(const double *sorted, size_t n, double p) {
    if (n == 0) return NAN;
    double k = p / 100.0 * (double)(n - 1);
    size_t lo = (size_t)floor(k), hi = (size_t)ceil(k);
    return sorted[lo] + (sorted[hi] - sorted[lo]) * (k - (double)lo);
}

int it_physical_cores(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        return n > 0 ? (int)n : 1;
    }
    /* A cpu counts when it is the first of its SMT siblings that we may run on (or when
     * its topology cannot be read): hyperthreads share a core's vector units, so one
     * compute thread each buys nothing. */
    int cores = 0;
    for (int c = 0; c < CPU_SETSIZE; c++) {
        if (!CPU_ISSET(c, &set)) continue;
        char path[96];
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%d/topology/thread_siblings_list", c);
        int first = c;
        FILE *f = fopen(path, "r");
        if (f) {
            if (fscanf(f, "%d", &first) != 1) first = c;
            fclose(f);
        }
        if (first == c || first < 0 || first >= CPU_SETSIZE || !CPU_ISSET(first, &set)) cores++;
    }
    return cores > 0 ? cores : 1;
}

/* A "Name:   123 kB" line of /proc/self/status in bytes; -1 when absent. */
static long long proc_status_bytes(const char *name) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long long v = -1;
    size_t n = strlen(name);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, name, n) && line[n] == ':') {
            if (sscanf(line + n + 1, "%lld", &v) == 1) v *= 1024; /* always kB */
            else v = -1;
            break;
        }
    fclose(f);
    return v;
}

long long it_rss_bytes(void) {
    long long v = proc_status_bytes("VmRSS");
    return v > 0 ? v : 0;
}

long long it_peak_rss_bytes(void) {
    long long v = proc_status_bytes("VmHWM");
    if (v > 0) return v;
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? (long long)ru.ru_maxrss * 1024 : 0; /* KiB on Linux */
}

int it_peak_rss_reset(void) {
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f) return -1;
    int ok = fputs("5", f) >= 0; /* 5: reset the peak resident set size */
    return fclose(f) == 0 && ok ? 0 : -1;
}

int it_cond_init_monotonic(pthread_cond_t *cv) {
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(cv, &ca);
    pthread_condattr_destroy(&ca);
    return rc;
}

void it_deadline_in(struct timespec *ts, double ms) {
    clock_gettime(CLOCK_MONOTONIC, ts);
    if (!(ms > 0)) ms = 0; /* NaN too */
    if (ms > 3600e3) ms = 3600e3;
    long long ns = (long long)(ms * 1e6);
    ts->tv_sec += (time_t)(ns / 1000000000LL);
    ts->tv_nsec += (long)(ns % 1000000000LL);
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}
