/* itscam eval-track: score a tracker's MOTChallenge output against ground truth: CLEAR MOT
 * and identity metrics as py-motmetrics, HOTA as TrackEval (src/track/mot_metrics.h). */
#include "cli/cli.h"
#include "core/core.h"
#include "track/mot_metrics.h"

#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SEQUENCES 256

void cli_eval_track_usage(FILE *f) {
    fprintf(f,
            "usage: itscam eval-track --gt GT.txt --pred PRED.txt [--gt GT2 --pred PRED2 ...] [--json]\n\n"
            "Score tracks against ground truth, both MOTChallenge text files\n"
            "('frame, id, x_left, y_top, width, height, conf, ...', one box a line, every row\n"
            "kept). Several --gt/--pred pairs are scored one by one and together (OVERALL).\n\n"
            "  CLEAR MOT and identity, as py-motmetrics (IoU >= the threshold can match; a\n"
            "  match kept from the previous frame wins; then most matches, least distance):\n"
            "    MOTA, MOTP, IDF1, IDP, IDR, IDSW, FP, FN, MT, PT, ML, Frag, recall, precision.\n"
            "    MOTP is given both ways: MOTP_iou, the mean IoU of matches (MOTChallenge and\n"
            "    TrackEval; higher is better, the table's MOTP), and MOTP_pymotmetrics, the mean\n"
            "    1 - IoU (py-motmetrics; lower is better).\n"
            "  HOTA, DetA, AssA, LocA (and DetRe, DetPr, AssRe, AssPr), as TrackEval: means\n"
            "    over IoU thresholds alpha = 0.05 .. 0.95.\n\n"
            "options:\n"
            "  --gt FILE     ground truth (repeatable, paired with --pred in order)\n"
            "  --pred FILE   tracker output\n"
            "  --iou X       IoU a CLEAR/identity match needs (0.5)\n"
            "  --json        every metric as JSON, HOTA/DetA/AssA/LocA per alpha too\n");
}

/* "TUD-Campus" for .../TUD-Campus/gt.txt or .../TUD-Campus/gt/gt.txt, else the file name. */
static void seq_name(const char *path, char *out, size_t n) {
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", path);
    for (int strip = 0; strip < 2; strip++) {
        char *s = strrchr(buf, '/');
        const char *base = s ? s + 1 : buf;
        if (strcmp(base, "gt.txt") && strcmp(base, "gt")) break;
        if (!s) break;
        *s = 0;
    }
    char *s = strrchr(buf, '/');
    snprintf(out, n, "%s", s ? s + 1 : buf);
}

static json_t *num(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static json_t *result_json(const it_mot_result *r) {
    json_t *m = json_object();
    for (int i = 0; i < it_mot_metric_count(); i++) {
        const it_mot_metric *d = it_mot_metric_at(i);
        double v = it_mot_metric_value(r, d->name, NULL);
        json_object_set_new(m, d->name, d->is_count ? json_integer((json_int_t)v) : num(v));
    }
    json_t *pa = json_object(), *al = json_array(), *h = json_array(), *de = json_array(), *as = json_array(),
           *lo = json_array();
    for (int a = 0; a < IT_HOTA_ALPHAS; a++) {
        json_array_append_new(al, json_real(0.05 + a * 0.05));
        json_array_append_new(h, num(r->hota_a[a]));
        json_array_append_new(de, num(r->deta_a[a]));
        json_array_append_new(as, num(r->assa_a[a]));
        json_array_append_new(lo, num(r->loca_a[a]));
    }
    json_object_set_new(pa, "alpha", al);
    json_object_set_new(pa, "HOTA", h);
    json_object_set_new(pa, "DetA", de);
    json_object_set_new(pa, "AssA", as);
    json_object_set_new(pa, "LocA", lo);
    json_t *o = json_object();
    json_object_set_new(o, "metrics", m);
    json_object_set_new(o, "per_alpha", pa);
    return o;
}

static void print_row(const char *name, const it_mot_result *r) {
    printf("%-18s %6.1f %6.1f %6.1f %6.1f %6.1f %6.1f %6.1f %6.1f %5lld %6lld %6lld %4lld %4lld %4lld %5lld\n", name,
           100 * r->hota, 100 * r->deta, 100 * r->assa, 100 * r->mota, 100 * r->motp_iou, 100 * r->idf1,
           100 * r->idp, 100 * r->idr, (long long)r->idsw, (long long)r->fp, (long long)r->fn, (long long)r->mt,
           (long long)r->pt, (long long)r->ml, (long long)r->frag);
}

int cli_eval_track(int argc, char **argv) {
    static const struct option opts[] = {
        { "gt", required_argument, NULL, 'g' },  { "pred", required_argument, NULL, 'p' },
        { "iou", required_argument, NULL, 'i' }, { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },      { NULL, 0, NULL, 0 },
    };
    const char *gts[MAX_SEQUENCES], *preds[MAX_SEQUENCES];
    int ng = 0, np = 0, as_json = 0, c;
    it_mot_params prm = it_mot_default_params();
    float iou;
    optind = 1;
    while ((c = getopt_long(argc, argv, "g:p:i:jh", opts, NULL)) != -1) {
        switch (c) {
        case 'g':
            if (ng == MAX_SEQUENCES) goto too_many;
            gts[ng++] = optarg;
            break;
        case 'p':
            if (np == MAX_SEQUENCES) goto too_many;
            preds[np++] = optarg;
            break;
        case 'i':
            if (cli_parse_float(optarg, &iou) || !(iou > 0 && iou <= 1)) {
                fprintf(stderr, "itscam eval-track: --iou wants a number in (0, 1], not '%s'\n", optarg);
                return 2;
            }
            prm.iou_threshold = iou;
            break;
        case 'j': as_json = 1; break;
        case 'h': cli_eval_track_usage(stdout); return 0;
        default: cli_eval_track_usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "itscam eval-track: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!ng || ng != np) {
        fprintf(stderr, "itscam eval-track: give --gt and --pred, as many of one as of the other (%d and %d)\n", ng,
                np);
        cli_eval_track_usage(stderr);
        return 2;
    }

    it_mot_result *res = calloc((size_t)ng + 1, sizeof *res);
    if (!res) return cli_fail(NULL, ITSCAM_ERR_NOMEM);
    for (int s = 0; s < ng; s++) {
        it_mot_seq g, p;
        itscam_status st = it_mot_load(gts[s], &g);
        if (!st) {
            st = it_mot_load(preds[s], &p);
            if (!st) {
                st = it_mot_evaluate(&g, &p, &prm, &res[s]);
                it_mot_seq_free(&p);
            }
            it_mot_seq_free(&g);
        }
        if (st) {
            free(res);
            return cli_fail(NULL, st); /* the detail names the file and line */
        }
    }
    it_mot_combine(res, ng, &res[ng]);

    if (as_json) {
        json_t *o = json_object(), *seqs = json_array();
        json_object_set_new(o, "iou_threshold", json_real(prm.iou_threshold));
        for (int s = 0; s < ng; s++) {
            json_t *sj = result_json(&res[s]);
            char name[256];
            seq_name(gts[s], name, sizeof name);
            json_object_set_new(sj, "name", json_string(name));
            json_object_set_new(sj, "gt", json_string(gts[s]));
            json_object_set_new(sj, "pred", json_string(preds[s]));
            json_array_append_new(seqs, sj);
        }
        json_object_set_new(o, "sequences", seqs);
        json_object_set_new(o, "overall", result_json(&res[ng]));
        json_object_set_new(o, "conventions",
                            json_string("CLEAR MOT and identity metrics as py-motmetrics (MOTP_pymotmetrics = mean "
                                        "1 - IoU of matches; MOTP_iou = mean IoU, MOTChallenge/TrackEval); HOTA, DetA, "
                                        "AssA, LocA as TrackEval, means over alpha 0.05..0.95"));
        json_dumpf(o, stdout, JSON_REAL_PRECISION(17));
        fputc('\n', stdout);
        json_decref(o);
    } else {
        printf("%-18s %6s %6s %6s %6s %6s %6s %6s %6s %5s %6s %6s %4s %4s %4s %5s\n", "sequence", "HOTA", "DetA",
               "AssA", "MOTA", "MOTP", "IDF1", "IDP", "IDR", "IDSW", "FP", "FN", "MT", "PT", "ML", "Frag");
        for (int s = 0; s < ng; s++) {
            char name[256];
            seq_name(gts[s], name, sizeof name);
            print_row(name, &res[s]);
        }
        if (ng > 1) print_row("OVERALL", &res[ng]);
        const it_mot_result *t = &res[ng];
        printf("\nPercentages. MOTP is the mean IoU of matches (MOTChallenge/TrackEval); py-motmetrics'\n"
               "MOTP, the mean 1 - IoU, is %.6f. %lld frames, %lld gt boxes (%lld ids), %lld predicted\n"
               "boxes (%lld ids), CLEAR/identity IoU >= %g. --json gives every metric.\n",
               t->motp_dist, (long long)t->num_frames, (long long)t->num_gt, (long long)t->num_unique_objects,
               (long long)t->num_pred, (long long)t->num_unique_hyps, prm.iou_threshold);
    }
    free(res);
    return 0;

too_many:
    fprintf(stderr, "itscam eval-track: at most %d sequences\n", MAX_SEQUENCES);
    return 2;
}
