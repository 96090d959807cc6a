/* The ONNX front end: ModelProto bytes in, graph IR out. The graph layer below knows
 * nothing of ONNX's wire format; everything protobuf stays in this folder. */
#ifndef ITSCAM_ONNX_H
#define ITSCAM_ONNX_H

#include "graph/graph.h"

/* Load an ONNX model. On failure the detail names `name` and the problem. */
itscam_status it_onnx_load(const void *buf, size_t len, const char *name, it_graph **out);

#endif
