#!/usr/bin/env bash
# bench/report.sh: builds pkrt_bench (Release, the default configuration: the CUDA variants
# are compiled when nvcc exists), runs the whole suite in short mode (a few minutes on 2 cores),
# and writes BENCHMARKS.md (every figure against its in-run baseline, the target, pass/fail),
# bench/snapshot_latency.png (latency and stall against state size, log-log, floor drawn) and
# bench/latency_cdf.png (the round-trip latency CDFs the benchmarks dump into $build/bench-cdf).
#
#   bash bench/report.sh                  build + run + report
#   bash bench/report.sh --from FILE.json report from an earlier run's JSON, no build or run
#                                         (the CDFs are read from bench-cdf/ next to FILE.json)
# Environment: PKRT_BENCH_BUILD (build directory; default build/, reused when scripts/test.sh
# configured it), PKRT_BENCH_FILTER (a --benchmark_filter regex), PKRT_JOBS.
# Exit 0 when the report was written (whatever the targets say: the table does), 2 when a
# tool is missing, 1 when the build or the run failed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
source scripts/deps.sh

from=""
if [ "${1:-}" = "--from" ]; then
  from=${2:?"usage: bench/report.sh [--from RESULTS.json]"}
fi

# ---- gnuplot for the PNG (Debian: gnuplot-nox) ----------------------------------------------
if ! command -v gnuplot >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "report.sh: installing gnuplot-nox (draws bench/snapshot_latency.png and bench/latency_cdf.png)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gnuplot-nox >/dev/null 2>&1 || true
  fi
  if ! command -v gnuplot >/dev/null 2>&1; then
    echo "report.sh: gnuplot is needed to draw the report's PNGs and could not be installed." >&2
    echo "report.sh: fix: sudo apt-get install -y gnuplot-nox   (then re-run bench/report.sh)" >&2
    exit 2
  fi
fi
if ! command -v python3 >/dev/null 2>&1; then
  echo "report.sh: python3 is needed for the table. Fix: sudo apt-get install -y python3" >&2
  exit 2
fi

build=${PKRT_BENCH_BUILD:-build}
if [ -z "$from" ]; then
  pkrt_ensure_deps
  jobs=$(pkrt_jobs)
  # Reuse a Release build without sanitizers (scripts/test.sh's build/); otherwise configure one.
  if [ -f "$build/CMakeCache.txt" ]; then
    if ! grep -q '^CMAKE_BUILD_TYPE:STRING=Release$' "$build/CMakeCache.txt" ||
       grep -q '^PKRT_SANITIZE:STRING=..*$' "$build/CMakeCache.txt"; then
      echo "report.sh: $build is not a plain Release build; using build-report/ instead"
      build=build-report
    fi
  fi
  if [ ! -f "$build/CMakeCache.txt" ]; then
    echo "==> configure $build (Release; CUDA variants when nvcc exists)"
    cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >"$build.configure.log" 2>&1 ||
      { cat "$build.configure.log"; exit 1; }
  fi
  if grep -q '^PKRT_BUILD_BENCH:BOOL=OFF$' "$build/CMakeCache.txt"; then
    echo "==> $build was configured without benchmarks; turning PKRT_BUILD_BENCH on"
    cmake -S . -B "$build" -DPKRT_BUILD_BENCH=ON >"$build.configure.log" 2>&1 ||
      { cat "$build.configure.log"; exit 1; }
  fi
  echo "==> build pkrt_bench in $build"
  cmake --build "$build" --target pkrt_bench -j "$jobs" >"$build/bench.build.log" 2>&1 ||
    { tail -40 "$build/bench.build.log"; exit 1; }
  results="$root/$build/bench-results.json"
  plotdir="$build"
  cdfdir="$root/$build/bench-cdf"
  echo "==> run the suite (short mode); console output in $build/bench-run.log"
  mkdir -p "$build/bench-scratch"
  rm -rf "$cdfdir"
  mkdir -p "$cdfdir"
  start=$(date +%s)
  (cd "$build" && PKRT_BENCH_SHORT=1 PKRT_BENCH_DIR="$root/$build/bench-scratch" PKRT_BENCH_CDF_DIR="$cdfdir" \
     ./bin/pkrt_bench --benchmark_min_time=0.5 \
       ${PKRT_BENCH_FILTER:+--benchmark_filter="$PKRT_BENCH_FILTER"} \
       --benchmark_out="$results" --benchmark_out_format=json) 2>&1 | tee "$build/bench-run.log" ||
    { echo "report.sh: pkrt_bench failed (see $build/bench-run.log)" >&2; exit 1; }
  rm -rf "$build/bench-scratch"
  echo "==> suite ran in $(( $(date +%s) - start )) s"
  command_text="short mode, \`PKRT_BENCH_SHORT=1 pkrt_bench --benchmark_min_time=0.5\`"
else
  results=$from
  [ -f "$results" ] || { echo "report.sh: no such file: $results" >&2; exit 2; }
  plotdir=$(dirname "$results")
  cdfdir="$plotdir/bench-cdf"
  command_text="from \`$from\`"
fi

# Scale-out over MPI ranks: its own binary under mpirun (built with MPI only).
mpi_results=""
if [ -z "$from" ]; then
  if cmake --build "$build" --target pkrt_mpi_bench -j "$jobs" >>"$build/bench.build.log" 2>&1 &&
     [ -x "$build/bin/pkrt_mpi_bench" ] && command -v mpirun >/dev/null 2>&1; then
    mpi_results="$root/$build/bench-mpi-results.json"
    echo "==> run pkrt_mpi_bench under mpirun -np 4 (oversubscribed on fewer cores)"
    mpirun --oversubscribe --allow-run-as-root -np 4 "$build/bin/pkrt_mpi_bench" \
      --benchmark_out="$mpi_results" --benchmark_out_format=json >"$build/bench-mpi-run.log" 2>&1 ||
      { echo "report.sh: pkrt_mpi_bench failed (see $build/bench-mpi-run.log)" >&2; exit 1; }
  else
    echo "==> no pkrt_mpi_bench (built without MPI): the MPI section is left as it is"
  fi
elif [ -f "$(dirname "$results")/bench-mpi-results.json" ]; then
  mpi_results="$(dirname "$results")/bench-mpi-results.json"
fi

echo "==> BENCHMARKS.md, bench/snapshot_latency.png and bench/latency_cdf.png"
python3 bench/report.py "$results" --markdown BENCHMARKS.md --plot-data "$plotdir" \
  --png "$root/bench/snapshot_latency.png" --cdf-dir "$cdfdir" --cdf-png "$root/bench/latency_cdf.png" \
  --command "$command_text"
if [ -n "$mpi_results" ]; then
  python3 bench/mpi_report.py "$mpi_results" BENCHMARKS.md --command "mpirun --oversubscribe -np 4 pkrt_mpi_bench"
fi
gnuplot "$plotdir/snapshot_latency.gp"
if [ -f "$plotdir/latency_cdf.gp" ]; then
  gnuplot "$plotdir/latency_cdf.gp"
  echo "report.sh: wrote BENCHMARKS.md, bench/snapshot_latency.png and bench/latency_cdf.png"
else
  echo "report.sh: wrote BENCHMARKS.md and bench/snapshot_latency.png (no round-trip CDFs in this run)"
fi
