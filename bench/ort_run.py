#!/usr/bin/env python3
"""ONNX Runtime (CPU) timing on a raw float32 NCHW input, the Python twin of the shared
tools/ort_run.js for machines that have the onnxruntime wheel but no Node.js.
usage: ort_run.py MODEL IN.f32 N,C,H,W [threads] [repeats] [--batch-from-one]
IN.f32 holds one image ([1,C,H,W]); with N > 1 it is repeated N times.
Prints {"dims","min_ms","median_ms","runs","version"} as JSON."""
import json, sys, time
import numpy as np
import onnxruntime as ort

model, inp, shape_s = sys.argv[1:4]
threads = int(sys.argv[4]) if len(sys.argv) > 4 else 2
reps = int(sys.argv[5]) if len(sys.argv) > 5 else 1
shape = [int(x) for x in shape_s.split(",")]
one = np.fromfile(inp, dtype=np.float32).reshape([1] + shape[1:])
data = np.ascontiguousarray(np.repeat(one, shape[0], axis=0))
so = ort.SessionOptions()
so.intra_op_num_threads = threads
so.inter_op_num_threads = 1
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
name = sess.get_inputs()[0].name
times = []
for _ in range(reps):
    t0 = time.perf_counter()
    out = sess.run(None, {name: data})[0]
    times.append((time.perf_counter() - t0) * 1e3)
times.sort()
print(json.dumps({"dims": list(out.shape), "min_ms": times[0], "median_ms": times[len(times) // 2],
                  "runs": len(times), "version": ort.__version__}))
