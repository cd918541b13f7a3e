#!/usr/bin/env bash
# Install what aptq needs to build and test on Debian 12, if it is missing:
# compilers, CMake, Open MPI, parallel HDF5 (+ h5diff), ScaLAPACK, OpenBLAS,
# and Debian's python3 with numpy and h5py for the independent references.
# --tests adds Slurm and munge (the job scripts are tested on a local Slurm)
# clang with libFuzzer (tools/fuzz.sh) and clang-format (the style check), npm and
# with it a real llama.cpp (tools/llama-cpp.sh: node-llama-cpp 3.21.1, cached in
# ~/.cache/aptq or APTQ_LLAMA_DIR, for the GGUF export tests); --plots adds gnuplot (the
# figure tools: mixed-table.sh, scaling.sh).
set -euo pipefail
pkgs=(build-essential cmake pkg-config openmpi-bin libopenmpi-dev libhdf5-openmpi-dev hdf5-tools
      libscalapack-openmpi-dev libopenblas-dev python3 python3-numpy python3-h5py)
[ "${1:-}" = --tests ] && pkgs+=(slurm-wlm munge clang libclang-rt-14-dev clang-format git)
[ "${1:-}" = --tests ] && ! command -v npm > /dev/null && pkgs+=(npm)
[ "${1:-}" = --plots ] && pkgs+=(gnuplot-nox)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
llama() { [ "${1:-}" != --tests ] || "$(dirname "$0")/llama-cpp.sh" > /dev/null; }
[ ${#missing[@]} -eq 0 ] && { llama "$@"; exit 0; }
echo "installing: ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo > /dev/null || { echo "error: missing packages (${missing[*]}) and not root; install them as root" >&2; exit 1; }
  sudo=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
llama "$@"
