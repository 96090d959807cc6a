/* The graph IR: what an ONNX file becomes once loaded. Immutable after loading and
 * shared by every session; per-shape state lives in it_plan (plan.h). */
#ifndef ITSCAM_GRAPH_H
#define ITSCAM_GRAPH_H

#include "core/core.h"

#define IT_MAX_DIMS 8

/* Element types use ONNX TensorProto.DataType numbers so that loading is a copy. */
typedef enum it_dtype {
    IT_UNDEF = 0, IT_F32 = 1, IT_U8 = 2, IT_I8 = 3, IT_U16 = 4, IT_I16 = 5, IT_I32 = 6,
    IT_I64 = 7, IT_STRING = 8, IT_BOOL = 9, IT_F16 = 10, IT_F64 = 11, IT_U32 = 12,
    IT_U64 = 13, IT_BF16 = 16
} it_dtype;
size_t it_dtype_size(int dtype);   /* 0 for unknown or string */
const char *it_dtype_name(int dtype);

/* A tensor: shape, type and (when it holds values) data. Used both for graph values
 * (data set only for constants) and at run time (data points into the arena). */
typedef struct it_tensor {
    int dtype;
    int ndim;                      /* -1 when the rank is unknown */
    int64_t dims[IT_MAX_DIMS];     /* -1 where unknown or symbolic */
    void *data;
    size_t nbytes;
} it_tensor;
int64_t it_tensor_numel(const it_tensor *t);   /* product of dims, 1 for scalars, -1 if unknown */

enum { IT_VAL_ACT = 0, IT_VAL_INPUT = 1, IT_VAL_CONST = 2 };

/* A named value of the graph (an edge). */
typedef struct it_value {
    char *name;
    it_tensor t;                   /* t.data owned by the graph for constants */
    char *dim_param[IT_MAX_DIMS];  /* symbolic dimension names ("batch"), or NULL */
    int kind;                      /* IT_VAL_* */
    int is_output;                 /* a graph output */
} it_value;

/* Attribute types use ONNX AttributeProto.AttributeType numbers. */
enum { IT_ATTR_FLOAT = 1, IT_ATTR_INT = 2, IT_ATTR_STRING = 3, IT_ATTR_TENSOR = 4,
       IT_ATTR_GRAPH = 5, IT_ATTR_FLOATS = 6, IT_ATTR_INTS = 7, IT_ATTR_STRINGS = 8 };

typedef struct it_attr {
    char *name;
    int type;
    float f;
    int64_t i;
    char *s;                /* NUL-terminated copy of a string attribute */
    int n;                  /* count for FLOATS/INTS/STRINGS */
    float *floats;
    int64_t *ints;
    char **strings;
    it_tensor *t;           /* TENSOR attribute (data owned) */
} it_attr;

typedef struct it_node {
    char *name;
    char *op_type;
    char *domain;           /* "" for the default ONNX domain */
    int op;                 /* index into the operator table (ops.h), set at load */
    int n_in, n_out;
    int *in;                /* value indices; -1 for an omitted optional input */
    int *out;
    int n_attr;
    it_attr *attrs;
} it_node;

typedef struct it_meta {
    char *key, *value;
} it_meta;

typedef struct it_graph {
    char *path;              /* for messages */
    int n_values;
    it_value *values;
    int n_nodes;             /* in topological order (checked at load) */
    it_node *nodes;
    int n_inputs, n_outputs; /* graph inputs (initializers excluded) and outputs */
    int *inputs, *outputs;
    int64_t opset;           /* opset of the default domain */
    int64_t ir_version;
    char *producer;
    int n_meta;
    it_meta *meta;
} it_graph;

void it_graph_free(it_graph *g);
int it_graph_find_value(const it_graph *g, const char *name);   /* -1 when absent */
const char *it_graph_meta(const it_graph *g, const char *key);  /* NULL when absent */

/* Attribute look-ups with defaults. */
const it_attr *it_attr_find(const it_node *n, const char *name);
int64_t it_attr_int(const it_node *n, const char *name, int64_t def);
float it_attr_float(const it_node *n, const char *name, float def);
const char *it_attr_str(const it_node *n, const char *name, const char *def);
/* INTS attribute: returns count (0 when absent), *v points into the node. */
int it_attr_ints(const it_node *n, const char *name, const int64_t **v);
int it_attr_floats(const it_node *n, const char *name, const float **v);

#endif
