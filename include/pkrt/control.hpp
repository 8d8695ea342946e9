// pkrt/control.hpp: the control block: what the host asks of the whole grid, what the grid
// reports back, and each block's heartbeat. Lives in host-visible memory (mapped pinned on
// CUDA) next to the rings.
//
// Contract
// - HostControl is written only by the host and read by block 0, which turns it into one
//   grid-wide directive per epoch (see kernels/persistent_loop.hpp), so every block parks
//   or stops at the same epoch.
// - GridReport is written only by block 0's leader thread; BlockHeartbeat[b] only by block
//   b's leader thread. The host only reads them.
// - Each group sits on its own cache line(s): no agent writes a line another agent writes.
// - Host/device: plain structs; all accesses go through pkrt/detail/system_atomic.hpp.
#pragma once

#include <pkrt/config.hpp>

#include <cstdint>

namespace pkrt {

// Park/run states reported by the grid and by each block.
enum GridState : std::uint32_t {
  kGridStarting = 0,  // kernel launched, actors not yet initialised
  kGridRunning = 1,   // epochs advancing
  kGridParked = 2,    // waiting at an epoch boundary (pause requested or target epoch reached)
  kGridIdle = 3,      // nothing to do: waiting for a host doorbell (event-driven apps)
  kGridStopped = 4,   // kernel exited (shutdown or abort)
};

// No target: run until paused or shut down.
inline constexpr std::uint64_t kNoTargetEpoch = ~std::uint64_t{0};

// Protocol: the host changes target_epoch/pause/shutdown/abort, then stores a new
// generation (release), then rings the doorbell (release). Block 0 loads the generation with
// acquire once per round and re-reads the other words only when it changed, so a running
// grid pays one PCIe read per epoch for host control. kOpPaused carries the generation it
// answers, so the host can tell a park it asked for from an older one still in the ring.
struct HostControl {
  // One line, host-written.
  alignas(64) std::uint64_t target_epoch;  // park after completing this epoch
  std::uint32_t pause;                     // nonzero: park at the next epoch boundary
  std::uint32_t shutdown;                  // nonzero: stop at the next epoch boundary
  std::uint32_t abort;                     // nonzero: stop now; actors should return early
  std::uint32_t generation;                // bumped after every change of the words above
  std::uint32_t doorbell;                  // bumped after every H2K publish and request (host RMW)
  std::uint64_t published;                 // H2K slots published so far, all rings (idle check;
                                           // host RMW by concurrent senders, device loads only)
  std::uint64_t snapshot_epoch;            // snapshot_all: every actor at the end of this epoch
  std::uint64_t snapshot_request;          // snapshot_all: request id (0: none); a new id = new request
  std::uint32_t snapshot_flags;            // snapshot_all: SnapshotAllFlags
  // snapshot_all in waves through the staging pool (kernels/snapshot.hpp): the wave's actors
  // are [snapshot_wave_first, snapshot_wave_last), actor a in pool slot a - first. A new
  // snapshot_wave of the latched request is a new wave; the host stores first and last
  // before it (release), block 0 loads the wave first (acquire).
  std::uint32_t snapshot_wave;
  std::uint32_t snapshot_wave_first;
  std::uint32_t snapshot_wave_last;
  // Scale-out (KernelArgs::k2k_gated): the last epoch the grid may start, i.e. the host has
  // delivered every K2K message from other runtimes that is read by then (delivered epoch + D).
  std::uint64_t k2k_open_epoch;
};

// HostControl::snapshot_flags (and GridScratch::snapshot_flags, block 0's copy of them).
enum SnapshotAllFlags : std::uint32_t {
  kSnapshotAllFull = 1u << 0,    // mark every chunk changed
  kSnapshotAllGlobal = 1u << 1,  // block 0 snapshots the global region too (kGlobalRegionActor)
  kSnapshotAllCommands = 1u << 2,  // every block copies its queued commands (kQueuedCommandsActor)
  // The staging pool holds fewer images than the request: once its first wave is latched, the
  // grid holds at that epoch (parks without reporting kOpPaused) and serves each new wave,
  // until the host clears this flag or withdraws the request.
  kSnapshotAllHold = 1u << 3,
};

struct GridReport {
  // One line, written by block 0's leader only.
  alignas(64) std::uint64_t epoch;  // last epoch the whole grid completed
  std::uint32_t state;              // GridState
  // The last HostControl generation block 0 decided a round with, and the last snapshot_all
  // request it latched (scheduled its first wave) by then: a host that withdrew a request
  // and sees a later generation here knows whether the grid will still serve it.
  std::uint32_t control_generation;
  std::uint64_t latched_snapshot;
};

struct BlockHeartbeat {
  // One line per block, written by that block's leader only.
  alignas(64) std::uint64_t epoch;  // last epoch this block completed
  std::uint32_t state;              // GridState as this block sees it
  // Nonzero once the block's actors are initialised (at once for a restored grid): `epoch`
  // is the start epoch before that too, but its K2K commits are complete only now.
  std::uint32_t initialized;
};

// How a sleeping host pump is woken (host threads only: a GPU cannot wake a host futex).
//   pump:   store sleeping = 1; seq_cst fence; check every K2H ring; futex-wait on `bell`
//           (bounded by the poll policy) while it still holds the value read before; store
//           sleeping = 0.
//   waker:  make its change visible (a CPU-backend block: its K2H publish; a sender on the
//           CUDA backend: its H2K publish); seq_cst fence; if sleeping: bell += 1 (a host RMW:
//           only host threads touch these words), futex wake.
// The two fences make it impossible for the pump to miss the change and the waker to miss
// the sleeper at once. Data visibility still comes from the rings' own release/acquire.
// `drainers` counts host threads waiting on a reply that drain their K2H ring themselves
// (pkrt/reply_future.hpp): while one does, a CPU-backend block does not wake the pump for
// its K2H publishes (the drainer consumes them); a drainer that leaves with slots still in a
// ring, or stops at one only the pump may handle, wakes the pump itself.
struct PumpDoorbell {
  alignas(64) std::uint32_t sleeping;  // written by the pump only
  alignas(64) std::uint32_t bell;      // incremented by wakers (host threads)
  alignas(64) std::uint32_t drainers;  // incremented/decremented by draining waiters (host threads)
};

// CPU backend only: block 0's leader sleeping on HostControl::doorbell (an idle event-driven
// grid, or a park). Same fence pairing as PumpDoorbell: block 0 stores sleeping = 1, seq_cst
// fence, re-reads the doorbell, then futex-waits on it; a host thread that bumped the doorbell
// issues a seq_cst fence and wakes the futex only when it sees sleeping = 1, so a send to a
// running grid costs no system call.
struct DoorbellSleeper {
  alignas(64) std::uint32_t sleeping;  // written by block 0's leader (a host thread) only
};

struct ControlBlock {
  HostControl host;
  GridReport grid;
  PumpDoorbell pump;
  DoorbellSleeper doorbell_sleeper;
};

static_assert(sizeof(HostControl) % 64 == 0 && sizeof(GridReport) == 64 && sizeof(BlockHeartbeat) == 64,
              "control groups must each fill whole cache lines");

}  // namespace pkrt
