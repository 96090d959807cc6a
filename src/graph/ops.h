/* The operator table: for each supported ONNX operator, how to infer its output shapes
 * and how to compute it in plain C (the `ref` kernels, the oracle every backend is
 * checked against). Backends look operators up by id and may replace the kernel. */
#ifndef ITSCAM_OPS_H
#define ITSCAM_OPS_H

#include "graph/graph.h"

/* Operator ids: one per supported ONNX op type. Numbers are internal. */
typedef enum it_op_id {
    IT_OP_UNKNOWN = 0,
    IT_OP_CONV, IT_OP_SIGMOID, IT_OP_MUL, IT_OP_ADD, IT_OP_SUB, IT_OP_DIV, IT_OP_CONCAT,
    IT_OP_SPLIT, IT_OP_SLICE, IT_OP_RESHAPE, IT_OP_TRANSPOSE, IT_OP_MAXPOOL, IT_OP_RESIZE,
    IT_OP_MATMUL, IT_OP_SOFTMAX, IT_OP_SHAPE, IT_OP_GATHER, IT_OP_UNSQUEEZE, IT_OP_SQUEEZE,
    IT_OP_CONSTANT, IT_OP_CONSTANTOFSHAPE, IT_OP_CAST, IT_OP_IDENTITY,
    IT_OP_DYNAMICQUANTIZELINEAR, IT_OP_CONVINTEGER, IT_OP_MATMULINTEGER,
    IT_OP_QUANTIZELINEAR, IT_OP_DEQUANTIZELINEAR,
    IT_OP_COUNT
} it_op_id;

/* Everything a kernel sees. in[i] is NULL for an omitted optional input. Output
 * tensors arrive with dtype, dims and data (sized by the shape function) filled in.
 * `scratch` is scratch_bytes() of per-run temporary space, NULL when 0. */
typedef struct it_kernel_args {
    const it_node *node;
    int64_t opset;
    int n_in, n_out;
    const it_tensor *const *in;
    it_tensor *const *out;
    void *scratch;
    int activation;       /* IT_ACT_* epilogue fused into Conv by the planner (plan.h) */
} it_kernel_args;

/* Infer output dtype/ndim/dims from the inputs. Inputs whose values are known at plan
 * time (constants, folded values) have data != NULL; shape functions that need values
 * (Reshape's shape, Slice's starts) fail with ITSCAM_ERR_UNSUPPORTED when they are not.
 * Errors carry a message naming the node. */
typedef itscam_status (*it_shape_fn)(const it_kernel_args *a);
typedef itscam_status (*it_kernel_fn)(const it_kernel_args *a);
typedef size_t (*it_scratch_fn)(const it_kernel_args *a);

typedef struct it_op_def {
    const char *name;          /* ONNX op_type */
    it_op_id id;
    int min_opset;             /* lowest opset of the default domain we accept */
    it_shape_fn shape;
    it_kernel_fn ref;          /* the reference kernel */
    it_scratch_fn scratch;     /* optional: scratch bytes the ref kernel needs */
    int is_view;               /* output may alias input 0 (Reshape/Squeeze/Identity...) */
} it_op_def;

const it_op_def *it_op_lookup(const char *op_type, const char *domain);  /* NULL if unknown */

/* IEEE half <-> single by hand (Cast, and GPU backends converting weights): round to
 * nearest even, overflow to infinity, NaN kept quiet. */
float it_half_to_float(uint16_t h);
uint16_t it_float_to_half(float f);
const it_op_def *it_op_get(it_op_id id);

/* Helpers shared by shape functions and kernels. */
itscam_status it_broadcast_shape(const it_tensor *a, const it_tensor *b, it_tensor *out);
/* Read an integer tensor (int64 or int32) element i. */
int64_t it_tensor_get_int(const it_tensor *t, int64_t i);
double it_tensor_get_f(const it_tensor *t, int64_t i);

#endif
