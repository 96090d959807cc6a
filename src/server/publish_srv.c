/* The server's publishers: the publish section of the configuration turned into one
 * publisher per enabled broker (src/sinks/publish.h) over the server's store, and their
 * itscam_publish_* metrics, read at scrape time. */
#include "server/http_internal.h"

#include "core/core.h"
#include "sinks/publish.h"

#include <stdio.h>
#include <string.h>

#define N_BROKERS 2

struct srv_publish {
    it_publisher *pub[N_BROKERS];
    char target[N_BROKERS][32];
    int n;
    prom_family *sent, *pending, *connected, *errors;
};

/* One lock for every server's s->publish: held only for non-blocking work (swapping the
 * pointer, waking, reading stats), so the event writer's hook may take it at any time. */
static pthread_mutex_t pub_mu = PTHREAD_MUTEX_INITIALIZER;

/* The enabled brokers' parameters from c: *n of them (MQTT first). */
static void brokers(const srv_config *c, it_publisher_params out[N_BROKERS], const char *names[N_BROKERS], int *n) {
    *n = 0;
    if (c->mqtt.host[0]) {
        it_publisher_params *p = &out[(*n)];
        names[(*n)++] = "publish.mqtt";
        *p = it_publisher_default_params(IT_PUB_MQTT);
        snprintf(p->host, sizeof p->host, "%s", c->mqtt.host);
        p->port = c->mqtt.port;
        snprintf(p->username, sizeof p->username, "%s", c->mqtt.username);
        snprintf(p->password, sizeof p->password, "%s", c->mqtt.password);
        snprintf(p->client_id, sizeof p->client_id, "%s", c->mqtt.client_id);
        snprintf(p->prefix, sizeof p->prefix, "%s", c->mqtt.prefix);
        p->keepalive_s = c->mqtt.keepalive_s;
        p->tls.enabled = c->mqtt.tls;
        p->tls.insecure = c->mqtt.tls_insecure;
        snprintf(p->tls.ca_file, sizeof p->tls.ca_file, "%s", c->mqtt.ca_file);
        snprintf(p->tls.cert_file, sizeof p->tls.cert_file, "%s", c->mqtt.cert_file);
        snprintf(p->tls.key_file, sizeof p->tls.key_file, "%s", c->mqtt.key_file);
    }
    if (c->redis.host[0]) {
        it_publisher_params *p = &out[(*n)];
        names[(*n)++] = "publish.redis";
        *p = it_publisher_default_params(IT_PUB_REDIS);
        snprintf(p->host, sizeof p->host, "%s", c->redis.host);
        p->port = c->redis.port;
        snprintf(p->username, sizeof p->username, "%s", c->redis.username);
        snprintf(p->password, sizeof p->password, "%s", c->redis.password);
        p->db = c->redis.db;
        snprintf(p->stream, sizeof p->stream, "%s", c->redis.stream);
        p->maxlen = c->redis.maxlen;
        p->tls.enabled = c->redis.tls;
    }
}

/* The parameters hold passwords: leave no copy on the stack. */
static void wipe(it_publisher_params *p, int n) {
    for (int i = 0; i < n; i++) memset(p[i].password, 0, sizeof p[i].password);
}

int srv_config_publish_check(const srv_config *c, char *err, size_t errlen) {
    it_publisher_params p[N_BROKERS];
    const char *names[N_BROKERS];
    int n, rc = 0;
    brokers(c, p, names, &n);
    if (!c->mqtt.host[0] && (c->mqtt.tls || c->mqtt.ca_file[0] || c->mqtt.cert_file[0] || c->mqtt.key_file[0]))
        snprintf(err, errlen, "publish.mqtt: TLS settings without publish.mqtt.host"), rc = -1;
    if (!rc && !c->redis.host[0] && c->redis.tls)
        snprintf(err, errlen, "publish.redis.tls is set without publish.redis.host"), rc = -1;
    for (int i = 0; i < n && !rc; i++)
        if (it_publisher_check(&p[i]) != ITSCAM_OK) {
            /* The check's messages start with "mqtt: " or "redis: ". */
            const char *m = itscam_last_error(), *colon = strchr(m, ':');
            snprintf(err, errlen, "%s:%s", names[i], colon ? colon + 1 : m);
            rc = -1;
        }
    wipe(p, N_BROKERS);
    return rc;
}

static void collect(prom_registry *reg, void *user) {
    (void)reg;
    srv_server *s = user;
    pthread_mutex_lock(&pub_mu);
    struct srv_publish *sp = s->publish;
    for (int i = 0; sp && i < sp->n; i++) {
        it_publisher_stats st;
        it_publisher_stats_get(sp->pub[i], &st);
        const char *lv[] = { sp->target[i] };
        prom_set_total(sp->sent, lv, (double)st.sent);
        prom_set(sp->pending, lv, (double)st.pending);
        prom_set(sp->connected, lv, st.connected);
        prom_set_total(sp->errors, lv, (double)st.errors);
    }
    pthread_mutex_unlock(&pub_mu);
}

static void free_publish(struct srv_publish *sp) {
    if (!sp) return;
    for (int i = 0; i < sp->n; i++) it_publisher_stop(sp->pub[i]);
    it_free(sp);
}

int srv_publish_start(srv_server *s, char *err, size_t errlen) {
    it_publisher_params p[N_BROKERS];
    const char *names[N_BROKERS];
    int n;
    if (srv_config_publish_check(&s->cfg, err, errlen)) return -1;
    brokers(&s->cfg, p, names, &n);
    if (!n) return 0;
    int rc = -1;
    struct srv_publish *sp = it_calloc(1, sizeof *sp);
    const char *targets[N_BROKERS];
    for (int i = 0; i < n; i++) targets[i] = p[i].target;
    if (!sp) {
        snprintf(err, errlen, "publish: out of memory");
        goto out;
    }
    if (it_store_outbox_targets(s->store, targets, n) != ITSCAM_OK) {
        snprintf(err, errlen, "publish: %s", itscam_last_error());
        goto out;
    }
    for (int i = 0; i < n; i++) {
        if (it_publisher_start(s->store, &p[i], &sp->pub[i]) != ITSCAM_OK) {
            snprintf(err, errlen, "%s: %s", names[i], itscam_last_error());
            goto out;
        }
        snprintf(sp->target[i], sizeof sp->target[i], "%s", p[i].target);
        sp->n = i + 1;
        it_log(ITSCAM_LOG_INFO, "publishing events to %s at %s:%d", p[i].target, p[i].host, p[i].port);
    }
    static const char *const target_l[] = { "target", NULL };
    prom_registry *reg = s->mx.reg;
    sp->sent = prom_register(reg, PROM_COUNTER, "itscam_publish_sent_total",
                             "Events the broker acknowledged (their outbox rows deleted)", target_l, NULL, 0);
    sp->pending = prom_register(reg, PROM_GAUGE, "itscam_publish_pending",
                                "Events in the outbox not yet acknowledged by the broker", target_l, NULL, 0);
    sp->connected = prom_register(reg, PROM_GAUGE, "itscam_publish_connected",
                                  "1 while a session with the broker is up", target_l, NULL, 0);
    sp->errors = prom_register(reg, PROM_COUNTER, "itscam_publish_errors_total",
                               "Failed or lost broker connections and refused messages", target_l, NULL, 0);
    if (!sp->sent || !sp->pending || !sp->connected || !sp->errors) {
        snprintf(err, errlen, "publish: cannot register the metrics (out of memory, or started twice)");
        goto out;
    }
    prom_on_collect(reg, collect, s);
    pthread_mutex_lock(&pub_mu);
    s->publish = sp;
    pthread_mutex_unlock(&pub_mu);
    sp = NULL;
    rc = 0;
out:
    free_publish(sp);
    wipe(p, N_BROKERS);
    return rc;
}

void srv_publish_wake(srv_server *s) {
    pthread_mutex_lock(&pub_mu);
    struct srv_publish *sp = s->publish;
    for (int i = 0; sp && i < sp->n; i++) it_publisher_wake(sp->pub[i]);
    pthread_mutex_unlock(&pub_mu);
}

void srv_publish_stop(srv_server *s) {
    pthread_mutex_lock(&pub_mu);
    struct srv_publish *sp = s->publish;
    s->publish = NULL;
    pthread_mutex_unlock(&pub_mu);
    free_publish(sp);
}
