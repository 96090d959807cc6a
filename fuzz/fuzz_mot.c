/* libFuzzer target: MOTChallenge text through the loader and the metrics. The input is
 * split at its first '|' into ground truth and predictions (all of it is both when there
 * is none). A parse failure must leave an empty sequence and a message naming a line; a
 * success must score without error (or refuse duplicate ids) and give ratios in range. */
#include "core/core.h"
#include "track/mot_metrics.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

static int in01(double v) { return isnan(v) || (v >= -1e-9 && v <= 1 + 1e-9); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *t = (const char *)data;
    const char *bar = memchr(t, '|', size);
    size_t ng = bar ? (size_t)(bar - t) : size;
    const char *pt = bar ? bar + 1 : t;
    size_t np = bar ? size - ng - 1 : size;
    it_mot_seq g, p;
    if (it_mot_parse(t, ng, "gt", &g)) {
        if (g.n || g.rows || !strstr(itscam_last_error(), "gt:")) __builtin_trap();
        return 0;
    }
    if (it_mot_parse(pt, np, "pred", &p)) {
        if (p.n || p.rows) __builtin_trap();
        it_mot_seq_free(&g);
        return 0;
    }
    it_mot_result r;
    /* The assignment is cubic in boxes per frame: keep each input quick. */
    if ((double)g.n * p.n > 250000) goto done;
    itscam_status st = it_mot_evaluate(&g, &p, NULL, &r);
    if (st && st != ITSCAM_ERR_INVALID_ARG) __builtin_trap();
    if (!st) {
        if (r.tp + r.fn != r.num_gt || r.tp + r.fp != r.num_pred || r.idtp > r.num_gt || r.idtp > r.num_pred) __builtin_trap();
        if (!in01(r.idf1) || !in01(r.hota) || !in01(r.deta) || !in01(r.assa) || !in01(r.motp_iou)) __builtin_trap();
        if (r.mt + r.pt + r.ml != r.num_unique_objects) __builtin_trap();
    }
done:
    it_mot_seq_free(&g);
    it_mot_seq_free(&p);
    return 0;
}
