/* The inference server's internals: jobs, per-model batchers, the model registry and
 * the metrics the HTTP layer (http.c, api_*.c) and the workers (batcher.c) share.
 *
 * Life of a request: an HTTP thread parses and decodes the body, fills one srv_job per
 * image (or tensor) and submits it to the model's batcher, then suspends the connection.
 * A worker thread of that model forms a batch by priority, runs it on its own detector
 * (sessions share the model's weights) and completes every job through its `done`
 * callback, which resumes the connection; the HTTP thread then writes the response.
 * Nothing blocks an HTTP thread while a request waits for the model. */
#ifndef ITSCAM_SERVER_SERVER_H
#define ITSCAM_SERVER_SERVER_H

#include "itscam/itscam.h"
#include "server/config.h"
#include "server/prom.h"

#include <pthread.h>
#include <stdatomic.h>

#define SRV_MAX_CLASSES 128

enum { SRV_JOB_IMAGE = 0, SRV_JOB_TENSOR = 1 };
/* How a job ended, besides success: the HTTP status it maps to. */
enum { SRV_DONE_OK = 0, SRV_DONE_ERROR = 1, SRV_DONE_TIMEOUT = 2, SRV_DONE_SHUTDOWN = 3 };

typedef struct srv_job srv_job;
typedef void (*srv_done_fn)(srv_job *j, void *arg);

struct srv_job {
    /* input, set by the submitter */
    int kind;                       /* SRV_JOB_IMAGE or SRV_JOB_TENSOR */
    int prio;                       /* SRV_PRIO_* */
    int want_raw;                   /* copy the model's raw output for this item */
    int want_dets;                  /* decode detections */
    itscam_image img;               /* IMAGE: the decoded frame (owned by the submitter) */
    const float *tensor;            /* TENSOR: [1,3,H,W] at the model's size */
    int64_t dims[4];
    itscam_detector_params params;  /* conf, iou, max_det, classes (classes[] below) */
    int classes[SRV_MAX_CLASSES];
    double deadline_ms;             /* it_now_ms() clock; the job times out after it */
    srv_done_fn done;
    void *done_arg;
    /* output, set by the worker before done() */
    int outcome;                    /* SRV_DONE_* */
    itscam_status st;
    char err[256];
    itscam_result res;              /* detections (IMAGE, or TENSOR with want_dets) */
    float *raw;                     /* malloc'd copy of this item's output (want_raw) */
    int64_t raw_dims[8];
    int raw_ndim;
    double t_enqueue_ms, ms_queue, ms_preprocess, ms_inference, ms_postprocess;
    int batch_size;
    /* the batcher's */
    srv_job *next;
};

typedef struct srv_metrics {
    prom_registry *reg;
    prom_family *requests, *request_seconds, *queue_seconds, *decode_seconds, *preprocess_seconds,
        *inference_seconds, *postprocess_seconds, *batch_size, *queue_depth, *inflight, *sla_violations,
        *sla_seconds, *rejected, *cpu_seconds, *rss_bytes, *start_time, *build_info, *model_ready,
        *breaker_state, *breaker_forced, *breaker_transitions, *backend_failures, *fallback_runs;
    itscam_breaker_info breaker_last; /* counters already exported, to add only the change */
    double sla_s;
} srv_metrics;

/* Register every family (metrics.c). 0, or -1 when out of memory. */
int srv_metrics_init(srv_metrics *m, double sla_ms);
void srv_metrics_free(srv_metrics *m);

/* ---- batcher: one per model ---- */
typedef struct srv_batcher srv_batcher;

/* Start `workers` worker threads, each with its own detector on m. The model must
 * outlive the batcher. Returns NULL with a message in err. */
srv_batcher *srv_batcher_new(const char *name, const itscam_model *m, const srv_config *cfg, srv_metrics *mx,
                             char *err, size_t errlen);
/* Run every batch size that can occur once on every worker, so that plans, primitives
 * and buffers exist before the first request. Returns 0 or -1 with err. */
int srv_batcher_warmup(srv_batcher *b, char *err, size_t errlen);
/* Queue a job. 0: queued (done() will be called exactly once, from a worker or from
 * srv_batcher_free). -1: its priority level is full (nothing queued; answer 503).
 * -2: the batcher is stopping. */
int srv_batcher_submit(srv_batcher *b, srv_job *j);
/* Submit n jobs atomically: all are queued or none (-1/-2 as above). */
int srv_batcher_submit_all(srv_batcher *b, srv_job **jobs, int n);
int srv_batcher_depth(srv_batcher *b, int prio);
/* Answer every queued job with SRV_DONE_SHUTDOWN (503) now; running batches finish. */
void srv_batcher_cancel_queued(srv_batcher *b);
/* Finish every queued job, stop the workers and free. */
void srv_batcher_free(srv_batcher *b);
const char *srv_batcher_precision(srv_batcher *b);
const char *srv_batcher_backend(srv_batcher *b);
/* The backend worker 0's last run used ("cpu" when a cuda model fell back). */
const char *srv_batcher_active_backend(srv_batcher *b);
/* The model's first output shape as served (batch dimension -1 when dynamic). */
int srv_batcher_output_dims(srv_batcher *b, int64_t dims[8], int *ndim);
int srv_batcher_max_batch(srv_batcher *b);

/* ---- models ---- */
typedef struct srv_model {
    char name[128];
    char path[SRV_PATH_MAX];
    itscam_model *model;
    srv_batcher *batcher;
    atomic_int refs;            /* the registry's reference plus one per request in flight */
    atomic_int ready;
    int64_t out_dims[8];        /* the first output's shape, batch dimension -1 or 1 */
    int out_ndim;
} srv_model;

void srv_model_ref(srv_model *m);
void srv_model_unref(srv_model *m);   /* the last one stops the batcher and frees */

/* The model's queue, as the HTTP side sees it (registry.c; the batcher stays behind). */
/* Queue n jobs atomically, as srv_batcher_submit_all: 0 queued, -1 a level is full,
 * -2 the model is stopping (nothing queued on -1 or -2). */
int srv_model_submit(srv_model *m, srv_job **jobs, int n);
int srv_model_queue_depth(srv_model *m, int prio);
/* Answer every queued job with SRV_DONE_SHUTDOWN (503) now; running batches finish. */
void srv_model_cancel_queued(srv_model *m);
typedef struct srv_model_desc {
    const char *precision, *backend;   /* as configured and resolved */
    const char *active_backend;        /* what the last run used (the CPU after a fallback) */
    int max_batch;
} srv_model_desc;
/* Strings stay valid while the caller holds a reference to m. */
void srv_model_describe(srv_model *m, srv_model_desc *d);

typedef struct srv_registry {
    int n;
    srv_model **models;         /* sorted by name */
} srv_registry;

/* Load every model the configuration names and warm it up. NULL with err on failure. */
srv_registry *srv_registry_load(const srv_config *cfg, srv_metrics *mx, char *err, size_t errlen);
/* Drop the registry's references (models in use live on until their requests finish). */
void srv_registry_release(srv_registry *r);

/* ---- the server ---- */
typedef struct srv_server srv_server;
/* Bind and serve (health and metrics at once; model routes answer 503 until
 * srv_server_load is done). Returns NULL with err. */
srv_server *srv_server_start(const srv_config *cfg, char *err, size_t errlen);
/* Load and warm up the configured models, then report ready. 0 or -1 with err. */
int srv_server_load(srv_server *s, char *err, size_t errlen);
/* The port actually bound (useful with port 0). */
int srv_server_port(const srv_server *s);
/* Reload the models (SIGHUP): new requests go to the new models once they are warm,
 * requests in flight finish on the old ones. 0 or -1 with err (the old models stay). */
int srv_server_reload(srv_server *s, char *err, size_t errlen);
/* Stop accepting, let requests in flight finish (up to drain_timeout_s), stop. */
void srv_server_stop(srv_server *s);

#endif
