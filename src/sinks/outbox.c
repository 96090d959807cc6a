/* The outbox's reading side: pending events of one target in id order, acknowledgement
 * by deletion, the backlog count, and the line counts publishers start their running
 * counts from. */
#include "sinks/outbox.h"
#include "sinks/store_priv.h"

#include <string.h>

/* The order it_store_event_read reads. */
#define EV_COLS \
    "e.id, e.camera, e.type, e.time, e.track_id, e.class_id, e.class, e.score, e.x1, e.y1, e.x2, e.y2, e.details, e.snapshot"

static int target_ok(const char *t) {
    return t && *t && strlen(t) < sizeof ((struct it_store *)0)->outbox_targets[0];
}

static itscam_status sqlerr(it_store *st, const char *what) {
    return it_err(ITSCAM_ERR_IO, "%s: %s: %s", st->path, what, sqlite3_errmsg(st->db));
}

itscam_status it_outbox_fetch(it_store *st, const char *target, int64_t after_id, int limit, it_store_event *out,
                              int *n) {
    *n = 0;
    if (!st || !target_ok(target) || !out || after_id < 0)
        return it_err(ITSCAM_ERR_INVALID_ARG, "outbox fetch: bad arguments");
    limit = limit < 1 ? 1 : limit > IT_OUTBOX_FETCH_MAX ? IT_OUTBOX_FETCH_MAX : limit;
    /* The outbox's key (event_id, target) serves the range scan from after_id; rows of
     * other targets are skipped on the way, at most one per event and target. */
    static const char sql[] = "SELECT " EV_COLS " FROM outbox o JOIN events e ON e.id = o.event_id "
                              "WHERE o.event_id > ?2 AND o.target = ?1 ORDER BY o.event_id LIMIT ?3";
    pthread_mutex_lock(&st->mu);
    sqlite3_stmt *s = NULL;
    itscam_status status = ITSCAM_OK;
    int k = 0, rc = SQLITE_DONE;
    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK) {
        status = sqlerr(st, "reading the outbox");
    } else {
        sqlite3_bind_text(s, 1, target, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 2, after_id);
        sqlite3_bind_int(s, 3, limit);
        while (k < limit && (rc = sqlite3_step(s)) == SQLITE_ROW) it_store_event_read(s, &out[k++]);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE) status = sqlerr(st, "reading the outbox");
    }
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->mu);
    *n = status == ITSCAM_OK ? k : 0;
    return status;
}

itscam_status it_outbox_ack(it_store *st, const char *target, const int64_t *ids, int n) {
    if (!st || !target_ok(target) || n < 0 || (n && !ids))
        return it_err(ITSCAM_ERR_INVALID_ARG, "outbox ack: bad arguments");
    if (!n) return ITSCAM_OK;
    pthread_mutex_lock(&st->mu);
    sqlite3_stmt *s = NULL;
    int ok = sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK;
    itscam_status status = ok ? ITSCAM_OK : sqlerr(st, "acknowledging outbox rows");
    if (ok && sqlite3_prepare_v2(st->db, "DELETE FROM outbox WHERE event_id = ?1 AND target = ?2", -1, &s, NULL) !=
                  SQLITE_OK)
        ok = 0, status = sqlerr(st, "acknowledging outbox rows");
    for (int i = 0; ok && i < n; i++) {
        sqlite3_bind_int64(s, 1, ids[i]);
        sqlite3_bind_text(s, 2, target, -1, SQLITE_STATIC);
        if (sqlite3_step(s) != SQLITE_DONE) ok = 0, status = sqlerr(st, "acknowledging an outbox row");
        sqlite3_reset(s);
    }
    sqlite3_finalize(s);
    if (ok && sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        ok = 0, status = sqlerr(st, "committing outbox acknowledgements");
    /* BEGIN may have failed, in which case there is nothing to roll back (harmless). */
    if (!ok) sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    pthread_mutex_unlock(&st->mu);
    return status;
}

itscam_status it_outbox_pending(it_store *st, const char *target, int64_t *n) {
    *n = 0;
    if (!st || !target_ok(target)) return it_err(ITSCAM_ERR_INVALID_ARG, "outbox pending: bad arguments");
    pthread_mutex_lock(&st->mu);
    sqlite3_stmt *s = NULL;
    itscam_status status = ITSCAM_OK;
    if (sqlite3_prepare_v2(st->db, "SELECT count(*) FROM outbox WHERE target = ?1", -1, &s, NULL) != SQLITE_OK) {
        status = sqlerr(st, "counting outbox rows");
    } else {
        sqlite3_bind_text(s, 1, target, -1, SQLITE_STATIC);
        if (sqlite3_step(s) == SQLITE_ROW) *n = sqlite3_column_int64(s, 0);
        else status = sqlerr(st, "counting outbox rows");
    }
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->mu);
    return status;
}

itscam_status it_store_line_count(it_store *st, const char *camera, const char *line, const char *class_name,
                                  const char *direction, int64_t upto_id, int64_t *n) {
    *n = 0;
    if (!st || !camera || !line || !class_name || !direction)
        return it_err(ITSCAM_ERR_INVALID_ARG, "line count: bad arguments");
    /* CAST: a line id written as a JSON number still matches its text. The camera index
     * (camera, time) narrows the scan to one camera's events. */
    static const char sql[] =
        "SELECT count(*) FROM events WHERE camera = ?1 AND type = 'line_cross' AND id <= ?5 "
        "AND CAST(json_extract(details, '$.line') AS TEXT) = ?2 AND coalesce(class, '') = ?3 "
        "AND CAST(json_extract(details, '$.direction') AS TEXT) = ?4";
    pthread_mutex_lock(&st->mu);
    sqlite3_stmt *s = NULL;
    itscam_status status = ITSCAM_OK;
    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK) {
        status = sqlerr(st, "counting line crossings");
    } else {
        sqlite3_bind_text(s, 1, camera, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, line, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 3, class_name, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 4, direction, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 5, upto_id);
        if (sqlite3_step(s) == SQLITE_ROW) *n = sqlite3_column_int64(s, 0);
        else status = sqlerr(st, "counting line crossings");
    }
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->mu);
    return status;
}
