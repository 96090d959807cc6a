/* The event store over HTTP (issue 12, section 4): the history with keyset pagination
 * (GET /v1/events), one event and its snapshot (GET /v1/events/{id}[/snapshot.jpg]),
 * and line counts with zone occupancy per time bucket (GET /v1/cameras/{id}/counts);
 * plus the query parsing the event stream shares (api_live.c).
 *
 * Every query argument is checked, and an unknown one is refused: a misspelt filter
 * must not silently return everything. The store is reached under s->cam_mu, which
 * srv_cameras_stop takes before it closes the store. */
#include "server/http_internal.h"

#include "core/core.h"
#include "sinks/events.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define EVENTS_LIMIT_DEFAULT 100
#define COUNTS_BUCKET_DEFAULT 300
#define COUNTS_RANGE_DEFAULT 86400.0 /* since defaults to until - 24 h */
#define COUNTS_BUCKET_MAX 31622400   /* 366 days */
#define COUNTS_BUCKETS_MAX 10000     /* buckets per answer */
#define TIME_MAX 253402300799.0      /* 9999-12-31T23:59:59Z */

/* ---------------------------------------------------------------------------------
 * Query arguments
 * --------------------------------------------------------------------------------- */

typedef struct unknown_scan {
    const char *const *allowed;
    const char *bad;
} unknown_scan;

static enum MHD_Result scan_key(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
    (void)kind, (void)value;
    unknown_scan *u = cls;
    for (const char *const *a = u->allowed; *a; a++)
        if (!strcmp(key, *a)) return MHD_YES;
    u->bad = key;
    return MHD_NO;
}

int api_query_unknown(http_req *r, const char *const *allowed, enum MHD_Result *ret) {
    unknown_scan u = {allowed, NULL};
    MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, scan_key, &u);
    if (!u.bad) return 0;
    char list[256] = "";
    for (const char *const *a = allowed; *a; a++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", a == allowed ? "" : ", ", *a);
    *ret = http_respond_error(r, 400, "unknown query argument '%.40s' (this route takes %s)", u.bad, list);
    return 1;
}

static const char *arg(http_req *r, const char *key) {
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, key);
}

static int all_digits(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9') return 0;
    return n > 0;
}

static int num2(const char *s) { return (s[0] - '0') * 10 + (s[1] - '0'); }

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar (Howard Hinnant's
 * days_from_civil): no timegm, no time zone state. */
static int64_t days_from_civil(int64_t y, int m, int d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* RFC 3339 date-time: YYYY-MM-DD(T|t| )HH:MM:SS[.frac](Z|z|+HH:MM|-HH:MM). 0 or -1. */
static int parse_rfc3339(const char *v, double *out) {
    size_t n = strlen(v);
    if (n < 20 || !all_digits(v, 4) || v[4] != '-' || !all_digits(v + 5, 2) || v[7] != '-' || !all_digits(v + 8, 2) ||
        (v[10] != 'T' && v[10] != 't' && v[10] != ' ') || !all_digits(v + 11, 2) || v[13] != ':' ||
        !all_digits(v + 14, 2) || v[16] != ':' || !all_digits(v + 17, 2))
        return -1;
    int y = atoi(v), mo = num2(v + 5), d = num2(v + 8), h = num2(v + 11), mi = num2(v + 14), s = num2(v + 17);
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || (mo == 2 && d == 29 && !leap) || h > 23 || mi > 59 ||
        s > 60)
        return -1;
    const char *p = v + 19;
    double frac = 0;
    if (*p == '.') {
        const char *f = ++p;
        while (*p >= '0' && *p <= '9') p++;
        if (p == f || p - f > 9) return -1;
        frac = strtod(f - 1, NULL);
    }
    int off = 0;
    if ((*p == 'Z' || *p == 'z') && !p[1]) {
        off = 0;
    } else if ((*p == '+' || *p == '-') && strlen(p) == 6 && all_digits(p + 1, 2) && p[3] == ':' &&
               all_digits(p + 4, 2) && num2(p + 1) <= 23 && num2(p + 4) <= 59) {
        off = (num2(p + 1) * 60 + num2(p + 4)) * 60 * (*p == '-' ? -1 : 1);
    } else {
        return -1;
    }
    *out = (double)(days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s - off) + frac;
    return 0;
}

/* A time argument: unix seconds (digits with an optional fraction) or RFC 3339. 0 when
 * absent (*out untouched) or good; -1 with a 400 in *ret. */
static int query_time(http_req *r, const char *key, double *out, enum MHD_Result *ret) {
    const char *v = arg(r, key);
    if (!v) return 0;
    size_t n = strlen(v), dot = strcspn(v, ".");
    double t;
    int ok;
    if (dot < n ? all_digits(v, dot) && all_digits(v + dot + 1, n - dot - 1) : all_digits(v, n)) {
        ok = n <= 24;
        t = strtod(v, NULL);
    } else {
        ok = parse_rfc3339(v, &t) == 0;
    }
    if (!ok || !(t >= 0 && t <= TIME_MAX)) {
        *ret = http_respond_error(r, 400,
                                  "%s='%.40s' is not a time: unix seconds (1714567890 or 1714567890.5) or RFC 3339 "
                                  "(2024-05-01T12:51:30Z, 2024-05-01T14:51:30.5+02:00) from 1970 on%s",
                                  key, v, strchr(v, ' ') ? " (a + in a URL reads as a space: write %2B)" : "");
        return -1;
    }
    *out = t;
    return 0;
}

/* A whole-number argument in [lo, hi]; def when absent. 0, or -1 with a 400. */
static int query_int(http_req *r, const char *key, int64_t lo, int64_t hi, int64_t def, int64_t *out,
                     enum MHD_Result *ret) {
    const char *v = arg(r, key);
    *out = def;
    if (!v) return 0;
    size_t n = strlen(v);
    if (!all_digits(v, n) || n > 18 || strtoll(v, NULL, 10) < lo || strtoll(v, NULL, 10) > hi) {
        *ret = http_respond_error(r, 400, "%s='%.40s' is not a whole number in %" PRId64 "..%" PRId64, key, v, lo, hi);
        return -1;
    }
    *out = strtoll(v, NULL, 10);
    return 0;
}

static int type_char(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'; }

/* A comma list into names[max][cap]: each name checked by `kind` (0 type, 1 class).
 * Returns the count, or -1 with the reason in why. */
static int parse_list(const char *v, char *names, size_t cap, int max, int kind, char *why, size_t whylen) {
    int k = 0;
    const char *p = v;
    for (;;) {
        size_t n = strcspn(p, ",");
        int ok = n >= 1 && n < cap;
        for (size_t i = 0; ok && i < n; i++)
            ok = kind == 0 ? type_char(p[i]) : (unsigned char)p[i] >= 0x20 && p[i] != 0x7f;
        if (!ok) {
            snprintf(why, whylen, "'%.*s' is not %s", (int)(n > 40 ? 40 : n), p,
                     kind == 0 ? "an event type ([a-z0-9_]{1,31})" : "a class name (1 to 63 bytes)");
            return -1;
        }
        if (k == max) {
            snprintf(why, whylen, "at most %d names", max);
            return -1;
        }
        memcpy(names + (size_t)k * cap, p, n);
        names[(size_t)k * cap + n] = 0;
        k++;
        if (!p[n]) return k;
        p += n + 1;
    }
}

int api_event_filter_parse(http_req *r, api_event_filter *a, enum MHD_Result *ret) {
    memset(a, 0, sizeof *a);
    const char *cam = arg(r, "camera");
    if (cam) {
        if (!it_cam_id_valid(cam)) {
            *ret = http_respond_error(r, 400, "camera='%.70s' is not a camera id ([a-z0-9_-]{1,64})", cam);
            return -1;
        }
        snprintf(a->camera, sizeof a->camera, "%s", cam);
    }
    char why[160];
    const char *v = arg(r, "type");
    if (v && (a->n_types = parse_list(v, a->type_names[0], sizeof a->type_names[0], IT_EVENT_FILTER_LIST_MAX, 0, why,
                                      sizeof why)) < 0) {
        *ret = http_respond_error(r, 400, "type=: %s", why);
        return -1;
    }
    v = arg(r, "class");
    if (v && (a->n_classes = parse_list(v, a->class_names[0], sizeof a->class_names[0], IT_EVENT_FILTER_LIST_MAX, 1,
                                        why, sizeof why)) < 0) {
        *ret = http_respond_error(r, 400, "class=: %s", why);
        return -1;
    }
    if (a->n_types < 0) a->n_types = 0;
    if (a->n_classes < 0) a->n_classes = 0;
    for (int i = 0; i < a->n_types; i++) a->types[i] = a->type_names[i];
    for (int i = 0; i < a->n_classes; i++) a->classes[i] = a->class_names[i];
    return 0;
}

void api_event_filter_store(const api_event_filter *a, it_event_filter *f) {
    f->camera = a->camera;
    f->types = a->types, f->n_types = a->n_types;
    f->classes = a->classes, f->n_classes = a->n_classes;
}

int api_event_filter_match(const api_event_filter *a, const it_event *e) {
    if (a->camera[0] && strcmp(a->camera, e->camera)) return 0;
    int ok = !a->n_types;
    for (int i = 0; !ok && i < a->n_types; i++) ok = !strcmp(a->types[i], e->type);
    if (!ok) return 0;
    if (!a->n_classes) return 1;
    if (e->id <= 0) return 0;
    /* Only for stored events with a class filter: their JSON is it_store_event_json's. */
    json_t *j = json_loadb(e->data, e->len, 0, NULL);
    const char *c = json_string_value(json_object_get(j, "class"));
    ok = 0;
    for (int i = 0; c && !ok && i < a->n_classes; i++) ok = !strcmp(a->classes[i], c);
    json_decref(j);
    return ok;
}

void api_events_cursor(int ascending, int64_t id, char *cur, size_t n) {
    snprintf(cur, n, "%c%" PRId64, ascending ? 'a' : 'd', id);
}

/* The cursor's order and id; -1 when it is not one this server made. */
static int cursor_parse(const char *v, int *ascending, int64_t *id) {
    size_t n = strlen(v);
    if (n < 2 || n > 19 || (v[0] != 'a' && v[0] != 'd') || !all_digits(v + 1, n - 1)) return -1;
    *ascending = v[0] == 'a';
    *id = strtoll(v + 1, NULL, 10);
    return 0;
}

/* ---------------------------------------------------------------------------------
 * The store
 * --------------------------------------------------------------------------------- */

it_store *api_store_lock(http_req *r, enum MHD_Result *ret) {
    pthread_mutex_lock(&r->s->cam_mu);
    if (r->s->store) return r->s->store;
    pthread_mutex_unlock(&r->s->cam_mu);
    *ret = http_respond_error_h(r, 503, "the event store is not open yet", MHD_HTTP_HEADER_RETRY_AFTER, "1");
    return NULL;
}

void api_store_unlock(http_req *r) {
    pthread_mutex_unlock(&r->s->cam_mu);
}

/* Event times are unix seconds with microseconds: more digits than http_respond_json's
 * nine (which would round a time to ten seconds). */
static enum MHD_Result respond_json15(http_req *r, int code, json_t *j) {
    char *txt = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(15)) : NULL;
    json_decref(j);
    if (!txt) return http_respond_error(r, 500, "out of memory");
    return http_respond_raw(r, code, "application/json", txt, strlen(txt), NULL, NULL);
}

static double wall_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---------------------------------------------------------------------------------
 * GET /v1/events
 * --------------------------------------------------------------------------------- */

enum MHD_Result api_events_list(http_req *r) {
    static const char *const keys[] = {"camera", "type", "class", "since", "until", "limit", "cursor", "order", NULL};
    enum MHD_Result ret;
    if (api_query_unknown(r, keys, &ret)) return ret;
    api_event_filter a;
    if (api_event_filter_parse(r, &a, &ret)) return ret;
    it_event_filter f = {0};
    api_event_filter_store(&a, &f);
    if (query_time(r, "since", &f.since, &ret) || query_time(r, "until", &f.until, &ret)) return ret;
    /* Times of 0 mean "no bound" to the store: the epoch itself is no bound either. */
    if (arg(r, "since") && arg(r, "until") && !(f.since < f.until))
        return http_respond_error(r, 400, "since must be before until");
    if (arg(r, "until") && f.until == 0) return http_respond_error(r, 400, "until must be after 1970-01-01T00:00:00Z");
    int64_t limit;
    if (query_int(r, "limit", 1, IT_EVENTS_QUERY_MAX, EVENTS_LIMIT_DEFAULT, &limit, &ret)) return ret;
    const char *order = arg(r, "order");
    if (order && strcmp(order, "asc") && strcmp(order, "desc"))
        return http_respond_error(r, 400, "order='%.20s': asc (oldest first) or desc (newest first, the default)", order);
    f.ascending = order && !strcmp(order, "asc");
    int64_t cursor = 0;
    const char *cur = arg(r, "cursor");
    if (cur) {
        int asc;
        if (cursor_parse(cur, &asc, &cursor))
            return http_respond_error(r, 400, "cursor='%.40s' is not a cursor this server gave (next_cursor)", cur);
        if (order && asc != f.ascending)
            return http_respond_error(r, 400, "the cursor continues order=%s, not order=%s", asc ? "asc" : "desc", order);
        f.ascending = asc; /* the cursor carries its order: the other arguments suffice */
    }
    it_store_event *page = it_malloc((size_t)limit * sizeof *page);
    if (!page) return http_respond_error(r, 500, "out of memory");
    it_store *st = api_store_lock(r, &ret);
    if (!st) {
        it_free(page);
        return ret;
    }
    int n = 0;
    int64_t next = 0;
    itscam_status s = it_store_events_query(st, &f, (int)limit, cursor, page, &n, &next);
    api_store_unlock(r);
    if (s != ITSCAM_OK) {
        it_free(page);
        return http_respond_error(r, 500, "%s", itscam_last_error());
    }
    json_t *events = json_array();
    for (int i = 0; events && i < n; i++) json_array_append_new(events, it_store_event_json(&page[i]));
    it_free(page);
    char next_s[32];
    api_events_cursor(f.ascending, next, next_s, sizeof next_s);
    json_t *o = events ? json_pack("{s:o,s:o}", "events", events, "next_cursor", next ? json_string(next_s) : json_null())
                       : NULL;
    return respond_json15(r, 200, o);
}

/* ---------------------------------------------------------------------------------
 * GET /v1/events/{id}, GET /v1/events/{id}/snapshot.jpg
 * --------------------------------------------------------------------------------- */

/* The event of the route, or an answer in *ret (404, 500, 503). 0 when found. */
static int route_event(http_req *r, it_store_event *e, char *dir, size_t dirlen, enum MHD_Result *ret) {
    it_store *st = api_store_lock(r, ret);
    if (!st) return -1;
    itscam_status s = it_store_event_get(st, r->event_id, e);
    if (dir) snprintf(dir, dirlen, "%s", it_store_dir(st));
    api_store_unlock(r);
    if (s == ITSCAM_OK) return 0;
    *ret = s == ITSCAM_ERR_NOT_FOUND ? http_respond_error(r, 404, "no event %" PRId64, r->event_id)
                                     : http_respond_error(r, 500, "%s", itscam_last_error());
    return -1;
}

enum MHD_Result api_event_get(http_req *r) {
    static const char *const keys[] = {NULL};
    enum MHD_Result ret;
    if (api_query_unknown(r, keys, &ret)) return ret;
    it_store_event e;
    if (route_event(r, &e, NULL, 0, &ret)) return ret;
    return respond_json15(r, 200, it_store_event_json(&e));
}

enum MHD_Result api_event_snapshot(http_req *r) {
    static const char *const keys[] = {NULL};
    enum MHD_Result ret;
    if (api_query_unknown(r, keys, &ret)) return ret;
    it_store_event e;
    char dir[PATH_MAX], path[PATH_MAX];
    if (route_event(r, &e, dir, sizeof dir, &ret)) return ret;
    if (!e.snapshot[0]) return http_respond_error(r, 404, "event %" PRId64 " has no snapshot", r->event_id);
    itscam_status s = it_snapshot_resolve(dir, e.snapshot, path, sizeof path);
    if (s == ITSCAM_ERR_INVALID_ARG) {
        /* The store holds a path that is not ours to serve: never followed, and not shown. */
        it_log(ITSCAM_LOG_WARN, "event %" PRId64 ": snapshot refused: %s", r->event_id, itscam_last_error());
        return http_respond_error(r, 404, "event %" PRId64 ": its snapshot is not available", r->event_id);
    }
    if (s == ITSCAM_ERR_NOT_FOUND)
        return http_respond_error(r, 404, "event %" PRId64 ": its snapshot file is gone", r->event_id);
    int fd = s == ITSCAM_OK ? open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC) : -1;
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        int gone = fd < 0 && (errno == ENOENT || s != ITSCAM_OK);
        if (fd >= 0) close(fd);
        if (gone) return http_respond_error(r, 404, "event %" PRId64 ": its snapshot file is gone", r->event_id);
        return http_respond_error(r, 500, "event %" PRId64 ": cannot read its snapshot", r->event_id);
    }
    /* The file is sent from the descriptor (sendfile when it can): no copy in memory. */
    struct MHD_Response *resp = MHD_create_response_from_fd((uint64_t)sb.st_size, fd);
    if (!resp) {
        close(fd);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "image/jpeg");
    /* A snapshot never changes once its event is stored. */
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "private, max-age=86400");
    return http_respond_with(r, 200, resp);
}

/* ---------------------------------------------------------------------------------
 * GET /v1/cameras/{id}/counts
 * --------------------------------------------------------------------------------- */

/* obj[key], created as an empty object when absent. */
static json_t *child(json_t *obj, const char *key) {
    json_t *c = json_object_get(obj, key);
    if (c) return c;
    c = json_object();
    json_object_set_new(obj, key, c);
    return json_object_get(obj, key);
}

/* 1 when the camera is configured now, or has history in the store (a camera deleted
 * since keeps its counts while retention keeps them). Under cam_mu. */
static int camera_known(srv_server *s, it_store *st, const char *id, int *known) {
    it_camdef d;
    *known = s->cams && it_cams_get(s->cams, id, &d) == 0;
    if (*known) return 0;
    return it_store_camera_has_data(st, id, known) == ITSCAM_OK ? 0 : -1;
}

enum MHD_Result api_camera_counts(http_req *r) {
    static const char *const keys[] = {"since", "until", "bucket", NULL};
    enum MHD_Result ret;
    if (api_query_unknown(r, keys, &ret)) return ret;
    double until = wall_now(), since;
    int64_t bucket;
    if (query_time(r, "until", &until, &ret) ||
        query_int(r, "bucket", 1, COUNTS_BUCKET_MAX, COUNTS_BUCKET_DEFAULT, &bucket, &ret))
        return ret;
    since = IT_MAX(until - COUNTS_RANGE_DEFAULT, 0);
    if (query_time(r, "since", &since, &ret)) return ret;
    if (!(since < until)) return http_respond_error(r, 400, "since must be before until");
    double b = (double)bucket;
    int64_t first = (int64_t)floor(since / b), last = (int64_t)ceil(until / b) - 1;
    if (last - first + 1 > COUNTS_BUCKETS_MAX)
        return http_respond_error(r, 400,
                                  "%" PRId64 " buckets of %" PRId64 " s between since and until; at most %d: use a "
                                  "larger bucket or a shorter range",
                                  last - first + 1, bucket, COUNTS_BUCKETS_MAX);
    it_store *st = api_store_lock(r, &ret);
    if (!st) return ret;
    int known = 0;
    it_count_row *lines = NULL;
    it_occupancy_row *zones = NULL;
    int nl = 0, nz = 0;
    itscam_status s = camera_known(r->s, st, r->camera, &known) == 0 ? ITSCAM_OK : ITSCAM_ERR_IO;
    if (s == ITSCAM_OK && known && (s = it_store_counts(st, r->camera, since, until, b, &lines, &nl)) == ITSCAM_OK)
        s = it_store_occupancy(st, r->camera, since, until, b, &zones, &nz);
    api_store_unlock(r);
    if (s != ITSCAM_OK) {
        it_free(lines), it_free(zones);
        return http_respond_error(r, s == ITSCAM_ERR_INVALID_ARG ? 400 : 500, "%s", itscam_last_error());
    }
    if (!known) return http_respond_error(r, 404, "no camera '%s': not configured and nothing stored", r->camera);
    /* Every bucket of the range, the empty ones too: a chart needs its zeros. */
    int nb = (int)(last - first + 1);
    json_t *buckets = json_array();
    for (int i = 0; buckets && i < nb; i++)
        json_array_append_new(buckets, json_pack("{s:f,s:{},s:{}}", "start", (double)(first + i) * b, "lines", "zones"));
    for (int i = 0; buckets && i < nl; i++) {
        int64_t k = llround(lines[i].bucket_start / b) - first;
        json_t *bk = json_array_get(buckets, (size_t)k);
        if (k < 0 || k >= nb || !bk) continue;
        json_t *cls = child(child(json_object_get(bk, "lines"), lines[i].line[0] ? lines[i].line : "unknown"),
                            lines[i].class_name[0] ? lines[i].class_name : "unknown");
        json_t *dirs = cls;
        if (!json_object_get(dirs, "a_to_b")) json_object_set_new(dirs, "a_to_b", json_integer(0));
        if (!json_object_get(dirs, "b_to_a")) json_object_set_new(dirs, "b_to_a", json_integer(0));
        const char *d = lines[i].direction[0] ? lines[i].direction : "unknown";
        json_int_t had = json_integer_value(json_object_get(dirs, d));
        json_object_set_new(dirs, d, json_integer(had + (json_int_t)lines[i].count));
    }
    for (int i = 0; buckets && i < nz; i++) {
        int64_t k = llround(zones[i].bucket_start / b) - first;
        json_t *bk = json_array_get(buckets, (size_t)k);
        if (k < 0 || k >= nb || !bk) continue;
        json_t *z = child(json_object_get(bk, "zones"), zones[i].zone);
        json_object_set_new(z, zones[i].class_name[0] ? zones[i].class_name : "all",
                            json_pack("{s:f,s:I,s:I}", "mean", round(zones[i].mean * 1000) / 1000, "max",
                                      (json_int_t)zones[i].max, "samples", (json_int_t)zones[i].samples));
    }
    it_free(lines), it_free(zones);
    json_t *o = buckets ? json_pack("{s:s,s:f,s:f,s:I,s:o}", "camera", r->camera, "since", since, "until", until,
                                    "bucket_s", (json_int_t)bucket, "buckets", buckets)
                        : NULL;
    return respond_json15(r, 200, o);
}
