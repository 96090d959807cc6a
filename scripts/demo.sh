#!/bin/sh
# The main job: install dependencies, build itscam (Release) and detect objects in the
# shared sample images with YOLO11n, printing JSON and writing annotated JPEGs to out/.
set -eu
cd "$(dirname "$0")/.."
sh scripts/setup.sh >&2
SHARED="${ITSCAM_SHARED:-$(cd .. && pwd)/shared}"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >&2
cmake --build build -j"$(nproc 2>/dev/null || echo 2)" >&2
./build/itscam detect --model "$SHARED/models/yolo11n.onnx" --save out "$SHARED/images"
echo "annotated images are in out/" >&2
