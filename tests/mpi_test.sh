#!/usr/bin/env bash
# tests/mpi_test.sh PKRT WORK: `pkrt run` over MPI ranks (mpirun, CPU backend, oversubscribed
# on purpose: CI has 2 cores and runs as root).
#   1. heat2d on 2, 3 and 4 ranks, both partitions, ends with the single-process checksum,
#      for K2K delay 1 and 2 (the two delays differ from each other, as they must);
#   2. more ranks than actors is refused on every rank with exit 2 and the fix;
#   3. a rank killed mid-run stops the whole job within seconds, and the report names it;
#   4. coordinated checkpoints restore on other rank counts, survive a rank killed at each
#      step of the two-phase commit (rank 0 and another), and a damaged member breaks its
#      global checkpoint;
#   5. each rank's replay log (and the K2K it received) replays that rank alone, identical,
#      from its start or from a global checkpoint (of any rank count).
# Run by the default suite only (the killed-rank timings assume an uninstrumented pkrt). The
# ASan+UBSan suite runs pkrt_mpi_tests under mpirun (tests/CMakeLists.txt); TSan does not (it
# cannot see Open MPI's own synchronisation) and covers the exchange through the in-process
# shards of tests/k2k_shard_test.cpp.
set -uo pipefail
pkrt=$1
work=$2
here=$(dirname "$0")
source "$here/cli_test_lib.sh"
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 1
mpirun=(mpirun --oversubscribe --allow-run-as-root)
common=(run --app heat2d --grid 96x64 --actors 12 --epochs 60 --injections 6 --quiet --json)

declare -A single
for d in 1 2; do
  "$pkrt" "${common[@]}" --threads 2 --k2k-delay "$d" >"single$d.json" 2>"single$d.err" || fail "single-process run, delay $d"
  single[$d]=$(checksum_of "single$d.json")
  [ -n "${single[$d]}" ] || fail "no checksum in single$d.json"
done
[ "${single[1]}" != "${single[2]}" ] || fail "delays 1 and 2 gave the same field: the delay is not applied"

for d in 1 2; do
  for np in 2 3 4; do
    for part in tiles contiguous; do
      out="np${np}_d${d}_$part"
      timeout 120 "${mpirun[@]}" -np "$np" "$pkrt" "${common[@]}" --threads 1 --k2k-delay "$d" --partition "$part" \
        >"$out.json" 2>"$out.err" || fail "$np ranks, delay $d, $part: exit $? $(cat "$out.err")"
      got=$(checksum_of "$out.json")
      [ "$got" = "${single[$d]}" ] || fail "$np ranks, delay $d, $part: checksum $got, single process ${single[$d]}"
      grep -q '"messages": [1-9]' "$out.json" || fail "$np ranks: no K2K crossed ranks $(cat "$out.json")"
      grep -q '"exchange_path": "host memory (cpu backend)"' "$out.json" || fail "$np ranks: exchange path $(cat "$out.json")"
      echo "ok: $np ranks, delay $d, $part partition: $got"
    done
  done
done

# Replay logs per rank: each rank's log, with the K2K it received beside it (.k2k), replays
# alone and identical, all three in parallel, the K2K it sends checked against the other
# ranks' .k2k; without its own .k2k a rank's log is refused, without a peer's it is replayed
# with a note that what it sends that rank is not checked.
"${mpirun[@]}" -np 3 "$pkrt" "${common[@]}" --threads 1 --stats-every 10 --replay-log rl >rl.json 2>rl.err ||
  fail "recording 3 ranks: $(cat rl.err)"
[ "$(checksum_of rl.json)" = "${single[1]}" ] || fail "recording changed the checksum"
rpids=()
for r in 0 1 2; do
  "$pkrt" replay "rl.rank$r" >"replay$r.out" 2>&1 &
  rpids+=($!)
done
for r in 0 1 2; do
  wait "${rpids[$r]}" || fail "replay of rank $r: exit $? $(cat "replay$r.out")"
  expect_in "replay$r.out" "rank $r of 3 (replayed alone)" "replay of rank $r"
  expect_in "replay$r.out" "verdict: identical" "replay of rank $r"
  grep -q "verdict: identical (.*, and [1-9][0-9]* K2K messages sent)" "replay$r.out" ||
    fail "replay of rank $r did not check the K2K it sends: $(cat "replay$r.out")"
done
echo "ok: every rank of a 3-rank recording replays alone, identical, and so does the K2K it sends"
"${mpirun[@]}" -np 3 "$pkrt" replay rl >replay_mpi.out 2>&1 || fail "mpirun pkrt replay: exit $? $(cat replay_mpi.out)"
[ "$(grep -c 'identical through epoch 60' replay_mpi.out)" -eq 3 ] || fail "mpirun pkrt replay: $(cat replay_mpi.out)"
echo "ok: mpirun -np 3 pkrt replay rl gathers three identical verdicts on rank 0"
mv rl.rank1.k2k rl.rank1.k2k.away
"$pkrt" replay rl.rank1 >noinbound.out 2>&1
rc=$?
[ "$rc" -eq 2 ] || fail "replay of a rank log without its .k2k: exit $rc $(cat noinbound.out)"
expect_in noinbound.out "keep the '.k2k' file recorded beside it" "replay without .k2k"
echo "ok: a rank's log without its .k2k is refused with exit 2 and the fix"
"$pkrt" replay rl.rank0 >nopeer.out 2>&1 || fail "replay of rank 0 without rank 1's .k2k: exit $? $(cat nopeer.out)"
expect_in nopeer.out "what this rank sent to the ranks of rl.rank1.k2k is not checked" "replay without a peer's .k2k"
expect_in nopeer.out "verdict: identical" "replay without a peer's .k2k"
echo "ok: without a peer's .k2k a rank replays identical, saying what it could not check"
mv rl.rank1.k2k.away rl.rank1.k2k

# More ranks than actors: refused on every rank, exit 2, with the fix.
timeout 60 "${mpirun[@]}" -np 5 "$pkrt" run --app heat2d --grid 32x32 --actors 4 --epochs 5 --quiet \
  >toomany.out 2>toomany.err
rc=$?
[ "$rc" -eq 2 ] || fail "5 ranks for 4 actors: exit $rc, wanted 2 $(cat toomany.err)"
expect_in toomany.err "Fix: run with mpirun -np 4 or fewer" "5 ranks for 4 actors"
echo "ok: more ranks than actors exits 2 with the fix"
# A bad --grid: refused on every rank like a single process refuses it (one parser).
for g in 96x64junk 0x5 12x; do
  timeout 60 "${mpirun[@]}" -np 2 "$pkrt" run --app heat2d --grid "$g" --epochs 5 --quiet >badgrid.out 2>badgrid.err
  rc=$?
  [ "$rc" -eq 2 ] || fail "--grid $g over 2 ranks: exit $rc, wanted 2 $(cat badgrid.err)"
  expect_in badgrid.err "is not WIDTHxHEIGHT. Fix: e.g. --grid 256x256" "--grid $g over 2 ranks"
done
echo "ok: a bad --grid over ranks exits 2 with the fix"

# Coordinated checkpoints: 4 ranks write, 2 and 3 ranks restore and end like the straight run.
"${mpirun[@]}" -np 4 "$pkrt" "${common[@]}" --threads 1 --checkpoint-dir ck4 --checkpoint-every 20 >ck4.json 2>ck4.err ||
  fail "4 ranks with checkpoints: $(cat ck4.err)"
[ "$(checksum_of ck4.json)" = "${single[1]}" ] || fail "4 ranks with checkpoints changed the checksum"
"$pkrt" checkpoint list ck4 >ck4.list || fail "checkpoint list of a multi-rank directory"
expect_in ck4.list "3 global checkpoints, 3 whole; restorable epochs: 20 40 60" "checkpoint list"
"$pkrt" checkpoint ls ck4 >ck4.ls || fail "checkpoint ls of a multi-rank directory"
cmp -s ck4.list ck4.ls || fail "checkpoint ls differs from checkpoint list: $(diff ck4.list ck4.ls)"
"$pkrt" checkpoint inspect ck4/heat2d-global-e000000000040.pkglobal >ck4.inspect ||
  fail "checkpoint inspect of a global manifest: $(cat ck4.inspect)"
expect_in ck4.inspect "actors     12 over 4 ranks" "inspect of a global checkpoint names its rank count"
expect_in ck4.inspect "status     whole: restorable on any rank count" "inspect of a global checkpoint"
[ "$(grep -c '^  rank [0-3] .*([0-9]* actors): whole$' ck4.inspect)" -eq 4 ] || fail "inspect: every rank's set: $(cat ck4.inspect)"
echo "ok: checkpoint ls/list and inspect show a 4-rank global checkpoint, each rank's set whole"
for np in 2 3; do
  "${mpirun[@]}" -np "$np" "$pkrt" "${common[@]}" --threads 1 --restore ck4 --restore-epoch 40 >"r$np.json" 2>"r$np.err" ||
    fail "restore on $np ranks: $(cat "r$np.err")"
  [ "$(checksum_of "r$np.json")" = "${single[1]}" ] || fail "4 -> $np ranks from epoch 40: $(checksum_of "r$np.json")"
  echo "ok: a global checkpoint of 4 ranks restored on $np ranks ends with ${single[1]}"
done
# A rank's log replays from a global checkpoint, here one written by 4 ranks for a 3-rank
# recording of the same run (results do not depend on the rank count): alone, and all ranks
# under mpirun.
"${mpirun[@]}" -np 3 "$pkrt" "${common[@]}" --threads 1 --replay-log rlc >rlc.json 2>rlc.err || fail "recording rlc: $(cat rlc.err)"
"$pkrt" replay rlc.rank1 --from-checkpoint ck4 >rlc1.out 2>&1 || fail "replay of rank 1 from ck4: exit $? $(cat rlc1.out)"
expect_in rlc1.out "from the checkpoint at epoch 40" "replay of rank 1 from ck4"
expect_in rlc1.out "verdict: identical" "replay of rank 1 from ck4"
"${mpirun[@]}" -np 3 "$pkrt" replay rlc --from-checkpoint ck4 >rlc_mpi.out 2>&1 || fail "mpirun replay from ck4: $(cat rlc_mpi.out)"
[ "$(grep -c 'identical through epoch 60' rlc_mpi.out)" -eq 3 ] || fail "mpirun replay from ck4: $(cat rlc_mpi.out)"
echo "ok: a 3-rank recording replays rank by rank from a global checkpoint of 4 ranks (epoch 40), identical"
# The same run twice into one directory (keep 1): the second final checkpoint lands on the
# epoch of the first; each global checkpoint names its own sets, so the first stays whole until
# the second is committed, and the directory ends whole and restorable.
for i in 1 2; do
  "${mpirun[@]}" -np 2 "$pkrt" "${common[@]}" --threads 1 --checkpoint-dir ck0 --checkpoint-keep 1 >"ck0_$i.json" 2>"ck0_$i.err" ||
    fail "run $i into ck0: $(cat "ck0_$i.err")"
done
"$pkrt" checkpoint verify ck0 >ck0.verify || fail "verify after two runs at one epoch: $(cat ck0.verify)"
expect_in ck0.verify "1 global checkpoints, 1 whole; restorable epochs: 60" "one global checkpoint kept"
"${mpirun[@]}" -np 3 "$pkrt" "${common[@]}" --threads 1 --restore ck0 >ck0r.json 2>ck0r.err || fail "restore ck0: $(cat ck0r.err)"
[ "$(checksum_of ck0r.json)" = "${single[1]}" ] || fail "restore of a re-checkpointed epoch: $(checksum_of ck0r.json)"
echo "ok: two runs checkpointing the same epoch into one directory leave it whole and restorable"

# A damaged rank set makes its global checkpoint broken (verify exits 1) and a restore refuses it.
member=$(ls ck4/rank-00002-*/heat2d-e000000000060-*-a000000-full.pkck)
printf 'XXXX' | dd of="$member" bs=1 seek=200 conv=notrunc status=none
"$pkrt" checkpoint verify ck4 >verify.out
rc=$?
[ "$rc" -eq 1 ] || fail "verify of a damaged global checkpoint: exit $rc $(cat verify.out)"
expect_in verify.out "CORRUPT  heat2d-global-e000000000060.pkglobal" "verify names the broken global checkpoint"
"${mpirun[@]}" -np 2 "$pkrt" "${common[@]}" --threads 1 --restore ck4 --restore-epoch 60 >bad.out 2>bad.err
[ $? -ne 0 ] || fail "a restore from a damaged global checkpoint succeeded"
echo "ok: a damaged rank set breaks its global checkpoint (verify exit 1, restore refused)"

# Damage inside a member's chunk data (its header intact) is found too: verify reads every CRC.
member=$(ls ck4/rank-00001-*/heat2d-e000000000040-*-a000001-full.pkck)
size=$(stat -c %s "$member")
printf 'XXXX' | dd of="$member" bs=1 seek=$((size / 2)) conv=notrunc status=none
"$pkrt" checkpoint verify ck4 >verify40.out
rc=$?
[ "$rc" -eq 1 ] || fail "verify of damaged chunk data in a global checkpoint: exit $rc $(cat verify40.out)"
expect_in verify40.out "CORRUPT  heat2d-global-e000000000040.pkglobal" "verify names the global checkpoint whose member data is damaged"
expect_in verify40.out "CRC mismatch" "verify says what is damaged"
echo "ok: damaged chunk data in a rank's member breaks its global checkpoint"

# Without --restore-epoch, a restore passes the damaged ones over (warning which and why) and
# continues from the newest whole one to the same end.
"${mpirun[@]}" -np 3 "$pkrt" "${common[@]}" --threads 1 --restore ck4 >fallback.json 2>fallback.err ||
  fail "restore passing over damaged global checkpoints: $(cat fallback.err)"
expect_in fallback.err "passed over the global checkpoint heat2d-global-e000000000060.pkglobal (rank " "the damaged newest is named"
expect_in fallback.err "passed over the global checkpoint heat2d-global-e000000000040.pkglobal (rank " "so is the next"
expect_in fallback.json '"restored_epoch": 20' "the newest whole one is restored"
[ "$(checksum_of fallback.json)" = "${single[1]}" ] || fail "restore after passing over damaged ones: $(checksum_of fallback.json)"
echo "ok: a restore passes over damaged global checkpoints, saying which, and ends with the single-process checksum"

# Without mpirun, pkrt restores a multi-rank run's global checkpoints on one rank.
"$pkrt" "${common[@]}" --threads 2 --restore ck4 >one_rank.json 2>one_rank.err || fail "restore of global checkpoints without mpirun: $(cat one_rank.err)"
expect_in one_rank.json '"restored_epoch": 20' "the newest whole global checkpoint is restored without mpirun"
[ "$(checksum_of one_rank.json)" = "${single[1]}" ] || fail "restore without mpirun: $(checksum_of one_rank.json)"
echo "ok: global checkpoints restore without mpirun, on one rank"

# The two-phase commit under a rank killed at each of its steps (PKRT_MPI_KILL_AT,
# mpi/commit_fault.hpp: SIGKILL at a named point of the n-th checkpoint, here the second, at
# epoch 20): what is listed as restorable is always whole and committed, and the newest
# restores on another rank count to the straight run's end.
#   set-durable:1:2    rank 1 made its set of epoch 20 durable, died before reporting it;
#   before-commit:0:2  every set of epoch 20 durable, rank 0 died before the global manifest;
#   after-commit:0:2   the manifest of 20 committed, rank 0 died before retiring 10's (keep 1).
ckrun=("${common[@]}" --threads 1 --checkpoint-every 10 --checkpoint-keep 1)
for kill in set-durable:1:2 before-commit:0:2 after-commit:0:2; do
  point=${kill%%:*} victim=${kill#*:} victim=${victim%%:*}
  case $point in after-commit) want_epochs="10 20" want_restored=20 ;; *) want_epochs="10" want_restored=10 ;; esac
  rm -rf ckk
  PKRT_MPI_KILL_AT=$kill timeout 120 "${mpirun[@]}" -x PKRT_MPI_KILL_AT -np 3 "$pkrt" "${ckrun[@]}" --checkpoint-dir ckk \
    >kk.out 2>kk.err
  rc=$?
  [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || fail "$kill: the job exited $rc (a killed rank must fail it, within the timeout)"
  grep -q "pkrt: rank $victim killed itself at $point of checkpoint 2" kk.err ||
    fail "$kill: the kill did not happen where asked: $(cat kk.err)"
  grep -q "mpirun noticed that process rank $victim " kk.err || fail "$kill: mpirun's report does not name rank $victim: $(cat kk.err)"
  sets=$(ls ckk/rank-0000"$victim"-of-00003-*/heat2d-set-e000000000020-*.pkset 2>/dev/null | wc -l)
  [ "$sets" -eq 1 ] || fail "$kill: rank $victim's set of epoch 20 is not on disk: the kill was not inside the commit"
  "$pkrt" checkpoint list ckk >kk.list 2>&1
  grep -q "BROKEN\|DAMAGED" kk.list && fail "$kill: a committed global checkpoint is not whole: $(cat kk.list)"
  grep -q "restorable epochs: $want_epochs\$" kk.list || fail "$kill: want restorable epochs $want_epochs: $(cat kk.list)"
  "${mpirun[@]}" -np 2 "$pkrt" "${common[@]}" --threads 1 --restore ckk >kr.json 2>kr.err || fail "$kill: restore: $(cat kr.err)"
  [ "$(restored_epoch_of kr.json)" = "$want_restored" ] || fail "$kill: restored epoch $(restored_epoch_of kr.json), want $want_restored"
  [ "$(checksum_of kr.json)" = "${single[1]}" ] || fail "$kill: restored run ended with $(checksum_of kr.json), want ${single[1]}"
  echo "ok: rank $victim killed at $point of the checkpoint of epoch 20 (exit $rc): restorable epochs $want_epochs, epoch $want_restored restored on 2 ranks ends with ${single[1]}"
done

# A rank killed mid-run: mpirun stops every rank and names the dead one.
"${mpirun[@]}" -np 3 "$pkrt" run --app heat2d --grid 600x600 --actors 12 --epochs 1000000 --threads 1 --quiet \
  >killed.out 2>killed.err &
job=$!
pids+=("$job")
victim=""
for ((i = 0; i < 200; i++)); do
  [ -n "$victim" ] && break
  sleep 0.05
  for p in $(pgrep -f "$pkrt run --app heat2d --grid 600x600" || true); do
    if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=1"; then victim=$p; fi
  done
done
[ -n "$victim" ] || fail "rank 1 never started"
sleep 1  # well into the run
kill -9 "$victim"
start=$(date +%s)
for ((i = 0; i < 600; i++)); do
  kill -0 "$job" 2>/dev/null || break
  sleep 0.05
done
kill -0 "$job" 2>/dev/null && fail "the job still runs 30 s after rank 1 was killed"
wait "$job"
rc=$?
[ "$rc" -ne 0 ] || fail "a job with a killed rank exited 0"
# The killed process cannot speak for itself: mpirun names it.
grep -q "mpirun noticed that process rank 1 " killed.err || fail "mpirun's report does not name rank 1: $(cat killed.err killed.out)"
echo "ok: killing rank 1 stopped the job in $(($(date +%s) - start)) s with exit $rc, naming rank 1"
echo "mpi: all checks passed"
