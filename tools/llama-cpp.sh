#!/bin/bash
# A real llama.cpp for the GGUF export tests: the npm package node-llama-cpp,
# pinned at 3.21.1, whose platform package @node-llama-cpp/linux-x64 ships
# libllama and libggml* (CPU), and whose bundled llama.cpp source
# (llama/gitRelease.bundle) gives the headers of exactly that build.
#
#   tools/llama-cpp.sh [DIR]
# installs into DIR (default: $APTQ_LLAMA_DIR, else ~/.cache/aptq/node-llama-cpp-3.21.1)
# once, checks out the headers into DIR/include, and prints DIR. Re-runs reuse
# it. Exits non-zero (and says why) if anything is missing: tests that need
# llama.cpp fail, they do not skip.
set -euo pipefail
VERSION=3.21.1
DIR=${1:-${APTQ_LLAMA_DIR:-$HOME/.cache/aptq/node-llama-cpp-$VERSION}}
PKG=$DIR/node_modules/node-llama-cpp
LIB=$DIR/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64
mkdir -p "$DIR"
exec 9>"$DIR/.lock"
flock 9 # one installer at a time (tests run in parallel)
if [ ! -f "$LIB/libllama.v0.4.0.so" ] || [ ! -f "$PKG/llama/gitRelease.bundle" ]; then
    command -v npm >/dev/null || { echo "llama-cpp.sh: npm is missing (tools/install-deps.sh --tests installs it)" >&2; exit 1; }
    # the CPU platform package only: the CUDA and Vulkan ones are 600 MB more
    (cd "$DIR" && npm install --no-audit --no-fund --omit=optional --ignore-scripts -E \
        "node-llama-cpp@$VERSION" "@node-llama-cpp/linux-x64@$VERSION" >&2) ||
        { echo "llama-cpp.sh: npm install of node-llama-cpp@$VERSION failed" >&2; exit 1; }
fi
for f in libllama.v0.4.0.so libggml.v0.4.0.so libggml-base.so; do
    [ -f "$LIB/$f" ] || { echo "llama-cpp.sh: $LIB/$f is missing after the install" >&2; exit 1; }
done
if [ ! -f "$DIR/include/llama.h" ]; then
    rm -rf "$DIR/src.tmp" "$DIR/include"
    git clone -q --no-checkout "$PKG/llama/gitRelease.bundle" "$DIR/src.tmp" >&2
    git -C "$DIR/src.tmp" checkout -q HEAD -- include ggml/include
    mkdir -p "$DIR/include.tmp"
    cp "$DIR"/src.tmp/include/*.h "$DIR"/src.tmp/ggml/include/*.h "$DIR/include.tmp/"
    rm -rf "$DIR/src.tmp"
    mv "$DIR/include.tmp" "$DIR/include"
fi
echo "$DIR"
