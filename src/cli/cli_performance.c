/* itscam performance: how a running server is doing. `status` summarises /metrics,
 * /v1/models and /v2/health/ready once; `monitor` shows rates between consecutive scrapes;
 * `benchmark` is a closed-loop load generator (like Triton's perf_analyzer) that sweeps
 * client concurrency and reads the server's own queue and inference times from /metrics
 * around each level, so that client latency can be split into server stages. */
#include "cli/cli.h"
#include "core/core.h"
#include "sched/sched.h"
#include "server/prom.h"

#include <curl/curl.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_URL "http://127.0.0.1:8080"
#define MAX_URL 2048
#define MAX_TOKEN 4096
#define MAX_METRICS_BYTES ((size_t)32 << 20)   /* a /metrics larger than this is refused */
#define MAX_JSON_BYTES ((size_t)4 << 20)
#define MAX_SAMPLES 400000
#define MAX_MODELS 64
#define MAX_NAME 128
#define MAX_HB 64                              /* histogram buckets read back */
#define MAX_LEVELS 16
#define MAX_CONCURRENCY 1024
#define MAX_BENCH_IMAGES 256
#define MAX_IMAGE_BYTES ((size_t)64 << 20)
#define MAX_LAT_PER_THREAD ((size_t)4 << 20)   /* percentiles use the first 4M per thread */
#define MAX_ERROR_BODY 512
#define GET_TIMEOUT_MS 15000L
#define CONNECT_TIMEOUT_MS 5000L
#define REQUEST_TIMEOUT_MS 120000L
#define MAX_SECONDS 86400.0

enum { N_PRIO = IT_SCHED_NPRIO, N_STAGES = 5 };
static const char *const stage_names[N_STAGES] = {"queue", "decode", "preprocess", "inference", "postprocess"};
static const char *const stage_metrics[N_STAGES] = {
    "itscam_queue_duration_seconds", "itscam_decode_duration_seconds", "itscam_preprocess_duration_seconds",
    "itscam_inference_duration_seconds", "itscam_postprocess_duration_seconds"};
static const char *const breaker_names[3] = {"closed", "open", "half-open"};

void cli_performance_usage(FILE *f) {
    fprintf(f,
            "usage: itscam performance status    [--url URL] [--detailed] [--format table|json] [--token T]\n"
            "       itscam performance optimize  --strategy S --model M [options]   (see the end)\n"
            "       itscam performance monitor   [--url URL] [--interval S] [--duration S] [--token T]\n"
            "       itscam performance benchmark [--url URL] [--concurrency LIST] [--duration S] [--warmup S]\n"
            "                                    [--images DIR] [--model NAME] [--priority P] [--token T] [--json]\n\n"
            "status     one summary of a running server from /metrics, /v1/models, /v1/cameras and\n"
            "           /v2/health/ready (one row per camera when it has cameras):\n"
            "           readiness, uptime, and per model requests by status class, end-to-end latency\n"
            "           (mean and p50/p95/p99 estimated from the histogram as Prometheus'\n"
            "           histogram_quantile does), queue depth per priority, mean batch size, SLA\n"
            "           violations, rejections and the circuit breaker when the server has one.\n"
            "  --detailed        add mean per-stage latencies and the batch size distribution\n"
            "  --format F        table (default) or json (one object)\n\n"
            "monitor    scrape /metrics every interval and show rates between scrapes: requests/s,\n"
            "           errors/s (HTTP >= 400), p50/p95 latency and mean batch over the interval,\n"
            "           queue depths, in-flight requests and CPU%%. The screen is redrawn on a\n"
            "           terminal; otherwise one block is printed per interval. Ctrl-C stops.\n"
            "  --interval S      seconds between scrapes (default 2)\n"
            "  --duration S      stop after S seconds (default: until Ctrl-C)\n\n"
            "benchmark  closed-loop load: for each concurrency C, C threads (one keep-alive\n"
            "           connection each) POST images to /v1/detect back to back; after --warmup\n"
            "           seconds, successful requests are timed for --duration seconds. 503 counts as\n"
            "           rejected, 504 as timeout, anything else not 2xx as an error. The server's\n"
            "           mean queue and inference time per request and mean batch size over the\n"
            "           same window come from /metrics.\n"
            "  --concurrency L   comma-separated levels (default 1,4,16,64; each 1..%d)\n"
            "  --duration S      measured seconds per level (default 10)\n"
            "  --warmup S        unmeasured seconds per level first (default 2)\n"
            "  --images DIR      JPEG/PNG files to send, cycled (default: $ITSCAM_SHARED/images)\n"
            "  --model NAME      model to ask for (default: the server's default)\n"
            "  --priority P      urgent, normal (default) or batch\n"
            "  --json            print {\"results\":[{\"concurrency\",\"throughput_rps\",\"latency_ms\":\n"
            "                    {\"p50\",\"p90\",\"p95\",\"p99\"},\"ok\",\"rejected\",\"timeouts\",\"errors\",\n"
            "                    \"server_queue_ms\",\"server_inference_ms\",\"batch_mean\",\"duration_s\"}]}\n\n"
            "benchmark --cameras N ...  camera capacity in process, no server: see the end\n\n"
            "common options:\n"
            "  --url URL         server address (default " DEFAULT_URL ")\n"
            "  --token T         send 'Authorization: Bearer T' (default: $ITSCAM_TOKEN)\n\n"
            "Exit status: 0 on success, 1 when the server cannot be reached or answers wrongly\n"
            "(benchmark: when no request succeeded), 2 on bad arguments, 130 when Ctrl-C cut a\n"
            "benchmark short (the levels done are still printed).\n",
            MAX_CONCURRENCY);
    fputc('\n', f);
    cli_camera_bench_usage(f);
    fputc('\n', f);
    cli_optimize_usage(f);
}

/* ---- time and signals --------------------------------------------------------------- */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static volatile sig_atomic_t stop_requested;

static void on_sigint(int sig) {
    (void)sig;
    stop_requested = 1;
}

/* Ctrl-C sets a flag that every loop checks, so that threads are joined, handles freed
 * and the results so far printed; a second Ctrl-C then kills as usual. */
static void trap_sigint(struct sigaction *old) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sa.sa_flags = SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    stop_requested = 0;
    sigaction(SIGINT, &sa, old);
}

static void restore_sigint(const struct sigaction *old) { sigaction(SIGINT, old, NULL); }

/* Sleep up to s seconds, waking early on Ctrl-C. */
static void sleep_s(double s) {
    double end = now_s() + s;
    while (!stop_requested) {
        double left = end - now_s();
        if (left <= 0) break;
        if (left > 0.05) left = 0.05;
        struct timespec ts = {0, (long)(left * 1e9)};
        nanosleep(&ts, NULL);
    }
}

/* ---- HTTP --------------------------------------------------------------------------- */

typedef struct membuf {
    char *p;
    size_t len, cap, max;
    int overflow;
} membuf;

static size_t membuf_write(char *data, size_t size, size_t nmemb, void *user) {
    membuf *b = user;
    size_t n = size * nmemb;
    if (b->len + n + 1 > b->max) {
        b->overflow = 1;
        return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
    }
    if (b->len + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 65536;
        while (nc < b->len + n + 1) nc *= 2;
        if (nc > b->max) nc = b->max;
        char *np = realloc(b->p, nc);
        if (!np) {
            b->overflow = 1;
            return 0;
        }
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = 0;
    return n;
}

/* One connection to the server for GETs, reused across scrapes (keep-alive). */
typedef struct client {
    CURL *h;
    char base[MAX_URL];
    struct curl_slist *hdrs;
    char errbuf[CURL_ERROR_SIZE];
    membuf body;
} client;

static void client_free(client *c) {
    if (c->h) curl_easy_cleanup(c->h);
    curl_slist_free_all(c->hdrs);
    free(c->body.p);
    memset(c, 0, sizeof *c);
}

/* Strip trailing slashes so that paths can be appended. */
static int normalize_url(char *out, size_t n, const char *url) {
    size_t l = strlen(url);
    while (l > 0 && url[l - 1] == '/') l--;
    if (l == 0 || l >= n) return -1;
    memcpy(out, url, l);
    out[l] = 0;
    return 0;
}

static int make_auth(char *out, size_t n, const char *token) {
    out[0] = 0;
    if (!token || !*token) return 0;
    if (strpbrk(token, "\r\n")) return -1;
    return snprintf(out, n, "Authorization: Bearer %s", token) >= (int)n ? -1 : 0;
}

static int client_init(client *c, const char *base, const char *auth) {
    memset(c, 0, sizeof *c);
    snprintf(c->base, sizeof c->base, "%s", base);
    c->h = curl_easy_init();
    if (!c->h) return -1;
    if (auth[0] && !(c->hdrs = curl_slist_append(NULL, auth))) return -1;
    curl_easy_setopt(c->h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c->h, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS);
    curl_easy_setopt(c->h, CURLOPT_TIMEOUT_MS, GET_TIMEOUT_MS);
    curl_easy_setopt(c->h, CURLOPT_ERRORBUFFER, c->errbuf);
    curl_easy_setopt(c->h, CURLOPT_WRITEFUNCTION, membuf_write);
    curl_easy_setopt(c->h, CURLOPT_WRITEDATA, &c->body);
    curl_easy_setopt(c->h, CURLOPT_USERAGENT, "itscam-performance");
    if (c->hdrs) curl_easy_setopt(c->h, CURLOPT_HTTPHEADER, c->hdrs);
    return 0;
}

/* GET base+path into c->body (at most max bytes). Returns 0 with *code set when an HTTP
 * answer came, -1 with a message naming the URL and curl's error otherwise. */
static int http_get(client *c, const char *path, size_t max, long *code, char *err, size_t errlen) {
    char url[MAX_URL + 64];
    snprintf(url, sizeof url, "%s%s", c->base, path);
    c->body.len = 0;
    c->body.max = max;
    c->body.overflow = 0;
    if (c->body.p) c->body.p[0] = 0;
    c->errbuf[0] = 0;
    curl_easy_setopt(c->h, CURLOPT_URL, url);
    curl_easy_setopt(c->h, CURLOPT_HTTPGET, 1L);
    CURLcode rc = curl_easy_perform(c->h);
    if (rc != CURLE_OK) {
        if (c->body.overflow) snprintf(err, errlen, "%s: answer larger than %zu bytes", url, max);
        else snprintf(err, errlen, "cannot reach %s: %s", url, c->errbuf[0] ? c->errbuf : curl_easy_strerror(rc));
        return -1;
    }
    *code = 0;
    curl_easy_getinfo(c->h, CURLINFO_RESPONSE_CODE, code);
    return 0;
}

int cli_http_request(const char *url, const char *path, const char *method, const char *token, const char *body,
                     long *code, char **answer, char *err, size_t errlen) {
    char base[MAX_URL], auth[MAX_TOKEN + 32];
    *answer = NULL;
    *code = 0;
    if (normalize_url(base, sizeof base, url)) {
        snprintf(err, errlen, "bad URL '%s'", url);
        return -1;
    }
    if (make_auth(auth, sizeof auth, token)) {
        snprintf(err, errlen, "the token is too long or holds a line break");
        return -1;
    }
    client c;
    int rc = -1;
    struct curl_slist *hdrs = NULL;
    if (client_init(&c, base, auth) || (body && !(hdrs = curl_slist_append(c.hdrs, "Content-Type: application/json")))) {
        snprintf(err, errlen, "libcurl: out of memory");
        client_free(&c);
        return -1;
    }
    if (hdrs) {
        c.hdrs = hdrs;
        curl_easy_setopt(c.h, CURLOPT_HTTPHEADER, c.hdrs);
    }
    if (body) {
        curl_easy_setopt(c.h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c.h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    curl_easy_setopt(c.h, CURLOPT_CUSTOMREQUEST, method);
    char full[MAX_URL + 256];
    snprintf(full, sizeof full, "%s%s", base, path);
    c.body.max = MAX_JSON_BYTES;
    curl_easy_setopt(c.h, CURLOPT_URL, full);
    CURLcode cr = curl_easy_perform(c.h);
    if (cr != CURLE_OK) {
        if (c.body.overflow) snprintf(err, errlen, "%s: answer larger than %zu bytes", full, MAX_JSON_BYTES);
        else snprintf(err, errlen, "cannot reach %s: %s", full, c.errbuf[0] ? c.errbuf : curl_easy_strerror(cr));
    } else {
        curl_easy_getinfo(c.h, CURLINFO_RESPONSE_CODE, code);
        *answer = c.body.p ? c.body.p : strdup("");
        c.body.p = NULL;
        rc = *answer ? 0 : -1;
        if (rc) snprintf(err, errlen, "out of memory");
    }
    client_free(&c);
    return rc;
}

/* ---- metrics snapshots -------------------------------------------------------------- */

typedef struct snapshot {
    prom_sample *s;
    int n;
    double t; /* monotonic seconds when it was taken */
} snapshot;

static void snapshot_free(snapshot *s) {
    free(s->s);
    memset(s, 0, sizeof *s);
}

static int scrape(client *c, snapshot *snap, char *err, size_t errlen) {
    memset(snap, 0, sizeof *snap);
    long code;
    if (http_get(c, "/metrics", MAX_METRICS_BYTES, &code, err, errlen)) return -1;
    if (code != 200) {
        snprintf(err, errlen, "%s/metrics: HTTP %ld%s", c->base, code,
                 code == 401 || code == 403 ? " (wrong or missing --token?)" : "");
        return -1;
    }
    const char *text = c->body.p ? c->body.p : "";
    size_t lines = 1;
    for (size_t i = 0; i < c->body.len; i++) lines += text[i] == '\n';
    if (lines > MAX_SAMPLES) lines = MAX_SAMPLES;
    snap->s = malloc(sizeof *snap->s * lines);
    if (!snap->s) {
        snprintf(err, errlen, "%s/metrics: out of memory for %zu lines", c->base, lines);
        return -1;
    }
    char perr[256];
    int n = prom_parse(text, c->body.len, snap->s, (int)lines, perr, sizeof perr);
    if (n < 0) {
        snprintf(err, errlen, "%s/metrics: %s", c->base, perr);
        snapshot_free(snap);
        return -1;
    }
    snap->n = n;
    snap->t = now_s();
    return 0;
}

static double metric(const snapshot *s, const char *name, const char *const *match, int *found) {
    return prom_sum(s->s, s->n, name, match, found);
}

/* A counter's increase; one that went down was reset (server restart): count from 0. */
static double increase(double after, double before) { return after >= before ? after - before : after; }

typedef struct hist {
    double up[MAX_HB], cum[MAX_HB];
    int n;
    double sum, count;
} hist;

/* Histogram `name` over the samples that match, summed over other labels. 0 when absent. */
static int hist_get(const snapshot *s, const char *name, const char *const *match, hist *h) {
    memset(h, 0, sizeof *h);
    int k = prom_histogram_buckets(s->s, s->n, name, match, h->up, h->cum, MAX_HB);
    h->n = k > 0 ? k : 0;
    char nm[MAX_NAME + 16];
    int found = 0;
    snprintf(nm, sizeof nm, "%s_sum", name);
    h->sum = metric(s, nm, match, NULL);
    snprintf(nm, sizeof nm, "%s_count", name);
    h->count = metric(s, nm, match, &found);
    return h->n > 0 || found > 0;
}

/* after - before bucket by bucket (matched by bound); a reset counts from 0. */
static void hist_delta(const hist *after, const hist *before, hist *d) {
    *d = *after;
    if (after->count < before->count) return;
    for (int i = 0; i < d->n; i++)
        for (int j = 0; j < before->n; j++)
            if (before->up[j] == d->up[i]) {
                d->cum[i] = fmax(0, d->cum[i] - before->cum[j]);
                break;
            }
    d->sum -= before->sum;
    d->count -= before->count;
}

static double hist_mean(const hist *h) { return h->count > 0 ? h->sum / h->count : NAN; }
static double hist_q(const hist *h, double q) { return prom_histogram_quantile(q, h->up, h->cum, h->n); }

/* Requests of one model by status class: cls[0] total, cls[1..5] 1xx..5xx. */
static void requests_by_class(const snapshot *s, const char *model, double cls[6]) {
    const char *const match[] = {"model", model, NULL};
    memset(cls, 0, sizeof(double) * 6);
    for (int i = 0; i < s->n; i++) {
        if (strcmp(s->s[i].name, "itscam_requests_total") || !prom_match(&s->s[i], match)) continue;
        char code[16];
        cls[0] += s->s[i].value;
        if (!prom_label(&s->s[i], "code", code, sizeof code) && code[0] >= '1' && code[0] <= '5')
            cls[code[0] - '0'] += s->s[i].value;
    }
}

typedef struct model_entry {
    char name[MAX_NAME];
    double api_ready; /* "ready" from /v1/models; NaN when not listed there */
} model_entry;

typedef struct model_list {
    model_entry e[MAX_MODELS];
    int n;
} model_list;

static model_entry *models_add(model_list *m, const char *name) {
    if (!name || !*name || strlen(name) >= MAX_NAME) return NULL;
    for (int i = 0; i < m->n; i++)
        if (!strcmp(m->e[i].name, name)) return &m->e[i];
    if (m->n == MAX_MODELS) return NULL;
    model_entry *e = &m->e[m->n++];
    strcpy(e->name, name);
    e->api_ready = NAN;
    return e;
}

static int cmp_names(const void *a, const void *b) { return strcmp(a, b); } /* name comes first */

/* Every value of the "model" label on an itscam_ metric. */
static void models_from_metrics(model_list *m, const snapshot *s) {
    for (int i = 0; i < s->n; i++) {
        char v[MAX_NAME];
        if (!strncmp(s->s[i].name, "itscam_", 7) && !prom_label(&s->s[i], "model", v, sizeof v)) models_add(m, v);
    }
}

static void models_sort(model_list *m) { qsort(m->e, (size_t)m->n, sizeof m->e[0], cmp_names); }

/* ---- formatting --------------------------------------------------------------------- */

static const char *fmt_num(char *buf, size_t n, const char *fmt, double v) {
    if (!isfinite(v)) snprintf(buf, n, "-");
    else snprintf(buf, n, fmt, v);
    return buf;
}

static const char *fmt_bytes(char *buf, size_t n, double v) {
    if (!isfinite(v)) snprintf(buf, n, "-");
    else if (v >= 1073741824.0) snprintf(buf, n, "%.2f GiB", v / 1073741824.0);
    else snprintf(buf, n, "%.1f MiB", v / 1048576.0);
    return buf;
}

static const char *fmt_duration(char *buf, size_t n, double s) {
    if (!isfinite(s) || s < 0) snprintf(buf, n, "-");
    else {
        long t = (long)s;
        if (t >= 86400) snprintf(buf, n, "%ldd%02ldh%02ldm", t / 86400, t % 86400 / 3600, t % 3600 / 60);
        else if (t >= 3600) snprintf(buf, n, "%ldh%02ldm%02lds", t / 3600, t % 3600 / 60, t % 60);
        else if (t >= 60) snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
        else snprintf(buf, n, "%.1fs", s);
    }
    return buf;
}

/* JSON has no NaN: unknown numbers become null. */
static json_t *jnum(double v) { return isfinite(v) ? json_real(v) : json_null(); }
static json_t *jcount(double v) { return isfinite(v) ? json_integer((json_int_t)llround(v)) : json_null(); }

static double ms(double seconds) { return seconds * 1000.0; }

/* ---- status ------------------------------------------------------------------------- */

typedef struct model_status {
    const char *name;
    double ready; /* NaN when the server does not say */
    double req[6];
    hist lat;
    double queue[N_PRIO];
    int has_queue[N_PRIO];
    hist batch;
    double sla_violations, rejected_full, rejected_timeout;
    double breaker; /* NaN when absent */
    double stage_ms[N_STAGES];
} model_status;

static void model_status_get(const snapshot *s, const char *name, model_status *m) {
    memset(m, 0, sizeof *m);
    m->name = name;
    const char *const match[] = {"model", name, NULL};
    int found;
    double v = metric(s, "itscam_model_ready", match, &found);
    m->ready = found ? v : NAN;
    requests_by_class(s, name, m->req);
    hist_get(s, "itscam_request_duration_seconds", match, &m->lat);
    for (int p = 0; p < N_PRIO; p++) {
        const char *const mp[] = {"model", name, "priority", it_sched_prio_name(p), NULL};
        m->queue[p] = metric(s, "itscam_queue_depth", mp, &m->has_queue[p]);
    }
    hist_get(s, "itscam_batch_size", match, &m->batch);
    m->sla_violations = metric(s, "itscam_sla_violations_total", match, NULL);
    const char *const mf[] = {"model", name, "reason", "queue_full", NULL};
    const char *const mt[] = {"model", name, "reason", "timeout", NULL};
    m->rejected_full = metric(s, "itscam_rejected_total", mf, NULL);
    m->rejected_timeout = metric(s, "itscam_rejected_total", mt, NULL);
    v = metric(s, "itscam_breaker_state", match, &found);
    m->breaker = found ? v : NAN;
    for (int k = 0; k < N_STAGES; k++) {
        hist h;
        hist_get(s, stage_metrics[k], match, &h);
        m->stage_ms[k] = ms(hist_mean(&h));
    }
}

static const char *breaker_name(double v) {
    int b = isfinite(v) ? (int)v : -1;
    return b >= 0 && b < 3 ? breaker_names[b] : "unknown";
}

/* Label of one batch size bucket (prev, ub]: "1", "3-4", ">256". */
static void batch_bucket_label(char *buf, size_t n, double prev, double ub) {
    if (isinf(ub)) snprintf(buf, n, ">%g", prev);
    else if (floor(prev) + 1 >= ub) snprintf(buf, n, "%g", ub);
    else snprintf(buf, n, "%g-%g", floor(prev) + 1, ub);
}

typedef struct server_status {
    const char *url;
    double ready; /* 1, 0, NaN when /v2/health/ready could not be asked */
    long ready_code;
    double uptime_s, inflight, cpu_seconds, rss_bytes, sla_seconds, dropped;
    char version[64], backends[128];
} server_status;

static json_t *status_json(const server_status *st, const model_status *ms_, int n, int detailed) {
    json_t *root = json_object(), *models = json_array();
    json_object_set_new(root, "url", json_string(st->url));
    json_object_set_new(root, "ready", isfinite(st->ready) ? json_boolean(st->ready > 0) : json_null());
    json_object_set_new(root, "version", st->version[0] ? json_string(st->version) : json_null());
    json_object_set_new(root, "backends", st->backends[0] ? json_string(st->backends) : json_null());
    json_object_set_new(root, "uptime_s", jnum(st->uptime_s));
    json_object_set_new(root, "inflight", jcount(st->inflight));
    json_object_set_new(root, "cpu_seconds", jnum(st->cpu_seconds));
    json_object_set_new(root, "resident_memory_bytes", jcount(st->rss_bytes));
    json_object_set_new(root, "sla_seconds", jnum(st->sla_seconds));
    json_object_set_new(root, "metrics_dropped", jcount(st->dropped));
    for (int i = 0; i < n; i++) {
        const model_status *m = &ms_[i];
        json_t *o = json_object(), *req = json_object(), *lat = json_object(), *q = json_object(),
               *rej = json_object();
        json_object_set_new(o, "name", json_string(m->name));
        json_object_set_new(o, "ready", isfinite(m->ready) ? json_boolean(m->ready > 0) : json_null());
        json_object_set_new(req, "total", jcount(m->req[0]));
        json_object_set_new(req, "2xx", jcount(m->req[2]));
        json_object_set_new(req, "4xx", jcount(m->req[4]));
        json_object_set_new(req, "5xx", jcount(m->req[5]));
        json_object_set_new(o, "requests", req);
        json_object_set_new(lat, "mean", jnum(ms(hist_mean(&m->lat))));
        json_object_set_new(lat, "p50", jnum(ms(hist_q(&m->lat, 0.50))));
        json_object_set_new(lat, "p95", jnum(ms(hist_q(&m->lat, 0.95))));
        json_object_set_new(lat, "p99", jnum(ms(hist_q(&m->lat, 0.99))));
        json_object_set_new(o, "latency_ms", lat);
        for (int p = 0; p < N_PRIO; p++)
            if (m->has_queue[p]) json_object_set_new(q, it_sched_prio_name(p), jcount(m->queue[p]));
        json_object_set_new(o, "queue_depth", q);
        json_object_set_new(o, "batch_mean", jnum(hist_mean(&m->batch)));
        json_object_set_new(o, "sla_violations", jcount(m->sla_violations));
        json_object_set_new(rej, "queue_full", jcount(m->rejected_full));
        json_object_set_new(rej, "timeout", jcount(m->rejected_timeout));
        json_object_set_new(o, "rejected", rej);
        if (isfinite(m->breaker)) json_object_set_new(o, "breaker", json_string(breaker_name(m->breaker)));
        if (detailed) {
            json_t *sg = json_object(), *bs = json_array();
            for (int k = 0; k < N_STAGES; k++) json_object_set_new(sg, stage_names[k], jnum(m->stage_ms[k]));
            json_object_set_new(o, "stages_ms", sg);
            double prev_cum = 0;
            for (int b = 0; b < m->batch.n; b++) {
                json_t *e = json_object();
                json_object_set_new(e, "le", isinf(m->batch.up[b]) ? json_string("+Inf") : json_real(m->batch.up[b]));
                json_object_set_new(e, "count", jcount(fmax(0, m->batch.cum[b] - prev_cum)));
                prev_cum = fmax(prev_cum, m->batch.cum[b]);
                json_array_append_new(bs, e);
            }
            json_object_set_new(o, "batch_sizes", bs);
        }
        json_array_append_new(models, o);
    }
    json_object_set_new(root, "models", models);
    return root;
}

static void status_table(const server_status *st, const model_status *mst, int n, int detailed) {
    char a[64], b[64], c[64], d[64];
    printf("server   %s: %s", st->url,
           !isfinite(st->ready) ? "readiness unknown" : st->ready > 0 ? "ready" : "NOT READY");
    if (isfinite(st->ready) && st->ready <= 0) printf(" (HTTP %ld)", st->ready_code);
    printf(", up %s", fmt_duration(a, sizeof a, st->uptime_s));
    if (st->version[0]) printf(", itscam %s", st->version);
    if (st->backends[0]) printf(" (%s)", st->backends);
    printf("\nprocess  in flight %s, cpu %s s, resident memory %s", fmt_num(a, sizeof a, "%.0f", st->inflight),
           fmt_num(b, sizeof b, "%.1f", st->cpu_seconds), fmt_bytes(c, sizeof c, st->rss_bytes));
    if (isfinite(st->sla_seconds)) printf(", SLA %s ms", fmt_num(d, sizeof d, "%g", ms(st->sla_seconds)));
    if (st->dropped > 0) printf(", %.0f metric updates dropped", st->dropped);
    printf("\n\n");
    if (n == 0) {
        printf("no models reported yet\n");
        return;
    }
    int any_breaker = 0;
    for (int i = 0; i < n; i++) any_breaker |= isfinite(mst[i].breaker);
    printf("%-20s %-5s %9s %9s %7s %7s %8s %8s %8s %8s %6s %6s %6s %6s %8s %8s%s\n", "MODEL", "READY", "REQUESTS",
           "2XX", "4XX", "5XX", "MEAN_MS", "P50_MS", "P95_MS", "P99_MS", "Q_URG", "Q_NORM", "Q_BAT", "BATCH",
           "SLA_VIOL", "REJECTED", any_breaker ? "  BREAKER" : "");
    for (int i = 0; i < n; i++) {
        const model_status *m = &mst[i];
        char q[N_PRIO][16], l[4][16], bm[16];
        for (int p = 0; p < N_PRIO; p++)
            if (m->has_queue[p]) snprintf(q[p], sizeof q[p], "%.0f", m->queue[p]);
            else snprintf(q[p], sizeof q[p], "-");
        fmt_num(l[0], sizeof l[0], "%.2f", ms(hist_mean(&m->lat)));
        fmt_num(l[1], sizeof l[1], "%.2f", ms(hist_q(&m->lat, 0.50)));
        fmt_num(l[2], sizeof l[2], "%.2f", ms(hist_q(&m->lat, 0.95)));
        fmt_num(l[3], sizeof l[3], "%.2f", ms(hist_q(&m->lat, 0.99)));
        fmt_num(bm, sizeof bm, "%.2f", hist_mean(&m->batch));
        printf("%-20s %-5s %9.0f %9.0f %7.0f %7.0f %8s %8s %8s %8s %6s %6s %6s %6s %8.0f %8.0f", m->name,
               !isfinite(m->ready) ? "-" : m->ready > 0 ? "yes" : "no", m->req[0], m->req[2], m->req[4], m->req[5],
               l[0], l[1], l[2], l[3], q[0], q[1], q[2], bm, m->sla_violations,
               m->rejected_full + m->rejected_timeout);
        if (any_breaker) printf("  %s", isfinite(m->breaker) ? breaker_name(m->breaker) : "-");
        printf("\n");
    }
    printf("latency: end to end inside the server; percentiles estimated from histogram buckets\n");
    if (!detailed) return;
    printf("\nmean ms per request by stage (inference: the batch it ran in)\n%-20s", "MODEL");
    for (int k = 0; k < N_STAGES; k++) printf(" %11s", stage_names[k]);
    printf("\n");
    for (int i = 0; i < n; i++) {
        printf("%-20s", mst[i].name);
        for (int k = 0; k < N_STAGES; k++) printf(" %11s", fmt_num(a, sizeof a, "%.2f", mst[i].stage_ms[k]));
        printf("\n");
    }
    printf("\nbatch size distribution (batches executed)\n");
    for (int i = 0; i < n; i++) {
        const hist *h = &mst[i].batch;
        printf("%-20s", mst[i].name);
        double prev_ub = 0, prev_cum = 0;
        int shown = 0;
        for (int k = 0; k < h->n; k++) {
            double cnt = fmax(0, h->cum[k] - prev_cum);
            if (cnt > 0) {
                char lab[48];
                batch_bucket_label(lab, sizeof lab, prev_ub, h->up[k]);
                printf(" %s:%.0f", lab, cnt);
                shown = 1;
            }
            prev_cum = fmax(prev_cum, h->cum[k]);
            prev_ub = h->up[k];
        }
        printf("%s\n", shown ? "" : " -");
    }
}

static void server_status_get(const snapshot *s, server_status *st) {
    int found;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    double start = metric(s, "itscam_process_start_time_seconds", NULL, &found);
    st->uptime_s = found && start > 0 ? (double)ts.tv_sec + ts.tv_nsec * 1e-9 - start : NAN;
    double v = metric(s, "itscam_inflight_requests", NULL, &found);
    st->inflight = found ? v : NAN;
    v = metric(s, "itscam_process_cpu_seconds_total", NULL, &found);
    st->cpu_seconds = found ? v : NAN;
    v = metric(s, "itscam_process_resident_memory_bytes", NULL, &found);
    st->rss_bytes = found ? v : NAN;
    v = metric(s, "itscam_sla_seconds", NULL, &found);
    st->sla_seconds = found ? v : NAN;
    st->dropped = metric(s, "itscam_metrics_dropped_total", NULL, NULL);
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->s[i].name, "itscam_build_info")) {
            if (prom_label(&s->s[i], "version", st->version, sizeof st->version)) st->version[0] = 0;
            if (prom_label(&s->s[i], "backends", st->backends, sizeof st->backends)) st->backends[0] = 0;
            break;
        }
}

/* Names from /v1/models, so that a model that has served nothing is still listed. */
static void models_from_api(model_list *m, const char *text, size_t len) {
    json_error_t je;
    json_t *root = json_loadb(text, len, 0, &je);
    json_t *arr = root ? json_object_get(root, "models") : NULL;
    size_t i;
    json_t *e;
    if (json_is_array(arr))
        json_array_foreach(arr, i, e) {
            model_entry *me = models_add(m, json_string_value(json_object_get(e, "name")));
            json_t *r = json_object_get(e, "ready");
            if (me && json_is_boolean(r)) me->api_ready = json_is_true(r);
        }
    json_decref(root);
}

/* The cameras of /v1/cameras as a table (nothing when the server has none). */
static void cameras_table(const json_t *root) {
    const json_t *arr = json_object_get(root, "cameras");
    if (!json_is_array(arr) || json_array_size(arr) == 0) return;
    const json_t *shed = json_object_get(root, "shed");
    printf("\n%-16s %-8s %-12s %5s %7s %7s %7s %7s %8s %8s %8s %7s %5s %s\n", "CAMERA", "PRIO", "STATE", "SHED",
           "IN_FPS", "DEC_FPS", "DET_FPS", "TARGET", "P50_MS", "P95_MS", "P99_MS", "DROPPED", "QUAL", "NOTE");
    size_t i;
    json_t *c;
    json_array_foreach(arr, i, c) {
        const json_t *fps = json_object_get(c, "fps"), *lat = json_object_get(c, "latency_ms");
        const json_t *dr = json_object_get(json_object_get(c, "frames"), "dropped"), *q = json_object_get(c, "quality");
        double dropped = json_number_value(json_object_get(dr, "stale")) +
                         json_number_value(json_object_get(dr, "queue_full"));
        const char *note = json_string_value(json_object_get(c, "last_error"));
        if ((!note || !*note) && json_is_true(json_object_get(q, "degraded")))
            note = json_string_value(json_object_get(q, "reason"));
        printf("%-16.16s %-8s %-12s %5d %7.2f %7.2f %7.2f %7.2f %8.1f %8.1f %8.1f %7.0f %5.2f %s\n",
               json_string_value(json_object_get(c, "id")), json_string_value(json_object_get(c, "priority")),
               json_string_value(json_object_get(c, "state")), (int)json_integer_value(json_object_get(c, "shed_level")),
               json_number_value(json_object_get(fps, "input")), json_number_value(json_object_get(fps, "decoded")),
               json_number_value(json_object_get(fps, "detected")), json_number_value(json_object_get(fps, "target")),
               json_number_value(json_object_get(lat, "p50")), json_number_value(json_object_get(lat, "p95")),
               json_number_value(json_object_get(lat, "p99")), dropped, json_number_value(json_object_get(q, "score")),
               note ? note : "");
    }
    printf("cameras: fps over the last seconds; latency from capture to result; dropped = stale + queue full; "
           "shed step %d\n", (int)json_integer_value(json_object_get(shed, "step")));
}

static int run_status(client *c, int detailed, int as_json) {
    char err[MAX_URL + 512];
    snapshot s;
    if (scrape(c, &s, err, sizeof err)) {
        fprintf(stderr, "itscam performance: %s\n", err);
        return 1;
    }
    server_status st;
    memset(&st, 0, sizeof st);
    st.url = c->base;
    st.ready = NAN;
    long code;
    if (!http_get(c, "/v2/health/ready", 65536, &code, err, sizeof err)) {
        st.ready = code == 200;
        st.ready_code = code;
    } else {
        fprintf(stderr, "itscam performance: %s\n", err);
    }
    model_list *models = calloc(1, sizeof *models);
    model_status *mst = calloc(MAX_MODELS, sizeof *mst);
    if (!models || !mst) {
        fprintf(stderr, "itscam performance: out of memory\n");
        free(models);
        free(mst);
        snapshot_free(&s);
        return 1;
    }
    if (!http_get(c, "/v1/models", MAX_JSON_BYTES, &code, err, sizeof err) && code == 200 && c->body.p)
        models_from_api(models, c->body.p, c->body.len);
    models_from_metrics(models, &s);
    models_sort(models);
    server_status_get(&s, &st);
    for (int i = 0; i < models->n; i++) {
        model_status_get(&s, models->e[i].name, &mst[i]);
        if (!isfinite(mst[i].ready)) mst[i].ready = models->e[i].api_ready;
    }
    json_t *cams = NULL;
    if (!http_get(c, "/v1/cameras", MAX_JSON_BYTES, &code, err, sizeof err) && code == 200 && c->body.p)
        cams = json_loadb(c->body.p, c->body.len, 0, NULL);
    if (as_json) {
        json_t *root = status_json(&st, mst, models->n, detailed);
        if (cams) json_object_set(root, "cameras", json_object_get(cams, "cameras"));
        if (cams) json_object_set(root, "shed", json_object_get(cams, "shed"));
        json_dumpf(root, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
        fputc('\n', stdout);
        json_decref(root);
    } else {
        status_table(&st, mst, models->n, detailed);
        if (cams) cameras_table(cams);
    }
    json_decref(cams);
    free(mst);
    free(models);
    snapshot_free(&s);
    return 0;
}

/* ---- monitor ------------------------------------------------------------------------ */

static void monitor_print(const char *url, const snapshot *prev, const snapshot *cur, int tty) {
    double dt = cur->t - prev->t;
    if (!(dt > 0)) dt = 1e-9;
    char a[64], b[64], c[64], tbuf[32];
    time_t wall = time(NULL);
    struct tm tmv;
    localtime_r(&wall, &tmv);
    strftime(tbuf, sizeof tbuf, "%H:%M:%S", &tmv);
    int found_cpu0, found_cpu1, found;
    double cpu0 = metric(prev, "itscam_process_cpu_seconds_total", NULL, &found_cpu0);
    double cpu1 = metric(cur, "itscam_process_cpu_seconds_total", NULL, &found_cpu1);
    double cpu = found_cpu0 && found_cpu1 ? increase(cpu1, cpu0) / dt * 100 : NAN;
    double inflight = metric(cur, "itscam_inflight_requests", NULL, &found);
    if (!found) inflight = NAN;
    double rss = metric(cur, "itscam_process_resident_memory_bytes", NULL, &found);
    if (!found) rss = NAN;
    if (tty) printf("\033[H\033[2J");
    printf("itscam %s  %s  over %.1f s  in flight %s  CPU %s%%  RSS %s\n", url, tbuf, dt,
           fmt_num(a, sizeof a, "%.0f", inflight), fmt_num(b, sizeof b, "%.0f", cpu), fmt_bytes(c, sizeof c, rss));
    model_list models = {0};
    models_from_metrics(&models, cur);
    models_sort(&models);
    printf("%-20s %9s %8s %8s %8s %6s %6s %6s %6s\n", "MODEL", "REQ/S", "ERR/S", "P50_MS", "P95_MS", "BATCH",
           "Q_URG", "Q_NORM", "Q_BAT");
    for (int i = 0; i < models.n; i++) {
        const char *name = models.e[i].name;
        const char *const match[] = {"model", name, NULL};
        double r0[6], r1[6];
        requests_by_class(prev, name, r0);
        requests_by_class(cur, name, r1);
        double req = increase(r1[0], r0[0]) / dt;
        double errs = (increase(r1[4], r0[4]) + increase(r1[5], r0[5])) / dt;
        hist l0, l1, ld, b0, b1, bd;
        hist_get(prev, "itscam_request_duration_seconds", match, &l0);
        hist_get(cur, "itscam_request_duration_seconds", match, &l1);
        hist_delta(&l1, &l0, &ld);
        hist_get(prev, "itscam_batch_size", match, &b0);
        hist_get(cur, "itscam_batch_size", match, &b1);
        hist_delta(&b1, &b0, &bd);
        char q[N_PRIO][16], p50[16], p95[16], bm[16];
        for (int p = 0; p < N_PRIO; p++) {
            const char *const mp[] = {"model", name, "priority", it_sched_prio_name(p), NULL};
            double v = metric(cur, "itscam_queue_depth", mp, &found);
            fmt_num(q[p], sizeof q[p], "%.0f", found ? v : NAN);
        }
        printf("%-20s %9.1f %8.1f %8s %8s %6s %6s %6s %6s\n", name, req, errs,
               fmt_num(p50, sizeof p50, "%.2f", ms(hist_q(&ld, 0.50))),
               fmt_num(p95, sizeof p95, "%.2f", ms(hist_q(&ld, 0.95))),
               fmt_num(bm, sizeof bm, "%.2f", hist_mean(&bd)), q[0], q[1], q[2]);
    }
    if (models.n == 0) printf("(no models reported yet)\n");
    if (!tty) printf("\n");
    fflush(stdout);
}

static int run_monitor(client *c, double interval, double duration) {
    char err[MAX_URL + 512];
    snapshot prev, cur;
    if (scrape(c, &prev, err, sizeof err)) {
        fprintf(stderr, "itscam performance: %s\n", err);
        return 1;
    }
    int tty = isatty(STDOUT_FILENO);
    struct sigaction old;
    trap_sigint(&old);
    double t_begin = now_s();
    if (!tty) printf("monitoring %s every %.1f s\n\n", c->base, interval);
    else printf("\033[H\033[2Jmonitoring %s every %.1f s; Ctrl-C stops\n", c->base, interval);
    fflush(stdout);
    while (!stop_requested) {
        double wait = interval;
        if (duration > 0) {
            double left = t_begin + duration - now_s();
            if (left <= 1e-3) break;
            if (left < wait) wait = left;
        }
        sleep_s(wait);
        if (stop_requested) break;
        if (scrape(c, &cur, err, sizeof err)) {
            /* Keep going: a server restarting or briefly busy should not end the watch. */
            fprintf(stderr, "itscam performance: %s\n", err);
            continue;
        }
        monitor_print(c->base, &prev, &cur, tty);
        snapshot_free(&prev);
        prev = cur;
    }
    snapshot_free(&prev);
    restore_sigint(&old);
    return 0;
}

/* ---- benchmark ---------------------------------------------------------------------- */

typedef struct bench_image {
    char *data;
    size_t len;
    int png;
} bench_image;

enum { PHASE_WARMUP, PHASE_MEASURE, PHASE_STOP };

typedef struct bench_ctx {
    const char *url;
    const char *auth; /* "Authorization: Bearer ..." or "" */
    const bench_image *images;
    int n_images;
    atomic_int phase;
} bench_ctx;

typedef struct bench_worker {
    bench_ctx *ctx;
    int id;
    pthread_t th;
    double *lat; /* ms, successful requests completed in the measured window */
    size_t n_lat, cap_lat;
    long ok, rejected, timeouts, errors;
    char first_error[MAX_ERROR_BODY + 64];
    char body[MAX_ERROR_BODY]; /* the start of the last answer, for error messages */
    size_t body_len;
} bench_worker;

/* Keep the start of the answer (an error message is short), drop the rest. */
static size_t keep_start(char *data, size_t size, size_t nmemb, void *user) {
    bench_worker *w = user;
    size_t n = size * nmemb, room = sizeof w->body - 1 - w->body_len;
    size_t k = n < room ? n : room;
    memcpy(w->body + w->body_len, data, k);
    w->body_len += k;
    w->body[w->body_len] = 0;
    return n;
}

static void push_latency(bench_worker *w, double v) {
    if (w->n_lat == w->cap_lat) {
        if (w->cap_lat >= MAX_LAT_PER_THREAD) return;
        size_t nc = w->cap_lat ? w->cap_lat * 2 : 4096;
        double *nl = realloc(w->lat, sizeof *nl * nc);
        if (!nl) return;
        w->lat = nl;
        w->cap_lat = nc;
    }
    w->lat[w->n_lat++] = v;
}

static void *bench_thread(void *arg) {
    bench_worker *w = arg;
    bench_ctx *c = w->ctx;
    char errbuf[CURL_ERROR_SIZE];
    struct curl_slist *hdr[2] = {NULL, NULL};
    CURL *h = curl_easy_init();
    for (int k = 0; k < 2; k++) {
        /* "Expect:" turns off the 100-continue round trip curl makes before large bodies. */
        const char *lines[3] = {k ? "Content-Type: image/png" : "Content-Type: image/jpeg", "Expect:", c->auth};
        struct curl_slist *l = NULL;
        for (int j = 0; j < 3 && lines[j][0]; j++) {
            struct curl_slist *t = curl_slist_append(l, lines[j]);
            if (!t) {
                curl_slist_free_all(l);
                l = NULL;
                break;
            }
            l = t;
        }
        hdr[k] = l;
    }
    if (!h || !hdr[0] || !hdr[1]) {
        snprintf(w->first_error, sizeof w->first_error, "cannot set up a connection: out of memory");
        w->errors++;
        goto out;
    }
    curl_easy_setopt(h, CURLOPT_URL, c->url);
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, REQUEST_TIMEOUT_MS);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, keep_start);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, w);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "itscam-performance");
    int k = w->id % c->n_images;
    while (atomic_load(&c->phase) != PHASE_STOP) {
        const bench_image *im = &c->images[k];
        k = (k + 1) % c->n_images;
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, im->data);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)im->len);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr[im->png]);
        errbuf[0] = 0;
        w->body_len = 0;
        w->body[0] = 0;
        double t0 = now_s();
        CURLcode rc = curl_easy_perform(h);
        double t1 = now_s();
        long code = 0;
        if (rc == CURLE_OK) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
        int ok = rc == CURLE_OK && code >= 200 && code < 300;
        int known = ok || (rc == CURLE_OK && (code == 503 || code == 504));
        if (!known && !w->first_error[0]) {
            if (rc != CURLE_OK)
                snprintf(w->first_error, sizeof w->first_error, "%s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
            else snprintf(w->first_error, sizeof w->first_error, "HTTP %ld: %s", code, w->body);
        }
        /* Only completions inside the window count, as perf_analyzer does. */
        if (atomic_load(&c->phase) == PHASE_MEASURE) {
            if (ok) {
                w->ok++;
                push_latency(w, (t1 - t0) * 1000.0);
            } else if (rc == CURLE_OK && code == 503) w->rejected++;
            else if (rc == CURLE_OK && code == 504) w->timeouts++;
            else w->errors++;
        }
        if (rc != CURLE_OK) { /* a refused connection must not spin a core */
            struct timespec ts = {0, 10 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
out:
    curl_slist_free_all(hdr[0]);
    curl_slist_free_all(hdr[1]);
    if (h) curl_easy_cleanup(h);
    return NULL;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct bench_result {
    int concurrency;
    double seconds, throughput, p50, p90, p95, p99;
    long ok, rejected, timeouts, errors;
    double queue_ms, inference_ms, batch_mean;
} bench_result;

/* Mean of histogram `name` per observation between two scrapes, NaN without data. */
static double mean_between(const snapshot *before, const snapshot *after, const char *name, const char *const *match) {
    char nm[MAX_NAME + 16];
    snprintf(nm, sizeof nm, "%s_sum", name);
    double s = increase(metric(after, nm, match, NULL), metric(before, nm, match, NULL));
    snprintf(nm, sizeof nm, "%s_count", name);
    double n = increase(metric(after, nm, match, NULL), metric(before, nm, match, NULL));
    return n > 0 ? s / n : NAN;
}

static int load_images(const char *dir, bench_image **out, int *n_out) {
    cli_paths paths = {0};
    *out = NULL;
    *n_out = 0;
    if (cli_collect_images(&paths, dir)) {
        cli_paths_free(&paths);
        return -1;
    }
    if (paths.n == 0) {
        fprintf(stderr, "itscam performance: %s: no .jpg, .jpeg or .png files\n", dir);
        cli_paths_free(&paths);
        return -1;
    }
    int n = paths.n < MAX_BENCH_IMAGES ? paths.n : MAX_BENCH_IMAGES;
    bench_image *im = calloc((size_t)n, sizeof *im);
    int rc = im ? 0 : -1, k = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        FILE *f = fopen(paths.v[i], "rb");
        long len = -1;
        if (f && fseek(f, 0, SEEK_END) == 0) len = ftell(f);
        if (!f || len <= 0 || (size_t)len > MAX_IMAGE_BYTES || fseek(f, 0, SEEK_SET) != 0) {
            fprintf(stderr, "itscam performance: %s: cannot read (or empty, or over %zu MiB)\n", paths.v[i],
                    MAX_IMAGE_BYTES >> 20);
            rc = -1;
        } else if (!(im[k].data = malloc((size_t)len)) || fread(im[k].data, 1, (size_t)len, f) != (size_t)len) {
            fprintf(stderr, "itscam performance: %s: read failed\n", paths.v[i]);
            free(im[k].data);
            im[k].data = NULL;
            rc = -1;
        } else {
            const char *dot = strrchr(paths.v[i], '.');
            im[k].len = (size_t)len;
            im[k].png = dot && !strcasecmp(dot, ".png");
            k++;
        }
        if (f) fclose(f);
    }
    if (!im) fprintf(stderr, "itscam performance: out of memory\n");
    cli_paths_free(&paths);
    if (rc) {
        for (int i = 0; i < k; i++) free(im[i].data);
        free(im);
        return -1;
    }
    *out = im;
    *n_out = k;
    return 0;
}

/* Run one concurrency level. Returns 0 with *r filled, 1 when interrupted before the
 * measured window began (no result), -1 when threads could not start. */
static int bench_level(client *c, bench_ctx *ctx, int conc, double warmup, double duration, const char *model,
                       bench_result *r) {
    char err[MAX_URL + 512];
    memset(r, 0, sizeof *r);
    r->concurrency = conc;
    bench_worker *w = calloc((size_t)conc, sizeof *w);
    if (!w) {
        fprintf(stderr, "itscam performance: out of memory\n");
        return -1;
    }
    atomic_store(&ctx->phase, PHASE_WARMUP);
    int started = 0, rc = 0;
    for (; started < conc; started++) {
        w[started].ctx = ctx;
        w[started].id = started;
        if (pthread_create(&w[started].th, NULL, bench_thread, &w[started])) {
            fprintf(stderr, "itscam performance: cannot start thread %d of %d\n", started + 1, conc);
            rc = -1;
            break;
        }
    }
    snapshot before = {0}, after = {0};
    int have_before = 0, have_after = 0;
    double t0 = 0, t1 = 0;
    if (rc == 0) {
        sleep_s(warmup);
        if (stop_requested) rc = 1;
    }
    if (rc == 0) {
        if (scrape(c, &before, err, sizeof err) == 0) have_before = 1;
        else fprintf(stderr, "itscam performance: no server-side numbers: %s\n", err);
        t0 = now_s();
        atomic_store(&ctx->phase, PHASE_MEASURE);
        sleep_s(duration);
        t1 = now_s();
    }
    atomic_store(&ctx->phase, PHASE_STOP);
    if (rc == 0 && have_before) {
        if (scrape(c, &after, err, sizeof err) == 0) have_after = 1;
        else fprintf(stderr, "itscam performance: no server-side numbers: %s\n", err);
    }
    for (int i = 0; i < started; i++) pthread_join(w[i].th, NULL);

    size_t total = 0;
    for (int i = 0; i < started; i++) {
        r->ok += w[i].ok;
        r->rejected += w[i].rejected;
        r->timeouts += w[i].timeouts;
        r->errors += w[i].errors;
        total += w[i].n_lat;
    }
    const char *first = NULL;
    for (int i = 0; i < started && !first; i++)
        if (w[i].first_error[0]) first = w[i].first_error;
    if (first) fprintf(stderr, "itscam performance: concurrency %d: first failed request: %s\n", conc, first);
    if (rc == 0) {
        double *all = total ? malloc(sizeof *all * total) : NULL;
        size_t k = 0;
        if (all) {
            for (int i = 0; i < started; i++) {
                if (!w[i].n_lat) continue; /* lat may be NULL then */
                memcpy(all + k, w[i].lat, sizeof *all * w[i].n_lat);
                k += w[i].n_lat;
            }
            qsort(all, k, sizeof *all, cmp_double);
        }
        r->seconds = t1 - t0;
        r->throughput = r->seconds > 0 ? r->ok / r->seconds : NAN;
        r->p50 = it_percentile(all, k, 50);
        r->p90 = it_percentile(all, k, 90);
        r->p95 = it_percentile(all, k, 95);
        r->p99 = it_percentile(all, k, 99);
        free(all);
        const char *const match[] = {"model", model, NULL};
        const char *const *mm = model ? match : NULL;
        r->queue_ms = r->inference_ms = r->batch_mean = NAN;
        if (have_before && have_after) {
            r->queue_ms = ms(mean_between(&before, &after, "itscam_queue_duration_seconds", mm));
            r->inference_ms = ms(mean_between(&before, &after, "itscam_inference_duration_seconds", mm));
            r->batch_mean = mean_between(&before, &after, "itscam_batch_size", mm);
        }
    }
    for (int i = 0; i < started; i++) free(w[i].lat);
    free(w);
    snapshot_free(&before);
    snapshot_free(&after);
    return rc;
}

static void bench_print_row(const bench_result *r) {
    char p[4][16], q[16], inf[16], b[16], t[16];
    printf("%11d %12s %9s %9s %9s %9s %8ld %7ld %8ld %8ld %12s %12s %6s\n", r->concurrency,
           fmt_num(t, sizeof t, "%.1f", r->throughput), fmt_num(p[0], sizeof p[0], "%.2f", r->p50),
           fmt_num(p[1], sizeof p[1], "%.2f", r->p90), fmt_num(p[2], sizeof p[2], "%.2f", r->p95),
           fmt_num(p[3], sizeof p[3], "%.2f", r->p99), r->ok, r->errors, r->rejected, r->timeouts,
           fmt_num(q, sizeof q, "%.2f", r->queue_ms), fmt_num(inf, sizeof inf, "%.2f", r->inference_ms),
           fmt_num(b, sizeof b, "%.2f", r->batch_mean));
    fflush(stdout);
}

static json_t *bench_result_json(const bench_result *r) {
    json_t *o = json_object(), *l = json_object();
    json_object_set_new(o, "concurrency", json_integer(r->concurrency));
    json_object_set_new(o, "throughput_rps", jnum(r->throughput));
    json_object_set_new(l, "p50", jnum(r->p50));
    json_object_set_new(l, "p90", jnum(r->p90));
    json_object_set_new(l, "p95", jnum(r->p95));
    json_object_set_new(l, "p99", jnum(r->p99));
    json_object_set_new(o, "latency_ms", l);
    json_object_set_new(o, "ok", json_integer(r->ok));
    json_object_set_new(o, "rejected", json_integer(r->rejected));
    json_object_set_new(o, "timeouts", json_integer(r->timeouts));
    json_object_set_new(o, "errors", json_integer(r->errors));
    json_object_set_new(o, "server_queue_ms", jnum(r->queue_ms));
    json_object_set_new(o, "server_inference_ms", jnum(r->inference_ms));
    json_object_set_new(o, "batch_mean", jnum(r->batch_mean));
    json_object_set_new(o, "duration_s", jnum(r->seconds));
    return o;
}

static int run_benchmark(client *c, const int *levels, int n_levels, double duration, double warmup,
                         const char *images_dir, const char *model, const char *priority, const char *auth,
                         int as_json) {
    char err[MAX_URL + 512];
    long code;
    if (http_get(c, "/v2/health/ready", 65536, &code, err, sizeof err)) {
        fprintf(stderr, "itscam performance: %s\n", err);
        return 1;
    }
    if (code != 200) fprintf(stderr, "itscam performance: warning: %s is not ready (HTTP %ld)\n", c->base, code);

    bench_image *images = NULL;
    int n_images = 0;
    if (load_images(images_dir, &images, &n_images)) return 1;

    char url[MAX_URL + 512];
    int n = snprintf(url, sizeof url, "%s/v1/detect?priority=%s", c->base, priority);
    if (model) {
        char *esc = curl_easy_escape(c->h, model, 0);
        if (esc) n = snprintf(url, sizeof url, "%s/v1/detect?model=%s&priority=%s", c->base, esc, priority);
        curl_free(esc);
        if (!esc) n = (int)sizeof url;
    }
    if (n >= (int)sizeof url) {
        fprintf(stderr, "itscam performance: the request URL is too long\n");
        for (int i = 0; i < n_images; i++) free(images[i].data);
        free(images);
        return 2;
    }

    struct sigaction old;
    trap_sigint(&old);
    bench_ctx ctx = {.url = url, .auth = auth, .images = images, .n_images = n_images};
    atomic_init(&ctx.phase, PHASE_WARMUP);
    json_t *root = json_object(), *results = json_array();
    int rc = 0;
    long total_ok = 0;
    if (!as_json)
        printf("%11s %12s %9s %9s %9s %9s %8s %7s %8s %8s %12s %12s %6s\n", "CONCURRENCY", "THROUGHPUT/S", "P50_MS",
               "P90_MS", "P95_MS", "P99_MS", "OK", "ERRORS", "REJECTED", "TIMEOUTS", "SRV_QUEUE_MS", "SRV_INFER_MS",
               "BATCH");
    for (int i = 0; i < n_levels && !stop_requested; i++) {
        fprintf(stderr, "itscam performance: concurrency %d: %g s warmup, %g s measured, %d image%s\n",
                levels[i], warmup, duration, n_images, n_images == 1 ? "" : "s");
        bench_result r;
        int lr = bench_level(c, &ctx, levels[i], warmup, duration, model, &r);
        if (lr < 0) {
            rc = 1;
            break;
        }
        if (lr > 0) break;
        total_ok += r.ok;
        if (as_json) json_array_append_new(results, bench_result_json(&r));
        else bench_print_row(&r);
    }
    if (stop_requested) {
        fprintf(stderr, "itscam performance: interrupted\n");
        if (rc == 0) rc = 130; /* as a shell reports Ctrl-C: the results are incomplete */
    } else if (rc == 0 && total_ok == 0) {
        fprintf(stderr, "itscam performance: no request succeeded\n");
        rc = 1;
    }
    if (as_json) {
        json_object_set_new(root, "results", results);
        json_dumpf(root, stdout, JSON_COMPACT | JSON_REAL_PRECISION(6));
        fputc('\n', stdout);
    } else {
        json_decref(results);
        printf("latency: client side, successful requests; SRV_*: server means per request over the same window\n");
    }
    json_decref(root);
    restore_sigint(&old);
    for (int i = 0; i < n_images; i++) free(images[i].data);
    free(images);
    return rc;
}

/* ---- argument parsing --------------------------------------------------------------- */

static int parse_seconds(const char *s, double *out, int allow_zero) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !isfinite(v) || v < 0 || (v == 0 && !allow_zero) || v > MAX_SECONDS) return -1;
    *out = v;
    return 0;
}

static int parse_levels(const char *s, int *levels, int *n) {
    *n = 0;
    for (const char *p = s; *p;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 1 || v > MAX_CONCURRENCY || *n >= MAX_LEVELS) return -1;
        levels[(*n)++] = (int)v;
        if (*end && *end != ',') return -1;
        p = *end == ',' ? end + 1 : end;
    }
    return *n > 0 ? 0 : -1;
}

enum { SUB_STATUS, SUB_MONITOR, SUB_BENCHMARK };

int cli_performance(int argc, char **argv) {
    static const struct option opts[] = {
        {"url", required_argument, 0, 'u'},         {"token", required_argument, 0, 'T'},
        {"detailed", no_argument, 0, 'D'},          {"format", required_argument, 0, 'f'},
        {"interval", required_argument, 0, 'i'},    {"duration", required_argument, 0, 'd'},
        {"concurrency", required_argument, 0, 'c'}, {"warmup", required_argument, 0, 'w'},
        {"images", required_argument, 0, 'I'},      {"model", required_argument, 0, 'm'},
        {"priority", required_argument, 0, 'p'},    {"json", no_argument, 0, 'j'},
        {"help", no_argument, 0, 'h'},              {0, 0, 0, 0},
    };
    /* Which options each subcommand takes (the rest are refused, not ignored). */
    static const char *const allowed[] = {"uTDfh", "uTidh", "uTdcwImpjh"};
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        cli_performance_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    int sub;
    if (!strcmp(argv[1], "optimize")) return cli_optimize(argc - 1, argv + 1);
    /* Camera capacity runs in process and has options of its own (cli_camera_bench.c). */
    if (!strcmp(argv[1], "benchmark"))
        for (int i = 2; i < argc; i++) {
            static const char *const camera_flags[] = {"--cameras", "--streams", "--source", "--find-max", NULL};
            for (int k = 0; camera_flags[k]; k++) {
                size_t l = strlen(camera_flags[k]);
                if (!strncmp(argv[i], camera_flags[k], l) && (argv[i][l] == 0 || argv[i][l] == '='))
                    return cli_camera_bench(argc - 1, argv + 1);
            }
        }
    if (!strcmp(argv[1], "status")) sub = SUB_STATUS;
    else if (!strcmp(argv[1], "monitor")) sub = SUB_MONITOR;
    else if (!strcmp(argv[1], "benchmark")) sub = SUB_BENCHMARK;
    else {
        fprintf(stderr, "itscam performance: unknown subcommand '%s' (status, monitor, benchmark or optimize)\n",
                argv[1]);
        return 2;
    }
    const char *url = DEFAULT_URL, *token = getenv("ITSCAM_TOKEN"), *images = NULL, *model = NULL;
    const char *priority = "normal";
    int detailed = 0, as_json = 0, levels[MAX_LEVELS] = {1, 4, 16, 64}, n_levels = 4;
    double interval = 2, duration = sub == SUB_BENCHMARK ? 10 : 0, warmup = 2;
    char prog[64], *sub_arg = argv[1];
    snprintf(prog, sizeof prog, "itscam performance %s", sub_arg);
    int c, li = -1;
    optind = 1;
    for (;;) {
        /* getopt names argv[0] (here the subcommand) in its messages: lend it the full name. */
        argv[1] = prog;
        c = getopt_long(argc - 1, argv + 1, "h", opts, &li);
        argv[1] = sub_arg;
        if (c == -1) break;
        if (c == '?' || !strchr(allowed[sub], c)) {
            if (c != '?') fprintf(stderr, "itscam performance %s: --%s does not apply\n", argv[1], opts[li].name);
            fprintf(stderr, "run 'itscam performance --help' for the options\n");
            return 2;
        }
        switch (c) {
        case 'u': url = optarg; break;
        case 'T': token = optarg; break;
        case 'D': detailed = 1; break;
        case 'f':
            if (!strcmp(optarg, "json")) as_json = 1;
            else if (!strcmp(optarg, "table")) as_json = 0;
            else goto bad;
            break;
        case 'i': if (parse_seconds(optarg, &interval, 0) || interval < 0.1) goto bad; break;
        case 'd': if (parse_seconds(optarg, &duration, 0)) goto bad; break;
        case 'c': if (parse_levels(optarg, levels, &n_levels)) goto bad; break;
        case 'w': if (parse_seconds(optarg, &warmup, 1)) goto bad; break;
        case 'I': images = optarg; break;
        case 'm': if (!*optarg) goto bad; model = optarg; break;
        case 'p':
            if (it_sched_prio_parse(optarg) < 0) goto bad;
            priority = it_sched_prio_name(it_sched_prio_parse(optarg));
            break;
        case 'j': as_json = 1; break;
        case 'h': cli_performance_usage(stdout); return 0;
        }
        li = -1;
    }
    if (optind < argc - 1) {
        fprintf(stderr, "itscam performance %s: unexpected argument '%s'\n", argv[1], argv[optind + 1]);
        return 2;
    }
    char base[MAX_URL], auth[MAX_TOKEN + 32];
    if (normalize_url(base, sizeof base, url)) {
        fprintf(stderr, "itscam performance: bad --url '%s'\n", url);
        return 2;
    }
    if (make_auth(auth, sizeof auth, token)) {
        fprintf(stderr, "itscam performance: the token is too long or holds a line break\n");
        return 2;
    }
    char images_default[4096];
    if (sub == SUB_BENCHMARK && !images) {
        const char *shared = getenv("ITSCAM_SHARED");
        struct stat st;
        if (shared && *shared && snprintf(images_default, sizeof images_default, "%s/images", shared) <
                                         (int)sizeof images_default &&
            stat(images_default, &st) == 0 && S_ISDIR(st.st_mode))
            images = images_default;
        else {
            fprintf(stderr, "itscam performance benchmark: --images DIR is required "
                            "(or $ITSCAM_SHARED/images must exist)\n");
            return 2;
        }
    }

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "itscam performance: libcurl failed to initialise\n");
        return 1;
    }
    client cl;
    int rc;
    if (client_init(&cl, base, auth)) {
        fprintf(stderr, "itscam performance: libcurl: out of memory\n");
        rc = 1;
    } else if (sub == SUB_STATUS) {
        rc = run_status(&cl, detailed, as_json);
    } else if (sub == SUB_MONITOR) {
        rc = run_monitor(&cl, interval, duration);
    } else {
        rc = run_benchmark(&cl, levels, n_levels, duration, warmup, images, model, priority, auth, as_json);
    }
    client_free(&cl);
    curl_global_cleanup();
    return rc;
bad:
    fprintf(stderr, "itscam performance %s: bad value for --%s: '%s'\n", argv[1], li >= 0 ? opts[li].name : "?",
            optarg);
    return 2;
}
