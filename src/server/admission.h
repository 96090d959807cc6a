/* Decode admission control: a process-wide budget of decoded image bytes. A request
 * reserves the memory all of its images will take when decoded, read from their headers
 * (it_image_probe), before any is decoded, and gives it back when its images are freed.
 * All at once or nothing: two batches each holding half the budget while waiting for the
 * rest would wait for each other forever. */
#ifndef ITSCAM_SERVER_ADMISSION_H
#define ITSCAM_SERVER_ADMISSION_H

#include <pthread.h>
#include <stddef.h>

typedef struct srv_admission {
    pthread_mutex_t mu;
    pthread_cond_t freed;    /* signalled when a reservation is given back */
    size_t budget;           /* bytes */
    size_t used;             /* bytes reserved now */
} srv_admission;

typedef enum {
    SRV_ADMIT_OK,     /* reserved */
    SRV_ADMIT_BUSY,   /* other requests hold too much: retry later (503) */
    SRV_ADMIT_NEVER,  /* more than the whole budget: can never fit (413) */
} srv_admit_result;

/* budget_bytes 0: the default for this machine, min(1 GiB, a quarter of physical RAM).
 * (glibc's mutex and condition variable initialisers cannot fail: nothing to return.) */
void srv_admission_init(srv_admission *a, long long budget_bytes);
void srv_admission_destroy(srv_admission *a);
/* The default budget srv_admission_init picks for 0. */
size_t srv_admission_default_budget(void);
/* Reserve bytes, waiting up to wait_ms for other requests to give back enough. Short:
 * the caller is an HTTP thread. */
srv_admit_result srv_admission_reserve(srv_admission *a, size_t bytes, int wait_ms);
/* Give back *bytes (0 is a no-op) and zero it, so that a second call cannot free twice. */
void srv_admission_release(srv_admission *a, size_t *bytes);
/* Bytes reserved now: the gauge itscam_decode_budget_used_bytes (and the budget, for
 * itscam_decode_budget_bytes). */
size_t srv_admission_in_use(srv_admission *a);

#endif
