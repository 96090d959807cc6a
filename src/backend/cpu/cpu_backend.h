/* The oneDNN cpu backend: what it exposes beyond its it_backend table (plan.h). */
#ifndef ITSCAM_CPU_BACKEND_H
#define ITSCAM_CPU_BACKEND_H

#include "backend/backend.h"

extern const it_backend it_backend_cpu;

/* Describe what the backend runs on ("oneDNN 2.6.3, isa avx2, 2 threads") for
 * `itscam bench`. Truncates to n bytes (always NUL-terminated when n > 0). */
itscam_status it_cpu_describe(char *buf, size_t n);

/* Threads the backend uses when it_backend_opts.threads is 0: the physical cores this
 * process may run on. */
int it_cpu_default_threads(void);

/* 1 when step i of a compiled cpu program runs as a oneDNN primitive, 0 when it runs its
 * ref kernel (for tests and `itscam bench`). */
int it_cpu_step_native(const void *prog, int i);

/* 1 when step i of a compiled cpu program works on oneDNN's blocked activation layout
 * (nChw8c, nChw16c...) rather than plain NCHW (for tests and profiling). */
int it_cpu_step_blocked(const void *prog, int i);

/* The precision step i of a compiled cpu program computes in: IT_PREC_INT8 for a Conv
 * run as an int8 convolution, IT_PREC_BF16 for a step on bf16 activations, else fp32. */
it_precision it_cpu_step_precision(const void *prog, int i);

#endif
