/* One camera's events: its analytics (lines, zones, speed) on the tracker's output, and
 * the events that result, turned into stored events (sinks/events.h) with their details
 * and, for chosen types, a JPEG snapshot of the frame. Camera-level events (camera_state,
 * quality_degraded, shed) go the same way, so every event of a camera has one form, one
 * id and one path: writer -> store -> (after the commit) bus, MQTT, Redis.
 *
 * Used by one thread at a time (the camera's thread; `itscam watch` in the CLI), except
 * it_cam_events_emit and it_cam_events_counts, which any thread may call. */
#ifndef ITSCAM_PIPELINE_CAMEVENTS_H
#define ITSCAM_PIPELINE_CAMEVENTS_H

#include "analytics/analytics.h"
#include "itscam/itscam.h"
#include "sinks/bus.h"
#include "sinks/camdef.h"
#include "sinks/events.h"
#include "vision/image.h"

#include <jansson.h>
#include <stdint.h>

typedef struct it_cam_events_params {
    /* Where events go, first match wins: the writer (stored; it publishes to the bus
     * after the commit), else sink (the CLI), else the bus directly (no store). */
    it_event_writer *writer;
    void (*sink)(void *arg, const it_store_event *ev);
    void *sink_arg;
    it_bus *bus;
    int track_events;          /* 1: track_start / track_end are emitted (they are many) */
    uint32_t snapshot_types;   /* bits (1 << it_an_event_type) of types that keep a JPEG */
    int snapshot_quality;      /* 80 */
    const char *storage_dir;   /* snapshots go under DIR/snapshots; NULL: no snapshots */
    double occupancy_every_s;  /* zone occupancy samples to the writer this often; 0: never */
} it_cam_events_params;

it_cam_events_params it_cam_events_default_params(void);

/* Event type names (comma-separated, e.g. "wrong_way,speeding") as snapshot bits; -1 with
 * the unknown name in err. "" gives 0. */
int it_cam_events_types_mask(const char *list, uint32_t *mask, char *err, size_t errlen);

typedef struct it_cam_events it_cam_events;

/* For camera def (copied). NULL with itscam_last_error() when out of memory. The
 * analytics themselves start with the first frame (normalised coordinates need its size);
 * a configuration analytics refuses is logged once and leaves only track events. */
it_cam_events *it_cam_events_new(const it_cam_events_params *p, const it_camdef *def);
/* End every live track now (zone_exit, track_end), at time t (the last frame's when
 * earlier). Same thread as _frame. */
void it_cam_events_flush(it_cam_events *e, double t);
/* Flush, then free. NULL is harmless. */
void it_cam_events_free(it_cam_events *e, double t);

/* One detected frame: its detections (class names), the tracker's output for it and its
 * capture time (unix seconds). img is the frame, for snapshots. Returns the number of
 * events raised. */
int it_cam_events_frame(it_cam_events *e, const it_image *img, const itscam_detection *d, int n,
                        const it_track_out *tracks, int nt, double t);

/* A camera-level event (camera_state, quality_degraded, shed) with details (an object,
 * consumed; NULL = {}). Thread-safe. */
void it_cam_events_emit(it_cam_events *e, const char *type, double t, json_t *details);

/* Line counts since start ([line][0] a_to_b, [line][1] b_to_a, every class) and zone
 * occupancy (every class) after the last frame, for the camera API. Thread-safe. */
void it_cam_events_counts(it_cam_events *e, int64_t lines[IT_CAM_MAX_LINES][2], int zones[IT_CAM_MAX_ZONES]);

/* The totals since creation, for `itscam watch`'s last line: {"lines": {"<line>":
 * {"<class>": {"a_to_b": n, "b_to_a": m}}}, "zones": {"<zone>": occupancy now},
 * "events": {"<type>": n}}. Classes are named as the detections named them ("class_<id>"
 * for one never named). New reference; NULL when out of memory. Same thread as _frame. */
json_t *it_cam_events_totals(it_cam_events *e);

/* Events emitted, dropped (writer full) and snapshots written, since creation. */
void it_cam_events_stats(it_cam_events *e, uint64_t *emitted, uint64_t *dropped, uint64_t *snapshots);

#endif
