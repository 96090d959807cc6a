/* Every metric the server exports: the families (registered once), the per-request
 * observations of the HTTP side, the scheduler's observer (queue times, stage times,
 * batch sizes, queue depths, rejections: src/sched knows nothing of Prometheus), and
 * what is read at scrape time (process, breaker). */
#include "server/http_internal.h"

#include "core/core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

int srv_metrics_init(srv_metrics *m, const srv_config *cfg) {
    memset(m, 0, sizeof *m);
    m->reg = prom_registry_new();
    if (!m->reg) return -1;
    /* Before any family: the cap is taken at registration. */
    if (prom_set_max_series(m->reg, cfg->max_series_per_family) != 0) {
        srv_metrics_free(m);
        return -1;
    }
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
                                     "Time a job waited in the scheduler's queue", model_prio, lb, nlb);
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
    m->decode_budget = prom_register(m->reg, PROM_GAUGE, "itscam_decode_budget_bytes",
                                     "Decoded image bytes all requests may hold at once (server.decode_budget_bytes)",
                                     NULL, NULL, 0);
    m->decode_in_use = prom_register(m->reg, PROM_GAUGE, "itscam_decode_budget_used_bytes",
                                     "Decoded image bytes reserved now by requests in flight", NULL, NULL, 0);
    static const char *const reason_l[] = { "reason", NULL };
    m->connections_open = prom_register(m->reg, PROM_GAUGE, "itscam_connections_open",
                                        "Client connections open now", NULL, NULL, 0);
    m->connections_dropped = prom_register(m->reg, PROM_COUNTER, "itscam_connections_dropped_total",
                                           "Connections closed by the server's guard: header_timeout, body_rate, "
                                           "stream_send_timeout, or shed (slots full, still sending headers)",
                                           reason_l, NULL, 0);
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
    static const char *const result_l[] = { "result", NULL };
    m->reloads = prom_register(m->reg, PROM_COUNTER, "itscam_model_reloads_total",
                               "Model reloads run (result ok or error); reload requests made while one runs share it",
                               result_l, NULL, 0);
    m->streams_open = prom_register(m->reg, PROM_GAUGE, "itscam_streams_open",
                                    "Streaming responses (MJPEG, Server-Sent Events) open now", NULL, NULL, 0);
    m->events_published = prom_register(m->reg, PROM_COUNTER, "itscam_events_published_total",
                                        "Events published on the event bus", NULL, NULL, 0);
    m->events_dropped = prom_register(m->reg, PROM_COUNTER, "itscam_events_dropped_total",
                                      "Events dropped from a subscriber's full queue (a client that reads too slowly)",
                                      NULL, NULL, 0);
    static const char *const cam[] = { "camera", NULL };
    static const char *const cam_state[] = { "camera", "state", NULL };
    static const char *const cam_kind[] = { "camera", "kind", NULL };
    static const char *const cam_reason[] = { "camera", "reason", NULL };
    m->camera_state = prom_register(m->reg, PROM_GAUGE, "itscam_camera_state",
                                    "1 for the state the camera is in (starting, streaming, stalled, reconnecting, "
                                    "failed, ended, disabled)", cam_state, NULL, 0);
    m->camera_fps = prom_register(m->reg, PROM_GAUGE, "itscam_camera_fps",
                                  "Frames per second over the last window: input, decoded, detected, target", cam_kind,
                                  NULL, 0);
    m->camera_dropped = prom_register(m->reg, PROM_COUNTER, "itscam_camera_dropped_frames_total",
                                      "Frames not detected: skipped (over the detect fps), stale, queue_full, failed",
                                      cam_reason, NULL, 0);
    m->camera_frames = prom_register(m->reg, PROM_COUNTER, "itscam_camera_detected_frames_total",
                                     "Frames detected (the result cache's included)", cam, NULL, 0);
    m->camera_reconnects = prom_register(m->reg, PROM_COUNTER, "itscam_camera_reconnects_total",
                                         "Times the camera's stream was opened again", cam, NULL, 0);
    m->camera_cache_hits = prom_register(m->reg, PROM_COUNTER, "itscam_camera_result_cache_hits_total",
                                         "Frames identical to the previous one that reused its result", cam, NULL, 0);
    m->camera_quality = prom_register(m->reg, PROM_GAUGE, "itscam_camera_quality_score",
                                      "Picture quality, 0 (useless) to 1 (good)", cam, NULL, 0);
    m->camera_shed_level = prom_register(m->reg, PROM_GAUGE, "itscam_camera_shed_level",
                                         "Load shedding level: 0 full detect fps, 1 half, 2 a quarter, 3 a quarter on "
                                         "the fallback model", cam, NULL, 0);
    m->camera_latency = prom_register(m->reg, PROM_HISTOGRAM, "itscam_camera_latency_seconds",
                                      "Capture (packet read) to result, per detected frame", cam, lb, nlb);
    m->shed_step = prom_register(m->reg, PROM_GAUGE, "itscam_shed_step",
                                 "The load shedding step (0..9): low cameras degrade first, then normal, then high",
                                 NULL, NULL, 0);
    m->shed_changes = prom_register(m->reg, PROM_COUNTER, "itscam_shed_changes_total", "Load shedding step changes",
                                    NULL, NULL, 0);
    static const char *const cam_line[] = { "camera", "line", "direction", NULL };
    static const char *const cam_zone[] = { "camera", "zone", NULL };
    m->camera_events = prom_register(m->reg, PROM_COUNTER, "itscam_camera_events_total",
                                     "Events the camera raised (analytics, state, quality, shedding)", cam, NULL, 0);
    m->camera_line_crossings = prom_register(m->reg, PROM_COUNTER, "itscam_line_crossings_total",
                                             "Tracks that crossed a counting line, since the camera started "
                                             "(wrong-way ones included)", cam_line, NULL, 0);
    m->camera_zone_occupancy = prom_register(m->reg, PROM_GAUGE, "itscam_zone_occupancy",
                                             "Tracks inside the zone after the camera's last detected frame", cam_zone,
                                             NULL, 0);
    m->events_stored = prom_register(m->reg, PROM_COUNTER, "itscam_events_stored_total",
                                     "Events committed to the event store", NULL, NULL, 0);
    m->events_lost = prom_register(m->reg, PROM_COUNTER, "itscam_events_lost_total",
                                   "Events lost before the store: its queue was full, or a write failed", NULL, NULL, 0);
    m->events_retained = prom_register(m->reg, PROM_COUNTER, "itscam_events_expired_total",
                                       "Events deleted by retention (age or count)", NULL, NULL, 0);
    if (!m->camera_events || !m->camera_line_crossings || !m->camera_zone_occupancy || !m->events_stored ||
        !m->events_lost || !m->events_retained) {
        srv_metrics_free(m);
        return -1;
    }
    if (!m->camera_state || !m->camera_fps || !m->camera_dropped || !m->camera_frames || !m->camera_reconnects ||
        !m->camera_cache_hits || !m->camera_quality || !m->camera_shed_level || !m->camera_latency || !m->shed_step ||
        !m->shed_changes) {
        srv_metrics_free(m);
        return -1;
    }
    if (!m->streams_open || !m->events_published || !m->events_dropped || !m->reloads || !m->breaker_state || !m->breaker_forced || !m->breaker_transitions || !m->backend_failures ||
        !m->fallback_runs || !m->requests || !m->request_seconds || !m->queue_seconds || !m->decode_seconds || !m->preprocess_seconds ||
        !m->inference_seconds || !m->postprocess_seconds || !m->batch_size || !m->queue_depth || !m->inflight ||
        !m->sla_violations || !m->sla_seconds || !m->rejected || !m->cpu_seconds || !m->rss_bytes || !m->decode_budget || !m->decode_in_use || !m->connections_open || !m->connections_dropped ||
        !m->start_time || !m->build_info || !m->model_ready) {
        srv_metrics_free(m);
        return -1;
    }
    m->sla_s = cfg->sla_ms / 1e3;
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

void srv_metrics_request(srv_metrics *m, const char *route, const char *model, int code, double secs,
                         int model_route) {
    char cs[8];
    snprintf(cs, sizeof cs, "%d", code);
    const char *lv[] = { route, model, cs };
    prom_inc(m->requests, lv, 1);
    const char *lv2[] = { route, model };
    prom_observe(m->request_seconds, lv2, secs);
    if (model_route && secs > m->sla_s) {
        const char *lv3[] = { model };
        prom_inc(m->sla_violations, lv3, 1);
    }
}

void srv_metrics_decode(srv_metrics *m, const char *model, double secs) {
    const char *lv[] = { model };
    prom_observe(m->decode_seconds, lv, secs);
}

static void collect_process(srv_server *s) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0) {
        double cpu = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
                     ru.ru_stime.tv_usec / 1e6;
        if (cpu > s->cpu_last) {
            prom_inc(s->mx.cpu_seconds, NULL, cpu - s->cpu_last);
            s->cpu_last = cpu;
        }
    }
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        long pages_total, pages_res;
        if (fscanf(f, "%ld %ld", &pages_total, &pages_res) == 2)
            prom_set(s->mx.rss_bytes, NULL, (double)pages_res * (double)sysconf(_SC_PAGESIZE));
        fclose(f);
    }
    prom_set(s->mx.start_time, NULL, s->start_unix);
    prom_set(s->mx.inflight, NULL, atomic_load(&s->inflight));
    if (s->guard) {
        srv_guard_stats gs;
        srv_guard_stats_get(s->guard, &gs);
        prom_set(s->mx.connections_open, NULL, gs.open);
        prom_set(s->mx.streams_open, NULL, gs.streams);
        static const char *const reasons[4] = { "header_timeout", "body_rate", "stream_send_timeout", "shed" };
        long long now[4] = { gs.dropped_headers, gs.dropped_body, gs.dropped_stream, gs.shed };
        for (int i = 0; i < 4; i++) {
            const char *lv[] = { reasons[i] };
            prom_inc(s->mx.connections_dropped, lv, (double)(now[i] - s->mx.conn_dropped_last[i]));
            s->mx.conn_dropped_last[i] = now[i];
        }
    }
    if (s->bus) {
        it_bus_stats bs;
        it_bus_stats_get(s->bus, &bs);
        prom_inc(s->mx.events_published, NULL, (double)(bs.published - s->mx.events_published_last));
        prom_inc(s->mx.events_dropped, NULL, (double)(bs.dropped - s->mx.events_dropped_last));
        s->mx.events_published_last = bs.published;
        s->mx.events_dropped_last = bs.dropped;
    }
    prom_set(s->mx.decode_budget, NULL, (double)s->adm.budget);
    prom_set(s->mx.decode_in_use, NULL, (double)srv_admission_in_use(&s->adm));
}

/* The breaker keeps running totals; the counters get only what changed since the last
 * scrape (mx.breaker_last). Only a device backend has a breaker. */
static void collect_breaker(srv_server *s) {
    const char *backend = s->cfg.backend;
    itscam_breaker_info bi;
    if (!itscam_backend_is_device(backend) || itscam_breaker_get(backend, &bi) != ITSCAM_OK) return;
    itscam_breaker_info *last = &s->mx.breaker_last;
    const char *bl[] = { backend };
    prom_set(s->mx.breaker_forced, bl, bi.forced_cpu);
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++)
            if (bi.transitions[a][b] > last->transitions[a][b]) {
                const char *lv[] = { backend, itscam_breaker_state_name((itscam_breaker_state)a),
                                     itscam_breaker_state_name((itscam_breaker_state)b) };
                prom_inc(s->mx.breaker_transitions, lv, (double)(bi.transitions[a][b] - last->transitions[a][b]));
            }
    const char *le[] = { backend, "error" }, *lo[] = { backend, "oom" };
    uint64_t errs = bi.failures - bi.oom_failures, last_errs = last->failures - last->oom_failures;
    if (errs > last_errs) prom_inc(s->mx.backend_failures, le, (double)(errs - last_errs));
    if (bi.oom_failures > last->oom_failures)
        prom_inc(s->mx.backend_failures, lo, (double)(bi.oom_failures - last->oom_failures));
    if (bi.fallback_runs > last->fallback_runs)
        prom_inc(s->mx.fallback_runs, bl, (double)(bi.fallback_runs - last->fallback_runs));
    *last = bi;
    pthread_rwlock_rdlock(&s->reg_lock);
    for (int i = 0; s->reg && i < s->reg->n; i++) {
        const char *lv[] = { s->reg->models[i]->name, backend };
        prom_set(s->mx.breaker_state, lv, bi.state);
    }
    pthread_rwlock_unlock(&s->reg_lock);
}

static void collect(prom_registry *reg, void *user) {
    (void)reg;
    srv_server *s = user;
    /* Two scrapes at once must not both add the same delta (cpu_last, breaker_last,
     * conn_dropped_last): collection is serialised. */
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&mu);
    collect_process(s);
    collect_breaker(s);
    srv_cameras_collect(s);
    pthread_mutex_unlock(&mu);
}

/* ---- the scheduler's observer: ctx is the srv_model ---- */

static void observe_ms(prom_family *f, const char *model, double ms) {
    const char *lv[] = { model };
    prom_observe(f, lv, ms / 1e3);
}

static void obs_job_done(void *ctx, const it_sched_job *j) {
    srv_model *m = ctx;
    if (j->batch_size == 0) return; /* never left the queue for a batch */
    const char *lv[] = { m->name, it_sched_prio_name(j->prio) };
    prom_observe(m->mx->queue_seconds, lv, j->ms_queue / 1e3);
    if (j->outcome != IT_SCHED_DONE) return;
    observe_ms(m->mx->preprocess_seconds, m->name, j->ms_preprocess);
    observe_ms(m->mx->inference_seconds, m->name, j->ms_inference);
    observe_ms(m->mx->postprocess_seconds, m->name, j->ms_postprocess);
}

static void obs_batch_run(void *ctx, int size, double ms, itscam_status st) {
    srv_model *m = ctx;
    (void)ms;
    (void)st;
    const char *lv[] = { m->name };
    prom_observe(m->mx->batch_size, lv, size);
}

static void obs_queue_depth(void *ctx, int prio, int depth) {
    srv_model *m = ctx;
    const char *lv[] = { m->name, it_sched_prio_name(prio) };
    prom_set(m->mx->queue_depth, lv, depth);
}

static void obs_rejected(void *ctx, int prio, it_sched_outcome reason, int n) {
    srv_model *m = ctx;
    /* "timeout" rather than the scheduler's "expired": the label dashboards know. */
    const char *lv[] = { m->name, it_sched_prio_name(prio), reason == IT_SCHED_EXPIRED ? "timeout" : "queue_full" };
    prom_inc(m->mx->rejected, lv, n);
}

it_sched_observer srv_metrics_observer(srv_model *m) {
    return (it_sched_observer){ .ctx = m, .job_done = obs_job_done, .batch_run = obs_batch_run,
                                .queue_depth = obs_queue_depth, .rejected = obs_rejected };
}

void srv_metrics_model_ready(srv_model *m) {
    const char *lv[] = { m->name };
    prom_set(m->mx->model_ready, lv, 1);
    for (int p = 0; p < IT_SCHED_NPRIO; p++) obs_queue_depth(m, p, 0);
}

void srv_metrics_collect_on(srv_server *s) {
    prom_on_collect(s->mx.reg, collect, s);
}

char *srv_metrics_render(srv_server *s, size_t *len) {
    return prom_render(s->mx.reg, len);
}
