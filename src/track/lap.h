/* Dense linear assignment (min-cost bipartite matching), exact, for metrics and trackers. */
#ifndef ITSCAM_TRACK_LAP_H
#define ITSCAM_TRACK_LAP_H

#include "itscam/itscam.h"

/* Largest side accepted by it_lap_solve: the solver is O(n^2 m) time and O(n m) memory. */
#define IT_LAP_MAX_SIDE 4096

/* Solve the rectangular assignment problem on cost (row-major, rows x cols):
 * min(rows, cols) pairs, no row or column twice, minimum total cost, like
 * scipy.optimize.linear_sum_assignment.
 *
 * A cost that is NaN or infinite marks a pair that may not be matched. Those pairs are
 * replaced by a constant larger than any assignment of allowed pairs can cost (py-motmetrics'
 * lap.add_expensive_edges), so the result first has as many allowed pairs as possible and
 * then, among those, the least total cost; the forbidden pairs are then dropped (-1).
 *
 * row_to_col (rows entries) and col_to_row (cols entries, may be NULL) receive the matched
 * column / row or -1. total (may be NULL) receives the sum of the matched allowed costs.
 * Returns the number of matched pairs (>= 0), or -ITSCAM_ERR_INVALID_ARG (bad sizes or a
 * NULL array) or -ITSCAM_ERR_NOMEM, with the detail in itscam_last_error().
 * Thread-safe; allocates O(rows * cols) scratch. Ties are broken deterministically. */
int it_lap_solve(const double *cost, int rows, int cols, int *row_to_col, int *col_to_row, double *total);

#endif
