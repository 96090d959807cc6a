/* A minimal test harness: CHECK records a failure and goes on; main returns the verdict.
 * Tests that need data from ../shared skip (exit 77, which CTest reports as skipped)
 * with a message naming the missing file. */
#ifndef ITSCAM_CHECK_H
#define ITSCAM_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int check_failures, check_count;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        check_count++;                                                               \
        if (!(cond)) {                                                               \
            check_failures++;                                                        \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                            \
    } while (0)

#define CHECKF(cond, ...)                                                            \
    do {                                                                             \
        check_count++;                                                               \
        if (!(cond)) {                                                               \
            check_failures++;                                                        \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                            \
            fputc('\n', stderr);                                                     \
        }                                                                            \
    } while (0)

#define CHECK_OK(expr)                                                                   \
    do {                                                                                 \
        int st_ = (expr);                                                                \
        check_count++;                                                                   \
        if (st_ != 0) {                                                                  \
            check_failures++;                                                            \
            fprintf(stderr, "%s:%d: %s returned %d: %s\n", __FILE__, __LINE__, #expr, st_, \
                    itscam_last_error());                                                \
        }                                                                                \
    } while (0)

/* Path of the shared test data folder: $ITSCAM_SHARED, else ../shared beside the source. */
static inline const char *shared_dir(void) {
    const char *e = getenv("ITSCAM_SHARED");
    return e && *e ? e : ITSCAM_SOURCE_DIR "/../shared";
}

/* Build "<shared>/<rel>" into buf; returns NULL when the file is absent. */
static inline const char *shared_path(char *buf, size_t n, const char *rel) {
    snprintf(buf, n, "%s/%s", shared_dir(), rel);
    return access(buf, R_OK) == 0 ? buf : NULL;
}

#define SKIP(...)                              \
    do {                                       \
        fprintf(stderr, "SKIP: " __VA_ARGS__); \
        fputc('\n', stderr);                   \
        exit(77);                              \
    } while (0)

static inline int check_done(const char *name) {
    printf("%s: %d checks, %d failed\n", name, check_count, check_failures);
    return check_failures ? 1 : 0;
}

#endif
