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

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Every route, once. Aliases are rows of their own that share the canonical label. */
static const http_route routes[] = {
    /* methods    pattern                                        handler           model auth label */
    { HTTP_GET,  "/v2",                                         api_server_meta,  0, 1, NULL },
    { HTTP_GET,  "/v2/health/live",                             api_live,         0, 0, NULL },
    { HTTP_GET,  "/health",                                     api_live,         0, 0, "/v2/health/live" },
    { HTTP_GET,  "/v2/health/ready",                            api_ready,        0, 0, NULL },
    { HTTP_GET,  "/ready",                                      api_ready,        0, 0, "/v2/health/ready" },
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
    { HTTP_GET,  "/metrics",                                    api_metrics,      0, 1, NULL },
};
#define N_ROUTES (sizeof routes / sizeof routes[0])

/* ---------------------------------------------------------------------------------
 * Matching
 * --------------------------------------------------------------------------------- */

/* Match url against a pattern segment by segment; "{model}" is copied into model (which
 * must hold it), "{version}" matches any non-empty segment. 1 on a match. */
static int match(const char *pattern, const char *url, char *model, size_t mlen) {
    const char *p = pattern, *u = url;
    while (*p && *u) {
        if (*p != '/' || *u != '/') return 0;
        p++;
        u++;
        size_t pn = strcspn(p, "/"), un = strcspn(u, "/");
        if (pn > 2 && p[0] == '{') {
            if (un == 0) return 0;
            if (!strncmp(p, "{model}", pn)) {
                if (un >= mlen) return 0;
                memcpy(model, u, un);
                model[un] = 0;
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
    return 0;
}

/* The row for method and url. NULL: *allow gets the methods the url takes (0: no such
 * path). The captured model name goes to model. */
static const http_route *find_route(const char *method, const char *url, char *model, size_t mlen,
                                    unsigned *allow, const http_route **path_row) {
    unsigned want = method_bit(method);
    *allow = 0;
    *path_row = NULL;
    for (size_t i = 0; i < N_ROUTES; i++) {
        char m[128] = "";
        if (!match(routes[i].pattern, url, m, sizeof m)) continue;
        if (routes[i].methods & want) {
            snprintf(model, mlen, "%s", m);
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
    if (atomic_load(&r->s->draining)) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
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

/* Look a model up and take a reference; "" picks the only (or first) model. */
static srv_model *find_model(srv_server *s, const char *name) {
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
    (void)c;
    (void)toe;
    srv_server *s = cls;
    http_req *r = *con_cls;
    if (!r) return;
    /* A request whose jobs are still queued cannot end here: its connection stays
     * suspended until they complete. */
    atomic_fetch_sub(&s->inflight, 1);
    req_free(r);
    *con_cls = NULL;
}

/* Headers are in: decide everything that does not need the body now, so that a refused
 * upload is refused before it is received. */
static enum MHD_Result on_headers(http_req *r, const char *url, const char *method) {
    srv_server *s = r->s;
    struct MHD_Connection *c = r->conn;
    char name[128] = "";
    unsigned allow;
    const http_route *path_row;
    r->route = find_route(method, url, name, sizeof name, &allow, &path_row);
    if (!r->route) {
        if (!path_row) return http_respond_error(r, 404, "no route %s %s", method, url);
        r->route_label = label_of(path_row);
        char allow_s[16];
        snprintf(allow_s, sizeof allow_s, "%s%s%s", allow & HTTP_GET ? "GET" : "",
                 allow == (HTTP_GET | HTTP_POST) ? ", " : "", allow & HTTP_POST ? "POST" : "");
        return http_respond_error_h(r, 405, "method not allowed", MHD_HTTP_HEADER_ALLOW, allow_s);
    }
    r->route_label = label_of(r->route);
    if (r->route->needs_auth && !srv_auth_ok(s, c))
        return http_respond_error(r, 401, "a valid bearer token is required (Authorization: Bearer TOKEN)");
    if (r->route->needs_model) {
        if (!strstr(r->route->pattern, "{model}")) {
            const char *m = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "model");
            snprintf(name, sizeof name, "%s", m ? m : "");
        }
        /* The model label is set only once the name is a served model's, so that clients
         * cannot grow the metrics with names of their own. */
        if (!atomic_load(&s->ready))
            return http_respond_error_h(r, 503, "the models are loading; retry shortly", MHD_HTTP_HEADER_RETRY_AFTER, "1");
        r->model = find_model(s, name);
        if (!r->model && atomic_load(&s->draining))
            return http_respond_error_h(r, 503, "the server is shutting down", MHD_HTTP_HEADER_RETRY_AFTER, "1");
        if (!r->model) return http_respond_error(r, 404, "unknown model '%s': GET /v1/models lists them", name);
        snprintf(r->model_name, sizeof r->model_name, "%s", r->model->name);
        if (!api_version_known(url)) return http_respond_error(r, 404, "unknown version of model '%s': it has one, \"1\"", name);
    }
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl) {
        char *e;
        unsigned long long v = strtoull(cl, &e, 10);
        if (*e == 0 && v > (unsigned long long)s->cfg.max_body_bytes)
            return http_respond_error(r, 413, "the body of %llu bytes exceeds the limit of %lld bytes", v,
                                      s->cfg.max_body_bytes);
    }
    return MHD_YES;
}

/* Append a piece of the body; chunked uploads carry no Content-Length, so the limit is
 * also counted as the body comes. */
static enum MHD_Result on_body(http_req *r, const char *data, size_t n) {
    size_t max = (size_t)r->s->cfg.max_body_bytes;
    if (r->too_big) return MHD_YES;
    if (r->len + n > max) {
        r->too_big = 1;
        it_free(r->body);
        r->body = NULL;
        return MHD_YES;
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
    (void)version;
    srv_server *s = cls;
    http_req *r = *con_cls;
    if (!r) {
        r = it_calloc(1, sizeof *r);
        if (!r) return MHD_NO;
        r->s = s;
        r->conn = c;
        r->t0 = it_now_ms();
        r->route_label = "other";
        *con_cls = r;
        atomic_fetch_add(&s->inflight, 1);
        return on_headers(r, url, method);
    }
    if (r->answered) {
        *upload_data_size = 0; /* discard the rest of a refused body */
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        return on_body(r, upload_data, n);
    }
    /* The whole body is in, or the jobs came back. */
    if (r->too_big)
        return http_respond_error(r, 413, "the body exceeds the limit of %lld bytes", s->cfg.max_body_bytes);
    if (!r->submitted) return r->route->handler(r);
    if (r->fail_code) return respond_failed(r, r->fail_code, r->fail_msg);
    if (atomic_load(&r->pending) > 0) return MHD_YES; /* spurious resume */
    return r->finish(r);
}
