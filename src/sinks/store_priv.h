/* The store's insides, shared by store.c (schema, cameras) and events.c (events). */
#ifndef ITSCAM_SINKS_STORE_PRIV_H
#define ITSCAM_SINKS_STORE_PRIV_H

#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>

#define IT_OUTBOX_TARGETS_MAX 4

struct it_store {
    pthread_mutex_t mu; /* guards db and every statement below */
    sqlite3 *db;
    sqlite3_stmt *put, *del, *list;
    /* events.c: prepared on first use */
    sqlite3_stmt *ev_insert, *ev_outbox, *occ_insert;
    char outbox_targets[IT_OUTBOX_TARGETS_MAX][32];
    int n_outbox_targets;
    char path[PATH_MAX];
    char dir[PATH_MAX]; /* the storage dir: snapshot paths are relative to it */
};

/* Release events.c's statements; under no lock (the store is being closed). */
void it_store_events_finalize(struct it_store *st);

/* Read the current row of s into e; the row's columns are, in this order: id, camera,
 * type, time, track_id, class_id, class, score, x1, y1, x2, y2, details, snapshot
 * (events.c's COLS). Used by outbox.c's join. */
struct it_store_event;
void it_store_event_read(sqlite3_stmt *s, struct it_store_event *e);

#endif
