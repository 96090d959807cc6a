/* itscam calibrate: measure activation ranges on sample images for int8 inference and
 * write them as a calibration table (JSON) that --calib reads. */
#include "cli/cli.h"
#include "core/core.h"
#include "backend/backend.h"
#include "runtime/calibrate.h"
#include "runtime/model.h"
#include "vision/image.h"
#include "vision/letterbox.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#define MAX_IMAGE_FILE ((size_t)256 << 20)
#define MAX_PIXELS ((size_t)100 * 1000 * 1000) /* the detector's limit */
#define DEFAULT_PERCENTILE 99.99

void cli_calibrate_usage(FILE *f) {
    fprintf(f,
            "usage: itscam calibrate --model MODEL --images DIR [options]\n\n"
            "Run the model on sample images (letterboxed exactly as detect does) and record\n"
            "the range of every float activation. The table is what int8 inference needs:\n"
            "pass it with --precision int8 --calib FILE. Use images like the ones the cameras\n"
            "will see. The cpu backend (fp32) runs the whole model once per image with every\n"
            "activation kept alive (yolo11n at 640: about 0.15 s per image on 2 cores, 281\n"
            "MiB held); the ref kernels run one node at a time (about 0.4 s per image).\n\n"
            "options:\n"
            "  --model M        ONNX model (Ultralytics YOLOv8/YOLO11 export)\n"
            "  --images DIR     JPEG/PNG images; the first N sorted by name are used\n"
            "  --count N        images to use (default 64)\n"
            "  --method M       percentile (default) or minmax\n"
            "                   percentile: each range is the [0.01%%, 99.99%%] percentiles of\n"
            "                   the values seen. A few outliers would otherwise stretch the\n"
            "                   range and waste int8 resolution on values that almost never\n"
            "                   occur; clipping them costs far less accuracy than a coarse step.\n"
            "                   minmax: the extremes seen, nothing clipped.\n"
            "  --percentile P   the upper percentile for --method percentile (default 99.99)\n"
            "  --backend B      cpu (default: oneDNN, fp32, one thread per physical core) or\n"
            "                   ref (the reference kernels, one node at a time, least memory).\n"
            "                   Where cpu is not compiled in, cannot run here or would need\n"
            "                   more than 2 GiB, ref is used and a line says why. Both give\n"
            "                   the same table up to fp32 rounding.\n"
            "  --threads N      cpu backend threads (default: physical cores)\n"
            "  --out FILE       where to write the table (default MODEL_STEM.calib.json)\n");
}

/* Decode and letterbox one image into dst (3*h*w floats), as the detector does. */
static itscam_status load_letterboxed(const char *path, int h, int w, float *dst, uint8_t **scratch, size_t *scratch_len) {
    uint8_t *bytes;
    size_t len;
    itscam_status st = it_read_file(path, &bytes, &len, MAX_IMAGE_FILE);
    if (st != ITSCAM_OK) return st;
    it_image img;
    st = it_image_decode(bytes, len, MAX_PIXELS, &img);
    it_free(bytes);
    if (st != ITSCAM_OK) return st;
    size_t need = it_letterbox_scratch_bytes(img.width, img.height, w, h);
    if (need > *scratch_len) {
        uint8_t *ns = it_realloc(*scratch, need);
        if (!ns) {
            it_image_free(&img);
            return ITSCAM_ERR_NOMEM;
        }
        *scratch = ns;
        *scratch_len = need;
    }
    it_letterbox lb;
    st = it_letterbox_to_tensor(img.data, img.width, img.height, img.stride, 0, w, h, dst, *scratch, *scratch_len, &lb);
    it_image_free(&img);
    return st;
}

int cli_calibrate(int argc, char **argv) {
    static const struct option opts[] = {
        { "model", required_argument, 0, 'm' }, { "images", required_argument, 0, 'I' },
        { "count", required_argument, 0, 'n' }, { "method", required_argument, 0, 'M' },
        { "percentile", required_argument, 0, 'p' }, { "out", required_argument, 0, 'o' },
        { "backend", required_argument, 0, 'b' }, { "threads", required_argument, 0, 't' },
        { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 },
    };
    const char *model = NULL, *images = NULL, *out = NULL, *backend = "cpu";
    int count = 64, threads = 0, c;
    it_calib_method method = IT_CALIB_PERCENTILE;
    float percentile = (float)DEFAULT_PERCENTILE;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:I:n:M:p:o:b:t:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'I': images = optarg; break;
        case 'n': if (cli_parse_int(optarg, &count) || count < 1 || count > 100000) goto bad; break;
        case 'M':
            if (!strcmp(optarg, "percentile")) method = IT_CALIB_PERCENTILE;
            else if (!strcmp(optarg, "minmax")) method = IT_CALIB_MINMAX;
            else goto bad;
            break;
        case 'p': if (cli_parse_float(optarg, &percentile) || !(percentile > 50 && percentile <= 100)) goto bad; break;
        case 'o': out = optarg; break;
        case 'b':
            if (strcmp(optarg, "cpu") && strcmp(optarg, "ref")) goto bad;
            backend = optarg;
            break;
        case 't': if (cli_parse_int(optarg, &threads) || threads < 1 || threads > 1024) goto bad; break;
        case 'h': cli_calibrate_usage(stdout); return 0;
        default: cli_calibrate_usage(stderr); return 2;
        }
    }
    if (!model || !images) {
        fprintf(stderr, "itscam calibrate: --model and --images are required\n");
        return 2;
    }
    if (optind < argc) {
        fprintf(stderr, "itscam calibrate: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    char out_buf[4096];
    if (!out) { /* MODEL_STEM.calib.json in the current directory */
        const char *base = strrchr(model, '/') ? strrchr(model, '/') + 1 : model;
        const char *dot = strrchr(base, '.');
        snprintf(out_buf, sizeof out_buf, "%.*s.calib.json", dot ? (int)(dot - base) : (int)strlen(base), base);
        out = out_buf;
    }
    cli_paths list = { 0 };
    if (cli_collect_images(&list, images)) {
        cli_paths_free(&list);
        return 1;
    }
    if (list.n == 0) {
        fprintf(stderr, "itscam calibrate: %s: no JPEG or PNG images\n", images);
        cli_paths_free(&list);
        return 1;
    }
    int n = IT_MIN(count, list.n);
    int rc = 0;
    itscam_model *m = NULL;
    it_calib_collector *col = NULL;
    it_calib *table = NULL;
    float *input = NULL;
    uint8_t *scratch = NULL;
    size_t scratch_len = 0;
    itscam_status st = itscam_model_load(model, &m);
    if (st != ITSCAM_OK) { rc = cli_fail(model, st); goto done; }
    const itscam_model_info *info = itscam_model_get_info(m);
    /* the detector's input size */
    int h = info->input_dims[2] > 0 ? (int)info->input_dims[2] : info->imgsz[0];
    int w = info->input_dims[3] > 0 ? (int)info->input_dims[3] : info->imgsz[1];
    if (strcmp(backend, "ref")) {
        /* the fast path when it can run; the ref kernels otherwise, saying why */
        const it_backend *be = it_backend_find(backend);
        char why[256] = "";
        if (!be)
            fprintf(stderr, "itscam calibrate: the %s backend is not compiled in; using the ref kernels\n", backend);
        else if (!it_backend_usable(be, why, sizeof why))
            fprintf(stderr, "itscam calibrate: the %s backend cannot run here (%s); using the ref kernels\n", backend, why);
        else {
            it_calib_exec ex = { .backend = be, .threads = threads };
            st = it_calib_collect_begin_with(m->g, h, w, method, percentile, &ex, &col);
            if (st == ITSCAM_ERR_NOMEM || st == ITSCAM_ERR_BACKEND || st == ITSCAM_ERR_UNSUPPORTED ||
                st == ITSCAM_ERR_INTERNAL) {
                fprintf(stderr, "itscam calibrate: %s; using the ref kernels\n", itscam_last_error());
                col = NULL;
            } else if (st != ITSCAM_OK) {
                rc = cli_fail(model, st);
                goto done;
            }
        }
    }
    if (!col && (st = it_calib_collect_begin(m->g, h, w, method, percentile, &col)) != ITSCAM_OK) { rc = cli_fail(model, st); goto done; }
    if (!(input = it_malloc(sizeof(float) * 3 * (size_t)h * (size_t)w))) { rc = cli_fail("calibrate", ITSCAM_ERR_NOMEM); goto done; }
    char on[128];
    if (strcmp(it_calib_collect_backend(col), "ref"))
        snprintf(on, sizeof on, "the %s backend (fp32, %.0f MiB held)", it_calib_collect_backend(col),
                 (double)it_calib_collect_memory(col) / (1024.0 * 1024.0));
    else
        snprintf(on, sizeof on, "the ref kernels");
    if (method == IT_CALIB_PERCENTILE)
        fprintf(stderr, "itscam calibrate: %d images at %dx%d on %s, method percentile (%g)\n", n, w, h, on, percentile);
    else
        fprintf(stderr, "itscam calibrate: %d images at %dx%d on %s, method minmax\n", n, w, h, on);
    double t0 = it_now_ms();
    for (int i = 0; i < n; i++) {
        if ((st = load_letterboxed(list.v[i], h, w, input, &scratch, &scratch_len)) != ITSCAM_OK ||
            (st = it_calib_collect_add(col, input)) != ITSCAM_OK) {
            rc = cli_fail(list.v[i], st);
            goto done;
        }
        if ((i + 1) % 16 == 0 || i + 1 == n)
            fprintf(stderr, "itscam calibrate: %d/%d images (%.1f s)\n", i + 1, n, (it_now_ms() - t0) / 1000);
    }
    const char *model_base = strrchr(model, '/') ? strrchr(model, '/') + 1 : model;
    if ((st = it_calib_collect_end(col, model_base, &table)) != ITSCAM_OK) { rc = cli_fail("calibrate", st); goto done; }
    if ((st = it_calib_save(table, out, n)) != ITSCAM_OK) { rc = cli_fail(out, st); goto done; }
    fprintf(stderr, "itscam calibrate: wrote %d ranges to %s\n", table->n, out);
done:
    it_calib_free(table);
    it_calib_collect_free(col);
    it_free(input);
    it_free(scratch);
    itscam_model_free(m);
    cli_paths_free(&list);
    return rc;
bad:
    fprintf(stderr, "itscam calibrate: bad value for --%s: '%s'\n", argv[optind - 1] + 2, optarg);
    return 2;
}
