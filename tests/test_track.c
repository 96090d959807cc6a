/* ByteTrack: the Kalman filter against hand-computed values, the assignment solver (both
 * objectives: with a cost limit and most-pairs-then-least-cost) against
 * brute force, and tracker scenes with known answers (crossing, occlusion, low scores,
 * new-track threshold, ids per tracker, Ultralytics' lifecycle quirks). */
#include "check.h"
#include "core/core.h"
#include "track/assign.h"
#include "track/bytetrack.h"
#include "track/kalman.h"
#include "track/track_json.h"

#include <math.h>
#include <stdint.h>

#define NEAR(a, b, tol) (fabs((double)(a) - (double)(b)) <= (tol))

/* ---- Kalman filter ---- */

static void test_kalman(void) {
    /* A 20x40 box centred at (100, 50): x, y, aspect 0.5, height 40. */
    double mean[8], cov[64];
    const double z0[4] = { 100, 50, 0.5, 40 };
    it_kf_initiate(z0, mean, cov);
    /* std = 2/20 h = 4 for positions, 10/160 h = 2.5 for velocities; 1e-2 and 1e-5 for a. */
    CHECK(NEAR(cov[0 * 8 + 0], 16, 1e-12) && NEAR(cov[1 * 8 + 1], 16, 1e-12) && NEAR(cov[3 * 8 + 3], 16, 1e-12));
    CHECK(NEAR(cov[2 * 8 + 2], 1e-4, 1e-16) && NEAR(cov[6 * 8 + 6], 1e-10, 1e-20));
    CHECK(NEAR(cov[4 * 8 + 4], 6.25, 1e-12) && NEAR(cov[7 * 8 + 7], 6.25, 1e-12) && cov[0 * 8 + 4] == 0);
    for (int i = 0; i < 4; i++) CHECK(mean[i] == z0[i] && mean[4 + i] == 0);

    /* Predict: P_xx = 16 + 6.25 + (h/20)^2 = 26.25, P_xv = 6.25, P_vv = 6.25 + (h/160)^2. */
    it_kf_predict(mean, cov);
    CHECK(NEAR(cov[0], 26.25, 1e-12) && NEAR(cov[0 * 8 + 4], 6.25, 1e-12) && NEAR(cov[4 * 8 + 0], 6.25, 1e-12));
    CHECK(NEAR(cov[4 * 8 + 4], 6.3125, 1e-12) && NEAR(cov[3 * 8 + 3], 26.25, 1e-12));
    CHECK(NEAR(cov[2 * 8 + 2], 2e-4 + 1e-10, 1e-16));
    CHECK(mean[0] == 100 && mean[4] == 0);

    /* Update with the box moved 10 px right. Each coordinate is its own 2x2 problem:
     * S = 26.25 + (h/20)^2 = 30.25, gain (26.25, 6.25) / 30.25. */
    const double z1[4] = { 110, 50, 0.5, 40 };
    CHECK(it_kf_update(mean, cov, z1) == 0);
    double S = 30.25;
    CHECKF(NEAR(mean[0], 100 + 10 * 26.25 / S, 1e-9), "x %.9f", mean[0]);
    CHECKF(NEAR(mean[4], 10 * 6.25 / S, 1e-9), "vx %.9f", mean[4]);
    CHECK(NEAR(mean[1], 50, 1e-12) && NEAR(mean[5], 0, 1e-12) && NEAR(mean[3], 40, 1e-12));
    CHECK(NEAR(cov[0], 26.25 * 4 / S, 1e-9) && NEAR(cov[0 * 8 + 4], 6.25 * 4 / S, 1e-9));
    CHECK(NEAR(cov[4 * 8 + 4], 6.3125 - 6.25 * 6.25 / S, 1e-9));
    CHECK(NEAR(cov[0 * 8 + 4], cov[4 * 8 + 0], 1e-12)); /* stays symmetric */
    /* The next prediction moves by the estimated velocity. */
    double x1 = mean[0], v1 = mean[4];
    it_kf_predict(mean, cov);
    CHECK(NEAR(mean[0], x1 + v1, 1e-12));

    /* A box at constant velocity (+5 px/frame in x, -2 in y): the velocity converges. */
    double z[4] = { 100, 200, 0.5, 40 };
    it_kf_initiate(z, mean, cov);
    for (int f = 1; f <= 60; f++) {
        z[0] += 5;
        z[1] -= 2;
        it_kf_predict(mean, cov);
        if (f == 60) CHECKF(NEAR(mean[0], z[0], 0.05) && NEAR(mean[1], z[1], 0.05), "predicted (%g, %g)", mean[0], mean[1]);
        CHECK(it_kf_update(mean, cov, z) == 0);
    }
    CHECKF(NEAR(mean[4], 5, 0.02) && NEAR(mean[5], -2, 0.02), "velocity (%g, %g)", mean[4], mean[5]);
    CHECK(NEAR(mean[3], 40, 1e-6) && NEAR(mean[7], 0, 1e-6));

    /* A NaN measurement is refused, the state kept. */
    double keep = mean[0];
    cov[0] = NAN;
    const double zn[4] = { 1, 1, 1, 1 };
    CHECK(it_kf_update(mean, cov, zn) == -1 && mean[0] == keep);
}

/* ---- assignment ---- */

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static double urand(void) { /* xorshift64*, deterministic */
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (double)((rng * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}

/* The optimum by brute force over every partial matching of rows r.. (m <= 8): the least
 * sum(cost - limit) over allowed pairs with a finite limit; with limit = INFINITY the most
 * pairs first, then the least total. */
typedef struct best {
    int pairs;
    double val; /* sum(cost - limit), or sum(cost) without a limit */
} best;

static int better(best a, best b, int no_limit) {
    if (no_limit && a.pairs != b.pairs) return a.pairs > b.pairs;
    return a.val < b.val - 1e-12;
}

static best brute(const double *c, int n, int m, double limit, int r, unsigned used) {
    best none = { 0, 0 };
    if (r == n) return none;
    int no_limit = isinf(limit);
    best b = brute(c, n, m, limit, r + 1, used); /* row r unmatched */
    for (int j = 0; j < m; j++) {
        double x = c[r * m + j];
        if ((used & (1u << j)) || !isfinite(x) || !(x < limit)) continue;
        best s = brute(c, n, m, limit, r + 1, used | (1u << j));
        s.pairs++;
        s.val += no_limit ? x : x - limit;
        if (better(s, b, no_limit)) b = s;
    }
    return b;
}

/* A valid matching (row_match and col_match agree, allowed pairs only) and its score. */
static int check_matching(const double *c, int n, int m, double limit, const int *rm, const int *cm, best *got,
                          double *total) {
    int ok = 1, no_limit = isinf(limit);
    got->pairs = 0, got->val = 0, *total = 0;
    for (int i = 0; i < n; i++) {
        if (rm[i] < 0) continue;
        double x = c[i * m + rm[i]];
        ok &= rm[i] < m && cm[rm[i]] == i && isfinite(x) && x < limit;
        got->pairs++;
        got->val += no_limit ? x : x - limit;
        *total += x;
    }
    for (int j = 0; j < m; j++) ok &= cm[j] < 0 || (cm[j] < n && rm[cm[j]] == j);
    return ok;
}

static void test_assign(void) {
    it_assign_ws ws = { 0 };
    int rm[8], cm[8];
    double total;
    /* Greedy would take (0,0) at 0.1; the optimum pairs 0-1 and 1-0. Row 2 costs 0.9 > 0.8. */
    const double c1[] = { 0.1, 0.2, 0.15, 0.9, 0.95, 0.9 };
    CHECK_OK(it_assign(&ws, c1, 3, 2, 0.8, rm, cm, &total));
    CHECK(rm[0] == 1 && rm[1] == 0 && rm[2] == -1 && cm[0] == 1 && cm[1] == 0 && fabs(total - 0.35) < 1e-12);
    /* A cost exactly at the limit is not matched; NaN and -inf never; empty sides are fine. */
    const double c2[] = { 0.8, NAN, -INFINITY };
    CHECK_OK(it_assign(&ws, c2, 1, 3, 0.8, rm, cm, NULL));
    CHECK(rm[0] == -1 && cm[0] == -1 && cm[1] == -1 && cm[2] == -1);
    CHECK_OK(it_assign(&ws, NULL, 0, 3, 0.8, rm, cm, &total));
    CHECK(cm[0] == -1 && cm[2] == -1 && total == 0);
    CHECK_OK(it_assign(&ws, NULL, 2, 0, 0.8, rm, cm, NULL));
    CHECK(rm[0] == -1 && rm[1] == -1);
    CHECK(it_assign(&ws, c1, -1, 2, 0.8, rm, cm, NULL) == ITSCAM_ERR_INVALID_ARG);
    CHECK(it_assign(&ws, NULL, 2, 2, 0.8, rm, cm, NULL) == ITSCAM_ERR_INVALID_ARG);
    CHECK(it_assign(&ws, c1, 3, 2, NAN, rm, cm, NULL) == ITSCAM_ERR_INVALID_ARG);
    const double huge[] = { 1e308, -1e308, 1e308, 1e308 };
    CHECK(it_assign(&ws, huge, 2, 2, INFINITY, rm, cm, NULL) == ITSCAM_ERR_INVALID_ARG);
    CHECK(rm[0] == -1 && rm[1] == -1);

    /* Without a limit: the full assignment (scipy's linear_sum_assignment). 3x3 with a known
     * optimum 1 + 2 + 2 = 5 (rows 0->1, 1->0, 2->2); tall 3x2 leaves row 1 out. */
    const double sq[9] = { 4, 1, 3, 2, 0, 5, 3, 2, 2 };
    CHECK_OK(it_assign(&ws, sq, 3, 3, INFINITY, rm, cm, &total));
    CHECK(rm[0] == 1 && rm[1] == 0 && rm[2] == 2 && cm[1] == 0 && cm[0] == 1 && cm[2] == 2 && fabs(total - 5) < 1e-12);
    const double tall[6] = { 1, 10, 5, 5, 10, 1 };
    CHECK_OK(it_assign(&ws, tall, 3, 2, INFINITY, rm, NULL, &total));
    CHECK(rm[0] == 0 && rm[1] == -1 && rm[2] == 1 && fabs(total - 2) < 1e-12);
    /* Forbidden pairs: more matches beat a cheaper total (py-motmetrics' convention). Row 0
     * may only take column 0; the cheap (1,0) = 0 would leave it alone. */
    const double f[4] = { 0.1, INFINITY, 0.0, 0.4 };
    CHECK_OK(it_assign(&ws, f, 2, 2, INFINITY, rm, NULL, &total));
    CHECK(rm[0] == 0 && rm[1] == 1 && fabs(total - 0.5) < 1e-12);
    const double none[4] = { NAN, INFINITY, NAN, -INFINITY };
    CHECK_OK(it_assign(&ws, none, 2, 2, INFINITY, rm, cm, &total));
    CHECK(rm[0] == -1 && rm[1] == -1 && cm[0] == -1 && cm[1] == -1 && total == 0);
    /* Negative costs (the identity matching maximises shared frames as -frames). */
    const double neg[6] = { -5, 0, -1, 0, -4, -3 };
    CHECK_OK(it_assign(&ws, neg, 2, 3, INFINITY, rm, NULL, &total));
    CHECK(rm[0] == 0 && rm[1] == 1 && fabs(total + 9) < 1e-12);

    /* Random matrices up to 7x7 against brute force, both objectives: same optimum, a
     * valid matching. Sparse ones split into several connected parts; rounded ones have
     * many ties. */
    int bad = 0, trials = 6000;
    for (int trial = 0; trial < trials; trial++) {
        int n = 1 + (int)(urand() * 7), m = 1 + (int)(urand() * 7);
        int no_limit = trial % 2;
        double limit = no_limit ? INFINITY : 0.2 + 0.7 * urand();
        double c[49];
        double sparsity = urand();
        for (int k = 0; k < n * m; k++) {
            c[k] = urand();
            if (trial % 7 == 0) c[k] = round(c[k] * 4) / 4;
            if (trial % 5 == 0) c[k] = c[k] * 20 - 10;
            if (urand() < sparsity) c[k] = no_limit ? (trial % 3 ? INFINITY : NAN) : 1.0;
        }
        CHECK_OK(it_assign(&ws, c, n, m, limit, rm, cm, &total));
        best got, want = brute(c, n, m, limit, 0, 0);
        double sum;
        int ok = check_matching(c, n, m, limit, rm, cm, &got, &sum);
        ok &= fabs(sum - total) < 1e-9 && fabs(got.val - want.val) <= 1e-9;
        if (no_limit) ok &= got.pairs == want.pairs;
        if (!ok) {
            if (bad++ < 5)
                fprintf(stderr, "assign trial %d (%dx%d, limit %g): got %d pairs %.9f, want %d pairs %.9f, total %.9f\n",
                        trial, n, m, limit, got.pairs, got.val, want.pairs, want.val, total);
        }
    }
    CHECKF(bad == 0, "%d of %d random matrices wrong", bad, trials);

    /* Larger ones in one connected part: the Hungarian path, against a known optimum (a
     * permutation of cheap cells hidden among dear ones), square and rectangular, with
     * and without a limit, and the scratch reused across sizes. */
    enum { N = 60, W = 75 };
    static double big[N * W];
    int perm[W];
    for (int shape = 0; shape < 4; shape++) {
        int rows = N, cols = shape < 2 ? N : W;
        double limit = shape % 2 ? INFINITY : 0.8;
        for (int j = 0; j < cols; j++) perm[j] = j;
        for (int j = cols - 1; j > 0; j--) {
            int k = (int)(urand() * (j + 1)), tmp = perm[j];
            perm[j] = perm[k];
            perm[k] = tmp;
        }
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < cols; j++) big[i * cols + j] = j == perm[i] ? 0.05 : 0.3 + 0.4 * urand();
        int rmb[N], cmb[W];
        CHECK_OK(it_assign(&ws, big, rows, cols, limit, rmb, cmb, &total));
        int right = 0;
        for (int i = 0; i < rows; i++) right += rmb[i] == perm[i];
        CHECKF(right == rows && fabs(total - 0.05 * rows) < 1e-9, "shape %d: %d of %d right", shape, right, rows);
        /* The transpose: the same pairs, seen from the other side. */
        static double bt[N * W];
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < cols; j++) bt[j * rows + i] = big[i * cols + j];
        int rmt[W], cmt[N];
        CHECK_OK(it_assign(&ws, bt, cols, rows, limit, rmt, cmt, NULL));
        right = 0;
        for (int i = 0; i < rows; i++) right += cmt[i] == perm[i];
        CHECKF(right == rows, "shape %d transposed: %d of %d right", shape, right, rows);
    }
    it_assign_ws_free(&ws);
    it_assign_ws_free(&ws); /* harmless twice */
}

/* ---- tracker scenes ---- */

static it_track_det det(float x1, float y1, float w, float h, float score, int cls) {
    it_track_det d = { { x1, y1, x1 + w, y1 + h }, score, cls };
    return d;
}

/* The output track matched to detection k this frame, or NULL. */
static const it_track_out *by_det(const it_track_out *o, int n, int k) {
    for (int i = 0; i < n; i++)
        if (o[i].det_index == k) return &o[i];
    return NULL;
}

static it_track_out out[64];

static void test_ids_per_tracker(void) {
    it_tracker *a = it_tracker_new(NULL), *b = it_tracker_new(NULL);
    CHECK(a && b);
    it_track_det d[2] = { det(10, 10, 40, 80, 0.9f, 2), det(300, 10, 40, 80, 0.8f, 0) };
    int n = it_tracker_update(a, d, 2, out, 64);
    CHECK(n == 2 && out[0].track_id == 1 && out[1].track_id == 2);
    /* A second camera's tracker counts on its own: its first track is 1 too. */
    n = it_tracker_update(b, d + 1, 1, out, 64);
    CHECK(n == 1 && out[0].track_id == 1 && out[0].det_index == 0 && out[0].class_id == 0);
    /* On frame 1 tracks are active at once, with the detection's box. */
    CHECK(NEAR(out[0].box[0], 300, 1e-4) && NEAR(out[0].box[3], 90, 1e-4) && NEAR(out[0].score, 0.8, 1e-6));
    /* After a reset, ids and frames start again. */
    it_tracker_reset(a);
    CHECK(it_tracker_frame(a) == 0);
    n = it_tracker_update(a, d + 1, 1, out, 64);
    CHECK(n == 1 && out[0].track_id == 1);
    it_tracker_free(a);
    it_tracker_free(b);
    it_tracker_free(NULL);
}

/* Two cars crossing: A moves right, B left, overlapping by half their height while they
 * pass (IoU up to 1/3); the detection order flips every frame. Ids never swap. */
static void test_crossing(void) {
    it_tracker *t = it_tracker_new(NULL);
    int bad = 0, n_frames = 50;
    for (int f = 0; f < n_frames; f++) {
        it_track_det a = det(0 + 8.0f * f, 100, 40, 60, 0.85f, 2), b = det(400 - 8.0f * f, 130, 40, 60, 0.8f, 7);
        it_track_det d[2];
        int ia = f % 2, ib = 1 - ia;
        d[ia] = a;
        d[ib] = b;
        int n = it_tracker_update(t, d, 2, out, 64);
        const it_track_out *ta = by_det(out, n, ia), *tb = by_det(out, n, ib);
        if (n != 2 || !ta || !tb || ta->track_id != 1 || tb->track_id != 2 || ta->class_id != 2 || tb->class_id != 7) {
            if (bad++ < 3) fprintf(stderr, "crossing frame %d: %d tracks\n", f, n);
        }
        /* the Kalman box follows the detection closely once the velocity is known */
        if (f > 10 && ta && !NEAR(ta->box[0], a.box[0], 1.0)) bad++;
    }
    CHECKF(bad == 0, "%d bad frames", bad);
    it_tracker_free(t);
}

/* One object moving 2 px/frame, hidden for `gap` frames: returns the id seen after it
 * comes back (on the frame it returns, or the next one for a new, unconfirmed track). */
static int64_t occlusion_id(int gap, it_tracker *t, int *start) {
    int f = *start;
    int64_t id = -1;
    for (int k = 0; k < 20; k++, f++) {
        it_track_det d = det(10 + 2.0f * f, 50, 40, 80, 0.9f, 0);
        it_tracker_update(t, &d, 1, out, 64);
    }
    for (int k = 0; k < gap; k++, f++) it_tracker_update(t, NULL, 0, out, 64);
    for (int k = 0; k < 2; k++, f++) {
        it_track_det d = det(10 + 2.0f * f, 50, 40, 80, 0.9f, 0);
        int n = it_tracker_update(t, &d, 1, out, 64);
        if (n == 1 && id < 0) id = out[0].track_id;
    }
    *start = f;
    return id;
}

static void test_occlusion(void) {
    /* track_buffer 30 at 30 fps: max_time_lost 30. */
    int f = 0;
    it_tracker *t = it_tracker_new(NULL);
    CHECK(it_tracker_max_time_lost(t) == 30);
    CHECK(occlusion_id(0, t, &f) == 1);
    CHECKF(occlusion_id(10, t, &f) == 1, "a 10-frame occlusion keeps the id");
    CHECKF(occlusion_id(29, t, &f) == 1, "a 29-frame occlusion keeps the id");
    it_tracker_free(t);
    t = it_tracker_new(NULL);
    f = 0;
    CHECK(occlusion_id(0, t, &f) == 1);
    int64_t id = occlusion_id(45, t, &f);
    CHECKF(id == 2, "a 45-frame occlusion gives a new id (got %lld)", (long long)id);
    it_tracker_free(t);

    /* The exact edge, as in Ultralytics: a track last matched on frame f is marked removed
     * on frame f + 31 but stays in the lost list for that frame's bookkeeping, so it can be
     * found again on frame f + 32: 31 missing frames keep the id, 32 do not. */
    t = it_tracker_new(NULL);
    f = 0;
    occlusion_id(0, t, &f);
    CHECK(occlusion_id(30, t, &f) == 1);
    it_tracker_free(t);
    t = it_tracker_new(NULL);
    f = 0;
    occlusion_id(0, t, &f);
    CHECKF(occlusion_id(31, t, &f) == 1, "31 missing frames: found again in the extra frame");
    /* ...and, as in Ultralytics, its id is now in the removed history, so the next time it
     * is lost it is dropped at once: even a 2-frame occlusion gives a new id. */
    int64_t again = occlusion_id(2, t, &f);
    CHECKF(again == 2, "lost again after a late re-find: new id (got %lld)", (long long)again);
    it_tracker_free(t);
    t = it_tracker_new(NULL);
    f = 0;
    occlusion_id(0, t, &f);
    CHECK(occlusion_id(32, t, &f) == 2);
    it_tracker_free(t);

    /* frame_rate scales the buffer: 15 fps keeps lost tracks 15 frames. */
    it_track_params p = it_track_default_params();
    p.frame_rate = 15;
    t = it_tracker_new(&p);
    CHECK(it_tracker_max_time_lost(t) == 15);
    f = 0;
    occlusion_id(0, t, &f);
    CHECK(occlusion_id(12, t, &f) == 1);
    CHECK(occlusion_id(20, t, &f) == 2);
    it_tracker_free(t);
}

/* A low-score detection keeps a track alive (second association), and would not start one. */
static void test_low_score(void) {
    it_tracker *t = it_tracker_new(NULL);
    int bad = 0;
    for (int f = 0; f < 100; f++) {
        /* object 0: 0.9 for 5 frames, then 0.15 for 80 frames (far beyond track_buffer),
         * then 0.9 again; object 1: 0.15 throughout. */
        float s = f < 5 || f >= 85 ? 0.9f : 0.15f;
        it_track_det d[2] = { det(100 + 3.0f * f, 40, 50, 50, s, 1), det(100, 300, 50, 50, 0.15f, 1) };
        int n = it_tracker_update(t, d, 2, out, 64);
        const it_track_out *o = by_det(out, n, 0);
        if (n != 1 || !o || o->track_id != 1 || !NEAR(o->score, s, 1e-6)) {
            if (bad++ < 3) fprintf(stderr, "low score frame %d: %d tracks\n", f, n);
        }
    }
    CHECKF(bad == 0, "%d bad frames", bad);
    it_tracker_free(t);

    /* A low-score box that overlaps too little (IoU < 0.5) does not hold the track. */
    t = it_tracker_new(NULL);
    it_track_det d = det(0, 0, 100, 100, 0.9f, 0);
    it_tracker_update(t, &d, 1, out, 64);
    it_tracker_update(t, &d, 1, out, 64);
    d = det(60, 0, 100, 100, 0.2f, 0); /* IoU 40/160 = 0.25 with the track */
    CHECK(it_tracker_update(t, &d, 1, out, 64) == 0);
    it_tracker_free(t);

    /* With fuse_score_low (Ultralytics >= 8.4.40) the same low scores cannot match at all:
     * IoU x 0.15 < 0.5. */
    it_track_params p = it_track_default_params();
    p.fuse_score_low = 1;
    t = it_tracker_new(&p);
    d = det(0, 0, 100, 100, 0.9f, 0);
    it_tracker_update(t, &d, 1, out, 64);
    d.score = 0.15f;
    CHECK(it_tracker_update(t, &d, 1, out, 64) == 0);
    it_tracker_free(t);
}

/* Below new_track_thresh: never a track, though such a detection still feeds one. */
static void test_new_track_thresh(void) {
    it_track_params p = it_track_default_params();
    p.new_track_thresh = 0.6f;
    it_tracker *t = it_tracker_new(&p);
    int bad = 0;
    for (int f = 0; f < 40; f++) {
        /* object 0 at 0.5 (a high detection, below new_track_thresh) never starts;
         * object 1 starts at 0.9 and then drops to 0.5 and is kept through association 1. */
        it_track_det d[2] = { det(10 + f, 10, 30, 30, 0.5f, 0), det(200, 200 + f, 30, 30, f < 3 ? 0.9f : 0.5f, 0) };
        int n = it_tracker_update(t, d, 2, out, 64);
        if (n != 1 || out[0].det_index != 1 || out[0].track_id != 1) bad++;
    }
    CHECKF(bad == 0, "%d bad frames", bad);
    it_tracker_free(t);

    /* With the defaults (high = new = 0.25) a 0.2 object is a low detection: never a track. */
    t = it_tracker_new(NULL);
    int total = 0;
    for (int f = 0; f < 40; f++) {
        it_track_det d = det(10 + f, 10, 30, 30, 0.2f, 0);
        total += it_tracker_update(t, &d, 1, out, 64);
    }
    CHECK(total == 0);
    it_tracker_free(t);
}

/* A track born after frame 1 waits one frame (unconfirmed); a one-frame false positive is
 * dropped but, as in Ultralytics, uses up an id. Boxes without area are ignored. */
static void test_unconfirmed(void) {
    it_tracker *t = it_tracker_new(NULL);
    it_track_det a = det(10, 10, 40, 40, 0.9f, 0), fp = det(300, 300, 40, 40, 0.9f, 0), late = det(500, 10, 40, 40, 0.9f, 3);
    CHECK(it_tracker_update(t, &a, 1, out, 64) == 1);
    it_track_det d2[2] = { a, fp };
    int n = it_tracker_update(t, d2, 2, out, 64); /* fp starts an unconfirmed track, id 2 */
    CHECK(n == 1 && out[0].track_id == 1);
    it_track_det d3[2] = { a, late };
    n = it_tracker_update(t, d3, 2, out, 64); /* fp gone; late unconfirmed, id 3 */
    CHECK(n == 1 && out[0].track_id == 1);
    n = it_tracker_update(t, d3, 2, out, 64); /* late confirmed */
    const it_track_out *o = by_det(out, n, 1);
    CHECK(n == 2 && o && o->track_id == 3 && o->class_id == 3);
    /* a zero-width box is skipped, not an error */
    it_track_det d4[3] = { a, late, det(50, 50, 0, 10, 0.9f, 0) };
    CHECK(it_tracker_update(t, d4, 3, out, 64) == 2);
    /* the class follows the last matched detection (Ultralytics is class-agnostic) */
    d4[0].class_id = 5;
    n = it_tracker_update(t, d4, 2, out, 64);
    o = by_det(out, n, 0);
    CHECK(o && o->track_id == 1 && o->class_id == 5);
    /* out too small: the count is still the total */
    CHECK(it_tracker_update(t, d4, 2, out, 1) == 2);
    it_tracker_free(t);
}

static void test_errors(void) {
    it_track_params p = it_track_default_params();
    p.match_thresh = 1.5f;
    CHECK(it_tracker_new(&p) == NULL && strstr(itscam_last_error(), "thresholds"));
    p = it_track_default_params();
    p.frame_rate = 0;
    CHECK(it_tracker_new(&p) == NULL && strstr(itscam_last_error(), "frame_rate"));
    p = it_track_default_params();
    p.max_tracks = 3;
    it_tracker *t = it_tracker_new(&p);
    static it_track_det many[IT_TRACK_MAX_DETS + 1];
    CHECK(it_tracker_update(t, many, IT_TRACK_MAX_DETS + 1, out, 64) == -1 && strstr(itscam_last_error(), "at most"));
    it_track_det d[4] = { det(0, 0, 10, 10, 0.9f, 0), det(100, 0, 10, 10, 0.9f, 0), det(200, 0, 10, 10, 0.9f, 0),
                          det(300, 0, 10, 10, 0.9f, 0) };
    CHECK(it_tracker_update(t, d, 4, out, 64) == -1 && strstr(itscam_last_error(), "max_tracks"));
    CHECK(it_tracker_frame(t) == 0); /* unchanged */
    d[1].box[2] = NAN;
    CHECK(it_tracker_update(t, d, 2, out, 64) == -1 && strstr(itscam_last_error(), "detection 1"));
    CHECK(it_tracker_update(t, d, 1, out, 64) == 1);
    /* tracks that end free their slots: the tracker runs on with 3 slots forever */
    int ok = 1;
    for (int f = 0; f < 200; f++) {
        it_track_det e = det((float)(f % 7) * 100, 500, 10, 10, 0.9f, 0);
        ok &= it_tracker_update(t, &e, 1, out, 64) >= 0;
    }
    CHECKF(ok, "%s", itscam_last_error());
    it_tracker_free(t);
}

/* Allocation failures: it_tracker_new fails cleanly at every allocation; an update whose
 * scratch cannot grow returns -1 and leaves a fresh tracker. */
static void test_alloc_failures(void) {
    int made = 0;
    for (int k = 0; k < 40 && !made; k++) {
        it_alloc_fail_after(k);
        it_tracker *t = it_tracker_new(NULL);
        it_alloc_fail_after(-1);
        if (t) made = 1;
        else CHECK(strstr(itscam_last_error(), "memory") != NULL);
        it_tracker_free(t);
    }
    CHECK(made);
    it_tracker *t = it_tracker_new(NULL);
    it_track_det d[3] = { det(0, 0, 10, 10, 0.9f, 0), det(100, 0, 10, 10, 0.9f, 0), det(200, 0, 10, 10, 0.9f, 0) };
    CHECK(it_tracker_update(t, d, 3, out, 64) == 3);
    it_alloc_fail_after(0); /* the 3x3 cost matrix of the next frame cannot be had */
    int n = it_tracker_update(t, d, 3, out, 64);
    it_alloc_fail_after(-1);
    CHECK(n == -1 && it_tracker_frame(t) == 0);
    CHECK(it_tracker_update(t, d, 3, out, 64) == 3 && out[0].track_id == 1);
    it_tracker_free(t);
}

static void test_json(void) {
    it_track_input in;
    const char *good = "{\"width\": 640, \"height\": 480, \"frames\": [{\"frame\": 0, \"detections\": "
                       "[{\"box\": [1, 2, 30, 40], \"score\": 0.5, \"class_id\": 3, \"class\": \"car\"}]}, "
                       "{\"frame\": 2, \"detections\": []}]}";
    CHECK_OK(it_track_input_parse(good, strlen(good), &in));
    CHECK(in.width == 640 && in.n_frames == 2 && in.frames[0].n == 1 && in.frames[1].frame == 2 && in.frames[1].n == 0);
    CHECK(in.frames[0].dets[0].box[3] == 40 && in.frames[0].dets[0].class_id == 3 && in.frames[0].scores[0] == 0.5);
    it_track_input_free(&in);
    static const struct {
        const char *text, *msg;
    } bad[] = {
        { "{\"width\": 640, \"height\": 480, \"frames\": [", "line 1" },
        { "[]", "top level" },
        { "{\"height\": 480, \"frames\": []}", "width: missing" },
        { "{\"width\": 0, \"height\": 480, \"frames\": []}", "width: 0 is outside" },
        { "{\"width\": 640, \"height\": 480}", "frames: missing" },
        { "{\"width\": 640, \"height\": 480, \"frames\": [{\"frame\": 0}]}", "frames[0].detections: missing" },
        { "{\"width\": 640, \"height\": 480, \"frames\": [{\"frame\": 1, \"detections\": []}, {\"frame\": 1, "
          "\"detections\": []}]}",
          "frames[1].frame: 1 does not follow 1" },
        { "{\"width\": 640, \"height\": 480, \"frames\": [{\"frame\": 0.5, \"detections\": []}]}",
          "frames[0].frame: not an integer" },
        { "{\"width\": 640, \"height\": 480, \"frames\": [{\"frame\": 0, \"detections\": [{\"box\": [1, 2, 3], "
          "\"score\": 0.5, \"class_id\": 0}]}]}",
          "frames[0].detections[0].box: not an array of 4" },
        { "{\"width\": 640, \"height\": 480, \"frames\": [{\"frame\": 0, \"detections\": [{\"box\": [5, 2, 3, 4], "
          "\"score\": 0.5, \"class_id\": 0}]}]}",
          "x2 < x1" },
        { "{\"width\": 640, \"height\": 480, \"frames\": [{\"frame\": 0, \"detections\": [{\"box\": [1, 2, 3, 4], "
          "\"score\": 1.5, \"class_id\": 0}]}]}",
          "frames[0].detections[0].score: 1.5 is outside" },
        { "{\"width\": 640, \"height\": 480, \"frames\": [{\"frame\": 0, \"detections\": [{\"box\": [1, 2, 3, 4], "
          "\"score\": 0.5}]}]}",
          "frames[0].detections[0].class_id: missing" },
        { "{\"width\": 640, \"width\": 640, \"height\": 480, \"frames\": []}", "duplicate" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        itscam_status st = it_track_input_parse(bad[i].text, strlen(bad[i].text), &in);
        CHECKF(st == ITSCAM_ERR_INVALID_ARG && strstr(itscam_last_error(), bad[i].msg), "case %zu: %s", i,
               itscam_last_error());
        CHECK(in.frames == NULL && in.dets == NULL);
    }
}

int main(void) {
    test_kalman();
    test_assign();
    test_ids_per_tracker();
    test_crossing();
    test_occlusion();
    test_low_score();
    test_new_track_thresh();
    test_unconfirmed();
    test_errors();
    test_alloc_failures();
    test_json();
    return check_done("test_track");
}
