/* Publishing stored events to the brokers operators run (issue 12, section 5): MQTT
 * (libmosquitto, Frigate-style topics) and Redis Streams (hiredis), at least once, from
 * the store's outbox (sinks/outbox.h).
 *
 * One publisher per target, each with its own thread: it reads the target's pending
 * events in id order, sends them, and deletes their outbox rows only once the broker
 * acknowledged them (MQTT: the PUBACK of every QoS 1 message of the event; Redis: the
 * XADD reply), and only as an unbroken prefix of what it sent. After a lost connection it
 * starts again from the oldest unacknowledged event, so a consumer sees every event, in
 * id order, where an event may repeat only as part of such a re-sent run. Reconnections
 * back off from backoff_min_ms, doubling to backoff_max_ms, each delay jittered by
 * +-25% so that many servers do not reconnect in step. The camera pipeline never waits
 * for a broker: events wait in SQLite, and a publisher holds the store's lock only for
 * one short read or one delete transaction.
 *
 * MQTT topics, with P the prefix (default "itscam"):
 *   P/available                          "online" / "offline", retained; "offline" is also
 *                                        the last will, so a crash reads offline too
 *   P/events                             every event, the JSON of it_store_event_json, QoS 1
 *   P/<camera>/<line>/<class>/<direction> the running count of line_cross events of that
 *                                        key, retained (details {"line", "direction"})
 *   P/<camera>/state                     the camera's state from camera_state events
 *                                        (details.state), retained
 * Topic segments from events are sanitised: '+', '#', '/', control characters (and, when
 * the segment is not valid UTF-8, every byte above 0x7f) become '_'; an empty one is "_".
 * A running count is the number of line_cross events of its key in the store with an id
 * at or below the event's, read from the store the first time a key is seen and counted
 * on from there, so it survives restarts and a re-sent event re-sends the same value.
 *
 * Redis: XADD <stream> MAXLEN ~ <maxlen> * id <id> camera <camera> type <type> json <json>,
 * pipelined in batches; AUTH (with the username when one is set) and SELECT after each
 * connection, or a PING when neither is sent, so that a server wanting a password is
 * never counted as connected. Debian 12's hiredis (0.14) has no TLS: tls.enabled is
 * refused. */
#ifndef ITSCAM_SINKS_PUBLISH_H
#define ITSCAM_SINKS_PUBLISH_H

#include "sinks/events.h"

#include <stdint.h>

#define IT_PUB_HOST_MAX 255
#define IT_PUB_NAME_MAX 127
#define IT_PUB_SECRET_MAX 255
#define IT_PUB_PATH_MAX 1023

typedef enum { IT_PUB_MQTT = 0, IT_PUB_REDIS = 1 } it_pub_kind;

typedef struct it_pub_tls {
    int enabled;
    char ca_file[IT_PUB_PATH_MAX + 1];   /* "": the system's CAs (/etc/ssl/certs) */
    char cert_file[IT_PUB_PATH_MAX + 1]; /* client certificate (PEM), with key_file */
    char key_file[IT_PUB_PATH_MAX + 1];
    int insecure;                        /* 1: do not check the broker's host name (its
                                          * certificate is still checked against the CAs) */
} it_pub_tls;

typedef struct it_publisher_params {
    it_pub_kind kind;
    char target[32];                     /* outbox target name: "mqtt", "redis" */
    char host[IT_PUB_HOST_MAX + 1];
    int port;                            /* 1883 (8883 with TLS), 6379 */
    char username[IT_PUB_NAME_MAX + 1];  /* "": none */
    char password[IT_PUB_SECRET_MAX + 1];/* never logged nor shown */
    it_pub_tls tls;
    /* MQTT */
    char client_id[IT_PUB_NAME_MAX + 1]; /* "": "itscam-<host name>" */
    char prefix[IT_PUB_NAME_MAX + 1];    /* "itscam" */
    int keepalive_s;                     /* 30 */
    /* Redis */
    int db;                              /* 0 */
    char stream[IT_PUB_NAME_MAX + 1];    /* "itscam:events" */
    long long maxlen;                    /* 100000 (approximate trimming) */
    /* delivery */
    int batch;                           /* 100 events per fetch (Redis: per pipeline) */
    int window;                          /* 256 MQTT messages awaiting their PUBACK at most */
    double poll_ms;                      /* 200: outbox polled this often, besides wakes */
    double backoff_min_ms, backoff_max_ms; /* 1000, 30000 */
    double io_timeout_ms;                /* 10000: a connection, CONNACK, reply or PUBACK
                                          * overdue this long drops the connection */
} it_publisher_params;

it_publisher_params it_publisher_default_params(it_pub_kind kind);

/* Check p (host, port, names, TLS files given as pairs, Redis TLS refused) without
 * starting anything. ITSCAM_OK, or ITSCAM_ERR_INVALID_ARG / ITSCAM_ERR_UNSUPPORTED with
 * a message that never holds the password. */
itscam_status it_publisher_check(const it_publisher_params *p);

typedef struct it_publisher it_publisher;

typedef struct it_publisher_stats {
    uint64_t sent;          /* events acknowledged by the broker (outbox rows deleted) */
    int64_t pending;        /* the target's outbox rows, as last counted (about once a second) */
    int connected;          /* 1 while a broker session is up */
    uint64_t errors;        /* failed connections, lost connections, refused messages */
    uint64_t connects;      /* sessions established */
    char last_error[256];   /* "" when none yet */
} it_publisher_stats;

/* Start a publisher of p->target's outbox rows in st (register the target with
 * it_store_outbox_targets before events are inserted). Returns at once: a broker that is
 * down only delays delivery. st must outlive the publisher. ITSCAM_OK with *out set, or an
 * error (it_publisher_check's, or no thread). */
itscam_status it_publisher_start(it_store *st, const it_publisher_params *p, it_publisher **out);
/* New events are in the outbox: send them now rather than at the next poll. Never
 * blocks (a write to a non-blocking pipe); safe from any thread, e.g. the event writer's
 * on-commit hook. NULL is harmless. */
void it_publisher_wake(it_publisher *p);
void it_publisher_stats_get(it_publisher *p, it_publisher_stats *s);
/* Stop: MQTT publishes "offline" (waiting up to a second for its PUBACK) and disconnects
 * cleanly. Events not yet acknowledged stay in the outbox for the next start. Waits for
 * the thread (at most about io_timeout_ms when a broker hangs). NULL is harmless. */
void it_publisher_stop(it_publisher *p);

#endif
