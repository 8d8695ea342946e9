// pkrt/slot.hpp: the 64-byte ring slot, its opcodes, and the envelope every message uses.
//
// Contract
// - A Slot is exactly one cache line: a 16-byte header (sequence, opcode, flags, actor) and a
//   48-byte payload. The sequence is the ring's publication word (see pkrt/ring.hpp); the
//   rest is written before it and read after it.
// - Every payload is an Envelope: the epoch (H2K: epoch to apply at, 0 = as soon as possible;
//   K2H: epoch at which it happened), the request id that ties a reply to its command, and 32
//   bytes of opcode-specific data.
// - Opcodes below kUserOpcodeBase are pkrt's own; applications number theirs from it.
//   Values are stable: they are recorded in replay logs.
// - Layout is little-endian and fixed: slots are mirrored byte for byte into replay logs.
#pragma once

#include <pkrt/config.hpp>

#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace pkrt {

enum Opcode : std::uint16_t {
  kOpNop = 0,
  // H2K, runtime-level. Pause/Resume/Shutdown travel through the control block (see
  // pkrt/control.hpp) because they concern every block at once; these slots let a block be
  // told directly and are acknowledged like any command.
  kOpPing = 1,  // H2K: acknowledged at the epoch it is applied; measures the round trip
  // H2K, checkpointing (see kernels/snapshot.hpp). The actor field names the actor.
  kOpSnapshotActor = 2,  // data: SnapshotRequestData; served at the end of the applied epoch
  kOpReleaseStaging = 3, // the host copied the global region's slot or a block's queued-commands area
  kOpRestoreActor = 4,   // data: RestoreRequestData; copy a staging-pool slot into the actor's state

  // K2H, runtime-level.
  kOpAck = 0x40,      // command applied; data: AckData
  kOpError = 0x41,    // command rejected or failed; data: ErrorData
  kOpReply = 0x42,    // reserved, never published: a handler's reply carries the command's
                      // own opcode with kFlagReply (data: handler-defined)
  kOpPaused = 0x43,   // grid parked at an epoch boundary (pause requested or target reached)
  kOpResumed = 0x44,  // grid left a park
  kOpStopped = 0x45,  // kernel is exiting; data: StopData
  kOpEvent = 0x46,    // unsolicited event from an actor (statistics, digests); data: app-defined
  kOpSnapshotReady = 0x47,  // a snapshot is in the actor's staging slot; data: SnapshotReadyData
  kOpDigest = 0x48,   // periodic CRC32 of an actor's state (RuntimeOptions::digest_period); data: DigestData
  kOpAckRange = 0x49, // commands applied without a reply, coalesced; data: AckRangeData
  kOpQueuedCommands = 0x4A,  // a block's commands not yet applied at a snapshot_all cut are in
                             // its queued-commands area; data: QueuedCommandsData

  kUserOpcodeBase = 0x1000,
};

// Flags in SlotHeader::flags.
enum SlotFlags : std::uint16_t {
  kFlagNone = 0,
  kFlagReply = 1u << 0,  // K2H: this slot completes the command with the same request id
  kFlagPost = 1u << 1,   // H2K: fire-and-forget (Runtime::post): nobody waits for a reply
};

// Request ids (Envelope::request). 0: none (unsolicited events, runtime-internal commands).
// Commands sent by send()/post() and their batches carry (block << 40) | seq, where seq counts
// the commands published to that block's H2K ring from 1, so one block's ids are contiguous in
// ring order: a kOpAckRange names a run of them by its first id and a count. Snapshot
// requests (snapshot_all, snapshot_actor) carry kSnapshotRequestTag | n.
inline constexpr std::uint64_t kRequestSeqBits = 40;
inline constexpr std::uint64_t kRequestSeqMask = (std::uint64_t{1} << kRequestSeqBits) - 1;
inline constexpr std::uint64_t kSnapshotRequestTag = std::uint64_t{1} << 62;

PKRT_HD constexpr std::uint64_t make_command_request(std::uint32_t block, std::uint64_t seq) {
  return (std::uint64_t{block} << kRequestSeqBits) | (seq & kRequestSeqMask);
}
PKRT_HD constexpr bool is_command_request(std::uint64_t request) {
  return request != 0 && (request & kSnapshotRequestTag) == 0;
}
PKRT_HD constexpr std::uint32_t command_request_block(std::uint64_t request) {
  return static_cast<std::uint32_t>((request & ~kSnapshotRequestTag) >> kRequestSeqBits);
}
PKRT_HD constexpr std::uint64_t command_request_seq(std::uint64_t request) {
  return request & kRequestSeqMask;
}

// Actor index meaning "no particular actor" (runtime-level commands and events).
inline constexpr std::uint32_t kNoActor = 0xFFFFFFFFu;
// Actor index of the app-wide region's snapshot (snapshot_all with SnapshotScope::
// kActorsAndGlobal): its kOpSnapshotReady, kOpReleaseStaging and checkpoint file carry it.
inline constexpr std::uint32_t kGlobalRegionActor = 0xFFFFFFFEu;
// Actor index of the commands queued at a snapshot_all cut (SnapshotScope::kWholeRun): sent,
// not yet applied (a block's deferred list and its H2K ring). Its kOpQueuedCommands, the
// release of a block's queued-commands area and a checkpoint set's commands member carry it.
inline constexpr std::uint32_t kQueuedCommandsActor = 0xFFFFFFFDu;

struct SlotHeader {
  std::uint64_t seq;     // publication word: position + 1 once the slot is readable
  std::uint16_t opcode;  // Opcode or an application opcode >= kUserOpcodeBase
  std::uint16_t flags;   // SlotFlags
  std::uint32_t actor;   // target (H2K) or source (K2H) actor, or kNoActor
};

inline constexpr std::size_t kEnvelopeDataBytes = 32;

struct Envelope {
  std::uint64_t epoch;    // H2K: apply at this epoch (0: next epoch). K2H: epoch it happened
  std::uint64_t request;  // request id chosen by the host; 0 for unsolicited events
  std::byte data[kEnvelopeDataBytes];
};

struct alignas(64) Slot {
  SlotHeader header;
  Envelope payload;
};

static_assert(sizeof(SlotHeader) == 16, "slot header must be 16 bytes");
static_assert(sizeof(Envelope) == 48, "slot payload must be 48 bytes");
static_assert(sizeof(Slot) == 64, "a slot must be exactly one 64-byte cache line");
static_assert(std::is_trivially_copyable_v<Slot>, "slots are copied byte for byte");

// Data of kOpAck: which command was applied.
struct AckData {
  std::uint16_t opcode;  // opcode of the acknowledged command
  std::uint16_t reserved[3];
};

// Data of kOpAckRange: the commands with request ids first_request .. first_request + count - 1
// (one block's, see make_command_request) were applied at the envelope's epoch, in that order,
// and none of them replied or failed. The block publishes it before any other K2H slot of its
// own, so it is never reordered with the replies and events around it. Posts are covered only
// when the runtime asked for their acknowledgement (it does when it records a replay log).
struct AckRangeData {
  std::uint64_t first_request;
  std::uint32_t count;
  std::uint32_t reserved;
};

// Data of kOpError.
struct ErrorData {
  std::uint16_t code;    // StatusCode
  std::uint16_t opcode;  // offending command's opcode
  std::uint32_t actor;   // offending command's actor field (may be out of range)
  std::uint64_t detail;  // code-specific (for kOutOfRange: the number of actors)
};

// Data of kOpStopped.
struct StopData {
  std::uint64_t final_epoch;  // last epoch every block completed
  std::uint16_t reason;       // StopReason
};

// Data of kOpQueuedCommands: the block copied `count` slots to its queued-commands area, its
// deferred list first (`deferred` of them, in list order), then its ring's unconsumed ones
// in ring order.
struct QueuedCommandsData {
  std::uint32_t count;
  std::uint32_t deferred;
};

// Data of kOpSnapshotActor.
struct SnapshotRequestData {
  std::uint32_t full;  // nonzero: mark every chunk changed (a base for later deltas)
  std::uint32_t slot;  // the staging-pool slot the host assigned to this snapshot
};

// Data of kOpRestoreActor.
struct RestoreRequestData {
  std::uint64_t source_epoch;  // the epoch the image was taken at
  std::uint32_t slot;          // the staging-pool slot the host uploaded the image into
  std::uint32_t reserved;
};

// Data of kOpSnapshotReady. The envelope's epoch is the epoch at whose end the state was
// copied; its request is the snapshot request id (command request or snapshot_all id).
struct SnapshotReadyData {
  std::uint32_t chunks;   // chunks in the image
  std::uint32_t changed;  // chunks whose CRC differs from the previous snapshot (all if full)
  std::uint32_t crc;      // CRC32 of the whole image (combined from chunk CRCs)
  std::uint32_t flags;    // bit 0: full (every chunk marked changed); bits 8..31: the staging
                          // slot holding the image (snapshot_ready_flags)
  std::uint64_t stall_ns; // time the actor was held for the device-local copy + CRC
  std::uint64_t image_bytes;
};

// SnapshotReadyData::flags. A pool slot index fits in 24 bits: there are at most as many
// slots as actors, and at most 2^24 actors.
PKRT_HD constexpr std::uint32_t snapshot_ready_flags(bool full, std::uint32_t slot) {
  return (full ? 1u : 0u) | (slot << 8);
}
PKRT_HD constexpr std::uint32_t snapshot_ready_slot(std::uint32_t flags) { return flags >> 8; }

// Data of kOpDigest. The envelope's epoch is the epoch at whose end the state was digested.
struct DigestData {
  std::uint32_t crc;     // CRC32 (zlib) of the actor's arena: State + named regions
  std::uint32_t reserved;
  std::uint64_t bytes;   // bytes digested
};

enum StopReason : std::uint16_t {
  kStopShutdown = 1,  // host requested shutdown
  kStopAbort = 2,     // host aborted (watchdog or fatal error)
};

}  // namespace pkrt
