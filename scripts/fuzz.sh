#!/usr/bin/env bash
# scripts/fuzz.sh: builds pkrt's libFuzzer targets with clang and runs each for
# PKRT_FUZZ_SECONDS (default 60) starting from its committed corpus. A crash is copied into
# tests/fuzz/regressions/<target>/ (replayed by the regression test in every build) and
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
status=0
for target in checkpoint_reader; do
  bin="$out/${target}_fuzz"
  "$cxx" "${flags[@]}" "tests/fuzz/${target}_fuzz.cpp" checkpoint/checkpoint_format.cpp host/crc32.cpp \
    -lisal -lzstd -o "$bin"
  work="$out/${target}_corpus"
  mkdir -p "$work" "tests/fuzz/regressions/${target%%_*}"
  cp -n tests/fuzz/corpus/"${target%%_*}"/* "$work"/ 2>/dev/null || true
  echo "==> fuzzing $target for ${seconds}s"
  if ! (cd "$out" && "./${target}_fuzz" -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 \
          -print_final_stats=1 "${target}_corpus" 2>&1 | tail -15); then
    status=1
  fi
  for crash in "$out"/crash-* "$out"/timeout-* "$out"/oom-*; do
    [ -e "$crash" ] || continue
    cp "$crash" "tests/fuzz/regressions/${target%%_*}/"
    echo "fuzz.sh: $target found $(basename "$crash"); kept in tests/fuzz/regressions/${target%%_*}/" >&2
    status=1
  done
done
exit $status
