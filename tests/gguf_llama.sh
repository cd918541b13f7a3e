#!/bin/bash
# Build tests/gguf_logprobs.c against the real llama.cpp of tools/llama-cpp.sh
# (installed there if missing; its failure fails the test, it never skips).
#   gguf_llama.sh OUTDIR  ->  OUTDIR/gguf_logprobs, OUTDIR/libdir
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$1
dir=$("$here/../tools/llama-cpp.sh")
lib=$dir/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64
mkdir -p "$out"
cc -O2 -std=c11 -Wall -Werror -I"$dir/include" "$here/gguf_logprobs.c" -o "$out/gguf_logprobs" \
    -L"$lib" -l:libllama.v0.4.0.so -l:libggml.v0.4.0.so -l:libggml-base.so -Wl,-rpath,"$lib" -lm
echo "$lib" > "$out/libdir"
echo "llama.cpp: node-llama-cpp $(sed -n 's/.*"version": "\(.*\)".*/\1/p' "$dir/node_modules/node-llama-cpp/package.json" | head -1)"
