/* Frame quality (src/stream/quality.c) on synthetic frames: a sharp textured picture
 * scores 1; dark, washed-out, flat and blurred pictures are degraded with their reason;
 * a picture unchanged for frozen_s is frozen, and stops being frozen when it changes;
 * the grey copy the result cache compares tells a moved object from re-encoding noise. */
#include "check.h"
#include "stream/quality.h"

#include <stdlib.h>
#include <string.h>

static void fill(it_image *im, int (*f)(int x, int y, int c)) {
    for (int y = 0; y < im->height; y++)
        for (int x = 0; x < im->width; x++)
            for (int c = 0; c < 3; c++) {
                int v = f(x, y, c);
                im->data[(size_t)y * im->stride + 3 * x + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
}

static unsigned rng = 12345;
static int noise(void) {
    rng = rng * 1103515245u + 12345u;
    return (int)((rng >> 16) % 3) - 1; /* -1..1: what re-encoding a still picture leaves */
}
static int sharp(int x, int y, int c) { return ((x / 8 + y / 8) & 1 ? 200 : 50) + c; }
static int dark(int x, int y, int c) { return ((x / 8 + y / 8) & 1 ? 25 : 10) + c; }
static int bright(int x, int y, int c) { return ((x / 8 + y / 8) & 1 ? 250 : 235) + c - 2; }
static int flat(int x, int y, int c) { return 120 + (x + y) % 3 + c; }
static int blurred(int x, int y, int c) { return 60 + (x * 130) / 1280 + (y * 2) / 720 + c; }
static int noisy_sharp(int x, int y, int c) { return sharp(x, y, c) + noise(); }

static it_quality measure(int (*f)(int, int, int), double now) {
    static it_image im;
    if (!im.data) it_image_alloc(&im, 1280, 720);
    fill(&im, f);
    it_quality_state st;
    memset(&st, 0, sizeof st);
    it_quality q;
    it_quality_params p = it_quality_default_params();
    it_quality_measure(&st, &im, now, &p, &q);
    return q;
}

int main(void) {
    it_quality q = measure(sharp, 0);
    printf("sharp: score %.2f sharpness %.1f brightness %.1f contrast %.1f (%.3f ms) %s\n", q.score, q.sharpness,
           q.brightness, q.contrast, q.ms, q.reason);
    CHECK(q.measured && q.score == 1 && !q.degraded);
    q = measure(dark, 0);
    CHECK(q.degraded && strstr(q.reason, "dark") && q.score < 0.5);
    q = measure(bright, 0);
    CHECK(q.degraded && strstr(q.reason, "bright"));
    q = measure(flat, 0);
    CHECK(q.degraded && strstr(q.reason, "low_contrast") && strstr(q.reason, "blurred"));
    q = measure(blurred, 0);
    printf("blurred: score %.2f sharpness %.1f contrast %.1f %s\n", q.score, q.sharpness, q.contrast, q.reason);
    CHECK(q.degraded && strstr(q.reason, "blurred") && !strstr(q.reason, "dark"));

    /* Frozen: the same picture (re-encoding noise aside) for 10 s, then a change. */
    it_image im;
    CHECK_OK(it_image_alloc(&im, 640, 360));
    it_quality_state st;
    memset(&st, 0, sizeof st);
    it_quality_params p = it_quality_default_params();
    int frozen_at = -1;
    for (int t = 0; t <= 12; t++) {
        fill(&im, noisy_sharp);
        it_quality_measure(&st, &im, t * 1000.0, &p, &q);
        if (q.frozen && frozen_at < 0) frozen_at = t;
    }
    CHECKF(frozen_at == 10, "frozen after 10 s (at %d)", frozen_at);
    CHECK(q.frozen && q.score == 0 && strstr(q.reason, "frozen"));
    fill(&im, dark);
    it_quality_measure(&st, &im, 13000, &p, &q);
    CHECK(!q.frozen);

    /* The result cache's comparison: noise stays within 2 levels of the grey copy, a
     * 40x30 object moved by 20 pixels does not. */
    uint8_t a[IT_QUALITY_W * IT_QUALITY_HMAX], b[IT_QUALITY_W * IT_QUALITY_HMAX];
    int w, h, w2, h2;
    fill(&im, noisy_sharp);
    it_frame_thumb(&im, a, &w, &h);
    fill(&im, noisy_sharp);
    it_frame_thumb(&im, b, &w2, &h2);
    CHECK(w == 160 && h == 90 && w2 == w && h2 == h);
    CHECKF(it_thumb_maxdiff(a, b, w * h) <= 2, "noise moves the grey copy by %d", it_thumb_maxdiff(a, b, w * h));
    fill(&im, flat);
    it_frame_thumb(&im, a, &w, &h);
    for (int y = 100; y < 130; y++)
        for (int x = 300; x < 340; x++) memset(im.data + (size_t)y * im.stride + 3 * x, 30, 3);
    it_frame_thumb(&im, b, &w, &h);
    CHECK(it_thumb_maxdiff(a, b, w * h) > 20);
    /* What a measurement costs on a 1280x720 frame (printed for the README, not checked). */
    it_image big;
    CHECK_OK(it_image_alloc(&big, 1280, 720));
    fill(&big, sharp);
    memset(&st, 0, sizeof st);
    double sum = 0;
    for (int i = 0; i < 50; i++) {
        it_quality_measure(&st, &big, i, &p, &q);
        sum += q.ms;
    }
    printf("quality on 1280x720: %.3f ms per measurement (mean of 50)\n", sum / 50);
    it_image_free(&big);
    it_image_free(&im);
    return check_done("test_quality");
}
