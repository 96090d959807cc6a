/* Precision modes of the cpu backend: what supports() answers, int8 with a calibration
 * measured here (close to fp32, same detections, no allocation per run), and bf16 either
 * close to fp32 (where the CPU has native bf16) or refused with ITSCAM_ERR_UNSUPPORTED. */
#include "itscam/itscam.h"
#include "backend/cpu/cpu_backend.h"
#include "check.h"
#include "core/core.h"
#include "graph/calib.h"
#include "runtime/calibrate.h"
#include "backend/backend.h"
#include "onnx/onnx.h"
#include "vision/image.h"
#include "vision/letterbox.h"

#include <dirent.h>
#include <math.h>
#include <oneapi/dnnl/dnnl.h>

/* Calibration images: the first few of coco128 (sorted, so every run sees the same). */
#define CALIB_IMAGES 4

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Up to max image paths of dir, sorted; returns the count. */
static int list_images(const char *dir, char **out, int max) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    char *all[512];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 512) {
        size_t l = strlen(e->d_name);
        if (l > 4 && !strcmp(e->d_name + l - 4, ".jpg")) {
            all[n] = malloc(strlen(dir) + l + 2);
            sprintf(all[n++], "%s/%s", dir, e->d_name);
        }
    }
    closedir(d);
    qsort(all, (size_t)n, sizeof *all, cmp_str);
    for (int i = max; i < n; i++) free(all[i]);
    if (n > max) n = max;
    memcpy(out, all, (size_t)n * sizeof *out);
    return n;
}

/* Letterbox an encoded image file into x (NCHW, 3 x h x w). */
static itscam_status load_letterboxed(const char *path, int w, int h, float *x) {
    uint8_t *buf = NULL, *scratch = NULL;
    size_t len = 0;
    it_image img = {0};
    itscam_status st = it_read_file(path, &buf, &len, (size_t)64 << 20);
    if (st == ITSCAM_OK) st = it_image_decode(buf, len, (size_t)1 << 26, &img);
    if (st == ITSCAM_OK) {
        size_t sl = it_letterbox_scratch_bytes(img.width, img.height, w, h);
        scratch = it_malloc(sl ? sl : 1);
        it_letterbox lb;
        st = scratch ? it_letterbox_to_tensor(img.data, img.width, img.height, img.stride, 0, w, h, x, scratch, sl, &lb)
                     : ITSCAM_ERR_NOMEM;
    }
    it_free(scratch);
    it_image_free(&img);
    it_free(buf);
    return st;
}

/* What `itscam calibrate` does, on a few images: 99.99th percentile ranges measured on
 * the ref kernels. */
static it_calib *calibrate(const it_graph *g, int h, int w, char **images, int n) {
    it_calib_collector *col = NULL;
    it_calib *c = NULL;
    float *x = malloc((size_t)3 * h * w * sizeof *x);
    int ok = x && it_calib_collect_begin(g, h, w, IT_CALIB_PERCENTILE, 99.99, &col) == ITSCAM_OK;
    for (int k = 0; k < n && ok; k++)
        ok = load_letterboxed(images[k], w, h, x) == ITSCAM_OK && it_calib_collect_add(col, x) == ITSCAM_OK;
    if (ok && it_calib_collect_end(col, "test", &c) != ITSCAM_OK) c = NULL;
    it_calib_collect_free(col);
    free(x);
    return c;
}

static double rel_l2(const float *want, const float *got, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)got[i] - want[i];
        num += d * d;
        den += (double)want[i] * want[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static void test_supports(void) {
    const it_backend *cpu = it_backend_find("cpu");
    CHECK(cpu->supports != NULL);
    if (!cpu->supports) return;
    unsigned isa = (unsigned)dnnl_get_effective_cpu_isa();
    CHECK(cpu->supports(IT_PREC_FP32) == 1);
    CHECK(cpu->supports(IT_PREC_BF16) == ((isa & dnnl_cpu_isa_avx512_core_bf16) == dnnl_cpu_isa_avx512_core_bf16));
    CHECK(cpu->supports(IT_PREC_INT8) == ((isa & dnnl_cpu_isa_avx2) == dnnl_cpu_isa_avx2));
    printf("  supports: fp32 %d bf16 %d int8 %d (isa 0x%x)\n", cpu->supports(IT_PREC_FP32),
           cpu->supports(IT_PREC_BF16), cpu->supports(IT_PREC_INT8), isa);
}

/* Run prog on the plan's input x (already filled) and copy the first output. */
static int run_copy(const it_backend *be, void *prog, const it_plan *p, const float *in, float *out) {
    it_tensor *x = &p->t[p->g->inputs[0]], *y = &p->t[p->g->outputs[0]];
    memcpy(x->data, in, x->nbytes);
    int st = be->run(prog);
    if (st == ITSCAM_OK) memcpy(out, y->data, y->nbytes);
    return st;
}

/* Detections on bus.jpg through the public API in one precision. */
static int detect_bus(const char *model, const char *bus, const char *prec, const char *calib, itscam_result *r) {
    itscam_detector_params dp = itscam_detector_default_params();
    dp.backend = "cpu";
    dp.precision = prec;
    dp.calib_path = calib;
    itscam_detector *d = NULL;
    uint8_t *buf = NULL;
    size_t len = 0;
    int st = itscam_detector_create(model, &dp, &d);
    if (st == ITSCAM_OK) st = it_read_file(bus, &buf, &len, (size_t)64 << 20);
    if (st == ITSCAM_OK) st = itscam_detect_encoded(d, buf, len, r);
    it_free(buf);
    itscam_detector_free(d);
    return st;
}

static float iou(const float *a, const float *b) {
    float w = fminf(a[2], b[2]) - fmaxf(a[0], b[0]), h = fminf(a[3], b[3]) - fmaxf(a[1], b[1]);
    if (w <= 0 || h <= 0) return 0;
    float i = w * h;
    return i / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - i);
}

static void test_precisions(void) {
    char mp[1024], bus[1024], dir[1024];
    if (!shared_path(mp, sizeof mp, "models/yolo11n-320.onnx") || !shared_path(bus, sizeof bus, "images/bus.jpg") ||
        !shared_path(dir, sizeof dir, "coco128/images")) {
        printf("  int8/bf16: skipped, %s/models/yolo11n-320.onnx, images/bus.jpg or coco128/images absent\n",
               shared_dir());
        return;
    }
    char *imgs[CALIB_IMAGES];
    int n_imgs = list_images(dir, imgs, CALIB_IMAGES);
    CHECK(n_imgs == CALIB_IMAGES);
    uint8_t *buf = NULL;
    size_t len = 0;
    it_graph *g = NULL;
    it_plan *p = NULL;
    it_calib *calib = NULL;
    void *fprog = NULL, *qprog = NULL, *bprog = NULL;
    float *in = NULL, *ref = NULL, *got = NULL;
    const it_backend *cpu = it_backend_find("cpu");
    CHECK_OK(it_read_file(mp, &buf, &len, (size_t)1 << 30));
    if (buf) CHECK_OK(it_onnx_load(buf, len, mp, &g));
    it_tensor shape = {.dtype = IT_F32, .ndim = 4, .dims = {1, 3, 320, 320}};
    if (g) CHECK_OK(it_plan_create(g, &shape, 1, &p));
    if (!p) goto done;
    double t0 = it_now_ms();
    calib = calibrate(g, 320, 320, imgs, n_imgs);
    CHECK(calib && calib->n > 100);
    if (!calib) goto done;
    printf("  calibration: %d ranges from %d images in %.0f ms\n", calib->n, n_imgs, it_now_ms() - t0);
    it_tensor *x = &p->t[g->inputs[0]], *y = &p->t[g->outputs[0]];
    int64_t n_out = it_tensor_numel(y);
    in = malloc(x->nbytes), ref = malloc(y->nbytes), got = malloc(y->nbytes);
    CHECK_OK(load_letterboxed(bus, 320, 320, in));

    it_backend_opts fo = {.precision = IT_PREC_FP32};
    CHECK_OK(cpu->compile(p, &fo, &fprog));
    if (!fprog) goto done;
    CHECK_OK(run_copy(cpu, fprog, p, in, ref));

    /* int8: close to fp32 */
    it_backend_opts qo = {.precision = IT_PREC_INT8, .calib = calib};
    CHECK_OK(cpu->compile(p, &qo, &qprog));
    if (!qprog) goto done;
    int n_conv = 0, n_int8 = 0;
    for (int i = 0; i < p->n_steps; i++) {
        int conv = p->steps[i].def && p->steps[i].def->id == IT_OP_CONV;
        n_conv += conv;
        n_int8 += conv && it_cpu_step_precision(qprog, i) == IT_PREC_INT8;
    }
    /* all but the DFL head's 1-channel Conv, which stays plain fp32 */
    printf("  int8: %d of %d Convs run int8\n", n_int8, n_conv);
    CHECKF(n_int8 >= n_conv - 1, "only %d of %d Convs run int8", n_int8, n_conv);
    /* Between the int8 Convs, Split, Concat, MaxPool, Resize and the residual Add move the
     * u8 copies themselves (no quantizing reorders): count them and the conversions left */
    int n_q[IT_OP_COUNT] = {0};
    for (int i = 0; i < p->n_steps; i++)
        if (p->steps[i].def && p->steps[i].def->id != IT_OP_CONV && it_cpu_step_precision(qprog, i) == IT_PREC_INT8)
            n_q[p->steps[i].def->id]++;
    printf("  int8 moves u8 through: %d Split, %d Concat, %d MaxPool, %d Resize, %d Add\n", n_q[IT_OP_SPLIT],
           n_q[IT_OP_CONCAT], n_q[IT_OP_MAXPOOL], n_q[IT_OP_RESIZE], n_q[IT_OP_ADD]);
    CHECKF(n_q[IT_OP_SPLIT] >= 8 && n_q[IT_OP_CONCAT] >= 8 && n_q[IT_OP_MAXPOOL] == 3 && n_q[IT_OP_RESIZE] == 2 &&
           n_q[IT_OP_ADD] >= 2, "too few u8 steps");
    itscam_backend_counters c0, c1;
    CHECK_OK(itscam_backend_get_counters("cpu", &c0));
    CHECK_OK(run_copy(cpu, qprog, p, in, got));
    CHECK_OK(itscam_backend_get_counters("cpu", &c1));
    printf("  int8 run: %llu reorders, %llu copies, %llu conversions\n", (unsigned long long)(c1.reorders - c0.reorders),
           (unsigned long long)(c1.copies - c0.copies), (unsigned long long)(c1.conversions - c0.conversions));
    CHECK(c1.runs == c0.runs + 1);
    /* the image in, the head out: a handful, not one per int8 Conv input */
    CHECKF(c1.conversions - c0.conversions <= 6, "%llu conversions per int8 run",
           (unsigned long long)(c1.conversions - c0.conversions));
    /* The output mixes box coordinates (0..320) and class scores (0..1): compare both.
     * Measured on AVX2 (no VNNI: 7-bit sources, see quant_levels) with this 4-image
     * calibration: boxes 3.3%, scores 18% (3 images: 2.7%, 23%); the scores' norm is a
     * handful of confident anchors whose logits pass through a sigmoid. The dataset-level
     * gate is mAP: coco128 int8 0.4715 vs fp32 0.4757. The bounds leave room for the ISA. */
    double e_all = rel_l2(ref, got, n_out), e_box = rel_l2(ref, got, 4 * y->dims[2]);
    double e_cls = rel_l2(ref + 4 * y->dims[2], got + 4 * y->dims[2], n_out - 4 * y->dims[2]);
    printf("  int8 vs fp32: rel_l2 all %.4f boxes %.4f scores %.4f\n", e_all, e_box, e_cls);
    CHECKF(e_box < 0.06, "int8 boxes rel L2 %.4f", e_box);
    CHECKF(e_cls < 0.30, "int8 scores rel L2 %.4f", e_cls);

    /* no allocation in steady state */
    uint64_t a0 = it_alloc_count();
    for (int r = 0; r < 3; r++) CHECK_OK(run_copy(cpu, qprog, p, in, got));
    CHECKF(it_alloc_count() == a0, "int8 runs allocated %llu times", (unsigned long long)(it_alloc_count() - a0));
    CHECKF(rel_l2(ref, got, n_out) == e_all, "int8 repeated runs differ");

    /* bf16: close to fp32 where native, else refused naming the node */
    it_backend_opts bo = {.precision = IT_PREC_BF16};
    int st = cpu->compile(p, &bo, &bprog);
    if (cpu->supports(IT_PREC_BF16)) {
        CHECK_OK(st);
        if (bprog) {
            CHECK_OK(run_copy(cpu, bprog, p, in, got));
            double e = rel_l2(ref, got, n_out);
            printf("  bf16 vs fp32: rel_l2 %.4f\n", e);
            CHECKF(e < 2e-2, "bf16 rel L2 %.4f", e);
        }
    } else {
        CHECKF(st == ITSCAM_ERR_UNSUPPORTED && !bprog, "bf16 compile: %d %s", st, itscam_last_error());
        CHECKF(strstr(itscam_last_error(), "node '") != NULL, "bf16 error names no node: %s", itscam_last_error());
        printf("  bf16: refused here: %s\n", itscam_last_error());
    }

    /* the public API: int8 detections on bus.jpg match fp32's */
    char cpath[] = "/tmp/itscam_calib_XXXXXX";
    int fd = mkstemp(cpath);
    CHECK(fd >= 0);
    if (fd >= 0) close(fd);
    CHECK_OK(it_calib_save(calib, cpath, n_imgs));
    itscam_result rf = {0}, rq = {0};
    CHECK_OK(detect_bus(mp, bus, "fp32", NULL, &rf));
    CHECK_OK(detect_bus(mp, bus, "int8", cpath, &rq));
    printf("  bus.jpg: fp32 %d detections, int8 %d\n", rf.count, rq.count);
    CHECKF(rf.count == rq.count, "fp32 %d detections, int8 %d", rf.count, rq.count);
    for (int a = 0; a < rf.count; a++) {
        int found = 0;
        for (int b = 0; b < rq.count && !found; b++)
            found = rf.dets[a].class_id == rq.dets[b].class_id && iou(rf.dets[a].box, rq.dets[b].box) > 0.85f &&
                    fabsf(rf.dets[a].score - rq.dets[b].score) < 0.1f;
        float best = 0, ds = 1;
        for (int b = 0; b < rq.count; b++)
            if (rf.dets[a].class_id == rq.dets[b].class_id && iou(rf.dets[a].box, rq.dets[b].box) > best)
                best = iou(rf.dets[a].box, rq.dets[b].box), ds = fabsf(rf.dets[a].score - rq.dets[b].score);
        printf("  bus.jpg detection %d: class %d score %.3f: int8 IoU %.3f, score %+.3f\n", a, rf.dets[a].class_id,
               rf.dets[a].score, best, ds);
        CHECKF(found, "fp32 detection %d (class %d, %.3f) has no int8 match", a, rf.dets[a].class_id,
               rf.dets[a].score);
    }
    if (!cpu->supports(IT_PREC_BF16)) {
        itscam_result rb = {0};
        CHECK(detect_bus(mp, bus, "bf16", NULL, &rb) == ITSCAM_ERR_UNSUPPORTED);
        itscam_result_clear(&rb);
    }
    itscam_result_clear(&rf);
    itscam_result_clear(&rq);
    unlink(cpath);
done:
    if (bprog) cpu->destroy(bprog);
    if (qprog) cpu->destroy(qprog);
    if (fprog) cpu->destroy(fprog);
    it_calib_free(calib);
    it_plan_free(p);
    it_graph_free(g);
    it_free(buf);
    free(in);
    free(ref);
    free(got);
    for (int i = 0; i < n_imgs; i++) free(imgs[i]);
}

int main(void) {
    if (!it_backend_find("cpu")) SKIP("the cpu backend is not built (oneDNN absent)");
    test_supports();
    test_precisions();
    return check_done("test_cpu_precision");
}
