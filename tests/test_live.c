/* The live HTTP routes over real sockets: an in-process server (no model needed) with a
 * fake camera fed from this test, and real clients (the curl binary, raw sockets, and
 * Python's urllib when python3 is present).
 *   snapshot.jpg: 404 unknown camera, 503 + Retry-After before the first frame, 400 bad
 *     query, 200 image/jpeg at native or scaled size;
 *   mjpeg: parts parse (boundary, Content-Length, SOI/EOI, X-Frame rising); a viewer that
 *     stops reading stalls neither the camera (puts) nor another viewer;
 *   events/stream: events in order with the camera filter, live-only ones without an
 *     id line; a client that stops reading is told `dropped` with a count later, and the
 *     bus holds a bounded amount for it; heartbeats on a quiet stream; resuming with
 *     Last-Event-ID (or last_event_id=) against a real store while events are committed
 *     and published concurrently: every matching event after the id once, in id order,
 *     across the switch from replay to live; `event: reset` past the replay bound and for
 *     an id the store never gave; srv_server_stop ends open streams at once. */
#include "check.h"
#include "core/core.h"
#include "server/config.h"
#include "server/server.h"
#include "sinks/bus.h"
#include "sinks/events.h"
#include "sinks/frames.h"
#include "vision/image.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>

static int port;

/* ---- a raw HTTP/1.0 client: no chunked coding, the body ends with the connection ---- */

typedef struct client {
    int fd;
    char *buf;
    size_t len, cap;
} client;

/* extra: more header lines ("Name: value\r\n"...), or NULL. */
static int client_open_h(client *c, const char *path, int rcvbuf, const char *extra) {
    memset(c, 0, sizeof *c);
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0) return -1;
    if (rcvbuf) setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) != 0) return -1;
    char req[512];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: localhost\r\n%s\r\n", path, extra ? extra : "");
    if (send(c->fd, req, (size_t)n, MSG_NOSIGNAL) != n) return -1;
    c->cap = 1 << 20;
    c->buf = malloc(c->cap);
    return c->buf ? 0 : -1;
}

static int client_open(client *c, const char *path, int rcvbuf) {
    return client_open_h(c, path, rcvbuf, NULL);
}

static void client_close(client *c) {
    if (c->fd >= 0) close(c->fd);
    free(c->buf);
    c->fd = -1;
    c->buf = NULL;
}

/* Read more bytes (up to timeout_ms). 1 read, 0 EOF, -1 timeout or error. */
static int client_more(client *c, int timeout_ms) {
    if (c->fd < 0) return 0; /* a buffer read from a file */
    struct pollfd p = { .fd = c->fd, .events = POLLIN };
    if (poll(&p, 1, timeout_ms) <= 0) return -1;
    if (c->len == c->cap) return -1;
    ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
    if (n < 0) return -1;
    if (n == 0) return 0;
    c->len += (size_t)n;
    return 1;
}

static void client_consume(client *c, size_t n) {
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

/* Wait for `delim` in the buffer; its end offset, or -1. */
static long client_until(client *c, const char *delim, int timeout_ms) {
    double end = it_now_ms() + timeout_ms;
    for (;;) {
        void *hit = memmem(c->buf, c->len, delim, strlen(delim));
        if (hit) return (long)((char *)hit - c->buf + (long)strlen(delim));
        int left = (int)(end - it_now_ms());
        if (left <= 0 || client_more(c, left) <= 0) return -1;
    }
}

/* Read the response head; returns the status code (0 on failure), head copied to head. */
static int client_head(client *c, char *head, size_t n) {
    long e = client_until(c, "\r\n\r\n", 10000);
    if (e < 0) return 0;
    snprintf(head, n, "%.*s", (int)e, c->buf);
    client_consume(c, (size_t)e);
    int code = 0;
    sscanf(head, "HTTP/1.%*d %d", &code);
    return code;
}

/* One MJPEG part: its X-Frame, or -1 on a malformed part. */
static long long mjpeg_part(client *c, size_t *jpeg_len) {
    long e = client_until(c, "\r\n\r\n", 10000);
    if (e < 0) return -1;
    char h[512];
    snprintf(h, sizeof h, "%.*s", (int)IT_MIN(e, 511), c->buf);
    size_t len = 0;
    long long frame = -1;
    const char *p;
    if (strncmp(h, "--itscamframe\r\n", 15) || !strstr(h, "Content-Type: image/jpeg\r\n")) return -1;
    if (!(p = strstr(h, "Content-Length: ")) || sscanf(p + 16, "%zu", &len) != 1) return -1;
    if (!(p = strstr(h, "X-Frame: ")) || sscanf(p + 9, "%lld", &frame) != 1) return -1;
    if (!strstr(h, "X-Timestamp: ")) return -1;
    client_consume(c, (size_t)e);
    double end = it_now_ms() + 10000;
    while (c->len < len + 2)
        if (it_now_ms() > end || client_more(c, 10000) <= 0) return -1;
    const uint8_t *b = (const uint8_t *)c->buf;
    if (len < 4 || b[0] != 0xFF || b[1] != 0xD8 || b[len - 2] != 0xFF || b[len - 1] != 0xD9 || b[len] != '\r' ||
        b[len + 1] != '\n')
        return -1;
    it_image img;
    if (it_image_decode(b, len, 1 << 24, &img) != ITSCAM_OK) return -1;
    it_image_free(&img);
    client_consume(c, len + 2);
    if (jpeg_len) *jpeg_len = len;
    return frame;
}

/* ---- the camera: puts frames until told to stop ---- */

typedef struct feeder {
    it_frames *f;
    const it_image *img;
    atomic_int stop;
    atomic_llong puts;
} feeder;

static void *feeder_main(void *arg) {
    feeder *fd = arg;
    itscam_detection det = { 0, "person", 0.8f, { 20, 30, 200, 400 } };
    long long i = 1000;
    while (!atomic_load(&fd->stop)) {
        i++;
        it_frames_put(fd->f, "cam1", fd->img, &det, NULL, 1, i, 1700000000.0 + i / 25.0);
        atomic_fetch_add(&fd->puts, 1);
        usleep(40000);
    }
    return NULL;
}

/* ---- curl ---- */

/* Run curl on path; status code, the body to body_path and the headers to hdr_path. */
static int curl_get(const char *path, const char *body_path, const char *hdr_path) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "curl -s -o %s -D %s -w '%%{http_code}' 'http://127.0.0.1:%d%s'", body_path, hdr_path,
             port, path);
    FILE *p = popen(cmd, "r");
    if (!p) return 0;
    int code = 0;
    if (fscanf(p, "%d", &code) != 1) code = 0;
    pclose(p);
    return code;
}

static int file_has(const char *path, const char *needle) {
    uint8_t *b = NULL;
    size_t n = 0;
    int has = 0;
    if (it_read_file(path, &b, &n, 1 << 26) == ITSCAM_OK) has = memmem(b, n, needle, strlen(needle)) != NULL;
    it_free(b);
    return has;
}

static void decoded_size(const char *path, int *w, int *h) {
    uint8_t *b = NULL;
    size_t n = 0;
    it_image img;
    *w = *h = 0;
    if (it_read_file(path, &b, &n, 1 << 26) == ITSCAM_OK && it_image_decode(b, n, 1 << 24, &img) == ITSCAM_OK) {
        *w = img.width;
        *h = img.height;
        it_image_free(&img);
    }
    it_free(b);
}

static void test_snapshot(it_frames *f, const it_image *img, const char *tmp) {
    char body[512], hdr[512];
    snprintf(body, sizeof body, "%s/body", tmp);
    snprintf(hdr, sizeof hdr, "%s/hdr", tmp);
    CHECK(curl_get("/v1/cameras/nocam/snapshot.jpg", body, hdr) == 404);
    CHECK(curl_get("/v1/cameras/Bad%21/snapshot.jpg", body, hdr) == 404);
    CHECK(curl_get("/v1/cameras/cam1/snapshot.jpg", body, hdr) == 503);
    CHECK(file_has(hdr, "Retry-After: 1"));
    CHECK_OK(it_frames_put(f, "cam1", img, NULL, NULL, 0, 1, 1700000000.25));
    CHECK(curl_get("/v1/cameras/cam1/snapshot.jpg?height=abc", body, hdr) == 400);
    CHECK(curl_get("/v1/cameras/cam1/snapshot.jpg?quality=0", body, hdr) == 400);
    CHECK(curl_get("/v1/cameras/cam1/snapshot.jpg", body, hdr) == 200);
    CHECK(file_has(hdr, "Content-Type: image/jpeg") && file_has(hdr, "X-Frame: 1") &&
          file_has(hdr, "X-Timestamp: 1700000000.250000"));
    int w, h;
    decoded_size(body, &w, &h);
    CHECKF(w == img->width && h == img->height, "%dx%d", w, h);
    CHECK(curl_get("/v1/cameras/cam1/snapshot.jpg?height=360&annotate=1&quality=60", body, hdr) == 200);
    decoded_size(body, &w, &h);
    CHECKF(h == 360 && w == (int)lround(img->width * 360.0 / img->height), "%dx%d", w, h);
    CHECK(curl_get("/v1/cameras/cam1/snapshot.jpg", body, hdr) == 200); /* the cached encoding again */
    CHECK(curl_get("/v1/cameras/cam1/mjpeg?fps=99", body, hdr) == 400);
    CHECK(curl_get("/v1/cameras/nocam/mjpeg", body, hdr) == 404);
    CHECK(curl_get("/v1/events/stream?camera=NO%20PE", body, hdr) == 400);
}

static void test_mjpeg(it_frames *f, const it_image *img, const char *tmp) {
    feeder fd = { .f = f, .img = img };
    pthread_t ft;
    pthread_create(&ft, NULL, feeder_main, &fd);

    /* a viewer that reads nothing, with a small socket buffer */
    client stalled;
    CHECK(client_open(&stalled, "/v1/cameras/cam1/mjpeg?fps=30", 4096) == 0);
    char head[2048];
    /* a viewer that reads */
    client v;
    CHECK(client_open(&v, "/v1/cameras/cam1/mjpeg?fps=10&height=240", 0) == 0);
    CHECK(client_head(&v, head, sizeof head) == 200);
    CHECK(strstr(head, "multipart/x-mixed-replace; boundary=itscamframe") != NULL);
    long long last = -1;
    int parts = 0, rising = 1;
    long long puts0 = atomic_load(&fd.puts);
    for (int i = 0; i < 12; i++) {
        long long fr = mjpeg_part(&v, NULL);
        if (fr < 0) break;
        rising &= fr > last;
        last = fr;
        parts++;
    }
    CHECKF(parts == 12 && rising, "%d parts, rising %d", parts, rising);
    /* the camera kept putting while one viewer was stalled */
    CHECK(atomic_load(&fd.puts) > puts0 + 5);

    /* curl as a viewer: decodes the chunked coding of HTTP/1.1 */
    char body[512], cmd[1024];
    snprintf(body, sizeof body, "%s/mjpeg", tmp);
    snprintf(cmd, sizeof cmd, "curl -s --max-time 2 -o %s 'http://127.0.0.1:%d/v1/cameras/cam1/mjpeg?fps=5'", body,
             port);
    int rc = system(cmd);
    (void)rc;
    client fc = { .fd = -1 };
    uint8_t *b = NULL;
    size_t n = 0;
    int cparts = 0;
    if (it_read_file(body, &b, &n, 1 << 26) == ITSCAM_OK) {
        fc.buf = (char *)b;
        fc.len = fc.cap = n;
        while (mjpeg_part(&fc, NULL) >= 0) cparts++;
        CHECKF(fc.len == 0 || cparts > 0, "%zu bytes left unparsed", fc.len); /* at most a cut last part */
    }
    it_free(b);
    CHECKF(cparts >= 3, "curl got %d parts in 2 s at 5 fps", cparts);

    atomic_store(&fd.stop, 1);
    pthread_join(ft, NULL);
    client_close(&v);
    client_close(&stalled);
}

static void test_events(it_bus *bus) {
    char head[2048];
    client c;
    CHECK(client_open(&c, "/v1/events/stream?camera=cam1", 0) == 0);
    CHECK(client_head(&c, head, sizeof head) == 200);
    CHECK(strstr(head, "text/event-stream") != NULL);
    long pre = client_until(&c, "\n\n", 5000); /* the opening comment: subscribed */
    CHECK(pre > 0);
    if (pre > 0) client_consume(&c, (size_t)pre);
    uint64_t seq;
    char txt[64];
    /* Live-only events (it_bus_publish) carry no id line; a stored one (published with
     * its store id) carries that id. */
    for (int i = 0; i < 20; i++) {
        int n = snprintf(txt, sizeof txt, "{\"i\":%d}", i);
        if (i == 8)
            CHECK_OK(it_bus_publish_stored(bus, "cam1", "zone.enter", txt, (size_t)n, 4242, &seq));
        else
            CHECK_OK(it_bus_publish(bus, i % 2 ? "cam2" : "cam1", i % 4 ? "detections" : "zone.enter", txt, (size_t)n,
                                    &seq));
    }
    int got = 0, ok = 1;
    for (int i = 0; i < 20; i += 2) {
        long e = client_until(&c, "\n\n", 10000);
        if (e < 0) break;
        char want[160];
        snprintf(want, sizeof want, "event: %s\n%sdata: {\"i\":%d}\n\n", i % 4 ? "detections" : "zone.enter",
                 i == 8 ? "id: 4242\n" : "", i);
        if ((size_t)e != strlen(want) || memcmp(c.buf, want, (size_t)e)) {
            fprintf(stderr, "want <%s> got <%.*s>\n", want, (int)e, c.buf);
            ok = 0;
        }
        client_consume(&c, (size_t)e);
        got++;
    }
    CHECK(got == 10 && ok);
    client_close(&c);

    /* a client that stops reading: its queue drops the oldest, then tells it how many */
    client s;
    CHECK(client_open(&s, "/v1/events/stream", 4096) == 0);
    CHECK(client_head(&s, head, sizeof head) == 200);
    pre = client_until(&s, "\n\n", 5000); /* subscribed; from now on it reads nothing */
    CHECK(pre > 0);
    if (pre > 0) client_consume(&s, (size_t)pre);
    it_bus_stats st0, st1;
    it_bus_stats_get(bus, &st0);
    char big[2048];
    memset(big, 'x', sizeof big);
    memcpy(big, "{\"pad\":\"", 8);
    memcpy(big + sizeof big - 2, "\"}", 2);
    for (int i = 0; i < 3000; i++) CHECK_OK(it_bus_publish(bus, "cam1", "big", big, sizeof big, NULL));
    it_bus_stats_get(bus, &st1);
    CHECKF(st1.dropped > st0.dropped, "dropped %llu", (unsigned long long)(st1.dropped - st0.dropped));
    CHECK_OK(it_bus_publish(bus, "cam1", "last", "{}", 2, &seq));
    /* now read everything: a dropped event with a count, and the last event at the end */
    long long dropped = 0;
    int seen_last = 0, events = 0;
    double end = it_now_ms() + 20000;
    while (!seen_last && it_now_ms() < end) {
        long e = client_until(&s, "\n\n", 10000);
        if (e < 0) break;
        const char *d = memmem(s.buf, (size_t)e, "event: dropped\ndata: {\"dropped\":", 32);
        if (d && d == s.buf) dropped += atoll(d + 32);
        if (!strncmp(s.buf, "event: big\n", 11)) events++;
        if (!strncmp(s.buf, "event: last\n", 12)) seen_last = 1;
        client_consume(&s, (size_t)e);
    }
    CHECK(seen_last);
    CHECKF(dropped > 0 && events + dropped == 3000, "dropped %lld + events %d", dropped, events);
    client_close(&s);
}

static void test_heartbeat(void) {
    /* stream_send_timeout_s 3: heartbeats every second */
    client c;
    char head[2048];
    CHECK(client_open(&c, "/v1/events/stream?camera=quiet", 0) == 0);
    CHECK(client_head(&c, head, sizeof head) == 200);
    CHECK(client_until(&c, ": ping\n\n", 10000) > 0);
    client_close(&c);
}

typedef struct hello {
    it_bus *bus;
    atomic_int stop;
} hello;
static void *hello_main(void *arg) {
    hello *h = arg;
    while (!atomic_load(&h->stop)) {
        it_bus_publish(h->bus, "py", "hello", "{\"from\":\"itscam\"}", 17, NULL);
        usleep(100000);
    }
    return NULL;
}

/* ---- resuming from the store ---- */

static const char *const rtypes[] = {"line_cross", "zone_enter", "speeding"};
static const char *const rclasses[] = {"car", "bus", "truck"};

static void resume_event(it_store_event *e, const char *camera, int i) {
    memset(e, 0, sizeof *e);
    snprintf(e->camera, sizeof e->camera, "%s", camera);
    snprintf(e->type, sizeof e->type, "%s", rtypes[i % 3]);
    snprintf(e->class_name, sizeof e->class_name, "%s", rclasses[(i / 3) % 3]);
    e->time = 1.7e9 + i;
    e->track_id = 1 + i;
    e->class_id = (i / 3) % 3;
    e->score = 0.5;
    snprintf(e->details, sizeof e->details, "{\"i\":%d}", i);
}

/* The pipeline's path, done by hand: commit, then publish with the store ids (and a
 * live-only detections event in between, which resuming clients must not count). */
typedef struct committer {
    it_store *db;
    it_bus *bus;
    int from, to; /* event numbers */
    int64_t ids[400];
    int bad;
} committer;

static void *committer_main(void *arg) {
    committer *c = arg;
    for (int i = c->from; i < c->to; i += 4) {
        it_store_event ev[4];
        int n = IT_MIN(4, c->to - i);
        for (int k = 0; k < n; k++) resume_event(&ev[k], "rc", i + k);
        int64_t ids[4];
        if (it_store_events_insert(c->db, ev, n, ids) != ITSCAM_OK) c->bad++;
        for (int k = 0; k < n; k++) {
            c->ids[i + k] = ids[k];
            ev[k].id = ids[k];
            size_t len;
            char *t = it_store_event_text(&ev[k], &len);
            if (!t || it_bus_publish_stored(c->bus, "rc", ev[k].type, t, len, ids[k], NULL) != ITSCAM_OK) c->bad++;
            free(t);
        }
        it_bus_publish(c->bus, "rc", "detections", "{}", 2, NULL);
        usleep(2000);
    }
    return NULL;
}

/* Read SSE events until the one with id `last` (or a timeout): ids in order into got
 * (their count returned; -1 when an id came twice or out of order, or an unexpected
 * event type came). */
static int read_ids(client *c, int64_t last, int64_t *got, int max, const char *want_type, const char *want_class,
                    int *resets) {
    int n = 0;
    double end = it_now_ms() + 30000;
    int64_t prev = 0;
    while (it_now_ms() < end) {
        long e = client_until(c, "\n\n", 10000);
        if (e < 0) break;
        char *b = c->buf;
        b[e - 1] = 0;
        if (!strncmp(b, "event: reset\n", 13)) ++*resets;
        const char *idl = strstr(b, "\nid: ");
        if (idl && strncmp(b, "event: ", 7) == 0) {
            int64_t id = atoll(idl + 5);
            if (id <= prev || n == max) return -1;
            if (want_type && strncmp(b + 7, want_type, strlen(want_type))) return -1;
            if (want_class) {
                char pat[64];
                snprintf(pat, sizeof pat, "\"class\":\"%s\"", want_class);
                if (!strstr(b, pat)) return -1;
            }
            got[n++] = prev = id;
        } else if (!strncmp(b, "event: detections", 17) || !strncmp(b, "event: line_cross", 17)) {
            return -1; /* filtered away, or a stored event without its id */
        }
        client_consume(c, (size_t)e);
        if (prev >= last) break;
    }
    return n;
}

static void test_resume(srv_server *s, it_bus *bus, const char *tmp) {
    char dir[600], err[512];
    snprintf(dir, sizeof dir, "%s/data", tmp);
    it_store *db = NULL;
    /* A second connection to the server's store, as another process would have. */
    CHECK(it_store_open(dir, &db, err, sizeof err) == 0);
    if (!db) return;
    /* 60 events while the clients are away, then 240 while they replay and go live. */
    committer cm = {.db = db, .bus = bus, .from = 0, .to = 60};
    committer_main(&cm);
    CHECK(cm.bad == 0);
    int64_t after = cm.ids[19]; /* the clients saw up to event 19 */
    client a, b;
    char head[2048], hdr[64];
    snprintf(hdr, sizeof hdr, "Last-Event-ID: %lld\r\n", (long long)after);
    CHECK(client_open_h(&a, "/v1/events/stream?camera=rc&type=speeding", 0, hdr) == 0);
    char path[128];
    snprintf(path, sizeof path, "/v1/events/stream?camera=rc&class=bus,truck&last_event_id=%lld", (long long)after);
    CHECK(client_open(&b, path, 0) == 0);
    cm.from = 60, cm.to = 300;
    pthread_t t;
    pthread_create(&t, NULL, committer_main, &cm);
    CHECK(client_head(&a, head, sizeof head) == 200 && client_head(&b, head, sizeof head) == 200);
    pthread_join(t, NULL);
    CHECK(cm.bad == 0);
    /* expected: events 20..299 that match, in id order */
    int64_t want_a[300], want_b[300], got[300];
    int na = 0, nb = 0;
    for (int i = 20; i < 300; i++) {
        if (i % 3 == 2) want_a[na++] = cm.ids[i];
        if ((i / 3) % 3 != 0) want_b[nb++] = cm.ids[i];
    }
    int resets = 0;
    int n = read_ids(&a, want_a[na - 1], got, 300, "speeding", NULL, &resets);
    CHECKF(n == na && !memcmp(got, want_a, sizeof *got * (size_t)na) && !resets, "type filter: %d of %d", n, na);
    n = read_ids(&b, want_b[nb - 1], got, 300, NULL, NULL, &resets);
    int ok = n == nb && !memcmp(got, want_b, sizeof *got * (size_t)nb);
    for (int i = 0; ok && i < nb; i++) ok = got[i] == want_b[i];
    CHECKF(ok && !resets, "class filter: %d of %d", n, nb);
    client_close(&a);
    client_close(&b);

    /* An id the store never gave: reset, pointing at the whole history. */
    client c;
    CHECK(client_open_h(&c, "/v1/events/stream?camera=rc", 0, "Last-Event-ID: 999999999\r\n") == 0);
    CHECK(client_head(&c, head, sizeof head) == 200);
    long e = client_until(&c, "event: reset\n", 10000);
    CHECK(e > 0 && client_until(&c, "\"cursor\":\"a0\"", 5000) > 0);
    client_close(&c);
    /* More than 10000 to replay: reset with a cursor after the id. */
    static it_store_event many[10001];
    for (int i = 0; i < 10001; i++) resume_event(&many[i], "many", i);
    int64_t last;
    CHECK_OK(it_store_events_last_id(db, &last));
    CHECK_OK(it_store_events_insert(db, many, 10001, NULL));
    snprintf(path, sizeof path, "/v1/events/stream?camera=many&last_event_id=%lld", (long long)last);
    CHECK(client_open(&c, path, 0) == 0);
    CHECK(client_head(&c, head, sizeof head) == 200);
    char cur[64];
    snprintf(cur, sizeof cur, "\"cursor\":\"a%lld\"", (long long)last);
    CHECK(client_until(&c, "event: reset\n", 10000) > 0 && client_until(&c, cur, 5000) > 0);
    client_close(&c);
    /* a bad id */
    CHECK(client_open_h(&c, "/v1/events/stream", 0, "Last-Event-ID: abc\r\n") == 0);
    CHECK(client_head(&c, head, sizeof head) == 400);
    client_close(&c);
    CHECK(client_open(&c, "/v1/events/stream?typo=1", 0) == 0);
    CHECK(client_head(&c, head, sizeof head) == 400);
    client_close(&c);
    CHECK(client_open(&c, "/v1/events/stream?type=Bad-Type", 0) == 0);
    CHECK(client_head(&c, head, sizeof head) == 400);
    client_close(&c);
    it_store_close(db);
    (void)s;
}

/* Python's urllib as an SSE client, when python3 is here. */
static void test_python(it_bus *bus) {
    if (system("python3 -c 'import urllib.request' 2>/dev/null") != 0) {
        fprintf(stderr, "note: python3 absent, the urllib client is skipped\n");
        return;
    }
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "python3 -c \"import urllib.request,sys\n"
             "r=urllib.request.urlopen('http://127.0.0.1:%d/v1/events/stream?camera=py',timeout=20)\n"
             "assert r.headers['Content-Type'].startswith('text/event-stream')\n"
             "for line in r:\n"
             "    if line.startswith(b'data: '):\n"
             "        print(line[6:].decode().strip()); sys.stdout.flush(); break\n\"",
             port);
    FILE *p = popen(cmd, "r");
    CHECK(p != NULL);
    if (!p) return;
    /* publish until the client, once subscribed, has one */
    hello h = { .bus = bus };
    pthread_t ht;
    pthread_create(&ht, NULL, hello_main, &h);
    char line[256] = "";
    if (!fgets(line, sizeof line, p)) line[0] = 0;
    pclose(p);
    atomic_store(&h.stop, 1);
    pthread_join(ht, NULL);
    CHECKF(!strcmp(line, "{\"from\":\"itscam\"}\n"), "python got '%s'", line);
}

/* The streams in /metrics: the bus's counters, open streams, ended streams by route. */
static void test_metrics(const char *tmp) {
    char body[512], hdr[512];
    snprintf(body, sizeof body, "%s/metrics", tmp);
    snprintf(hdr, sizeof hdr, "%s/hdr", tmp);
    CHECK(curl_get("/metrics", body, hdr) == 200);
    uint8_t *b = NULL;
    size_t n = 0;
    CHECK(it_read_file(body, &b, &n, 1 << 24) == ITSCAM_OK);
    char *t = b ? it_strndup((const char *)b, n) : NULL;
    it_free(b);
    const char *p;
    double v = -1;
    static const char dropped[] = "\nitscam_events_dropped_total ", published[] = "\nitscam_events_published_total ";
    CHECK(t && (p = strstr(t, dropped)) && sscanf(p + strlen(dropped), "%lf", &v) == 1 && v > 0);
    CHECK(t && (p = strstr(t, published)) && sscanf(p + strlen(published), "%lf", &v) == 1 && v > 3000);
    CHECK(t && strstr(t, "\nitscam_streams_open "));
    CHECK(t && strstr(t, "route=\"/v1/events/stream\""));
    CHECK(t && strstr(t, "route=\"/v1/cameras/{camera}/mjpeg\""));
    it_free(t);
}

int main(void) {
    if (system("curl --version >/dev/null 2>&1") != 0) SKIP("the curl binary is absent");
    srv_config cfg;
    srv_config_defaults(&cfg);
    snprintf(cfg.host, sizeof cfg.host, "127.0.0.1");
    cfg.port = 0;
    cfg.http_threads = 2;
    cfg.stream_send_timeout_s = 3;
    char err[512];
    char tmp[] = "/tmp/itscam_live_XXXXXX";
    CHECK(mkdtemp(tmp) != NULL);
    snprintf(cfg.storage_dir, sizeof cfg.storage_dir, "%s/data", tmp);
    srv_server *s = srv_server_start(&cfg, err, sizeof err);
    if (!s) {
        fprintf(stderr, "start: %s\n", err);
        return 1;
    }
    port = srv_server_port(s);
    it_frames *f = srv_server_frames(s);
    it_bus *bus = srv_server_bus(s);
    CHECK(f && bus);
    const char *names[] = { "person" };
    CHECK_OK(it_frames_add_camera(f, "cam1", names, 1));

    /* the camera's frame: a real photo when the shared data is here */
    it_image img = { 0 };
    char path[1024];
    uint8_t *bytes = NULL;
    size_t len;
    if (shared_path(path, sizeof path, "images/bus.jpg") && it_read_file(path, &bytes, &len, 1 << 24) == ITSCAM_OK)
        CHECK_OK(it_image_decode(bytes, len, 1 << 24, &img));
    it_free(bytes);
    if (!img.data) {
        CHECK_OK(it_image_alloc(&img, 640, 480));
        for (int i = 0; i < 640 * 480 * 3; i++) img.data[i] = (uint8_t)(i * 7);
    }
    /* the store (no cameras): what resuming reads */
    CHECK(srv_cameras_start(s, NULL, 0, err, sizeof err) == 0);

    double t = it_now_ms();
#define STEP(x)                                                            \
    do {                                                                   \
        x;                                                                 \
        fprintf(stderr, "%s: %.0f ms\n", #x, it_now_ms() - t);              \
        t = it_now_ms();                                                   \
    } while (0)
    STEP(test_snapshot(f, &img, tmp));
    STEP(test_mjpeg(f, &img, tmp));
    STEP(test_events(bus));
    STEP(test_heartbeat());
    STEP(test_resume(s, bus, tmp));
    STEP(test_python(bus));
    STEP(test_metrics(tmp));

    /* stop with streams open: they end at once instead of holding the drain */
    client a, b;
    char head[2048];
    CHECK(client_open(&a, "/v1/events/stream", 0) == 0 && client_head(&a, head, sizeof head) == 200);
    CHECK(client_open(&b, "/v1/cameras/cam1/mjpeg", 0) == 0 && client_head(&b, head, sizeof head) == 200);
    double t0 = it_now_ms();
    srv_server_stop(s);
    CHECKF(it_now_ms() - t0 < 20000, "stop took %.0f ms", it_now_ms() - t0);
    int rd;
    while ((rd = client_more(&a, 5000)) == 1) a.len = 0;
    CHECK(rd == 0); /* the stream ended */
    client_close(&a);
    client_close(&b);

    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0) fprintf(stderr, "note: could not remove %s\n", tmp);
    it_image_free(&img);
    return check_done("test_live");
}
