/* The dynamic batcher: one queue per priority level per model, drained by worker
 * threads that each own a detector (the model's weights are shared between them).
 *
 * Forming a batch. A free worker takes the queued jobs, urgent first, then normal, then
 * batch, in arrival order within a level, up to max_batch. It dispatches at once when
 * it can fill the largest preferred batch size, or when the oldest job of some level has
 * waited that level's delay; otherwise it waits for more. The delay adapts: waiting only
 * pays when other requests arrive meanwhile, so a level's effective delay halves every
 * time a wait ends with a lone job, and doubles back towards the configured maximum
 * whenever a batch forms with company. A lone client therefore pays no queue delay,
 * and under load batches fill up.
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
 * evicted and recompiled under load. So a batcher runs only 1, the preferred sizes and
 * max_batch (at most IT_SESSION_PLANS of them, all warmed up at start), and a formed
 * batch of another size runs as chunks of those sizes, largest first. On a CPU the cost
 * is linear in the batch, so 7 as 4+1+1+1 costs what 7 would.
 *
 * Jobs past their deadline are completed with SRV_DONE_TIMEOUT (504) without running. */
#include "server/server.h"

#include "core/core.h"
#include "detect/postprocess.h"
#include "runtime/model.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define SRV_MAX_WORKERS 64
#define SRV_BATCH_CAP 256
#define URGENT_WINDOW_MS 2000.0

typedef struct srv_worker {
    srv_batcher *b;
    pthread_t tid;
    int started;
    itscam_detector *det;
    it_det_scratch ds;          /* for tensor jobs that ask for detections */
    int ds_ready;
    srv_job *batch[256];
    itscam_image imgs[256];
    const itscam_detector_params *params[256];
    itscam_result res[256];
} srv_worker;

struct srv_batcher {
    char name[128];
    const itscam_model *m;
    srv_config cfg;
    srv_metrics *mx;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    srv_job *head[SRV_NPRIO], *tail[SRV_NPRIO];
    int depth[SRV_NPRIO];
    double adapt_ms[SRV_NPRIO]; /* effective delay per level, 0..max_delay_ms */
    double last_urgent_ms;      /* arrival of the latest urgent job */
    double run_ms[SRV_BATCH_CAP + 1]; /* moving average of a batch's run time, by size */
    int stopping;
    int nworkers;
    int max_batch;              /* 1 for static-batch models */
    int sizes[IT_SESSION_PLANS]; /* the batch sizes actually run, ascending, sizes[0] == 1 */
    int n_sizes;
    int in_w, in_h;
    srv_worker *w;
};

static void set_err(char *err, size_t n, const char *fmt, const char *a, const char *b) {
    if (err && n) snprintf(err, n, fmt, a, b);
}

static const char *prio_name(int p) {
    return srv_priority_name(p);
}

static void complete(srv_batcher *b, srv_job *j, int outcome) {
    j->outcome = outcome;
    if (outcome == SRV_DONE_TIMEOUT) {
        const char *lv[] = { b->name, prio_name(j->prio), "timeout" };
        prom_inc(b->mx->rejected, lv, 1);
        snprintf(j->err, sizeof j->err, "the request waited %.0f ms in the %s queue and timed out",
                 it_now_ms() - j->t_enqueue_ms, prio_name(j->prio));
    } else if (outcome == SRV_DONE_SHUTDOWN) {
        snprintf(j->err, sizeof j->err, "the server is shutting down or unloading the model; retry elsewhere");
    }
    j->done(j, j->done_arg);
}

/* Called with the lock held: unlink expired jobs into *out (completed by the caller
 * outside the lock). Returns the nearest deadline still pending (or INFINITY). */
static double take_expired(srv_batcher *b, double now, srv_job **out) {
    double nearest = INFINITY;
    for (int p = 0; p < SRV_NPRIO; p++) {
        srv_job **pp = &b->head[p];
        b->tail[p] = NULL;
        while (*pp) {
            srv_job *j = *pp;
            if (j->deadline_ms <= now) {
                *pp = j->next;
                b->depth[p]--;
                j->next = *out;
                *out = j;
            } else {
                if (j->deadline_ms < nearest) nearest = j->deadline_ms;
                b->tail[p] = j;
                pp = &j->next;
            }
        }
    }
    return nearest;
}

static int total_depth(const srv_batcher *b) {
    return b->depth[0] + b->depth[1] + b->depth[2];
}

static int largest_preferred(const srv_batcher *b) {
    int best = 0;
    for (int i = 0; i < b->cfg.n_preferred; i++)
        if (b->cfg.preferred_batch[i] <= b->max_batch && b->cfg.preferred_batch[i] > best) best = b->cfg.preferred_batch[i];
    return best ? best : b->max_batch;
}

static void abs_time(struct timespec *ts, double wait_ms) {
    clock_gettime(CLOCK_MONOTONIC, ts);
    if (wait_ms < 0) wait_ms = 0;
    if (wait_ms > 3600e3) wait_ms = 3600e3;
    long long ns = (long long)(wait_ms * 1e6);
    ts->tv_sec += ns / 1000000000LL;
    ts->tv_nsec += ns % 1000000000LL;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* Wait for and dequeue the next batch into w->batch. Returns its size, 0 when stopping. */
static int next_batch(srv_worker *w) {
    srv_batcher *b = w->b;
    pthread_mutex_lock(&b->mu);
    int waited = 0;
    for (;;) {
        double now = it_now_ms();
        srv_job *expired = NULL;
        double nearest = take_expired(b, now, &expired);
        if (expired) {
            pthread_mutex_unlock(&b->mu);
            while (expired) {
                srv_job *j = expired;
                expired = j->next;
                complete(b, j, SRV_DONE_TIMEOUT);
            }
            pthread_mutex_lock(&b->mu);
            continue;
        }
        int total = total_depth(b);
        if (total == 0) {
            if (b->stopping) break;
            waited = 0;
            pthread_cond_wait(&b->cv, &b->mu);
            continue;
        }
        /* When is some level's oldest job due? */
        double due = INFINITY;
        for (int p = 0; p < SRV_NPRIO; p++)
            if (b->head[p]) {
                double d = b->head[p]->t_enqueue_ms + b->adapt_ms[p];
                if (d < due) due = d;
            }
        if (b->stopping || total >= largest_preferred(b) || now >= due) break;
        waited = 1;
        struct timespec ts;
        abs_time(&ts, (due < nearest ? due : nearest) - now);
        pthread_cond_timedwait(&b->cv, &b->mu, &ts);
    }
    int lead = -1;
    for (int p = 0; p < SRV_NPRIO && lead < 0; p++)
        if (b->head[p]) lead = p;
    int cap = b->max_batch, last_level = SRV_NPRIO - 1;
    if (lead == SRV_PRIO_URGENT) {
        last_level = SRV_PRIO_URGENT; /* urgent batches carry urgent jobs only */
    } else if (lead > 0 && it_now_ms() - b->last_urgent_ms < URGENT_WINDOW_MS) {
        double budget = b->cfg.max_delay_ms[SRV_PRIO_URGENT];
        cap = 1;
        for (int k = 2; k <= b->max_batch; k++)
            if (b->run_ms[k] > 0 && b->run_ms[k] <= budget) cap = k;
    }
    int n = 0;
    for (int p = 0; p <= last_level && n < cap; p++) {
        while (b->head[p] && n < cap) {
            srv_job *j = b->head[p];
            b->head[p] = j->next;
            if (!b->head[p]) b->tail[p] = NULL;
            b->depth[p]--;
            j->next = NULL;
            w->batch[n++] = j;
        }
    }
    /* Adapt the leading level's delay (see the comment at the top). */
    if (lead >= 0) {
        double maxd = b->cfg.max_delay_ms[lead];
        if (n > 1) b->adapt_ms[lead] = fmin(maxd, b->adapt_ms[lead] < 0.5 ? 1.0 : b->adapt_ms[lead] * 2);
        else if (waited) b->adapt_ms[lead] = b->adapt_ms[lead] < 0.5 ? 0 : b->adapt_ms[lead] / 2;
    }
    pthread_mutex_unlock(&b->mu);
    return n;
}

static void record_run(srv_batcher *b, int n, double ms);

static void observe_stage(prom_family *f, const char *model, double ms) {
    const char *lv[] = { model };
    prom_observe(f, lv, ms / 1e3);
}

static void copy_raw(srv_job *j, const it_tensor *o, int item) {
    if (!o || o->dtype != IT_F32 || o->ndim < 1) {
        j->st = ITSCAM_ERR_INTERNAL;
        snprintf(j->err, sizeof j->err, "the model's first output is not a float tensor");
        return;
    }
    size_t per = 1;
    for (int k = 1; k < o->ndim; k++) per *= (size_t)o->dims[k];
    j->raw = it_malloc(per * sizeof(float));
    if (!j->raw) {
        j->st = ITSCAM_ERR_NOMEM;
        snprintf(j->err, sizeof j->err, "out of memory for the output");
        return;
    }
    memcpy(j->raw, (const float *)o->data + per * (size_t)item, per * sizeof(float));
    j->raw_ndim = o->ndim;
    j->raw_dims[0] = 1;
    for (int k = 1; k < o->ndim && k < 8; k++) j->raw_dims[k] = o->dims[k];
}

/* Image jobs go through the detector in chunks of the executed sizes. */
static void run_images(srv_worker *w, srv_job **all, int n_all) {
    srv_batcher *b = w->b;
    for (int off = 0; off < n_all;) {
        int n = 1;
        for (int k = b->n_sizes - 1; k >= 0; k--)
            if (b->sizes[k] <= n_all - off) {
                n = b->sizes[k];
                break;
            }
        srv_job **jobs = all + off;
        off += n;
        for (int i = 0; i < n; i++) {
            w->imgs[i] = jobs[i]->img;
            w->params[i] = &jobs[i]->params;
        }
        double t0 = it_now_ms();
        itscam_status st = itscam_detect_batch_params(w->det, w->imgs, n, w->params, w->res);
        if (st == ITSCAM_OK) record_run(b, n, it_now_ms() - t0);
        const char *ml[] = { b->name };
        prom_observe(b->mx->batch_size, ml, n);
        const it_tensor *o = st == ITSCAM_OK ? it_session_output(itscam_detector_session(w->det), 0) : NULL;
        for (int i = 0; i < n; i++) {
            srv_job *j = jobs[i];
            j->st = st;
            j->batch_size = n;
            if (st != ITSCAM_OK) {
                snprintf(j->err, sizeof j->err, "%s: %s", itscam_strerror(st), itscam_last_error());
                continue;
            }
            j->res = w->res[i];
            j->ms_preprocess = w->res[i].ms_preprocess;
            j->ms_inference = w->res[i].ms_inference * n; /* the batch's time, not a share */
            j->ms_postprocess = w->res[i].ms_postprocess;
            /* A static-batch model runs images one by one: its output holds the last only. */
            if (j->want_raw) copy_raw(j, o, itscam_detector_info(w->det)->input_dims[0] < 0 ? i : 0);
            if (!j->want_dets) itscam_result_clear(&j->res);
        }
    }
}

/* Tensor jobs ([1,3,H,W] already letterboxed) run one by one on the same session. */
static void run_tensor(srv_worker *w, srv_job *j) {
    itscam_session *s = itscam_detector_session(w->det);
    double t0 = it_now_ms();
    const float *out;
    int64_t od[8];
    int ond;
    itscam_status st = itscam_session_run(s, j->tensor, j->dims, &out, od, &ond);
    double t1 = it_now_ms();
    j->st = st;
    j->ms_inference = t1 - t0;
    if (st != ITSCAM_OK) {
        snprintf(j->err, sizeof j->err, "%s: %s", itscam_strerror(st), itscam_last_error());
        return;
    }
    const it_tensor *o = it_session_output(s, 0);
    if (j->want_raw) copy_raw(j, o, 0);
    if (j->want_dets && j->st == ITSCAM_OK) {
        /* The tensor is the model's input already: the letterbox is the identity. */
        it_letterbox lb = { .scale = 1.0f, .pad_x = 0, .pad_y = 0, .new_w = (int)j->dims[3], .new_h = (int)j->dims[2] };
        int W = (int)j->dims[3], H = (int)j->dims[2];
        itscam_detector_params p = j->params;
        const itscam_detector_params *dp = &j->params;
        if (p.max_det <= 0) p.max_det = ITSCAM_MAX_DET_DEFAULT;
        if (p.max_det > ITSCAM_MAX_DET_LIMIT) p.max_det = ITSCAM_MAX_DET_LIMIT;
        (void)dp;
        if (o->ndim != 3) {
            j->st = ITSCAM_ERR_UNSUPPORTED;
            snprintf(j->err, sizeof j->err, "the model's output is not a detection head");
            return;
        }
        int nch = (int)o->dims[1], na = (int)o->dims[2];
        j->res.dets = it_malloc(sizeof(itscam_detection) * (size_t)p.max_det);
        if (!j->res.dets) {
            j->st = ITSCAM_ERR_NOMEM;
            snprintf(j->err, sizeof j->err, "out of memory");
            return;
        }
        j->res.width = W;
        j->res.height = H;
        const itscam_model_info *info = itscam_detector_info(w->det);
        if (info->end2end) {
            st = it_decode_end2end((const float *)o->data, nch, &p, &lb, W, H, j->res.dets, &j->res.count);
        } else {
            if (!w->ds_ready || w->ds.cap < na) {
                if (w->ds_ready) it_det_scratch_free(&w->ds);
                w->ds_ready = 0;
                if ((st = it_det_scratch_init(&w->ds, na, ITSCAM_MAX_DET_LIMIT)) == ITSCAM_OK) w->ds_ready = 1;
            }
            if (st == ITSCAM_OK)
                st = it_decode_yolo((const float *)o->data, nch, na, &p, &lb, W, H, &w->ds, j->res.dets, &j->res.count);
        }
        if (st != ITSCAM_OK) {
            j->st = st;
            snprintf(j->err, sizeof j->err, "%s: %s", itscam_strerror(st), itscam_last_error());
            return;
        }
        for (int i = 0; i < j->res.count; i++) {
            int c = j->res.dets[i].class_id;
            j->res.dets[i].class_name = c >= 0 && c < info->num_classes && info->class_names ? info->class_names[c] : "";
        }
        j->ms_postprocess = it_now_ms() - t1;
    }
}

static void record_run(srv_batcher *b, int n, double ms) {
    if (n < 1 || n > SRV_BATCH_CAP) return;
    pthread_mutex_lock(&b->mu);
    b->run_ms[n] = b->run_ms[n] > 0 ? 0.8 * b->run_ms[n] + 0.2 * ms : ms;
    pthread_mutex_unlock(&b->mu);
}

static void *worker_main(void *arg) {
    srv_worker *w = arg;
    srv_batcher *b = w->b;
    int n;
    while ((n = next_batch(w)) > 0) {
        double t0 = it_now_ms();
        int ni = 0;
        srv_job *imgs[256];
        for (int i = 0; i < n; i++) {
            srv_job *j = w->batch[i];
            j->ms_queue = t0 - j->t_enqueue_ms;
            j->batch_size = 1;
            const char *lv[] = { b->name, prio_name(j->prio) };
            prom_observe(b->mx->queue_seconds, lv, j->ms_queue / 1e3);
            if (j->kind == SRV_JOB_IMAGE) imgs[ni++] = j;
        }
        if (ni) run_images(w, imgs, ni);
        for (int i = 0; i < n; i++)
            if (w->batch[i]->kind == SRV_JOB_TENSOR) {
                const char *ml[] = { b->name };
                prom_observe(b->mx->batch_size, ml, 1);
                run_tensor(w, w->batch[i]);
            }
        for (int i = 0; i < n; i++) {
            srv_job *j = w->batch[i];
            if (j->st == ITSCAM_OK) {
                observe_stage(b->mx->preprocess_seconds, b->name, j->ms_preprocess);
                observe_stage(b->mx->inference_seconds, b->name, j->ms_inference);
                observe_stage(b->mx->postprocess_seconds, b->name, j->ms_postprocess);
            }
            complete(b, j, j->st == ITSCAM_OK ? SRV_DONE_OK : SRV_DONE_ERROR);
        }
    }
    return NULL;
}

srv_batcher *srv_batcher_new(const char *name, const itscam_model *m, const srv_config *cfg, srv_metrics *mx,
                             char *err, size_t errlen) {
    srv_batcher *b = it_calloc(1, sizeof *b);
    if (!b) {
        set_err(err, errlen, "%s%s: out of memory", name, "");
        return NULL;
    }
    snprintf(b->name, sizeof b->name, "%s", name);
    b->m = m;
    b->cfg = *cfg;
    b->mx = mx;
    const itscam_model_info *info = itscam_model_get_info(m);
    b->max_batch = info->input_dims[0] < 0 ? cfg->max_batch : 1;
    /* 1, the preferred sizes, max_batch; beyond IT_SESSION_PLANS keep 1 and the largest. */
    int cand[SRV_MAX_PREFERRED + 2], nc = 0;
    cand[nc++] = 1;
    for (int i = 0; i < cfg->n_preferred; i++)
        if (cfg->preferred_batch[i] <= b->max_batch) cand[nc++] = cfg->preferred_batch[i];
    cand[nc++] = b->max_batch;
    for (int i = 1; i < nc; i++) /* insertion sort, then drop duplicates */
        for (int k = i; k > 0 && cand[k] < cand[k - 1]; k--) {
            int t = cand[k];
            cand[k] = cand[k - 1];
            cand[k - 1] = t;
        }
    int nu = 0;
    for (int i = 0; i < nc; i++)
        if (nu == 0 || cand[i] != cand[nu - 1]) cand[nu++] = cand[i];
    b->sizes[b->n_sizes++] = 1;
    int first = nu - (IT_SESSION_PLANS - 1) > 1 ? nu - (IT_SESSION_PLANS - 1) : 1;
    for (int i = first; i < nu; i++) b->sizes[b->n_sizes++] = cand[i];
    /* Start as if traffic were light (no wait); load raises the delays. */
    for (int p = 0; p < SRV_NPRIO; p++) b->adapt_ms[p] = 0;
    b->last_urgent_ms = -1e12;
    pthread_mutex_init(&b->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&b->cv, &ca);
    pthread_condattr_destroy(&ca);
    int nw = cfg->workers < 1 ? 1 : cfg->workers > SRV_MAX_WORKERS ? SRV_MAX_WORKERS : cfg->workers;
    b->w = it_calloc((size_t)nw, sizeof *b->w);
    if (!b->w) {
        set_err(err, errlen, "%s%s: out of memory", name, "");
        srv_batcher_free(b);
        return NULL;
    }
    itscam_detector_params dp = itscam_detector_default_params();
    dp.backend = cfg->backend[0] ? cfg->backend : NULL;
    dp.threads = cfg->threads;
    dp.precision = cfg->precision[0] ? cfg->precision : NULL;
    dp.calib_path = cfg->calib[0] ? cfg->calib : NULL;
    dp.no_fallback = cfg->no_fallback;
    dp.conf = cfg->conf;
    dp.iou = cfg->iou;
    dp.max_det = cfg->max_det;
    for (int i = 0; i < nw; i++) {
        /* Workers share one queue, so whichever device is free takes the next batch:
         * least-loaded dispatch without a dispatcher. */
        dp.device = cfg->n_device_ids > 0 ? cfg->device_ids[i % cfg->n_device_ids] : -1;
        itscam_status st = itscam_detector_create_from_model(m, &dp, &b->w[i].det);
        if (st != ITSCAM_OK) {
            if (err && errlen)
                snprintf(err, errlen, "%s: %s: %s", name, itscam_strerror(st), itscam_last_error());
            srv_batcher_free(b);
            return NULL;
        }
        b->w[i].b = b;
        b->nworkers = i + 1;
    }
    for (int i = 0; i < nw; i++) {
        if (pthread_create(&b->w[i].tid, NULL, worker_main, &b->w[i]) != 0) {
            set_err(err, errlen, "%s: cannot start a worker thread: %s", name, strerror(errno));
            srv_batcher_free(b);
            return NULL;
        }
        b->w[i].started = 1;
    }
    return b;
}

int srv_batcher_warmup(srv_batcher *b, char *err, size_t errlen) {
    /* A mid-grey frame the size of the input: every batch size that can occur, on every
     * worker (each has its own session and plan cache). */
    int w = b->w[0].det ? (int)itscam_detector_info(b->w[0].det)->imgsz[1] : 640;
    int h = b->w[0].det ? (int)itscam_detector_info(b->w[0].det)->imgsz[0] : 640;
    if (w <= 0 || w > 8192) w = 640;
    if (h <= 0 || h > 8192) h = 640;
    size_t sz = (size_t)w * (size_t)h * 3;
    uint8_t *px = it_malloc(sz);
    itscam_image *imgs = it_calloc((size_t)b->max_batch, sizeof *imgs);
    itscam_result *res = it_calloc((size_t)b->max_batch, sizeof *res);
    int rc = 0;
    if (!px || !imgs || !res) {
        set_err(err, errlen, "%s%s: out of memory for warm-up", b->name, "");
        rc = -1;
        goto out;
    }
    memset(px, 114, sz);
    for (int i = 0; i < b->max_batch; i++) imgs[i] = (itscam_image){ .data = px, .width = w, .height = h, .format = ITSCAM_PIX_BGR8 };
    for (int k = 0; k < b->nworkers && rc == 0; k++) {
        for (int si = 0; si < b->n_sizes; si++) {
            int n = b->sizes[si];
            double t0 = it_now_ms();
            itscam_status st = itscam_detect_batch(b->w[k].det, imgs, n, res);
            record_run(b, n, it_now_ms() - t0);
            if (st != ITSCAM_OK) {
                if (err && errlen)
                    snprintf(err, errlen, "%s: warm-up at batch %d: %s: %s", b->name, n, itscam_strerror(st),
                             itscam_last_error());
                rc = -1;
                break;
            }
            for (int i = 0; i < n; i++) itscam_result_clear(&res[i]);
        }
    }
out:
    it_free(px);
    it_free(imgs);
    it_free(res);
    return rc;
}

static int submit_locked(srv_batcher *b, srv_job *j, double now) {
    int p = j->prio;
    j->t_enqueue_ms = now;
    j->next = NULL;
    j->outcome = SRV_DONE_OK;
    j->st = ITSCAM_OK;
    j->err[0] = 0;
    if (b->tail[p]) b->tail[p]->next = j;
    else b->head[p] = j;
    b->tail[p] = j;
    b->depth[p]++;
    return 0;
}

int srv_batcher_submit_all(srv_batcher *b, srv_job **jobs, int n) {
    int need[SRV_NPRIO] = { 0 };
    for (int i = 0; i < n; i++) {
        if (jobs[i]->prio < 0 || jobs[i]->prio >= SRV_NPRIO) jobs[i]->prio = SRV_PRIO_NORMAL;
        need[jobs[i]->prio]++;
    }
    double now = it_now_ms();
    pthread_mutex_lock(&b->mu);
    if (b->stopping) {
        pthread_mutex_unlock(&b->mu);
        return -2;
    }
    for (int p = 0; p < SRV_NPRIO; p++)
        if (need[p] && b->depth[p] + need[p] > b->cfg.queue_limit[p]) {
            pthread_mutex_unlock(&b->mu);
            const char *lv[] = { b->name, prio_name(p), "queue_full" };
            prom_inc(b->mx->rejected, lv, n);
            return -1;
        }
    for (int i = 0; i < n; i++) {
        submit_locked(b, jobs[i], now);
        if (jobs[i]->prio == SRV_PRIO_URGENT) b->last_urgent_ms = now;
    }
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    return 0;
}

int srv_batcher_submit(srv_batcher *b, srv_job *j) {
    return srv_batcher_submit_all(b, &j, 1);
}

void srv_batcher_cancel_queued(srv_batcher *b) {
    srv_job *list = NULL;
    pthread_mutex_lock(&b->mu);
    for (int p = SRV_NPRIO - 1; p >= 0; p--) {
        while (b->head[p]) {
            srv_job *j = b->head[p];
            b->head[p] = j->next;
            j->next = list;
            list = j;
        }
        b->tail[p] = NULL;
        b->depth[p] = 0;
    }
    pthread_mutex_unlock(&b->mu);
    while (list) {
        srv_job *j = list;
        list = j->next;
        complete(b, j, SRV_DONE_SHUTDOWN);
    }
}

int srv_batcher_depth(srv_batcher *b, int prio) {
    pthread_mutex_lock(&b->mu);
    int d = prio >= 0 && prio < SRV_NPRIO ? b->depth[prio] : total_depth(b);
    pthread_mutex_unlock(&b->mu);
    return d;
}

const char *srv_batcher_precision(srv_batcher *b) {
    return b->nworkers ? itscam_detector_precision(b->w[0].det) : "";
}

const char *srv_batcher_active_backend(srv_batcher *b) {
    return b->nworkers ? itscam_session_backend(itscam_detector_session(b->w[0].det)) : "";
}

const char *srv_batcher_backend(srv_batcher *b) {
    return b->cfg.backend[0] ? b->cfg.backend : "cpu";
}

void srv_batcher_free(srv_batcher *b) {
    if (!b) return;
    pthread_mutex_lock(&b->mu);
    b->stopping = 1;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    int any = 0;
    for (int i = 0; b->w && i < b->nworkers; i++)
        if (b->w[i].started) {
            pthread_join(b->w[i].tid, NULL);
            any = 1;
        }
    /* Without workers (a failed start), nothing may stay queued unanswered. */
    if (!any)
        for (int p = 0; p < SRV_NPRIO; p++)
            while (b->head[p]) {
                srv_job *j = b->head[p];
                b->head[p] = j->next;
                complete(b, j, SRV_DONE_SHUTDOWN);
            }
    for (int i = 0; b->w && i < b->nworkers; i++) {
        itscam_detector_free(b->w[i].det);
        if (b->w[i].ds_ready) it_det_scratch_free(&b->w[i].ds);
    }
    it_free(b->w);
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->mu);
    it_free(b);
}

int srv_batcher_output_dims(srv_batcher *b, int64_t dims[8], int *ndim) {
    /* Valid after warm-up, before any request: worker 0's session ran batch max_batch
     * last; the batch dimension is reported as -1 (dynamic) or 1. */
    const it_tensor *o = b->nworkers ? it_session_output(itscam_detector_session(b->w[0].det), 0) : NULL;
    if (!o) return -1;
    *ndim = o->ndim > 8 ? 8 : o->ndim;
    for (int k = 0; k < *ndim; k++) dims[k] = o->dims[k];
    dims[0] = b->max_batch > 1 ? -1 : 1;
    return 0;
}

int srv_batcher_max_batch(srv_batcher *b) {
    return b->max_batch;
}
