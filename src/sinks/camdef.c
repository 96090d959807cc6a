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

typedef enum {
    K_ID,      /* char[IT_CAM_ID_MAX + 1], [a-z0-9_-]{1,64} */
    K_URL,     /* char[size], not empty */
    K_STR,     /* char[size], may be empty; choices when given */
    K_BOOL,    /* int 0/1 from true/false */
    K_CHOICE,  /* int index into choices, from its name */
    K_NUM,     /* double in [min, max] */
    K_CONF,    /* float: -1 (or null) = the server's default, else [min, max] */
    K_CLASSES, /* int[128] + n_classes */
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
            if (!*prefix && (!strcmp(name, "zones") || !strcmp(name, "lines")))
                seterr(err, errlen, "%s: not supported yet", path);
            else
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
    if (apply_keys(obj, top_keys, N_TOP, "", patch, &tmp, err, errlen)) return -1;
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
    return json_pack("{s:s#, s:s, s:b, s:s, s:s, s:b, s:b, s:s#, s:f, s:s, s:{s:f, s:s#, s:f, s:o, s:s#}}",
                     "id", c->id, (int)strnlen(c->id, sizeof c->id), "url", url, "enabled", c->enabled != 0,
                     "priority", prio_names[prio], "transport", transport_names[tr], "loop", c->loop != 0,
                     "realtime", c->realtime != 0, "hwaccel", c->hwaccel, (int)strnlen(c->hwaccel, sizeof c->hwaccel),
                     "stall_timeout_s", c->stall_timeout_s, "decode_skip", skip_names[sk], "detect", "fps",
                     c->detect.fps, "model", c->detect.model, (int)strnlen(c->detect.model, sizeof c->detect.model),
                     "conf", short_float(c->detect.conf), "classes", classes, "fallback_model",
                     c->detect.fallback_model,
                     (int)strnlen(c->detect.fallback_model, sizeof c->detect.fallback_model));
}
