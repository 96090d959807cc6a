/* YOLO head decoding the way the Ultralytics reference does it, with no per-frame allocation. */
#include "detect/postprocess.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

itscam_status it_det_scratch_init(it_det_scratch *s, int n_anchors, int max_det) {
    memset(s, 0, sizeof *s);
    if (n_anchors <= 0 || max_det <= 0 || max_det > ITSCAM_MAX_DET_LIMIT)
        return it_err(ITSCAM_ERR_INVALID_ARG, "detection scratch: %d anchors, max_det %d", n_anchors, max_det);
    size_t n = (size_t)n_anchors;
    s->idx = it_malloc(n * sizeof *s->idx);
    s->tmp = it_malloc(n * sizeof *s->tmp);
    s->score = it_malloc(n * sizeof *s->score);
    s->cls = it_malloc(n * sizeof *s->cls);
    s->box = it_malloc(n * 4 * sizeof *s->box);
    s->dead = it_malloc(n);
    if (!s->idx || !s->tmp || !s->score || !s->cls || !s->box || !s->dead) {
        it_det_scratch_free(s);
        return it_err(ITSCAM_ERR_NOMEM, "detection scratch for %d anchors", n_anchors);
    }
    s->cap = n_anchors;
    s->max_det = max_det;
    return ITSCAM_OK;
}

void it_det_scratch_free(it_det_scratch *s) {
    if (!s) return;
    it_free(s->idx);
    it_free(s->tmp);
    it_free(s->score);
    it_free(s->cls);
    it_free(s->box);
    it_free(s->dead);
    memset(s, 0, sizeof *s);
}

static int class_allowed(const itscam_detector_params *p, int c) {
    if (!p->classes || p->num_classes_filter <= 0) return 1;
    for (int i = 0; i < p->num_classes_filter; i++)
        if (p->classes[i] == c) return 1;
    return 0;
}

/* Candidates i < j in idx order: score descending, then position ascending (numpy's
 * stable argsort of -conf). Bottom-up merge sort into tmp: stable, no allocation. */
static void sort_by_score(int *idx, int *tmp, int n, const float *score) {
    for (int width = 1; width < n; width *= 2) {
        for (int lo = 0; lo < n; lo += 2 * width) {
            int mid = IT_MIN(lo + width, n), hi = IT_MIN(lo + 2 * width, n), a = lo, b = mid, k = lo;
            while (a < mid && b < hi) tmp[k++] = score[idx[b]] > score[idx[a]] ? idx[b++] : idx[a++];
            while (a < mid) tmp[k++] = idx[a++];
            while (b < hi) tmp[k++] = idx[b++];
        }
        memcpy(idx, tmp, (size_t)n * sizeof *idx);
    }
}

/* A float parameter as the decimal the user meant (0.7f -> 0.7), as Python compares it. */
static double as_decimal(float v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%.7g", v);
    return strtod(buf, NULL);
}

static void map_box(const float *b, const it_letterbox *lb, int img_w, int img_h, float *o) {
    /* float32 throughout, as numpy does: (x - pad) / r, then clip to the image. */
    float px = (float)lb->pad_x, py = (float)lb->pad_y, r = lb->scale, W = (float)img_w, H = (float)img_h;
    float v[4] = {(b[0] - px) / r, (b[1] - py) / r, (b[2] - px) / r, (b[3] - py) / r};
    o[0] = v[0] < 0 ? 0 : v[0] > W ? W : v[0];
    o[1] = v[1] < 0 ? 0 : v[1] > H ? H : v[1];
    o[2] = v[2] < 0 ? 0 : v[2] > W ? W : v[2];
    o[3] = v[3] < 0 ? 0 : v[3] > H ? H : v[3];
}

static itscam_status check_args(const itscam_detector_params *p, const it_letterbox *lb, int img_w, int img_h,
                                itscam_detection *out, int *n_out) {
    if (!p || !lb || !out || !n_out || img_w <= 0 || img_h <= 0 || !(lb->scale > 0))
        return it_err(ITSCAM_ERR_INVALID_ARG, "decode: bad arguments");
    *n_out = 0;
    return ITSCAM_OK;
}

itscam_status it_decode_yolo(const float *head, int n_ch, int n_anchors, const itscam_detector_params *p,
                             const it_letterbox *lb, int img_w, int img_h, it_det_scratch *s,
                             itscam_detection *out, int *n_out) {
    itscam_status st = check_args(p, lb, img_w, img_h, out, n_out);
    if (st) return st;
    if (!head || n_ch < 5 || n_anchors <= 0 || !s || n_anchors > s->cap)
        return it_err(ITSCAM_ERR_INVALID_ARG, "decode: head [%d, %d] for scratch of %d anchors", n_ch, n_anchors,
                      s ? s->cap : 0);
    const int A = n_anchors, nc = n_ch - 4;
    const float conf = p->conf;
    int max_det = p->max_det > 0 ? p->max_det : ITSCAM_MAX_DET_DEFAULT;
    if (max_det > s->max_det) max_det = s->max_det;

    /* Best class per anchor (first maximum, as argmax), kept when > conf. Channel-major
     * layout: walk the classes row by row so that memory is read sequentially. */
    float *best = s->score;
    int *bcls = s->cls;
    for (int a = 0; a < A; a++) best[a] = head[4 * (size_t)A + a], bcls[a] = 0;
    for (int c = 1; c < nc; c++) {
        const float *row = head + (size_t)(4 + c) * A;
        for (int a = 0; a < A; a++)
            if (row[a] > best[a]) best[a] = row[a], bcls[a] = c;
    }
    int n = 0;
    for (int a = 0; a < A; a++)
        if (best[a] > conf && class_allowed(p, bcls[a])) s->idx[n++] = a;
    if (n == 0) return ITSCAM_OK;

    sort_by_score(s->idx, s->tmp, n, best);
    if (n > IT_MAX_NMS) n = IT_MAX_NMS;
    /* The reference's NMS re-sorts with a stable ascending argsort and reverses it, so among
     * equal scores the later anchor comes first: reverse each run of ties. */
    for (int i = 0; i < n;) {
        int j = i + 1;
        while (j < n && best[s->idx[j]] == best[s->idx[i]]) j++;
        for (int l = i, r = j - 1; l < r; l++, r--) {
            int t = s->idx[l];
            s->idx[l] = s->idx[r];
            s->idx[r] = t;
        }
        i = j;
    }
    for (int i = 0; i < n; i++) {
        int a = s->idx[i];
        float cx = head[a], cy = head[(size_t)A + a], w = head[2 * (size_t)A + a], h = head[3 * (size_t)A + a];
        float *b = s->box + 4 * (size_t)i;
        b[0] = cx - w / 2; b[1] = cy - h / 2; b[2] = cx + w / 2; b[3] = cy + h / 2;
        s->dead[i] = 0;
    }

    /* Greedy NMS in double on boxes offset by class * 7680 (class-aware) exactly as the
     * reference computes it; a NaN IoU suppresses, as numpy's `iou <= thr` filter does. */
    const double thr = as_decimal(p->iou);
    const double off_step = p->agnostic_nms ? 0.0 : IT_MAX_WH;
    int kept = 0;
    for (int i = 0; i < n && kept < max_det; i++) {
        if (s->dead[i]) continue;
        const float *bi = s->box + 4 * (size_t)i;
        double oi = off_step * s->cls[s->idx[i]];
        double ix1 = bi[0] + oi, iy1 = bi[1] + oi, ix2 = bi[2] + oi, iy2 = bi[3] + oi;
        double area_i = (ix2 - ix1) * (iy2 - iy1);
        for (int j = i + 1; j < n; j++) {
            if (s->dead[j]) continue;
            const float *bj = s->box + 4 * (size_t)j;
            double oj = off_step * s->cls[s->idx[j]];
            double jx1 = bj[0] + oj, jy1 = bj[1] + oj, jx2 = bj[2] + oj, jy2 = bj[3] + oj;
            double ww = IT_MIN(ix2, jx2) - IT_MAX(ix1, jx1), hh = IT_MIN(iy2, jy2) - IT_MAX(iy1, jy1);
            double inter = (ww > 0 ? ww : 0) * (hh > 0 ? hh : 0);
            double iou = inter / (area_i + (jx2 - jx1) * (jy2 - jy1) - inter + 1e-9);
            if (!(iou <= thr)) s->dead[j] = 1;
        }
        itscam_detection *d = &out[kept++];
        d->class_id = s->cls[s->idx[i]];
        d->class_name = "";
        d->score = best[s->idx[i]];
        map_box(bi, lb, img_w, img_h, d->box);
    }
    *n_out = kept;
    return ITSCAM_OK;
}

itscam_status it_decode_end2end(const float *head, int n, const itscam_detector_params *p, const it_letterbox *lb,
                                int img_w, int img_h, itscam_detection *out, int *n_out) {
    itscam_status st = check_args(p, lb, img_w, img_h, out, n_out);
    if (st) return st;
    if (!head || n < 0) return it_err(ITSCAM_ERR_INVALID_ARG, "decode: bad end2end head");
    int max_det = p->max_det > 0 ? p->max_det : ITSCAM_MAX_DET_DEFAULT, kept = 0;
    for (int i = 0; i < n && kept < max_det; i++) {
        const float *r = head + (size_t)i * 6;
        float cf = r[5];
        if (!(r[4] > p->conf) || !(cf >= 0 && cf < 1e6f)) continue;
        int c = (int)cf;
        if (!class_allowed(p, c)) continue;
        itscam_detection *d = &out[kept++];
        d->class_id = c;
        d->class_name = "";
        d->score = r[4];
        map_box(r, lb, img_w, img_h, d->box);
    }
    *n_out = kept;
    return ITSCAM_OK;
}
