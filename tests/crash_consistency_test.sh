#!/usr/bin/env bash
# Crash consistency (issue 12, item 1): a heat2d run writing checkpoint sets with
# --checkpoint-keep 1 is SIGKILLed at seeded random moments after its first set committed.
# After every kill the directory must verify (exit 0: files of a set that was still being
# written may be there; only damage fails) and a run restored from it must end with the
# straight run's checksum.
#
# usage: crash_consistency_test.sh PKRT WORK_DIR SEED [TRIALS]
set -u
PKRT=${1:?usage: crash_consistency_test.sh PKRT WORK_DIR SEED [TRIALS]}
WORK=${2:?work dir}
SEED=${3:?seed}
TRIALS=${4:-20}
RANDOM=$SEED
source "$(dirname "$0")/cli_test_lib.sh"

# E1: the killed runs' length, far more epochs than they get through before the kill (even on
# tmpfs, ~25k epochs/s with a set every 10 epochs, so ~8k by the latest kill; on a disk with
# real fsyncs ~250/s).
# E2 > E1, so every restorable epoch lies before the end; the restored runs go from the restore
# epoch to E2 without checkpoints (~60k epochs/s on this grid).
E1=40000
E2=50000
COMMON=(run --app heat2d --grid 48x32 --actors 4)

rm -rf "$WORK"
mkdir -p "$WORK" || fail "cannot create $WORK"

timeout 60 "$PKRT" "${COMMON[@]}" --epochs $E2 --quiet --json >"$WORK/straight.json" 2>"$WORK/straight.err" ||
  fail "straight run exited $?: $(cat "$WORK/straight.err")"
reference=$(checksum_of "$WORK/straight.json")
[ -n "$reference" ] || fail "no checksum in the straight run's JSON: $(cat "$WORK/straight.json")"
echo "straight run to epoch $E2: checksum $reference (seed $SEED)"

ok=0
for ((t = 1; t <= TRIALS; t++)); do
  dir="$WORK/trial$t"
  "$PKRT" "${COMMON[@]}" --epochs $E1 --checkpoint-dir "$dir" --checkpoint-every 10 --checkpoint-keep 1 --quiet \
    >"$WORK/trial$t.out" 2>"$WORK/trial$t.err" &
  pid=$!
  pids+=("$pid")
  if ! wait_for_first_set "$dir" "$pid"; then
    alive=$(kill -0 "$pid" 2>/dev/null && echo "still running" || echo "ended")
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    fail "trial $t: no *.pkset in $dir within 15 s (the run $alive); stderr: $(cat "$WORK/trial$t.err"); files: $(ls -A "$dir" 2>&1 | tr '\n' ' ')"
  fi
  delay_ms=$((RANDOM % 301))
  sleep "$(printf '0.%03d' $delay_ms)"
  kill -0 "$pid" 2>/dev/null || fail "trial $t: the run ended before the kill (it must still be going: raise E1); stdout: $(cat "$WORK/trial$t.out")"
  kill -9 "$pid"
  wait "$pid" 2>/dev/null
  files=$(ls -A "$dir" | wc -l)

  timeout 60 "$PKRT" checkpoint verify "$dir" >"$WORK/trial$t.verify" 2>&1
  rc=$?
  [ $rc -eq 0 ] || fail "trial $t (killed ${delay_ms} ms after the first set): checkpoint verify exited $rc:
$(cat "$WORK/trial$t.verify")
$(ls -la "$dir")"

  timeout 60 "$PKRT" "${COMMON[@]}" --epochs $E2 --restore "$dir" --json --quiet >"$WORK/trial$t.json" 2>"$WORK/trial$t.restore.err"
  rc=$?
  [ $rc -eq 0 ] || fail "trial $t (killed ${delay_ms} ms after the first set): restore exited $rc:
$(cat "$WORK/trial$t.restore.err")
$(timeout 60 "$PKRT" checkpoint list "$dir" 2>&1)"
  got=$(checksum_of "$WORK/trial$t.json")
  epoch=$(restored_epoch_of "$WORK/trial$t.json")
  [ "$got" = "$reference" ] || fail "trial $t: restored from epoch $epoch, checksum $got, straight run $reference"
  printf 'trial %2d: killed %3d ms after the first set (%d files left), restored from epoch %s, checksum %s\n' \
    "$t" "$delay_ms" "$files" "$epoch" "$got"
  ok=$((ok + 1))
  rm -rf "$dir"
done
echo "$ok of $TRIALS trials restorable"
[ $ok -eq "$TRIALS" ]
