/* itscam performance optimize: tune a server to this machine the way Triton's Model
 * Analyzer does. Sweep precision x batch size x threads x workers in process (workers are
 * independent sessions on their own threads, running at once, as the server's workers
 * do), measure latency per batch, throughput and memory of each configuration, let a
 * strategy pick one (server/tune.h: a pure function of the table), write the pick as a
 * complete server configuration, and optionally put its run-time part (queue delays,
 * preferred batch sizes, queue limits) in force on a running server through
 * PUT /v1/admin/scheduler. */
#include "backend/backend.h"
#include "cli/cli.h"
#include "core/core.h"
#include "server/config.h"
#include "server/tune.h"
#include "vision/image.h"

#include <curl/curl.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_LIST 16                          /* items of --batches, --threads, --workers */
#define MAX_PREC 3
#define MAX_ROWS (MAX_PREC * MAX_LIST * MAX_LIST * MAX_LIST)
#define MAX_BATCH 256
#define MAX_WORKERS 64
#define MAX_THREADS 1024
#define MAX_ITERS 100000
#define MAX_OPT_IMAGES 64                    /* decoded frames kept for --images */
#define MAX_IMAGE_FILE ((size_t)256 << 20)
#define MAX_PIXELS ((size_t)100 * 1000 * 1000)
#define MAX_LAT_SAMPLES ((size_t)1 << 20)    /* per worker; percentiles use the first ones */
#define DEFAULT_DURATION_S 2.0
#define DEFAULT_WARMUP 2
#define DEFAULT_SLA_MS 100.0
#define DEFAULT_OUTPUT "itscam-optimized.yaml"
#define ADMIN_PATH "/v1/admin/scheduler"

void cli_optimize_usage(FILE *f) {
    fprintf(f,
            "usage: itscam performance optimize --strategy S --model M [options]\n\n"
            "optimize   tune a server to this machine (like Triton's Model Analyzer): measure every\n"
            "           configuration of precision x batch size x threads x workers in process,\n"
            "           print one row each (p50/p99 latency of one batch, images/s of all workers\n"
            "           together, resident memory the configuration added at its peak), pick one\n"
            "           for the strategy (marked *), and write it as a complete server configuration\n"
            "           (every setting, defaults filled in) that `itscam serve --config` loads.\n"
            "           Workers are independent sessions on threads of their own running at once,\n"
            "           as the server's workers are; images/s = all images / wall time.\n"
            "  --strategy S      latency_optimized     lowest p99 at batch 1\n"
            "                    throughput_optimized  most images/s with p99 <= --sla-ms\n"
            "                    memory_optimized      least memory among those with p99 <= --sla-ms\n"
            "                                          within %.0f%% of their best images/s\n"
            "                    balanced              among those with p99 <= --sla-ms, the highest\n"
            "                                          (images/s / best images/s) x (best p99 / p99):\n"
            "                                          throughput and latency, each relative to the\n"
            "                                          best of the table, weigh equally\n"
            "                    (no configuration within the SLA: the lowest p99, said so). Ties go\n"
            "                    to less memory, then fewer threads x workers.\n"
            "  --model M         ONNX model (batch sizes > 1 need a dynamic-batch model)\n"
            "  --images DIR      real images, decoded once and letterboxed per run as the server's\n"
            "                    workers do (letterbox, inference, NMS); default: synthetic input\n"
            "                    to the session alone\n"
            "  --calib F         int8 activation ranges (`itscam calibrate`); int8 is swept only with it\n"
            "  --precisions L    default fp32, bf16 where the backend runs it natively here, int8\n"
            "                    with --calib; skipped ones are named with the reason\n"
            "  --batches L       batch sizes (default 1,2,4,8; those a static model cannot run are skipped)\n"
            "  --threads L       threads per session (default 1 and the physical cores)\n"
            "  --workers L       sessions at once (default 1 and 2 where workers x threads <= cores)\n"
            "  --duration S      measured seconds per configuration (default %g)\n"
            "  --iterations N    or N timed runs per worker instead\n"
            "  --warmup N        untimed runs per worker first (default %d)\n"
            "  --backend B       backend to tune (default: the host backend)\n"
            "  --sla-ms MS       p99 target of one batch (default %g); also metrics.sla_ms\n"
            "  --output F        the configuration file (default " DEFAULT_OUTPUT "; written atomically)\n"
            "  --url URL --token T  also put the run-time settings (max_delay_ms per priority,\n"
            "                    preferred_batch, queue_limit per priority) in force on the server at\n"
            "                    URL through PUT " ADMIN_PATH " (token: --token or $ITSCAM_TOKEN).\n"
            "                    Precision, threads, workers and max_batch need a restart: they are\n"
            "                    only written to the file, and the command says so.\n"
            "  --json            print {\"strategy\",\"sla_ms\",\"results\":[{\"precision\",\"batch\",\n"
            "                    \"threads\",\"workers\",\"latency_ms\":{\"p50\",\"p99\"},\"throughput_ips\",\n"
            "                    \"mem_bytes\",\"meets_sla\",\"chosen\"}],\"skipped\",\"chosen\",\"why\",\"config\",\n"
            "                    \"runtime\",\"restart_required\",\"applied\"} instead of the table\n"
            "Exit status: 0; 1 when nothing could run, the file cannot be written or the server\n"
            "refuses the settings; 2 on bad arguments.\n",
            SRV_TUNE_MEMORY_SLACK * 100, DEFAULT_DURATION_S, DEFAULT_WARMUP, DEFAULT_SLA_MS);
}

/* ---- the sweep ---------------------------------------------------------------------- */

typedef struct sweep_input {
    const itscam_model *m;
    const char *backend, *calib;
    int h, w;
    float *tensor;          /* synthetic input, max batch images */
    it_image *imgs;         /* or decoded frames */
    int n_imgs;
    int warmup, iterations; /* iterations 0: run for duration_ms */
    double duration_ms;
} sweep_input;

/* Workers warm up, then start timing together: the main thread opens the gate once all
 * are ready (or aborts it when a thread could not be created). */
typedef struct start_gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int ready, go, abort;
} start_gate;

typedef struct sweep_worker {
    pthread_t tid;
    const sweep_input *in;
    const char *precision;
    int batch, threads, index;
    itscam_session *sess;
    itscam_detector *det;
    start_gate *gate;
    double *lat;
    size_t n_lat, cap_lat;
    long long images;
    double t0, t1;
    itscam_status st;
    char err[320];
} sweep_worker;

static itscam_status run_once(sweep_worker *w, int *next) {
    const sweep_input *in = w->in;
    if (!in->imgs) {
        int64_t dims[4] = { w->batch, 3, in->h, in->w }, od[8];
        const float *o;
        int ond;
        return itscam_session_run(w->sess, in->tensor, dims, &o, od, &ond);
    }
    itscam_image frames[MAX_BATCH];
    itscam_result res[MAX_BATCH];
    for (int i = 0; i < w->batch; i++) {
        const it_image *im = &in->imgs[*next];
        *next = (*next + 1) % in->n_imgs;
        frames[i] = (itscam_image){ .data = im->data, .width = im->width, .height = im->height, .stride = im->stride,
                                    .format = ITSCAM_PIX_BGR8 };
    }
    itscam_status st = itscam_detect_batch(w->det, frames, w->batch, res);
    if (st == ITSCAM_OK)
        for (int i = 0; i < w->batch; i++) itscam_result_clear(&res[i]);
    return st;
}

static void *worker_main(void *arg) {
    sweep_worker *w = arg;
    const sweep_input *in = w->in;
    int next = in->n_imgs ? (w->index * 7) % in->n_imgs : 0; /* workers start on different images */
    for (int i = 0; i < in->warmup + 1 && w->st == ITSCAM_OK; i++)
        if ((w->st = run_once(w, &next)) != ITSCAM_OK) snprintf(w->err, sizeof w->err, "%s", itscam_last_error());
    start_gate *g = w->gate;
    pthread_mutex_lock(&g->mu);
    g->ready++; /* failed or not, so that the main thread never waits forever */
    pthread_cond_broadcast(&g->cv);
    while (!g->go && !g->abort) pthread_cond_wait(&g->cv, &g->mu);
    int abort = g->abort;
    pthread_mutex_unlock(&g->mu);
    w->t0 = w->t1 = it_now_ms();
    if (w->st != ITSCAM_OK || abort) return NULL;
    for (;;) {
        double t = it_now_ms();
        if ((w->st = run_once(w, &next)) != ITSCAM_OK) {
            snprintf(w->err, sizeof w->err, "%s", itscam_last_error());
            break;
        }
        double now = it_now_ms();
        if (w->n_lat == w->cap_lat && w->cap_lat < MAX_LAT_SAMPLES) {
            size_t nc = w->cap_lat ? w->cap_lat * 2 : 256;
            double *nl = it_realloc(w->lat, nc * sizeof *nl);
            if (nl) w->lat = nl, w->cap_lat = nc;
        }
        if (w->n_lat < w->cap_lat) w->lat[w->n_lat++] = now - t;
        w->images += w->batch;
        w->t1 = now;
        if (in->iterations > 0 ? w->images >= (long long)in->iterations * w->batch : now - w->t0 >= in->duration_ms)
            break;
    }
    return NULL;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Measure one configuration into row; 0, or -1 with why (the row is then failed). */
static int measure(const sweep_input *in, srv_tune_row *row, char *why, size_t whylen) {
    int nw = row->workers;
    sweep_worker *w = it_calloc((size_t)nw, sizeof *w);
    start_gate gate = { .ready = 0, .go = 0, .abort = 0 };
    pthread_mutex_init(&gate.mu, NULL);
    pthread_cond_init(&gate.cv, NULL);
    int rc = -1, started = 0;
    if (!w) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    /* Memory: what the process holds now (after handing freed memory back), then the
     * peak while this configuration's sessions exist and run. */
    malloc_trim(0);
    long long rss0 = it_rss_bytes();
    int peak_ok = it_peak_rss_reset() == 0;
    for (int i = 0; i < nw; i++) {
        w[i] = (sweep_worker){ .in = in, .precision = row->precision, .batch = row->batch, .threads = row->threads,
                               .index = i, .gate = &gate };
        itscam_status st;
        if (in->imgs) {
            itscam_detector_params dp = itscam_detector_default_params();
            dp.backend = in->backend;
            dp.threads = row->threads;
            dp.precision = row->precision;
            dp.calib_path = in->calib;
            st = itscam_detector_create_from_model(in->m, &dp, &w[i].det);
        } else {
            itscam_session_params sp = itscam_session_default_params();
            sp.backend = in->backend;
            sp.threads = row->threads;
            sp.precision = row->precision;
            sp.calib_path = in->calib;
            st = itscam_session_create(in->m, &sp, &w[i].sess);
        }
        if (st != ITSCAM_OK) {
            snprintf(why, whylen, "%s: %s", itscam_strerror(st), itscam_last_error());
            goto out;
        }
    }
    for (; started < nw; started++)
        if (pthread_create(&w[started].tid, NULL, worker_main, &w[started]) != 0) break;
    pthread_mutex_lock(&gate.mu);
    if (started < nw) gate.abort = 1;
    else
        while (gate.ready < nw) pthread_cond_wait(&gate.cv, &gate.mu);
    gate.go = 1;
    pthread_cond_broadcast(&gate.cv);
    pthread_mutex_unlock(&gate.mu);
    for (int i = 0; i < started; i++) pthread_join(w[i].tid, NULL);
    if (started < nw) {
        snprintf(why, whylen, "cannot start %d threads", nw);
        goto out;
    }
    long long peak = peak_ok ? it_peak_rss_bytes() : it_rss_bytes();
    row->mem_bytes = peak > rss0 ? peak - rss0 : 0;
    size_t total = 0;
    long long images = 0;
    double t0 = INFINITY, t1 = -INFINITY;
    for (int i = 0; i < nw; i++) {
        if (w[i].st != ITSCAM_OK) {
            snprintf(why, whylen, "%s: %s", itscam_strerror(w[i].st), w[i].err);
            goto out;
        }
        total += w[i].n_lat;
        images += w[i].images;
        t0 = fmin(t0, w[i].t0);
        t1 = fmax(t1, w[i].t1);
    }
    double *all = it_malloc((total ? total : 1) * sizeof *all);
    if (!all) {
        snprintf(why, whylen, "out of memory");
        goto out;
    }
    size_t k = 0;
    for (int i = 0; i < nw; i++) {
        memcpy(all + k, w[i].lat, w[i].n_lat * sizeof *all);
        k += w[i].n_lat;
    }
    qsort(all, total, sizeof *all, cmp_double);
    row->p50_ms = it_percentile(all, total, 50);
    row->p99_ms = it_percentile(all, total, 99);
    row->ips = t1 > t0 ? images * 1000.0 / (t1 - t0) : 0;
    it_free(all);
    rc = 0;
out:
    for (int i = 0; i < nw; i++) {
        itscam_session_free(w[i].sess);
        itscam_detector_free(w[i].det);
        it_free(w[i].lat);
    }
    it_free(w);
    pthread_mutex_destroy(&gate.mu);
    pthread_cond_destroy(&gate.cv);
    if (rc) row->failed = 1;
    return rc;
}

/* ---- arguments ---------------------------------------------------------------------- */

static int parse_list(const char *s, int lo, int hi, int *out, int *n) {
    *n = 0;
    for (const char *p = s; *p;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < lo || v > hi || *n >= MAX_LIST) return -1;
        for (int i = 0; i < *n; i++)
            if (out[i] == v) goto dup; /* a repeated value would only be measured twice */
        out[(*n)++] = (int)v;
    dup:
        if (*end && *end != ',') return -1;
        p = *end == ',' ? end + 1 : end;
    }
    return *n > 0 ? 0 : -1;
}

static int parse_precisions(const char *s, char out[MAX_PREC][8], int *n) {
    *n = 0;
    char buf[64];
    if (strlen(s) >= sizeof buf) return -1;
    snprintf(buf, sizeof buf, "%s", s);
    for (char *save, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (strcmp(t, "fp32") && strcmp(t, "bf16") && strcmp(t, "int8")) return -1;
        for (int i = 0; i < *n; i++)
            if (!strcmp(out[i], t)) goto next;
        if (*n >= MAX_PREC) return -1;
        snprintf(out[(*n)++], 8, "%s", t);
    next:;
    }
    return *n > 0 ? 0 : -1;
}

/* ---- output ------------------------------------------------------------------------- */

typedef struct skipped {
    char what[64], why[256];
} skipped;

static void print_table(const srv_tune_row *rows, int n, int chosen, double sla_ms) {
    printf("  %-5s %5s %7s %7s %9s %9s %9s %8s  %s\n", "prec", "batch", "threads", "workers", "p50 ms", "p99 ms",
           "images/s", "mem MiB", "p99<=SLA");
    for (int i = 0; i < n; i++) {
        const srv_tune_row *r = &rows[i];
        if (r->failed) {
            printf("  %-5s %5d %7d %7d  failed\n", r->precision, r->batch, r->threads, r->workers);
            continue;
        }
        printf("%c %-5s %5d %7d %7d %9.2f %9.2f %9.1f %8.1f  %s\n", i == chosen ? '*' : ' ', r->precision, r->batch,
               r->threads, r->workers, r->p50_ms, r->p99_ms, r->ips, r->mem_bytes / 1048576.0,
               r->p99_ms <= sla_ms ? "yes" : "no");
    }
}

static json_t *row_json(const srv_tune_row *r, int chosen, double sla_ms, const char *error) {
    json_t *o = json_pack("{s:s,s:i,s:i,s:i}", "precision", r->precision, "batch", r->batch, "threads", r->threads,
                          "workers", r->workers);
    if (r->failed) {
        json_object_set_new(o, "error", json_string(error ? error : "failed"));
        return o;
    }
    json_object_set_new(o, "latency_ms", json_pack("{s:f,s:f}", "p50", r->p50_ms, "p99", r->p99_ms));
    json_object_set_new(o, "throughput_ips", json_real(r->ips));
    json_object_set_new(o, "mem_bytes", json_integer(r->mem_bytes));
    json_object_set_new(o, "meets_sla", json_boolean(r->p99_ms <= sla_ms));
    json_object_set_new(o, "chosen", json_boolean(chosen));
    return o;
}

typedef struct write_ctx {
    const srv_config *c;
    const char *header;
} write_ctx;

static int fill_config(FILE *f, void *arg, char *err, size_t errlen) {
    const write_ctx *w = arg;
    return srv_config_write(f, w->c, w->header, "Chosen by `itscam performance optimize`.", err, errlen);
}

/* An absolute path for the file, so that the configuration works from any directory. */
static void absolute(const char *path, char *out, size_t n) {
    char buf[PATH_MAX];
    if (realpath(path, buf)) snprintf(out, n, "%s", buf);
    else snprintf(out, n, "%s", path);
}

/* ---- the command -------------------------------------------------------------------- */

int cli_optimize(int argc, char **argv) {
    static const struct option opts[] = {
        { "strategy", required_argument, 0, 's' },  { "model", required_argument, 0, 'm' },
        { "images", required_argument, 0, 'I' },    { "calib", required_argument, 0, 'C' },
        { "output", required_argument, 0, 'o' },    { "sla-ms", required_argument, 0, 'S' },
        { "url", required_argument, 0, 'u' },       { "token", required_argument, 0, 'T' },
        { "precisions", required_argument, 0, 'P' }, { "batches", required_argument, 0, 'B' },
        { "threads", required_argument, 0, 't' },   { "workers", required_argument, 0, 'W' },
        { "duration", required_argument, 0, 'd' },  { "iterations", required_argument, 0, 'n' },
        { "warmup", required_argument, 0, 'w' },    { "backend", required_argument, 0, 'b' },
        { "json", no_argument, 0, 'j' },            { "help", no_argument, 0, 'h' },
        { 0, 0, 0, 0 },
    };
    const char *strategy_name = NULL, *model = NULL, *images = NULL, *calib = NULL, *output = DEFAULT_OUTPUT;
    const char *url = NULL, *token = getenv("ITSCAM_TOKEN"), *backend = NULL;
    double sla_ms = DEFAULT_SLA_MS, duration_s = 0;
    int iterations = 0, warmup = DEFAULT_WARMUP, as_json = 0;
    int batches[MAX_LIST] = { 1, 2, 4, 8 }, nb = 4, threads[MAX_LIST], nt = 0, workers[MAX_LIST], nw = 0;
    char precs[MAX_PREC][8];
    int np = 0, threads_given = 0, workers_given = 0, precs_given = 0;
    int c, li = -1;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, &li)) != -1) {
        char *end;
        switch (c) {
        case 's': strategy_name = optarg; break;
        case 'm': model = optarg; break;
        case 'I': images = optarg; break;
        case 'C': calib = optarg; break;
        case 'o': if (!*optarg) goto bad; output = optarg; break;
        case 'S':
            sla_ms = strtod(optarg, &end);
            if (end == optarg || *end || !(sla_ms >= 0.001 && sla_ms <= 3600000)) goto bad;
            break;
        case 'u': url = optarg; break;
        case 'T': token = optarg; break;
        case 'P': if (parse_precisions(optarg, precs, &np)) goto bad; precs_given = 1; break;
        case 'B': if (parse_list(optarg, 1, MAX_BATCH, batches, &nb)) goto bad; break;
        case 't': if (parse_list(optarg, 1, MAX_THREADS, threads, &nt)) goto bad; threads_given = 1; break;
        case 'W': if (parse_list(optarg, 1, MAX_WORKERS, workers, &nw)) goto bad; workers_given = 1; break;
        case 'd':
            duration_s = strtod(optarg, &end);
            if (end == optarg || *end || !(duration_s > 0 && duration_s <= 3600)) goto bad;
            break;
        case 'n': if (cli_parse_int(optarg, &iterations) || iterations < 1 || iterations > MAX_ITERS) goto bad; break;
        case 'w': if (cli_parse_int(optarg, &warmup) || warmup < 0 || warmup > 1000) goto bad; break;
        case 'b': backend = optarg; break;
        case 'j': as_json = 1; break;
        case 'h': cli_optimize_usage(stdout); return 0;
        default: fprintf(stderr, "run 'itscam performance --help' for the options\n"); return 2;
        }
        li = -1;
    }
    if (optind < argc) {
        fprintf(stderr, "itscam performance optimize: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    int strategy = srv_tune_strategy_parse(strategy_name);
    if (strategy < 0) {
        fprintf(stderr, "itscam performance optimize: --strategy %s (latency_optimized, balanced, "
                        "throughput_optimized or memory_optimized)\n", strategy_name ? "is unknown" : "is required");
        return 2;
    }
    if (!model) {
        fprintf(stderr, "itscam performance optimize: --model is required\n");
        return 2;
    }
    if (duration_s > 0 && iterations > 0) {
        fprintf(stderr, "itscam performance optimize: --duration and --iterations exclude each other\n");
        return 2;
    }
    if (url && (!token || !*token)) {
        fprintf(stderr, "itscam performance optimize: --url needs --token (or $ITSCAM_TOKEN): the admin route "
                        "is token-protected\n");
        return 2;
    }
    if (!duration_s && !iterations) duration_s = DEFAULT_DURATION_S;

    /* The backend, and which precisions it runs here. */
    const it_backend *be = backend ? it_backend_find(backend) : it_backend_first_host();
    if (!be) {
        fprintf(stderr, "itscam performance optimize: %s\n",
                backend ? "the backend is not compiled into this build (see `itscam version`)" : "no usable backend");
        return 2;
    }
    backend = be->name;
    skipped skips[MAX_LIST + MAX_PREC];
    int n_skips = 0;
    if (!precs_given) {
        snprintf(precs[np++], 8, "fp32");
        if (be->supports && be->supports(IT_PREC_BF16)) snprintf(precs[np++], 8, "bf16");
        else {
            snprintf(skips[n_skips].what, sizeof skips[0].what, "bf16");
            snprintf(skips[n_skips++].why, sizeof skips[0].why, "backend %s does not run bf16 natively on this CPU",
                     backend);
        }
        if (calib) snprintf(precs[np++], 8, "int8");
        else {
            snprintf(skips[n_skips].what, sizeof skips[0].what, "int8");
            snprintf(skips[n_skips++].why, sizeof skips[0].why, "no --calib (write one with `itscam calibrate`)");
        }
    } else
        for (int i = 0; i < np; i++)
            if (!strcmp(precs[i], "int8") && !calib) {
                fprintf(stderr, "itscam performance optimize: int8 needs --calib (write one with `itscam calibrate`)\n");
                return 2;
            }
    int cores = it_physical_cores();
    if (!threads_given) {
        threads[nt++] = 1;
        if (cores > 1) threads[nt++] = cores;
    }
    if (!workers_given) {
        workers[nw++] = 1;
        workers[nw++] = 2;
    }

    itscam_model *m = NULL;
    sweep_input in = { .backend = backend, .calib = calib, .warmup = warmup, .iterations = iterations,
                       .duration_ms = duration_s * 1000 };
    srv_tune_row *rows = NULL;
    char (*errors)[320] = NULL;
    json_t *root = NULL;
    int rc = 1, n = 0, chosen = -1;
    itscam_status st = itscam_model_load(model, &m);
    if (st != ITSCAM_OK) {
        rc = cli_fail(model, st);
        goto out;
    }
    in.m = m;
    const itscam_model_info *info = itscam_model_get_info(m);
    in.h = info->input_dims[2] > 0 ? (int)info->input_dims[2] : info->imgsz[0];
    in.w = info->input_dims[3] > 0 ? (int)info->input_dims[3] : info->imgsz[1];
    int fixed_batch = info->input_dims[0] > 0 ? (int)info->input_dims[0] : 0;
    int maxb = 1;
    for (int i = 0; i < nb; i++) maxb = IT_MAX(maxb, batches[i]);
    if (images) {
        cli_paths list = { 0 };
        if (cli_collect_images(&list, images)) {
            cli_paths_free(&list);
            goto out;
        }
        if (list.n == 0) {
            fprintf(stderr, "itscam performance optimize: %s: no JPEG or PNG images\n", images);
            cli_paths_free(&list);
            goto out;
        }
        int keep = list.n < MAX_OPT_IMAGES ? list.n : MAX_OPT_IMAGES;
        if (!(in.imgs = it_calloc((size_t)keep, sizeof *in.imgs))) {
            cli_paths_free(&list);
            rc = cli_fail("optimize", ITSCAM_ERR_NOMEM);
            goto out;
        }
        for (int i = 0; i < keep; i++) {
            uint8_t *bytes;
            size_t len;
            if ((st = it_read_file(list.v[i], &bytes, &len, MAX_IMAGE_FILE)) == ITSCAM_OK) {
                st = it_image_decode(bytes, len, MAX_PIXELS, &in.imgs[in.n_imgs]);
                it_free(bytes);
            }
            if (st != ITSCAM_OK) {
                rc = cli_fail(list.v[i], st);
                cli_paths_free(&list);
                goto out;
            }
            in.n_imgs++;
        }
        cli_paths_free(&list);
    } else {
        size_t count = (size_t)3 * in.h * in.w * (size_t)maxb;
        if (!(in.tensor = it_malloc(count * sizeof(float)))) {
            rc = cli_fail("optimize", ITSCAM_ERR_NOMEM);
            goto out;
        }
        uint32_t x = 12345; /* a letterbox-like synthetic frame, as `itscam bench` uses */
        for (size_t i = 0; i < count; i++) {
            x = x * 1664525u + 1013904223u;
            in.tensor[i] = (float)(x >> 8) / 16777216.0f;
        }
    }
    if (!(rows = it_calloc(MAX_ROWS, sizeof *rows)) || !(errors = it_calloc(MAX_ROWS, sizeof *errors))) {
        rc = cli_fail("optimize", ITSCAM_ERR_NOMEM);
        goto out;
    }

    char isa[256];
    if (!itscam_backend_describe(backend, isa, sizeof isa)) snprintf(isa, sizeof isa, "%s", backend);
    if (!as_json)
        printf("itscam performance optimize: %s, %s; %s input; %d physical core%s; %s per configuration\n", model,
               isa, images ? "letterboxed image" : "synthetic", cores, cores == 1 ? "" : "s",
               iterations ? "fixed iterations" : "fixed duration");
    /* Prime the process once per precision, untimed: the first session of a process also
     * pays for what later ones share (JIT kernels, the OpenMP pool), which would
     * otherwise be charged to whichever configuration came first. */
    int tmax = 1, progress = !as_json && isatty(2);
    for (int ti = 0; ti < nt; ti++) tmax = IT_MAX(tmax, threads[ti]);
    for (int pi = 0; pi < np; pi++) {
        sweep_input prime = in;
        prime.warmup = 0;
        prime.iterations = 1;
        srv_tune_row r = { .batch = fixed_batch ? fixed_batch : 1, .threads = tmax, .workers = 1 };
        char ignored[320];
        snprintf(r.precision, sizeof r.precision, "%s", precs[pi]);
        measure(&prime, &r, ignored, sizeof ignored); /* a failure shows in the sweep */
    }
    /* Batch sizes the model cannot take are skipped once, not per precision. */
    for (int bi = 0; bi < nb; bi++)
        if (fixed_batch && batches[bi] != fixed_batch && n_skips < (int)(sizeof skips / sizeof *skips)) {
            snprintf(skips[n_skips].what, sizeof skips[0].what, "batch %d", batches[bi]);
            snprintf(skips[n_skips++].why, sizeof skips[0].why, "the model's batch is fixed at %d", fixed_batch);
        }
    for (int pi = 0; pi < np; pi++)
        for (int bi = 0; bi < nb; bi++) {
            if (fixed_batch && batches[bi] != fixed_batch) continue;
            for (int ti = 0; ti < nt; ti++)
                for (int wi = 0; wi < nw; wi++) {
                    /* Default worker counts only where every worker gets its threads on a core of
                     * its own; one worker always runs. */
                    if (!workers_given && workers[wi] > 1 && workers[wi] * threads[ti] > cores) continue;
                    srv_tune_row *r = &rows[n];
                    *r = (srv_tune_row){ .batch = batches[bi], .threads = threads[ti], .workers = workers[wi],
                                         .mem_bytes = -1 };
                    snprintf(r->precision, sizeof r->precision, "%s", precs[pi]);
                    if (progress) {
                        fprintf(stderr, "\r  measuring %s batch %d threads %d workers %d ...    ", r->precision,
                                r->batch, r->threads, r->workers);
                        fflush(stderr);
                    }
                    if (measure(&in, r, errors[n], sizeof errors[n]) != 0)
                        fprintf(stderr, "%sitscam performance optimize: %s batch %d threads %d workers %d: %s\n",
                                progress ? "\n" : "", r->precision, r->batch, r->threads, r->workers, errors[n]);
                    n++;
                }
        }
    if (progress) fprintf(stderr, "\r%60s\r", "");
    for (int i = 0; i < n_skips; i++)
        fprintf(stderr, "itscam performance optimize: %s: skipped: %s\n", skips[i].what, skips[i].why);

    char why[512];
    chosen = srv_tune_pick(rows, n, strategy, sla_ms, why, sizeof why);
    if (chosen < 0) {
        fprintf(stderr, "itscam performance optimize: no configuration could run\n");
        goto out;
    }
    const srv_tune_row *best = &rows[chosen];

    /* The configuration: the model, backend and calibration as measured, then the pick. */
    srv_config cfg;
    srv_config_defaults(&cfg);
    char path[PATH_MAX + 1], err[1024];
    absolute(model, path, sizeof path);
    int bad = srv_config_set(&cfg, "models", "model", path, "--model", err, sizeof err) ||
              srv_config_set(&cfg, "models", "backend", backend, "--backend", err, sizeof err);
    if (!bad && calib && !strcmp(best->precision, "int8")) {
        absolute(calib, path, sizeof path);
        bad = srv_config_set(&cfg, "models", "calib", path, "--calib", err, sizeof err);
    }
    if (bad || srv_tune_config(&cfg, best, strategy, sla_ms, err, sizeof err)) {
        fprintf(stderr, "itscam performance optimize: %s\n", err);
        goto out;
    }
    char header[2048], when[64];
    time_t now = time(NULL);
    struct tm tmv;
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", localtime_r(&now, &tmv));
    snprintf(header, sizeof header,
             "# itscam server configuration chosen by `itscam performance optimize --strategy %s`\n"
             "# on %s (%s, %d physical cores, %s input) among %d measured configurations.\n"
             "# Pick: precision %s, batch %d, threads %d, workers %d: p50 %.2f ms, p99 %.2f ms per batch,\n"
             "# %.1f images/s, +%.1f MiB resident at peak.\n# Why: %s.\n"
             "# Check it with `itscam config --check FILE`; serve it with `itscam serve --config FILE`.",
             srv_tune_strategy_name(strategy), when, isa, cores, images ? "image" : "synthetic", n, best->precision,
             best->batch, best->threads, best->workers, best->p50_ms, best->p99_ms, best->ips,
             best->mem_bytes / 1048576.0, why);
    write_ctx wc = { &cfg, header };
    if (cli_write_atomic("performance optimize", output, fill_config, &wc)) goto out;
    /* The file must be one the server accepts: read it back as `itscam config --check` does. */
    srv_config back;
    srv_config_defaults(&back);
    char note[512];
    if (srv_config_load_file(&back, output, err, sizeof err) || srv_config_validate(&back, note, sizeof note, err, sizeof err)) {
        fprintf(stderr, "itscam performance optimize: the written %s does not load: %s\n", output, err);
        goto out;
    }

    /* The run-time part, on a running server. */
    json_t *runtime = srv_runtime_json(&cfg), *applied = json_null();
    int apply_failed = 0;
    if (url) {
        char *body = json_dumps(runtime, JSON_COMPACT), *answer = NULL;
        long code = 0;
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
            snprintf(err, sizeof err, "libcurl failed to initialise");
            apply_failed = 1;
        } else {
            if (!body || cli_http_request(url, ADMIN_PATH, "PUT", token, body, &code, &answer, err, sizeof err))
                apply_failed = 1;
            else if (code != 200) {
                json_t *a = json_loads(answer, 0, NULL);
                const char *msg = a && json_is_string(json_object_get(a, "error"))
                                      ? json_string_value(json_object_get(a, "error"))
                                      : answer;
                snprintf(err, sizeof err, "%s answered %ld: %s", url, code, msg);
                json_decref(a);
                apply_failed = 1;
            }
            curl_global_cleanup();
        }
        free(body);
        json_decref(applied);
        applied = json_pack("{s:s,s:b,s:i}", "url", url, "ok", !apply_failed, "status", (int)code);
        if (apply_failed) json_object_set_new(applied, "error", json_string(err));
        free(answer);
    }
    char restart[256];
    snprintf(restart, sizeof restart, "models.precision=%s models.threads=%d models.workers=%d batching.max_batch=%d",
             cfg.precision, cfg.threads, cfg.workers, cfg.max_batch);
    if (as_json) {
        root = json_object();
        json_t *res = json_array(), *sk = json_array();
        for (int i = 0; i < n; i++) json_array_append_new(res, row_json(&rows[i], i == chosen, sla_ms, errors[i]));
        for (int i = 0; i < n_skips; i++)
            json_array_append_new(sk, json_pack("{s:s,s:s}", "what", skips[i].what, "why", skips[i].why));
        json_object_set_new(root, "strategy", json_string(srv_tune_strategy_name(strategy)));
        json_object_set_new(root, "sla_ms", json_real(sla_ms));
        json_object_set_new(root, "model", json_string(model));
        json_object_set_new(root, "backend", json_string(backend));
        json_object_set_new(root, "isa", json_string(isa));
        json_object_set_new(root, "cores", json_integer(cores));
        json_object_set_new(root, "input", json_string(images ? "images" : "synthetic"));
        json_object_set_new(root, "results", res);
        json_object_set_new(root, "skipped", sk);
        json_object_set_new(root, "chosen", json_integer(chosen));
        json_object_set_new(root, "why", json_string(why));
        json_object_set_new(root, "config", json_string(output));
        json_object_set_new(root, "runtime", json_incref(runtime));
        json_object_set_new(root, "restart_required",
                            json_pack("{s:s,s:i,s:i,s:i}", "precision", cfg.precision, "threads", cfg.threads,
                                      "workers", cfg.workers, "max_batch", cfg.max_batch));
        json_object_set_new(root, "applied", json_incref(applied));
        json_dumpf(root, stdout, JSON_COMPACT | JSON_REAL_PRECISION(6));
        fputc('\n', stdout);
    } else {
        print_table(rows, n, chosen, sla_ms);
        printf("chosen (%s, SLA p99 <= %g ms): %s batch %d, threads %d, workers %d: %s\n",
               srv_tune_strategy_name(strategy), sla_ms, best->precision, best->batch, best->threads, best->workers,
               why);
        printf("wrote %s (checked: it loads as `itscam config --check` loads it)\n", output);
        char *rt = json_dumps(runtime, JSON_COMPACT);
        if (url && !apply_failed)
            printf("applied to %s at run time: %s\n", url, rt ? rt : "");
        else if (!url)
            printf("run-time settings (apply with --url URL --token T, or restart with the file): %s\n", rt ? rt : "");
        printf("needs a restart to take effect (written to %s only): %s\n", output, restart);
        free(rt);
    }
    if (apply_failed) fprintf(stderr, "itscam performance optimize: not applied: %s\n", err);
    json_decref(runtime);
    json_decref(applied);
    rc = apply_failed ? 1 : 0;
out:
    json_decref(root);
    for (int i = 0; i < in.n_imgs; i++) it_image_free(&in.imgs[i]);
    it_free(in.imgs);
    it_free(in.tensor);
    it_free(rows);
    it_free(errors);
    itscam_model_free(m);
    return rc;
bad:
    fprintf(stderr, "itscam performance optimize: bad value for --%s: '%s'\n", li >= 0 ? opts[li].name : "?", optarg);
    return 2;
}
