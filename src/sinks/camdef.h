/* A camera's definition: what to open, how to decode it and how often to detect on it.
 * One struct, read from JSON (the API, the store) or from YAML and the environment through
 * the same strict parser, and written back as JSON with the URL's credentials redacted. */
#ifndef ITSCAM_STREAM_CAMDEF_H
#define ITSCAM_STREAM_CAMDEF_H

#include "analytics/analytics.h"
#include "track/bytetrack.h"

#include <jansson.h>
#include <stddef.h>

#define IT_CAM_ID_MAX 64          /* [a-z0-9_-]{1,64} */
#define IT_CAM_URL_MAX 1024
#define IT_CAM_MAX 256            /* cameras per server */
#define IT_CAM_MAX_LINES 32       /* counting lines per camera */
#define IT_CAM_MAX_ZONES 16       /* zones per camera */

typedef enum it_cam_prio { IT_CAM_CRITICAL = 0, IT_CAM_HIGH = 1, IT_CAM_NORMAL = 2, IT_CAM_LOW = 3, IT_CAM_NPRIO = 4 } it_cam_prio;
const char *it_cam_prio_name(int p);          /* "critical".."low"; "?" when out of range */
int it_cam_prio_parse(const char *s);         /* -1 when unknown */

typedef enum it_cam_skip { IT_CAM_SKIP_AUTO = 0, IT_CAM_SKIP_NONE, IT_CAM_SKIP_NONREF, IT_CAM_SKIP_KEYFRAMES } it_cam_skip;

typedef struct it_camdef {
    char id[IT_CAM_ID_MAX + 1];
    char url[IT_CAM_URL_MAX];     /* as given, credentials included (never shown: use it_url_redact) */
    int enabled;                  /* 1 */
    int priority;                 /* it_cam_prio, IT_CAM_NORMAL */
    int transport;                /* it_source_transport: IT_TRANSPORT_TCP (default) / UDP; RTSP only */
    int loop;                     /* files: 1 (a file camera loops by default) */
    int realtime;                 /* files: 1 (paced at the file's fps) */
    char hwaccel[16];             /* "auto" (default) | "none" | "vaapi" | "cuda" */
    double stall_timeout_s;       /* 5 (0.5..600) */
    int skip;                     /* it_cam_skip, "decode_skip": auto|none|nonref|keyframes (auto) */
    struct {
        double fps;               /* 5 (0.1..120): detections per second */
        char model[128];          /* "" = the server's first model */
        float conf;               /* -1 = the server's default; else 0..1 */
        int classes[128];         /* class ids kept (0..127); none = all */
        int n_classes;
        char fallback_model[128]; /* "" = none: a smaller model used at the deepest shed level */
    } detect;
    /* track: ByteTrack settings of this camera; each one < 0 inherits the server's
     * `track:` section (it_camdef_track). JSON null or absent = inherit. */
    struct {
        float track_high_thresh, track_low_thresh, new_track_thresh, match_thresh;
        int track_buffer;         /* frames at 30 fps */
        int fuse_score;           /* 0/1 */
    } track;
    /* Analytics (analytics/analytics.h): lines, zones and the speed calibration, in pixels
     * or, with coordinates: normalized, in 0..1 of the frame. */
    int anchor;                   /* it_an_anchor: "bottom_center" (default) | "center" | "top_center" */
    int normalized;               /* "coordinates": "pixels" (0, default) | "normalized" (1) */
    it_an_line lines[IT_CAM_MAX_LINES];
    int n_lines;
    it_an_zone zones[IT_CAM_MAX_ZONES];
    int n_zones;
    int has_calibration;          /* calibration: {image: 4 points, world: 4 points in metres} */
    double calib_image[4][2], calib_world[4][2];
    double speed_limit_kmh;       /* 0 = no speeding events (needs the calibration) */
} it_camdef;

/* The camera's tracker settings: global (the server's `track:`; NULL = ByteTrack's
 * defaults) with the camera's own values on top. */
it_track_params it_camdef_track(const it_camdef *c, const it_track_params *global);
/* The camera's analytics configuration for frames of width x height pixels (needed when
 * normalized). Points to c's lines and zones: c must outlive the call to
 * it_analytics_new (which copies them). */
it_an_config it_camdef_analytics(const it_camdef *c, int width, int height);
/* 1 when the camera has anything for analytics to do (a line, a zone or a calibration). */
int it_camdef_has_analytics(const it_camdef *c);

/* Every field at its default, id and url empty. The struct is zeroed first (string tails
 * included), so two definitions with the same settings compare equal with memcmp. */
void it_camdef_defaults(it_camdef *c);

/* Fill c from a JSON object. patch=0: a whole definition (c is reset to defaults first, id
 * and url required); patch=1: only the keys present change (id may be given only when it
 * equals c->id). Strict: unknown keys, wrong types and out-of-range values are errors,
 * "detect.fps: must be a number from 0.1 to 120" style (the key path first, then ": "),
 * into err. Messages never contain the URL. Returns 0, or -1 with c unchanged.
 * Keys: id, url, enabled, priority, transport, loop, realtime, hwaccel, stall_timeout_s,
 * decode_skip, detect: {fps, model, conf, classes, fallback_model},
 * track: {track_high_thresh, track_low_thresh, new_track_thresh, track_buffer,
 * match_thresh, fuse_score}, anchor, coordinates, lines: [{id, points: [[x,y],[x,y]],
 * classes, direction: both|a_to_b|b_to_a, min_distance}], zones: [{id, polygon: [[x,y]...],
 * classes, dwell_alert_s, stopped_speed, stopped_s, congestion_count, congestion_s}],
 * calibration: {image: [[x,y] x4], world: [[x,y] x4]}, speed_limit_kmh. Line and zone ids
 * are [A-Za-z0-9_-]{1,63} (they become MQTT topic levels), unique per camera. A patch
 * replaces lines, zones or calibration as a whole. Thread-safe. */
int it_camdef_from_json(const json_t *obj, int patch, it_camdef *c, char *err, size_t errlen);

/* The definition as a new JSON object (the caller owns the reference), every key
 * present; the URL's user:password redacted when redact (always, in responses); redact=0
 * only for the store. Reading it back with it_camdef_from_json gives c again (with
 * redact=0). NULL when out of memory. */
json_t *it_camdef_to_json(const it_camdef *c, int redact);

/* 1 when id matches [a-z0-9_-]{1,64}, else 0. NULL is invalid. */
int it_cam_id_valid(const char *id);

#endif
