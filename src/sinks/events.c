/* The event store: batched inserts (with their outbox rows), keyset-paginated queries,
 * line-count buckets through SQLite's JSON1 functions, retention in small steps, and the
 * asynchronous writer that keeps SQLite off the camera threads. */
#include "sinks/events.h"
#include "sinks/store_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define COLS "id, camera, type, time, track_id, class_id, class, score, x1, y1, x2, y2, details, snapshot"
#define COUNTS_MAX 100000
#define WRITER_BATCH 256
#define WRITER_PERIOD_MS 50.0

void it_store_events_finalize(struct it_store *st) {
    sqlite3_finalize(st->ev_insert);
    sqlite3_finalize(st->ev_outbox);
    sqlite3_finalize(st->occ_insert);
    st->ev_insert = st->ev_outbox = st->occ_insert = NULL;
}

static itscam_status sqlerr(it_store *st, const char *what) {
    return it_err(ITSCAM_ERR_IO, "%s: %s: %s", st->path, what, sqlite3_errmsg(st->db));
}

itscam_status it_store_outbox_targets(it_store *st, const char *const *targets, int n) {
    if (!st || n < 0 || n > IT_OUTBOX_TARGETS_MAX || (n && !targets))
        return it_err(ITSCAM_ERR_INVALID_ARG, "store: at most %d outbox targets", IT_OUTBOX_TARGETS_MAX);
    for (int i = 0; i < n; i++)
        if (!targets[i] || !*targets[i] || strlen(targets[i]) >= sizeof st->outbox_targets[0])
            return it_err(ITSCAM_ERR_INVALID_ARG, "store: outbox target names are 1 to %zu bytes",
                          sizeof st->outbox_targets[0] - 1);
    pthread_mutex_lock(&st->mu);
    for (int i = 0; i < n; i++) snprintf(st->outbox_targets[i], sizeof st->outbox_targets[i], "%s", targets[i]);
    st->n_outbox_targets = n;
    pthread_mutex_unlock(&st->mu);
    return ITSCAM_OK;
}

static int bind_text_or_null(sqlite3_stmt *s, int i, const char *t) {
    return t && *t ? sqlite3_bind_text(s, i, t, -1, SQLITE_STATIC) : sqlite3_bind_null(s, i);
}

static int bind_event(sqlite3_stmt *s, const it_store_event *e) {
    int rc = SQLITE_OK;
#define B(x) \
    if (rc == SQLITE_OK) rc = (x)
    B(sqlite3_bind_text(s, 1, e->camera, -1, SQLITE_STATIC));
    B(sqlite3_bind_text(s, 2, e->type, -1, SQLITE_STATIC));
    B(sqlite3_bind_double(s, 3, e->time));
    B(e->track_id > 0 ? sqlite3_bind_int64(s, 4, e->track_id) : sqlite3_bind_null(s, 4));
    B(e->class_id >= 0 ? sqlite3_bind_int(s, 5, e->class_id) : sqlite3_bind_null(s, 5));
    B(bind_text_or_null(s, 6, e->class_name));
    B(e->score >= 0 ? sqlite3_bind_double(s, 7, e->score) : sqlite3_bind_null(s, 7));
    for (int k = 0; k < 4; k++) B(e->has_box ? sqlite3_bind_double(s, 8 + k, e->box[k]) : sqlite3_bind_null(s, 8 + k));
    B(bind_text_or_null(s, 12, e->details));
    B(bind_text_or_null(s, 13, e->snapshot));
#undef B
    return rc;
}

/* A fixed-size field must hold a terminator: the struct may come from anywhere. */
static int event_valid(const it_store_event *e) {
    return memchr(e->camera, 0, sizeof e->camera) && memchr(e->type, 0, sizeof e->type) &&
           memchr(e->class_name, 0, sizeof e->class_name) && memchr(e->details, 0, sizeof e->details) &&
           memchr(e->snapshot, 0, sizeof e->snapshot) && e->camera[0] && e->type[0];
}

/* Under st->mu. */
static itscam_status insert_locked(it_store *st, const it_store_event *ev, int n, int64_t *ids) {
    if (!st->ev_insert) {
        /* Details that are not JSON become NULL: one bad event must not fail its batch,
         * and json_extract in the counts would fail on it. */
        static const char sql[] =
            "INSERT INTO events (camera, type, time, track_id, class_id, class, score, x1, y1, x2, y2, details, "
            "snapshot) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, "
            "CASE WHEN json_valid(?12) THEN ?12 END, ?13)";
        if (sqlite3_prepare_v3(st->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st->ev_insert, NULL) != SQLITE_OK ||
            sqlite3_prepare_v3(st->db, "INSERT OR IGNORE INTO outbox (event_id, target) VALUES (?1, ?2)", -1,
                               SQLITE_PREPARE_PERSISTENT, &st->ev_outbox, NULL) != SQLITE_OK) {
            itscam_status s = sqlerr(st, "preparing the event insert");
            it_store_events_finalize(st);
            return s;
        }
    }
    if (sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) return sqlerr(st, "inserting events");
    itscam_status s = ITSCAM_OK;
    for (int i = 0; i < n && s == ITSCAM_OK; i++) {
        if (bind_event(st->ev_insert, &ev[i]) != SQLITE_OK || sqlite3_step(st->ev_insert) != SQLITE_DONE) {
            s = sqlerr(st, "inserting an event");
        } else {
            int64_t id = sqlite3_last_insert_rowid(st->db);
            if (ids) ids[i] = id;
            for (int t = 0; t < st->n_outbox_targets && s == ITSCAM_OK; t++) {
                sqlite3_bind_int64(st->ev_outbox, 1, id);
                sqlite3_bind_text(st->ev_outbox, 2, st->outbox_targets[t], -1, SQLITE_STATIC);
                if (sqlite3_step(st->ev_outbox) != SQLITE_DONE) s = sqlerr(st, "inserting an outbox row");
                sqlite3_reset(st->ev_outbox);
            }
        }
        sqlite3_reset(st->ev_insert);
        sqlite3_clear_bindings(st->ev_insert);
    }
    if (s == ITSCAM_OK && sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) s = sqlerr(st, "committing events");
    if (s != ITSCAM_OK) sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    return s;
}

itscam_status it_store_events_insert(it_store *st, const it_store_event *ev, int n, int64_t *ids) {
    if (!st || n < 0 || (n && !ev)) return it_err(ITSCAM_ERR_INVALID_ARG, "events insert: bad arguments");
    for (int i = 0; i < n; i++)
        if (!event_valid(&ev[i]))
            return it_err(ITSCAM_ERR_INVALID_ARG, "events insert: event %d lacks a camera or type, or a field is unterminated", i);
    if (!n) return ITSCAM_OK;
    pthread_mutex_lock(&st->mu);
    itscam_status s = insert_locked(st, ev, n, ids);
    pthread_mutex_unlock(&st->mu);
    return s;
}

static void copy_col(sqlite3_stmt *s, int i, char *dst, size_t cap) {
    const unsigned char *t = sqlite3_column_text(s, i);
    snprintf(dst, cap, "%s", t ? (const char *)t : "");
}

static void read_event(sqlite3_stmt *s, it_store_event *e) {
    memset(e, 0, sizeof *e);
    e->id = sqlite3_column_int64(s, 0);
    copy_col(s, 1, e->camera, sizeof e->camera);
    copy_col(s, 2, e->type, sizeof e->type);
    e->time = sqlite3_column_double(s, 3);
    e->track_id = sqlite3_column_type(s, 4) == SQLITE_NULL ? 0 : sqlite3_column_int64(s, 4);
    e->class_id = sqlite3_column_type(s, 5) == SQLITE_NULL ? -1 : sqlite3_column_int(s, 5);
    copy_col(s, 6, e->class_name, sizeof e->class_name);
    e->score = sqlite3_column_type(s, 7) == SQLITE_NULL ? -1 : sqlite3_column_double(s, 7);
    e->has_box = sqlite3_column_type(s, 8) != SQLITE_NULL;
    for (int k = 0; k < 4; k++) e->box[k] = sqlite3_column_double(s, 8 + k);
    copy_col(s, 12, e->details, sizeof e->details);
    copy_col(s, 13, e->snapshot, sizeof e->snapshot);
}

/* The WHERE conditions of f (after "WHERE 1"), appended to sql at *len. Parameters: ?1
 * camera, ?2 type, ?3 class, ?4 since, ?5 until, ?10.. types, ?30.. classes (?6 and ?7
 * are the callers'). -1 when f's lists are too long. */
static int filter_sql(const it_event_filter *f, char *sql, size_t cap, int *len) {
    if (f->n_types < 0 || f->n_types > IT_EVENT_FILTER_LIST_MAX || f->n_classes < 0 ||
        f->n_classes > IT_EVENT_FILTER_LIST_MAX || (f->n_types && !f->types) || (f->n_classes && !f->classes))
        return -1;
#define ADD(...) *len += snprintf(sql + *len, cap - (size_t)*len, __VA_ARGS__)
    if (f->camera && *f->camera) ADD(" AND camera = ?1");
    if (f->type && *f->type) ADD(" AND type = ?2");
    if (f->class_name && *f->class_name) ADD(" AND class = ?3");
    if (f->since > 0) ADD(" AND time >= ?4");
    if (f->until > 0) ADD(" AND time < ?5");
    for (int i = 0; i < f->n_types; i++) ADD("%s?%d%s", i ? ", " : " AND type IN (", 10 + i, i == f->n_types - 1 ? ")" : "");
    for (int i = 0; i < f->n_classes; i++)
        ADD("%s?%d%s", i ? ", " : " AND class IN (", 30 + i, i == f->n_classes - 1 ? ")" : "");
#undef ADD
    return 0;
}

/* Binding a parameter the text does not use is harmless (SQLITE_RANGE is not raised for
 * numbered parameters below the largest one used). */
static void filter_bind(sqlite3_stmt *s, const it_event_filter *f) {
    if (f->camera && *f->camera) sqlite3_bind_text(s, 1, f->camera, -1, SQLITE_STATIC);
    if (f->type && *f->type) sqlite3_bind_text(s, 2, f->type, -1, SQLITE_STATIC);
    if (f->class_name && *f->class_name) sqlite3_bind_text(s, 3, f->class_name, -1, SQLITE_STATIC);
    sqlite3_bind_double(s, 4, f->since);
    sqlite3_bind_double(s, 5, f->until);
    for (int i = 0; i < f->n_types; i++) bind_text_or_null(s, 10 + i, f->types[i]);
    for (int i = 0; i < f->n_classes; i++) bind_text_or_null(s, 30 + i, f->classes[i]);
}
void it_store_event_read(sqlite3_stmt *s, it_store_event *e) { read_event(s, e); }

itscam_status it_store_events_query(it_store *st, const it_event_filter *f, int limit, int64_t cursor,
                                    it_store_event *out, int *n, int64_t *next_cursor) {
    *n = 0, *next_cursor = 0;
    if (!st || !out || cursor < 0) return it_err(ITSCAM_ERR_INVALID_ARG, "events query: bad arguments");
    it_event_filter none = {0};
    if (!f) f = &none;
    limit = limit < 1 ? 1 : limit > IT_EVENTS_QUERY_MAX ? IT_EVENTS_QUERY_MAX : limit;
    int asc = f->ascending;
    char sql[1024];
    /* The inner select picks the page's ids and the outer one reads their rows: with a
     * camera (or type) and a time range the inner one runs on the covering index
     * (camera, time, rowid), so the ids of the whole range are sorted without reading a
     * single row, and only the page's rows are read from the table. */
    int len = snprintf(sql, sizeof sql, "SELECT " COLS " FROM events WHERE id IN (SELECT id FROM events WHERE 1");
    if (filter_sql(f, sql, sizeof sql, &len))
        return it_err(ITSCAM_ERR_INVALID_ARG, "events query: at most %d types and %d classes", IT_EVENT_FILTER_LIST_MAX,
                      IT_EVENT_FILTER_LIST_MAX);
    if (cursor > 0) len += snprintf(sql + len, sizeof sql - (size_t)len, "%s", asc ? " AND id > ?6" : " AND id < ?6");
    snprintf(sql + len, sizeof sql - (size_t)len, "%s",
             asc ? " ORDER BY id ASC LIMIT ?7) ORDER BY id ASC" : " ORDER BY id DESC LIMIT ?7) ORDER BY id DESC");
    pthread_mutex_lock(&st->mu);
    sqlite3_stmt *s = NULL;
    itscam_status status = ITSCAM_OK;
    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK) {
        status = sqlerr(st, "querying events");
        goto done;
    }
    filter_bind(s, f);
    sqlite3_bind_int64(s, 6, cursor);
    sqlite3_bind_int(s, 7, limit + 1); /* one more: is there a next page? */
    int rc, k = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (k == limit) {
            *next_cursor = out[limit - 1].id;
            break;
        }
        read_event(s, &out[k++]);
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) status = sqlerr(st, "reading events");
    else *n = k;
done:
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->mu);
    if (status != ITSCAM_OK) *n = 0, *next_cursor = 0;
    return status;
}

/* One integer from a statement built by the caller; bind(s, arg) binds it. Under no lock. */
static itscam_status query_int64(it_store *st, const char *sql, void (*bind)(sqlite3_stmt *, const void *),
                                 const void *arg, const char *what, int64_t *out) {
    *out = 0;
    pthread_mutex_lock(&st->mu);
    sqlite3_stmt *s = NULL;
    itscam_status status = ITSCAM_OK;
    int rc = sqlite3_prepare_v2(st->db, sql, -1, &s, NULL);
    if (rc == SQLITE_OK) {
        if (bind) bind(s, arg);
        rc = sqlite3_step(s);
    }
    if (rc == SQLITE_ROW) *out = sqlite3_column_int64(s, 0);
    else if (rc != SQLITE_DONE) status = sqlerr(st, what);
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->mu);
    return status;
}

typedef struct count_after_args {
    const it_event_filter *f;
    int64_t after, cap;
} count_after_args;

static void bind_count_after(sqlite3_stmt *s, const void *arg) {
    const count_after_args *a = arg;
    filter_bind(s, a->f);
    sqlite3_bind_int64(s, 6, a->after);
    sqlite3_bind_int64(s, 7, a->cap);
}

itscam_status it_store_events_count_after(it_store *st, const it_event_filter *f, int64_t after_id, int64_t cap,
                                          int64_t *n) {
    *n = 0;
    if (!st || after_id < 0 || cap < 0) return it_err(ITSCAM_ERR_INVALID_ARG, "events count: bad arguments");
    it_event_filter none = {0};
    if (!f) f = &none;
    char sql[1024];
    /* The LIMIT inside bounds the work: the walk stops at cap matching rows. */
    int len = snprintf(sql, sizeof sql, "SELECT count(*) FROM (SELECT 1 FROM events WHERE id > ?6");
    if (filter_sql(f, sql, sizeof sql, &len))
        return it_err(ITSCAM_ERR_INVALID_ARG, "events count: at most %d types and %d classes", IT_EVENT_FILTER_LIST_MAX,
                      IT_EVENT_FILTER_LIST_MAX);
    snprintf(sql + len, sizeof sql - (size_t)len, " LIMIT ?7)");
    count_after_args a = {f, after_id, cap};
    return query_int64(st, sql, bind_count_after, &a, "counting events", n);
}

itscam_status it_store_events_last_id(it_store *st, int64_t *id) {
    *id = 0;
    if (!st) return it_err(ITSCAM_ERR_INVALID_ARG, "events last id: NULL store");
    /* AUTOINCREMENT keeps the largest id ever given in sqlite_sequence (no row until the
     * first insert: 0). */
    return query_int64(st, "SELECT seq FROM sqlite_sequence WHERE name = 'events'", NULL, NULL, "reading the last id",
                       id);
}

static void bind_camera(sqlite3_stmt *s, const void *camera) {
    sqlite3_bind_text(s, 1, camera, -1, SQLITE_STATIC);
}

itscam_status it_store_camera_has_data(it_store *st, const char *camera, int *has) {
    *has = 0;
    if (!st || !camera) return it_err(ITSCAM_ERR_INVALID_ARG, "camera data: bad arguments");
    int64_t v;
    itscam_status s = query_int64(st,
                                  "SELECT EXISTS (SELECT 1 FROM events WHERE camera = ?1) OR "
                                  "EXISTS (SELECT 1 FROM occupancy WHERE camera = ?1)",
                                  bind_camera, camera, "looking a camera up", &v);
    *has = v != 0;
    return s;
}

itscam_status it_store_event_get(it_store *st, int64_t id, it_store_event *out) {
    if (!st || !out) return it_err(ITSCAM_ERR_INVALID_ARG, "event get: bad arguments");
    pthread_mutex_lock(&st->mu);
    sqlite3_stmt *s = NULL;
    itscam_status status = ITSCAM_OK;
    if (sqlite3_prepare_v2(st->db, "SELECT " COLS " FROM events WHERE id = ?1", -1, &s, NULL) != SQLITE_OK) {
        status = sqlerr(st, "reading an event");
    } else {
        sqlite3_bind_int64(s, 1, id);
        int rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) read_event(s, out);
        else if (rc == SQLITE_DONE) status = it_err(ITSCAM_ERR_NOT_FOUND, "event %lld: no such event", (long long)id);
        else status = sqlerr(st, "reading an event");
    }
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->mu);
    return status;
}

itscam_status it_store_events_count(it_store *st, int64_t *n) {
    *n = 0;
    if (!st) return it_err(ITSCAM_ERR_INVALID_ARG, "events count: NULL store");
    pthread_mutex_lock(&st->mu);
    sqlite3_stmt *s = NULL;
    itscam_status status = ITSCAM_OK;
    if (sqlite3_prepare_v2(st->db, "SELECT count(*) FROM events", -1, &s, NULL) != SQLITE_OK ||
        sqlite3_step(s) != SQLITE_ROW)
        status = sqlerr(st, "counting events");
    else
        *n = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->mu);
    return status;
}

itscam_status it_store_counts(it_store *st, const char *camera, double since, double until, double bucket_s,
                              it_count_row **rows, int *n) {
    *rows = NULL, *n = 0;
    if (!st || !camera || !*camera || !(bucket_s >= 1) || !(until > since) || since < 0)
        return it_err(ITSCAM_ERR_INVALID_ARG, "counts: a camera, since < until and a bucket of 1 s or more are needed");
    /* CAST truncates toward zero, which is floor for the non-negative times allowed here. */
    static const char sql[] =
        "SELECT CAST(time / ?4 AS INTEGER) AS b, json_extract(details, '$.line') AS line, class, "
        "json_extract(details, '$.direction') AS dir, count(*) FROM events "
        "WHERE camera = ?1 AND time >= ?2 AND time < ?3 AND type = 'line_cross' "
        "GROUP BY b, line, class, dir ORDER BY b, line, class, dir";
    pthread_mutex_lock(&st->mu);
    sqlite3_stmt *s = NULL;
    itscam_status status = ITSCAM_OK;
    it_count_row *r = NULL;
    int k = 0, cap = 0, rc = SQLITE_DONE;
    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK) {
        status = sqlerr(st, "counting line crossings");
        goto done;
    }
    sqlite3_bind_text(s, 1, camera, -1, SQLITE_STATIC);
    sqlite3_bind_double(s, 2, since);
    sqlite3_bind_double(s, 3, until);
    sqlite3_bind_double(s, 4, bucket_s);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (k == COUNTS_MAX) {
            status = it_err(ITSCAM_ERR_INVALID_ARG, "counts: more than %d rows; use a larger bucket or a shorter range",
                            COUNTS_MAX);
            break;
        }
        if (k == cap) {
            cap = cap ? 2 * cap : 64;
            it_count_row *g = it_realloc(r, (size_t)cap * sizeof *g);
            if (!g) {
                status = it_err(ITSCAM_ERR_NOMEM, "counts: out of memory");
                break;
            }
            r = g;
        }
        it_count_row *o = &r[k++];
        o->bucket_start = (double)sqlite3_column_int64(s, 0) * bucket_s;
        copy_col(s, 1, o->line, sizeof o->line);
        copy_col(s, 2, o->class_name, sizeof o->class_name);
        copy_col(s, 3, o->direction, sizeof o->direction);
        o->count = sqlite3_column_int64(s, 4);
    }
    if (status == ITSCAM_OK && rc != SQLITE_ROW && rc != SQLITE_DONE) status = sqlerr(st, "counting line crossings");
done:
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->mu);
    if (status != ITSCAM_OK) {
        it_free(r);
        return status;
    }
    if (!k) it_free(r), r = NULL;
    *rows = r, *n = k;
    return ITSCAM_OK;
}

/* ---- zone occupancy ---- */

static int sample_valid(const it_occupancy_sample *o) {
    return memchr(o->camera, 0, sizeof o->camera) && memchr(o->zone, 0, sizeof o->zone) &&
           memchr(o->class_name, 0, sizeof o->class_name) && o->camera[0] && o->zone[0] && o->count >= 0;
}

itscam_status it_store_occupancy_insert(it_store *st, const it_occupancy_sample *o, int n) {
    if (!st || n < 0 || (n && !o)) return it_err(ITSCAM_ERR_INVALID_ARG, "occupancy insert: bad arguments");
    for (int i = 0; i < n; i++)
        if (!sample_valid(&o[i]))
            return it_err(ITSCAM_ERR_INVALID_ARG,
                          "occupancy insert: sample %d lacks a camera or zone, has a negative count or an unterminated "
                          "field", i);
    if (!n) return ITSCAM_OK;
    pthread_mutex_lock(&st->mu);
    itscam_status s = ITSCAM_OK;
    if (!st->occ_insert &&
        sqlite3_prepare_v3(st->db, "INSERT INTO occupancy (camera, zone, class, time, count) VALUES (?1, ?2, ?3, ?4, ?5)",
                           -1, SQLITE_PREPARE_PERSISTENT, &st->occ_insert, NULL) != SQLITE_OK) {
        s = sqlerr(st, "preparing the occupancy insert");
        goto out;
    }
    if (sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        s = sqlerr(st, "inserting occupancy");
        goto out;
    }
    for (int i = 0; i < n && s == ITSCAM_OK; i++) {
        sqlite3_stmt *q = st->occ_insert;
        sqlite3_bind_text(q, 1, o[i].camera, -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 2, o[i].zone, -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 3, o[i].class_name, -1, SQLITE_STATIC);
        sqlite3_bind_double(q, 4, o[i].time);
        sqlite3_bind_int(q, 5, o[i].count);
        if (sqlite3_step(q) != SQLITE_DONE) s = sqlerr(st, "inserting an occupancy sample");
        sqlite3_reset(q);
        sqlite3_clear_bindings(q);
    }
    if (s == ITSCAM_OK && sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        s = sqlerr(st, "committing occupancy");
    if (s != ITSCAM_OK) sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
out:
    pthread_mutex_unlock(&st->mu);
    return s;
}

itscam_status it_store_occupancy(it_store *st, const char *camera, double since, double until, double bucket_s,
                                 it_occupancy_row **rows, int *n) {
    *rows = NULL, *n = 0;
    if (!st || !camera || !*camera || !(bucket_s >= 1) || !(until > since) || since < 0)
        return it_err(ITSCAM_ERR_INVALID_ARG,
                      "occupancy: a camera, since < until and a bucket of 1 s or more are needed");
    static const char sql[] =
        "SELECT CAST(time / ?4 AS INTEGER) AS b, zone, class, count(*), avg(count), max(count) FROM occupancy "
        "WHERE camera = ?1 AND time >= ?2 AND time < ?3 GROUP BY b, zone, class ORDER BY b, zone, class";
    pthread_mutex_lock(&st->mu);
    sqlite3_stmt *s = NULL;
    itscam_status status = ITSCAM_OK;
    it_occupancy_row *r = NULL;
    int k = 0, cap = 0, rc = SQLITE_DONE;
    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK) {
        status = sqlerr(st, "reading occupancy");
        goto done;
    }
    sqlite3_bind_text(s, 1, camera, -1, SQLITE_STATIC);
    sqlite3_bind_double(s, 2, since);
    sqlite3_bind_double(s, 3, until);
    sqlite3_bind_double(s, 4, bucket_s);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (k == COUNTS_MAX) {
            status = it_err(ITSCAM_ERR_INVALID_ARG,
                            "occupancy: more than %d rows; use a larger bucket or a shorter range", COUNTS_MAX);
            break;
        }
        if (k == cap) {
            cap = cap ? 2 * cap : 64;
            it_occupancy_row *g = it_realloc(r, (size_t)cap * sizeof *g);
            if (!g) {
                status = it_err(ITSCAM_ERR_NOMEM, "occupancy: out of memory");
                break;
            }
            r = g;
        }
        it_occupancy_row *o = &r[k++];
        o->bucket_start = (double)sqlite3_column_int64(s, 0) * bucket_s;
        copy_col(s, 1, o->zone, sizeof o->zone);
        copy_col(s, 2, o->class_name, sizeof o->class_name);
        o->samples = sqlite3_column_int64(s, 3);
        o->mean = sqlite3_column_double(s, 4);
        o->max = sqlite3_column_int64(s, 5);
    }
    if (status == ITSCAM_OK && rc != SQLITE_ROW && rc != SQLITE_DONE) status = sqlerr(st, "reading occupancy");
done:
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->mu);
    if (status != ITSCAM_OK || !k) {
        it_free(r);
        return status;
    }
    *rows = r, *n = k;
    return ITSCAM_OK;
}

itscam_status it_store_occupancy_retain(it_store *st, double max_age_s, double now, int64_t *deleted) {
    if (deleted) *deleted = 0;
    if (!st) return it_err(ITSCAM_ERR_INVALID_ARG, "occupancy retention: NULL store");
    if (max_age_s <= 0) return ITSCAM_OK;
    char sql[160];
    snprintf(sql, sizeof sql,
             "DELETE FROM occupancy WHERE rowid IN (SELECT rowid FROM occupancy WHERE time < ?1 LIMIT %d)",
             IT_EVENTS_RETAIN_STEP);
    int64_t total = 0;
    for (;;) {
        /* One small step per transaction (an autocommit statement), the lock released in
         * between: a writer waits for one step at most. */
        pthread_mutex_lock(&st->mu);
        sqlite3_stmt *s = NULL;
        int ok = sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) == SQLITE_OK;
        if (ok) {
            sqlite3_bind_double(s, 1, now - max_age_s);
            ok = sqlite3_step(s) == SQLITE_DONE;
        }
        int got = ok ? sqlite3_changes(st->db) : 0;
        if (!ok) sqlerr(st, "occupancy retention");
        sqlite3_finalize(s);
        pthread_mutex_unlock(&st->mu);
        if (!ok) return ITSCAM_ERR_IO;
        total += got;
        if (got < IT_EVENTS_RETAIN_STEP) break;
    }
    if (deleted) *deleted = total;
    return ITSCAM_OK;
}

/* ---- retention ---- */

/* Delete a snapshot file and its date folder when that empties it (rmdir refuses a
 * folder that is not empty). A path it_snapshot_resolve refuses is left alone: the store
 * never deletes a file outside STORAGE_DIR/snapshots. */
static void remove_snapshot(const char *dir, const char *rel) {
    char abs[PATH_MAX];
    if (!rel[0]) return;
    itscam_status s = it_snapshot_resolve(dir, rel, abs, sizeof abs);
    if (s == ITSCAM_ERR_INVALID_ARG) it_log(ITSCAM_LOG_WARN, "snapshot '%s' not deleted: %s", rel, itscam_last_error());
    if (s != ITSCAM_OK || unlink(abs) != 0) return;
    char *slash = strrchr(abs, '/');
    if (slash) *slash = 0, rmdir(abs);
}

/* One step: delete the events `pick` selects (at most IT_EVENTS_RETAIN_STEP; ?1 bound to
 * arg), their outbox rows and their snapshots. Returns the number deleted, or -1. */
static int64_t retain_step(it_store *st, const char *pick, double arg_d, int64_t arg_i, int use_int) {
    char(*snaps)[IT_EVENT_SNAPSHOT_MAX + 1] = it_malloc(IT_EVENTS_RETAIN_STEP * sizeof *snaps);
    int64_t *ids = it_malloc(IT_EVENTS_RETAIN_STEP * sizeof *ids);
    if (!snaps || !ids) {
        it_free(snaps), it_free(ids);
        it_err(ITSCAM_ERR_NOMEM, "retention: out of memory");
        return -1;
    }
    int n = 0, ok = 1;
    pthread_mutex_lock(&st->mu);
    sqlite3_stmt *sel = NULL, *del = NULL, *dob = NULL;
    if (sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(st->db, pick, -1, &sel, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(st->db, "DELETE FROM events WHERE id = ?1", -1, &del, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(st->db, "DELETE FROM outbox WHERE event_id = ?1", -1, &dob, NULL) != SQLITE_OK) {
        ok = 0;
    } else {
        if (use_int) sqlite3_bind_int64(sel, 1, arg_i);
        else sqlite3_bind_double(sel, 1, arg_d);
        int rc;
        while (n < IT_EVENTS_RETAIN_STEP && (rc = sqlite3_step(sel)) == SQLITE_ROW) {
            ids[n] = sqlite3_column_int64(sel, 0);
            copy_col(sel, 1, snaps[n], sizeof snaps[n]);
            n++;
        }
        sqlite3_finalize(sel), sel = NULL;
        for (int i = 0; i < n && ok; i++) {
            sqlite3_bind_int64(del, 1, ids[i]);
            sqlite3_bind_int64(dob, 1, ids[i]);
            ok = sqlite3_step(del) == SQLITE_DONE && sqlite3_step(dob) == SQLITE_DONE;
            sqlite3_reset(del), sqlite3_reset(dob);
        }
    }
    if (ok && sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) ok = 0;
    if (!ok) {
        sqlerr(st, "retention");
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    }
    sqlite3_finalize(sel), sqlite3_finalize(del), sqlite3_finalize(dob);
    pthread_mutex_unlock(&st->mu);
    /* Files go after the commit: a crash in between leaves an orphan file, never a row
     * that points to nothing. */
    for (int i = 0; ok && i < n; i++) remove_snapshot(st->dir, snaps[i]);
    it_free(snaps), it_free(ids);
    return ok ? n : -1;
}

itscam_status it_store_events_retain(it_store *st, double max_age_s, int64_t max_events, double now,
                                     int64_t *deleted) {
    if (deleted) *deleted = 0;
    if (!st) return it_err(ITSCAM_ERR_INVALID_ARG, "retention: NULL store");
    int64_t total = 0, got;
    if (max_age_s > 0) {
        char pick[160];
        snprintf(pick, sizeof pick, "SELECT id, snapshot FROM events WHERE time < ?1 ORDER BY time LIMIT %d",
                 IT_EVENTS_RETAIN_STEP);
        while ((got = retain_step(st, pick, now - max_age_s, 0, 0)) > 0) total += got;
        if (got < 0) return ITSCAM_ERR_IO;
    }
    if (max_events > 0) {
        int64_t have;
        itscam_status s = it_store_events_count(st, &have);
        if (s != ITSCAM_OK) return s;
        int64_t excess = have - max_events;
        while (excess > 0) {
            int64_t step = excess < IT_EVENTS_RETAIN_STEP ? excess : IT_EVENTS_RETAIN_STEP;
            got = retain_step(st, "SELECT id, snapshot FROM events ORDER BY id LIMIT ?1", 0, step, 1);
            if (got < 0) return ITSCAM_ERR_IO;
            if (!got) break;
            total += got, excess -= got;
        }
    }
    if (deleted) *deleted = total;
    return it_store_occupancy_retain(st, max_age_s, now, NULL);
}

/* ---- the asynchronous writer ---- */

struct it_event_writer {
    it_store *st;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t wake, done; /* wake: the thread; done: flushers */
    it_store_event *ring;
    int cap, head, count;      /* ring[head .. head+count) */
    it_occupancy_sample *occ;  /* the same for occupancy samples, cap of them */
    int occ_head, occ_count;
    int stop, flush_wanted;
    uint64_t pushed, dropped, written, failed;
    uint64_t occ_pushed, occ_dropped, occ_written, occ_failed;
    it_store_event *batch;     /* the thread's copies, written outside mu */
    it_occupancy_sample *occ_batch;
    int64_t *ids;
    it_event_committed_fn on_commit;
    void *on_commit_arg;
};

void it_event_writer_on_commit(it_event_writer *w, it_event_committed_fn fn, void *arg) {
    pthread_mutex_lock(&w->mu);
    w->on_commit = fn, w->on_commit_arg = arg;
    pthread_mutex_unlock(&w->mu);
}

static void *writer_main(void *arg) {
    it_event_writer *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        if (w->count < WRITER_BATCH && w->occ_count < WRITER_BATCH && !w->stop && !w->flush_wanted) {
            struct timespec ts;
            it_deadline_in(&ts, WRITER_PERIOD_MS);
            pthread_cond_timedwait(&w->wake, &w->mu, &ts);
        }
        if (!w->count && !w->occ_count) {
            w->flush_wanted = 0;
            pthread_cond_broadcast(&w->done);
            if (w->stop) break;
            continue;
        }
        int n = w->count < WRITER_BATCH ? w->count : WRITER_BATCH;
        for (int i = 0; i < n; i++) w->batch[i] = w->ring[(w->head + i) % w->cap];
        w->head = (w->head + n) % w->cap;
        w->count -= n;
        int no = w->occ_count < WRITER_BATCH ? w->occ_count : WRITER_BATCH;
        for (int i = 0; i < no; i++) w->occ_batch[i] = w->occ[(w->occ_head + i) % w->cap];
        w->occ_head = (w->occ_head + no) % w->cap;
        w->occ_count -= no;
        it_event_committed_fn fn = w->on_commit;
        void *fn_arg = w->on_commit_arg;
        pthread_mutex_unlock(&w->mu);
        itscam_status s = n ? it_store_events_insert(w->st, w->batch, n, w->ids) : ITSCAM_OK;
        if (s != ITSCAM_OK) {
            it_log(ITSCAM_LOG_ERROR, "event writer: %d events lost: %s", n, itscam_last_error());
            for (int i = 0; i < n; i++) remove_snapshot(w->st->dir, w->batch[i].snapshot);
        } else if (fn && n) {
            for (int i = 0; i < n; i++) w->batch[i].id = w->ids[i];
            fn(fn_arg, w->batch, n);
        }
        itscam_status so = no ? it_store_occupancy_insert(w->st, w->occ_batch, no) : ITSCAM_OK;
        if (so != ITSCAM_OK) it_log(ITSCAM_LOG_ERROR, "event writer: %d occupancy samples lost: %s", no, itscam_last_error());
        pthread_mutex_lock(&w->mu);
        if (s == ITSCAM_OK) w->written += (uint64_t)n;
        else w->failed += (uint64_t)n;
        if (so == ITSCAM_OK) w->occ_written += (uint64_t)no;
        else w->occ_failed += (uint64_t)no;
        pthread_cond_broadcast(&w->done);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

static void writer_free(it_event_writer *w) {
    it_free(w->ring), it_free(w->occ), it_free(w->batch), it_free(w->occ_batch), it_free(w->ids), it_free(w);
}

itscam_status it_event_writer_start(it_store *st, int capacity, it_event_writer **out) {
    *out = NULL;
    if (!st || capacity < 0 || capacity > (1 << 20))
        return it_err(ITSCAM_ERR_INVALID_ARG, "event writer: a store and a capacity of 0 to %d are needed", 1 << 20);
    it_event_writer *w = it_calloc(1, sizeof *w);
    if (!w) return it_err(ITSCAM_ERR_NOMEM, "event writer: out of memory");
    w->st = st;
    w->cap = capacity ? capacity : 8192;
    w->ring = it_malloc((size_t)w->cap * sizeof *w->ring);
    w->occ = it_malloc((size_t)w->cap * sizeof *w->occ);
    w->batch = it_malloc(WRITER_BATCH * sizeof *w->batch);
    w->occ_batch = it_malloc(WRITER_BATCH * sizeof *w->occ_batch);
    w->ids = it_malloc(WRITER_BATCH * sizeof *w->ids);
    if (!w->ring || !w->occ || !w->batch || !w->occ_batch || !w->ids) {
        writer_free(w);
        return it_err(ITSCAM_ERR_NOMEM, "event writer: out of memory for %d events", capacity);
    }
    pthread_mutex_init(&w->mu, NULL);
    it_cond_init_monotonic(&w->wake);
    it_cond_init_monotonic(&w->done);
    if (pthread_create(&w->thread, NULL, writer_main, w)) {
        pthread_cond_destroy(&w->wake), pthread_cond_destroy(&w->done), pthread_mutex_destroy(&w->mu);
        writer_free(w);
        return it_err(ITSCAM_ERR_INTERNAL, "event writer: cannot start its thread");
    }
    *out = w;
    return ITSCAM_OK;
}

int it_event_writer_push(it_event_writer *w, const it_store_event *ev) {
    pthread_mutex_lock(&w->mu);
    if (w->count == w->cap || w->stop) {
        w->dropped++;
        pthread_mutex_unlock(&w->mu);
        /* Rare (the queue is full): the file would otherwise stay with no row. */
        if (memchr(ev->snapshot, 0, sizeof ev->snapshot)) remove_snapshot(w->st->dir, ev->snapshot);
        return -1;
    }
    w->ring[(w->head + w->count) % w->cap] = *ev;
    w->count++;
    w->pushed++;
    if (w->count == WRITER_BATCH) pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->mu);
    return 0;
}

/* snprintf into a fixed field: 0 when s fits (NULL counts as ""). */
static int fill(char *dst, size_t cap, const char *s) {
    return snprintf(dst, cap, "%s", s ? s : "") >= (int)cap;
}

int it_event_writer_push_occupancy(it_event_writer *w, const char *camera, const char *zone, const char *class_name,
                                   double t, int count) {
    it_occupancy_sample o;
    int bad = fill(o.camera, sizeof o.camera, camera) || fill(o.zone, sizeof o.zone, zone) ||
              fill(o.class_name, sizeof o.class_name, class_name) || !o.camera[0] || !o.zone[0] || count < 0;
    o.time = t, o.count = count;
    pthread_mutex_lock(&w->mu);
    if (bad || w->occ_count == w->cap || w->stop) {
        w->occ_dropped++;
        pthread_mutex_unlock(&w->mu);
        return -1;
    }
    w->occ[(w->occ_head + w->occ_count) % w->cap] = o;
    w->occ_count++;
    w->occ_pushed++;
    if (w->occ_count == WRITER_BATCH) pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->mu);
    return 0;
}

void it_event_writer_flush(it_event_writer *w) {
    pthread_mutex_lock(&w->mu);
    uint64_t target = w->pushed, occ_target = w->occ_pushed;
    while (w->written + w->failed < target || w->occ_written + w->occ_failed < occ_target) {
        w->flush_wanted = 1;
        pthread_cond_signal(&w->wake);
        struct timespec ts;
        it_deadline_in(&ts, 100);
        pthread_cond_timedwait(&w->done, &w->mu, &ts);
    }
    pthread_mutex_unlock(&w->mu);
}

void it_event_writer_stats_get(it_event_writer *w, it_event_writer_stats *s) {
    pthread_mutex_lock(&w->mu);
    s->pushed = w->pushed, s->dropped = w->dropped, s->written = w->written, s->failed = w->failed;
    s->occupancy_pushed = w->occ_pushed, s->occupancy_dropped = w->occ_dropped;
    s->occupancy_written = w->occ_written, s->occupancy_failed = w->occ_failed;
    pthread_mutex_unlock(&w->mu);
}

void it_event_writer_stop(it_event_writer *w) {
    if (!w) return;
    pthread_mutex_lock(&w->mu);
    w->stop = 1;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    pthread_cond_destroy(&w->wake), pthread_cond_destroy(&w->done), pthread_mutex_destroy(&w->mu);
    writer_free(w);
}

json_t *it_store_event_json(const it_store_event *e) {
    json_t *o = json_object();
    if (!o) return NULL;
    json_object_set_new(o, "id", json_integer((json_int_t)e->id));
    json_object_set_new(o, "camera", json_string(e->camera));
    json_object_set_new(o, "type", json_string(e->type));
    json_object_set_new(o, "time", json_real(e->time));
    json_object_set_new(o, "track_id", e->track_id > 0 ? json_integer((json_int_t)e->track_id) : json_null());
    json_object_set_new(o, "class_id", e->class_id >= 0 ? json_integer(e->class_id) : json_null());
    json_object_set_new(o, "class", e->class_name[0] ? json_string(e->class_name) : json_null());
    json_object_set_new(o, "score", e->score >= 0 ? json_real(e->score) : json_null());
    json_t *box = json_null();
    if (e->has_box && (box = json_array()))
        for (int i = 0; i < 4; i++) json_array_append_new(box, json_real(e->box[i]));
    json_object_set_new(o, "box", box ? box : json_null());
    json_t *d = e->details[0] ? json_loads(e->details, JSON_REJECT_DUPLICATES, NULL) : NULL;
    if (d && !json_is_object(d)) json_decref(d), d = NULL;
    json_object_set_new(o, "details", d ? d : json_object());
    json_object_set_new(o, "snapshot", json_boolean(e->snapshot[0] != 0));
    return o;
}

char *it_store_event_text(const it_store_event *e, size_t *len) {
    json_t *j = it_store_event_json(e);
    char *t = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(15)) : NULL;
    json_decref(j);
    if (len) *len = t ? strlen(t) : 0;
    return t;
}

/* ---- snapshots ---- */

static int type_ok(const char *t) {
    size_t n = t ? strlen(t) : 0;
    if (n < 1 || n > IT_EVENT_TYPE_MAX) return 0;
    for (size_t i = 0; i < n; i++)
        if (!((t[i] >= 'a' && t[i] <= 'z') || (t[i] >= '0' && t[i] <= '9') || t[i] == '_')) return 0;
    return 1;
}

/* mkdir of one level, mode 0700; an existing folder is fine. */
static int mkdir_one(const char *p) {
    if (mkdir(p, 0700) == 0 || errno == EEXIST) return 0;
    it_err(ITSCAM_ERR_IO, "%s: cannot create: %s", p, strerror(errno));
    return -1;
}

int it_snapshot_path(const char *storage_dir, const char *camera, const char *type, int64_t track_id, double t,
                     char *rel, size_t rellen) {
    if (rel && rellen) rel[0] = 0;
    if (!storage_dir || !*storage_dir || !rel || rellen < 2 || !camera || !it_cam_id_valid(camera) || !type_ok(type) ||
        track_id < 0 || !(t >= 0 && t < 253402300800.0) /* 10000-01-01 */) {
        it_err(ITSCAM_ERR_INVALID_ARG,
               "snapshot path: a storage dir, a camera id, a type of [a-z0-9_]{1,31}, a track id >= 0 and a time in "
               "unix seconds are needed");
        return -1;
    }
    time_t secs = (time_t)floor(t);
    int ms = (int)((t - (double)secs) * 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char day[16], folder[PATH_MAX], abs[PATH_MAX];
    snprintf(day, sizeof day, "%04d-%02d-%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
    /* Each level on its own: storage_dir exists (the store made it), the rest may not. */
    const char *levels[] = {IT_SNAPSHOT_DIR, camera, day};
    size_t len = strlen(storage_dir);
    if (len + 1 + strlen(IT_SNAPSHOT_DIR) + 1 + strlen(camera) + 1 + strlen(day) >= sizeof folder) {
        it_err(ITSCAM_ERR_INVALID_ARG, "snapshot path: storage dir '%.64s...' too long", storage_dir);
        return -1;
    }
    memcpy(folder, storage_dir, len + 1);
    for (int i = 0; i < 3; i++) {
        len += (size_t)snprintf(folder + len, sizeof folder - len, "/%s", levels[i]);
        if (mkdir_one(folder)) return -1;
    }
    for (int k = 1; k <= 1000; k++) {
        char suffix[16] = "";
        if (k > 1) snprintf(suffix, sizeof suffix, "-%d", k);
        int n = snprintf(rel, rellen, IT_SNAPSHOT_DIR "/%s/%s/%02d%02d%02d.%03d-%s-%lld%s.jpg", camera, day, tm.tm_hour,
                         tm.tm_min, tm.tm_sec, ms, type, (long long)track_id, suffix);
        if (n >= (int)rellen || n > IT_EVENT_SNAPSHOT_MAX ||
            snprintf(abs, sizeof abs, "%s/%s", storage_dir, rel) >= (int)sizeof abs) {
            rel[0] = 0;
            it_err(ITSCAM_ERR_INVALID_ARG, "snapshot path: no room for the path (%d bytes)", n);
            return -1;
        }
        /* O_EXCL reserves the name against another thread or process making the same. */
        int fd = open(abs, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd >= 0) {
            close(fd);
            return 0;
        }
        if (errno != EEXIST) {
            it_err(ITSCAM_ERR_IO, "%s: cannot create: %s", abs, strerror(errno));
            rel[0] = 0;
            return -1;
        }
    }
    rel[0] = 0;
    it_err(ITSCAM_ERR_IO, "snapshot path: 1000 snapshots of camera %s, type %s, track %lld in one millisecond", camera,
           type, (long long)track_id);
    return -1;
}

/* rel has the convention's shape: "snapshots/" then components of [A-Za-z0-9._-] not
 * starting with '.', separated by single slashes, ending in ".jpg". */
static int snapshot_shape_ok(const char *rel) {
    size_t n = strlen(rel), pre = strlen(IT_SNAPSHOT_DIR "/");
    if (n <= pre + 4 || n > IT_EVENT_SNAPSHOT_MAX || strncmp(rel, IT_SNAPSHOT_DIR "/", pre) ||
        strcmp(rel + n - 4, ".jpg"))
        return 0;
    int start = 1; /* at the first byte of a component */
    for (size_t i = pre; i < n; i++) {
        char c = rel[i];
        if (c == '/') {
            if (start) return 0; /* an empty component */
            start = 1;
            continue;
        }
        if (start && c == '.') return 0; /* ".", "..", hidden names */
        start = 0;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-'))
            return 0;
    }
    return 1;
}

itscam_status it_snapshot_resolve(const char *storage_dir, const char *rel, char *abs, size_t abslen) {
    if (abs && abslen) abs[0] = 0;
    if (!storage_dir || !rel || !abs || !abslen) return it_err(ITSCAM_ERR_INVALID_ARG, "snapshot: bad arguments");
    if (!snapshot_shape_ok(rel))
        return it_err(ITSCAM_ERR_INVALID_ARG, "snapshot path '%.80s' is not of the form " IT_SNAPSHOT_DIR "/.../NAME.jpg",
                      rel);
    char joined[PATH_MAX], root[PATH_MAX], real_root[PATH_MAX], real[PATH_MAX];
    if (snprintf(joined, sizeof joined, "%s/%s", storage_dir, rel) >= (int)sizeof joined ||
        snprintf(root, sizeof root, "%s/" IT_SNAPSHOT_DIR, storage_dir) >= (int)sizeof root)
        return it_err(ITSCAM_ERR_INVALID_ARG, "snapshot path too long");
    /* The shape rules out "..": what is left is a symbolic link placed under the folder. */
    if (!realpath(root, real_root) || !realpath(joined, real))
        return it_err(errno == ENOENT || errno == ENOTDIR ? ITSCAM_ERR_NOT_FOUND : ITSCAM_ERR_IO,
                      "snapshot %s: %s", rel, strerror(errno));
    size_t rn = strlen(real_root);
    if (strncmp(real, real_root, rn) || real[rn] != '/')
        return it_err(ITSCAM_ERR_INVALID_ARG, "snapshot %s leads outside %s", rel, real_root);
    if (snprintf(abs, abslen, "%s", real) >= (int)abslen) {
        abs[0] = 0;
        return it_err(ITSCAM_ERR_INVALID_ARG, "snapshot path too long");
    }
    return ITSCAM_OK;
}
