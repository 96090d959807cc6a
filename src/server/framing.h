/* Request framing checks (RFC 9112 section 6): how long is the body, and is there any
 * doubt about it? A request whose length an intermediary could read differently is
 * refused before its body is read, so no bytes of it can be taken as a second request.
 * Pure functions: headers in, a verdict out; fuzz/fuzz_request.c calls them too. */
#ifndef ITSCAM_SERVER_FRAMING_H
#define ITSCAM_SERVER_FRAMING_H

#include <stddef.h>

typedef struct srv_header {
    const char *name, *value;   /* NUL-terminated; surrounding blanks already stripped */
} srv_header;

typedef struct srv_framing {
    int status;                 /* 0: acceptable; else the HTTP status to answer (400, 413, 501) */
    int close;                  /* 1: the connection must close after the answer (the rest
                                 * of the stream cannot be trusted to start a request) */
    long long content_length;   /* -1 when the request has none */
    int chunked;                /* Transfer-Encoding: chunked */
    char message[160];          /* why, for the client, when status != 0 */
} srv_framing;

/* Judge the framing headers of one request: Content-Length must be digits only and the
 * same in every copy, Transfer-Encoding may only be "chunked" and never comes with a
 * Content-Length or in an HTTP/1.0 request, and a declared length over max_body gets 413.
 * http10: the request line said HTTP/1.0. Never fails; out is always filled. */
void srv_check_framing(const srv_header *h, size_t n, int http10, long long max_body, srv_framing *out);

#endif
