/* The event store (issue 12, section 4): events in the SQLite store's `events` table
 * (schema migration 2 in store.c), batched inserts, an asynchronous writer for the
 * camera pipeline, filtered queries with keyset pagination, line-count buckets, and
 * retention by age and by size in small steps. */
#ifndef ITSCAM_SINKS_EVENTS_H
#define ITSCAM_SINKS_EVENTS_H

#include "sinks/store.h"

#include <jansson.h>
#include <stdint.h>

#define IT_EVENT_TYPE_MAX 31
#define IT_EVENT_CLASS_MAX 63
#define IT_EVENT_DETAILS_MAX 1023 /* JSON text, bytes */
#define IT_EVENT_SNAPSHOT_MAX 255 /* a path */
#define IT_EVENTS_QUERY_MAX 1000  /* rows per query page at most */
#define IT_EVENTS_RETAIN_STEP 1000 /* rows deleted per transaction */

/* One event. Fixed-size fields, so that the writer's queue copies it without allocating.
 * Empty strings are stored as NULL (camera and type must not be empty). */
typedef struct it_store_event {
    int64_t id;                             /* given by the store; ignored on insert */
    char camera[IT_CAM_ID_MAX + 1];
    char type[IT_EVENT_TYPE_MAX + 1];       /* line_cross, zone_enter, ... (issue 12) */
    double time;                            /* unix seconds */
    int64_t track_id;                       /* 0: none (track ids count from 1) */
    int class_id;                           /* -1: none */
    char class_name[IT_EVENT_CLASS_MAX + 1];
    double score;                           /* < 0: none */
    int has_box;
    double box[4];                          /* x1, y1, x2, y2 in pixels */
    /* JSON object text. Text that is not JSON is stored as NULL (checked by SQLite's
     * json_valid in the writer, off the hot path). line_cross events carry
     * {"line": "<id>", "direction": "a_to_b"|"b_to_a"}, which it_store_counts groups by. */
    char details[IT_EVENT_DETAILS_MAX + 1];
    char snapshot[IT_EVENT_SNAPSHOT_MAX + 1]; /* a JPEG's path; retention unlinks it */
} it_store_event;

/* Every later-inserted event also gets one outbox row per target (at most
 * IT_OUTBOX_TARGETS_MAX names of at most 31 bytes, e.g. "mqtt", "redis"), in the same
 * transaction: a publisher deletes a row once its broker acknowledged the event. */
itscam_status it_store_outbox_targets(it_store *st, const char *const *targets, int n);

/* Insert n events in one transaction (all or none); ids follow the array's order. When
 * ids is not NULL, ids[i] receives event i's id. */
itscam_status it_store_events_insert(it_store *st, const it_store_event *ev, int n, int64_t *ids);

/* Query filters; NULL or empty strings and 0 times match everything. */
typedef struct it_event_filter {
    const char *camera, *type, *class_name;
    double since, until; /* time >= since, time < until (unix seconds) */
    int ascending;       /* 0: newest first (id descending), 1: oldest first */
} it_event_filter;

/* One page of events matching f, ordered by id (descending unless f->ascending).
 * cursor 0 starts from the newest (oldest when ascending); otherwise only ids below
 * (above) cursor are returned. out holds at least limit events; limit is clamped to
 * [1, IT_EVENTS_QUERY_MAX]. *next_cursor is the cursor of the next page, 0 when this
 * page was the last one. Keyset pagination: events inserted meanwhile never shift
 * a page, and a walk from cursor 0 sees each matching event once. */
itscam_status it_store_events_query(it_store *st, const it_event_filter *f, int limit, int64_t cursor,
                                    it_store_event *out, int *n, int64_t *next_cursor);

/* The event with this id: ITSCAM_ERR_NOT_FOUND when there is none. */
itscam_status it_store_event_get(it_store *st, int64_t id, it_store_event *out);

/* Events with id > after_id in ascending order, at most limit (clamped as above):
 * what an SSE client resuming with Last-Event-ID needs. */
#define it_store_events_after(st, f, after_id, limit, out, n, next) \
    it_store_events_query(st, f, limit, after_id, out, n, next)

/* Line counts: line_cross events of one camera with since <= time < until, grouped by
 * bucket (bucket_start = floor(time / bucket_s) * bucket_s, aligned to the epoch), line,
 * class and direction (the last two from details), ordered by those. *rows is
 * allocated (free()/it_free; NULL when none); at most 100000 rows, else
 * ITSCAM_ERR_INVALID_ARG (ask for a larger bucket or a shorter range). */
typedef struct it_count_row {
    double bucket_start;
    char line[64];
    char class_name[IT_EVENT_CLASS_MAX + 1];
    char direction[16];
    int64_t count;
} it_count_row;
itscam_status it_store_counts(it_store *st, const char *camera, double since, double until, double bucket_s,
                              it_count_row **rows, int *n);

/* Retention: delete events older than now - max_age_s (max_age_s <= 0: no age limit),
 * then the oldest ones beyond max_events (<= 0: no size limit), with their outbox rows
 * and snapshot files. At most IT_EVENTS_RETAIN_STEP rows per transaction, the store's
 * lock released between steps, so writers wait for one small step at most.
 * *deleted (may be NULL) counts the events deleted. */
itscam_status it_store_events_retain(it_store *st, double max_age_s, int64_t max_events, double now,
                                     int64_t *deleted);

/* The one JSON form of an event, used by the HTTP API, SSE, MQTT and Redis alike:
 * {"id", "camera", "type", "time" (unix seconds), "track_id", "class_id", "class", "score",
 * "box": [x1,y1,x2,y2], "details": {...}, "snapshot": true|false}; fields an event does
 * not have are null (details {}). The snapshot's path is never shown. New reference, NULL
 * when out of memory. */
json_t *it_store_event_json(const it_store_event *e);

/* Number of stored events. */
itscam_status it_store_events_count(it_store *st, int64_t *n);

/* ---- the asynchronous writer: what the camera pipeline calls ---- */

typedef struct it_event_writer it_event_writer;

typedef struct it_event_writer_stats {
    uint64_t pushed;  /* accepted into the queue */
    uint64_t dropped; /* refused because the queue was full */
    uint64_t written; /* committed to the store */
    uint64_t failed;  /* lost to a failed transaction (logged) */
} it_event_writer_stats;

/* A bounded queue of capacity events (0: 8192) and a thread that writes it to st in
 * batches: every 50 ms, or as soon as 256 events wait. st must outlive the writer. */
itscam_status it_event_writer_start(it_store *st, int capacity, it_event_writer **out);
/* Called on the writer's thread after each committed batch, with the events as written
 * (ev[i].id set): the server publishes them to the live bus with their store ids and
 * wakes the publishers. Set before any push; NULL removes it. Must not push. */
typedef void (*it_event_committed_fn)(void *arg, const it_store_event *ev, int n);
void it_event_writer_on_commit(it_event_writer *w, it_event_committed_fn fn, void *arg);
/* Queue a copy of ev. Never blocks on the database: when the queue is full the event is
 * dropped and counted, and -1 returned; 0 when queued. */
int it_event_writer_push(it_event_writer *w, const it_store_event *ev);
/* Wait until every event pushed before this call is written (or failed). */
void it_event_writer_flush(it_event_writer *w);
void it_event_writer_stats_get(it_event_writer *w, it_event_writer_stats *s);
/* Write what is queued, stop the thread, free. NULL is harmless. */
void it_event_writer_stop(it_event_writer *w);

#endif
