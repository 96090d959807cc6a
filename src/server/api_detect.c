/* The detection API: POST /v1/detect (one image) and /v1/detect/batch (a multipart form
 * of images), with their /predict aliases. Query parameters tune each request. */
#include "server/http_internal.h"

#include "core/core.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SRV_MAX_IMAGE_PIXELS ((size_t)100 * 1000 * 1000)

/* Query parameters shared by /v1/detect and /v1/detect/batch into a template job. */
static int query_params(http_req *r, it_sched_job *t, char *err, size_t n) {
    srv_server *s = r->s;
    struct MHD_Connection *c = r->conn;
    t->params = itscam_detector_default_params();
    t->params.conf = s->cfg.conf;
    t->params.iou = s->cfg.iou;
    t->params.max_det = s->cfg.max_det;
    t->prio = IT_SCHED_NORMAL;
    double timeout = s->cfg.timeout_ms;
    const char *v;
    if ((v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "conf"))) {
        char *e;
        double x = strtod(v, &e);
        if (e == v || *e || !(x >= 0 && x <= 1)) return snprintf(err, n, "conf: expected a number in [0,1], got '%s'", v), -1;
        t->params.conf = (float)x;
    }
    if ((v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "iou"))) {
        char *e;
        double x = strtod(v, &e);
        if (e == v || *e || !(x >= 0 && x <= 1)) return snprintf(err, n, "iou: expected a number in [0,1], got '%s'", v), -1;
        t->params.iou = (float)x;
    }
    if ((v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "max_det"))) {
        char *e;
        long x = strtol(v, &e, 10);
        if (e == v || *e || x < 1 || x > ITSCAM_MAX_DET_LIMIT)
            return snprintf(err, n, "max_det: expected an integer in [1,%d], got '%s'", ITSCAM_MAX_DET_LIMIT, v), -1;
        t->params.max_det = (int)x;
    }
    if ((v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "classes")) && *v) {
        int k = srv_parse_classes(v, t->classes, IT_SCHED_MAX_CLASSES);
        if (k < 0) return snprintf(err, n, "classes: expected class ids like 0,2,5, got '%s'", v), -1;
        t->params.num_classes_filter = k;
    }
    if ((v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "agnostic")))
        t->params.agnostic_nms = !strcmp(v, "1") || !strcmp(v, "true");
    if ((v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "priority"))) {
        int p = it_sched_prio_parse(v);
        if (p < 0)
            return snprintf(err, n, "priority: expected %s, %s or %s, got '%s'", it_sched_prio_name(IT_SCHED_URGENT),
                            it_sched_prio_name(IT_SCHED_NORMAL), it_sched_prio_name(IT_SCHED_BATCH), v), -1;
        t->prio = p;
    }
    if ((v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "timeout_ms"))) {
        char *e;
        long x = strtol(v, &e, 10);
        if (e == v || *e || x < 1 || x > 3600000) return snprintf(err, n, "timeout_ms: expected milliseconds in [1,3600000], got '%s'", v), -1;
        timeout = (double)x;
    }
    t->deadline_ms = r->t0 + timeout;
    return 0;
}

/* Decode one image into r->imgs[r->n_imgs]; 0, or -1 with the decoder's reason. */
static int decode_one(http_req *r, const uint8_t *data, size_t len, const char *fname, char *err, size_t n) {
    double t = it_now_ms();
    itscam_status st = it_image_decode(data, len, SRV_MAX_IMAGE_PIXELS, &r->imgs[r->n_imgs]);
    if (st != ITSCAM_OK) {
        snprintf(err, n, "%s%scannot decode the image: %s", fname && *fname ? fname : "",
                 fname && *fname ? ": " : "", itscam_last_error());
        return -1;
    }
    r->ms_decode[r->n_imgs] = it_now_ms() - t;
    snprintf(r->filenames[r->n_imgs], sizeof r->filenames[0], "%s", fname ? fname : "");
    srv_metrics_decode(&r->s->mx, r->model_name, r->ms_decode[r->n_imgs] / 1e3);
    r->n_imgs++;
    return 0;
}

/* The images of the body: one raw image, or the "file" fields of a multipart form. 0, or
 * the HTTP status to answer with the reason in err. */
static int decode_body(http_req *r, int batch, char *err, size_t errlen) {
    const char *ct = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (r->len == 0) return snprintf(err, errlen, "the request has no body: send an image or a multipart form"), 400;
    if (http_is_ctype(ct, "multipart/form-data")) {
        mp_part parts[SRV_MAX_FILES];
        int np = 0;
        char why[448];
        if (mp_parse(ct, r->body, r->len, parts, SRV_MAX_FILES, &np, why, sizeof why) != 0)
            return snprintf(err, errlen, "multipart body: %s", why), 400;
        for (int i = 0; i < np; i++) {
            if (strcmp(parts[i].name, "file") && strcmp(parts[i].name, "files") && strcmp(parts[i].name, "image"))
                continue;
            if (!batch && r->n_imgs == 1)
                return snprintf(err, errlen, "/v1/detect takes one file; use /v1/detect/batch"), 400;
            if (decode_one(r, parts[i].data, parts[i].len, parts[i].filename, err, errlen) != 0) return 422;
        }
        if (r->n_imgs == 0) return snprintf(err, errlen, "the form has no field named 'file'"), 400;
        return 0;
    }
    if (http_is_ctype(ct, "image/jpeg") || http_is_ctype(ct, "image/png") ||
        http_is_ctype(ct, "application/octet-stream") || http_is_ctype(ct, "image/jpg"))
        return decode_one(r, r->body, r->len, "", err, errlen) != 0 ? 422 : 0;
    snprintf(err, errlen, "unsupported content type '%s': send image/jpeg, image/png or multipart/form-data",
             ct ? ct : "(none)");
    return 415;
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
    int code = decode_body(r, batch, err, sizeof err);
    if (code) return http_respond_error(r, code, "%s", err);
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
