/* libFuzzer target: arbitrary bytes through the ONNX loader must fail cleanly or load a
 * graph whose indices are all in range and whose nodes are in topological order. */
#include "core/core.h"
#include "onnx/onnx.h"

#include <stdint.h>
#include <stdlib.h>

/* A loaded graph that breaks these invariants would crash the planner later: trap here
 * so that libFuzzer reports the input. */
static void check_graph(const it_graph *g) {
    char *defined = calloc((size_t)g->n_values + 1, 1);
    if (!defined) return;
    for (int i = 0; i < g->n_values; i++) defined[i] = g->values[i].kind != IT_VAL_ACT;
    for (int i = 0; i < g->n_nodes; i++) {
        const it_node *n = &g->nodes[i];
        if (n->op <= 0) __builtin_trap();
        for (int k = 0; k < n->n_in; k++) {
            int v = n->in[k];
            if (v >= g->n_values || (v >= 0 && !defined[v])) __builtin_trap();
        }
        for (int k = 0; k < n->n_out; k++) {
            int v = n->out[k];
            if (v >= g->n_values) __builtin_trap();
            if (v >= 0) defined[v] = 1;
        }
    }
    for (int i = 0; i < g->n_inputs; i++)
        if (g->inputs[i] < 0 || g->inputs[i] >= g->n_values) __builtin_trap();
    for (int i = 0; i < g->n_outputs; i++)
        if (g->outputs[i] < 0 || g->outputs[i] >= g->n_values) __builtin_trap();
    free(defined);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    it_graph *g = NULL;
    if (it_onnx_load(data, size, "fuzz.onnx", &g) == ITSCAM_OK) {
        check_graph(g);
        it_graph_free(g);
    }
    return 0;
}
