/* The vectorised SiLU (src/backend/cpu/silu.c): every variant this CPU runs against a
 * double reference (a dense sweep of [-100, 100], a sweep over float bit patterns, edge
 * values), bit for bit against the scalar variant (random arrays of odd lengths at
 * several alignments, so tails and masked loads are exercised at the end of exact-size
 * allocations), bf16 over all 65536 inputs, the fused u8 requantization, and the threaded
 * calls equal to the single-threaded ones. Deterministic (a fixed-seed generator).
 *
 * `test_silu --bench` instead prints ns/element for each variant and for oneDNN's
 * eltwise_swish at 64 KiB and 6.4 MB, with 1 and 2 threads (bench/silu_speed.sh). */
#include "backend/cpu/silu.h"
#include "check.h"

#include <dlfcn.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <time.h>

#ifdef ITSCAM_HAVE_CPU
#include <oneapi/dnnl/dnnl.h>
#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

static const it_silu_isa VARIANTS[] = {IT_SILU_SCALAR, IT_SILU_AVX2, IT_SILU_AVX512};
#define N_VARIANTS 3

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rng(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 32);
}
static float uniform(float lo, float hi) { return lo + (hi - lo) * (float)(rng() >> 8) * (1.0f / 16777216.0f); }

static double silu_ref(double x) { return x / (1.0 + exp(-x)); }

static uint32_t fbits(float f) {
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    return b;
}
static float bitsf(uint32_t b) {
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}
/* Same value, same bits; any NaN equals any NaN. */
static int same(float a, float b) { return (a != a && b != b) || fbits(a) == fbits(b); }

/* The worst error seen over normal results, for the report. */
static double worst_rel, worst_ulp;
static float worst_x;

/* Accuracy of one result: relative 2e-6 where |silu(x)| is a normal float, and for
 * x < -87 (where the kernel returns -0) an absolute error under 1e-35. */
static int accurate(float x, float y) {
    double ref = silu_ref(x);
    if (x != x) return y != y;
    if (isinf(x)) return x > 0 ? (isinf(y) && y > 0) : (y == 0 && signbit(y));
    double err = fabs((double)y - ref);
    if (x < -87.0f) return err < 1e-35 && y <= 0;
    if (fabs(ref) < FLT_MIN) return err < 1e-37;
    double rel = err / fabs(ref);
    double ulp = ldexp(1.0, ilogb((float)ref) - 23);
    if (rel > worst_rel) worst_rel = rel, worst_x = x;
    if (err / ulp > worst_ulp) worst_ulp = err / ulp;
    return rel <= 2e-6;
}

/* f32 of `in` through one variant (a copy), checked against the reference; the results
 * land in out. Returns the failures. */
static long sweep_check(const float *in, float *out, size_t n, it_silu_isa isa) {
    memcpy(out, in, n * sizeof *in);
    it_silu_f32(out, n, isa);
    long bad = 0;
    for (size_t i = 0; i < n; i++)
        if (!accurate(in[i], out[i]) && bad++ < 5)
            fprintf(stderr, "  %s: silu(%.9g) = %.9g, reference %.9g\n", it_silu_isa_name(isa), in[i], out[i],
                    silu_ref(in[i]));
    return bad;
}

static void test_sweeps(void) {
    /* A dense linear sweep of [-100, 100] and a sweep over float bit patterns of both
     * signs up to 100 (every magnitude from denormals up), plus edge values. */
    size_t n_lin = 2000001, n_bits = 0, step = 331;
    uint32_t top = fbits(100.0f);
    size_t cap = n_lin + 2 * ((size_t)top / step + 1) + 64;
    float *in = malloc(cap * sizeof *in), *out = malloc(cap * sizeof *out), *first = malloc(cap * sizeof *first);
    CHECK(in && out && first);
    if (!in || !out || !first) return;
    for (size_t i = 0; i < n_lin; i++) in[i] = (float)(-100.0 + 200.0 * (double)i / (double)(n_lin - 1));
    for (uint32_t b = 0; b <= top; b += step) {
        in[n_lin + n_bits++] = bitsf(b);
        in[n_lin + n_bits++] = bitsf(b | 0x80000000u);
    }
    const float edges[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, -NAN, FLT_MAX, -FLT_MAX, FLT_MIN, -FLT_MIN,
                           1e-40f, -1e-40f, 1e-8f, -1e-8f, 17.0f, -17.0f, 86.99f, -86.99f, 87.0f, -87.0f,
                           87.01f, -87.01f, 88.0f, -88.0f, 88.8f, -88.8f, 89.0f, -89.0f, 104.0f, -104.0f,
                           1e30f, -1e30f, 0.5f, -0.5f, 1.0f, -1.0f, -1.2784645f, 2.0f, -2.0f, 0.6931472f};
    size_t n = n_lin + n_bits, n_edges = sizeof edges / sizeof *edges;
    memcpy(in + n, edges, sizeof edges);
    n += n_edges;

    int have_first = 0;
    for (int v = 0; v < N_VARIANTS; v++) {
        it_silu_isa isa = VARIANTS[v];
        if (!it_silu_runs(isa)) {
            printf("sweep: %s skipped: this CPU lacks it\n", it_silu_isa_name(isa));
            continue;
        }
        worst_rel = worst_ulp = 0;
        long bad = sweep_check(in, out, n, isa);
        CHECKF(bad == 0, "%s: %ld of %zu results off", it_silu_isa_name(isa), bad, n);
        printf("sweep: %s: %zu inputs, max relative error %.3g (%.2f ulp, at x = %.9g)\n", it_silu_isa_name(isa),
               n, worst_rel, worst_ulp, worst_x);
        /* The edges by name. */
        const float *e = out + n - n_edges;
        CHECK(e[0] == 0 && !signbit(e[0]));
        CHECK(e[1] == 0 && signbit(e[1]));
        CHECK(isinf(e[2]) && e[2] > 0);
        CHECK(e[3] == 0 && signbit(e[3]));
        CHECK(e[4] != e[4] && e[5] != e[5]);
        CHECK(e[6] == FLT_MAX);
        CHECK(e[7] == 0 && signbit(e[7]));
        CHECK(e[30] == 1e30f && e[31] == 0 && signbit(e[31]));
        /* Every variant gives the bits of the first one run. */
        if (!have_first) {
            memcpy(first, out, n * sizeof *out);
            have_first = 1;
        } else {
            size_t diff = 0;
            for (size_t i = 0; i < n; i++) diff += !same(first[i], out[i]);
            CHECKF(diff == 0, "%s: %zu results differ from the first variant", it_silu_isa_name(isa), diff);
        }
    }
    free(in);
    free(out);
    free(first);
}

/* Odd lengths at alignment offsets 0..3 floats, ending exactly at the end of their
 * allocation (so ASan sees any read or write past it). Each variant equals scalar. */
static void test_lengths(void) {
    static const size_t lens[] = {1, 7, 15, 16, 17, 33, 1000003};
    for (size_t li = 0; li < sizeof lens / sizeof *lens; li++) {
        size_t n = lens[li];
        for (size_t off = 0; off < 4; off++) {
            float *src = malloc((n + off) * sizeof *src), *ref = malloc(n * sizeof *ref);
            uint16_t *hsrc = malloc((n + off) * sizeof *hsrc), *href = malloc(n * sizeof *href);
            uint8_t *q = malloc(n + off), *qref = malloc(n);
            float *buf = malloc((n + off) * sizeof *buf);
            uint16_t *h = malloc((n + off) * sizeof *h);
            CHECK(src && ref && hsrc && href && q && qref && buf && h);
            if (!src || !ref || !hsrc || !href || !q || !qref || !buf || !h) return;
            for (size_t i = 0; i < n; i++) {
                src[off + i] = uniform(-12.0f, 12.0f);
                hsrc[off + i] = (uint16_t)(fbits(uniform(-12.0f, 12.0f)) >> 16);
            }
            memcpy(ref, src + off, n * sizeof *ref);
            it_silu_f32(ref, n, IT_SILU_SCALAR);
            memcpy(href, hsrc + off, n * sizeof *href);
            it_silu_bf16(href, n, IT_SILU_SCALAR);
            it_silu_quant_u8(src + off, qref, n, 255.0f / 12.3f, 6.0f, 255, IT_SILU_SCALAR);
            for (int v = 1; v < N_VARIANTS; v++) {
                it_silu_isa isa = VARIANTS[v];
                if (!it_silu_runs(isa)) continue;
                memcpy(buf + off, src + off, n * sizeof *buf);
                it_silu_f32(buf + off, n, isa);
                CHECKF(memcmp(buf + off, ref, n * sizeof *ref) == 0, "%s f32 n=%zu off=%zu", it_silu_isa_name(isa),
                       n, off);
                memcpy(h + off, hsrc + off, n * sizeof *h);
                it_silu_bf16(h + off, n, isa);
                CHECKF(memcmp(h + off, href, n * sizeof *href) == 0, "%s bf16 n=%zu off=%zu",
                       it_silu_isa_name(isa), n, off);
                it_silu_quant_u8(src + off, q + off, n, 255.0f / 12.3f, 6.0f, 255, isa);
                CHECKF(memcmp(q + off, qref, n) == 0, "%s u8 n=%zu off=%zu", it_silu_isa_name(isa), n, off);
            }
            if (n == 1000003 && off == 0) {
                /* The scalar results against the reference too. */
                long bad = 0;
                for (size_t i = 0; i < n; i++) bad += !accurate(src[i], ref[i]);
                CHECKF(bad == 0, "scalar: %ld random results off", bad);
            }
            free(src), free(ref), free(hsrc), free(href), free(q), free(qref), free(buf), free(h);
        }
    }
    printf("lengths: every runnable variant equals scalar at lengths 1..1000003, offsets 0..3\n");
}

static uint16_t bf16_rne(float f) {
    uint32_t b = fbits(f);
    if (f != f) return (uint16_t)((b >> 16) | 0x40u);
    return (uint16_t)((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
}
/* bf16 patterns as a monotonic integer line (for counting ulps across zero). */
static int32_t bf16_ord(uint16_t h) { return h & 0x8000u ? -(int32_t)(h & 0x7fffu) : (int32_t)h; }

/* Every bf16 input: the result is the round to nearest even of the f32 result, and
 * within 1 bf16 ulp of the double reference rounded to bf16. */
static void test_bf16(void) {
    uint16_t *h = malloc(65536 * sizeof *h);
    CHECK(h != NULL);
    if (!h) return;
    for (int v = 0; v < N_VARIANTS; v++) {
        it_silu_isa isa = VARIANTS[v];
        if (!it_silu_runs(isa)) {
            printf("bf16: %s skipped: this CPU lacks it\n", it_silu_isa_name(isa));
            continue;
        }
        for (uint32_t i = 0; i < 65536; i++) h[i] = (uint16_t)i;
        it_silu_bf16(h, 65536, isa);
        long bad = 0, far = 0;
        int32_t worst = 0;
        for (uint32_t i = 0; i < 65536; i++) {
            float x = bitsf(i << 16);
            float y32 = x;
            it_silu_f32(&y32, 1, IT_SILU_SCALAR);
            if (h[i] != bf16_rne(y32) && !(x != x && (h[i] & 0x7fc0u) == 0x7fc0u)) bad++;
            if (x != x) continue;
            uint16_t want = bf16_rne((float)silu_ref(x));
            int32_t d = abs(bf16_ord(h[i]) - bf16_ord(want));
            if (x < -87.0f) d = h[i] == 0x8000u ? 0 : d;   /* -0 where the kernel flushes */
            if (d > worst) worst = d;
            if (d > 1 && far++ < 5)
                fprintf(stderr, "  bf16 %s: silu(%g) = 0x%04x, reference 0x%04x\n", it_silu_isa_name(isa), x, h[i],
                        want);
        }
        CHECKF(bad == 0, "%s: %ld bf16 results are not the rounded f32 result", it_silu_isa_name(isa), bad);
        CHECKF(far == 0, "%s: %ld bf16 results more than 1 ulp off", it_silu_isa_name(isa), far);
        printf("bf16: %s: all 65536 inputs, max %d bf16 ulp from the rounded reference\n", it_silu_isa_name(isa),
               (int)worst);
    }
    free(h);
}

/* The fused requantization: within one level of the reference, clipped to [0, levels],
 * NaN at level 0, every variant the same bits. */
static void test_quant(void) {
    size_t n = 100003;
    float *x = malloc(n * sizeof *x);
    uint8_t *q = malloc(n), *q0 = malloc(n);
    CHECK(x && q && q0);
    if (!x || !q || !q0) return;
    for (size_t i = 0; i < n; i++) x[i] = uniform(-9.0f, 9.0f);
    x[0] = NAN, x[1] = INFINITY, x[2] = -INFINITY, x[3] = -0.2784645f, x[4] = 1e30f;
    const struct { float lo, hi; int levels; } cfg[] = {{-0.2785f, 9.0f, 255}, {-0.2785f, 4.0f, 255},
                                                       {-1.0f, 6.0f, 127}, {0.0f, 2.0f, 255}};
    for (size_t c = 0; c < sizeof cfg / sizeof *cfg; c++) {
        float inv = (float)cfg[c].levels / (cfg[c].hi - cfg[c].lo), zp = nearbyintf(-cfg[c].lo * inv);
        int have0 = 0;
        for (int v = 0; v < N_VARIANTS; v++) {
            it_silu_isa isa = VARIANTS[v];
            if (!it_silu_runs(isa)) continue;
            it_silu_quant_u8(x, q, n, inv, zp, cfg[c].levels, isa);
            long far = 0, over = 0;
            for (size_t i = 0; i < n; i++) {
                if (q[i] > cfg[c].levels) over++;
                if (x[i] != x[i]) {
                    CHECK(q[i] == 0);
                    continue;
                }
                double s = silu_ref(x[i]);
                if (isnan(s)) s = 0;   /* -inf */
                double r = nearbyint(s * inv + zp);
                r = r < 0 ? 0 : r > cfg[c].levels ? cfg[c].levels : r;
                if (fabs(r - q[i]) > 1 && far++ < 5)
                    fprintf(stderr, "  u8 %s: x %g -> %d, reference %g\n", it_silu_isa_name(isa), x[i], q[i], r);
            }
            CHECKF(far == 0 && over == 0, "%s config %zu: %ld levels off by more than 1, %ld above levels",
                   it_silu_isa_name(isa), c, far, over);
            if (!have0) memcpy(q0, q, n), have0 = 1;
            else CHECKF(memcmp(q0, q, n) == 0, "%s config %zu differs from scalar", it_silu_isa_name(isa), c);
        }
    }
    printf("quant_u8: within one level of the reference, every variant the same\n");
    free(x), free(q), free(q0);
}

/* Threads 1 and 2 give the bits of the single-threaded call, for sizes around the
 * threshold and not multiples of a chunk. */
static void test_threads(void) {
    int gomp = dlsym(RTLD_DEFAULT, "GOMP_parallel") != NULL;
    printf("threads: libgomp %s\n", gomp ? "loaded (teams run)" : "absent (the caller runs everything)");
    static const size_t lens[] = {100, 16383, 16384, 16384 + 17, 100003, 1000003};
    for (size_t li = 0; li < sizeof lens / sizeof *lens; li++) {
        size_t n = lens[li];
        float *src = malloc(n * sizeof *src), *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
        uint16_t *ha = malloc(n * sizeof *ha), *hb = malloc(n * sizeof *hb);
        uint8_t *qa = malloc(n), *qb = malloc(n);
        CHECK(src && a && b && ha && hb && qa && qb);
        if (!src || !a || !b || !ha || !hb || !qa || !qb) return;
        for (size_t i = 0; i < n; i++) src[i] = uniform(-10.0f, 10.0f);
        memcpy(a, src, n * sizeof *a);
        it_silu_f32(a, n, IT_SILU_AUTO);
        for (size_t i = 0; i < n; i++) ha[i] = (uint16_t)(fbits(src[i]) >> 16);
        it_silu_bf16(ha, n, IT_SILU_AUTO);
        it_silu_quant_u8(src, qa, n, 25.0f, 7.0f, 255, IT_SILU_AUTO);
        for (int t = 1; t <= 2; t++) {
            memcpy(b, src, n * sizeof *b);
            it_silu_f32_mt(b, n, t);
            CHECKF(memcmp(a, b, n * sizeof *a) == 0, "f32_mt n=%zu threads=%d", n, t);
            for (size_t i = 0; i < n; i++) hb[i] = (uint16_t)(fbits(src[i]) >> 16);
            it_silu_bf16_mt(hb, n, t);
            CHECKF(memcmp(ha, hb, n * sizeof *ha) == 0, "bf16_mt n=%zu threads=%d", n, t);
            memset(qb, 0xee, n);
            it_silu_quant_u8_mt(src, qb, n, 25.0f, 7.0f, 255, t);
            CHECKF(memcmp(qa, qb, n) == 0, "quant_u8_mt n=%zu threads=%d", n, t);
        }
        free(src), free(a), free(b), free(ha), free(hb), free(qa), free(qb);
    }
    printf("threads: threads 1 and 2 equal the single-threaded results\n");
}

static void test_api(void) {
    CHECK(it_silu_runs(IT_SILU_AUTO) && it_silu_runs(IT_SILU_SCALAR));
    CHECK(it_silu_runs(it_silu_best()));
    CHECK(!it_silu_runs((it_silu_isa)42));
    CHECK(strcmp(it_silu_isa_name(IT_SILU_AVX512), "avx512") == 0);
    CHECK(strcmp(it_silu_isa_name((it_silu_isa)42), "?") == 0);
    /* An unknown variant runs as AUTO; n = 0 and NULL do nothing. */
    float v[3] = {1.0f, -1.0f, 0.0f}, w[3] = {1.0f, -1.0f, 0.0f};
    it_silu_f32(v, 3, (it_silu_isa)42);
    it_silu_f32(w, 3, IT_SILU_SCALAR);
    CHECK(memcmp(v, w, sizeof v) == 0);
    it_silu_f32(NULL, 0, IT_SILU_AUTO);
    it_silu_f32(v, 0, IT_SILU_AUTO);
    CHECK(memcmp(v, w, sizeof v) == 0);
    printf("best variant on this CPU: %s (avx2 %s, avx512 %s)\n", it_silu_isa_name(it_silu_best()),
           it_silu_runs(IT_SILU_AVX2) ? "yes" : "no", it_silu_runs(IT_SILU_AVX512) ? "yes" : "no");
}

/* ---- benchmark ---------------------------------------------------------------------- */

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

typedef void (*omp_set_fn)(int);

#if defined(__x86_64__) || defined(__i386__)
static void set_ftz(void *unused) {
    (void)unused;
    _mm_setcsr(_mm_getcsr() | 0x8040u);
}
#endif

/* FTZ/DAZ on the caller and every worker of a team of `threads`, as the backend runs. */
static void ftz_everywhere(int threads) {
#if defined(__x86_64__) || defined(__i386__)
    typedef void (*par_fn)(void (*)(void *), void *, unsigned, unsigned);
    par_fn par = (par_fn)dlsym(RTLD_DEFAULT, "GOMP_parallel");
    set_ftz(NULL);
    if (par) par(set_ftz, NULL, (unsigned)threads, 0);
#else
    (void)threads;
#endif
}

enum { B_F32, B_BF16, B_U8 };

typedef struct bench_case {
    const char *name;
    int kind;
    int isa;          /* it_silu_isa, or -1: the _mt call, or -2: oneDNN */
} bench_case;

/* The median and the minimum ns/element over reps, refilling the input before each
 * call (outside the timing) so that every call sees the same data. */
static void bench_one(const bench_case *c, size_t n, int threads, const float *src, float *x, uint16_t *h,
                      uint8_t *q, dnnl_primitive_t prim, dnnl_stream_t stream, dnnl_memory_t mem) {
    enum { MAX_REPS = 400 };
    double t[MAX_REPS];
    int reps = 0;
    double total = 0;
    while (reps < MAX_REPS && (reps < 5 || total < 0.3e9)) {
        if (c->kind == B_F32) memcpy(x, src, n * sizeof *x);
        else if (c->kind == B_BF16)
            for (size_t i = 0; i < n; i++) h[i] = (uint16_t)(fbits(src[i]) >> 16);
        double t0 = now_ns();
        if (c->isa == -2) {
            dnnl_exec_arg_t args[2] = {{DNNL_ARG_SRC, mem}, {DNNL_ARG_DST, mem}};
            dnnl_primitive_execute(prim, stream, 2, args);
            dnnl_stream_wait(stream);
        } else if (c->isa == -1) {
            if (c->kind == B_F32) it_silu_f32_mt(x, n, threads);
            else if (c->kind == B_BF16) it_silu_bf16_mt(h, n, threads);
            else it_silu_quant_u8_mt(src, q, n, 40.0f, 11.0f, 255, threads);
        } else {
            if (c->kind == B_F32) it_silu_f32(x, n, (it_silu_isa)c->isa);
            else if (c->kind == B_BF16) it_silu_bf16(h, n, (it_silu_isa)c->isa);
            else it_silu_quant_u8(src, q, n, 40.0f, 11.0f, 255, (it_silu_isa)c->isa);
        }
        t[reps] = now_ns() - t0;
        total += t[reps++];
    }
    for (int i = 1; i < reps; i++)   /* insertion sort: reps is small */
        for (int k = i; k > 0 && t[k] < t[k - 1]; k--) {
            double s = t[k];
            t[k] = t[k - 1], t[k - 1] = s;
        }
    printf("  %-26s %2d thr  %8.3f ns/elt (min %.3f, %d reps)\n", c->name, threads, t[reps / 2] / (double)n,
           t[0] / (double)n, reps);
    fflush(stdout);
}

/* oneDNN's eltwise_swish (alpha 1), forward inference, in place on a 1-D array of n. */
static int dnnl_swish(dnnl_engine_t eng, size_t n, dnnl_data_type_t dt, void *data, dnnl_primitive_t *prim,
                      dnnl_memory_t *mem) {
    dnnl_memory_desc_t md;
    dnnl_dims_t d = {(dnnl_dim_t)n};
    dnnl_eltwise_desc_t ed;
    dnnl_primitive_desc_t pd = NULL;
    if (dnnl_memory_desc_init_by_tag(&md, 1, d, dt, dnnl_a) != dnnl_success) return -1;
    if (dnnl_eltwise_forward_desc_init(&ed, dnnl_forward_inference, dnnl_eltwise_swish, &md, 1.0f, 0.0f) !=
        dnnl_success)
        return -1;
    if (dnnl_primitive_desc_create(&pd, &ed, NULL, eng, NULL) != dnnl_success) return -1;
    const char *impl = NULL;
    dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
    printf("  (oneDNN %s swish implementation: %s)\n", dt == dnnl_f32 ? "f32" : "bf16", impl ? impl : "?");
    dnnl_status_t s = dnnl_primitive_create(prim, pd);
    dnnl_primitive_desc_destroy(pd);
    if (s != dnnl_success) return -1;
    if (dnnl_memory_create(mem, &md, eng, data) != dnnl_success) {
        dnnl_primitive_destroy(*prim);
        return -1;
    }
    return 0;
}

static int bench(void) {
    static const size_t sizes[] = {16384, 1600000};
    static const char *labels[] = {"64 KiB f32 (16384)", "6.4 MB f32 (1.6M)"};
    omp_set_fn set_threads = (omp_set_fn)dlsym(RTLD_DEFAULT, "omp_set_num_threads");
    dnnl_engine_t eng = NULL;
    dnnl_stream_t stream = NULL;
    if (dnnl_engine_create(&eng, dnnl_cpu, 0) != dnnl_success ||
        dnnl_stream_create(&stream, eng, dnnl_stream_default_flags) != dnnl_success) {
        fprintf(stderr, "oneDNN engine: failed\n");
        return 1;
    }
    printf("best variant: %s; libgomp %s; oneDNN %d.%d.%d\n", it_silu_isa_name(it_silu_best()),
           set_threads ? "loaded" : "absent", dnnl_version()->major, dnnl_version()->minor, dnnl_version()->patch);
    for (size_t si = 0; si < 2; si++) {
        size_t n = sizes[si];
        float *src = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
        float *x = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
        uint16_t *h = aligned_alloc(64, (n * sizeof(uint16_t) + 63) / 64 * 64);
        uint8_t *q = aligned_alloc(64, (n + 63) / 64 * 64);
        if (!src || !x || !h || !q) return 1;
        for (size_t i = 0; i < n; i++) src[i] = uniform(-8.0f, 8.0f);
        memset(q, 0, n);
        printf("%s:\n", labels[si]);
        for (int threads = 1; threads <= 2; threads++) {
            if (set_threads) set_threads(threads);
            ftz_everywhere(threads);
            dnnl_primitive_t pf = NULL, pb = NULL;
            dnnl_memory_t mf = NULL, mb = NULL;
            int have_f = dnnl_swish(eng, n, dnnl_f32, x, &pf, &mf) == 0;
            int have_b = dnnl_swish(eng, n, dnnl_bf16, h, &pb, &mb) == 0;
            static const char *kinds[] = {"f32", "bf16", "u8"};
            for (int kind = B_F32; kind <= B_U8; kind++) {
                char name[64];
                if (threads == 1) {
                    for (int v = 0; v < N_VARIANTS; v++) {
                        if (!it_silu_runs(VARIANTS[v])) continue;
                        snprintf(name, sizeof name, "silu %s %s", kinds[kind], it_silu_isa_name(VARIANTS[v]));
                        bench_case c = {name, kind, (int)VARIANTS[v]};
                        bench_one(&c, n, threads, src, x, h, q, NULL, stream, NULL);
                    }
                } else {
                    snprintf(name, sizeof name, "silu %s _mt (%s)", kinds[kind], it_silu_isa_name(it_silu_best()));
                    bench_case c = {name, kind, -1};
                    bench_one(&c, n, threads, src, x, h, q, NULL, stream, NULL);
                }
                if ((kind == B_F32 && have_f) || (kind == B_BF16 && have_b)) {
                    snprintf(name, sizeof name, "oneDNN eltwise_swish %s", kinds[kind]);
                    bench_case c = {name, kind, -2};
                    bench_one(&c, n, threads, src, x, h, q, kind == B_F32 ? pf : pb, stream,
                              kind == B_F32 ? mf : mb);
                }
            }
            if (have_f) dnnl_primitive_destroy(pf), dnnl_memory_destroy(mf);
            if (have_b) dnnl_primitive_destroy(pb), dnnl_memory_destroy(mb);
        }
        free(src), free(x), free(h), free(q);
    }
    dnnl_stream_destroy(stream);
    dnnl_engine_destroy(eng);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--bench") == 0) return bench();
    /* Referencing oneDNN keeps libdnnl, and with it libgomp, loaded, so that the
     * threaded calls really run on a team here as they do in the backend. */
    printf("oneDNN %d.%d\n", dnnl_version()->major, dnnl_version()->minor);
    test_api();
    test_sweeps();
    test_lengths();
    test_bf16();
    test_quant();
    test_threads();
    return check_done("test_silu");
}
#else
int main(void) { SKIP("the cpu backend (and with it silu.c) is not built: oneDNN was not found"); }
#endif
