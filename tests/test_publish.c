/* Publishing (src/sinks/publish.c, server/publish_srv.c) against a real mosquitto and a
 * real redis-server started here on free loopback ports: events written through the event
 * writer while both brokers start late and are each killed (SIGKILL) and restarted mid
 * stream must all arrive, in id order, repeated only as re-sent runs, with the outbox
 * empty at the end; retained line counts and camera states, the running count after a
 * publisher restart, "available" (online, offline on a clean stop, offline as the last
 * will of a killed process), the publish configuration and the server's metrics.
 * Credentials and TLS against live brokers too: a mosquitto with two TLS listeners (a
 * throwaway CA and server certificates made with the openssl program) and a password
 * file (mosquitto_passwd), and a redis-server with requirepass and an ACL user: the right
 * settings deliver, each wrong one (password, CA, host name) never connects and says why
 * in last_error, and no password shows in an error or a log line. That part is skipped,
 * with the reason printed, when openssl or mosquitto_passwd is absent.
 *
 * The MQTT subscriber keeps a persistent session (clean_session false, QoS 1) on a
 * mosquitto with persistence (saved every second) and no limit on messages in flight or
 * queued: a message reaches the connected subscriber's socket before the broker's PUBACK
 * leaves, so a kill loses nothing acknowledged as long as the subscriber is connected,
 * which the test waits for before each kill. Its session must survive the kill too:
 * once it has subscribed, the test has the broker save (SIGUSR1) before killing it.
 * (Saving on every change, autosave_on_changes, would cover an absent subscriber too,
 * but it caps mosquitto at about 250 messages/s here.) Redis runs with appendfsync
 * always, so an acknowledged XADD survives a kill. Skips (77) only when mosquitto or
 * redis-server is absent.
 *
 * `test_publish --bench SECONDS RATE` is bench/broker_outage.sh's engine: events at RATE
 * per second for SECONDS, a 30 s outage of each broker (MQTT from 10 s, Redis from 45 s
 * with the defaults), and a report of produced, delivered, lost, duplicates and delays. */
#include "check.h"
#include "core/core.h"
#include "server/config.h"
#include "server/http_internal.h"
#include "sinks/outbox.h"
#include "sinks/publish.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <math.h>
#include <mosquitto.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char tmp[256];
static char mosquitto_bin[256], redis_bin[256];

static double wall_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void sleep_ms(double ms) {
    struct timespec ts = { (time_t)(ms / 1e3), (long)(fmod(ms, 1e3) * 1e6) };
    while (nanosleep(&ts, &ts) && errno == EINTR) {}
}

static int find_bin(const char *name, char *out, size_t n) {
    const char *path = getenv("PATH");
    char dirs[2048];
    snprintf(dirs, sizeof dirs, "%s:/usr/sbin:/usr/local/sbin:/usr/bin", path ? path : "");
    for (char *save = NULL, *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        snprintf(out, n, "%s/%s", d, name);
        if (access(out, X_OK) == 0) return 0;
    }
    return -1;
}

/* ---- brokers ---- */

typedef struct broker {
    int redis;
    int port;
    pid_t pid;
    char dir[300];
    char requirepass[64]; /* Redis: started with --requirepass when set */
} broker;

static broker *live[4];

static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t l = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) || getsockname(fd, (struct sockaddr *)&a, &l)) {
        if (fd >= 0) close(fd);
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

static int port_open(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    if (fd >= 0) close(fd);
    return ok;
}

static int broker_init(broker *b, int redis, const char *name) {
    memset(b, 0, sizeof *b);
    b->redis = redis;
    b->port = free_port();
    snprintf(b->dir, sizeof b->dir, "%s/%s", tmp, name);
    mkdir(b->dir, 0700);
    if (redis) return b->port > 0 ? 0 : -1;
    char conf[400];
    snprintf(conf, sizeof conf, "%s/mosquitto.conf", b->dir);
    FILE *f = fopen(conf, "w");
    if (!f) return -1;
    /* Saved every second. No limits on messages in flight or queued per client, so nothing
     * waits in the broker's memory that a kill would lose while the subscriber is
     * connected. */
    fprintf(f,
            "listener %d 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location %s/\n"
            "autosave_interval 1\nmax_inflight_messages 0\nmax_queued_messages 0\n"
            "log_dest file %s/mosquitto.log\nuser root\n",
            b->port, b->dir, b->dir);
    fclose(f);
    return b->port > 0 ? 0 : -1;
}

static int broker_start(broker *b) {
    char port[16], conf[400], log[400];
    snprintf(port, sizeof port, "%d", b->port);
    snprintf(conf, sizeof conf, "%s/mosquitto.conf", b->dir);
    snprintf(log, sizeof log, "%s/stdout.log", b->dir);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) dup2(fd, 1), dup2(fd, 2);
        if (b->redis && b->requirepass[0])
            execl(redis_bin, "redis-server", "--port", port, "--bind", "127.0.0.1", "--dir", b->dir, "--appendonly",
                  "yes", "--appendfsync", "always", "--save", "", "--protected-mode", "no", "--daemonize", "no",
                  "--requirepass", b->requirepass, (char *)NULL);
        else if (b->redis)
            execl(redis_bin, "redis-server", "--port", port, "--bind", "127.0.0.1", "--dir", b->dir, "--appendonly",
                  "yes", "--appendfsync", "always", "--save", "", "--protected-mode", "no", "--daemonize", "no",
                  (char *)NULL);
        else
            execl(mosquitto_bin, "mosquitto", "-c", conf, (char *)NULL);
        _exit(127);
    }
    b->pid = pid;
    for (int i = 0; i < 4; i++)
        if (!live[i]) {
            live[i] = b;
            break;
        }
    for (int i = 0; i < 200; i++) { /* 10 s */
        if (port_open(b->port)) return 0;
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            b->pid = 0;
            fprintf(stderr, "%s exited at start (see %s)\n", b->redis ? "redis-server" : "mosquitto", b->dir);
            return -1;
        }
        sleep_ms(50);
    }
    return -1;
}

static void broker_signal(broker *b, int sig) {
    if (b->pid <= 0) return;
    kill(b->pid, sig);
    waitpid(b->pid, NULL, 0);
    b->pid = 0;
    for (int i = 0; i < 4; i++)
        if (live[i] == b) live[i] = NULL;
}

static void kill_all(void) {
    for (int i = 0; i < 4; i++)
        if (live[i] && live[i]->pid > 0) kill(live[i]->pid, SIGKILL), waitpid(live[i]->pid, NULL, 0);
}

/* ---- an MQTT subscriber (libmosquitto's own thread) ---- */

#define SUB_TOPICS 128

typedef struct sub {
    struct mosquitto *m;
    pthread_mutex_t mu;
    char filter[128];
    int64_t *ids; /* ids of P/events messages, in arrival order */
    double *at;   /* and their arrival (unix seconds) */
    int n, cap;
    char topic[SUB_TOPICS][160], value[SUB_TOPICS][64]; /* the last value of every other topic */
    int n_topics;
    int subacks, connects;
} sub;

static void sub_on_connect(struct mosquitto *m, void *obj, int rc) {
    sub *s = obj;
    /* Subscribed again on every connection: a broker whose saved state predates the
     * subscription would otherwise forget it. */
    if (rc == 0) mosquitto_subscribe(m, NULL, s->filter, 1);
    pthread_mutex_lock(&s->mu);
    s->connects++;
    pthread_mutex_unlock(&s->mu);
}

static void sub_on_subscribe(struct mosquitto *m, void *obj, int mid, int n, const int *q) {
    (void)m, (void)mid, (void)n, (void)q;
    sub *s = obj;
    pthread_mutex_lock(&s->mu);
    s->subacks++;
    pthread_mutex_unlock(&s->mu);
}

static void sub_on_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg) {
    (void)m;
    sub *s = obj;
    size_t tl = strlen(msg->topic);
    pthread_mutex_lock(&s->mu);
    if (tl > 7 && !strcmp(msg->topic + tl - 7, "/events")) {
        json_t *j = json_loadb(msg->payload, (size_t)msg->payloadlen, 0, NULL);
        if (s->n == s->cap) {
            s->cap = s->cap ? 2 * s->cap : 4096;
            s->ids = realloc(s->ids, (size_t)s->cap * sizeof *s->ids);
            s->at = realloc(s->at, (size_t)s->cap * sizeof *s->at);
        }
        s->ids[s->n] = j ? (int64_t)json_integer_value(json_object_get(j, "id")) : -1;
        s->at[s->n++] = wall_now();
        json_decref(j);
    } else {
        int i;
        for (i = 0; i < s->n_topics && strcmp(s->topic[i], msg->topic); i++) {}
        if (i < SUB_TOPICS) {
            if (i == s->n_topics) s->n_topics++;
            snprintf(s->topic[i], sizeof s->topic[i], "%s", msg->topic);
            snprintf(s->value[i], sizeof s->value[i], "%.*s", msg->payloadlen, (const char *)msg->payload);
        }
    }
    pthread_mutex_unlock(&s->mu);
}

/* A subscriber over TLS (ca_file not NULL, checked against it) and with credentials
 * (user not NULL), or plain and anonymous. */
static int sub_start_auth(sub *s, int port, const char *id, int clean, const char *filter, const char *ca_file,
                          const char *user, const char *password) {
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    snprintf(s->filter, sizeof s->filter, "%s", filter);
    s->m = mosquitto_new(id, clean, s);
    if (!s->m) return -1;
    mosquitto_connect_callback_set(s->m, sub_on_connect);
    mosquitto_subscribe_callback_set(s->m, sub_on_subscribe);
    mosquitto_message_callback_set(s->m, sub_on_message);
    mosquitto_reconnect_delay_set(s->m, 1, 1, false);
    if (ca_file && mosquitto_tls_set(s->m, ca_file, NULL, NULL, NULL, NULL) != MOSQ_ERR_SUCCESS) return -1;
    if (user && mosquitto_username_pw_set(s->m, user, password) != MOSQ_ERR_SUCCESS) return -1;
    if (mosquitto_connect_async(s->m, "127.0.0.1", port, 30) != MOSQ_ERR_SUCCESS) return -1;
    return mosquitto_loop_start(s->m) == MOSQ_ERR_SUCCESS ? 0 : -1;
}

static int sub_start(sub *s, int port, const char *id, int clean, const char *filter) {
    return sub_start_auth(s, port, id, clean, filter, NULL, NULL, NULL);
}

static void sub_stop(sub *s) {
    if (!s->m) return;
    mosquitto_disconnect(s->m);
    mosquitto_loop_stop(s->m, false);
    mosquitto_destroy(s->m);
    free(s->ids), free(s->at);
    pthread_mutex_destroy(&s->mu);
    memset(s, 0, sizeof *s);
}

static int sub_wait(sub *s, int *field, int want, double ms) {
    for (double t0 = it_now_ms(); it_now_ms() - t0 < ms; sleep_ms(20)) {
        pthread_mutex_lock(&s->mu);
        int v = *field;
        pthread_mutex_unlock(&s->mu);
        if (v >= want) return 0;
    }
    return -1;
}

/* The last value seen on topic into out ("" when none). */
static void sub_value(sub *s, const char *topic, char *out, size_t n) {
    pthread_mutex_lock(&s->mu);
    out[0] = 0;
    for (int i = 0; i < s->n_topics; i++)
        if (!strcmp(s->topic[i], topic)) snprintf(out, n, "%s", s->value[i]);
    pthread_mutex_unlock(&s->mu);
}

static int sub_wait_value(sub *s, const char *topic, const char *want, double ms) {
    char v[64];
    for (double t0 = it_now_ms(); it_now_ms() - t0 < ms; sleep_ms(20)) {
        sub_value(s, topic, v, sizeof v);
        if (!strcmp(v, want)) return 0;
    }
    return -1;
}

/* ---- the delivery rule ---- */

/* r[0..n): ids in arrival order, expected first..last. Every id arrives, and an id
 * arrives only once every lower one has (a new id is always the next one): what repeats
 * is a re-sent run. *dups counts the repeats. 0, or -1 with the reason in why. */
static int check_sequence(const int64_t *r, int n, int64_t first, int64_t last, int *dups, char *why, size_t whyn) {
    int64_t max = first - 1;
    *dups = 0;
    for (int i = 0; i < n; i++) {
        if (r[i] < first || r[i] > last) {
            snprintf(why, whyn, "arrival %d: id %lld is outside %lld..%lld", i, (long long)r[i], (long long)first,
                     (long long)last);
            return -1;
        }
        if (r[i] > max + 1) {
            snprintf(why, whyn, "arrival %d: id %lld before id %lld (a gap or a reorder)", i, (long long)r[i],
                     (long long)(max + 1));
            return -1;
        }
        if (r[i] == max + 1) max++;
        else (*dups)++;
    }
    if (max != last) {
        snprintf(why, whyn, "ids %lld..%lld never arrived", (long long)(max + 1), (long long)last);
        return -1;
    }
    return 0;
}

/* Every "id" field of the stream's entries, in stream order: *n of them (malloc'd). */
static int64_t *stream_ids(redisContext *c, const char *stream, int *n, double **added_ms) {
    *n = 0;
    redisReply *r = redisCommand(c, "XRANGE %s - +", stream);
    int64_t *ids = NULL;
    if (r && r->type == REDIS_REPLY_ARRAY) {
        ids = malloc((r->elements + 1) * sizeof *ids);
        if (added_ms) *added_ms = malloc((r->elements + 1) * sizeof **added_ms);
        for (size_t i = 0; i < r->elements; i++) {
            redisReply *e = r->element[i];
            if (e->type != REDIS_REPLY_ARRAY || e->elements != 2) continue;
            redisReply *f = e->element[1];
            int64_t id = -1;
            for (size_t k = 0; k + 1 < f->elements; k += 2)
                if (!strcmp(f->element[k]->str, "id")) id = strtoll(f->element[k + 1]->str, NULL, 10);
            if (added_ms) (*added_ms)[*n] = strtod(e->element[0]->str, NULL); /* "<ms>-<seq>" */
            ids[(*n)++] = id;
        }
    }
    if (r) freeReplyObject(r);
    return ids;
}

static int64_t *redis_ids(int port, const char *stream, int *n, double **added_ms) {
    *n = 0;
    redisContext *c = redisConnect("127.0.0.1", port);
    if (!c || c->err) {
        if (c) redisFree(c);
        return NULL;
    }
    int64_t *ids = stream_ids(c, stream, n, added_ms);
    redisFree(c);
    return ids;
}

/* ---- events ---- */

static const char *const classes[] = { "car", "truck", "bus/+#" };

static void make_event(it_store_event *e, int i) {
    memset(e, 0, sizeof *e);
    snprintf(e->camera, sizeof e->camera, "%s", i % 3 ? "cam-b" : "cam-a");
    e->time = wall_now();
    e->class_id = -1;
    e->score = -1;
    if (i % 40 == 39) {
        snprintf(e->type, sizeof e->type, "camera_state");
        snprintf(e->details, sizeof e->details, "{\"state\":\"%s\",\"previous\":\"x\"}",
                 (i / 40) % 2 ? "stalled" : "streaming");
        return;
    }
    e->track_id = 1 + i;
    e->class_id = i % 3;
    snprintf(e->class_name, sizeof e->class_name, "%s", classes[i % 3 == 2 && i % 7 ? 0 : i % 3]);
    e->score = 0.9;
    e->has_box = 1;
    e->box[2] = e->box[3] = 10;
    if (i % 5 == 1) {
        snprintf(e->type, sizeof e->type, "zone_enter");
        snprintf(e->details, sizeof e->details, "{\"zone\":\"z1\"}");
        return;
    }
    snprintf(e->type, sizeof e->type, "line_cross");
    snprintf(e->details, sizeof e->details, "{\"line\":\"l%d\",\"direction\":\"%s\"}", (i / 3) % 2,
             (i / 5) % 2 ? "a_to_b" : "b_to_a");
}

static it_store *open_store(const char *name) {
    char p[400], err[512];
    snprintf(p, sizeof p, "%s/%s", tmp, name);
    it_store *st = NULL;
    if (it_store_open(p, &st, err, sizeof err)) fprintf(stderr, "store %s: %s\n", p, err);
    return st;
}

typedef struct wake_list {
    it_publisher *p[2];
} wake_list;

static void on_commit(void *arg, const it_store_event *ev, int n) {
    (void)ev, (void)n;
    wake_list *w = arg;
    it_publisher_wake(w->p[0]);
    it_publisher_wake(w->p[1]);
}

static it_publisher *start_pub(it_store *st, it_pub_kind kind, int port, const char *prefix, const char *client_id,
                               double backoff_max) {
    it_publisher_params p = it_publisher_default_params(kind);
    snprintf(p.host, sizeof p.host, "127.0.0.1");
    p.port = port;
    if (prefix) snprintf(p.prefix, sizeof p.prefix, "%s", prefix);
    if (client_id) snprintf(p.client_id, sizeof p.client_id, "%s", client_id);
    if (backoff_max > 0) p.backoff_min_ms = 200, p.backoff_max_ms = backoff_max;
    it_publisher *pub = NULL;
    if (it_publisher_start(st, &p, &pub) != ITSCAM_OK) fprintf(stderr, "publisher: %s\n", itscam_last_error());
    return pub;
}

static int64_t pending(it_store *st, const char *target) {
    int64_t n = -1;
    it_outbox_pending(st, target, &n);
    return n;
}

/* Topic segment as the publisher makes it (the events here are ASCII). */
static void seg(char *out, size_t n, const char *s) {
    snprintf(out, n, "%s", *s ? s : "_");
    for (char *p = out; *p; p++)
        if (*p == '/' || *p == '+' || *p == '#') *p = '_';
}

/* ---- the configuration ---- */

static void test_config(void) {
    char err[512];
    srv_config c;
    srv_config_defaults(&c);
    CHECK(!c.mqtt.host[0] && !c.redis.host[0] && c.mqtt.port == 1883 && c.redis.port == 6379);
    CHECK(!strcmp(c.mqtt.prefix, "itscam") && !strcmp(c.redis.stream, "itscam:events") && c.redis.maxlen == 100000);
    static const char yaml[] = "publish:\n"
                               "  mqtt:\n"
                               "    host: broker.lan\n"
                               "    username: cam\n"
                               "    password: s3cret-mqtt\n"
                               "    tls: 1\n"
                               "  redis: {host: r.lan, password: s3cret-redis, db: 2}\n";
    CHECKF(srv_config_load_string(&c, yaml, strlen(yaml), "p.yaml", err, sizeof err) == 0, "%s", err);
    CHECK(!strcmp(c.mqtt.host, "broker.lan") && !strcmp(c.mqtt.username, "cam") && c.mqtt.tls == 1);
    CHECK(!strcmp(c.redis.host, "r.lan") && c.redis.db == 2 && !strcmp(c.redis.password, "s3cret-redis"));
    /* Flat dotted keys are the same settings. */
    srv_config d;
    srv_config_defaults(&d);
    static const char flat[] = "publish: {mqtt.host: broker.lan, mqtt: {port: 8883}}\n";
    CHECKF(srv_config_load_string(&d, flat, strlen(flat), "f.yaml", err, sizeof err) == 0, "%s", err);
    CHECK(!strcmp(d.mqtt.host, "broker.lan") && d.mqtt.port == 8883);
    static const char typo[] = "publish:\n  mqtt:\n    hots: x\n";
    CHECK(srv_config_load_string(&d, typo, strlen(typo), "t.yaml", err, sizeof err) == -1);
    CHECKF(strstr(err, "t.yaml:3: unknown key 'publish.mqtt.hots'; did you mean 'publish.mqtt.host'?") != NULL, "%s",
           err);
    static const char twice[] = "publish:\n  mqtt: {host: a}\n  mqtt.host: b\n";
    CHECK(srv_config_load_string(&d, twice, strlen(twice), "t.yaml", err, sizeof err) == -1);
    CHECKF(strstr(err, "set twice") != NULL, "%s", err);
    /* The environment and flags. */
    char *env[] = { "ITSCAM__PUBLISH__REDIS__STREAM=cams:events", "ITSCAM__PUBLISH__MQTT__KEEPALIVE_S=60", NULL };
    CHECKF(srv_config_load_env(&c, env, err, sizeof err) == 0, "%s", err);
    CHECK(!strcmp(c.redis.stream, "cams:events") && c.mqtt.keepalive_s == 60);
    char *argv[] = { "serve", "--publish.mqtt.prefix=site1", "--publish.redis.maxlen", "5000", NULL };
    int i = 1;
    CHECK(srv_config_flag(&c, 4, argv, &i, err, sizeof err) == 1 && i == 2);
    CHECK(srv_config_flag(&c, 4, argv, &i, err, sizeof err) == 1 && i == 4);
    CHECK(!strcmp(c.mqtt.prefix, "site1") && c.redis.maxlen == 5000);
    /* Passwords never appear in a dump or in --help. */
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (f) {
        srv_config_dump(f, &c);
        srv_config_usage(f);
        fclose(f);
        CHECK(!strstr(buf, "s3cret"));
        CHECK(strstr(buf, "publish.mqtt.password = \"***\"\n") && strstr(buf, "publish.redis.password = \"***\"\n"));
        CHECK(strstr(buf, "publish.mqtt.username = \"cam\"\n") != NULL);
        CHECK(strstr(buf, "ITSCAM__PUBLISH__MQTT__HOST") != NULL);
        free(buf);
    }
    /* Cross-field rules, named by setting, never showing the password. */
    CHECKF(srv_config_publish_check(&c, err, sizeof err) == 0, "%s", err);
    srv_config e = c;
    e.redis.tls = 1;
    CHECK(srv_config_publish_check(&e, err, sizeof err) == -1);
    CHECKF(strstr(err, "publish.redis: TLS is not available") && strstr(err, "hiredis"), "%s", err);
    e = c;
    e.mqtt.username[0] = 0;
    CHECK(srv_config_publish_check(&e, err, sizeof err) == -1);
    CHECKF(strstr(err, "publish.mqtt: a password needs a username") && !strstr(err, "s3cret"), "%s", err);
    e = c;
    snprintf(e.mqtt.cert_file, sizeof e.mqtt.cert_file, "/c.pem");
    CHECK(srv_config_publish_check(&e, err, sizeof err) == -1);
    CHECKF(strstr(err, "needs both cert_file and key_file") != NULL, "%s", err);
    e = c;
    snprintf(e.mqtt.prefix, sizeof e.mqtt.prefix, "a/#");
    CHECK(srv_config_publish_check(&e, err, sizeof err) == -1);
    e = c;
    e.mqtt.host[0] = 0, e.redis.host[0] = 0;
    e.mqtt.tls = 0;
    CHECK(srv_config_publish_check(&e, err, sizeof err) == 0);
    /* The library check itself. */
    it_publisher_params p = it_publisher_default_params(IT_PUB_REDIS);
    CHECK(it_publisher_check(&p) == ITSCAM_ERR_INVALID_ARG); /* no host */
    snprintf(p.host, sizeof p.host, "h");
    CHECK(it_publisher_check(&p) == ITSCAM_OK);
    p.tls.enabled = 1;
    CHECK(it_publisher_check(&p) == ITSCAM_ERR_UNSUPPORTED);
}

/* ---- delivery through kills and late starts ---- */

enum { N_EVENTS = 2000, BATCH = 10 };

static void test_delivery(void) {
    broker mq, rd;
    if (broker_init(&mq, 0, "mosquitto") || broker_init(&rd, 1, "redis")) {
        CHECK(!"no free port");
        return;
    }
    /* The subscriber's session first, saved by the broker; then the broker goes, so the
     * publishers start with both brokers down. */
    sub s;
    CHECK(broker_start(&mq) == 0);
    CHECK(sub_start(&s, mq.port, "itscam-test-sub", 0, "itscam/#") == 0);
    CHECK(sub_wait(&s, &s.subacks, 1, 10000) == 0);
    kill(mq.pid, SIGUSR1); /* save the session now */
    sleep_ms(500);
    broker_signal(&mq, SIGKILL);

    it_store *st = open_store("delivery");
    if (!st) return;
    const char *targets[] = { "mqtt", "redis" };
    CHECK_OK(it_store_outbox_targets(st, targets, 2));
    wake_list wl = { { start_pub(st, IT_PUB_MQTT, mq.port, NULL, "itscam-test-pub", 1000),
                       start_pub(st, IT_PUB_REDIS, rd.port, NULL, NULL, 1000) } };
    CHECK(wl.p[0] && wl.p[1]);
    it_event_writer *w = NULL;
    CHECK_OK(it_event_writer_start(st, 0, &w));
    if (!w || !wl.p[0] || !wl.p[1]) return;
    it_event_writer_on_commit(w, on_commit, &wl);

    /* About 7 s of events. Both brokers start at 1.5 s; MQTT dies at 3 s and 6 s (or later,
     * once the subscriber is back: it reconnects every second), Redis at 3.5 s and 6.5 s,
     * each back a second later. */
    struct { double at; broker *b; int start; } plan[] = {
        { 1.5, &mq, 1 }, { 1.5, &rd, 1 }, { 3.0, &mq, 0 }, { 3.5, &rd, 0 }, { 4.0, &mq, 1 },
        { 4.5, &rd, 1 }, { 6.0, &mq, 0 }, { 6.5, &rd, 0 }, { 7.0, &mq, 1 }, { 7.5, &rd, 1 },
    };
    size_t next = 0;
    int subacks_at_start = 0, subacks_saved = 0;
    double saved_at = 0;
    double t0 = it_now_ms();
    for (int i = 0; i < N_EVENTS || next < sizeof plan / sizeof *plan;) {
        double t = (it_now_ms() - t0) / 1e3;
        while (next < sizeof plan / sizeof *plan && t >= plan[next].at) {
            if (plan[next].b == &mq && !plan[next].start) {
                /* Only once the subscriber subscribed again and the broker saved that. */
                pthread_mutex_lock(&s.mu);
                int subacks = s.subacks;
                pthread_mutex_unlock(&s.mu);
                if (subacks > subacks_at_start && subacks > subacks_saved) {
                    kill(mq.pid, SIGUSR1);
                    subacks_saved = subacks, saved_at = it_now_ms();
                }
                if (subacks_saved <= subacks_at_start || it_now_ms() - saved_at < 300) break;
            }
            if (plan[next].start) {
                if (plan[next].b == &mq) {
                    pthread_mutex_lock(&s.mu);
                    subacks_at_start = s.subacks;
                    pthread_mutex_unlock(&s.mu);
                }
                CHECK(broker_start(plan[next].b) == 0);
            } else {
                broker_signal(plan[next].b, SIGKILL);
            }
            next++;
        }
        for (int k = 0; k < BATCH && i < N_EVENTS; k++, i++) {
            it_store_event e;
            make_event(&e, i);
            CHECK(it_event_writer_push(w, &e) == 0);
        }
        sleep_ms(35);
    }
    it_event_writer_flush(w);
    it_event_writer_stop(w);
    fprintf(stderr, "produced in %.1f s\n", (it_now_ms() - t0) / 1e3);
    /* Everything arrives. */
    double until = it_now_ms() + 40000;
    while (it_now_ms() < until && (pending(st, "mqtt") || pending(st, "redis"))) sleep_ms(100);
    CHECKF(pending(st, "mqtt") == 0, "%lld mqtt rows left", (long long)pending(st, "mqtt"));
    CHECKF(pending(st, "redis") == 0, "%lld redis rows left", (long long)pending(st, "redis"));
    fprintf(stderr, "outbox empty at %.1f s\n", (it_now_ms() - t0) / 1e3);
    it_event_filter asc = { .ascending = 1 };
    it_store_event first, last;
    int n;
    int64_t next_cursor;
    CHECK_OK(it_store_events_query(st, &asc, 1, 0, &first, &n, &next_cursor));
    asc.ascending = 0;
    CHECK_OK(it_store_events_query(st, &asc, 1, 0, &last, &n, &next_cursor));
    CHECK(last.id - first.id + 1 == N_EVENTS);
    /* The subscriber has all of them once the broker's queue for it drained. */
    for (double u = it_now_ms() + 20000; it_now_ms() < u; sleep_ms(100)) {
        pthread_mutex_lock(&s.mu);
        int have = s.n;
        int64_t top = have ? s.ids[have - 1] : 0;
        pthread_mutex_unlock(&s.mu);
        if (top == last.id && have >= N_EVENTS) break;
    }
    fprintf(stderr, "subscriber done at %.1f s\n", (it_now_ms() - t0) / 1e3);
    char why[256];
    int dups = 0;
    pthread_mutex_lock(&s.mu);
    int rc = check_sequence(s.ids, s.n, first.id, last.id, &dups, why, sizeof why);
    pthread_mutex_unlock(&s.mu);
    CHECKF(rc == 0, "mqtt: %s", why);
    if (rc) { /* the arrivals as runs of consecutive ids */
        pthread_mutex_lock(&s.mu);
        for (int i = 0; i < s.n;) {
            int j = i;
            while (j + 1 < s.n && s.ids[j + 1] == s.ids[j] + 1) j++;
            fprintf(stderr, "  run %lld..%lld (%.3f..%.3f)\n", (long long)s.ids[i], (long long)s.ids[j], s.at[i] - s.at[0], s.at[j] - s.at[0]);
            i = j + 1;
        }
        pthread_mutex_unlock(&s.mu);
    }
    printf("mqtt: %d events, %d re-sent duplicates, %d subscriber connections\n", N_EVENTS, dups, s.connects);
    int nr = 0;
    int64_t *rids = redis_ids(rd.port, "itscam:events", &nr, NULL);
    CHECK(rids != NULL);
    if (rids) {
        rc = check_sequence(rids, nr, first.id, last.id, &dups, why, sizeof why);
        CHECKF(rc == 0, "redis: %s", why);
        printf("redis: %d events, %d re-sent duplicates\n", N_EVENTS, dups);
        free(rids);
    }
    it_publisher_stats ms, rs;
    it_publisher_stats_get(wl.p[0], &ms);
    it_publisher_stats_get(wl.p[1], &rs);
    CHECKF(ms.sent >= N_EVENTS && rs.sent >= N_EVENTS, "sent %llu, %llu", (unsigned long long)ms.sent,
           (unsigned long long)rs.sent);
    CHECKF(ms.connects >= 3 && rs.connects >= 3, "connects %llu, %llu", (unsigned long long)ms.connects,
           (unsigned long long)rs.connects);
    CHECK(ms.errors >= 2 && rs.errors >= 2 && ms.connected && rs.connected && ms.last_error[0]);

    /* A clean stop says offline; the retained counts and states are the store's. */
    it_publisher_stop(wl.p[0]);
    wl.p[0] = NULL;
    sub check;
    CHECK(sub_start(&check, mq.port, "itscam-test-check", 1, "itscam/#") == 0);
    CHECK(sub_wait_value(&check, "itscam/available", "offline", 5000) == 0);
    it_count_row *rows = NULL;
    int nrows = 0;
    const char *cams[] = { "cam-a", "cam-b" };
    int checked = 0, sanitised = 0;
    for (int c = 0; c < 2; c++) {
        CHECK_OK(it_store_counts(st, cams[c], 1, 4e9, 4e9, &rows, &nrows));
        for (int k = 0; k < nrows; k++) {
            char topic[256], sl[64], sc[96], want[32], got[64];
            seg(sl, sizeof sl, rows[k].line);
            seg(sc, sizeof sc, rows[k].class_name);
            snprintf(topic, sizeof topic, "itscam/%s/%s/%s/%s", cams[c], sl, sc, rows[k].direction);
            snprintf(want, sizeof want, "%lld", (long long)rows[k].count);
            sanitised += !strcmp(sc, "bus___");
            CHECKF(sub_wait_value(&check, topic, want, 5000) == 0, "%s: want %s", topic, want);
            sub_value(&check, topic, got, sizeof got);
            if (strcmp(got, want)) fprintf(stderr, "  %s reads '%s'\n", topic, got);
            checked++;
        }
        it_free(rows);
    }
    CHECKF(checked >= 8, "%d count topics", checked);
    CHECKF(sanitised >= 1, "no count of the class 'bus/+#' (topic segment bus___)");
    /* Camera states: the last camera_state event of each camera. */
    for (int c = 0; c < 2; c++) {
        it_event_filter f = { .camera = cams[c], .type = "camera_state" };
        it_store_event ev;
        CHECK_OK(it_store_events_query(st, &f, 1, 0, &ev, &n, &next_cursor));
        if (n != 1) continue;
        json_t *d = json_loads(ev.details, 0, NULL);
        char topic[128];
        snprintf(topic, sizeof topic, "itscam/%s/state", cams[c]);
        CHECK(sub_wait_value(&check, topic, json_string_value(json_object_get(d, "state")), 5000) == 0);
        json_decref(d);
    }

    fprintf(stderr, "retained checked at %.1f s\n", (it_now_ms() - t0) / 1e3);
    /* A new publisher (a server restart) counts on from the store: 25 more crossings of
     * one key read the store's total. */
    static it_store_event more[25];
    for (int k = 0; k < 25; k++) {
        make_event(&more[k], 0);
        snprintf(more[k].class_name, sizeof more[k].class_name, "car");
        snprintf(more[k].details, sizeof more[k].details, "{\"line\":\"l0\",\"direction\":\"a_to_b\"}");
    }
    CHECK_OK(it_store_events_insert(st, more, 25, NULL));
    int64_t total = 0;
    CHECK_OK(it_store_line_count(st, "cam-a", "l0", "car", "a_to_b", INT64_MAX, &total));
    wl.p[0] = start_pub(st, IT_PUB_MQTT, mq.port, NULL, "itscam-test-pub", 1000);
    char want[32];
    snprintf(want, sizeof want, "%lld", (long long)total);
    CHECKF(sub_wait_value(&check, "itscam/cam-a/l0/car/a_to_b", want, 10000) == 0, "want %s", want);
    CHECK(sub_wait_value(&check, "itscam/available", "online", 5000) == 0);
    for (double u = it_now_ms() + 10000; it_now_ms() < u && pending(st, "mqtt"); sleep_ms(50)) {}
    CHECK(pending(st, "mqtt") == 0);
    sub_stop(&check);
    it_publisher_stop(wl.p[0]);
    it_publisher_stop(wl.p[1]);
    sub_stop(&s);
    it_store_close(st);
    broker_signal(&mq, SIGTERM);
    broker_signal(&rd, SIGTERM);
}

/* ---- the last will ---- */

/* The child: a publisher and nothing else, until it is killed. */
static int child_mqtt(char **argv) {
    int port = atoi(argv[2]);
    snprintf(tmp, sizeof tmp, "%s", argv[3]);
    it_store *st = open_store("child");
    const char *t[] = { "mqtt" };
    if (!st || it_store_outbox_targets(st, t, 1) != ITSCAM_OK) return 1;
    it_publisher *p = start_pub(st, IT_PUB_MQTT, port, "lwt", "itscam-test-lwt", 1000);
    if (!p) return 1;
    for (;;) pause();
}

static void test_last_will(void) {
    broker mq;
    if (broker_init(&mq, 0, "mosquitto-lwt") || broker_start(&mq)) {
        CHECK(!"mosquitto did not start");
        return;
    }
    sub s;
    CHECK(sub_start(&s, mq.port, "itscam-test-lwt-sub", 1, "lwt/available") == 0);
    CHECK(sub_wait(&s, &s.subacks, 1, 10000) == 0);
    char port[16];
    snprintf(port, sizeof port, "%d", mq.port);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/proc/self/exe", "test_publish", "--child-mqtt", port, tmp, (char *)NULL);
        _exit(127);
    }
    CHECK(pid > 0);
    CHECKF(sub_wait_value(&s, "lwt/available", "online", 20000) == 0, "the child never said online");
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    /* No clean disconnect happened: the broker publishes the will. */
    CHECKF(sub_wait_value(&s, "lwt/available", "offline", 10000) == 0, "no last will");
    sub_stop(&s);
    broker_signal(&mq, SIGTERM);
}

/* ---- the server's side: targets, publishers, metrics ---- */

static void test_server(void) {
    broker rd;
    if (broker_init(&rd, 1, "redis-srv") || broker_start(&rd)) {
        CHECK(!"redis-server did not start");
        return;
    }
    static srv_server s; /* only what publish_srv.c reads: cfg, store, metrics */
    memset(&s, 0, sizeof s);
    srv_config_defaults(&s.cfg);
    snprintf(s.cfg.redis.host, sizeof s.cfg.redis.host, "127.0.0.1");
    s.cfg.redis.port = rd.port;
    snprintf(s.cfg.redis.stream, sizeof s.cfg.redis.stream, "srv:events");
    char err[512] = "";
    CHECK(srv_metrics_init(&s.mx, &s.cfg) == 0);
    s.store = open_store("server");
    if (!s.store) return;
    CHECKF(srv_publish_start(&s, err, sizeof err) == 0, "%s", err);
    it_store_event ev[5];
    for (int i = 0; i < 5; i++) make_event(&ev[i], i);
    CHECK_OK(it_store_events_insert(s.store, ev, 5, NULL));
    srv_publish_wake(&s);
    for (double u = it_now_ms() + 10000; it_now_ms() < u && pending(s.store, "redis"); sleep_ms(50)) {}
    CHECK(pending(s.store, "redis") == 0);
    sleep_ms(1100); /* the pending count is refreshed about once a second */
    size_t len = 0;
    char *text = prom_render(s.mx.reg, &len);
    CHECK(text != NULL);
    if (text) {
        CHECKF(strstr(text, "itscam_publish_sent_total{target=\"redis\"} 5\n") != NULL, "%s", text);
        CHECK(strstr(text, "itscam_publish_pending{target=\"redis\"} 0\n") != NULL);
        CHECK(strstr(text, "itscam_publish_connected{target=\"redis\"} 1\n") != NULL);
        CHECK(strstr(text, "itscam_publish_errors_total{target=\"redis\"}") != NULL);
        CHECK(!strstr(text, "target=\"mqtt\""));
        free(text);
    }
    int nr = 0;
    int64_t *ids = redis_ids(rd.port, "srv:events", &nr, NULL);
    CHECK(nr == 5);
    free(ids);
    srv_publish_stop(&s);
    srv_publish_stop(&s); /* harmless twice */
    srv_publish_wake(&s); /* and after stop */
    /* Redis TLS is refused at start too, before anything runs. */
    s.cfg.redis.tls = 1;
    CHECK(srv_publish_start(&s, err, sizeof err) == -1);
    CHECKF(strstr(err, "hiredis") != NULL, "%s", err);
    it_store_close(s.store);
    srv_metrics_free(&s.mx);
    broker_signal(&rd, SIGTERM);
}

/* ---- credentials and TLS against live brokers ---- */

/* Distinct texts, so that a password leaking into an error or a log line is found. */
#define PW_RIGHT "Right-pw-7f3a9c"
#define PW_WRONG "Wrong-pw-91c2e4"
#define PW_USER "User-pw-5d08b1"

/* Every line the library logs while the credential tests run. */
static struct {
    pthread_mutex_t mu;
    char *text;
    size_t len, cap;
} logs = { PTHREAD_MUTEX_INITIALIZER, NULL, 0, 0 };

static void log_capture(int level, const char *msg, void *user) {
    (void)level, (void)user;
    size_t n = strlen(msg);
    pthread_mutex_lock(&logs.mu);
    if (logs.len + n + 2 > logs.cap) {
        size_t cap = 2 * (logs.len + n + 2);
        char *t = realloc(logs.text, cap);
        if (t) logs.text = t, logs.cap = cap;
    }
    if (logs.len + n + 2 <= logs.cap) {
        memcpy(logs.text + logs.len, msg, n);
        logs.len += n;
        logs.text[logs.len++] = '\n';
        logs.text[logs.len] = 0;
    }
    pthread_mutex_unlock(&logs.mu);
}

static int logs_contain(const char *s) {
    pthread_mutex_lock(&logs.mu);
    int r = logs.text && strstr(logs.text, s);
    pthread_mutex_unlock(&logs.mu);
    return r;
}

static void logs_reset(void) {
    pthread_mutex_lock(&logs.mu);
    free(logs.text);
    logs.text = NULL, logs.len = logs.cap = 0;
    pthread_mutex_unlock(&logs.mu);
}

/* Run argv[0] (a full path) with its output appended to log; its exit status, or -1. */
static int run_prog(char *const argv[], const char *log) {
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) dup2(fd, 1), dup2(fd, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    int st;
    if (waitpid(pid, &st, 0) != pid) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* A throwaway CA (d/ca.pem) and two server certificates it signs (P-256, two days):
 * d/srv-ip.{pem,key} for IP 127.0.0.1, the address the tests connect to, and
 * d/srv-other.{pem,key} for DNS broker.invalid only, a host name that never matches. */
static int make_certs(const char *openssl, const char *d) {
    char log[400], ca_key[400], ca[400];
    snprintf(log, sizeof log, "%s/openssl.log", d);
    snprintf(ca_key, sizeof ca_key, "%s/ca.key", d);
    snprintf(ca, sizeof ca, "%s/ca.pem", d);
    char *ca_argv[] = { (char *)openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=itscam test CA",
                        "-addext", "basicConstraints=critical,CA:TRUE", "-addext",
                        "keyUsage=critical,keyCertSign,cRLSign", NULL };
    if (run_prog(ca_argv, log)) return -1;
    static const char *const names[2] = { "ip", "other" };
    static const char *const subj[2] = { "/CN=127.0.0.1", "/CN=broker.invalid" };
    static const char *const san[2] = { "subjectAltName=IP:127.0.0.1\n", "subjectAltName=DNS:broker.invalid\n" };
    for (int i = 0; i < 2; i++) {
        char ext[400], key[400], csr[400], crt[400], serial[8];
        snprintf(ext, sizeof ext, "%s/srv-%s.ext", d, names[i]);
        snprintf(key, sizeof key, "%s/srv-%s.key", d, names[i]);
        snprintf(csr, sizeof csr, "%s/srv-%s.csr", d, names[i]);
        snprintf(crt, sizeof crt, "%s/srv-%s.pem", d, names[i]);
        snprintf(serial, sizeof serial, "%d", 2 + i);
        FILE *f = fopen(ext, "w");
        if (!f) return -1;
        fputs(san[i], f);
        fclose(f);
        char *req[] = { (char *)openssl, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", key, "-out", csr, "-subj", (char *)subj[i], NULL };
        char *sign[] = { (char *)openssl, "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-set_serial",
                         serial, "-out", crt, "-days", "2", "-extfile", ext, NULL };
        if (run_prog(req, log) || run_prog(sign, log)) return -1;
    }
    return 0;
}

static it_publisher_params auth_params(it_pub_kind kind, const char *target, int port, const char *user,
                                       const char *password) {
    it_publisher_params p = it_publisher_default_params(kind);
    snprintf(p.target, sizeof p.target, "%s", target);
    snprintf(p.host, sizeof p.host, "127.0.0.1");
    p.port = port;
    if (user) snprintf(p.username, sizeof p.username, "%s", user);
    if (password) snprintf(p.password, sizeof p.password, "%s", password);
    p.backoff_min_ms = 200, p.backoff_max_ms = 400;
    p.io_timeout_ms = 5000;
    return p;
}

/* The publishers of one credential test and what they must come to. */
typedef struct auth_case {
    it_store *st;        /* the store whose outbox it sends (a store has 4 targets at most) */
    it_publisher_params prm;
    int deliver;         /* 1: sends every event; 0: never connects */
    const char *why[2];  /* 0: last_error holds one of these (NULL: no second choice) */
    it_publisher *pub;
    it_publisher_stats stats;
} auth_case;

/* Start every case's publisher (its target registered in its store), insert n_ev (at
 * most 32) events in each store, and wait (up to 15 s) until those that deliver have
 * sent them all and those that do not have failed at least twice and extra_done (may be
 * NULL) holds. Then check each case's stats and stop it. */
static void run_cases(auth_case *c, int n, int n_ev, int (*extra_done)(void *), void *arg) {
    for (int i = 0; i < n; i++) {
        c[i].pub = NULL;
        CHECKF(it_publisher_start(c[i].st, &c[i].prm, &c[i].pub) == ITSCAM_OK, "%s: %s", c[i].prm.target,
               itscam_last_error());
    }
    it_store_event ev[32];
    for (int i = 0; i < n_ev; i++) make_event(&ev[i], i);
    for (int i = 0; i < n; i++) {
        int first = 1;
        for (int k = 0; k < i; k++) first &= c[k].st != c[i].st;
        if (first) CHECK_OK(it_store_events_insert(c[i].st, ev, n_ev, NULL));
    }
    for (int i = 0; i < n; i++) it_publisher_wake(c[i].pub);
    int ever_up[16] = { 0 };
    for (double until = it_now_ms() + 15000; it_now_ms() < until; sleep_ms(50)) {
        int done = 1;
        for (int i = 0; i < n; i++) {
            if (!c[i].pub) continue;
            it_publisher_stats_get(c[i].pub, &c[i].stats);
            ever_up[i] |= c[i].stats.connected;
            if (c[i].deliver ? c[i].stats.sent < (uint64_t)n_ev : c[i].stats.errors < 2) done = 0;
        }
        if (done && (!extra_done || extra_done(arg))) break;
    }
    for (int i = 0; i < n; i++) {
        if (!c[i].pub) continue;
        it_publisher_stats_get(c[i].pub, &c[i].stats);
        const it_publisher_stats *s = &c[i].stats;
        it_store *st = c[i].st;
        const char *t = c[i].prm.target;
        if (c[i].deliver) {
            CHECKF(s->sent == (uint64_t)n_ev && pending(st, t) == 0, "%s: sent %llu of %d, %lld pending; %s", t,
                   (unsigned long long)s->sent, n_ev, (long long)pending(st, t), s->last_error);
            CHECKF(s->connects >= 1 && s->connected, "%s: connects %llu, connected %d", t,
                   (unsigned long long)s->connects, s->connected);
        } else {
            CHECKF(!ever_up[i] && !s->connects && !s->connected && !s->sent, "%s connected: %s", t, s->last_error);
            CHECKF(s->errors >= 2 && pending(st, t) == n_ev, "%s: %llu errors, %lld pending", t,
                   (unsigned long long)s->errors, (long long)pending(st, t));
            CHECKF(strstr(s->last_error, c[i].why[0]) || (c[i].why[1] && strstr(s->last_error, c[i].why[1])),
                   "%s: last_error '%s' does not say '%s'", t, s->last_error, c[i].why[0]);
        }
        CHECKF(!strstr(s->last_error, PW_RIGHT) && !strstr(s->last_error, PW_WRONG) &&
                   !strstr(s->last_error, PW_USER),
               "%s: a password in last_error '%s'", t, s->last_error);
        fprintf(stderr, "  %s: sent %llu, errors %llu, last_error '%s'\n", t, (unsigned long long)s->sent,
                (unsigned long long)s->errors, s->last_error);
        it_publisher_stop(c[i].pub);
        c[i].pub = NULL;
    }
}

static int sub_has(void *arg) {
    sub *s = arg;
    pthread_mutex_lock(&s->mu);
    int n = s->n;
    pthread_mutex_unlock(&s->mu);
    return n >= 20;
}

/* MQTT over TLS with a password file: the right credentials and CA deliver (to a
 * subscriber over TLS with the same credentials); a wrong password, a missing CA and a
 * certificate for another host name never connect and say why; tls_insecure skips only
 * the host name check. No password in an error or a log line. */
static void test_mqtt_tls(void) {
    char openssl[256], passwd_bin[256];
    if (find_bin("openssl", openssl, sizeof openssl)) {
        printf("SKIP mqtt TLS and passwords: no openssl program to make certificates (Debian: apt-get install "
               "openssl)\n");
        return;
    }
    if (find_bin("mosquitto_passwd", passwd_bin, sizeof passwd_bin)) {
        printf("SKIP mqtt TLS and passwords: no mosquitto_passwd to hash the password file (Debian: package "
               "mosquitto)\n");
        return;
    }
    broker mq;
    memset(&mq, 0, sizeof mq);
    snprintf(mq.dir, sizeof mq.dir, "%s/mosquitto-tls", tmp);
    mkdir(mq.dir, 0700);
    const char *d = mq.dir;
    char ca[400], log[400], pwfile[400], conf[400];
    snprintf(ca, sizeof ca, "%s/ca.pem", d);
    snprintf(log, sizeof log, "%s/tools.log", d);
    snprintf(pwfile, sizeof pwfile, "%s/passwd", d);
    snprintf(conf, sizeof conf, "%s/mosquitto.conf", d);
    if (make_certs(openssl, d)) {
        CHECKF(0, "openssl could not make the test certificates (see %s/openssl.log)", d);
        return;
    }
    char *pw_argv[] = { passwd_bin, "-c", "-b", pwfile, "itscam-user", PW_RIGHT, NULL };
    if (run_prog(pw_argv, log)) {
        CHECKF(0, "mosquitto_passwd failed (see %s)", log);
        return;
    }
    /* Two TLS listeners: one with the certificate for 127.0.0.1, one with a certificate
     * for another name. Passwords for both; no anonymous clients. */
    mq.port = free_port();
    int port_other = free_port();
    while (port_other == mq.port) port_other = free_port();
    FILE *f = fopen(conf, "w");
    if (!f || mq.port <= 0 || port_other <= 0) {
        if (f) fclose(f);
        CHECK(!"no mosquitto configuration");
        return;
    }
    fprintf(f,
            "per_listener_settings false\nallow_anonymous false\npassword_file %s\n"
            "log_dest file %s/mosquitto.log\nlog_type all\nuser root\n"
            "listener %d 127.0.0.1\ncafile %s\ncertfile %s/srv-ip.pem\nkeyfile %s/srv-ip.key\n"
            "require_certificate false\n"
            "listener %d 127.0.0.1\ncafile %s\ncertfile %s/srv-other.pem\nkeyfile %s/srv-other.key\n"
            "require_certificate false\n",
            pwfile, d, mq.port, ca, d, d, port_other, ca, d, d);
    fclose(f);
    if (broker_start(&mq)) {
        CHECKF(0, "mosquitto with TLS did not start (see %s)", d);
        return;
    }
    sub s;
    CHECK(sub_start_auth(&s, mq.port, "itscam-tls-sub", 1, "tls/events", ca, "itscam-user", PW_RIGHT) == 0);
    CHECKF(sub_wait(&s, &s.subacks, 1, 10000) == 0, "the TLS subscriber never subscribed (see %s/mosquitto.log)", d);

    enum { N_CASES = 6 };
    static const char *const targets[N_CASES] = { "ok", "badpw", "noca", "noca-insecure", "name", "name-insecure" };
    auth_case c[N_CASES];
    memset(c, 0, sizeof c);
    for (int i = 0; i < N_CASES; i++) {
        int other = !strncmp(targets[i], "name", 4);
        c[i].prm = auth_params(IT_PUB_MQTT, targets[i], other ? port_other : mq.port, "itscam-user",
                               strcmp(targets[i], "badpw") ? PW_RIGHT : PW_WRONG);
        it_publisher_params *p = &c[i].prm;
        snprintf(p->client_id, sizeof p->client_id, "itscam-tls-%s", targets[i]);
        snprintf(p->prefix, sizeof p->prefix, "%s", i ? targets[i] : "tls");
        p->tls.enabled = 1;
        if (strncmp(targets[i], "noca", 4)) snprintf(p->tls.ca_file, sizeof p->tls.ca_file, "%s", ca);
        p->tls.insecure = strstr(targets[i], "insecure") != NULL;
    }
    c[0].deliver = 1;
    c[1].why[0] = "refused: Connection Refused: not authorised", c[1].why[1] = "bad user name or password";
    /* Without the CA the broker's certificate is checked against the system's CAs, which
     * never signed it, tls_insecure or not: tls_insecure is about the host name only. */
    c[2].why[0] = c[3].why[0] = "TLS: certificate verify failed (the broker's certificate is not signed by a "
                                "system CA; a private CA needs ca_file)";
    c[4].why[0] = "TLS: host name verification failed (the broker's certificate does not name 127.0.0.1; "
                  "tls_insecure skips this check)";
    c[5].deliver = 1;
    it_store *st[2] = { open_store("tls-a"), open_store("tls-b") };
    if (!st[0] || !st[1]) return;
    CHECK_OK(it_store_outbox_targets(st[0], targets, 3));
    CHECK_OK(it_store_outbox_targets(st[1], targets + 3, 3));
    for (int i = 0; i < N_CASES; i++) c[i].st = st[i / 3];
    logs_reset();
    itscam_log_set(log_capture, NULL, ITSCAM_LOG_DEBUG);
    run_cases(c, N_CASES, 20, sub_has, &s);
    itscam_log_set(NULL, NULL, 0);
    /* The subscriber over TLS got the 20 events, in order. */
    pthread_mutex_lock(&s.mu);
    int dups = 0;
    char why[256] = "";
    CHECKF(check_sequence(s.ids, s.n, 1, 20, &dups, why, sizeof why) == 0 && !dups, "tls/events: %s, %d dups", why,
           dups);
    pthread_mutex_unlock(&s.mu);
    CHECK(logs_contain("publish ok: connected to 127.0.0.1") && logs_contain("publish badpw: "));
    CHECKF(!logs_contain(PW_RIGHT) && !logs_contain(PW_WRONG), "a password in the log:\n%s", logs.text);
    logs_reset();
    sub_stop(&s);
    it_store_close(st[0]);
    it_store_close(st[1]);
    broker_signal(&mq, SIGTERM);
}

/* A client authenticated with the default user's password, on db. */
static redisContext *redis_auth(int port, const char *password, int db) {
    redisContext *c = redisConnect("127.0.0.1", port);
    if (!c || c->err) {
        if (c) redisFree(c);
        return NULL;
    }
    redisReply *r = redisCommand(c, "AUTH %s", password);
    int ok = r && r->type == REDIS_REPLY_STATUS;
    if (r) freeReplyObject(r);
    if (ok && db) {
        r = redisCommand(c, "SELECT %d", db);
        ok = r && r->type == REDIS_REPLY_STATUS;
        if (r) freeReplyObject(r);
    }
    if (!ok) redisFree(c);
    return ok ? c : NULL;
}

/* Redis with requirepass and an ACL user: both deliver to their db (and only there); a
 * wrong password is refused at AUTH, no password at all at XADD; no password in an error
 * or a log line. */
static void test_redis_auth(void) {
    broker rd;
    if (broker_init(&rd, 1, "redis-auth")) {
        CHECK(!"no free port");
        return;
    }
    snprintf(rd.requirepass, sizeof rd.requirepass, "%s", PW_RIGHT);
    if (broker_start(&rd)) {
        CHECKF(0, "redis-server with requirepass did not start (see %s)", rd.dir);
        return;
    }
    /* An ACL user besides the default one (whose password is requirepass). */
    redisContext *adm = redis_auth(rd.port, PW_RIGHT, 0);
    CHECK(adm != NULL);
    if (!adm) return;
    redisReply *r = redisCommand(adm, "ACL SETUSER itscam-user on >%s ~* +@all", PW_USER);
    CHECKF(r && r->type == REDIS_REPLY_STATUS, "ACL SETUSER: %s", r && r->str ? r->str : "no reply");
    if (r) freeReplyObject(r);
    redisFree(adm);

    enum { N_CASES = 4 };
    static const char *const targets[N_CASES] = { "r-pass", "r-user", "r-badpw", "r-nopass" };
    auth_case c[N_CASES];
    memset(c, 0, sizeof c);
    c[0].prm = auth_params(IT_PUB_REDIS, targets[0], rd.port, NULL, PW_RIGHT);
    c[0].prm.db = 3;
    snprintf(c[0].prm.stream, sizeof c[0].prm.stream, "auth:pass");
    c[0].deliver = 1;
    c[1].prm = auth_params(IT_PUB_REDIS, targets[1], rd.port, "itscam-user", PW_USER);
    c[1].prm.db = 5;
    snprintf(c[1].prm.stream, sizeof c[1].prm.stream, "auth:user");
    c[1].deliver = 1;
    c[2].prm = auth_params(IT_PUB_REDIS, targets[2], rd.port, NULL, PW_WRONG);
    c[2].prm.db = 3;
    c[2].why[0] = "AUTH refused: WRONGPASS";
    c[2].why[1] = "AUTH refused: ERR invalid password";
    c[3].prm = auth_params(IT_PUB_REDIS, targets[3], rd.port, NULL, NULL);
    c[3].why[0] = "PING refused: NOAUTH";
    it_store *st = open_store("redis-auth");
    if (!st) return;
    CHECK_OK(it_store_outbox_targets(st, targets, N_CASES));
    for (int i = 0; i < N_CASES; i++) c[i].st = st;
    logs_reset();
    itscam_log_set(log_capture, NULL, ITSCAM_LOG_DEBUG);
    run_cases(c, N_CASES, 10, NULL, NULL);
    itscam_log_set(NULL, NULL, 0);
    CHECKF(!logs_contain(PW_RIGHT) && !logs_contain(PW_WRONG) && !logs_contain(PW_USER), "a password in the log:\n%s",
           logs.text);
    logs_reset();
    /* Each stream is in its db, and only there. */
    static const struct { int db; const char *stream; } where[2] = { { 3, "auth:pass" }, { 5, "auth:user" } };
    for (int k = 0; k < 2; k++) {
        redisContext *rc = redis_auth(rd.port, PW_RIGHT, where[k].db);
        CHECK(rc != NULL);
        if (!rc) continue;
        int n = 0, dups = 0;
        char why[256] = "";
        int64_t *ids = stream_ids(rc, where[k].stream, &n, NULL);
        CHECKF(ids && check_sequence(ids, n, 1, 10, &dups, why, sizeof why) == 0 && !dups, "db %d %s: %d entries, %s",
               where[k].db, where[k].stream, n, why);
        free(ids);
        redisFree(rc);
        rc = redis_auth(rd.port, PW_RIGHT, 0);
        if (!rc) continue;
        r = redisCommand(rc, "EXISTS %s", where[k].stream);
        CHECKF(r && r->type == REDIS_REPLY_INTEGER && r->integer == 0, "%s is in db 0 too", where[k].stream);
        if (r) freeReplyObject(r);
        redisFree(rc);
    }
    it_store_close(st);
    broker_signal(&rd, SIGTERM);
}

/* ---- bench mode ---- */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* events at rate/s for secs; MQTT down from out1 for len s, Redis from out2 for len s. */
static int bench(int argc, char **argv) {
    double secs = argc > 2 ? atof(argv[2]) : 90, rate = argc > 3 ? atof(argv[3]) : 500;
    double len = argc > 4 ? atof(argv[4]) : 30, out1 = argc > 5 ? atof(argv[5]) : 10,
           out2 = argc > 6 ? atof(argv[6]) : 45;
    broker mq, rd;
    if (broker_init(&mq, 0, "mosquitto") || broker_init(&rd, 1, "redis") || broker_start(&mq) || broker_start(&rd)) {
        fprintf(stderr, "bench: brokers did not start\n");
        return 1;
    }
    sub s;
    if (sub_start(&s, mq.port, "itscam-bench-sub", 0, "itscam/events") || sub_wait(&s, &s.subacks, 1, 10000)) {
        fprintf(stderr, "bench: no subscriber\n");
        return 1;
    }
    it_store *st = open_store("bench");
    const char *targets[] = { "mqtt", "redis" };
    if (!st || it_store_outbox_targets(st, targets, 2) != ITSCAM_OK) return 1;
    /* The production settings: backoff 1 s doubling to 30 s. */
    wake_list wl = { { start_pub(st, IT_PUB_MQTT, mq.port, NULL, "itscam-bench-pub", 0),
                       start_pub(st, IT_PUB_REDIS, rd.port, NULL, NULL, 0) } };
    it_event_writer *w = NULL;
    if (!wl.p[0] || !wl.p[1] || it_event_writer_start(st, 0, &w) != ITSCAM_OK) return 1;
    it_event_writer_on_commit(w, on_commit, &wl);
    double t0 = it_now_ms(), t0_wall = wall_now(), back_at[2] = { 0, 0 };
    int64_t produced = 0;
    int mq_down = 0, rd_down = 0, mq_done = 0, rd_done = 0;
    /* Events stop at secs; an outage still running then ends as planned. */
    double end = secs > out1 + len ? secs : out1 + len;
    if (end < out2 + len) end = out2 + len;
    while (it_now_ms() - t0 < end * 1e3) {
        double t = (it_now_ms() - t0) / 1e3;
        if (!mq_down && !mq_done && t >= out1) broker_signal(&mq, SIGKILL), mq_down = 1;
        if (mq_down && t >= out1 + len) broker_start(&mq), mq_down = 0, mq_done = 1, back_at[0] = wall_now();
        if (!rd_down && !rd_done && t >= out2) broker_signal(&rd, SIGKILL), rd_down = 1;
        if (rd_down && t >= out2 + len) broker_start(&rd), rd_down = 0, rd_done = 1, back_at[1] = wall_now();
        /* Paced by the clock: the events due by now, at most a second's worth at once. */
        int64_t due = (int64_t)((t < secs ? t : secs) * rate);
        for (int k = 0; produced < due && k < (int)rate; k++, produced++) {
            it_store_event e;
            make_event(&e, (int)(produced % 1000000));
            if (it_event_writer_push(w, &e)) fprintf(stderr, "bench: the writer's queue was full\n");
        }
        sleep_ms(10);
    }
    it_event_writer_flush(w);
    it_event_writer_stop(w);
    double drain_from = it_now_ms();
    while (it_now_ms() - drain_from < 120e3 && (pending(st, "mqtt") || pending(st, "redis"))) sleep_ms(100);
    sleep_ms(2000);
    it_event_filter asc = { .ascending = 1 };
    it_store_event first, last;
    int n;
    int64_t nc;
    it_store_events_query(st, &asc, 1, 0, &first, &n, &nc);
    asc.ascending = 0;
    it_store_events_query(st, &asc, 1, 0, &last, &n, &nc);
    int64_t span = last.id - first.id + 1;
    /* Event times by id, for the delays. */
    double *etime = calloc((size_t)span, sizeof *etime);
    for (int64_t cur = first.id - 1;;) {
        static it_store_event page[1000];
        it_event_filter f = { .ascending = 1 };
        int k;
        if (it_store_events_query(st, &f, 1000, cur, page, &k, &nc) != ITSCAM_OK || !k) break;
        for (int i = 0; i < k; i++) etime[page[i].id - first.id] = page[i].time;
        cur = page[k - 1].id;
        if (!nc) break;
    }
    int rc = 0;
    for (int b = 0; b < 2; b++) {
        int64_t *ids;
        double *at;
        int m;
        double *rd_ms = NULL;
        if (b == 0) {
            pthread_mutex_lock(&s.mu);
            m = s.n, ids = s.ids, at = s.at;
        } else {
            ids = redis_ids(rd.port, "itscam:events", &m, &rd_ms);
            at = rd_ms;
            for (int i = 0; at && i < m; i++) at[i] /= 1e3; /* the stream id's milliseconds */
        }
        char *seen = calloc((size_t)span, 1);
        int64_t delivered = 0, dups = 0;
        double *delay = malloc(((size_t)m + 1) * sizeof *delay);
        int nd = 0;
        double first_after = 0, last_first = 0; /* arrival times (unix seconds) */
        for (int i = 0; ids && i < m; i++) {
            int64_t k = ids[i] - first.id;
            if (k < 0 || k >= span) continue;
            if (seen[k]) {
                dups++;
                continue;
            }
            seen[k] = 1, delivered++;
            delay[nd++] = at[i] - etime[k];
            if (at[i] > last_first) last_first = at[i];
            if (back_at[b] && at[i] >= back_at[b] && (!first_after || at[i] < first_after)) first_after = at[i];
        }
        char why[256] = "in order";
        int d2;
        int order = ids ? check_sequence(ids, m, first.id, last.id, &d2, why, sizeof why) : -1;
        qsort(delay, (size_t)nd, sizeof *delay, cmp_double);
        double p50 = nd ? delay[nd / 2] : NAN, p99 = nd ? delay[nd * 99 / 100] : NAN, max = nd ? delay[nd - 1] : NAN;
        printf("{\"broker\": \"%s\", \"outage_s\": %.0f, \"seconds\": %.0f, \"rate\": %.0f, \"produced\": %lld, "
               "\"delivered\": %lld, \"lost\": %lld, \"duplicates\": %lld, \"order\": \"%s\", "
               "\"delay_p50_s\": %.3f, \"delay_p99_s\": %.3f, \"delay_max_s\": %.3f, \"back_at_s\": %.1f, \"first_after_back_s\": %.1f, "
               "\"all_delivered_at_s\": %.1f}\n",
               b ? "redis" : "mqtt", len, secs, rate, (long long)span, (long long)delivered,
               (long long)(span - delivered), (long long)dups, order ? why : "in order, re-sends only", p50, p99, max,
               back_at[b] ? back_at[b] - t0_wall : NAN, first_after ? first_after - back_at[b] : NAN,
               last_first - t0_wall);
        if (delivered != span || order) rc = 1;
        if (b == 0) pthread_mutex_unlock(&s.mu);
        else free(ids), free(rd_ms);
        free(seen), free(delay);
    }
    fflush(stdout);
    free(etime);
    it_publisher_stop(wl.p[0]);
    it_publisher_stop(wl.p[1]);
    sub_stop(&s);
    it_store_close(st);
    broker_signal(&mq, SIGTERM);
    broker_signal(&rd, SIGTERM);
    return rc;
}

static void rm_tmp(void) {
    kill_all();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (tmp[0] && system(cmd)) fprintf(stderr, "could not remove %s\n", tmp);
}

int main(int argc, char **argv) {
    if (argc > 3 && !strcmp(argv[1], "--child-mqtt")) return child_mqtt(argv);
    mosquitto_lib_init();
    test_config();
    if (check_failures) return check_done("test_publish");
    if (find_bin("mosquitto", mosquitto_bin, sizeof mosquitto_bin) ||
        find_bin("redis-server", redis_bin, sizeof redis_bin))
        SKIP("mosquitto or redis-server is not installed (Debian: apt-get install mosquitto redis-server); the "
             "configuration checks passed");
    snprintf(tmp, sizeof tmp, "/tmp/itscam-publish-XXXXXX");
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 1;
    }
    atexit(rm_tmp);
    /* SIGPIPE is left as it is: the publishers must survive a dead Redis by themselves. */
    if (argc > 1 && !strcmp(argv[1], "--bench")) {
        int rc = bench(argc, argv);
        mosquitto_lib_cleanup();
        return rc;
    }
    double t0 = it_now_ms();
    test_delivery();
    printf("delivery: %.1f s\n", (it_now_ms() - t0) / 1e3);
    test_last_will();
    test_server();
    double t1 = it_now_ms();
    test_mqtt_tls();
    printf("mqtt tls and passwords: %.1f s\n", (it_now_ms() - t1) / 1e3);
    t1 = it_now_ms();
    test_redis_auth();
    printf("redis passwords: %.1f s\n", (it_now_ms() - t1) / 1e3);
    mosquitto_lib_cleanup();
    printf("total: %.1f s\n", (it_now_ms() - t0) / 1e3);
    return check_done("test_publish");
}
