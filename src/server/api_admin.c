/* Administration: /metrics, /v1/models/reload, /v1/backend (the device backend's
 * breaker, and switching it to the CPU by hand) and /v1/admin/scheduler (the batching
 * settings a running server takes). */
#include "server/http_internal.h"
#include "server/tune.h"

#include "core/core.h"

#include <string.h>

enum MHD_Result api_metrics(http_req *r) {
    size_t len;
    char *txt = srv_metrics_render(r->s, &len);
    if (!txt) return http_respond_error(r, 500, "out of memory");
    return http_respond_raw(r, 200, "text/plain; version=0.0.4; charset=utf-8", txt, len, NULL, NULL);
}

/* POST /v1/models/reload: the request waits, suspended, for a load (the one running, or
 * one it starts: lifecycle.c coalesces them) and is answered with the models, or 500
 * with the reason (http.c answers r->fail_code when it is resumed). */
enum MHD_Result api_reload(http_req *r) {
    if (srv_server_reload_async(r->s, r, api_models) != 0)
        return http_respond_error_h(r, 503, "cannot reload now: the server is shutting down or out of memory",
                                    MHD_HTTP_HEADER_RETRY_AFTER, "1");
    return MHD_YES;
}

static json_t *breaker_json(const itscam_breaker_info *bi) {
    return json_pack("{s:s,s:b,s:i,s:i,s:I,s:I,s:I,s:I,s:f,s:{s:i,s:i,s:i,s:i}}", "state",
                     itscam_breaker_state_name(bi->state), "forced_cpu", bi->forced_cpu, "consecutive_failures",
                     bi->consecutive_failures, "consecutive_oom", bi->consecutive_oom, "failures",
                     (json_int_t)bi->failures, "oom_failures", (json_int_t)bi->oom_failures, "successes",
                     (json_int_t)bi->successes, "fallback_runs", (json_int_t)bi->fallback_runs, "seconds_in_state",
                     bi->ms_in_state / 1e3, "config", "failure_threshold", bi->config.failure_threshold,
                     "oom_threshold", bi->config.oom_threshold, "open_ms", bi->config.open_ms, "half_open_probes",
                     bi->config.half_open_probes);
}

/* GET /v1/backend: the configured backend and, for a device backend, its breaker. */
enum MHD_Result api_backend_get(http_req *r) {
    srv_server *s = r->s;
    const char *backend = s->cfg.backend;
    json_t *o = json_pack("{s:s}", "backend", backend);
    itscam_breaker_info bi;
    if (itscam_backend_is_device(backend) && itscam_breaker_get(backend, &bi) == ITSCAM_OK)
        json_object_set_new(o, "breaker", breaker_json(&bi));
    json_t *models = json_array();
    pthread_rwlock_rdlock(&s->reg_lock);
    for (int i = 0; s->reg && i < s->reg->n; i++) {
        srv_model_desc d;
        srv_model_describe(s->reg->models[i], &d);
        json_array_append_new(models,
                              json_pack("{s:s,s:s}", "name", s->reg->models[i]->name, "active_backend", d.active_backend));
    }
    pthread_rwlock_unlock(&s->reg_lock);
    json_object_set_new(o, "models", models);
    return http_respond_json(r, 200, o);
}

/* POST /v1/backend {"force_cpu": true|false}: switch the device backend to the CPU by
 * hand and back (token-protected like every route but health). */
enum MHD_Result api_backend_set(http_req *r) {
    json_error_t je;
    json_t *j = json_loadb((const char *)r->body, r->len, 0, &je);
    if (!j) return http_respond_error(r, 400, "malformed JSON at byte %d: %s", je.position, je.text);
    json_t *f = json_object_get(j, "force_cpu");
    if (!json_is_boolean(f)) {
        json_decref(j);
        return http_respond_error(r, 400, "expected {\"force_cpu\": true|false}");
    }
    int force = json_is_true(f);
    json_decref(j);
    const char *backend = r->s->cfg.backend;
    if (!itscam_backend_is_device(backend))
        return http_respond_error(r, 409, "backend '%s' has no GPU to switch from", backend);
    if (itscam_breaker_force(backend, force) != ITSCAM_OK)
        return http_respond_error(r, 500, "%s", itscam_last_error());
    return api_backend_get(r);
}

/* ---- /v1/admin/scheduler ---------------------------------------------------------- */

static json_t *sched_runtime_json(const it_sched_runtime *rt) {
    json_t *d = json_object(), *q = json_object(), *p = json_array();
    for (int l = 0; l < IT_SCHED_NPRIO; l++) {
        json_object_set_new(d, it_sched_prio_name(l), json_integer(rt->max_delay_ms[l]));
        json_object_set_new(q, it_sched_prio_name(l), json_integer(rt->queue_limit[l]));
    }
    for (int i = 0; i < rt->n_preferred; i++) json_array_append_new(p, json_integer(rt->preferred_batch[i]));
    return json_pack("{s:o,s:o,s:o}", "max_delay_ms", d, "preferred_batch", p, "queue_limit", q);
}

/* GET /v1/admin/scheduler: the settings as configured (and changed since), and what each
 * model's scheduler runs with (its preferred sizes bounded by its own max_batch). */
enum MHD_Result api_scheduler_get(http_req *r) {
    srv_server *s = r->s;
    pthread_mutex_lock(&s->rt_mu);
    json_t *o = srv_runtime_json(&s->cfg);
    int max_batch = s->cfg.max_batch;
    pthread_mutex_unlock(&s->rt_mu);
    if (!o) return http_respond_error(r, 500, "out of memory");
    json_object_set_new(o, "max_batch", json_integer(max_batch));
    json_t *models = json_array();
    pthread_rwlock_rdlock(&s->reg_lock);
    for (int i = 0; s->reg && i < s->reg->n; i++) {
        srv_model *m = s->reg->models[i];
        it_sched_runtime rt;
        srv_model_runtime_get(m, &rt);
        srv_model_desc d;
        srv_model_describe(m, &d);
        json_t *mj = sched_runtime_json(&rt);
        json_object_set_new(mj, "name", json_string(m->name));
        json_object_set_new(mj, "max_batch", json_integer(d.max_batch));
        json_array_append_new(models, mj);
    }
    pthread_rwlock_unlock(&s->reg_lock);
    json_object_set_new(o, "models", models);
    /* What this route cannot change, so that a client need not guess. */
    json_object_set_new(o, "restart_required", json_pack("[s,s,s,s,s]", "models.precision", "models.threads",
                                                         "models.workers", "batching.max_batch", "models.backend"));
    return http_respond_json(r, 200, o);
}

/* PUT /v1/admin/scheduler {"max_delay_ms": {...}, "preferred_batch": [...],
 * "queue_limit": {...}} (any of them): every value is checked as the configuration file
 * checks it (400 naming the value otherwise), then all are put in force on every
 * model's scheduler at once and kept for reloads. Token-protected; 403 on a server
 * without tokens (HTTP_ADMIN in the route table). Answers as GET. */
enum MHD_Result api_scheduler_put(http_req *r) {
    srv_server *s = r->s;
    json_error_t je;
    json_t *j = json_loadb((const char *)r->body, r->len, 0, &je);
    if (!j) return http_respond_error(r, 400, "malformed JSON at byte %d: %s", je.position, je.text);
    srv_config *t = it_malloc(sizeof *t);
    if (!t) {
        json_decref(j);
        return http_respond_error(r, 500, "out of memory");
    }
    char err[512];
    pthread_mutex_lock(&s->rt_mu);
    *t = s->cfg;
    int bad = srv_runtime_from_json(t, j, 0, err, sizeof err);
    json_decref(j);
    int failed = 0;
    if (!bad) {
        pthread_rwlock_rdlock(&s->reg_lock);
        failed = srv_registry_runtime_apply(s->reg, t, err, sizeof err);
        pthread_rwlock_unlock(&s->reg_lock);
    }
    if (!bad && !failed) {
        memcpy(s->cfg.max_delay_ms, t->max_delay_ms, sizeof s->cfg.max_delay_ms);
        memcpy(s->cfg.queue_limit, t->queue_limit, sizeof s->cfg.queue_limit);
        memcpy(s->cfg.preferred_batch, t->preferred_batch, sizeof s->cfg.preferred_batch);
        s->cfg.n_preferred = t->n_preferred;
        it_log(ITSCAM_LOG_INFO,
               "scheduler settings changed: max_delay_ms %d/%d/%d, queue_limit %d/%d/%d, %d preferred batch size(s)",
               t->max_delay_ms[0], t->max_delay_ms[1], t->max_delay_ms[2], t->queue_limit[0], t->queue_limit[1],
               t->queue_limit[2], t->n_preferred);
    }
    pthread_mutex_unlock(&s->rt_mu);
    it_free(t);
    if (bad) return http_respond_error(r, 400, "%s", err);
    if (failed) return http_respond_error(r, 500, "%s", err);
    return api_scheduler_get(r);
}
