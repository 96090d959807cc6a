/* Request framing checks (RFC 9112 section 6): see framing.h. */
#include "server/framing.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static void refuse(srv_framing *f, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void refuse(srv_framing *f, int status, const char *fmt, ...) {
    if (f->status) return; /* the first reason found is the one given */
    f->status = status;
    f->close = 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->message, sizeof f->message, fmt, ap);
    va_end(ap);
}

/* 1*DIGIT that fits in a long long; -1 for anything else (signs, blanks, lists). */
static long long parse_length(const char *s) {
    if (!*s) return -1;
    long long v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return -1;
        if (v > (__LONG_LONG_MAX__ - 9) / 10) return -1;
        v = v * 10 + (*s - '0');
    }
    return v;
}

void srv_check_framing(const srv_header *h, size_t n, int http10, long long max_body, srv_framing *out) {
    memset(out, 0, sizeof *out);
    out->content_length = -1;
    int n_te = 0;
    for (size_t i = 0; i < n; i++) {
        const char *v = h[i].value ? h[i].value : "";
        if (!h[i].name) continue;
        if (!strcasecmp(h[i].name, "Content-Length")) {
            long long len = parse_length(v);
            if (len < 0) {
                refuse(out, 400, "Content-Length '%.40s' is not a length: digits only", v);
            } else if (out->content_length >= 0 && out->content_length != len) {
                refuse(out, 400, "two different Content-Length headers (%lld and %lld)", out->content_length, len);
            } else {
                out->content_length = len;
            }
        } else if (!strcasecmp(h[i].name, "Transfer-Encoding")) {
            n_te++;
            if (strcasecmp(v, "chunked") != 0)
                refuse(out, strstr(v, "chunked") || strchr(v, ',') ? 400 : 501,
                       "Transfer-Encoding '%.40s' is not supported: only 'chunked'", v);
            else
                out->chunked = 1;
        }
    }
    if (n_te > 1) refuse(out, 400, "more than one Transfer-Encoding header");
    if (n_te && out->content_length >= 0)
        refuse(out, 400, "Content-Length and Transfer-Encoding together: the body's length is ambiguous");
    if (n_te && http10) refuse(out, 400, "Transfer-Encoding in an HTTP/1.0 request");
    if (out->content_length > max_body)
        refuse(out, 413, "the body of %lld bytes exceeds the limit of %lld bytes", out->content_length, max_body);
}
