/* Owned 8-bit BGR images: JPEG/PNG decoding as OpenCV 4.6 imread(IMREAD_COLOR) does, JPEG encoding. */
#ifndef ITSCAM_VISION_IMAGE_H
#define ITSCAM_VISION_IMAGE_H

#include "core/core.h"

/* 8-bit BGR, rows `stride` bytes apart; data is owned (it_image_free). */
typedef struct it_image {
    uint8_t *data;
    int width, height, stride;
} it_image;

/* Decode JPEG or PNG bytes (detected by magic) into a fresh BGR image. Images with more than
 * max_pixels pixels are refused with ITSCAM_ERR_IMAGE before any pixel buffer is allocated.
 * JPEG EXIF orientation is applied, as imread does. On failure *out is zeroed. */
itscam_status it_image_decode(const void *bytes, size_t len, size_t max_pixels, it_image *out);

/* Read the size (and source channels: 1 grey, 2 grey+alpha, 3 colour, 4 CMYK/RGBA) from a
 * JPEG or PNG header without decoding pixels, so that a caller can account for the
 * w*h*3 bytes a decode will allocate before it starts (decompression bombs: a 290 KB
 * PNG can hold 10000x10000 pixels). The size is the stored one: EXIF orientation may
 * swap width and height in the decoded image. No pixel limit is applied here. */
itscam_status it_image_probe(const void *bytes, size_t len, int *w, int *h, int *channels);

/* Allocate a w x h BGR image (uninitialised pixels). */
itscam_status it_image_alloc(it_image *img, int w, int h);

/* Encode as baseline JPEG (quality 1..100); *out is it_malloc'd, release with it_free. */
itscam_status it_image_encode_jpeg(const it_image *img, int quality, uint8_t **out, size_t *len);

void it_image_free(it_image *img);

#endif
