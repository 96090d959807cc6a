/* libFuzzer target: configuration text and camera definitions. Byte 0 picks the parser:
 * 0 a whole YAML configuration through the settings reader and the camera list reader,
 * 1 a camera JSON created whole, 2 a camera JSON patch on a default camera. Whatever the
 * input, a success must hold valid cameras that survive a JSON round trip, and a failure a
 * NUL-terminated message with the list left as it was. */
#include "server/config.h"
#include "analytics/analytics.h"
#include "sinks/camdef.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* A camera accepted by the reader reads back to itself through the writer. */
static void check_camera(const it_camdef *c) {
    if (!it_cam_id_valid(c->id) || !c->url[0] || !memchr(c->url, 0, sizeof c->url)) __builtin_trap();
    if (c->detect.fps < 0.1 || c->detect.fps > 120 || c->detect.n_classes < 0 || c->detect.n_classes > 128)
        __builtin_trap();
    json_t *j = it_camdef_to_json(c, 0);
    if (!j) __builtin_trap();
    it_camdef back;
    char err[512];
    if (it_camdef_from_json(j, 0, &back, err, sizeof err) || memcmp(&back, c, sizeof back)) __builtin_trap();
    json_decref(j);
    json_t *r = it_camdef_to_json(c, 1); /* redacted: must not fail either */
    if (!r) __builtin_trap();
    json_decref(r);
    /* Whatever lines, zones and calibration the reader accepted, the analytics accept
     * too, and run on a few frames of a track crossing the whole picture. */
    it_an_config ac = it_camdef_analytics(c, 1280, 720);
    ac.max_tracks = 8;
    it_analytics *a = it_analytics_new(&ac);
    if (!a) __builtin_trap();
    it_an_event ev[64];
    for (int f = 0; f < 12; f++) {
        it_track_out t = { .track_id = 1, .box = { 100.0f * f, 60.0f * f, 100.0f * f + 40, 60.0f * f + 30 },
                           .score = 0.9f, .class_id = 2 };
        if (it_analytics_update(a, &t, 1, 0.2 * f, ev, 64) < 0) __builtin_trap();
    }
    it_analytics_flush(a, 3.0, ev, 64);
    it_analytics_free(a);
}

static void check_yaml(const uint8_t *data, size_t size) {
    char err[1024];
    srv_config c;
    srv_config_defaults(&c);
    if (srv_config_load_string(&c, (const char *)data, size, "fuzz.yaml", err, sizeof err) && !memchr(err, 0, sizeof err))
        __builtin_trap();
    it_camdef *list = NULL;
    int n = -1;
    if (srv_cameras_load_string((const char *)data, size, "fuzz.yaml", &list, &n, err, sizeof err)) {
        if (!memchr(err, 0, sizeof err)) __builtin_trap();
        return;
    }
    if (n < 0 || n > IT_CAM_MAX || (n == 0) != (list == NULL)) __builtin_trap();
    for (int i = 0; i < n; i++) {
        check_camera(&list[i]);
        for (int k = 0; k < i; k++)
            if (!strcmp(list[k].id, list[i].id)) __builtin_trap();
    }
    free(list);
}

static void check_json(const uint8_t *data, size_t size, int patch) {
    json_error_t je;
    json_t *j = json_loadb((const char *)data, size, JSON_ALLOW_NUL, &je);
    if (!j) return;
    it_camdef c, before;
    it_camdef_defaults(&c);
    snprintf(c.id, sizeof c.id, "cam");
    snprintf(c.url, sizeof c.url, "rtsp://u:p@host/s");
    before = c;
    char err[512];
    if (it_camdef_from_json(j, patch, &c, err, sizeof err)) {
        if (!memchr(err, 0, sizeof err) || memcmp(&c, &before, sizeof c)) __builtin_trap();
    } else {
        check_camera(&c);
    }
    json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    uint8_t mode = data[0] % 3;
    data++, size--;
    if (mode == 0) check_yaml(data, size);
    else check_json(data, size, mode == 2);
    return 0;
}
