/* itscam watch: one camera or file through the detector, one JSON line per detected frame.
 * The quickest way to try a camera: no configuration, no server. */
#include "cli/cli.h"
#include "core/core.h"
#include "pipeline/camevents.h"
#include "server/config.h"
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
            "frame: {\"frame\",\"captured_at\",\"latency_ms\",\"detections\":[...]}; each detection has\n"
            "its ByteTrack \"track_id\" (null until its track is confirmed). captured_at is the\n"
            "wall-clock time (integer ms since the epoch) the frame's packet was read; latency_ms runs from\n"
            "it to the result. Frames that arrive while the detector is busy are skipped.\n\n"
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
            "  --camera-config F    tracking and analytics as configured for a camera in F (a serve\n"
            "                   configuration file: its track: section and the first camera of its\n"
            "                   cameras: list, or --camera ID): lines, zones, calibration. Adds\n"
            "                   {\"event\": {...}} lines as events happen and, at the end, one\n"
            "                   {\"totals\": {\"lines\": {LINE: {CLASS: {\"a_to_b\", \"b_to_a\"}}}, ...}} line.\n"
            "                   Times are the video's own (so --fast reports true dwell and speed)\n"
            "  --camera ID      which camera of --camera-config\n"
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

static void print_json_line(json_t *o) {
    char *s = o ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
    if (s) {
        puts(s);
        fflush(stdout);
        free(s);
    }
    json_decref(o);
}

/* Events as they happen (the camera-events sink). */
static void print_event(void *arg, const it_store_event *ev) {
    (void)arg;
    json_t *j = it_store_event_json(ev);
    if (j) json_object_del(j, "id"); /* not stored: no id */
    print_json_line(j ? json_pack("{s:o}", "event", j) : NULL);
}

static void print_frame(const it_frame_meta *m, const itscam_result *r, double done, const int64_t *tids) {
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
    print_json_line(o);
}

/* The tracker (always) and the camera's analytics (with --camera-config). */
typedef struct watch_track {
    it_track_params tp;
    int fps_given;     /* --fps: the tracker counts frames at it; else at the stream's rate */
    it_tracker *trk;   /* made on the first frame, once the stream's rate is known */
    it_track_det *dets;
    it_track_out *out;
    int64_t *tids;
    int cap;
    it_cam_events *ev; /* NULL without --camera-config */
} watch_track;

/* Track one frame's detections; track ids land in wt->tids (parallel to r's). */
static const int64_t *track(watch_track *wt, const itscam_result *r, const it_image *img, double t,
                            double stream_fps) {
    int n = r->count < IT_TRACK_MAX_DETS ? r->count : IT_TRACK_MAX_DETS;
    if (!wt->trk) {
        /* ByteTrack's buffer is in frames at frame_rate: the rate frames are detected at. */
        if (!wt->fps_given && stream_fps > 0 && stream_fps <= 1000) wt->tp.frame_rate = (float)stream_fps;
        wt->trk = it_tracker_new(&wt->tp);
        if (!wt->trk) return NULL;
    }
    if (n > wt->cap) {
        int cap = n < 64 ? 64 : n;
        it_track_det *d = it_realloc(wt->dets, sizeof *d * (size_t)cap);
        if (d) wt->dets = d;
        int64_t *ti = it_realloc(wt->tids, sizeof *ti * (size_t)cap);
        if (ti) wt->tids = ti;
        if (!d || !ti) return NULL;
        wt->cap = cap;
    }
    for (int i = 0; i < n; i++) {
        memcpy(wt->dets[i].box, r->dets[i].box, sizeof wt->dets[i].box);
        wt->dets[i].score = r->dets[i].score;
        wt->dets[i].class_id = r->dets[i].class_id;
        wt->tids[i] = 0;
    }
    int k = it_tracker_update(wt->trk, wt->dets, n, wt->out, IT_TRACK_MAX_TRACKS);
    if (k < 0) return NULL;
    if (k > IT_TRACK_MAX_TRACKS) k = IT_TRACK_MAX_TRACKS;
    for (int i = 0; i < k; i++)
        if (wt->out[i].det_index >= 0 && wt->out[i].det_index < n) wt->tids[wt->out[i].det_index] = wt->out[i].track_id;
    if (wt->ev) it_cam_events_frame(wt->ev, img, r->dets, n, wt->out, k, t);
    return wt->tids;
}

/* Wait for frames and detect on them until the source ends or fails for good, or max
 * frames are done. Returns the exit status. */
static int watch_loop(it_source *src, itscam_detector *det, float fps, int max_frames, const char *shown,
                      watch_track *wt) {
    it_image img = { 0 };
    it_frame_meta m;
    itscam_result r = { 0 };
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
        /* Analytics run on the video's own clock when it has one: read with --fast, a
         * recording's dwell times and speeds stay true. */
        double t = m.pts_s == m.pts_s ? m.pts_s : m.captured_at / 1e3;
        it_source_info info;
        if (!wt->trk) it_source_state(src, &info);
        const int64_t *tids = track(wt, &r, &img, t, wt->trk ? 0 : info.stream_fps);
        print_frame(&m, &r, wall_ms(), tids);
        itscam_result_clear(&r);
        done++;
    }
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
        { "camera-config", required_argument, 0, 'C' }, { "camera", required_argument, 0, 'I' },
        { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 },
    };
    itscam_detector_params dp = itscam_detector_default_params();
    it_source_params sp = it_source_default_params();
    const char *model = NULL, *cam_cfg = NULL, *cam_id = NULL;
    float fps = 0, take_fps = 0;
    int max_frames = 0, c, decode_only_mode = 0, take_every = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:f:c:n:FlT:b:t:P:S:H:D:OR:E:C:I:h", opts, NULL)) != -1) {
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
        case 'C': cam_cfg = optarg; break;
        case 'I': cam_id = optarg; break;
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
    /* The camera's definition: its tracker settings, lines, zones and calibration. */
    it_camdef def;
    it_camdef_defaults(&def);
    snprintf(def.id, sizeof def.id, "watch");
    it_track_params tp = it_track_default_params();
    if (cam_cfg) {
        char err[1024];
        it_camdef *list = NULL;
        int n = 0, at = -1;
        srv_config cfg;
        srv_config_defaults(&cfg);
        if (srv_config_load_file(&cfg, cam_cfg, err, sizeof err) || srv_cameras_load_file(cam_cfg, &list, &n, err, sizeof err)) {
            fprintf(stderr, "itscam watch: %s\n", err);
            return 1;
        }
        for (int i = 0; i < n && at < 0; i++)
            if (!cam_id || !strcmp(list[i].id, cam_id)) at = i;
        if (at < 0) {
            fprintf(stderr, "itscam watch: %s: %s\n", cam_cfg, cam_id ? "no camera with that id" : "no cameras: listed");
            it_free(list);
            return 1;
        }
        def = list[at];
        it_free(list);
        tp = cfg.track;
    }
    tp = it_camdef_track(&def, &tp);
    if (fps > 0) tp.frame_rate = fps; /* the buffer counts detected frames */
    watch_track wt = { .tp = tp, .fps_given = fps > 0 };
    wt.out = it_malloc(sizeof *wt.out * IT_TRACK_MAX_TRACKS);
    it_tracker *probe = wt.out ? it_tracker_new(&tp) : NULL; /* bad settings fail now, not mid-stream */
    if (!probe) {
        fprintf(stderr, "itscam watch: tracker: %s\n", wt.out ? itscam_last_error() : "out of memory");
        it_free(wt.out);
        return 1;
    }
    it_tracker_free(probe);
    if (cam_cfg) {
        it_cam_events_params ep = it_cam_events_default_params();
        ep.sink = print_event;
        ep.occupancy_every_s = 0;
        wt.ev = it_cam_events_new(&ep, &def);
    }
    itscam_model *m = NULL;
    itscam_detector *det = NULL;
    it_source *src = NULL;
    int rc = cli_open_detector("watch", model, &dp, &m, &det);
    if (rc == 0) {
        sp.url = argv[optind];
        itscam_status st = it_source_open(&sp, &src);
        rc = st != ITSCAM_OK ? cli_fail(shown, st) : watch_loop(src, det, fps, max_frames, shown, &wt);
    }
    if (wt.ev) {
        it_cam_events_flush(wt.ev, 0); /* the tracks still open end: zone_exit, track_end */
        json_t *totals = it_cam_events_totals(wt.ev);
        it_cam_events_free(wt.ev, 0);
        if (rc == 0) print_json_line(totals ? json_pack("{s:o}", "totals", totals) : NULL);
        else json_decref(totals);
    }
    it_tracker_free(wt.trk);
    it_free(wt.out);
    it_free(wt.dets);
    it_free(wt.tids);
    it_source_close(src);
    itscam_detector_free(det);
    itscam_model_free(m);
    return rc;
bad:
    fprintf(stderr, "itscam watch: bad value '%s'\n", optarg);
    return 2;
}
