/* One camera source: a reader thread that opens a URL or file with FFmpeg, decodes it and
 * keeps only the newest decoded frame, reconnecting by itself when a live source drops. The
 * frame is converted to BGR only when a consumer takes it, so frames replaced in the slot
 * before anyone wants them cost their decode and nothing more. */
#ifndef ITSCAM_STREAM_SOURCE_H
#define ITSCAM_STREAM_SOURCE_H

#include "core/core.h"
#include "vision/image.h"

#include <stdint.h>

typedef struct it_source it_source;

typedef enum it_source_transport { IT_TRANSPORT_TCP = 0, IT_TRANSPORT_UDP = 1 } it_source_transport;

/* What the decoder may leave out, for a camera whose detect fps is well below its stream fps.
 * nonref: frames no other frame refers to (FFmpeg's AVDISCARD_NONREF; typically the
 * non-reference B-frames, nothing on an all-P camera stream). keyframes: only key frames
 * are decoded (AVDISCARD_NONKEY, one frame per GOP), and the other packets never reach the
 * decoder. The stall watchdog then also counts video packets as signs of life, since a
 * GOP may be longer than stall_timeout_s. */
typedef enum it_skip_mode { IT_SKIP_NONE = 0, IT_SKIP_NONREF = 1, IT_SKIP_KEYFRAMES = 2 } it_skip_mode;
const char *it_skip_name(it_skip_mode m);            /* "none", "nonref", "keyframes" */
int it_skip_parse(const char *name, it_skip_mode *out); /* 0, or -1 for an unknown name */

typedef struct it_source_params {
    const char *url;          /* rtsp://, rtsps://, http(s)://, a file path, /dev/videoN; copied */
    it_source_transport transport; /* RTSP only (tcp) */
    int loop;                 /* files: seek back to the start at the end (0: the source ends) */
    int realtime;             /* files: pace packets at the file's own timestamps (1) */
    double stall_timeout_s;   /* no decoded frame for this long: stalled, then reconnect (5) */
    double open_timeout_s;    /* an open that takes longer is abandoned (10) */
    it_skip_mode skip;        /* what not to decode (IT_SKIP_NONE); see it_source_set_skip */
    const char *hwaccel;      /* "none" (default), "auto" (the first hardware decoder that
                                 opens, else software, said once per process), "vaapi" or
                                 "cuda" (that one or the camera fails: reason decoder); copied */
    int decode_threads;       /* decoder threads (1: one core per camera, no frame delay) */
    int lossless;             /* files: the reader waits for the slot to be taken instead of
                                 replacing the frame, so every frame is seen (offline runs) */
    /* Called from the reader thread, without the source's lock, after a frame lands in the
     * slot and after every state change, so a consumer can wait on its own condition
     * variable for frames and for other work at once. Must not block or call the source. */
    void (*notify)(void *arg);
    void *notify_arg;
} it_source_params;
it_source_params it_source_default_params(void);

typedef enum it_stream_state {
    IT_SOURCE_STARTING = 0,
    IT_SOURCE_STREAMING,
    IT_SOURCE_STALLED,
    IT_SOURCE_RECONNECTING,
    IT_SOURCE_FAILED,         /* see reason; live sources retry with backoff, files stay */
    IT_SOURCE_ENDED,          /* a file without loop reached its end */
    IT_SOURCE_DISABLED,       /* closed */
} it_stream_state;
const char *it_source_state_name(it_stream_state s);

/* Why a source failed (or last dropped), for users and metrics. */
typedef enum it_source_reason {
    IT_REASON_NONE = 0,
    IT_REASON_BAD_URL,        /* unknown protocol, unparsable address */
    IT_REASON_NOT_FOUND,      /* no such file, HTTP/RTSP 404 */
    IT_REASON_AUTH,           /* credentials refused (401/403) */
    IT_REASON_NETWORK,        /* refused, unreachable, reset */
    IT_REASON_TIMEOUT,        /* open took longer than open_timeout_s */
    IT_REASON_FORMAT,         /* not a media file, or truncated */
    IT_REASON_NO_VIDEO,       /* opened, but no video stream in it */
    IT_REASON_DECODER,        /* no decoder for the codec, or it failed */
    IT_REASON_STALLED,        /* no decoded frame for stall_timeout_s */
    IT_REASON_EOF,            /* a live source ended its stream (a disconnect) */
} it_source_reason;
const char *it_source_reason_name(it_source_reason r);

typedef struct it_source_info {
    it_stream_state state;
    double state_since;       /* wall-clock ms of the last state change */
    it_source_reason reason;  /* of the last failure or disconnect */
    char last_error[256];     /* readable, credentials redacted; "" when none */
    uint64_t packets;         /* video packets read: the frames the camera sent */
    uint64_t decoded;         /* frames decoded */
    uint64_t dropped;         /* frames replaced in the slot before anyone took them */
    uint64_t converted;       /* frames taken and converted to BGR */
    uint64_t skipped_packets; /* keyframes mode: video packets never sent to the decoder */
    char hwaccel[16];         /* the decoder in use: "none" or the hardware type */
    uint64_t reconnects;      /* opens after the first */
    double retry_at;          /* wall-clock ms of the next open while waiting out a backoff, else 0 */
    double retry_wait_ms;     /* the last backoff wait (jitter included) */
    int width, height;        /* of the current stream; 0 before the first frame */
    double stream_fps;        /* the stream's nominal frame rate; 0 when unknown */
} it_source_info;

typedef struct it_frame_meta {
    int64_t index;            /* 0, 1, 2...: every decoded frame, across loops and reconnects */
    double captured_at;       /* wall-clock ms (CLOCK_REALTIME) when its packet was read */
    double pts_s;             /* stream timestamp in seconds (NAN when unknown) */
} it_frame_meta;

/* Start a source: copies p, starts its reader thread and returns at once (the open happens
 * on the thread; follow it with it_source_state). ITSCAM_ERR_INVALID_ARG for a missing
 * URL or bad parameters, ITSCAM_ERR_NOMEM. *out is NULL on failure. */
itscam_status it_source_open(const it_source_params *p, it_source **out);

/* Wait up to timeout_ms for a frame that has not been taken yet. Returns 1 and converts it
 * to BGR into *dst (reallocated only when the size changes: dst must be zeroed or an
 * it_image of the caller; free it with it_image_free), or 0 on timeout or when the source
 * has ended or failed for good (see it_source_state). The conversion runs on the calling
 * thread. dst NULL takes the frame without converting it: a frame the consumer skips costs
 * its decode and nothing more. meta may be NULL. One consumer at a time. A frame that cannot
 * be converted (out of memory, a hardware frame that cannot be downloaded) is counted as
 * dropped and 0 is returned; the source goes on. */
int it_source_take(it_source *s, it_image *dst, it_frame_meta *meta, int timeout_ms);

/* Wait up to timeout_ms like it_source_take, but leave the frame in place: returns 1 and its
 * meta when one waits, else 0. For a consumer that decides by the frame's timestamp whether
 * to convert it. */
int it_source_peek(it_source *s, it_frame_meta *meta, int timeout_ms);

/* Change the skip mode while running; thread-safe, applied from the next packet. Leaving
 * keyframes mode waits for the next key frame, so that no frame is decoded against
 * references that were never decoded. */
void it_source_set_skip(it_source *s, it_skip_mode mode);

/* A snapshot of the state and counters; thread-safe. */
void it_source_state(it_source *s, it_source_info *out);

/* Stop the reader (interrupting any blocking open or read) and free everything. Returns
 * within a few hundred ms whatever the network does. NULL is harmless. */
void it_source_close(it_source *s);

/* Copy text into out (size n), replacing the user:password of every URL in it
 * (the "admin:pw@" of rtsp://admin:pw@host/x becomes "***@"). Works on single URLs and on messages
 * that contain URLs; always NUL-terminates. Returns out. */
char *it_url_redact(const char *text, char *out, size_t n);

#endif
