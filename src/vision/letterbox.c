/* Letterbox to a float tensor, bit-exact with Ultralytics' LetterBox on OpenCV 4.6 (x86-64). */
#include "vision/letterbox.h"

#include <math.h>
#include <string.h>

/* OpenCV's fixed-point bilinear: weights are shorts scaled by 2^11 (INTER_RESIZE_COEF_BITS). */
#define COEF_BITS 11
#define COEF_SCALE (1 << COEF_BITS)

static short round_coef(float v) {
    long r = lrintf(v); /* cvRound: to nearest, ties to even */
    return (short)(r < -32768 ? -32768 : r > 32767 ? 32767 : r);
}

static size_t align_up(size_t n) { return IT_ALIGN_UP(n); }

size_t it_resize_scratch_bytes(int dw, int dh) {
    if (dw <= 0 || dh <= 0) return 0;
    return align_up(sizeof(int) * (size_t)dw) + align_up(sizeof(short) * 2 * (size_t)dw) +
           2 * align_up(sizeof(int) * 3 * (size_t)dw);
}

/* HResizeLinear<uchar,int,short,2048>: one source row to 2^11-scaled ints. */
static void hresize_row(const uint8_t *s, int *d, const int *xofs, const short *alpha, int dw, int sw) {
    for (int dx = 0; dx < dw; dx++) {
        int sx = xofs[dx];
        const uint8_t *p = s + (size_t)sx * 3;
        if (sx < sw - 1) {
            int a0 = alpha[2 * dx], a1 = alpha[2 * dx + 1];
            d[dx * 3 + 0] = p[0] * a0 + p[3] * a1;
            d[dx * 3 + 1] = p[1] * a0 + p[4] * a1;
            d[dx * 3 + 2] = p[2] * a0 + p[5] * a1;
        } else { /* past xmax OpenCV takes the last pixel at full weight */
            d[dx * 3 + 0] = p[0] * COEF_SCALE;
            d[dx * 3 + 1] = p[1] * COEF_SCALE;
            d[dx * 3 + 2] = p[2] * COEF_SCALE;
        }
    }
}

static uint8_t sat_u8(int v) { return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v); }

/* VResizeLinear for uchar as OpenCV 4.6 runs it on x86-64: the 16-bit arithmetic of
 * VResizeLinearVec_32s8u, which rounds differently from the 22-bit FixedPtCast formula.
 * Checked against cv2.resize on 52 random sizes (up and down, widths below one vector
 * included): every byte of every row follows this form, the tail too. */
static void vresize_row(const int *s0, const int *s1, short b0, short b1, uint8_t *dst, int width) {
    for (int x = 0; x < width; x++) {
        /* v_pack(v >> 4) saturates to int16, v_mul_hi keeps the high 16 bits, v_add
         * saturates, v_rshr_pack_u<2> adds 2, shifts and saturates to uint8. */
        int a = s0[x] >> 4, b = s1[x] >> 4;
        a = a > 32767 ? 32767 : a < -32768 ? -32768 : a;
        b = b > 32767 ? 32767 : b < -32768 ? -32768 : b;
        int t = ((a * b0) >> 16) + ((b * b1) >> 16);
        t = t > 32767 ? 32767 : t < -32768 ? -32768 : t;
        dst[x] = sat_u8((t + 2) >> 2);
    }
}

itscam_status it_resize_linear_c3(const uint8_t *src, int sw, int sh, int sstride, uint8_t *dst, int dw, int dh,
                                  int dstride, uint8_t *scratch, size_t scratch_len) {
    if (!src || !dst || sw <= 0 || sh <= 0 || dw <= 0 || dh <= 0 || sstride < sw * 3 || dstride < dw * 3)
        return it_err(ITSCAM_ERR_INVALID_ARG, "resize: bad arguments (%dx%d -> %dx%d)", sw, sh, dw, dh);
    if (sw == dw && sh == dh) { /* cv::resize copies */
        for (int y = 0; y < sh; y++) memcpy(dst + (size_t)y * dstride, src + (size_t)y * sstride, (size_t)sw * 3);
        return ITSCAM_OK;
    }
    if (!scratch || scratch_len < it_resize_scratch_bytes(dw, dh))
        return it_err(ITSCAM_ERR_INVALID_ARG, "resize: scratch of %zu bytes, %zu needed", scratch_len,
                      it_resize_scratch_bytes(dw, dh));
    int *xofs = (int *)scratch;
    short *alpha = (short *)(scratch + align_up(sizeof(int) * (size_t)dw));
    int *rows[2];
    rows[0] = (int *)((uint8_t *)alpha + align_up(sizeof(short) * 2 * (size_t)dw));
    rows[1] = (int *)((uint8_t *)rows[0] + align_up(sizeof(int) * 3 * (size_t)dw));

    /* The same double/float sequence as cv::resize: inv_scale = dsize/ssize, scale = 1/inv. */
    double scale_x = 1. / ((double)dw / sw), scale_y = 1. / ((double)dh / sh);
    for (int dx = 0; dx < dw; dx++) {
        float fx = (float)((dx + 0.5) * scale_x - 0.5);
        int sx = (int)floorf(fx);
        fx -= (float)sx;
        if (sx < 0) fx = 0, sx = 0;
        if (sx >= sw - 1) fx = 0, sx = sw - 1;
        xofs[dx] = sx;
        alpha[2 * dx] = round_coef((1.f - fx) * COEF_SCALE);
        alpha[2 * dx + 1] = round_coef(fx * COEF_SCALE);
    }
    int have[2] = {-1, -1}; /* source row held in rows[k] */
    for (int dy = 0; dy < dh; dy++) {
        float fy = (float)((dy + 0.5) * scale_y - 0.5);
        int sy = (int)floorf(fy);
        fy -= (float)sy;
        /* Rows are clamped but, unlike columns, the weights are not (OpenCV's clip()). */
        int y0 = sy < 0 ? 0 : sy >= sh ? sh - 1 : sy;
        int y1 = sy + 1 < 0 ? 0 : sy + 1 >= sh ? sh - 1 : sy + 1;
        short b0 = round_coef((1.f - fy) * COEF_SCALE), b1 = round_coef(fy * COEF_SCALE);
        if (have[0] != y0) {
            if (have[1] == y0) { /* slide down: reuse the computed row */
                int *t = rows[0];
                rows[0] = rows[1];
                rows[1] = t;
                have[0] = y0;
                have[1] = -1;
            } else {
                hresize_row(src + (size_t)y0 * sstride, rows[0], xofs, alpha, dw, sw);
                have[0] = y0;
            }
        }
        const int *r1 = rows[0];
        if (y1 != y0) {
            if (have[1] != y1) {
                hresize_row(src + (size_t)y1 * sstride, rows[1], xofs, alpha, dw, sw);
                have[1] = y1;
            }
            r1 = rows[1];
        }
        vresize_row(rows[0], r1, b0, b1, dst + (size_t)dy * dstride, dw * 3);
    }
    return ITSCAM_OK;
}

itscam_status it_letterbox_geometry(int w, int h, int dst_w, int dst_h, it_letterbox *info) {
    if (w <= 0 || h <= 0 || dst_w <= 0 || dst_h <= 0 || !info)
        return it_err(ITSCAM_ERR_INVALID_ARG, "letterbox: bad sizes %dx%d -> %dx%d", w, h, dst_w, dst_h);
    /* Ultralytics: r = min(H/h, W/w); new = int(round(w*r)) (Python rounds half to even,
     * as nearbyint does in the default mode); pads round(d/2 -+ 0.1). */
    double r = fmin((double)dst_h / h, (double)dst_w / w);
    int nw = (int)nearbyint(w * r), nh = (int)nearbyint(h * r);
    if (nw < 1) nw = 1; /* extreme aspect ratios: keep one column rather than none */
    if (nh < 1) nh = 1;
    if (nw > dst_w) nw = dst_w;
    if (nh > dst_h) nh = dst_h;
    double pw = (dst_w - nw) / 2.0, ph = (dst_h - nh) / 2.0;
    info->scale = (float)r;
    info->new_w = nw;
    info->new_h = nh;
    info->pad_x = (int)nearbyint(pw - 0.1);
    info->pad_y = (int)nearbyint(ph - 0.1);
    return ITSCAM_OK;
}

size_t it_letterbox_scratch_bytes(int w, int h, int dst_w, int dst_h) {
    it_letterbox lb;
    if (it_letterbox_geometry(w, h, dst_w, dst_h, &lb)) return 0;
    return align_up((size_t)lb.new_w * 3 * lb.new_h) + it_resize_scratch_bytes(lb.new_w, lb.new_h);
}

itscam_status it_letterbox_to_tensor(const uint8_t *src, int w, int h, int stride, int src_is_rgb, int dst_w,
                                     int dst_h, float *dst_nchw, uint8_t *scratch, size_t scratch_len,
                                     it_letterbox *info) {
    it_letterbox lb;
    itscam_status st = it_letterbox_geometry(w, h, dst_w, dst_h, &lb);
    if (st) return st;
    if (stride == 0) stride = w * 3;
    if (!src || !dst_nchw || stride < w * 3) return it_err(ITSCAM_ERR_INVALID_ARG, "letterbox: bad arguments");
    size_t need = it_letterbox_scratch_bytes(w, h, dst_w, dst_h);
    if (!scratch || scratch_len < need)
        return it_err(ITSCAM_ERR_INVALID_ARG, "letterbox: scratch of %zu bytes, %zu needed", scratch_len, need);
    const uint8_t *img = src;
    int istride = stride;
    if (lb.new_w != w || lb.new_h != h) {
        uint8_t *resized = scratch;
        size_t used = align_up((size_t)lb.new_w * 3 * lb.new_h);
        st = it_resize_linear_c3(src, w, h, stride, resized, lb.new_w, lb.new_h, lb.new_w * 3, scratch + used,
                                 scratch_len - used);
        if (st) return st;
        img = resized;
        istride = lb.new_w * 3;
    }
    /* numpy's float32(v) / 255.0 is a correctly rounded float division, not v * (1/255). */
    float lut[256];
    for (int i = 0; i < 256; i++) lut[i] = (float)i / 255.0f;
    const float pad = lut[114];
    size_t plane = (size_t)dst_w * dst_h;
    for (int c = 0; c < 3; c++) {
        float *p = dst_nchw + plane * c;
        int ch = src_is_rgb ? c : 2 - c; /* planes are R, G, B */
        for (int y = 0; y < dst_h; y++) {
            float *row = p + (size_t)y * dst_w;
            int sy = y - lb.pad_y;
            if (sy < 0 || sy >= lb.new_h) {
                for (int x = 0; x < dst_w; x++) row[x] = pad;
                continue;
            }
            const uint8_t *s = img + (size_t)sy * istride + ch;
            int x = 0;
            for (; x < lb.pad_x; x++) row[x] = pad;
            for (int i = 0; i < lb.new_w; i++, x++) row[x] = lut[s[(size_t)i * 3]];
            for (; x < dst_w; x++) row[x] = pad;
        }
    }
    if (info) *info = lb;
    return ITSCAM_OK;
}
