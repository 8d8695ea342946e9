#!/usr/bin/env bash
# tests/mpi_test.sh PKRT WORK: `pkrt run` over MPI ranks (mpirun, CPU backend, oversubscribed
# on purpose: CI has 2 cores and runs as root).
#   1. heat2d on 2, 3 and 4 ranks, both partitions, ends with the single-process checksum,
#      for K2K delay 1 and 2 (the two delays differ from each other, as they must);
#   2. more ranks than actors is refused on every rank with exit 2 and the fix;
#   3. a rank killed mid-run stops the whole job within seconds, and the report names it.
# Run by the default suite only: the sanitizer suites exercise the same exchange through the
# in-process shards of tests/k2k_shard_test.cpp (running sanitized binaries under mpirun was
# not tried).
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
      echo "ok: $np ranks, delay $d, $part partition: $got"
    done
  done
done

# More ranks than actors: refused on every rank, exit 2, with the fix.
timeout 60 "${mpirun[@]}" -np 5 "$pkrt" run --app heat2d --grid 32x32 --actors 4 --epochs 5 --quiet \
  >toomany.out 2>toomany.err
rc=$?
[ "$rc" -eq 2 ] || fail "5 ranks for 4 actors: exit $rc, wanted 2 $(cat toomany.err)"
expect_in toomany.err "Fix: run with mpirun -np 4 or fewer" "5 ranks for 4 actors"
echo "ok: more ranks than actors exits 2 with the fix"

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
grep -q "rank 1" killed.err killed.out || fail "the report does not name rank 1: $(cat killed.err killed.out)"
echo "ok: killing rank 1 stopped the job in $(($(date +%s) - start)) s with exit $rc, naming rank 1"
echo "mpi: all checks passed"
