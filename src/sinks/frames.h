/* The newest frame of each camera, for snapshots and MJPEG viewers.
 *
 * The camera pipeline puts every detected frame (pixels and detections); viewers ask for
 * it as JPEG. A frame is encoded at most once per (camera, height, quality, annotate):
 * the last encoding of each such key is cached, so ten viewers of the same size cost one
 * encode per frame, and viewers asking for the same key at the same time wait for the
 * one encode in progress instead of starting their own. Encoding, scaling and drawing
 * happen outside the store's lock, on the viewer's thread, never on the pipeline's: a
 * put only copies pixels into a pooled buffer.
 *
 * Memory per camera: the current frame, up to IT_FRAMES_POOL pooled frame buffers (a
 * buffer a viewer still reads is not reused; when all are held a put allocates a loose
 * one, freed by its last reader) and IT_FRAMES_MAX_KEYS cached encodings.
 *
 * Thread safety: every function may be called from any thread. */
#ifndef ITSCAM_SINKS_FRAMES_H
#define ITSCAM_SINKS_FRAMES_H

#include "vision/image.h"

#include <stdatomic.h>
#include <stdint.h>

#define IT_FRAMES_ID_MAX 64     /* bytes of a camera id */
#define IT_FRAMES_MAX_KEYS 8    /* cached encodings per camera (least recently used evicted) */
#define IT_FRAMES_POOL 3        /* reusable frame buffers per camera */
#define IT_FRAMES_MAX_DETS 1000 /* detections kept per frame (the rest are not drawn) */
#define IT_FRAMES_MAX_HEIGHT 4320

typedef enum it_frames_status {
    IT_FRAMES_OK = 0,
    IT_FRAMES_UNKNOWN_CAMERA = 1, /* no camera of that id */
    IT_FRAMES_NO_FRAME = 2,       /* the camera has produced no frame yet */
    IT_FRAMES_NOT_NEWER = 3,      /* the newest frame is the one the caller has */
    IT_FRAMES_ERROR = 4           /* bad argument, out of memory or encoding failed (it_err) */
} it_frames_status;

/* An encoded frame, shared by every viewer of its key. Read-only; valid while a
 * reference is held. */
typedef struct it_jpeg {
    uint8_t *data;
    size_t len;
    int width, height;
    int64_t frame_index;   /* as put by the pipeline */
    double captured_at;    /* as put: seconds since the Unix epoch */
    uint64_t seq;          /* the camera's put counter: 1, 2, 3... (rises even when the
                            * pipeline's frame index restarts) */
    atomic_int refs;
} it_jpeg;
void it_jpeg_ref(it_jpeg *j);
void it_jpeg_unref(it_jpeg *j);   /* NULL is harmless; the last one frees */

typedef struct it_frames it_frames;

it_frames *it_frames_new(void);
/* Free the store and its cameras; no watcher may remain (their records are freed). Frames
 * and encodings still referenced by readers live on until released. NULL is harmless. */
void it_frames_free(it_frames *f);

/* Register camera `id` (1..IT_FRAMES_ID_MAX bytes) with the class names used to label
 * detections that carry no class_name (names may be NULL; the strings are copied).
 * Adding an existing id replaces its names and keeps its frame. ITSCAM_OK,
 * ITSCAM_ERR_INVALID_ARG or ITSCAM_ERR_NOMEM. */
itscam_status it_frames_add_camera(it_frames *f, const char *id, const char *const *names, int n_names);
/* Forget camera `id` (its frame and encodings; readers keep what they hold) and wake its
 * watchers, who then find it unknown. Unknown ids are ignored. */
void it_frames_remove_camera(it_frames *f, const char *id);
int it_frames_has(it_frames *f, const char *id);

/* The pipeline's side: camera `id`'s newest frame, captured at `captured_at` (wall clock,
 * seconds since the Unix epoch; viewers see it as X-Timestamp). The pixels and the
 * detections (up to IT_FRAMES_MAX_DETS, with their class names and, when track_ids is not
 * NULL, their tracker ids: n entries, 0 for a detection that feeds no track; annotated
 * frames label them "car #12 0.87") are copied; nothing is kept of the arguments.
 * Watchers of the camera are woken after the store lock is released.
 * ITSCAM_OK, ITSCAM_ERR_NOT_FOUND (unknown camera), ITSCAM_ERR_INVALID_ARG or
 * ITSCAM_ERR_NOMEM (the previous frame stays). */
itscam_status it_frames_put(it_frames *f, const char *id, const it_image *bgr, const itscam_detection *dets,
                            const int64_t *track_ids, int n, int64_t frame_index, double captured_at);

/* The viewer's side: the newest frame of camera `id` as JPEG, scaled to `height` pixels
 * keeping the aspect ratio (0, or a height at or above the frame's: native size, never
 * upscaled), quality 1..100, with the detections drawn when annotate is non-zero. Only a
 * frame put after the one whose it_jpeg.seq is after_seq is returned (0: any). On
 * IT_FRAMES_OK *out holds
 * a reference (it_jpeg_unref). May block while another thread encodes the same key. */
it_frames_status it_frames_jpeg(it_frames *f, const char *id, int height, int quality, int annotate,
                                uint64_t after_seq, it_jpeg **out);

/* Call wake(arg) after every put for camera `id`, and when the camera is removed (on the
 * putting or removing thread, outside the store lock; it must not call
 * it_frames_unwatch). The camera need not exist yet. NULL when out of memory. */
typedef struct it_frames_watch it_frames_watch;
it_frames_watch *it_frames_watch_add(it_frames *f, const char *id, void (*wake)(void *), void *arg);
/* Stop watching; once it returns the wake is not running and will not run. NULL is
 * harmless. */
void it_frames_watch_remove(it_frames *f, it_frames_watch *w);

typedef struct it_frames_stats {
    uint64_t puts, encodes, cache_hits;
} it_frames_stats;
void it_frames_stats_get(it_frames *f, it_frames_stats *st);

#endif
