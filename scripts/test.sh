#!/bin/sh
# The whole test suite, as CI runs it: install dependencies, build with AddressSanitizer
# and UndefinedBehaviorSanitizer (warnings as errors), run every CTest test, then build
# the libFuzzer targets with clang and run each briefly.
set -eu
cd "$(dirname "$0")/.."
sh scripts/setup.sh
JOBS=$(nproc 2>/dev/null || echo 2)
export ITSCAM_SHARED="${ITSCAM_SHARED:-$(cd .. && pwd)/shared}"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
# oneDNN's JIT code and OpenMP runtime are not instrumented; LSan reports of their
# one-time allocations are suppressed by name, nothing of ours.
export LSAN_OPTIONS="suppressions=$(pwd)/tests/lsan.supp"

cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DITSCAM_SANITIZE=ON -DITSCAM_WERROR=ON >/dev/null
cmake --build build-asan -j"$JOBS"
(cd build-asan && ctest --output-on-failure -j"$JOBS")

if command -v clang >/dev/null 2>&1; then
  CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DITSCAM_FUZZ=ON -DITSCAM_CPU=OFF -DITSCAM_TESTS=OFF >/dev/null
  cmake --build build-fuzz -j"$JOBS"
  sh fuzz/run.sh build-fuzz "${FUZZ_SECONDS:-30}"
fi
