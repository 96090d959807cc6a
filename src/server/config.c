/* Server configuration: one table of settings drives defaults, the YAML reader, the
 * environment, the flags, the dump, --help and the strategy files, so they cannot drift. */
#include "server/config.h"
#include "server/config_yaml.h"

#include "pipeline/camevents.h"

#include "core/core.h"
#include "itscam/itscam.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

/* A configuration file is a few kilobytes; anything this large is a wrong path (a model,
 * a log) and reading it whole would only waste memory. */
#define MAX_FILE_BYTES (1 << 20)
/* Longest "section.key" and longest environment variable name we look at. */
#define MAX_NAME 128
/* Text of one formatted value: a path with every byte escaped, plus quotes. */
#define MAX_VALUE_TEXT (2 * SRV_PATH_MAX + 8)
#define MAX_ORIGIN (SRV_PATH_MAX + 32)

typedef enum {
    T_STR,    /* char[size]; min = shortest length; optional choices */
    T_INT,    /* int */
    T_SIZE,   /* long long bytes; accepts KiB/MiB/GiB and KB/MB/GB suffixes */
    T_FLOAT,  /* float */
    T_DOUBLE, /* double */
    T_LIST,   /* int[SRV_MAX_PREFERRED] + count; min/max bound each item */
} setting_type;

typedef struct setting {
    const char *section, *key;
    setting_type type;
    size_t offset;       /* of the value in srv_config */
    size_t size;         /* T_STR: size of the char array */
    size_t count_offset; /* T_LIST: offset of the int count */
    double min, max;     /* inclusive range (numbers, list items) or minimum length (T_STR) */
    const char *def;     /* default, as text: parsed by the same code as every other source */
    const char *alias;   /* flag alias without "--", or NULL */
    const char *const *choices; /* T_STR: the only values allowed (NULL-terminated) */
    const char *help;    /* one line, no trailing period */
} setting;

static const char *const precisions[] = { "fp32", "fp16", "bf16", "int8", "auto", NULL };
static const char *const log_levels[] = { "error", "warn", "info", "debug", NULL };

#define OFF(f) offsetof(srv_config, f)
#define STR(f) T_STR, OFF(f), sizeof(((srv_config *)0)->f), 0
#define NUM(t, off) t, (off), 0, 0
#define PRIO(f, p) T_INT, OFF(f) + (p) * sizeof(int), 0, 0
#define TEXT_(x) #x
#define TEXT(x) TEXT_(x)      /* a numeric macro's default as text */

static const setting settings[] = {
    { "server", "host", STR(host), 1, 0, "0.0.0.0", "host", NULL,
      "address to listen on (0.0.0.0: every interface)" },
    { "server", "port", NUM(T_INT, OFF(port)), 0, 65535, "8080", "port", NULL,
      "TCP port to listen on (0: the system picks a free one)" },
    { "server", "http_threads", NUM(T_INT, OFF(http_threads)), 0, 1024, "0", NULL, NULL,
      "HTTP threads in libmicrohttpd's pool (0: one per core)" },
    { "server", "max_connections", NUM(T_INT, OFF(max_connections)), 1, 65536, "256", NULL, NULL,
      "connections open at once; more are refused" },
    { "server", "max_body_bytes", NUM(T_SIZE, OFF(max_body_bytes)), 1024, 2147483648.0, "32MiB", NULL,
      NULL, "largest request body accepted (413 beyond it); suffixes KiB, MiB, GiB, KB, MB, GB" },
    { "server", "connection_timeout_s", NUM(T_INT, OFF(connection_timeout_s)), 1, 3600, "30", NULL,
      NULL, "seconds an idle or slow client may hold a connection" },
    { "server", "decode_budget_bytes", NUM(T_SIZE, OFF(decode_budget_bytes)), 0, 1099511627776.0, "0", NULL,
      NULL, "decoded image bytes in flight across all requests (0: min(1GiB, RAM/4)); a request that does not fit waits decode_wait_ms, then 503" },
    { "server", "decode_wait_ms", NUM(T_INT, OFF(decode_wait_ms)), 0, 10000, "200", NULL, NULL,
      "longest wait for decode budget before 503 with Retry-After, in ms (an HTTP thread waits)" },
    { "server", "header_timeout_s", NUM(T_INT, OFF(header_timeout_s)), 1, 3600, "10", NULL, NULL,
      "seconds a new connection has to send complete request headers (slow clients are dropped)" },
    { "server", "min_body_rate", NUM(T_INT, OFF(min_body_rate)), 0, 1000000000, "1024", NULL, NULL,
      "bytes/s a request body must average after a grace of header_timeout_s (0: no minimum)" },
    { "server", "max_connections_per_ip", NUM(T_INT, OFF(max_connections_per_ip)), 0, 65536, "128", NULL, NULL,
      "connections open at once from one client address (0: no limit; behind a proxy set 0)" },
    { "server", "reserved_connections", NUM(T_INT, OFF(reserved_connections)), 0, 1024, "8", NULL, NULL,
      "slots beyond max_connections kept for health, readiness and /metrics" },
    { "server", "max_streams", NUM(T_INT, OFF(max_streams)), 0, 65536, "64", NULL, NULL,
      "streaming responses (SSE, MJPEG) open at once; more get 503" },
    { "server", "stream_send_timeout_s", NUM(T_INT, OFF(stream_send_timeout_s)), 1, 3600, "30", NULL, NULL,
      "seconds a streaming response may wait on a client that reads nothing before it is dropped" },
    { "server", "drain_timeout_s", NUM(T_INT, OFF(drain_timeout_s)), 0, 3600, "30", NULL, NULL,
      "seconds SIGTERM waits for requests in flight before stopping" },
    { "server", "tls_cert", STR(tls_cert), 0, 0, "", "tls-cert", NULL,
      "PEM certificate chain; TLS is on when set (needs tls_key)" },
    { "server", "tls_key", STR(tls_key), 0, 0, "", "tls-key", NULL, "PEM private key of tls_cert" },
    { "server", "tokens_file", STR(tokens_file), 0, 0, "", "tokens", NULL,
      "file of bearer tokens, one per line; authentication is on when set" },

    { "models", "model", STR(model), 0, 0, "", "model", NULL,
      "one ONNX model to serve (set this or models_dir)" },
    { "models", "models_dir", STR(models_dir), 0, 0, "", "models", NULL,
      "serve every *.onnx in this folder, named by file name without .onnx" },
    { "models", "backend", STR(backend), 1, 0, "cpu", "backend", NULL,
      "inference backend (see `itscam version` for those compiled in)" },
    { "models", "precision", STR(precision), 1, 0, "fp32", "precision", precisions,
      "fp32, bf16, int8 (needs calib unless the model is QDQ) or auto (fastest within the accuracy budget)" },
    { "models", "calib", STR(calib), 0, 0, "", "calib", NULL,
      "int8 activation ranges written by `itscam calibrate`" },
    { "models", "workers", NUM(T_INT, OFF(workers)), 1, 64, "1", "workers", NULL,
      "sessions (worker threads) per model; batches run in parallel across them" },
    { "models", "threads", NUM(T_INT, OFF(threads)), 0, 1024, "0", "threads", NULL,
      "inference threads per session (0: cores / workers)" },
    { "models", "device_ids", T_LIST, OFF(device_ids), 0, OFF(n_device_ids), 0, 64, "", NULL, NULL,
      "GPUs for backend cuda: worker i runs on device_ids[i % n]; free workers take the next batch, so the least loaded GPU gets it" },
    { "models", "no_fallback", NUM(T_INT, OFF(no_fallback)), 0, 1, "0", NULL, NULL,
      "1: backend cuda fails without a usable GPU instead of serving from the CPU" },

    { "batching", "max_batch", NUM(T_INT, OFF(max_batch)), 1, 256, "8", "max-batch", NULL,
      "most images in one inference" },
    { "batching", "preferred_batch", T_LIST, OFF(preferred_batch), 0, OFF(n_preferred), 1, 256, "4,8",
      NULL, NULL,
      "batch sizes worth waiting for, ascending (a batch runs as soon as it reaches one)" },
    { "batching", "max_delay_ms_urgent", PRIO(max_delay_ms, IT_SCHED_URGENT), 0, 10000, "10", NULL,
      NULL, "longest wait to fill a batch for urgent requests, in ms" },
    { "batching", "max_delay_ms_normal", PRIO(max_delay_ms, IT_SCHED_NORMAL), 0, 10000, "50", NULL,
      NULL, "longest wait to fill a batch for normal requests, in ms" },
    { "batching", "max_delay_ms_batch", PRIO(max_delay_ms, IT_SCHED_BATCH), 0, 10000, "100", NULL, NULL,
      "longest wait to fill a batch for batch-priority requests, in ms" },
    { "batching", "queue_limit_urgent", PRIO(queue_limit, IT_SCHED_URGENT), 1, 1000000, "64", NULL,
      NULL, "urgent requests waiting at most; more are refused with 503" },
    { "batching", "queue_limit_normal", PRIO(queue_limit, IT_SCHED_NORMAL), 1, 1000000, "256", NULL,
      NULL, "normal requests waiting at most; more are refused with 503" },
    { "batching", "queue_limit_batch", PRIO(queue_limit, IT_SCHED_BATCH), 1, 1000000, "1024", NULL,
      NULL, "batch-priority requests waiting at most; more are refused with 503" },
    { "batching", "timeout_ms", NUM(T_INT, OFF(timeout_ms)), 1, 3600000, "5000", "timeout-ms", NULL,
      "per-request timeout when the request sets none (504 after it)" },

    { "detection", "conf", NUM(T_FLOAT, OFF(conf)), 0, 1, "0.25", NULL, NULL,
      "confidence threshold when the request sets none" },
    { "detection", "iou", NUM(T_FLOAT, OFF(iou)), 0, 1, "0.7", NULL, NULL,
      "NMS IoU threshold when the request sets none" },
    { "detection", "max_det", NUM(T_INT, OFF(max_det)), 1, ITSCAM_MAX_DET_LIMIT, TEXT(ITSCAM_MAX_DET_DEFAULT), NULL, NULL,
      "most detections per image when the request sets none" },

    { "breaker", "failure_threshold", NUM(T_INT, OFF(breaker_failures)), 1, 1000000, "15", NULL, NULL,
      "consecutive GPU failures that open the circuit breaker (runs go to the CPU)" },
    { "breaker", "oom_threshold", NUM(T_INT, OFF(breaker_oom)), 1, 1000000, "3", NULL, NULL,
      "consecutive GPU out-of-memory errors that open the circuit breaker" },
    { "breaker", "open_ms", NUM(T_INT, OFF(breaker_open_ms)), 0, 86400000, "30000", NULL, NULL,
      "time the breaker stays open before letting probe runs through, in ms" },
    { "breaker", "half_open_probes", NUM(T_INT, OFF(breaker_probes)), 1, 1000000, "10", NULL, NULL,
      "successful probe runs that close the breaker again" },

    { "metrics", "sla_ms", NUM(T_DOUBLE, OFF(sla_ms)), 0.001, 3600000, "100", "sla-ms", NULL,
      "latency target in ms; requests slower than this are counted as SLA misses" },
    { "metrics", "max_series_per_family", NUM(T_INT, OFF(max_series_per_family)), 1, 1000000, "1000", NULL, NULL,
      "label sets per metric family; new ones beyond it are counted in one series labelled _overflow" },

    { "logging", "level", STR(log_level), 1, 0, "info", "log-level", log_levels,
      "error, warn, info or debug" },

    { "storage", "dir", STR(storage_dir), 1, 0, "./itscam-data", NULL, NULL,
      "folder of the embedded database (itscam.db: cameras changed through the API); created with mode 0700" },

    { "track", "track_high_thresh", NUM(T_FLOAT, OFF(track.track_high_thresh)), 0, 1, "0.25", NULL, NULL,
      "ByteTrack: detections at or above take part in the first association" },
    { "track", "track_low_thresh", NUM(T_FLOAT, OFF(track.track_low_thresh)), 0, 1, "0.1", NULL, NULL,
      "ByteTrack: detections above it (below high) take part in the second association" },
    { "track", "new_track_thresh", NUM(T_FLOAT, OFF(track.new_track_thresh)), 0, 1, "0.25", NULL, NULL,
      "ByteTrack: an unmatched detection at or above starts a track" },
    { "track", "track_buffer", NUM(T_INT, OFF(track.track_buffer)), 1, 3000, "30", NULL, NULL,
      "ByteTrack: frames (at 30 fps) a lost track is kept" },
    { "track", "match_thresh", NUM(T_FLOAT, OFF(track.match_thresh)), 0, 1, "0.8", NULL, NULL,
      "ByteTrack: cost limit of the first association" },
    { "track", "fuse_score", NUM(T_INT, OFF(track.fuse_score)), 0, 1, "1", NULL, NULL,
      "ByteTrack: 1 multiplies IoU by the detection score in the first association" },

    { "events", "retention_days", NUM(T_DOUBLE, OFF(events_retention_days)), 0, 36500, "30", NULL, NULL,
      "events (and their snapshots) older than this are deleted; 0: no age limit" },
    { "events", "max_events", NUM(T_DOUBLE, OFF(events_max)), 0, 1e12, "10000000", NULL, NULL,
      "at most this many events are kept, the oldest deleted first; 0: no limit" },
    { "events", "track_events", NUM(T_INT, OFF(events_track)), 0, 1, "1", NULL, NULL,
      "1: store track_start and track_end events (two per object)" },
    { "events", "snapshots", STR(events_snapshots), 0, 0, "wrong_way,stopped_vehicle,speeding,congestion,loitering",
      NULL, NULL, "comma-separated event types that keep a JPEG of the frame (\"\": none)" },
    { "events", "snapshot_quality", NUM(T_INT, OFF(events_snapshot_quality)), 1, 100, "80", NULL, NULL,
      "JPEG quality of event snapshots" },
    { "events", "occupancy_every_s", NUM(T_DOUBLE, OFF(events_occupancy_every_s)), 0, 3600, "10", NULL, NULL,
      "zone occupancy is sampled into the store this often, for /v1/cameras/{id}/counts; 0: never" },
    { "events", "queue", NUM(T_INT, OFF(events_queue)), 16, 1048576, "8192", NULL, NULL,
      "events waiting for the store at most; more are dropped and counted" },
    { "publish", "mqtt.host", STR(mqtt.host), 0, 0, "", NULL, NULL,
      "MQTT broker's host name or address; events are published to MQTT when set" },
    { "publish", "mqtt.port", NUM(T_INT, OFF(mqtt.port)), 1, 65535, "1883", NULL, NULL,
      "MQTT broker's port (8883 is usual with TLS)" },
    { "publish", "mqtt.username", STR(mqtt.username), 0, 0, "", NULL, NULL, "MQTT user name (empty: none)" },
    { "publish", "mqtt.password", STR(mqtt.password), 0, 0, "", NULL, NULL,
      "MQTT password (never shown: dumps write ***)" },
    { "publish", "mqtt.client_id", STR(mqtt.client_id), 0, 0, "", NULL, NULL,
      "MQTT client id (empty: itscam-<host name>)" },
    { "publish", "mqtt.prefix", STR(mqtt.prefix), 1, 0, "itscam", NULL, NULL,
      "first topic level: P/available, P/events, P/<camera>/<line>/<class>/<direction>, P/<camera>/state" },
    { "publish", "mqtt.keepalive_s", NUM(T_INT, OFF(mqtt.keepalive_s)), 5, 65535, "30", NULL, NULL,
      "MQTT keepalive in seconds" },
    { "publish", "mqtt.tls", NUM(T_INT, OFF(mqtt.tls)), 0, 1, "0", NULL, NULL,
      "1: TLS to the MQTT broker (checked against the system's CAs unless ca_file is set)" },
    { "publish", "mqtt.ca_file", STR(mqtt.ca_file), 0, 0, "", NULL, NULL, "PEM CA certificates for mqtt.tls" },
    { "publish", "mqtt.cert_file", STR(mqtt.cert_file), 0, 0, "", NULL, NULL,
      "PEM client certificate for mqtt.tls (needs key_file)" },
    { "publish", "mqtt.key_file", STR(mqtt.key_file), 0, 0, "", NULL, NULL, "PEM private key of cert_file" },
    { "publish", "mqtt.tls_insecure", NUM(T_INT, OFF(mqtt.tls_insecure)), 0, 1, "0", NULL, NULL,
      "1: do not check the MQTT broker certificate's host name" },
    { "publish", "redis.host", STR(redis.host), 0, 0, "", NULL, NULL,
      "Redis host name or address; events are added to a Redis stream when set" },
    { "publish", "redis.port", NUM(T_INT, OFF(redis.port)), 1, 65535, "6379", NULL, NULL, "Redis port" },
    { "publish", "redis.username", STR(redis.username), 0, 0, "", NULL, NULL,
      "Redis ACL user name (empty: AUTH with the password alone)" },
    { "publish", "redis.password", STR(redis.password), 0, 0, "", NULL, NULL,
      "Redis password (never shown: dumps write ***)" },
    { "publish", "redis.db", NUM(T_INT, OFF(redis.db)), 0, 65535, "0", NULL, NULL, "Redis database (SELECT)" },
    { "publish", "redis.stream", STR(redis.stream), 1, 0, "itscam:events", NULL, NULL,
      "the stream key events are added to (XADD)" },
    { "publish", "redis.maxlen", NUM(T_INT, OFF(redis.maxlen)), 0, 2147483647, "100000", NULL, NULL,
      "the stream is trimmed to about this many entries (MAXLEN ~; 0: never trimmed)" },
    { "publish", "redis.tls", NUM(T_INT, OFF(redis.tls)), 0, 1, "0", NULL, NULL,
      "1 is refused: Debian 12's hiredis has no TLS (use a tunnel)" },
};
#define N_SETTINGS (sizeof settings / sizeof *settings)

/* The sections in the order they are written, with the comment above each. */
static const struct {
    const char *name, *help;
} sections[] = {
    { "server", "HTTP listener: address, limits, timeouts, TLS and authentication" },
    { "models", "what is served and how it runs" },
    { "batching", "dynamic batching: sizes, waits and queue limits per priority (urgent, normal, batch)" },
    { "detection", "defaults for requests that do not set them" },
    { "breaker", "the GPU backend's circuit breaker: when the CPU takes over and when the GPU is tried again" },
    { "metrics", "Prometheus metrics at /metrics" },
    { "logging", "log verbosity" },
    { "storage", "where the server keeps its state" },
    { "track", "ByteTrack defaults for every camera (a camera's own track: overrides them)" },
    { "events", "the event store: retention, snapshots, occupancy samples" },
    { "publish", "events to MQTT (mqtt.*) and Redis Streams (redis.*), at least once from the store's outbox" },
};
#define N_SECTIONS (sizeof sections / sizeof *sections)

/* A strategy is a list of settings given as text, applied through the same parser as a
 * file, so a strategy can never hold a value a file could not. */
typedef struct strategy {
    const char *name, *optimizes;
    const char *set[16][2]; /* {"section.key", "value"}, ended by {NULL} */
} strategy;

static const strategy strategies[] = {
    { "latency_optimized",
      "the lowest latency per request: no waiting to fill batches, one image per inference and "
      "two workers so a request rarely queues behind another",
      { { "batching.max_batch", "1" }, { "batching.preferred_batch", "1" },
        { "batching.max_delay_ms_urgent", "0" }, { "batching.max_delay_ms_normal", "2" },
        { "batching.max_delay_ms_batch", "5" }, { "models.workers", "2" }, { "models.threads", "0" },
        { "models.precision", "auto" }, { NULL, NULL } } },
    { "balanced",
      "a balance of latency and throughput: batches of 4 or 8 formed within 10 to 100 ms",
      { { "batching.max_batch", "8" }, { "batching.preferred_batch", "4,8" },
        { "batching.max_delay_ms_urgent", "10" }, { "batching.max_delay_ms_normal", "50" },
        { "batching.max_delay_ms_batch", "100" }, { "models.workers", "1" },
        { "models.precision", "auto" }, { NULL, NULL } } },
    { "throughput_optimized",
      "the most images per second: large batches, longer waits to fill them and deep queues",
      { { "batching.max_batch", "32" }, { "batching.preferred_batch", "16,32" },
        { "batching.max_delay_ms_urgent", "20" }, { "batching.max_delay_ms_normal", "100" },
        { "batching.max_delay_ms_batch", "200" }, { "models.workers", "1" },
        { "models.precision", "auto" }, { "batching.queue_limit_urgent", "128" },
        { "batching.queue_limit_normal", "1024" }, { "batching.queue_limit_batch", "4096" },
        { NULL, NULL } } },
    /* fp32, not int8: int8 needs a calibration table (or a QDQ model) that a generated file
     * cannot know about, and a server that fails to start saves no memory. */
    { "memory_optimized",
      "the smallest memory footprint: small batches, one worker, short queues and fewer "
      "connections",
      { { "batching.max_batch", "4" }, { "batching.preferred_batch", "4" },
        { "batching.max_delay_ms_urgent", "10" }, { "batching.max_delay_ms_normal", "50" },
        { "batching.max_delay_ms_batch", "100" }, { "models.workers", "1" }, { "models.threads", "0" },
        { "models.precision", "fp32" }, { "server.max_connections", "64" },
        { "batching.queue_limit_urgent", "16" }, { "batching.queue_limit_normal", "64" },
        { "batching.queue_limit_batch", "256" }, { NULL, NULL } } },
};
#define N_STRATEGIES (sizeof strategies / sizeof *strategies)

/* ---- small helpers ---- */

static void seterr(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static void *field(srv_config *c, const setting *s) { return (char *)c + s->offset; }
static const void *cfield(const srv_config *c, const setting *s) { return (const char *)c + s->offset; }

static const setting *find_setting(const char *section, const char *key) {
    for (size_t i = 0; i < N_SETTINGS; i++)
        if (!strcmp(settings[i].section, section) && !strcmp(settings[i].key, key)) return &settings[i];
    return NULL;
}

static void env_name(const setting *s, char *buf, size_t n) {
    snprintf(buf, n, "ITSCAM__%s__", s->section);
    /* A nested key ("mqtt.host") is ITSCAM__PUBLISH__MQTT__HOST. */
    for (const char *k = s->key; *k; k++) {
        size_t l = strlen(buf);
        snprintf(buf + l, n - l, "%s", *k == '.' ? "__" : (char[2]){ *k, 0 });
    }
    for (char *p = buf; *p; p++) *p = (char)toupper((unsigned char)*p);
}

/* Passwords are never written out: not in dumps, files or --help. */
static int is_secret(const setting *s) {
    size_t l = strlen(s->key);
    return l >= 8 && !strcmp(s->key + l - 8, "password");
}

/* Levenshtein distance, or a large number when either string is too long to matter. */
static int edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la >= MAX_NAME || lb >= MAX_NAME) return INT_MAX;
    int row[MAX_NAME + 1];
    for (size_t j = 0; j <= lb; j++) row[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int up = row[j];
            int best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* "unknown key 'a.b'" plus the closest key when a typo (edit distance <= 2) or a key put
 * in the wrong section explains it. */
static void unknown_key(char *err, size_t errlen, const char *origin, const char *section, const char *key) {
    char full[2 * MAX_NAME + 2], cand[2 * MAX_NAME + 2];
    snprintf(full, sizeof full, "%s.%s", section, key);
    const setting *best = NULL;
    int best_d = 3;
    for (size_t i = 0; i < N_SETTINGS; i++) {
        snprintf(cand, sizeof cand, "%s.%s", settings[i].section, settings[i].key);
        int d = edit_distance(full, cand);
        if (d < best_d) best_d = d, best = &settings[i];
    }
    if (!best)
        for (size_t i = 0; i < N_SETTINGS && !best; i++)
            if (!strcmp(settings[i].key, key)) best = &settings[i];
    const char *sep = origin && *origin ? ": " : "";
    if (best)
        seterr(err, errlen, "%s%sunknown key '%s'; did you mean '%s.%s'?", origin ? origin : "", sep, full,
               best->section, best->key);
    else
        seterr(err, errlen, "%s%sunknown key '%s'", origin ? origin : "", sep, full);
}

static void unknown_section(char *err, size_t errlen, const char *origin, const char *name) {
    const char *best = NULL;
    int best_d = 3;
    for (size_t i = 0; i < N_SECTIONS; i++) {
        int d = edit_distance(name, sections[i].name);
        if (d < best_d) best_d = d, best = sections[i].name;
    }
    if (edit_distance(name, SRV_CAMERAS_KEY) < best_d) best = SRV_CAMERAS_KEY;
    if (best)
        seterr(err, errlen, "%s: unknown section '%s'; did you mean '%s'?", origin, name, best);
    else
        seterr(err, errlen, "%s: unknown section '%s' (sections: server, models, batching, detection, "
                            "breaker, metrics, logging, storage, cameras)", origin, name);
}

/* ---- parsing values ---- */

/* A whole string of decimal digits with an optional sign: no spaces, no trailing text. */
static int parse_ll(const char *s, long long *out) {
    const char *p = s;
    if (*p == '-' || *p == '+') p++;
    if (!isdigit((unsigned char)*p)) return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end) return -1;
    *out = v;
    return 0;
}

static int parse_double(const char *s, double *out) {
    if (!*s || isspace((unsigned char)*s)) return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

static const struct {
    const char *name;
    long long mult;
} size_units[] = {
    { "B", 1 },          { "KiB", 1LL << 10 }, { "MiB", 1LL << 20 },    { "GiB", 1LL << 30 },
    { "KB", 1000 },      { "MB", 1000000 },    { "GB", 1000000000 },
};

/* "33554432", "32MiB", "64 MB": bytes, checked for overflow. */
static int parse_size(const char *s, long long *out) {
    char num[32];
    size_t n = 0;
    const char *p = s;
    if (*p == '-' || *p == '+') num[n++] = *p++;
    while (isdigit((unsigned char)*p) && n < sizeof num - 1) num[n++] = *p++;
    num[n] = 0;
    long long v;
    if (isdigit((unsigned char)*p) || parse_ll(num, &v)) return -1;
    if (*p == ' ') p++;
    long long mult = 1;
    if (*p) {
        size_t u;
        for (u = 0; u < sizeof size_units / sizeof *size_units; u++)
            if (!strcasecmp(p, size_units[u].name)) break;
        if (u == sizeof size_units / sizeof *size_units) return -1;
        mult = size_units[u].mult;
    }
    if (v > LLONG_MAX / mult || v < LLONG_MIN / mult) return -1;
    *out = v * mult;
    return 0;
}

/* Batch sizes "4,8", "4, 8", "[4, 8]" or "" (none): strict integers within the item
 * range, ascending, at most SRV_MAX_PREFERRED. */
static int parse_list(const setting *s, const char *text, int *items, int *count, char *why, size_t whyn) {
    const char *p = text, *end = text + strlen(text);
    while (p < end && isspace((unsigned char)*p)) p++;
    while (end > p && isspace((unsigned char)end[-1])) end--;
    if (p < end && *p == '[') {
        if (end[-1] != ']') goto bad;
        p++, end--;
        while (p < end && isspace((unsigned char)*p)) p++;
        while (end > p && isspace((unsigned char)end[-1])) end--;
    }
    int n = 0;
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *ie = comma ? comma : end;
        while (ie > p && isspace((unsigned char)ie[-1])) ie--;
        char item[32];
        size_t len = (size_t)(ie - p);
        long long v;
        if (len == 0 || len >= sizeof item) goto bad;
        memcpy(item, p, len);
        item[len] = 0;
        if (parse_ll(item, &v)) goto bad;
        if (v < s->min || v > s->max) {
            snprintf(why, whyn, "every batch size must be between %g and %g, got %lld", s->min, s->max, v);
            return -1;
        }
        if (n == SRV_MAX_PREFERRED) {
            snprintf(why, whyn, "at most %d batch sizes, got more in '%s'", SRV_MAX_PREFERRED, text);
            return -1;
        }
        if (n > 0 && v <= items[n - 1]) {
            snprintf(why, whyn, "batch sizes must be ascending, got '%s'", text);
            return -1;
        }
        items[n++] = (int)v;
        if (!comma) break;
        p = comma + 1;
        while (p < end && isspace((unsigned char)*p)) p++;
        if (p == end) goto bad; /* a trailing comma */
    }
    *count = n;
    return 0;
bad:
    snprintf(why, whyn, "expected batch sizes like [4, 8] or \"4,8\", got '%s'", text);
    return -1;
}

static int in_range(const setting *s, double v, const char *shown, char *why, size_t whyn) {
    if (v >= s->min && v <= s->max) return 0;
    snprintf(why, whyn, "must be between %.15g and %.15g, got %s", s->min, s->max, shown);
    return -1;
}

static int check_string(const setting *s, const char *v, char *why, size_t whyn) {
    size_t len = strnlen(v, s->size);
    if (len >= s->size) {
        snprintf(why, whyn, "too long (%zu bytes, at most %zu)", strlen(v), s->size - 1);
        return -1;
    }
    if ((double)len < s->min) {
        snprintf(why, whyn, "must not be empty");
        return -1;
    }
    /* One line per value in dumps and files; a control character in a path or a host is
     * a mistake (a pasted newline), never intended. */
    for (const char *p = v; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) {
            snprintf(why, whyn, "must not contain control characters");
            return -1;
        }
    if (s->choices) {
        for (const char *const *ch = s->choices; *ch; ch++)
            if (!strcmp(*ch, v)) return 0;
        char list[128] = "";
        for (const char *const *ch = s->choices; *ch; ch++)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", ch == s->choices ? "" : ", ", *ch);
        snprintf(why, whyn, "must be one of %s; got '%s'", list, v);
        return -1;
    }
    return 0;
}

/* Parse text into the setting's field of c; c is untouched on failure (why says why). */
static int parse_into(srv_config *c, const setting *s, const char *v, char *why, size_t whyn) {
    long long ll;
    double d;
    switch (s->type) {
    case T_STR:
        if (check_string(s, v, why, whyn)) return -1;
        memset(field(c, s), 0, s->size);
        memcpy(field(c, s), v, strlen(v));
        return 0;
    case T_INT:
        if (parse_ll(v, &ll)) {
            snprintf(why, whyn, "expected an integer, got '%s'", v);
            return -1;
        }
        if (in_range(s, (double)ll, v, why, whyn)) return -1;
        *(int *)field(c, s) = (int)ll;
        return 0;
    case T_SIZE:
        if (parse_size(v, &ll)) {
            snprintf(why, whyn, "expected a size in bytes like 33554432, 32MiB or 64MB, got '%s'", v);
            return -1;
        }
        if (in_range(s, (double)ll, v, why, whyn)) return -1;
        *(long long *)field(c, s) = ll;
        return 0;
    case T_FLOAT:
    case T_DOUBLE:
        if (parse_double(v, &d)) {
            snprintf(why, whyn, "expected a number, got '%s'", v);
            return -1;
        }
        if (in_range(s, d, v, why, whyn)) return -1;
        if (s->type == T_FLOAT) *(float *)field(c, s) = (float)d;
        else *(double *)field(c, s) = d;
        return 0;
    case T_LIST: {
        int items[SRV_MAX_PREFERRED], n;
        if (parse_list(s, v, items, &n, why, whyn)) return -1;
        int *dst = field(c, s);
        memset(dst, 0, SRV_MAX_PREFERRED * sizeof *dst);
        memcpy(dst, items, (size_t)n * sizeof *dst);
        *(int *)((char *)c + s->count_offset) = n;
        return 0;
    }
    }
    return -1;
}

/* ---- formatting values ---- */

/* The shortest decimal text that parses back to exactly this float or double, so a
 * written file loads back bit for bit and still reads "0.25", not "0.250000000". */
static void format_real(char *buf, size_t n, double v, int is_float) {
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, v);
        double back;
        /* "1e+02" round-trips too, but nobody writes 100 that way */
        if (strchr(buf, 'e') && fabs(v) >= 1e-4 && fabs(v) < 1e15) continue;
        if (parse_double(buf, &back) == 0 && (is_float ? (float)back == (float)v : back == v)) return;
    }
}

static void format_size(char *buf, size_t n, long long v) {
    static const struct {
        const char *name;
        long long mult;
    } units[] = { { "GiB", 1LL << 30 }, { "MiB", 1LL << 20 }, { "KiB", 1LL << 10 } };
    for (size_t i = 0; i < sizeof units / sizeof *units; i++)
        if (v != 0 && v % units[i].mult == 0) {
            snprintf(buf, n, "%lld%s", v / units[i].mult, units[i].name);
            return;
        }
    snprintf(buf, n, "%lld", v);
}

/* The value as YAML text: strings double-quoted (so "" is an empty string, and "null",
 * "8080" or "yes" stay strings), lists in flow style. */
static void format_value(char *buf, size_t n, const setting *s, const srv_config *c) {
    switch (s->type) {
    case T_STR: {
        const char *v = cfield(c, s);
        if (is_secret(s) && *v) v = "***";
        size_t o = 0;
        if (n < 3) {
            if (n) buf[0] = 0;
            return;
        }
        buf[o++] = '"';
        for (size_t i = 0; v[i] && i < s->size && o + 4 < n; i++) {
            if (v[i] == '"' || v[i] == '\\') buf[o++] = '\\';
            buf[o++] = v[i];
        }
        buf[o++] = '"';
        buf[o] = 0;
        return;
    }
    case T_INT: snprintf(buf, n, "%d", *(const int *)cfield(c, s)); return;
    case T_SIZE: format_size(buf, n, *(const long long *)cfield(c, s)); return;
    case T_FLOAT: format_real(buf, n, *(const float *)cfield(c, s), 1); return;
    case T_DOUBLE: format_real(buf, n, *(const double *)cfield(c, s), 0); return;
    case T_LIST: {
        const int *items = cfield(c, s);
        int count = *(const int *)((const char *)c + s->count_offset);
        size_t o = 0;
        o += (size_t)snprintf(buf, n, "[");
        for (int i = 0; i < count && i < SRV_MAX_PREFERRED && o < n; i++)
            o += (size_t)snprintf(buf + o, n - o, "%s%d", i ? ", " : "", items[i]);
        if (o < n) snprintf(buf + o, n - o, "]");
        return;
    }
    }
}

static const char *metavar(const setting *s) {
    switch (s->type) {
    case T_STR: return s->choices ? NULL : s->size == SRV_PATH_MAX ? "PATH" : "TEXT";
    case T_INT: return "N";
    case T_SIZE: return "BYTES";
    case T_FLOAT:
    case T_DOUBLE: return "X";
    case T_LIST: return "N,N";
    }
    return "VALUE";
}

/* ---- public API ---- */

int srv_config_cameras_threading(srv_config *c, int n_cameras) {
    if (n_cameras <= 0 || c->workers != 1 || c->threads != 0) return 0;
    int cores = it_physical_cores();
    if (cores <= 1) return 0;
    c->workers = cores > 64 ? 64 : cores;
    c->threads = 1;
    return 1;
}

void srv_config_defaults(srv_config *c) {
    /* Zero first, padding and string tails included, so two configurations holding the
     * same settings compare equal with memcmp. */
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < N_SETTINGS; i++) {
        char why[256];
        int rc = parse_into(c, &settings[i], settings[i].def, why, sizeof why);
        assert(rc == 0 && "a default in the settings table does not parse");
        (void)rc;
    }
    /* The tracker settings that are not configuration (frame_rate is the camera's detect
     * fps, set per camera) keep ByteTrack's defaults. */
    it_track_params tp = it_track_default_params();
    c->track.frame_rate = tp.frame_rate;
    c->track.fuse_score_low = tp.fuse_score_low;
    c->track.max_tracks = tp.max_tracks;
}

static int set_one(srv_config *c, const setting *s, const char *value, const char *origin, char *err,
                   size_t errlen) {
    char why[2 * SRV_PATH_MAX];
    if (!value) value = "";
    if (parse_into(c, s, value, why, sizeof why) == 0) return 0;
    if (origin && *origin) seterr(err, errlen, "%s: %s.%s: %s", origin, s->section, s->key, why);
    else seterr(err, errlen, "%s.%s: %s", s->section, s->key, why);
    return -1;
}

int srv_config_set(srv_config *c, const char *section, const char *key, const char *value,
                   const char *origin, char *err, size_t errlen) {
    const setting *s = section && key ? find_setting(section, key) : NULL;
    if (!s) {
        unknown_key(err, errlen, origin, section ? section : "", key ? key : "");
        return -1;
    }
    return set_one(c, s, value, origin, err, errlen);
}

/* ---- YAML ---- */

typedef struct yaml_ctx {
    const char *path;
    yaml_document_t *doc;
    srv_config *c;
    int seen_line[N_SETTINGS];  /* 1-based line where a setting was set, 0 when not yet */
    int section_line[N_SECTIONS];
    char *err;
    size_t errlen;
} yaml_ctx;

static int line_of(const yaml_node_t *n) { return (int)n->start_mark.line + 1; }

static const char *node_kind(const yaml_node_t *n) {
    return n->type == YAML_MAPPING_NODE ? "a mapping" : n->type == YAML_SEQUENCE_NODE ? "a list" : "a value";
}

/* The text of a scalar node, or NULL (with a message) when it holds a NUL byte. A plain
 * empty, "~" or "null" scalar is YAML's null: for us, an empty value. */
static const char *scalar_text(yaml_ctx *y, const yaml_node_t *n, const char *what) {
    const char *v = (const char *)n->data.scalar.value;
    if (strlen(v) != n->data.scalar.length) {
        seterr(y->err, y->errlen, "%s:%d: %s: contains a NUL byte", y->path, line_of(n), what);
        return NULL;
    }
    if (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
        (!*v || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") || !strcmp(v, "NULL")))
        return "";
    return v;
}

/* 1 when some key of section starts with "group." (publish: mqtt.host, mqtt.port...). */
static int is_key_group(const char *section, const char *group) {
    size_t l = strlen(group);
    for (size_t i = 0; i < N_SETTINGS; i++)
        if (!strcmp(settings[i].section, section) && !strncmp(settings[i].key, group, l) && settings[i].key[l] == '.')
            return 1;
    return 0;
}

/* One key: value of a section; prefix is "" or the group a nested mapping stands for
 * (publish: {mqtt: {host: x}} sets the key "mqtt.host", as "mqtt.host: x" would). */
static int yaml_setting(yaml_ctx *y, const char *section, const char *prefix, yaml_node_t *kn, yaml_node_t *vn) {
    char origin[MAX_ORIGIN];
    if (kn->type != YAML_SCALAR_NODE) {
        seterr(y->err, y->errlen, "%s:%d: %s: expected a setting name, got %s", y->path, line_of(kn),
               section, node_kind(kn));
        return -1;
    }
    const char *name = scalar_text(y, kn, section);
    if (!name) return -1;
    char key[MAX_NAME];
    if (snprintf(key, sizeof key, "%s%s%s", prefix, *prefix ? "." : "", name) >= (int)sizeof key) {
        seterr(y->err, y->errlen, "%s:%d: %s: key too long", y->path, line_of(kn), section);
        return -1;
    }
    if (vn->type == YAML_SCALAR_NODE && is_key_group(section, key)) {
        const char *v = scalar_text(y, vn, key);
        if (!v) return -1;
        if (!*v) return 0; /* "mqtt:" with nothing under it */
    }
    if (vn->type == YAML_MAPPING_NODE && is_key_group(section, key)) {
        for (yaml_node_pair_t *p = vn->data.mapping.pairs.start; p < vn->data.mapping.pairs.top; p++) {
            yaml_node_t *k = yaml_document_get_node(y->doc, p->key);
            yaml_node_t *v = yaml_document_get_node(y->doc, p->value);
            if (!k || !v || yaml_setting(y, section, key, k, v)) return -1;
        }
        return 0;
    }
    const setting *s = find_setting(section, key);
    if (!s) {
        snprintf(origin, sizeof origin, "%s:%d", y->path, line_of(kn));
        unknown_key(y->err, y->errlen, origin, section, key);
        return -1;
    }
    size_t idx = (size_t)(s - settings);
    if (y->seen_line[idx]) {
        seterr(y->err, y->errlen, "%s:%d: %s.%s: set twice (first on line %d)", y->path, line_of(kn), section,
               key, y->seen_line[idx]);
        return -1;
    }
    y->seen_line[idx] = line_of(kn);
    snprintf(origin, sizeof origin, "%s:%d", y->path, line_of(vn));
    if (vn->type == YAML_SCALAR_NODE) {
        const char *v = scalar_text(y, vn, key);
        return v ? set_one(y->c, s, v, origin, y->err, y->errlen) : -1;
    }
    if (vn->type == YAML_SEQUENCE_NODE && s->type == T_LIST) {
        /* Each item is checked on its own line, then the whole list by the list parser. */
        char joined[256] = "";
        size_t o = 0;
        for (yaml_node_item_t *it = vn->data.sequence.items.start; it < vn->data.sequence.items.top; it++) {
            yaml_node_t *in = yaml_document_get_node(y->doc, *it);
            if (!in || in->type != YAML_SCALAR_NODE) {
                seterr(y->err, y->errlen, "%s:%d: %s.%s: expected an integer batch size, got %s", y->path,
                       line_of(in ? in : vn), section, key, in ? node_kind(in) : "nothing");
                return -1;
            }
            const char *t = scalar_text(y, in, key);
            long long v;
            if (!t) return -1;
            if (parse_ll(t, &v)) {
                seterr(y->err, y->errlen, "%s:%d: %s.%s: expected an integer batch size, got '%s'", y->path,
                       line_of(in), section, key, t);
                return -1;
            }
            if (o + 24 >= sizeof joined) {
                seterr(y->err, y->errlen, "%s:%d: %s.%s: at most %d batch sizes", y->path, line_of(vn), section,
                       key, SRV_MAX_PREFERRED);
                return -1;
            }
            o += (size_t)snprintf(joined + o, sizeof joined - o, "%s%lld", o ? "," : "", v);
        }
        return set_one(y->c, s, joined, origin, y->err, y->errlen);
    }
    seterr(y->err, y->errlen, "%s:%d: %s.%s: expected %s, got %s", y->path, line_of(vn), section, key,
           s->type == T_LIST ? "a list of batch sizes" : "a single value", node_kind(vn));
    return -1;
}

static int yaml_section(yaml_ctx *y, yaml_node_t *kn, yaml_node_t *vn) {
    if (kn->type != YAML_SCALAR_NODE) {
        seterr(y->err, y->errlen, "%s:%d: expected a section name, got %s", y->path, line_of(kn), node_kind(kn));
        return -1;
    }
    const char *name = scalar_text(y, kn, "section");
    if (!name) return -1;
    /* The camera list is not a section of settings: srv_cameras_load_string reads it. */
    if (!strcmp(name, SRV_CAMERAS_KEY)) return 0;
    size_t si;
    for (si = 0; si < N_SECTIONS; si++)
        if (!strcmp(sections[si].name, name)) break;
    if (si == N_SECTIONS) {
        char origin[MAX_ORIGIN];
        snprintf(origin, sizeof origin, "%s:%d", y->path, line_of(kn));
        unknown_section(y->err, y->errlen, origin, name);
        return -1;
    }
    if (y->section_line[si]) {
        seterr(y->err, y->errlen, "%s:%d: section '%s' appears twice (first on line %d)", y->path, line_of(kn),
               name, y->section_line[si]);
        return -1;
    }
    y->section_line[si] = line_of(kn);
    if (vn->type == YAML_SCALAR_NODE) {
        const char *v = scalar_text(y, vn, name);
        if (!v) return -1;
        if (!*v) return 0; /* "server:" with nothing under it */
    }
    if (vn->type != YAML_MAPPING_NODE) {
        seterr(y->err, y->errlen, "%s:%d: %s: expected a mapping of settings (key: value), got %s", y->path,
               line_of(vn), name, node_kind(vn));
        return -1;
    }
    for (yaml_node_pair_t *p = vn->data.mapping.pairs.start; p < vn->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(y->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(y->doc, p->value);
        if (!k || !v || yaml_setting(y, sections[si].name, "", k, v)) return -1;
    }
    return 0;
}

void srv_yaml_syntax_error(const yaml_parser_t *p, const char *path, char *err, size_t errlen) {
    const char *problem = p->problem ? p->problem : "unknown error";
    switch (p->error) {
    case YAML_MEMORY_ERROR: seterr(err, errlen, "%s: out of memory while parsing YAML", path); break;
    case YAML_READER_ERROR:
        seterr(err, errlen, "%s: invalid text at byte %zu: %s", path, p->problem_offset, problem);
        break;
    default:
        if (p->context)
            seterr(err, errlen, "%s:%d: YAML syntax error: %s %s (line %d)", path, (int)p->problem_mark.line + 1,
                   problem, p->context, (int)p->context_mark.line + 1);
        else
            seterr(err, errlen, "%s:%d: YAML syntax error: %s", path, (int)p->problem_mark.line + 1, problem);
        break;
    }
}

int srv_read_bounded(const char *path, char **out, size_t *len, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        seterr(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    char *buf = malloc(MAX_FILE_BYTES + 1);
    if (!buf) {
        fclose(f);
        seterr(err, errlen, "%s: out of memory", path);
        return -1;
    }
    size_t n = fread(buf, 1, MAX_FILE_BYTES + 1, f);
    int rd_err = ferror(f);
    int saved = errno;
    fclose(f);
    if (rd_err) {
        seterr(err, errlen, "%s: %s", path, strerror(saved));
        free(buf);
        return -1;
    }
    if (n > MAX_FILE_BYTES) {
        seterr(err, errlen, "%s: larger than %d bytes; is this a configuration file?", path, MAX_FILE_BYTES);
        free(buf);
        return -1;
    }
    buf[n] = 0;
    *out = buf;
    *len = n;
    return 0;
}

int srv_config_load_file(srv_config *c, const char *path, char *err, size_t errlen) {
    char *text;
    size_t len;
    if (srv_read_bounded(path, &text, &len, err, errlen)) return -1;
    int rc = srv_config_load_string(c, text, len, path, err, errlen);
    free(text);
    return rc;
}

int srv_config_load_string(srv_config *c, const char *text, size_t len, const char *path, char *err,
                           size_t errlen) {
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        seterr(err, errlen, "%s: out of memory", path);
        return -1;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    yaml_document_t doc;
    int rc = -1;
    if (!yaml_parser_load(&parser, &doc)) { /* libyaml frees doc on failure */
        srv_yaml_syntax_error(&parser, path, err, errlen);
        goto out;
    }
    /* Work on a copy so a file that fails halfway leaves c as it was. */
    yaml_ctx y;
    memset(&y, 0, sizeof y);
    srv_config tmp = *c;
    y.path = path, y.doc = &doc, y.c = &tmp, y.err = err, y.errlen = errlen;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root && root->type == YAML_SCALAR_NODE) { /* an empty file or just "~" */
        const char *t = scalar_text(&y, root, "document");
        if (!t) {
            yaml_document_delete(&doc);
            goto out;
        }
        if (!*t) root = NULL;
    }
    if (root && root->type != YAML_MAPPING_NODE) {
        seterr(err, errlen, "%s:%d: expected a mapping of sections (server:, models:, batching:, ...), got %s",
               path, line_of(root), node_kind(root));
        yaml_document_delete(&doc);
        goto out;
    }
    int bad = 0;
    if (root)
        for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top && !bad; p++) {
            yaml_node_t *k = yaml_document_get_node(&doc, p->key);
            yaml_node_t *v = yaml_document_get_node(&doc, p->value);
            bad = !k || !v || yaml_section(&y, k, v);
        }
    yaml_document_delete(&doc);
    if (bad) goto out;
    /* A second document would be silently ignored by a reader that stops at the first;
     * loading it also surfaces syntax errors after the first. */
    if (!yaml_parser_load(&parser, &doc)) {
        srv_yaml_syntax_error(&parser, path, err, errlen);
        goto out;
    }
    root = yaml_document_get_root_node(&doc);
    if (root) {
        seterr(err, errlen, "%s:%d: a second YAML document; a configuration is one document", path,
               line_of(root));
        yaml_document_delete(&doc);
        goto out;
    }
    yaml_document_delete(&doc);
    *c = tmp;
    rc = 0;
out:
    yaml_parser_delete(&parser);
    return rc;
}

/* ---- environment ---- */

int srv_config_load_env(srv_config *c, char **envp, char *err, size_t errlen) {
    static const char prefix[] = "ITSCAM__";
    const size_t plen = sizeof prefix - 1;
    if (!envp) return 0;
    srv_config tmp = *c;
    for (char **e = envp; *e; e++) {
        if (strncasecmp(*e, prefix, plen)) continue; /* ITSCAM_SHARED and friends are not settings */
        if (!strncasecmp(*e, SRV_CAMERAS_ENV, strlen(SRV_CAMERAS_ENV))) continue; /* srv_cameras_load_env */
        const char *eq = strchr(*e, '=');
        size_t nlen = eq ? (size_t)(eq - *e) : strlen(*e);
        char name[MAX_NAME];
        if (nlen >= sizeof name) {
            seterr(err, errlen, "%.*s...: variable name too long for a setting", 40, *e);
            return -1;
        }
        memcpy(name, *e, nlen);
        name[nlen] = 0;
        char section[MAX_NAME], key[MAX_NAME];
        const char *rest = name + plen, *sep = strstr(rest, "__");
        if (!eq || !sep || sep == rest || !sep[2]) {
            seterr(err, errlen, "%s: expected ITSCAM__SECTION__KEY=VALUE, like ITSCAM__SERVER__PORT=9000", name);
            return -1;
        }
        size_t sl = (size_t)(sep - rest);
        for (size_t i = 0; i < sl; i++) section[i] = (char)tolower((unsigned char)rest[i]);
        section[sl] = 0;
        size_t kl = strlen(sep + 2);
        for (size_t i = 0; i < kl; i++) key[i] = (char)tolower((unsigned char)sep[2 + i]);
        key[kl] = 0;
        /* A nested key: ITSCAM__PUBLISH__MQTT__HOST sets publish.mqtt.host. */
        for (char *d = strstr(key, "__"); d; d = strstr(d + 1, "__")) memmove(d, d + 1, strlen(d)), *d = '.';
        if (srv_config_set(&tmp, section, key, eq + 1, name, err, errlen)) return -1;
    }
    *c = tmp;
    return 0;
}

/* ---- flags ---- */

int srv_config_flag(srv_config *c, int argc, char **argv, int *i, char *err, size_t errlen) {
    if (*i < 0 || *i >= argc || !argv[*i]) return 0;
    const char *arg = argv[*i];
    if (strncmp(arg, "--", 2) || !arg[2]) return 0;
    const char *name = arg + 2, *eq = strchr(name, '=');
    size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
    char flag[MAX_NAME + 2];
    if (nlen >= MAX_NAME) {
        if (!memchr(name, '.', nlen)) return 0;
        seterr(err, errlen, "%.40s...: unknown key", arg);
        return -1;
    }
    snprintf(flag, sizeof flag, "--%.*s", (int)nlen, name);
    const setting *s = NULL;
    const char *dot = memchr(name, '.', nlen);
    if (dot) {
        /* Every dotted flag is ours: a typo gets a suggestion instead of the caller's
         * generic "unknown option". Dashes in the key are accepted for underscores. */
        char section[MAX_NAME], key[MAX_NAME];
        size_t sl = (size_t)(dot - name), kl = nlen - sl - 1;
        memcpy(section, name, sl);
        section[sl] = 0;
        for (size_t k = 0; k < kl; k++) key[k] = dot[1 + k] == '-' ? '_' : dot[1 + k];
        key[kl] = 0;
        s = find_setting(section, key);
        if (!s) {
            unknown_key(err, errlen, flag, section, key);
            return -1;
        }
    } else {
        for (size_t k = 0; k < N_SETTINGS && !s; k++)
            if (settings[k].alias && strlen(settings[k].alias) == nlen && !strncmp(settings[k].alias, name, nlen))
                s = &settings[k];
        if (!s) return 0;
    }
    const char *value;
    if (eq) {
        value = eq + 1;
    } else {
        if (*i + 1 >= argc || !argv[*i + 1]) {
            seterr(err, errlen, "%s: needs a value", flag);
            return -1;
        }
        value = argv[*i + 1];
        /* "--tls-cert --port 9000" is a forgotten value, not a certificate named "--port";
         * "--tls-cert=--odd-name" still says it on purpose. */
        if (!strncmp(value, "--", 2)) {
            seterr(err, errlen, "%s: needs a value, got the flag '%s' (write %s=VALUE if that is the value)",
                   flag, value, flag);
            return -1;
        }
    }
    if (set_one(c, s, value, flag, err, errlen)) return -1;
    *i += eq ? 1 : 2;
    return 1;
}

/* ---- validation ---- */

static int check_field(const setting *s, const srv_config *c, char *why, size_t whyn) {
    char shown[64];
    switch (s->type) {
    case T_STR: {
        const char *v = cfield(c, s);
        if (strnlen(v, s->size) >= s->size) {
            snprintf(why, whyn, "not NUL-terminated");
            return -1;
        }
        return check_string(s, v, why, whyn);
    }
    case T_INT:
        snprintf(shown, sizeof shown, "%d", *(const int *)cfield(c, s));
        return in_range(s, *(const int *)cfield(c, s), shown, why, whyn);
    case T_SIZE:
        snprintf(shown, sizeof shown, "%lld", *(const long long *)cfield(c, s));
        return in_range(s, (double)*(const long long *)cfield(c, s), shown, why, whyn);
    case T_FLOAT:
    case T_DOUBLE: {
        double v = s->type == T_FLOAT ? *(const float *)cfield(c, s) : *(const double *)cfield(c, s);
        format_real(shown, sizeof shown, v, s->type == T_FLOAT);
        if (!isfinite(v)) {
            snprintf(why, whyn, "must be a finite number, got %s", shown);
            return -1;
        }
        return in_range(s, v, shown, why, whyn);
    }
    case T_LIST: {
        const int *items = cfield(c, s);
        int n = *(const int *)((const char *)c + s->count_offset);
        if (n < 0 || n > SRV_MAX_PREFERRED) {
            snprintf(why, whyn, "holds %d batch sizes, at most %d", n, SRV_MAX_PREFERRED);
            return -1;
        }
        for (int k = 0; k < n; k++) {
            if (items[k] < s->min || items[k] > s->max) {
                snprintf(why, whyn, "every batch size must be between %g and %g, got %d", s->min, s->max, items[k]);
                return -1;
            }
            if (k > 0 && items[k] <= items[k - 1]) {
                snprintf(why, whyn, "batch sizes must be ascending, got %d after %d", items[k], items[k - 1]);
                return -1;
            }
        }
        return 0;
    }
    }
    return 0;
}

/* Preferred sizes above max_batch can never form: they are dropped with a note rather
 * than refused, so that "--max-batch 4" works with the default preferred sizes 4,8. */
static void drop_unreachable_preferred(srv_config *c, char *note, size_t notelen) {
    int kept = 0, dropped = 0;
    char sizes[64] = "";
    for (int k = 0; k < c->n_preferred; k++) {
        if (c->preferred_batch[k] <= c->max_batch) {
            c->preferred_batch[kept++] = c->preferred_batch[k];
            continue;
        }
        size_t used = strlen(sizes);
        snprintf(sizes + used, sizeof sizes - used, "%s%d", dropped++ ? ", " : "", c->preferred_batch[k]);
    }
    for (int k = kept; k < c->n_preferred; k++) c->preferred_batch[k] = 0;
    c->n_preferred = kept;
    if (dropped && note && notelen)
        snprintf(note, notelen, "batching.preferred_batch: %s %s %s above batching.max_batch (%d); ignored",
                 dropped > 1 ? "sizes" : "size", sizes, dropped > 1 ? "are" : "is", c->max_batch);
}

int srv_config_validate(srv_config *c, char *note, size_t notelen, char *err, size_t errlen) {
    char why[512];
    if (note && notelen) note[0] = 0;
    /* The struct may have been filled by code rather than parsed: recheck every range. */
    for (size_t i = 0; i < N_SETTINGS; i++)
        if (check_field(&settings[i], c, why, sizeof why)) {
            seterr(err, errlen, "%s.%s: %s", settings[i].section, settings[i].key, why);
            return -1;
        }
    if (!c->model[0] && !c->models_dir[0]) {
        seterr(err, errlen, "no model: set models.model (one .onnx file) or models.models_dir "
                            "(--model, --models, ITSCAM__MODELS__MODEL or ITSCAM__MODELS__MODELS_DIR)");
        return -1;
    }
    if (c->model[0] && c->models_dir[0]) {
        seterr(err, errlen, "models.model and models.models_dir are both set; set only one");
        return -1;
    }
    if ((c->tls_cert[0] != 0) != (c->tls_key[0] != 0)) {
        seterr(err, errlen, "%s is set but %s is not; TLS needs both", c->tls_cert[0] ? "server.tls_cert" : "server.tls_key",
               c->tls_cert[0] ? "server.tls_key" : "server.tls_cert");
        return -1;
    }
    if (srv_config_publish_check(c, err, errlen)) return -1;
    uint32_t snap_mask;
    char snap_why[400];
    if (it_cam_events_types_mask(c->events_snapshots, &snap_mask, snap_why, sizeof snap_why)) {
        seterr(err, errlen, "events.snapshots: %s", snap_why);
        return -1;
    }
    drop_unreachable_preferred(c, note, notelen);
    /* A device backend is accepted even where it is not compiled in: the engine then
     * serves from the CPU and says so (or refuses with models.no_fallback). */
    const char *const *b = itscam_backends();
    for (; *b; b++)
        if (!strcmp(*b, c->backend)) break;
    if (!*b && !itscam_backend_is_device(c->backend)) {
        char have[128] = "";
        for (b = itscam_backends(); *b; b++)
            snprintf(have + strlen(have), sizeof have - strlen(have), "%s%s", have[0] ? ", " : "", *b);
        seterr(err, errlen, "models.backend: '%s' is not compiled into this build (have: %s)", c->backend, have);
        return -1;
    }
    return 0;
}

/* ---- strategies ---- */

static const strategy *find_strategy(const char *name, char *err, size_t errlen) {
    for (size_t i = 0; i < N_STRATEGIES; i++)
        if (name && !strcmp(strategies[i].name, name)) return &strategies[i];
    seterr(err, errlen, "unknown strategy '%s' (latency_optimized, balanced, throughput_optimized or "
                        "memory_optimized)", name ? name : "");
    return NULL;
}

static int apply(srv_config *c, const strategy *st, char *err, size_t errlen) {
    char origin[64];
    snprintf(origin, sizeof origin, "strategy %s", st->name);
    srv_config tmp = *c;
    for (int k = 0; st->set[k][0]; k++) {
        char section[32];
        const char *dot = strchr(st->set[k][0], '.');
        assert(dot && (size_t)(dot - st->set[k][0]) < sizeof section);
        snprintf(section, sizeof section, "%.*s", (int)(dot - st->set[k][0]), st->set[k][0]);
        if (srv_config_set(&tmp, section, dot + 1, st->set[k][1], origin, err, errlen)) return -1;
    }
    *c = tmp;
    return 0;
}

int srv_config_apply_strategy(srv_config *c, const char *strategy_name, char *err, size_t errlen) {
    const strategy *st = find_strategy(strategy_name, err, errlen);
    return st ? apply(c, st, err, errlen) : -1;
}

static int strategy_sets(const strategy *st, const setting *s) {
    for (int k = 0; st->set[k][0]; k++) {
        const char *dot = strchr(st->set[k][0], '.');
        if (strlen(s->section) == (size_t)(dot - st->set[k][0]) &&
            !strncmp(s->section, st->set[k][0], strlen(s->section)) && !strcmp(dot + 1, s->key))
            return 1;
    }
    return 0;
}

/* Every section and setting of c as commented YAML: help, default and environment
 * variable above each key; `marked(s)` adds `mark` to a setting's comment. */
static int write_settings(FILE *f, const srv_config *c, int (*marked)(const void *ctx, const setting *s),
                          const void *ctx, const char *mark, char *err, size_t errlen) {
    srv_config def;
    srv_config_defaults(&def);
    char value[MAX_VALUE_TEXT], dv[MAX_VALUE_TEXT], env[MAX_NAME];
    for (size_t si = 0; si < N_SECTIONS; si++) {
        fprintf(f, "\n# %s\n%s:\n", sections[si].help, sections[si].name);
        for (size_t i = 0; i < N_SETTINGS; i++) {
            const setting *s = &settings[i];
            if (strcmp(s->section, sections[si].name)) continue;
            format_value(value, sizeof value, s, c);
            format_value(dv, sizeof dv, s, &def);
            env_name(s, env, sizeof env);
            fprintf(f, "  # %s. Default: %s. Env: %s.%s%s\n", s->help, dv, env, marked(ctx, s) ? " " : "",
                    marked(ctx, s) ? mark : "");
            fprintf(f, "  %s: %s\n", s->key, value);
        }
    }
    if (ferror(f)) {
        seterr(err, errlen, "write error: %s", strerror(errno));
        return -1;
    }
    return 0;
}

static int strategy_marks(const void *ctx, const setting *s) { return strategy_sets(ctx, s); }

int srv_config_write_strategy(FILE *f, const char *strategy_name, char *err, size_t errlen) {
    const strategy *st = find_strategy(strategy_name, err, errlen);
    if (!st) return -1;
    srv_config c;
    srv_config_defaults(&c);
    if (apply(&c, st, err, errlen)) return -1;
    fprintf(f, "# itscam server configuration: strategy %s\n", st->name);
    /* Wrap the summary as a comment of at most about 90 columns. */
    const char *w = st->optimizes;
    fprintf(f, "# Optimizes for");
    for (int col = 15; *w;) {
        size_t wl = strcspn(w, " ");
        if (col + 1 + (int)wl > 90) fprintf(f, "\n#"), col = 1;
        col += fprintf(f, " %.*s", (int)wl, w);
        w += wl;
        while (*w == ' ') w++;
    }
    fprintf(f, ".\n");
    fprintf(f, "# Written by `itscam config --strategy %s`.\n"
               "# Every setting is listed; those the strategy chooses are marked. Set models.model or\n"
               "# models.models_dir before serving, then check the file with `itscam config --check FILE`.\n"
               "# Precedence: defaults < this file < ITSCAM__SECTION__KEY environment variables < flags.\n",
            st->name);
    return write_settings(f, &c, strategy_marks, st, "Set by the strategy.", err, errlen);
}

/* A setting whose value in c differs from its default. */
static int differs(const void *ctx, const setting *s) {
    srv_config def;
    srv_config_defaults(&def);
    char a[MAX_VALUE_TEXT], b[MAX_VALUE_TEXT];
    format_value(a, sizeof a, s, ctx);
    format_value(b, sizeof b, s, &def);
    return strcmp(a, b) != 0;
}

int srv_config_write(FILE *f, const srv_config *c, const char *header, const char *mark, char *err,
                     size_t errlen) {
    if (header && *header) fprintf(f, "%s%s", header, header[strlen(header) - 1] == '\n' ? "" : "\n");
    fprintf(f, "# Precedence: defaults < this file < ITSCAM__SECTION__KEY environment variables < flags.\n");
    return write_settings(f, c, differs, c, mark ? mark : "Not the default.", err, errlen);
}

/* ---- dump and usage ---- */

void srv_config_dump(FILE *f, const srv_config *c) {
    char value[MAX_VALUE_TEXT];
    for (size_t i = 0; i < N_SETTINGS; i++) {
        format_value(value, sizeof value, &settings[i], c);
        fprintf(f, "%s.%s = %s\n", settings[i].section, settings[i].key, value);
    }
}

void srv_config_usage(FILE *f) {
    srv_config def;
    srv_config_defaults(&def);
    char flags[160], value[MAX_VALUE_TEXT], env[MAX_NAME], mv[64];
    for (size_t i = 0; i < N_SETTINGS; i++) {
        const setting *s = &settings[i];
        const char *m = metavar(s);
        if (!m) { /* a fixed set of values: list them */
            mv[0] = 0;
            for (const char *const *ch = s->choices; *ch; ch++)
                snprintf(mv + strlen(mv), sizeof mv - strlen(mv), "%s%s", mv[0] ? "|" : "", *ch);
            m = mv;
        }
        if (s->alias) snprintf(flags, sizeof flags, "--%s, --%s.%s %s", s->alias, s->section, s->key, m);
        else snprintf(flags, sizeof flags, "--%s.%s %s", s->section, s->key, m);
        format_value(value, sizeof value, s, &def);
        env_name(s, env, sizeof env);
        fprintf(f, "  %-48s %-38s default %s: %s\n", flags, env, value, s->help);
    }
}

