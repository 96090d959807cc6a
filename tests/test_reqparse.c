/* Request body parsers: multipart/form-data bodies as curl and browsers send them (and
 * broken ones), KServe v2 JSON and binary-extension requests, priority and class lists. */
#include "check.h"
#include "core/core.h"
#include "server/reqparse.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#define CT "multipart/form-data; boundary=XyZ"

static char err[256];

/* Parse a NUL-free text body with the given Content-Type. */
static int mp_text(const char *ct, const char *body, mp_part *parts, int max, int *n) {
    err[0] = 0;
    return mp_parse(ct, (const uint8_t *)body, strlen(body), parts, max, n, err, sizeof err);
}

static int has(const char *needle) { return strstr(err, needle) != NULL; }

static void test_multipart_basic(void) {
    const char *body =
        "--XyZ\r\n"
        "Content-Disposition: form-data; name=\"file\"; filename=\"bus.jpg\"\r\n"
        "Content-Type: image/jpeg\r\n"
        "\r\n"
        "JPEGDATA\r\n"
        "--XyZ\r\n"
        "content-disposition: Form-Data; name=conf\r\n"
        "\r\n"
        "0.5\r\n"
        "--XyZ--\r\n";
    mp_part p[4];
    int n = -1;
    CHECKF(mp_text(CT, body, p, 4, &n) == 0, "%s", err);
    CHECK(n == 2);
    if (n == 2) {
        CHECK(strcmp(p[0].name, "file") == 0 && strcmp(p[0].filename, "bus.jpg") == 0);
        CHECK(strcmp(p[0].content_type, "image/jpeg") == 0);
        CHECK(p[0].len == 8 && memcmp(p[0].data, "JPEGDATA", 8) == 0);
        CHECK(p[0].data == (const uint8_t *)body + (strstr(body, "JPEGDATA") - body)); /* no copy */
        CHECK(strcmp(p[1].name, "conf") == 0 && p[1].filename[0] == 0 && p[1].content_type[0] == 0);
        CHECK(p[1].len == 3 && memcmp(p[1].data, "0.5", 3) == 0);
    }
    /* Quoted boundary, case-insensitive parameter name, other parameters around it. */
    CHECKF(mp_text("Multipart/Form-Data; charset=utf-8; BOUNDARY=\"XyZ\"; x=y", body, p, 4, &n) == 0, "%s", err);
    CHECK(n == 2);
    /* Escaped quotes in a quoted filename, padding after the boundary, an empty part. */
    const char *body2 =
        "--a b\t \r\n"
        "Content-Disposition: form-data; name=\"f\"; filename=\"say \\\"hi\\\".png\"\r\n"
        "X-Other: whatever\r\n"
        "\r\n"
        "\r\n--a b\r\n"
        "Content-Disposition: form-data; name=\"g\"\r\n"
        "\r\n"
        "--a b--";
    CHECKF(mp_text("multipart/form-data; boundary=\"a b\"", body2, p, 4, &n) == 0, "%s", err);
    CHECK(n == 2);
    if (n == 2) {
        CHECK(strcmp(p[0].filename, "say \"hi\".png") == 0);
        CHECK(p[0].len == 0 && p[1].len == 0 && strcmp(p[1].name, "g") == 0);
    }
    /* No parts at all is a valid body. */
    CHECK(mp_text(CT, "--XyZ--\r\n", p, 4, &n) == 0 && n == 0);
}

static void test_multipart_binary(void) {
    /* File data full of CR, LF, dashes and prefixes of the delimiter. */
    static const uint8_t data[] = "\r\n\r\n--XY\r\n--Xy\r\n-XyZ\r\n--XyZZ\r\n--XyZ-x\r--XyZ\n--XyZ\r\n\0\xff\r";
    size_t dlen = sizeof data - 1;
    /* "\r\n--XyZ\r\n" inside would be a real delimiter: remove it from the data above. */
    uint8_t clean[64];
    memcpy(clean, data, dlen);
    for (size_t i = 0; i + 8 < dlen; i++)
        if (memcmp(clean + i, "\r\n--XyZ\r", 8) == 0) clean[i + 2] = '+';
    const char *head =
        "preamble to ignore\r\n--XyZ\r\n"
        "Content-Disposition: form-data; name=\"file\"; filename=\"x.bin\"\r\n"
        "Content-Type: application/octet-stream\r\n\r\n";
    const char *tail = "\r\n--XyZ--\r\nepilogue\r\n--XyZ\r\nignored too";
    uint8_t body[512];
    size_t hl = strlen(head), tl = strlen(tail);
    memcpy(body, head, hl);
    memcpy(body + hl, clean, dlen);
    memcpy(body + hl + dlen, tail, tl);
    mp_part p[2];
    int n = -1;
    CHECKF(mp_parse(CT, body, hl + dlen + tl, p, 2, &n, err, sizeof err) == 0, "%s", err);
    CHECK(n == 1 && p[0].len == dlen && memcmp(p[0].data, clean, dlen) == 0);
    CHECK(strcmp(p[0].content_type, "application/octet-stream") == 0);
    /* "--XyZZ" after CRLF is data, not a delimiter: the whole body lacks a close. */
    CHECK(mp_text(CT, "--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n--XyZZ--", p, 2, &n) == -1);
    CHECK(has("missing closing"));
}

static void test_multipart_errors(void) {
    mp_part p[2];
    int n = -1;
    const char *one = "--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n--XyZ--";
    CHECK(mp_text("multipart/form-data", one, p, 2, &n) == -1 && has("no boundary"));
    CHECK(mp_text("multipart/form-data; boundary=", one, p, 2, &n) == -1);
    CHECK(mp_text("multipart/form-data; boundary=\"XyZ", one, p, 2, &n) == -1);
    CHECK(mp_text("application/json", one, p, 2, &n) == -1 && has("not multipart"));
    CHECK(mp_text(NULL, one, p, 2, &n) == -1);
    char ct[200];
    snprintf(ct, sizeof ct, "multipart/form-data; boundary=%071d", 7);
    CHECK(mp_text(ct, one, p, 2, &n) == -1 && has("longer than 70"));
    snprintf(ct, sizeof ct, "multipart/form-data; boundary=%070d", 7);
    CHECK(mp_text(ct, one, p, 2, &n) == -1 && has("no opening")); /* 70 is fine, but absent */
    CHECK(mp_text(CT, "--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n", p, 2, &n) == -1 &&
          has("missing closing"));
    CHECK(mp_text(CT, "--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\nx", p, 2, &n) == -1 &&
          has("missing closing"));
    CHECK(mp_text(CT, "--XyZ\r\nContent-Disposition: form-data; name=a\r\n", p, 2, &n) == -1 &&
          has("not terminated"));
    CHECK(mp_text(CT, "no boundary here", p, 2, &n) == -1 && has("no opening"));
    CHECK(mp_text(CT, "--XyZ\r\nContent-Type: text/plain\r\n\r\nx\r\n--XyZ--", p, 2, &n) == -1 &&
          has("no Content-Disposition"));
    CHECK(mp_text(CT, "--XyZ\r\nContent-Disposition: attachment; name=a\r\n\r\nx\r\n--XyZ--", p, 2, &n) == -1);
    CHECK(mp_text(CT, "--XyZ\r\nContent-Disposition: form-data; filename=a\r\n\r\nx\r\n--XyZ--", p, 2, &n) == -1 &&
          has("no name"));
    CHECK(mp_text(CT, "--XyZ\r\nContent-Disposition: form-data; name=\"a\r\n\r\nx\r\n--XyZ--", p, 2, &n) == -1);
    CHECK(mp_text(CT, "--XyZ\r\nContent-Disposition: form-data; name=\"\"\r\n\r\nx\r\n--XyZ--", p, 2, &n) == -1 &&
          has("no name"));
    CHECK(mp_text(CT, "--XyZ\r\nno colon\r\n\r\nx\r\n--XyZ--", p, 2, &n) == -1 && has("malformed header"));
    /* Too many parts. */
    const char *three = "--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n"
                        "--XyZ\r\nContent-Disposition: form-data; name=b\r\n\r\n2\r\n"
                        "--XyZ\r\nContent-Disposition: form-data; name=c\r\n\r\n3\r\n--XyZ--\r\n";
    CHECK(mp_text(CT, three, p, 2, &n) == -1 && has("more than 2 parts"));
    mp_part p3[3];
    CHECK(mp_text(CT, three, p3, 3, &n) == 0 && n == 3 && p3[2].data[0] == '3');
    /* Header lines: 1024 bytes pass, 1025 fail, also without any CRLF in reach. */
    static char body[4096];
    for (int len = 1024; len <= 1025; len++) {
        int o = snprintf(body, sizeof body, "--XyZ\r\nContent-Disposition: form-data; name=a\r\nX-Pad: ");
        int pad = len - (int)strlen("X-Pad: ");
        memset(body + o, 'p', (size_t)pad);
        snprintf(body + o + pad, sizeof body - (size_t)(o + pad), "\r\n\r\nx\r\n--XyZ--");
        int rc = mp_text(CT, body, p, 2, &n);
        if (len == 1024) CHECKF(rc == 0 && n == 1, "%s", err);
        else CHECK(rc == -1 && has("longer than 1024"));
    }
    int o = snprintf(body, sizeof body, "--XyZ\r\nContent-Disposition: form-data; name=a");
    memset(body + o, 'q', 3000);
    body[o + 3000] = 0;
    CHECK(mp_text(CT, body, p, 2, &n) == -1 && has("longer than 1024"));
    /* A field name longer than the struct holds is refused, not truncated. */
    o = snprintf(body, sizeof body, "--XyZ\r\nContent-Disposition: form-data; name=");
    memset(body + o, 'n', 200);
    snprintf(body + o + 200, sizeof body - (size_t)o - 200, "\r\n\r\nx\r\n--XyZ--");
    CHECK(mp_text(CT, body, p, 2, &n) == -1 && has("field name longer"));
}

/* ---- KServe ---- */

static ks_request req;

static int ks_text(const char *json) {
    err[0] = 0;
    return ks_parse_infer((const uint8_t *)json, strlen(json), strlen(json), &req, err, sizeof err);
}

static void test_ks_json(void) {
    const char *flat = "{\"id\":\"req-7\",\"inputs\":[{\"name\":\"images\",\"datatype\":\"FP32\",\"shape\":[1,3,2,2],"
                       "\"data\":[0,0.5,1,1.5,2,2.5,3,3.5,4,4.5,5,-5.5]}]}";
    CHECKF(ks_text(flat) == 0, "%s", err);
    CHECK(strcmp(req.id, "req-7") == 0 && req.n_inputs == 1 && req.n_outputs == 0);
    ks_input *in = &req.inputs[0];
    CHECK(strcmp(in->name, "images") == 0 && in->datatype == KS_FP32 && in->ndim == 4);
    CHECK(in->shape[0] == 1 && in->shape[1] == 3 && in->shape[2] == 2 && in->shape[3] == 2);
    CHECK(in->nbytes == 48 && in->data == in->owned);
    if (in->data) {
        const float *f = in->data;
        CHECK(f[0] == 0.0f && f[1] == 0.5f && f[6] == 3.0f && f[11] == -5.5f);
    }
    CHECK(req.detections == 0 && req.conf < 0 && req.iou < 0 && req.max_det == -1 && req.priority == -1 &&
          req.timeout_ms == -1 && req.binary_output == 0);
    ks_request_free(&req);
    CHECK(req.inputs[0].owned == NULL);

    const char *nested = "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1,2,3],"
                         "\"data\":[[[1,2,3],[4,5,6]]]}]}";
    CHECKF(ks_text(nested) == 0, "%s", err);
    if (req.inputs[0].data) {
        const float *f = req.inputs[0].data;
        CHECK(f[0] == 1 && f[2] == 3 && f[3] == 4 && f[5] == 6);
        CHECK(req.id[0] == 0);
    }
    ks_request_free(&req);
    /* Deeper than the shape's dimensions. */
    CHECK(ks_text("{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[2],\"data\":[[1],[2]]}]}") == -1 &&
          has("nested deeper"));

    CHECKF(ks_text("{\"inputs\":[{\"name\":\"u\",\"datatype\":\"UINT8\",\"shape\":[4],\"data\":[0,1,254,255]}]}") == 0,
           "%s", err);
    if (req.inputs[0].data) {
        const uint8_t *u = req.inputs[0].data;
        CHECK(req.inputs[0].nbytes == 4 && u[0] == 0 && u[2] == 254 && u[3] == 255);
    }
    ks_request_free(&req);
    CHECK(ks_text("{\"inputs\":[{\"name\":\"u\",\"datatype\":\"UINT8\",\"shape\":[2],\"data\":[0,256]}]}") == -1 &&
          has("inputs[0].data[1]"));
    CHECK(ks_text("{\"inputs\":[{\"name\":\"u\",\"datatype\":\"UINT8\",\"shape\":[2],\"data\":[0,1.5]}]}") == -1);
    CHECK(ks_text("{\"inputs\":[{\"name\":\"u\",\"datatype\":\"UINT8\",\"shape\":[1],\"data\":[-1]}]}") == -1);

    CHECKF(ks_text("{\"inputs\":[{\"name\":\"a\",\"datatype\":\"INT64\",\"shape\":[2],\"data\":[-9007199254740993,"
                   "640]},{\"name\":\"b\",\"datatype\":\"INT32\",\"shape\":[1],\"data\":[-2147483648]}]}") == 0,
           "%s", err);
    if (req.inputs[0].data && req.inputs[1].data) {
        const int64_t *v = req.inputs[0].data;
        const int32_t *w = req.inputs[1].data;
        CHECK(v[0] == -9007199254740993LL && v[1] == 640 && req.inputs[0].nbytes == 16);
        CHECK(w[0] == INT32_MIN && req.n_inputs == 2);
    }
    ks_request_free(&req);
    CHECK(ks_text("{\"inputs\":[{\"name\":\"b\",\"datatype\":\"INT32\",\"shape\":[1],\"data\":[2147483648]}]}") == -1);
    CHECK(ks_text("{\"inputs\":[{\"name\":\"b\",\"datatype\":\"INT64\",\"shape\":[1],\"data\":[1.0]}]}") == -1);
    CHECK(ks_text("{\"inputs\":[{\"name\":\"f\",\"datatype\":\"FP32\",\"shape\":[1],\"data\":[1e300]}]}") == -1 &&
          has("FP32 range"));
    CHECK(ks_text("{\"inputs\":[{\"name\":\"f\",\"datatype\":\"FP32\",\"shape\":[1],\"data\":[\"1\"]}]}") == -1 &&
          has("expected a number"));
    CHECK(ks_text("{\"inputs\":[{\"name\":\"h\",\"datatype\":\"FP16\",\"shape\":[1],\"data\":[1]}]}") == -1 &&
          has("only as binary"));
}

static void test_ks_errors(void) {
    /* Shape and data disagree. */
    CHECK(ks_text("{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1,3,2,2],\"data\":[1,2,3]}]}") == -1);
    CHECKF(has("inputs[0].data: 3 elements, shape [1,3,2,2] needs 12"), "%s", err);
    CHECK(ks_text("{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[2],\"data\":[1,2,3]}]}") == -1 &&
          has("3 elements"));
    /* Shapes: too large (and overflowing int64 if multiplied naively), empty, negative, too many dims. */
    CHECK(ks_text("{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[65536,65536],\"data\":[1]}]}") == -1 &&
          has("2^28"));
    CHECK(ks_text("{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[4294967296,4294967296,"
                  "4294967296],\"data\":[1]}]}") == -1 &&
          has("2^28"));
    CHECK(ks_text("{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[2,9223372036854775807],"
                  "\"data\":[1]}]}") == -1 &&
          has("2^28"));
    CHECK(ks_text("{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1,0],\"data\":[]}]}") == -1 &&
          has("empty tensor"));
    CHECK(ks_text("{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[-1],\"data\":[1]}]}") == -1 &&
          has("shape[0]"));
    CHECK(ks_text("{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[],\"data\":[1]}]}") == -1);
    CHECK(ks_text("{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data\":[1]}]}") ==
              -1 &&
          has("1 to 8 dimensions"));
    CHECK(ks_text("{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1.5],\"data\":[1]}]}") == -1);
    /* Datatypes and structure. */
    CHECK(ks_text("{\"inputs\":[{\"name\":\"x\",\"datatype\":\"BYTES\",\"shape\":[1],\"data\":[1]}]}") == -1 &&
          has("unsupported datatype 'BYTES'"));
    CHECK(ks_text("{\"inputs\":[{\"name\":\"x\",\"datatype\":\"fp32\",\"shape\":[1],\"data\":[1]}]}") == -1);
    CHECK(ks_text("{\"inputs\":[{\"datatype\":\"FP32\",\"shape\":[1],\"data\":[1]}]}") == -1 && has("name"));
    CHECK(ks_text("{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1]}]}") == -1 && has("no data"));
    CHECK(ks_text("{\"inputs\":[]}") == -1 && has("1 to 4 inputs"));
    CHECK(ks_text("{\"id\":\"x\"}") == -1 && has("inputs: missing"));
    CHECK(ks_text("[1,2]") == -1 && has("JSON object"));
    CHECK(ks_text("{\"id\":5,\"inputs\":[]}") == -1 && has("id"));
    CHECK(ks_text("{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1],\"data\":[1]},"
                  "{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1],\"data\":[2]}]}") == -1 &&
          has("duplicate"));
    /* Malformed JSON names the byte. */
    /* jansson counts the bytes read up to and including the bad token: the second ','
     * is the 15th byte. */
    CHECK(ks_text("{\"inputs\": [1,,2]}") == -1);
    CHECKF(has("malformed JSON at byte 15"), "%s", err);
    CHECK(ks_text("{\"inputs\":[]} trailing") == -1 && has("malformed JSON at byte"));
    CHECK(ks_text("{\"inputs\":[],\"inputs\":[]}") == -1 && has("malformed JSON"));
    /* An error leaves nothing owned, and a second error after a success too. */
    CHECK(ks_text("{\"inputs\":[{\"name\":\"a\",\"datatype\":\"FP32\",\"shape\":[1],\"data\":[1]},"
                  "{\"name\":\"b\",\"datatype\":\"FP32\",\"shape\":[1],\"data\":[true]}]}") == -1);
    CHECK(req.inputs[0].owned == NULL && req.n_inputs == 0);
    ks_request_free(&req);
}

static void test_ks_params(void) {
    const char *in = "\"inputs\":[{\"name\":\"x\",\"datatype\":\"UINT8\",\"shape\":[1],\"data\":[1]}]";
    char buf[1024];
    snprintf(buf, sizeof buf,
             "{%s,\"parameters\":{\"detections\":true,\"priority\":\"urgent\",\"conf\":0.4,\"iou\":1,"
             "\"max_det\":50,\"timeout\":250001,\"future_knob\":[1,2]},"
             "\"outputs\":[{\"name\":\"output0\",\"parameters\":{\"binary_data\":true}},{\"name\":\"extra\"}]}",
             in);
    CHECKF(ks_text(buf) == 0, "%s", err);
    CHECK(req.detections == 1 && req.priority == 0 && req.max_det == 50 && req.timeout_ms == 251);
    CHECK(req.conf > 0.399f && req.conf < 0.401f && req.iou == 1.0f);
    CHECK(req.n_outputs == 2 && strcmp(req.outputs[0], "output0") == 0 && strcmp(req.outputs[1], "extra") == 0);
    CHECK(req.binary_output == 1);
    ks_request_free(&req);
    snprintf(buf, sizeof buf, "{%s,\"parameters\":{\"priority\":2,\"binary_data_output\":true}}", in);
    CHECKF(ks_text(buf) == 0 && req.priority == 2 && req.binary_output == 1, "%s", err);
    ks_request_free(&req);
    snprintf(buf, sizeof buf, "{%s,\"outputs\":[{\"name\":\"o\",\"parameters\":{\"binary_data\":false}}]}", in);
    CHECKF(ks_text(buf) == 0 && req.binary_output == 0 && req.n_outputs == 1, "%s", err);
    ks_request_free(&req);
    static const char *bad[][2] = {
        {"\"parameters\":{\"conf\":1.5}", "parameters.conf"},
        {"\"parameters\":{\"conf\":-0.1}", "parameters.conf"},
        {"\"parameters\":{\"iou\":\"0.5\"}", "parameters.iou"},
        {"\"parameters\":{\"priority\":\"asap\"}", "parameters.priority"},
        {"\"parameters\":{\"priority\":3}", "parameters.priority"},
        {"\"parameters\":{\"timeout\":0}", "parameters.timeout"},
        {"\"parameters\":{\"timeout\":2.5}", "parameters.timeout"},
        {"\"parameters\":{\"max_det\":0}", "parameters.max_det"},
        {"\"parameters\":{\"max_det\":10001}", "parameters.max_det: expected an integer in [1,10000]"},
        {"\"parameters\":{\"detections\":1}", "parameters.detections"},
        {"\"parameters\":[]", "parameters"},
        {"\"outputs\":[{\"name\":\"o\",\"parameters\":{\"binary_data\":1}}]", "binary_data"},
        {"\"outputs\":[{}]", "outputs[0].name"},
        {"\"outputs\":{}", "outputs"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(buf, sizeof buf, "{%s,%s}", in, bad[i][0]);
        CHECKF(ks_text(buf) == -1 && has(bad[i][1]), "%s -> %s", bad[i][0], err);
    }
    CHECK(it_sched_prio_parse("urgent") == 0 && it_sched_prio_parse("normal") == 1 && it_sched_prio_parse("batch") == 2);
    CHECK(it_sched_prio_parse("Batch") == 2 && it_sched_prio_parse("0") == 0 && it_sched_prio_parse("2") == 2);
    CHECK(it_sched_prio_parse("3") == -1 && it_sched_prio_parse("") == -1 && it_sched_prio_parse("01") == -1 &&
          it_sched_prio_parse(NULL) == -1 && it_sched_prio_parse("urgentx") == -1);
}

/* Body = JSON then the binary tensors; returns the total length. */
static size_t bin_body(uint8_t *buf, const char *json, const void *a, size_t na, const void *b, size_t nb,
                       size_t *json_len) {
    size_t jl = strlen(json);
    memcpy(buf, json, jl);
    memcpy(buf + jl, a, na);
    if (nb) memcpy(buf + jl + na, b, nb);
    *json_len = jl;
    return jl + na + nb;
}

static void test_ks_binary(void) {
    float f[6] = {1, 2, 3, 4, 5, 6};
    uint8_t u[3] = {7, 8, 9};
    uint8_t body[1024];
    size_t jl;
    const char *json = "{\"inputs\":[{\"name\":\"images\",\"datatype\":\"FP32\",\"shape\":[1,2,3],"
                       "\"parameters\":{\"binary_data_size\":24}},"
                       "{\"name\":\"json\",\"datatype\":\"INT64\",\"shape\":[1],\"data\":[42]},"
                       "{\"name\":\"mask\",\"datatype\":\"UINT8\",\"shape\":[3],"
                       "\"parameters\":{\"binary_data_size\":3}}]}";
    size_t len = bin_body(body, json, f, sizeof f, u, sizeof u, &jl);
    CHECKF(ks_parse_infer(body, len, jl, &req, err, sizeof err) == 0, "%s", err);
    CHECK(req.n_inputs == 3);
    CHECK(req.inputs[0].data == body + jl && req.inputs[0].nbytes == 24 && req.inputs[0].owned == NULL);
    CHECK(req.inputs[2].data == body + jl + 24 && req.inputs[2].nbytes == 3);
    CHECK(req.inputs[1].owned && *(const int64_t *)req.inputs[1].data == 42);
    float back[6];
    if (req.inputs[0].data) {
        memcpy(back, req.inputs[0].data, sizeof back); /* binary data may be unaligned */
        CHECK(back[5] == 6.0f);
    }
    ks_request_free(&req);

    /* Sizes wrong in each way: too few bytes, too many, a declared size that does not fit
     * the shape, binary data without any binary input, a binary input without data. */
    CHECK(ks_parse_infer(body, len - 1, jl, &req, err, sizeof err) == -1 && has("the body has 26 after"));
    uint8_t more[1100];
    memcpy(more, body, len);
    more[len] = 0;
    CHECK(ks_parse_infer(more, len + 1, jl, &req, err, sizeof err) == -1 && has("declare 27 bytes"));
    const char *wrong = "{\"inputs\":[{\"name\":\"i\",\"datatype\":\"FP32\",\"shape\":[1,2,3],"
                        "\"parameters\":{\"binary_data_size\":23}}]}";
    len = bin_body(body, wrong, f, 23, NULL, 0, &jl);
    CHECK(ks_parse_infer(body, len, jl, &req, err, sizeof err) == -1);
    CHECKF(has("binary_data_size: 23 bytes, shape [1,2,3] of FP32 needs 24"), "%s", err);
    const char *plain = "{\"inputs\":[{\"name\":\"i\",\"datatype\":\"UINT8\",\"shape\":[3],\"data\":[1,2,3]}]}";
    len = bin_body(body, plain, u, 3, NULL, 0, &jl);
    CHECK(ks_parse_infer(body, len, jl, &req, err, sizeof err) == -1 && has("no input has"));
    const char *one = "{\"inputs\":[{\"name\":\"i\",\"datatype\":\"UINT8\",\"shape\":[3],"
                      "\"parameters\":{\"binary_data_size\":3}}]}";
    len = bin_body(body, one, u, 3, NULL, 0, &jl);
    CHECK(ks_parse_infer(body, jl, jl, &req, err, sizeof err) == -1 && has("Inference-Header-Content-Length"));
    CHECK(ks_parse_infer(body, len, len + 1, &req, err, sizeof err) == -1);
    CHECK(ks_parse_infer(body, len, 0, &req, err, sizeof err) == -1);
    /* JSON length cutting the JSON short: malformed. */
    CHECK(ks_parse_infer(body, len, jl - 1, &req, err, sizeof err) == -1 && has("malformed JSON"));
    /* FP16 as binary is fine. */
    const char *half = "{\"inputs\":[{\"name\":\"h\",\"datatype\":\"FP16\",\"shape\":[2],"
                       "\"parameters\":{\"binary_data_size\":4}}]}";
    len = bin_body(body, half, u, 3, u, 1, &jl);
    CHECKF(ks_parse_infer(body, len, jl, &req, err, sizeof err) == 0 && req.inputs[0].nbytes == 4, "%s", err);
    ks_request_free(&req);
    /* Both data and binary_data_size. */
    const char *both = "{\"inputs\":[{\"name\":\"i\",\"datatype\":\"UINT8\",\"shape\":[1],\"data\":[1],"
                       "\"parameters\":{\"binary_data_size\":1}}]}";
    len = bin_body(body, both, u, 1, NULL, 0, &jl);
    CHECK(ks_parse_infer(body, len, jl, &req, err, sizeof err) == -1 && has("both"));
}

static void test_classes(void) {
    int c[4];
    CHECK(srv_parse_classes("0,2,5", c, 4) == 3 && c[0] == 0 && c[1] == 2 && c[2] == 5);
    CHECK(srv_parse_classes("100000", c, 4) == 1 && c[0] == 100000);
    CHECK(srv_parse_classes("007", c, 4) == 1 && c[0] == 7);
    CHECK(srv_parse_classes("100001", c, 4) == -1);
    CHECK(srv_parse_classes("99999999999999999999", c, 4) == -1);
    CHECK(srv_parse_classes("", c, 4) == -1);
    CHECK(srv_parse_classes("1,,2", c, 4) == -1);
    CHECK(srv_parse_classes("1,", c, 4) == -1);
    CHECK(srv_parse_classes(",1", c, 4) == -1);
    CHECK(srv_parse_classes("-1", c, 4) == -1);
    CHECK(srv_parse_classes("1, 2", c, 4) == -1);
    CHECK(srv_parse_classes("1x", c, 4) == -1);
    CHECK(srv_parse_classes("1,2,3,4", c, 4) == 4);
    CHECK(srv_parse_classes("1,2,3,4,5", c, 4) == -1);
    CHECK(srv_parse_classes(NULL, c, 4) == -1);
}

/* Query values parse whole or not at all: a percent-decoded NUL, trailing text, spaces,
 * NaN and infinity are refused. */
static void test_values(void) {
    double x;
    long l;
    int b;
    CHECK(srv_parse_double("0.25", 4, 0, 1, &x) == 0 && x == 0.25);
    CHECK(srv_parse_double(".5", 2, 0, 1, &x) == 0 && x == 0.5);
    CHECK(srv_parse_double("1", 1, 0, 1, &x) == 0 && x == 1);
    CHECK(srv_parse_double("0.25\0evil", 9, 0, 1, &x) == -1);
    CHECK(srv_parse_double("0.25x", 5, 0, 1, &x) == -1);
    CHECK(srv_parse_double(" 0.25", 5, 0, 1, &x) == -1);
    CHECK(srv_parse_double("0.25 ", 5, 0, 1, &x) == -1);
    CHECK(srv_parse_double("nan", 3, 0, 1, &x) == -1 && srv_parse_double("-nan", 4, -1, 1, &x) == -1);
    CHECK(srv_parse_double("inf", 3, 0, 1e300, &x) == -1 && srv_parse_double("-inf", 4, -1e300, 1, &x) == -1);
    CHECK(srv_parse_double("1e999", 5, 0, 1e308, &x) == -1);
    CHECK(srv_parse_double("1.5", 3, 0, 1, &x) == -1 && srv_parse_double("", 0, 0, 1, &x) == -1);
    CHECK(srv_parse_double(NULL, 0, 0, 1, &x) == -1);
    CHECK(srv_parse_long("300", 3, 1, 10000, &l) == 0 && l == 300);
    CHECK(srv_parse_long("3\0", 2, 1, 10000, &l) == -1 && srv_parse_long("3.0", 3, 1, 10000, &l) == -1);
    CHECK(srv_parse_long("0", 1, 1, 10000, &l) == -1 && srv_parse_long("10001", 5, 1, 10000, &l) == -1);
    CHECK(srv_parse_long("99999999999999999999999", 23, 1, 10000, &l) == -1);
    CHECK(srv_parse_long(" 5", 2, 1, 10000, &l) == -1 && srv_parse_long("5 ", 2, 1, 10000, &l) == -1);
    CHECK(srv_parse_bool("true", 4, &b) == 0 && b == 1 && srv_parse_bool("0", 1, &b) == 0 && b == 0);
    CHECK(srv_parse_bool("false", 5, &b) == 0 && b == 0 && srv_parse_bool("1", 1, &b) == 0 && b == 1);
    CHECK(srv_parse_bool("yes", 3, &b) == -1 && srv_parse_bool("True", 4, &b) == -1);
    CHECK(srv_parse_bool("true\0", 5, &b) == -1 && srv_parse_bool("", 0, &b) == -1 && srv_parse_bool(NULL, 0, &b) == -1);
}

/* Binary FP32 and FP16 tensors must be finite, as JSON numbers are. */
static void test_ks_nonfinite(void) {
    uint8_t body[512];
    size_t jl;
    const char *j32 = "{\"inputs\":[{\"name\":\"images\",\"datatype\":\"FP32\",\"shape\":[2],"
                      "\"parameters\":{\"binary_data_size\":8}}]}";
    float f[2] = { 1.0f, NAN };
    size_t len = bin_body(body, j32, f, sizeof f, NULL, 0, &jl);
    CHECKF(ks_parse_infer(body, len, jl, &req, err, sizeof err) == -1 && has("'images'") && has("NaN"), "%s", err);
    f[1] = INFINITY;
    len = bin_body(body, j32, f, sizeof f, NULL, 0, &jl);
    CHECKF(ks_parse_infer(body, len, jl, &req, err, sizeof err) == -1 && has("infinite"), "%s", err);
    f[1] = 2.0f;
    len = bin_body(body, j32, f, sizeof f, NULL, 0, &jl);
    CHECKF(ks_parse_infer(body, len, jl, &req, err, sizeof err) == 0, "%s", err);
    ks_request_free(&req);
    const char *j16 = "{\"inputs\":[{\"name\":\"h\",\"datatype\":\"FP16\",\"shape\":[2],"
                      "\"parameters\":{\"binary_data_size\":4}}]}";
    uint8_t h[4] = { 0x00, 0x3c, 0x00, 0x7e }; /* 1.0, NaN */
    len = bin_body(body, j16, h, sizeof h, NULL, 0, &jl);
    CHECKF(ks_parse_infer(body, len, jl, &req, err, sizeof err) == -1 && has("'h'") && has("NaN"), "%s", err);
    char buf[512];
    snprintf(buf, sizeof buf, "{\"inputs\":[{\"name\":\"u\",\"datatype\":\"UINT8\",\"shape\":[1],\"data\":[1]}],"
             "\"parameters\":{\"timeout_ms\":3600001}}");
    CHECKF(ks_text(buf) == -1 && has("parameters.timeout_ms"), "%s", err);
}

/* A failed allocation is an ordinary error that leaves nothing behind. */
static void test_ks_nomem(void) {
    it_alloc_fail_after(0);
    int rc = ks_text("{\"inputs\":[{\"name\":\"u\",\"datatype\":\"UINT8\",\"shape\":[2],\"data\":[1,2]}]}");
    it_alloc_fail_after(-1);
    CHECK(rc == -1 && has("out of memory") && req.inputs[0].owned == NULL);
    ks_request_free(&req);
}

int main(void) {
    test_multipart_basic();
    test_multipart_binary();
    test_multipart_errors();
    test_ks_json();
    test_ks_errors();
    test_ks_params();
    test_ks_binary();
    test_ks_nomem();
    test_classes();
    test_values();
    test_ks_nonfinite();
    return check_done("test_reqparse");
}
