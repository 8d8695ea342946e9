#!/usr/bin/env bash
# scripts/demo.sh: the main job. Builds pkrt (Release) and runs the heat2d demo on the best
# backend (CUDA when a usable GPU is present, else the CPU backend): a 512x512 field on 16
# actors with host heat injections at random epochs, then the same run on one actor and one
# thread, and shows that both end with the same final field checksum.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
pkrt_ensure_deps
jobs=$(pkrt_jobs)
mkdir -p build
if [ ! -x build/bin/pkrt ] || [ -n "$(find CMakeLists.txt include kernels host cuda examples -newer build/bin/pkrt -print -quit)" ]; then
  echo "==> building pkrt (build/)"
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >build.configure.log 2>&1 || { cat build.configure.log; exit 2; }
  cmake --build build -j "$jobs" --target pkrt_cli >build.build.log 2>&1 || { tail -50 build.build.log; exit 2; }
fi

common=(run --app heat2d --grid 512x512 --epochs 2000 --injections 40 --seed 7)
echo "==> pkrt ${common[*]} --actors 16"
out16=$(build/bin/pkrt "${common[@]}" --actors 16)
echo "$out16"
echo "==> pkrt ${common[*]} --actors 1 --threads 1   (same physics, one tile, one thread)"
out1=$(build/bin/pkrt "${common[@]}" --actors 1 --threads 1 --quiet)
echo "$out1"

sum16=$(awk '/final field checksum/ {print $NF}' <<<"$out16")
sum1=$(awk '/final field checksum/ {print $NF}' <<<"$out1")
if [ -n "$sum16" ] && [ "$sum16" = "$sum1" ]; then
  echo "demo: final field checksums identical ($sum16): 16 tiles with K2K halo exchange match one tile"
else
  echo "demo: checksums DIFFER: 16 actors $sum16, 1 actor $sum1" >&2
  exit 1
fi
