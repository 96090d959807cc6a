/* Choosing a configuration from measurements, writing it as server settings, and the
 * settings a running server can change (see tune.h). */
#include "server/tune.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const strategy_names[SRV_TUNE_NSTRATEGIES] = { "latency_optimized", "balanced",
                                                                  "throughput_optimized", "memory_optimized" };

int srv_tune_strategy_parse(const char *name) {
    for (int i = 0; name && i < SRV_TUNE_NSTRATEGIES; i++)
        if (!strcmp(name, strategy_names[i])) return i;
    return -1;
}

const char *srv_tune_strategy_name(int strategy) {
    return strategy >= 0 && strategy < SRV_TUNE_NSTRATEGIES ? strategy_names[strategy] : "unknown";
}

static void say(char *why, size_t whylen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void say(char *why, size_t whylen, const char *fmt, ...) {
    if (!why || !whylen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
}

static int usable(const srv_tune_row *r) {
    return !r->failed && r->batch >= 1 && isfinite(r->p99_ms) && r->p99_ms >= 0 && isfinite(r->ips) && r->ips >= 0;
}

static double mem_of(const srv_tune_row *r) { return r->mem_bytes < 0 ? INFINITY : (double)r->mem_bytes; }

/* The tie-breaks every strategy shares: less memory, then fewer cores busy, then the
 * earlier row (a is earlier than b). 1 when b should replace a. */
static int tie_prefers(const srv_tune_row *a, const srv_tune_row *b) {
    if (mem_of(b) != mem_of(a)) return mem_of(b) < mem_of(a);
    return b->threads * b->workers < a->threads * a->workers;
}

/* Index of the row with the lowest p99 among the usable rows (at batch 1 only, or all). */
static int lowest_p99(const srv_tune_row *rows, int n, int only_batch1) {
    int best = -1;
    for (int i = 0; i < n; i++) {
        const srv_tune_row *r = &rows[i];
        if (!usable(r) || (only_batch1 && r->batch != 1)) continue;
        if (best < 0 || r->p99_ms < rows[best].p99_ms || (r->p99_ms == rows[best].p99_ms && tie_prefers(&rows[best], r)))
            best = i;
    }
    return best;
}

int srv_tune_pick(const srv_tune_row *rows, int n, int strategy, double sla_ms, char *why, size_t whylen) {
    say(why, whylen, "no configuration ran");
    if (!rows || n <= 0 || strategy < 0 || strategy >= SRV_TUNE_NSTRATEGIES) return -1;
    if (strategy == SRV_TUNE_LATENCY) {
        int b = lowest_p99(rows, n, 1);
        if (b >= 0) {
            say(why, whylen, "lowest p99 at batch 1: %.2f ms", rows[b].p99_ms);
            return b;
        }
        b = lowest_p99(rows, n, 0);
        if (b >= 0) say(why, whylen, "no configuration ran at batch 1; lowest p99: %.2f ms", rows[b].p99_ms);
        return b;
    }
    /* The SLA strategies look at the rows that meet it, and at their best figures. */
    double best_ips = 0, best_p99 = INFINITY;
    int n_ok = 0;
    for (int i = 0; i < n; i++)
        if (usable(&rows[i]) && rows[i].p99_ms <= sla_ms) {
            n_ok++;
            if (rows[i].ips > best_ips) best_ips = rows[i].ips;
            if (rows[i].p99_ms < best_p99) best_p99 = rows[i].p99_ms;
        }
    if (n_ok == 0) {
        int b = lowest_p99(rows, n, 0);
        if (b >= 0)
            say(why, whylen, "no configuration meets the SLA of %g ms (p99); picked the lowest p99, %.2f ms", sla_ms,
                rows[b].p99_ms);
        return b;
    }
    int best = -1;
    double best_score = -INFINITY;
    for (int i = 0; i < n; i++) {
        const srv_tune_row *r = &rows[i];
        if (!usable(r) || r->p99_ms > sla_ms) continue;
        double score;
        if (strategy == SRV_TUNE_THROUGHPUT) score = r->ips;
        else if (strategy == SRV_TUNE_MEMORY) {
            if (r->ips < (1.0 - SRV_TUNE_MEMORY_SLACK) * best_ips) continue;
            score = -mem_of(r); /* -inf for unknown memory: still above "none yet" */
        } else {
            /* p99 of 0 (a clock too coarse) counts as the best p99 of the table */
            double lat = r->p99_ms > 0 ? best_p99 / r->p99_ms : 1.0;
            score = (best_ips > 0 ? r->ips / best_ips : 0) * lat;
        }
        if (best < 0 || score > best_score ||
            (score == best_score &&
             (strategy == SRV_TUNE_MEMORY ? r->ips > rows[best].ips : tie_prefers(&rows[best], r)))) {
            best = i;
            best_score = score;
        }
    }
    const srv_tune_row *b = &rows[best];
    if (strategy == SRV_TUNE_THROUGHPUT)
        say(why, whylen, "most images/s with p99 <= %g ms: %.1f images/s (p99 %.2f ms)", sla_ms, b->ips, b->p99_ms);
    else if (strategy == SRV_TUNE_MEMORY) {
        if (b->mem_bytes >= 0)
            say(why, whylen, "least memory (%.1f MiB) within %.0f%% of the best throughput (%.1f images/s) with p99 <= %g ms",
                b->mem_bytes / 1048576.0, SRV_TUNE_MEMORY_SLACK * 100, best_ips, sla_ms);
        else
            say(why, whylen, "memory unknown; the first within %.0f%% of the best throughput with p99 <= %g ms",
                SRV_TUNE_MEMORY_SLACK * 100, sla_ms);
    } else
        say(why, whylen, "best (images/s / best images/s) x (best p99 / p99) with p99 <= %g ms: %.3f (%.1f images/s, p99 %.2f ms)",
            sla_ms, best_score, b->ips, b->p99_ms);
    return best;
}

/* ---- the chosen configuration ---- */

static int set_int(srv_config *c, const char *section, const char *key, int v, char *err, size_t errlen) {
    char text[32];
    snprintf(text, sizeof text, "%d", v);
    return srv_config_set(c, section, key, text, "optimize", err, errlen);
}

int srv_tune_config(srv_config *c, const srv_tune_row *row, int strategy, double sla_ms, char *err, size_t errlen) {
    if (!c || !row || strategy < 0 || strategy >= SRV_TUNE_NSTRATEGIES) {
        snprintf(err, errlen, "srv_tune_config: bad argument");
        return -1;
    }
    srv_config t = *c;
    if (srv_config_apply_strategy(&t, srv_tune_strategy_name(strategy), err, errlen)) return -1;
    char text[64];
    snprintf(text, sizeof text, "%d", row->batch);
    /* A batch's wait to fill plus its run must fit the SLA: the waits are the
     * strategy's, capped by what the measured p99 leaves (urgent a quarter of it,
     * normal half, batch all). */
    double slack = sla_ms - row->p99_ms;
    if (!(slack > 0)) slack = 0;
    const double share[IT_SCHED_NPRIO] = { 0.25, 0.5, 1.0 };
    static const char *const delay_keys[IT_SCHED_NPRIO] = { "max_delay_ms_urgent", "max_delay_ms_normal",
                                                             "max_delay_ms_batch" };
    int delays[IT_SCHED_NPRIO];
    for (int l = 0; l < IT_SCHED_NPRIO; l++) {
        double cap = floor(slack * share[l]);
        delays[l] = t.max_delay_ms[l] < cap ? t.max_delay_ms[l] : (int)cap;
        /* a batch of 1 has nothing to wait for */
        if (row->batch == 1) delays[l] = 0;
    }
    char sla[32];
    snprintf(sla, sizeof sla, "%g", sla_ms);
    if (srv_config_set(&t, "models", "precision", row->precision, "optimize", err, errlen) ||
        set_int(&t, "models", "threads", row->threads, err, errlen) ||
        set_int(&t, "models", "workers", row->workers, err, errlen) ||
        set_int(&t, "batching", "max_batch", row->batch, err, errlen) ||
        srv_config_set(&t, "batching", "preferred_batch", text, "optimize", err, errlen) ||
        srv_config_set(&t, "metrics", "sla_ms", sla, "optimize", err, errlen))
        return -1;
    for (int l = 0; l < IT_SCHED_NPRIO; l++)
        if (set_int(&t, "batching", delay_keys[l], delays[l], err, errlen)) return -1;
    *c = t;
    return 0;
}

/* ---- run-time settings ---- */

json_t *srv_runtime_json(const srv_config *c) {
    json_t *o = json_object(), *d = json_object(), *q = json_object(), *p = json_array();
    if (!o || !d || !q || !p) {
        json_decref(o), json_decref(d), json_decref(q), json_decref(p);
        return NULL;
    }
    for (int l = 0; l < IT_SCHED_NPRIO; l++) {
        json_object_set_new(d, it_sched_prio_name(l), json_integer(c->max_delay_ms[l]));
        json_object_set_new(q, it_sched_prio_name(l), json_integer(c->queue_limit[l]));
    }
    for (int i = 0; i < c->n_preferred && i < SRV_MAX_PREFERRED; i++) json_array_append_new(p, json_integer(c->preferred_batch[i]));
    json_object_set_new(o, "max_delay_ms", d);
    json_object_set_new(o, "preferred_batch", p);
    json_object_set_new(o, "queue_limit", q);
    return o;
}

/* Settings a client might try to change here that only a restart applies. */
static const char *const restart_keys[] = { "precision", "threads", "workers", "max_batch", "backend", "calib",
                                            "model", "models_dir", "device_ids", "no_fallback", NULL };

/* {"urgent": N, "normal": N, "batch": N}, any subset, into batching.<prefix>_<level>. */
static int per_level(srv_config *t, const char *name, const json_t *v, const char *prefix, char *err, size_t errlen) {
    if (!json_is_object(v)) {
        snprintf(err, errlen, "%s: expected an object like {\"urgent\": 10, \"normal\": 50, \"batch\": 100}", name);
        return -1;
    }
    if (json_object_size(v) == 0) {
        snprintf(err, errlen, "%s: empty; name at least one of urgent, normal, batch", name);
        return -1;
    }
    const char *k;
    json_t *x;
    json_object_foreach((json_t *)v, k, x) {
        int l = -1;
        for (int i = 0; i < IT_SCHED_NPRIO; i++)
            if (!strcmp(k, it_sched_prio_name(i))) l = i;
        if (l < 0) {
            snprintf(err, errlen, "%s.%s: unknown priority (urgent, normal or batch)", name, k);
            return -1;
        }
        if (!json_is_integer(x)) {
            snprintf(err, errlen, "%s.%s: expected an integer", name, k);
            return -1;
        }
        char key[64], text[32], origin[64];
        snprintf(key, sizeof key, "%s_%s", prefix, k);
        snprintf(text, sizeof text, "%" JSON_INTEGER_FORMAT, json_integer_value(x));
        snprintf(origin, sizeof origin, "%s.%s", name, k);
        if (srv_config_set(t, "batching", key, text, origin, err, errlen)) return -1;
    }
    return 0;
}

int srv_runtime_from_json(srv_config *c, const json_t *body, int max_batch_limit, char *err, size_t errlen) {
    if (!json_is_object(body)) {
        snprintf(err, errlen, "expected a JSON object with max_delay_ms, preferred_batch and/or queue_limit");
        return -1;
    }
    if (json_object_size(body) == 0) {
        snprintf(err, errlen, "nothing to change: give max_delay_ms, preferred_batch and/or queue_limit");
        return -1;
    }
    srv_config t = *c;
    const char *k;
    json_t *v;
    int preferred_given = 0;
    json_object_foreach((json_t *)body, k, v) {
        if (!strcmp(k, "max_delay_ms")) {
            if (per_level(&t, k, v, "max_delay_ms", err, errlen)) return -1;
        } else if (!strcmp(k, "queue_limit")) {
            if (per_level(&t, k, v, "queue_limit", err, errlen)) return -1;
        } else if (!strcmp(k, "preferred_batch")) {
            if (!json_is_array(v)) {
                snprintf(err, errlen, "preferred_batch: expected an array of batch sizes like [4, 8]");
                return -1;
            }
            char text[256] = "";
            size_t i;
            json_t *x;
            json_array_foreach(v, i, x) {
                if (!json_is_integer(x)) {
                    snprintf(err, errlen, "preferred_batch[%zu]: expected an integer", i);
                    return -1;
                }
                size_t used = strlen(text);
                snprintf(text + used, sizeof text - used, "%s%" JSON_INTEGER_FORMAT, i ? "," : "", json_integer_value(x));
            }
            if (srv_config_set(&t, "batching", "preferred_batch", text, "preferred_batch", err, errlen)) return -1;
            preferred_given = 1;
        } else {
            for (int r = 0; restart_keys[r]; r++)
                if (!strcmp(k, restart_keys[r])) {
                    snprintf(err, errlen, "%s cannot change while the server runs: set it in the configuration file "
                                          "and restart", k);
                    return -1;
                }
            snprintf(err, errlen, "unknown key '%s' (max_delay_ms, preferred_batch, queue_limit)", k);
            return -1;
        }
    }
    int limit = t.max_batch;
    if (max_batch_limit > 0 && max_batch_limit < limit) limit = max_batch_limit;
    for (int i = 0; preferred_given && i < t.n_preferred; i++)
        if (t.preferred_batch[i] > limit) {
            snprintf(err, errlen, "preferred_batch: %d is above max_batch (%d), which needs a restart to raise",
                     t.preferred_batch[i], limit);
            return -1;
        }
    *c = t;
    return 0;
}

void srv_runtime_to_sched(const srv_config *c, int max_batch, it_sched_runtime *rt) {
    memset(rt, 0, sizeof *rt);
    for (int l = 0; l < IT_SCHED_NPRIO; l++) {
        rt->max_delay_ms[l] = c->max_delay_ms[l];
        rt->queue_limit[l] = c->queue_limit[l];
    }
    for (int i = 0; i < c->n_preferred && i < SRV_MAX_PREFERRED && rt->n_preferred < IT_SCHED_MAX_PREFERRED; i++)
        if (c->preferred_batch[i] <= max_batch) rt->preferred_batch[rt->n_preferred++] = c->preferred_batch[i];
}
