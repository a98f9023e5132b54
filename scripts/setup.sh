#!/usr/bin/env bash
# Installs exactly the Debian packages segkd needs that are missing, then configures and builds (Release, Ninja).
# Safe to run any number of times. Usage: scripts/setup.sh [BUILD_DIR]   (default: build)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${1:-build}

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config
  libtorch-dev libopenblas0-pthread          # LibTorch 1.13 (CPU); without OpenBLAS it uses a ~35x slower BLAS
  libopenmpi-dev openmpi-bin                 # MPI backend and mpirun
  libhdf5-dev                                # dataset format
  libtomlplusplus-dev libspdlog-dev libcli11-dev nlohmann-json3-dev
  libpng-dev libjpeg-dev                     # image codecs (VOC palette PNGs are read as indices)
  zlib1g-dev                                 # CRC-32 of checkpoints
  libgtest-dev
  libprotobuf-dev protobuf-compiler          # TensorBoard event files (train/proto)
  libplplot-dev plplot-driver-cairo          # curves.png and panel titles (PLplot, pngcairo device)
  python3-torch python3-numpy python3-h5py   # /usr/bin/python3: parity tests, h5py reads our HDF5, PyTorch peer benchmarks
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then missing+=("$p"); fi
done
if ((${#missing[@]})); then
  echo "segkd setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "segkd setup: all ${#PACKAGES[@]} packages present"
fi

JOBS=${SEGKD_JOBS:-$(nproc)}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE="${CMAKE_BUILD_TYPE:-Release}" ${SEGKD_CMAKE_ARGS:-} >/dev/null
echo "segkd setup: building in $BUILD_DIR with $JOBS jobs"
cmake --build "$BUILD_DIR" -j "$JOBS"
echo "segkd setup: done ($BUILD_DIR/segkd)"
