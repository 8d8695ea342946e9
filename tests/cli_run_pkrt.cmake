# Shared by the CLI contract scripts: run_pkrt(OUT RC args...) runs ${PKRT} with the
# arguments and returns its stdout and stderr together, and its exit code.
function(run_pkrt out_var rc_var)
  execute_process(COMMAND ${PKRT} ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  set(${out_var} "${out}${err}" PARENT_SCOPE)
  set(${rc_var} ${rc} PARENT_SCOPE)
endfunction()
