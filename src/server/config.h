/* Server configuration: one struct, filled from defaults, then a YAML file, then
 * ITSCAM__SECTION__KEY environment variables, then command-line flags (each overrides
 * the one before). Every setting is a row of one table (section, key, type, range, help),
 * so the YAML reader, the environment, the flags and `itscam config` all agree. */
#ifndef ITSCAM_SERVER_CONFIG_H
#define ITSCAM_SERVER_CONFIG_H

#include "sched/sched.h" /* the priority levels and their names (it_sched_prio_*) */
#include "sinks/camdef.h"

#include <stddef.h>
#include <stdio.h>

#define SRV_PATH_MAX 1024
#define SRV_MAX_PREFERRED 8

typedef struct srv_config {
    /* server: */
    char host[64];              /* "0.0.0.0" */
    int port;                   /* 8080 */
    int http_threads;           /* 0: number of cores (libmicrohttpd thread pool) */
    int max_connections;        /* 256 */
    long long max_body_bytes;   /* 32 MiB */
    int connection_timeout_s;   /* 30: idle or slow clients are dropped after this */
    long long decode_budget_bytes; /* 0: min(1 GiB, RAM / 4): decoded image bytes in flight */
    int decode_wait_ms;         /* 200: wait for decode budget before 503 */
    int drain_timeout_s;        /* 30: SIGTERM waits this long for requests in flight */
    int header_timeout_s;       /* 10: a request's headers are complete within this */
    int min_body_rate;          /* 1024 bytes/s: slower bodies are dropped (0: no minimum) */
    int max_connections_per_ip; /* 128 (0: no limit): half the slots, so one address never takes them all */
    int reserved_connections;   /* 8: slots beyond max_connections for health and metrics */
    int max_streams;            /* 64 streaming responses (SSE, MJPEG) at once */
    int stream_send_timeout_s;  /* 30: a stream whose socket takes nothing this long is dropped */
    char tls_cert[SRV_PATH_MAX];  /* PEM; TLS on when set (needs tls_key) */
    char tls_key[SRV_PATH_MAX];
    char tokens_file[SRV_PATH_MAX]; /* one bearer token per line; auth on when set */
    /* models: */
    char model[SRV_PATH_MAX];     /* one .onnx file, or "" */
    char models_dir[SRV_PATH_MAX];/* every *.onnx in it, named by file name without .onnx */
    char backend[16];           /* "cpu" */
    char precision[16];         /* "fp32" | "bf16" | "int8" | "auto" */
    char calib[SRV_PATH_MAX];   /* calibration table for int8 */
    int workers;                /* 1: sessions (worker threads) per model */
    int device_ids[SRV_MAX_PREFERRED]; /* GPUs for the workers: worker i runs on
                                 * device_ids[i % n]; none: ITSCAM_CUDA_DEVICE or 0 */
    int n_device_ids;
    int no_fallback;            /* 0: backend cuda without a GPU (or with its breaker open)
                                 * serves from the CPU; 1: fail instead */
    int threads;                /* 0: inference threads per session (0 = cores / workers) */
    /* batching: */
    int max_batch;              /* 8 */
    int preferred_batch[SRV_MAX_PREFERRED]; /* e.g. {4, 8}; 0-terminated when fewer */
    int n_preferred;
    int max_delay_ms[IT_SCHED_NPRIO];  /* urgent 10, normal 50, batch 100 */
    int queue_limit[IT_SCHED_NPRIO];   /* 64, 256, 1024 */
    int timeout_ms;             /* 5000: default per-request timeout (504 after it) */
    /* detection: defaults for requests that do not say */
    float conf;                 /* 0.25 */
    float iou;                  /* 0.7 */
    int max_det;                /* 300 */
    /* breaker: the GPU backend's circuit breaker */
    int breaker_failures;       /* 15 consecutive failures open it */
    int breaker_oom;            /* 3 consecutive out-of-memory errors open it */
    int breaker_open_ms;        /* 30000: open this long before probing */
    int breaker_probes;         /* 10 successful probes close it */
    /* metrics: */
    double sla_ms;              /* 100 */
    int max_series_per_family;  /* 1000: label sets per metric family; more fold into "_overflow" */
    /* logging: */
    char log_level[8];          /* "error" | "warn" | "info" | "debug" */
    /* storage: */
    char storage_dir[SRV_PATH_MAX]; /* "./itscam-data": the embedded database (src/sinks/store.h) */
    /* track: ByteTrack defaults of every camera */
    it_track_params track;
    /* events: */
    double events_retention_days;   /* 30 (0: no age limit) */
    double events_max;              /* 1e7 events (0: no limit) */
    int events_track;               /* 1: store track_start/track_end */
    char events_snapshots[256];     /* event types with a snapshot, comma-separated */
    int events_snapshot_quality;    /* 80 */
    double events_occupancy_every_s;/* 10 */
    int events_queue;               /* 8192 */
    /* publish: events to MQTT and Redis Streams (src/sinks/publish.h, server/publish_srv.c);
     * a broker with an empty host is off. Keys are "mqtt.host", "redis.port", ...; YAML
     * nests them (publish: {mqtt: {host: ...}}), the environment writes
     * ITSCAM__PUBLISH__MQTT__HOST. Passwords are never shown (dumps write "***"). */
    struct {
        char host[256], username[128], password[256], client_id[128], prefix[128];
        int port, keepalive_s, tls, tls_insecure;
        char ca_file[SRV_PATH_MAX], cert_file[SRV_PATH_MAX], key_file[SRV_PATH_MAX];
    } mqtt;
    struct {
        char host[256], username[128], password[256], stream[128];
        int port, db, maxlen, tls;
    } redis;
} srv_config;

void srv_config_defaults(srv_config *c);

/* Set one setting by section and key from its text value (as in YAML, env or a flag).
 * `origin` names where it came from ("config.yaml:12", "ITSCAM__SERVER__PORT", "--port")
 * and prefixes the message written into err on failure. Returns 0 or -1. */
int srv_config_set(srv_config *c, const char *section, const char *key, const char *value,
                   const char *origin, char *err, size_t errlen);

/* Read a YAML file (libyaml): a mapping of sections to mappings of keys to scalars or
 * (for preferred_batch) a sequence of integers. Unknown sections or keys and bad values
 * fail with "FILE:LINE: section.key: reason". Returns 0 or -1. */
int srv_config_load_file(srv_config *c, const char *path, char *err, size_t errlen);
/* The same from text in memory (len bytes, NUL not needed); `name` stands for the file
 * name in messages. The top-level key `cameras:` is skipped here: srv_cameras_load_string
 * reads it. */
int srv_config_load_string(srv_config *c, const char *text, size_t len, const char *name, char *err,
                           size_t errlen);

/* Apply every ITSCAM__SECTION__KEY variable of envp (case-insensitive section and key);
 * an unknown ITSCAM__ variable is an error, except ITSCAM__CAMERAS__* (srv_cameras_load_env
 * reads those). Returns 0 or -1. */
int srv_config_load_env(srv_config *c, char **envp, char *err, size_t errlen);

/* Try to consume one flag at argv[*i]: "--section.key VALUE", "--section.key=VALUE" or
 * an alias (--host, --port, --model, --models, --backend, --precision, --calib,
 * --threads, --workers, --max-batch, --timeout-ms, --tls-cert, --tls-key, --tokens,
 * --sla-ms, --log-level). Returns 1 when consumed (advancing *i past the value), 0 when
 * argv[*i] is not a config flag, -1 on a bad value (message in err). */
int srv_config_flag(srv_config *c, int argc, char **argv, int *i, char *err, size_t errlen);

/* Check every range again and the cross-field rules after everything is applied (a
 * model or a models dir is given, tls_cert and tls_key together, a backend compiled in or
 * a device one). One normalisation: preferred batch sizes above max_batch are dropped,
 * with a line per size written into note (may be NULL; "" when nothing was dropped), so
 * `itscam serve` and `itscam config --check` apply the same rule. Returns 0 or -1 with
 * the reason in err. */
int srv_config_validate(srv_config *c, char *note, size_t notelen, char *err, size_t errlen);

/* Write a complete, commented YAML configuration for a strategy: "latency_optimized",
 * "balanced", "throughput_optimized" or "memory_optimized" (the strategy sets batch
 * sizes, queue delays, workers, threads and precision; everything else is the default).
 * Returns 0, or -1 for an unknown strategy. */
int srv_config_write_strategy(FILE *f, const char *strategy, char *err, size_t errlen);
/* Write c as a complete, commented YAML configuration that srv_config_load_file reads
 * back to the same values: every section and setting with its help, default and
 * environment variable. header: comment lines written first (each starting with "#");
 * settings whose value is not the default get `mark` in their comment (NULL: "Not the
 * default."). Passwords are written as "***", as in every dump.
 * Returns 0, or -1 on a write error. */
int srv_config_write(FILE *f, const srv_config *c, const char *header, const char *mark, char *err,
                     size_t errlen);
/* Apply a strategy's settings to c (used by `itscam serve --strategy`). */
int srv_config_apply_strategy(srv_config *c, const char *strategy, char *err, size_t errlen);

/* With cameras, when neither models.workers nor models.threads was changed from its
 * default (1 and 0): one single-thread worker per physical core instead of one worker
 * with a thread per core. Decoder threads share those cores, and an OpenMP parallel
 * region stalls at its barrier whenever one of its threads is preempted: on 2 cores, 12
 * cameras at 5 fps had p95 117 ms with 1x2 and 49 ms with 2x1. Returns 1 when it
 * changed c (the caller says so), else 0. */
int srv_config_cameras_threading(srv_config *c, int n_cameras);

/* The publish section's cross-field rules (server/publish_srv.c): the broker settings
 * it_publisher_check refuses, with the setting named (Redis TLS, for one, is refused:
 * Debian 12's hiredis has none). 0, or -1 with err. */
int srv_config_publish_check(const srv_config *c, char *err, size_t errlen);

/* Print every setting as "section.key = value" (for `itscam serve --print-config`);
 * passwords as "***". */
void srv_config_dump(FILE *f, const srv_config *c);
/* One line per setting for --help: flag, env variable, default, help. */
void srv_config_usage(FILE *f);

/* ---- cameras (config_cameras.c) ----
 * Cameras are not part of srv_config (which is copied by value): they are a list the
 * caller owns, an array of it_camdef from malloc (free it with free()), at most IT_CAM_MAX.
 * Sources, each changing what the one before gave:
 *   YAML:  cameras: a sequence of mappings with the keys of it_camdef_from_json
 *          (id, url, enabled, priority, ..., detect: {fps, model, conf, classes, ...});
 *          plain scalars are typed (true/false, integers, floats), quoted ones stay strings.
 *   env:   ITSCAM__CAMERAS__<ID>__<KEY>[__<SUBKEY>]=VALUE, the ID case-insensitive (read in
 *          lower case; an id holding "__" cannot be named this way). Changes the camera with
 *          that id, or creates one (then a URL is required). VALUE is typed as a plain YAML
 *          scalar; detect.classes takes "0,2,5" or "[0, 2, 5]".
 *   flag:  --camera ID=URL (repeatable): the camera's URL, created with defaults when new.
 * All return 0, or -1 with the list unchanged and the reason in err. */
int srv_cameras_load_file(const char *path, it_camdef **out, int *n, char *err, size_t errlen);
/* The same from text (see srv_config_load_string); *out is NULL and *n 0 when there is no
 * cameras: key. Errors read "NAME:LINE: cameras[2].detect.fps: must be ..."; duplicate
 * ids fail. */
int srv_cameras_load_string(const char *text, size_t len, const char *name, it_camdef **out, int *n,
                            char *err, size_t errlen);
int srv_cameras_load_env(it_camdef **list, int *n, char **envp, char *err, size_t errlen);
/* arg is "ID=URL" (what follows --camera). */
int srv_cameras_flag(it_camdef **list, int *n, const char *arg, char *err, size_t errlen);

/* Note on srv_config_flag: when it returns 1, *i is the index of the first argument it
 * did not consume (i + 1 for "--key=VALUE", i + 2 for "--key VALUE"), so a caller loop
 * must not advance i again:
 *     for (int i = 1; i < argc;) {
 *         int rc = srv_config_flag(&c, argc, argv, &i, err, sizeof err);
 *         if (rc == 1) continue;
 *         if (rc < 0) fail(err);
 *         ... the caller's own flag at argv[i], then i++ ...
 *     }
 * On 0 and -1, *i is unchanged. A flag with a dot ("--batching.maxbatch") is always taken
 * as a configuration flag: an unknown one is an error (-1) with a suggestion. */

#endif
