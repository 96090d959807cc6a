/* One camera's events (see camevents.h). */
#include "pipeline/camevents.h"

#include "core/core.h"
#include "vision/draw.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define EV_CAP 512 /* events one frame can raise that are kept (the counts take all) */
#define N_EXTRA 3  /* camera-level types after the analytics ones (extra_types) */

struct it_cam_events {
    it_cam_events_params p;
    char storage_dir[1024];
    it_camdef def;
    it_analytics *an;
    int an_w, an_h, an_failed;
    double last_t;
    double next_occ;
    /* A class id's name, from the detections (interned by the pipeline, so they outlive
     * any model): events name their class even when the frame that ends a track has no
     * detection of it. */
    const char *names[IT_AN_MAX_CLASSES];
    it_an_event ev[EV_CAP];
    pthread_mutex_t mu; /* counts and stats */
    int64_t lines[IT_CAM_MAX_LINES][2];
    int zones[IT_CAM_MAX_ZONES];
    uint64_t emitted, dropped, snapshots;
    uint64_t by_type[IT_AN_EVENT_TYPES + N_EXTRA];
};

it_cam_events_params it_cam_events_default_params(void) {
    it_cam_events_params p;
    memset(&p, 0, sizeof p);
    p.track_events = 1;
    p.snapshot_quality = 80;
    p.occupancy_every_s = 10;
    return p;
}

/* Camera-level types that may keep a snapshot too, after the analytics ones. */
static const char *const extra_types[N_EXTRA] = { "camera_state", "quality_degraded", "shed" };

static int type_bit(const char *name) {
    for (int t = 0; t < IT_AN_EVENT_TYPES; t++)
        if (!strcmp(name, it_an_event_name((it_an_event_type)t))) return t;
    for (int i = 0; i < N_EXTRA; i++)
        if (!strcmp(name, extra_types[i])) return IT_AN_EVENT_TYPES + i;
    return -1;
}

int it_cam_events_types_mask(const char *list, uint32_t *mask, char *err, size_t errlen) {
    *mask = 0;
    const char *p = list ? list : "";
    while (*p) {
        size_t n = strcspn(p, ",");
        char name[40];
        while (n && *p == ' ') p++, n--;
        while (n && p[n - 1] == ' ') n--;
        if (n) {
            snprintf(name, sizeof name, "%.*s", (int)(n < sizeof name ? n : sizeof name - 1), p);
            int b = n < sizeof name ? type_bit(name) : -1;
            if (b < 0) {
                snprintf(err, errlen, "'%.*s' is not an event type (track_start, track_end, line_cross, wrong_way, "
                         "zone_enter, zone_exit, loitering, stopped_vehicle, congestion, speeding, camera_state, "
                         "quality_degraded, shed)", (int)(n > 40 ? 40 : n), p);
                return -1;
            }
            *mask |= 1u << b;
        }
        p += n;
        while (*p == ',' || *p == ' ') p++;
    }
    return 0;
}

it_cam_events *it_cam_events_new(const it_cam_events_params *p, const it_camdef *def) {
    it_cam_events *e = it_calloc(1, sizeof *e);
    if (!e) {
        it_err(ITSCAM_ERR_NOMEM, "camera %s: out of memory for its events", def->id);
        return NULL;
    }
    e->p = *p;
    if (p->storage_dir) snprintf(e->storage_dir, sizeof e->storage_dir, "%s", p->storage_dir);
    e->p.storage_dir = NULL; /* the copy above is the one used */
    e->def = *def;
    if (e->p.snapshot_quality < 1 || e->p.snapshot_quality > 100) e->p.snapshot_quality = 80;
    pthread_mutex_init(&e->mu, NULL);
    return e;
}

/* ---- where an event goes ---- */

static void deliver(it_cam_events *e, it_store_event *ev) {
    int dropped = 0;
    if (e->p.writer) {
        dropped = it_event_writer_push(e->p.writer, ev) != 0;
    } else if (e->p.sink) {
        e->p.sink(e->p.sink_arg, ev);
    } else if (e->p.bus) {
        size_t len = 0;
        char *txt = it_store_event_text(ev, &len); /* id 0: live only, never stored */
        if (txt) it_bus_publish(e->p.bus, ev->camera, ev->type, txt, len, NULL);
        free(txt);
    }
    int b = type_bit(ev->type);
    pthread_mutex_lock(&e->mu);
    e->emitted++;
    if (b >= 0) e->by_type[b]++;
    if (dropped) e->dropped++;
    pthread_mutex_unlock(&e->mu);
}

static void set_details(it_store_event *ev, json_t *d) {
    ev->details[0] = 0;
    if (!d) return;
    size_t need = json_dumpb(d, ev->details, sizeof ev->details - 1, JSON_COMPACT | JSON_REAL_PRECISION(7));
    if (need >= sizeof ev->details) need = 0; /* too long: dropped rather than cut */
    ev->details[need] = 0;
    json_decref(d);
}

void it_cam_events_emit(it_cam_events *e, const char *type, double t, json_t *details) {
    if (!e) {
        json_decref(details);
        return;
    }
    it_store_event ev;
    memset(&ev, 0, sizeof ev);
    snprintf(ev.camera, sizeof ev.camera, "%s", e->def.id);
    snprintf(ev.type, sizeof ev.type, "%s", type);
    ev.time = t;
    ev.class_id = -1;
    ev.score = -1;
    set_details(&ev, details ? details : json_object());
    deliver(e, &ev);
}

/* ---- snapshots ---- */

/* The frame as JPEG with the event's box drawn, at the path it_snapshot_path makes
 * (sinks/events.h: relative to the storage dir, which ev->snapshot then holds).
 * Failures are logged and leave no snapshot: the event itself matters more. */
static void snapshot(it_cam_events *e, const it_image *img, it_store_event *ev) {
    if (!e->storage_dir[0] || !img || !img->data) return;
    it_image copy = { 0 };
    if (it_image_alloc(&copy, img->width, img->height) != ITSCAM_OK) return;
    for (int y = 0; y < img->height; y++)
        memcpy(copy.data + (size_t)y * copy.stride, img->data + (size_t)y * img->stride, (size_t)img->width * 3);
    if (ev->has_box) {
        uint8_t red[3] = { 0, 0, 255 };
        it_draw_rect(&copy, (int)ev->box[0], (int)ev->box[1], (int)ev->box[2], (int)ev->box[3], red, 3);
    }
    uint8_t *jpg = NULL;
    size_t len = 0;
    itscam_status st = it_image_encode_jpeg(&copy, e->p.snapshot_quality, &jpg, &len);
    it_image_free(&copy);
    if (st != ITSCAM_OK) return;
    char rel[IT_EVENT_SNAPSHOT_MAX + 1] = "", full[1024 + IT_EVENT_SNAPSHOT_MAX + 2];
    int ok = it_snapshot_path(e->storage_dir, ev->camera, ev->type, ev->track_id, ev->time, rel, sizeof rel) == 0;
    int fd = -1;
    if (ok) {
        snprintf(full, sizeof full, "%s/%s", e->storage_dir, rel);
        fd = open(full, O_WRONLY | O_TRUNC | O_CLOEXEC);
        ok = fd >= 0;
    }
    for (size_t off = 0; ok && off < len;) {
        ssize_t w = write(fd, jpg + off, len - off);
        if (w <= 0) ok = 0;
        else off += (size_t)w;
    }
    if (fd >= 0 && close(fd)) ok = 0;
    it_free(jpg);
    if (!ok) {
        const char *why = fd >= 0 || errno ? strerror(errno) : itscam_last_error();
        if (rel[0]) unlink(full); /* the empty file it_snapshot_path reserved, or a partial one */
        it_log(ITSCAM_LOG_WARN, "camera %s: cannot write a snapshot: %s", ev->camera, why);
        return;
    }
    snprintf(ev->snapshot, sizeof ev->snapshot, "%s", rel);
    pthread_mutex_lock(&e->mu);
    e->snapshots++;
    pthread_mutex_unlock(&e->mu);
}

/* ---- analytics events ---- */

static json_t *details_of(const it_cam_events *e, const it_an_event *a) {
    const char *line = a->line >= 0 && a->line < e->def.n_lines ? e->def.lines[a->line].id : NULL;
    const char *zone = a->zone >= 0 && a->zone < e->def.n_zones ? e->def.zones[a->zone].id : NULL;
    json_t *d = json_object();
    if (!d) return NULL;
    if (line) json_object_set_new(d, "line", json_string(line));
    if (a->type == IT_AN_LINE_CROSS || a->type == IT_AN_WRONG_WAY)
        json_object_set_new(d, "direction", json_string(it_an_dir_name(a->direction)));
    if (zone) json_object_set_new(d, "zone", json_string(zone));
    switch (a->type) {
    case IT_AN_ZONE_EXIT:
    case IT_AN_LOITERING: json_object_set_new(d, "dwell_s", json_real(round(a->dwell_s * 1000) / 1000)); break;
    case IT_AN_STOPPED_VEHICLE: json_object_set_new(d, "stopped_s", json_real(round(a->dwell_s * 1000) / 1000)); break;
    case IT_AN_TRACK_END: json_object_set_new(d, "duration_s", json_real(round(a->dwell_s * 1000) / 1000)); break;
    case IT_AN_CONGESTION: json_object_set_new(d, "count", json_integer(a->count)); break;
    case IT_AN_SPEEDING: json_object_set_new(d, "limit_kmh", json_real(e->def.speed_limit_kmh)); break;
    default: break;
    }
    if (a->speed >= 0)
        json_object_set_new(d, e->def.has_calibration ? "speed_kmh" : "speed_px_s", json_real(round(a->speed * 10) / 10));
    return d;
}

static void analytics_event(it_cam_events *e, const it_image *img, const it_an_event *a) {
    if (!e->p.track_events && (a->type == IT_AN_TRACK_START || a->type == IT_AN_TRACK_END)) return;
    it_store_event ev;
    memset(&ev, 0, sizeof ev);
    snprintf(ev.camera, sizeof ev.camera, "%s", e->def.id);
    snprintf(ev.type, sizeof ev.type, "%s", it_an_event_name(a->type));
    ev.time = a->time;
    ev.track_id = a->track_id;
    ev.class_id = a->class_id;
    if (a->class_id >= 0 && a->class_id < IT_AN_MAX_CLASSES && e->names[a->class_id])
        snprintf(ev.class_name, sizeof ev.class_name, "%s", e->names[a->class_id]);
    ev.score = a->track_id > 0 ? round(a->score * 1e4) / 1e4 : -1;
    if (a->track_id > 0) {
        ev.has_box = 1;
        for (int k = 0; k < 4; k++) ev.box[k] = round(a->box[k] * 10) / 10;
    }
    set_details(&ev, details_of(e, a));
    if (e->p.snapshot_types & (1u << a->type)) snapshot(e, img, &ev);
    deliver(e, &ev);
}

static void sample_occupancy(it_cam_events *e, double t) {
    if (!e->p.writer || !(e->p.occupancy_every_s > 0) || !e->def.n_zones) return;
    if (t < e->next_occ) return;
    e->next_occ = t + e->p.occupancy_every_s;
    for (int z = 0; z < e->def.n_zones; z++) {
        it_event_writer_push_occupancy(e->p.writer, e->def.id, e->def.zones[z].id, "",
                                       t, it_analytics_zone_occupancy(e->an, z, -1));
        for (int k = 0; k < IT_AN_MAX_CLASSES; k++) {
            if (!e->names[k]) continue; /* a class never seen cannot be inside */
            int n = it_analytics_zone_occupancy(e->an, z, k);
            if (n > 0) it_event_writer_push_occupancy(e->p.writer, e->def.id, e->def.zones[z].id, e->names[k], t, n);
        }
    }
}

static void update_counts(it_cam_events *e) {
    pthread_mutex_lock(&e->mu);
    for (int l = 0; l < e->def.n_lines; l++) {
        e->lines[l][0] = it_analytics_line_count(e->an, l, -1, IT_AN_DIR_A_TO_B);
        e->lines[l][1] = it_analytics_line_count(e->an, l, -1, IT_AN_DIR_B_TO_A);
    }
    for (int z = 0; z < e->def.n_zones; z++) e->zones[z] = it_analytics_zone_occupancy(e->an, z, -1);
    pthread_mutex_unlock(&e->mu);
}

int it_cam_events_frame(it_cam_events *e, const it_image *img, const itscam_detection *d, int n,
                        const it_track_out *tracks, int nt, double t) {
    if (!e) return 0;
    for (int i = 0; i < n; i++)
        if (d[i].class_id >= 0 && d[i].class_id < IT_AN_MAX_CLASSES && d[i].class_name)
            e->names[d[i].class_id] = d[i].class_name;
    int w = img ? img->width : 0, h = img ? img->height : 0;
    if (!e->an || ((e->def.normalized) && (w != e->an_w || h != e->an_h))) {
        if (e->an_failed) return 0;
        if (e->an) {
            /* A new frame size with normalised coordinates: the tracks' positions change
             * meaning, so they end here. */
            int k = it_analytics_flush(e->an, e->last_t, e->ev, EV_CAP);
            for (int i = 0; i < k && i < EV_CAP; i++) analytics_event(e, NULL, &e->ev[i]);
            it_analytics_free(e->an);
            e->an = NULL;
        }
        it_an_config cfg = it_camdef_analytics(&e->def, w, h);
            e->an = it_analytics_new(&cfg);
        if (!e->an) {
            e->an_failed = 1;
            it_log(ITSCAM_LOG_WARN, "camera %s: no analytics: %s", e->def.id, itscam_last_error());
            return 0;
        }
        e->an_w = w, e->an_h = h;
    }
    /* Analytics need time never to go back; a wall clock stepped back by NTP would. */
    if (t < e->last_t) t = e->last_t;
    e->last_t = t;
    int k = it_analytics_update(e->an, tracks, nt, t, e->ev, EV_CAP);
    if (k < 0) {
        it_log(ITSCAM_LOG_WARN, "camera %s: analytics refused a frame: %s", e->def.id, itscam_last_error());
        return 0;
    }
    for (int i = 0; i < k && i < EV_CAP; i++) analytics_event(e, img, &e->ev[i]);
    update_counts(e);
    sample_occupancy(e, t);
    return k;
}

void it_cam_events_counts(it_cam_events *e, int64_t lines[IT_CAM_MAX_LINES][2], int zones[IT_CAM_MAX_ZONES]) {
    pthread_mutex_lock(&e->mu);
    memcpy(lines, e->lines, sizeof e->lines);
    memcpy(zones, e->zones, sizeof e->zones);
    pthread_mutex_unlock(&e->mu);
}

json_t *it_cam_events_totals(it_cam_events *e) {
    json_t *lines = json_object(), *zones = json_object(), *types = json_object();
    for (int l = 0; lines && e->an && l < e->def.n_lines; l++) {
        json_t *by_class = json_object();
        for (int k = 0; by_class && k < IT_AN_MAX_CLASSES; k++) {
            int64_t ab = it_analytics_line_count(e->an, l, k, IT_AN_DIR_A_TO_B);
            int64_t ba = it_analytics_line_count(e->an, l, k, IT_AN_DIR_B_TO_A);
            if (!ab && !ba) continue;
            char fallback[24];
            snprintf(fallback, sizeof fallback, "class_%d", k);
            json_object_set_new(by_class, e->names[k] ? e->names[k] : fallback,
                                json_pack("{s:I,s:I}", "a_to_b", (json_int_t)ab, "b_to_a", (json_int_t)ba));
        }
        json_object_set_new(lines, e->def.lines[l].id, by_class ? by_class : json_object());
    }
    for (int z = 0; zones && e->an && z < e->def.n_zones; z++)
        json_object_set_new(zones, e->def.zones[z].id, json_integer(it_analytics_zone_occupancy(e->an, z, -1)));
    pthread_mutex_lock(&e->mu);
    for (int b = 0; types && b < IT_AN_EVENT_TYPES + N_EXTRA; b++)
        if (e->by_type[b])
            json_object_set_new(types, b < IT_AN_EVENT_TYPES ? it_an_event_name((it_an_event_type)b)
                                                             : extra_types[b - IT_AN_EVENT_TYPES],
                                json_integer((json_int_t)e->by_type[b]));
    pthread_mutex_unlock(&e->mu);
    return json_pack("{s:o*,s:o*,s:o*}", "lines", lines, "zones", zones, "events", types);
}

void it_cam_events_stats(it_cam_events *e, uint64_t *emitted, uint64_t *dropped, uint64_t *snapshots) {
    pthread_mutex_lock(&e->mu);
    if (emitted) *emitted = e->emitted;
    if (dropped) *dropped = e->dropped;
    if (snapshots) *snapshots = e->snapshots;
    pthread_mutex_unlock(&e->mu);
}

void it_cam_events_flush(it_cam_events *e, double t) {
    if (!e || !e->an) return;
    if (t < e->last_t) t = e->last_t;
    int k = it_analytics_flush(e->an, t, e->ev, EV_CAP);
    for (int i = 0; i < k && i < EV_CAP; i++) analytics_event(e, NULL, &e->ev[i]);
}

void it_cam_events_free(it_cam_events *e, double t) {
    if (!e) return;
    if (e->an) {
        it_cam_events_flush(e, t);
        it_analytics_free(e->an);
    }
    pthread_mutex_destroy(&e->mu);
    it_free(e);
}
