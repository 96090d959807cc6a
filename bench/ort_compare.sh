#!/bin/sh
# itscam against ONNX Runtime 1.30 at batch 1, fp32 only: the original quick comparison, now
# a front end to bench/compare.sh (which also does bf16/int8 and batch-8 throughput).
# usage: bench/ort_compare.sh [MODEL] [THREADS] [ROUNDS] [ITSCAM_BACKEND]
set -eu
SHARED=${ITSCAM_SHARED:-$(cd "$(dirname "$0")/../.." && pwd)/shared}
exec sh "$(dirname "$0")/compare.sh" --model "${1:-$SHARED/models/yolo11n.onnx}" --threads "${2:-2}" \
  --rounds "${3:-5}" --backend "${4:-cpu}" --precisions fp32 --batches 1
