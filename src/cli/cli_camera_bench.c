/* itscam performance benchmark --cameras N: camera capacity in process. N file cameras
 * (the camera pipeline of src/pipeline, real-time paced and looping) feed one model's
 * scheduler built exactly as `itscam serve` builds it (srv_sched_params), with shedding
 * off so that what is measured is capacity; per camera and in total it reports detect
 * and decoded fps, drops by reason, capture-to-result latency, CPU and RSS. --find-max
 * searches the largest N that meets the SLA with every camera at its detect fps. */
#include "cli/cli.h"
#include "core/core.h"
#include "pipeline/cameras.h"
#include "server/server.h"

#include <dirent.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_SOURCES 64
#define MAX_CAMS IT_CAM_MAX                 /* the pipeline's own limit */
#define MAX_LAT_PER_CAM ((size_t)1 << 20)   /* latency samples kept per camera and run */
#define MAX_SECONDS 86400.0
#define FPS_TOLERANCE 0.9                   /* a camera passes at >= 90% of its target fps */
#define CAM_PREFIX "bench"

void cli_camera_bench_usage(FILE *f) {
    fprintf(f,
            "usage: itscam performance benchmark --cameras N [--source FILE[,FILE...]] [--detect-fps F]\n"
            "           [--duration S] [--warmup S] [--model M] [--backend B] [--precision P]\n"
            "           [--threads T] [--workers W] [--max-batch B] [--sla-ms MS] [--result-cache]\n"
            "           [--find-max [--max-cameras CAP]] [--json]\n\n"
            "Camera capacity in process, no server: N file cameras bench0..benchN-1, each looping\n"
            "over one of the sources (round robin) at the file's own pace, detect at F fps into\n"
            "one scheduler made as `itscam serve` makes it (same batching defaults), with load\n"
            "shedding off. Camera starts are spread over one detect interval, as independent\n"
            "cameras would be. After --warmup seconds, --duration seconds are measured: per camera\n"
            "detect and decoded fps (counters before and after), frames dropped by reason\n"
            "(skipped: not needed for the detect fps; stale; queue_full) and capture-to-result\n"
            "latency p50/p95/p99 of every frame detected in the span; in total the same, process\n"
            "CPU (%% of one core) and RSS.\n"
            "  --cameras N       cameras (1..%d); --streams N is the same; with --find-max, the\n"
            "                    first size tried (default 1)\n"
            "  --source LIST     comma-separated video files (default: $ITSCAM_SHARED/videos/*.mp4)\n"
            "  --detect-fps F    detections per second per camera (default 5)\n"
            "  --duration S      measured seconds (default 20; 15 per --find-max probe)\n"
            "  --warmup S        unmeasured seconds after the cameras start (default 5)\n"
            "  --model M         ONNX model (default: $ITSCAM_SHARED/models/yolo11n-320-dynamic.onnx)\n"
            "  --backend B, --precision P (default auto), --threads T, --workers W, --max-batch B:\n"
            "                    as for `itscam serve` (with cameras: one 1-thread worker per core\n"
            "                    unless --threads or --workers says otherwise)\n"
            "  --sla-ms MS       the latency target for --find-max and the report (default 100)\n"
            "  --result-cache    let a frame identical to the camera's previous one reuse its result\n"
            "                    (off: every detected frame runs the model)\n"
            "  --find-max        grow N (N, 2N, 4N...) until a run fails, then bisect: the largest N\n"
            "                    whose p95 <= --sla-ms with every camera at >= 90%% of F; one line\n"
            "                    per run; the report is that of the largest passing run\n"
            "  --max-cameras CAP upper bound of the search (default %d)\n"
            "  --json            {\"cameras\",\"sla_ms\",\"detect_fps_target\",\"duration_s\",\"model\",\n"
            "                    \"results\":[{\"id\",\"detect_fps\",\"decoded_fps\",\"dropped\":{\"skipped\",\n"
            "                    \"stale\",\"queue_full\"},\"latency_ms\":{\"p50\",\"p95\",\"p99\"}}],\"totals\":\n"
            "                    {\"detect_fps\",\"latency_ms\",\"cpu_percent\",\"rss_bytes\",\"failed\",\n"
            "                    \"cache_hits\"},\"machine\":{\"cpu\",\"flags\",\"logical_cpus\",\"physical_cores\",\n"
            "                    \"isa\",\"backend\",\"precision\",\"threads\",\"workers\",\"max_batch\"}} and with\n"
            "                    --find-max \"max_cameras\" and \"probes\"\n"
            "Exit status: 0, 1 when the model or a source fails, 2 on bad arguments, 130 when\n"
            "Ctrl-C cut it short (what was measured is still printed).\n",
            MAX_CAMS, MAX_CAMS);
}

/* ---- Ctrl-C ---------------------------------------------------------------------------- */

static volatile sig_atomic_t stop_requested;

static void on_sigint(int sig) {
    (void)sig;
    stop_requested = 1;
}

/* Sleep up to s seconds, waking early on Ctrl-C. */
static void sleep_s(double s) {
    double end = it_now_ms() + s * 1e3;
    while (!stop_requested) {
        double left = end - it_now_ms();
        if (left <= 0) break;
        if (left > 50) left = 50;
        struct timespec ts = { 0, (long)(left * 1e6) };
        nanosleep(&ts, NULL);
    }
}

/* ---- what is measured -------------------------------------------------------------------- */

/* Latencies of one camera over the measured span, appended by the camera's own thread
 * (the observer), read by the main thread once the span ended; the mutex makes the
 * hand-over explicit. */
typedef struct lat_rec {
    pthread_mutex_t mu;
    double *v;
    size_t n, cap;
    int overflow;
} lat_rec;

typedef struct cam_result {
    char id[IT_CAM_ID_MAX + 1];
    double detect_fps, decoded_fps;
    uint64_t skipped, stale, queue_full, failed, cache_hits;
    double p50, p95, p99;
} cam_result;

typedef struct run_result {
    int n;
    cam_result *cams;
    double seconds, detect_fps, min_detect_fps, p50, p95, p99, cpu_percent;
    long long rss_bytes;
    uint64_t failed, cache_hits;
    int pass;
    char why[160];  /* why a --find-max probe failed */
} run_result;

typedef struct bench_opts {
    int cameras, max_cameras, find_max, json, result_cache;
    double fps, duration, warmup, sla_ms;
    const char *sources[MAX_SOURCES];
    int n_sources;
    const char *model_path;
} bench_opts;

typedef struct bench_ctx {
    it_sched *sched;
    lat_rec *lat;     /* [max cameras] */
    int n_lat;
    atomic_int measuring;
} bench_ctx;

static int cam_index(const char *id) {
    if (strncmp(id, CAM_PREFIX, sizeof CAM_PREFIX - 1)) return -1;
    char *end;
    long k = strtol(id + sizeof CAM_PREFIX - 1, &end, 10);
    return *end || k < 0 || k >= MAX_CAMS ? -1 : (int)k;
}

static void obs_frame(void *ctx, const char *camera, double latency_ms) {
    bench_ctx *b = ctx;
    if (!atomic_load(&b->measuring)) return;
    int k = cam_index(camera);
    if (k < 0 || k >= b->n_lat) return;
    lat_rec *r = &b->lat[k];
    pthread_mutex_lock(&r->mu);
    if (atomic_load(&b->measuring)) {
        if (r->n == r->cap && r->cap < MAX_LAT_PER_CAM) {
            size_t nc = r->cap ? r->cap * 2 : 256;
            double *nv = realloc(r->v, sizeof *nv * nc);
            if (nv) {
                r->v = nv;
                r->cap = nc;
            }
        }
        if (r->n < r->cap) r->v[r->n++] = latency_ms;
        else r->overflow = 1;
    }
    pthread_mutex_unlock(&r->mu);
}

static it_sched_submit_status bench_submit(void *ctx, const char *model, it_sched_job *j, void **token) {
    bench_ctx *b = ctx;
    (void)token;
    if (model && *model) { /* the benchmark serves one model, the default */
        j->outcome = IT_SCHED_FAILED;
        j->status = ITSCAM_ERR_NOT_FOUND;
        snprintf(j->message, sizeof j->message, "the benchmark serves one model; '%s' is not it", model);
        return IT_SCHED_REJECT_INVALID;
    }
    return it_sched_submit(b->sched, j);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double cpu_seconds(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return NAN;
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;
}

static long long rss_now(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long long kb = -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) {
            kb = strtoll(line + 6, NULL, 10);
            break;
        }
    fclose(f);
    return kb < 0 ? -1 : kb * 1024;
}

static const it_cam_info *find_info(const it_cam_info *all, int n, const char *id) {
    for (int i = 0; i < n; i++)
        if (!strcmp(all[i].def.id, id)) return &all[i];
    return NULL;
}

/* Fail fast on a source that cannot be played: a run with a dead camera measures nothing. */
static int check_sources(const it_cam_info *all, int n) {
    for (int i = 0; i < n; i++)
        if (all[i].state == IT_SOURCE_FAILED || all[i].state == IT_SOURCE_ENDED) {
            fprintf(stderr, "itscam performance: camera %s (%s): %s: %s\n", all[i].def.id, all[i].def.url,
                    it_source_state_name(all[i].state), all[i].last_error[0] ? all[i].last_error : "no detail");
            return -1;
        }
    return 0;
}

static void percentiles(double *v, size_t n, double *p50, double *p95, double *p99) {
    qsort(v, n, sizeof *v, cmp_double);
    *p50 = it_percentile(v, n, 50);
    *p95 = it_percentile(v, n, 95);
    *p99 = it_percentile(v, n, 99);
}

/* One run of n cameras. Returns 0 with *r filled (a Ctrl-C during the measured span
 * shortens it), 1 when interrupted before the span began, -1 on an error (printed). */
static int run_cameras(bench_ctx *b, const bench_opts *o, const itscam_detector_params *det_defaults, int n,
                       run_result *r) {
    memset(r, 0, sizeof *r);
    r->n = n;
    r->cams = calloc((size_t)n, sizeof *r->cams);
    if (!r->cams) {
        fprintf(stderr, "itscam performance: out of memory\n");
        return -1;
    }
    for (int i = 0; i < n; i++) {
        lat_rec *l = &b->lat[i];
        pthread_mutex_lock(&l->mu);
        l->n = 0;
        l->overflow = 0;
        pthread_mutex_unlock(&l->mu);
    }
    b->n_lat = n;
    it_cams_params p = it_cams_default_params();
    p.infer = (it_cam_infer){ .ctx = b, .submit = bench_submit };
    p.observer = (it_cams_observer){ .ctx = b, .frame_done = obs_frame };
    p.detect_defaults = *det_defaults;
    p.sla_ms = o->sla_ms;
    p.shed = 0;                          /* capacity, not graceful degradation */
    p.result_cache = o->result_cache;
    it_cams *cams = NULL;
    if (it_cams_new(&p, &cams) != ITSCAM_OK) {
        fprintf(stderr, "itscam performance: %s\n", itscam_last_error());
        return -1;
    }
    int rc = 0;
    /* Start the cameras spread over one detect interval: independent cameras do not
     * capture in phase, and cameras that all deliver at the same instant would measure
     * a burst rather than a load. */
    double spread_s = 1.0 / o->fps / n;
    for (int i = 0; i < n && !stop_requested; i++) {
        it_camdef d;
        it_camdef_defaults(&d);
        snprintf(d.id, sizeof d.id, CAM_PREFIX "%d", i);
        snprintf(d.url, sizeof d.url, "%s", o->sources[i % o->n_sources]);
        d.loop = 1;
        d.realtime = 1;
        d.detect.fps = o->fps;
        if (it_cams_put(cams, &d) != ITSCAM_OK) {
            fprintf(stderr, "itscam performance: camera %s: %s\n", d.id, itscam_last_error());
            rc = -1;
            break;
        }
        sleep_s(spread_s);
    }
    it_cam_info *before = NULL, *after = NULL;
    int nb = 0, na = 0;
    double t0 = 0, t1 = 0, c0 = 0, c1 = 0;
    if (rc == 0) {
        sleep_s(o->warmup);
        if (stop_requested) rc = 1;
    }
    if (rc == 0) {
        atomic_store(&b->measuring, 1);
        t0 = it_now_ms();
        c0 = cpu_seconds();
        nb = it_cams_list(cams, &before);
        if (nb < 0 || check_sources(before, nb)) rc = -1;
    }
    if (rc == 0) {
        sleep_s(o->duration);
        na = it_cams_list(cams, &after);
        t1 = it_now_ms();
        c1 = cpu_seconds();
        r->rss_bytes = rss_now();
        if (na < 0 || check_sources(after, na)) rc = -1;
    }
    atomic_store(&b->measuring, 0);
    it_cams_free(cams);
    if (rc != 0) {
        it_free(before);
        it_free(after);
        return rc;
    }

    r->seconds = (t1 - t0) / 1e3;
    r->cpu_percent = r->seconds > 0 ? (c1 - c0) / r->seconds * 100 : NAN;
    size_t total = 0;
    for (int i = 0; i < n; i++) total += b->lat[i].n;
    double *all = malloc(sizeof *all * (total ? total : 1));
    if (!all) {
        fprintf(stderr, "itscam performance: out of memory\n");
        it_free(before);
        it_free(after);
        return -1;
    }
    size_t k = 0;
    uint64_t detected = 0;
    r->min_detect_fps = INFINITY;
    int overflow = 0;
    for (int i = 0; i < n; i++) {
        cam_result *c = &r->cams[i];
        snprintf(c->id, sizeof c->id, CAM_PREFIX "%d", i);
        const it_cam_info *x = find_info(before, nb, c->id), *y = find_info(after, na, c->id);
        if (x && y) {
            /* Counters only grow while a camera runs; its source's (decoded, skipped) are
             * sampled once a second, so decoded fps is exact to about 1/duration. */
            detected += y->detected - x->detected;
            c->detect_fps = (double)(y->detected - x->detected) / r->seconds;
            c->decoded_fps = (double)(y->decoded - x->decoded) / r->seconds;
            c->skipped = y->skipped - x->skipped;
            c->stale = y->stale - x->stale;
            c->queue_full = y->queue_full - x->queue_full;
            c->failed = y->failed - x->failed;
            c->cache_hits = y->cache_hits - x->cache_hits;
        }
        r->failed += c->failed;
        r->cache_hits += c->cache_hits;
        if (c->detect_fps < r->min_detect_fps) r->min_detect_fps = c->detect_fps;
        lat_rec *l = &b->lat[i];
        overflow |= l->overflow;
        if (l->n) memcpy(all + k, l->v, sizeof *all * l->n);
        k += l->n;
        c->p50 = c->p95 = c->p99 = NAN;
        if (l->n) percentiles(l->v, l->n, &c->p50, &c->p95, &c->p99);
    }
    if (overflow) fprintf(stderr, "itscam performance: latency samples beyond %zu per camera were not kept\n",
                          MAX_LAT_PER_CAM);
    r->detect_fps = (double)detected / r->seconds;
    r->p50 = r->p95 = r->p99 = NAN;
    if (k) percentiles(all, k, &r->p50, &r->p95, &r->p99);
    free(all);
    it_free(before);
    it_free(after);

    double need = FPS_TOLERANCE * o->fps;
    if (!k) snprintf(r->why, sizeof r->why, "no frame detected");
    else if (!(r->p95 <= o->sla_ms)) snprintf(r->why, sizeof r->why, "p95 %.1f ms > %g ms", r->p95, o->sla_ms);
    else if (r->min_detect_fps < need)
        snprintf(r->why, sizeof r->why, "a camera at %.2f fps < %.2f", r->min_detect_fps, need);
    r->pass = !r->why[0];
    return 0;
}

static void run_result_free(run_result *r) {
    free(r->cams);
    memset(r, 0, sizeof *r);
}

/* ---- the machine ------------------------------------------------------------------------ */

typedef struct machine {
    char cpu[128];
    char flags[512];      /* the vector and matrix extensions present, space-separated */
    int logical, physical;
    char isa[256];
} machine;

static void machine_read(machine *m, const char *backend) {
    memset(m, 0, sizeof *m);
    snprintf(m->cpu, sizeof m->cpu, "unknown");
    static const char *const wanted[] = { "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw",
                                          "avx512vl", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16",
                                          "amx_tile", "amx_bf16", "amx_int8", "asimd", "sve", NULL };
    FILE *f = fopen("/proc/cpuinfo", "r");
    char *line = NULL;
    size_t cap = 0;
    int got_model = 0, got_flags = 0;
    while (f && getline(&line, &cap, f) > 0 && !(got_model && got_flags)) {
        char *colon = strchr(line, ':');
        if (!colon) continue;
        char *val = colon + 1;
        while (*val == ' ' || *val == '\t') val++;
        val[strcspn(val, "\n")] = 0;
        if (!got_model && !strncmp(line, "model name", 10)) {
            snprintf(m->cpu, sizeof m->cpu, "%s", val);
            got_model = 1;
        } else if (!got_flags && (!strncmp(line, "flags", 5) || !strncmp(line, "Features", 8))) {
            got_flags = 1;
            size_t used = 0;
            for (int i = 0; wanted[i]; i++) {
                size_t wl = strlen(wanted[i]);
                for (char *p = val; (p = strstr(p, wanted[i])); p += wl) {
                    if ((p == val || p[-1] == ' ') && (p[wl] == ' ' || !p[wl])) {
                        used += (size_t)snprintf(m->flags + used, sizeof m->flags - used, "%s%s", used ? " " : "",
                                                 wanted[i]);
                        if (used >= sizeof m->flags) used = sizeof m->flags - 1;
                        break;
                    }
                }
            }
        }
    }
    free(line);
    if (f) fclose(f);
    long lc = sysconf(_SC_NPROCESSORS_ONLN);
    m->logical = lc > 0 ? (int)lc : 1;
    m->physical = it_physical_cores();
    if (!itscam_backend_describe(backend, m->isa, sizeof m->isa)) snprintf(m->isa, sizeof m->isa, "%s", backend);
}

/* ---- output ------------------------------------------------------------------------------- */

static json_t *jnum(double v) { return isfinite(v) ? json_real(round(v * 100) / 100) : json_null(); }

static json_t *lat_json(double p50, double p95, double p99) {
    json_t *l = json_object();
    json_object_set_new(l, "p50", jnum(p50));
    json_object_set_new(l, "p95", jnum(p95));
    json_object_set_new(l, "p99", jnum(p99));
    return l;
}

static json_t *probe_json(const run_result *r) {
    json_t *o = json_object();
    json_object_set_new(o, "cameras", json_integer(r->n));
    json_object_set_new(o, "pass", json_boolean(r->pass));
    if (!r->pass) json_object_set_new(o, "why", json_string(r->why));
    json_object_set_new(o, "detect_fps", jnum(r->detect_fps));
    json_object_set_new(o, "min_camera_detect_fps", jnum(r->min_detect_fps));
    json_object_set_new(o, "latency_ms", lat_json(r->p50, r->p95, r->p99));
    json_object_set_new(o, "cpu_percent", jnum(r->cpu_percent));
    json_object_set_new(o, "rss_bytes", json_integer(r->rss_bytes));
    return o;
}

static void print_probe(FILE *f, const run_result *r) {
    fprintf(f,
            "cameras %3d: detect %7.2f fps (slowest camera %5.2f), latency p50 %6.1f p95 %6.1f p99 %6.1f ms, "
            "CPU %4.0f%%, RSS %4lld MiB: %s%s%s\n",
            r->n, r->detect_fps, r->min_detect_fps, r->p50, r->p95, r->p99, r->cpu_percent, r->rss_bytes >> 20,
            r->pass ? "pass" : "fail (", r->pass ? "" : r->why, r->pass ? "" : ")");
    fflush(f);
}

static void print_table(const run_result *r, const bench_opts *o, const machine *m, const char *precision,
                        int threads, int workers, int max_batch, const char *backend) {
    printf("%-10s %10s %11s %9s %7s %10s %8s %8s %8s\n", "CAMERA", "DETECT_FPS", "DECODED_FPS", "SKIPPED", "STALE",
           "QUEUE_FULL", "P50_MS", "P95_MS", "P99_MS");
    for (int i = 0; i < r->n; i++) {
        const cam_result *c = &r->cams[i];
        printf("%-10s %10.2f %11.2f %9llu %7llu %10llu %8.1f %8.1f %8.1f\n", c->id, c->detect_fps, c->decoded_fps,
               (unsigned long long)c->skipped, (unsigned long long)c->stale, (unsigned long long)c->queue_full,
               c->p50, c->p95, c->p99);
    }
    printf("%-10s %10.2f %11s %9s %7s %10s %8.1f %8.1f %8.1f\n", "total", r->detect_fps, "", "", "", "", r->p50,
           r->p95, r->p99);
    printf("%d cameras at %g detect fps over %.1f s: CPU %.0f%% of one core, RSS %lld MiB", r->n, o->fps, r->seconds,
           r->cpu_percent, r->rss_bytes >> 20);
    if (r->failed) printf(", %llu frames failed", (unsigned long long)r->failed);
    if (r->cache_hits) printf(", %llu result cache hits", (unsigned long long)r->cache_hits);
    printf("\nSLA %g ms: %s\n", o->sla_ms, r->pass ? "met (p95, every camera >= 90% of its fps)" : r->why);
    printf("%s; %s, %s, %d threads, %d worker%s, max batch %d; %s; flags: %s\n", m->cpu, backend, precision, threads,
           workers, workers == 1 ? "" : "s", max_batch, m->isa, m->flags[0] ? m->flags : "-");
}

static json_t *report_json(const run_result *r, const bench_opts *o, const machine *m, const char *precision,
                           int threads, int workers, int max_batch, const char *backend) {
    json_t *root = json_object(), *res = json_array(), *tot = json_object(), *mj = json_object();
    json_object_set_new(root, "cameras", json_integer(r ? r->n : 0));
    json_object_set_new(root, "sla_ms", jnum(o->sla_ms));
    json_object_set_new(root, "detect_fps_target", jnum(o->fps));
    json_object_set_new(root, "duration_s", jnum(r ? r->seconds : 0));
    json_object_set_new(root, "model", json_string(o->model_path));
    for (int i = 0; r && i < r->n; i++) {
        const cam_result *c = &r->cams[i];
        json_t *e = json_object(), *d = json_object();
        json_object_set_new(e, "id", json_string(c->id));
        json_object_set_new(e, "detect_fps", jnum(c->detect_fps));
        json_object_set_new(e, "decoded_fps", jnum(c->decoded_fps));
        json_object_set_new(d, "skipped", json_integer((json_int_t)c->skipped));
        json_object_set_new(d, "stale", json_integer((json_int_t)c->stale));
        json_object_set_new(d, "queue_full", json_integer((json_int_t)c->queue_full));
        json_object_set_new(e, "dropped", d);
        json_object_set_new(e, "latency_ms", lat_json(c->p50, c->p95, c->p99));
        json_array_append_new(res, e);
    }
    json_object_set_new(root, "results", res);
    json_object_set_new(tot, "detect_fps", jnum(r ? r->detect_fps : 0));
    json_object_set_new(tot, "latency_ms", lat_json(r ? r->p50 : NAN, r ? r->p95 : NAN, r ? r->p99 : NAN));
    json_object_set_new(tot, "cpu_percent", jnum(r ? r->cpu_percent : NAN));
    json_object_set_new(tot, "rss_bytes", json_integer(r ? r->rss_bytes : 0));
    json_object_set_new(tot, "failed", json_integer(r ? (json_int_t)r->failed : 0));
    json_object_set_new(tot, "cache_hits", json_integer(r ? (json_int_t)r->cache_hits : 0));
    json_object_set_new(root, "totals", tot);
    json_object_set_new(mj, "cpu", json_string(m->cpu));
    json_object_set_new(mj, "flags", json_string(m->flags));
    json_object_set_new(mj, "logical_cpus", json_integer(m->logical));
    json_object_set_new(mj, "physical_cores", json_integer(m->physical));
    json_object_set_new(mj, "isa", json_string(m->isa));
    json_object_set_new(mj, "backend", json_string(backend));
    json_object_set_new(mj, "precision", json_string(precision));
    json_object_set_new(mj, "threads", json_integer(threads));
    json_object_set_new(mj, "workers", json_integer(workers));
    json_object_set_new(mj, "max_batch", json_integer(max_batch));
    json_object_set_new(root, "machine", mj);
    return root;
}

/* ---- arguments ---------------------------------------------------------------------------- */

static int parse_seconds(const char *s, double *out, int allow_zero) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !isfinite(v) || v < 0 || (v == 0 && !allow_zero) || v > MAX_SECONDS) return -1;
    *out = v;
    return 0;
}

static int parse_ms(const char *s, double *out) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !isfinite(v) || v < 0.001 || v > 3600e3) return -1; /* as metrics.sla_ms */
    *out = v;
    return 0;
}

static int parse_count(const char *s, int lo, int hi, int *out) {
    int v;
    if (cli_parse_int(s, &v) || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

/* Split LIST at commas into o->sources (pointers into `list`, which is modified). */
static int split_sources(char *list, bench_opts *o) {
    o->n_sources = 0;
    for (char *save = NULL, *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (o->n_sources == MAX_SOURCES) return -1;
        o->sources[o->n_sources++] = t;
    }
    return o->n_sources ? 0 : -1;
}

static int is_file(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static int by_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The .mp4 files of $ITSCAM_SHARED/videos, sorted, into storage owned by the caller. */
static int default_sources(bench_opts *o, char **owned) {
    const char *shared = getenv("ITSCAM_SHARED");
    char dir[2048];
    if (!shared || !*shared || snprintf(dir, sizeof dir, "%s/videos", shared) >= (int)sizeof dir) return -1;
    DIR *d = opendir(dir);
    if (!d) return -1;
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d)) && n < MAX_SOURCES) {
        size_t l = strlen(e->d_name);
        if (e->d_name[0] == '.' || l < 5 || strcmp(e->d_name + l - 4, ".mp4")) continue;
        size_t need = strlen(dir) + l + 2;
        if (!(owned[n] = malloc(need))) break;
        snprintf(owned[n], need, "%s/%s", dir, e->d_name);
        n++;
    }
    closedir(d);
    qsort(owned, (size_t)n, sizeof *owned, by_str);
    for (int i = 0; i < n; i++) o->sources[i] = owned[i];
    o->n_sources = n;
    return n ? 0 : -1;
}

/* ITSCAM_LOG=info|debug shows the library's log (the scheduler's batching decision, the
 * cameras' states) on stderr; the report itself never depends on it. */
static void bench_log(int level, const char *msg, void *user) {
    (void)user;
    (void)level;
    fprintf(stderr, "itscam: %s\n", msg);
}

int cli_camera_bench(int argc, char **argv) {
    const char *lv = getenv("ITSCAM_LOG");
    if (lv && *lv)
        itscam_log_set(bench_log, NULL, !strcmp(lv, "debug") ? ITSCAM_LOG_DEBUG : !strcmp(lv, "warn") ? ITSCAM_LOG_WARN
                                                                                          : ITSCAM_LOG_INFO);
    static const struct option opts[] = {
        { "cameras", required_argument, 0, 'n' },     { "streams", required_argument, 0, 'n' },
        { "source", required_argument, 0, 's' },      { "detect-fps", required_argument, 0, 'f' },
        { "duration", required_argument, 0, 'd' },    { "warmup", required_argument, 0, 'w' },
        { "model", required_argument, 0, 'm' },       { "backend", required_argument, 0, 'b' },
        { "precision", required_argument, 0, 'P' },   { "threads", required_argument, 0, 't' },
        { "workers", required_argument, 0, 'W' },     { "max-batch", required_argument, 0, 'B' },
        { "sla-ms", required_argument, 0, 'S' },      { "find-max", no_argument, 0, 'F' },
        { "max-cameras", required_argument, 0, 'X' }, { "result-cache", no_argument, 0, 'R' },
        { "json", no_argument, 0, 'j' },              { "help", no_argument, 0, 'h' },
        { 0, 0, 0, 0 },
    };
    bench_opts o = { .cameras = 0, .max_cameras = MAX_CAMS, .fps = 5, .duration = -1, .warmup = 5, .sla_ms = 100 };
    const char *backend = NULL, *precision = "auto", *threads = NULL, *workers = NULL, *max_batch = NULL;
    char *source_list = NULL, *owned[MAX_SOURCES] = { 0 }, model_default[2048];
    int c, li = -1, rc = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, &li)) != -1) {
        int v;
        switch (c) {
        case 'n': if (parse_count(optarg, 1, MAX_CAMS, &o.cameras)) goto bad; break;
        case 's': source_list = optarg; break;
        case 'f': if (parse_seconds(optarg, &o.fps, 0) || o.fps < 0.1 || o.fps > 120) goto bad; break;
        case 'd': if (parse_seconds(optarg, &o.duration, 0)) goto bad; break;
        case 'w': if (parse_seconds(optarg, &o.warmup, 1)) goto bad; break;
        case 'm': if (!*optarg) goto bad; o.model_path = optarg; break;
        case 'b': backend = optarg; break;
        case 'P': if (cli_parse_precision(optarg)) goto bad; precision = optarg; break;
        case 't': if (parse_count(optarg, 0, 1024, &v)) goto bad; threads = optarg; break;
        case 'W': if (parse_count(optarg, 1, 64, &v)) goto bad; workers = optarg; break;
        case 'B': if (parse_count(optarg, 1, IT_SCHED_MAX_BATCH, &v)) goto bad; max_batch = optarg; break;
        case 'S': if (parse_ms(optarg, &o.sla_ms)) goto bad; break;
        case 'F': o.find_max = 1; break;
        case 'X': if (parse_count(optarg, 1, MAX_CAMS, &o.max_cameras)) goto bad; break;
        case 'R': o.result_cache = 1; break;
        case 'j': o.json = 1; break;
        case 'h': cli_camera_bench_usage(stdout); return 0;
        default: fprintf(stderr, "run 'itscam performance --help' for the options\n"); return 2;
        }
        li = -1;
    }
    if (optind < argc) {
        fprintf(stderr, "itscam performance benchmark: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!o.cameras && !o.find_max) {
        fprintf(stderr, "itscam performance benchmark: --cameras N is required (or --find-max)\n");
        return 2;
    }
    if (!o.cameras) o.cameras = 1;
    if (o.cameras > o.max_cameras) {
        fprintf(stderr, "itscam performance benchmark: --cameras %d is above --max-cameras %d\n", o.cameras,
                o.max_cameras);
        return 2;
    }
    if (o.duration < 0) o.duration = o.find_max ? 15 : 20;
    if (source_list) {
        if (split_sources(source_list, &o)) {
            fprintf(stderr, "itscam performance benchmark: bad --source list (1..%d files)\n", MAX_SOURCES);
            return 2;
        }
    } else if (default_sources(&o, owned)) {
        fprintf(stderr, "itscam performance benchmark: --source FILE[,FILE...] is required "
                        "(or $ITSCAM_SHARED/videos/*.mp4 must exist)\n");
        rc = 2;
        goto out;
    }
    for (int i = 0; i < o.n_sources; i++)
        if (!is_file(o.sources[i])) {
            fprintf(stderr, "itscam performance benchmark: %s: not a readable file\n", o.sources[i]);
            rc = 2;
            goto out;
        }
    if (!o.model_path) {
        const char *shared = getenv("ITSCAM_SHARED");
        if (shared && *shared &&
            snprintf(model_default, sizeof model_default, "%s/models/yolo11n-320-dynamic.onnx", shared) <
                (int)sizeof model_default &&
            is_file(model_default))
            o.model_path = model_default;
        else {
            fprintf(stderr, "itscam performance benchmark: --model M is required "
                            "(or $ITSCAM_SHARED/models/yolo11n-320-dynamic.onnx must exist)\n");
            rc = 2;
            goto out;
        }
    }

    /* The scheduler as `itscam serve` would make it: its defaults, then these flags,
     * through the server's own configuration parser and translation. */
    srv_config *cfg = calloc(1, sizeof *cfg);
    if (!cfg) {
        rc = cli_fail("performance", ITSCAM_ERR_NOMEM);
        goto out;
    }
    srv_config_defaults(cfg);
    char err[1024], note[512];
    struct { const char *section, *key, *value, *flag; } set[] = {
        { "models", "model", o.model_path, "--model" },       { "models", "backend", backend, "--backend" },
        { "models", "precision", precision, "--precision" },  { "models", "threads", threads, "--threads" },
        { "models", "workers", workers, "--workers" },        { "batching", "max_batch", max_batch, "--max-batch" },
    };
    for (size_t i = 0; i < sizeof set / sizeof *set; i++)
        if (set[i].value && srv_config_set(cfg, set[i].section, set[i].key, set[i].value, set[i].flag, err, sizeof err)) {
            fprintf(stderr, "itscam performance benchmark: %s\n", err);
            free(cfg);
            rc = 2;
            goto out;
        }
    if (srv_config_validate(cfg, note, sizeof note, err, sizeof err)) {
        fprintf(stderr, "itscam performance benchmark: %s\n", err);
        free(cfg);
        rc = 2;
        goto out;
    }
    srv_config_cameras_threading(cfg, 1); /* as `serve` does with cameras */
    it_sched_params sp = srv_sched_params(cfg);
    itscam_detector_params det_defaults = itscam_detector_default_params();
    det_defaults.conf = cfg->conf;
    det_defaults.iou = cfg->iou;
    det_defaults.max_det = cfg->max_det;
    int n_threads = cfg->threads > 0 ? cfg->threads : it_physical_cores(); /* the cpu backend's default */

    itscam_model *model = NULL;
    bench_ctx b;
    memset(&b, 0, sizeof b);
    atomic_init(&b.measuring, 0);
    b.lat = calloc(MAX_CAMS, sizeof *b.lat);
    run_result best = { 0 }, cur = { 0 };
    json_t *probes = json_array();
    int have_best = 0, max_found = 0;
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sa.sa_flags = SA_RESETHAND; /* a second Ctrl-C kills as usual */
    sigemptyset(&sa.sa_mask);
    stop_requested = 0;
    sigaction(SIGINT, &sa, &old);
    if (!b.lat) {
        rc = cli_fail("performance", ITSCAM_ERR_NOMEM);
        goto done;
    }
    for (int i = 0; i < MAX_CAMS; i++) pthread_mutex_init(&b.lat[i].mu, NULL);
    itscam_status st = itscam_model_load(o.model_path, &model);
    if (st != ITSCAM_OK) {
        rc = cli_fail(o.model_path, st);
        goto done;
    }
    if ((st = it_sched_new("bench", model, &sp, NULL, &b.sched)) != ITSCAM_OK ||
        (st = it_sched_warmup(b.sched)) != ITSCAM_OK) {
        rc = cli_fail(NULL, st);
        goto done;
    }
    const char *prec_used = it_sched_precision(b.sched);
    const char *be_used = it_sched_active_backend(b.sched);
    int mb_used = it_sched_max_batch(b.sched);
    machine m;
    machine_read(&m, be_used);
    fprintf(stderr, "itscam performance: %s, %s %s, %d threads, %d worker%s, max batch %d%s%s; %g s warmup, %g s "
                    "measured per run; %d source%s\n",
            o.model_path, be_used, prec_used, n_threads, cfg->workers, cfg->workers == 1 ? "" : "s", mb_used,
            note[0] ? "; " : "", note, o.warmup, o.duration, o.n_sources, o.n_sources == 1 ? "" : "s");
    FILE *lines = o.json ? stderr : stdout;

    if (!o.find_max) {
        int r = run_cameras(&b, &o, &det_defaults, o.cameras, &cur);
        if (r < 0) rc = 1;
        else if (r == 0) {
            best = cur;
            memset(&cur, 0, sizeof cur);
            have_best = 1;
        }
    } else {
        /* Grow by doubling until a run fails (or the cap), then bisect between the
         * largest pass and the smallest failure. */
        int lo = 0, hi = o.max_cameras + 1, n = o.cameras;
        while (!stop_requested && hi - lo > 1) {
            int r = run_cameras(&b, &o, &det_defaults, n, &cur);
            if (r < 0) { rc = 1; break; }
            if (r > 0 || stop_requested) { /* a probe cut short decides nothing */
                run_result_free(&cur);
                break;
            }
            print_probe(lines, &cur);
            json_array_append_new(probes, probe_json(&cur));
            if (cur.pass) {
                lo = n;
                run_result_free(&best);
                best = cur;
                have_best = 1;
                memset(&cur, 0, sizeof cur);
            } else {
                hi = n;
                run_result_free(&cur);
            }
            if (hi > o.max_cameras) n = lo * 2 > o.max_cameras ? o.max_cameras : lo * 2; /* still growing */
            else n = lo + (hi - lo) / 2;
            if (n <= lo) break;
        }
        max_found = lo;
    }
    if (stop_requested) {
        fprintf(stderr, "itscam performance: interrupted\n");
        if (rc == 0) rc = 130;
    }
    if (rc == 0 || rc == 130) {
        if (o.json) {
            json_t *root = report_json(have_best ? &best : NULL, &o, &m, prec_used, n_threads, cfg->workers, mb_used,
                                       be_used);
            if (o.find_max) {
                json_object_set_new(root, "max_cameras", json_integer(max_found));
                json_object_set_new(root, "probes", json_incref(probes));
            }
            json_dumpf(root, stdout, JSON_COMPACT | JSON_REAL_PRECISION(10));
            fputc('\n', stdout);
            json_decref(root);
        } else {
            if (have_best) print_table(&best, &o, &m, prec_used, n_threads, cfg->workers, mb_used, be_used);
            if (o.find_max)
                printf("max_cameras: %d at %g detect fps (p95 <= %g ms, every camera >= %.0f%% of its fps)%s\n",
                       max_found, o.fps, o.sla_ms, FPS_TOLERANCE * 100, stop_requested ? " (interrupted)" : "");
        }
        if (rc == 0 && !o.find_max && !have_best) rc = 1;
    }
done:
    sigaction(SIGINT, &old, NULL);
    json_decref(probes);
    run_result_free(&cur);
    run_result_free(&best);
    it_sched_free(b.sched);
    itscam_model_free(model);
    if (b.lat) {
        for (int i = 0; i < MAX_CAMS; i++) {
            pthread_mutex_destroy(&b.lat[i].mu);
            free(b.lat[i].v);
        }
        free(b.lat);
    }
    free(cfg);
out:
    for (int i = 0; i < MAX_SOURCES; i++) free(owned[i]);
    return rc;
bad:
    fprintf(stderr, "itscam performance benchmark: bad value for --%s: '%s'\n", li >= 0 ? opts[li].name : "?",
            optarg);
    return 2;
}
