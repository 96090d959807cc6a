/* The priority dynamic batcher: one queue per priority level, drained by worker threads
 * that each own a detector (the model's weights are shared between them).
 *
 * Forming a batch. A free worker takes the queued jobs, urgent first, then normal, then
 * batch, in arrival order within a level, up to max_batch. It dispatches at once when
 * it can fill the largest preferred batch size, or when the oldest job of some level has
 * waited that level's delay; otherwise it waits for more. The delay adapts: waiting only
 * pays when other jobs arrive meanwhile, so a level's effective delay halves every time
 * a wait ends with a lone job, and doubles back towards the configured maximum whenever
 * a batch forms with company. A lone client therefore pays no queue delay, and under
 * load batches fill up. Where batching does not make an image cheaper (batching_pays),
 * nothing waits at all.
 *
 * Urgent traffic. A job cannot be preempted once its batch runs, so an urgent job may
 * wait for the batch in progress and then for its own. Two rules bound that: a batch led
 * by urgent jobs holds urgent jobs only (it is not slowed by filling it with lower
 * levels), and while urgent traffic is active (an urgent job arrived within the last
 * URGENT_WINDOW_MS) batches of the lower levels are capped at the largest size whose
 * measured run time fits the urgent level's delay budget, at least one. On a GPU, where
 * a batch of 8 takes a few milliseconds, the cap is max_batch; on a CPU it is 1, which
 * trades the lower levels' throughput for the urgent level's latency, as it should.
 *
 * Executed sizes. A session keeps one compiled plan per input shape, and only
 * IT_SESSION_PLANS of them: were every size from 1 to max_batch run, plans would be
 * evicted and recompiled under load. So a scheduler runs only 1, the preferred sizes and
 * max_batch (at most IT_SESSION_PLANS of them, all warmed up at start), and a formed
 * batch of another size runs as chunks of those sizes, largest first. On a CPU the cost
 * is linear in the batch, so 7 as 4+1+1+1 costs what 7 would. Images and input tensors
 * (always at the model's input size) share batches.
 *
 * Newest per source. A job with keep_newest takes the queue position of a queued job of
 * the same source, which ends REPLACED: a camera that produces frames faster than they
 * are served keeps one frame queued, and keeps its place in the queue.
 *
 * Jobs past their deadline end EXPIRED without running. */
#include "sched/sched.h"

#include "core/core.h"
#include "detect/detector.h"
#include "runtime/model.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define URGENT_WINDOW_MS 2000.0

static const char *const PRIO_NAMES[IT_SCHED_NPRIO] = { "urgent", "normal", "batch" };

const char *it_sched_prio_name(int prio) {
    return prio >= 0 && prio < IT_SCHED_NPRIO ? PRIO_NAMES[prio] : "unknown";
}

int it_sched_prio_parse(const char *s) {
    if (!s) return -1;
    for (int p = 0; p < IT_SCHED_NPRIO; p++)
        if (!strcasecmp(s, PRIO_NAMES[p]) || (s[0] == '0' + p && !s[1])) return p;
    return -1;
}

const char *it_sched_outcome_name(it_sched_outcome o) {
    static const char *const names[] = { "done", "queue_full", "expired", "failed", "cancelled", "replaced" };
    return (int)o >= 0 && (int)o < (int)(sizeof names / sizeof *names) ? names[o] : "unknown";
}

it_sched_params it_sched_default_params(void) {
    it_sched_params p = { .workers = 1, .max_batch = 8, .n_preferred = 0, .max_delay_ms = { 10, 50, 100 },
                          .queue_limit = { 64, 256, 1024 }, .adaptive_delay = 1, .n_device_ids = 0 };
    p.detector = itscam_detector_default_params();
    return p;
}

typedef struct sched_worker {
    it_sched *s;
    pthread_t tid;
    int started;
    itscam_detector *det;
    it_sched_job *batch[IT_SCHED_MAX_BATCH];
    it_detect_item items[IT_SCHED_MAX_BATCH];
} sched_worker;

struct it_sched {
    char name[128];
    const itscam_model *m;
    it_sched_params p;
    char backend[16], precision[16], calib[1024]; /* copies of the detector template's strings */
    int classes[IT_SCHED_MAX_CLASSES];
    it_sched_observer obs;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    it_sched_job *head[IT_SCHED_NPRIO], *tail[IT_SCHED_NPRIO];
    int depth[IT_SCHED_NPRIO];
    double adapt_ms[IT_SCHED_NPRIO];   /* effective delay per level, 0..max_delay_ms */
    double last_urgent_ms;             /* arrival of the latest urgent job */
    double run_ms[IT_SCHED_MAX_BATCH + 1]; /* moving average of a batch's run time, by size */
    int stopping;
    int nworkers;
    int idle;                          /* workers in next_batch, looking for work */
    int max_batch;                     /* 1 for static-batch models */
    int sizes[IT_SESSION_PLANS];       /* the batch sizes actually run, ascending, sizes[0] == 1 */
    int n_sizes;
    int in_w, in_h;
    sched_worker *w;
};

/* ---- completion ---- */

static void finish(it_sched *s, it_sched_job *j, it_sched_outcome o) {
    j->outcome = o;
    if (s->obs.job_done) s->obs.job_done(s->obs.ctx, j);
    j->done(j, j->done_arg);
}

static void finish_expired(it_sched *s, it_sched_job *j, double now) {
    const char *lv = it_sched_prio_name(j->prio);
    double waited = now - j->t_submit_ms, late = j->t_submit_ms - j->deadline_ms;
    /* The deadline may have been spent before submission (decoding, upload): say so
     * rather than blame the queue for it. */
    if (late >= 0)
        snprintf(j->message, sizeof j->message,
                 "expired after waiting %.0f ms in the %s queue; its deadline had passed %.0f ms before it was submitted",
                 waited, lv, late);
    else
        snprintf(j->message, sizeof j->message, "expired after waiting %.0f ms in the %s queue (deadline %.0f ms after submission)",
                 waited, lv, -late);
    j->status = ITSCAM_OK;
    if (s->obs.rejected) s->obs.rejected(s->obs.ctx, j->prio, IT_SCHED_EXPIRED, 1);
    finish(s, j, IT_SCHED_EXPIRED);
}

static void finish_cancelled(it_sched *s, it_sched_job *j) {
    snprintf(j->message, sizeof j->message, "%s: cancelled before it ran (the scheduler is stopping or was drained)",
             s->name);
    finish(s, j, IT_SCHED_CANCELLED);
}

static void finish_list(it_sched *s, it_sched_job *list, it_sched_outcome o) {
    double now = it_now_ms();
    while (list) {
        it_sched_job *j = list;
        list = j->next;
        j->next = NULL;
        if (o == IT_SCHED_EXPIRED) finish_expired(s, j, now);
        else if (o == IT_SCHED_CANCELLED) finish_cancelled(s, j);
        else finish(s, j, o);
    }
}

/* ---- queues (the caller holds s->mu) ---- */

static void depth_changed(it_sched *s, int p) {
    if (s->obs.queue_depth) s->obs.queue_depth(s->obs.ctx, p, s->depth[p]);
}

static int total_depth(const it_sched *s) {
    return s->depth[0] + s->depth[1] + s->depth[2];
}

/* Queue j in its level by its order key (FIFO when every key is the submission time:
 * the walk only happens for a key older than the tail's). */
static void push_tail(it_sched *s, it_sched_job *j) {
    int p = j->prio;
    j->next = NULL;
    if (!s->tail[p] || s->tail[p]->t_order_ms <= j->t_order_ms) {
        if (s->tail[p]) s->tail[p]->next = j;
        else s->head[p] = j;
        s->tail[p] = j;
    } else {
        it_sched_job **pp = &s->head[p];
        while ((*pp)->t_order_ms <= j->t_order_ms) pp = &(*pp)->next;
        j->next = *pp;
        *pp = j;
    }
    s->depth[p]++;
    depth_changed(s, p);
}

/* Unlink expired jobs into *out (finished by the caller outside the lock). Returns the
 * nearest deadline still pending (or INFINITY). */
static double take_expired(it_sched *s, double now, it_sched_job **out) {
    double nearest = INFINITY;
    for (int p = 0; p < IT_SCHED_NPRIO; p++) {
        it_sched_job **pp = &s->head[p];
        int before = s->depth[p];
        s->tail[p] = NULL;
        while (*pp) {
            it_sched_job *j = *pp;
            if (j->deadline_ms > 0 && j->deadline_ms <= now) {
                *pp = j->next;
                s->depth[p]--;
                j->next = *out;
                *out = j;
            } else {
                if (j->deadline_ms > 0 && j->deadline_ms < nearest) nearest = j->deadline_ms;
                s->tail[p] = j;
                pp = &j->next;
            }
        }
        if (s->depth[p] != before) depth_changed(s, p);
    }
    return nearest;
}

/* The queued job of this source, with the link that points at it; NULL when none. */
static it_sched_job **find_source(it_sched *s, const char *source, int *prio) {
    for (int p = 0; p < IT_SCHED_NPRIO; p++)
        for (it_sched_job **pp = &s->head[p]; *pp; pp = &(*pp)->next)
            if (!strcmp((*pp)->source, source)) {
                *prio = p;
                return pp;
            }
    return NULL;
}

static int replaces(const it_sched_job *j) {
    return j->keep_newest && j->source[0];
}

/* Queue j; a job of the same source it replaces goes onto *replaced. */
static void enqueue(it_sched *s, it_sched_job *j, it_sched_job **replaced) {
    int p = 0;
    it_sched_job **pp = replaces(j) ? find_source(s, j->source, &p) : NULL;
    j->t_slot_ms = j->t_submit_ms;
    j->t_order_ms = j->order_ms > 0 ? j->order_ms : j->t_submit_ms;
    if (pp && p == j->prio) {
        /* Same level: take the old job's place (and its age, which decides when it is due). */
        it_sched_job *old = *pp;
        j->next = old->next;
        j->t_slot_ms = old->t_slot_ms;
        j->t_order_ms = old->t_order_ms;
        *pp = j;
        if (s->tail[p] == old) s->tail[p] = j;
        old->next = *replaced;
        *replaced = old;
        return;
    }
    if (pp) {
        it_sched_job *old = *pp;
        *pp = old->next;
        if (s->tail[p] == old) { /* the new tail is the job that led to old */
            s->tail[p] = NULL;
            for (it_sched_job *k = s->head[p]; k; k = k->next) s->tail[p] = k;
        }
        s->depth[p]--;
        depth_changed(s, p);
        old->next = *replaced;
        *replaced = old;
    }
    push_tail(s, j);
}

/* ---- forming batches ---- */

static int largest_preferred(const it_sched *s) {
    int best = 0;
    for (int i = 0; i < s->p.n_preferred; i++)
        if (s->p.preferred_batch[i] <= s->max_batch && s->p.preferred_batch[i] > best) best = s->p.preferred_batch[i];
    return best ? best : s->max_batch;
}

/* The largest batch a lower level may run while urgent traffic is active. */
static int urgent_cap(const it_sched *s) {
    double budget = s->p.max_delay_ms[IT_SCHED_URGENT];
    int cap = 1;
    for (int k = 2; k <= s->max_batch; k++)
        if (s->run_ms[k] > 0 && s->run_ms[k] <= budget) cap = k;
    return cap;
}

/* Whether waiting for company can pay: some executed size k > 1 runs an image in less
 * than 0.9 of batch 1's time. On a GPU it does by far; on a small CPU a batch of 8 can
 * cost more per image than 8 single runs (activations no longer fit the caches), and
 * then every wait is latency lost for nothing: the delay is skipped and whatever is
 * queued runs at once (jobs still batch when they queue behind a busy worker). Unknown
 * until batch 1 and a larger size have been timed (warm-up times each). */
static int batching_pays(const it_sched *s) {
    if (s->run_ms[1] <= 0) return 1;
    int known = 0;
    for (int i = 0; i < s->n_sizes; i++) {
        int k = s->sizes[i];
        if (k < 2 || s->run_ms[k] <= 0) continue;
        known = 1;
        if (s->run_ms[k] / k < 0.9 * s->run_ms[1]) return 1;
    }
    return !known;
}

/* Wait for and dequeue the next batch into w->batch. Returns its size, 0 when stopping. */
static int next_batch(sched_worker *w) {
    it_sched *s = w->s;
    pthread_mutex_lock(&s->mu);
    int waited = 0;
    s->idle++;
    for (;;) {
        if (s->stopping) {
            s->idle--;
            pthread_mutex_unlock(&s->mu);
            return 0;
        }
        double now = it_now_ms();
        it_sched_job *expired = NULL;
        double nearest = take_expired(s, now, &expired);
        if (expired) {
            pthread_mutex_unlock(&s->mu);
            finish_list(s, expired, IT_SCHED_EXPIRED);
            pthread_mutex_lock(&s->mu);
            continue;
        }
        int total = total_depth(s);
        if (total == 0) {
            waited = 0;
            pthread_cond_wait(&s->cv, &s->mu);
            continue;
        }
        /* When is some level's oldest job due? */
        double due = INFINITY;
        int pays = batching_pays(s);
        for (int p = 0; p < IT_SCHED_NPRIO; p++)
            if (s->head[p]) {
                double d = s->head[p]->t_slot_ms + (pays && !s->head[p]->no_wait ? s->adapt_ms[p] : 0);
                if (d < due) due = d;
            }
        if (total >= largest_preferred(s) || now >= due) break;
        waited = 1;
        struct timespec ts;
        it_deadline_in(&ts, (due < nearest ? due : nearest) - now);
        pthread_cond_timedwait(&s->cv, &s->mu, &ts);
    }
    int lead = -1;
    for (int p = 0; p < IT_SCHED_NPRIO && lead < 0; p++)
        if (s->head[p]) lead = p;
    int cap = s->max_batch, last_level = IT_SCHED_NPRIO - 1;
    /* Share what is queued with the other idle workers instead of taking it all: two
     * batches of 2 finish sooner than one of 4, and none of them waits. */
    int share = (total_depth(s) + s->idle - 1) / (s->idle > 0 ? s->idle : 1);
    if (share >= 1 && share < cap) cap = share;
    s->idle--;
    if (lead == IT_SCHED_URGENT) last_level = IT_SCHED_URGENT; /* urgent batches carry urgent jobs only */
    else if (lead > 0 && it_now_ms() - s->last_urgent_ms < URGENT_WINDOW_MS) cap = urgent_cap(s);
    int n = 0;
    for (int p = 0; p <= last_level && n < cap; p++) {
        int before = n;
        while (s->head[p] && n < cap) {
            it_sched_job *j = s->head[p];
            s->head[p] = j->next;
            if (!s->head[p]) s->tail[p] = NULL;
            s->depth[p]--;
            j->next = NULL;
            w->batch[n++] = j;
        }
        if (n != before) depth_changed(s, p);
    }
    /* Adapt the leading level's delay (see the comment at the top). */
    if (lead >= 0 && s->p.adaptive_delay) {
        double maxd = s->p.max_delay_ms[lead];
        if (n > 1) s->adapt_ms[lead] = fmin(maxd, s->adapt_ms[lead] < 0.5 ? 1.0 : s->adapt_ms[lead] * 2);
        else if (waited) s->adapt_ms[lead] = s->adapt_ms[lead] < 0.5 ? 0 : s->adapt_ms[lead] / 2;
    }
    pthread_mutex_unlock(&s->mu);
    return n;
}

/* ---- running ---- */

static void record_run(it_sched *s, int n, double ms) {
    if (n < 1 || n > IT_SCHED_MAX_BATCH) return;
    pthread_mutex_lock(&s->mu);
    s->run_ms[n] = s->run_ms[n] > 0 ? 0.8 * s->run_ms[n] + 0.2 * ms : ms;
    pthread_mutex_unlock(&s->mu);
}

/* The largest executed size that fits n. */
static int chunk_size(const it_sched *s, int n) {
    for (int k = s->n_sizes - 1; k >= 0; k--)
        if (s->sizes[k] <= n) return s->sizes[k];
    return 1;
}

static void run_chunk(sched_worker *w, it_sched_job **jobs, int n) {
    it_sched *s = w->s;
    for (int i = 0; i < n; i++) {
        it_sched_job *j = jobs[i];
        w->items[i] = (it_detect_item){ .img = j->tensor ? NULL : &j->img, .tensor = j->tensor,
                                        .tensor_h = (int)j->dims[2], .tensor_w = (int)j->dims[3],
                                        .params = &j->params, .want_dets = j->want_dets, .want_raw = j->want_raw };
    }
    double t0 = it_now_ms();
    itscam_status st = it_detect_run(w->det, w->items, n);
    double ms = it_now_ms() - t0;
    if (st == ITSCAM_OK) record_run(s, n, ms);
    if (s->obs.batch_run) s->obs.batch_run(s->obs.ctx, n, ms, st);
    for (int i = 0; i < n; i++) {
        it_sched_job *j = jobs[i];
        const it_detect_item *it = &w->items[i];
        j->status = st;
        j->batch_size = n;
        if (st != ITSCAM_OK) {
            snprintf(j->message, sizeof j->message, "%s: %s", itscam_strerror(st), itscam_last_error());
            continue;
        }
        j->res = it->res;
        j->raw = it->raw;
        j->raw_ndim = it->raw_ndim;
        memcpy(j->raw_dims, it->raw_dims, sizeof j->raw_dims);
        j->ms_preprocess = it->res.ms_preprocess;
        j->ms_inference = it->res.ms_inference * n; /* the batch's time, not a share */
        j->ms_postprocess = it->res.ms_postprocess;
    }
}

static void *worker_main(void *arg) {
    sched_worker *w = arg;
    it_sched *s = w->s;
    int n;
    while ((n = next_batch(w)) > 0) {
        double t0 = it_now_ms();
        for (int i = 0; i < n; i++) w->batch[i]->ms_queue = t0 - w->batch[i]->t_submit_ms;
        for (int off = 0; off < n;) {
            int k = chunk_size(s, n - off);
            run_chunk(w, w->batch + off, k);
            off += k;
        }
        for (int i = 0; i < n; i++) {
            it_sched_job *j = w->batch[i];
            finish(s, j, j->status == ITSCAM_OK ? IT_SCHED_DONE : IT_SCHED_FAILED);
        }
    }
    return NULL;
}

/* ---- settings at run time ---- */

void it_sched_runtime_get(it_sched *s, it_sched_runtime *out) {
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&s->mu);
    for (int l = 0; l < IT_SCHED_NPRIO; l++) {
        out->max_delay_ms[l] = s->p.max_delay_ms[l];
        out->queue_limit[l] = s->p.queue_limit[l];
    }
    out->n_preferred = s->p.n_preferred;
    memcpy(out->preferred_batch, s->p.preferred_batch, sizeof out->preferred_batch);
    pthread_mutex_unlock(&s->mu);
}

itscam_status it_sched_runtime_set(it_sched *s, const it_sched_runtime *rt) {
    if (!s || !rt) return it_err(ITSCAM_ERR_INVALID_ARG, "it_sched_runtime_set: NULL argument");
    for (int l = 0; l < IT_SCHED_NPRIO; l++) {
        if (rt->max_delay_ms[l] < 0 || rt->max_delay_ms[l] > IT_SCHED_MAX_DELAY_MS)
            return it_err(ITSCAM_ERR_INVALID_ARG, "%s: max_delay_ms for %s must be 0..%d ms, got %d", s->name,
                          it_sched_prio_name(l), IT_SCHED_MAX_DELAY_MS, rt->max_delay_ms[l]);
        if (rt->queue_limit[l] < 1)
            return it_err(ITSCAM_ERR_INVALID_ARG, "%s: queue_limit for %s must be at least 1, got %d", s->name,
                          it_sched_prio_name(l), rt->queue_limit[l]);
    }
    if (rt->n_preferred < 0 || rt->n_preferred > IT_SCHED_MAX_PREFERRED)
        return it_err(ITSCAM_ERR_INVALID_ARG, "%s: %d preferred batch sizes (at most %d)", s->name, rt->n_preferred,
                      IT_SCHED_MAX_PREFERRED);
    for (int i = 0; i < rt->n_preferred; i++) {
        int b = rt->preferred_batch[i];
        if (b < 1 || b > s->max_batch)
            return it_err(ITSCAM_ERR_INVALID_ARG,
                          "%s: preferred batch size %d is outside 1..%d (the max_batch it runs with; a larger one "
                          "needs a restart)", s->name, b, s->max_batch);
        if (i > 0 && b <= rt->preferred_batch[i - 1])
            return it_err(ITSCAM_ERR_INVALID_ARG, "%s: preferred batch sizes must be ascending, got %d after %d",
                          s->name, b, rt->preferred_batch[i - 1]);
    }
    pthread_mutex_lock(&s->mu);
    for (int l = 0; l < IT_SCHED_NPRIO; l++) {
        s->p.max_delay_ms[l] = rt->max_delay_ms[l];
        s->p.queue_limit[l] = rt->queue_limit[l];
        /* The adaptive delay only ever moves within [0, max]; a fixed one is the max. */
        if (!s->p.adaptive_delay || s->adapt_ms[l] > rt->max_delay_ms[l]) s->adapt_ms[l] = rt->max_delay_ms[l];
    }
    memset(s->p.preferred_batch, 0, sizeof s->p.preferred_batch);
    memcpy(s->p.preferred_batch, rt->preferred_batch, sizeof(int) * (size_t)rt->n_preferred);
    s->p.n_preferred = rt->n_preferred;
    pthread_cond_broadcast(&s->cv); /* a worker waiting for company recomputes its due time */
    pthread_mutex_unlock(&s->mu);
    return ITSCAM_OK;
}

/* ---- life cycle ---- */

/* 1, the preferred sizes, max_batch; beyond IT_SESSION_PLANS keep 1 and the largest. */
static void choose_sizes(it_sched *s) {
    int cand[IT_SCHED_MAX_PREFERRED + 2], nc = 0;
    cand[nc++] = 1;
    for (int i = 0; i < s->p.n_preferred && i < IT_SCHED_MAX_PREFERRED; i++)
        if (s->p.preferred_batch[i] >= 1 && s->p.preferred_batch[i] <= s->max_batch) cand[nc++] = s->p.preferred_batch[i];
    cand[nc++] = s->max_batch;
    for (int i = 1; i < nc; i++) /* insertion sort, then drop duplicates */
        for (int k = i; k > 0 && cand[k] < cand[k - 1]; k--) {
            int t = cand[k];
            cand[k] = cand[k - 1];
            cand[k - 1] = t;
        }
    int nu = 0;
    for (int i = 0; i < nc; i++)
        if (nu == 0 || cand[i] != cand[nu - 1]) cand[nu++] = cand[i];
    s->sizes[s->n_sizes++] = 1;
    int first = nu - (IT_SESSION_PLANS - 1) > 1 ? nu - (IT_SESSION_PLANS - 1) : 1;
    for (int i = first; i < nu; i++) s->sizes[s->n_sizes++] = cand[i];
}

/* Copy the detector template's strings and classes so the caller's may go. */
static itscam_status copy_template(it_sched *s, const itscam_detector_params *d) {
    s->p.detector = *d;
    const char *src[3] = { d->backend, d->precision, d->calib_path };
    char *dst[3] = { s->backend, s->precision, s->calib };
    size_t cap[3] = { sizeof s->backend, sizeof s->precision, sizeof s->calib };
    for (int i = 0; i < 3; i++)
        if (src[i] && strlen(src[i]) >= cap[i]) return it_err(ITSCAM_ERR_INVALID_ARG, "%s: '%s' is too long", s->name, src[i]);
        else snprintf(dst[i], cap[i], "%s", src[i] ? src[i] : "");
    s->p.detector.backend = s->backend[0] ? s->backend : NULL;
    s->p.detector.precision = s->precision[0] ? s->precision : NULL;
    s->p.detector.calib_path = s->calib[0] ? s->calib : NULL;
    if (d->num_classes_filter > IT_SCHED_MAX_CLASSES || (d->num_classes_filter > 0 && !d->classes))
        return it_err(ITSCAM_ERR_INVALID_ARG, "%s: a class filter of %d classes (at most %d)", s->name,
                      d->num_classes_filter, IT_SCHED_MAX_CLASSES);
    if (d->num_classes_filter > 0) memcpy(s->classes, d->classes, sizeof(int) * (size_t)d->num_classes_filter);
    s->p.detector.classes = s->classes;
    return ITSCAM_OK;
}

itscam_status it_sched_new(const char *name, const itscam_model *m, const it_sched_params *p,
                           const it_sched_observer *observer, it_sched **out) {
    if (!m || !out) return it_err(ITSCAM_ERR_INVALID_ARG, "it_sched_new: NULL argument");
    *out = NULL;
    it_sched_params dp = it_sched_default_params();
    if (!p) p = &dp;
    it_sched *s = it_calloc(1, sizeof *s);
    if (!s) return it_err(ITSCAM_ERR_NOMEM, "%s: out of memory", name ? name : "scheduler");
    snprintf(s->name, sizeof s->name, "%s", name ? name : "scheduler");
    s->m = m;
    s->p = *p;
    if (observer) s->obs = *observer;
    pthread_mutex_init(&s->mu, NULL);
    it_cond_init_monotonic(&s->cv);
    itscam_status st = copy_template(s, &p->detector);
    if (st != ITSCAM_OK) {
        it_sched_free(s);
        return st;
    }
    const itscam_model_info *info = itscam_model_get_info(m);
    int mb = p->max_batch < 1 ? 1 : p->max_batch > IT_SCHED_MAX_BATCH ? IT_SCHED_MAX_BATCH : p->max_batch;
    s->max_batch = info->input_dims[0] < 0 ? mb : 1;
    s->in_h = info->input_dims[2] > 0 ? (int)info->input_dims[2] : info->imgsz[0];
    s->in_w = info->input_dims[3] > 0 ? (int)info->input_dims[3] : info->imgsz[1];
    choose_sizes(s);
    /* Start as if traffic were light (no wait) unless delays are fixed; load raises them. */
    for (int l = 0; l < IT_SCHED_NPRIO; l++) s->adapt_ms[l] = s->p.adaptive_delay ? 0 : s->p.max_delay_ms[l];
    s->last_urgent_ms = -1e12;
    int nw = p->workers < 1 ? 1 : p->workers > IT_SCHED_MAX_WORKERS ? IT_SCHED_MAX_WORKERS : p->workers;
    s->w = it_calloc((size_t)nw, sizeof *s->w);
    if (!s->w) {
        it_sched_free(s);
        return it_err(ITSCAM_ERR_NOMEM, "%s: out of memory", s->name);
    }
    itscam_detector_params det = s->p.detector;
    for (int i = 0; i < nw; i++) {
        /* Workers share one queue, so whichever device is free takes the next batch:
         * least-loaded dispatch without a dispatcher. */
        int nd = p->n_device_ids > IT_SCHED_MAX_DEVICES ? IT_SCHED_MAX_DEVICES : p->n_device_ids;
        det.device = nd > 0 ? p->device_ids[i % nd] : -1;
        if ((st = itscam_detector_create_from_model(m, &det, &s->w[i].det)) != ITSCAM_OK) {
            it_err_prefix(st, "%s", s->name);
            it_sched_free(s);
            return st;
        }
        s->w[i].s = s;
        s->nworkers = i + 1;
    }
    for (int i = 0; i < nw; i++) {
        if (pthread_create(&s->w[i].tid, NULL, worker_main, &s->w[i]) != 0) {
            st = it_err(ITSCAM_ERR_INTERNAL, "%s: cannot start a worker thread: %s", s->name, strerror(errno));
            it_sched_free(s);
            return st;
        }
        s->w[i].started = 1;
    }
    *out = s;
    return ITSCAM_OK;
}

itscam_status it_sched_warmup(it_sched *s) {
    if (!s) return it_err(ITSCAM_ERR_INVALID_ARG, "it_sched_warmup: NULL scheduler");
    /* A mid-grey frame twice the input size: every batch size that can occur, on every
     * worker (each has its own session and plan cache), through the resizing letterbox
     * path with the largest scratch any frame needs (the resized image is the whole
     * input), so that the first real frame allocates nothing. */
    int w = s->in_w > 0 && s->in_w <= 4096 ? s->in_w * 2 : 1280;
    int h = s->in_h > 0 && s->in_h <= 4096 ? s->in_h * 2 : 1280;
    size_t sz = (size_t)w * (size_t)h * 3;
    uint8_t *px = it_malloc(sz);
    it_detect_item *items = it_calloc((size_t)s->max_batch, sizeof *items);
    itscam_status st = ITSCAM_OK;
    if (!px || !items) {
        st = it_err(ITSCAM_ERR_NOMEM, "%s: out of memory for warm-up", s->name);
        goto out;
    }
    memset(px, 114, sz);
    itscam_image img = { .data = px, .width = w, .height = h, .format = ITSCAM_PIX_BGR8 };
    for (int k = 0; k < s->nworkers && st == ITSCAM_OK; k++) {
        for (int si = 0; si < s->n_sizes; si++) {
            int n = s->sizes[si];
            /* Twice: the first run compiles the plan; the second is the time batching
             * decisions start from (batching_pays, the urgent cap). */
            for (int rep = 0; rep < 2 && st == ITSCAM_OK; rep++) {
                for (int i = 0; i < n; i++) items[i] = (it_detect_item){ .img = &img, .want_dets = 1 };
                double t0 = it_now_ms();
                st = it_detect_run(s->w[k].det, items, n);
                if (st != ITSCAM_OK) {
                    it_err_prefix(st, "%s: warm-up at batch %d", s->name, n);
                    break;
                }
                if (rep == 1) record_run(s, n, it_now_ms() - t0);
                for (int i = 0; i < n; i++) itscam_result_clear(&items[i].res);
            }
            if (st != ITSCAM_OK) break;
        }
    }
    if (st == ITSCAM_OK) {
        char buf[160];
        int o = 0;
        for (int i = 0; i < s->n_sizes && o < (int)sizeof buf - 32; i++)
            o += snprintf(buf + o, sizeof buf - (size_t)o, "%s%d: %.1f ms", i ? ", " : "", s->sizes[i],
                          s->run_ms[s->sizes[i]]);
        it_log(ITSCAM_LOG_INFO, "%s: batch run times %s; %s", s->name, buf,
               batching_pays(s) ? "batching pays, jobs wait up to their level's delay for company"
                                : "batching saves nothing here, so no job waits for company");
    }
out:
    it_free(px);
    it_free(items);
    return st;
}

/* ---- submitting ---- */

/* A job the workers could not run without failing its whole batch is refused here. */
static int check_job(const it_sched *s, it_sched_job *j) {
    const itscam_detector_params *p = &j->params;
    const char *why = NULL;
    if (!j->done) why = "no completion callback";
    else if (j->tensor && (j->dims[0] != 1 || j->dims[1] != 3 || j->dims[2] != s->in_h || j->dims[3] != s->in_w))
        why = "a tensor must be [1,3,H,W] at the model's input size";
    else if (!j->tensor && (!j->img.data || j->img.width <= 0 || j->img.height <= 0 ||
                            (j->img.stride != 0 && j->img.stride < j->img.width * 3) ||
                            (j->img.format != ITSCAM_PIX_BGR8 && j->img.format != ITSCAM_PIX_RGB8)))
        why = "an empty image, or a bad stride or pixel format";
    else if (!(p->conf >= 0 && p->conf <= 1) || !(p->iou >= 0 && p->iou <= 1) || p->num_classes_filter < 0 ||
             p->num_classes_filter > IT_SCHED_MAX_CLASSES || (p->num_classes_filter > 0 && !p->classes))
        why = "detection parameters out of range";
    if (!why) return 0;
    j->outcome = IT_SCHED_FAILED;
    j->status = ITSCAM_ERR_INVALID_ARG;
    snprintf(j->message, sizeof j->message, "%s: %s", s->name, why);
    return -1;
}

/* Reset the outputs and point the parameters at the job's own class list. */
static void prepare_job(it_sched_job *j, double now) {
    if (j->prio < 0 || j->prio >= IT_SCHED_NPRIO) j->prio = IT_SCHED_NORMAL;
    if (j->params.num_classes_filter > 0 && j->params.classes != j->classes)
        memmove(j->classes, j->params.classes, sizeof(int) * (size_t)j->params.num_classes_filter);
    j->params.classes = j->classes;
    j->outcome = IT_SCHED_DONE;
    j->status = ITSCAM_OK;
    j->message[0] = 0;
    memset(&j->res, 0, sizeof j->res);
    j->raw = NULL;
    j->raw_ndim = 0;
    j->t_submit_ms = now;
    j->ms_queue = j->ms_preprocess = j->ms_inference = j->ms_postprocess = 0;
    j->batch_size = 0;
    j->next = NULL;
}

static void reject(it_sched_job **jobs, int n, it_sched_outcome o, itscam_status st, const char *msg) {
    for (int i = 0; i < n; i++) {
        jobs[i]->outcome = o;
        jobs[i]->status = st;
        snprintf(jobs[i]->message, sizeof jobs[i]->message, "%s", msg);
    }
}

it_sched_submit_status it_sched_submit_all(it_sched *s, it_sched_job **jobs, int n) {
    for (int i = 0; i < n; i++)
        if (check_job(s, jobs[i]) != 0) {
            char msg[256];
            snprintf(msg, sizeof msg, "job %d of %d refused: %s", i, n, jobs[i]->message);
            reject(jobs, n, IT_SCHED_FAILED, ITSCAM_ERR_INVALID_ARG, msg);
            return IT_SCHED_REJECT_INVALID;
        }
    double now = it_now_ms();
    for (int i = 0; i < n; i++) prepare_job(jobs[i], now);
    it_sched_job *replaced = NULL;
    pthread_mutex_lock(&s->mu);
    if (s->stopping) {
        pthread_mutex_unlock(&s->mu);
        char msg[256];
        snprintf(msg, sizeof msg, "%s: the scheduler is stopping", s->name);
        reject(jobs, n, IT_SCHED_CANCELLED, ITSCAM_OK, msg);
        return IT_SCHED_REJECT_STOPPING;
    }
    /* A job that takes the place of a queued one of its level adds nothing to the depth
     * (counted conservatively when several jobs of one call share a source). */
    int need[IT_SCHED_NPRIO] = { 0 };
    for (int i = 0; i < n; i++) {
        int p = -1;
        if (!(replaces(jobs[i]) && find_source(s, jobs[i]->source, &p) && p == jobs[i]->prio)) need[jobs[i]->prio]++;
    }
    for (int p = 0; p < IT_SCHED_NPRIO; p++)
        if (need[p] && s->depth[p] + need[p] > s->p.queue_limit[p]) {
            int depth = s->depth[p];
            pthread_mutex_unlock(&s->mu);
            if (s->obs.rejected) s->obs.rejected(s->obs.ctx, p, IT_SCHED_QUEUE_FULL, n);
            char msg[256];
            snprintf(msg, sizeof msg, "%s: the %s queue is full (%d waiting, limit %d)", s->name, it_sched_prio_name(p),
                     depth, s->p.queue_limit[p]);
            reject(jobs, n, IT_SCHED_QUEUE_FULL, ITSCAM_OK, msg);
            return IT_SCHED_REJECT_FULL;
        }
    for (int i = 0; i < n; i++) {
        enqueue(s, jobs[i], &replaced);
        if (jobs[i]->prio == IT_SCHED_URGENT) s->last_urgent_ms = now;
    }
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    for (it_sched_job *j = replaced; j; j = j->next)
        snprintf(j->message, sizeof j->message, "replaced by a newer job of source '%s'", j->source);
    finish_list(s, replaced, IT_SCHED_REPLACED);
    return IT_SCHED_QUEUED;
}

it_sched_submit_status it_sched_submit(it_sched *s, it_sched_job *j) {
    return it_sched_submit_all(s, &j, 1);
}

/* Unlink every queued job (the caller holds the lock). */
static it_sched_job *take_all(it_sched *s) {
    it_sched_job *list = NULL;
    for (int p = IT_SCHED_NPRIO - 1; p >= 0; p--) {
        while (s->head[p]) { /* the list ends in arrival order, urgent first */
            it_sched_job *j = s->head[p];
            s->head[p] = j->next;
            j->next = list;
            list = j;
        }
        s->tail[p] = NULL;
        if (s->depth[p]) {
            s->depth[p] = 0;
            depth_changed(s, p);
        }
    }
    return list;
}

void it_sched_cancel_queued(it_sched *s) {
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    it_sched_job *list = take_all(s);
    pthread_mutex_unlock(&s->mu);
    finish_list(s, list, IT_SCHED_CANCELLED);
}

int it_sched_depth(it_sched *s, int prio) {
    pthread_mutex_lock(&s->mu);
    int d = prio >= 0 && prio < IT_SCHED_NPRIO ? s->depth[prio] : total_depth(s);
    pthread_mutex_unlock(&s->mu);
    return d;
}

void it_sched_free(it_sched *s) {
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->stopping = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; s->w && i < s->nworkers; i++)
        if (s->w[i].started) pthread_join(s->w[i].tid, NULL);
    /* The workers are gone: nothing may stay queued unanswered. */
    pthread_mutex_lock(&s->mu);
    it_sched_job *list = take_all(s);
    pthread_mutex_unlock(&s->mu);
    finish_list(s, list, IT_SCHED_CANCELLED);
    for (int i = 0; s->w && i < s->nworkers; i++) itscam_detector_free(s->w[i].det);
    it_free(s->w);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    it_free(s);
}

const char *it_sched_precision(it_sched *s) {
    return s && s->nworkers ? itscam_detector_precision(s->w[0].det) : "";
}

const char *it_sched_active_backend(it_sched *s) {
    return s && s->nworkers ? itscam_session_backend(itscam_detector_session(s->w[0].det)) : "";
}

const char *it_sched_backend(it_sched *s) {
    return s && s->backend[0] ? s->backend : "cpu";
}

int it_sched_output_dims(it_sched *s, int64_t dims[8], int *ndim) {
    /* After warm-up, before any job: worker 0's session ran batch max_batch last. */
    const it_tensor *o = s && s->nworkers ? it_session_output(itscam_detector_session(s->w[0].det), 0) : NULL;
    if (!o) return -1;
    *ndim = o->ndim > 8 ? 8 : o->ndim;
    for (int k = 0; k < *ndim; k++) dims[k] = o->dims[k];
    dims[0] = s->max_batch > 1 ? -1 : 1;
    return 0;
}

int it_sched_max_batch(it_sched *s) {
    return s ? s->max_batch : 0;
}
