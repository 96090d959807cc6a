/* Calibration: measure activation ranges by running the ref kernels one step at a time. */
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
    it_plan *p;
    it_calib_method method;
    double percentile;
    int n_added;
    int n_tr;
    tracked *tr;
    int *track_of;         /* per graph value: index into tr, -1 when not tracked */
};

void it_calib_collect_free(it_calib_collector *c) {
    if (!c) return;
    for (int i = 0; i < c->n_tr; i++) it_free(c->tr[i].hist);
    it_free(c->tr);
    it_free(c->track_of);
    it_plan_free(c->p);
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

itscam_status it_calib_collect_begin(const it_graph *g, int h, int w, it_calib_method method, double percentile,
                                     it_calib_collector **out) {
    if (!g || !out || h <= 0 || w <= 0) return it_err(ITSCAM_ERR_INVALID_ARG, "it_calib_collect_begin: bad arguments");
    *out = NULL;
    if (method == IT_CALIB_PERCENTILE && !(percentile > 50 && percentile <= 100))
        return it_err(ITSCAM_ERR_INVALID_ARG, "calibration percentile %g is outside (50, 100]", percentile);
    if (g->n_inputs != 1)
        return it_err(ITSCAM_ERR_UNSUPPORTED, "%s: calibration needs a model with one input, not %d", g->path, g->n_inputs);
    it_calib_collector *c = it_calloc(1, sizeof *c);
    if (!c) return it_err(ITSCAM_ERR_NOMEM, "out of memory");
    c->g = g;
    c->method = method;
    c->percentile = percentile;
    it_tensor in = { .dtype = IT_F32, .ndim = 4, .dims = { 1, 3, h, w } };
    itscam_status st = it_plan_create(g, &in, 1, &c->p);
    if (st != ITSCAM_OK) goto fail;
    /* At most one tracked value per graph value: the input plus every step output. */
    c->track_of = it_malloc(sizeof(int) * (size_t)g->n_values);
    c->tr = it_calloc((size_t)g->n_values, sizeof *c->tr);
    if (!c->track_of || !c->tr) { st = it_err(ITSCAM_ERR_NOMEM, "out of memory"); goto fail; }
    for (int v = 0; v < g->n_values; v++) c->track_of[v] = -1;
    if ((st = track(c, g->inputs[0])) != ITSCAM_OK) goto fail;
    for (int i = 0; i < c->p->n_steps; i++)
        for (int k = 0; k < c->p->steps[i].n_out; k++)
            if ((st = track(c, c->p->steps[i].out[k])) != ITSCAM_OK) goto fail;
    *out = c;
    return ITSCAM_OK;
fail:
    it_calib_collect_free(c);
    return st;
}

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

static void record(tracked *t, const float *x, int64_t n) {
    float mn = INFINITY, mx = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        if (x[i] < mn) mn = x[i];
        if (x[i] > mx) mx = x[i];
    }
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
        double inv = 1.0 / t->w;
        for (int64_t i = 0; i < n; i++) {
            if (isnan(x[i])) continue;
            int64_t b = (int64_t)(((double)x[i] - t->base) * inv);
            t->hist[b < 0 ? 0 : b >= HIST_BINS ? HIST_BINS - 1 : b]++;
            t->total++;
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
    /* Record right after each step: the arena reuses a value's memory once its last
     * consumer has run. */
    for (int i = 0; i < c->p->n_steps; i++) {
        itscam_status st = it_run_step_ref(c->p, i);
        if (st != ITSCAM_OK) return st;
        for (int k = 0; k < c->p->steps[i].n_out; k++) record_value(c, c->p->steps[i].out[k]);
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
