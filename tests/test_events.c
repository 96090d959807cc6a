/* The event store (src/sinks/events.c): round trip, filters, keyset pagination, count
 * buckets against hand counts, retention by age and by size, the asynchronous writer
 * under a burst, reopening. Prints (never asserts) the writer's throughput and the p95 of
 * a camera + time-range query over a large table: the targets are benchmarks. */
#include "check.h"
#include "core/core.h"
#include "sinks/events.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[256];

static void rm_tree(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", dir);
}

static it_store *open_store(const char *sub) {
    char p[300], err[512];
    snprintf(p, sizeof p, "%s/%s", dir, sub);
    it_store *st = NULL;
    if (it_store_open(p, &st, err, sizeof err)) fprintf(stderr, "open %s: %s\n", p, err);
    return st;
}

static const char *cams[] = {"cam-a", "cam-b", "cam-c"};
static const char *types[] = {"line_cross", "zone_enter", "speeding"};
static const char *classes[] = {"car", "truck", "bus", "person"};

/* Event i of a deterministic set: time 1e9 + i, camera/type/class cycling. */
static void make_event(it_store_event *e, int i) {
    memset(e, 0, sizeof *e);
    snprintf(e->camera, sizeof e->camera, "%s", cams[i % 3]);
    snprintf(e->type, sizeof e->type, "%s", types[(i / 3) % 3]);
    e->time = 1e9 + i;
    e->track_id = 1 + i % 50;
    e->class_id = i % 4;
    snprintf(e->class_name, sizeof e->class_name, "%s", classes[i % 4]);
    e->score = 0.5 + (i % 50) / 100.0;
    e->has_box = 1;
    e->box[0] = i % 640, e->box[1] = 10, e->box[2] = i % 640 + 20, e->box[3] = 40;
    snprintf(e->details, sizeof e->details, "{\"line\":\"l%d\",\"direction\":\"%s\"}", i % 2,
             (i / 2) % 2 ? "a_to_b" : "b_to_a");
}

static void test_round_trip_and_filters(void) {
    it_store *st = open_store("rt");
    CHECK(st != NULL);
    if (!st) return;
    const char *targets[] = {"mqtt", "redis"};
    CHECK_OK(it_store_outbox_targets(st, targets, 2));
    enum { N = 600 };
    static it_store_event ev[N];
    int64_t ids[N];
    for (int i = 0; i < N; i++) make_event(&ev[i], i);
    snprintf(ev[5].snapshot, sizeof ev[5].snapshot, "/x/5.jpg");
    snprintf(ev[6].details, sizeof ev[6].details, "not json");
    ev[7].has_box = 0, ev[7].track_id = 0, ev[7].class_id = -1, ev[7].class_name[0] = 0, ev[7].score = -1;
    CHECK_OK(it_store_events_insert(st, ev, N, ids));
    for (int i = 1; i < N; i++) CHECK(ids[i] == ids[i - 1] + 1);
    it_store_event g;
    CHECK_OK(it_store_event_get(st, ids[5], &g));
    CHECK(!strcmp(g.camera, ev[5].camera) && !strcmp(g.type, ev[5].type) && g.time == ev[5].time);
    CHECK(g.track_id == ev[5].track_id && g.class_id == ev[5].class_id && !strcmp(g.class_name, ev[5].class_name));
    CHECK(fabs(g.score - ev[5].score) < 1e-12 && g.has_box && g.box[2] == ev[5].box[2]);
    CHECK(!strcmp(g.details, ev[5].details) && !strcmp(g.snapshot, "/x/5.jpg"));
    CHECK_OK(it_store_event_get(st, ids[6], &g));
    CHECK(g.details[0] == 0); /* not JSON: stored as NULL */
    CHECK_OK(it_store_event_get(st, ids[7], &g));
    CHECK(!g.has_box && g.track_id == 0 && g.class_id == -1 && !g.class_name[0] && g.score < 0);
    CHECK(it_store_event_get(st, 999999, &g) == ITSCAM_ERR_NOT_FOUND);
    it_store_event bad = ev[0];
    bad.camera[0] = 0;
    CHECK(it_store_events_insert(st, &bad, 1, NULL) == ITSCAM_ERR_INVALID_ARG);

    /* Filters against a count by hand. */
    static it_store_event page[IT_EVENTS_QUERY_MAX];
    it_event_filter f = {.camera = "cam-b", .type = "zone_enter", .class_name = "truck", .since = 1e9 + 100,
                         .until = 1e9 + 400};
    int expect = 0;
    for (int i = 0; i < N; i++)
        expect += !strcmp(ev[i].camera, f.camera) && !strcmp(ev[i].type, f.type) &&
                  !strcmp(ev[i].class_name, f.class_name) && ev[i].time >= f.since && ev[i].time < f.until;
    int n;
    int64_t next;
    CHECK_OK(it_store_events_query(st, &f, 1000, 0, page, &n, &next));
    CHECKF(n == expect && expect > 0, "n %d expect %d", n, expect);
    CHECK(next == 0);
    for (int i = 0; i < n; i++) {
        CHECK(!strcmp(page[i].camera, "cam-b") && !strcmp(page[i].class_name, "truck"));
        if (i) CHECK(page[i].id < page[i - 1].id);
    }
    /* Outbox rows alongside: two targets per event. */
    int64_t cnt;
    CHECK_OK(it_store_events_count(st, &cnt));
    CHECK(cnt == N);
    it_store_close(st);
}

/* Walk every page, both orders, with inserts between pages: every matching event seen
 * once, none skipped. */
static void test_pagination(void) {
    it_store *st = open_store("page");
    CHECK(st != NULL);
    if (!st) return;
    enum { N = 2500 };
    static it_store_event ev[N];
    for (int i = 0; i < N; i++) make_event(&ev[i], i);
    CHECK_OK(it_store_events_insert(st, ev, N, NULL));
    static it_store_event page[IT_EVENTS_QUERY_MAX];
    static unsigned char seen[N + 10];
    for (int asc = 0; asc <= 1; asc++) {
        memset(seen, 0, sizeof seen);
        it_event_filter f = {.camera = "cam-a", .ascending = asc};
        int64_t cursor = 0, last = asc ? 0 : INT64_MAX;
        int total = 0, pages = 0, dup = 0, order = 1;
        do {
            int n;
            int64_t next;
            CHECK_OK(it_store_events_query(st, &f, 97, cursor, page, &n, &next));
            for (int i = 0; i < n; i++) {
                int64_t id = page[i].id;
                if (id < 1 || id > N) continue; /* inserted meanwhile, below */
                dup += seen[id]++;
                order &= asc ? id > last : id < last;
                last = id;
                total++;
            }
            /* Newer events arrive during the walk: a descending walk never sees them,
             * an ascending one does at its end; neither shifts a page. */
            it_store_event extra;
            make_event(&extra, 0);
            CHECK_OK(it_store_events_insert(st, &extra, 1, NULL));
            cursor = next;
            pages++;
        } while (cursor && pages < 1000);
        int expect = (N + 2) / 3;
        CHECKF(total == expect && !dup && order, "asc %d: total %d expect %d dup %d order %d", asc, total, expect,
               dup, order);
    }
    int n;
    int64_t next;
    CHECK_OK(it_store_events_query(st, NULL, 5000, 0, page, &n, &next));
    CHECK(n == IT_EVENTS_QUERY_MAX && next == page[n - 1].id);
    it_store_close(st);
}

static void test_counts(void) {
    it_store *st = open_store("counts");
    CHECK(st != NULL);
    if (!st) return;
    enum { N = 3000 };
    static it_store_event ev[N];
    for (int i = 0; i < N; i++) make_event(&ev[i], i);
    CHECK_OK(it_store_events_insert(st, ev, N, NULL));
    double since = 1e9 + 100, until = 1e9 + 2700, bucket = 300;
    it_count_row *rows;
    int n;
    CHECK_OK(it_store_counts(st, "cam-a", since, until, bucket, &rows, &n));
    /* Hand count: every (bucket, line, class, direction) key, then each row must match. */
    int64_t total = 0, rows_total = 0;
    for (int i = 0; i < N; i++) {
        const it_store_event *e = &ev[i];
        if (strcmp(e->camera, "cam-a") || strcmp(e->type, "line_cross") || e->time < since || e->time >= until) continue;
        total++;
        double b = floor(e->time / bucket) * bucket;
        char line[8], dir[16];
        snprintf(line, sizeof line, "l%d", i % 2);
        snprintf(dir, sizeof dir, "%s", (i / 2) % 2 ? "a_to_b" : "b_to_a");
        int64_t want = 0, got = -1;
        for (int j = 0; j < N; j++) {
            const it_store_event *o = &ev[j];
            if (!strcmp(o->camera, "cam-a") && !strcmp(o->type, "line_cross") && o->time >= since &&
                o->time < until && floor(o->time / bucket) * bucket == b && j % 2 == i % 2 &&
                ((j / 2) % 2) == ((i / 2) % 2) && !strcmp(o->class_name, e->class_name))
                want++;
        }
        for (int r = 0; r < n; r++)
            if (rows[r].bucket_start == b && !strcmp(rows[r].line, line) && !strcmp(rows[r].direction, dir) &&
                !strcmp(rows[r].class_name, e->class_name))
                got = rows[r].count;
        CHECKF(got == want, "event %d: count %lld, by hand %lld", i, (long long)got, (long long)want);
    }
    for (int r = 0; r < n; r++) rows_total += rows[r].count;
    CHECKF(rows_total == total && total > 0, "rows %lld hand %lld", (long long)rows_total, (long long)total);
    for (int r = 1; r < n; r++) CHECK(rows[r].bucket_start >= rows[r - 1].bucket_start);
    it_free(rows);
    CHECK(it_store_counts(st, "cam-a", 10, 5, 300, &rows, &n) == ITSCAM_ERR_INVALID_ARG);
    it_store_close(st);
}

static void test_retention(void) {
    it_store *st = open_store("ret");
    CHECK(st != NULL);
    if (!st) return;
    enum { N = 5000 };
    static it_store_event ev[N];
    char snap[300];
    snprintf(snap, sizeof snap, "%s/ret/old.jpg", dir);
    FILE *fp = fopen(snap, "w");
    if (fp) fclose(fp);
    for (int i = 0; i < N; i++) make_event(&ev[i], i);
    snprintf(ev[10].snapshot, sizeof ev[10].snapshot, "%s", snap);
    int64_t ids[N];
    CHECK_OK(it_store_events_insert(st, ev, N, ids));
    int64_t del, cnt;
    /* By age: now = 1e9 + 5000, max age 2500 s: times below 1e9 + 2500 go (2500 rows,
     * three steps of at most 1000). */
    CHECK_OK(it_store_events_retain(st, 2500, 0, 1e9 + 5000, &del));
    CHECK(del == 2500);
    CHECK_OK(it_store_events_count(st, &cnt));
    CHECK(cnt == 2500);
    CHECK(access(snap, F_OK) != 0); /* its snapshot went with it */
    it_store_event g;
    CHECK(it_store_event_get(st, ids[2499], &g) == ITSCAM_ERR_NOT_FOUND);
    CHECK_OK(it_store_event_get(st, ids[2500], &g));
    /* By size: keep the newest 1200. */
    CHECK_OK(it_store_events_retain(st, 0, 1200, 0, &del));
    CHECK(del == 1300);
    CHECK_OK(it_store_events_count(st, &cnt));
    CHECK(cnt == 1200);
    CHECK(it_store_event_get(st, ids[N - 1201], &g) == ITSCAM_ERR_NOT_FOUND);
    CHECK_OK(it_store_event_get(st, ids[N - 1200], &g));
    /* Ids are never reused after deletes, even of the newest. */
    CHECK_OK(it_store_events_retain(st, 0, 1, 0, &del));
    int64_t id2;
    CHECK_OK(it_store_events_insert(st, ev, 1, &id2));
    CHECK(id2 == ids[N - 1] + 1);
    it_store_close(st);
}

static void test_writer_and_reopen(void) {
    it_store *st = open_store("writer");
    CHECK(st != NULL);
    if (!st) return;
    /* A burst far beyond the queue: pushes never block, the overflow is counted. */
    it_event_writer *w;
    CHECK_OK(it_event_writer_start(st, 64, &w));
    it_store_event e;
    int accepted = 0, refused = 0;
    double t0 = it_now_ms();
    for (int i = 0; i < 20000; i++) {
        make_event(&e, i);
        if (it_event_writer_push(w, &e)) refused++;
        else accepted++;
    }
    double burst_ms = it_now_ms() - t0;
    it_event_writer_flush(w);
    it_event_writer_stats ws;
    it_event_writer_stats_get(w, &ws);
    CHECKF(ws.pushed == (uint64_t)accepted && ws.dropped == (uint64_t)refused && ws.written == ws.pushed &&
               ws.failed == 0 && refused > 0,
           "pushed %llu dropped %llu written %llu", (unsigned long long)ws.pushed, (unsigned long long)ws.dropped,
           (unsigned long long)ws.written);
    printf("writer burst: 20000 pushes in %.1f ms into a 64-event queue, %d dropped\n", burst_ms, refused);
    it_event_writer_stop(w);
    int64_t cnt;
    CHECK_OK(it_store_events_count(st, &cnt));
    CHECK(cnt == accepted);

    /* Throughput through the writer with a queue that keeps up (pushes paced only by
     * the queue: a refused push retries after a short sleep, so nothing is lost). */
    CHECK_OK(it_event_writer_start(st, 0, &w));
    enum { T = 100000 };
    t0 = it_now_ms();
    for (int i = 0; i < T; i++) {
        make_event(&e, i);
        while (it_event_writer_push(w, &e)) usleep(1000);
    }
    it_event_writer_flush(w);
    double ms = it_now_ms() - t0;
    it_event_writer_stats_get(w, &ws);
    printf("writer throughput: %d events in %.0f ms = %.0f events/s (target >= 20000/s)\n", T, ms, T / (ms / 1e3));
    CHECK(ws.written == T);
    it_event_writer_stop(w);
    CHECK_OK(it_store_events_count(st, &cnt));
    it_store_close(st);

    /* Reopen: the rows and the schema survive; the next id follows on. */
    st = open_store("writer");
    CHECK(st != NULL);
    if (!st) return;
    int64_t cnt2, id;
    CHECK_OK(it_store_events_count(st, &cnt2));
    CHECK(cnt2 == cnt);
    make_event(&e, 1);
    CHECK_OK(it_store_events_insert(st, &e, 1, &id));
    CHECK(id == cnt + 1);
    it_store_close(st);
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Query timing over a large table: ITSCAM_EVENTS_BENCH_ROWS rows (default the issue's
 * 1,000,000), generation stopping early after 15 s once 100,000 rows are in, so that a
 * slow machine keeps the test short; the figure printed names the rows reached. */
static void bench_query(void) {
    const char *env = getenv("ITSCAM_EVENTS_BENCH_ROWS");
    int rows = env ? atoi(env) : 1000000;
    if (rows <= 0) return;
    it_store *st = open_store("bench");
    CHECK(st != NULL);
    if (!st) return;
    enum { B = 5000 };
    static it_store_event ev[B];
    double t0 = it_now_ms();
    for (int done = 0; done < rows; done += B) {
        int n = rows - done < B ? rows - done : B;
        for (int i = 0; i < n; i++) {
            make_event(&ev[i], done + i);
            /* 16 cameras, 1 event per 10 ms overall */
            snprintf(ev[i].camera, sizeof ev[i].camera, "cam-%d", (done + i) % 16);
            ev[i].time = 1.7e9 + (done + i) * 0.01;
        }
        CHECK_OK(it_store_events_insert(st, ev, n, NULL));
        if (done + n >= 100000 && it_now_ms() - t0 > 15000) {
            rows = done + n;
            break;
        }
    }
    printf("bench: %d rows inserted in %.0f ms (batches of %d)\n", rows, it_now_ms() - t0, B);
    enum { Q = 200 };
    double lat[Q];
    static it_store_event page[100];
    double span = rows * 0.01;
    for (int q = 0; q < Q; q++) {
        char cam[16];
        snprintf(cam, sizeof cam, "cam-%d", q % 16);
        /* a random window of a tenth of the history */
        double since = 1.7e9 + span * ((q * 37) % 90) / 100.0;
        it_event_filter f = {.camera = cam, .since = since, .until = since + span / 10};
        int n;
        int64_t next;
        double s = it_now_ms();
        CHECK_OK(it_store_events_query(st, &f, 100, 0, page, &n, &next));
        lat[q] = it_now_ms() - s;
        CHECK(n == 100);
    }
    qsort(lat, Q, sizeof *lat, cmp_d);
    printf("bench: camera + time-range query (100 rows, newest first) over %d rows: p50 %.2f ms, p95 %.2f ms "
           "(target p95 < 20 ms over 1M)\n",
           rows, it_percentile(lat, Q, 50), it_percentile(lat, Q, 95));
    it_store_close(st);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/itscam-events-XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_round_trip_and_filters();
    test_pagination();
    test_counts();
    test_retention();
    test_writer_and_reopen();
    bench_query();
    rm_tree();
    printf("%d checks, %d failures\n", check_count, check_failures);
    return check_failures ? 1 : 0;
}
