#!/usr/bin/env bash
# scripts/fuzz.sh: builds pkrt's libFuzzer targets with clang and runs each for
# PKRT_FUZZ_SECONDS (default 60; three targets, so three times that in all) starting from
# its committed corpus. A crash is copied into
# tests/fuzz/regressions/<format>/ (replayed by the regression test in every build) and
# fails the script. Needs clang++ with libFuzzer (Debian: clang, libclang-rt-dev).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${PKRT_FUZZ_SECONDS:-60}
cxx=${PKRT_FUZZ_CXX:-clang++}
if ! command -v "$cxx" >/dev/null; then
  echo "fuzz.sh: $cxx not found. Fix: apt-get install clang libclang-rt-dev" >&2
  exit 2
fi
out=build-fuzz
mkdir -p "$out"
cccl=()
for d in /usr/local/cuda/include/cccl; do [ -f "$d/cuda/atomic" ] && cccl=(-DPKRT_HAVE_CCCL=1 -isystem "$d"); done
flags=(-std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
       -I include -I . "${cccl[@]}")
# Each target: the sources and libraries it needs, and the folder of its corpus and regressions.
declare -A inputs=(
  [checkpoint_reader]="checkpoint/checkpoint_format.cpp checkpoint/checkpoint_set.cpp host/crc32.cpp -lisal -lzstd"
  [replay_log_reader]="replay/replay_log.cpp host/crc32.cpp -lisal"
  [checkpoint_manifest]="checkpoint/checkpoint_set.cpp checkpoint/checkpoint_format.cpp host/crc32.cpp -lisal -lzstd"
  [global_manifest]="checkpoint/global_checkpoint.cpp host/crc32.cpp -lisal"
  [k2k_log]="replay/k2k_log.cpp host/crc32.cpp -lisal"
)
declare -A dirs=([checkpoint_reader]=checkpoint [replay_log_reader]=replay_log
                 [checkpoint_manifest]=checkpoint_manifest [global_manifest]=global_manifest [k2k_log]=k2k_log)
status=0
for target in checkpoint_reader replay_log_reader checkpoint_manifest global_manifest k2k_log; do
  bin="$out/${target}_fuzz"
  dir=${dirs[$target]}
  # shellcheck disable=SC2086  # the input list is split into words on purpose
  "$cxx" "${flags[@]}" "tests/fuzz/${target}_fuzz.cpp" ${inputs[$target]} -o "$bin"
  work="$out/${target}_corpus"
  mkdir -p "$work" "tests/fuzz/regressions/$dir"
  cp -n tests/fuzz/corpus/"$dir"/* "$work"/ 2>/dev/null || true
  echo "==> fuzzing $target for ${seconds}s"
  if ! (cd "$out" && "./${target}_fuzz" -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 \
          -print_final_stats=1 "${target}_corpus" 2>&1 | tail -15); then
    status=1
  fi
  for crash in "$out"/crash-* "$out"/timeout-* "$out"/oom-*; do
    [ -e "$crash" ] || continue
    cp "$crash" "tests/fuzz/regressions/$dir/"
    echo "fuzz.sh: $target found $(basename "$crash"); kept in tests/fuzz/regressions/$dir/" >&2
    rm "$crash"
    status=1
  done
done
exit $status
