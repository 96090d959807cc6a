/* Private declarations shared by the operator files (ops_basic.c, ops_nn.c, ops_quant.c).
 * Every operator X has it_shape_X and it_ref_X; some have it_scratch_X. */
#ifndef ITSCAM_OPS_IMPL_H
#define ITSCAM_OPS_IMPL_H

#include "graph/plan.h"

#define IT_DECL_OP(x)                                    \
    itscam_status it_shape_##x(const it_kernel_args *a); \
    itscam_status it_ref_##x(const it_kernel_args *a);

/* ops_basic.c */
IT_DECL_OP(sigmoid) IT_DECL_OP(mul) IT_DECL_OP(add) IT_DECL_OP(sub) IT_DECL_OP(div)
IT_DECL_OP(concat) IT_DECL_OP(split) IT_DECL_OP(slice) IT_DECL_OP(reshape)
IT_DECL_OP(transpose) IT_DECL_OP(softmax) IT_DECL_OP(shape) IT_DECL_OP(gather)
IT_DECL_OP(unsqueeze) IT_DECL_OP(squeeze) IT_DECL_OP(constant) IT_DECL_OP(constantofshape)
IT_DECL_OP(cast) IT_DECL_OP(identity)
/* ops_nn.c */
IT_DECL_OP(conv) IT_DECL_OP(maxpool) IT_DECL_OP(resize) IT_DECL_OP(matmul)
size_t it_scratch_conv(const it_kernel_args *a);
/* ops_quant.c */
IT_DECL_OP(dynamicquantizelinear) IT_DECL_OP(convinteger) IT_DECL_OP(matmulinteger)
IT_DECL_OP(quantizelinear) IT_DECL_OP(dequantizelinear)
size_t it_scratch_convinteger(const it_kernel_args *a);

/* Set an output's shape (dtype, ndim, dims); nbytes is derived. */
void it_set_shape(it_tensor *t, int dtype, int ndim, const int64_t *dims);
/* Name of the node for messages: its name, else its op type. */
const char *it_node_label(const it_node *n);

#endif
