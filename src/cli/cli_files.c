/* Files for the subcommands: image lists (files as given, directories expanded one level,
 * *.jpg *.jpeg *.png, sorted by name as Python's sorted() does) and atomic writes. */
#include "cli/cli.h"

#include <dirent.h>
#include <errno.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

static int has_image_ext(const char *name) {
    const char *dot = strrchr(name, '.');
    if (!dot) return 0;
    return !strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg") || !strcasecmp(dot, ".png");
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int push_path(cli_paths *l, const char *p) {
    if (l->n == l->cap) {
        int nc = l->cap ? l->cap * 2 : 64;
        char **nv = realloc(l->v, sizeof(char *) * (size_t)nc);
        if (!nv) return -1;
        l->v = nv;
        l->cap = nc;
    }
    if (!(l->v[l->n] = strdup(p))) return -1;
    l->n++;
    return 0;
}

int cli_collect_images(cli_paths *l, const char *arg) {
    struct stat st;
    if (stat(arg, &st) != 0) {
        fprintf(stderr, "itscam: %s: no such file or directory\n", arg);
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) return push_path(l, arg);
    DIR *d = opendir(arg);
    if (!d) {
        fprintf(stderr, "itscam: %s: cannot open directory\n", arg);
        return -1;
    }
    int first = l->n, rc = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || !has_image_ext(e->d_name)) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", arg, e->d_name);
        if (push_path(l, path)) {
            fprintf(stderr, "itscam: %s: out of memory listing\n", arg);
            rc = -1;
            break;
        }
    }
    closedir(d);
    qsort(l->v + first, (size_t)(l->n - first), sizeof(char *), cmp_str);
    return rc;
}

void cli_paths_free(cli_paths *l) {
    for (int i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

int cli_open_detector(const char *cmd, const char *model, const itscam_detector_params *p, itscam_model **m,
                      itscam_detector **det) {
    *m = NULL;
    *det = NULL;
    itscam_status st = itscam_model_load(model, m);
    if (st != ITSCAM_OK) return cli_fail(model, st);
    if ((st = itscam_detector_create_from_model(*m, p, det)) != ITSCAM_OK) return cli_fail(NULL, st);
    if (p->precision && !strcmp(p->precision, "auto"))
        fprintf(stderr, "itscam %s: precision auto: %s\n", cmd, itscam_detector_precision(*det));
    return 0;
}

int cli_write_atomic(const char *cmd, const char *path, int (*fill)(FILE *f, void *arg, char *err, size_t errlen),
                     void *arg) {
    char tmp[4096], err[512] = "";
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp) {
        fprintf(stderr, "itscam %s: %s: path too long\n", cmd, path);
        return 1;
    }
    FILE *f = fopen(tmp, "w");
    if (!f) {
        fprintf(stderr, "itscam %s: %s: %s\n", cmd, tmp, strerror(errno));
        return 1;
    }
    if (fill(f, arg, err, sizeof err)) {
        fclose(f);
        unlink(tmp);
        fprintf(stderr, "itscam %s: %s: %s\n", cmd, tmp, err);
        return 1;
    }
    if (fflush(f) || ferror(f) || fsync(fileno(f))) {
        int e = errno;
        fclose(f);
        unlink(tmp);
        fprintf(stderr, "itscam %s: %s: %s\n", cmd, tmp, strerror(e));
        return 1;
    }
    if (fclose(f)) {
        int e = errno;
        unlink(tmp);
        fprintf(stderr, "itscam %s: %s: %s\n", cmd, tmp, strerror(e));
        return 1;
    }
    if (rename(tmp, path)) {
        int e = errno;
        unlink(tmp);
        fprintf(stderr, "itscam %s: %s -> %s: %s\n", cmd, tmp, path, strerror(e));
        return 1;
    }
    return 0;
}
