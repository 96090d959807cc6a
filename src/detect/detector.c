/* The detector: letterbox frames straight into the session's input buffer, run the model,
 * decode the head and apply NMS. Buffers are sized once and reused per frame. */
#include "detect/detector.h"
#include "detect/postprocess.h"
#include "runtime/model.h"
#include "vision/image.h"
#include "vision/letterbox.h"

#include <string.h>

#define DETECT_MAX_PIXELS ((size_t)100 * 1000 * 1000)

struct itscam_detector {
    itscam_model *owned;          /* set when the detector loaded the model itself */
    const itscam_model *m;
    itscam_session *s;
    itscam_detector_params p;
    int *classes;                 /* copy of the class filter */
    int in_h, in_w;
    int dynamic_batch;
    uint8_t *scratch;             /* letterbox scratch, grown to the largest frame seen */
    size_t scratch_len;
    it_det_scratch ds;
    int ds_ready;
};

itscam_detector_params itscam_detector_default_params(void) {
    itscam_detector_params p = { .backend = NULL, .threads = 0, .conf = 0.25f, .iou = 0.7f, .max_det = ITSCAM_MAX_DET_DEFAULT,
                                 .agnostic_nms = 0, .classes = NULL, .num_classes_filter = 0, .device = -1 };
    return p;
}

void itscam_result_clear(itscam_result *r) {
    if (!r) return;
    it_free(r->dets);
    memset(r, 0, sizeof *r);
}

itscam_status itscam_detector_create_from_model(const itscam_model *m, const itscam_detector_params *params,
                                                itscam_detector **out) {
    if (!m || !out) return it_err(ITSCAM_ERR_INVALID_ARG, "itscam_detector_create: NULL argument");
    *out = NULL;
    itscam_detector_params dp = itscam_detector_default_params();
    const itscam_detector_params *p = params ? params : &dp;
    if (!(p->conf >= 0 && p->conf <= 1) || !(p->iou >= 0 && p->iou <= 1) || p->max_det <= 0 ||
        p->max_det > ITSCAM_MAX_DET_LIMIT || p->num_classes_filter < 0 ||
        (p->num_classes_filter > 0 && !p->classes))
        return it_err(ITSCAM_ERR_INVALID_ARG, "detector parameters out of range (conf and iou in [0,1], max_det in [1,%d])",
                      ITSCAM_MAX_DET_LIMIT);
    const itscam_model_info *info = itscam_model_get_info(m);
    if (info->input_dims[1] != 3 && info->input_dims[1] != -1)
        return it_err(ITSCAM_ERR_UNSUPPORTED, "%s: the input has %lld channels; a detector needs 3",
                      m->g->path, (long long)info->input_dims[1]);
    itscam_detector *d = it_calloc(1, sizeof *d);
    if (!d) return it_err(ITSCAM_ERR_NOMEM, "out of memory");
    d->m = m;
    d->p = *p;
    if (p->num_classes_filter > 0) {
        d->classes = it_malloc(sizeof(int) * (size_t)p->num_classes_filter);
        if (!d->classes) { itscam_detector_free(d); return it_err(ITSCAM_ERR_NOMEM, "out of memory"); }
        memcpy(d->classes, p->classes, sizeof(int) * (size_t)p->num_classes_filter);
        d->p.classes = d->classes;
    }
    d->in_h = info->input_dims[2] > 0 ? (int)info->input_dims[2] : info->imgsz[0];
    d->in_w = info->input_dims[3] > 0 ? (int)info->input_dims[3] : info->imgsz[1];
    d->dynamic_batch = info->input_dims[0] < 0;
    itscam_session_params sp = itscam_session_default_params();
    sp.backend = p->backend;
    sp.threads = p->threads;
    sp.precision = p->precision;
    sp.calib_path = p->calib_path;
    sp.no_fallback = p->no_fallback;
    sp.device = p->device;
    itscam_status st = itscam_session_create(m, &sp, &d->s);
    if (st == ITSCAM_OK) {
        /* Plan for batch 1 now, so that a model that cannot run fails at creation. */
        int64_t dims[4] = { 1, 3, d->in_h, d->in_w };
        st = it_session_prepare(d->s, dims);
    }
    if (st != ITSCAM_OK) {
        itscam_detector_free(d);
        return st;
    }
    *out = d;
    return ITSCAM_OK;
}

itscam_status itscam_detector_create(const char *model_path, const itscam_detector_params *params,
                                     itscam_detector **out) {
    if (!model_path || !out) return it_err(ITSCAM_ERR_INVALID_ARG, "itscam_detector_create: NULL argument");
    *out = NULL;
    itscam_model *m;
    itscam_status st = itscam_model_load(model_path, &m);
    if (st != ITSCAM_OK) return st;
    st = itscam_detector_create_from_model(m, params, out);
    if (st != ITSCAM_OK) {
        itscam_model_free(m);
        return st;
    }
    (*out)->owned = m;
    return ITSCAM_OK;
}

void itscam_detector_free(itscam_detector *d) {
    if (!d) return;
    itscam_session_free(d->s);
    if (d->ds_ready) it_det_scratch_free(&d->ds);
    it_free(d->scratch);
    it_free(d->classes);
    itscam_model_free(d->owned);
    it_free(d);
}

const itscam_model_info *itscam_detector_info(const itscam_detector *d) {
    return d ? itscam_model_get_info(d->m) : NULL;
}

const char *itscam_detector_precision(const itscam_detector *d) {
    return d ? itscam_session_precision(d->s) : "";
}

static itscam_status check_image(const itscam_image *img) {
    if (!img || !img->data) return it_err(ITSCAM_ERR_INVALID_ARG, "image is NULL");
    if (img->width <= 0 || img->height <= 0 || (size_t)img->width * (size_t)img->height > DETECT_MAX_PIXELS)
        return it_err(ITSCAM_ERR_IMAGE, "image size %dx%d is out of range", img->width, img->height);
    if (img->stride != 0 && img->stride < img->width * 3)
        return it_err(ITSCAM_ERR_INVALID_ARG, "image stride %d is below width*3", img->stride);
    if (img->format != ITSCAM_PIX_BGR8 && img->format != ITSCAM_PIX_RGB8)
        return it_err(ITSCAM_ERR_INVALID_ARG, "unknown pixel format %d", (int)img->format);
    return ITSCAM_OK;
}

static itscam_status ensure_scratch(itscam_detector *d, const itscam_image *img) {
    size_t need = it_letterbox_scratch_bytes(img->width, img->height, d->in_w, d->in_h);
    if (need <= d->scratch_len) return ITSCAM_OK;
    uint8_t *ns = it_realloc(d->scratch, need);
    if (!ns) return it_err(ITSCAM_ERR_NOMEM, "out of memory for a %dx%d frame", img->width, img->height);
    d->scratch = ns;
    d->scratch_len = need;
    return ITSCAM_OK;
}

/* Decode one image's head (output 0, batch item b) into r. */
static itscam_status postprocess(itscam_detector *d, const itscam_detector_params *pp, int b, const it_letterbox *lb,
                                 int w, int h, itscam_result *r) {
    const it_tensor *o = it_session_output(d->s, 0);
    if (!o || o->dtype != IT_F32 || o->ndim != 3)
        return it_err(ITSCAM_ERR_UNSUPPORTED, "%s: the output is not a [N,C,A] float tensor", d->m->g->path);
    int64_t per = o->dims[1] * o->dims[2];
    const float *head = (const float *)o->data + (size_t)b * (size_t)per;
    /* Per-request parameters may lower max_det but never raise it past what the scratch
     * was sized for. */
    itscam_detector_params p = *pp;
    if (p.max_det <= 0 || p.max_det > d->p.max_det) p.max_det = d->p.max_det;
    r->dets = it_malloc(sizeof(itscam_detection) * (size_t)p.max_det);
    if (!r->dets) return it_err(ITSCAM_ERR_NOMEM, "out of memory");
    r->width = w;
    r->height = h;
    itscam_status st;
    if (d->m->info.end2end) {
        st = it_decode_end2end(head, (int)o->dims[1], &p, lb, w, h, r->dets, &r->count);
    } else {
        int nch = (int)o->dims[1], na = (int)o->dims[2];
        if (nch < 5) return it_err(ITSCAM_ERR_UNSUPPORTED, "%s: the head has %d channels; expected 4+classes", d->m->g->path, nch);
        if (!d->ds_ready || d->ds.cap < na) {
            if (d->ds_ready) it_det_scratch_free(&d->ds);
            d->ds_ready = 0;
            if ((st = it_det_scratch_init(&d->ds, na, d->p.max_det)) != ITSCAM_OK) return st;
            d->ds_ready = 1;
        }
        st = it_decode_yolo(head, nch, na, &p, lb, w, h, &d->ds, r->dets, &r->count);
    }
    if (st != ITSCAM_OK) return st;
    for (int i = 0; i < r->count; i++) {
        int c = r->dets[i].class_id;
        r->dets[i].class_name = c >= 0 && c < d->m->n_names ? d->m->names[c] : "";
    }
    return ITSCAM_OK;
}

void it_detect_item_size(const itscam_detector *d, const it_detect_item *it, int *h, int *w) {
    *h = it->tensor ? it->tensor_h : d->in_h;
    *w = it->tensor ? it->tensor_w : d->in_w;
}

static void clear_items(it_detect_item *items, int n) {
    for (int i = 0; i < n; i++) {
        itscam_result_clear(&items[i].res);
        it_free(items[i].raw);
        items[i].raw = NULL;
        items[i].raw_ndim = 0;
    }
}

/* Copy batch item b of output 0 into it->raw, shaped [1, dims 1..]. */
static itscam_status copy_raw(itscam_detector *d, it_detect_item *it, int b) {
    const it_tensor *o = it_session_output(d->s, 0);
    if (!o || o->dtype != IT_F32 || o->ndim < 1 || o->ndim > 8)
        return it_err(ITSCAM_ERR_UNSUPPORTED, "%s: the first output is not a float tensor", d->m->g->path);
    size_t per = 1;
    for (int k = 1; k < o->ndim; k++) per *= (size_t)o->dims[k];
    it->raw = it_malloc(per * sizeof(float));
    if (!it->raw) return it_err(ITSCAM_ERR_NOMEM, "out of memory for a copy of the output");
    memcpy(it->raw, (const float *)o->data + per * (size_t)b, per * sizeof(float));
    it->raw_ndim = o->ndim;
    it->raw_dims[0] = 1;
    for (int k = 1; k < o->ndim; k++) it->raw_dims[k] = o->dims[k];
    return ITSCAM_OK;
}

/* Fill batch slot i of the input: letterbox an image, or copy a ready tensor (whose
 * letterbox is the identity). */
static itscam_status fill_input(itscam_detector *d, const it_detect_item *it, float *dst, int h, int w,
                                it_letterbox *lb) {
    if (it->tensor) {
        memcpy(dst, it->tensor, sizeof(float) * 3 * (size_t)h * (size_t)w);
        *lb = (it_letterbox){ .scale = 1.0f, .pad_x = 0, .pad_y = 0, .new_w = w, .new_h = h };
        return ITSCAM_OK;
    }
    const itscam_image *img = it->img;
    itscam_status st = ensure_scratch(d, img);
    if (st != ITSCAM_OK) return st;
    int stride = img->stride ? img->stride : img->width * 3;
    return it_letterbox_to_tensor(img->data, img->width, img->height, stride, img->format == ITSCAM_PIX_RGB8,
                                  d->in_w, d->in_h, dst, d->scratch, d->scratch_len, lb);
}

/* Run n items as one batch (n == 1 for static-batch models). */
static itscam_status run_batch(itscam_detector *d, it_detect_item *items, int n) {
    double t0 = it_now_ms();
    int h, w;
    it_detect_item_size(d, &items[0], &h, &w);
    int64_t dims[4] = { n, 3, h, w };
    itscam_status st = it_session_prepare(d->s, dims);
    if (st != ITSCAM_OK) return st;
    float *input = it_session_input(d->s);
    size_t plane = (size_t)h * (size_t)w * 3;
    it_letterbox lbs[IT_DETECT_MAX_BATCH];
    for (int i = 0; i < n; i++)
        if ((st = fill_input(d, &items[i], input + plane * (size_t)i, h, w, &lbs[i])) != ITSCAM_OK) return st;
    double t1 = it_now_ms();
    if ((st = it_session_exec(d->s)) != ITSCAM_OK) return st;
    double t2 = it_now_ms();
    for (int i = 0; i < n; i++) {
        it_detect_item *it = &items[i];
        double a = it_now_ms();
        if (it->want_raw) st = copy_raw(d, it, i);
        if (st == ITSCAM_OK && it->want_dets) {
            const itscam_detector_params *pp = it->params ? it->params : &d->p;
            int iw = it->img ? it->img->width : w, ih = it->img ? it->img->height : h;
            st = postprocess(d, pp, i, &lbs[i], iw, ih, &it->res);
        }
        if (st != ITSCAM_OK) {
            clear_items(items, n);
            return st;
        }
        it->res.ms_preprocess = (t1 - t0) / n;
        it->res.ms_inference = (t2 - t1) / n;
        it->res.ms_postprocess = it_now_ms() - a;
    }
    return ITSCAM_OK;
}

static itscam_status check_params(const itscam_detector_params *p, const char *noun, int i) {
    if (p && (!(p->conf >= 0 && p->conf <= 1) || !(p->iou >= 0 && p->iou <= 1) || p->num_classes_filter < 0 ||
              (p->num_classes_filter > 0 && !p->classes)))
        return it_err(ITSCAM_ERR_INVALID_ARG, "%s %d: detection parameters out of range", noun, i);
    return ITSCAM_OK;
}

static itscam_status check_item(const itscam_detector *d, const it_detect_item *it, int i, int h0, int w0) {
    if (!it->img == !it->tensor)
        return it_err(ITSCAM_ERR_INVALID_ARG, "item %d: exactly one of an image and a tensor is needed", i);
    itscam_status st = check_params(it->params, "item", i);
    if (st != ITSCAM_OK) return st;
    if (it->img && (st = check_image(it->img)) != ITSCAM_OK) return it_err_prefix(st, "image %d", i);
    if (it->tensor && (it->tensor_h <= 0 || it->tensor_w <= 0 || it->tensor_h > 8192 || it->tensor_w > 8192))
        return it_err(ITSCAM_ERR_INVALID_ARG, "item %d: tensor size %dx%d is out of range", i, it->tensor_w, it->tensor_h);
    int h, w;
    it_detect_item_size(d, it, &h, &w);
    if (h != h0 || w != w0)
        return it_err(ITSCAM_ERR_INVALID_ARG, "item %d: input %dx%d differs from item 0's %dx%d; one batch has one size",
                      i, w, h, w0, h0);
    return ITSCAM_OK;
}

itscam_status it_detect_run(itscam_detector *d, it_detect_item *items, int n) {
    if (!d || !items || n <= 0 || n > IT_DETECT_MAX_BATCH)
        return it_err(ITSCAM_ERR_INVALID_ARG, "it_detect_run: bad arguments (batch of %d, at most %d)", n,
                      IT_DETECT_MAX_BATCH);
    int h0, w0;
    it_detect_item_size(d, &items[0], &h0, &w0);
    for (int i = 0; i < n; i++) {
        memset(&items[i].res, 0, sizeof items[i].res);
        items[i].raw = NULL;
        items[i].raw_ndim = 0;
    }
    for (int i = 0; i < n; i++) {
        itscam_status st = check_item(d, &items[i], i, h0, w0);
        if (st != ITSCAM_OK) return st;
    }
    if (d->dynamic_batch) return run_batch(d, items, n);
    for (int i = 0; i < n; i++) {
        itscam_status st = run_batch(d, &items[i], 1);
        if (st != ITSCAM_OK) {
            clear_items(items, i);
            return st;
        }
    }
    return ITSCAM_OK;
}

itscam_status itscam_detect_batch(itscam_detector *d, const itscam_image *imgs, int n, itscam_result *out) {
    return itscam_detect_batch_params(d, imgs, n, NULL, out);
}

itscam_session *itscam_detector_session(itscam_detector *d) {
    return d ? d->s : NULL;
}

itscam_status itscam_detect_batch_params(itscam_detector *d, const itscam_image *imgs, int n,
                                         const itscam_detector_params *const *params, itscam_result *out) {
    if (!d || !imgs || !out || n <= 0) return it_err(ITSCAM_ERR_INVALID_ARG, "itscam_detect_batch: bad arguments");
    for (int i = 0; params && i < n; i++) {
        itscam_status st = check_params(params[i], "image", i);
        if (st != ITSCAM_OK) return st;
    }
    if (n > IT_DETECT_MAX_BATCH)
        return it_err(ITSCAM_ERR_INVALID_ARG, "batch of %d exceeds the limit of %d", n, IT_DETECT_MAX_BATCH);
    memset(out, 0, sizeof *out * (size_t)n);
    it_detect_item items[IT_DETECT_MAX_BATCH];
    for (int i = 0; i < n; i++)
        items[i] = (it_detect_item){ .img = &imgs[i], .params = params ? params[i] : NULL, .want_dets = 1 };
    itscam_status st = it_detect_run(d, items, n);
    if (st != ITSCAM_OK) return st;
    for (int i = 0; i < n; i++) out[i] = items[i].res;
    return ITSCAM_OK;
}

itscam_status itscam_detect_image(itscam_detector *d, const itscam_image *img, itscam_result *out) {
    return itscam_detect_batch(d, img, 1, out);
}

itscam_status itscam_detect_encoded(itscam_detector *d, const void *bytes, size_t len, itscam_result *out) {
    if (!d || !out || (!bytes && len)) return it_err(ITSCAM_ERR_INVALID_ARG, "itscam_detect_encoded: bad arguments");
    memset(out, 0, sizeof *out);
    double t0 = it_now_ms();
    it_image img;
    itscam_status st = it_image_decode(bytes, len, DETECT_MAX_PIXELS, &img);
    if (st != ITSCAM_OK) return st;
    double t1 = it_now_ms();
    itscam_image im = { .data = img.data, .width = img.width, .height = img.height, .stride = img.stride,
                        .format = ITSCAM_PIX_BGR8 };
    st = itscam_detect_batch(d, &im, 1, out);
    it_image_free(&img);
    if (st == ITSCAM_OK) out->ms_decode = t1 - t0;
    return st;
}
