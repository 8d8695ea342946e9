# tests/cli_test_lib.sh: what the bash CLI tests share (sourced, not run). Background pkrt
# runs go into `pids` and are killed when the test exits, however it exits.
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  exit 1
}
expect_in() {  # expect_in FILE TEXT WHAT
  grep -qF -- "$2" "$1" || fail "$3: no '$2' in
$(cat "$1")"
}
checksum_of() { sed -n 's/.*"checksum": "\(0x[0-9a-f]*\)".*/\1/p' "$1"; }
restored_epoch_of() { sed -n 's/.*"restored_epoch": \([0-9]*\).*/\1/p' "$1"; }
# wait_for_first_set DIR PID: true once DIR holds a committed set (a *.pkset manifest),
# false after 15 s or as soon as the run PID has ended without one.
wait_for_first_set() {
  local dir=$1 pid=$2 i
  for ((i = 0; i < 300; i++)); do
    compgen -G "$dir/*.pkset" >/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}
