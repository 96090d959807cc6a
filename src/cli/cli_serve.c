/* itscam serve: configuration (defaults < strategy < file < environment < flags), then
 * the server, then a signal loop: SIGTERM/SIGINT drain and exit, SIGHUP reloads. */
#include "cli/cli.h"
#include "server/server.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

void cli_serve_usage(FILE *f) {
    fprintf(f, "usage: itscam serve (--model FILE | --models DIR) [--config FILE] [--strategy NAME]\n"
               "                    [--port N] [--host ADDR] [--camera ID=URL]... [SETTING FLAGS]\n"
               "                    [--print-config]\n\n"
               "Serves KServe v2 (/v2/...), the detection API (/v1/detect, /v1/detect/batch), /metrics,\n"
               "/health and /ready. Settings come from the defaults, then --strategy, then the YAML\n"
               "file, then ITSCAM__SECTION__KEY environment variables, then flags. Cameras come from\n"
               "the file's cameras: list, ITSCAM__CAMERAS__ID__KEY variables and --camera ID=URL.\n"
               "SIGTERM drains requests in flight and exits; SIGHUP reloads models and tokens.\n\n"
               "settings:\n");
    srv_config_usage(f);
}

static int serve_log_level = ITSCAM_LOG_INFO;

static void log_stderr(int level, const char *msg, void *user) {
    (void)user;
    static const char *const names[] = { "error", "warn", "info", "debug" };
    fprintf(stderr, "itscam: %s: %s\n", level >= 0 && level <= 3 ? names[level] : "?", msg);
}

int cli_serve(int argc, char **argv) {
    srv_config cfg;
    srv_config_defaults(&cfg);
    char err[1024];
    const char *config_path = NULL, *strategy = NULL;
    int print_config = 0;
    /* Pass 1: where the file and the strategy are (they apply before the flags). */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            cli_serve_usage(stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--config") && i + 1 < argc) config_path = argv[++i];
        else if (!strcmp(argv[i], "--strategy") && i + 1 < argc) strategy = argv[++i];
    }
    if (strategy && srv_config_apply_strategy(&cfg, strategy, err, sizeof err) != 0) {
        fprintf(stderr, "itscam serve: %s\n", err);
        return 2;
    }
    if (config_path && srv_config_load_file(&cfg, config_path, err, sizeof err) != 0) {
        fprintf(stderr, "itscam serve: %s\n", err);
        return 2;
    }
    /* Cameras: the file's list, then ITSCAM__CAMERAS__ variables, then --camera flags. */
    it_camdef *cams = NULL;
    int n_cams = 0;
    if ((config_path && srv_cameras_load_file(config_path, &cams, &n_cams, err, sizeof err) != 0) ||
        srv_config_load_env(&cfg, environ, err, sizeof err) != 0 ||
        srv_cameras_load_env(&cams, &n_cams, environ, err, sizeof err) != 0) {
        fprintf(stderr, "itscam serve: %s\n", err);
        free(cams);
        return 2;
    }
    for (int i = 1; i < argc;) {
        if (!strcmp(argv[i], "--camera") || !strncmp(argv[i], "--camera=", 9)) {
            const char *v = argv[i][8] == '=' ? argv[i] + 9 : i + 1 < argc ? argv[i + 1] : "";
            if (srv_cameras_flag(&cams, &n_cams, v, err, sizeof err) != 0) {
                fprintf(stderr, "itscam serve: %s\n", err);
                free(cams);
                return 2;
            }
            i += argv[i][8] == '=' ? 1 : 2;
            continue;
        }
        if (!strcmp(argv[i], "--config") || !strcmp(argv[i], "--strategy")) {
            i += 2;
            continue;
        }
        if (!strcmp(argv[i], "--print-config")) {
            print_config = 1;
            i++;
            continue;
        }
        if (!strcmp(argv[i], "--no-fallback")) { /* the flag form of models.no_fallback: 1 */
            cfg.no_fallback = 1;
            i++;
            continue;
        }
        /* On success srv_config_flag leaves i on the next unread argument. */
        int rc = srv_config_flag(&cfg, argc, argv, &i, err, sizeof err);
        if (rc == 1) continue;
        if (rc < 0) {
            fprintf(stderr, "itscam serve: %s\n", err);
            free(cams);
            return 2;
        }
        fprintf(stderr, "itscam serve: unknown option '%s' (itscam serve --help lists them)\n", argv[i]);
        free(cams);
        return 2;
    }
    if (print_config) {
        srv_config_dump(stdout, &cfg);
        for (int k = 0; k < n_cams; k++) { /* one line of JSON per camera, URL redacted */
            json_t *j = it_camdef_to_json(&cams[k], 1);
            char *t = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(9)) : NULL;
            if (t) printf("cameras[%d] = %s\n", k, t);
            free(t);
            json_decref(j);
        }
        free(cams);
        return 0;
    }
    char note[512];
    if (srv_config_validate(&cfg, note, sizeof note, err, sizeof err) != 0) {
        fprintf(stderr, "itscam serve: %s\n", err);
        free(cams);
        return 2;
    }
    if (note[0]) fprintf(stderr, "itscam serve: note: %s\n", note);
    if (srv_config_cameras_threading(&cfg, n_cams))
        fprintf(stderr, "itscam serve: note: %d cameras: %d workers of 1 thread each (models.workers and "
                "models.threads choose otherwise)\n", n_cams, cfg.workers);
    serve_log_level = !strcmp(cfg.log_level, "error") ? ITSCAM_LOG_ERROR
                      : !strcmp(cfg.log_level, "warn") ? ITSCAM_LOG_WARN
                      : !strcmp(cfg.log_level, "debug") ? ITSCAM_LOG_DEBUG : ITSCAM_LOG_INFO;
    itscam_log_set(log_stderr, NULL, serve_log_level);

    /* Signals go to this thread only, through sigwait: every thread started from here
     * on (HTTP pool, workers, OpenMP) inherits the blocked mask. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    srv_server *s = srv_server_start(&cfg, err, sizeof err);
    if (!s) {
        fprintf(stderr, "itscam serve: %s\n", err);
        free(cams);
        return 1;
    }
    fprintf(stderr, "itscam serve: listening on %s://%s:%d\n", cfg.tls_cert[0] ? "https" : "http", cfg.host,
            srv_server_port(s));
    fprintf(stderr, "itscam serve: loading %s and warming up\n", cfg.model[0] ? cfg.model : cfg.models_dir);
    fflush(stderr);
    if (srv_server_load(s, err, sizeof err) != 0 || srv_cameras_start(s, cams, n_cams, err, sizeof err) != 0) {
        fprintf(stderr, "itscam serve: %s\n", err);
        srv_server_stop(s);
        free(cams);
        return 1;
    }
    free(cams);
    fprintf(stderr, "itscam serve: ready\n");
    fflush(stderr);
    for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0) continue;
        if (sig == SIGHUP) {
            fprintf(stderr, "itscam serve: SIGHUP: reloading models\n");
            if (srv_server_reload(s, err, sizeof err) != 0)
                fprintf(stderr, "itscam serve: reload failed, the old models stay: %s\n", err);
            else
                fprintf(stderr, "itscam serve: reloaded\n");
            continue;
        }
        fprintf(stderr, "itscam serve: %s: draining requests in flight\n", sig == SIGTERM ? "SIGTERM" : "SIGINT");
        break;
    }
    srv_server_stop(s);
    fprintf(stderr, "itscam serve: stopped\n");
    return 0;
}
