/* Per-camera traffic analytics on tracker output: line counts by class and direction,
 * wrong way, zones (occupancy, dwell, loitering, stopped vehicles, congestion) and ground
 * speed from an optional homography. Pure logic: no I/O, no clock, no threads. */
#ifndef ITSCAM_ANALYTICS_ANALYTICS_H
#define ITSCAM_ANALYTICS_ANALYTICS_H

#include "core/core.h"
#include "track/bytetrack.h"

#include <stdint.h>

/* Hard bounds of one camera's configuration and state. */
#define IT_AN_MAX_LINES 64
#define IT_AN_MAX_ZONES 64
#define IT_AN_MAX_POLY 64       /* polygon vertices */
#define IT_AN_MAX_FILTER 32     /* classes listed on one line or zone */
#define IT_AN_MAX_CLASSES 256   /* class ids 0..255 get their own counters */
#define IT_AN_MAX_TRACKS 4096   /* tracks remembered at once; the least recently seen goes */
#define IT_AN_HISTORY 64        /* anchor positions kept per track for its speed */
#define IT_AN_ID_LEN 64

/* The point of a box that stands for the object on the ground. */
typedef enum it_an_anchor {
    IT_AN_ANCHOR_BOTTOM_CENTER = 0, /* default: where a vehicle touches the road */
    IT_AN_ANCHOR_CENTER = 1,
    IT_AN_ANCHOR_TOP_CENTER = 2
} it_an_anchor;

/* Sides of a line from points[0] (A end) to points[1] (B end), as seen on screen (y down):
 * side "a" is on the left of the arrow A->B, side "b" on its right. A horizontal line
 * drawn left to right thus has side a above it and b below: a_to_b is moving down. */
typedef enum it_an_dir {
    IT_AN_DIR_A_TO_B = 0,
    IT_AN_DIR_B_TO_A = 1,
    IT_AN_DIR_BOTH = 2 /* only as a line's allowed direction */
} it_an_dir;

typedef struct it_an_line {
    char id[IT_AN_ID_LEN];
    float points[2][2];  /* A, B: pixels, or 0..1 when the config is normalised */
    int classes[IT_AN_MAX_FILTER];
    int n_classes;       /* 0: every class */
    it_an_dir direction; /* allowed direction; a crossing against it is wrong_way */
    float min_distance;  /* px past the line on each side for a crossing; <= 0: 3 px */
} it_an_line;

typedef struct it_an_zone {
    char id[IT_AN_ID_LEN];
    float polygon[IT_AN_MAX_POLY][2]; /* pixels, or 0..1 when normalised */
    int n_points;                     /* 3..IT_AN_MAX_POLY */
    int classes[IT_AN_MAX_FILTER];
    int n_classes;                    /* 0: every class */
    double dwell_alert_s;  /* loitering once dwell passes it; <= 0: off */
    double stopped_speed;  /* km/h with a calibration, px/s without; <= 0: off */
    double stopped_s;      /* how long under stopped_speed makes a stopped vehicle */
    int congestion_count;  /* congestion when occupancy stays over it; <= 0: off */
    double congestion_s;
} it_an_zone;

typedef struct it_an_config {
    it_an_anchor anchor;
    int normalized;          /* 1: line, zone and calibration image points are 0..1 */
    int frame_width, frame_height; /* needed when normalized: the pixel frame size */
    const it_an_line *lines; /* copied by it_analytics_new */
    int n_lines;
    const it_an_zone *zones; /* copied */
    int n_zones;
    int has_calibration;     /* image[i] (pixels or normalised) lies at world[i] (metres) */
    double calib_image[4][2];
    double calib_world[4][2];
    double speed_limit_kmh;  /* speeding above it (needs the calibration); <= 0: off */
    double speed_window_s;   /* speed over the last this many seconds; default 1.0 */
    int lost_frames;         /* a track unseen for this many frames ends; default 32, so
                              * that one ByteTrack can still bring back (it keeps a lost
                              * track max_time_lost + 1 = 31 frames) never ends here */
    int max_tracks;          /* default and most IT_AN_MAX_TRACKS */
} it_an_config;

/* Zeroed config with the defaults: bottom centre, pixels, window 1 s, 32 lost frames,
 * IT_AN_MAX_TRACKS tracks, no lines, zones or calibration. */
it_an_config it_an_default_config(void);

typedef enum it_an_event_type {
    IT_AN_TRACK_START = 0,
    IT_AN_TRACK_END,
    IT_AN_LINE_CROSS,
    IT_AN_WRONG_WAY,
    IT_AN_ZONE_ENTER,
    IT_AN_ZONE_EXIT,
    IT_AN_LOITERING,
    IT_AN_STOPPED_VEHICLE,
    IT_AN_CONGESTION,
    IT_AN_SPEEDING,
    IT_AN_EVENT_TYPES
} it_an_event_type;

/* "track_start", "line_cross", ...; "unknown" out of range. Static strings. */
const char *it_an_event_name(it_an_event_type t);
/* "a_to_b", "b_to_a", "both". */
const char *it_an_dir_name(it_an_dir d);

typedef struct it_an_event {
    it_an_event_type type;
    double time;       /* the frame time given to the update that raised it */
    int64_t track_id;  /* 0 for congestion */
    int class_id;      /* -1 for congestion */
    float score;       /* last detection score of the track; 0 for congestion */
    float box[4];      /* last box of the track (pixels); zeros for congestion */
    int line;          /* index into config lines, or -1 */
    int zone;          /* index into config zones, or -1 */
    it_an_dir direction; /* line_cross and wrong_way */
    double dwell_s;    /* zone_exit, loitering, stopped_vehicle (time stopped);
                        * track_end: first to last sighting */
    double speed;      /* km/h with a calibration, else px/s; -1 when not known yet */
    int count;         /* congestion: the occupancy that raised it */
} it_an_event;

typedef struct it_analytics it_analytics;

/* One camera's analytics with c's lines, zones and calibration (copied; c may go away).
 * Returns NULL with itscam_last_error() naming the offending line, zone or field on a bad
 * configuration (too many lines or zones, a degenerate line, a polygon under 3 points,
 * normalised without a frame size, a singular calibration) or on no memory. Used by one
 * thread at a time; free with it_analytics_free (NULL is fine). */
it_analytics *it_analytics_new(const it_an_config *c);
void it_analytics_free(it_analytics *a);

/* Feed one frame: the tracker's output for it (n may be 0) and its time in seconds, which
 * must not go backwards. Writes the events raised to ev, in order, and returns how many
 * there were; when more than cap, only the first cap are written (counts and state still
 * take all of them). Returns -1 with itscam_last_error() set, state unchanged, when n is
 * negative, a box or the time is not finite, or the time goes backwards. */
int it_analytics_update(it_analytics *a, const it_track_out *tracks, int n, double t,
                        it_an_event *ev, int cap);
/* End every track now (end of a stream): zone_exit and track_end events, as update. */
int it_analytics_flush(it_analytics *a, double t, it_an_event *ev, int cap);

/* Crossings of line `line` by class_id in direction dir (A_TO_B or B_TO_A), wrong-way ones
 * included; class_id -1: all classes (ids outside 0..IT_AN_MAX_CLASSES-1 count only
 * there). 0 for an out-of-range line or direction. */
int64_t it_analytics_line_count(const it_analytics *a, int line, int class_id, it_an_dir dir);
/* Tracks in zone `zone` after the last update, of class_id or all (-1). */
int it_analytics_zone_occupancy(const it_analytics *a, int zone, int class_id);
/* The track's current speed (km/h calibrated, px/s otherwise): 0 and *speed set when
 * known, -1 when the track is unknown or has too short a history (under half the window). */
int it_analytics_track_speed(const it_analytics *a, int64_t track_id, double *speed);
/* Tracks remembered now. */
int it_analytics_track_count(const it_analytics *a);

/* The homography H (row-major 3x3, H[8] = 1) mapping src[i] to dst[i], from the 8x8
 * linear system solved by Gaussian elimination with partial pivoting. ITSCAM_ERR_INVALID_ARG
 * when the points are degenerate (three collinear, repeated). */
itscam_status it_homography_solve(const double src[4][2], const double dst[4][2], double H[9]);
/* Map (x, y) through H; returns 0, or -1 when the point maps to infinity. */
int it_homography_apply(const double H[9], double x, double y, double *ox, double *oy);

#endif
