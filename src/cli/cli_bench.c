/* itscam bench: time the engine on one model, either the session alone on synthetic (or
 * --input) tensors or the whole pipeline on real JPEGs (--images), reporting latency
 * percentiles, throughput, a per-stage breakdown, peak memory and the kernels in use. */
#include "cli/cli.h"
#include "core/core.h"
#include "vision/image.h"

#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CONFIGS 16
#define MAX_ITERS 100000
#define MAX_BENCH_IMAGES 256               /* files kept in memory for --images */
#define MAX_IMAGE_FILE ((size_t)256 << 20)
#define MAX_PIXELS ((size_t)100 * 1000 * 1000)

void cli_bench_usage(FILE *f) {
    fprintf(f,
            "usage: itscam bench --model MODEL [options]\n\n"
            "Time inference per batch size: latency p50/p90/p95/p99, throughput, a per-stage\n"
            "breakdown, peak RSS and the kernels/ISA in use. Without --images the session alone\n"
            "runs on synthetic input (or --input, a raw float32 NCHW file) and every stage but\n"
            "inference is 0. With --images the whole pipeline runs per iteration on the files\n"
            "(read into memory first, then cycled): JPEG decode, letterbox, inference, NMS.\n"
            "Stages are mean ms per iteration (one batch).\n\n"
            "options:\n"
            "  --model M          ONNX model\n"
            "  --backend B        ref, cpu or cuda (default: the fastest compiled in; cuda\n"
            "                     without a usable GPU runs on cpu unless --no-fallback)\n"
            "  --no-fallback      with cuda: fail instead of running on the CPU\n"
            "  --precision P      fp32 (default), fp16 (cuda), bf16, int8 or auto\n"
            "  --calib FILE       int8 activation ranges from 'itscam calibrate'\n"
            "  --batch LIST       batch sizes, e.g. 1,4,8 (default 1; >1 needs a dynamic-batch\n"
            "                     model without --images)\n"
            "  --threads N        backend threads (default: physical cores; 0: backend default)\n"
            "  --warmup N         untimed runs first (default 3)\n"
            "  --iterations N     timed runs per batch size (default 20)\n"
            "  --duration S       run for S seconds per batch size instead of a fixed count\n"
            "  --images DIR       run the full pipeline on the JPEG/PNG files in DIR\n"
            "  --input FILE       raw float32 input for batch 1 (repeated for larger batches)\n"
            "  --json             print {\"results\":[{\"backend\",\"precision\",\"batch\",\"threads\",\n"
            "                     \"latency_ms\":{\"p50\",\"p90\",\"p95\",\"p99\"},\"throughput_ips\",\n"
            "                     \"stages_ms\":{\"decode\",\"preprocess\",\"inference\",\"postprocess\"},\n"
            "                     \"peak_rss_bytes\",\"isa\"}]} instead of a table\n");
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct stages {
    double decode, preprocess, inference, postprocess;
} stages;

typedef struct encoded_set {
    int n;
    uint8_t *bytes[MAX_BENCH_IMAGES];
    size_t len[MAX_BENCH_IMAGES];
    const char *path[MAX_BENCH_IMAGES];
} encoded_set;

/* One pipeline iteration of batch b starting at file *next; adds its stage times to acc. */
static itscam_status pipeline_once(itscam_detector *det, const encoded_set *set, int b, int *next, stages *acc) {
    itscam_status st = ITSCAM_OK;
    if (b == 1) {
        itscam_result r = { 0 };
        const char *path = set->path[*next];
        st = itscam_detect_encoded(det, set->bytes[*next], set->len[*next], &r);
        *next = (*next + 1) % set->n;
        if (st != ITSCAM_OK) return it_err_prefix(st, "%s", path);
        acc->decode += r.ms_decode;
        acc->preprocess += r.ms_preprocess;
        acc->inference += r.ms_inference;
        acc->postprocess += r.ms_postprocess;
        itscam_result_clear(&r);
        return ITSCAM_OK;
    }
    /* Batches go through itscam_detect_batch, which takes decoded frames: decode first,
     * timed on its own. */
    it_image imgs[256]; /* --batch is at most 256 */
    itscam_image frames[256];
    itscam_result res[256];
    int decoded = 0;
    double t0 = it_now_ms();
    for (; decoded < b; decoded++) {
        const char *path = set->path[*next];
        st = it_image_decode(set->bytes[*next], set->len[*next], MAX_PIXELS, &imgs[decoded]);
        *next = (*next + 1) % set->n;
        if (st != ITSCAM_OK) {
            st = it_err_prefix(st, "%s", path);
            goto out;
        }
        frames[decoded] = (itscam_image){ .data = imgs[decoded].data, .width = imgs[decoded].width,
                                          .height = imgs[decoded].height, .stride = imgs[decoded].stride,
                                          .format = ITSCAM_PIX_BGR8 };
    }
    acc->decode += it_now_ms() - t0;
    if ((st = itscam_detect_batch(det, frames, b, res)) != ITSCAM_OK) goto out;
    for (int i = 0; i < b; i++) {
        acc->preprocess += res[i].ms_preprocess;
        acc->inference += res[i].ms_inference;
        acc->postprocess += res[i].ms_postprocess;
        itscam_result_clear(&res[i]);
    }
out:
    for (int i = 0; i < decoded; i++) it_image_free(&imgs[i]);
    return st;
}

static int load_images(const char *dir, encoded_set *set) {
    cli_paths list = { 0 };
    int rc = 0;
    if (cli_collect_images(&list, dir)) { cli_paths_free(&list); return 1; }
    if (list.n == 0) {
        fprintf(stderr, "itscam bench: %s: no JPEG or PNG images\n", dir);
        rc = 1;
    }
    for (int i = 0; i < list.n && i < MAX_BENCH_IMAGES && !rc; i++) {
        itscam_status st = it_read_file(list.v[i], &set->bytes[set->n], &set->len[set->n], MAX_IMAGE_FILE);
        if (st != ITSCAM_OK) { rc = cli_fail(list.v[i], st); break; }
        set->path[set->n] = list.v[i];
        list.v[i] = NULL; /* now owned by the set */
        set->n++;
    }
    cli_paths_free(&list);
    return rc;
}

static void free_images(encoded_set *set) {
    for (int i = 0; i < set->n; i++) {
        it_free(set->bytes[i]);
        free((char *)set->path[i]);
    }
    set->n = 0;
}

int cli_bench(int argc, char **argv) {
    static const struct option opts[] = {
        { "model", required_argument, 0, 'm' }, { "backend", required_argument, 0, 'b' },
        { "batch", required_argument, 0, 'B' }, { "threads", required_argument, 0, 't' },
        { "warmup", required_argument, 0, 'w' }, { "iterations", required_argument, 0, 'n' },
        { "duration", required_argument, 0, 'd' }, { "input", required_argument, 0, 'i' },
        { "images", required_argument, 0, 'I' }, { "precision", required_argument, 0, 'P' },
        { "calib", required_argument, 0, 'C' }, { "json", no_argument, 0, 'j' },
        { "no-fallback", no_argument, 0, 'F' },
        { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 },
    };
    const char *model = NULL, *input = NULL, *images = NULL;
    itscam_session_params sp = itscam_session_default_params();
    int batches[MAX_CONFIGS] = { 1 }, nb = 1, warmup = 3, iters = 20, json = 0, threads_set = 0;
    float duration = 0;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:b:B:t:w:n:d:i:I:P:C:jFh", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'b': sp.backend = optarg; break;
        case 'B': {
            nb = 0;
            for (char *p = optarg; *p;) {
                char *end;
                long v = strtol(p, &end, 10);
                if (end == p || v < 1 || v > 256 || nb >= MAX_CONFIGS) goto bad;
                batches[nb++] = (int)v;
                if (*end && *end != ',') goto bad;
                p = *end == ',' ? end + 1 : end;
            }
            if (!nb) goto bad;
            break;
        }
        case 't': if (cli_parse_int(optarg, &sp.threads) || sp.threads < 0) goto bad; threads_set = 1; break;
        case 'w': if (cli_parse_int(optarg, &warmup) || warmup < 0) goto bad; break;
        case 'n': if (cli_parse_int(optarg, &iters) || iters < 1 || iters > MAX_ITERS) goto bad; break;
        case 'd': if (cli_parse_float(optarg, &duration) || !(duration > 0 && duration < 86400)) goto bad; break;
        case 'i': input = optarg; break;
        case 'I': images = optarg; break;
        case 'P': if (cli_parse_precision(optarg)) goto bad; sp.precision = optarg; break;
        case 'C': sp.calib_path = optarg; break;
        case 'F': sp.no_fallback = 1; break;
        case 'j': json = 1; break;
        case 'h': cli_bench_usage(stdout); return 0;
        default: cli_bench_usage(stderr); return 2;
        }
    }
    if (!model) {
        fprintf(stderr, "itscam bench: --model is required\n");
        return 2;
    }
    if (input && images) {
        fprintf(stderr, "itscam bench: --input and --images exclude each other\n");
        return 2;
    }
    if (optind < argc) {
        fprintf(stderr, "itscam bench: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!threads_set) sp.threads = it_physical_cores();   /* the cpu backend's own default */

    itscam_model *m = NULL;
    itscam_session *s = NULL;
    itscam_detector *det = NULL;
    encoded_set *set = NULL;
    float *buf = NULL;
    double *lat = it_malloc(sizeof(double) * MAX_ITERS);
    json_t *root = json_object(), *results = json_array();
    json_object_set_new(root, "results", results);
    int rc = 0;
    if (!lat) { rc = cli_fail("bench", ITSCAM_ERR_NOMEM); goto out; }
    if (images) {
        if (!(set = calloc(1, sizeof *set))) { rc = cli_fail("bench", ITSCAM_ERR_NOMEM); goto out; }
        if ((rc = load_images(images, set)) != 0) goto out;
    }
    itscam_status st = itscam_model_load(model, &m);
    if (st != ITSCAM_OK) { rc = cli_fail(model, st); goto out; }
    const char *precision;
    if (images) {
        itscam_detector_params dp = itscam_detector_default_params();
        dp.backend = sp.backend;
        dp.threads = sp.threads;
        dp.precision = sp.precision;
        dp.calib_path = sp.calib_path;
        dp.no_fallback = sp.no_fallback;
        if ((st = itscam_detector_create_from_model(m, &dp, &det)) != ITSCAM_OK) { rc = cli_fail(NULL, st); goto out; }
        precision = itscam_detector_precision(det);
    } else {
        if ((st = itscam_session_create(m, &sp, &s)) != ITSCAM_OK) { rc = cli_fail(NULL, st); goto out; }
        precision = itscam_session_precision(s);
    }
    if (sp.precision && !strcmp(sp.precision, "auto")) fprintf(stderr, "itscam bench: precision auto: %s\n", precision);
    const itscam_model_info *info = itscam_model_get_info(m);
    int h = info->input_dims[2] > 0 ? (int)info->input_dims[2] : info->imgsz[0];
    int w = info->input_dims[3] > 0 ? (int)info->input_dims[3] : info->imgsz[1];
    size_t plane = (size_t)3 * h * w;
    int maxb = 1;
    for (int i = 0; i < nb; i++) maxb = IT_MAX(maxb, batches[i]);
    if (!images) {
        if (!(buf = it_malloc(plane * (size_t)maxb * sizeof(float)))) { rc = cli_fail("bench", ITSCAM_ERR_NOMEM); goto out; }
        if (input) {
            uint8_t *raw;
            size_t len;
            if ((st = it_read_file(input, &raw, &len, (size_t)1 << 30)) != ITSCAM_OK) { rc = cli_fail(input, st); goto out; }
            if (len != plane * sizeof(float)) {
                fprintf(stderr, "itscam bench: %s: %zu bytes, expected %zu\n", input, len, plane * sizeof(float));
                it_free(raw);
                rc = 1;
                goto out;
            }
            for (int b = 0; b < maxb; b++) memcpy(buf + plane * (size_t)b, raw, len);
            it_free(raw);
        } else {
            uint32_t x = 12345; /* a letterbox-like synthetic frame: values in [0,1] */
            for (size_t i = 0; i < plane * (size_t)maxb; i++) {
                x = x * 1664525u + 1013904223u;
                buf[i] = (float)(x >> 8) / 16777216.0f;
            }
        }
    }
    const char *be = sp.backend ? sp.backend : itscam_backends()[0];
    char isa[256];
    if (!itscam_backend_describe(be, isa, sizeof isa)) snprintf(isa, sizeof isa, "%s", be);
    if (!json)
        printf("%-7s %-5s %5s %7s %8s %8s %8s %8s %9s %7s %7s %8s %7s %8s\n", "backend", "prec", "batch", "threads",
               "p50 ms", "p90 ms", "p95 ms", "p99 ms", "images/s", "decode", "prep", "infer", "post", "rss MiB");
    for (int ci = 0; ci < nb; ci++) {
        int b = batches[ci], next = 0;
        int64_t dims[4] = { b, 3, h, w }, od[8];
        int ond;
        const float *o;
        stages acc = { 0 };
        for (int i = 0; i < warmup + 1; i++) {
            st = images ? pipeline_once(det, set, b, &next, &acc) : itscam_session_run(s, buf, dims, &o, od, &ond);
            if (st != ITSCAM_OK) { rc = cli_fail(model, st); goto out; }
        }
        memset(&acc, 0, sizeof acc);
        int n = 0;
        /* data movement per inference, from the backend's counters around the timed runs */
        itscam_backend_counters c0, c1;
        int have_moves = itscam_backend_get_counters(itscam_session_backend(det ? itscam_detector_session(det) : s), &c0) == ITSCAM_OK;
        double start = it_now_ms();
        while (n < MAX_ITERS) {
            double t0 = it_now_ms();
            st = images ? pipeline_once(det, set, b, &next, &acc) : itscam_session_run(s, buf, dims, &o, od, &ond);
            if (st != ITSCAM_OK) { rc = cli_fail(model, st); goto out; }
            lat[n] = it_now_ms() - t0;
            if (!images) acc.inference += lat[n];
            n++;
            if (duration > 0 ? it_now_ms() - start >= duration * 1000 : n >= iters) break;
        }
        double total = it_now_ms() - start;
        qsort(lat, (size_t)n, sizeof *lat, cmp_double);
        double ips = total > 0 ? n * b * 1000.0 / total : 0;
        stages mean = { acc.decode / n, acc.preprocess / n, acc.inference / n, acc.postprocess / n };
        long long rss = it_peak_rss_bytes();
        have_moves = have_moves &&
                     itscam_backend_get_counters(itscam_session_backend(det ? itscam_detector_session(det) : s), &c1) == ITSCAM_OK &&
                     c1.runs > c0.runs;
        double per = have_moves ? 1.0 / (double)(c1.runs - c0.runs) : 0;
        if (json) {
            json_t *r = json_object(), *l = json_object(), *sg = json_object();
            json_object_set_new(r, "backend", json_string(be));
            json_object_set_new(r, "precision", json_string(precision));
            json_object_set_new(r, "batch", json_integer(b));
            json_object_set_new(r, "threads", json_integer(sp.threads));
            json_object_set_new(l, "p50", json_real(it_percentile(lat, (size_t)n, 50)));
            json_object_set_new(l, "p90", json_real(it_percentile(lat, (size_t)n, 90)));
            json_object_set_new(l, "p95", json_real(it_percentile(lat, (size_t)n, 95)));
            json_object_set_new(l, "p99", json_real(it_percentile(lat, (size_t)n, 99)));
            json_object_set_new(r, "latency_ms", l);
            json_object_set_new(r, "throughput_ips", json_real(ips));
            json_object_set_new(sg, "decode", json_real(mean.decode));
            json_object_set_new(sg, "preprocess", json_real(mean.preprocess));
            json_object_set_new(sg, "inference", json_real(mean.inference));
            json_object_set_new(sg, "postprocess", json_real(mean.postprocess));
            json_object_set_new(r, "stages_ms", sg);
            json_object_set_new(r, "peak_rss_bytes", json_integer(rss));
            json_object_set_new(r, "isa", json_string(isa));
            if (have_moves) {
                json_t *mv = json_object();
                json_object_set_new(mv, "reorders", json_real((double)(c1.reorders - c0.reorders) * per));
                json_object_set_new(mv, "copies", json_real((double)(c1.copies - c0.copies) * per));
                json_object_set_new(mv, "conversions", json_real((double)(c1.conversions - c0.conversions) * per));
                json_object_set_new(r, "data_movement_per_run", mv);
            }
            /* What really ran (cuda without a GPU runs on cpu) and, on a GPU, its memory. */
            itscam_session *rs = det ? itscam_detector_session(det) : s;
            json_object_set_new(r, "active_backend", json_string(itscam_session_backend(rs)));
            size_t gu, gf, gt;
            if (sp.backend && itscam_backend_is_device(sp.backend) &&
                itscam_backend_memory(sp.backend, &gu, &gf, &gt) == ITSCAM_OK) {
                json_object_set_new(r, "gpu_memory_bytes", json_integer((json_int_t)gu));
                json_object_set_new(r, "gpu_memory_total_bytes", json_integer((json_int_t)gt));
            }
            json_array_append_new(results, r);
        } else {
            printf("%-7s %-5s %5d %7d %8.2f %8.2f %8.2f %8.2f %9.1f %7.2f %7.2f %8.2f %7.2f %8.1f\n", be, precision, b,
                   sp.threads, it_percentile(lat, (size_t)n, 50), it_percentile(lat, (size_t)n, 90),
                   it_percentile(lat, (size_t)n, 95), it_percentile(lat, (size_t)n, 99), ips, mean.decode,
                   mean.preprocess, mean.inference, mean.postprocess, rss / 1048576.0);
            if (have_moves)
                printf("        per inference: %.0f layout reorders, %.0f same-layout copies, %.0f type conversions\n",
                       (double)(c1.reorders - c0.reorders) * per, (double)(c1.copies - c0.copies) * per,
                       (double)(c1.conversions - c0.conversions) * per);
        }
    }
    if (json) {
        json_dumpf(root, stdout, JSON_COMPACT | JSON_REAL_PRECISION(6));
        fputc('\n', stdout);
    } else {
        printf("%s; %s; stages are mean ms per iteration\n", images ? "full pipeline on images" : "session only, synthetic input", isa);
    }
out:
    json_decref(root);
    if (set) free_images(set);
    free(set);
    it_free(buf);
    it_free(lat);
    itscam_detector_free(det);
    itscam_session_free(s);
    itscam_model_free(m);
    return rc;
bad:
    fprintf(stderr, "itscam bench: bad value for --%s: '%s'\n", argv[optind - 1] + 2, optarg);
    return 2;
}
