/* Calibration: ranges collected on real images cover every Conv input, are ordered, and
 * survive a save/load round trip; bad table files fail with messages naming the problem.
 * The cpu backend's tables (the whole plan per image, every activation kept) match the
 * ref kernels' (one step at a time): the same names, the same ranges up to fp32 rounding. */
#include "check.h"
#include "runtime/calibrate.h"
#include "runtime/model.h"
#include "vision/image.h"
#include "vision/letterbox.h"

#include <math.h>

static int letterbox_file(const char *path, int h, int w, float *dst) {
    uint8_t *bytes;
    size_t len;
    if (it_read_file(path, &bytes, &len, (size_t)64 << 20) != ITSCAM_OK) return -1;
    it_image img;
    itscam_status st = it_image_decode(bytes, len, (size_t)1 << 26, &img);
    it_free(bytes);
    if (st != ITSCAM_OK) return -1;
    size_t sl = it_letterbox_scratch_bytes(img.width, img.height, w, h);
    uint8_t *scratch = it_malloc(sl);
    it_letterbox lb;
    st = scratch ? it_letterbox_to_tensor(img.data, img.width, img.height, img.stride, 0, w, h, dst, scratch, sl, &lb)
                 : ITSCAM_ERR_NOMEM;
    it_free(scratch);
    it_image_free(&img);
    return st == ITSCAM_OK ? 0 : -1;
}

static it_calib *collect(const itscam_model *m, const char *const *imgs, int n, it_calib_method method,
                         const it_calib_exec *ex) {
    it_calib_collector *c = NULL;
    it_calib *out = NULL;
    float *in = it_malloc(sizeof(float) * 3 * 320 * 320);
    CHECK(in != NULL);
    CHECK_OK(it_calib_collect_begin_with(m->g, 320, 320, method, 99.99, ex, &c));
    if (c) CHECK(!strcmp(it_calib_collect_backend(c), ex ? ex->backend->name : "ref"));
    for (int i = 0; c && in && i < n; i++) {
        CHECKF(letterbox_file(imgs[i], 320, 320, in) == 0, "%s", imgs[i]);
        CHECK_OK(it_calib_collect_add(c, in));
    }
    CHECK(it_calib_collect_count(c) == n);
    if (c) CHECK_OK(it_calib_collect_end(c, "yolo11n-320.onnx", &out));
    it_calib_collect_free(c);
    it_free(in);
    return out;
}

/* The largest difference between two tables' ranges, relative to each range's span;
 * -1 when their names differ. */
static double table_diff(const it_calib *want, const it_calib *got, const char **worst) {
    if (want->n != got->n) return -1;
    double d = 0;
    for (int i = 0; i < want->n; i++) {
        float lo, hi;
        if (it_calib_range(got, want->names[i], &lo, &hi) != 0) return -1;
        double span = fmax((double)want->hi[i] - want->lo[i], 1e-6);
        double e = fmax(fabs((double)lo - want->lo[i]), fabs((double)hi - want->hi[i])) / span;
        if (e > d) d = e, *worst = want->names[i];
    }
    return d;
}

/* The cpu backend's tables against the ref kernels' (pc, mm) on the same images. The
 * activations differ by fp32 rounding (oneDNN sums in another order, its SiLU is another
 * polynomial): the extremes by ~1e-5 of the span. A percentile is read from a histogram of
 * 2048 bins (widened to span/1024 at worst) and interpolated inside its bin, so a value
 * that crosses a bin edge in the sparse tail moves it by up to about one bin: measured
 * up to 1.1e-3 of the span (yolo11n at 640, 4 coco128 images), hence 2.5e-3. */
static void compare_backends(const itscam_model *m, const char *const *imgs, int n, const it_calib *pc,
                             const it_calib *mm) {
    const it_backend *cpu = it_backend_find("cpu");
    char why[256] = "";
    if (!cpu || !it_backend_usable(cpu, why, sizeof why)) {
        printf("  cpu vs ref: skipped, the cpu backend is %s %s\n", cpu ? "unusable:" : "not compiled in", why);
        return;
    }
    /* over the memory bound: refused, saying how much, nothing returned */
    it_calib_exec tiny = { .backend = cpu, .max_bytes = 1 << 20 };
    it_calib_collector *c = NULL;
    CHECK(it_calib_collect_begin_with(m->g, 320, 320, IT_CALIB_MINMAX, 0, &tiny, &c) == ITSCAM_ERR_NOMEM && !c);
    CHECKF(strstr(itscam_last_error(), "MiB limit") != NULL, "%s", itscam_last_error());
    it_calib_exec ex = { .backend = cpu };
    CHECK_OK(it_calib_collect_begin_with(m->g, 320, 320, IT_CALIB_MINMAX, 0, &ex, &c));
    if (c) printf("  cpu backend: %.1f MiB held at 320x320\n", (double)it_calib_collect_memory(c) / (1 << 20));
    it_calib_collect_free(c);

    it_calib *cpc = collect(m, imgs, n, IT_CALIB_PERCENTILE, &ex);
    it_calib *cmm = collect(m, imgs, n, IT_CALIB_MINMAX, &ex);
    CHECK(cpc && cmm);
    if (cpc && cmm) {
        const char *wp = "", *wm = "";
        double dp = table_diff(pc, cpc, &wp), dm = table_diff(mm, cmm, &wm);
        printf("  cpu vs ref: %d ranges; minmax within %.2g of the span (%s), percentile within %.2g (%s)\n",
               cpc->n, dm, wm, dp, wp);
        CHECKF(dm >= 0 && dp >= 0, "the cpu and ref tables name different values (%d, %d ranges)", cpc->n, pc->n);
        CHECKF(dm < 1e-4, "minmax: %s differs by %.3g of its span", wm, dm);
        CHECKF(dp < 2.5e-3, "percentile: %s differs by %.3g of its span", wp, dp);
    }
    it_calib_free(cpc);
    it_calib_free(cmm);
}

/* Write `text` to a temporary file and expect it_calib_load to fail naming `needle`. */
static void expect_bad(const char *dir, const char *name, const char *text, const char *needle) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (!f) return;
    fputs(text, f);
    fclose(f);
    it_calib *c = NULL;
    itscam_status st = it_calib_load(path, &c);
    CHECKF(st != ITSCAM_OK && c == NULL, "%s loaded", name);
    CHECKF(strstr(itscam_last_error(), name) != NULL, "error does not name the file: %s", itscam_last_error());
    CHECKF(strstr(itscam_last_error(), needle) != NULL, "error '%s' lacks '%s'", itscam_last_error(), needle);
    it_calib_free(c);
    remove(path);
}

int main(void) {
    char dir[] = "/tmp/itscam_calib_XXXXXX";
    if (!mkdtemp(dir)) return 1;

    /* Bad tables need no model. */
    expect_bad(dir, "notjson.json", "this is not json", "notjson.json");
    expect_bad(dir, "lohi.json", "{\"ranges\":{\"x\":[2.0,1.0]}}", "lo > hi");
    expect_bad(dir, "noranges.json", "{\"model\":\"m\",\"method\":\"minmax\"}", "ranges");
    expect_bad(dir, "shape.json", "{\"ranges\":{\"x\":[1.0]}}", "[lo, hi]");
    it_calib *none = NULL;
    CHECK(it_calib_load("/nonexistent/calib.json", &none) != ITSCAM_OK && !none);

    char mp[512], b1[512], b2[512];
    if (!shared_path(mp, sizeof mp, "models/yolo11n-320.onnx")) SKIP("models/yolo11n-320.onnx is absent");
    if (!shared_path(b1, sizeof b1, "images/bus.jpg") || !shared_path(b2, sizeof b2, "images/zidane.jpg"))
        SKIP("images/bus.jpg or images/zidane.jpg is absent");
    const char *imgs[] = { b1, b2 };
    itscam_model *m = NULL;
    CHECK_OK(itscam_model_load(mp, &m));
    if (!m) return check_done("test_calibrate");

    /* Arguments out of range are refused. */
    it_calib_collector *bad = NULL;
    CHECK(it_calib_collect_begin(m->g, 320, 320, IT_CALIB_PERCENTILE, 20.0, &bad) == ITSCAM_ERR_INVALID_ARG && !bad);
    CHECK(it_calib_collect_begin(m->g, 0, 320, IT_CALIB_MINMAX, 0, &bad) == ITSCAM_ERR_INVALID_ARG && !bad);

    it_calib *pc = collect(m, imgs, 2, IT_CALIB_PERCENTILE, NULL);
    it_calib *mm = collect(m, imgs, 2, IT_CALIB_MINMAX, NULL);
    CHECK(pc && mm);
    if (pc && mm) {
        CHECK(!strcmp(pc->method, "percentile") && !strcmp(mm->method, "minmax"));
        CHECK(pc->n == mm->n && pc->n > 100);
        /* Every Conv input (by graph value name) has an ordered, finite range. */
        int convs = 0;
        for (int i = 0; i < m->g->n_nodes; i++) {
            const it_node *nd = &m->g->nodes[i];
            if (strcmp(nd->op_type, "Conv")) continue;
            convs++;
            const char *name = m->g->values[nd->in[0]].name;
            float lo = 0, hi = 0;
            CHECKF(it_calib_range(pc, name, &lo, &hi) == 0, "no range for Conv input %s", name);
            CHECKF(isfinite(lo) && isfinite(hi) && lo <= hi, "%s: [%g, %g]", name, lo, hi);
        }
        CHECK(convs > 50);
        for (int i = 0; i < pc->n; i++) CHECKF(pc->lo[i] <= pc->hi[i], "%s", pc->names[i]);
        /* Percentiles clip inside the extremes, and the extremes are the true ones: the
         * letterboxed input spans [0, 1] within a grey level (pad 114/255 included). */
        for (int i = 0; i < pc->n; i++) {
            float lo, hi;
            CHECK(it_calib_range(mm, pc->names[i], &lo, &hi) == 0);
            CHECKF(pc->lo[i] >= lo && pc->hi[i] <= hi, "%s: percentile [%g,%g] outside minmax [%g,%g]", pc->names[i],
                   pc->lo[i], pc->hi[i], lo, hi);
        }
        float lo, hi;
        CHECK(it_calib_range(mm, "images", &lo, &hi) == 0 && lo >= 0 && lo < 0.01f && hi > 0.99f && hi <= 1.0f);
        CHECK(it_calib_range(pc, "images", &lo, &hi) == 0 && lo >= 0 && hi <= 1.0f && hi > 0.9f);

        /* Save and load back: the same ranges to float precision. */
        char path[512];
        snprintf(path, sizeof path, "%s/yolo11n-320.calib.json", dir);
        CHECK_OK(it_calib_save(pc, path, 2));
        it_calib *back = NULL;
        CHECK_OK(it_calib_load(path, &back));
        if (back) {
            CHECK(back->n == pc->n && !strcmp(back->method, "percentile") && !strcmp(back->model, "yolo11n-320.onnx"));
            for (int i = 0; i < pc->n; i++) {
                CHECKF(it_calib_range(back, pc->names[i], &lo, &hi) == 0 && lo == pc->lo[i] && hi == pc->hi[i],
                       "%s", pc->names[i]);
            }
        }
        it_calib_free(back);
        remove(path);
    }
    if (pc && mm) compare_backends(m, imgs, 2, pc, mm);
    it_calib_free(pc);
    it_calib_free(mm);
    itscam_model_free(m);
    rmdir(dir);
    return check_done("test_calibrate");
}
