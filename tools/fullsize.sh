#!/usr/bin/env bash
# Full-size benchmark (issue 15, docs/scaling.md "Full-size pipeline"): the
# whole pipeline on a hub-shaped synthetic checkpoint made on the fly
# (`aptq synth --shape`: LLaMA-7B or Llama-3.1-8B widths, BF16, 5 GB shards
# with the index), at RANKS ranks with a small calibration set:
#   synth -> quantize (APTQ, mixed 2/4-bit with the backward Fisher estimate)
#   -> eval (perplexity and KL divergence against the full-precision model)
#   -> export to GGUF (where the result can be exported; else the reason)
# Per phase it prints the wall time, the CPU time of all ranks (user +
# system: on a shared machine the figure that does not depend on the other
# jobs), the peak resident memory of each rank
# (ru_maxrss from wait4, i.e. the kernel's VmHWM at exit) against the memory
# plan's prediction (the predicted_peak_bytes of quantize's and eval's
# reports), and the disk I/O of all ranks (/proc/PID/io after the rank is
# reaped: read_bytes/write_bytes reached the device, rchar/wchar through
# read/write calls; pages of the mapped checkpoint are in read_bytes only
# when they were not in the page cache). Never part of the test suite.
#   usage: tools/fullsize.sh WORKDIR [--shape=8b|7b|13b|70b|tiny] [--blocks=N] [--vocab=N] [--keep]
# WORKDIR: an empty or new directory outside the repository and outside the
# shared data (the model is 15-16 GB at 32 blocks); it is removed at the end
# unless --keep. Environment (defaults in brackets):
#   RANKS [2]  NSEQ [4] calibration sequences  SEQLEN [512]  EVAL_NSEQ [4]
#   QUANT_ARGS [--method=aptq --R=0.5 --fisher_method=backward]
#   CALIB [DATA/text/brown.llama2.u32]  TOKENS [DATA/text/wikitext2-test.llama2.u32]
#   APTQ_DATA [../shared/data]  APTQ [build/aptq]
#   LAUNCH ["mpirun --oversubscribe -n"] the launcher, given the rank count
# The full run (32 blocks, about an hour per model on 2 cores):
#   tools/fullsize.sh /scratch/fullsize-8b --shape=8b
set -euo pipefail
if [ "${1:-}" = --rank-wrap ]; then # one rank: its peak RSS and I/O into PREFIX.rRANK
  prefix=$2
  shift 2
  exec python3 - "$prefix.r${OMPI_COMM_WORLD_RANK:-${PMI_RANK:-0}}" "$@" << 'EOF'
import os, signal, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
def forward(sig, _frame):  # mpirun's kill reaches aptq, which removes its .partial files
    try:
        os.kill(pid, sig)
    except ProcessLookupError:  # already gone (the same signal sent to the whole group)
        pass
for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(sig, forward)
_, status, ru = os.wait4(pid, 0)  # retried after a handled signal (PEP 475)
io = dict(l.split(": ") for l in open("/proc/self/io").read().split("\n") if l)  # the reaped child's counts are in ours
with open(sys.argv[1], "w") as f:
    cpu_ms = round((ru.ru_utime + ru.ru_stime) * 1000)
    f.write(f"{ru.ru_maxrss * 1024} {io['read_bytes']} {io['write_bytes']} {io['rchar']} {io['wchar']} {cpu_ms}\n")
sys.exit(os.waitstatus_to_exitcode(status))
EOF
fi
here=$(cd "$(dirname "$0")/.." && pwd)
self="$here/tools/$(basename "$0")"
[ $# -ge 1 ] && [ "${1#--}" = "$1" ] || {
  sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}
work=$(realpath -m "$1")
shift
shape=8b blocks= vocab= keep=no
for a in "$@"; do
  case $a in
    --shape=*) shape=${a#--shape=} ;;
    --blocks=*) blocks=${a#--blocks=} ;;
    --vocab=*) vocab=${a#--vocab=} ;;
    --keep) keep=yes ;;
    *) echo "fullsize.sh: unknown argument '$a' (--shape=, --blocks=, --vocab=, --keep)" >&2; exit 2 ;;
  esac
done
data=$(realpath -m "${APTQ_DATA:-$here/../shared/data}")
case "$work/" in
  "$here"/*) echo "fullsize.sh: WORKDIR '$work' is inside the repository; give a scratch directory outside it" >&2; exit 2 ;;
  "$data"/*) echo "fullsize.sh: WORKDIR '$work' is under the shared data '$data', which is read-only; give a scratch directory" >&2; exit 2 ;;
esac
if [ -e "$work" ] && [ -n "$(ls -A "$work")" ]; then
  echo "fullsize.sh: WORKDIR '$work' is not empty; give a new or empty directory (it is removed at the end)" >&2
  exit 2
fi
ranks=${RANKS:-2} nseq=${NSEQ:-4} seqlen=${SEQLEN:-512} eval_nseq=${EVAL_NSEQ:-4}
quant_args=${QUANT_ARGS:---method=aptq --R=0.5 --fisher_method=backward}
calib=${CALIB:-$data/text/brown.llama2.u32} tokens=${TOKENS:-$data/text/wikitext2-test.llama2.u32}
aptq=${APTQ:-$here/build/aptq}
launch=${LAUNCH:-mpirun --oversubscribe -n}
export OMPI_ALLOW_RUN_AS_ROOT=${OMPI_ALLOW_RUN_AS_ROOT:-1} OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
mkdir -p "$work"
cleanup() { [ "$keep" = yes ] || rm -rf "$work"; }
trap cleanup EXIT
model=$work/model
printf 'fullsize.sh: %s shape%s, %s ranks, calibration %s x %s tokens, eval %s x %s tokens, %s\n' "$shape" \
  "${blocks:+, $blocks blocks}" "$ranks" "$nseq" "$seqlen" "$eval_nseq" "$seqlen" "$(date -u '+%Y-%m-%d %H:%M UTC')"
printf '%-10s %9s %9s %14s %14s %12s %12s %12s %12s  %s\n' phase wall_s cpu_s peak_rss_max predicted read_bytes write_bytes rchar wchar \
  "peak_rss per rank"
t0=$(date +%s.%N)

# phase NAME REPORT ARGS...: aptq ARGS at $ranks ranks; REPORT (or -): its JSON report
phase() {
  local name=$1 report=$2 start end rc=0
  shift 2
  start=$(date +%s.%N)
  $launch "$ranks" "$self" --rank-wrap "$work/$name" "$aptq" "$@" > "$work/$name.log" 2>&1 || rc=$?
  end=$(date +%s.%N)
  python3 - "$work/$name" "$ranks" "$name" "$start" "$end" "$report" << 'EOF'
import json, os, sys
prefix, ranks, name, start, end, report = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), float(sys.argv[5]), sys.argv[6]
rows = [list(map(int, open(f"{prefix}.r{r}").read().split())) for r in range(ranks) if os.path.exists(f"{prefix}.r{r}")]
gb = lambda b: f"{b / 2**30:.3f} GiB"
pred = "-"
if report != "-" and os.path.exists(report):
    mem = json.load(open(report)).get("memory", {})
    if "predicted_peak_bytes" in mem:
        pred = gb(mem["predicted_peak_bytes"])
peak = max(r[0] for r in rows) if rows else 0
sums = [sum(r[i] for r in rows) for i in range(1, 5)]
cpu = sum(r[5] for r in rows if len(r) > 5) / 1000
print(f"{name:<10} {end - start:9.1f} {cpu:9.1f} {gb(peak):>14} {pred:>14} " + " ".join(f"{gb(s):>12}" for s in sums) + "  " +
      " ".join(gb(r[0]) for r in rows), flush=True)
EOF
  if [ $rc -ne 0 ]; then
    echo "  $name failed (exit $rc): $(grep -m1 'error' "$work/$name.log" || tail -1 "$work/$name.log")"
    return $rc
  fi
}

synth_args=(--shape="$shape" --output="$model")
[ -n "$blocks" ] && synth_args+=(--blocks="$blocks")
[ -n "$vocab" ] && synth_args+=(--vocab="$vocab")
phase synth - synth "${synth_args[@]}"
echo "  model: $(du -sh "$model" | cut -f1) in $(ls "$model" | grep -c safetensors$) shard(s)"
# shellcheck disable=SC2086 # QUANT_ARGS is a list of options
phase quantize "$work/q.json" quantize --model="$model" --calib="$calib" --nseq="$nseq" --seqlen="$seqlen" $quant_args \
  --output="$work/q.h5" --report="$work/q.json"
python3 - "$work"/q*.json << 'EOF'
import json, sys
for path in sys.argv[1:]:
    r = json.load(open(path))
    ph = r.get("phase_seconds", {})
    print("  quantize " + path.rsplit("/", 1)[1] + ": " + ", ".join(f"{k} {v:.1f} s" for k, v in ph.items()) +
          f"; average bits {r.get('average_bits', 0):.4f}, relative error {r.get('relative_error', 0):.5f}")
EOF
q=$(ls "$work"/q*.h5 | head -1)
phase eval "$work/e.json" eval --model="$model" --tokens="$tokens" --nseq="$eval_nseq" --seqlen="$seqlen" --quantized="$q" \
  --report="$work/e.json"
grep -E '^(perplexity|full-precision perplexity|KL divergence)' "$work/eval.log" | sed 's/^/  /'
tok=()
[ -f "$model/tokenizer.model" ] || tok=(--tokenizer="$data/tokenizer/tokenizer.model")
if phase export - export --model="$model" --quantized="$q" --output="$work/q.gguf" "${tok[@]}"; then
  echo "  gguf: $(du -sh "$work/q.gguf" | cut -f1)"
else
  echo "  export not possible for this result (aptq's reason above); nothing is wrong with the run"
fi
printf "total wall time %.1f s; disk used at the end %s\n" "$(python3 -c "import sys; print(float(sys.argv[1]) - float(sys.argv[2]))" "$(date +%s.%N)" "$t0")" "$(du -sh "$work" | cut -f1)"
