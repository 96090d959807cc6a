/* Geometry shared by the float and the integer operators (Conv/ConvInteger/MaxPool windows,
 * MatMul/MatMulInteger batching): defined in ops_nn.c, used by ops_quant.c as well. */
#ifndef ITSCAM_OPS_NN_H
#define ITSCAM_OPS_NN_H

#include "graph/ops_impl.h"

/* Always two spatial axes: a 1-D operator is normalised to H = 1 with a 1-wide window,
 * so that the kernels have a single 2-D code path. */
typedef struct it_window {
    int nsp;                  /* spatial rank of the node (1 or 2) */
    int64_t in[2], k[2], s[2], d[2], p0[2], p1[2], out[2];
} it_window;

typedef struct it_conv_geom {
    it_window win;
    int64_t n, c, m, group;   /* batch, input channels, output channels, groups */
} it_conv_geom;

/* Fill the window from the node's attributes for spatial input sizes in[] and kernel
 * k[] (both nsp long). ceil_mode only matters for pooling. */
itscam_status it_window_init(const it_node *node, it_window *w, int nsp, const int64_t *in,
                             const int64_t *k, int ceil_mode);
/* Conv/ConvInteger geometry from X [N,C,...] and W [M,C/group,...]. */
itscam_status it_conv_geom_init(const it_node *node, const it_tensor *x, const it_tensor *w,
                                it_conv_geom *g);
/* 1x1 window, stride 1, no padding: the input already is the im2col matrix. */
int it_conv_is_pointwise(const it_conv_geom *g);

/* numpy matmul: A [...,M,K] (or [K]) times B [...,K,N] (or [K]), batch dims broadcast. */
typedef struct it_matmul_geom {
    int64_t m, k, n;
    int64_t batch;                 /* number of output matrices */
    int nb;                        /* batch rank */
    int64_t bdims[IT_MAX_DIMS];    /* output batch dims */
    int64_t astride[IT_MAX_DIMS];  /* in matrices; 0 where A is broadcast */
    int64_t bstride[IT_MAX_DIMS];
    int ndim;                      /* output shape */
    int64_t dims[IT_MAX_DIMS];
} it_matmul_geom;
itscam_status it_matmul_geom_init(const it_node *node, const it_tensor *a, const it_tensor *b,
                                  it_matmul_geom *g);
/* Matrix indices into A and B for output matrix i. */
void it_matmul_batch(const it_matmul_geom *g, int64_t i, int64_t *ai, int64_t *bi);

/* it_err with the "node 'name' (OpType): " prefix. */
itscam_status it_node_fail(const it_node *n, itscam_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
