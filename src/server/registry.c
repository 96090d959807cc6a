/* The served models and the server's metric families.
 *
 * A model is reference counted: the registry holds one reference and every request in
 * flight another, so a reload (SIGHUP) can swap in a new registry while requests on the
 * old models finish; the last reference stops the batcher (which drains its queue) and
 * frees the model. */
#include "server/server.h"

#include "core/core.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int srv_metrics_init(srv_metrics *m, double sla_ms) {
    memset(m, 0, sizeof *m);
    m->reg = prom_registry_new();
    if (!m->reg) return -1;
    static const char *const route_model_code[] = { "route", "model", "code", NULL };
    static const char *const route_model[] = { "route", "model", NULL };
    static const char *const model_prio[] = { "model", "priority", NULL };
    static const char *const model_prio_reason[] = { "model", "priority", "reason", NULL };
    static const char *const model[] = { "model", NULL };
    static const char *const build[] = { "version", "backends", NULL };
    const double *lb = prom_latency_buckets;
    int nlb = prom_n_latency_buckets;
    m->requests = prom_register(m->reg, PROM_COUNTER, "itscam_requests_total",
                                "HTTP requests answered, by route, model and status code", route_model_code, NULL, 0);
    m->request_seconds = prom_register(m->reg, PROM_HISTOGRAM, "itscam_request_duration_seconds",
                                       "End-to-end time inside the server, from the request's last byte to its response",
                                       route_model, lb, nlb);
    m->queue_seconds = prom_register(m->reg, PROM_HISTOGRAM, "itscam_queue_duration_seconds",
                                     "Time a job waited in the batcher's queue", model_prio, lb, nlb);
    m->decode_seconds = prom_register(m->reg, PROM_HISTOGRAM, "itscam_decode_duration_seconds",
                                      "Image decoding time per image", model, lb, nlb);
    m->preprocess_seconds = prom_register(m->reg, PROM_HISTOGRAM, "itscam_preprocess_duration_seconds",
                                          "Letterbox and normalisation time per image", model, lb, nlb);
    m->inference_seconds = prom_register(m->reg, PROM_HISTOGRAM, "itscam_inference_duration_seconds",
                                         "Inference time of the batch a job ran in", model, lb, nlb);
    m->postprocess_seconds = prom_register(m->reg, PROM_HISTOGRAM, "itscam_postprocess_duration_seconds",
                                           "Head decoding and NMS time per image", model, lb, nlb);
    m->batch_size = prom_register(m->reg, PROM_HISTOGRAM, "itscam_batch_size", "Size of each executed batch", model,
                                  prom_batch_buckets, prom_n_batch_buckets);
    m->queue_depth = prom_register(m->reg, PROM_GAUGE, "itscam_queue_depth", "Jobs waiting, per priority level",
                                   model_prio, NULL, 0);
    m->inflight = prom_register(m->reg, PROM_GAUGE, "itscam_inflight_requests",
                                "Requests received and not yet answered", NULL, NULL, 0);
    m->sla_violations = prom_register(m->reg, PROM_COUNTER, "itscam_sla_violations_total",
                                      "Requests whose end-to-end time exceeded the SLA", model, NULL, 0);
    m->sla_seconds = prom_register(m->reg, PROM_GAUGE, "itscam_sla_seconds", "The configured latency SLA", NULL,
                                   NULL, 0);
    m->rejected = prom_register(m->reg, PROM_COUNTER, "itscam_rejected_total",
                                "Jobs refused (queue_full, answered 503) or expired (timeout, answered 504)",
                                model_prio_reason, NULL, 0);
    m->cpu_seconds = prom_register(m->reg, PROM_COUNTER, "itscam_process_cpu_seconds_total",
                                   "User and system CPU time of the process", NULL, NULL, 0);
    m->rss_bytes = prom_register(m->reg, PROM_GAUGE, "itscam_process_resident_memory_bytes",
                                 "Resident memory of the process", NULL, NULL, 0);
    m->start_time = prom_register(m->reg, PROM_GAUGE, "itscam_process_start_time_seconds",
                                  "Start time of the process since the Unix epoch", NULL, NULL, 0);
    m->build_info = prom_register(m->reg, PROM_GAUGE, "itscam_build_info", "Version and backends of this build",
                                  build, NULL, 0);
    m->model_ready = prom_register(m->reg, PROM_GAUGE, "itscam_model_ready", "1 when the model is loaded and warm",
                                   model, NULL, 0);
    static const char *const model_backend[] = { "model", "backend", NULL };
    static const char *const backend_l[] = { "backend", NULL };
    static const char *const backend_from_to[] = { "backend", "from", "to", NULL };
    static const char *const backend_kind[] = { "backend", "kind", NULL };
    m->breaker_state = prom_register(m->reg, PROM_GAUGE, "itscam_breaker_state",
                                     "Circuit breaker of the model's GPU backend: 0 closed, 1 open (CPU serves), 2 half-open",
                                     model_backend, NULL, 0);
    m->breaker_forced = prom_register(m->reg, PROM_GAUGE, "itscam_breaker_forced_cpu",
                                      "1 while the backend is switched to the CPU by hand", backend_l, NULL, 0);
    m->breaker_transitions = prom_register(m->reg, PROM_COUNTER, "itscam_breaker_transitions_total",
                                           "Circuit breaker state changes", backend_from_to, NULL, 0);
    m->backend_failures = prom_register(m->reg, PROM_COUNTER, "itscam_backend_failures_total",
                                        "GPU backend failures (kind error or oom)", backend_kind, NULL, 0);
    m->fallback_runs = prom_register(m->reg, PROM_COUNTER, "itscam_backend_fallback_runs_total",
                                     "Runs served by the CPU in place of the GPU backend", backend_l, NULL, 0);
    if (!m->breaker_state || !m->breaker_forced || !m->breaker_transitions || !m->backend_failures ||
        !m->fallback_runs || !m->requests || !m->request_seconds || !m->queue_seconds || !m->decode_seconds || !m->preprocess_seconds ||
        !m->inference_seconds || !m->postprocess_seconds || !m->batch_size || !m->queue_depth || !m->inflight ||
        !m->sla_violations || !m->sla_seconds || !m->rejected || !m->cpu_seconds || !m->rss_bytes ||
        !m->start_time || !m->build_info || !m->model_ready) {
        srv_metrics_free(m);
        return -1;
    }
    m->sla_s = sla_ms / 1e3;
    prom_set(m->sla_seconds, NULL, m->sla_s);
    char backends[128] = "";
    for (const char *const *b = itscam_backends(); *b; b++) {
        if (backends[0]) strncat(backends, ",", sizeof backends - strlen(backends) - 1);
        strncat(backends, *b, sizeof backends - strlen(backends) - 1);
    }
    const char *bv[] = { itscam_version(), backends };
    prom_set(m->build_info, bv, 1);
    return 0;
}

void srv_metrics_free(srv_metrics *m) {
    prom_registry_free(m->reg);
    memset(m, 0, sizeof *m);
}

void srv_model_ref(srv_model *m) {
    atomic_fetch_add(&m->refs, 1);
}

void srv_model_unref(srv_model *m) {
    if (!m || atomic_fetch_sub(&m->refs, 1) != 1) return;
    srv_batcher_free(m->batcher);
    itscam_model_free(m->model);
    it_free(m);
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
    m->batcher = srv_batcher_new(m->name, m->model, cfg, mx, err, errlen);
    if (!m->batcher || srv_batcher_warmup(m->batcher, err, errlen) != 0) {
        srv_model_unref(m);
        return NULL;
    }
    srv_batcher_output_dims(m->batcher, m->out_dims, &m->out_ndim);
    atomic_store(&m->ready, 1);
    const char *lv[] = { m->name };
    prom_set(mx->model_ready, lv, 1);
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
