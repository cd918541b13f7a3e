#!/usr/bin/env bash
# A relocatable runtime for running this build on a Linux x86-64 machine
# that lacks Debian's Open MPI, ScaLAPACK, HDF5 and OpenBLAS (a lent
# benchmark machine, a node without the packages): the files of the Debian
# packages that build/aptq, orterun and Open MPI's plugins load, glibc and
# libstdc++ excepted (the target's own are used), packed into one tar.xz, and
# env.sh, which unpacks it and sets OPAL_PREFIX, PMIX_INSTALL_PREFIX,
# LD_LIBRARY_PATH and PATH. Used for docs/scaling.md "Strong scaling to 16
# ranks". Build the binary for the target's CPU, e.g. with
#   cmake -S . -B build-portable -DAPTQ_NATIVE=OFF -DCMAKE_C_FLAGS=-march=x86-64-v3
#   usage: tools/portable-runtime.sh OUT_DIR [APTQ_BINARY]
# On the target:  . OUT_DIR/env.sh   (B=/opt/b by default: where it unpacks)
#                 orterun --oversubscribe -n 16 OUT_DIR/aptq bench ...
set -euo pipefail
[ $# -ge 1 ] || {
  sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}
here=$(cd "$(dirname "$0")/.." && pwd)
out=$1 aptq=${2:-$here/build/aptq}
mkdir -p "$out"
cp "$aptq" "$out/aptq"
lib=/usr/lib/x86_64-linux-gnu
elfs=("$aptq" /usr/bin/orterun /usr/bin/orted)
mapfile -t -O 3 elfs < <(find "$lib/openmpi/lib" "$lib/pmix2/lib" -name '*.so*')
libs=$(for e in "${elfs[@]}"; do ldd "$e" 2> /dev/null | awk '/=>/ && $3 ~ /^\// {print $3}'; done | sort -u)
pkgs=$(for l in $libs; do dpkg -S "$(readlink -f "$l")" 2> /dev/null | cut -d: -f1; done | sort -u |
  grep -v -E '^(libc6|libstdc\+\+6|libgcc-s1|libicu[0-9]+|libxml2|libx11-6|libxau6|libxcb1|libxdmcp6|libxext6|libxnvctrl0|ocl-icd-libopencl1)$')
list=$(mktemp)
trap 'rm -f "$list"' EXIT
for p in $pkgs openmpi-bin openmpi-common; do
  dpkg -L "$p" | while read -r f; do if [ -f "$f" ] || [ -L "$f" ]; then echo "$f"; fi; done
done | grep -v -E '^/usr/share/(doc|man|lintian|locale)|/hwloc/hwloc_|^/lib' | sort -u > "$list"
ls "$lib"/libz.so.1* >> "$list"
tar -cf - -T "$list" 2> /dev/null | xz -T2 -6 > "$out/runtime.tar.xz"
cat > "$out/env.sh" << 'EOF'
# source me: unpack the runtime beside this file into $B (once) and point Open MPI and the loader at it
B=${B:-/opt/b}
if [ ! -x "$B/usr/bin/orterun" ]; then mkdir -p "$B" && tar -xJf "$(dirname "${BASH_SOURCE[0]}")/runtime.tar.xz" -C "$B" || return 1; fi
L=$B/usr/lib/x86_64-linux-gnu
export OPAL_PREFIX=$B/usr PMIX_INSTALL_PREFIX=$L/pmix2
export LD_LIBRARY_PATH=$L/openblas-pthread:$L/openmpi/lib:$L/pmix2/lib:$L${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PATH=$B/usr/bin:$PATH
# one node, shared memory only (no UCX, libfabric or PSM probing)
export OMPI_MCA_btl=self,vader OMPI_MCA_pml=ob1 OMPI_MCA_mtl=^ofi,psm,psm2 OMPI_MCA_osc=^ucx OMPI_MCA_btl_vader_single_copy_mechanism=none
EOF
echo "portable-runtime.sh: $out/runtime.tar.xz ($(du -h "$out/runtime.tar.xz" | cut -f1), $(wc -l < "$list") files), $out/env.sh, $out/aptq"
