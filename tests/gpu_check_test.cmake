# tests/gpu_check_test.cmake: scripts/gpu_check.sh's plumbing, on any machine, with the binaries
# of this build tree (nothing is configured or rebuilt).
#   MODE=rehearsal  --cpu-rehearsal: exit 0, one PASS/SKIP line per check, a report that lists
#                   every check with the result the rehearsal must give, equal heat2d checksums
#                   and the replay verdict "identical".
#   MODE=nogpu      exit 2 with a message saying what is missing and what to do, for each way a
#                   GPU can be unusable: no nvidia-smi, nvidia-smi failing, nvidia-smi listing no
#                   GPU, and a GPU listed that pkrt cannot use (CUDA_VISIBLE_DEVICES=-1 hides every
#                   device, so this holds on a GPU machine too). Fake nvidia-smi scripts stand in.
#   cmake -DMODE=rehearsal|nogpu -DBASH=<bash> -DSCRIPT=<scripts/gpu_check.sh> -DBIN_DIR=<build>/bin
#         -DWORK=<dir> -P gpu_check_test.cmake
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")

function(run_script out_rc out_text)
  execute_process(COMMAND ${CMAKE_COMMAND} -E env ${ARGN} "${BASH}" "${SCRIPT}" ${SCRIPT_ARGS}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 170)
  message("---- gpu_check.sh ${SCRIPT_ARGS} (${ARGN}): exit ${rc}\n${out}${err}")
  set(${out_rc} "${rc}" PARENT_SCOPE)
  set(${out_text} "${out}${err}" PARENT_SCOPE)
endfunction()

function(expect text regex what)
  if(NOT "${text}" MATCHES "${regex}")
    message(FATAL_ERROR "${what}: no match for '${regex}'")
  endif()
endfunction()

if(MODE STREQUAL "rehearsal")
  set(SCRIPT_ARGS --cpu-rehearsal)
  run_script(rc text OUT=${WORK}/report PKRT_GPU_CHECK_BIN_DIR=${BIN_DIR})
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "the rehearsal exited ${rc}, expected 0")
  endif()
  set(report "${WORK}/report/gpu-report.md")
  if(NOT EXISTS "${report}")
    message(FATAL_ERROR "no report at ${report}")
  endif()
  expect("${text}" "report: ${report}" "the last line names the report")
  file(READ "${report}" md)
  # What each check must give in a rehearsal: the GPU-only ones are SKIP lines, the build is
  # skipped because the binaries were given, the benchmarks run their CPU variants when
  # pkrt_bench was built.
  set(bench_result PASS)
  if(NOT EXISTS "${BIN_DIR}/pkrt_bench")
    set(bench_result SKIP)
  endif()
  foreach(pair build:SKIP selftest:PASS ctest:PASS memcheck:SKIP racecheck:SKIP synccheck:SKIP
               bench-roundtrip:${bench_result} bench-snapshot:${bench_result} bench-device:SKIP
               heat2d:PASS replay:PASS)
    string(REPLACE ":" ";" kv "${pair}")
    list(GET kv 0 check)
    list(GET kv 1 want)
    expect("${md}" "\n\\| ${check} \\| ${want} \\| [0-9]+\\.[0-9] \\|" "report row of ${check}")
    expect("${text}" "\n${want} +${check} " "console line of ${check}")
    if(NOT EXISTS "${WORK}/report/${check}.log")
      message(FATAL_ERROR "no log for ${check}")
    endif()
  endforeach()
  expect("${md}" "CPU rehearsal: no GPU was used" "the report says it is a rehearsal")
  expect("${md}" "Summary: [0-9]+ passed, 0 failed" "the summary line")
  # Matched here, not in expect(): the captures live in the scope of the if().
  if(NOT md MATCHES "heat2d final field checksum: the run on cpu \\(1 worker thread\\) `(0x[0-9a-f]+)`, the CPU run `(0x[0-9a-f]+)`: equal")
    message(FATAL_ERROR "the checksums: no line saying both and 'equal'")
  endif()
  if(NOT CMAKE_MATCH_1 STREQUAL CMAKE_MATCH_2)
    message(FATAL_ERROR "the report says equal for ${CMAKE_MATCH_1} and ${CMAKE_MATCH_2}")
  endif()
  message("heat2d checksums in the report: ${CMAKE_MATCH_1} and ${CMAKE_MATCH_2}")
  expect("${md}" "replay of a run recorded on cpu, on the CPU backend: \\*\\*identical\\*\\*" "the replay verdict")
  if(bench_result STREQUAL "PASS")
    expect("${md}" "round trip host -> actor -> host on cpu: p50 [0-9.]+ us" "the round-trip figure")
    expect("${md}" "\\| 256 KiB \\| [0-9.]+ \\| [0-9.]+ \\|" "the snapshot stall row")
    foreach(json bench-roundtrip.json bench-snapshot.json)
      if(NOT EXISTS "${WORK}/report/${json}")
        message(FATAL_ERROR "no ${json}")
      endif()
    endforeach()
  endif()
elseif(MODE STREQUAL "nogpu")
  set(SCRIPT_ARGS "")
  set(listed "${WORK}/nvidia-smi-lists-a-gpu")
  file(WRITE "${listed}" "#!/bin/sh\ncase \"$*\" in\n  *compute_cap*) echo 9.0 ;;\n"
                         "  *--query-gpu*) echo 'Fake GPU, 999.99' ;;\n"
                         "  *) echo '| NVIDIA-SMI 999.99  Driver Version: 999.99  CUDA Version: 99.9 |' ;;\nesac\n")
  set(failing "${WORK}/nvidia-smi-fails")
  file(WRITE "${failing}" "#!/bin/sh\necho \"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\"\nexit 9\n")
  set(empty "${WORK}/nvidia-smi-lists-nothing")
  file(WRITE "${empty}" "#!/bin/sh\nexit 0\n")
  file(CHMOD "${listed}" "${failing}" "${empty}" PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE)

  # Each case: the reason the script must give | the environment, entries separated by ",".
  # Every case names this tree's binaries, so that none can ever start a build.
  set(cases
      "nvidia-smi not found at ${WORK}/no-such-nvidia-smi|PKRT_NVIDIA_SMI=${WORK}/no-such-nvidia-smi"
      "nvidia-smi failed \\(exit 9\\): NVIDIA-SMI has failed|PKRT_NVIDIA_SMI=${failing}"
      "nvidia-smi lists no GPU|PKRT_NVIDIA_SMI=${empty}"
      "pkrt found no usable cuda device: pkrt selftest: error: .*CUDA backend unavailable|PKRT_NVIDIA_SMI=${listed},CUDA_VISIBLE_DEVICES=-1")
  set(n 0)
  foreach(c IN LISTS cases)
    string(REPLACE "|" ";" parts "${c}")
    list(GET parts 0 reason)
    list(GET parts 1 env)
    string(REPLACE "," ";" env "${env}")
    math(EXPR n "${n} + 1")
    run_script(rc text OUT=${WORK}/report${n} PKRT_GPU_CHECK_BIN_DIR=${BIN_DIR} ${env})
    if(NOT rc EQUAL 2)
      message(FATAL_ERROR "case ${n}: exit ${rc}, expected 2")
    endif()
    expect("${text}" "no usable GPU: ${reason}" "case ${n}: what is missing")
    expect("${text}" "fix: run it on a GPU machine" "case ${n}: what to do")
    expect("${text}" "--cpu-rehearsal" "case ${n}: the rehearsal is offered")
    file(READ "${WORK}/report${n}/gpu-report.md" md)
    expect("${md}" "Stopped early: no usable GPU: ${reason}" "case ${n}: the report says why")
  endforeach()
  message("gpu_check.sh exits 2 with the reason and the fix in all ${n} cases")
else()
  message(FATAL_ERROR "MODE must be rehearsal or nogpu")
endif()
