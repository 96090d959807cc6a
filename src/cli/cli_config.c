/* itscam config: write a complete, commented server configuration for a strategy, or
 * check that a configuration file (plus the environment) is one `itscam serve` accepts. */
#include "cli/cli.h"
#include "server/config.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

void cli_config_usage(FILE *f) {
    fprintf(f,
            "usage: itscam config --strategy NAME [--output FILE]\n"
            "       itscam config --check FILE\n\n"
            "--strategy writes a YAML configuration with every setting, its default, its\n"
            "environment variable and what it does; the strategy picks batch sizes, queue\n"
            "delays, workers, threads and precision:\n"
            "  latency_optimized     no waiting to fill batches, one image per inference\n"
            "  balanced              batches of 4 or 8 within 10 to 100 ms\n"
            "  throughput_optimized  batches of 16 or 32, longer waits, deeper queues\n"
            "  memory_optimized      small batches, one worker, short queues\n"
            "--check loads FILE, applies the ITSCAM__SECTION__KEY environment variables and\n"
            "checks the result as `itscam serve` would; it prints \"FILE: ok\" or the error.\n\n"
            "options:\n"
            "  --strategy NAME   one of the strategies above\n"
            "  --output FILE     write there instead of to stdout (atomically: FILE.tmp, then rename)\n"
            "  --check FILE      validate a configuration file\n");
}

/* Write the strategy to path through path.tmp and a rename, so a reader never sees half
 * a file and a failed write leaves any previous file in place. */
static int fill_strategy(FILE *f, void *arg, char *err, size_t errlen) {
    return srv_config_write_strategy(f, arg, err, errlen);
}

static int write_file(const char *strategy, const char *path) {
    return cli_write_atomic("config", path, fill_strategy, (void *)strategy);
}

static int check_file(const char *path) {
    srv_config c;
    char err[2048];
    srv_config_defaults(&c);
    it_camdef *cams = NULL;
    int n_cams = 0;
    int bad = srv_config_load_file(&c, path, err, sizeof err) || srv_config_load_env(&c, environ, err, sizeof err) ||
              srv_cameras_load_file(path, &cams, &n_cams, err, sizeof err) ||
              srv_cameras_load_env(&cams, &n_cams, environ, err, sizeof err);
    free(cams);
    if (bad) {
        fprintf(stderr, "itscam config: %s\n", err);
        return 1;
    }
    /* validate's messages name the setting, not the file: say which file */
    char note[512];
    if (srv_config_validate(&c, note, sizeof note, err, sizeof err)) {
        fprintf(stderr, "itscam config: %s: %s\n", path, err);
        return 1;
    }
    if (note[0]) fprintf(stderr, "itscam config: note: %s\n", note);
    printf("%s: ok\n", path);
    return 0;
}

int cli_config(int argc, char **argv) {
    static const struct option opts[] = {
        { "strategy", required_argument, 0, 's' }, { "output", required_argument, 0, 'o' },
        { "check", required_argument, 0, 'c' },    { "help", no_argument, 0, 'h' },
        { 0, 0, 0, 0 },
    };
    const char *strategy = NULL, *output = NULL, *check = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "s:o:c:h", opts, NULL)) != -1) {
        switch (c) {
        case 's': strategy = optarg; break;
        case 'o': output = optarg; break;
        case 'c': check = optarg; break;
        case 'h': cli_config_usage(stdout); return 0;
        default: cli_config_usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "itscam config: unexpected argument '%s'\n\n", argv[optind]);
        cli_config_usage(stderr);
        return 2;
    }
    if ((strategy != NULL) == (check != NULL) || (check && output)) {
        fprintf(stderr, "itscam config: give either --strategy (with an optional --output) or --check\n\n");
        cli_config_usage(stderr);
        return 2;
    }
    if (check) return check_file(check);

    /* Reject an unknown name before creating any file. */
    srv_config probe;
    char err[512];
    srv_config_defaults(&probe);
    if (srv_config_apply_strategy(&probe, strategy, err, sizeof err)) {
        fprintf(stderr, "itscam config: %s\n", err);
        return 2;
    }
    if (output) return write_file(strategy, output);
    if (srv_config_write_strategy(stdout, strategy, err, sizeof err) || fflush(stdout)) {
        fprintf(stderr, "itscam config: %s\n", ferror(stdout) ? strerror(errno) : err);
        return 1;
    }
    return 0;
}
