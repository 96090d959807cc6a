/* The event bus and the frame store (src/sinks): ordering, bounds and drop counts, wakes,
 * thread safety under concurrent publishers and subscribers, encode-once caching,
 * buffer reuse and track ids on the overlay. */
#include "check.h"
#include "core/core.h"
#include "sinks/bus.h"
#include "sinks/frames.h"
#include "vision/draw.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

/* ---- bus ---- */

static void count_wake(void *arg) {
    atomic_fetch_add((atomic_int *)arg, 1);
}

static void test_bus_basic(void) {
    it_bus *b = it_bus_new(4);
    CHECK(b);
    atomic_int wa = 0, wb = 0;
    it_bus_sub *all = it_bus_subscribe(b, NULL, 16, 1 << 16, count_wake, &wa);
    it_bus_sub *cam = it_bus_subscribe(b, "cam-b", 16, 1 << 16, count_wake, &wb);
    CHECK(all && cam);
    uint64_t seq = 0;
    CHECK_OK(it_bus_publish(b, "cam-a", "detections", "{\"n\":1}", 7, &seq));
    CHECK(seq == 1);
    CHECK_OK(it_bus_publish(b, "cam-b", "detections", "{\"n\":2}", 7, &seq));
    CHECK(seq == 2);
    json_t *j = json_pack("{s:s,s:i}", "text", "two\nlines", "k", 3);
    CHECK_OK(it_bus_publish_json(b, "cam-b", "line.crossed", j, &seq));
    json_decref(j);
    CHECK(seq == 3);
    /* one wake per empty -> non-empty transition */
    CHECK(atomic_load(&wa) == 1);
    CHECK(atomic_load(&wb) == 1);
    uint64_t dropped = 99;
    it_event *e = it_bus_pop(all, &dropped);
    CHECK(e && e->seq == 1 && !strcmp(e->camera, "cam-a") && !strcmp(e->type, "detections") && dropped == 0);
    CHECK(e && e->len == 7 && !strcmp(e->data, "{\"n\":1}") && e->time_ms > 1.6e12);
    it_event_unref(e);
    e = it_bus_pop(cam, NULL);
    CHECK(e && e->seq == 2);
    it_event_unref(e);
    e = it_bus_pop(cam, NULL);
    CHECK(e && e->seq == 3 && !strchr(e->data, '\n') && strstr(e->data, "two\\nlines"));
    it_event_unref(e);
    CHECK(it_bus_pop(cam, &dropped) == NULL && dropped == 0);
    /* refused events */
    CHECK(it_bus_publish(b, "c", "bad type!", "{}", 2, NULL) == ITSCAM_ERR_INVALID_ARG);
    CHECK(it_bus_publish(b, "c", "", "{}", 2, NULL) == ITSCAM_ERR_INVALID_ARG);
    CHECK(it_bus_publish(b, "c", "t", "{\n}", 3, NULL) == ITSCAM_ERR_INVALID_ARG);
    char longcam[80];
    memset(longcam, 'x', sizeof longcam - 1);
    longcam[sizeof longcam - 1] = 0;
    CHECK(it_bus_publish(b, longcam, "t", "{}", 2, NULL) == ITSCAM_ERR_INVALID_ARG);
    /* out of memory publishes nothing */
    it_alloc_fail_after(0);
    CHECK(it_bus_publish(b, "cam-a", "t", "{}", 2, NULL) == ITSCAM_ERR_NOMEM);
    it_alloc_fail_after(-1);
    /* the subscriber limit */
    it_bus_sub *s3 = it_bus_subscribe(b, NULL, 1, 1, NULL, NULL);
    it_bus_sub *s4 = it_bus_subscribe(b, NULL, 1, 1, NULL, NULL);
    CHECK(s3 && s4);
    CHECK(it_bus_subscribe(b, NULL, 1, 1, NULL, NULL) == NULL);
    it_bus_stats st;
    it_bus_stats_get(b, &st);
    CHECK(st.published == 3 && st.subscribers == 4);
    it_bus_unsubscribe(s3);
    it_bus_unsubscribe(s4);
    it_bus_unsubscribe(all); /* with events queued: released */
    it_bus_unsubscribe(cam);
    it_bus_free(b);
}

static void test_bus_bounds(void) {
    it_bus *b = it_bus_new(2);
    it_bus_sub *s = it_bus_subscribe(b, NULL, 4, 1 << 20, NULL, NULL);
    char txt[32];
    for (int i = 1; i <= 10; i++) {
        int n = snprintf(txt, sizeof txt, "{\"i\":%d}", i);
        CHECK_OK(it_bus_publish(b, "c", "t", txt, (size_t)n, NULL));
    }
    uint64_t dropped;
    it_event *e = it_bus_pop(s, &dropped);
    CHECKF(e && e->seq == 7 && dropped == 6, "seq %llu dropped %llu", e ? (unsigned long long)e->seq : 0ULL,
           (unsigned long long)dropped);
    it_event_unref(e);
    for (int i = 8; i <= 10; i++) {
        e = it_bus_pop(s, &dropped);
        CHECK(e && e->seq == (uint64_t)i && dropped == 0);
        it_event_unref(e);
    }
    CHECK(!it_bus_pop(s, &dropped) && dropped == 0);
    it_bus_unsubscribe(s);

    /* the byte bound: 100-byte events, 350 bytes -> three fit; a 400-byte event never */
    s = it_bus_subscribe(b, NULL, 100, 350, NULL, NULL);
    char big[401];
    memset(big, 'a', sizeof big);
    for (int i = 0; i < 5; i++) CHECK_OK(it_bus_publish(b, NULL, "t", big, 100, NULL));
    CHECK_OK(it_bus_publish(b, NULL, "t", big, 400, NULL));
    e = it_bus_pop(s, &dropped);
    CHECK(e && e->len == 100 && dropped == 3); /* two oldest for room, and the big one */
    it_event_unref(e);
    int left = 0;
    while ((e = it_bus_pop(s, NULL))) {
        left++;
        it_event_unref(e);
    }
    CHECK(left == 2);
    it_bus_stats st;
    it_bus_stats_get(b, &st);
    CHECK(st.dropped == 6 + 3);
    it_bus_unsubscribe(s);
    it_bus_free(b);
}

/* Concurrent publishers and subscribers, with subscribers coming and going: every
 * subscriber sees each publisher's events in order, and events seen + dropped add up. */
#define N_PUB 3
#define N_EV 3000
typedef struct consumer {
    it_bus *b;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int ready;
    atomic_int *done_publishing;
    uint64_t got, dropped;
    int order_ok;
    int slow;
} consumer;

static void consumer_wake(void *arg) {
    consumer *c = arg;
    pthread_mutex_lock(&c->mu);
    c->ready = 1;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void *consumer_main(void *arg) {
    consumer *c = arg;
    it_bus_sub *s = it_bus_subscribe(c->b, NULL, c->slow ? 8 : N_PUB * N_EV, 1 << 22, consumer_wake, c);
    int last[N_PUB];
    for (int i = 0; i < N_PUB; i++) last[i] = -1;
    c->order_ok = s != NULL;
    for (;;) {
        uint64_t d;
        it_event *e = it_bus_pop(s, &d);
        c->dropped += d;
        if (e) {
            int p, i;
            if (sscanf(e->data, "{\"p\":%d,\"i\":%d}", &p, &i) != 2 || p < 0 || p >= N_PUB || i <= last[p])
                c->order_ok = 0;
            else
                last[p] = i;
            c->got++;
            it_event_unref(e);
            if (c->slow && c->got % 64 == 0) usleep(1000);
            continue;
        }
        if (atomic_load(c->done_publishing)) {
            /* drain what is left, then stop */
            while ((e = it_bus_pop(s, &d))) {
                c->dropped += d;
                c->got++;
                it_event_unref(e);
            }
            c->dropped += d;
            break;
        }
        pthread_mutex_lock(&c->mu);
        while (!c->ready && !atomic_load(c->done_publishing)) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 20 * 1000000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&c->cv, &c->mu, &ts);
        }
        c->ready = 0;
        pthread_mutex_unlock(&c->mu);
    }
    it_bus_unsubscribe(s);
    return NULL;
}

typedef struct publisher {
    it_bus *b;
    int id;
} publisher;

static void *publisher_main(void *arg) {
    publisher *p = arg;
    char txt[64];
    for (int i = 0; i < N_EV; i++) {
        int n = snprintf(txt, sizeof txt, "{\"p\":%d,\"i\":%d}", p->id, i);
        it_bus_publish(p->b, "cam", "t", txt, (size_t)n, NULL);
    }
    return NULL;
}

static void *churn_main(void *arg) {
    it_bus *b = arg;
    atomic_int w = 0;
    for (int i = 0; i < 300; i++) {
        it_bus_sub *s = it_bus_subscribe(b, i % 2 ? "cam" : NULL, 4, 4096, count_wake, &w);
        if (s) it_bus_unsubscribe(s); /* must wait for a wake in progress on &w */
    }
    return NULL;
}

static void test_bus_threads(void) {
    it_bus *b = it_bus_new(16);
    atomic_int done = 0;
    consumer cs[2];
    pthread_t ct[2], pt[N_PUB], churn;
    publisher ps[N_PUB];
    for (int i = 0; i < 2; i++) {
        memset(&cs[i], 0, sizeof cs[i]);
        cs[i].b = b;
        cs[i].done_publishing = &done;
        cs[i].slow = i == 1;
        pthread_mutex_init(&cs[i].mu, NULL);
        pthread_cond_init(&cs[i].cv, NULL);
        pthread_create(&ct[i], NULL, consumer_main, &cs[i]);
    }
    /* the consumers subscribe before the first publish */
    for (int tries = 0; tries < 500; tries++) {
        it_bus_stats st;
        it_bus_stats_get(b, &st);
        if (st.subscribers == 2) break;
        usleep(2000);
    }
    pthread_create(&churn, NULL, churn_main, b);
    for (int i = 0; i < N_PUB; i++) {
        ps[i] = (publisher){ b, i };
        pthread_create(&pt[i], NULL, publisher_main, &ps[i]);
    }
    for (int i = 0; i < N_PUB; i++) pthread_join(pt[i], NULL);
    pthread_join(churn, NULL);
    atomic_store(&done, 1);
    for (int i = 0; i < 2; i++) {
        consumer_wake(&cs[i]);
        pthread_join(ct[i], NULL);
        CHECK(cs[i].order_ok);
        CHECKF(cs[i].got + cs[i].dropped == (uint64_t)N_PUB * N_EV, "consumer %d: got %llu + dropped %llu", i,
               (unsigned long long)cs[i].got, (unsigned long long)cs[i].dropped);
        pthread_mutex_destroy(&cs[i].mu);
        pthread_cond_destroy(&cs[i].cv);
    }
    CHECK(cs[0].dropped == 0);
    it_bus_stats st;
    it_bus_stats_get(b, &st);
    CHECK(st.published == (uint64_t)N_PUB * N_EV && st.subscribers == 0);
    it_bus_free(b);
}

/* ---- frames ---- */

static void fill(it_image *img, int seed) {
    for (int y = 0; y < img->height; y++)
        for (int x = 0; x < img->width * 3; x++)
            img->data[(size_t)y * img->stride + x] = (uint8_t)((x / 3 + y + seed) & 0xff);
}

static void decoded_size(const it_jpeg *j, int *w, int *h) {
    it_image d;
    *w = *h = 0;
    if (it_image_decode(j->data, j->len, 1 << 24, &d) == ITSCAM_OK) {
        *w = d.width;
        *h = d.height;
        it_image_free(&d);
    }
}

static atomic_int encoders_go;
typedef struct viewer {
    it_frames *f;
    it_jpeg *got;
} viewer;
static void *viewer_main(void *arg) {
    viewer *v = arg;
    while (!atomic_load(&encoders_go)) usleep(100);
    it_frames_jpeg(v->f, "cam1", 240, 70, 1, 0, &v->got);
    return NULL;
}

static void test_frames(void) {
    it_frames *f = it_frames_new();
    it_image img;
    CHECK_OK(it_image_alloc(&img, 640, 480));
    fill(&img, 0);
    it_jpeg *j = NULL;
    CHECK(it_frames_put(f, "cam1", &img, NULL, NULL, 0, 1, 1.0) == ITSCAM_ERR_NOT_FOUND);
    CHECK(it_frames_jpeg(f, "cam1", 0, 80, 0, 0, &j) == IT_FRAMES_UNKNOWN_CAMERA);
    const char *names[] = { "person", "bicycle", "car" };
    CHECK_OK(it_frames_add_camera(f, "cam1", names, 3));
    CHECK(it_frames_has(f, "cam1") && !it_frames_has(f, "cam2"));
    CHECK(it_frames_jpeg(f, "cam1", 0, 80, 0, 0, &j) == IT_FRAMES_NO_FRAME);

    atomic_int woke = 0;
    it_frames_watch *w = it_frames_watch_add(f, "cam1", count_wake, &woke);
    CHECK(w);
    itscam_detection dets[2] = { { 2, "", 0.9f, { 100, 100, 300, 250 } }, { 0, "pedestrian", 0.5f, { 10, 10, 50, 90 } } };
    CHECK_OK(it_frames_put(f, "cam1", &img, dets, NULL, 2, 7, 1700000000.5));
    CHECK(atomic_load(&woke) == 1);

    CHECK(it_frames_jpeg(f, "cam1", 0, 80, 0, 0, &j) == IT_FRAMES_OK);
    int dw, dh;
    decoded_size(j, &dw, &dh);
    CHECK(j && j->frame_index == 7 && j->captured_at == 1700000000.5 && dw == 640 && dh == 480);
    it_jpeg *j2 = NULL;
    CHECK(it_frames_jpeg(f, "cam1", 480, 80, 0, 0, &j2) == IT_FRAMES_OK); /* native height: the same key */
    CHECK(j2 == j);
    it_jpeg_unref(j2);
    CHECK(j->seq == 1 && it_frames_jpeg(f, "cam1", 0, 80, 0, j->seq, &j2) == IT_FRAMES_NOT_NEWER);
    CHECK(it_frames_jpeg(f, "cam1", 120, 80, 0, 0, &j2) == IT_FRAMES_OK);
    decoded_size(j2, &dw, &dh);
    CHECK(dw == 160 && dh == 120 && j2->width == 160);
    it_jpeg_unref(j2);
    /* annotated: drawn on a copy; the plain encoding of the same frame is unchanged */
    it_jpeg *ja = NULL;
    CHECK(it_frames_jpeg(f, "cam1", 0, 80, 1, 0, &ja) == IT_FRAMES_OK);
    CHECK(ja && ja != j && (ja->len != j->len || memcmp(ja->data, j->data, j->len)));
    it_frames_stats st0, st1;
    it_frames_stats_get(f, &st0);
    CHECK(it_frames_jpeg(f, "cam1", 0, 80, 0, 0, &j2) == IT_FRAMES_OK && j2 == j);
    it_jpeg_unref(j2);
    it_frames_stats_get(f, &st1);
    CHECK(st1.encodes == st0.encodes && st1.cache_hits == st0.cache_hits + 1);
    it_jpeg_unref(ja);

    /* more keys than slots: still right, just re-encoded */
    for (int q = 50; q < 50 + IT_FRAMES_MAX_KEYS + 3; q++) {
        CHECK(it_frames_jpeg(f, "cam1", 0, q, 0, 0, &j2) == IT_FRAMES_OK);
        it_jpeg_unref(j2);
    }

    /* steady state: a put allocates nothing when no reader holds the pooled buffers */
    for (int i = 0; i < 3; i++) CHECK_OK(it_frames_put(f, "cam1", &img, dets, NULL, 2, 8 + i, 2.0));
    uint64_t a0 = it_alloc_count();
    for (int i = 0; i < 20; i++) CHECK_OK(it_frames_put(f, "cam1", &img, dets, NULL, 2, 11 + i, 2.0));
    CHECKF(it_alloc_count() == a0, "%llu allocations for 20 puts", (unsigned long long)(it_alloc_count() - a0));
    CHECK(atomic_load(&woke) == 1 + 23);
    /* the sequence rises even when the pipeline's index restarts */
    CHECK_OK(it_frames_put(f, "cam1", &img, NULL, NULL, 0, 0, 2.0));
    CHECK(it_frames_jpeg(f, "cam1", 120, 80, 0, j->seq, &j2) == IT_FRAMES_OK && j2->frame_index == 0 && j2->seq == 25);
    it_jpeg_unref(j2);
    /* a held encoding outlives later frames */
    CHECK(j->frame_index == 7 && j->data[0] == 0xFF && j->data[1] == 0xD8);

    /* concurrent viewers of one key and frame: one encode */
    fill(&img, 5);
    CHECK_OK(it_frames_put(f, "cam1", &img, dets, NULL, 2, 100, 3.0));
    it_frames_stats_get(f, &st0);
    viewer vs[6];
    pthread_t vt[6];
    atomic_store(&encoders_go, 0);
    for (int i = 0; i < 6; i++) {
        vs[i] = (viewer){ f, NULL };
        pthread_create(&vt[i], NULL, viewer_main, &vs[i]);
    }
    atomic_store(&encoders_go, 1);
    for (int i = 0; i < 6; i++) pthread_join(vt[i], NULL);
    it_frames_stats_get(f, &st1);
    CHECKF(st1.encodes == st0.encodes + 1, "%llu encodes", (unsigned long long)(st1.encodes - st0.encodes));
    for (int i = 0; i < 6; i++) {
        CHECK(vs[i].got && vs[i].got == vs[0].got && vs[i].got->frame_index == 100);
        it_jpeg_unref(vs[i].got);
    }

    /* removal: the watcher is woken, readers keep what they hold */
    int before = atomic_load(&woke);
    it_frames_remove_camera(f, "cam1");
    CHECK(atomic_load(&woke) == before + 1);
    CHECK(!it_frames_has(f, "cam1"));
    CHECK(it_frames_jpeg(f, "cam1", 0, 80, 0, 0, &j2) == IT_FRAMES_UNKNOWN_CAMERA);
    CHECK(j->len > 100 && j->data[j->len - 2] == 0xFF && j->data[j->len - 1] == 0xD9);
    it_jpeg_unref(j);
    it_frames_watch_remove(f, w);
    CHECK_OK(it_frames_add_camera(f, "cam1", NULL, 0));
    CHECK_OK(it_frames_put(f, "cam1", &img, NULL, NULL, 0, 1, 1.0));
    CHECK(atomic_load(&woke) == before + 1); /* unwatched */

    /* a real photo, scaled keeping its aspect */
    char path[1024];
    if (shared_path(path, sizeof path, "images/bus.jpg")) {
        uint8_t *bytes = NULL;
        size_t len;
        it_image bus;
        if (it_read_file(path, &bytes, &len, 1 << 24) == ITSCAM_OK && it_image_decode(bytes, len, 1 << 24, &bus) == ITSCAM_OK) {
            CHECK_OK(it_frames_add_camera(f, "bus", NULL, 0));
            CHECK_OK(it_frames_put(f, "bus", &bus, dets, NULL, 2, 1, 1.0));
            CHECK(it_frames_jpeg(f, "bus", 360, 85, 1, 0, &j2) == IT_FRAMES_OK);
            decoded_size(j2, &dw, &dh);
            CHECKF(dw == 270 && dh == 360, "%dx%d", dw, dh);
            it_jpeg_unref(j2);
            it_image_free(&bus);
        }
        it_free(bytes);
    } else {
        fprintf(stderr, "note: images/bus.jpg absent, the photo case is skipped\n");
    }
    it_image_free(&img);
    it_frames_free(f);
}

/* Track ids reach the overlay: the annotated frame is exactly the frame drawn with them
 * ("car #12 0.90"), and differs from the same frame put without them. */
static void test_frames_track_ids(void) {
    it_frames *f = it_frames_new();
    const char *names[] = { "person", "bicycle", "car" };
    CHECK_OK(it_frames_add_camera(f, "cam1", names, 3));
    it_image img, ref;
    CHECK_OK(it_image_alloc(&img, 320, 240));
    CHECK_OK(it_image_alloc(&ref, 320, 240));
    fill(&img, 3);
    itscam_detection dets[2] = { { 2, "", 0.9f, { 100, 100, 300, 200 } }, { 0, "pedestrian", 0.5f, { 10, 30, 50, 90 } } };
    const int64_t tids[2] = { 12, 0 };
    CHECK_OK(it_frames_put(f, "cam1", &img, dets, tids, 2, 1, 1.0));
    it_jpeg *with = NULL, *without = NULL;
    CHECK(it_frames_jpeg(f, "cam1", 0, 90, 1, 0, &with) == IT_FRAMES_OK);

    memcpy(ref.data, img.data, (size_t)img.stride * img.height);
    itscam_detection named[2] = { dets[0], dets[1] };
    named[0].class_name = "car";
    char label[64];
    CHECK(!strcmp(it_detection_label(&named[0], tids[0], NULL, 0, label, sizeof label), "car #12 0.90"));
    it_draw_detections(&ref, named, tids, 2, NULL, 0);
    uint8_t *want = NULL;
    size_t want_len = 0;
    CHECK_OK(it_image_encode_jpeg(&ref, 90, &want, &want_len));
    CHECK(with && want && with->len == want_len && !memcmp(with->data, want, want_len));

    CHECK_OK(it_frames_put(f, "cam1", &img, dets, NULL, 2, 2, 2.0));
    CHECK(it_frames_jpeg(f, "cam1", 0, 90, 1, 0, &without) == IT_FRAMES_OK);
    CHECK(without && with && (without->len != with->len || memcmp(without->data, with->data, with->len)));
    it_free(want);
    it_jpeg_unref(with);
    it_jpeg_unref(without);
    it_image_free(&img);
    it_image_free(&ref);
    it_frames_free(f);
}

/* A subscription narrowed to types (and stored events): the rest is never queued and
 * never wakes it. */
static void test_bus_filter(void) {
    it_bus *b = it_bus_new(4);
    it_bus_sub *all = it_bus_subscribe(b, NULL, 64, 1 << 20, NULL, NULL);
    atomic_int wakes = 0;
    it_bus_sub *ww = it_bus_subscribe(b, NULL, 64, 1 << 20, count_wake, &wakes);
    it_bus_sub *st = it_bus_subscribe(b, "cam1", 64, 1 << 20, NULL, NULL);
    const char *const types[] = { "wrong_way", "speeding" };
    CHECK(it_bus_sub_filter(ww, types, 2, 0) == ITSCAM_OK);
    CHECK(it_bus_sub_filter(st, NULL, 0, 1) == ITSCAM_OK);
    CHECK(it_bus_sub_filter(ww, types, IT_BUS_SUB_TYPES_MAX + 1, 0) == ITSCAM_ERR_INVALID_ARG);
    const char *const bad[] = { "" };
    CHECK(it_bus_sub_filter(ww, bad, 1, 0) == ITSCAM_ERR_INVALID_ARG);
    for (int i = 0; i < 10; i++) CHECK_OK(it_bus_publish(b, "cam1", "detections", "{}", 2, NULL));
    CHECK_OK(it_bus_publish(b, "cam1", "wrong_way", "{\"live\":1}", 10, NULL));
    CHECK_OK(it_bus_publish_stored(b, "cam1", "wrong_way", "{\"id\":7}", 8, 7, NULL));
    CHECK_OK(it_bus_publish_stored(b, "cam2", "speeding", "{\"id\":8}", 8, 8, NULL));
    CHECK_OK(it_bus_publish_stored(b, "cam1", "line_cross", "{\"id\":9}", 8, 9, NULL));
    int n_all = 0, n_ww = 0, n_st = 0;
    it_event *e;
    uint64_t dropped;
    while ((e = it_bus_pop(all, &dropped))) n_all++, it_event_unref(e);
    while ((e = it_bus_pop(ww, &dropped))) {
        CHECK(!strcmp(e->type, "wrong_way") || !strcmp(e->type, "speeding"));
        n_ww++;
        it_event_unref(e);
    }
    while ((e = it_bus_pop(st, &dropped))) {
        CHECK(e->id == 7 || e->id == 9);
        n_st++;
        it_event_unref(e);
    }
    CHECKF(n_all == 14 && n_ww == 3 && n_st == 2, "all %d, types %d, stored %d", n_all, n_ww, n_st);
    CHECKF(atomic_load(&wakes) == 1, "the filtered subscriber woke %d times (once: its queue went non-empty once)",
           atomic_load(&wakes));
    it_bus_unsubscribe(all), it_bus_unsubscribe(ww), it_bus_unsubscribe(st);
    it_bus_free(b);
}

int main(void) {
    test_bus_basic();
    test_bus_filter();
    test_bus_bounds();
    test_bus_threads();
    test_frames();
    test_frames_track_ids();
    return check_done("test_sinks");
}
