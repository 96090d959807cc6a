/* The detection API: POST /v1/detect (one image) and /v1/detect/batch (a multipart form
 * of images), with their /predict aliases. Query parameters tune each request. */
#include "server/http_internal.h"

#include "core/core.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SRV_MAX_IMAGE_PIXELS ((size_t)100 * 1000 * 1000)
#define TEXT_NUM_(x) #x
#define TEXT_NUM(x) TEXT_NUM_(x)

/* ---- query parameters: one row each; every one must parse completely ----
 * A value is taken with the length the HTTP library decoded, so that "conf=0.25%00evil"
 * is refused rather than read as 0.25. Unknown names and repeated names are refused too:
 * a typo ("confidence=0.9") silently ignored gives answers the client did not ask for. */
typedef struct qctx {
    http_req *r;
    it_sched_job *t;
    double timeout;
    unsigned seen;    /* bit per row */
    int bad;          /* an answer is decided: err holds it */
    char *err;
    size_t errlen;
} qctx;

typedef int (*qparse)(qctx *q, const char *v, size_t len);

static int q_conf(qctx *q, const char *v, size_t len) {
    double x;
    if (srv_parse_double(v, len, 0, 1, &x) != 0) return -1;
    q->t->params.conf = (float)x;
    return 0;
}

static int q_iou(qctx *q, const char *v, size_t len) {
    double x;
    if (srv_parse_double(v, len, 0, 1, &x) != 0) return -1;
    q->t->params.iou = (float)x;
    return 0;
}

static int q_max_det(qctx *q, const char *v, size_t len) {
    long x;
    if (srv_parse_long(v, len, 1, ITSCAM_MAX_DET_LIMIT, &x) != 0) return -1;
    q->t->params.max_det = (int)x;
    return 0;
}

static int q_classes(qctx *q, const char *v, size_t len) {
    if (len == 0) return 0; /* "classes=": no filter */
    if (memchr(v, 0, len)) return -1;
    int k = srv_parse_classes(v, q->t->classes, IT_SCHED_MAX_CLASSES);
    if (k < 0) return -1;
    q->t->params.num_classes_filter = k;
    return 0;
}

static int q_agnostic(qctx *q, const char *v, size_t len) {
    return srv_parse_bool(v, len, &q->t->params.agnostic_nms);
}

static int q_priority(qctx *q, const char *v, size_t len) {
    if (memchr(v, 0, len)) return -1;
    int p = it_sched_prio_parse(v);
    if (p < 0) return -1;
    q->t->prio = p;
    return 0;
}

static int q_timeout(qctx *q, const char *v, size_t len) {
    long x;
    if (srv_parse_long(v, len, 1, 3600000, &x) != 0) return -1;
    q->timeout = (double)x;
    return 0;
}

/* The model was looked up from this value before the body came (http.c): here it only
 * has to be whole, so that "yolo11n%00x" does not pass for "yolo11n". */
static int q_model(qctx *q, const char *v, size_t len) {
    (void)q;
    return len && memchr(v, 0, len) ? -1 : 0;
}

static const struct qparam {
    const char *name;
    qparse parse;
    const char *expect;
} qparams[] = {
    { "conf", q_conf, "a number in [0,1]" },
    { "iou", q_iou, "a number in [0,1]" },
    { "max_det", q_max_det, "an integer in [1," TEXT_NUM(ITSCAM_MAX_DET_LIMIT) "]" },
    { "classes", q_classes, "class ids like 0,2,5" },
    { "agnostic", q_agnostic, "true, false, 1 or 0" },
    { "priority", q_priority, "urgent, normal or batch" },
    { "timeout_ms", q_timeout, "milliseconds in [1,3600000]" },
    { "model", q_model, "a served model's name" },
};
#define N_QPARAMS (sizeof qparams / sizeof qparams[0])

/* The value for a message: at most 40 bytes, unprintable bytes (a NUL above all) as %XX. */
static void printable(const char *v, size_t len, char *out, size_t cap) {
    size_t o = 0;
    for (size_t i = 0; i < len && o + 4 < cap; i++) {
        unsigned char ch = (unsigned char)v[i];
        if (i == 40) {
            o += (size_t)snprintf(out + o, cap - o, "...");
            break;
        }
        if (ch < 0x20 || ch >= 0x7f || ch == '%') o += (size_t)snprintf(out + o, cap - o, "%%%02X", ch);
        else out[o++] = (char)ch;
    }
    out[o] = 0;
}

static enum MHD_Result query_one(void *cls, enum MHD_ValueKind kind, const char *key, size_t key_size,
                                 const char *value, size_t value_size) {
    (void)kind;
    qctx *q = cls;
    char shown[160];
    for (size_t i = 0; i < N_QPARAMS; i++) {
        const struct qparam *p = &qparams[i];
        if (strlen(p->name) != key_size || memcmp(p->name, key, key_size) != 0) continue;
        if (q->seen & (1u << i)) {
            snprintf(q->err, q->errlen, "%s: given more than once", p->name);
            q->bad = 1;
            return MHD_NO;
        }
        q->seen |= 1u << i;
        if (!value || p->parse(q, value, value_size) != 0) {
            printable(value ? value : "", value ? value_size : 0, shown, sizeof shown);
            snprintf(q->err, q->errlen, "%s: expected %s, got '%s'", p->name, p->expect, shown);
            q->bad = 1;
            return MHD_NO;
        }
        return MHD_YES;
    }
    printable(key, key_size, shown, sizeof shown);
    snprintf(q->err, q->errlen, "unknown query parameter '%s' (known: conf, iou, max_det, classes, agnostic, "
             "priority, timeout_ms, model)", shown);
    q->bad = 1;
    return MHD_NO;
}

/* Query parameters shared by /v1/detect and /v1/detect/batch into a template job. */
static int query_params(http_req *r, it_sched_job *t, char *err, size_t n) {
    srv_server *s = r->s;
    t->params = itscam_detector_default_params();
    t->params.conf = s->cfg.conf;
    t->params.iou = s->cfg.iou;
    t->params.max_det = s->cfg.max_det;
    t->prio = IT_SCHED_NORMAL;
    qctx q = { .r = r, .t = t, .timeout = s->cfg.timeout_ms, .err = err, .errlen = n };
    MHD_get_connection_values_n(r->conn, MHD_GET_ARGUMENT_KIND, query_one, &q);
    if (q.bad) return -1;
    t->deadline_ms = r->t0 + q.timeout;
    return 0;
}

/* ---- images: probed, admitted against the decode budget, then decoded ---- */

typedef struct body_image {
    const uint8_t *data;
    size_t len;
    const char *fname;   /* "" for a raw body */
} body_image;

/* "name: " for messages about a named file, "" otherwise. */
static const char *name_sep(const char *fname) {
    return fname && *fname ? ": " : "";
}

/* The images of the body: one raw image, or the "file" fields of a multipart form (parts
 * point into r->body). 0, or the HTTP status with the reason in err. */
static int body_images(http_req *r, int batch, mp_part *parts, body_image *imgs, int *n, char *err, size_t errlen) {
    const char *ct = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    *n = 0;
    if (r->len == 0) return snprintf(err, errlen, "the request has no body: send an image or a multipart form"), 400;
    if (http_is_ctype(ct, "multipart/form-data")) {
        int np = 0;
        char why[448];
        if (mp_parse(ct, r->body, r->len, parts, SRV_MAX_FILES, &np, why, sizeof why) != 0)
            return snprintf(err, errlen, "multipart body: %s", why), 400;
        for (int i = 0; i < np; i++) {
            if (strcmp(parts[i].name, "file") && strcmp(parts[i].name, "files") && strcmp(parts[i].name, "image"))
                continue;
            if (!batch && *n == 1) return snprintf(err, errlen, "/v1/detect takes one file; use /v1/detect/batch"), 400;
            imgs[(*n)++] = (body_image){ parts[i].data, parts[i].len, parts[i].filename };
        }
        if (*n == 0) return snprintf(err, errlen, "the form has no field named 'file'"), 400;
        return 0;
    }
    if (http_is_ctype(ct, "image/jpeg") || http_is_ctype(ct, "image/png") ||
        http_is_ctype(ct, "application/octet-stream") || http_is_ctype(ct, "image/jpg")) {
        imgs[(*n)++] = (body_image){ r->body, r->len, "" };
        return 0;
    }
    snprintf(err, errlen, "unsupported content type '%s': send image/jpeg, image/png or multipart/form-data",
             ct ? ct : "(none)");
    return 415;
}

/* The bytes decoding these images takes: each decoded image (w*h*3, held until the
 * request ends) plus one working copy of the largest, for what a decode holds beside
 * its output (an EXIF rotation's second image, libjpeg's progressive coefficients).
 * Every header is read first, so a bomb is refused before a byte of it is inflated.
 * 0, or the HTTP status with the reason in err (422: unreadable or over the per-image
 * limit). */
static int decode_cost(const body_image *imgs, int n, size_t *bytes, char *err, size_t errlen) {
    size_t sum = 0, largest = 0;
    for (int i = 0; i < n; i++) {
        int w, h, ch;
        if (it_image_probe(imgs[i].data, imgs[i].len, &w, &h, &ch) != ITSCAM_OK)
            return snprintf(err, errlen, "%s%scannot decode the image: %s", imgs[i].fname, name_sep(imgs[i].fname),
                            itscam_last_error()), 422;
        if ((size_t)w > SRV_MAX_IMAGE_PIXELS / (size_t)h)
            return snprintf(err, errlen, "%s%simage %d is %dx%d, over the limit of %zu pixels per image",
                            imgs[i].fname, name_sep(imgs[i].fname), i + 1, w, h, SRV_MAX_IMAGE_PIXELS), 422;
        size_t b = (size_t)w * (size_t)h * 3;
        sum += b;
        if (b > largest) largest = b;
    }
    *bytes = sum + largest;
    return 0;
}

/* Reserve the request's decode memory from the server's budget (held until the request
 * is freed). 0, or 413 (can never fit) / 503 (busy: retry) with the reason in err. */
static int admit(http_req *r, size_t bytes, int n, char *err, size_t errlen) {
    srv_admission *a = &r->s->adm;
    switch (srv_admission_reserve(a, bytes, r->s->cfg.decode_wait_ms)) {
    case SRV_ADMIT_OK:
        r->decode_reserved = bytes;
        return 0;
    case SRV_ADMIT_NEVER:
        return snprintf(err, errlen, "%d image%s would decode to %.1f MiB, more than the server's whole decode "
                        "budget of %.1f MiB (server.decode_budget_bytes): send fewer or smaller images",
                        n, n == 1 ? "" : "s", bytes / 1048576.0, a->budget / 1048576.0), 413;
    case SRV_ADMIT_BUSY:
        break;
    }
    return snprintf(err, errlen, "the server is decoding other images: %d image%s need %.1f MiB of the decode "
                    "budget of %.1f MiB and none came free within %d ms; retry later",
                    n, n == 1 ? "" : "s", bytes / 1048576.0, a->budget / 1048576.0, r->s->cfg.decode_wait_ms), 503;
}

/* Decode one image into r->imgs[r->n_imgs]; 0, or -1 with the decoder's reason. */
static int decode_one(http_req *r, const body_image *b, char *err, size_t n) {
    double t = it_now_ms();
    itscam_status st = it_image_decode(b->data, b->len, SRV_MAX_IMAGE_PIXELS, &r->imgs[r->n_imgs]);
    if (st != ITSCAM_OK) {
        snprintf(err, n, "%s%scannot decode the image: %s", b->fname, name_sep(b->fname), itscam_last_error());
        return -1;
    }
    r->ms_decode[r->n_imgs] = it_now_ms() - t;
    snprintf(r->filenames[r->n_imgs], sizeof r->filenames[0], "%s", b->fname);
    srv_metrics_decode(&r->s->mx, r->model_name, r->ms_decode[r->n_imgs] / 1e3);
    r->n_imgs++;
    return 0;
}

/* Probe, admit and decode every image of the body; decoding stops early once the
 * deadline has passed (the caller answers 504). 0, or the HTTP status to answer with the
 * reason in err. */
static int decode_body(http_req *r, int batch, double deadline_ms, char *err, size_t errlen) {
    mp_part parts[SRV_MAX_FILES];
    body_image imgs[SRV_MAX_FILES];
    int n = 0;
    size_t bytes = 0;
    int code = body_images(r, batch, parts, imgs, &n, err, errlen);
    if (!code) code = decode_cost(imgs, n, &bytes, err, errlen);
    if (!code) code = admit(r, bytes, n, err, errlen);
    for (int i = 0; !code && i < n && it_now_ms() < deadline_ms; i++)
        if (decode_one(r, &imgs[i], err, errlen) != 0) code = 422;
    return code;
}

json_t *http_dets_json(const itscam_result *res) {
    json_t *arr = json_array();
    for (int k = 0; k < res->count; k++) {
        const itscam_detection *d = &res->dets[k];
        json_t *box = json_pack("[ffff]", round(d->box[0] * 100) / 100, round(d->box[1] * 100) / 100,
                                round(d->box[2] * 100) / 100, round(d->box[3] * 100) / 100);
        json_array_append_new(arr, json_pack("{s:i,s:s,s:f,s:o}", "class_id", d->class_id, "class",
                                             d->class_name ? d->class_name : "", "score",
                                             round(d->score * 1e6) / 1e6, "box", box));
    }
    return arr;
}

static json_t *image_json(http_req *r, int i, double total_ms) {
    const it_sched_job *j = &r->jobs[i].sj;
    json_t *o = json_object();
    if (r->filenames[i][0]) json_object_set_new(o, "filename", json_string(r->filenames[i]));
    json_object_set_new(o, "width", json_integer(j->res.width));
    json_object_set_new(o, "height", json_integer(j->res.height));
    json_object_set_new(o, "detections", http_dets_json(&j->res));
    json_object_set_new(o, "timings_ms",
                        json_pack("{s:f,s:f,s:f,s:f,s:f,s:f}", "queue", round(j->ms_queue * 1000) / 1000, "decode",
                                  round(r->ms_decode[i] * 1000) / 1000, "preprocess",
                                  round(j->ms_preprocess * 1000) / 1000, "inference",
                                  round(j->ms_inference * 1000) / 1000, "postprocess",
                                  round(j->ms_postprocess * 1000) / 1000, "total", round(total_ms * 1000) / 1000));
    json_object_set_new(o, "batch_size", json_integer(j->batch_size));
    return o;
}

static enum MHD_Result finish_one(http_req *r) {
    enum MHD_Result ret;
    if (http_jobs_failed(r, &ret)) return ret;
    json_t *o = image_json(r, 0, it_now_ms() - r->t0);
    json_object_set_new(o, "model", json_string(r->model->name));
    return http_respond_json(r, 200, o);
}

static enum MHD_Result finish_batch(http_req *r) {
    enum MHD_Result ret;
    if (http_jobs_failed(r, &ret)) return ret;
    double total = it_now_ms() - r->t0;
    json_t *arr = json_array();
    for (int i = 0; i < r->n_jobs; i++) json_array_append_new(arr, image_json(r, i, total));
    return http_respond_json(r, 200, json_pack("{s:s,s:o}", "model", r->model->name, "results", arr));
}

static enum MHD_Result start(http_req *r, int batch) {
    char err[512];
    it_sched_job tmpl;
    memset(&tmpl, 0, sizeof tmpl);
    if (query_params(r, &tmpl, err, sizeof err) != 0) return http_respond_error(r, 400, "%s", err);
    double t_decode = it_now_ms();
    int code = decode_body(r, batch, tmpl.deadline_ms, err, sizeof err);
    if (code == 503) return http_respond_error_h(r, code, err, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    if (code) return http_respond_error(r, code, "%s", err);
    /* Decoding can outlast the deadline (large images, a busy machine): say so here, where
     * it is known, rather than let the scheduler report a wait in its queue. */
    double now = it_now_ms();
    if (now >= tmpl.deadline_ms)
        return http_respond_error(r, 504, "the request timed out before queuing: it spent %.0f ms decoding %d image%s "
                                  "(%.0f ms in all, of a %.0f ms deadline)", now - t_decode, r->n_imgs,
                                  r->n_imgs == 1 ? "" : "s", now - r->t0, tmpl.deadline_ms - r->t0);
    tmpl.want_dets = 1;
    if (http_jobs_alloc(r, r->n_imgs, &tmpl) != 0) return http_respond_error(r, 500, "out of memory");
    for (int i = 0; i < r->n_imgs; i++)
        r->jobs[i].sj.img = (itscam_image){ .data = r->imgs[i].data, .width = r->imgs[i].width,
                                         .height = r->imgs[i].height, .stride = r->imgs[i].stride,
                                         .format = ITSCAM_PIX_BGR8 };
    return http_submit_jobs(r, batch ? finish_batch : finish_one);
}

enum MHD_Result api_detect(http_req *r) {
    return start(r, 0);
}

enum MHD_Result api_detect_batch(http_req *r) {
    return start(r, 1);
}
