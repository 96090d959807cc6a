/* The server's cameras: the embedded store under storage.dir, the one merge rule between
 * configured and stored cameras (sinks/store.h), the camera pipeline (pipeline/) fed
 * through the model registry so that reloads and HTTP requests share the same
 * schedulers, the camera API (/v1/cameras...) and the itscam_camera_* metrics.
 *
 * Every change made through the API is written to the store first and applied to the
 * pipeline second, under one mutex, so the store and the running cameras never
 * disagree for longer than a request. */
#include "server/http_internal.h"

#include "core/core.h"
#include "sinks/events.h"
#include "sinks/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CAM_BODY_MAX (64 * 1024)

/* ---- the pipeline's door to the models ---- */

static it_sched_submit_status cam_submit(void *ctx, const char *model, it_sched_job *j, void **token) {
    srv_server *s = ctx;
    srv_model *m = srv_server_model(s, model ? model : "");
    if (!m) {
        j->outcome = IT_SCHED_FAILED;
        j->status = ITSCAM_ERR_NOT_FOUND;
        snprintf(j->message, sizeof j->message, "no model '%s' is served", model && *model ? model : "(default)");
        return IT_SCHED_REJECT_INVALID;
    }
    *token = m; /* released by cam_release once the result was handled */
    it_sched_job *jj = j;
    return srv_model_submit(m, &jj, 1);
}

static void cam_release(void *ctx, void *token) {
    (void)ctx;
    srv_model_unref(token);
}

static void obs_frame(void *ctx, const char *camera, double latency_ms) {
    srv_server *s = ctx;
    const char *lv[] = { camera };
    prom_observe(s->mx.camera_latency, lv, latency_ms / 1e3);
}

static void obs_shed(void *ctx, int step, const char *why) {
    srv_server *s = ctx;
    (void)why;
    prom_set(s->mx.shed_step, NULL, step);
    prom_inc(s->mx.shed_changes, NULL, 1);
}

/* A camera's detect.model must be served (checked when it is added or changed). */
static int model_known(srv_server *s, const it_camdef *d, char *err, size_t n) {
    const char *names[2] = { d->detect.model, d->detect.fallback_model };
    for (int i = 0; i < 2; i++) {
        if (i == 1 && !names[i][0]) continue;
        srv_model *m = srv_server_model(s, names[i]);
        if (!m) {
            snprintf(err, n, "camera %s: detect.%s '%s' is not a served model", d->id, i ? "fallback_model" : "model",
                     names[i]);
            return -1;
        }
        srv_model_unref(m);
    }
    return 0;
}

/* ---- events: writer -> store -> bus ---- */

/* The writer's thread, after each commit: the events go live with their store ids, so an
 * SSE client that resumes with Last-Event-ID finds in the store every event it missed. */
static void on_commit(void *arg, const it_store_event *ev, int n) {
    srv_server *s = arg;
    for (int i = 0; i < n; i++) {
        size_t len = 0;
        char *txt = it_store_event_text(&ev[i], &len); /* the replay's form, byte for byte */
        if (txt) it_bus_publish_stored(s->bus, ev[i].camera, ev[i].type, txt, len, ev[i].id, NULL);
        free(txt);
    }
    srv_publish_wake(s); /* the brokers' outbox rows were committed with the events */
}

/* Retention in the background, once a minute: small steps (events.h), so the writer
 * never waits long for the store. */
static void *retain_main(void *arg) {
    srv_server *s = arg;
    pthread_mutex_lock(&s->retain_mu);
    while (!s->retain_stop) {
        pthread_mutex_unlock(&s->retain_mu);
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        int64_t deleted = 0;
        if (it_store_events_retain(s->retain_store, s->cfg.events_retention_days * 86400.0, (int64_t)s->cfg.events_max,
                                   (double)now.tv_sec + now.tv_nsec / 1e9, &deleted) != ITSCAM_OK)
            it_log(ITSCAM_LOG_WARN, "event retention: %s", itscam_last_error());
        else if (deleted)
            it_log(ITSCAM_LOG_INFO, "event retention: %lld events deleted", (long long)deleted);
        atomic_fetch_add(&s->events_retained, (unsigned long long)deleted);
        pthread_mutex_lock(&s->retain_mu);
        struct timespec ts;
        it_deadline_in(&ts, 60e3);
        if (!s->retain_stop) pthread_cond_timedwait(&s->retain_cv, &s->retain_mu, &ts);
    }
    pthread_mutex_unlock(&s->retain_mu);
    return NULL;
}

static int events_start(srv_server *s, it_store *st, it_cams_params *p, char *err, size_t errlen) {
    uint32_t mask = 0;
    char why[512];
    if (it_cam_events_types_mask(s->cfg.events_snapshots, &mask, why, sizeof why)) {
        snprintf(err, errlen, "events.snapshots: %s", why);
        return -1;
    }
    it_event_writer *w = NULL;
    if (it_event_writer_start(st, s->cfg.events_queue, &w) != ITSCAM_OK) {
        snprintf(err, errlen, "%s", itscam_last_error());
        return -1;
    }
    it_event_writer_on_commit(w, on_commit, s);
    pthread_mutex_lock(&s->cam_mu);
    s->events = w;
    pthread_mutex_unlock(&s->cam_mu);
    p->track = s->cfg.track;
    p->events.writer = s->events;
    p->events.track_events = s->cfg.events_track;
    p->events.snapshot_types = mask;
    p->events.snapshot_quality = s->cfg.events_snapshot_quality;
    p->events.storage_dir = s->cfg.storage_dir;
    p->events.occupancy_every_s = s->cfg.events_occupancy_every_s;
    pthread_mutex_init(&s->retain_mu, NULL);
    it_cond_init_monotonic(&s->retain_cv);
    s->retain_stop = 0;
    s->retain_store = st;
    s->retain_started = pthread_create(&s->retain_th, NULL, retain_main, s) == 0;
    if (!s->retain_started) it_log(ITSCAM_LOG_WARN, "event retention: cannot start its thread; nothing expires");
    return 0;
}

static void events_stop(srv_server *s) {
    if (s->retain_started) {
        pthread_mutex_lock(&s->retain_mu);
        s->retain_stop = 1;
        pthread_cond_signal(&s->retain_cv);
        pthread_mutex_unlock(&s->retain_mu);
        pthread_join(s->retain_th, NULL);
        s->retain_started = 0;
        pthread_cond_destroy(&s->retain_cv);
        pthread_mutex_destroy(&s->retain_mu);
    }
    pthread_mutex_lock(&s->cam_mu); /* the metrics read it under cam_mu */
    it_event_writer *w = s->events;
    s->events = NULL;
    pthread_mutex_unlock(&s->cam_mu);
    it_event_writer_stop(w); /* writes what is queued (the cameras' last track_end) */
}

int srv_cameras_start(srv_server *s, const it_camdef *cfg_cams, int n_cfg, char *err, size_t errlen) {
    it_store *st = NULL;
    if (it_store_open(s->cfg.storage_dir, &st, err, errlen) != 0) return -1;
    it_camdef *db = NULL, *all = NULL;
    it_cam_id *deleted = NULL;
    int n_db = 0, n_deleted = 0, n_all = 0;
    if (it_store_cameras(st, &db, &n_db, &deleted, &n_deleted) != ITSCAM_OK ||
        it_cameras_merge(cfg_cams, n_cfg, db, n_db, deleted, n_deleted, &all, &n_all) != ITSCAM_OK) {
        snprintf(err, errlen, "%s", itscam_last_error());
        it_free(db);
        it_free(deleted);
        it_store_close(st);
        return -1;
    }
    it_free(db);
    it_free(deleted);
    it_cams_params p = it_cams_default_params();
    p.infer = (it_cam_infer){ .ctx = s, .submit = cam_submit, .release = cam_release };
    p.observer = (it_cams_observer){ .ctx = s, .frame_done = obs_frame, .shed_change = obs_shed };
    p.bus = s->bus;
    p.frames = s->frames;
    p.sla_ms = s->cfg.sla_ms;
    p.detect_defaults.conf = s->cfg.conf;
    p.detect_defaults.iou = s->cfg.iou;
    p.detect_defaults.max_det = s->cfg.max_det;
    /* The publishers register their outbox targets before the first event is written:
     * an event stored earlier would never get its outbox rows. */
    pthread_mutex_lock(&s->cam_mu);
    s->store = st;
    pthread_mutex_unlock(&s->cam_mu);
    if (srv_publish_start(s, err, errlen) || events_start(s, st, &p, err, errlen)) {
        srv_publish_stop(s);
        pthread_mutex_lock(&s->cam_mu);
        s->store = NULL;
        pthread_mutex_unlock(&s->cam_mu);
        it_free(all);
        it_store_close(st);
        return -1;
    }
    it_cams *cams = NULL;
    if (it_cams_new(&p, &cams) != ITSCAM_OK) {
        snprintf(err, errlen, "%s", itscam_last_error());
        it_free(all);
        events_stop(s);
        srv_publish_stop(s);
        pthread_mutex_lock(&s->cam_mu);
        s->store = NULL;
        pthread_mutex_unlock(&s->cam_mu);
        it_store_close(st);
        return -1;
    }
    /* A camera that cannot start (an unknown model) is logged and skipped: one bad
     * camera must not keep the others, or the HTTP API, down. */
    for (int i = 0; i < n_all; i++) {
        char why[256];
        if (model_known(s, &all[i], why, sizeof why) != 0) it_log(ITSCAM_LOG_ERROR, "%s; not started", why);
        else if (it_cams_put(cams, &all[i]) != ITSCAM_OK)
            it_log(ITSCAM_LOG_ERROR, "camera %s: %s; not started", all[i].id, itscam_last_error());
    }
    it_free(all);
    pthread_mutex_lock(&s->cam_mu);
    s->store = st;
    s->cams = cams;
    pthread_mutex_unlock(&s->cam_mu);
    return 0;
}

void srv_cameras_stop(srv_server *s) {
    pthread_mutex_lock(&s->cam_mu);
    it_cams *c = s->cams;
    it_store *st = s->store;
    s->cams = NULL;
    s->store = NULL;
    pthread_mutex_unlock(&s->cam_mu);
    it_cams_free(c); /* waits for its jobs: before the models go */
    events_stop(s);  /* after the cameras: their last events are written */
    it_store_close(st);
}

/* ---- metrics, read at scrape time ---- */

void srv_cameras_collect(srv_server *s) {
    pthread_mutex_lock(&s->cam_mu);
    it_cam_info *all = NULL;
    int n = s->cams ? it_cams_list(s->cams, &all) : 0;
    double p95 = 0;
    int step = s->cams ? it_cams_shed_step(s->cams, &p95) : 0;
    pthread_mutex_unlock(&s->cam_mu);
    prom_set(s->mx.shed_step, NULL, step);
    srv_metrics *m = &s->mx;
    for (int i = 0; i < n; i++) {
        const it_cam_info *c = &all[i];
        const char *id = c->def.id;
        for (int st = IT_SOURCE_STARTING; st <= IT_SOURCE_DISABLED; st++) {
            const char *lv[] = { id, it_source_state_name((it_stream_state)st) };
            prom_set(m->camera_state, lv, c->state == (it_stream_state)st);
        }
        static const char *const kinds[] = { "input", "decoded", "detected", "target" };
        double fps[] = { c->fps_input, c->fps_decoded, c->fps_detected, c->fps_target };
        for (int k = 0; k < 4; k++) {
            const char *lv[] = { id, kinds[k] };
            prom_set(m->camera_fps, lv, fps[k]);
        }
        static const char *const reasons[] = { "skipped", "stale", "queue_full", "failed" };
        uint64_t drops[] = { c->skipped, c->stale, c->queue_full, c->failed };
        for (int k = 0; k < 4; k++) {
            const char *lv[] = { id, reasons[k] };
            prom_set_total(m->camera_dropped, lv, (double)drops[k]);
        }
        const char *lv[] = { id };
        prom_set_total(m->camera_frames, lv, (double)c->detected);
        prom_set_total(m->camera_reconnects, lv, (double)c->reconnects);
        prom_set_total(m->camera_cache_hits, lv, (double)c->cache_hits);
        prom_set(m->camera_quality, lv, c->quality.score);
        prom_set(m->camera_shed_level, lv, c->shed_level);
        prom_set_total(m->camera_events, lv, (double)c->events_emitted);
        for (int l = 0; l < c->def.n_lines && l < IT_CAM_MAX_LINES; l++)
            for (int d = 0; d < 2; d++) {
                const char *ll[] = { id, c->def.lines[l].id, d ? "b_to_a" : "a_to_b" };
                prom_set_total(m->camera_line_crossings, ll, (double)c->line_counts[l][d]);
            }
        for (int z = 0; z < c->def.n_zones && z < IT_CAM_MAX_ZONES; z++) {
            const char *zl[] = { id, c->def.zones[z].id };
            prom_set(m->camera_zone_occupancy, zl, c->zone_occupancy[z]);
        }
    }
    it_free(all);
    pthread_mutex_lock(&s->cam_mu);
    if (s->events) {
        it_event_writer_stats ws;
        it_event_writer_stats_get(s->events, &ws);
        prom_set_total(m->events_stored, NULL, (double)ws.written);
        prom_set_total(m->events_lost, NULL, (double)(ws.dropped + ws.failed));
        prom_set_total(m->events_retained, NULL, (double)atomic_load(&s->events_retained));
    }
    pthread_mutex_unlock(&s->cam_mu);
}

/* ---- the API ---- */

static enum MHD_Result answer_info(http_req *r, int code, const char *id) {
    it_cam_info ci;
    pthread_mutex_lock(&r->s->cam_mu);
    int ok = r->s->cams && it_cams_info(r->s->cams, id, &ci) == 0;
    pthread_mutex_unlock(&r->s->cam_mu);
    if (!ok) return http_respond_error(r, 404, "no camera '%s'", id);
    json_t *j = it_cam_info_json(&ci);
    if (!j) return http_respond_error(r, 500, "out of memory");
    return http_respond_json(r, code, j);
}

static int no_cameras(http_req *r, enum MHD_Result *ret) {
    if (r->s->cams) return 0;
    *ret = http_respond_error_h(r, 503, "cameras are not running yet", MHD_HTTP_HEADER_RETRY_AFTER, "1");
    return 1;
}

enum MHD_Result api_cameras_list(http_req *r) {
    srv_server *s = r->s;
    enum MHD_Result ret;
    pthread_mutex_lock(&s->cam_mu);
    if (no_cameras(r, &ret)) {
        pthread_mutex_unlock(&s->cam_mu);
        return ret;
    }
    it_cam_info *all = NULL;
    int n = it_cams_list(s->cams, &all);
    double p95 = 0;
    int step = it_cams_shed_step(s->cams, &p95);
    pthread_mutex_unlock(&s->cam_mu);
    if (n < 0) return http_respond_error(r, 500, "out of memory");
    json_t *a = json_array();
    for (int i = 0; a && i < n; i++) json_array_append_new(a, it_cam_info_json(&all[i]));
    it_free(all);
    json_t *o = json_pack("{s:o,s:{s:i,s:f,s:f}}", "cameras", a ? a : json_array(), "shed", "step", step, "p95_ms",
                          p95, "sla_ms", s->cfg.sla_ms);
    if (!o) return http_respond_error(r, 500, "out of memory");
    return http_respond_json(r, 200, o);
}

enum MHD_Result api_camera_get(http_req *r) {
    return answer_info(r, 200, r->camera);
}

/* The body as a JSON object, or an answer (400/413) in *ret. */
static json_t *body_object(http_req *r, enum MHD_Result *ret) {
    if (r->len > CAM_BODY_MAX) {
        *ret = http_respond_error(r, 413, "a camera definition is at most %d bytes", CAM_BODY_MAX);
        return NULL;
    }
    json_error_t je;
    json_t *j = json_loadb((const char *)r->body, r->len, JSON_REJECT_DUPLICATES, &je);
    if (!j || !json_is_object(j)) {
        json_decref(j);
        *ret = http_respond_error(r, 400, "the body must be a JSON object (%s)", j ? "not an object" : je.text);
        return NULL;
    }
    return j;
}

/* Store, then run. 0, or -1 with an answer in *ret. */
static int apply(http_req *r, const it_camdef *d, enum MHD_Result *ret) {
    srv_server *s = r->s;
    char why[256];
    if (model_known(s, d, why, sizeof why) != 0) {
        *ret = http_respond_error(r, 400, "%s", why);
        return -1;
    }
    if (it_store_camera_put(s->store, d) != ITSCAM_OK) {
        *ret = http_respond_error(r, 500, "cannot store camera %s: %s", d->id, itscam_last_error());
        return -1;
    }
    if (it_cams_put(s->cams, d) != ITSCAM_OK) {
        *ret = http_respond_error(r, 400, "%s", itscam_last_error());
        return -1;
    }
    return 0;
}

enum MHD_Result api_camera_create(http_req *r) {
    srv_server *s = r->s;
    enum MHD_Result ret;
    json_t *j = body_object(r, &ret);
    if (!j) return ret;
    it_camdef d;
    char err[320];
    int rc = it_camdef_from_json(j, 0, &d, err, sizeof err);
    json_decref(j);
    if (rc != 0) return http_respond_error(r, 400, "%s", err);
    pthread_mutex_lock(&s->cam_mu);
    if (no_cameras(r, &ret)) goto out;
    it_camdef old;
    if (it_cams_get(s->cams, d.id, &old) == 0) {
        ret = http_respond_error(r, 409, "camera '%s' exists; PATCH /v1/cameras/%s changes it", d.id, d.id);
        goto out;
    }
    if (it_cams_count(s->cams) >= IT_CAM_MAX) {
        ret = http_respond_error(r, 409, "%d cameras are configured, the most allowed", IT_CAM_MAX);
        goto out;
    }
    if (apply(r, &d, &ret) != 0) goto out;
    pthread_mutex_unlock(&s->cam_mu);
    return answer_info(r, 201, d.id);
out:
    pthread_mutex_unlock(&s->cam_mu);
    return ret;
}

enum MHD_Result api_camera_patch(http_req *r) {
    srv_server *s = r->s;
    enum MHD_Result ret;
    json_t *j = body_object(r, &ret);
    if (!j) return ret;
    pthread_mutex_lock(&s->cam_mu);
    it_camdef d;
    if (no_cameras(r, &ret)) goto out;
    if (it_cams_get(s->cams, r->camera, &d) != 0) {
        ret = http_respond_error(r, 404, "no camera '%s'", r->camera);
        goto out;
    }
    char err[320];
    if (it_camdef_from_json(j, 1, &d, err, sizeof err) != 0) {
        ret = http_respond_error(r, 400, "%s", err);
        goto out;
    }
    if (apply(r, &d, &ret) != 0) goto out;
    pthread_mutex_unlock(&s->cam_mu);
    json_decref(j);
    return answer_info(r, 200, d.id);
out:
    pthread_mutex_unlock(&s->cam_mu);
    json_decref(j);
    return ret;
}

enum MHD_Result api_camera_delete(http_req *r) {
    srv_server *s = r->s;
    enum MHD_Result ret;
    pthread_mutex_lock(&s->cam_mu);
    it_camdef d;
    if (no_cameras(r, &ret)) goto out;
    if (it_cams_get(s->cams, r->camera, &d) != 0) {
        ret = http_respond_error(r, 404, "no camera '%s'", r->camera);
        goto out;
    }
    if (it_store_camera_delete(s->store, r->camera) != ITSCAM_OK) {
        ret = http_respond_error(r, 500, "cannot delete camera %s: %s", r->camera, itscam_last_error());
        goto out;
    }
    it_cams_remove(s->cams, r->camera);
    ret = http_respond_raw(r, 204, NULL, NULL, 0, NULL, NULL);
out:
    pthread_mutex_unlock(&s->cam_mu);
    return ret;
}
