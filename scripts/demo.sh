#!/usr/bin/env bash
# scripts/demo.sh: the main job. Builds pkrt (Release) and runs the heat2d demo on the best
# backend (CUDA when a usable GPU is present, else the CPU backend):
#   1. a 512x512 field on 16 actors with host heat injections at random epochs, writing a
#      crash-safe checkpoint of every actor every 600 epochs;
#   2. the same run restarted from the newest checkpoint, which must end with the same
#      final field checksum;
#   3. the same physics on one actor and one thread, which must agree bit for bit too;
#   4. run 1 was recorded into a replay log (every ring slot, plus a CRC32 digest of every
#      actor's state every 10 epochs): it is replayed on the CPU backend with another thread
#      count and a chaos seed (seeded block order and worker delays), then again from the
#      checkpoint at epoch 1800; both must report the verdict "identical".
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
pkrt_ensure_deps
jobs=$(pkrt_jobs)
mkdir -p build
if [ ! -x build/bin/pkrt ] || [ -n "$(find CMakeLists.txt include kernels host cuda checkpoint replay examples -newer build/bin/pkrt -print -quit)" ]; then
  echo "==> building pkrt (build/)"
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >build.configure.log 2>&1 || { cat build.configure.log; exit 2; }
  cmake --build build -j "$jobs" --target pkrt_cli >build.build.log 2>&1 || { tail -50 build.build.log; exit 2; }
fi

ckdir=build/demo-checkpoints
replay_log=build/demo-run.replay
rm -rf "$ckdir" "$replay_log"
common=(run --app heat2d --grid 512x512 --epochs 2000 --injections 40 --seed 7)
checksum() { awk '/final field checksum/ {print $NF}' <<<"$1"; }

echo "==> 1. pkrt ${common[*]} --actors 16 --checkpoint-dir $ckdir --checkpoint-every 600 --replay-log $replay_log"
out1=$(build/bin/pkrt "${common[@]}" --actors 16 --checkpoint-dir "$ckdir" --checkpoint-every 600 \
         --replay-log "$replay_log" --replay-log-capacity 65536)
echo "$out1"
build/bin/pkrt checkpoint list "$ckdir" | tail -1
build/bin/pkrt checkpoint verify "$ckdir" | tail -1

echo "==> 2. pkrt ${common[*]} --actors 16 --restore $ckdir   (resume from the newest checkpoint)"
out2=$(build/bin/pkrt "${common[@]}" --actors 16 --restore "$ckdir" --quiet)
echo "$out2"

echo "==> 3. pkrt ${common[*]} --actors 1 --threads 1   (one tile, one thread)"
out3=$(build/bin/pkrt "${common[@]}" --actors 1 --threads 1 --quiet)
echo "$out3" | tail -1

s1=$(checksum "$out1"); s2=$(checksum "$out2"); s3=$(checksum "$out3")
if [ -n "$s1" ] && [ "$s1" = "$s2" ] && [ "$s1" = "$s3" ]; then
  echo "demo: final field checksums identical ($s1): the restored run and the single tile match the original"
else
  echo "demo: checksums DIFFER: original $s1, restored $s2, single tile $s3" >&2
  exit 1
fi

echo "==> 4. pkrt log dump $replay_log --tail 3"
build/bin/pkrt log dump "$replay_log" --tail 3
echo "==> 4a. pkrt replay $replay_log --backend cpu --threads 3 --chaos 11"
build/bin/pkrt replay "$replay_log" --backend cpu --threads 3 --chaos 11 --quiet || {
  echo "demo: replay with 3 threads and chaos seed 11 did not report identical" >&2; exit 1; }
echo "==> 4b. pkrt replay $replay_log --backend cpu --threads 1 --chaos 5 --from-checkpoint $ckdir"
out4=$(build/bin/pkrt replay "$replay_log" --backend cpu --threads 1 --chaos 5 --from-checkpoint "$ckdir" --quiet) || {
  echo "$out4"; echo "demo: replay from the checkpoint did not report identical" >&2; exit 1; }
echo "$out4"
verdict=$(awk '/^verdict:/ {print $2}' <<<"$out4")
echo "demo: replay verdict: $verdict (recorded run vs replays with 3 threads + chaos seed 11, and 1 thread + chaos seed 5 from the checkpoint)"
