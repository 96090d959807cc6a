/* Dense linear assignment: the shortest-augmenting-path Hungarian method with potentials
 * (Kuhn-Munkres as refined by Jonker and Volgenant), O(n^2 m) for n <= m. */
#include "track/lap.h"

#include "core/core.h"

#include <float.h>
#include <math.h>
#include <string.h>

/* Square-or-wide core: n <= m, a is n x m (row-major), every entry finite. p[j] (1-based
 * row of column j, 0 = free) out. Scratch: u n+1, v/minv m+1, way/used m+1. */
static void hungarian(const double *a, int n, int m, int *p, double *u, double *v, double *minv, int *way,
                      unsigned char *used) {
    for (int j = 0; j <= m; j++) p[j] = 0, v[j] = 0;
    for (int i = 0; i <= n; i++) u[i] = 0;
    for (int i = 1; i <= n; i++) {
        p[0] = i;
        int j0 = 0;
        for (int j = 0; j <= m; j++) minv[j] = INFINITY, used[j] = 0;
        do {
            used[j0] = 1;
            int i0 = p[j0], j1 = 0;
            double delta = INFINITY;
            const double *row = a + (size_t)(i0 - 1) * m;
            for (int j = 1; j <= m; j++) {
                if (used[j]) continue;
                double cur = row[j - 1] - u[i0] - v[j];
                if (cur < minv[j]) minv[j] = cur, way[j] = j0;
                if (minv[j] < delta) delta = minv[j], j1 = j;
            }
            for (int j = 0; j <= m; j++) {
                if (used[j]) u[p[j]] += delta, v[j] -= delta;
                else minv[j] -= delta;
            }
            j0 = j1;
        } while (p[j0] != 0);
        do {
            int j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
        } while (j0);
    }
}

int it_lap_solve(const double *cost, int rows, int cols, int *row_to_col, int *col_to_row, double *total) {
    if (rows < 0 || cols < 0 || rows > IT_LAP_MAX_SIDE || cols > IT_LAP_MAX_SIDE || (rows && !row_to_col) ||
        (rows && cols && !cost))
        return -it_err(ITSCAM_ERR_INVALID_ARG, "it_lap_solve: bad arguments (%d x %d)", rows, cols);
    for (int i = 0; i < rows; i++) row_to_col[i] = -1;
    if (col_to_row)
        for (int j = 0; j < cols; j++) col_to_row[j] = -1;
    if (total) *total = 0;
    if (!rows || !cols) return 0;

    /* Work on n <= m: transpose a tall problem. */
    int tr = rows > cols, n = tr ? cols : rows, m = tr ? rows : cols;
    size_t nm = (size_t)n * m;
    double *a = it_malloc(nm * sizeof *a);
    double *u = it_malloc((size_t)(n + 1) * sizeof *u);
    double *v = it_malloc((size_t)(m + 1) * sizeof *v);
    double *minv = it_malloc((size_t)(m + 1) * sizeof *minv);
    int *p = it_malloc((size_t)(m + 1) * sizeof *p);
    int *way = it_malloc((size_t)(m + 1) * sizeof *way);
    unsigned char *used = it_malloc((size_t)(m + 1));
    int matched = 0;
    if (!a || !u || !v || !minv || !p || !way || !used) {
        matched = -it_err(ITSCAM_ERR_NOMEM, "it_lap_solve: out of memory (%d x %d)", rows, cols);
        goto done;
    }
    /* Forbidden pairs cost l = 2 r c + 1 with every allowed cost in [-c, c]: one forbidden
     * pair plus r - 1 best allowed ones costs more than r worst allowed ones, so a solution
     * never trades an allowed pair for a forbidden one (py-motmetrics add_expensive_edges). */
    double c = 0;
    int any_valid = 0, any_invalid = 0;
    for (size_t k = 0; k < nm; k++) {
        double x = cost[k];
        if (isfinite(x)) {
            any_valid = 1;
            if (fabs(x) > c) c = fabs(x);
        } else {
            any_invalid = 1;
        }
    }
    if (!any_valid) goto done;
    double big = 2.0 * n * (c + 1) + 1;
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) {
            double x = cost[(size_t)i * cols + j];
            a[tr ? (size_t)j * m + i : (size_t)i * m + j] = any_invalid && !isfinite(x) ? big : x;
        }
    hungarian(a, n, m, p, u, v, minv, way, used);
    double sum = 0;
    for (int j = 1; j <= m; j++) {
        if (!p[j]) continue;
        int r = tr ? j - 1 : p[j] - 1, col = tr ? p[j] - 1 : j - 1;
        double x = cost[(size_t)r * cols + col];
        if (!isfinite(x)) continue;
        row_to_col[r] = col;
        if (col_to_row) col_to_row[col] = r;
        sum += x;
        matched++;
    }
    if (total) *total = sum;
done:
    it_free(a);
    it_free(u);
    it_free(v);
    it_free(minv);
    it_free(p);
    it_free(way);
    it_free(used);
    return matched;
}
