/* Calibration tables: load and save the JSON that `itscam calibrate` writes. */
#include "graph/calib.h"

#include <jansson.h>
#include <string.h>

void it_calib_free(it_calib *c) {
    if (!c) return;
    for (int i = 0; i < c->n; i++) it_free(c->names[i]);
    it_free(c->names);
    it_free(c->lo);
    it_free(c->hi);
    it_free(c->model);
    it_free(c->method);
    it_free(c);
}

itscam_status it_calib_load(const char *path, it_calib **out) {
    *out = NULL;
    json_error_t je;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!root) return it_err(ITSCAM_ERR_IO, "%s:%d:%d: %s", path, je.line, je.column, je.text);
    itscam_status st = ITSCAM_OK;
    json_t *ranges = json_object_get(root, "ranges");
    it_calib *c = it_calloc(1, sizeof *c);
    if (!c) { json_decref(root); return it_err(ITSCAM_ERR_NOMEM, "out of memory"); }
    if (!json_is_object(ranges)) { st = it_err(ITSCAM_ERR_INVALID_ARG, "%s: no \"ranges\" object", path); goto done; }
    size_t n = json_object_size(ranges);
    c->names = it_calloc(n ? n : 1, sizeof *c->names);
    c->lo = it_calloc(n ? n : 1, sizeof *c->lo);
    c->hi = it_calloc(n ? n : 1, sizeof *c->hi);
    c->model = it_strdup(json_string_value(json_object_get(root, "model")) ? json_string_value(json_object_get(root, "model")) : "");
    c->method = it_strdup(json_string_value(json_object_get(root, "method")) ? json_string_value(json_object_get(root, "method")) : "");
    if (!c->names || !c->lo || !c->hi || !c->model || !c->method) { st = it_err(ITSCAM_ERR_NOMEM, "out of memory"); goto done; }
    const char *key;
    json_t *v;
    json_object_foreach(ranges, key, v) {
        if (!json_is_array(v) || json_array_size(v) != 2 || !json_is_number(json_array_get(v, 0)) ||
            !json_is_number(json_array_get(v, 1))) {
            st = it_err(ITSCAM_ERR_INVALID_ARG, "%s: range of '%s' is not [lo, hi]", path, key);
            goto done;
        }
        double lo = json_number_value(json_array_get(v, 0)), hi = json_number_value(json_array_get(v, 1));
        if (!(lo <= hi)) { st = it_err(ITSCAM_ERR_INVALID_ARG, "%s: range of '%s' has lo > hi", path, key); goto done; }
        if (!(c->names[c->n] = it_strdup(key))) { st = it_err(ITSCAM_ERR_NOMEM, "out of memory"); goto done; }
        c->lo[c->n] = (float)lo;
        c->hi[c->n] = (float)hi;
        c->n++;
    }
done:
    json_decref(root);
    if (st != ITSCAM_OK) { it_calib_free(c); return st; }
    *out = c;
    return ITSCAM_OK;
}

itscam_status it_calib_save(const it_calib *c, const char *path, int images) {
    json_t *root = json_object(), *ranges = json_object();
    json_object_set_new(root, "model", json_string(c->model ? c->model : ""));
    json_object_set_new(root, "method", json_string(c->method ? c->method : ""));
    json_object_set_new(root, "images", json_integer(images));
    for (int i = 0; i < c->n; i++) {
        json_t *r = json_array();
        json_array_append_new(r, json_real(c->lo[i]));
        json_array_append_new(r, json_real(c->hi[i]));
        json_object_set_new(ranges, c->names[i], r);
    }
    json_object_set_new(root, "ranges", ranges);
    int rc = json_dump_file(root, path, JSON_INDENT(1) | JSON_SORT_KEYS);
    json_decref(root);
    return rc ? it_err(ITSCAM_ERR_IO, "%s: cannot write", path) : ITSCAM_OK;
}

int it_calib_range(const it_calib *c, const char *name, float *lo, float *hi) {
    if (!c || !name) return -1;
    for (int i = 0; i < c->n; i++)
        if (!strcmp(c->names[i], name)) {
            *lo = c->lo[i];
            *hi = c->hi[i];
            return 0;
        }
    return -1;
}
