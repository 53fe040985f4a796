#!/usr/bin/env bash
# Installs everything vqvae2 needs from Debian's packages (run as root, or with sudo).
#   build + library: g++, cmake, Eigen 3.4, oneDNN, OpenMP, stb, nifticlib, zlib
#   tests/benchmarks: doctest, Google Benchmark
#   data/parity:     mricron-data (real T1 brain templates), python3-torch, python3-skimage
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
packages=(
  build-essential cmake pkg-config
  libeigen3-dev libdnnl-dev ocl-icd-opencl-dev libomp-dev libstb-dev libnifti2-dev zlib1g-dev
  doctest-dev libbenchmark-dev
  mricron-data
)
if [ "${VQVAE2_WITH_PYTHON:-1}" = "1" ]; then
  # OpenBLAS: the fair baseline for PyTorch side by side (its transposed convs go through BLAS).
  packages+=(python3 python3-numpy python3-torch python3-skimage libopenblas0-pthread)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  # apt's and dpkg's thousands of lines go to a log; its tail is shown when a step fails.
  if [ -n "$SUDO" ] && ! command -v sudo >/dev/null 2>&1; then
    echo "install-deps: the Debian packages ${missing[*]} are missing and installing them needs root (there is no sudo): run 'apt-get install ${missing[*]}' as root." >&2
    exit 1
  fi
  log="${TMPDIR:-/tmp}/vqvae2-install-deps.log"
  echo "install-deps: installing ${missing[*]} (log: $log)"
  if ! { $SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q \
    --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    echo "install-deps: apt-get failed (full log: $log)." >&2
    exit 1
  fi
  echo "install-deps: done"
else
  echo "install-deps: all packages present"
fi
