#!/bin/bash
# The table of docs/gguf.md: aptq's GGUF exports (GPTQ and RTN on llama.cpp's
# grids) against llama.cpp's own quantizer (llama_model_quantize from a
# full-precision GGUF), perplexity computed by llama.cpp (node-llama-cpp
# 3.21.1, tools/llama-cpp.sh) on WikiText-2 test, 100 x 256 tokens.
#   tools/gguf-table.sh WORKDIR [RANKS] [FTYPES]   (about 5 minutes on 2 cores)
# FTYPES: the llama_ftype values of the rows (default "2 3 7": q4_0, q4_1,
# q8_0; 14, 16, 10: q4_k, q5_k, q2_k, llama.cpp's Q4_K_S, Q5_K_S and Q2_K
# mixtures, which put some tensors in a larger type).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
work=${1:?usage: tools/gguf-table.sh WORKDIR [RANKS]}
np=${2:-2}
ftypes=${3:-2 3 7}
data=${APTQ_DATA:-$here/../shared/data}
aptq=$here/build/aptq
model=$data/wt2-llama-s
tokens=$data/text/wikitext2-test.llama2.u32
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
run() { mpirun --oversubscribe -n "$np" "$aptq" "$@" > /dev/null; }
mkdir -p "$work"
cd "$work"
"$here/tests/gguf_llama.sh" llama > /dev/null
export LLAMA_LIB_DIR=$(cat llama/libdir)
tok=--tokenizer=$data/tokenizer/tokenizer.model
ppl() { # FILE.gguf -> perplexity by llama.cpp
    ./llama/gguf_logprobs logprobs "$1" "$tokens" 100 256 "$1.lp"
    /usr/bin/python3 -c "import numpy as np; print('%.3f' % np.exp(-np.fromfile('$1.lp').mean()))"
}
row() { # NAME FILE.gguf
    printf '| %s | %s | %s |\n' "$1" "$(ppl "$2")" "$(python3 -c "import os; print('%.1f' % (os.path.getsize('$2') / 1e6))")"
}
run export --model="$model" "$tok" --output=f32.gguf --overwrite=yes
echo "| file | perplexity (llama.cpp) | size (MB) |"
echo "|---|---|---|"
row "full precision (F32)" f32.gguf
ftype=([2]=q4_0 [3]=q4_1 [7]=q8_0 [14]=q4_k [16]=q5_k [10]=q2_k)
for ft in $ftypes; do
    g=${ftype[$ft]}
    run quantize --model="$model" --method=gptq --grid="$g" --act_order=yes --static_groups=yes \
        --calib="$data/text/brown.llama2.u32" --nseq=128 --seqlen=256 --output="gptq-$g.h5" --overwrite=yes
    run quantize --model="$model" --method=rtn --grid="$g" --output="rtn-$g.h5" --overwrite=yes
    for m in gptq rtn; do run export --model="$model" --quantized="$m-$g.h5" "$tok" --output="$m-$g.gguf" --overwrite=yes; done
    ./llama/gguf_logprobs quantize f32.gguf "llama-$g.gguf" "$ft" > /dev/null 2>&1
    row "aptq GPTQ, grid = $g" "gptq-$g.gguf"
    row "aptq RTN, grid = $g" "rtn-$g.gguf"
    row "llama.cpp $g (llama-quantize)" "llama-$g.gguf"
done
