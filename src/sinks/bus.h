/* The event bus: every event a camera produces (detections, line crossings, zone
 * changes...) is published once and fanned out to the live subscribers (SSE clients now;
 * MQTT, Redis and the event store later).
 *
 * An event is immutable and reference counted, allocated once per publish and shared by
 * every subscriber's queue: a hundred viewers cost a hundred pointers, not a hundred
 * copies. Each subscriber has a bounded queue (events and bytes); when it is full the
 * OLDEST events are dropped and counted, so a subscriber that stops reading costs at
 * most its bound and never slows the publisher or the other subscribers. The next pop
 * reports how many were lost.
 *
 * Thread safety: every function may be called from any thread. One mutex guards the
 * subscriber list and the queues; publishing holds it only to append pointers. */
#ifndef ITSCAM_SINKS_BUS_H
#define ITSCAM_SINKS_BUS_H

#include "core/core.h"

#include <jansson.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define IT_BUS_CAMERA_MAX 64   /* bytes of a camera id, without the terminator */
#define IT_BUS_TYPE_MAX 31     /* bytes of an event type, without the terminator */

/* One published event. Read-only once published; valid while a reference is held. */
typedef struct it_event {
    uint64_t seq;              /* 1, 2, 3... in publish order, per bus */
    int64_t id;                /* the event store's id (it_store_event.id) of a stored event;
                                * 0 for live-only events (detections). SSE sends it as the
                                * event's id, so Last-Event-ID resumes from the store. */
    double time_ms;            /* wall-clock time of the publish, ms since the Unix epoch */
    char camera[IT_BUS_CAMERA_MAX + 1]; /* "" for events of no camera */
    char type[IT_BUS_TYPE_MAX + 1];
    char *data;                /* JSON text, one line, NUL-terminated */
    size_t len;                /* strlen(data) */
    atomic_int refs;
} it_event;

void it_event_ref(it_event *e);
void it_event_unref(it_event *e);   /* NULL is harmless; the last one frees */

typedef struct it_bus it_bus;
typedef struct it_bus_sub it_bus_sub;

/* A bus admitting at most max_subscribers (1..65536) at once. NULL when out of memory or
 * max_subscribers is out of range (it_err says which). */
it_bus *it_bus_new(int max_subscribers);
/* Free the bus; every subscription must have been ended first. NULL is harmless. */
void it_bus_free(it_bus *b);

/* Publish one event: `json_text` (len bytes, no NUL needed) is copied once. camera may be
 * NULL or "" (an event of no camera), and at most IT_BUS_CAMERA_MAX bytes; type is 1..
 * IT_BUS_TYPE_MAX bytes of [A-Za-z0-9_.-]. The text must be one line (no CR or LF):
 * Server-Sent Events carry it as one data line. Returns ITSCAM_OK, ITSCAM_ERR_INVALID_ARG
 * or ITSCAM_ERR_NOMEM (nothing published); *seq_out (may be NULL) gets the
 * event's sequence number. Wake callbacks run on the calling thread, after the bus lock
 * is released. */
itscam_status it_bus_publish(it_bus *b, const char *camera, const char *type, const char *json_text, size_t len,
                             uint64_t *seq_out);
/* The same for an event the store already holds under `id` (> 0): subscribers see it in
 * e->id. Published after the store's commit, so a client resuming from the store by id
 * never misses an event that was live-only for a moment. */
itscam_status it_bus_publish_stored(it_bus *b, const char *camera, const char *type, const char *json_text,
                                    size_t len, int64_t id, uint64_t *seq_out);
/* The same with a JSON value, dumped compactly (one line); j is not consumed. */
itscam_status it_bus_publish_json(it_bus *b, const char *camera, const char *type, const json_t *j,
                                  uint64_t *seq_out);

/* Subscribe to every event (camera_filter NULL or "") or to one camera's. The queue holds
 * at most max_events (>= 1) events and max_bytes (>= 1) bytes of event text; past either
 * bound the oldest queued events are dropped (an event bigger than max_bytes alone is
 * dropped at once). wake(wake_arg), when not NULL, is called when the queue goes from
 * empty to non-empty: on the publishing thread, never under the bus lock, so it may do
 * anything but it_bus_unsubscribe of its own subscription (which waits for it). It
 * should be quick: the publisher waits for it. NULL (with the reason in
 * itscam_last_error) when max_subscribers are subscribed, out of memory or on bad
 * arguments. */
it_bus_sub *it_bus_subscribe(it_bus *b, const char *camera_filter, int max_events, size_t max_bytes,
                             void (*wake)(void *), void *wake_arg);
/* Narrow a subscription to events of these types (n 0: every type; at most
 * IT_BUS_SUB_TYPES_MAX names of 1..IT_BUS_TYPE_MAX bytes) and, with stored_only, to stored
 * events (id > 0). Other events are never queued: they neither wake the subscriber nor
 * take room in its queue (an SSE client that asked for wrong_way is not woken for every
 * frame's detections). Applies to events published after it returns.
 * ITSCAM_ERR_INVALID_ARG beyond the bounds, the subscription unchanged. */
#define IT_BUS_SUB_TYPES_MAX 16
itscam_status it_bus_sub_filter(it_bus_sub *s, const char *const *types, int n, int stored_only);

/* The oldest queued event (the caller owns the reference: it_event_unref), or NULL when
 * the queue is empty. *dropped (may be NULL) gets the number of events dropped for this
 * subscriber since the previous pop, all of them older than the returned event; it can
 * be non-zero with NULL returned. */
it_event *it_bus_pop(it_bus_sub *s, uint64_t *dropped);
/* End a subscription: queued events are released, and once it returns its wake callback
 * is not running and will not run again. NULL is harmless. */
void it_bus_unsubscribe(it_bus_sub *s);

typedef struct it_bus_stats {
    uint64_t published;      /* events published */
    uint64_t delivered;      /* events queued to a subscriber (one per subscriber) */
    uint64_t dropped;        /* queued events dropped because a subscriber was full */
    int subscribers;         /* subscribed now */
} it_bus_stats;
void it_bus_stats_get(it_bus *b, it_bus_stats *st);

#endif
