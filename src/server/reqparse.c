/* Request body parsers: multipart/form-data (RFC 7578 over RFC 2046) and KServe v2 /
 * Triton inference requests (JSON plus the binary tensor extension). Every function works
 * on a caller's byte buffer with fixed-size outputs, so a hostile body can cost at most a
 * linear scan and one allocation per input no larger than the body itself. */
#include "server/reqparse.h"

#include "core/core.h"
#include "itscam/itscam.h"
#include "server/config.h"

#include <errno.h>
#include <float.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Write a reason into err (when given) and return -1, so that callers write
 *   return fail(err, errlen, "...", ...);                                    */
static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...) {
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* ------------------------------------------------------------------------------------ */
/* Header values: "token; name=value; name=\"quoted \\\" string\"" over [s, end).      */

static int is_ows(int c) { return c == ' ' || c == '\t'; }

static const char *skip_ows(const char *s, const char *end) {
    while (s < end && is_ows((unsigned char)*s)) s++;
    return s;
}

/* Case-insensitive compare of [s, s+n) with the NUL-terminated word w. */
static int word_eq(const char *s, size_t n, const char *w) {
    return strlen(w) == n && strncasecmp(s, w, n) == 0;
}

/* Parse the next "; name=value" parameter at *s. Returns 1 with the name and value copied
 * (NUL-terminated), 0 at the end of the value, -1 on a syntax error. A name too long for
 * its buffer comes back as "" so that a truncated name can never match a known one; a
 * value too long sets *val_long (the value is then truncated) and the caller decides
 * whether that parameter matters. */
static int next_param(const char **sp, const char *end, char *name, size_t nname, char *val, size_t nval,
                      int *val_long) {
    const char *s = skip_ows(*sp, end);
    *val_long = 0;
    if (s == end) return 0;
    if (*s != ';') return -1;
    s = skip_ows(s + 1, end);
    if (s == end) { *sp = s; return 0; } /* a trailing ';' is common and harmless */
    const char *n0 = s;
    while (s < end && *s != '=' && *s != ';' && !is_ows((unsigned char)*s)) s++;
    size_t nl = (size_t)(s - n0);
    if (nl == 0) return -1;
    if (nl < nname) {
        memcpy(name, n0, nl);
        name[nl] = 0;
    } else {
        name[0] = 0;
    }
    s = skip_ows(s, end);
    if (s == end || *s != '=') return -1;
    s = skip_ows(s + 1, end);
    size_t vl = 0;
    if (s < end && *s == '"') {
        s++;
        for (;;) {
            if (s == end) return -1; /* unterminated quoted string */
            char c = *s++;
            if (c == '"') break;
            if (c == '\\') {
                if (s == end) return -1;
                c = *s++;
            }
            if (vl + 1 < nval) val[vl++] = c;
            else *val_long = 1;
        }
    } else {
        const char *v0 = s;
        while (s < end && *s != ';' && !is_ows((unsigned char)*s)) s++;
        if (s == v0) return -1;
        for (const char *q = v0; q < s; q++) {
            if (vl + 1 < nval) val[vl++] = *q;
            else *val_long = 1;
        }
    }
    val[vl] = 0;
    *sp = s;
    return 1;
}

/* ------------------------------------------------------------------------------------ */
/* multipart/form-data                                                                  */

#define MP_BOUNDARY_MAX 70   /* RFC 2046 section 5.1.1 */
#define MP_LINE_MAX 1024     /* longest part header line we accept */

/* Extract the boundary parameter of a multipart/form-data Content-Type. */
static int mp_boundary(const char *ct, char *b, size_t *blen, char *err, size_t errlen) {
    if (!ct) return fail(err, errlen, "no Content-Type");
    const char *end = ct + strlen(ct);
    const char *s = skip_ows(ct, end);
    const char *t0 = s;
    while (s < end && *s != ';' && !is_ows((unsigned char)*s)) s++;
    if (!word_eq(t0, (size_t)(s - t0), "multipart/form-data"))
        return fail(err, errlen, "Content-Type is not multipart/form-data");
    char name[32], val[MP_BOUNDARY_MAX + 2];
    int found = 0, r, val_long;
    while ((r = next_param(&s, end, name, sizeof name, val, sizeof val, &val_long)) == 1) {
        if (strcasecmp(name, "boundary") != 0 || found) continue; /* the first one counts */
        size_t n = strlen(val);
        if (val_long || n > MP_BOUNDARY_MAX)
            return fail(err, errlen, "multipart boundary longer than %d characters", MP_BOUNDARY_MAX);
        if (n == 0) return fail(err, errlen, "empty multipart boundary");
        /* RFC 2046 allows a subset of printable ASCII; accepting all of it costs nothing,
         * but control characters or a trailing space could never match a delimiter line. */
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)val[i] < 0x20 || (unsigned char)val[i] > 0x7e)
                return fail(err, errlen, "multipart boundary has a non-printable character");
        if (val[n - 1] == ' ') return fail(err, errlen, "multipart boundary ends in a space");
        memcpy(b, val, n + 1);
        *blen = n;
        found = 1;
    }
    if (r < 0) return fail(err, errlen, "malformed Content-Type parameters");
    if (!found) return fail(err, errlen, "Content-Type has no boundary parameter");
    return 0;
}

/* Is p (avail bytes) the "--boundary" of a delimiter line? A delimiter is "--boundary"
 * followed by "--" (the close) or by optional transport padding and CRLF. Returns 1 and
 * sets *line (bytes up to and including the CRLF, or past the "--" of the close) and
 * *closing; 0 when these bytes are part data that merely start like a boundary. */
static int mp_delim_at(const uint8_t *p, size_t avail, const char *b, size_t blen, size_t *line, int *closing) {
    if (avail < 2 + blen || p[0] != '-' || p[1] != '-' || memcmp(p + 2, b, blen) != 0) return 0;
    size_t i = 2 + blen;
    if (i + 2 <= avail && p[i] == '-' && p[i + 1] == '-') {
        *line = i + 2;
        *closing = 1;
        return 1;
    }
    while (i < avail && is_ows(p[i])) i++;
    if (i + 2 <= avail && p[i] == '\r' && p[i + 1] == '\n') {
        *line = i + 2;
        *closing = 0;
        return 1;
    }
    return 0;
}

/* Find the next delimiter "CRLF--boundary..." at or after `from`. Returns 1 with *at (the
 * offset of its CR), *next (the offset after the delimiter line) and *closing; 0 when
 * there is none. Only CRLF counts: binary parts may hold bare LFs, and accepting
 * "LF--boundary" would cut such a part short for no benefit to RFC-conforming clients. */
static int mp_next_delim(const uint8_t *body, size_t len, size_t from, const char *b, size_t blen, size_t *at,
                         size_t *next, int *closing) {
    char pat[4 + MP_BOUNDARY_MAX];
    memcpy(pat, "\r\n--", 4);
    memcpy(pat + 4, b, blen);
    while (from < len) {
        const uint8_t *m = memmem(body + from, len - from, pat, 4 + blen);
        if (!m) return 0;
        size_t pos = (size_t)(m - body), line;
        if (mp_delim_at(m + 2, len - pos - 2, b, blen, &line, closing)) {
            *at = pos;
            *next = pos + 2 + line;
            return 1;
        }
        from = pos + 1;
    }
    return 0;
}

/* Copy [s, end) trimmed into dst (cap bytes with the NUL); -1 when it does not fit. */
static int copy_trimmed(char *dst, size_t cap, const char *s, const char *end) {
    s = skip_ows(s, end);
    while (end > s && is_ows((unsigned char)end[-1])) end--;
    size_t n = (size_t)(end - s);
    if (n >= cap) return -1;
    memcpy(dst, s, n);
    dst[n] = 0;
    return 0;
}

/* Apply one part header line [s, end) (no CRLF) to part k. */
static int mp_header(mp_part *p, int k, int *have_cd, const char *s, const char *end, char *err, size_t errlen) {
    for (const char *q = s; q < end; q++)
        if (((unsigned char)*q < 0x20 && *q != '\t') || *q == 0x7f)
            return fail(err, errlen, "part %d: control character in a header line", k);
    const char *colon = memchr(s, ':', (size_t)(end - s));
    if (!colon || colon == s) return fail(err, errlen, "part %d: malformed header line (no name: value)", k);
    const char *ne = colon;
    while (ne > s && is_ows((unsigned char)ne[-1])) ne--;
    const char *v = skip_ows(colon + 1, end);
    if (word_eq(s, (size_t)(ne - s), "content-type")) {
        if (copy_trimmed(p->content_type, sizeof p->content_type, v, end) != 0)
            return fail(err, errlen, "part %d: Content-Type longer than %zu bytes", k, sizeof p->content_type - 1);
        return 0;
    }
    if (!word_eq(s, (size_t)(ne - s), "content-disposition")) return 0; /* other headers do not matter */
    const char *t0 = v;
    while (v < end && *v != ';' && !is_ows((unsigned char)*v)) v++;
    if (!word_eq(t0, (size_t)(v - t0), "form-data"))
        return fail(err, errlen, "part %d: Content-Disposition is not form-data", k);
    char name[32], val[sizeof p->filename + 1];
    int r, val_long, have_name = 0;
    while ((r = next_param(&v, end, name, sizeof name, val, sizeof val, &val_long)) == 1) {
        if (strcasecmp(name, "name") == 0) {
            if (val_long || strlen(val) >= sizeof p->name)
                return fail(err, errlen, "part %d: field name longer than %zu bytes", k, sizeof p->name - 1);
            memcpy(p->name, val, strlen(val) + 1);
            have_name = 1;
        } else if (strcasecmp(name, "filename") == 0) {
            if (val_long || strlen(val) >= sizeof p->filename)
                return fail(err, errlen, "part %d: filename longer than %zu bytes", k, sizeof p->filename - 1);
            memcpy(p->filename, val, strlen(val) + 1);
        }
    }
    if (r < 0) return fail(err, errlen, "part %d: malformed Content-Disposition parameters", k);
    if (!have_name || !p->name[0]) return fail(err, errlen, "part %d: Content-Disposition has no name", k);
    *have_cd = 1;
    return 0;
}

int mp_parse(const char *content_type, const uint8_t *body, size_t len, mp_part *parts, int max, int *n,
             char *err, size_t errlen) {
    if (n) *n = 0;
    if (!n || (!parts && max > 0) || (!body && len)) return fail(err, errlen, "mp_parse: bad arguments");
    char b[MP_BOUNDARY_MAX + 1];
    size_t blen = 0;
    if (mp_boundary(content_type, b, &blen, err, errlen) != 0) return -1;

    /* The first delimiter may open the body (no CRLF before it) or follow a preamble. */
    size_t next = 0, at, line;
    int closing = 0;
    if (mp_delim_at(body, len, b, blen, &line, &closing)) {
        next = line;
    } else if (!mp_next_delim(body, len, 0, b, blen, &at, &next, &closing)) {
        return fail(err, errlen, "no opening multipart boundary");
    }
    int count = 0;
    while (!closing) {
        if (count >= max) return fail(err, errlen, "more than %d parts", max);
        mp_part *p = &parts[count];
        memset(p, 0, sizeof *p);
        size_t pos = next;
        int have_cd = 0;
        /* Header lines up to the empty line; each is searched for its CRLF within at most
         * MP_LINE_MAX bytes so that a body without line breaks costs little. */
        for (;;) {
            size_t window = IT_MIN(len - pos, (size_t)MP_LINE_MAX + 2);
            const uint8_t *crlf = memmem(body + pos, window, "\r\n", 2);
            if (!crlf) {
                if (len - pos < (size_t)MP_LINE_MAX + 2)
                    return fail(err, errlen, "part %d: headers not terminated by an empty line", count);
                return fail(err, errlen, "part %d: header line longer than %d bytes", count, MP_LINE_MAX);
            }
            size_t ll = (size_t)(crlf - (body + pos));
            if (ll > MP_LINE_MAX)
                return fail(err, errlen, "part %d: header line longer than %d bytes", count, MP_LINE_MAX);
            if (ll == 0) break;
            if (mp_header(p, count, &have_cd, (const char *)body + pos, (const char *)body + pos + ll, err,
                          errlen) != 0)
                return -1;
            pos += ll + 2;
        }
        if (!have_cd) return fail(err, errlen, "part %d: no Content-Disposition header", count);
        size_t data = pos + 2;
        /* Search from the CRLF of the empty line: in "...\r\n\r\n--b" that CRLF is also the
         * delimiter's, and the part is empty. */
        if (!mp_next_delim(body, len, pos, b, blen, &at, &next, &closing))
            return fail(err, errlen, "missing closing multipart boundary");
        p->data = body + data;
        p->len = at >= data ? at - data : 0;
        count++;
    }
    *n = count; /* whatever follows the close is an epilogue, ignored as RFC 2046 says */
    return 0;
}

/* ------------------------------------------------------------------------------------ */
/* KServe v2 inference requests                                                         */

#define KS_MAX_ELEMENTS ((int64_t)1 << 28)

static const struct {
    const char *name;
    int type;
    size_t size;
} ks_types[] = {
    {"FP32", KS_FP32, 4}, {"UINT8", KS_UINT8, 1}, {"INT64", KS_INT64, 8},
    {"FP16", KS_FP16, 2}, {"INT32", KS_INT32, 4},
};

static size_t ks_elem_size(int type) {
    for (size_t i = 0; i < sizeof ks_types / sizeof ks_types[0]; i++)
        if (ks_types[i].type == type) return ks_types[i].size;
    return 0;
}

static const char *ks_type_name(int type) {
    for (size_t i = 0; i < sizeof ks_types / sizeof ks_types[0]; i++)
        if (ks_types[i].type == type) return ks_types[i].name;
    return "?";
}

/* "[1,3,640,640]" for messages. */
static const char *shape_str(const ks_input *in, char *buf, size_t n) {
    size_t o = 0;
    buf[0] = 0;
    o += (size_t)snprintf(buf + o, n - o, "[");
    for (int d = 0; d < in->ndim && o < n; d++)
        o += (size_t)snprintf(buf + o, n - o, "%s%lld", d ? "," : "", (long long)in->shape[d]);
    if (o < n) snprintf(buf + o, n - o, "]");
    return buf;
}

void ks_request_free(ks_request *r) {
    if (!r) return;
    for (int i = 0; i < KS_MAX_INPUTS; i++) it_free(r->inputs[i].owned);
    memset(r, 0, sizeof *r);
}

/* Count the leaves of a flat or nested data array. Nesting deeper than the shape has
 * dimensions is refused, which also bounds the recursion. */
static int ks_count(const json_t *a, int depth, int max_depth, size_t *count) {
    if (!json_is_array(a)) {
        (*count)++;
        return 0;
    }
    if (depth >= max_depth) return -1;
    size_t i;
    const json_t *v;
    json_array_foreach(a, i, v) {
        if (ks_count(v, depth + 1, max_depth, count) != 0) return -1;
    }
    return 0;
}

/* Convert one JSON element to the input's datatype at flat index k. */
static int ks_store(ks_input *in, int idx, const json_t *v, size_t k, char *err, size_t errlen) {
    switch (in->datatype) {
    case KS_FP32: {
        float f;
        if (json_is_integer(v)) {
            f = (float)json_integer_value(v);
        } else if (json_is_real(v)) {
            double d = json_real_value(v);
            if (!(fabs(d) <= FLT_MAX))
                return fail(err, errlen, "inputs[%d].data[%zu]: %g is out of FP32 range", idx, k, d);
            f = (float)d;
        } else {
            return fail(err, errlen, "inputs[%d].data[%zu]: expected a number", idx, k);
        }
        memcpy((float *)in->owned + k, &f, sizeof f);
        return 0;
    }
    case KS_UINT8: {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 255)
            return fail(err, errlen, "inputs[%d].data[%zu]: expected an integer 0..255", idx, k);
        ((uint8_t *)in->owned)[k] = (uint8_t)json_integer_value(v);
        return 0;
    }
    case KS_INT64: {
        if (!json_is_integer(v)) return fail(err, errlen, "inputs[%d].data[%zu]: expected an integer", idx, k);
        int64_t x = (int64_t)json_integer_value(v);
        memcpy((int64_t *)in->owned + k, &x, sizeof x);
        return 0;
    }
    case KS_INT32: {
        if (!json_is_integer(v) || json_integer_value(v) < INT32_MIN || json_integer_value(v) > INT32_MAX)
            return fail(err, errlen, "inputs[%d].data[%zu]: expected a 32-bit integer", idx, k);
        int32_t x = (int32_t)json_integer_value(v);
        memcpy((int32_t *)in->owned + k, &x, sizeof x);
        return 0;
    }
    default:
        return fail(err, errlen, "inputs[%d].data: %s is accepted only as binary data", idx,
                    ks_type_name(in->datatype));
    }
}

static int ks_fill(ks_input *in, int idx, const json_t *a, size_t *k, char *err, size_t errlen) {
    if (!json_is_array(a)) return ks_store(in, idx, a, (*k)++, err, errlen);
    size_t i;
    const json_t *v;
    json_array_foreach(a, i, v) {
        if (ks_fill(in, idx, v, k, err, errlen) != 0) return -1;
    }
    return 0;
}

/* Parse inputs[idx] into in; *bin_size gets its binary_data_size, or -1 for JSON data. */
static int ks_input_parse(const json_t *j, int idx, ks_input *in, int64_t *bin_size, char *err, size_t errlen) {
    char sh[KS_MAX_DIMS * 22 + 3];
    *bin_size = -1;
    if (!json_is_object(j)) return fail(err, errlen, "inputs[%d]: expected an object", idx);
    const json_t *name = json_object_get(j, "name");
    if (!json_is_string(name)) return fail(err, errlen, "inputs[%d].name: expected a string", idx);
    if (json_string_length(name) >= sizeof in->name)
        return fail(err, errlen, "inputs[%d].name: longer than %zu bytes", idx, sizeof in->name - 1);
    memcpy(in->name, json_string_value(name), json_string_length(name) + 1);

    const json_t *dt = json_object_get(j, "datatype");
    if (!json_is_string(dt)) return fail(err, errlen, "inputs[%d].datatype: expected a string", idx);
    for (size_t t = 0; t < sizeof ks_types / sizeof ks_types[0]; t++)
        if (strcmp(json_string_value(dt), ks_types[t].name) == 0) in->datatype = ks_types[t].type;
    if (!in->datatype)
        return fail(err, errlen, "inputs[%d].datatype: unsupported datatype '%.32s' (FP32, FP16, UINT8, INT32, INT64)",
                    idx, json_string_value(dt));
    size_t esize = ks_elem_size(in->datatype);

    const json_t *shape = json_object_get(j, "shape");
    if (!json_is_array(shape)) return fail(err, errlen, "inputs[%d].shape: expected an array", idx);
    size_t nd = json_array_size(shape);
    if (nd < 1 || nd > KS_MAX_DIMS)
        return fail(err, errlen, "inputs[%d].shape: expected 1 to %d dimensions, got %zu", idx, KS_MAX_DIMS, nd);
    int64_t count = 1;
    for (size_t d = 0; d < nd; d++) {
        const json_t *v = json_array_get(shape, d);
        if (!json_is_integer(v) || json_integer_value(v) < 0)
            return fail(err, errlen, "inputs[%d].shape[%zu]: expected a non-negative integer", idx, d);
        int64_t x = (int64_t)json_integer_value(v);
        if (x == 0) return fail(err, errlen, "inputs[%d].shape: empty tensor (dimension %zu is 0)", idx, d);
        /* Both factors are at most 2^28 here, so the product cannot overflow. */
        if (x > KS_MAX_ELEMENTS || (count *= x) > KS_MAX_ELEMENTS)
            return fail(err, errlen, "inputs[%d].shape: more than 2^28 elements", idx);
        in->shape[d] = x;
    }
    in->ndim = (int)nd;
    size_t need = (size_t)count;

    const json_t *params = json_object_get(j, "parameters");
    if (params && !json_is_object(params))
        return fail(err, errlen, "inputs[%d].parameters: expected an object", idx);
    const json_t *bds = params ? json_object_get(params, "binary_data_size") : NULL;
    const json_t *data = json_object_get(j, "data");
    if (bds) {
        if (data) return fail(err, errlen, "inputs[%d]: both data and parameters.binary_data_size", idx);
        if (!json_is_integer(bds) || json_integer_value(bds) < 0)
            return fail(err, errlen, "inputs[%d].parameters.binary_data_size: expected a non-negative integer", idx);
        if ((uint64_t)json_integer_value(bds) != (uint64_t)need * esize)
            return fail(err, errlen, "inputs[%d].parameters.binary_data_size: %lld bytes, shape %s of %s needs %zu",
                        idx, (long long)json_integer_value(bds), shape_str(in, sh, sizeof sh),
                        ks_type_name(in->datatype), need * esize);
        *bin_size = (int64_t)json_integer_value(bds);
        return 0;
    }
    if (!data)
        return fail(err, errlen, "inputs[%d]: no data (expected \"data\" or parameters.binary_data_size)", idx);
    if (!json_is_array(data)) return fail(err, errlen, "inputs[%d].data: expected an array", idx);
    if (in->datatype == KS_FP16)
        return fail(err, errlen, "inputs[%d].data: FP16 is accepted only as binary data", idx);
    size_t have = 0;
    if (ks_count(data, 0, in->ndim, &have) != 0)
        return fail(err, errlen, "inputs[%d].data: nested deeper than the shape's %d dimensions", idx, in->ndim);
    if (have != need)
        return fail(err, errlen, "inputs[%d].data: %zu elements, shape %s needs %zu", idx, have,
                    shape_str(in, sh, sizeof sh), need);
    /* need <= have <= JSON bytes / 2, so this allocation is bounded by the body size. */
    in->owned = it_malloc(need * esize);
    if (!in->owned) return fail(err, errlen, "inputs[%d].data: out of memory", idx);
    size_t k = 0;
    if (ks_fill(in, idx, data, &k, err, errlen) != 0) return -1;
    in->data = in->owned;
    in->nbytes = need * esize;
    return 0;
}

static int ks_bool(const json_t *p, const char *key, int *out, char *err, size_t errlen) {
    const json_t *v = json_object_get(p, key);
    if (!v) return 0;
    if (!json_is_boolean(v)) return fail(err, errlen, "parameters.%s: expected true or false", key);
    *out = json_is_true(v);
    return 0;
}

static int ks_unit(const json_t *p, const char *key, float *out, char *err, size_t errlen) {
    const json_t *v = json_object_get(p, key);
    if (!v) return 0;
    double d = json_number_value(v);
    if (!json_is_number(v) || !(d >= 0.0 && d <= 1.0))
        return fail(err, errlen, "parameters.%s: expected a number in [0,1]", key);
    *out = (float)d;
    return 0;
}

static int ks_posint(const json_t *p, const char *key, int *out, char *err, size_t errlen) {
    const json_t *v = json_object_get(p, key);
    if (!v) return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > INT_MAX)
        return fail(err, errlen, "parameters.%s: expected an integer >= 1", key);
    *out = (int)json_integer_value(v);
    return 0;
}

/* The request-level "parameters": itscam's own knobs plus Triton's; others are ignored
 * because KServe declares parameters extensible. */
static int ks_params(const json_t *p, ks_request *r, char *err, size_t errlen) {
    if (!json_is_object(p)) return fail(err, errlen, "parameters: expected an object");
    if (ks_bool(p, "binary_data_output", &r->binary_output, err, errlen) != 0 ||
        ks_bool(p, "detections", &r->detections, err, errlen) != 0 ||
        ks_unit(p, "conf", &r->conf, err, errlen) != 0 || ks_unit(p, "iou", &r->iou, err, errlen) != 0 ||
        ks_posint(p, "max_det", &r->max_det, err, errlen) != 0 ||
        ks_posint(p, "timeout_ms", &r->timeout_ms, err, errlen) != 0)
        return -1;
    if (r->max_det > ITSCAM_MAX_DET_LIMIT)
        return fail(err, errlen, "parameters.max_det: expected an integer in [1,%d]", ITSCAM_MAX_DET_LIMIT);
    /* The same range as the query's timeout_ms and the configuration's. */
    if (r->timeout_ms > 3600000) return fail(err, errlen, "parameters.timeout_ms: expected milliseconds in [1,3600000]");
    /* Triton's "timeout" is in microseconds: honoured in that unit, rounded up to ms. */
    int timeout_us = -1;
    if (ks_posint(p, "timeout", &timeout_us, err, errlen) != 0) return -1;
    if (timeout_us > 0 && r->timeout_ms < 0) r->timeout_ms = timeout_us / 1000 + (timeout_us % 1000 != 0);
    const json_t *v = json_object_get(p, "priority");
    if (v) {
        int pr = -1;
        if (json_is_string(v)) pr = it_sched_prio_parse(json_string_value(v));
        else if (json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) < IT_SCHED_NPRIO)
            pr = (int)json_integer_value(v);
        if (pr < 0)
            return fail(err, errlen, "parameters.priority: expected %s, %s, %s or 0..%d", it_sched_prio_name(0),
                        it_sched_prio_name(1), it_sched_prio_name(2), IT_SCHED_NPRIO - 1);
        r->priority = pr;
    }
    return 0;
}

static int ks_outputs(const json_t *o, ks_request *r, char *err, size_t errlen) {
    if (!json_is_array(o)) return fail(err, errlen, "outputs: expected an array");
    if (json_array_size(o) > KS_MAX_OUTPUTS)
        return fail(err, errlen, "outputs: more than %d outputs", KS_MAX_OUTPUTS);
    size_t i;
    const json_t *e;
    json_array_foreach(o, i, e) {
        if (!json_is_object(e)) return fail(err, errlen, "outputs[%zu]: expected an object", i);
        const json_t *name = json_object_get(e, "name");
        if (!json_is_string(name)) return fail(err, errlen, "outputs[%zu].name: expected a string", i);
        if (json_string_length(name) >= sizeof r->outputs[0])
            return fail(err, errlen, "outputs[%zu].name: longer than %zu bytes", i, sizeof r->outputs[0] - 1);
        memcpy(r->outputs[i], json_string_value(name), json_string_length(name) + 1);
        const json_t *p = json_object_get(e, "parameters");
        if (p && !json_is_object(p)) return fail(err, errlen, "outputs[%zu].parameters: expected an object", i);
        const json_t *bd = p ? json_object_get(p, "binary_data") : NULL;
        if (bd && !json_is_boolean(bd))
            return fail(err, errlen, "outputs[%zu].parameters.binary_data: expected true or false", i);
        if (json_is_true(bd)) r->binary_output = 1;
    }
    r->n_outputs = (int)json_array_size(o);
    return 0;
}

/* Binary floats may hold NaN or infinity, which JSON cannot: refuse them as the JSON path
 * refuses out-of-range numbers, naming the input, rather than let them through the model
 * (whose NMS then drops everything and answers an empty but "successful" result). */
static int ks_nonfinite(const ks_input *in, int idx, char *err, size_t errlen) {
    const uint8_t *p = in->data;
    if (in->datatype == KS_FP32) {
        for (size_t k = 0; k < in->nbytes / 4; k++) {
            float f;
            memcpy(&f, p + k * 4, 4); /* binary data may be unaligned */
            if (!isfinite(f))
                return fail(err, errlen, "inputs[%d] '%s': element %zu is %s; FP32 data must be finite", idx, in->name,
                            k, isnan(f) ? "NaN" : "infinite");
        }
    } else if (in->datatype == KS_FP16) {
        for (size_t k = 0; k < in->nbytes / 2; k++) {
            unsigned h = p[k * 2] | (unsigned)p[k * 2 + 1] << 8; /* little endian */
            if ((h & 0x7c00u) == 0x7c00u) /* all-ones exponent: infinity or NaN */
                return fail(err, errlen, "inputs[%d] '%s': element %zu is %s; FP16 data must be finite", idx, in->name,
                            k, (h & 0x3ffu) ? "NaN" : "infinite");
        }
    }
    return 0;
}

/* Everything after json_loadb, so that the caller has one place to release the tree. */
static int ks_parse_root(const json_t *root, const uint8_t *body, size_t len, size_t json_len, ks_request *r,
                         char *err, size_t errlen) {
    if (!json_is_object(root)) return fail(err, errlen, "request: expected a JSON object");
    const json_t *id = json_object_get(root, "id");
    if (id) {
        if (!json_is_string(id)) return fail(err, errlen, "id: expected a string");
        if (json_string_length(id) >= sizeof r->id)
            return fail(err, errlen, "id: longer than %zu bytes", sizeof r->id - 1);
        memcpy(r->id, json_string_value(id), json_string_length(id) + 1);
    }
    const json_t *params = json_object_get(root, "parameters");
    if (params && ks_params(params, r, err, errlen) != 0) return -1;
    const json_t *outputs = json_object_get(root, "outputs");
    if (outputs && ks_outputs(outputs, r, err, errlen) != 0) return -1;

    const json_t *inputs = json_object_get(root, "inputs");
    if (!inputs) return fail(err, errlen, "inputs: missing");
    if (!json_is_array(inputs)) return fail(err, errlen, "inputs: expected an array");
    size_t ni = json_array_size(inputs);
    if (ni < 1 || ni > KS_MAX_INPUTS)
        return fail(err, errlen, "inputs: expected 1 to %d inputs, got %zu", KS_MAX_INPUTS, ni);
    int64_t bin[KS_MAX_INPUTS];
    uint64_t bin_total = 0;
    int first_bin = -1;
    for (size_t i = 0; i < ni; i++) {
        ks_input *in = &r->inputs[i];
        r->n_inputs = (int)i + 1; /* so that ks_request_free sees what this input owns */
        if (ks_input_parse(json_array_get(inputs, i), (int)i, in, &bin[i], err, errlen) != 0) return -1;
        for (size_t k = 0; k < i; k++)
            if (strcmp(r->inputs[k].name, in->name) == 0)
                return fail(err, errlen, "inputs[%zu].name: duplicate name '%s'", i, in->name);
        if (bin[i] >= 0) {
            bin_total += (uint64_t)bin[i];
            if (first_bin < 0) first_bin = (int)i;
        }
    }
    size_t after = len - json_len;
    if (first_bin >= 0 && after == 0)
        return fail(err, errlen,
                    "inputs[%d].parameters.binary_data_size: the body has no binary data after the JSON "
                    "(Inference-Header-Content-Length missing?)",
                    first_bin);
    if (first_bin < 0 && after > 0)
        return fail(err, errlen, "%zu bytes after the JSON but no input has parameters.binary_data_size", after);
    if (bin_total != (uint64_t)after)
        return fail(err, errlen, "binary data: inputs declare %llu bytes, the body has %zu after the JSON",
                    (unsigned long long)bin_total, after);
    size_t off = json_len;
    for (size_t i = 0; i < ni; i++) {
        if (bin[i] < 0) continue;
        r->inputs[i].data = body + off;
        r->inputs[i].nbytes = (size_t)bin[i];
        off += (size_t)bin[i];
        if (ks_nonfinite(&r->inputs[i], (int)i, err, errlen) != 0) return -1;
    }
    return 0;
}

int ks_parse_infer(const uint8_t *body, size_t len, size_t json_len, ks_request *out, char *err, size_t errlen) {
    if (!out) return fail(err, errlen, "ks_parse_infer: no output");
    memset(out, 0, sizeof *out);
    out->conf = out->iou = -1.0f;
    out->max_det = out->priority = out->timeout_ms = -1;
    if (!body && len) return fail(err, errlen, "ks_parse_infer: no body");
    if (json_len == 0 || json_len > len)
        return fail(err, errlen, "JSON length %zu is outside 1..%zu (Inference-Header-Content-Length)", json_len, len);
    json_error_t je;
    /* Duplicate keys are refused: which of two "inputs" a client meant is anyone's guess. */
    json_t *root = json_loadb((const char *)body, json_len, JSON_REJECT_DUPLICATES, &je);
    if (!root) return fail(err, errlen, "malformed JSON at byte %d: %s", je.position, je.text);
    int rc = ks_parse_root(root, body, len, json_len, out, err, errlen);
    json_decref(root);
    if (rc != 0) {
        ks_request_free(out);
        out->conf = out->iou = -1.0f;
        out->max_det = out->priority = out->timeout_ms = -1;
    }
    return rc;
}

/* ------------------------------------------------------------------------------------ */
/* Query and form values                                                                */

/* The value as a C string when it is one: no NUL inside, short, and starting with what a
 * number may start with (strtod and strtol would skip leading spaces). */
static int number_text(const char *v, size_t len, char *buf, size_t cap) {
    if (!v || len == 0 || len >= cap || memchr(v, 0, len)) return -1;
    memcpy(buf, v, len);
    buf[len] = 0;
    return (buf[0] == '-' || buf[0] == '+' || buf[0] == '.' || (buf[0] >= '0' && buf[0] <= '9')) ? 0 : -1;
}

int srv_parse_double(const char *v, size_t len, double lo, double hi, double *out) {
    char buf[64], *e;
    if (number_text(v, len, buf, sizeof buf) != 0) return -1;
    double x = strtod(buf, &e);
    if (*e || !isfinite(x) || !(x >= lo && x <= hi)) return -1;
    *out = x;
    return 0;
}

int srv_parse_long(const char *v, size_t len, long lo, long hi, long *out) {
    char buf[32], *e;
    if (number_text(v, len, buf, sizeof buf) != 0) return -1;
    errno = 0;
    long x = strtol(buf, &e, 10);
    if (*e || errno || x < lo || x > hi) return -1;
    *out = x;
    return 0;
}

int srv_parse_bool(const char *v, size_t len, int *out) {
    static const struct { const char *text; int value; } words[] = { {"true", 1}, {"1", 1}, {"false", 0}, {"0", 0} };
    if (!v) return -1;
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (strlen(words[i].text) == len && memcmp(words[i].text, v, len) == 0) {
            *out = words[i].value;
            return 0;
        }
    return -1;
}

/* ------------------------------------------------------------------------------------ */

#define SRV_CLASS_MAX 100000

int srv_parse_classes(const char *s, int *out, int max) {
    if (!s || (!out && max > 0)) return -1;
    int n = 0;
    for (;;) {
        /* One item: digits only (no sign, no spaces), at most SRV_CLASS_MAX, so that a
         * value can never overflow however many digits it has. */
        long v = 0;
        const char *d0 = s;
        while (*s >= '0' && *s <= '9') {
            v = v * 10 + (*s - '0');
            if (v > SRV_CLASS_MAX) return -1;
            s++;
        }
        if (s == d0) return -1; /* empty item or a stray character */
        if (n >= max) return -1;
        out[n++] = (int)v;
        if (*s == 0) return n;
        if (*s != ',') return -1;
        s++;
    }
}
