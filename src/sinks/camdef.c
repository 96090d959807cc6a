/* Camera definitions: one table of keys drives the strict JSON reader and the writer, so
 * a key cannot be read without being written back (and the store keeps every setting). */
#include "sinks/camdef.h"

#include "stream/source.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const prio_names[] = { "critical", "high", "normal", "low", NULL };
static const char *const transport_names[] = { "tcp", "udp", NULL }; /* it_source_transport order */
static const char *const hwaccel_names[] = { "auto", "none", "vaapi", "cuda", NULL };
static const char *const skip_names[] = { "auto", "none", "nonref", "keyframes", NULL }; /* it_cam_skip order */
static const char *const anchor_names[] = { "bottom_center", "center", "top_center", NULL }; /* it_an_anchor order */
static const char *const coord_names[] = { "pixels", "normalized", NULL };
static const char *const dir_names[] = { "a_to_b", "b_to_a", "both", NULL }; /* it_an_dir order */

typedef enum {
    K_ID,      /* char[IT_CAM_ID_MAX + 1], [a-z0-9_-]{1,64} */
    K_URL,     /* char[size], not empty */
    K_STR,     /* char[size], may be empty; choices when given */
    K_BOOL,    /* int 0/1 from true/false */
    K_CHOICE,  /* int index into choices, from its name */
    K_NUM,     /* double in [min, max] */
    K_CONF,    /* float: -1 (or null) = the server's default, else [min, max] */
    K_CLASSES, /* int[128] + n_classes */
    K_TFLOAT,  /* float in [min, max], or null / absent = inherit (stored as -1) */
    K_TINT,    /* int in [min, max], or null = inherit (-1) */
    K_TBOOL,   /* int 0/1 from true/false, or null = inherit (-1) */
} kind;

typedef struct keydef {
    const char *name;
    kind k;
    size_t off, size;
    double min, max;
    const char *const *choices;
} keydef;

#define F(f) offsetof(it_camdef, f), sizeof(((it_camdef *)0)->f)
static const keydef top_keys[] = {
    { "id", K_ID, F(id), 0, 0, NULL },
    { "url", K_URL, F(url), 0, 0, NULL },
    { "enabled", K_BOOL, F(enabled), 0, 0, NULL },
    { "priority", K_CHOICE, F(priority), 0, 0, prio_names },
    { "transport", K_CHOICE, F(transport), 0, 0, transport_names },
    { "loop", K_BOOL, F(loop), 0, 0, NULL },
    { "realtime", K_BOOL, F(realtime), 0, 0, NULL },
    { "hwaccel", K_STR, F(hwaccel), 0, 0, hwaccel_names },
    { "stall_timeout_s", K_NUM, F(stall_timeout_s), 0.5, 600, NULL },
    { "decode_skip", K_CHOICE, F(skip), 0, 0, skip_names },
    { "anchor", K_CHOICE, F(anchor), 0, 0, anchor_names },
    { "coordinates", K_CHOICE, F(normalized), 0, 0, coord_names },
    { "speed_limit_kmh", K_NUM, F(speed_limit_kmh), 0, 1000, NULL },
};
/* Ultralytics' bytetrack.yaml names; ranges wide enough for tuning, narrow enough to
 * refuse a typo (a threshold of 25 meant as 0.25). */
static const keydef track_keys[] = {
    { "track_high_thresh", K_TFLOAT, F(track.track_high_thresh), 0, 1, NULL },
    { "track_low_thresh", K_TFLOAT, F(track.track_low_thresh), 0, 1, NULL },
    { "new_track_thresh", K_TFLOAT, F(track.new_track_thresh), 0, 1, NULL },
    { "match_thresh", K_TFLOAT, F(track.match_thresh), 0, 1, NULL },
    { "track_buffer", K_TINT, F(track.track_buffer), 1, 3000, NULL },
    { "fuse_score", K_TBOOL, F(track.fuse_score), 0, 0, NULL },
};
static const keydef detect_keys[] = {
    { "fps", K_NUM, F(detect.fps), 0.1, 120, NULL },
    { "model", K_STR, F(detect.model), 0, 0, NULL },
    { "conf", K_CONF, F(detect.conf), 0, 1, NULL },
    { "classes", K_CLASSES, F(detect.classes), 0, 127, NULL },
    { "fallback_model", K_STR, F(detect.fallback_model), 0, 0, NULL },
};
#undef F
#define N_TOP (sizeof top_keys / sizeof *top_keys)
#define N_DETECT (sizeof detect_keys / sizeof *detect_keys)
#define N_TRACK (sizeof track_keys / sizeof *track_keys)
#define MAX_CLASSES ((int)(sizeof(((it_camdef *)0)->detect.classes) / sizeof(int)))

static void seterr(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

const char *it_cam_prio_name(int p) { return p >= 0 && p < IT_CAM_NPRIO ? prio_names[p] : "?"; }

static int choice_index(const char *const *choices, const char *s) {
    for (int i = 0; s && choices[i]; i++)
        if (!strcmp(choices[i], s)) return i;
    return -1;
}

int it_cam_prio_parse(const char *s) { return choice_index(prio_names, s); }

int it_cam_id_valid(const char *id) {
    if (!id || !*id) return 0;
    size_t n = 0;
    for (const char *p = id; *p; p++, n++) {
        if (n >= IT_CAM_ID_MAX) return 0;
        char ch = *p;
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '-')) return 0;
    }
    return 1;
}

void it_camdef_defaults(it_camdef *c) {
    memset(c, 0, sizeof *c);
    c->enabled = 1;
    c->priority = IT_CAM_NORMAL;
    c->transport = IT_TRANSPORT_TCP;
    c->loop = 1;
    c->realtime = 1;
    snprintf(c->hwaccel, sizeof c->hwaccel, "auto");
    c->stall_timeout_s = 5;
    c->skip = IT_CAM_SKIP_AUTO;
    c->detect.fps = 5;
    c->detect.conf = -1;
    c->track.track_high_thresh = c->track.track_low_thresh = -1;
    c->track.new_track_thresh = c->track.match_thresh = -1;
    c->track.track_buffer = c->track.fuse_score = -1;
    c->anchor = IT_AN_ANCHOR_BOTTOM_CENTER;
}

static void list_choices(char *buf, size_t n, const char *const *choices) {
    buf[0] = 0;
    for (int i = 0; choices[i]; i++)
        snprintf(buf + strlen(buf), n - strlen(buf), "%s%s", i ? ", " : "", choices[i]);
}

/* Length and characters of a string value: one line, no control characters (a pasted
 * newline in a URL or a model name is always a mistake). */
static int check_text(const json_t *v, size_t size, const char *path, char *err, size_t errlen) {
    if (!json_is_string(v)) {
        seterr(err, errlen, "%s: must be a string", path);
        return -1;
    }
    size_t len = json_string_length(v);
    const char *s = json_string_value(v);
    if (len >= size) {
        seterr(err, errlen, "%s: too long (%zu bytes, at most %zu)", path, len, size - 1);
        return -1;
    }
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
            seterr(err, errlen, "%s: must not contain control characters", path);
            return -1;
        }
    return 0;
}

static int set_key(const keydef *k, const json_t *v, int patch, it_camdef *c, const char *path, char *err,
                   size_t errlen) {
    void *dst = (char *)c + k->off;
    char list[96];
    switch (k->k) {
    case K_ID: {
        const char *s = json_string_value(v);
        if (!json_is_string(v) || strlen(s) != json_string_length(v) || !it_cam_id_valid(s)) {
            seterr(err, errlen, "%s: must be 1 to %d characters of a-z, 0-9, '_' and '-'", path, IT_CAM_ID_MAX);
            return -1;
        }
        if (patch && strcmp(c->id, s)) {
            seterr(err, errlen, "%s: cannot be changed (this camera is '%s')", path, c->id);
            return -1;
        }
        memset(dst, 0, k->size);
        memcpy(dst, s, strlen(s));
        return 0;
    }
    case K_URL:
    case K_STR: {
        if (check_text(v, k->size, path, err, errlen)) return -1;
        const char *s = json_string_value(v);
        if (k->k == K_URL && !*s) {
            seterr(err, errlen, "%s: must not be empty", path);
            return -1;
        }
        if (k->choices && choice_index(k->choices, s) < 0) {
            list_choices(list, sizeof list, k->choices);
            seterr(err, errlen, "%s: must be one of %s", path, list);
            return -1;
        }
        memset(dst, 0, k->size);
        memcpy(dst, s, json_string_length(v));
        return 0;
    }
    case K_BOOL:
        if (!json_is_boolean(v)) {
            seterr(err, errlen, "%s: must be true or false", path);
            return -1;
        }
        *(int *)dst = json_is_true(v);
        return 0;
    case K_CHOICE: {
        int i = json_is_string(v) && strlen(json_string_value(v)) == json_string_length(v)
                    ? choice_index(k->choices, json_string_value(v))
                    : -1;
        if (i < 0) {
            list_choices(list, sizeof list, k->choices);
            seterr(err, errlen, "%s: must be one of %s", path, list);
            return -1;
        }
        *(int *)dst = i;
        return 0;
    }
    case K_NUM: {
        double d = json_number_value(v);
        if (!json_is_number(v) || !isfinite(d) || d < k->min || d > k->max) {
            seterr(err, errlen, "%s: must be a number from %g to %g", path, k->min, k->max);
            return -1;
        }
        *(double *)dst = d;
        return 0;
    }
    case K_CONF: {
        if (json_is_null(v)) {
            *(float *)dst = -1;
            return 0;
        }
        double d = json_number_value(v);
        if (!json_is_number(v) || !isfinite(d) || (d != -1 && (d < k->min || d > k->max))) {
            seterr(err, errlen, "%s: must be a number from %g to %g, or -1 (or null) for the server's default",
                   path, k->min, k->max);
            return -1;
        }
        *(float *)dst = (float)d;
        return 0;
    }
    case K_TFLOAT:
    case K_TINT: {
        if (json_is_null(v)) {
            if (k->k == K_TFLOAT) *(float *)dst = -1;
            else *(int *)dst = -1;
            return 0;
        }
        double d = json_number_value(v);
        if (!json_is_number(v) || !isfinite(d) || d < k->min || d > k->max ||
            (k->k == K_TINT && !json_is_integer(v))) {
            seterr(err, errlen, "%s: must be %s from %g to %g, or null for the server's track: setting", path,
                   k->k == K_TINT ? "an integer" : "a number", k->min, k->max);
            return -1;
        }
        if (k->k == K_TFLOAT) *(float *)dst = (float)d;
        else *(int *)dst = (int)d;
        return 0;
    }
    case K_TBOOL:
        if (!json_is_boolean(v) && !json_is_null(v)) {
            seterr(err, errlen, "%s: must be true, false or null (the server's track: setting)", path);
            return -1;
        }
        *(int *)dst = json_is_null(v) ? -1 : json_is_true(v);
        return 0;
    case K_CLASSES: {
        if (!json_is_array(v)) {
            seterr(err, errlen, "%s: must be a list of class ids from %g to %g", path, k->min, k->max);
            return -1;
        }
        size_t n = json_array_size(v);
        if (n > (size_t)MAX_CLASSES) {
            seterr(err, errlen, "%s: at most %d class ids, got %zu", path, MAX_CLASSES, n);
            return -1;
        }
        int ids[MAX_CLASSES];
        unsigned char seen[MAX_CLASSES] = { 0 };
        for (size_t i = 0; i < n; i++) {
            const json_t *it = json_array_get(v, i);
            json_int_t id = json_integer_value(it);
            if (!json_is_integer(it) || id < (json_int_t)k->min || id > (json_int_t)k->max) {
                seterr(err, errlen, "%s[%zu]: must be a class id, an integer from %g to %g", path, i, k->min,
                       k->max);
                return -1;
            }
            if (seen[id]) {
                seterr(err, errlen, "%s[%zu]: class id %d is listed twice", path, i, (int)id);
                return -1;
            }
            seen[id] = 1;
            ids[i] = (int)id;
        }
        memset(c->detect.classes, 0, sizeof c->detect.classes);
        memcpy(c->detect.classes, ids, n * sizeof *ids);
        c->detect.n_classes = (int)n;
        return 0;
    }
    }
    return -1;
}

/* ---- analytics: lines, zones, calibration ---- */

/* Coordinates are bounded so that a typo (an extra zero) is refused and the arithmetic in
 * analytics.c stays far from overflow; normalised ones are checked once the whole
 * definition is read (coordinates: may come after lines:). */
#define COORD_MAX 100000.0

static int point_of(const json_t *v, const char *path, float out[2], char *err, size_t errlen) {
    const json_t *x = json_array_get(v, 0), *y = json_array_get(v, 1);
    double dx = json_number_value(x), dy = json_number_value(y);
    if (!json_is_array(v) || json_array_size(v) != 2 || !json_is_number(x) || !json_is_number(y) ||
        !isfinite(dx) || !isfinite(dy) || fabs(dx) > COORD_MAX || fabs(dy) > COORD_MAX) {
        seterr(err, errlen, "%s: must be a point [x, y] of two numbers (pixels, or 0..1 with coordinates: normalized)",
               path);
        return -1;
    }
    out[0] = (float)dx, out[1] = (float)dy;
    return 0;
}

/* Line and zone ids become MQTT topic levels and JSON keys: a conservative alphabet. */
static int an_id_of(const json_t *v, const char *path, char out[IT_AN_ID_LEN], char *err, size_t errlen) {
    const char *s = json_string_value(v);
    size_t n = json_is_string(v) ? json_string_length(v) : 0;
    int ok = n > 0 && n < IT_AN_ID_LEN && strlen(s) == n;
    for (size_t i = 0; ok && i < n; i++) {
        char ch = s[i];
        ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' ||
             ch == '-';
    }
    if (!ok) {
        seterr(err, errlen, "%s: must be 1 to %d characters of A-Z, a-z, 0-9, '_' and '-'", path, IT_AN_ID_LEN - 1);
        return -1;
    }
    memset(out, 0, IT_AN_ID_LEN);
    memcpy(out, s, n);
    return 0;
}

static int class_filter_of(const json_t *v, const char *path, int *ids, int *n_out, char *err, size_t errlen) {
    if (!json_is_array(v) || json_array_size(v) > IT_AN_MAX_FILTER) {
        seterr(err, errlen, "%s: must be a list of at most %d class ids (0 to %d)", path, IT_AN_MAX_FILTER,
               IT_AN_MAX_CLASSES - 1);
        return -1;
    }
    int n = (int)json_array_size(v);
    for (int i = 0; i < n; i++) {
        const json_t *it = json_array_get(v, (size_t)i);
        json_int_t id = json_integer_value(it);
        if (!json_is_integer(it) || id < 0 || id >= IT_AN_MAX_CLASSES) {
            seterr(err, errlen, "%s[%d]: must be a class id, an integer from 0 to %d", path, i, IT_AN_MAX_CLASSES - 1);
            return -1;
        }
        for (int j = 0; j < i; j++)
            if (ids[j] == (int)id) {
                seterr(err, errlen, "%s[%d]: class id %d is listed twice", path, i, (int)id);
                return -1;
            }
        ids[i] = (int)id;
    }
    *n_out = n;
    return 0;
}

/* A number field of a line or zone: [min, max]. */
static int num_of(const json_t *v, const char *path, double min, double max, double *out, char *err,
                  size_t errlen) {
    double d = json_number_value(v);
    if (!json_is_number(v) || !isfinite(d) || d < min || d > max) {
        seterr(err, errlen, "%s: must be a number from %g to %g", path, min, max);
        return -1;
    }
    *out = d;
    return 0;
}

static int parse_lines(const json_t *v, it_camdef *c, char *err, size_t errlen) {
    if (!json_is_array(v) || json_array_size(v) > IT_CAM_MAX_LINES) {
        seterr(err, errlen, "lines: must be a list of at most %d lines ({id, points: [[x1,y1],[x2,y2]], ...})",
               IT_CAM_MAX_LINES);
        return -1;
    }
    static it_an_line none; /* zero: lines beyond n_lines stay zero for memcmp */
    it_an_line tmp[IT_CAM_MAX_LINES];
    int n = (int)json_array_size(v);
    for (int i = 0; i < n; i++) {
        const json_t *o = json_array_get(v, (size_t)i);
        it_an_line *l = &tmp[i];
        *l = none;
        l->direction = IT_AN_DIR_BOTH;
        char path[96];
        if (!json_is_object(o)) {
            seterr(err, errlen, "lines[%d]: must be a mapping ({id, points, classes, direction, min_distance})", i);
            return -1;
        }
        int have_id = 0, have_points = 0;
        const char *key;
        json_t *f;
        json_object_foreach((json_t *)o, key, f) {
            snprintf(path, sizeof path, "lines[%d].%.40s", i, key);
            if (!strcmp(key, "id")) {
                if (an_id_of(f, path, l->id, err, errlen)) return -1;
                have_id = 1;
            } else if (!strcmp(key, "points")) {
                if (!json_is_array(f) || json_array_size(f) != 2) {
                    seterr(err, errlen, "%s: must be two points [[x1, y1], [x2, y2]]", path);
                    return -1;
                }
                for (int k = 0; k < 2; k++) {
                    char pp[112];
                    snprintf(pp, sizeof pp, "%s[%d]", path, k);
                    if (point_of(json_array_get(f, (size_t)k), pp, l->points[k], err, errlen)) return -1;
                }
                /* 0.001 apart at least: a thousandth of the frame when normalised, well
                 * under a pixel otherwise, and always a direction analytics can use. */
                double dx = (double)l->points[1][0] - l->points[0][0], dy = (double)l->points[1][1] - l->points[0][1];
                if (dx * dx + dy * dy < 1e-6) {
                    seterr(err, errlen, "%s: the two points must differ", path);
                    return -1;
                }
                have_points = 1;
            } else if (!strcmp(key, "classes")) {
                if (class_filter_of(f, path, l->classes, &l->n_classes, err, errlen)) return -1;
            } else if (!strcmp(key, "direction")) {
                int d = json_is_string(f) ? choice_index(dir_names, json_string_value(f)) : -1;
                if (d < 0) {
                    seterr(err, errlen, "%s: must be one of both, a_to_b, b_to_a", path);
                    return -1;
                }
                l->direction = (it_an_dir)d;
            } else if (!strcmp(key, "min_distance")) {
                double d;
                if (num_of(f, path, 0, 1000, &d, err, errlen)) return -1;
                l->min_distance = (float)d;
            } else {
                seterr(err, errlen, "%s: unknown key (id, points, classes, direction, min_distance)", path);
                return -1;
            }
        }
        if (!have_id || !have_points) {
            seterr(err, errlen, "lines[%d].%s: required", i, have_id ? "points" : "id");
            return -1;
        }
        for (int j = 0; j < i; j++)
            if (!strcmp(tmp[j].id, l->id)) {
                seterr(err, errlen, "lines[%d].id: '%s' is already the id of lines[%d]", i, l->id, j);
                return -1;
            }
    }
    memset(c->lines, 0, sizeof c->lines);
    if (n) memcpy(c->lines, tmp, (size_t)n * sizeof *tmp);
    c->n_lines = n;
    return 0;
}

static int parse_zones(const json_t *v, it_camdef *c, char *err, size_t errlen) {
    if (!json_is_array(v) || json_array_size(v) > IT_CAM_MAX_ZONES) {
        seterr(err, errlen, "zones: must be a list of at most %d zones ({id, polygon: [[x,y], ...], ...})",
               IT_CAM_MAX_ZONES);
        return -1;
    }
    static it_an_zone none;
    it_an_zone *tmp = calloc(IT_CAM_MAX_ZONES, sizeof *tmp); /* 12 KiB: not on a server thread's stack */
    if (!tmp) {
        seterr(err, errlen, "zones: out of memory");
        return -1;
    }
    int n = (int)json_array_size(v), rc = -1;
    for (int i = 0; i < n; i++) {
        const json_t *o = json_array_get(v, (size_t)i);
        it_an_zone *z = &tmp[i];
        *z = none;
        char path[96];
        if (!json_is_object(o)) {
            seterr(err, errlen, "zones[%d]: must be a mapping ({id, polygon, classes, dwell_alert_s, ...})", i);
            goto out;
        }
        int have_id = 0;
        const char *key;
        json_t *f;
        json_object_foreach((json_t *)o, key, f) {
            snprintf(path, sizeof path, "zones[%d].%.40s", i, key);
            double d;
            if (!strcmp(key, "id")) {
                if (an_id_of(f, path, z->id, err, errlen)) goto out;
                have_id = 1;
            } else if (!strcmp(key, "polygon")) {
                size_t np = json_array_size(f);
                if (!json_is_array(f) || np < 3 || np > IT_AN_MAX_POLY) {
                    seterr(err, errlen, "%s: must be a list of 3 to %d points [[x, y], ...]", path, IT_AN_MAX_POLY);
                    goto out;
                }
                for (size_t k = 0; k < np; k++) {
                    char pp[112];
                    snprintf(pp, sizeof pp, "%s[%zu]", path, k);
                    if (point_of(json_array_get(f, k), pp, z->polygon[k], err, errlen)) goto out;
                }
                z->n_points = (int)np;
                /* Twice the signed area: zero means every point on one line. */
                double area = 0;
                for (int k = 0; k < z->n_points; k++) {
                    const float *p0 = z->polygon[k], *p1 = z->polygon[(k + 1) % z->n_points];
                    area += (double)p0[0] * p1[1] - (double)p1[0] * p0[1];
                }
                if (fabs(area) < 1e-9) {
                    seterr(err, errlen, "%s: the polygon has no area (its points lie on one line)", path);
                    goto out;
                }
            } else if (!strcmp(key, "classes")) {
                if (class_filter_of(f, path, z->classes, &z->n_classes, err, errlen)) goto out;
            } else if (!strcmp(key, "dwell_alert_s")) {
                if (num_of(f, path, 0, 86400 * 7, &z->dwell_alert_s, err, errlen)) goto out;
            } else if (!strcmp(key, "stopped_speed")) {
                if (num_of(f, path, 0, 10000, &z->stopped_speed, err, errlen)) goto out;
            } else if (!strcmp(key, "stopped_s")) {
                if (num_of(f, path, 0, 86400, &z->stopped_s, err, errlen)) goto out;
            } else if (!strcmp(key, "congestion_count")) {
                if (num_of(f, path, 0, 10000, &d, err, errlen)) goto out;
                if (d != floor(d)) {
                    seterr(err, errlen, "%s: must be an integer from 0 to 10000", path);
                    goto out;
                }
                z->congestion_count = (int)d;
            } else if (!strcmp(key, "congestion_s")) {
                if (num_of(f, path, 0, 86400, &z->congestion_s, err, errlen)) goto out;
            } else {
                seterr(err, errlen,
                       "%s: unknown key (id, polygon, classes, dwell_alert_s, stopped_speed, stopped_s, "
                       "congestion_count, congestion_s)",
                       path);
                goto out;
            }
        }
        if (!have_id || !z->n_points) {
            seterr(err, errlen, "zones[%d].%s: required", i, have_id ? "polygon" : "id");
            goto out;
        }
        for (int j = 0; j < i; j++)
            if (!strcmp(tmp[j].id, z->id)) {
                seterr(err, errlen, "zones[%d].id: '%s' is already the id of zones[%d]", i, z->id, j);
                goto out;
            }
    }
    memset(c->zones, 0, sizeof c->zones);
    if (n) memcpy(c->zones, tmp, (size_t)n * sizeof *tmp);
    c->n_zones = n;
    rc = 0;
out:
    free(tmp);
    return rc;
}

/* No three of the four points nearly on one line: every triangle they make covers at
 * least 1e-4 of their bounding box. The ratio survives scaling x and y apart, so points
 * accepted here (normalised ones included) stay solvable at any frame size. */
static int well_spread(const double p[4][2]) {
    double x0 = p[0][0], x1 = p[0][0], y0 = p[0][1], y1 = p[0][1];
    for (int k = 1; k < 4; k++) {
        x0 = fmin(x0, p[k][0]), x1 = fmax(x1, p[k][0]);
        y0 = fmin(y0, p[k][1]), y1 = fmax(y1, p[k][1]);
    }
    double box = (x1 - x0) * (y1 - y0);
    if (!(box > 0)) return 0;
    for (int a = 0; a < 4; a++) {
        const double *p1 = p[(a + 1) % 4], *p2 = p[(a + 2) % 4], *p3 = p[(a + 3) % 4];
        double tri = fabs((p2[0] - p1[0]) * (p3[1] - p1[1]) - (p3[0] - p1[0]) * (p2[1] - p1[1])) / 2;
        if (tri < 1e-4 * box) return 0;
    }
    return 1;
}

static int parse_calibration(const json_t *v, it_camdef *c, char *err, size_t errlen) {
    if (json_is_null(v)) { /* a patch removing the calibration */
        c->has_calibration = 0;
        memset(c->calib_image, 0, sizeof c->calib_image);
        memset(c->calib_world, 0, sizeof c->calib_world);
        return 0;
    }
    if (!json_is_object(v)) {
        seterr(err, errlen, "calibration: must be a mapping {image: 4 points, world: 4 points in metres}");
        return -1;
    }
    double img[4][2], wld[4][2];
    int have = 0;
    const char *key;
    json_t *f;
    json_object_foreach((json_t *)v, key, f) {
        int is_img = !strcmp(key, "image");
        if (!is_img && strcmp(key, "world")) {
            seterr(err, errlen, "calibration.%.40s: unknown key (image, world)", key);
            return -1;
        }
        if (!json_is_array(f) || json_array_size(f) != 4) {
            seterr(err, errlen, "calibration.%s: must be 4 points [[x, y], ...]%s", key,
                   is_img ? " on the image" : " on the ground, in metres");
            return -1;
        }
        for (int k = 0; k < 4; k++) {
            char pp[64];
            float p[2];
            snprintf(pp, sizeof pp, "calibration.%s[%d]", key, k);
            if (point_of(json_array_get(f, (size_t)k), pp, p, err, errlen)) return -1;
            (is_img ? img : wld)[k][0] = json_number_value(json_array_get(json_array_get(f, (size_t)k), 0));
            (is_img ? img : wld)[k][1] = json_number_value(json_array_get(json_array_get(f, (size_t)k), 1));
        }
        have |= is_img ? 1 : 2;
    }
    if (have != 3) {
        seterr(err, errlen, "calibration.%s: required", have & 1 ? "world" : "image");
        return -1;
    }
    double H[9];
    if (!well_spread(img) || !well_spread(wld) || it_homography_solve(img, wld, H) != ITSCAM_OK) {
        seterr(err, errlen, "calibration: the points do not define a view of the ground "
                            "(three of them on one line, or a point repeated)");
        return -1;
    }
    memcpy(c->calib_image, img, sizeof img);
    memcpy(c->calib_world, wld, sizeof wld);
    c->has_calibration = 1;
    return 0;
}

/* Checks across keys, once the whole definition is read. */
static int check_analytics(const it_camdef *c, char *err, size_t errlen) {
    if (c->normalized) {
        for (int i = 0; i < c->n_lines; i++)
            for (int k = 0; k < 2; k++)
                if (c->lines[i].points[k][0] < 0 || c->lines[i].points[k][0] > 1 || c->lines[i].points[k][1] < 0 ||
                    c->lines[i].points[k][1] > 1) {
                    seterr(err, errlen, "lines[%d].points[%d]: must lie in 0..1 with coordinates: normalized", i, k);
                    return -1;
                }
        for (int i = 0; i < c->n_zones; i++)
            for (int k = 0; k < c->zones[i].n_points; k++)
                if (c->zones[i].polygon[k][0] < 0 || c->zones[i].polygon[k][0] > 1 ||
                    c->zones[i].polygon[k][1] < 0 || c->zones[i].polygon[k][1] > 1) {
                    seterr(err, errlen, "zones[%d].polygon[%d]: must lie in 0..1 with coordinates: normalized", i, k);
                    return -1;
                }
        for (int k = 0; c->has_calibration && k < 4; k++)
            if (c->calib_image[k][0] < 0 || c->calib_image[k][0] > 1 || c->calib_image[k][1] < 0 ||
                c->calib_image[k][1] > 1) {
                seterr(err, errlen, "calibration.image[%d]: must lie in 0..1 with coordinates: normalized", k);
                return -1;
            }
    }
    if (c->speed_limit_kmh > 0 && !c->has_calibration) {
        seterr(err, errlen, "speed_limit_kmh: needs a calibration (image and world points) to measure speed");
        return -1;
    }
    return 0;
}

it_track_params it_camdef_track(const it_camdef *c, const it_track_params *global) {
    it_track_params p = global ? *global : it_track_default_params();
    if (c->track.track_high_thresh >= 0) p.track_high_thresh = c->track.track_high_thresh;
    if (c->track.track_low_thresh >= 0) p.track_low_thresh = c->track.track_low_thresh;
    if (c->track.new_track_thresh >= 0) p.new_track_thresh = c->track.new_track_thresh;
    if (c->track.match_thresh >= 0) p.match_thresh = c->track.match_thresh;
    if (c->track.track_buffer >= 0) p.track_buffer = c->track.track_buffer;
    if (c->track.fuse_score >= 0) p.fuse_score = c->track.fuse_score;
    return p;
}

it_an_config it_camdef_analytics(const it_camdef *c, int width, int height) {
    it_an_config a = it_an_default_config();
    a.anchor = (it_an_anchor)c->anchor;
    a.normalized = c->normalized;
    a.frame_width = width, a.frame_height = height;
    a.lines = c->lines, a.n_lines = c->n_lines;
    a.zones = c->zones, a.n_zones = c->n_zones;
    a.has_calibration = c->has_calibration;
    memcpy(a.calib_image, c->calib_image, sizeof a.calib_image);
    memcpy(a.calib_world, c->calib_world, sizeof a.calib_world);
    a.speed_limit_kmh = c->speed_limit_kmh;
    /* Per-track state is preallocated (about 1.6 KiB a track, for the speed history):
     * 512 tracks is far more than a camera sees at once and keeps 256 cameras near
     * 200 MiB; past it the least recently seen track ends early. */
    a.max_tracks = 512;
    return a;
}

int it_camdef_has_analytics(const it_camdef *c) { return c->n_lines > 0 || c->n_zones > 0 || c->has_calibration; }

static const keydef *find_key(const keydef *keys, size_t n, const char *name) {
    for (size_t i = 0; i < n; i++)
        if (!strcmp(keys[i].name, name)) return &keys[i];
    return NULL;
}

/* Apply every key of obj (an object) from a table; unknown keys fail. */
static int apply_keys(const json_t *obj, const keydef *keys, size_t nkeys, const char *prefix, int patch,
                      it_camdef *c, char *err, size_t errlen) {
    const char *name;
    json_t *v;
    json_object_foreach((json_t *)obj, name, v) {
        char path[160];
        snprintf(path, sizeof path, "%s%.100s", prefix, name);
        if (!*prefix && !strcmp(name, "track")) {
            if (!json_is_object(v)) {
                seterr(err, errlen, "track: must be an object (track_high_thresh, track_low_thresh, "
                                    "new_track_thresh, track_buffer, match_thresh, fuse_score)");
                return -1;
            }
            if (apply_keys(v, track_keys, N_TRACK, "track.", patch, c, err, errlen)) return -1;
            continue;
        }
        if (!*prefix && !strcmp(name, "lines")) {
            if (parse_lines(v, c, err, errlen)) return -1;
            continue;
        }
        if (!*prefix && !strcmp(name, "zones")) {
            if (parse_zones(v, c, err, errlen)) return -1;
            continue;
        }
        if (!*prefix && !strcmp(name, "calibration")) {
            if (parse_calibration(v, c, err, errlen)) return -1;
            continue;
        }
        if (!*prefix && !strcmp(name, "detect")) {
            if (!json_is_object(v)) {
                seterr(err, errlen, "detect: must be an object (fps, model, conf, classes, fallback_model)");
                return -1;
            }
            if (apply_keys(v, detect_keys, N_DETECT, "detect.", patch, c, err, errlen)) return -1;
            continue;
        }
        const keydef *k = find_key(keys, nkeys, name);
        if (!k) {
            seterr(err, errlen, "%s: unknown key", path);
            return -1;
        }
        if (set_key(k, v, patch, c, path, err, errlen)) return -1;
    }
    return 0;
}

int it_camdef_from_json(const json_t *obj, int patch, it_camdef *c, char *err, size_t errlen) {
    if (!c || !json_is_object(obj)) {
        seterr(err, errlen, "a camera must be a JSON object");
        return -1;
    }
    it_camdef tmp;
    if (patch) tmp = *c;
    else it_camdef_defaults(&tmp);
    if (apply_keys(obj, top_keys, N_TOP, "", patch, &tmp, err, errlen) || check_analytics(&tmp, err, errlen))
        return -1;
    if (!tmp.id[0]) {
        seterr(err, errlen, "id: required");
        return -1;
    }
    if (!tmp.url[0]) {
        seterr(err, errlen, "url: required");
        return -1;
    }
    *c = tmp;
    return 0;
}

/* The shortest decimal that reads back as exactly this float, so 0.3f is written 0.3
 * rather than 0.30000001192092896. */
static double short_float(float f) {
    char buf[32];
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)f);
        double back = strtod(buf, NULL);
        if ((float)back == f) return back;
    }
    return (double)f;
}

static json_t *point_json(double x, double y) {
    json_t *p = json_array();
    if (p && (json_array_append_new(p, json_real(short_float((float)x))) ||
              json_array_append_new(p, json_real(short_float((float)y))))) {
        json_decref(p);
        return NULL;
    }
    return p;
}

static json_t *classes_json(const int *ids, int n) {
    json_t *a = json_array();
    for (int i = 0; a && i < n && i < IT_AN_MAX_FILTER; i++)
        if (json_array_append_new(a, json_integer(ids[i]))) {
            json_decref(a);
            return NULL;
        }
    return a;
}

static json_t *tfloat(float f) { return f < 0 ? json_null() : json_real(short_float(f)); }

/* Every analytics and track key into o; -1 when out of memory. Calibration points are
 * doubles in the struct: written at full precision so that reading back is exact. */
static int analytics_json(const it_camdef *c, json_t *o) {
    int bad = 0;
    json_t *t = json_pack("{s:o, s:o, s:o, s:o, s:o, s:o}", "track_high_thresh", tfloat(c->track.track_high_thresh),
                          "track_low_thresh", tfloat(c->track.track_low_thresh), "new_track_thresh",
                          tfloat(c->track.new_track_thresh), "match_thresh", tfloat(c->track.match_thresh),
                          "track_buffer", c->track.track_buffer < 0 ? json_null() : json_integer(c->track.track_buffer),
                          "fuse_score", c->track.fuse_score < 0 ? json_null() : json_boolean(c->track.fuse_score));
    bad |= !t || json_object_set_new(o, "track", t);
    int an = (unsigned)c->anchor <= IT_AN_ANCHOR_TOP_CENTER ? c->anchor : 0;
    bad |= json_object_set_new(o, "anchor", json_string(anchor_names[an]));
    bad |= json_object_set_new(o, "coordinates", json_string(coord_names[c->normalized ? 1 : 0]));
    json_t *lines = json_array();
    bad |= !lines;
    for (int i = 0; lines && i < c->n_lines && i < IT_CAM_MAX_LINES; i++) {
        const it_an_line *l = &c->lines[i];
        int d = (unsigned)l->direction <= IT_AN_DIR_BOTH ? (int)l->direction : IT_AN_DIR_BOTH;
        json_t *pts = json_pack("[o, o]", point_json(l->points[0][0], l->points[0][1]),
                                point_json(l->points[1][0], l->points[1][1]));
        json_t *lo = pts ? json_pack("{s:s#, s:o, s:o, s:s, s:f}", "id", l->id, (int)strnlen(l->id, IT_AN_ID_LEN),
                                     "points", pts, "classes", classes_json(l->classes, l->n_classes), "direction",
                                     dir_names[d], "min_distance", short_float(l->min_distance))
                         : NULL;
        bad |= !lo || json_array_append_new(lines, lo);
    }
    if (lines) bad |= json_object_set_new(o, "lines", lines);
    json_t *zones = json_array();
    bad |= !zones;
    for (int i = 0; zones && i < c->n_zones && i < IT_CAM_MAX_ZONES; i++) {
        const it_an_zone *z = &c->zones[i];
        json_t *poly = json_array();
        for (int k = 0; poly && k < z->n_points && k < IT_AN_MAX_POLY; k++)
            bad |= json_array_append_new(poly, point_json(z->polygon[k][0], z->polygon[k][1]));
        json_t *zo = poly ? json_pack("{s:s#, s:o, s:o, s:f, s:f, s:f, s:i, s:f}", "id", z->id,
                                      (int)strnlen(z->id, IT_AN_ID_LEN), "polygon", poly, "classes",
                                      classes_json(z->classes, z->n_classes), "dwell_alert_s", z->dwell_alert_s,
                                      "stopped_speed", z->stopped_speed, "stopped_s", z->stopped_s,
                                      "congestion_count", z->congestion_count, "congestion_s", z->congestion_s)
                          : NULL;
        bad |= !zo || json_array_append_new(zones, zo);
    }
    if (zones) bad |= json_object_set_new(o, "zones", zones);
    json_t *cal = json_null();
    if (c->has_calibration) {
        json_t *img = json_array(), *wld = json_array();
        for (int k = 0; img && wld && k < 4; k++) {
            json_t *a = json_pack("[f, f]", c->calib_image[k][0], c->calib_image[k][1]);
            json_t *b = json_pack("[f, f]", c->calib_world[k][0], c->calib_world[k][1]);
            bad |= !a || !b || json_array_append_new(img, a) || json_array_append_new(wld, b);
        }
        cal = img && wld ? json_pack("{s:o, s:o}", "image", img, "world", wld) : NULL;
        if (!cal) json_decref(img), json_decref(wld);
    }
    bad |= !cal || json_object_set_new(o, "calibration", cal);
    bad |= json_object_set_new(o, "speed_limit_kmh", json_real(c->speed_limit_kmh));
    return bad ? -1 : 0;
}

json_t *it_camdef_to_json(const it_camdef *c, int redact) {
    if (!c) return NULL;
    /* Redaction can lengthen a URL ("a@" becomes "***@"): room for that. */
    char url[2 * IT_CAM_URL_MAX];
    if (redact) it_url_redact(c->url, url, sizeof url);
    else snprintf(url, sizeof url, "%.*s", IT_CAM_URL_MAX - 1, c->url);
    json_t *classes = json_array();
    for (int i = 0; classes && i < c->detect.n_classes && i < MAX_CLASSES; i++)
        if (json_array_append_new(classes, json_integer(c->detect.classes[i]))) {
            json_decref(classes);
            return NULL;
        }
    if (!classes) return NULL;
    int prio = c->priority >= 0 && c->priority < IT_CAM_NPRIO ? c->priority : IT_CAM_NORMAL;
    int tr = c->transport == 1 ? 1 : 0;
    int sk = c->skip >= 0 && c->skip <= IT_CAM_SKIP_KEYFRAMES ? c->skip : IT_CAM_SKIP_AUTO;
    /* "s#" bounds every fixed-size string, so a struct filled by code without its NUL
     * cannot be read past its end. */
    json_t *o = json_pack("{s:s#, s:s, s:b, s:s, s:s, s:b, s:b, s:s#, s:f, s:s, s:{s:f, s:s#, s:f, s:o, s:s#}}",
                     "id", c->id, (int)strnlen(c->id, sizeof c->id), "url", url, "enabled", c->enabled != 0,
                     "priority", prio_names[prio], "transport", transport_names[tr], "loop", c->loop != 0,
                     "realtime", c->realtime != 0, "hwaccel", c->hwaccel, (int)strnlen(c->hwaccel, sizeof c->hwaccel),
                     "stall_timeout_s", c->stall_timeout_s, "decode_skip", skip_names[sk], "detect", "fps",
                     c->detect.fps, "model", c->detect.model, (int)strnlen(c->detect.model, sizeof c->detect.model),
                     "conf", short_float(c->detect.conf), "classes", classes, "fallback_model",
                     c->detect.fallback_model,
                     (int)strnlen(c->detect.fallback_model, sizeof c->detect.fallback_model));
    if (o && analytics_json(c, o)) {
        json_decref(o);
        return NULL;
    }
    return o;
}
