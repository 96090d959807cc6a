/* Batches of 1 to 32 on the dynamic-batch model: every item of a batch gets the boxes it
 * gets alone, whatever its position and the batch size (frames of different sizes). */
#include "check.h"
#include "check_data.h"
#include "core/core.h"
#include "vision/image.h"

#include <math.h>

int main(void) {
    char mp[1024], p1[1024], p2[1024];
    if (!shared_path(mp, sizeof mp, "models/yolo11n.onnx")) SKIP("models/yolo11n.onnx is absent");
    if (!shared_path(p1, sizeof p1, "images/bus.jpg") || !shared_path(p2, sizeof p2, "images/zidane.jpg"))
        SKIP("images/bus.jpg or images/zidane.jpg is absent");
    it_image img[2];
    const char *paths[2] = { p1, p2 };
    for (int i = 0; i < 2; i++) {
        uint8_t *bytes;
        size_t len;
        CHECK_OK(it_read_file(paths[i], &bytes, &len, (size_t)64 << 20));
        CHECK_OK(it_image_decode(bytes, len, (size_t)1 << 26, &img[i]));
        it_free(bytes);
    }
    itscam_detector *d = NULL;
    CHECK_OK(itscam_detector_create(mp, NULL, &d));
    if (!d) return check_done("test_batch");
    itscam_image frames[32];
    for (int i = 0; i < 32; i++)
        frames[i] = (itscam_image){ img[i % 2].data, img[i % 2].width, img[i % 2].height, img[i % 2].stride, ITSCAM_PIX_BGR8 };
    itscam_result alone[2];
    for (int i = 0; i < 2; i++) CHECK_OK(itscam_detect_image(d, &frames[i], &alone[i]));
    static itscam_result res[32];
    const int sizes[] = { 1, 3, 8, 32 };
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        int n = sizes[s], ok = 1;
        CHECK_OK(itscam_detect_batch(d, frames, n, res));
        for (int i = 0; i < n; i++) {
            ok &= same_result(&res[i], &alone[i % 2]);
            itscam_result_clear(&res[i]);
        }
        printf("batch %2d: %s\n", n, ok ? "every item matches its batch-1 result" : "MISMATCH");
        CHECKF(ok, "batch %d", n);
    }
    /* more than the limit is refused, not truncated */
    static itscam_image many[300];
    for (int i = 0; i < 300; i++) many[i] = frames[0];
    static itscam_result mres[300];
    CHECK(itscam_detect_batch(d, many, 300, mres) == ITSCAM_ERR_INVALID_ARG);
    for (int i = 0; i < 2; i++) {
        itscam_result_clear(&alone[i]);
        it_image_free(&img[i]);
    }
    itscam_detector_free(d);
    return check_done("test_batch");
}
