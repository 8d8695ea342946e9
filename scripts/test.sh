#!/usr/bin/env bash
# scripts/test.sh: builds pkrt and passes every test. Three suites:
#   build/       Release; the CUDA backend is compiled when nvcc exists; all tests
#   build-asan/  CPU backend under AddressSanitizer + UndefinedBehaviorSanitizer
#   build-tsan/  CPU backend under ThreadSanitizer
#   fuzz         libFuzzer targets (clang) for PKRT_FUZZ_SECONDS each (default 30); a crash
#                fails the suite and is kept in tests/fuzz/regressions/
# Ends with one line "tests: N passed, M failed". Exit 0 only if every suite passed.
# PKRT_TEST_SUITES="default asan tsan fuzz" picks suites; PKRT_JOBS sets parallelism.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
pkrt_ensure_deps
jobs=$(pkrt_jobs)
suites=${PKRT_TEST_SUITES:-default asan tsan fuzz}

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}

total_pass=0
total_fail=0
failed_suites=()

run_suite() {
  local name=$1 dir=$2
  shift 2
  echo "==> [$name] configure + build ($dir)"
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release "$@" >"$dir.configure.log" 2>&1 ||
    { cat "$dir.configure.log"; return 1; }
  cmake --build "$dir" -j "$jobs" >"$dir.build.log" 2>&1 || { tail -50 "$dir.build.log"; return 1; }
  echo "==> [$name] ctest"
  local rc=0
  ctest --test-dir "$dir" -j "$jobs" --output-on-failure --timeout 900 | tee "$dir/ctest.log" || rc=$?
  local line pass fail all
  line=$(grep -E '[0-9]+% tests passed, [0-9]+ tests failed out of [0-9]+' "$dir/ctest.log" | tail -1)
  fail=$(sed -E 's/.* ([0-9]+) tests failed out of ([0-9]+).*/\1/' <<<"$line")
  all=$(sed -E 's/.* ([0-9]+) tests failed out of ([0-9]+).*/\2/' <<<"$line")
  pass=$((all - fail))
  total_pass=$((total_pass + pass))
  total_fail=$((total_fail + fail))
  echo "==> [$name] $pass passed, $fail failed"
  return $rc
}

mkdir -p build
for s in $suites; do
  case "$s" in
    default) run_suite default build || failed_suites+=(default) ;;
    asan) mkdir -p build-asan
      run_suite asan build-asan -DPKRT_ENABLE_CUDA=OFF -DPKRT_SANITIZE=address-undefined \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo || failed_suites+=(asan) ;;
    tsan) mkdir -p build-tsan
      run_suite tsan build-tsan -DPKRT_ENABLE_CUDA=OFF -DPKRT_SANITIZE=thread \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo || failed_suites+=(tsan) ;;
    fuzz)
      echo "==> [fuzz] libFuzzer targets, ${PKRT_FUZZ_SECONDS:-30}s each"
      if PKRT_FUZZ_SECONDS=${PKRT_FUZZ_SECONDS:-30} bash scripts/fuzz.sh >build-fuzz.log 2>&1; then
        tail -3 build-fuzz.log
        total_pass=$((total_pass + 1))
        echo "==> [fuzz] 1 passed, 0 failed"
      else
        tail -30 build-fuzz.log
        total_fail=$((total_fail + 1))
        failed_suites+=(fuzz)
      fi ;;
    *) echo "unknown suite '$s' (use default, asan, tsan, fuzz)" >&2; exit 2 ;;
  esac
done

if [ ${#failed_suites[@]} -ne 0 ]; then
  echo "test.sh: failed suites: ${failed_suites[*]}"
  [ "$total_fail" -eq 0 ] && total_fail=1
fi
echo "tests: $total_pass passed, $total_fail failed"
[ ${#failed_suites[@]} -eq 0 ]
