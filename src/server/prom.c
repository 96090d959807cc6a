/* A Prometheus registry rendered in the text exposition format 0.0.4, and a parser of
 * the same format for clients (`itscam performance`). Label sets are created on first
 * use and then found by a small open-addressing hash, so an update after the first
 * allocates nothing and holds only its family's mutex for a few instructions. */
#include "server/prom.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LABELS 4
#define DEFAULT_MAX_SERIES 1000    /* label sets per family unless prom_set_max_series says */
#define MAX_SERIES_LIMIT 1000000   /* the most prom_set_max_series accepts */
#define MAX_BUCKETS 64
#define MAX_COLLECT 8
#define MAX_METRIC_NAME 100        /* leaves room for "_bucket" in prom_sample.name */
#define MAX_LABEL_NAME 64
#define MAX_RENDER ((size_t)64 << 20) /* a scrape larger than this is a bug, not a metric */
#define DROPPED_NAME "itscam_metrics_dropped_total"
#define SERIES_DROPPED_NAME "itscam_metrics_series_dropped_total"
#define OVERFLOW_VALUE "_overflow" /* every label of the series that new label sets fold into */

const double prom_latency_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015,
                                       0.02,   0.03,  0.05,   0.075, 0.1,    0.15, 0.25,
                                       0.5,    1,     2.5,    5,     10};
const int prom_n_latency_buckets = (int)(sizeof prom_latency_buckets / sizeof prom_latency_buckets[0]);
const double prom_batch_buckets[] = {1, 2, 4, 8, 16, 32, 64, 128, 256};
const int prom_n_batch_buckets = (int)(sizeof prom_batch_buckets / sizeof prom_batch_buckets[0]);

/* One label set: the struct, its bucket counts and its label strings live in one
 * allocation, made once when the set is first used. */
typedef struct label_set {
    uint32_t hash;
    const char *values[MAX_LABELS];
    double value;       /* counter, gauge */
    double sum;         /* histogram */
    uint64_t count;     /* histogram; also the +Inf bucket */
    uint64_t *buckets;  /* histogram: per-bucket counts, not cumulative (made so on render) */
} label_set;

struct prom_family {
    prom_registry *reg;
    prom_family *next;
    prom_type type;
    char name[MAX_METRIC_NAME + 1];
    char *help;
    int n_labels;
    char label_names[MAX_LABELS][MAX_LABEL_NAME + 1];
    double bounds[MAX_BUCKETS];
    int n_bounds;
    pthread_mutex_t mu;  /* guards everything below */
    label_set **sets;    /* in creation order, which is the render order */
    int n_sets, cap_sets;
    int max_sets;        /* the cap; one more, the overflow series, may exist beyond it */
    int32_t *index;      /* open addressing over sets, -1 empty; load kept <= 1/2 */
    uint32_t index_cap;  /* 0 or a power of two */
};

struct prom_registry {
    pthread_mutex_t mu;  /* guards the family list and the collectors */
    prom_family *head, *tail;
    prom_family *dropped; /* itscam_metrics_dropped_total, rendered last */
    prom_family *series_dropped; /* itscam_metrics_series_dropped_total{family}, rendered last */
    int max_series;       /* max_sets of families registered from now on */
    struct {
        prom_collect_fn fn;
        void *user;
    } collect[MAX_COLLECT];
    int n_collect;
};

/* ---- registry ------------------------------------------------------------------- */

static int valid_metric_name(const char *s) {
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > MAX_METRIC_NAME) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
                 (i > 0 && c >= '0' && c <= '9');
        if (!ok) return 0;
    }
    return 1;
}

static int valid_label_name(const char *s) {
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > MAX_LABEL_NAME || !strncmp(s, "__", 2)) return 0; /* __ is reserved */
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (i > 0 && c >= '0' && c <= '9');
        if (!ok) return 0;
    }
    return 1;
}

static uint32_t hash_values(const char *const *v, int n) {
    uint32_t h = 2166136261u; /* FNV-1a; a 0xff separator keeps ("ab","c") apart from ("a","bc") */
    for (int i = 0; i < n; i++) {
        for (const unsigned char *p = (const unsigned char *)(v[i] ? v[i] : ""); *p; p++) h = (h ^ *p) * 16777619u;
        h = (h ^ 0xffu) * 16777619u;
    }
    return h;
}

static int values_equal(const label_set *s, const char *const *v, int n) {
    for (int i = 0; i < n; i++)
        if (strcmp(s->values[i], v[i] ? v[i] : "")) return 0;
    return 1;
}

static int index_grow(prom_family *f) {
    uint32_t cap = f->index_cap ? f->index_cap * 2 : 16;
    int32_t *idx = malloc(sizeof *idx * cap);
    if (!idx) return -1;
    for (uint32_t i = 0; i < cap; i++) idx[i] = -1;
    for (int k = 0; k < f->n_sets; k++) {
        uint32_t i = f->sets[k]->hash & (cap - 1);
        while (idx[i] >= 0) i = (i + 1) & (cap - 1);
        idx[i] = k;
    }
    free(f->index);
    f->index = idx;
    f->index_cap = cap;
    return 0;
}

/* Find or create the label set for vals; f->mu held. NULL when the family is full (and
 * !beyond_cap) or memory ran out. beyond_cap lets the overflow series be created past
 * the cap: it is the one set that may. */
static label_set *find_set(prom_family *f, const char *const *vals, int beyond_cap) {
    uint32_t h = hash_values(vals, f->n_labels);
    if (f->index_cap) {
        for (uint32_t i = h & (f->index_cap - 1);; i = (i + 1) & (f->index_cap - 1)) {
            int32_t k = f->index[i];
            if (k < 0) break;
            if (f->sets[k]->hash == h && values_equal(f->sets[k], vals, f->n_labels)) return f->sets[k];
        }
    }
    if (f->n_sets >= f->max_sets && !beyond_cap) return NULL;
    if ((uint32_t)(f->n_sets + 1) * 2 > f->index_cap && index_grow(f)) return NULL;
    if (f->n_sets == f->cap_sets) {
        int nc = f->cap_sets ? f->cap_sets * 2 : 4;
        label_set **ns = realloc(f->sets, sizeof *ns * (size_t)nc);
        if (!ns) return NULL;
        f->sets = ns;
        f->cap_sets = nc;
    }
    size_t strs = 0;
    for (int i = 0; i < f->n_labels; i++) strs += strlen(vals[i] ? vals[i] : "") + 1;
    size_t nb = f->type == PROM_HISTOGRAM ? (size_t)f->n_bounds : 0;
    label_set *s = calloc(1, sizeof *s + nb * sizeof(uint64_t) + strs);
    if (!s) return NULL;
    s->hash = h;
    s->buckets = (uint64_t *)(s + 1);
    char *p = (char *)(s->buckets + nb);
    for (int i = 0; i < f->n_labels; i++) {
        size_t l = strlen(vals[i] ? vals[i] : "");
        memcpy(p, vals[i] ? vals[i] : "", l + 1);
        s->values[i] = p;
        p += l + 1;
    }
    int k = f->n_sets++;
    f->sets[k] = s;
    uint32_t i = h & (f->index_cap - 1);
    while (f->index[i] >= 0) i = (i + 1) & (f->index_cap - 1);
    f->index[i] = k;
    return s;
}

static void family_free(prom_family *f) {
    if (!f) return;
    for (int i = 0; i < f->n_sets; i++) free(f->sets[i]);
    free(f->sets);
    free(f->index);
    free(f->help);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

static prom_family *family_new(prom_registry *r, prom_type type, const char *name, const char *help,
                               const char *const *label_names, const double *buckets, int n_buckets) {
    if (!valid_metric_name(name) || (type != PROM_COUNTER && type != PROM_GAUGE && type != PROM_HISTOGRAM))
        return NULL;
    int nl = 0;
    if (label_names)
        while (label_names[nl]) {
            if (nl == MAX_LABELS || !valid_label_name(label_names[nl])) return NULL;
            if (type == PROM_HISTOGRAM && !strcmp(label_names[nl], "le")) return NULL;
            for (int j = 0; j < nl; j++)
                if (!strcmp(label_names[j], label_names[nl])) return NULL;
            nl++;
        }
    if (type == PROM_HISTOGRAM) {
        if (n_buckets < 0 || n_buckets > MAX_BUCKETS || (n_buckets > 0 && !buckets)) return NULL;
        for (int i = 0; i < n_buckets; i++)
            if (!isfinite(buckets[i]) || (i > 0 && !(buckets[i] > buckets[i - 1]))) return NULL;
    }
    prom_family *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    f->reg = r;
    f->type = type;
    strcpy(f->name, name);
    f->help = strdup(help ? help : "");
    f->n_labels = nl;
    for (int i = 0; i < nl; i++) strcpy(f->label_names[i], label_names[i]);
    if (type == PROM_HISTOGRAM) {
        f->n_bounds = n_buckets;
        if (n_buckets) memcpy(f->bounds, buckets, sizeof(double) * (size_t)n_buckets);
    }
    if (!f->help || pthread_mutex_init(&f->mu, NULL)) {
        free(f->help);
        free(f);
        return NULL;
    }
    /* A family without labels has exactly one series: create it now so that it renders
     * as 0 before the first update, as client libraries do. */
    f->max_sets = r->max_series;
    if (nl == 0 && !find_set(f, NULL, 1)) {
        family_free(f);
        return NULL;
    }
    return f;
}

prom_registry *prom_registry_new(void) {
    prom_registry *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    if (pthread_mutex_init(&r->mu, NULL)) {
        free(r);
        return NULL;
    }
    r->max_series = DEFAULT_MAX_SERIES;
    r->dropped = family_new(r, PROM_COUNTER, DROPPED_NAME,
                            "Metric updates dropped: label set limit, wrong type or bad arguments.", NULL, NULL, 0);
    static const char *const family_label[] = { "family", NULL };
    r->series_dropped = family_new(r, PROM_COUNTER, SERIES_DROPPED_NAME,
                                   "Updates with a new label set beyond metrics.max_series_per_family, folded into "
                                   "the family's series whose labels are all \"" OVERFLOW_VALUE "\".",
                                   family_label, NULL, 0);
    if (!r->dropped || !r->series_dropped) {
        family_free(r->dropped);
        family_free(r->series_dropped);
        pthread_mutex_destroy(&r->mu);
        free(r);
        return NULL;
    }
    return r;
}

void prom_registry_free(prom_registry *r) {
    if (!r) return;
    for (prom_family *f = r->head, *next; f; f = next) {
        next = f->next;
        family_free(f);
    }
    family_free(r->dropped);
    family_free(r->series_dropped);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

int prom_set_max_series(prom_registry *r, int max) {
    if (!r || max < 1 || max > MAX_SERIES_LIMIT) return -1;
    pthread_mutex_lock(&r->mu);
    r->max_series = max;
    pthread_mutex_unlock(&r->mu);
    return 0;
}

prom_family *prom_register(prom_registry *r, prom_type type, const char *name, const char *help,
                           const char *const *label_names, const double *buckets, int n_buckets) {
    if (!r || !name) return NULL;
    pthread_mutex_lock(&r->mu);
    int dup = !strcmp(name, DROPPED_NAME) || !strcmp(name, SERIES_DROPPED_NAME);
    for (prom_family *f = r->head; f && !dup; f = f->next) dup = !strcmp(f->name, name);
    prom_family *f = dup ? NULL : family_new(r, type, name, help, label_names, buckets, n_buckets);
    if (f) {
        if (r->tail) r->tail->next = f;
        else r->head = f;
        r->tail = f;
    }
    pthread_mutex_unlock(&r->mu);
    return f;
}

void prom_on_collect(prom_registry *r, prom_collect_fn fn, void *user) {
    if (!r || !fn) return;
    pthread_mutex_lock(&r->mu);
    if (r->n_collect < MAX_COLLECT) {
        r->collect[r->n_collect].fn = fn;
        r->collect[r->n_collect].user = user;
        r->n_collect++;
    }
    pthread_mutex_unlock(&r->mu);
}

enum { OP_INC, OP_SET, OP_OBSERVE, OP_TOTAL };

static void update(prom_family *f, const char *const *lv, int op, double v) {
    if (!f) return;
    int ok = (op == OP_INC && (f->type == PROM_GAUGE || (f->type == PROM_COUNTER && !(v < 0)))) ||
             (op == OP_SET && f->type == PROM_GAUGE) || (op == OP_OBSERVE && f->type == PROM_HISTOGRAM) ||
             (op == OP_TOTAL && f->type == PROM_COUNTER && !(v < 0));
    if (f->n_labels > 0 && !lv) ok = 0;
    int folded = 0;
    if (ok) {
        pthread_mutex_lock(&f->mu);
        label_set *s = find_set(f, lv, 0);
        if (!s && f->n_sets >= f->max_sets) {
            /* A full family still counts what comes: into its overflow series, so that
             * sums over the family stay right while the label values are lost. */
            static const char *const overflow[MAX_LABELS] = { OVERFLOW_VALUE, OVERFLOW_VALUE, OVERFLOW_VALUE,
                                                              OVERFLOW_VALUE };
            s = find_set(f, overflow, 1);
            folded = s != NULL;
        }
        if (s) {
            if (op == OP_INC) s->value += v;
            else if (op == OP_SET || op == OP_TOTAL) s->value = v;
            else {
                int b = 0;
                while (b < f->n_bounds && !(v <= f->bounds[b])) b++;
                if (b < f->n_bounds) s->buckets[b]++;
                s->count++;
                s->sum += v;
            }
        }
        pthread_mutex_unlock(&f->mu);
        ok = s != NULL;
    }
    /* Counted after unlocking: never two family mutexes at once. */
    if (!ok && f != f->reg->dropped) update(f->reg->dropped, NULL, OP_INC, 1);
    if (folded && f != f->reg->series_dropped) {
        const char *fl[] = { f->name };
        update(f->reg->series_dropped, fl, OP_INC, 1);
    }
}

void prom_inc(prom_family *f, const char *const *label_values, double v) { update(f, label_values, OP_INC, v); }
void prom_set(prom_family *f, const char *const *label_values, double v) { update(f, label_values, OP_SET, v); }
void prom_set_total(prom_family *f, const char *const *label_values, double v) {
    update(f, label_values, OP_TOTAL, v);
}
void prom_observe(prom_family *f, const char *const *label_values, double v) {
    update(f, label_values, OP_OBSERVE, v);
}

/* ---- rendering ------------------------------------------------------------------ */

typedef struct outbuf {
    char *p;
    size_t len, cap;
    int failed;
} outbuf;

static void out_reserve(outbuf *b, size_t extra) {
    if (b->failed) return;
    if (b->len + extra + 1 <= b->cap) return;
    if (b->len + extra + 1 > MAX_RENDER) {
        b->failed = 1;
        return;
    }
    size_t nc = b->cap ? b->cap : 4096;
    while (nc < b->len + extra + 1) nc *= 2;
    if (nc > MAX_RENDER) nc = MAX_RENDER;
    char *np = realloc(b->p, nc);
    if (!np) {
        b->failed = 1;
        return;
    }
    b->p = np;
    b->cap = nc;
}

static void out_put(outbuf *b, const char *s, size_t n) {
    out_reserve(b, n);
    if (b->failed) return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void out_str(outbuf *b, const char *s) { out_put(b, s, strlen(s)); }

/* Escape a label value (quote too) or a HELP text (backslash and newline only). */
static void out_escaped(outbuf *b, const char *s, int quote) {
    for (; *s; s++) {
        if (*s == '\\') out_put(b, "\\\\", 2);
        else if (*s == '\n') out_put(b, "\\n", 2);
        else if (*s == '"' && quote) out_put(b, "\\\"", 2);
        else out_put(b, s, 1);
    }
}

/* Numbers as Prometheus (Go's ParseFloat) reads them: integers without an exponent where
 * exact, otherwise the shortest of %.15g..%.17g that reads back to the same double. */
static void fmt_num(char *out, size_t n, double v) {
    if (isnan(v)) snprintf(out, n, "NaN");
    else if (isinf(v)) snprintf(out, n, v > 0 ? "+Inf" : "-Inf");
    else if (v == 0) snprintf(out, n, "0"); /* also -0 */
    else if (v == floor(v) && fabs(v) < 9007199254740992.0) snprintf(out, n, "%.0f", v);
    else
        for (int p = 15; p <= 17; p++) {
            snprintf(out, n, "%.*g", p, v);
            if (strtod(out, NULL) == v) break;
        }
}

static void out_labels(outbuf *b, const prom_family *f, const label_set *s, const char *le) {
    if (f->n_labels == 0 && !le) return;
    out_put(b, "{", 1);
    for (int i = 0; i < f->n_labels; i++) {
        if (i) out_put(b, ",", 1);
        out_str(b, f->label_names[i]);
        out_put(b, "=\"", 2);
        out_escaped(b, s->values[i], 1);
        out_put(b, "\"", 1);
    }
    if (le) {
        if (f->n_labels) out_put(b, ",", 1);
        out_str(b, "le=\"");
        out_str(b, le);
        out_put(b, "\"", 1);
    }
    out_put(b, "}", 1);
}

static void out_sample(outbuf *b, const prom_family *f, const char *suffix, const label_set *s, const char *le,
                       const char *value) {
    out_str(b, f->name);
    out_str(b, suffix);
    out_labels(b, f, s, le);
    out_put(b, " ", 1);
    out_str(b, value);
    out_put(b, "\n", 1);
}

static void render_family(outbuf *b, prom_family *f) {
    static const char *const type_names[] = {"counter", "gauge", "histogram"};
    if (f->help[0]) {
        out_str(b, "# HELP ");
        out_str(b, f->name);
        out_put(b, " ", 1);
        out_escaped(b, f->help, 0);
        out_put(b, "\n", 1);
    }
    out_str(b, "# TYPE ");
    out_str(b, f->name);
    out_put(b, " ", 1);
    out_str(b, type_names[f->type]);
    out_put(b, "\n", 1);
    pthread_mutex_lock(&f->mu);
    char num[64], le[64];
    for (int k = 0; k < f->n_sets; k++) {
        const label_set *s = f->sets[k];
        if (f->type != PROM_HISTOGRAM) {
            fmt_num(num, sizeof num, s->value);
            out_sample(b, f, "", s, NULL, num);
            continue;
        }
        uint64_t cum = 0;
        for (int i = 0; i < f->n_bounds; i++) {
            cum += s->buckets[i];
            fmt_num(le, sizeof le, f->bounds[i]);
            snprintf(num, sizeof num, "%" PRIu64, cum);
            out_sample(b, f, "_bucket", s, le, num);
        }
        snprintf(num, sizeof num, "%" PRIu64, s->count);
        out_sample(b, f, "_bucket", s, "+Inf", num);
        fmt_num(num, sizeof num, s->sum);
        out_sample(b, f, "_sum", s, NULL, num);
        snprintf(num, sizeof num, "%" PRIu64, s->count);
        out_sample(b, f, "_count", s, NULL, num);
    }
    pthread_mutex_unlock(&f->mu);
}

char *prom_render(prom_registry *r, size_t *len) {
    if (len) *len = 0;
    if (!r) return NULL;
    /* Collectors run without the registry mutex: they update families, and a collector
     * that registers or renders must not deadlock. */
    pthread_mutex_lock(&r->mu);
    int nc = r->n_collect;
    prom_collect_fn fns[MAX_COLLECT];
    void *users[MAX_COLLECT];
    for (int i = 0; i < nc; i++) fns[i] = r->collect[i].fn, users[i] = r->collect[i].user;
    pthread_mutex_unlock(&r->mu);
    for (int i = 0; i < nc; i++) fns[i](r, users[i]);

    outbuf b = {0};
    out_reserve(&b, 0);
    pthread_mutex_lock(&r->mu);
    for (prom_family *f = r->head; f && !b.failed; f = f->next) render_family(&b, f);
    pthread_mutex_unlock(&r->mu);
    render_family(&b, r->dropped);
    render_family(&b, r->series_dropped);
    if (b.failed) {
        free(b.p);
        return NULL;
    }
    if (len) *len = b.len;
    return b.p;
}

/* ---- parsing -------------------------------------------------------------------- */

static int is_blank(char c) { return c == ' ' || c == '\t' || c == '\r'; }

/* Read one label `name="value"` at *pp (blanks and a trailing comma skipped) from the raw
 * text between braces. Returns 1 with the label, 0 at the end, -1 when malformed (what
 * gets a message). The value is unescaped into val (truncated to vn-1: *trunc set). */
static int next_label(const char **pp, const char *end, char *name, size_t nn, char *val, size_t vn, int *trunc,
                      const char **what) {
    const char *p = *pp;
    while (p < end && is_blank(*p)) p++;
    if (p == end) {
        *pp = p;
        return 0;
    }
    const char *n0 = p;
    while (p < end && ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_' ||
                       (p > n0 && *p >= '0' && *p <= '9')))
        p++;
    if (p == n0) return *what = "expected a label name", -1;
    if ((size_t)(p - n0) >= nn) return *what = "label name too long", -1;
    memcpy(name, n0, (size_t)(p - n0));
    name[p - n0] = 0;
    while (p < end && is_blank(*p)) p++;
    if (p == end || *p != '=') return *what = "expected '=' after a label name", -1;
    p++;
    while (p < end && is_blank(*p)) p++;
    if (p == end || *p != '"') return *what = "expected '\"' to open a label value", -1;
    p++;
    size_t k = 0;
    *trunc = 0;
    for (;;) {
        if (p == end) return *what = "unterminated label value", -1;
        char c = *p++;
        if (c == '"') break;
        if (c == '\n') return *what = "newline inside a label value", -1;
        if (c == '\\') {
            if (p == end) return *what = "unterminated label value", -1;
            c = *p++;
            if (c == 'n') c = '\n';
            else if (c != '\\' && c != '"') return *what = "invalid escape in a label value", -1;
        }
        if (k + 1 < vn) val[k++] = c;
        else *trunc = 1;
    }
    if (vn) val[k] = 0;
    while (p < end && is_blank(*p)) p++;
    if (p < end) {
        if (*p != ',') return *what = "expected ',' between labels", -1;
        p++;
    }
    *pp = p;
    return 1;
}

/* Parse one line (no newline). Returns 1 with a sample, 0 for a comment or blank line,
 * -1 malformed with *what set. */
static int parse_line(const char *p, const char *end, prom_sample *s, const char **what) {
    while (p < end && is_blank(*p)) p++;
    while (end > p && is_blank(end[-1])) end--;
    if (p == end || *p == '#') return 0;
    const char *n0 = p;
    while (p < end && ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_' || *p == ':' ||
                       (p > n0 && *p >= '0' && *p <= '9')))
        p++;
    if (p == n0) return *what = "expected a metric name", -1;
    if ((size_t)(p - n0) >= sizeof s->name) return *what = "metric name too long", -1;
    memcpy(s->name, n0, (size_t)(p - n0));
    s->name[p - n0] = 0;
    s->labels[0] = 0;
    const char *after_name = p;
    while (p < end && is_blank(*p)) p++;
    if (p == end || *p != '{') p = after_name; /* the blank before the value is required */
    else {
        const char *l0 = ++p;
        /* Find the closing brace outside quotes; a quoted value may hold '}' and \". */
        int inq = 0;
        while (p < end && (inq || *p != '}')) {
            if (inq && *p == '\\' && p + 1 < end) p++;
            else if (*p == '"') inq = !inq;
            p++;
        }
        if (p == end) return *what = "unterminated label set", -1;
        if ((size_t)(p - l0) >= sizeof s->labels) return *what = "label set too long", -1;
        memcpy(s->labels, l0, (size_t)(p - l0));
        s->labels[p - l0] = 0;
        const char *q = l0;
        char ln[MAX_LABEL_NAME + 1], lv[8];
        int trunc, rc;
        while ((rc = next_label(&q, p, ln, sizeof ln, lv, sizeof lv, &trunc, what)) == 1) {}
        if (rc < 0) return -1;
        p++;
    }
    if (p == end || !is_blank(*p)) return *what = "expected a blank and a value", -1;
    while (p < end && is_blank(*p)) p++;
    const char *v0 = p;
    while (p < end && !is_blank(*p)) p++;
    char tok[64];
    if ((size_t)(p - v0) >= sizeof tok) return *what = "value too long", -1;
    memcpy(tok, v0, (size_t)(p - v0));
    tok[p - v0] = 0;
    char *e;
    s->value = strtod(tok, &e);
    if (e == tok || *e) return *what = "bad value", -1;
    while (p < end && is_blank(*p)) p++;
    if (p < end) { /* an optional timestamp: integer milliseconds */
        if (*p == '-') p++;
        const char *d0 = p;
        while (p < end && *p >= '0' && *p <= '9') p++;
        if (p == d0 || (p < end && !is_blank(*p))) return *what = "bad timestamp", -1;
        while (p < end && is_blank(*p)) p++;
        if (p < end) return *what = "trailing text after the timestamp", -1;
    }
    return 1;
}

int prom_parse(const char *text, size_t len, prom_sample *out, int max, char *err, size_t errlen) {
    if (err && errlen) err[0] = 0;
    if (!text || (max > 0 && !out)) {
        if (err && errlen) snprintf(err, errlen, "no text");
        return -1;
    }
    int n = 0, total = 0, line = 0;
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        line++;
        prom_sample tmp;
        prom_sample *s = n < max ? &out[n] : &tmp;
        const char *what = "";
        int rc = parse_line(p, le, s, &what);
        if (rc < 0) {
            int shown = (int)(le - p > 80 ? 80 : le - p); /* enough of the line to find it */
            if (err && errlen) snprintf(err, errlen, "line %d: %s: %.*s", line, what, shown, p);
            return -1;
        }
        if (rc > 0) {
            total++;
            if (n < max) n++;
        }
        p = nl ? nl + 1 : end;
    }
    if (total > n && err && errlen) snprintf(err, errlen, "%d samples, only the first %d kept", total, n);
    return n;
}

int prom_label(const prom_sample *s, const char *key, char *buf, size_t n) {
    if (!s || !key) return -1;
    const char *p = s->labels, *end = s->labels + strnlen(s->labels, sizeof s->labels);
    char name[MAX_LABEL_NAME + 1], scratch[1];
    const char *what;
    int trunc;
    for (;;) {
        /* Unescape into buf only for the key asked for: read names first into a dummy. */
        const char *save = p;
        int rc = next_label(&p, end, name, sizeof name, scratch, sizeof scratch, &trunc, &what);
        if (rc <= 0) return -1;
        if (!strcmp(name, key)) {
            if (!buf || !n) return 0;
            return next_label(&save, end, name, sizeof name, buf, n, &trunc, &what) == 1 ? 0 : -1;
        }
    }
}

int prom_match(const prom_sample *s, const char *const *match) {
    if (!match) return 1;
    for (int i = 0; match[i]; i += 2) {
        char v[sizeof s->labels];
        if (prom_label(s, match[i], v, sizeof v)) return 0;
        if (!match[i + 1] || strcmp(v, match[i + 1])) return 0;
    }
    return 1;
}

double prom_sum(const prom_sample *s, int n, const char *name, const char *const *match, int *found) {
    double sum = 0;
    int k = 0;
    for (int i = 0; i < n; i++)
        if (!strcmp(s[i].name, name) && prom_match(&s[i], match)) sum += s[i].value, k++;
    if (found) *found = k;
    return sum;
}

int prom_histogram_buckets(const prom_sample *s, int n, const char *name, const char *const *match,
                           double *upper, double *cumcount, int max) {
    char bname[sizeof s->name];
    if (snprintf(bname, sizeof bname, "%s_bucket", name) >= (int)sizeof bname) return 0;
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (strcmp(s[i].name, bname) || !prom_match(&s[i], match)) continue;
        char le[64], *e;
        if (prom_label(&s[i], "le", le, sizeof le)) continue;
        double ub = strtod(le, &e);
        if (e == le || *e) continue;
        int j = 0;
        while (j < k && upper[j] != ub) j++;
        if (j == k) {
            if (k == max) return -1;
            upper[k] = ub;
            cumcount[k++] = 0;
        }
        cumcount[j] += s[i].value;
    }
    for (int i = 1; i < k; i++) /* insertion sort by bound; k is small */
        for (int j = i; j > 0 && upper[j - 1] > upper[j]; j--) {
            double t = upper[j];
            upper[j] = upper[j - 1], upper[j - 1] = t;
            t = cumcount[j];
            cumcount[j] = cumcount[j - 1], cumcount[j - 1] = t;
        }
    return k;
}

double prom_histogram_quantile(double q, const double *upper, const double *cumcount, int n) {
    if (isnan(q)) return NAN;
    if (q < 0) return -INFINITY;
    if (q > 1) return INFINITY;
    if (!upper || !cumcount || n < 2 || !(isinf(upper[n - 1]) && upper[n - 1] > 0)) return NAN;
    /* Counts made monotonic on the fly: a scrape can race with an observation. */
    double total = 0;
    for (int i = 0; i < n; i++) total = fmax(total, cumcount[i]);
    if (!(total > 0)) return NAN;
    double rank = q * total, prev = 0, cur = 0;
    int b = 0;
    for (; b < n - 1; b++) {
        cur = fmax(prev, cumcount[b]);
        if (cur >= rank) break;
        prev = cur;
    }
    if (b == n - 1) return upper[n - 2];
    if (b == 0 && upper[0] <= 0) return upper[0];
    double start = b > 0 ? upper[b - 1] : 0, count = cur - (b > 0 ? prev : 0);
    if (!(count > 0)) return start;
    return start + (upper[b] - start) * ((rank - (b > 0 ? prev : 0)) / count);
}
