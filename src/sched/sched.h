/* The scheduler: a priority dynamic batcher in front of one model. Worker threads, each
 * with its own detector (the model's weights are shared), take queued jobs by priority,
 * form batches and run them through the detector's batch entry (detect/detector.h), so
 * images and ready input tensors share one postprocess path. It knows nothing of HTTP:
 * the server and the camera pipeline both feed it jobs and read outcomes, and watch it
 * through an observer (metrics) rather than through any metrics library.
 *
 * Thread safety: every function may be called from any thread, except that
 * it_sched_free must not race with other calls on the same scheduler. */
#ifndef ITSCAM_SCHED_SCHED_H
#define ITSCAM_SCHED_SCHED_H

#include "itscam/itscam.h"

#include <stdint.h>

/* Priority levels, most urgent first. Their names live in it_sched_prio_name only. */
enum { IT_SCHED_URGENT = 0, IT_SCHED_NORMAL = 1, IT_SCHED_BATCH = 2, IT_SCHED_NPRIO = 3 };

#define IT_SCHED_MAX_PREFERRED 8
#define IT_SCHED_MAX_DEVICES 8
#define IT_SCHED_MAX_WORKERS 64
#define IT_SCHED_MAX_BATCH 256
#define IT_SCHED_MAX_CLASSES 128

/* "urgent", "normal", "batch"; "unknown" out of range. */
const char *it_sched_prio_name(int prio);
/* A level from its name (any case) or its number ("0".."2"); -1 when s is neither (or
 * NULL). The one parser of priorities: requests, configuration and the CLI use it. */
int it_sched_prio_parse(const char *s);

/* How a job ended. The server maps them to 200/503/504/500/503/503. */
typedef enum it_sched_outcome {
    IT_SCHED_DONE = 0,        /* ran; status ITSCAM_OK */
    IT_SCHED_QUEUE_FULL = 1,  /* refused at submission: its level's queue was full */
    IT_SCHED_EXPIRED = 2,     /* its deadline passed before it ran */
    IT_SCHED_FAILED = 3,      /* ran (or could not be accepted) and failed; status says why */
    IT_SCHED_CANCELLED = 4,   /* answered without running: cancel_queued, free, or stopping */
    IT_SCHED_REPLACED = 5     /* a newer job of the same source (keep_newest) took its place */
} it_sched_outcome;

const char *it_sched_outcome_name(it_sched_outcome o);

/* What it_sched_submit answers. Only on IT_SCHED_QUEUED will done() be called; otherwise
 * the jobs' outcome, status and message say why (nothing was queued). */
typedef enum it_sched_submit_status {
    IT_SCHED_QUEUED = 0,
    IT_SCHED_REJECT_FULL = 1,     /* a level's queue limit: outcome IT_SCHED_QUEUE_FULL */
    IT_SCHED_REJECT_STOPPING = 2, /* the scheduler is stopping: outcome IT_SCHED_CANCELLED */
    IT_SCHED_REJECT_INVALID = 3   /* a malformed job: outcome IT_SCHED_FAILED, status INVALID_ARG */
} it_sched_submit_status;

typedef struct it_sched_params {
    int workers;                                 /* 1: worker threads, each with its own detector */
    int max_batch;                               /* 8 (1..256); 1 on static-batch models */
    int preferred_batch[IT_SCHED_MAX_PREFERRED]; /* e.g. {4, 8} */
    int n_preferred;
    int max_delay_ms[IT_SCHED_NPRIO];            /* 10, 50, 100: longest wait to fill a batch */
    int queue_limit[IT_SCHED_NPRIO];             /* 64, 256, 1024 jobs waiting at most */
    int adaptive_delay;                          /* 1: delays adapt to load (see sched.c); 0: fixed */
    int device_ids[IT_SCHED_MAX_DEVICES];        /* worker i runs on device_ids[i % n]; none: -1 */
    int n_device_ids;
    /* Template of every worker's detector: backend, threads, precision, calib_path,
     * no_fallback and the default conf, iou, max_det, classes (device is set per worker).
     * The strings and classes are copied. */
    itscam_detector_params detector;
} it_sched_params;

it_sched_params it_sched_default_params(void);

typedef struct it_sched_job it_sched_job;
typedef void (*it_sched_done_fn)(it_sched_job *j, void *arg);

struct it_sched_job {
    /* input, set by the submitter; the job and what it points to must stay valid until done() */
    itscam_image img;               /* the frame, when tensor is NULL */
    const float *tensor;            /* or an input tensor [1,3,H,W] at the model's input size */
    int64_t dims[4];
    itscam_detector_params params;  /* conf, iou, max_det, classes (copied into classes[] at submit) */
    int classes[IT_SCHED_MAX_CLASSES];
    int want_dets;                  /* decode detections into res */
    int want_raw;                   /* copy the model's first output for this item into raw */
    int prio;                       /* IT_SCHED_URGENT..BATCH (others count as normal) */
    double deadline_ms;             /* it_now_ms() clock; <= 0: none */
    char source[64];                /* who sent it: a route label, a camera id ("" none) */
    int keep_newest;                /* replace a queued job of the same source (it ends REPLACED) */
    int no_wait;                    /* never hold this job back to fill a batch: it runs with
                                     * whatever is queued when a worker is free (camera frames:
                                     * their latency budget is the SLA, not the level's delay) */
    double order_ms;                /* jobs of one level run in increasing order_ms (it_now_ms
                                     * clock); <= 0: the submission time, i.e. FIFO. A camera
                                     * sets when it was last served, so cameras of one level
                                     * share the model fairly: least recently served first */
    it_sched_done_fn done;          /* called exactly once, from a worker or the caller of
                                     * cancel_queued/free/submit (a replaced job), never under a lock */
    void *done_arg;
    /* output, set before done() */
    it_sched_outcome outcome;
    itscam_status status;
    char message[256];              /* why, when not DONE */
    itscam_result res;              /* detections (want_dets); the submitter frees res.dets */
    float *raw;                     /* it_malloc'd copy (want_raw); the submitter frees it */
    int64_t raw_dims[8];
    int raw_ndim;
    double t_submit_ms;             /* when it was submitted */
    double ms_queue, ms_preprocess, ms_inference, ms_postprocess; /* inference: the whole batch's */
    int batch_size;                 /* 0 when it never ran */
    /* the scheduler's */
    double t_slot_ms;               /* queue position's age (a replacement inherits it) */
    double t_order_ms;              /* its order key (a replacement inherits it) */
    it_sched_job *next;
};

/* Metrics hooks, all optional. They are called from worker and submitting threads;
 * queue_depth with the scheduler's lock held (it must not call the scheduler). */
typedef struct it_sched_observer {
    void *ctx;
    void (*job_done)(void *ctx, const it_sched_job *j);        /* every completion, before done() */
    void (*batch_run)(void *ctx, int size, double ms, itscam_status st);
    void (*queue_depth)(void *ctx, int prio, int depth);
    void (*rejected)(void *ctx, int prio, it_sched_outcome reason, int n); /* QUEUE_FULL or EXPIRED */
} it_sched_observer;

typedef struct it_sched it_sched;

/* Start the workers on m (which must outlive the scheduler). `name` labels messages.
 * observer may be NULL (copied). Returns the status with itscam_last_error() set. */
itscam_status it_sched_new(const char *name, const itscam_model *m, const it_sched_params *p,
                           const it_sched_observer *observer, it_sched **out);
/* Run every batch size that can occur once on every worker with frames that need
 * resizing, so plans, primitives and letterbox scratch exist before the first job. */
itscam_status it_sched_warmup(it_sched *s);
/* Queue one job / n jobs atomically (all or none). */
it_sched_submit_status it_sched_submit(it_sched *s, it_sched_job *j);
it_sched_submit_status it_sched_submit_all(it_sched *s, it_sched_job **jobs, int n);
/* Jobs waiting at level prio, or in all levels when prio is out of range. */
int it_sched_depth(it_sched *s, int prio);
/* Answer every queued job CANCELLED now; running batches finish. */
void it_sched_cancel_queued(it_sched *s);
/* Stop the workers (a running batch finishes), answer the jobs still queued CANCELLED,
 * free. NULL is harmless. */
void it_sched_free(it_sched *s);

const char *it_sched_precision(it_sched *s);      /* worker 0's session precision */
const char *it_sched_backend(it_sched *s);        /* as configured ("cpu" by default) */
const char *it_sched_active_backend(it_sched *s); /* worker 0's last run ("cpu" after a fallback) */
/* The first output's shape as served (batch dimension -1 when dynamic, else 1); valid
 * after warm-up. 0, or -1 when unknown. */
int it_sched_output_dims(it_sched *s, int64_t dims[8], int *ndim);
int it_sched_max_batch(it_sched *s);

/* The settings that can change while the scheduler runs: the longest wait to fill a batch
 * per level, the preferred batch sizes (when a batch is dispatched without waiting) and
 * the queue limits (beyond which submissions are shed with IT_SCHED_QUEUE_FULL).
 * Workers, threads, precision and max_batch need a new scheduler. */
typedef struct it_sched_runtime {
    int max_delay_ms[IT_SCHED_NPRIO];             /* 0..IT_SCHED_MAX_DELAY_MS */
    int preferred_batch[IT_SCHED_MAX_PREFERRED];  /* ascending, each 1..max_batch */
    int n_preferred;                              /* 0: dispatch at max_batch */
    int queue_limit[IT_SCHED_NPRIO];              /* >= 1 */
} it_sched_runtime;
#define IT_SCHED_MAX_DELAY_MS 3600000

/* The settings in force (one consistent snapshot). */
void it_sched_runtime_get(it_sched *s, it_sched_runtime *out);
/* Check rt against this scheduler (ranges, ascending sizes, none above max_batch) and
 * put it in force at once, all or nothing: the next batch formed and the next submission
 * see the new values, and a worker waiting to fill a batch re-evaluates now. An adaptive
 * delay above its new maximum is lowered to it. The batch sizes the workers execute (and
 * warmed up) stay those chosen at start: a new preferred size is reached by running
 * chunks of them. ITSCAM_ERR_INVALID_ARG with itscam_last_error() naming the value. */
itscam_status it_sched_runtime_set(it_sched *s, const it_sched_runtime *rt);

#endif
