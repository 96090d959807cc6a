/* The HTTP layer on libmicrohttpd: routing, request bodies, authentication, responses.
 *
 * libmicrohttpd runs a pool of epoll threads. A request that needs the model is decoded
 * on the pool thread, submitted to the model's batcher, and its connection suspended;
 * the worker that completes the last of its jobs resumes it, and the pool thread writes
 * the answer. So a handful of HTTP threads serve any number of waiting clients, and a
 * full queue is answered at once (503) instead of holding a thread.
 *
 * Routes (aliases share handlers):
 *   GET  /v2  /v2/health/live  /v2/health/ready  /health  /ready  /metrics  /v1/models
 *   GET  /v2/models/{m}[/versions/{v}]  /v2/models/{m}[/versions/{v}]/ready
 *   POST /v2/models/{m}[/versions/{v}]/infer
 *   POST /v1/detect  /predict  /v1/detect/batch  /predict/batch  /v1/models/reload */
#include "server/server.h"

#include "core/core.h"
#include "server/reqparse.h"
#include "vision/image.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define SRV_MAX_FILES 64      /* images per /v1/detect/batch request */
#define SRV_MAX_TOKENS 64
#define SRV_MAX_IMAGE_PIXELS ((size_t)100 * 1000 * 1000)

struct srv_server {
    srv_config cfg;
    srv_metrics mx;
    struct MHD_Daemon *d;
    int port;
    pthread_rwlock_t reg_lock;
    srv_registry *reg;
    atomic_int ready;
    atomic_int inflight;
    atomic_int draining;
    pthread_mutex_t reload_mu;
    char tokens[SRV_MAX_TOKENS][128];
    int n_tokens;
    char *tls_key, *tls_cert;
    double cpu_last;
    double start_unix;
};

enum { R_NONE, R_V2, R_LIVE, R_READY, R_METRICS, R_MODELS, R_MODEL_META, R_MODEL_READY, R_INFER, R_DETECT,
       R_DETECT_BATCH, R_RELOAD, R_BACKEND_GET, R_BACKEND_SET };

typedef struct http_req {
    srv_server *s;
    struct MHD_Connection *conn;
    int route;
    char route_label[32];
    char model_name[128];
    double t0;
    uint8_t *body;
    size_t len, cap;
    int too_big;
    int answered;            /* a response was queued */
    /* waiting on the batcher */
    srv_model *model;
    int n_jobs;
    srv_job *jobs;
    atomic_int pending;
    int submitted;
    int fail_code;           /* set when submission failed after suspending */
    char fail_msg[256];
    /* inputs owned by the request */
    it_image imgs[SRV_MAX_FILES];
    int n_imgs;
    char filenames[SRV_MAX_FILES][128];
    double ms_decode[SRV_MAX_FILES];
    ks_request ks;
    int have_ks;
    int ks_uint8;            /* image tensor input */
} http_req;

/* ---------------------------------------------------------------------------------
 * Responses
 * --------------------------------------------------------------------------------- */

static const char *model_label(const http_req *r) {
    return r->model_name[0] ? r->model_name : "";
}

static void record(http_req *r, int code) {
    srv_server *s = r->s;
    char cs[8];
    snprintf(cs, sizeof cs, "%d", code);
    const char *lv[] = { r->route_label, model_label(r), cs };
    prom_inc(s->mx.requests, lv, 1);
    double secs = (it_now_ms() - r->t0) / 1e3;
    const char *lv2[] = { r->route_label, model_label(r) };
    prom_observe(s->mx.request_seconds, lv2, secs);
    if (r->model && secs > s->mx.sla_s) {
        const char *lv3[] = { model_label(r) };
        prom_inc(s->mx.sla_violations, lv3, 1);
    }
}

/* Queue a response that takes ownership of body (malloc'd, may be NULL when len == 0). */
static enum MHD_Result respond_raw(http_req *r, int code, const char *ctype, char *body, size_t len,
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
    record(r, code);
    return rc;
}

static enum MHD_Result respond_json(http_req *r, int code, json_t *j) {
    char *txt = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(9));
    json_decref(j);
    if (!txt) return respond_raw(r, 500, "text/plain", NULL, 0, NULL, NULL);
    return respond_raw(r, code, "application/json", txt, strlen(txt), NULL, NULL);
}

static enum MHD_Result respond_error_h(http_req *r, int code, const char *msg, const char *h, const char *v) {
    json_t *j = json_pack("{s:s}", "error", msg);
    char *txt = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(9)) : NULL;
    json_decref(j);
    return respond_raw(r, code, "application/json", txt, txt ? strlen(txt) : 0, h, v);
}

static enum MHD_Result respond_error(http_req *r, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static enum MHD_Result respond_error(http_req *r, int code, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return respond_error_h(r, code, msg, NULL, NULL);
}

/* ---------------------------------------------------------------------------------
 * Models and tokens
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

static int load_tokens(srv_server *s, char *err, size_t errlen) {
    s->n_tokens = 0;
    if (!s->cfg.tokens_file[0]) return 0;
    FILE *f = fopen(s->cfg.tokens_file, "r");
    if (!f) {
        snprintf(err, errlen, "%s: cannot read the tokens file: %s", s->cfg.tokens_file, strerror(errno));
        return -1;
    }
    char line[256];
    while (fgets(line, sizeof line, f)) {
        size_t n = strcspn(line, "\r\n");
        line[n] = 0;
        char *t = line;
        while (*t == ' ' || *t == '\t') t++;
        if (!*t || *t == '#') continue;
        if (strlen(t) >= sizeof s->tokens[0] || strlen(t) < 8) {
            fclose(f);
            snprintf(err, errlen, "%s: a token must have 8 to 127 characters", s->cfg.tokens_file);
            return -1;
        }
        if (s->n_tokens == SRV_MAX_TOKENS) break;
        snprintf(s->tokens[s->n_tokens++], sizeof s->tokens[0], "%s", t);
    }
    fclose(f);
    if (s->n_tokens == 0) {
        snprintf(err, errlen, "%s: no tokens in the file (authentication would refuse everything)",
                 s->cfg.tokens_file);
        return -1;
    }
    return 0;
}

/* Compare in time independent of where the strings differ. */
static int token_eq(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    unsigned char d = (unsigned char)(la != lb);
    for (size_t i = 0; i < la; i++) d |= (unsigned char)(a[i] ^ b[i % (lb ? lb : 1)]);
    return d == 0;
}

static int authorized(srv_server *s, struct MHD_Connection *c) {
    if (s->n_tokens == 0) return 1;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncasecmp(h, "Bearer ", 7) != 0) return 0;
    h += 7;
    while (*h == ' ') h++;
    int ok = 0;
    for (int i = 0; i < s->n_tokens; i++) ok |= token_eq(h, s->tokens[i]);
    return ok;
}

/* ---------------------------------------------------------------------------------
 * Routing
 * --------------------------------------------------------------------------------- */

static int classify(const char *method, const char *url, char *model, size_t mlen, const char **want_method) {
    model[0] = 0;
    *want_method = "GET";
    if (!strcmp(url, "/v2")) return R_V2;
    if (!strcmp(url, "/v2/health/live") || !strcmp(url, "/health")) return R_LIVE;
    if (!strcmp(url, "/v2/health/ready") || !strcmp(url, "/ready")) return R_READY;
    if (!strcmp(url, "/metrics")) return R_METRICS;
    if (!strcmp(url, "/v1/models")) return R_MODELS;
    if (!strcmp(url, "/v1/backend")) {
        if (!strcmp(method, "POST")) {
            *want_method = "POST";
            return R_BACKEND_SET;
        }
        return R_BACKEND_GET;
    }
    *want_method = "POST";
    if (!strcmp(url, "/v1/detect") || !strcmp(url, "/predict")) return R_DETECT;
    if (!strcmp(url, "/v1/detect/batch") || !strcmp(url, "/predict/batch")) return R_DETECT_BATCH;
    if (!strcmp(url, "/v1/models/reload")) return R_RELOAD;
    if (!strncmp(url, "/v2/models/", 11)) {
        const char *p = url + 11;
        size_t n = strcspn(p, "/");
        if (n == 0 || n >= mlen) return R_NONE;
        memcpy(model, p, n);
        model[n] = 0;
        p += n;
        if (!strncmp(p, "/versions/", 10)) { /* one version per model: any number names it */
            p += 10;
            size_t v = strcspn(p, "/");
            if (v == 0) return R_NONE;
            p += v;
        }
        if (!*p) { *want_method = "GET"; return R_MODEL_META; }
        if (!strcmp(p, "/ready")) { *want_method = "GET"; return R_MODEL_READY; }
        if (!strcmp(p, "/infer")) return R_INFER;
    }
    return R_NONE;
}

static const char *route_label_of(int r) {
    switch (r) {
    case R_V2: return "/v2";
    case R_LIVE: return "live";
    case R_READY: return "ready";
    case R_METRICS: return "/metrics";
    case R_MODELS: return "/v1/models";
    case R_MODEL_META: return "/v2/models/meta";
    case R_MODEL_READY: return "/v2/models/ready";
    case R_INFER: return "/v2/models/infer";
    case R_DETECT: return "/v1/detect";
    case R_DETECT_BATCH: return "/v1/detect/batch";
    case R_RELOAD: return "/v1/models/reload";
    case R_BACKEND_GET:
    case R_BACKEND_SET: return "/v1/backend";
    default: return "other";
    }
}

/* ---------------------------------------------------------------------------------
 * GET handlers
 * --------------------------------------------------------------------------------- */

static json_t *dims_json(const int64_t *d, int n) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, json_integer(d[i]));
    return a;
}

static enum MHD_Result get_models(http_req *r) {
    srv_server *s = r->s;
    json_t *arr = json_array();
    pthread_rwlock_rdlock(&s->reg_lock);
    for (int i = 0; s->reg && i < s->reg->n; i++) {
        srv_model *m = s->reg->models[i];
        const itscam_model_info *info = itscam_model_get_info(m->model);
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(m->name));
        json_object_set_new(o, "input", dims_json(info->input_dims, 4));
        json_object_set_new(o, "imgsz", json_pack("[ii]", info->imgsz[0], info->imgsz[1]));
        json_object_set_new(o, "classes", json_integer(info->num_classes));
        json_object_set_new(o, "precision", json_string(srv_batcher_precision(m->batcher)));
        json_object_set_new(o, "backend", json_string(srv_batcher_backend(m->batcher)));
        json_object_set_new(o, "active_backend", json_string(srv_batcher_active_backend(m->batcher)));
        json_object_set_new(o, "max_batch", json_integer(srv_batcher_max_batch(m->batcher)));
        json_object_set_new(o, "ready", json_boolean(atomic_load(&m->ready)));
        json_array_append_new(arr, o);
    }
    pthread_rwlock_unlock(&s->reg_lock);
    return respond_json(r, 200, json_pack("{s:o}", "models", arr));
}

static enum MHD_Result get_model_meta(http_req *r) {
    srv_model *m = r->model;
    const itscam_model_info *info = itscam_model_get_info(m->model);
    json_t *in = json_pack("{s:s,s:s,s:o}", "name", info->input_name ? info->input_name : "images", "datatype", "FP32",
                           "shape", dims_json(info->input_dims, 4));
    json_t *out = json_pack("{s:s,s:s,s:o}", "name", info->output_name ? info->output_name : "output0", "datatype",
                            "FP32", "shape", dims_json(m->out_dims, m->out_ndim));
    json_t *o = json_pack("{s:s,s:[s],s:s,s:[o],s:[o]}", "name", m->name, "versions", "1", "platform", "onnx",
                          "inputs", in, "outputs", out);
    return respond_json(r, 200, o);
}

/* GET /v1/backend: the configured backend and, for cuda, its breaker. */
static enum MHD_Result get_backend(http_req *r) {
    srv_server *s = r->s;
    json_t *o = json_pack("{s:s}", "backend", s->cfg.backend);
    itscam_breaker_info bi;
    if (!strcmp(s->cfg.backend, "cuda") && itscam_breaker_get("cuda", &bi) == ITSCAM_OK) {
        json_object_set_new(o, "breaker",
                            json_pack("{s:s,s:b,s:i,s:i,s:I,s:I,s:I,s:I,s:f,s:{s:i,s:i,s:i,s:i}}", "state",
                                      itscam_breaker_state_name(bi.state), "forced_cpu", bi.forced_cpu,
                                      "consecutive_failures", bi.consecutive_failures, "consecutive_oom",
                                      bi.consecutive_oom, "failures", (json_int_t)bi.failures, "oom_failures",
                                      (json_int_t)bi.oom_failures, "successes", (json_int_t)bi.successes,
                                      "fallback_runs", (json_int_t)bi.fallback_runs, "seconds_in_state",
                                      bi.ms_in_state / 1e3, "config", "failure_threshold",
                                      bi.config.failure_threshold, "oom_threshold", bi.config.oom_threshold,
                                      "open_ms", bi.config.open_ms, "half_open_probes", bi.config.half_open_probes));
    }
    json_t *models = json_array();
    pthread_rwlock_rdlock(&s->reg_lock);
    for (int i = 0; s->reg && i < s->reg->n; i++)
        json_array_append_new(models, json_pack("{s:s,s:s}", "name", s->reg->models[i]->name, "active_backend",
                                                srv_batcher_active_backend(s->reg->models[i]->batcher)));
    pthread_rwlock_unlock(&s->reg_lock);
    json_object_set_new(o, "models", models);
    return respond_json(r, 200, o);
}

/* POST /v1/backend {"force_cpu": true|false}: switch the GPU backend to the CPU by hand
 * and back (token-protected like every route but health). */
static enum MHD_Result set_backend(http_req *r) {
    json_error_t je;
    json_t *j = json_loadb((const char *)r->body, r->len, 0, &je);
    if (!j) return respond_error(r, 400, "malformed JSON at byte %d: %s", je.position, je.text);
    json_t *f = json_object_get(j, "force_cpu");
    if (!json_is_boolean(f)) {
        json_decref(j);
        return respond_error(r, 400, "expected {\"force_cpu\": true|false}");
    }
    int force = json_is_true(f);
    json_decref(j);
    if (strcmp(r->s->cfg.backend, "cuda"))
        return respond_error(r, 409, "backend '%s' has no GPU to switch from", r->s->cfg.backend);
    if (itscam_breaker_force("cuda", force) != ITSCAM_OK) return respond_error(r, 500, "%s", itscam_last_error());
    return get_backend(r);
}

static void collect(prom_registry *reg, void *user) {
    (void)reg;
    srv_server *s = user;
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0) {
        double cpu = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
                     ru.ru_stime.tv_usec / 1e6;
        if (cpu > s->cpu_last) {
            prom_inc(s->mx.cpu_seconds, NULL, cpu - s->cpu_last);
            s->cpu_last = cpu;
        }
    }
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        long pages_total, pages_res;
        if (fscanf(f, "%ld %ld", &pages_total, &pages_res) == 2)
            prom_set(s->mx.rss_bytes, NULL, (double)pages_res * (double)sysconf(_SC_PAGESIZE));
        fclose(f);
    }
    prom_set(s->mx.start_time, NULL, s->start_unix);
    prom_set(s->mx.inflight, NULL, atomic_load(&s->inflight));
    if (!strcmp(s->cfg.backend, "cuda")) {
        itscam_breaker_info bi;
        if (itscam_breaker_get("cuda", &bi) == ITSCAM_OK) {
            itscam_breaker_info *last = &s->mx.breaker_last;
            const char *bl[] = { "cuda" };
            prom_set(s->mx.breaker_forced, bl, bi.forced_cpu);
            for (int a = 0; a < 3; a++)
                for (int b = 0; b < 3; b++)
                    if (bi.transitions[a][b] > last->transitions[a][b]) {
                        const char *lv[] = { "cuda", itscam_breaker_state_name((itscam_breaker_state)a),
                                             itscam_breaker_state_name((itscam_breaker_state)b) };
                        prom_inc(s->mx.breaker_transitions, lv, (double)(bi.transitions[a][b] - last->transitions[a][b]));
                    }
            const char *le[] = { "cuda", "error" }, *lo[] = { "cuda", "oom" };
            uint64_t errs = bi.failures - bi.oom_failures, last_errs = last->failures - last->oom_failures;
            if (errs > last_errs) prom_inc(s->mx.backend_failures, le, (double)(errs - last_errs));
            if (bi.oom_failures > last->oom_failures)
                prom_inc(s->mx.backend_failures, lo, (double)(bi.oom_failures - last->oom_failures));
            if (bi.fallback_runs > last->fallback_runs)
                prom_inc(s->mx.fallback_runs, bl, (double)(bi.fallback_runs - last->fallback_runs));
            *last = bi;
            pthread_rwlock_rdlock(&s->reg_lock);
            for (int i = 0; s->reg && i < s->reg->n; i++) {
                const char *lv[] = { s->reg->models[i]->name, "cuda" };
                prom_set(s->mx.breaker_state, lv, bi.state);
            }
            pthread_rwlock_unlock(&s->reg_lock);
        }
    }
    static const char *const prio[] = { "urgent", "normal", "batch" };
    pthread_rwlock_rdlock(&s->reg_lock);
    for (int i = 0; s->reg && i < s->reg->n; i++)
        for (int p = 0; p < SRV_NPRIO; p++) {
            const char *lv[] = { s->reg->models[i]->name, prio[p] };
            prom_set(s->mx.queue_depth, lv, srv_batcher_depth(s->reg->models[i]->batcher, p));
        }
    pthread_rwlock_unlock(&s->reg_lock);
}

/* ---------------------------------------------------------------------------------
 * Detection requests
 * --------------------------------------------------------------------------------- */

static void job_done(srv_job *j, void *arg) {
    http_req *r = arg;
    (void)j;
    if (atomic_fetch_sub(&r->pending, 1) == 1) MHD_resume_connection(r->conn);
}

/* Query parameters shared by /v1/detect and /v1/detect/batch into a template job. */
static int query_params(http_req *r, srv_job *t, char *err, size_t n) {
    srv_server *s = r->s;
    struct MHD_Connection *c = r->conn;
    t->params = itscam_detector_default_params();
    t->params.conf = s->cfg.conf;
    t->params.iou = s->cfg.iou;
    t->params.max_det = s->cfg.max_det;
    t->prio = SRV_PRIO_NORMAL;
    double timeout = s->cfg.timeout_ms;
    const char *v;
    if ((v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "conf"))) {
        char *e;
        double x = strtod(v, &e);
        if (e == v || *e || !(x >= 0 && x <= 1)) return snprintf(err, n, "conf: expected a number in [0,1], got '%s'", v), -1;
        t->params.conf = (float)x;
    }
    if ((v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "iou"))) {
        char *e;
        double x = strtod(v, &e);
        if (e == v || *e || !(x >= 0 && x <= 1)) return snprintf(err, n, "iou: expected a number in [0,1], got '%s'", v), -1;
        t->params.iou = (float)x;
    }
    if ((v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "max_det"))) {
        char *e;
        long x = strtol(v, &e, 10);
        if (e == v || *e || x < 1 || x > 300) return snprintf(err, n, "max_det: expected an integer in [1,300], got '%s'", v), -1;
        t->params.max_det = (int)x;
    }
    if ((v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "classes")) && *v) {
        int k = srv_parse_classes(v, t->classes, SRV_MAX_CLASSES);
        if (k < 0) return snprintf(err, n, "classes: expected class ids like 0,2,5, got '%s'", v), -1;
        t->params.num_classes_filter = k;
    }
    if ((v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "agnostic")))
        t->params.agnostic_nms = !strcmp(v, "1") || !strcmp(v, "true");
    if ((v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "priority"))) {
        int p = srv_parse_priority(v);
        if (p < 0) return snprintf(err, n, "priority: expected urgent, normal or batch, got '%s'", v), -1;
        t->prio = p;
    }
    if ((v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "timeout_ms"))) {
        char *e;
        long x = strtol(v, &e, 10);
        if (e == v || *e || x < 1 || x > 3600000) return snprintf(err, n, "timeout_ms: expected milliseconds in [1,3600000], got '%s'", v), -1;
        timeout = (double)x;
    }
    t->deadline_ms = r->t0 + timeout;
    return 0;
}

static int is_ctype(const char *ct, const char *want) {
    size_t n = strlen(want);
    return ct && !strncasecmp(ct, want, n) && (ct[n] == 0 || ct[n] == ';' || ct[n] == ' ');
}

/* Decode one image into r->imgs[r->n_imgs]; 0, or -1 with the decoder's reason. */
static int decode_one(http_req *r, const uint8_t *data, size_t len, const char *fname, char *err, size_t n) {
    double t = it_now_ms();
    itscam_status st = it_image_decode(data, len, SRV_MAX_IMAGE_PIXELS, &r->imgs[r->n_imgs]);
    if (st != ITSCAM_OK) {
        snprintf(err, n, "%s%scannot decode the image: %s", fname && *fname ? fname : "",
                 fname && *fname ? ": " : "", itscam_last_error());
        return -1;
    }
    r->ms_decode[r->n_imgs] = it_now_ms() - t;
    snprintf(r->filenames[r->n_imgs], sizeof r->filenames[0], "%s", fname ? fname : "");
    const char *lv[] = { model_label(r) };
    prom_observe(r->s->mx.decode_seconds, lv, r->ms_decode[r->n_imgs] / 1e3);
    r->n_imgs++;
    return 0;
}

static enum MHD_Result submit_jobs(http_req *r) {
    /* Suspend first: a worker may finish the jobs before this function returns. */
    atomic_store(&r->pending, r->n_jobs);
    srv_job *ptrs[SRV_MAX_FILES];
    for (int i = 0; i < r->n_jobs; i++) ptrs[i] = &r->jobs[i];
    r->submitted = 1;
    MHD_suspend_connection(r->conn);
    int rc = srv_batcher_submit_all(r->model->batcher, ptrs, r->n_jobs);
    if (rc != 0) {
        /* Nothing was queued: answer 503 at once (the connection is resumed below). */
        static const char *const level[] = { "urgent", "normal", "batch" };
        r->fail_code = 503;
        if (rc == -1)
            snprintf(r->fail_msg, sizeof r->fail_msg, "the %s queue of model '%s' is full; retry later",
                     level[r->jobs[0].prio], r->model->name);
        else
            snprintf(r->fail_msg, sizeof r->fail_msg, "model '%s' is being unloaded; retry later", r->model->name);
        atomic_store(&r->pending, 0);
        MHD_resume_connection(r->conn);
    }
    return MHD_YES;
}

static enum MHD_Result start_detect(http_req *r, int batch) {
    struct MHD_Connection *c = r->conn;
    const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    char err[512];
    srv_job tmpl;
    memset(&tmpl, 0, sizeof tmpl);
    if (query_params(r, &tmpl, err, sizeof err) != 0) return respond_error(r, 400, "%s", err);
    if (r->len == 0) return respond_error(r, 400, "the request has no body: send an image or a multipart form");
    if (is_ctype(ct, "multipart/form-data")) {
        mp_part parts[SRV_MAX_FILES];
        int np = 0;
        if (mp_parse(ct, r->body, r->len, parts, SRV_MAX_FILES, &np, err, sizeof err) != 0)
            return respond_error(r, 400, "multipart body: %s", err);
        for (int i = 0; i < np; i++) {
            if (strcmp(parts[i].name, "file") && strcmp(parts[i].name, "files") && strcmp(parts[i].name, "image"))
                continue;
            if (!batch && r->n_imgs == 1) return respond_error(r, 400, "/v1/detect takes one file; use /v1/detect/batch");
            if (decode_one(r, parts[i].data, parts[i].len, parts[i].filename, err, sizeof err) != 0)
                return respond_error(r, 422, "%s", err);
        }
        if (r->n_imgs == 0) return respond_error(r, 400, "the form has no field named 'file'");
    } else if (is_ctype(ct, "image/jpeg") || is_ctype(ct, "image/png") || is_ctype(ct, "application/octet-stream") ||
               is_ctype(ct, "image/jpg")) {
        if (decode_one(r, r->body, r->len, "", err, sizeof err) != 0) return respond_error(r, 422, "%s", err);
    } else {
        return respond_error(r, 415, "unsupported content type '%s': send image/jpeg, image/png or multipart/form-data",
                             ct ? ct : "(none)");
    }
    r->jobs = it_calloc((size_t)r->n_imgs, sizeof *r->jobs);
    if (!r->jobs) return respond_error(r, 500, "out of memory");
    r->n_jobs = r->n_imgs;
    for (int i = 0; i < r->n_imgs; i++) {
        srv_job *j = &r->jobs[i];
        *j = tmpl;
        j->params.classes = j->classes;
        j->kind = SRV_JOB_IMAGE;
        j->want_dets = 1;
        j->img = (itscam_image){ .data = r->imgs[i].data, .width = r->imgs[i].width, .height = r->imgs[i].height,
                                 .stride = r->imgs[i].stride, .format = ITSCAM_PIX_BGR8 };
        j->done = job_done;
        j->done_arg = r;
    }
    return submit_jobs(r);
}

static json_t *dets_json(const itscam_result *res) {
    json_t *arr = json_array();
    for (int k = 0; k < res->count; k++) {
        const itscam_detection *d = &res->dets[k];
        json_t *box = json_pack("[ffff]", round(d->box[0] * 100) / 100, round(d->box[1] * 100) / 100,
                                round(d->box[2] * 100) / 100, round(d->box[3] * 100) / 100);
        json_array_append_new(arr, json_pack("{s:i,s:s,s:f,s:o}", "class_id", d->class_id, "class",
                                             d->class_name ? d->class_name : "", "score",
                                             round(d->score * 1e6) / 1e6, "box", box));
    }
    return arr;
}

static json_t *image_json(http_req *r, int i, double total_ms) {
    srv_job *j = &r->jobs[i];
    json_t *o = json_object();
    if (r->filenames[i][0]) json_object_set_new(o, "filename", json_string(r->filenames[i]));
    json_object_set_new(o, "width", json_integer(j->res.width));
    json_object_set_new(o, "height", json_integer(j->res.height));
    json_object_set_new(o, "detections", dets_json(&j->res));
    json_object_set_new(o, "timings_ms",
                        json_pack("{s:f,s:f,s:f,s:f,s:f,s:f}", "queue", round(j->ms_queue * 1000) / 1000, "decode",
                                  round(r->ms_decode[i] * 1000) / 1000, "preprocess",
                                  round(j->ms_preprocess * 1000) / 1000, "inference",
                                  round(j->ms_inference * 1000) / 1000, "postprocess",
                                  round(j->ms_postprocess * 1000) / 1000, "total", round(total_ms * 1000) / 1000));
    json_object_set_new(o, "batch_size", json_integer(j->batch_size));
    return o;
}

/* Map the first failed job to a status; 0 when every job succeeded. */
static int jobs_status(http_req *r, const char **msg) {
    for (int i = 0; i < r->n_jobs; i++) {
        srv_job *j = &r->jobs[i];
        if (j->outcome == SRV_DONE_OK) continue;
        *msg = j->err;
        if (j->outcome == SRV_DONE_TIMEOUT) return 504;
        if (j->outcome == SRV_DONE_SHUTDOWN) return 503;
        return j->st == ITSCAM_ERR_IMAGE ? 422 : j->st == ITSCAM_ERR_INVALID_ARG ? 400 : 500;
    }
    return 0;
}

static enum MHD_Result finish_detect(http_req *r, int batch) {
    const char *msg = "";
    int code = jobs_status(r, &msg);
    if (code) return respond_error(r, code, "%s", msg);
    double total = it_now_ms() - r->t0;
    json_t *o;
    if (!batch) {
        o = image_json(r, 0, total);
        json_object_set_new(o, "model", json_string(r->model->name));
    } else {
        json_t *arr = json_array();
        for (int i = 0; i < r->n_jobs; i++) json_array_append_new(arr, image_json(r, i, total));
        o = json_pack("{s:s,s:o}", "model", r->model->name, "results", arr);
    }
    return respond_json(r, 200, o);
}

/* ---------------------------------------------------------------------------------
 * KServe v2 infer
 * --------------------------------------------------------------------------------- */

static enum MHD_Result start_infer(http_req *r) {
    struct MHD_Connection *c = r->conn;
    const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (ct && !is_ctype(ct, "application/json") && !is_ctype(ct, "application/octet-stream") &&
        !is_ctype(ct, "application/vnd.sagemaker-triton.binary+json"))
        return respond_error(r, 415, "unsupported content type '%s': send application/json or application/octet-stream", ct);
    size_t json_len = r->len;
    const char *hl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Inference-Header-Content-Length");
    if (hl) {
        char *e;
        errno = 0;
        unsigned long long v = strtoull(hl, &e, 10);
        if (errno || e == hl || *e || v > r->len)
            return respond_error(r, 400, "Inference-Header-Content-Length: '%s' is not a length within the body of %zu bytes", hl, r->len);
        json_len = (size_t)v;
    }
    char err[512];
    if (ks_parse_infer(r->body, r->len, json_len, &r->ks, err, sizeof err) != 0) {
        r->have_ks = 1;
        return respond_error(r, 400, "%s", err);
    }
    r->have_ks = 1;
    const itscam_model_info *info = itscam_model_get_info(r->model->model);
    int H = info->imgsz[0], W = info->imgsz[1];
    ks_input *in = &r->ks.inputs[0];
    srv_job tmpl;
    memset(&tmpl, 0, sizeof tmpl);
    tmpl.params = itscam_detector_default_params();
    tmpl.params.conf = r->ks.conf >= 0 ? r->ks.conf : r->s->cfg.conf;
    tmpl.params.iou = r->ks.iou >= 0 ? r->ks.iou : r->s->cfg.iou;
    tmpl.params.max_det = r->ks.max_det > 0 ? (r->ks.max_det > 300 ? 300 : r->ks.max_det) : r->s->cfg.max_det;
    tmpl.prio = r->ks.priority >= 0 ? r->ks.priority : SRV_PRIO_NORMAL;
    tmpl.deadline_ms = r->t0 + (r->ks.timeout_ms > 0 ? r->ks.timeout_ms : r->s->cfg.timeout_ms);
    tmpl.want_dets = r->ks.detections;
    tmpl.want_raw = !r->ks.detections;
    tmpl.done = job_done;
    tmpl.done_arg = r;
    int n;
    if (in->datatype == KS_FP32) {
        if (in->ndim != 4 || in->shape[1] != 3 || in->shape[2] != H || in->shape[3] != W)
            return respond_error(r, 400, "input '%s': FP32 input must have shape [N,3,%d,%d]", in->name, H, W);
        n = (int)in->shape[0];
    } else if (in->datatype == KS_UINT8) {
        int nd = in->ndim;
        if (!((nd == 3 && in->shape[2] == 3) || (nd == 4 && in->shape[3] == 3)))
            return respond_error(r, 400, "input '%s': UINT8 input must be an HWC image [H,W,3] or [N,H,W,3] (RGB)", in->name);
        n = nd == 4 ? (int)in->shape[0] : 1;
        r->ks_uint8 = 1;
    } else {
        return respond_error(r, 400, "input '%s': datatype must be FP32 (the model's input) or UINT8 (an image)", in->name);
    }
    if (n < 1 || n > SRV_MAX_FILES) return respond_error(r, 400, "batch of %d: between 1 and %d items per request", n, SRV_MAX_FILES);
    r->jobs = it_calloc((size_t)n, sizeof *r->jobs);
    if (!r->jobs) return respond_error(r, 500, "out of memory");
    r->n_jobs = n;
    for (int i = 0; i < n; i++) {
        srv_job *j = &r->jobs[i];
        *j = tmpl;
        j->params.classes = j->classes;
        if (r->ks_uint8) {
            int h = (int)in->shape[in->ndim - 3], w = (int)in->shape[in->ndim - 2];
            if (h < 1 || w < 1) return respond_error(r, 400, "input '%s': empty image", in->name);
            j->kind = SRV_JOB_IMAGE;
            j->img = (itscam_image){ .data = (const uint8_t *)in->data + (size_t)i * (size_t)h * (size_t)w * 3,
                                     .width = w, .height = h, .stride = w * 3, .format = ITSCAM_PIX_RGB8 };
        } else {
            j->kind = SRV_JOB_TENSOR;
            j->tensor = (const float *)in->data + (size_t)i * 3 * (size_t)H * (size_t)W;
            j->dims[0] = 1;
            j->dims[1] = 3;
            j->dims[2] = H;
            j->dims[3] = W;
        }
    }
    return submit_jobs(r);
}

static enum MHD_Result finish_infer(http_req *r) {
    const char *msg = "";
    int code = jobs_status(r, &msg);
    if (code) return respond_error(r, code, "%s", msg);
    const itscam_model_info *info = itscam_model_get_info(r->model->model);
    json_t *o = json_object();
    json_object_set_new(o, "model_name", json_string(r->model->name));
    json_object_set_new(o, "model_version", json_string("1"));
    if (r->ks.id[0]) json_object_set_new(o, "id", json_string(r->ks.id));
    json_t *outs = json_array();
    /* The binary payload (raw head, or detections) follows the JSON when asked for. */
    uint8_t *bin = NULL;
    size_t bin_len = 0;
    if (!r->ks.detections) {
        srv_job *j0 = &r->jobs[0];
        size_t per = 1;
        for (int k = 1; k < j0->raw_ndim; k++) per *= (size_t)j0->raw_dims[k];
        json_t *shape = json_array();
        json_array_append_new(shape, json_integer(r->n_jobs));
        for (int k = 1; k < j0->raw_ndim; k++) json_array_append_new(shape, json_integer(j0->raw_dims[k]));
        json_t *t = json_pack("{s:s,s:s,s:o}", "name", info->output_name ? info->output_name : "output0", "datatype",
                              "FP32", "shape", shape);
        size_t total = per * (size_t)r->n_jobs;
        if (r->ks.binary_output) {
            bin_len = total * sizeof(float);
            bin = malloc(bin_len ? bin_len : 1);
            if (!bin) {
                json_decref(t);
                json_decref(outs);
                json_decref(o);
                return respond_error(r, 500, "out of memory");
            }
            for (int i = 0; i < r->n_jobs; i++) memcpy(bin + (size_t)i * per * sizeof(float), r->jobs[i].raw, per * sizeof(float));
            json_object_set_new(t, "parameters", json_pack("{s:I}", "binary_data_size", (json_int_t)bin_len));
        } else {
            json_t *data = json_array();
            for (int i = 0; i < r->n_jobs; i++)
                for (size_t k = 0; k < per; k++) json_array_append_new(data, json_real(r->jobs[i].raw[k]));
            json_object_set_new(t, "data", data);
        }
        json_array_append_new(outs, t);
    } else {
        /* Detections as a [K,7] tensor (batch index, x1, y1, x2, y2, score, class), as
         * ONNX's NonMaxSuppression-style outputs, plus readable objects per item. */
        int K = 0;
        for (int i = 0; i < r->n_jobs; i++) K += r->jobs[i].res.count;
        json_t *data = json_array();
        json_t *per_item = json_array();
        for (int i = 0; i < r->n_jobs; i++) {
            const itscam_result *res = &r->jobs[i].res;
            for (int k = 0; k < res->count; k++) {
                const itscam_detection *d = &res->dets[k];
                double row[7] = { i, d->box[0], d->box[1], d->box[2], d->box[3], d->score, d->class_id };
                for (int q = 0; q < 7; q++) json_array_append_new(data, json_real(row[q]));
            }
            json_array_append_new(per_item, dets_json(res));
        }
        json_array_append_new(outs, json_pack("{s:s,s:s,s:[ii],s:o}", "name", "detections", "datatype", "FP32", "shape",
                                              K, 7, "data", data));
        json_object_set_new(o, "detections", per_item);
    }
    json_object_set_new(o, "outputs", outs);
    char *txt = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(9));
    json_decref(o);
    if (!txt) {
        free(bin);
        return respond_error(r, 500, "out of memory");
    }
    if (!bin) return respond_raw(r, 200, "application/json", txt, strlen(txt), NULL, NULL);
    size_t jl = strlen(txt);
    char *all = malloc(jl + bin_len);
    if (!all) {
        free(txt);
        free(bin);
        return respond_error(r, 500, "out of memory");
    }
    memcpy(all, txt, jl);
    memcpy(all + jl, bin, bin_len);
    free(txt);
    free(bin);
    char hl[32];
    snprintf(hl, sizeof hl, "%zu", jl);
    return respond_raw(r, 200, "application/octet-stream", all, jl + bin_len, "Inference-Header-Content-Length", hl);
}

/* ---------------------------------------------------------------------------------
 * The access handler
 * --------------------------------------------------------------------------------- */

static void req_free(http_req *r) {
    if (!r) return;
    for (int i = 0; i < r->n_jobs; i++) {
        itscam_result_clear(&r->jobs[i].res);
        it_free(r->jobs[i].raw);
    }
    it_free(r->jobs);
    for (int i = 0; i < r->n_imgs; i++) it_image_free(&r->imgs[i]);
    if (r->have_ks) ks_request_free(&r->ks);
    if (r->model) srv_model_unref(r->model);
    it_free(r->body);
    it_free(r);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
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

static enum MHD_Result dispatch(http_req *r, const char *method) {
    srv_server *s = r->s;
    switch (r->route) {
    case R_V2:
        return respond_json(r, 200, json_pack("{s:s,s:s,s:[s,s,s]}", "name", "itscam", "version", itscam_version(),
                                              "extensions", "binary_tensor_data", "parameters", "model_repository"));
    case R_LIVE: return respond_json(r, 200, json_pack("{s:b}", "live", 1));
    case R_READY: {
        int ok = atomic_load(&s->ready) && !atomic_load(&s->draining);
        return respond_json(r, ok ? 200 : 503, json_pack("{s:b}", "ready", ok));
    }
    case R_METRICS: {
        size_t len;
        char *txt = prom_render(s->mx.reg, &len);
        if (!txt) return respond_error(r, 500, "out of memory");
        return respond_raw(r, 200, "text/plain; version=0.0.4; charset=utf-8", txt, len, NULL, NULL);
    }
    case R_MODELS: return get_models(r);
    case R_MODEL_META: return get_model_meta(r);
    case R_MODEL_READY: {
        int ok = atomic_load(&r->model->ready);
        return respond_json(r, ok ? 200 : 503, json_pack("{s:s,s:b}", "name", r->model->name, "ready", ok));
    }
    case R_INFER: return start_infer(r);
    case R_DETECT: return start_detect(r, 0);
    case R_DETECT_BATCH: return start_detect(r, 1);
    case R_BACKEND_GET: return get_backend(r);
    case R_BACKEND_SET: return set_backend(r);
    case R_RELOAD: {
        char err[512];
        if (srv_server_reload(s, err, sizeof err) != 0) return respond_error(r, 500, "reload failed: %s", err);
        return get_models(r);
    }
    }
    (void)method;
    return respond_error(r, 404, "no such route");
}

static int needs_model(int route) {
    return route == R_MODEL_META || route == R_MODEL_READY || route == R_INFER || route == R_DETECT ||
           route == R_DETECT_BATCH;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                               const char *version, const char *upload_data, size_t *upload_data_size,
                               void **con_cls) {
    (void)version;
    srv_server *s = cls;
    http_req *r = *con_cls;
    if (!r) {
        /* Headers are in: decide everything that does not need the body now, so that a
         * refused upload is refused before it is received. */
        r = it_calloc(1, sizeof *r);
        if (!r) return MHD_NO;
        r->s = s;
        r->conn = c;
        r->t0 = it_now_ms();
        *con_cls = r;
        atomic_fetch_add(&s->inflight, 1);
        const char *want;
        r->route = classify(method, url, r->model_name, sizeof r->model_name, &want);
        snprintf(r->route_label, sizeof r->route_label, "%s", route_label_of(r->route));
        if (r->route == R_NONE) return respond_error(r, 404, "no route %s %s", method, url);
        if (strcmp(method, want) && !(r->route != R_NONE && !strcmp(want, "GET") && !strcmp(method, "HEAD")))
            return respond_error_h(r, 405, "method not allowed", MHD_HTTP_HEADER_ALLOW, want);
        if (r->route != R_LIVE && r->route != R_READY && !authorized(s, c))
            return respond_error(r, 401, "a valid bearer token is required (Authorization: Bearer TOKEN)");
        if (r->route == R_DETECT || r->route == R_DETECT_BATCH) {
            const char *m = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "model");
            if (m) snprintf(r->model_name, sizeof r->model_name, "%s", m);
        }
        if (needs_model(r->route) && !atomic_load(&s->ready)) {
            r->model_name[0] = 0;
            return respond_error_h(r, 503, "the models are loading; retry shortly", MHD_HTTP_HEADER_RETRY_AFTER, "1");
        }
        if (needs_model(r->route)) {
            r->model = find_model(s, r->model_name);
            if (!r->model && atomic_load(&s->draining)) {
                r->model_name[0] = 0;
                return respond_error_h(r, 503, "the server is shutting down", MHD_HTTP_HEADER_RETRY_AFTER, "1");
            }
            if (!r->model) {
                char name[128];
                snprintf(name, sizeof name, "%s", r->model_name);
                r->model_name[0] = 0; /* unknown names stay out of the metric labels */
                return respond_error(r, 404, "unknown model '%s': GET /v1/models lists them", name);
            }
            snprintf(r->model_name, sizeof r->model_name, "%s", r->model->name);
        }
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl) {
            char *e;
            unsigned long long v = strtoull(cl, &e, 10);
            if (*e == 0 && v > (unsigned long long)s->cfg.max_body_bytes)
                return respond_error(r, 413, "the body of %llu bytes exceeds the limit of %lld bytes", v,
                                     s->cfg.max_body_bytes);
        }
        return MHD_YES;
    }
    if (r->answered) {
        *upload_data_size = 0; /* discard the rest of a refused body */
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (r->too_big) return MHD_YES;
        if (r->len + n > (size_t)s->cfg.max_body_bytes) {
            /* Chunked uploads carry no Content-Length: counted as they come. */
            r->too_big = 1;
            it_free(r->body);
            r->body = NULL;
            return MHD_YES;
        }
        if (r->len + n > r->cap) {
            size_t nc = r->cap ? r->cap : 65536;
            while (nc < r->len + n) nc *= 2;
            if (nc > (size_t)s->cfg.max_body_bytes) nc = (size_t)s->cfg.max_body_bytes;
            uint8_t *nb = it_realloc(r->body, nc);
            if (!nb) return MHD_NO;
            r->body = nb;
            r->cap = nc;
        }
        memcpy(r->body + r->len, upload_data, n);
        r->len += n;
        return MHD_YES;
    }
    /* The whole body is in, or the jobs came back. */
    if (r->too_big)
        return respond_error(r, 413, "the body exceeds the limit of %lld bytes", s->cfg.max_body_bytes);
    if (!r->submitted) return dispatch(r, method);
    if (r->fail_code) {
        char ra[16];
        snprintf(ra, sizeof ra, "%d", 1);
        return respond_error_h(r, r->fail_code, r->fail_msg, MHD_HTTP_HEADER_RETRY_AFTER, ra);
    }
    if (atomic_load(&r->pending) > 0) return MHD_YES; /* spurious resume */
    return r->route == R_INFER ? finish_infer(r) : finish_detect(r, r->route == R_DETECT_BATCH);
}

/* ---------------------------------------------------------------------------------
 * Start, reload, stop
 * --------------------------------------------------------------------------------- */

static char *slurp(const char *path, char *err, size_t n) {
    uint8_t *b;
    size_t len;
    if (it_read_file(path, &b, &len, 1 << 20) != ITSCAM_OK) {
        snprintf(err, n, "%s", itscam_last_error());
        return NULL;
    }
    char *s = it_realloc(b, len + 1);
    if (!s) {
        it_free(b);
        snprintf(err, n, "out of memory");
        return NULL;
    }
    s[len] = 0;
    return s;
}

static void free_server(srv_server *s) {
    srv_registry_release(s->reg);
    srv_metrics_free(&s->mx);
    it_free(s->tls_key);
    it_free(s->tls_cert);
    pthread_rwlock_destroy(&s->reg_lock);
    pthread_mutex_destroy(&s->reload_mu);
    it_free(s);
}

srv_server *srv_server_start(const srv_config *cfg, char *err, size_t errlen) {
    srv_server *s = it_calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->cfg = *cfg;
    pthread_rwlock_init(&s->reg_lock, NULL);
    pthread_mutex_init(&s->reload_mu, NULL);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    s->start_unix = (double)now.tv_sec + now.tv_nsec / 1e9;
    if (srv_metrics_init(&s->mx, cfg->sla_ms) != 0) {
        snprintf(err, errlen, "out of memory for the metrics");
        free_server(s);
        return NULL;
    }
    prom_on_collect(s->mx.reg, collect, s);
    if (!strcmp(cfg->backend, "cuda")) {
        itscam_breaker_config bc = { .failure_threshold = cfg->breaker_failures, .oom_threshold = cfg->breaker_oom,
                                     .open_ms = cfg->breaker_open_ms, .half_open_probes = cfg->breaker_probes };
        if (itscam_breaker_configure("cuda", &bc) != ITSCAM_OK) {
            snprintf(err, errlen, "breaker: %s", itscam_last_error());
            free_server(s);
            return NULL;
        }
    }
    if (load_tokens(s, err, errlen) != 0) {
        free_server(s);
        return NULL;
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC | MHD_ALLOW_SUSPEND_RESUME;
    if (MHD_is_feature_supported(MHD_FEATURE_EPOLL) == MHD_YES) flags |= MHD_USE_EPOLL;
    if (cfg->tls_cert[0]) {
        if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
            snprintf(err, errlen, "TLS is configured but this libmicrohttpd has no TLS support");
            free_server(s);
            return NULL;
        }
        if (!(s->tls_cert = slurp(cfg->tls_cert, err, errlen)) || !(s->tls_key = slurp(cfg->tls_key, err, errlen))) {
            free_server(s);
            return NULL;
        }
        flags |= MHD_USE_TLS;
    }
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)cfg->port);
    if (inet_pton(AF_INET, cfg->host, &sa.sin_addr) != 1) {
        snprintf(err, errlen, "server.host: '%s' is not an IPv4 address", cfg->host);
        free_server(s);
        return NULL;
    }
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned pool = cfg->http_threads > 0 ? (unsigned)cfg->http_threads : (unsigned)(cores > 0 ? cores : 2);
    struct MHD_OptionItem tls_opts[] = {
        { MHD_OPTION_HTTPS_MEM_KEY, 0, s->tls_key },
        { MHD_OPTION_HTTPS_MEM_CERT, 0, s->tls_cert },
        { MHD_OPTION_END, 0, NULL },
    };
    s->d = MHD_start_daemon(flags, (uint16_t)cfg->port, NULL, NULL, handler, s,
                            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                            MHD_OPTION_THREAD_POOL_SIZE, pool,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)cfg->max_connections,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->connection_timeout_s,
                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)128 * 1024,
                            MHD_OPTION_LISTENING_ADDRESS_REUSE, 1u,
                            MHD_OPTION_NOTIFY_COMPLETED, completed, s,
                            MHD_OPTION_ARRAY, cfg->tls_cert[0] ? tls_opts : tls_opts + 2,
                            MHD_OPTION_END);
    if (!s->d) {
        snprintf(err, errlen, "cannot listen on %s:%d: %s", cfg->host, cfg->port,
                 errno ? strerror(errno) : "libmicrohttpd refused the options");
        free_server(s);
        return NULL;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : cfg->port;
    return s;
}

/* Listening comes first so that probes see "live, not ready" during the warm-up; model
 * routes answer 503 until then. A model that cannot load fails the start. */
int srv_server_load(srv_server *s, char *err, size_t errlen) {
    srv_registry *r = srv_registry_load(&s->cfg, &s->mx, err, errlen);
    if (!r) return -1;
    pthread_rwlock_wrlock(&s->reg_lock);
    s->reg = r;
    pthread_rwlock_unlock(&s->reg_lock);
    atomic_store(&s->ready, 1);
    return 0;
}

int srv_server_port(const srv_server *s) {
    return s->port;
}

int srv_server_reload(srv_server *s, char *err, size_t errlen) {
    pthread_mutex_lock(&s->reload_mu);
    srv_registry *nr = srv_registry_load(&s->cfg, &s->mx, err, errlen);
    if (!nr) {
        pthread_mutex_unlock(&s->reload_mu);
        return -1;
    }
    char terr[256] = "";
    if (load_tokens(s, terr, sizeof terr) != 0) it_log(ITSCAM_LOG_WARN, "reload: %s (tokens unchanged)", terr);
    pthread_rwlock_wrlock(&s->reg_lock);
    srv_registry *old = s->reg;
    s->reg = nr;
    pthread_rwlock_unlock(&s->reg_lock);
    srv_registry_release(old); /* models still in use live until their last request */
    pthread_mutex_unlock(&s->reload_mu);
    return 0;
}

void srv_server_stop(srv_server *s) {
    if (!s) return;
    atomic_store(&s->draining, 1);
    MHD_socket ls = MHD_quiesce_daemon(s->d);
    if (ls != MHD_INVALID_SOCKET) close(ls);
    double until = it_now_ms() + s->cfg.drain_timeout_s * 1e3;
    while (atomic_load(&s->inflight) > 0 && it_now_ms() < until) usleep(10000);
    /* Past the drain timeout, jobs still queued are answered 503 at once (which resumes
     * their connections: the daemon must not stop with a connection suspended); batches
     * already running finish. */
    pthread_rwlock_wrlock(&s->reg_lock);
    srv_registry *old = s->reg;
    s->reg = NULL;
    pthread_rwlock_unlock(&s->reg_lock);
    for (int i = 0; old && i < old->n; i++) srv_batcher_cancel_queued(old->models[i]->batcher);
    srv_registry_release(old);
    double hard = it_now_ms() + 60e3;
    while (atomic_load(&s->inflight) > 0 && it_now_ms() < hard) usleep(10000);
    if (atomic_load(&s->inflight) > 0)
        it_log(ITSCAM_LOG_WARN, "stopping with %d requests still in flight", atomic_load(&s->inflight));
    MHD_stop_daemon(s->d);
    free_server(s);
}
