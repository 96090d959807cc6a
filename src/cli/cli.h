/* The itscam command: one file per subcommand, dispatched from main.c. */
#ifndef ITSCAM_CLI_H
#define ITSCAM_CLI_H

#include "itscam/itscam.h"
#include <stdio.h>

/* A numeric macro as a string literal, so that help texts quote the constant itself:
 * CLI_STR(ITSCAM_MAX_DET_DEFAULT) is "300". */
#define CLI_STR_(x) #x
#define CLI_STR(x) CLI_STR_(x)

typedef struct cli_command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);   /* argv[0] is the subcommand name */
    void (*usage)(FILE *f);
} cli_command;

int cli_detect(int argc, char **argv);
void cli_detect_usage(FILE *f);
int cli_bench(int argc, char **argv);
void cli_bench_usage(FILE *f);
int cli_eval(int argc, char **argv);
void cli_eval_usage(FILE *f);
int cli_calibrate(int argc, char **argv);
void cli_calibrate_usage(FILE *f);
int cli_serve(int argc, char **argv);
void cli_serve_usage(FILE *f);
int cli_config(int argc, char **argv);
void cli_config_usage(FILE *f);
int cli_eval_track(int argc, char **argv);
void cli_eval_track_usage(FILE *f);
int cli_watch(int argc, char **argv);
void cli_watch_usage(FILE *f);
int cli_track(int argc, char **argv);
void cli_track_usage(FILE *f);
int cli_performance(int argc, char **argv);
void cli_performance_usage(FILE *f);
/* `itscam performance benchmark --cameras N ...` (argv[0] is "benchmark"): camera
 * capacity in process. Exit status as cli_performance's benchmark. */
int cli_camera_bench(int argc, char **argv);
void cli_camera_bench_usage(FILE *f);

/* `itscam performance optimize ...` (argv[0] is "optimize"): sweep configurations on
 * this machine, pick one for a strategy, write it as a server configuration and
 * optionally apply its run-time part to a running server (cli_optimize.c). */
int cli_optimize(int argc, char **argv);
void cli_optimize_usage(FILE *f);
/* One HTTP request to url+path (method "GET", "PUT", ...) with an optional bearer token
 * and JSON body (NULL: none). 0 with the status in *code and the answer in *answer
 * (malloc'd, NUL-terminated; free it), or -1 with err when no answer came (*answer
 * NULL). Needs curl_global_init. */
int cli_http_request(const char *url, const char *path, const char *method, const char *token, const char *body,
                     long *code, char **answer, char *err, size_t errlen);
/* Write a file atomically: fill(f, arg, err, errlen) writes into path.tmp, which is
 * flushed, synced and renamed over path; on any failure path.tmp is removed and any
 * previous file at path stays. Prints "itscam CMD: ..." and returns 1 on failure, else 0. */
int cli_write_atomic(const char *cmd, const char *path, int (*fill)(FILE *f, void *arg, char *err, size_t errlen),
                     void *arg);

/* A growable list of image paths. */
typedef struct cli_paths {
    char **v;
    int n, cap;
} cli_paths;
/* Append arg if it is a file, or the images in it (sorted by name) if it is a directory.
 * Prints a message and returns -1 on failure. */
int cli_collect_images(cli_paths *l, const char *arg);
void cli_paths_free(cli_paths *l);

/* Print "itscam: <what>: <status>: <detail>" to stderr and return 1. what NULL: the error
 * is not about a file or an item (a backend that cannot run, say), so only the detail
 * (the status's name when there is none) is printed, lest it read as if <what> were at fault. */
int cli_fail(const char *what, itscam_status st);
/* Load the model and make a detector on it for subcommand `cmd`. The file's errors name
 * the file; the session's (a backend that cannot run) stand alone. With precision "auto",
 * the choice is printed on stderr. Returns 0, or 1 after printing the error; *m and *det
 * are then NULL or to be freed by the caller either way. */
int cli_open_detector(const char *cmd, const char *model, const itscam_detector_params *p, itscam_model **m,
                      itscam_detector **det);
/* Parse helpers: exit status 2 on a bad value is the caller's choice. */
int cli_parse_float(const char *s, float *out);
int cli_parse_int(const char *s, int *out);
/* 0 when s is fp32, bf16, int8 or auto. */
int cli_parse_precision(const char *s);

#endif
