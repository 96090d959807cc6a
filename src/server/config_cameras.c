/* Cameras in the configuration: the YAML `cameras:` list, ITSCAM__CAMERAS__ variables and
 * --camera ID=URL, each turned into JSON and read by it_camdef_from_json, so the file, the
 * environment, the flag and the HTTP API accept exactly the same definitions. */
#include "server/config.h"
#include "server/config_yaml.h"

#include "core/core.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* YAML nested deeper than this under a camera is never a camera definition. */
#define MAX_DEPTH 8
/* YAML nodes per camera at most: aliases can repeat a node many times over ("billion
 * laughs"). A camera with every zone at its largest polygon holds 16 x 64 x 3 nodes. */
#define MAX_NODES 16384
/* Key paths remembered per camera, to point an error at its line or variable (every
 * polygon point has one: about 88 bytes each, on the heap). */
#define MAX_ORIGINS 8192

static void seterr(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Where each key path of one camera came from: a line of the file or a variable (the
 * index of envp). it_camdef_from_json names the path first in its messages; this finds
 * the line or variable for it. */
typedef struct origin {
    char path[80];
    int line;      /* YAML: 1-based */
    int env;       /* env: index into envp; -1 for YAML */
} origin;

typedef struct origins {
    origin o[MAX_ORIGINS];
    int n;
} origins;

static void remember(origins *os, const char *path, int line, int env) {
    if (os->n >= MAX_ORIGINS || strlen(path) >= sizeof os->o[0].path) return;
    origin *o = &os->o[os->n++];
    snprintf(o->path, sizeof o->path, "%s", path);
    o->line = line, o->env = env;
}

/* The origin of the longest remembered path that msg starts with ("detect.fps: ...",
 * "detect.classes[2]: ...") or equals; NULL when none (a missing key). */
static const origin *find_origin(const origins *os, const char *msg) {
    const origin *best = NULL;
    size_t best_len = 0;
    for (int i = 0; i < os->n; i++) {
        size_t l = strlen(os->o[i].path);
        if (l > best_len && !strncmp(msg, os->o[i].path, l) && (msg[l] == ':' || msg[l] == '[' || !msg[l])) {
            best = &os->o[i];
            best_len = l;
        }
    }
    return best;
}

/* ---- scalars ---- */

static int is_integer_text(const char *s) {
    const char *p = s;
    if (*p == '-' || *p == '+') p++;
    if (!*p) return 0;
    for (; *p; p++)
        if (!isdigit((unsigned char)*p)) return 0;
    return 1;
}

/* A plain scalar typed as YAML would: null, booleans, integers, floats, else a string.
 * Quoted scalars (plain=0) always stay strings. NULL when out of memory. */
static json_t *typed_scalar(const char *s, size_t len, int plain) {
    if (!plain || strlen(s) != len) return json_stringn(s, len);
    if (!*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL"))
        return json_null();
    if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE")) return json_true();
    if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE")) return json_false();
    if (is_integer_text(s)) {
        errno = 0;
        long long v = strtoll(s, NULL, 10);
        if (!errno) return json_integer((json_int_t)v);
    }
    /* A float needs a digit and nothing after the number: "5.", ".5", "1e3", not "inf". */
    if (strpbrk(s, "0123456789") && !strpbrk(s, "xXnN")) {
        char *end;
        errno = 0;
        double d = strtod(s, &end);
        if (!errno && !*end && end != s && isfinite(d)) return json_real(d);
    }
    return json_stringn(s, len);
}

/* ---- YAML ---- */

typedef struct conv {
    yaml_document_t *doc;
    const char *name;
    origins *os;
    int nodes;     /* converted so far, against MAX_NODES */
    char *err;
    size_t errlen;
} conv;

static int line_of(const yaml_node_t *n) { return (int)n->start_mark.line + 1; }

static const char *node_kind(const yaml_node_t *n) {
    return n->type == YAML_MAPPING_NODE ? "a mapping" : n->type == YAML_SEQUENCE_NODE ? "a list" : "a value";
}

/* A YAML node as JSON; path is the key path inside the camera ("" at its top), pre the
 * camera's own prefix for messages ("cameras[2]"). NULL with err set on failure. */
static json_t *node_json(conv *cv, yaml_node_t *n, const char *pre, const char *path, int depth) {
    if (depth > MAX_DEPTH || ++cv->nodes > MAX_NODES) {
        seterr(cv->err, cv->errlen, "%s:%d: %s.%s: %s", cv->name, line_of(n), pre, path,
               depth > MAX_DEPTH ? "nested too deeply" : "too large for a camera definition");
        return NULL;
    }
    char sub[160];
    switch (n->type) {
    case YAML_SCALAR_NODE: {
        json_t *v = typed_scalar((const char *)n->data.scalar.value, n->data.scalar.length,
                                 n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE);
        if (!v) seterr(cv->err, cv->errlen, "%s:%d: %s.%s: out of memory", cv->name, line_of(n), pre, path);
        return v;
    }
    case YAML_SEQUENCE_NODE: {
        json_t *a = json_array();
        if (!a) goto oom;
        size_t i = 0;
        for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++, i++) {
            yaml_node_t *in = yaml_document_get_node(cv->doc, *it);
            snprintf(sub, sizeof sub, "%s[%zu]", path, i);
            json_t *v = in ? node_json(cv, in, pre, sub, depth + 1) : NULL;
            if (!v || json_array_append_new(a, v)) {
                if (!in) seterr(cv->err, cv->errlen, "%s:%d: %s.%s: bad list", cv->name, line_of(n), pre, sub);
                json_decref(a);
                return NULL;
            }
            remember(cv->os, sub, line_of(in), -1);
        }
        return a;
    }
    case YAML_MAPPING_NODE: {
        json_t *o = json_object();
        if (!o) goto oom;
        for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
            yaml_node_t *k = yaml_document_get_node(cv->doc, p->key);
            yaml_node_t *v = yaml_document_get_node(cv->doc, p->value);
            if (!k || !v || k->type != YAML_SCALAR_NODE ||
                strlen((const char *)k->data.scalar.value) != k->data.scalar.length) {
                seterr(cv->err, cv->errlen, "%s:%d: %s%s%s: expected a key name, got %s", cv->name,
                       line_of(k ? k : n), pre, *path ? "." : "", path, k ? node_kind(k) : "nothing");
                json_decref(o);
                return NULL;
            }
            const char *key = (const char *)k->data.scalar.value;
            snprintf(sub, sizeof sub, "%s%s%.100s", path, *path ? "." : "", key);
            if (json_object_get(o, key)) {
                const origin *first = find_origin(cv->os, sub);
                seterr(cv->err, cv->errlen, "%s:%d: %s.%s: set twice (first on line %d)", cv->name, line_of(k),
                       pre, sub, first ? first->line : line_of(n));
                json_decref(o);
                return NULL;
            }
            remember(cv->os, sub, line_of(k), -1);
            json_t *jv = node_json(cv, v, pre, sub, depth + 1);
            if (!jv) {
                json_decref(o);
                return NULL;
            }
            if (json_object_set_new(o, key, jv)) {
                json_decref(o);
                goto oom;
            }
        }
        return o;
    }
    default: break;
    }
    seterr(cv->err, cv->errlen, "%s:%d: %s.%s: unexpected YAML node", cv->name, line_of(n), pre, path);
    return NULL;
oom:
    seterr(cv->err, cv->errlen, "%s:%d: %s.%s: out of memory", cv->name, line_of(n), pre, path);
    return NULL;
}

static int find_id(const it_camdef *list, int n, const char *id) {
    for (int i = 0; i < n; i++)
        if (!strcmp(list[i].id, id)) return i;
    return -1;
}

/* The camera list of a parsed document; root is its (mapping) root node. */
static int cameras_of(yaml_document_t *doc, yaml_node_t *root, const char *name, it_camdef **out, int *nout,
                      char *err, size_t errlen) {
    yaml_node_t *seq = NULL;
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(doc, p->key);
        if (k && k->type == YAML_SCALAR_NODE && !strcmp((const char *)k->data.scalar.value, SRV_CAMERAS_KEY)) {
            if (seq) {
                seterr(err, errlen, "%s:%d: cameras: appears twice", name, line_of(k));
                return -1;
            }
            seq = yaml_document_get_node(doc, p->value);
            if (!seq) return 0;
        }
    }
    if (!seq) return 0;
    if (seq->type == YAML_SCALAR_NODE) {
        json_t *v = typed_scalar((const char *)seq->data.scalar.value, seq->data.scalar.length,
                                 seq->data.scalar.style == YAML_PLAIN_SCALAR_STYLE);
        int empty = json_is_null(v);
        json_decref(v);
        if (empty) return 0; /* "cameras:" with nothing under it */
    }
    if (seq->type != YAML_SEQUENCE_NODE) {
        seterr(err, errlen, "%s:%d: cameras: expected a list of cameras (- id: ...\\n  url: ...), got %s", name,
               line_of(seq), node_kind(seq));
        return -1;
    }
    size_t count = (size_t)(seq->data.sequence.items.top - seq->data.sequence.items.start);
    if (count > IT_CAM_MAX) {
        seterr(err, errlen, "%s:%d: cameras: %zu cameras, at most %d", name, line_of(seq), count, IT_CAM_MAX);
        return -1;
    }
    if (!count) return 0;
    it_camdef *list = it_calloc(count, sizeof *list);
    origins *os = it_malloc(sizeof *os);
    if (!list || !os) {
        it_free(list);
        it_free(os);
        seterr(err, errlen, "%s: out of memory", name);
        return -1;
    }
    int n = 0;
    for (yaml_node_item_t *it = seq->data.sequence.items.start; it < seq->data.sequence.items.top; it++, n++) {
        yaml_node_t *cn = yaml_document_get_node(doc, *it);
        char pre[32], why[512];
        snprintf(pre, sizeof pre, "cameras[%d]", n);
        if (!cn || cn->type != YAML_MAPPING_NODE) {
            seterr(err, errlen, "%s:%d: %s: expected a camera (a mapping of id, url, ...), got %s", name,
                   line_of(cn ? cn : seq), pre, cn ? node_kind(cn) : "nothing");
            goto fail;
        }
        os->n = 0;
        conv cv = { doc, name, os, 0, err, errlen };
        json_t *obj = node_json(&cv, cn, pre, "", 0);
        if (!obj) goto fail;
        int rc = it_camdef_from_json(obj, 0, &list[n], why, sizeof why);
        json_decref(obj);
        if (rc) {
            const origin *o = find_origin(os, why);
            seterr(err, errlen, "%s:%d: %s.%s", name, o ? o->line : line_of(cn), pre, why);
            goto fail;
        }
        int dup = find_id(list, n, list[n].id);
        if (dup >= 0) {
            seterr(err, errlen, "%s:%d: %s.id: '%s' is already the id of cameras[%d]", name, line_of(cn), pre,
                   list[n].id, dup);
            goto fail;
        }
    }
    it_free(os);
    *out = list;
    *nout = n;
    return 0;
fail:
    it_free(os);
    it_free(list);
    return -1;
}

int srv_cameras_load_string(const char *text, size_t len, const char *name, it_camdef **out, int *n,
                            char *err, size_t errlen) {
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        seterr(err, errlen, "%s: out of memory", name);
        return -1;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    yaml_document_t doc;
    if (!yaml_parser_load(&parser, &doc)) {
        srv_yaml_syntax_error(&parser, name, err, errlen);
        yaml_parser_delete(&parser);
        return -1;
    }
    it_camdef *list = NULL;
    int count = 0, rc = 0;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    /* Anything but a mapping at the top is the settings reader's error to report; here
     * it simply holds no cameras. */
    if (root && root->type == YAML_MAPPING_NODE) rc = cameras_of(&doc, root, name, &list, &count, err, errlen);
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    if (rc) return -1;
    *out = list;
    *n = count;
    return 0;
}

int srv_cameras_load_file(const char *path, it_camdef **out, int *n, char *err, size_t errlen) {
    char *text;
    size_t len;
    if (srv_read_bounded(path, &text, &len, err, errlen)) return -1;
    int rc = srv_cameras_load_string(text, len, path, out, n, err, errlen);
    free(text);
    return rc;
}

/* ---- a working copy of a caller's list ---- */

static it_camdef *copy_list(const it_camdef *list, int n, int extra) {
    it_camdef *c = it_malloc(((size_t)n + (size_t)extra) * sizeof *c);
    if (c && n) memcpy(c, list, (size_t)n * sizeof *c);
    return c;
}

/* ---- environment ---- */

/* The variable's name (up to '=') into buf. */
static const char *var_name(const char *var, char *buf, size_t n) {
    size_t l = strcspn(var, "=");
    snprintf(buf, n, "%.*s", (int)(l < n ? l : n - 1), var);
    return buf;
}

/* A variable's value as JSON: typed like a plain YAML scalar; "[a, b]" is a list, and so is
 * "0,2,5" for detect.classes. */
static json_t *env_value(const char *v, int is_classes) {
    size_t len = strlen(v);
    int bracket = len >= 2 && v[0] == '[' && v[len - 1] == ']';
    if (!bracket && !(is_classes && strchr(v, ','))) return typed_scalar(v, len, 1);
    json_t *a = json_array();
    const char *p = v + bracket, *end = v + len - bracket;
    while (a && p < end) {
        while (p < end && isspace((unsigned char)*p)) p++;
        size_t left = strnlen(p, (size_t)(end - p)); /* == end - p; GCC then sees it bounded */
        const char *q = memchr(p, ',', left);
        const char *ie = q ? q : end;
        while (ie > p && isspace((unsigned char)ie[-1])) ie--;
        if (ie == p && !q) break; /* "[]" or a trailing space */
        char item[64];
        snprintf(item, sizeof item, "%.*s", (int)(ie - p < 63 ? ie - p : 63), p);
        if (json_array_append_new(a, typed_scalar(item, strlen(item), 1))) {
            json_decref(a);
            return NULL;
        }
        if (!q) break;
        p = q + 1;
    }
    return a;
}

int srv_cameras_load_env(it_camdef **list, int *n, char **envp, char *err, size_t errlen) {
    const size_t plen = strlen(SRV_CAMERAS_ENV);
    if (!envp) return 0;
    /* Group the variables by camera: {id: {key: value, detect: {...}}}, then apply each
     * camera's object at once, so a new camera may get its URL from any variable. */
    json_t *by_id = json_object();
    origins *os = it_malloc(sizeof *os);
    it_camdef *tmp = copy_list(*list, *n, IT_CAM_MAX);
    int count = *n, rc = -1;
    char name[256], why[512];
    if (!by_id || !os || !tmp) {
        seterr(err, errlen, "out of memory");
        goto out;
    }
    for (char **e = envp; *e; e++) {
        if (strncasecmp(*e, SRV_CAMERAS_ENV, plen)) continue;
        if (strcspn(*e, "=") >= sizeof name) {
            seterr(err, errlen, "%.40s...: variable name too long", *e);
            goto out;
        }
        var_name(*e, name, sizeof name);
        const char *eq = strchr(*e, '=');
        char lower[256];
        size_t nl = strlen(name);
        for (size_t i = 0; i <= nl; i++) lower[i] = (char)tolower((unsigned char)name[i]);
        const char *id_start = lower + plen, *sep = strstr(id_start, "__");
        char id[IT_CAM_ID_MAX + 2], key[80], sub[80];
        if (!eq || !sep || sep == id_start || !sep[2] || (size_t)(sep - id_start) > IT_CAM_ID_MAX) {
            seterr(err, errlen, "%s: expected %sID__KEY=VALUE, like %sGATE_1__URL=rtsp://...", name,
                   SRV_CAMERAS_ENV, SRV_CAMERAS_ENV);
            goto out;
        }
        snprintf(id, sizeof id, "%.*s", (int)(sep - id_start), id_start);
        if (!it_cam_id_valid(id)) {
            seterr(err, errlen, "%s: '%s' is not a camera id (1 to %d characters of a-z, 0-9, '_' and '-')", name,
                   id, IT_CAM_ID_MAX);
            goto out;
        }
        const char *k = sep + 2, *sep2 = strstr(k, "__");
        sub[0] = 0;
        if (sep2) {
            if (!sep2[2] || sep2 == k || strstr(sep2 + 2, "__")) {
                seterr(err, errlen, "%s: expected %sID__KEY or %sID__KEY__SUBKEY", name, SRV_CAMERAS_ENV,
                       SRV_CAMERAS_ENV);
                goto out;
            }
            snprintf(key, sizeof key, "%.*s", (int)(sep2 - k), k);
            snprintf(sub, sizeof sub, "%s", sep2 + 2);
        } else {
            snprintf(key, sizeof key, "%s", k);
        }
        json_t *cam = json_object_get(by_id, id);
        if (!cam) {
            cam = json_object();
            if (!cam || json_object_set_new(by_id, id, cam)) goto oom;
        }
        json_t *holder = cam;
        if (sub[0]) {
            holder = json_object_get(cam, key);
            if (!holder) {
                holder = json_object();
                if (!holder || json_object_set_new(cam, key, holder)) goto oom;
            } else if (!json_is_object(holder)) {
                seterr(err, errlen, "%s: %s is a value, not a section", name, key);
                goto out;
            }
        }
        const char *leaf = sub[0] ? sub : key;
        if (json_object_get(holder, leaf)) {
            seterr(err, errlen, "%s: set twice (names are case-insensitive)", name);
            goto out;
        }
        json_t *v = env_value(eq + 1, !strcmp(key, "detect") && !strcmp(sub, "classes"));
        if (!v) {
            seterr(err, errlen, "%s: not valid UTF-8, or out of memory", name);
            goto out;
        }
        if (json_object_set_new(holder, leaf, v)) goto oom;
    }
    const char *id;
    json_t *cam;
    json_object_foreach(by_id, id, cam) {
        /* Remember every variable of this camera for the messages. */
        os->n = 0;
        for (char **e = envp; *e; e++) {
            if (strncasecmp(*e, SRV_CAMERAS_ENV, plen)) continue;
            var_name(*e, name, sizeof name);
            char path[160];
            size_t il = strlen(id);
            const char *rest = name + plen;
            if (strncasecmp(rest, id, il) || strncmp(rest + il, "__", 2)) continue;
            snprintf(path, sizeof path, "%s", rest + il + 2);
            for (char *p = path; *p; p++) *p = (char)tolower((unsigned char)*p);
            char *dd = strstr(path, "__");
            if (dd) memmove(dd, dd + 1, strlen(dd)), *dd = '.';
            remember(os, path, 0, (int)(e - envp));
        }
        int at = find_id(tmp, count, id);
        if (at < 0) {
            if (count >= IT_CAM_MAX) {
                seterr(err, errlen, "%s%s__*: more than %d cameras", SRV_CAMERAS_ENV, id, IT_CAM_MAX);
                goto out;
            }
            if (!json_object_get(cam, "url")) {
                char up[IT_CAM_ID_MAX + 1];
                for (size_t i = 0; i <= strlen(id); i++) up[i] = (char)toupper((unsigned char)id[i]);
                seterr(err, errlen, "%s%s__*: camera '%s' is not in the configuration file; creating it needs %s%s__URL",
                       SRV_CAMERAS_ENV, up, id, SRV_CAMERAS_ENV, up);
                goto out;
            }
            if (json_object_set_new(cam, "id", json_string(id))) goto oom;
            remember(os, "id", 0, -1);
        }
        it_camdef c;
        if (at >= 0) c = tmp[at];
        if (it_camdef_from_json(cam, at >= 0, &c, why, sizeof why)) {
            const origin *o = find_origin(os, why);
            if (o && o->env >= 0) seterr(err, errlen, "%s: %s", var_name(envp[o->env], name, sizeof name), why);
            else seterr(err, errlen, "%s%s__*: %s", SRV_CAMERAS_ENV, id, why);
            goto out;
        }
        if (at >= 0) tmp[at] = c;
        else tmp[count++] = c;
    }
    it_free(*list);
    *list = tmp;
    *n = count;
    tmp = NULL;
    rc = 0;
    goto out;
oom:
    seterr(err, errlen, "out of memory");
out:
    json_decref(by_id);
    it_free(os);
    it_free(tmp);
    return rc;
}

/* ---- --camera ID=URL ---- */

int srv_cameras_flag(it_camdef **list, int *n, const char *arg, char *err, size_t errlen) {
    const char *eq = arg ? strchr(arg, '=') : NULL;
    char id[IT_CAM_ID_MAX + 2], why[512];
    if (!eq || eq == arg || !eq[1]) {
        seterr(err, errlen, "--camera: expected ID=URL, like --camera gate_1=rtsp://host/stream");
        return -1;
    }
    size_t il = (size_t)(eq - arg);
    if (il > IT_CAM_ID_MAX) il = IT_CAM_ID_MAX + 1; /* too long: invalid below */
    for (size_t i = 0; i < il; i++) id[i] = (char)tolower((unsigned char)arg[i]);
    id[il] = 0;
    if (!it_cam_id_valid(id)) {
        seterr(err, errlen, "--camera: '%.*s' is not a camera id (1 to %d characters of a-z, 0-9, '_' and '-')",
               (int)(il > 64 ? 64 : il), arg, IT_CAM_ID_MAX);
        return -1;
    }
    int at = find_id(*list, *n, id);
    if (at < 0 && *n >= IT_CAM_MAX) {
        seterr(err, errlen, "--camera %s: more than %d cameras", id, IT_CAM_MAX);
        return -1;
    }
    json_t *obj = json_pack("{s:s, s:s}", "id", id, "url", eq + 1);
    if (!obj) {
        seterr(err, errlen, "--camera %s: the URL is not valid UTF-8", id);
        return -1;
    }
    it_camdef c;
    if (at >= 0) c = (*list)[at];
    int rc = it_camdef_from_json(obj, at >= 0, &c, why, sizeof why);
    json_decref(obj);
    if (rc) {
        seterr(err, errlen, "--camera %s: %s", id, why);
        return -1;
    }
    if (at >= 0) {
        (*list)[at] = c;
        return 0;
    }
    it_camdef *grown = it_realloc(*list, ((size_t)*n + 1) * sizeof *grown);
    if (!grown) {
        seterr(err, errlen, "--camera %s: out of memory", id);
        return -1;
    }
    grown[*n] = c;
    *list = grown;
    (*n)++;
    return 0;
}
