/* Request body parsers for the server: multipart/form-data and KServe v2 inference
 * requests (JSON, with the binary tensor extension). Pure functions over a byte buffer:
 * no I/O, no globals, bounded, so they are fuzzed directly (fuzz/fuzz_request.c). */
#ifndef ITSCAM_SERVER_REQPARSE_H
#define ITSCAM_SERVER_REQPARSE_H

#include "server/config.h" /* the priority levels (sched/sched.h) */

#include <stddef.h>
#include <stdint.h>

/* ---- multipart/form-data (RFC 7578) ---- */
typedef struct mp_part {
    char name[128];          /* the form field name ("file") */
    char filename[256];      /* "" when absent */
    char content_type[128];  /* "" when absent */
    const uint8_t *data;     /* points into the body: no copy */
    size_t len;
} mp_part;
/* content_type: the request's Content-Type header (must carry boundary=...). Fills up to
 * max parts; *n gets the count. Returns 0, or -1 with a reason in err (no boundary, part
 * without headers end, missing closing boundary, more than max parts, ...). */
int mp_parse(const char *content_type, const uint8_t *body, size_t len, mp_part *parts, int max,
             int *n, char *err, size_t errlen);

/* ---- KServe v2 inference request ---- */
enum { KS_FP32 = 1, KS_UINT8 = 2, KS_INT64 = 3, KS_FP16 = 4, KS_INT32 = 5 };
#define KS_MAX_INPUTS 4
#define KS_MAX_OUTPUTS 8
#define KS_MAX_DIMS 8

typedef struct ks_input {
    char name[128];
    int datatype;                 /* KS_* */
    int ndim;
    int64_t shape[KS_MAX_DIMS];
    /* Element data, exactly prod(shape) elements of the datatype, little endian:
     * points into the body for binary data, else into `owned` (converted from JSON).
     * Binary data sits wherever the client put it, so it may be unaligned: memcpy it. */
    const void *data;
    size_t nbytes;
    void *owned;                  /* free()d by ks_request_free */
} ks_input;

typedef struct ks_request {
    char id[128];                 /* "" when absent */
    int n_inputs;
    ks_input inputs[KS_MAX_INPUTS];
    int n_outputs;                /* requested outputs (0: all) */
    char outputs[KS_MAX_OUTPUTS][128];
    int binary_output;            /* parameters.binary_data_output or per-output binary_data */
    /* itscam's request parameters ("parameters": {...}); -1 / NAN-free defaults: */
    int detections;               /* "detections": true -> 1 */
    float conf, iou;              /* < 0 when absent */
    int max_det;                  /* < 0 when absent */
    int priority;                 /* "priority": "urgent"|"normal"|"batch" or 0..2; -1 absent */
    int timeout_ms;               /* "timeout_ms", or Triton's "timeout" in microseconds
                                   * rounded up to ms; -1 absent */
} ks_request;

/* Parse a request. json_len: Inference-Header-Content-Length when the header was sent
 * (the JSON is body[0..json_len) and binary tensors follow in input order, each input
 * with "parameters": {"binary_data_size": N}), or len when not. Datatypes: FP32, UINT8,
 * INT64, INT32, FP16 (FP16 only as binary). Shapes are checked against the data size;
 * elements are limited to 2^28. On error returns -1 and writes a reason in err, with the
 * byte position for malformed JSON ("malformed JSON at byte 17: ..."). */
int ks_parse_infer(const uint8_t *body, size_t len, size_t json_len, ks_request *out, char *err,
                   size_t errlen);
void ks_request_free(ks_request *r);

/* ---- query and form values: strict, whole-value parsers ----
 * v is len bytes (the length the HTTP library decoded, so that a percent-encoded NUL as
 * in "0.25%00evil" is seen rather than cutting the value short). Each returns 0 and
 * stores the value, or -1 when the value is not exactly one well-formed item in range:
 * no NUL, no leading or trailing spaces, nothing after the number, finite. */
int srv_parse_double(const char *v, size_t len, double lo, double hi, double *out);
int srv_parse_long(const char *v, size_t len, long lo, long hi, long *out);
/* true/false/1/0 only. */
int srv_parse_bool(const char *v, size_t len, int *out);

/* Parse a comma-separated list of class ids ("0,2,5") into out (max entries); returns the
 * count or -1 on a bad id. */
int srv_parse_classes(const char *s, int *out, int max);

#endif
