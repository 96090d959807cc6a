/* Connection guard: every open connection, what it is waiting for, and a watchdog that
 * drops the ones that hold a slot without making progress (slowloris headers, trickled
 * bodies, stalled stream viewers), so that a few hundred slow clients cannot keep fresh
 * ones out. libmicrohttpd's own timeout only sees idleness, and one byte every few
 * seconds is not idle.
 *
 * Deadlines (nginx client_header_timeout / client_body_timeout / send_timeout, Apache
 * mod_reqtimeout's MinRate):
 *   - a new connection's request headers are complete within header_timeout_s;
 *   - on a kept-alive connection the next request's headers are complete within
 *     keepalive_timeout_s of the previous answer;
 *   - a body arrives at min_body_rate bytes/s on average, after a grace of
 *     header_timeout_s (deadline = headers + header_timeout_s + bytes / min_body_rate);
 *   - a streaming response (SSE, MJPEG) has none of these, but is dropped when its socket
 *     took nothing for stream_send_timeout_s; at most max_streams are open at once;
 *   - a request being handled (its body in, waiting on the model, its answer being
 *     written) has no deadline here: the request timeout and libmicrohttpd's idle
 *     timeout cover it.
 * When more than max_connections are open (libmicrohttpd admits max_connections plus the
 * reserved slots), the watchdog also sheds connections still sending headers, oldest
 * first, so that the reserved slots come free again.
 *
 * Thread safety: every function may be called from any thread; one mutex guards the
 * list. A connection is shut down (never closed) by the watchdog, under that mutex, and
 * libmicrohttpd's CLOSED notification unlinks it under the same mutex before the socket
 * is closed, so the watchdog never touches a descriptor that was closed and reused. */
#ifndef ITSCAM_SERVER_GUARD_H
#define ITSCAM_SERVER_GUARD_H

#include <microhttpd.h>
#include <stddef.h>

typedef struct srv_guard_limits {
    double header_timeout_s;
    double keepalive_timeout_s;
    double min_body_rate;        /* bytes per second; 0: no minimum */
    double stream_send_timeout_s;
    int max_connections;         /* the normal slots */
    int max_streams;
} srv_guard_limits;

typedef struct srv_guard srv_guard;
typedef struct srv_conn srv_conn;

/* Start the watchdog thread. NULL with err when out of memory or threads. */
srv_guard *srv_guard_start(const srv_guard_limits *l, char *err, size_t errlen);
/* Stop the watchdog; call after MHD_stop_daemon (every connection is closed). NULL is harmless. */
void srv_guard_stop(srv_guard *g);

/* libmicrohttpd's MHD_OPTION_NOTIFY_CONNECTION callback; cls is the guard. */
void srv_guard_notify(void *cls, struct MHD_Connection *c, void **socket_context,
                      enum MHD_ConnectionNotificationCode code);
/* The record of c (NULL when untracked); valid until c's CLOSED notification. */
srv_conn *srv_guard_conn(struct MHD_Connection *c);

/* A request's headers are complete: its body phase begins. */
void srv_guard_headers_done(srv_guard *g, srv_conn *cn);
/* n more body bytes arrived. */
void srv_guard_body(srv_guard *g, srv_conn *cn, size_t n);
/* The body is complete: the request is being handled (no deadline). */
void srv_guard_body_done(srv_guard *g, srv_conn *cn);
/* The request was answered while its body still arrives and the sending side is shut:
 * the rest is read and discarded for a moment, then the connection is closed. */
void srv_guard_linger(srv_guard *g, srv_conn *cn);
/* The answer is written: the connection waits for its next request's headers. */
void srv_guard_request_done(srv_guard *g, srv_conn *cn);
/* The request becomes a streaming response. 0, or -1 when max_streams are open (the
 * caller answers 503). A stream ends with srv_guard_request_done. */
int srv_guard_stream_begin(srv_guard *g, srv_conn *cn);
/* A streaming response handed bytes to the socket. */
void srv_guard_stream_progress(srv_guard *g, srv_conn *cn);

/* libmicrohttpd 0.9.75 refuses a request whose headers it cannot parse (a Content-Length
 * of "-5" or "abc") with a malformed answer: its status line and headers twice. Called
 * from its log callback, on the thread that is parsing, this writes `answer` (a complete
 * response) to that connection first and shuts its sending side, so the client reads one
 * well-formed answer and libmicrohttpd's own write fails. The connection is the only one
 * of this thread still sending headers; when there are several, nothing is written
 * (0) and libmicrohttpd's answer goes out. 1 when written. */
int srv_guard_answer_unparsed(srv_guard *g, const char *answer, size_t len);

/* More than max_connections are open: only the reserved routes are served. */
int srv_guard_over_normal(srv_guard *g);

typedef struct srv_guard_stats {
    int open, streams;
    long long dropped_headers, dropped_body, dropped_stream, shed;
} srv_guard_stats;
void srv_guard_stats_get(srv_guard *g, srv_guard_stats *st);

#endif
