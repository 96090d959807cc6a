/* One camera source on FFmpeg: open, read and decode on a reader thread, keep only the
 * newest decoded frame (converted to BGR when a consumer takes it), and reconnect a live
 * source with backoff when it drops or stalls. */
#include "stream/source.h"

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/hwcontext.h>
#include <libavutil/imgutils.h>
#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>
#ifdef ITSCAM_HAVE_AVDEVICE
#include <libavdevice/avdevice.h>
#endif

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BACKOFF_FIRST_MS 1000.0
#define BACKOFF_MAX_MS 30000.0
#define CAPTURE_RING 64     /* packets in flight in the decoder, for their capture times */
#define MAX_PACE_GAP_MS 2000.0 /* a file timestamp jump beyond this restarts the pacing */
/* Keyframes mode: video packets keep the stall clock going between key frames (a GOP can be
 * longer than the stall timeout), but a key frame must still decode this often. */
#define KEYFRAME_STALL_FACTOR 4.0
#define KEYFRAME_STALL_MIN_MS 20000.0
/* Hardware frames the decoder's pool holds beyond its own needs: the slot and the frame a
 * consumer is downloading. */
#define EXTRA_HW_FRAMES 2

/* What the reader's loops end with. */
typedef enum { RUN_STOP, RUN_EOF, RUN_FAIL } run_end;

struct it_source {
    it_source_params p;
    char *url, *hwaccel;
    char redacted[512];       /* for messages: never the credentials */
    int live;                 /* a network or device source: its end is a disconnect */
    int device;               /* a /dev/videoN: opened with the v4l2 input format */
    int lossless;             /* p.lossless on a file */
    pthread_t thread;
    atomic_int stop;
    atomic_int skip_req;      /* it_skip_mode asked for, applied by the reader */

    pthread_mutex_t mu;       /* guards everything below up to the reader-only part */
    pthread_cond_t cv;        /* a frame arrived, the reader finished, or stop */
    AVFrame *slot;            /* the newest decoded frame, not converted (a reference) */
    it_frame_meta slot_meta;
    int slot_full, finished;
    it_source_info info;

    /* Consumer only (one at a time). */
    AVFrame *taken, *sw;      /* the frame being converted; its download from the hardware */
    struct SwsContext *sws;

    /* Reader thread only. */
    double deadline;          /* monotonic ms after which blocking FFmpeg calls give up; 0 none */
    AVFormatContext *fmt;
    AVCodecContext *dec;
    AVPacket *pkt;
    AVFrame *frame;
    int vstream, decode_errors;
    AVRational tb;
    it_skip_mode skip;        /* applied to the decoder */
    int key_flags_seen;       /* the demuxer marks key packets: non-key ones can be dropped */
    AVBufferRef *hwdev;       /* kept across reconnects: creating a device is slow */
    int hw_tried;             /* hwaccel auto found no device: software for good */
    enum AVPixelFormat hw_fmt;/* the decoder's hardware output format; NONE in software */
    double last_packet;       /* monotonic ms of the last video packet (keyframes mode) */
    int64_t next_index;
    double last_frame;        /* monotonic ms of the last decoded frame (the stall clock) */
    double last_pts_s;        /* the latest video packet timestamp read, for the truncation
                                 check (packets, not frames: keyframes mode decodes few) */
    int pace_set;
    double pace_base_ms, pace_base_ts;
    struct { int64_t pts; double wall; } ring[CAPTURE_RING];
    int ring_pos;
    double last_captured;
};

static double wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

const char *it_skip_name(it_skip_mode m) {
    static const char *const names[] = { "none", "nonref", "keyframes" };
    return (unsigned)m < sizeof names / sizeof *names ? names[m] : "unknown";
}

int it_skip_parse(const char *name, it_skip_mode *out) {
    for (int m = IT_SKIP_NONE; m <= IT_SKIP_KEYFRAMES; m++)
        if (name && !strcmp(name, it_skip_name((it_skip_mode)m))) {
            *out = (it_skip_mode)m;
            return 0;
        }
    return -1;
}

it_source_params it_source_default_params(void) {
    return (it_source_params){ .transport = IT_TRANSPORT_TCP, .realtime = 1, .stall_timeout_s = 5,
                               .open_timeout_s = 10, .hwaccel = "none", .decode_threads = 1 };
}

const char *it_source_state_name(it_stream_state s) {
    static const char *const names[] = { "starting", "streaming", "stalled", "reconnecting",
                                         "failed", "ended", "disabled" };
    return (unsigned)s < sizeof names / sizeof *names ? names[s] : "unknown";
}

const char *it_source_reason_name(it_source_reason r) {
    static const char *const names[] = { "", "bad URL", "not found", "auth refused", "network error",
                                         "timed out", "not a playable media file", "no video stream",
                                         "decoder error", "stalled", "end of stream" };
    return (unsigned)r < sizeof names / sizeof *names ? names[r] : "unknown";
}

/* The userinfo of a URL ends at '@' and cannot contain '/', '?', '#' or whitespace. */
char *it_url_redact(const char *text, char *out, size_t n) {
    if (!n) return out;
    size_t o = 0;
    const char *p = text ? text : "";
    while (*p && o + 1 < n) {
        const char *sep = strstr(p, "://");
        if (!sep) break;
        const char *auth = sep + 3, *q = auth;
        while (*q && *q != '@' && *q != '/' && *q != '?' && *q != '#' && *q != ' ' && *q != '\n' &&
               *q != '"' && *q != '\'')
            q++;
        size_t keep = (size_t)(auth - p);
        size_t k = IT_MIN(keep, n - 1 - o);
        memcpy(out + o, p, k);
        o += k;
        if (*q == '@' && q > auth) {
            int w = snprintf(out + o, n - o, "***");
            o = IT_MIN(o + (size_t)(w > 0 ? w : 0), n - 1);
            p = q;  /* continue at '@' */
        } else {
            p = auth;
        }
    }
    size_t rest = strlen(p);
    size_t k = o + 1 < n ? IT_MIN(rest, n - 1 - o) : 0;
    memcpy(out + o, p, k);
    out[o + k] = 0;
    return out;
}

/* FFmpeg's own messages go to our log at debug level, redacted: they may quote URLs. */
static void av_log_to_it(void *avcl, int level, const char *fmt, va_list vl) {
    if (level > AV_LOG_WARNING || !it_log_enabled(ITSCAM_LOG_DEBUG)) return;
    char line[1024], red[1024];
    int prefix = 1;
    av_log_format_line2(avcl, level, fmt, vl, line, sizeof line, &prefix);
    size_t len = strlen(line);
    while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
    if (len) it_log(ITSCAM_LOG_DEBUG, "ffmpeg: %s", it_url_redact(line, red, sizeof red));
}

static pthread_once_t av_once = PTHREAD_ONCE_INIT;
static void av_setup(void) {
    av_log_set_callback(av_log_to_it);
    avformat_network_init();
#ifdef ITSCAM_HAVE_AVDEVICE
    avdevice_register_all();
#endif
}

static int interrupted(void *arg) {
    it_source *s = arg;
    return atomic_load(&s->stop) || (s->deadline > 0 && it_now_ms() > s->deadline);
}

/* ---- state, under the lock ---- */

/* Under the lock; returns whether the state changed (the caller logs it, unlocked). */
static int set_state_locked(it_source *s, it_stream_state st) {
    if (s->info.state == st) return 0;
    s->info.state = st;
    s->info.state_since = wall_ms();
    return 1;
}

static void log_state(it_source *s, it_stream_state st) {
    it_log(ITSCAM_LOG_INFO, "source %s: %s", s->redacted, it_source_state_name(st));
}

static void set_state(it_source *s, it_stream_state st) {
    pthread_mutex_lock(&s->mu);
    int changed = set_state_locked(s, st);
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (changed && s->p.notify) s->p.notify(s->p.notify_arg);
    if (changed) log_state(s, st);
}

static void set_error(it_source *s, it_source_reason r, const char *what, int averr) {
    char buf[AV_ERROR_MAX_STRING_SIZE] = "", msg[256], red[256];
    if (averr) av_strerror(averr, buf, sizeof buf);
    snprintf(msg, sizeof msg, "%s%s%s%s%s", it_source_reason_name(r), what ? ": " : "", what ? what : "",
             buf[0] ? ": " : "", buf);
    it_url_redact(msg, red, sizeof red);
    pthread_mutex_lock(&s->mu);
    s->info.reason = r;
    snprintf(s->info.last_error, sizeof s->info.last_error, "%s", red);
    pthread_mutex_unlock(&s->mu);
    /* Nobody may be watching a live source's state while it retries: say it. A file's
     * failure is final and its caller reports it. */
    it_log(s->live ? ITSCAM_LOG_WARN : ITSCAM_LOG_INFO, "source %s: %s", s->redacted, red);
}

/* Sleep until monotonic time t or until stop; returns 1 when stopped. */
static int sleep_until(it_source *s, double t) {
    pthread_mutex_lock(&s->mu);
    while (!atomic_load(&s->stop)) {
        double now = it_now_ms();
        if (now >= t) break;
        struct timespec ts;
        it_deadline_in(&ts, t - now);
        pthread_cond_timedwait(&s->cv, &s->mu, &ts);
    }
    pthread_mutex_unlock(&s->mu);
    return atomic_load(&s->stop);
}

/* ---- skipping ---- */

static enum AVDiscard discard_for(it_skip_mode m) {
    return m == IT_SKIP_KEYFRAMES ? AVDISCARD_NONKEY : m == IT_SKIP_NONREF ? AVDISCARD_NONREF : AVDISCARD_DEFAULT;
}

/* Apply the requested skip mode before the next packet (key: the packet is a key frame,
 * or the decoder is fresh). Leaving keyframes mode waits for a key frame: the frames in
 * between refer to pictures that were never decoded. */
static void apply_skip(it_source *s, int key) {
    it_skip_mode want = (it_skip_mode)atomic_load(&s->skip_req);
    if (want == s->skip || (s->skip == IT_SKIP_KEYFRAMES && !key)) return;
    s->skip = want;
    s->dec->skip_frame = discard_for(want);
}

/* ---- open ---- */

static it_source_reason classify(int err, int live) {
    switch (err) {
    case AVERROR(ENOENT): case AVERROR_HTTP_NOT_FOUND: return IT_REASON_NOT_FOUND;
    case AVERROR_HTTP_UNAUTHORIZED: case AVERROR_HTTP_FORBIDDEN: case AVERROR(EACCES): return IT_REASON_AUTH;
    case AVERROR_PROTOCOL_NOT_FOUND: case AVERROR(EINVAL): return IT_REASON_BAD_URL;
    case AVERROR_EXIT: case AVERROR(ETIMEDOUT): return IT_REASON_TIMEOUT;
    case AVERROR_INVALIDDATA: case AVERROR_EOF: return IT_REASON_FORMAT;
    case AVERROR_STREAM_NOT_FOUND: return IT_REASON_NO_VIDEO;
    case AVERROR_DECODER_NOT_FOUND: return IT_REASON_DECODER;
    default: return live ? IT_REASON_NETWORK : IT_REASON_FORMAT;
    }
}

static void close_input(it_source *s) {
    avcodec_free_context(&s->dec);
    avformat_close_input(&s->fmt);
    s->deadline = 0;
}

/* ---- hardware decoding ---- */

/* The decoder offers its formats, hardware first when a device is attached: take the
 * hardware one, or software when this stream cannot be decoded there (profile, size). */
static enum AVPixelFormat pick_format(AVCodecContext *ctx, const enum AVPixelFormat *fmts) {
    it_source *s = ctx->opaque;
    for (const enum AVPixelFormat *p = fmts; *p != AV_PIX_FMT_NONE; p++)
        if (*p == s->hw_fmt) return *p;
    it_log(ITSCAM_LOG_WARN, "source %s: hwaccel %s cannot decode this stream, decoding in software", s->redacted,
           s->info.hwaccel);
    s->hw_fmt = AV_PIX_FMT_NONE;
    for (const enum AVPixelFormat *p = fmts; *p != AV_PIX_FMT_NONE; p++) {
        const AVPixFmtDescriptor *d = av_pix_fmt_desc_get(*p);
        if (d && !(d->flags & AV_PIX_FMT_FLAG_HWACCEL)) return *p;
    }
    return AV_PIX_FMT_NONE;
}

/* The pixel format through which codec decodes on a device of this type, or NONE. */
static enum AVPixelFormat hw_format_for(const AVCodec *codec, enum AVHWDeviceType type) {
    for (int i = 0;; i++) {
        const AVCodecHWConfig *c = avcodec_get_hw_config(codec, i);
        if (!c) return AV_PIX_FMT_NONE;
        if ((c->methods & AV_CODEC_HW_CONFIG_METHOD_HW_DEVICE_CTX) && c->device_type == type) return c->pix_fmt;
    }
}

/* Attach a hardware device to the decoder as p.hwaccel asks. Returns 0 (hardware, or
 * software where auto found none), or an AVERROR after recording why an explicit device
 * cannot be used. The device is created once per source and kept across reconnects; when
 * auto finds none, it is not looked for again, and that is said once per process. */
static int attach_hwaccel(it_source *s, const AVCodec *codec) {
    s->hw_fmt = AV_PIX_FMT_NONE;
    if (!strcmp(s->hwaccel, "none")) return 0;
    int is_auto = !strcmp(s->hwaccel, "auto");
    static const enum AVHWDeviceType auto_types[] = { AV_HWDEVICE_TYPE_CUDA, AV_HWDEVICE_TYPE_VAAPI };
    enum AVHWDeviceType one[1] = { av_hwdevice_find_type_by_name(s->hwaccel) };
    const enum AVHWDeviceType *types = is_auto ? auto_types : one;
    int ntypes = is_auto ? 2 : 1, rc = 0;
    char tried[160] = "";
    if (!s->hwdev && !s->hw_tried) {
        for (int i = 0; i < ntypes && !s->hwdev; i++) {
            const char *name = av_hwdevice_get_type_name(types[i]);
            if (types[i] == AV_HWDEVICE_TYPE_NONE) {
                rc = AVERROR(ENOSYS);
            } else if (hw_format_for(codec, types[i]) == AV_PIX_FMT_NONE) {
                rc = AVERROR(ENOSYS);
            } else if ((rc = av_hwdevice_ctx_create(&s->hwdev, types[i], NULL, NULL, 0)) >= 0) {
                pthread_mutex_lock(&s->mu);
                snprintf(s->info.hwaccel, sizeof s->info.hwaccel, "%s", name);
                pthread_mutex_unlock(&s->mu);
                it_log(ITSCAM_LOG_INFO, "source %s: decoding on %s", s->redacted, name);
                break;
            }
            char err[AV_ERROR_MAX_STRING_SIZE];
            if (rc != AVERROR(ENOSYS)) av_strerror(rc, err, sizeof err);
            size_t used = strlen(tried);
            snprintf(tried + used, sizeof tried - used, "%s%s: %s", used ? ", " : "", name ? name : s->hwaccel,
                     rc == AVERROR(ENOSYS) ? "not supported for this codec" : "cannot open the device: ");
            if (rc != AVERROR(ENOSYS)) {
                used = strlen(tried);
                snprintf(tried + used, sizeof tried - used, "%s", err);
            }
        }
        if (!s->hwdev) {
            if (!is_auto) {
                char what[224];
                snprintf(what, sizeof what, "hwaccel: no hardware decoder (%s)", tried);
                set_error(s, IT_REASON_DECODER, what, 0);
                return rc < 0 ? rc : AVERROR(ENOSYS);
            }
            s->hw_tried = 1;
            static atomic_int said;
            if (!atomic_exchange(&said, 1))
                it_log(ITSCAM_LOG_INFO, "hwaccel auto: no hardware decoder (%s): decoding in software", tried);
        }
    }
    if (!s->hwdev) return 0;
    const AVHWDeviceContext *dev = (const AVHWDeviceContext *)s->hwdev->data;
    s->hw_fmt = hw_format_for(codec, dev->type);
    if (s->hw_fmt == AV_PIX_FMT_NONE) {  /* a device of the first stream's codec, not this one */
        it_log(ITSCAM_LOG_WARN, "source %s: hwaccel %s cannot decode %s, decoding in software", s->redacted,
               av_hwdevice_get_type_name(dev->type), codec->name);
        return 0;
    }
    s->dec->hw_device_ctx = av_buffer_ref(s->hwdev);
    if (!s->dec->hw_device_ctx) return set_error(s, IT_REASON_DECODER, "out of memory", 0), AVERROR(ENOMEM);
    s->dec->opaque = s;
    s->dec->get_format = pick_format;
    s->dec->extra_hw_frames = EXTRA_HW_FRAMES;  /* the slot holds a hardware frame until taken */
    return 0;
}

/* Open the input and its video decoder. Returns IT_REASON_NONE, or the reason after
 * recording the error; the caller closes either way. */
static it_source_reason open_input(it_source *s) {
    s->fmt = avformat_alloc_context();
    if (!s->fmt) return set_error(s, IT_REASON_DECODER, "out of memory", 0), IT_REASON_DECODER;
    s->fmt->interrupt_callback = (AVIOInterruptCB){ interrupted, s };
    AVDictionary *opt = NULL;
    if (!strncmp(s->url, "rtsp://", 7) || !strncmp(s->url, "rtsps://", 8))
        av_dict_set(&opt, "rtsp_transport", s->p.transport == IT_TRANSPORT_UDP ? "udp" : "tcp", 0);
    const AVInputFormat *ifmt = NULL;
    if (s->device) {
#ifdef ITSCAM_HAVE_AVDEVICE
        ifmt = av_find_input_format("v4l2");
#endif
        if (!ifmt) return set_error(s, IT_REASON_BAD_URL, "v4l2 devices: built without libavdevice", 0), IT_REASON_BAD_URL;
    }
    s->deadline = it_now_ms() + s->p.open_timeout_s * 1e3;
    int rc = avformat_open_input(&s->fmt, s->url, ifmt, &opt);
    av_dict_free(&opt);
    if (rc >= 0) rc = avformat_find_stream_info(s->fmt, NULL);
    if (rc < 0) {
        /* Protocols turn our interrupt into errors of their own (RTSP: invalid data). */
        int timed_out = !atomic_load(&s->stop) && it_now_ms() > s->deadline;
        it_source_reason r = timed_out ? IT_REASON_TIMEOUT : classify(rc, s->live);
        if (!atomic_load(&s->stop)) set_error(s, r, s->device ? "open v4l2 device" : "open", timed_out ? 0 : rc);
        return r;
    }
    const AVCodec *codec = NULL;
    int vs = av_find_best_stream(s->fmt, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
    if (vs < 0) {
        it_source_reason r = classify(vs, s->live);
        set_error(s, r, NULL, 0);
        return r;
    }
    for (unsigned i = 0; i < s->fmt->nb_streams; i++)
        if ((int)i != vs) s->fmt->streams[i]->discard = AVDISCARD_ALL;
    AVStream *st = s->fmt->streams[vs];
    s->vstream = vs;
    s->tb = st->time_base;
    s->dec = avcodec_alloc_context3(codec);
    if (!s->dec || (rc = avcodec_parameters_to_context(s->dec, st->codecpar)) < 0)
        return set_error(s, IT_REASON_DECODER, codec->name, rc), IT_REASON_DECODER;
    s->dec->thread_count = s->p.decode_threads;
    s->skip = IT_SKIP_NONE;
    s->key_flags_seen = 0;
    apply_skip(s, 1);
    if (attach_hwaccel(s, codec) < 0) return IT_REASON_DECODER;
    if ((rc = avcodec_open2(s->dec, codec, NULL)) < 0)
        return set_error(s, IT_REASON_DECODER, codec->name, rc), IT_REASON_DECODER;
    AVRational fr = av_guess_frame_rate(s->fmt, st, NULL);
    pthread_mutex_lock(&s->mu);
    s->info.stream_fps = fr.num > 0 && fr.den > 0 ? av_q2d(fr) : 0;
    pthread_mutex_unlock(&s->mu);
    s->deadline = 0;
    return IT_REASON_NONE;
}

/* ---- read and decode ---- */

static void remember_capture(it_source *s, int64_t pts, double wall) {
    s->ring[s->ring_pos].pts = pts;
    s->ring[s->ring_pos].wall = wall;
    s->ring_pos = (s->ring_pos + 1) % CAPTURE_RING;
    s->last_captured = wall;
}

/* A decoded frame may come from an earlier packet (B-frames, decoder delay): find its
 * packet's capture time by timestamp, else take the newest packet's. */
static double captured_for(const it_source *s, int64_t pts) {
    if (pts != AV_NOPTS_VALUE)
        for (int i = 0; i < CAPTURE_RING; i++)
            if (s->ring[i].pts == pts && s->ring[i].wall > 0) return s->ring[i].wall;
    return s->last_captured;
}

/* Put the decoded frame (a reference, not a copy: FFmpeg's decoders allocate every frame
 * from a reference-counted pool that grows as needed, so holding one costs one buffer)
 * in the slot, replacing any frame nobody took. It is converted only when taken. */
static void publish(it_source *s, AVFrame *f) {
    int64_t pts = f->best_effort_timestamp;
    it_frame_meta m = { .index = s->next_index++, .captured_at = captured_for(s, f->pts != AV_NOPTS_VALUE ? f->pts : pts),
                        .pts_s = pts != AV_NOPTS_VALUE ? pts * av_q2d(s->tb) : NAN };
    s->decode_errors = 0;
    pthread_mutex_lock(&s->mu);
    while (s->lossless && s->slot_full && !atomic_load(&s->stop)) pthread_cond_wait(&s->cv, &s->mu);
    s->last_frame = it_now_ms();  /* after the wait: a slow consumer is not a stalled camera */
    if (s->slot_full) s->info.dropped++;  /* only when not lossless, or stopping */
    av_frame_unref(s->slot);
    av_frame_move_ref(s->slot, f);
    s->slot_meta = m;
    s->slot_full = 1;
    s->info.decoded++;
    s->info.width = s->slot->width;
    s->info.height = s->slot->height;
    /* With the frame, not after it: a consumer that takes it never sees "starting". */
    int changed = set_state_locked(s, IT_SOURCE_STREAMING);
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (s->p.notify) s->p.notify(s->p.notify_arg);
    if (changed) log_state(s, IT_SOURCE_STREAMING);
}

static void drain_decoder(it_source *s) {
    while (avcodec_receive_frame(s->dec, s->frame) == 0) {
        publish(s, s->frame);
        av_frame_unref(s->frame);  /* empty after the move; a no-op kept for clarity */
    }
}

/* Files in real time: hold each packet until its timestamp is due, as a camera would send it. */
static int pace(it_source *s, const AVPacket *pkt) {
    int64_t ts = pkt->dts != AV_NOPTS_VALUE ? pkt->dts : pkt->pts;
    if (ts == AV_NOPTS_VALUE) return 0;
    double t = ts * av_q2d(s->tb) * 1e3, now = it_now_ms();
    double due = s->pace_base_ms + (t - s->pace_base_ts);
    if (!s->pace_set || due < now - MAX_PACE_GAP_MS || due > now + MAX_PACE_GAP_MS) {
        s->pace_set = 1;
        s->pace_base_ms = now;
        s->pace_base_ts = t;
        return 0;
    }
    return sleep_until(s, due);
}

static int rewind_file(it_source *s) {
    int rc = av_seek_frame(s->fmt, s->vstream, s->fmt->streams[s->vstream]->start_time != AV_NOPTS_VALUE
                                                    ? s->fmt->streams[s->vstream]->start_time : 0,
                           AVSEEK_FLAG_BACKWARD);
    if (rc < 0) return rc;
    avcodec_flush_buffers(s->dec);
    s->pace_set = 0;
    return 0;
}

/* A file that ends well before the duration its header promises was cut short: a failure
 * to report, not a normal end. */
static int truncated(it_source *s) {
    const AVStream *st = s->fmt->streams[s->vstream];
    if (st->duration == AV_NOPTS_VALUE || st->duration <= 0 || !(s->last_pts_s == s->last_pts_s)) return 0;
    double start = st->start_time != AV_NOPTS_VALUE ? st->start_time * av_q2d(s->tb) : 0;
    double total = st->duration * av_q2d(s->tb), reached = s->last_pts_s - start;
    if (reached >= total * 0.9 || total - reached < 1.0) return 0;
    char what[96];
    snprintf(what, sizeof what, "truncated: ends at %.1f s of %.1f s", reached, total);
    set_error(s, IT_REASON_FORMAT, what, 0);
    return 1;
}

/* Whether the stall clock ran out: no decoded frame for stall_timeout_s. In keyframes mode
 * the video packets count as signs of life between key frames, within a longer bound. */
static int stalled(it_source *s, double stall_ms) {
    double now = it_now_ms();
    if (s->skip != IT_SKIP_KEYFRAMES) return now - s->last_frame > stall_ms;
    return now - s->last_packet > stall_ms ||
           now - s->last_frame > IT_MAX(stall_ms * KEYFRAME_STALL_FACTOR, KEYFRAME_STALL_MIN_MS);
}

/* The moment after which a blocking read gives up (the interrupt callback's deadline). */
static double read_deadline(const it_source *s, double stall_ms) {
    if (s->skip != IT_SKIP_KEYFRAMES) return s->last_frame + stall_ms;
    return IT_MIN(s->last_packet + stall_ms,
                  s->last_frame + IT_MAX(stall_ms * KEYFRAME_STALL_FACTOR, KEYFRAME_STALL_MIN_MS));
}

static run_end stall_end(it_source *s) {
    set_state(s, IT_SOURCE_STALLED);
    set_error(s, s->decode_errors ? IT_REASON_DECODER : IT_REASON_STALLED, "no frame decoded", 0);
    return RUN_FAIL;
}

/* Read and decode until the end, a failure, a stall or stop. */
static run_end read_loop(it_source *s) {
    double stall_ms = s->p.stall_timeout_s * 1e3;
    s->last_frame = s->last_packet = it_now_ms();  /* the first frame gets a full stall timeout */
    for (;;) {
        if (atomic_load(&s->stop)) return RUN_STOP;
        s->deadline = read_deadline(s, stall_ms);
        int rc = av_read_frame(s->fmt, s->pkt);
        if (rc == AVERROR(EAGAIN)) {
            if (sleep_until(s, it_now_ms() + 5)) return RUN_STOP;
        } else if (rc == AVERROR_EOF) {
            s->deadline = 0;
            avcodec_send_packet(s->dec, NULL);
            drain_decoder(s);
            if (!s->live && s->p.loop) {
                if ((rc = rewind_file(s)) < 0) return set_error(s, IT_REASON_FORMAT, "seek to start", rc), RUN_FAIL;
                continue;
            }
            if (s->live) set_error(s, IT_REASON_EOF, NULL, 0);
            else if (truncated(s)) return RUN_FAIL;
            return RUN_EOF;
        } else if (rc < 0) {
            if (atomic_load(&s->stop)) return RUN_STOP;
            if (rc == AVERROR_EXIT) return stall_end(s);
            set_error(s, classify(rc, s->live), "read", rc);
            return RUN_FAIL;
        } else if (s->pkt->stream_index != s->vstream) {
            av_packet_unref(s->pkt);
        } else {
            if (!s->live && s->p.realtime && pace(s, s->pkt)) {
                av_packet_unref(s->pkt);
                return RUN_STOP;
            }
            double now = wall_ms();
            s->last_packet = it_now_ms();
            if (s->pkt->pts != AV_NOPTS_VALUE) {
                double t = s->pkt->pts * av_q2d(s->tb);
                if (!(t <= s->last_pts_s)) s->last_pts_s = t;  /* the maximum: B-frames come out of order */
            }
            int key = (s->pkt->flags & AV_PKT_FLAG_KEY) != 0;
            s->key_flags_seen |= key;
            pthread_mutex_lock(&s->mu);
            s->info.packets++;
            pthread_mutex_unlock(&s->mu);
            apply_skip(s, key);
            if (s->skip == IT_SKIP_KEYFRAMES && !key && s->key_flags_seen) {
                /* The decoder would parse and discard it (AVDISCARD_NONKEY); not sending it at
                 * all saves the parsing too. Only once the demuxer has shown that it marks key
                 * packets: where it does not, the decoder's own check decides. */
                av_packet_unref(s->pkt);
                pthread_mutex_lock(&s->mu);
                s->info.skipped_packets++;
                pthread_mutex_unlock(&s->mu);
            } else {
                remember_capture(s, s->pkt->pts, now);
                rc = avcodec_send_packet(s->dec, s->pkt);
                av_packet_unref(s->pkt);
                /* A corrupt packet is ordinary on a live stream: only the stall clock decides. */
                if (rc < 0 && rc != AVERROR(EAGAIN)) s->decode_errors++;
                drain_decoder(s);
            }
        }
        if (stalled(s, stall_ms)) return stall_end(s);
    }
}

static void *reader_main(void *arg) {
    it_source *s = arg;
    double backoff = BACKOFF_FIRST_MS;
    unsigned seed = (unsigned)(uintptr_t)s ^ (unsigned)wall_ms();
    for (int attempt = 0; !atomic_load(&s->stop); attempt++) {
        if (attempt) {
            /* 1 s doubling to 30 s, +-20% so that cameras dropped together do not return together */
            double wait = backoff * (0.8 + 0.4 * (rand_r(&seed) / (double)RAND_MAX));
            backoff = IT_MIN(backoff * 2, BACKOFF_MAX_MS);
            pthread_mutex_lock(&s->mu);
            s->info.retry_at = wall_ms() + wait;
            s->info.retry_wait_ms = wait;
            pthread_mutex_unlock(&s->mu);
            int stop = sleep_until(s, it_now_ms() + wait);
            pthread_mutex_lock(&s->mu);
            s->info.retry_at = 0;
            pthread_mutex_unlock(&s->mu);
            if (stop) break;
            pthread_mutex_lock(&s->mu);
            s->info.reconnects++;
            pthread_mutex_unlock(&s->mu);
            set_state(s, IT_SOURCE_RECONNECTING);
        }
        if (open_input(s) != IT_REASON_NONE) {
            close_input(s);
            if (atomic_load(&s->stop)) break;
            set_state(s, IT_SOURCE_FAILED);
            if (!s->live) break;
            continue;
        }
        int64_t before = s->next_index;
        s->last_pts_s = NAN;
        /* A new session's timestamps start again near 0: the old ones would match them. */
        for (int i = 0; i < CAPTURE_RING; i++) s->ring[i].pts = AV_NOPTS_VALUE, s->ring[i].wall = 0;
        run_end end = read_loop(s);
        close_input(s);
        if (end == RUN_STOP) break;
        if (s->next_index > before) backoff = BACKOFF_FIRST_MS;  /* it streamed: start over */
        if (!s->live) {
            set_state(s, end == RUN_EOF ? IT_SOURCE_ENDED : IT_SOURCE_FAILED);
            break;
        }
        /* A live end of stream or read error is a disconnect (a dead RTSP camera looks like
         * a clean EOF); a stall stays visible as such until the reconnect starts. */
        pthread_mutex_lock(&s->mu);
        int was_streaming = s->info.state == IT_SOURCE_STREAMING;
        pthread_mutex_unlock(&s->mu);
        if (was_streaming) set_state(s, IT_SOURCE_RECONNECTING);
    }
    pthread_mutex_lock(&s->mu);
    s->finished = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ---- public ---- */

static void source_free(it_source *s) {
    av_packet_free(&s->pkt);
    av_frame_free(&s->frame);
    av_frame_free(&s->slot);
    av_frame_free(&s->taken);
    av_frame_free(&s->sw);
    av_buffer_unref(&s->hwdev);
    sws_freeContext(s->sws);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    it_free(s->url);
    it_free(s->hwaccel);
    it_free(s);
}

itscam_status it_source_open(const it_source_params *p, it_source **out) {
    if (!out) return it_err(ITSCAM_ERR_INVALID_ARG, "source: no output pointer");
    *out = NULL;
    if (!p || !p->url || !p->url[0]) return it_err(ITSCAM_ERR_INVALID_ARG, "source: no URL");
    if (!(p->stall_timeout_s > 0) || !(p->open_timeout_s > 0))
        return it_err(ITSCAM_ERR_INVALID_ARG, "source: stall and open timeouts must be positive");
    if ((unsigned)p->skip > IT_SKIP_KEYFRAMES) return it_err(ITSCAM_ERR_INVALID_ARG, "source: unknown skip mode");
    const char *hw = p->hwaccel && p->hwaccel[0] ? p->hwaccel : "none";
    if (strcmp(hw, "none") && strcmp(hw, "auto") && strcmp(hw, "vaapi") && strcmp(hw, "cuda"))
        return it_err(ITSCAM_ERR_INVALID_ARG, "source: hwaccel '%s': expected none, auto, vaapi or cuda", hw);
    pthread_once(&av_once, av_setup);
    it_source *s = it_calloc(1, sizeof *s);
    if (!s) return it_err(ITSCAM_ERR_NOMEM, "source: out of memory");
    s->p = *p;
    if (s->p.decode_threads < 0) s->p.decode_threads = 0;
    s->url = it_strdup(p->url);
    s->hwaccel = it_strdup(hw);
    s->pkt = av_packet_alloc();
    s->frame = av_frame_alloc();
    s->slot = av_frame_alloc();
    s->taken = av_frame_alloc();
    s->sw = av_frame_alloc();
    it_cond_init_monotonic(&s->cv);
    pthread_mutex_init(&s->mu, NULL);
    if (!s->url || !s->hwaccel || !s->pkt || !s->frame || !s->slot || !s->taken || !s->sw) {
        source_free(s);
        return it_err(ITSCAM_ERR_NOMEM, "source: out of memory");
    }
    s->p.url = s->url;
    s->p.hwaccel = s->hwaccel;
    atomic_init(&s->skip_req, (int)p->skip);
    it_url_redact(s->url, s->redacted, sizeof s->redacted);
    s->device = !strncmp(s->url, "/dev/video", 10);
    s->live = (strstr(s->url, "://") && strncmp(s->url, "file:", 5)) || !strncmp(s->url, "/dev/", 5);
    s->lossless = p->lossless && !s->live;
    s->hw_fmt = AV_PIX_FMT_NONE;
    s->info.state = IT_SOURCE_STARTING;
    s->info.state_since = wall_ms();
    snprintf(s->info.hwaccel, sizeof s->info.hwaccel, "none");
    for (int i = 0; i < CAPTURE_RING; i++) s->ring[i].pts = AV_NOPTS_VALUE;
    if (pthread_create(&s->thread, NULL, reader_main, s)) {
        source_free(s);
        return it_err(ITSCAM_ERR_INTERNAL, "source: cannot start the reader thread");
    }
    *out = s;
    return ITSCAM_OK;
}

void it_source_set_skip(it_source *s, it_skip_mode mode) {
    if (s && (unsigned)mode <= IT_SKIP_KEYFRAMES) atomic_store(&s->skip_req, (int)mode);
}

/* Wait for a frame in the slot, under the lock; returns whether one waits. */
static int wait_frame(it_source *s, int timeout_ms) {
    struct timespec ts;
    it_deadline_in(&ts, timeout_ms > 0 ? timeout_ms : 0);
    while (!s->slot_full && !s->finished && timeout_ms > 0)
        if (pthread_cond_timedwait(&s->cv, &s->mu, &ts) == ETIMEDOUT) break;
    return s->slot_full;
}

/* BGR into dst, on the consumer's thread: a hardware frame is downloaded first. */
static int convert(it_source *s, const AVFrame *f, it_image *dst) {
    if (f->hw_frames_ctx) {
        av_frame_unref(s->sw);
        int rc = av_hwframe_transfer_data(s->sw, f, 0);
        if (rc < 0) {
            char e[AV_ERROR_MAX_STRING_SIZE];
            av_strerror(rc, e, sizeof e);
            it_log(ITSCAM_LOG_WARN, "source %s: cannot download a hardware frame: %s", s->redacted, e);
            return -1;
        }
        f = s->sw;
    }
    if (dst->width != f->width || dst->height != f->height || !dst->data) {
        it_image_free(dst);
        if (it_image_alloc(dst, f->width, f->height) != ITSCAM_OK) return -1;
    }
    s->sws = sws_getCachedContext(s->sws, f->width, f->height, f->format, f->width, f->height, AV_PIX_FMT_BGR24,
                                  SWS_POINT, NULL, NULL, NULL);
    if (!s->sws) return -1;
    uint8_t *planes[4] = { dst->data, NULL, NULL, NULL };
    int lines[4] = { dst->stride, 0, 0, 0 };
    sws_scale(s->sws, (const uint8_t *const *)f->data, f->linesize, 0, f->height, planes, lines);
    if (f == s->sw) av_frame_unref(s->sw);
    return 0;
}

int it_source_take(it_source *s, it_image *dst, it_frame_meta *meta, int timeout_ms) {
    pthread_mutex_lock(&s->mu);
    int got = wait_frame(s, timeout_ms);
    if (got) {
        av_frame_move_ref(s->taken, s->slot);
        s->slot_full = 0;
        if (meta) *meta = s->slot_meta;
        pthread_cond_broadcast(&s->cv);  /* a lossless reader waits for the empty slot */
    }
    pthread_mutex_unlock(&s->mu);
    if (!got) return 0;
    int ok = !dst || convert(s, s->taken, dst) == 0;
    av_frame_unref(s->taken);
    pthread_mutex_lock(&s->mu);
    if (ok && dst) s->info.converted++;
    else if (!ok) s->info.dropped++;
    pthread_mutex_unlock(&s->mu);
    return ok;
}

int it_source_peek(it_source *s, it_frame_meta *meta, int timeout_ms) {
    pthread_mutex_lock(&s->mu);
    int got = wait_frame(s, timeout_ms);
    if (got && meta) *meta = s->slot_meta;
    pthread_mutex_unlock(&s->mu);
    return got;
}

void it_source_state(it_source *s, it_source_info *out) {
    pthread_mutex_lock(&s->mu);
    *out = s->info;
    pthread_mutex_unlock(&s->mu);
}

void it_source_close(it_source *s) {
    if (!s) return;
    atomic_store(&s->stop, 1);
    pthread_mutex_lock(&s->mu);
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    close_input(s);
    source_free(s);
}
