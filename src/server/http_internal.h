/* Inside the HTTP server: the server and request structs, the route table's row, and the
 * helpers every API family file (api_*.c) uses to answer. Private to src/server.
 *
 * Files: http.c (the route table, the access handler, bodies, responses, suspension
 * while jobs wait), lifecycle.c (start, load, reload, drain, stop), auth.c (tokens),
 * metrics.c (every metric family and the collection at scrape time), api_health.c,
 * api_detect.c, api_kserve.c, api_admin.c (the handlers). Models are reached only
 * through srv_model_* (registry.c), never through the scheduler itself. */
#ifndef ITSCAM_SERVER_HTTP_INTERNAL_H
#define ITSCAM_SERVER_HTTP_INTERNAL_H

#include "server/admission.h"
#include "server/guard.h"
#include "server/reqparse.h"
#include "server/server.h"
#include "pipeline/cameras.h"
#include "sinks/bus.h"
#include "sinks/events.h"
#include "sinks/store.h"
#include "sinks/frames.h"
#include "vision/image.h"

#include <jansson.h>
#include <stdarg.h>
#include <microhttpd.h>

#define SRV_MAX_FILES 64      /* images per /v1/detect/batch request */
#define SRV_MAX_TOKENS 64

struct srv_server {
    srv_config cfg;
    srv_metrics mx;
    srv_admission adm;      /* decoded image bytes in flight (admission.c) */
    struct MHD_Daemon *d;
    int port;
    pthread_rwlock_t reg_lock;
    srv_registry *reg;
    atomic_int ready;
    atomic_int inflight;
    atomic_int draining;
    /* Reloads (lifecycle.c): one load at a time, and every request made while it runs is
     * answered by its result. Guarded by reload_mu. */
    pthread_mutex_t reload_mu;
    pthread_cond_t reload_cv;     /* broadcast when a load ends */
    int reloading;
    unsigned long reload_gen;     /* loads ended so far */
    int reload_rc;                /* the last load's result and message */
    char reload_err[320];
    struct http_req **reload_waiters; /* HTTP requests suspended until the load ends */
    int n_reload_waiters, cap_reload_waiters;
    char tokens[SRV_MAX_TOKENS][128];
    int n_tokens;
    char *tls_key, *tls_cert;
    double cpu_last;
    double start_unix;
    srv_guard *guard;           /* slow-client deadlines, reserved slots, stream count */
    /* Live camera output (api_live.c): the event bus and the newest frames the camera
     * pipeline feeds, and the SSE/MJPEG streams reading them. */
    it_bus *bus;
    it_frames *frames;
    struct srv_live *live;
    /* Cameras (cameras.c): the pipeline and the store its API changes are written to.
     * cam_mu serialises API changes and guards the two pointers. */
    pthread_mutex_t cam_mu;
    it_cams *cams;
    it_store *store;
    /* Events (cameras.c): the writer the cameras' events go through into the store, and
     * the retention thread (events.retention_days, events.max_events). */
    struct it_event_writer *events;
    it_store *retain_store;     /* the store while the retention thread runs */
    pthread_t retain_th;
    int retain_started, retain_stop;
    pthread_mutex_t retain_mu;
    pthread_cond_t retain_cv;
    atomic_ullong events_retained;
    struct srv_publish *publish; /* publish_srv.c: the brokers' publishers, or NULL */
    /* Run-time scheduler settings (PUT /v1/admin/scheduler, api_admin.c): rt_mu guards
     * cfg's batching delays, preferred sizes and queue limits, which that route changes,
     * and orders such changes with reloads so that new models get them too. Taken
     * before reg_lock. */
    pthread_mutex_t rt_mu;
};

typedef struct http_req http_req;
typedef enum MHD_Result (*http_handler)(http_req *r);

/* One image or tensor of a request: the scheduler's job (inputs, per-job parameters,
 * priority, deadline, outcome) and the request it belongs to, which its completion
 * resumes. KServe and HTTP details stay here, out of the scheduler. */
typedef struct srv_job {
    it_sched_job sj;
    http_req *req;
} srv_job;

/* One row of the route table (http.c), the only place a route is decided: matching,
 * method check (405 with Allow), authentication, the model lookup and the metrics label
 * all read it.
 *
 * pattern: literal segments, "{model}" (a served model's name, captured),
 * "{camera}" (a camera id, [a-z0-9_-]{1,64}, captured into r->camera), "{event}" (an
 * event id, digits, into r->event_id) and "{version}" (any one segment: a model has one
 * version). A model route without
 * "{model}" takes ?model= (default: the first model).
 *
 * handler runs once the whole body is in. It answers with http_respond_* (which queues
 * the response), or hands jobs to the model with http_submit_jobs(r, finish): the
 * connection is then suspended and `finish` answers once every job is back. A
 * streaming route (SSE, MJPEG) would fit the same way: its handler queues a response
 * built from a content reader (MHD_create_response_from_callback) that produces events
 * as they come, and the request is recorded in the metrics when the reader ends; the
 * row stays one line, with HTTP_STREAM in its flags: the request is then admitted only
 * while fewer than server.max_streams streams are open (503 otherwise), is exempt from
 * the header and body deadlines and from libmicrohttpd's idle timeout, and the reader
 * calls http_stream_wrote(r) each time it hands bytes over: a viewer whose socket takes
 * nothing for server.stream_send_timeout_s is dropped (a quiet stream sends heartbeats).
 *
 * flags: HTTP_RESERVED routes (health, readiness, metrics) are still served when every
 * normal connection slot is taken, from the server.reserved_connections slots, so that
 * an orchestrator's probes get through to a busy server; every other route then gets 503
 * with Retry-After and Connection: close. */
enum { HTTP_GET = 1, HTTP_POST = 2, HTTP_PATCH = 4, HTTP_DELETE = 8, HTTP_PUT = 16 };  /* a GET route also answers HEAD */
/* HTTP_ADMIN: a route that changes how the server runs; a server without tokens
 * (server.tokens_file unset) answers its state-changing methods 403 rather than let
 * anyone who can reach it retune it. */
enum { HTTP_RESERVED = 1, HTTP_STREAM = 2, HTTP_ADMIN = 4 };
typedef struct http_route {
    unsigned methods;       /* HTTP_GET | HTTP_POST */
    const char *pattern;
    http_handler handler;
    int needs_model;        /* 503 while loading, 404 for an unknown model, r->model set */
    int needs_auth;         /* a bearer token when tokens are configured (all but health) */
    const char *label;      /* the metrics route label: the canonical route's pattern, so
                             * that aliases count together; NULL means this pattern */
    unsigned flags;         /* HTTP_RESERVED, HTTP_STREAM, HTTP_ADMIN */
} http_route;

/* What a route's pattern captured from the URL. */
typedef struct http_captures {
    char model[128];
    char camera[IT_FRAMES_ID_MAX + 1];
    int64_t event_id;
} http_captures;

struct http_req {
    srv_server *s;
    struct MHD_Connection *conn;
    const http_route *route;    /* NULL until a route matched */
    const char *route_label;    /* static: a row's label, or "other" */
    char model_name[128];       /* "" or a served model's name (the metrics label) */
    char camera[IT_FRAMES_ID_MAX + 1]; /* the {camera} of the route, or "" */
    int64_t event_id;        /* the {event} of the route, or 0 */
    double t0;
    uint8_t *body;
    size_t len, cap;
    int too_big;
    int answered;            /* a response was queued */
    int close;               /* the answer says Connection: close (framing cannot be trusted) */
    srv_conn *cn;            /* the connection's record in s->guard (NULL: untracked) */
    int body_done;
    /* waiting on the model */
    srv_model *model;
    int n_jobs;
    srv_job *jobs;
    atomic_int pending;
    int submitted;
    http_handler finish;     /* answers once every job is back */
    int fail_code;           /* set when submission failed after suspending */
    char fail_msg[320];
    /* inputs owned by the request */
    it_image imgs[SRV_MAX_FILES];
    int n_imgs;
    char filenames[SRV_MAX_FILES][128];
    double ms_decode[SRV_MAX_FILES];
    size_t decode_reserved;  /* bytes of s->adm held until the images are freed */
    ks_request ks;
    int have_ks;
    int ks_uint8;            /* image tensor input */
};

/* ---- responses (http.c): each queues the response and records the request's metrics ---- */
/* Takes ownership of body (malloc'd; NULL when len == 0). h1/v1: one extra header or NULL. */
enum MHD_Result http_respond_raw(http_req *r, int code, const char *ctype, char *body, size_t len,
                                 const char *h1, const char *v1);
/* Takes the reference to j. */
/* Queue resp (the caller's reference is taken) with the common headers, and record. */
enum MHD_Result http_respond_with(http_req *r, int code, struct MHD_Response *resp);
enum MHD_Result http_respond_json(http_req *r, int code, json_t *j);
enum MHD_Result http_respond_error_h(http_req *r, int code, const char *msg, const char *h, const char *v);
enum MHD_Result http_respond_error(http_req *r, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A streaming response's reader handed bytes to the socket (see the route row). */
void http_stream_wrote(http_req *r);

/* ---- jobs (http.c) ---- */
/* Allocate n jobs for r, each a copy of tmpl (its parameters, priority, deadline,
 * wants) wired to resume r when done. 0, or -1 when out of memory. */
int http_jobs_alloc(http_req *r, int n, const it_sched_job *tmpl);
/* Submit r's jobs to r->model and suspend; `finish` answers when all are back. A full
 * queue or an unloading model is answered 503 (with Retry-After) at once, a job the
 * scheduler refuses 400. */
enum MHD_Result http_submit_jobs(http_req *r, http_handler finish);
/* Answer r when one of its jobs did not succeed (504 expired, 503 cancelled, replaced or
 * queue full with Retry-After, 422/400/500 failed, by the detector's status) and return
 * 1 with the answer's result in *ret; 0 when every job succeeded. */
int http_jobs_failed(http_req *r, enum MHD_Result *ret);

/* ---- helpers shared by the API files ---- */
int http_is_ctype(const char *ct, const char *want);
json_t *http_dims_json(const int64_t *d, int n);
json_t *http_dets_json(const itscam_result *res);   /* api_detect.c */

/* ---- authentication (auth.c) ---- */
/* (Re)read cfg.tokens_file into s->tokens (none when unset: no authentication). 0, or -1
 * with err and the tokens unchanged. */
int srv_auth_load(srv_server *s, char *err, size_t errlen);
int srv_auth_ok(srv_server *s, struct MHD_Connection *c);

/* ---- metrics (metrics.c) ---- */
/* One answered request: counters by route, model and code, latency, SLA. */
void srv_metrics_request(srv_metrics *m, const char *route, const char *model, int code, double secs,
                         int model_route);
void srv_metrics_decode(srv_metrics *m, const char *model, double secs);
/* Install the scrape-time collection (process, breaker, queue depths) for s. */
void srv_metrics_collect_on(srv_server *s);
/* The Prometheus text for /metrics; malloc'd, NULL when out of memory. */
char *srv_metrics_render(srv_server *s, size_t *len);

/* ---- the access handler and model lookup (http.c) ---- */
enum MHD_Result http_access(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                            const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls);
void http_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe);
/* libmicrohttpd's log (MHD_OPTION_EXTERNAL_LOGGER; cls is the server): its messages at
 * debug level, and the one answer to a request it cannot parse (guard.h). */
void http_log(void *cls, const char *fmt, va_list ap);

/* Look a served model up and take a reference (srv_model_unref it); "" picks the
 * first model. NULL when there is none of that name (or none loaded yet). */
srv_model *srv_server_model(srv_server *s, const char *name);

/* ---- cameras (cameras.c) ---- */
/* Stop every camera (waiting for their jobs) and close the store; before the models go. */
void srv_cameras_stop(srv_server *s);
/* The itscam_camera_* series, at scrape time. */
void srv_cameras_collect(srv_server *s);

/* ---- publishing (publish_srv.c) ---- */
/* Register the outbox targets of the enabled brokers (publish.mqtt.host, publish.redis.host)
 * in s->store, start their publishers and their itscam_publish_* metrics. Call once the
 * store is open and before events are written to it (an event inserted before its
 * target is registered is never published there). Nothing to do when no broker is set.
 * 0, or -1 with err (a broker that is down is not an error: it only delays delivery). */
int srv_publish_start(srv_server *s, char *err, size_t errlen);
/* Stop the publishers (MQTT says offline); before the store closes. Unsent events stay in
 * the outbox. Harmless when none run. */
void srv_publish_stop(srv_server *s);
/* New events were committed: every publisher looks at the outbox now. Never blocks;
 * safe from the event writer's on-commit hook, before, during and after stop. */
void srv_publish_wake(srv_server *s);

/* ---- handlers: one per route row ---- */
/* cameras.c */
enum MHD_Result api_cameras_list(http_req *r);
enum MHD_Result api_camera_create(http_req *r);
enum MHD_Result api_camera_get(http_req *r);
enum MHD_Result api_camera_patch(http_req *r);
enum MHD_Result api_camera_delete(http_req *r);
/* api_health.c */
enum MHD_Result api_server_meta(http_req *r);
enum MHD_Result api_live(http_req *r);
enum MHD_Result api_ready(http_req *r);
enum MHD_Result api_models(http_req *r);
enum MHD_Result api_model_meta(http_req *r);
enum MHD_Result api_model_ready(http_req *r);
/* api_detect.c */
enum MHD_Result api_detect(http_req *r);
enum MHD_Result api_detect_batch(http_req *r);
/* api_kserve.c */
enum MHD_Result api_kserve_infer(http_req *r);
/* 1 when url names no version or version "1", the only one a model has (404 otherwise). */
int api_version_known(const char *url);
/* api_admin.c */
enum MHD_Result api_metrics(http_req *r);
enum MHD_Result api_reload(http_req *r);
/* lifecycle.c: suspend r until the reload running now (or one started for it) ends;
 * its connection is then resumed with r->fail_code set on failure, and r->finish
 * answers. -1 (nothing suspended) when out of memory or shutting down. */
int srv_server_reload_async(srv_server *s, http_req *r, http_handler finish);
enum MHD_Result api_backend_get(http_req *r);
enum MHD_Result api_backend_set(http_req *r);
/* GET and PUT /v1/admin/scheduler: the scheduler settings a running server takes. */
enum MHD_Result api_scheduler_get(http_req *r);
enum MHD_Result api_scheduler_put(http_req *r);
/* api_live.c: camera snapshots, MJPEG and the event stream (SSE). */
enum MHD_Result api_snapshot(http_req *r);
enum MHD_Result api_mjpeg(http_req *r);
enum MHD_Result api_events(http_req *r);
/* api_events.c: the event store's history, one event, its snapshot, counts. */
enum MHD_Result api_events_list(http_req *r);
enum MHD_Result api_event_get(http_req *r);
enum MHD_Result api_event_snapshot(http_req *r);
enum MHD_Result api_camera_counts(http_req *r);

/* Query arguments shared by /v1/events and /v1/events/stream (api_events.c). */
/* 1 with a 400 in *ret when r has a query argument not in `allowed` (NULL-ended): a typo
 * must not silently widen a query. */
int api_query_unknown(http_req *r, const char *const *allowed, enum MHD_Result *ret);
/* The filters camera= (one camera id), type= and class= (comma lists of at most
 * IT_EVENT_FILTER_LIST_MAX names; types [a-z0-9_]{1,31}, classes 1..63 bytes without
 * commas or control characters). The lists point into the struct itself: parse it where
 * it stays (no copies). 0, or -1 with a 400 in *ret. */
typedef struct api_event_filter {
    char camera[IT_CAM_ID_MAX + 1];
    char type_names[IT_EVENT_FILTER_LIST_MAX][IT_EVENT_TYPE_MAX + 1];
    char class_names[IT_EVENT_FILTER_LIST_MAX][IT_EVENT_CLASS_MAX + 1];
    const char *types[IT_EVENT_FILTER_LIST_MAX], *classes[IT_EVENT_FILTER_LIST_MAX];
    int n_types, n_classes;
} api_event_filter;
int api_event_filter_parse(http_req *r, api_event_filter *a, enum MHD_Result *ret);
/* The store filter of a (which must outlive it). */
void api_event_filter_store(const api_event_filter *a, it_event_filter *f);
/* Whether a bus event passes a's filters. A class filter passes only stored events
 * (e->id > 0) whose JSON names one of the classes: live-only events carry no class. */
int api_event_filter_match(const api_event_filter *a, const it_event *e);
/* The keyset cursor /v1/events hands out for "events after id, oldest first" (what an
 * SSE reset points clients to); cur holds at least 24 bytes. */
void api_events_cursor(int ascending, int64_t id, char *cur, size_t n);
/* The store under s->cam_mu (held on success, released by api_store_unlock), or NULL
 * with 503 in *ret while the cameras (and their store) are not running. */
it_store *api_store_lock(http_req *r, enum MHD_Result *ret);
void api_store_unlock(http_req *r);

/* Create s->bus, s->frames and the streams' timer thread. 0 or -1 with err. */
int srv_live_start(srv_server *s, char *err, size_t errlen);
/* End every open stream (each finishes the part it is writing) and refuse new ones:
 * called when the server starts draining. */
void srv_live_end_streams(srv_server *s);
/* Stop the timer and free the bus and the frames; after the daemon stopped. */
void srv_live_free(srv_server *s);

#endif
