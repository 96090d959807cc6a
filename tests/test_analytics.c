/* Analytics on synthetic tracks with known answers: jitter on a line, U-turns, wrong way,
 * counts by class and direction, zone enter/exit and dwell, loitering once, a stopped
 * vehicle, congestion, speed from a known homography, normalised coordinates, track
 * start/end, the bounded track table and configuration errors. */
#include "analytics/analytics.h"
#include "check.h"
#include "core/core.h"

#include <math.h>
#include <stdint.h>

#define NEAR(a, b, tol) (fabs((double)(a) - (double)(b)) <= (tol))

/* One object of a synthetic frame: its anchor (bottom centre by default) and class. */
typedef struct obj {
    int64_t id;
    int cls;
    double x, y;
} obj;

#define LOG_CAP 4096
static it_an_event log_ev[LOG_CAP];
static int log_n;

static void log_reset(void) { log_n = 0; }

/* Feed one frame with 20x20 boxes whose bottom centre is each object's anchor. */
static int feed(it_analytics *a, const obj *o, int n, double t) {
    it_track_out tr[64];
    for (int i = 0; i < n; i++) {
        tr[i].track_id = o[i].id;
        tr[i].class_id = o[i].cls;
        tr[i].score = 0.9f;
        tr[i].det_index = i;
        tr[i].box[0] = (float)(o[i].x - 10);
        tr[i].box[1] = (float)(o[i].y - 20);
        tr[i].box[2] = (float)(o[i].x + 10);
        tr[i].box[3] = (float)o[i].y;
    }
    int k = it_analytics_update(a, tr, n, t, log_ev + log_n, LOG_CAP - log_n);
    CHECKF(k >= 0, "%s", itscam_last_error());
    if (k > 0) log_n += IT_MIN(k, LOG_CAP - log_n);
    return k;
}

static void feed1(it_analytics *a, int64_t id, int cls, double x, double y, double t) {
    obj o = { id, cls, x, y };
    feed(a, &o, 1, t);
}

static int count_type(it_an_event_type type) {
    int c = 0;
    for (int i = 0; i < log_n; i++) c += log_ev[i].type == type;
    return c;
}

static const it_an_event *first_of(it_an_event_type type) {
    for (int i = 0; i < log_n; i++)
        if (log_ev[i].type == type) return &log_ev[i];
    return NULL;
}

/* A horizontal line at y = 100 from x = 0 (A) to x = 200 (B): side a above, b below. */
static it_an_line hline(it_an_dir dir) {
    it_an_line l;
    memset(&l, 0, sizeof l);
    snprintf(l.id, sizeof l.id, "stop_line");
    l.points[0][0] = 0;
    l.points[0][1] = 100;
    l.points[1][0] = 200;
    l.points[1][1] = 100;
    l.direction = dir;
    return l;
}

static it_analytics *with_line(const it_an_line *l) {
    it_an_config c = it_an_default_config();
    c.lines = l;
    c.n_lines = 1;
    it_analytics *a = it_analytics_new(&c);
    CHECKF(a != NULL, "%s", itscam_last_error());
    return a;
}

static void test_jitter(void) {
    it_an_line l = hline(IT_AN_DIR_BOTH);
    it_analytics *a = with_line(&l);
    if (!a) return;
    log_reset();
    /* Down onto the line, jitter within the 3 px band around it, then on below. A naive
     * per-frame sign test would count 6 crossings here. */
    const double ys[] = { 80, 90, 96, 99, 101, 99, 101.5, 98.5, 102, 99, 101, 104, 110, 120 };
    int n = (int)(sizeof ys / sizeof ys[0]);
    for (int f = 0; f < n; f++) feed1(a, 1, 2, 50, ys[f], f * 0.04);
    CHECKF(count_type(IT_AN_LINE_CROSS) == 1, "%d crossings", count_type(IT_AN_LINE_CROSS));
    CHECK(it_analytics_line_count(a, 0, 2, IT_AN_DIR_A_TO_B) == 1);
    CHECK(it_analytics_line_count(a, 0, 2, IT_AN_DIR_B_TO_A) == 0);
    const it_an_event *e = first_of(IT_AN_LINE_CROSS);
    CHECK(e && e->direction == IT_AN_DIR_A_TO_B && e->line == 0 && e->track_id == 1 && e->class_id == 2);
    CHECK(e && NEAR(e->time, 11 * 0.04, 1e-9)); /* the first frame clear of the band below */

    /* A track that starts inside the band and leaves it downwards never crossed. */
    log_reset();
    for (int f = 0; f < 6; f++) feed1(a, 2, 2, 60, 99.5 + f * 2, 1 + f * 0.04);
    CHECK(count_type(IT_AN_LINE_CROSS) == 0);

    /* A larger min_distance swallows larger jitter. */
    it_analytics_free(a);
    l.min_distance = 8;
    a = with_line(&l);
    log_reset();
    const double ys2[] = { 80, 95, 105, 94, 106, 93, 107, 95, 120 };
    for (int f = 0; f < 9; f++) feed1(a, 1, 2, 50, ys2[f], f * 0.04);
    CHECK(count_type(IT_AN_LINE_CROSS) == 1 && it_analytics_line_count(a, 0, -1, IT_AN_DIR_A_TO_B) == 1);
    it_analytics_free(a);
}

static void test_uturn(void) {
    it_an_line l = hline(IT_AN_DIR_BOTH);
    it_analytics *a = with_line(&l);
    if (!a) return;
    log_reset();
    /* Down, back up, down again, up again: once per direction. */
    const double ys[] = { 60, 80, 120, 140, 120, 80, 60, 80, 120, 140, 120, 80, 60 };
    for (int f = 0; f < 13; f++) feed1(a, 7, 3, 100, ys[f], f * 0.1);
    CHECK(count_type(IT_AN_LINE_CROSS) == 2);
    CHECK(it_analytics_line_count(a, 0, 3, IT_AN_DIR_A_TO_B) == 1);
    CHECK(it_analytics_line_count(a, 0, 3, IT_AN_DIR_B_TO_A) == 1);
    CHECK(log_n >= 3 && log_ev[1].type == IT_AN_LINE_CROSS && log_ev[1].direction == IT_AN_DIR_A_TO_B);
    CHECK(log_n >= 3 && log_ev[2].type == IT_AN_LINE_CROSS && log_ev[2].direction == IT_AN_DIR_B_TO_A);
    it_analytics_free(a);
}

static void test_wrong_way(void) {
    it_an_line l = hline(IT_AN_DIR_A_TO_B);
    it_analytics *a = with_line(&l);
    if (!a) return;
    log_reset();
    for (int f = 0; f < 10; f++) {
        obj o[2] = { { 1, 2, 50, 60 + 10 * f }, { 2, 2, 150, 140 - 10 * f } }; /* 1 down, 2 up */
        feed(a, o, 2, f * 0.1);
    }
    CHECK(count_type(IT_AN_LINE_CROSS) == 1 && count_type(IT_AN_WRONG_WAY) == 1);
    const it_an_event *c = first_of(IT_AN_LINE_CROSS), *w = first_of(IT_AN_WRONG_WAY);
    CHECK(c && c->track_id == 1 && c->direction == IT_AN_DIR_A_TO_B);
    CHECK(w && w->track_id == 2 && w->direction == IT_AN_DIR_B_TO_A && w->line == 0);
    /* Counts keep both directions: the wrong-way count is the b_to_a one. */
    CHECK(it_analytics_line_count(a, 0, -1, IT_AN_DIR_A_TO_B) == 1);
    CHECK(it_analytics_line_count(a, 0, -1, IT_AN_DIR_B_TO_A) == 1);
    it_analytics_free(a);

    l = hline(IT_AN_DIR_B_TO_A);
    a = with_line(&l);
    log_reset();
    for (int f = 0; f < 10; f++) feed1(a, 1, 2, 50, 60 + 10 * f, f * 0.1);
    CHECK(count_type(IT_AN_LINE_CROSS) == 0 && count_type(IT_AN_WRONG_WAY) == 1);
    it_analytics_free(a);
}

static void test_counts_by_class(void) {
    it_an_line lines[2] = { hline(IT_AN_DIR_BOTH), hline(IT_AN_DIR_BOTH) };
    lines[1].classes[0] = 2; /* cars only */
    lines[1].n_classes = 1;
    it_an_config c = it_an_default_config();
    c.lines = lines;
    c.n_lines = 2;
    it_analytics *a = it_analytics_new(&c);
    CHECKF(a != NULL, "%s", itscam_last_error());
    if (!a) return;
    log_reset();
    /* Five tracks: 3 cars down, 1 truck down, 1 car up, 1 truck up, and a car passing
     * beyond the end of the segment (x = 250) that must not count. */
    const struct { int64_t id; int cls; double x; int down; } s[] = {
        { 1, 2, 20, 1 }, { 2, 2, 60, 1 }, { 3, 2, 100, 1 }, { 4, 7, 140, 1 },
        { 5, 2, 180, 0 }, { 6, 7, 30, 0 }, { 7, 2, 250, 1 },
    };
    for (int f = 0; f < 12; f++) {
        obj o[7];
        for (int i = 0; i < 7; i++) {
            o[i].id = s[i].id;
            o[i].cls = s[i].cls;
            o[i].x = s[i].x;
            o[i].y = s[i].down ? 45 + 10 * f : 155 - 10 * f;
        }
        feed(a, o, 7, f * 0.1);
    }
    CHECK(it_analytics_line_count(a, 0, 2, IT_AN_DIR_A_TO_B) == 3);
    CHECK(it_analytics_line_count(a, 0, 7, IT_AN_DIR_A_TO_B) == 1);
    CHECK(it_analytics_line_count(a, 0, 2, IT_AN_DIR_B_TO_A) == 1);
    CHECK(it_analytics_line_count(a, 0, 7, IT_AN_DIR_B_TO_A) == 1);
    CHECK(it_analytics_line_count(a, 0, -1, IT_AN_DIR_A_TO_B) == 4);
    CHECK(it_analytics_line_count(a, 0, -1, IT_AN_DIR_B_TO_A) == 2);
    CHECK(it_analytics_line_count(a, 1, 2, IT_AN_DIR_A_TO_B) == 3);
    CHECK(it_analytics_line_count(a, 1, 7, IT_AN_DIR_A_TO_B) == 0);
    CHECK(it_analytics_line_count(a, 1, -1, IT_AN_DIR_B_TO_A) == 1);
    CHECK(count_type(IT_AN_LINE_CROSS) == 6 + 4);
    CHECK(it_analytics_line_count(a, 2, -1, IT_AN_DIR_A_TO_B) == 0); /* no such line */
    it_analytics_free(a);
}

static it_an_zone square_zone(double x0, double y0, double x1, double y1) {
    it_an_zone z;
    memset(&z, 0, sizeof z);
    snprintf(z.id, sizeof z.id, "box");
    const double p[4][2] = { { x0, y0 }, { x1, y0 }, { x1, y1 }, { x0, y1 } };
    for (int k = 0; k < 4; k++) {
        z.polygon[k][0] = (float)p[k][0];
        z.polygon[k][1] = (float)p[k][1];
    }
    z.n_points = 4;
    return z;
}

static it_analytics *with_zone(const it_an_zone *z) {
    it_an_config c = it_an_default_config();
    c.zones = z;
    c.n_zones = 1;
    it_analytics *a = it_analytics_new(&c);
    CHECKF(a != NULL, "%s", itscam_last_error());
    return a;
}

static void test_zone_dwell(void) {
    it_an_zone z = square_zone(100, 100, 200, 200);
    it_analytics *a = with_zone(&z);
    if (!a) return;
    log_reset();
    /* x = 55 + 10 f at 10 fps: inside for f = 5 (105) .. 14 (195), out at f = 15. */
    for (int f = 0; f < 20; f++) {
        feed1(a, 1, 2, 55 + 10 * f, 150, f * 0.1);
        int want = f >= 5 && f <= 14;
        CHECKF(it_analytics_zone_occupancy(a, 0, -1) == want, "frame %d", f);
        CHECK(it_analytics_zone_occupancy(a, 0, 2) == want && it_analytics_zone_occupancy(a, 0, 3) == 0);
    }
    CHECK(count_type(IT_AN_ZONE_ENTER) == 1 && count_type(IT_AN_ZONE_EXIT) == 1);
    const it_an_event *en = first_of(IT_AN_ZONE_ENTER), *ex = first_of(IT_AN_ZONE_EXIT);
    CHECK(en && NEAR(en->time, 0.5, 1e-9) && en->zone == 0 && en->track_id == 1);
    CHECK(ex && NEAR(ex->time, 1.5, 1e-9) && NEAR(ex->dwell_s, 1.0, 1e-9));
    CHECK(count_type(IT_AN_LOITERING) == 0);

    /* Occupancy by class, and a track ending inside exits with dwell to its last sighting. */
    log_reset();
    for (int f = 0; f < 10; f++) {
        obj o[3] = { { 10, 2, 120, 150 }, { 11, 2, 150, 150 }, { 12, 7, 180, 150 } };
        feed(a, o, f < 5 ? 3 : 2, 10 + f * 0.1);
        if (f == 0) {
            CHECK(it_analytics_zone_occupancy(a, 0, 2) == 2 && it_analytics_zone_occupancy(a, 0, 7) == 1);
        }
    }
    CHECK(it_analytics_zone_occupancy(a, 0, 7) == 1); /* lost, not ended yet (lost_frames 32) */
    int k = it_analytics_flush(a, 20, log_ev + log_n, LOG_CAP - log_n);
    CHECK(k == 7); /* 3 zone_exit + 3 track_end, and track 1 (out of the zone) ends */
    log_n += k;
    CHECK(it_analytics_zone_occupancy(a, 0, -1) == 0 && it_analytics_track_count(a) == 0);
    for (int i = 0; i < log_n; i++)
        if (log_ev[i].type == IT_AN_ZONE_EXIT && log_ev[i].track_id == 12) CHECK(NEAR(log_ev[i].dwell_s, 0.4, 1e-9));
    it_analytics_free(a);
}

static void test_loitering(void) {
    it_an_zone z = square_zone(100, 100, 200, 200);
    z.dwell_alert_s = 2;
    it_analytics *a = with_zone(&z);
    if (!a) return;
    log_reset();
    /* 5 s inside with some jitter, out for 1 s, back in for 3 s: one loitering event. */
    for (int f = 0; f < 90; f++) {
        double t = f * 0.1;
        double x = (t < 5 || t >= 6) ? 150 + (f % 3) : 300;
        feed1(a, 1, 0, x, 150, t);
    }
    CHECK(count_type(IT_AN_LOITERING) == 1);
    CHECK(count_type(IT_AN_ZONE_ENTER) == 2 && count_type(IT_AN_ZONE_EXIT) == 1);
    const it_an_event *l = first_of(IT_AN_LOITERING);
    CHECK(l && l->dwell_s > 2 && NEAR(l->time, 2.1, 1e-6) && l->zone == 0);
    it_analytics_free(a);
}

static void test_stopped_vehicle(void) {
    it_an_zone z = square_zone(100, 0, 500, 200);
    z.stopped_speed = 5; /* px/s: no calibration here */
    z.stopped_s = 2;
    it_analytics *a = with_zone(&z);
    if (!a) return;
    log_reset();
    /* Track 1: 100 px/s from x = 50, stops at x = 250 (t = 2) for 4 s, then drives on.
     * Track 2: drives through at 100 px/s, never stopped. At 10 fps. */
    for (int f = 0; f <= 100; f++) {
        double t = f * 0.1;
        double x1 = t < 2 ? 50 + 100 * t : t < 6 ? 250 : 250 + 100 * (t - 6);
        obj o[2] = { { 1, 2, x1, 100 }, { 2, 2, 50 + 100 * t, 150 } };
        feed(a, o, 2, t);
        double sp;
        if (f == 30) CHECK(it_analytics_track_speed(a, 2, &sp) == 0 && NEAR(sp, 100, 1e-6));
        if (f == 40) CHECK(it_analytics_track_speed(a, 1, &sp) == 0 && sp < 1e-9);
    }
    CHECK(count_type(IT_AN_STOPPED_VEHICLE) == 1);
    const it_an_event *s = first_of(IT_AN_STOPPED_VEHICLE);
    /* The 1 s window reads 0 from t = 3 on; 2 s later is t = 5. */
    CHECKF(s && s->track_id == 1 && NEAR(s->time, 5.0, 1e-6) && s->dwell_s >= 2, "t %g", s ? s->time : -1);
    it_analytics_free(a);
}

static void test_congestion(void) {
    it_an_zone z = square_zone(0, 0, 400, 400);
    z.congestion_count = 2; /* over 2: 3 or more */
    z.congestion_s = 1;
    it_analytics *a = with_zone(&z);
    if (!a) return;
    log_reset();
    /* 3 tracks from t = 0 to 3, then track 3 leaves (2 left: clears), back at t = 4. */
    for (int f = 0; f <= 60; f++) {
        double t = f * 0.1;
        int away = t >= 3 && t < 4;
        obj o[3] = { { 1, 2, 50, 50 }, { 2, 2, 150, 50 }, { 3, 2, away ? 600 : 250, 50 } };
        feed(a, o, 3, t);
    }
    CHECK(count_type(IT_AN_CONGESTION) == 2);
    int k = 0;
    for (int i = 0; i < log_n; i++)
        if (log_ev[i].type == IT_AN_CONGESTION) {
            CHECK(log_ev[i].count == 3 && log_ev[i].zone == 0 && log_ev[i].track_id == 0);
            CHECK(NEAR(log_ev[i].time, k == 0 ? 1.0 : 5.0, 1e-6));
            k++;
        }
    it_analytics_free(a);

    /* At exactly congestion_count, never. */
    a = with_zone(&z);
    log_reset();
    for (int f = 0; f <= 40; f++) {
        obj o[2] = { { 1, 2, 50, 50 }, { 2, 2, 150, 50 } };
        feed(a, o, 2, f * 0.1);
    }
    CHECK(count_type(IT_AN_CONGESTION) == 0);
    it_analytics_free(a);
}

static void test_homography(void) {
    /* A perspective H, 4 points through it, solved back. */
    const double H0[9] = { 0.8, 0.1, 5, -0.05, 1.2, 3, 1e-4, 2e-4, 1 };
    const double src[4][2] = { { 100, 400 }, { 700, 420 }, { 600, 150 }, { 200, 140 } };
    double dst[4][2], H[9];
    for (int i = 0; i < 4; i++) CHECK(it_homography_apply(H0, src[i][0], src[i][1], &dst[i][0], &dst[i][1]) == 0);
    CHECK_OK(it_homography_solve(src, dst, H));
    for (int i = 0; i < 9; i++) CHECKF(NEAR(H[i], H0[i], 1e-9 * fmax(1, fabs(H0[i]))), "H[%d] %g", i, H[i]);
    double x, y;
    CHECK(it_homography_apply(H, 400, 300, &x, &y) == 0);
    double x0, y0;
    it_homography_apply(H0, 400, 300, &x0, &y0);
    CHECK(NEAR(x, x0, 1e-6) && NEAR(y, y0, 1e-6));
    /* Three collinear points cannot define one. */
    const double bad[4][2] = { { 0, 0 }, { 1, 1 }, { 2, 2 }, { 0, 5 } };
    CHECK(it_homography_solve(bad, dst, H) == ITSCAM_ERR_INVALID_ARG);
}

static void test_speed(void) {
    /* 10 px = 1 m; 10 px a frame at 25 fps = 25 m/s = 90 km/h. */
    it_an_config c = it_an_default_config();
    c.has_calibration = 1;
    const double img[4][2] = { { 0, 0 }, { 100, 0 }, { 100, 100 }, { 0, 100 } };
    const double wld[4][2] = { { 0, 0 }, { 10, 0 }, { 10, 10 }, { 0, 10 } };
    memcpy(c.calib_image, img, sizeof img);
    memcpy(c.calib_world, wld, sizeof wld);
    for (int pass = 0; pass < 2; pass++) {
        c.speed_limit_kmh = pass == 0 ? 80 : 100;
        it_analytics *a = it_analytics_new(&c);
        CHECKF(a != NULL, "%s", itscam_last_error());
        if (!a) return;
        log_reset();
        double sp = -1;
        for (int f = 0; f < 50; f++) {
            feed1(a, 1, 2, 10 * f, 300, f / 25.0);
            if (f == 5) CHECK(it_analytics_track_speed(a, 1, &sp) == -1); /* under half the window */
        }
        CHECK(it_analytics_track_speed(a, 1, &sp) == 0);
        CHECKF(NEAR(sp, 90, 1e-6), "speed %.9f", sp);
        CHECK(count_type(IT_AN_SPEEDING) == (pass == 0 ? 1 : 0));
        const it_an_event *e = first_of(IT_AN_SPEEDING);
        if (pass == 0) CHECK(e && NEAR(e->speed, 90, 1e-6) && e->track_id == 1);
        it_analytics_free(a);
    }
}

static void test_normalized(void) {
    /* A 1000x500 frame: the line at y = 0.5 is y = 250 px, the zone the right half. */
    it_an_line l;
    memset(&l, 0, sizeof l);
    l.points[0][0] = 0;
    l.points[0][1] = 0.5f;
    l.points[1][0] = 1;
    l.points[1][1] = 0.5f;
    l.direction = IT_AN_DIR_BOTH;
    it_an_zone z = square_zone(0.5, 0, 1, 1);
    it_an_config c = it_an_default_config();
    c.normalized = 1;
    c.frame_width = 1000;
    c.frame_height = 500;
    c.lines = &l;
    c.n_lines = 1;
    c.zones = &z;
    c.n_zones = 1;
    c.has_calibration = 1; /* 0.1 of the width = 100 px = 1 m */
    const double img[4][2] = { { 0, 0 }, { 0.1, 0 }, { 0.1, 0.2 }, { 0, 0.2 } };
    const double wld[4][2] = { { 0, 0 }, { 1, 0 }, { 1, 1 }, { 0, 1 } };
    memcpy(c.calib_image, img, sizeof img);
    memcpy(c.calib_world, wld, sizeof wld);
    it_analytics *a = it_analytics_new(&c);
    CHECKF(a != NULL, "%s", itscam_last_error());
    if (!a) return;
    log_reset();
    /* Down from y = 200 to 300 px at x = 700 (in the zone), 10 px a frame at 10 fps. */
    for (int f = 0; f <= 10; f++) feed1(a, 1, 2, 700, 200 + 10 * f, f * 0.1);
    CHECK(it_analytics_line_count(a, 0, 2, IT_AN_DIR_A_TO_B) == 1);
    CHECK(it_analytics_zone_occupancy(a, 0, 2) == 1);
    double sp;
    CHECK(it_analytics_track_speed(a, 1, &sp) == 0 && NEAR(sp, 0.1 * 10 * 3.6, 1e-6)); /* 0.1 m a frame */
    it_analytics_free(a);

    c.frame_width = 0;
    CHECK(it_analytics_new(&c) == NULL && strstr(itscam_last_error(), "frame size"));
}

static void test_track_lifecycle(void) {
    it_an_zone z = square_zone(0, 0, 400, 400);
    it_an_config c = it_an_default_config();
    c.zones = &z;
    c.n_zones = 1;
    c.lost_frames = 5;
    it_analytics *a = it_analytics_new(&c);
    CHECKF(a != NULL, "%s", itscam_last_error());
    if (!a) return;
    log_reset();
    /* Seen on frames 1..10 (t 0..0.9); unseen from frame 11: ends on frame 15. */
    for (int f = 0; f < 20; f++) {
        if (f < 10) feed1(a, 42, 5, 100, 100, f * 0.1);
        else feed(a, NULL, 0, f * 0.1);
        if (f == 13) CHECK(count_type(IT_AN_TRACK_END) == 0 && it_analytics_track_count(a) == 1);
    }
    CHECK(count_type(IT_AN_TRACK_START) == 1 && count_type(IT_AN_TRACK_END) == 1);
    const it_an_event *e = first_of(IT_AN_TRACK_END);
    CHECK(e && e->track_id == 42 && e->class_id == 5 && NEAR(e->time, 1.4, 1e-9) && NEAR(e->dwell_s, 0.9, 1e-9));
    /* The zone exit comes first, with the dwell up to the last sighting. */
    CHECK(log_n >= 2 && log_ev[log_n - 2].type == IT_AN_ZONE_EXIT && NEAR(log_ev[log_n - 2].dwell_s, 0.9, 1e-9));
    CHECK(log_ev[0].type == IT_AN_TRACK_START && log_ev[1].type == IT_AN_ZONE_ENTER);
    CHECK(it_analytics_track_count(a) == 0);
    it_analytics_free(a);
}

static void test_bounds_and_errors(void) {
    it_an_config c = it_an_default_config();
    c.max_tracks = 8;
    it_analytics *a = it_analytics_new(&c);
    CHECKF(a != NULL, "%s", itscam_last_error());
    if (!a) return;
    /* 20 new tracks a frame with a table of 8: the least recently seen go, as track_end. */
    it_an_event ev[4];
    for (int f = 0; f < 3; f++) {
        it_track_out tr[20];
        memset(tr, 0, sizeof tr);
        for (int i = 0; i < 20; i++) {
            tr[i].track_id = f * 20 + i + 1;
            tr[i].box[2] = tr[i].box[3] = 10;
        }
        int k = it_analytics_update(a, tr, 20, f, ev, 4);
        CHECKF(k == (f == 0 ? 20 + 12 : 20 + 20), "frame %d: %d events", f, k); /* more than cap: all counted */
        CHECK(ev[0].type == (f == 0 ? IT_AN_TRACK_START : IT_AN_TRACK_END));
        CHECK(it_analytics_track_count(a) == 8);
    }
    /* Bad input leaves the state alone. */
    it_track_out bad;
    memset(&bad, 0, sizeof bad);
    bad.box[1] = NAN;
    CHECK(it_analytics_update(a, &bad, 1, 5, ev, 4) == -1 && strstr(itscam_last_error(), "not finite"));
    CHECK(it_analytics_update(a, NULL, 0, 1, ev, 4) == -1 && strstr(itscam_last_error(), "backwards"));
    CHECK(it_analytics_update(a, NULL, -1, 5, ev, 4) == -1);
    CHECK(it_analytics_track_count(a) == 8);
    it_analytics_free(a);
    it_analytics_free(NULL);

    it_an_line l = hline(IT_AN_DIR_BOTH);
    l.points[1][0] = 0;
    l.points[1][1] = 100;
    c = it_an_default_config();
    c.lines = &l;
    c.n_lines = 1;
    CHECK(it_analytics_new(&c) == NULL && strstr(itscam_last_error(), "stop_line"));
    it_an_zone z = square_zone(0, 0, 1, 1);
    z.n_points = 2;
    c = it_an_default_config();
    c.zones = &z;
    c.n_zones = 1;
    CHECK(it_analytics_new(&c) == NULL && strstr(itscam_last_error(), "zone 0"));
    c = it_an_default_config();
    c.has_calibration = 1; /* all zeros: singular */
    CHECK(it_analytics_new(&c) == NULL && strstr(itscam_last_error(), "calibration"));
    CHECK(strcmp(it_an_event_name(IT_AN_STOPPED_VEHICLE), "stopped_vehicle") == 0);
    CHECK(strcmp(it_an_dir_name(IT_AN_DIR_B_TO_A), "b_to_a") == 0);
}

/* Every allocation of it_analytics_new failing in turn gives NULL with a message, no leak. */
static void test_alloc_failures(void) {
    it_an_line l = hline(IT_AN_DIR_BOTH);
    it_an_zone z = square_zone(0, 0, 100, 100);
    it_an_config c = it_an_default_config();
    c.lines = &l;
    c.n_lines = 1;
    c.zones = &z;
    c.n_zones = 1;
    for (int k = 0; k < 16; k++) {
        it_alloc_fail_after(k);
        it_analytics *a = it_analytics_new(&c);
        it_alloc_fail_after(-1);
        if (a) {
            it_analytics_free(a);
            CHECK(k >= 6);
            break;
        }
        CHECK(strstr(itscam_last_error(), "memory") != NULL);
    }
}

int main(void) {
    test_jitter();
    test_uturn();
    test_wrong_way();
    test_counts_by_class();
    test_zone_dwell();
    test_loitering();
    test_stopped_vehicle();
    test_congestion();
    test_homography();
    test_speed();
    test_normalized();
    test_track_lifecycle();
    test_bounds_and_errors();
    test_alloc_failures();
    return check_done("test_analytics");
}
