/* The event store (issue 12, section 4): events in the SQLite store's `events` table
 * (schema migration 2 in store.c), zone occupancy samples in `occupancy` (migration 3),
 * batched inserts, an asynchronous writer for the camera pipeline, filtered queries with
 * keyset pagination, line-count and occupancy buckets, retention by age and by size in
 * small steps, and where event snapshots (JPEG files) live. */
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
#define IT_ZONE_ID_MAX 63          /* bytes of a zone id (analytics' IT_AN_ID_LEN - 1) */
#define IT_EVENT_FILTER_LIST_MAX 16 /* names in a filter's types or classes list */

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
    /* A JPEG's path relative to the storage dir, made by it_snapshot_path ("" none).
     * Retention unlinks it; a path that it_snapshot_resolve refuses is never touched
     * nor served. */
    char snapshot[IT_EVENT_SNAPSHOT_MAX + 1];
} it_store_event;

/* ---- snapshots: the convention the pipeline and the HTTP API share ----
 *
 * A snapshot is a JPEG file under STORAGE_DIR/snapshots/ (STORAGE_DIR is storage.dir, the
 * folder of itscam.db), and the event's `snapshot` field holds its path relative to
 * STORAGE_DIR: "snapshots/<camera>/<YYYY-MM-DD>/<HHMMSS.mmm>-<type>-<track_id>[-k].jpg"
 * (date and time in UTC, of the event's time). Relative paths keep the store movable;
 * the fixed shape lets the server refuse any path that could escape the folder.
 *
 * The pipeline: it_snapshot_path(dir, ...) -> write the JPEG into dir/rel -> push the
 * event with snapshot = rel. The server: it_snapshot_resolve(dir, rel) -> open. */
#define IT_SNAPSHOT_DIR "snapshots"

/* Make a new snapshot's relative path in rel (rellen >= IT_EVENT_SNAPSHOT_MAX + 1 always
 * suffices): creates the folders (mode 0700) and reserves the name by creating the file
 * empty (O_EXCL, mode 0600), adding -2, -3... when the name is taken, so two events of
 * the same track, type and millisecond never share a file. The caller then writes the
 * JPEG into STORAGE_DIR/rel (truncating). camera must be a camera id ([a-z0-9_-]{1,64}),
 * type [a-z0-9_]{1,31}, track_id >= 0 (0: none), t unix seconds (>= 0). Returns 0, or -1
 * with the reason in itscam_last_error() (bad arguments, a folder or file that cannot be
 * created). Thread-safe. */
int it_snapshot_path(const char *storage_dir, const char *camera, const char *type, int64_t track_id, double t,
                     char *rel, size_t rellen);

/* The absolute path of an existing snapshot, for serving or deleting it: rel must have
 * the shape above (relative, under snapshots/, components of [A-Za-z0-9._-] not starting
 * with '.', ending in .jpg) and, symbolic links resolved, still lie inside
 * STORAGE_DIR/snapshots. ITSCAM_OK with abs filled; ITSCAM_ERR_INVALID_ARG for a path
 * that is refused (logged by the caller, never followed); ITSCAM_ERR_NOT_FOUND when the
 * file is gone. Thread-safe. */
itscam_status it_snapshot_resolve(const char *storage_dir, const char *rel, char *abs, size_t abslen);

/* Every later-inserted event also gets one outbox row per target (at most
 * IT_OUTBOX_TARGETS_MAX names of at most 31 bytes, e.g. "mqtt", "redis"), in the same
 * transaction: a publisher deletes a row once its broker acknowledged the event. */
itscam_status it_store_outbox_targets(it_store *st, const char *const *targets, int n);

/* Insert n events in one transaction (all or none); ids follow the array's order. When
 * ids is not NULL, ids[i] receives event i's id. */
itscam_status it_store_events_insert(it_store *st, const it_store_event *ev, int n, int64_t *ids);

/* Query filters; NULL or empty strings, 0 times and empty lists match everything. The
 * lists match any of their names (at most IT_EVENT_FILTER_LIST_MAX each, else
 * ITSCAM_ERR_INVALID_ARG); every condition given must hold. */
typedef struct it_event_filter {
    const char *camera, *type, *class_name;
    double since, until; /* time >= since, time < until (unix seconds) */
    int ascending;       /* 0: newest first (id descending), 1: oldest first */
    const char *const *types;   /* type is one of these */
    int n_types;
    const char *const *classes; /* class is one of these */
    int n_classes;
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
 * what an SSE client resuming with Last-Event-ID needs (f->ascending must be 1). */
#define it_store_events_after(st, f, after_id, limit, out, n, next) \
    it_store_events_query(st, f, limit, after_id, out, n, next)

/* The number of events matching f with id > after_id, counting no further than cap
 * (*n is then cap): bounds an SSE replay before it starts, at the cost of reading at
 * most cap index entries. */
itscam_status it_store_events_count_after(it_store *st, const it_event_filter *f, int64_t after_id, int64_t cap,
                                          int64_t *n);

/* The largest event id the store ever gave (0 when none). Ids are never reused, so it
 * only grows, even when retention deletes the newest events. */
itscam_status it_store_events_last_id(it_store *st, int64_t *id);

/* *has = 1 when the store holds an event or an occupancy sample of camera, else 0 (the
 * counts route answers for cameras deleted since, as long as their history is kept). */
itscam_status it_store_camera_has_data(it_store *st, const char *camera, int *has);

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

/* ---- zone occupancy ---- */

/* One occupancy sample: how many tracks were in a zone at a time. */
typedef struct it_occupancy_sample {
    char camera[IT_CAM_ID_MAX + 1];
    char zone[IT_ZONE_ID_MAX + 1];
    char class_name[IT_EVENT_CLASS_MAX + 1]; /* "": every class together */
    double time;                             /* unix seconds */
    int count;                               /* >= 0 */
} it_occupancy_sample;

/* Insert n samples in one transaction (all or none): the writer's path, and tests'.
 * ITSCAM_ERR_INVALID_ARG for a sample without camera or zone, an unterminated field or
 * a negative count. */
itscam_status it_store_occupancy_insert(it_store *st, const it_occupancy_sample *s, int n);

/* Occupancy of one camera with since <= time < until, grouped by bucket (aligned to the
 * epoch as in it_store_counts), zone and class ("" = all classes), ordered by those:
 * per group the number of samples, their mean and their max count. *rows is allocated
 * (free()/it_free; NULL when none); at most 100000 rows, else ITSCAM_ERR_INVALID_ARG. */
typedef struct it_occupancy_row {
    double bucket_start;
    char zone[IT_ZONE_ID_MAX + 1];
    char class_name[IT_EVENT_CLASS_MAX + 1];
    int64_t samples;
    double mean;
    int64_t max;
} it_occupancy_row;
itscam_status it_store_occupancy(it_store *st, const char *camera, double since, double until, double bucket_s,
                                 it_occupancy_row **rows, int *n);

/* Delete occupancy samples older than now - max_age_s (<= 0: nothing), at most
 * IT_EVENTS_RETAIN_STEP rows per transaction like the events. *deleted may be NULL.
 * it_store_events_retain calls it with its own max_age_s. */
itscam_status it_store_occupancy_retain(it_store *st, double max_age_s, double now, int64_t *deleted);

/* Retention: delete events older than now - max_age_s (max_age_s <= 0: no age limit),
 * then the oldest ones beyond max_events (<= 0: no size limit), with their outbox rows
 * and snapshot files (and the date folder a deletion empties); then occupancy samples
 * older than now - max_age_s (it_store_occupancy_retain; samples have no size limit:
 * they are a few per zone every few seconds). At most IT_EVENTS_RETAIN_STEP rows per
 * transaction, the store's lock released between steps, so writers wait for one small
 * step at most. *deleted (may be NULL) counts the events deleted. */
itscam_status it_store_events_retain(it_store *st, double max_age_s, int64_t max_events, double now,
                                     int64_t *deleted);

/* The one JSON form of an event, used by the HTTP API, SSE, MQTT and Redis alike:
 * {"id", "camera", "type", "time" (unix seconds), "track_id", "class_id", "class", "score",
 * "box": [x1,y1,x2,y2], "details": {...}, "snapshot": true|false}; fields an event does
 * not have are null (details {}). The snapshot's path is never shown. New reference, NULL
 * when out of memory. */
json_t *it_store_event_json(const it_store_event *e);
/* The same as one line of text (compact; reals with 15 significant digits, so that times
 * keep their microseconds): what SSE and the brokers send. malloc'd (free()), NULL when
 * out of memory; *len (may be NULL) gets its length. */
char *it_store_event_text(const it_store_event *e, size_t *len);

/* Number of stored events. */
itscam_status it_store_events_count(it_store *st, int64_t *n);

/* ---- the asynchronous writer: what the camera pipeline calls ---- */

typedef struct it_event_writer it_event_writer;

typedef struct it_event_writer_stats {
    uint64_t pushed;  /* accepted into the queue */
    uint64_t dropped; /* refused because the queue was full */
    uint64_t written; /* committed to the store */
    uint64_t failed;  /* lost to a failed transaction (logged) */
    /* the same for occupancy samples (dropped also counts invalid ones) */
    uint64_t occupancy_pushed, occupancy_dropped, occupancy_written, occupancy_failed;
} it_event_writer_stats;

/* A bounded queue of capacity events (0: 8192), another of as many occupancy samples,
 * and a thread that writes them to st in batches: every 50 ms, or as soon as 256 events
 * or samples wait. st must outlive the writer. */
itscam_status it_event_writer_start(it_store *st, int capacity, it_event_writer **out);
/* Called on the writer's thread after each committed batch, with the events as written
 * (ev[i].id set): the server publishes them to the live bus with their store ids and
 * wakes the publishers. Set before any push; NULL removes it. Must not push. */
typedef void (*it_event_committed_fn)(void *arg, const it_store_event *ev, int n);
void it_event_writer_on_commit(it_event_writer *w, it_event_committed_fn fn, void *arg);
/* Queue a copy of ev. Never blocks on the database: when the queue is full the event is
 * dropped and counted, and -1 returned; 0 when queued. An event that is dropped, or lost
 * with a failed batch, takes its snapshot file with it (it_snapshot_resolve'd). */
int it_event_writer_push(it_event_writer *w, const it_store_event *ev);
/* Queue one occupancy sample: count tracks of class_name ("" or NULL: all classes
 * together) in zone of camera at t (unix seconds). Like it_event_writer_push: never
 * blocks, 0 when queued, -1 (counted in occupancy_dropped) when the queue is full or an
 * argument is bad (no camera or zone, a name too long, count < 0). */
int it_event_writer_push_occupancy(it_event_writer *w, const char *camera, const char *zone, const char *class_name,
                                   double t, int count);
/* Wait until every event and sample pushed before this call is written (or failed). */
void it_event_writer_flush(it_event_writer *w);
void it_event_writer_stats_get(it_event_writer *w, it_event_writer_stats *s);
/* Write what is queued, stop the thread, free. NULL is harmless. */
void it_event_writer_stop(it_event_writer *w);

#endif
