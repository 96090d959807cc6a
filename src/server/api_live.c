/* Live camera output over HTTP: snapshot.jpg (the newest frame), MJPEG
 * (multipart/x-mixed-replace) and the event stream (Server-Sent Events).
 *
 * A stream is a libmicrohttpd response built from a content reader that must never
 * block a pool thread. When the reader has nothing to send it suspends its connection
 * and returns 0; a wake (a bus event, a new frame, or this file's timer thread, which
 * paces MJPEG to the viewer's fps and sends heartbeats) resumes it. The wake and the
 * suspend meet under the stream's mutex: a wake arriving while the reader is still
 * deciding leaves `pending`, which the reader sees before it suspends, so none is lost;
 * a wake after the stream ended does nothing, and the response's free callback removes
 * every wake source (each waits for a wake in progress) before the stream is freed.
 *
 * A viewer that reads slowly is never queued for: MJPEG always takes the newest frame
 * when the socket is ready (frames in between are skipped, and encoded once for every
 * viewer of the same size), and each SSE client has a bounded queue whose oldest events
 * are dropped, which the client is told with an `event: dropped`.
 *
 * SSE ids are event store ids: a stored event carries `id: N`, a live-only one
 * (detections) none, so a browser's Last-Event-ID is always a store id. A client that
 * comes back with one (the Last-Event-ID header, or last_event_id= on a first connect)
 * is first sent the stored events after it that pass its filters, oldest first, read
 * from the store a batch at a time as the socket takes them, then the live ones. No
 * event is lost or sent twice across the switch: the bus subscription is made before
 * the replay starts; while replaying, what the bus delivers is discarded (a stored
 * event the bus delivered was committed before, so a later replay batch reads it; the
 * replay ends on an empty batch read after the last discard); once live, stored events
 * with ids up to the last one the replay covered are skipped. More than SSE_REPLAY_MAX
 * events to replay (or an id this store never gave) is answered with an `event: reset`
 * naming a /v1/events cursor that pages through what was missed. */
#include "server/http_internal.h"

#include "core/core.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SSE_MAX_EVENTS 256             /* queued per SSE client */
#define SSE_MAX_BYTES (1u << 20)       /* bytes of event text queued per SSE client */
#define HEARTBEAT_MS 10000.0           /* at most this long without a byte on a stream */
#define MJPEG_FPS_DEFAULT 5.0
#define MJPEG_FPS_MAX 30.0
#define JPEG_QUALITY_DEFAULT 80
#define STREAM_BLOCK 65536
#define BOUNDARY "itscamframe"
#define SSE_REPLAY_MAX 10000           /* stored events replayed on resume at most */
#define SSE_REPLAY_BATCH 64            /* read from the store at a time */

enum { KIND_SSE, KIND_MJPEG };

typedef struct live_stream {
    struct live_stream *prev, *next; /* in live->streams (live->mu) */
    double wake_at;                  /* the timer wakes the stream then; 0: never (live->mu) */
    srv_server *s;
    struct MHD_Connection *conn;
    http_req *r;                     /* valid while the reader runs */
    int kind;
    const char *label;               /* the metrics route label (static) */
    double t0;
    int queued;                      /* the response was queued: stream_free records it */
    char camera[IT_FRAMES_ID_MAX + 1];
    pthread_mutex_t mu;              /* suspended, pending, ended */
    int suspended, pending, ended;
    /* the bytes being handed over: head, then body, then tail */
    char head[320];
    size_t head_len;
    const char *body;
    size_t body_len;
    const char *tail;
    size_t tail_len, pos;
    it_event *ev;                    /* owns body (SSE) */
    char *owned;                     /* owns body (SSE replay and reset: malloc'd text) */
    it_jpeg *jpg;                    /* owns body (MJPEG) */
    double last_write;               /* it_now_ms of the last bytes handed over */
    /* SSE */
    it_bus_sub *sub;
    api_event_filter flt;            /* type and class lists (camera: the subscription) */
    int replaying;                   /* reading stored events after replay_cursor */
    int64_t replay_cursor;           /* the last id the replay covered (or Last-Event-ID) */
    int64_t skip_upto;               /* live: stored events with ids up to this were sent */
    it_store_event *rbuf;            /* a replay batch: rbuf[ri .. rn) still to send */
    int rn, ri;
    uint64_t dropped;                /* live events dropped, not yet told */
    /* MJPEG */
    it_frames_watch *watch;
    int height, quality, annotate;
    double interval_ms, last_part;
    uint64_t last_seq;               /* the store's sequence of the last frame sent */
    it_jpeg *last_jpg;               /* the last part sent, repeated as the heartbeat */
} live_stream;

struct srv_live {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    live_stream *streams;
    int quit;
    double next_wake;                /* when the waiting timer wakes next; 0: it is not waiting */
    atomic_int stopping;
    double heartbeat_ms;
    pthread_t timer;
    int timer_started;
};

/* ---------------------------------------------------------------------------------
 * Waking and the timer
 * --------------------------------------------------------------------------------- */

/* Any thread: the stream has something to do. */
static void stream_wake(void *arg) {
    live_stream *st = arg;
    pthread_mutex_lock(&st->mu);
    if (st->suspended && !st->ended) {
        st->suspended = 0;
        MHD_resume_connection(st->conn);
    } else {
        st->pending = 1;
    }
    pthread_mutex_unlock(&st->mu);
}

/* Ask the timer to wake st at `at` (it_now_ms clock). The timer is signalled only when
 * it would sleep past `at`: an SSE stream asks for its heartbeat after every event, ten
 * seconds ahead, while the timer looks again within a second anyway, so fifty clients
 * no longer cost a timer wake-up (two context switches and a scan of every stream) per
 * event each. */
static void wake_at(struct srv_live *l, live_stream *st, double at) {
    pthread_mutex_lock(&l->mu);
    st->wake_at = at;
    if (!(at >= l->next_wake && l->next_wake > 0)) pthread_cond_signal(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

static void *timer_main(void *arg) {
    struct srv_live *l = arg;
    pthread_mutex_lock(&l->mu);
    while (!l->quit) {
        double now = it_now_ms(), next = now + 1000;
        for (live_stream *st = l->streams; st; st = st->next) {
            if (!st->wake_at) continue;
            if (st->wake_at <= now) {
                st->wake_at = 0;
                stream_wake(st); /* order: live->mu, then the stream's mu */
            } else if (st->wake_at < next) {
                next = st->wake_at;
            }
        }
        struct timespec ts;
        it_deadline_in(&ts, next - now);
        l->next_wake = next;
        pthread_cond_timedwait(&l->cv, &l->mu, &ts);
        l->next_wake = 0;
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

int srv_live_start(srv_server *s, char *err, size_t errlen) {
    struct srv_live *l = it_calloc(1, sizeof *l);
    s->bus = it_bus_new(IT_MAX(s->cfg.max_streams, 1) + 64); /* the SSE clients and a few sinks */
    s->frames = it_frames_new();
    if (!l || !s->bus || !s->frames) {
        it_free(l);
        snprintf(err, errlen, "out of memory for the live streams");
        return -1;
    }
    pthread_mutex_init(&l->mu, NULL);
    it_cond_init_monotonic(&l->cv);
    /* A stream sends something at least every heartbeat, well inside the send timeout
     * after which the guard drops a viewer that takes nothing. */
    l->heartbeat_ms = IT_MIN(HEARTBEAT_MS, s->cfg.stream_send_timeout_s * 1e3 / 3);
    s->live = l;
    if (pthread_create(&l->timer, NULL, timer_main, l) != 0) {
        snprintf(err, errlen, "cannot start the live streams' timer thread");
        return -1;
    }
    l->timer_started = 1;
    return 0;
}

void srv_live_end_streams(srv_server *s) {
    struct srv_live *l = s->live;
    if (!l) return;
    atomic_store(&l->stopping, 1);
    pthread_mutex_lock(&l->mu);
    for (live_stream *st = l->streams; st; st = st->next) stream_wake(st);
    pthread_mutex_unlock(&l->mu);
}

void srv_live_free(srv_server *s) {
    struct srv_live *l = s->live;
    if (l) {
        if (l->timer_started) {
            pthread_mutex_lock(&l->mu);
            l->quit = 1;
            pthread_cond_signal(&l->cv);
            pthread_mutex_unlock(&l->mu);
            pthread_join(l->timer, NULL);
        }
        if (l->streams) it_log(ITSCAM_LOG_WARN, "live: streams still open at stop");
        pthread_mutex_destroy(&l->mu);
        pthread_cond_destroy(&l->cv);
        it_free(l);
        s->live = NULL;
    }
    it_frames_free(s->frames);
    it_bus_free(s->bus);
    s->frames = NULL;
    s->bus = NULL;
}

/* ---------------------------------------------------------------------------------
 * The content reader
 * --------------------------------------------------------------------------------- */

static void release_out(live_stream *st) {
    it_event_unref(st->ev);
    st->ev = NULL;
    free(st->owned);
    st->owned = NULL;
    if (st->jpg) {
        it_jpeg_unref(st->last_jpg);
        st->last_jpg = st->jpg; /* kept for the heartbeat */
        st->jpg = NULL;
    }
    st->head_len = st->body_len = st->tail_len = st->pos = 0;
    st->body = st->tail = NULL;
}

/* Copy what is left of head, body and tail into buf. */
static size_t copy_out(live_stream *st, char *buf, size_t max) {
    const char *seg[3] = { st->head, st->body, st->tail };
    size_t len[3] = { st->head_len, st->body_len, st->tail_len };
    size_t n = 0, off = 0;
    for (int i = 0; i < 3 && n < max; i++) {
        if (st->pos < off + len[i]) {
            size_t from = st->pos - off, k = IT_MIN(len[i] - from, max - n);
            memcpy(buf + n, seg[i] + from, k);
            n += k;
            st->pos += k;
        }
        off += len[i];
    }
    if (st->pos == st->head_len + st->body_len + st->tail_len) release_out(st);
    return n;
}

static int out_pending(const live_stream *st) {
    return st->head_len + st->body_len + st->tail_len > 0;
}

/* Send text (malloc'd, taken) as the body after head's n bytes. */
static void sse_owned(live_stream *st, int n, char *text, size_t len) {
    st->head_len = (size_t)n;
    st->owned = text;
    st->body = text;
    st->body_len = len;
    st->tail = "\n\n";
    st->tail_len = 2;
}

/* An `event: reset` after head's n bytes: the client should read what it missed from
 * /v1/events (from the cursor given, oldest first); live events follow. */
static void sse_reset(live_stream *st, int n, const char *reason, int64_t after) {
    char cur[32];
    api_events_cursor(1, after, cur, sizeof cur);
    json_t *j = json_pack("{s:s,s:I,s:s}", "reason", reason, "last_event_id", (json_int_t)after, "cursor", cur);
    char *t = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!t) {
        st->head_len = (size_t)n;
        return;
    }
    n += snprintf(st->head + n, sizeof st->head - (size_t)n, "event: reset\ndata: ");
    sse_owned(st, n, t, strlen(t));
}

/* The next replayed event into the output: 1 when there is one, 0 when the replay is
 * over (the stream goes live). Reads the store under cam_mu, a batch at a time. */
static int sse_replay(live_stream *st) {
    srv_server *s = st->s;
    while (st->ri == st->rn) {
        /* Discard what the bus delivered so far (see the top of the file), then read on. */
        it_event *e;
        while ((e = it_bus_pop(st->sub, NULL))) it_event_unref(e);
        it_event_filter f = {.ascending = 1};
        api_event_filter_store(&st->flt, &f);
        st->rn = st->ri = 0;
        itscam_status rc = ITSCAM_ERR_IO;
        pthread_mutex_lock(&s->cam_mu);
        int64_t next;
        if (s->store)
            rc = it_store_events_after(s->store, &f, st->replay_cursor, SSE_REPLAY_BATCH, st->rbuf, &st->rn, &next);
        pthread_mutex_unlock(&s->cam_mu);
        if (rc != ITSCAM_OK || !st->rn) {
            if (rc != ITSCAM_OK) it_log(ITSCAM_LOG_WARN, "event stream: replay: %s", itscam_last_error());
            st->replaying = 0;
            st->skip_upto = st->replay_cursor;
            it_free(st->rbuf);
            st->rbuf = NULL;
            st->rn = st->ri = 0;
            if (rc != ITSCAM_OK) {
                sse_reset(st, 0, "the event store could not be read", st->replay_cursor);
                return 1;
            }
            return 0;
        }
    }
    const it_store_event *e = &st->rbuf[st->ri++];
    st->replay_cursor = e->id;
    size_t len;
    char *t = it_store_event_text(e, &len);
    if (!t) return 1; /* out of memory: this one is skipped; the next call goes on */
    int n = snprintf(st->head, sizeof st->head, "event: %s\nid: %" PRId64 "\ndata: ", e->type, e->id);
    sse_owned(st, n, t, len);
    return 1;
}

/* Set up the next replayed or queued event, after a notice of the events dropped before
 * it: 1 when there is something to send, 0 when there is nothing. */
static int sse_take(live_stream *st) {
    if (st->replaying && sse_replay(st)) return 1;
    it_event *e;
    uint64_t dropped;
    /* Events the filters refuse, or the replay already sent, are passed over. */
    while ((e = it_bus_pop(st->sub, &dropped)) || dropped) {
        st->dropped += dropped;
        if (!e) continue;
        if ((e->id > 0 && e->id <= st->skip_upto) || !api_event_filter_match(&st->flt, e)) {
            it_event_unref(e);
            continue;
        }
        break;
    }
    int n = 0;
    if (st->dropped)
        n = snprintf(st->head, sizeof st->head, "event: dropped\ndata: {\"dropped\":%" PRIu64 "}\n\n", st->dropped);
    st->dropped = 0;
    if (e) {
        /* Live-only events (id 0) carry no id line: the client's Last-Event-ID stays the
         * last stored event's, which is what resuming needs. */
        n += snprintf(st->head + n, sizeof st->head - (size_t)n, "event: %s\n", e->type);
        if (e->id > 0) n += snprintf(st->head + n, sizeof st->head - (size_t)n, "id: %" PRId64 "\n", e->id);
        n += snprintf(st->head + n, sizeof st->head - (size_t)n, "data: ");
        st->ev = e;
        st->body = e->data;
        st->body_len = e->len;
        st->tail = "\n\n";
        st->tail_len = 2;
    }
    st->head_len = (size_t)n;
    return out_pending(st);
}

/* Fill the output with the next SSE bytes: 1 when there are some, 0 when there is
 * nothing to send before the heartbeat (the timer is set). */
static int sse_next(live_stream *st) {
    if (sse_take(st)) return 1;
    double now = it_now_ms(), hb = st->s->live->heartbeat_ms;
    if (now - st->last_write >= hb) {
        st->head_len = (size_t)snprintf(st->head, sizeof st->head, ": ping\n\n");
        return 1;
    }
    wake_at(st->s->live, st, st->last_write + hb);
    return 0;
}

static void mjpeg_part(live_stream *st, it_jpeg *j) {
    st->jpg = j;
    st->head_len = (size_t)snprintf(st->head, sizeof st->head,
                                    "--" BOUNDARY "\r\nContent-Type: image/jpeg\r\nContent-Length: %zu\r\n"
                                    "X-Timestamp: %.6f\r\nX-Frame: %" PRId64 "\r\n\r\n",
                                    j->len, j->captured_at, j->frame_index);
    st->body = (const char *)j->data;
    st->body_len = j->len;
    st->tail = "\r\n";
    st->tail_len = 2;
}

/* Fill the output with the next MJPEG part: 1 when there is one, 0 when there is nothing
 * to send yet (the timer is set; a new frame wakes the stream too), -1 when the stream
 * ends (the camera is gone, or encoding failed). */
static int mjpeg_next(live_stream *st) {
    struct srv_live *l = st->s->live;
    double now = it_now_ms();
    if (st->last_part && now < st->last_part + st->interval_ms) { /* the viewer's fps */
        wake_at(l, st, st->last_part + st->interval_ms);
        return 0;
    }
    it_jpeg *j = NULL;
    it_frames_status fs =
        it_frames_jpeg(st->s->frames, st->camera, st->height, st->quality, st->annotate, st->last_seq, &j);
    switch (fs) {
    case IT_FRAMES_OK:
        st->last_seq = j->seq;
        st->last_part = now;
        mjpeg_part(st, j);
        return 1;
    case IT_FRAMES_NO_FRAME:
    case IT_FRAMES_NOT_NEWER:
        /* A camera that stalled: repeat the last part as the heartbeat, which also finds
         * viewers that went away. */
        if (st->last_jpg && now - st->last_write >= l->heartbeat_ms) {
            it_jpeg_ref(st->last_jpg);
            mjpeg_part(st, st->last_jpg);
            return 1;
        }
        wake_at(l, st, st->last_write + l->heartbeat_ms);
        return 0;
    case IT_FRAMES_UNKNOWN_CAMERA:
        return -1;
    case IT_FRAMES_ERROR:
        break;
    }
    it_log(ITSCAM_LOG_WARN, "mjpeg %s: %s", st->camera, itscam_last_error());
    return -1;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    live_stream *st = cls;
    for (;;) {
        if (out_pending(st)) {
            size_t n = copy_out(st, buf, max);
            /* SSE: the events queued already go out in the same block, so a client
             * catching up (a replay, or the burst one inference batch publishes: a
             * frame's detections and its tracks' events together) costs one send and one
             * turn of the server's loop per block rather than per event. */
            while (st->kind == KIND_SSE && n < max && !out_pending(st) && sse_take(st))
                n += copy_out(st, buf + n, max - n);
            st->last_write = it_now_ms();
            http_stream_wrote(st->r);
            return (ssize_t)n;
        }
        if (atomic_load(&st->s->live->stopping)) return MHD_CONTENT_READER_END_OF_STREAM;
        int got = st->kind == KIND_SSE ? sse_next(st) : mjpeg_next(st);
        if (got > 0) continue;
        if (got < 0) return MHD_CONTENT_READER_END_OF_STREAM;
        pthread_mutex_lock(&st->mu);
        if (st->pending) { /* a wake came while deciding: look again */
            st->pending = 0;
            pthread_mutex_unlock(&st->mu);
            continue;
        }
        st->suspended = 1;
        MHD_suspend_connection(st->conn);
        pthread_mutex_unlock(&st->mu);
        return 0;
    }
}

/* The response is gone (the stream ended, the client left, or the server stopped). */
static void stream_free(void *cls) {
    live_stream *st = cls;
    srv_server *s = st->s;
    pthread_mutex_lock(&st->mu);
    st->ended = 1;
    pthread_mutex_unlock(&st->mu);
    /* Each waits for a wake of this stream in progress. */
    it_bus_unsubscribe(st->sub);
    it_frames_watch_remove(s->frames, st->watch);
    pthread_mutex_lock(&s->live->mu);
    if (st->prev) st->prev->next = st->next;
    else s->live->streams = st->next;
    if (st->next) st->next->prev = st->prev;
    pthread_mutex_unlock(&s->live->mu);
    it_event_unref(st->ev);
    free(st->owned);
    it_free(st->rbuf);
    it_jpeg_unref(st->jpg);
    it_jpeg_unref(st->last_jpg);
    if (st->queued) srv_metrics_request(&s->mx, st->label, "", 200, (it_now_ms() - st->t0) / 1e3, 0);
    pthread_mutex_destroy(&st->mu);
    it_free(st);
}

/* ---------------------------------------------------------------------------------
 * Handlers
 * --------------------------------------------------------------------------------- */

/* Query argument `key` as a number in [lo, hi] (def when absent). 0, or -1 after the 400. */
static int query_num(http_req *r, const char *key, double lo, double hi, double def, double *out,
                     enum MHD_Result *ret) {
    const char *v = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, key);
    *out = def;
    if (!v) return 0;
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (!*v || *end || errno || !(d >= lo && d <= hi)) {
        *ret = http_respond_error(r, 400, "query argument %s='%.40s' is not a number in %g..%g", key, v, lo, hi);
        return -1;
    }
    *out = d;
    return 0;
}

typedef struct view_args {
    int height, quality, annotate;
    double fps;
} view_args;

static int view_query(http_req *r, view_args *a, enum MHD_Result *ret) {
    double h, q, an, fps;
    if (query_num(r, "height", 0, IT_FRAMES_MAX_HEIGHT, 0, &h, ret) ||
        query_num(r, "quality", 1, 100, JPEG_QUALITY_DEFAULT, &q, ret) ||
        query_num(r, "annotate", 0, 1, 0, &an, ret) ||
        query_num(r, "fps", 0.1, MJPEG_FPS_MAX, MJPEG_FPS_DEFAULT, &fps, ret))
        return -1;
    a->height = (int)h;
    a->quality = (int)q;
    a->annotate = an != 0;
    a->fps = fps;
    return 0;
}

static enum MHD_Result unknown_camera(http_req *r) {
    return http_respond_error(r, 404, "unknown camera '%s'", r->camera);
}

static enum MHD_Result no_frame(http_req *r) {
    return http_respond_error_h(r, 503, "camera has no frame yet; retry shortly", MHD_HTTP_HEADER_RETRY_AFTER, "1");
}

static void jpeg_release(void *cls) {
    it_jpeg_unref(cls);
}

/* The camera's newest frame encoded as the viewer asked (1 with the answer in *ret when
 * there is none: unknown camera 404, no frame yet 503, an encoding error 500). */
static int newest_jpeg(http_req *r, const view_args *a, it_jpeg **j, enum MHD_Result *ret) {
    switch (it_frames_jpeg(r->s->frames, r->camera, a->height, a->quality, a->annotate, 0, j)) {
    case IT_FRAMES_OK:
        return 0;
    case IT_FRAMES_UNKNOWN_CAMERA:
        *ret = unknown_camera(r);
        return 1;
    case IT_FRAMES_NO_FRAME:
    case IT_FRAMES_NOT_NEWER:
        *ret = no_frame(r);
        return 1;
    case IT_FRAMES_ERROR:
    default:
        *ret = http_respond_error(r, 500, "%s", itscam_last_error());
        return 1;
    }
}

enum MHD_Result api_snapshot(http_req *r) {
    view_args a;
    enum MHD_Result ret;
    if (view_query(r, &a, &ret)) return ret;
    it_jpeg *j;
    if (newest_jpeg(r, &a, &j, &ret)) return ret;
    /* The cached encoding itself is the body: no copy per viewer. */
    struct MHD_Response *resp = MHD_create_response_from_buffer_with_free_callback_cls(j->len, j->data, jpeg_release, j);
    if (!resp) {
        it_jpeg_unref(j);
        return MHD_NO;
    }
    char frame[32], stamp[32];
    snprintf(frame, sizeof frame, "%" PRId64, j->frame_index);
    snprintf(stamp, sizeof stamp, "%.6f", j->captured_at);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "image/jpeg");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(resp, "X-Frame", frame);
    MHD_add_response_header(resp, "X-Timestamp", stamp);
    return http_respond_with(r, 200, resp);
}

/* Start streaming st (filled by the caller) as r's answer. */
static enum MHD_Result start_stream(http_req *r, live_stream *st, const char *ctype) {
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, STREAM_BLOCK, stream_read, st,
                                                                  stream_free);
    if (!resp) {
        stream_free(st);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache, no-store");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no"); /* proxies: pass each part at once */
    /* The request is recorded in the metrics when the stream ends (stream_free). */
    st->queued = 1;
    enum MHD_Result rc = MHD_queue_response(r->conn, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    r->answered = 1;
    return rc;
}

/* A stream record for r, linked into the server's list (the timer sees it). */
static live_stream *stream_new(http_req *r, int kind) {
    live_stream *st = it_calloc(1, sizeof *st);
    if (!st) return NULL;
    st->s = r->s;
    st->conn = r->conn;
    st->r = r;
    st->kind = kind;
    st->label = r->route_label;
    st->t0 = r->t0;
    st->last_write = it_now_ms();
    snprintf(st->camera, sizeof st->camera, "%s", r->camera);
    pthread_mutex_init(&st->mu, NULL);
    struct srv_live *l = r->s->live;
    pthread_mutex_lock(&l->mu);
    st->next = l->streams;
    if (l->streams) l->streams->prev = st;
    l->streams = st;
    pthread_mutex_unlock(&l->mu);
    return st;
}

static enum MHD_Result refuse_stopping(http_req *r) {
    return http_respond_error_h(r, 503, "the server is shutting down", MHD_HTTP_HEADER_RETRY_AFTER, "1");
}

enum MHD_Result api_mjpeg(http_req *r) {
    view_args a;
    enum MHD_Result ret;
    if (view_query(r, &a, &ret)) return ret;
    if (atomic_load(&r->s->live->stopping)) return refuse_stopping(r);
    /* A camera without a frame yet is answered like the snapshot: a stream that cannot
     * send anything would only be dropped by the send timeout. */
    it_jpeg *j;
    if (newest_jpeg(r, &a, &j, &ret)) return ret;
    live_stream *st = stream_new(r, KIND_MJPEG);
    if (!st) {
        it_jpeg_unref(j);
        return http_respond_error(r, 500, "out of memory");
    }
    st->height = a.height;
    st->quality = a.quality;
    st->annotate = a.annotate;
    st->interval_ms = 1e3 / a.fps;
    /* The first part goes out at once. */
    st->last_seq = j->seq;
    st->last_part = it_now_ms();
    mjpeg_part(st, j);
    if (!(st->watch = it_frames_watch_add(r->s->frames, r->camera, stream_wake, st))) {
        stream_free(st);
        return http_respond_error(r, 500, "out of memory");
    }
    return start_stream(r, st, "multipart/x-mixed-replace; boundary=" BOUNDARY);
}

/* The id to resume after: the Last-Event-ID header (a reconnecting EventSource sends
 * it), else last_event_id= (a first connect can only use the URL); 0 replays from the
 * first stored event. -2 when neither is given; -1 with a 400 in *ret when not an id. */
static int64_t resume_id(http_req *r, enum MHD_Result *ret) {
    const char *h = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Last-Event-ID");
    const char *q = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "last_event_id");
    const char *v = h ? h : q;
    if (!v) return -2;
    size_t n = strlen(v);
    int ok = n >= 1 && n <= 18;
    for (size_t i = 0; ok && i < n; i++) ok = v[i] >= '0' && v[i] <= '9';
    if (!ok) {
        *ret = http_respond_error(r, 400, "%s '%.40s' is not an event id", h ? "Last-Event-ID" : "last_event_id=", v);
        return -1;
    }
    return strtoll(v, NULL, 10);
}

enum MHD_Result api_events(http_req *r) {
    static const char *const keys[] = {"camera", "type", "class", "last_event_id", NULL};
    enum MHD_Result ret;
    if (api_query_unknown(r, keys, &ret)) return ret;
    int64_t after = resume_id(r, &ret);
    if (after == -1) return ret;
    if (atomic_load(&r->s->live->stopping)) return refuse_stopping(r);
    live_stream *st = stream_new(r, KIND_SSE);
    if (!st) return http_respond_error(r, 500, "out of memory");
    if (api_event_filter_parse(r, &st->flt, &ret)) {
        stream_free(st);
        return ret;
    }
    /* Subscribed before the replay is decided: nothing committed from now on is missed. */
    if (!(st->sub = it_bus_subscribe(r->s->bus, st->flt.camera, SSE_MAX_EVENTS, SSE_MAX_BYTES, stream_wake, st))) {
        stream_free(st);
        return http_respond_error_h(r, 503, itscam_last_error(), MHD_HTTP_HEADER_RETRY_AFTER, "5");
    }
    /* Types (and, with a class filter, stored events only: live-only ones carry no class
     * the filter can read) are filtered by the bus, before queueing: a client never
     * wakes for what it did not ask for. Classes are checked when read. */
    it_bus_sub_filter(st->sub, st->flt.types, st->flt.n_types, st->flt.n_classes > 0);
    /* The first bytes go out at once, so that the client sees the stream open. */
    int n = snprintf(st->head, sizeof st->head, "retry: 2000\n: itscam events\n\n");
    const char *reset = NULL;
    if (after >= 0) {
        it_event_filter f = {.ascending = 1};
        api_event_filter_store(&st->flt, &f);
        int64_t last = 0, pending = 0;
        itscam_status rc = ITSCAM_ERR_IO;
        pthread_mutex_lock(&r->s->cam_mu);
        if (r->s->store && (rc = it_store_events_last_id(r->s->store, &last)) == ITSCAM_OK)
            rc = it_store_events_count_after(r->s->store, &f, after, SSE_REPLAY_MAX + 1, &pending);
        pthread_mutex_unlock(&r->s->cam_mu);
        if (rc != ITSCAM_OK) reset = "the event store could not be read";
        else if (after > last) /* the client's history is of another store: all of this one is new to it */
            reset = "Last-Event-ID is beyond this store's last event (the store was replaced)", after = 0;
        else if (pending > SSE_REPLAY_MAX) reset = "more than 10000 events to replay; read them from /v1/events";
        else if (pending > 0 && !(st->rbuf = it_malloc(SSE_REPLAY_BATCH * sizeof *st->rbuf))) reset = "out of memory";
        else if (pending > 0) st->replaying = 1, st->replay_cursor = after;
        else st->skip_upto = after;
    }
    if (reset) sse_reset(st, n, reset, after);
    else st->head_len = (size_t)n;
    return start_stream(r, st, "text/event-stream");
}
