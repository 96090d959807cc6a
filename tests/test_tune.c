/* Tuning (server/tune.h): each strategy's pick on made-up tables, the configuration
 * built from a pick loads back as `itscam serve` would load it, the run-time settings'
 * JSON is checked as the configuration file is, and the scheduler takes them while it
 * runs (it_sched_runtime_set, all or nothing). */
#include "check.h"
#include "itscam/itscam.h"
#include "sched/sched.h"
#include "server/config.h"
#include "server/tune.h"

#include <math.h>

static srv_tune_row row(const char *prec, int batch, int threads, int workers, double p99, double ips, long long mib) {
    srv_tune_row r = { .batch = batch, .threads = threads, .workers = workers, .p50_ms = p99 * 0.8, .p99_ms = p99,
                       .ips = ips, .mem_bytes = mib < 0 ? -1 : mib << 20 };
    snprintf(r.precision, sizeof r.precision, "%s", prec);
    return r;
}

static void test_strategies(void) {
    srv_tune_row t[] = {
        /* 0 */ row("fp32", 1, 1, 1, 20, 50, 40),
        /* 1 */ row("fp32", 1, 2, 1, 12, 80, 45),
        /* 2 */ row("fp32", 4, 2, 1, 60, 140, 90),
        /* 3 */ row("fp32", 8, 2, 1, 130, 170, 150),  /* fastest, but misses a 100 ms SLA */
        /* 4 */ row("bf16", 4, 1, 2, 90, 150, 70),    /* best within SLA */
        /* 5 */ row("bf16", 2, 1, 2, 40, 139, 50),    /* within 10% of 150 with less memory */
        /* 6 */ row("bf16", 1, 2, 1, 8, 60, 60),      /* lowest p99, batch 1 */
    };
    int n = sizeof t / sizeof t[0];
    char why[256];
    CHECK(srv_tune_pick(t, n, SRV_TUNE_LATENCY, 100, why, sizeof why) == 6);
    CHECKF(strstr(why, "batch 1") != NULL, "%s", why);
    CHECK(srv_tune_pick(t, n, SRV_TUNE_THROUGHPUT, 100, why, sizeof why) == 4);
    CHECK(srv_tune_pick(t, n, SRV_TUNE_THROUGHPUT, 200, NULL, 0) == 3); /* a looser SLA lets row 3 in */
    CHECK(srv_tune_pick(t, n, SRV_TUNE_MEMORY, 100, why, sizeof why) == 5);
    CHECKF(strstr(why, "10%") != NULL, "%s", why);
    /* balanced: (ips / 150) * (8 / p99) is highest for row 6 (0.4), then 1 (0.356) */
    CHECK(srv_tune_pick(t, n, SRV_TUNE_BALANCED, 100, why, sizeof why) == 6);
    /* with the bf16 batch-1 row gone, row 1 (80/150 * 12/12 = 0.533) beats 5 (0.278) */
    srv_tune_row u[6];
    memcpy(u, t, sizeof u);
    CHECK(srv_tune_pick(u, 6, SRV_TUNE_BALANCED, 100, NULL, 0) == 1);

    /* Latency without batch 1 rows: the lowest p99 at any batch. */
    srv_tune_row v[] = { row("fp32", 2, 1, 1, 30, 60, 10), row("fp32", 4, 1, 1, 25, 70, 10) };
    CHECK(srv_tune_pick(v, 2, SRV_TUNE_LATENCY, 100, why, sizeof why) == 1);
    CHECKF(strstr(why, "no configuration ran at batch 1") != NULL, "%s", why);

    /* No row meets the SLA: every SLA strategy falls back to the lowest p99, and says so. */
    for (int s = SRV_TUNE_BALANCED; s <= SRV_TUNE_MEMORY; s++) {
        CHECK(srv_tune_pick(t, n, s, 1, why, sizeof why) == 6);
        CHECKF(strstr(why, "no configuration meets the SLA") != NULL, "%s", why);
    }

    /* Failed rows are never picked; an all-failed table picks nothing. */
    srv_tune_row f[3];
    memcpy(f, t + 4, sizeof f);
    f[2].failed = 1; /* row 6 */
    CHECK(srv_tune_pick(f, 3, SRV_TUNE_LATENCY, 100, NULL, 0) == 1); /* no batch 1 left: lowest p99 */
    for (int i = 0; i < 3; i++) f[i].failed = 1;
    for (int s = 0; s < SRV_TUNE_NSTRATEGIES; s++) CHECK(srv_tune_pick(f, 3, s, 100, why, sizeof why) == -1);
    CHECK(srv_tune_pick(NULL, 0, SRV_TUNE_LATENCY, 100, NULL, 0) == -1);
    CHECK(srv_tune_pick(t, n, 7, 100, NULL, 0) == -1);

    /* Ties: equal throughput goes to less memory, then to fewer threads x workers. */
    srv_tune_row tie[] = { row("fp32", 1, 2, 2, 50, 100, 80), row("fp32", 1, 2, 1, 50, 100, 80),
                           row("fp32", 1, 1, 1, 50, 100, 60) };
    CHECK(srv_tune_pick(tie, 3, SRV_TUNE_THROUGHPUT, 100, NULL, 0) == 2);
    tie[2].mem_bytes = 80 << 20;
    CHECK(srv_tune_pick(tie, 3, SRV_TUNE_THROUGHPUT, 100, NULL, 0) == 2);
    tie[2].threads = 2;
    CHECK(srv_tune_pick(tie, 3, SRV_TUNE_THROUGHPUT, 100, NULL, 0) == 1);
    /* Unknown memory loses to known memory in the memory strategy. */
    srv_tune_row mem[] = { row("fp32", 1, 1, 1, 10, 100, -1), row("fp32", 1, 1, 2, 10, 95, 300) };
    CHECK(srv_tune_pick(mem, 2, SRV_TUNE_MEMORY, 100, NULL, 0) == 1);

    CHECK(srv_tune_strategy_parse("balanced") == SRV_TUNE_BALANCED);
    CHECK(srv_tune_strategy_parse("fastest") == -1);
    CHECK(srv_tune_strategy_parse(NULL) == -1);
    for (int s = 0; s < SRV_TUNE_NSTRATEGIES; s++) CHECK(srv_tune_strategy_parse(srv_tune_strategy_name(s)) == s);
}

/* The configuration from a pick: written whole, read back equal, accepted by validate. */
static void test_config(void) {
    char err[1024], path[] = "/tmp/test_tune_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) return;
    close(fd);
    for (int s = 0; s < SRV_TUNE_NSTRATEGIES; s++) {
        srv_config c;
        srv_config_defaults(&c);
        CHECK(srv_config_set(&c, "models", "model", "/nonexistent/m.onnx", "test", err, sizeof err) == 0);
        srv_tune_row r = row("bf16", 4, 2, 2, 60, 150, 70);
        CHECKF(srv_tune_config(&c, &r, s, 100, err, sizeof err) == 0, "%s", err);
        CHECK(!strcmp(c.precision, "bf16") && c.threads == 2 && c.workers == 2 && c.max_batch == 4);
        CHECK(c.n_preferred == 1 && c.preferred_batch[0] == 4);
        CHECK(fabs(c.sla_ms - 100) < 1e-9);
        /* waits fit what the p99 leaves of the SLA (40 ms): urgent <= 10, normal <= 20, batch <= 40 */
        CHECK(c.max_delay_ms[0] <= 10 && c.max_delay_ms[1] <= 20 && c.max_delay_ms[2] <= 40);
        FILE *f = fopen(path, "w");
        CHECK(f != NULL);
        if (!f) return;
        CHECKF(srv_config_write(f, &c, "# a test\n# of two lines", NULL, err, sizeof err) == 0, "%s", err);
        fclose(f);
        srv_config back;
        srv_config_defaults(&back);
        CHECKF(srv_config_load_file(&back, path, err, sizeof err) == 0, "%s", err);
        char note[256];
        CHECKF(srv_config_validate(&back, note, sizeof note, err, sizeof err) == 0, "%s", err);
        CHECK(!strcmp(back.precision, "bf16") && back.threads == 2 && back.workers == 2 && back.max_batch == 4);
        CHECK(back.n_preferred == 1 && back.preferred_batch[0] == 4);
        for (int l = 0; l < IT_SCHED_NPRIO; l++)
            CHECK(back.max_delay_ms[l] == c.max_delay_ms[l] && back.queue_limit[l] == c.queue_limit[l]);
        CHECK(!strcmp(back.model, "/nonexistent/m.onnx"));
    }
    /* A batch of 1 waits for nothing. */
    srv_config c;
    srv_config_defaults(&c);
    srv_tune_row r = row("fp32", 1, 1, 1, 10, 100, 10);
    CHECK(srv_tune_config(&c, &r, SRV_TUNE_THROUGHPUT, 100, err, sizeof err) == 0);
    CHECK(c.max_delay_ms[0] == 0 && c.max_delay_ms[1] == 0 && c.max_delay_ms[2] == 0 && c.max_batch == 1);
    unlink(path);
}

static int from_json(srv_config *c, const char *text, char *err, size_t n) {
    json_t *j = json_loads(text, 0, NULL);
    int rc = srv_runtime_from_json(c, j, 0, err, n);
    json_decref(j);
    return rc;
}

static void test_runtime_json(void) {
    srv_config c, before;
    char err[512];
    srv_config_defaults(&c);
    before = c;
    CHECKF(from_json(&c, "{\"max_delay_ms\":{\"urgent\":3,\"batch\":70},\"preferred_batch\":[2,8],"
                         "\"queue_limit\":{\"normal\":99}}", err, sizeof err) == 0, "%s", err);
    CHECK(c.max_delay_ms[0] == 3 && c.max_delay_ms[1] == before.max_delay_ms[1] && c.max_delay_ms[2] == 70);
    CHECK(c.n_preferred == 2 && c.preferred_batch[0] == 2 && c.preferred_batch[1] == 8);
    CHECK(c.queue_limit[1] == 99 && c.queue_limit[0] == before.queue_limit[0]);
    /* The JSON form round-trips. */
    json_t *j = srv_runtime_json(&c);
    srv_config d;
    srv_config_defaults(&d);
    CHECK(srv_runtime_from_json(&d, j, 0, err, sizeof err) == 0);
    json_decref(j);
    CHECK(!memcmp(d.max_delay_ms, c.max_delay_ms, sizeof d.max_delay_ms) && d.n_preferred == c.n_preferred &&
          !memcmp(d.queue_limit, c.queue_limit, sizeof d.queue_limit));

    static const struct { const char *body, *says; } bad[] = {
        { "{\"max_delay_ms\":{\"urgent\":-1}}", "max_delay_ms_urgent" },
        { "{\"max_delay_ms\":{\"urgent\":20000}}", "max_delay_ms_urgent" },
        { "{\"max_delay_ms\":{\"urgent\":\"5\"}}", "expected an integer" },
        { "{\"max_delay_ms\":{\"soon\":5}}", "unknown priority" },
        { "{\"max_delay_ms\":5}", "expected an object" },
        { "{\"queue_limit\":{\"batch\":0}}", "queue_limit_batch" },
        { "{\"preferred_batch\":[8,4]}", "ascending" },
        { "{\"preferred_batch\":[16]}", "above max_batch" },
        { "{\"preferred_batch\":[0]}", "preferred_batch" },
        { "{\"preferred_batch\":4}", "array" },
        { "{\"preferred_batch\":[1.5]}", "integer" },
        { "{\"threads\":4}", "restart" },
        { "{\"precision\":\"bf16\"}", "restart" },
        { "{\"max_batch\":16}", "restart" },
        { "{\"bogus\":1}", "unknown key" },
        { "{}", "nothing to change" },
        { "[1]", "JSON object" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        srv_config e = c;
        err[0] = 0;
        CHECKF(from_json(&e, bad[i].body, err, sizeof err) == -1, "%s", bad[i].body);
        CHECKF(strstr(err, bad[i].says) != NULL, "%s: '%s' does not say '%s'", bad[i].body, err, bad[i].says);
        CHECKF(!memcmp(&e, &c, sizeof e), "%s changed the configuration", bad[i].body);
    }
    /* A given limit below max_batch (a static model) bounds preferred sizes. */
    j = json_loads("{\"preferred_batch\":[4]}", 0, NULL);
    CHECK(srv_runtime_from_json(&c, j, 2, err, sizeof err) == -1);
    json_decref(j);
    /* to_sched leaves out sizes a scheduler's max_batch cannot run */
    it_sched_runtime rt;
    srv_runtime_to_sched(&c, 4, &rt);
    CHECK(rt.n_preferred == 1 && rt.preferred_batch[0] == 2);
}

/* The scheduler takes new settings while it runs, and refuses bad ones whole. */
static void test_sched_runtime(void) {
    char buf[4096];
    const char *path = shared_path(buf, sizeof buf, "models/yolo11n-320-dynamic.onnx");
    if (!path) {
        fprintf(stderr, "note: models/yolo11n-320-dynamic.onnx absent; scheduler checks skipped\n");
        return;
    }
    itscam_model *m = NULL;
    CHECK_OK(itscam_model_load(path, &m));
    if (!m) return;
    it_sched_params p = it_sched_default_params();
    p.max_batch = 4;
    p.detector.threads = 1;
    it_sched *s = NULL;
    CHECK_OK(it_sched_new("test", m, &p, NULL, &s));
    if (s) {
        it_sched_runtime rt, now;
        it_sched_runtime_get(s, &rt);
        CHECK(rt.max_delay_ms[0] == 10 && rt.queue_limit[2] == 1024 && rt.n_preferred == 0);
        rt.max_delay_ms[1] = 7;
        rt.queue_limit[0] = 5;
        rt.preferred_batch[0] = 2;
        rt.preferred_batch[1] = 4;
        rt.n_preferred = 2;
        CHECK_OK(it_sched_runtime_set(s, &rt));
        it_sched_runtime_get(s, &now);
        CHECK(!memcmp(&now, &rt, sizeof now));
        it_sched_runtime badrt = rt;
        badrt.preferred_batch[1] = 8; /* above max_batch 4 */
        CHECK(it_sched_runtime_set(s, &badrt) == ITSCAM_ERR_INVALID_ARG);
        CHECK(strstr(itscam_last_error(), "restart") != NULL);
        badrt = rt;
        badrt.queue_limit[2] = 0;
        badrt.max_delay_ms[0] = 1; /* must not be applied either */
        CHECK(it_sched_runtime_set(s, &badrt) == ITSCAM_ERR_INVALID_ARG);
        it_sched_runtime_get(s, &now);
        CHECK(!memcmp(&now, &rt, sizeof now));
    }
    it_sched_free(s);
    itscam_model_free(m);
}

int main(void) {
    test_strategies();
    test_config();
    test_runtime_json();
    test_sched_runtime();
    return check_done("test_tune");
}
