#!/usr/bin/env bash
# The Slurm jobs (jobs/*.sbatch) on a real single-node Slurm started here
# (tests/slurm/slurm-local.sh): quantize + eval, the R sweep as one task and
# as a job array (the array's files equal the one-task sweep's), the scaling
# study (aptq bench, strong and weak), and a job with a bad deck whose exit
# status and log carry aptq's error. Exit 77 (CTest: skipped) without root or without slurm-wlm/munge.
#   usage: test_jobs.sh APTQ_BINARY
set -uo pipefail
aptq=$(readlink -f "${1:?usage: test_jobs.sh APTQ_BINARY}")
here=$(cd "$(dirname "$0")/../.." && pwd)
for b in slurmctld slurmd sbatch munged; do
  if ! command -v "$b" > /dev/null && [ ! -x "/usr/sbin/$b" ]; then echo "skipped: $b not installed (apt-get install slurm-wlm munge)"; exit 77; fi
done
[ "$(id -u)" = 0 ] || { echo "skipped: starting slurmctld/slurmd needs root"; exit 77; }
pgrep -x slurmctld > /dev/null && { echo "skipped: a slurmctld is already running here"; exit 77; }

work=$(mktemp -d /tmp/aptq-slurm-XXXXXX)
stop() { "$here/tests/slurm/slurm-local.sh" stop "$work/slurm"; }
trap 'stop; rm -rf "$work"' EXIT
# a Slurm that cannot start here (ports taken, no munge) is the machine's problem, not the jobs': skipped, loudly
conf_line=$("$here/tests/slurm/slurm-local.sh" start "$work/slurm") || { echo "skipped: Slurm did not start on this machine (logs above)"; exit 77; }
eval "$conf_line"
[ -n "${SLURM_CONF:-}" ] || { echo "FAILED: no SLURM_CONF from slurm-local.sh"; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
failures=0
check() { if eval "$2"; then echo "PASSED $1"; else echo "FAILED $1"; failures=$((failures + 1)); fi; }

# inputs: the embedded default model, calibration and evaluation tokens
mpirun -n 1 "$aptq" synth --output="$work/model" > /dev/null &&
  mpirun -n 1 "$aptq" generate --model="$work/model" --nseq=16 --seqlen=64 --seed=1 --output="$work/calib.u32" > /dev/null &&
  mpirun -n 1 "$aptq" generate --model="$work/model" --nseq=8 --seqlen=64 --seed=2 --output="$work/eval.u32" > /dev/null ||
  { echo "FAILED: inputs"; exit 1; }
cat > "$work/job.deck" <<EOF
model  = $work/model
calib  = $work/calib.u32
seqlen = 64
nseq   = 16
method = gptq
bits   = 4
group_size = 32
EOF
cd "$work"
export APTQ=$aptq APTQ_OUT=$work/results APTQ_EVAL="$work/eval.u32 8 64"

sbatch --wait -n 2 -J q "$here/jobs/quantize.sbatch" job.deck > sbatch.out
rc=$?
id=$(awk '{print $4}' sbatch.out)
check "quantize.sbatch: exit 0" "[ $rc = 0 ]"
check "quantize.sbatch: file, reports and log named by job id" \
  "[ -s results/q-$id/model.h5 ] && [ -s results/q-$id/quantize.json ] && [ -s results/q-$id/eval.json ] && grep -q 'done' aptq-q-$id.log"
check "quantize.sbatch: 2 ranks, perplexity reported" \
  "/usr/bin/python3 -c \"import json,sys; r=json.load(open('results/q-$id/eval.json')); q=json.load(open('results/q-$id/quantize.json')); sys.exit(not (r['perplexity'] > 1 and q['ranks'] == 2))\""

export APTQ_R=0.5,1.0
sbatch --wait -n 2 -J s "$here/jobs/sweep-R.sbatch" job.deck --method=aptq > sbatch.out
rc=$?
sid=$(awk '{print $4}' sbatch.out)
check "sweep-R.sbatch one task: exit 0, one file per R" "[ $rc = 0 ] && [ -s results/s-$sid/model-R0.5.h5 ] && [ -s results/s-$sid/model-R1.h5 ] && [ -s results/s-$sid/eval-R1.json ]"
sbatch --wait -n 2 -J a --array=0-1 "$here/jobs/sweep-R.sbatch" job.deck --method=aptq > sbatch.out
rc=$?
aid=$(awk '{print $4}' sbatch.out)
check "sweep-R.sbatch array: exit 0, task outputs named by array job and task id" \
  "[ $rc = 0 ] && [ -s results/a-${aid}_0/model-R0.5.h5 ] && [ -s results/a-${aid}_1/model-R1.h5 ] && [ -s aptq-a-${aid}_0.log ] && [ -s aptq-a-${aid}_1.log ]"
check "sweep-R.sbatch: array task files identical to the one-task sweep" \
  "h5diff -q results/a-${aid}_0/model-R0.5.h5 results/s-$sid/model-R0.5.h5 /layers /layers && h5diff -q results/a-${aid}_1/model-R1.h5 results/s-$sid/model-R1.h5 /layers /layers"
sbatch --wait -n 2 -J bad --array=2 "$here/jobs/sweep-R.sbatch" job.deck > /dev/null 2>&1
rc=$?
check "sweep-R.sbatch: an array index beyond the R list fails" "[ $rc != 0 ]"
APTQ_AVG_BITS=3 sbatch --wait -n 2 -J both "$here/jobs/sweep-R.sbatch" job.deck > /dev/null 2>&1
rc=$?
check "sweep-R.sbatch: APTQ_R and APTQ_AVG_BITS together fail" "[ $rc != 0 ]"
unset APTQ_R

# the recommended mode: one avg_bits budget per array task, files named as aptq's own sweep names them
APTQ_AVG_BITS=3,3.5 sbatch --wait -n 2 -J v --array=0-1 "$here/jobs/sweep-R.sbatch" job.deck --method=aptq > sbatch.out
rc=$?
vid=$(awk '{print $4}' sbatch.out)
check "sweep-R.sbatch with APTQ_AVG_BITS: one budget per task, each within it, evaluated" \
  "[ $rc = 0 ] && [ -s results/v-${vid}_1/eval-b3.5.json ] && /usr/bin/python3 -c \"import json,sys; a=json.load(open('results/v-${vid}_0/quantize-b3.json')); b=json.load(open('results/v-${vid}_1/quantize-b3.5.json')); sys.exit(not (a['average_bits'] <= 3 < b['average_bits'] <= 3.5))\""

APTQ_HOME=$here SHAPE=tiny NSEQ=4 SEQLEN=64 WEAK=2 sbatch --wait -n 2 -J sc "$here/jobs/scaling.sbatch" --blocks=2 > sbatch.out
rc=$?
cid=$(awk '{print $4}' sbatch.out)
check "scaling.sbatch: exit 0, strong and weak tables with 1 and 2 ranks" \
  "[ $rc = 0 ] && [ \$(wc -l < results/sc-$cid/strong.tsv) = 3 ] && [ \$(wc -l < results/sc-$cid/weak.tsv) = 3 ]"
check "scaling.sbatch: options reach every run, weak scaling grows the sequences" \
  "/usr/bin/python3 -c \"import json,sys; r=[json.load(open(f'results/sc-$cid/{k}-np{p}.json')) for k in ('strong','weak') for p in (1,2)]; sys.exit(not (all(x['blocks'] == 2 for x in r) and [x['calib_nseq'] for x in r] == [4, 4, 2, 4]))\""

printf 'model = %s/model\nbits = 7\n' "$work" > bad.deck
sbatch --wait -n 2 -J bad "$here/jobs/quantize.sbatch" bad.deck > sbatch.out 2>&1
rc=$?
bid=$(awk '{print $4}' sbatch.out)
check "quantize.sbatch with a bad deck: job fails, log has aptq's one-line error" \
  "[ $rc != 0 ] && [ \$(grep -c \"aptq: error: .*bad value '7' for 'bits'\" aptq-bad-$bid.log) = 1 ] && [ ! -e results/bad-$bid/model.h5 ]"
sacct_state=$(scontrol show job "$bid" 2> /dev/null | sed -n 's/.*JobState=\([A-Z]*\).*/\1/p')
check "quantize.sbatch with a bad deck: Slurm records the job as FAILED" "[ \"$sacct_state\" = FAILED ]"

# checkpoint/restart through Slurm: USR1 to the batch shell (as --signal=B:USR1@300 sends it),
# the job stops after a block with its checkpoint; the same job submitted again resumes it
if [ -d "${APTQ_DATA:-}/wt2-llama-s" ]; then
  printf 'model = %s\ncalib = %s\nseqlen = 256\nnseq = 32\nmethod = aptq\nbits = 3\ngroup_size = 32\n' \
    "$APTQ_DATA/wt2-llama-s" "$APTQ_DATA/text/brown.llama2.u32" > ck.deck
  unset APTQ_EVAL
  export APTQ_CHECKPOINT=$work/ck
  jid=$(sbatch -n 2 -J ck "$here/jobs/quantize.sbatch" ck.deck | awk '{print $4}')
  for i in $(seq 1 1200); do [ -e "$work/ck/state.h5" ] && break; sleep 0.1; done
  scancel --signal=USR1 --batch "$jid"
  for i in $(seq 1 600); do squeue -h -j "$jid" 2> /dev/null | grep -q . || break; sleep 0.1; done
  check "quantize.sbatch: USR1 stops the job after a block with its checkpoint" \
    "grep -q 'stopped by SIGUSR1 after block' aptq-ck-$jid.log && [ -e $work/ck/state.h5 ] && [ ! -e results/ck-$jid/model.h5 ]"
  sbatch --wait -n 2 -J ck "$here/jobs/quantize.sbatch" ck.deck > sbatch.out
  rc=$?
  jid2=$(awk '{print $4}' sbatch.out)
  mpirun -n 2 "$aptq" quantize ck.deck --output="$work/full.h5" > /dev/null 2>&1
  check "quantize.sbatch: the resubmitted job resumes; result identical to an uninterrupted run" \
    "[ $rc = 0 ] && grep -q resuming aptq-ck-$jid2.log && h5diff -q results/ck-$jid2/model.h5 $work/full.h5 /layers /layers"
  unset APTQ_CHECKPOINT
fi

[ $failures = 0 ] && echo "slurm jobs: all PASSED" || { echo "slurm jobs: $failures FAILED"; tail -20 aptq-*.log; exit 1; }
