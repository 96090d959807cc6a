/* Graph IR ownership and look-ups: freeing a loaded graph, finding values, metadata and attributes. */
#include "graph/graph.h"

#include <string.h>

static void attr_free(it_attr *a) {
    it_free(a->name);
    it_free(a->s);
    it_free(a->floats);
    it_free(a->ints);
    if (a->strings)
        for (int i = 0; i < a->n; i++) it_free(a->strings[i]);
    it_free(a->strings);
    if (a->t) {
        it_aligned_free(a->t->data);
        it_free(a->t);
    }
}

/* Safe on partially built graphs: the loader zeroes arrays before filling them. */
void it_graph_free(it_graph *g) {
    if (!g) return;
    for (int i = 0; i < g->n_values; i++) {
        it_value *v = &g->values[i];
        it_free(v->name);
        for (int k = 0; k < IT_MAX_DIMS; k++) it_free(v->dim_param[k]);
        if (v->kind == IT_VAL_CONST) it_aligned_free(v->t.data);
    }
    it_free(g->values);
    for (int i = 0; i < g->n_nodes; i++) {
        it_node *n = &g->nodes[i];
        it_free(n->name);
        it_free(n->op_type);
        it_free(n->domain);
        it_free(n->in);
        it_free(n->out);
        if (n->attrs)
            for (int k = 0; k < n->n_attr; k++) attr_free(&n->attrs[k]);
        it_free(n->attrs);
    }
    it_free(g->nodes);
    it_free(g->inputs);
    it_free(g->outputs);
    for (int i = 0; i < g->n_meta; i++) {
        it_free(g->meta[i].key);
        it_free(g->meta[i].value);
    }
    it_free(g->meta);
    it_free(g->producer);
    it_free(g->path);
    it_free(g);
}

int it_graph_find_value(const it_graph *g, const char *name) {
    if (!g || !name) return -1;
    for (int i = 0; i < g->n_values; i++)
        if (!strcmp(g->values[i].name, name)) return i;
    return -1;
}

const char *it_graph_meta(const it_graph *g, const char *key) {
    if (!g || !key) return NULL;
    for (int i = 0; i < g->n_meta; i++)
        if (!strcmp(g->meta[i].key, key)) return g->meta[i].value;
    return NULL;
}

const it_attr *it_attr_find(const it_node *n, const char *name) {
    if (!n || !name) return NULL;
    for (int i = 0; i < n->n_attr; i++)
        if (!strcmp(n->attrs[i].name, name)) return &n->attrs[i];
    return NULL;
}

int64_t it_attr_int(const it_node *n, const char *name, int64_t def) {
    const it_attr *a = it_attr_find(n, name);
    return a && a->type == IT_ATTR_INT ? a->i : def;
}

/* An INT where a FLOAT is expected is accepted: some exporters write alpha=1 as an int. */
float it_attr_float(const it_node *n, const char *name, float def) {
    const it_attr *a = it_attr_find(n, name);
    if (!a) return def;
    if (a->type == IT_ATTR_FLOAT) return a->f;
    if (a->type == IT_ATTR_INT) return (float)a->i;
    return def;
}

const char *it_attr_str(const it_node *n, const char *name, const char *def) {
    const it_attr *a = it_attr_find(n, name);
    return a && a->type == IT_ATTR_STRING && a->s ? a->s : def;
}

int it_attr_ints(const it_node *n, const char *name, const int64_t **v) {
    const it_attr *a = it_attr_find(n, name);
    if (!a || a->type != IT_ATTR_INTS) {
        if (v) *v = NULL;
        return 0;
    }
    if (v) *v = a->ints;
    return a->n;
}

int it_attr_floats(const it_node *n, const char *name, const float **v) {
    const it_attr *a = it_attr_find(n, name);
    if (!a || a->type != IT_ATTR_FLOATS) {
        if (v) *v = NULL;
        return 0;
    }
    if (v) *v = a->floats;
    return a->n;
}
