/* Shape functions and reference kernels of the elementwise, data-movement and shape
 * operators (everything that is not convolution, pooling, resizing or quantisation). */
#include "graph/ops_impl.h"
#include "graph/ops_nn.h"

#include <math.h>
#include <string.h>

/* Every message names the node and its op, so that a failure in a 300-node graph can be
 * traced without a debugger. */
#define NODE_FAIL(n, st, fmt, ...) \
    it_err((st), "node '%s' (%s): " fmt, it_node_label(n), (n)->op_type, ##__VA_ARGS__)
#define FAIL(a, st, fmt, ...) NODE_FAIL((a)->node, st, fmt, ##__VA_ARGS__)

static const it_tensor *in_at(const it_kernel_args *a, int i) {
    return i < a->n_in ? a->in[i] : NULL;
}

static itscam_status need_io(const it_kernel_args *a, int min_in, int max_in, int min_out, int max_out) {
    if (a->n_in < min_in || a->n_in > max_in)
        return FAIL(a, ITSCAM_ERR_MODEL, "expects %d to %d inputs, has %d", min_in, max_in, a->n_in);
    for (int i = 0; i < min_in; i++)
        if (!a->in[i]) return FAIL(a, ITSCAM_ERR_MODEL, "required input %d is missing", i);
    if (a->n_out < min_out || a->n_out > max_out)
        return FAIL(a, ITSCAM_ERR_MODEL, "expects %d to %d outputs, has %d", min_out, max_out, a->n_out);
    return ITSCAM_OK;
}

/* Data-movement ops accept any fixed-size element type; strings and unknown types are
 * a feature we do not have, not a broken model. */
static itscam_status need_sized(const it_kernel_args *a, const it_tensor *t, const char *what) {
    if (it_dtype_size(t->dtype) == 0)
        return FAIL(a, ITSCAM_ERR_UNSUPPORTED, "%s has unsupported element type %s", what,
                    it_dtype_name(t->dtype));
    return ITSCAM_OK;
}

static int is_int_type(int dt) {
    return dt == IT_I64 || dt == IT_I32 || dt == IT_I16 || dt == IT_I8 || dt == IT_U8 ||
           dt == IT_U16 || dt == IT_U32 || dt == IT_U64;
}

/* Normalise a possibly negative axis into [0, rank). */
static itscam_status norm_axis(const it_node *n, int64_t axis, int rank, int *out) {
    if (axis < -rank || axis >= rank)
        return NODE_FAIL(n, ITSCAM_ERR_MODEL, "axis %lld out of range for rank %d", (long long)axis, rank);
    *out = (int)(axis < 0 ? axis + rank : axis);
    return ITSCAM_OK;
}

/* Read the values of an integer input that decides the output shape. */
static itscam_status const_ints(const it_node *node, const it_tensor *t, const char *what,
                                int64_t *v, int max, int *n) {
    if (!t->data)
        return NODE_FAIL(node, ITSCAM_ERR_UNSUPPORTED, "input '%s' must be constant", what);
    if (t->dtype != IT_I64 && t->dtype != IT_I32)
        return NODE_FAIL(node, ITSCAM_ERR_MODEL, "input '%s' must be int64 or int32, is %s", what,
                    it_dtype_name(t->dtype));
    int64_t ne = it_tensor_numel(t);
    if (t->ndim > 1 || ne < 0 || ne > max)
        return NODE_FAIL(node, ITSCAM_ERR_MODEL, "input '%s' must be a 1-D tensor of at most %d values", what, max);
    for (int64_t i = 0; i < ne; i++) v[i] = it_tensor_get_int(t, i);
    *n = (int)ne;
    return ITSCAM_OK;
}

static int64_t prod(const int64_t *d, int from, int to) {
    int64_t n = 1;
    for (int i = from; i < to; i++) n *= d[i];
    return n;
}

/* Copy whole tensors for view-like ops; the planner may alias output and input. */
static void copy_whole(it_tensor *o, const it_tensor *i) {
    if (o->data != i->data && o->nbytes) memmove(o->data, i->data, o->nbytes);
}

/* Gather elements of `src` with per-dimension byte strides (possibly negative or zero)
 * into contiguous `dst`. The common engine of Transpose and Slice. */
static void strided_copy(uint8_t *dst, const uint8_t *src, int nd, const int64_t *dims,
                         const int64_t *sstride, size_t es) {
    int64_t n = prod(dims, 0, nd);
    if (n <= 0) return;
    if (nd == 0) {
        memcpy(dst, src, es);
        return;
    }
    int64_t idx[IT_MAX_DIMS] = { 0 };
    int64_t inner = dims[nd - 1], is = sstride[nd - 1];
    for (int64_t r = 0, rows = n / inner; r < rows; r++) {
        int64_t off = 0;
        for (int k = 0; k < nd - 1; k++) off += idx[k] * sstride[k];
        const uint8_t *s = src + off;
        if (is == (int64_t)es) {
            memcpy(dst, s, (size_t)inner * es);
        } else {
            switch (es) {
            case 1: for (int64_t j = 0; j < inner; j++) dst[j] = s[j * is]; break;
            case 2: for (int64_t j = 0; j < inner; j++) memcpy(dst + j * 2, s + j * is, 2); break;
            case 4: for (int64_t j = 0; j < inner; j++) memcpy(dst + j * 4, s + j * is, 4); break;
            case 8: for (int64_t j = 0; j < inner; j++) memcpy(dst + j * 8, s + j * is, 8); break;
            default: for (int64_t j = 0; j < inner; j++) memcpy(dst + j * es, s + j * is, es); break;
            }
        }
        dst += (size_t)inner * es;
        for (int k = nd - 2; k >= 0; k--) {
            if (++idx[k] < dims[k]) break;
            idx[k] = 0;
        }
    }
}

/* ---------------------------------------------------------------------------------
 * Sigmoid
 * --------------------------------------------------------------------------------- */

itscam_status it_shape_sigmoid(const it_kernel_args *a) {
    itscam_status st = need_io(a, 1, 1, 1, 1);
    if (st) return st;
    const it_tensor *x = a->in[0];
    if (x->dtype != IT_F32 && x->dtype != IT_F64)
        return FAIL(a, ITSCAM_ERR_UNSUPPORTED, "element type %s is not supported", it_dtype_name(x->dtype));
    it_set_shape(a->out[0], x->dtype, x->ndim, x->dims);
    return ITSCAM_OK;
}

/* Split by sign so that exp never overflows: both branches stay in (0, 1]. */
static double sigmoid_d(double x) {
    if (x >= 0) return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}

itscam_status it_ref_sigmoid(const it_kernel_args *a) {
    const it_tensor *x = a->in[0];
    it_tensor *y = a->out[0];
    int64_t n = it_tensor_numel(x);
    if (x->dtype == IT_F32) {
        const float *s = x->data;
        float *d = y->data;
        for (int64_t i = 0; i < n; i++) {
            float v = s[i];
            d[i] = v >= 0 ? 1.0f / (1.0f + expf(-v)) : expf(v) / (1.0f + expf(v));
        }
    } else {
        const double *s = x->data;
        double *d = y->data;
        for (int64_t i = 0; i < n; i++) d[i] = sigmoid_d(s[i]);
    }
    return ITSCAM_OK;
}

/* ---------------------------------------------------------------------------------
 * Add, Sub, Mul, Div with numpy broadcasting
 * --------------------------------------------------------------------------------- */

enum { BIN_ADD, BIN_SUB, BIN_MUL, BIN_DIV };

static int bin_supported(int dt) {
    return dt == IT_F32 || dt == IT_F64 || is_int_type(dt);
}

static itscam_status shape_binary(const it_kernel_args *a) {
    itscam_status st = need_io(a, 2, 2, 1, 1);
    if (st) return st;
    const it_tensor *x = a->in[0], *y = a->in[1];
    if (x->dtype != y->dtype)
        return FAIL(a, ITSCAM_ERR_MODEL, "input types differ: %s and %s", it_dtype_name(x->dtype),
                    it_dtype_name(y->dtype));
    if (!bin_supported(x->dtype))
        return FAIL(a, ITSCAM_ERR_UNSUPPORTED, "element type %s is not supported", it_dtype_name(x->dtype));
    st = it_broadcast_shape(x, y, a->out[0]);
    if (st) return it_err_prefix(st, "node '%s' (%s)", it_node_label(a->node), a->node->op_type);
    return ITSCAM_OK;
}

/* One row of the broadcast loop: n outputs, inputs advancing by sx / sy elements (0 or
 * 1). Integers compute in uint64_t so that overflow wraps like ONNX Runtime instead of
 * being undefined; integer division truncates toward zero (C, ONNX Runtime), and
 * division by zero, undefined in ONNX, gives 0 rather than a trap. */
#define DEF_BIN_FLOAT(NAME, T)                                                                 \
    static void NAME(int op, void *o_, const void *x_, const void *y_, int64_t n, int64_t sx,  \
                     int64_t sy) {                                                             \
        T *o = o_;                                                                             \
        const T *x = x_, *y = y_;                                                              \
        switch (op) {                                                                          \
        case BIN_ADD: for (int64_t i = 0; i < n; i++) o[i] = x[i * sx] + y[i * sy]; break;     \
        case BIN_SUB: for (int64_t i = 0; i < n; i++) o[i] = x[i * sx] - y[i * sy]; break;     \
        case BIN_MUL: for (int64_t i = 0; i < n; i++) o[i] = x[i * sx] * y[i * sy]; break;     \
        default: for (int64_t i = 0; i < n; i++) o[i] = x[i * sx] / y[i * sy]; break;          \
        }                                                                                      \
    }
#define DEF_BIN_INT(NAME, T, SIGNED)                                                           \
    static void NAME(int op, void *o_, const void *x_, const void *y_, int64_t n, int64_t sx,  \
                     int64_t sy) {                                                             \
        T *o = o_;                                                                             \
        const T *x = x_, *y = y_;                                                              \
        for (int64_t i = 0; i < n; i++) {                                                      \
            T p = x[i * sx], q = y[i * sy];                                                    \
            switch (op) {                                                                      \
            case BIN_ADD: o[i] = (T)((uint64_t)p + (uint64_t)q); break;                        \
            case BIN_SUB: o[i] = (T)((uint64_t)p - (uint64_t)q); break;                        \
            case BIN_MUL: o[i] = (T)((uint64_t)p * (uint64_t)q); break;                        \
            default:                                                                           \
                if (q == 0) o[i] = 0;                                                          \
                else if (SIGNED && q == (T)-1) o[i] = (T)(0 - (uint64_t)p);                    \
                else o[i] = (T)(p / q);                                                        \
                break;                                                                         \
            }                                                                                  \
        }                                                                                      \
    }
DEF_BIN_FLOAT(bin_f32, float)
DEF_BIN_FLOAT(bin_f64, double)
DEF_BIN_INT(bin_i8, int8_t, 1)
DEF_BIN_INT(bin_u8, uint8_t, 0)
DEF_BIN_INT(bin_i16, int16_t, 1)
DEF_BIN_INT(bin_u16, uint16_t, 0)
DEF_BIN_INT(bin_i32, int32_t, 1)
DEF_BIN_INT(bin_u32, uint32_t, 0)
DEF_BIN_INT(bin_i64, int64_t, 1)
DEF_BIN_INT(bin_u64, uint64_t, 0)

typedef void (*bin_row_fn)(int, void *, const void *, const void *, int64_t, int64_t, int64_t);

static bin_row_fn bin_row_for(int dt) {
    switch (dt) {
    case IT_F32: return bin_f32; case IT_F64: return bin_f64;
    case IT_I8: return bin_i8; case IT_U8: return bin_u8;
    case IT_I16: return bin_i16; case IT_U16: return bin_u16;
    case IT_I32: return bin_i32; case IT_U32: return bin_u32;
    case IT_I64: return bin_i64; case IT_U64: return bin_u64;
    default: return NULL;
    }
}

/* Broadcast strides (0 where an input dimension is stretched) over the output shape,
 * then merge dimensions that stay contiguous for both inputs, so that the common
 * cases (same shape, scalar, per-channel) run as a few long rows. */
static itscam_status ref_binary(const it_kernel_args *a, int op) {
    const it_tensor *x = a->in[0], *y = a->in[1];
    it_tensor *o = a->out[0];
    bin_row_fn row = bin_row_for(o->dtype);
    if (!row) return FAIL(a, ITSCAM_ERR_UNSUPPORTED, "element type %s is not supported", it_dtype_name(o->dtype));
    int nd = o->ndim;
    int64_t n = it_tensor_numel(o);
    if (n == 0) return ITSCAM_OK;
    int64_t dims[IT_MAX_DIMS], sx[IT_MAX_DIMS], sy[IT_MAX_DIMS];
    int64_t ax = 1, ay = 1;
    int m = 0;
    for (int i = nd - 1; i >= 0; i--) {
        int ix = i - (nd - x->ndim), iy = i - (nd - y->ndim);
        int64_t dx = ix >= 0 ? x->dims[ix] : 1, dy = iy >= 0 ? y->dims[iy] : 1, d = o->dims[i];
        if (d == 1) continue;
        int64_t tx = dx == 1 ? 0 : ax, ty = dy == 1 ? 0 : ay;
        ax *= dx;
        ay *= dy;
        /* dims are collected innermost first; merge into the previous when contiguous */
        if (m > 0 && tx == sx[m - 1] * dims[m - 1] && ty == sy[m - 1] * dims[m - 1]) {
            dims[m - 1] *= d;
            continue;
        }
        dims[m] = d, sx[m] = tx, sy[m] = ty;
        m++;
    }
    size_t es = it_dtype_size(o->dtype);
    const uint8_t *xb = x->data, *yb = y->data;
    uint8_t *ob = o->data;
    if (m == 0) {
        row(op, ob, xb, yb, 1, 0, 0);
        return ITSCAM_OK;
    }
    /* dims[0] is the innermost now */
    int64_t inner = dims[0], idx[IT_MAX_DIMS] = { 0 };
    for (int64_t r = 0, rows = n / inner; r < rows; r++) {
        int64_t ox = 0, oy = 0;
        for (int k = 1; k < m; k++) ox += idx[k] * sx[k], oy += idx[k] * sy[k];
        row(op, ob + (size_t)(r * inner) * es, xb + (size_t)ox * es, yb + (size_t)oy * es, inner, sx[0], sy[0]);
        for (int k = 1; k < m; k++) {
            if (++idx[k] < dims[k]) break;
            idx[k] = 0;
        }
    }
    return ITSCAM_OK;
}

itscam_status it_shape_add(const it_kernel_args *a) { return shape_binary(a); }
itscam_status it_shape_sub(const it_kernel_args *a) { return shape_binary(a); }
itscam_status it_shape_mul(const it_kernel_args *a) { return shape_binary(a); }
itscam_status it_shape_div(const it_kernel_args *a) { return shape_binary(a); }
itscam_status it_ref_add(const it_kernel_args *a) { return ref_binary(a, BIN_ADD); }
itscam_status it_ref_sub(const it_kernel_args *a) { return ref_binary(a, BIN_SUB); }
itscam_status it_ref_mul(const it_kernel_args *a) { return ref_binary(a, BIN_MUL); }
itscam_status it_ref_div(const it_kernel_args *a) { return ref_binary(a, BIN_DIV); }

/* ---------------------------------------------------------------------------------
 * Concat
 * --------------------------------------------------------------------------------- */

itscam_status it_shape_concat(const it_kernel_args *a) {
    itscam_status st = need_io(a, 1, 1 << 20, 1, 1);
    if (st) return st;
    const it_tensor *x0 = a->in[0];
    if ((st = need_sized(a, x0, "input 0"))) return st;
    const it_attr *at = it_attr_find(a->node, "axis");
    if (!at) return FAIL(a, ITSCAM_ERR_MODEL, "attribute 'axis' is required");
    if (x0->ndim == 0) return FAIL(a, ITSCAM_ERR_SHAPE, "cannot concatenate scalars");
    int axis = 0;
    if ((st = norm_axis(a->node, at->i, x0->ndim, &axis))) return st;
    int64_t dims[IT_MAX_DIMS];
    memcpy(dims, x0->dims, sizeof dims);
    dims[axis] = 0;
    for (int i = 0; i < a->n_in; i++) {
        const it_tensor *x = a->in[i];
        if (!x) return FAIL(a, ITSCAM_ERR_MODEL, "input %d is missing", i);
        if (x->dtype != x0->dtype || x->ndim != x0->ndim)
            return FAIL(a, ITSCAM_ERR_SHAPE, "input %d (%s, rank %d) does not match input 0 (%s, rank %d)", i,
                        it_dtype_name(x->dtype), x->ndim, it_dtype_name(x0->dtype), x0->ndim);
        for (int k = 0; k < x->ndim; k++)
            if (k != axis && x->dims[k] != x0->dims[k])
                return FAIL(a, ITSCAM_ERR_SHAPE, "input %d dimension %d is %lld, input 0 has %lld", i, k,
                            (long long)x->dims[k], (long long)x0->dims[k]);
        dims[axis] += x->dims[axis];
    }
    it_set_shape(a->out[0], x0->dtype, x0->ndim, dims);
    return ITSCAM_OK;
}

itscam_status it_ref_concat(const it_kernel_args *a) {
    it_tensor *o = a->out[0];
    int axis = 0;
    itscam_status st = norm_axis(a->node, it_attr_int(a->node, "axis", 0), o->ndim, &axis);
    if (st) return st;
    size_t es = it_dtype_size(o->dtype);
    int64_t outer = prod(o->dims, 0, axis);
    size_t orow = (size_t)prod(o->dims, axis, o->ndim) * es, pos = 0;
    for (int i = 0; i < a->n_in; i++) {
        const it_tensor *x = a->in[i];
        size_t row = (size_t)prod(x->dims, axis, x->ndim) * es;
        for (int64_t r = 0; r < outer; r++)
            memcpy((uint8_t *)o->data + (size_t)r * orow + pos, (const uint8_t *)x->data + (size_t)r * row, row);
        pos += row;
    }
    return ITSCAM_OK;
}

/* ---------------------------------------------------------------------------------
 * Split
 * --------------------------------------------------------------------------------- */

/* Output sizes along the axis: from the attribute (opset < 13), the input (>= 13), or
 * equal parts (the last smaller when opset 18's num_outputs does not divide). */
static itscam_status split_sizes(const it_kernel_args *a, int64_t *sizes, int *axis_out) {
    const it_tensor *x = a->in[0];
    int axis = 0;
    itscam_status st = norm_axis(a->node, it_attr_int(a->node, "axis", 0), x->ndim, &axis);
    if (st) return st;
    int64_t d = x->dims[axis];
    int n = 0, have = 0;
    if (a->opset < 13) {
        const int64_t *v;
        n = it_attr_ints(a->node, "split", &v);
        if (n > 0) {
            if (n != a->n_out)
                return FAIL(a, ITSCAM_ERR_MODEL, "'split' has %d values for %d outputs", n, a->n_out);
            memcpy(sizes, v, sizeof(int64_t) * (size_t)n);
            have = 1;
        }
    } else if (in_at(a, 1)) {
        if (a->n_out > 4096) return FAIL(a, ITSCAM_ERR_UNSUPPORTED, "too many outputs");
        if ((st = const_ints(a->node, a->in[1], "split", sizes, a->n_out, &n))) return st;
        if (n != a->n_out)
            return FAIL(a, ITSCAM_ERR_MODEL, "'split' has %d values for %d outputs", n, a->n_out);
        have = 1;
    }
    if (have) {
        int64_t sum = 0;
        for (int i = 0; i < n; i++) {
            if (sizes[i] < 0) return FAIL(a, ITSCAM_ERR_MODEL, "negative split size %lld", (long long)sizes[i]);
            sum += sizes[i];
        }
        if (sum != d)
            return FAIL(a, ITSCAM_ERR_SHAPE, "split sizes add up to %lld, axis %d has %lld", (long long)sum,
                        axis, (long long)d);
    } else {
        int parts = a->n_out;
        const it_attr *no = it_attr_find(a->node, "num_outputs");
        if (no && no->i != a->n_out)
            return FAIL(a, ITSCAM_ERR_MODEL, "num_outputs %lld but %d outputs", (long long)no->i, a->n_out);
        int64_t chunk = (d + parts - 1) / parts;
        if (chunk * (parts - 1) > d)
            return FAIL(a, ITSCAM_ERR_SHAPE, "cannot split %lld into %d parts", (long long)d, parts);
        if (!no && d % parts)
            return FAIL(a, ITSCAM_ERR_SHAPE, "%lld does not split into %d equal parts", (long long)d, parts);
        for (int i = 0; i < parts; i++) sizes[i] = i < parts - 1 ? chunk : d - chunk * (parts - 1);
    }
    *axis_out = axis;
    return ITSCAM_OK;
}

itscam_status it_shape_split(const it_kernel_args *a) {
    itscam_status st = need_io(a, 1, 2, 1, 4096);
    if (st) return st;
    const it_tensor *x = a->in[0];
    if ((st = need_sized(a, x, "input"))) return st;
    int64_t sizes[4096];
    int axis = 0;
    if ((st = split_sizes(a, sizes, &axis))) return st;
    for (int i = 0; i < a->n_out; i++) {
        int64_t dims[IT_MAX_DIMS];
        memcpy(dims, x->dims, sizeof dims);
        dims[axis] = sizes[i];
        it_set_shape(a->out[i], x->dtype, x->ndim, dims);
    }
    return ITSCAM_OK;
}

itscam_status it_ref_split(const it_kernel_args *a) {
    const it_tensor *x = a->in[0];
    int axis = 0;
    itscam_status st = norm_axis(a->node, it_attr_int(a->node, "axis", 0), x->ndim, &axis);
    if (st) return st;
    size_t es = it_dtype_size(x->dtype);
    int64_t outer = prod(x->dims, 0, axis);
    size_t irow = (size_t)prod(x->dims, axis, x->ndim) * es, pos = 0;
    for (int i = 0; i < a->n_out; i++) {
        it_tensor *o = a->out[i];
        size_t row = (size_t)prod(o->dims, axis, o->ndim) * es;
        for (int64_t r = 0; r < outer; r++)
            memcpy((uint8_t *)o->data + (size_t)r * row, (const uint8_t *)x->data + (size_t)r * irow + pos, row);
        pos += row;
    }
    return ITSCAM_OK;
}

/* ---------------------------------------------------------------------------------
 * Slice
 * --------------------------------------------------------------------------------- */

/* Read a list of at most IT_MAX_DIMS values from an attribute; -1 when it is absent. */
static itscam_status attr_list(const it_node *node, const char *name, int64_t *v, int *n) {
    const int64_t *av;
    if (!it_attr_find(node, name)) {
        *n = -1;
        return ITSCAM_OK;
    }
    int na = it_attr_ints(node, name, &av);
    if (na > IT_MAX_DIMS) return NODE_FAIL(node, ITSCAM_ERR_MODEL, "too many %s", name);
    if (na) memcpy(v, av, sizeof(int64_t) * (size_t)na);
    *n = na;
    return ITSCAM_OK;
}

itscam_status it_slice_geom_init(const it_node *node, int opset, const it_tensor *x, const it_tensor *starts,
                                 const it_tensor *ends, const it_tensor *axes, const it_tensor *steps,
                                 it_slice_geom *g) {
    int r = g->ndim = x->ndim;
    int64_t st_[IT_MAX_DIMS], en[IT_MAX_DIMS], ax[IT_MAX_DIMS], sp[IT_MAX_DIMS];
    int ns, ne, na = -1, nsp = -1;
    itscam_status st;
    if (opset < 10) {
        if ((st = attr_list(node, "starts", st_, &ns)) || (st = attr_list(node, "ends", en, &ne)) ||
            (st = attr_list(node, "axes", ax, &na)))
            return st;
        ns = IT_MAX(ns, 0), ne = IT_MAX(ne, 0);   /* absent: an empty list */
    } else {
        if (!starts || !ends) return NODE_FAIL(node, ITSCAM_ERR_MODEL, "starts and ends are required");
        if ((st = const_ints(node, starts, "starts", st_, IT_MAX_DIMS, &ns))) return st;
        if ((st = const_ints(node, ends, "ends", en, IT_MAX_DIMS, &ne))) return st;
        if (axes && (st = const_ints(node, axes, "axes", ax, IT_MAX_DIMS, &na))) return st;
        if (steps && (st = const_ints(node, steps, "steps", sp, IT_MAX_DIMS, &nsp))) return st;
    }
    if (ns != ne) return NODE_FAIL(node, ITSCAM_ERR_MODEL, "%d starts but %d ends", ns, ne);
    if (na >= 0 && na != ns) return NODE_FAIL(node, ITSCAM_ERR_MODEL, "%d starts but %d axes", ns, na);
    if (nsp >= 0 && nsp != ns) return NODE_FAIL(node, ITSCAM_ERR_MODEL, "%d starts but %d steps", ns, nsp);
    for (int k = 0; k < r; k++) g->start[k] = 0, g->step[k] = 1, g->len[k] = x->dims[k];
    int seen[IT_MAX_DIMS] = { 0 };
    for (int i = 0; i < ns; i++) {
        int k = 0;
        if (na >= 0) {
            if ((st = norm_axis(node, ax[i], r, &k))) return st;
        } else {
            if (i >= r) return NODE_FAIL(node, ITSCAM_ERR_MODEL, "more starts than dimensions");
            k = i;
        }
        if (seen[k]++) return NODE_FAIL(node, ITSCAM_ERR_MODEL, "axis %d repeated", k);
        int64_t d = x->dims[k], s = nsp >= 0 ? sp[i] : 1, b = st_[i], e = en[i];
        if (s == 0) return NODE_FAIL(node, ITSCAM_ERR_MODEL, "step 0 on axis %d", k);
        if (b < 0) b += d;   /* INT64_MIN + d cannot overflow; INT64_MAX is clamped below */
        if (e < 0) e += d;
        int64_t span;        /* elements from start towards end, end excluded */
        if (s > 0) {
            b = b < 0 ? 0 : b > d ? d : b;
            e = e < 0 ? 0 : e > d ? d : e;
            span = e - b;
        } else {
            b = b < 0 ? 0 : b > d - 1 ? d - 1 : b;
            e = e < -1 ? -1 : e > d - 1 ? d - 1 : e;
            span = b - e;
        }
        /* ceil(span / |step|) without forming span + |step| - 1, which overflows for a
         * huge step; |INT64_MIN| only fits unsigned. */
        uint64_t mag = s > 0 ? (uint64_t)s : 0 - (uint64_t)s;
        g->len[k] = span > 0 ? (int64_t)((uint64_t)(span - 1) / mag) + 1 : 0;
        /* A step never taken is 1, so that callers may multiply it by a stride. */
        if (g->len[k] <= 1) s = 1;
        g->start[k] = b;
        g->step[k] = s;
    }
    return ITSCAM_OK;
}

/* The node's inputs: X, then (from opset 10) starts, ends, axes, steps. */
static itscam_status slice_setup(const it_kernel_args *a, it_slice_geom *g) {
    return it_slice_geom_init(a->node, a->opset, a->in[0], in_at(a, 1), in_at(a, 2), in_at(a, 3), in_at(a, 4), g);
}

itscam_status it_shape_slice(const it_kernel_args *a) {
    itscam_status st = need_io(a, 1, a->opset < 10 ? 1 : 5, 1, 1);
    if (st) return st;
    const it_tensor *x = a->in[0];
    if ((st = need_sized(a, x, "input"))) return st;
    it_slice_geom g;
    if ((st = slice_setup(a, &g))) return st;
    it_set_shape(a->out[0], x->dtype, x->ndim, g.len);
    return ITSCAM_OK;
}

itscam_status it_ref_slice(const it_kernel_args *a) {
    const it_tensor *x = a->in[0];
    it_tensor *o = a->out[0];
    int64_t stride[IT_MAX_DIMS];
    it_slice_geom g;
    itscam_status st = slice_setup(a, &g);
    if (st) return st;
    if (it_tensor_numel(o) == 0) return ITSCAM_OK;
    size_t es = it_dtype_size(x->dtype);
    int64_t off = 0, s = (int64_t)es;
    for (int k = x->ndim - 1; k >= 0; k--) {
        off += g.start[k] * s;
        stride[k] = g.step[k] * s;
        s *= x->dims[k];
    }
    strided_copy(o->data, (const uint8_t *)x->data + off, x->ndim, o->dims, stride, es);
    return ITSCAM_OK;
}

/* ---------------------------------------------------------------------------------
 * Reshape
 * --------------------------------------------------------------------------------- */

itscam_status it_shape_reshape(const it_kernel_args *a) {
    itscam_status st = need_io(a, 2, 2, 1, 1);
    if (st) return st;
    const it_tensor *x = a->in[0];
    if ((st = need_sized(a, x, "input"))) return st;
    int64_t dims[IT_MAX_DIMS];
    int n;
    if ((st = const_ints(a->node, a->in[1], "shape", dims, IT_MAX_DIMS, &n))) return st;
    int allowzero = (int)it_attr_int(a->node, "allowzero", 0);
    int infer = -1;
    int64_t known = 1;
    for (int i = 0; i < n; i++) {
        if (dims[i] == 0 && !allowzero) {
            if (i >= x->ndim) return FAIL(a, ITSCAM_ERR_SHAPE, "shape[%d] = 0 copies a dimension the input lacks", i);
            dims[i] = x->dims[i];
        }
        if (dims[i] == -1) {
            if (infer >= 0) return FAIL(a, ITSCAM_ERR_SHAPE, "more than one -1 in the shape");
            infer = i;
        } else if (dims[i] < 0) {
            return FAIL(a, ITSCAM_ERR_SHAPE, "invalid dimension %lld", (long long)dims[i]);
        } else {
            known *= dims[i];
        }
    }
    int64_t total = it_tensor_numel(x);
    if (infer >= 0) {
        if (known == 0 || total % known)
            return FAIL(a, ITSCAM_ERR_SHAPE, "cannot infer -1: %lld elements into blocks of %lld", (long long)total,
                        (long long)known);
        dims[infer] = total / known;
    } else if (known != total) {
        return FAIL(a, ITSCAM_ERR_SHAPE, "cannot reshape %lld elements into %lld", (long long)total, (long long)known);
    }
    it_set_shape(a->out[0], x->dtype, n, dims);
    return ITSCAM_OK;
}

itscam_status it_ref_reshape(const it_kernel_args *a) {
    copy_whole(a->out[0], a->in[0]);
    return ITSCAM_OK;
}

/* ---------------------------------------------------------------------------------
 * Transpose
 * --------------------------------------------------------------------------------- */

static itscam_status transpose_perm(const it_kernel_args *a, int r, int *perm) {
    const int64_t *v;
    int n = it_attr_ints(a->node, "perm", &v);
    if (n == 0) {
        for (int i = 0; i < r; i++) perm[i] = r - 1 - i;
        return ITSCAM_OK;
    }
    if (n != r) return FAIL(a, ITSCAM_ERR_MODEL, "perm has %d entries for rank %d", n, r);
    int seen[IT_MAX_DIMS] = { 0 };
    for (int i = 0; i < r; i++) {
        if (v[i] < 0 || v[i] >= r || seen[v[i]]++) return FAIL(a, ITSCAM_ERR_MODEL, "perm is not a permutation");
        perm[i] = (int)v[i];
    }
    return ITSCAM_OK;
}

itscam_status it_shape_transpose(const it_kernel_args *a) {
    itscam_status st = need_io(a, 1, 1, 1, 1);
    if (st) return st;
    const it_tensor *x = a->in[0];
    if ((st = need_sized(a, x, "input"))) return st;
    int perm[IT_MAX_DIMS];
    if ((st = transpose_perm(a, x->ndim, perm))) return st;
    int64_t dims[IT_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) dims[i] = x->dims[perm[i]];
    it_set_shape(a->out[0], x->dtype, x->ndim, dims);
    return ITSCAM_OK;
}

itscam_status it_ref_transpose(const it_kernel_args *a) {
    const it_tensor *x = a->in[0];
    it_tensor *o = a->out[0];
    int perm[IT_MAX_DIMS];
    itscam_status st = transpose_perm(a, x->ndim, perm);
    if (st) return st;
    size_t es = it_dtype_size(x->dtype);
    int64_t in_stride[IT_MAX_DIMS], stride[IT_MAX_DIMS], s = (int64_t)es;
    for (int k = x->ndim - 1; k >= 0; k--) in_stride[k] = s, s *= x->dims[k];
    for (int i = 0; i < x->ndim; i++) stride[i] = in_stride[perm[i]];
    strided_copy(o->data, x->data, x->ndim, o->dims, stride, es);
    return ITSCAM_OK;
}

/* ---------------------------------------------------------------------------------
 * Softmax
 * --------------------------------------------------------------------------------- */

/* Before opset 13 the input is flattened to 2-D at `axis` and each row normalised;
 * from 13 on only the axis is. Both are (outer, n, inner) blocks. */
static itscam_status softmax_blocks(const it_kernel_args *a, const it_tensor *x, int64_t *outer, int64_t *n,
                                    int64_t *inner) {
    int old = a->opset < 13;
    int axis = 0;
    if (x->ndim == 0) {
        *outer = *n = *inner = 1;
        return ITSCAM_OK;
    }
    itscam_status st = norm_axis(a->node, it_attr_int(a->node, "axis", old ? 1 : -1), x->ndim, &axis);
    if (st) return st;
    *outer = prod(x->dims, 0, axis);
    if (old) {
        *n = prod(x->dims, axis, x->ndim);
        *inner = 1;
    } else {
        *n = x->dims[axis];
        *inner = prod(x->dims, axis + 1, x->ndim);
    }
    return ITSCAM_OK;
}

itscam_status it_shape_softmax(const it_kernel_args *a) {
    itscam_status st = need_io(a, 1, 1, 1, 1);
    if (st) return st;
    const it_tensor *x = a->in[0];
    if (x->dtype != IT_F32 && x->dtype != IT_F64)
        return FAIL(a, ITSCAM_ERR_UNSUPPORTED, "element type %s is not supported", it_dtype_name(x->dtype));
    int64_t o, n, i;
    if ((st = softmax_blocks(a, x, &o, &n, &i))) return st;
    it_set_shape(a->out[0], x->dtype, x->ndim, x->dims);
    return ITSCAM_OK;
}

/* Subtract the maximum so that exp cannot overflow; accumulate in double. */
#define SOFTMAX_LOOP(T)                                                                \
    do {                                                                               \
        const T *s = x->data;                                                          \
        T *d = y->data;                                                                \
        for (int64_t b = 0; b < outer; b++)                                            \
            for (int64_t j = 0; j < inner; j++) {                                      \
                const T *p = s + b * n * inner + j;                                    \
                T *q = d + b * n * inner + j;                                          \
                double mx = -INFINITY, sum = 0;                                        \
                for (int64_t k = 0; k < n; k++) mx = p[k * inner] > mx ? p[k * inner] : mx; \
                for (int64_t k = 0; k < n; k++) sum += exp((double)p[k * inner] - mx); \
                for (int64_t k = 0; k < n; k++)                                        \
                    q[k * inner] = (T)(exp((double)p[k * inner] - mx) / sum);          \
            }                                                                          \
    } while (0)

itscam_status it_ref_softmax(const it_kernel_args *a) {
    const it_tensor *x = a->in[0];
    it_tensor *y = a->out[0];
    int64_t outer, n, inner;
    itscam_status st = softmax_blocks(a, x, &outer, &n, &inner);
    if (st) return st;
    if (x->dtype == IT_F32) SOFTMAX_LOOP(float);
    else SOFTMAX_LOOP(double);
    return ITSCAM_OK;
}

/* ---------------------------------------------------------------------------------
 * Shape
 * --------------------------------------------------------------------------------- */

static void shape_range(const it_kernel_args *a, int r, int64_t *b, int64_t *e) {
    int64_t s = 0, t = r;
    if (a->opset >= 15) {
        s = it_attr_int(a->node, "start", 0);
        t = it_attr_int(a->node, "end", r);
    }
    if (s < 0) s += r;
    if (t < 0) t += r;
    s = s < 0 ? 0 : s > r ? r : s;
    t = t < 0 ? 0 : t > r ? r : t;
    *b = s;
    *e = t > s ? t : s;
}

itscam_status it_shape_shape(const it_kernel_args *a) {
    itscam_status st = need_io(a, 1, 1, 1, 1);
    if (st) return st;
    int64_t b, e;
    shape_range(a, a->in[0]->ndim, &b, &e);
    int64_t n = e - b;
    it_set_shape(a->out[0], IT_I64, 1, &n);
    return ITSCAM_OK;
}

itscam_status it_ref_shape(const it_kernel_args *a) {
    const it_tensor *x = a->in[0];
    int64_t b, e, *d = a->out[0]->data;
    shape_range(a, x->ndim, &b, &e);
    for (int64_t i = b; i < e; i++) d[i - b] = x->dims[i];
    return ITSCAM_OK;
}

/* ---------------------------------------------------------------------------------
 * Gather
 * --------------------------------------------------------------------------------- */

itscam_status it_shape_gather(const it_kernel_args *a) {
    itscam_status st = need_io(a, 2, 2, 1, 1);
    if (st) return st;
    const it_tensor *x = a->in[0], *ix = a->in[1];
    if ((st = need_sized(a, x, "data"))) return st;
    if (ix->dtype != IT_I64 && ix->dtype != IT_I32)
        return FAIL(a, ITSCAM_ERR_MODEL, "indices must be int32 or int64, are %s", it_dtype_name(ix->dtype));
    if (x->ndim == 0) return FAIL(a, ITSCAM_ERR_SHAPE, "data must have rank >= 1");
    int axis = 0;
    if ((st = norm_axis(a->node, it_attr_int(a->node, "axis", 0), x->ndim, &axis))) return st;
    int r = x->ndim - 1 + ix->ndim;
    if (r > IT_MAX_DIMS) return FAIL(a, ITSCAM_ERR_UNSUPPORTED, "output rank %d exceeds %d", r, IT_MAX_DIMS);
    int64_t dims[IT_MAX_DIMS];
    int n = 0;
    for (int i = 0; i < axis; i++) dims[n++] = x->dims[i];
    for (int i = 0; i < ix->ndim; i++) dims[n++] = ix->dims[i];
    for (int i = axis + 1; i < x->ndim; i++) dims[n++] = x->dims[i];
    it_set_shape(a->out[0], x->dtype, n, dims);
    return ITSCAM_OK;
}

itscam_status it_ref_gather(const it_kernel_args *a) {
    const it_tensor *x = a->in[0], *ix = a->in[1];
    it_tensor *o = a->out[0];
    int axis = 0;
    itscam_status st = norm_axis(a->node, it_attr_int(a->node, "axis", 0), x->ndim, &axis);
    if (st) return st;
    size_t es = it_dtype_size(x->dtype);
    int64_t d = x->dims[axis], outer = prod(x->dims, 0, axis), ni = it_tensor_numel(ix);
    size_t row = (size_t)prod(x->dims, axis + 1, x->ndim) * es;
    uint8_t *dst = o->data;
    const uint8_t *src = x->data;
    for (int64_t b = 0; b < outer; b++)
        for (int64_t j = 0; j < ni; j++) {
            int64_t k = it_tensor_get_int(ix, j);
            if (k < 0) k += d;
            if (k < 0 || k >= d) /* the caller prefixes the node */
                return it_err(ITSCAM_ERR_SHAPE, "index %lld out of range [0, %lld)",
                            (long long)it_tensor_get_int(ix, j), (long long)d);
            memcpy(dst, src + ((size_t)(b * d + k)) * row, row);
            dst += row;
        }
    return ITSCAM_OK;
}

/* ---------------------------------------------------------------------------------
 * Unsqueeze, Squeeze
 * --------------------------------------------------------------------------------- */

/* Axes from the attribute (opset < 13) or the second input (>= 13); *n = -1 when
 * neither is given. */
static itscam_status get_axes(const it_kernel_args *a, int64_t *axes, int *n) {
    *n = -1;
    if (a->opset < 13) {
        if (it_attr_find(a->node, "axes")) {
            const int64_t *v;
            int k = it_attr_ints(a->node, "axes", &v);
            if (k > IT_MAX_DIMS) return FAIL(a, ITSCAM_ERR_MODEL, "too many axes");
            memcpy(axes, v, sizeof(int64_t) * (size_t)k);
            *n = k;
        }
        return ITSCAM_OK;
    }
    if (in_at(a, 1)) return const_ints(a->node, a->in[1], "axes", axes, IT_MAX_DIMS, n);
    return ITSCAM_OK;
}

itscam_status it_shape_unsqueeze(const it_kernel_args *a) {
    itscam_status st = need_io(a, 1, 2, 1, 1);
    if (st) return st;
    const it_tensor *x = a->in[0];
    if ((st = need_sized(a, x, "input"))) return st;
    int64_t axes[IT_MAX_DIMS];
    int n;
    if ((st = get_axes(a, axes, &n))) return st;
    if (n < 0) return FAIL(a, ITSCAM_ERR_MODEL, "axes are required");
    int r = x->ndim + n;
    if (r > IT_MAX_DIMS) return FAIL(a, ITSCAM_ERR_UNSUPPORTED, "output rank %d exceeds %d", r, IT_MAX_DIMS);
    int ins[IT_MAX_DIMS] = { 0 };
    for (int i = 0; i < n; i++) {
        int k = 0;
        if ((st = norm_axis(a->node, axes[i], r, &k))) return st;
        if (ins[k]++) return FAIL(a, ITSCAM_ERR_MODEL, "axis %d repeated", k);
    }
    int64_t dims[IT_MAX_DIMS];
    for (int i = 0, j = 0; i < r; i++) dims[i] = ins[i] ? 1 : x->dims[j++];
    it_set_shape(a->out[0], x->dtype, r, dims);
    return ITSCAM_OK;
}

itscam_status it_ref_unsqueeze(const it_kernel_args *a) {
    copy_whole(a->out[0], a->in[0]);
    return ITSCAM_OK;
}

itscam_status it_shape_squeeze(const it_kernel_args *a) {
    itscam_status st = need_io(a, 1, 2, 1, 1);
    if (st) return st;
    const it_tensor *x = a->in[0];
    if ((st = need_sized(a, x, "input"))) return st;
    int64_t axes[IT_MAX_DIMS];
    int n;
    if ((st = get_axes(a, axes, &n))) return st;
    int drop[IT_MAX_DIMS] = { 0 };
    if (n < 0) {
        for (int i = 0; i < x->ndim; i++) drop[i] = x->dims[i] == 1;
    } else {
        for (int i = 0; i < n; i++) {
            int k = 0;
            if ((st = norm_axis(a->node, axes[i], x->ndim, &k))) return st;
            if (x->dims[k] != 1)
                return FAIL(a, ITSCAM_ERR_SHAPE, "cannot squeeze axis %d of size %lld", k, (long long)x->dims[k]);
            drop[k] = 1;
        }
    }
    int64_t dims[IT_MAX_DIMS];
    int r = 0;
    for (int i = 0; i < x->ndim; i++)
        if (!drop[i]) dims[r++] = x->dims[i];
    it_set_shape(a->out[0], x->dtype, r, dims);
    return ITSCAM_OK;
}

itscam_status it_ref_squeeze(const it_kernel_args *a) {
    copy_whole(a->out[0], a->in[0]);
    return ITSCAM_OK;
}

/* ---------------------------------------------------------------------------------
 * Constant, ConstantOfShape
 * --------------------------------------------------------------------------------- */

/* The attribute holding the value, whichever of the spec's spellings is used. */
static itscam_status constant_value(const it_kernel_args *a, const it_attr **out) {
    static const char *const unsupported[] = { "sparse_value", "value_string", "value_strings" };
    for (int i = 0; i < 3; i++)
        if (it_attr_find(a->node, unsupported[i]))
            return FAIL(a, ITSCAM_ERR_UNSUPPORTED, "attribute '%s' is not supported", unsupported[i]);
    static const char *const names[] = { "value", "value_float", "value_floats", "value_int", "value_ints" };
    for (int i = 0; i < 5; i++) {
        const it_attr *at = it_attr_find(a->node, names[i]);
        if (at) {
            if (i == 0 && (!at->t || at->type != IT_ATTR_TENSOR))
                return FAIL(a, ITSCAM_ERR_MODEL, "attribute 'value' is not a tensor");
            *out = at;
            return ITSCAM_OK;
        }
    }
    return FAIL(a, ITSCAM_ERR_MODEL, "no value attribute");
}

itscam_status it_shape_constant(const it_kernel_args *a) {
    itscam_status st = need_io(a, 0, 0, 1, 1);
    if (st) return st;
    const it_attr *at;
    if ((st = constant_value(a, &at))) return st;
    int64_t n = at->n;
    if (at->t) {
        if ((st = need_sized(a, at->t, "value"))) return st;
        if (!at->t->data && it_tensor_numel(at->t) > 0) return FAIL(a, ITSCAM_ERR_MODEL, "value has no data");
        it_set_shape(a->out[0], at->t->dtype, at->t->ndim, at->t->dims);
    } else if (at->type == IT_ATTR_FLOAT || at->type == IT_ATTR_INT) {
        it_set_shape(a->out[0], at->type == IT_ATTR_FLOAT ? IT_F32 : IT_I64, 0, NULL);
    } else if (at->type == IT_ATTR_FLOATS || at->type == IT_ATTR_INTS) {
        it_set_shape(a->out[0], at->type == IT_ATTR_FLOATS ? IT_F32 : IT_I64, 1, &n);
    } else {
        return FAIL(a, ITSCAM_ERR_MODEL, "attribute '%s' has the wrong type", at->name);
    }
    return ITSCAM_OK;
}

itscam_status it_ref_constant(const it_kernel_args *a) {
    const it_attr *at;
    itscam_status st = constant_value(a, &at);
    if (st) return st;
    it_tensor *o = a->out[0];
    if (at->t) {
        if (o->nbytes) memcpy(o->data, at->t->data, o->nbytes);
    } else if (at->type == IT_ATTR_FLOAT) {
        *(float *)o->data = at->f;
    } else if (at->type == IT_ATTR_INT) {
        *(int64_t *)o->data = at->i;
    } else if (at->type == IT_ATTR_FLOATS) {
        if (o->nbytes) memcpy(o->data, at->floats, o->nbytes);
    } else {
        if (o->nbytes) memcpy(o->data, at->ints, o->nbytes);
    }
    return ITSCAM_OK;
}

itscam_status it_shape_constantofshape(const it_kernel_args *a) {
    itscam_status st = need_io(a, 1, 1, 1, 1);
    if (st) return st;
    int64_t dims[IT_MAX_DIMS];
    int n;
    if (a->in[0]->ndim == 1 && a->in[0]->dims[0] > IT_MAX_DIMS)
        return FAIL(a, ITSCAM_ERR_UNSUPPORTED, "output rank %lld exceeds %d", (long long)a->in[0]->dims[0], IT_MAX_DIMS);
    if ((st = const_ints(a->node, a->in[0], "shape", dims, IT_MAX_DIMS, &n))) return st;
    for (int i = 0; i < n; i++)
        if (dims[i] < 0) return FAIL(a, ITSCAM_ERR_SHAPE, "negative dimension %lld", (long long)dims[i]);
    int dt = IT_F32;
    const it_attr *at = it_attr_find(a->node, "value");
    if (at) {
        if (!at->t || it_tensor_numel(at->t) != 1 || !at->t->data)
            return FAIL(a, ITSCAM_ERR_MODEL, "'value' must be a one-element tensor");
        if ((st = need_sized(a, at->t, "value"))) return st;
        dt = at->t->dtype;
    }
    it_set_shape(a->out[0], dt, n, dims);
    return ITSCAM_OK;
}

itscam_status it_ref_constantofshape(const it_kernel_args *a) {
    it_tensor *o = a->out[0];
    const it_attr *at = it_attr_find(a->node, "value");
    size_t es = it_dtype_size(o->dtype);
    int64_t n = it_tensor_numel(o);
    if (!at) {
        memset(o->data, 0, o->nbytes); /* float 0.0 is all-zero bits */
        return ITSCAM_OK;
    }
    for (int64_t i = 0; i < n; i++) memcpy((uint8_t *)o->data + (size_t)i * es, at->t->data, es);
    return ITSCAM_OK;
}

/* ---------------------------------------------------------------------------------
 * Cast
 * --------------------------------------------------------------------------------- */

static int cast_supported(int dt) {
    return dt == IT_F32 || dt == IT_F64 || dt == IT_F16 || dt == IT_BOOL || is_int_type(dt);
}

/* IEEE half <-> single by hand (no compiler _Float16 assumed). */
float it_half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 0x1f, m = h & 0x3ff, bits;
    if (e == 0) {
        if (m == 0) {
            bits = sign;
        } else { /* subnormal: renormalise */
            e = 127 - 15 + 1;
            while (!(m & 0x400)) m <<= 1, e--;
            bits = sign | (e << 23) | ((m & 0x3ff) << 13);
        }
    } else if (e == 31) {
        bits = sign | 0x7f800000u | (m << 13);
    } else {
        bits = sign | ((e + 127 - 15) << 23) | (m << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* Round to nearest even, overflow to infinity, NaN kept quiet. */
uint16_t it_float_to_half(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t e = (x >> 23) & 0xff, m = x & 0x7fffff;
    if (e == 0xff) return (uint16_t)(sign | 0x7c00 | (m ? 0x200 | (m >> 13) : 0));
    int32_t he = (int32_t)e - 127 + 15;
    if (he >= 31) return (uint16_t)(sign | 0x7c00);
    if (he <= 0) {
        if (he < -10) return sign; /* below half the smallest subnormal */
        m |= 0x800000;
        int shift = 14 - he;
        uint32_t hm = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (hm & 1))) hm++;
        return (uint16_t)(sign | hm);
    }
    uint32_t hm = m >> 13, rem = m & 0x1fff;
    uint32_t r = ((uint32_t)he << 10) | hm;
    if (rem > 0x1000 || (rem == 0x1000 && (hm & 1))) r++; /* may carry into the exponent: correct */
    return (uint16_t)(sign | r);
}

/* Float to integer truncates toward zero; values outside the target range (undefined
 * in C and in ONNX) saturate and NaN becomes 0, so that the oracle never traps. */
static int64_t f_to_i64(double v, double lo, double hi) {
    if (v != v) return 0;
    if (v <= lo) return (int64_t)lo;
    if (v >= hi) return (int64_t)hi;
    return (int64_t)v;
}

static void cast_store(void *o, int64_t i, int dt, int is_float, double f, int64_t n) {
    switch (dt) {
    case IT_F32: ((float *)o)[i] = is_float ? (float)f : (float)n; break;
    case IT_F64: ((double *)o)[i] = is_float ? f : (double)n; break;
    case IT_F16: ((uint16_t *)o)[i] = it_float_to_half(is_float ? (float)f : (float)n); break;
    case IT_BOOL: ((uint8_t *)o)[i] = is_float ? f != 0 : n != 0; break;
    case IT_I8: ((int8_t *)o)[i] = (int8_t)(is_float ? f_to_i64(f, -128, 127) : n); break;
    case IT_U8: ((uint8_t *)o)[i] = (uint8_t)(is_float ? f_to_i64(f, 0, 255) : n); break;
    case IT_I16: ((int16_t *)o)[i] = (int16_t)(is_float ? f_to_i64(f, -32768, 32767) : n); break;
    case IT_U16: ((uint16_t *)o)[i] = (uint16_t)(is_float ? f_to_i64(f, 0, 65535) : n); break;
    case IT_I32: ((int32_t *)o)[i] = (int32_t)(is_float ? f_to_i64(f, -2147483648.0, 2147483647.0) : n); break;
    case IT_U32: ((uint32_t *)o)[i] = (uint32_t)(is_float ? f_to_i64(f, 0, 4294967295.0) : n); break;
    case IT_I64: ((int64_t *)o)[i] = is_float ? f_to_i64(f, -9223372036854775808.0, 9223372036854774784.0) : n; break;
    case IT_U64:
        if (!is_float) ((uint64_t *)o)[i] = (uint64_t)n;
        else ((uint64_t *)o)[i] = f != f || f <= 0 ? 0 : f >= 18446744073709549568.0 ? UINT64_MAX : (uint64_t)f;
        break;
    default: break;
    }
}

itscam_status it_shape_cast(const it_kernel_args *a) {
    itscam_status st = need_io(a, 1, 1, 1, 1);
    if (st) return st;
    const it_tensor *x = a->in[0];
    const it_attr *to = it_attr_find(a->node, "to");
    if (!to) return FAIL(a, ITSCAM_ERR_MODEL, "attribute 'to' is required");
    if (!cast_supported(x->dtype))
        return FAIL(a, ITSCAM_ERR_UNSUPPORTED, "cast from %s is not supported", it_dtype_name(x->dtype));
    if (!cast_supported((int)to->i))
        return FAIL(a, ITSCAM_ERR_UNSUPPORTED, "cast to %s (%lld) is not supported", it_dtype_name((int)to->i),
                    (long long)to->i);
    it_set_shape(a->out[0], (int)to->i, x->ndim, x->dims);
    return ITSCAM_OK;
}

itscam_status it_ref_cast(const it_kernel_args *a) {
    const it_tensor *x = a->in[0];
    it_tensor *o = a->out[0];
    int64_t n = it_tensor_numel(x);
    if (x->dtype == o->dtype) {
        copy_whole(o, x);
        return ITSCAM_OK;
    }
    for (int64_t i = 0; i < n; i++) {
        switch (x->dtype) {
        case IT_F32: cast_store(o->data, i, o->dtype, 1, ((const float *)x->data)[i], 0); break;
        case IT_F64: cast_store(o->data, i, o->dtype, 1, ((const double *)x->data)[i], 0); break;
        case IT_F16: cast_store(o->data, i, o->dtype, 1, it_half_to_float(((const uint16_t *)x->data)[i]), 0); break;
        case IT_U64: {
            /* above INT64_MAX the int64 path would turn the value negative */
            uint64_t u = ((const uint64_t *)x->data)[i];
            if (o->dtype == IT_F32 || o->dtype == IT_F64 || o->dtype == IT_F16) cast_store(o->data, i, o->dtype, 1, (double)u, 0);
            else cast_store(o->data, i, o->dtype, 0, 0, (int64_t)u);
            break;
        }
        case IT_U32: cast_store(o->data, i, o->dtype, 0, 0, ((const uint32_t *)x->data)[i]); break;
        case IT_U16: cast_store(o->data, i, o->dtype, 0, 0, ((const uint16_t *)x->data)[i]); break;
        case IT_I16: cast_store(o->data, i, o->dtype, 0, 0, ((const int16_t *)x->data)[i]); break;
        default: cast_store(o->data, i, o->dtype, 0, 0, it_tensor_get_int(x, i)); break;
        }
    }
    return ITSCAM_OK;
}

/* ---------------------------------------------------------------------------------
 * Identity
 * --------------------------------------------------------------------------------- */

itscam_status it_shape_identity(const it_kernel_args *a) {
    itscam_status st = need_io(a, 1, 1, 1, 1);
    if (st) return st;
    const it_tensor *x = a->in[0];
    if ((st = need_sized(a, x, "input"))) return st;
    it_set_shape(a->out[0], x->dtype, x->ndim, x->dims);
    return ITSCAM_OK;
}

itscam_status it_ref_identity(const it_kernel_args *a) {
    copy_whole(a->out[0], a->in[0]);
    return ITSCAM_OK;
}
