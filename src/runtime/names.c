/* Class names from a model's metadata (see names.h). */
#include "runtime/names.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------
 * Class names from Ultralytics' metadata (a Python dict repr).
 * --------------------------------------------------------------------------------- */
#define MAX_CLASS_ID 100000

static const char *skip_ws(const char *s) {
    while (*s && isspace((unsigned char)*s)) s++;
    return s;
}

static int hexval(int c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Parse a Python string literal at *ps into a fresh string; NULL when malformed. */
static char *parse_pystr(const char **ps) {
    const char *s = *ps;
    char q = *s;
    if (q != '\'' && q != '"') return NULL;
    s++;
    const char *e = s;
    while (*e && *e != q) e += (*e == '\\' && e[1]) ? 2 : 1;
    if (*e != q) return NULL;
    char *out = it_malloc((size_t)(e - s) + 1), *o = out;
    if (!out) return NULL;
    while (s < e) {
        if (*s != '\\') { *o++ = *s++; continue; }
        s++;
        switch (*s) {
        case 'n': *o++ = '\n'; s++; break;
        case 't': *o++ = '\t'; s++; break;
        case 'r': *o++ = '\r'; s++; break;
        case 'x':
            if (s + 2 < e && hexval(s[1]) >= 0 && hexval(s[2]) >= 0) {
                *o++ = (char)(hexval(s[1]) * 16 + hexval(s[2]));
                s += 3;
            } else {
                *o++ = *s++;
            }
            break;
        default: *o++ = *s++; break; /* \\ \' \" and anything else literally */
        }
    }
    *o = 0;
    *ps = e + 1;
    return out;
}

void it_free_names(char **names, int n) {
    if (!names) return;
    for (int i = 0; i < n; i++) it_free(names[i]);
    it_free(names);
}

int it_parse_names(const char *meta, char ***names_out, int *n_out) {
    *names_out = NULL;
    *n_out = 0;
    if (!meta) { it_err(ITSCAM_ERR_MODEL, "names: missing"); return -1; }
    const char *s = skip_ws(meta);
    if (*s != '{') { it_err(ITSCAM_ERR_MODEL, "names: expected '{' at offset %d", (int)(s - meta)); return -1; }
    s++;
    char **names = NULL;
    int n = 0, cap = 0;
    for (;;) {
        s = skip_ws(s);
        if (*s == '}') { s++; break; }
        char *end;
        long id = strtol(s, &end, 10);
        if (end == s || id < 0 || id >= MAX_CLASS_ID) {
            it_err(ITSCAM_ERR_MODEL, "names: bad class id at offset %d", (int)(s - meta));
            goto fail;
        }
        s = skip_ws(end);
        if (*s != ':') { it_err(ITSCAM_ERR_MODEL, "names: expected ':' at offset %d", (int)(s - meta)); goto fail; }
        s = skip_ws(s + 1);
        const char *at = s;
        char *name = parse_pystr(&s);
        if (!name) { it_err(ITSCAM_ERR_MODEL, "names: bad string at offset %d", (int)(at - meta)); goto fail; }
        if (id >= cap) {
            int ncap = IT_MAX((int)id + 1, cap * 2);
            char **nn = it_realloc(names, sizeof *nn * (size_t)ncap);
            if (!nn) { it_free(name); it_err(ITSCAM_ERR_NOMEM, "names: out of memory"); goto fail; }
            memset(nn + cap, 0, sizeof *nn * (size_t)(ncap - cap));
            names = nn;
            cap = ncap;
        }
        it_free(names[id]); /* a repeated key: Python keeps the last */
        names[id] = name;
        if (id + 1 > n) n = (int)id + 1;
        s = skip_ws(s);
        if (*s == ',') s++;
        else if (*s != '}') { it_err(ITSCAM_ERR_MODEL, "names: expected ',' or '}' at offset %d", (int)(s - meta)); goto fail; }
    }
    for (int i = 0; i < n; i++)
        if (!names[i] && !(names[i] = it_strdup(""))) { it_err(ITSCAM_ERR_NOMEM, "names: out of memory"); goto fail; }
    *names_out = names;
    *n_out = n;
    return 0;
fail:
    it_free_names(names, cap);
    return -1;
}
