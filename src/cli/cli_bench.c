/* itscam bench: time the engine on one model (raw tensor in, raw tensor out), reporting
 * latency percentiles and throughput per configuration. */
#include "cli/cli.h"
#include "core/core.h"

#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CONFIGS 16
#define MAX_ITERS 100000

void cli_bench_usage(FILE *f) {
    fprintf(f,
            "usage: itscam bench --model MODEL [options]\n\n"
            "Time inference on synthetic input (or --input, a raw float32 NCHW file).\n\n"
            "options:\n"
            "  --model M          ONNX model\n"
            "  --backend B        ref or cpu (default: the fastest compiled in)\n"
            "  --batch LIST       batch sizes, e.g. 1,4,8 (default 1; >1 needs a dynamic-batch model)\n"
            "  --threads N        backend threads (default: physical cores)\n"
            "  --warmup N         untimed runs first (default 3)\n"
            "  --iterations N     timed runs per configuration (default 20)\n"
            "  --duration S       run for S seconds instead of a fixed count\n"
            "  --input FILE       raw float32 input for batch 1 (repeated for larger batches)\n"
            "  --json             print {\"results\":[...]} instead of a table\n");
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(const double *v, int n, double p) {
    if (n <= 0) return 0;
    double k = p / 100.0 * (n - 1);
    int lo = (int)floor(k), hi = (int)ceil(k);
    return v[lo] + (v[hi] - v[lo]) * (k - lo);
}

int cli_bench(int argc, char **argv) {
    static const struct option opts[] = {
        { "model", required_argument, 0, 'm' }, { "backend", required_argument, 0, 'b' },
        { "batch", required_argument, 0, 'B' }, { "threads", required_argument, 0, 't' },
        { "warmup", required_argument, 0, 'w' }, { "iterations", required_argument, 0, 'n' },
        { "duration", required_argument, 0, 'd' }, { "input", required_argument, 0, 'i' },
        { "json", no_argument, 0, 'j' }, { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 },
    };
    const char *model = NULL, *input = NULL;
    itscam_session_params sp = itscam_session_default_params();
    int batches[MAX_CONFIGS] = { 1 }, nb = 1, warmup = 3, iters = 20, json = 0;
    float duration = 0;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:b:B:t:w:n:d:i:jh", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'b': sp.backend = optarg; break;
        case 'B': {
            nb = 0;
            for (char *p = optarg; *p && nb < MAX_CONFIGS;) {
                char *end;
                long v = strtol(p, &end, 10);
                if (end == p || v < 1 || v > 256) goto bad;
                batches[nb++] = (int)v;
                p = *end == ',' ? end + 1 : end;
                if (*end && *end != ',') goto bad;
            }
            if (!nb) goto bad;
            break;
        }
        case 't': if (cli_parse_int(optarg, &sp.threads) || sp.threads < 0) goto bad; break;
        case 'w': if (cli_parse_int(optarg, &warmup) || warmup < 0) goto bad; break;
        case 'n': if (cli_parse_int(optarg, &iters) || iters < 1 || iters > MAX_ITERS) goto bad; break;
        case 'd': if (cli_parse_float(optarg, &duration) || !(duration > 0 && duration < 86400)) goto bad; break;
        case 'i': input = optarg; break;
        case 'j': json = 1; break;
        case 'h': cli_bench_usage(stdout); return 0;
        default: cli_bench_usage(stderr); return 2;
        }
    }
    if (!model) {
        fprintf(stderr, "itscam bench: --model is required\n");
        return 2;
    }
    itscam_model *m = NULL;
    itscam_session *s = NULL;
    itscam_status st = itscam_model_load(model, &m);
    if (st != ITSCAM_OK) return cli_fail(model, st);
    if ((st = itscam_session_create(m, &sp, &s)) != ITSCAM_OK) {
        itscam_model_free(m);
        return cli_fail(model, st);
    }
    const itscam_model_info *info = itscam_model_get_info(m);
    int h = info->input_dims[2] > 0 ? (int)info->input_dims[2] : info->imgsz[0];
    int w = info->input_dims[3] > 0 ? (int)info->input_dims[3] : info->imgsz[1];
    size_t plane = (size_t)3 * h * w;
    int maxb = 1;
    for (int i = 0; i < nb; i++) maxb = IT_MAX(maxb, batches[i]);
    float *buf = it_malloc(plane * (size_t)maxb * sizeof(float));
    double *lat = it_malloc(sizeof(double) * MAX_ITERS);
    int rc = 0;
    if (!buf || !lat) { rc = cli_fail("bench", ITSCAM_ERR_NOMEM); goto out; }
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
    const char *be = sp.backend ? sp.backend : itscam_backends()[0];
    if (json) printf("{\"results\":[");
    else printf("%-8s %5s %7s %9s %9s %9s %9s %12s\n", "backend", "batch", "threads", "p50 ms", "p90 ms", "p95 ms", "p99 ms", "images/s");
    for (int ci = 0; ci < nb; ci++) {
        int64_t dims[4] = { batches[ci], 3, h, w }, od[8];
        int ond;
        const float *out;
        for (int i = 0; i < warmup + 1; i++)
            if ((st = itscam_session_run(s, buf, dims, &out, od, &ond)) != ITSCAM_OK) { rc = cli_fail(model, st); goto out; }
        int n = 0;
        double start = it_now_ms();
        while (n < MAX_ITERS) {
            double t0 = it_now_ms();
            if ((st = itscam_session_run(s, buf, dims, &out, od, &ond)) != ITSCAM_OK) { rc = cli_fail(model, st); goto out; }
            lat[n++] = it_now_ms() - t0;
            if (duration > 0 ? it_now_ms() - start >= duration * 1000 : n >= iters) break;
        }
        double total = it_now_ms() - start;
        qsort(lat, (size_t)n, sizeof *lat, cmp_double);
        double ips = total > 0 ? n * batches[ci] * 1000.0 / total : 0;
        if (json)
            printf("%s{\"backend\":\"%s\",\"precision\":\"fp32\",\"batch\":%d,\"threads\":%d,\"iterations\":%d,"
                   "\"latency_ms\":{\"p50\":%.3f,\"p90\":%.3f,\"p95\":%.3f,\"p99\":%.3f},\"throughput_ips\":%.2f}",
                   ci ? "," : "", be, batches[ci], sp.threads, n, pct(lat, n, 50), pct(lat, n, 90), pct(lat, n, 95),
                   pct(lat, n, 99), ips);
        else
            printf("%-8s %5d %7d %9.2f %9.2f %9.2f %9.2f %12.1f\n", be, batches[ci], sp.threads, pct(lat, n, 50),
                   pct(lat, n, 90), pct(lat, n, 95), pct(lat, n, 99), ips);
    }
    if (json) printf("]}\n");
out:
    it_free(buf);
    it_free(lat);
    itscam_session_free(s);
    itscam_model_free(m);
    return rc;
bad:
    fprintf(stderr, "itscam bench: bad option value '%s'\n", optarg);
    return 2;
}
