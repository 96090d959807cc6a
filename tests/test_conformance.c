/* ONNX backend node tests (Debian's libonnx-testdata) for every operator in the op
 * table, on every backend compiled in; prints a per-operator pass/fail/excluded table.
 *
 * Environment: ITSCAM_ONNX_TESTDATA (default /usr/share/libonnx-testdata/data/node),
 * ITSCAM_CONFORMANCE_FILTER (substring of test names to run), ITSCAM_CONFORMANCE_VERBOSE. */
#include "check.h"
#include "backend/backend.h"
#include "onnx/onnx.h"

#include <dirent.h>
#include <math.h>
#include <stdint.h>

#define DEFAULT_DIR "/usr/share/libonnx-testdata/data/node"
#define MAX_IO 64

/* ---------------------------------------------------------------------------------
 * A minimal protobuf wire reader: the tests need only TensorProto and the op types of
 * a ModelProto, and reading them here keeps the test independent of the generated
 * code's include path.
 * --------------------------------------------------------------------------------- */

typedef struct pb_field {
    int num, wt;
    uint64_t v;            /* varint, fixed32 or fixed64 value */
    const uint8_t *p;      /* length-delimited payload */
    size_t len;
} pb_field;

static int pb_varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
    uint64_t r = 0;
    for (int s = 0; s < 64; s += 7) {
        if (*p >= end) return 0;
        uint8_t b = *(*p)++;
        r |= (uint64_t)(b & 0x7f) << s;
        if (!(b & 0x80)) {
            *v = r;
            return 1;
        }
    }
    return 0;
}

/* Next field; returns 0 at the end, -1 on malformed input. */
static int pb_next(const uint8_t **p, const uint8_t *end, pb_field *f) {
    if (*p >= end) return 0;
    uint64_t key;
    if (!pb_varint(p, end, &key)) return -1;
    f->num = (int)(key >> 3);
    f->wt = (int)(key & 7);
    f->p = NULL;
    f->len = 0;
    switch (f->wt) {
    case 0: return pb_varint(p, end, &f->v) ? 1 : -1;
    case 1:
        if (end - *p < 8) return -1;
        memcpy(&f->v, *p, 8);
        *p += 8;
        return 1;
    case 5: {
        if (end - *p < 4) return -1;
        uint32_t w;
        memcpy(&w, *p, 4);
        f->v = w;
        *p += 4;
        return 1;
    }
    case 2: {
        uint64_t n;
        if (!pb_varint(p, end, &n) || n > (uint64_t)(end - *p)) return -1;
        f->p = *p;
        f->len = (size_t)n;
        *p += n;
        return 1;
    }
    default: return -1;
    }
}

typedef struct num_vec {
    int64_t *i;
    double *f;
    size_t n, cap;
} num_vec;

static void vec_push(num_vec *v, int64_t iv, double fv) {
    if (v->n == v->cap) {
        v->cap = v->cap ? v->cap * 2 : 64;
        v->i = realloc(v->i, v->cap * sizeof *v->i);
        v->f = realloc(v->f, v->cap * sizeof *v->f);
        if (!v->i || !v->f) abort();
    }
    v->i[v->n] = iv;
    v->f[v->n] = fv;
    v->n++;
}

/* A repeated numeric field, packed or not. kind: 0 varint, 'f' float, 'd' double. */
static int pb_repeated(const pb_field *f, int kind, num_vec *out) {
    if (f->wt != 2) {
        if (kind == 'f') {
            uint32_t w = (uint32_t)f->v;
            float x;
            memcpy(&x, &w, 4);
            vec_push(out, 0, x);
        } else if (kind == 'd') {
            double x;
            memcpy(&x, &f->v, 8);
            vec_push(out, 0, x);
        } else {
            vec_push(out, (int64_t)f->v, 0);
        }
        return 1;
    }
    const uint8_t *p = f->p, *end = f->p + f->len;
    while (p < end) {
        if (kind == 'f') {
            if (end - p < 4) return 0;
            float x;
            memcpy(&x, p, 4);
            p += 4;
            vec_push(out, 0, x);
        } else if (kind == 'd') {
            if (end - p < 8) return 0;
            double x;
            memcpy(&x, p, 8);
            p += 8;
            vec_push(out, 0, x);
        } else {
            uint64_t v;
            if (!pb_varint(&p, end, &v)) return 0;
            vec_push(out, (int64_t)v, 0);
        }
    }
    return 1;
}

typedef struct test_tensor {
    char name[256];
    it_tensor t;   /* data malloc'ed */
} test_tensor;

static void half_bits_store(uint8_t *d, size_t es, int64_t v) {
    switch (es) {
    case 1: { uint8_t x = (uint8_t)v; memcpy(d, &x, 1); break; }
    case 2: { uint16_t x = (uint16_t)v; memcpy(d, &x, 2); break; }
    case 4: { uint32_t x = (uint32_t)v; memcpy(d, &x, 4); break; }
    default: memcpy(d, &v, 8); break;
    }
}

/* Decode a serialized TensorProto; returns an error string or NULL. */
static const char *parse_tensor(const uint8_t *buf, size_t len, test_tensor *out) {
    memset(out, 0, sizeof *out);
    num_vec dims = { 0 }, vals = { 0 };
    const uint8_t *p = buf, *end = buf + len, *raw = NULL;
    size_t raw_len = 0;
    int have_raw = 0, dt = 0, r;
    const char *err = NULL;
    pb_field f;
    while ((r = pb_next(&p, end, &f)) > 0) {
        switch (f.num) {
        case 1: if (!pb_repeated(&f, 0, &dims)) err = "bad dims"; break;
        case 2: dt = (int)f.v; break;
        case 4: if (!pb_repeated(&f, 'f', &vals)) err = "bad float_data"; break;
        case 5: case 7: case 11: if (!pb_repeated(&f, 0, &vals)) err = "bad integer data"; break;
        case 10: if (!pb_repeated(&f, 'd', &vals)) err = "bad double_data"; break;
        case 6: err = "string data"; break;
        case 8: snprintf(out->name, sizeof out->name, "%.*s", (int)f.len, (const char *)f.p); break;
        case 9: raw = f.p; raw_len = f.len; have_raw = 1; break;
        case 13: err = "external data"; break;
        default: break;
        }
    }
    if (r < 0) err = "malformed protobuf";
    size_t es = it_dtype_size(dt);
    if (!err && es == 0) err = "unsupported element type";
    if (!err && dims.n > IT_MAX_DIMS) err = "rank too high";
    if (!err) {
        out->t.dtype = dt;
        out->t.ndim = (int)dims.n;
        for (size_t i = 0; i < dims.n; i++) out->t.dims[i] = dims.i[i];
        int64_t ne = it_tensor_numel(&out->t);
        out->t.nbytes = (size_t)ne * es;
        out->t.data = calloc(1, out->t.nbytes ? out->t.nbytes : 1);
        if (have_raw) {
            if (raw_len != out->t.nbytes) err = "raw_data size does not match the shape";
            else memcpy(out->t.data, raw, raw_len);
        } else if (vals.n != (size_t)ne) {
            err = "value count does not match the shape";
        } else {
            uint8_t *d = out->t.data;
            for (int64_t i = 0; i < ne; i++) {
                if (dt == IT_F32) ((float *)d)[i] = (float)vals.f[i];
                else if (dt == IT_F64) ((double *)d)[i] = vals.f[i];
                else half_bits_store(d + (size_t)i * es, es, vals.i[i]);
            }
        }
    }
    free(dims.i), free(dims.f), free(vals.i), free(vals.f);
    if (err) {
        free(out->t.data);
        out->t.data = NULL;
    }
    return err;
}

/* op types (and domains) of the main graph's nodes; returns count or -1. */
static int model_ops(const uint8_t *buf, size_t len, char ops[][64], char domains[][64], int max) {
    const uint8_t *p = buf, *end = buf + len;
    pb_field f;
    int r, n = 0;
    while ((r = pb_next(&p, end, &f)) > 0) {
        if (f.num != 7 || f.wt != 2) continue;
        const uint8_t *gp = f.p, *ge = f.p + f.len;
        pb_field gf;
        while ((r = pb_next(&gp, ge, &gf)) > 0) {
            if (gf.num != 1 || gf.wt != 2) continue;
            if (n == max) return -1;
            ops[n][0] = domains[n][0] = 0;
            const uint8_t *np = gf.p, *ne = gf.p + gf.len;
            pb_field nf;
            while ((r = pb_next(&np, ne, &nf)) > 0) {
                if (nf.num == 4 && nf.wt == 2) snprintf(ops[n], 64, "%.*s", (int)nf.len, (const char *)nf.p);
                if (nf.num == 7 && nf.wt == 2) snprintf(domains[n], 64, "%.*s", (int)nf.len, (const char *)nf.p);
            }
            if (r < 0) return -1;
            n++;
        }
        if (r < 0) return -1;
    }
    return r < 0 ? -1 : n;
}

/* ---------------------------------------------------------------------------------
 * Running and comparing
 * --------------------------------------------------------------------------------- */

enum { R_PASS, R_FAIL, R_EXCL };

typedef struct op_stats {
    int pass, fail, excl;
} op_stats;

static float half_to_f(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 0x1f, m = h & 0x3ff, bits;
    if (e == 0) {
        if (!m) bits = sign;
        else {
            e = 113;
            while (!(m & 0x400)) m <<= 1, e--;
            bits = sign | (e << 23) | ((m & 0x3ff) << 13);
        }
    } else if (e == 31) bits = sign | 0x7f800000u | (m << 13);
    else bits = sign | ((e + 112) << 23) | (m << 13);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static double elem_f(const it_tensor *t, int64_t i) {
    if (t->dtype == IT_F16) return half_to_f(((const uint16_t *)t->data)[i]);
    if (t->dtype == IT_BF16) {
        uint32_t b = (uint32_t)((const uint16_t *)t->data)[i] << 16;
        float f;
        memcpy(&f, &b, 4);
        return f;
    }
    return it_tensor_get_f(t, i);
}

/* Compare got against want; writes a description of the first mismatch into msg. */
static int compare(const it_tensor *got, const it_tensor *want, char *msg, size_t n) {
    if (got->dtype != want->dtype) {
        snprintf(msg, n, "dtype %s, expected %s", it_dtype_name(got->dtype), it_dtype_name(want->dtype));
        return 0;
    }
    int same = got->ndim == want->ndim;
    for (int i = 0; same && i < got->ndim; i++) same = got->dims[i] == want->dims[i];
    if (!same) {
        char a[128] = "", b[128] = "";
        for (int i = 0; i < got->ndim; i++) snprintf(a + strlen(a), sizeof a - strlen(a), "%s%lld", i ? "," : "", (long long)got->dims[i]);
        for (int i = 0; i < want->ndim; i++) snprintf(b + strlen(b), sizeof b - strlen(b), "%s%lld", i ? "," : "", (long long)want->dims[i]);
        snprintf(msg, n, "shape [%s], expected [%s]", a, b);
        return 0;
    }
    int64_t ne = it_tensor_numel(want);
    if (ne > 0 && !got->data) {
        snprintf(msg, n, "output has no data");
        return 0;
    }
    int fl = want->dtype == IT_F32 || want->dtype == IT_F64 || want->dtype == IT_F16 || want->dtype == IT_BF16;
    for (int64_t i = 0; i < ne; i++) {
        if (fl) {
            double a = elem_f(got, i), b = elem_f(want, i);
            if (isnan(b) && isnan(a)) continue;
            if (isinf(b) && a == b) continue;
            if (!(fabs(a - b) <= 1e-4 + 1e-3 * fabs(b))) {
                snprintf(msg, n, "element %lld is %.9g, expected %.9g", (long long)i, a, b);
                return 0;
            }
        } else {
            size_t es = it_dtype_size(want->dtype);
            if (memcmp((const uint8_t *)got->data + (size_t)i * es, (const uint8_t *)want->data + (size_t)i * es, es)) {
                snprintf(msg, n, "element %lld is %lld, expected %lld", (long long)i,
                         (long long)it_tensor_get_int(got, i), (long long)it_tensor_get_int(want, i));
                return 0;
            }
        }
    }
    return 1;
}

/* Index of the test tensor for graph value v: by name when the files carry names. */
static int match(const it_graph *g, int v, const test_tensor *tt, int n, int pos) {
    for (int i = 0; i < n; i++)
        if (tt[i].name[0] && !strcmp(tt[i].name, g->values[v].name)) return i;
    return pos < n ? pos : -1;
}

static int is_int_dtype(int dt) {
    return dt == IT_I64 || dt == IT_I32 || dt == IT_I16 || dt == IT_I8 || dt == IT_U8 || dt == IT_U16 ||
           dt == IT_U32 || dt == IT_U64 || dt == IT_BOOL;
}

static int run_backend(const it_backend *be, const it_graph *g, const test_tensor *ins, int nin,
                       const test_tensor *outs, int nout, char *msg, size_t n) {
    it_tensor shapes[MAX_IO];
    for (int i = 0; i < g->n_inputs; i++) {
        int k = match(g, g->inputs[i], ins, nin, i);
        if (k < 0) {
            snprintf(msg, n, "no data for input '%s'", g->values[g->inputs[i]].name);
            return R_FAIL;
        }
        shapes[i] = ins[k].t;
        /* the 1.12 data stores bfloat16 inputs as uint16 bits: same bytes, relabel */
        const it_tensor *decl = &g->values[g->inputs[i]].t;
        if (shapes[i].dtype == IT_U16 && decl->dtype == IT_BF16) shapes[i].dtype = IT_BF16;
        /* a few data sets disagree with their own model (castlike *_expanded): the
         * engine is right to refuse them, so they say nothing about our operators */
        int agree = decl->ndim < 0 || decl->ndim == shapes[i].ndim;
        for (int j = 0; agree && decl->ndim >= 0 && j < decl->ndim; j++)
            agree = decl->dims[j] < 0 || decl->dims[j] == shapes[i].dims[j];
        if (!agree) {
            snprintf(msg, n, "test data for input '%s' disagrees with the model's declared shape",
                     g->values[g->inputs[i]].name);
            return R_EXCL;
        }
    }
    /* Values known at plan time: integer inputs (shapes, axes, sizes) and the float
     * parameter inputs of Resize (roi, scales); everything else flows at run time, so
     * that the backend under test computes it. */
    for (int i = 0; i < g->n_inputs; i++) {
        int v = g->inputs[i], param = is_int_dtype(shapes[i].dtype);
        for (int k = 0; !param && k < g->n_nodes; k++)
            for (int j = 1; j < g->nodes[k].n_in; j++)
                if (g->nodes[k].op == IT_OP_RESIZE && g->nodes[k].in[j] == v) param = 1;
        if (!param) shapes[i].data = NULL;
    }
    it_plan *p = NULL;
    itscam_status st = it_plan_create(g, shapes, g->n_inputs, &p);
    if (st == ITSCAM_ERR_UNSUPPORTED) {
        snprintf(msg, n, "%s", itscam_last_error());
        return R_EXCL;
    }
    if (st) {
        snprintf(msg, n, "plan: %s", itscam_last_error());
        return R_FAIL;
    }
    for (int i = 0; i < g->n_inputs; i++) {
        it_tensor *t = &p->t[g->inputs[i]];
        int k = match(g, g->inputs[i], ins, nin, i);
        if (t->data && !p->folded[g->inputs[i]] && t->nbytes == ins[k].t.nbytes) memcpy(t->data, ins[k].t.data, t->nbytes);
    }
    it_backend_opts opts = { .threads = 0 };
    void *prog = NULL;
    int res = R_PASS;
    if ((st = be->compile(p, &opts, &prog)) != ITSCAM_OK) {
        snprintf(msg, n, "compile: %s", itscam_last_error());
        res = R_FAIL;
    } else {
        if ((st = be->run(prog)) != ITSCAM_OK) {
            snprintf(msg, n, "run: %s", itscam_last_error());
            res = R_FAIL;
        }
        for (int i = 0; res == R_PASS && i < g->n_outputs; i++) {
            int k = match(g, g->outputs[i], outs, nout, i);
            char m[400];
            if (k < 0) {
                snprintf(msg, n, "no expected data for output '%s'", g->values[g->outputs[i]].name);
                res = R_FAIL;
            } else if (!compare(&p->t[g->outputs[i]], &outs[k].t, m, sizeof m)) {
                snprintf(msg, n, "output '%s': %s", g->values[g->outputs[i]].name, m);
                res = R_FAIL;
            }
        }
        be->destroy(prog);
    }
    it_plan_free(p);
    return res;
}

/* Read <kind>_N.pb until one is missing; *count says how many are loaded (to free),
 * even when reading fails. */
static int load_set(const char *dir, const char *kind, test_tensor *tt, int *count, char *msg, size_t n) {
    *count = 0;
    for (int k = 0; k < MAX_IO; k++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/test_data_set_0/%s_%d.pb", dir, kind, k);
        uint8_t *buf;
        size_t len;
        if (access(path, R_OK) != 0) break;
        if (it_read_file(path, &buf, &len, (size_t)1 << 30) != ITSCAM_OK) {
            snprintf(msg, n, "%s", itscam_last_error());
            return -1;
        }
        const char *err = parse_tensor(buf, len, &tt[k]);
        it_free(buf);
        if (err) {
            snprintf(msg, n, "%s_%d.pb: %s", kind, k, err);
            return -1;
        }
        *count = k + 1;
    }
    return 0;
}

static void free_set(test_tensor *tt, int n) {
    for (int i = 0; i < n; i++) free(tt[i].t.data);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(void) {
    const char *root = getenv("ITSCAM_ONNX_TESTDATA");
    if (!root || !*root) root = DEFAULT_DIR;
    const char *filter = getenv("ITSCAM_CONFORMANCE_FILTER");
    int verbose = getenv("ITSCAM_CONFORMANCE_VERBOSE") != NULL;
    DIR *d = opendir(root);
    if (!d) SKIP("ONNX node tests not found at %s (install libonnx-testdata)", root);
    char **names = NULL;
    size_t nn = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "test_", 5)) continue;
        if (filter && *filter && !strstr(e->d_name, filter)) continue;
        if (nn == cap) {
            cap = cap ? cap * 2 : 256;
            names = realloc(names, cap * sizeof *names);
            if (!names) abort();
        }
        names[nn++] = strdup(e->d_name);
    }
    closedir(d);
    if (nn) qsort(names, nn, sizeof *names, cmp_str);

    const it_backend *const *bes = it_backend_list();
    op_stats stats[IT_OP_COUNT] = { 0 };
    char (*notes)[640] = calloc(nn ? nn : 1, sizeof *notes); /* one line per excluded/failed test */
    int *note_kind = calloc(nn ? nn : 1, sizeof *note_kind);
    int *note_op = calloc(nn ? nn : 1, sizeof *note_op);
    int n_notes = 0, total_fail = 0;
    double t0 = it_now_ms();

    for (size_t t = 0; t < nn; t++) {
        char dir[1024], path[1100];
        snprintf(dir, sizeof dir, "%s/%s", root, names[t]);
        snprintf(path, sizeof path, "%s/model.onnx", dir);
        uint8_t *buf;
        size_t len;
        if (access(path, R_OK) != 0 || it_read_file(path, &buf, &len, (size_t)1 << 30) != ITSCAM_OK) continue;
        /* Ours when every node is in the op table: *_expanded variants and tests of
         * other operators that merely use ours are left out. */
        char ops[64][64], doms[64][64];
        int nops = model_ops(buf, len, ops, doms, 64), ours = nops > 0, op = 0;
        for (int i = 0; ours && i < nops; i++) {
            const it_op_def *def = it_op_lookup(ops[i], doms[i]);
            if (!def) ours = 0;
            else if (!op || op == IT_OP_CONSTANT) op = def->id;
        }
        if (!ours) {
            it_free(buf);
            continue;
        }
        int res = R_PASS;
        char msg[600] = "";
        it_graph *g = NULL;
        itscam_status st = it_onnx_load(buf, len, names[t], &g);
        it_free(buf);
        test_tensor ins[MAX_IO], outs[MAX_IO];
        int nin = 0, nout = 0;
        if (st == ITSCAM_ERR_UNSUPPORTED) {
            res = R_EXCL;
            snprintf(msg, sizeof msg, "load: %s", itscam_last_error());
        } else if (st) {
            res = R_FAIL;
            snprintf(msg, sizeof msg, "load: %s", itscam_last_error());
        } else if (g->n_inputs > MAX_IO || g->n_outputs > MAX_IO) {
            res = R_EXCL;
            snprintf(msg, sizeof msg, "too many inputs or outputs");
        } else if (load_set(dir, "input", ins, &nin, msg, sizeof msg) < 0 ||
                   load_set(dir, "output", outs, &nout, msg, sizeof msg) < 0) {
            res = R_EXCL; /* data in a form we do not read (strings, sequences) */
        } else {
            for (int b = 0; bes[b] && res != R_FAIL; b++) {
                if (bes[b]->available && !bes[b]->available(NULL, 0)) continue;
                char m[560] = "";
                int r = run_backend(bes[b], g, ins, nin, outs, nout, m, sizeof m);
                if (r == R_PASS) continue;
                if (r == R_FAIL || res == R_PASS) {
                    res = r;
                    snprintf(msg, sizeof msg, "[%s] %s", bes[b]->name, m);
                }
            }
        }
        free_set(ins, nin);
        free_set(outs, nout);
        it_graph_free(g);
        if (res == R_PASS) stats[op].pass++;
        else if (res == R_FAIL) stats[op].fail++, total_fail++;
        else stats[op].excl++;
        if (res != R_PASS) {
            snprintf(notes[n_notes], sizeof notes[0], "%s: %s", names[t], msg);
            note_kind[n_notes] = res;
            note_op[n_notes++] = op;
        }
        if (verbose) printf("%-60s %s %s\n", names[t], res == R_PASS ? "pass" : res == R_FAIL ? "FAIL" : "excluded", msg);
    }

    printf("backends:");
    for (int b = 0; bes[b]; b++) printf(" %s", bes[b]->name);
    printf("\n%-24s %6s %6s %8s\n", "operator", "passed", "failed", "excluded");
    int tp = 0, tf = 0, te = 0;
    for (int i = 1; i < IT_OP_COUNT; i++) {
        const it_op_def *def = it_op_get(i);
        printf("%-24s %6d %6d %8d\n", def ? def->name : "?", stats[i].pass, stats[i].fail, stats[i].excl);
        tp += stats[i].pass, tf += stats[i].fail, te += stats[i].excl;
    }
    printf("%-24s %6d %6d %8d   (%.1f s)\n", "total", tp, tf, te, (it_now_ms() - t0) / 1000);
    for (int k = R_FAIL; k <= R_EXCL; k++) {
        for (int i = 0; i < n_notes; i++)
            if (note_kind[i] == k)
                printf("%s %-16s %s\n", k == R_FAIL ? "FAILED  " : "excluded", it_op_get(note_op[i])->name, notes[i]);
    }
    for (size_t t = 0; t < nn; t++) free(names[t]);
    free(names);
    free(notes);
    free(note_kind);
    free(note_op);
    return total_fail ? 1 : 0;
}
