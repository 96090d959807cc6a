/* Camera sources (src/stream): the shared videos as file cameras (frames, pacing, loop,
 * the newest-frame slot, conversion only of the frames taken, skip modes), sources that
 * cannot play (missing, not media, no video, truncated, a missing v4l2 device, hardware
 * decoding absent), and closes that must return at once while a connection hangs. */
#include "check.h"
#include "check_source.h"
#include "core/core.h"
#include "stream/source.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <time.h>

static double wall_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Every log line, to prove that no credential reaches it. */
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static int log_leaks, log_lines, log_hw_fallbacks;
static void capture_log(int level, const char *msg, void *user) {
    (void)level;
    (void)user;
    pthread_mutex_lock(&log_mu);
    log_lines++;
    if (strstr(msg, "hwaccel auto") && strstr(msg, "software")) log_hw_fallbacks++;
    if (strstr(msg, "s3cret")) {
        log_leaks++;
        fprintf(stderr, "credential in log: %s\n", msg);
    }
    pthread_mutex_unlock(&log_mu);
}

static it_source *open_src(const char *url, int realtime, int loop) {
    it_source_params p = it_source_default_params();
    p.url = url;
    p.realtime = realtime;
    p.loop = loop;
    it_source *s = NULL;
    CHECK_OK(it_source_open(&p, &s));
    return s;
}

static void test_redact(void) {
    char b[256];
    CHECK(!strcmp(it_url_redact("rtsp://admin:pw@10.0.0.1:554/s", b, sizeof b), "rtsp://***@10.0.0.1:554/s"));
    CHECK(!strcmp(it_url_redact("rtsp://10.0.0.1/a@b", b, sizeof b), "rtsp://10.0.0.1/a@b"));
    CHECK(!strcmp(it_url_redact("/videos/a.mp4", b, sizeof b), "/videos/a.mp4"));
    CHECK(!strcmp(it_url_redact("x http://u@h/ and rtsp://u:p@h2/y", b, sizeof b), "x http://***@h/ and rtsp://***@h2/y"));
    CHECK(!strcmp(it_url_redact("rtsp://u:p@h", b, 8), "rtsp://"));
}

/* Frames come with increasing indexes and sane capture times; no allocation per frame. */
static void test_frames(const char *video) {
    double t0 = wall_now();
    it_source *s = open_src(video, 0, 0);
    it_image img = { 0 };
    it_frame_meta m;
    int64_t last = -1;
    int got = 0;
    uint64_t allocs = 0;
    for (int i = 0; i < 30; i++) {
        if (!it_source_take(s, &img, &m, 5000)) break;
        got++;
        CHECKF(m.index > last, "index %lld after %lld", (long long)m.index, (long long)last);
        CHECKF(m.captured_at >= t0 - 1 && m.captured_at <= wall_now() + 1, "captured_at %.0f", m.captured_at);
        CHECK(img.width > 0 && img.height > 0 && img.data);
        last = m.index;
        if (i == 5) allocs = it_alloc_count();
    }
    CHECK(got == 30);
    CHECKF(it_alloc_count() == allocs, "%llu allocations for 24 frames: frame buffers are not reused",
           (unsigned long long)(it_alloc_count() - allocs));
    it_source_info info;
    it_source_state(s, &info);
    CHECK(info.state == IT_SOURCE_STREAMING);
    CHECK(info.decoded >= 30 && info.stream_fps > 0 && info.width == img.width);
    it_source_close(s);
    it_image_free(&img);
}

/* Real time: frames arrive at the file's own rate (a generous margin: loaded machines). */
static void test_realtime(const char *video) {
    it_source *s = open_src(video, 1, 0);
    it_image img = { 0 };
    it_frame_meta m;
    CHECK(it_source_take(s, &img, &m, 5000));
    double t0 = it_now_ms();
    int64_t first = m.index;
    while (it_now_ms() - t0 < 1500) it_source_take(s, &img, &m, 200);
    double secs = (it_now_ms() - t0) / 1e3;
    it_source_info info;
    it_source_state(s, &info);
    double rate = (m.index - first) / secs;
    fprintf(stderr, "realtime: %.1f frames/s for a %.1f fps stream\n", rate, info.stream_fps);
    CHECKF(rate > info.stream_fps * 0.4 && rate < info.stream_fps * 1.3, "%.1f frames/s at %.1f fps", rate,
           info.stream_fps);
    it_source_close(s);
    it_image_free(&img);
}

/* The end: without loop the source ends; with loop it starts again, indexes still rising. */
static void test_end_and_loop(const char *video) {
    it_source *s = open_src(video, 0, 0);
    it_source_info info = wait_state(s, IT_SOURCE_ENDED, 20000);
    CHECKF(info.state == IT_SOURCE_ENDED, "state %s", it_source_state_name(info.state));
    uint64_t total = info.decoded;
    CHECK(total > 10);
    it_image img = { 0 };
    it_frame_meta m;
    CHECK(it_source_take(s, &img, &m, 100) == 1);  /* the last frame still waits */
    CHECK(it_source_take(s, &img, &m, 100) == 0);  /* then nothing: ended */
    it_source_close(s);

    s = open_src(video, 0, 1);
    double end = it_now_ms() + 30000;
    do {
        it_source_state(s, &info);
        usleep(20000);
    } while (info.decoded < total + 10 && it_now_ms() < end);
    CHECKF(info.decoded >= total + 10 && info.state == IT_SOURCE_STREAMING, "looped: %llu of %llu frames, %s",
           (unsigned long long)info.decoded, (unsigned long long)total, it_source_state_name(info.state));
    CHECK(it_source_take(s, &img, &m, 1000) && m.index >= (int64_t)total);
    it_source_close(s);
    it_image_free(&img);
    fprintf(stderr, "end and loop: %llu frames per pass\n", (unsigned long long)total);
}

/* A slow consumer: only the newest frame waits, the rest are counted as dropped. */
static void test_slow_consumer(const char *video) {
    it_source *s = open_src(video, 0, 1);
    it_image img = { 0 };
    it_frame_meta m;
    CHECK(it_source_take(s, &img, &m, 5000));
    int64_t prev = m.index;
    usleep(300000);
    CHECK(it_source_take(s, &img, &m, 5000));
    it_source_info info;
    it_source_state(s, &info);
    CHECKF(m.index > prev + 1 && info.dropped > 0, "index %lld after %lld, %llu dropped", (long long)m.index,
           (long long)prev, (unsigned long long)info.dropped);
    /* decoded = taken + dropped + (at most) the one waiting */
    CHECK(info.decoded >= (uint64_t)2 + info.dropped);
    it_source_close(s);

    /* Lossless (offline files): the reader waits, every frame arrives, none dropped. */
    it_source_params p = it_source_default_params();
    p.url = video;
    p.realtime = 0;
    p.lossless = 1;
    CHECK_OK(it_source_open(&p, &s));
    for (int i = 0; i < 5; i++) {
        CHECK(it_source_take(s, &img, &m, 5000) && m.index == i);
        usleep(50000);
    }
    it_source_state(s, &info);
    CHECKF(info.dropped == 0 && info.decoded <= 6, "lossless: %llu dropped, %llu decoded",
           (unsigned long long)info.dropped, (unsigned long long)info.decoded);
    it_source_close(s);
    it_image_free(&img);
}

static it_source_info fails_with(const char *url, it_source_reason want) {
    it_source *s = open_src(url, 1, 0);
    it_source_info info = wait_state(s, IT_SOURCE_FAILED, 10000);
    CHECKF(info.state == IT_SOURCE_FAILED && info.reason == want, "%s: %s, reason '%s' (wanted '%s'): %s", url,
           it_source_state_name(info.state), it_source_reason_name(info.reason), it_source_reason_name(want),
           info.last_error);
    it_image img = { 0 };
    CHECK(it_source_take(s, &img, NULL, 100) == 0);
    it_source_close(s);
    fprintf(stderr, "%s: %s\n", url, info.last_error);
    return info;
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(data, 1, n, f) == n);
    if (f) fclose(f);
}

/* Missing, not media, audio only, truncated. */
static void test_unplayable(const char *video) {
    fails_with("/nonexistent/video.mp4", IT_REASON_NOT_FOUND);
    char dir[] = "/tmp/itscam_stream_XXXXXX", path[256];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/notes.mp4", dir);
    write_file(path, "this is not a video\n", 20);
    fails_with(path, IT_REASON_FORMAT);
    unlink(path);

    /* One second of silence as a WAV file: a valid media file without a video stream. */
    enum { RATE = 8000 };
    static uint8_t wav[44 + RATE * 2];
    uint32_t v32;
    uint16_t v16;
    memcpy(wav, "RIFF", 4);
    v32 = sizeof wav - 8; memcpy(wav + 4, &v32, 4);
    memcpy(wav + 8, "WAVEfmt ", 8);
    v32 = 16; memcpy(wav + 16, &v32, 4);
    v16 = 1; memcpy(wav + 20, &v16, 2);       /* PCM */
    v16 = 1; memcpy(wav + 22, &v16, 2);       /* mono */
    v32 = RATE; memcpy(wav + 24, &v32, 4);
    v32 = RATE * 2; memcpy(wav + 28, &v32, 4);
    v16 = 2; memcpy(wav + 32, &v16, 2);
    v16 = 16; memcpy(wav + 34, &v16, 2);
    memcpy(wav + 36, "data", 4);
    v32 = RATE * 2; memcpy(wav + 40, &v32, 4);
    snprintf(path, sizeof path, "%s/audio.wav", dir);
    write_file(path, wav, sizeof wav);
    fails_with(path, IT_REASON_NO_VIDEO);
    unlink(path);

    /* The first 64 KiB of a real video: whatever FFmpeg makes of it, no crash, no hang,
     * and it does not stream for ever. */
    FILE *f = fopen(video, "rb");
    static uint8_t head[64 << 10];
    size_t n = f ? fread(head, 1, sizeof head, f) : 0;
    if (f) fclose(f);
    snprintf(path, sizeof path, "%s/truncated.mp4", dir);
    write_file(path, head, n);
    it_source *s = open_src(path, 0, 0);
    it_source_info info;
    double end = it_now_ms() + 10000;
    do {
        it_source_state(s, &info);
        usleep(10000);
    } while (info.state != IT_SOURCE_FAILED && info.state != IT_SOURCE_ENDED && it_now_ms() < end);
    CHECKF(info.state == IT_SOURCE_FAILED && info.reason == IT_REASON_FORMAT, "truncated: %s",
           it_source_state_name(info.state));
    fprintf(stderr, "truncated: %s after %llu frames: %s\n", it_source_state_name(info.state),
            (unsigned long long)info.decoded, info.last_error);
    it_source_close(s);
    unlink(path);
    rmdir(dir);
}

/* A live URL that refuses: failed with the reason, retried, credentials never shown,
 * and close returns at once even in the middle of a backoff. */
static void test_refused(void) {
    it_source *s = open_src("rtsp://admin:s3cret@127.0.0.1:1/x", 1, 0);
    it_source_info info = wait_state(s, IT_SOURCE_FAILED, 5000);
    CHECKF(info.state == IT_SOURCE_FAILED && info.reason == IT_REASON_NETWORK, "%s: %s",
           it_source_state_name(info.state), info.last_error);
    CHECK(!strstr(info.last_error, "s3cret"));
    double t0 = it_now_ms();
    it_source_close(s);
    double ms = it_now_ms() - t0;
    CHECKF(ms < 500, "close took %.0f ms", ms);
}

/* A server that accepts and never answers: only the interrupt callback can end the open. */
static void test_hanging_server(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && listen(fd, 16) == 0 &&
          getsockname(fd, (struct sockaddr *)&a, &len) == 0);
    char rtsp[128], http[128];
    snprintf(rtsp, sizeof rtsp, "rtsp://u:s3cret@127.0.0.1:%d/x", ntohs(a.sin_port));
    snprintf(http, sizeof http, "http://127.0.0.1:%d/mjpeg", ntohs(a.sin_port));
    const char *urls[] = { rtsp, http };
    for (int i = 0; i < 2; i++) {
        it_source *s = open_src(urls[i], 1, 0);
        usleep(300000);
        it_source_info info;
        it_source_state(s, &info);
        CHECKF(info.state == IT_SOURCE_STARTING, "%s: %s", urls[i], it_source_state_name(info.state));
        double t0 = it_now_ms();
        it_source_close(s);
        double ms = it_now_ms() - t0;
        CHECKF(ms < 1000, "%s: close took %.0f ms", urls[i], ms);
    }
    /* With a short open timeout it gives up by itself and says why. */
    it_source_params p = it_source_default_params();
    p.url = rtsp;
    p.open_timeout_s = 0.5;
    it_source *s = NULL;
    CHECK_OK(it_source_open(&p, &s));
    it_source_info info = wait_state(s, IT_SOURCE_FAILED, 5000);
    CHECKF(info.state == IT_SOURCE_FAILED && info.reason == IT_REASON_TIMEOUT, "%s: %s",
           it_source_state_name(info.state), info.last_error);
    it_source_close(s);
    close(fd);
}

/* An MJPEG camera on loopback (HTTP multipart, as IP cameras serve it) with faults: the
 * first connection sends frames then goes silent with the socket open (a stall), the
 * second sends frames then closes (a disconnect), the later ones stream until the end. */
typedef struct mjpeg_cam {
    int fd, port;
    uint8_t *jpg;
    size_t len;
    atomic_int stop;
    pthread_t thread;
} mjpeg_cam;

static int send_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w <= 0) return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

static void *mjpeg_main(void *arg) {
    mjpeg_cam *cam = arg;
    int silent = -1;
    for (int conn = 0; !atomic_load(&cam->stop); conn++) {
        int c = accept(cam->fd, NULL, NULL);
        if (c < 0) break;
        char req[4096];
        ssize_t got = recv(c, req, sizeof req, 0);
        (void)got;
        const char *hdr = "HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace;boundary=frame\r\n\r\n";
        int ok = send_all(c, hdr, strlen(hdr)) == 0;
        for (int i = 0; ok && !atomic_load(&cam->stop) && (conn >= 2 || i < 30); i++) {
            char part[128];
            int n = snprintf(part, sizeof part, "--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %zu\r\n\r\n",
                             cam->len);
            ok = send_all(c, part, (size_t)n) == 0 && send_all(c, cam->jpg, cam->len) == 0 &&
                 send_all(c, "\r\n", 2) == 0;
            usleep(50000);
        }
        if (conn == 0) silent = c;  /* silent, socket open */
        else close(c);
    }
    if (silent >= 0) close(silent);
    return NULL;
}

/* Poll until the state is st; returns the ms waited, or -1 after ms. */
static double time_to_state(it_source *s, it_stream_state st, int ms) {
    double t0 = it_now_ms();
    it_source_info info = wait_state(s, st, ms);
    return info.state == st ? it_now_ms() - t0 : -1;
}

static void test_live_faults(const char *jpeg) {
    mjpeg_cam cam = { 0 };
    if (it_read_file(jpeg, &cam.jpg, &cam.len, 1 << 24) != ITSCAM_OK) return;
    cam.fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t alen = sizeof a;
    CHECK(bind(cam.fd, (struct sockaddr *)&a, sizeof a) == 0 && listen(cam.fd, 4) == 0 &&
          getsockname(cam.fd, (struct sockaddr *)&a, &alen) == 0);
    pthread_create(&cam.thread, NULL, mjpeg_main, &cam);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/video.mjpg", ntohs(a.sin_port));
    it_source_params p = it_source_default_params();
    p.url = url;
    p.stall_timeout_s = 1;
    it_source *s = NULL;
    CHECK_OK(it_source_open(&p, &s));
    CHECKF(time_to_state(s, IT_SOURCE_STREAMING, 10000) >= 0, "streaming");
    /* 30 frames at 20 fps, then silence: stalled about stall_timeout_s after the last frame */
    double ms = time_to_state(s, IT_SOURCE_STALLED, 10000);
    it_source_info info;
    it_source_state(s, &info);
    CHECKF(ms >= 0 && info.reason == IT_REASON_STALLED, "stalled after %.0f ms: %s", ms, info.last_error);
    uint64_t before = info.decoded;
    CHECKF(time_to_state(s, IT_SOURCE_RECONNECTING, 5000) >= 0, "reconnecting after the stall");
    CHECKF(time_to_state(s, IT_SOURCE_STREAMING, 10000) >= 0, "streaming again");
    /* the second connection closes after 30 frames: a disconnect, not an end */
    CHECKF(time_to_state(s, IT_SOURCE_RECONNECTING, 10000) >= 0, "reconnecting after the close");
    it_source_state(s, &info);
    /* the MJPEG demuxer reports a closed connection as an error or as the end: both are a disconnect */
    CHECKF(info.reason == IT_REASON_EOF || info.reason == IT_REASON_NETWORK, "reason %s", info.last_error);
    fprintf(stderr, "mjpeg camera closed: %s\n", info.last_error);
    CHECKF(time_to_state(s, IT_SOURCE_STREAMING, 10000) >= 0, "streaming after the close");
    it_source_state(s, &info);
    CHECKF(info.reconnects >= 2 && info.decoded > before, "%llu reconnects, %llu frames",
           (unsigned long long)info.reconnects, (unsigned long long)info.decoded);
    fprintf(stderr, "mjpeg camera: stall noticed in %.0f ms, %llu reconnects\n", ms,
            (unsigned long long)info.reconnects);
    atomic_store(&cam.stop, 1);
    double t0 = it_now_ms();
    it_source_close(s);
    CHECKF(it_now_ms() - t0 < 1000, "close took %.0f ms", it_now_ms() - t0);
    shutdown(cam.fd, SHUT_RDWR);
    close(cam.fd);
    pthread_join(cam.thread, NULL);
    it_free(cam.jpg);
}

/* Frames are converted only when taken: a consumer that takes one frame in many pays one
 * conversion; a take without an image converts nothing; peek leaves the frame in place. */
static void test_lazy_convert(const char *video) {
    it_source_params p = it_source_default_params();
    p.url = video;
    p.realtime = 0;
    p.lossless = 1;
    it_source *s = NULL;
    CHECK_OK(it_source_open(&p, &s));
    it_image img = { 0 };
    it_frame_meta m, peeked;
    int taken = 0;
    for (int i = 0; i < 40; i++) {
        CHECK(it_source_peek(s, &peeked, 5000) == 1);
        CHECK(it_source_peek(s, &peeked, 0) == 1 && peeked.index == i);  /* still there */
        int convert = i % 10 == 0;
        CHECK(it_source_take(s, convert ? &img : NULL, &m, 5000) == 1);
        CHECKF(m.index == peeked.index && m.captured_at == peeked.captured_at, "took %lld after peeking %lld",
               (long long)m.index, (long long)peeked.index);
        taken += convert;
    }
    it_source_info info;
    it_source_state(s, &info);
    CHECKF(info.converted == (uint64_t)taken && info.decoded >= 40, "%llu converted of %llu decoded, %d taken",
           (unsigned long long)info.converted, (unsigned long long)info.decoded, taken);
    CHECK(img.width == info.width && img.height == info.height && img.data);
    /* the picture is real: not all one value */
    int lo = 255, hi = 0;
    for (int y = 0; y < img.height; y += 7)
        for (int x = 0; x < img.width * 3; x += 13) {
            int v = img.data[(size_t)y * img.stride + x];
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
        }
    CHECKF(hi - lo > 50, "converted frame spans %d..%d", lo, hi);
    it_source_close(s);

    /* Live-like (not lossless): a consumer at a fraction of the rate converts only what it takes. */
    s = open_src(video, 0, 1);
    for (int i = 0; i < 5; i++) {
        CHECK(it_source_take(s, &img, &m, 5000));
        usleep(40000);
    }
    it_source_state(s, &info);
    CHECKF(info.converted == 5 && info.decoded > 10 && info.dropped > 0, "%llu converted, %llu decoded",
           (unsigned long long)info.converted, (unsigned long long)info.decoded);
    fprintf(stderr, "lazy conversion: 5 converted of %llu decoded\n", (unsigned long long)info.decoded);
    it_source_close(s);
    it_image_free(&img);
}

/* Decode a whole file in a skip mode; returns the frames decoded (the source must end). */
static uint64_t decode_all(const char *video, it_skip_mode mode, uint64_t *skipped) {
    it_source_params p = it_source_default_params();
    p.url = video;
    p.realtime = 0;
    p.skip = mode;
    it_source *s = NULL;
    CHECK_OK(it_source_open(&p, &s));
    it_source_info info = wait_state(s, IT_SOURCE_ENDED, 30000);
    CHECKF(info.state == IT_SOURCE_ENDED, "skip %s: %s: %s", it_skip_name(mode), it_source_state_name(info.state),
           info.last_error);
    it_source_close(s);
    if (skipped) *skipped = info.skipped_packets;
    return info.decoded;
}

/* Skip modes: nonref decodes fewer frames where the stream has non-reference frames,
 * keyframes only the key frames; both end the file normally (not "truncated"). Switching
 * while running takes effect, and back to none decodes every frame again. */
static void test_skip(const char *bframes_video, const char *video) {
    it_skip_mode m;
    CHECK(it_skip_parse("nonref", &m) == 0 && m == IT_SKIP_NONREF);
    CHECK(it_skip_parse("keyframes", &m) == 0 && m == IT_SKIP_KEYFRAMES);
    CHECK(it_skip_parse("all", &m) == -1 && !strcmp(it_skip_name(IT_SKIP_NONE), "none"));
    uint64_t skipped = 0;
    uint64_t all = decode_all(bframes_video, IT_SKIP_NONE, NULL);
    uint64_t nonref = decode_all(bframes_video, IT_SKIP_NONREF, NULL);
    uint64_t key = decode_all(bframes_video, IT_SKIP_KEYFRAMES, &skipped);
    fprintf(stderr, "skip: %llu frames decoded, %llu with nonref, %llu with keyframes (%llu packets skipped)\n",
            (unsigned long long)all, (unsigned long long)nonref, (unsigned long long)key,
            (unsigned long long)skipped);
    CHECK(all > 100 && nonref < all * 3 / 4 && nonref > all / 4);
    CHECK(key >= 1 && key < all / 20 && key + skipped >= all - 2);

    it_source_params p = it_source_default_params();
    p.url = video;
    p.realtime = 0;
    p.loop = 1;
    it_source *s = NULL;
    CHECK_OK(it_source_open(&p, &s));
    it_image img = { 0 };
    it_frame_meta fm;
    CHECK(it_source_take(s, &img, &fm, 5000));
    it_source_set_skip(s, IT_SKIP_KEYFRAMES);
    usleep(100000);
    it_source_info a, b;
    it_source_state(s, &a);
    usleep(500000);
    it_source_state(s, &b);
    uint64_t dec_key = b.decoded - a.decoded, skip_key = b.skipped_packets - a.skipped_packets;
    CHECKF(skip_key > 10 * (dec_key + 1) / 2 && b.state == IT_SOURCE_STREAMING,
           "keyframes mode: %llu decoded, %llu skipped", (unsigned long long)dec_key, (unsigned long long)skip_key);
    it_source_set_skip(s, IT_SKIP_NONE);
    double end = it_now_ms() + 10000;
    do {  /* back to every frame after the next key frame */
        usleep(100000);
        it_source_state(s, &a);
        usleep(300000);
        it_source_state(s, &b);
    } while (b.skipped_packets != a.skipped_packets && it_now_ms() < end);
    CHECKF(b.skipped_packets == a.skipped_packets && b.decoded > a.decoded + 10, "none again: %llu decoded",
           (unsigned long long)(b.decoded - a.decoded));
    CHECK(it_source_take(s, &img, &fm, 5000));
    fprintf(stderr, "set_skip: keyframes %llu decoded / %llu skipped in 0.5 s, none again: %llu decoded in 0.3 s\n",
            (unsigned long long)dec_key, (unsigned long long)skip_key, (unsigned long long)(b.decoded - a.decoded));
    it_source_close(s);
    it_image_free(&img);
}

/* No GPU and no VAAPI here: auto decodes in software and says so once per process, however
 * many sources; an explicit vaapi or cuda without its device fails with reason decoder
 * (where the hardware exists, it streams on it). Unknown names are refused at open. */
static void test_hwaccel(const char *video) {
    it_source_params p = it_source_default_params();
    p.url = video;
    p.realtime = 0;
    p.loop = 1;
    p.hwaccel = "auto";
    it_source *a = NULL, *b = NULL;
    CHECK_OK(it_source_open(&p, &a));
    CHECK_OK(it_source_open(&p, &b));
    it_image img = { 0 };
    CHECK(it_source_take(a, &img, NULL, 5000) && it_source_take(b, &img, NULL, 5000));
    it_source_info info;
    it_source_state(a, &info);
    fprintf(stderr, "hwaccel auto: decoding on %s\n", info.hwaccel);
    it_source_close(a);
    it_source_close(b);
    if (!strcmp(info.hwaccel, "none")) {
        CHECKF(log_hw_fallbacks == 1, "the software fallback was logged %d times", log_hw_fallbacks);
        /* a second round of sources does not say it again */
        CHECK_OK(it_source_open(&p, &a));
        CHECK(it_source_take(a, &img, NULL, 5000));
        it_source_close(a);
        CHECKF(log_hw_fallbacks == 1, "the software fallback was logged %d times", log_hw_fallbacks);
    }
    const char *explicit[] = { "vaapi", "cuda" };
    for (int i = 0; i < 2; i++) {
        p.hwaccel = explicit[i];
        p.loop = 0;
        CHECK_OK(it_source_open(&p, &a));
        double end = it_now_ms() + 10000;
        do {
            usleep(10000);
            it_source_state(a, &info);
        } while (info.state == IT_SOURCE_STARTING && it_now_ms() < end);
        fprintf(stderr, "hwaccel %s: %s %s\n", explicit[i], it_source_state_name(info.state), info.last_error);
        if (info.state == IT_SOURCE_FAILED)
            CHECKF(info.reason == IT_REASON_DECODER && strstr(info.last_error, explicit[i]), "%s: %s", explicit[i],
                   info.last_error);
        else
            CHECKF(info.state != IT_SOURCE_STARTING && !strcmp(info.hwaccel, explicit[i]), "%s: %s on %s",
                   explicit[i], it_source_state_name(info.state), info.hwaccel);
        CHECK(it_source_take(a, &img, NULL, 100) == (info.state == IT_SOURCE_FAILED ? 0 : 1));
        it_source_close(a);
    }
    p.hwaccel = "opencl";
    CHECK(it_source_open(&p, &a) == ITSCAM_ERR_INVALID_ARG && a == NULL);
    it_image_free(&img);
}

/* A v4l2 device that is not there, and an RTSPS URL (accepted; nothing listens). */
static void test_device_and_rtsps(void) {
    const char *dev = "/dev/video9";
    if (access(dev, F_OK) == 0) {
        fprintf(stderr, "%s exists: not testing a missing device\n", dev);
    } else {
        it_source_info info = fails_with(dev, IT_REASON_NOT_FOUND);
        CHECKF(strstr(info.last_error, "v4l2") || strstr(info.last_error, "No such"), "%s", info.last_error);
    }
    it_source_info info = fails_with("rtsps://admin:s3cret@127.0.0.1:1/x", IT_REASON_NETWORK);
    CHECK(!strstr(info.last_error, "s3cret"));
}

int main(void) {
    itscam_log_set(capture_log, NULL, ITSCAM_LOG_DEBUG);
    test_redact();
    char v1[1024], v2[1024];
    const char *fast = shared_path(v1, sizeof v1, "videos/intersection_cctv.mp4");
    const char *small = shared_path(v2, sizeof v2, "videos/highway_tunnel_webcam.mp4");
    char v3[1024];
    const char *bframes = shared_path(v3, sizeof v3, "videos/highway_overpass_720p.mp4");
    int skip = !fast || !small || !bframes;
    if (!skip) {
        test_hwaccel(small);  /* first: the fallback message is once per process */
        test_lazy_convert(small);
        test_skip(bframes, small);
        test_frames(small);
        test_realtime(small);
        test_end_and_loop(fast);
        test_slow_consumer(small);
        test_unplayable(small);
    }
    char j[1024];
    if (shared_path(j, sizeof j, "images/bus.jpg")) test_live_faults(j);
    test_refused();
    test_device_and_rtsps();
    test_hanging_server();
    CHECKF(log_leaks == 0, "%d log lines of %d carried a credential", log_leaks, log_lines);
    if (skip && !check_failures) SKIP("videos/*.mp4 not in %s", shared_dir());
    return check_done("test_stream");
}
