/* The Prometheus registry: exact text for a small case, escaping, number spelling, the
 * label set limit, exact totals under 4 threads, parsing back, and quantile estimates. */
#include "check.h"
#include "server/prom.h"

#include <math.h>
#include <pthread.h>

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
    prom_family *c = prom_register(r, PROM_COUNTER, "t_requests_total", "Requests.", LV("route", "code", NULL), NULL, 0);
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
        "itscam_metrics_dropped_total 0\n";
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
    CHECK(t && count_lines(t, "many_total{") == 1024);
    CHECK(t && strstr(t, "many_total{id=\"7\"} 3\n"));
    CHECK(t && strstr(t, "many_total{id=\"1023\"} 2\n"));
    CHECK(t && !strstr(t, "many_total{id=\"1024\"}"));
    free(t);
    CHECK(dropped(r) == 2 * 76);
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
    CHECK(count_lines(t, "itscam_queue_duration_seconds_bucket{model=\"yolo\",priority=\"urgent\",le=\"0.0005\"} 0\n") == 1);
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

int main(void) {
    test_render_exact();
    test_escaping_and_numbers();
    test_bad_arguments();
    test_label_limit();
    test_threads();
    test_collect();
    test_parse();
    test_round_trip();
    test_quantile();
    return check_done("test_prom");
}
