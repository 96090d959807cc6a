/* Multi-object tracking metrics on MOTChallenge text files: CLEAR MOT and identity metrics
 * as py-motmetrics computes them, HOTA as TrackEval computes it. */
#ifndef ITSCAM_TRACK_MOT_METRICS_H
#define ITSCAM_TRACK_MOT_METRICS_H

#include "itscam/itscam.h"

#include <stddef.h>
#include <stdint.h>

/* Bounds on what a file may hold: every buffer here has a maximum. */
#define IT_MOT_MAX_FILE ((size_t)256 << 20) /* bytes */
#define IT_MOT_MAX_LINE 4096                /* characters in one line */
#define IT_MOT_MAX_ROWS (1 << 24)           /* boxes in one file */
#define IT_MOT_MAX_PAIRS (1 << 22)          /* distinct (gt id, predicted id) pairs that overlap */
#define IT_HOTA_ALPHAS 19                   /* TrackEval: np.arange(0.05, 0.99, 0.05) */

/* One box of a MOTChallenge file: `frame, id, x_left, y_top, width, height, conf, ...`.
 * Coordinates are kept as written: py-motmetrics' loader shifts x and y by -1, which no
 * IoU sees, and TrackEval does not. */
typedef struct it_mot_box {
    int frame, id;
    double x, y, w, h;
    double conf; /* 1 when the file has only six columns */
    int line;    /* 1-based line in the file, for messages */
} it_mot_box;

/* The boxes of one file, in file order. Owns rows (it_mot_seq_free). */
typedef struct it_mot_seq {
    it_mot_box *rows;
    int n;
    char name[512]; /* the path (or name) used in messages */
} it_mot_seq;

/* Load a MOTChallenge text file (commas and/or whitespace between fields; blank lines
 * skipped; at least six numeric fields; frame and id integers; width and height finite and
 * >= 0; extra columns after conf ignored). Every row is kept: no confidence, class or
 * visibility filter (py-motmetrics loadtxt with min_confidence=-1). An empty file is a valid
 * empty sequence. Errors: ITSCAM_ERR_IO (cannot read, too large) or ITSCAM_ERR_INVALID_ARG
 * with "path:line: what is wrong" in itscam_last_error(). *out is zeroed on error. */
itscam_status it_mot_load(const char *path, it_mot_seq *out);
/* The same on text in memory; name is used in messages. */
itscam_status it_mot_parse(const char *text, size_t len, const char *name, it_mot_seq *out);
void it_mot_seq_free(it_mot_seq *s); /* NULL and zeroed sequences are fine */

typedef struct it_mot_params {
    /* A gt box and a prediction can be matched (CLEAR, identity) when IoU >= this, tested
     * as py-motmetrics does: (1 - IoU) <= (1 - iou_threshold). HOTA does not use it. */
    double iou_threshold;
} it_mot_params;
it_mot_params it_mot_default_params(void); /* iou_threshold 0.5 */

typedef struct it_mot_result {
    /* Counts (sums over sequences when combined). */
    int64_t num_frames;         /* frames in either file (their union) */
    int64_t num_gt;             /* gt boxes */
    int64_t num_pred;           /* predicted boxes */
    int64_t num_unique_objects; /* distinct gt ids */
    int64_t num_unique_hyps;    /* distinct predicted ids */
    int64_t tp;                 /* matched pairs, switches included (TrackEval CLR_TP) */
    int64_t fp, fn, idsw;       /* false positives, misses, identity switches */
    int64_t mt, pt, ml;         /* tracked >= 80% / in [20%, 80%) / < 20% of their frames */
    int64_t frag;               /* tracked -> missed transitions between first and last match */
    double sum_dist;            /* sum over matches of 1 - IoU */
    int64_t idtp, idfp, idfn;   /* global identity assignment */
    /* HOTA per alpha (alpha_a = 0.05 + 0.05 a). */
    int64_t hota_tp[IT_HOTA_ALPHAS], hota_fn[IT_HOTA_ALPHAS], hota_fp[IT_HOTA_ALPHAS];
    double assa_a[IT_HOTA_ALPHAS], assre_a[IT_HOTA_ALPHAS], asspr_a[IT_HOTA_ALPHAS], loca_a[IT_HOTA_ALPHAS];
    double deta_a[IT_HOTA_ALPHAS], hota_a[IT_HOTA_ALPHAS];

    /* Ratios, from the counts (it_mot_finish). NaN where the denominator is 0, as
     * py-motmetrics' quiet_divide (MOTA with no gt box is NaN, not 1). */
    double mota;       /* 1 - (fn + fp + idsw) / num_gt */
    double motp_dist;  /* py-motmetrics MOTP: mean (1 - IoU) of matches, lower is better */
    double motp_iou;   /* MOTChallenge / TrackEval MOTP: mean IoU of matches = 1 - motp_dist */
    double recall, precision;
    double idf1, idp, idr;
    /* Means over the 19 alphas, TrackEval's convention (0 where undefined, not NaN). */
    double hota, deta, assa, loca, detre, detpr, assre, asspr;
} it_mot_result;

/* Score pred against gt. The frames are the union of both files' frames, in order; each
 * frame's boxes are taken in file order. Duplicate ids within one frame of one file are an
 * error naming the line (TrackEval refuses them too). Errors: ITSCAM_ERR_INVALID_ARG,
 * ITSCAM_ERR_NOMEM, with a detail message. *r is complete on ITSCAM_OK. Thread-safe. */
itscam_status it_mot_evaluate(const it_mot_seq *gt, const it_mot_seq *pred, const it_mot_params *p,
                              it_mot_result *r);

/* Several sequences as one (py-motmetrics compute_many(generate_overall=True) for CLEAR and
 * identity: counts summed, ratios recomputed; TrackEval's combination for HOTA: TP, FN, FP
 * summed per alpha, AssA/AssRe/AssPr/LocA averaged weighted by TP). */
void it_mot_combine(const it_mot_result *seqs, int n, it_mot_result *out);

/* The metrics by name, for tables and JSON: a fixed list, in display order. */
typedef struct it_mot_metric {
    const char *name; /* e.g. "MOTA", "MOTP_pymotmetrics", "IDSW", "HOTA" */
    const char *what; /* one line */
    int is_count;     /* an integer count rather than a ratio */
} it_mot_metric;
int it_mot_metric_count(void);
const it_mot_metric *it_mot_metric_at(int i); /* NULL out of range */
/* Value of the named metric; NAN with *found = 0 (found may be NULL) for an unknown name. */
double it_mot_metric_value(const it_mot_result *r, const char *name, int *found);

#endif
