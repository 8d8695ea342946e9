# Installs pkrt into a scratch prefix, then configures, builds and runs examples/standalone
# against it with find_package(pkrt), as a user's application would.
# With MPI (MPIRUN set and the package has pkrt::mpi), also counter_mpi under mpirun -np 1, 2
# and 3.
# Inputs: PKRT_BUILD_DIR, PKRT_SOURCE_DIR, WORK_DIR, CUDA_COMPILER and MPIRUN (may be empty).
file(REMOVE_RECURSE "${WORK_DIR}")
execute_process(COMMAND ${CMAKE_COMMAND} --install "${PKRT_BUILD_DIR}" --prefix "${WORK_DIR}/prefix"
                RESULT_VARIABLE rc OUTPUT_QUIET)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cmake --install failed (${rc})")
endif()
set(extra "")
if(CUDA_COMPILER)
  list(APPEND extra "-DCMAKE_CUDA_COMPILER=${CUDA_COMPILER}")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -S "${PKRT_SOURCE_DIR}/examples/standalone" -B "${WORK_DIR}/build"
                        "-DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix" -DCMAKE_BUILD_TYPE=Release ${extra}
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "configuring examples/standalone against the installed package failed (${rc})")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build "${WORK_DIR}/build" -j 2 RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "building examples/standalone failed (${rc})")
endif()
execute_process(COMMAND "${WORK_DIR}/build/counter_app" RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
message("${out}${err}")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "counter_app failed (${rc})")
endif()
if(MPIRUN AND EXISTS "${WORK_DIR}/build/counter_mpi")
  # One rank (no exchange), an even and an uneven split of the 8 counters.
  foreach(ranks 1 2 3)
    execute_process(COMMAND "${MPIRUN}" --oversubscribe --allow-run-as-root -np ${ranks} "${WORK_DIR}/build/counter_mpi"
                    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 300)
    message("${out}${err}")
    if(NOT rc EQUAL 0 OR NOT out MATCHES "counter_mpi: ${ranks} ranks, 8 counters at 300 after epoch 100: ok")
      message(FATAL_ERROR "counter_mpi under mpirun -np ${ranks} failed (${rc})")
    endif()
  endforeach()
elseif(MPIRUN)
  message(FATAL_ERROR "pkrt was built with MPI but counter_mpi was not built against the installed package")
endif()
message("standalone: all checks passed")
