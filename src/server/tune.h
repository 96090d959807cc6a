/* Tuning a server to its machine, the way Triton's Model Analyzer does: a sweep measures
 * configurations (precision, batch size, threads, workers), a strategy picks one, and the
 * pick becomes a complete configuration file plus the subset of it a running server can
 * take without a restart (the scheduler's queue delays, preferred batch sizes and queue
 * limits, through PUT /v1/admin/scheduler). The selector is a pure function of the
 * measured table, so it is tested on made-up tables; `itscam performance optimize`
 * (src/cli/cli_optimize.c) measures and calls it. */
#ifndef ITSCAM_SERVER_TUNE_H
#define ITSCAM_SERVER_TUNE_H

#include "sched/sched.h"
#include "server/config.h"

#include <jansson.h>
#include <stddef.h>

typedef enum srv_tune_strategy {
    SRV_TUNE_LATENCY = 0,     /* latency_optimized */
    SRV_TUNE_BALANCED = 1,    /* balanced */
    SRV_TUNE_THROUGHPUT = 2,  /* throughput_optimized */
    SRV_TUNE_MEMORY = 3,      /* memory_optimized */
    SRV_TUNE_NSTRATEGIES = 4
} srv_tune_strategy;

/* A strategy by name; -1 for an unknown one (or NULL). */
int srv_tune_strategy_parse(const char *name);
/* "latency_optimized", ...; "unknown" out of range. */
const char *srv_tune_strategy_name(int strategy);

/* One measured configuration. */
typedef struct srv_tune_row {
    char precision[8];   /* "fp32", "bf16", "int8" */
    int batch, threads, workers;
    double p50_ms, p99_ms; /* latency of one batch */
    double ips;            /* images per second, all workers together */
    long long mem_bytes;   /* resident memory the configuration added (peak); < 0: unknown */
    int failed;            /* 1: it could not run; never picked */
} srv_tune_row;

/* Memory strategy: configurations within this share of the best throughput compete on memory. */
#define SRV_TUNE_MEMORY_SLACK 0.10

/* Pick a row of the table for a strategy, among the rows that ran:
 *   latency_optimized     the lowest p99 at batch 1 (at any batch when none ran at 1);
 *   throughput_optimized  the most images/s with p99 <= sla_ms;
 *   memory_optimized      the least memory among the rows with p99 <= sla_ms whose
 *                         images/s are within 10% of the best of those (rows of unknown
 *                         memory count as the largest);
 *   balanced              among the rows with p99 <= sla_ms, the highest
 *                         (ips / best ips) * (best p99 / p99): throughput and latency,
 *                         each relative to the best of the table, weigh equally.
 * When no row meets the SLA, the SLA strategies fall back to the lowest p99 and say so.
 * Ties go to less memory, then fewer threads x workers, then the earlier row, so the
 * choice is deterministic. why (may be NULL) receives one line saying why. Returns the
 * row's index, or -1 when no row ran. Pure: no I/O, no globals. */
int srv_tune_pick(const srv_tune_row *rows, int n, int strategy, double sla_ms, char *why, size_t whylen);

/* Fill c for the picked row: the strategy's base settings (srv_config_apply_strategy),
 * then the measured ones: models.precision, threads and workers, batching.max_batch and
 * preferred_batch (the row's batch), the queue delays (the strategy's, capped so that a
 * batch's wait plus its measured p99 fits the SLA) and metrics.sla_ms. c should already
 * hold the model, backend and calib. 0, or -1 with err. */
int srv_tune_config(srv_config *c, const srv_tune_row *row, int strategy, double sla_ms, char *err, size_t errlen);

/* ---- the settings a running server takes (PUT /v1/admin/scheduler) ----
 * JSON form, every key optional on input:
 *   {"max_delay_ms": {"urgent": 10, "normal": 50, "batch": 100},
 *    "preferred_batch": [4, 8],
 *    "queue_limit": {"urgent": 64, "normal": 256, "batch": 1024}} */

/* c's runtime settings as that JSON (a new reference; NULL when out of memory). */
json_t *srv_runtime_json(const srv_config *c);
/* Apply the keys present in body to c, each checked as the configuration file checks it
 * (same ranges and messages). Unknown keys fail, and so do settings that need a restart
 * (precision, threads, workers, max_batch, ...), each named. Given preferred sizes above
 * max_batch (c's, or max_batch_limit when > 0 and smaller) fail too. On failure c is
 * unchanged. 0, or -1 with err. */
int srv_runtime_from_json(srv_config *c, const json_t *body, int max_batch_limit, char *err, size_t errlen);
/* c's runtime settings in the scheduler's form, for a scheduler running batches of at
 * most max_batch (larger preferred sizes are left out, as at start). */
void srv_runtime_to_sched(const srv_config *c, int max_batch, it_sched_runtime *rt);

#endif
