/* The served models.
 *
 * A model is reference counted: the registry holds one reference and every request in
 * flight another, so a reload (SIGHUP) can swap in a new registry while requests on the
 * old models finish; the last reference stops the scheduler (which answers what is
 * still queued) and frees the model.
 *
 * The HTTP side reaches a model's queue only through the srv_model_* functions below:
 * this file is the one place that calls the scheduler (src/sched) and turns the server's
 * configuration into its parameters. */
#include "server/server.h"
#include "server/tune.h"

#include "core/core.h"

#include <dirent.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void srv_model_ref(srv_model *m) {
    atomic_fetch_add(&m->refs, 1);
}

void srv_model_unref(srv_model *m) {
    if (!m || atomic_fetch_sub(&m->refs, 1) != 1) return;
    it_sched_free(m->sched);
    itscam_model_free(m->model);
    it_free(m);
#ifdef __GLIBC__
    /* A model's weights and session arenas are freed in large blocks from the arenas of
     * the threads that made them; glibc keeps such memory unless asked, and the RSS of
     * a server reloaded N times would then creep up with N. Rare: reloads and stop. */
    malloc_trim(0);
#endif
}

it_sched_submit_status srv_model_submit(srv_model *m, it_sched_job **jobs, int n) {
    return it_sched_submit_all(m->sched, jobs, n);
}

int srv_model_queue_depth(srv_model *m, int prio) {
    return it_sched_depth(m->sched, prio);
}

void srv_model_cancel_queued(srv_model *m) {
    it_sched_cancel_queued(m->sched);
}

void srv_model_describe(srv_model *m, srv_model_desc *d) {
    d->precision = it_sched_precision(m->sched);
    d->backend = it_sched_backend(m->sched);
    d->active_backend = it_sched_active_backend(m->sched);
    d->max_batch = it_sched_max_batch(m->sched);
}

/* Every model's scheduler gets cfg's run-time settings, each model's own max_batch
 * bounding its preferred sizes (as at start). The values passed the configuration's
 * checks, which are within the scheduler's, so no model refuses them. */
int srv_registry_runtime_apply(srv_registry *r, const srv_config *cfg, char *err, size_t errlen) {
    for (int i = 0; r && i < r->n; i++) {
        it_sched_runtime rt;
        srv_runtime_to_sched(cfg, it_sched_max_batch(r->models[i]->sched), &rt);
        if (it_sched_runtime_set(r->models[i]->sched, &rt) != ITSCAM_OK) {
            snprintf(err, errlen, "%s", itscam_last_error());
            return -1;
        }
    }
    return 0;
}

void srv_model_runtime_get(srv_model *m, it_sched_runtime *rt) { it_sched_runtime_get(m->sched, rt); }

/* The server's configuration as scheduler parameters: the one place they meet. */
it_sched_params srv_sched_params(const srv_config *cfg) {
    it_sched_params p = it_sched_default_params();
    p.workers = cfg->workers;
    p.max_batch = cfg->max_batch;
    p.n_preferred = cfg->n_preferred < IT_SCHED_MAX_PREFERRED ? cfg->n_preferred : IT_SCHED_MAX_PREFERRED;
    for (int i = 0; i < p.n_preferred; i++) p.preferred_batch[i] = cfg->preferred_batch[i];
    for (int l = 0; l < IT_SCHED_NPRIO; l++) {
        p.max_delay_ms[l] = cfg->max_delay_ms[l];
        p.queue_limit[l] = cfg->queue_limit[l];
    }
    p.n_device_ids = cfg->n_device_ids < IT_SCHED_MAX_DEVICES ? cfg->n_device_ids : IT_SCHED_MAX_DEVICES;
    for (int i = 0; i < p.n_device_ids; i++) p.device_ids[i] = cfg->device_ids[i];
    itscam_detector_params *d = &p.detector;
    d->backend = cfg->backend[0] ? cfg->backend : NULL;
    d->threads = cfg->threads;
    d->precision = cfg->precision[0] ? cfg->precision : NULL;
    d->calib_path = cfg->calib[0] ? cfg->calib : NULL;
    d->no_fallback = cfg->no_fallback;
    d->conf = cfg->conf;
    d->iou = cfg->iou;
    /* The detector's max_det is the ceiling of every request's own (a request may lower
     * it, never raise it); requests that do not say get cfg->max_det from their job. So
     * the ceiling is the limit: every request, image or tensor, may ask 1..the limit. */
    d->max_det = ITSCAM_MAX_DET_LIMIT;
    return p;
}

static int by_name(const void *a, const void *b) {
    return strcmp((*(srv_model *const *)a)->name, (*(srv_model *const *)b)->name);
}

static int has_suffix(const char *s, const char *suf) {
    size_t n = strlen(s), k = strlen(suf);
    return n > k && !strcmp(s + n - k, suf);
}

static srv_model *load_one(const char *path, const srv_config *cfg, srv_metrics *mx, char *err, size_t errlen) {
    srv_model *m = it_calloc(1, sizeof *m);
    if (!m) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    snprintf(m->path, sizeof m->path, "%s", path);
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    snprintf(m->name, sizeof m->name, "%s", base);
    if (has_suffix(m->name, ".onnx")) m->name[strlen(m->name) - 5] = 0;
    atomic_init(&m->refs, 1);
    atomic_init(&m->ready, 0);
    itscam_status st = itscam_model_load(path, &m->model);
    if (st != ITSCAM_OK) {
        snprintf(err, errlen, "%s: %s: %s", path, itscam_strerror(st), itscam_last_error());
        it_free(m);
        return NULL;
    }
    m->mx = mx;
    it_sched_params sp = srv_sched_params(cfg);
    it_sched_observer obs = srv_metrics_observer(m);
    if ((st = it_sched_new(m->name, m->model, &sp, &obs, &m->sched)) != ITSCAM_OK ||
        (st = it_sched_warmup(m->sched)) != ITSCAM_OK) {
        snprintf(err, errlen, "%s: %s", itscam_strerror(st), itscam_last_error());
        srv_model_unref(m);
        return NULL;
    }
    it_sched_output_dims(m->sched, m->out_dims, &m->out_ndim);
    atomic_store(&m->ready, 1);
    srv_metrics_model_ready(m);
    return m;
}

srv_registry *srv_registry_load(const srv_config *cfg, srv_metrics *mx, char *err, size_t errlen) {
    srv_registry *r = it_calloc(1, sizeof *r);
    char **paths = NULL;
    int np = 0, cap = 0;
    if (!r) goto nomem;
    if (cfg->model[0]) {
        paths = it_calloc(1, sizeof *paths);
        if (!paths || !(paths[0] = it_strdup(cfg->model))) goto nomem;
        np = 1;
    } else {
        DIR *d = opendir(cfg->models_dir);
        if (!d) {
            snprintf(err, errlen, "%s: cannot open the models directory", cfg->models_dir);
            goto fail;
        }
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.' || !has_suffix(e->d_name, ".onnx")) continue;
            if (np == cap) {
                cap = cap ? cap * 2 : 8;
                char **np2 = it_realloc(paths, sizeof *paths * (size_t)cap);
                if (!np2) {
                    closedir(d);
                    goto nomem;
                }
                paths = np2;
            }
            size_t L = strlen(cfg->models_dir) + strlen(e->d_name) + 2;
            if (!(paths[np] = it_malloc(L))) {
                closedir(d);
                goto nomem;
            }
            snprintf(paths[np++], L, "%s/%s", cfg->models_dir, e->d_name);
        }
        closedir(d);
        if (np == 0) {
            snprintf(err, errlen, "%s: no .onnx models in the directory", cfg->models_dir);
            goto fail;
        }
    }
    r->models = it_calloc((size_t)np, sizeof *r->models);
    if (!r->models) goto nomem;
    for (int i = 0; i < np; i++) {
        srv_model *m = load_one(paths[i], cfg, mx, err, errlen);
        if (!m) goto fail;
        r->models[r->n++] = m;
    }
    qsort(r->models, (size_t)r->n, sizeof *r->models, by_name);
    for (int i = 1; i < r->n; i++)
        if (!strcmp(r->models[i]->name, r->models[i - 1]->name)) {
            snprintf(err, errlen, "two models are named '%s'", r->models[i]->name);
            goto fail;
        }
    for (int i = 0; i < np; i++) it_free(paths[i]);
    it_free(paths);
    return r;
nomem:
    snprintf(err, errlen, "out of memory");
fail:
    for (int i = 0; i < np; i++) it_free(paths ? paths[i] : NULL);
    it_free(paths);
    srv_registry_release(r);
    return NULL;
}

void srv_registry_release(srv_registry *r) {
    if (!r) return;
    for (int i = 0; i < r->n; i++) srv_model_unref(r->models[i]);
    it_free(r->models);
    it_free(r);
}
