#!/usr/bin/env bash
# Bit-identity evidence for a change that must not change results: make a set
# of quantized files (rtn, gptq, aptq forms, mixed sweeps, a checkpoint
# resume, bench, layer) at 1, 2 and 4 ranks with one build, again with
# another, and compare them with h5diff (every dataset and attribute but the
# timings) and the reports' figures.
#   usage: tools/identical.sh make BUILD_DIR OUT_DIR
#          tools/identical.sh compare OUT_DIR_A OUT_DIR_B
# Data: ../shared/data beside the project, or APTQ_DATA.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
DATA=${APTQ_DATA:-$here/../shared/data}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1 OMPI_MCA_rmaps_base_oversubscribe=1

# name | ranks | arguments (quantize unless the name says otherwise)
M="--model=$DATA/wt2-llama-s"
C="--calib=$DATA/text/brown.llama2.u32 --nseq=12 --seqlen=64"
S="--model=$DATA/stories260K/stories260K.bin"
cases() {
  cat << EOF
rtn_g32|1 2 4|$M --method=rtn --bits=4 --group_size=32
rtn_sym3|1 2 4|$M --method=rtn --bits=3 --sym=yes $C
gptq_act|1 2 4|$M --method=gptq --bits=4 --group_size=32 --act_order=yes $C
gptq_static_nts|1 2 4|$M --method=gptq --bits=3 --group_size=32 --act_order=yes --static_groups=yes --true_sequential=no $C
gptq_mse_fp16|1 2|$M --method=gptq --bits=2 --mse=yes --scale_dtype=fp16 --sym=yes $C
gptq_scalapack|2 4|$M --method=gptq --bits=4 --factor=scalapack --nb=32 --act_order=yes $C
gptq_stream|2 4|$M --method=gptq --bits=4 --factor=scalapack --hessian_reduce=stream --stream_tokens=128 --nb=16 $C
gptq_stream_nts|4|$M --method=gptq --bits=3 --factor=scalapack --hessian_reduce=stream --true_sequential=no --factor_algorithm=potri $C
gptq_allreduce|2|$M --method=gptq --bits=4 --factor=scalapack --hessian_reduce=allreduce $C
gptq_bf16|1 2|$M --method=gptq --bits=4 --activations=bf16 $C
gptq_keep|1 2|$M --method=gptq --bits=4 --keep_attention=yes $C
aptq_default|1 2 4|$M --method=aptq --bits=3 --group_size=32 $C
aptq_kron|1 2 4|$M --method=aptq --bits=4 --q_form=kron --k_form=kron --v_form=gptq --act_order=yes $C
aptq_mixed_qk|1 2|$M --method=aptq --bits=2 --q_form=gptq --k_form=kron --v_form=kron --true_sequential=no $C
aptq_scalapack|2 4|$M --method=aptq --bits=4 --factor=scalapack --nb=32 $C
aptq_stories|1 2 4|$S --method=aptq --bits=3 --calib=STORIES --nseq=8 --seqlen=32
sweep_trace|1 2 4|$M --method=aptq --R=0.5,1 --group_size=32 $C --fisher_nseq=4
sweep_knap|1 2|$M --method=gptq --R=0.5,0.75 --allocation=knapsack $C --fisher_nseq=4
sweep_layer|1 2|$M --method=aptq --R=0.5 --sensitivity=layer $C
sweep_random|1 2|$M --method=gptq --R=0.6,0.4 --allocation=random --seed=7 $C
sweep_block|1|$M --method=gptq --R=0.5 --allocation=blockwise $C
ckpt|1 2|$M --method=aptq --bits=3 --group_size=32 $C --checkpoint=CKDIR
bench_tiny|1 2 4|BENCH --shape=tiny --blocks=2 --nseq=4 --seqlen=64
layer_gptq|1 2 4|LAYER --bits=4 --group_size=16 --act_order=yes
layer_kron|1 2|LAYER --bits=3 --hessian_form=kron
EOF
}

make_all() {
  local build=$1 out=$2
  mkdir -p "$out"
  out=$(cd "$out" && pwd)
  local aptq=$build/aptq
  PY=/usr/bin/python3
  $PY "$here/tests/random_layer.py" "$out/layer_in.h5" 96 64 --heads 32 > /dev/null
  # stories260K has its own 512-token vocabulary: sequences sampled from it
  mpirun -n 1 "$aptq" generate $S --nseq=8 --seqlen=32 --seed=5 --output="$out/stories.u32" < /dev/null > /dev/null
  cases | while IFS='|' read -r name ranks args; do
    for np in $ranks; do
      local o="$out/$name-np$np" sub=quantize a=$args
      case $args in
        BENCH*) sub=bench a=${args#BENCH} ;;
        LAYER*) sub=layer a="--input=$out/layer_in.h5 ${args#LAYER}" ;;
      esac
      a=${a//CKDIR/$o.ck}
      a=${a//STORIES/$out/stories.u32}
      echo "== $name np$np"
      mpirun -n "$np" "$aptq" $sub $a --output="$o.h5" --report="$o.json" < /dev/null > "$o.log" 2>&1 || {
        echo "failed: $name np$np"; tail -3 "$o.log"; }
    done
  done
  # a checkpoint run interrupted after its first block, resumed on 2 ranks
  local a="$M --method=aptq --bits=3 --group_size=32 $C --checkpoint=$out/resume.ck"
  "$here/tests/interrupt.sh" USR1 "$out/resume.ck/state.h5" mpirun -n 2 "$aptq" quantize $a --output="$out/resume-np2.h5" || true
  mpirun -n 2 "$aptq" quantize $a --resume=yes --output="$out/resume-np2.h5" > "$out/resume-np2.log" 2>&1 || echo "failed: resume"
  # eval of one quantized file (perplexity in the report)
  mpirun -n 2 "$aptq" eval $M --tokens="$DATA/text/wikitext2-test.llama2.u32" --nseq=8 --seqlen=128 \
    --quantized="$out/aptq_default-np1.h5" --report="$out/eval-np2.json" > /dev/null 2>&1 || echo "failed: eval"
}

compare_all() {
  /usr/bin/python3 "$here/tools/h5same.py" "$1" "$2"
}

case ${1:-} in
  make) make_all "$2" "$3" ;;
  compare) compare_all "$2" "$3" ;;
  *) echo "usage: $0 make BUILD_DIR OUT_DIR | compare OUT_A OUT_B" >&2; exit 2 ;;
esac
