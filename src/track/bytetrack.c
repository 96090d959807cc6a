/* ByteTrack per camera: the BYTE association (high-score detections first, then low-score
 * ones to the tracks left over), written from Zhang et al. (ECCV 2022) and following
 * Ultralytics' BYTETracker.update step by step, including its list bookkeeping, so that
 * the same detections give the same ids frame by frame. */
#include "track/bytetrack.h"

#include "track/assign.h"
#include "track/kalman.h"

#include <math.h>
#include <string.h>

/* Ultralytics keeps the last 1000 removed tracks and drops any lost track whose id is
 * among them (see update_lists). */
#define REMOVED_HISTORY 1000
/* remove_duplicate_stracks: a tracked and a lost track closer than this IoU distance are
 * one object. Second association and unconfirmed matching limits, fixed in Ultralytics. */
#define DUPLICATE_IOU_DIST 0.15f
#define SECOND_MATCH_THRESH 0.5
#define UNCONFIRMED_MATCH_THRESH 0.7

enum { ST_TRACKED = 1, ST_LOST = 2, ST_REMOVED = 3 };

typedef struct trk {
    double mean[8], cov[64];
    int64_t id;
    int state;
    int activated;   /* Ultralytics' is_activated: output only when set */
    int frame_id;    /* last frame it was matched (or started) */
    int start_frame;
    float score;
    int cls, idx;
    int hist_refs;   /* entries with this id in the removed history */
    unsigned stamp;  /* set membership during one update */
    int in_use;
} trk;

typedef struct hist_entry {
    int64_t id;
    int slot;
} hist_entry;

struct it_tracker {
    it_track_params p;
    int max_time_lost;
    int frame_id;
    int64_t last_id;
    unsigned stamp;
    int cap;
    trk *slots;
    int *free_slots, n_free;
    int *tracked, n_tracked; /* Ultralytics' tracked_stracks (unconfirmed included), in order */
    int *lost, n_lost;       /* lost_stracks */
    hist_entry hist[REMOVED_HISTORY];
    int hist_len, hist_pos;
    /* Per-frame lists of slots, each at most cap long. */
    int *unconf, *pool, *rtracked, *activated, *refind, *lost_new, *removed_now, *new_tracked, *new_lost, *row_match;
    /* Per-frame lists of detection indices, each at most IT_TRACK_MAX_DETS long. */
    int *high, *low, *left, *col_match;
    /* Grows to the largest cost matrix seen, then stays. */
    double *cost;
    size_t cost_cap;
    it_assign_ws ws;
};

it_track_params it_track_default_params(void) {
    it_track_params p = {
        .track_high_thresh = 0.25f,
        .track_low_thresh = 0.1f,
        .new_track_thresh = 0.25f,
        .track_buffer = 30,
        .match_thresh = 0.8f,
        .fuse_score = 1,
        .frame_rate = 30,
        .fuse_score_low = 0,
        .max_tracks = IT_TRACK_MAX_TRACKS,
    };
    return p;
}

static int unit(float x) { return isfinite(x) && x >= 0 && x <= 1; }

static itscam_status check_params(const it_track_params *p) {
    if (!unit(p->track_high_thresh) || !unit(p->track_low_thresh) || !unit(p->new_track_thresh) ||
        !unit(p->match_thresh))
        return it_err(ITSCAM_ERR_INVALID_ARG,
                      "tracker: thresholds must be within [0, 1] (high %g, low %g, new %g, match %g)",
                      p->track_high_thresh, p->track_low_thresh, p->new_track_thresh, p->match_thresh);
    if (p->track_buffer < 0 || p->track_buffer > 1000000)
        return it_err(ITSCAM_ERR_INVALID_ARG, "tracker: track_buffer %d is outside [0, 1000000]", p->track_buffer);
    if (!isfinite(p->frame_rate) || p->frame_rate <= 0 || p->frame_rate > 1000)
        return it_err(ITSCAM_ERR_INVALID_ARG, "tracker: frame_rate %g is outside (0, 1000]", p->frame_rate);
    if ((p->fuse_score != 0 && p->fuse_score != 1) || (p->fuse_score_low != 0 && p->fuse_score_low != 1))
        return it_err(ITSCAM_ERR_INVALID_ARG, "tracker: fuse_score and fuse_score_low are 0 or 1");
    if (p->max_tracks < 1 || p->max_tracks > IT_TRACK_MAX_TRACKS)
        return it_err(ITSCAM_ERR_INVALID_ARG, "tracker: max_tracks %d is outside [1, %d]", p->max_tracks,
                      IT_TRACK_MAX_TRACKS);
    return ITSCAM_OK;
}

void it_tracker_free(it_tracker *t) {
    if (!t) return;
    int **lists[] = { &t->free_slots, &t->tracked,  &t->lost,        &t->unconf,      &t->pool,
                      &t->rtracked,   &t->activated, &t->refind,     &t->lost_new,    &t->removed_now,
                      &t->new_tracked, &t->new_lost, &t->row_match,  &t->high,        &t->low,
                      &t->left,       &t->col_match };
    for (size_t i = 0; i < sizeof lists / sizeof *lists; i++) it_free(*lists[i]);
    it_free(t->slots);
    it_free(t->cost);
    it_assign_ws_free(&t->ws);
    it_free(t);
}

void it_tracker_reset(it_tracker *t) {
    if (!t) return;
    t->frame_id = 0;
    t->last_id = 0;
    t->n_tracked = t->n_lost = 0;
    t->hist_len = t->hist_pos = 0;
    t->n_free = t->cap;
    for (int i = 0; i < t->cap; i++) {
        t->slots[i].in_use = 0;
        t->free_slots[i] = t->cap - 1 - i; /* slot 0 is handed out first */
    }
}

it_tracker *it_tracker_new(const it_track_params *p) {
    it_track_params prm = p ? *p : it_track_default_params();
    if (check_params(&prm)) return NULL;
    it_tracker *t = it_calloc(1, sizeof *t);
    if (!t) {
        it_err(ITSCAM_ERR_NOMEM, "tracker: no memory");
        return NULL;
    }
    t->p = prm;
    t->cap = prm.max_tracks;
    t->max_time_lost = (int)((double)prm.frame_rate / 30.0 * prm.track_buffer);
    t->slots = it_calloc((size_t)t->cap, sizeof *t->slots);
    int ok = t->slots != NULL;
    int **per_track[] = { &t->free_slots, &t->tracked,  &t->lost,        &t->unconf,      &t->pool,
                          &t->rtracked,   &t->activated, &t->refind,     &t->lost_new,    &t->removed_now,
                          &t->new_tracked, &t->new_lost, &t->row_match };
    for (size_t i = 0; i < sizeof per_track / sizeof *per_track; i++)
        ok &= (*per_track[i] = it_malloc((size_t)t->cap * sizeof(int))) != NULL;
    int **per_det[] = { &t->high, &t->low, &t->left, &t->col_match };
    for (size_t i = 0; i < sizeof per_det / sizeof *per_det; i++)
        ok &= (*per_det[i] = it_malloc((size_t)IT_TRACK_MAX_DETS * sizeof(int))) != NULL;
    if (!ok) {
        it_tracker_free(t);
        it_err(ITSCAM_ERR_NOMEM, "tracker: no memory for %d tracks", prm.max_tracks);
        return NULL;
    }
    it_tracker_reset(t);
    return t;
}

int it_tracker_frame(const it_tracker *t) { return t ? t->frame_id : 0; }
int it_tracker_max_time_lost(const it_tracker *t) { return t ? t->max_time_lost : 0; }

/* ---- geometry, as Ultralytics computes it ---- */

/* Box of a track from its state (Ultralytics' STrack.xyxy), in float32 as its IoU sees it. */
static void track_box(const trk *tr, float box[4]) {
    double w = tr->mean[2] * tr->mean[3], h = tr->mean[3];
    double x1 = tr->mean[0] - w / 2, y1 = tr->mean[1] - h / 2;
    box[0] = (float)x1;
    box[1] = (float)y1;
    box[2] = (float)(x1 + w);
    box[3] = (float)(y1 + h);
}

static void det_xyah(const it_track_det *d, double m[4]) {
    double w = (double)d->box[2] - d->box[0], h = (double)d->box[3] - d->box[1];
    m[0] = d->box[0] + w / 2;
    m[1] = d->box[1] + h / 2;
    m[2] = w / h;
    m[3] = h;
}

/* IoU in float32 with Ultralytics' eps (metrics.bbox_ioa(iou=True)). Boxes are finite
 * here, so plain comparisons stand in for fminf/fmaxf (which are library calls). */
static inline float iou_f(const float a[4], const float b[4]) {
    float iw = (a[2] < b[2] ? a[2] : b[2]) - (a[0] > b[0] ? a[0] : b[0]);
    if (!(iw > 0)) return 0; /* apart: 0 / (union + eps) is 0 as well */
    float ih = (a[3] < b[3] ? a[3] : b[3]) - (a[1] > b[1] ? a[1] : b[1]);
    if (!(ih > 0)) return 0;
    float inter = iw * ih;
    float union_ = (b[2] - b[0]) * (b[3] - b[1]) + (a[2] - a[0]) * (a[3] - a[1]) - inter;
    return inter / (union_ + 1e-7f);
}

/* matching.iou_distance, then matching.fuse_score when fuse: 1 - IoU x score. */
static float dist(const float tb[4], const it_track_det *d, int fuse) {
    float c = 1.0f - iou_f(tb, d->box);
    if (fuse) c = 1.0f - (1.0f - c) * d->score;
    return c;
}

static itscam_status grow_cost(it_tracker *t, size_t n) {
    if (n <= t->cost_cap) return ITSCAM_OK;
    double *c = it_realloc(t->cost, n * sizeof *c);
    if (!c) return it_err(ITSCAM_ERR_NOMEM, "tracker: a %zu-cell cost matrix", n);
    t->cost = c;
    t->cost_cap = n;
    return ITSCAM_OK;
}

/* Cost of tracks (slots) against detections (indices into dets), then the assignment. */
static itscam_status associate(it_tracker *t, const int *trks, int nt, const it_track_det *dets, const int *di,
                               int nd, int fuse, double limit) {
    itscam_status st = grow_cost(t, (size_t)nt * nd);
    if (st) return st;
    for (int i = 0; i < nt; i++) {
        float tb[4];
        track_box(&t->slots[trks[i]], tb);
        for (int j = 0; j < nd; j++) t->cost[(size_t)i * nd + j] = dist(tb, &dets[di[j]], fuse);
    }
    return it_assign(&t->ws, t->cost, nt, nd, limit, t->row_match, t->col_match, NULL);
}

/* STrack.update and STrack.re_activate: the same change of state here. */
static void track_match(it_tracker *t, trk *tr, const it_track_det *dets, int di) {
    double m[4];
    det_xyah(&dets[di], m);
    it_kf_update(tr->mean, tr->cov, m); /* boxes with area only: S is positive definite */
    tr->state = ST_TRACKED;
    tr->activated = 1;
    tr->frame_id = t->frame_id;
    tr->score = dets[di].score;
    tr->cls = dets[di].class_id;
    tr->idx = di;
}

static void hist_push(it_tracker *t, int slot) {
    hist_entry *e = &t->hist[t->hist_pos];
    if (t->hist_len == REMOVED_HISTORY) { /* the oldest entry leaves */
        trk *old = &t->slots[e->slot];
        if (old->in_use && old->id == e->id) old->hist_refs--;
    } else {
        t->hist_len++;
    }
    e->id = t->slots[slot].id;
    e->slot = slot;
    t->slots[slot].hist_refs++;
    t->hist_pos = (t->hist_pos + 1) % REMOVED_HISTORY;
}

static unsigned next_stamp(it_tracker *t) {
    if (++t->stamp == 0) { /* wrapped: clear every mark once */
        for (int i = 0; i < t->cap; i++) t->slots[i].stamp = 0;
        t->stamp = 1;
    }
    return t->stamp;
}

/* Step 5 of BYTETracker.update, list by list. Ultralytics quirks kept on purpose:
 * - the lost list is cleaned against the removed history *before* this frame's removals
 *   join it, so a lost track that expires this frame stays in the lost list one frame
 *   more and can still be matched (and keep its id) on the next frame;
 * - a lost track whose id is in the history of the last 1000 removed tracks is dropped
 *   at once, even when that track was found again in its extra frame. */
static void update_lists(it_tracker *t, int n_act, int n_refind, int n_lost_new, int n_removed) {
    /* tracked = [Tracked ones of tracked] + activated + refind, each id once. */
    unsigned s = next_stamp(t);
    int nt = 0;
    for (int i = 0; i < t->n_tracked; i++) {
        trk *tr = &t->slots[t->tracked[i]];
        if (tr->state == ST_TRACKED && tr->stamp != s) {
            tr->stamp = s;
            t->new_tracked[nt++] = t->tracked[i];
        }
    }
    for (int i = 0; i < n_act + n_refind; i++) {
        int k = i < n_act ? t->activated[i] : t->refind[i - n_act];
        if (t->slots[k].stamp != s) {
            t->slots[k].stamp = s;
            t->new_tracked[nt++] = k;
        }
    }
    /* lost = (lost - tracked) + lost_new - removed history. */
    int nl = 0;
    for (int i = 0; i < t->n_lost; i++)
        if (t->slots[t->lost[i]].stamp != s) t->new_lost[nl++] = t->lost[i];
    for (int i = 0; i < n_lost_new; i++) t->new_lost[nl++] = t->lost_new[i];
    int kept = 0;
    for (int i = 0; i < nl; i++)
        if (t->slots[t->new_lost[i]].hist_refs == 0) t->new_lost[kept++] = t->new_lost[i];
    nl = kept;
    /* remove_duplicate_stracks: a tracked and a lost track overlapping almost fully are one
     * object; the one followed longer stays (on a tie, the lost one). */
    unsigned drop_t = next_stamp(t), drop_l = next_stamp(t);
    for (int p = 0; p < nt; p++) {
        trk *a = &t->slots[t->new_tracked[p]];
        float ab[4];
        track_box(a, ab);
        for (int q = 0; q < nl; q++) {
            trk *b = &t->slots[t->new_lost[q]];
            float bb[4];
            track_box(b, bb);
            if (1.0f - iou_f(ab, bb) >= DUPLICATE_IOU_DIST) continue;
            if (a->frame_id - a->start_frame > b->frame_id - b->start_frame) b->stamp = drop_l;
            else a->stamp = drop_t;
        }
    }
    /* The marks are per slot and a slot is in one list only, so they never mix. */
    t->n_tracked = 0;
    for (int i = 0; i < nt; i++)
        if (t->slots[t->new_tracked[i]].stamp != drop_t) t->tracked[t->n_tracked++] = t->new_tracked[i];
    t->n_lost = 0;
    for (int i = 0; i < nl; i++)
        if (t->slots[t->new_lost[i]].stamp != drop_l) t->lost[t->n_lost++] = t->new_lost[i];
    for (int i = 0; i < n_removed; i++) hist_push(t, t->removed_now[i]);
}

/* Return slot k to the free list unless it is in one of the lists (stamp `live`). */
static void release_unless(it_tracker *t, int k, unsigned live) {
    trk *tr = &t->slots[k];
    if (!tr->in_use || tr->stamp == live) return;
    tr->in_use = 0;
    t->free_slots[t->n_free++] = k;
}

int it_tracker_update(it_tracker *t, const it_track_det *dets, int n, it_track_out *out, int cap) {
    if (!t || n < 0 || (n > 0 && !dets) || cap < 0 || (cap > 0 && !out)) {
        it_err(ITSCAM_ERR_INVALID_ARG, "tracker: bad arguments");
        return -1;
    }
    if (n > IT_TRACK_MAX_DETS) {
        it_err(ITSCAM_ERR_INVALID_ARG, "tracker: %d detections in one frame, at most %d", n, IT_TRACK_MAX_DETS);
        return -1;
    }
    const it_track_params *p = &t->p;
    int n_high = 0, n_low = 0, n_cand = 0;
    for (int i = 0; i < n; i++) {
        const it_track_det *d = &dets[i];
        if (!isfinite(d->box[0]) || !isfinite(d->box[1]) || !isfinite(d->box[2]) || !isfinite(d->box[3]) ||
            !isfinite(d->score)) {
            it_err(ITSCAM_ERR_INVALID_ARG, "tracker: detection %d has a box or score that is not finite", i);
            return -1;
        }
        /* Ultralytics drops boxes without area before anything else. */
        if (!(d->box[2] - d->box[0] > 0) || !(d->box[3] - d->box[1] > 0)) continue;
        if (d->score >= p->track_high_thresh) {
            t->high[n_high++] = i;
            if (d->score >= p->new_track_thresh) n_cand++;
        } else if (d->score > p->track_low_thresh) {
            t->low[n_low++] = i;
        }
    }
    if (t->n_tracked + t->n_lost + n_cand > t->cap) {
        it_err(ITSCAM_ERR_INVALID_ARG,
               "tracker: %d live tracks and %d detections that could start one exceed max_tracks %d",
               t->n_tracked + t->n_lost, n_cand, t->cap);
        return -1;
    }
    t->frame_id++;
    int F = t->frame_id;

    /* Step 1: split tracked into confirmed and unconfirmed; the pool is confirmed + lost. */
    int n_unconf = 0, n_pool = 0;
    for (int i = 0; i < t->n_tracked; i++) {
        int k = t->tracked[i];
        if (t->slots[k].activated) t->pool[n_pool++] = k;
        else t->unconf[n_unconf++] = k;
    }
    for (int i = 0; i < t->n_lost; i++) t->pool[n_pool++] = t->lost[i];
    /* Predict the pool; a track that is not being tracked keeps no height velocity. */
    for (int i = 0; i < n_pool; i++) {
        trk *tr = &t->slots[t->pool[i]];
        if (tr->state != ST_TRACKED) tr->mean[7] = 0;
        it_kf_predict(tr->mean, tr->cov);
    }

    /* Step 2: high-score detections against the pool. */
    int n_act = 0, n_refind = 0, n_lost_new = 0, n_removed = 0, n_created = 0;
    itscam_status st = associate(t, t->pool, n_pool, dets, t->high, n_high, p->fuse_score, p->match_thresh);
    if (st) goto nomem;
    int n_left = 0;
    for (int j = 0; j < n_high; j++)
        if (t->col_match[j] < 0) t->left[n_left++] = t->high[j];
    int n_r = 0;
    for (int i = 0; i < n_pool; i++) {
        int k = t->pool[i];
        trk *tr = &t->slots[k];
        int j = t->row_match[i];
        if (j < 0) {
            if (tr->state == ST_TRACKED) t->rtracked[n_r++] = k;
            continue;
        }
        if (tr->state == ST_TRACKED) t->activated[n_act++] = k;
        else t->refind[n_refind++] = k;
        track_match(t, tr, dets, t->high[j]);
    }

    /* Step 3: low-score detections against the tracked (not lost) tracks left over. */
    st = associate(t, t->rtracked, n_r, dets, t->low, n_low, p->fuse_score_low, SECOND_MATCH_THRESH);
    if (st) goto nomem;
    for (int i = 0; i < n_r; i++) {
        int k = t->rtracked[i];
        trk *tr = &t->slots[k];
        if (t->row_match[i] >= 0) {
            track_match(t, tr, dets, t->low[t->row_match[i]]);
            t->activated[n_act++] = k;
        } else if (tr->state != ST_LOST) {
            tr->state = ST_LOST;
            t->lost_new[n_lost_new++] = k;
        }
    }

    /* Unconfirmed tracks (one frame old) against the high detections left over. */
    st = associate(t, t->unconf, n_unconf, dets, t->left, n_left, p->fuse_score, UNCONFIRMED_MATCH_THRESH);
    if (st) goto nomem;
    for (int i = 0; i < n_unconf; i++) {
        int k = t->unconf[i];
        if (t->row_match[i] >= 0) {
            track_match(t, &t->slots[k], dets, t->left[t->row_match[i]]);
            t->activated[n_act++] = k;
        } else {
            t->slots[k].state = ST_REMOVED;
            t->removed_now[n_removed++] = k;
        }
    }
    /* Step 4: new tracks. Active at once on the very first frame only; otherwise they wait
     * to be matched on the next frame (STrack.activate). */
    int n_new = 0;
    for (int j = 0; j < n_left; j++)
        if (t->col_match[j] < 0) t->left[n_new++] = t->left[j];
    for (int j = 0; j < n_new; j++) {
        const it_track_det *d = &dets[t->left[j]];
        if (d->score < p->new_track_thresh) continue;
        int k = t->free_slots[--t->n_free]; /* room was checked above */
        trk *tr = &t->slots[k];
        memset(tr, 0, sizeof *tr);
        tr->in_use = 1;
        tr->id = ++t->last_id;
        double m[4];
        det_xyah(d, m);
        it_kf_initiate(m, tr->mean, tr->cov);
        tr->state = ST_TRACKED;
        tr->activated = F == 1;
        tr->frame_id = tr->start_frame = F;
        tr->score = d->score;
        tr->cls = d->class_id;
        tr->idx = t->left[j];
        t->activated[n_act++] = k;
        n_created++;
    }
    /* Step 5: lost tracks past max_time_lost are removed. */
    for (int i = 0; i < t->n_lost; i++) {
        trk *tr = &t->slots[t->lost[i]];
        if (F - tr->frame_id > t->max_time_lost) {
            tr->state = ST_REMOVED;
            t->removed_now[n_removed++] = t->lost[i];
        }
    }
    update_lists(t, n_act, n_refind, n_lost_new, n_removed);
    /* Free the slots that left every list: they can only be among the tracks of the frame
     * before (pool and unconfirmed) and the ones created in this one. */
    unsigned live = next_stamp(t);
    for (int i = 0; i < t->n_tracked; i++) t->slots[t->tracked[i]].stamp = live;
    for (int i = 0; i < t->n_lost; i++) t->slots[t->lost[i]].stamp = live;
    for (int i = 0; i < n_pool; i++) release_unless(t, t->pool[i], live);
    for (int i = 0; i < n_unconf; i++) release_unless(t, t->unconf[i], live);
    for (int i = n_act - n_created; i < n_act; i++) release_unless(t, t->activated[i], live);

    int n_out = 0;
    for (int i = 0; i < t->n_tracked; i++) {
        const trk *tr = &t->slots[t->tracked[i]];
        if (!tr->activated) continue;
        if (n_out < cap) {
            it_track_out *o = &out[n_out];
            o->track_id = tr->id;
            track_box(tr, o->box);
            o->score = tr->score;
            o->class_id = tr->cls;
            o->det_index = tr->idx;
        }
        n_out++;
    }
    return n_out;

nomem:
    /* The frame is half applied: start over rather than keep a state Ultralytics never has. */
    it_tracker_reset(t);
    return -1;
}
