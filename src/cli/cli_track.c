/* itscam track: replay a file of per-frame detections through ByteTrack and print the
 * tracks, for tests and for tuning the tracker's settings offline. */
#include "cli/cli.h"
#include "core/core.h"
#include "pipeline/camevents.h"
#include "server/config.h"
#include "track/bytetrack.h"
#include "track/track_json.h"

#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DETECTIONS_FILE ((size_t)512 << 20)

void cli_track_usage(FILE *f) {
    it_track_params d = it_track_default_params();
    fprintf(f,
            "usage: itscam track --detections DETS.json [options] > TRACKS.json\n\n"
            "Replay detections through ByteTrack (Ultralytics' behaviour and setting names) and\n"
            "print the tracks of every frame.\n"
            "  in:  {\"width\": W, \"height\": H, \"frames\": [{\"frame\": 0, \"detections\":\n"
            "        [{\"box\": [x1,y1,x2,y2], \"score\": s, \"class_id\": c}]}]}\n"
            "  out: {\"frames\": [{\"frame\": 0, \"tracks\": [{\"track_id\": i, \"box\": [x1,y1,x2,y2],\n"
            "        \"score\": s, \"class_id\": c, \"det_index\": k}]}]}\n"
            "Frame numbers increase; a gap counts as frames without detections. The first frame\n"
            "given is the tracker's first frame. det_index is the matched detection's position\n"
            "in its frame's list; box is the Kalman filter's box after the update.\n\n"
            "options:\n"
            "  --detections F        the detections file (required)\n"
            "  --track-high-thresh X first association for scores >= X (%g)\n"
            "  --track-low-thresh X  second association for scores in (X, high) (%g)\n"
            "  --new-track-thresh X  a new track needs a score >= X (%g)\n"
            "  --track-buffer N      frames a lost track is kept, at 30 fps (%d)\n"
            "  --match-thresh X      first association's cost limit (%g)\n"
            "  --fuse-score 0|1      multiply IoU by the score in the cost (%d)\n"
            "  --fuse-score-low 0|1  also in the second association, as Ultralytics 8.4.40 and\n"
            "                        later do (%d)\n"
            "  --frame-rate F        scales the buffer: int(F / 30 * track_buffer) (%g)\n"
            "  --output FILE         write the JSON to FILE instead of stdout\n"
            "  --timing              print the tracker's time per frame (JSON) on stderr\n"
            "  --camera-config F     also run the first camera's analytics of F (a serve configuration:\n"
            "                        lines, zones, calibration) on the tracks; with --timing, their\n"
            "                        time per frame too (frame times are frame / frame_rate)\n",
            d.track_high_thresh, d.track_low_thresh, d.new_track_thresh, d.track_buffer, d.match_thresh,
            d.fuse_score, d.fuse_score_low, d.frame_rate);
}

static double round_to(double x, double scale) { return round(x * scale) / scale; }

static json_t *frame_json(const it_track_frame *fr, const it_track_out *o, int n) {
    json_t *fj = json_object(), *arr = json_array();
    json_object_set_new(fj, "frame", json_integer(fr->frame));
    for (int i = 0; i < n; i++) {
        json_t *tj = json_object(), *box = json_array();
        json_object_set_new(tj, "track_id", json_integer(o[i].track_id));
        for (int k = 0; k < 4; k++) json_array_append_new(box, json_real(round_to(o[i].box[k], 1e3)));
        json_object_set_new(tj, "box", box);
        /* the score as the file gave it, not its float32 copy */
        json_object_set_new(tj, "score", json_real(fr->scores[o[i].det_index]));
        json_object_set_new(tj, "class_id", json_integer(o[i].class_id));
        json_object_set_new(tj, "det_index", json_integer(o[i].det_index));
        json_array_append_new(arr, tj);
    }
    json_object_set_new(fj, "tracks", arr);
    return fj;
}

static int cmp_ms(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void count_event(void *arg, const it_store_event *ev) {
    (void)ev;
    (*(long long *)arg)++;
}

static int run(const char *dets_path, const char *output, const it_track_params *p, int timing,
               const it_camdef *an_def) {
    uint8_t *buf = NULL;
    size_t len = 0;
    itscam_status st = it_read_file(dets_path, &buf, &len, MAX_DETECTIONS_FILE);
    if (st) return cli_fail(dets_path, st);
    it_track_input in;
    st = it_track_input_parse((const char *)buf, len, &in);
    it_free(buf);
    if (st) return cli_fail(dets_path, st);
    it_tracker *t = it_tracker_new(p);
    it_track_out *out = it_malloc(sizeof *out * IT_TRACK_MAX_TRACKS);
    FILE *f = NULL;
    int rc = 1;
    double *ms = NULL, *ams = NULL;
    long long n_dets = 0, n_events = 0;
    /* --camera-config: the camera's analytics on the tracks, through the same event path
     * as the pipeline (details, names), into a counter instead of the store. */
    it_cam_events *cev = NULL;
    itscam_detection *cdets = NULL;
    if (an_def) {
        it_cam_events_params ep = it_cam_events_default_params();
        ep.sink = count_event;
        ep.sink_arg = &n_events;
        ep.occupancy_every_s = 0;
        cev = it_cam_events_new(&ep, an_def);
        cdets = it_calloc(IT_TRACK_MAX_DETS, sizeof *cdets);
        if (!cev || !cdets) {
            cli_fail(NULL, ITSCAM_ERR_NOMEM);
            goto done;
        }
    }
    if (!t || !out) {
        cli_fail(NULL, t ? ITSCAM_ERR_NOMEM : ITSCAM_ERR_INVALID_ARG);
        goto done;
    }
    f = output ? fopen(output, "w") : stdout;
    if (!f) {
        fprintf(stderr, "itscam track: %s: cannot write\n", output);
        goto done;
    }
    /* Empty frames beyond max_time_lost + 2 change nothing but the frame count (every track
     * is gone by then: lost at the first, removed at max_time_lost + 1, out of the lists one
     * frame later), so a long gap is replayed only that far. */
    int gap_cap = it_tracker_max_time_lost(t) + 2;
    /* --timing: the tracker's own time per input frame (not parsing or writing JSON). */
    if (timing) ms = it_malloc(sizeof *ms * (size_t)(in.n_frames ? in.n_frames : 1));
    if (timing && cev) ams = it_malloc(sizeof *ams * (size_t)(in.n_frames ? in.n_frames : 1));
    it_image frame_img = { .width = in.width, .height = in.height }; /* a size, no pixels */
    fputs("{\"frames\": [", f);
    for (int i = 0; i < in.n_frames; i++) {
        const it_track_frame *fr = &in.frames[i];
        if (i > 0) {
            long long gap = (long long)fr->frame - in.frames[i - 1].frame - 1;
            for (long long g = 0; g < gap && g < gap_cap; g++)
                if (it_tracker_update(t, NULL, 0, NULL, 0) < 0) goto fail;
        }
        double t0 = it_now_ms();
        int n = it_tracker_update(t, fr->dets, fr->n, out, IT_TRACK_MAX_TRACKS);
        if (ms) ms[i] = it_now_ms() - t0;
        n_dets += fr->n;
        if (n < 0) goto fail;
        if (cev) {
            for (int k = 0; k < fr->n; k++) cdets[k].class_id = fr->dets[k].class_id;
            double t1 = it_now_ms();
            it_cam_events_frame(cev, &frame_img, cdets, fr->n, out, n < IT_TRACK_MAX_TRACKS ? n : IT_TRACK_MAX_TRACKS,
                                fr->frame / (double)p->frame_rate);
            if (ams) ams[i] = it_now_ms() - t1;
        }
        json_t *fj = frame_json(fr, out, n);
        fputs(i ? ",\n" : "\n", f);
        json_dumpf(fj, f, JSON_REAL_PRECISION(10));
        json_decref(fj);
    }
    fputs("\n]}\n", f);
    rc = 0;
    if (ms && in.n_frames > 0) {
        double sum = 0;
        for (int i = 0; i < in.n_frames; i++) sum += ms[i];
        qsort(ms, (size_t)in.n_frames, sizeof *ms, cmp_ms);
        fprintf(stderr,
                "{\"frames\": %d, \"detections_per_frame\": %.1f, \"mean_ms\": %.4f, \"p50_ms\": %.4f, "
                "\"p95_ms\": %.4f, \"max_ms\": %.4f}\n",
                in.n_frames, (double)n_dets / in.n_frames, sum / in.n_frames, it_percentile(ms, (size_t)in.n_frames, 50),
                it_percentile(ms, (size_t)in.n_frames, 95), ms[in.n_frames - 1]);
        if (ams) {
            double asum = 0, both[2];
            for (int i = 0; i < in.n_frames; i++) asum += ams[i];
            qsort(ams, (size_t)in.n_frames, sizeof *ams, cmp_ms);
            both[0] = it_percentile(ams, (size_t)in.n_frames, 50);
            both[1] = it_percentile(ams, (size_t)in.n_frames, 95);
            fprintf(stderr,
                    "{\"analytics_mean_ms\": %.4f, \"analytics_p50_ms\": %.4f, \"analytics_p95_ms\": %.4f, "
                    "\"tracking_plus_analytics_mean_ms\": %.4f, \"events\": %lld}\n",
                    asum / in.n_frames, both[0], both[1], (sum + asum) / in.n_frames, n_events);
        }
    }
    if (ferror(f)) {
        fprintf(stderr, "itscam track: %s: write error\n", output ? output : "stdout");
        rc = 1;
    }
    goto done;
fail:
    fprintf(stderr, "itscam track: %s: %s\n", dets_path, itscam_last_error());
done:
    if (f && output && fclose(f) && rc == 0) {
        fprintf(stderr, "itscam track: %s: write error\n", output);
        rc = 1;
    }
    it_free(ms);
    it_free(ams);
    it_cam_events_free(cev, 0);
    it_free(cdets);
    it_free(out);
    it_tracker_free(t);
    it_track_input_free(&in);
    return rc;
}

int cli_track(int argc, char **argv) {
    static const struct option opts[] = {
        { "detections", required_argument, NULL, 'd' },
        { "track-high-thresh", required_argument, NULL, 'H' },
        { "track-low-thresh", required_argument, NULL, 'L' },
        { "new-track-thresh", required_argument, NULL, 'N' },
        { "track-buffer", required_argument, NULL, 'B' },
        { "match-thresh", required_argument, NULL, 'M' },
        { "fuse-score", required_argument, NULL, 'F' },
        { "fuse-score-low", required_argument, NULL, 'W' },
        { "frame-rate", required_argument, NULL, 'R' },
        { "output", required_argument, NULL, 'o' },
        { "timing", no_argument, NULL, 'T' },
        { "camera-config", required_argument, NULL, 'C' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    it_track_params p = it_track_default_params();
    const char *dets = NULL, *output = NULL, *cam_cfg = NULL;
    int c, timing = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "d:o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'd': dets = optarg; break;
        case 'o': output = optarg; break;
        case 'T': timing = 1; break;
        case 'C': cam_cfg = optarg; break;
        case 'H': if (cli_parse_float(optarg, &p.track_high_thresh)) goto bad; break;
        case 'L': if (cli_parse_float(optarg, &p.track_low_thresh)) goto bad; break;
        case 'N': if (cli_parse_float(optarg, &p.new_track_thresh)) goto bad; break;
        case 'B': if (cli_parse_int(optarg, &p.track_buffer)) goto bad; break;
        case 'M': if (cli_parse_float(optarg, &p.match_thresh)) goto bad; break;
        case 'F': if (cli_parse_int(optarg, &p.fuse_score) || (p.fuse_score != 0 && p.fuse_score != 1)) goto bad; break;
        case 'W':
            if (cli_parse_int(optarg, &p.fuse_score_low) || (p.fuse_score_low != 0 && p.fuse_score_low != 1)) goto bad;
            break;
        case 'R': if (cli_parse_float(optarg, &p.frame_rate)) goto bad; break;
        case 'h': cli_track_usage(stdout); return 0;
        default: cli_track_usage(stderr); return 2;
        }
    }
    if (!dets) {
        fprintf(stderr, "itscam track: --detections is required\n");
        return 2;
    }
    if (optind < argc) {
        fprintf(stderr, "itscam track: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    /* Settings out of range are usage errors, like a malformed number. */
    it_tracker *probe = it_tracker_new(&p);
    if (!probe) {
        fprintf(stderr, "itscam track: %s\n", itscam_last_error());
        return 2;
    }
    it_tracker_free(probe);
    it_camdef *cams = NULL;
    int n_cams = 0;
    if (cam_cfg) {
        char err[1024];
        if (srv_cameras_load_file(cam_cfg, &cams, &n_cams, err, sizeof err)) {
            fprintf(stderr, "itscam track: %s\n", err);
            return 1;
        }
        if (n_cams < 1) {
            fprintf(stderr, "itscam track: %s: no cameras: listed\n", cam_cfg);
            return 1;
        }
    }
    int rc = run(dets, output, &p, timing, cams);
    it_free(cams);
    return rc;
bad:
    fprintf(stderr, "itscam track: bad value for --%s: '%s'\n", argv[optind - 1] + 2, optarg);
    return 2;
}
