/* itscam watch: one camera or file through the detector and a ByteTrack tracker, one JSON
 * line per detected frame. The quickest way to try a camera: no configuration, no server. */
#include "cli/cli.h"
#include "core/core.h"
#include "stream/source.h"
#include "track/bytetrack.h"

#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <time.h>

void cli_watch_usage(FILE *f) {
    fprintf(f,
            "usage: itscam watch --model MODEL [options] URL|FILE\n"
            "       itscam watch --decode-only [options] URL|FILE\n\n"
            "Read one camera (rtsp://, http://, a video file) and print one JSON line per detected\n"
            "frame: {\"frame\",\"captured_at\",\"latency_ms\",\"detections\":[...]}. captured_at is the\n"
            "wall-clock time (integer ms since the epoch) the frame's packet was read; latency_ms runs from\n"
            "it to the result. Frames that arrive while the detector is busy are skipped. Each detection\n"
            "carries the track_id ByteTrack (default settings) gives it, or null when it feeds no confirmed\n"
            "track (a low score, or a track's first frames).\n\n"
            "options:\n"
            "  --model M        ONNX model (Ultralytics YOLOv8/YOLO11 export)\n"
            "  --fps F          detect at most F frames per second (default: every frame it can)\n"
            "  --conf X         confidence threshold (0.25)\n"
            "  --max-frames N   stop after N detected frames\n"
            "  --fast           files: as fast as the detector goes, every frame (none skipped),\n"
            "                   instead of at the file's own fps\n"
            "  --loop           files: start again at the end\n"
            "  --transport T    rtsp: tcp (default) or udp\n"
            "  --skip S         do not decode: none (default), nonref (non-reference frames) or\n"
            "                   keyframes (decode key frames only)\n"
            "  --hwaccel H      none (default), auto, vaapi or cuda\n"
            "  --decode-threads N   decoder threads (1)\n"
            "  --backend B, --threads N, --precision P   as for 'itscam detect'\n\n"
            "--decode-only: no model; read and decode the source, and print one JSON summary line\n"
            "{\"frames_decoded\",\"frames_taken\",\"video_s\",\"cpu_s\",\"wall_s\",...} at its end\n"
            "(with --fast, a file is decoded as fast as possible; --max-frames counts decoded frames).\n"
            "Which frames a consumer takes (converts to BGR), by stream time:\n"
            "  --take-fps F     F frames per second of video (a camera detecting at F fps)\n"
            "  --take-every N   every Nth decoded frame\n"
            "  (neither: none is converted, the cost of decoding alone; --take-every 1: all)\n");
}

static double wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void print_frame(const it_frame_meta *m, const itscam_result *r, const int64_t *tids, double done) {
    json_t *o = json_object();
    json_object_set_new(o, "frame", json_integer(m->index));
    json_object_set_new(o, "captured_at", json_integer((json_int_t)llround(m->captured_at)));
    json_object_set_new(o, "latency_ms", json_real(round((done - m->captured_at) * 1e3) / 1e3));
    json_t *arr = json_array();
    for (int i = 0; i < r->count; i++) {
        const itscam_detection *d = &r->dets[i];
        json_t *box = json_array();
        for (int k = 0; k < 4; k++) json_array_append_new(box, json_real(round(d->box[k] * 10) / 10));
        json_array_append_new(arr, json_pack("{s:i, s:s, s:f, s:o, s:o}", "class_id", d->class_id, "class",
                                             d->class_name ? d->class_name : "", "score",
                                             round(d->score * 1e4) / 1e4, "box", box, "track_id",
                                             tids && tids[i] > 0 ? json_integer((json_int_t)tids[i]) : json_null()));
    }
    json_object_set_new(o, "detections", arr);
    char *s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(7));
    if (s) {
        puts(s);
        fflush(stdout);
        free(s);
    }
    json_decref(o);
}

/* The tracker of a watch and its per-frame buffers (grown to the largest frame). */
typedef struct watch_track {
    it_tracker *t;
    it_track_det *dets;
    it_track_out *out;
    int64_t *ids;
    int cap;
    int off; /* the tracker refused a frame: ids are null from then on */
} watch_track;

static void watch_track_free(watch_track *w) {
    it_tracker_free(w->t);
    it_free(w->dets);
    it_free(w->out);
    it_free(w->ids);
}

/* The track id of each of r's detections (0: none), or NULL when tracking is off. The
 * tracker starts on the first frame, counting time in detected frames: at --fps when
 * given, else at the stream's frame rate (a file read with --fast, or a camera whose
 * frames are all detected), so track_buffer keeps its meaning in seconds. */
static const int64_t *watch_track_frame(watch_track *w, it_source *src, float fps, const itscam_result *r) {
    if (w->off) return NULL;
    int n = r->count > IT_TRACK_MAX_DETS ? IT_TRACK_MAX_DETS : r->count;
    if (!w->t) {
        it_track_params p = it_track_default_params();
        it_source_info info;
        it_source_state(src, &info);
        float rate = fps > 0 ? fps : info.stream_fps > 0 ? (float)info.stream_fps : 30.0f;
        p.frame_rate = rate < 1 ? 1 : rate > 1000 ? 1000 : rate;
        if (!(w->out = it_malloc(sizeof *w->out * IT_TRACK_MAX_TRACKS))) {
            it_err(ITSCAM_ERR_NOMEM, "out of memory for the tracker");
            goto off;
        }
        if (!(w->t = it_tracker_new(&p))) goto off;
    }
    if (n > w->cap) {
        it_track_det *d = it_realloc(w->dets, sizeof *d * (size_t)n);
        if (d) w->dets = d;
        int64_t *ids = it_realloc(w->ids, sizeof *ids * (size_t)n);
        if (ids) w->ids = ids;
        if (!d || !ids) {
            it_err(ITSCAM_ERR_NOMEM, "out of memory for %d detections", n);
            goto off;
        }
        w->cap = n;
    }
    for (int i = 0; i < n; i++) {
        memcpy(w->dets[i].box, r->dets[i].box, sizeof w->dets[i].box);
        w->dets[i].score = r->dets[i].score;
        w->dets[i].class_id = r->dets[i].class_id;
        w->ids[i] = 0;
    }
    int k = it_tracker_update(w->t, w->dets, n, w->out, IT_TRACK_MAX_TRACKS);
    if (k < 0) goto off;
    if (k > IT_TRACK_MAX_TRACKS) k = IT_TRACK_MAX_TRACKS;
    for (int i = 0; i < k; i++)
        if (w->out[i].det_index >= 0 && w->out[i].det_index < n) w->ids[w->out[i].det_index] = w->out[i].track_id;
    /* detections past IT_TRACK_MAX_DETS were not tracked: none is read past n */
    return r->count > n ? NULL : w->ids;
off:
    fprintf(stderr, "itscam watch: tracking off: %s\n", itscam_last_error());
    w->off = 1;
    return NULL;
}

/* Wait for frames and detect on them until the source ends or fails for good, or max
 * frames are done. Returns the exit status. */
static int watch_loop(it_source *src, itscam_detector *det, float fps, int max_frames, const char *shown) {
    it_image img = { 0 };
    it_frame_meta m;
    itscam_result r = { 0 };
    watch_track wt = { 0 };
    double interval = fps > 0 ? 1e3 / fps : 0, next = 0;
    int done = 0, rc = 0;
    while (max_frames <= 0 || done < max_frames) {
        if (!it_source_take(src, &img, &m, 1000)) {
            it_source_info info;
            it_source_state(src, &info);
            if (info.state == IT_SOURCE_ENDED) break;
            /* A live source that once streamed reconnects by itself; one that never did has
             * a wrong URL, credentials or file, which waiting will not fix. */
            if (info.decoded == 0 && info.last_error[0] && info.state != IT_SOURCE_STREAMING) {
                fprintf(stderr, "itscam: %s: %s\n", shown, info.last_error);
                rc = 1;
                break;
            }
            continue;
        }
        double now = it_now_ms();
        if (interval > 0 && now < next) continue;  /* --fps: skip this frame */
        next = (next > 0 && now - next < interval ? next : now) + interval;
        itscam_image im = { .data = img.data, .width = img.width, .height = img.height, .stride = img.stride,
                            .format = ITSCAM_PIX_BGR8 };
        itscam_status st = itscam_detect_image(det, &im, &r);
        if (st != ITSCAM_OK) {
            rc = cli_fail(shown, st);
            break;
        }
        print_frame(&m, &r, watch_track_frame(&wt, src, fps, &r), wall_ms());
        itscam_result_clear(&r);
        done++;
    }
    watch_track_free(&wt);
    it_image_free(&img);
    return rc;
}

static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* --decode-only: the cost of ingest alone. With neither --take-fps nor --take-every nobody
 * takes a frame: the reader decodes into the slot, replacing each frame, as for a camera
 * whose consumer is busy; the consumer only waits for the end. Otherwise the consumer peeks
 * at each frame and converts only those it would detect on (by stream time, so the figure
 * does not depend on how fast the machine decodes), as the pipeline does for a camera whose
 * detect fps is below its stream fps; with --fast a file is then read losslessly, so that
 * every decoded frame is seen (a hand-over per frame that a live camera does not have). */
static int decode_only(it_source *src, const char *shown, float take_fps, int take_every, int max_frames,
                       it_skip_mode skip) {
    it_image img = { 0 };
    it_frame_meta m;
    double t0 = it_now_ms(), c0 = cpu_s(), next_take = -1e300, first_pts = NAN, last_pts = NAN;
    uint64_t seen = 0, taken = 0;
    int rc = 0;
    int consumer = take_fps > 0 || take_every > 0;
    while (!consumer) {
        it_source_info info;
        it_source_state(src, &info);
        if (info.state == IT_SOURCE_ENDED || (max_frames > 0 && info.decoded >= (uint64_t)max_frames)) break;
        if (info.state == IT_SOURCE_FAILED && (info.decoded == 0 || !strstr(shown, "://"))) {
            fprintf(stderr, "itscam: %s: %s\n", shown, info.last_error);
            rc = 1;
            break;
        }
        usleep(20000);
    }
    for (; consumer;) {
        if (!it_source_peek(src, &m, 1000)) {
            it_source_info info;
            it_source_state(src, &info);
            if (info.state == IT_SOURCE_ENDED) break;
            if (info.state == IT_SOURCE_FAILED && (info.decoded == 0 || !strstr(shown, "://"))) {
                fprintf(stderr, "itscam: %s: %s\n", shown, info.last_error);
                rc = 1;
                break;
            }
            continue;
        }
        int take = 0;
        if (take_every > 0) take = seen % (uint64_t)take_every == 0;
        else if (take_fps > 0) {
            /* stream time where known, else the wall clock */
            double t = m.pts_s == m.pts_s ? m.pts_s : m.captured_at / 1e3;
            if (t >= next_take) {
                take = 1;
                next_take = (t - next_take < 1.0 / take_fps ? next_take : t) + 1.0 / take_fps;
            }
        }
        if (!it_source_take(src, take ? &img : NULL, &m, 0)) continue;
        if (m.pts_s == m.pts_s) {
            if (!(first_pts == first_pts)) first_pts = m.pts_s;
            last_pts = m.pts_s;
        }
        seen++;
        taken += take;
        if (max_frames > 0 && seen >= (uint64_t)max_frames) break;
    }
    double wall = (it_now_ms() - t0) / 1e3, cpu = cpu_s() - c0;
    it_source_info info;
    it_source_state(src, &info);
    json_t *o = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:f, s:f, s:f, s:i, s:i, s:f, s:s}", "source", shown,
                          "skip", it_skip_name(skip), "frames_decoded", (json_int_t)info.decoded, "frames_seen",
                          (json_int_t)seen, "frames_taken", (json_int_t)taken, "packets_skipped",
                          (json_int_t)info.skipped_packets, "video_s",
                          last_pts == last_pts ? round((last_pts - first_pts) * 1e3) / 1e3 : 0.0, "cpu_s",
                          round(cpu * 1e4) / 1e4, "wall_s", round(wall * 1e4) / 1e4, "width", info.width, "height",
                          info.height, "stream_fps", round(info.stream_fps * 1e3) / 1e3, "hwaccel", info.hwaccel);
    char *js = o && rc == 0 ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
    if (js) puts(js);
    free(js);
    json_decref(o);
    it_image_free(&img);
    return rc;
}

int cli_watch(int argc, char **argv) {
    static const struct option opts[] = {
        { "model", required_argument, 0, 'm' }, { "fps", required_argument, 0, 'f' },
        { "conf", required_argument, 0, 'c' }, { "max-frames", required_argument, 0, 'n' },
        { "fast", no_argument, 0, 'F' }, { "loop", no_argument, 0, 'l' },
        { "transport", required_argument, 0, 'T' }, { "backend", required_argument, 0, 'b' },
        { "threads", required_argument, 0, 't' }, { "precision", required_argument, 0, 'P' },
        { "skip", required_argument, 0, 'S' }, { "hwaccel", required_argument, 0, 'H' },
        { "decode-threads", required_argument, 0, 'D' }, { "decode-only", no_argument, 0, 'O' },
        { "take-fps", required_argument, 0, 'R' }, { "take-every", required_argument, 0, 'E' },
        { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 },
    };
    itscam_detector_params dp = itscam_detector_default_params();
    it_source_params sp = it_source_default_params();
    const char *model = NULL;
    float fps = 0, take_fps = 0;
    int max_frames = 0, c, decode_only_mode = 0, take_every = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:f:c:n:FlT:b:t:P:S:H:D:OR:E:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'f': if (cli_parse_float(optarg, &fps) || !(fps > 0)) goto bad; break;
        case 'c': if (cli_parse_float(optarg, &dp.conf) || !(dp.conf >= 0 && dp.conf <= 1)) goto bad; break;
        case 'n': if (cli_parse_int(optarg, &max_frames) || max_frames <= 0) goto bad; break;
        case 'F': sp.realtime = 0; sp.lossless = 1; break;
        case 'l': sp.loop = 1; break;
        case 'T':
            if (!strcmp(optarg, "tcp")) sp.transport = IT_TRANSPORT_TCP;
            else if (!strcmp(optarg, "udp")) sp.transport = IT_TRANSPORT_UDP;
            else goto bad;
            break;
        case 'b': dp.backend = optarg; break;
        case 't': if (cli_parse_int(optarg, &dp.threads) || dp.threads < 0) goto bad; break;
        case 'P': if (cli_parse_precision(optarg)) goto bad; dp.precision = optarg; break;
        case 'S': if (it_skip_parse(optarg, &sp.skip)) goto bad; break;
        case 'H':
            if (strcmp(optarg, "none") && strcmp(optarg, "auto") && strcmp(optarg, "vaapi") && strcmp(optarg, "cuda"))
                goto bad;
            sp.hwaccel = optarg;
            break;
        case 'D': if (cli_parse_int(optarg, &sp.decode_threads) || sp.decode_threads < 0) goto bad; break;
        case 'O': decode_only_mode = 1; break;
        case 'R': if (cli_parse_float(optarg, &take_fps) || !(take_fps > 0)) goto bad; break;
        case 'E': if (cli_parse_int(optarg, &take_every) || take_every <= 0) goto bad; break;
        case 'h': cli_watch_usage(stdout); return 0;
        default: cli_watch_usage(stderr); return 2;
        }
    }
    if ((!model && !decode_only_mode) || optind != argc - 1) {
        fprintf(stderr, "itscam watch: %s\n\n", optind != argc - 1 ? "give one URL or file" : "--model is required");
        cli_watch_usage(stderr);
        return 2;
    }
    char shown[512];
    it_url_redact(argv[optind], shown, sizeof shown);
    if (decode_only_mode) {
        it_source *src = NULL;
        sp.url = argv[optind];
        if (take_fps <= 0 && take_every <= 0) sp.lossless = 0;  /* no consumer: nothing to wait for */
        itscam_status st = it_source_open(&sp, &src);
        int rc = st != ITSCAM_OK ? cli_fail(shown, st)
                                 : decode_only(src, shown, take_fps, take_every, max_frames, sp.skip);
        it_source_close(src);
        return rc;
    }
    itscam_model *m = NULL;
    itscam_detector *det = NULL;
    it_source *src = NULL;
    int rc = cli_open_detector("watch", model, &dp, &m, &det);
    if (rc == 0) {
        sp.url = argv[optind];
        itscam_status st = it_source_open(&sp, &src);
        rc = st != ITSCAM_OK ? cli_fail(shown, st) : watch_loop(src, det, fps, max_frames, shown);
    }
    it_source_close(src);
    itscam_detector_free(det);
    itscam_model_free(m);
    return rc;
bad:
    fprintf(stderr, "itscam watch: bad value '%s'\n", optarg);
    return 2;
}
