// Ring: SPSC publication protocol, exercised by host threads (the CPU backend's agents).
#include <pkrt/ring.hpp>

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <thread>
#include <vector>

namespace pkrt {
namespace {

struct RingMemory {
  explicit RingMemory(std::uint32_t capacity)
      : bytes(ring_bytes(capacity)),
        raw(static_cast<std::byte*>(std::aligned_alloc(64, (bytes + 63) / 64 * 64))) {
    ring_init(header(), capacity);
  }
  ~RingMemory() { std::free(raw); }
  RingHeader* header() { return reinterpret_cast<RingHeader*>(raw); }
  std::size_t bytes;
  std::byte* raw;
};

std::uint64_t test_seed() {
  const char* env = std::getenv("PKRT_TEST_SEED");
  const std::uint64_t seed = env != nullptr ? std::strtoull(env, nullptr, 10) : 20261122;
  std::printf("[ seed ] PKRT_TEST_SEED=%llu\n", static_cast<unsigned long long>(seed));
  return seed;
}

// The payload for position p: a function of (seed, p) so the consumer can verify it alone.
Envelope payload_for(std::uint64_t seed, std::uint64_t p) {
  std::mt19937_64 rng(seed ^ (p * 0x9E3779B97F4A7C15ull));
  Envelope env{};
  env.epoch = rng();
  env.request = p;
  for (auto& b : env.data) b = static_cast<std::byte>(rng() & 0xFF);
  return env;
}

bool same(const Envelope& a, const Envelope& b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// How the stress producer publishes: one slot at a time, or runs of staged slots of random
// length made readable together (publishing what it staged before it waits on a full ring).
enum class Publish { kEachSlot, kStagedRuns };

void stress(std::uint32_t capacity, std::uint64_t count, std::uint64_t seed, Publish mode = Publish::kEachSlot) {
  RingMemory mem(capacity);
  std::thread producer([&] {
    RingProducer prod(mem.header());
    std::mt19937 run_lengths(static_cast<std::uint32_t>(seed));
    std::uint32_t run_left = 0;
    for (std::uint64_t p = 0; p < count; ++p) {
      const Envelope env = payload_for(seed, p);
      const auto opcode = static_cast<std::uint16_t>(p & 0xFFFF);
      const auto flags = static_cast<std::uint16_t>(p >> 48);
      const auto actor = static_cast<std::uint32_t>(p);
      if (mode == Publish::kEachSlot) {
        while (!prod.try_publish(opcode, flags, actor, env)) std::this_thread::yield();
        continue;
      }
      while (!prod.try_stage(opcode, flags, actor, env)) {
        prod.publish_staged();
        std::this_thread::yield();
      }
      if (run_left == 0) run_left = run_lengths() % 40 + 1;
      if (--run_left == 0) prod.publish_staged();
    }
    prod.publish_staged();
  });
  RingConsumer cons(mem.header());
  std::uint64_t bad = 0;
  Slot slot;
  for (std::uint64_t p = 0; p < count; ++p) {
    while (!cons.try_consume(slot)) std::this_thread::yield();
    const bool ok = slot.header.seq == p + 1 && slot.header.opcode == static_cast<std::uint16_t>(p & 0xFFFF) &&
                    slot.header.actor == static_cast<std::uint32_t>(p) && same(slot.payload, payload_for(seed, p));
    if (!ok && bad++ < 5) ADD_FAILURE() << "slot at position " << p << " is wrong (seq " << slot.header.seq << ")";
  }
  producer.join();
  EXPECT_EQ(bad, 0u);
  EXPECT_FALSE(cons.ready());
  EXPECT_EQ(ring_depth(mem.header()), 0u);
}

// A ring with its producer and consumer views, for the single-threaded protocol tests.
struct RingEnds {
  explicit RingEnds(std::uint32_t capacity) : mem(capacity), prod(mem.header()), cons(mem.header()) {}
  // Stages positions [first, last) with their payloads; each must fit.
  void stage(std::uint64_t seed, std::uint64_t first, std::uint64_t last) {
    for (std::uint64_t p = first; p < last; ++p) ASSERT_TRUE(prod.try_stage(1, 0, 0, payload_for(seed, p)));
  }
  RingMemory mem;
  RingProducer prod;
  RingConsumer cons;
};

// Consumes positions [first, last) and checks each one's sequence and payload.
void expect_consumes_in_order(RingConsumer& cons, std::uint64_t seed, std::uint64_t first, std::uint64_t last) {
  Slot slot;
  for (std::uint64_t p = first; p < last; ++p) {
    ASSERT_TRUE(cons.try_consume(slot)) << "position " << p;
    EXPECT_EQ(slot.header.seq, p + 1);
    EXPECT_TRUE(same(slot.payload, payload_for(seed, p))) << "position " << p;
  }
}

TEST(Ring, TwoThreadStressDeliversEverySlotInOrderWithItsContent) {
  stress(1024, 2'000'000, test_seed());
}

TEST(Ring, TwoThreadStressOnATinyRingWrapsConstantly) {
  stress(4, 1'000'000, test_seed() + 1);
}

TEST(Ring, TwoThreadStressWithStagedRunsDeliversEverySlotInOrderWithItsContent) {
  stress(64, 1'000'000, test_seed() + 2, Publish::kStagedRuns);
}

TEST(Ring, StagedSlotsStayInvisibleUntilPublishedThenArriveInOrder) {
  const std::uint64_t seed = test_seed();
  RingEnds ring(8);
  auto& [mem, prod, cons] = ring;
  ring.stage(seed, 0, 3);
  EXPECT_EQ(prod.staged(), 3u);
  Slot slot;
  EXPECT_FALSE(cons.ready()) << "a staged slot must not be readable before publish_staged()";
  EXPECT_FALSE(cons.try_consume(slot));
  EXPECT_EQ(ring_depth(mem.header()), 0u);
  prod.publish_staged();
  EXPECT_EQ(prod.staged(), 0u);
  // try_publish makes its own slot and any staged before it readable.
  ASSERT_TRUE(prod.try_stage(1, 0, 0, payload_for(seed, 3)));
  ASSERT_TRUE(prod.try_publish(1, 0, 0, payload_for(seed, 4)));
  EXPECT_EQ(ring_depth(mem.header()), 5u);
  expect_consumes_in_order(cons, seed, 0, 5);
  EXPECT_FALSE(cons.try_consume(slot));
}

TEST(Ring, StagingIntoAFullRingIsRefusedAndKeepsWhatWasStaged) {
  const std::uint64_t seed = test_seed();
  RingEnds ring(4);
  auto& [mem, prod, cons] = ring;
  ring.stage(seed, 0, 4);
  EXPECT_FALSE(prod.try_stage(1, 0, 0, payload_for(seed, 4))) << "a full ring must refuse, not overwrite";
  // A producer publishes what it staged before waiting for room (else none is ever freed).
  EXPECT_FALSE(prod.try_publish(1, 0, 0, payload_for(seed, 4)));
  expect_consumes_in_order(cons, seed, 0, 1);
  ASSERT_TRUE(prod.try_publish(1, 0, 0, payload_for(seed, 4)));
  expect_consumes_in_order(cons, seed, 1, 5);
}

TEST(Ring, FullRingAppliesBackpressureWithoutLoss) {
  const std::uint64_t seed = test_seed();
  RingMemory mem(8);
  RingProducer prod(mem.header());
  RingConsumer cons(mem.header());
  for (std::uint64_t p = 0; p < 8; ++p) ASSERT_TRUE(prod.try_publish(1, 0, 0, payload_for(seed, p)));
  EXPECT_FALSE(prod.has_room());
  EXPECT_FALSE(prod.try_publish(1, 0, 0, payload_for(seed, 8))) << "a full ring must refuse, not overwrite";
  Slot slot;
  ASSERT_TRUE(cons.try_consume(slot));
  EXPECT_TRUE(same(slot.payload, payload_for(seed, 0)));
  ASSERT_TRUE(prod.try_publish(1, 0, 0, payload_for(seed, 8)));
  EXPECT_FALSE(prod.try_publish(1, 0, 0, payload_for(seed, 9)));
  expect_consumes_in_order(cons, seed, 1, 9);
  EXPECT_FALSE(cons.try_consume(slot));
}

TEST(Ring, WrapAroundKeepsSequenceNumbersMonotonic) {
  RingMemory mem(4);
  RingProducer prod(mem.header());
  RingConsumer cons(mem.header());
  Slot slot;
  std::uint64_t next_read = 0, next_write = 0;
  std::mt19937 rng(7);
  for (int round = 0; round < 10000; ++round) {
    const int writes = static_cast<int>(rng() % 5);
    for (int i = 0; i < writes; ++i) {
      Envelope env{};
      env.request = next_write;
      if (prod.try_publish(2, 0, 0, env)) ++next_write;
    }
    const int reads = static_cast<int>(rng() % 5);
    for (int i = 0; i < reads && cons.try_consume(slot); ++i) {
      ASSERT_EQ(slot.header.seq, next_read + 1);
      ASSERT_EQ(slot.payload.request, next_read);
      ++next_read;
    }
    ASSERT_LE(next_write - next_read, 4u);
  }
  EXPECT_GT(next_read, 10000u) << "the ring should have wrapped thousands of times";
}

TEST(Ring, PeekDoesNotConsume) {
  RingMemory mem(2);
  RingProducer prod(mem.header());
  RingConsumer cons(mem.header());
  Envelope env{};
  env.request = 42;
  ASSERT_TRUE(prod.try_publish(3, 0, 9, env));
  Slot a, b;
  ASSERT_TRUE(cons.peek(a));
  ASSERT_TRUE(cons.peek(b));
  EXPECT_EQ(a.payload.request, 42u);
  EXPECT_EQ(b.payload.request, 42u);
  cons.pop();
  EXPECT_FALSE(cons.peek(a));
}

TEST(Ring, ProducerAndConsumerIndicesLiveOnSeparateCacheLines) {
  EXPECT_EQ(offsetof(RingHeader, capacity) / 64, 0u);
  EXPECT_EQ(offsetof(RingHeader, published) / 64, 1u);
  EXPECT_EQ(offsetof(RingHeader, head) / 64, 2u);
  EXPECT_EQ(sizeof(Slot), 64u);
  EXPECT_EQ(alignof(Slot), 64u);
}

TEST(Ring, CapacityMustBeAPowerOfTwoInRange) {
  EXPECT_TRUE(ring_capacity_valid(2));
  EXPECT_TRUE(ring_capacity_valid(1024));
  EXPECT_FALSE(ring_capacity_valid(0));
  EXPECT_FALSE(ring_capacity_valid(1));
  EXPECT_FALSE(ring_capacity_valid(1000));
  EXPECT_FALSE(ring_capacity_valid(kMaxRingCapacity * 2));
}

}  // namespace
}  // namespace pkrt
