/* itscam: the command-line entry point; a table of subcommands. */
#include "cli/cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int cmd_version(int argc, char **argv);
static int cmd_help(int argc, char **argv);

static const cli_command commands[] = {
    { "detect", "detect objects in images and print JSON", cli_detect, cli_detect_usage },
    { "bench", "time inference: latency percentiles and throughput", cli_bench, cli_bench_usage },
    { "eval", "score a model on labelled images: mAP50 and mAP50-95", cli_eval, cli_eval_usage },
    { "eval-track", "score tracks against MOTChallenge ground truth: MOTA, IDF1, HOTA", cli_eval_track,
      cli_eval_track_usage },
    { "calibrate", "measure activation ranges on sample images for int8", cli_calibrate, cli_calibrate_usage },
    { "watch", "detect on one camera or video file, one JSON line per frame", cli_watch, cli_watch_usage },
    { "track", "replay detections through ByteTrack and print the tracks", cli_track, cli_track_usage },
    { "serve", "run the HTTP inference server (KServe v2 and /v1/detect)", cli_serve, cli_serve_usage },
    { "config", "write a complete, commented server configuration for a strategy", cli_config, cli_config_usage },
    { "performance", "status, live monitor and load benchmark of a running server", cli_performance, cli_performance_usage },
    { "version", "print the version and the backends compiled in", cmd_version, NULL },
    { "help", "show help for a command", cmd_help, NULL },
};
#define N_COMMANDS (sizeof commands / sizeof *commands)

int cli_fail(const char *what, itscam_status st) {
    const char *detail = itscam_last_error();
    if (!what) {
        fprintf(stderr, "itscam: %s\n", detail[0] ? detail : itscam_strerror(st));
        return 1;
    }
    fprintf(stderr, "itscam: %s: %s%s%s\n", what, itscam_strerror(st), detail[0] ? ": " : "", detail);
    return 1;
}

int cli_parse_float(const char *s, float *out) {
    if (!s) return -1;
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || end == s || *end) return -1;
    *out = v;
    return 0;
}

int cli_parse_int(const char *s, int *out) {
    if (!s) return -1;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < -2147483647L || v > 2147483647L) return -1;
    *out = (int)v;
    return 0;
}

int cli_parse_precision(const char *s) {
    return s && (!strcmp(s, "fp32") || !strcmp(s, "fp16") || !strcmp(s, "bf16") || !strcmp(s, "int8") || !strcmp(s, "auto")) ? 0 : -1;
}

static void print_backends(FILE *f) {
    fprintf(f, "backends:");
    for (const char *const *b = itscam_backends(); *b; b++) fprintf(f, " %s", *b);
    fprintf(f, "\n");
}

static void usage(FILE *f) {
    fprintf(f, "itscam %s: real-time multi-camera object detection\n\n"
               "usage: itscam COMMAND [OPTIONS]\n\ncommands:\n", itscam_version());
    for (size_t i = 0; i < N_COMMANDS; i++) fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n");
    print_backends(f);
    fprintf(f, "\nRun 'itscam help COMMAND' or 'itscam COMMAND --help' for a command's options.\n");
}

static int cmd_version(int argc, char **argv) {
    (void)argc;
    (void)argv;
    printf("itscam %s\n", itscam_version());
    print_backends(stdout);
    return 0;
}

static int cmd_help(int argc, char **argv) {
    if (argc < 2) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (!strcmp(commands[i].name, argv[1])) {
            if (commands[i].usage) commands[i].usage(stdout);
            else printf("itscam %s: %s\n", commands[i].name, commands[i].summary);
            return 0;
        }
    fprintf(stderr, "itscam: unknown command '%s'\n", argv[1]);
    return 2;
}

/* Warnings from the library (a GPU that is absent, a breaker that opens) reach the user
 * on stderr; `serve` installs its own logger with the configured level. */
static void log_warnings(int level, const char *msg, void *user) {
    (void)user;
    fprintf(stderr, "itscam: %s: %s\n", level == ITSCAM_LOG_ERROR ? "error" : "warning", msg);
}

int main(int argc, char **argv) {
    itscam_log_set(log_warnings, NULL, ITSCAM_LOG_WARN);
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version")) return cmd_version(argc - 1, argv + 1);
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (!strcmp(commands[i].name, argv[1])) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "itscam: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
