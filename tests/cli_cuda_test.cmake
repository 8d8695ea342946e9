# `pkrt run --backend cuda`: on a machine without a usable GPU it exits 2 with a message that
# names the problem and the fix; on a machine with one it runs and exits 0.
execute_process(COMMAND ${PKRT} run --backend cuda --quiet --epochs 50 RESULT_VARIABLE rc
                OUTPUT_VARIABLE out ERROR_VARIABLE err)
message("exit ${rc}\n${out}${err}")
if("${err}" MATCHES "device_unavailable")
  if(NOT rc EQUAL 2)
    message(FATAL_ERROR "no GPU: expected exit 2, got ${rc}")
  endif()
  if(NOT "${err}" MATCHES "CUDA backend unavailable.*(cudaGetDeviceCount|built without CUDA).*Fix: .*--backend cpu")
    message(FATAL_ERROR "the message must name the failing call or build and the fix")
  endif()
elseif(NOT rc EQUAL 0 OR NOT "${out}" MATCHES "backend +cuda \\(")
  message(FATAL_ERROR "a GPU is present but the CUDA run did not succeed")
endif()
