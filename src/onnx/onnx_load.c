/* ONNX loader: unpacks an ONNX ModelProto with protobuf-c and builds the graph IR. */
#include "onnx/onnx.h"
#include "graph/ops.h"
#include "onnx/onnx.pb-c.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* Initializers are copied byte for byte from raw_data, which ONNX stores little-endian. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the ONNX loader assumes a little-endian host"
#endif

#define MAX_ELEMS ((int64_t)1 << 31)

typedef struct loader {
    const char *path;
    it_graph *g;
    int cap_values;
    int *hash;          /* open addressing, value index or -1 */
    uint32_t hash_mask;
    int *producer;      /* per value: index of the node that writes it, or -1 */
} loader;

static itscam_status nomem(const loader *L) {
    return it_err(ITSCAM_ERR_NOMEM, "%s: out of memory while loading", L->path);
}

static const char *str_or_empty(const char *s) { return s ? s : ""; }

static uint32_t hash_str(const char *s) {
    uint32_t h = 2166136261u; /* FNV-1a: short names, good enough spread */
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

static int find_value(const loader *L, const char *name) {
    for (uint32_t i = hash_str(name) & L->hash_mask;; i = (i + 1) & L->hash_mask) {
        int v = L->hash[i];
        if (v < 0) return -1;
        if (!strcmp(L->g->values[v].name, name)) return v;
    }
}

/* Add a value named `name` (must be absent); returns its index or -1 on NOMEM. */
static int add_value(loader *L, const char *name) {
    it_graph *g = L->g;
    if (g->n_values >= L->cap_values) return -1; /* cannot happen: capacity is an upper bound */
    it_value *v = &g->values[g->n_values];
    memset(v, 0, sizeof *v);
    v->name = it_strdup(name);
    if (!v->name) return -1;
    v->t.ndim = -1;
    v->t.dtype = IT_UNDEF;
    int idx = g->n_values++;
    L->producer[idx] = -1;
    uint32_t i = hash_str(name) & L->hash_mask;
    while (L->hash[i] >= 0) i = (i + 1) & L->hash_mask;
    L->hash[i] = idx;
    return idx;
}

static const char *node_label(const Onnx__NodeProto *np) {
    return np->name && *np->name ? np->name : (np->op_type ? np->op_type : "?");
}

/* Decode a TensorProto into t (data owned, it_aligned_alloc). `what` names it in errors. */
static itscam_status decode_tensor(const loader *L, const Onnx__TensorProto *tp, it_tensor *t,
                                   const char *what) {
    memset(t, 0, sizeof *t);
    if (tp->has_data_location && tp->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
        return it_err(ITSCAM_ERR_UNSUPPORTED, "%s: %s uses external data, which is not supported",
                      L->path, what);
    if (tp->n_dims > IT_MAX_DIMS)
        return it_err(ITSCAM_ERR_UNSUPPORTED, "%s: %s has rank %zu (at most %d supported)", L->path,
                      what, tp->n_dims, IT_MAX_DIMS);
    int64_t numel = 1;
    for (size_t i = 0; i < tp->n_dims; i++) {
        int64_t d = tp->dims[i];
        if (d < 0)
            return it_err(ITSCAM_ERR_MODEL, "%s: %s has negative dimension %lld", L->path, what,
                          (long long)d);
        t->dims[i] = d;
        /* Checked before multiplying so that the product can never overflow. */
        if (d > 0 && numel > MAX_ELEMS / d)
            return it_err(ITSCAM_ERR_MODEL, "%s: %s has more than 2^31 elements", L->path, what);
        numel *= d;
    }
    t->ndim = (int)tp->n_dims;
    int dt = tp->has_data_type ? tp->data_type : IT_UNDEF;
    size_t es = it_dtype_size(dt);
    if (!es)
        return it_err(ITSCAM_ERR_UNSUPPORTED, "%s: %s has unsupported element type %s (%d)", L->path,
                      what, it_dtype_name(dt), dt);
    t->dtype = dt;
    size_t nbytes = (size_t)numel * es;

    size_t have;  /* values (or bytes for raw) present in the file */
    const char *field;
    if (tp->has_raw_data) {
        have = tp->raw_data.len;
        field = "raw_data bytes";
        if (have != nbytes)
            return it_err(ITSCAM_ERR_MODEL, "%s: %s holds %zu %s, its dims need %zu", L->path, what,
                          have, field, nbytes);
    } else {
        switch (dt) {
        case IT_F32: have = tp->n_float_data; field = "float_data values"; break;
        case IT_I64: have = tp->n_int64_data; field = "int64_data values"; break;
        case IT_F64: have = tp->n_double_data; field = "double_data values"; break;
        case IT_U32: case IT_U64: have = tp->n_uint64_data; field = "uint64_data values"; break;
        default: have = tp->n_int32_data; field = "int32_data values"; break;
        }
        if (have != (size_t)numel)
            return it_err(ITSCAM_ERR_MODEL, "%s: %s holds %zu %s, its dims need %lld", L->path, what,
                          have, field, (long long)numel);
    }
    void *data = it_aligned_alloc(nbytes);
    if (!data) return nomem(L);
    if (tp->has_raw_data) {
        if (nbytes) memcpy(data, tp->raw_data.data, nbytes);
    } else {
        size_t n = (size_t)numel;
        switch (dt) {
        case IT_F32: if (n) memcpy(data, tp->float_data, nbytes); break;
        case IT_I64: if (n) memcpy(data, tp->int64_data, nbytes); break;
        case IT_F64: if (n) memcpy(data, tp->double_data, nbytes); break;
        case IT_U64: if (n) memcpy(data, tp->uint64_data, nbytes); break;
        case IT_U32:
            for (size_t i = 0; i < n; i++) ((uint32_t *)data)[i] = (uint32_t)tp->uint64_data[i];
            break;
        case IT_I32: if (n) memcpy(data, tp->int32_data, nbytes); break;
        /* ONNX packs these narrower types one per int32_data entry (fp16/bf16 as bit patterns). */
        case IT_I16: case IT_U16: case IT_F16: case IT_BF16:
            for (size_t i = 0; i < n; i++) ((uint16_t *)data)[i] = (uint16_t)tp->int32_data[i];
            break;
        default: /* U8, I8, BOOL */
            for (size_t i = 0; i < n; i++) ((uint8_t *)data)[i] = (uint8_t)tp->int32_data[i];
            break;
        }
    }
    t->data = data;
    t->nbytes = nbytes;
    return ITSCAM_OK;
}

/* Fill dtype/shape of v from a ValueInfoProto. Non-tensor types are rejected for graph
 * inputs and outputs (`strict`) and ignored for value_info hints. */
static itscam_status apply_type(const loader *L, const Onnx__ValueInfoProto *vi, it_value *v, int strict) {
    const Onnx__TypeProto *tp = vi->type;
    if (!tp) return ITSCAM_OK;
    if (tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type) {
        if (!strict) return ITSCAM_OK;
        return it_err(ITSCAM_ERR_UNSUPPORTED, "%s: graph input/output '%s' is not a tensor", L->path,
                      v->name);
    }
    const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
    if (tt->has_elem_type) v->t.dtype = tt->elem_type;
    const Onnx__TensorShapeProto *sh = tt->shape;
    if (!sh) return ITSCAM_OK;
    if (sh->n_dim > IT_MAX_DIMS)
        return it_err(ITSCAM_ERR_UNSUPPORTED, "%s: value '%s' has rank %zu (at most %d supported)",
                      L->path, v->name, sh->n_dim, IT_MAX_DIMS);
    for (int i = 0; i < IT_MAX_DIMS; i++) {
        it_free(v->dim_param[i]);
        v->dim_param[i] = NULL;
    }
    v->t.ndim = (int)sh->n_dim;
    for (size_t i = 0; i < sh->n_dim; i++) {
        const Onnx__TensorShapeProto__Dimension *d = sh->dim[i];
        v->t.dims[i] = -1;
        if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE) {
            if (d->dim_value < 0 || d->dim_value > INT32_MAX)
                return it_err(ITSCAM_ERR_MODEL, "%s: value '%s' dimension %zu is %lld", L->path,
                              v->name, i, (long long)d->dim_value);
            v->t.dims[i] = d->dim_value;
        } else if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM && d->dim_param) {
            v->dim_param[i] = it_strdup(d->dim_param);
            if (!v->dim_param[i]) return nomem(L);
        }
    }
    return ITSCAM_OK;
}

static itscam_status load_attr(const loader *L, const Onnx__NodeProto *np,
                               const Onnx__AttributeProto *ap, it_attr *a) {
    a->name = it_strdup(str_or_empty(ap->name));
    if (!a->name) return nomem(L);
    int type = ap->has_type ? (int)ap->type : 0;
    if (!type) { /* very old files leave the type out: infer it from the field present */
        if (ap->g) type = IT_ATTR_GRAPH;
        else if (ap->t) type = IT_ATTR_TENSOR;
        else if (ap->n_floats) type = IT_ATTR_FLOATS;
        else if (ap->n_ints) type = IT_ATTR_INTS;
        else if (ap->n_strings) type = IT_ATTR_STRINGS;
        else if (ap->has_s) type = IT_ATTR_STRING;
        else if (ap->has_i) type = IT_ATTR_INT;
        else if (ap->has_f) type = IT_ATTR_FLOAT;
    }
    a->type = type;
    switch (type) {
    case IT_ATTR_FLOAT: a->f = ap->f; return ITSCAM_OK;
    case IT_ATTR_INT: a->i = ap->i; return ITSCAM_OK;
    case IT_ATTR_STRING:
        a->s = it_strndup(ap->s.data ? (const char *)ap->s.data : "", ap->s.data ? ap->s.len : 0);
        return a->s ? ITSCAM_OK : nomem(L);
    case IT_ATTR_FLOATS:
        if (ap->n_floats > INT_MAX) break;
        a->n = (int)ap->n_floats;
        if (a->n) {
            if (!(a->floats = it_malloc(ap->n_floats * sizeof(float)))) return nomem(L);
            memcpy(a->floats, ap->floats, ap->n_floats * sizeof(float));
        }
        return ITSCAM_OK;
    case IT_ATTR_INTS:
        if (ap->n_ints > INT_MAX) break;
        a->n = (int)ap->n_ints;
        if (a->n) {
            if (!(a->ints = it_malloc(ap->n_ints * sizeof(int64_t)))) return nomem(L);
            memcpy(a->ints, ap->ints, ap->n_ints * sizeof(int64_t));
        }
        return ITSCAM_OK;
    case IT_ATTR_STRINGS:
        if (ap->n_strings > INT_MAX) break;
        if (ap->n_strings) {
            if (!(a->strings = it_calloc(ap->n_strings, sizeof(char *)))) return nomem(L);
            a->n = (int)ap->n_strings; /* set after the calloc so that a partial list frees */
            for (size_t i = 0; i < ap->n_strings; i++) {
                const ProtobufCBinaryData *s = &ap->strings[i];
                a->strings[i] = it_strndup(s->data ? (const char *)s->data : "", s->data ? s->len : 0);
                if (!a->strings[i]) return nomem(L);
            }
        }
        return ITSCAM_OK;
    case IT_ATTR_TENSOR: {
        if (!ap->t)
            return it_err(ITSCAM_ERR_MODEL, "%s: node '%s' attribute '%s' has no tensor", L->path,
                          node_label(np), a->name);
        if (!(a->t = it_calloc(1, sizeof(it_tensor)))) return nomem(L);
        char what[256];
        snprintf(what, sizeof what, "node '%s' attribute '%s'", node_label(np), a->name);
        return decode_tensor(L, ap->t, a->t, what);
    }
    case IT_ATTR_GRAPH:
        return it_err(ITSCAM_ERR_UNSUPPORTED,
                      "%s: node '%s' (%s) attribute '%s' is a subgraph, which is not supported",
                      L->path, node_label(np), str_or_empty(np->op_type), a->name);
    default:
        break;
    }
    return it_err(ITSCAM_ERR_UNSUPPORTED, "%s: node '%s' attribute '%s' has unsupported type %d",
                  L->path, node_label(np), a->name, type);
}

static itscam_status load_node(loader *L, const Onnx__NodeProto *np, it_node *n) {
    it_graph *g = L->g;
    if (!np->op_type || !*np->op_type)
        return it_err(ITSCAM_ERR_MODEL, "%s: node '%s' has no op_type", L->path, node_label(np));
    if (!(n->name = it_strdup(str_or_empty(np->name))) || !(n->op_type = it_strdup(np->op_type)) ||
        !(n->domain = it_strdup(str_or_empty(np->domain))))
        return nomem(L);
    const char *dom = n->domain;
    if (*dom && strcmp(dom, "ai.onnx") != 0)
        return it_err(ITSCAM_ERR_UNSUPPORTED,
                      "%s: unsupported operator '%s' from domain '%s' (node '%s'): only the default "
                      "ONNX domain is supported", L->path, n->op_type, dom, node_label(np));
    const it_op_def *def = it_op_lookup(n->op_type, dom);
    if (!def)
        return it_err(ITSCAM_ERR_UNSUPPORTED, "%s: unsupported operator '%s' (node '%s', opset %lld)",
                      L->path, n->op_type, node_label(np), (long long)g->opset);
    if (g->opset < def->min_opset)
        return it_err(ITSCAM_ERR_UNSUPPORTED,
                      "%s: operator '%s' (node '%s') needs opset %d or newer, the model has opset %lld",
                      L->path, n->op_type, node_label(np), def->min_opset, (long long)g->opset);
    n->op = def->id;

    if (np->n_input > INT_MAX || np->n_attribute > INT_MAX)
        return it_err(ITSCAM_ERR_MODEL, "%s: node '%s' has too many inputs", L->path, node_label(np));
    if (np->n_input) {
        if (!(n->in = it_malloc(np->n_input * sizeof(int)))) return nomem(L);
        n->n_in = (int)np->n_input;
        for (size_t i = 0; i < np->n_input; i++) {
            const char *nm = str_or_empty(np->input[i]);
            if (!*nm) { n->in[i] = -1; continue; } /* omitted optional input */
            int v = find_value(L, nm);
            if (v < 0)
                return it_err(ITSCAM_ERR_MODEL,
                              "%s: node '%s' input '%s' is not a graph input, initializer or node output",
                              L->path, node_label(np), nm);
            n->in[i] = v;
        }
    }
    if (np->n_output) { /* values were created for every output before the nodes */
        if (!(n->out = it_malloc(np->n_output * sizeof(int)))) return nomem(L);
        n->n_out = (int)np->n_output;
        for (size_t i = 0; i < np->n_output; i++) {
            const char *nm = str_or_empty(np->output[i]);
            n->out[i] = *nm ? find_value(L, nm) : -1;
        }
    }
    if (np->n_attribute) {
        if (!(n->attrs = it_calloc(np->n_attribute, sizeof(it_attr)))) return nomem(L);
        n->n_attr = (int)np->n_attribute;
        for (size_t i = 0; i < np->n_attribute; i++) {
            itscam_status s = load_attr(L, np, np->attribute[i], &n->attrs[i]);
            if (s) return s;
        }
    }
    return ITSCAM_OK;
}

/* Nodes must run in an order where every input exists; ONNX requires it but not every
 * exporter obeys, so sort (Kahn) when needed and report cycles or dangling inputs. */
static itscam_status topo_order(loader *L) {
    it_graph *g = L->g;
    int n = g->n_nodes, in_order = 1, edges = 0;
    for (int i = 0; i < n; i++) {
        const it_node *nd = &g->nodes[i];
        for (int k = 0; k < nd->n_in; k++) {
            int v = nd->in[k];
            if (v < 0 || g->values[v].kind != IT_VAL_ACT) continue;
            int p = L->producer[v];
            if (p < 0)
                return it_err(ITSCAM_ERR_MODEL, "%s: node '%s' input '%s' is never produced", L->path,
                              nd->name[0] ? nd->name : nd->op_type, g->values[v].name);
            if (p >= i) in_order = 0;
            edges++;
        }
    }
    if (in_order) return ITSCAM_OK;

    itscam_status st = ITSCAM_OK;
    int *indeg = it_calloc((size_t)n, sizeof(int)), *start = it_calloc((size_t)n + 1, sizeof(int));
    int *adj = it_malloc((size_t)(edges ? edges : 1) * sizeof(int)), *order = it_malloc((size_t)n * sizeof(int));
    it_node *sorted = it_malloc((size_t)n * sizeof(it_node));
    if (!indeg || !start || !adj || !order || !sorted) { st = nomem(L); goto done; }
    for (int i = 0; i < n; i++)
        for (int k = 0; k < g->nodes[i].n_in; k++) {
            int v = g->nodes[i].in[k];
            if (v < 0 || g->values[v].kind != IT_VAL_ACT) continue;
            start[L->producer[v] + 1]++;
            indeg[i]++;
        }
    for (int i = 0; i < n; i++) start[i + 1] += start[i];
    int *fill = order; /* borrowed as a cursor per producer before it holds the order */
    for (int i = 0; i < n; i++) fill[i] = start[i];
    for (int i = 0; i < n; i++)
        for (int k = 0; k < g->nodes[i].n_in; k++) {
            int v = g->nodes[i].in[k];
            if (v < 0 || g->values[v].kind != IT_VAL_ACT) continue;
            adj[fill[L->producer[v]]++] = i;
        }
    int head = 0, tail = 0;
    for (int i = 0; i < n; i++)
        if (!indeg[i]) order[tail++] = i;
    while (head < tail) {
        int u = order[head++];
        for (int e = start[u]; e < start[u + 1]; e++)
            if (--indeg[adj[e]] == 0) order[tail++] = adj[e];
    }
    if (tail < n) {
        for (int i = 0; i < n; i++) {
            if (!indeg[i]) continue;
            const it_node *nd = &g->nodes[i];
            const char *vn = "?";
            for (int k = 0; k < nd->n_in; k++) {
                int v = nd->in[k];
                if (v >= 0 && g->values[v].kind == IT_VAL_ACT && indeg[L->producer[v]]) {
                    vn = g->values[v].name;
                    break;
                }
            }
            st = it_err(ITSCAM_ERR_MODEL, "%s: the graph has a cycle through node '%s' (input '%s')",
                        L->path, nd->name[0] ? nd->name : nd->op_type, vn);
            break;
        }
        goto done;
    }
    for (int i = 0; i < n; i++) sorted[i] = g->nodes[order[i]];
    memcpy(g->nodes, sorted, (size_t)n * sizeof(it_node));
done:
    it_free(indeg);
    it_free(start);
    it_free(adj);
    it_free(order);
    it_free(sorted);
    return st;
}

static itscam_status build(loader *L, const Onnx__ModelProto *m) {
    it_graph *g = L->g;
    g->ir_version = m->has_ir_version ? m->ir_version : 0;
    if (!(g->producer = it_strdup(str_or_empty(m->producer_name)))) return nomem(L);

    int have_opset = 0;
    for (size_t i = 0; i < m->n_opset_import; i++) {
        const Onnx__OperatorSetIdProto *o = m->opset_import[i];
        if (!o->domain || !*o->domain || !strcmp(o->domain, "ai.onnx")) {
            g->opset = o->has_version ? o->version : 0;
            have_opset = 1;
        }
    }
    if (!have_opset)
        return it_err(ITSCAM_ERR_UNSUPPORTED, "%s: the model imports no opset of the default ONNX domain",
                      L->path);
    if (g->opset < 1 || g->opset > 22)
        return it_err(ITSCAM_ERR_UNSUPPORTED, "%s: opset %lld is not supported (1 to 22)", L->path,
                      (long long)g->opset);

    if (m->n_metadata_props) {
        if (m->n_metadata_props > INT_MAX) return nomem(L);
        if (!(g->meta = it_calloc(m->n_metadata_props, sizeof(it_meta)))) return nomem(L);
        g->n_meta = (int)m->n_metadata_props;
        for (size_t i = 0; i < m->n_metadata_props; i++) {
            const Onnx__StringStringEntryProto *e = m->metadata_props[i];
            if (!(g->meta[i].key = it_strdup(str_or_empty(e->key))) ||
                !(g->meta[i].value = it_strdup(str_or_empty(e->value))))
                return nomem(L);
        }
    }

    const Onnx__GraphProto *gp = m->graph;
    if (!gp) return it_err(ITSCAM_ERR_MODEL, "%s: the model has no graph", L->path);

    /* Upper bound on distinct values, so that arrays never grow while loading. */
    uint64_t bound = (uint64_t)gp->n_input + gp->n_initializer + gp->n_output;
    for (size_t i = 0; i < gp->n_node; i++) bound += gp->node[i]->n_output;
    if (bound > INT_MAX / 4 || gp->n_node > INT_MAX / 4)
        return it_err(ITSCAM_ERR_MODEL, "%s: the graph is too large", L->path);
    L->cap_values = (int)bound;
    uint32_t hcap = 16;
    while (hcap < 2 * bound) hcap <<= 1;
    L->hash_mask = hcap - 1;
    if (!(L->hash = it_malloc(hcap * sizeof(int))) ||
        !(L->producer = it_malloc((bound ? bound : 1) * sizeof(int))) ||
        !(g->values = it_calloc(bound ? bound : 1, sizeof(it_value))))
        return nomem(L);
    memset(L->hash, 0xff, hcap * sizeof(int));

    itscam_status st;
    for (size_t i = 0; i < gp->n_initializer; i++) {
        const Onnx__TensorProto *tp = gp->initializer[i];
        const char *nm = str_or_empty(tp->name);
        if (!*nm) return it_err(ITSCAM_ERR_MODEL, "%s: initializer %zu has no name", L->path, i);
        if (find_value(L, nm) >= 0)
            return it_err(ITSCAM_ERR_MODEL, "%s: initializer '%s' is defined twice", L->path, nm);
        int v = add_value(L, nm);
        if (v < 0) return nomem(L);
        g->values[v].kind = IT_VAL_CONST;
        char what[256];
        snprintf(what, sizeof what, "initializer '%s'", nm);
        if ((st = decode_tensor(L, tp, &g->values[v].t, what))) return st;
    }

    if (gp->n_input && !(g->inputs = it_malloc(gp->n_input * sizeof(int)))) return nomem(L);
    for (size_t i = 0; i < gp->n_input; i++) {
        const Onnx__ValueInfoProto *vi = gp->input[i];
        const char *nm = str_or_empty(vi->name);
        if (!*nm) return it_err(ITSCAM_ERR_MODEL, "%s: graph input %zu has no name", L->path, i);
        int v = find_value(L, nm);
        if (v >= 0) {
            /* Before IR 4 initializers had to be listed as inputs too: they stay constants. */
            if (g->values[v].kind == IT_VAL_CONST) continue;
            return it_err(ITSCAM_ERR_MODEL, "%s: graph input '%s' is listed twice", L->path, nm);
        }
        if ((v = add_value(L, nm)) < 0) return nomem(L);
        g->values[v].kind = IT_VAL_INPUT;
        g->inputs[g->n_inputs++] = v;
        if ((st = apply_type(L, vi, &g->values[v], 1))) return st;
    }

    for (size_t i = 0; i < gp->n_node; i++) {
        const Onnx__NodeProto *np = gp->node[i];
        for (size_t k = 0; k < np->n_output; k++) {
            const char *nm = str_or_empty(np->output[k]);
            if (!*nm) continue;
            if (find_value(L, nm) >= 0)
                return it_err(ITSCAM_ERR_MODEL,
                              "%s: node '%s' output '%s' is already defined (by another node, an "
                              "input or an initializer)", L->path, node_label(np), nm);
            int v = add_value(L, nm);
            if (v < 0) return nomem(L);
            L->producer[v] = (int)i;
        }
    }

    if (gp->n_output && !(g->outputs = it_malloc(gp->n_output * sizeof(int)))) return nomem(L);
    for (size_t i = 0; i < gp->n_output; i++) {
        const Onnx__ValueInfoProto *vi = gp->output[i];
        const char *nm = str_or_empty(vi->name);
        int v = *nm ? find_value(L, nm) : -1;
        if (v < 0)
            return it_err(ITSCAM_ERR_MODEL, "%s: graph output '%s' is not produced by any node",
                          L->path, nm);
        if (g->values[v].is_output) continue;
        g->values[v].is_output = 1;
        g->outputs[g->n_outputs++] = v;
        if (g->values[v].kind == IT_VAL_ACT && (st = apply_type(L, vi, &g->values[v], 1))) return st;
    }
    for (size_t i = 0; i < gp->n_value_info; i++) {
        const Onnx__ValueInfoProto *vi = gp->value_info[i];
        int v = vi->name ? find_value(L, vi->name) : -1;
        if (v < 0 || g->values[v].kind != IT_VAL_ACT || g->values[v].is_output) continue;
        if ((st = apply_type(L, vi, &g->values[v], 0))) return st;
    }

    if (gp->n_node) {
        if (!(g->nodes = it_calloc(gp->n_node, sizeof(it_node)))) return nomem(L);
        g->n_nodes = (int)gp->n_node; /* zeroed nodes free cleanly if a later one fails */
        for (size_t i = 0; i < gp->n_node; i++)
            if ((st = load_node(L, gp->node[i], &g->nodes[i]))) return st;
    }
    return topo_order(L);
}

itscam_status it_onnx_load(const void *buf, size_t len, const char *name, it_graph **out) {
    if (!out) return it_err(ITSCAM_ERR_INVALID_ARG, "it_onnx_load: out is NULL");
    *out = NULL;
    const char *path = name && *name ? name : "model";
    if (!buf && len) return it_err(ITSCAM_ERR_INVALID_ARG, "%s: buffer is NULL", path);
    if (!len) return it_err(ITSCAM_ERR_MODEL, "%s: the file is empty (0 bytes), not an ONNX model", path);

    Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, len, buf);
    if (!m)
        return it_err(ITSCAM_ERR_MODEL, "%s: not a valid ONNX protobuf (truncated or corrupt)", path);

    loader L = {.path = path};
    itscam_status st;
    it_graph *g = it_calloc(1, sizeof *g);
    if (!g) {
        st = it_err(ITSCAM_ERR_NOMEM, "%s: out of memory while loading", path);
        goto done;
    }
    L.g = g;
    if (!(g->path = it_strdup(path))) st = nomem(&L);
    else st = build(&L, m);
    if (st) {
        it_graph_free(g);
        g = NULL;
    }
done:
    it_free(L.hash);
    it_free(L.producer);
    onnx__model_proto__free_unpacked(m, NULL);
    *out = g;
    return st;
}
