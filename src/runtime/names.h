/* Class names carried in a model's metadata. They belong to the model (runtime), so that
 * loading one never reaches up into detection code. */
#ifndef ITSCAM_NAMES_H
#define ITSCAM_NAMES_H

#include "core/core.h"

/* Parse Ultralytics' `names` metadata, a Python dict repr such as
 * "{0: 'person', 1: \"couch's\", ...}", into an array indexed by class id (ids must be
 * 0..n-1; gaps become ""). *names_out holds *n_out it_malloc'd strings. Returns 0 on
 * success, -1 on a malformed string (with it_err set). */
int it_parse_names(const char *meta_names, char ***names_out, int *n_out);
void it_free_names(char **names, int n);

#endif
