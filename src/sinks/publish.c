/* Publishers: one thread per target that moves the outbox to a broker, MQTT through
 * libmosquitto driven by our own poll() (so a wake or a stop is seen at once), Redis
 * through hiredis' blocking calls with timeouts. What the two share (backoff, the thread,
 * waking, stats, the acknowledged-prefix rule) is here once; each broker is a table of
 * three functions (connect, pump, close). */
#include "sinks/publish.h"
#include "sinks/outbox.h"

#include "core/core.h"

#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <mosquitto.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PENDING_REFRESH_MS 1000.0
#define COUNT_CACHE 1024      /* line count keys remembered; more start over from the store */
#define TOPIC_SEG_MAX 96      /* bytes of one topic segment taken from an event */
#define OFFLINE_WAIT_MS 1000.0
#define LOG_REPEAT_MS 60000.0 /* the same connection error is logged once a minute at most */

typedef struct pub_ops {
    const char *name;
    /* Bring a session up. 0, or -1 with p->err set. Polls p->stop. */
    int (*connect)(it_publisher *p);
    /* One round: wait for work (at most poll_ms), send, take acknowledgements. 0, or -1
     * when the session is lost (p->err set). */
    int (*pump)(it_publisher *p);
    /* End the session; clean: the broker is up and the stop is orderly. */
    void (*close)(it_publisher *p, int clean);
} pub_ops;

/* A line count key's running value (see publish.h). */
typedef struct count_entry {
    uint64_t hash;
    char camera[IT_CAM_ID_MAX + 1], line[64], class_name[IT_EVENT_CLASS_MAX + 1], direction[16];
    int64_t last_id, count;
} count_entry;

/* One MQTT message awaiting its PUBACK: which event of the window it belongs to. */
typedef struct mqtt_msg {
    int mid;
    uint64_t seq; /* the event's sequence number in the window */
} mqtt_msg;

struct it_publisher {
    it_publisher_params prm;
    const pub_ops *ops;
    it_store *st;
    pthread_t thread;
    atomic_int stop;
    int wake_r, wake_w; /* a non-blocking pipe: a byte in it means "look at the outbox" */
    char err[256];      /* the thread's last failure, before it goes to stats */
    uint64_t rng;
    double pending_at;
    it_store_event *batch; /* prm.batch events */
    /* stats, under mu */
    pthread_mutex_t mu;
    it_publisher_stats stats;
    char logged_err[256];
    double logged_at;
    /* line counts (the thread's own) */
    count_entry *counts;
    int n_counts;
    /* MQTT session state (the thread's own) */
    struct mosquitto *mq;
    int connack;           /* -1 while waiting for CONNACK */
    int lost;              /* on_disconnect ran */
    int avail_mid, avail_acked;
    char mq_log[160];      /* the library's first error line of this connection (TLS) */
    /* the window: events sent and not yet acknowledged, in id order, as a ring */
    int64_t *win_id;
    int *win_left;         /* messages of the event still awaiting their PUBACK */
    double *win_ms;        /* when the event was sent */
    uint64_t win_head_seq; /* sequence number of the ring's head */
    int win_n;
    mqtt_msg *msgs;        /* messages in flight (unordered) */
    int n_msgs;
    int64_t last_sent;     /* the highest id sent in this session */
    double next_fetch;     /* the next poll of the outbox */
    int want;              /* fetch as soon as the window has room (woken, polled, or
                            * the last fetch was cut short by the window) */
    int64_t *ack_ids;
    /* Redis */
    redisContext *rc;
};

/* ---- shared helpers ---- */

static double jitter(it_publisher *p, double ms) {
    /* xorshift64*: a jitter needs no quality, only not to be in step with other servers. */
    p->rng ^= p->rng >> 12, p->rng ^= p->rng << 25, p->rng ^= p->rng >> 27;
    double u = (double)((p->rng * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
    double d = ms * (0.75 + 0.5 * u);
    return d > p->prm.backoff_max_ms ? p->prm.backoff_max_ms : d;
}

static void seterr(it_publisher *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void seterr(it_publisher *p, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err, sizeof p->err, fmt, ap);
    va_end(ap);
}

/* Count p->err as an error and log it, a repeated one at most once a minute (a broker
 * down for an hour must not fill the log). */
static void record_error(it_publisher *p, int level) {
    double now = it_now_ms();
    pthread_mutex_lock(&p->mu);
    p->stats.errors++;
    snprintf(p->stats.last_error, sizeof p->stats.last_error, "%s", p->err);
    int repeat = !strcmp(p->logged_err, p->err) && now - p->logged_at < LOG_REPEAT_MS;
    if (!repeat) snprintf(p->logged_err, sizeof p->logged_err, "%s", p->err), p->logged_at = now;
    pthread_mutex_unlock(&p->mu);
    it_log(repeat ? ITSCAM_LOG_DEBUG : level, "publish %s: %s", p->prm.target, p->err);
}

static void set_connected(it_publisher *p, int up) {
    pthread_mutex_lock(&p->mu);
    p->stats.connected = up;
    if (up) p->stats.connects++, p->logged_err[0] = 0;
    pthread_mutex_unlock(&p->mu);
}

static void add_sent(it_publisher *p, int n) {
    pthread_mutex_lock(&p->mu);
    p->stats.sent += (uint64_t)n;
    pthread_mutex_unlock(&p->mu);
}

static void refresh_pending(it_publisher *p) {
    double now = it_now_ms();
    if (now < p->pending_at) return;
    p->pending_at = now + PENDING_REFRESH_MS;
    int64_t n;
    if (it_outbox_pending(p->st, p->prm.target, &n) != ITSCAM_OK) return;
    pthread_mutex_lock(&p->mu);
    p->stats.pending = n;
    pthread_mutex_unlock(&p->mu);
}

/* Empty the wake pipe; 1 when anything was in it. */
static int drain_wake(it_publisher *p) {
    char buf[64];
    int any = 0;
    while (read(p->wake_r, buf, sizeof buf) > 0) any = 1;
    return any;
}

/* Sleep up to ms, or until woken; 1 when woken. */
static int wait_wake(it_publisher *p, double ms) {
    struct pollfd f = { .fd = p->wake_r, .events = POLLIN };
    int r = poll(&f, 1, ms < 0 ? 0 : (int)(ms + 0.999));
    return r > 0 ? drain_wake(p) : 0;
}

void it_publisher_wake(it_publisher *p) {
    if (!p) return;
    char c = 1;
    /* A full pipe already says "wake up": EAGAIN is as good as success. */
    ssize_t r = write(p->wake_w, &c, 1);
    (void)r;
}

/* The JSON text of an event (malloc'd), NULL when out of memory. */
static char *event_text(const it_store_event *e) {
    json_t *j = it_store_event_json(e);
    char *t = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    return t;
}

/* ---- MQTT topics ---- */

/* One topic segment from event data: wildcards, separators and control characters become
 * '_', and a segment that is not valid UTF-8 loses every byte above 0x7f too (a broker
 * refuses such topics). An empty segment is "_". */
static void topic_seg(char *dst, size_t cap, const char *src) {
    size_t n = 0;
    for (const char *s = src; *s && n + 1 < cap && n < TOPIC_SEG_MAX; s++) {
        unsigned char c = (unsigned char)*s;
        dst[n++] = (c < 0x20 || c == 0x7f || c == '+' || c == '#' || c == '/') ? '_' : (char)c;
    }
    /* A cut may split a multi-byte character: drop its lead and continuation bytes. */
    if (n && (unsigned char)dst[n - 1] >= 0x80) {
        size_t k = n;
        while (k > 0 && ((unsigned char)dst[k - 1] & 0xc0) == 0x80) k--;
        if (k > 0 && (unsigned char)dst[k - 1] >= 0xc0) {
            int need = (unsigned char)dst[k - 1] >= 0xf0 ? 4 : (unsigned char)dst[k - 1] >= 0xe0 ? 3 : 2;
            if ((int)(n - (k - 1)) < need) n = k - 1;
        }
    }
    dst[n] = 0;
    if (mosquitto_validate_utf8(dst, (int)n) != MOSQ_ERR_SUCCESS)
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)dst[i] >= 0x80) dst[i] = '_';
    if (!n && cap > 1) dst[0] = '_', dst[1] = 0;
}

/* ---- line counts ---- */

static uint64_t fnv(uint64_t h, const char *s) {
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return (h ^ 0xff) * 1099511628211ULL; /* a separator, so ("ab","c") != ("a","bc") */
}

/* The running count of e's key once e is counted, or -1 when it cannot be read. */
static int64_t line_count(it_publisher *p, const it_store_event *e, const char *line, const char *dir) {
    uint64_t h = fnv(fnv(fnv(fnv(1469598103934665603ULL, e->camera), line), e->class_name), dir);
    count_entry *c = NULL;
    for (int i = 0; i < p->n_counts && !c; i++)
        if (p->counts[i].hash == h && !strcmp(p->counts[i].camera, e->camera) && !strcmp(p->counts[i].line, line) &&
            !strcmp(p->counts[i].class_name, e->class_name) && !strcmp(p->counts[i].direction, dir))
            c = &p->counts[i];
    /* Newer than what the key last counted: one more. Otherwise (a new key, or an event
     * re-sent after a reconnection) the store says what the count was at that event. */
    if (c && e->id > c->last_id) {
        c->last_id = e->id;
        return ++c->count;
    }
    int64_t n;
    if (it_store_line_count(p->st, e->camera, line, e->class_name, dir, e->id, &n) != ITSCAM_OK) {
        seterr(p, "reading a line count: %s", itscam_last_error());
        record_error(p, ITSCAM_LOG_ERROR);
        return -1;
    }
    if (c) return n; /* a re-send: the entry keeps its newer value */
    if (p->n_counts == COUNT_CACHE) p->n_counts = 0; /* forget all; the store has the truth */
    c = &p->counts[p->n_counts++];
    c->hash = h;
    snprintf(c->camera, sizeof c->camera, "%s", e->camera);
    snprintf(c->line, sizeof c->line, "%s", line);
    snprintf(c->class_name, sizeof c->class_name, "%s", e->class_name);
    snprintf(c->direction, sizeof c->direction, "%s", dir);
    c->last_id = e->id, c->count = n;
    return n;
}

/* details' string (or integer, for a line id) member key into buf; 0, or -1 when absent. */
static int detail_text(json_t *d, const char *key, char *buf, size_t n) {
    json_t *v = json_object_get(d, key);
    if (json_is_string(v)) snprintf(buf, n, "%s", json_string_value(v));
    else if (json_is_integer(v)) snprintf(buf, n, "%lld", (long long)json_integer_value(v));
    else return -1;
    return 0;
}

/* ---- MQTT ---- */

static void on_connect(struct mosquitto *m, void *obj, int rc) {
    (void)m;
    ((it_publisher *)obj)->connack = rc;
}

static void on_disconnect(struct mosquitto *m, void *obj, int rc) {
    (void)m, (void)rc;
    ((it_publisher *)obj)->lost = 1;
}

/* libmosquitto says why a TLS handshake failed only in its log ("OpenSSL Error[0]:
 * error:0A000086:SSL routines::certificate verify failed", "Unable to load CA
 * certificates..."); its return code is a bare MOSQ_ERR_TLS. Its error lines never hold
 * the password. */
static void on_log(struct mosquitto *m, void *obj, int level, const char *str) {
    (void)m;
    it_publisher *p = obj;
    if (level == MOSQ_LOG_ERR && !p->mq_log[0] && str) snprintf(p->mq_log, sizeof p->mq_log, "%s", str);
}

static void on_publish(struct mosquitto *m, void *obj, int mid) {
    (void)m;
    it_publisher *p = obj;
    if (mid == p->avail_mid) p->avail_acked = 1;
    for (int i = 0; i < p->n_msgs; i++) {
        if (p->msgs[i].mid != mid) continue;
        uint64_t seq = p->msgs[i].seq;
        if (seq - p->win_head_seq < (uint64_t)p->win_n) p->win_left[seq % (uint64_t)p->prm.window]--;
        p->msgs[i] = p->msgs[--p->n_msgs];
        return;
    }
}

static int mq_fail(it_publisher *p, const char *what, int rc) {
    if (rc == MOSQ_ERR_TLS && p->mq_log[0]) {
        /* OpenSSL's reason is what follows the last ':' of its error line. */
        const char *why = strrchr(p->mq_log, ':');
        why = why && why[1] ? why + 1 : p->mq_log;
        while (*why == ' ') why++;
        char hint[160] = "";
        if (strstr(why, "certificate verify failed"))
            snprintf(hint, sizeof hint, " (the broker's certificate is not signed by %s)",
                     p->prm.tls.ca_file[0] ? "ca_file" : "a system CA; a private CA needs ca_file");
        else if (strstr(why, "host name verification failed"))
            snprintf(hint, sizeof hint, " (the broker's certificate does not name %.64s; tls_insecure skips this check)",
                     p->prm.host);
        size_t n = strlen(why);
        if (n && why[n - 1] == '.') n--; /* libmosquitto's own lines end with one */
        seterr(p, "mqtt %s:%d: %s: TLS: %.*s%s", p->prm.host, p->prm.port, what, (int)(n > 100 ? 100 : n), why, hint);
        return -1;
    }
    seterr(p, "mqtt %s:%d: %s: %s", p->prm.host, p->prm.port, what,
           rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
    return -1;
}

/* One poll of the socket and the wake pipe (up to ms), then the library's reads, writes
 * and keepalive. 0, or -1 when the connection is gone. *woken (may be NULL) is set when
 * the pipe had a byte. */
static int mq_io(it_publisher *p, double ms, int *woken) {
    struct mosquitto *m = p->mq;
    int fd = mosquitto_socket(m);
    if (fd < 0) return mq_fail(p, "connection lost", MOSQ_ERR_NO_CONN);
    struct pollfd f[2] = { { .fd = fd, .events = POLLIN | (mosquitto_want_write(m) ? POLLOUT : 0) },
                           { .fd = p->wake_r, .events = POLLIN } };
    int r = poll(f, 2, ms < 0 ? 0 : (int)(ms + 0.999));
    if (r > 0 && f[1].revents && drain_wake(p) && woken) *woken = 1;
    int rc = MOSQ_ERR_SUCCESS;
    if (r > 0 && (f[0].revents & (POLLIN | POLLERR | POLLHUP))) rc = mosquitto_loop_read(m, 1);
    if (rc == MOSQ_ERR_SUCCESS && mosquitto_want_write(m)) rc = mosquitto_loop_write(m, 1);
    if (rc == MOSQ_ERR_SUCCESS) rc = mosquitto_loop_misc(m);
    const char *what = p->connack < 0 ? "connecting" : "connection lost";
    if (rc != MOSQ_ERR_SUCCESS) return mq_fail(p, what, rc);
    if (p->lost) return mq_fail(p, what, MOSQ_ERR_CONN_LOST);
    return 0;
}

static void mq_destroy(it_publisher *p) {
    mosquitto_destroy(p->mq);
    p->mq = NULL;
    p->n_msgs = 0, p->win_n = 0;
}

static int mq_publish_avail(it_publisher *p, const char *state) {
    char topic[IT_PUB_NAME_MAX + 16];
    snprintf(topic, sizeof topic, "%s/available", p->prm.prefix);
    p->avail_acked = 0;
    int rc = mosquitto_publish(p->mq, &p->avail_mid, topic, (int)strlen(state), state, 1, true);
    return rc == MOSQ_ERR_SUCCESS ? 0 : mq_fail(p, "publishing availability", rc);
}

static pthread_once_t mosq_once = PTHREAD_ONCE_INIT;
static void mosq_init(void) { mosquitto_lib_init(); }

static int mq_connect(it_publisher *p) {
    pthread_once(&mosq_once, mosq_init);
    const it_publisher_params *prm = &p->prm;
    char id[IT_PUB_NAME_MAX + 1];
    if (prm->client_id[0]) {
        snprintf(id, sizeof id, "%s", prm->client_id);
    } else {
        char host[64] = "";
        gethostname(host, sizeof host - 1);
        snprintf(id, sizeof id, "itscam-%s", host[0] ? host : "server");
    }
    /* A clean session every time, and a fresh library instance per connection: what was
     * not acknowledged is re-sent from the outbox, never from the library's memory, so
     * there is one source of re-sends and one order. */
    p->mq = mosquitto_new(id, true, p);
    if (!p->mq) return seterr(p, "mqtt: cannot create a client: %s", strerror(errno)), -1;
    struct mosquitto *m = p->mq;
    p->connack = -1, p->lost = 0, p->avail_mid = -1, p->n_msgs = 0, p->win_n = 0, p->last_sent = 0;
    p->mq_log[0] = 0;
    p->want = 1, p->next_fetch = 0;
    mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
    mosquitto_max_inflight_messages_set(m, (unsigned)prm->window + 8);
    mosquitto_connect_callback_set(m, on_connect);
    mosquitto_disconnect_callback_set(m, on_disconnect);
    mosquitto_publish_callback_set(m, on_publish);
    mosquitto_log_callback_set(m, on_log);
    int rc;
    char will[IT_PUB_NAME_MAX + 16];
    snprintf(will, sizeof will, "%s/available", prm->prefix);
    if ((rc = mosquitto_will_set(m, will, 7, "offline", 1, true)) != MOSQ_ERR_SUCCESS)
        return mq_fail(p, "last will", rc), mq_destroy(p), -1;
    if ((prm->username[0] || prm->password[0]) &&
        (rc = mosquitto_username_pw_set(m, prm->username[0] ? prm->username : NULL,
                                        prm->password[0] ? prm->password : NULL)) != MOSQ_ERR_SUCCESS)
        return mq_fail(p, "credentials", rc), mq_destroy(p), -1;
    if (prm->tls.enabled) {
        const char *ca = prm->tls.ca_file[0] ? prm->tls.ca_file : NULL;
        rc = mosquitto_tls_set(m, ca, ca ? NULL : "/etc/ssl/certs", prm->tls.cert_file[0] ? prm->tls.cert_file : NULL,
                               prm->tls.key_file[0] ? prm->tls.key_file : NULL, NULL);
        if (rc == MOSQ_ERR_SUCCESS) rc = mosquitto_tls_insecure_set(m, prm->tls.insecure != 0);
        if (rc != MOSQ_ERR_SUCCESS) return mq_fail(p, "TLS setup", rc), mq_destroy(p), -1;
    }
    if ((rc = mosquitto_connect_async(m, prm->host, prm->port, prm->keepalive_s)) != MOSQ_ERR_SUCCESS)
        return mq_fail(p, "connect", rc), mq_destroy(p), -1;
    double deadline = it_now_ms() + prm->io_timeout_ms;
    while (p->connack < 0) {
        if (atomic_load(&p->stop)) return seterr(p, "mqtt: stopped while connecting"), mq_destroy(p), -1;
        if (it_now_ms() > deadline) {
            seterr(p, "mqtt %s:%d: no CONNACK within %.0f ms", prm->host, prm->port, prm->io_timeout_ms);
            return mq_destroy(p), -1;
        }
        if (mq_io(p, 100, NULL)) {
            /* A refusal comes with the broker closing the socket: the CONNACK's reason
             * ("not authorised") says more than the closed connection. */
            if (p->connack > 0) break;
            return mq_destroy(p), -1;
        }
    }
    if (p->connack != 0) {
        seterr(p, "mqtt %s:%d: refused: %s", prm->host, prm->port, mosquitto_connack_string(p->connack));
        return mq_destroy(p), -1;
    }
    /* The log is wanted for the handshake only: unhooked, the library stops formatting a
     * line for every packet. */
    mosquitto_log_callback_set(m, NULL);
    if (mq_publish_avail(p, "online")) return mq_destroy(p), -1;
    return 0;
}

/* Send one message of the event with window sequence seq; 0, -1 when the connection is
 * gone. A message the library refuses for what it holds is counted and skipped: one bad
 * event must not hold the outbox up forever. */
static int mq_send(it_publisher *p, uint64_t seq, int slot, const char *topic, const char *payload, int retain) {
    int mid = 0;
    int rc = mosquitto_publish(p->mq, &mid, topic, (int)strlen(payload), payload, 1, retain != 0);
    if (rc == MOSQ_ERR_NO_CONN || rc == MOSQ_ERR_CONN_LOST || rc == MOSQ_ERR_ERRNO || rc == MOSQ_ERR_NOMEM)
        return mq_fail(p, "publish", rc);
    if (rc != MOSQ_ERR_SUCCESS) {
        seterr(p, "mqtt: a message to %s refused: %s", topic, mosquitto_strerror(rc));
        record_error(p, ITSCAM_LOG_WARN);
        return 0;
    }
    p->msgs[p->n_msgs++] = (mqtt_msg){ .mid = mid, .seq = seq };
    p->win_left[slot]++;
    return 0;
}

/* Publish every message of event e (already given its window slot). */
static int mq_send_event(it_publisher *p, const it_store_event *e, uint64_t seq, int slot) {
    const char *pre = p->prm.prefix;
    char *json = event_text(e);
    if (!json) return seterr(p, "mqtt: out of memory"), -1;
    char topic[IT_PUB_NAME_MAX + 5 * (TOPIC_SEG_MAX + 2)];
    snprintf(topic, sizeof topic, "%s/events", pre);
    int rc = mq_send(p, seq, slot, topic, json, 0);
    free(json);
    if (rc || (strcmp(e->type, "line_cross") && strcmp(e->type, "camera_state"))) return rc;
    json_t *d = e->details[0] ? json_loads(e->details, 0, NULL) : NULL;
    char cam[TOPIC_SEG_MAX + 1];
    topic_seg(cam, sizeof cam, e->camera);
    if (!strcmp(e->type, "line_cross")) {
        char line[64], dir[16];
        if (d && !detail_text(d, "line", line, sizeof line) && !detail_text(d, "direction", dir, sizeof dir)) {
            int64_t n = line_count(p, e, line, dir);
            if (n >= 0) {
                char sl[TOPIC_SEG_MAX + 1], sc[TOPIC_SEG_MAX + 1], sd[TOPIC_SEG_MAX + 1], val[24];
                topic_seg(sl, sizeof sl, line);
                topic_seg(sc, sizeof sc, e->class_name);
                topic_seg(sd, sizeof sd, dir);
                snprintf(topic, sizeof topic, "%s/%s/%s/%s/%s", pre, cam, sl, sc, sd);
                snprintf(val, sizeof val, "%lld", (long long)n);
                rc = mq_send(p, seq, slot, topic, val, 1);
            }
        }
    } else {
        char state[64];
        if (d && !detail_text(d, "state", state, sizeof state)) {
            snprintf(topic, sizeof topic, "%s/%s/state", pre, cam);
            rc = mq_send(p, seq, slot, topic, state, 1);
        }
    }
    json_decref(d);
    return rc;
}

/* Events the window can take now: up to two messages each (the event, and a count or a
 * state), within the window's events and the batch. */
static int mq_room(const it_publisher *p) {
    int W = p->prm.window, room = (W - p->n_msgs) / 2;
    if (room > W - p->win_n) room = W - p->win_n;
    return room > p->prm.batch ? p->prm.batch : room;
}

static int mq_pump(it_publisher *p) {
    const it_publisher_params *prm = &p->prm;
    int W = prm->window;
    double now = it_now_ms();
    if (now >= p->next_fetch) p->want = 1;
    /* With room and something to fetch, do not sleep; with a full window, sleep until a
     * PUBACK (the socket) or poll_ms. */
    int room = mq_room(p);
    double wait = prm->poll_ms;
    if (room > 0) wait = p->want ? 0 : p->next_fetch - now;
    if (wait > prm->poll_ms) wait = prm->poll_ms;
    int woken = 0;
    if (mq_io(p, wait, &woken)) return -1;
    if (woken) p->want = 1;
    /* The acknowledged prefix of the window leaves the outbox. */
    int k = 0;
    while (p->win_n > 0) {
        int slot = (int)(p->win_head_seq % (uint64_t)W);
        if (p->win_left[slot] > 0) break;
        p->ack_ids[k++] = p->win_id[slot];
        p->win_head_seq++, p->win_n--;
    }
    if (k) {
        /* A failed delete leaves rows that the next session re-sends: duplicates, never
         * a loss, so the session is restarted rather than trusted. */
        if (it_outbox_ack(p->st, prm->target, p->ack_ids, k) != ITSCAM_OK)
            return seterr(p, "acknowledging: %s", itscam_last_error()), -1;
        add_sent(p, k);
    }
    if (p->win_n > 0 && it_now_ms() - p->win_ms[p->win_head_seq % (uint64_t)W] > prm->io_timeout_ms) {
        seterr(p, "mqtt %s:%d: no PUBACK within %.0f ms", prm->host, prm->port, prm->io_timeout_ms);
        return -1;
    }
    room = mq_room(p);
    if (!p->want || room <= 0) return 0;
    int n;
    if (it_outbox_fetch(p->st, prm->target, p->last_sent, room, p->batch, &n) != ITSCAM_OK)
        return seterr(p, "reading the outbox: %s", itscam_last_error()), -1;
    p->want = n == room; /* cut short by the room: more may wait */
    p->next_fetch = it_now_ms() + prm->poll_ms;
    for (int i = 0; i < n; i++) {
        uint64_t seq = p->win_head_seq + (uint64_t)p->win_n;
        int slot = (int)(seq % (uint64_t)W);
        p->win_id[slot] = p->batch[i].id, p->win_left[slot] = 0, p->win_ms[slot] = it_now_ms();
        p->win_n++;
        p->last_sent = p->batch[i].id;
        if (mq_send_event(p, &p->batch[i], seq, slot)) return -1;
    }
    return 0;
}

static void mq_close(it_publisher *p, int clean) {
    if (!p->mq) return;
    if (clean && !p->lost) {
        /* "offline" on purpose, not by the will: the will is for crashes. */
        if (mq_publish_avail(p, "offline") == 0) {
            double until = it_now_ms() + OFFLINE_WAIT_MS;
            while (!p->avail_acked && it_now_ms() < until)
                if (mq_io(p, 20, NULL)) break;
        }
        if (!p->lost && mosquitto_disconnect(p->mq) == MOSQ_ERR_SUCCESS && mosquitto_want_write(p->mq))
            mosquitto_loop_write(p->mq, 1);
    }
    mq_destroy(p);
}

static const pub_ops mqtt_ops = { .name = "mqtt", .connect = mq_connect, .pump = mq_pump, .close = mq_close };

/* ---- Redis ---- */

static struct timeval tv_ms(double ms) {
    return (struct timeval){ .tv_sec = (time_t)(ms / 1e3), .tv_usec = (suseconds_t)((long long)ms % 1000 * 1000) };
}

static int rd_fail(it_publisher *p, const char *what) {
    seterr(p, "redis %s:%d: %s: %s", p->prm.host, p->prm.port, what,
           p->rc && p->rc->err ? p->rc->errstr : "connection lost");
    return -1;
}

static void rd_close(it_publisher *p, int clean) {
    (void)clean;
    if (p->rc) redisFree(p->rc);
    p->rc = NULL;
}

/* A command that must answer +OK. The reply's text is shown, never the arguments
 * (AUTH's hold the password). */
static int rd_simple(it_publisher *p, const char *what, int argc, const char **argv) {
    redisReply *r = redisCommandArgv(p->rc, argc, argv, NULL);
    if (!r) return rd_fail(p, what);
    int ok = r->type == REDIS_REPLY_STATUS;
    if (!ok)
        seterr(p, "redis %s:%d: %s refused: %.120s", p->prm.host, p->prm.port, what,
               r->type == REDIS_REPLY_ERROR && r->str ? r->str : "unexpected reply");
    freeReplyObject(r);
    return ok ? 0 : -1;
}

static int rd_connect(it_publisher *p) {
    const it_publisher_params *prm = &p->prm;
    p->rc = redisConnectWithTimeout(prm->host, prm->port, tv_ms(prm->io_timeout_ms));
    if (!p->rc || p->rc->err) {
        rd_fail(p, "connect");
        rd_close(p, 0);
        return -1;
    }
    redisSetTimeout(p->rc, tv_ms(prm->io_timeout_ms));
    redisEnableKeepAlive(p->rc);
    if (prm->password[0]) {
        /* AUTH user password (Redis 6 ACLs) or AUTH password (requirepass). */
        const char *a[3] = { "AUTH" };
        int k = 1;
        if (prm->username[0]) a[k++] = prm->username;
        a[k++] = prm->password;
        if (rd_simple(p, "AUTH", k, a)) return rd_close(p, 0), -1;
    }
    if (prm->db) {
        char db[16];
        snprintf(db, sizeof db, "%d", prm->db);
        const char *a[] = { "SELECT", db };
        if (rd_simple(p, "SELECT", 2, a)) return rd_close(p, 0), -1;
    } else if (!prm->password[0]) {
        /* Nothing sent yet: a server that wants a password (NOAUTH) must say so now, not
         * after the session counts as up (Redis 7 even answers an unauthenticated XADD
         * with "Protocol error: unauthenticated multibulk length"). */
        const char *a[] = { "PING" };
        if (rd_simple(p, "PING", 1, a)) return rd_close(p, 0), -1;
    }
    return 0;
}

static int rd_pump(it_publisher *p) {
    const it_publisher_params *prm = &p->prm;
    int n;
    if (it_outbox_fetch(p->st, prm->target, 0, prm->batch, p->batch, &n) != ITSCAM_OK)
        return seterr(p, "reading the outbox: %s", itscam_last_error()), -1;
    if (!n) {
        wait_wake(p, prm->poll_ms);
        return 0;
    }
    char maxlen[24], id[24];
    snprintf(maxlen, sizeof maxlen, "%lld", prm->maxlen);
    for (int i = 0; i < n; i++) {
        const it_store_event *e = &p->batch[i];
        char *json = event_text(e);
        if (!json) return seterr(p, "redis: out of memory"), -1;
        snprintf(id, sizeof id, "%lld", (long long)e->id);
        const char *a[14];
        int k = 0;
        a[k++] = "XADD", a[k++] = prm->stream;
        if (prm->maxlen > 0) a[k++] = "MAXLEN", a[k++] = "~", a[k++] = maxlen;
        a[k++] = "*", a[k++] = "id", a[k++] = id, a[k++] = "camera", a[k++] = e->camera, a[k++] = "type",
        a[k++] = e->type, a[k++] = "json", a[k++] = json;
        int rc = redisAppendCommandArgv(p->rc, k, a, NULL);
        free(json);
        if (rc != REDIS_OK) return rd_fail(p, "XADD");
    }
    /* The replies come in order: the acknowledged prefix is those before the first
     * failure. Later replies are not read: the connection is dropped, and what they
     * acknowledged is re-sent (at least once). */
    int ok = 0, failed = 0;
    for (; ok < n; ok++) {
        redisReply *r = NULL;
        if (redisGetReply(p->rc, (void **)&r) != REDIS_OK || !r) {
            failed = rd_fail(p, "XADD reply");
            break;
        }
        if (r->type == REDIS_REPLY_ERROR) {
            seterr(p, "redis %s:%d: XADD refused: %.120s", prm->host, prm->port, r->str ? r->str : "");
            failed = -1;
        }
        freeReplyObject(r);
        if (failed) break;
        p->ack_ids[ok] = p->batch[ok].id;
    }
    if (ok) {
        if (it_outbox_ack(p->st, prm->target, p->ack_ids, ok) != ITSCAM_OK)
            return seterr(p, "acknowledging: %s", itscam_last_error()), -1;
        add_sent(p, ok);
    }
    if (failed) return -1;
    /* A full batch means more may wait: go on at once. */
    if (n < prm->batch) wait_wake(p, prm->poll_ms);
    return 0;
}

static const pub_ops redis_ops = { .name = "redis", .connect = rd_connect, .pump = rd_pump, .close = rd_close };

/* ---- the thread ---- */

static void *pub_main(void *arg) {
    it_publisher *p = arg;
    /* hiredis writes with write(): a Redis that died would raise SIGPIPE and end a host
     * that does not ignore it. Blocked on this thread, it becomes an EPIPE error. */
    sigset_t pipe_set;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, NULL);
    double backoff = p->prm.backoff_min_ms, next_try = 0;
    int up = 0;
    while (!atomic_load(&p->stop)) {
        refresh_pending(p);
        if (!up) {
            double now = it_now_ms();
            if (now < next_try) {
                double w = next_try - now;
                wait_wake(p, w > 250 ? 250 : w); /* wakes do not hurry a reconnection */
                continue;
            }
            if (p->ops->connect(p) == 0) {
                up = 1;
                backoff = p->prm.backoff_min_ms;
                set_connected(p, 1);
                it_log(ITSCAM_LOG_INFO, "publish %s: connected to %s:%d", p->prm.target, p->prm.host, p->prm.port);
                continue;
            }
            if (atomic_load(&p->stop)) break;
            record_error(p, ITSCAM_LOG_WARN);
        } else {
            if (p->ops->pump(p) == 0) continue;
            p->ops->close(p, 0);
            up = 0;
            set_connected(p, 0);
            record_error(p, ITSCAM_LOG_WARN);
        }
        next_try = it_now_ms() + jitter(p, backoff);
        backoff = backoff * 2 > p->prm.backoff_max_ms ? p->prm.backoff_max_ms : backoff * 2;
    }
    if (up) p->ops->close(p, 1);
    set_connected(p, 0);
    return NULL;
}

/* ---- parameters ---- */

it_publisher_params it_publisher_default_params(it_pub_kind kind) {
    it_publisher_params p;
    memset(&p, 0, sizeof p);
    p.kind = kind;
    snprintf(p.target, sizeof p.target, "%s", kind == IT_PUB_REDIS ? "redis" : "mqtt");
    p.port = kind == IT_PUB_REDIS ? 6379 : 1883;
    snprintf(p.prefix, sizeof p.prefix, "itscam");
    p.keepalive_s = 30;
    snprintf(p.stream, sizeof p.stream, "itscam:events");
    p.maxlen = 100000;
    p.batch = 100;
    p.window = 256;
    p.poll_ms = 200;
    p.backoff_min_ms = 1000;
    p.backoff_max_ms = 30000;
    p.io_timeout_ms = 10000;
    return p;
}

static int terminated(const char *s, size_t cap) { return memchr(s, 0, cap) != NULL; }

itscam_status it_publisher_check(const it_publisher_params *p) {
    if (!p) return it_err(ITSCAM_ERR_INVALID_ARG, "publish: no parameters");
    const char *k = p->kind == IT_PUB_REDIS ? "redis" : p->kind == IT_PUB_MQTT ? "mqtt" : NULL;
    if (!k) return it_err(ITSCAM_ERR_INVALID_ARG, "publish: unknown broker kind %d", (int)p->kind);
#define T(f) terminated(p->f, sizeof p->f)
    if (!T(target) || !T(host) || !T(username) || !T(password) || !T(tls.ca_file) || !T(tls.cert_file) ||
        !T(tls.key_file) || !T(client_id) || !T(prefix) || !T(stream))
        return it_err(ITSCAM_ERR_INVALID_ARG, "%s: a text field is not terminated", k);
#undef T
    if (!p->target[0]) return it_err(ITSCAM_ERR_INVALID_ARG, "%s: no outbox target name", k);
    if (!p->host[0]) return it_err(ITSCAM_ERR_INVALID_ARG, "%s: host is empty", k);
    if (p->port < 1 || p->port > 65535) return it_err(ITSCAM_ERR_INVALID_ARG, "%s: port %d is not 1..65535", k, p->port);
    if (p->batch < 1 || p->batch > IT_OUTBOX_FETCH_MAX || p->window < 2 || p->window > 65535 ||
        !(p->poll_ms >= 1) || !(p->backoff_min_ms >= 1) || !(p->backoff_max_ms >= p->backoff_min_ms) ||
        !(p->io_timeout_ms >= 100))
        return it_err(ITSCAM_ERR_INVALID_ARG, "%s: bad delivery settings (batch, window, poll, backoff, timeout)", k);
    if ((p->tls.cert_file[0] != 0) != (p->tls.key_file[0] != 0))
        return it_err(ITSCAM_ERR_INVALID_ARG, "%s: a TLS client certificate needs both cert_file and key_file", k);
    if (p->kind == IT_PUB_MQTT) {
        if (!p->prefix[0] || strpbrk(p->prefix, "+#") || p->prefix[strlen(p->prefix) - 1] == '/' ||
            mosquitto_validate_utf8(p->prefix, (int)strlen(p->prefix)) != MOSQ_ERR_SUCCESS)
            return it_err(ITSCAM_ERR_INVALID_ARG,
                          "mqtt: prefix '%s' must be non-empty UTF-8 without '+', '#' or a trailing '/'", p->prefix);
        if (p->keepalive_s < 5 || p->keepalive_s > 65535)
            return it_err(ITSCAM_ERR_INVALID_ARG, "mqtt: keepalive_s %d is not 5..65535", p->keepalive_s);
        if (p->password[0] && !p->username[0])
            return it_err(ITSCAM_ERR_INVALID_ARG, "mqtt: a password needs a username");
    } else {
        if (p->tls.enabled)
            return it_err(ITSCAM_ERR_UNSUPPORTED,
                          "redis: TLS is not available: Debian 12's hiredis 0.14 has no TLS support (hiredis_ssl "
                          "came with hiredis 1.0); reach Redis over a trusted network or through a TLS tunnel "
                          "(stunnel, spiped)");
        if (!p->stream[0]) return it_err(ITSCAM_ERR_INVALID_ARG, "redis: stream is empty");
        if (p->db < 0 || p->db > 65535) return it_err(ITSCAM_ERR_INVALID_ARG, "redis: db %d is not 0..65535", p->db);
        if (p->maxlen < 0) return it_err(ITSCAM_ERR_INVALID_ARG, "redis: maxlen must be 0 (no trimming) or more");
        if (p->username[0] && !p->password[0])
            return it_err(ITSCAM_ERR_INVALID_ARG, "redis: a username needs a password");
    }
    return ITSCAM_OK;
}

/* ---- start, stats, stop ---- */

static void pub_free(it_publisher *p) {
    if (p->wake_r >= 0) close(p->wake_r);
    if (p->wake_w >= 0) close(p->wake_w);
    pthread_mutex_destroy(&p->mu);
    it_free(p->batch), it_free(p->counts), it_free(p->win_id), it_free(p->win_left), it_free(p->win_ms);
    it_free(p->msgs), it_free(p->ack_ids);
    /* The password leaves no copy behind in freed memory. */
    memset(p->prm.password, 0, sizeof p->prm.password);
    it_free(p);
}

itscam_status it_publisher_start(it_store *st, const it_publisher_params *prm, it_publisher **out) {
    *out = NULL;
    if (!st) return it_err(ITSCAM_ERR_INVALID_ARG, "publish: no store");
    itscam_status s = it_publisher_check(prm);
    if (s != ITSCAM_OK) return s;
    it_publisher *p = it_calloc(1, sizeof *p);
    if (!p) return it_err(ITSCAM_ERR_NOMEM, "publish: out of memory");
    p->prm = *prm;
    p->st = st;
    p->ops = prm->kind == IT_PUB_REDIS ? &redis_ops : &mqtt_ops;
    p->wake_r = p->wake_w = -1;
    pthread_mutex_init(&p->mu, NULL);
    p->rng = (uint64_t)(it_now_ms() * 1e3) ^ (uint64_t)(uintptr_t)p ^ 0x9e3779b97f4a7c15ULL;
    if (!p->rng) p->rng = 1;
    int W = prm->window, fds[2];
    size_t nack = (size_t)(prm->batch > W ? prm->batch : W);
    p->batch = it_malloc((size_t)prm->batch * sizeof *p->batch);
    p->counts = it_malloc(COUNT_CACHE * sizeof *p->counts);
    p->win_id = it_malloc((size_t)W * sizeof *p->win_id);
    p->win_left = it_malloc((size_t)W * sizeof *p->win_left);
    p->win_ms = it_malloc((size_t)W * sizeof *p->win_ms);
    p->msgs = it_malloc((size_t)W * sizeof *p->msgs);
    p->ack_ids = it_malloc(nack * sizeof *p->ack_ids);
    if (!p->batch || !p->counts || !p->win_id || !p->win_left || !p->win_ms || !p->msgs || !p->ack_ids) {
        pub_free(p);
        return it_err(ITSCAM_ERR_NOMEM, "publish %s: out of memory", prm->target);
    }
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC)) {
        s = it_err(ITSCAM_ERR_IO, "publish %s: pipe: %s", prm->target, strerror(errno));
        pub_free(p);
        return s;
    }
    p->wake_r = fds[0], p->wake_w = fds[1];
    if (pthread_create(&p->thread, NULL, pub_main, p)) {
        pub_free(p);
        return it_err(ITSCAM_ERR_INTERNAL, "publish %s: cannot start its thread", prm->target);
    }
    *out = p;
    return ITSCAM_OK;
}

void it_publisher_stats_get(it_publisher *p, it_publisher_stats *s) {
    pthread_mutex_lock(&p->mu);
    *s = p->stats;
    pthread_mutex_unlock(&p->mu);
}

void it_publisher_stop(it_publisher *p) {
    if (!p) return;
    atomic_store(&p->stop, 1);
    it_publisher_wake(p);
    pthread_join(p->thread, NULL);
    pub_free(p);
}
