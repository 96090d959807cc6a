/* libFuzzer target: arbitrary bytes through the JPEG/PNG decoder (4-megapixel limit) must
 * fail cleanly or give a well-formed image that letterboxing and drawing accept. */
#include "core/core.h"
#include "vision/draw.h"
#include "vision/image.h"
#include "vision/letterbox.h"

#include <stdint.h>
#include <stdlib.h>

#define FUZZ_MAX_PIXELS ((size_t)4 * 1000 * 1000)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* The header probe the server's decode admission trusts must never read past the
     * buffer, and must agree with the decoder on what it accepts. */
    int pw = 0, ph = 0, pc = 0;
    int probed = it_image_probe(data, size, &pw, &ph, &pc) == ITSCAM_OK;
    if (probed && (pw <= 0 || ph <= 0)) __builtin_trap();
    it_image img;
    if (it_image_decode(data, size, FUZZ_MAX_PIXELS, &img) != ITSCAM_OK) {
        if (img.data) __builtin_trap(); /* a failure must leave nothing allocated */
        return 0;
    }
    if (img.width <= 0 || img.height <= 0 || (size_t)img.width * img.height > FUZZ_MAX_PIXELS ||
        img.stride < img.width * 3)
        __builtin_trap();
    /* what decoded was probed first, with the size the header gave (before EXIF rotation) */
    if (!probed || !((pw == img.width && ph == img.height) || (pw == img.height && ph == img.width)))
        __builtin_trap();
    /* Touch every pixel byte so that ASan sees the whole buffer (and MSan-like tools any
     * uninitialised row), then run the rest of the pipeline on it. */
    unsigned sum = 0;
    for (int y = 0; y < img.height; y++)
        for (int x = 0; x < img.width * 3; x++) sum += img.data[(size_t)y * img.stride + x];
    static float tensor[3 * 64 * 48];
    size_t sl = it_letterbox_scratch_bytes(img.width, img.height, 64, 48);
    uint8_t *scratch = malloc(sl ? sl : 1);
    it_letterbox lb;
    if (scratch &&
        it_letterbox_to_tensor(img.data, img.width, img.height, img.stride, 0, 64, 48, tensor, scratch, sl, &lb) ==
            ITSCAM_OK) {
        for (int i = 0; i < 3 * 64 * 48; i++)
            if (!(tensor[i] >= 0.0f && tensor[i] <= 1.0f)) __builtin_trap();
    }
    free(scratch);
    itscam_detection d = {(int)(sum % 80), "", 0.5f, {-3.0f, 1.0f, (float)img.width + 5, (float)img.height / 2}};
    it_draw_detections(&img, &d, NULL, 1, NULL, 0);
    it_image_free(&img);
    return 0;
}
