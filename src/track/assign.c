/* Linear assignment with a cost limit (lapjv's extend_cost/cost_limit semantics, or with
 * no limit the most pairs at the least cost), solved exactly per connected part of the
 * allowed pairs with the Hungarian method. */
#include "track/assign.h"

#include <math.h>
#include <string.h>

void it_assign_ws_free(it_assign_ws *w) {
    if (!w) return;
    it_free(w->dbl);
    it_free(w->ints);
    memset(w, 0, sizeof *w);
}

static itscam_status grow_dbl(it_assign_ws *w, size_t n) {
    if (n <= w->dbl_cap) return ITSCAM_OK;
    double *p = it_realloc(w->dbl, n * sizeof *p);
    if (!p) return it_err(ITSCAM_ERR_NOMEM, "assignment: %zu doubles of scratch", n);
    w->dbl = p;
    w->dbl_cap = n;
    return ITSCAM_OK;
}

static itscam_status grow_int(it_assign_ws *w, size_t n) {
    if (n <= w->int_cap) return ITSCAM_OK;
    int *p = it_realloc(w->ints, n * sizeof *p);
    if (!p) return it_err(ITSCAM_ERR_NOMEM, "assignment: %zu ints of scratch", n);
    w->ints = p;
    w->int_cap = n;
    return ITSCAM_OK;
}

static int uf_find(int *parent, int x) {
    while (parent[x] != x) {
        parent[x] = parent[parent[x]];
        x = parent[x];
    }
    return x;
}

/* Minimum-cost assignment of every one of R rows to distinct columns of an R x M matrix
 * (R <= M), 1-indexed as in the classic shortest-augmenting-path formulation: u, v are the
 * dual potentials, p[j] the row holding column j, way[j] the previous column on the path.
 * O(R^2 M). Writes the column of row i (0-based) to row_col[i]. */
static void hungarian(const double *a, int R, int M, double *u, double *v, double *minv, int *p, int *way, int *used,
                      int *row_col) {
    for (int j = 0; j <= M; j++) {
        v[j] = 0;
        p[j] = 0;
        way[j] = 0;
    }
    for (int i = 0; i <= R; i++) u[i] = 0;
    for (int i = 1; i <= R; i++) {
        p[0] = i;
        int j0 = 0;
        for (int j = 0; j <= M; j++) {
            minv[j] = HUGE_VAL;
            used[j] = 0;
        }
        do {
            used[j0] = 1;
            int i0 = p[j0], j1 = 0;
            double delta = HUGE_VAL;
            const double *row = a + (size_t)(i0 - 1) * M;
            for (int j = 1; j <= M; j++) {
                if (used[j]) continue;
                double cur = row[j - 1] - u[i0] - v[j];
                if (cur < minv[j]) {
                    minv[j] = cur;
                    way[j] = j0;
                }
                if (minv[j] < delta) {
                    delta = minv[j];
                    j1 = j;
                }
            }
            for (int j = 0; j <= M; j++) {
                if (used[j]) {
                    u[p[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
        } while (p[j0] != 0);
        do {
            int j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
        } while (j0);
    }
    for (int j = 1; j <= M; j++)
        if (p[j]) row_col[p[j] - 1] = j - 1;
}

/* A pair may be matched: finite and below the limit (false for NaN). */
/* (x < limit) is false for NaN and +inf; -inf is refused by the second test. */
static inline int allowed(double x, double limit) { return x < limit && x > -HUGE_VAL; }

itscam_status it_assign(it_assign_ws *w, const double *cost, int n, int m, double limit, int *row_match,
                        int *col_match, double *total) {
    if (!w || n < 0 || m < 0 || (n && m && !cost) || isnan(limit))
        return it_err(ITSCAM_ERR_INVALID_ARG, "assignment: bad arguments (n %d, m %d, limit %g)", n, m, limit);
    if (row_match)
        for (int i = 0; i < n; i++) row_match[i] = -1;
    if (col_match)
        for (int j = 0; j < m; j++) col_match[j] = -1;
    if (total) *total = 0;
    if (!n || !m) return ITSCAM_OK;
    const int no_limit = isinf(limit) && limit > 0;

    /* Rows are nodes 0..n-1, columns n..n+m-1. Matching only ever pairs nodes joined by an
     * allowed cell, so each connected part of that graph is an independent problem,
     * usually of one or two tracks: the optimum of the whole is the union of the parts'
     * optima under either objective. */
    int nodes = n + m, mx = IT_MAX(n, m), mn = IT_MIN(n, m);
    size_t need = (size_t)4 * nodes + (size_t)4 * (mn + 1) + (size_t)3 * (mx + 1) + (size_t)mn;
    itscam_status st = grow_int(w, need);
    if (st) return st;
    int *parent = w->ints, *node_comp = parent + nodes, *rid = node_comp + nodes, *rows = rid + nodes, *cols = rows + n;
    int *rstart = cols + m, *cstart = rstart + mn + 1, *rfill = cstart + mn + 1, *cfill = rfill + mn + 1;
    int *p = cfill + mn + 1, *way = p + mx + 1, *used = way + mx + 1, *pick = used + mx + 1;
    for (int i = 0; i < nodes; i++) {
        parent[i] = i;
        node_comp[i] = -2; /* -2: no edge; -1: has an edge, part not numbered yet */
    }
    for (int i = 0; i < n; i++)
        for (int j = 0; j < m; j++)
            if (allowed(cost[(size_t)i * m + j], limit)) {
                int a = uf_find(parent, i), b = uf_find(parent, n + j);
                if (a != b) parent[a] = b;
                node_comp[i] = node_comp[n + j] = -1;
            }
    /* Number the parts in order of their first node, then bucket rows and columns. */
    int k = 0;
    for (int x = 0; x < nodes; x++) rid[x] = -1;
    for (int x = 0; x < nodes; x++) {
        if (node_comp[x] == -2) continue;
        int r = uf_find(parent, x);
        if (rid[r] < 0) rid[r] = k++;
        node_comp[x] = rid[r];
    }
    /* k <= min(n, m): every part holds at least one row and one column. */
    memset(rstart, 0, sizeof(int) * (size_t)(k + 1));
    memset(cstart, 0, sizeof(int) * (size_t)(k + 1));
    for (int i = 0; i < n; i++)
        if (node_comp[i] >= 0) rstart[node_comp[i] + 1]++;
    for (int j = 0; j < m; j++)
        if (node_comp[n + j] >= 0) cstart[node_comp[n + j] + 1]++;
    for (int c = 0; c < k; c++) {
        rstart[c + 1] += rstart[c];
        cstart[c + 1] += cstart[c];
    }
    memcpy(rfill, rstart, sizeof(int) * (size_t)k);
    memcpy(cfill, cstart, sizeof(int) * (size_t)k);
    for (int i = 0; i < n; i++)
        if (node_comp[i] >= 0) rows[rfill[node_comp[i]]++] = i;
    for (int j = 0; j < m; j++)
        if (node_comp[n + j] >= 0) cols[cfill[node_comp[n + j]]++] = j;

    double sum = 0;
    for (int c = 0; c < k; c++) {
        const int *cr = rows + rstart[c], *cc = cols + cstart[c];
        int nr = rstart[c + 1] - rstart[c], nc = cstart[c + 1] - cstart[c];
        if (nr == 1 && nc == 1) { /* the common case: one track, one detection */
            if (row_match) row_match[cr[0]] = cc[0];
            if (col_match) col_match[cc[0]] = cr[0];
            sum += cost[(size_t)cr[0] * m + cc[0]];
            continue;
        }
        /* Every row of the smaller side is assigned to a column of the larger side (a
         * complete assignment), then the cells that are not allowed are dropped. */
        int transpose = nr > nc, R = transpose ? nc : nr, M = transpose ? nr : nc;
        if ((size_t)R * M > IT_ASSIGN_MAX_CELLS)
            return it_err(ITSCAM_ERR_INVALID_ARG, "assignment: a connected part of %d x %d pairs, at most %zu cells",
                          nr, nc, IT_ASSIGN_MAX_CELLS);
        st = grow_dbl(w, (size_t)R * M + (size_t)R + 1 + (size_t)2 * (M + 1));
        if (st) return st;
        double *a = w->dbl, *u = a + (size_t)R * M, *v = u + R + 1, *minv = v + M + 1;
        /* With a limit, a cell that is not allowed costs 0, the same as leaving both ends
         * unmatched, so a complete assignment of minimum sum(cost - limit), such cells
         * dropped, is lapjv's optimum without its dummy rows and columns. Without one, a
         * forbidden cell costs more than any R allowed cells can differ by (py-motmetrics'
         * add_expensive_edges): one allowed pair more always wins, then the least total. */
        double big = 0;
        if (no_limit) {
            double cmax = 0;
            for (int r = 0; r < nr; r++)
                for (int q = 0; q < nc; q++) {
                    double x = cost[(size_t)cr[r] * m + cc[q]];
                    if (isfinite(x) && fabs(x) > cmax) cmax = fabs(x);
                }
            big = 2.0 * R * (cmax + 1) + 1;
        }
        for (int r = 0; r < R; r++)
            for (int q = 0; q < M; q++) {
                int i = transpose ? cr[q] : cr[r], j = transpose ? cc[r] : cc[q];
                double x = cost[(size_t)i * m + j];
                a[(size_t)r * M + q] = !allowed(x, limit) ? (no_limit ? big : 0.0) : no_limit ? x : x - limit;
            }
        if (!isfinite(big)) goto overflow;
        for (size_t q = 0; q < (size_t)R * M; q++)
            if (!isfinite(a[q])) goto overflow;
        hungarian(a, R, M, u, v, minv, p, way, used, pick);
        for (int r = 0; r < R; r++) {
            int i = transpose ? cr[pick[r]] : cr[r], j = transpose ? cc[r] : cc[pick[r]];
            double x = cost[(size_t)i * m + j];
            if (!allowed(x, limit)) continue;
            if (row_match) row_match[i] = j;
            if (col_match) col_match[j] = i;
            sum += x;
        }
    }
    if (total) *total = sum;
    return ITSCAM_OK;
overflow:
    if (row_match)
        for (int i = 0; i < n; i++) row_match[i] = -1;
    if (col_match)
        for (int j = 0; j < m; j++) col_match[j] = -1;
    return it_err(ITSCAM_ERR_INVALID_ARG, "assignment: costs too large to solve (limit %g)", limit);
}
