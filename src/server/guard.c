/* Connection guard: deadlines for slow clients and shedding when slots run out (guard.h). */
#include "server/guard.h"

#include "core/core.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

/* The watchdog's period: deadlines are enforced within a quarter second. */
#define TICK_MS 250
/* A connection still sending headers is shed only after this long, so that a client
 * that just connected to a full server gets the chance to send its request. */
#define SHED_MIN_AGE_MS 1000.0
/* How long a connection answered mid-upload keeps reading (and discarding) before it is
 * closed: closing with unread data would reset it before the client read the answer. */
#define LINGER_MS 2000.0

typedef enum { PH_HEADERS, PH_BODY, PH_BUSY, PH_STREAM, PH_LINGER } conn_phase;

struct srv_conn {
    srv_conn *prev, *next;
    int fd;
    pthread_t thread;        /* the pool thread that accepted it, and serves it */
    conn_phase phase;
    int kept_alive;          /* a request was answered before: the keep-alive deadline applies */
    int shut;                /* shut down by the watchdog, waiting for libmicrohttpd to close it */
    double t_phase;          /* when the phase began (ms) */
    double t_progress;       /* a stream's last write (ms) */
    long long body_bytes;
};

struct srv_guard {
    srv_guard_limits lim;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t th;
    int stop;
    srv_conn head;           /* circular list, oldest connection first */
    int open, streams;
    long long dropped_headers, dropped_body, dropped_stream, shed;
};

static void unlink_conn(srv_conn *cn) {
    cn->prev->next = cn->next;
    cn->next->prev = cn->prev;
}

/* The time after which cn is dropped, in ms; 0 when it has none. */
static double deadline_of(const srv_guard *g, const srv_conn *cn) {
    switch (cn->phase) {
    case PH_HEADERS:
        return cn->t_phase + 1e3 * (cn->kept_alive ? g->lim.keepalive_timeout_s : g->lim.header_timeout_s);
    case PH_BODY:
        if (g->lim.min_body_rate <= 0) return 0;
        return cn->t_phase + 1e3 * (g->lim.header_timeout_s + (double)cn->body_bytes / g->lim.min_body_rate);
    case PH_STREAM:
        return cn->t_progress + 1e3 * g->lim.stream_send_timeout_s;
    case PH_LINGER:
        return cn->t_phase + LINGER_MS;
    case PH_BUSY:
        break;
    }
    return 0;
}

/* Shut cn's socket: libmicrohttpd sees the connection fail and closes it (with its
 * CLOSED notification). Caller holds g->mu, so cn and its fd are still libmicrohttpd's. */
static void shut(srv_guard *g, srv_conn *cn, long long *counter) {
    (void)g;
    cn->shut = 1;
    (*counter)++;
    shutdown(cn->fd, SHUT_RDWR);
}

/* More than max_connections open: shed the oldest connections still sending headers. */
static void shed_excess(srv_guard *g, double now) {
    int live = 0;
    for (srv_conn *cn = g->head.next; cn != &g->head; cn = cn->next) live += !cn->shut;
    while (live > g->lim.max_connections) {
        srv_conn *oldest = NULL;
        for (srv_conn *cn = g->head.next; cn != &g->head; cn = cn->next)
            if (!cn->shut && cn->phase == PH_HEADERS && now - cn->t_phase >= SHED_MIN_AGE_MS &&
                (!oldest || cn->t_phase < oldest->t_phase))
                oldest = cn;
        if (!oldest) break;
        shut(g, oldest, &g->shed);
        live--;
    }
}

static void tick(srv_guard *g) {
    double now = it_now_ms();
    for (srv_conn *cn = g->head.next; cn != &g->head; cn = cn->next) {
        if (cn->shut) continue;
        double dl = deadline_of(g, cn);
        if (dl <= 0 || now < dl) continue;
        shut(g, cn, cn->phase == PH_HEADERS ? &g->dropped_headers
                    : cn->phase == PH_STREAM ? &g->dropped_stream
                                             : &g->dropped_body);
    }
    shed_excess(g, now);
}

static void *watchdog(void *arg) {
    srv_guard *g = arg;
    pthread_mutex_lock(&g->mu);
    while (!g->stop) {
        struct timespec ts;
        it_deadline_in(&ts, TICK_MS);
        pthread_cond_timedwait(&g->cv, &g->mu, &ts);
        if (!g->stop) tick(g);
    }
    pthread_mutex_unlock(&g->mu);
    return NULL;
}

srv_guard *srv_guard_start(const srv_guard_limits *l, char *err, size_t errlen) {
    srv_guard *g = it_calloc(1, sizeof *g);
    if (!g) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    g->lim = *l;
    g->head.next = g->head.prev = &g->head;
    pthread_mutex_init(&g->mu, NULL);
    it_cond_init_monotonic(&g->cv);
    int rc = pthread_create(&g->th, NULL, watchdog, g);
    if (rc != 0) {
        snprintf(err, errlen, "cannot start the connection watchdog: %s", strerror(rc));
        pthread_cond_destroy(&g->cv);
        pthread_mutex_destroy(&g->mu);
        it_free(g);
        return NULL;
    }
    return g;
}

void srv_guard_stop(srv_guard *g) {
    if (!g) return;
    pthread_mutex_lock(&g->mu);
    g->stop = 1;
    pthread_cond_signal(&g->cv);
    pthread_mutex_unlock(&g->mu);
    pthread_join(g->th, NULL);
    /* Normally empty: libmicrohttpd notified every close before it stopped. */
    while (g->head.next != &g->head) {
        srv_conn *cn = g->head.next;
        unlink_conn(cn);
        it_free(cn);
    }
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
    it_free(g);
}

void srv_guard_notify(void *cls, struct MHD_Connection *c, void **socket_context,
                      enum MHD_ConnectionNotificationCode code) {
    srv_guard *g = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        srv_conn *cn = ci ? it_calloc(1, sizeof *cn) : NULL;
        *socket_context = cn;
        if (!cn) return; /* untracked: libmicrohttpd's own timeout still applies */
        cn->fd = ci->connect_fd;
        cn->thread = pthread_self();
        cn->phase = PH_HEADERS;
        cn->t_phase = it_now_ms();
        pthread_mutex_lock(&g->mu);
        cn->prev = g->head.prev;
        cn->next = &g->head;
        g->head.prev->next = cn;
        g->head.prev = cn;
        g->open++;
        pthread_mutex_unlock(&g->mu);
        return;
    }
    srv_conn *cn = *socket_context;
    if (!cn) return;
    pthread_mutex_lock(&g->mu);
    unlink_conn(cn);
    g->open--;
    if (cn->phase == PH_STREAM) g->streams--;
    pthread_mutex_unlock(&g->mu);
    *socket_context = NULL;
    it_free(cn);
}

srv_conn *srv_guard_conn(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

/* Move cn to phase p now. */
static void set_phase(srv_guard *g, srv_conn *cn, conn_phase p) {
    if (!cn) return;
    pthread_mutex_lock(&g->mu);
    if (cn->phase == PH_LINGER) {
        pthread_mutex_unlock(&g->mu); /* a lingering connection only ever closes */
        return;
    }
    if (cn->phase == PH_STREAM && p != PH_STREAM) g->streams--;
    cn->phase = p;
    cn->t_phase = cn->t_progress = it_now_ms();
    cn->body_bytes = 0;
    pthread_mutex_unlock(&g->mu);
}

void srv_guard_headers_done(srv_guard *g, srv_conn *cn) {
    set_phase(g, cn, PH_BODY);
}

void srv_guard_body(srv_guard *g, srv_conn *cn, size_t n) {
    if (!cn) return;
    pthread_mutex_lock(&g->mu);
    cn->body_bytes += (long long)n;
    pthread_mutex_unlock(&g->mu);
}

void srv_guard_body_done(srv_guard *g, srv_conn *cn) {
    set_phase(g, cn, PH_BUSY);
}

void srv_guard_linger(srv_guard *g, srv_conn *cn) {
    set_phase(g, cn, PH_LINGER);
}

void srv_guard_request_done(srv_guard *g, srv_conn *cn) {
    if (!cn) return;
    set_phase(g, cn, PH_HEADERS);
    pthread_mutex_lock(&g->mu);
    cn->kept_alive = 1;
    pthread_mutex_unlock(&g->mu);
}

int srv_guard_stream_begin(srv_guard *g, srv_conn *cn) {
    if (!cn) return -1;
    pthread_mutex_lock(&g->mu);
    int ok = g->streams < g->lim.max_streams;
    if (ok && cn->phase != PH_STREAM) {
        g->streams++;
        cn->phase = PH_STREAM;
        cn->t_phase = cn->t_progress = it_now_ms();
    }
    pthread_mutex_unlock(&g->mu);
    return ok ? 0 : -1;
}

void srv_guard_stream_progress(srv_guard *g, srv_conn *cn) {
    if (!cn) return;
    pthread_mutex_lock(&g->mu);
    cn->t_progress = it_now_ms();
    pthread_mutex_unlock(&g->mu);
}

int srv_guard_over_normal(srv_guard *g) {
    pthread_mutex_lock(&g->mu);
    int over = g->open > g->lim.max_connections;
    pthread_mutex_unlock(&g->mu);
    return over;
}

void srv_guard_stats_get(srv_guard *g, srv_guard_stats *st) {
    pthread_mutex_lock(&g->mu);
    st->open = g->open;
    st->streams = g->streams;
    st->dropped_headers = g->dropped_headers;
    st->dropped_body = g->dropped_body;
    st->dropped_stream = g->dropped_stream;
    st->shed = g->shed;
    pthread_mutex_unlock(&g->mu);
}

int srv_guard_answer_unparsed(srv_guard *g, const char *answer, size_t len) {
    pthread_t self = pthread_self();
    srv_conn *found = NULL;
    int n = 0;
    pthread_mutex_lock(&g->mu);
    for (srv_conn *cn = g->head.next; cn != &g->head; cn = cn->next)
        if (!cn->shut && cn->phase == PH_HEADERS && pthread_equal(cn->thread, self)) {
            found = cn;
            n++;
        }
    int done = 0;
    if (n == 1 && send(found->fd, answer, len, MSG_NOSIGNAL | MSG_DONTWAIT) == (ssize_t)len) {
        shutdown(found->fd, SHUT_WR);
        found->phase = PH_LINGER;
        found->t_phase = it_now_ms();
        done = 1;
    }
    pthread_mutex_unlock(&g->mu);
    return done;
}
