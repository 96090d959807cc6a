/* YOLO head decoding: NMS on hand-made boxes, names parsing, the real yolo11n head on bus.jpg. */
#include "check.h"
#include "core/core.h"
#include "detect/postprocess.h"
#include "runtime/names.h"

#include <jansson.h>
#include <math.h>

enum { NC = 3, A = 8 };

/* Fill anchor a of a [4+NC, A] head. */
static void set_anchor(float *h, int a, float cx, float cy, float w, float hh, int cls, float score) {
    h[0 * A + a] = cx, h[1 * A + a] = cy, h[2 * A + a] = w, h[3 * A + a] = hh;
    for (int c = 0; c < NC; c++) h[(4 + c) * A + a] = c == cls ? score : 0.01f;
}

static itscam_detector_params params(void) {
    itscam_detector_params p;
    memset(&p, 0, sizeof p);
    p.conf = 0.25f;
    p.iou = 0.7f;
    p.max_det = 300;
    return p;
}

static void test_nms(void) {
    float h[(4 + NC) * A];
    for (int a = 0; a < A; a++) set_anchor(h, a, 10, 10, 4, 4, 0, 0.0f); /* below conf */
    set_anchor(h, 0, 100, 100, 40, 40, 0, 0.9f);  /* kept */
    set_anchor(h, 1, 102, 100, 40, 40, 0, 0.8f);  /* same class, IoU ~0.9: suppressed */
    set_anchor(h, 2, 102, 100, 40, 40, 1, 0.7f);  /* other class: kept unless agnostic */
    set_anchor(h, 3, 300, 300, 20, 20, 2, 0.6f);  /* far away */
    set_anchor(h, 4, 630, 5, 40, 40, 2, 0.5f);    /* crosses the image corner: clipped */
    set_anchor(h, 5, 50, 50, 10, 10, 1, 0.25f);   /* not > conf */
    set_anchor(h, 6, 300, 300, 20, 20, 2, 0.6f);  /* tie with anchor 3: the later one wins */
    it_letterbox lb = {1.0f, 0, 0, 640, 640};
    it_det_scratch s;
    CHECK_OK(it_det_scratch_init(&s, A, 300));
    itscam_detection out[A];
    int n = -1;
    itscam_detector_params p = params();
    CHECK_OK(it_decode_yolo(h, 4 + NC, A, &p, &lb, 640, 640, &s, out, &n));
    CHECKF(n == 4, "class-aware: %d boxes", n);
    if (n == 4) {
        CHECK(out[0].class_id == 0 && fabsf(out[0].score - 0.9f) < 1e-7f);
        CHECK(out[0].box[0] == 80 && out[0].box[1] == 80 && out[0].box[2] == 120 && out[0].box[3] == 120);
        CHECK(out[1].class_id == 1 && out[1].box[0] == 82);
        CHECK(out[2].class_id == 2 && out[2].score == 0.6f);
        CHECK(out[3].class_id == 2 && out[3].box[0] == 610 && out[3].box[1] == 0 && out[3].box[2] == 640 &&
              out[3].box[3] == 25);
        CHECK(out[0].class_name && out[0].class_name[0] == 0);
    }
    p.agnostic_nms = 1;
    CHECK_OK(it_decode_yolo(h, 4 + NC, A, &p, &lb, 640, 640, &s, out, &n));
    CHECKF(n == 3, "agnostic: %d boxes", n);
    p.agnostic_nms = 0;
    p.max_det = 2;
    CHECK_OK(it_decode_yolo(h, 4 + NC, A, &p, &lb, 640, 640, &s, out, &n));
    CHECK(n == 2 && out[0].score == 0.9f && out[1].score == 0.7f);
    p.max_det = 300;
    int only[2] = {2, 7};
    p.classes = only;
    p.num_classes_filter = 2;
    CHECK_OK(it_decode_yolo(h, 4 + NC, A, &p, &lb, 640, 640, &s, out, &n));
    CHECK(n == 2 && out[0].class_id == 2 && out[1].class_id == 2);
    p.classes = NULL;
    p.num_classes_filter = 0;
    /* mapping back through a letterbox: x' = (x - pad) / r */
    it_letterbox lb2 = {0.5f, 10, 20, 620, 600};
    CHECK_OK(it_decode_yolo(h, 4 + NC, A, &p, &lb2, 2000, 2000, &s, out, &n));
    CHECK(n == 4 && out[0].box[0] == 140 && out[0].box[1] == 120 && out[0].box[2] == 220 && out[0].box[3] == 200);
    /* a head larger than the scratch is refused */
    CHECK(it_decode_yolo(h, 4 + NC, A + 1, &p, &lb, 640, 640, &s, out, &n) == ITSCAM_ERR_INVALID_ARG);
    it_det_scratch_free(&s);

    /* end2end [n,6] */
    float e2e[4 * 6] = {10, 10, 50, 50, 0.9f, 3,   -20, 5, 700, 30, 0.8f, 1,
                        1, 1, 2, 2, 0.1f, 0,       5, 5, 6, 6, 0.3f, 2};
    CHECK_OK(it_decode_end2end(e2e, 4, &p, &lb, 640, 480, out, &n));
    CHECK(n == 3 && out[0].class_id == 3 && out[1].box[0] == 0 && out[1].box[2] == 640 && out[2].class_id == 2);
    p.max_det = 1;
    CHECK_OK(it_decode_end2end(e2e, 4, &p, &lb, 640, 480, out, &n));
    CHECK(n == 1);
}

static void test_names(void) {
    /* copied from yolo11n.onnx's metadata_props["names"] (first entries and last) plus the
     * quoting Python's repr uses for names holding quotes */
    const char *meta = "{0: 'person', 1: 'bicycle', 2: 'car', 9: 'traffic light', 3: 'motorcycle', "
                       "4: \"couch's\", 5: 'a\\\\b', 6: 'it\\'s \"x\"', 7: 'tab\\there', 8: 'caf\\xe9', 79: 'toothbrush'}";
    char **names;
    int n;
    CHECK(it_parse_names(meta, &names, &n) == 0);
    CHECK(n == 80);
    if (n == 80) {
        CHECK(strcmp(names[0], "person") == 0 && strcmp(names[9], "traffic light") == 0);
        CHECK(strcmp(names[4], "couch's") == 0);
        CHECK(strcmp(names[5], "a\\b") == 0);
        CHECK(strcmp(names[6], "it's \"x\"") == 0);
        CHECK(strcmp(names[7], "tab\there") == 0);
        CHECK((unsigned char)names[8][3] == 0xe9);
        CHECK(strcmp(names[79], "toothbrush") == 0 && names[50][0] == 0);
    }
    it_free_names(names, n);
    const char *bad[] = {"", "[0, 1]", "{0: 'a'", "{0: 'a' 1: 'b'}", "{x: 'a'}", "{0: a}", "{-1: 'a'}",
                         "{0: 'unterminated}", "{99999999999: 'a'}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        CHECKF(it_parse_names(bad[i], &names, &n) == -1 && names == NULL && n == 0, "accepted %s", bad[i]);
    }
    CHECK(it_parse_names("{}", &names, &n) == 0 && n == 0);
    it_free_names(names, n);
}

static float iou(const float *a, const float *b) {
    float w = fminf(a[2], b[2]) - fmaxf(a[0], b[0]), h = fminf(a[3], b[3]) - fmaxf(a[1], b[1]);
    float inter = (w > 0 ? w : 0) * (h > 0 ? h : 0);
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter);
}

static void test_real_head(void) {
    char b1[4096], b2[4096];
    const char *raw = shared_path(b1, sizeof b1, "reference/raw/bus-640.yolo11n.output.f32");
    const char *js = shared_path(b2, sizeof b2, "reference/yolo11n.detections.json");
    if (!raw || !js) {
        fprintf(stderr, "note: reference head or detections absent: real head not checked\n");
        return;
    }
    uint8_t *buf;
    size_t len;
    CHECK_OK(it_read_file(raw, &buf, &len, (size_t)64 << 20));
    CHECK(len == (size_t)84 * 8400 * 4);
    json_error_t jerr;
    json_t *root = json_load_file(js, 0, &jerr);
    CHECK(root != NULL);
    json_t *ref = NULL;
    size_t i;
    json_t *r;
    json_array_foreach(json_object_get(root, "results"), i, r) {
        if (strcmp(json_string_value(json_object_get(r, "image")), "bus.jpg") == 0) ref = json_object_get(r, "detections");
    }
    CHECK(ref != NULL);
    it_letterbox lb;
    CHECK_OK(it_letterbox_geometry(810, 1080, 640, 640, &lb));
    it_det_scratch s;
    CHECK_OK(it_det_scratch_init(&s, 8400, 300));
    itscam_detection out[300];
    int n = 0;
    itscam_detector_params p = params();
    CHECK_OK(it_decode_yolo((const float *)buf, 84, 8400, &p, &lb, 810, 1080, &s, out, &n));
    int nref = ref ? (int)json_array_size(ref) : -1;
    CHECKF(n == nref, "%d detections, reference %d", n, nref);
    float worst_iou = 1, worst_score = 0, worst_coord = 0;
    for (int k = 0; k < n && k < nref; k++) {
        json_t *d = json_array_get(ref, (size_t)k), *bx = json_object_get(d, "box");
        float rb[4];
        for (int c = 0; c < 4; c++) rb[c] = (float)json_number_value(json_array_get(bx, (size_t)c));
        CHECK(out[k].class_id == (int)json_integer_value(json_object_get(d, "class_id")));
        worst_iou = fminf(worst_iou, iou(out[k].box, rb));
        worst_score = fmaxf(worst_score, fabsf(out[k].score - (float)json_number_value(json_object_get(d, "score"))));
        for (int c = 0; c < 4; c++) worst_coord = fmaxf(worst_coord, fabsf(out[k].box[c] - rb[c]));
    }
    printf("bus.jpg yolo11n head: %d detections (reference %d), worst IoU %.6f, worst score diff %.2g, worst "
           "coordinate diff %.4f px\n", n, nref, worst_iou, worst_score, worst_coord);
    CHECK(worst_iou > 0.99f && worst_score < 1e-4f && worst_coord < 0.002f);
    it_det_scratch_free(&s);
    json_decref(root);
    it_free(buf);
}

/* Every max_det up to ITSCAM_MAX_DET_LIMIT is honoured: a head of disjoint boxes keeps
 * exactly max_det of them; 0 means the default; past the limit the scratch is refused. */
static void test_max_det(void) {
    enum { N = ITSCAM_MAX_DET_LIMIT + 50, SIDE = 101 };
    float *h = it_malloc(sizeof(float) * 5 * N);
    itscam_detection *out = it_malloc(sizeof *out * ITSCAM_MAX_DET_LIMIT);
    CHECK(h && out);
    if (!h || !out) return;
    for (int a = 0; a < N; a++) {
        h[0 * N + a] = 4.0f + 6.0f * (float)(a % SIDE);   /* 4x4 boxes 6 apart: no overlap */
        h[1 * N + a] = 4.0f + 6.0f * (float)(a / SIDE);
        h[2 * N + a] = h[3 * N + a] = 4;
        h[4 * N + a] = 0.5f + 0.4f * (float)a / N;
    }
    it_letterbox lb = {1.0f, 0, 0, 640, 640};
    it_det_scratch s;
    CHECK(it_det_scratch_init(&s, N, ITSCAM_MAX_DET_LIMIT + 1) == ITSCAM_ERR_INVALID_ARG);
    CHECK_OK(it_det_scratch_init(&s, N, ITSCAM_MAX_DET_LIMIT));
    itscam_detector_params p = params();
    p.max_det = ITSCAM_MAX_DET_LIMIT;
    int n = -1;
    CHECK_OK(it_decode_yolo(h, 5, N, &p, &lb, 1000, 1000, &s, out, &n));
    CHECKF(n == ITSCAM_MAX_DET_LIMIT, "max_det %d: %d boxes", ITSCAM_MAX_DET_LIMIT, n);
    p.max_det = 0;
    CHECK_OK(it_decode_yolo(h, 5, N, &p, &lb, 1000, 1000, &s, out, &n));
    CHECKF(n == ITSCAM_MAX_DET_DEFAULT, "max_det 0: %d boxes", n);
    it_det_scratch_free(&s);
    it_free(out);
    it_free(h);
}

int main(void) {
    test_nms();
    test_max_det();
    test_names();
    test_real_head();
    return check_done("test_postprocess");
}
