/* The newest frame per camera: pooled pixel buffers, encode-once JPEG cache, watchers. */
#include "sinks/frames.h"

#include "vision/draw.h"
#include "vision/letterbox.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define NAME_MAX_LEN 32 /* bytes kept of a class name, with the terminator */

/* A stored frame: refcounted, shared by the camera (as its current frame or in its pool)
 * and by the viewers encoding it. Immutable while anyone but the putter holds it. */
typedef struct frame {
    atomic_int refs;
    it_image img;
    size_t cap_bytes;             /* bytes allocated at img.data */
    uint64_t gen;                 /* the camera's put counter: identifies the frame */
    int64_t index;
    double captured_at;
    itscam_detection *dets;       /* class_name points into names */
    int64_t *tids;                /* tracker ids of dets, 0: none */
    char (*names)[NAME_MAX_LEN];
    int n_dets, cap_dets;
} frame;

typedef struct enc_slot {
    int used;
    int height, quality, annotate;
    int encoding;                 /* one thread encodes this key now; the others wait */
    uint64_t gen;                 /* the frame jpeg was made from */
    it_jpeg *jpeg;
    uint64_t last_used;
} enc_slot;

typedef struct camera {
    struct camera *next;
    char id[IT_FRAMES_ID_MAX + 1];
    char (*names)[NAME_MAX_LEN];  /* class names for detections without one */
    int n_names;
    frame *cur;                   /* one reference */
    frame *pool[IT_FRAMES_POOL];  /* one reference each; may include cur */
    uint64_t gen;
    enc_slot slots[IT_FRAMES_MAX_KEYS];
    int busy;                     /* viewers using this struct outside the lock */
    int removed;                  /* unlinked: the last busy viewer frees it */
} camera;

struct it_frames_watch {
    struct it_frames_watch *next;
    char id[IT_FRAMES_ID_MAX + 1];
    void (*wake)(void *);
    void *arg;
    int waking;                   /* wake calls running now (remove waits for 0) */
};

struct it_frames {
    pthread_mutex_t mu;
    pthread_cond_t cv;            /* an encode or a wake call ended, or a camera went */
    camera *cams;
    it_frames_watch *watches;
    uint64_t tick;                /* LRU clock */
    uint64_t puts, encodes, cache_hits;
};

void it_jpeg_ref(it_jpeg *j) {
    atomic_fetch_add_explicit(&j->refs, 1, memory_order_relaxed);
}

void it_jpeg_unref(it_jpeg *j) {
    if (j && atomic_fetch_sub_explicit(&j->refs, 1, memory_order_acq_rel) == 1) {
        it_free(j->data);
        it_free(j);
    }
}

static void frame_unref(frame *fr) {
    if (fr && atomic_fetch_sub_explicit(&fr->refs, 1, memory_order_acq_rel) == 1) {
        it_free(fr->img.data);
        it_free(fr->dets);
        it_free(fr->tids);
        it_free(fr->names);
        it_free(fr);
    }
}

it_frames *it_frames_new(void) {
    it_frames *f = it_calloc(1, sizeof *f);
    if (!f) {
        it_err(ITSCAM_ERR_NOMEM, "frames: out of memory");
        return NULL;
    }
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    return f;
}

/* Drop what the camera holds (lock held, or the store being freed). */
static void camera_release(camera *c) {
    frame_unref(c->cur);
    c->cur = NULL;
    for (int i = 0; i < IT_FRAMES_POOL; i++) {
        frame_unref(c->pool[i]);
        c->pool[i] = NULL;
    }
    for (int i = 0; i < IT_FRAMES_MAX_KEYS; i++) {
        it_jpeg_unref(c->slots[i].jpeg);
        c->slots[i].jpeg = NULL;
    }
    it_free(c->names);
    c->names = NULL;
    c->n_names = 0;
}

void it_frames_free(it_frames *f) {
    if (!f) return;
    while (f->cams) {
        camera *c = f->cams;
        f->cams = c->next;
        camera_release(c);
        it_free(c);
    }
    while (f->watches) {
        it_frames_watch *w = f->watches;
        f->watches = w->next;
        it_free(w);
    }
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->cv);
    it_free(f);
}

static camera *find(it_frames *f, const char *id) {
    for (camera *c = f->cams; c; c = c->next)
        if (!strcmp(c->id, id)) return c;
    return NULL;
}

static int valid_id(const char *id) {
    return id && id[0] && strlen(id) <= IT_FRAMES_ID_MAX;
}

itscam_status it_frames_add_camera(it_frames *f, const char *id, const char *const *names, int n_names) {
    if (!f || !valid_id(id) || n_names < 0 || (n_names && !names))
        return it_err(ITSCAM_ERR_INVALID_ARG, "frames: bad camera id or names");
    char (*nm)[NAME_MAX_LEN] = NULL;
    if (n_names) {
        if (!(nm = it_calloc((size_t)n_names, sizeof *nm))) return it_err(ITSCAM_ERR_NOMEM, "frames: out of memory");
        for (int i = 0; i < n_names; i++) snprintf(nm[i], NAME_MAX_LEN, "%s", names[i] ? names[i] : "");
    }
    pthread_mutex_lock(&f->mu);
    camera *c = find(f, id);
    if (!c) {
        if (!(c = it_calloc(1, sizeof *c))) {
            pthread_mutex_unlock(&f->mu);
            it_free(nm);
            return it_err(ITSCAM_ERR_NOMEM, "frames: out of memory");
        }
        snprintf(c->id, sizeof c->id, "%s", id);
        c->next = f->cams;
        f->cams = c;
    }
    it_free(c->names);
    c->names = nm;
    c->n_names = n_names;
    pthread_mutex_unlock(&f->mu);
    return ITSCAM_OK;
}

int it_frames_has(it_frames *f, const char *id) {
    if (!f || !id) return 0;
    pthread_mutex_lock(&f->mu);
    int has = find(f, id) != NULL;
    pthread_mutex_unlock(&f->mu);
    return has;
}

/* Pin the watchers of id (lock held) into *list; returns how many, -1 when out of memory. */
static int pin_watchers(it_frames *f, const char *id, it_frames_watch ***list, it_frames_watch **stack, int n_stack) {
    int n = 0;
    for (it_frames_watch *w = f->watches; w; w = w->next) n += !strcmp(w->id, id);
    *list = stack;
    if (n > n_stack && !(*list = it_malloc(sizeof **list * (size_t)n))) return -1;
    int k = 0;
    for (it_frames_watch *w = f->watches; w; w = w->next)
        if (!strcmp(w->id, id)) {
            w->waking++;
            (*list)[k++] = w;
        }
    return k;
}

/* Call the pinned watchers (lock not held) and unpin them. */
static void run_watchers(it_frames *f, it_frames_watch **list, int n, it_frames_watch **stack) {
    for (int i = 0; i < n; i++) list[i]->wake(list[i]->arg);
    if (n > 0) {
        pthread_mutex_lock(&f->mu);
        for (int i = 0; i < n; i++) list[i]->waking--;
        pthread_cond_broadcast(&f->cv);
        pthread_mutex_unlock(&f->mu);
    }
    if (list != stack) it_free(list);
}

void it_frames_remove_camera(it_frames *f, const char *id) {
    if (!f || !id) return;
    it_frames_watch *stack[16], **list = stack;
    pthread_mutex_lock(&f->mu);
    camera **pp = &f->cams;
    while (*pp && strcmp((*pp)->id, id)) pp = &(*pp)->next;
    camera *c = *pp;
    if (!c) {
        pthread_mutex_unlock(&f->mu);
        return;
    }
    *pp = c->next;
    camera_release(c);
    c->removed = 1;
    if (!c->busy) it_free(c);
    pthread_cond_broadcast(&f->cv); /* viewers waiting on its encodes */
    /* Out of memory here only means the watchers learn it at their next heartbeat. */
    int n = pin_watchers(f, id, &list, stack, 16);
    pthread_mutex_unlock(&f->mu);
    if (n > 0) run_watchers(f, list, n, stack);
}

/* Size fr for w x h pixels and n detections. */
static itscam_status frame_reserve(frame *fr, int w, int h, int n) {
    size_t need = (size_t)w * (size_t)h * 3;
    if (need > fr->cap_bytes) {
        it_free(fr->img.data);
        fr->img.data = NULL;
        fr->cap_bytes = 0;
        if (!(fr->img.data = it_malloc(need))) return it_err(ITSCAM_ERR_NOMEM, "frames: out of memory for %dx%d", w, h);
        fr->cap_bytes = need;
    }
    fr->img.width = w;
    fr->img.height = h;
    fr->img.stride = w * 3;
    if (n > fr->cap_dets) {
        it_free(fr->dets);
        it_free(fr->tids);
        it_free(fr->names);
        fr->tids = NULL;
        fr->names = NULL;
        fr->cap_dets = 0;
        fr->dets = it_malloc(sizeof *fr->dets * (size_t)n);
        fr->tids = it_malloc(sizeof *fr->tids * (size_t)n);
        fr->names = it_malloc(sizeof *fr->names * (size_t)n);
        if (!fr->dets || !fr->tids || !fr->names)
            return it_err(ITSCAM_ERR_NOMEM, "frames: out of memory for %d detections", n);
        fr->cap_dets = n;
    }
    return ITSCAM_OK;
}

itscam_status it_frames_put(it_frames *f, const char *id, const it_image *bgr, const itscam_detection *dets,
                            const int64_t *track_ids, int n, int64_t frame_index, double captured_at) {
    if (!f || !id || !bgr || !bgr->data || bgr->width < 1 || bgr->height < 1 || bgr->stride < bgr->width * 3 ||
        n < 0 || (n && !dets))
        return it_err(ITSCAM_ERR_INVALID_ARG, "frames: bad frame");
    if (n > IT_FRAMES_MAX_DETS) n = IT_FRAMES_MAX_DETS;

    /* Take a pooled buffer no viewer holds (refs 1: only the pool), or make one. */
    pthread_mutex_lock(&f->mu);
    camera *c = find(f, id);
    if (!c) {
        pthread_mutex_unlock(&f->mu);
        return it_err(ITSCAM_ERR_NOT_FOUND, "frames: unknown camera '%s'", id);
    }
    frame *fr = NULL;
    int free_slot = -1;
    for (int i = 0; i < IT_FRAMES_POOL && !fr; i++) {
        if (!c->pool[i]) {
            if (free_slot < 0) free_slot = i;
        } else if (c->pool[i] != c->cur && atomic_load(&c->pool[i]->refs) == 1) {
            fr = c->pool[i];
            atomic_fetch_add(&fr->refs, 1); /* ours now: refs 2 keeps other putters off */
        }
    }
    if (!fr) {
        if (!(fr = it_calloc(1, sizeof *fr))) {
            pthread_mutex_unlock(&f->mu);
            return it_err(ITSCAM_ERR_NOMEM, "frames: out of memory");
        }
        atomic_init(&fr->refs, 1);
        if (free_slot >= 0) { /* pooled; else loose: freed by its last reader */
            atomic_fetch_add(&fr->refs, 1);
            c->pool[free_slot] = fr;
        }
    }
    pthread_mutex_unlock(&f->mu);

    /* The copy, outside the lock: viewers keep encoding meanwhile. */
    itscam_status st = frame_reserve(fr, bgr->width, bgr->height, n);
    if (st != ITSCAM_OK) {
        frame_unref(fr);
        return st;
    }
    for (int y = 0; y < bgr->height; y++)
        memcpy(fr->img.data + (size_t)y * fr->img.stride, bgr->data + (size_t)y * bgr->stride, (size_t)bgr->width * 3);
    fr->index = frame_index;
    fr->captured_at = captured_at;
    fr->n_dets = n;

    it_frames_watch *stack[16], **list = stack;
    pthread_mutex_lock(&f->mu);
    if (!(c = find(f, id))) { /* removed meanwhile */
        pthread_mutex_unlock(&f->mu);
        frame_unref(fr);
        return it_err(ITSCAM_ERR_NOT_FOUND, "frames: camera '%s' was removed", id);
    }
    for (int i = 0; i < n; i++) {
        const char *nm = dets[i].class_name && dets[i].class_name[0] ? dets[i].class_name
                         : dets[i].class_id >= 0 && dets[i].class_id < c->n_names ? c->names[dets[i].class_id]
                                                                                   : "";
        snprintf(fr->names[i], NAME_MAX_LEN, "%s", nm);
        fr->dets[i] = dets[i];
        fr->dets[i].class_name = fr->names[i];
        fr->tids[i] = track_ids ? track_ids[i] : 0;
    }
    frame *old = c->cur;
    c->cur = fr; /* our reference moves to cur */
    fr->gen = ++c->gen;
    f->puts++;
    int nw = pin_watchers(f, id, &list, stack, 16);
    pthread_mutex_unlock(&f->mu);
    frame_unref(old);
    if (nw > 0) run_watchers(f, list, nw, stack);
    return ITSCAM_OK;
}

/* Scale, annotate and encode fr (outside the lock). NULL with it_err on failure. */
static it_jpeg *encode(const frame *fr, int height, int quality, int annotate) {
    const it_image *src = &fr->img;
    int w = src->width, h = src->height;
    int th = height > 0 && height < h ? height : h;
    int tw = th == h ? w : (int)IT_MAX(1, lround((double)w * th / h));
    it_image work = { 0 };
    const it_image *enc = src;
    it_jpeg *j = NULL;
    itscam_detection *scaled = NULL;
    if (th != h || (annotate && fr->n_dets)) {
        if (it_image_alloc(&work, tw, th) != ITSCAM_OK) goto done;
        if (th != h) {
            size_t sn = it_resize_scratch_bytes(tw, th);
            uint8_t *scratch = it_malloc(sn ? sn : 1);
            if (!scratch) {
                it_err(ITSCAM_ERR_NOMEM, "frames: out of memory");
                goto done;
            }
            itscam_status st = it_resize_linear_c3(src->data, w, h, src->stride, work.data, tw, th, work.stride,
                                                   scratch, sn);
            it_free(scratch);
            if (st != ITSCAM_OK) goto done;
        } else {
            for (int y = 0; y < h; y++)
                memcpy(work.data + (size_t)y * work.stride, src->data + (size_t)y * src->stride, (size_t)w * 3);
        }
        enc = &work;
    }
    if (annotate && fr->n_dets) {
        /* Drawn after scaling so that labels keep a readable size at any height. */
        if (!(scaled = it_malloc(sizeof *scaled * (size_t)fr->n_dets))) {
            it_err(ITSCAM_ERR_NOMEM, "frames: out of memory");
            goto done;
        }
        float sx = (float)tw / (float)w, sy = (float)th / (float)h;
        for (int i = 0; i < fr->n_dets; i++) {
            scaled[i] = fr->dets[i];
            scaled[i].box[0] *= sx;
            scaled[i].box[1] *= sy;
            scaled[i].box[2] *= sx;
            scaled[i].box[3] *= sy;
        }
        it_draw_detections(&work, scaled, fr->tids, fr->n_dets, NULL, 0);
    }
    if (!(j = it_calloc(1, sizeof *j))) {
        it_err(ITSCAM_ERR_NOMEM, "frames: out of memory");
        goto done;
    }
    if (it_image_encode_jpeg(enc, quality, &j->data, &j->len) != ITSCAM_OK) {
        it_free(j);
        j = NULL;
        goto done;
    }
    j->width = tw;
    j->height = th;
    j->frame_index = fr->index;
    j->seq = fr->gen;
    j->captured_at = fr->captured_at;
    atomic_init(&j->refs, 1);
done:
    it_free(scaled);
    it_image_free(&work);
    return j;
}

/* The slot caching key (h, q, a), or the least recently used one free to take (NULL when
 * every slot is being encoded). Lock held. */
static enc_slot *slot_for(camera *c, int h, int q, int a, int *found) {
    enc_slot *lru = NULL;
    *found = 0;
    for (int i = 0; i < IT_FRAMES_MAX_KEYS; i++) {
        enc_slot *s = &c->slots[i];
        if (s->used && s->height == h && s->quality == q && s->annotate == a) {
            *found = 1;
            return s;
        }
        if (!s->encoding && (!lru || !s->used || (lru->used && s->last_used < lru->last_used))) lru = s;
    }
    return lru;
}

/* Drop a busy hold on c (lock held); frees c when it was removed meanwhile. */
static void camera_leave(camera *c) {
    if (--c->busy == 0 && c->removed) it_free(c);
}

it_frames_status it_frames_jpeg(it_frames *f, const char *id, int height, int quality, int annotate,
                                uint64_t after_seq, it_jpeg **out) {
    *out = NULL;
    if (!f || !id || height < 0 || height > IT_FRAMES_MAX_HEIGHT || quality < 1 || quality > 100) {
        it_err(ITSCAM_ERR_INVALID_ARG, "frames: bad height %d or quality %d", height, quality);
        return IT_FRAMES_ERROR;
    }
    annotate = annotate != 0;
    pthread_mutex_lock(&f->mu);
    camera *c = find(f, id);
    if (!c) {
        pthread_mutex_unlock(&f->mu);
        return IT_FRAMES_UNKNOWN_CAMERA;
    }
    /* A height at or above the frame's is the native size: one key for all of them. */
    for (;;) {
        frame *fr = c->cur;
        if (!fr) {
            pthread_mutex_unlock(&f->mu);
            return IT_FRAMES_NO_FRAME;
        }
        if (fr->gen <= after_seq) {
            pthread_mutex_unlock(&f->mu);
            return IT_FRAMES_NOT_NEWER;
        }
        int h = height > 0 && height < fr->img.height ? height : 0;
        int found;
        enc_slot *s = slot_for(c, h, quality, annotate, &found);
        if (found && s->jpeg && s->gen == fr->gen) {
            it_jpeg_ref(s->jpeg);
            *out = s->jpeg;
            s->last_used = ++f->tick;
            f->cache_hits++;
            pthread_mutex_unlock(&f->mu);
            return IT_FRAMES_OK;
        }
        if (found && s->encoding) { /* someone encodes this key: wait for it */
            c->busy++;
            pthread_cond_wait(&f->cv, &f->mu);
            int gone = c->removed;
            camera_leave(c);
            if (gone) {
                pthread_mutex_unlock(&f->mu);
                return IT_FRAMES_UNKNOWN_CAMERA;
            }
            continue;
        }
        if (s) {
            if (!found) {
                it_jpeg_unref(s->jpeg);
                s->jpeg = NULL;
                s->used = 1;
                s->height = h;
                s->quality = quality;
                s->annotate = annotate;
            }
            s->encoding = 1;
            s->last_used = ++f->tick;
        }
        atomic_fetch_add(&fr->refs, 1);
        c->busy++;
        f->encodes++;
        pthread_mutex_unlock(&f->mu);

        it_jpeg *j = encode(fr, h, quality, annotate);

        pthread_mutex_lock(&f->mu);
        if (s) {
            s->encoding = 0;
            if (j && !c->removed && (!s->jpeg || s->gen < fr->gen)) {
                it_jpeg_unref(s->jpeg);
                it_jpeg_ref(j);
                s->jpeg = j;
                s->gen = fr->gen;
            }
            pthread_cond_broadcast(&f->cv);
        }
        camera_leave(c);
        pthread_mutex_unlock(&f->mu);
        frame_unref(fr);
        *out = j;
        return j ? IT_FRAMES_OK : IT_FRAMES_ERROR;
    }
}

it_frames_watch *it_frames_watch_add(it_frames *f, const char *id, void (*wake)(void *), void *arg) {
    if (!f || !valid_id(id) || !wake) {
        it_err(ITSCAM_ERR_INVALID_ARG, "frames: bad watch");
        return NULL;
    }
    it_frames_watch *w = it_calloc(1, sizeof *w);
    if (!w) {
        it_err(ITSCAM_ERR_NOMEM, "frames: out of memory");
        return NULL;
    }
    snprintf(w->id, sizeof w->id, "%s", id);
    w->wake = wake;
    w->arg = arg;
    pthread_mutex_lock(&f->mu);
    w->next = f->watches;
    f->watches = w;
    pthread_mutex_unlock(&f->mu);
    return w;
}

void it_frames_watch_remove(it_frames *f, it_frames_watch *w) {
    if (!f || !w) return;
    pthread_mutex_lock(&f->mu);
    it_frames_watch **pp = &f->watches;
    while (*pp && *pp != w) pp = &(*pp)->next;
    if (*pp) *pp = w->next;
    while (w->waking) pthread_cond_wait(&f->cv, &f->mu);
    pthread_mutex_unlock(&f->mu);
    it_free(w);
}

void it_frames_stats_get(it_frames *f, it_frames_stats *st) {
    pthread_mutex_lock(&f->mu);
    st->puts = f->puts;
    st->encodes = f->encodes;
    st->cache_hits = f->cache_hits;
    pthread_mutex_unlock(&f->mu);
}
