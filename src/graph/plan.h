/* A plan: the graph specialised to concrete input shapes. Shapes are inferred, constant
 * subgraphs folded, Conv+Sigmoid+Mul fused into Conv with a SiLU epilogue, and every
 * activation placed in one arena by lifetime. A backend compiles a plan into a program.
 * One plan belongs to one session; nothing in it is shared between threads. */
#ifndef ITSCAM_PLAN_H
#define ITSCAM_PLAN_H

#include "graph/ops.h"

enum { IT_ACT_NONE = 0, IT_ACT_SILU = 1 };

typedef struct it_plan_step {
    const it_node *node;
    const it_op_def *def;
    int n_in, n_out;
    int *in, *out;            /* value indices (-1 for omitted inputs) */
    int activation;           /* IT_ACT_*: fused epilogue (Conv only) */
    size_t scratch_bytes;     /* for the ref kernel */
} it_plan_step;

typedef struct it_plan {
    const it_graph *g;
    int64_t opset;
    it_tensor *t;             /* one per graph value: shape, dtype, data once bound */
    uint8_t *folded;          /* 1 where t[i].data was computed at plan time (owned) */
    int64_t *offset;          /* arena offset per value, -1 for constants and unused */
    int n_steps;
    it_plan_step *steps;
    size_t arena_bytes;       /* activations + the largest scratch */
    size_t scratch_offset;
    uint8_t *arena;           /* 64-byte aligned; NULL until bound */
    int arena_owned;          /* 1: allocated by it_plan_create; 0: lent by the caller */
    int64_t batch;            /* the batch size this plan was made for */
} it_plan;

/* Build a plan for concrete input shapes: inputs[i] gives dtype, ndim and dims of graph
 * input i (g->inputs[i]); n must equal g->n_inputs. When inputs[i].data is set, its
 * values are taken as known at plan time and folded (shape or scale inputs of the
 * conformance tests); leave it NULL for inputs that flow at run time. After success, write input values
 * into p->t[g->inputs[i]].data (arena memory) and run a backend program. */
itscam_status it_plan_create(const it_graph *g, const it_tensor *inputs, int n, it_plan **out);
/* The same without an arena: offsets and arena_bytes are set, activations have no data
 * until it_plan_bind. For callers that run several plans one at a time (a session's
 * plans per input shape) and so lend them one arena sized to the largest. */
itscam_status it_plan_create_unbound(const it_graph *g, const it_tensor *inputs, int n, it_plan **out);
/* Point every activation (and the ref kernels' scratch) of p into arena, which must hold
 * p->arena_bytes, be 64-byte aligned and outlive p or the next bind. The plan does not own
 * it. Rebinding moves no data: what the old arena held is not carried over. */
void it_plan_bind(it_plan *p, uint8_t *arena);
void it_plan_free(it_plan *p);
/* Fill kernel args for step i (arrays must hold step->n_in / n_out entries). */
void it_plan_step_args(const it_plan *p, int i, const it_tensor **in, it_tensor **out, it_kernel_args *a);
/* Number of steps consuming value v (graph outputs count as one more). */
int it_plan_consumers(const it_plan *p, int v);

/* The ref program: runs every step's reference kernel. Backends reuse it for steps they
 * do not accelerate. */
itscam_status it_run_step_ref(const it_plan *p, int i);

#endif
