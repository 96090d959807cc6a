/* Reading the detections that `itscam track` replays (jansson), with errors that name the
 * frame, the detection and the field. Kept apart from the CLI so a fuzz target can call it. */
#include "track/track_json.h"

#include <jansson.h>
#include <math.h>
#include <string.h>

void it_track_input_free(it_track_input *in) {
    if (!in) return;
    it_free(in->frames);
    it_free(in->dets);
    it_free(in->scores);
    memset(in, 0, sizeof *in);
}

/* An integer within [lo, hi]: JSON integers only (1.0 is not a frame number). */
static itscam_status get_int(json_t *o, const char *key, const char *where, long long lo, long long hi,
                             long long *out) {
    json_t *v = json_object_get(o, key);
    if (!v) return it_err(ITSCAM_ERR_INVALID_ARG, "%s%s: missing", where, key);
    if (!json_is_integer(v)) return it_err(ITSCAM_ERR_INVALID_ARG, "%s%s: not an integer", where, key);
    long long x = json_integer_value(v);
    if (x < lo || x > hi)
        return it_err(ITSCAM_ERR_INVALID_ARG, "%s%s: %lld is outside [%lld, %lld]", where, key, x, lo, hi);
    *out = x;
    return ITSCAM_OK;
}

static itscam_status parse_det(json_t *d, const char *where, it_track_det *out, double *score) {
    if (!json_is_object(d)) return it_err(ITSCAM_ERR_INVALID_ARG, "%s: not an object", where);
    json_t *box = json_object_get(d, "box");
    if (!box) return it_err(ITSCAM_ERR_INVALID_ARG, "%s.box: missing", where);
    if (!json_is_array(box) || json_array_size(box) != 4)
        return it_err(ITSCAM_ERR_INVALID_ARG, "%s.box: not an array of 4 numbers [x1, y1, x2, y2]", where);
    double b[4];
    for (int k = 0; k < 4; k++) {
        json_t *v = json_array_get(box, (size_t)k);
        if (!json_is_number(v)) return it_err(ITSCAM_ERR_INVALID_ARG, "%s.box[%d]: not a number", where, k);
        b[k] = json_number_value(v);
        /* float range: a box must survive the conversion to the tracker's float32 */
        if (!isfinite(b[k]) || fabs(b[k]) > 1e30)
            return it_err(ITSCAM_ERR_INVALID_ARG, "%s.box[%d]: %g is not a usable coordinate", where, k, b[k]);
        out->box[k] = (float)b[k];
    }
    if (b[2] < b[0] || b[3] < b[1])
        return it_err(ITSCAM_ERR_INVALID_ARG, "%s.box: [%g, %g, %g, %g] has x2 < x1 or y2 < y1", where, b[0], b[1],
                      b[2], b[3]);
    json_t *s = json_object_get(d, "score");
    if (!s) return it_err(ITSCAM_ERR_INVALID_ARG, "%s.score: missing", where);
    if (!json_is_number(s)) return it_err(ITSCAM_ERR_INVALID_ARG, "%s.score: not a number", where);
    *score = json_number_value(s);
    if (!(*score >= 0 && *score <= 1))
        return it_err(ITSCAM_ERR_INVALID_ARG, "%s.score: %g is outside [0, 1]", where, *score);
    out->score = (float)*score;
    char w2[96];
    snprintf(w2, sizeof w2, "%s.", where);
    long long c;
    itscam_status st = get_int(d, "class_id", w2, 0, 1000000, &c);
    if (st) return st;
    out->class_id = (int)c;
    return ITSCAM_OK;
}

static itscam_status parse_doc(json_t *root, it_track_input *in) {
    if (!json_is_object(root)) return it_err(ITSCAM_ERR_INVALID_ARG, "the top level is not an object");
    long long w, h;
    itscam_status st = get_int(root, "width", "", 1, IT_TRACK_JSON_MAX_DIM, &w);
    if (!st) st = get_int(root, "height", "", 1, IT_TRACK_JSON_MAX_DIM, &h);
    if (st) return st;
    in->width = (int)w;
    in->height = (int)h;
    json_t *frames = json_object_get(root, "frames");
    if (!frames) return it_err(ITSCAM_ERR_INVALID_ARG, "frames: missing");
    if (!json_is_array(frames)) return it_err(ITSCAM_ERR_INVALID_ARG, "frames: not an array");
    size_t nf = json_array_size(frames);
    if (nf > IT_TRACK_JSON_MAX_FRAMES)
        return it_err(ITSCAM_ERR_INVALID_ARG, "frames: %zu frames, at most %d", nf, IT_TRACK_JSON_MAX_FRAMES);
    /* First pass: shapes and counts, so that the detections go into one block. */
    size_t total = 0;
    for (size_t i = 0; i < nf; i++) {
        json_t *f = json_array_get(frames, i);
        if (!json_is_object(f)) return it_err(ITSCAM_ERR_INVALID_ARG, "frames[%zu]: not an object", i);
        json_t *d = json_object_get(f, "detections");
        if (!d) return it_err(ITSCAM_ERR_INVALID_ARG, "frames[%zu].detections: missing", i);
        if (!json_is_array(d)) return it_err(ITSCAM_ERR_INVALID_ARG, "frames[%zu].detections: not an array", i);
        if (json_array_size(d) > IT_TRACK_MAX_DETS)
            return it_err(ITSCAM_ERR_INVALID_ARG, "frames[%zu].detections: %zu detections, at most %d per frame", i,
                          json_array_size(d), IT_TRACK_MAX_DETS);
        total += json_array_size(d);
    }
    in->frames = it_calloc(nf ? nf : 1, sizeof *in->frames);
    in->dets = it_calloc(total ? total : 1, sizeof *in->dets);
    in->scores = it_calloc(total ? total : 1, sizeof *in->scores);
    if (!in->frames || !in->dets || !in->scores)
        return it_err(ITSCAM_ERR_NOMEM, "no memory for %zu frames and %zu detections", nf, total);
    size_t at = 0;
    long long prev = -1;
    for (size_t i = 0; i < nf; i++) {
        json_t *f = json_array_get(frames, i), *d = json_object_get(f, "detections");
        char where[64];
        snprintf(where, sizeof where, "frames[%zu].", i);
        long long num;
        st = get_int(f, "frame", where, 0, 2147483647LL, &num);
        if (st) return st;
        if (num <= prev)
            return it_err(ITSCAM_ERR_INVALID_ARG, "frames[%zu].frame: %lld does not follow %lld (frame numbers increase)",
                          i, num, prev);
        prev = num;
        it_track_frame *fr = &in->frames[i];
        fr->frame = (int)num;
        fr->n = (int)json_array_size(d);
        fr->dets = in->dets + at;
        fr->scores = in->scores + at;
        for (int k = 0; k < fr->n; k++) {
            char w2[80];
            snprintf(w2, sizeof w2, "frames[%zu].detections[%d]", i, k);
            st = parse_det(json_array_get(d, (size_t)k), w2, &in->dets[at + (size_t)k], &in->scores[at + (size_t)k]);
            if (st) return st;
        }
        at += (size_t)fr->n;
    }
    in->n_frames = (int)nf;
    in->n_dets = total;
    return ITSCAM_OK;
}

itscam_status it_track_input_parse(const char *buf, size_t len, it_track_input *in) {
    if (!in) return it_err(ITSCAM_ERR_INVALID_ARG, "no output given");
    memset(in, 0, sizeof *in);
    if (!buf && len) return it_err(ITSCAM_ERR_INVALID_ARG, "no input given");
    json_error_t je;
    json_t *root = json_loadb(buf ? buf : "", len, JSON_REJECT_DUPLICATES, &je);
    if (!root) return it_err(ITSCAM_ERR_INVALID_ARG, "line %d, column %d: %s", je.line, je.column, je.text);
    itscam_status st = parse_doc(root, in);
    json_decref(root);
    if (st) it_track_input_free(in);
    return st;
}
