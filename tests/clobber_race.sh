#!/usr/bin/env bash
# The final rename never replaces a file that appeared while the run worked
# (overwrite = no), for the clobbering cases:
#   clobber_race.sh appeared TMP RANKS APTQ DATA
#       one run; once its OUTPUT.partial-PID exists the script writes the
#       output itself: the run must fail with one error line, the
#       script's file must be left as it was.
#   clobber_race.sh race TMP RANKS APTQ DATA
#       two runs with the same output started together (bits 4 and 3):
#       exactly one succeeds, the other fails with one error line, the
#       output is the winner's complete file (its bits).
# Prints one line per run (exit status, error line) and exits 1 on failure.
set -uo pipefail
mode=$1 tmp=$2 ranks=$3 aptq=$4 data=$5
run() { # NAME BITS: the GPTQ run of wt2-llama-s, into tmp/NAME.out, NAME.err, NAME.rc
  mpirun --oversubscribe -n "$ranks" "$aptq" quantize --model="$data/wt2-llama-s" --method=gptq --calib="$data/text/brown.llama2.u32" \
    --nseq="$3" --seqlen=256 --bits="$2" --output="$tmp/o.h5" > "$tmp/$1.out" 2> "$tmp/$1.err"
  echo $? > "$tmp/$1.rc"
}
one_error() { # NAME REGEX: exactly one 'aptq: error' line, matching
  local n
  n=$(grep -c '^aptq: error' "$tmp/$1.err")
  [ "$n" = 1 ] || { echo "$1: expected one 'aptq: error' line, got $n"; return 1; }
  grep '^aptq: error' "$tmp/$1.err" | grep -Eq "$2" || { echo "$1: unexpected error: $(grep '^aptq: error' "$tmp/$1.err")"; return 1; }
}
case $mode in
  appeared)
    run a 4 32 &
    pid=$!
    for i in $(seq 1 2000); do compgen -G "$tmp/o.h5.partial-*" > /dev/null && break; kill -0 $pid 2> /dev/null || break; sleep 0.01; done
    compgen -G "$tmp/o.h5.partial-*" > /dev/null || { wait $pid; echo "appeared: the temporary output never appeared"; exit 1; }
    echo intruder > "$tmp/o.h5"
    wait $pid
    echo "run: exit $(cat "$tmp/a.rc")"
    [ "$(cat "$tmp/a.rc")" != 0 ] || { echo "appeared: the run succeeded"; exit 1; }
    one_error a "output '.*/o.h5' was created by another run while this one worked; .*nothing was replaced" || exit 1
    grep -qx intruder "$tmp/o.h5" || { echo "appeared: the other file was replaced"; exit 1; }
    ;;
  race)
    run a 4 8 &
    run b 3 8 &
    wait
    ra=$(cat "$tmp/a.rc") rb=$(cat "$tmp/b.rc")
    echo "runs: exit $ra and $rb"
    if [ "$ra" = 0 ] && [ "$rb" != 0 ]; then win=a bits=4 lose=b
    elif [ "$rb" = 0 ] && [ "$ra" != 0 ]; then win=b bits=3 lose=a
    else echo "race: expected exactly one run to succeed"; exit 1; fi
    one_error $lose "output '.*/o.h5' (was created by another run while this one worked|already exists)" || exit 1
    echo "$lose: $(grep '^aptq: error' "$tmp/$lose.err")"
    got=$(/usr/bin/python3 -c "import h5py, sys; f = h5py.File(sys.argv[1], 'r'); print(sorted({int(g.attrs['bits']) for g in f['layers'].values()}))" "$tmp/o.h5") || exit 1
    [ "$got" = "[$bits]" ] || { echo "race: the output holds bits $got, the winner wrote $bits"; exit 1; }
    echo "race: one winner, its complete file"
    ;;
  *) echo "clobber_race.sh: unknown mode $mode"; exit 1 ;;
esac
