#!/usr/bin/env bash
# Installs everything xent needs to build, test and benchmark, from Debian's packages only.
# Run as root (CI and fresh machines are root). Safe to run again: apt-get skips what is installed.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config
  libhwy-dev                    # Highway: SIMD with runtime dispatch
  libgtest-dev                  # C++ tests
  libbenchmark-dev              # benchmarks
  pybind11-dev python3-dev python3-numpy   # Python package
  python3-pip python3-venv python3-setuptools   # pip install . (tests/install/pip.sh)
  python3-pytest python3-hypothesis python3-torch  # Python tests and the PyTorch cross-check
  libtorch-dev                  # xent's PyTorch operators (libxent_torch: C++ headers of the same PyTorch)
  libdnnl-dev libopenblas-dev   # the fused linear + cross-entropy's matrix products (oneDNN, OpenBLAS)
  libopenmpi-dev openmpi-bin python3-mpi4py   # the class axis sharded across processes (xent_mpi, xent.mpi)
  libeigen3-dev python3-matplotlib                  # peers and plot of the comparison benchmark
  clang libclang-rt-14-dev libomp-14-dev   # the sanitizer build and the fuzzer (libFuzzer; clang's OpenMP)
  doxygen                       # the API reference (scripts/docs.sh)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all packages present"
fi
