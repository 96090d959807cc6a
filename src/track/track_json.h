/* The detections file that `itscam track` replays: parsed from a buffer, strictly. */
#ifndef ITSCAM_TRACK_JSON_H
#define ITSCAM_TRACK_JSON_H

#include "track/bytetrack.h"

#include <stddef.h>

/* Bounds of the file (besides IT_TRACK_MAX_DETS per frame). */
#define IT_TRACK_JSON_MAX_FRAMES 10000000
#define IT_TRACK_JSON_MAX_DIM 100000

typedef struct it_track_frame {
    int frame;            /* the file's frame number: >= 0, strictly increasing */
    int n;                /* detections in this frame */
    it_track_det *dets;   /* points into it_track_input.dets */
    const double *scores; /* the scores as written (dets[].score is their float) */
} it_track_frame;

typedef struct it_track_input {
    int width, height;
    int n_frames;
    it_track_frame *frames;
    it_track_det *dets;   /* every frame's detections, one block */
    double *scores;
    size_t n_dets;
} it_track_input;

/* Parse {"width": W, "height": H, "frames": [{"frame": 0, "detections": [{"box": [x1, y1,
 * x2, y2], "score": s, "class_id": c}, ...]}, ...]} from buf[0..len). Every field named
 * is required: W and H positive integers up to IT_TRACK_JSON_MAX_DIM; frame numbers
 * integers from 0, strictly increasing; boxes four finite numbers with x1 <= x2 and
 * y1 <= y2; scores within [0, 1]; class ids integers from 0. Other keys are ignored.
 * Returns ITSCAM_OK with *in filled (free with it_track_input_free), or
 * ITSCAM_ERR_INVALID_ARG with a message naming the place (JSON line and column, or a path
 * such as frames[3].detections[1].score) and *in empty; ITSCAM_ERR_NOMEM. */
itscam_status it_track_input_parse(const char *buf, size_t len, it_track_input *in);
void it_track_input_free(it_track_input *in);

#endif
