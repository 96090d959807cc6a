/* Static QDQ int8 (QuantizeLinear/DequantizeLinear around Conv and MatMul, per-tensor and
 * per-channel): a model built in memory with protobuf-c must give, on every backend, the
 * answer of the ONNX integer semantics computed here by hand. */
#include "check.h"
#include "runtime/model.h"
#include "onnx/onnx.pb-c.h"

#include <math.h>

#define C_IN 3
#define C_OUT 4
#define HW 5

static Onnx__TensorProto *tensor(const char *name, int dtype, int nd, const int64_t *dims, const void *raw, size_t n) {
    Onnx__TensorProto *t = calloc(1, sizeof *t);
    onnx__tensor_proto__init(t);
    t->name = (char *)name;
    t->has_data_type = 1;
    t->data_type = dtype;
    t->n_dims = (size_t)nd;
    t->dims = (int64_t *)dims;
    t->has_raw_data = 1;
    t->raw_data.data = (uint8_t *)raw;
    t->raw_data.len = n;
    return t;
}

static Onnx__NodeProto *node(const char *op, const char *name, char **in, int nin, char **out, int nout) {
    Onnx__NodeProto *n = calloc(1, sizeof *n);
    onnx__node_proto__init(n);
    n->op_type = (char *)op;
    n->name = (char *)name;
    n->n_input = (size_t)nin;
    n->input = in;
    n->n_output = (size_t)nout;
    n->output = out;
    return n;
}

static Onnx__ValueInfoProto *value_info(const char *name, int nd, const int64_t *dims) {
    Onnx__ValueInfoProto *v = calloc(1, sizeof *v);
    onnx__value_info_proto__init(v);
    v->name = (char *)name;
    Onnx__TypeProto *tp = calloc(1, sizeof *tp);
    onnx__type_proto__init(tp);
    Onnx__TypeProto__Tensor *tt = calloc(1, sizeof *tt);
    onnx__type_proto__tensor__init(tt);
    tt->has_elem_type = 1;
    tt->elem_type = 1;
    Onnx__TensorShapeProto *sh = calloc(1, sizeof *sh);
    onnx__tensor_shape_proto__init(sh);
    sh->n_dim = (size_t)nd;
    sh->dim = calloc((size_t)nd, sizeof *sh->dim);
    for (int i = 0; i < nd; i++) {
        sh->dim[i] = calloc(1, sizeof **sh->dim);
        onnx__tensor_shape_proto__dimension__init(sh->dim[i]);
        sh->dim[i]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
        sh->dim[i]->dim_value = dims[i];
    }
    tt->shape = sh;
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    v->type = tp;
    return v;
}

static float sat_round(float x, float lo, float hi) { return fminf(fmaxf(rintf(x), lo), hi); }

int main(void) {
    /* Weights: int8 per output channel (axis 0), activations: uint8 per tensor. */
    static float x[C_IN * HW * HW], bias[C_OUT], x_scale = 0.02f, w_scale[C_OUT] = { 0.01f, 0.02f, 0.005f, 0.03f };
    static int8_t w_q[C_OUT * C_IN * 9];
    static uint8_t x_zp = 128;
    static int8_t w_zp[C_OUT] = { 0, 0, 0, 0 };
    static float mm_w[HW * 2], mm_scale = 0.05f;
    static int8_t mm_wq[HW * 2];
    static int8_t mm_zp = 0;
    uint32_t r = 7;
#define RND() ((r = r * 1664525u + 1013904223u) >> 8) / 16777216.0f
    for (int i = 0; i < C_IN * HW * HW; i++) x[i] = RND() * 4 - 2;
    for (int i = 0; i < C_OUT * C_IN * 9; i++) w_q[i] = (int8_t)(RND() * 254 - 127);
    for (int i = 0; i < C_OUT; i++) bias[i] = RND() - 0.5f;
    for (int i = 0; i < HW * 2; i++) mm_wq[i] = (int8_t)(RND() * 200 - 100);

    /* Graph: x -Q-> -DQ-> Conv(DQ(w_q), bias, pad 1) -> y [1,4,5,5] -> MatMul(DQ(mm_wq)) [.., 5, 2] */
    int64_t xd[4] = { 1, C_IN, HW, HW }, wd[4] = { C_OUT, C_IN, 3, 3 }, cd[1] = { C_OUT }, md[2] = { HW, 2 };
    int64_t od[4] = { 1, C_OUT, HW, 2 };
    Onnx__TensorProto *inits[] = {
        tensor("x_scale", 1, 0, NULL, &x_scale, 4), tensor("x_zp", 2, 0, NULL, &x_zp, 1),
        tensor("w_q", 3, 4, wd, w_q, sizeof w_q), tensor("w_scale", 1, 1, cd, w_scale, sizeof w_scale),
        tensor("w_zp", 3, 1, cd, w_zp, sizeof w_zp), tensor("bias", 1, 1, cd, bias, sizeof bias),
        tensor("mm_wq", 3, 2, md, mm_wq, sizeof mm_wq), tensor("mm_scale", 1, 0, NULL, &mm_scale, 4),
        tensor("mm_zp", 3, 0, NULL, &mm_zp, 1),
    };
    char *q_in[] = { "x", "x_scale", "x_zp" }, *q_out[] = { "xq" };
    char *dq_in[] = { "xq", "x_scale", "x_zp" }, *dq_out[] = { "xf" };
    char *wdq_in[] = { "w_q", "w_scale", "w_zp" }, *wdq_out[] = { "wf" };
    char *conv_in[] = { "xf", "wf", "bias" }, *conv_out[] = { "y" };
    char *mdq_in[] = { "mm_wq", "mm_scale", "mm_zp" }, *mdq_out[] = { "mmf" };
    char *mm_in[] = { "y", "mmf" }, *mm_out[] = { "out" };
    Onnx__NodeProto *nodes[] = {
        node("QuantizeLinear", "q", q_in, 3, q_out, 1), node("DequantizeLinear", "dq", dq_in, 3, dq_out, 1),
        node("DequantizeLinear", "wdq", wdq_in, 3, wdq_out, 1), node("Conv", "conv", conv_in, 3, conv_out, 1),
        node("DequantizeLinear", "mdq", mdq_in, 3, mdq_out, 1), node("MatMul", "mm", mm_in, 2, mm_out, 1),
    };
    Onnx__AttributeProto pads, axis;
    onnx__attribute_proto__init(&pads);
    int64_t pv[4] = { 1, 1, 1, 1 };
    pads.name = "pads";
    pads.has_type = 1;
    pads.type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
    pads.n_ints = 4;
    pads.ints = pv;
    Onnx__AttributeProto *conv_attrs[] = { &pads };
    nodes[3]->n_attribute = 1;
    nodes[3]->attribute = conv_attrs;
    onnx__attribute_proto__init(&axis);
    axis.name = "axis";
    axis.has_type = 1;
    axis.type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
    axis.has_i = 1;
    axis.i = 0;
    Onnx__AttributeProto *wdq_attrs[] = { &axis };
    nodes[2]->n_attribute = 1;
    nodes[2]->attribute = wdq_attrs;

    Onnx__GraphProto graph;
    onnx__graph_proto__init(&graph);
    graph.name = "qdq";
    graph.n_node = sizeof nodes / sizeof *nodes;
    graph.node = nodes;
    graph.n_initializer = sizeof inits / sizeof *inits;
    graph.initializer = inits;
    Onnx__ValueInfoProto *gin[] = { value_info("x", 4, xd) }, *gout[] = { value_info("out", 4, od) };
    graph.n_input = 1;
    graph.input = gin;
    graph.n_output = 1;
    graph.output = gout;
    Onnx__OperatorSetIdProto opset;
    onnx__operator_set_id_proto__init(&opset);
    opset.domain = "";
    opset.has_version = 1;
    opset.version = 13;
    Onnx__OperatorSetIdProto *ops[] = { &opset };
    Onnx__ModelProto model;
    onnx__model_proto__init(&model);
    model.has_ir_version = 1;
    model.ir_version = 7;
    model.n_opset_import = 1;
    model.opset_import = ops;
    model.graph = &graph;
    size_t len = onnx__model_proto__get_packed_size(&model);
    uint8_t *buf = malloc(len);
    onnx__model_proto__pack(&model, buf);

    /* The expected answer, by the ONNX definitions. */
    static float xf[C_IN * HW * HW], y[C_OUT * HW * HW], expect[C_OUT * HW * 2];
    for (int i = 0; i < C_IN * HW * HW; i++)
        xf[i] = (sat_round(x[i] / x_scale + x_zp, 0, 255) - x_zp) * x_scale;
    for (int o = 0; o < C_OUT; o++)
        for (int i = 0; i < HW; i++)
            for (int j = 0; j < HW; j++) {
                double acc = bias[o];
                for (int c = 0; c < C_IN; c++)
                    for (int ki = 0; ki < 3; ki++)
                        for (int kj = 0; kj < 3; kj++) {
                            int ii = i + ki - 1, jj = j + kj - 1;
                            if (ii < 0 || jj < 0 || ii >= HW || jj >= HW) continue;
                            float w = (float)(w_q[((o * C_IN + c) * 3 + ki) * 3 + kj] - w_zp[o]) * w_scale[o];
                            acc += (double)xf[(c * HW + ii) * HW + jj] * w;
                        }
                y[(o * HW + i) * HW + j] = (float)acc;
            }
    for (int i = 0; i < HW * 2; i++) mm_w[i] = (float)(mm_wq[i] - mm_zp) * mm_scale;
    for (int o = 0; o < C_OUT; o++)
        for (int i = 0; i < HW; i++)
            for (int k = 0; k < 2; k++) {
                double acc = 0;
                for (int j = 0; j < HW; j++) acc += (double)y[(o * HW + i) * HW + j] * mm_w[j * 2 + k];
                expect[(o * HW + i) * 2 + k] = (float)acc;
            }

    itscam_model *m = NULL;
    CHECK_OK(itscam_model_load_buffer(buf, len, "qdq.onnx", &m));
    for (const char *const *b = itscam_backends(); m && *b; b++) {
        itscam_session_params sp = itscam_session_default_params();
        sp.backend = *b;
        itscam_session *s = NULL;
        CHECK_OK(itscam_session_create(m, &sp, &s));
        const float *out = NULL;
        int64_t dims[4] = { 1, C_IN, HW, HW }, odims[8];
        int ond = 0;
        if (s) CHECK_OK(itscam_session_run(s, x, dims, &out, odims, &ond));
        if (out) {
            double worst = 0;
            for (int i = 0; i < C_OUT * HW * 2; i++) worst = fmax(worst, fabs(out[i] - expect[i]) / (1 + fabs(expect[i])));
            printf("%s: QDQ Conv+MatMul worst relative error %.2g\n", *b, worst);
            CHECKF(worst < 1e-5, "%s: %g", *b, worst);
        }
        itscam_session_free(s);
    }
    CHECK(m && m->info.is_quantized);
    itscam_model_free(m);
    for (size_t i = 0; i < sizeof inits / sizeof *inits; i++) free(inits[i]);
    for (size_t i = 0; i < sizeof nodes / sizeof *nodes; i++) free(nodes[i]);
    for (int k = 0; k < 2; k++) {
        Onnx__ValueInfoProto *v = k ? gout[0] : gin[0];
        Onnx__TensorShapeProto *sh = v->type->tensor_type->shape;
        for (size_t i = 0; i < sh->n_dim; i++) free(sh->dim[i]);
        free(sh->dim);
        free(sh);
        free(v->type->tensor_type);
        free(v->type);
        free(v);
    }
    free(buf);
    return check_done("test_qdq");
}
