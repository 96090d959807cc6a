/* itscam eval: run the detector over a labelled image folder and report box mAP50 and
 * mAP50-95 the way Ultralytics' validator (and the shared yolo_map.py) computes them. */
#include "cli/cli.h"
#include "core/core.h"
#include "detect/metrics.h"

#include <dirent.h>
#include <getopt.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_IMAGE_FILE ((size_t)256 << 20)

void cli_eval_usage(FILE *f) {
    fprintf(f,
            "usage: itscam eval --model MODEL --images DIR --labels DIR [options]\n\n"
            "Detect on every JPEG/PNG in DIR (sorted by name) and score the boxes against\n"
            "YOLO-format labels (LABELS/<stem>.txt: 'class cx cy w h', normalised; a missing\n"
            "or empty file means no objects): mAP50 and mAP50-95 as Ultralytics' validator.\n\n"
            "options:\n"
            "  --model M        ONNX model (Ultralytics YOLOv8/YOLO11 export)\n"
            "  --images DIR     images to evaluate\n"
            "  --labels DIR     YOLO label files\n"
            "  --backend B      backend: ref or cpu (default: the fastest compiled in)\n"
            "  --threads N      threads for the backend (default: physical cores)\n"
            "  --precision P    fp32 (default), bf16, int8 or auto (the fastest this CPU runs\n"
            "                   within the accuracy budget; the choice is printed to stderr)\n"
            "  --calib FILE     int8 activation ranges from 'itscam calibrate'\n"
            "  --conf X         confidence threshold (0.001, as Ultralytics val)\n"
            "  --iou X          NMS IoU threshold (0.7)\n"
            "  --max-det N      at most N boxes per image (" CLI_STR(ITSCAM_MAX_DET_DEFAULT) ", at most " CLI_STR(ITSCAM_MAX_DET_LIMIT) ")\n"
            "  --json           print the metrics as JSON\n"
            "  --verbose        also print AP50 and AP50-95 per class\n");
}

static const char *class_name(const itscam_model_info *info, int c) {
    if (info && info->class_names && c >= 0 && c < info->num_classes && info->class_names[c])
        return info->class_names[c];
    return "";
}

static void print_json(const it_map_result *r, const itscam_model_info *info, double ms_per_image, int verbose) {
    json_t *o = json_object();
    json_object_set_new(o, "mAP50", json_real(r->map50));
    json_object_set_new(o, "mAP50-95", json_real(r->map50_95));
    json_object_set_new(o, "precision", json_real(r->precision));
    json_object_set_new(o, "recall", json_real(r->recall));
    json_object_set_new(o, "images", json_integer(r->images));
    json_object_set_new(o, "labels", json_integer(r->labels));
    json_object_set_new(o, "predictions", json_integer(r->preds));
    json_object_set_new(o, "classes", json_integer(r->classes));
    json_object_set_new(o, "ms_per_image", json_real(ms_per_image));
    if (verbose) {
        json_t *arr = json_array();
        for (int i = 0; i < r->classes; i++) {
            const it_map_class *c = &r->per_class[i];
            json_t *cj = json_object();
            json_object_set_new(cj, "class_id", json_integer(c->class_id));
            json_object_set_new(cj, "class", json_string(class_name(info, c->class_id)));
            json_object_set_new(cj, "labels", json_integer(c->labels));
            json_object_set_new(cj, "predictions", json_integer(c->preds));
            json_object_set_new(cj, "precision", json_real(c->precision));
            json_object_set_new(cj, "recall", json_real(c->recall));
            json_object_set_new(cj, "ap50", json_real(c->ap50));
            json_object_set_new(cj, "ap50_95", json_real(c->ap50_95));
            json_array_append_new(arr, cj);
        }
        json_object_set_new(o, "per_class", arr);
    }
    json_dumpf(o, stdout, 0);
    fputc('\n', stdout);
    json_decref(o);
}

static void print_table(const it_map_result *r, const itscam_model_info *info, double ms_per_image,
                        const double ms[4], int verbose) {
    printf("%-20s %7s %8s %7s %7s %8s %9s\n", "class", "images", "labels", "P", "R", "mAP50", "mAP50-95");
    printf("%-20s %7lld %8lld %7.3f %7.3f %8.4f %9.4f\n", "all", (long long)r->images, (long long)r->labels,
           r->precision, r->recall, r->map50, r->map50_95);
    if (verbose)
        for (int i = 0; i < r->classes; i++) {
            const it_map_class *c = &r->per_class[i];
            const char *name = class_name(info, c->class_id);
            char id[16];
            snprintf(id, sizeof id, "%d", c->class_id);
            printf("%-20s %7s %8lld %7.3f %7.3f %8.4f %9.4f\n", name[0] ? name : id, "", (long long)c->labels,
                   c->precision, c->recall, c->ap50, c->ap50_95);
        }
    printf("%d classes with labels, %lld predictions; P and R at the best-F1 confidence %.3f\n", r->classes,
           (long long)r->preds, r->best_conf);
    printf("time per image: %.2f ms (decode %.2f, preprocess %.2f, inference %.2f, postprocess %.2f)\n",
           ms_per_image, ms[0], ms[1], ms[2], ms[3]);
}

int cli_eval(int argc, char **argv) {
    static const struct option opts[] = {
        { "model", required_argument, 0, 'm' }, { "images", required_argument, 0, 'I' },
        { "labels", required_argument, 0, 'L' }, { "backend", required_argument, 0, 'b' },
        { "threads", required_argument, 0, 't' }, { "conf", required_argument, 0, 'c' },
        { "iou", required_argument, 0, 'i' }, { "max-det", required_argument, 0, 'x' },
        { "json", no_argument, 0, 'j' }, { "verbose", no_argument, 0, 'v' },
        { "precision", required_argument, 0, 'P' }, { "calib", required_argument, 0, 'C' },
        { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 },
    };
    itscam_detector_params p = itscam_detector_default_params();
    /* Ultralytics' validator defaults, not detect's: a low threshold so that the
     * precision-recall curve reaches far. */
    p.conf = 0.001f;
    p.iou = 0.7f;
    p.max_det = ITSCAM_MAX_DET_DEFAULT;
    const char *model = NULL, *images = NULL, *labels = NULL;
    int as_json = 0, verbose = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:I:L:b:t:c:i:x:jvP:C:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'I': images = optarg; break;
        case 'L': labels = optarg; break;
        case 'b': p.backend = optarg; break;
        case 't': if (cli_parse_int(optarg, &p.threads) || p.threads < 0) goto bad; break;
        case 'P': if (cli_parse_precision(optarg)) goto bad; p.precision = optarg; break;
        case 'C': p.calib_path = optarg; break;
        case 'c': if (cli_parse_float(optarg, &p.conf) || !(p.conf >= 0 && p.conf <= 1)) goto bad; break;
        case 'i': if (cli_parse_float(optarg, &p.iou) || !(p.iou >= 0 && p.iou <= 1)) goto bad; break;
        case 'x': if (cli_parse_int(optarg, &p.max_det) || p.max_det <= 0 || p.max_det > ITSCAM_MAX_DET_LIMIT) goto bad; break;
        case 'j': as_json = 1; break;
        case 'v': verbose = 1; break;
        case 'h': cli_eval_usage(stdout); return 0;
        default: cli_eval_usage(stderr); return 2;
        }
    }
    if (!model || !images || !labels) {
        fprintf(stderr, "itscam eval: --model, --images and --labels are required\n");
        return 2;
    }
    if (optind < argc) {
        fprintf(stderr, "itscam eval: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    struct stat lst;
    if (stat(labels, &lst) != 0 || !S_ISDIR(lst.st_mode)) {
        fprintf(stderr, "itscam eval: %s: no such directory\n", labels);
        return 1;
    }
    struct stat ist;
    if (stat(images, &ist) != 0 || !S_ISDIR(ist.st_mode)) {
        fprintf(stderr, "itscam eval: %s: no such directory\n", images);
        return 1;
    }
    cli_paths list = { 0 };
    if (cli_collect_images(&list, images)) {
        cli_paths_free(&list);
        return 1;
    }
    int nfiles = list.n;
    if (nfiles == 0) fprintf(stderr, "itscam eval: %s: no JPEG or PNG images\n", images);

    int rc = 0;
    itscam_detector *det = NULL;
    it_map_acc acc;
    it_map_acc_init(&acc);
    it_map_result res = { 0 };
    it_map_pred *preds = NULL;
    int preds_cap = 0;
    double ms[4] = { 0 }, t0 = it_now_ms(), ms_per_image = 0;
    itscam_model *m = NULL;
    itscam_status st = ITSCAM_OK;
    if ((rc = cli_open_detector("eval", model, &p, &m, &det)) != 0) goto out;
    int done = 0;
    for (int i = 0; i < nfiles && !rc; i++) {
        const char *path = list.v[i];
        uint8_t *bytes;
        size_t len;
        st = it_read_file(path, &bytes, &len, MAX_IMAGE_FILE);
        if (st != ITSCAM_OK) {
            rc = cli_fail(path, st);
            break;
        }
        itscam_result r = { 0 };
        st = itscam_detect_encoded(det, bytes, len, &r);
        it_free(bytes);
        if (st != ITSCAM_OK) {
            /* Dropping an image would silently change the score: stop instead. */
            rc = cli_fail(path, st);
            break;
        }
        ms[0] += r.ms_decode;
        ms[1] += r.ms_preprocess;
        ms[2] += r.ms_inference;
        ms[3] += r.ms_postprocess;
        if (r.count > preds_cap) {
            int nc = r.count * 2;
            it_map_pred *np_ = realloc(preds, sizeof *np_ * (size_t)nc);
            if (!np_) {
                fprintf(stderr, "itscam eval: out of memory\n");
                rc = 1;
                itscam_result_clear(&r);
                break;
            }
            preds = np_;
            preds_cap = nc;
        }
        for (int k = 0; k < r.count; k++) {
            const itscam_detection *d = &r.dets[k];
            preds[k] = (it_map_pred){ d->class_id, d->score, { d->box[0], d->box[1], d->box[2], d->box[3] } };
        }
        /* LABELS/<stem>.txt, the stem cut at the last dot as os.path.splitext does. */
        const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
        const char *dot = strrchr(base, '.');
        char lpath[8192];
        snprintf(lpath, sizeof lpath, "%s/%.*s.txt", labels, (int)(dot - base), base);
        it_map_label *lab = NULL;
        int nlab = 0;
        st = it_map_read_labels(lpath, r.width, r.height, &lab, &nlab);
        if (st == ITSCAM_OK) st = it_map_acc_add(&acc, preds, r.count, lab, nlab);
        if (st != ITSCAM_OK) rc = cli_fail(lpath, st);
        it_free(lab);
        itscam_result_clear(&r);
        done++;
    }
    if (rc) goto out;
    ms_per_image = done ? (it_now_ms() - t0) / done : 0;
    for (int k = 0; k < 4; k++) ms[k] = done ? ms[k] / done : 0;
    st = it_map_acc_compute(&acc, &res);
    if (st != ITSCAM_OK) {
        rc = cli_fail("mAP", st);
        goto out;
    }
    const itscam_model_info *info = itscam_detector_info(det);
    if (as_json) print_json(&res, info, ms_per_image, verbose);
    else print_table(&res, info, ms_per_image, ms, verbose);
out:
    it_map_result_free(&res);
    it_map_acc_free(&acc);
    free(preds);
    itscam_detector_free(det);
    itscam_model_free(m);
    cli_paths_free(&list);
    return rc;
bad:
    fprintf(stderr, "itscam eval: bad value for --%s: '%s'\n", argv[optind - 1] + 2, optarg);
    return 2;
}
