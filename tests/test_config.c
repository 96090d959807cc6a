/* Server configuration: defaults, YAML, environment, flags and their precedence, every
 * error message with its file:line and key, strategies written and read back, validation,
 * and `itscam config` end to end. */
#include "check.h"
#include "itscam/itscam.h"
#include "server/config.h"

#include <dirent.h>
#include <errno.h>
#include <sys/wait.h>

static char dir[64];
static char err[4096];

/* Write text to dir/name and return the path (in a static buffer per call site's copy). */
static const char *write_text(const char *name, const char *text) {
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        exit(1);
    }
    fputs(text, f);
    fclose(f);
    return path;
}

/* Load text as a YAML file on top of defaults; returns what srv_config_load_file did. */
static int load_text(srv_config *c, const char *text) {
    srv_config_defaults(c);
    err[0] = 0;
    return srv_config_load_file(c, write_text("t.yaml", text), err, sizeof err);
}

/* The file must fail with exactly "<dir>/t.yaml:<rest>". */
#define EXPECT_YAML_ERR(text, rest)                                                      \
    do {                                                                                 \
        srv_config c_;                                                                   \
        char want_[1024];                                                                \
        snprintf(want_, sizeof want_, "%s/t.yaml:%s", dir, rest);                        \
        CHECK(load_text(&c_, text) == -1);                                               \
        CHECKF(!strcmp(err, want_), "\n got: %s\nwant: %s", err, want_);                 \
    } while (0)

static void test_defaults(void) {
    srv_config c;
    srv_config_defaults(&c);
    CHECK(!strcmp(c.host, "0.0.0.0"));
    CHECK(c.port == 8080);
    CHECK(c.http_threads == 0);
    CHECK(c.max_connections == 256);
    CHECK(c.max_body_bytes == 33554432LL);
    CHECK(c.connection_timeout_s == 30 && c.drain_timeout_s == 30);
    CHECK(!c.tls_cert[0] && !c.tls_key[0] && !c.tokens_file[0]);
    CHECK(!c.model[0] && !c.models_dir[0] && !c.calib[0]);
    CHECK(!strcmp(c.backend, "cpu") && !strcmp(c.precision, "fp32"));
    CHECK(c.workers == 1 && c.threads == 0);
    CHECK(c.max_batch == 8);
    CHECK(c.n_preferred == 2 && c.preferred_batch[0] == 4 && c.preferred_batch[1] == 8 && c.preferred_batch[2] == 0);
    CHECK(c.max_delay_ms[IT_SCHED_URGENT] == 10 && c.max_delay_ms[IT_SCHED_NORMAL] == 50 &&
          c.max_delay_ms[IT_SCHED_BATCH] == 100);
    CHECK(c.queue_limit[IT_SCHED_URGENT] == 64 && c.queue_limit[IT_SCHED_NORMAL] == 256 &&
          c.queue_limit[IT_SCHED_BATCH] == 1024);
    CHECK(c.timeout_ms == 5000);
    CHECK(c.conf == 0.25f && c.iou == 0.7f && c.max_det == 300);
    CHECK(c.sla_ms == 100.0);
    CHECK(!strcmp(c.log_level, "info"));
}

static void test_full_file(void) {
    srv_config c;
    const char *yaml =
        "# a complete file\n"
        "server:\n"
        "  host: 127.0.0.1\n"
        "  port: 9090\n"
        "  http_threads: 4\n"
        "  max_connections: 100\n"
        "  max_body_bytes: 64MB\n"
        "  connection_timeout_s: 10\n"
        "  drain_timeout_s: 5\n"
        "  tls_cert: /etc/itscam/cert.pem\n"
        "  tls_key: '/etc/itscam/key.pem'\n"
        "  tokens_file: \"/etc/itscam/tok\\\"ens\"\n"
        "models:\n"
        "  model: yolo11n.onnx\n"
        "  models_dir: \"\"\n"
        "  backend: ref\n"
        "  precision: int8\n"
        "  calib: yolo11n.calib.json\n"
        "  workers: 3\n"
        "  threads: 2\n"
        "batching:\n"
        "  max_batch: 16\n"
        "  preferred_batch: [2, 8, 16]\n"
        "  max_delay_ms_urgent: 1\n"
        "  max_delay_ms_normal: 2\n"
        "  max_delay_ms_batch: 3\n"
        "  queue_limit_urgent: 4\n"
        "  queue_limit_normal: 5\n"
        "  queue_limit_batch: 6\n"
        "  timeout_ms: 700\n"
        "detection:\n"
        "  conf: 0.5\n"
        "  iou: .45\n"
        "  max_det: 100\n"
        "metrics:\n"
        "  sla_ms: 12.5\n"
        "logging:\n"
        "  level: debug\n";
    CHECKF(load_text(&c, yaml) == 0, "%s", err);
    CHECK(!strcmp(c.host, "127.0.0.1") && c.port == 9090 && c.http_threads == 4 && c.max_connections == 100);
    CHECK(c.max_body_bytes == 64000000LL && c.connection_timeout_s == 10 && c.drain_timeout_s == 5);
    CHECK(!strcmp(c.tls_cert, "/etc/itscam/cert.pem") && !strcmp(c.tls_key, "/etc/itscam/key.pem"));
    CHECK(!strcmp(c.tokens_file, "/etc/itscam/tok\"ens"));
    CHECK(!strcmp(c.model, "yolo11n.onnx") && !c.models_dir[0] && !strcmp(c.backend, "ref"));
    CHECK(!strcmp(c.precision, "int8") && !strcmp(c.calib, "yolo11n.calib.json"));
    CHECK(c.workers == 3 && c.threads == 2 && c.max_batch == 16);
    CHECK(c.n_preferred == 3 && c.preferred_batch[0] == 2 && c.preferred_batch[1] == 8 && c.preferred_batch[2] == 16);
    CHECK(c.max_delay_ms[0] == 1 && c.max_delay_ms[1] == 2 && c.max_delay_ms[2] == 3);
    CHECK(c.queue_limit[0] == 4 && c.queue_limit[1] == 5 && c.queue_limit[2] == 6 && c.timeout_ms == 700);
    CHECK(c.conf == 0.5f && c.iou == 0.45f && c.max_det == 100 && c.sla_ms == 12.5);
    CHECK(!strcmp(c.log_level, "debug"));

    /* Empty, a bare "~", empty sections and YAML nulls for strings. */
    CHECKF(load_text(&c, "") == 0, "%s", err);
    CHECKF(load_text(&c, "# only a comment\n") == 0, "%s", err);
    CHECKF(load_text(&c, "server:\nmodels:\n  calib: ~\n  model: null\n  tls: \n") == -1, "%s", err);
    CHECKF(load_text(&c, "server:\nmodels:\n  calib: ~\n  model:\n") == 0, "%s", err);
    CHECK(!c.calib[0] && !c.model[0] && c.port == 8080);
    /* Quoted "null" is a string, and numbers may be quoted. */
    CHECKF(load_text(&c, "models:\n  model: \"null\"\nserver:\n  port: \"81\"\n") == 0, "%s", err);
    CHECK(!strcmp(c.model, "null") && c.port == 81);
}

static void test_file_errors(void) {
    EXPECT_YAML_ERR("batching:\n  maxbatch: 4\n", "2: unknown key 'batching.maxbatch'; did you mean 'batching.max_batch'?");
    EXPECT_YAML_ERR("server:\n  frobnicate: 1\n", "2: unknown key 'server.frobnicate'");
    EXPECT_YAML_ERR("server:\n  port: 1\n  max_batch: 4\n",
                    "3: unknown key 'server.max_batch'; did you mean 'batching.max_batch'?");
    EXPECT_YAML_ERR("server:\n  port: 1\nbatchng:\n  max_batch: 4\n",
                    "3: unknown section 'batchng'; did you mean 'batching'?");
    EXPECT_YAML_ERR("\n\nserver:\n  port: 80x\n", "4: server.port: expected an integer, got '80x'");
    EXPECT_YAML_ERR("server:\n  port: 8080.0\n", "2: server.port: expected an integer, got '8080.0'");
    EXPECT_YAML_ERR("server:\n  port: 99999999999999999999\n",
                    "2: server.port: expected an integer, got '99999999999999999999'");
    EXPECT_YAML_ERR("server:\n  port: 70000\n", "2: server.port: must be between 0 and 65535, got 70000");
    EXPECT_YAML_ERR("batching:\n  max_batch: 0\n", "2: batching.max_batch: must be between 1 and 256, got 0");
    EXPECT_YAML_ERR("detection:\n  conf: high\n", "2: detection.conf: expected a number, got 'high'");
    EXPECT_YAML_ERR("detection:\n  conf: 1.5\n", "2: detection.conf: must be between 0 and 1, got 1.5");
    EXPECT_YAML_ERR("detection:\n  iou: nan\n", "2: detection.iou: expected a number, got 'nan'");
    EXPECT_YAML_ERR("models:\n  precision: fp64\n",
                    "2: models.precision: must be one of fp32, fp16, bf16, int8, auto; got 'fp64'");
    EXPECT_YAML_ERR("logging:\n  level: verbose\n",
                    "2: logging.level: must be one of error, warn, info, debug; got 'verbose'");
    EXPECT_YAML_ERR("models:\n  backend: \"\"\n", "2: models.backend: must not be empty");
    EXPECT_YAML_ERR("server:\n  max_body_bytes: 12XB\n",
                    "2: server.max_body_bytes: expected a size in bytes like 33554432, 32MiB or 64MB, got '12XB'");
    /* Too long: never truncated. */
    char yaml[2048], host[101];
    memset(host, 'h', 100);
    host[100] = 0;
    snprintf(yaml, sizeof yaml, "server:\n  host: %s\n", host);
    EXPECT_YAML_ERR(yaml, "2: server.host: too long (100 bytes, at most 63)");
    /* Wrong node kinds. */
    EXPECT_YAML_ERR("server:\n  port:\n    a: 1\n", "3: server.port: expected a single value, got a mapping");
    EXPECT_YAML_ERR("server:\n  port: [1, 2]\n", "2: server.port: expected a single value, got a list");
    EXPECT_YAML_ERR("batching:\n  preferred_batch: {a: 1}\n",
                    "2: batching.preferred_batch: expected a list of batch sizes, got a mapping");
    EXPECT_YAML_ERR("server: 5\n", "1: server: expected a mapping of settings (key: value), got a value");
    EXPECT_YAML_ERR("- server\n", "1: expected a mapping of sections (server:, models:, batching:, ...), got a list");
    EXPECT_YAML_ERR("[1]:\n  a: 1\n", "1: expected a section name, got a list");
    /* Set twice. */
    EXPECT_YAML_ERR("server:\n  port: 1\n  port: 2\n", "3: server.port: set twice (first on line 2)");
    EXPECT_YAML_ERR("server:\n  port: 1\nmodels:\n  workers: 2\nserver:\n  host: x\n",
                    "5: section 'server' appears twice (first on line 1)");
    /* A bad list item is reported on its own line. */
    EXPECT_YAML_ERR("batching:\n  preferred_batch:\n    - 4\n    - eight\n",
                    "4: batching.preferred_batch: expected an integer batch size, got 'eight'");
    EXPECT_YAML_ERR("batching:\n  preferred_batch:\n    - 4\n    - [8]\n",
                    "4: batching.preferred_batch: expected an integer batch size, got a list");
    EXPECT_YAML_ERR("batching:\n  preferred_batch: [8, 4]\n",
                    "2: batching.preferred_batch: batch sizes must be ascending, got '8,4'");
    EXPECT_YAML_ERR("batching:\n  preferred_batch: [0]\n",
                    "2: batching.preferred_batch: every batch size must be between 1 and 256, got 0");
    EXPECT_YAML_ERR("batching:\n  preferred_batch: [1, 2, 3, 4, 5, 6, 7, 8, 9]\n",
                    "2: batching.preferred_batch: at most 8 batch sizes, got more in '1,2,3,4,5,6,7,8,9'");
    EXPECT_YAML_ERR("batching:\n  preferred_batch: \"4,,8\"\n",
                    "2: batching.preferred_batch: expected batch sizes like [4, 8] or \"4,8\", got '4,,8'");

    /* Syntax errors carry libyaml's problem and the line. */
    srv_config c;
    char want[512];
    CHECK(load_text(&c, "server:\n  port: 8080\n   host: x\n") == -1);
    snprintf(want, sizeof want, "%s/t.yaml:3: YAML syntax error: mapping values are not allowed", dir);
    CHECKF(!strncmp(err, want, strlen(want)), "got: %s", err);
    CHECK(load_text(&c, "server:\n  port: 8080\nbatching:\n  preferred_batch: [4, 8\n") == -1);
    snprintf(want, sizeof want, "%s/t.yaml:", dir);
    CHECKF(!strncmp(err, want, strlen(want)) && strstr(err, "YAML syntax error") && strstr(err, "flow sequence"),
           "got: %s", err);
    CHECK(load_text(&c, "server:\n\tport: 1\n") == -1);
    CHECKF(strstr(err, "t.yaml:2: YAML syntax error:") != NULL, "got: %s", err);
    CHECK(load_text(&c, "server:\n  port: 1\n---\nserver:\n  port: 2\n") == -1);
    CHECKF(strstr(err, "t.yaml:4: a second YAML document") != NULL, "got: %s", err);
    CHECK(load_text(&c, "server:\n  host: \"a\\x00b\"\n") == -1);
    CHECKF(strstr(err, "t.yaml:2: host: contains a NUL byte") != NULL, "got: %s", err);
    CHECK(load_text(&c, "server:\n  host: \"a\\nb\"\n") == -1);
    CHECKF(strstr(err, "t.yaml:2: server.host: must not contain control characters") != NULL, "got: %s", err);

    /* A failing file leaves the configuration as it was. */
    srv_config_defaults(&c);
    write_text("t.yaml", "server:\n  port: 1234\n  host: [x]\n");
    snprintf(want, sizeof want, "%s/t.yaml", dir);
    CHECK(srv_config_load_file(&c, want, err, sizeof err) == -1);
    CHECK(c.port == 8080);

    /* A missing file says why. */
    snprintf(want, sizeof want, "%s/missing.yaml", dir);
    CHECK(srv_config_load_file(&c, want, err, sizeof err) == -1);
    CHECKF(strstr(err, "missing.yaml: No such file or directory") != NULL, "got: %s", err);
}

static void test_env(void) {
    srv_config c;
    srv_config_defaults(&c);
    char *env[] = { "PATH=/usr/bin", "ITSCAM_SHARED=/data", "ITSCAM_FAULT=3", "ITSCAM__SERVER__PORT=9000",
                    "itscam__batching__max_delay_ms_urgent=5", "ITSCAM__Models__Precision=bf16",
                    "ITSCAM__BATCHING__PREFERRED_BATCH=2,4", "ITSCAM__SERVER__TLS_CERT=", NULL };
    CHECKF(srv_config_load_env(&c, env, err, sizeof err) == 0, "%s", err);
    CHECK(c.port == 9000 && c.max_delay_ms[IT_SCHED_URGENT] == 5 && !strcmp(c.precision, "bf16"));
    CHECK(c.n_preferred == 2 && c.preferred_batch[0] == 2 && c.preferred_batch[1] == 4);
    CHECK(srv_config_load_env(&c, NULL, err, sizeof err) == 0);

    struct {
        const char *var, *msg;
    } bad[] = {
        { "ITSCAM__BATCHING__MAX_BATCH=0", "ITSCAM__BATCHING__MAX_BATCH: batching.max_batch: must be between 1 and 256, got 0" },
        { "ITSCAM__BATCHING__MAXBATCH=4",
          "ITSCAM__BATCHING__MAXBATCH: unknown key 'batching.maxbatch'; did you mean 'batching.max_batch'?" },
        { "ITSCAM__PORT=1", "ITSCAM__PORT: expected ITSCAM__SECTION__KEY=VALUE, like ITSCAM__SERVER__PORT=9000" },
        { "ITSCAM__SERVER__=1", "ITSCAM__SERVER__: expected ITSCAM__SECTION__KEY=VALUE, like ITSCAM__SERVER__PORT=9000" },
        { "ITSCAM__SERVER__PORT=", "ITSCAM__SERVER__PORT: server.port: expected an integer, got ''" },
        { "ITSCAM__SERVER__PORT= 80", "ITSCAM__SERVER__PORT: server.port: expected an integer, got ' 80'" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char *e[] = { "ITSCAM__SERVER__HOST=1.2.3.4", (char *)bad[i].var, NULL };
        srv_config_defaults(&c);
        CHECK(srv_config_load_env(&c, e, err, sizeof err) == -1);
        CHECKF(!strcmp(err, bad[i].msg), "\n got: %s\nwant: %s", err, bad[i].msg);
        CHECK(!strcmp(c.host, "0.0.0.0")); /* nothing applied on failure */
    }
}

static void test_flags(void) {
    srv_config c;
    srv_config_defaults(&c);
    char *argv[] = { "serve", "--port", "9001", "--batching.max_delay_ms_normal=7", "--verbose", "--max-batch", "16",
                     "--models=/srv/models", "--batching.preferred-batch", "2,16", "--log-level", "warn", "-x", NULL };
    int argc = 13;
    int i = 1, others = 0;
    while (i < argc) {
        int r = srv_config_flag(&c, argc, argv, &i, err, sizeof err);
        CHECKF(r >= 0, "%s", err);
        if (r == 0) others++, i++;
        if (r < 0) break;
    }
    CHECK(others == 2); /* --verbose and -x are the caller's */
    CHECK(c.port == 9001 && c.max_delay_ms[IT_SCHED_NORMAL] == 7 && c.max_batch == 16);
    CHECK(!strcmp(c.models_dir, "/srv/models") && !strcmp(c.log_level, "warn"));
    CHECK(c.n_preferred == 2 && c.preferred_batch[1] == 16);

    struct {
        const char *a, *b, *msg;
    } bad[] = {
        { "--max-batch", "0", "--max-batch: batching.max_batch: must be between 1 and 256, got 0" },
        { "--batching.maxbatch=4", NULL, "--batching.maxbatch: unknown key 'batching.maxbatch'; did you mean 'batching.max_batch'?" },
        { "--port", NULL, "--port: needs a value" },
        { "--tls-cert", "--port", "--tls-cert: needs a value, got the flag '--port' (write --tls-cert=VALUE if that is the value)" },
        { "--precision=fp64", NULL, "--precision: models.precision: must be one of fp32, fp16, bf16, int8, auto; got 'fp64'" },
        { "--server.max_body_bytes", "3GiB", "--server.max_body_bytes: server.max_body_bytes: must be between 1024 and 2147483648, got 3GiB" },
    };
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        char *av[] = { "serve", (char *)bad[k].a, (char *)bad[k].b, NULL };
        int ac = bad[k].b ? 3 : 2, j = 1;
        srv_config_defaults(&c);
        CHECK(srv_config_flag(&c, ac, av, &j, err, sizeof err) == -1);
        CHECKF(!strcmp(err, bad[k].msg), "\n got: %s\nwant: %s", err, bad[k].msg);
        CHECK(j == 1 && c.max_batch == 8);
    }
    /* Not ours: untouched. */
    char *av[] = { "serve", "--strategy", "balanced", "--", "-", NULL };
    for (int j = 1; j < 5; j++) {
        int jj = j;
        CHECK(srv_config_flag(&c, 5, av, &jj, err, sizeof err) == 0 && jj == j);
    }
}

static void test_precedence(void) {
    srv_config c;
    CHECKF(load_text(&c, "server:\n  port: 1000\nbatching:\n  max_batch: 4\nmodels:\n  workers: 3\n") == 0, "%s", err);
    char *env[] = { "ITSCAM__SERVER__PORT=2000", "ITSCAM__BATCHING__MAX_BATCH=6", NULL };
    CHECKF(srv_config_load_env(&c, env, err, sizeof err) == 0, "%s", err);
    char *argv[] = { "serve", "--server.port", "3000", NULL };
    int i = 1;
    CHECK(srv_config_flag(&c, 3, argv, &i, err, sizeof err) == 1 && i == 3);
    CHECK(c.port == 3000 && c.max_batch == 6 && c.workers == 3);
}

static void test_preferred_and_sizes(void) {
    srv_config c;
    CHECKF(load_text(&c, "batching:\n  preferred_batch: [4, 8]\n") == 0, "%s", err);
    CHECK(c.n_preferred == 2 && c.preferred_batch[0] == 4 && c.preferred_batch[1] == 8);
    CHECKF(load_text(&c, "batching:\n  preferred_batch:\n    - 2\n    - 6\n    - 32\n") == 0, "%s", err);
    CHECK(c.n_preferred == 3 && c.preferred_batch[2] == 32);
    CHECKF(load_text(&c, "batching:\n  preferred_batch: \"4,8\"\n") == 0, "%s", err);
    CHECK(c.n_preferred == 2 && c.preferred_batch[0] == 4 && c.preferred_batch[1] == 8);
    CHECKF(load_text(&c, "batching:\n  preferred_batch: 16\n") == 0, "%s", err);
    CHECK(c.n_preferred == 1 && c.preferred_batch[0] == 16 && c.preferred_batch[1] == 0);
    CHECKF(load_text(&c, "batching:\n  preferred_batch: []\n") == 0, "%s", err);
    CHECK(c.n_preferred == 0 && c.preferred_batch[0] == 0);
    CHECK(srv_config_set(&c, "batching", "preferred_batch", " [ 1 , 3 ] ", "x", err, sizeof err) == 0);
    CHECK(c.n_preferred == 2 && c.preferred_batch[0] == 1 && c.preferred_batch[1] == 3);

    struct {
        const char *text;
        long long bytes;
    } sizes[] = { { "33554432", 33554432LL }, { "32MiB", 32LL << 20 }, { "64MB", 64000000LL },
                  { "1GiB", 1LL << 30 },     { "512KiB", 512LL << 10 }, { "2 GiB", 2LL << 30 },
                  { "100kb", 100000LL },     { "4096B", 4096LL } };
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        srv_config_defaults(&c);
        CHECKF(srv_config_set(&c, "server", "max_body_bytes", sizes[i].text, "t", err, sizeof err) == 0, "%s", err);
        CHECKF(c.max_body_bytes == sizes[i].bytes, "%s -> %lld", sizes[i].text, c.max_body_bytes);
    }
    const char *bad[] = { "", "-1", "1.5MiB", "32 MiB!", "MiB", "3GiB", "512", "99999999999GiB", " 4096" };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        srv_config_defaults(&c);
        CHECKF(srv_config_set(&c, "server", "max_body_bytes", bad[i], "t", err, sizeof err) == -1, "'%s'", bad[i]);
        CHECK(c.max_body_bytes == 33554432LL);
    }
    CHECK(srv_config_set(&c, "server", "nope", "1", "t", err, sizeof err) == -1);
    CHECKF(!strcmp(err, "t: unknown key 'server.nope'"), "%s", err);
}

static void test_strategies(void) {
    const char *names[] = { "latency_optimized", "balanced", "throughput_optimized", "memory_optimized" };
    for (size_t i = 0; i < 4; i++) {
        srv_config want, got;
        srv_config_defaults(&want);
        CHECKF(srv_config_apply_strategy(&want, names[i], err, sizeof err) == 0, "%s", err);
        char path[256];
        snprintf(path, sizeof path, "%s/%s.yaml", dir, names[i]);
        FILE *f = fopen(path, "w");
        CHECK(f != NULL);
        if (!f) continue;
        CHECKF(srv_config_write_strategy(f, names[i], err, sizeof err) == 0, "%s", err);
        fclose(f);
        srv_config_defaults(&got);
        got.port = 1; /* proves the file sets it */
        CHECKF(srv_config_load_file(&got, path, err, sizeof err) == 0, "%s: %s", names[i], err);
        CHECKF(memcmp(&want, &got, sizeof want) == 0, "%s does not load back to the strategy", names[i]);
        CHECK(!strcmp(got.precision, i == 3 ? "fp32" : "auto"));

        /* Complete and commented: every key, its env name, quoted empty strings, a header. */
        FILE *r = fopen(path, "r");
        char text[32768];
        size_t n = r ? fread(text, 1, sizeof text - 1, r) : 0;
        if (r) fclose(r);
        text[n] = 0;
        CHECK(strstr(text, names[i]) != NULL && text[0] == '#');
        CHECK(strstr(text, "\n  tls_cert: \"\"\n") != NULL);
        CHECK(strstr(text, "Env: ITSCAM__BATCHING__MAX_DELAY_MS_URGENT.") != NULL);
        CHECK(strstr(text, "\n  max_body_bytes: 32MiB\n") != NULL);
        CHECK(strstr(text, "\nlogging:\n") != NULL && strstr(text, "\n  level: \"info\"\n") != NULL);
    }
    srv_config c;
    srv_config_defaults(&c);
    CHECK(srv_config_apply_strategy(&c, "latency_optimized", err, sizeof err) == 0);
    CHECK(c.max_batch == 1 && c.n_preferred == 1 && c.preferred_batch[0] == 1 && c.workers == 2);
    CHECK(c.max_delay_ms[0] == 0 && c.max_delay_ms[1] == 2 && c.max_delay_ms[2] == 5);
    srv_config_defaults(&c);
    CHECK(srv_config_apply_strategy(&c, "throughput_optimized", err, sizeof err) == 0);
    CHECK(c.max_batch == 32 && c.preferred_batch[0] == 16 && c.preferred_batch[1] == 32 && c.queue_limit[2] == 4096);
    srv_config_defaults(&c);
    CHECK(srv_config_apply_strategy(&c, "memory_optimized", err, sizeof err) == 0);
    CHECK(c.max_batch == 4 && c.n_preferred == 1 && c.max_connections == 64 && c.queue_limit[0] == 16);

    CHECK(srv_config_apply_strategy(&c, "fastest", err, sizeof err) == -1);
    CHECKF(strstr(err, "unknown strategy 'fastest'") != NULL, "%s", err);
    CHECK(srv_config_write_strategy(stderr, "fastest", err, sizeof err) == -1);
}

#define EXPECT_INVALID(c, msg)                                                             \
    do {                                                                                   \
        CHECK(srv_config_validate(&(c), NULL, 0, err, sizeof err) == -1);                  \
        CHECKF(!strcmp(err, msg), "\n got: %s\nwant: %s", err, msg);                       \
    } while (0)

static void test_validate(void) {
    srv_config c, base;
    srv_config_defaults(&base);
#ifndef ITSCAM_HAVE_CPU
    strcpy(base.backend, "ref");
#endif
    c = base;
    EXPECT_INVALID(c, "no model: set models.model (one .onnx file) or models.models_dir (--model, --models, "
                      "ITSCAM__MODELS__MODEL or ITSCAM__MODELS__MODELS_DIR)");
    strcpy(base.model, "m.onnx");
    c = base;
    CHECKF(srv_config_validate(&c, NULL, 0, err, sizeof err) == 0, "%s", err);
    strcpy(c.models_dir, "models");
    EXPECT_INVALID(c, "models.model and models.models_dir are both set; set only one");
    c = base;
    strcpy(c.events_snapshots, "wrong_way, speeding");
    CHECKF(srv_config_validate(&c, NULL, 0, err, sizeof err) == 0, "%s", err);
    strcpy(c.events_snapshots, "wrong_way,crash");
    EXPECT_INVALID(c, "events.snapshots: 'crash' is not an event type (track_start, track_end, line_cross, "
                      "wrong_way, zone_enter, zone_exit, loitering, stopped_vehicle, congestion, speeding, "
                      "camera_state, quality_degraded, shed)");
    c = base;
    strcpy(c.tls_cert, "cert.pem");
    EXPECT_INVALID(c, "server.tls_cert is set but server.tls_key is not; TLS needs both");
    c = base;
    strcpy(c.tls_key, "key.pem");
    EXPECT_INVALID(c, "server.tls_key is set but server.tls_cert is not; TLS needs both");
    strcpy(c.tls_cert, "cert.pem");
    CHECKF(srv_config_validate(&c, NULL, 0, err, sizeof err) == 0, "%s", err);
    /* Preferred sizes above max_batch are dropped with a note, not refused: the same rule
     * for `itscam serve` and `itscam config --check`. */
    char note[256];
    c = base;
    c.max_batch = 4;
    CHECKF(srv_config_validate(&c, note, sizeof note, err, sizeof err) == 0, "%s", err);
    CHECK(c.n_preferred == 1 && c.preferred_batch[0] == 4 && c.preferred_batch[1] == 0);
    CHECKF(!strcmp(note, "batching.preferred_batch: size 8 is above batching.max_batch (4); ignored"), "%s", note);
    c = base;
    c.max_batch = 2;
    CHECKF(srv_config_validate(&c, note, sizeof note, err, sizeof err) == 0, "%s", err);
    CHECK(c.n_preferred == 0 && c.preferred_batch[0] == 0);
    CHECKF(!strcmp(note, "batching.preferred_batch: sizes 4, 8 are above batching.max_batch (2); ignored"), "%s", note);
    c = base;
    CHECKF(srv_config_validate(&c, note, sizeof note, err, sizeof err) == 0 && note[0] == 0, "%s", note);
    CHECK(c.n_preferred == 2);
    c = base;
    c.max_det = ITSCAM_MAX_DET_LIMIT + 1;
    EXPECT_INVALID(c, "detection.max_det: must be between 1 and 10000, got 10001");
    c = base;
    c.max_batch = 300;
    EXPECT_INVALID(c, "batching.max_batch: must be between 1 and 256, got 300");
    c = base;
    c.queue_limit[IT_SCHED_NORMAL] = 0;
    EXPECT_INVALID(c, "batching.queue_limit_normal: must be between 1 and 1000000, got 0");
    c = base;
    c.preferred_batch[0] = 8;
    EXPECT_INVALID(c, "batching.preferred_batch: batch sizes must be ascending, got 8 after 8");
    c = base;
    strcpy(c.backend, "gpu");
    CHECK(srv_config_validate(&c, NULL, 0, err, sizeof err) == -1);
    CHECKF(strstr(err, "models.backend: 'gpu' is not compiled into this build (have: ") == err && strstr(err, "ref"),
           "%s", err);
    c = base;
    strcpy(c.precision, "fp64");
    EXPECT_INVALID(c, "models.precision: must be one of fp32, fp16, bf16, int8, auto; got 'fp64'");
    c = base;
    c.conf = -0.5f;
    EXPECT_INVALID(c, "detection.conf: must be between 0 and 1, got -0.5");
}

static void test_dump_usage(void) {
    srv_config c;
    srv_config_defaults(&c);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return;
    srv_config_dump(f, &c);
    fclose(f);
    CHECK(strstr(buf, "server.port = 8080\n") != NULL);
    CHECK(strstr(buf, "server.host = \"0.0.0.0\"\n") != NULL);
    CHECK(strstr(buf, "batching.preferred_batch = [4, 8]\n") != NULL);
    CHECK(strstr(buf, "detection.iou = 0.7\n") != NULL);
    CHECK(strstr(buf, "logging.level = \"info\"\n") != NULL);
    CHECK(strstr(buf, "metrics.sla_ms = 100\n") != NULL);
    int settings_n = 0;
    for (char *p = buf; *p; p++) settings_n += *p == '\n';
    free(buf);

    /* Reals are dumped in the shortest text that reads back to the same bits. */
    const char *reals[][3] = { { "detection", "conf", "0.1" }, { "detection", "iou", "0.333333343" },
                               { "metrics", "sla_ms", "33.333333333333336" }, { "metrics", "sla_ms", "0.001" },
                               { "metrics", "sla_ms", "1234567.5" } };
    for (size_t i = 0; i < sizeof reals / sizeof *reals; i++) {
        srv_config a, b;
        srv_config_defaults(&a);
        CHECK(srv_config_set(&a, reals[i][0], reals[i][1], reals[i][2], "t", err, sizeof err) == 0);
        buf = NULL;
        f = open_memstream(&buf, &len);
        if (!f) return;
        srv_config_dump(f, &a);
        fclose(f);
        char key[64], *line, *val;
        snprintf(key, sizeof key, "\n%s.%s = ", reals[i][0], reals[i][1]);
        line = strstr(buf, key);
        CHECK(line != NULL);
        if (line) {
            val = line + strlen(key);
            val[strcspn(val, "\n")] = 0;
            srv_config_defaults(&b);
            CHECK(srv_config_set(&b, reals[i][0], reals[i][1], val, "t", err, sizeof err) == 0);
            CHECKF(memcmp(&a, &b, sizeof a) == 0, "%s.%s: %s came back as %s", reals[i][0], reals[i][1], reals[i][2], val);
        }
        free(buf);
    }
    buf = NULL;
    f = open_memstream(&buf, &len);
    if (!f) return;
    srv_config_usage(f);
    fclose(f);
    CHECK(strstr(buf, "--max-batch, --batching.max_batch N") != NULL);
    CHECK(strstr(buf, "ITSCAM__BATCHING__MAX_BATCH") != NULL);
    CHECK(strstr(buf, "--batching.queue_limit_batch N") != NULL);
    CHECK(strstr(buf, "fp32|fp16|bf16|int8|auto") != NULL);
    int lines = 0;
    for (char *p = buf; *p; p++) lines += *p == '\n';
    CHECKF(lines == settings_n, "%d usage lines, %d settings", lines, settings_n); /* one per setting */
    free(buf);
}

/* Run the itscam binary with args; stdout and stderr go to dir/cli.out. Only
 * ITSCAM__MODELS__MODEL (when model is set) of the ITSCAM__ variables reaches it. */
static int run_cli(const char *cli, const char *model, char *const args[], char *out, size_t outn) {
    char outpath[256];
    snprintf(outpath, sizeof outpath, "%s/cli.out", dir);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        FILE *o = freopen(outpath, "w", stdout);
        if (!o || dup2(fileno(stdout), 2) < 0) _exit(127);
        extern char **environ;
        for (int again = 1; again;) { /* unsetenv shifts environ: rescan after each */
            again = 0;
            for (char **e = environ; *e; e++)
                if (!strncasecmp(*e, "ITSCAM__", 8)) {
                    char name[256];
                    snprintf(name, sizeof name, "%.*s", (int)(strchr(*e, '=') - *e), *e);
                    unsetenv(name);
                    again = 1;
                    break;
                }
        }
        if (model) setenv("ITSCAM__MODELS__MODEL", model, 1);
        execv(cli, args);
        _exit(127);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) < 0) return -1;
    FILE *f = fopen(outpath, "r");
    size_t n = f ? fread(out, 1, outn - 1, f) : 0;
    if (f) fclose(f);
    out[n] = 0;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_cli(void) {
    const char *cli = getenv("ITSCAM_CLI");
    if (!cli || !*cli) cli = ITSCAM_CLI;
    if (access(cli, X_OK) != 0) {
        fprintf(stderr, "note: %s not built; skipping the `itscam config` checks\n", cli);
        return;
    }
    char file[256], out[8192];
    snprintf(file, sizeof file, "%s/cli.yaml", dir);
    char *w[] = { (char *)cli, "config", "--strategy", "balanced", "--output", file, NULL };
    int rc = run_cli(cli, NULL, w, out, sizeof out);
    CHECKF(rc == 0, "config --strategy: rc %d: %s", rc, out);
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s.tmp", file);
    CHECK(access(file, R_OK) == 0 && access(tmp, F_OK) != 0);

    char *chk[] = { (char *)cli, "config", "--check", file, NULL };
    char want[512];
    rc = run_cli(cli, "/models/yolo11n.onnx", chk, out, sizeof out);
    snprintf(want, sizeof want, "%s: ok\n", file);
    CHECKF(rc == 0 && !strcmp(out, want), "config --check: rc %d: %s", rc, out);
    rc = run_cli(cli, NULL, chk, out, sizeof out); /* the strategy file names no model */
    CHECKF(rc == 1 && strstr(out, "no model") != NULL, "config --check without a model: rc %d: %s", rc, out);

    /* The same rule as `itscam serve`: unreachable preferred sizes are a note, not an error. */
    const char *mb = write_text("maxbatch.yaml", "models:\n  model: m.onnx\nbatching:\n  max_batch: 4\n");
    char mbpath[256];
    snprintf(mbpath, sizeof mbpath, "%s", mb);
    char *chk_mb[] = { (char *)cli, "config", "--check", mbpath, NULL };
    rc = run_cli(cli, NULL, chk_mb, out, sizeof out);
    CHECKF(rc == 0 && strstr(out, "itscam config: note: batching.preferred_batch: size 8 is above batching.max_batch (4); "
                                  "ignored\n") != NULL && strstr(out, ": ok\n") != NULL,
           "config --check max_batch 4: rc %d: %s", rc, out);

    const char *bad = write_text("bad.yaml", "models:\n  model: m.onnx\nbatching:\n  maxbatch: 4\n");
    char badpath[256];
    snprintf(badpath, sizeof badpath, "%s", bad);
    char *chk2[] = { (char *)cli, "config", "--check", badpath, NULL };
    rc = run_cli(cli, NULL, chk2, out, sizeof out);
    snprintf(want, sizeof want, "%s:4: unknown key 'batching.maxbatch'; did you mean 'batching.max_batch'?", badpath);
    CHECKF(rc == 1 && strstr(out, want) != NULL, "config --check bad: rc %d: %s", rc, out);

    char *stdout_args[] = { (char *)cli, "config", "--strategy", "memory_optimized", NULL };
    rc = run_cli(cli, NULL, stdout_args, out, sizeof out);
    CHECKF(rc == 0 && strstr(out, "# itscam server configuration: strategy memory_optimized") == out, "rc %d", rc);

    char *unknown[] = { (char *)cli, "config", "--strategy", "fastest", "--output", file, NULL };
    rc = run_cli(cli, NULL, unknown, out, sizeof out);
    CHECKF(rc == 2 && strstr(out, "unknown strategy 'fastest'") != NULL, "unknown strategy: rc %d: %s", rc, out);
    char *usage[] = { (char *)cli, "config", NULL };
    rc = run_cli(cli, NULL, usage, out, sizeof out);
    CHECKF(rc == 2, "no arguments: rc %d", rc);
    char *nodir[] = { (char *)cli, "config", "--strategy", "balanced", "--output", "/nonexistent-dir/x.yaml", NULL };
    rc = run_cli(cli, NULL, nodir, out, sizeof out);
    CHECKF(rc == 1 && strstr(out, "/nonexistent-dir/x.yaml.tmp: No such file or directory") != NULL, "rc %d: %s", rc,
           out);
}

static void cleanup(void) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char path[512];
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
    closedir(d);
    rmdir(dir);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/itscam_config_XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_defaults();
    test_full_file();
    test_file_errors();
    test_env();
    test_flags();
    test_precedence();
    test_preferred_and_sizes();
    test_strategies();
    test_validate();
    test_dump_usage();
    test_cli();
    cleanup();
    return check_done("test_config");
}
