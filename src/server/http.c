/* The HTTP layer on libmicrohttpd: the route table, request bodies, responses, and the
 * suspension of a connection while its jobs wait for the model.
 *
 * libmicrohttpd runs a pool of epoll threads. A request that needs the model is decoded
 * on the pool thread, submitted to the model, and its connection suspended; the worker
 * that completes the last of its jobs resumes it, and the pool thread writes the answer.
 * So a handful of HTTP threads serve any number of waiting clients, and a full queue is
 * answered at once (503) instead of holding a thread. */
#include "server/http_internal.h"

#include "core/core.h"
#include "server/framing.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

/* Every route, once. Aliases are rows of their own that share the canonical label. */
static const http_route routes[] = {
    /* methods    pattern                                        handler           model auth label, flags */
    { HTTP_GET,  "/v2",                                         api_server_meta,  0, 1, NULL },
    { HTTP_GET,  "/v2/health/live",                             api_live,         0, 0, NULL, HTTP_RESERVED },
    { HTTP_GET,  "/health",                                     api_live,         0, 0, "/v2/health/live", HTTP_RESERVED },
    { HTTP_GET,  "/v2/health/ready",                            api_ready,        0, 0, NULL, HTTP_RESERVED },
    { HTTP_GET,  "/ready",                                      api_ready,        0, 0, "/v2/health/ready", HTTP_RESERVED },
    { HTTP_GET,  "/v2/models/{model}",                          api_model_meta,   1, 1, NULL },
    { HTTP_GET,  "/v2/models/{model}/versions/{version}",       api_model_meta,   1, 1, "/v2/models/{model}" },
    { HTTP_GET,  "/v2/models/{model}/ready",                    api_model_ready,  1, 1, NULL },
    { HTTP_GET,  "/v2/models/{model}/versions/{version}/ready", api_model_ready,  1, 1, "/v2/models/{model}/ready" },
    { HTTP_POST, "/v2/models/{model}/infer",                    api_kserve_infer, 1, 1, NULL },
    { HTTP_POST, "/v2/models/{model}/versions/{version}/infer", api_kserve_infer, 1, 1, "/v2/models/{model}/infer" },
    { HTTP_POST, "/v1/detect",                                  api_detect,       1, 1, NULL },
    { HTTP_POST, "/predict",                                    api_detect,       1, 1, "/v1/detect" },
    { HTTP_POST, "/v1/detect/batch",                            api_detect_batch, 1, 1, NULL },
    { HTTP_POST, "/predict/batch",                              api_detect_batch, 1, 1, "/v1/detect/batch" },
    { HTTP_GET,  "/v1/models",                                  api_models,       0, 1, NULL },
    { HTTP_POST, "/v1/models/reload",                           api_reload,       0, 1, NULL },
    { HTTP_GET,  "/v1/backend",                                 api_backend_get,  0, 1, NULL },
    { HTTP_POST, "/v1/backend",                                 api_backend_set,  0, 1, NULL },
    { HTTP_GET,  "/v1/admin/scheduler",                         api_scheduler_get,0, 1, NULL, HTTP_ADMIN },
    { HTTP_PUT,  "/v1/admin/scheduler",                         api_scheduler_put,0, 1, NULL, HTTP_ADMIN },
    { HTTP_GET,  "/metrics",                                    api_metrics,      0, 1, NULL, HTTP_RESERVED },
    { HTTP_GET,  "/v1/cameras",                                 api_cameras_list, 0, 1, NULL },
    { HTTP_POST, "/v1/cameras",                                 api_camera_create,0, 1, NULL },
    { HTTP_GET,  "/v1/cameras/{camera}",                        api_camera_get,   0, 1, NULL },
    { HTTP_PATCH, "/v1/cameras/{camera}",                       api_camera_patch, 0, 1, NULL },
    { HTTP_DELETE, "/v1/cameras/{camera}",                      api_camera_delete,0, 1, NULL },
    { HTTP_GET,  "/v1/cameras/{camera}/snapshot.jpg",           api_snapshot,     0, 1, NULL },
    { HTTP_GET,  "/v1/cameras/{camera}/mjpeg",                  api_mjpeg,        0, 1, NULL, HTTP_STREAM },
    { HTTP_GET,  "/v1/cameras/{camera}/counts",                 api_camera_counts,0, 1, NULL },
    { HTTP_GET,  "/v1/events/stream",                           api_events,       0, 1, NULL, HTTP_STREAM },
    { HTTP_GET,  "/v1/events",                                  api_events_list,  0, 1, NULL },
    { HTTP_GET,  "/v1/events/{event}",                          api_event_get,    0, 1, NULL },
    { HTTP_GET,  "/v1/events/{event}/snapshot.jpg",             api_event_snapshot,0, 1, NULL },
};
#define N_ROUTES (sizeof routes / sizeof routes[0])

/* ---------------------------------------------------------------------------------
 * Matching
 * --------------------------------------------------------------------------------- */

/* A camera id in a URL: [a-z0-9_-]{1,64} (config ids are the same). */
static int camera_id_ok(const char *u, size_t n) {
    if (n < 1 || n > IT_FRAMES_ID_MAX) return 0;
    for (size_t i = 0; i < n; i++)
        if (!((u[i] >= 'a' && u[i] <= 'z') || (u[i] >= '0' && u[i] <= '9') || u[i] == '_' || u[i] == '-')) return 0;
    return 1;
}

/* An event id in a URL: 1 to 18 digits, not 0 (ids count from 1). */
static int event_id_ok(const char *u, size_t n, int64_t *id) {
    if (n < 1 || n > 18) return 0;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (u[i] < '0' || u[i] > '9') return 0;
        v = v * 10 + (u[i] - '0');
    }
    *id = v;
    return v > 0;
}

/* Match url against a pattern segment by segment; "{model}" and "{camera}" are copied
 * into cap (a camera id must be [a-z0-9_-]{1,64} to match), "{event}" must be an event
 * id (digits), "{version}" matches any non-empty segment. 1 on a match. */
static int match(const char *pattern, const char *url, http_captures *cap) {
    const char *p = pattern, *u = url;
    while (*p && *u) {
        if (*p != '/' || *u != '/') return 0;
        p++;
        u++;
        size_t pn = strcspn(p, "/"), un = strcspn(u, "/");
        if (pn > 2 && p[0] == '{') {
            if (un == 0) return 0;
            if (!strncmp(p, "{model}", pn)) {
                if (un >= sizeof cap->model) return 0;
                memcpy(cap->model, u, un);
                cap->model[un] = 0;
            } else if (!strncmp(p, "{camera}", pn)) {
                if (!camera_id_ok(u, un)) return 0;
                memcpy(cap->camera, u, un);
                cap->camera[un] = 0;
            } else if (!strncmp(p, "{event}", pn)) {
                if (!event_id_ok(u, un, &cap->event_id)) return 0;
            }
        } else if (pn != un || strncmp(p, u, pn)) {
            return 0;
        }
        p += pn;
        u += un;
    }
    return !*p && !*u;
}

static unsigned method_bit(const char *method) {
    if (!strcmp(method, "GET") || !strcmp(method, "HEAD")) return HTTP_GET;
    if (!strcmp(method, "POST")) return HTTP_POST;
    if (!strcmp(method, "PATCH")) return HTTP_PATCH;
    if (!strcmp(method, "DELETE")) return HTTP_DELETE;
    if (!strcmp(method, "PUT")) return HTTP_PUT;
    return 0;
}

/* The row for method and url. NULL: *allow gets the methods the url takes (0: no such
 * path). The captured model name and camera id go to cap. */
static const http_route *find_route(const char *method, const char *url, http_captures *cap, unsigned *allow,
                                    const http_route **path_row) {
    unsigned want = method_bit(method);
    *allow = 0;
    *path_row = NULL;
    for (size_t i = 0; i < N_ROUTES; i++) {
        http_captures c = { "", "", 0 };
        if (!match(routes[i].pattern, url, &c)) continue;
        if (routes[i].methods & want) {
            *cap = c;
            return &routes[i];
        }
        if (!*path_row) *path_row = &routes[i];
        *allow |= routes[i].methods;
    }
    return NULL;
}

static const char *label_of(const http_route *rt) {
    return rt->label ? rt->label : rt->pattern;
}

/* ---------------------------------------------------------------------------------
 * Responses
 * --------------------------------------------------------------------------------- */

enum MHD_Result http_respond_raw(http_req *r, int code, const char *ctype, char *body, size_t len,
                                 const char *h1, const char *v1) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, body ? body : (char *)"",
                                                                body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!resp) {
        free(body);
        return MHD_NO;
    }
    if (ctype) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    if (h1) MHD_add_response_header(resp, h1, v1);
    return http_respond_with(r, code, resp);
}

enum MHD_Result http_respond_with(http_req *r, int code, struct MHD_Response *resp) {
    if (r->close || atomic_load(&r->s->draining)) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    if (code == 401) MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"itscam\"");
    enum MHD_Result rc = MHD_queue_response(r->conn, (unsigned)code, resp);
    MHD_destroy_response(resp);
    r->answered = 1;
    srv_metrics_request(&r->s->mx, r->route_label, r->model_name, code, (it_now_ms() - r->t0) / 1e3, r->model != NULL);
    return rc;
}

enum MHD_Result http_respond_json(http_req *r, int code, json_t *j) {
    char *txt = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(9));
    json_decref(j);
    if (!txt) return http_respond_raw(r, 500, "text/plain", NULL, 0, NULL, NULL);
    return http_respond_raw(r, code, "application/json", txt, strlen(txt), NULL, NULL);
}

enum MHD_Result http_respond_error_h(http_req *r, int code, const char *msg, const char *h, const char *v) {
    json_t *j = json_pack("{s:s}", "error", msg);
    char *txt = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(9)) : NULL;
    json_decref(j);
    return http_respond_raw(r, code, "application/json", txt, txt ? strlen(txt) : 0, h, v);
}

enum MHD_Result http_respond_error(http_req *r, int code, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return http_respond_error_h(r, code, msg, NULL, NULL);
}

int http_is_ctype(const char *ct, const char *want) {
    size_t n = strlen(want);
    return ct && !strncasecmp(ct, want, n) && (ct[n] == 0 || ct[n] == ';' || ct[n] == ' ');
}

json_t *http_dims_json(const int64_t *d, int n) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, json_integer(d[i]));
    return a;
}

/* ---------------------------------------------------------------------------------
 * Jobs: the request's side of the model's queue
 * --------------------------------------------------------------------------------- */

static void job_done(it_sched_job *sj, void *arg) {
    (void)arg;
    srv_job *j = (srv_job *)((char *)sj - offsetof(srv_job, sj));
    http_req *r = j->req;
    if (atomic_fetch_sub(&r->pending, 1) == 1) MHD_resume_connection(r->conn);
}

int http_jobs_alloc(http_req *r, int n, const it_sched_job *tmpl) {
    r->jobs = it_calloc((size_t)n, sizeof *r->jobs);
    if (!r->jobs) return -1;
    r->n_jobs = n;
    for (int i = 0; i < n; i++) {
        srv_job *j = &r->jobs[i];
        j->sj = *tmpl;
        j->sj.params.classes = j->sj.classes;
        j->sj.done = job_done;
        j->sj.done_arg = NULL;
        j->req = r;
    }
    return 0;
}

/* The HTTP status of a job that did not succeed, with the message for the client. */
static int job_status(const http_req *r, const it_sched_job *j, char *msg, size_t n) {
    switch (j->outcome) {
    case IT_SCHED_DONE:
        return 0;
    case IT_SCHED_EXPIRED:
        snprintf(msg, n, "the request timed out: %s", j->message);
        return 504;
    case IT_SCHED_CANCELLED:
        snprintf(msg, n, "the server is shutting down or unloading model '%s'; retry elsewhere", r->model->name);
        return 503;
    case IT_SCHED_QUEUE_FULL:
    case IT_SCHED_REPLACED:
        snprintf(msg, n, "%s; retry later", j->message);
        return 503;
    case IT_SCHED_FAILED:
        break;
    }
    snprintf(msg, n, "%s", j->message);
    return j->status == ITSCAM_ERR_IMAGE ? 422 : j->status == ITSCAM_ERR_INVALID_ARG ? 400 : 500;
}

enum MHD_Result http_submit_jobs(http_req *r, http_handler finish) {
    /* Suspend first: a worker may finish the jobs before this function returns. */
    atomic_store(&r->pending, r->n_jobs);
    it_sched_job *ptrs[SRV_MAX_FILES];
    for (int i = 0; i < r->n_jobs; i++) ptrs[i] = &r->jobs[i].sj;
    r->submitted = 1;
    r->finish = finish;
    MHD_suspend_connection(r->conn);
    it_sched_submit_status rc = srv_model_submit(r->model, ptrs, r->n_jobs);
    if (rc != IT_SCHED_QUEUED) {
        /* Nothing was queued: answer at once (the connection is resumed below). */
        if (rc == IT_SCHED_REJECT_STOPPING) {
            r->fail_code = 503;
            snprintf(r->fail_msg, sizeof r->fail_msg, "model '%s' is being unloaded; retry later", r->model->name);
        } else {
            r->fail_code = job_status(r, ptrs[0], r->fail_msg, sizeof r->fail_msg);
        }
        atomic_store(&r->pending, 0);
        MHD_resume_connection(r->conn);
    }
    return MHD_YES;
}

/* 503s carry Retry-After: the condition passes (a queue drains, a model reloads). */
static enum MHD_Result respond_failed(http_req *r, int code, const char *msg) {
    return code == 503 ? http_respond_error_h(r, code, msg, MHD_HTTP_HEADER_RETRY_AFTER, "1")
                       : http_respond_error_h(r, code, msg, NULL, NULL);
}

int http_jobs_failed(http_req *r, enum MHD_Result *ret) {
    char msg[512];
    for (int i = 0; i < r->n_jobs; i++) {
        int code = job_status(r, &r->jobs[i].sj, msg, sizeof msg);
        if (code) {
            *ret = respond_failed(r, code, msg);
            return 1;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------------------------
 * The access handler
 * --------------------------------------------------------------------------------- */

srv_model *srv_server_model(srv_server *s, const char *name) {
    srv_model *m = NULL;
    pthread_rwlock_rdlock(&s->reg_lock);
    srv_registry *reg = s->reg;
    for (int i = 0; reg && i < reg->n; i++)
        if (!name[0] ? i == 0 : !strcmp(reg->models[i]->name, name)) {
            m = reg->models[i];
            srv_model_ref(m);
            break;
        }
    pthread_rwlock_unlock(&s->reg_lock);
    return m;
}

static void req_free(http_req *r) {
    if (!r) return;
    for (int i = 0; i < r->n_jobs; i++) {
        itscam_result_clear(&r->jobs[i].sj.res);
        it_free(r->jobs[i].sj.raw);
    }
    it_free(r->jobs);
    for (int i = 0; i < r->n_imgs; i++) it_image_free(&r->imgs[i]);
    srv_admission_release(&r->s->adm, &r->decode_reserved);
    if (r->have_ks) ks_request_free(&r->ks);
    if (r->model) srv_model_unref(r->model);
    it_free(r->body);
    it_free(r);
}

void http_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)toe;
    srv_server *s = cls;
    http_req *r = *con_cls;
    /* The connection now waits for its next request (keep-alive deadline). */
    srv_guard_request_done(s->guard, r ? r->cn : srv_guard_conn(c));
    if (!r) return;
    /* A request whose jobs are still queued cannot end here: its connection stays
     * suspended until they complete. */
    atomic_fetch_sub(&s->inflight, 1);
    req_free(r);
    *con_cls = NULL;
}

/* The request's headers, for the framing check. More than fit is itself a refusal. */
#define MAX_HEADERS 128
typedef struct header_list {
    srv_header h[MAX_HEADERS];
    size_t n;
    int overflow;
} header_list;

static enum MHD_Result collect_header(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
    (void)kind;
    header_list *l = cls;
    if (l->n == MAX_HEADERS) {
        l->overflow = 1;
        return MHD_NO;
    }
    l->h[l->n++] = (srv_header){ key, value };
    return MHD_YES;
}

/* Refuse a request whose body length is in doubt (framing.h) and close the connection,
 * so that no byte after it is read as a request. 1 with the answer in *ret. */
static int refuse_framing(http_req *r, const char *version, enum MHD_Result *ret) {
    header_list l;
    l.n = 0;
    l.overflow = 0;
    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, collect_header, &l);
    if (l.overflow) {
        r->close = 1;
        *ret = http_respond_error(r, 431, "more than %d request headers", MAX_HEADERS);
        return 1;
    }
    srv_framing f;
    srv_check_framing(l.h, l.n, version && !strcmp(version, MHD_HTTP_VERSION_1_0), r->s->cfg.max_body_bytes, &f);
    if (!f.status) return 0;
    r->close = f.close;
    *ret = http_respond_error(r, f.status, "%s", f.message);
    return 1;
}

/* Admission by connection slots and streams: with the normal slots taken only the
 * reserved routes are served; a streaming route needs a free stream. 1 with the answer. */
static int refuse_slots(http_req *r, enum MHD_Result *ret) {
    srv_server *s = r->s;
    if (!(r->route->flags & HTTP_RESERVED) && srv_guard_over_normal(s->guard)) {
        r->close = 1;
        *ret = http_respond_error_h(r, 503, "every connection slot is taken; retry shortly",
                                    MHD_HTTP_HEADER_RETRY_AFTER, "1");
        return 1;
    }
    if (r->route->flags & HTTP_STREAM) {
        if (srv_guard_stream_begin(s->guard, r->cn) != 0) {
            r->close = 1;
            *ret = http_respond_error_h(r, 503, "%d streams are open, the most allowed; retry later",
                                        MHD_HTTP_HEADER_RETRY_AFTER, "5");
            return 1;
        }
        /* The stream's own send timeout replaces the idle timeout: a quiet stream is not
         * an idle client. */
        MHD_set_connection_option(r->conn, MHD_CONNECTION_OPTION_TIMEOUT, 0u);
    }
    return 0;
}

/* The whole answer for a request libmicrohttpd could not parse; Content-Length set by
 * the caller. */
static int format_answer(char *buf, size_t n, int code, const char *reason, const char *msg) {
    json_t *j = json_pack("{s:s}", "error", msg);
    char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    int len = snprintf(buf, n,
                       "HTTP/1.1 %d %s\r\nConnection: close\r\nContent-Type: application/json\r\n"
                       "Content-Length: %zu\r\n\r\n%s",
                       code, reason, body ? strlen(body) : 0, body ? body : "");
    free(body);
    return len > 0 && (size_t)len < n ? len : -1;
}

void http_log(void *cls, const char *fmt, va_list ap) {
    srv_server *s = cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && msg[n - 1] == '\n') msg[--n] = 0;
    it_log(ITSCAM_LOG_DEBUG, "libmicrohttpd: %s", msg);
    /* See srv_guard_answer_unparsed: answer once, and well formed, before it does. */
    if (strstr(msg, "Content-Length") && strstr(msg, "parse") && !s->cfg.tls_cert[0]) {
        char buf[512];
        int len = format_answer(buf, sizeof buf, 400, "Bad Request",
                                "the Content-Length header is not a length: digits only");
        if (len > 0 && srv_guard_answer_unparsed(s->guard, buf, (size_t)len))
            srv_metrics_request(&s->mx, "other", "", 400, 0, 0);
    }
}

void http_stream_wrote(http_req *r) {
    srv_guard_stream_progress(r->s->guard, r->cn);
}

/* Headers are in: decide everything that does not need the body now, so that a refused
 * upload is refused before it is received. */
static enum MHD_Result on_headers(http_req *r, const char *url, const char *method, const char *version) {
    srv_server *s = r->s;
    struct MHD_Connection *c = r->conn;
    http_captures cap = { "", "", 0 };
    char *name = cap.model;
    unsigned allow;
    const http_route *path_row;
    enum MHD_Result ret;
    if (refuse_framing(r, version, &ret)) return ret;
    r->route = find_route(method, url, &cap, &allow, &path_row);
    if (!r->route) {
        /* With tokens configured, only the health routes answer without one: an unknown
         * path or a wrong method tells an unauthenticated client nothing about the routes. */
        if ((!path_row || path_row->needs_auth) && !srv_auth_ok(s, c))
            return http_respond_error(r, 401, "a valid bearer token is required (Authorization: Bearer TOKEN)");
        if (!path_row) return http_respond_error(r, 404, "no route %s %s", method, url);
        r->route_label = label_of(path_row);
        char allow_s[40] = "";
        static const char *const names[] = { "GET", "POST", "PATCH", "DELETE", "PUT" };
        for (int b = 0; b < 5; b++)
            if (allow & (1u << b))
                snprintf(allow_s + strlen(allow_s), sizeof allow_s - strlen(allow_s), "%s%s", allow_s[0] ? ", " : "",
                         names[b]);
        return http_respond_error_h(r, 405, "method not allowed", MHD_HTTP_HEADER_ALLOW, allow_s);
    }
    r->route_label = label_of(r->route);
    snprintf(r->camera, sizeof r->camera, "%s", cap.camera);
    r->event_id = cap.event_id;
    if (refuse_slots(r, &ret)) return ret;
    if (r->route->needs_auth && !srv_auth_ok(s, c))
        return http_respond_error(r, 401, "a valid bearer token is required (Authorization: Bearer TOKEN)");
    if ((r->route->flags & HTTP_ADMIN) && method_bit(method) != HTTP_GET && s->n_tokens == 0)
        return http_respond_error(r, 403, "%s %s changes the running server and needs authentication: set "
                                          "server.tokens_file (--tokens) and send its token", method, url);
    if (r->route->needs_model) {
        if (!strstr(r->route->pattern, "{model}")) {
            const char *m = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "model");
            snprintf(name, sizeof cap.model, "%s", m ? m : "");
        }
        /* The model label is set only once the name is a served model's, so that clients
         * cannot grow the metrics with names of their own. */
        if (!atomic_load(&s->ready))
            return http_respond_error_h(r, 503, "the models are loading; retry shortly", MHD_HTTP_HEADER_RETRY_AFTER, "1");
        r->model = srv_server_model(s, name);
        if (!r->model && atomic_load(&s->draining))
            return http_respond_error_h(r, 503, "the server is shutting down", MHD_HTTP_HEADER_RETRY_AFTER, "1");
        if (!r->model) return http_respond_error(r, 404, "unknown model '%s': GET /v1/models lists them", name);
        snprintf(r->model_name, sizeof r->model_name, "%s", r->model->name);
        if (!api_version_known(url)) return http_respond_error(r, 404, "unknown version of model '%s': it has one, \"1\"", name);
    }
    return MHD_YES;
}

/* Answer now, while the body still arrives: libmicrohttpd 0.9 queues a response only
 * before the body or after all of it, so the answer is written to the socket here and
 * the sending side shut (the client reads the answer, then the end of the stream); the
 * rest of the body is discarded until the guard closes the connection. Over TLS the
 * socket is not ours to write: the connection is closed without an answer. */
static enum MHD_Result respond_mid_body(http_req *r, int code, const char *reason, const char *msg) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    r->answered = 1;
    srv_metrics_request(&r->s->mx, r->route_label, r->model_name, code, (it_now_ms() - r->t0) / 1e3, r->model != NULL);
    if (r->s->cfg.tls_cert[0] || !ci) return MHD_NO;
    char buf[1024];
    int n = format_answer(buf, sizeof buf, code, reason, msg);
    if (n < 0) return MHD_NO;
    /* Nothing else is being sent on this connection (its request is still arriving), so
     * the small answer fits the empty socket buffer in one go. */
    if (send(ci->connect_fd, buf, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) != n) return MHD_NO;
    shutdown(ci->connect_fd, SHUT_WR);
    srv_guard_linger(r->s->guard, r->cn);
    return MHD_YES;
}

/* Append a piece of the body; chunked uploads carry no Content-Length, so the limit is
 * also counted as the body comes. */
static enum MHD_Result on_body(http_req *r, const char *data, size_t n) {
    size_t max = (size_t)r->s->cfg.max_body_bytes;
    if (r->len + n > max) {
        r->too_big = 1;
        it_free(r->body);
        r->body = NULL;
        char msg[128];
        snprintf(msg, sizeof msg, "the body exceeds the limit of %lld bytes", r->s->cfg.max_body_bytes);
        return respond_mid_body(r, 413, "Content Too Large", msg);
    }
    if (r->len + n > r->cap) {
        size_t nc = r->cap ? r->cap : 65536;
        while (nc < r->len + n) nc *= 2;
        if (nc > max) nc = max;
        uint8_t *nb = it_realloc(r->body, nc);
        if (!nb) return MHD_NO;
        r->body = nb;
        r->cap = nc;
    }
    memcpy(r->body + r->len, data, n);
    r->len += n;
    return MHD_YES;
}

enum MHD_Result http_access(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                            const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls) {
    srv_server *s = cls;
    http_req *r = *con_cls;
    if (!r) {
        r = it_calloc(1, sizeof *r);
        if (!r) return MHD_NO;
        r->s = s;
        r->conn = c;
        r->t0 = it_now_ms();
        r->route_label = "other";
        r->cn = srv_guard_conn(c);
        *con_cls = r;
        atomic_fetch_add(&s->inflight, 1);
        srv_guard_headers_done(s->guard, r->cn);
        return on_headers(r, url, method, version);
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        srv_guard_body(s->guard, r->cn, n);
        /* the rest of a refused body is discarded, at the body's minimum rate */
        return r->answered ? MHD_YES : on_body(r, upload_data, n);
    }
    if (!r->body_done) {
        r->body_done = 1;
        if (!(r->route && (r->route->flags & HTTP_STREAM))) srv_guard_body_done(s->guard, r->cn);
    }
    if (r->answered) return MHD_YES;
    /* The whole body is in, or the jobs came back. */
    if (r->too_big)
        return http_respond_error(r, 413, "the body exceeds the limit of %lld bytes", s->cfg.max_body_bytes);
    if (!r->submitted) return r->route->handler(r);
    if (r->fail_code) return respond_failed(r, r->fail_code, r->fail_msg);
    if (atomic_load(&r->pending) > 0) return MHD_YES; /* spurious resume */
    return r->finish(r);
}
