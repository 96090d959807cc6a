/* The Prometheus registry: exact text for a small case, escaping, number spelling, the
 * label set limit, exact totals under 4 threads, parsing back, and quantile estimates.
 * Then `itscam performance` end to end against a fake server (libmicrohttpd) whose
 * /metrics is this registry, so that the CLI's sums, deltas and quantiles are checked
 * against hand-computed values. */
#include "check.h"
#include "server/prom.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <math.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <time.h>

#define LV(...) ((const char *const[]){__VA_ARGS__})

static int count_lines(const char *s, const char *prefix) {
    int n = 0;
    size_t pl = strlen(prefix);
    for (const char *p = s; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (!strncmp(p, prefix, pl)) n++;
    return n;
}

static double dropped(prom_registry *r) {
    size_t len;
    char *t = prom_render(r, &len);
    prom_sample s[2048];
    char err[256];
    int n = t ? prom_parse(t, len, s, 2048, err, sizeof err) : -1;
    int found = 0;
    double v = n > 0 ? prom_sum(s, n, "itscam_metrics_dropped_total", NULL, &found) : -1;
    free(t);
    return found == 1 ? v : -1;
}

static void test_render_exact(void) {
    prom_registry *r = prom_registry_new();
    CHECK(r != NULL);
    if (!r) return;
    prom_family *c = prom_register(r, PROM_COUNTER, "t_requests_total", "Requests.",
                                   LV("route", "code", NULL), NULL, 0);
    prom_family *g = prom_register(r, PROM_GAUGE, "t_inflight", "In flight.", NULL, NULL, 0);
    const double hb[] = {0.1, 1};
    prom_family *h = prom_register(r, PROM_HISTOGRAM, "t_latency_seconds", "Latency.\nsecond line \\ ok",
                                   LV("model", NULL), hb, 2);
    prom_family *e = prom_register(r, PROM_GAUGE, "t_empty", "", LV("x", NULL), NULL, 0);
    CHECK(c && g && h && e);
    prom_inc(c, LV("/v1/detect", "200"), 1);
    prom_inc(c, LV("/metrics", "200"), 1);
    prom_inc(c, LV("/v1/detect", "200"), 1);
    prom_set(g, NULL, 3);
    prom_inc(g, NULL, -1);
    prom_observe(h, LV("a"), 0.0625);
    prom_observe(h, LV("a"), 0.5);
    prom_observe(h, LV("a"), 4);
    size_t len = 0;
    char *t = prom_render(r, &len);
    const char *want =
        "# HELP t_requests_total Requests.\n"
        "# TYPE t_requests_total counter\n"
        "t_requests_total{route=\"/v1/detect\",code=\"200\"} 2\n"
        "t_requests_total{route=\"/metrics\",code=\"200\"} 1\n"
        "# HELP t_inflight In flight.\n"
        "# TYPE t_inflight gauge\n"
        "t_inflight 2\n"
        "# HELP t_latency_seconds Latency.\\nsecond line \\\\ ok\n"
        "# TYPE t_latency_seconds histogram\n"
        "t_latency_seconds_bucket{model=\"a\",le=\"0.1\"} 1\n"
        "t_latency_seconds_bucket{model=\"a\",le=\"1\"} 2\n"
        "t_latency_seconds_bucket{model=\"a\",le=\"+Inf\"} 3\n"
        "t_latency_seconds_sum{model=\"a\"} 4.5625\n"
        "t_latency_seconds_count{model=\"a\"} 3\n"
        "# TYPE t_empty gauge\n"
        "# HELP itscam_metrics_dropped_total Metric updates dropped: label set limit, wrong type or bad arguments.\n"
        "# TYPE itscam_metrics_dropped_total counter\n"
        "itscam_metrics_dropped_total 0\n"
        "# HELP itscam_metrics_series_dropped_total Updates with a new label set beyond "
        "metrics.max_series_per_family, folded into the family's series whose labels are all \"_overflow\".\n"
        "# TYPE itscam_metrics_series_dropped_total counter\n";
    CHECKF(t && !strcmp(t, want), "got:\n%s", t ? t : "(null)");
    CHECK(t && len == strlen(t));
    free(t);
    prom_registry_free(r);
}

static void test_escaping_and_numbers(void) {
    prom_registry *r = prom_registry_new();
    prom_family *g = prom_register(r, PROM_GAUGE, "t_g", "g", LV("v", NULL), NULL, 0);
    const char *odd = "a\"b\\c\nd}e,f=\"";
    prom_set(g, LV(odd), 1);
    prom_set(g, LV("nan"), NAN);
    prom_set(g, LV("pinf"), INFINITY);
    prom_set(g, LV("minf"), -INFINITY);
    prom_set(g, LV("big"), 1e20);
    prom_set(g, LV("tenth"), 0.1);
    prom_set(g, LV("negzero"), -0.0);
    prom_set(g, LV("int"), 123456789012.0);
    prom_set(g, LV("neg"), -2.5);
    prom_set(g, LV("third"), 1.0 / 3);
    size_t len;
    char *t = prom_render(r, &len);
    CHECK(t != NULL);
    if (!t) {
        prom_registry_free(r);
        return;
    }
    CHECKF(strstr(t, "t_g{v=\"a\\\"b\\\\c\\nd}e,f=\\\"\"} 1\n") != NULL, "%s", t);
    CHECK(strstr(t, "t_g{v=\"nan\"} NaN\n"));
    CHECK(strstr(t, "t_g{v=\"pinf\"} +Inf\n"));
    CHECK(strstr(t, "t_g{v=\"minf\"} -Inf\n"));
    CHECK(strstr(t, "t_g{v=\"big\"} 1e+20\n"));
    CHECK(strstr(t, "t_g{v=\"tenth\"} 0.1\n"));
    CHECK(strstr(t, "t_g{v=\"negzero\"} 0\n"));
    CHECK(strstr(t, "t_g{v=\"int\"} 123456789012\n"));
    CHECK(strstr(t, "t_g{v=\"neg\"} -2.5\n"));
    CHECK(strstr(t, "t_g{v=\"third\"} 0.3333333333333333\n"));

    /* Parsed back, every value is the same double and the odd label unescapes. */
    prom_sample s[16];
    char err[256];
    int n = prom_parse(t, len, s, 16, err, sizeof err);
    CHECKF(n == 11, "n=%d err=%s", n, err);
    char buf[128];
    int seen = 0;
    for (int i = 0; i < n; i++) {
        if (strcmp(s[i].name, "t_g")) continue;
        CHECK(prom_label(&s[i], "v", buf, sizeof buf) == 0);
        if (!strcmp(buf, odd)) {
            seen++;
            CHECK(s[i].value == 1);
        }
        else if (!strcmp(buf, "nan")) CHECK(isnan(s[i].value));
        else if (!strcmp(buf, "pinf")) CHECK(isinf(s[i].value) && s[i].value > 0);
        else if (!strcmp(buf, "minf")) CHECK(isinf(s[i].value) && s[i].value < 0);
        else if (!strcmp(buf, "big")) CHECK(s[i].value == 1e20);
        else if (!strcmp(buf, "tenth")) CHECK(s[i].value == 0.1);
        else if (!strcmp(buf, "third")) CHECK(s[i].value == 1.0 / 3);
        else if (!strcmp(buf, "int")) CHECK(s[i].value == 123456789012.0);
    }
    CHECK(seen == 1);
    free(t);
    prom_registry_free(r);
}

static void test_bad_arguments(void) {
    prom_registry *r = prom_registry_new();
    const double inc[] = {1, 2}, dec[] = {2, 1}, inf[] = {1, INFINITY};
    CHECK(prom_register(r, PROM_COUNTER, "ok_total", "", NULL, NULL, 0) != NULL);
    CHECK(prom_register(r, PROM_COUNTER, "ok_total", "", NULL, NULL, 0) == NULL);  /* duplicate */
    CHECK(prom_register(r, PROM_COUNTER, "itscam_metrics_dropped_total", "", NULL, NULL, 0) == NULL);
    CHECK(prom_register(r, PROM_COUNTER, "1bad", "", NULL, NULL, 0) == NULL);
    CHECK(prom_register(r, PROM_COUNTER, "bad-name", "", NULL, NULL, 0) == NULL);
    CHECK(prom_register(r, PROM_COUNTER, "", "", NULL, NULL, 0) == NULL);
    CHECK(prom_register(r, PROM_COUNTER, "five", "", LV("a", "b", "c", "d", "e", NULL), NULL, 0) == NULL);
    CHECK(prom_register(r, PROM_COUNTER, "four", "", LV("a", "b", "c", "d", NULL), NULL, 0) != NULL);
    CHECK(prom_register(r, PROM_COUNTER, "dup_label", "", LV("a", "a", NULL), NULL, 0) == NULL);
    CHECK(prom_register(r, PROM_COUNTER, "reserved", "", LV("__a", NULL), NULL, 0) == NULL);
    CHECK(prom_register(r, PROM_HISTOGRAM, "h_le", "", LV("le", NULL), inc, 2) == NULL);
    CHECK(prom_register(r, PROM_HISTOGRAM, "h_dec", "", NULL, dec, 2) == NULL);
    CHECK(prom_register(r, PROM_HISTOGRAM, "h_inf", "", NULL, inf, 2) == NULL);
    CHECK(prom_register(r, PROM_HISTOGRAM, "h_null", "", NULL, NULL, 2) == NULL);
    prom_family *h = prom_register(r, PROM_HISTOGRAM, "h_ok", "", NULL, inc, 2);
    prom_family *c = prom_register(r, PROM_COUNTER, "c_total", "", LV("a", NULL), NULL, 0);
    CHECK(h && c);
    CHECK(dropped(r) == 0);
    prom_set(c, LV("x"), 1);      /* set on a counter */
    prom_inc(c, LV("x"), -1);     /* counters only go up */
    prom_inc(c, NULL, 1);         /* missing label values */
    prom_inc(h, NULL, 1);         /* inc on a histogram */
    CHECK(dropped(r) == 4);
    prom_inc(NULL, NULL, 1);      /* harmless */
    prom_registry_free(NULL);
    CHECK(prom_render(NULL, NULL) == NULL);
    prom_registry_free(r);
}

static double series_dropped(const char *t, const char *family) {
    static prom_sample s[2048];
    char err[256];
    int n = t ? prom_parse(t, strlen(t), s, 2048, err, sizeof err) : -1;
    int found = 0;
    double v = n > 0 ? prom_sum(s, n, "itscam_metrics_series_dropped_total", LV("family", family, NULL), &found) : -1;
    return found == 1 ? v : found == 0 ? 0 : -1;
}

/* The default cap: 1000 label sets, then one overflow series that counts the rest. */
static void test_label_limit(void) {
    prom_registry *r = prom_registry_new();
    prom_family *c = prom_register(r, PROM_COUNTER, "many_total", "", LV("id", NULL), NULL, 0);
    for (int i = 0; i < 1100; i++) {
        char v[16];
        snprintf(v, sizeof v, "%d", i);
        prom_inc(c, LV(v), 1);
        prom_inc(c, LV(v), 1);
    }
    prom_inc(c, LV("7"), 1); /* existing sets still update */
    size_t len;
    char *t = prom_render(r, &len);
    CHECKF(t && count_lines(t, "many_total{") == 1001, "%d", t ? count_lines(t, "many_total{") : -1);
    CHECK(t && strstr(t, "many_total{id=\"7\"} 3\n"));
    CHECK(t && strstr(t, "many_total{id=\"999\"} 2\n"));
    CHECK(t && !strstr(t, "many_total{id=\"1000\"}"));
    CHECK(t && strstr(t, "many_total{id=\"_overflow\"} 200\n")); /* nothing is lost from the sum */
    CHECK(series_dropped(t, "many_total") == 200);
    free(t);
    CHECK(dropped(r) == 0);
    prom_registry_free(r);
}

/* A configured cap applies to families registered after it, to every label of a set, and
 * to every type; the overflow series of a histogram keeps the observations. */
static void test_series_cap(void) {
    prom_registry *r = prom_registry_new();
    CHECK(prom_set_max_series(r, 0) == -1 && prom_set_max_series(NULL, 5) == -1);
    prom_family *before = prom_register(r, PROM_GAUGE, "before", "", LV("k", NULL), NULL, 0);
    CHECK(prom_set_max_series(r, 3) == 0);
    prom_family *c = prom_register(r, PROM_COUNTER, "req_total", "", LV("route", "model", NULL), NULL, 0);
    const double hb[] = {1, 2};
    prom_family *h = prom_register(r, PROM_HISTOGRAM, "lat", "", LV("route", NULL), hb, 2);
    prom_family *g = prom_register(r, PROM_GAUGE, "plain", "", NULL, NULL, 0);
    CHECK(before && c && h && g);
    for (int i = 0; i < 1500; i++) { /* a client making up paths and model names */
        char route[32], model[32];
        snprintf(route, sizeof route, "/r%d", i);
        snprintf(model, sizeof model, "m%d", i * 7);
        prom_inc(c, LV(route, model), 1);
        prom_observe(h, LV(route), i < 3 ? 0.5 : 1.5);
        prom_set(before, LV(route), 1);
    }
    prom_set(g, NULL, 4);
    size_t len;
    char *t = prom_render(r, &len);
    CHECK(t && count_lines(t, "req_total{") == 4);
    CHECK(t && strstr(t, "req_total{route=\"_overflow\",model=\"_overflow\"} 1497\n"));
    CHECK(t && count_lines(t, "lat_count{") == 4);
    CHECK(t && strstr(t, "lat_bucket{route=\"_overflow\",le=\"1\"} 0\n"));
    CHECK(t && strstr(t, "lat_bucket{route=\"_overflow\",le=\"2\"} 1497\n"));
    CHECK(t && strstr(t, "lat_count{route=\"_overflow\"} 1497\n"));
    CHECK(t && count_lines(t, "before{") == 1001); /* registered under the default */
    CHECK(t && strstr(t, "plain 4\n"));
    CHECK(series_dropped(t, "req_total") == 1497 && series_dropped(t, "lat") == 1497);
    CHECK(series_dropped(t, "before") == 500);
    CHECK(t && len < 200 * 1024); /* bounded whatever the clients send */
    free(t);
    CHECK(dropped(r) == 0);
    prom_registry_free(r);
}

typedef struct worker_arg {
    prom_family *c, *g, *h;
    int id;
} worker_arg;

enum { N_THREADS = 4, N_ITERS = 50000 };

static void *worker(void *p) {
    worker_arg *a = p;
    static const char *const models[] = {"m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7"};
    for (int i = 0; i < N_ITERS; i++) {
        prom_inc(a->c, LV(models[i % 8], i % 2 ? "200" : "503"), 1);
        prom_inc(a->g, NULL, 1);
        prom_observe(a->h, LV(models[(i + a->id) % 8]), (i % 4) * 0.25); /* exact in binary */
    }
    return NULL;
}

static void test_threads(void) {
    prom_registry *r = prom_registry_new();
    const double hb[] = {0.3, 0.6};
    worker_arg a[N_THREADS];
    prom_family *c = prom_register(r, PROM_COUNTER, "req_total", "", LV("model", "code", NULL), NULL, 0);
    prom_family *g = prom_register(r, PROM_GAUGE, "g", "", NULL, NULL, 0);
    prom_family *h = prom_register(r, PROM_HISTOGRAM, "h_seconds", "", LV("model", NULL), hb, 2);
    pthread_t th[N_THREADS];
    for (int i = 0; i < N_THREADS; i++) {
        a[i] = (worker_arg){c, g, h, i};
        CHECK(pthread_create(&th[i], NULL, worker, &a[i]) == 0);
    }
    /* Render while the workers run: it must neither crash nor block them for long. */
    for (int i = 0; i < 5; i++) free(prom_render(r, NULL));
    for (int i = 0; i < N_THREADS; i++) pthread_join(th[i], NULL);
    size_t len;
    char *t = prom_render(r, &len);
    static prom_sample s[512];
    char err[256];
    int n = t ? prom_parse(t, len, s, 512, err, sizeof err) : -1;
    CHECKF(n > 0, "%s", err);
    double total = N_THREADS * (double)N_ITERS;
    CHECK(prom_sum(s, n, "req_total", NULL, NULL) == total);
    CHECK(prom_sum(s, n, "req_total", LV("code", "503", NULL), NULL) == total / 2);
    CHECK(prom_sum(s, n, "req_total", LV("model", "m3", "code", "200", NULL), NULL) == total / 8);
    CHECK(prom_sum(s, n, "req_total", LV("model", "m3", "code", "503", NULL), NULL) == 0);
    CHECK(prom_sum(s, n, "g", NULL, NULL) == total);
    CHECK(prom_sum(s, n, "h_seconds_count", NULL, NULL) == total);
    CHECK(prom_sum(s, n, "h_seconds_sum", NULL, NULL) == total * (0 + 0.25 + 0.5 + 0.75) / 4);
    double up[8], cum[8];
    int k = prom_histogram_buckets(s, n, "h_seconds", NULL, up, cum, 8);
    CHECK(k == 3 && up[0] == 0.3 && up[1] == 0.6 && isinf(up[2]));
    CHECK(k == 3 && cum[0] == total / 2 && cum[1] == total * 3 / 4 && cum[2] == total);
    free(t);
    prom_registry_free(r);
}

static int collect_calls;
static void collect(prom_registry *r, void *user) {
    (void)r;
    collect_calls++;
    prom_set(user, NULL, 42);
}

static void test_collect(void) {
    prom_registry *r = prom_registry_new();
    prom_family *g = prom_register(r, PROM_GAUGE, "rss_bytes", "", NULL, NULL, 0);
    prom_on_collect(r, collect, g);
    char *t = prom_render(r, NULL);
    CHECK(collect_calls == 1);
    CHECK(t && strstr(t, "\nrss_bytes 42\n"));
    free(t);
    prom_registry_free(r);
}

static void test_parse(void) {
    const char *text = "# HELP x something\n"
                       "\n"
                       "   # indented comment\n"
                       "foo{a=\"x}y\",b=\"q\\\"}\"} +Inf 1712345678000\n"
                       "bar NaN\r\n"
                       "baz{} 3\n"
                       "qux{ a = \"1\" , } -4.5e-3\n"
                       "colon:name_total 7 -12\n"
                       "last 1"; /* no final newline */
    prom_sample s[8];
    char err[256] = "x";
    int n = prom_parse(text, strlen(text), s, 8, err, sizeof err);
    CHECKF(n == 6, "n=%d %s", n, err);
    CHECK(err[0] == 0);
    if (n == 6) {
        char v[64];
        CHECK(!strcmp(s[0].name, "foo") && isinf(s[0].value) && s[0].value > 0);
        CHECK(!strcmp(s[0].labels, "a=\"x}y\",b=\"q\\\"}\""));
        CHECK(prom_label(&s[0], "a", v, sizeof v) == 0 && !strcmp(v, "x}y"));
        CHECK(prom_label(&s[0], "b", v, sizeof v) == 0 && !strcmp(v, "q\"}"));
        CHECK(prom_label(&s[0], "c", v, sizeof v) == -1);
        CHECK(prom_label(&s[0], "b", v, 2) == 0 && !strcmp(v, "q")); /* truncated */
        CHECK(!strcmp(s[1].name, "bar") && isnan(s[1].value) && s[1].labels[0] == 0);
        CHECK(!strcmp(s[2].name, "baz") && s[2].value == 3);
        CHECK(!strcmp(s[3].name, "qux") && s[3].value == -4.5e-3);
        CHECK(prom_label(&s[3], "a", v, sizeof v) == 0 && !strcmp(v, "1"));
        CHECK(!strcmp(s[4].name, "colon:name_total") && s[4].value == 7);
        CHECK(!strcmp(s[5].name, "last") && s[5].value == 1);
    }
    /* More samples than room: the first kept, the rest counted in the message. */
    n = prom_parse(text, strlen(text), s, 2, err, sizeof err);
    CHECK(n == 2 && strstr(err, "6 samples"));

    static const char *const bad[] = {
        "foo{a=\"b\" 1\n",        /* unterminated label set */
        "foo 1 2 3\n",            /* trailing text */
        "foo abc\n",              /* bad value */
        "{a=\"b\"} 1\n",          /* no name */
        "foo{a=\"b\\x\"} 1\n",    /* invalid escape */
        "foo{a=b} 1\n",           /* unquoted value */
        "foo{a=\"1\" b=\"2\"} 1\n", /* missing comma */
        "foo\n",                  /* no value */
        "foo 1 12x\n",            /* bad timestamp */
        "foo{a=\"1\"}1\n",        /* no blank before the value */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char t2[128];
        snprintf(t2, sizeof t2, "ok 1\n%s", bad[i]);
        err[0] = 0;
        n = prom_parse(t2, strlen(t2), s, 8, err, sizeof err);
        CHECKF(n == -1 && !strncmp(err, "line 2: ", 8), "case %zu: n=%d err=%s", i, n, err);
    }
}

static void test_round_trip(void) {
    prom_registry *r = prom_registry_new();
    prom_family *h = prom_register(r, PROM_HISTOGRAM, "itscam_queue_duration_seconds", "Queue wait.",
                                   LV("model", "priority", NULL), prom_latency_buckets, prom_n_latency_buckets);
    prom_family *b = prom_register(r, PROM_HISTOGRAM, "itscam_batch_size", "Batch.", LV("model", NULL),
                                   prom_batch_buckets, prom_n_batch_buckets);
    CHECK(h && b && prom_n_latency_buckets == 19 && prom_n_batch_buckets == 9);
    prom_observe(h, LV("yolo", "urgent"), 0.004);
    prom_observe(h, LV("yolo", "normal"), 0.012);
    prom_observe(h, LV("yolo", "normal"), 0.012);
    prom_observe(h, LV("yolo", "batch"), 20);
    prom_observe(h, LV("other", "urgent"), 0.0001);
    prom_observe(b, LV("yolo"), 3);
    prom_observe(b, LV("yolo"), 8);
    size_t len;
    char *t = prom_render(r, &len);
    static prom_sample s[256];
    char err[256];
    int n = t ? prom_parse(t, len, s, 256, err, sizeof err) : -1;
    /* 4 label sets x (20 buckets + sum + count) + 1 x (10 + 2) + dropped */
    CHECKF(n == 4 * 22 + 12 + 1, "n=%d %s", n, err);
    CHECK(strstr(t, "itscam_queue_duration_seconds_bucket{model=\"yolo\",priority=\"urgent\",le=\"0.0005\"} 0\n"));
    CHECK(strstr(t, "itscam_queue_duration_seconds_bucket{model=\"yolo\",priority=\"urgent\",le=\"0.005\"} 1\n"));
    CHECK(strstr(t, "itscam_batch_size_bucket{model=\"yolo\",le=\"4\"} 1\n"));
    CHECK(strstr(t, "itscam_batch_size_sum{model=\"yolo\"} 11\n"));
    double up[32], cum[32];
    int k = prom_histogram_buckets(s, n, "itscam_queue_duration_seconds", LV("model", "yolo", NULL), up, cum, 32);
    CHECK(k == 20 && up[0] == 0.0005 && up[18] == 10 && isinf(up[19]));
    if (k == 20) {
        CHECK(cum[3] == 1 && cum[6] == 3 && cum[18] == 3 && cum[19] == 4); /* 0.005, 0.015, 10, +Inf */
        /* the median of {0.004, 0.012, 0.012, 20}: rank 2 in (0.01, 0.015] holding 2 */
        CHECK(fabs(prom_histogram_quantile(0.5, up, cum, k) - 0.0125) < 1e-12);
        CHECK(prom_histogram_quantile(0.99, up, cum, k) == 10); /* in +Inf: the last finite bound */
    }
    CHECK(prom_histogram_buckets(s, n, "itscam_queue_duration_seconds", NULL, up, cum, 10) == -1);
    CHECK(prom_histogram_buckets(s, n, "absent", NULL, up, cum, 32) == 0);
    int found = -1;
    CHECK(prom_sum(s, n, "itscam_queue_duration_seconds_count", LV("model", "yolo", NULL), &found) == 4 && found == 3);
    prom_sum(s, n, "itscam_breaker_state", NULL, &found);
    CHECK(found == 0);
    free(t);
    prom_registry_free(r);
}

static void test_quantile(void) {
    const double up[] = {0.1, 0.2, 0.4, INFINITY};
    const double cum[] = {10, 30, 40, 40};
    CHECK(fabs(prom_histogram_quantile(0.5, up, cum, 4) - 0.15) < 1e-12);
    CHECK(fabs(prom_histogram_quantile(0.25, up, cum, 4) - 0.1) < 1e-12);
    CHECK(fabs(prom_histogram_quantile(0.1, up, cum, 4) - 0.04) < 1e-12);
    CHECK(fabs(prom_histogram_quantile(0.9, up, cum, 4) - 0.32) < 1e-12);
    CHECK(fabs(prom_histogram_quantile(1, up, cum, 4) - 0.4) < 1e-12);
    CHECK(prom_histogram_quantile(0, up, cum, 4) == 0);
    const double cum_inf[] = {10, 30, 40, 50};
    CHECK(prom_histogram_quantile(0.99, up, cum_inf, 4) == 0.4);
    const double zero[] = {0, 0, 0, 0};
    CHECK(isnan(prom_histogram_quantile(0.5, up, zero, 4)));
    CHECK(isinf(prom_histogram_quantile(-0.1, up, cum, 4)) && prom_histogram_quantile(-0.1, up, cum, 4) < 0);
    CHECK(isinf(prom_histogram_quantile(1.1, up, cum, 4)) && prom_histogram_quantile(1.1, up, cum, 4) > 0);
    CHECK(isnan(prom_histogram_quantile(NAN, up, cum, 4)));
    CHECK(isnan(prom_histogram_quantile(0.5, up, cum, 1)));
    CHECK(isnan(prom_histogram_quantile(0.5, up, cum, 3))); /* last bound not +Inf */
    /* Not monotonic (a scrape racing an observation): forced up as Prometheus does. */
    const double racy[] = {10, 5, 40, 40};
    CHECK(fabs(prom_histogram_quantile(0.5, up, racy, 4) - (0.2 + 0.2 / 3)) < 1e-12);
    /* A first bound <= 0 is returned as is. */
    const double neg_up[] = {-1, 0, INFINITY}, neg_cum[] = {5, 10, 10};
    CHECK(prom_histogram_quantile(0.25, neg_up, neg_cum, 3) == -1);
    /* Everything in +Inf. */
    const double inf_cum[] = {0, 0, 0, 7};
    CHECK(prom_histogram_quantile(0.5, up, inf_cum, 4) == 0.4);
}

/* ---- itscam performance against a fake server ----------------------------------- */

typedef struct fake_server {
    struct MHD_Daemon *d;
    int port;
    const char *token; /* required bearer token, or NULL */
    prom_registry *reg;
    prom_family *requests, *duration, *queue, *inference, *batch, *depth, *sla, *rejected, *breaker, *inflight,
        *cpu, *rss, *start, *build, *ready;
    atomic_long detects;
} fake_server;

static enum MHD_Result reply(struct MHD_Connection *c, unsigned code, const char *body) {
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    enum MHD_Result rc = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result fake_handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                    const char *version, const char *upload, size_t *upload_size, void **state) {
    (void)version;
    (void)upload;
    fake_server *fs = cls;
    static int marker;
    if (!*state) { /* headers only so far */
        *state = &marker;
        return MHD_YES;
    }
    if (*upload_size) { /* the image: not looked at */
        *upload_size = 0;
        return MHD_YES;
    }
    if (fs->token) {
        const char *a = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
        char want[128];
        snprintf(want, sizeof want, "Bearer %s", fs->token);
        if (!a || strcmp(a, want)) return reply(c, 401, "{\"error\":\"unauthorized\"}");
    }
    if (!strcmp(method, "GET") && !strcmp(url, "/metrics")) {
        size_t len;
        char *t = prom_render(fs->reg, &len);
        if (!t) return reply(c, 500, "render failed");
        struct MHD_Response *r = MHD_create_response_from_buffer(len, t, MHD_RESPMEM_MUST_FREE);
        if (!r) {
            free(t);
            return MHD_NO;
        }
        enum MHD_Result rc = MHD_queue_response(c, 200, r);
        MHD_destroy_response(r);
        return rc;
    }
    if (!strcmp(method, "GET") && !strcmp(url, "/v1/models"))
        return reply(c, 200, "{\"models\":[{\"name\":\"yolo\",\"input\":[1,3,640,640],\"ready\":true},"
                             "{\"name\":\"idle\",\"input\":[1,3,640,640],\"ready\":false}]}");
    if (!strcmp(method, "GET") && !strcmp(url, "/v2/health/ready")) return reply(c, 200, "");
    if (!strcmp(method, "POST") && !strcmp(url, "/v1/detect")) {
        const char *model = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "model");
        const char *prio = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "priority");
        const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
        if (!model || strcmp(model, "live") || !prio || strcmp(prio, "urgent"))
            return reply(c, 404, "{\"error\":\"wrong model or priority\"}");
        if (!ct || (strcmp(ct, "image/jpeg") && strcmp(ct, "image/png")))
            return reply(c, 415, "{\"error\":\"wrong content type\"}");
        long n = atomic_fetch_add(&fs->detects, 1);
        const char *code = n % 10 == 3 ? "503" : n % 10 == 7 ? "504" : "200";
        prom_inc(fs->requests, LV("/v1/detect", "live", code), 1);
        if (code[0] != '2') return reply(c, (unsigned)atoi(code), "{\"error\":\"busy\"}");
        prom_observe(fs->queue, LV("live", "urgent"), 0.002);
        prom_observe(fs->inference, LV("live"), 0.004);
        prom_observe(fs->batch, LV("live"), 2);
        prom_observe(fs->duration, LV("/v1/detect", "live"), 0.007);
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL);
        return reply(c, 200, "{\"model\":\"live\",\"detections\":[],\"batch_size\":2}");
    }
    return reply(c, 404, "{\"error\":\"not found\"}");
}

static int fake_start(fake_server *fs, const char *token) {
    memset(fs, 0, sizeof *fs);
    fs->token = token;
    atomic_init(&fs->detects, 0);
    prom_registry *r = fs->reg = prom_registry_new();
    const double *lb = prom_latency_buckets;
    int nl = prom_n_latency_buckets;
    fs->requests = prom_register(r, PROM_COUNTER, "itscam_requests_total", "Requests.",
                                 LV("route", "model", "code", NULL), NULL, 0);
    fs->duration = prom_register(r, PROM_HISTOGRAM, "itscam_request_duration_seconds", "End to end.",
                                 LV("route", "model", NULL), lb, nl);
    fs->queue = prom_register(r, PROM_HISTOGRAM, "itscam_queue_duration_seconds", "Queue.",
                              LV("model", "priority", NULL), lb, nl);
    fs->inference = prom_register(r, PROM_HISTOGRAM, "itscam_inference_duration_seconds", "Inference.",
                                  LV("model", NULL), lb, nl);
    fs->batch = prom_register(r, PROM_HISTOGRAM, "itscam_batch_size", "Batch.",
                              LV("model", NULL), prom_batch_buckets, prom_n_batch_buckets);
    fs->depth = prom_register(r, PROM_GAUGE, "itscam_queue_depth", "Depth.", LV("model", "priority", NULL), NULL, 0);
    fs->sla = prom_register(r, PROM_COUNTER, "itscam_sla_violations_total", "SLA.", LV("model", NULL), NULL, 0);
    fs->rejected = prom_register(r, PROM_COUNTER, "itscam_rejected_total", "Rejected.",
                                 LV("model", "priority", "reason", NULL), NULL, 0);
    fs->breaker = prom_register(r, PROM_GAUGE, "itscam_breaker_state", "Breaker.", LV("model", NULL), NULL, 0);
    fs->inflight = prom_register(r, PROM_GAUGE, "itscam_inflight_requests", "In flight.", NULL, NULL, 0);
    fs->cpu = prom_register(r, PROM_COUNTER, "itscam_process_cpu_seconds_total", "CPU.", NULL, NULL, 0);
    fs->rss = prom_register(r, PROM_GAUGE, "itscam_process_resident_memory_bytes", "RSS.", NULL, NULL, 0);
    fs->start = prom_register(r, PROM_GAUGE, "itscam_process_start_time_seconds", "Start.", NULL, NULL, 0);
    fs->build = prom_register(r, PROM_GAUGE, "itscam_build_info", "Build.", LV("version", "backends", NULL), NULL, 0);
    fs->ready = prom_register(r, PROM_GAUGE, "itscam_model_ready", "Ready.", LV("model", NULL), NULL, 0);
    if (!fs->ready) return -1;
    /* yolo: 42 requests (37 ok, 2 not found, 3 rejected); latencies 10 x 10 ms, 20 x 12.5 ms,
     * 10 x 17.5 ms; batches of 1, 2, 4 and 5, three each. */
    prom_inc(fs->requests, LV("/v1/detect", "yolo", "200"), 37);
    prom_inc(fs->requests, LV("/v1/detect", "yolo", "404"), 2);
    prom_inc(fs->requests, LV("/v1/detect", "yolo", "503"), 3);
    for (int i = 0; i < 40; i++) {
        double v = i < 10 ? 0.01 : i < 30 ? 0.0125 : 0.0175;
        prom_observe(fs->duration, LV("/v1/detect", "yolo"), v);
        prom_observe(fs->inference, LV("yolo"), 0.005);
    }
    for (int i = 0; i < 12; i++) prom_observe(fs->batch, LV("yolo"), (double[]){1, 2, 4, 5}[i % 4]);
    prom_set(fs->depth, LV("yolo", "urgent"), 0);
    prom_set(fs->depth, LV("yolo", "normal"), 3);
    prom_set(fs->depth, LV("yolo", "batch"), 1);
    prom_inc(fs->sla, LV("yolo"), 5);
    prom_inc(fs->rejected, LV("yolo", "normal", "queue_full"), 3);
    prom_inc(fs->rejected, LV("yolo", "urgent", "timeout"), 1);
    prom_set(fs->breaker, LV("yolo"), 1);
    prom_set(fs->inflight, NULL, 2);
    prom_inc(fs->cpu, NULL, 12.5);
    prom_set(fs->rss, NULL, 104857600);
    prom_set(fs->start, NULL, (double)time(NULL) - 100);
    prom_set(fs->build, LV("9.9.9", "ref"), 1);
    prom_set(fs->ready, LV("yolo"), 1);

    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fs->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0, NULL, NULL,
                             fake_handler, fs, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa, MHD_OPTION_END);
    if (!fs->d) return -1;
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(fs->d, MHD_DAEMON_INFO_BIND_PORT);
    fs->port = di ? di->port : 0;
    return fs->port ? 0 : -1;
}

static void fake_stop(fake_server *fs) {
    if (fs->d) MHD_stop_daemon(fs->d);
    prom_registry_free(fs->reg);
    memset(fs, 0, sizeof *fs);
}

static const char *cli_path(void) {
    const char *e = getenv("ITSCAM_CLI");
    return e && *e ? e : ITSCAM_CLI;
}

/* Run `itscam performance ARGS` (a shell command line suffix); stdout (and stderr when
 * `merge`) into out. Returns the exit status, -1 when it did not exit normally. */
static int run_cli(const char *env, const char *args, int merge, char *out, size_t n) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s '%s' performance %s %s", env ? env : "", cli_path(), args,
             merge ? "2>&1" : "2>/dev/null");
    out[0] = 0;
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t k = 0, r;
    while (k + 1 < n && (r = fread(out + k, 1, n - 1 - k, p)) > 0) k += r;
    out[k] = 0;
    char sink[4096];
    while (fread(sink, 1, sizeof sink, p) > 0) {}
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static double jget(json_t *o, const char *path) {
    char buf[128];
    snprintf(buf, sizeof buf, "%s", path);
    json_t *cur = o;
    for (char *save, *tok = strtok_r(buf, ".", &save); tok && cur; tok = strtok_r(NULL, ".", &save))
        cur = json_object_get(cur, tok);
    return json_is_number(cur) ? json_number_value(cur) : NAN;
}

static json_t *find_model(json_t *root, const char *name) {
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(root, "models"), i, m)
        if (json_is_string(json_object_get(m, "name")) && !strcmp(json_string_value(json_object_get(m, "name")), name))
            return m;
    return NULL;
}

#define NEAR(a, b) (fabs((a) - (b)) < 1e-6)

static void test_cli_status(fake_server *fs, char *out, size_t n) {
    char args[256];
    snprintf(args, sizeof args, "status --url http://127.0.0.1:%d/ --format json --detailed", fs->port);
    int rc = run_cli(NULL, args, 0, out, n);
    CHECKF(rc == 0, "status exit %d: %s", rc, out);
    json_error_t je;
    json_t *root = json_loads(out, 0, &je);
    CHECKF(root != NULL, "status output is not JSON: %s: %s", je.text, out);
    if (!root) return;
    CHECK(json_is_true(json_object_get(root, "ready")));
    CHECK(!strcmp(json_string_value(json_object_get(root, "version")), "9.9.9"));
    CHECK(jget(root, "inflight") == 2 && jget(root, "cpu_seconds") == 12.5);
    CHECK(jget(root, "resident_memory_bytes") == 104857600);
    CHECK(jget(root, "uptime_s") >= 99 && jget(root, "uptime_s") < 200);
    json_t *y = find_model(root, "yolo"), *idle = find_model(root, "idle");
    CHECK(y && idle && json_array_size(json_object_get(root, "models")) == 2);
    if (y) {
        CHECK(json_is_true(json_object_get(y, "ready")));
        CHECK(jget(y, "requests.total") == 42 && jget(y, "requests.2xx") == 37);
        CHECK(jget(y, "requests.4xx") == 2 && jget(y, "requests.5xx") == 3);
        /* Hand-computed: buckets <=10 ms: 10, <=15 ms: 30, <=20 ms: 40. */
        CHECKF(NEAR(jget(y, "latency_ms.mean"), 13.125), "%g", jget(y, "latency_ms.mean"));
        CHECKF(NEAR(jget(y, "latency_ms.p50"), 12.5), "%g", jget(y, "latency_ms.p50"));
        CHECKF(NEAR(jget(y, "latency_ms.p95"), 19.0), "%g", jget(y, "latency_ms.p95"));
        CHECKF(NEAR(jget(y, "latency_ms.p99"), 19.8), "%g", jget(y, "latency_ms.p99"));
        CHECK(jget(y, "queue_depth.urgent") == 0 && jget(y, "queue_depth.normal") == 3 &&
              jget(y, "queue_depth.batch") == 1);
        CHECK(NEAR(jget(y, "batch_mean"), 3.0));
        CHECK(jget(y, "sla_violations") == 5);
        CHECK(jget(y, "rejected.queue_full") == 3 && jget(y, "rejected.timeout") == 1);
        CHECK(json_is_string(json_object_get(y, "breaker")) &&
              !strcmp(json_string_value(json_object_get(y, "breaker")), "open"));
        CHECK(NEAR(jget(y, "stages_ms.inference"), 5.0));
        CHECK(json_is_null(json_object_get(json_object_get(y, "stages_ms"), "decode")));
        json_t *bs = json_object_get(y, "batch_sizes");
        CHECK(json_array_size(bs) == 10);
        if (json_array_size(bs) == 10) {
            CHECK(jget(json_array_get(bs, 0), "le") == 1 && jget(json_array_get(bs, 0), "count") == 3);
            CHECK(jget(json_array_get(bs, 2), "le") == 4 && jget(json_array_get(bs, 2), "count") == 3);
            CHECK(jget(json_array_get(bs, 3), "le") == 8 && jget(json_array_get(bs, 3), "count") == 3);
            CHECK(jget(json_array_get(bs, 4), "count") == 0);
        }
    }
    if (idle) {
        CHECK(json_is_false(json_object_get(idle, "ready"))); /* from /v1/models */
        CHECK(jget(idle, "requests.total") == 0 && isnan(jget(idle, "latency_ms.p50")));
        CHECK(json_object_get(idle, "breaker") == NULL); /* absent metric: omitted */
    }
    json_decref(root);

    snprintf(args, sizeof args, "status --url http://127.0.0.1:%d --detailed", fs->port);
    rc = run_cli(NULL, args, 1, out, n);
    CHECKF(rc == 0 && strstr(out, "ready") && strstr(out, "yolo") && strstr(out, "open") &&
               strstr(out, "12.50") && strstr(out, "inference"),
           "status table (exit %d):\n%s", rc, out);
}

static void test_cli_monitor(fake_server *fs, char *out, size_t n) {
    char args[256];
    snprintf(args, sizeof args, "monitor --url http://127.0.0.1:%d --interval 0.3 --duration 1", fs->port);
    int rc = run_cli(NULL, args, 1, out, n);
    CHECKF(rc == 0 && strstr(out, "REQ/S") && strstr(out, "yolo") && !strchr(out, '\033'),
           "monitor (exit %d):\n%s", rc, out);
}

static void test_cli_benchmark(fake_server *fs, char *out, size_t n) {
    char dir[] = "/tmp/itscam_test_prom_XXXXXX", path[256];
    if (!mkdtemp(dir)) {
        CHECK(!"mkdtemp");
        return;
    }
    static const char *const files[] = {"a.jpg", "b.png", "notes.txt"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        FILE *f = fopen(path, "wb");
        if (f) {
            fputs("not really an image, the fake server does not look", f);
            fclose(f);
        }
    }
    char args[512];
    snprintf(args, sizeof args,
             "benchmark --url http://127.0.0.1:%d --concurrency 1,3 --duration 0.8 --warmup 0.2 "
             "--images %s --model live --priority urgent --json",
             fs->port, dir);
    int rc = run_cli(NULL, args, 0, out, n);
    CHECKF(rc == 0, "benchmark exit %d: %s", rc, out);
    json_error_t je;
    json_t *root = json_loads(out, 0, &je);
    json_t *res = root ? json_object_get(root, "results") : NULL;
    CHECKF(json_array_size(res) == 2, "benchmark output: %s", out);
    for (size_t i = 0; i < json_array_size(res); i++) {
        json_t *r = json_array_get(res, i);
        double ok = jget(r, "ok"), rej = jget(r, "rejected"), to = jget(r, "timeouts");
        CHECK(jget(r, "concurrency") == (i ? 3 : 1));
        CHECKF(ok > 20 && rej > 0 && to > 0 && jget(r, "errors") == 0, "ok %g rejected %g timeouts %g errors %g", ok,
               rej, to, jget(r, "errors"));
        /* Every 10th request is 503 and every 10th 504: within a window, about that. */
        CHECKF(rej * 4 < ok && to * 4 < ok, "ok %g rejected %g timeouts %g", ok, rej, to);
        CHECK(jget(r, "throughput_rps") > 0);
        double p50 = jget(r, "latency_ms.p50"), p90 = jget(r, "latency_ms.p90"), p99 = jget(r, "latency_ms.p99");
        CHECK(p50 >= 1 && p50 <= p90 && p90 <= jget(r, "latency_ms.p95") && jget(r, "latency_ms.p95") <= p99);
        /* Server means over the window, from _sum/_count deltas of model "live". */
        CHECKF(NEAR(jget(r, "server_queue_ms"), 2.0), "%g", jget(r, "server_queue_ms"));
        CHECKF(NEAR(jget(r, "server_inference_ms"), 4.0), "%g", jget(r, "server_inference_ms"));
        CHECKF(NEAR(jget(r, "batch_mean"), 2.0), "%g", jget(r, "batch_mean"));
    }
    json_decref(root);

    /* The wrong model: every request fails, reported with the server's answer, exit 1. */
    snprintf(args, sizeof args,
             "benchmark --url http://127.0.0.1:%d --concurrency 2 --duration 0.3 --warmup 0 --images %s --model nope",
             fs->port, dir);
    rc = run_cli(NULL, args, 1, out, n);
    CHECKF(rc == 1 && strstr(out, "HTTP 404") && strstr(out, "wrong model"), "exit %d:\n%s", rc, out);
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
    snprintf(args, sizeof args, "benchmark --url http://127.0.0.1:%d --images %s", fs->port, dir);
    rc = run_cli(NULL, args, 1, out, n);
    CHECKF(rc == 1 && strstr(out, dir), "missing images dir: exit %d:\n%s", rc, out);
}

static void test_cli(void) {
    if (access(cli_path(), X_OK) != 0) {
        printf("test_prom: %s not built: the itscam performance checks are skipped\n", cli_path());
        return;
    }
    size_t n = 1 << 20;
    char *out = malloc(n), args[256];
    fake_server fs;
    CHECK(out != NULL);
    if (!out) return;
    if (fake_start(&fs, NULL)) {
        CHECK(!"fake server did not start");
        fake_stop(&fs);
        free(out);
        return;
    }
    test_cli_status(&fs, out, n);
    test_cli_monitor(&fs, out, n);
    test_cli_benchmark(&fs, out, n);
    int port = fs.port;
    fake_stop(&fs);

    /* Nothing listening: a message naming the URL, exit 1. */
    snprintf(args, sizeof args, "status --url http://127.0.0.1:%d", port);
    int rc = run_cli(NULL, args, 1, out, n);
    char want[128];
    snprintf(want, sizeof want, "cannot reach http://127.0.0.1:%d/metrics", port);
    CHECKF(rc == 1 && strstr(out, want), "exit %d:\n%s", rc, out);

    /* Tokens: refused without, accepted from --token and from $ITSCAM_TOKEN. */
    if (fake_start(&fs, "sekret") == 0) {
        snprintf(args, sizeof args, "status --url http://127.0.0.1:%d", fs.port);
        rc = run_cli("ITSCAM_TOKEN=", args, 1, out, n);
        CHECKF(rc == 1 && strstr(out, "HTTP 401"), "exit %d:\n%s", rc, out);
        rc = run_cli("ITSCAM_TOKEN=sekret", args, 1, out, n);
        CHECKF(rc == 0 && strstr(out, "yolo"), "exit %d:\n%s", rc, out);
        snprintf(args, sizeof args, "status --url http://127.0.0.1:%d --token sekret --format json", fs.port);
        rc = run_cli("ITSCAM_TOKEN=", args, 1, out, n);
        CHECKF(rc == 0 && strstr(out, "\"yolo\""), "exit %d:\n%s", rc, out);
    } else {
        CHECK(!"fake server did not start");
    }
    fake_stop(&fs);

    /* Usage errors exit 2. */
    CHECK(run_cli(NULL, "bogus", 1, out, n) == 2);
    CHECK(run_cli(NULL, "benchmark --concurrency 0", 1, out, n) == 2);
    CHECK(run_cli(NULL, "monitor --interval 0", 1, out, n) == 2);
    CHECK(run_cli(NULL, "status --format xml", 1, out, n) == 2);
    CHECK(run_cli(NULL, "status --concurrency 4", 1, out, n) == 2);
    free(out);
}

int main(void) {
    test_render_exact();
    test_escaping_and_numbers();
    test_bad_arguments();
    test_label_limit();
    test_series_cap();
    test_threads();
    test_collect();
    test_parse();
    test_round_trip();
    test_quantile();
    test_cli();
    return check_done("test_prom");
}
