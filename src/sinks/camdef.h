/* A camera's definition: what to open, how to decode it and how often to detect on it.
 * One struct, read from JSON (the API, the store) or from YAML and the environment through
 * the same strict parser, and written back as JSON with the URL's credentials redacted. */
#ifndef ITSCAM_STREAM_CAMDEF_H
#define ITSCAM_STREAM_CAMDEF_H

#include <jansson.h>
#include <stddef.h>

#define IT_CAM_ID_MAX 64          /* [a-z0-9_-]{1,64} */
#define IT_CAM_URL_MAX 1024
#define IT_CAM_MAX 256            /* cameras per server */

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
} it_camdef;

/* Every field at its default, id and url empty. The struct is zeroed first (string tails
 * included), so two definitions with the same settings compare equal with memcmp. */
void it_camdef_defaults(it_camdef *c);

/* Fill c from a JSON object. patch=0: a whole definition (c is reset to defaults first, id
 * and url required); patch=1: only the keys present change (id may be given only when it
 * equals c->id). Strict: unknown keys, wrong types and out-of-range values are errors,
 * "detect.fps: must be a number from 0.1 to 120" style (the key path first, then ": "),
 * into err. Messages never contain the URL. Returns 0, or -1 with c unchanged.
 * Keys: id, url, enabled, priority, transport, loop, realtime, hwaccel, stall_timeout_s,
 * decode_skip, detect: {fps, model, conf, classes, fallback_model}. Thread-safe. */
int it_camdef_from_json(const json_t *obj, int patch, it_camdef *c, char *err, size_t errlen);

/* The definition as a new JSON object (the caller owns the reference), every key
 * present; the URL's user:password redacted when redact (always, in responses); redact=0
 * only for the store. Reading it back with it_camdef_from_json gives c again (with
 * redact=0). NULL when out of memory. */
json_t *it_camdef_to_json(const it_camdef *c, int redact);

/* 1 when id matches [a-z0-9_-]{1,64}, else 0. NULL is invalid. */
int it_cam_id_valid(const char *id);

#endif
