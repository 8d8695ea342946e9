# The replay CLI contract: `pkrt replay` exits 0 on an identical replay, 1 with the first
# divergent epoch and actor on a diverged one (racy_sum under another chaos seed) or when a
# cleanly closed log has unreadable records, 2 on an unusable log; `pkrt log dump` exits 0 on a whole log, 1 on a truncated one (printing its
# intact records and where it stopped), 2 on a file that is not a log.
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")
include(${CMAKE_CURRENT_LIST_DIR}/cli_run_pkrt.cmake)
function(expect rc want out regex what)
  if(NOT rc EQUAL want OR NOT out MATCHES "${regex}")
    message(FATAL_ERROR "${what}: exit ${rc} (want ${want}), output does not match '${regex}':\n${out}")
  endif()
  message("${what}: exit ${rc} as expected")
endfunction()

set(log "${WORK}/racy.log")
run_pkrt(out rc run --app racy_sum --actors 8 --threads 4 --epochs 60 --chaos 1 --replay-log ${log} --replay-log-capacity 4096 --quiet)
expect(${rc} 0 "${out}" "replay log +[0-9]+ records" "recording racy_sum with chaos seed 1")

run_pkrt(out rc replay ${log} --chaos 1 --quiet)
expect(${rc} 0 "${out}" "verdict: identical" "replay with the recording's seed")

run_pkrt(out rc replay ${log} --chaos 2 --quiet)
expect(${rc} 1 "${out}" "verdict: diverged at epoch [0-9]+, actor 0" "replay with another chaos seed")
message("${out}")

run_pkrt(out rc replay ${log} --chaos 2 --quiet --json)
expect(${rc} 1 "${out}" "\"verdict\": \"diverged\"" "replay --json with another chaos seed")
if(NOT out MATCHES "\"epoch\": [0-9]+" OR NOT out MATCHES "\"expected\": {" OR NOT out MATCHES "\"actual\": {")
  message(FATAL_ERROR "the JSON verdict lacks the divergence's epoch, expected and actual:\n${out}")
endif()

run_pkrt(out rc log dump ${log} --json --tail 3)
expect(${rc} 0 "${out}" "\"records\": \\[" "log dump --json --tail 3")
string(REGEX MATCHALL "\"seq\": " seqs "${out}")
list(LENGTH seqs n)
if(NOT n EQUAL 3)
  message(FATAL_ERROR "--tail 3 printed ${n} records:\n${out}")
endif()

# Truncated mid-record: the intact prefix is printed and the dump says where it stopped.
# The cut falls inside the record after the first one appended once the pump had seen every
# block past epoch 0 (its epoch_observed), so the intact prefix holds a complete epoch to
# compare. A fixed byte offset is not enough: how far the pump had seen when it appended a
# given record depends on thread timing (a loaded CI machine left it at epoch 0 for the first
# ten records once).
run_pkrt(out rc log dump ${log} --json)
expect(${rc} 0 "${out}" "\"records\": \\[" "log dump --json of the whole log")
string(JSON nrecords LENGTH "${out}" records)
set(keep -1)
math(EXPR last "${nrecords} - 2")
set(first 0)
if(last GREATER 8)
  set(first 8)  # keep a few records, as a user's damaged log would
endif()
foreach(i RANGE ${first} ${last})
  string(JSON observed GET "${out}" records ${i} epoch_observed)
  if(observed GREATER 0)
    set(keep ${i})
    break()
  endif()
endforeach()
if(keep LESS 0)
  message(FATAL_ERROR "no record but the last was appended after the pump saw epoch 1:\n${out}")
endif()
# The header is 4096 bytes, each record 128 (include/pkrt/replay_log.hpp).
math(EXPR cut_bytes "4096 + (${keep} + 1) * 128 + 64")
set(cut "${WORK}/cut.log")
execute_process(COMMAND sh -c "head -c ${cut_bytes} '${log}' > '${cut}'" RESULT_VARIABLE src)
message("cut after record ${keep} of ${nrecords}, at byte ${cut_bytes}")
run_pkrt(out rc log dump ${cut})
expect(${rc} 1 "${out}" "truncated|ends|stopped" "log dump of a truncated log")

# The same cut replayed: what could be read matches, but the log was closed cleanly, so the
# missing records are damage and the rest of the run went unchecked: exit 1, saying so.
run_pkrt(out rc replay ${cut} --chaos 1 --quiet)
expect(${rc} 1 "${out}" "LOG DAMAGED: the log was closed cleanly, yet records" "replay of a damaged (truncated) log")
run_pkrt(out rc replay ${cut} --chaos 1 --quiet --json)
expect(${rc} 1 "${out}" "\"log_damaged\": true" "replay --json of a damaged log")

file(WRITE "${WORK}/garbage.log" "this is not a replay log at all, just text")
run_pkrt(out rc log dump "${WORK}/garbage.log")
expect(${rc} 2 "${out}" "error: corrupt_data" "log dump of a text file")
run_pkrt(out rc replay "${WORK}/garbage.log")
expect(${rc} 2 "${out}" "error: corrupt_data" "replay of a text file")
run_pkrt(out rc replay "${WORK}/does-not-exist.log")
expect(${rc} 2 "${out}" "error: io_error" "replay of a missing file")
