/* ByteTrack (Zhang et al., ECCV 2022) per camera, with Ultralytics' behaviour and names. */
#ifndef ITSCAM_TRACK_BYTETRACK_H
#define ITSCAM_TRACK_BYTETRACK_H

#include "core/core.h"

#include <stdint.h>

/* Hard bounds: a tracker holds at most IT_TRACK_MAX_TRACKS live tracks (tracked, lost and
 * unconfirmed together) and takes at most IT_TRACK_MAX_DETS detections per frame. */
#define IT_TRACK_MAX_TRACKS 4096
#define IT_TRACK_MAX_DETS 10000

/* The settings, named and defaulted as in Ultralytics' bytetrack.yaml. */
typedef struct it_track_params {
    float track_high_thresh; /* 0.25: detections at or above take part in the first association */
    float track_low_thresh;  /* 0.1: detections above it (and below high) in the second one */
    float new_track_thresh;  /* 0.25: a leftover high detection at or above starts a track */
    int track_buffer;        /* 30: frames a lost track is kept, at 30 fps */
    float match_thresh;      /* 0.8: the first association's cost limit */
    int fuse_score;          /* 1: multiply IoU by the detection score in the cost */
    float frame_rate;        /* 30: max_time_lost = int(frame_rate / 30 * track_buffer) */
    /* Not in bytetrack.yaml: Ultralytics 8.4.40 and later also fuse the score into the
     * second (low-score) association, which with the defaults can never match (IoU x score
     * < 0.25 < 0.5). 0 (default) keeps the paper's and earlier Ultralytics' plain IoU. */
    int fuse_score_low;
    int max_tracks;          /* IT_TRACK_MAX_TRACKS, or fewer */
} it_track_params;

it_track_params it_track_default_params(void);

/* One detection of a frame: box in pixels (x1, y1, x2, y2), score, class. */
typedef struct it_track_det {
    float box[4];
    float score;
    int class_id;
} it_track_det;

/* One output track: the Kalman filter's box after this frame's update, and the score,
 * class and input index (det_index) of the detection it was matched to this frame. */
typedef struct it_track_out {
    int64_t track_id;
    float box[4];
    float score;
    int class_id;
    int det_index;
} it_track_out;

typedef struct it_tracker it_tracker;

/* A tracker with p's settings (NULL: defaults). Returns NULL with itscam_last_error() set
 * on bad settings or no memory. Each tracker counts its ids from 1 on its own (one per
 * camera); a tracker is used by one thread at a time. Free with it_tracker_free. */
it_tracker *it_tracker_new(const it_track_params *p);
void it_tracker_free(it_tracker *t); /* NULL is fine */
/* Back to the state after it_tracker_new: no tracks, frame count and ids from the start. */
void it_tracker_reset(it_tracker *t);

/* Feed one frame's detections (n may be 0; dets stays the caller's). Writes the activated
 * tracks, in Ultralytics' order, to out and returns how many there are; when there are
 * more than cap, only cap are written, and the return value still counts all of them.
 * Returns -1 with itscam_last_error() set, the tracker unchanged, when n is negative or
 * above IT_TRACK_MAX_DETS, a box or score is not finite, or the detections could start
 * more tracks than max_tracks leaves room for. Boxes with no area are ignored (as
 * Ultralytics does); no allocation happens once the scratch memory has grown to the
 * largest frame seen. */
int it_tracker_update(it_tracker *t, const it_track_det *dets, int n, it_track_out *out, int cap);

/* Frames fed since creation or reset, and the number of max_time_lost frames after the
 * last match at which a lost track is dropped (int(frame_rate / 30 * track_buffer)). */
int it_tracker_frame(const it_tracker *t);
int it_tracker_max_time_lost(const it_tracker *t);

#endif
