/* mAP accumulator: hand-made cases, and agreement with the shared yolo_map.py scorer on the
 * ONNX Runtime reference detections of coco128. */
#include "check.h"
#include "core/core.h"
#include "detect/metrics.h"

#include <jansson.h>
#include <math.h>
#include <string.h>

/* yolo_map.py on the reference file, to full precision (README quotes 0.6501 and 0.4757). */
#define REF_MAP50 0.6501244935757381
#define REF_MAP50_95 0.4757434435057633

static it_map_pred P(int c, double s, double x1, double y1, double x2, double y2) {
    return (it_map_pred){ c, s, { x1, y1, x2, y2 } };
}
static it_map_label L(int c, double x1, double y1, double x2, double y2) {
    return (it_map_label){ c, { x1, y1, x2, y2 } };
}

/* The two images of the hand cases, 100x100 pixels: a holds class 0 and 1, b class 0. */
static const double A0[4] = { 40, 40, 60, 60 }, A1[4] = { 20, 20, 30, 30 }, B0[4] = { 20, 10, 40, 50 };

static it_map_result run_case(const it_map_pred *pa, int na, const it_map_pred *pb, int nb) {
    it_map_label la[2] = { L(0, A0[0], A0[1], A0[2], A0[3]), L(1, A1[0], A1[1], A1[2], A1[3]) };
    it_map_label lb[1] = { L(0, B0[0], B0[1], B0[2], B0[3]) };
    it_map_acc acc;
    it_map_acc_init(&acc);
    CHECK_OK(it_map_acc_add(&acc, pa, na, la, 2));
    CHECK_OK(it_map_acc_add(&acc, pb, nb, lb, 1));
    it_map_result r;
    CHECK_OK(it_map_acc_compute(&acc, &r));
    it_map_acc_free(&acc);
    CHECK(r.images == 2 && r.labels == 3 && r.classes == 2);
    return r;
}

#define NEAR(a, b) (fabs((a) - (b)) < 1e-12)

/* Expected values below were also produced by yolo_map.py on the same boxes. */
static void test_hand_cases(void) {
    /* Perfect predictions: 0.995, not 1, because the padded envelope ends at precision 0 at
     * recall 1 and the last of the 100 trapezoids is halved (Ultralytics does the same). */
    it_map_pred pa[3] = { P(0, 0.9, A0[0], A0[1], A0[2], A0[3]), P(1, 0.8, A1[0], A1[1], A1[2], A1[3]) };
    it_map_pred pb[1] = { P(0, 0.7, B0[0], B0[1], B0[2], B0[3]) };
    it_map_result r = run_case(pa, 2, pb, 1);
    CHECKF(NEAR(r.map50, 0.995) && NEAR(r.map50_95, 0.995), "perfect: %.17g %.17g", r.map50, r.map50_95);
    CHECK(r.per_class[0].class_id == 0 && r.per_class[0].labels == 2 && r.per_class[0].preds == 2);
    CHECK(NEAR(r.precision, 1.0) && NEAR(r.recall, 1.0));
    it_map_result_free(&r);

    /* A false positive ranked first in class 0. */
    it_map_pred fa[3] = { P(0, 0.95, 0, 0, 10, 10), pa[0], pa[1] };
    r = run_case(fa, 3, pb, 1);
    CHECKF(NEAR(r.map50, 0.8291666666666666) && NEAR(r.map50_95, 0.8291666666666664), "fp first: %.17g %.17g",
           r.map50, r.map50_95);
    CHECK(r.per_class[0].preds == 3);
    it_map_result_free(&r);

    /* No predictions at all: every class with labels scores 0 and still counts. */
    r = run_case(NULL, 0, NULL, 0);
    CHECK(r.map50 == 0 && r.map50_95 == 0 && r.preds == 0);
    it_map_result_free(&r);

    /* Class mismatch: right boxes, swapped classes in image a, never a match there. */
    it_map_pred ma[2] = { P(1, 0.9, A0[0], A0[1], A0[2], A0[3]), P(0, 0.8, A1[0], A1[1], A1[2], A1[3]) };
    r = run_case(ma, 2, pb, 1);
    CHECKF(NEAR(r.map50, 0.1875) && NEAR(r.map50_95, 0.1875), "mismatch: %.17g %.17g", r.map50, r.map50_95);
    it_map_result_free(&r);

    /* A shifted box (true only at low IoU), a duplicate, and an image without labels. */
    it_map_label la[2] = { L(0, A0[0], A0[1], A0[2], A0[3]), L(1, A1[0], A1[1], A1[2], A1[3]) };
    it_map_label lb[1] = { L(0, B0[0], B0[1], B0[2], B0[3]) };
    it_map_pred sa[3] = { P(0, 0.9, 42, 42, 62, 62), pa[1], P(1, 0.85, A1[0], A1[1], A1[2], A1[3]) };
    it_map_pred sc[1] = { P(0, 0.99, B0[0], B0[1], B0[2], B0[3]) };
    it_map_acc acc;
    it_map_acc_init(&acc);
    CHECK_OK(it_map_acc_add(&acc, sa, 3, la, 2));
    CHECK_OK(it_map_acc_add(&acc, pb, 1, lb, 1));
    CHECK_OK(it_map_acc_add(&acc, sc, 1, NULL, 0));
    CHECK_OK(it_map_acc_compute(&acc, &r));
    CHECKF(NEAR(r.map50, 0.5804166666666667) && NEAR(r.map50_95, 0.4564166666666667), "shifted: %.17g %.17g",
           r.map50, r.map50_95);
    CHECK(r.images == 3 && r.preds == 5);
    it_map_result_free(&r);
    it_map_acc_free(&acc);

    /* Nothing added: zeros, no classes, nothing to free. */
    it_map_acc_init(&acc);
    CHECK_OK(it_map_acc_compute(&acc, &r));
    CHECK(r.classes == 0 && r.map50 == 0 && r.per_class == NULL);
    it_map_result_free(&r);
    it_map_acc_free(&acc);
    CHECK(it_map_acc_add(NULL, NULL, 0, NULL, 0) == ITSCAM_ERR_INVALID_ARG);
}

static void test_labels_file(void) {
    char path[] = "/tmp/itscam_test_eval_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) return;
    const char *txt = "3 0.5 0.25 0.2 0.1\n\n7 0.1 0.1 0.2 0.2\r\n";
    CHECK(write(fd, txt, strlen(txt)) == (ssize_t)strlen(txt));
    close(fd);
    it_map_label *l = NULL;
    int n = -1;
    CHECK_OK(it_map_read_labels(path, 200, 100, &l, &n));
    CHECK(n == 2 && l && l[0].class_id == 3 && l[1].class_id == 7);
    if (n == 2) {
        CHECK(l[0].box[0] == (0.5 - 0.2 / 2) * 200 && l[0].box[3] == (0.25 + 0.1 / 2) * 100);
        CHECK(l[1].box[0] == (0.1 - 0.2 / 2) * 200);
    }
    it_free(l);
    FILE *f = fopen(path, "w");
    if (f) {
        fputs("0 0.1 0.1 0.2 0.2 0.3 0.3\n", f);  /* a segment, not a box */
        fclose(f);
    }
    CHECK(it_map_read_labels(path, 10, 10, &l, &n) == ITSCAM_ERR_INVALID_ARG);
    CHECK(strstr(itscam_last_error(), ":1:") != NULL);
    unlink(path);
    CHECK_OK(it_map_read_labels(path, 10, 10, &l, &n));  /* missing: no labels */
    CHECK(n == 0 && l == NULL);
}

static void test_reference(void) {
    char jpath[4096], ldir[4096];
    if (!shared_path(jpath, sizeof jpath, "reference/yolo11n.coco128-conf0.001.json")) {
        fprintf(stderr, "SKIP part: %s is absent\n", jpath);
        return;
    }
    if (!shared_path(ldir, sizeof ldir, "coco128/labels")) {
        fprintf(stderr, "SKIP part: %s is absent\n", ldir);
        return;
    }
    json_error_t jerr;
    json_t *root = json_load_file(jpath, 0, &jerr);
    CHECKF(root != NULL, "%s:%d: %s", jpath, jerr.line, jerr.text);
    if (!root) return;
    json_t *results = json_object_get(root, "results");
    CHECK(json_is_array(results));
    it_map_acc acc;
    it_map_acc_init(&acc);
    size_t i;
    json_t *res;
    json_array_foreach(results, i, res) {
        const char *image = json_string_value(json_object_get(res, "image"));
        int w = (int)json_integer_value(json_object_get(res, "width"));
        int h = (int)json_integer_value(json_object_get(res, "height"));
        json_t *dets = json_object_get(res, "detections");
        CHECK(image && w > 0 && h > 0 && json_is_array(dets));
        if (!image || !json_is_array(dets)) continue;
        size_t nd = json_array_size(dets);
        it_map_pred *p = it_malloc(sizeof *p * (nd ? nd : 1));
        for (size_t k = 0; k < nd; k++) {
            json_t *d = json_array_get(dets, k), *box = json_object_get(d, "box");
            p[k].class_id = (int)json_integer_value(json_object_get(d, "class_id"));
            p[k].score = json_number_value(json_object_get(d, "score"));
            for (int c = 0; c < 4; c++) p[k].box[c] = json_number_value(json_array_get(box, (size_t)c));
        }
        char lpath[8192];
        const char *dot = strrchr(image, '.');
        int stem = dot ? (int)(dot - image) : (int)strlen(image);
        snprintf(lpath, sizeof lpath, "%s/%.*s.txt", ldir, stem, image);
        it_map_label *l = NULL;
        int nl = 0;
        CHECK_OK(it_map_read_labels(lpath, w, h, &l, &nl));
        CHECK_OK(it_map_acc_add(&acc, p, (int)nd, l, nl));
        it_free(l);
        it_free(p);
    }
    it_map_result r;
    CHECK_OK(it_map_acc_compute(&acc, &r));
    printf("reference: mAP50 %.16f (yolo_map.py %.16f, %+.2e), mAP50-95 %.16f (yolo_map.py %.16f, %+.2e)\n",
           r.map50, REF_MAP50, r.map50 - REF_MAP50, r.map50_95, REF_MAP50_95, r.map50_95 - REF_MAP50_95);
    printf("reference: P %.6f R %.6f at conf %.3f, %lld images, %lld labels, %d classes\n", r.precision, r.recall,
           r.best_conf, (long long)r.images, (long long)r.labels, r.classes);
    CHECK(fabs(r.map50 - REF_MAP50) <= 1e-4);
    CHECK(fabs(r.map50_95 - REF_MAP50_95) <= 1e-4);
    CHECK(r.images == 128 && r.labels == 929 && r.classes == 71);
    /* P and R at the best smoothed-F1 confidence, from a numpy transcription of
     * Ultralytics' ap_per_class on the same stats (yolo_map.py does not report them). */
    CHECKF(fabs(r.precision - 0.719835846095346) < 1e-9 && fabs(r.recall - 0.5494995666795564) < 1e-9,
           "P %.17g R %.17g", r.precision, r.recall);
    it_map_result_free(&r);
    it_map_acc_free(&acc);
    json_decref(root);
}

int main(void) {
    test_hand_cases();
    test_labels_file();
    char buf[4096];
    if (!shared_path(buf, sizeof buf, "reference/yolo11n.coco128-conf0.001.json") ||
        !shared_path(buf, sizeof buf, "coco128/labels")) {
        int rc = check_done("test_eval");
        if (rc) return rc;
        SKIP("%s is absent: the yolo_map.py agreement check did not run", buf);
    }
    test_reference();
    return check_done("test_eval");
}
