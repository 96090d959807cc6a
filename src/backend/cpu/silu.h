/* SiLU (x * sigmoid(x)), vectorised for x86 with run-time ISA dispatch, for the cpu
 * backend's activations: f32 and bf16 in place, and fused with the u8 requantization of
 * int8 chains. Self-contained (no oneDNN, no core helpers), so a benchmark can build it
 * alone.
 *
 * One approximation for every variant: exp(-|x|) = 2^n * p(r) (Cody-Waite reduction,
 * Cephes' degree-5 polynomial), then x / (1 + e) for x >= 0 and x * e / (1 + e) for
 * x < 0, with FMAs and an IEEE division. The scalar variant does the same operations in
 * the same order (fmaf), so every variant, the threaded ones included, gives the same
 * bits for the same input. Measured error against a double reference (tests/test_silu.c,
 * 8.8M inputs over [-100, 100] and every magnitude): at most 2.8 ulp, relative 2.2e-7,
 * where |silu(x)| is a normal float; for x < -87 the result is -0 (the true value is
 * below 2e-36). bf16: every one of the 65536 inputs gives the reference rounded to bf16. NaN in gives NaN out (quant_u8: level 0), -inf gives
 * -0, +inf gives +inf. Denormal inputs are computed, but the caller is expected to run
 * with FTZ/DAZ. */
#ifndef ITSCAM_BACKEND_CPU_SILU_H
#define ITSCAM_BACKEND_CPU_SILU_H

#include <stddef.h>
#include <stdint.h>

typedef enum { IT_SILU_AUTO = 0, IT_SILU_SCALAR, IT_SILU_AVX2, IT_SILU_AVX512 } it_silu_isa;

/* The variant AUTO resolves to on this CPU (cpuid via __builtin_cpu_supports:
 * avx512f+avx512bw+avx512dq+avx512vl for AVX512; avx2+fma for AVX2). */
it_silu_isa it_silu_best(void);
/* "auto", "scalar", "avx2", "avx512"; "?" for anything else. */
const char *it_silu_isa_name(it_silu_isa isa);
/* 1 when this CPU can run that variant (AUTO always can). */
int it_silu_runs(it_silu_isa isa);

/* In place: x[i] = x[i] * sigmoid(x[i]) for i < n. isa should be runnable; one that is
 * not (or an unknown value) runs as AUTO, never faults. */
void it_silu_f32(float *x, size_t n, it_silu_isa isa);
/* bf16 in place (uint16_t storage): widened to f32, SiLU as above, rounded to nearest
 * even back to bf16 (NaN stays a quiet NaN). */
void it_silu_bf16(uint16_t *x, size_t n, it_silu_isa isa);
/* Fused with u8 requantization: q[i] = nearbyint(clip(silu(x[i]) * inv_scale + zp,
 * 0, levels)) (one FMA, the current rounding mode: to nearest even); levels is clipped
 * to [0, 255]. x and q must not overlap. */
void it_silu_quant_u8(const float *x, uint8_t *q, size_t n, float inv_scale, float zp, int levels,
                      it_silu_isa isa);

/* The same three (best variant), split over `threads` OpenMP threads of the already
 * loaded libgomp (GOMP_parallel looked up at run time; this library is not built with
 * -fopenmp). threads <= 1, n < IT_SILU_MT_MIN or no libgomp in the process: the caller
 * does it all. Chunk boundaries fall on multiples of 64 elements (64-byte aligned when
 * the array is), and the results are bit for bit those of the single-threaded call. */
#define IT_SILU_MT_MIN 16384
void it_silu_f32_mt(float *x, size_t n, int threads);
void it_silu_bf16_mt(uint16_t *x, size_t n, int threads);
void it_silu_quant_u8_mt(const float *x, uint8_t *q, size_t n, float inv_scale, float zp, int levels,
                         int threads);

#endif
