// mpi/mpi_support.hpp: what the pkrt::mpi sources share: MPI errors as Status, and waiting
// for non-blocking requests with a deadline that names the ranks still missing.
#pragma once

#include <pkrt/status.hpp>

#include <mpi.h>
#if defined(OPEN_MPI) && __has_include(<mpi-ext.h>)
#include <mpi-ext.h>  // MPIX_Query_cuda_support, when Open MPI built its CUDA extension
#endif

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace pkrt::mpi::detail {

inline Status mpi_error(int rc, const char* what) {
  char text[MPI_MAX_ERROR_STRING] = {};
  int len = 0;
  MPI_Error_string(rc, text, &len);
  return Status(StatusCode::kInternal, std::string("MPI ") + what + " failed: " + std::string(text, len));
}

// Whether this MPI library takes CUDA device pointers in its calls, as Open MPI reports it at
// run time (MPIX_Query_cuda_support); false where the library has no way to say.
inline bool mpi_reports_cuda_support() {
#if defined(MPIX_CUDA_AWARE_SUPPORT)
  return MPIX_Query_cuda_support() == 1;
#else
  return false;
#endif
}

inline std::string rank_list(const std::vector<int>& ranks) {
  std::string out;
  for (int r : ranks) out += (out.empty() ? "" : ", ") + std::to_string(r);
  return out;
}

// Waits for every request (MPI_Testall, yielding, then sleeping briefly: ranks may share
// cores). On timeout names the peers whose requests did not finish and leaves the requests
// pending (see the loop's end): the caller aborts the job or makes no further MPI call on them.
inline Status wait_all(std::vector<MPI_Request>& requests, const std::vector<int>& peer_of, std::chrono::milliseconds timeout,
                const std::string& what) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (std::uint32_t polls = 0;; ++polls) {
    int done = 0;
    const int rc = MPI_Testall(static_cast<int>(requests.size()), requests.data(), &done, MPI_STATUSES_IGNORE);
    if (rc != MPI_SUCCESS) return mpi_error(rc, "Testall");
    if (done != 0) return Status();
    if (std::chrono::steady_clock::now() > deadline) break;
    if (polls < 256) std::this_thread::yield();
    else std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  std::vector<int> missing;
  for (std::size_t i = 0; i < requests.size(); ++i) {
    if (requests[i] == MPI_REQUEST_NULL) continue;
    int flag = 0;
    MPI_Test(&requests[i], &flag, MPI_STATUS_IGNORE);
    if (flag != 0) continue;
    if (std::find(missing.begin(), missing.end(), peer_of[i]) == missing.end()) missing.push_back(peer_of[i]);
    // Left pending: cancelling a collective's request is erroneous MPI, and the caller either
    // aborts the job or makes no further call on this communicator (pkrt/mpi.hpp).
  }
  // Every request finished in the last test, after the deadline: nothing is missing.
  if (missing.empty()) return Status();
  std::sort(missing.begin(), missing.end());
  const bool unknown = !missing.empty() && missing.front() < 0;  // a collective: we cannot tell who
  return Status(StatusCode::kTimeout, what + ": " + (unknown ? std::string("some rank") : "rank(s) " + rank_list(missing)) +
                                          " did not answer within " +
                                          std::to_string(timeout.count()) +
                                          " ms. They are stuck, much slower, or gone (mpirun reports a killed rank). "
                                          "Fix: look at those ranks' output, or raise ShardOptions::exchange_timeout");
}

// Waits for one request (wait_all). On a timeout it stays pending, so `buffers`, what it still
// reads or writes, go to `keep`, or are leaked when no owner outlives the caller (`keep`
// null): MPI never writes memory that was freed.
inline Status wait_one(MPI_Request request, std::shared_ptr<void> buffers, std::vector<std::shared_ptr<void>>* keep,
                       std::chrono::milliseconds timeout, const std::string& what) {
  std::vector<MPI_Request> requests{request};
  Status waited = wait_all(requests, std::vector<int>{-1}, timeout, what);
  if (waited.ok()) return waited;
  if (keep != nullptr) keep->push_back(std::move(buffers));
  else (void)new std::shared_ptr<void>(std::move(buffers));
  return waited;
}

// A peer that did not answer within a deadline leaves the ranks out of step: the next
// collective on `comm` would wait for it for ever. `abort_job`: print what was waited for and
// MPI_Abort (which stops every rank); otherwise return `timeout` (the caller makes no further
// collective call on `comm`). Other errors are returned as they are.
inline Status lose_peers(MPI_Comm comm, int rank, bool abort_job, const Status& timeout) {
  if (timeout.code() != StatusCode::kTimeout || !abort_job) return timeout;
  std::fprintf(stderr, "pkrt: rank %d: %s\npkrt: rank %d: aborting the job (MPI_Abort): ranks that stopped answering "
                       "cannot be waited for, and the others would wait for ever\n",
               rank, timeout.message().c_str(), rank);
  std::fflush(stderr);
  MPI_Abort(comm, 3);
  return timeout;  // not reached
}

}  // namespace pkrt::mpi::detail
