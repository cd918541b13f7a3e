# Sourced by the table tools after tools/table-env.sh, with $mname
# (wt2-llama-s, stories260K or default), $set_ (valid or test), $nseq and
# $ncalib set: the model and its calibration and evaluation tokens, as
# docs/results.md#mixed-precision-at-equal-bits describes them. Sets
# model=(--model=...), p (the file-name prefix in $work), seqlen, calib=(...),
# tokens (the evaluation file), tokdesc and calibdesc (for the titles).
#   wt2-llama-s: calibration on the first $ncalib x 256 Brown tokens,
#     evaluation on WikiText-2 $set_.
#   stories260K: its tokenizer is not at hand, so calibration (seed 1) and
#     evaluation tokens (seed 2 valid, 3 test) are sampled from the model
#     (`aptq generate`), max($ncalib, $nseq) x 256 each, made once in $work.
#   default: the embedded default's model and its 32 x 128 calibration
#     (tools/run-default.sh; $ncalib becomes 32), evaluation on $nseq x 128
#     tokens sampled with seeds 4 (valid) and 5 (test), made once in $work.
seqlen=256
if [ "$mname" = default ]; then
  [ -s "$here/build/default/calib.u32" ] || { echo "$(basename "$0"): MODEL=default needs tools/run-default.sh first" >&2; exit 1; }
  model=(--model="$here/build/default/model")
  p=default-
  seqlen=128
  ncalib=32
  for s in 4:valid 5:test; do
    f="$work/default-${s#*:}.u32"
    [ -s "$f" ] || run generate "${model[@]}" --nseq="$nseq" --seqlen=$seqlen --seed="${s%:*}" --output="$f" --overwrite=yes > /dev/null
  done
  calib=(--calib="$here/build/default/calib.u32" --nseq="$ncalib" --seqlen=$seqlen)
  tokens=$work/default-$set_.u32
  tokdesc="tokens sampled from the model (seed $([ "$set_" = valid ] && echo 4 || echo 5))"
  calibdesc="tokens sampled by tools/run-default.sh (seed 1)"
elif [ "$mname" = stories260K ]; then
  model=(--model="$data/stories260K/stories260K.bin")
  p=stories-
  for s in 1:calib 2:valid 3:test; do
    f="$work/stories-${s#*:}.u32"
    [ -s "$f" ] || run generate "${model[@]}" --nseq=$((ncalib > nseq ? ncalib : nseq)) --seqlen=256 --seed="${s%:*}" \
      --output="$f" --overwrite=yes > /dev/null
  done
  calib=(--calib="$work/stories-calib.u32" --nseq="$ncalib" --seqlen=256)
  tokens=$work/stories-$set_.u32
  tokdesc="tokens sampled from the model (seed $([ "$set_" = valid ] && echo 2 || echo 3))"
  calibdesc="sampled tokens (seed 1)"
elif [ "$mname" = wt2-llama-s ]; then
  model=(--model="$data/wt2-llama-s")
  p=
  calib=(--calib="$data/text/brown.llama2.u32" --nseq="$ncalib" --seqlen=256)
  tokens=$data/text/wikitext2-$set_.llama2.u32
  tokdesc="WikiText-2 $set_"
  calibdesc="Brown"
else
  echo "$(basename "$0"): unknown model '$mname'; use wt2-llama-s, stories260K or default" >&2
  exit 2
fi
