/* Administration: /metrics, /v1/models/reload, and /v1/backend (the device backend's
 * breaker, and switching it to the CPU by hand). */
#include "server/http_internal.h"

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
