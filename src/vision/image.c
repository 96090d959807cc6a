/* JPEG (libjpeg-turbo) and PNG (libpng) decoding to BGR, matching OpenCV 4.6 imread(IMREAD_COLOR). */
#include "vision/image.h"

#include <stdio.h>
#include <jpeglib.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* libjpeg-turbo's progressive decoder can be made to run thousands of scans over a tiny file
 * (a "scan bomb"); real encoders emit a dozen. libjpeg-turbo's own fuzzers stop at 500. */
#define MAX_JPEG_SCANS 500

#define IT_IMAGE_TAIL_PAD 256

itscam_status it_image_alloc(it_image *img, int w, int h) {
    memset(img, 0, sizeof *img);
    if (w <= 0 || h <= 0) return it_err(ITSCAM_ERR_IMAGE, "image size %dx%d is empty", w, h);
    size_t stride = (size_t)w * 3;
    /* Tail padding: FFmpeg's swscale converts rows in SIMD blocks of up to 32 pixels and
     * writes whole blocks, so on the last row it stores up to ~100 bytes past width * 3.
     * Unpadded, that overwrote the next heap chunk's header (found through glibc's
     * "corrupted top size" aborts; ASan cannot see writes from uninstrumented FFmpeg). */
    img->data = it_malloc(stride * (size_t)h + IT_IMAGE_TAIL_PAD);
    if (!img->data) return it_err(ITSCAM_ERR_NOMEM, "cannot allocate a %dx%d image", w, h);
    img->width = w;
    img->height = h;
    img->stride = (int)stride;
    return ITSCAM_OK;
}

void it_image_free(it_image *img) {
    if (!img) return;
    it_free(img->data);
    memset(img, 0, sizeof *img);
}

static itscam_status check_size(const char *kind, size_t w, size_t h, size_t max_pixels) {
    if (w == 0 || h == 0) return it_err(ITSCAM_ERR_IMAGE, "%s image has zero size (%zux%zu)", kind, w, h);
    /* INT32 bound keeps every later int index (stride*height) in range. */
    if (w > 0x7fffffffu / 3 || h > 0x7fffffffu || w > max_pixels / h)
        return it_err(ITSCAM_ERR_IMAGE, "%s image %zux%zu exceeds the limit of %zu pixels", kind, w, h, max_pixels);
    if (w * 3 * h > 0x7fffffffu)
        return it_err(ITSCAM_ERR_IMAGE, "%s image %zux%zu is too large", kind, w, h);
    return ITSCAM_OK;
}

/* ---------------------------------------------------------------------------------
 * EXIF orientation: imread rotates JPEGs by their orientation tag (0x0112 in IFD0).
 * --------------------------------------------------------------------------------- */
static unsigned rd16(const uint8_t *p, int le) { return le ? p[0] | p[1] << 8 : p[0] << 8 | p[1]; }
static uint32_t rd32(const uint8_t *p, int le) {
    return le ? (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24
              : (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static int exif_orientation(const uint8_t *d, size_t n) {
    if (n < 14 || memcmp(d, "Exif\0\0", 6) != 0) return 1;
    d += 6;
    n -= 6;
    int le;
    if (d[0] == 'I' && d[1] == 'I') le = 1;
    else if (d[0] == 'M' && d[1] == 'M') le = 0;
    else return 1;
    uint32_t ifd = rd32(d + 4, le);
    if (ifd > n || n - ifd < 2) return 1;
    unsigned count = rd16(d + ifd, le);
    for (unsigned i = 0; i < count; i++) {
        size_t e = (size_t)ifd + 2 + (size_t)i * 12;
        if (e + 12 > n) break;
        if (rd16(d + e, le) == 0x0112) {
            unsigned v = rd16(d + e + 8, le);
            return v >= 1 && v <= 8 ? (int)v : 1;
        }
    }
    return 1;
}

/* Apply orientation o (2..8) as OpenCV's ApplyExifOrientation (flips and transposes). */
static itscam_status apply_orientation(it_image *img, int o) {
    if (o <= 1 || o > 8) return ITSCAM_OK;
    int w = img->width, h = img->height, swap = o >= 5;
    it_image dst;
    itscam_status st = it_image_alloc(&dst, swap ? h : w, swap ? w : h);
    if (st) return st;
    for (int y = 0; y < dst.height; y++) {
        uint8_t *d = dst.data + (size_t)y * dst.stride;
        for (int x = 0; x < dst.width; x++, d += 3) {
            int sx, sy;
            switch (o) {
            case 2: sx = w - 1 - x; sy = y; break;
            case 3: sx = w - 1 - x; sy = h - 1 - y; break;
            case 4: sx = x; sy = h - 1 - y; break;
            case 5: sx = y; sy = x; break;
            case 6: sx = y; sy = h - 1 - x; break;
            case 7: sx = w - 1 - y; sy = h - 1 - x; break;
            default: sx = w - 1 - y; sy = x; break; /* 8 */
            }
            const uint8_t *s = img->data + (size_t)sy * img->stride + (size_t)sx * 3;
            d[0] = s[0]; d[1] = s[1]; d[2] = s[2];
        }
    }
    it_image_free(img);
    *img = dst;
    return ITSCAM_OK;
}

/* ---------------------------------------------------------------------------------
 * JPEG
 * --------------------------------------------------------------------------------- */
typedef struct jpeg_err {
    struct jpeg_error_mgr pub;
    jmp_buf jmp;
    char msg[JMSG_LENGTH_MAX];
    char warn[JMSG_LENGTH_MAX]; /* first warning, e.g. premature end of data */
} jpeg_err;

static void jpeg_error_exit(j_common_ptr c) {
    jpeg_err *e = (jpeg_err *)c->err;
    e->pub.format_message(c, e->msg);
    longjmp(e->jmp, 1);
}

/* Replaces libjpeg's stderr printing: warnings are remembered, trace messages dropped. */
static void jpeg_emit(j_common_ptr c, int level) {
    jpeg_err *e = (jpeg_err *)c->err;
    if (level < 0) {
        if (e->pub.num_warnings++ == 0) e->pub.format_message(c, e->warn);
    }
}

static void jpeg_progress(j_common_ptr c) {
    if (c->is_decompressor) {
        j_decompress_ptr d = (j_decompress_ptr)c;
        if (d->input_scan_number > MAX_JPEG_SCANS) {
            jpeg_err *e = (jpeg_err *)c->err;
            snprintf(e->msg, sizeof e->msg, "more than %d progressive scans", MAX_JPEG_SCANS);
            longjmp(e->jmp, 1);
        }
    }
}

static itscam_status decode_jpeg(const uint8_t *bytes, size_t len, size_t max_pixels, it_image *out) {
    struct jpeg_decompress_struct cinfo;
    struct jpeg_progress_mgr progress;
    jpeg_err err;
    /* volatile: modified between setjmp and longjmp */
    uint8_t *volatile row4 = NULL;
    it_image *volatile img = out;
    memset(&err, 0, sizeof err);
    cinfo.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = jpeg_error_exit;
    err.pub.emit_message = jpeg_emit;
    if (setjmp(err.jmp)) {
        jpeg_destroy_decompress(&cinfo);
        free(row4);
        it_image_free(img);
        return it_err(ITSCAM_ERR_IMAGE, "bad JPEG: %s", err.msg);
    }
    jpeg_create_decompress(&cinfo);
    progress.progress_monitor = jpeg_progress;
    cinfo.progress = &progress;
    /* Bound libjpeg's own buffers (progressive coefficient arrays): beyond this it fails
     * with "backing store not supported" instead of eating memory. */
    size_t cap = (size_t)0x7fffffff;
    cinfo.mem->max_memory_to_use = (long)(max_pixels < (cap >> 4) ? max_pixels * 8 + ((size_t)64 << 20) : cap);
    jpeg_mem_src(&cinfo, bytes, (unsigned long)len);
    jpeg_save_markers(&cinfo, JPEG_APP0 + 1, 0xffff);
    jpeg_read_header(&cinfo, TRUE);
    itscam_status st = check_size("JPEG", cinfo.image_width, cinfo.image_height, max_pixels);
    if (st) {
        jpeg_destroy_decompress(&cinfo);
        return st;
    }
    int orientation = 1;
    for (jpeg_saved_marker_ptr m = cinfo.marker_list; m; m = m->next)
        if (m->marker == JPEG_APP0 + 1 && (orientation = exif_orientation(m->data, m->data_length)) != 1) break;

    /* OpenCV's defaults: islow IDCT, fancy upsampling; colour (and grey) straight to BGR,
     * CMYK read as CMYK and converted below. */
    cinfo.dct_method = JDCT_ISLOW;
    cinfo.do_fancy_upsampling = TRUE;
    int cmyk = cinfo.num_components == 4;
    if (cmyk) {
        cinfo.out_color_space = JCS_CMYK;
        cinfo.out_color_components = 4;
    } else {
        cinfo.out_color_space = JCS_EXT_BGR;
        cinfo.out_color_components = 3;
    }
    jpeg_start_decompress(&cinfo);
    if (cinfo.output_width != cinfo.image_width || cinfo.output_height != cinfo.image_height ||
        cinfo.output_components != (cmyk ? 4 : 3)) {
        snprintf(err.msg, sizeof err.msg, "unexpected output geometry");
        longjmp(err.jmp, 1);
    }
    if (it_image_alloc(img, (int)cinfo.output_width, (int)cinfo.output_height)) {
        jpeg_destroy_decompress(&cinfo);
        return ITSCAM_ERR_NOMEM;
    }
    if (cmyk) {
        row4 = malloc((size_t)cinfo.output_width * 4);
        if (!row4) {
            jpeg_destroy_decompress(&cinfo);
            it_image_free(img);
            return it_err(ITSCAM_ERR_NOMEM, "out of memory decoding a CMYK JPEG");
        }
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        uint8_t *dst = img->data + (size_t)cinfo.output_scanline * img->stride;
        JSAMPROW row = cmyk ? row4 : dst;
        if (jpeg_read_scanlines(&cinfo, &row, 1) != 1) {
            snprintf(err.msg, sizeof err.msg, "no scanline produced at row %u", cinfo.output_scanline);
            longjmp(err.jmp, 1);
        }
        if (cmyk) /* OpenCV's icvCvt_CMYK2BGR_8u_C4C3R */
            for (unsigned x = 0; x < cinfo.output_width; x++) {
                const uint8_t *s = row4 + x * 4;
                int k = s[3];
                dst[x * 3 + 2] = (uint8_t)(k - ((255 - s[0]) * k >> 8));
                dst[x * 3 + 1] = (uint8_t)(k - ((255 - s[1]) * k >> 8));
                dst[x * 3 + 0] = (uint8_t)(k - ((255 - s[2]) * k >> 8));
            }
    }
    /* A truncated stream only warns (premature end; libjpeg pads with grey) and OpenCV keeps
     * the image, so do we; finish_decompress could complain about the missing EOI. */
    jpeg_abort_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    free(row4);
    row4 = NULL;
    if (err.pub.num_warnings) it_log(ITSCAM_LOG_WARN, "JPEG: %s", err.warn);
    return apply_orientation(out, orientation);
}

/* ---------------------------------------------------------------------------------
 * PNG
 * --------------------------------------------------------------------------------- */
typedef struct png_src {
    const uint8_t *p;
    size_t len, pos;
    char msg[256];
} png_src;

static void png_read_fn(png_structp png, png_bytep dst, png_size_t n) {
    png_src *s = png_get_io_ptr(png);
    if (n > s->len - s->pos) png_error(png, "truncated PNG data");
    memcpy(dst, s->p + s->pos, n);
    s->pos += n;
}

static void png_error_fn(png_structp png, png_const_charp msg) {
    png_src *s = png_get_error_ptr(png);
    snprintf(s->msg, sizeof s->msg, "%s", msg);
    png_longjmp(png, 1);
}
static void png_warn_fn(png_structp png, png_const_charp msg) { (void)png; (void)msg; }

static png_voidp png_malloc_fn(png_structp png, png_alloc_size_t n) { (void)png; return it_malloc(n); }
static void png_free_fn(png_structp png, png_voidp p) { (void)png; it_free(p); }

static itscam_status decode_png(const uint8_t *bytes, size_t len, size_t max_pixels, it_image *out) {
    png_src src = {bytes, len, 0, ""};
    png_structp png = png_create_read_struct_2(PNG_LIBPNG_VER_STRING, &src, png_error_fn, png_warn_fn, NULL,
                                               png_malloc_fn, png_free_fn);
    if (!png) return it_err(ITSCAM_ERR_NOMEM, "cannot create a PNG reader");
    png_infop info = png_create_info_struct(png);
    png_bytep *volatile rows = NULL;
    it_image *volatile img = out;
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return it_err(ITSCAM_ERR_NOMEM, "cannot create a PNG reader");
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        it_free(rows);
        it_image_free(img);
        return it_err(ITSCAM_ERR_IMAGE, "bad PNG: %s", src.msg[0] ? src.msg : "decode error");
    }
    png_set_read_fn(png, &src, png_read_fn);
    /* The pixel limit below is ours; drop libpng's 1M-pixel-per-side default cap only
     * through check_size. Chunk cache/malloc limits stay at libpng's defaults. */
    png_read_info(png, info);
    png_uint_32 w, h;
    int depth, ctype, interlace;
    png_get_IHDR(png, info, &w, &h, &depth, &ctype, &interlace, NULL, NULL);
    itscam_status st = check_size("PNG", w, h, max_pixels);
    if (st) {
        png_destroy_read_struct(&png, &info, NULL);
        return st;
    }
    /* The transformation sequence of OpenCV 4.6's PngDecoder::readData for 3-channel 8-bit:
     * 16->8 by truncation, alpha (and tRNS, which palette expansion turns into alpha)
     * dropped without blending, palette and low-bit grey expanded, colour swapped to BGR. */
    if (depth == 16) png_set_strip_16(png);
    png_set_strip_alpha(png);
    if (ctype == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if ((ctype & PNG_COLOR_MASK_COLOR) == 0 && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (ctype & PNG_COLOR_MASK_COLOR) png_set_bgr(png);
    else png_set_gray_to_rgb(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    if (png_get_rowbytes(png, info) != (size_t)w * 3) {
        snprintf(src.msg, sizeof src.msg, "unexpected row size %zu for width %u", (size_t)png_get_rowbytes(png, info),
                 (unsigned)w);
        png_longjmp(png, 1);
    }
    if (it_image_alloc(img, (int)w, (int)h) || !(rows = it_malloc(sizeof *rows * h))) {
        png_destroy_read_struct(&png, &info, NULL);
        it_image_free(img);
        return it_err(ITSCAM_ERR_NOMEM, "cannot allocate a %ux%u PNG image", (unsigned)w, (unsigned)h);
    }
    for (png_uint_32 y = 0; y < h; y++) rows[y] = img->data + (size_t)y * img->stride;
    png_read_image(png, rows);
    /* OpenCV reads the end too; a missing IEND after complete pixel data is an error there. */
    png_read_end(png, NULL);
    png_destroy_read_struct(&png, &info, NULL);
    it_free(rows);
    return ITSCAM_OK;
}

/* The frame header only: libjpeg reads markers up to the first scan, which allocates
 * nothing proportional to the image. */
static itscam_status probe_jpeg(const uint8_t *bytes, size_t len, int *w, int *h, int *channels) {
    struct jpeg_decompress_struct cinfo;
    jpeg_err err;
    memset(&err, 0, sizeof err);
    cinfo.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = jpeg_error_exit;
    err.pub.emit_message = jpeg_emit;
    if (setjmp(err.jmp)) {
        jpeg_destroy_decompress(&cinfo);
        return it_err(ITSCAM_ERR_IMAGE, "bad JPEG: %s", err.msg);
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, bytes, (unsigned long)len);
    jpeg_read_header(&cinfo, TRUE);
    *w = (int)cinfo.image_width;
    *h = (int)cinfo.image_height;
    *channels = cinfo.num_components;
    jpeg_destroy_decompress(&cinfo);
    return ITSCAM_OK;
}

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* IHDR is the first chunk of every valid PNG (libpng refuses anything else), at a fixed
 * offset: 8 signature bytes, length 13, "IHDR", width, height, depth, colour type. */
static itscam_status probe_png(const uint8_t *b, size_t len, int *w, int *h, int *channels) {
    if (len < 8 + 8 + 13 || be32(b + 8) != 13 || memcmp(b + 12, "IHDR", 4) != 0)
        return it_err(ITSCAM_ERR_IMAGE, "bad PNG: no IHDR chunk first");
    uint32_t pw = be32(b + 16), ph = be32(b + 20);
    if (pw == 0 || ph == 0 || pw > 0x7fffffffu || ph > 0x7fffffffu)
        return it_err(ITSCAM_ERR_IMAGE, "bad PNG: image size %ux%u", (unsigned)pw, (unsigned)ph);
    static const int chans[7] = { 1, 0, 3, 1, 2, 0, 4 }; /* by colour type; palette counts 1 */
    int ct = b[25];
    if (ct > 6 || !chans[ct]) return it_err(ITSCAM_ERR_IMAGE, "bad PNG: colour type %d", ct);
    *w = (int)pw;
    *h = (int)ph;
    *channels = chans[ct];
    return ITSCAM_OK;
}

itscam_status it_image_probe(const void *bytes, size_t len, int *w, int *h, int *channels) {
    int cw = 0, ch = 0, cc = 0;
    if (!w || !h) return it_err(ITSCAM_ERR_INVALID_ARG, "it_image_probe: NULL output");
    *w = *h = 0;
    if (channels) *channels = 0;
    if (!bytes || len == 0) return it_err(ITSCAM_ERR_IMAGE, "empty image data");
    const uint8_t *b = bytes;
    itscam_status st;
    if (len >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF) st = probe_jpeg(b, len, &cw, &ch, &cc);
    else if (len >= 8 && png_sig_cmp(b, 0, 8) == 0) st = probe_png(b, len, &cw, &ch, &cc);
    else return it_err(ITSCAM_ERR_IMAGE, "not a JPEG or PNG image");
    if (st) return st;
    *w = cw;
    *h = ch;
    if (channels) *channels = cc;
    return ITSCAM_OK;
}

itscam_status it_image_decode(const void *bytes, size_t len, size_t max_pixels, it_image *out) {
    if (!out) return it_err(ITSCAM_ERR_INVALID_ARG, "it_image_decode: NULL output");
    memset(out, 0, sizeof *out);
    if (!bytes || len == 0) return it_err(ITSCAM_ERR_IMAGE, "empty image data");
    const uint8_t *b = bytes;
    if (len >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF) return decode_jpeg(b, len, max_pixels, out);
    if (len >= 8 && png_sig_cmp(b, 0, 8) == 0) return decode_png(b, len, max_pixels, out);
    return it_err(ITSCAM_ERR_IMAGE, "not a JPEG or PNG image");
}

/* ---------------------------------------------------------------------------------
 * JPEG encoding
 * --------------------------------------------------------------------------------- */
itscam_status it_image_encode_jpeg(const it_image *img, int quality, uint8_t **out, size_t *len) {
    if (!img || !img->data || img->width <= 0 || img->height <= 0 || !out || !len)
        return it_err(ITSCAM_ERR_INVALID_ARG, "it_image_encode_jpeg: bad arguments");
    *out = NULL;
    *len = 0;
    struct jpeg_compress_struct cinfo;
    jpeg_err err;
    /* jpeg_mem_dest keeps &m and updates it as the buffer grows; it is read after longjmp
     * only through that escaped address. */
    unsigned char *m = NULL;
    unsigned long mem_len = 0;
    memset(&err, 0, sizeof err);
    cinfo.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = jpeg_error_exit;
    err.pub.emit_message = jpeg_emit;
    if (setjmp(err.jmp)) {
        jpeg_destroy_compress(&cinfo);
        free(*(unsigned char *volatile *)&m); /* jpeg_mem_dest's buffer comes from malloc */
        return it_err(ITSCAM_ERR_IMAGE, "JPEG encoding failed: %s", err.msg);
    }
    jpeg_create_compress(&cinfo);
    jpeg_mem_dest(&cinfo, &m, &mem_len);
    cinfo.image_width = (JDIMENSION)img->width;
    cinfo.image_height = (JDIMENSION)img->height;
    cinfo.input_components = 3;
    cinfo.in_color_space = JCS_EXT_BGR;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality < 1 ? 1 : quality > 100 ? 100 : quality, TRUE);
    jpeg_start_compress(&cinfo, TRUE);
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = img->data + (size_t)cinfo.next_scanline * img->stride;
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    unsigned char *mem = m;
    jpeg_destroy_compress(&cinfo);
    /* Hand back memory from it_malloc so that callers free everything the same way. */
    uint8_t *copy = it_malloc(mem_len);
    if (!copy) {
        free(mem);
        return it_err(ITSCAM_ERR_NOMEM, "out of memory copying a %lu-byte JPEG", mem_len);
    }
    memcpy(copy, mem, mem_len);
    free(mem);
    *out = copy;
    *len = mem_len;
    return ITSCAM_OK;
}
