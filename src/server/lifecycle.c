/* The server's life: start (listen at once, health answers while the models load),
 * load and warm up, reload (SIGHUP, or POST /v1/models/reload), drain and stop
 * (SIGTERM). The signals themselves are the CLI's (cli_serve.c): it calls these. */
#include "server/http_internal.h"

#include "core/core.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char *slurp(const char *path, char *err, size_t n) {
    uint8_t *b;
    size_t len;
    if (it_read_file(path, &b, &len, 1 << 20) != ITSCAM_OK) {
        snprintf(err, n, "%s", itscam_last_error());
        return NULL;
    }
    char *s = it_realloc(b, len + 1);
    if (!s) {
        it_free(b);
        snprintf(err, n, "out of memory");
        return NULL;
    }
    s[len] = 0;
    return s;
}

static void free_server(srv_server *s) {
    srv_guard_stop(s->guard); /* after the daemon: every connection is closed */
    srv_live_free(s);         /* likewise: no stream reads the bus or the frames */
    srv_registry_release(s->reg);
    srv_metrics_free(&s->mx);
    it_free(s->tls_key);
    it_free(s->tls_cert);
    pthread_rwlock_destroy(&s->reg_lock);
    pthread_mutex_destroy(&s->cam_mu);
    pthread_mutex_destroy(&s->reload_mu);
    pthread_mutex_destroy(&s->rt_mu);
    pthread_cond_destroy(&s->reload_cv);
    it_free(s->reload_waiters);
    srv_admission_destroy(&s->adm);
    it_free(s);
}

/* A device backend gets the configured breaker; the CPU has none. */
static int configure_breaker(const srv_config *cfg, char *err, size_t errlen) {
    if (!itscam_backend_is_device(cfg->backend)) return 0;
    itscam_breaker_config bc = { .failure_threshold = cfg->breaker_failures, .oom_threshold = cfg->breaker_oom,
                                 .open_ms = cfg->breaker_open_ms, .half_open_probes = cfg->breaker_probes };
    if (itscam_breaker_configure(cfg->backend, &bc) != ITSCAM_OK) {
        snprintf(err, errlen, "breaker: %s", itscam_last_error());
        return -1;
    }
    return 0;
}

static unsigned http_pool_size(const srv_config *cfg) {
    if (cfg->http_threads > 0) return (unsigned)cfg->http_threads;
    /* Logical CPUs on purpose, not it_physical_cores(): HTTP threads spend most of their
     * time in I/O and JPEG decoding, which SMT siblings run well; inference threads are
     * the ones sized by physical cores. */
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    return (unsigned)(cores > 0 ? cores : 2);
}

static int listen_http(srv_server *s, char *err, size_t errlen) {
    const srv_config *cfg = &s->cfg;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (MHD_is_feature_supported(MHD_FEATURE_EPOLL) == MHD_YES) flags |= MHD_USE_EPOLL;
    if (cfg->tls_cert[0]) {
        if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
            snprintf(err, errlen, "TLS is configured but this libmicrohttpd has no TLS support");
            return -1;
        }
        if (!(s->tls_cert = slurp(cfg->tls_cert, err, errlen)) || !(s->tls_key = slurp(cfg->tls_key, err, errlen)))
            return -1;
        flags |= MHD_USE_TLS;
    }
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)cfg->port);
    if (inet_pton(AF_INET, cfg->host, &sa.sin_addr) != 1) {
        snprintf(err, errlen, "server.host: '%s' is not an IPv4 address", cfg->host);
        return -1;
    }
    /* The guard's deadlines and reserved slots: libmicrohttpd admits max_connections plus
     * the reserved ones; past max_connections only the reserved routes are served. A
     * kept-alive connection gets connection_timeout_s for its next request's headers. */
    srv_guard_limits gl = { .header_timeout_s = cfg->header_timeout_s,
                            .keepalive_timeout_s = cfg->connection_timeout_s,
                            .min_body_rate = cfg->min_body_rate,
                            .stream_send_timeout_s = cfg->stream_send_timeout_s,
                            .max_connections = cfg->max_connections,
                            .max_streams = cfg->max_streams };
    if (!(s->guard = srv_guard_start(&gl, err, errlen))) return -1;
    struct MHD_OptionItem tls_opts[] = {
        { MHD_OPTION_HTTPS_MEM_KEY, 0, s->tls_key },
        { MHD_OPTION_HTTPS_MEM_CERT, 0, s->tls_cert },
        { MHD_OPTION_END, 0, NULL },
    };
    s->d = MHD_start_daemon(flags, (uint16_t)cfg->port, NULL, NULL, http_access, s,
                            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                            MHD_OPTION_THREAD_POOL_SIZE, http_pool_size(cfg),
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)(cfg->max_connections + cfg->reserved_connections),
                            MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)cfg->max_connections_per_ip,
                            MHD_OPTION_NOTIFY_CONNECTION, srv_guard_notify, s->guard,
                            MHD_OPTION_EXTERNAL_LOGGER, http_log, s,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->connection_timeout_s,
                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)128 * 1024,
                            MHD_OPTION_LISTENING_ADDRESS_REUSE, 1u,
                            MHD_OPTION_NOTIFY_COMPLETED, http_completed, s,
                            MHD_OPTION_ARRAY, cfg->tls_cert[0] ? tls_opts : tls_opts + 2,
                            MHD_OPTION_END);
    if (!s->d) {
        snprintf(err, errlen, "cannot listen on %s:%d: %s", cfg->host, cfg->port,
                 errno ? strerror(errno) : "libmicrohttpd refused the options");
        return -1;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : cfg->port;
    return 0;
}

srv_server *srv_server_start(const srv_config *cfg, char *err, size_t errlen) {
    srv_server *s = it_calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->cfg = *cfg;
    pthread_rwlock_init(&s->reg_lock, NULL);
    pthread_mutex_init(&s->cam_mu, NULL);
    pthread_mutex_init(&s->reload_mu, NULL);
    pthread_mutex_init(&s->rt_mu, NULL);
    pthread_cond_init(&s->reload_cv, NULL);
    srv_admission_init(&s->adm, cfg->decode_budget_bytes);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    s->start_unix = (double)now.tv_sec + now.tv_nsec / 1e9;
    if (srv_metrics_init(&s->mx, cfg) != 0) {
        snprintf(err, errlen, "out of memory for the metrics");
        free_server(s);
        return NULL;
    }
    srv_metrics_collect_on(s);
    if (configure_breaker(cfg, err, errlen) != 0 || srv_auth_load(s, err, errlen) != 0 ||
        srv_live_start(s, err, errlen) != 0 || listen_http(s, err, errlen) != 0) {
        free_server(s);
        return NULL;
    }
    return s;
}

/* Listening comes first so that probes see "live, not ready" during the warm-up; model
 * routes answer 503 until then. A model that cannot load fails the start. */
/* The first two JPEG decodes of a process take 15-40 ms where later ones take 3 ms
 * (measured on 1280x720: heap growth, first touches of libjpeg's code and tables), so a
 * server that reports ready decodes a frame of that size twice first, and the first
 * client does not pay for it. Best effort: a failure here only costs that time later. */
static void warm_decoder(void) {
    it_image img;
    if (it_image_alloc(&img, 1280, 720) != ITSCAM_OK) return;
    for (int y = 0; y < img.height; y++)
        for (int x = 0; x < img.width * 3; x++) img.data[(size_t)y * img.stride + x] = (uint8_t)(x ^ y);
    uint8_t *jpg = NULL;
    size_t len = 0;
    if (it_image_encode_jpeg(&img, 90, &jpg, &len) == ITSCAM_OK) {
        for (int i = 0; i < 2; i++) {
            it_image out;
            if (it_image_decode(jpg, len, (size_t)1280 * 720, &out) == ITSCAM_OK) it_image_free(&out);
        }
    }
    it_free(jpg);
    it_image_free(&img);
}

/* Load the models from a copy of the configuration taken under rt_mu: PUT
 * /v1/admin/scheduler may change its batching settings meanwhile (api_admin.c). */
static srv_registry *load_models(srv_server *s, char *err, size_t errlen) {
    srv_config *snap = it_malloc(sizeof *snap);
    if (!snap) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_lock(&s->rt_mu);
    *snap = s->cfg;
    pthread_mutex_unlock(&s->rt_mu);
    srv_registry *r = srv_registry_load(snap, &s->mx, err, errlen);
    it_free(snap);
    return r;
}

/* Put the settings changed at run time since the load began in force on r's models;
 * the caller holds rt_mu until r is installed, so none is missed. */
static void catch_up_runtime(srv_server *s, srv_registry *r) {
    char rerr[320];
    if (srv_registry_runtime_apply(r, &s->cfg, rerr, sizeof rerr) != 0)
        it_log(ITSCAM_LOG_WARN, "scheduler settings changed during the load: %s", rerr);
}

int srv_server_load(srv_server *s, char *err, size_t errlen) {
    warm_decoder();
    srv_registry *r = load_models(s, err, errlen);
    if (!r) return -1;
    pthread_mutex_lock(&s->rt_mu);
    catch_up_runtime(s, r);
    pthread_rwlock_wrlock(&s->reg_lock);
    s->reg = r;
    pthread_rwlock_unlock(&s->reg_lock);
    pthread_mutex_unlock(&s->rt_mu);
    atomic_store(&s->ready, 1);
    return 0;
}

int srv_server_port(const srv_server *s) {
    return s->port;
}

it_bus *srv_server_bus(srv_server *s) {
    return s->bus;
}

it_frames *srv_server_frames(srv_server *s) {
    return s->frames;
}

/* ---- reload ----------------------------------------------------------------------
 * A load costs about a second of CPU per model, so reloads coalesce: while one runs,
 * every further request (POST /v1/models/reload or SIGHUP) waits for it and gets its
 * result instead of starting another. N concurrent requests cost one load; a request
 * made after a load ended starts a fresh one, so the files it reads are never older
 * than the request. HTTP requests wait suspended, not on a pool thread, so that the
 * connections that thread serves keep moving during the load. */

/* Load, swap and release: the load itself, run by one thread at a time. */
static int reload_once(srv_server *s, char *err, size_t errlen) {
    double t0 = it_now_ms();
    srv_registry *nr = load_models(s, err, errlen);
    if (!nr) return -1;
    char terr[256] = "";
    if (srv_auth_load(s, terr, sizeof terr) != 0) it_log(ITSCAM_LOG_WARN, "reload: %s (tokens unchanged)", terr);
    pthread_mutex_lock(&s->rt_mu);
    catch_up_runtime(s, nr);
    pthread_rwlock_wrlock(&s->reg_lock);
    int stopping = atomic_load(&s->draining); /* srv_server_stop has taken the registry */
    srv_registry *old = stopping ? nr : s->reg;
    if (!stopping) s->reg = nr;
    pthread_rwlock_unlock(&s->reg_lock);
    pthread_mutex_unlock(&s->rt_mu);
    srv_registry_release(old); /* models still in use live until their last request */
    if (stopping) {
        snprintf(err, errlen, "the server is shutting down");
        return -1;
    }
    it_log(ITSCAM_LOG_INFO, "reload: %d model(s) loaded in %.0f ms", nr->n, it_now_ms() - t0);
    return 0;
}

/* Run one load with s->reloading already set by the caller, publish its result, wake
 * the threads and resume the HTTP requests that waited on it. */
static void reload_run(srv_server *s) {
    char err[320] = "";
    int rc = reload_once(s, err, sizeof err);
    const char *lv[] = { rc == 0 ? "ok" : "error" };
    prom_inc(s->mx.reloads, lv, 1);
    pthread_mutex_lock(&s->reload_mu);
    s->reload_rc = rc;
    snprintf(s->reload_err, sizeof s->reload_err, "%s", err);
    for (int i = 0; i < s->n_reload_waiters; i++) {
        http_req *r = s->reload_waiters[i];
        if (rc != 0) {
            r->fail_code = 500;
            snprintf(r->fail_msg, sizeof r->fail_msg, "reload failed: %s", err);
        }
        MHD_resume_connection(r->conn);
    }
    if (s->n_reload_waiters > 1)
        it_log(ITSCAM_LOG_INFO, "reload: %d requests answered by one load", s->n_reload_waiters);
    s->n_reload_waiters = 0;
    s->reloading = 0;
    s->reload_gen++;
    pthread_cond_broadcast(&s->reload_cv);
    pthread_mutex_unlock(&s->reload_mu); /* the last touch of s: srv_server_stop waits for it */
}

static void *reload_thread(void *arg) {
    reload_run(arg);
    return NULL;
}

int srv_server_reload(srv_server *s, char *err, size_t errlen) {
    pthread_mutex_lock(&s->reload_mu);
    if (s->reloading) { /* join the running load */
        unsigned long gen = s->reload_gen;
        while (s->reload_gen == gen) pthread_cond_wait(&s->reload_cv, &s->reload_mu);
    } else {
        s->reloading = 1;
        pthread_mutex_unlock(&s->reload_mu);
        reload_run(s);
        pthread_mutex_lock(&s->reload_mu);
        /* A later load may have ended meanwhile; its result is as fresh as ours. */
    }
    int rc = s->reload_rc;
    snprintf(err, errlen, "%s", s->reload_err);
    pthread_mutex_unlock(&s->reload_mu);
    return rc;
}

int srv_server_reload_async(srv_server *s, http_req *r, http_handler finish) {
    pthread_mutex_lock(&s->reload_mu);
    if (atomic_load(&s->draining)) {
        pthread_mutex_unlock(&s->reload_mu);
        return -1;
    }
    if (s->n_reload_waiters == s->cap_reload_waiters) {
        int nc = s->cap_reload_waiters ? s->cap_reload_waiters * 2 : 8;
        http_req **nw = it_realloc(s->reload_waiters, sizeof *nw * (size_t)nc);
        if (!nw) {
            pthread_mutex_unlock(&s->reload_mu);
            return -1;
        }
        s->reload_waiters = nw;
        s->cap_reload_waiters = nc;
    }
    if (!s->reloading) {
        pthread_t t;
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        s->reloading = 1;
        int e = pthread_create(&t, &a, reload_thread, s);
        pthread_attr_destroy(&a);
        if (e) {
            s->reloading = 0;
            pthread_mutex_unlock(&s->reload_mu);
            return -1;
        }
    }
    /* Suspended under reload_mu, so the load cannot end (and resume r) before it is. */
    r->submitted = 1;
    r->finish = finish;
    s->reload_waiters[s->n_reload_waiters++] = r;
    MHD_suspend_connection(r->conn);
    pthread_mutex_unlock(&s->reload_mu);
    return 0;
}

static void wait_idle(srv_server *s, double until_ms) {
    while (atomic_load(&s->inflight) > 0 && it_now_ms() < until_ms) usleep(10000);
}

void srv_server_stop(srv_server *s) {
    if (!s) return;
    atomic_store(&s->draining, 1);
    MHD_socket ls = MHD_quiesce_daemon(s->d);
    if (ls != MHD_INVALID_SOCKET) close(ls);
    srv_live_end_streams(s); /* streams never end by themselves: they count as in flight */
    wait_idle(s, it_now_ms() + s->cfg.drain_timeout_s * 1e3);
    srv_publish_stop(s); /* MQTT says offline; before the store closes */
    srv_cameras_stop(s); /* its jobs hold model references: before the models go */
    /* Past the drain timeout, jobs still queued are answered 503 at once (which resumes
     * their connections: the daemon must not stop with a connection suspended); batches
     * already running finish. */
    pthread_rwlock_wrlock(&s->reg_lock);
    srv_registry *old = s->reg;
    s->reg = NULL;
    pthread_rwlock_unlock(&s->reg_lock);
    for (int i = 0; old && i < old->n; i++) srv_model_cancel_queued(old->models[i]);
    srv_registry_release(old);
    wait_idle(s, it_now_ms() + 60e3);
    if (atomic_load(&s->inflight) > 0)
        it_log(ITSCAM_LOG_WARN, "stopping with %d requests still in flight", atomic_load(&s->inflight));
    /* A reload thread still loading would resume connections of a stopped daemon and
     * swap into a freed server: wait for its end (it sees draining and discards what it
     * loaded). */
    pthread_mutex_lock(&s->reload_mu);
    while (s->reloading) pthread_cond_wait(&s->reload_cv, &s->reload_mu);
    pthread_mutex_unlock(&s->reload_mu);
    MHD_stop_daemon(s->d);
    free_server(s);
}
