/* The cuda backend. Without a GPU: a session that insists on it fails cleanly with
 * ITSCAM_ERR_NOT_FOUND and a message, and so do the backend's own entry points; then the
 * test reports itself skipped (77). With a GPU: the shared models' raw outputs against
 * ONNX Runtime's in fp32 (1e-4) and fp16 (2e-3) at batch 1, 8 and 32, repeated runs
 * (CUDA graph replay) bit-identical, two sessions sharing one copy of the weights, and the
 * letterbox and head-decoding kernels against their CPU counterparts. */
#include "check_data.h"
#include "runtime/model.h"

#include <math.h>

#ifdef ITSCAM_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#include "vision/letterbox.h"
#endif

static int compiled_in(void) {
    for (const char *const *b = itscam_backends(); *b; b++)
        if (!strcmp(*b, "cuda")) return 1;
    return 0;
}

#ifdef ITSCAM_HAVE_CUDA

static itscam_session *cuda_session(const itscam_model *m, const char *precision) {
    itscam_session_params sp = itscam_session_default_params();
    sp.backend = "cuda";
    sp.precision = precision;
    sp.no_fallback = 1;   /* the GPU or an error, never the cpu backend behind our back */
    itscam_session *s = NULL;
    CHECK_OK(itscam_session_create(m, &sp, &s));
    return s;
}

/* ---- without a GPU ------------------------------------------------------------------------ */

static void check_no_gpu(void) {
    const it_backend *be = it_backend_find("cuda");
    CHECK(be != NULL);
    if (!be) return;
    CHECK(be->available && !be->available(NULL, 0));
    CHECK(be->supports && be->supports(IT_PREC_FP32) && be->supports(IT_PREC_FP16) && !be->supports(IT_PREC_INT8) &&
          !be->supports(IT_PREC_BF16));
    char buf[256];
    CHECK(it_cuda_describe(buf, sizeof buf) == ITSCAM_ERR_NOT_FOUND);
    size_t used = 1, fr = 1, tot = 1;
    CHECK(it_cuda_mem_info(&used, &fr, &tot) == ITSCAM_ERR_NOT_FOUND);
    CHECK(used == 0 && fr == 0 && tot == 0);
    CHECK(it_cuda_letterbox_batch(NULL, 0, 640, 640, 0, NULL, NULL, 0) == cudaSuccess);
    CHECK(it_cuda_decode_boxes(NULL, 0, 1, 80, 8400, 0.25f, NULL, NULL, NULL, 0, NULL, 0) == cudaErrorInvalidValue);

    char mp[1024];
    if (!shared_path(mp, sizeof mp, "models/yolo11n-320.onnx")) {
        printf("no-GPU checks: %s/models/yolo11n-320.onnx is absent, the session checks are left out\n", shared_dir());
        return;
    }
    itscam_model *m = NULL;
    CHECK_OK(itscam_model_load(mp, &m));
    if (!m) return;
    /* a session that must run on the GPU fails, and says why */
    itscam_session_params sp = itscam_session_default_params();
    sp.backend = "cuda";
    sp.no_fallback = 1;
    itscam_session *s = NULL;
    itscam_status st = itscam_session_create(m, &sp, &s);
    CHECKF(st == ITSCAM_ERR_NOT_FOUND, "status %d: %s", (int)st, itscam_last_error());
    CHECK(s == NULL);
    CHECKF(strstr(itscam_last_error(), "cuda") != NULL, "message: %s", itscam_last_error());
    printf("no GPU: session on cuda: %s\n", itscam_last_error());
    itscam_session_free(s);

    /* the backend itself, handed a plan anyway, fails the same way without crashing */
    it_tensor in = { .dtype = IT_F32, .ndim = 4, .dims = { 1, 3, 320, 320 } };
    it_plan *plan = NULL;
    CHECK_OK(it_plan_create(m->g, &in, 1, &plan));
    if (plan) {
        it_backend_opts opts = { .precision = IT_PREC_FP32, .weights = m->weights };
        void *prog = (void *)1;
        st = be->compile(plan, &opts, &prog);
        CHECKF(st == ITSCAM_ERR_NOT_FOUND, "compile: status %d: %s", (int)st, itscam_last_error());
        CHECK(prog == NULL);
        CHECK(strstr(itscam_last_error(), "cuda") != NULL);
        CHECK(!it_cuda_last_error_is_oom());
        opts.precision = IT_PREC_INT8;
        CHECK(be->compile(plan, &opts, &prog) == ITSCAM_ERR_UNSUPPORTED);
        be->destroy(NULL);
        it_plan_free(plan);
    }
    itscam_model_free(m);
}

/* ---- with a GPU ----------------------------------------------------------------------------- */

typedef struct model_case {
    const char *model;
    const char *inputs[2], *outputs[2];   /* images used round robin over the batch */
    int n_images, size, anchors;
} model_case;

static const model_case models[] = {
    { "models/yolo11n.onnx",
      { "reference/raw/bus-640.input.f32", "reference/raw/zidane-640.input.f32" },
      { "reference/raw/bus-640.yolo11n.output.f32", "reference/raw/zidane-640.yolo11n.output.f32" }, 2, 640, 8400 },
    { "models/yolo11n-320.onnx",
      { "reference/raw/bus-320.input.f32", NULL },
      { "reference/raw/bus-320.yolo11n-320.output.f32", NULL }, 1, 320, 2100 },
};

static const struct {
    const char *name;
    double tol;
} precisions[] = { { "fp32", 1e-4 }, { "fp16", 2e-3 } };

static void check_outputs(const model_case *mc) {
    char mp[1024];
    if (!shared_path(mp, sizeof mp, mc->model)) SKIP("%s/%s is absent", shared_dir(), mc->model);
    size_t nin = (size_t)3 * mc->size * mc->size, nout = (size_t)84 * mc->anchors;
    float *in[2] = { NULL, NULL }, *ref[2] = { NULL, NULL };
    for (int k = 0; k < mc->n_images; k++) {
        in[k] = read_f32(mc->inputs[k], nin);
        ref[k] = read_f32(mc->outputs[k], nout);
        if (!in[k] || !ref[k]) SKIP("reference tensors for %s are absent", mc->model);
    }
    enum { MAX_BATCH = 32 };
    float *batch_in = it_malloc(nin * MAX_BATCH * sizeof(float));
    float *first = it_malloc(nout * MAX_BATCH * sizeof(float));
    itscam_model *m = NULL;
    CHECK_OK(itscam_model_load(mp, &m));
    if (!m || !batch_in || !first) goto out;
    for (int b = 0; b < MAX_BATCH; b++) memcpy(batch_in + (size_t)b * nin, in[b % mc->n_images], nin * sizeof(float));
    for (size_t pi = 0; pi < sizeof precisions / sizeof *precisions; pi++) {
        itscam_session *s = cuda_session(m, precisions[pi].name);
        if (!s) continue;
        static const int batches[] = { 1, 8, 32 };
        for (size_t bi = 0; bi < sizeof batches / sizeof *batches; bi++) {
            int n = batches[bi];
            int64_t dims[4] = { n, 3, mc->size, mc->size }, od[8];
            int ond = 0;
            const float *out = NULL;
            CHECK_OK(itscam_session_run(s, batch_in, dims, &out, od, &ond));
            if (!out) continue;
            CHECK(ond == 3 && od[0] == n && od[1] == 84 && od[2] == mc->anchors);
            double worst = 0;
            for (int b = 0; b < n; b++) worst = fmax(worst, rel_l2(out + (size_t)b * nout, ref[b % mc->n_images], nout));
            int host = 0;
            const it_plan *plan = s->cur ? s->cur->plan : NULL;
            for (int i = 0; plan && i < plan->n_steps; i++) host += !it_cuda_step_native(s->cur->prog, i);
            printf("cuda %s %-26s batch %2d: worst rel L2 %.3g (tol %.0e), %d of %d steps on the host\n",
                   precisions[pi].name, mc->model, n, worst, precisions[pi].tol, host, plan ? plan->n_steps : 0);
            CHECKF(worst <= precisions[pi].tol, "%s %s batch %d: %g", precisions[pi].name, mc->model, n, worst);
            CHECKF(host == 0, "%s: %d steps ran on the host", mc->model, host);
            /* later runs replay a CUDA graph: the same bits every time */
            memcpy(first, out, nout * (size_t)n * sizeof(float));
            for (int r = 0; r < 3; r++) {
                CHECK_OK(itscam_session_run(s, batch_in, dims, &out, od, &ond));
                if (out) CHECKF(!memcmp(first, out, nout * (size_t)n * sizeof(float)), "run %d differs", r + 2);
            }
        }
        itscam_session_free(s);
    }
out:
    itscam_model_free(m);
    it_free(batch_in);
    it_free(first);
    for (int k = 0; k < 2; k++) {
        it_free(in[k]);
        it_free(ref[k]);
    }
}

/* Two sessions on one model hold one device copy of the weights; the last one out frees
 * everything. */
static void check_shared_weights(void) {
    const model_case *mc = &models[1];
    char mp[1024];
    if (!shared_path(mp, sizeof mp, mc->model)) return;
    size_t nin = (size_t)3 * mc->size * mc->size, nout = (size_t)84 * mc->anchors;
    float *in = read_f32(mc->inputs[0], nin), *ref = read_f32(mc->outputs[0], nout);
    itscam_model *m = NULL;
    CHECK_OK(itscam_model_load(mp, &m));
    if (m && in && ref) {
        size_t weights = 0, u0 = 0, u1 = 0, u2 = 0, u3 = 0;
        for (int i = 0; i < m->g->n_nodes; i++) {
            const it_node *nd = &m->g->nodes[i];
            if (nd->op != IT_OP_CONV) continue;
            for (int k = 1; k < nd->n_in && k < 3; k++)
                if (nd->in[k] >= 0 && m->g->values[nd->in[k]].kind == IT_VAL_CONST)
                    weights += m->g->values[nd->in[k]].t.nbytes;
        }
        int64_t dims[4] = { 1, 3, mc->size, mc->size }, od[8];
        int ond;
        const float *out = NULL;
        CHECK_OK(it_cuda_mem_info(&u0, NULL, NULL));
        itscam_session *a = cuda_session(m, "fp32");
        if (a) CHECK_OK(itscam_session_run(a, in, dims, &out, od, &ond));
        CHECK_OK(it_cuda_mem_info(&u1, NULL, NULL));
        itscam_session *b = cuda_session(m, "fp32");
        if (b) CHECK_OK(itscam_session_run(b, in, dims, &out, od, &ond));
        CHECK_OK(it_cuda_mem_info(&u2, NULL, NULL));
        printf("device memory: first session %zu bytes, second %zu (weights %zu)\n", u1 - u0, u2 - u1, weights);
        CHECKF(u1 - u0 >= weights && (u1 - u0) - (u2 - u1) >= weights, "the second session copied the weights");
        itscam_session_free(a);
        out = NULL;
        if (b) CHECK_OK(itscam_session_run(b, in, dims, &out, od, &ond));
        if (out) CHECK(rel_l2(out, ref, nout) <= 1e-4);
        itscam_session_free(b);
        CHECK_OK(it_cuda_mem_info(&u3, NULL, NULL));
        CHECKF(u3 == u0, "%zu bytes still held after both sessions", u3 - u0);
    }
    itscam_model_free(m);
    it_free(in);
    it_free(ref);
}

/* The letterbox kernel against it_letterbox_to_tensor, bit for bit, on mixed sizes in one
 * launch; the decoding kernel against a host scan of a real head. */
static void check_pre_post(void) {
    static const struct {
        int w, h, rgb;
    } sizes[] = { { 37, 23, 0 }, { 1280, 720, 0 }, { 640, 640, 1 }, { 300, 100, 1 }, { 17, 900, 0 } };
    enum { NF = sizeof sizes / sizeof *sizes, DW = 640, DH = 640 };
    uint8_t *host[NF] = { 0 }, *dev[NF] = { 0 };
    it_cuda_frame frames[NF];
    it_cuda_frame *dframes = NULL;
    it_cuda_letterbox_info *dinfo = NULL, info[NF];
    float *dout = NULL, *got = it_malloc(sizeof(float) * NF * 3 * DW * DH), *want = it_malloc(sizeof(float) * 3 * DW * DH);
    int ok = got && want;
    uint32_t seed = 12345;
    for (int f = 0; f < NF && ok; f++) {
        size_t bytes = (size_t)sizes[f].w * 3 * sizes[f].h;
        host[f] = it_malloc(bytes);
        ok = host[f] && cudaMalloc((void **)&dev[f], bytes) == cudaSuccess;
        for (size_t k = 0; ok && k < bytes; k++) {
            seed = seed * 1664525u + 1013904223u;
            host[f][k] = (uint8_t)(seed >> 24);
        }
        ok = ok && cudaMemcpy(dev[f], host[f], bytes, cudaMemcpyHostToDevice) == cudaSuccess;
        frames[f] = (it_cuda_frame){ dev[f], sizes[f].w, sizes[f].h, sizes[f].w * 3, sizes[f].rgb };
    }
    ok = ok && cudaMalloc((void **)&dframes, sizeof frames) == cudaSuccess &&
         cudaMalloc((void **)&dinfo, sizeof info) == cudaSuccess &&
         cudaMalloc((void **)&dout, sizeof(float) * NF * 3 * DW * DH) == cudaSuccess &&
         cudaMemcpy(dframes, frames, sizeof frames, cudaMemcpyHostToDevice) == cudaSuccess;
    CHECK(ok);
    if (ok) {
        CHECK(it_cuda_letterbox_batch(dframes, NF, DW, DH, 0, dout, dinfo, 0) == cudaSuccess);
        CHECK(cudaDeviceSynchronize() == cudaSuccess);
        CHECK(cudaMemcpy(got, dout, sizeof(float) * NF * 3 * DW * DH, cudaMemcpyDeviceToHost) == cudaSuccess);
        CHECK(cudaMemcpy(info, dinfo, sizeof info, cudaMemcpyDeviceToHost) == cudaSuccess);
        for (int f = 0; f < NF; f++) {
            it_letterbox lb;
            size_t sb = it_letterbox_scratch_bytes(sizes[f].w, sizes[f].h, DW, DH);
            uint8_t *scratch = it_malloc(sb ? sb : 1);
            CHECK_OK(it_letterbox_to_tensor(host[f], sizes[f].w, sizes[f].h, sizes[f].w * 3, sizes[f].rgb, DW, DH, want,
                                            scratch, sb, &lb));
            it_free(scratch);
            size_t diff = 0;
            for (size_t k = 0; k < (size_t)3 * DW * DH; k++) diff += got[(size_t)f * 3 * DW * DH + k] != want[k];
            printf("letterbox %4dx%-4d -> %dx%d: %zu values differ from the CPU\n", sizes[f].w, sizes[f].h, DW, DH, diff);
            CHECKF(diff == 0, "frame %d: %zu values differ", f, diff);
            CHECK(info[f].new_w == lb.new_w && info[f].new_h == lb.new_h && info[f].pad_x == lb.pad_x &&
                  info[f].pad_y == lb.pad_y && info[f].scale == lb.scale);
        }
    }
    for (int f = 0; f < NF; f++) {
        if (dev[f]) cudaFree(dev[f]);
        it_free(host[f]);
    }
    if (dframes) cudaFree(dframes);
    if (dinfo) cudaFree(dinfo);
    if (dout) cudaFree(dout);
    it_free(got);
    it_free(want);

    /* decoding: the reference head of bus.jpg */
    const int A = 8400, NC = 80, CAP = 8400;
    float *head = read_f32("reference/raw/bus-640.yolo11n.output.f32", (size_t)84 * A);
    if (!head) return;
    float *dhead = NULL, *dscore = NULL, *score = it_malloc(sizeof(float) * A);
    int *dcls = NULL, *dcount = NULL, *cls = it_malloc(sizeof(int) * A), count = 0;
    it_cuda_candidate *dcand = NULL, *cand = it_malloc(sizeof *cand * CAP);
    ok = score && cls && cand && cudaMalloc((void **)&dhead, sizeof(float) * 84 * A) == cudaSuccess &&
         cudaMalloc((void **)&dscore, sizeof(float) * A) == cudaSuccess &&
         cudaMalloc((void **)&dcls, sizeof(int) * A) == cudaSuccess && cudaMalloc((void **)&dcount, sizeof(int)) == cudaSuccess &&
         cudaMalloc((void **)&dcand, sizeof *dcand * CAP) == cudaSuccess &&
         cudaMemcpy(dhead, head, sizeof(float) * 84 * A, cudaMemcpyHostToDevice) == cudaSuccess;
    CHECK(ok);
    if (ok) {
        const float conf = 0.25f;
        CHECK(it_cuda_decode_boxes(dhead, 0, 1, NC, A, conf, dscore, dcls, dcand, CAP, dcount, 0) == cudaSuccess);
        CHECK(cudaMemcpy(score, dscore, sizeof(float) * A, cudaMemcpyDeviceToHost) == cudaSuccess);
        CHECK(cudaMemcpy(cls, dcls, sizeof(int) * A, cudaMemcpyDeviceToHost) == cudaSuccess);
        CHECK(cudaMemcpy(&count, dcount, sizeof(int), cudaMemcpyDeviceToHost) == cudaSuccess);
        CHECK(cudaMemcpy(cand, dcand, sizeof *cand * CAP, cudaMemcpyDeviceToHost) == cudaSuccess);
        int want_count = 0, bad = 0;
        for (int a = 0; a < A; a++) {
            float best = head[4 * A + a];
            int bc = 0;
            for (int c = 1; c < NC; c++)
                if (head[(4 + c) * A + a] > best) best = head[(4 + c) * A + a], bc = c;
            bad += best != score[a] || bc != cls[a];
            want_count += best > conf;
        }
        printf("decode: %d candidates above %.2f (host scan %d), %d anchors disagree\n", count, conf, want_count, bad);
        CHECK(bad == 0 && count == want_count);
        for (int k = 0; k < count && k < CAP; k++) {
            int a = cand[k].anchor;
            CHECK(a >= 0 && a < A && cand[k].score == score[a] && cand[k].cls == cls[a] &&
                  cand[k].x1 == head[a] - head[2 * A + a] / 2 && cand[k].y2 == head[A + a] + head[3 * A + a] / 2);
        }
    }
    if (dhead) cudaFree(dhead);
    if (dscore) cudaFree(dscore);
    if (dcls) cudaFree(dcls);
    if (dcount) cudaFree(dcount);
    if (dcand) cudaFree(dcand);
    it_free(head);
    it_free(score);
    it_free(cls);
    it_free(cand);
}

#endif /* ITSCAM_HAVE_CUDA */

int main(void) {
    if (!compiled_in()) SKIP("the cuda backend is not compiled in (nvcc or cuDNN absent at build time)");
#ifdef ITSCAM_HAVE_CUDA
    const it_backend *be = it_backend_find("cuda");
    if (be && be->available && !be->available(NULL, 0)) {
        check_no_gpu();
        if (check_done("test_cuda (no GPU)")) return 1;
        SKIP("no usable GPU: the GPU checks were skipped (the no-GPU checks passed)");
    }
    char desc[256];
    if (it_cuda_describe(desc, sizeof desc) == ITSCAM_OK) printf("device: %s\n", desc);
    for (size_t k = 0; k < sizeof models / sizeof *models; k++) check_outputs(&models[k]);
    check_shared_weights();
    check_pre_post();
#endif
    return check_done("test_cuda");
}
