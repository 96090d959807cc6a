/* Models (an immutable loaded graph plus Ultralytics metadata) and sessions (per-thread
 * plans and backend programs, cached per input shape). */
#include "runtime/model.h"
#include "runtime/breaker.h"
#include "graph/calib.h"
#include "onnx/onnx.h"
#include "runtime/names.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MODEL_MAX_BYTES ((size_t)2 << 30)

/* "[640, 640]" or "640" -> h, w */
static void parse_imgsz(const char *s, int *h, int *w) {
    if (!s) return;
    const char *p = s;
    while (*p && (*p < '0' || *p > '9')) p++;
    char *end;
    long a = strtol(p, &end, 10);
    if (end == p || a <= 0 || a > 16384) return;
    long b = a;
    const char *q = end;
    while (*q && (*q < '0' || *q > '9')) q++;
    if (*q) {
        long t = strtol(q, &end, 10);
        if (end != q && t > 0 && t <= 16384) b = t;
    }
    *h = (int)a;
    *w = (int)b;
}

static itscam_status fill_info(itscam_model *m) {
    it_graph *g = m->g;
    itscam_model_info *in = &m->info;
    if (g->n_inputs < 1 || g->n_outputs < 1)
        return it_err(ITSCAM_ERR_MODEL, "%s: the model has no input or no output", g->path);
    const it_value *iv = &g->values[g->inputs[0]];
    in->input_name = iv->name;
    for (int k = 0; k < 4; k++) in->input_dims[k] = -1;
    if (iv->t.ndim == 4)
        for (int k = 0; k < 4; k++) in->input_dims[k] = iv->t.dims[k];
    in->output_name = g->values[g->outputs[0]].name;
    in->stride = 32;
    const char *st = it_graph_meta(g, "stride");
    if (st && atoi(st) > 0) in->stride = atoi(st);
    in->imgsz[0] = in->input_dims[2] > 0 ? (int)in->input_dims[2] : 640;
    in->imgsz[1] = in->input_dims[3] > 0 ? (int)in->input_dims[3] : 640;
    parse_imgsz(it_graph_meta(g, "imgsz"), &in->imgsz[0], &in->imgsz[1]);
    const char *task = it_graph_meta(g, "task");
    in->task = task ? task : "";
    const char *e2e = it_graph_meta(g, "end2end");
    in->end2end = e2e && (!strcmp(e2e, "True") || !strcmp(e2e, "true") || !strcmp(e2e, "1"));
    /* An [N,300,6] head is the NMS-free form whatever the metadata says. */
    const it_value *ov = &g->values[g->outputs[0]];
    if (ov->t.ndim == 3 && ov->t.dims[2] == 6) in->end2end = 1;
    const char *names = it_graph_meta(g, "names");
    if (names && it_parse_names(names, &m->names, &m->n_names) == 0) {
        in->class_names = (const char *const *)m->names;
        in->num_classes = m->n_names;
    } else if (ov->t.ndim == 3 && ov->t.dims[1] > 4 && !in->end2end) {
        in->num_classes = (int)ov->t.dims[1] - 4;
    }
    for (int i = 0; i < g->n_nodes; i++) {
        int op = g->nodes[i].op;
        if (op == IT_OP_CONVINTEGER || op == IT_OP_MATMULINTEGER || op == IT_OP_QUANTIZELINEAR ||
            op == IT_OP_DYNAMICQUANTIZELINEAR)
            in->is_quantized = 1;
    }
    return ITSCAM_OK;
}

itscam_status itscam_model_load_buffer(const void *buf, size_t len, const char *name, itscam_model **out) {
    if (!out) return it_err(ITSCAM_ERR_INVALID_ARG, "itscam_model_load_buffer: out is NULL");
    *out = NULL;
    if (!buf && len) return it_err(ITSCAM_ERR_INVALID_ARG, "itscam_model_load_buffer: buffer is NULL");
    itscam_model *m = it_calloc(1, sizeof *m);
    if (!m) return it_err(ITSCAM_ERR_NOMEM, "out of memory");
    itscam_status st = it_onnx_load(buf, len, name ? name : "<memory>", &m->g);
    if (st == ITSCAM_OK) st = fill_info(m);
    if (st == ITSCAM_OK && !(m->weights = it_weight_cache_new())) st = it_err(ITSCAM_ERR_NOMEM, "out of memory");
    if (st != ITSCAM_OK) {
        itscam_model_free(m);
        return st;
    }
    *out = m;
    return ITSCAM_OK;
}

itscam_status itscam_model_load(const char *path, itscam_model **out) {
    if (!path || !out) return it_err(ITSCAM_ERR_INVALID_ARG, "itscam_model_load: NULL argument");
    uint8_t *buf;
    size_t len;
    itscam_status st = it_read_file(path, &buf, &len, MODEL_MAX_BYTES);
    if (st != ITSCAM_OK) return st;
    st = itscam_model_load_buffer(buf, len, path, out);
    it_free(buf);
    return st;
}

void itscam_model_free(itscam_model *m) {
    if (!m) return;
    it_free_names(m->names, m->n_names);
    it_weight_cache_free(m->weights);
    it_graph_free(m->g);
    it_free(m);
}

const itscam_model_info *itscam_model_get_info(const itscam_model *m) { return m ? &m->info : NULL; }

itscam_session_params itscam_session_default_params(void) {
    itscam_session_params p = { .backend = NULL, .threads = 0, .precision = NULL, .calib_path = NULL, .device = -1 };
    return p;
}

static itscam_status resolve_precision(const it_backend *be, const char *name, int have_calib, it_precision *out);

static itscam_status not_compiled_in(const char *name) {
    char list[128] = "";
    for (const char *const *b = itscam_backends(); *b; b++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", list[0] ? ", " : "", *b);
    return it_err(ITSCAM_ERR_NOT_FOUND, "backend '%s' is not compiled in (available: %s)", name, list);
}

/* The backends of a new session. A device backend (a GPU) that is usable runs behind its
 * breaker with the first host backend as fallback (none with no_fallback); one that is
 * not usable is replaced by that host backend, said once, or is an error that says what
 * was probed with no_fallback. ITSCAM_FAULT's emulate stands a host program in for it. */
typedef struct session_backends {
    const it_backend *be, *fb;
    struct it_breaker *br;
    int emulated;
    const char *name;
} session_backends;

static itscam_status choose_backends(const itscam_session_params *p, session_backends *out) {
    const it_backend *be = NULL;
    if (p->backend && *p->backend) {
        if (!(be = it_backend_lookup(p->backend))) return not_compiled_in(p->backend);
    } else { /* the first backend of the registry that runs here (a GPU may be absent) */
        for (const it_backend *const *b = it_backend_list(); *b && !be; b++)
            if (it_backend_usable(*b, NULL, 0)) be = *b;
        if (!be) return it_err(ITSCAM_ERR_NOT_FOUND, "no backend of this build can run on this machine");
    }
    char why[192];
    int usable = it_backend_usable(be, why, sizeof why);
    *out = (session_backends){ .be = be, .name = be->name };
    if (be->kind != IT_BACKEND_DEVICE) {
        if (!usable) return it_err(ITSCAM_ERR_NOT_FOUND, "backend '%s' is unavailable: %s", be->name, why);
        return ITSCAM_OK;
    }
    const it_backend *host = it_backend_first_host();
    const it_fault *f = it_fault_get();
    int emulate = !usable && f->emulate && !strcmp(f->backend, be->name);
    if (!host && (!p->no_fallback || emulate))
        return it_err(ITSCAM_ERR_NOT_FOUND, "backend '%s': no host backend to fall back to", be->name);
    if (usable || emulate) {
        out->br = it_breaker_for(be->name);
        out->fb = p->no_fallback ? NULL : host;
        if (emulate) out->be = host, out->emulated = 1;
        return ITSCAM_OK;
    }
    if (p->no_fallback)
        return it_err(ITSCAM_ERR_NOT_FOUND,
                      "backend '%s' is unavailable: no usable GPU (probed: %s); fallback to the CPU is disabled (no_fallback)",
                      be->name, why);
    static atomic_int said;
    if (!atomic_exchange(&said, 1))
        it_log(ITSCAM_LOG_WARN, "backend '%s' is unavailable: no usable GPU (probed: %s); serving from the %s backend",
               be->name, why, host->name);
    out->be = host;
    out->name = host->name;
    return ITSCAM_OK;
}

itscam_status itscam_session_create(const itscam_model *m, const itscam_session_params *p, itscam_session **out) {
    if (!m || !out) return it_err(ITSCAM_ERR_INVALID_ARG, "itscam_session_create: NULL argument");
    *out = NULL;
    itscam_session_params dp = itscam_session_default_params();
    if (!p) p = &dp;
    session_backends sb = { 0 };
    itscam_status st = choose_backends(p, &sb);
    if (st != ITSCAM_OK) return st;
    const it_backend *be = sb.be, *fb = sb.fb;
    it_precision prec;
    /* fp16 is a GPU mode: where the CPU stands in for the GPU, it runs fp32. */
    const char *pname = p->precision;
    if (pname && !strcmp(pname, "fp16") && !(be->supports && be->supports(IT_PREC_FP16))) pname = "fp32";
    st = resolve_precision(be, pname, p->calib_path != NULL, &prec);
    if (st != ITSCAM_OK) return st;
    itscam_session *s = it_calloc(1, sizeof *s);
    if (!s) return it_err(ITSCAM_ERR_NOMEM, "out of memory");
    s->m = m;
    s->be = be;
    s->fb = fb;
    s->br = sb.br;
    s->emulated = sb.emulated;
    s->name = sb.name;
    s->opts.threads = p->threads;
    s->opts.precision = prec;
    s->opts.device = p->device;
    if (p->calib_path && (st = it_calib_load(p->calib_path, &s->calib)) != ITSCAM_OK) {
        it_free(s);
        return st;
    }
    s->opts.calib = s->calib;
    s->fb_opts = s->opts;
    if (fb && !(fb->supports && fb->supports(prec))) s->fb_opts.precision = IT_PREC_FP32;
    /* sessions only read the cache's entries; its lock guards creation */
    s->opts.weights = ((itscam_model *)m)->weights;
    s->fb_opts.weights = s->opts.weights;
    *out = s;
    return ITSCAM_OK;
}

static const char *const precision_names[] = { [IT_PREC_FP32] = "fp32", [IT_PREC_BF16] = "bf16",
                                                [IT_PREC_INT8] = "int8", [IT_PREC_FP16] = "fp16" };

const char *itscam_session_precision(const itscam_session *s) {
    return s ? precision_names[s->opts.precision] : "";
}

/* "auto" takes the fastest mode the backend runs natively here within the accuracy
 * budget: int8 when calibration ranges are given, else bf16, else fp32. An explicit mode
 * the backend cannot run is an error rather than a silent fallback. */
static itscam_status resolve_precision(const it_backend *be, const char *name, int have_calib, it_precision *out) {
    *out = IT_PREC_FP32;
    if (!name || !*name || !strcmp(name, "fp32")) return ITSCAM_OK;
    int is_auto = !strcmp(name, "auto");
    if (is_auto) {
        if (have_calib && be->supports && be->supports(IT_PREC_INT8)) *out = IT_PREC_INT8;
        else if (be->supports && be->supports(IT_PREC_FP16)) *out = IT_PREC_FP16;
        else if (be->supports && be->supports(IT_PREC_BF16)) *out = IT_PREC_BF16;
        it_log(ITSCAM_LOG_INFO, "precision auto: %s on backend %s", precision_names[*out], be->name);
        return ITSCAM_OK;
    }
    for (int i = 0; i < IT_PREC_COUNT; i++)
        if (!strcmp(name, precision_names[i])) {
            if (i != IT_PREC_FP32 && !(be->supports && be->supports((it_precision)i)))
                return it_err(ITSCAM_ERR_UNSUPPORTED, "backend '%s' cannot run %s on this machine", be->name, name);
            *out = (it_precision)i;
            return ITSCAM_OK;
        }
    return it_err(ITSCAM_ERR_INVALID_ARG, "unknown precision '%s' (fp32, fp16, bf16, int8 or auto)", name);
}

static void drop_plan(itscam_session *s, it_session_plan *sp) {
    if (sp->prog) s->be->destroy(sp->prog);
    it_plan_free(sp->plan);
    if (sp->fprog) s->fb->destroy(sp->fprog);
    it_plan_free(sp->fplan);
    memset(sp, 0, sizeof *sp);
}

void itscam_session_free(itscam_session *s) {
    if (!s) return;
    for (int i = 0; i < IT_SESSION_PLANS; i++) drop_plan(s, &s->plans[i]);
    it_aligned_free(s->arena);
    it_aligned_free(s->workspace);
    it_calib_free(s->calib);
    it_free(s);
}

static int shares_memory(const it_backend *be) { return be->workspace_bytes && be->rebind; }

/* Make the shared arena hold arena_need bytes and the workspace ws_need, moving every
 * cached plan and program when either grows. What they held is lost, which is fine
 * between runs: inputs are written after prepare, outputs read before the next one. */
static itscam_status grow_shared(itscam_session *s, size_t arena_need, size_t ws_need) {
    uint8_t *na = s->arena, *nw = s->workspace;
    if (arena_need > s->arena_bytes && !(na = it_aligned_alloc(arena_need)))
        return it_err(ITSCAM_ERR_NOMEM, "cannot allocate a %zu-byte activation arena", arena_need);
    if (ws_need > s->workspace_bytes && !(nw = it_aligned_alloc(ws_need))) {
        if (na != s->arena) it_aligned_free(na);
        return it_err(ITSCAM_ERR_NOMEM, "cannot allocate a %zu-byte backend workspace", ws_need);
    }
    if (na == s->arena && nw == s->workspace) return ITSCAM_OK;
    it_relocation r = { .old_arena = s->arena, .new_arena = na, .arena_bytes = s->arena_bytes, .new_workspace = nw };
    for (int i = 0; i < IT_SESSION_PLANS; i++) {
        it_session_plan *sp = &s->plans[i];
        if (!sp->plan || !sp->prog) continue;   /* a plan being made binds itself */
        it_plan_bind(sp->plan, na);
        s->be->rebind(sp->prog, &r);
    }
    if (na != s->arena) {
        it_aligned_free(s->arena);
        s->arena = na;
        s->arena_bytes = arena_need;
    }
    if (nw != s->workspace) {
        it_aligned_free(s->workspace);
        s->workspace = nw;
        s->workspace_bytes = ws_need;
    }
    s->last_prog = NULL;
    return ITSCAM_OK;
}

/* A plan and program for input shape `in` in slot sp, in the shared memory when the
 * backend can share it. */
static itscam_status make_plan(itscam_session *s, const it_tensor *in, it_session_plan *sp) {
    const it_graph *g = s->m->g;
    if (!shares_memory(s->be)) {
        itscam_status st = it_plan_create(g, in, 1, &sp->plan);
        if (st == ITSCAM_OK) st = s->be->compile(sp->plan, &s->opts, &sp->prog);
        return st;
    }
    itscam_status st = it_plan_create_unbound(g, in, 1, &sp->plan);
    if (st != ITSCAM_OK) return st;
    if ((st = grow_shared(s, sp->plan->arena_bytes ? sp->plan->arena_bytes : IT_ALIGN, 0)) != ITSCAM_OK) return st;
    it_plan_bind(sp->plan, s->arena);
    if ((st = s->be->compile(sp->plan, &s->opts, &sp->prog)) != ITSCAM_OK) return st;
    /* its working memory moves into the workspace (a grown one moves every program) */
    size_t ws = s->be->workspace_bytes(sp->prog);
    if (ws > s->workspace_bytes) return grow_shared(s, 0, ws);
    it_relocation r = { .old_arena = s->arena, .new_arena = s->arena, .arena_bytes = s->arena_bytes,
                        .new_workspace = s->workspace };
    s->be->rebind(sp->prog, &r);
    s->last_prog = NULL;
    return ITSCAM_OK;
}

itscam_status it_session_prepare(itscam_session *s, const int64_t dims[4]) {
    it_session_plan *victim = &s->plans[0];
    for (int i = 0; i < IT_SESSION_PLANS; i++) {
        it_session_plan *sp = &s->plans[i];
        if (sp->plan && !memcmp(sp->dims, dims, sizeof sp->dims)) {
            sp->last_used = ++s->tick;
            s->cur = sp;
            return ITSCAM_OK;
        }
        if (!sp->plan || (victim->plan && sp->last_used < victim->last_used)) victim = sp;
    }
    drop_plan(s, victim);
    s->cur = NULL;
    const it_graph *g = s->m->g;
    if (g->n_inputs != 1)
        return it_err(ITSCAM_ERR_UNSUPPORTED, "%s: models with %d inputs are not supported for detection", g->path, g->n_inputs);
    it_tensor in = { .dtype = IT_F32, .ndim = 4 };
    memcpy(in.dims, dims, sizeof(int64_t) * 4);
    itscam_status st = make_plan(s, &in, victim);
    if (st != ITSCAM_OK) {
        drop_plan(s, victim);
        return st;
    }
    memcpy(victim->dims, dims, sizeof victim->dims);
    victim->last_used = ++s->tick;
    s->cur = victim;
    return ITSCAM_OK;
}

float *it_session_input(itscam_session *s) {
    return s->cur ? s->cur->plan->t[s->m->g->inputs[0]].data : NULL;
}

/* The current plan on the fallback backend: its own plan (a backend may rebind a plan's
 * buffers), compiled on first need, fed with a copy of the primary plan's input. */
static itscam_status run_fallback(itscam_session *s) {
    it_session_plan *sp = s->cur;
    itscam_status st;
    if (!sp->fplan) {
        it_tensor in = { .dtype = IT_F32, .ndim = 4 };
        memcpy(in.dims, sp->dims, sizeof(int64_t) * 4);
        if ((st = it_plan_create(s->m->g, &in, 1, &sp->fplan)) != ITSCAM_OK) return st;
        if ((st = s->fb->compile(sp->fplan, &s->fb_opts, &sp->fprog)) != ITSCAM_OK) {
            it_plan_free(sp->fplan);
            sp->fplan = NULL;
            sp->fprog = NULL;
            return st;
        }
    }
    const it_tensor *a = &sp->plan->t[s->m->g->inputs[0]];
    const it_tensor *b = &sp->fplan->t[s->m->g->inputs[0]];
    memcpy(b->data, a->data, a->nbytes);
    s->cur_fb = 1;
    it_breaker_fallback(s->br);
    return s->fb->run(sp->fprog);
}

/* Run the current primary program, first restoring what it keeps in the shared memory
 * when another program ran there since. */
static itscam_status run_primary(itscam_session *s) {
    if (s->last_prog != s->cur->prog) {
        if (s->be->resume && shares_memory(s->be)) s->be->resume(s->cur->prog);
        s->last_prog = s->cur->prog;
    }
    return s->be->run(s->cur->prog);
}

itscam_status it_session_exec(itscam_session *s) {
    if (!s->cur) return it_err(ITSCAM_ERR_INVALID_ARG, "session not prepared");
    s->cur_fb = 0;
    if (!s->br) return run_primary(s);
    if (!s->fb || it_breaker_allow(s->br)) {
        int oom = 0;
        itscam_status st;
        if (it_fault_should_fail(&oom)) {
            st = ITSCAM_ERR_BACKEND;
        } else {
            st = run_primary(s);
            if (st != ITSCAM_OK && !s->emulated && s->be->last_error_is_oom) oom = s->be->last_error_is_oom();
        }
        if (st == ITSCAM_OK) {
            it_breaker_success(s->br);
            return ITSCAM_OK;
        }
        it_breaker_failure(s->br, oom);
        if (!s->fb) return st;
        it_log(ITSCAM_LOG_DEBUG, "%s; this run goes to the %s backend", itscam_last_error(), s->fb->name);
    }
    return run_fallback(s);
}

const it_tensor *it_session_output(itscam_session *s, int i) {
    if (!s->cur || i < 0 || i >= s->m->g->n_outputs) return NULL;
    const it_plan *p = s->cur_fb && s->cur->fplan ? s->cur->fplan : s->cur->plan;
    return &p->t[s->m->g->outputs[i]];
}

const char *itscam_session_backend(const itscam_session *s) {
    if (!s) return "";
    return s->cur_fb ? s->fb->name : s->name;
}

itscam_status itscam_session_run(itscam_session *s, const float *input, const int64_t dims[4], const float **out,
                                 int64_t out_dims[8], int *out_ndim) {
    if (!s || !input || !dims || !out) return it_err(ITSCAM_ERR_INVALID_ARG, "itscam_session_run: NULL argument");
    for (int k = 0; k < 4; k++)
        if (dims[k] <= 0 || dims[k] > (1 << 20)) return it_err(ITSCAM_ERR_SHAPE, "itscam_session_run: bad input dimension %d", k);
    itscam_status st = it_session_prepare(s, dims);
    if (st != ITSCAM_OK) return st;
    const it_tensor *it = &s->cur->plan->t[s->m->g->inputs[0]];
    memcpy(it->data, input, it->nbytes);
    s->cur_fb = 0;
    if ((st = it_session_exec(s)) != ITSCAM_OK) return st;
    const it_tensor *o = it_session_output(s, 0);
    if (o->dtype != IT_F32) return it_err(ITSCAM_ERR_UNSUPPORTED, "output is %s, not float32", it_dtype_name(o->dtype));
    *out = o->data;
    if (out_ndim) *out_ndim = o->ndim;
    if (out_dims)
        for (int k = 0; k < o->ndim; k++) out_dims[k] = o->dims[k];
    return ITSCAM_OK;
}
