/* Camera definitions: the strict JSON reader and writer, cameras in the YAML file, the
 * environment and --camera, the SQLite store (put, delete, reopen, damaged files) and the
 * rule that merges the store's cameras with the configuration's. */
#include "check.h"

#include "server/config.h"
#include "sinks/store.h"
#include "sinks/camdef.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

static char err[1024];

static json_t *J(const char *text) {
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    if (!j) fprintf(stderr, "bad test JSON: %s: %s\n", text, je.text);
    return j;
}

/* Parse text as a whole camera (patch 0) or a patch of c; the JSON is freed. */
static int parse(const char *text, int patch, it_camdef *c) {
    json_t *j = J(text);
    int rc = it_camdef_from_json(j, patch, c, err, sizeof err);
    json_decref(j);
    return rc;
}

#define EXPECT_BAD(text, patch, msg)                                                     \
    do {                                                                                 \
        it_camdef before_ = c;                                                           \
        CHECKF(parse(text, patch, &c) == -1, "accepted %s", text);                       \
        CHECKF(!strcmp(err, msg), "%s: got '%s', want '%s'", text, err, msg);            \
        CHECK(memcmp(&before_, &c, sizeof c) == 0);                                      \
    } while (0)

static void test_json(void) {
    it_camdef c;
    it_camdef_defaults(&c);
    CHECK(c.enabled == 1 && c.priority == IT_CAM_NORMAL && c.transport == 0 && c.loop == 1 && c.realtime == 1);
    CHECK(!strcmp(c.hwaccel, "auto") && c.stall_timeout_s == 5 && c.skip == IT_CAM_SKIP_AUTO);
    CHECK(c.detect.fps == 5 && c.detect.conf == -1 && c.detect.n_classes == 0 && !c.detect.model[0]);

    CHECK(it_cam_id_valid("gate_1") && it_cam_id_valid("a-b") && !it_cam_id_valid("") && !it_cam_id_valid("Gate"));
    CHECK(!it_cam_id_valid("a b") && !it_cam_id_valid(NULL));
    char id[80];
    memset(id, 'a', 64), id[64] = 0;
    CHECK(it_cam_id_valid(id));
    id[64] = 'a', id[65] = 0;
    CHECK(!it_cam_id_valid(id));
    CHECK(it_cam_prio_parse("critical") == 0 && it_cam_prio_parse("low") == 3 && it_cam_prio_parse("urgent") == -1);
    CHECK(!strcmp(it_cam_prio_name(IT_CAM_HIGH), "high") && !strcmp(it_cam_prio_name(9), "?"));

    CHECKF(parse("{\"id\":\"gate_1\",\"url\":\"rtsp://admin:secret@10.0.0.5/s\",\"enabled\":false,"
                 "\"priority\":\"critical\",\"transport\":\"udp\",\"loop\":false,\"realtime\":false,"
                 "\"hwaccel\":\"vaapi\",\"stall_timeout_s\":2.5,\"decode_skip\":\"nonref\","
                 "\"detect\":{\"fps\":10,\"model\":\"yolo11n\",\"conf\":0.3,\"classes\":[0,2,7],"
                 "\"fallback_model\":\"tiny\"}}", 0, &c) == 0, "%s", err);
    CHECK(!strcmp(c.id, "gate_1") && !strcmp(c.url, "rtsp://admin:secret@10.0.0.5/s") && c.enabled == 0);
    CHECK(c.priority == IT_CAM_CRITICAL && c.transport == 1 && !c.loop && !c.realtime && !strcmp(c.hwaccel, "vaapi"));
    CHECK(c.stall_timeout_s == 2.5 && c.skip == IT_CAM_SKIP_NONREF && c.detect.fps == 10);
    CHECK(!strcmp(c.detect.model, "yolo11n") && c.detect.conf == 0.3f && c.detect.n_classes == 3 &&
          c.detect.classes[2] == 7 && !strcmp(c.detect.fallback_model, "tiny"));

    /* The writer: every key, the URL redacted; unredacted it reads back to the same struct. */
    json_t *j = it_camdef_to_json(&c, 1);
    CHECK(j != NULL);
    /* jansson writes reals with 17 digits unless told: responses want JSON_REAL_PRECISION */
    char *text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(9));
    CHECKF(strstr(text, "\"url\":\"rtsp://***@10.0.0.5/s\"") && !strstr(text, "secret"), "%s", text);
    CHECKF(strstr(text, "\"conf\":0.3,") != NULL, "%s", text);
    CHECK(json_object_size(j) == 18 && json_object_size(json_object_get(j, "detect")) == 5);
    free(text);
    json_decref(j);
    it_camdef back;
    memset(&back, 0x5a, sizeof back);
    j = it_camdef_to_json(&c, 0);
    CHECKF(it_camdef_from_json(j, 0, &back, err, sizeof err) == 0, "%s", err);
    CHECK(memcmp(&back, &c, sizeof c) == 0);
    json_decref(j);
    it_camdef d;
    it_camdef_defaults(&d);
    snprintf(d.id, sizeof d.id, "x"), snprintf(d.url, sizeof d.url, "/videos/a.mp4");
    j = it_camdef_to_json(&d, 0);
    CHECK(it_camdef_from_json(j, 0, &back, err, sizeof err) == 0 && memcmp(&back, &d, sizeof d) == 0);
    json_decref(j);

    /* Patches change only what they name; id may be repeated, not changed. */
    CHECKF(parse("{\"detect\":{\"fps\":0.5},\"enabled\":true,\"id\":\"gate_1\"}", 1, &c) == 0, "%s", err);
    CHECK(c.detect.fps == 0.5 && c.enabled == 1 && c.detect.n_classes == 3 && c.priority == IT_CAM_CRITICAL);
    CHECK(parse("{\"detect\":{\"conf\":null,\"classes\":[]}}", 1, &c) == 0 && c.detect.conf == -1 &&
          c.detect.n_classes == 0);
    EXPECT_BAD("{\"id\":\"other\"}", 1, "id: cannot be changed (this camera is 'gate_1')");
    EXPECT_BAD("{\"url\":\"\"}", 1, "url: must not be empty");

    /* Strictness: each message starts with the key path. */
    EXPECT_BAD("{\"detect\":{\"fps\":0}}", 1, "detect.fps: must be a number from 0.1 to 120");
    EXPECT_BAD("{\"detect\":{\"fps\":\"10\"}}", 1, "detect.fps: must be a number from 0.1 to 120");
    EXPECT_BAD("{\"detect\":{\"fps\":121}}", 1, "detect.fps: must be a number from 0.1 to 120");
    EXPECT_BAD("{\"detect\":{\"conf\":1.5}}", 1,
               "detect.conf: must be a number from 0 to 1, or -1 (or null) for the server's default");
    EXPECT_BAD("{\"detect\":{\"classes\":[1,128]}}", 1,
               "detect.classes[1]: must be a class id, an integer from 0 to 127");
    EXPECT_BAD("{\"detect\":{\"classes\":[1,1]}}", 1, "detect.classes[1]: class id 1 is listed twice");
    EXPECT_BAD("{\"detect\":{\"classes\":3}}", 1, "detect.classes: must be a list of class ids from 0 to 127");
    EXPECT_BAD("{\"detect\":{\"bogus\":1}}", 1, "detect.bogus: unknown key");
    EXPECT_BAD("{\"detect\":5}", 1, "detect: must be an object (fps, model, conf, classes, fallback_model)");
    EXPECT_BAD("{\"fps\":5}", 1, "fps: unknown key");
    EXPECT_BAD("{\"enabled\":1}", 1, "enabled: must be true or false");
    EXPECT_BAD("{\"priority\":\"urgent\"}", 1, "priority: must be one of critical, high, normal, low");
    EXPECT_BAD("{\"transport\":\"http\"}", 1, "transport: must be one of tcp, udp");
    EXPECT_BAD("{\"hwaccel\":\"gpu\"}", 1, "hwaccel: must be one of auto, none, vaapi, cuda");
    EXPECT_BAD("{\"decode_skip\":\"all\"}", 1, "decode_skip: must be one of auto, none, nonref, keyframes");
    EXPECT_BAD("{\"stall_timeout_s\":0.1}", 1, "stall_timeout_s: must be a number from 0.5 to 600");
    EXPECT_BAD("{\"url\":\"rtsp://a\\nb\"}", 1, "url: must not contain control characters");
    json_t *nul = json_pack("{s:{s:s#}}", "detect", "model", "a\0b", 3);
    CHECK(it_camdef_from_json(nul, 1, &c, err, sizeof err) == -1 &&
          !strcmp(err, "detect.model: must not contain control characters"));
    json_decref(nul);
    EXPECT_BAD("{\"url\":5}", 1, "url: must be a string");
    EXPECT_BAD("{\"url\":\"rtsp://x\"}", 0, "id: required");
    EXPECT_BAD("{\"id\":\"x\"}", 0, "url: required");
    EXPECT_BAD("{\"id\":\"X\",\"url\":\"u\"}", 0, "id: must be 1 to 64 characters of a-z, 0-9, '_' and '-'");
    char big[1200 + 64];
    snprintf(big, sizeof big, "{\"url\":\"%01100d\"}", 0);
    EXPECT_BAD(big, 1, "url: too long (1100 bytes, at most 1023)");
    json_t *arr = json_array();
    CHECK(it_camdef_from_json(arr, 1, &c, err, sizeof err) == -1 && !strcmp(err, "a camera must be a JSON object"));
    json_decref(arr);
}

static const char yaml_ok[] =
    "server:\n"
    "  port: 9000\n"
    "cameras:\n"
    "  - id: gate_1\n"
    "    url: rtsp://u:p@cam1/stream\n"
    "    priority: high\n"
    "    enabled: false\n"
    "    stall_timeout_s: 7\n"
    "    detect: {fps: 2.5, classes: [0, 2], model: \"123\", conf: 0.4}\n"
    "  - {id: lobby, url: /videos/lobby.mp4, loop: true}\n"
    "storage:\n"
    "  dir: /tmp/x\n";

static int load_cams(const char *text, it_camdef **list, int *n) {
    *list = NULL, *n = 0;
    return srv_cameras_load_string(text, strlen(text), "t.yaml", list, n, err, sizeof err);
}

#define EXPECT_YAML_BAD(text, msg)                                                       \
    do {                                                                                 \
        it_camdef *l_;                                                                   \
        int n_;                                                                          \
        CHECKF(load_cams(text, &l_, &n_) == -1, "accepted %s", text);                    \
        CHECKF(!strcmp(err, msg), "got '%s', want '%s'", err, msg);                      \
    } while (0)

static void test_yaml(void) {
    srv_config cfg;
    srv_config_defaults(&cfg);
    CHECK(!strcmp(cfg.storage_dir, "./itscam-data"));
    CHECKF(srv_config_load_string(&cfg, yaml_ok, strlen(yaml_ok), "t.yaml", err, sizeof err) == 0, "%s", err);
    CHECK(cfg.port == 9000 && !strcmp(cfg.storage_dir, "/tmp/x"));

    it_camdef *list;
    int n;
    CHECKF(load_cams(yaml_ok, &list, &n) == 0, "%s", err);
    CHECK(n == 2);
    if (n == 2) {
        CHECK(!strcmp(list[0].id, "gate_1") && list[0].priority == IT_CAM_HIGH && !list[0].enabled);
        CHECK(list[0].stall_timeout_s == 7 && list[0].detect.fps == 2.5 && list[0].detect.n_classes == 2);
        CHECK(!strcmp(list[0].detect.model, "123") && list[0].detect.conf == 0.4f);
        CHECK(!strcmp(list[1].url, "/videos/lobby.mp4") && list[1].loop == 1);
    }
    free(list);
    CHECK(load_cams("server: {port: 1}\n", &list, &n) == 0 && n == 0 && !list);
    CHECK(load_cams("cameras:\n", &list, &n) == 0 && n == 0 && !list);
    CHECK(load_cams("", &list, &n) == 0 && n == 0);

    /* Errors name the file, the line of the key at fault and its path. */
    EXPECT_YAML_BAD("cameras:\n  - id: a\n    url: x\n  - id: b\n    url: y\n    detect:\n      fps: 500\n",
                    "t.yaml:7: cameras[1].detect.fps: must be a number from 0.1 to 120");
    EXPECT_YAML_BAD("cameras:\n  - id: a\n    url: x\n    detect:\n      classes: [1,\n        300]\n",
                    "t.yaml:6: cameras[0].detect.classes[1]: must be a class id, an integer from 0 to 127");
    EXPECT_YAML_BAD("cameras:\n  - id: a\n    url: x\n    enabled: \"true\"\n",
                    "t.yaml:4: cameras[0].enabled: must be true or false");
    EXPECT_YAML_BAD("cameras:\n  - id: a\n    url: x\n    colour: red\n",
                    "t.yaml:4: cameras[0].colour: unknown key");
    EXPECT_YAML_BAD("cameras:\n  - id: a\n    url: x\n  -\n    id: a\n    url: y\n",
                    "t.yaml:5: cameras[1].id: 'a' is already the id of cameras[0]");
    EXPECT_YAML_BAD("cameras:\n  - id: a\n", "t.yaml:2: cameras[0].url: required");
    EXPECT_YAML_BAD("cameras:\n  - id: a\n    url: x\n    url: y\n",
                    "t.yaml:4: cameras[0].url: set twice (first on line 3)");
    EXPECT_YAML_BAD("cameras: {id: a}\n",
                    "t.yaml:1: cameras: expected a list of cameras (- id: ...\\n  url: ...), got a mapping");
    EXPECT_YAML_BAD("cameras:\n  - just text\n",
                    "t.yaml:2: cameras[0]: expected a camera (a mapping of id, url, ...), got a value");
    EXPECT_YAML_BAD("cameras:\n  - id: a\n    url: [x\n", "t.yaml:4: YAML syntax error: did not find expected ',' or ']' while parsing a flow sequence (line 3)");
    /* Aliases that multiply nodes ("billion laughs") stop at a node budget. */
    it_camdef *l2;
    int n2;
    CHECK(load_cams("x: &a [1, 1, 1, 1, 1, 1, 1, 1]\ny: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n"
                    "z: &c [*b, *b, *b, *b, *b, *b, *b, *b]\nw: &d [*c, *c, *c, *c, *c, *c, *c, *c]\n"
                    "cameras:\n  - {id: a, url: x, detect: {classes: [*d, *d, *d, *d, *d, *d, *d, *d]}}\n",
                    &l2, &n2) == -1);
    CHECKF(strstr(err, ": cameras[0].detect.classes[") && strstr(err, "too large for a camera definition"),
           "%s", err);
    /* More than IT_CAM_MAX cameras. */
    size_t cap = 64 * (IT_CAM_MAX + 2);
    char *many = malloc(cap);
    size_t o = (size_t)snprintf(many, cap, "cameras:\n");
    for (int i = 0; i <= IT_CAM_MAX; i++) o += (size_t)snprintf(many + o, cap - o, "  - {id: c%d, url: u}\n", i);
    EXPECT_YAML_BAD(many, "t.yaml:2: cameras: 257 cameras, at most 256");
    free(many);

    /* The settings reader skips the list but still refuses other unknown sections. */
    const char *cams_only = "cameras:\n  - {id: a, url: x}\n";
    CHECK(srv_config_load_string(&cfg, cams_only, strlen(cams_only), "t.yaml", err, sizeof err) == 0);
    CHECK(srv_config_load_string(&cfg, "camera:\n", 8, "t.yaml", err, sizeof err) == -1);
    CHECKF(strstr(err, "did you mean 'cameras'") != NULL, "%s", err);

    /* From a file. */
    char path[] = "/tmp/itscam_camdef_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd >= 0) {
        CHECK(write(fd, yaml_ok, strlen(yaml_ok)) == (ssize_t)strlen(yaml_ok));
        close(fd);
        CHECKF(srv_cameras_load_file(path, &list, &n, err, sizeof err) == 0 && n == 2, "%s", err);
        free(list);
        srv_config_defaults(&cfg);
        CHECKF(srv_config_load_file(&cfg, path, err, sizeof err) == 0 && cfg.port == 9000, "%s", err);
        unlink(path);
    }
    CHECK(srv_cameras_load_file("/nonexistent/x.yaml", &list, &n, err, sizeof err) == -1 &&
          strstr(err, "/nonexistent/x.yaml") != NULL);
}

static void test_env_and_flag(void) {
    it_camdef *list = NULL;
    int n = 0;
    CHECK(load_cams(yaml_ok, &list, &n) == 0 && n == 2);
    char *env[] = { "ITSCAM__CAMERAS__GATE_1__DETECT__FPS=10", "ITSCAM__CAMERAS__NEW-CAM__URL=rtsp://n/1",
                    "itscam__cameras__new-cam__priority=low", "ITSCAM__CAMERAS__NEW-CAM__DETECT__CLASSES=0,5",
                    "ITSCAM__CAMERAS__LOBBY__ENABLED=false", "ITSCAM__SERVER__PORT=1", "PATH=/bin", NULL };
    CHECKF(srv_cameras_load_env(&list, &n, env, err, sizeof err) == 0, "%s", err);
    CHECK(n == 3);
    if (n == 3) {
        CHECK(list[0].detect.fps == 10 && list[0].priority == IT_CAM_HIGH); /* the rest as in the file */
        CHECK(list[1].enabled == 0);
        CHECK(!strcmp(list[2].id, "new-cam") && !strcmp(list[2].url, "rtsp://n/1") && list[2].priority == IT_CAM_LOW);
        CHECK(list[2].detect.n_classes == 2 && list[2].detect.classes[1] == 5);
    }
    /* The settings reader leaves camera variables alone. */
    srv_config cfg;
    srv_config_defaults(&cfg);
    CHECKF(srv_config_load_env(&cfg, env, err, sizeof err) == 0 && cfg.port == 1, "%s", err);

    it_camdef *before = malloc((size_t)n * sizeof *before);
    memcpy(before, list, (size_t)n * sizeof *before);
    int nb = n;
    char *bad1[] = { "ITSCAM__CAMERAS__GATE_1__DETECT__FPS=0", NULL };
    CHECK(srv_cameras_load_env(&list, &n, bad1, err, sizeof err) == -1);
    CHECKF(!strcmp(err, "ITSCAM__CAMERAS__GATE_1__DETECT__FPS: detect.fps: must be a number from 0.1 to 120"), "%s", err);
    char *bad2[] = { "ITSCAM__CAMERAS__NOPE__DETECT__FPS=3", NULL };
    CHECK(srv_cameras_load_env(&list, &n, bad2, err, sizeof err) == -1);
    CHECKF(strstr(err, "creating it needs ITSCAM__CAMERAS__NOPE__URL") != NULL, "%s", err);
    char *bad3[] = { "ITSCAM__CAMERAS__GATE_1=1", NULL };
    CHECK(srv_cameras_load_env(&list, &n, bad3, err, sizeof err) == -1 && strstr(err, "expected ITSCAM__CAMERAS__ID__KEY"));
    char *bad4[] = { "ITSCAM__CAMERAS__GATE_1__COLOUR=red", NULL };
    CHECK(srv_cameras_load_env(&list, &n, bad4, err, sizeof err) == -1);
    CHECKF(!strcmp(err, "ITSCAM__CAMERAS__GATE_1__COLOUR: colour: unknown key"), "%s", err);
    char *bad5[] = { "ITSCAM__CAMERAS__A.B__URL=x", NULL };
    CHECK(srv_cameras_load_env(&list, &n, bad5, err, sizeof err) == -1 && strstr(err, "is not a camera id"));
    CHECK(n == nb && memcmp(before, list, (size_t)n * sizeof *list) == 0); /* unchanged on failure */
    free(before);

    /* --camera ID=URL: a new camera, or a new URL for a known one. */
    CHECKF(srv_cameras_flag(&list, &n, "Dock=rtsp://d/1", err, sizeof err) == 0, "%s", err);
    CHECK(n == 4 && !strcmp(list[3].id, "dock") && list[3].detect.fps == 5);
    CHECK(srv_cameras_flag(&list, &n, "gate_1=/videos/g.mp4", err, sizeof err) == 0 && n == 4 &&
          !strcmp(list[0].url, "/videos/g.mp4") && list[0].detect.fps == 10);
    CHECK(srv_cameras_flag(&list, &n, "nourl", err, sizeof err) == -1 && strstr(err, "expected ID=URL"));
    CHECK(srv_cameras_flag(&list, &n, "a b=x", err, sizeof err) == -1 && strstr(err, "is not a camera id"));
    CHECK(srv_cameras_flag(&list, &n, "x=\xff\xfe", err, sizeof err) == -1 && strstr(err, "UTF-8"));
    free(list);
}

static it_camdef cam(const char *id, const char *url, double fps) {
    it_camdef c;
    it_camdef_defaults(&c);
    snprintf(c.id, sizeof c.id, "%s", id);
    snprintf(c.url, sizeof c.url, "%s", url);
    c.detect.fps = fps;
    return c;
}

static void test_merge(void) {
    it_camdef yaml[3] = { cam("a", "ya", 1), cam("b", "yb", 1), cam("c", "yc", 1) };
    it_camdef db[2] = { cam("b", "db", 2), cam("z", "dz", 2) };
    it_cam_id del[1] = { "c" };
    it_camdef *m;
    int n;
    CHECK(it_cameras_merge(yaml, 3, db, 2, del, 1, &m, &n) == ITSCAM_OK);
    CHECK(n == 3);
    if (n == 3) {
        CHECK(!strcmp(m[0].id, "a") && !strcmp(m[0].url, "ya"));  /* YAML only: as written */
        CHECK(!strcmp(m[1].id, "b") && !strcmp(m[1].url, "db") && m[1].detect.fps == 2); /* the API's wins */
        CHECK(!strcmp(m[2].id, "z"));                               /* API only; c stays deleted */
    }
    free(m);
    CHECK(it_cameras_merge(NULL, 0, NULL, 0, NULL, 0, &m, &n) == ITSCAM_OK && n == 0 && !m);
}

static void test_store(void) {
    char dir[] = "/tmp/itscam_store_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char sub[256], dbpath[300];
    snprintf(sub, sizeof sub, "%s/data/x", dir);
    snprintf(dbpath, sizeof dbpath, "%s/itscam.db", sub);
    it_store *st = NULL;
    CHECKF(it_store_open(sub, &st, err, sizeof err) == 0 && st, "%s", err);
    struct stat sb;
    CHECK(stat(sub, &sb) == 0 && (sb.st_mode & 0777) == 0700);
    CHECK(stat(dbpath, &sb) == 0 && (sb.st_mode & 0777) == 0600);

    it_camdef a = cam("a", "rtsp://user:pw@h/1", 3), b = cam("b", "rtsp://h/2", 4);
    a.detect.conf = 0.35f, a.detect.n_classes = 1, a.detect.classes[0] = 9;
    CHECK_OK(it_store_camera_put(st, &a));
    CHECK_OK(it_store_camera_put(st, &b));
    CHECK_OK(it_store_camera_delete(st, "b"));
    CHECK_OK(it_store_camera_delete(st, "never-seen"));
    CHECK(it_store_camera_delete(st, "Bad Id") == ITSCAM_ERR_INVALID_ARG);
    it_store_close(st);

    /* Reopened: the same rows, credentials kept for the store itself. */
    CHECKF(it_store_open(sub, &st, err, sizeof err) == 0, "%s", err);
    it_camdef *defs;
    it_cam_id *deleted;
    int n, nd;
    CHECK_OK(it_store_cameras(st, &defs, &n, &deleted, &nd));
    CHECK(n == 1 && nd == 2);
    if (n == 1 && nd == 2) {
        CHECK(memcmp(&defs[0], &a, sizeof a) == 0);
        CHECK(!strcmp(deleted[0], "b") && !strcmp(deleted[1], "never-seen"));
    }
    /* The rule over real rows: b deleted through the API stays deleted though the YAML
     * lists it; a changed through the API wins over the YAML's a. */
    it_camdef yaml[3] = { cam("a", "yaml-a", 1), cam("b", "yaml-b", 1), cam("c", "yaml-c", 1) };
    it_camdef *m;
    int nm;
    CHECK_OK(it_cameras_merge(yaml, 3, defs, n, deleted, nd, &m, &nm));
    CHECK(nm == 2 && !strcmp(m[0].url, a.url) && !strcmp(m[1].id, "c"));
    free(m);
    free(defs);
    free(deleted);
    /* Putting a deleted camera again brings it back. */
    CHECK_OK(it_store_camera_put(st, &b));
    CHECK_OK(it_store_cameras(st, &defs, &n, &deleted, &nd));
    CHECK(n == 2 && nd == 1);
    free(defs);
    free(deleted);
    it_store_close(st);
    it_store_close(NULL);

    /* A newer schema is refused, naming the file. */
    char cmd[512];
    snprintf(cmd, sizeof cmd, "sqlite3 '%s' 'PRAGMA user_version = 99' 2>/dev/null", dbpath);
    if (system(cmd) == 0) {
        CHECK(it_store_open(sub, &st, err, sizeof err) == -1 && !st);
        CHECKF(strstr(err, dbpath) && strstr(err, "schema version 99"), "%s", err);
    }

    /* A file that is not a database: a clear error, no crash. */
    char bad[256], badpath[300];
    snprintf(bad, sizeof bad, "%s/bad", dir);
    snprintf(badpath, sizeof badpath, "%s/itscam.db", bad);
    CHECK(mkdir(bad, 0700) == 0);
    FILE *f = fopen(badpath, "wb");
    for (int i = 0; f && i < 8192; i++) fputc((i * 7919) & 0xff, f);
    if (f) fclose(f);
    CHECK(it_store_open(bad, &st, err, sizeof err) == -1 && !st);
    CHECKF(strstr(err, badpath) && strstr(err, "not a usable itscam database"), "%s", err);
    /* A real database with damaged pages. */
    snprintf(bad, sizeof bad, "%s/damaged", dir);
    snprintf(badpath, sizeof badpath, "%s/itscam.db", bad);
    CHECKF(it_store_open(bad, &st, err, sizeof err) == 0, "%s", err);
    for (int i = 0; i < 200; i++) {
        char id[16];
        snprintf(id, sizeof id, "c%d", i);
        it_camdef c = cam(id, "rtsp://h/x", 1);
        it_store_camera_put(st, &c);
    }
    it_store_close(st);
    int fd = open(badpath, O_RDWR);
    CHECK(fd >= 0);
    if (fd >= 0) {
        char junk[4096];
        memset(junk, 0xa5, sizeof junk);
        CHECK(pwrite(fd, junk, sizeof junk, 4096) == (ssize_t)sizeof junk);
        close(fd);
    }
    int rc = it_store_open(bad, &st, err, sizeof err);
    CHECKF(rc == -1 && !st && strstr(err, badpath), "rc %d: %s", rc, err);
    if (rc == 0) it_store_close(st);
    /* A path under a file cannot be a folder. */
    CHECK(it_store_open(badpath, &st, err, sizeof err) == -1 && strstr(err, badpath));

    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

/* Lines, zones, calibration and track settings: parsed, checked, written back. */
static void test_analytics_keys(void) {
    it_camdef c;
    const char *full =
        "{\"id\":\"a\",\"url\":\"/v.mp4\",\"track\":{\"track_buffer\":60,\"match_thresh\":0.7},"
        "\"anchor\":\"center\",\"lines\":[{\"id\":\"north-1\",\"points\":[[0,300],[1280,300]],"
        "\"direction\":\"a_to_b\",\"classes\":[2,7],\"min_distance\":5}],"
        "\"zones\":[{\"id\":\"stop\",\"polygon\":[[0,0],[100,0],[100,100],[0,100]],\"dwell_alert_s\":30,"
        "\"stopped_speed\":3,\"stopped_s\":10,\"congestion_count\":5,\"congestion_s\":20}],"
        "\"calibration\":{\"image\":[[0,0],[1280,0],[1280,720],[0,720]],"
        "\"world\":[[0,0],[20,0],[20,60],[0,60]]},\"speed_limit_kmh\":90}";
    CHECKF(parse(full, 0, &c) == 0, "%s", err);
    CHECK(c.track.track_buffer == 60 && c.track.match_thresh == 0.7f && c.track.track_high_thresh < 0);
    CHECK(c.anchor == IT_AN_ANCHOR_CENTER && c.n_lines == 1 && c.n_zones == 1 && c.has_calibration);
    CHECK(!strcmp(c.lines[0].id, "north-1") && c.lines[0].direction == IT_AN_DIR_A_TO_B && c.lines[0].n_classes == 2);
    CHECK(c.zones[0].n_points == 4 && c.zones[0].congestion_count == 5 && c.zones[0].dwell_alert_s == 30);
    CHECK(c.speed_limit_kmh == 90 && c.calib_world[2][1] == 60);
    it_track_params g = it_track_default_params();
    g.track_high_thresh = 0.4f;
    it_track_params tp = it_camdef_track(&c, &g);
    CHECK(tp.track_buffer == 60 && tp.match_thresh == 0.7f && tp.track_high_thresh == 0.4f);
    /* Written back and read again: the same definition, byte for byte. */
    json_t *j = it_camdef_to_json(&c, 0);
    it_camdef back;
    CHECK(j && it_camdef_from_json(j, 0, &back, err, sizeof err) == 0);
    CHECKF(memcmp(&back, &c, sizeof c) == 0, "round trip differs: %s", err);
    json_decref(j);
    /* The analytics accept what the parser accepted. */
    it_an_config ac = it_camdef_analytics(&c, 1280, 720);
    it_analytics *an = it_analytics_new(&ac);
    CHECKF(an != NULL, "%s", itscam_last_error());
    it_analytics_free(an);
    CHECK(it_camdef_has_analytics(&c));
    /* A patch replaces the lines; null removes the calibration (and so the limit must go). */
    EXPECT_BAD("{\"calibration\":null}", 1, "speed_limit_kmh: needs a calibration (image and world points) to measure speed");
    CHECKF(parse("{\"calibration\":null,\"speed_limit_kmh\":0,\"lines\":[]}", 1, &c) == 0, "%s", err);
    CHECK(!c.has_calibration && c.n_lines == 0 && c.n_zones == 1);

    EXPECT_BAD("{\"lines\":[{\"id\":\"x\",\"points\":[[1,1],[1,1]]}]}", 1, "lines[0].points: the two points must differ");
    EXPECT_BAD("{\"lines\":[{\"id\":\"x\",\"points\":[[1,1],[2,\"a\"]]}]}", 1,
               "lines[0].points[1]: must be a point [x, y] of two numbers (pixels, or 0..1 with coordinates: normalized)");
    EXPECT_BAD("{\"lines\":[{\"points\":[[1,1],[2,2]]}]}", 1, "lines[0].id: required");
    EXPECT_BAD("{\"lines\":[{\"id\":\"a/b\",\"points\":[[1,1],[2,2]]}]}", 1,
               "lines[0].id: must be 1 to 63 characters of A-Z, a-z, 0-9, '_' and '-'");
    EXPECT_BAD("{\"lines\":[{\"id\":\"x\",\"points\":[[1,1],[2,2]]},{\"id\":\"x\",\"points\":[[1,1],[2,3]]}]}", 1,
               "lines[1].id: 'x' is already the id of lines[0]");
    EXPECT_BAD("{\"lines\":[{\"id\":\"x\",\"points\":[[1,1],[2,2]],\"direction\":\"up\"}]}", 1,
               "lines[0].direction: must be one of both, a_to_b, b_to_a");
    EXPECT_BAD("{\"lines\":[{\"id\":\"x\",\"points\":[[1,1],[2,2]],\"colour\":1}]}", 1,
               "lines[0].colour: unknown key (id, points, classes, direction, min_distance)");
    EXPECT_BAD("{\"zones\":[{\"id\":\"z\",\"polygon\":[[0,0],[1,1]]}]}", 1,
               "zones[0].polygon: must be a list of 3 to 64 points [[x, y], ...]");
    EXPECT_BAD("{\"zones\":[{\"id\":\"z\",\"polygon\":[[0,0],[1,1],[2,2]]}]}", 1,
               "zones[0].polygon: the polygon has no area (its points lie on one line)");
    EXPECT_BAD("{\"zones\":[{\"id\":\"z\",\"polygon\":[[0,0],[1,0],[1,1]],\"congestion_count\":2.5}]}", 1,
               "zones[0].congestion_count: must be an integer from 0 to 10000");
    EXPECT_BAD("{\"zones\":[{\"id\":\"z\",\"polygon\":[[0,0],[1,0],[1,1]],\"classes\":[2,2]}]}", 1,
               "zones[0].classes[1]: class id 2 is listed twice");
    EXPECT_BAD("{\"coordinates\":\"normalized\"}", 1, "zones[0].polygon[1]: must lie in 0..1 with coordinates: normalized");
    EXPECT_BAD("{\"calibration\":{\"image\":[[0,0],[1,0],[2,0],[0,1]],\"world\":[[0,0],[1,0],[1,1],[0,1]]}}", 1,
               "calibration: the points do not define a view of the ground (three of them on one line, or a point repeated)");
    EXPECT_BAD("{\"calibration\":{\"image\":[[0,0],[1,0],[1,1],[0,1]]}}", 1, "calibration.world: required");
    EXPECT_BAD("{\"track\":{\"track_buffer\":0}}", 1,
               "track.track_buffer: must be an integer from 1 to 3000, or null for the server's track: setting");
    EXPECT_BAD("{\"track\":{\"fuse\":true}}", 1, "track.fuse: unknown key");
    EXPECT_BAD("{\"anchor\":\"left\"}", 1, "anchor: must be one of bottom_center, center, top_center");

    /* YAML: errors name the file, the line and the key path of the bad value. */
    const char *yaml = "cameras:\n"
                       "  - id: a\n"
                       "    url: /v.mp4\n"
                       "    lines:\n"
                       "      - id: l1\n"
                       "        points: [[0, 0], [10, 0]]\n"
                       "    zones:\n"
                       "      - id: z1\n"
                       "        polygon:\n"
                       "          - [0, 0]\n"
                       "          - [10, 0]\n"
                       "          - [10, x]\n";
    EXPECT_YAML_BAD(yaml, "t.yaml:12: cameras[0].zones[0].polygon[2]: must be a point [x, y] of two numbers "
                          "(pixels, or 0..1 with coordinates: normalized)");
    EXPECT_YAML_BAD("cameras:\n  - id: a\n    url: /v.mp4\n    lines:\n      - id: l1\n        points: [[0, 0], [10, 0]]\n"
                    "        direction: sideways\n",
                    "t.yaml:7: cameras[0].lines[0].direction: must be one of both, a_to_b, b_to_a");
    EXPECT_YAML_BAD("cameras:\n  - id: a\n    url: /v.mp4\n    track:\n      new_track_thresh: 25\n",
                    "t.yaml:5: cameras[0].track.new_track_thresh: must be a number from 0 to 1, or null for the "
                    "server's track: setting");
    it_camdef *l;
    int n;
    CHECKF(load_cams("cameras:\n  - id: a\n    url: /v.mp4\n    coordinates: normalized\n    lines:\n"
                     "      - {id: l1, points: [[0, 0.5], [1, 0.5]], direction: b_to_a}\n", &l, &n) == 0, "%s", err);
    CHECK(n == 1 && l[0].normalized && l[0].lines[0].points[1][0] == 1.0f);
    it_free(l);

    /* The global track: section, with its defaults from bytetrack.yaml. */
    srv_config cfg;
    srv_config_defaults(&cfg);
    CHECK(cfg.track.track_buffer == 30 && cfg.track.new_track_thresh == 0.25f && cfg.track.frame_rate == 30);
    const char *tr = "track:\n  track_buffer: 90\n  match_thresh: 0.9\n";
    CHECKF(srv_config_load_string(&cfg, tr, strlen(tr), "t.yaml", err, sizeof err) == 0, "%s", err);
    CHECK(cfg.track.track_buffer == 90 && cfg.track.match_thresh == 0.9f);
}

int main(void) {
    test_json();
    test_analytics_keys();
    test_yaml();
    test_env_and_flag();
    test_merge();
    test_store();
    printf("test_camdef: %d checks, %d failed\n", check_count, check_failures);
    return check_failures ? 1 : 0;
}
