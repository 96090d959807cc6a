/* The camera pipeline: every configured camera as one FFmpeg source (stream/) whose
 * frames go, at the camera's detect fps, to a model's scheduler (sched/) as jobs that
 * carry the camera's priority; results come back to the camera's own thread, which
 * keeps its statistics and hands them to the sinks (sinks/: the event bus for SSE and
 * the frame store for snapshots and MJPEG). Above them all, one controller sheds load
 * by camera priority when capture-to-result latency passes the SLA.
 *
 * Threads: each camera has its source's reader thread and one camera thread (pacing,
 * submission, result handling); the scheduler's workers only run the model and queue
 * results back, so nothing slow ever runs on an inference thread. One controller thread
 * per pipeline measures latency and sets shed levels once a second.
 *
 * How a frame is chosen. The camera thread wakes when a frame lands in the source's
 * newest-frame slot and its next detect time has come, takes that frame (frames replaced
 * in the slot meanwhile are "skipped": never converted, never queued), and submits it
 * with keep_newest, so a newer frame replaces an older one still queued, and with a
 * deadline of one detect interval after capture, so a frame that waited longer is
 * dropped as "stale". A camera has at most two frames in the scheduler (one running,
 * one queued), so memory stays bounded whatever the load.
 *
 * Priorities. The scheduler has three levels (sched.h); critical cameras go to urgent,
 * high and normal cameras to normal, low cameras to batch. HTTP requests keep their own
 * levels in the same queues. Shedding tells high from normal apart: it degrades low
 * cameras first, then normal, then high, never critical.
 *
 * Shedding levels, per camera: 0 full detect fps, 1 half, 2 a quarter, 3 a quarter on
 * the camera's detect.fallback_model when it has one (else the same as 2). The
 * controller keeps one global step S (0..9): low cameras are at level min(S,3), normal
 * at clamp(S-3,0,3), high at clamp(S-6,0,3). S rises by one when, over the last
 * window, capture-to-result p95 passes the SLA or more than 2% of submitted frames were
 * lost to stale/queue_full drops (queues growing), at most once per raise_every_s; it
 * falls by one only after p95 stayed under release_ratio x SLA with no such drops for
 * release_after_s: the gap between the two is the hysteresis. */
#ifndef ITSCAM_PIPELINE_CAMERAS_H
#define ITSCAM_PIPELINE_CAMERAS_H

#include "pipeline/camevents.h"
#include "sched/sched.h"
#include "sinks/bus.h"
#include "sinks/frames.h"
#include "sinks/camdef.h"
#include "stream/quality.h"
#include "stream/source.h"

#include <jansson.h>
#include <stdint.h>

/* How the pipeline reaches models: the server implements it on its registry (so reloads
 * work), the benchmark on a scheduler of its own. */
typedef struct it_cam_infer {
    void *ctx;
    /* Queue j on the model named `model` ("" = the default model). As it_sched_submit:
     * j->done is called only when IT_SCHED_QUEUED is returned; otherwise the job's
     * outcome and message say why. *token (NULL before the call) may carry what the
     * submitter must release once the result was handled (a model reference). */
    it_sched_submit_status (*submit)(void *ctx, const char *model, it_sched_job *j, void **token);
    /* Optional: called with a non-NULL token after the job's result was handled, on the
     * camera's thread, whether the job was queued or not. */
    void (*release)(void *ctx, void *token);
} it_cam_infer;

/* Metrics hooks (optional), called from camera threads and the controller. */
typedef struct it_cams_observer {
    void *ctx;
    void (*frame_done)(void *ctx, const char *camera, double latency_ms);   /* a detected frame */
    void (*shed_change)(void *ctx, int step, const char *why);
} it_cams_observer;

typedef struct it_cams_params {
    it_cam_infer infer;
    it_bus *bus;                /* detections, camera_state and shed events; may be NULL */
    it_frames *frames;          /* the newest frame per camera, for snapshots; may be NULL */
    it_cams_observer observer;
    itscam_detector_params detect_defaults; /* conf, iou, max_det of jobs a camera does not set */
    double sla_ms;              /* 100: capture-to-result latency target */
    int shed;                   /* 1: shed load; 0: never */
    double window_s;            /* 5: latency and drop window the controller looks at */
    double raise_every_s;       /* 2: at most one step up this often */
    double release_after_s;     /* 10: calm this long before one step down */
    double release_ratio;       /* 0.6 */
    int quality_every;          /* 10: measure quality on every Nth detected frame */
    it_quality_params quality;
    int result_cache;           /* 1: a frame identical to the previous one reuses its result */
    double source_stall_s;      /* 0: each camera's own stall_timeout_s */
    int decode_threads;         /* 1 per camera */
    /* Tracking and events (camevents.h). events.bus is set from bus above; with
     * events.writer every camera's events are stored, and reach the bus only after the
     * commit (the writer's on-commit hook, set by the server), with their store ids. */
    it_track_params track;      /* every camera's tracker settings, under its own track: */
    it_cam_events_params events;
} it_cams_params;
it_cams_params it_cams_default_params(void);

typedef struct it_cams it_cams;

typedef struct it_cam_info {
    it_camdef def;              /* url as configured: redact before showing */
    it_stream_state state;
    double state_since;         /* wall-clock ms */
    char last_error[256];       /* redacted */
    it_source_reason reason;
    uint64_t reconnects;
    double retry_at;            /* wall ms of the next reconnect attempt while backing off, else 0 */
    double retry_wait_ms;       /* the last backoff wait */
    int shed_level;
    double fps_input, fps_decoded, fps_detected, fps_target;  /* over the last window */
    /* packets = detected + skipped + stale + queue_full + failed + (at most 3 in flight) */
    uint64_t packets, decoded, detected, skipped, stale, queue_full, failed, cache_hits;
    double lat_p50, lat_p95, lat_p99;   /* capture to result, ms, over the last window (0: none) */
    it_quality quality;
    int width, height;
    double stream_fps;
    /* analytics: line counts since the camera started ([i][0] a_to_b, [i][1] b_to_a)
     * and zone occupancy now, in def's line and zone order; events emitted and lost */
    int64_t line_counts[IT_CAM_MAX_LINES][2];
    int zone_occupancy[IT_CAM_MAX_ZONES];
    uint64_t events_emitted, events_dropped, snapshots;
} it_cam_info;

itscam_status it_cams_new(const it_cams_params *p, it_cams **out);
/* Stop every camera (waiting for their jobs to come back) and free. NULL is harmless. */
void it_cams_free(it_cams *c);

/* Add a camera, or replace the camera with the same id (its source restarts). A disabled
 * camera is listed but opens nothing. ITSCAM_ERR_INVALID_ARG with a message for a bad
 * definition or too many cameras. */
itscam_status it_cams_put(it_cams *c, const it_camdef *def);
/* Remove a camera: it disappears from the list at once; its threads end in the
 * background. ITSCAM_ERR_NOT_FOUND when unknown. */
itscam_status it_cams_remove(it_cams *c, const char *id);
/* The camera's definition (0) or -1 when unknown. */
int it_cams_get(it_cams *c, const char *id, it_camdef *out);
/* Number of cameras. */
int it_cams_count(it_cams *c);
/* Info for the camera (0) or -1 when unknown. */
int it_cams_info(it_cams *c, const char *id, it_cam_info *out);
/* Info for every camera, sorted by id; *out is it_malloc'd (free with it_free). */
int it_cams_list(it_cams *c, it_cam_info **out);
/* The current shed step (0..9) and the p95 the controller last saw. */
int it_cams_shed_step(it_cams *c, double *p95_ms);

/* The API's view of one camera: id, url (redacted), enabled, priority, state,
 * state_since, last_error, reconnects, shed_level, fps{}, frames{}, latency_ms{},
 * quality{}, detect{}. */
json_t *it_cam_info_json(const it_cam_info *i);

#endif
