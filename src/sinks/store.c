/* The embedded SQLite store: schema migrations, cameras with tombstones, and the rule
 * that merges the store's cameras with the configuration's. */
#include "sinks/store.h"
#include "sinks/store_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DB_NAME "itscam.db"
/* Rows read back at most: live cameras are bounded by IT_CAM_MAX, tombstones by this. */
#define MAX_ROWS 65536

/* The schema, one step per version: PRAGMA user_version is the number of steps applied.
 * Steps are never edited once released; a change is a new line at the end. */
static const char *const migrations[] = {
    /* 1: cameras created, changed or deleted through the API */
    "CREATE TABLE cameras (id TEXT PRIMARY KEY NOT NULL, def TEXT NOT NULL, "
    "deleted INTEGER NOT NULL DEFAULT 0, updated_at REAL NOT NULL)",
    /* 2: events (src/sinks/events.c). AUTOINCREMENT: an id is never reused, even after
     * retention deleted the newest rows, so keyset cursors and Last-Event-ID stay valid.
     * The box is four columns (NULL when the event has none). events_time serves
     * retention by age; the outbox holds one row per event and publishing target until
     * that target acknowledged it (at-least-once delivery). */
    "CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, camera TEXT NOT NULL, type TEXT NOT NULL, "
    "time REAL NOT NULL, track_id INTEGER, class_id INTEGER, class TEXT, score REAL, "
    "x1 REAL, y1 REAL, x2 REAL, y2 REAL, details TEXT, snapshot TEXT);"
    "CREATE INDEX events_camera_time ON events (camera, time);"
    "CREATE INDEX events_type_time ON events (type, time);"
    "CREATE INDEX events_time ON events (time);"
    "CREATE TABLE outbox (event_id INTEGER NOT NULL, target TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, "
    "PRIMARY KEY (event_id, target)) WITHOUT ROWID",
    /* 3: zone occupancy samples (events.c): one row per camera, zone and class ('' for
     * all classes together) every few seconds, averaged per bucket by the counts route.
     * occupancy_camera_time serves those queries, occupancy_time retention by age. */
    "CREATE TABLE occupancy (camera TEXT NOT NULL, zone TEXT NOT NULL, class TEXT NOT NULL DEFAULT '', "
    "time REAL NOT NULL, count INTEGER NOT NULL);"
    "CREATE INDEX occupancy_camera_time ON occupancy (camera, time);"
    "CREATE INDEX occupancy_time ON occupancy (time)",
};
#define N_MIGRATIONS ((int)(sizeof migrations / sizeof *migrations))


static void seterr(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static double wall_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* mkdir -p with mode 0700 for every folder it creates. */
static int make_dirs(const char *dir, char *err, size_t errlen) {
    char p[PATH_MAX];
    size_t len = strlen(dir);
    if (!len || len >= sizeof p) {
        seterr(err, errlen, "storage dir '%.64s': %s", dir, len ? "path too long" : "empty");
        return -1;
    }
    memcpy(p, dir, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (p[i] != '/' && p[i] != 0) continue;
        char saved = p[i];
        p[i] = 0;
        if (mkdir(p, 0700) && errno != EEXIST) {
            seterr(err, errlen, "%s: cannot create: %s", p, strerror(errno));
            return -1;
        }
        p[i] = saved;
    }
    struct stat sb;
    if (stat(dir, &sb) || !S_ISDIR(sb.st_mode)) {
        seterr(err, errlen, "%s: not a folder", dir);
        return -1;
    }
    return 0;
}

static int exec_sql(it_store *st, const char *sql, char *err, size_t errlen) {
    char *msg = NULL;
    if (sqlite3_exec(st->db, sql, NULL, NULL, &msg) == SQLITE_OK) return 0;
    seterr(err, errlen, "%s: %s", st->path, msg ? msg : sqlite3_errmsg(st->db));
    sqlite3_free(msg);
    return -1;
}

/* One integer from a one-row statement (PRAGMA user_version). */
static int query_int(it_store *st, const char *sql, int *out, char *err, size_t errlen) {
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(st->db, sql, -1, &s, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) *out = sqlite3_column_int(s, 0);
    else seterr(err, errlen, "%s: %s", st->path, sqlite3_errmsg(st->db));
    sqlite3_finalize(s);
    return rc == SQLITE_ROW ? 0 : -1;
}

/* quick_check reads every page: a damaged file is refused at open, not halfway through
 * a request. The store is small (cameras), so this costs milliseconds. */
static int check_integrity(it_store *st, char *err, size_t errlen) {
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(st->db, "PRAGMA quick_check", -1, &s, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_step(s);
    const unsigned char *t = rc == SQLITE_ROW ? sqlite3_column_text(s, 0) : NULL;
    int ok = t && !strcmp((const char *)t, "ok");
    if (!ok)
        seterr(err, errlen, "%s: not a usable itscam database (%s); move it away to start with an empty one",
               st->path, t ? (const char *)t : sqlite3_errmsg(st->db));
    sqlite3_finalize(s);
    return ok ? 0 : -1;
}

static int migrate(it_store *st, char *err, size_t errlen) {
    int version;
    if (query_int(st, "PRAGMA user_version", &version, err, errlen)) return -1;
    if (version > N_MIGRATIONS || version < 0) {
        seterr(err, errlen, "%s: schema version %d is newer than this itscam knows (%d); use a newer itscam",
               st->path, version, N_MIGRATIONS);
        return -1;
    }
    for (int v = version; v < N_MIGRATIONS; v++) {
        char bump[64];
        snprintf(bump, sizeof bump, "PRAGMA user_version = %d", v + 1);
        if (exec_sql(st, "BEGIN IMMEDIATE", err, errlen)) return -1;
        if (exec_sql(st, migrations[v], err, errlen) || exec_sql(st, bump, err, errlen)) {
            sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
            return -1;
        }
        if (exec_sql(st, "COMMIT", err, errlen)) return -1;
    }
    return 0;
}

static void store_free(it_store *st) {
    sqlite3_finalize(st->put);
    sqlite3_finalize(st->del);
    sqlite3_finalize(st->list);
    it_store_events_finalize(st);
    sqlite3_close(st->db);
    pthread_mutex_destroy(&st->mu);
    it_free(st);
}

int it_store_open(const char *dir, it_store **out, char *err, size_t errlen) {
    *out = NULL;
    if (!dir || make_dirs(dir, err, errlen)) {
        if (!dir) seterr(err, errlen, "no storage dir");
        return -1;
    }
    it_store *st = it_calloc(1, sizeof *st);
    if (!st) {
        seterr(err, errlen, "out of memory");
        return -1;
    }
    snprintf(st->dir, sizeof st->dir, "%s", dir);
    if (snprintf(st->path, sizeof st->path, "%s/%s", dir, DB_NAME) >= (int)sizeof st->path) {
        seterr(err, errlen, "%s: path too long", dir);
        it_free(st);
        return -1;
    }
    pthread_mutex_init(&st->mu, NULL);
    /* Create the file ourselves so that it is 0600 from the start (SQLite would use the
     * umask, and the rows hold camera credentials); its -wal and -shm files copy this mode. */
    int fd = open(st->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        seterr(err, errlen, "%s: %s", st->path, strerror(errno));
        store_free(st);
        return -1;
    }
    close(fd);
    if (sqlite3_open_v2(st->path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        seterr(err, errlen, "%s: %s", st->path, st->db ? sqlite3_errmsg(st->db) : "out of memory");
        store_free(st);
        return -1;
    }
    sqlite3_busy_timeout(st->db, 5000);
    if (check_integrity(st, err, errlen) || exec_sql(st, "PRAGMA journal_mode = WAL", err, errlen) ||
        exec_sql(st, "PRAGMA synchronous = NORMAL", err, errlen) || migrate(st, err, errlen)) {
        store_free(st);
        return -1;
    }
    static const char put_sql[] =
        "INSERT INTO cameras (id, def, deleted, updated_at) VALUES (?1, ?2, 0, ?3) "
        "ON CONFLICT(id) DO UPDATE SET def = excluded.def, deleted = 0, updated_at = excluded.updated_at";
    static const char del_sql[] =
        "INSERT INTO cameras (id, def, deleted, updated_at) VALUES (?1, '{}', 1, ?2) "
        "ON CONFLICT(id) DO UPDATE SET deleted = 1, updated_at = excluded.updated_at";
    static const char list_sql[] = "SELECT id, def, deleted FROM cameras ORDER BY id";
    if (sqlite3_prepare_v2(st->db, put_sql, -1, &st->put, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(st->db, del_sql, -1, &st->del, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(st->db, list_sql, -1, &st->list, NULL) != SQLITE_OK) {
        seterr(err, errlen, "%s: %s", st->path, sqlite3_errmsg(st->db));
        store_free(st);
        return -1;
    }
    *out = st;
    return 0;
}

/* Run a bound write statement to its end and reset it; under st->mu. */
static itscam_status run_write(it_store *st, sqlite3_stmt *s, const char *what, const char *id) {
    int rc = sqlite3_step(s);
    itscam_status status = ITSCAM_OK;
    if (rc != SQLITE_DONE)
        status = it_err(ITSCAM_ERR_IO, "%s: %s camera '%s': %s", st->path, what, id, sqlite3_errmsg(st->db));
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return status;
}

itscam_status it_store_camera_put(it_store *st, const it_camdef *c) {
    if (!st || !c || !it_cam_id_valid(c->id)) return it_err(ITSCAM_ERR_INVALID_ARG, "store: a camera with a valid id is needed");
    json_t *j = it_camdef_to_json(c, 0);
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!text) return it_err(ITSCAM_ERR_NOMEM, "store: camera '%s': out of memory (or a URL that is not UTF-8)", c->id);
    pthread_mutex_lock(&st->mu);
    itscam_status s = ITSCAM_ERR_NOMEM;
    if (sqlite3_bind_text(st->put, 1, c->id, -1, SQLITE_TRANSIENT) == SQLITE_OK &&
        sqlite3_bind_text(st->put, 2, text, -1, SQLITE_TRANSIENT) == SQLITE_OK &&
        sqlite3_bind_double(st->put, 3, wall_s()) == SQLITE_OK)
        s = run_write(st, st->put, "writing", c->id);
    else
        s = it_err(ITSCAM_ERR_NOMEM, "%s: camera '%s': %s", st->path, c->id, sqlite3_errmsg(st->db)),
        sqlite3_reset(st->put);
    pthread_mutex_unlock(&st->mu);
    free(text);
    return s;
}

itscam_status it_store_camera_delete(it_store *st, const char *id) {
    if (!st || !it_cam_id_valid(id)) return it_err(ITSCAM_ERR_INVALID_ARG, "store: a valid camera id is needed");
    pthread_mutex_lock(&st->mu);
    itscam_status s;
    if (sqlite3_bind_text(st->del, 1, id, -1, SQLITE_TRANSIENT) == SQLITE_OK &&
        sqlite3_bind_double(st->del, 2, wall_s()) == SQLITE_OK)
        s = run_write(st, st->del, "deleting", id);
    else
        s = it_err(ITSCAM_ERR_NOMEM, "%s: camera '%s': %s", st->path, id, sqlite3_errmsg(st->db)),
        sqlite3_reset(st->del);
    pthread_mutex_unlock(&st->mu);
    return s;
}

itscam_status it_store_cameras(it_store *st, it_camdef **defs, int *n, it_cam_id **deleted, int *n_deleted) {
    *defs = NULL, *deleted = NULL, *n = 0, *n_deleted = 0;
    if (!st) return it_err(ITSCAM_ERR_INVALID_ARG, "store: NULL");
    it_camdef *d = NULL;
    it_cam_id *t = NULL;
    int nd = 0, nt = 0, cap_d = 0, cap_t = 0, rc;
    itscam_status s = ITSCAM_OK;
    pthread_mutex_lock(&st->mu);
    while ((rc = sqlite3_step(st->list)) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(st->list, 0);
        const char *def = (const char *)sqlite3_column_text(st->list, 1);
        int del = sqlite3_column_int(st->list, 2);
        if (nd + nt >= MAX_ROWS) {
            s = it_err(ITSCAM_ERR_IO, "%s: more than %d camera rows", st->path, MAX_ROWS);
            break;
        }
        if (!id || !it_cam_id_valid(id)) {
            s = it_err(ITSCAM_ERR_IO, "%s: a camera row with a bad id", st->path);
            break;
        }
        if (del) {
            if (nt == cap_t) {
                cap_t = cap_t ? 2 * cap_t : 16;
                it_cam_id *g = it_realloc(t, (size_t)cap_t * sizeof *g);
                if (!g) { s = it_err(ITSCAM_ERR_NOMEM, "store: out of memory"); break; }
                t = g;
            }
            snprintf(t[nt++], sizeof t[0], "%s", id);
            continue;
        }
        if (nd == cap_d) {
            cap_d = cap_d ? 2 * cap_d : 16;
            it_camdef *g = it_realloc(d, (size_t)cap_d * sizeof *g);
            if (!g) { s = it_err(ITSCAM_ERR_NOMEM, "store: out of memory"); break; }
            d = g;
        }
        json_error_t je;
        char why[512];
        json_t *j = def ? json_loads(def, 0, &je) : NULL;
        int bad = !j || it_camdef_from_json(j, 0, &d[nd], why, sizeof why) || strcmp(d[nd].id, id);
        json_decref(j);
        if (bad) {
            s = it_err(ITSCAM_ERR_IO, "%s: camera '%s': the stored definition does not read back (%s)", st->path, id,
                       !j ? je.text : why);
            break;
        }
        nd++;
    }
    if (s == ITSCAM_OK && rc != SQLITE_DONE)
        s = it_err(ITSCAM_ERR_IO, "%s: reading cameras: %s", st->path, sqlite3_errmsg(st->db));
    sqlite3_reset(st->list);
    pthread_mutex_unlock(&st->mu);
    if (s != ITSCAM_OK) {
        it_free(d);
        it_free(t);
        return s;
    }
    *defs = d, *n = nd, *deleted = t, *n_deleted = nt;
    return ITSCAM_OK;
}

const char *it_store_dir(const it_store *st) {
    return st->dir;
}

void it_store_close(it_store *st) {
    if (!st) return;
    store_free(st);
}

/* ---- the merge rule ---- */

static int has_id(const it_camdef *list, int n, const char *id) {
    for (int i = 0; i < n; i++)
        if (!strcmp(list[i].id, id)) return i;
    return -1;
}

static int is_deleted(const it_cam_id *deleted, int n, const char *id) {
    for (int i = 0; i < n; i++)
        if (!strcmp(deleted[i], id)) return 1;
    return 0;
}

itscam_status it_cameras_merge(const it_camdef *config, int nconfig, const it_camdef *db, int ndb,
                               const it_cam_id *deleted, int ndeleted, it_camdef **out, int *n) {
    *out = NULL, *n = 0;
    if (nconfig < 0 || ndb < 0 || ndeleted < 0) return it_err(ITSCAM_ERR_INVALID_ARG, "cameras merge: negative count");
    if (nconfig + ndb == 0) return ITSCAM_OK;
    it_camdef *m = it_malloc(((size_t)nconfig + (size_t)ndb) * sizeof *m);
    if (!m) return it_err(ITSCAM_ERR_NOMEM, "cameras merge: out of memory");
    int k = 0;
    for (int i = 0; i < nconfig; i++) {
        const char *id = config[i].id;
        if (is_deleted(deleted, ndeleted, id) || has_id(m, k, id) >= 0) continue;
        int at = has_id(db, ndb, id);
        m[k++] = at >= 0 ? db[at] : config[i];
    }
    for (int i = 0; i < ndb; i++)
        if (!is_deleted(deleted, ndeleted, db[i].id) && has_id(m, k, db[i].id) < 0) m[k++] = db[i];
    if (k > IT_CAM_MAX) {
        it_free(m);
        return it_err(ITSCAM_ERR_INVALID_ARG, "%d cameras between the configuration and the store; at most %d", k,
                      IT_CAM_MAX);
    }
    if (!k) {
        it_free(m);
        return ITSCAM_OK;
    }
    *out = m, *n = k;
    return ITSCAM_OK;
}
