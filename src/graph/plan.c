/* The planner: specialise a graph to concrete input shapes (shape inference and constant
 * folding in one topological walk), fuse Conv+Sigmoid+Mul, and place every activation in
 * one arena by lifetime so that running the plan never touches the heap. */
#include "graph/plan.h"
#include "graph/ops_impl.h"

#include <stdlib.h>
#include <string.h>

void it_plan_free(it_plan *p) {
    if (!p) return;
    if (p->t && p->folded)
        for (int v = 0; v < p->g->n_values; v++)
            if (p->folded[v]) it_aligned_free(p->t[v].data);
    for (int i = 0; i < p->n_steps; i++) {
        it_free(p->steps[i].in);
        it_free(p->steps[i].out);
    }
    it_free(p->steps);
    it_free(p->t);
    it_free(p->folded);
    it_free(p->offset);
    if (p->arena_owned) it_aligned_free(p->arena);
    it_free(p);
}

void it_plan_step_args(const it_plan *p, int i, const it_tensor **in, it_tensor **out, it_kernel_args *a) {
    const it_plan_step *s = &p->steps[i];
    for (int k = 0; k < s->n_in; k++) in[k] = s->in[k] >= 0 ? &p->t[s->in[k]] : NULL;
    for (int k = 0; k < s->n_out; k++) out[k] = &p->t[s->out[k]];
    memset(a, 0, sizeof *a);
    a->node = s->node;
    a->opset = p->opset;
    a->n_in = s->n_in;
    a->n_out = s->n_out;
    a->in = in;
    a->out = out;
    a->scratch = s->scratch_bytes ? p->arena + p->scratch_offset : NULL;
    a->activation = s->activation;
}

itscam_status it_run_step_ref(const it_plan *p, int i) {
    const it_plan_step *s = &p->steps[i];
    const it_tensor *in[s->n_in > 0 ? s->n_in : 1];
    it_tensor *out[s->n_out > 0 ? s->n_out : 1];
    it_kernel_args a;
    it_plan_step_args(p, i, in, out, &a);
    itscam_status st = s->def->ref(&a);
    if (st != ITSCAM_OK)
        return it_err_prefix(st, "node '%s' (%s)", it_node_label(s->node), s->node->op_type);
    return ITSCAM_OK;
}

int it_plan_consumers(const it_plan *p, int v) {
    int n = p->g->values[v].is_output ? 1 : 0;
    for (int i = 0; i < p->n_steps; i++)
        for (int k = 0; k < p->steps[i].n_in; k++)
            if (p->steps[i].in[k] == v) n++;
    return n;
}

/* Evaluate a node whose inputs are all known, at plan time, into owned buffers. */
static itscam_status fold_node(it_plan *p, const it_node *nd, const it_op_def *def, it_kernel_args *a) {
    for (int k = 0; k < nd->n_out; k++) {
        it_tensor *o = a->out[k];
        o->data = it_aligned_alloc(o->nbytes ? o->nbytes : 1);
        if (!o->data) return it_err(ITSCAM_ERR_NOMEM, "out of memory folding node '%s'", it_node_label(nd));
        memset(o->data, 0, o->nbytes ? o->nbytes : 1);
        p->folded[nd->out[k]] = 1;
    }
    size_t sb = def->scratch ? def->scratch(a) : 0;
    void *scratch = sb ? it_aligned_alloc(sb) : NULL;
    if (sb && !scratch) return it_err(ITSCAM_ERR_NOMEM, "out of memory folding node '%s'", it_node_label(nd));
    a->scratch = scratch;
    itscam_status st = def->ref(a);
    it_aligned_free(scratch);
    return st;
}

static itscam_status add_step(it_plan *p, int *cap, const it_node *nd, const it_op_def *def, size_t scratch) {
    if (p->n_steps == *cap) {
        int nc = *cap ? *cap * 2 : 64;
        it_plan_step *ns = it_realloc(p->steps, (size_t)nc * sizeof *ns);
        if (!ns) return it_err(ITSCAM_ERR_NOMEM, "out of memory planning");
        p->steps = ns;
        *cap = nc;
    }
    it_plan_step *s = &p->steps[p->n_steps];
    memset(s, 0, sizeof *s);
    s->node = nd;
    s->def = def;
    s->n_in = nd->n_in;
    s->n_out = nd->n_out;
    s->in = it_malloc(sizeof(int) * (size_t)(nd->n_in ? nd->n_in : 1));
    s->out = it_malloc(sizeof(int) * (size_t)(nd->n_out ? nd->n_out : 1));
    if (!s->in || !s->out) {
        it_free(s->in);
        it_free(s->out);
        return it_err(ITSCAM_ERR_NOMEM, "out of memory planning");
    }
    memcpy(s->in, nd->in, sizeof(int) * (size_t)nd->n_in);
    memcpy(s->out, nd->out, sizeof(int) * (size_t)nd->n_out);
    s->scratch_bytes = scratch;
    p->n_steps++;
    return ITSCAM_OK;
}

/* Conv -> Sigmoid -> Mul(conv, sigmoid) is SiLU: run it as the Conv's epilogue. */
static void fuse_silu(it_plan *p) {
    int nv = p->g->n_values;
    int *uses = it_calloc((size_t)nv, sizeof(int));
    int *producer = it_malloc(sizeof(int) * (size_t)nv);
    uint8_t *dead = it_calloc((size_t)(p->n_steps ? p->n_steps : 1), 1);
    if (!uses || !producer || !dead) goto done; /* fusion is an optimisation: skip it */
    for (int v = 0; v < nv; v++) {
        producer[v] = -1;
        if (p->g->values[v].is_output) uses[v]++;
    }
    for (int i = 0; i < p->n_steps; i++) {
        for (int k = 0; k < p->steps[i].n_in; k++)
            if (p->steps[i].in[k] >= 0) uses[p->steps[i].in[k]]++;
        for (int k = 0; k < p->steps[i].n_out; k++) producer[p->steps[i].out[k]] = i;
    }
    for (int i = 0; i < p->n_steps; i++) {
        it_plan_step *s = &p->steps[i];
        if (s->def->id != IT_OP_SIGMOID || p->t[s->in[0]].dtype != IT_F32) continue;
        int c = s->in[0], sg = s->out[0];
        int ci = producer[c];
        if (ci < 0 || p->steps[ci].def->id != IT_OP_CONV || p->steps[ci].activation) continue;
        if (uses[c] != 2 || uses[sg] != 1) continue;
        /* find the Mul that consumes exactly c and sg */
        for (int j = i + 1; j < p->n_steps; j++) {
            it_plan_step *m = &p->steps[j];
            if (m->def->id != IT_OP_MUL || dead[j]) continue;
            if (!((m->in[0] == c && m->in[1] == sg) || (m->in[0] == sg && m->in[1] == c))) continue;
            p->steps[ci].out[0] = m->out[0];
            p->steps[ci].activation = IT_ACT_SILU;
            producer[m->out[0]] = ci;
            dead[i] = dead[j] = 1;
            break;
        }
    }
    int w = 0;
    for (int i = 0; i < p->n_steps; i++) {
        if (dead[i]) {
            it_free(p->steps[i].in);
            it_free(p->steps[i].out);
            continue;
        }
        p->steps[w++] = p->steps[i];
    }
    p->n_steps = w;
done:
    it_free(uses);
    it_free(producer);
    it_free(dead);
}

typedef struct live_range {
    int v, first, last;
    size_t size, offset;
} live_range;

static int by_size_desc(const void *a, const void *b) {
    const live_range *x = a, *y = b;
    if (x->size != y->size) return x->size < y->size ? 1 : -1;
    return x->first - y->first;
}

/* Greedy by size (as TFLite's arena planner): place the largest tensors first, each at the
 * lowest offset that does not overlap a placed tensor whose lifetime intersects. */
static itscam_status plan_memory(it_plan *p) {
    int nv = p->g->n_values;
    live_range *lr = it_malloc(sizeof *lr * (size_t)(nv ? nv : 1));
    int *idx = it_malloc(sizeof(int) * (size_t)(nv ? nv : 1));
    if (!lr || !idx) { it_free(lr); it_free(idx); return it_err(ITSCAM_ERR_NOMEM, "out of memory planning"); }
    for (int v = 0; v < nv; v++) idx[v] = -1;
    int n = 0;
    const it_graph *g = p->g;
    for (int i = 0; i < g->n_inputs; i++) {
        int v = g->inputs[i];
        if (p->folded[v] || idx[v] >= 0) continue;
        idx[v] = n;
        lr[n++] = (live_range){ v, -1, -1, IT_ALIGN_UP(p->t[v].nbytes), 0 };
    }
    for (int i = 0; i < p->n_steps; i++) {
        const it_plan_step *s = &p->steps[i];
        for (int k = 0; k < s->n_in; k++) {
            int v = s->in[k];
            if (v >= 0 && idx[v] >= 0) lr[idx[v]].last = i;
        }
        for (int k = 0; k < s->n_out; k++) {
            int v = s->out[k];
            if (idx[v] < 0) {
                idx[v] = n;
                lr[n++] = (live_range){ v, i, i, IT_ALIGN_UP(p->t[v].nbytes ? p->t[v].nbytes : 1), 0 };
            }
        }
    }
    for (int i = 0; i < n; i++)
        if (g->values[lr[i].v].is_output) lr[i].last = p->n_steps; /* outputs outlive the run */
    qsort(lr, (size_t)n, sizeof *lr, by_size_desc);
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        size_t off = 0;
        /* try candidate offsets: 0 and the end of every conflicting placed range, lowest first */
        for (;;) {
            size_t bump = 0;
            for (int j = 0; j < i; j++) {
                if (lr[j].last < lr[i].first || lr[i].last < lr[j].first) continue;
                if (off < lr[j].offset + lr[j].size && lr[j].offset < off + lr[i].size) {
                    size_t end = lr[j].offset + lr[j].size;
                    if (!bump || end < bump) bump = end;
                }
            }
            if (!bump) break;
            off = bump;
        }
        lr[i].offset = off;
        if (off + lr[i].size > total) total = off + lr[i].size;
    }
    size_t scratch = 0;
    for (int i = 0; i < p->n_steps; i++) scratch = IT_MAX(scratch, p->steps[i].scratch_bytes);
    p->scratch_offset = total;
    p->arena_bytes = total + IT_ALIGN_UP(scratch);
    for (int i = 0; i < n; i++) p->offset[lr[i].v] = (int64_t)lr[i].offset;
    it_free(lr);
    it_free(idx);
    return ITSCAM_OK;
}

static itscam_status bind_inputs(it_plan *p, const it_tensor *inputs, int n) {
    const it_graph *g = p->g;
    if (n != g->n_inputs)
        return it_err(ITSCAM_ERR_INVALID_ARG, "%s: the model has %d inputs, %d given", g->path, g->n_inputs, n);
    for (int i = 0; i < n; i++) {
        int v = g->inputs[i];
        const it_value *gv = &g->values[v];
        const it_tensor *in = &inputs[i];
        if (gv->t.dtype != IT_UNDEF && in->dtype != gv->t.dtype)
            return it_err(ITSCAM_ERR_SHAPE, "%s: input '%s' is %s, %s given", g->path, gv->name,
                          it_dtype_name(gv->t.dtype), it_dtype_name(in->dtype));
        if (in->ndim < 0 || in->ndim > IT_MAX_DIMS)
            return it_err(ITSCAM_ERR_SHAPE, "%s: input '%s': bad rank %d", g->path, gv->name, in->ndim);
        if (gv->t.ndim >= 0 && gv->t.ndim != in->ndim)
            return it_err(ITSCAM_ERR_SHAPE, "%s: input '%s' has rank %d, %d given", g->path, gv->name,
                          gv->t.ndim, in->ndim);
        for (int k = 0; k < in->ndim; k++) {
            if (in->dims[k] < 0) return it_err(ITSCAM_ERR_SHAPE, "%s: input '%s': negative dimension", g->path, gv->name);
            if (gv->t.ndim >= 0 && gv->t.dims[k] >= 0 && gv->t.dims[k] != in->dims[k])
                return it_err(ITSCAM_ERR_SHAPE, "%s: input '%s' dimension %d is %lld, %lld given", g->path,
                              gv->name, k, (long long)gv->t.dims[k], (long long)in->dims[k]);
        }
        it_set_shape(&p->t[v], in->dtype, in->ndim, in->dims);
        if (in->data) {
            /* inputs given with values are known at plan time, like shape tensors */
            p->t[v].data = it_aligned_alloc(p->t[v].nbytes ? p->t[v].nbytes : 1);
            if (!p->t[v].data) return it_err(ITSCAM_ERR_NOMEM, "out of memory");
            memcpy(p->t[v].data, in->data, p->t[v].nbytes);
            p->folded[v] = 1;
        }
    }
    return ITSCAM_OK;
}

void it_plan_bind(it_plan *p, uint8_t *arena) {
    if (p->arena_owned && p->arena != arena) it_aligned_free(p->arena);
    p->arena_owned = 0;
    p->arena = arena;
    for (int v = 0; v < p->g->n_values; v++)
        if (p->offset[v] >= 0) p->t[v].data = arena + p->offset[v];
}

itscam_status it_plan_create(const it_graph *g, const it_tensor *inputs, int n, it_plan **out) {
    itscam_status st = it_plan_create_unbound(g, inputs, n, out);
    if (st != ITSCAM_OK) return st;
    it_plan *p = *out;
    uint8_t *arena = it_aligned_alloc(p->arena_bytes ? p->arena_bytes : IT_ALIGN);
    if (!arena) {
        it_plan_free(p);
        *out = NULL;
        return it_err(ITSCAM_ERR_NOMEM, "cannot allocate a %zu-byte activation arena", p->arena_bytes);
    }
    it_plan_bind(p, arena);
    p->arena_owned = 1;
    return ITSCAM_OK;
}

itscam_status it_plan_create_unbound(const it_graph *g, const it_tensor *inputs, int n, it_plan **out) {
    *out = NULL;
    it_plan *p = it_calloc(1, sizeof *p);
    if (!p) return it_err(ITSCAM_ERR_NOMEM, "out of memory planning");
    p->g = g;
    p->opset = g->opset;
    int nv = g->n_values;
    p->t = it_calloc((size_t)(nv ? nv : 1), sizeof *p->t);
    p->folded = it_calloc((size_t)(nv ? nv : 1), 1);
    p->offset = it_malloc(sizeof(int64_t) * (size_t)(nv ? nv : 1));
    itscam_status st = ITSCAM_OK;
    if (!p->t || !p->folded || !p->offset) { st = it_err(ITSCAM_ERR_NOMEM, "out of memory planning"); goto fail; }
    for (int v = 0; v < nv; v++) {
        p->offset[v] = -1;
        if (g->values[v].kind == IT_VAL_CONST) p->t[v] = g->values[v].t; /* shared, not owned */
        else p->t[v].ndim = -1;
    }
    if ((st = bind_inputs(p, inputs, n)) != ITSCAM_OK) goto fail;
    if (n > 0) p->batch = inputs[0].ndim > 0 ? inputs[0].dims[0] : 1;

    int cap = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const it_node *nd = &g->nodes[i];
        const it_op_def *def = it_op_get(nd->op);
        if (!def) { st = it_err(ITSCAM_ERR_UNSUPPORTED, "%s: unsupported operator '%s' (node '%s')", g->path, nd->op_type, it_node_label(nd)); goto fail; }
        const it_tensor *in[nd->n_in > 0 ? nd->n_in : 1];
        it_tensor *outs[nd->n_out > 0 ? nd->n_out : 1];
        int known = 1;
        for (int k = 0; k < nd->n_in; k++) {
            int v = nd->in[k];
            in[k] = v >= 0 ? &p->t[v] : NULL;
            if (v < 0) continue;
            if (p->t[v].ndim < 0) {
                st = it_err(ITSCAM_ERR_SHAPE, "%s: node '%s' (%s): input '%s' has no known shape", g->path,
                            it_node_label(nd), nd->op_type, g->values[v].name);
                goto fail;
            }
            if (!p->t[v].data) known = 0;
        }
        for (int k = 0; k < nd->n_out; k++) {
            if (nd->out[k] < 0) {
                st = it_err(ITSCAM_ERR_UNSUPPORTED, "%s: node '%s' (%s): omitted outputs are not supported", g->path, it_node_label(nd), nd->op_type);
                goto fail;
            }
            outs[k] = &p->t[nd->out[k]];
        }
        it_kernel_args a = { .node = nd, .opset = g->opset, .n_in = nd->n_in, .n_out = nd->n_out, .in = in, .out = outs };
        st = def->shape(&a);
        if (st != ITSCAM_OK) { it_err_prefix(st, "%s", g->path); goto fail; }
        for (int k = 0; k < nd->n_out; k++) {
            it_tensor *o = outs[k];
            int64_t ne = it_tensor_numel(o);
            if (ne < 0) {
                st = it_err(ITSCAM_ERR_SHAPE, "%s: node '%s' (%s): output %d has an unknown shape", g->path, it_node_label(nd), nd->op_type, k);
                goto fail;
            }
            o->nbytes = (size_t)ne * it_dtype_size(o->dtype);
            o->data = NULL;
        }
        /* Shape needs only its input's shape, which is known here: always fold it, so
         * that the shape arithmetic of exported graphs (Shape->Gather->Concat->Reshape)
         * becomes constants even when the data flowing in is not. */
        if (def->id == IT_OP_SHAPE) known = 1;
        if (known) {
            st = fold_node(p, nd, def, &a);
            if (st != ITSCAM_OK) { it_err_prefix(st, "%s: folding node '%s' (%s)", g->path, it_node_label(nd), nd->op_type); goto fail; }
            continue;
        }
        size_t sb = def->scratch ? def->scratch(&a) : 0;
        if ((st = add_step(p, &cap, nd, def, sb)) != ITSCAM_OK) goto fail;
    }
    fuse_silu(p);
    if ((st = plan_memory(p)) != ITSCAM_OK) goto fail;
    *out = p;
    return ITSCAM_OK;
fail:
    it_plan_free(p);
    return st;
}
