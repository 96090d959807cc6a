/* The scheduler (src/sched) on the dynamic-batch model: image and tensor jobs give what the
 * detector gives alone, equal tensors share one batch, priorities, FIFO, queue limits,
 * deadlines, cancel, newest-per-source, atomic submit_all and the observer. Ordering is
 * made deterministic with a gate: a job whose callback holds the only worker until the
 * test has queued what it wants, so no check depends on timing. */
#include "check.h"
#include "check_data.h"
#include "core/core.h"
#include "detect/detector.h"
#include "runtime/model.h"
#include "sched/sched.h"
#include "vision/image.h"
#include "vision/letterbox.h"

#include <math.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#define NJOBS 64

static it_sched_job jobs[NJOBS];
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int order[NJOBS * 4], n_done, calls[NJOBS];
static int gate_id = -1, in_gate, gate_open;
static int obs_done, obs_batches, obs_max_batch, obs_full, obs_expired;

static void on_done(it_sched_job *j, void *arg) {
    int id = (int)(intptr_t)arg;
    pthread_mutex_lock(&mu);
    order[n_done++] = id;
    calls[id]++;
    pthread_cond_broadcast(&cv);
    if (id == gate_id) { /* hold the worker until the test opens the gate */
        in_gate = 1;
        pthread_cond_broadcast(&cv);
        while (!gate_open) pthread_cond_wait(&cv, &mu);
        in_gate = 0;
        pthread_cond_broadcast(&cv);
    }
    pthread_mutex_unlock(&mu);
    (void)j;
}

static void obs_job(void *ctx, const it_sched_job *j) {
    (void)ctx;
    (void)j;
    pthread_mutex_lock(&mu);
    obs_done++;
    pthread_mutex_unlock(&mu);
}

static void obs_batch(void *ctx, int size, double ms, itscam_status st) {
    (void)ctx;
    (void)ms;
    (void)st;
    pthread_mutex_lock(&mu);
    obs_batches++;
    if (size > obs_max_batch) obs_max_batch = size;
    pthread_mutex_unlock(&mu);
}

static void obs_reject(void *ctx, int prio, it_sched_outcome reason, int n) {
    (void)ctx;
    (void)prio;
    pthread_mutex_lock(&mu);
    if (reason == IT_SCHED_QUEUE_FULL) obs_full += n;
    if (reason == IT_SCHED_EXPIRED) obs_expired += n;
    pthread_mutex_unlock(&mu);
}

static void wait_done(int n) {
    pthread_mutex_lock(&mu);
    while (n_done < n) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
}

static void reset_order(void) {
    pthread_mutex_lock(&mu);
    n_done = 0;
    pthread_mutex_unlock(&mu);
}

/* Job id as an image job (or a tensor job when tensor is set). */
static it_sched_job *mk(int id, const itscam_image *img, const float *tensor, int prio, int side) {
    it_sched_job *j = &jobs[id];
    pthread_mutex_lock(&mu);
    CHECKF(calls[id] <= 1, "job %d called back %d times", id, calls[id]);
    calls[id] = 0;
    pthread_mutex_unlock(&mu);
    itscam_result_clear(&j->res);
    it_free(j->raw);
    memset(j, 0, sizeof *j);
    if (tensor) {
        j->tensor = tensor;
        j->dims[0] = 1, j->dims[1] = 3, j->dims[2] = side, j->dims[3] = side;
    } else {
        j->img = *img;
    }
    j->params = itscam_detector_default_params();
    j->want_dets = 1;
    j->prio = prio;
    j->done = on_done;
    j->done_arg = (void *)(intptr_t)id;
    return j;
}

/* Block the worker with job `id` (submitted at urgent level), return once it holds it. */
static void close_gate(it_sched *s, const itscam_image *img, int id) {
    pthread_mutex_lock(&mu);
    gate_id = id;
    in_gate = 0;
    gate_open = 0;
    pthread_mutex_unlock(&mu);
    CHECK(it_sched_submit(s, mk(id, img, NULL, IT_SCHED_URGENT, 0)) == IT_SCHED_QUEUED);
    pthread_mutex_lock(&mu);
    while (!in_gate) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
}

static void open_gate(void) {
    pthread_mutex_lock(&mu);
    gate_open = 1;
    gate_id = -1;
    pthread_cond_broadcast(&cv);
    while (in_gate) pthread_cond_wait(&cv, &mu); /* the worker has left the gate */
    pthread_mutex_unlock(&mu);
}

static int pos(int id) {
    for (int i = 0; i < n_done; i++)
        if (order[i] == id) return i;
    return -1;
}

static void sleep_ms(int ms) {
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

int main(void) {
    char mp[1024], p1[1024], p2[1024];
    if (!shared_path(mp, sizeof mp, "models/yolo11n-320-dynamic.onnx")) SKIP("models/yolo11n-320-dynamic.onnx is absent");
    if (!shared_path(p1, sizeof p1, "images/bus.jpg") || !shared_path(p2, sizeof p2, "images/zidane.jpg"))
        SKIP("images/bus.jpg or images/zidane.jpg is absent");
    CHECK(it_sched_prio_parse("urgent") == IT_SCHED_URGENT && it_sched_prio_parse("2") == IT_SCHED_BATCH &&
          it_sched_prio_parse("3") == -1 && it_sched_prio_parse("x") == -1 &&
          !strcmp(it_sched_prio_name(IT_SCHED_NORMAL), "normal"));
    it_image dec[2];
    const char *paths[2] = { p1, p2 };
    for (int i = 0; i < 2; i++) {
        uint8_t *bytes;
        size_t len;
        CHECK_OK(it_read_file(paths[i], &bytes, &len, (size_t)64 << 20));
        CHECK_OK(it_image_decode(bytes, len, (size_t)1 << 26, &dec[i]));
        it_free(bytes);
    }
    itscam_image img[2];
    for (int i = 0; i < 2; i++) img[i] = (itscam_image){ dec[i].data, dec[i].width, dec[i].height, dec[i].stride, ITSCAM_PIX_BGR8 };
    itscam_model *m = NULL;
    CHECK_OK(itscam_model_load(mp, &m));
    if (!m) return check_done("test_sched");
    itscam_detector *d = NULL;
    CHECK_OK(itscam_detector_create_from_model(m, NULL, &d));
    const int S = 320;

    /* References: each image alone, and each letterboxed tensor alone. */
    itscam_result alone[2];
    static float tensor[2][3 * 320 * 320];
    it_detect_item ref[2];
    for (int i = 0; i < 2; i++) {
        CHECK_OK(itscam_detect_image(d, &img[i], &alone[i]));
        size_t sl = it_letterbox_scratch_bytes(img[i].width, img[i].height, S, S);
        uint8_t *scratch = it_malloc(sl);
        CHECK_OK(it_letterbox_to_tensor(img[i].data, img[i].width, img[i].height, img[i].stride, 0, S, S, tensor[i],
                                        scratch, sl, NULL));
        it_free(scratch);
        ref[i] = (it_detect_item){ .tensor = tensor[i], .tensor_h = S, .tensor_w = S, .want_dets = 1, .want_raw = 1 };
        CHECK_OK(it_detect_run(d, &ref[i], 1));
    }

    it_sched_params sp = it_sched_default_params();
    sp.workers = 1;
    sp.max_batch = 4;
    sp.preferred_batch[0] = 4;
    sp.n_preferred = 1;
    sp.queue_limit[IT_SCHED_BATCH] = 2;
    it_sched_observer ob = { .job_done = obs_job, .batch_run = obs_batch, .rejected = obs_reject };
    it_sched *s = NULL;
    CHECK_OK(it_sched_new("yolo11n-320-dynamic", m, &sp, &ob, &s));
    if (!s) return check_done("test_sched");
    CHECK_OK(it_sched_warmup(s));
    CHECK(it_sched_max_batch(s) == 4);
    int64_t od[8];
    int ond = 0;
    CHECK(it_sched_output_dims(s, od, &ond) == 0 && ond == 3 && od[0] == -1);
    int total = 0; /* callbacks expected so far */

    /* Four images at once fill the preferred size: one batch, each as detected alone. */
    it_sched_job *batch[8];
    for (int i = 0; i < 4; i++) batch[i] = mk(i, &img[i % 2], NULL, IT_SCHED_NORMAL, 0);
    CHECK(it_sched_submit_all(s, batch, 4) == IT_SCHED_QUEUED);
    wait_done(4);
    total += 4;
    for (int i = 0; i < 4; i++) {
        CHECKF(jobs[i].outcome == IT_SCHED_DONE && same_result(&jobs[i].res, &alone[i % 2]), "image job %d: %s", i,
               jobs[i].message);
        CHECK(jobs[i].batch_size == 4);
    }
    printf("images: 4 jobs in one batch match itscam_detect_image (first after warm-up: preprocess %.1f ms)\n",
           jobs[0].ms_preprocess);

    /* Four equal tensors batch together and match the items run alone (raw and boxes). */
    reset_order();
    for (int i = 0; i < 4; i++) {
        batch[i] = mk(i, NULL, tensor[i % 2], IT_SCHED_NORMAL, S);
        batch[i]->want_raw = 1;
    }
    CHECK(it_sched_submit_all(s, batch, 4) == IT_SCHED_QUEUED);
    wait_done(4);
    total += 4;
    for (int i = 0; i < 4; i++) {
        const it_sched_job *j = &jobs[i];
        const it_detect_item *r = &ref[i % 2];
        CHECKF(j->outcome == IT_SCHED_DONE && j->batch_size == 4, "tensor job %d: batch %d, %s", i, j->batch_size,
               j->message);
        CHECK(same_result(&j->res, &r->res));
        CHECK(j->raw && j->raw_ndim == r->raw_ndim && j->raw_dims[1] == r->raw_dims[1] && j->raw_dims[2] == r->raw_dims[2]);
        if (!j->raw) continue;
        size_t per = (size_t)r->raw_dims[1] * (size_t)r->raw_dims[2];
        double worst = 0;
        for (size_t k = 0; k < per; k++) {
            double e = fabs(j->raw[k] - r->raw[k]) / (1 + fabs(r->raw[k]));
            if (e > worst) worst = e;
        }
        CHECKF(worst < 1e-3, "tensor job %d: raw output differs by %g", i, worst);
    }
    printf("tensors: 4 jobs in one batch match the items run alone\n");

    /* Priority: batch-level jobs queued before an urgent one run after it. FIFO within a
     * level. The gate (job 10) holds the worker while the queue is filled. */
    reset_order();
    close_gate(s, &img[0], 10);
    CHECK(it_sched_submit(s, mk(11, &img[0], NULL, IT_SCHED_BATCH, 0)) == IT_SCHED_QUEUED);
    CHECK(it_sched_submit(s, mk(12, &img[1], NULL, IT_SCHED_BATCH, 0)) == IT_SCHED_QUEUED);
    for (int i = 0; i < 6; i++) CHECK(it_sched_submit(s, mk(20 + i, &img[i % 2], NULL, IT_SCHED_NORMAL, 0)) == IT_SCHED_QUEUED);
    CHECK(it_sched_submit(s, mk(13, &img[1], NULL, IT_SCHED_URGENT, 0)) == IT_SCHED_QUEUED);
    CHECK(it_sched_depth(s, IT_SCHED_BATCH) == 2 && it_sched_depth(s, IT_SCHED_NORMAL) == 6 && it_sched_depth(s, -1) == 9);
    /* the batch level is full (limit 2): a lone job and an atomic pair are refused whole */
    it_sched_job *full = mk(14, &img[0], NULL, IT_SCHED_BATCH, 0);
    CHECK(it_sched_submit(s, full) == IT_SCHED_REJECT_FULL && full->outcome == IT_SCHED_QUEUE_FULL);
    printf("queue full: %s\n", full->message);
    batch[0] = mk(15, &img[0], NULL, IT_SCHED_URGENT, 0);
    batch[1] = mk(16, &img[0], NULL, IT_SCHED_BATCH, 0);
    CHECK(it_sched_submit_all(s, batch, 2) == IT_SCHED_REJECT_FULL);
    CHECK(it_sched_depth(s, IT_SCHED_URGENT) == 1 && it_sched_depth(s, -1) == 9);
    CHECK(jobs[15].outcome == IT_SCHED_QUEUE_FULL && jobs[16].outcome == IT_SCHED_QUEUE_FULL);
    open_gate();
    wait_done(1 + 9);
    total += 10;
    CHECKF(pos(13) < pos(11) && pos(13) < pos(12), "urgent at %d, batch jobs at %d and %d", pos(13), pos(11), pos(12));
    CHECK(pos(11) < pos(12));
    for (int i = 0; i < 5; i++) CHECKF(pos(20 + i) < pos(21 + i), "normal job %d at %d after %d", i, pos(20 + i), pos(21 + i));
    for (int i = 20; i < 26; i++) CHECK(jobs[i].outcome == IT_SCHED_DONE && same_result(&jobs[i].res, &alone[(i - 20) % 2]));
    CHECK(calls[14] == 0 && calls[15] == 0 && calls[16] == 0);
    printf("priority and FIFO: urgent first, then normal in order, then batch in order\n");

    /* Deadlines: one already past at submission, one that passes while the worker is held. */
    reset_order();
    close_gate(s, &img[0], 30);
    it_sched_job *late = mk(31, &img[0], NULL, IT_SCHED_NORMAL, 0);
    late->deadline_ms = it_now_ms() - 5;
    it_sched_job *soon = mk(32, &img[0], NULL, IT_SCHED_NORMAL, 0);
    soon->deadline_ms = it_now_ms() + 30;
    CHECK(it_sched_submit(s, late) == IT_SCHED_QUEUED && it_sched_submit(s, soon) == IT_SCHED_QUEUED);
    sleep_ms(100); /* past soon's deadline; the held worker cannot have run it */
    open_gate();
    wait_done(3);
    total += 3;
    CHECK(late->outcome == IT_SCHED_EXPIRED && strstr(late->message, "before it was submitted"));
    CHECK(soon->outcome == IT_SCHED_EXPIRED && strstr(soon->message, "in the normal queue") &&
          !strstr(soon->message, "before it was submitted"));
    CHECK(late->batch_size == 0 && !late->res.dets);
    printf("expired: %s\nexpired: %s\n", late->message, soon->message);

    /* Cancel: queued jobs are answered at once, the held batch is not affected. */
    reset_order();
    close_gate(s, &img[0], 40);
    for (int i = 41; i < 44; i++) CHECK(it_sched_submit(s, mk(i, &img[0], NULL, IT_SCHED_NORMAL, 0)) == IT_SCHED_QUEUED);
    it_sched_cancel_queued(s);
    CHECK(it_sched_depth(s, -1) == 0);
    for (int i = 41; i < 44; i++) CHECK(jobs[i].outcome == IT_SCHED_CANCELLED && calls[i] == 1);
    open_gate();
    wait_done(4);
    total += 4;
    CHECK(jobs[40].outcome == IT_SCHED_DONE);

    /* Newest per source: B replaces A (REPLACED at once) and keeps A's place before C. */
    reset_order();
    close_gate(s, &img[0], 50);
    it_sched_job *a = mk(51, &img[0], NULL, IT_SCHED_NORMAL, 0), *c = mk(52, &img[1], NULL, IT_SCHED_NORMAL, 0),
                 *b = mk(53, &img[1], NULL, IT_SCHED_NORMAL, 0);
    snprintf(a->source, sizeof a->source, "cam1");
    snprintf(b->source, sizeof b->source, "cam1");
    snprintf(c->source, sizeof c->source, "cam2");
    a->keep_newest = b->keep_newest = c->keep_newest = 1;
    CHECK(it_sched_submit(s, a) == IT_SCHED_QUEUED && it_sched_submit(s, c) == IT_SCHED_QUEUED);
    CHECK(it_sched_submit(s, b) == IT_SCHED_QUEUED);
    CHECK(a->outcome == IT_SCHED_REPLACED && calls[51] == 1 && it_sched_depth(s, IT_SCHED_NORMAL) == 2);
    open_gate();
    wait_done(4);
    total += 4;
    CHECK(b->outcome == IT_SCHED_DONE && c->outcome == IT_SCHED_DONE && same_result(&b->res, &alone[1]));
    CHECKF(pos(53) < pos(52), "the replacement ran at %d, after cam2 at %d", pos(53), pos(52));
    printf("replaced: %s\n", a->message);

    /* A malformed job is refused, not run. */
    it_sched_job *bad = mk(60, NULL, tensor[0], IT_SCHED_NORMAL, 100);
    CHECK(it_sched_submit(s, bad) == IT_SCHED_REJECT_INVALID && bad->outcome == IT_SCHED_FAILED);

    it_sched_free(s);
    /* Every completion went through the observer, each job's callback exactly once. */
    pthread_mutex_lock(&mu);
    CHECKF(obs_done == total, "observer saw %d completions of %d", obs_done, total);
    CHECK(obs_max_batch == 4 && obs_batches > 0);
    CHECK(obs_full == 3 && obs_expired == 2);
    pthread_mutex_unlock(&mu);
    for (int i = 0; i < NJOBS; i++) {
        CHECKF(calls[i] <= 1, "job %d called back %d times", i, calls[i]);
        itscam_result_clear(&jobs[i].res);
        it_free(jobs[i].raw);
    }
    for (int i = 0; i < 2; i++) {
        itscam_result_clear(&alone[i]);
        itscam_result_clear(&ref[i].res);
        it_free(ref[i].raw);
        it_image_free(&dec[i]);
    }
    itscam_detector_free(d);
    itscam_model_free(m);
    return check_done("test_sched");
}
