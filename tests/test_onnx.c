/* Tests for the ONNX loader: the shared YOLO models, hand-built tiny models, corrupt input
 * and allocation failure at every step. */
#include "check.h"
#include "core/core.h"
#include "onnx/onnx.h"
#include "graph/ops.h"

#include <stdint.h>

/* A minimal protobuf writer, so that tests can build exactly the (mal)formed models they
 * need without depending on the generated protobuf-c headers. */
typedef struct pb {
    uint8_t *d;
    size_t n, cap;
} pb;

static void pb_raw(pb *b, const void *p, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->d = realloc(b->d, b->cap);
        if (!b->d) abort();
    }
    if (n) memcpy(b->d + b->n, p, n);
    b->n += n;
}
static void pb_uv(pb *b, uint64_t v) {
    uint8_t t[10];
    int n = 0;
    do {
        t[n++] = (uint8_t)((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
        v >>= 7;
    } while (v);
    pb_raw(b, t, (size_t)n);
}
static void pb_varint(pb *b, int field, int64_t v) {
    pb_uv(b, (uint64_t)field << 3);
    pb_uv(b, (uint64_t)v);
}
static void pb_bytes(pb *b, int field, const void *p, size_t n) {
    pb_uv(b, (uint64_t)field << 3 | 2);
    pb_uv(b, n);
    pb_raw(b, p, n);
}
static void pb_str(pb *b, int field, const char *s) { pb_bytes(b, field, s, strlen(s)); }
static void pb_float(pb *b, int field, float f) {
    pb_uv(b, (uint64_t)field << 3 | 5);
    pb_raw(b, &f, 4);
}
/* Append sub as an embedded message and release it. */
static void pb_msg(pb *b, int field, pb *sub) {
    pb_bytes(b, field, sub->d, sub->n);
    free(sub->d);
    memset(sub, 0, sizeof *sub);
}

/* onnx.proto field numbers used below. */
enum { M_IR = 1, M_PRODUCER = 2, M_GRAPH = 7, M_OPSET = 8, M_META = 14 };
enum { G_NODE = 1, G_NAME = 2, G_INIT = 5, G_INPUT = 11, G_OUTPUT = 12 };
enum { N_IN = 1, N_OUT = 2, N_NAME = 3, N_OP = 4, N_ATTR = 5, N_DOMAIN = 7 };
enum { T_DIMS = 1, T_TYPE = 2, T_FLOAT = 4, T_INT32 = 5, T_INT64 = 7, T_NAME = 8, T_RAW = 9, T_LOC = 14 };
enum { A_NAME = 1, A_F = 2, A_I = 3, A_S = 4, A_T = 5, A_G = 6, A_FLOATS = 7, A_INTS = 8,
       A_STRINGS = 9, A_TYPE = 20 };

/* A node; ins/outs are NULL-terminated lists. */
static void add_node(pb *g, const char *name, const char *op, const char *domain,
                     const char *const *ins, const char *const *outs, pb *attrs) {
    pb n = {0};
    for (; ins && *ins; ins++) pb_str(&n, N_IN, *ins);
    for (; outs && *outs; outs++) pb_str(&n, N_OUT, *outs);
    pb_str(&n, N_NAME, name);
    pb_str(&n, N_OP, op);
    if (domain) pb_str(&n, N_DOMAIN, domain);
    if (attrs && attrs->n) pb_raw(&n, attrs->d, attrs->n); /* already-encoded attribute fields */
    pb_msg(g, G_NODE, &n);
}

/* A float tensor ValueInfo; dims < 0 become dim_param "N". */
static void add_vi(pb *g, int field, const char *name, int ndim, const int64_t *dims) {
    pb shape = {0}, tt = {0}, type = {0}, vi = {0};
    for (int i = 0; i < ndim; i++) {
        pb d = {0};
        if (dims[i] < 0) pb_str(&d, 2, "N");
        else pb_varint(&d, 1, dims[i]);
        pb_msg(&shape, 1, &d);
    }
    pb_varint(&tt, 1, IT_F32);
    pb_msg(&tt, 2, &shape);
    pb_msg(&type, 1, &tt);
    pb_str(&vi, 1, name);
    pb_msg(&vi, 2, &type);
    pb_msg(g, field, &vi);
}

static void tensor_f32(pb *t, const char *name, int ndim, const int64_t *dims, const float *v, int n) {
    for (int i = 0; i < ndim; i++) pb_varint(t, T_DIMS, dims[i]);
    pb_varint(t, T_TYPE, IT_F32);
    if (name) pb_str(t, T_NAME, name);
    if (n >= 0) pb_bytes(t, T_FLOAT, v, (size_t)n * 4); /* packed repeated float */
}

/* Wrap a graph into a model with the given default-domain opset (0: none). */
static pb make_model(pb *graph, int64_t opset) {
    pb m = {0}, o = {0};
    pb_varint(&m, M_IR, 7);
    pb_str(&m, M_PRODUCER, "test");
    if (opset) {
        pb_str(&o, 1, "");
        pb_varint(&o, 2, opset);
        pb_msg(&m, M_OPSET, &o);
    }
    if (graph) pb_msg(&m, M_GRAPH, graph);
    pb kv = {0};
    pb_str(&kv, 1, "stride");
    pb_str(&kv, 2, "32");
    pb_msg(&m, M_META, &kv);
    return m;
}

/* Graph: X[N,3] * W[3] -> Z, Sigmoid(Z) -> Y; `variant` breaks it in one way. */
enum { V_OK, V_UNKNOWN_OP, V_DOMAIN, V_REORDER, V_CYCLE, V_DANGLING, V_BADINIT, V_EXTERNAL,
       V_GRAPH_ATTR, V_RANK9, V_NEGDIM, V_INT_TYPES };
static pb build_graph(int variant) {
    pb g = {0}, t = {0}, attrs = {0};
    const int64_t xd[2] = {-1, 3}, wd[1] = {3};
    const float w[3] = {1.5f, -2.0f, 0.25f};
    pb_str(&g, G_NAME, "tiny");
    const char *mul_in[] = {"X", "W", NULL}, *mul_out[] = {"Z", NULL};
    const char *sig_in[] = {variant == V_CYCLE ? "Y" : variant == V_DANGLING ? "nope" : "Z", NULL};
    const char *sig_out[] = {"Y", NULL};
    if (variant == V_CYCLE) mul_in[0] = "Y";

    /* Attributes on the Mul node: one of each supported type (ignored by Mul itself). */
    pb a = {0}, at = {0};
    pb_str(&a, A_NAME, "af"); pb_float(&a, A_F, 0.5f); pb_varint(&a, A_TYPE, IT_ATTR_FLOAT);
    pb_msg(&attrs, N_ATTR, &a);
    pb_str(&a, A_NAME, "ai"); pb_varint(&a, A_I, -7); pb_varint(&a, A_TYPE, IT_ATTR_INT);
    pb_msg(&attrs, N_ATTR, &a);
    pb_str(&a, A_NAME, "as"); pb_str(&a, A_S, "hello"); pb_varint(&a, A_TYPE, IT_ATTR_STRING);
    pb_msg(&attrs, N_ATTR, &a);
    const int64_t ints[3] = {1, 2, 3};
    pb_str(&a, A_NAME, "aints");
    for (int i = 0; i < 3; i++) pb_varint(&a, A_INTS, ints[i]);
    pb_varint(&a, A_TYPE, IT_ATTR_INTS);
    pb_msg(&attrs, N_ATTR, &a);
    const float fl[2] = {0.1f, 0.2f};
    pb_str(&a, A_NAME, "afloats"); pb_bytes(&a, A_FLOATS, fl, sizeof fl);
    pb_varint(&a, A_TYPE, IT_ATTR_FLOATS);
    pb_msg(&attrs, N_ATTR, &a);
    pb_str(&a, A_NAME, "astrings"); pb_str(&a, A_STRINGS, "x"); pb_str(&a, A_STRINGS, "yz");
    pb_varint(&a, A_TYPE, IT_ATTR_STRINGS);
    pb_msg(&attrs, N_ATTR, &a);
    tensor_f32(&at, NULL, 1, wd, w, 3);
    pb_str(&a, A_NAME, "at"); pb_msg(&a, A_T, &at); pb_varint(&a, A_TYPE, IT_ATTR_TENSOR);
    pb_msg(&attrs, N_ATTR, &a);
    if (variant == V_GRAPH_ATTR) {
        pb sub = {0};
        pb_str(&sub, G_NAME, "body");
        pb_str(&a, A_NAME, "then_branch"); pb_msg(&a, A_G, &sub); pb_varint(&a, A_TYPE, IT_ATTR_GRAPH);
        pb_msg(&attrs, N_ATTR, &a);
    }

    const char *mul_op = variant == V_UNKNOWN_OP ? "FooBar" : "Mul";
    const char *dom = variant == V_DOMAIN ? "com.example" : NULL;
    if (variant == V_REORDER) add_node(&g, "sig", "Sigmoid", NULL, sig_in, sig_out, NULL);
    add_node(&g, "mul_node", mul_op, dom, mul_in, mul_out, &attrs);
    if (variant != V_REORDER) add_node(&g, "sig", "Sigmoid", NULL, sig_in, sig_out, NULL);
    free(attrs.d);

    if (variant == V_BADINIT) {
        const int64_t bad[1] = {4};
        tensor_f32(&t, "W", 1, bad, w, 3);
    } else if (variant == V_RANK9) {
        const int64_t d9[9] = {1, 1, 1, 1, 1, 1, 1, 1, 3};
        tensor_f32(&t, "W", 9, d9, w, 3);
    } else if (variant == V_NEGDIM) {
        const int64_t neg[1] = {-3};
        tensor_f32(&t, "W", 1, neg, w, 3);
    } else if (variant == V_EXTERNAL) {
        tensor_f32(&t, "W", 1, wd, w, -1);
        pb_varint(&t, T_LOC, 1);
    } else {
        tensor_f32(&t, "W", 1, wd, w, 3);
    }
    pb_msg(&g, G_INIT, &t);
    if (variant == V_INT_TYPES) {
        /* int8 via int32_data, int64 via int64_data, uint16 via raw_data. */
        const int64_t d2[1] = {2};
        pb_varint(&t, T_DIMS, 2); pb_varint(&t, T_TYPE, IT_I8); pb_str(&t, T_NAME, "q8");
        pb_varint(&t, T_INT32, -5); pb_varint(&t, T_INT32, 7);
        pb_msg(&g, G_INIT, &t);
        pb_varint(&t, T_DIMS, d2[0]); pb_varint(&t, T_TYPE, IT_I64); pb_str(&t, T_NAME, "i64");
        pb_varint(&t, T_INT64, -1); pb_varint(&t, T_INT64, 1LL << 40);
        pb_msg(&g, G_INIT, &t);
        const uint16_t u16[2] = {0x1234, 0xfedc};
        pb_varint(&t, T_DIMS, 2); pb_varint(&t, T_TYPE, IT_U16); pb_str(&t, T_NAME, "u16");
        pb_bytes(&t, T_RAW, u16, sizeof u16);
        pb_msg(&g, G_INIT, &t);
    }
    add_vi(&g, G_INPUT, "X", 2, xd);
    add_vi(&g, G_INPUT, "W", 1, wd); /* an initializer listed as input stays a constant */
    add_vi(&g, G_OUTPUT, "Y", 2, xd);
    return g;
}

/* Load bytes, expecting status `want`; when failing, the message must contain each of the
 * NULL-terminated needles. Returns the graph on success (caller frees). */
static it_graph *load_expect(const pb *m, const char *name, int want, const char *n1, const char *n2) {
    it_graph *g = NULL;
    itscam_status s = it_onnx_load(m->d, m->n, name, &g);
    CHECKF((int)s == want, "%s: status %d, want %d (%s)", name, s, want, itscam_last_error());
    if (s != ITSCAM_OK) {
        CHECKF(g == NULL, "%s: graph set on failure", name);
        const char *e = itscam_last_error();
        CHECKF(strstr(e, name) != NULL, "%s: message lacks the name: %s", name, e);
        if (n1) CHECKF(strstr(e, n1) != NULL, "%s: message lacks '%s': %s", name, n1, e);
        if (n2) CHECKF(strstr(e, n2) != NULL, "%s: message lacks '%s': %s", name, n2, e);
    }
    return g;
}

static void test_tiny(void) {
    pb gr = build_graph(V_OK), m = make_model(&gr, 13);
    it_graph *g = load_expect(&m, "tiny.onnx", ITSCAM_OK, NULL, NULL);
    if (g) {
        CHECK(g->opset == 13 && g->ir_version == 7 && !strcmp(g->producer, "test"));
        CHECK(!strcmp(g->path, "tiny.onnx"));
        CHECK(g->n_inputs == 1 && g->n_outputs == 1 && g->n_nodes == 2);
        const it_value *x = &g->values[g->inputs[0]];
        CHECK(!strcmp(x->name, "X") && x->kind == IT_VAL_INPUT && x->t.dtype == IT_F32);
        CHECK(x->t.ndim == 2 && x->t.dims[0] == -1 && x->t.dims[1] == 3);
        CHECK(x->dim_param[0] && !strcmp(x->dim_param[0], "N") && !x->dim_param[1]);
        int wi = it_graph_find_value(g, "W");
        CHECK(wi >= 0 && g->values[wi].kind == IT_VAL_CONST && g->values[wi].t.nbytes == 12);
        if (wi >= 0 && g->values[wi].t.data)
            CHECK(((float *)g->values[wi].t.data)[1] == -2.0f);
        const it_value *y = &g->values[g->outputs[0]];
        CHECK(!strcmp(y->name, "Y") && y->is_output && y->t.ndim == 2 && y->t.dtype == IT_F32);
        int zi = it_graph_find_value(g, "Z");
        CHECK(zi >= 0 && g->values[zi].t.ndim == -1 && g->values[zi].t.dtype == IT_UNDEF);
        CHECK(it_graph_find_value(g, "nope") == -1);
        CHECK(it_graph_meta(g, "stride") && !strcmp(it_graph_meta(g, "stride"), "32"));
        CHECK(it_graph_meta(g, "absent") == NULL);
        const it_node *n = &g->nodes[0];
        CHECK(n->op == IT_OP_MUL && !strcmp(n->name, "mul_node") && !strcmp(n->domain, ""));
        CHECK(g->nodes[1].op == IT_OP_SIGMOID && g->nodes[1].in[0] == zi);
        CHECK(it_attr_float(n, "af", 0) == 0.5f && it_attr_int(n, "ai", 0) == -7);
        CHECK(it_attr_int(n, "missing", 42) == 42 && it_attr_float(n, "ai", 0) == -7.0f);
        CHECK(!strcmp(it_attr_str(n, "as", ""), "hello") && !strcmp(it_attr_str(n, "x", "d"), "d"));
        const int64_t *iv;
        const float *fv;
        CHECK(it_attr_ints(n, "aints", &iv) == 3 && iv[2] == 3);
        CHECK(it_attr_floats(n, "afloats", &fv) == 2 && fv[1] == 0.2f);
        CHECK(it_attr_ints(n, "afloats", &iv) == 0 && iv == NULL);
        const it_attr *s = it_attr_find(n, "astrings");
        CHECK(s && s->n == 2 && !strcmp(s->strings[1], "yz"));
        const it_attr *t = it_attr_find(n, "at");
        CHECK(t && t->t && t->t->nbytes == 12 && ((float *)t->t->data)[2] == 0.25f);
    }
    it_graph_free(g);
    free(m.d);

    gr = build_graph(V_INT_TYPES), m = make_model(&gr, 13);
    g = load_expect(&m, "ints.onnx", ITSCAM_OK, NULL, NULL);
    if (g) {
        int q = it_graph_find_value(g, "q8"), l = it_graph_find_value(g, "i64"),
            u = it_graph_find_value(g, "u16");
        CHECK(q >= 0 && g->values[q].t.nbytes == 2 && ((int8_t *)g->values[q].t.data)[0] == -5);
        CHECK(l >= 0 && g->values[l].t.nbytes == 16 && ((int64_t *)g->values[l].t.data)[1] == 1LL << 40);
        CHECK(u >= 0 && g->values[u].t.nbytes == 4 && ((uint16_t *)g->values[u].t.data)[1] == 0xfedc);
    }
    it_graph_free(g);
    free(m.d);

    /* Nodes out of order are sorted. */
    gr = build_graph(V_REORDER), m = make_model(&gr, 13);
    g = load_expect(&m, "reorder.onnx", ITSCAM_OK, NULL, NULL);
    if (g) CHECK(g->nodes[0].op == IT_OP_MUL && g->nodes[1].op == IT_OP_SIGMOID);
    it_graph_free(g);
    free(m.d);
    it_graph_free(NULL);
}

static void test_bad_tiny(void) {
    struct { int variant, opset, want; const char *name, *n1, *n2; } cases[] = {
        {V_UNKNOWN_OP, 13, ITSCAM_ERR_UNSUPPORTED, "unknown.onnx", "FooBar", "mul_node"},
        {V_DOMAIN, 13, ITSCAM_ERR_UNSUPPORTED, "domain.onnx", "com.example", "mul_node"},
        {V_CYCLE, 13, ITSCAM_ERR_MODEL, "cycle.onnx", "cycle", NULL},
        {V_DANGLING, 13, ITSCAM_ERR_MODEL, "dangling.onnx", "nope", "sig"},
        {V_BADINIT, 13, ITSCAM_ERR_MODEL, "badinit.onnx", "'W'", NULL},
        {V_EXTERNAL, 13, ITSCAM_ERR_UNSUPPORTED, "external.onnx", "external", "'W'"},
        {V_GRAPH_ATTR, 13, ITSCAM_ERR_UNSUPPORTED, "graphattr.onnx", "mul_node", "then_branch"},
        {V_RANK9, 13, ITSCAM_ERR_UNSUPPORTED, "rank9.onnx", "'W'", NULL},
        {V_NEGDIM, 13, ITSCAM_ERR_MODEL, "negdim.onnx", "'W'", NULL},
        {V_OK, 23, ITSCAM_ERR_UNSUPPORTED, "opset23.onnx", "opset 23", NULL},
        {V_OK, -1, ITSCAM_ERR_UNSUPPORTED, "opsetneg.onnx", "opset", NULL},
        {V_OK, 0, ITSCAM_ERR_UNSUPPORTED, "noopset.onnx", "opset", NULL},
        {V_OK, 9, ITSCAM_OK, "opset9.onnx", NULL, NULL}, /* Mul needs 7, Sigmoid 6: loads */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pb gr = build_graph(cases[i].variant), m = make_model(&gr, cases[i].opset);
        it_graph *g = load_expect(&m, cases[i].name, cases[i].want, cases[i].n1, cases[i].n2);
        it_graph_free(g);
        free(m.d);
    }
    /* An op below its minimum opset: Sigmoid needs 6, Mul needs 7. */
    pb gr = build_graph(V_OK), m = make_model(&gr, 5);
    it_graph_free(load_expect(&m, "old.onnx", ITSCAM_ERR_UNSUPPORTED, "Mul", "opset"));
    free(m.d);
    /* A model without a graph. */
    m = make_model(NULL, 13);
    it_graph_free(load_expect(&m, "nograph.onnx", ITSCAM_ERR_MODEL, "graph", NULL));
    free(m.d);
}

static void test_garbage(const uint8_t *model, size_t len) {
    it_graph *g = (it_graph *)1;
    CHECK(it_onnx_load("", 0, "empty.onnx", &g) == ITSCAM_ERR_MODEL && g == NULL);
    CHECK(strstr(itscam_last_error(), "empty.onnx") && strstr(itscam_last_error(), "empty"));
    CHECK(it_onnx_load(NULL, 0, "null.onnx", &g) != ITSCAM_OK && g == NULL);

    uint8_t junk[100];
    srand(12345);
    for (int round = 0; round < 50; round++) {
        for (size_t i = 0; i < sizeof junk; i++) junk[i] = (uint8_t)rand();
        itscam_status s = it_onnx_load(junk, sizeof junk, "junk.onnx", &g);
        CHECKF(s != ITSCAM_OK && g == NULL && strstr(itscam_last_error(), "junk.onnx"),
               "random bytes round %d: status %d", round, s);
        it_graph_free(g);
        g = NULL;
    }
    if (!model) return;
    size_t cuts[] = {1, 10, 100, 1000, 4096, len / 3, len / 2, len - 1000, len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        itscam_status s = it_onnx_load(model, cuts[i], "cut.onnx", &g);
        CHECKF(s != ITSCAM_OK && g == NULL, "truncation at %zu of %zu loaded", cuts[i], len);
        CHECKF(s == ITSCAM_OK || strstr(itscam_last_error(), "cut.onnx"), "message: %s",
               itscam_last_error());
        it_graph_free(g);
        g = NULL;
    }
}

/* Checks common to the shared YOLO11n files. */
static void check_yolo(const it_graph *g, const char *file, int size, int dynamic) {
    CHECKF(g->opset == 12, "%s: opset %lld", file, (long long)g->opset);
    CHECK(g->ir_version >= 3);
    CHECKF(g->n_inputs == 1 && g->n_outputs == 1, "%s: %d inputs %d outputs", file, g->n_inputs,
           g->n_outputs);
    if (g->n_inputs == 1) {
        const it_value *in = &g->values[g->inputs[0]];
        CHECK(!strcmp(in->name, "images") && in->kind == IT_VAL_INPUT && in->t.dtype == IT_F32);
        CHECK(in->t.ndim == 4 && in->t.dims[1] == 3 && in->t.dims[2] == size && in->t.dims[3] == size);
        if (dynamic) CHECKF(in->t.dims[0] == -1 && in->dim_param[0] != NULL, "%s: batch %lld", file,
                            (long long)in->t.dims[0]);
        else CHECK(in->t.dims[0] == 1);
    }
    if (g->n_outputs == 1) {
        const it_value *out = &g->values[g->outputs[0]];
        CHECK(!strcmp(out->name, "output0") && out->is_output);
        int anchors = size == 640 ? 8400 : 2100;
        CHECKF(out->t.ndim == 3 && out->t.dims[1] == 84 && out->t.dims[2] == anchors,
               "%s: output rank %d", file, out->t.ndim);
    }
    const char *keys[] = {"names", "stride", "imgsz", "task"};
    for (int i = 0; i < 4; i++) CHECKF(it_graph_meta(g, keys[i]) != NULL, "%s: meta %s", file, keys[i]);
    CHECK(it_graph_meta(g, "task") && !strcmp(it_graph_meta(g, "task"), "detect"));
    CHECKF(g->n_nodes > 100, "%s: %d nodes", file, g->n_nodes);
    int bad_op = 0, bad_const = 0, consts = 0;
    for (int i = 0; i < g->n_nodes; i++) bad_op += g->nodes[i].op == IT_OP_UNKNOWN;
    for (int i = 0; i < g->n_values; i++) {
        const it_value *v = &g->values[i];
        if (v->kind != IT_VAL_CONST) continue;
        consts++;
        int64_t ne = it_tensor_numel(&v->t);
        if (!v->t.data || ne < 0 || v->t.nbytes != (size_t)ne * it_dtype_size(v->t.dtype)) bad_const++;
    }
    CHECKF(bad_op == 0, "%s: %d nodes without an op", file, bad_op);
    CHECKF(bad_const == 0 && consts > 50, "%s: %d bad of %d constants", file, bad_const, consts);
    /* Topological order: every input is defined before use. */
    char *defined = calloc((size_t)g->n_values, 1);
    for (int i = 0; i < g->n_values; i++) defined[i] = g->values[i].kind != IT_VAL_ACT;
    int order_ok = 1;
    for (int i = 0; i < g->n_nodes; i++) {
        for (int k = 0; k < g->nodes[i].n_in; k++)
            if (g->nodes[i].in[k] >= 0 && !defined[g->nodes[i].in[k]]) order_ok = 0;
        for (int k = 0; k < g->nodes[i].n_out; k++)
            if (g->nodes[i].out[k] >= 0) defined[g->nodes[i].out[k]] = 1;
    }
    free(defined);
    CHECKF(order_ok, "%s: nodes not in topological order", file);
}

/* Fail the k-th allocation for k = 0, step, 2*step... until loading succeeds: every
 * failure must be a clean ITSCAM_ERR_NOMEM (ASan reports any leak at exit). */
static void fault_loop(const uint8_t *buf, size_t len, int step, int min_nodes) {
    int ok = 0, nomem = 0, other = 0;
    for (int64_t k = 0; k < 1000000; k += step) {
        it_graph *g = NULL;
        it_alloc_fail_after(k);
        itscam_status s = it_onnx_load(buf, len, "fault.onnx", &g);
        it_alloc_fail_after(-1);
        if (s == ITSCAM_OK) {
            CHECK(g != NULL && g->n_nodes >= min_nodes);
            it_graph_free(g);
            ok = 1;
            break;
        }
        CHECKF(g == NULL, "k=%lld: graph set on failure", (long long)k);
        if (s == ITSCAM_ERR_NOMEM) nomem++;
        else {
            other++;
            fprintf(stderr, "k=%lld: status %d: %s\n", (long long)k, s, itscam_last_error());
        }
    }
    CHECKF(ok && other == 0 && nomem > 10, "fault injection: ok %d, nomem %d, other %d", ok, nomem, other);
    printf("fault injection (step %d): %d allocation failures handled\n", step, nomem);
}

int main(void) {
    test_tiny();
    test_bad_tiny();

    const char *files[] = {"models/yolo11n.onnx", "models/yolo11n-320.onnx", "models/yolo11n-int8-320.onnx"};
    const int sizes[] = {640, 320, 320}, dyn[] = {1, 0, 0};
    uint8_t *int8 = NULL, *m320 = NULL;
    size_t int8_len = 0, m320_len = 0;
    int found = 0;
    for (int i = 0; i < 3; i++) {
        char path[4096];
        if (!shared_path(path, sizeof path, files[i])) {
            fprintf(stderr, "note: %s/%s absent, not tested\n", shared_dir(), files[i]);
            continue;
        }
        found++;
        uint8_t *buf = NULL;
        size_t len = 0;
        CHECK_OK(it_read_file(path, &buf, &len, (size_t)1 << 30));
        if (!buf) continue;
        it_graph *g = NULL;
        double t0 = it_now_ms();
        CHECK_OK(it_onnx_load(buf, len, path, &g));
        double ms = it_now_ms() - t0;
        if (g) {
            printf("%s: %d nodes, %d values, loaded in %.1f ms\n", files[i], g->n_nodes, g->n_values, ms);
            check_yolo(g, files[i], sizes[i], dyn[i]);
            if (i == 2) {
                int has = 0;
                for (int k = 0; k < g->n_nodes; k++) has |= g->nodes[k].op == IT_OP_CONVINTEGER;
                CHECK(has);
            }
        }
        it_graph_free(g);
        if (i == 1) { m320 = buf; m320_len = len; }
        else if (i == 2) { int8 = buf; int8_len = len; }
        else it_free(buf);
    }
    test_garbage(m320, m320_len);
    /* Every allocation of the tiny model (all attribute kinds), every 37th of the int8 one. */
    for (int v = V_OK; v <= V_INT_TYPES; v += V_INT_TYPES - V_OK) {
        pb gr = build_graph(v), m = make_model(&gr, 13);
        fault_loop(m.d, m.n, 1, 2);
        free(m.d);
    }
    if (int8) fault_loop(int8, int8_len, 37, 100);
    it_free(int8);
    it_free(m320);
    int rc = check_done("test_onnx");
    if (!found && !rc) SKIP("no models in %s/models (the loader's own tests passed)", shared_dir());
    return rc;
}
