/* MOT metrics: MOTChallenge files in, CLEAR MOT + identity (py-motmetrics) and HOTA
 * (TrackEval) out. The conventions each number follows are those of the tool it is named
 * after, line for line where it matters (see ../shared/mot/EXPECTED.md for the checks). */
#include "track/mot_metrics.h"

#include "core/core.h"
#include "track/assign.h"

#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- loading */

it_mot_params it_mot_default_params(void) {
    it_mot_params p = { .iou_threshold = 0.5 };
    return p;
}

void it_mot_seq_free(it_mot_seq *s) {
    if (!s) return;
    it_free(s->rows);
    s->rows = NULL;
    s->n = 0;
}

/* An integer-valued field (frame, id) that fits an int. */
static int as_int(double v, int *out) {
    if (!isfinite(v) || v != floor(v) || v < INT_MIN || v > INT_MAX) return -1;
    *out = (int)v;
    return 0;
}

static const char *const field_names[7] = { "frame", "id", "x", "y", "width", "height", "conf" };

static itscam_status parse_line(const char *name, int lineno, char *s, it_mot_box *b) {
    double v[7];
    int nf = 0;
    char *p = s;
    while (nf < 7) {
        while (*p == ' ' || *p == '\t') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        double x = strtod(p, &end);
        if (end == p || errno == ERANGE) {
            char tok[32];
            size_t k = 0;
            while (p[k] && p[k] != ',' && p[k] != ' ' && p[k] != '\t' && k + 1 < sizeof tok) tok[k] = p[k], k++;
            tok[k] = 0;
            return it_err(ITSCAM_ERR_INVALID_ARG, "%s:%d: field %d (%s) is not a number: '%s'", name, lineno, nf + 1,
                          field_names[nf], tok);
        }
        v[nf++] = x;
        p = end;
        while (*p == ' ' || *p == '\t') p++;
        if (*p == ',') p++;
        else if (*p && p == end)
            return it_err(ITSCAM_ERR_INVALID_ARG, "%s:%d: field %d (%s): unexpected '%c' after the number", name,
                          lineno, nf, field_names[nf - 1], *p);
    }
    if (nf < 6)
        return it_err(ITSCAM_ERR_INVALID_ARG,
                      "%s:%d: %d field%s; a MOTChallenge line has at least 6: frame, id, x, y, width, height", name,
                      lineno, nf, nf == 1 ? "" : "s");
    if (as_int(v[0], &b->frame))
        return it_err(ITSCAM_ERR_INVALID_ARG, "%s:%d: frame %g is not an integer", name, lineno, v[0]);
    if (as_int(v[1], &b->id))
        return it_err(ITSCAM_ERR_INVALID_ARG, "%s:%d: id %g is not an integer", name, lineno, v[1]);
    for (int k = 2; k < nf; k++)
        if (!isfinite(v[k]))
            return it_err(ITSCAM_ERR_INVALID_ARG, "%s:%d: %s is not finite", name, lineno, field_names[k]);
    if (v[4] < 0 || v[5] < 0)
        return it_err(ITSCAM_ERR_INVALID_ARG, "%s:%d: negative box size (width %g, height %g)", name, lineno, v[4],
                      v[5]);
    b->x = v[2], b->y = v[3], b->w = v[4], b->h = v[5];
    b->conf = nf >= 7 ? v[6] : 1.0;
    b->line = lineno;
    return ITSCAM_OK;
}

itscam_status it_mot_parse(const char *text, size_t len, const char *name, it_mot_seq *out) {
    if (!out || (!text && len)) return it_err(ITSCAM_ERR_INVALID_ARG, "it_mot_parse: NULL argument");
    memset(out, 0, sizeof *out);
    if (!name) name = "(text)";
    snprintf(out->name, sizeof out->name, "%s", name);
    int cap = 0, lineno = 0;
    size_t pos = 0;
    char buf[IT_MOT_MAX_LINE + 1];
    while (pos < len) {
        size_t e = pos;
        while (e < len && text[e] != '\n') e++;
        lineno++;
        size_t n = e - pos;
        if (n && text[pos + n - 1] == '\r') n--;
        if (n > IT_MOT_MAX_LINE) {
            it_mot_seq_free(out);
            return it_err(ITSCAM_ERR_INVALID_ARG, "%s:%d: line longer than %d characters", name, lineno,
                          IT_MOT_MAX_LINE);
        }
        memcpy(buf, text + pos, n);
        buf[n] = 0;
        pos = e + 1;
        if (memchr(buf, 0, n)) {
            it_mot_seq_free(out);
            return it_err(ITSCAM_ERR_INVALID_ARG, "%s:%d: NUL byte: not a text file", name, lineno);
        }
        size_t k = 0;
        while (buf[k] == ' ' || buf[k] == '\t') k++;
        if (!buf[k]) continue; /* blank line */
        if (out->n == cap) {
            if (cap >= IT_MOT_MAX_ROWS) {
                it_mot_seq_free(out);
                return it_err(ITSCAM_ERR_INVALID_ARG, "%s:%d: more than %d boxes", name, lineno, IT_MOT_MAX_ROWS);
            }
            int ncap = cap ? IT_MIN(cap * 2, IT_MOT_MAX_ROWS) : 256;
            it_mot_box *r = it_realloc(out->rows, (size_t)ncap * sizeof *r);
            if (!r) {
                it_mot_seq_free(out);
                return it_err(ITSCAM_ERR_NOMEM, "%s: out of memory for %d boxes", name, ncap);
            }
            out->rows = r;
            cap = ncap;
        }
        itscam_status st = parse_line(name, lineno, buf + k, &out->rows[out->n]);
        if (st) {
            it_mot_seq_free(out);
            return st;
        }
        out->n++;
    }
    return ITSCAM_OK;
}

itscam_status it_mot_load(const char *path, it_mot_seq *out) {
    if (!path || !out) return it_err(ITSCAM_ERR_INVALID_ARG, "it_mot_load: NULL argument");
    memset(out, 0, sizeof *out);
    uint8_t *data = NULL;
    size_t len = 0;
    itscam_status st = it_read_file(path, &data, &len, IT_MOT_MAX_FILE);
    if (st) return st;
    st = it_mot_parse((const char *)data, len, path, out);
    it_free(data);
    return st;
}

/* ---------------------------------------------------------------- per-sequence index */

/* A file's boxes grouped by frame: order[] holds row indices sorted by (frame, file order),
 * frames[f] the f-th distinct frame, start[f]..start[f+1] its slice of order. dense[row]
 * is the row's id renumbered 0..nids-1 (ascending id). */
typedef struct seq_index {
    int *order, *dense, *frames, *start;
    int nframes, nids;
} seq_index;

static void seq_index_free(seq_index *x) {
    it_free(x->order);
    it_free(x->dense);
    it_free(x->frames);
    it_free(x->start);
    memset(x, 0, sizeof *x);
}

static const it_mot_box *sort_rows; /* qsort has no context argument; guarded below */
static pthread_mutex_t sort_lock = PTHREAD_MUTEX_INITIALIZER;

static int cmp_frame_row(const void *a, const void *b) {
    int i = *(const int *)a, j = *(const int *)b;
    int fi = sort_rows[i].frame, fj = sort_rows[j].frame;
    if (fi != fj) return fi < fj ? -1 : 1;
    return i < j ? -1 : i > j;
}

static int cmp_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return x < y ? -1 : x > y;
}

static itscam_status seq_index_build(const it_mot_seq *s, seq_index *x) {
    memset(x, 0, sizeof *x);
    int n = s->n;
    x->order = it_malloc((size_t)(n ? n : 1) * sizeof(int));
    x->dense = it_malloc((size_t)(n ? n : 1) * sizeof(int));
    x->frames = it_malloc((size_t)(n ? n : 1) * sizeof(int));
    x->start = it_malloc((size_t)(n + 1) * sizeof(int));
    int *ids = it_malloc((size_t)(n ? n : 1) * sizeof(int));
    int *seen = NULL;
    itscam_status st = ITSCAM_OK;
    if (!x->order || !x->dense || !x->frames || !x->start || !ids) {
        st = it_err(ITSCAM_ERR_NOMEM, "%s: out of memory indexing %d boxes", s->name, n);
        goto out;
    }
    for (int i = 0; i < n; i++) x->order[i] = i, ids[i] = s->rows[i].id;
    pthread_mutex_lock(&sort_lock);
    sort_rows = s->rows;
    qsort(x->order, (size_t)n, sizeof(int), cmp_frame_row);
    sort_rows = NULL;
    pthread_mutex_unlock(&sort_lock);
    qsort(ids, (size_t)n, sizeof(int), cmp_int);
    int nids = 0;
    for (int i = 0; i < n; i++)
        if (!nids || ids[nids - 1] != ids[i]) ids[nids++] = ids[i];
    x->nids = nids;
    for (int i = 0; i < n; i++) {
        const int *f = bsearch(&s->rows[i].id, ids, (size_t)nids, sizeof(int), cmp_int);
        x->dense[i] = (int)(f - ids);
    }
    /* Frames, and duplicate ids within a frame (stamp = last frame slot the id was seen in). */
    seen = it_malloc((size_t)(nids ? nids : 1) * sizeof(int));
    if (!seen) {
        st = it_err(ITSCAM_ERR_NOMEM, "%s: out of memory", s->name);
        goto out;
    }
    for (int i = 0; i < nids; i++) seen[i] = -1;
    int nf = 0;
    for (int k = 0; k < n; k++) {
        const it_mot_box *b = &s->rows[x->order[k]];
        if (!nf || x->frames[nf - 1] != b->frame) {
            x->frames[nf] = b->frame;
            x->start[nf] = k;
            nf++;
        }
        int d = x->dense[x->order[k]];
        if (seen[d] == nf - 1) {
            st = it_err(ITSCAM_ERR_INVALID_ARG, "%s:%d: id %d appears twice in frame %d", s->name, b->line, b->id,
                        b->frame);
            goto out;
        }
        seen[d] = nf - 1;
    }
    x->start[nf] = n;
    x->nframes = nf;
out:
    it_free(ids);
    it_free(seen);
    if (st) seq_index_free(x);
    return st;
}

/* ---------------------------------------------------------------- pair table */

/* Statistics of one (gt id, predicted id) pair that overlapped at least once: an open
 * addressing hash on the key g * nh + h (sparse: most pairs never meet). */
typedef struct pair_stat {
    int64_t key; /* -1: empty slot */
    double potential;                 /* HOTA: sum over frames of the pair's share of IoU */
    int32_t id_frames;                /* frames where the pair can match (identity metrics) */
    int32_t matches[IT_HOTA_ALPHAS]; /* HOTA matches per alpha */
} pair_stat;

typedef struct pair_map {
    pair_stat *e;
    size_t cap, n;
} pair_map;

static size_t pair_hash(int64_t k, size_t cap) {
    uint64_t z = (uint64_t)k + 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return (size_t)(z ^ (z >> 31)) & (cap - 1);
}

static pair_stat *pair_find(const pair_map *m, int64_t key) {
    if (!m->cap) return NULL;
    for (size_t i = pair_hash(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
        if (m->e[i].key == key) return &m->e[i];
        if (m->e[i].key < 0) return NULL;
    }
}

static itscam_status pair_grow(pair_map *m) {
    size_t ncap = m->cap ? m->cap * 2 : 1024;
    pair_stat *e = it_malloc(ncap * sizeof *e);
    if (!e) return it_err(ITSCAM_ERR_NOMEM, "out of memory for %zu id pairs", m->n);
    for (size_t i = 0; i < ncap; i++) e[i].key = -1;
    for (size_t i = 0; i < m->cap; i++) {
        if (m->e[i].key < 0) continue;
        size_t j = pair_hash(m->e[i].key, ncap);
        while (e[j].key >= 0) j = (j + 1) & (ncap - 1);
        e[j] = m->e[i];
    }
    it_free(m->e);
    m->e = e;
    m->cap = ncap;
    return ITSCAM_OK;
}

static itscam_status pair_get(pair_map *m, int64_t key, pair_stat **out) {
    pair_stat *p = pair_find(m, key);
    if (!p) {
        if (m->n >= IT_MOT_MAX_PAIRS)
            return it_err(ITSCAM_ERR_INVALID_ARG, "more than %d overlapping (gt id, predicted id) pairs",
                          IT_MOT_MAX_PAIRS);
        if ((m->n + 1) * 2 > m->cap) {
            itscam_status st = pair_grow(m);
            if (st) return st;
        }
        size_t i = pair_hash(key, m->cap);
        while (m->e[i].key >= 0) i = (i + 1) & (m->cap - 1);
        p = &m->e[i];
        memset(p, 0, sizeof *p);
        p->key = key;
        m->n++;
    }
    *out = p;
    return ITSCAM_OK;
}

/* ---------------------------------------------------------------- evaluation */

/* IoU of two (x, y, w, h) boxes with no "+1" pixel convention, as py-motmetrics boxiou and
 * TrackEval _calculate_box_ious: 0 when the boxes do not intersect or a box is empty. */
static double box_iou(const it_mot_box *a, const it_mot_box *b) {
    double ix = fmin(a->x + a->w, b->x + b->w) - fmax(a->x, b->x);
    double iy = fmin(a->y + a->h, b->y + b->h) - fmax(a->y, b->y);
    if (ix <= 0 || iy <= 0) return 0;
    double inter = ix * iy;
    double uni = a->w * a->h + b->w * b->h - inter;
    /* Rounding with huge coordinates (x + w - x != w) could push the ratio past 1. */
    return uni > DBL_EPSILON ? fmin(1.0, inter / uni) : 0;
}

static double alpha_at(int a) {
    /* numpy's arange fills start + i * delta, with delta = (start + step) - start = 0.05. */
    return 0.05 + a * 0.05;
}

static double qdiv(double a, double b) { return b != 0 ? a / b : NAN; }

/* Ratios from the counts (and per-alpha HOTA values), for one sequence or combined. */
static void finish(it_mot_result *r) {
    r->mota = 1.0 - qdiv((double)(r->fn + r->fp + r->idsw), (double)r->num_gt);
    r->motp_dist = qdiv(r->sum_dist, (double)r->tp);
    r->motp_iou = 1.0 - r->motp_dist;
    r->recall = qdiv((double)r->tp, (double)r->num_gt);
    r->precision = qdiv((double)r->tp, (double)(r->tp + r->fp));
    r->idp = qdiv((double)r->idtp, (double)(r->idtp + r->idfp));
    r->idr = qdiv((double)r->idtp, (double)(r->idtp + r->idfn));
    r->idf1 = qdiv(2.0 * (double)r->idtp, (double)(r->num_gt + r->num_pred));
    double s[8] = { 0 };
    for (int a = 0; a < IT_HOTA_ALPHAS; a++) {
        double tp = (double)r->hota_tp[a], fn = (double)r->hota_fn[a], fp = (double)r->hota_fp[a];
        double detre = tp / fmax(1, tp + fn), detpr = tp / fmax(1, tp + fp);
        r->deta_a[a] = tp / fmax(1, tp + fn + fp);
        r->hota_a[a] = sqrt(r->deta_a[a] * r->assa_a[a]);
        s[0] += r->hota_a[a], s[1] += r->deta_a[a], s[2] += r->assa_a[a], s[3] += r->loca_a[a];
        s[4] += detre, s[5] += detpr, s[6] += r->assre_a[a], s[7] += r->asspr_a[a];
    }
    r->hota = s[0] / IT_HOTA_ALPHAS, r->deta = s[1] / IT_HOTA_ALPHAS, r->assa = s[2] / IT_HOTA_ALPHAS;
    r->loca = s[3] / IT_HOTA_ALPHAS, r->detre = s[4] / IT_HOTA_ALPHAS, r->detpr = s[5] / IT_HOTA_ALPHAS;
    r->assre = s[6] / IT_HOTA_ALPHAS, r->asspr = s[7] / IT_HOTA_ALPHAS;
}

/* Everything one evaluation allocates, freed in one place. */
typedef struct eval_work {
    seq_index gi, pi;
    pair_map pairs;
    int *m, *last_match, *freq, *tracked, *tracked_once, *prev_miss; /* per gt id (CLEAR) */
    int *hyp_count;                                                  /* per predicted id */
    double *iou, *cost, *rowsum, *colsum;
    int *r2c, *c2r, *rows, *cols, *omask, *hmask;
    double *id_cost;
    int *id_g, *id_h;
    it_assign_ws aw; /* the solver's scratch, shared by every matching of one evaluation */
} eval_work;

static void work_free(eval_work *w) {
    seq_index_free(&w->gi);
    seq_index_free(&w->pi);
    it_free(w->pairs.e);
    it_assign_ws_free(&w->aw);
    void *ptrs[] = { w->m,      w->last_match, w->freq, w->tracked, w->tracked_once, w->prev_miss, w->hyp_count,
                     w->iou,    w->cost,       w->rowsum, w->colsum, w->r2c,         w->c2r,       w->rows,
                     w->cols,   w->omask,      w->hmask, w->id_cost, w->id_g,        w->id_h };
    for (size_t i = 0; i < sizeof ptrs / sizeof *ptrs; i++) it_free(ptrs[i]);
}

/* One frame of the union: the slices of both files (empty when the file lacks it). */
typedef struct frame_slice {
    const int *g, *h; /* row indices */
    int ng, nh;
} frame_slice;

static void slice_at(const seq_index *x, int f, const int **rows, int *n) {
    *rows = x->order + x->start[f];
    *n = x->start[f + 1] - x->start[f];
}

/* Walks the union of both files' frames in ascending order: fills *fs with the frame's
 * slices and *k with its position in the union; 0 when done. */
typedef struct frame_iter {
    int fg, fp, k;
} frame_iter;

static int next_frame(const eval_work *w, frame_iter *it, frame_slice *fs, int *k) {
    if (it->fg >= w->gi.nframes && it->fp >= w->pi.nframes) return 0;
    int fgv = it->fg < w->gi.nframes ? w->gi.frames[it->fg] : INT_MAX;
    int fpv = it->fp < w->pi.nframes ? w->pi.frames[it->fp] : INT_MAX;
    memset(fs, 0, sizeof *fs);
    if (fgv <= fpv) slice_at(&w->gi, it->fg++, &fs->g, &fs->ng);
    if (fpv <= fgv) slice_at(&w->pi, it->fp++, &fs->h, &fs->nh);
    *k = it->k++;
    return 1;
}

itscam_status it_mot_evaluate(const it_mot_seq *gt, const it_mot_seq *pred, const it_mot_params *p,
                              it_mot_result *r) {
    if (!gt || !pred || !r || (gt->n && !gt->rows) || (pred->n && !pred->rows))
        return it_err(ITSCAM_ERR_INVALID_ARG, "it_mot_evaluate: NULL argument");
    it_mot_params prm = p ? *p : it_mot_default_params();
    if (!(prm.iou_threshold > 0 && prm.iou_threshold <= 1))
        return it_err(ITSCAM_ERR_INVALID_ARG, "IoU threshold %g is not in (0, 1]", prm.iou_threshold);
    const double dist_th = 1.0 - prm.iou_threshold;
    memset(r, 0, sizeof *r);
    eval_work w;
    memset(&w, 0, sizeof w);
    itscam_status st = seq_index_build(gt, &w.gi);
    if (!st) st = seq_index_build(pred, &w.pi);
    if (st) goto out;
    const int G = w.gi.nids, H = w.pi.nids;
    int maxg = 1, maxh = 1;
    for (int f = 0; f < w.gi.nframes; f++) maxg = IT_MAX(maxg, w.gi.start[f + 1] - w.gi.start[f]);
    for (int f = 0; f < w.pi.nframes; f++) maxh = IT_MAX(maxh, w.pi.start[f + 1] - w.pi.start[f]);
    if (maxg > IT_ASSIGN_MAX_SIDE || maxh > IT_ASSIGN_MAX_SIDE) {
        st = it_err(ITSCAM_ERR_INVALID_ARG, "more than %d boxes in one frame (%s: %d, %s: %d)", IT_ASSIGN_MAX_SIDE,
                    gt->name, maxg, pred->name, maxh);
        goto out;
    }
    size_t gn = (size_t)(G ? G : 1), hn = (size_t)(H ? H : 1), mm = (size_t)maxg * maxh;
    w.m = it_malloc(gn * sizeof(int)), w.last_match = it_malloc(gn * sizeof(int));
    w.freq = it_calloc(gn, sizeof(int)), w.tracked = it_calloc(gn, sizeof(int));
    w.tracked_once = it_calloc(gn, sizeof(int)), w.prev_miss = it_calloc(gn, sizeof(int));
    w.hyp_count = it_calloc(hn, sizeof(int));
    w.iou = it_malloc(mm * sizeof(double)), w.cost = it_malloc(mm * sizeof(double));
    w.rowsum = it_malloc((size_t)maxg * sizeof(double)), w.colsum = it_malloc((size_t)maxh * sizeof(double));
    w.r2c = it_malloc((size_t)maxg * sizeof(int)), w.c2r = it_malloc((size_t)maxh * sizeof(int));
    w.rows = it_malloc((size_t)maxg * sizeof(int)), w.cols = it_malloc((size_t)maxh * sizeof(int));
    w.omask = it_malloc((size_t)maxg * sizeof(int)), w.hmask = it_malloc((size_t)maxh * sizeof(int));
    if (!w.m || !w.last_match || !w.freq || !w.tracked || !w.tracked_once || !w.prev_miss || !w.hyp_count ||
        !w.iou || !w.cost || !w.rowsum || !w.colsum || !w.r2c || !w.c2r || !w.rows || !w.cols || !w.omask ||
        !w.hmask) {
        st = it_err(ITSCAM_ERR_NOMEM, "out of memory evaluating %s", pred->name);
        goto out;
    }
    for (int o = 0; o < G; o++) w.m[o] = -1, w.last_match[o] = -1;
    r->num_gt = gt->n, r->num_pred = pred->n, r->num_unique_objects = G, r->num_unique_hyps = H;

    /* Pass 1: CLEAR events (py-motmetrics MOTAccumulator.update), identity overlaps and
     * HOTA's potential matches. k is the position of the frame in the union, so k - 1 is
     * the previous update whatever the frame numbers are. */
    frame_iter it = { 0 };
    frame_slice fs;
    int k;
    while (next_frame(&w, &it, &fs, &k)) {
        r->num_frames++;
        const int ng = fs.ng, nh = fs.nh;
        for (int i = 0; i < ng; i++) w.rowsum[i] = 0, w.omask[i] = 0;
        for (int j = 0; j < nh; j++) w.colsum[j] = 0, w.hmask[j] = 0;
        for (int i = 0; i < ng; i++)
            for (int j = 0; j < nh; j++) {
                double v = box_iou(&gt->rows[fs.g[i]], &pred->rows[fs.h[j]]);
                w.iou[i * nh + j] = v;
                w.rowsum[i] += v, w.colsum[j] += v;
            }
#define GID(i) (w.gi.dense[fs.g[i]])
#define HID(j) (w.pi.dense[fs.h[j]])
#define DIST(i, j) (1.0 - w.iou[(i) * nh + (j)])
#define CAN_MATCH(i, j) (DIST(i, j) <= dist_th)
        for (int j = 0; j < nh; j++) w.hyp_count[HID(j)]++;
        if (ng && nh) {
            /* 1. An object matched in the previous update keeps its hypothesis if it can. */
            for (int i = 0; i < ng; i++) {
                int o = GID(i);
                if (w.m[o] < 0 || w.last_match[o] != k - 1) continue;
                for (int j = 0; j < nh; j++) {
                    if (w.hmask[j] || HID(j) != w.m[o]) continue;
                    if (CAN_MATCH(i, j)) {
                        w.omask[i] = w.hmask[j] = 1;
                        r->tp++;
                        r->sum_dist += DIST(i, j);
                        w.last_match[o] = k;
                    }
                    break;
                }
            }
            /* 2. The rest: most matches, then least total distance. */
            int nr = 0, nc = 0;
            for (int i = 0; i < ng; i++)
                if (!w.omask[i]) w.rows[nr++] = i;
            for (int j = 0; j < nh; j++)
                if (!w.hmask[j]) w.cols[nc++] = j;
            if (nr && nc) {
                for (int a = 0; a < nr; a++)
                    for (int b = 0; b < nc; b++)
                        w.cost[a * nc + b] = CAN_MATCH(w.rows[a], w.cols[b]) ? DIST(w.rows[a], w.cols[b]) : INFINITY;
                st = it_assign(&w.aw, w.cost, nr, nc, INFINITY, w.r2c, NULL, NULL);
                if (st) goto out;
                for (int a = 0; a < nr; a++) {
                    if (w.r2c[a] < 0) continue;
                    int i = w.rows[a], j = w.cols[w.r2c[a]], o = GID(i), h = HID(j);
                    /* 3. A switch: the object's last matched hypothesis, at any earlier time,
                     * was another (py-motmetrics max_switch_time = inf). */
                    if (w.m[o] >= 0 && w.m[o] != h) r->idsw++;
                    r->tp++;
                    r->sum_dist += DIST(i, j);
                    w.m[o] = h;
                    w.last_match[o] = k;
                    w.omask[i] = w.hmask[j] = 1;
                }
            }
        }
        /* 4. The rest are misses and false positives; per-object tallies for MT/PT/ML and
         * fragmentations (a tracked -> missed transition counts once the object is tracked
         * again, so only gaps between its first and last match count). */
        for (int i = 0; i < ng; i++) {
            int o = GID(i);
            w.freq[o]++;
            if (w.omask[i]) {
                w.tracked[o]++;
                if (w.tracked_once[o] && w.prev_miss[o]) r->frag++;
                w.tracked_once[o] = 1;
                w.prev_miss[o] = 0;
            } else {
                r->fn++;
                w.prev_miss[o] = 1;
            }
        }
        for (int j = 0; j < nh; j++)
            if (!w.hmask[j]) r->fp++;
        /* Identity overlaps and HOTA potential matches (TrackEval: the pair's IoU divided
         * by the IoU its gt box and prediction share with everything in the frame). */
        for (int i = 0; i < ng; i++)
            for (int j = 0; j < nh; j++) {
                double v = w.iou[i * nh + j];
                if (v <= 0) continue;
                pair_stat *ps = NULL;
                st = pair_get(&w.pairs, (int64_t)GID(i) * H + HID(j), &ps);
                if (!st && !ps) st = it_err(ITSCAM_ERR_INTERNAL, "identity pair table lost an entry");
                if (st) goto out;
                if (CAN_MATCH(i, j)) ps->id_frames++;
                double denom = w.rowsum[i] + w.colsum[j] - v;
                if (denom > DBL_EPSILON) ps->potential += v / denom;
            }
    }
    for (int o = 0; o < G; o++) {
        double ratio = w.freq[o] ? (double)w.tracked[o] / w.freq[o] : 0;
        if (ratio >= 0.8) r->mt++;
        else if (ratio >= 0.2) r->pt++;
        else r->ml++;
    }

    /* Identity: one global gt id <-> predicted id assignment maximising the frames the
     * pairs share (= minimising IDFN + IDFP). Only ids that ever overlap take part. */
    {
        w.id_g = it_malloc(gn * sizeof(int)), w.id_h = it_malloc(hn * sizeof(int));
        if (!w.id_g || !w.id_h) {
            st = it_err(ITSCAM_ERR_NOMEM, "out of memory for the identity assignment");
            goto out;
        }
        for (int o = 0; o < G; o++) w.id_g[o] = -1;
        for (int h = 0; h < H; h++) w.id_h[h] = -1;
        int ng = 0, nh = 0;
        for (size_t i = 0; i < w.pairs.cap; i++) {
            const pair_stat *ps = &w.pairs.e[i];
            if (ps->key < 0 || !ps->id_frames) continue;
            int o = (int)(ps->key / H), h = (int)(ps->key % H);
            if (w.id_g[o] < 0) w.id_g[o] = ng++;
            if (w.id_h[h] < 0) w.id_h[h] = nh++;
        }
        if (ng > IT_ASSIGN_MAX_SIDE || nh > IT_ASSIGN_MAX_SIDE) {
            st = it_err(ITSCAM_ERR_INVALID_ARG, "identity assignment too large: %d gt ids x %d predicted ids (at most %d)",
                        ng, nh, IT_ASSIGN_MAX_SIDE);
            goto out;
        }
        if (ng && nh) {
            w.id_cost = it_calloc((size_t)ng * nh, sizeof(double));
            int *r2c = it_malloc((size_t)ng * sizeof(int));
            if (!w.id_cost || !r2c) {
                it_free(r2c);
                st = it_err(ITSCAM_ERR_NOMEM, "out of memory for the identity assignment (%d x %d)", ng, nh);
                goto out;
            }
            for (size_t i = 0; i < w.pairs.cap; i++) {
                const pair_stat *ps = &w.pairs.e[i];
                if (ps->key < 0 || !ps->id_frames) continue;
                w.id_cost[(size_t)w.id_g[ps->key / H] * nh + w.id_h[ps->key % H]] = -(double)ps->id_frames;
            }
            double total = 0;
            st = it_assign(&w.aw, w.id_cost, ng, nh, INFINITY, r2c, NULL, &total);
            it_free(r2c);
            if (st) goto out;
            r->idtp = (int64_t)llround(-total);
        }
        r->idfn = r->num_gt - r->idtp;
        r->idfp = r->num_pred - r->idtp;
    }

    /* Pass 2: HOTA. Per frame, the assignment maximising IoU x global alignment score; a
     * pair counts at alpha when its IoU >= alpha (TrackEval hota.py). */
    memset(&it, 0, sizeof it);
    while (next_frame(&w, &it, &fs, &k)) {
        const int ng = fs.ng, nh = fs.nh;
        if (!ng || !nh) {
            for (int a = 0; a < IT_HOTA_ALPHAS; a++) r->hota_fp[a] += nh, r->hota_fn[a] += ng;
            continue;
        }
        for (int i = 0; i < ng; i++)
            for (int j = 0; j < nh; j++) {
                double v = box_iou(&gt->rows[fs.g[i]], &pred->rows[fs.h[j]]);
                w.iou[i * nh + j] = v;
                double score = 0;
                if (v > 0) {
                    const pair_stat *ps = pair_find(&w.pairs, (int64_t)GID(i) * H + HID(j));
                    double pot = ps ? ps->potential : 0;
                    score = pot / ((double)w.freq[GID(i)] + w.hyp_count[HID(j)] - pot) * v;
                }
                w.cost[i * nh + j] = -score;
            }
        st = it_assign(&w.aw, w.cost, ng, nh, INFINITY, w.r2c, NULL, NULL);
        if (st) goto out;
        int nm[IT_HOTA_ALPHAS] = { 0 };
        for (int i = 0; i < ng; i++) {
            int j = w.r2c[i];
            if (j < 0) continue;
            double v = w.iou[i * nh + j];
            if (v <= 0) continue;
            pair_stat *ps = pair_find(&w.pairs, (int64_t)GID(i) * H + HID(j));
            for (int a = 0; a < IT_HOTA_ALPHAS; a++) {
                if (!(v >= alpha_at(a) - DBL_EPSILON)) continue;
                nm[a]++;
                r->loca_a[a] += v;
                if (ps) ps->matches[a]++;
            }
        }
        for (int a = 0; a < IT_HOTA_ALPHAS; a++) {
            r->hota_tp[a] += nm[a];
            r->hota_fn[a] += ng - nm[a];
            r->hota_fp[a] += nh - nm[a];
        }
    }
#undef GID
#undef HID
#undef DIST
#undef CAN_MATCH
    for (int a = 0; a < IT_HOTA_ALPHAS; a++) {
        double sa = 0, sr = 0, sp = 0;
        for (size_t i = 0; i < w.pairs.cap; i++) {
            const pair_stat *ps = &w.pairs.e[i];
            if (ps->key < 0 || !ps->matches[a]) continue;
            double mc = ps->matches[a], gc = w.freq[ps->key / H], tc = w.hyp_count[ps->key % H];
            sa += mc * (mc / fmax(1, gc + tc - mc));
            sr += mc * (mc / fmax(1, gc));
            sp += mc * (mc / fmax(1, tc));
        }
        double tp = (double)r->hota_tp[a];
        r->assa_a[a] = sa / fmax(1, tp), r->assre_a[a] = sr / fmax(1, tp), r->asspr_a[a] = sp / fmax(1, tp);
        /* TrackEval returns LocA = 1 when either side has no box at all. */
        r->loca_a[a] = (!gt->n || !pred->n) ? 1.0 : fmax(1e-10, r->loca_a[a]) / fmax(1e-10, tp);
    }
    finish(r);
out:
    work_free(&w);
    if (st) memset(r, 0, sizeof *r);
    return st;
}

void it_mot_combine(const it_mot_result *seqs, int n, it_mot_result *out) {
    it_mot_result c;
    memset(&c, 0, sizeof c);
    double assa[IT_HOTA_ALPHAS] = { 0 }, assre[IT_HOTA_ALPHAS] = { 0 }, asspr[IT_HOTA_ALPHAS] = { 0 },
           loca[IT_HOTA_ALPHAS] = { 0 };
    for (int s = 0; s < n; s++) {
        const it_mot_result *x = &seqs[s];
        c.num_frames += x->num_frames, c.num_gt += x->num_gt, c.num_pred += x->num_pred;
        c.num_unique_objects += x->num_unique_objects, c.num_unique_hyps += x->num_unique_hyps;
        c.tp += x->tp, c.fp += x->fp, c.fn += x->fn, c.idsw += x->idsw;
        c.mt += x->mt, c.pt += x->pt, c.ml += x->ml, c.frag += x->frag, c.sum_dist += x->sum_dist;
        c.idtp += x->idtp, c.idfp += x->idfp, c.idfn += x->idfn;
        for (int a = 0; a < IT_HOTA_ALPHAS; a++) {
            c.hota_tp[a] += x->hota_tp[a], c.hota_fn[a] += x->hota_fn[a], c.hota_fp[a] += x->hota_fp[a];
            double tp = (double)x->hota_tp[a];
            assa[a] += x->assa_a[a] * tp, assre[a] += x->assre_a[a] * tp, asspr[a] += x->asspr_a[a] * tp;
            loca[a] += x->loca_a[a] * tp;
        }
    }
    for (int a = 0; a < IT_HOTA_ALPHAS; a++) {
        double tp = (double)c.hota_tp[a];
        c.assa_a[a] = assa[a] / fmax(1, tp), c.assre_a[a] = assre[a] / fmax(1, tp);
        c.asspr_a[a] = asspr[a] / fmax(1, tp);
        c.loca_a[a] = fmax(1e-10, loca[a]) / fmax(1e-10, tp);
    }
    finish(&c);
    *out = c;
}

/* ---------------------------------------------------------------- names */

#define I64(f) 'i', offsetof(it_mot_result, f)
#define DBL(f) 'd', offsetof(it_mot_result, f)
static const struct {
    it_mot_metric m;
    char type;
    size_t off;
} metrics[] = {
    { { "MOTA", "CLEAR MOT accuracy: 1 - (FN + FP + IDSW) / gt boxes", 0 }, DBL(mota) },
    { { "MOTP_iou", "MOTChallenge/TrackEval MOTP: mean IoU of matches (higher is better)", 0 }, DBL(motp_iou) },
    { { "MOTP_pymotmetrics", "py-motmetrics MOTP: mean 1 - IoU of matches (lower is better)", 0 }, DBL(motp_dist) },
    { { "IDF1", "identity F1: 2 IDTP / (gt boxes + predicted boxes)", 0 }, DBL(idf1) },
    { { "IDP", "identity precision: IDTP / (IDTP + IDFP)", 0 }, DBL(idp) },
    { { "IDR", "identity recall: IDTP / (IDTP + IDFN)", 0 }, DBL(idr) },
    { { "HOTA", "higher order tracking accuracy, mean over alpha 0.05..0.95", 0 }, DBL(hota) },
    { { "DetA", "HOTA detection accuracy, mean over alpha", 0 }, DBL(deta) },
    { { "AssA", "HOTA association accuracy, mean over alpha", 0 }, DBL(assa) },
    { { "LocA", "HOTA localisation accuracy, mean over alpha", 0 }, DBL(loca) },
    { { "DetRe", "HOTA detection recall, mean over alpha", 0 }, DBL(detre) },
    { { "DetPr", "HOTA detection precision, mean over alpha", 0 }, DBL(detpr) },
    { { "AssRe", "HOTA association recall, mean over alpha", 0 }, DBL(assre) },
    { { "AssPr", "HOTA association precision, mean over alpha", 0 }, DBL(asspr) },
    { { "recall", "matched gt boxes / gt boxes", 0 }, DBL(recall) },
    { { "precision", "matched predictions / predictions", 0 }, DBL(precision) },
    { { "TP", "matched pairs, switches included (TrackEval CLR_TP)", 1 }, I64(tp) },
    { { "FP", "predictions matched to nothing", 1 }, I64(fp) },
    { { "FN", "gt boxes matched to nothing (misses)", 1 }, I64(fn) },
    { { "IDSW", "identity switches", 1 }, I64(idsw) },
    { { "Frag", "fragmentations: tracked -> missed transitions within an object's tracked span", 1 }, I64(frag) },
    { { "MT", "mostly tracked gt ids (matched in >= 80% of their frames)", 1 }, I64(mt) },
    { { "PT", "partially tracked gt ids (20% to 80%)", 1 }, I64(pt) },
    { { "ML", "mostly lost gt ids (< 20%)", 1 }, I64(ml) },
    { { "IDTP", "identity true positives", 1 }, I64(idtp) },
    { { "IDFP", "identity false positives", 1 }, I64(idfp) },
    { { "IDFN", "identity false negatives", 1 }, I64(idfn) },
    { { "num_frames", "frames in either file", 1 }, I64(num_frames) },
    { { "num_gt_boxes", "gt boxes", 1 }, I64(num_gt) },
    { { "num_pred_boxes", "predicted boxes", 1 }, I64(num_pred) },
    { { "num_unique_objects", "distinct gt ids", 1 }, I64(num_unique_objects) },
    { { "num_unique_hyps", "distinct predicted ids", 1 }, I64(num_unique_hyps) },
};
#undef I64
#undef DBL
#define N_METRICS ((int)(sizeof metrics / sizeof *metrics))

int it_mot_metric_count(void) { return N_METRICS; }

const it_mot_metric *it_mot_metric_at(int i) { return i >= 0 && i < N_METRICS ? &metrics[i].m : NULL; }

double it_mot_metric_value(const it_mot_result *r, const char *name, int *found) {
    for (int i = 0; r && name && i < N_METRICS; i++) {
        if (strcmp(metrics[i].m.name, name)) continue;
        if (found) *found = 1;
        const char *base = (const char *)r + metrics[i].off;
        if (metrics[i].type == 'i') {
            int64_t v;
            memcpy(&v, base, sizeof v);
            return (double)v;
        }
        double d;
        memcpy(&d, base, sizeof d);
        return d;
    }
    if (found) *found = 0;
    return NAN;
}
