/* Box mAP as Ultralytics' validator (and the shared yolo_map.py) computes it, in double
 * precision with numpy's evaluation order, so that the two agree to rounding. */
#include "detect/metrics.h"

#include "core/core.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PR_POINTS 1000  /* Ultralytics' confidence grid for the P, R and F1 curves */
#define EPS 1e-16

void it_map_acc_init(it_map_acc *a) { memset(a, 0, sizeof *a); }

void it_map_acc_free(it_map_acc *a) {
    if (!a) return;
    it_free(a->pred_cls);
    it_free(a->pred_conf);
    it_free(a->pred_tp);
    it_free(a->label_cls);
    memset(a, 0, sizeof *a);
}

void it_map_result_free(it_map_result *r) {
    if (!r) return;
    it_free(r->per_class);
    memset(r, 0, sizeof *r);
}

/* np.linspace(start, stop, num)[i]: i * step + start, with the last point exactly stop. */
static double linspace_at(double start, double stop, int num, int i) {
    if (i == num - 1) return stop;
    double step = (stop - start) / (num - 1);
    return (double)i * step + start;
}

/* IoU thresholds 0.50:0.05:0.95 exactly as np.linspace(0.5, 0.95, 10). */
static double iou_thr(int t) { return linspace_at(0.5, 0.95, IT_MAP_NTHR, t); }

/* box_iou() of yolo_map.py for one label and one prediction, same operation order. */
static double box_iou(const double *a, const double *b) {
    double lt0 = fmax(a[0], b[0]), lt1 = fmax(a[1], b[1]);
    double rb0 = fmin(a[2], b[2]), rb1 = fmin(a[3], b[3]);
    double w = rb0 - lt0, h = rb1 - lt1;
    if (w < 0) w = 0;
    if (h < 0) h = 0;
    double inter = w * h;
    double area_a = (a[2] - a[0]) * (a[3] - a[1]);
    double area_b = (b[2] - b[0]) * (b[3] - b[1]);
    return inter / (area_a + area_b - inter + 1e-7);
}

/* Capacity for `need` entries, doubling from 256. */
static int64_t grown(int64_t cap, int64_t need) {
    if (need <= cap) return cap;
    int64_t nc = cap ? cap : 256;
    while (nc < need) nc *= 2;
    return nc;
}

static itscam_status reserve(it_map_acc *a, int64_t npred, int64_t nlabel) {
    int64_t pc = grown(a->pred_cap, npred), lc = grown(a->label_cap, nlabel);
    /* Each array is committed as soon as it grows, so a failure part way leaves every
     * array at least as large as the recorded capacity. */
    if (pc > a->pred_cap) {
        void *c = it_realloc(a->pred_cls, sizeof *a->pred_cls * (size_t)pc);
        if (c) a->pred_cls = c;
        void *f = c ? it_realloc(a->pred_conf, sizeof *a->pred_conf * (size_t)pc) : NULL;
        if (f) a->pred_conf = f;
        void *t = f ? it_realloc(a->pred_tp, sizeof *a->pred_tp * (size_t)pc) : NULL;
        if (!t) return it_err(ITSCAM_ERR_NOMEM, "mAP accumulator: %lld predictions", (long long)pc);
        a->pred_tp = t;
        a->pred_cap = pc;
    }
    if (lc > a->label_cap) {
        void *l = it_realloc(a->label_cls, sizeof *a->label_cls * (size_t)lc);
        if (!l) return it_err(ITSCAM_ERR_NOMEM, "mAP accumulator: %lld labels", (long long)lc);
        a->label_cls = l;
        a->label_cap = lc;
    }
    return ITSCAM_OK;
}

itscam_status it_map_acc_add(it_map_acc *a, const it_map_pred *preds, int npred, const it_map_label *labels,
                             int nlabel) {
    if (!a || npred < 0 || nlabel < 0 || (npred && !preds) || (nlabel && !labels))
        return it_err(ITSCAM_ERR_INVALID_ARG, "it_map_acc_add: bad arguments");
    itscam_status st = reserve(a, a->npred + npred, a->nlabel + nlabel);
    if (st) return st;

    /* Ultralytics' match_predictions: candidates (label, pred) with class agreement and
     * IoU >= t, sorted by IoU descending, then made unique per prediction (keeping its
     * highest-IoU label), which leaves them ordered by prediction index, then unique per
     * label keeping the first, i.e. the lowest-index prediction. So: each prediction's
     * best label is fixed by IoU alone (ties go to the higher label index, the reverse of
     * the ascending argsort), and labels are claimed in prediction order. */
    int *best = NULL;
    double *best_iou = NULL;
    unsigned char *taken = NULL;
    if (npred && nlabel) {
        best = it_malloc(sizeof *best * (size_t)npred);
        best_iou = it_malloc(sizeof *best_iou * (size_t)npred);
        taken = it_malloc((size_t)nlabel);
        if (!best || !best_iou || !taken) {
            it_free(best);
            it_free(best_iou);
            it_free(taken);
            return it_err(ITSCAM_ERR_NOMEM, "mAP accumulator: %d x %d matches", nlabel, npred);
        }
        for (int j = 0; j < npred; j++) {
            best[j] = -1;
            best_iou[j] = 0;
            for (int i = 0; i < nlabel; i++) {
                /* numpy multiplies by the class mask rather than skipping: same value. */
                double v = box_iou(labels[i].box, preds[j].box) *
                           (labels[i].class_id == preds[j].class_id ? 1.0 : 0.0);
                if (best[j] < 0 || v >= best_iou[j]) {
                    best[j] = i;
                    best_iou[j] = v;
                }
            }
        }
    }
    for (int j = 0; j < npred; j++) a->pred_tp[a->npred + j] = 0;
    if (best) {
        for (int t = 0; t < IT_MAP_NTHR; t++) {
            double thr = iou_thr(t);
            memset(taken, 0, (size_t)nlabel);
            for (int j = 0; j < npred; j++) {
                if (!(best_iou[j] >= thr) || taken[best[j]]) continue;
                taken[best[j]] = 1;
                a->pred_tp[a->npred + j] |= (uint16_t)(1u << t);
            }
        }
    }
    it_free(best);
    it_free(best_iou);
    it_free(taken);
    for (int j = 0; j < npred; j++) {
        a->pred_cls[a->npred + j] = preds[j].class_id;
        a->pred_conf[a->npred + j] = preds[j].score;
    }
    a->npred += npred;
    for (int i = 0; i < nlabel; i++) a->label_cls[a->nlabel + i] = labels[i].class_id;
    a->nlabel += nlabel;
    a->images++;
    return ITSCAM_OK;
}

/* numpy's pairwise summation (DOUBLE_pairwise_sum), started from 0 as add.reduce is. */
static double pairwise_sum(const double *v, int64_t n, int64_t stride) {
    if (n < 8) {
        double r = 0.;
        for (int64_t i = 0; i < n; i++) r += v[i * stride];
        return r;
    }
    if (n <= 128) {
        double r[8];
        for (int k = 0; k < 8; k++) r[k] = v[k * stride];
        int64_t i;
        for (i = 8; i < n - (n % 8); i += 8)
            for (int k = 0; k < 8; k++) r[k] += v[(i + k) * stride];
        double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++) res += v[i * stride];
        return res;
    }
    int64_t n2 = n / 2;
    n2 -= n2 % 8;
    return pairwise_sum(v, n2, stride) + pairwise_sum(v + n2 * stride, n - n2, stride);
}

static double sum0(const double *v, int64_t n, int64_t stride) { return 0. + pairwise_sum(v, n, stride); }

/* np.interp(x, xp, fp, left, right) for one x over non-decreasing xp: the largest j with
 * xp[j] <= x, then the slope form numpy uses (exact hits return fp[j]). */
static double interp(double x, const double *xp, const double *fp, int64_t n, double left, double right) {
    if (n == 1) return x < xp[0] ? left : x > xp[0] ? right : fp[0];
    if (x > xp[n - 1]) return right;
    if (x < xp[0]) return left;
    int64_t lo = 0, hi = n; /* first index with xp > x */
    while (lo < hi) {
        int64_t mid = lo + ((hi - lo) >> 1);
        if (x >= xp[mid]) lo = mid + 1;
        else hi = mid;
    }
    int64_t j = lo - 1;
    if (j == n - 1 || xp[j] == x) return fp[j];
    double slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j]);
    double r = slope * (x - xp[j]) + fp[j];
    if (isnan(r)) {
        r = slope * (x - xp[j + 1]) + fp[j + 1];
        if (isnan(r) && fp[j] == fp[j + 1]) r = fp[j];
    }
    return r;
}

/* compute_ap of yolo_map.py: precision envelope over padded recall, sampled at 101 recall
 * points, trapezoids summed pairwise. mrec and mpre hold n + 2 scratch entries. */
static double compute_ap(const double *recall, const double *precision, int64_t n, double *mrec, double *mpre) {
    mrec[0] = 0.0;
    mpre[0] = 1.0;
    for (int64_t k = 0; k < n; k++) {
        mrec[k + 1] = recall[k];
        mpre[k + 1] = precision[k];
    }
    mrec[n + 1] = 1.0;
    mpre[n + 1] = 0.0;
    for (int64_t k = n; k >= 0; k--)
        if (!(mpre[k] >= mpre[k + 1])) mpre[k] = mpre[k + 1];  /* np.maximum keeps NaN; none arise */
    double x[101], y[101], area[100];
    for (int k = 0; k < 101; k++) {
        x[k] = linspace_at(0.0, 1.0, 101, k);
        y[k] = interp(x[k], mrec, mpre, n + 2, mpre[0], mpre[n + 1]);
    }
    for (int k = 0; k < 100; k++) area[k] = (x[k + 1] - x[k]) * (y[k + 1] + y[k]) / 2;
    return sum0(area, 100, 1);
}

/* Sort key of one prediction: by class, then confidence descending, then insertion order;
 * within a class this is the order of numpy's stable argsort(-conf). */
typedef struct pred_key {
    int cls;
    double neg_conf;
    int64_t index;
} pred_key;

static int cmp_pred(const void *pa, const void *pb) {
    const pred_key *a = pa, *b = pb;
    if (a->cls != b->cls) return a->cls < b->cls ? -1 : 1;
    if (a->neg_conf != b->neg_conf) return a->neg_conf < b->neg_conf ? -1 : 1;
    return a->index < b->index ? -1 : a->index > b->index;
}

static int cmp_int(const void *pa, const void *pb) {
    int a = *(const int *)pa, b = *(const int *)pb;
    return a < b ? -1 : a > b;
}

itscam_status it_map_acc_compute(const it_map_acc *a, it_map_result *out) {
    if (!a || !out) return it_err(ITSCAM_ERR_INVALID_ARG, "it_map_acc_compute: NULL argument");
    memset(out, 0, sizeof *out);
    out->images = a->images;
    out->labels = a->nlabel;
    out->preds = a->npred;
    if (a->nlabel == 0) return ITSCAM_OK;

    itscam_status st = ITSCAM_OK;
    int64_t n = a->npred;
    int *lab = it_malloc(sizeof *lab * (size_t)a->nlabel);
    pred_key *order = it_malloc(sizeof *order * (size_t)(n ? n : 1));
    double *rec = it_malloc(sizeof *rec * (size_t)(n ? n : 1) * IT_MAP_NTHR);
    double *prec = it_malloc(sizeof *prec * (size_t)(n ? n : 1) * IT_MAP_NTHR);
    double *neg_conf = it_malloc(sizeof *neg_conf * (size_t)(n ? n : 1));
    double *mrec = it_malloc(sizeof *mrec * (size_t)(n + 2));
    double *mpre = it_malloc(sizeof *mpre * (size_t)(n + 2));
    double *ap = NULL, *p_curve = NULL, *r_curve = NULL;
    if (!lab || !order || !rec || !prec || !neg_conf || !mrec || !mpre) goto nomem;
    memcpy(lab, a->label_cls, sizeof *lab * (size_t)a->nlabel);
    qsort(lab, (size_t)a->nlabel, sizeof *lab, cmp_int);
    int nc = 0;
    for (int64_t i = 0; i < a->nlabel; i++)
        if (i == 0 || lab[i] != lab[i - 1]) nc++;
    out->per_class = it_calloc((size_t)nc, sizeof *out->per_class);
    ap = it_calloc((size_t)nc * IT_MAP_NTHR, sizeof *ap);
    p_curve = it_calloc((size_t)nc * PR_POINTS, sizeof *p_curve);
    r_curve = it_calloc((size_t)nc * PR_POINTS, sizeof *r_curve);
    if (!out->per_class || !ap || !p_curve || !r_curve) goto nomem;
    out->classes = nc;
    for (int64_t i = 0, c = -1; i < a->nlabel; i++) {
        if (i == 0 || lab[i] != lab[i - 1]) out->per_class[++c].class_id = lab[i];
        out->per_class[c].labels++;
    }

    for (int64_t i = 0; i < n; i++) order[i] = (pred_key){ a->pred_cls[i], -a->pred_conf[i], i };
    qsort(order, (size_t)n, sizeof *order, cmp_pred);

    int64_t pos = 0;
    for (int ci = 0; ci < nc; ci++) {
        it_map_class *pc = &out->per_class[ci];
        while (pos < n && order[pos].cls < pc->class_id) pos++;
        int64_t start = pos;
        while (pos < n && order[pos].cls == pc->class_id) pos++;
        int64_t np_ = pos - start;
        pc->preds = np_;
        if (np_ == 0) continue;
        const pred_key *key = order + start;
        /* Cumulative TP and FP are integers, as numpy's cumsum over booleans is. */
        for (int t = 0; t < IT_MAP_NTHR; t++) {
            int64_t tpc = 0, fpc = 0;
            double *r = rec + (size_t)t * (size_t)np_, *p = prec + (size_t)t * (size_t)np_;
            for (int64_t k = 0; k < np_; k++) {
                if (a->pred_tp[key[k].index] >> t & 1) tpc++;
                else fpc++;
                r[k] = (double)tpc / ((double)pc->labels + EPS);
                p[k] = (double)tpc / (double)(tpc + fpc);
            }
            ap[(size_t)ci * IT_MAP_NTHR + t] = compute_ap(r, p, np_, mrec, mpre);
        }
        /* Ultralytics' P and R curves at IoU 0.5 over the confidence grid. */
        for (int64_t k = 0; k < np_; k++) neg_conf[k] = key[k].neg_conf;
        for (int k = 0; k < PR_POINTS; k++) {
            double x = -linspace_at(0.0, 1.0, PR_POINTS, k);
            r_curve[(size_t)ci * PR_POINTS + k] = interp(x, neg_conf, rec, np_, 0.0, rec[np_ - 1]);
            p_curve[(size_t)ci * PR_POINTS + k] = interp(x, neg_conf, prec, np_, 1.0, prec[np_ - 1]);
        }
    }

    for (int ci = 0; ci < nc; ci++) {
        it_map_class *pc = &out->per_class[ci];
        memcpy(pc->ap, ap + (size_t)ci * IT_MAP_NTHR, sizeof pc->ap);
        pc->ap50 = pc->ap[0];
        pc->ap50_95 = sum0(pc->ap, IT_MAP_NTHR, 1) / IT_MAP_NTHR;
    }
    out->map50 = sum0(ap, nc, IT_MAP_NTHR) / nc;
    out->map50_95 = sum0(ap, (int64_t)nc * IT_MAP_NTHR, 1) / ((double)nc * IT_MAP_NTHR);

    /* Best confidence: argmax of the mean F1 curve smoothed by a 101-point box filter
     * (Ultralytics' smooth(f1.mean(0), 0.1), edges padded with the end values). */
    {
        double f1m[PR_POINTS], sm[PR_POINTS];
        for (int k = 0; k < PR_POINTS; k++) {
            double s = 0;
            for (int ci = 0; ci < nc; ci++) {
                double p = p_curve[(size_t)ci * PR_POINTS + k], r = r_curve[(size_t)ci * PR_POINTS + k];
                s += 2 * p * r / (p + r + EPS);
            }
            f1m[k] = s / nc;
        }
        enum { NF = 101, HALF = NF / 2 };
        int best = 0;
        for (int k = 0; k < PR_POINTS; k++) {
            double s = 0;
            for (int m = -HALF; m <= HALF; m++) {
                int q = k + m;
                s += f1m[q < 0 ? 0 : q >= PR_POINTS ? PR_POINTS - 1 : q] * (1.0 / NF);
            }
            sm[k] = s;
            if (sm[k] > sm[best]) best = k;
        }
        double *pcol = it_malloc(sizeof *pcol * (size_t)nc * 2);
        if (!pcol) goto nomem;
        for (int ci = 0; ci < nc; ci++) {
            out->per_class[ci].precision = pcol[ci] = p_curve[(size_t)ci * PR_POINTS + best];
            out->per_class[ci].recall = pcol[nc + ci] = r_curve[(size_t)ci * PR_POINTS + best];
        }
        out->precision = sum0(pcol, nc, 1) / nc;
        out->recall = sum0(pcol + nc, nc, 1) / nc;
        out->best_conf = linspace_at(0.0, 1.0, PR_POINTS, best);
        it_free(pcol);
    }
    goto done;
nomem:
    st = it_err(ITSCAM_ERR_NOMEM, "mAP: %lld predictions, %lld labels", (long long)n, (long long)a->nlabel);
    it_map_result_free(out);
done:
    it_free(lab);
    it_free(order);
    it_free(rec);
    it_free(prec);
    it_free(neg_conf);
    it_free(mrec);
    it_free(mpre);
    it_free(ap);
    it_free(p_curve);
    it_free(r_curve);
    return st;
}

itscam_status it_map_read_labels(const char *path, int width, int height, it_map_label **out, int *n) {
    if (!path || !out || !n) return it_err(ITSCAM_ERR_INVALID_ARG, "it_map_read_labels: NULL argument");
    *out = NULL;
    *n = 0;
    uint8_t *buf = NULL;
    size_t len = 0;
    FILE *probe = fopen(path, "rb");
    if (!probe) return ITSCAM_OK;  /* no label file: an image without objects */
    fclose(probe);
    itscam_status st = it_read_file(path, &buf, &len, (size_t)64 << 20);
    if (st) return st;
    /* it_read_file's buffer is not NUL-terminated: copy into one that is. */
    char *text = it_malloc(len + 1);
    if (!text) {
        it_free(buf);
        return it_err(ITSCAM_ERR_NOMEM, "%s: %zu bytes", path, len);
    }
    if (len) memcpy(text, buf, len);
    text[len] = 0;
    it_free(buf);
    it_map_label *v = NULL;
    int cnt = 0, cap = 0, line_no = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        line_no++;
        char *hash = strchr(line, '#');  /* np.loadtxt's comments */
        if (hash) *hash = 0;
        double f[6];
        int k = 0;
        char *p = line, *end;
        while (k < 6) {
            while (*p == ' ' || *p == '\t' || *p == '\r' || *p == ',') p++;
            if (!*p) break;
            f[k] = strtod(p, &end);
            if (end == p) {
                k = -1;
                break;
            }
            k++;
            p = end;
        }
        if (k == 0) continue;  /* blank line */
        if (k != 5 || !(f[0] >= 0 && f[0] < 2147483647.0)) {
            st = it_err(ITSCAM_ERR_INVALID_ARG, "%s:%d: expected 'class cx cy w h'", path, line_no);
            break;
        }
        if (cnt == cap) {
            int nc = cap ? cap * 2 : 16;
            it_map_label *nv = it_realloc(v, sizeof *v * (size_t)nc);
            if (!nv) {
                st = it_err(ITSCAM_ERR_NOMEM, "%s: %d labels", path, nc);
                break;
            }
            v = nv;
            cap = nc;
        }
        it_map_label *l = &v[cnt++];
        l->class_id = (int)f[0];  /* astype(int) truncates */
        l->box[0] = (f[1] - f[3] / 2) * width;
        l->box[1] = (f[2] - f[4] / 2) * height;
        l->box[2] = (f[1] + f[3] / 2) * width;
        l->box[3] = (f[2] + f[4] / 2) * height;
    }
    it_free(text);
    if (st) {
        it_free(v);
        return st;
    }
    *out = v;
    *n = cnt;
    return ITSCAM_OK;
}
