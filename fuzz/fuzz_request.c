/* libFuzzer target: arbitrary request bodies through the multipart, KServe v2 and
 * query-parameter parsers (classes, priority, and the strict number and boolean values),
 * and arbitrary header lists through the framing check. Byte 0 picks the parser; a success must hand back parts and
 * tensors that lie inside the body (or inside what the request owns) and match the shape. */
#include "server/framing.h"
#include "server/reqparse.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check_multipart(const uint8_t *body, size_t len) {
    mp_part parts[8];
    int n = -1;
    char err[256];
    if (mp_parse("multipart/form-data; boundary=XyZ", body, len, parts, 8, &n, err, sizeof err) != 0) {
        if (!memchr(err, 0, sizeof err)) __builtin_trap();
        return;
    }
    if (n < 0 || n > 8) __builtin_trap();
    unsigned sum = 0;
    for (int i = 0; i < n; i++) {
        const mp_part *p = &parts[i];
        if (p->data < body || p->len > len || (size_t)(p->data - body) > len - p->len) __builtin_trap();
        if (!memchr(p->name, 0, sizeof p->name) || !memchr(p->filename, 0, sizeof p->filename) ||
            !memchr(p->content_type, 0, sizeof p->content_type) || !p->name[0])
            __builtin_trap();
        for (size_t k = 0; k < p->len; k++) sum += p->data[k];
    }
    (void)sum;
}

static size_t elem_size(int t) {
    switch (t) {
    case KS_FP32: case KS_INT32: return 4;
    case KS_UINT8: return 1;
    case KS_INT64: return 8;
    case KS_FP16: return 2;
    default: return 0;
    }
}

static void check_kserve(const uint8_t *body, size_t len, size_t json_len) {
    ks_request r;
    char err[256];
    if (ks_parse_infer(body, len, json_len, &r, err, sizeof err) != 0) {
        /* A failure owns nothing and leaves the struct freeable. */
        for (int i = 0; i < KS_MAX_INPUTS; i++)
            if (r.inputs[i].owned) __builtin_trap();
        if (!memchr(err, 0, sizeof err)) __builtin_trap();
        ks_request_free(&r);
        return;
    }
    if (r.n_inputs < 1 || r.n_inputs > KS_MAX_INPUTS || r.n_outputs < 0 || r.n_outputs > KS_MAX_OUTPUTS)
        __builtin_trap();
    unsigned sum = 0;
    for (int i = 0; i < r.n_inputs; i++) {
        const ks_input *in = &r.inputs[i];
        size_t es = elem_size(in->datatype), count = 1;
        if (!es || in->ndim < 1 || in->ndim > KS_MAX_DIMS) __builtin_trap();
        for (int d = 0; d < in->ndim; d++) {
            if (in->shape[d] < 1) __builtin_trap();
            count *= (size_t)in->shape[d];
        }
        if (count > ((size_t)1 << 28) || in->nbytes != count * es || !in->data) __builtin_trap();
        const uint8_t *p = in->data;
        if (in->owned ? in->data != in->owned
                      : (in->nbytes > len || p < body + json_len || (size_t)(p - body) > len - in->nbytes))
            __builtin_trap();
        for (size_t k = 0; k < in->nbytes; k++) sum += p[k];
    }
    if (!memchr(r.id, 0, sizeof r.id)) __builtin_trap();
    if (r.priority < -1 || r.priority > 2) __builtin_trap();
    (void)sum;
    ks_request_free(&r);
}

/* Lines "name:value" (split at the first ':') through srv_check_framing: a verdict is one
 * of the statuses it may give, a message goes with every refusal, and an accepted
 * request has a sane length. */
static void check_framing(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    if (!text) return;
    memcpy(text, data, size);
    text[size] = 0;
    srv_header h[32];
    size_t n = 0;
    for (char *line = text, *next; line && n < 32; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        char *colon = strchr(line, ':');
        if (!colon) continue;
        *colon = 0;
        h[n++] = (srv_header){ line, colon + 1 };
    }
    srv_framing f;
    long long max = size > 0 ? (long long)data[0] * 1000 : 0;
    srv_check_framing(h, n, size > 1 && (data[1] & 1), max, &f);
    if (f.status != 0 && f.status != 400 && f.status != 413 && f.status != 501) __builtin_trap();
    if (!memchr(f.message, 0, sizeof f.message)) __builtin_trap();
    if (f.status && (!f.message[0] || !f.close)) __builtin_trap();
    if (!f.status && (f.content_length > max || (f.chunked && f.content_length >= 0))) __builtin_trap();
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    uint8_t mode = data[0] % 6;
    data++, size--;
    switch (mode) {
    case 0:
        check_multipart(data, size);
        break;
    case 1:
        check_kserve(data, size, size);
        break;
    case 2: {
        if (size < 2) return 0;
        size_t jl = (size_t)data[0] | (size_t)data[1] << 8;
        data += 2, size -= 2;
        check_kserve(data, size, jl > size ? size : jl);
        break;
    }
    case 5:
        check_framing(data, size);
        break;
    default: {
        /* Query parameters arrive as C strings. */
        char *s = malloc(size + 1);
        if (!s) return 0;
        memcpy(s, data, size);
        s[size] = 0;
        int classes[16];
        int n = srv_parse_classes(s, classes, 16);
        if (n < -1 || n > 16) __builtin_trap();
        for (int i = 0; i < n; i++)
            if (classes[i] < 0 || classes[i] > 100000) __builtin_trap();
        int p = it_sched_prio_parse(s);
        if (p < -1 || p > 2) __builtin_trap();
        free(s);
        /* The strict value parsers take the decoded bytes, NULs included. */
        double x = -1;
        if (srv_parse_double((const char *)data, size, 0, 1, &x) == 0 && !(x >= 0 && x <= 1)) __builtin_trap();
        long l = -1;
        if (srv_parse_long((const char *)data, size, 1, 10000, &l) == 0 && (l < 1 || l > 10000)) __builtin_trap();
        int b = -1;
        if (srv_parse_bool((const char *)data, size, &b) == 0 && b != 0 && b != 1) __builtin_trap();
        if ((x >= 0 || l >= 1 || b >= 0) && memchr(data, 0, size)) __builtin_trap(); /* a NUL never parses */
        break;
    }
    }
    return 0;
}
