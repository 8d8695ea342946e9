// pkrt/mpi.hpp: one program over MPI ranks (target pkrt::mpi; built when Open MPI is found,
// PKRT_ENABLE_MPI). Each rank runs a ShardedRuntime: one Runtime over the actors the
// partition gives it, on the CPU backend or on the GPU its node-local rank picks. Actors keep
// their global ids; K2K to an actor on another rank is collected from the mailboxes after the
// epoch it was committed in, sent with point-to-point messages to the ranks it is for (one
// small all-reduce per epoch tells every rank the exchange is complete), and delivered before the
// epoch that reads it (K2K delay D: every message, local or remote, is read D epochs after
// it was sent, so results do not depend on the rank count or the partition). Host commands
// reach their actors' ranks in one more such round at the start of each run_until.
// docs/scale-out.md has the model, the protocol and its costs.
//
// Contract
// - MPI is initialised by the caller (MPI_Init_thread with at least MPI_THREAD_FUNNELED):
//   pkrt calls MPI only from the thread that calls create() and run_until(), on a duplicate
//   of the communicator it is given, so it never matches the application's own messages.
// - Collective calls (create, start, run_until, totals and the checkpoint calls) must be made
//   by every rank of the communicator, in the same order, with the same arguments. create()
//   compares what each rank was given and refuses on every rank, naming the difference; each
//   collective waits for the peers at most ShardOptions::exchange_timeout (longer for file
//   I/O), then reports them (below) rather than waiting for ever.
// - Failures are collective too: a rank whose runtime fails (error, watchdog) tells its peers
//   at the next exchange, and every rank's run_until returns an error naming it; a rank that
//   does not reach an exchange within ShardOptions::exchange_timeout is named by the peers
//   whose messages it did not take (the others report that some rank did not arrive).
//   A killed rank is reported by mpirun, which stops the job.
// - Not thread-safe: one thread drives a ShardedRuntime. The Runtime it owns (local()) keeps
//   its own contract for sends, posts and snapshots from other threads.
#pragma once

#include <pkrt/checkpoint_manager.hpp>
#include <pkrt/checkpoint_store.hpp>
#include <pkrt/global_checkpoint.hpp>
#include <pkrt/k2k_log.hpp>
#include <pkrt/partition.hpp>
#include <pkrt/reply_future.hpp>
#include <pkrt/runtime.hpp>
#include <pkrt/status.hpp>

#include <mpi.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <vector>

namespace pkrt::detail {
class RequestTable;
}

namespace pkrt::mpi {

// Where this process sits: its rank in the communicator, and among the ranks on its node
// (rank_context: MPI_COMM_TYPE_SHARED; ShardedRuntime::create: the ranks with its host name),
// which picks its GPU.
struct RankContext {
  int rank = 0;
  int size = 1;
  int node_rank = 0;
  int node_size = 1;
};

// Collective and blocking (MPI_Comm_split_type): call it on every rank of `comm`.
// ShardedRuntime::create finds the same from its ranks' host names, with its deadline.
Result<RankContext> rank_context(MPI_Comm comm);

// The CUDA device a rank drives: its node-local rank modulo the node's `devices` (0 if none).
int device_for_rank(const RankContext& context, int devices);

struct ShardOptions {
  // For every rank: num_actors is the program's (global) actor count; global_actors and
  // global_ids are filled in from the partition; cuda_device from the node-local rank when
  // pick_device is set.
  RuntimeOptions runtime;
  // Which rank runs which actor; default: contiguous blocks over the communicator's ranks.
  std::optional<ActorPartition> partition;
  bool pick_device = true;
  // How long a rank waits for its own grid to finish an epoch, and for its peers at an
  // exchange or an agreement, before it reports them (naming the ranks).
  std::chrono::milliseconds exchange_timeout{60000};
  // A peer that does not answer within the deadline leaves the ranks out of step: the next
  // collective would wait for it for ever. True (the default): the rank prints what it waited
  // for and calls MPI_Abort, which stops the job. False: the call returns kTimeout, and the
  // caller must not make another collective call on this communicator.
  bool abort_on_lost_peer = true;
  // With runtime.replay_log set: where this rank records the K2K it receives from other ranks,
  // with its shard identity (pkrt/k2k_log.hpp; by convention k2k_log_path(replay log path)), so
  // that the rank can be replayed alone. Empty: not recorded.
  std::string k2k_log;
};

// Coordinated checkpoints (pkrt/global_checkpoint.hpp).
struct GlobalCheckpointOptions {
  // The checkpoint directory, the same path on every rank (a shared filesystem across nodes).
  // Each rank writes its sets under rank-NNNNN-of-RRRRR-<layout>/ (pkrt::rank_checkpoint_dir):
  // a directory per rank and partition, so a run with another layout never mixes its files
  // with this one's; rank 0 writes the global manifests at the top.
  std::string directory;
  std::uint32_t keep = 3;  // newest committed global checkpoints kept (>= 1)
  CheckpointEncodeOptions encode;
  RunInputs inputs;        // options outside Params that shape the run (compared on restore)
};

// What crossed ranks so far (this rank's side).
struct ExchangeStats {
  std::uint64_t epochs = 0;            // exchanges done
  std::uint64_t peer_messages = 0;     // MPI messages sent: per exchange or hand-over, one per peer with something for it
  std::uint64_t messages_sent = 0;     // K2K messages to other ranks
  std::uint64_t bytes_sent = 0;        // their payload bytes
  std::uint64_t messages_received = 0;
  std::uint64_t bytes_received = 0;
  std::uint64_t commands_forwarded = 0;  // host commands sent to their actors' owner ranks
  std::uint64_t replies_returned = 0;    // replies to forwarded sends, sent back to their ranks
  double seconds_in_exchange = 0;      // in MPI calls and delivery, after the local grid was done
};

// Every rank's figures combined (ShardedRuntime::totals).
struct RunTotals {
  RuntimeStats runtime;    // counters and blocks summed over ranks; epoch: the lowest rank's
  ExchangeStats exchange;  // counts summed; seconds_in_exchange: the largest rank's
  int ranks = 0;
};

class ShardedRuntime {
 public:
  // Collective. Refused on every rank alike for a bad launch (more ranks than actors, a
  // partition for another rank count) with the fix.
  static Result<std::unique_ptr<ShardedRuntime>> create(MPI_Comm comm, const Program& program, const void* params,
                                                        std::size_t params_bytes, const ShardOptions& options);
  template <class Params>
  static Result<std::unique_ptr<ShardedRuntime>> create(MPI_Comm comm, const Program& program, const Params& params,
                                                        const ShardOptions& options) {
    static_assert(std::is_trivially_copyable_v<Params>, "pkrt: Params must be trivially copyable");
    return create(comm, program, &params, sizeof(Params), options);
  }
  ~ShardedRuntime();  // detaches the checkpoint manager, then shuts the runtime down
  ShardedRuntime(const ShardedRuntime&) = delete;
  ShardedRuntime& operator=(const ShardedRuntime&) = delete;

  const RankContext& context() const { return context_; }
  const ActorPartition& partition() const { return partition_; }
  // This rank's runtime: its local actor i is global actor partition().actors_of(rank)[i].
  Runtime& local() { return *local_; }
  bool owns(std::uint32_t global_actor) const;
  // The local index of a global actor this rank owns.
  std::uint32_t local_index(std::uint32_t global_actor) const { return partition_.local_index(global_actor); }

  // Collective: launches every rank's grid, parked at its start epoch (after init; a restored
  // run at its checkpoint's epoch) until run_until; fails on every rank if one could not start.
  Status start();
  // Collective: runs every rank through `epoch` (the grids then park there), exchanging each
  // epoch's cross-rank K2K. An error on any rank is returned on every rank, naming it; an
  // epoch before the one the grids are parked at is refused.
  Status run_until(std::uint64_t epoch);
  // A fire-and-forget command to global actor `actor` from any rank, applied at
  // `apply_epoch` (0: the next epoch; an epoch the grids already ran: the next one), at the
  // same epoch whichever rank runs the actor and whichever rank calls. On one rank it is
  // posted at once. On more, it is queued (for this rank's actors too) and handed to the
  // actor's rank at the start of the next run_until or checkpoint, before any grid leaves its
  // park; there the commands of all ranks are posted in rank order, each rank's in call
  // order, so commands of one epoch for one actor apply in the same order on any partition.
  // Errors that only the owner's runtime can find (a full ring, a failed runtime) then fail
  // that run_until.
  Status post(std::uint32_t actor, std::uint16_t opcode, const void* data, std::size_t bytes,
              std::uint64_t apply_epoch = 0);
  template <class T>
    requires kMessageValue<T>
  Status post(std::uint32_t actor, std::uint16_t opcode, const T& value, std::uint64_t apply_epoch = 0) {
    static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= kEnvelopeDataBytes,
                  "pkrt: message data is at most 32 trivially copyable bytes");
    return post(actor, opcode, &value, sizeof(T), apply_epoch);
  }
  // Sends a command to global actor `actor` from any rank, with the same apply epoch rules as
  // post(), and returns a future for its reply, whose event names the actor by its global id.
  // It is posted when post() would post it (at once on one rank, at the next hand-over on
  // more). For this rank's actor the future completes when local() answers; for another
  // rank's, the owner returns the reply with the exchange of the epoch it applied in: once
  // run_until has run that epoch, the future is ready on the sending rank. So wait for it after that run_until (or on another
  // thread while it runs): the thread that drives this ShardedRuntime is the one that carries
  // the reply, and a get() there before it would wait for ever. A run that fails completes
  // every pending future with its error.
  ReplyFuture send(std::uint32_t actor, std::uint16_t opcode, const void* data, std::size_t bytes,
                   std::uint64_t apply_epoch = 0);
  template <class T>
    requires kMessageValue<T>
  ReplyFuture send(std::uint32_t actor, std::uint16_t opcode, const T& value, std::uint64_t apply_epoch = 0) {
    static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= kEnvelopeDataBytes,
                  "pkrt: message data is at most 32 trivially copyable bytes");
    return send(actor, opcode, &value, sizeof(T), apply_epoch);
  }
  // The epoch whose exchange comes next, and the earliest epoch a command posted or sent now
  // applies at, on any rank: the one after the epoch the grids are parked at (or will park at
  // when start() is still to come). Local and remote actors alike.
  std::uint64_t next_exchange_epoch() const { return next_exchange_; }
  std::uint64_t earliest_remote_apply_epoch() const;

  // ---- Coordinated checkpoints ----------------------------------------------------------
  // Collective: attaches this rank's CheckpointManager to its directory under
  // options.directory. Before or after start(). Rank 0 holds the directory's writer lock
  // until this ShardedRuntime is destroyed: a second job writing global checkpoints there is
  // refused on every rank (kBusy, naming the holder's pid).
  Status enable_checkpoints(const GlobalCheckpointOptions& options);
  // Collective, every grid parked at the same epoch (after run_until): a global checkpoint of
  // that epoch. Two-phase: every rank's set is durable, then rank 0 commits the global
  // manifest, then older global checkpoints beyond `keep` are uncommitted and every rank may
  // prune their sets. Every K2K message in flight at the cut is in the images (the grids
  // parked only after the exchange of that epoch). On any rank's failure no global manifest is
  // written, the last committed one stays restorable, and every rank returns the error.
  Result<std::uint64_t> checkpoint();
  // Collective, before start(): every rank restores the actors it runs from the newest
  // committed global checkpoint in `directory` (or the one at `epoch`), whatever rank count
  // and partition wrote it; the commands queued at the cut are posted again on their actors'
  // new ranks. Refused (on every rank, naming the field) when the program, params, actor
  // count, K2K delay, image layout or `inputs` differ. Returns the restored epoch.
  // Without `epoch`, a global checkpoint that some rank cannot read (a damaged or missing
  // rank set or member) is passed over for the next older one, as a damaged manifest is; on
  // rank 0, `skipped` (when given) receives each one passed over and why, every rank's
  // reason included.
  Result<std::uint64_t> restore(const std::string& directory, std::optional<std::uint64_t> epoch,
                                const RunInputs& inputs, std::vector<std::string>* skipped = nullptr);

  ExchangeStats exchange_stats() const { return stats_; }  // this rank's
  // Where the exchange moves K2K between ranks, and why: "host memory (cpu backend)"; with
  // the CUDA backend, staged through host memory, saying whether the MPI library reports CUDA
  // support (MPIX_Query_cuda_support; pkrt does not yet pass it device buffers either way).
  const std::string& exchange_path() const { return exchange_path_; }
  // Collective: the run's statistics over every rank, on every rank (rank 0 prints them).
  Result<RunTotals> totals();
  // Stops this rank's grid (not collective). Commands still queued for a hand-over are
  // dropped, their sends' futures failed (kAborted). Idempotent; returns the runtime's first
  // error.
  Status shutdown();

 private:
  ShardedRuntime(MPI_Comm comm, RankContext context, ActorPartition partition, std::chrono::milliseconds timeout);
  // Waits until the local grid completed `epoch` (or failed, or the timeout passed).
  Status wait_local(std::uint64_t epoch);
  // Swaps epoch `epoch`'s cross-rank K2K and replies with the peers that have any, and
  // delivers ours; `local_failure` (not ok), or a failure to collect, is told to every rank
  // through the exchange's consensus instead, then returned. Sets told_peers_ when the peers
  // know of the failure it returns.
  Status exchange(std::uint64_t epoch, const Status& local_failure);
  // Collective, every grid parked at parked_at_: sends the queued commands for other ranks'
  // actors to their owners; then every rank posts (sends) what it got and its own queued
  // commands for its actors, in rank order, before any grid leaves the park.
  // `local_failure` and told_peers_ as for exchange().
  Status hand_over_commands(const Status& local_failure);
  // One round of the nonblocking consensus (mpi/sharded_runtime.cpp, step 3): sends each of
  // `outgoing` with `tag`, receives what comes into `incoming` until every rank joined the
  // all-reduce that carries `failure`. `what` names the round in errors. A failure anywhere
  // is agreed on and returned (told_peers_ set).
  Status swap_messages(int tag, const std::string& what, std::map<int, std::vector<std::byte>>& outgoing,
                       const Status& failure, std::map<int, std::vector<std::byte>>& incoming);
  // Collective (with the exchange deadline, or `timeout` when given): every rank's status; ok
  // only when all are ok, else this rank's own error, or one naming the ranks that failed.
  Status agree(const Status& mine, const std::string& what, std::chrono::milliseconds timeout = {});

  MPI_Comm comm_ = MPI_COMM_NULL;  // our duplicate
  RankContext context_;
  ActorPartition partition_;
  std::chrono::milliseconds timeout_;
  bool abort_on_lost_peer_ = true;
  // A timeout waiting for peers: printed, then MPI_Abort (abort_on_lost_peer), else kept in
  // lost_ and returned.
  Status peers_lost(const Status& timeout);
  Status lost_;  // not ok once a peer was lost without aborting: no collective call follows
  // Waits for one non-blocking collective until `timeout`; on a timeout `buffers` (what the
  // request still reads or writes) live on in kept_alive_ and the peers are lost.
  Status await_collective(MPI_Request request, std::shared_ptr<void> buffers, std::chrono::milliseconds timeout,
                          const std::string& what);
  // Collective, with a deadline: `mine` combined over every rank with `op`.
  Result<std::vector<std::uint64_t>> allreduce(std::vector<std::uint64_t> mine, MPI_Op op, std::chrono::milliseconds timeout,
                                               const std::string& what);
  // Collective, with a deadline: rank 0's `bytes` replace every other rank's.
  Status broadcast(std::vector<std::byte>& bytes, std::chrono::milliseconds timeout, const std::string& what);
  // The deadline of collectives that wait for a rank's file I/O (checkpoint, restore).
  std::chrono::milliseconds io_timeout() const;
  // Buffers of timed-out requests (with abandoned_); after a lost peer the destructor leaks
  // them rather than free memory MPI may still write.
  std::vector<std::shared_ptr<void>> kept_alive_;
  // The exchange's consensus words {mine, worst}, on the heap for the same reason.
  struct ConsensusWord {
    int code = 0;
    int rank = 0;
  };
  std::shared_ptr<std::array<ConsensusWord, 2>> consensus_ = std::make_shared<std::array<ConsensusWord, 2>>();
  std::unique_ptr<Runtime> local_;
  std::uint64_t next_exchange_ = 0;
  std::uint64_t parked_at_ = 0;  // the epoch the grid parks at (start, then each run_until's)
  std::string exchange_path_;  // exchange_path()
  bool exchanges_ = false;  // more than one rank: every epoch is exchanged, commands handed over
  bool started_ = false;    // start() succeeded
  bool shut_down_ = false;  // shutdown() was called: the grid no longer runs
  Status failed_;           // the first collective failure: every later call returns it
  bool told_peers_ = false; // the last exchange's failure is known to every peer
  ExchangeStats stats_;
  // Coordinated checkpoints (mpi/coordinated_checkpoint.cpp).
  std::string checkpoint_dir_;
  std::uint32_t keep_globals_ = 3;
  std::unique_ptr<CheckpointManager> manager_;
  std::unique_ptr<FileCheckpointStore> global_store_;  // rank 0: the top directory, locked for writing
  std::uint64_t next_global_sequence_ = 1;  // rank 0
  std::uint64_t checkpoints_begun_ = 0;      // checkpoint() calls past their checks (mpi/commit_fault.hpp)
  std::vector<std::uint64_t> pins_;          // rank 0: epochs of the committed global checkpoints kept
  // Rank 0's pins and next global sequence, broadcast and set in this rank's manager.
  Status share_pins(std::chrono::milliseconds timeout);
  // Rank 0's result broadcast to every rank: ok, or its failure (or the broadcast's own).
  Status broadcast_status(const Status& at_root, std::chrono::milliseconds timeout);
  // Collective: every rank's `mine` (empty: nothing to say), joined as "rank r: text; ..."
  // on rank 0 (empty elsewhere).
  std::string gather_texts(const std::string& mine);
  // Refuses what neither post nor send can deliver (unknown actor, too much data).
  Status check_command(std::uint32_t actor, const void* data, std::size_t bytes) const;
  // Completes the pending futures of send() with `status` (a failed run, a shutdown).
  void fail_pending_replies(const Status& status);
  // The first collective failure: every later call returns it, and every pending future.
  void fail(const Status& status);
  // `call` refused after shutdown(), naming this rank.
  Status after_shutdown(const char* call) const;
  // Whether post/send (`call`) can still be delivered: the run's failure, a lost peer, or
  // after_shutdown; ok otherwise.
  Status can_command(const char* call) const;
  // The replies to forwarded sends applied by `epoch`, waited for (they are in the K2H
  // ring once the grid completed the epoch) and appended to their origin rank's bucket.
  void collect_due_replies(std::uint64_t epoch, std::map<int, std::vector<std::byte>>& out);
  // Epoch `epoch`'s message for each peer with something for it: K2K and due replies
  // (mpi/sharded_runtime.cpp has the layout).
  Status pack_outgoing(std::uint64_t epoch, std::map<int, std::vector<std::byte>>& outgoing);
  // Checks and applies one peer's exchange message: completes its replies, appends its K2K
  // to `inbound`.
  Status unpack_incoming(std::uint64_t epoch, int peer, std::span<const std::byte> message,
                         std::vector<K2KTransfer>& inbound, std::vector<std::byte>& inbound_payload);
  // Checks one peer's hand-over message and posts (sends) its commands.
  Status take_commands(int peer, std::span<const std::byte> message);
  // The epoch the grid is parked at, or parks at once start() runs.
  std::uint64_t park_epoch() const;
  // Completes this rank's forwarded sends with the replies rank `from` returned.
  Status complete_replies(int from, std::span<const std::byte> bytes);
  // A host command posted or sent on a multi-rank run, waiting for the next hand-over:
  // global id; reply_token names the sender's future (0: a post).
  struct QueuedCommand {
    Command command;
    std::uint64_t reply_token = 0;
  };
  static QueuedCommand make_queued(std::uint32_t actor, std::uint16_t opcode, const void* data, std::size_t bytes,
                                   std::uint64_t apply_epoch, std::uint64_t reply_token);
  // Posts (sends) a command for one of this rank's actors to local(): a send's future is
  // completed by local()'s reply callback.
  Status post_owned(const QueuedCommand& q);
  // A forwarded send this rank applies: its reply goes back to `origin` with the exchange of
  // `apply_epoch` (the epoch it applies at).
  struct AwaitedReply {
    int origin = 0;
    std::uint64_t token = 0;
    std::uint32_t actor = 0;  // global id
    std::uint64_t apply_epoch = 0;
    ReplyFuture future;
  };
  // Per-exchange buffers, kept between epochs.
  std::vector<K2KTransfer> outbound_;
  std::vector<std::byte> outbound_payload_;
  // Commands posted or sent since the last hand-over, for any rank's actors, in call order
  // (a single rank posts at once and keeps none).
  std::vector<QueuedCommand> queued_;
  std::vector<AwaitedReply> awaited_;
  // The futures send() returned: lane kRemoteLane for forwarded sends (completed by the
  // exchange on the driving thread), kOwnedLane for this rank's actors (completed by
  // local()'s callback: on its pump thread, inline when the local send fails, or where its
  // shutdown fails them). Each lane has one regular completer, so window entries are cleared
  // by one thread; fail_all and the rare other completers race only through the record's
  // claim (a CAS), which the table allows.
  pkrt::detail::RequestTable* replies_ = nullptr;
  std::uint64_t next_reply_seq_[2] = {1, 1};
  std::unique_ptr<K2KLogWriter> k2k_log_;  // ShardOptions::k2k_log
  // Buffers of requests left pending by a timeout (the job aborts, or no call follows): MPI
  // may still write or read them, so they live as long as this object.
  std::vector<std::vector<std::byte>> abandoned_;
};

}  // namespace pkrt::mpi
