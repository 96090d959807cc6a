/* Operator geometry shared by the reference kernels and the backends, so that each piece
 * of arithmetic exists once: Conv/ConvInteger/MaxPool windows, MatMul/MatMulInteger
 * batching and Resize coordinates (ops_nn.c), Slice starts/steps (ops_basic.c). */
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

/* Resize: coordinate transformation and nearest rounding, as the spec names them. */
enum { IT_RESIZE_HALF_PIXEL, IT_RESIZE_ASYMMETRIC, IT_RESIZE_ALIGN_CORNERS, IT_RESIZE_PYTORCH_HALF_PIXEL,
       IT_RESIZE_TF_HALF_PIXEL, IT_RESIZE_TF_CROP_AND_RESIZE, IT_RESIZE_HALF_PIXEL_SYMMETRIC };
enum { IT_RESIZE_PREFER_FLOOR, IT_RESIZE_PREFER_CEIL, IT_RESIZE_FLOOR, IT_RESIZE_CEIL,
       IT_RESIZE_SIMPLE /* Resize-10: floor when upsampling, ceil when downsampling */ };

typedef struct it_resize_geom {
    int linear;                       /* else nearest */
    int ct, nm;                       /* IT_RESIZE_* coordinate mode and nearest rounding */
    float extrapolation;
    int rank;
    double scale[IT_MAX_DIMS];        /* per axis, 1 for axes not resized */
    double roi0[IT_MAX_DIMS], roi1[IT_MAX_DIMS];
    int64_t in[IT_MAX_DIMS], out[IT_MAX_DIMS];
} it_resize_geom;
/* Resolve the node's attributes and its constant scales or sizes (exactly one non-empty;
 * NULL for absent) into per-axis sizes and scales. Below opset 11, roi and sizes are
 * ignored. Fails with a message naming the node on anything unsupported (cubic, antialias,
 * non-constant scales). */
itscam_status it_resize_geom_init(const it_node *node, int opset, const it_tensor *x, const it_tensor *roi,
                                  const it_tensor *scales, const it_tensor *sizes, it_resize_geom *g);
/* Input coordinate of output coordinate x on axis d (unclamped). */
double it_resize_src_coord(const it_resize_geom *g, int d, double x);
/* The nearest input index to input coordinate x on axis d, clamped into the input. */
int64_t it_resize_nearest(const it_resize_geom *g, int d, double x);

/* Slice after the spec's clamping: per input axis the first index, the step (negative
 * walks backwards) and the output length. */
typedef struct it_slice_geom {
    int ndim;
    int64_t start[IT_MAX_DIMS], step[IT_MAX_DIMS], len[IT_MAX_DIMS];
} it_slice_geom;
/* Below opset 10 starts/ends/axes are attributes and the tensors are ignored; from 10 on
 * starts and ends are required constant int32/int64 inputs, axes and steps optional (NULL).
 * Fails with a message naming the node on a malformed slice (step 0, repeated axis). */
itscam_status it_slice_geom_init(const it_node *node, int opset, const it_tensor *x, const it_tensor *starts,
                                 const it_tensor *ends, const it_tensor *axes, const it_tensor *steps,
                                 it_slice_geom *g);

/* it_err with the "node 'name' (OpType): " prefix. */
itscam_status it_node_fail(const it_node *n, itscam_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
