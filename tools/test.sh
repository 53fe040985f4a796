#!/usr/bin/env bash
# Builds the library's tests, benchmarks and examples, then runs the test suite.
# This is the test command of README.md and of .ci/run.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${VQVAE2_BUILD_DIR:-$root/build}"
jobs="${VQVAE2_JOBS:-$(nproc)}"
"$root/tools/install-deps.sh"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release
cmake --build "$build" -j "$jobs"
cd "$build"
OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" ctest --output-on-failure -j 1 "$@"
