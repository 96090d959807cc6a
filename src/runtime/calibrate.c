/* Calibration: measure activation ranges, either with a backend running the whole plan
 * once per input (every tracked value kept alive and read from its plain copy after the
 * run) or with the ref kernels one step at a time (recording each step's outputs before
 * the arena reuses their memory). */
#include "runtime/calibrate.h"
#include "graph/plan.h"

#include <math.h>
#include <string.h>

/* Bins per value. Even, so that widening merges bins pairwise; with the range at most
 * twice the true span after widening, the 0.01% points land within 1/1024 of the span. */
#define HIST_BINS 2048

typedef struct tracked {
    int v;                 /* graph value index */
    double mn, mx;         /* extremes seen */
    int seen;              /* 1 once a finite value arrived */
    double base, w;        /* histogram: bin i covers [base + i*w, base + (i+1)*w) */
    uint64_t *hist;        /* HIST_BINS counts; NULL for minmax */
    uint64_t total;
} tracked;

struct it_calib_collector {
    const it_graph *g;
    it_plan *p;            /* planned on g (ref), or on `view` (a backend) */
    const it_backend *be;  /* NULL: the ref kernels, one step at a time */
    void *prog;            /* be's program for p */
    it_graph view;         /* g with every tracked value made a graph output */
    it_value *view_values; /* owned arrays of the view; everything else is g's */
    int *view_outputs;
    size_t mem_bytes;      /* activations (+ the backend's working memory) */
    it_calib_method method;
    double percentile;
    int n_added;
    int n_tr;
    tracked *tr;
    int *track_of;         /* per graph value: index into tr, -1 when not tracked */
};

void it_calib_collect_free(it_calib_collector *c) {
    if (!c) return;
    /* the program points into the plan, the plan into the view */
    if (c->prog) c->be->destroy(c->prog);
    it_plan_free(c->p);
    it_free(c->view_values);
    it_free(c->view_outputs);
    for (int i = 0; i < c->n_tr; i++) it_free(c->tr[i].hist);
    it_free(c->tr);
    it_free(c->track_of);
    it_free(c);
}

static itscam_status track(it_calib_collector *c, int v) {
    if (v < 0 || c->track_of[v] >= 0 || c->p->t[v].dtype != IT_F32 || c->p->folded[v]) return ITSCAM_OK;
    tracked *t = &c->tr[c->n_tr];
    memset(t, 0, sizeof *t);
    t->v = v;
    if (c->method == IT_CALIB_PERCENTILE && !(t->hist = it_calloc(HIST_BINS, sizeof *t->hist)))
        return it_err(ITSCAM_ERR_NOMEM, "out of memory for calibration histograms");
    c->track_of[v] = c->n_tr++;
    return ITSCAM_OK;
}

static double mib(size_t b) { return (double)b / (1024.0 * 1024.0); }

/* The backend path: plan a view of the graph in which every tracked value is a graph
 * output, so that the arena keeps them all alive to the end of the run and the backend
 * writes a plain NCHW copy of each into its arena slot. The view shares everything with
 * g but the values (for is_output) and the outputs list. Marking the tracked values
 * changes no fusion: Conv+Sigmoid+Mul fuses only when the Conv's and the Sigmoid's own
 * outputs have no other reader, and those are not step outputs of the fused plan, so not
 * tracked. The step outputs are checked to be the same all the same. */
static itscam_status begin_backend(it_calib_collector *c, const it_tensor *in, const it_calib_exec *ex) {
    const it_graph *g = c->g;
    size_t limit = ex->max_bytes ? ex->max_bytes : IT_CALIB_MAX_BYTES;
    c->view = *g;
    c->view_values = it_malloc(sizeof *c->view_values * (size_t)(g->n_values ? g->n_values : 1));
    c->view_outputs = it_malloc(sizeof(int) * (size_t)(g->n_outputs + c->n_tr + 1));
    if (!c->view_values || !c->view_outputs) return it_err(ITSCAM_ERR_NOMEM, "out of memory");
    memcpy(c->view_values, g->values, sizeof *c->view_values * (size_t)g->n_values);
    int n_out = 0;
    for (int k = 0; k < g->n_outputs; k++) c->view_outputs[n_out++] = g->outputs[k];
    for (int i = 0; i < c->n_tr; i++) {
        int v = c->tr[i].v;
        if (!c->view_values[v].is_output) c->view_outputs[n_out++] = v;
        c->view_values[v].is_output = 1;
    }
    c->view.values = c->view_values;
    c->view.outputs = c->view_outputs;
    c->view.n_outputs = n_out;

    it_plan *vp = NULL;
    itscam_status st = it_plan_create_unbound(&c->view, in, 1, &vp);
    if (st != ITSCAM_OK) return st;
    it_plan_free(c->p);
    c->p = vp;
    int n_seen = 0;
    for (int i = 0; i < vp->n_steps; i++)
        for (int k = 0; k < vp->steps[i].n_out; k++) {
            int v = vp->steps[i].out[k];
            if (v < 0 || vp->t[v].dtype != IT_F32 || vp->folded[v]) continue;
            if (c->track_of[v] < 0)
                return it_err(ITSCAM_ERR_INTERNAL, "%s: calibration plan differs: '%s' is not tracked", g->path,
                              g->values[v].name);
            n_seen++;
        }
    if (n_seen + 1 != c->n_tr) /* + the graph input */
        return it_err(ITSCAM_ERR_INTERNAL, "%s: calibration plan differs: %d step outputs, %d tracked", g->path,
                      n_seen, c->n_tr - 1);
    if (vp->arena_bytes > limit)
        return it_err(ITSCAM_ERR_NOMEM,
                      "%s: calibration on the %s backend keeps every activation alive at once: %.0f MiB, above "
                      "the %.0f MiB limit", g->path, c->be->name, mib(vp->arena_bytes), mib(limit));
    uint8_t *arena = it_aligned_alloc(vp->arena_bytes ? vp->arena_bytes : IT_ALIGN);
    if (!arena) return it_err(ITSCAM_ERR_NOMEM, "cannot allocate a %zu-byte activation arena", vp->arena_bytes);
    it_plan_bind(vp, arena);
    vp->arena_owned = 1;
    it_backend_opts bo = { .threads = ex->threads, .precision = IT_PREC_FP32, .device = -1 };
    if ((st = c->be->compile(vp, &bo, &c->prog)) != ITSCAM_OK) {
        c->prog = NULL;
        return it_err_prefix(st, "%s backend", c->be->name);
    }
    /* the program's layout copies and scratchpad, allocated now but mostly not yet touched */
    c->mem_bytes = vp->arena_bytes + (c->be->workspace_bytes ? c->be->workspace_bytes(c->prog) : 0);
    if (c->mem_bytes > limit)
        return it_err(ITSCAM_ERR_NOMEM,
                      "%s: calibration on the %s backend needs %.0f MiB (activations and their layout copies), "
                      "above the %.0f MiB limit", g->path, c->be->name, mib(c->mem_bytes), mib(limit));
    return ITSCAM_OK;
}

itscam_status it_calib_collect_begin_with(const it_graph *g, int h, int w, it_calib_method method, double percentile,
                                          const it_calib_exec *ex, it_calib_collector **out) {
    if (!g || !out || h <= 0 || w <= 0) return it_err(ITSCAM_ERR_INVALID_ARG, "it_calib_collect_begin: bad arguments");
    *out = NULL;
    if (method == IT_CALIB_PERCENTILE && !(percentile > 50 && percentile <= 100))
        return it_err(ITSCAM_ERR_INVALID_ARG, "calibration percentile %g is outside (50, 100]", percentile);
    if (g->n_inputs != 1)
        return it_err(ITSCAM_ERR_UNSUPPORTED, "%s: calibration needs a model with one input, not %d", g->path, g->n_inputs);
    const it_backend *be = ex ? ex->backend : NULL;
    if (be && be->kind != IT_BACKEND_HOST)
        return it_err(ITSCAM_ERR_UNSUPPORTED, "calibration reads activations in host memory: the %s backend "
                      "is not a host backend", be->name);
    it_calib_collector *c = it_calloc(1, sizeof *c);
    if (!c) return it_err(ITSCAM_ERR_NOMEM, "out of memory");
    c->g = g;
    c->be = be;
    c->method = method;
    c->percentile = percentile;
    it_tensor in = { .dtype = IT_F32, .ndim = 4, .dims = { 1, 3, h, w } };
    /* the ref path runs this plan; the backend path only learns from it what to track */
    itscam_status st = be ? it_plan_create_unbound(g, &in, 1, &c->p) : it_plan_create(g, &in, 1, &c->p);
    if (st != ITSCAM_OK) goto fail;
    c->mem_bytes = c->p->arena_bytes;
    /* At most one tracked value per graph value: the input plus every step output. */
    c->track_of = it_malloc(sizeof(int) * (size_t)g->n_values);
    c->tr = it_calloc((size_t)g->n_values, sizeof *c->tr);
    if (!c->track_of || !c->tr) { st = it_err(ITSCAM_ERR_NOMEM, "out of memory"); goto fail; }
    for (int v = 0; v < g->n_values; v++) c->track_of[v] = -1;
    if ((st = track(c, g->inputs[0])) != ITSCAM_OK) goto fail;
    for (int i = 0; i < c->p->n_steps; i++)
        for (int k = 0; k < c->p->steps[i].n_out; k++)
            if ((st = track(c, c->p->steps[i].out[k])) != ITSCAM_OK) goto fail;
    if (be && (st = begin_backend(c, &in, ex)) != ITSCAM_OK) goto fail;
    *out = c;
    return ITSCAM_OK;
fail:
    it_calib_collect_free(c);
    return st;
}

itscam_status it_calib_collect_begin(const it_graph *g, int h, int w, it_calib_method method, double percentile,
                                     it_calib_collector **out) {
    return it_calib_collect_begin_with(g, h, w, method, percentile, NULL, out);
}

const char *it_calib_collect_backend(const it_calib_collector *c) { return c && c->be ? c->be->name : "ref"; }

size_t it_calib_collect_memory(const it_calib_collector *c) { return c ? c->mem_bytes : 0; }

/* Double the bin width keeping `base`: bins 2j and 2j+1 become bin j. */
static void widen_up(tracked *t) {
    for (int j = 0; j < HIST_BINS / 2; j++) t->hist[j] = t->hist[2 * j] + t->hist[2 * j + 1];
    memset(t->hist + HIST_BINS / 2, 0, sizeof *t->hist * (HIST_BINS / 2));
    t->w *= 2;
}

/* Double the bin width moving `base` down by the old span: old bin i becomes bin
 * (HIST_BINS + i) / 2. Walk downwards so that no bin is read after being written. */
static void widen_down(tracked *t) {
    for (int j = HIST_BINS - 1; j >= HIST_BINS / 2; j--)
        t->hist[j] = t->hist[2 * j - HIST_BINS] + t->hist[2 * j - HIST_BINS + 1];
    memset(t->hist, 0, sizeof *t->hist * (HIST_BINS / 2));
    t->base -= t->w * HIST_BINS;
    t->w *= 2;
}

/* Extremes of x, and whether it holds a NaN or an infinity. GCC/Clang vector extensions
 * (portable, no -march), four lanes at a time: with a branchy or mixed-type loop the
 * compiler keeps this scalar, and this pass reads every activation once per image. */
typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));

static v4f vsel(v4i m, v4f a, v4f b) { return (v4f)(((v4i)a & m) | ((v4i)b & ~m)); }

static void extremes(const float *x, int64_t n, float *mn_out, float *mx_out, int *nonfinite) {
    v4f mn = { INFINITY, INFINITY, INFINITY, INFINITY }, mx = -mn, z = { 0, 0, 0, 0 };
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        v4f v;
        memcpy(&v, x + i, sizeof v);
        mn = vsel(v < mn, v, mn); /* a NaN compares false: ignored */
        mx = vsel(v > mx, v, mx);
        z += v - v;               /* 0, or NaN for a NaN or an infinity */
    }
    float lo = INFINITY, hi = -INFINITY, zs = 0;
    for (int j = 0; j < 4; j++) {
        lo = mn[j] < lo ? mn[j] : lo;
        hi = mx[j] > hi ? mx[j] : hi;
        zs += z[j];
    }
    for (; i < n; i++) {
        lo = x[i] < lo ? x[i] : lo;
        hi = x[i] > hi ? x[i] : hi;
        zs += x[i] - x[i];
    }
    *mn_out = lo;
    *mx_out = hi;
    *nonfinite = zs != zs;
}

/* Count x (finite, all inside the histogram's span up to rounding) into t->hist. The bin
 * indices of a block are computed first (a loop the compiler vectorizes), then counted
 * into four interleaved 32-bit sub-histograms, so that runs of one value (a ReLU's or a
 * padded image's) do not wait on the previous increment of the same counter. */
#define HIST_BLOCK 1024
#define HIST_WAYS 4
static void count_bins(tracked *t, const float *x, int64_t n) {
    uint32_t sub[HIST_WAYS][HIST_BINS];
    int32_t idx[HIST_BLOCK];
    memset(sub, 0, sizeof sub);
    const double base = t->base, inv = 1.0 / t->w, top = HIST_BINS - 1;
    int64_t since_flush = 0;
    for (int64_t i0 = 0; i0 < n; i0 += HIST_BLOCK) {
        int m = (int)(n - i0 < HIST_BLOCK ? n - i0 : HIST_BLOCK);
        const float *xb = x + i0;
        for (int i = 0; i < m; i++) {
            double d = ((double)xb[i] - base) * inv;
            d = d > 0 ? d : 0;
            d = d < top ? d : top;
            idx[i] = (int32_t)d;
        }
        int i = 0;
        for (; i + HIST_WAYS <= m; i += HIST_WAYS)
            for (int k = 0; k < HIST_WAYS; k++) sub[k][idx[i + k]]++;
        for (; i < m; i++) sub[0][idx[i]]++;
        /* 32-bit counters: fold into the 64-bit ones before any could wrap */
        since_flush += m;
        if (since_flush >= ((int64_t)1 << 31) || i0 + m >= n) {
            for (int b = 0; b < HIST_BINS; b++) {
                uint64_t sum = 0;
                for (int k = 0; k < HIST_WAYS; k++) sum += sub[k][b];
                t->hist[b] += sum;
            }
            memset(sub, 0, sizeof sub);
            since_flush = 0;
        }
    }
    t->total += (uint64_t)n;
}

static void record(tracked *t, const float *x, int64_t n) {
    float mn, mx;
    int nonfinite;
    extremes(x, n, &mn, &mx, &nonfinite);
    if (!(mn <= mx) || isinf(mn) || isinf(mx)) return; /* nothing finite to learn from */
    if (!t->seen) {
        t->mn = mn;
        t->mx = mx;
    } else {
        if (mn < t->mn) t->mn = mn;
        if (mx > t->mx) t->mx = mx;
    }
    if (t->hist) {
        if (!t->seen) {
            double span = (double)mx - mn;
            if (!(span > 0)) span = fmax(fabs((double)mn) * 1e-3, 1e-6);
            t->base = mn;
            t->w = span / (HIST_BINS - 1);
        }
        while (mx >= t->base + t->w * HIST_BINS) widen_up(t);
        while (mn < t->base) widen_down(t);
        if (!nonfinite) {
            count_bins(t, x, n);
        } else { /* rare (infinities end above): skip the NaNs one by one */
            double inv = 1.0 / t->w;
            for (int64_t i = 0; i < n; i++) {
                if (isnan(x[i])) continue;
                int64_t b = (int64_t)(((double)x[i] - t->base) * inv);
                t->hist[b < 0 ? 0 : b >= HIST_BINS ? HIST_BINS - 1 : b]++;
                t->total++;
            }
        }
    }
    t->seen = 1;
}

static void record_value(it_calib_collector *c, int v) {
    if (v < 0 || c->track_of[v] < 0) return;
    const it_tensor *t = &c->p->t[v];
    int64_t n = it_tensor_numel(t);
    if (n > 0 && t->data) record(&c->tr[c->track_of[v]], t->data, n);
}

itscam_status it_calib_collect_add(it_calib_collector *c, const float *input) {
    if (!c || !input) return it_err(ITSCAM_ERR_INVALID_ARG, "it_calib_collect_add: NULL argument");
    int in = c->g->inputs[0];
    it_tensor *it = &c->p->t[in];
    memcpy(it->data, input, it->nbytes);
    record_value(c, in);
    if (c->be) {
        /* every tracked value outlives the run, in plain NCHW in its arena slot */
        itscam_status st = c->be->run(c->prog);
        if (st != ITSCAM_OK) return it_err_prefix(st, "%s backend", c->be->name);
        for (int i = 0; i < c->p->n_steps; i++)
            for (int k = 0; k < c->p->steps[i].n_out; k++) record_value(c, c->p->steps[i].out[k]);
    } else {
        /* Record right after each step: the arena reuses a value's memory once its last
         * consumer has run. */
        for (int i = 0; i < c->p->n_steps; i++) {
            itscam_status st = it_run_step_ref(c->p, i);
            if (st != ITSCAM_OK) return st;
            for (int k = 0; k < c->p->steps[i].n_out; k++) record_value(c, c->p->steps[i].out[k]);
        }
    }
    c->n_added++;
    return ITSCAM_OK;
}

int it_calib_collect_count(const it_calib_collector *c) { return c ? c->n_added : 0; }

/* The point below which a fraction q of the histogram's mass lies, interpolated inside
 * its bin. */
static double hist_quantile(const tracked *t, double q) {
    double target = q * (double)t->total, cum = 0;
    for (int b = 0; b < HIST_BINS; b++) {
        double nb = (double)t->hist[b];
        if (nb > 0 && cum + nb >= target) {
            double frac = (target - cum) / nb;
            return t->base + t->w * (b + (frac < 0 ? 0 : frac > 1 ? 1 : frac));
        }
        cum += nb;
    }
    return t->base + t->w * HIST_BINS;
}

itscam_status it_calib_collect_end(it_calib_collector *c, const char *model, it_calib **out) {
    if (!c || !out) return it_err(ITSCAM_ERR_INVALID_ARG, "it_calib_collect_end: NULL argument");
    *out = NULL;
    if (c->n_added == 0) return it_err(ITSCAM_ERR_INVALID_ARG, "calibration needs at least one image");
    it_calib *k = it_calloc(1, sizeof *k);
    if (!k) return it_err(ITSCAM_ERR_NOMEM, "out of memory");
    size_t n = (size_t)(c->n_tr ? c->n_tr : 1);
    k->names = it_calloc(n, sizeof *k->names);
    k->lo = it_calloc(n, sizeof *k->lo);
    k->hi = it_calloc(n, sizeof *k->hi);
    k->model = it_strdup(model ? model : "");
    k->method = it_strdup(c->method == IT_CALIB_PERCENTILE ? "percentile" : "minmax");
    if (!k->names || !k->lo || !k->hi || !k->model || !k->method) {
        it_calib_free(k);
        return it_err(ITSCAM_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < c->n_tr; i++) {
        const tracked *t = &c->tr[i];
        if (!t->seen) continue;
        double lo = t->mn, hi = t->mx;
        if (t->hist && t->total > 0) {
            double p = c->percentile / 100.0;
            lo = fmax(t->mn, hist_quantile(t, 1.0 - p));
            hi = fmin(t->mx, hist_quantile(t, p));
            if (lo > hi) lo = hi = 0.5 * (lo + hi);
        }
        if (!(k->names[k->n] = it_strdup(c->g->values[t->v].name))) {
            it_calib_free(k);
            return it_err(ITSCAM_ERR_NOMEM, "out of memory");
        }
        k->lo[k->n] = (float)lo;
        k->hi[k->n] = (float)hi;
        k->n++;
    }
    *out = k;
    return ITSCAM_OK;
}
