/* itscam detect: run the detector over images and directories, print JSON in the layout
 * of the ONNX Runtime references, and optionally save annotated JPEGs. */
#include "cli/cli.h"
#include "core/core.h"
#include "vision/draw.h"
#include "vision/image.h"

#include <dirent.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_IMAGE_FILE ((size_t)256 << 20)
#define MAX_CLASS_FILTER 1024

void cli_detect_usage(FILE *f) {
    fprintf(f,
            "usage: itscam detect --model MODEL [options] IMAGE|DIR...\n\n"
            "Detect objects in JPEG/PNG images (directories are searched for *.jpg, *.jpeg,\n"
            "*.png) and print {\"results\":[{\"image\",\"width\",\"height\",\"detections\":[...]}]}.\n\n"
            "options:\n"
            "  --model M        ONNX model (Ultralytics YOLOv8/YOLO11 export)\n"
            "  --backend B      backend: ref, cpu or cuda (default: the fastest compiled in; cuda\n"
            "                   without a usable GPU runs on cpu unless --no-fallback)\n"
            "  --no-fallback    with cuda: fail instead of running on the CPU\n"
            "  --threads N      threads for the backend (default: physical cores)\n"
            "  --precision P    fp32 (default), fp16 (cuda), bf16, int8 or auto (the fastest this CPU runs\n"
            "                   within the accuracy budget; the choice is printed to stderr)\n"
            "  --calib FILE     int8 activation ranges from 'itscam calibrate'\n"
            "  --conf X         confidence threshold (0.25)\n"
            "  --iou X          NMS IoU threshold (0.7)\n"
            "  --max-det N      at most N boxes per image (" CLI_STR(ITSCAM_MAX_DET_DEFAULT) ", at most " CLI_STR(ITSCAM_MAX_DET_LIMIT) ")\n"
            "  --classes LIST   keep only these class ids, e.g. 0,2,5\n"
            "  --agnostic       class-agnostic NMS\n"
            "  --save DIR       write annotated JPEGs to DIR\n"
            "  --output FILE    write the JSON to FILE instead of stdout\n");
}

static double round_to(double x, double scale) { return round(x * scale) / scale; }

static json_t *result_json(const char *path, const itscam_result *r) {
    const char *base = strrchr(path, '/');
    json_t *o = json_object();
    json_object_set_new(o, "image", json_string(base ? base + 1 : path));
    json_object_set_new(o, "width", json_integer(r->width));
    json_object_set_new(o, "height", json_integer(r->height));
    json_t *arr = json_array();
    for (int i = 0; i < r->count; i++) {
        const itscam_detection *d = &r->dets[i];
        json_t *dj = json_object();
        json_object_set_new(dj, "class_id", json_integer(d->class_id));
        json_object_set_new(dj, "class", json_string(d->class_name ? d->class_name : ""));
        json_object_set_new(dj, "score", json_real(round_to(d->score, 1e6)));
        json_t *box = json_array();
        for (int k = 0; k < 4; k++) json_array_append_new(box, json_real(round_to(d->box[k], 1e3)));
        json_object_set_new(dj, "box", box);
        json_array_append_new(arr, dj);
    }
    json_object_set_new(o, "detections", arr);
    return o;
}

/* Draw r onto img (the frame it was detected on) and write it as DIR/<stem>.jpg. */
static int save_annotated(const char *dir, const char *path, it_image *img, const itscam_result *r) {
    it_draw_detections(img, r->dets, NULL, r->count, NULL, 0);
    uint8_t *jpg = NULL;
    size_t jlen = 0;
    itscam_status st = it_image_encode_jpeg(img, 90, &jpg, &jlen);
    if (st != ITSCAM_OK) return cli_fail(path, st);
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    char out[4096];
    const char *dot = strrchr(base, '.');
    int stem = dot ? (int)(dot - base) : (int)strlen(base);
    snprintf(out, sizeof out, "%s/%.*s.jpg", dir, stem, base);
    FILE *f = fopen(out, "wb");
    int rc = 0;
    if (!f || fwrite(jpg, 1, jlen, f) != jlen) {
        fprintf(stderr, "itscam: %s: cannot write\n", out);
        rc = 1;
    }
    if (f) fclose(f);
    it_free(jpg);
    return rc;
}

/* Detect on one encoded file; with --save the image is decoded here once, so that the
 * detector and the drawing share the same pixels. */
static itscam_status detect_file(itscam_detector *det, const uint8_t *bytes, size_t len, int keep,
                                 it_image *img, itscam_result *r) {
    memset(img, 0, sizeof *img);
    if (!keep) return itscam_detect_encoded(det, bytes, len, r);
    double t0 = it_now_ms();
    itscam_status st = it_image_decode(bytes, len, (size_t)1 << 28, img);
    if (st != ITSCAM_OK) return st;
    double t1 = it_now_ms();
    itscam_image im = { .data = img->data, .width = img->width, .height = img->height, .stride = img->stride,
                        .format = ITSCAM_PIX_BGR8 };
    st = itscam_detect_image(det, &im, r);
    if (st == ITSCAM_OK) r->ms_decode = t1 - t0;
    return st;
}

static int parse_classes(const char *s, int *out, int max) {
    int n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v > 100000 || n >= max) return -1;
        out[n++] = (int)v;
        p = end;
        if (*p == ',') p++;
        else if (*p) return -1;
    }
    return n;
}

int cli_detect(int argc, char **argv) {
    static const struct option opts[] = {
        { "model", required_argument, 0, 'm' }, { "backend", required_argument, 0, 'b' },
        { "threads", required_argument, 0, 't' }, { "conf", required_argument, 0, 'c' },
        { "iou", required_argument, 0, 'i' }, { "max-det", required_argument, 0, 'x' },
        { "classes", required_argument, 0, 'k' }, { "agnostic", no_argument, 0, 'a' },
        { "save", required_argument, 0, 's' }, { "output", required_argument, 0, 'o' },
        { "precision", required_argument, 0, 'P' }, { "calib", required_argument, 0, 'C' },
        { "no-fallback", no_argument, 0, 'F' },
        { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 },
    };
    itscam_detector_params p = itscam_detector_default_params();
    const char *model = NULL, *save_dir = NULL, *output = NULL;
    static int classes[MAX_CLASS_FILTER];
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:b:t:c:i:x:k:as:o:P:C:Fh", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'b': p.backend = optarg; break;
        case 't': if (cli_parse_int(optarg, &p.threads) || p.threads < 0) goto bad; break;
        case 'P': if (cli_parse_precision(optarg)) goto bad; p.precision = optarg; break;
        case 'C': p.calib_path = optarg; break;
        case 'F': p.no_fallback = 1; break;
        case 'c': if (cli_parse_float(optarg, &p.conf) || !(p.conf >= 0 && p.conf <= 1)) goto bad; break;
        case 'i': if (cli_parse_float(optarg, &p.iou) || !(p.iou >= 0 && p.iou <= 1)) goto bad; break;
        case 'x': if (cli_parse_int(optarg, &p.max_det) || p.max_det <= 0 || p.max_det > ITSCAM_MAX_DET_LIMIT) goto bad; break;
        case 'k': {
            int n = parse_classes(optarg, classes, MAX_CLASS_FILTER);
            if (n <= 0) goto bad;
            p.classes = classes;
            p.num_classes_filter = n;
            break;
        }
        case 'a': p.agnostic_nms = 1; break;
        case 's': save_dir = optarg; break;
        case 'o': output = optarg; break;
        case 'h': cli_detect_usage(stdout); return 0;
        default: cli_detect_usage(stderr); return 2;
        }
    }
    if (!model) {
        fprintf(stderr, "itscam detect: --model is required\n");
        return 2;
    }
    if (optind >= argc) {
        fprintf(stderr, "itscam detect: no images given\n");
        return 2;
    }
    if (save_dir) mkdir(save_dir, 0755);
    cli_paths files = { 0 };
    int rc = 0;
    for (int i = optind; i < argc; i++)
        if (cli_collect_images(&files, argv[i])) rc = 1;
    itscam_detector *det = NULL;
    itscam_model *m = NULL;
    itscam_status st = ITSCAM_OK;
    if ((rc = cli_open_detector("detect", model, &p, &m, &det)) != 0) goto out;
    json_t *root = json_object(), *results = json_array();
    json_object_set_new(root, "results", results);
    for (int i = 0; i < files.n; i++) {
        uint8_t *bytes;
        size_t len;
        st = it_read_file(files.v[i], &bytes, &len, MAX_IMAGE_FILE);
        if (st != ITSCAM_OK) {
            rc = cli_fail(files.v[i], st);
            continue;
        }
        itscam_result r = { 0 };
        it_image img;
        st = detect_file(det, bytes, len, save_dir != NULL, &img, &r);
        it_free(bytes);
        if (st != ITSCAM_OK) {
            rc = cli_fail(files.v[i], st);
        } else {
            json_array_append_new(results, result_json(files.v[i], &r));
            if (save_dir && save_annotated(save_dir, files.v[i], &img, &r)) rc = 1;
        }
        it_image_free(&img);
        itscam_result_clear(&r);
    }
    FILE *f = output ? fopen(output, "w") : stdout;
    if (!f) {
        fprintf(stderr, "itscam detect: %s: cannot write\n", output);
        rc = 1;
    } else {
        json_dumpf(root, f, JSON_REAL_PRECISION(10));
        fputc('\n', f);
        if (output) fclose(f);
    }
    json_decref(root);
out:
    itscam_detector_free(det);
    itscam_model_free(m);
    cli_paths_free(&files);
    return rc;
bad:
    fprintf(stderr, "itscam detect: bad value for --%s: '%s'\n", argv[optind - 1] + 2, optarg);
    return 2;
}
