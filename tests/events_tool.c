/* A test helper (not a test): writes into an itscam store through the library, so that
 * a server test can hold known events while the server runs (a second SQLite
 * connection, as another process would be). Used by events_api_check.py.
 *
 *   events_tool DIR events      JSON lines on stdin, one event each:
 *                               {"camera","type","time","track_id","class_id","class",
 *                                "score","box":[4],"details":{...},"snapshot":"rel"};
 *                               inserted in one transaction; prints the ids, one a line
 *   events_tool DIR each        the same, each line in its own transaction as it comes,
 *                               its id printed at once (a test inserting while it reads)
 *   events_tool DIR occupancy   JSON lines {"camera","zone","class","time","count"}
 *   events_tool DIR snapshot CAMERA TYPE TRACK_ID TIME
 *                               prints a new snapshot path (it_snapshot_path) */
#include "core/core.h"
#include "sinks/events.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LINES 100000

static int str_field(json_t *o, const char *key, char *dst, size_t cap) {
    const char *v = json_string_value(json_object_get(o, key));
    return snprintf(dst, cap, "%s", v ? v : "") >= (int)cap ? -1 : 0;
}

static int read_events(it_store *st, int each) {
    it_store_event *ev = calloc(MAX_LINES, sizeof *ev);
    int64_t *ids = calloc(MAX_LINES, sizeof *ids);
    char line[8192];
    int n = 0;
    while (ev && ids && n < MAX_LINES && fgets(line, sizeof line, stdin)) {
        json_error_t je;
        json_t *o = json_loads(line, 0, &je);
        if (!o) {
            fprintf(stderr, "line %d: %s\n", n + 1, je.text);
            return 1;
        }
        it_store_event *e = &ev[n];
        json_t *v;
        int bad = str_field(o, "camera", e->camera, sizeof e->camera) || str_field(o, "type", e->type, sizeof e->type) ||
                  str_field(o, "class", e->class_name, sizeof e->class_name) ||
                  str_field(o, "snapshot", e->snapshot, sizeof e->snapshot);
        e->time = json_number_value(json_object_get(o, "time"));
        e->track_id = json_integer_value(json_object_get(o, "track_id"));
        e->class_id = (v = json_object_get(o, "class_id")) ? (int)json_integer_value(v) : -1;
        e->score = (v = json_object_get(o, "score")) ? json_number_value(v) : -1;
        if ((v = json_object_get(o, "box")) && json_array_size(v) == 4) {
            e->has_box = 1;
            for (int k = 0; k < 4; k++) e->box[k] = json_number_value(json_array_get(v, (size_t)k));
        }
        if ((v = json_object_get(o, "details"))) {
            char *t = json_dumps(v, JSON_COMPACT);
            bad |= !t || snprintf(e->details, sizeof e->details, "%s", t) >= (int)sizeof e->details;
            free(t);
        }
        json_decref(o);
        if (bad) {
            fprintf(stderr, "line %d: a field is too long\n", n + 1);
            return 1;
        }
        n++;
        if (each) { /* one transaction per line, its id at once */
            if (it_store_events_insert(st, ev, 1, ids) != ITSCAM_OK) {
                fprintf(stderr, "insert: %s\n", itscam_last_error());
                return 1;
            }
            printf("%lld\n", (long long)ids[0]);
            fflush(stdout);
            n = 0;
        }
    }
    if (!ev || !ids || it_store_events_insert(st, ev, n, ids) != ITSCAM_OK) {
        fprintf(stderr, "insert: %s\n", itscam_last_error());
        return 1;
    }
    for (int i = 0; i < n; i++) printf("%lld\n", (long long)ids[i]);
    free(ev), free(ids);
    return 0;
}

static int read_occupancy(it_store *st) {
    it_occupancy_sample *o = calloc(MAX_LINES, sizeof *o);
    char line[1024];
    int n = 0;
    while (o && n < MAX_LINES && fgets(line, sizeof line, stdin)) {
        json_t *j = json_loads(line, 0, NULL);
        if (!j) return 1;
        int bad = str_field(j, "camera", o[n].camera, sizeof o[n].camera) ||
                  str_field(j, "zone", o[n].zone, sizeof o[n].zone) ||
                  str_field(j, "class", o[n].class_name, sizeof o[n].class_name);
        o[n].time = json_number_value(json_object_get(j, "time"));
        o[n].count = (int)json_integer_value(json_object_get(j, "count"));
        json_decref(j);
        if (bad) return 1;
        n++;
    }
    if (!o || it_store_occupancy_insert(st, o, n) != ITSCAM_OK) {
        fprintf(stderr, "occupancy: %s\n", itscam_last_error());
        return 1;
    }
    free(o);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: events_tool DIR events|occupancy|snapshot ...\n");
        return 2;
    }
    if (!strcmp(argv[2], "snapshot")) {
        char rel[IT_EVENT_SNAPSHOT_MAX + 1];
        if (argc != 7 ||
            it_snapshot_path(argv[1], argv[3], argv[4], atoll(argv[5]), atof(argv[6]), rel, sizeof rel) != 0) {
            fprintf(stderr, "snapshot: %s\n", argc == 7 ? itscam_last_error() : "CAMERA TYPE TRACK_ID TIME");
            return 1;
        }
        printf("%s\n", rel);
        return 0;
    }
    it_store *st = NULL;
    char err[512];
    if (it_store_open(argv[1], &st, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    int rc = !strcmp(argv[2], "events") ? read_events(st, 0)
             : !strcmp(argv[2], "each")   ? read_events(st, 1)
             : !strcmp(argv[2], "occupancy") ? read_occupancy(st)
                                             : 2;
    it_store_close(st);
    return rc;
}
