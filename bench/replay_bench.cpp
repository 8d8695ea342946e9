// bench/replay_bench.cpp: ns per record appended to the replay log, against the two ways
// one could write such a log by hand (items = records everywhere, so items_per_second is
// records per second):
//   BM_ReplayAppend/pkrt_log         ReplayLogWriter::append (copy into the map + record CRC)
//   BM_ReplayAppend/pkrt_log_batch/<n>  ReplayLogWriter::append_batch of n records (1, 32, 256):
//                                    one lock, one clock read and one counters update per call,
//                                    as the runtime logs a pump pass or a published batch
//   BM_ReplayAppend/memcpy_mmap      memcpy of the same 128 bytes into a pre-faulted
//                                    MAP_SHARED map (the floor)
//   BM_ReplayAppend/pwrite_cursor    one pwrite per record plus a pwrite of the cursor (what
//                                    a log without a map costs)
// All three wrap around the same number of records (8 MiB of records), on the same disk.
// What append() spends its time on, measured alone in the same run (for the report):
//   BM_ReplayAppend/part:mutex        an uncontended std::mutex lock + unlock
//   BM_ReplayAppend/part:clock        std::chrono::steady_clock::now()
//   BM_ReplayAppend/part:record_crc   the record CRC append_batch computes (replay/record_crc.hpp: carry-less
//                                     multiplication where the CPU has VPCLMULQDQ, else ISA-L), per record over
//                                     a batch of 32 whose headers were written first, as append_batch does;
//                                     the label names the path. ISA-L's generic CRC on 128 bytes is
//                                     BM_Crc32/isal/128 (crc32_bench.cpp).
#include "bench/bench_util.hpp"

#include <pkrt/crc32.hpp>
#include <pkrt/replay_log.hpp>
#include <pkrt/slot.hpp>

#include "replay/record_crc.hpp"

#include <benchmark/benchmark.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace pkrt::bench {
namespace {

constexpr std::uint64_t kCapacity = 1u << 16;  // records: 8 MiB

Slot sample_slot(std::uint64_t i) {
  Slot s{};
  s.header.seq = i + 1;
  s.header.opcode = kUserOpcodeBase;
  s.header.actor = static_cast<std::uint32_t>(i % 7);
  s.payload.epoch = i / 16;
  s.payload.request = i;
  std::memcpy(s.payload.data, &i, sizeof i);
  return s;
}

// A writer in a fresh scratch directory, its run metadata written; null (and `state` skipped)
// on failure.
std::unique_ptr<ReplayLogWriter> open_log(benchmark::State& state, const std::string& name) {
  ReplayLogOptions options;
  options.capacity_records = kCapacity;
  auto writer = ReplayLogWriter::create((scratch_dir(name) / "bench.pkrl").string(), options);
  if (!writer.ok()) {
    state.SkipWithError(writer.status().to_string().c_str());
    return nullptr;
  }
  ReplayRunInfo info;
  info.app = "bench";
  info.backend = "cpu";
  info.num_actors = 1;
  info.blocks = 1;
  info.threads_per_block = 1;
  info.ring_capacity = 1024;
  Status st = writer.value()->begin_run(info);
  if (!st.ok()) {
    state.SkipWithError(st.to_string().c_str());
    return nullptr;
  }
  return std::move(writer.value());
}

void BM_ReplayAppend_Pkrt(benchmark::State& state) {
  auto writer = open_log(state, "replay-append");
  if (!writer) return;
  std::uint64_t i = 0;
  Slot s = sample_slot(0);
  for (auto _ : state) {
    s.header.seq = ++i;
    writer->append(ReplayDirection::kH2K, 0, i / 16, i / 16 + 1, s);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(kReplayRecordBytes));
  writer->close().ignore();
}

// The records of one pump pass go in with one call. Per batch the caller refreshes what
// differs between records (the slot's sequence and the epochs), as the pump fills them from
// the slots it publishes or consumes; the writer fills seq, time and CRC.
void BM_ReplayAppend_PkrtBatch(benchmark::State& state) {
  auto writer = open_log(state, "replay-append-batch");
  if (!writer) return;
  const auto n = static_cast<std::size_t>(state.range(0));
  std::vector<ReplayRecord> records(n);
  for (std::size_t k = 0; k < n; ++k) {
    std::memset(static_cast<void*>(&records[k]), 0, sizeof(ReplayRecord));  // reserved bytes zero
    records[k].direction = static_cast<std::uint8_t>(ReplayDirection::kH2K);
    records[k].slot = sample_slot(k);
  }
  std::uint64_t i = 0;
  for (auto _ : state) {
    for (ReplayRecord& r : records) {
      r.slot.header.seq = ++i;
      r.epoch_observed = i / 16;
      r.epoch_applied = i / 16 + 1;
    }
    writer->append_batch(records);
  }
  const auto appended = state.iterations() * static_cast<std::int64_t>(n);
  state.SetItemsProcessed(appended);
  state.SetBytesProcessed(appended * static_cast<std::int64_t>(kReplayRecordBytes));
  writer->close().ignore();
}

void BM_ReplayAppend_Memcpy(benchmark::State& state) {
  const std::string path = (scratch_dir("replay-memcpy") / "bench.map").string();
  const std::size_t bytes = 4096 + kCapacity * 128;
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (fd < 0 || ::posix_fallocate(fd, 0, static_cast<off_t>(bytes)) != 0) {
    if (fd >= 0) ::close(fd);
    state.SkipWithError(("cannot create " + path).c_str());
    return;
  }
  auto* map = static_cast<unsigned char*>(::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
  ::close(fd);
  if (map == MAP_FAILED) {
    state.SkipWithError("mmap failed");
    return;
  }
  std::memset(map, 0, bytes);  // pre-fault every page
  unsigned char record[128];
  const Slot s = sample_slot(0);
  std::memset(record, 0, 64);
  std::memcpy(record + 64, &s, sizeof s);
  std::uint64_t i = 0;
  for (auto _ : state) {
    std::memcpy(record, &i, sizeof i);
    std::memcpy(map + 4096 + (i % kCapacity) * 128, record, 128);
    benchmark::ClobberMemory();
    ++i;
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * 128);
  ::munmap(map, bytes);
}

void BM_ReplayAppend_Pwrite(benchmark::State& state) {
  const std::string path = (scratch_dir("replay-pwrite") / "bench.log").string();
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) {
    state.SkipWithError(("cannot create " + path).c_str());
    return;
  }
  unsigned char record[128] = {};
  const Slot s = sample_slot(0);
  std::memcpy(record + 64, &s, sizeof s);
  std::uint64_t i = 0;
  bool ok = true;
  for (auto _ : state) {
    std::memcpy(record, &i, sizeof i);
    ++i;
    ok = ok && ::pwrite(fd, record, 128, static_cast<off_t>(4096 + ((i - 1) % kCapacity) * 128)) == 128;
    ok = ok && ::pwrite(fd, &i, sizeof i, 0) == static_cast<ssize_t>(sizeof i);  // the cursor
  }
  ::close(fd);
  if (!ok) state.SkipWithError("pwrite failed");
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * 128);
}

void BM_ReplayAppend_PartMutex(benchmark::State& state) {
  std::mutex mu;
  for (auto _ : state) {
    mu.lock();
    benchmark::ClobberMemory();
    mu.unlock();
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_ReplayAppend_PartClock(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(std::chrono::steady_clock::now());
  state.SetItemsProcessed(state.iterations());
}

void BM_ReplayAppend_PartCrc(benchmark::State& state) {
  constexpr std::size_t kBatch = 32;
  std::vector<ReplayRecord> batch(kBatch);
  for (std::size_t i = 0; i < kBatch; ++i) {
    batch[i] = ReplayRecord{};
    batch[i].slot = sample_slot(i);
  }
  std::uint64_t seq = 0;
  for (auto _ : state) {
    for (auto& r : batch) r.seq = seq++;  // the headers first, as append_batch writes them
    for (auto& r : batch) benchmark::DoNotOptimize(detail::crc32_fixed128(&r));
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
#if PKRT_RECORD_CRC_CLMUL
  const detail::RecordCrcPath path = detail::record_crc_path();
  state.SetLabel(path == detail::RecordCrcPath::kZmm  ? "vpclmulqdq zmm"
                 : path == detail::RecordCrcPath::kYmm ? "vpclmulqdq ymm"
                                                       : "isa-l");
#else
  state.SetLabel("isa-l");
#endif
}

void register_all() {
  benchmark::RegisterBenchmark("BM_ReplayAppend/pkrt_log", BM_ReplayAppend_Pkrt);
  benchmark::RegisterBenchmark("BM_ReplayAppend/pkrt_log_batch", BM_ReplayAppend_PkrtBatch)->Arg(1)->Arg(32)->Arg(256);
  benchmark::RegisterBenchmark("BM_ReplayAppend/memcpy_mmap", BM_ReplayAppend_Memcpy);
  benchmark::RegisterBenchmark("BM_ReplayAppend/pwrite_cursor", BM_ReplayAppend_Pwrite);
  benchmark::RegisterBenchmark("BM_ReplayAppend/part:mutex", BM_ReplayAppend_PartMutex);
  benchmark::RegisterBenchmark("BM_ReplayAppend/part:clock", BM_ReplayAppend_PartClock);
  benchmark::RegisterBenchmark("BM_ReplayAppend/part:record_crc", BM_ReplayAppend_PartCrc);
}

const bool registered = (register_all(), true);

}  // namespace
}  // namespace pkrt::bench
