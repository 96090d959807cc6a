/* SiLU kernels: see silu.h for the approximation and its measured error.
 *
 * Each ISA has its own functions compiled with a target attribute, so the file builds
 * with the project's default flags (no -mavx2 globally) under gcc and clang, and the
 * choice is made at run time from cpuid. The AVX-512 code uses AVX512F/BW/DQ/VL only
 * (no BF16, no FP16 instructions), so Skylake-X and later and Zen 4 all run it.
 *
 * Why every variant gives the same bits: the steps are FMAs, adds, multiplies and one
 * IEEE division, all correctly rounded, done in the same order by the scalar code
 * (fmaf). The AVX2 tail runs the vector body on a padded copy, the AVX-512 tail uses
 * masked loads and stores. So threads, tails and variants never change a result, which
 * the tests check bit for bit. A reciprocal estimate with a Newton step instead of the
 * division was measured slower (the divider runs beside the FMA pipes and the
 * loop is bound by the FMAs): 0.215 against 0.18 ns/element on Zen 4. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* RTLD_DEFAULT */
#endif
#include "backend/cpu/silu.h"

#include <dlfcn.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#if defined(__x86_64__) || defined(__i386__)
#define SILU_X86 1
#include <immintrin.h>
#else
#define SILU_X86 0
#endif

/* exp(b) for b in [-87, 0]: b = n ln2 + r, |r| <= ln2/2, exp(r) = 1 + r + r^2 p(r).
 * SHIFT is 1.5 * 2^23 + 127: adding it rounds b*log2(e) to an integer n and leaves n + 127
 * in the low mantissa bits, which shifted left by 23 are the float 2^n. Below -87 the
 * result is 0 (2^n would be denormal), which for SiLU is an error under 2e-36. */
#define SILU_LOG2E 1.44269504088896341f
#define SILU_SHIFT 12583039.0f
#define SILU_LN2_HI 0.693359375f
#define SILU_LN2_LO -2.12194440e-4f
#define SILU_LOW -87.0f
#define SILU_P0 1.9875691500e-4f
#define SILU_P1 1.3981999507e-3f
#define SILU_P2 8.3334519073e-3f
#define SILU_P3 4.1665795894e-2f
#define SILU_P4 1.6666665459e-1f
#define SILU_P5 5.0000001201e-1f

/* ---- scalar: the same operations as the vector code, in the same order ------------- */

static float silu1(float x) {
    float b = -fabsf(x);
    int keep = b >= SILU_LOW;                /* NaN: not kept, and num below is x */
    float bc = b > SILU_LOW ? b : SILU_LOW;  /* max_ps(b, LOW) */
    float j = fmaf(bc, SILU_LOG2E, SILU_SHIFT);
    float n = j - SILU_SHIFT;
    float r = fmaf(-n, SILU_LN2_HI, bc);
    r = fmaf(-n, SILU_LN2_LO, r);
    float z = r * r;
    float p = SILU_P0;
    p = fmaf(p, r, SILU_P1);
    p = fmaf(p, r, SILU_P2);
    p = fmaf(p, r, SILU_P3);
    p = fmaf(p, r, SILU_P4);
    p = fmaf(p, r, SILU_P5);
    float y = fmaf(p, z, r);
    y = y + 1.0f;
    uint32_t jb;
    memcpy(&jb, &j, sizeof jb);
    jb <<= 23;
    float pow2n;
    memcpy(&pow2n, &jb, sizeof pow2n);
    float e = keep ? y * pow2n : 0.0f;
    float d = e + 1.0f;
    float num = x < 0.0f ? bc * e : x;       /* for x < 0, bc is x clamped to >= -87 */
    return num / d;
}

static uint16_t f32_to_bf16(float f) {
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    if (f != f) return (uint16_t)((b >> 16) | 0x40u);     /* stays a quiet NaN */
    return (uint16_t)((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
}

static float bf16_to_f32(uint16_t h) {
    uint32_t b = (uint32_t)h << 16;
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

static uint8_t quant1(float s, float inv, float zp, float lev) {
    float y = fmaf(s, inv, zp);
    y = y > 0.0f ? y : 0.0f;                 /* max_ps(y, 0): NaN becomes 0 */
    y = y < lev ? y : lev;
    return (uint8_t)(int)nearbyintf(y);
}

static void f32_scalar(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = silu1(x[i]);
}
static void bf16_scalar(uint16_t *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = f32_to_bf16(silu1(bf16_to_f32(x[i])));
}
static void quant_scalar(const float *x, uint8_t *q, size_t n, float inv, float zp, float lev) {
    for (size_t i = 0; i < n; i++) q[i] = quant1(silu1(x[i]), inv, zp, lev);
}

#if SILU_X86
/* ---- AVX2 + FMA ------------------------------------------------------------------- */
#define T256 __attribute__((target("avx2,fma")))

static inline T256 __m256 silu8(__m256 x) {
    const __m256 low = _mm256_set1_ps(SILU_LOW);
    __m256 b = _mm256_or_ps(x, _mm256_set1_ps(-0.0f));                 /* -|x| */
    __m256 keep = _mm256_cmp_ps(b, low, _CMP_GE_OQ);
    __m256 bc = _mm256_max_ps(b, low);
    __m256 j = _mm256_fmadd_ps(bc, _mm256_set1_ps(SILU_LOG2E), _mm256_set1_ps(SILU_SHIFT));
    __m256 n = _mm256_sub_ps(j, _mm256_set1_ps(SILU_SHIFT));
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(SILU_LN2_HI), bc);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(SILU_LN2_LO), r);
    __m256 z = _mm256_mul_ps(r, r);
    __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(SILU_P0), r, _mm256_set1_ps(SILU_P1));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(SILU_P2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(SILU_P3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(SILU_P4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(SILU_P5));
    __m256 y = _mm256_fmadd_ps(p, z, r);
    y = _mm256_add_ps(y, _mm256_set1_ps(1.0f));
    __m256 pow2n = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(j), 23));
    __m256 e = _mm256_and_ps(_mm256_mul_ps(y, pow2n), keep);
    __m256 d = _mm256_add_ps(e, _mm256_set1_ps(1.0f));
    __m256 neg = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ);
    __m256 num = _mm256_blendv_ps(x, _mm256_mul_ps(bc, e), neg);
    return _mm256_div_ps(num, d);
}

/* bf16: a vector of 16 bf16 is two vectors of 8 f32 without any shuffle: the even
 * elements shifted up, the odd ones masked, and the two results blended back. The
 * rounding (to nearest even, NaN kept quiet) leaves each bf16 in the high half. */
static inline T256 __m256i bf16_round8(__m256 f) {
    __m256i b = _mm256_castps_si256(f);
    __m256i odd = _mm256_and_si256(_mm256_srli_epi32(b, 16), _mm256_set1_epi32(1));
    __m256i rnd = _mm256_add_epi32(_mm256_add_epi32(b, _mm256_set1_epi32(0x7fff)), odd);
    __m256i nan = _mm256_or_si256(b, _mm256_set1_epi32(0x400000));
    __m256i isnan = _mm256_castps_si256(_mm256_cmp_ps(f, f, _CMP_UNORD_Q));
    return _mm256_blendv_epi8(rnd, nan, isnan);
}

static inline T256 __m256i silu_bf16x16(__m256i v) {
    const __m256i hi = _mm256_set1_epi32((int)0xffff0000u);
    __m256 ev = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
    __m256 od = _mm256_castsi256_ps(_mm256_and_si256(v, hi));
    __m256i re = bf16_round8(silu8(ev)), ro = bf16_round8(silu8(od));
    return _mm256_blend_epi16(_mm256_srli_epi32(re, 16), ro, 0xaa);
}

/* 8 quantized levels in the low 64 bits. */
static inline T256 __m128i quant8(__m256 s, __m256 inv, __m256 zp, __m256 lev) {
    __m256 y = _mm256_fmadd_ps(s, inv, zp);
    y = _mm256_min_ps(_mm256_max_ps(y, _mm256_setzero_ps()), lev);
    __m256i v = _mm256_cvtps_epi32(y);
    __m128i w = _mm_packus_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    return _mm_packus_epi16(w, w);
}

static T256 void f32_avx2(float *x, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, silu8(_mm256_loadu_ps(x + i)));
    if (i < n) {
        float buf[8] = {0};
        memcpy(buf, x + i, (n - i) * sizeof *x);
        _mm256_storeu_ps(buf, silu8(_mm256_loadu_ps(buf)));
        memcpy(x + i, buf, (n - i) * sizeof *x);
    }
}

static T256 void bf16_avx2(uint16_t *x, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(x + i));
        _mm256_storeu_si256((__m256i *)(void *)(x + i), silu_bf16x16(v));
    }
    if (i < n) {
        uint16_t buf[16] = {0};
        memcpy(buf, x + i, (n - i) * sizeof *x);
        __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)buf);
        _mm256_storeu_si256((__m256i *)(void *)buf, silu_bf16x16(v));
        memcpy(x + i, buf, (n - i) * sizeof *x);
    }
}

static T256 void quant_avx2(const float *x, uint8_t *q, size_t n, float inv_scale, float zp_, float lev_) {
    const __m256 inv = _mm256_set1_ps(inv_scale), zp = _mm256_set1_ps(zp_), lev = _mm256_set1_ps(lev_);
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storel_epi64((__m128i *)(void *)(q + i), quant8(silu8(_mm256_loadu_ps(x + i)), inv, zp, lev));
    if (i < n) {
        float buf[8] = {0};
        uint8_t out[16];
        memcpy(buf, x + i, (n - i) * sizeof *x);
        _mm_storeu_si128((__m128i *)(void *)out, quant8(silu8(_mm256_loadu_ps(buf)), inv, zp, lev));
        memcpy(q + i, out, n - i);
    }
}

/* ---- AVX-512 (F, BW, DQ, VL) ------------------------------------------------------ */
#define T512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl")))

static inline T512 __m512 silu16(__m512 x) {
    const __m512 low = _mm512_set1_ps(SILU_LOW);
    __m512 b = _mm512_or_ps(x, _mm512_set1_ps(-0.0f));                 /* -|x| */
    __mmask16 keep = _mm512_cmp_ps_mask(b, low, _CMP_GE_OQ);
    __m512 bc = _mm512_max_ps(b, low);
    __m512 j = _mm512_fmadd_ps(bc, _mm512_set1_ps(SILU_LOG2E), _mm512_set1_ps(SILU_SHIFT));
    __m512 n = _mm512_sub_ps(j, _mm512_set1_ps(SILU_SHIFT));
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(SILU_LN2_HI), bc);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(SILU_LN2_LO), r);
    __m512 z = _mm512_mul_ps(r, r);
    __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(SILU_P0), r, _mm512_set1_ps(SILU_P1));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(SILU_P2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(SILU_P3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(SILU_P4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(SILU_P5));
    __m512 y = _mm512_fmadd_ps(p, z, r);
    y = _mm512_add_ps(y, _mm512_set1_ps(1.0f));
    __m512 pow2n = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_castps_si512(j), 23));
    __m512 e = _mm512_maskz_mul_ps(keep, y, pow2n);
    __m512 d = _mm512_add_ps(e, _mm512_set1_ps(1.0f));
    __mmask16 neg = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
    __m512 num = _mm512_mask_mul_ps(x, neg, bc, e);
    return _mm512_div_ps(num, d);
}

/* bf16 as in the AVX2 code: 32 bf16 are the even and the odd 16 f32, no shuffles. */
static inline T512 __m512i bf16_round16(__m512 f) {
    __m512i b = _mm512_castps_si512(f);
    __m512i odd = _mm512_and_si512(_mm512_srli_epi32(b, 16), _mm512_set1_epi32(1));
    __m512i rnd = _mm512_add_epi32(_mm512_add_epi32(b, _mm512_set1_epi32(0x7fff)), odd);
    __mmask16 isnan = _mm512_cmp_ps_mask(f, f, _CMP_UNORD_Q);
    return _mm512_mask_or_epi32(rnd, isnan, b, _mm512_set1_epi32(0x400000));
}

static inline T512 __m512i silu_bf16x32(__m512i v) {
    const __m512i hi = _mm512_set1_epi32((int)0xffff0000u);
    __m512 ev = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
    __m512 od = _mm512_castsi512_ps(_mm512_and_si512(v, hi));
    __m512i re = bf16_round16(silu16(ev)), ro = bf16_round16(silu16(od));
    return _mm512_mask_blend_epi16((__mmask32)0xaaaaaaaau, _mm512_srli_epi32(re, 16), ro);
}

static inline T512 __m512i quant16(__m512 s, __m512 inv, __m512 zp, __m512 lev) {
    __m512 y = _mm512_fmadd_ps(s, inv, zp);
    y = _mm512_min_ps(_mm512_max_ps(y, _mm512_setzero_ps()), lev);
    return _mm512_cvtps_epi32(y);
}

static inline T512 __mmask16 tail_mask(size_t left) {
    return (__mmask16)((1u << left) - 1u);
}

static T512 void f32_avx512(float *x, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, silu16(_mm512_loadu_ps(x + i)));
    if (i < n) {
        __mmask16 k = tail_mask(n - i);
        _mm512_mask_storeu_ps(x + i, k, silu16(_mm512_maskz_loadu_ps(k, x + i)));
    }
}

static T512 void bf16_avx512(uint16_t *x, size_t n) {
    size_t i = 0;
    for (; i + 32 <= n; i += 32) _mm512_storeu_si512(x + i, silu_bf16x32(_mm512_loadu_si512(x + i)));
    if (i < n) {
        __mmask32 k = (__mmask32)((1u << (n - i)) - 1u);   /* n - i < 32 */
        _mm512_mask_storeu_epi16(x + i, k, silu_bf16x32(_mm512_maskz_loadu_epi16(k, x + i)));
    }
}

static T512 void quant_avx512(const float *x, uint8_t *q, size_t n, float inv_scale, float zp_, float lev_) {
    const __m512 inv = _mm512_set1_ps(inv_scale), zp = _mm512_set1_ps(zp_), lev = _mm512_set1_ps(lev_);
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm_storeu_si128((__m128i *)(void *)(q + i),
                         _mm512_cvtepi32_epi8(quant16(silu16(_mm512_loadu_ps(x + i)), inv, zp, lev)));
    if (i < n) {
        __mmask16 k = tail_mask(n - i);
        _mm512_mask_cvtepi32_storeu_epi8(q + i, k, quant16(silu16(_mm512_maskz_loadu_ps(k, x + i)), inv, zp, lev));
    }
}
#endif /* SILU_X86 */

/* ---- dispatch ---------------------------------------------------------------------- */

int it_silu_runs(it_silu_isa isa) {
    switch (isa) {
    case IT_SILU_AUTO:
    case IT_SILU_SCALAR: return 1;
#if SILU_X86
    case IT_SILU_AVX2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case IT_SILU_AVX512:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
#endif
    default: return 0;
    }
}

/* The best variant, capped like oneDNN by ONEDNN_MAX_CPU_ISA (read once), so that one
 * setting makes the whole backend behave as a smaller machine would: AVX2 caps at AVX2,
 * SSE41 (or anything below AVX2) at scalar, AVX512... and the default leave it alone. */
static it_silu_isa env_cap(void) {
    static _Atomic int cap = -1;
    int c = atomic_load_explicit(&cap, memory_order_relaxed);
    if (c < 0) {
        const char *e = getenv("ONEDNN_MAX_CPU_ISA");
        c = IT_SILU_AVX512;
        if (e && (!strncasecmp(e, "AVX2", 4))) c = IT_SILU_AVX2;
        else if (e && (!strncasecmp(e, "SSE", 3) || !strcasecmp(e, "AVX"))) c = IT_SILU_SCALAR;
        atomic_store_explicit(&cap, c, memory_order_relaxed);
    }
    return (it_silu_isa)c;
}

it_silu_isa it_silu_best(void) {
    it_silu_isa cap = env_cap();
    if (cap >= IT_SILU_AVX512 && it_silu_runs(IT_SILU_AVX512)) return IT_SILU_AVX512;
    if (cap >= IT_SILU_AVX2 && it_silu_runs(IT_SILU_AVX2)) return IT_SILU_AVX2;
    return IT_SILU_SCALAR;
}

const char *it_silu_isa_name(it_silu_isa isa) {
    switch (isa) {
    case IT_SILU_AUTO: return "auto";
    case IT_SILU_SCALAR: return "scalar";
    case IT_SILU_AVX2: return "avx2";
    case IT_SILU_AVX512: return "avx512";
    }
    return "?";
}

/* AUTO, an unknown value or one this CPU cannot run: the best it can. */
static it_silu_isa resolve(it_silu_isa isa) {
    if (isa != IT_SILU_SCALAR && (isa == IT_SILU_AUTO || !it_silu_runs(isa))) return it_silu_best();
    return isa;
}

void it_silu_f32(float *x, size_t n, it_silu_isa isa) {
    if (!x || n == 0) return;
    switch (resolve(isa)) {
#if SILU_X86
    case IT_SILU_AVX512: f32_avx512(x, n); return;
    case IT_SILU_AVX2: f32_avx2(x, n); return;
#endif
    default: f32_scalar(x, n); return;
    }
}

void it_silu_bf16(uint16_t *x, size_t n, it_silu_isa isa) {
    if (!x || n == 0) return;
    switch (resolve(isa)) {
#if SILU_X86
    case IT_SILU_AVX512: bf16_avx512(x, n); return;
    case IT_SILU_AVX2: bf16_avx2(x, n); return;
#endif
    default: bf16_scalar(x, n); return;
    }
}

void it_silu_quant_u8(const float *x, uint8_t *q, size_t n, float inv_scale, float zp, int levels,
                      it_silu_isa isa) {
    if (!x || !q || n == 0) return;
    float lev = (float)(levels < 0 ? 0 : levels > 255 ? 255 : levels);
    switch (resolve(isa)) {
#if SILU_X86
    case IT_SILU_AVX512: quant_avx512(x, q, n, inv_scale, zp, lev); return;
    case IT_SILU_AVX2: quant_avx2(x, q, n, inv_scale, zp, lev); return;
#endif
    default: quant_scalar(x, q, n, inv_scale, zp, lev); return;
    }
}

/* ---- OpenMP threading ---------------------------------------------------------------
 * As in cpu_backend.c: libgomp is loaded with libdnnl, and its entry points are looked up
 * at run time, since this library is not built with -fopenmp. */
typedef void (*gomp_parallel_fn)(void (*)(void *), void *, unsigned, unsigned);
typedef int (*omp_int_fn)(void);

enum { JOB_F32, JOB_BF16, JOB_QUANT };

typedef struct mt_job {
    int kind;
    void *x;
    uint8_t *q;
    size_t n;
    float inv_scale, zp;
    int levels;
    it_silu_isa isa;
    omp_int_fn thread_num, num_threads;
} mt_job;

/* Chunks of a multiple of 64 elements: every boundary is 64-byte aligned for f32, bf16
 * and u8 alike when the arrays are, so no two threads share a cache line. */
#define MT_ALIGN 64u

static void mt_body(void *arg) {
    const mt_job *j = arg;
    size_t nt = (size_t)j->num_threads(), t = (size_t)j->thread_num();
    if (nt < 1) nt = 1;
    size_t chunk = (j->n + nt - 1) / nt;
    chunk = (chunk + MT_ALIGN - 1) / MT_ALIGN * MT_ALIGN;
    size_t lo = t * chunk;
    if (lo >= j->n) return;
    size_t len = j->n - lo < chunk ? j->n - lo : chunk;
    switch (j->kind) {
    case JOB_F32: it_silu_f32((float *)j->x + lo, len, j->isa); break;
    case JOB_BF16: it_silu_bf16((uint16_t *)j->x + lo, len, j->isa); break;
    default:
        it_silu_quant_u8((const float *)j->x + lo, j->q + lo, len, j->inv_scale, j->zp, j->levels, j->isa);
        break;
    }
}

/* 1 when the job ran on a team; 0 when the caller must run it (no libgomp, one thread,
 * too little work). */
static int run_team(mt_job *j, int threads) {
    if (threads <= 1 || j->n < IT_SILU_MT_MIN) return 0;
    gomp_parallel_fn par = (gomp_parallel_fn)dlsym(RTLD_DEFAULT, "GOMP_parallel");
    j->thread_num = (omp_int_fn)dlsym(RTLD_DEFAULT, "omp_get_thread_num");
    j->num_threads = (omp_int_fn)dlsym(RTLD_DEFAULT, "omp_get_num_threads");
    if (!par || !j->thread_num || !j->num_threads) return 0;
    j->isa = it_silu_best();
    par(mt_body, j, (unsigned)threads, 0);
    return 1;
}

void it_silu_f32_mt(float *x, size_t n, int threads) {
    mt_job j = {.kind = JOB_F32, .x = x, .n = n};
    if (!x || !run_team(&j, threads)) it_silu_f32(x, n, IT_SILU_AUTO);
}

void it_silu_bf16_mt(uint16_t *x, size_t n, int threads) {
    mt_job j = {.kind = JOB_BF16, .x = x, .n = n};
    if (!x || !run_team(&j, threads)) it_silu_bf16(x, n, IT_SILU_AUTO);
}

void it_silu_quant_u8_mt(const float *x, uint8_t *q, size_t n, float inv_scale, float zp, int levels,
                         int threads) {
    mt_job j = {.kind = JOB_QUANT, .x = (void *)(uintptr_t)x, .q = q, .n = n, .inv_scale = inv_scale,
                .zp = zp, .levels = levels};
    if (!x || !q || !run_team(&j, threads)) it_silu_quant_u8(x, q, n, inv_scale, zp, levels, IT_SILU_AUTO);
}
