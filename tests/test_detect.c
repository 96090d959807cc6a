/* The whole pipeline (decode, letterbox, infer, NMS) against ONNX Runtime's detections:
 * at least 99% of reference boxes matched one-to-one (same class, IoU >= 0.95, score
 * within 0.02) with at most 1% extra boxes; and bad images give errors, not crashes. */
#include "check.h"
#include "core/core.h"

#include <jansson.h>
#include <math.h>

static double iou(const float *a, const double *b) {
    double ix = fmin(a[2], b[2]) - fmax(a[0], b[0]), iy = fmin(a[3], b[3]) - fmax(a[1], b[1]);
    if (ix <= 0 || iy <= 0) return 0;
    double inter = ix * iy;
    double ua = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
    return ua > 0 ? inter / ua : 0;
}

typedef struct tally {
    int ref, matched, pred, extra;
} tally;

/* Greedy one-to-one matching, best IoU first per reference box. */
static void match_image(const itscam_result *r, json_t *refdets, tally *t) {
    int n = (int)json_array_size(refdets);
    char used[1024] = { 0 };
    t->ref += n;
    t->pred += r->count;
    int matched = 0;
    for (int i = 0; i < n; i++) {
        json_t *d = json_array_get(refdets, i);
        int cls = (int)json_integer_value(json_object_get(d, "class_id"));
        double score = json_number_value(json_object_get(d, "score"));
        double box[4];
        for (int k = 0; k < 4; k++) box[k] = json_number_value(json_array_get(json_object_get(d, "box"), k));
        int best = -1;
        double best_iou = 0;
        for (int j = 0; j < r->count && j < 1024; j++) {
            if (used[j] || r->dets[j].class_id != cls) continue;
            double v = iou(r->dets[j].box, box);
            if (v > best_iou) { best_iou = v; best = j; }
        }
        if (best >= 0 && best_iou >= 0.95 && fabs(r->dets[best].score - score) <= 0.02) {
            used[best] = 1;
            matched++;
        }
    }
    t->matched += matched;
    t->extra += r->count - matched;
}

static void check_reference(const char *model_rel, const char *ref_rel, const char *backend, int max_images) {
    char mp[1024], rp[1024];
    if (!shared_path(mp, sizeof mp, model_rel) || !shared_path(rp, sizeof rp, ref_rel)) {
        printf("skipping %s: %s or %s absent\n", model_rel, model_rel, ref_rel);
        return;
    }
    json_error_t je;
    json_t *root = json_load_file(rp, 0, &je);
    CHECK(root != NULL);
    if (!root) return;
    itscam_detector *d = NULL;
    itscam_detector_params p = itscam_detector_default_params();
    p.backend = backend;
    CHECK_OK(itscam_detector_create(mp, &p, &d));
    tally t = { 0 };
    json_t *results = json_object_get(root, "results");
    int nimg = 0;
    for (size_t i = 0; d && i < json_array_size(results) && nimg < max_images; i++) {
        json_t *r = json_array_get(results, i);
        const char *name = json_string_value(json_object_get(r, "image"));
        char rel[512], ip[1024];
        snprintf(rel, sizeof rel, "images/%s", name);
        if (!shared_path(ip, sizeof ip, rel)) {
            snprintf(rel, sizeof rel, "coco128/images/%s", name);
            if (!shared_path(ip, sizeof ip, rel)) continue;
        }
        uint8_t *bytes;
        size_t len;
        if (it_read_file(ip, &bytes, &len, (size_t)64 << 20) != ITSCAM_OK) continue;
        itscam_result res;
        itscam_status st = itscam_detect_encoded(d, bytes, len, &res);
        CHECK_OK(st);
        if (st == ITSCAM_OK) {
            CHECK(res.width == json_integer_value(json_object_get(r, "width")));
            CHECK(res.height == json_integer_value(json_object_get(r, "height")));
            match_image(&res, json_object_get(r, "detections"), &t);
        }
        itscam_result_clear(&res);
        it_free(bytes);
        nimg++;
    }
    double recall = t.ref ? (double)t.matched / t.ref : 1, extra = t.ref ? (double)t.extra / t.ref : 0;
    printf("%-4s %-26s %3d images: %d/%d reference boxes matched (%.2f%%), %d extra (%.2f%%)\n", backend, model_rel,
           nimg, t.matched, t.ref, 100 * recall, t.extra, 100 * extra);
    CHECK(nimg > 0);
    CHECKF(recall >= 0.99, "%s %s: recall %.4f", backend, model_rel, recall);
    CHECKF(extra <= 0.01, "%s %s: extra %.4f", backend, model_rel, extra);
    itscam_detector_free(d);
    json_decref(root);
}

static void check_bad_images(void) {
    char mp[1024];
    if (!shared_path(mp, sizeof mp, "models/yolo11n-320.onnx")) return;
    itscam_detector *d = NULL;
    CHECK_OK(itscam_detector_create(mp, NULL, &d));
    if (!d) return;
    itscam_result r;
    /* zero bytes, garbage, a truncated JPEG */
    CHECK(itscam_detect_encoded(d, "", 0, &r) == ITSCAM_ERR_IMAGE);
    CHECK(itscam_detect_encoded(d, "not an image at all", 19, &r) == ITSCAM_ERR_IMAGE);
    char ip[1024];
    if (shared_path(ip, sizeof ip, "images/bus.jpg")) {
        uint8_t *bytes;
        size_t len;
        if (it_read_file(ip, &bytes, &len, (size_t)64 << 20) == ITSCAM_OK) {
            CHECK(itscam_detect_encoded(d, bytes, 200, &r) == ITSCAM_ERR_IMAGE);
            CHECK(itscam_last_error()[0] != 0);
            /* half a JPEG: libjpeg pads the missing scans; either a result or an error */
            itscam_status st = itscam_detect_encoded(d, bytes, len / 2, &r);
            CHECK(st == ITSCAM_OK || st == ITSCAM_ERR_IMAGE);
            itscam_result_clear(&r);
            it_free(bytes);
        }
    }
    /* raw frames: 1x1, a tall sliver, and 10000x10000 */
    uint8_t px[3] = { 10, 20, 30 };
    itscam_image one = { px, 1, 1, 0, ITSCAM_PIX_BGR8 };
    CHECK_OK(itscam_detect_image(d, &one, &r));
    CHECK(r.width == 1 && r.height == 1);
    itscam_result_clear(&r);
    size_t big = (size_t)10000 * 10000 * 3;
    uint8_t *huge = it_malloc(big);
    if (huge) {
        memset(huge, 114, big);
        itscam_image hi = { huge, 10000, 10000, 0, ITSCAM_PIX_RGB8 };
        CHECK_OK(itscam_detect_image(d, &hi, &r));
        CHECK(r.width == 10000 && r.count == 0);
        itscam_result_clear(&r);
        it_free(huge);
    }
    itscam_image bad = { px, 0, 5, 0, ITSCAM_PIX_BGR8 };
    CHECK(itscam_detect_image(d, &bad, &r) == ITSCAM_ERR_IMAGE);
    bad = (itscam_image){ px, 4, 4, 5, ITSCAM_PIX_BGR8 };
    CHECK(itscam_detect_image(d, &bad, &r) == ITSCAM_ERR_INVALID_ARG);
    itscam_detector_free(d);
    /* bad parameters and a missing model */
    itscam_detector_params p = itscam_detector_default_params();
    p.conf = 2;
    CHECK(itscam_detector_create(mp, &p, &d) == ITSCAM_ERR_INVALID_ARG);
    p = itscam_detector_default_params();
    p.backend = "nonexistent";
    CHECK(itscam_detector_create(mp, &p, &d) == ITSCAM_ERR_NOT_FOUND);
    CHECK(strstr(itscam_last_error(), "nonexistent") != NULL);
}

int main(void) {
    check_bad_images();
    const char *fast = itscam_backends()[0];
    check_reference("models/yolo11n.onnx", "reference/yolo11n.detections.json", fast, 1000);
    check_reference("models/yolo11n-320.onnx", "reference/yolo11n-320.detections.json", fast, 1000);
    check_reference("models/yolo11n-int8-320.onnx", "reference/yolo11n-int8-320.detections.json", fast, 1000);
    if (strcmp(fast, "ref") != 0) {
        /* the oracle too, on the two sample images (it is slow by design) */
        check_reference("models/yolo11n.onnx", "reference/yolo11n.detections.json", "ref", 2);
        check_reference("models/yolo11n-320.onnx", "reference/yolo11n-320.detections.json", "ref", 2);
        /* Not the int8 model on ref: ONNX Runtime's Sigmoid is an approximation, and a
         * 1e-6 difference flips later DynamicQuantizeLinear roundings, so one of its 7
         * reference boxes lands 0.025 off in score. Its raw output is held to 2e-2
         * (test_engine); the int8 detections are checked on the default backend above. */
    }
    return check_done("test_detect");
}
