# racy_sum keeps its accumulator in the app-wide (global) region: a run with checkpoint sets
# and a replay log writes the region into every set ("member global"), and a replay that starts
# from a set (same chaos seed, so the adds happen in the same order) is identical. Without the
# region in the set, the first total reported after the restore epoch would differ.
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")
include(${CMAKE_CURRENT_LIST_DIR}/cli_run_pkrt.cmake)
set(run run --app racy_sum --actors 8 --threads 4 --chaos 3 --epochs 60 --quiet)
run_pkrt(out rc ${run} --checkpoint-dir ${WORK}/sets --checkpoint-every 20 --replay-log ${WORK}/run.log)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "racy_sum with checkpoints failed (${rc}): ${out}")
endif()
run_pkrt(out rc checkpoint inspect ${WORK}/sets/racy_sum-set-e000000000040.pkset)
if(NOT rc EQUAL 0 OR NOT out MATCHES "global region +8 B" OR NOT out MATCHES "member global +racy_sum-e000000000040-s[0-9]+-global-")
  message(FATAL_ERROR "the set does not hold the global region: exit ${rc}\n${out}")
endif()
run_pkrt(out rc replay ${WORK}/run.log --chaos 3 --from-checkpoint ${WORK}/sets --quiet)
message("${out}")
if(NOT rc EQUAL 0 OR NOT out MATCHES "from the checkpoint at epoch 40" OR NOT out MATCHES "verdict: identical")
  message(FATAL_ERROR "replay of racy_sum from its checkpoint: exit ${rc}\n${out}")
endif()
