# scripts/deps.sh: sourced by the other scripts. Installs the Debian packages pkrt needs when
# run as root, or prints the exact apt-get line to run. The CUDA toolkit is optional: without
# nvcc only the CPU backend is built. clang + libclang-rt-dev build the libFuzzer targets.
# libopenmpi-dev + openmpi-bin build pkrt::mpi and run the MPI tests (scale-out).
PKRT_DEBIAN_PACKAGES=(
  cmake make g++ pkg-config git
  libgtest-dev libbenchmark-dev
  libzstd-dev libisal-dev libdeflate-dev zlib1g-dev
  libcli11-dev nlohmann-json3-dev libboost-dev
  clang libclang-rt-dev
  libopenmpi-dev openmpi-bin
)

pkrt_ensure_deps() {
  local missing=()
  local p
  for p in "${PKRT_DEBIAN_PACKAGES[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    return 0
  fi
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "pkrt: installing missing packages: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "pkrt: missing packages: ${missing[*]}" >&2
    echo "pkrt: run: sudo apt-get install -y ${missing[*]}" >&2
    exit 2
  fi
}

pkrt_jobs() {
  echo "${PKRT_JOBS:-$(nproc 2>/dev/null || echo 2)}"
}
