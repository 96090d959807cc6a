/* The event bus: publish once, fan out by pointer to bounded per-subscriber queues. */
#include "sinks/bus.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct it_bus_sub {
    it_bus *bus;
    struct it_bus_sub *prev, *next;
    char camera[IT_BUS_CAMERA_MAX + 1]; /* "" = every camera */
    char types[IT_BUS_SUB_TYPES_MAX][IT_BUS_TYPE_MAX + 1]; /* n_types 0: every type */
    int n_types, stored_only;
    it_event **ring;                    /* max_events slots */
    int cap, head, count;
    size_t bytes, max_bytes;
    uint64_t dropped;                   /* since the last pop */
    void (*wake)(void *);
    void *wake_arg;
    int waking;                         /* publishers calling wake now (unsubscribe waits) */
};

struct it_bus {
    pthread_mutex_t mu;
    pthread_cond_t cv;                  /* a wake call ended */
    it_bus_sub *subs;
    int n_subs, max_subs;
    uint64_t seq;
    uint64_t published, delivered, dropped;
};

void it_event_ref(it_event *e) {
    atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
}

void it_event_unref(it_event *e) {
    if (e && atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) == 1) it_free(e);
}

it_bus *it_bus_new(int max_subscribers) {
    if (max_subscribers < 1 || max_subscribers > 65536) {
        it_err(ITSCAM_ERR_INVALID_ARG, "bus: max_subscribers %d is not in 1..65536", max_subscribers);
        return NULL;
    }
    it_bus *b = it_calloc(1, sizeof *b);
    if (!b) {
        it_err(ITSCAM_ERR_NOMEM, "bus: out of memory");
        return NULL;
    }
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    b->max_subs = max_subscribers;
    return b;
}

void it_bus_free(it_bus *b) {
    if (!b) return;
    if (b->subs) it_log(ITSCAM_LOG_WARN, "bus: freed with %d subscriptions still open", b->n_subs);
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cv);
    it_free(b);
}

static int valid_type(const char *t) {
    size_t n = strlen(t);
    if (n == 0 || n > IT_BUS_TYPE_MAX) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = t[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
              c == '-' || c == '.'))
            return 0;
    }
    return 1;
}

/* Drop the oldest queued event of s (bus lock held). */
static void drop_oldest(it_bus *b, it_bus_sub *s) {
    it_event *e = s->ring[s->head];
    s->ring[s->head] = NULL;
    s->head = (s->head + 1) % s->cap;
    s->count--;
    s->bytes -= e->len;
    s->dropped++;
    b->dropped++;
    it_event_unref(e);
}

/* Queue e on s (bus lock held). 1 when s went from empty to non-empty. */
static int enqueue(it_bus *b, it_bus_sub *s, it_event *e) {
    if (e->len > s->max_bytes) { /* it could never fit: lost for this subscriber */
        s->dropped++;
        b->dropped++;
        return 0;
    }
    while (s->count == s->cap || s->bytes + e->len > s->max_bytes) drop_oldest(b, s);
    int was_empty = s->count == 0;
    it_event_ref(e);
    s->ring[(s->head + s->count) % s->cap] = e;
    s->count++;
    s->bytes += e->len;
    b->delivered++;
    return was_empty;
}

static int type_wanted(const it_bus_sub *s, const char *type) {
    for (int i = 0; i < s->n_types; i++)
        if (!strcmp(s->types[i], type)) return 1;
    return 0;
}

static itscam_status publish(it_bus *b, const char *camera, const char *type, const char *json_text, size_t len,
                             int64_t id, uint64_t *seq_out) {
    if (!camera) camera = "";
    if (!b || !type || (!json_text && len)) return it_err(ITSCAM_ERR_INVALID_ARG, "bus: NULL argument");
    if (strlen(camera) > IT_BUS_CAMERA_MAX)
        return it_err(ITSCAM_ERR_INVALID_ARG, "bus: camera id longer than %d bytes", IT_BUS_CAMERA_MAX);
    if (!valid_type(type))
        return it_err(ITSCAM_ERR_INVALID_ARG, "bus: event type '%.40s' is not 1..%d of [A-Za-z0-9_.-]", type,
                      IT_BUS_TYPE_MAX);
    if (memchr(json_text ? json_text : "", '\n', len) || memchr(json_text ? json_text : "", '\r', len))
        return it_err(ITSCAM_ERR_INVALID_ARG, "bus: event text has a line break (events are one line)");
    it_event *e = it_malloc(sizeof *e + len + 1);
    if (!e) return it_err(ITSCAM_ERR_NOMEM, "bus: out of memory for a %zu-byte event", len);
    memset(e, 0, sizeof *e);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    e->time_ms = (double)ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
    snprintf(e->camera, sizeof e->camera, "%s", camera);
    snprintf(e->type, sizeof e->type, "%s", type);
    e->data = (char *)(e + 1);
    if (len) memcpy(e->data, json_text, len);
    e->data[len] = 0;
    e->len = len;
    e->id = id > 0 ? id : 0;
    atomic_init(&e->refs, 1);

    /* Wake callbacks run after the lock is released; the subscriptions to wake are
     * pinned (waking) so that an unsubscribe waits for them. A small array on the stack
     * covers the usual handful of subscribers; more take one allocation per publish. */
    it_bus_sub *stack_wake[32];
    it_bus_sub **to_wake = stack_wake;
    int n_wake = 0;
    pthread_mutex_lock(&b->mu);
    if (b->n_subs > 32 && !(to_wake = it_malloc(sizeof *to_wake * (size_t)b->n_subs))) {
        pthread_mutex_unlock(&b->mu);
        it_free(e);
        return it_err(ITSCAM_ERR_NOMEM, "bus: out of memory for %d subscribers", b->n_subs);
    }
    e->seq = ++b->seq;
    b->published++;
    for (it_bus_sub *s = b->subs; s; s = s->next) {
        if (s->camera[0] && strcmp(s->camera, e->camera)) continue;
        if ((s->stored_only && e->id <= 0) || (s->n_types && !type_wanted(s, e->type))) continue;
        if (!enqueue(b, s, e) || !s->wake) continue;
        s->waking++;
        to_wake[n_wake++] = s;
    }
    pthread_mutex_unlock(&b->mu);
    if (seq_out) *seq_out = e->seq;
    it_event_unref(e); /* the queues hold it now */
    for (int i = 0; i < n_wake; i++) to_wake[i]->wake(to_wake[i]->wake_arg);
    if (n_wake) {
        pthread_mutex_lock(&b->mu);
        for (int i = 0; i < n_wake; i++) to_wake[i]->waking--;
        pthread_cond_broadcast(&b->cv);
        pthread_mutex_unlock(&b->mu);
    }
    if (to_wake != stack_wake) it_free(to_wake);
    return ITSCAM_OK;
}

itscam_status it_bus_publish(it_bus *b, const char *camera, const char *type, const char *json_text, size_t len,
                             uint64_t *seq_out) {
    return publish(b, camera, type, json_text, len, 0, seq_out);
}

itscam_status it_bus_publish_stored(it_bus *b, const char *camera, const char *type, const char *json_text,
                                    size_t len, int64_t id, uint64_t *seq_out) {
    if (id <= 0) return it_err(ITSCAM_ERR_INVALID_ARG, "bus: a stored event needs its store id");
    return publish(b, camera, type, json_text, len, id, seq_out);
}

itscam_status it_bus_publish_json(it_bus *b, const char *camera, const char *type, const json_t *j,
                                  uint64_t *seq_out) {
    if (!j) return it_err(ITSCAM_ERR_INVALID_ARG, "bus: NULL event");
    /* Compact dumps escape control characters inside strings: the text is one line. */
    char *txt = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(9) | JSON_ENCODE_ANY);
    if (!txt) return it_err(ITSCAM_ERR_NOMEM, "bus: cannot serialise the event");
    itscam_status st = it_bus_publish(b, camera, type, txt, strlen(txt), seq_out);
    free(txt);
    return st;
}

itscam_status it_bus_sub_filter(it_bus_sub *s, const char *const *types, int n, int stored_only) {
    if (!s || n < 0 || n > IT_BUS_SUB_TYPES_MAX || (n && !types))
        return it_err(ITSCAM_ERR_INVALID_ARG, "bus: at most %d event types in a filter", IT_BUS_SUB_TYPES_MAX);
    for (int i = 0; i < n; i++)
        if (!types[i] || !*types[i] || strlen(types[i]) > IT_BUS_TYPE_MAX)
            return it_err(ITSCAM_ERR_INVALID_ARG, "bus: a filter's event types are 1 to %d bytes", IT_BUS_TYPE_MAX);
    pthread_mutex_lock(&s->bus->mu);
    for (int i = 0; i < n; i++) snprintf(s->types[i], sizeof s->types[i], "%s", types[i]);
    s->n_types = n;
    s->stored_only = stored_only != 0;
    pthread_mutex_unlock(&s->bus->mu);
    return ITSCAM_OK;
}

it_bus_sub *it_bus_subscribe(it_bus *b, const char *camera_filter, int max_events, size_t max_bytes,
                             void (*wake)(void *), void *wake_arg) {
    if (!camera_filter) camera_filter = "";
    if (!b || max_events < 1 || max_bytes < 1 || strlen(camera_filter) > IT_BUS_CAMERA_MAX) {
        it_err(ITSCAM_ERR_INVALID_ARG, "bus: bad subscription (max_events %d, max_bytes %zu, camera filter "
               "of %zu bytes)", max_events, max_bytes, b ? strlen(camera_filter) : 0);
        return NULL;
    }
    it_bus_sub *s = it_calloc(1, sizeof *s);
    it_event **ring = it_calloc((size_t)max_events, sizeof *ring);
    if (!s || !ring) {
        it_free(s);
        it_free(ring);
        it_err(ITSCAM_ERR_NOMEM, "bus: out of memory for a subscription of %d events", max_events);
        return NULL;
    }
    s->bus = b;
    snprintf(s->camera, sizeof s->camera, "%s", camera_filter);
    s->ring = ring;
    s->cap = max_events;
    s->max_bytes = max_bytes;
    s->wake = wake;
    s->wake_arg = wake_arg;
    pthread_mutex_lock(&b->mu);
    if (b->n_subs >= b->max_subs) {
        pthread_mutex_unlock(&b->mu);
        it_free(ring);
        it_free(s);
        it_err(ITSCAM_ERR_INVALID_ARG, "bus: %d subscribers already, the most allowed", b->max_subs);
        return NULL;
    }
    s->next = b->subs;
    if (b->subs) b->subs->prev = s;
    b->subs = s;
    b->n_subs++;
    pthread_mutex_unlock(&b->mu);
    return s;
}

it_event *it_bus_pop(it_bus_sub *s, uint64_t *dropped) {
    it_bus *b = s->bus;
    it_event *e = NULL;
    pthread_mutex_lock(&b->mu);
    if (dropped) {
        *dropped = s->dropped;
        s->dropped = 0;
    }
    if (s->count) {
        e = s->ring[s->head];
        s->ring[s->head] = NULL;
        s->head = (s->head + 1) % s->cap;
        s->count--;
        s->bytes -= e->len;
    }
    pthread_mutex_unlock(&b->mu);
    return e;
}

void it_bus_unsubscribe(it_bus_sub *s) {
    if (!s) return;
    it_bus *b = s->bus;
    pthread_mutex_lock(&b->mu);
    if (s->prev) s->prev->next = s->next;
    else b->subs = s->next;
    if (s->next) s->next->prev = s->prev;
    b->n_subs--;
    while (s->waking) pthread_cond_wait(&b->cv, &b->mu);
    pthread_mutex_unlock(&b->mu);
    for (int i = 0; i < s->count; i++) it_event_unref(s->ring[(s->head + i) % s->cap]);
    it_free(s->ring);
    it_free(s);
}

void it_bus_stats_get(it_bus *b, it_bus_stats *st) {
    pthread_mutex_lock(&b->mu);
    st->published = b->published;
    st->delivered = b->delivered;
    st->dropped = b->dropped;
    st->subscribers = b->n_subs;
    pthread_mutex_unlock(&b->mu);
}
