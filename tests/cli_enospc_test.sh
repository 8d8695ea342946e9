#!/usr/bin/env bash
# A full disk (issue 12, item 3): tests/enospc_shim.c, preloaded, makes every write into the
# checkpoint directory fail with ENOSPC once ~2 sets' worth of bytes were written there.
#  - default (--on-checkpoint-error=stop): the failure is printed on stderr, the run stops
#    before its last epoch with the summary (a STOPPED row) and the final checksum, exit 1; the
#    sets committed before the disk filled stay listed and restore to the straight run's
#    checksum.
#  - --on-checkpoint-error=continue: the failures are printed, the run reaches its last epoch,
#    exit 1.
#
# usage: cli_enospc_test.sh PKRT SHIM WORK_DIR
set -u
PKRT=${1:?usage: cli_enospc_test.sh PKRT SHIM WORK_DIR}
SHIM=${2:?shim}
WORK=${3:?work dir}
source "$(dirname "$0")/cli_test_lib.sh"


rm -rf "$WORK"
mkdir -p "$WORK" || fail "cannot create $WORK"
[ -f "$SHIM" ] || fail "no shim at $SHIM"

EPOCHS=20000
LATER=30000
COMMON=(run --app heat2d --grid 48x32 --actors 4)
# A set of this run is ~13 KB (4 files of ~3.2 KB and a 530-byte manifest): 40000 bytes let
# two or three sets commit (the writer interleaves sets, so not always whole ones) and fail the
# rest.
LIMIT=40000
full_disk() {  # full_disk DIR pkrt-args...
  local dir=$1
  shift
  PKRT_TEST_ENOSPC_DIR="$dir" PKRT_TEST_ENOSPC_AFTER=$LIMIT LD_PRELOAD="$SHIM" timeout 60 "$PKRT" "$@"
}

timeout 60 "$PKRT" "${COMMON[@]}" --epochs $LATER --quiet --json >"$WORK/straight.json" 2>"$WORK/straight.err" ||
  fail "straight run exited $?: $(cat "$WORK/straight.err")"
reference=$(checksum_of "$WORK/straight.json")
[ -n "$reference" ] || fail "no checksum in $(cat "$WORK/straight.json")"

# --- stop (the default) ---
D="$WORK/stop"
full_disk "$D" "${COMMON[@]}" --epochs $EPOCHS --checkpoint-dir "$D" --checkpoint-every 10 --checkpoint-keep 2 \
  >"$WORK/stop.out" 2>"$WORK/stop.err"
rc=$?
[ $rc -eq 1 ] || fail "full disk, stop: exit $rc, expected 1
stdout: $(cat "$WORK/stop.out")
stderr: $(head -c 4000 "$WORK/stop.err")"
expect_in "$WORK/stop.err" "checkpoint error" "full disk, stop: stderr"
expect_in "$WORK/stop.err" "No space left on device" "full disk, stop: stderr"
expect_in "$WORK/stop.out" "STOPPED" "full disk, stop: summary"
expect_in "$WORK/stop.out" "a checkpoint failed (--on-checkpoint-error=stop)" "full disk, stop: summary"
expect_in "$WORK/stop.out" "final field checksum" "full disk, stop: summary"
stopped_at=$(sed -n 's/^  epochs  *\([0-9]*\)$/\1/p' "$WORK/stop.out")
[ -n "$stopped_at" ] && [ "$stopped_at" -lt $EPOCHS ] ||
  fail "full disk, stop: the run went on to epoch '$stopped_at' of $EPOCHS: $(cat "$WORK/stop.out")"
echo "stop: exit 1 at epoch $stopped_at of $EPOCHS; $(grep -c 'checkpoint error' "$WORK/stop.err") checkpoint errors printed"
grep -m1 "checkpoint error" "$WORK/stop.err"
grep "STOPPED" "$WORK/stop.out"

# Without the shim: what committed before the disk filled is listed and restores.
timeout 60 "$PKRT" checkpoint list "$D" >"$WORK/list.out" 2>&1 || fail "checkpoint list exited $?: $(cat "$WORK/list.out")"
grep -q "^committed " "$WORK/list.out" || fail "no committed set left after the full disk:
$(cat "$WORK/list.out")"
grep "^committed \|restorable" "$WORK/list.out"
timeout 60 "$PKRT" "${COMMON[@]}" --epochs $LATER --restore "$D" --json --quiet >"$WORK/restore.json" 2>"$WORK/restore.err" ||
  fail "restore after the full disk exited $?: $(cat "$WORK/restore.err")"
got=$(checksum_of "$WORK/restore.json")
[ "$got" = "$reference" ] || fail "restored run: checksum $got, straight run $reference"
echo "restored to epoch $LATER from $(grep -o 'epoch [0-9]*' "$WORK/restore.err" | head -1): checksum $got = straight run's"

# --- continue ---
D="$WORK/continue"
full_disk "$D" "${COMMON[@]}" --epochs $EPOCHS --checkpoint-dir "$D" --checkpoint-every 10 --checkpoint-keep 2 \
  --on-checkpoint-error=continue >"$WORK/continue.out" 2>"$WORK/continue.err"
rc=$?
[ $rc -eq 1 ] || fail "full disk, continue: exit $rc, expected 1
stdout: $(cat "$WORK/continue.out")
stderr: $(head -c 4000 "$WORK/continue.err")"
expect_in "$WORK/continue.err" "No space left on device" "full disk, continue: stderr"
expect_in "$WORK/continue.out" "final field checksum" "full disk, continue: summary"
grep -q "STOPPED" "$WORK/continue.out" && fail "full disk, continue: the run stopped: $(cat "$WORK/continue.out")"
reached=$(sed -n 's/^  epochs  *\([0-9]*\)$/\1/p' "$WORK/continue.out")
[ "$reached" = "$EPOCHS" ] || fail "full disk, continue: epochs row '$reached', expected $EPOCHS: $(cat "$WORK/continue.out")"
echo "continue: exit 1 after all $EPOCHS epochs; $(grep -c 'checkpoint error' "$WORK/continue.err") checkpoint errors printed"
echo "full disk: stop and continue behave as documented"
