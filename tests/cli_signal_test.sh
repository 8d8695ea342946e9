#!/usr/bin/env bash
# SIGINT and SIGTERM stop a run cleanly (issue 12, items 2 and 4): a heat2d run writing
# checkpoint sets and a replay log gets the signal once its first set committed; it parks,
# flushes its checkpoints, closes the log, prints the summary with a STOPPED row and exits
# 128+signal (130, 143). The log then dumps as closed cleanly and replays identically, and the
# checkpoint directory verifies. While the run holds its directory, a second writer into it is
# refused with exit 2, naming the first run's pid.
#
# The run is started directly (not under `timeout`, which would pass the signal on twice: the
# second one, by design, takes the default action); every wait here is bounded instead.
#
# usage: cli_signal_test.sh PKRT WORK_DIR
set -u
PKRT=${1:?usage: cli_signal_test.sh PKRT WORK_DIR}
WORK=${2:?work dir}
source "$(dirname "$0")/cli_test_lib.sh"

rm -rf "$WORK"
mkdir -p "$WORK" || fail "cannot create $WORK"

COMMON=(run --app heat2d --grid 48x32 --actors 4)

one_signal() {  # one_signal INT|TERM EXPECTED_EXIT
  local sig=$1 want=$2
  local dir="$WORK/$sig" log="$WORK/$sig.pkrl" out="$WORK/$sig.out" err="$WORK/$sig.err"
  "$PKRT" "${COMMON[@]}" --epochs 100000000 --checkpoint-dir "$dir" --checkpoint-every 10 --checkpoint-keep 2 \
    --replay-log "$log" >"$out" 2>"$err" &
  local pid=$!
  pids+=("$pid")
  wait_for_first_set "$dir" "$pid" || fail "SIG$sig: no *.pkset in $dir within 15 s; stderr: $(cat "$err")"
  kill -0 "$pid" 2>/dev/null || fail "SIG$sig: the run ended early: $(cat "$out" "$err")"

  # A second writer into the held directory is refused, naming the holder.
  timeout 30 "$PKRT" "${COMMON[@]}" --epochs 100 --checkpoint-dir "$dir" --quiet >"$WORK/$sig.second" 2>&1
  local rc=$?
  [ $rc -eq 2 ] || fail "second writer into $dir: exit $rc, expected 2: $(cat "$WORK/$sig.second")"
  expect_in "$WORK/$sig.second" "in use by another writer (pid $pid)" "second writer"
  echo "second writer: exit 2, $(grep -o "in use by another writer (pid [0-9]*)" "$WORK/$sig.second")"

  kill -"$sig" "$pid" || fail "SIG$sig: could not signal $pid"
  local gone=0
  for ((i = 0; i < 600; i++)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      gone=1
      break
    fi
    sleep 0.05
  done
  if [ $gone -eq 0 ]; then
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    fail "SIG$sig: the run did not stop within 30 s; stdout: $(cat "$out")"
  fi
  wait "$pid"
  rc=$?
  [ $rc -eq "$want" ] || fail "SIG$sig: exit $rc, expected $want
stdout: $(cat "$out")
stderr: $(cat "$err")"
  expect_in "$out" "STOPPED" "SIG$sig: summary"
  expect_in "$out" "interrupted by SIG$sig" "SIG$sig: summary"
  expect_in "$out" "final field checksum" "SIG$sig: summary"
  echo "SIG$sig: exit $rc; $(grep STOPPED "$out" | sed 's/^ *//; s/  */ /g')"

  timeout 60 "$PKRT" log dump "$log" >"$WORK/$sig.dump" 2>&1 || fail "SIG$sig: log dump exited $?: $(head -20 "$WORK/$sig.dump")"
  grep -qE "^  closed +cleanly" "$WORK/$sig.dump" || fail "SIG$sig: the log is not closed cleanly:
$(head -12 "$WORK/$sig.dump")"
  echo "SIG$sig: log dump: $(grep -E '^  closed ' "$WORK/$sig.dump" | sed 's/^ *//; s/  */ /g')"
  timeout 60 "$PKRT" replay "$log" --quiet >"$WORK/$sig.replay" 2>&1
  rc=$?
  [ $rc -eq 0 ] || fail "SIG$sig: replay exited $rc: $(cat "$WORK/$sig.replay")"
  expect_in "$WORK/$sig.replay" "identical" "SIG$sig: replay"
  echo "SIG$sig: $(grep verdict "$WORK/$sig.replay")"
  timeout 60 "$PKRT" checkpoint verify "$dir" >"$WORK/$sig.verify" 2>&1 ||
    fail "SIG$sig: checkpoint verify exited $?: $(cat "$WORK/$sig.verify")"
  echo "SIG$sig: $(tail -1 "$WORK/$sig.verify")"
}

one_signal INT 130
one_signal TERM 143
echo "SIGINT and SIGTERM: clean stops with exit 130 and 143"
