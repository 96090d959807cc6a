/* The camera pipeline (see cameras.h for the design: pacing, priorities, shedding). */
#include "pipeline/cameras.h"

#include "core/core.h"
#include "track/bytetrack.h"

#include <math.h>
#include <stddef.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CAM_BUFS 3        /* one running, one queued, one being taken */
#define LAT_RING 2048     /* latency samples per camera (>= 120 fps x the longest window) */
#define HIST 64           /* one counter sample per second per camera */
#define SHED_MAX 9
#define NAME_BUCKETS 1024

static double wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

it_cams_params it_cams_default_params(void) {
    it_cams_params p;
    memset(&p, 0, sizeof p);
    p.sla_ms = 100;
    p.shed = 1;
    p.window_s = 5;
    p.raise_every_s = 2;
    p.release_after_s = 10;
    p.release_ratio = 0.6;
    p.quality_every = 10;
    p.quality = it_quality_default_params();
    p.result_cache = 1;
    p.decode_threads = 1;
    p.detect_defaults = itscam_detector_default_params();
    p.track = it_track_default_params();
    p.events = it_cam_events_default_params();
    return p;
}

typedef struct cam cam;

typedef struct cam_job {
    it_sched_job sj;
    cam *c;
    int buf;
    void *token;          /* the submitter's (it_cam_infer.release) */
    int64_t index;
    double captured_at;   /* wall ms */
    uint8_t thumb[IT_QUALITY_W * IT_QUALITY_HMAX];
    int tw, th;
} cam_job;

typedef struct cam_sample {
    double t;             /* monotonic ms */
    uint64_t decoded, detected, taken, packets;
} cam_sample;

struct cam {
    it_cams *owner;
    it_camdef def;
    it_source *src;
    pthread_t th;
    int th_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* under mu */
    int stop, kick, exited;
    it_image buf[CAM_BUFS];
    int busy[CAM_BUFS];
    cam_job jobs[CAM_BUFS];
    int done_q[CAM_BUFS], n_done;
    int outstanding;
    double last_served;   /* it_now_ms() when its last frame came back from the model */
    uint64_t detected, taken, skipped_base, stale, queue_full, failed, cache_hits, submitted;
    double lat_t[LAT_RING], lat_v[LAT_RING];
    int lat_pos, lat_n;
    cam_sample hist[HIST];
    int hist_pos, hist_n;
    it_quality q;
    it_source_info si;    /* the last state seen */
    /* the camera thread's own */
    it_quality_state qs;
    uint8_t last_thumb[IT_QUALITY_W * IT_QUALITY_HMAX];
    int last_tw, last_th;
    itscam_detection *last_dets;
    int last_n, have_last, last_w, last_h;
    double fail_logged;
    int skip_applied;     /* the it_skip_mode last set on the source (-1: none yet) */
    atomic_int shed_level;
    /* ByteTrack on the camera's thread (track/): ids per camera, in every detections
     * event. Scratch sized to the largest frame seen. */
    it_tracker *trk;
    it_track_det *tdets;
    it_track_out *tout;
    int64_t *tids;
    int tcap, n_tout;
    it_cam_events *ev;    /* analytics and every event of this camera */
    cam *next;
};

/* Class names outlive the model that produced them (a reload frees it while results
 * are still on their way to the camera threads): each distinct name is interned once. */
typedef struct name_ent {
    struct name_ent *next;
    char s[];
} name_ent;

struct it_cams {
    it_cams_params p;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    cam *live;            /* sorted by id */
    cam *dead;            /* removed, threads ending */
    int n;
    int stop;
    pthread_t ctl;
    int ctl_started;
    int step;
    double p95;
    double last_raise, calm_since;
    /* totals the controller turns into rates */
    atomic_ullong submitted, lost;
    struct { double t; uint64_t submitted, lost; } hist[HIST];
    int hist_pos, hist_n;
    pthread_mutex_t names_mu;
    name_ent *names[NAME_BUCKETS];
};

static const char *intern(it_cams *cs, const char *s) {
    if (!s) return "";
    uint32_t h = 2166136261u;
    for (const char *p = s; *p; p++) h = (h ^ (uint8_t)*p) * 16777619u;
    h %= NAME_BUCKETS;
    pthread_mutex_lock(&cs->names_mu);
    name_ent *e = cs->names[h];
    while (e && strcmp(e->s, s)) e = e->next;
    if (!e) {
        size_t n = strlen(s);
        e = malloc(sizeof *e + n + 1);
        if (e) {
            memcpy(e->s, s, n + 1);
            e->next = cs->names[h];
            cs->names[h] = e;
        }
    }
    pthread_mutex_unlock(&cs->names_mu);
    return e ? e->s : "";
}

/* ---- levels ---- */

static int level_for(int step, int prio) {
    int base;
    switch (prio) {
    case IT_CAM_LOW: base = 0; break;
    case IT_CAM_NORMAL: base = 3; break;
    case IT_CAM_HIGH: base = 6; break;
    default: return 0; /* critical: never */
    }
    int l = step - base;
    return l < 0 ? 0 : l > 3 ? 3 : l;
}

static double level_factor(int level) { return level <= 0 ? 1.0 : level == 1 ? 0.5 : 0.25; }

static double target_fps(cam *c) { return c->def.detect.fps * level_factor(atomic_load(&c->shed_level)); }

static int sched_prio(int cam_prio) {
    switch (cam_prio) {
    case IT_CAM_CRITICAL: return IT_SCHED_URGENT;
    case IT_CAM_LOW: return IT_SCHED_BATCH;
    default: return IT_SCHED_NORMAL;
    }
}

/* ---- events ---- */

static void publish(it_cams *cs, const char *camera, const char *type, json_t *data) {
    if (!data) return;
    if (cs->p.bus) it_bus_publish_json(cs->p.bus, camera, type, data, NULL);
    json_decref(data);
}

/* tids[i]: the track detection i feeds, or 0 (none: a low score, or a track not yet
 * confirmed), shown as null. tids may be NULL. */
static json_t *dets_json(const itscam_detection *d, int n, const int64_t *tids) {
    json_t *a = json_array();
    for (int i = 0; a && i < n; i++) {
        json_t *o = json_pack("{s:i,s:s,s:f,s:[f,f,f,f]}", "class_id", d[i].class_id, "class_name",
                              d[i].class_name ? d[i].class_name : "", "score", round(d[i].score * 1e4) / 1e4, "box",
                              round(d[i].box[0] * 10) / 10, round(d[i].box[1] * 10) / 10, round(d[i].box[2] * 10) / 10,
                              round(d[i].box[3] * 10) / 10);
        if (!o) continue;
        json_object_set_new(o, "track_id", tids && tids[i] > 0 ? json_integer((json_int_t)tids[i]) : json_null());
        json_array_append_new(a, o);
    }
    return a;
}

/* Run the camera's tracker on a detected frame; ids land in c->tids (parallel to d).
 * NULL when tracking is unavailable (out of memory, or the tracker refused the frame:
 * logged once, the detections still flow). */
static const int64_t *track_frame(cam *c, const itscam_detection *d, int n) {
    if (!c->trk) return NULL;
    if (n > IT_TRACK_MAX_DETS) n = IT_TRACK_MAX_DETS;
    if (n > c->tcap) {
        int cap = n < 64 ? 64 : n;
        it_track_det *td = it_realloc(c->tdets, sizeof *td * (size_t)cap);
        if (td) c->tdets = td;
        int64_t *ti = it_realloc(c->tids, sizeof *ti * (size_t)cap);
        if (ti) c->tids = ti;
        if (!td || !ti) return NULL;
        c->tcap = cap;
    }
    for (int i = 0; i < n; i++) {
        memcpy(c->tdets[i].box, d[i].box, sizeof d[i].box);
        c->tdets[i].score = d[i].score;
        c->tdets[i].class_id = d[i].class_id;
        c->tids[i] = 0;
    }
    int k = it_tracker_update(c->trk, c->tdets, n, c->tout, IT_TRACK_MAX_TRACKS);
    if (k < 0) {
        it_log(ITSCAM_LOG_WARN, "camera %s: tracking off: %s", c->def.id, itscam_last_error());
        it_tracker_free(c->trk);
        c->trk = NULL;
        return NULL;
    }
    if (k > IT_TRACK_MAX_TRACKS) k = IT_TRACK_MAX_TRACKS;
    c->n_tout = k;
    for (int i = 0; i < k; i++)
        if (c->tout[i].det_index >= 0 && c->tout[i].det_index < n) c->tids[c->tout[i].det_index] = c->tout[i].track_id;
    return c->tids;
}

/* A camera-level event: through the camera's event path (stored, with an id) when it has
 * one, else live on the bus. */
static void camera_event(cam *c, const char *type, json_t *details) {
    if (c->ev) it_cam_events_emit(c->ev, type, wall_ms() / 1e3, details);
    else publish(c->owner, c->def.id, type, details);
}

static void publish_state(cam *c, const it_source_info *prev, const it_source_info *now) {
    json_t *o = json_pack("{s:s,s:s,s:s,s:s}", "state", it_source_state_name(now->state), "previous",
                          it_source_state_name(prev->state), "reason", it_source_reason_name(now->reason), "error",
                          now->last_error);
    camera_event(c, "camera_state", o);
}

/* ---- the camera thread ---- */

static void job_done(it_sched_job *j, void *arg) {
    cam_job *cj = arg;
    cam *c = cj->c;
    /* Keep the names valid past the model (see intern) while still on the worker. */
    for (int i = 0; i < cj->sj.res.count; i++)
        cj->sj.res.dets[i].class_name = intern(c->owner, cj->sj.res.dets[i].class_name);
    pthread_mutex_lock(&c->mu);
    if (j->outcome == IT_SCHED_DONE) c->last_served = it_now_ms();
    c->done_q[c->n_done++] = cj->buf;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void on_source(void *arg) {
    cam *c = arg;
    pthread_mutex_lock(&c->mu);
    c->kick = 1;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void record_latency(cam *c, double lat) {
    /* under c->mu */
    c->lat_t[c->lat_pos] = it_now_ms();
    c->lat_v[c->lat_pos] = lat;
    c->lat_pos = (c->lat_pos + 1) % LAT_RING;
    if (c->lat_n < LAT_RING) c->lat_n++;
}

/* A detected frame (from the model or the result cache): statistics and sinks. */
static void deliver(cam *c, const it_image *img, const itscam_detection *d, int n, int64_t index,
                    double captured_at, int cached) {
    it_cams *cs = c->owner;
    double lat = wall_ms() - captured_at;
    if (lat < 0) lat = 0;
    pthread_mutex_lock(&c->mu);
    c->detected++;
    if (cached) c->cache_hits++;
    record_latency(c, lat);
    pthread_mutex_unlock(&c->mu);
    if (cs->p.observer.frame_done) cs->p.observer.frame_done(cs->p.observer.ctx, c->def.id, lat);
    /* After the latency is taken: tracking is the camera's work, not the model's. */
    const int64_t *tids = track_frame(c, d, n);
    if (tids && c->ev) it_cam_events_frame(c->ev, img, d, n, c->tout, c->n_tout, captured_at / 1e3);
    if (cs->p.frames) it_frames_put(cs->p.frames, c->def.id, img, d, tids, n, index, captured_at / 1e3);
    if (cs->p.bus) {
        json_t *o = json_pack("{s:s,s:I,s:f,s:f,s:i,s:i,s:b,s:o}", "camera", c->def.id, "frame", (json_int_t)index,
                              "captured_at", captured_at / 1e3, "latency_ms", round(lat * 100) / 100, "width",
                              img->width, "height", img->height, "cached", cached, "detections", dets_json(d, n, tids));
        publish(cs, c->def.id, "detections", o);
    }
}

static void finish_job(cam *c, int b) {
    cam_job *cj = &c->jobs[b];
    it_sched_job *j = &cj->sj;
    it_cams *cs = c->owner;
    switch (j->outcome) {
    case IT_SCHED_DONE:
        deliver(c, &c->buf[b], j->res.dets, j->res.count, cj->index, cj->captured_at, 0);
        if (cs->p.result_cache) {
            /* Keep this result for a frame identical to this one. */
            itscam_detection *keep = j->res.count ? it_malloc(sizeof *keep * (size_t)j->res.count) : NULL;
            if (keep || !j->res.count) {
                if (j->res.count) memcpy(keep, j->res.dets, sizeof *keep * (size_t)j->res.count);
                it_free(c->last_dets);
                c->last_dets = keep;
                c->last_n = j->res.count;
                memcpy(c->last_thumb, cj->thumb, (size_t)cj->tw * cj->th);
                c->last_tw = cj->tw;
                c->last_th = cj->th;
                c->last_w = c->buf[b].width;
                c->last_h = c->buf[b].height;
                c->have_last = 1;
            }
        }
        break;
    case IT_SCHED_EXPIRED:
    case IT_SCHED_REPLACED:
        pthread_mutex_lock(&c->mu);
        c->stale++;
        pthread_mutex_unlock(&c->mu);
        atomic_fetch_add(&cs->lost, 1);
        break;
    case IT_SCHED_QUEUE_FULL:
        pthread_mutex_lock(&c->mu);
        c->queue_full++;
        pthread_mutex_unlock(&c->mu);
        atomic_fetch_add(&cs->lost, 1);
        break;
    default: {
        pthread_mutex_lock(&c->mu);
        c->failed++;
        pthread_mutex_unlock(&c->mu);
        double now = it_now_ms();
        if (j->outcome == IT_SCHED_FAILED && now - c->fail_logged > 60e3) {
            c->fail_logged = now;
            it_log(ITSCAM_LOG_WARN, "camera %s: detection failed: %s", c->def.id, j->message);
        }
        break;
    }
    }
    itscam_result_clear(&j->res);
    if (cj->token && cs->p.infer.release) cs->p.infer.release(cs->p.infer.ctx, cj->token);
    cj->token = NULL;
    pthread_mutex_lock(&c->mu);
    c->busy[b] = 0;
    c->outstanding--;
    pthread_mutex_unlock(&c->mu);
}

static void submit_frame(cam *c, int b, const it_frame_meta *meta) {
    it_cams *cs = c->owner;
    it_image *img = &c->buf[b];
    cam_job *cj = &c->jobs[b];
    memset(cj, 0, sizeof *cj);
    cj->c = c;
    cj->buf = b;
    cj->index = meta->index;
    cj->captured_at = meta->captured_at;
    pthread_mutex_lock(&c->mu);
    uint64_t taken = ++c->taken;
    pthread_mutex_unlock(&c->mu);

    /* Quality on every Nth frame; its cost stays negligible (a 160-pixel grey copy). */
    if (cs->p.quality_every > 0 && (taken - 1) % (uint64_t)cs->p.quality_every == 0) {
        it_quality q;
        it_quality_measure(&c->qs, img, it_now_ms(), &cs->p.quality, &q);
        pthread_mutex_lock(&c->mu);
        int was = c->q.degraded;
        c->q = q;
        pthread_mutex_unlock(&c->mu);
        if (q.degraded != was)
            camera_event(c, "quality_degraded",
                         json_pack("{s:b,s:s,s:f}", "degraded", q.degraded, "reason", q.reason, "score", q.score));
    }
    if (cs->p.result_cache) {
        /* "Identical" within what re-encoding a still picture leaves: no box-averaged grey
         * pixel moved by more than 2 levels. A vehicle entering moves dozens of them. */
        it_frame_thumb(img, cj->thumb, &cj->tw, &cj->th);
        if (c->have_last && img->width == c->last_w && img->height == c->last_h && cj->tw == c->last_tw &&
            cj->th == c->last_th && it_thumb_maxdiff(cj->thumb, c->last_thumb, cj->tw * cj->th) <= 2) {
            deliver(c, img, c->last_dets, c->last_n, meta->index, meta->captured_at, 1);
            pthread_mutex_lock(&c->mu);
            c->busy[b] = 0;
            c->outstanding--;
            pthread_mutex_unlock(&c->mu);
            return;
        }
    }

    it_sched_job *j = &cj->sj;
    j->img = (itscam_image){ .data = img->data, .width = img->width, .height = img->height, .stride = img->stride,
                             .format = ITSCAM_PIX_BGR8 };
    /* The scheduler's template holds the model's defaults; a camera only narrows them. */
    j->params = cs->p.detect_defaults;
    if (c->def.detect.conf >= 0) j->params.conf = c->def.detect.conf;
    if (c->def.detect.n_classes > 0) {
        memcpy(j->classes, c->def.detect.classes, sizeof(int) * (size_t)c->def.detect.n_classes);
        j->params.classes = j->classes;
        j->params.num_classes_filter = c->def.detect.n_classes;
    }
    j->want_dets = 1;
    j->prio = sched_prio(c->def.priority);
    /* Stale. A queued frame is normally replaced by the camera's next frame one detect
     * interval later (keep_newest: it keeps its place in the queue, so cameras of one
     * level are served in turn); the deadline, 1.5 intervals after submission, catches
     * a frame that no newer frame follows. Both count as stale. The deadline counts from
     * submission, not capture, so a camera whose decoder is slower (B-frames, a larger
     * picture) is not dropped more often than its peers. */
    j->deadline_ms = it_now_ms() + 1.5e3 / target_fps(c);
    snprintf(j->source, sizeof j->source, "cam:%s", c->def.id);
    j->keep_newest = 1;
    /* A frame never waits for company: at 5 fps a camera's next frame is 200 ms away, and
     * waiting for other cameras' frames cost p95 148 ms against 43 ms at 24 cameras on 2
     * cores, for the same throughput. Frames still batch when they queue behind a run. */
    j->no_wait = 1;
    /* Least recently served cameras first (sched.h). With a frame of this camera still in
     * the scheduler (running, or queued and about to be replaced: a replacement keeps
     * its key) the camera is being served now, so it queues behind everyone. */
    pthread_mutex_lock(&c->mu);
    j->order_ms = c->outstanding > 1 ? 0 : c->last_served;
    pthread_mutex_unlock(&c->mu);
    j->done = job_done;
    j->done_arg = cj;
    const char *model = c->def.detect.model;
    if (atomic_load(&c->shed_level) >= 3 && c->def.detect.fallback_model[0]) model = c->def.detect.fallback_model;
    atomic_fetch_add(&cs->submitted, 1);
    pthread_mutex_lock(&c->mu);
    c->submitted++;
    pthread_mutex_unlock(&c->mu);
    it_sched_submit_status st = cs->p.infer.submit(cs->p.infer.ctx, model, j, &cj->token);
    if (st != IT_SCHED_QUEUED) finish_job(c, b);
}

/* What the decoder may leave out. `auto` skips non-reference frames while the camera's
 * target fps (after shedding) is at most half the stream's: the frames the detector
 * would never see then cost no decoding. Re-checked every second, so shedding and a
 * stream whose rate becomes known take effect. */
static void apply_skip(cam *c, double stream_fps) {
    it_skip_mode m = IT_SKIP_NONE;
    switch (c->def.skip) {
    case IT_CAM_SKIP_NONE: m = IT_SKIP_NONE; break;
    case IT_CAM_SKIP_NONREF: m = IT_SKIP_NONREF; break;
    case IT_CAM_SKIP_KEYFRAMES: m = IT_SKIP_KEYFRAMES; break;
    default: m = stream_fps > 0 && target_fps(c) * 2 <= stream_fps ? IT_SKIP_NONREF : IT_SKIP_NONE; break;
    }
    if ((int)m != c->skip_applied) {
        it_source_set_skip(c->src, m);
        c->skip_applied = (int)m;
    }
}

static void sample_counters(cam *c) {
    it_source_info si;
    memset(&si, 0, sizeof si);
    if (c->src) it_source_state(c->src, &si);
    pthread_mutex_lock(&c->mu);
    double now = it_now_ms();
    int last = (c->hist_pos + HIST - 1) % HIST;
    if (!c->hist_n || now - c->hist[last].t >= 1000) {
        c->hist[c->hist_pos] = (cam_sample){ .t = now, .decoded = si.decoded, .detected = c->detected, .taken = c->taken,
                                             .packets = si.packets };
        c->hist_pos = (c->hist_pos + 1) % HIST;
        if (c->hist_n < HIST) c->hist_n++;
    }
    it_source_info prev = c->si;
    c->si = si;
    pthread_mutex_unlock(&c->mu);
    if (c->src && (prev.state != si.state)) publish_state(c, &prev, &si);
    if (c->src) apply_skip(c, si.stream_fps);
}

static int free_buf(cam *c) {
    for (int b = 0; b < CAM_BUFS; b++)
        if (!c->busy[b]) return b;
    return -1;
}

static void *cam_main(void *arg) {
    cam *c = arg;
    double next_due = 0, next_sample = 0;
    int pending = 0;
    for (;;) {
        pthread_mutex_lock(&c->mu);
        for (;;) {
            if (c->kick) {
                pending = 1;
                c->kick = 0;
            }
            double now = it_now_ms();
            if (c->n_done || (c->stop && !c->outstanding) || now >= next_sample) break;
            if (!c->stop && pending && now >= next_due && free_buf(c) >= 0) break;
            double until = next_sample;
            if (!c->stop && pending && next_due < until && free_buf(c) >= 0) until = next_due;
            struct timespec ts;
            it_deadline_in(&ts, until - now);
            pthread_cond_timedwait(&c->cv, &c->mu, &ts);
        }
        int done[CAM_BUFS], nd = c->n_done;
        memcpy(done, c->done_q, sizeof(int) * (size_t)nd);
        c->n_done = 0;
        int stop = c->stop, outstanding = c->outstanding;
        int b = free_buf(c);
        if (!stop && pending && it_now_ms() >= next_due && b >= 0) {
            c->busy[b] = 1;
            c->outstanding++;
        } else {
            b = -1;
        }
        pthread_mutex_unlock(&c->mu);

        for (int i = 0; i < nd; i++) finish_job(c, done[i]);
        if (stop && outstanding == 0 && nd == 0) break;
        double now = it_now_ms();
        if (now >= next_sample) {
            sample_counters(c);
            next_sample = now + 1000;
        }
        if (b >= 0) {
            it_frame_meta meta;
            if (it_source_take(c->src, &c->buf[b], &meta, 0)) {
                pending = 0;
                double interval = 1e3 / target_fps(c);
                /* Keep the cadence, but never bank more than one interval of credit. */
                next_due = next_due + interval < now ? now + interval : next_due + interval;
                submit_frame(c, b, &meta);
            } else {
                pending = 0;
                pthread_mutex_lock(&c->mu);
                c->busy[b] = 0;
                c->outstanding--;
                pthread_mutex_unlock(&c->mu);
            }
        }
    }
    it_source_close(c->src);
    c->src = NULL;
    pthread_mutex_lock(&c->mu);
    c->exited = 1;
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

static void cam_free(cam *c) {
    if (!c) return;
    if (c->th_started) pthread_join(c->th, NULL);
    it_source_close(c->src);
    for (int b = 0; b < CAM_BUFS; b++) it_image_free(&c->buf[b]);
    it_free(c->last_dets);
    /* After the thread: its last tracks end here (track_end, zone_exit). */
    it_cam_events_free(c->ev, wall_ms() / 1e3);
    it_tracker_free(c->trk);
    it_free(c->tout);
    it_free(c->tdets);
    it_free(c->tids);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c);
}

static itscam_status cam_start(it_cams *cs, const it_camdef *def, cam **out) {
    *out = NULL;
    cam *c = calloc(1, sizeof *c);
    if (!c) return it_err(ITSCAM_ERR_NOMEM, "out of memory for camera %s", def->id);
    c->owner = cs;
    c->def = *def;
    pthread_mutex_init(&c->mu, NULL);
    it_cond_init_monotonic(&c->cv);
    atomic_init(&c->shed_level, level_for(cs->step, def->priority));
    c->skip_applied = -1;
    /* ByteTrack counts its buffer in frames at a frame rate: the camera's detect fps, so
     * a lost track is kept track_buffer / 30 seconds whatever the rate. */
    it_track_params tp = it_camdef_track(def, &cs->p.track);
    tp.frame_rate = def->detect.fps < 1 ? 1.0f : (float)def->detect.fps;
    c->tout = it_malloc(sizeof *c->tout * IT_TRACK_MAX_TRACKS);
    c->trk = c->tout ? it_tracker_new(&tp) : NULL;
    if (!c->trk) it_log(ITSCAM_LOG_WARN, "camera %s: no tracker: %s", def->id, itscam_last_error());
    it_cam_events_params ep = cs->p.events;
    ep.bus = cs->p.bus;
    c->ev = it_cam_events_new(&ep, def);
    c->si.state = def->enabled ? IT_SOURCE_STARTING : IT_SOURCE_DISABLED;
    c->si.state_since = wall_ms();
    if (def->enabled) {
        it_source_params sp = it_source_default_params();
        sp.url = def->url;
        sp.transport = def->transport;
        sp.loop = def->loop;
        sp.realtime = def->realtime;
        sp.stall_timeout_s = cs->p.source_stall_s > 0 ? cs->p.source_stall_s : def->stall_timeout_s;
        sp.hwaccel = def->hwaccel;
        sp.decode_threads = cs->p.decode_threads > 0 ? cs->p.decode_threads : 1;
        sp.notify = on_source;
        sp.notify_arg = c;
        itscam_status st = it_source_open(&sp, &c->src);
        if (st != ITSCAM_OK) {
            cam_free(c);
            return st;
        }
        if (pthread_create(&c->th, NULL, cam_main, c) != 0) {
            cam_free(c);
            return it_err(ITSCAM_ERR_NOMEM, "cannot start the thread of camera %s", def->id);
        }
        c->th_started = 1;
    }
    *out = c;
    return ITSCAM_OK;
}

/* Stop a camera's thread without waiting (it ends once its jobs are back). */
static void cam_stop(cam *c) {
    pthread_mutex_lock(&c->mu);
    c->stop = 1;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static int cam_exited(cam *c) {
    pthread_mutex_lock(&c->mu);
    int e = !c->th_started || c->exited;
    pthread_mutex_unlock(&c->mu);
    return e;
}

/* Join removed cameras whose threads have ended (under cs->mu). */
static void reap(it_cams *cs) {
    for (cam **pp = &cs->dead; *pp;) {
        cam *c = *pp;
        if (cam_exited(c)) {
            *pp = c->next;
            cam_free(c);
        } else {
            pp = &c->next;
        }
    }
}

/* ---- the controller ---- */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void apply_step(it_cams *cs, int step, const char *why, double p95) {
    /* under cs->mu */
    int old = cs->step;
    cs->step = step;
    json_t *changed = json_array();
    for (cam *c = cs->live; c; c = c->next) {
        int l = level_for(step, c->def.priority);
        int was = atomic_exchange(&c->shed_level, l);
        if (was != l && changed)
            json_array_append_new(changed, json_pack("{s:s,s:i,s:i}", "camera", c->def.id, "from", was, "to", l));
        /* Each camera whose level changed gets its own (stored) shed event; the global
         * one below stays live only: it belongs to no camera. */
        if (was != l && c->ev)
            it_cam_events_emit(c->ev, "shed", wall_ms() / 1e3,
                               json_pack("{s:i,s:i,s:i,s:s}", "level", l, "previous", was, "step", step, "reason", why));
    }
    it_log(ITSCAM_LOG_INFO, "load shedding: step %d -> %d (%s; p95 %.1f ms, SLA %.0f ms)", old, step, why, p95,
           cs->p.sla_ms);
    publish(cs, "", "shed", json_pack("{s:i,s:i,s:s,s:f,s:f,s:o}", "step", step, "previous", old, "reason", why,
                                      "p95_ms", round(p95 * 10) / 10, "sla_ms", cs->p.sla_ms, "cameras",
                                      changed ? changed : json_array()));
    if (cs->p.observer.shed_change) cs->p.observer.shed_change(cs->p.observer.ctx, step, why);
}

static void control_tick(it_cams *cs) {
    /* under cs->mu */
    double now = it_now_ms(), win = cs->p.window_s * 1e3;
    size_t cap = 0, n = 0;
    for (cam *c = cs->live; c; c = c->next) cap += LAT_RING;
    double *v = cap ? malloc(sizeof *v * cap) : NULL;
    for (cam *c = cs->live; v && c; c = c->next) {
        pthread_mutex_lock(&c->mu);
        for (int i = 0; i < c->lat_n; i++)
            if (now - c->lat_t[i] <= win) v[n++] = c->lat_v[i];
        pthread_mutex_unlock(&c->mu);
    }
    double p95 = 0;
    if (n) {
        qsort(v, n, sizeof *v, cmp_double);
        p95 = it_percentile(v, n, 95);
    }
    free(v);
    cs->p95 = p95;
    /* Lost frames over the window: the queues are growing. */
    uint64_t sub = atomic_load(&cs->submitted), lost = atomic_load(&cs->lost);
    cs->hist[cs->hist_pos].t = now;
    cs->hist[cs->hist_pos].submitted = sub;
    cs->hist[cs->hist_pos].lost = lost;
    cs->hist_pos = (cs->hist_pos + 1) % HIST;
    if (cs->hist_n < HIST) cs->hist_n++;
    uint64_t sub0 = sub, lost0 = lost;
    for (int i = 0; i < cs->hist_n; i++) {
        int k = (cs->hist_pos + HIST - 1 - i) % HIST;
        if (now - cs->hist[k].t > win) break;
        sub0 = cs->hist[k].submitted;
        lost0 = cs->hist[k].lost;
    }
    double lost_ratio = sub > sub0 ? (double)(lost - lost0) / (double)(sub - sub0) : 0;
    if (!cs->p.shed) return;
    int over = (n >= 5 && p95 > cs->p.sla_ms) || (sub - sub0 >= 20 && lost_ratio > 0.02);
    int calm = p95 <= cs->p.release_ratio * cs->p.sla_ms && lost == lost0;
    if (over) {
        cs->calm_since = 0;
        if (cs->step < SHED_MAX && now - cs->last_raise >= cs->p.raise_every_s * 1e3) {
            char why[96];
            if (n >= 5 && p95 > cs->p.sla_ms) snprintf(why, sizeof why, "p95 over the SLA");
            else snprintf(why, sizeof why, "%.0f%% of frames dropped stale or queue full", lost_ratio * 100);
            cs->last_raise = now;
            apply_step(cs, cs->step + 1, why, p95);
        }
    } else if (calm && cs->step > 0) {
        if (cs->calm_since == 0) cs->calm_since = now;
        else if (now - cs->calm_since >= cs->p.release_after_s * 1e3) {
            cs->calm_since = now;
            apply_step(cs, cs->step - 1, "load fell", p95);
        }
    } else {
        cs->calm_since = 0;
    }
}

static void *ctl_main(void *arg) {
    it_cams *cs = arg;
    pthread_mutex_lock(&cs->mu);
    while (!cs->stop) {
        struct timespec ts;
        it_deadline_in(&ts, 1000);
        pthread_cond_timedwait(&cs->cv, &cs->mu, &ts);
        if (cs->stop) break;
        control_tick(cs);
        reap(cs);
    }
    pthread_mutex_unlock(&cs->mu);
    return NULL;
}

/* ---- the list ---- */

itscam_status it_cams_new(const it_cams_params *p, it_cams **out) {
    *out = NULL;
    if (!p || !p->infer.submit) return it_err(ITSCAM_ERR_INVALID_ARG, "the camera pipeline needs a way to run models");
    it_cams *cs = calloc(1, sizeof *cs);
    if (!cs) return it_err(ITSCAM_ERR_NOMEM, "out of memory");
    cs->p = *p;
    if (cs->p.sla_ms <= 0) cs->p.sla_ms = 100;
    if (cs->p.window_s <= 0) cs->p.window_s = 5;
    pthread_mutex_init(&cs->mu, NULL);
    pthread_mutex_init(&cs->names_mu, NULL);
    it_cond_init_monotonic(&cs->cv);
    if (pthread_create(&cs->ctl, NULL, ctl_main, cs) != 0) {
        pthread_mutex_destroy(&cs->mu);
        pthread_mutex_destroy(&cs->names_mu);
        pthread_cond_destroy(&cs->cv);
        free(cs);
        return it_err(ITSCAM_ERR_NOMEM, "cannot start the camera controller thread");
    }
    cs->ctl_started = 1;
    *out = cs;
    return ITSCAM_OK;
}

void it_cams_free(it_cams *cs) {
    if (!cs) return;
    pthread_mutex_lock(&cs->mu);
    cs->stop = 1;
    pthread_cond_broadcast(&cs->cv);
    cam *all = cs->live;
    cs->live = NULL;
    pthread_mutex_unlock(&cs->mu);
    if (cs->ctl_started) pthread_join(cs->ctl, NULL);
    for (cam *c = all; c; c = c->next) cam_stop(c);
    while (all) {
        cam *n = all->next;
        if (cs->p.frames) it_frames_remove_camera(cs->p.frames, all->def.id);
        cam_free(all);
        all = n;
    }
    while (cs->dead) {
        cam *n = cs->dead->next;
        cam_free(cs->dead);
        cs->dead = n;
    }
    for (int i = 0; i < NAME_BUCKETS; i++)
        while (cs->names[i]) {
            name_ent *n = cs->names[i]->next;
            free(cs->names[i]);
            cs->names[i] = n;
        }
    pthread_mutex_destroy(&cs->mu);
    pthread_mutex_destroy(&cs->names_mu);
    pthread_cond_destroy(&cs->cv);
    free(cs);
}

static cam **find(it_cams *cs, const char *id) {
    cam **pp = &cs->live;
    while (*pp && strcmp((*pp)->def.id, id) < 0) pp = &(*pp)->next;
    return pp;
}

itscam_status it_cams_put(it_cams *cs, const it_camdef *def) {
    if (!cs || !def || !it_cam_id_valid(def->id)) return it_err(ITSCAM_ERR_INVALID_ARG, "a camera needs a valid id");
    if (!def->url[0]) return it_err(ITSCAM_ERR_INVALID_ARG, "camera %s: no url", def->id);
    if (!(def->detect.fps > 0)) return it_err(ITSCAM_ERR_INVALID_ARG, "camera %s: detect.fps must be positive", def->id);
    pthread_mutex_lock(&cs->mu);
    cam **pp = find(cs, def->id);
    int replace = *pp && !strcmp((*pp)->def.id, def->id);
    if (!replace && cs->n >= IT_CAM_MAX) {
        pthread_mutex_unlock(&cs->mu);
        return it_err(ITSCAM_ERR_INVALID_ARG, "%d cameras are configured, the most allowed", IT_CAM_MAX);
    }
    cam *c;
    itscam_status st = cam_start(cs, def, &c);
    if (st != ITSCAM_OK) {
        pthread_mutex_unlock(&cs->mu);
        return st;
    }
    if (replace) {
        cam *old = *pp;
        c->next = old->next;
        cam_stop(old);
        old->next = cs->dead;
        cs->dead = old;
    } else {
        c->next = *pp;
        cs->n++;
        if (cs->p.frames) it_frames_add_camera(cs->p.frames, def->id, NULL, 0);
    }
    *pp = c;
    reap(cs);
    pthread_mutex_unlock(&cs->mu);
    char u[IT_CAM_URL_MAX];
    it_log(ITSCAM_LOG_INFO, "camera %s %s: %s, %s priority, %.3g detect fps", def->id, replace ? "changed" : "added",
           it_url_redact(def->url, u, sizeof u), it_cam_prio_name(def->priority), def->detect.fps);
    return ITSCAM_OK;
}

itscam_status it_cams_remove(it_cams *cs, const char *id) {
    if (!cs || !id) return it_err(ITSCAM_ERR_INVALID_ARG, "no camera id");
    pthread_mutex_lock(&cs->mu);
    cam **pp = find(cs, id);
    if (!*pp || strcmp((*pp)->def.id, id)) {
        pthread_mutex_unlock(&cs->mu);
        return it_err(ITSCAM_ERR_NOT_FOUND, "no camera '%s'", id);
    }
    cam *c = *pp;
    *pp = c->next;
    cs->n--;
    cam_stop(c);
    c->next = cs->dead;
    cs->dead = c;
    reap(cs);
    pthread_mutex_unlock(&cs->mu);
    if (cs->p.frames) it_frames_remove_camera(cs->p.frames, id);
    it_log(ITSCAM_LOG_INFO, "camera %s removed", id);
    return ITSCAM_OK;
}

int it_cams_get(it_cams *cs, const char *id, it_camdef *out) {
    pthread_mutex_lock(&cs->mu);
    cam **pp = find(cs, id);
    int ok = *pp && !strcmp((*pp)->def.id, id);
    if (ok) *out = (*pp)->def;
    pthread_mutex_unlock(&cs->mu);
    return ok ? 0 : -1;
}

int it_cams_count(it_cams *cs) {
    pthread_mutex_lock(&cs->mu);
    int n = cs->n;
    pthread_mutex_unlock(&cs->mu);
    return n;
}

int it_cams_shed_step(it_cams *cs, double *p95_ms) {
    pthread_mutex_lock(&cs->mu);
    int s = cs->step;
    if (p95_ms) *p95_ms = cs->p95;
    pthread_mutex_unlock(&cs->mu);
    return s;
}

/* Rates over the window from the per-second samples (under c->mu). */
static double rate(const cam *c, double win, size_t off) {
    if (c->hist_n < 2) return 0;
    int last = (c->hist_pos + HIST - 1) % HIST, first = last;
    for (int i = 1; i < c->hist_n; i++) {
        int k = (c->hist_pos + HIST - 1 - i) % HIST;
        if (c->hist[last].t - c->hist[k].t > win) break;
        first = k;
    }
    double dt = c->hist[last].t - c->hist[first].t;
    if (dt <= 0) return 0;
    uint64_t a = *(const uint64_t *)((const char *)&c->hist[first] + off);
    uint64_t b = *(const uint64_t *)((const char *)&c->hist[last] + off);
    return (double)(b - a) * 1e3 / dt;
}

static void fill_info(it_cams *cs, cam *c, it_cam_info *o) {
    memset(o, 0, sizeof *o);
    pthread_mutex_lock(&c->mu);
    o->def = c->def;
    /* The source's own state, read now: the camera thread's copy is up to a second old.
     * Safe under cs->mu: a listed camera's thread never closes its source. */
    it_source_info fresh;
    const it_source_info *si = &c->si;
    if (c->src) {
        it_source_state(c->src, &fresh);
        si = &fresh;
    }
    o->state = si->state;
    o->state_since = si->state_since;
    o->reason = si->reason;
    it_url_redact(si->last_error, o->last_error, sizeof o->last_error);
    o->reconnects = si->reconnects;
    o->retry_at = si->retry_at;
    o->retry_wait_ms = si->retry_wait_ms;
    o->decoded = si->decoded;
    o->packets = si->packets;
    /* Every frame the camera sent is detected, dropped for a reason, or in flight:
     * skipped counts those never taken (not decoded, or replaced before the detect time). */
    o->skipped = si->packets > c->taken ? si->packets - c->taken : 0;
    o->width = si->width;
    o->height = si->height;
    o->stream_fps = si->stream_fps;
    o->detected = c->detected;
    o->stale = c->stale;
    o->queue_full = c->queue_full;
    o->failed = c->failed;
    o->cache_hits = c->cache_hits;
    o->quality = c->q;
    double win = cs->p.window_s * 1e3;
    o->fps_decoded = rate(c, win, offsetof(cam_sample, decoded));
    o->fps_detected = rate(c, win, offsetof(cam_sample, detected));
    o->fps_input = rate(c, win, offsetof(cam_sample, packets));
    double now = it_now_ms(), v[LAT_RING];
    size_t n = 0;
    for (int i = 0; i < c->lat_n; i++)
        if (now - c->lat_t[i] <= win) v[n++] = c->lat_v[i];
    pthread_mutex_unlock(&c->mu);
    if (c->ev) {
        it_cam_events_counts(c->ev, o->line_counts, o->zone_occupancy);
        it_cam_events_stats(c->ev, &o->events_emitted, &o->events_dropped, &o->snapshots);
    }
    o->shed_level = atomic_load(&c->shed_level);
    o->fps_target = c->def.enabled ? c->def.detect.fps * level_factor(o->shed_level) : 0;
    if (n) {
        qsort(v, n, sizeof *v, cmp_double);
        o->lat_p50 = it_percentile(v, n, 50);
        o->lat_p95 = it_percentile(v, n, 95);
        o->lat_p99 = it_percentile(v, n, 99);
    }
}

int it_cams_info(it_cams *cs, const char *id, it_cam_info *out) {
    pthread_mutex_lock(&cs->mu);
    cam **pp = find(cs, id);
    int ok = *pp && !strcmp((*pp)->def.id, id);
    if (ok) fill_info(cs, *pp, out);
    pthread_mutex_unlock(&cs->mu);
    return ok ? 0 : -1;
}

int it_cams_list(it_cams *cs, it_cam_info **out) {
    pthread_mutex_lock(&cs->mu);
    it_cam_info *a = it_calloc(cs->n ? (size_t)cs->n : 1, sizeof *a);
    int n = 0;
    for (cam *c = cs->live; a && c; c = c->next) fill_info(cs, c, &a[n++]);
    pthread_mutex_unlock(&cs->mu);
    *out = a;
    return a ? n : -1;
}

static double r2(double v) { return round(v * 100) / 100; }

json_t *it_cam_info_json(const it_cam_info *i) {
    char url[IT_CAM_URL_MAX];
    it_url_redact(i->def.url, url, sizeof url);
    json_t *def = it_camdef_to_json(&i->def, 1);
    json_t *o = json_pack(
        "{s:s,s:s,s:b,s:s,s:s,s:f,s:s,s:s,s:I,s:i,s:{s:f,s:f,s:f,s:f},"
        "s:{s:I,s:I,s:I,s:I,s:{s:I,s:I,s:I},s:I}}",
        "id", i->def.id, "url", url, "enabled", i->def.enabled, "priority", it_cam_prio_name(i->def.priority), "state",
        it_source_state_name(i->state), "state_since", i->state_since / 1e3, "last_error", i->last_error, "reason",
        it_source_reason_name(i->reason), "reconnects", (json_int_t)i->reconnects, "shed_level", i->shed_level, "fps",
        "input", r2(i->fps_input), "decoded", r2(i->fps_decoded), "detected", r2(i->fps_detected), "target",
        r2(i->fps_target), "frames", "input", (json_int_t)i->packets, "decoded", (json_int_t)i->decoded, "detected", (json_int_t)i->detected, "failed",
        (json_int_t)i->failed, "dropped", "skipped", (json_int_t)i->skipped, "stale", (json_int_t)i->stale,
        "queue_full", (json_int_t)i->queue_full, "cache_hits", (json_int_t)i->cache_hits);
    if (!o) {
        json_decref(def);
        return NULL;
    }
    json_object_set_new(o, "latency_ms",
                        json_pack("{s:f,s:f,s:f}", "p50", r2(i->lat_p50), "p95", r2(i->lat_p95), "p99", r2(i->lat_p99)));
    json_object_set_new(o, "quality",
                        json_pack("{s:f,s:f,s:f,s:f,s:b,s:b,s:s,s:f}", "score", r2(i->quality.score), "sharpness",
                                  r2(i->quality.sharpness), "brightness", r2(i->quality.brightness), "contrast",
                                  r2(i->quality.contrast), "frozen", i->quality.frozen, "degraded", i->quality.degraded,
                                  "reason", i->quality.reason, "cost_ms", round(i->quality.ms * 1e3) / 1e3));
    json_object_set_new(o, "backoff", json_pack("{s:f,s:f}", "retry_in_s",
                                                i->retry_at > 0 ? r2(fmax(0, i->retry_at - wall_ms()) / 1e3) : 0.0,
                                                "last_wait_s", r2(i->retry_wait_ms / 1e3)));
    json_object_set_new(o, "stream", json_pack("{s:i,s:i,s:f}", "width", i->width, "height", i->height, "fps",
                                               r2(i->stream_fps)));
    json_t *lines = json_array(), *zones = json_array();
    for (int l = 0; lines && l < i->def.n_lines && l < IT_CAM_MAX_LINES; l++)
        json_array_append_new(lines, json_pack("{s:s,s:I,s:I}", "id", i->def.lines[l].id, "a_to_b",
                                               (json_int_t)i->line_counts[l][0], "b_to_a",
                                               (json_int_t)i->line_counts[l][1]));
    for (int z = 0; zones && z < i->def.n_zones && z < IT_CAM_MAX_ZONES; z++)
        json_array_append_new(zones, json_pack("{s:s,s:i}", "id", i->def.zones[z].id, "occupancy", i->zone_occupancy[z]));
    json_object_set_new(o, "analytics", json_pack("{s:o*,s:o*,s:I,s:I,s:I}", "lines", lines, "zones", zones, "events",
                                                  (json_int_t)i->events_emitted, "events_dropped",
                                                  (json_int_t)i->events_dropped, "snapshots", (json_int_t)i->snapshots));
    if (def) json_object_set_new(o, "config", def);
    return o;
}
