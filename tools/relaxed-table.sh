#!/usr/bin/env bash
# The relaxed BoA/aespa form's table (docs/results.md#relaxed-boaaespa-form)
# on wt2-llama-s: GPTQ, APTQ (default forms) and relaxed (q_form = k_form =
# v_form = relaxed) at 4, 3 and 2 bits, per channel and groups of 32,
# calibrated on the first 64 x 256 Brown tokens; perplexity and KL
# divergence on the first 100 x 256 tokens of WikiText-2 SET, with the
# paired differences GPTQ -> relaxed and APTQ -> relaxed (one eval pass
# each, tools/kld-table.sh).
#   usage: tools/relaxed-table.sh [RANKS]   (default 2)
#   SET=valid|test (default valid: the set the form is judged on; test once);
#   WORK=dir keeps the quantized files and reports (default a temporary
#   directory): a second SET reuses the files, a rerun continues.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
ranks=${1:-2}
if [ -z "${WORK:-}" ]; then
  WORK=$(mktemp -d)
  trap 'rm -rf "$WORK"' EXIT
fi
export WORK BITS="4 3 2" NCAL=64 PAIRS="gptq:relaxed aptq:relaxed" SET=${SET:-valid} NSEQ=${NSEQ:-100}
for g in 0 32; do
  GROUP=$g "$here/kld-table.sh" "$ranks"
done
