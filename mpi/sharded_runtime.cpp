// mpi/sharded_runtime.cpp: see pkrt/mpi.hpp.
//
// One exchange (epoch e), on every rank, in the same order. Only ranks with something for
// each other exchange messages; what every rank does with every other is one non-blocking
// all-reduce of 8 bytes (O(log R) latency), which also carries failures. It is the
// nonblocking consensus of Hoefler, Siebert and Lumsdaine ("Scalable communication protocols
// for dynamic sparse data exchange", PPoPP 2010):
//   1. wait until the local grid completed e (or failed: the failure goes into step 3's
//      all-reduce instead of data);
//   2. collect e's outbound K2K (Runtime::collect_outbound_k2k) and the replies due at e, and
//      pack one message per destination rank: a MessageHeader, the K2KTransfer records, their
//      payloads, the replies to the receiver's forwarded sends that applied by e;
//   3. MPI_Issend each message (tag kDataTag + e % 2), and meanwhile receive whatever arrives
//      for e (MPI_Improbe from any source, MPI_Imrecv). Once our synchronous sends have all
//      matched, join an MPI_Iallreduce(MAXLOC) of {failure code, rank}; keep receiving until
//      it completes. It completes only after every rank joined, so after every message for
//      us has matched one of our receives: nothing more is coming. A rank that does not get
//      there within the deadline is named by those whose messages it did not take, and the
//      job is aborted (peers_lost). A failure in the result: every rank agrees on who failed
//      (agree()) and returns it;
//   4. complete the futures of this rank's forwarded sends with their replies, then deliver
//      the K2K in rank order (Runtime::deliver_inbound_k2k), which opens e + D.
// A reply is ready on the owner at step 2 of its command's apply epoch a: the kernel answers
// every command of epoch a before the heartbeat of a (kernels/persistent_loop.hpp, step 8),
// so the owner waits only for its own pump or drain, and the reply travels with a's exchange.
//
// The hand-over (hand_over_commands): on more than one rank, every host command posted or
// sent (for any actor, this rank's too) waits on the calling rank until the next run_until or
// checkpoint. These start with one more round of step 3 (tag kHandOverTag), every grid still
// parked at p: each rank sends each owner a MessageHeader and the WireCommand records for it,
// and each owner posts (sends) what it got in rank order, its own commands in its own turn,
// before any grid leaves p. So a command applies at max(apply epoch, p + 1) on any rank, as
// Runtime::post on its owner would have made it, and commands of one epoch for one actor enter
// its ring in (calling rank, call order) order whichever rank runs it: results do not depend
// on the partition even where commands do not commute. A run_until with nothing to hand over
// pays that round's 8-byte all-reduce. The tag is the round's own: a peer that left the
// hand-over can already send its first exchange message, never its next hand-over (the
// run_until's closing agreement, or checkpoint()'s, comes between).
// Messages carry their epoch, checked on receipt.
#include <pkrt/crc32.hpp>
#include <pkrt/mpi.hpp>

#include "host/request_table.hpp"
#include "mpi/mpi_support.hpp"

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <future>
#include <limits>
#include <map>
#include <random>
#include <string_view>
#include <thread>

#include <unistd.h>

namespace pkrt::mpi {
namespace {

using detail::mpi_error;
using detail::rank_list;
using detail::wait_all;
using detail::wait_one;

constexpr int kDataTag = 7302;      // and 7303: epochs alternate
constexpr int kHandOverTag = 7304;  // forwarded host commands (hand_over_commands)

// What starts each exchange or hand-over message (a peer gets one only when there is
// something for it).
struct MessageHeader {
  std::uint64_t epoch = 0;
  std::uint64_t messages = 0;     // K2KTransfer records for the receiver
  std::uint64_t bytes = 0;        // their payload bytes
  std::uint64_t reply_bytes = 0;  // replies to the receiver's forwarded sends (WireReply + text)
  std::uint32_t commands = 0;     // hand-over only: host commands for the receiver's actors (WireCommand)
  std::uint32_t reserved = 0;
};
static_assert(sizeof(MessageHeader) == 40, "MessageHeader travels as bytes");

// A forwarded host command as it travels (no padding: every byte is written).
struct WireCommand {
  std::uint32_t actor = 0;  // global id
  std::uint16_t opcode = 0;
  std::uint16_t reserved = 0;
  std::uint64_t apply_epoch = 0;
  std::uint64_t reply_token = 0;  // 0: a post
  std::array<std::byte, kEnvelopeDataBytes> data{};
};
static_assert(sizeof(WireCommand) == 56, "WireCommand travels as bytes");

// A reply to a forwarded send, followed by its status message (message_bytes of text).
struct WireReply {
  std::uint64_t token = 0;
  std::uint32_t code = 0;  // Reply::status
  std::uint32_t message_bytes = 0;
  std::uint16_t opcode = 0;  // Reply::event
  std::uint16_t flags = 0;
  std::uint32_t actor = 0;
  std::uint32_t block = 0;
  std::uint32_t reserved = 0;
  std::uint64_t epoch = 0;
  std::uint64_t request = 0;
  std::array<std::byte, kEnvelopeDataBytes> data{};
};
static_assert(sizeof(WireReply) == 80, "WireReply travels as bytes");

constexpr std::uint32_t kRemoteLane = 0;
constexpr std::uint32_t kOwnedLane = 1;
// Futures of one lane outstanding before bindings spill to the table's overflow map.
constexpr std::uint32_t kReplyWindow = 4096;

template <class T>
void append_bytes(std::vector<std::byte>& out, const T& value) {
  const auto* p = reinterpret_cast<const std::byte*>(&value);
  out.insert(out.end(), p, p + sizeof value);
}

void append_reply(std::vector<std::byte>& out, std::uint64_t token, const Reply& reply) {
  WireReply w;
  w.token = token;
  w.code = static_cast<std::uint32_t>(reply.status.code());
  w.message_bytes = static_cast<std::uint32_t>(reply.status.ok() ? 0 : reply.status.message().size());
  w.opcode = reply.event.opcode;
  w.flags = reply.event.flags;
  w.actor = reply.event.actor;
  w.block = reply.event.block;
  w.epoch = reply.event.epoch;
  w.request = reply.event.request;
  w.data = reply.event.data;
  append_bytes(out, w);
  const auto* text = reinterpret_cast<const std::byte*>(reply.status.message().data());
  out.insert(out.end(), text, text + w.message_bytes);
}

}  // namespace

Result<RankContext> rank_context(MPI_Comm comm) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized == 0)
    return Status(StatusCode::kFailedPrecondition, "MPI is not initialised. Fix: call MPI_Init_thread first");
  RankContext c;
  MPI_Comm_rank(comm, &c.rank);
  MPI_Comm_size(comm, &c.size);
  MPI_Comm node = MPI_COMM_NULL;
  const int rc = MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, c.rank, MPI_INFO_NULL, &node);
  if (rc != MPI_SUCCESS) return mpi_error(rc, "Comm_split_type(MPI_COMM_TYPE_SHARED)");
  MPI_Comm_rank(node, &c.node_rank);
  MPI_Comm_size(node, &c.node_size);
  MPI_Comm_free(&node);
  return c;
}

int device_for_rank(const RankContext& context, int devices) {
  return devices <= 0 ? 0 : context.node_rank % devices;
}

ShardedRuntime::ShardedRuntime(MPI_Comm comm, RankContext context, ActorPartition partition,
                               std::chrono::milliseconds timeout)
    : comm_(comm), context_(context), partition_(std::move(partition)), timeout_(timeout) {}

Status ShardedRuntime::peers_lost(const Status& timeout) {
  if (timeout.code() == StatusCode::kTimeout && !abort_on_lost_peer_) {
    // Requests on comm_ are left pending (their buffers are members, abandoned_ or
    // kept_alive_): no collective may follow on it, so every later call returns this, and
    // comm_ is not freed.
    lost_ = timeout;
  }
  return detail::lose_peers(comm_, context_.rank, abort_on_lost_peer_, timeout);
}

Status ShardedRuntime::await_collective(MPI_Request request, std::shared_ptr<void> buffers,
                                        std::chrono::milliseconds timeout, const std::string& what) {
  const Status waited = wait_one(request, std::move(buffers), &kept_alive_, timeout,
                                 "rank " + std::to_string(context_.rank) + " " + what);
  return waited.ok() ? waited : peers_lost(waited);
}

Result<std::vector<std::uint64_t>> ShardedRuntime::allreduce(std::vector<std::uint64_t> mine, MPI_Op op,
                                                              std::chrono::milliseconds timeout, const std::string& what) {
  PKRT_RETURN_IF_ERROR(lost_);
  auto buffers = std::make_shared<std::array<std::vector<std::uint64_t>, 2>>();
  auto& [in, out] = *buffers;
  in = std::move(mine);
  out.assign(in.size(), 0);
  MPI_Request request = MPI_REQUEST_NULL;
  const int rc = MPI_Iallreduce(in.data(), out.data(), static_cast<int>(in.size()), MPI_UINT64_T, op, comm_, &request);
  if (rc != MPI_SUCCESS) return mpi_error(rc, "Iallreduce");
  PKRT_RETURN_IF_ERROR(await_collective(request, buffers, timeout, what));
  return std::move(out);
}

Status ShardedRuntime::broadcast(std::vector<std::byte>& bytes, std::chrono::milliseconds timeout, const std::string& what) {
  PKRT_RETURN_IF_ERROR(lost_);
  auto length = std::make_shared<std::uint64_t>(bytes.size());
  MPI_Request request = MPI_REQUEST_NULL;
  int rc = MPI_Ibcast(length.get(), 1, MPI_UINT64_T, 0, comm_, &request);
  if (rc != MPI_SUCCESS) return mpi_error(rc, "Ibcast");
  PKRT_RETURN_IF_ERROR(await_collective(request, length, timeout, what));
  // Every rank has rank 0's length, so every rank refuses alike.
  if (*length > static_cast<std::uint64_t>(std::numeric_limits<int>::max()))
    return Status(StatusCode::kInternal, what + ": rank 0 broadcast " + std::to_string(*length) + " bytes (at most 2 GiB)");
  auto data = std::make_shared<std::vector<std::byte>>(context_.rank == 0 ? std::move(bytes)
                                                                          : std::vector<std::byte>(*length));
  rc = MPI_Ibcast(data->data(), static_cast<int>(*length), MPI_BYTE, 0, comm_, &request);
  if (rc != MPI_SUCCESS) return mpi_error(rc, "Ibcast");
  PKRT_RETURN_IF_ERROR(await_collective(request, data, timeout, what));
  bytes = std::move(*data);
  return Status();
}

std::chrono::milliseconds ShardedRuntime::io_timeout() const {
  // As long as a rank may take to make its set durable or to read one
  // (CheckpointManager::flush's default): a slow filesystem is not a lost peer.
  return std::max<std::chrono::milliseconds>(timeout_, std::chrono::minutes(10));
}

ShardedRuntime::~ShardedRuntime() {
  manager_.reset();  // flushes what it holds; it refers to the runtime
  // The runtime's shutdown completes the owned lane's futures through their callbacks; the
  // forwarded sends still out are failed here. A future may outlive the table's owner.
  if (local_) local_->shutdown().ignore();
  if (replies_ != nullptr) {
    fail_pending_replies(Status(StatusCode::kAborted, "the ShardedRuntime was destroyed before the reply came back"));
    replies_->release_runtime_reference();
  }
  // After a lost peer, requests may still be pending on comm_: it is left to MPI_Finalize,
  // and the buffers they may still write are leaked rather than freed under them.
  if (!lost_.ok()) {
    (void)new std::pair<std::vector<std::shared_ptr<void>>, std::vector<std::vector<std::byte>>>(std::move(kept_alive_),
                                                                                                  std::move(abandoned_));
    return;
  }
  // After MPI_Finalize (a ShardedRuntime destroyed at exit), no MPI call is allowed at all.
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (comm_ != MPI_COMM_NULL && finalized == 0) MPI_Comm_free(&comm_);
}

void ShardedRuntime::fail(const Status& status) {
  failed_ = status;
  fail_pending_replies(status);
}

void ShardedRuntime::fail_pending_replies(const Status& status) {
  replies_->fail_all(status, local_ ? local_->program().name : std::string("?"));
}

namespace {

// What one rank's create() was given, gathered from every rank: a launch with other arguments
// on some rank fails on every rank, naming what differs, instead of hanging at the first
// collective the ranks no longer make alike.
struct LaunchFingerprint {
  std::uint32_t refused = 0;  // StatusCode of this rank's own checks (0: fine)
  std::uint32_t actors = 0;
  std::uint32_t k2k_delay = 0;
  std::uint32_t backend = 0;
  std::uint32_t params_bytes = 0;
  std::uint32_t program_crc = 0;
  std::uint32_t partition_crc = 0;  // the owner table (0 when this rank refused the partition)
  std::uint32_t reserved = 0;
  std::uint64_t run_nonce = 0;       // drawn by each rank; rank 0's names the run (K2K logs)
  std::uint64_t node_key = 0;        // this host's name: ranks with one key share a node
  std::uint64_t replay_log_key = 0;  // this node and the replay log's path (0: none)
  std::uint64_t k2k_log_key = 0;     // the same for ShardOptions::k2k_log
};
static_assert(sizeof(LaunchFingerprint) == 64, "LaunchFingerprint travels as bytes");

// FNV-1a (64 bits), never 0 (0 means "none"). Not a CRC: keys must not collide for texts that
// differ in a few bytes, and 64 bits keep false matches negligible at thousands of ranks.
// Distinct between runs, also on one node at one instant: the OS's entropy, the clock, the pid.
std::uint64_t run_nonce() {
  std::random_device entropy;
  std::uint64_t n = (std::uint64_t{entropy()} << 32) ^ entropy();
  n ^= static_cast<std::uint64_t>(std::chrono::system_clock::now().time_since_epoch().count());
  n ^= static_cast<std::uint64_t>(::getpid()) << 17;
  return n == 0 ? 1 : n;  // 0 means "unknown" in a K2K log
}

std::uint64_t text_key(const std::string& text) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : text) h = (h ^ c) * 0x100000001b3ull;
  return h == 0 ? 1 : h;
}

std::string host_name() {
  char host[MPI_MAX_PROCESSOR_NAME] = {};
  int host_length = 0;
  MPI_Get_processor_name(host, &host_length);
  return std::string(host, static_cast<std::size_t>(host_length));
}

// This host's name and a file's absolute path: two ranks on one node that would write one
// file get one key.
std::uint64_t file_key(const std::string& path) {
  if (path.empty()) return 0;
  std::error_code ec;
  const std::filesystem::path absolute = std::filesystem::absolute(path, ec);
  return text_key(host_name() + '\0' + (ec ? path : absolute.lexically_normal().string()));
}

// The first difference from rank 0 among the fingerprints, or ok.
Status compare_launches(const std::vector<LaunchFingerprint>& all) {
  const LaunchFingerprint& root = all.front();
  struct Field {
    const char* what;
    bool (*differs)(const LaunchFingerprint&, const LaunchFingerprint&);
  };
  static constexpr Field kFields[] = {
      {"program", [](const LaunchFingerprint& a, const LaunchFingerprint& b) { return a.program_crc != b.program_crc; }},
      // Params are compared by size only: their bytes may differ in padding (an empty
      // struct's one byte, a struct's holes) while the values are the same. A restore
      // compares them whole against the manifest rank 0 wrote.
      {"params size", [](const LaunchFingerprint& a, const LaunchFingerprint& b) { return a.params_bytes != b.params_bytes; }},
      {"actor count (RuntimeOptions::num_actors)",
       [](const LaunchFingerprint& a, const LaunchFingerprint& b) { return a.actors != b.actors; }},
      {"K2K delay (RuntimeOptions::k2k_delay)",
       [](const LaunchFingerprint& a, const LaunchFingerprint& b) { return a.k2k_delay != b.k2k_delay; }},
      {"backend (RuntimeOptions::backend)",
       [](const LaunchFingerprint& a, const LaunchFingerprint& b) { return a.backend != b.backend; }},
      // Last: another actor count also gives another partition.
      {"partition (ShardOptions::partition)",
       [](const LaunchFingerprint& a, const LaunchFingerprint& b) { return a.partition_crc != b.partition_crc; }},
  };
  for (const Field& f : kFields) {
    // The partition of a rank that refused its own (partition_crc 0) is that rank's to report.
    const bool partition = std::string_view(f.what).starts_with("partition");
    std::vector<int> ranks;
    for (std::size_t r = 1; r < all.size(); ++r)
      if (f.differs(root, all[r]) && !(partition && (root.refused != 0 || all[r].refused != 0)))
        ranks.push_back(static_cast<int>(r));
    if (ranks.empty()) continue;
    return Status(StatusCode::kInvalidArgument,
                  std::string("ShardedRuntime::create was given another ") + f.what + " on rank(s) " + rank_list(ranks) +
                      " than on rank 0; no rank runs. Fix: call it with the same program, params and options on every "
                      "rank (only the partition decides which actors a rank runs)");
  }
  return Status();
}

// Two ranks on one node that would write the same log file, or ok.
Status shared_log_files(const std::vector<LaunchFingerprint>& all, int me, const ShardOptions& options) {
  const std::pair<std::uint64_t LaunchFingerprint::*, const char*> kinds[] = {
      {&LaunchFingerprint::replay_log_key, "replay log (RuntimeOptions::replay_log)"},
      {&LaunchFingerprint::k2k_log_key, "inbound K2K log (ShardOptions::k2k_log)"}};
  for (const auto& [key, what] : kinds) {
    for (std::size_t a = 0; a < all.size(); ++a) {
      for (std::size_t b = a + 1; b < all.size(); ++b) {
        if (all[a].*key == 0 || all[a].*key != all[b].*key) continue;
        std::string path;
        if (static_cast<std::size_t>(me) == a || static_cast<std::size_t>(me) == b) {
          path = key == &LaunchFingerprint::replay_log_key ? options.runtime.replay_log->path() : options.k2k_log;
          path = " '" + path + "'";
        }
        return Status(StatusCode::kInvalidArgument,
                      "ranks " + std::to_string(a) + " and " + std::to_string(b) + " would write the same " + what + path +
                          " on one node, each over the other's; no rank runs. Fix: one file per rank, e.g. "
                          "<path>.rank<r> as `pkrt run` names them");
      }
    }
  }
  return Status();
}

}  // namespace

Result<std::unique_ptr<ShardedRuntime>> ShardedRuntime::create(MPI_Comm comm, const Program& program, const void* params,
                                                               std::size_t params_bytes, const ShardOptions& options) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized == 0)
    return Status(StatusCode::kFailedPrecondition, "MPI is not initialised. Fix: call MPI_Init_thread first");
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  // Every rank gets this far whatever it was given (no return before the first collective):
  // a rank that refused alone would leave the others waiting in it. The duplicate is made with
  // the deadline, so a rank that never calls create() is reported rather than waited for.
  auto dup_box = std::make_shared<MPI_Comm>(MPI_COMM_NULL);
  MPI_Request dup_request = MPI_REQUEST_NULL;
  const int rc = MPI_Comm_idup(comm, dup_box.get(), &dup_request);
  if (rc != MPI_SUCCESS) return mpi_error(rc, "Comm_idup");
  const Status duplicated =
      wait_one(dup_request, dup_box, nullptr, options.exchange_timeout,
               "rank " + std::to_string(rank) + " in ShardedRuntime::create, waiting for every rank to call it");
  if (!duplicated.ok()) return detail::lose_peers(comm, rank, options.abort_on_lost_peer, duplicated);
  MPI_Comm dup = *dup_box;
  // Where this rank sits on its node comes from the fingerprints (node_key) rather than from a
  // blocking MPI_Comm_split_type (rank_context), so that no step of create() lacks a deadline.
  RankContext c;
  MPI_Comm_rank(dup, &c.rank);
  MPI_Comm_size(dup, &c.size);
  const std::uint32_t actors = options.runtime.num_actors;
  Status refused;
  std::optional<ActorPartition> partition = options.partition;
  if (actors < static_cast<std::uint32_t>(c.size)) {
    refused = Status(StatusCode::kInvalidArgument,
                     std::to_string(c.size) + " ranks for " + std::to_string(actors) +
                         " actors would leave ranks without actors. Fix: run with mpirun -np " + std::to_string(actors) +
                         " or fewer, or more actors");
  } else if (!partition) {
    auto contiguous = ActorPartition::contiguous(actors, static_cast<std::uint32_t>(c.size));
    if (contiguous.ok()) partition = std::move(contiguous.value());
    else refused = contiguous.status();
  } else if (partition->ranks() != static_cast<std::uint32_t>(c.size) || partition->actors() != actors) {
    refused = Status(StatusCode::kInvalidArgument,
                     "the partition is for " + std::to_string(partition->actors()) + " actors over " +
                         std::to_string(partition->ranks()) + " ranks, but the run has " + std::to_string(actors) +
                         " actors over " + std::to_string(c.size) + " ranks. Fix: build it for this launch's rank count");
  }
  if (refused.ok() && (params_bytes > std::numeric_limits<std::uint32_t>::max() || (params_bytes != 0 && params == nullptr))) {
    refused = Status(StatusCode::kInvalidArgument, std::to_string(params_bytes) + " bytes of params at " +
                                                       (params == nullptr ? "a null pointer" : "a pointer") +
                                                       ". Fix: pass the app's Params (ShardedRuntime::create<Params>)");
  }
  auto fingerprints = std::make_shared<std::array<std::vector<LaunchFingerprint>, 2>>();
  auto& [mine_only, all] = *fingerprints;
  LaunchFingerprint& mine = mine_only.emplace_back();
  mine.refused = static_cast<std::uint32_t>(refused.code());
  mine.actors = actors;
  mine.k2k_delay = options.runtime.k2k_delay;
  mine.backend = static_cast<std::uint32_t>(options.runtime.backend);
  mine.params_bytes = static_cast<std::uint32_t>(std::min<std::size_t>(params_bytes, std::numeric_limits<std::uint32_t>::max()));
  if (refused.ok()) {
    std::vector<std::uint32_t> owners(partition->actors());
    for (std::uint32_t a = 0; a < partition->actors(); ++a) owners[a] = partition->owner(a);
    mine.partition_crc = crc32(owners.data(), owners.size() * sizeof owners[0]);
  }
  const std::string_view name = program.name == nullptr ? std::string_view() : std::string_view(program.name);
  mine.program_crc = crc32(name.data(), name.size());
  mine.node_key = text_key(host_name());
  mine.replay_log_key = options.runtime.replay_log ? file_key(options.runtime.replay_log->path()) : 0;
  mine.k2k_log_key = c.size > 1 ? file_key(options.k2k_log) : 0;
  mine.run_nonce = run_nonce();
  all.resize(static_cast<std::size_t>(c.size));
  MPI_Request request = MPI_REQUEST_NULL;
  MPI_Iallgather(&mine, sizeof mine, MPI_BYTE, all.data(), sizeof mine, MPI_BYTE, dup, &request);
  // On a timeout the fingerprints are left to the job's end, with dup.
  const Status gathered = wait_one(request, fingerprints, nullptr, options.exchange_timeout,
                                   "rank " + std::to_string(c.rank) + " comparing ShardedRuntime::create's arguments");
  if (!gathered.ok()) return detail::lose_peers(dup, c.rank, options.abort_on_lost_peer, gathered);
  Status launch = compare_launches(all);
  if (launch.ok() && !refused.ok()) launch = Status(refused.code(), "rank " + std::to_string(c.rank) + ": " + refused.message());
  if (launch.ok()) {
    std::vector<int> ranks;
    for (int r = 0; r < c.size; ++r)
      if (all[static_cast<std::size_t>(r)].refused != 0) ranks.push_back(r);
    if (!ranks.empty()) {
      launch = Status(static_cast<StatusCode>(all[static_cast<std::size_t>(ranks.front())].refused),
                      "rank(s) " + rank_list(ranks) + " refused the launch (their output says why); no rank runs");
    }
  }
  if (launch.ok()) launch = shared_log_files(all, c.rank, options);
  c.node_rank = 0;
  c.node_size = 0;
  for (int r = 0; r < c.size; ++r) {
    if (all[static_cast<std::size_t>(r)].node_key != mine.node_key) continue;
    if (r < c.rank) ++c.node_rank;
    ++c.node_size;
  }
  if (!launch.ok()) {
    MPI_Comm_free(&dup);
    return launch;
  }
  std::unique_ptr<ShardedRuntime> shard(new ShardedRuntime(dup, c, std::move(*partition), options.exchange_timeout));
  shard->abort_on_lost_peer_ = options.abort_on_lost_peer;
  shard->replies_ = pkrt::detail::RequestTable::create(2, kReplyWindow, false);
  RuntimeOptions ro = options.runtime;
  const auto ids = shard->partition_.actors_of(static_cast<std::uint32_t>(c.rank));
  ro.num_actors = static_cast<std::uint32_t>(ids.size());
  ro.global_actors = actors;
  ro.global_ids.assign(ids.begin(), ids.end());
  // Only a run that may use a GPU asks the driver (a CPU run never initialises CUDA).
  if (options.pick_device && ro.backend != BackendKind::kCpu) ro.cuda_device = device_for_rank(c, cuda_device_count());
  auto created = Runtime::create(program, params, params_bytes, ro);
  std::unique_ptr<K2KLogWriter> k2k_log;
  if (created.ok() && !options.k2k_log.empty() && c.size > 1) {
    K2KLogShard identity;
    identity.rank = static_cast<std::uint32_t>(c.rank);
    identity.ranks = static_cast<std::uint32_t>(c.size);
    identity.global_actors = actors;
    identity.k2k_delay = ro.k2k_delay;
    identity.run_id = all.front().run_nonce;
    identity.global_ids = ro.global_ids;
    auto writer = K2KLogWriter::create(options.k2k_log, identity);
    if (writer.ok()) k2k_log = std::move(writer.value());
    else created = writer.status();
  }
  // Every rank learns whether every rank could create its runtime: a launch that fails on
  // one rank (memory, a GPU) fails on all, naming it, instead of hanging at the first exchange.
  const Status here = created.ok() ? Status()
                                   : Status(created.status().code(),
                                            "rank " + std::to_string(c.rank) + ": " + created.status().message());
  PKRT_RETURN_IF_ERROR(shard->agree(here, "creating its runtime"));
  shard->local_ = std::move(created.value());
  shard->k2k_log_ = std::move(k2k_log);
  shard->next_exchange_ = shard->local_->first_exchange_epoch();
  // Every multi-rank run exchanges each epoch (K2K, replies, failures) and hands host commands
  // over at each run_until.
  shard->exchanges_ = c.size > 1;
  if (!shard->exchanges_) {
    shard->exchange_path_ = "none (one rank)";
  } else if (shard->local_->backend() != BackendKind::kCuda) {
    shard->exchange_path_ = "host memory (" + std::string(backend_name(shard->local_->backend())) + " backend)";
  } else if (!detail::mpi_reports_cuda_support()) {
    shard->exchange_path_ = "staged through host memory: this MPI reports no CUDA support (MPIX_Query_cuda_support)";
  } else {
    shard->exchange_path_ = "staged through host memory: MPI reports CUDA support, but pkrt's device-buffer exchange "
                            "is not built yet (docs/scale-out.md)";
  }
  return shard;
}

bool ShardedRuntime::owns(std::uint32_t global_actor) const {
  return global_actor < partition_.actors() && partition_.owner(global_actor) == static_cast<std::uint32_t>(context_.rank);
}

Status ShardedRuntime::start() {
  PKRT_RETURN_IF_ERROR(failed_);
  PKRT_RETURN_IF_ERROR(lost_);
  // Refused without a collective (every rank that keeps the contract refuses alike) and
  // without failing the grids that already run.
  if (started_) {
    return Status(StatusCode::kFailedPrecondition,
                  "start() twice: the grids already run. Fix: call start() once, then run_until(epoch)");
  }
  if (shut_down_) return after_shutdown("start()");
  // The grid parks at its start epoch (after init) until run_until asks for more: a grid
  // without a target runs freely (a single rank is not gated by any exchange) and could pass
  // the epoch the caller is about to ask for.
  next_exchange_ = local_->first_exchange_epoch();
  parked_at_ = park_epoch();  // not started yet: from the runtime's first exchange
  Status st = local_->set_target_epoch(parked_at_);
  if (st.ok()) st = local_->start();
  st = agree(st, "start");
  if (st.ok()) started_ = true;
  else fail(st);
  return st;
}

Status ShardedRuntime::agree(const Status& mine, const std::string& what, std::chrono::milliseconds timeout) {
  PKRT_RETURN_IF_ERROR(lost_);
  // {mine, every rank's} on the heap: a timeout leaves the request pending on them.
  auto buffers = std::make_shared<std::pair<int, std::vector<int>>>(static_cast<int>(mine.code()), std::vector<int>());
  std::vector<int>& codes = buffers->second;
  codes.assign(static_cast<std::size_t>(context_.size), 0);
  MPI_Request request = MPI_REQUEST_NULL;
  MPI_Iallgather(&buffers->first, 1, MPI_INT, codes.data(), 1, MPI_INT, comm_, &request);
  // A stuck or dead peer must not hang this rank: the same deadline as an exchange.
  PKRT_RETURN_IF_ERROR(await_collective(request, buffers, timeout.count() > 0 ? timeout : timeout_,
                                        "agreeing on " + what + " with every rank"));
  if (!mine.ok()) return mine;
  std::vector<int> failed;
  StatusCode first = StatusCode::kOk;
  for (int r = 0; r < context_.size; ++r) {
    if (codes[static_cast<std::size_t>(r)] == 0) continue;
    failed.push_back(r);
    if (first == StatusCode::kOk) first = static_cast<StatusCode>(codes[static_cast<std::size_t>(r)]);
  }
  if (failed.empty()) return Status();
  return Status(StatusCode::kAborted, "rank(s) " + rank_list(failed) + " failed (" + status_code_name(first) + ") in " +
                                          what + "; this rank stops too. Their output says why");
}

Status ShardedRuntime::check_command(std::uint32_t actor, const void* data, std::size_t bytes) const {
  if (actor >= partition_.actors()) {
    return Status(StatusCode::kOutOfRange, "actor " + std::to_string(actor) + " is out of range (the program has " +
                                               std::to_string(partition_.actors()) + " actors)");
  }
  if (bytes > kEnvelopeDataBytes || (bytes != 0 && data == nullptr)) {
    return Status(StatusCode::kInvalidArgument, "command data of " + std::to_string(bytes) + " bytes" +
                                                    (bytes != 0 && data == nullptr ? " at a null pointer" : "") +
                                                    " for actor " + std::to_string(actor) + " (at most " +
                                                    std::to_string(kEnvelopeDataBytes) + " bytes)");
  }
  return Status();
}

std::uint64_t ShardedRuntime::park_epoch() const {
  if (started_) return parked_at_;
  const std::uint64_t first = local_->first_exchange_epoch();  // start() parks here too
  return first == 0 ? 0 : first - 1;
}

std::uint64_t ShardedRuntime::earliest_remote_apply_epoch() const { return park_epoch() + 1; }

Status ShardedRuntime::after_shutdown(const char* call) const {
  return Status(StatusCode::kFailedPrecondition, "rank " + std::to_string(context_.rank) + ": " + call +
                                                     " after shutdown(): this rank's grid no longer runs. Fix: create a "
                                                     "new ShardedRuntime on every rank to run again");
}

Status ShardedRuntime::can_command(const char* call) const {
  // A command queued now would be lost without a word: no hand-over would carry it.
  PKRT_RETURN_IF_ERROR(failed_);
  PKRT_RETURN_IF_ERROR(lost_);
  return shut_down_ ? after_shutdown(call) : Status();
}

Status ShardedRuntime::post(std::uint32_t actor, std::uint16_t opcode, const void* data, std::size_t bytes,
                            std::uint64_t apply_epoch) {
  PKRT_RETURN_IF_ERROR(can_command("post()"));
  PKRT_RETURN_IF_ERROR(check_command(actor, data, bytes));
  // One rank runs every actor: its call order is the only order there is.
  if (!exchanges_) return local_->post(local_index(actor), opcode, data, bytes, apply_epoch);
  queued_.push_back(make_queued(actor, opcode, data, bytes, apply_epoch, 0));
  return Status();
}

ShardedRuntime::QueuedCommand ShardedRuntime::make_queued(std::uint32_t actor, std::uint16_t opcode, const void* data,
                                                          std::size_t bytes, std::uint64_t apply_epoch,
                                                          std::uint64_t reply_token) {
  QueuedCommand q;
  q.command.actor = actor;
  q.command.opcode = opcode;
  q.command.apply_epoch = apply_epoch;
  if (bytes > 0) std::memcpy(q.command.data.data(), data, bytes);
  q.reply_token = reply_token;
  return q;
}

Status ShardedRuntime::post_owned(const QueuedCommand& q) {
  const std::uint32_t actor = q.command.actor;
  const std::uint32_t local = local_index(actor);
  if (q.reply_token == 0) return local_->post(local, q.command.opcode, q.command.data.data(), q.command.data.size(),
                                              q.command.apply_epoch);
  // The owner's runtime answers on its pump thread; the reply names the global id.
  pkrt::detail::RequestTable* table = replies_;
  const std::uint64_t token = q.reply_token;
  local_->send(local, q.command.opcode, q.command.data.data(), q.command.data.size(), q.command.apply_epoch,
               [table, token, actor](Reply reply) {
                 reply.event.actor = actor;
                 table->complete(token, [&reply](pkrt::detail::RequestTable::Record& r) { r.reply = std::move(reply); });
               });
  return Status();
}

ReplyFuture ShardedRuntime::send(std::uint32_t actor, std::uint16_t opcode, const void* data, std::size_t bytes,
                                 std::uint64_t apply_epoch) {
  const std::uint32_t index = replies_->allocate();
  // 16M futures outstanding: an invalid future, as Runtime::send gives then (get() says so).
  if (index == pkrt::detail::RequestTable::kNoRecord) return ReplyFuture();
  Status bad = can_command("send()");
  if (bad.ok()) bad = check_command(actor, data, bytes);
  if (!bad.ok()) return replies_->complete_unbound(index, actor, opcode, nullptr, std::move(bad));
  const bool owned = owns(actor);
  const std::uint32_t lane = owned ? kOwnedLane : kRemoteLane;
  const std::uint64_t token = make_command_request(lane, next_reply_seq_[lane]++);
  ReplyFuture future = replies_->prepare(index, token, actor, opcode, nullptr);
  replies_->bind(token, index);
  QueuedCommand q = make_queued(actor, opcode, data, bytes, apply_epoch, token);
  // One rank: sent at once (a send's failures complete its future).
  if (!exchanges_) (void)post_owned(q);
  else queued_.push_back(q);
  return future;
}

Status ShardedRuntime::wait_local(std::uint64_t epoch) {
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  for (std::uint32_t polls = 0; !local_->epoch_completed(epoch); ++polls) {
    PKRT_RETURN_IF_ERROR(local_->health());
    if (std::chrono::steady_clock::now() > deadline) {
      return Status(StatusCode::kTimeout, "rank " + std::to_string(context_.rank) + "'s grid did not complete epoch " +
                                              std::to_string(epoch) + " within " + std::to_string(timeout_.count()) +
                                              " ms. Fix: raise ShardOptions::exchange_timeout for long epochs");
    }
    if (polls < 256) std::this_thread::yield();
    else std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
  return Status();
}

Status ShardedRuntime::exchange(std::uint64_t epoch, const Status& local_failure) {
  const auto started = std::chrono::steady_clock::now();
  // 2. This epoch's message for each peer that has something for it.
  std::map<int, std::vector<std::byte>> outgoing;
  Status failure = local_failure;
  if (failure.ok()) failure = pack_outgoing(epoch, outgoing);
  if (!failure.ok()) outgoing.clear();  // a failing rank sends nothing, only its code

  // 3. Epochs alternate tags: a peer may already send epoch e + 1's message while this rank
  //    still waits for e's consensus (it cannot send e + 2's before this rank has joined
  //    e + 1's), and the two must not be matched to each other.
  std::map<int, std::vector<std::byte>> incoming;
  PKRT_RETURN_IF_ERROR(swap_messages(kDataTag + static_cast<int>(epoch & 1),
                                     "the K2K exchange of epoch " + std::to_string(epoch), outgoing, failure, incoming));

  // 4. The peers' messages in rank order: replies, then the K2K, delivered at once.
  std::vector<K2KTransfer> inbound;
  std::vector<std::byte> inbound_payload;
  for (const auto& [peer, buf] : incoming) PKRT_RETURN_IF_ERROR(unpack_incoming(epoch, peer, buf, inbound, inbound_payload));
  // Recorded before the delivery: a replay of this rank alone delivers exactly this. The log is
  // a diagnostic: failing to write it (a full disk) drops it, reported, and the run goes on.
  if (k2k_log_) {
    const Status logged = k2k_log_->append(epoch, inbound, inbound_payload);
    if (!logged.ok()) {
      std::fprintf(stderr, "pkrt: rank %d: %s; this rank's inbound K2K log ends at epoch %llu\n", context_.rank,
                   logged.message().c_str(), static_cast<unsigned long long>(epoch));
      k2k_log_.reset();
    }
  }
  PKRT_RETURN_IF_ERROR(local_->deliver_inbound_k2k(epoch, inbound, inbound_payload));
  ++stats_.epochs;
  stats_.seconds_in_exchange += std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return Status();
}

Status ShardedRuntime::swap_messages(int tag, const std::string& what, std::map<int, std::vector<std::byte>>& outgoing,
                                     const Status& failure, std::map<int, std::vector<std::byte>>& incoming) {
  const int me = context_.rank;
  // Synchronous sends, then receive whatever comes until every rank has joined the consensus.
  std::vector<MPI_Request> sends;
  std::vector<int> send_peer;
  for (auto& [peer, m] : outgoing) {
    sends.emplace_back();
    send_peer.push_back(peer);
    MPI_Issend(m.data(), static_cast<int>(m.size()), MPI_BYTE, peer, tag, comm_, &sends.back());
  }
  std::vector<MPI_Request> receives;
  std::vector<int> receive_peer;
  // On the heap: a timeout leaves the all-reduce pending on them (see peers_lost).
  ConsensusWord& mine = (*consensus_)[0];
  ConsensusWord& worst = (*consensus_)[1];
  mine = {static_cast<int>(failure.code()), me};
  worst = {0, 0};
  MPI_Request consensus = MPI_REQUEST_NULL;
  bool joined = false;
  int duplicate = -1;  // a peer that sent two messages for this round (a bug: reported)
  // From here: packing may have waited for replies (collect_due_replies, at most a quarter
  // of the timeout), which must not eat into the wait for the peers.
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  for (std::uint32_t polls = 0;; ++polls) {
    int flag = 0;
    MPI_Message message = MPI_MESSAGE_NULL;
    MPI_Status status;
    MPI_Improbe(MPI_ANY_SOURCE, tag, comm_, &flag, &message, &status);
    if (flag != 0) {
      int count = 0;
      MPI_Get_count(&status, MPI_BYTE, &count);
      // MPI_UNDEFINED (over 2 GiB) cannot come from pkrt (pack_outgoing refuses it): receive it
      // into nothing, so that MPI reports the truncation instead of a huge resize here.
      if (count < 0) count = 0;
      auto [at, fresh] = incoming.try_emplace(status.MPI_SOURCE);
      std::vector<std::byte>* buf = &at->second;
      if (!fresh) {
        // Received aside (the first one's buffer has a receive in flight), then reported.
        duplicate = status.MPI_SOURCE;
        buf = &abandoned_.emplace_back();
      }
      buf->resize(static_cast<std::size_t>(count));
      receives.emplace_back();
      receive_peer.push_back(status.MPI_SOURCE);
      MPI_Imrecv(buf->data(), count, MPI_BYTE, &message, &receives.back());
      polls = 0;
      continue;
    }
    int done = 0;
    if (!joined) {
      // Every synchronous send matched: every peer has taken (or is taking) what we sent.
      MPI_Testall(static_cast<int>(sends.size()), sends.data(), &done, MPI_STATUSES_IGNORE);
      if (done != 0) {
        MPI_Iallreduce(&mine, &worst, 1, MPI_2INT, MPI_MAXLOC, comm_, &consensus);
        joined = true;
      }
    } else {
      // Complete on every rank only once every rank joined, so after their sends matched:
      // nothing more is on its way to us in this round.
      MPI_Test(&consensus, &done, MPI_STATUS_IGNORE);
      if (done != 0) break;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      std::vector<int> owed;
      for (std::size_t i = 0; i < sends.size(); ++i) {
        int matched = 0;
        if (sends[i] != MPI_REQUEST_NULL) MPI_Test(&sends[i], &matched, MPI_STATUS_IGNORE);
        if (matched == 0) owed.push_back(send_peer[i]);
      }
      // Pending requests still point into these buffers: they must outlive this call.
      for (auto& [peer, m] : outgoing) abandoned_.push_back(std::move(m));
      for (auto& [peer, buf] : incoming) abandoned_.push_back(std::move(buf));
      kept_alive_.push_back(consensus_);
      told_peers_ = true;  // a peer that never arrives is stuck or gone: nobody left to tell
      return peers_lost(Status(
          StatusCode::kTimeout,
          "rank " + std::to_string(me) + " at " + what + ": " +
              (owed.empty() ? std::string("some rank did not reach it")
                            : "rank(s) " + rank_list(owed) + " did not take this rank's messages") +
              " within " + std::to_string(timeout_.count()) +
              " ms. They are stuck, much slower, or gone (mpirun reports a killed rank). Fix: look at those ranks' "
              "output, or raise ShardOptions::exchange_timeout"));
    }
    if (polls < 256) std::this_thread::yield();
    else std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
  const Status received = wait_all(receives, receive_peer, timeout_,
                                   "rank " + std::to_string(me) + " receiving its messages of " + what);
  if (!received.ok()) {
    for (auto& [peer, buf] : incoming) abandoned_.push_back(std::move(buf));
    told_peers_ = true;
    return peers_lost(received);
  }
  if (worst.code != 0) {
    // Some rank failed: every rank learnt it from the same consensus, so all of them agree
    // here on who (this rank's own error, or one naming the ranks that failed).
    told_peers_ = true;
    return agree(failure, what);
  }
  told_peers_ = false;
  if (duplicate >= 0) {
    return Status(StatusCode::kInternal, "rank " + std::to_string(duplicate) + " sent rank " + std::to_string(me) +
                                             " two messages at " + what);
  }
  return Status();
}

Status ShardedRuntime::pack_outgoing(std::uint64_t epoch, std::map<int, std::vector<std::byte>>& outgoing) {
  outbound_.clear();
  outbound_payload_.clear();
  PKRT_RETURN_IF_ERROR(local_->collect_outbound_k2k(epoch, outbound_, outbound_payload_));
  struct Parts {
    MessageHeader header;
    std::vector<std::byte> records, payload, replies;
  };
  std::map<int, Parts> parts;
  std::size_t offset = 0;
  for (const K2KTransfer& t : outbound_) {
    Parts& p = parts[static_cast<int>(partition_.owner(t.dst))];
    append_bytes(p.records, t);
    p.payload.insert(p.payload.end(), outbound_payload_.begin() + static_cast<std::ptrdiff_t>(offset),
                     outbound_payload_.begin() + static_cast<std::ptrdiff_t>(offset + t.bytes));
    offset += t.bytes;
    ++p.header.messages;
    p.header.bytes += t.bytes;
  }
  std::map<int, std::vector<std::byte>> replies;
  collect_due_replies(epoch, replies);
  for (auto& [peer, bytes] : replies) {
    Parts& p = parts[peer];
    p.replies = std::move(bytes);
    p.header.reply_bytes = p.replies.size();
  }
  for (auto& [peer, p] : parts) {
    p.header.epoch = epoch;
    const std::uint64_t total = sizeof p.header + p.records.size() + p.payload.size() + p.replies.size();
    // One MPI message per peer, counted in int.
    if (total > static_cast<std::uint64_t>(std::numeric_limits<int>::max())) {
      return Status(StatusCode::kUnsupported, "epoch " + std::to_string(epoch) + "'s message from rank " +
                                                  std::to_string(context_.rank) + " to rank " + std::to_string(peer) +
                                                  " would be " + std::to_string(total) +
                                                  " bytes (at most 2 GiB per peer and epoch). Fix: more ranks, "
                                                  "smaller K2K messages, or fewer sends to other ranks per epoch");
    }
    std::vector<std::byte>& out = outgoing[peer];
    out.reserve(total);
    append_bytes(out, p.header);
    for (const auto* part : {&p.records, &p.payload, &p.replies}) out.insert(out.end(), part->begin(), part->end());
    stats_.messages_sent += p.header.messages;
    stats_.bytes_sent += p.header.bytes;
  }
  stats_.peer_messages += parts.size();
  return Status();
}

Status ShardedRuntime::unpack_incoming(std::uint64_t epoch, int peer, std::span<const std::byte> buf,
                                       std::vector<K2KTransfer>& inbound, std::vector<std::byte>& inbound_payload) {
  MessageHeader h;
  const auto bad = [&](const std::string& what) {
    return Status(StatusCode::kInternal, "rank " + std::to_string(peer) + " sent rank " + std::to_string(context_.rank) +
                                             " " + what + " at the exchange of epoch " + std::to_string(epoch));
  };
  if (buf.size() < sizeof h) return bad("a message shorter than its header");
  std::memcpy(&h, buf.data(), sizeof h);
  if (h.epoch != epoch) {
    return bad("the exchange of epoch " + std::to_string(h.epoch) +
               ". Fix: every rank must call run_until with the same epochs");
  }
  const std::uint64_t records_at = sizeof h;
  const std::uint64_t payload_at = records_at + h.messages * sizeof(K2KTransfer);
  const std::uint64_t replies_at = payload_at + h.bytes;
  if (h.messages > buf.size() || h.bytes > buf.size() || h.reply_bytes > buf.size() || h.commands != 0 ||
      replies_at + h.reply_bytes != buf.size())
    return bad("a message whose header does not match its size");
  // Each K2K record is for one of our actors, of this epoch, and the payloads add up to this
  // peer's bytes (deliver_inbound_k2k checks only the sum over all peers).
  std::uint64_t payload = 0;
  for (std::uint64_t i = 0; i < h.messages; ++i) {
    K2KTransfer t;
    std::memcpy(&t, buf.data() + records_at + i * sizeof t, sizeof t);
    if (t.epoch != epoch || !owns(t.dst)) {
      return bad("a K2K message for actor " + std::to_string(t.dst) + " of epoch " + std::to_string(t.epoch) +
                 " that it does not take");
    }
    payload += t.bytes;
  }
  if (payload != h.bytes) return bad("K2K records whose payloads do not add up to the message's");
  PKRT_RETURN_IF_ERROR(complete_replies(peer, buf.subspan(replies_at, h.reply_bytes)));
  for (std::uint64_t i = 0; i < h.messages; ++i) {
    K2KTransfer t;
    std::memcpy(&t, buf.data() + records_at + i * sizeof t, sizeof t);
    inbound.push_back(t);
  }
  inbound_payload.insert(inbound_payload.end(), buf.begin() + static_cast<std::ptrdiff_t>(payload_at),
                         buf.begin() + static_cast<std::ptrdiff_t>(replies_at));
  stats_.messages_received += h.messages;
  stats_.bytes_received += h.bytes;
  return Status();
}

Status ShardedRuntime::hand_over_commands(const Status& local_failure) {
  const auto started = std::chrono::steady_clock::now();
  const std::string what = "the hand-over of host commands at epoch " + std::to_string(parked_at_);
  // One message per owner with commands for it: a MessageHeader (epoch: the park, commands:
  // their count), then the WireCommand records in the order they were posted.
  std::map<int, std::vector<std::byte>> outgoing;
  Status failure = local_failure;
  std::uint64_t forwarded = 0;
  if (failure.ok()) {
    std::map<int, MessageHeader> headers;
    for (const QueuedCommand& q : queued_) {
      const int owner = static_cast<int>(partition_.owner(q.command.actor));
      if (owner == context_.rank) continue;  // posted below, in this rank's turn
      std::vector<std::byte>& out = outgoing[owner];
      if (out.empty()) out.resize(sizeof(MessageHeader));
      WireCommand w;
      w.actor = q.command.actor;
      w.opcode = q.command.opcode;
      w.apply_epoch = q.command.apply_epoch;
      w.reply_token = q.reply_token;
      w.data = q.command.data;
      append_bytes(out, w);
      ++headers[owner].commands;
      ++forwarded;
    }
    for (auto& [owner, out] : outgoing) {
      // One MPI message per owner, counted in int (56 bytes a command: ~38M commands).
      if (out.size() > static_cast<std::size_t>(std::numeric_limits<int>::max())) {
        failure = Status(StatusCode::kUnsupported,
                         std::to_string(headers[owner].commands) + " host commands from rank " +
                             std::to_string(context_.rank) + " for rank " + std::to_string(owner) +
                             "'s actors in one run_until (at most 2 GiB per owner). Fix: call run_until more often, "
                             "or post fewer commands between its calls");
        break;
      }
      headers[owner].epoch = parked_at_;
      std::memcpy(out.data(), &headers[owner], sizeof(MessageHeader));
    }
    if (!failure.ok()) outgoing.clear();  // a failing rank sends nothing, only its code
  }
  stats_.peer_messages += outgoing.size();
  std::map<int, std::vector<std::byte>> incoming;
  PKRT_RETURN_IF_ERROR(swap_messages(kHandOverTag, what, outgoing, failure, incoming));
  stats_.commands_forwarded += forwarded;
  // In rank order, this rank's own commands in its turn: every command of one epoch for one
  // actor enters its ring in the same order whichever rank runs it (rank, then call order),
  // so a run does not depend on the partition even where commands do not commute.
  std::vector<QueuedCommand> mine;
  mine.swap(queued_);
  Status posted;
  for (int r = 0; r < context_.size && posted.ok(); ++r) {
    if (r == context_.rank) {
      for (const QueuedCommand& q : mine)
        if (owns(q.command.actor) && posted.ok()) posted = post_owned(q);
    } else if (const auto it = incoming.find(r); it != incoming.end()) {
      posted = take_commands(r, it->second);
    }
  }
  stats_.seconds_in_exchange += std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return posted;
}

Status ShardedRuntime::take_commands(int peer, std::span<const std::byte> buf) {
  const auto bad = [&](const std::string& what) {
    return Status(StatusCode::kInternal, "rank " + std::to_string(peer) + " sent rank " + std::to_string(context_.rank) +
                                             " " + what + " at the hand-over of epoch " + std::to_string(parked_at_));
  };
  MessageHeader h;
  if (buf.size() < sizeof h) return bad("a message shorter than its header");
  std::memcpy(&h, buf.data(), sizeof h);
  if (h.epoch != parked_at_) {
    return bad("the hand-over of epoch " + std::to_string(h.epoch) +
               ". Fix: every rank must call run_until with the same epochs");
  }
  if (h.messages != 0 || h.bytes != 0 || h.reply_bytes != 0 ||
      sizeof h + std::uint64_t{h.commands} * sizeof(WireCommand) != buf.size())
    return bad("a message whose header does not match its size");
  for (std::uint32_t i = 0; i < h.commands; ++i) {
    WireCommand c;
    std::memcpy(&c, buf.data() + sizeof h + i * sizeof c, sizeof c);
    if (!owns(c.actor)) return bad("a command for actor " + std::to_string(c.actor) + ", which it does not run");
    // The grid is parked at parked_at_: exactly what a call on this rank would do now.
    if (c.reply_token == 0) {
      PKRT_RETURN_IF_ERROR(local_->post(local_index(c.actor), c.opcode, c.data.data(), c.data.size(), c.apply_epoch));
    } else {
      awaited_.push_back(AwaitedReply{peer, c.reply_token, c.actor, std::max(c.apply_epoch, parked_at_ + 1),
                                      local_->send(local_index(c.actor), c.opcode, c.data.data(), c.data.size(),
                                                   c.apply_epoch)});
    }
  }
  return Status();
}

void ShardedRuntime::collect_due_replies(std::uint64_t epoch, std::map<int, std::vector<std::byte>>& out) {
  // A reply is normally microseconds away (in the K2H ring already); a quarter of the exchange
  // timeout leaves the peers, which started waiting for this rank, most of theirs.
  const auto deadline = std::chrono::steady_clock::now() + timeout_ / 4;
  std::size_t kept = 0;
  for (std::size_t i = 0; i < awaited_.size(); ++i) {
    AwaitedReply& a = awaited_[i];
    if (a.apply_epoch > epoch) {
      if (kept != i) awaited_[kept] = std::move(a);
      ++kept;
      continue;
    }
    Reply reply;
    if (a.future.wait_until(deadline) == std::future_status::ready) {
      reply = a.future.get();
      if (!reply.status.ok()) reply.status = Status(reply.status.code(), "on rank " + std::to_string(context_.rank) + ": " + reply.status.message());
    } else {
      reply.status = Status(StatusCode::kTimeout,
                            "actor " + std::to_string(a.actor) + " on rank " + std::to_string(context_.rank) +
                                " applied the command at epoch " + std::to_string(a.apply_epoch) +
                                " but its reply did not reach the host within " + std::to_string((timeout_ / 4).count()) +
                                " ms (a quarter of the exchange timeout). Fix: raise ShardOptions::exchange_timeout");
      reply.event.opcode = kOpError;
    }
    reply.event.actor = a.actor;
    append_reply(out[a.origin], a.token, reply);
    ++stats_.replies_returned;
  }
  awaited_.erase(awaited_.begin() + static_cast<std::ptrdiff_t>(kept), awaited_.end());
}

Status ShardedRuntime::complete_replies(int from, std::span<const std::byte> bytes) {
  std::size_t at = 0;
  while (at < bytes.size()) {
    WireReply w;
    if (bytes.size() - at < sizeof w) {
      return Status(StatusCode::kInternal, "rank " + std::to_string(from) + " sent a truncated reply record");
    }
    std::memcpy(&w, bytes.data() + at, sizeof w);
    at += sizeof w;
    if (bytes.size() - at < w.message_bytes) {
      return Status(StatusCode::kInternal, "rank " + std::to_string(from) + " sent a reply whose message is cut short");
    }
    // Only a reply to one of our forwarded sends, from the rank that runs its actor.
    if (!is_command_request(w.token) || command_request_block(w.token) != kRemoteLane ||
        w.actor >= partition_.actors() || partition_.owner(w.actor) != static_cast<std::uint32_t>(from) ||
        w.code > static_cast<std::uint32_t>(StatusCode::kBusy)) {
      return Status(StatusCode::kInternal, "rank " + std::to_string(from) + " returned a reply (token " +
                                               std::to_string(w.token) + ", actor " + std::to_string(w.actor) +
                                               ", code " + std::to_string(w.code) + ") that is not for rank " +
                                               std::to_string(context_.rank) + "'s forwarded sends");
    }
    Reply reply;
    if (w.code != 0) {
      reply.status = Status(static_cast<StatusCode>(w.code),
                            std::string(reinterpret_cast<const char*>(bytes.data() + at), w.message_bytes));
    }
    at += w.message_bytes;
    reply.event.opcode = w.opcode;
    reply.event.flags = w.flags;
    reply.event.actor = w.actor;
    reply.event.block = w.block;
    reply.event.epoch = w.epoch;
    reply.event.request = w.request;
    reply.event.data = w.data;
    // False when nobody waits any more (the run failed here first): nothing to do.
    replies_->complete(w.token, [&reply](pkrt::detail::RequestTable::Record& r) { r.reply = std::move(reply); });
  }
  return Status();
}

Status ShardedRuntime::run_until(std::uint64_t epoch) {
  PKRT_RETURN_IF_ERROR(failed_);
  PKRT_RETURN_IF_ERROR(lost_);
  if (!started_ && !shut_down_) {
    return Status(StatusCode::kFailedPrecondition, "run_until(" + std::to_string(epoch) +
                                                       ") before start(): no grid runs yet. Fix: call start() on every "
                                                       "rank first");
  }
  if (epoch < parked_at_) {
    // Every rank is parked at the same epoch, so every rank refuses alike.
    return Status(StatusCode::kFailedPrecondition, "run_until(" + std::to_string(epoch) + ") but the grids are parked at epoch " +
                                                       std::to_string(parked_at_) + ". Fix: an epoch at or after it");
  }
  // After shutdown() this rank still joins the collective, with its refusal as its failure,
  // so that its peers hear why at once instead of waiting for it until their deadline.
  // The same after local().shutdown(): set_target_epoch refuses it at once.
  Status result = shut_down_ ? after_shutdown(("run_until(" + std::to_string(epoch) + ")").c_str()) : Status();
  // Queued commands reach their owners while every grid is still parked, so each applies where
  // the same call on its owner would have. A failure before the hand-over is told to every
  // rank by its consensus; one posting what it received, at the next exchange or the closing
  // agreement.
  if (exchanges_) result = hand_over_commands(result);
  if (result.ok()) {
    result = local_->set_target_epoch(epoch);
    if (!result.ok()) result = Status(result.code(), "rank " + std::to_string(context_.rank) + ": " + result.message());
  }
  if (exchanges_ && !told_peers_) {
    // A failure is told to the peers at the next exchange's consensus (a failing rank keeps
    // taking part until it has), so every rank leaves the loop at the same epoch.
    for (; next_exchange_ <= epoch; ++next_exchange_) {
      const Status here = result.ok() ? wait_local(next_exchange_) : result;
      const Status st = exchange(next_exchange_, here);
      if (st.ok()) continue;
      result = st;
      if (told_peers_) break;
    }
  }
  if (result.ok()) result = local_->wait_parked(timeout_);
  // Every rank returns the same outcome: a rank whose grid failed after the last exchange
  // (or before it could tell) is named to the others here.
  result = agree(result, "run_until(" + std::to_string(epoch) + ")");
  if (result.ok()) {
    parked_at_ = epoch;
    // One rank has no exchange; its count follows the epochs as the others' does.
    if (!exchanges_) next_exchange_ = std::max(next_exchange_, epoch + 1);
  }
  if (!result.ok()) {
    fail(result);
    local_->shutdown().ignore();
  }
  return result;
}

Result<RunTotals> ShardedRuntime::totals() {
  PKRT_RETURN_IF_ERROR(lost_);
  const RuntimeStats rs = local_->stats();
  // One sum, one maximum: the lowest epoch as the largest complement, the longest exchange in ns.
  auto sum = allreduce({rs.commands_sent, rs.events_received, rs.replies, rs.errors, rs.posts, rs.blocks, stats_.epochs,
                        stats_.messages_sent, stats_.bytes_sent, stats_.messages_received, stats_.bytes_received,
                        stats_.commands_forwarded, stats_.replies_returned, stats_.peer_messages},
                       MPI_SUM, timeout_, "summing the run's totals");
  if (!sum.ok()) return sum.status();
  auto most = allreduce({~rs.epoch, static_cast<std::uint64_t>(stats_.seconds_in_exchange * 1e9)}, MPI_MAX, timeout_,
                        "combining the run's totals");
  if (!most.ok()) return most.status();
  const std::vector<std::uint64_t>& summed = sum.value();
  const std::uint64_t lowest = ~most.value()[0];
  const double longest = static_cast<double>(most.value()[1]) * 1e-9;
  RunTotals t;
  t.ranks = context_.size;
  t.runtime.commands_sent = summed[0];
  t.runtime.events_received = summed[1];
  t.runtime.replies = summed[2];
  t.runtime.errors = summed[3];
  t.runtime.posts = summed[4];
  t.runtime.blocks = static_cast<std::uint32_t>(summed[5]);
  t.runtime.threads_per_block = rs.threads_per_block;
  t.runtime.epoch = lowest;
  t.exchange.epochs = summed[6] / static_cast<std::uint64_t>(context_.size);  // every rank does each one
  t.exchange.messages_sent = summed[7];
  t.exchange.bytes_sent = summed[8];
  t.exchange.messages_received = summed[9];
  t.exchange.bytes_received = summed[10];
  t.exchange.commands_forwarded = summed[11];
  t.exchange.replies_returned = summed[12];
  t.exchange.peer_messages = summed[13];
  t.exchange.seconds_in_exchange = longest;
  return t;
}

Status ShardedRuntime::shutdown() {
  shut_down_ = true;
  // No hand-over will carry what is still queued: its sends fail now rather than when this
  // object goes (its posts are dropped, as a shutdown drops a ring's unapplied commands).
  for (const QueuedCommand& q : queued_) {
    if (q.reply_token == 0) continue;
    replies_->complete(q.reply_token, [&](pkrt::detail::RequestTable::Record& r) {
      r.reply.status = Status(StatusCode::kAborted, "rank " + std::to_string(context_.rank) +
                                                        " shut down before the command to actor " +
                                                        std::to_string(q.command.actor) + " was handed over");
      r.reply.event.actor = q.command.actor;
      r.reply.event.opcode = kOpError;
    });
  }
  queued_.clear();
  Status st = local_->shutdown();
  if (k2k_log_) {
    Status closed = k2k_log_->close();
    if (st.ok()) st = closed;
  }
  return st;
}

}  // namespace pkrt::mpi
