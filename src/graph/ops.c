/* The operator table and helpers shared by shape functions and kernels. */
#include "graph/ops_impl.h"

#include <string.h>

#define OP(str, ID, lower, minop, scr, view) \
    { .name = str, .id = IT_OP_##ID, .min_opset = minop, .shape = it_shape_##lower, .ref = it_ref_##lower, .scratch = scr, .is_view = view }

/* Sorted by id; min_opset is the lowest opset whose semantics the kernels implement. */
static const it_op_def op_table[IT_OP_COUNT] = {
    [IT_OP_CONV] = OP("Conv", CONV, conv, 1, it_scratch_conv, 0),
    [IT_OP_SIGMOID] = OP("Sigmoid", SIGMOID, sigmoid, 6, NULL, 0),
    [IT_OP_MUL] = OP("Mul", MUL, mul, 7, NULL, 0),
    [IT_OP_ADD] = OP("Add", ADD, add, 7, NULL, 0),
    [IT_OP_SUB] = OP("Sub", SUB, sub, 7, NULL, 0),
    [IT_OP_DIV] = OP("Div", DIV, div, 7, NULL, 0),
    [IT_OP_CONCAT] = OP("Concat", CONCAT, concat, 4, NULL, 0),
    [IT_OP_SPLIT] = OP("Split", SPLIT, split, 2, NULL, 0),
    [IT_OP_SLICE] = OP("Slice", SLICE, slice, 1, NULL, 0),
    [IT_OP_RESHAPE] = OP("Reshape", RESHAPE, reshape, 5, NULL, 1),
    [IT_OP_TRANSPOSE] = OP("Transpose", TRANSPOSE, transpose, 1, NULL, 0),
    [IT_OP_MAXPOOL] = OP("MaxPool", MAXPOOL, maxpool, 1, NULL, 0),
    [IT_OP_RESIZE] = OP("Resize", RESIZE, resize, 10, NULL, 0),
    [IT_OP_MATMUL] = OP("MatMul", MATMUL, matmul, 1, NULL, 0),
    [IT_OP_SOFTMAX] = OP("Softmax", SOFTMAX, softmax, 1, NULL, 0),
    [IT_OP_SHAPE] = OP("Shape", SHAPE, shape, 1, NULL, 0),
    [IT_OP_GATHER] = OP("Gather", GATHER, gather, 1, NULL, 0),
    [IT_OP_UNSQUEEZE] = OP("Unsqueeze", UNSQUEEZE, unsqueeze, 1, NULL, 1),
    [IT_OP_SQUEEZE] = OP("Squeeze", SQUEEZE, squeeze, 1, NULL, 1),
    [IT_OP_CONSTANT] = OP("Constant", CONSTANT, constant, 1, NULL, 0),
    [IT_OP_CONSTANTOFSHAPE] = OP("ConstantOfShape", CONSTANTOFSHAPE, constantofshape, 9, NULL, 0),
    [IT_OP_CAST] = OP("Cast", CAST, cast, 6, NULL, 0),
    [IT_OP_IDENTITY] = OP("Identity", IDENTITY, identity, 1, NULL, 1),
    [IT_OP_DYNAMICQUANTIZELINEAR] = OP("DynamicQuantizeLinear", DYNAMICQUANTIZELINEAR, dynamicquantizelinear, 11, NULL, 0),
    [IT_OP_CONVINTEGER] = OP("ConvInteger", CONVINTEGER, convinteger, 10, it_scratch_convinteger, 0),
    [IT_OP_MATMULINTEGER] = OP("MatMulInteger", MATMULINTEGER, matmulinteger, 10, NULL, 0),
    [IT_OP_QUANTIZELINEAR] = OP("QuantizeLinear", QUANTIZELINEAR, quantizelinear, 10, NULL, 0),
    [IT_OP_DEQUANTIZELINEAR] = OP("DequantizeLinear", DEQUANTIZELINEAR, dequantizelinear, 10, NULL, 0),
};

const it_op_def *it_op_get(it_op_id id) {
    if (id <= IT_OP_UNKNOWN || id >= IT_OP_COUNT) return NULL;
    return &op_table[id];
}

const it_op_def *it_op_lookup(const char *op_type, const char *domain) {
    if (!op_type) return NULL;
    if (domain && *domain && strcmp(domain, "ai.onnx") != 0) return NULL;
    for (int i = 1; i < IT_OP_COUNT; i++)
        if (op_table[i].name && !strcmp(op_table[i].name, op_type)) return &op_table[i];
    return NULL;
}

size_t it_dtype_size(int dtype) {
    switch (dtype) {
    case IT_F32: case IT_I32: case IT_U32: return 4;
    case IT_U8: case IT_I8: case IT_BOOL: return 1;
    case IT_U16: case IT_I16: case IT_F16: case IT_BF16: return 2;
    case IT_I64: case IT_F64: case IT_U64: return 8;
    default: return 0;
    }
}

const char *it_dtype_name(int dtype) {
    switch (dtype) {
    case IT_F32: return "float32"; case IT_U8: return "uint8"; case IT_I8: return "int8";
    case IT_U16: return "uint16"; case IT_I16: return "int16"; case IT_I32: return "int32";
    case IT_I64: return "int64"; case IT_STRING: return "string"; case IT_BOOL: return "bool";
    case IT_F16: return "float16"; case IT_F64: return "float64"; case IT_U32: return "uint32";
    case IT_U64: return "uint64"; case IT_BF16: return "bfloat16"; default: return "undefined";
    }
}

int64_t it_tensor_numel(const it_tensor *t) {
    if (t->ndim < 0) return -1;
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) {
        if (t->dims[i] < 0) return -1;
        n *= t->dims[i];
    }
    return n;
}

void it_set_shape(it_tensor *t, int dtype, int ndim, const int64_t *dims) {
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->dims[i] = dims[i];
    int64_t n = it_tensor_numel(t);
    t->nbytes = n < 0 ? 0 : (size_t)n * it_dtype_size(dtype);
}

const char *it_node_label(const it_node *n) {
    return n->name && *n->name ? n->name : n->op_type;
}

itscam_status it_broadcast_shape(const it_tensor *a, const it_tensor *b, it_tensor *out) {
    int nd = IT_MAX(a->ndim, b->ndim);
    int64_t dims[IT_MAX_DIMS];
    for (int i = 0; i < nd; i++) {
        int ia = i - (nd - a->ndim), ib = i - (nd - b->ndim);
        int64_t da = ia >= 0 ? a->dims[ia] : 1, db = ib >= 0 ? b->dims[ib] : 1;
        if (da == db || db == 1) dims[i] = da;
        else if (da == 1) dims[i] = db;
        else return it_err(ITSCAM_ERR_SHAPE, "cannot broadcast dimension %d: %lld vs %lld", i,
                           (long long)da, (long long)db);
    }
    it_set_shape(out, a->dtype, nd, dims);
    return ITSCAM_OK;
}

int64_t it_tensor_get_int(const it_tensor *t, int64_t i) {
    switch (t->dtype) {
    case IT_I64: return ((const int64_t *)t->data)[i];
    case IT_I32: return ((const int32_t *)t->data)[i];
    case IT_U8: return ((const uint8_t *)t->data)[i];
    case IT_I8: return ((const int8_t *)t->data)[i];
    case IT_BOOL: return ((const uint8_t *)t->data)[i];
    case IT_F32: return (int64_t)((const float *)t->data)[i];
    case IT_F64: return (int64_t)((const double *)t->data)[i];
    default: return 0;
    }
}

double it_tensor_get_f(const it_tensor *t, int64_t i) {
    switch (t->dtype) {
    case IT_F32: return ((const float *)t->data)[i];
    case IT_F64: return ((const double *)t->data)[i];
    default: return (double)it_tensor_get_int(t, i);
    }
}
