/* A small Prometheus registry: counters, gauges and histograms with up to 4 labels,
 * rendered in the text exposition format (version 0.0.4). Thread-safe: updates take a
 * per-family mutex (cheap next to an inference); rendering takes each in turn.
 * Families are registered once at start-up; label sets are created on first use. */
#ifndef ITSCAM_SERVER_PROM_H
#define ITSCAM_SERVER_PROM_H

#include <stddef.h>

typedef struct prom_registry prom_registry;
typedef struct prom_family prom_family;

typedef enum { PROM_COUNTER, PROM_GAUGE, PROM_HISTOGRAM } prom_type;

prom_registry *prom_registry_new(void);
void prom_registry_free(prom_registry *r);

/* Register a family. label_names: NULL-terminated, at most 4. buckets: upper bounds in
 * increasing order for histograms (+Inf is implicit), NULL otherwise. Returns NULL on
 * bad arguments or out of memory. The registry owns the family. */
prom_family *prom_register(prom_registry *r, prom_type type, const char *name, const char *help,
                           const char *const *label_names, const double *buckets, int n_buckets);

/* The most label sets (series) a family registered from now on may hold: default 1000,
 * 1..1000000. A new label set beyond it is folded into the family's one overflow series,
 * whose label values are all "_overflow", and the update is counted in
 * itscam_metrics_series_dropped_total{family="<name>"}: clients that make up label
 * values cannot grow a scrape without bound. 0, or -1 for a bad argument. */
int prom_set_max_series(prom_registry *r, int max);

/* label_values: as many as the family has label names (NULL when it has none). Values
 * are escaped when rendered. Updates with bad arguments or the wrong type for the family
 * are dropped and counted in itscam_metrics_dropped_total; see prom_set_max_series for
 * what happens to a full family. */
void prom_inc(prom_family *f, const char *const *label_values, double v);     /* counter/gauge += v */
void prom_set(prom_family *f, const char *const *label_values, double v);     /* gauge = v */
void prom_observe(prom_family *f, const char *const *label_values, double v); /* histogram */
/* counter = v, for a total kept elsewhere (a camera's frame counts) and copied at scrape
 * time; the total restarts (a counter reset to Prometheus) when its owner does. */
void prom_set_total(prom_family *f, const char *const *label_values, double v);

/* Callback run at the start of every render, to refresh gauges (process CPU, memory,
 * queue depths). At most 8 per registry. */
typedef void (*prom_collect_fn)(prom_registry *r, void *user);
void prom_on_collect(prom_registry *r, prom_collect_fn fn, void *user);

/* Render everything into a fresh NUL-terminated buffer (free()); *len gets its length. */
char *prom_render(prom_registry *r, size_t *len);

/* Standard bucket sets for latencies in seconds (0.5 ms .. 10 s) and batch sizes. */
extern const double prom_latency_buckets[];
extern const int prom_n_latency_buckets;
extern const double prom_batch_buckets[];
extern const int prom_n_batch_buckets;

/* Parsing the text format back (for `itscam performance`): one sample per line. */
typedef struct prom_sample {
    char name[128];
    char labels[512];   /* raw text between the braces, "" when none */
    double value;
} prom_sample;
/* Parse text into samples (comments skipped). Returns the number parsed (<= max), or -1
 * on a malformed line (message in err, naming the line). Samples past max are still
 * checked but not kept, and err then says how many there were. Timestamps are ignored. */
int prom_parse(const char *text, size_t len, prom_sample *out, int max, char *err, size_t errlen);
/* Value of label `key` in a sample's raw label text into buf, unescaped and truncated to
 * n-1 bytes; 0 when found, -1 when absent or the label text is malformed. */
int prom_label(const prom_sample *s, const char *key, char *buf, size_t n);

/* Estimate quantile q (0..1) of a histogram as Prometheus' histogram_quantile() does:
 * linear interpolation inside the bucket that holds rank q*count, the lowest bucket
 * starting at 0 (or returning its bound when that is <= 0), and the upper bound of the
 * last finite bucket when the rank falls in +Inf. upper: n increasing bounds, the last
 * +Inf; cumcount: cumulative counts (made monotonic here, as Prometheus does). Returns
 * NaN when there are no observations, fewer than 2 buckets or the last is not +Inf;
 * -Inf for q < 0 and +Inf for q > 1. */
double prom_histogram_quantile(double q, const double *upper, const double *cumcount, int n);

/* Helpers over parsed samples for clients. `match` is NULL (everything matches) or a list
 * of alternating label keys and values ending with a NULL key ("model", "yolo11n", NULL);
 * a sample matches when it has every key with exactly that value. */
int prom_match(const prom_sample *s, const char *const *match);
/* Sum of the values of the samples named `name` that match. *found (may be NULL) gets
 * the number of samples summed, so that callers can tell an absent metric from 0. */
double prom_sum(const prom_sample *s, int n, const char *name, const char *const *match, int *found);
/* Gather histogram `name` (the base name, without _bucket) from the samples that match,
 * summing bucket counts of equal `le` across the other labels. Writes the bounds in
 * increasing order (the last +Inf when present) and cumulative counts; returns how many
 * (<= max), 0 when absent, -1 when there are more than max distinct bounds. */
int prom_histogram_buckets(const prom_sample *s, int n, const char *name, const char *const *match,
                           double *upper, double *cumcount, int max);

#endif
