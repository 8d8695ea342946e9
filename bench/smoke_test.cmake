# bench/smoke_test.cmake: ctest's smoke run of pkrt_bench. Every benchmark runs once or twice
# at its smallest size; the test fails if the binary fails or any benchmark reports an error
# other than the expected skip of CUDA variants on a machine without a GPU. No timing is
# judged here (bench/report.sh does that).
#   cmake -DPKRT_BENCH=<path to pkrt_bench> -DSCRATCH=<dir> -P smoke_test.cmake
set(ENV{PKRT_BENCH_SHORT} smoke)
set(ENV{PKRT_BENCH_DIR} "${SCRATCH}")
file(MAKE_DIRECTORY "${SCRATCH}")
execute_process(COMMAND "${PKRT_BENCH}" --benchmark_min_time=0.001
                OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
file(REMOVE_RECURSE "${SCRATCH}")
message("${out}${err}")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "pkrt_bench exited with ${rc}")
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
if(count LESS 10)
  message(FATAL_ERROR "only ${count} benchmarks reported; expected the whole suite")
endif()
if(bad GREATER 0)
  message(FATAL_ERROR "${bad} benchmark(s) failed (see above)")
endif()
message("bench smoke: ${count} benchmarks ran, CUDA variants skipped where there is no GPU")
