#!/usr/bin/env bash
# scripts/demo.sh: the main job. Builds pkrt (Release) and runs the heat2d demo on the best
# backend (CUDA when a usable GPU is present, else the CPU backend):
#   1. a 512x512 field on 16 actors with host heat injections at random epochs, writing a
#      crash-safe checkpoint of every actor every 600 epochs;
#   2. the same run restarted from the newest checkpoint, which must end with the same
#      final field checksum;
#   3. the same physics on one actor and one thread, which must agree bit for bit too.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
pkrt_ensure_deps
jobs=$(pkrt_jobs)
mkdir -p build
if [ ! -x build/bin/pkrt ] || [ -n "$(find CMakeLists.txt include kernels host cuda checkpoint examples -newer build/bin/pkrt -print -quit)" ]; then
  echo "==> building pkrt (build/)"
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >build.configure.log 2>&1 || { cat build.configure.log; exit 2; }
  cmake --build build -j "$jobs" --target pkrt_cli >build.build.log 2>&1 || { tail -50 build.build.log; exit 2; }
fi

ckdir=build/demo-checkpoints
rm -rf "$ckdir"
common=(run --app heat2d --grid 512x512 --epochs 2000 --injections 40 --seed 7)
checksum() { awk '/final field checksum/ {print $NF}' <<<"$1"; }

echo "==> 1. pkrt ${common[*]} --actors 16 --checkpoint-dir $ckdir --checkpoint-every 600"
out1=$(build/bin/pkrt "${common[@]}" --actors 16 --checkpoint-dir "$ckdir" --checkpoint-every 600)
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
