/* Per-camera analytics: lines with hysteresis, zones, dwell, stopped vehicles, congestion
 * and homography speed, over bounded per-track state. See analytics.h and README "Analytics". */
#include "analytics/analytics.h"

#include <math.h>
#include <string.h>

#define DEFAULT_MIN_DISTANCE 3.0

typedef struct line_state {
    int8_t side;        /* -1 side a, +1 side b, 0 not yet clear of the band */
    uint8_t counted[2]; /* per direction: once per track */
    double cx, cy;      /* last anchor clear of the band on `side` */
} line_state;

typedef struct zone_state {
    uint8_t inside, loiter_fired, stop_fired;
    double enter_t;
    double stop_since; /* < 0: moving or unknown start */
} zone_state;

typedef struct track_slot {
    int64_t id;
    int used;
    int next;              /* hash chain */
    int64_t last_frame;
    double first_t, last_t;
    float box[4];
    float score;
    int class_id;
    int speeding_fired;
    double speed;          /* -1 unknown */
    int hist_n, hist_head; /* ring of anchor positions (pixels) and times */
    double hx[IT_AN_HISTORY], hy[IT_AN_HISTORY], ht[IT_AN_HISTORY];
} track_slot;

struct it_analytics {
    it_an_anchor anchor;
    int n_lines, n_zones;
    it_an_line lines[IT_AN_MAX_LINES];  /* in pixels after it_analytics_new */
    it_an_zone zones[IT_AN_MAX_ZONES];
    int calibrated;
    double H[9];
    double speed_limit, window;
    int lost_frames, max_tracks;
    int64_t frame;
    double last_t;
    int have_t;
    /* Tracks: slots, a free list through `next`, and hash buckets of slot indices. */
    track_slot *slots;
    line_state *ls; /* max_tracks * n_lines */
    zone_state *zs; /* max_tracks * n_zones */
    int *buckets;
    int n_buckets, free_head, n_used;
    /* Counters. */
    int64_t *line_counts; /* n_lines * IT_AN_MAX_CLASSES * 2 */
    int64_t line_total[IT_AN_MAX_LINES][2];
    int *occ;             /* n_zones * IT_AN_MAX_CLASSES */
    int occ_total[IT_AN_MAX_ZONES];
    double cong_since[IT_AN_MAX_ZONES]; /* < 0: not over */
    int cong_fired[IT_AN_MAX_ZONES];
};

it_an_config it_an_default_config(void) {
    it_an_config c;
    memset(&c, 0, sizeof c);
    c.anchor = IT_AN_ANCHOR_BOTTOM_CENTER;
    c.speed_window_s = 1.0;
    c.lost_frames = 32; /* ByteTrack's default buffer keeps a lost track 31 frames */
    c.max_tracks = IT_AN_MAX_TRACKS;
    return c;
}

static const char *const EVENT_NAMES[IT_AN_EVENT_TYPES] = {
    "track_start", "track_end", "line_cross", "wrong_way", "zone_enter",
    "zone_exit", "loitering", "stopped_vehicle", "congestion", "speeding",
};

const char *it_an_event_name(it_an_event_type t) {
    return (unsigned)t < IT_AN_EVENT_TYPES ? EVENT_NAMES[t] : "unknown";
}

const char *it_an_dir_name(it_an_dir d) {
    switch (d) {
    case IT_AN_DIR_A_TO_B: return "a_to_b";
    case IT_AN_DIR_B_TO_A: return "b_to_a";
    case IT_AN_DIR_BOTH: return "both";
    }
    return "unknown";
}

/* ---- homography ---- */

itscam_status it_homography_solve(const double src[4][2], const double dst[4][2], double H[9]) {
    /* h33 = 1; each pair gives two rows:
     *   x h11 + y h12 + h13 - X x h31 - X y h32 = X
     *   x h21 + y h22 + h23 - Y x h31 - Y y h32 = Y */
    double A[8][9];
    for (int i = 0; i < 4; i++) {
        double x = src[i][0], y = src[i][1], X = dst[i][0], Y = dst[i][1];
        if (!isfinite(x) || !isfinite(y) || !isfinite(X) || !isfinite(Y))
            return it_err(ITSCAM_ERR_INVALID_ARG, "calibration: point %d is not finite", i);
        double r0[9] = { x, y, 1, 0, 0, 0, -X * x, -X * y, X };
        double r1[9] = { 0, 0, 0, x, y, 1, -Y * x, -Y * y, Y };
        memcpy(A[2 * i], r0, sizeof r0);
        memcpy(A[2 * i + 1], r1, sizeof r1);
    }
    /* Scale-aware singularity test: relative to the largest coefficient. */
    double amax = 0;
    for (int r = 0; r < 8; r++)
        for (int c = 0; c < 8; c++) amax = fmax(amax, fabs(A[r][c]));
    if (amax == 0) return it_err(ITSCAM_ERR_INVALID_ARG, "calibration: all points are zero");
    for (int col = 0; col < 8; col++) {
        int piv = col;
        for (int r = col + 1; r < 8; r++)
            if (fabs(A[r][col]) > fabs(A[piv][col])) piv = r;
        if (fabs(A[piv][col]) < 1e-12 * amax)
            return it_err(ITSCAM_ERR_INVALID_ARG,
                          "calibration: degenerate points (three collinear or repeated)");
        if (piv != col)
            for (int c = 0; c < 9; c++) {
                double tmp = A[col][c];
                A[col][c] = A[piv][c];
                A[piv][c] = tmp;
            }
        for (int r = col + 1; r < 8; r++) {
            double f = A[r][col] / A[col][col];
            if (f == 0) continue;
            for (int c = col; c < 9; c++) A[r][c] -= f * A[col][c];
        }
    }
    double h[8];
    for (int r = 7; r >= 0; r--) {
        double s = A[r][8];
        for (int c = r + 1; c < 8; c++) s -= A[r][c] * h[c];
        h[r] = s / A[r][r];
    }
    for (int i = 0; i < 8; i++) {
        if (!isfinite(h[i])) return it_err(ITSCAM_ERR_INVALID_ARG, "calibration: degenerate points");
        H[i] = h[i];
    }
    H[8] = 1;
    return ITSCAM_OK;
}

int it_homography_apply(const double H[9], double x, double y, double *ox, double *oy) {
    double w = H[6] * x + H[7] * y + H[8];
    if (!(fabs(w) > 1e-12)) return -1;
    *ox = (H[0] * x + H[1] * y + H[2]) / w;
    *oy = (H[3] * x + H[4] * y + H[5]) / w;
    return isfinite(*ox) && isfinite(*oy) ? 0 : -1;
}

/* ---- geometry ---- */

static int class_allowed(const int *classes, int n, int cls) {
    if (n <= 0) return 1;
    for (int i = 0; i < n; i++)
        if (classes[i] == cls) return 1;
    return 0;
}

/* Even-odd rule; a point exactly on an edge may go either way, which the zone events
 * tolerate (one frame's difference). */
static int point_in_polygon(const float (*p)[2], int n, double x, double y) {
    int in = 0;
    for (int i = 0, j = n - 1; i < n; j = i++) {
        double xi = p[i][0], yi = p[i][1], xj = p[j][0], yj = p[j][1];
        if ((yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi) in = !in;
    }
    return in;
}

static void anchor_of(it_an_anchor an, const float b[4], double *x, double *y) {
    *x = 0.5 * ((double)b[0] + b[2]);
    switch (an) {
    case IT_AN_ANCHOR_CENTER: *y = 0.5 * ((double)b[1] + b[3]); break;
    case IT_AN_ANCHOR_TOP_CENTER: *y = b[1]; break;
    default: *y = b[3]; break;
    }
}

/* ---- lifecycle ---- */

it_analytics *it_analytics_new(const it_an_config *c) {
    it_an_config d = it_an_default_config();
    if (!c) c = &d;
    if (c->n_lines < 0 || c->n_lines > IT_AN_MAX_LINES || (c->n_lines && !c->lines)) {
        it_err(ITSCAM_ERR_INVALID_ARG, "analytics: %d lines (at most %d)", c->n_lines, IT_AN_MAX_LINES);
        return NULL;
    }
    if (c->n_zones < 0 || c->n_zones > IT_AN_MAX_ZONES || (c->n_zones && !c->zones)) {
        it_err(ITSCAM_ERR_INVALID_ARG, "analytics: %d zones (at most %d)", c->n_zones, IT_AN_MAX_ZONES);
        return NULL;
    }
    if ((unsigned)c->anchor > IT_AN_ANCHOR_TOP_CENTER) {
        it_err(ITSCAM_ERR_INVALID_ARG, "analytics: anchor %d is not a known anchor", (int)c->anchor);
        return NULL;
    }
    double sx = 1, sy = 1;
    if (c->normalized) {
        if (c->frame_width <= 0 || c->frame_height <= 0) {
            it_err(ITSCAM_ERR_INVALID_ARG, "analytics: normalised coordinates need the frame size (got %dx%d)",
                   c->frame_width, c->frame_height);
            return NULL;
        }
        sx = c->frame_width;
        sy = c->frame_height;
    }
    int max_tracks = c->max_tracks > 0 ? IT_MIN(c->max_tracks, IT_AN_MAX_TRACKS) : IT_AN_MAX_TRACKS;
    double window = c->speed_window_s > 0 ? c->speed_window_s : 1.0;
    if (!isfinite(window) || !isfinite(c->speed_limit_kmh)) {
        it_err(ITSCAM_ERR_INVALID_ARG, "analytics: speed_window_s and speed_limit_kmh must be finite");
        return NULL;
    }

    it_analytics *a = it_calloc(1, sizeof *a);
    if (!a) {
        it_err(ITSCAM_ERR_NOMEM, "analytics: no memory");
        return NULL;
    }
    a->anchor = c->anchor;
    a->n_lines = c->n_lines;
    a->n_zones = c->n_zones;
    a->max_tracks = max_tracks;
    a->window = window;
    a->speed_limit = c->speed_limit_kmh;
    a->lost_frames = c->lost_frames > 0 ? c->lost_frames : 32;
    for (int i = 0; i < c->n_lines; i++) {
        it_an_line *l = &a->lines[i];
        *l = c->lines[i];
        l->id[IT_AN_ID_LEN - 1] = 0;
        for (int k = 0; k < 2; k++) {
            l->points[k][0] = (float)(l->points[k][0] * sx);
            l->points[k][1] = (float)(l->points[k][1] * sy);
        }
        double dx = l->points[1][0] - l->points[0][0], dy = l->points[1][1] - l->points[0][1];
        if (!isfinite(dx) || !isfinite(dy) || dx * dx + dy * dy < 1e-6) {
            it_err(ITSCAM_ERR_INVALID_ARG, "analytics: line %d (%s): its two points must differ", i, l->id);
            goto fail;
        }
        if ((unsigned)l->direction > IT_AN_DIR_BOTH || l->n_classes < 0 || l->n_classes > IT_AN_MAX_FILTER) {
            it_err(ITSCAM_ERR_INVALID_ARG, "analytics: line %d (%s): bad direction or classes", i, l->id);
            goto fail;
        }
        if (!(l->min_distance > 0)) l->min_distance = DEFAULT_MIN_DISTANCE;
    }
    for (int i = 0; i < c->n_zones; i++) {
        it_an_zone *z = &a->zones[i];
        *z = c->zones[i];
        z->id[IT_AN_ID_LEN - 1] = 0;
        if (z->n_points < 3 || z->n_points > IT_AN_MAX_POLY) {
            it_err(ITSCAM_ERR_INVALID_ARG, "analytics: zone %d (%s): %d polygon points (3 to %d)", i, z->id,
                   z->n_points, IT_AN_MAX_POLY);
            goto fail;
        }
        if (z->n_classes < 0 || z->n_classes > IT_AN_MAX_FILTER) {
            it_err(ITSCAM_ERR_INVALID_ARG, "analytics: zone %d (%s): %d classes", i, z->id, z->n_classes);
            goto fail;
        }
        for (int k = 0; k < z->n_points; k++) {
            z->polygon[k][0] = (float)(z->polygon[k][0] * sx);
            z->polygon[k][1] = (float)(z->polygon[k][1] * sy);
            if (!isfinite(z->polygon[k][0]) || !isfinite(z->polygon[k][1])) {
                it_err(ITSCAM_ERR_INVALID_ARG, "analytics: zone %d (%s): point %d is not finite", i, z->id, k);
                goto fail;
            }
        }
        a->cong_since[i] = -1;
    }
    if (c->has_calibration) {
        double img[4][2];
        for (int k = 0; k < 4; k++) {
            img[k][0] = c->calib_image[k][0] * sx;
            img[k][1] = c->calib_image[k][1] * sy;
        }
        if (it_homography_solve(img, c->calib_world, a->H) != ITSCAM_OK) {
            it_err_prefix(ITSCAM_ERR_INVALID_ARG, "analytics: ");
            goto fail;
        }
        a->calibrated = 1;
    }

    a->n_buckets = 1;
    while (a->n_buckets < 2 * max_tracks) a->n_buckets *= 2;
    a->slots = it_calloc((size_t)max_tracks, sizeof *a->slots);
    a->buckets = it_malloc((size_t)a->n_buckets * sizeof *a->buckets);
    a->ls = a->n_lines ? it_calloc((size_t)max_tracks * a->n_lines, sizeof *a->ls) : NULL;
    a->zs = a->n_zones ? it_calloc((size_t)max_tracks * a->n_zones, sizeof *a->zs) : NULL;
    a->line_counts = a->n_lines ? it_calloc((size_t)a->n_lines * IT_AN_MAX_CLASSES * 2, sizeof *a->line_counts) : NULL;
    a->occ = a->n_zones ? it_calloc((size_t)a->n_zones * IT_AN_MAX_CLASSES, sizeof *a->occ) : NULL;
    if (!a->slots || !a->buckets || (a->n_lines && (!a->ls || !a->line_counts)) ||
        (a->n_zones && (!a->zs || !a->occ))) {
        it_err(ITSCAM_ERR_NOMEM, "analytics: no memory for %d tracks", max_tracks);
        goto fail;
    }
    for (int i = 0; i < a->n_buckets; i++) a->buckets[i] = -1;
    for (int i = 0; i < max_tracks; i++) a->slots[i].next = i + 1 < max_tracks ? i + 1 : -1;
    a->free_head = 0;
    return a;
fail:
    it_analytics_free(a);
    return NULL;
}

void it_analytics_free(it_analytics *a) {
    if (!a) return;
    it_free(a->slots);
    it_free(a->buckets);
    it_free(a->ls);
    it_free(a->zs);
    it_free(a->line_counts);
    it_free(a->occ);
    it_free(a);
}

/* ---- track table ---- */

static unsigned bucket_of(const it_analytics *a, int64_t id) {
    uint64_t h = (uint64_t)id * 0x9E3779B97F4A7C15ull;
    return (unsigned)(h >> 32) & (unsigned)(a->n_buckets - 1);
}

static int find_slot(const it_analytics *a, int64_t id) {
    for (int i = a->buckets[bucket_of(a, id)]; i >= 0; i = a->slots[i].next)
        if (a->slots[i].id == id) return i;
    return -1;
}

static void unlink_slot(it_analytics *a, int s) {
    int *p = &a->buckets[bucket_of(a, a->slots[s].id)];
    while (*p != s) p = &a->slots[*p].next;
    *p = a->slots[s].next;
    a->slots[s].used = 0;
    a->slots[s].next = a->free_head;
    a->free_head = s;
    a->n_used--;
}

/* ---- events ---- */

typedef struct emitter {
    it_an_event *ev;
    int cap, n;
    it_an_event sink; /* written when the caller's array is full, never read */
} emitter;

static it_an_event *emit(emitter *e, it_an_event_type type, double t, const track_slot *s) {
    it_an_event *x = e->n < e->cap ? &e->ev[e->n] : &e->sink;
    e->n++;
    memset(x, 0, sizeof *x);
    x->type = type;
    x->time = t;
    x->line = -1;
    x->zone = -1;
    x->class_id = -1;
    x->speed = -1;
    if (s) {
        x->track_id = s->id;
        x->class_id = s->class_id;
        x->score = s->score;
        memcpy(x->box, s->box, sizeof x->box);
        x->speed = s->speed;
    }
    return x;
}

/* Close a track: zone exits (dwell to its last sighting), then track_end. */
static void end_track(it_analytics *a, int s, double t, emitter *e) {
    track_slot *ts = &a->slots[s];
    for (int z = 0; z < a->n_zones; z++) {
        zone_state *zs = &a->zs[(size_t)s * a->n_zones + z];
        if (!zs->inside) continue;
        it_an_event *x = emit(e, IT_AN_ZONE_EXIT, t, ts);
        x->zone = z;
        x->dwell_s = fmax(0, ts->last_t - zs->enter_t);
    }
    it_an_event *x = emit(e, IT_AN_TRACK_END, t, ts);
    x->dwell_s = ts->last_t - ts->first_t;
    unlink_slot(a, s);
}

static int new_slot(it_analytics *a, int64_t id, double t, emitter *e) {
    if (a->free_head < 0) {
        /* Full: forget the least recently seen track, as if it had ended. */
        int old = -1;
        for (int i = 0; i < a->max_tracks; i++)
            if (a->slots[i].used && (old < 0 || a->slots[i].last_frame < a->slots[old].last_frame)) old = i;
        end_track(a, old, t, e);
    }
    int s = a->free_head;
    track_slot *ts = &a->slots[s];
    a->free_head = ts->next;
    memset(ts, 0, sizeof *ts);
    ts->id = id;
    ts->used = 1;
    ts->speed = -1;
    ts->first_t = t;
    unsigned b = bucket_of(a, id);
    ts->next = a->buckets[b];
    a->buckets[b] = s;
    a->n_used++;
    if (a->n_lines) memset(&a->ls[(size_t)s * a->n_lines], 0, (size_t)a->n_lines * sizeof *a->ls);
    for (int z = 0; z < a->n_zones; z++) {
        zone_state *zs = &a->zs[(size_t)s * a->n_zones + z];
        memset(zs, 0, sizeof *zs);
        zs->stop_since = -1;
    }
    return s;
}

/* Speed over the window: the chord from the oldest position inside it to the newest,
 * in world metres when calibrated (km/h) or pixels (px/s). Unknown (-1) until the history
 * spans half the window, so one frame's jitter never reads as a speed. */
static double track_speed(const it_analytics *a, const track_slot *ts) {
    if (ts->hist_n < 2) return -1;
    int newest = (ts->hist_head + IT_AN_HISTORY - 1) % IT_AN_HISTORY;
    double tn = ts->ht[newest];
    int oldest = newest;
    for (int k = 1; k < ts->hist_n; k++) {
        int i = (newest + IT_AN_HISTORY - k) % IT_AN_HISTORY;
        if (tn - ts->ht[i] > a->window + 1e-9) break;
        oldest = i;
    }
    double dt = tn - ts->ht[oldest];
    if (dt < 0.5 * a->window || dt <= 0) return -1;
    double x0 = ts->hx[oldest], y0 = ts->hy[oldest], x1 = ts->hx[newest], y1 = ts->hy[newest];
    if (a->calibrated) {
        double X0, Y0, X1, Y1;
        if (it_homography_apply(a->H, x0, y0, &X0, &Y0) || it_homography_apply(a->H, x1, y1, &X1, &Y1)) return -1;
        return hypot(X1 - X0, Y1 - Y0) / dt * 3.6;
    }
    return hypot(x1 - x0, y1 - y0) / dt;
}

/* The line logic for one track and line. A track is on side a or b only once its anchor is
 * min_distance clear of the line; a crossing is a change of clear side whose chord (last
 * clear point before to first clear point after) meets the segment itself. */
static void update_line(it_analytics *a, int s, int li, double x, double y, double t, emitter *e) {
    const it_an_line *l = &a->lines[li];
    track_slot *ts = &a->slots[s];
    if (!class_allowed(l->classes, l->n_classes, ts->class_id)) return;
    line_state *st = &a->ls[(size_t)s * a->n_lines + li];
    double ax = l->points[0][0], ay = l->points[0][1];
    double dx = l->points[1][0] - ax, dy = l->points[1][1] - ay;
    double len = hypot(dx, dy);
    double d = (dx * (y - ay) - dy * (x - ax)) / len; /* > 0: side b (right of A->B on screen) */
    if (fabs(d) < l->min_distance) return;            /* in the band: nothing decided */
    int8_t side = d > 0 ? 1 : -1;
    if (st->side != 0 && side != st->side) {
        double d0 = (dx * (st->cy - ay) - dy * (st->cx - ax)) / len;
        double f = d0 / (d0 - d);
        double px = st->cx + f * (x - st->cx), py = st->cy + f * (y - st->cy);
        double u = ((px - ax) * dx + (py - ay) * dy) / (len * len);
        if (u >= 0 && u <= 1) {
            it_an_dir dir = st->side < 0 ? IT_AN_DIR_A_TO_B : IT_AN_DIR_B_TO_A;
            if (!st->counted[dir]) {
                st->counted[dir] = 1;
                a->line_total[li][dir]++;
                if (ts->class_id >= 0 && ts->class_id < IT_AN_MAX_CLASSES)
                    a->line_counts[((size_t)li * IT_AN_MAX_CLASSES + ts->class_id) * 2 + dir]++;
                int wrong = l->direction != IT_AN_DIR_BOTH && l->direction != dir;
                it_an_event *x = emit(e, wrong ? IT_AN_WRONG_WAY : IT_AN_LINE_CROSS, t, ts);
                x->line = li;
                x->direction = dir;
            }
        }
    }
    st->side = side;
    st->cx = x;
    st->cy = y;
}

static void update_zone(it_analytics *a, int s, int zi, double x, double y, double t, emitter *e) {
    const it_an_zone *z = &a->zones[zi];
    track_slot *ts = &a->slots[s];
    zone_state *st = &a->zs[(size_t)s * a->n_zones + zi];
    int in = class_allowed(z->classes, z->n_classes, ts->class_id) &&
             point_in_polygon((const float (*)[2])z->polygon, z->n_points, x, y);
    if (in && !st->inside) {
        st->inside = 1;
        st->enter_t = t;
        st->stop_since = -1;
        st->stop_fired = 0;
        emit(e, IT_AN_ZONE_ENTER, t, ts)->zone = zi;
    } else if (!in && st->inside) {
        st->inside = 0;
        it_an_event *x = emit(e, IT_AN_ZONE_EXIT, t, ts);
        x->zone = zi;
        x->dwell_s = t - st->enter_t;
        return;
    }
    if (!in) return;
    double dwell = t - st->enter_t;
    if (z->dwell_alert_s > 0 && dwell > z->dwell_alert_s && !st->loiter_fired) {
        st->loiter_fired = 1;
        it_an_event *x = emit(e, IT_AN_LOITERING, t, ts);
        x->zone = zi;
        x->dwell_s = dwell;
    }
    if (z->stopped_speed > 0 && ts->speed >= 0) {
        if (ts->speed < z->stopped_speed) {
            if (st->stop_since < 0) st->stop_since = t;
            if (t - st->stop_since >= z->stopped_s && !st->stop_fired) {
                st->stop_fired = 1;
                it_an_event *x = emit(e, IT_AN_STOPPED_VEHICLE, t, ts);
                x->zone = zi;
                x->dwell_s = t - st->stop_since;
            }
        } else {
            st->stop_since = -1; /* moving again: a later stop is a new incident */
            st->stop_fired = 0;
        }
    }
}

static void update_occupancy(it_analytics *a, double t, emitter *e) {
    if (!a->n_zones) return;
    memset(a->occ, 0, (size_t)a->n_zones * IT_AN_MAX_CLASSES * sizeof *a->occ);
    memset(a->occ_total, 0, sizeof a->occ_total);
    for (int s = 0; s < a->max_tracks; s++) {
        if (!a->slots[s].used) continue;
        int cls = a->slots[s].class_id;
        for (int z = 0; z < a->n_zones; z++) {
            if (!a->zs[(size_t)s * a->n_zones + z].inside) continue;
            a->occ_total[z]++;
            if (cls >= 0 && cls < IT_AN_MAX_CLASSES) a->occ[(size_t)z * IT_AN_MAX_CLASSES + cls]++;
        }
    }
    for (int z = 0; z < a->n_zones; z++) {
        const it_an_zone *zc = &a->zones[z];
        if (zc->congestion_count <= 0) continue;
        if (a->occ_total[z] > zc->congestion_count) {
            if (a->cong_since[z] < 0) a->cong_since[z] = t;
            if (t - a->cong_since[z] >= zc->congestion_s && !a->cong_fired[z]) {
                a->cong_fired[z] = 1;
                it_an_event *x = emit(e, IT_AN_CONGESTION, t, NULL);
                x->zone = z;
                x->count = a->occ_total[z];
                x->dwell_s = t - a->cong_since[z];
            }
        } else {
            a->cong_since[z] = -1; /* cleared: the next queue is a new event */
            a->cong_fired[z] = 0;
        }
    }
}

int it_analytics_update(it_analytics *a, const it_track_out *tracks, int n, double t,
                        it_an_event *ev, int cap) {
    if (!a || n < 0 || (n > 0 && !tracks) || (cap > 0 && !ev)) {
        it_err(ITSCAM_ERR_INVALID_ARG, "analytics: bad arguments (n %d, cap %d)", n, cap);
        return -1;
    }
    if (!isfinite(t) || (a->have_t && t < a->last_t)) {
        it_err(ITSCAM_ERR_INVALID_ARG, "analytics: frame time %g is not finite or goes backwards (last %g)", t,
               a->last_t);
        return -1;
    }
    for (int i = 0; i < n; i++)
        for (int k = 0; k < 4; k++)
            if (!isfinite(tracks[i].box[k])) {
                it_err(ITSCAM_ERR_INVALID_ARG, "analytics: track %d (id %lld): box is not finite", i,
                       (long long)tracks[i].track_id);
                return -1;
            }
    emitter e = { .ev = ev, .cap = cap < 0 ? 0 : cap };
    a->frame++;
    a->last_t = t;
    a->have_t = 1;
    for (int i = 0; i < n; i++) {
        const it_track_out *o = &tracks[i];
        int s = find_slot(a, o->track_id);
        int fresh = s < 0;
        if (fresh) s = new_slot(a, o->track_id, t, &e);
        track_slot *ts = &a->slots[s];
        ts->last_frame = a->frame;
        ts->last_t = t;
        memcpy(ts->box, o->box, sizeof ts->box);
        ts->score = o->score;
        ts->class_id = o->class_id;
        double x, y;
        anchor_of(a->anchor, o->box, &x, &y);
        ts->hx[ts->hist_head] = x;
        ts->hy[ts->hist_head] = y;
        ts->ht[ts->hist_head] = t;
        ts->hist_head = (ts->hist_head + 1) % IT_AN_HISTORY;
        if (ts->hist_n < IT_AN_HISTORY) ts->hist_n++;
        ts->speed = track_speed(a, ts);
        if (fresh) emit(&e, IT_AN_TRACK_START, t, ts);
        for (int li = 0; li < a->n_lines; li++) update_line(a, s, li, x, y, t, &e);
        for (int zi = 0; zi < a->n_zones; zi++) update_zone(a, s, zi, x, y, t, &e);
        if (a->calibrated && a->speed_limit > 0 && ts->speed > a->speed_limit && !ts->speeding_fired) {
            ts->speeding_fired = 1;
            emit(&e, IT_AN_SPEEDING, t, ts);
        }
    }
    for (int s = 0; s < a->max_tracks; s++)
        if (a->slots[s].used && a->frame - a->slots[s].last_frame >= a->lost_frames) end_track(a, s, t, &e);
    update_occupancy(a, t, &e);
    return e.n;
}

int it_analytics_flush(it_analytics *a, double t, it_an_event *ev, int cap) {
    if (!a || (cap > 0 && !ev) || !isfinite(t)) {
        it_err(ITSCAM_ERR_INVALID_ARG, "analytics: bad arguments to flush");
        return -1;
    }
    emitter e = { .ev = ev, .cap = cap < 0 ? 0 : cap };
    for (int s = 0; s < a->max_tracks; s++)
        if (a->slots[s].used) end_track(a, s, t, &e);
    update_occupancy(a, t, &e);
    return e.n;
}

int64_t it_analytics_line_count(const it_analytics *a, int line, int class_id, it_an_dir dir) {
    if (!a || line < 0 || line >= a->n_lines || (dir != IT_AN_DIR_A_TO_B && dir != IT_AN_DIR_B_TO_A)) return 0;
    if (class_id < 0) return a->line_total[line][dir];
    if (class_id >= IT_AN_MAX_CLASSES) return 0;
    return a->line_counts[((size_t)line * IT_AN_MAX_CLASSES + class_id) * 2 + dir];
}

int it_analytics_zone_occupancy(const it_analytics *a, int zone, int class_id) {
    if (!a || zone < 0 || zone >= a->n_zones) return 0;
    if (class_id < 0) return a->occ_total[zone];
    if (class_id >= IT_AN_MAX_CLASSES) return 0;
    return a->occ[(size_t)zone * IT_AN_MAX_CLASSES + class_id];
}

int it_analytics_track_speed(const it_analytics *a, int64_t track_id, double *speed) {
    if (!a) return -1;
    int s = find_slot(a, track_id);
    if (s < 0 || a->slots[s].speed < 0) return -1;
    if (speed) *speed = a->slots[s].speed;
    return 0;
}

int it_analytics_track_count(const it_analytics *a) { return a ? a->n_used : 0; }
