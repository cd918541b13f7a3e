#!/bin/bash
# The anchor table of docs/gguf.md: aptq's GPTQ and APTQ on llama.cpp's grids,
# exported, against llama.cpp's own quantizer (llama_model_quantize, what
# llama-quantize runs) at the same ggml type, without and with an importance
# matrix computed by llama.cpp from the same calibration tokens
# (tests/gguf_logprobs.c imatrix: llama-imatrix's collector). Perplexity by
# llama.cpp (node-llama-cpp 3.21.1, tools/llama-cpp.sh) on WikiText-2 test,
# 100 x 256 tokens; calibration: the first 128 x 256 Brown tokens.
#   tools/anchor-table.sh WORKDIR [RANKS] [TYPES]
# TYPES (default "q4_0 q4_k q3_k q2_k"; "" for none): a type whose grid aptq
# quantize does not accept (grid = q4_k, q2_k before the K-quants with mins
# land) gets its llama.cpp columns and a note instead of aptq's; the
# mixtures Q4_K_M, Q3_K_M and Q2_K (llama.cpp's default for those ftypes)
# follow, each with aptq's own mixture at the same bits per weight: grid =
# ggml with avg_bits = the llama.cpp file's bits per weight of the linear
# layers (docs/mixed.md#ggml; its budget counts them as that file does).
# 33 minutes on 2 busy cores on 2026-12-03 (each perplexity 1-2 minutes),
# aptq's mixtures about 10 more (TYPES "" with the rest cached: 10). Results
# are cached in WORKDIR: a rerun redoes only what is missing. After the table,
# paired differences (per-sequence mean NLL, 100 sequences) with standard errors.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
work=${1:?usage: tools/anchor-table.sh WORKDIR [RANKS] [TYPES]}
np=${2:-2}
types=${3-q4_0 q4_k q3_k q2_k}
data=${APTQ_DATA:-$here/../shared/data}
aptq=$here/build/aptq
model=$data/wt2-llama-s
tokens=$data/text/wikitext2-test.llama2.u32
calib=$data/text/brown.llama2.u32
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
run() { nice mpirun --oversubscribe -n "$np" "$aptq" "$@" > /dev/null; }
say() { echo "anchor-table: $*" >&2; }
mkdir -p "$work"
cd "$work"
"$here/tests/gguf_llama.sh" llama > /dev/null
export LLAMA_LIB_DIR=$(cat llama/libdir) LLAMA_THREADS=${LLAMA_THREADS:-1} # 1: no spinning threads on a shared machine
L=./llama/gguf_logprobs
tok=--tokenizer=$data/tokenizer/tokenizer.model
ppl() { # FILE.gguf -> perplexity by llama.cpp (cached next to the file)
    [ -s "$1.ppl" ] || { nice $L logprobs "$1" "$tokens" 100 256 "$1.lp" &&
        /usr/bin/python3 -c "import numpy as np; print('%.3f' % np.exp(-np.fromfile('$1.lp').mean()))" > "$1.ppl"; }
    cat "$1.ppl"
}
mb() { /usr/bin/python3 -c "import os; print('%.2f' % (os.path.getsize('$1') / 1e6))"; }
bpw() { $L bpw "$1" | cut -d' ' -f1; }
# llama_ftype of the pure type (llama-quantize --pure) and the padding it needs
declare -A ftype=([q4_0]=2 [q4_1]=3 [q8_0]=7 [q2_k]=10 [q3_k]=11 [q4_k]=14 [q5_k]=16 [q6_k]=18)
declare -A block=([q4_0]=32 [q4_1]=32 [q8_0]=32 [q2_k]=256 [q3_k]=256 [q4_k]=256 [q5_k]=256 [q6_k]=256)
for b in 32 256; do # the full-precision exports and llama.cpp's imatrix of each
    [ -s "f32-$b.gguf" ] || run export --model="$model" "$tok" --mlp_block=$b --output="f32-$b.gguf" --overwrite=yes
    [ -s "imatrix-$b.gguf" ] || nice $L imatrix "f32-$b.gguf" "$calib" 128 256 "imatrix-$b.gguf" > /dev/null
done
llama_q() { # NAME FTYPE BLOCK IMATRIX|- [pure]
    [ -s "$1" ] || nice $L quantize "f32-$3.gguf" "$1" "$2" "$4" ${5:-} > /dev/null 2>&1
}
grid_ok() { # aptq quantize accepts grid = $1?
    local out
    out=$(mpirun --oversubscribe -n 1 "$aptq" quantize --grid="$1" 2>&1 || true)
    [[ $out != *"bad value '$1' for 'grid'"* ]]
}
echo "| type (bits per weight) | size (MB) | aptq GPTQ | aptq APTQ | llama.cpp | llama.cpp + imatrix |"
echo "|---|---|---|---|---|---|"
echo "| F32 | $(mb f32-32.gguf) | $(ppl f32-32.gguf) | | | |"
notes=()
for g in $types; do
    ft=${ftype[$g]} b=${block[$g]}
    say "$g"
    llama_q "llama-$g.gguf" "$ft" "$b" - pure
    llama_q "llama-$g-im.gguf" "$ft" "$b" "imatrix-$b.gguf" pure
    gp="—" ap="—"
    if grid_ok "$g"; then
        ours=(--grid="$g" --act_order=yes --calib="$calib" --nseq=128 --seqlen=256 --overwrite=yes)
        [ "$b" = 256 ] || ours+=(--static_groups=yes) # the K-quant grids set static groups themselves
        for m in gptq aptq; do
            [ -s "$m-$g.gguf" ] || { run quantize --model="$model" --method=$m "${ours[@]}" --output="$m-$g.h5" &&
                run export --model="$model" --quantized="$m-$g.h5" "$tok" --output="$m-$g.gguf" --overwrite=yes; }
        done
        gp=$(ppl "gptq-$g.gguf") ap=$(ppl "aptq-$g.gguf")
        [ "$(bpw "gptq-$g.gguf")" = "$(bpw "llama-$g.gguf")" ] || { say "gptq-$g.gguf and llama-$g.gguf differ in bits per weight"; exit 1; }
    else
        notes+=("$g: aptq quantize does not accept grid = $g yet (llama.cpp's columns only)")
    fi
    echo "| ${g^^} ($(bpw "llama-$g.gguf")) | $(mb "llama-$g-im.gguf") | $gp | $ap | $(ppl "llama-$g.gguf") | $(ppl "llama-$g-im.gguf") |"
done
for mix in Q4_K_M:15 Q3_K_M:12 Q2_K:10; do # llama.cpp's own per-tensor mixtures (not pure)
    n=${mix%:*} ft=${mix#*:}
    llama_q "llama-$n.gguf" "$ft" 256 -
    llama_q "llama-$n-im.gguf" "$ft" 256 imatrix-256.gguf
    echo "| llama.cpp's mixture $n ($(bpw "llama-$n.gguf"): $($L bpw "llama-$n.gguf" | cut -d' ' -f2- | sed 's/ /, /g')) | $(mb "llama-$n-im.gguf") | | | $(ppl "llama-$n.gguf") | $(ppl "llama-$n-im.gguf") |"
done
mixes="Q4_K_M Q3_K_M Q2_K"
for n in $mixes; do # aptq's mixtures (grid = ggml) at the bits per weight of llama.cpp's
    avg=$(bpw "llama-$n.gguf")
    say "grid = ggml at avg_bits = $avg ($n)"
    for m in gptq aptq; do
        [ -s "$m-ggml-$n.gguf" ] || { run quantize --model="$model" --method=$m --grid=ggml --avg_bits="$avg" --act_order=yes \
            --calib="$calib" --nseq=128 --seqlen=256 --output="$m-ggml-$n.h5" --overwrite=yes &&
            run export --model="$model" --quantized="$m-ggml-$n.h5" "$tok" --output="$m-ggml-$n.gguf" --overwrite=yes; }
    done
    ours=$(bpw "gptq-ggml-$n.gguf")
    /usr/bin/python3 -c "import sys; sys.exit(not $ours <= $avg)" || { say "gptq-ggml-$n.gguf has $ours bits per weight, over $avg"; exit 1; }
    echo "| aptq grid = ggml, avg_bits = $avg ($ours: $($L bpw "gptq-ggml-$n.gguf" | cut -d' ' -f2- | sed 's/ /, /g')) | $(mb "gptq-ggml-$n.gguf") | $(ppl "gptq-ggml-$n.gguf") | $(ppl "aptq-ggml-$n.gguf") | | |"
done
paired() { # A B: mean NLL per token of A minus B over the 100 sequences, and its standard error (paired by sequence)
    /usr/bin/python3 -c "
import numpy as np
d = np.fromfile('$1.lp').reshape(100, -1).mean(1) - np.fromfile('$2.lp').reshape(100, -1).mean(1)
print('paired: %s - %s: %+.4f nats per token (standard error %.4f over 100 sequences), perplexity ratio %.4f'
      % ('$1', '$2', -d.mean(), d.std(ddof=1) / 10, np.exp(-d.mean())))"
}
for g in $types; do
    [ -s "gptq-$g.gguf.lp" ] || continue
    for b in "llama-$g.gguf" "llama-$g-im.gguf" "aptq-$g.gguf"; do paired "gptq-$g.gguf" "$b"; done
done
for g in $types; do paired "llama-$g-im.gguf" "llama-$g.gguf"; done
for n in $mixes; do
    for b in "llama-$n.gguf" "llama-$n-im.gguf" "aptq-ggml-$n.gguf"; do paired "gptq-ggml-$n.gguf" "$b"; done
    for b in "llama-$n.gguf" "llama-$n-im.gguf"; do paired "aptq-ggml-$n.gguf" "$b"; done
done
for n in "${notes[@]}"; do echo "anchor-table: $n" >&2; done
