# bench/smoke_test.cmake: ctest's smoke run of pkrt_bench. Every benchmark runs once or twice
# at its smallest size; the test fails if the binary fails or any benchmark reports an error
# other than the expected skip of CUDA variants on a machine without a GPU. No timing is
# judged here (bench/report.sh does that).
#   cmake -DPKRT_BENCH=<path to pkrt_bench> -DSCRATCH=<dir> [-DMPIRUN=<mpirun> -DRANKS=<n>]
#         [-DMIN_BENCHMARKS=<n>] -P smoke_test.cmake
# With MPIRUN (pkrt_mpi_bench): under `mpirun --oversubscribe --allow-run-as-root -np RANKS`.
set(ENV{PKRT_BENCH_SHORT} smoke)
set(ENV{PKRT_BENCH_DIR} "${SCRATCH}")
file(MAKE_DIRECTORY "${SCRATCH}")
if(NOT DEFINED MIN_BENCHMARKS)
  set(MIN_BENCHMARKS 10)
endif()
set(launch)
if(MPIRUN)
  set(launch "${MPIRUN}" --oversubscribe --allow-run-as-root -x PKRT_BENCH_SHORT -x PKRT_BENCH_DIR -np ${RANKS})
endif()
execute_process(COMMAND ${launch} "${PKRT_BENCH}" --benchmark_min_time=0.001 --benchmark_color=false
                OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc TIMEOUT 170)
file(REMOVE_RECURSE "${SCRATCH}")
message("${out}${err}")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${PKRT_BENCH} exited with ${rc}")
endif()
string(REGEX MATCHALL "[^\n]*ERROR OCCURRED[^\n]*" errors "${out}${err}")
set(bad 0)
foreach(line IN LISTS errors)
  if(NOT line MATCHES "no CUDA GPU")
    message("unexpected benchmark error: ${line}")
    math(EXPR bad "${bad} + 1")
  endif()
endforeach()
string(REGEX MATCHALL "\nBM_[^\n]*" ran "${out}")
list(LENGTH ran count)
if(count LESS MIN_BENCHMARKS)
  message(FATAL_ERROR "only ${count} benchmarks reported; expected the whole suite")
endif()
if(bad GREATER 0)
  message(FATAL_ERROR "${bad} benchmark(s) failed (see above)")
endif()
get_filename_component(name "${PKRT_BENCH}" NAME)
message("bench smoke: ${count} benchmarks of ${name} ran without an error (CUDA variants skip without a GPU)")
