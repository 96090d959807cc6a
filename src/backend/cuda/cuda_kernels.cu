// The CUDA backend's own kernels: elementwise, pooling, data movement, softmax, the Conv
// epilogue, and the letterbox / head-decoding kernels. Launchers are extern "C" (see
// cuda_kernels.h and cuda_backend.h); everything else is internal to this file.
#include "backend/cuda/cuda_kernels.h"
#include "backend/cuda/cuda_backend.h"

#include <cuda_fp16.h>
#include <math.h>
#include <stdint.h>

namespace {

constexpr int kThreads = 256;
// Grid-stride loops cover the rest: more blocks than this only adds scheduling cost.
constexpr int64_t kMaxBlocks = 65535LL * 8;

unsigned blocks_for(int64_t n) {
    int64_t b = (n + kThreads - 1) / kThreads;
    return (unsigned)(b < kMaxBlocks ? b : kMaxBlocks);
}

// Kernel launches report configuration errors through the last-error state; take (and
// clear) it right after the launch.
cudaError_t launched() { return cudaGetLastError(); }

__device__ __forceinline__ float load(const float *p, int64_t i) { return p[i]; }
__device__ __forceinline__ float load(const __half *p, int64_t i) { return __half2float(p[i]); }
__device__ __forceinline__ void store(float *p, int64_t i, float v) { p[i] = v; }
__device__ __forceinline__ void store(__half *p, int64_t i, float v) { p[i] = __float2half_rn(v); }

template <typename I>
__device__ __forceinline__ I first_index() {
    return (I)blockIdx.x * (I)blockDim.x + (I)threadIdx.x;
}
template <typename I>
__device__ __forceinline__ I grid_step() {
    return (I)gridDim.x * (I)blockDim.x;
}

// ---- binary elementwise with broadcasting ------------------------------------------------

template <typename TA, typename TB, typename TY, typename I>
__global__ void binary_kernel(it_cu_binary p, const TA *a, const TB *b, TY *y, I n) {
    for (I i = first_index<I>(); i < n; i += grid_step<I>()) {
        I rest = i, oa = 0, ob = 0;
        for (int d = p.ndim - 1; d >= 0; d--) {
            I dim = (I)p.dims[d];
            I c = rest % dim;
            rest /= dim;
            oa += c * (I)p.sa[d];
            ob += c * (I)p.sb[d];
        }
        float x = load(a, (int64_t)oa), z = load(b, (int64_t)ob), r;
        switch (p.op) {
        case IT_CU_ADD: r = x + z; break;
        case IT_CU_SUB: r = x - z; break;
        case IT_CU_MUL: r = x * z; break;
        default: r = x / z; break;
        }
        store(y, (int64_t)i, r);
    }
}

template <typename TA, typename TB, typename TY>
cudaError_t binary_typed(const it_cu_binary *p, const void *a, const void *b, void *y, int64_t n, cudaStream_t s) {
    const TA *pa = static_cast<const TA *>(a);
    const TB *pb = static_cast<const TB *>(b);
    TY *py = static_cast<TY *>(y);
    // 32-bit index arithmetic is several times cheaper on the GPU; it is exact while
    // every offset fits
    if (n < INT32_MAX && p->max_a < INT32_MAX && p->max_b < INT32_MAX)
        binary_kernel<TA, TB, TY, int32_t><<<blocks_for(n), kThreads, 0, s>>>(*p, pa, pb, py, (int32_t)n);
    else
        binary_kernel<TA, TB, TY, int64_t><<<blocks_for(n), kThreads, 0, s>>>(*p, pa, pb, py, n);
    return launched();
}

template <typename TA, typename TB>
cudaError_t binary_out(int ty, const it_cu_binary *p, const void *a, const void *b, void *y, int64_t n, cudaStream_t s) {
    return ty == IT_CU_F16 ? binary_typed<TA, TB, __half>(p, a, b, y, n, s) : binary_typed<TA, TB, float>(p, a, b, y, n, s);
}

template <typename TA>
cudaError_t binary_b(int tb, int ty, const it_cu_binary *p, const void *a, const void *b, void *y, int64_t n,
                     cudaStream_t s) {
    return tb == IT_CU_F16 ? binary_out<TA, __half>(ty, p, a, b, y, n, s) : binary_out<TA, float>(ty, p, a, b, y, n, s);
}

// ---- unary ---------------------------------------------------------------------------------

template <typename T>
__global__ void sigmoid_kernel(const T *x, T *y, int64_t n) {
    for (int64_t i = first_index<int64_t>(); i < n; i += grid_step<int64_t>()) {
        float v = load(x, i);
        float r = v >= 0.0f ? 1.0f / (1.0f + expf(-v)) : expf(v) / (1.0f + expf(v));
        store(y, i, r);
    }
}

template <typename T>
__global__ void bias_act_kernel(T *y, const float *bias, int64_t channels, int64_t inner, int64_t n, int silu) {
    for (int64_t i = first_index<int64_t>(); i < n; i += grid_step<int64_t>()) {
        float v = load(y, i);
        if (bias) v += bias[(i / inner) % channels];
        if (silu) v = v / (1.0f + expf(-v));
        store(y, i, v);
    }
}

template <typename S, typename D>
__global__ void cast_kernel(const S *x, D *y, int64_t n) {
    for (int64_t i = first_index<int64_t>(); i < n; i += grid_step<int64_t>()) store(y, i, load(x, i));
}

// ---- max pooling -----------------------------------------------------------------------------

template <typename T>
__global__ void maxpool_kernel(it_cu_pool p, const T *x, T *y, int64_t n) {
    for (int64_t i = first_index<int64_t>(); i < n; i += grid_step<int64_t>()) {
        int64_t ox = i % p.ow, t = i / p.ow;
        int64_t oy = t % p.oh, plane = t / p.oh;
        const T *xc = x + plane * p.ih * p.iw;
        float best = -INFINITY;
        for (int64_t ki = 0; ki < p.kh; ki++) {
            int64_t iy = oy * p.sh - p.ph + ki * p.dh;
            if (iy < 0 || iy >= p.ih) continue;
            for (int64_t kj = 0; kj < p.kw; kj++) {
                int64_t ix = ox * p.sw - p.pw + kj * p.dw;
                if (ix < 0 || ix >= p.iw) continue;
                float v = load(xc, iy * p.iw + ix);
                if (v > best || v != v) best = v;
            }
        }
        store(y, i, best);
    }
}

// ---- data movement (any element type, by size) ----------------------------------------------

template <typename E, typename I>
__global__ void strided_kernel(it_cu_strided p, const E *src, E *dst, I n) {
    for (I i = first_index<I>(); i < n; i += grid_step<I>()) {
        I rest = i, off = 0;
        for (int d = p.ndim - 1; d >= 0; d--) {
            I dim = (I)p.dims[d];
            I c = rest % dim;
            rest /= dim;
            off += c * (I)p.stride[d];   // may be negative: I is signed
        }
        dst[i] = src[off];
    }
}

template <typename E>
cudaError_t strided_typed(const it_cu_strided *p, const void *src, void *dst, int64_t n, cudaStream_t s) {
    const E *ts = static_cast<const E *>(src);
    E *td = static_cast<E *>(dst);
    if (n < INT32_MAX && p->src_span < INT32_MAX)
        strided_kernel<E, int32_t><<<blocks_for(n), kThreads, 0, s>>>(*p, ts, td, (int32_t)n);
    else
        strided_kernel<E, int64_t><<<blocks_for(n), kThreads, 0, s>>>(*p, ts, td, n);
    return launched();
}

template <typename E>
__global__ void gather_kernel(it_cu_gather p, const int64_t *table, const E *src, E *dst, int64_t n) {
    for (int64_t i = first_index<int64_t>(); i < n; i += grid_step<int64_t>()) {
        int64_t rest = i, off = 0;
        for (int d = p.ndim - 1; d >= 0; d--) {
            int64_t c = rest % p.dims[d];
            rest /= p.dims[d];
            off += table[p.off[d] + c] * p.stride[d];
        }
        dst[i] = src[off];
    }
}

template <typename E>
cudaError_t gather_typed(const it_cu_gather *p, const int64_t *table, const void *src, void *dst, int64_t n,
                         cudaStream_t s) {
    gather_kernel<E><<<blocks_for(n), kThreads, 0, s>>>(*p, table, static_cast<const E *>(src), static_cast<E *>(dst), n);
    return launched();
}

// ---- softmax ----------------------------------------------------------------------------------

// inner == 1: one warp per row, lanes striding along it.
template <typename T>
__global__ void softmax_rows_kernel(const T *x, T *y, int64_t rows, int64_t len) {
    const int lane = threadIdx.x & 31;
    const int64_t warps = (int64_t)gridDim.x * (blockDim.x / 32);
    for (int64_t r = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32; r < rows; r += warps) {
        const T *xr = x + r * len;
        T *yr = y + r * len;
        float mx = -INFINITY;
        for (int64_t k = lane; k < len; k += 32) mx = fmaxf(mx, load(xr, k));
        for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
        float sum = 0.0f;
        for (int64_t k = lane; k < len; k += 32) sum += expf(load(xr, k) - mx);
        for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
        for (int64_t k = lane; k < len; k += 32) store(yr, k, expf(load(xr, k) - mx) / sum);
    }
}

// inner > 1: one thread per (outer, inner) column; neighbouring threads read neighbouring
// addresses.
template <typename T>
__global__ void softmax_cols_kernel(const T *x, T *y, int64_t outer, int64_t len, int64_t inner) {
    const int64_t n = outer * inner;
    for (int64_t i = first_index<int64_t>(); i < n; i += grid_step<int64_t>()) {
        int64_t b = i / inner, j = i % inner;
        const T *p = x + b * len * inner + j;
        T *q = y + b * len * inner + j;
        float mx = -INFINITY, sum = 0.0f;
        for (int64_t k = 0; k < len; k++) mx = fmaxf(mx, load(p, k * inner));
        for (int64_t k = 0; k < len; k++) sum += expf(load(p, k * inner) - mx);
        for (int64_t k = 0; k < len; k++) store(q, k * inner, expf(load(p, k * inner) - mx) / sum);
    }
}

template <typename T>
cudaError_t softmax_typed(const void *x, void *y, int64_t outer, int64_t len, int64_t inner, cudaStream_t s) {
    const T *tx = static_cast<const T *>(x);
    T *ty = static_cast<T *>(y);
    if (inner == 1) {
        const int64_t per_block = kThreads / 32;
        int64_t b = (outer + per_block - 1) / per_block;
        softmax_rows_kernel<T><<<(unsigned)(b < kMaxBlocks ? b : kMaxBlocks), kThreads, 0, s>>>(tx, ty, outer, len);
    } else {
        softmax_cols_kernel<T><<<blocks_for(outer * inner), kThreads, 0, s>>>(tx, ty, outer, len, inner);
    }
    return launched();
}

// ---- letterbox ---------------------------------------------------------------------------------
// The arithmetic of vision/letterbox.c, per output pixel. The double and float expressions
// use explicit round-to-nearest intrinsics where nvcc would otherwise contract a multiply
// and an add into an FMA, which rounds once instead of twice and would move a coordinate
// across a rounding boundary now and then.

constexpr int kCoefBits = 11;
constexpr int kCoefScale = 1 << kCoefBits;

__device__ __forceinline__ short round_coef(float v) {
    int r = __float2int_rn(v);   // cvRound: to nearest, ties to even
    return (short)(r < -32768 ? -32768 : r > 32767 ? 32767 : r);
}

__device__ __forceinline__ int clamp16(int v) { return v > 32767 ? 32767 : v < -32768 ? -32768 : v; }

struct lb_geom {
    float scale;
    int pad_x, pad_y, new_w, new_h;
};

// it_letterbox_geometry: 0 on bad sizes.
__device__ int letterbox_geometry(int w, int h, int dst_w, int dst_h, lb_geom *g) {
    if (w <= 0 || h <= 0 || dst_w <= 0 || dst_h <= 0) return 0;
    double r = fmin(__ddiv_rn((double)dst_h, (double)h), __ddiv_rn((double)dst_w, (double)w));
    int nw = (int)rint(__dmul_rn((double)w, r)), nh = (int)rint(__dmul_rn((double)h, r));
    if (nw < 1) nw = 1;
    if (nh < 1) nh = 1;
    if (nw > dst_w) nw = dst_w;
    if (nh > dst_h) nh = dst_h;
    double pw = (dst_w - nw) / 2.0, ph = (dst_h - nh) / 2.0;
    g->scale = (float)r;
    g->new_w = nw;
    g->new_h = nh;
    g->pad_x = (int)rint(__dsub_rn(pw, 0.1));
    g->pad_y = (int)rint(__dsub_rn(ph, 0.1));
    return 1;
}

// Source offset and the two fixed-point weights of destination coordinate d of a
// cv::resize from s to ds pixels (the column setup of it_resize_linear_c3); `clip_weights`
// is the column rule (weights reset at the borders), rows keep theirs.
__device__ __forceinline__ void linear_tap(int d, int s, int ds, int clip_weights, int *i0, int *i1, short *w0,
                                           short *w1) {
    double scale = __ddiv_rn(1.0, __ddiv_rn((double)ds, (double)s));
    float f = (float)__dsub_rn(__dmul_rn(__dadd_rn((double)d, 0.5), scale), 0.5);
    int si = (int)floorf(f);
    f = __fsub_rn(f, (float)si);
    if (clip_weights) {
        if (si < 0) f = 0.0f, si = 0;
        if (si >= s - 1) f = 0.0f, si = s - 1;
        *i0 = si;
        *i1 = si;   // unused by the caller: columns read si and si + 1 when si < s - 1
    } else {
        *i0 = si < 0 ? 0 : si >= s ? s - 1 : si;
        *i1 = si + 1 < 0 ? 0 : si + 1 >= s ? s - 1 : si + 1;
    }
    *w0 = round_coef(__fmul_rn(__fsub_rn(1.0f, f), (float)kCoefScale));
    *w1 = round_coef(__fmul_rn(f, (float)kCoefScale));
}

// HResizeLinear<uchar,int,short,2048> of one channel at one destination column.
__device__ __forceinline__ int hresize(const uint8_t *row, int sx, int sw, short a0, short a1, int ch) {
    const uint8_t *p = row + (size_t)sx * 3 + ch;
    if (sx < sw - 1) return p[0] * a0 + p[3] * a1;
    return p[0] * kCoefScale;
}

// VResizeLinearVec_32s8u's 16-bit arithmetic (see vresize_row in vision/letterbox.c).
__device__ __forceinline__ int vresize(int s0, int s1, short b0, short b1) {
    int a = clamp16(s0 >> 4), b = clamp16(s1 >> 4);
    int t = clamp16(((a * b0) >> 16) + ((b * b1) >> 16));
    t = (t + 2) >> 2;
    return t < 0 ? 0 : t > 255 ? 255 : t;
}

template <typename T>
__global__ void letterbox_kernel(const it_cuda_frame *frames, int dst_w, int dst_h, T *dst,
                                 it_cuda_letterbox_info *info) {
    const int x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y * blockDim.y + threadIdx.y;
    const int img = blockIdx.z;
    const it_cuda_frame f = frames[img];
    lb_geom g;
    int ok = f.pixels && (long long)f.stride >= 3LL * f.width && letterbox_geometry(f.width, f.height, dst_w, dst_h, &g);
    if (info && x == 0 && y == 0) {
        it_cuda_letterbox_info o;
        o.scale = ok ? g.scale : 0.0f;
        o.pad_x = ok ? g.pad_x : 0;
        o.pad_y = ok ? g.pad_y : 0;
        o.new_w = ok ? g.new_w : 0;
        o.new_h = ok ? g.new_h : 0;
        info[img] = o;
    }
    if (x >= dst_w || y >= dst_h) return;
    // numpy's float32(v) / 255.0 is a correctly rounded division
    int v[3] = {114, 114, 114};
    int sx = x - (ok ? g.pad_x : 0), sy = y - (ok ? g.pad_y : 0);
    if (ok && sx >= 0 && sx < g.new_w && sy >= 0 && sy < g.new_h) {
        if (g.new_w == f.width && g.new_h == f.height) {   // cv::resize copies
            const uint8_t *p = f.pixels + (size_t)sy * f.stride + (size_t)sx * 3;
            v[0] = p[0], v[1] = p[1], v[2] = p[2];
        } else {
            int x0, xunused, y0, y1;
            short a0, a1, b0, b1;
            linear_tap(sx, f.width, g.new_w, 1, &x0, &xunused, &a0, &a1);
            linear_tap(sy, f.height, g.new_h, 0, &y0, &y1, &b0, &b1);
            const uint8_t *r0 = f.pixels + (size_t)y0 * f.stride, *r1 = f.pixels + (size_t)y1 * f.stride;
            for (int c = 0; c < 3; c++) {
                int h0 = hresize(r0, x0, f.width, a0, a1, c);
                int h1 = y1 != y0 ? hresize(r1, x0, f.width, a0, a1, c) : h0;
                v[c] = vresize(h0, h1, b0, b1);
            }
        }
    }
    const size_t plane = (size_t)dst_w * dst_h;
    T *out = dst + (size_t)img * 3 * plane + (size_t)y * dst_w + x;
    for (int c = 0; c < 3; c++) {
        int ch = f.is_rgb ? c : 2 - c;   // planes are R, G, B
        store(out, (int64_t)(c * plane), __fdiv_rn((float)v[ch], 255.0f));
    }
}

// ---- head decoding --------------------------------------------------------------------------

template <typename T>
__global__ void decode_kernel(const T *head, int n, int nc, int anchors, float conf, float *best_score,
                              int *best_cls, it_cuda_candidate *cand, int cap, int *count) {
    const int64_t total = (int64_t)n * anchors;
    for (int64_t i = first_index<int64_t>(); i < total; i += grid_step<int64_t>()) {
        const int img = (int)(i / anchors), a = (int)(i % anchors);
        const T *h = head + (int64_t)img * (4 + nc) * anchors;
        float best = load(h, 4LL * anchors + a);
        int cls = 0;
        for (int c = 1; c < nc; c++) {
            float s = load(h, (int64_t)(4 + c) * anchors + a);
            if (s > best) best = s, cls = c;   // the first maximum, as argmax
        }
        if (best_score) best_score[i] = best;
        if (best_cls) best_cls[i] = cls;
        if (best > conf) {
            int k = atomicAdd(&count[img], 1);
            if (k < cap) {
                float cx = load(h, a), cy = load(h, (int64_t)anchors + a);
                float w = load(h, 2LL * anchors + a), hh = load(h, 3LL * anchors + a);
                it_cuda_candidate o;
                o.x1 = cx - w / 2;
                o.y1 = cy - hh / 2;
                o.x2 = cx + w / 2;
                o.y2 = cy + hh / 2;
                o.score = best;
                o.cls = cls;
                o.anchor = a;
                cand[(int64_t)img * cap + k] = o;
            }
        }
    }
}

}  // namespace

// ---- launchers -----------------------------------------------------------------------------------

extern "C" cudaError_t it_cu_check_image(void) {
    cudaFuncAttributes attr;
    cudaError_t e = cudaFuncGetAttributes(&attr, sigmoid_kernel<float>);
    if (e != cudaSuccess) (void)cudaGetLastError();
    return e;
}

extern "C" cudaError_t it_cu_binary_launch(const it_cu_binary *p, int ta, int tb, int ty, const void *a, const void *b,
                                           void *y, int64_t n, cudaStream_t stream) {
    if (n <= 0) return cudaSuccess;
    if (!p || p->ndim < 1 || p->ndim > IT_CU_MAX_DIMS) return cudaErrorInvalidValue;
    return ta == IT_CU_F16 ? binary_b<__half>(tb, ty, p, a, b, y, n, stream)
                           : binary_b<float>(tb, ty, p, a, b, y, n, stream);
}

extern "C" cudaError_t it_cu_sigmoid(int type, const void *x, void *y, int64_t n, cudaStream_t stream) {
    if (n <= 0) return cudaSuccess;
    if (type == IT_CU_F16)
        sigmoid_kernel<__half><<<blocks_for(n), kThreads, 0, stream>>>(static_cast<const __half *>(x),
                                                                      static_cast<__half *>(y), n);
    else
        sigmoid_kernel<float><<<blocks_for(n), kThreads, 0, stream>>>(static_cast<const float *>(x),
                                                                     static_cast<float *>(y), n);
    return launched();
}

extern "C" cudaError_t it_cu_bias_act(int type, void *y, const float *bias, int64_t channels, int64_t inner, int64_t n,
                                      int silu, cudaStream_t stream) {
    if (n <= 0 || (!bias && !silu)) return cudaSuccess;
    if (bias && (channels <= 0 || inner <= 0)) return cudaErrorInvalidValue;
    if (type == IT_CU_F16)
        bias_act_kernel<__half><<<blocks_for(n), kThreads, 0, stream>>>(static_cast<__half *>(y), bias, channels,
                                                                       inner, n, silu);
    else
        bias_act_kernel<float><<<blocks_for(n), kThreads, 0, stream>>>(static_cast<float *>(y), bias, channels, inner,
                                                                      n, silu);
    return launched();
}

extern "C" cudaError_t it_cu_cast(int from, int to, const void *x, void *y, int64_t n, cudaStream_t stream) {
    if (n <= 0) return cudaSuccess;
    if (from == to)
        return cudaMemcpyAsync(y, x, (size_t)n * (from == IT_CU_F16 ? 2 : 4), cudaMemcpyDeviceToDevice, stream);
    if (from == IT_CU_F32)
        cast_kernel<float, __half><<<blocks_for(n), kThreads, 0, stream>>>(static_cast<const float *>(x),
                                                                          static_cast<__half *>(y), n);
    else
        cast_kernel<__half, float><<<blocks_for(n), kThreads, 0, stream>>>(static_cast<const __half *>(x),
                                                                          static_cast<float *>(y), n);
    return launched();
}

extern "C" cudaError_t it_cu_maxpool(const it_cu_pool *p, int type, const void *x, void *y, cudaStream_t stream) {
    if (!p) return cudaErrorInvalidValue;
    int64_t n = p->planes * p->oh * p->ow;
    if (n <= 0) return cudaSuccess;
    if (type == IT_CU_F16)
        maxpool_kernel<__half><<<blocks_for(n), kThreads, 0, stream>>>(*p, static_cast<const __half *>(x),
                                                                      static_cast<__half *>(y), n);
    else
        maxpool_kernel<float><<<blocks_for(n), kThreads, 0, stream>>>(*p, static_cast<const float *>(x),
                                                                     static_cast<float *>(y), n);
    return launched();
}

extern "C" cudaError_t it_cu_strided_copy(const it_cu_strided *p, size_t elem_size, const void *src, void *dst,
                                          int64_t n, cudaStream_t stream) {
    if (n <= 0) return cudaSuccess;
    if (!p || p->ndim < 1 || p->ndim > IT_CU_MAX_DIMS) return cudaErrorInvalidValue;
    switch (elem_size) {
    case 1: return strided_typed<uint8_t>(p, src, dst, n, stream);
    case 2: return strided_typed<uint16_t>(p, src, dst, n, stream);
    case 4: return strided_typed<uint32_t>(p, src, dst, n, stream);
    case 8: return strided_typed<uint64_t>(p, src, dst, n, stream);
    default: return cudaErrorInvalidValue;
    }
}

extern "C" cudaError_t it_cu_gather_axes(const it_cu_gather *p, size_t elem_size, const int64_t *table, const void *src,
                                         void *dst, int64_t n, cudaStream_t stream) {
    if (n <= 0) return cudaSuccess;
    if (!p || p->ndim < 1 || p->ndim > IT_CU_MAX_DIMS) return cudaErrorInvalidValue;
    switch (elem_size) {
    case 1: return gather_typed<uint8_t>(p, table, src, dst, n, stream);
    case 2: return gather_typed<uint16_t>(p, table, src, dst, n, stream);
    case 4: return gather_typed<uint32_t>(p, table, src, dst, n, stream);
    case 8: return gather_typed<uint64_t>(p, table, src, dst, n, stream);
    default: return cudaErrorInvalidValue;
    }
}

extern "C" cudaError_t it_cu_softmax(int type, const void *x, void *y, int64_t outer, int64_t len, int64_t inner,
                                     cudaStream_t stream) {
    if (outer <= 0 || len <= 0 || inner <= 0) return cudaSuccess;
    return type == IT_CU_F16 ? softmax_typed<__half>(x, y, outer, len, inner, stream)
                             : softmax_typed<float>(x, y, outer, len, inner, stream);
}

extern "C" cudaError_t it_cuda_letterbox_batch(const it_cuda_frame *frames, int n, int dst_w, int dst_h, int out_half,
                                               void *dst, it_cuda_letterbox_info *info, cudaStream_t stream) {
    if (n <= 0) return cudaSuccess;
    if (!frames || !dst || dst_w <= 0 || dst_h <= 0 || n > 65535) return cudaErrorInvalidValue;
    dim3 block(32, 8);
    dim3 grid((unsigned)((dst_w + 31) / 32), (unsigned)((dst_h + 7) / 8), (unsigned)n);
    if (grid.y > 65535) return cudaErrorInvalidValue;
    if (out_half)
        letterbox_kernel<__half><<<grid, block, 0, stream>>>(frames, dst_w, dst_h, static_cast<__half *>(dst), info);
    else
        letterbox_kernel<float><<<grid, block, 0, stream>>>(frames, dst_w, dst_h, static_cast<float *>(dst), info);
    return launched();
}

extern "C" cudaError_t it_cuda_decode_boxes(const void *head, int head_half, int n, int nc, int anchors, float conf,
                                            float *best_score, int *best_cls, it_cuda_candidate *cand, int cap,
                                            int *count, cudaStream_t stream) {
    if (n <= 0 || anchors <= 0) return cudaSuccess;
    if (!head || !count || nc < 1 || cap < 0 || (cap > 0 && !cand)) return cudaErrorInvalidValue;
    cudaError_t e = cudaMemsetAsync(count, 0, sizeof(int) * (size_t)n, stream);
    if (e != cudaSuccess) return e;
    int64_t total = (int64_t)n * anchors;
    if (head_half)
        decode_kernel<__half><<<blocks_for(total), kThreads, 0, stream>>>(static_cast<const __half *>(head), n, nc,
                                                                         anchors, conf, best_score, best_cls, cand,
                                                                         cap, count);
    else
        decode_kernel<float><<<blocks_for(total), kThreads, 0, stream>>>(static_cast<const float *>(head), n, nc,
                                                                        anchors, conf, best_score, best_cls, cand,
                                                                        cap, count);
    return launched();
}
