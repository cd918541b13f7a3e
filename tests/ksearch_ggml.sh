#!/bin/bash
# Build tests/ksearch_ggml.c against the real llama.cpp's libggml-base (of
# tools/llama-cpp.sh, installed there if missing; its failure fails the test)
# and aptq's core library, then run it.
#   ksearch_ggml.sh OUTDIR BUILDDIR NROWS
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$1 build=$2 nrows=$3
dir=$("$here/../tools/llama-cpp.sh")
lib=$dir/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64
mkdir -p "$out"
san=  # an ASan build of the core library (tools/run-sanitized.sh) needs its runtime
if nm "$build/libaptqcore.a" 2>/dev/null | grep __asan_ > /dev/null; then san=-fsanitize=address,undefined; fi
mpicc $san -O2 -std=c11 -Wall -Werror -I"$here/../src" -I"$dir/include" "$here/ksearch_ggml.c" "$build/libaptqcore.a" \
    -L"$lib" -l:libggml-base.so -Wl,-rpath,"$lib" -lm -o "$out/ksearch_ggml"
"$out/ksearch_ggml" "$nrows"
