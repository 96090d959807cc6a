/* KServe v2 inference: POST /v2/models/{model}[/versions/{version}]/infer, in JSON or with
 * the binary tensor extension. The input is the model's FP32 tensor or a UINT8 image; the
 * answer is the raw head or, with "detections": true, the detections. */
#include "server/http_internal.h"

#include "core/core.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The request's parameters, over the configured defaults, into a template job. */
static void template_job(http_req *r, it_sched_job *t) {
    const srv_config *cfg = &r->s->cfg;
    memset(t, 0, sizeof *t);
    t->params = itscam_detector_default_params();
    t->params.conf = r->ks.conf >= 0 ? r->ks.conf : cfg->conf;
    t->params.iou = r->ks.iou >= 0 ? r->ks.iou : cfg->iou;
    t->params.max_det = r->ks.max_det > 0 ? r->ks.max_det : cfg->max_det; /* parsed within the limit */
    t->prio = r->ks.priority >= 0 ? r->ks.priority : IT_SCHED_NORMAL;
    t->deadline_ms = r->t0 + (r->ks.timeout_ms > 0 ? r->ks.timeout_ms : cfg->timeout_ms);
    t->want_dets = r->ks.detections;
    t->want_raw = !r->ks.detections;
}

static enum MHD_Result finish(http_req *r);

int api_version_known(const char *url) {
    static const char pre[] = "/v2/models/", ver[] = "/versions/";
    if (strncmp(url, pre, sizeof pre - 1) != 0) return 1;
    const char *v = url + sizeof pre - 1;
    v += strcspn(v, "/"); /* past the model's name, which may itself be "versions" */
    if (strncmp(v, ver, sizeof ver - 1) != 0) return 1;
    v += sizeof ver - 1;
    return v[0] == '1' && (v[1] == 0 || v[1] == '/');
}

/* The first query parameter's name (KServe takes none: its parameters are in the body). */
static enum MHD_Result first_key(void *cls, enum MHD_ValueKind kind, const char *key, size_t key_size,
                                 const char *value, size_t value_size) {
    (void)kind;
    (void)value;
    (void)value_size;
    snprintf(cls, 64, "%.*s", (int)IT_MIN(key_size, (size_t)60), key);
    return MHD_NO;
}

/* Requested outputs must be ones this request produces: the raw head, or "detections"
 * with parameters.detections. 0, or -1 with the reason. */
static int check_outputs(const ks_request *ks, const char *raw_name, char *err, size_t n) {
    const char *have = ks->detections ? "detections" : raw_name;
    for (int i = 0; i < ks->n_outputs; i++)
        if (strcmp(ks->outputs[i], have) != 0) {
            snprintf(err, n, "outputs[%d].name: unknown output '%s': this request produces '%s'%s", i, ks->outputs[i],
                     have, ks->detections ? "" : " ('detections' with parameters.detections: true)");
            return -1;
        }
    return 0;
}

enum MHD_Result api_kserve_infer(http_req *r) {
    struct MHD_Connection *c = r->conn;
    const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (ct && !http_is_ctype(ct, "application/json") && !http_is_ctype(ct, "application/octet-stream") &&
        !http_is_ctype(ct, "application/vnd.sagemaker-triton.binary+json"))
        return http_respond_error(r, 415, "unsupported content type '%s': send application/json or application/octet-stream", ct);
    size_t json_len = r->len;
    const char *hl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Inference-Header-Content-Length");
    if (hl) {
        char *e;
        errno = 0;
        unsigned long long v = strtoull(hl, &e, 10);
        if (errno || e == hl || *e || v > r->len)
            return http_respond_error(r, 400, "Inference-Header-Content-Length: '%s' is not a length within the body of %zu bytes", hl, r->len);
        json_len = (size_t)v;
    }
    char err[512];
    char key[64] = "";
    if (MHD_get_connection_values_n(c, MHD_GET_ARGUMENT_KIND, first_key, key) > 0)
        return http_respond_error(r, 400, "query parameter '%s': KServe inference takes its parameters in the JSON body's \"parameters\"", key);
    r->have_ks = 1;
    if (ks_parse_infer(r->body, r->len, json_len, &r->ks, err, sizeof err) != 0)
        return http_respond_error(r, 400, "%s", err);
    const itscam_model_info *info = itscam_model_get_info(r->model->model);
    if (check_outputs(&r->ks, info->output_name ? info->output_name : "output0", err, sizeof err) != 0)
        return http_respond_error(r, 400, "%s", err);
    int H = info->imgsz[0], W = info->imgsz[1];
    ks_input *in = &r->ks.inputs[0];
    int n;
    if (in->datatype == KS_FP32) {
        if (in->ndim != 4 || in->shape[1] != 3 || in->shape[2] != H || in->shape[3] != W)
            return http_respond_error(r, 400, "input '%s': FP32 input must have shape [N,3,%d,%d]", in->name, H, W);
        n = (int)in->shape[0];
    } else if (in->datatype == KS_UINT8) {
        int nd = in->ndim;
        if (!((nd == 3 && in->shape[2] == 3) || (nd == 4 && in->shape[3] == 3)))
            return http_respond_error(r, 400, "input '%s': UINT8 input must be an HWC image [H,W,3] or [N,H,W,3] (RGB)", in->name);
        n = nd == 4 ? (int)in->shape[0] : 1;
        r->ks_uint8 = 1;
    } else {
        return http_respond_error(r, 400, "input '%s': datatype must be FP32 (the model's input) or UINT8 (an image)", in->name);
    }
    if (n < 1 || n > SRV_MAX_FILES)
        return http_respond_error(r, 400, "batch of %d: between 1 and %d items per request", n, SRV_MAX_FILES);
    it_sched_job tmpl;
    template_job(r, &tmpl);
    if (http_jobs_alloc(r, n, &tmpl) != 0) return http_respond_error(r, 500, "out of memory");
    for (int i = 0; i < n; i++) {
        it_sched_job *j = &r->jobs[i].sj;
        if (r->ks_uint8) {
            int h = (int)in->shape[in->ndim - 3], w = (int)in->shape[in->ndim - 2];
            if (h < 1 || w < 1) return http_respond_error(r, 400, "input '%s': empty image", in->name);
            j->img = (itscam_image){ .data = (const uint8_t *)in->data + (size_t)i * (size_t)h * (size_t)w * 3,
                                     .width = w, .height = h, .stride = w * 3, .format = ITSCAM_PIX_RGB8 };
        } else {
            j->tensor = (const float *)in->data + (size_t)i * 3 * (size_t)H * (size_t)W;
            j->dims[0] = 1;
            j->dims[1] = 3;
            j->dims[2] = H;
            j->dims[3] = W;
        }
    }
    return http_submit_jobs(r, finish);
}

/* The raw head of every item as one [N,...] FP32 output: in JSON, or appended as binary
 * (*bin, *bin_len) when the request asked for binary outputs. NULL when out of memory. */
static json_t *raw_output(http_req *r, const itscam_model_info *info, uint8_t **bin, size_t *bin_len) {
    const it_sched_job *j0 = &r->jobs[0].sj;
    size_t per = 1;
    for (int k = 1; k < j0->raw_ndim; k++) per *= (size_t)j0->raw_dims[k];
    json_t *shape = json_array();
    json_array_append_new(shape, json_integer(r->n_jobs));
    for (int k = 1; k < j0->raw_ndim; k++) json_array_append_new(shape, json_integer(j0->raw_dims[k]));
    json_t *t = json_pack("{s:s,s:s,s:o}", "name", info->output_name ? info->output_name : "output0", "datatype",
                          "FP32", "shape", shape);
    size_t total = per * (size_t)r->n_jobs;
    if (r->ks.binary_output) {
        *bin_len = total * sizeof(float);
        *bin = malloc(*bin_len ? *bin_len : 1);
        if (!*bin) {
            json_decref(t);
            return NULL;
        }
        for (int i = 0; i < r->n_jobs; i++)
            memcpy(*bin + (size_t)i * per * sizeof(float), r->jobs[i].sj.raw, per * sizeof(float));
        json_object_set_new(t, "parameters", json_pack("{s:I}", "binary_data_size", (json_int_t)*bin_len));
    } else {
        json_t *data = json_array();
        for (int i = 0; i < r->n_jobs; i++)
            for (size_t k = 0; k < per; k++) json_array_append_new(data, json_real(r->jobs[i].sj.raw[k]));
        json_object_set_new(t, "data", data);
    }
    return t;
}

/* Detections as a [K,7] tensor (batch index, x1, y1, x2, y2, score, class), as ONNX's
 * NonMaxSuppression-style outputs, plus readable objects per item under "detections". */
static json_t *detections_output(http_req *r, json_t *o) {
    int K = 0;
    for (int i = 0; i < r->n_jobs; i++) K += r->jobs[i].sj.res.count;
    json_t *data = json_array();
    json_t *per_item = json_array();
    for (int i = 0; i < r->n_jobs; i++) {
        const itscam_result *res = &r->jobs[i].sj.res;
        for (int k = 0; k < res->count; k++) {
            const itscam_detection *d = &res->dets[k];
            double row[7] = { i, d->box[0], d->box[1], d->box[2], d->box[3], d->score, d->class_id };
            for (int q = 0; q < 7; q++) json_array_append_new(data, json_real(row[q]));
        }
        json_array_append_new(per_item, http_dets_json(res));
    }
    json_object_set_new(o, "detections", per_item);
    return json_pack("{s:s,s:s,s:[ii],s:o}", "name", "detections", "datatype", "FP32", "shape", K, 7, "data", data);
}

static enum MHD_Result finish(http_req *r) {
    enum MHD_Result ret;
    if (http_jobs_failed(r, &ret)) return ret;
    const itscam_model_info *info = itscam_model_get_info(r->model->model);
    json_t *o = json_object();
    json_object_set_new(o, "model_name", json_string(r->model->name));
    json_object_set_new(o, "model_version", json_string("1"));
    if (r->ks.id[0]) json_object_set_new(o, "id", json_string(r->ks.id));
    /* The binary payload (the raw head) follows the JSON when asked for. */
    uint8_t *bin = NULL;
    size_t bin_len = 0;
    json_t *out = r->ks.detections ? detections_output(r, o) : raw_output(r, info, &bin, &bin_len);
    if (!out) {
        json_decref(o);
        return http_respond_error(r, 500, "out of memory");
    }
    json_object_set_new(o, "outputs", json_pack("[o]", out));
    char *txt = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(9));
    json_decref(o);
    if (!txt) {
        free(bin);
        return http_respond_error(r, 500, "out of memory");
    }
    if (!bin) return http_respond_raw(r, 200, "application/json", txt, strlen(txt), NULL, NULL);
    size_t jl = strlen(txt);
    char *all = malloc(jl + bin_len);
    if (!all) {
        free(txt);
        free(bin);
        return http_respond_error(r, 500, "out of memory");
    }
    memcpy(all, txt, jl);
    memcpy(all + jl, bin, bin_len);
    free(txt);
    free(bin);
    char hl[32];
    snprintf(hl, sizeof hl, "%zu", jl);
    return http_respond_raw(r, 200, "application/octet-stream", all, jl + bin_len, "Inference-Header-Content-Length", hl);
}
