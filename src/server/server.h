/* The inference server's internals: the model registry and the metrics the HTTP layer
 * (http.c, api_*.c) and the models' schedulers (src/sched) share.
 *
 * Life of a request: an HTTP thread parses and decodes the body, fills one scheduler job
 * per image (or tensor) and submits it to the model's scheduler, then suspends the
 * connection. A worker thread of that model forms a batch by priority, runs it on its
 * own detector (sessions share the model's weights) and completes every job through its
 * `done` callback, which resumes the connection; the HTTP thread then writes the
 * response. Nothing blocks an HTTP thread while a request waits for the model. */
#ifndef ITSCAM_SERVER_SERVER_H
#define ITSCAM_SERVER_SERVER_H

#include "itscam/itscam.h"
#include "sched/sched.h"
#include "server/config.h"
#include "server/prom.h"
#include "sinks/camdef.h"
#include "sinks/bus.h"
#include "sinks/frames.h"

#include <pthread.h>
#include <stdatomic.h>

typedef struct srv_metrics {
    prom_registry *reg;
    prom_family *requests, *request_seconds, *queue_seconds, *decode_seconds, *preprocess_seconds,
        *inference_seconds, *postprocess_seconds, *batch_size, *queue_depth, *inflight, *sla_violations,
        *sla_seconds, *rejected, *cpu_seconds, *rss_bytes, *decode_budget, *decode_in_use, *connections_open, *connections_dropped, *start_time, *build_info, *model_ready,
        *breaker_state, *breaker_forced, *breaker_transitions, *backend_failures, *fallback_runs,
        *reloads, *streams_open, *events_published, *events_dropped, *camera_state, *camera_fps, *camera_dropped,
        *camera_frames, *camera_reconnects, *camera_cache_hits, *camera_quality, *camera_shed_level, *camera_latency,
        *shed_step, *shed_changes;
    /* events (cameras.c): per camera, and the store writer's totals */
    prom_family *camera_events, *camera_line_crossings, *camera_zone_occupancy, *events_stored, *events_lost,
        *events_retained;
    itscam_breaker_info breaker_last; /* counters already exported, to add only the change */
    long long conn_dropped_last[4];   /* the guard's drop counts already exported, likewise */
    uint64_t events_published_last, events_dropped_last; /* the bus's, likewise */
    double sla_s;
} srv_metrics;

/* Register every family (metrics.c). 0, or -1 when out of memory. */
int srv_metrics_init(srv_metrics *m, const srv_config *cfg);
void srv_metrics_free(srv_metrics *m);

/* ---- models ---- */
typedef struct srv_model {
    char name[128];
    char path[SRV_PATH_MAX];
    itscam_model *model;
    it_sched *sched;            /* its queue and workers: touched only in registry.c */
    srv_metrics *mx;            /* where the scheduler's observer reports (metrics.c) */
    atomic_int refs;            /* the registry's reference plus one per request in flight */
    atomic_int ready;
    int64_t out_dims[8];        /* the first output's shape, batch dimension -1 or 1 */
    int out_ndim;
} srv_model;

/* The observer a model's scheduler reports to (metrics.c): queue times by priority, stage
 * times, batch sizes, queue depths and rejections, labelled with m's name. m must
 * outlive the scheduler (it does: the scheduler is freed with it). */
it_sched_observer srv_metrics_observer(srv_model *m);
/* m is loaded and warm: its ready gauge reads 1 and its queue depths 0. */
void srv_metrics_model_ready(srv_model *m);

void srv_model_ref(srv_model *m);
void srv_model_unref(srv_model *m);   /* the last one stops the scheduler and frees */

/* The model's queue, as the HTTP side sees it (registry.c; the scheduler stays behind). */
/* Queue n jobs atomically (all or none), as it_sched_submit_all: on anything but
 * IT_SCHED_QUEUED nothing was queued and each job's outcome and message say why. */
it_sched_submit_status srv_model_submit(srv_model *m, it_sched_job **jobs, int n);
int srv_model_queue_depth(srv_model *m, int prio);
/* Answer every queued job CANCELLED (503) now; running batches finish. */
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

/* The scheduler parameters a served model gets from cfg (workers, batching, queues,
 * backend, threads, precision, detection defaults): the one translation, which
 * `itscam performance benchmark --cameras` reuses so that it measures what a server runs.
 * The strings in the result point into cfg. */
it_sched_params srv_sched_params(const srv_config *cfg);
/* Load every model the configuration names and warm it up. NULL with err on failure. */
srv_registry *srv_registry_load(const srv_config *cfg, srv_metrics *mx, char *err, size_t errlen);
/* Put cfg's run-time settings (batching delays, preferred sizes, queue limits) in force
 * on every model of r at once, each model's max_batch bounding its preferred sizes.
 * 0, or -1 with err. */
int srv_registry_runtime_apply(srv_registry *r, const srv_config *cfg, char *err, size_t errlen);
/* The settings m's scheduler runs with now. */
void srv_model_runtime_get(srv_model *m, it_sched_runtime *rt);
/* Drop the registry's references (models in use live on until their requests finish). */
void srv_registry_release(srv_registry *r);

/* ---- the server ---- */
typedef struct srv_server srv_server;
/* Bind and serve (health and metrics at once; model routes answer 503 until
 * srv_server_load is done). Returns NULL with err. */
srv_server *srv_server_start(const srv_config *cfg, char *err, size_t errlen);
/* Load and warm up the configured models, then report ready. 0 or -1 with err. */
int srv_server_load(srv_server *s, char *err, size_t errlen);
/* Open the store under storage.dir, merge the configured cameras with the stored ones
 * (the rule is in sinks/store.h) and start them; after srv_server_load. A camera that
 * cannot start is logged and skipped. 0, or -1 with err (the store cannot open). */
int srv_cameras_start(srv_server *s, const it_camdef *cams, int n, char *err, size_t errlen);
/* The port actually bound (useful with port 0). */
int srv_server_port(const srv_server *s);
/* Reload the models (SIGHUP): new requests go to the new models once they are warm,
 * requests in flight finish on the old ones. 0 or -1 with err (the old models stay). */
int srv_server_reload(srv_server *s, char *err, size_t errlen);
/* The live outputs the camera pipeline feeds and the HTTP streams read: the event bus
 * (GET /v1/events/stream) and the newest frame per camera (snapshot.jpg, mjpeg). Valid
 * from srv_server_start until srv_server_stop, which ends the streams first; whoever
 * publishes or puts must stop before srv_server_stop. Thread-safe (bus.h, frames.h). */
it_bus *srv_server_bus(srv_server *s);
it_frames *srv_server_frames(srv_server *s);
/* Stop accepting, let requests in flight finish (up to drain_timeout_s), stop. */
void srv_server_stop(srv_server *s);

#endif
